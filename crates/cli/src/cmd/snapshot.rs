//! `meshgate snapshot save|restore|inspect`.

use clap::{Args, Subcommand};
use meshgate_agent::snapshot;

use crate::client::{CliError, CliResult, Client, HttpFlags};

/// Snapshot commands.
#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Save a snapshot of the state to a file.
    Save(SaveArgs),
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
pub struct SaveArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Add to the file name, before its extension, any of `version`, `dc`,
    /// `node`, `status` (comma separated; in that order):
    /// `backup-1.21.0-dc1-server-1-leader.snap`.
    #[arg(long = "append-filename", value_name = "LIST")]
    pub append_filename: Option<String>,
    /// The snapshot file.
    pub file: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Also break the KV store down by key prefix.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub kvdetails: Option<bool>,
    /// With -kvdetails: how many `/`-separated parts of a key make its prefix.
    #[arg(long, default_value_t = 2)]
    pub kvdepth: usize,
    /// With -kvdetails: only keys starting with this.
    #[arg(long, default_value = "")]
    pub kvfilter: String,
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    pub format: String,
    /// The snapshot file.
    pub file: Option<String>,
}

/// One kind of entry in a snapshot: how many, and their encoded size.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct TypeStats {
    name: String,
    sum: usize,
    count: usize,
}

/// What `snapshot inspect -format=json` prints (Consul's shape).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectOutput {
    meta: InspectMeta,
    stats: Vec<TypeStats>,
    #[serde(rename = "StatsKV")]
    stats_kv: Option<Vec<TypeStats>>,
    total_size: usize,
    #[serde(rename = "TotalSizeKV")]
    total_size_kv: usize,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectMeta {
    #[serde(rename = "ID")]
    id: String,
    size: u64,
    index: u64,
    term: u64,
    version: u32,
}

/// The encoded size of each item, summed by kind.
fn stats_of<T: serde::Serialize>(name: &str, items: &[T]) -> TypeStats {
    TypeStats {
        name: name.to_string(),
        sum: items
            .iter()
            .map(|i| serde_json::to_vec(i).map_or(0, |v| v.len()))
            .sum(),
        count: items.len(),
    }
}

/// Largest first, then by name (Consul's order).
fn sort_stats(stats: &mut [TypeStats]) {
    stats.sort_by(|a, b| b.sum.cmp(&a.sum).then_with(|| a.name.cmp(&b.name)));
}

/// A size as Consul prints it: `0`, `512B`, `1.5KB`, `2MB`.
fn byte_size(bytes: usize) -> String {
    const UNITS: [(&str, f64); 5] = [
        ("TB", 1099511627776.0),
        ("GB", 1073741824.0),
        ("MB", 1048576.0),
        ("KB", 1024.0),
        ("B", 1.0),
    ];
    if bytes == 0 {
        return "0".into();
    }
    let v = bytes as f64;
    let (unit, div) = UNITS
        .iter()
        .copied()
        .find(|(_, d)| v >= *d)
        .unwrap_or(("B", 1.0));
    let text = format!("{:.1}", v / div);
    format!("{}{unit}", text.trim_end_matches(".0"))
}

/// A stats table as Consul prints it: a header, the kinds with their count
/// and size, and the total.
fn stats_rows(first: &str, stats: &[TypeStats], total: usize) -> Vec<Vec<String>> {
    let dash = || vec![" ----".to_string(), "----".into(), "----".into()];
    let mut rows = vec![
        vec![first.to_string(), "Count".into(), "Size".into()],
        dash(),
    ];
    rows.extend(stats.iter().map(|t| {
        vec![
            format!(" {}", t.name),
            t.count.to_string(),
            byte_size(t.sum),
        ]
    }));
    rows.push(dash());
    rows.push(vec![" Total".into(), String::new(), byte_size(total)]);
    rows
}

/// Rows laid out as Go's `tabwriter` lays out cells that each end in a tab:
/// every column as wide as its widest cell plus `padding`, at least
/// `min_width`.
fn table(rows: &[Vec<String>], min_width: usize, padding: usize) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            let w = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0);
            (w + padding).max(min_width)
        })
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect()
        })
        .collect()
}

fn file_arg(f: &Option<String>) -> Result<String, CliError> {
    f.clone()
        .ok_or_else(|| CliError::new("Missing FILE argument"))
}

/// Runs a snapshot subcommand.
pub async fn run(cmd: SnapshotCmd) -> CliResult {
    match cmd {
        SnapshotCmd::Save(a) => {
            let mut file = file_arg(&a.file)?;
            let c = Client::new(&a.http)?;
            let wanted: Vec<&str> = a
                .append_filename
                .as_deref()
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
                .collect();
            if !wanted.is_empty() {
                let me: serde_json::Value = c
                    .get("/v1/agent/self", &[])
                    .await
                    .and_then(|r| r.json())
                    .map_err(|e| {
                        CliError::new(format!(
                            "Error connecting to Consul agent and fetching datacenter/version: {}",
                            e.message
                        ))
                    })?;
                file = appended_name(&file, &wanted, &me);
            }
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
            if a.format != "pretty" && a.format != "json" {
                return Err(CliError::new(format!(
                    "Error outputting enhanced snapshot data: Unknown format: {}",
                    a.format
                )));
            }
            let data = std::fs::read(&file)
                .map_err(|e| CliError::new(format!("Error opening snapshot file: {e}")))?;
            let (meta, s) = snapshot::read(&data)
                .map_err(|e| CliError::new(format!("Error verifying snapshot file: {e}")))?;
            let mut stats: Vec<TypeStats> = vec![
                stats_of("Register (nodes)", &s.nodes),
                stats_of("Register (services)", &s.services),
                stats_of("Register (checks)", &s.checks),
                stats_of("KVS", &s.kv),
                stats_of("Tombstone", &s.tombstones),
                stats_of("Session", &s.sessions),
                stats_of("ACLToken", &s.acl_tokens),
                stats_of("ACLPolicy", &s.acl_policies),
                stats_of("ACLRole", &s.acl_roles),
                stats_of("ACLAuthMethod", &s.acl_auth_methods),
                stats_of("ACLBindingRule", &s.acl_binding_rules),
                stats_of("PreparedQuery", &s.queries),
                stats_of("ConfigEntry", &s.config_entries),
                stats_of("Coordinate", &s.coordinates),
            ]
            .into_iter()
            .filter(|t| t.count > 0)
            .collect();
            sort_stats(&mut stats);
            let total_size = stats.iter().map(|t| t.sum).sum();
            // The KV store by prefix: the first `kvdepth` parts of each key.
            let kv_stats = a.kvdetails.unwrap_or(false).then(|| {
                let mut by: std::collections::BTreeMap<String, TypeStats> = Default::default();
                for e in s.kv.iter().filter(|e| e.key.starts_with(&a.kvfilter)) {
                    let parts: Vec<&str> = e.key.split('/').collect();
                    let prefix = parts[..a.kvdepth.min(parts.len())].join("/");
                    let size = serde_json::to_vec(e).map_or(0, |v| v.len());
                    let t = by.entry(prefix.clone()).or_insert(TypeStats {
                        name: prefix,
                        sum: 0,
                        count: 0,
                    });
                    t.sum += size;
                    t.count += 1;
                }
                let mut list: Vec<TypeStats> = by.into_values().collect();
                sort_stats(&mut list);
                list
            });
            let total_size_kv = kv_stats.iter().flatten().map(|t| t.sum).sum();
            let out = InspectOutput {
                meta: InspectMeta {
                    id: meta.id.clone(),
                    size: if meta.size > 0 {
                        meta.size
                    } else {
                        data.len() as u64
                    },
                    index: meta.index,
                    term: meta.term,
                    version: meta.version,
                },
                stats,
                stats_kv: kv_stats,
                total_size,
                total_size_kv,
            };
            if a.format == "json" {
                // Go's `json.MarshalIndent(v, "", "   ")`.
                let mut buf = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
                let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
                serde::Serialize::serialize(&out, &mut ser)
                    .map_err(|e| CliError::new(format!("Failed to marshal snapshot stats: {e}")))?;
                println!("{}", String::from_utf8_lossy(&buf));
                return Ok(());
            }
            let m = &out.meta;
            println!(" ID           {}", m.id);
            println!(" Size         {}", m.size);
            println!(" Index        {}", m.index);
            println!(" Term         {}", m.term);
            println!(" Version      {}", m.version);
            println!();
            for line in table(&stats_rows(" Type", &out.stats, out.total_size), 8, 6) {
                println!("{line}");
            }
            if let Some(kv) = &out.stats_kv {
                println!();
                for line in table(&stats_rows(" Key Name", kv, out.total_size_kv), 30, 12) {
                    println!("{line}");
                }
            }
            Ok(())
        }
    }
}

/// `file` with what `-append-filename` asks for inserted before its
/// extension, in Consul's order (version, dc, node, status), from the
/// agent's `/v1/agent/self`.
fn appended_name(file: &str, wanted: &[&str], me: &serde_json::Value) -> String {
    // Go's `filepath.Ext`: from the last `.` of the last path element.
    let base_start = file.rfind('/').map_or(0, |i| i + 1);
    let ext = file[base_start..]
        .rfind('.')
        .map_or("", |i| &file[base_start + i..]);
    let mut stem = file.strip_suffix(ext).unwrap_or(file).to_string();
    let config = |k: &str| me["Config"][k].as_str().map(str::to_string);
    for (flag, part) in [
        ("version", config("Version")),
        ("dc", config("Datacenter")),
        ("node", config("NodeName")),
        (
            "status",
            me["Stats"]["consul"]["leader"]
                .as_str()
                .map(|l| if l == "true" { "leader" } else { "follower" }.to_string()),
        ),
    ] {
        if let Some(part) = part.filter(|_| wanted.contains(&flag)) {
            stem.push('-');
            stem.push_str(&part);
        }
    }
    format!("{stem}{ext}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_names_as_go_splits_them() {
        let me = serde_json::json!({
            "Config": {"Version": "1.21.0", "Datacenter": "dc1", "NodeName": "s1"},
            "Stats": {"consul": {"leader": "false"}}
        });
        let all = ["version", "dc", "node", "status"];
        assert_eq!(
            appended_name("backup.snap", &all, &me),
            "backup-1.21.0-dc1-s1-follower.snap"
        );
        assert_eq!(
            appended_name("dir.d/backup", &["dc"], &me),
            "dir.d/backup-dc1"
        );
        assert_eq!(appended_name("a.tar.gz", &["dc"], &me), "a.tar-dc1.gz");
        // No panic on names Path would read otherwise.
        assert_eq!(appended_name("backup.é//", &["dc"], &me), "backup.é//-dc1");
        assert_eq!(appended_name("x.é", &["dc"], &me), "x-dc1.é");
    }
}
