//! `meshgate gateway external add|remove` and `meshgate gateway status`: the
//! short way to publish an external service through a terminating gateway
//! (steps 2–7 of the operator's procedure, idempotently), to withdraw it, and
//! to see what a gateway fronts.
//!
//! Every step reads what exists first and changes only what differs; each
//! prints one line. A failing step stops the command with the step named;
//! files are written to a temporary file and renamed, so none is left half
//! written. `--dry-run` prints the API calls and files instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use meshgate_acl::{Access, Grant, Match, RuleKey, RuleResource};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{CliError, CliResult, Client, HttpFlags, escape_path};

/// Gateway commands.
#[derive(Subcommand, Debug)]
pub enum GatewayCmd {
    /// Publish or withdraw an external service through a terminating gateway.
    #[command(subcommand)]
    External(ExternalCmd),
    /// Show gateways: instances, linked services, their health, TLS settings and connections.
    Status(StatusArgs),
}

/// `gateway external` commands.
#[derive(Subcommand, Debug)]
pub enum ExternalCmd {
    /// Publish SERVICE (outside the mesh) through GATEWAY: policy, token,
    /// catalog registration, config entries, intentions, systemd unit.
    Add(Box<AddArgs>),
    /// Undo what `add` did for SERVICE (other linked services are untouched).
    Remove(RemoveArgs),
}

/// The agent to talk to. (`--ca-file` and `--token-file` of the other
/// commands mean something else here: the external service's CA and the
/// gateway's token file.)
#[derive(Args, Debug, Clone, Default)]
pub struct ApiFlags {
    /// The address and port of the agent HTTP server (env MESHGATE_HTTP_ADDR or CONSUL_HTTP_ADDR).
    #[arg(long = "http-addr", value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// The operator's ACL token (env MESHGATE_HTTP_TOKEN or CONSUL_HTTP_TOKEN, or the *_TOKEN_FILE variables).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

impl ApiFlags {
    fn client(&self) -> Result<Client, CliError> {
        Client::new(&HttpFlags {
            http_addr: self.http_addr.clone(),
            token: self.token.clone(),
            ..Default::default()
        })
    }
}

/// The protocol the gateway speaks to the external service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Tcp,
    Postgres,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Postgres => "postgres",
        }
    }
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    pub api: ApiFlags,
    /// The external service's name in the mesh (e.g. carbonio-files-db).
    pub service: String,
    /// Host name or IP address of the external service.
    #[arg(long)]
    pub address: String,
    /// Port of the external service.
    #[arg(long)]
    pub port: u16,
    /// The terminating gateway's service name (e.g. carbonio-gateway).
    #[arg(long)]
    pub gateway: String,
    /// Catalog node of the external service (default: <SERVICE>-external-node).
    #[arg(long)]
    pub node: Option<String>,
    /// Originate TLS to the service, verifying it against this CA file.
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_file: Option<String>,
    /// Server name sent in that TLS handshake (and required in its certificate).
    #[arg(long)]
    pub sni: Option<String>,
    /// Client certificate the gateway presents to the service (with --key-file).
    #[arg(long = "cert-file", value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<String>,
    /// Key of --cert-file.
    #[arg(long = "key-file", value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<String>,
    /// Protocol of the service: postgres makes TLS origination speak SSLRequest and adds a PostgreSQL health check.
    #[arg(long, value_enum, default_value_t = Protocol::Tcp)]
    pub protocol: Protocol,
    /// A mesh service allowed to use SERVICE (an allow intention); repeat for more.
    #[arg(long = "allow", value_name = "CALLER")]
    pub allow: Vec<String>,
    /// Where the gateway's token is written, 0600 (default /etc/meshgate/gateway/<GATEWAY>/token).
    #[arg(long = "token-file", value_name = "PATH")]
    pub token_file: Option<String>,
    /// System user the gateway runs as (owns the token file; default: the gateway's name, when that user exists).
    #[arg(long)]
    pub user: Option<String>,
    /// Also write a systemd unit that runs the gateway.
    #[arg(long)]
    pub systemd: bool,
    /// Directory of the systemd unit.
    #[arg(
        long = "systemd-dir",
        value_name = "DIR",
        default_value = "/etc/systemd/system"
    )]
    pub systemd_dir: String,
    /// Print the API calls and files instead of doing them.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub api: ApiFlags,
    /// The external service to withdraw.
    pub service: String,
    /// The terminating gateway's service name.
    #[arg(long)]
    pub gateway: String,
    /// Catalog node of the external service (default: the external node the service is registered on).
    #[arg(long)]
    pub node: Option<String>,
    /// The gateway's token file, removed with the token when no service is left.
    #[arg(long = "token-file", value_name = "PATH")]
    pub token_file: Option<String>,
    /// Directory of the systemd unit, removed when no service is left.
    #[arg(
        long = "systemd-dir",
        value_name = "DIR",
        default_value = "/etc/systemd/system"
    )]
    pub systemd_dir: String,
    /// Print the API calls and files instead of doing them.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub api: ApiFlags,
    /// The gateway to show (default: every terminating gateway).
    pub gateway: Option<String>,
}

/// Marks what `add` created, so that `remove` undoes only that.
const MANAGED_META: &str = "meshgate-gateway-external";
/// Description of the intentions `add` creates.
const INTENTION_DESCRIPTION: &str = "Allowed by meshgate gateway external add";
/// Service meta key where a gateway registers its admin endpoint.
const ADMIN_META: &str = "meshgate-admin";

pub async fn run(cmd: GatewayCmd) -> CliResult {
    match cmd {
        GatewayCmd::External(ExternalCmd::Add(a)) => add(*a).await,
        GatewayCmd::External(ExternalCmd::Remove(a)) => remove(a).await,
        GatewayCmd::Status(a) => status(a).await,
    }
}

// === Doing or printing ===

/// Runs API calls and writes files, or prints them (`--dry-run`).
struct Exec {
    client: Client,
    dry: bool,
    total: usize,
    step: usize,
    changed: bool,
}

impl Exec {
    /// Starts step `name`.
    fn begin(&mut self) {
        self.step += 1;
    }

    fn say(&self, line: &str) {
        println!("[{}/{}] {line}", self.step, self.total);
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> CliError {
        CliError::new(format!(
            "Error: step {}/{} ({what}) failed: {e}\nNothing after this step was done.",
            self.step, self.total
        ))
    }

    /// A read: always performed (also in a dry run). `None` on 404.
    async fn read(&self, path: &str, query: &[(&str, String)]) -> Result<Option<Value>, CliError> {
        let r = self.client.send(Method::GET, path, query, None).await?;
        match r.status {
            200 => Ok(Some(r.json()?)),
            404 => Ok(None),
            _ => Err(CliError::new(r.error_text())),
        }
    }

    /// A write: performed, or printed in a dry run (then `Value::Null`).
    async fn write(
        &mut self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        self.changed = true;
        let shown = if query.is_empty() {
            path.to_string()
        } else {
            let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{path}?{}", q.join("&"))
        };
        if self.dry {
            match body {
                Some(b) => println!("    would {method} {shown} {b}"),
                None => println!("    would {method} {shown}"),
            }
            return Ok(Value::Null);
        }
        let bytes = body.map(|b| b.to_string().into_bytes());
        let r = self.client.send(method, path, query, bytes).await?;
        if r.status != 200 {
            return Err(CliError::new(r.error_text()));
        }
        if r.body.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }

    /// Writes a config entry with check-and-set at `cas` (0: only if new),
    /// its index fields left out; a lost race is an error of step `what`.
    async fn put_entry(&mut self, what: &str, mut entry: Value, cas: u64) -> CliResult {
        if let Some(o) = entry.as_object_mut() {
            for k in ["CreateIndex", "ModifyIndex", "Hash"] {
                o.remove(k);
            }
        }
        let r = self
            .write(
                Method::PUT,
                "/v1/config",
                &[("cas", cas.to_string())],
                Some(&entry),
            )
            .await
            .map_err(|e| self.fail(what, e))?;
        self.check_cas(what, &r)
    }

    /// Deletes the config entry at `path` if it still has index `cas`.
    async fn delete_entry(&mut self, what: &str, path: &str, cas: u64) -> CliResult {
        let r = self
            .write(Method::DELETE, path, &[("cas", cas.to_string())], None)
            .await
            .map_err(|e| self.fail(what, e))?;
        self.check_cas(what, &r)
    }

    fn check_cas(&self, what: &str, answer: &Value) -> CliResult {
        if *answer == Value::Bool(false) {
            return Err(self.fail(
                what,
                "the entry changed while it was being updated; run the command again",
            ));
        }
        Ok(())
    }

    /// Writes a file atomically (temporary file in the same directory, then
    /// rename), with `mode` and optionally an owner.
    fn write_file(
        &mut self,
        path: &Path,
        contents: &str,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), CliError> {
        self.changed = true;
        if self.dry {
            println!(
                "    would write {} (mode {mode:o}{})",
                path.display(),
                owner
                    .map(|(u, g)| format!(", owner {u}:{g}"))
                    .unwrap_or_default()
            );
            return Ok(());
        }
        crate::files::write_atomic(path, contents.as_bytes(), mode, owner)
            .map_err(|e| CliError::new(format!("writing {}: {e}", path.display())))
    }

    fn remove_file(&mut self, path: &Path) -> Result<(), CliError> {
        self.changed = true;
        if self.dry {
            println!("    would remove {}", path.display());
            return Ok(());
        }
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CliError::new(format!("removing {}: {e}", path.display()))),
        }
    }
}

/// `(uid, gid)` of a system user, from /etc/passwd.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn policy_name(gateway: &str) -> String {
    format!("{gateway}-policy")
}

fn token_description(gateway: &str) -> String {
    format!("Token for {gateway}")
}

fn default_token_file(gateway: &str) -> String {
    format!("/etc/meshgate/gateway/{gateway}/token")
}

fn unit_path(dir: &str, gateway: &str) -> PathBuf {
    Path::new(dir).join(format!("{gateway}.service"))
}

/// Whether the agent has ACLs enabled (`/v1/acl/*` answers 401 when not).
async fn acls_enabled(x: &Exec) -> Result<bool, CliError> {
    let r = x
        .client
        .send(Method::GET, "/v1/acl/policies", &[], None)
        .await?;
    Ok(r.status != 401)
}

// === add ===

/// The rules of a new gateway policy (the scenario's policy, in HCL).
fn new_policy_rules(gateway: &str, service: &str) -> String {
    format!(
        "key_prefix \"{gateway}/\" {{\n  policy = \"read\"\n}}\n\nnode_prefix \"\" {{\n  policy = \"read\"\n}}\n\nservice \"{gateway}\" {{\n  policy = \"write\"\n}}\n\nservice \"{service}\" {{\n  policy = \"write\"\n}}\n"
    )
}

fn service_key(name: &str) -> RuleKey {
    RuleKey {
        resource: RuleResource::Service,
        matching: Match::Exact,
        name: name.to_string(),
    }
}

/// Step: the gateway policy, created or extended. Returns its name.
async fn step_policy(x: &mut Exec, gateway: &str, service: &str) -> Result<(), CliError> {
    x.begin();
    let name = policy_name(gateway);
    let path = format!("/v1/acl/policy/name/{}", escape_path(&name));
    let existing = x.read(&path, &[]).await.map_err(|e| x.fail("policy", e))?;
    match existing {
        None => {
            let body = json!({
                "Name": name,
                "Description": format!("Policy for {gateway}"),
                "Rules": new_policy_rules(gateway, service),
            });
            x.write(Method::PUT, "/v1/acl/policy", &[], Some(&body))
                .await
                .map_err(|e| x.fail("policy", e))?;
            x.say(&format!(
                "policy {name}: created (service:write on {gateway} and {service})"
            ));
        }
        Some(p) => {
            let rules = str_of(&p, "Rules");
            let mut parsed = meshgate_acl::parse_rules(rules)
                .map_err(|e| x.fail("policy", format!("the rules of {name} do not parse: {e}")))?;
            let key = service_key(service);
            if parsed
                .rules
                .get(&key)
                .is_some_and(|g| g.policy == Access::Write)
            {
                x.say(&format!(
                    "policy {name}: unchanged (already grants service:write on {service})"
                ));
                return Ok(());
            }
            parsed.rules.insert(key, Grant::new(Access::Write));
            let mut body = p.clone();
            body["Rules"] = json!(parsed.to_hcl());
            let id = str_of(&p, "ID").to_string();
            x.write(
                Method::PUT,
                &format!("/v1/acl/policy/{id}"),
                &[],
                Some(&body),
            )
            .await
            .map_err(|e| x.fail("policy", e))?;
            x.say(&format!(
                "policy {name}: extended with service:write on {service}"
            ));
        }
    }
    Ok(())
}

/// Step: the gateway token, created once and written to the token file.
async fn step_token(
    x: &mut Exec,
    gateway: &str,
    token_file: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), CliError> {
    x.begin();
    let policy = policy_name(gateway);
    let desc = token_description(gateway);
    let has_policy = |t: &Value| {
        t.get("Policies")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(|p| str_of(p, "Name") == policy))
    };
    // A token file that already holds a working token with the policy.
    if let Ok(secret) = std::fs::read_to_string(token_file) {
        let secret = secret.trim().to_string();
        if !secret.is_empty() {
            let mut c = x.client.clone();
            c.token = Some(secret);
            let r = c.send(Method::GET, "/v1/acl/token/self", &[], None).await?;
            if r.status == 200 {
                let t: Value = r.json()?;
                if has_policy(&t) {
                    x.say(&format!(
                        "token: unchanged ({} holds a token with {policy})",
                        token_file.display()
                    ));
                    return Ok(());
                }
                let accessor = str_of(&t, "AccessorID").to_string();
                let mut full = x
                    .read(&format!("/v1/acl/token/{accessor}"), &[])
                    .await
                    .map_err(|e| x.fail("token", e))?
                    .ok_or_else(|| x.fail("token", "the token vanished"))?;
                let mut ps = full
                    .get("Policies")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                ps.push(json!({"Name": policy}));
                full["Policies"] = json!(ps);
                x.write(
                    Method::PUT,
                    &format!("/v1/acl/token/{accessor}"),
                    &[],
                    Some(&full),
                )
                .await
                .map_err(|e| x.fail("token", e))?;
                x.say(&format!(
                    "token: the token in {} now has {policy}",
                    token_file.display()
                ));
                return Ok(());
            }
        }
    }
    // An existing gateway token (same description, same policy).
    let existing = match x
        .read("/v1/acl/tokens", &[])
        .await
        .map_err(|e| x.fail("token", e))?
    {
        Some(Value::Array(ts)) => ts
            .into_iter()
            .find(|t| str_of(t, "Description") == desc && has_policy(t)),
        _ => None,
    };
    let (secret, what) = match existing {
        Some(t) => {
            let accessor = str_of(&t, "AccessorID").to_string();
            let full = x
                .read(&format!("/v1/acl/token/{accessor}"), &[])
                .await
                .map_err(|e| x.fail("token", e))?
                .ok_or_else(|| x.fail("token", "the token vanished"))?;
            (str_of(&full, "SecretID").to_string(), "existing token")
        }
        None => {
            let body = json!({"Description": desc, "Policies": [{"Name": policy}]});
            let t = x
                .write(Method::PUT, "/v1/acl/token", &[], Some(&body))
                .await
                .map_err(|e| x.fail("token", e))?;
            (str_of(&t, "SecretID").to_string(), "created")
        }
    };
    x.write_file(token_file, &format!("{secret}\n"), 0o600, owner)
        .map_err(|e| x.fail("token", e))?;
    x.say(&format!(
        "token: {what}, written to {} (0600{})",
        token_file.display(),
        if owner.is_some() {
            ", owned by the gateway user"
        } else {
            ""
        }
    ));
    Ok(())
}

/// The catalog registration of the external node and service.
fn registration(a: &AddArgs, node: &str) -> Value {
    let mut reg = json!({
        "Node": node,
        "Address": a.address,
        "NodeMeta": {"external-node": "true", "external-probe": "true"},
        "Service": {"ID": a.service, "Service": a.service, "Port": a.port,
                    "Meta": {MANAGED_META: a.gateway}},
    });
    if a.protocol == Protocol::Postgres {
        let mut def = json!({
            "PostgreSQL": format!("{}:{}", a.address, a.port),
            "Interval": "10s",
            "Timeout": "5s",
        });
        if let Some(ca) = &a.ca_file {
            def["PostgreSQLUseTLS"] = json!(true);
            def["TLSCAFile"] = json!(ca);
            if let Some(sni) = &a.sni {
                def["TLSServerName"] = json!(sni);
            }
        }
        reg["Check"] = json!({
            "Node": node,
            "CheckID": format!("{}:postgres", a.service),
            "Name": format!("PostgreSQL {}", a.service),
            "ServiceID": a.service,
            "Status": "critical",
            "Definition": def,
        });
    }
    reg
}

/// Step: the external node and service in the catalog.
async fn step_catalog(x: &mut Exec, a: &AddArgs, node: &str) -> Result<(), CliError> {
    x.begin();
    let current = x
        .read(&format!("/v1/catalog/node/{}", escape_path(node)), &[])
        .await
        .map_err(|e| x.fail("catalog", e))?;
    let same = current.as_ref().is_some_and(|c| {
        let n = c.get("Node").cloned().unwrap_or(Value::Null);
        let s = c.pointer(&format!("/Services/{}", a.service)).cloned();
        str_of(&n, "Address") == a.address
            && n.pointer("/Meta/external-node").and_then(Value::as_str) == Some("true")
            && s.is_some_and(|s| {
                str_of(&s, "Service") == a.service
                    && s.get("Port").and_then(Value::as_u64) == Some(u64::from(a.port))
            })
    });
    let check_ok = if a.protocol == Protocol::Postgres {
        let checks = x
            .read(&format!("/v1/health/node/{}", escape_path(node)), &[])
            .await
            .map_err(|e| x.fail("catalog", e))?
            .unwrap_or(Value::Null);
        checks.as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| str_of(c, "CheckID") == format!("{}:postgres", a.service))
        })
    } else {
        true
    };
    if same && check_ok {
        x.say(&format!(
            "catalog: unchanged (node {node} with {} at {}:{})",
            a.service, a.address, a.port
        ));
        return Ok(());
    }
    x.write(
        Method::PUT,
        "/v1/catalog/register",
        &[],
        Some(&registration(a, node)),
    )
    .await
    .map_err(|e| x.fail("catalog registration", e))?;
    x.say(&format!(
        "catalog: registered node {node} (external-node, external-probe) with {} at {}:{}{}",
        a.service,
        a.address,
        a.port,
        if a.protocol == Protocol::Postgres {
            " and a PostgreSQL check"
        } else {
            ""
        }
    ));
    Ok(())
}

/// The entry's `Services` element for the service.
fn link(a: &AddArgs) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("Name".into(), json!(a.service));
    for (k, v) in [
        ("CAFile", &a.ca_file),
        ("CertFile", &a.cert_file),
        ("KeyFile", &a.key_file),
        ("SNI", &a.sni),
    ] {
        if let Some(v) = v {
            l.insert(k.into(), json!(v));
        }
    }
    Value::Object(l)
}

/// Step: the service in the gateway's config entry, merged.
async fn step_entry(x: &mut Exec, a: &AddArgs) -> Result<(), CliError> {
    x.begin();
    let path = format!("/v1/config/terminating-gateway/{}", escape_path(&a.gateway));
    let current = x
        .read(&path, &[])
        .await
        .map_err(|e| x.fail("config entry", e))?;
    let wanted = link(a);
    let (mut entry, cas) = match current {
        Some(e) => {
            let idx = e.get("ModifyIndex").and_then(Value::as_u64).unwrap_or(0);
            (e, idx)
        }
        None => (
            json!({"Kind": "terminating-gateway", "Name": a.gateway, "Services": [],
                   "Meta": {MANAGED_META: "true"}}),
            0,
        ),
    };
    let mut services = entry
        .get("Services")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let pos = services.iter().position(|s| str_of(s, "Name") == a.service);
    if let Some(i) = pos {
        // Compare the fields we manage (the agent may add defaults).
        let same = ["CAFile", "CertFile", "KeyFile", "SNI"]
            .iter()
            .all(|k| str_of(&services[i], k) == str_of(&wanted, k));
        if same {
            x.say(&format!(
                "terminating-gateway {}: unchanged ({} already linked)",
                a.gateway, a.service
            ));
            return Ok(());
        }
        services[i] = wanted;
    } else {
        services.push(wanted);
    }
    entry["Services"] = json!(services);
    x.put_entry("config entry", entry, cas).await?;
    let others = services.len() - 1;
    x.say(&format!(
        "terminating-gateway {}: {} {}{}",
        a.gateway,
        if pos.is_some() { "updated" } else { "linked" },
        a.service,
        if others > 0 {
            format!(" ({others} other linked services kept)")
        } else {
            String::new()
        }
    ));
    Ok(())
}

/// Step: `service-defaults` with the protocol.
async fn step_defaults(x: &mut Exec, a: &AddArgs) -> Result<(), CliError> {
    x.begin();
    let path = format!("/v1/config/service-defaults/{}", escape_path(&a.service));
    let current = x
        .read(&path, &[])
        .await
        .map_err(|e| x.fail("service-defaults", e))?;
    let proto = a.protocol.as_str();
    let (mut entry, cas) = match current {
        Some(e) => {
            if str_of(&e, "Protocol") == proto {
                x.say(&format!(
                    "service-defaults {}: unchanged (protocol {proto})",
                    a.service
                ));
                return Ok(());
            }
            let idx = e.get("ModifyIndex").and_then(Value::as_u64).unwrap_or(0);
            (e, idx)
        }
        None => (
            json!({"Kind": "service-defaults", "Name": a.service,
                   "Meta": {MANAGED_META: a.gateway}}),
            0,
        ),
    };
    entry["Protocol"] = json!(proto);
    x.put_entry("service-defaults", entry, cas).await?;
    x.say(&format!("service-defaults {}: protocol {proto}", a.service));
    Ok(())
}

/// Step: allow intentions for the callers.
async fn step_intentions(x: &mut Exec, a: &AddArgs) -> Result<(), CliError> {
    x.begin();
    if a.allow.is_empty() {
        x.say("intentions: none asked (--allow CALLER adds one)");
        return Ok(());
    }
    let mut done = Vec::new();
    for caller in &a.allow {
        let q = [
            ("source", caller.clone()),
            ("destination", a.service.clone()),
        ];
        let current = x
            .read("/v1/connect/intentions/exact", &q)
            .await
            .map_err(|e| x.fail("intentions", e))?;
        if current
            .as_ref()
            .is_some_and(|i| str_of(i, "Action") == "allow")
        {
            done.push(format!("{caller} already allowed"));
            continue;
        }
        let body = json!({"Action": "allow", "Description": INTENTION_DESCRIPTION});
        x.write(Method::PUT, "/v1/connect/intentions/exact", &q, Some(&body))
            .await
            .map_err(|e| x.fail("intentions", e))?;
        done.push(format!("{caller} => {} allowed", a.service));
    }
    x.say(&format!("intentions: {}", done.join(", ")));
    Ok(())
}

/// The agent address the CLI and the proxies use when none is given.
const DEFAULT_AGENT: &str = "http://127.0.0.1:8500";

/// The systemd unit running the gateway (the scenario's unit).
///
/// When the operator's commands talk to an agent that is not at the default
/// address, the unit tells the gateway where that agent is.
fn unit_text(gateway: &str, token_file: &str, user: Option<&str>, agent: &str) -> String {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/usr/bin/meshgate".into());
    let mut user_lines = match user {
        Some(u) => format!("User={u}\nGroup={u}\n"),
        None => String::new(),
    };
    if agent != DEFAULT_AGENT {
        user_lines.push_str(&format!("Environment=CONSUL_HTTP_ADDR={agent}\n"));
    }
    format!(
        "# Written by `meshgate gateway external add --systemd`.\n\
[Unit]\n\
Description=meshgate terminating gateway {gateway}\n\
Wants=network-online.target\n\
After=network-online.target\n\
\n\
[Service]\n\
Type=notify\n\
NotifyAccess=main\n\
ExecStart={bin} connect envoy -token-file {token_file} -admin-bind localhost:0 -gateway=terminating -register -service {gateway}\n\
Restart=on-failure\n\
RestartSec=2\n\
{user_lines}\
NoNewPrivileges=yes\n\
ProtectSystem=strict\n\
ProtectHome=yes\n\
PrivateTmp=yes\n\
CapabilityBoundingSet=\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n"
    )
}

/// Step: the systemd unit.
fn step_unit(x: &mut Exec, a: &AddArgs, token_file: &str, user: Option<&str>) -> CliResult {
    x.begin();
    if !a.systemd {
        x.say("systemd unit: not asked (--systemd writes one)");
        return Ok(());
    }
    let path = unit_path(&a.systemd_dir, &a.gateway);
    let text = unit_text(&a.gateway, token_file, user, &x.client.base);
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        x.say(&format!("systemd unit {}: unchanged", path.display()));
        return Ok(());
    }
    x.write_file(&path, &text, 0o644, None)
        .map_err(|e| x.fail("systemd unit", e))?;
    x.say(&format!(
        "systemd unit {}: written; start it with: systemctl daemon-reload && systemctl enable --now {}",
        path.display(),
        a.gateway
    ));
    Ok(())
}

fn validate_name(what: &str, v: &str) -> CliResult {
    let ok = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "Invalid {what} {v:?}: use letters, digits, '-', '_' and '.'"
        )))
    }
}

async fn add(a: AddArgs) -> CliResult {
    validate_name("service name", &a.service)?;
    validate_name("gateway name", &a.gateway)?;
    if a.address.trim().is_empty() {
        return Err(CliError::new("Missing --address"));
    }
    if a.port == 0 {
        return Err(CliError::new("Invalid --port 0"));
    }
    if a.sni.is_some() && a.ca_file.is_none() {
        return Err(CliError::new(
            "--sni needs --ca-file: without a CA the gateway does not originate TLS",
        ));
    }
    for f in [&a.ca_file, &a.cert_file, &a.key_file]
        .into_iter()
        .flatten()
    {
        if !Path::new(f).is_file() {
            return Err(CliError::new(format!("{f}: no such file")));
        }
    }
    for c in &a.allow {
        validate_name("caller", c)?;
    }
    let node = a
        .node
        .clone()
        .unwrap_or_else(|| format!("{}-external-node", a.service));
    let token_file = a
        .token_file
        .clone()
        .unwrap_or_else(|| default_token_file(&a.gateway));
    let user_name = a.user.clone().unwrap_or_else(|| a.gateway.clone());
    let owner = system_user(&user_name);
    if a.user.is_some() && owner.is_none() {
        return Err(CliError::new(format!("No system user {user_name:?}")));
    }
    let mut x = Exec {
        client: a.api.client()?,
        dry: a.dry_run,
        total: 7,
        step: 0,
        changed: false,
    };
    if a.dry_run {
        println!("Dry run: nothing is changed; the calls and files below would be.");
    }
    if acls_enabled(&x).await? {
        step_policy(&mut x, &a.gateway, &a.service).await?;
        step_token(&mut x, &a.gateway, Path::new(&token_file), owner).await?;
    } else {
        x.begin();
        x.say("policy: ACLs are disabled, none needed");
        x.begin();
        x.say("token: ACLs are disabled, none needed");
    }
    step_catalog(&mut x, &a, &node).await?;
    step_entry(&mut x, &a).await?;
    step_defaults(&mut x, &a).await?;
    step_intentions(&mut x, &a).await?;
    step_unit(&mut x, &a, &token_file, owner.map(|_| user_name.as_str()))?;
    if !x.changed {
        println!(
            "Nothing changed: {} is already published through {}.",
            a.service, a.gateway
        );
    } else if !a.dry_run {
        println!("{} is published through {}.", a.service, a.gateway);
    }
    Ok(())
}

// === remove ===

async fn remove(a: RemoveArgs) -> CliResult {
    validate_name("service name", &a.service)?;
    validate_name("gateway name", &a.gateway)?;
    let mut x = Exec {
        client: a.api.client()?,
        dry: a.dry_run,
        total: 6,
        step: 0,
        changed: false,
    };
    if a.dry_run {
        println!("Dry run: nothing is changed; the calls and files below would be.");
    }
    // 1. Intentions `add` created for the service.
    x.begin();
    let all = x
        .read("/v1/connect/intentions", &[])
        .await
        .map_err(|e| x.fail("intentions", e))?
        .unwrap_or(Value::Null);
    let mut removed = Vec::new();
    for i in all.as_array().into_iter().flatten() {
        if str_of(i, "DestinationName") == a.service
            && str_of(i, "Description") == INTENTION_DESCRIPTION
        {
            let q = [
                ("source", str_of(i, "SourceName").to_string()),
                ("destination", a.service.clone()),
            ];
            x.write(Method::DELETE, "/v1/connect/intentions/exact", &q, None)
                .await
                .map_err(|e| x.fail("intentions", e))?;
            removed.push(str_of(i, "SourceName").to_string());
        }
    }
    if removed.is_empty() {
        x.say("intentions: none created by add");
    } else {
        x.say(&format!("intentions: removed {}", removed.join(", ")));
    }
    // 2. service-defaults, when `add` created it.
    x.begin();
    let path = format!("/v1/config/service-defaults/{}", escape_path(&a.service));
    match x
        .read(&path, &[])
        .await
        .map_err(|e| x.fail("service-defaults", e))?
    {
        Some(e) if e.pointer(&format!("/Meta/{MANAGED_META}")).is_some() => {
            x.write(Method::DELETE, &path, &[], None)
                .await
                .map_err(|e| x.fail("service-defaults", e))?;
            x.say(&format!("service-defaults {}: deleted", a.service));
        }
        Some(_) => x.say(&format!(
            "service-defaults {}: kept (not created by add)",
            a.service
        )),
        None => x.say(&format!("service-defaults {}: none", a.service)),
    }
    // 3. The service in the gateway's entry; the entry when empty.
    x.begin();
    let path = format!("/v1/config/terminating-gateway/{}", escape_path(&a.gateway));
    let mut gateway_empty = false;
    match x
        .read(&path, &[])
        .await
        .map_err(|e| x.fail("config entry", e))?
    {
        None => {
            gateway_empty = true;
            x.say(&format!("terminating-gateway {}: none", a.gateway));
        }
        Some(mut e) => {
            let cas = e.get("ModifyIndex").and_then(Value::as_u64).unwrap_or(0);
            let mut services = e
                .get("Services")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let before = services.len();
            services.retain(|s| str_of(s, "Name") != a.service);
            if services.len() == before {
                gateway_empty = services.is_empty();
                x.say(&format!(
                    "terminating-gateway {}: unchanged ({} not linked)",
                    a.gateway, a.service
                ));
            } else if services.is_empty() {
                gateway_empty = true;
                x.delete_entry("config entry", &path, cas).await?;
                x.say(&format!(
                    "terminating-gateway {}: deleted (no linked service left)",
                    a.gateway
                ));
            } else {
                e["Services"] = json!(services);
                x.put_entry("config entry", e, cas).await?;
                x.say(&format!(
                    "terminating-gateway {}: unlinked {} ({} other linked services kept)",
                    a.gateway,
                    a.service,
                    services.len()
                ));
            }
        }
    }
    // 4. The catalog node (or only the service, when the node has others).
    x.begin();
    let node = match &a.node {
        Some(n) => Some(n.clone()),
        None => x
            .read(
                &format!("/v1/catalog/service/{}", escape_path(&a.service)),
                &[],
            )
            .await
            .map_err(|e| x.fail("catalog", e))?
            .and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|s| {
                        s.pointer("/NodeMeta/external-node").and_then(Value::as_str) == Some("true")
                    })
                    .map(|s| str_of(s, "Node").to_string())
            }),
    };
    match node {
        None => x.say(&format!("catalog: no external node has {}", a.service)),
        Some(node) => {
            let services = x
                .read(&format!("/v1/catalog/node/{}", escape_path(&node)), &[])
                .await
                .map_err(|e| x.fail("catalog", e))?
                .and_then(|v| v.get("Services").and_then(Value::as_object).cloned())
                .unwrap_or_default();
            let others: Vec<&String> = services.keys().filter(|k| **k != a.service).collect();
            if others.is_empty() {
                x.write(
                    Method::PUT,
                    "/v1/catalog/deregister",
                    &[],
                    Some(&json!({"Node": node})),
                )
                .await
                .map_err(|e| x.fail("catalog", e))?;
                x.say(&format!("catalog: deregistered node {node}"));
            } else {
                x.write(
                    Method::PUT,
                    "/v1/catalog/deregister",
                    &[],
                    Some(&json!({"Node": node, "ServiceID": a.service})),
                )
                .await
                .map_err(|e| x.fail("catalog", e))?;
                x.say(&format!(
                    "catalog: deregistered {} from node {node} ({} other services kept)",
                    a.service,
                    others.len()
                ));
            }
        }
    }
    // 5. The policy (the service's rule; the policy and token when the
    //    gateway fronts nothing any more).
    x.begin();
    if acls_enabled(&x).await? {
        remove_policy(&mut x, &a, gateway_empty).await?;
    } else {
        x.say("policy and token: ACLs are disabled, none");
    }
    // 6. The unit, when the gateway fronts nothing any more.
    x.begin();
    let unit = unit_path(&a.systemd_dir, &a.gateway);
    if gateway_empty && unit.exists() {
        x.remove_file(&unit)
            .map_err(|e| x.fail("systemd unit", e))?;
        x.say(&format!(
            "systemd unit {}: removed (stop it first: systemctl disable --now {})",
            unit.display(),
            a.gateway
        ));
    } else if gateway_empty {
        x.say("systemd unit: none");
    } else {
        x.say("systemd unit: kept (the gateway fronts other services)");
    }
    if !x.changed {
        println!(
            "Nothing changed: {} was not published through {}.",
            a.service, a.gateway
        );
    } else if !a.dry_run {
        println!("{} is withdrawn from {}.", a.service, a.gateway);
    }
    Ok(())
}

async fn remove_policy(x: &mut Exec, a: &RemoveArgs, gateway_empty: bool) -> CliResult {
    let name = policy_name(&a.gateway);
    let path = format!("/v1/acl/policy/name/{}", escape_path(&name));
    let Some(p) = x.read(&path, &[]).await.map_err(|e| x.fail("policy", e))? else {
        x.say(&format!("policy {name}: none"));
        return Ok(());
    };
    let id = str_of(&p, "ID").to_string();
    if gateway_empty {
        // The token first (it names the policy), then the policy.
        let desc = token_description(&a.gateway);
        let tokens = x
            .read("/v1/acl/tokens", &[("policy", id.clone())])
            .await
            .map_err(|e| x.fail("token", e))?
            .unwrap_or(Value::Null);
        let mut gone = 0;
        for t in tokens.as_array().into_iter().flatten() {
            if str_of(t, "Description") == desc {
                let accessor = str_of(t, "AccessorID");
                x.write(
                    Method::DELETE,
                    &format!("/v1/acl/token/{accessor}"),
                    &[],
                    None,
                )
                .await
                .map_err(|e| x.fail("token", e))?;
                gone += 1;
            }
        }
        let token_file = a
            .token_file
            .clone()
            .unwrap_or_else(|| default_token_file(&a.gateway));
        let file = Path::new(&token_file);
        if file.exists() {
            x.remove_file(file).map_err(|e| x.fail("token", e))?;
        }
        x.write(Method::DELETE, &format!("/v1/acl/policy/{id}"), &[], None)
            .await
            .map_err(|e| x.fail("policy", e))?;
        x.say(&format!(
            "policy {name}: deleted, with {gone} gateway token(s) and {token_file} (no linked service left)"
        ));
        return Ok(());
    }
    let mut parsed = meshgate_acl::parse_rules(str_of(&p, "Rules"))
        .map_err(|e| x.fail("policy", format!("the rules of {name} do not parse: {e}")))?;
    if parsed.rules.remove(&service_key(&a.service)).is_none() {
        x.say(&format!(
            "policy {name}: unchanged (no rule for {})",
            a.service
        ));
        return Ok(());
    }
    let mut body = p.clone();
    body["Rules"] = json!(parsed.to_hcl());
    x.write(
        Method::PUT,
        &format!("/v1/acl/policy/{id}"),
        &[],
        Some(&body),
    )
    .await
    .map_err(|e| x.fail("policy", e))?;
    x.say(&format!(
        "policy {name}: removed service:write on {}",
        a.service
    ));
    Ok(())
}

// === status ===

/// Open connections by service, from a proxy's `/metrics`.
async fn connections(admin: &str) -> Option<BTreeMap<String, u64>> {
    let text = reqwest::Client::new()
        .get(format!("http://{admin}/metrics"))
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("meshgate_proxy_connections_active{") else {
            continue;
        };
        let Some(svc) = rest
            .split("service=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue;
        };
        let n = l
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(svc.to_string()).or_default() += n;
    }
    Some(out)
}

/// The aggregate status of a `CheckServiceNode`.
fn health(e: &Value) -> (&'static str, String) {
    let mut worst = "passing";
    let mut parts = Vec::new();
    for c in e
        .get("Checks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = str_of(c, "Status");
        worst = match (worst, s) {
            (_, "critical") | ("critical", _) => "critical",
            (_, "warning") | ("warning", _) => "warning",
            (w, _) => w,
        };
        parts.push(format!("{} {s}", str_of(c, "CheckID")));
    }
    (worst, parts.join(", "))
}

async fn status(a: StatusArgs) -> CliResult {
    let client = a.api.client()?;
    let gateways: Vec<String> = match &a.gateway {
        Some(g) => vec![g.clone()],
        None => {
            let mut names: Vec<String> = client
                .get("/v1/config/terminating-gateway", &[])
                .await?
                .json::<Vec<Value>>()?
                .iter()
                .map(|e| str_of(e, "Name").to_string())
                .collect();
            let services: BTreeMap<String, Value> =
                client.get("/v1/catalog/services", &[]).await?.json()?;
            for name in services.keys() {
                if names.contains(name) {
                    continue;
                }
                let inst: Vec<Value> = client
                    .get(&format!("/v1/catalog/service/{}", escape_path(name)), &[])
                    .await?
                    .json()?;
                if inst
                    .iter()
                    .any(|i| str_of(i, "ServiceKind") == "terminating-gateway")
                {
                    names.push(name.clone());
                }
            }
            names.sort();
            names
        }
    };
    if gateways.is_empty() {
        println!("No terminating gateways.");
        return Ok(());
    }
    for (n, gw) in gateways.iter().enumerate() {
        if n > 0 {
            println!();
        }
        println!("Gateway {gw}");
        let instances: Vec<Value> = client
            .get(&format!("/v1/health/service/{}", escape_path(gw)), &[])
            .await?
            .json()?;
        let mut conns: BTreeMap<String, u64> = BTreeMap::new();
        println!("  Instances:");
        if instances.is_empty() {
            println!(
                "    none registered (run: meshgate connect envoy -gateway=terminating -register -service {gw})"
            );
        }
        for i in &instances {
            let s = i.get("Service").cloned().unwrap_or(Value::Null);
            let node = i.get("Node").cloned().unwrap_or(Value::Null);
            let addr = match str_of(&s, "Address") {
                "" => str_of(&node, "Address"),
                x => x,
            };
            let (h, _) = health(i);
            let admin = s
                .pointer(&format!("/Meta/{ADMIN_META}"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let c = if admin.is_empty() {
                "connections unknown (no admin endpoint registered)".to_string()
            } else {
                match connections(admin).await {
                    Some(m) => {
                        let total: u64 = m.values().sum();
                        for (k, v) in m {
                            *conns.entry(k).or_default() += v;
                        }
                        format!("{total} open connections (admin {admin})")
                    }
                    None => format!("connections unknown (admin {admin} does not answer)"),
                }
            };
            println!(
                "    {} on {} {}:{}  {h}  {c}",
                str_of(&s, "ID"),
                str_of(&node, "Node"),
                addr,
                s.get("Port").and_then(Value::as_u64).unwrap_or(0)
            );
        }
        let linked: Vec<Value> = client
            .get(
                &format!("/v1/catalog/gateway-services/{}", escape_path(gw)),
                &[],
            )
            .await?
            .json()?;
        println!("  Services:");
        if linked.is_empty() {
            println!("    none linked");
        }
        for l in &linked {
            let svc = l
                .pointer("/Service/Name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let protocol = match client
                .send(
                    Method::GET,
                    &format!("/v1/config/service-defaults/{}", escape_path(&svc)),
                    &[],
                    None,
                )
                .await?
            {
                r if r.status == 200 => str_of(&r.json::<Value>()?, "Protocol").to_string(),
                _ => String::new(),
            };
            let protocol = if protocol.is_empty() {
                "tcp".to_string()
            } else {
                protocol
            };
            let tls = if str_of(l, "CAFile").is_empty() {
                "TLS to the service: none (plain TCP)".to_string()
            } else {
                let mut t = format!("TLS to the service: CAFile {}", str_of(l, "CAFile"));
                if !str_of(l, "SNI").is_empty() {
                    t.push_str(&format!(", SNI {}", str_of(l, "SNI")));
                }
                if !str_of(l, "CertFile").is_empty() {
                    t.push_str(&format!(", client certificate {}", str_of(l, "CertFile")));
                }
                t
            };
            let open = conns.get(&svc).copied();
            println!(
                "    {svc}  protocol {protocol}  {tls}{}",
                open.map(|n| format!("  {n} open connections"))
                    .unwrap_or_default()
            );
            let ext: Vec<Value> = client
                .get(&format!("/v1/health/service/{}", escape_path(&svc)), &[])
                .await?
                .json()?;
            if ext.is_empty() {
                println!("      no instance registered");
            }
            for e in &ext {
                let s = e.get("Service").cloned().unwrap_or(Value::Null);
                let node = e.get("Node").cloned().unwrap_or(Value::Null);
                let addr = match str_of(&s, "Address") {
                    "" => str_of(&node, "Address"),
                    x => x,
                };
                let (h, detail) = health(e);
                println!(
                    "      {} {}:{}  {h}{}",
                    str_of(&node, "Node"),
                    addr,
                    s.get("Port").and_then(Value::as_u64).unwrap_or(0),
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(" ({detail})")
                    }
                );
            }
        }
    }
    Ok(())
}
