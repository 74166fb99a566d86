//! meshgate's command line: `meshgate agent` and the commands that talk to an
//! agent's HTTP API, with the flags and output of the CLI operators know.
#![forbid(unsafe_code)]

pub mod args;
pub mod client;
pub mod cmd;
pub mod files;
pub mod logfile;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::{CliError, CliResult};

/// meshgate: a service mesh that speaks the Consul API, with its own data plane.
#[derive(Parser, Debug)]
#[command(name = "meshgate", version, about, long_about = None, disable_help_subcommand = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run an agent (use -dev for a single in-memory server).
    Agent(Box<cmd::agent::AgentArgs>),
    /// Interact with the key/value store.
    #[command(subcommand)]
    Kv(cmd::kv::KvCmd),
    /// Interact with the catalog.
    #[command(subcommand)]
    Catalog(cmd::catalog::CatalogCmd),
    /// Register and deregister services with the local agent.
    #[command(subcommand)]
    Services(cmd::catalog::ServicesCmd),
    /// Save, restore and inspect snapshots of the state.
    #[command(subcommand)]
    Snapshot(cmd::snapshot::SnapshotCmd),
    /// List the members of the cluster.
    Members(cmd::catalog::MembersArgs),
    /// List and rotate the cluster key on every agent.
    Keyring(cmd::keyring::KeyringArgs),
    /// Print a new random cluster key (for `encrypt` and `keyring -install`).
    Keygen,
    /// Print the version (`-format=json`: as `consul version -format=json`).
    Version(VersionArgs),
    /// Show the agent's statistics.
    Info(cmd::ops::InfoArgs),
    /// Stream the agent's log.
    Monitor(cmd::ops::MonitorArgs),
    /// Re-read the agent's configuration files.
    Reload(cmd::ops::PlainArgs),
    /// Check configuration files as the agent would read them.
    Validate(cmd::validate::ValidateArgs),
    /// Put the node or a service into maintenance mode (or list it).
    Maint(cmd::ops::MaintArgs),
    /// Ask the agent to leave and stop.
    Leave(cmd::ops::PlainArgs),
    /// Join the cluster through a server.
    Join(cmd::ops::JoinArgs),
    /// Estimate the network round trip time between two nodes.
    Rtt(cmd::ops::RttArgs),
    /// Record the agent's state, log and metrics for a while into an archive
    /// for support.
    Debug(cmd::debug::DebugArgs),
    /// Create a CA and certificates for agents' TLS.
    #[command(subcommand)]
    Tls(cmd::tls::TlsCmd),
    /// Remove a failed node.
    ForceLeave(cmd::ops::ForceLeaveArgs),
    /// Fire a user event.
    Event(cmd::ops::EventArgs),
    /// Watch a view of the data and run a handler on each change.
    Watch(cmd::watch::WatchArgs),
    /// Run a command while holding a lock (or a semaphore slot) in the KV store.
    Lock(cmd::lock::LockArgs),
    /// Manage ACLs: bootstrap, policies, tokens, roles, auth methods.
    #[command(subcommand)]
    Acl(Box<cmd::acl::AclCmd>),
    /// Write, read, list and delete config entries (gateways, service defaults, ...).
    #[command(subcommand)]
    Config(cmd::config::ConfigCmd),
    /// Create, read, list, check and delete intentions.
    #[command(subcommand)]
    Intention(cmd::intention::IntentionCmd),
    /// Service mesh commands: the built-in proxy and gateway, the certificate authority.
    #[command(subcommand)]
    Connect(cmd::connect::ConnectCmd),
    /// Set up a cluster (first server), or a node joining one: secrets,
    /// configuration, the password-protected cluster-credential file.
    Setup(Box<cmd::setup::SetupArgs>),
    /// Print the ACL bootstrap token, unlocked with the cluster credential password.
    BootstrapToken(cmd::setup::BootstrapTokenArgs),
    /// Cluster operations: the raft configuration, autopilot, usage counts.
    #[command(subcommand)]
    Operator(cmd::operator::OperatorCmd),
    /// Publish external services through terminating gateways; show gateways.
    #[command(subcommand)]
    Gateway(cmd::gateway::GatewayCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(CompletionArgs),
    /// Print the man page (roff), or write one page per command into --dir.
    Man(ManArgs),
    /// Log in with an auth method and write the new ACL token to a file.
    Login(cmd::login::LoginArgs),
    /// Destroy the ACL token a login created.
    Logout(cmd::login::LogoutArgs),
}

async fn dispatch(cli: Cli) -> CliResult {
    match cli.command {
        Command::Agent(a) => cmd::agent::run(*a).await,
        Command::Kv(c) => cmd::kv::run(c).await,
        Command::Catalog(c) => cmd::catalog::run(c).await,
        Command::Services(c) => cmd::catalog::run_services(c).await,
        Command::Members(a) => cmd::catalog::members(a).await,
        Command::Keyring(a) => cmd::keyring::run(a).await,
        Command::Keygen => cmd::keyring::keygen(),
        Command::Snapshot(c) => cmd::snapshot::run(c).await,
        Command::Info(a) => cmd::ops::info(a).await,
        Command::Monitor(a) => cmd::ops::monitor(a).await,
        Command::Reload(a) => cmd::ops::reload(a).await,
        Command::Validate(a) => cmd::validate::run(a),
        Command::Maint(a) => cmd::ops::maint(a).await,
        Command::Leave(a) => cmd::ops::leave(a).await,
        Command::ForceLeave(a) => cmd::ops::force_leave(a).await,
        Command::Event(a) => cmd::ops::event(a).await,
        Command::Watch(a) => cmd::watch::run(a).await,
        Command::Lock(a) => cmd::lock::run(a).await,
        Command::Join(a) => cmd::ops::join(a).await,
        Command::Rtt(a) => cmd::ops::rtt(a).await,
        Command::Debug(a) => cmd::debug::run(a).await,
        Command::Tls(c) => cmd::tls::run(c),
        Command::Acl(c) => cmd::acl::run(*c).await,
        Command::Config(c) => cmd::config::run(c).await,
        Command::Intention(c) => cmd::intention::run(c).await,
        Command::Connect(c) => cmd::connect::run(c).await,
        Command::Gateway(c) => cmd::gateway::run(c).await,
        Command::Operator(c) => cmd::operator::run(c).await,
        Command::Setup(a) => cmd::setup::setup(*a),
        Command::BootstrapToken(a) => cmd::setup::bootstrap_token(a),
        Command::Completion(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "meshgate", &mut std::io::stdout());
            Ok(())
        }
        Command::Man(a) => man(a),
        Command::Login(a) => cmd::login::login(a).await,
        Command::Logout(a) => cmd::login::logout(a).await,
        Command::Version(a) => version(a),
    }
}

/// `meshgate version [-format pretty|json]`.
#[derive(clap::Args, Debug)]
pub struct VersionArgs {
    /// Output format: `pretty` or `json`.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

/// meshgate's version and the Consul API version it speaks; in JSON the
/// fields of `consul version -format=json` (`Version` is the Consul API
/// version, as `/v1/agent/self` reports it) and `MeshgateVersion`.
fn version(a: VersionArgs) -> CliResult {
    match a.format.as_str() {
        "pretty" => {
            println!("meshgate v{}", env!("CARGO_PKG_VERSION"));
            println!(
                "Compatible with the Consul API v{}",
                meshgate_agent::COMPAT_VERSION
            );
            Ok(())
        }
        "json" => {
            let v = serde_json::json!({
                "Version": meshgate_agent::COMPAT_VERSION,
                "Revision": format!("meshgate-{}", meshgate_agent::VERSION),
                "Prerelease": "",
                "BuildDate": meshgate_agent::BUILD_DATE,
                "RPC": {"Default": 2, "Min": 2, "Max": 3},
                "MeshgateVersion": meshgate_agent::VERSION,
            });
            let mut out = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            serde::Serialize::serialize(&v, &mut ser).map_err(|e| CliError::new(e.to_string()))?;
            println!("{}", String::from_utf8_lossy(&out));
            Ok(())
        }
        other => Err(CliError::new(format!("Unknown format: {other}"))),
    }
}

/// Whether the command is a long-running network process (the agent, a
/// sidecar or gateway).
fn serves_network(cmd: &Command) -> bool {
    use cmd::connect::ConnectCmd;
    matches!(
        cmd,
        Command::Agent(_) | Command::Connect(ConnectCmd::Proxy(_) | ConnectCmd::Envoy(_))
    )
}

/// Sidecars and gateways (`meshgate connect …`) run one per service on every
/// node, and an agent on every node, so their idle footprint counts. The
/// allocator (mimalloc) commits its arena eagerly and asks for transparent
/// huge pages, so the first small allocations in each 2 MiB of it fault in a
/// whole huge page: about 10 MiB of an idle proxy's 13 MiB of private memory,
/// and of an idle agent's 26 MiB of resident memory. The kernel's per-process
/// switch only governs later faults and some memory is allocated before
/// `main`, so the process turns huge pages off and executes itself again (the
/// switch is kept across `execve`): the new image starts with small pages from
/// its first allocation. For the agent, huge pages made no difference that
/// could be measured (10,000 woken blocking queries, KV requests/s;
/// bench/RESULTS.md). Any failure here only costs memory (and no logger is set
/// up yet to say so), so the process then goes on as it is.
fn small_pages_only() {
    use std::os::unix::process::CommandExt;
    /// Set for the new image, so that it never executes itself again even
    /// on a kernel that would not keep the switch.
    const MARK: &str = "MESHGATE_SMALL_PAGES";
    if std::env::var_os(MARK).is_some()
        || rustix::thread::transparent_huge_pages_are_disabled().unwrap_or(true)
        || rustix::thread::disable_transparent_huge_pages(true).is_err()
    {
        return;
    }
    let mut args = std::env::args_os();
    let Some(arg0) = args.next() else { return };
    // Returns only when the execution failed.
    let _ = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(MARK, "1")
        .exec();
}

/// The commands that keep running (`agent`, `connect proxy`, `connect envoy`)
/// parse their own flags only. Building the whole command line allocates
/// every command's flag definitions, and the allocator keeps that memory for
/// the life of the process: an idle proxy's private memory was 3.5 MiB with
/// it and is 2.6 MiB without. Anything but a clean parse (a wrong flag, `-h`)
/// gives `None`, and the whole command line is parsed again, so errors and
/// help read exactly as they always do.
fn parse_serving(args: &[String]) -> Option<Command> {
    use clap::{Args, FromArgMatches};
    use cmd::connect::ConnectCmd;
    /// `args[0]` is the command's name.
    fn parse<A: Args + FromArgMatches>(args: &[String]) -> Option<Box<A>> {
        let m = A::augment_args(clap::Command::new("meshgate"))
            .try_get_matches_from(args)
            .ok()?;
        A::from_arg_matches(&m).ok().map(Box::new)
    }
    let word = |i: usize| args.get(i).map(String::as_str);
    match (word(1), word(2)) {
        (Some("agent"), _) => parse(&args[1..]).map(Command::Agent),
        (Some("connect"), Some("proxy")) => {
            parse(&args[2..]).map(|a| Command::Connect(ConnectCmd::Proxy(a)))
        }
        (Some("connect"), Some("envoy")) => {
            parse(&args[2..]).map(|a| Command::Connect(ConnectCmd::Envoy(a)))
        }
        _ => None,
    }
}

/// `meshgate completion SHELL`.
#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `meshgate man`.
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write meshgate.1 and one meshgate-<command>.1 per command into this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<String>,
}

fn man(a: ManArgs) -> CliResult {
    let cmd = <Cli as clap::CommandFactory>::command();
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| client::CliError::new(format!("{dir}: {e}")))?;
            clap_mangen::generate_to(cmd, &dir)
                .map_err(|e| client::CliError::new(format!("writing man pages to {dir}: {e}")))
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| client::CliError::new(e.to_string()))?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| client::CliError::new(e.to_string()))
        }
    }
}

/// The program's entry point.
pub fn main() -> ExitCode {
    // Before anything allocates much: see `small_pages_only`.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "connect" || a == "agent")
    {
        small_pages_only();
    }
    let args = args::normalize(
        std::env::args().collect(),
        <Cli as clap::CommandFactory>::command,
    );
    let cli = match parse_serving(&args) {
        Some(command) => Cli { command },
        None => match Cli::try_parse_from(args) {
            Ok(c) => c,
            Err(e) => {
                let code = if e.use_stderr() { 1 } else { 0 };
                let _ = e.print();
                return ExitCode::from(code);
            }
        },
    };
    // Like other command-line tools, end quietly when the reader of our output
    // goes away (`meshgate kv get -recurse | head`) instead of panicking. Not
    // the agent and the proxies: they write to sockets, and a peer that resets
    // must cost one connection (EPIPE), not the process (SIGPIPE).
    // `watch` writes each answer to its handler's standard input: a handler
    // that exits without reading it must cost that write (EPIPE), not the
    // watch.
    if !serves_network(&cli.command) && !matches!(cli.command, Command::Watch(_)) {
        sigpipe::reset();
    }
    let workers = match runtime_workers(&cli.command) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    // With one worker everything runs on this thread, with no second thread
    // to wake (bench/RESULTS.md, the data plane's sixth run); proxies always
    // run so, and start their own connection threads (meshgate_proxy::workers).
    let built = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failed to start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("{}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

/// How many threads run the command's tasks: `MESHGATE_WORKER_THREADS`, else
/// one per CPU; a proxy's runtime is this thread alone, and its connection
/// threads are counted by `cmd::proxy::threads`.
fn runtime_workers(command: &Command) -> Result<usize, String> {
    use cmd::connect::ConnectCmd;
    // Checked for every command, so that a bad value never passes unseen.
    let set = env_worker_threads()?;
    if let Command::Connect(ConnectCmd::Proxy(_) | ConnectCmd::Envoy(_)) = command {
        return Ok(1);
    }
    Ok(set.unwrap_or_else(cpus))
}

/// `MESHGATE_WORKER_THREADS` when it is set; a value that is not a number
/// above zero is an error.
pub(crate) fn env_worker_threads() -> Result<Option<usize>, String> {
    let v = match std::env::var("MESHGATE_WORKER_THREADS") {
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => v.to_string_lossy().into_owned(),
        Ok(v) => v,
    };
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!(
            "Invalid MESHGATE_WORKER_THREADS {v:?}: the number of threads that run meshgate's tasks, 1 or more"
        )),
    }
}

/// The CPUs this process may run on.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The narrow parse of a serving command gives what the whole command
    /// line gives, or nothing when the whole command line must answer.
    #[test]
    fn serving_commands_parse_alike_or_fall_back() {
        let cases: &[&[&str]] = &[
            &["agent", "-dev"],
            &[
                "agent",
                "-server",
                "-bootstrap-expect=3",
                "-data-dir",
                "/tmp/x",
                "-retry-join",
                "127.0.0.2",
                "-retry-join",
                "127.0.0.3",
            ],
            &[
                "agent",
                "-dev",
                "-node",
                "a",
                "-client",
                "127.0.0.1",
                "-http-port",
                "18500",
                "-dns-port",
                "-1",
                "-log-level",
                "warn",
            ],
            &[
                "agent",
                "-config-dir",
                "/etc/consul.d",
                "-hcl",
                "ui_config { enabled = true }",
            ],
            &["connect", "proxy", "-sidecar-for", "web"],
            &[
                "connect",
                "proxy",
                "-sidecar-for",
                "web",
                "-admin-bind",
                "127.0.0.1:19000",
                "-token",
                "t",
                "-http-addr",
                "127.0.0.1:8500",
            ],
            &[
                "connect",
                "envoy",
                "-gateway=terminating",
                "-register",
                "-service",
                "gw",
                "-address",
                "127.0.0.3:8443",
            ],
            &[
                "connect",
                "envoy",
                "-sidecar-for",
                "web",
                "--",
                "-l",
                "debug",
            ],
            &[
                "connect",
                "proxy",
                "-proxy-id",
                "web-sidecar-proxy",
                "-log-level",
                "debug",
            ],
            // Not clean: the whole command line answers.
            &["agent", "-no-such-flag"],
            &["agent", "-h"],
            &["agent", "--help"],
            &["agent", "-version"],
            &["connect", "proxy", "-h"],
            &["connect", "proxy", "-sidecar-for"],
            &["connect", "envoy", "-admin-bind"],
            &["connect", "ca", "get-config"],
            &["connect"],
            &["kv", "get", "k"],
            &["version"],
            &[],
        ];
        let mut narrow = 0;
        for case in cases {
            let args = args::normalize(
                std::iter::once("meshgate")
                    .chain(case.iter().copied())
                    .map(String::from)
                    .collect(),
                <Cli as clap::CommandFactory>::command,
            );
            let whole = Cli::try_parse_from(&args).map(|c| c.command);
            match parse_serving(&args) {
                Some(c) => {
                    narrow += 1;
                    let whole = whole.unwrap_or_else(|e| {
                        panic!("{case:?}: narrow parse of what fails whole: {e}")
                    });
                    assert_eq!(format!("{c:?}"), format!("{whole:?}"), "{case:?}");
                }
                None => {
                    let serving = whole.as_ref().is_ok_and(serves_network);
                    assert!(
                        !serving,
                        "{case:?}: a serving command the narrow parse refused"
                    );
                }
            }
        }
        assert_eq!(
            narrow, 9,
            "every clean serving command takes the narrow way"
        );
    }
}
