//! `meshgate tls ca create` and `meshgate tls cert create`: a CA and
//! certificates for agents' TLS, with the file names, defaults and names
//! in certificates of Consul's `tls` commands, so that guides written for
//! them work as they are. The files work for meshgate's own agents too
//! (`tls { defaults { ca_file, cert_file, key_file } }`).

use std::net::IpAddr;
use std::path::Path;

use clap::{Args, Subcommand};

use crate::client::{CliError, CliResult};

#[derive(Subcommand, Debug)]
pub enum TlsCmd {
    /// The certificate authority.
    #[command(subcommand)]
    Ca(TlsCaCmd),
    /// Agent certificates.
    #[command(subcommand)]
    Cert(TlsCertCmd),
}

#[derive(Subcommand, Debug)]
pub enum TlsCaCmd {
    /// Create a CA: DOMAIN-agent-ca.pem and DOMAIN-agent-ca-key.pem here.
    Create(CaCreateArgs),
}

#[derive(Subcommand, Debug)]
pub enum TlsCertCmd {
    /// Create a server, client or CLI certificate signed by the CA.
    Create(CertCreateArgs),
}

#[derive(Args, Debug)]
pub struct CaCreateArgs {
    /// Days the CA is valid.
    #[arg(long, default_value_t = 1825)]
    pub days: u32,
    /// The domain (file names, and the name constraint).
    #[arg(long, default_value = "consul")]
    pub domain: String,
    /// Let the CA sign only names under DOMAIN, localhost and the
    /// -additional-name-constraint domains.
    #[arg(long = "name-constraint", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub name_constraint: Option<bool>,
    /// A further permitted domain (repeatable; implies -name-constraint).
    #[arg(long = "additional-name-constraint")]
    pub additional_name_constraint: Vec<String>,
    /// The CA's common name (default: "Consul Agent CA <serial>").
    #[arg(long = "common-name", default_value = "")]
    pub common_name: String,
}

#[derive(Args, Debug)]
pub struct CertCreateArgs {
    /// A server certificate (server.DC.DOMAIN).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub server: Option<bool>,
    /// A client agent certificate (client.DC.DOMAIN).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub client: Option<bool>,
    /// A certificate for the command line (client authentication only).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub cli: Option<bool>,
    /// The CA certificate (default: DOMAIN-agent-ca.pem).
    #[arg(long)]
    pub ca: Option<String>,
    /// The CA key (default: DOMAIN-agent-ca-key.pem).
    #[arg(long)]
    pub key: Option<String>,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// The datacenter.
    #[arg(long, default_value = "dc1")]
    pub dc: String,
    /// The domain.
    #[arg(long, default_value = "consul")]
    pub domain: String,
    /// The server's node name (adds NODE.server.DC.DOMAIN).
    #[arg(long)]
    pub node: Option<String>,
    /// A further DNS name (repeatable).
    #[arg(long = "additional-dnsname")]
    pub additional_dnsname: Vec<String>,
    /// A further IP address (repeatable).
    #[arg(long = "additional-ipaddress")]
    pub additional_ipaddress: Vec<String>,
}

/// Runs `meshgate tls ...`.
pub fn run(c: TlsCmd) -> CliResult {
    match c {
        TlsCmd::Ca(TlsCaCmd::Create(a)) => ca_create(a, Path::new(".")),
        TlsCmd::Cert(TlsCertCmd::Create(a)) => cert_create(a, Path::new(".")),
    }
}

/// Writes a new file (never over an existing one); `private`: mode 0600.
fn save(dir: &Path, name: &str, text: &str, private: bool) -> CliResult {
    use std::io::Write;
    let path = dir.join(name);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(&path)
        .map_err(|e| CliError::new(format!("==> Failed to write {name}: {e}")))?;
    f.write_all(text.as_bytes())
        .map_err(|e| CliError::new(format!("==> Failed to write {name}: {e}")))?;
    println!("==> Saved {name}");
    Ok(())
}

fn ca_create(a: CaCreateArgs, dir: &Path) -> CliResult {
    let cert = format!("{}-agent-ca.pem", a.domain);
    let key = format!("{}-agent-ca-key.pem", a.domain);
    for f in [&cert, &key] {
        if dir.join(f).exists() {
            return Err(CliError::new(format!("==> CA file {f} already exists")));
        }
    }
    let constraints: Vec<String> =
        if a.name_constraint.unwrap_or(false) || !a.additional_name_constraint.is_empty() {
            [a.domain.clone(), "localhost".to_string()]
                .into_iter()
                .chain(a.additional_name_constraint.iter().cloned())
                .collect()
        } else {
            Vec::new()
        };
    let (cert_pem, key_pem) = meshgate_ca::new_agent_ca(a.days, &a.common_name, &constraints)
        .map_err(|e| CliError::new(format!("==> Error generating the CA: {e}")))?;
    save(dir, &cert, &cert_pem, false)?;
    save(dir, &key, &key_pem, true)
}

fn cert_create(a: CertCreateArgs, dir: &Path) -> CliResult {
    let kinds = [
        a.server.unwrap_or(false),
        a.client.unwrap_or(false),
        a.cli.unwrap_or(false),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(CliError::new(
            "==> Please provide either -server, -client, or -cli",
        ));
    }
    if a.node.is_some() && !kinds[0] {
        return Err(CliError::new("==> -node requires -server"));
    }
    let ca =
        a.ca.clone()
            .unwrap_or_else(|| format!("{}-agent-ca.pem", a.domain));
    let key = a
        .key
        .clone()
        .unwrap_or_else(|| format!("{}-agent-ca-key.pem", a.domain));
    let (dc, domain) = (&a.dc, &a.domain);
    let (kind, name) = if kinds[0] {
        ("server", format!("server.{dc}.{domain}"))
    } else if kinds[1] {
        ("client", format!("client.{dc}.{domain}"))
    } else {
        ("cli", format!("cli.client.{dc}.{domain}"))
    };
    let mut dns = vec![name.clone(), "localhost".to_string()];
    if let Some(node) = &a.node {
        dns.push(format!("{node}.server.{dc}.{domain}"));
    }
    dns.extend(a.additional_dnsname.iter().cloned());
    let mut ips: Vec<IpAddr> = Vec::new();
    if kind != "cli" {
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    for ip in &a.additional_ipaddress {
        ips.push(ip.parse().map_err(|_| {
            CliError::new(format!(
                "==> {ip:?} is not an IP address (-additional-ipaddress)"
            ))
        })?);
    }
    let read = |path: &str| {
        std::fs::read_to_string(dir.join(path))
            .map_err(|e| CliError::new(format!("==> Failed to read {path}: {e}")))
    };
    let signer = meshgate_ca::CaSigner {
        cert_pem: read(&ca)?,
        key_pem: read(&key)?,
    };
    let want = meshgate_ca::AgentTlsCert {
        name,
        dns_names: dns,
        ip_addresses: ips,
        server_auth: kind != "cli",
        days: a.days,
    };
    let (cert_pem, key_pem) = meshgate_ca::sign_agent_tls_cert(&signer, &want)
        .map_err(|e| CliError::new(format!("==> Error signing the certificate: {e}")))?;
    // The first free index: dc1-server-consul-0.pem, -1, ...
    let prefix = format!("{dc}-{kind}-{domain}");
    let n = (0u32..)
        .find(|i| {
            !dir.join(format!("{prefix}-{i}.pem")).exists()
                && !dir.join(format!("{prefix}-{i}-key.pem")).exists()
        })
        .unwrap_or(0);
    if kind == "server" {
        println!(
            "==> WARNING: a server certificate lets its holder act as a server: it\n    \
             can read all state, keys and ACL tokens. Install it on server nodes\n    \
             only, and keep it as safe as the CA key."
        );
    }
    println!("==> Using {ca} and {key}");
    save(dir, &format!("{prefix}-{n}.pem"), &cert_pem, false)?;
    save(dir, &format!("{prefix}-{n}-key.pem"), &key_pem, true)
}
