//! The `meshgate` binary: everything lives in the workspace crates.
#![forbid(unsafe_code)]

/// mimalloc: less memory per connection and less lock contention than glibc's
/// malloc with thousands of concurrent blocking queries (see bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    meshgate_cli::main()
}
