//! `meshgate setup` and `meshgate bootstrap-token`: cluster setup protected by
//! the cluster credential password (step 3 of the operator's procedure).
//!
//! `setup` on the first server makes the cluster's secrets — the ACL
//! bootstrap token, the cluster CA, the cluster key — writes the agent's
//! configuration, and keeps the secrets in a cluster-credential file encrypted
//! with the password (age, scrypt passphrase mode). `setup --join` on another
//! node decrypts that file and writes a configuration that joins the first
//! server. `bootstrap-token` prints the bootstrap token after asking for the
//! password; with `--setup` it prints only the token, so that
//! `export CONSUL_HTTP_TOKEN=$(meshgate bootstrap-token --setup)` works.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use base64::Engine;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::client::{CliError, CliResult};

/// The credential file's name in the configuration directory.
pub const CREDENTIALS_FILE: &str = "cluster-credentials.age";
/// The agent configuration `setup` writes.
pub const CONFIG_FILE: &str = "meshgate.hcl";
/// The cluster CA's certificate (public), this agent's certificate and key
/// for mutual TLS between agents.
pub const CLUSTER_CA_FILE: &str = "cluster-ca.pem";
pub const AGENT_CERT_FILE: &str = "agent.pem";
pub const AGENT_KEY_FILE: &str = "agent-key.pem";
/// How long an agent's certificate is valid (re-run `setup --force` to renew).
const AGENT_CERT_TTL: std::time::Duration = std::time::Duration::from_secs(5 * 365 * 24 * 3600);

#[derive(Args, Debug)]
pub struct SetupArgs {
    /// Where the agent configuration and the credential file go.
    #[arg(long = "config-dir", default_value = "/etc/meshgate")]
    pub config_dir: String,
    /// The agent's data directory.
    #[arg(long = "data-dir", default_value = "/var/lib/meshgate")]
    pub data_dir: String,
    /// The address the agent binds for cluster traffic (and serves its API on, unless --client).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// The address of the HTTP API and DNS (default: --bind).
    #[arg(long)]
    pub client: Option<String>,
    /// The datacenter.
    #[arg(long, default_value = "dc1")]
    pub datacenter: String,
    /// The node name (default: the host name).
    #[arg(long)]
    pub node: Option<String>,
    /// How many servers form the cluster (the first waits for them).
    #[arg(long = "bootstrap-expect", default_value_t = 1)]
    pub bootstrap_expect: u32,
    /// Read the password from standard input (one line) instead of the terminal.
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Join the cluster of this server (address of a server) instead of creating one.
    #[arg(long, requires = "credentials")]
    pub join: Option<String>,
    /// The cluster-credential file of the first server (with --join).
    #[arg(long)]
    pub credentials: Option<String>,
    /// Replace an existing configuration and credential file.
    #[arg(long)]
    pub force: bool,
    /// `server` (keeps the state, votes) or `client` (a client agent: follows
    /// the servers, runs the node's services and checks; needs --join).
    #[arg(long, value_enum, default_value_t = Role::Server)]
    pub role: Role,
}

/// What a node set up by `meshgate setup` runs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

#[derive(Args, Debug)]
pub struct BootstrapTokenArgs {
    /// Print only the token, without prompt text (the password is read from
    /// standard input when it is not a terminal).
    #[arg(long)]
    pub setup: bool,
    /// The cluster-credential file (default: <config-dir>/cluster-credentials.age).
    #[arg(long)]
    pub credentials: Option<String>,
    /// The configuration directory `setup` wrote.
    #[arg(long = "config-dir", default_value = "/etc/meshgate")]
    pub config_dir: String,
}

/// What the credential file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Credentials {
    version: u32,
    datacenter: String,
    /// The ACL bootstrap (initial management) token.
    bootstrap_accessor: String,
    bootstrap_secret: String,
    /// The cluster key (base64, 32 bytes).
    encrypt: String,
    /// The cluster CA (not the mesh CA): for server and agent certificates.
    ca_cert_pem: String,
    ca_key_pem: String,
    /// Where the first server listens for cluster traffic.
    servers: Vec<String>,
}

fn err(msg: impl Into<String>) -> CliError {
    CliError::new(msg)
}

/// Reads the password: from standard input when asked or when it is not a
/// terminal (one line), else from the terminal without echo (twice when
/// `confirm`).
fn read_password(from_stdin: bool, confirm: bool, quiet: bool) -> Result<SecretString, CliError> {
    let stdin_pw = from_stdin || !std::io::stdin().is_terminal();
    let pw = if stdin_pw {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| err(format!("reading the password from standard input: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let prompt = if quiet {
            ""
        } else {
            "Cluster credential password: "
        };
        let pw = rpassword::prompt_password(prompt)
            .map_err(|e| err(format!("reading the password: {e}")))?;
        if confirm {
            let again = rpassword::prompt_password("Again: ")
                .map_err(|e| err(format!("reading the password: {e}")))?;
            if again != pw {
                return Err(err("The passwords differ; nothing was written."));
            }
        }
        pw
    };
    if pw.is_empty() {
        return Err(err("The password must not be empty."));
    }
    if confirm && pw.chars().count() < 8 {
        return Err(err("The password must have at least 8 characters."));
    }
    Ok(SecretString::from(pw))
}

fn encrypt(creds: &Credentials, pw: SecretString) -> Result<Vec<u8>, CliError> {
    let plain = serde_json::to_vec(creds).map_err(|e| err(e.to_string()))?;
    let enc = age::Encryptor::with_user_passphrase(pw);
    let mut out = Vec::new();
    let mut w = enc
        .wrap_output(
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| err(e.to_string()))?,
        )
        .map_err(|e| err(format!("encrypting the credentials: {e}")))?;
    w.write_all(&plain)
        .map_err(|e| err(format!("encrypting the credentials: {e}")))?;
    w.finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| err(format!("encrypting the credentials: {e}")))?;
    Ok(out)
}

fn decrypt(data: &[u8], pw: SecretString) -> Result<Credentials, CliError> {
    let reader = age::armor::ArmoredReader::new(data);
    let d = age::Decryptor::new(reader)
        .map_err(|e| err(format!("The credential file is damaged or not one: {e}")))?;
    let identity = age::scrypt::Identity::new(pw);
    let mut r = d
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => err("Wrong password."),
            other => err(format!("Decrypting the credentials: {other}")),
        })?;
    let mut plain = Vec::new();
    r.read_to_end(&mut plain)
        .map_err(|_| err("Wrong password."))?;
    serde_json::from_slice(&plain)
        .map_err(|e| err(format!("The credential file holds no credentials: {e}")))
}

/// Writes a file atomically with `mode` (see [`crate::files::write_atomic`]).
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CliError> {
    crate::files::write_atomic(path, data, mode, None)
        .map_err(|e| err(format!("writing {}: {e}", path.display())))
}

/// The group the agent runs as under systemd (the package creates it).
const AGENT_GROUP: &str = "meshgate";

/// The configuration file the Debian package installs: `setup` may replace it.
const PACKAGED_CONFIG: &str = include_str!("../../../../packaging/meshgate.hcl");

/// Issues this agent's certificate from the cluster CA and writes it with the
/// CA's certificate (0644) and its key (0640, group `meshgate` like the
/// configuration).
fn write_agent_tls(a: &SetupArgs, creds: &Credentials, node: &str) -> Result<(), CliError> {
    let signer = meshgate_ca::CaSigner {
        key_pem: creds.ca_key_pem.clone(),
        cert_pem: creds.ca_cert_pem.clone(),
    };
    let mut ips: Vec<std::net::IpAddr> = Vec::new();
    for addr in [Some(&a.bind), a.client.as_ref()].into_iter().flatten() {
        if let Ok(ip) = addr.parse()
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    let role = match a.role {
        Role::Server => "server",
        Role::Client => "client",
    };
    let (cert, key) =
        meshgate_ca::sign_agent_cert(&signer, node, role, &creds.datacenter, &ips, AGENT_CERT_TTL)
            .map_err(|e| err(format!("issuing this agent's certificate: {e}")))?;
    let dir = Path::new(&a.config_dir);
    write_file(
        &dir.join(CLUSTER_CA_FILE),
        creds.ca_cert_pem.as_bytes(),
        0o644,
    )?;
    write_file(&dir.join(AGENT_CERT_FILE), cert.as_bytes(), 0o644)?;
    write_config(&dir.join(AGENT_KEY_FILE), &key)
}

/// Writes the agent configuration: 0640, and group `meshgate` when that group
/// exists and we are root, so that the agent (which runs as `meshgate` under
/// systemd) can read it while other users cannot.
fn write_config(path: &Path, text: &str) -> Result<(), CliError> {
    let owner = crate::files::group_id(AGENT_GROUP)
        .filter(|_| crate::files::running_as_root())
        .map(|gid| (0, gid));
    crate::files::write_atomic(path, text.as_bytes(), 0o640, owner)
        .map_err(|e| err(format!("writing {}: {e}", path.display())))
}

/// Whether the file at `path` is the packaged default configuration
/// (untouched), which `setup` replaces without `--force`.
fn is_packaged_default(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t == PACKAGED_CONFIG)
}

fn hcl_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The agent configuration of a server or client agent.
fn config_text(a: &SetupArgs, creds: &Credentials, node: &str, join: &[String]) -> String {
    let client = a.client.clone().unwrap_or_else(|| a.bind.clone());
    let joins: Vec<String> = join.iter().map(|j| hcl_quote(j)).collect();
    let initial = if a.join.is_none() {
        format!(
            "\n    initial_management = {}",
            hcl_quote(&creds.bootstrap_secret)
        )
    } else {
        String::new()
    };
    let server = a.role == Role::Server;
    let mut lines = vec![
        "# Written by `meshgate setup`. The secrets are in cluster-credentials.age".to_string(),
        "# (encrypted with the cluster credential password); `meshgate".to_string(),
        "# bootstrap-token` prints the bootstrap token.".to_string(),
        format!("datacenter       = {}", hcl_quote(&creds.datacenter)),
        format!("node_name        = {}", hcl_quote(node)),
        format!("data_dir         = {}", hcl_quote(&a.data_dir)),
        format!("server           = {server}"),
    ];
    if server {
        lines.push(format!("bootstrap_expect = {}", a.bootstrap_expect.max(1)));
    }
    let dir = Path::new(&a.config_dir);
    let file = |name: &str| hcl_quote(&dir.join(name).display().to_string());
    lines.extend([
        format!("bind_addr        = {}", hcl_quote(&a.bind)),
        format!("client_addr      = {}", hcl_quote(&client)),
        format!("retry_join       = [{}]", joins.join(", ")),
        format!("encrypt          = {}", hcl_quote(&creds.encrypt)),
        String::new(),
        "acl {".to_string(),
        "  enabled                  = true".to_string(),
        "  default_policy           = \"deny\"".to_string(),
        "  enable_token_persistence = true".to_string(),
        format!("  tokens {{{initial}"),
        "  }".to_string(),
        "}".to_string(),
        String::new(),
        "# Mutual TLS between agents, with the cluster CA.".to_string(),
        "tls {".to_string(),
        "  internal_rpc {".to_string(),
        format!("    ca_file   = {}", file(CLUSTER_CA_FILE)),
        format!("    cert_file = {}", file(AGENT_CERT_FILE)),
        format!("    key_file  = {}", file(AGENT_KEY_FILE)),
        "  }".to_string(),
        "}".to_string(),
        String::new(),
        "ui_config {".to_string(),
        format!("  enabled = {server}"),
        "}".to_string(),
    ]);
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().split('.').next().unwrap_or("meshgate").to_string())
        .unwrap_or_else(|_| "meshgate".into())
}

/// `meshgate setup`.
pub fn setup(a: SetupArgs) -> CliResult {
    if a.bind.parse::<std::net::IpAddr>().is_err() {
        return Err(err(format!("--bind {:?} is not an IP address", a.bind)));
    }
    let dir = PathBuf::from(&a.config_dir);
    let config_path = dir.join(CONFIG_FILE);
    let cred_path = dir.join(CREDENTIALS_FILE);
    if !a.force && a.join.is_none() && cred_path.exists() {
        return Err(err(format!(
            "{} exists: this cluster is already set up (use --force to start over; \
             the old bootstrap token stops working)",
            cred_path.display()
        )));
    }
    if !a.force && config_path.exists() && !is_packaged_default(&config_path) {
        return Err(err(format!(
            "{} exists (use --force to replace it)",
            config_path.display()
        )));
    }
    if a.role == Role::Client && a.join.is_none() {
        return Err(err(
            "--role client needs --join: a client agent joins the servers of an existing cluster",
        ));
    }
    let node = a.node.clone().unwrap_or_else(hostname);
    match &a.join {
        None => {
            let pw = read_password(a.password_stdin, true, false)?;
            let (_root, signer) = meshgate_ca::new_root(
                &format!("cluster-{}", uuid::Uuid::new_v4()),
                std::time::Duration::from_secs(10 * 365 * 24 * 3600),
            )
            .map_err(|e| err(format!("creating the cluster CA: {e}")))?;
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            let creds = Credentials {
                version: 1,
                datacenter: a.datacenter.clone(),
                bootstrap_accessor: uuid::Uuid::new_v4().to_string(),
                bootstrap_secret: uuid::Uuid::new_v4().to_string(),
                encrypt: base64::engine::general_purpose::STANDARD.encode(key),
                ca_cert_pem: signer.cert_pem.clone(),
                ca_key_pem: signer.key_pem.clone(),
                servers: vec![a.bind.clone()],
            };
            let sealed = encrypt(&creds, pw)?;
            write_file(&cred_path, &sealed, 0o600)?;
            write_agent_tls(&a, &creds, &node)?;
            write_config(
                &config_path,
                &config_text(&a, &creds, &node, std::slice::from_ref(&a.bind)),
            )?;
            println!(
                "Created the cluster credentials: {} (0600)",
                cred_path.display()
            );
            println!("Wrote the agent configuration:   {}", config_path.display());
            println!();
            println!("Next:");
            println!(
                "  meshgate agent -config-dir {}      # or: systemctl enable --now meshgate",
                a.config_dir
            );
            println!(
                "  export CONSUL_HTTP_TOKEN=$(meshgate bootstrap-token --setup --config-dir {})",
                a.config_dir
            );
            println!(
                "  on each other node: copy {} there, then",
                cred_path.display()
            );
            println!(
                "  meshgate setup --join {} --credentials {} --bind <its address>",
                a.bind,
                cred_path.display()
            );
        }
        Some(server) => {
            let file = a.credentials.clone().unwrap_or_default();
            let data = std::fs::read(&file).map_err(|e| err(format!("reading {file}: {e}")))?;
            let pw = read_password(a.password_stdin, false, false)?;
            let creds = decrypt(&data, pw)?;
            let mut joins = vec![server.clone()];
            for s in &creds.servers {
                if !joins.contains(s) {
                    joins.push(s.clone());
                }
            }
            if Path::new(&file) != cred_path {
                write_file(&cred_path, &data, 0o600)?;
            }
            write_agent_tls(&a, &creds, &node)?;
            write_config(&config_path, &config_text(&a, &creds, &node, &joins))?;
            println!(
                "Wrote the agent configuration: {} (joins {server})",
                config_path.display()
            );
            println!();
            println!("Next:");
            println!(
                "  meshgate agent -config-dir {}      # or: systemctl enable --now meshgate",
                a.config_dir
            );
        }
    }
    Ok(())
}

/// `meshgate bootstrap-token`.
pub fn bootstrap_token(a: BootstrapTokenArgs) -> CliResult {
    let file = a.credentials.clone().unwrap_or_else(|| {
        Path::new(&a.config_dir)
            .join(CREDENTIALS_FILE)
            .display()
            .to_string()
    });
    let data = std::fs::read(&file).map_err(|e| {
        err(format!(
            "reading {file}: {e} (run `meshgate setup` first, or give --credentials)"
        ))
    })?;
    let pw = read_password(false, false, a.setup)?;
    let creds = decrypt(&data, pw)?;
    if a.setup {
        println!("{}", creds.bootstrap_secret);
    } else {
        println!("Bootstrap token (SecretID): {}", creds.bootstrap_secret);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            version: 1,
            datacenter: "dc1".into(),
            bootstrap_accessor: "a".into(),
            bootstrap_secret: "s3cret".into(),
            encrypt: "k".into(),
            ca_cert_pem: String::new(),
            ca_key_pem: String::new(),
            servers: vec!["127.0.0.2".into()],
        }
    }

    #[test]
    fn round_trip_and_wrong_password() {
        let sealed = encrypt(&creds(), SecretString::from("correct horse".to_string())).unwrap();
        assert!(sealed.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
        let back = decrypt(&sealed, SecretString::from("correct horse".to_string())).unwrap();
        assert_eq!(back.bootstrap_secret, "s3cret");
        let e = decrypt(&sealed, SecretString::from("wrong".to_string())).unwrap_err();
        assert_eq!(e.message, "Wrong password.");
        let e = decrypt(b"garbage", SecretString::from("x".to_string())).unwrap_err();
        assert!(e.message.contains("damaged"), "{}", e.message);
    }
}
