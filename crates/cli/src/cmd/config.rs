//! `meshgate config write|read|list|delete`: config entries (terminating
//! gateways, service defaults, intentions, ...) with the flags, messages and
//! output of Consul's `consul config` commands.
//!
//! Files are read by [`meshgate_config_entries::parse_file_text`] (HCL or
//! JSON, Consul's decoder rules); the agent validates what is written.

use clap::{Args, Subcommand};
use meshgate_config_entries::{self as ce, ConfigEntry, DecodeError};
use reqwest::Method;
use serde_json::Value;

use super::acl::{go_io_error, go_json, go_quote};
use crate::client::{CliError, CliResult, Client, HttpFlags};

/// Config entry commands.
#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Create or update a config entry from an HCL or JSON file (or - for stdin).
    Write(WriteArgs),
    /// Print a config entry as JSON.
    Read(ReadArgs),
    /// List the names of the config entries of a kind.
    List(ListArgs),
    /// Delete a config entry.
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct WriteArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Perform a check-and-set with -modify-index (0: only if the entry does not exist).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub cas: Option<bool>,
    /// The ModifyIndex the entry must have for -cas.
    #[arg(long = "modify-index", default_value_t = 0)]
    pub modify_index: u64,
    /// The file with the entry (HCL or JSON), or - for stdin.
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The kind of the entry to read.
    #[arg(long, default_value = "")]
    pub kind: String,
    /// The name of the entry to read.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Read the entry a file describes (its Kind and Name) instead of -kind and -name.
    #[arg(long, default_value = "")]
    pub filename: String,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The kind of the entries to list.
    #[arg(long, default_value = "")]
    pub kind: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The kind of the entry to delete.
    #[arg(long, default_value = "")]
    pub kind: String,
    /// The name of the entry to delete.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Delete the entry a file describes (its Kind and Name) instead of -kind and -name.
    #[arg(long, default_value = "")]
    pub filename: String,
    /// Perform a check-and-set with -modify-index.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub cas: Option<bool>,
    /// The ModifyIndex the entry must have for -cas.
    #[arg(long = "modify-index", default_value_t = 0)]
    pub modify_index: u64,
}

/// Runs a `config` subcommand.
pub async fn run(cmd: ConfigCmd) -> CliResult {
    match cmd {
        ConfigCmd::Write(a) => write(a).await,
        ConfigCmd::Read(a) => read(a).await,
        ConfigCmd::List(a) => list(a).await,
        ConfigCmd::Delete(a) => delete(a).await,
    }
}

/// Reads a file path or `-` (stdin), with Consul's messages.
fn load_no_raw(src: &str) -> Result<String, String> {
    if src.is_empty() {
        return Err("Failed to load data: must specify a file path or '-' for stdin".into());
    }
    if src == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("Failed to read stdin: {e}"))?;
        return Ok(String::from_utf8_lossy(&buf).into_owned());
    }
    std::fs::read(src)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("Failed to read file: {}", go_io_error("open", src, &e)))
}

/// The text after `Failed to decode config entry input: `. Consul wraps
/// syntax errors of the file twice, so they carry the prefix once more.
fn decode_error_text(e: &DecodeError) -> String {
    match e {
        DecodeError::Syntax(s) => format!("Failed to decode config entry input: {s}"),
        other => other.to_string(),
    }
}

/// Loads and decodes a config entry file (`-` for stdin).
fn entry_from_file(src: &str) -> Result<ConfigEntry, CliError> {
    let text = load_no_raw(src).map_err(|e| CliError::new(format!("Failed to load data: {e}")))?;
    ce::parse_file_text(&text).map_err(|e| {
        CliError::new(format!(
            "Failed to decode config entry input: {}",
            decode_error_text(&e)
        ))
    })
}

fn on(b: Option<bool>) -> bool {
    b.unwrap_or(false)
}

/// One path segment of `/v1/config/:kind/:name`.
fn seg(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

async fn write(a: WriteArgs) -> CliResult {
    if a.args.len() != 1 {
        return Err(CliError::new(
            "Must provide exactly one positional argument to specify the config entry to write",
        ));
    }
    let entry = entry_from_file(&a.args[0])?;
    let (kind, name) = (entry.kind(), entry.name().to_string());
    let c = Client::new(&a.http)?;
    let body = serde_json::to_vec(&entry.to_json()).unwrap_or_default();
    let mut q: Vec<(&str, String)> = Vec::new();
    if on(a.cas) {
        q.push(("cas", a.modify_index.to_string()));
    }
    let failed =
        |e: String| CliError::new(format!("Error writing config entry {kind}/{name}: {e}"));
    let r = c
        .send(Method::PUT, "/v1/config", &q, Some(body))
        .await
        .map_err(|e| failed(e.message))?;
    if r.status != 200 {
        return Err(failed(r.error_text()));
    }
    let written: bool = serde_json::from_slice(&r.body)
        .map_err(|e| failed(format!("Failed to decode response: {e}")))?;
    if !written {
        return Err(CliError::new(format!(
            "Config entry not updated: {kind}/{name}"
        )));
    }
    println!("Config entry written: {kind}/{name}");
    if let Some(w) = entry.write_warning() {
        eprintln!("WARNING: {w}");
    }
    Ok(())
}

/// `-kind`/`-name` or `-filename` (read and delete), checked as Consul does.
fn target(kind: &str, name: &str, filename: &str) -> Result<(String, String), CliError> {
    let given = [filename, kind, name]
        .iter()
        .filter(|s| !s.is_empty())
        .count();
    if given == 0 {
        return Err(CliError::new(
            "Must specify the -kind or -filename parameter",
        ));
    }
    if !filename.is_empty() {
        if given > 1 {
            return Err(CliError::new("filename can't be used with kind or name"));
        }
        let entry = entry_from_file(filename)?;
        return Ok((entry.kind().to_string(), entry.name().to_string()));
    }
    if kind.is_empty() {
        return Err(CliError::new("Must specify the -kind parameter"));
    }
    if name.is_empty() {
        return Err(CliError::new("Must specify the -name parameter"));
    }
    Ok((kind.to_string(), name.to_string()))
}

async fn read(a: ReadArgs) -> CliResult {
    let (kind, name) = if a.filename.is_empty() {
        if a.kind.is_empty() {
            return Err(CliError::new("Must specify the -kind parameter"));
        }
        if a.name.is_empty() {
            return Err(CliError::new("Must specify the -name parameter"));
        }
        (a.kind.clone(), a.name.clone())
    } else {
        target(&a.kind, &a.name, &a.filename)?
    };
    let failed =
        |e: String| CliError::new(format!("Error reading config entry {kind}/{name}: {e}"));
    // The Go client knows the kinds and refuses others before asking.
    if let Err(e @ DecodeError::InvalidKind(_)) = ce::check_kind(&kind) {
        return Err(failed(e.to_string()));
    }
    let c = Client::new(&a.http)?;
    let r = c
        .get(&format!("/v1/config/{}/{}", seg(&kind), seg(&name)), &[])
        .await
        .map_err(|e| failed(e.message))?;
    let v: Value = r.json().map_err(|e| failed(e.message))?;
    let entry = ce::decode(v).map_err(|e| failed(e.to_string()))?;
    println!("{}", go_json(&entry.to_api_json()));
    Ok(())
}

async fn list(a: ListArgs) -> CliResult {
    if a.kind.is_empty() {
        return Err(CliError::new("Must specify the -kind parameter"));
    }
    let c = Client::new(&a.http)?;
    let failed = |e: String| {
        CliError::new(format!(
            "Error listing config entries for kind {}: {e}",
            go_quote(&a.kind)
        ))
    };
    let r = c
        .get(&format!("/v1/config/{}", seg(&a.kind)), &[])
        .await
        .map_err(|e| failed(e.message))?;
    let entries: Vec<Value> = r.json().map_err(|e| failed(e.message))?;
    for v in entries {
        let name = match ce::decode(v.clone()) {
            Ok(e) => e.name().to_string(),
            Err(_) => v
                .get("Name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        };
        println!("{name}");
    }
    Ok(())
}

async fn delete(a: DeleteArgs) -> CliResult {
    // The flags are checked before any file is read, as Consul does.
    let given = [&a.filename, &a.kind, &a.name]
        .iter()
        .filter(|s| !s.is_empty())
        .count();
    if given >= 3 || (!a.filename.is_empty() && given == 2) {
        return Err(CliError::new("filename can't be used with kind or name"));
    }
    if given == 0 {
        return Err(CliError::new(
            "Must specify the -kind or -filename parameter",
        ));
    }
    if a.filename.is_empty() {
        if a.kind.is_empty() {
            return Err(CliError::new("Must specify the -kind parameter"));
        }
        if a.name.is_empty() {
            return Err(CliError::new("Must specify the -name parameter"));
        }
    }
    let cas = on(a.cas);
    if cas && a.modify_index == 0 {
        return Err(CliError::new(
            "Must specify a -modify-index greater than 0 with -cas",
        ));
    }
    if a.modify_index != 0 && !cas {
        return Err(CliError::new("Cannot specify -modify-index without -cas"));
    }
    let (kind, name) = target(&a.kind, &a.name, &a.filename)?;
    let c = Client::new(&a.http)?;
    let mut q: Vec<(&str, String)> = Vec::new();
    if cas {
        q.push(("cas", a.modify_index.to_string()));
    }
    let failed =
        |e: String| CliError::new(format!("Error deleting config entry {kind}/{name}: {e}"));
    let r = c
        .send(
            Method::DELETE,
            &format!("/v1/config/{}/{}", seg(&kind), seg(&name)),
            &q,
            None,
        )
        .await
        .map_err(|e| failed(e.message))?;
    if r.status != 200 {
        return Err(failed(r.error_text()));
    }
    if cas {
        let deleted: bool = serde_json::from_slice(&r.body)
            .map_err(|e| failed(format!("Failed to decode response: {e}")))?;
        if !deleted {
            return Err(CliError::new(format!(
                "Config entry not deleted: {kind}/{name}"
            )));
        }
    }
    println!("Config entry deleted: {kind}/{name}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_carry_the_prefix_twice() {
        let e = ce::parse_file_text("Kind = ").unwrap_err();
        let text = format!(
            "Failed to decode config entry input: {}",
            decode_error_text(&e)
        );
        assert!(
            text.starts_with(
                "Failed to decode config entry input: Failed to decode config entry input: "
            ),
            "{text}"
        );
        let e = ce::parse_file_text("Kind = \"bogus\"").unwrap_err();
        assert_eq!(decode_error_text(&e), "invalid config entry kind: bogus");
    }

    #[test]
    fn target_checks() {
        assert_eq!(
            target("", "", "").unwrap_err().message,
            "Must specify the -kind or -filename parameter"
        );
        assert_eq!(
            target("k", "", "").unwrap_err().message,
            "Must specify the -name parameter"
        );
        assert_eq!(
            target("", "n", "").unwrap_err().message,
            "Must specify the -kind parameter"
        );
        assert_eq!(
            target("k", "", "f").unwrap_err().message,
            "filename can't be used with kind or name"
        );
        assert_eq!(
            target("k", "n", "").unwrap(),
            ("k".to_string(), "n".to_string())
        );
        assert_eq!(
            target("", "", "/nonexistent/f.hcl").unwrap_err().message,
            "Failed to load data: Failed to read file: open /nonexistent/f.hcl: no such file or directory"
        );
    }
}
