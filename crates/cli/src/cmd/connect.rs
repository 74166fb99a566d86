//! `meshgate connect ...`: the service mesh commands. Each subcommand group
//! is a variant of [`ConnectCmd`] with its own module under `connect/`; to
//! add one (`proxy`, `envoy`, ...), add the variant, its module and its arm
//! in [`run`].

mod ca;

use clap::Subcommand;

use crate::client::CliResult;

/// Service mesh commands.
#[derive(Subcommand, Debug)]
pub enum ConnectCmd {
    /// Read and change the configuration of the mesh's certificate authority.
    #[command(subcommand)]
    Ca(Box<ca::CaCmd>),
    /// Run the built-in proxy: a sidecar (-sidecar-for, -proxy-id) or a terminating gateway (-gateway=terminating).
    Proxy(Box<crate::cmd::proxy::ProxyArgs>),
    /// The same as `connect proxy`, under the name existing systemd units use (no Envoy is run).
    Envoy(Box<crate::cmd::proxy::ProxyArgs>),
}

/// Runs a `connect` subcommand.
pub async fn run(cmd: ConnectCmd) -> CliResult {
    match cmd {
        ConnectCmd::Ca(c) => ca::run(*c).await,
        ConnectCmd::Proxy(a) => crate::cmd::proxy::run(*a, "connect proxy").await,
        ConnectCmd::Envoy(a) => crate::cmd::proxy::run(*a, "connect envoy").await,
    }
}
