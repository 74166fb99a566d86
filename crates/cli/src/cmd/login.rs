//! `meshgate login` (trade a bearer token for an ACL token through an auth
//! method) and `meshgate logout` (destroy a token made by login).

use std::collections::BTreeMap;
use std::path::Path;

use clap::Args;
use reqwest::Method;

use crate::client::{CliError, CliResult, Client, HttpFlags};
use crate::cmd::acl::types::Token;
use crate::cmd::acl::{call, go_io_error, go_quote};

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The auth method to log in with. This flag is required.
    #[arg(long)]
    pub method: Option<String>,
    /// The auth method's type (informative; the agent knows it).
    #[arg(long = "type")]
    pub method_type: Option<String>,
    /// A file holding the bearer token (a JWT).
    #[arg(long = "bearer-token-file")]
    pub bearer_token_file: Option<String>,
    /// The file to write the new token's secret to. This flag is required.
    #[arg(long = "token-sink-file")]
    pub token_sink_file: Option<String>,
    /// Metadata for the token, KEY=VALUE (repeatable).
    #[arg(long)]
    pub meta: Vec<String>,
    #[arg(hide = true, allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(hide = true, allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// `meshgate login`.
pub async fn login(a: LoginArgs) -> CliResult {
    if !a.extra.is_empty() {
        return Err(CliError::new("Should have no non-flag arguments."));
    }
    let mut meta = BTreeMap::new();
    for kv in &a.meta {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(CliError::new(format!(
                "invalid value {} for flag -meta: Missing \"=\" value in argument: {kv}",
                go_quote(kv)
            )));
        };
        meta.insert(k.to_string(), v.to_string());
    }
    let method = s(&a.method);
    if method.is_empty() {
        return Err(CliError::new("Missing required '-method' flag"));
    }
    let sink = s(&a.token_sink_file);
    if sink.is_empty() {
        return Err(CliError::new("Missing required '-token-sink-file' flag"));
    }
    let file = s(&a.bearer_token_file);
    if file.is_empty() {
        return Err(CliError::new("Missing required '-bearer-token-file' flag"));
    }
    let bearer = std::fs::read(file).map_err(|e| CliError::new(go_io_error("open", file, &e)))?;
    let bearer = String::from_utf8_lossy(&bearer).trim().to_string();
    if bearer.is_empty() {
        return Err(CliError::new(format!("No bearer token found in {file}")));
    }
    // Login never sends a token of its own.
    let mut http = a.http.clone();
    http.token = None;
    http.token_file = None;
    let mut c = Client::new(&http)?;
    c.token = None;
    let mut body = serde_json::json!({ "AuthMethod": method, "BearerToken": bearer });
    if !meta.is_empty() {
        body["Meta"] = serde_json::to_value(&meta).unwrap_or_default();
    }
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let t: Token = call(&c, Method::POST, "/v1/acl/login", &[], Some(body))
        .await
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| CliError::new(format!("Error logging in: {e}")))?;
    write_atomic(Path::new(sink), t.secret_id.as_bytes())
        .map_err(|e| CliError::new(format!("Error writing token to file sink: {e}")))?;
    Ok(())
}

/// Writes `data` to `path` through a temporary file and a rename: the
/// directory is created 0755 if needed, the file is 0600.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let shown = dir.display().to_string();
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o755);
    }
    builder
        .create(dir)
        .map_err(|e| go_io_error("mkdir", &shown, &e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let tmp_shown = tmp.display().to_string();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts
            .open(&tmp)
            .map_err(|e| go_io_error("open", &tmp_shown, &e))?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .map_err(|e| go_io_error("write", &tmp_shown, &e))?;
        std::fs::rename(&tmp, path).map_err(|e| go_io_error("rename", &tmp_shown, &e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `meshgate logout`.
pub async fn logout(a: LogoutArgs) -> CliResult {
    if !a.extra.is_empty() {
        return Err(CliError::new("Should have no non-flag arguments."));
    }
    let c = Client::new(&a.http)?;
    call(&c, Method::POST, "/v1/acl/logout", &[], None)
        .await
        .map_err(|e| CliError::new(format!("Error destroying token: {e}")))?;
    Ok(())
}
