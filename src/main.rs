//! The `meshgate` binary: everything lives in the workspace crates.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    meshgate_cli::main()
}
