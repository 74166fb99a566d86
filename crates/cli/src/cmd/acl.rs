//! `meshgate acl ...`: bootstrap, agent tokens, policies, tokens, roles,
//! templated policies, auth methods and binding rules, with the flags, output
//! (pretty and `-format json`) and messages of Consul's `consul acl` commands.
//!
//! This file holds the command tree and what the subcommands share: output
//! formats, Go-compatible JSON, reading `@file`/`-` arguments, calls to the
//! agent, and resolving ID prefixes and names.

mod auth;
mod format;
mod policy;
mod role;
mod templated;
mod token;
pub mod types;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::{CliError, CliResult, Client, HttpFlags};
use types::{NodeIdentity, Policy, Role, ServiceIdentity, TemplateVars, TemplatedPolicy, Token};

/// ACL commands.
#[derive(Subcommand, Debug)]
pub enum AclCmd {
    /// Bootstrap the ACL system and print the initial management token.
    Bootstrap(BootstrapArgs),
    /// Set a token the agent uses (default, agent, recovery, replication, ...).
    SetAgentToken(SetAgentTokenArgs),
    /// Create, read, update, delete and list ACL policies.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Create, read, update, delete, list and clone ACL tokens.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Create, read, update, delete and list ACL roles.
    #[command(subcommand)]
    Role(role::RoleCmd),
    /// List, read and preview the built-in templated policies.
    #[command(subcommand)]
    TemplatedPolicy(templated::TemplatedCmd),
    /// Create, read, update, delete and list auth methods.
    #[command(subcommand)]
    AuthMethod(auth::AuthMethodCmd),
    /// Create, read, update, delete and list binding rules.
    #[command(subcommand)]
    BindingRule(auth::BindingRuleCmd),
}

/// Runs an `acl` subcommand.
pub async fn run(cmd: AclCmd) -> CliResult {
    match cmd {
        AclCmd::Bootstrap(a) => bootstrap(a).await,
        AclCmd::SetAgentToken(a) => set_agent_token(a).await,
        AclCmd::Policy(c) => policy::run(c).await,
        AclCmd::Token(c) => token::run(c).await,
        AclCmd::Role(c) => role::run(c).await,
        AclCmd::TemplatedPolicy(c) => templated::run(c).await,
        AclCmd::AuthMethod(c) => auth::run_method(c).await,
        AclCmd::BindingRule(c) => auth::run_rule(c).await,
    }
}

// === output ===

/// `-format pretty|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Pretty,
    Json,
}

/// Reads `-format`; an unknown value is `Unknown format: <f>`.
pub(crate) fn parse_format(f: &str) -> Result<Format, CliError> {
    match f {
        "pretty" => Ok(Format::Pretty),
        "json" => Ok(Format::Json),
        other => Err(CliError::new(format!("Unknown format: {other}"))),
    }
}

/// Prints a command's output followed by a newline; nothing when it is empty.
pub(crate) fn emit(out: &str) {
    if !out.is_empty() {
        println!("{out}");
    }
}

/// Either the pretty text or the Go-style JSON of `v`.
pub(crate) fn render<T: Serialize>(f: Format, v: &T, pretty: impl FnOnce() -> String) -> String {
    match f {
        Format::Pretty => pretty(),
        Format::Json => go_json(v),
    }
}

/// Go's `json.MarshalIndent(v, "", "    ")`: four-space indent, `<`, `>`, `&`,
/// U+2028 and U+2029 escaped.
pub(crate) fn go_json<T: Serialize>(v: &T) -> String {
    let v = serde_json::to_value(v).unwrap_or(Value::Null);
    go_json_indent(&v, b"    ")
}

/// [`go_json`] with another indent.
pub(crate) fn go_json_indent(v: &Value, indent: &[u8]) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if v.serialize(&mut ser).is_err() {
        return "null".into();
    }
    String::from_utf8_lossy(&out)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Sorts object keys at every level, as Go writes its maps.
pub(crate) fn sort_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, mut val) in entries {
                sort_keys(&mut val);
                m.insert(k, val);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// Go's `%q` of a string.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The help of a subcommand (`["acl", "policy", "create"]`), printed after a
/// missing required flag as Consul does.
pub(crate) fn help_for(path: &[&str]) -> String {
    use clap::CommandFactory;
    let mut cmd = crate::Cli::command();
    cmd.build();
    let mut cur = &mut cmd;
    for p in path {
        match cur.find_subcommand_mut(p) {
            Some(c) => cur = c,
            None => return String::new(),
        }
    }
    cur.render_help().to_string()
}

/// A message followed by the command's help.
pub(crate) fn with_help(msg: &str, path: &[&str]) -> CliError {
    CliError::new(format!("{msg}\n{}", help_for(path).trim_end()))
}

/// `Missing required '-<flag>' flag`, then the command's help.
pub(crate) fn missing_flag(flag: &str, path: &[&str]) -> CliError {
    with_help(&format!("Missing required '-{flag}' flag"), path)
}

// === data arguments ===

/// The text of an I/O error the way Go's `os` package words it.
pub(crate) fn go_io_error(op: &str, path: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let what = match e.kind() {
        K::NotFound => "no such file or directory".to_string(),
        K::PermissionDenied => "permission denied".to_string(),
        K::IsADirectory => return format!("read {path}: is a directory"),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    };
    format!("{op} {path}: {what}")
}

/// Reads a whole file, with Go's error text.
pub(crate) fn read_file(path: &str) -> Result<String, String> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| go_io_error("open", path, &e))
}

fn read_stdin() -> Result<String, String> {
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
        .map_err(|e| format!("Failed to read stdin: {e}"))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A value that may be a literal, `@file` or `-` for stdin. A value longer
/// than one character that starts with `-` is a literal.
pub(crate) fn load_data_source(data: &str) -> Result<String, String> {
    if data.is_empty() {
        return Ok(String::new());
    }
    if let Some(path) = data.strip_prefix('@') {
        return read_file(path).map_err(|e| format!("Failed to read file: {e}"));
    }
    if data == "-" {
        return read_stdin();
    }
    Ok(data.to_string())
}

/// A file path or `-` for stdin (no literal).
fn load_data_source_no_raw(data: &str) -> Result<String, String> {
    if data.is_empty() {
        return Err("Failed to load data: must specify a file path or '-' for stdin".into());
    }
    if data == "-" {
        return read_stdin();
    }
    read_file(data).map_err(|e| format!("Failed to read file: {e}"))
}

// === calls to the agent ===

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("Failed to decode response: {e}"))
}

/// A request whose non-200 answers are errors worded like the Go client's.
pub(crate) async fn call(
    c: &Client,
    method: Method,
    path: &str,
    query: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> Result<Vec<u8>, String> {
    let r = c
        .send(method, path, query, body)
        .await
        .map_err(|e| e.message)?;
    if r.status != 200 {
        return Err(r.error_text());
    }
    Ok(r.body)
}

/// GET and decode.
pub(crate) async fn get<T: DeserializeOwned>(
    c: &Client,
    path: &str,
    query: &[(&str, String)],
) -> Result<T, String> {
    decode(&call(c, Method::GET, path, query, None).await?)
}

/// GET and decode; a 404 is `None` (the Go client's "not found" reads).
pub(crate) async fn get_opt<T: DeserializeOwned>(
    c: &Client,
    path: &str,
) -> Result<Option<T>, String> {
    let r = c
        .send(Method::GET, path, &[], None)
        .await
        .map_err(|e| e.message)?;
    match r.status {
        200 => decode(&r.body).map(Some),
        404 => Ok(None),
        _ => Err(r.error_text()),
    }
}

/// PUT or POST a JSON body and decode the answer.
pub(crate) async fn send<T: DeserializeOwned, B: Serialize>(
    c: &Client,
    method: Method,
    path: &str,
    body: &B,
) -> Result<T, String> {
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    decode(&call(c, method, path, &[], Some(body)).await?)
}

/// DELETE.
pub(crate) async fn delete(c: &Client, path: &str) -> Result<(), String> {
    call(c, Method::DELETE, path, &[], None).await.map(|_| ())
}

/// A name as one URL path segment (Go's `url.QueryEscape`).
pub(crate) fn query_escape(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// === IDs and names ===

const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";
const BUILTIN_POLICIES: &[(&str, &str)] = &[
    ("00000000-0000-0000-0000-000000000001", "global-management"),
    (
        "00000000-0000-0000-0000-000000000002",
        "builtin/global-read-only",
    ),
];

/// The one ID among `ids` that starts with `prefix`.
fn unique_prefix<'a>(
    ids: impl Iterator<Item = &'a str>,
    prefix: &str,
    kind: &str,
) -> Result<Option<String>, String> {
    let mut found: Option<&str> = None;
    for id in ids {
        if id.starts_with(prefix) {
            if found.is_some() {
                return Err(format!("Partial {kind} ID is not unique"));
            }
            found = Some(id);
        }
    }
    Ok(found.map(str::to_string))
}

/// A token accessor from a unique prefix (`anonymous` is the anonymous token).
pub(crate) async fn token_accessor_from_partial(c: &Client, p: &str) -> Result<String, String> {
    if p == "anonymous" {
        return Ok(ANONYMOUS_ACCESSOR.into());
    }
    if p.len() == 36 {
        return Ok(p.into());
    }
    let tokens: Vec<Token> = get(c, "/v1/acl/tokens", &[]).await?;
    unique_prefix(tokens.iter().map(|t| t.accessor_id.as_str()), p, "token")?
        .ok_or_else(|| format!("No such token ID with prefix: {p}"))
}

/// A policy ID from a unique prefix, a full ID, or a built-in policy's name.
pub(crate) async fn policy_id_from_partial(c: &Client, p: &str) -> Result<String, String> {
    if let Some((id, _)) = BUILTIN_POLICIES
        .iter()
        .find(|(id, name)| *name == p || *id == p)
    {
        return Ok((*id).into());
    }
    if p.len() == 36 {
        return Ok(p.into());
    }
    let list: Vec<Policy> = get(c, "/v1/acl/policies", &[]).await?;
    unique_prefix(list.iter().map(|x| x.id.as_str()), p, "policy")?
        .ok_or_else(|| format!("No such policy ID with prefix: {p}"))
}

/// A policy by name (`None` when there is none).
pub(crate) async fn policy_by_name(c: &Client, name: &str) -> Result<Option<Policy>, String> {
    if name.is_empty() {
        return Err("No name specified".into());
    }
    get_opt(c, &format!("/v1/acl/policy/name/{}", query_escape(name)))
        .await
        .map_err(|e| format!("Failed to find policy with name {name}: {e}"))
}

/// A policy ID by name.
pub(crate) async fn policy_id_by_name(c: &Client, name: &str) -> Result<String, String> {
    policy_by_name(c, name)
        .await?
        .map(|p| p.id)
        .ok_or_else(|| format!("No such policy with name: {name}"))
}

/// A role ID from a unique prefix.
pub(crate) async fn role_id_from_partial(c: &Client, p: &str) -> Result<String, String> {
    if p.len() == 36 {
        return Ok(p.into());
    }
    let list: Vec<Role> = get(c, "/v1/acl/roles", &[]).await?;
    unique_prefix(list.iter().map(|x| x.id.as_str()), p, "role")?
        .ok_or_else(|| format!("No such role ID with prefix: {p}"))
}

/// A role ID by exact name.
pub(crate) async fn role_id_by_name(c: &Client, name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("No name specified".into());
    }
    let list: Vec<Role> = get(c, "/v1/acl/roles", &[]).await?;
    list.into_iter()
        .find(|r| r.name == name)
        .map(|r| r.id)
        .ok_or_else(|| format!("No such role with name {name}"))
}

/// A binding rule ID from a unique prefix.
pub(crate) async fn binding_rule_id_from_partial(c: &Client, p: &str) -> Result<String, String> {
    if p.len() == 36 {
        return Ok(p.into());
    }
    let list: Vec<types::BindingRule> = get(c, "/v1/acl/binding-rules", &[]).await?;
    unique_prefix(list.iter().map(|x| x.id.as_str()), p, "rule")?
        .ok_or_else(|| format!("no such rule ID with prefix: {p}: ACL not found"))
}

// === identities and templated policies from flags ===

/// `-service-identity NAME` or `NAME:DC1,DC2`.
pub(crate) fn service_identities(raw: &[String]) -> Result<Vec<ServiceIdentity>, String> {
    raw.iter()
        .map(|r| {
            let parts: Vec<&str> = r.split(':').collect();
            match parts.as_slice() {
                [name] => Ok(ServiceIdentity {
                    service_name: (*name).into(),
                    datacenters: Vec::new(),
                }),
                [name, dcs] => Ok(ServiceIdentity {
                    service_name: (*name).into(),
                    datacenters: dcs.split(',').map(str::to_string).collect(),
                }),
                _ => Err(format!(
                    "Malformed -service-identity argument: {}",
                    go_quote(r)
                )),
            }
        })
        .collect()
}

/// `-node-identity NAME:DC`.
pub(crate) fn node_identities(raw: &[String]) -> Result<Vec<NodeIdentity>, String> {
    raw.iter()
        .map(|r| match r.split(':').collect::<Vec<_>>().as_slice() {
            [name, dc] => Ok(NodeIdentity {
                node_name: (*name).into(),
                datacenter: (*dc).into(),
            }),
            _ => Err(format!(
                "Malformed -node-identity argument: {}",
                go_quote(r)
            )),
        })
        .collect()
}

/// `-var name:value` pairs; only `name` (any case) means something today.
fn template_vars(raw: &[String]) -> Result<Option<TemplateVars>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    let mut vars = TemplateVars::default();
    for r in raw {
        match r.split(':').collect::<Vec<_>>().as_slice() {
            [k, v] => {
                if k.eq_ignore_ascii_case("name") {
                    vars.name = (*v).into();
                }
            }
            _ => {
                return Err(format!(
                    "malformed -var argument: {}, expecting VariableName:Value",
                    go_quote(r)
                ));
            }
        }
    }
    Ok(Some(vars))
}

/// The templated policies of `-templated-policy NAME -var ...` and of a
/// `-templated-policy-file` (HCL: `TemplatedPolicy "builtin/service" { Name = "api" }`).
pub(crate) fn templated_policies(
    name: &str,
    file: &str,
    vars: &[String],
) -> Result<Vec<TemplatedPolicy>, String> {
    let mut out = Vec::new();
    if !name.is_empty() {
        out.push(TemplatedPolicy {
            template_name: name.into(),
            template_variables: template_vars(vars)?,
            datacenters: Vec::new(),
        });
    }
    if !file.is_empty() {
        let text = read_file(file).map_err(|e| format!("Failed to read file: {e}"))?;
        let doc = meshgate_hcl::parse_to_json(&text).map_err(|e| e.to_string())?;
        let Some(Value::Object(by_name)) = doc.get("TemplatedPolicy") else {
            return Ok(out);
        };
        for (tname, entries) in by_name {
            let entries: Vec<&Value> = match entries {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for e in entries {
                let var_name = e
                    .as_object()
                    .and_then(|m| {
                        m.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("name"))
                            .and_then(|(_, v)| v.as_str())
                    })
                    .unwrap_or("");
                out.push(TemplatedPolicy {
                    template_name: tname.clone(),
                    template_variables: Some(TemplateVars {
                        name: var_name.into(),
                    }),
                    datacenters: Vec::new(),
                });
            }
        }
    }
    Ok(out)
}

// === bootstrap ===

#[derive(Args, Debug)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
    /// A file holding the secret to use for the management token, or - for stdin.
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

async fn bootstrap(a: BootstrapArgs) -> CliResult {
    if a.args.len() > 1 {
        return Err(CliError::new("This command takes up to one argument"));
    }
    let given = match a.args.first() {
        Some(src) => load_data_source_no_raw(src)
            .map_err(|e| CliError::new(format!("Error reading provided token: {e}")))?,
        None => String::new(),
    };
    let secret = given.trim();
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let body = if secret.is_empty() {
        None
    } else {
        Some(
            serde_json::to_vec(&serde_json::json!({ "BootstrapSecret": secret }))
                .unwrap_or_default(),
        )
    };
    let t: Token = call(&c, Method::PUT, "/v1/acl/bootstrap", &[], body)
        .await
        .and_then(|b| decode(&b))
        .map_err(|e| CliError::new(format!("Failed ACL bootstrapping: {e}")))?;
    emit(&render(fmt, &t, || format::token(&t, false)));
    Ok(())
}

// === set-agent-token ===

#[derive(Args, Debug)]
pub struct SetAgentTokenArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// TYPE (default, agent, recovery, replication,
    /// config_file_service_registration, dns) and TOKEN (literal, @file or -).
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

async fn set_agent_token(a: SetAgentTokenArgs) -> CliResult {
    let (kind, token) = match a.args.as_slice() {
        [] => return Err(CliError::new("Error! Missing TYPE and TOKEN arguments")),
        [one] => {
            return Err(CliError::new(match one.as_str() {
                "default" | "agent" | "recovery" | "replication" => "Error! Missing TOKEN argument",
                _ => "Error! MISSING TYPE argument",
            }));
        }
        [kind, token] => (
            kind.clone(),
            load_data_source(token).map_err(|e| CliError::new(format!("Error! {e}")))?,
        ),
        more => {
            return Err(CliError::new(format!(
                "Error! Too many arguments: expected 2 got {}",
                more.len()
            )));
        }
    };
    let c = Client::new(&a.http).map_err(|e| {
        CliError::new(e.message.replace(
            "Error connecting to Consul agent",
            "Error connecting to Consul Agent",
        ))
    })?;
    // Older agents know some slots by their legacy names only.
    let targets: &[&str] = match kind.as_str() {
        "default" => &["default", "acl_token"],
        "agent" => &["agent", "acl_agent_token"],
        "recovery" => &["agent_recovery", "agent_master", "acl_agent_master_token"],
        "replication" => &["replication", "acl_replication_token"],
        "config_file_service_registration" => &["config_file_service_registration"],
        "dns" => &["dns"],
        _ => return Err(CliError::new("Unknown token type")),
    };
    let body = serde_json::to_vec(&serde_json::json!({ "Token": token })).unwrap_or_default();
    let mut last = String::new();
    for t in targets {
        let r = c
            .send(
                Method::PUT,
                &format!("/v1/agent/token/{t}"),
                &[],
                Some(body.clone()),
            )
            .await
            .map_err(|e| {
                CliError::new(format!(
                    "Failed to set ACL token {}: {}",
                    go_quote(&kind),
                    e.message
                ))
            })?;
        if r.status == 200 {
            println!("ACL token {} set successfully", go_quote(&kind));
            return Ok(());
        }
        last = r.error_text();
        if r.status != 404 {
            break;
        }
    }
    Err(CliError::new(format!(
        "Failed to set ACL token {}: {last}",
        go_quote(&kind)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_json_escapes_html_and_indents() {
        let v = serde_json::json!({"SecretID": "<hidden>", "A": [], "B": {"x": 1}});
        assert_eq!(
            go_json(&v),
            "{\n    \"SecretID\": \"\\u003chidden\\u003e\",\n    \"A\": [],\n    \"B\": {\n        \"x\": 1\n    }\n}"
        );
    }

    #[test]
    fn identities_from_flags() {
        let s = service_identities(&["web".into(), "api:dc1,dc2".into()]).unwrap();
        assert_eq!(s[1].datacenters, vec!["dc1", "dc2"]);
        assert_eq!(
            service_identities(&["a:b:c".into()]).unwrap_err(),
            "Malformed -service-identity argument: \"a:b:c\""
        );
        assert_eq!(
            node_identities(&["n1".into()]).unwrap_err(),
            "Malformed -node-identity argument: \"n1\""
        );
        assert_eq!(
            template_vars(&["name".into()]).unwrap_err(),
            "malformed -var argument: \"name\", expecting VariableName:Value"
        );
        assert_eq!(
            template_vars(&["Name:web".into()]).unwrap().unwrap().name,
            "web"
        );
    }

    #[test]
    fn data_sources() {
        assert_eq!(load_data_source("-x").unwrap(), "-x");
        assert_eq!(load_data_source("lit").unwrap(), "lit");
        assert_eq!(
            load_data_source("@/nonexistent/x").unwrap_err(),
            "Failed to read file: open /nonexistent/x: no such file or directory"
        );
    }

    #[test]
    fn key_sorting() {
        let mut v = serde_json::json!({"b": {"d": 1, "c": 2}, "a": [ {"z": 1, "y": 2} ]});
        sort_keys(&mut v);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"a":[{"y":2,"z":1}],"b":{"c":2,"d":1}}"#
        );
    }
}
