//! `meshgate keyring`: list and rotate the cluster key on every agent
//! (`/v1/operator/keyring`), with Consul's flags and output.

use clap::Args;
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::client::{CliError, CliResult, Client, HttpFlags};

#[derive(Args, Debug)]
pub struct KeyringArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// List the keys installed on the agents.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub list: Option<bool>,
    /// List the primary keys in use.
    #[arg(long = "list-primary", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub list_primary: Option<bool>,
    /// Install a new key (base64 of 16, 24 or 32 bytes) on every agent.
    #[arg(long)]
    pub install: Option<String>,
    /// Make an installed key the primary one everywhere.
    #[arg(long = "use")]
    pub use_key: Option<String>,
    /// Remove a key (not the primary one) everywhere.
    #[arg(long)]
    pub remove: Option<String>,
    /// Accepted for compatibility (every agent is asked directly), 0 to 5.
    #[arg(long = "relay-factor", default_value_t = 0)]
    pub relay_factor: i64,
    /// Accepted for compatibility with -list.
    #[arg(long = "local-only", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub local_only: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    #[serde(rename = "WAN")]
    wan: bool,
    datacenter: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    messages: BTreeMap<String, String>,
    #[serde(default)]
    keys: BTreeMap<String, u64>,
    #[serde(default)]
    primary_keys: BTreeMap<String, u64>,
    num_nodes: u64,
}

/// One pool as `consul keyring -list` prints it.
fn format_entry(e: &Entry, primary: bool) -> String {
    let mut out = String::from("\n");
    if e.wan {
        out.push_str("WAN");
    } else {
        out.push_str(&format!("{} (LAN)", e.datacenter));
    }
    if !e.segment.is_empty() {
        out.push_str(&format!(" [{}]", e.segment));
    }
    out.push_str(":\n");
    for (node, msg) in &e.messages {
        out.push_str(&format!("  ===> {node}: {msg}\n"));
    }
    let keys = if primary { &e.primary_keys } else { &e.keys };
    for (k, n) in keys {
        out.push_str(&format!("  {k} [{n}/{}]\n", e.num_nodes));
    }
    out.trim_end_matches('\n').to_string()
}

pub async fn run(a: KeyringArgs) -> CliResult {
    let list = a.list.unwrap_or(false);
    let list_primary = a.list_primary.unwrap_or(false);
    let actions = [
        list,
        list_primary,
        a.install.is_some(),
        a.use_key.is_some(),
        a.remove.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if actions == 0 {
        return Err(CliError::new(
            "Usage: meshgate keyring [options]\n\n  Manages the cluster keys of every agent: -list, -list-primary, -install=KEY, -use=KEY, -remove=KEY",
        ));
    }
    if actions > 1 {
        return Err(CliError::new("Only a single action is allowed"));
    }
    if !(0..=5).contains(&a.relay_factor) {
        return Err(CliError::new(
            "Error parsing relay factor: Relay factor must be in range: [0, 5]",
        ));
    }
    if a.local_only.unwrap_or(false) && !list {
        return Err(CliError::new(
            "Error validating local-only: local-only can only be set for list requests",
        ));
    }
    let c = Client::new(&a.http)
        .map_err(|e| CliError::new(format!("Error connecting to Consul agent: {}", e.message)))?;
    let fail = |e: CliError| CliError::new(format!("error: {}", e.message));
    if list || list_primary {
        println!(
            "==> Gathering installed {}encryption keys...",
            if list_primary { "primary " } else { "" }
        );
        let r = c.get("/v1/operator/keyring", &[]).await.map_err(fail)?;
        let entries: Vec<Entry> = r.json()?;
        for e in &entries {
            println!("{}", format_entry(e, list_primary));
        }
        return Ok(());
    }
    let (method, key, say) = if let Some(k) = &a.install {
        (
            reqwest::Method::POST,
            k,
            "Installing new gossip encryption key...",
        )
    } else if let Some(k) = &a.use_key {
        (
            reqwest::Method::PUT,
            k,
            "Changing primary gossip encryption key...",
        )
    } else if let Some(k) = &a.remove {
        (
            reqwest::Method::DELETE,
            k,
            "Removing gossip encryption key...",
        )
    } else {
        return Ok(());
    };
    println!("==> {say}");
    let body = serde_json::to_vec(&serde_json::json!({ "Key": key }))
        .map_err(|e| CliError::new(e.to_string()))?;
    let r = c
        .send(method, "/v1/operator/keyring", &[], Some(body))
        .await
        .map_err(fail)?;
    if r.status != 200 {
        return Err(CliError::new(format!("error: {}", r.error_text())));
    }
    Ok(())
}

/// `meshgate keygen`: a new cluster key (`encrypt`, `keyring -install`) —
/// 32 random bytes from the operating system's generator, base64 encoded,
/// as `consul keygen` prints it.
pub fn keygen() -> CliResult {
    use base64::Engine;
    use rand::TryRngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(|e| CliError::new(format!("Error reading random data: {e}")))?;
    println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_print_like_consul() {
        let e = Entry {
            wan: false,
            datacenter: "dc1".into(),
            segment: String::new(),
            messages: BTreeMap::new(),
            keys: BTreeMap::from([("key1".to_string(), 1)]),
            primary_keys: BTreeMap::new(),
            num_nodes: 1,
        };
        assert_eq!(format_entry(&e, false), "\ndc1 (LAN):\n  key1 [1/1]");
        let w = Entry { wan: true, ..e };
        assert_eq!(format_entry(&w, false), "\nWAN:\n  key1 [1/1]");
    }
}
