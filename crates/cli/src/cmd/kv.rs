//! `meshgate kv put|get|delete|export|import`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use meshgate_types::kv::KvEntry;
use serde::{Deserialize, Serialize};

use crate::client::{CliError, CliResult, Client, HttpFlags, escape_path, read_data_arg};

/// Key/value store commands.
#[derive(Subcommand, Debug)]
pub enum KvCmd {
    /// Write a value to a key.
    Put(PutArgs),
    /// Read a value, or list keys.
    Get(GetArgs),
    /// Delete a key or a prefix.
    Delete(DeleteArgs),
    /// Export a tree as JSON.
    Export(ExportArgs),
    /// Import a tree from JSON.
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Perform a check-and-set with -modify-index.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub cas: Option<bool>,
    /// Index for -cas (0: only if the key does not exist).
    #[arg(long = "modify-index", default_value_t = 0)]
    pub modify_index: u64,
    /// Flags to store with the key.
    #[arg(long, default_value_t = 0)]
    pub flags: u64,
    /// Treat the data as base64 and decode it before storing.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub base64: Option<bool>,
    /// Session for -acquire/-release.
    #[arg(long)]
    pub session: Option<String>,
    /// Acquire the key's lock with -session.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub acquire: Option<bool>,
    /// Release the key's lock held by -session.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub release: Option<bool>,
    /// The key.
    pub key: Option<String>,
    /// The data: literal, @file, or - for stdin.
    #[arg(allow_hyphen_values = true)]
    pub data: Option<String>,
    #[arg(hide = true, allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Print the value base64 encoded.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub base64: Option<bool>,
    /// Print metadata with the value.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub detailed: Option<bool>,
    /// List keys instead of values.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub keys: Option<bool>,
    /// Read every key under the prefix.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub recurse: Option<bool>,
    /// Separator for -keys (default "/").
    #[arg(long, default_value = "/")]
    pub separator: String,
    /// The key or prefix.
    pub key: Option<String>,
    #[arg(hide = true)]
    pub extra: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Delete only if the key's ModifyIndex equals -modify-index.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub cas: Option<bool>,
    /// Index for -cas.
    #[arg(long = "modify-index", default_value_t = 0)]
    pub modify_index: u64,
    /// Delete every key under the prefix.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub recurse: Option<bool>,
    /// The key or prefix.
    pub key: Option<String>,
    #[arg(hide = true)]
    pub extra: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The prefix to export (default: everything).
    pub prefix: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Prefix to add to every imported key.
    #[arg(long)]
    pub prefix: Option<String>,
    /// The data: literal JSON, @file, or - for stdin.
    #[arg(allow_hyphen_values = true)]
    pub data: Option<String>,
    #[arg(hide = true)]
    pub extra: Vec<String>,
}

/// One exported pair.
#[derive(Serialize, Deserialize, Debug)]
struct ExportEntry {
    key: String,
    flags: u64,
    value: String,
}

fn on(b: Option<bool>) -> bool {
    b.unwrap_or(false)
}

fn strip_slash(k: &str) -> &str {
    k.strip_prefix('/').unwrap_or(k)
}

/// Runs a kv subcommand.
pub async fn run(cmd: KvCmd) -> CliResult {
    match cmd {
        KvCmd::Put(a) => put(a).await,
        KvCmd::Get(a) => get(a).await,
        KvCmd::Delete(a) => delete(a).await,
        KvCmd::Export(a) => export(a).await,
        KvCmd::Import(a) => import(a).await,
    }
}

async fn put(a: PutArgs) -> CliResult {
    let Some(key) = a.key.clone() else {
        return Err(CliError::new("Error! Missing KEY argument"));
    };
    if !a.extra.is_empty() {
        return Err(CliError::new(format!(
            "Error! Too many arguments (expected 1 or 2, got {})",
            2 + a.extra.len()
        )));
    }
    let key = strip_slash(&key).to_string();
    let mut data = match &a.data {
        None => Vec::new(),
        Some(d) => read_data_arg(d)
            .map_err(|e| CliError::new(format!("Error! Failed to read file: {e}")))?,
    };
    if on(a.base64) {
        let text = String::from_utf8_lossy(&data).trim().to_string();
        match STANDARD.decode(text.as_bytes()) {
            Ok(d) => data = d,
            Err(e) => {
                return Err(CliError::new(format!(
                    "Error! Cannot base 64 decode data: {e}"
                )));
            }
        }
    }
    let (acquire, release) = (on(a.acquire), on(a.release));
    if (acquire || release) && a.session.as_deref().unwrap_or("").is_empty() {
        return Err(CliError::new(
            "Error! Missing -session (required with -acquire and -release)",
        ));
    }
    let client = Client::new(&a.http)?;
    let path = format!("/v1/kv/{}", escape_path(&key));
    let mut q: Vec<(&str, String)> = Vec::new();
    if a.flags != 0 {
        q.push(("flags", a.flags.to_string()));
    }
    let session = a.session.clone().unwrap_or_default();
    if on(a.cas) {
        q.push(("cas", a.modify_index.to_string()));
    } else if acquire {
        q.push(("acquire", session));
    } else if release {
        q.push(("release", session));
    }
    let r = client
        .send(reqwest::Method::PUT, &path, &q, Some(data))
        .await
        .map_err(|e| CliError::new(format!("Error! Failed writing data: {}", e.message)))?;
    if let Some(w) = r
        .headers
        .get("x-consul-kv-warning")
        .and_then(|v| v.to_str().ok())
    {
        eprintln!("Warning: {w}");
    }
    if r.status != 200 {
        let err = r.error_text();
        if on(a.cas) {
            return Err(CliError::new(format!(
                "Error! Did not write to {key}: {err}"
            )));
        }
        if release {
            return Err(CliError::new(format!("Error! Failed writing data: {key}")));
        }
        return Err(CliError::new(format!("Error! Failed writing data: {err}")));
    }
    let ok: bool = r.json().unwrap_or(false);
    if on(a.cas) {
        if !ok {
            if a.modify_index == 0 {
                return Err(CliError::new(format!(
                    "Error! Did not write to {key}: CAS performed with index=0 and key already exists."
                )));
            }
            return Err(CliError::new(format!(
                "Error! Did not write to {key}: CAS failed"
            )));
        }
        println!("Success! Data written to: {key}");
    } else if acquire {
        if !ok {
            return Err(CliError::new("Error! Did not acquire lock"));
        }
        println!("Success! Lock acquired on: {key}");
    } else if release {
        if !ok {
            return Err(CliError::new("Error! Did not release lock"));
        }
        println!("Success! Lock released on: {key}");
    } else {
        println!("Success! Data written to: {key}");
    }
    Ok(())
}

fn value_text(e: &KvEntry, b64: bool) -> String {
    let v = e.value.clone().unwrap_or_default();
    if b64 {
        STANDARD.encode(&v)
    } else {
        String::from_utf8_lossy(&v).into_owned()
    }
}

fn detailed(e: &KvEntry, b64: bool, with_value: bool) -> String {
    let session = if e.session.is_empty() {
        "-".to_string()
    } else {
        e.session.clone()
    };
    let mut rows = vec![
        ("CreateIndex", e.create_index.to_string()),
        ("Flags", e.flags.to_string()),
        ("Key", e.key.clone()),
        ("LockIndex", e.lock_index.to_string()),
        ("ModifyIndex", e.modify_index.to_string()),
        ("Session", session),
    ];
    if with_value {
        rows.push(("Value", value_text(e, b64)));
    }
    rows.iter()
        .map(|(k, v)| format!("{k:<17}{v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn get(a: GetArgs) -> CliResult {
    if !a.extra.is_empty() {
        return Err(CliError::new(format!(
            "Too many arguments (expected 1, got {})",
            1 + a.extra.len()
        )));
    }
    let (keys, recurse) = (on(a.keys), on(a.recurse));
    let key = match &a.key {
        Some(k) => strip_slash(k).to_string(),
        None if keys || recurse => String::new(),
        None => return Err(CliError::new("Error! Missing KEY argument")),
    };
    let client = Client::new(&a.http)?;
    let path = format!("/v1/kv/{}", escape_path(&key));
    let query_err =
        |e: CliError| CliError::new(format!("Error querying Consul agent: {}", e.message));
    let b64 = on(a.base64);
    if keys && !recurse {
        let mut q = vec![("keys", String::new())];
        if !a.separator.is_empty() {
            q.push(("separator", a.separator.clone()));
        }
        let r = client
            .send(reqwest::Method::GET, &path, &q, None)
            .await
            .map_err(query_err)?;
        if r.status == 404 {
            return Ok(());
        }
        if r.status != 200 {
            return Err(CliError::new(format!(
                "Error querying Consul agent: {}",
                r.error_text()
            )));
        }
        let list: Vec<String> = r.json()?;
        for k in list {
            println!("{k}");
        }
        return Ok(());
    }
    if recurse {
        let r = client
            .send(
                reqwest::Method::GET,
                &path,
                &[("recurse", String::new())],
                None,
            )
            .await
            .map_err(query_err)?;
        if r.status == 404 {
            return Ok(());
        }
        if r.status != 200 {
            return Err(CliError::new(format!(
                "Error querying Consul agent: {}",
                r.error_text()
            )));
        }
        let list: Vec<KvEntry> = r.json()?;
        let det = on(a.detailed);
        let mut blocks = Vec::new();
        for e in &list {
            if keys {
                if det {
                    blocks.push(detailed(e, b64, false));
                } else {
                    println!("{}", e.key);
                }
            } else if det {
                blocks.push(detailed(e, b64, true));
            } else {
                println!("{}:{}", e.key, value_text(e, b64));
            }
        }
        if !blocks.is_empty() {
            println!("{}", blocks.join("\n\n"));
        }
        return Ok(());
    }
    let r = client
        .send(reqwest::Method::GET, &path, &[], None)
        .await
        .map_err(query_err)?;
    if r.status == 404 {
        return Err(CliError::new(format!("Error! No key exists at: {key}")));
    }
    if r.status != 200 {
        return Err(CliError::new(format!(
            "Error querying Consul agent: {}",
            r.error_text()
        )));
    }
    let list: Vec<KvEntry> = r.json()?;
    let Some(e) = list.first() else {
        return Err(CliError::new(format!("Error! No key exists at: {key}")));
    };
    if on(a.detailed) {
        println!("{}", detailed(e, b64, true));
    } else {
        println!("{}", value_text(e, b64));
    }
    Ok(())
}

async fn delete(a: DeleteArgs) -> CliResult {
    if !a.extra.is_empty() {
        return Err(CliError::new(format!(
            "Too many arguments (expected 1, got {})",
            1 + a.extra.len()
        )));
    }
    let (cas, recurse) = (on(a.cas), on(a.recurse));
    let key = match &a.key {
        Some(k) => strip_slash(k).to_string(),
        None if recurse => String::new(),
        None => return Err(CliError::new("Error! Missing KEY argument")),
    };
    if cas && a.modify_index == 0 {
        return Err(CliError::new(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.",
        ));
    }
    if !cas && a.modify_index != 0 {
        return Err(CliError::new("Cannot specify -modify-index without -cas!"));
    }
    if cas && recurse {
        return Err(CliError::new("Cannot specify both -cas and -recurse!"));
    }
    let client = Client::new(&a.http)?;
    let path = format!("/v1/kv/{}", escape_path(&key));
    if recurse {
        client
            .delete(&path, &[("recurse", String::new())])
            .await
            .map_err(|e| {
                CliError::new(format!("Error! Did not delete prefix {key}: {}", e.message))
            })?;
        println!("Success! Deleted keys with prefix: {key}");
        return Ok(());
    }
    if cas {
        let r = client
            .delete(&path, &[("cas", a.modify_index.to_string())])
            .await
            .map_err(|e| {
                CliError::new(format!("Error! Did not delete key {key}: {}", e.message))
            })?;
        let ok: bool = r.json().unwrap_or(false);
        if !ok {
            return Err(CliError::new(format!(
                "Error! Did not delete key {key}: CAS failed"
            )));
        }
        println!("Success! Deleted key: {key}");
        return Ok(());
    }
    client
        .delete(&path, &[])
        .await
        .map_err(|e| CliError::new(format!("Error deleting key {key}: {}", e.message)))?;
    println!("Success! Deleted key: {key}");
    Ok(())
}

async fn export(a: ExportArgs) -> CliResult {
    let prefix = a
        .prefix
        .as_deref()
        .map(strip_slash)
        .unwrap_or("")
        .to_string();
    let client = Client::new(&a.http)?;
    let path = format!("/v1/kv/{}", escape_path(&prefix));
    let r = client
        .send(
            reqwest::Method::GET,
            &path,
            &[("recurse", String::new())],
            None,
        )
        .await
        .map_err(|e| CliError::new(format!("Error querying Consul agent: {}", e.message)))?;
    let list: Vec<KvEntry> = match r.status {
        200 => r.json()?,
        404 => Vec::new(),
        _ => {
            return Err(CliError::new(format!(
                "Error querying Consul agent: {}",
                r.error_text()
            )));
        }
    };
    let out: Vec<ExportEntry> = list
        .into_iter()
        .map(|e| ExportEntry {
            value: STANDARD.encode(e.value.unwrap_or_default()),
            key: e.key,
            flags: e.flags,
        })
        .collect();
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    out.serialize(&mut ser)
        .map_err(|e| CliError::new(e.to_string()))?;
    println!("{}", String::from_utf8_lossy(&buf));
    Ok(())
}

fn join_prefix(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        return key.to_string();
    }
    let trailing = key.ends_with('/');
    let mut joined = format!(
        "{}/{}",
        prefix.trim_end_matches('/'),
        key.trim_start_matches('/')
    );
    while joined.contains("//") {
        joined = joined.replace("//", "/");
    }
    if trailing && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

async fn import(a: ImportArgs) -> CliResult {
    if !a.extra.is_empty() {
        return Err(CliError::new(format!(
            "Error! Too many arguments (expected 1, got {})",
            1 + a.extra.len()
        )));
    }
    let Some(arg) = &a.data else {
        return Err(CliError::new("Error! Missing DATA argument"));
    };
    let data = read_data_arg(arg)
        .map_err(|e| CliError::new(format!("Error! Failed to read file: {e}")))?;
    if data.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(CliError::new("Error! Empty DATA argument"));
    }
    let entries: Vec<ExportEntry> = serde_json::from_slice(&data)
        .map_err(|e| CliError::new(format!("Cannot unmarshal data: {e}")))?;
    let mut decoded = Vec::with_capacity(entries.len());
    for e in &entries {
        let v = STANDARD.decode(e.value.as_bytes()).map_err(|err| {
            CliError::new(format!(
                "Error base 64 decoding value for key {}: {err}",
                e.key
            ))
        })?;
        decoded.push(v);
    }
    let client = Client::new(&a.http)?;
    let prefix = a.prefix.clone().unwrap_or_default();
    for (e, v) in entries.iter().zip(decoded) {
        let key = join_prefix(&prefix, &e.key);
        let path = format!("/v1/kv/{}", escape_path(&key));
        let mut q = Vec::new();
        if e.flags != 0 {
            q.push(("flags", e.flags.to_string()));
        }
        client.put(&path, &q, Some(v)).await.map_err(|err| {
            CliError::new(format!(
                "Error! Failed writing data for key {key}: {}",
                err.message
            ))
        })?;
        println!("Imported: {key}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detailed_layout() {
        let e = KvEntry {
            key: "foo".into(),
            value: Some(b"bar".to_vec()),
            create_index: 10,
            modify_index: 12,
            ..Default::default()
        };
        assert_eq!(
            detailed(&e, false, true),
            "CreateIndex      10\nFlags            0\nKey              foo\nLockIndex        0\nModifyIndex      12\nSession          -\nValue            bar"
        );
    }

    #[test]
    fn import_prefix() {
        assert_eq!(join_prefix("p", "a/b"), "p/a/b");
        assert_eq!(join_prefix("p/", "a/"), "p/a/");
        assert_eq!(join_prefix("", "a"), "a");
    }
}
