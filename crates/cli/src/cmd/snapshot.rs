//! `meshgate snapshot save|restore|inspect`.

use clap::{Args, Subcommand};
use meshgate_agent::snapshot;

use crate::client::{CliError, CliResult, Client, HttpFlags};

/// Snapshot commands.
#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Save a snapshot of the state to a file.
    Save(FileArgs),
    /// Restore the state from a snapshot file.
    Restore(FileArgs),
    /// Show what a snapshot file holds (reads the file only).
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
pub struct FileArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The snapshot file.
    pub file: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Also list the KV keys by prefix.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub kvdetails: Option<bool>,
    /// The snapshot file.
    pub file: Option<String>,
}

fn file_arg(f: &Option<String>) -> Result<String, CliError> {
    f.clone()
        .ok_or_else(|| CliError::new("Missing FILE argument"))
}

/// Runs a snapshot subcommand.
pub async fn run(cmd: SnapshotCmd) -> CliResult {
    match cmd {
        SnapshotCmd::Save(a) => {
            let file = file_arg(&a.file)?;
            let c = Client::new(&a.http)?;
            let r = c
                .get("/v1/snapshot", &[])
                .await
                .map_err(|e| CliError::new(format!("Error saving snapshot: {}", e.message)))?;
            let (meta, _) = snapshot::read(&r.body)
                .map_err(|e| CliError::new(format!("Error verifying snapshot file: {e}")))?;
            // Write to a temporary file first so a failure leaves no half-written file.
            let tmp = format!("{file}.part");
            write_private(&tmp, &r.body)
                .and_then(|_| std::fs::rename(&tmp, &file))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    CliError::new(format!("Error writing snapshot file: {e}"))
                })?;
            println!("Saved and verified snapshot to index {}", meta.index);
            Ok(())
        }
        SnapshotCmd::Restore(a) => {
            let file = file_arg(&a.file)?;
            let data = std::fs::read(&file)
                .map_err(|e| CliError::new(format!("Error opening snapshot file: {e}")))?;
            snapshot::read(&data)
                .map_err(|e| CliError::new(format!("Error verifying snapshot file: {e}")))?;
            let c = Client::new(&a.http)?;
            c.put("/v1/snapshot", &[], Some(data))
                .await
                .map_err(|e| CliError::new(format!("Error restoring snapshot: {}", e.message)))?;
            println!("Restored snapshot");
            Ok(())
        }
        SnapshotCmd::Inspect(a) => {
            let file = file_arg(&a.file)?;
            let data = std::fs::read(&file)
                .map_err(|e| CliError::new(format!("Error opening snapshot file: {e}")))?;
            let (meta, s) = snapshot::read(&data)
                .map_err(|e| CliError::new(format!("Error verifying snapshot file: {e}")))?;
            println!(" ID           {}", meta.id);
            println!(" Size         {}", data.len());
            println!(" Index        {}", meta.index);
            println!(" Term         {}", meta.term);
            println!(" Version      {}", meta.version);
            println!();
            println!(" {:<28}{:<11}", "Type", "Count");
            println!(" {:<28}{:<11}", "----", "----");
            let rows = [
                ("Register (nodes)", s.nodes.len()),
                ("Register (services)", s.services.len()),
                ("Register (checks)", s.checks.len()),
                ("KVS", s.kv.len()),
                ("Tombstone", s.tombstones.len()),
                ("Session", s.sessions.len()),
                ("ACLToken", s.acl_tokens.len()),
                ("ACLPolicy", s.acl_policies.len()),
                ("ACLRole", s.acl_roles.len()),
                ("ACLAuthMethod", s.acl_auth_methods.len()),
                ("ACLBindingRule", s.acl_binding_rules.len()),
            ];
            for (name, n) in rows {
                if n > 0 {
                    println!(" {name:<28}{n:<11}");
                }
            }
            if a.kvdetails.unwrap_or(false) {
                let mut prefixes: std::collections::BTreeMap<String, usize> = Default::default();
                for e in &s.kv {
                    let p = e.key.split('/').next().unwrap_or("").to_string();
                    *prefixes.entry(p).or_default() += 1;
                }
                println!();
                println!(" {:<28}{:<11}", "Key Name", "Count");
                println!(" {:<28}{:<11}", "--------", "-----");
                for (p, n) in prefixes {
                    println!(" {p:<28}{n:<11}");
                }
            }
            Ok(())
        }
    }
}

/// Writes a file readable only by its owner (0600): a snapshot holds every
/// ACL token secret.
fn write_private(path: &str, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}
