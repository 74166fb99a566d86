//! `meshgate debug`: Consul's `consul debug` — records what an agent knows
//! about itself, the cluster and its host, its log and its metrics for a
//! while, into a directory that is then packed as `<output>.tar.gz`.
//!
//! The bundle has Consul's layout, so whatever reads Consul's bundles reads
//! this one: `index.json`, `agent.json`, `host.json`, `members.json`,
//! `consul.log` (the log at TRACE level), `metrics.json` (one metrics
//! summary per line, every 10 s) and `listpeers.json` (the raft peers as
//! `operator raft list-peers` prints them, with each server's commit index).
//! Go's profiles (`pprof`) do not exist here: that target is skipped with a
//! warning.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::client::{CliError, CliResult, Client, HttpFlags, columnize, go_bool, go_duration};

/// What can be captured, in Consul's default order.
const TARGETS: [&str; 6] = ["metrics", "logs", "pprof", "host", "agent", "members"];
const MIN_INTERVAL: Duration = Duration::from_secs(5);
const MIN_DURATION: Duration = Duration::from_secs(10);
/// Added to the duration so that the last interval is captured in time.
const GRACE: Duration = Duration::from_secs(2);

#[derive(Args, Debug)]
pub struct DebugArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// What to capture (repeatable): metrics, logs, host, agent, members
    /// (`cluster` is its old name); default: all. `pprof` is accepted and
    /// skipped (no Go profiles here).
    #[arg(long, value_name = "TARGET")]
    pub capture: Vec<String>,
    /// How often the dynamic information is captured (at least 5s).
    #[arg(long, default_value = "30s", value_parser = go_duration)]
    pub interval: Duration,
    /// How long to record (at least 10s).
    #[arg(long, default_value = "5m", value_parser = go_duration)]
    pub duration: Duration,
    /// Pack the directory as `<output>.tar.gz` and remove it (`-archive=false`
    /// keeps the directory).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true", value_parser = go_bool)]
    pub archive: bool,
    /// The directory to record into (default `meshgate-debug-<time>` in the
    /// current directory); it must not exist.
    #[arg(long, value_name = "PATH")]
    pub output: Option<String>,
    /// Consul's `hcdiag` mode: not available here.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
}

/// What Consul's UI writes with its `Output` prefix.
fn output(line: &str) {
    println!("==> {line}");
}

/// What Consul's UI writes with its `Info` prefix.
fn info(line: &str) {
    println!("    {line}");
}

/// Warnings and errors, on standard error.
fn warn(line: &str) {
    eprintln!("==> {line}");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2026-11-27 01:05:00.123 +0000 UTC`, as Go prints a UTC time.
fn go_time(ms: u64) -> String {
    let t = meshgate_types::time::format_rfc3339_ms(ms);
    let t = t.trim_end_matches('Z').replacen('T', " ", 1);
    format!("{t} +0000 UTC")
}

/// The default output name: `meshgate-debug-2026-11-27T01-05-00Z` (colons
/// would make `tar` take the name for a remote host).
fn default_output(ms: u64) -> String {
    let t = meshgate_types::time::format_rfc3339_ms(ms - ms % 1000);
    format!("meshgate-debug-{}", t.replace(':', "-"))
}

/// JSON indented with tabs, as Consul writes the bundle's files.
fn write_json(path: &Path, v: &Value) -> Result<(), String> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(v, &mut ser).map_err(|e| e.to_string())?;
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

pub async fn run(a: DebugArgs) -> CliResult {
    if a.since.is_some() {
        return Err(CliError::new(
            "-since runs HashiCorp's hcdiag, which meshgate does not have; record from now on with -duration instead",
        ));
    }
    let c = Client::new(&a.http)
        .map_err(|e| CliError::new(format!("Error connecting to Consul agent: {}", e.message)))?;
    let output_dir = a.output.clone().unwrap_or_else(|| default_output(now_ms()));
    let (version, captures) = prepare(&c, &a, &output_dir)
        .await
        .map_err(|e| CliError::new(format!("Capture validation failed: {e}")))?;
    let dir = PathBuf::from(&output_dir);
    let archive_name = if a.archive {
        format!("{output_dir}.tar.gz")
    } else {
        output_dir.clone()
    };
    let wants = |t: &str| {
        captures
            .iter()
            .any(|c| c == t || (t == "members" && c == "cluster"))
    };

    output("Starting debugger and capturing static information...");
    info(&format!(" Agent Version: '{version}'"));
    info(&format!(
        "      Interval: '{}'",
        meshgate_types::duration::format(a.interval)
    ));
    info(&format!(
        "      Duration: '{}'",
        meshgate_types::duration::format(a.duration)
    ));
    info(&format!("        Output: '{archive_name}'"));
    info(&format!("       Capture: '{}'", captures.join(", ")));
    let duration = a.duration + GRACE;

    let mut failed = Vec::new();
    for (target, path, query) in [
        ("host", "/v1/agent/host", vec![]),
        ("agent", "/v1/agent/self", vec![]),
        (
            "members",
            "/v1/agent/members",
            vec![("wan", "1".to_string())],
        ),
    ] {
        if !wants(target) {
            continue;
        }
        let got = match c.get(path, &query).await.and_then(|r| r.json::<Value>()) {
            Ok(v) => write_json(&dir.join(format!("{target}.json")), &v),
            Err(e) => Err(e.message),
        };
        if let Err(e) = got {
            failed.push(e);
        }
    }
    if !failed.is_empty() {
        warn(&format!("Static capture failed: {}", failed.join("; ")));
    }

    if (wants("metrics") || wants("logs"))
        && let Err(e) =
            capture_dynamic(&c, &dir, &a, duration, wants("logs"), wants("metrics")).await
    {
        warn(&format!("Error encountered during collection: {e}"));
    }

    let index = json!({
        "Version": 1,
        "AgentVersion": version,
        "Interval": meshgate_types::duration::format(a.interval),
        "Duration": meshgate_types::duration::format(duration),
        "Targets": captures,
    });
    write_json(&dir.join("index.json"), &index)
        .map_err(|e| CliError::new(format!("Error creating index document: {e}")))?;

    if let Err(e) = capture_raft(&c, &dir).await {
        warn(&format!("Raft list peers capture failed: {e}"));
    }

    if a.archive {
        archive(&dir).map_err(|e| {
            warn(&format!("Archive creation failed: {e}"));
            CliError::new("")
        })?;
    }
    info(&format!("Saved debug archive: {archive_name}"));
    Ok(())
}

/// Checks the timing and the targets, reads the agent's version and
/// creates the output directory; returns the version and the targets.
async fn prepare(
    c: &Client,
    a: &DebugArgs,
    output_dir: &str,
) -> Result<(String, Vec<String>), String> {
    let fmt = meshgate_types::duration::format;
    if a.duration < MIN_DURATION {
        return Err(format!(
            "duration must be longer than {}",
            fmt(MIN_DURATION)
        ));
    }
    if a.interval < MIN_INTERVAL {
        return Err(format!(
            "interval must be longer than {}",
            fmt(MIN_INTERVAL)
        ));
    }
    if a.duration < a.interval {
        return Err(format!(
            "duration ({}) must be longer than interval ({})",
            fmt(a.duration),
            fmt(a.interval)
        ));
    }
    let me: Value = c
        .get("/v1/agent/self", &[])
        .await
        .and_then(|r| r.json())
        .map_err(|e| {
            format!(
                "error querying target agent: {}. verify connectivity and agent address",
                e.message
            )
        })?;
    let version = me["Config"]["Version"]
        .as_str()
        .ok_or("agent response did not contain version key")?
        .to_string();
    let mut captures: Vec<String> = if a.capture.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        a.capture.clone()
    };
    if let Some(t) = captures
        .iter()
        .find(|t| !TARGETS.contains(&t.as_str()) && t.as_str() != "cluster")
    {
        return Err(format!("target not found: {t}"));
    }
    if captures.iter().any(|t| t == "pprof") {
        captures.retain(|t| t != "pprof");
        warn("[WARN] Unable to capture pprof: meshgate has no Go profiles; skipping it.");
    }
    let dir = Path::new(output_dir);
    if dir.exists() {
        return Err(format!("output directory already exists: {output_dir}"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("could not create output directory: {e}"))?;
    Ok((version, captures))
}

/// Records the log and the metrics stream until `duration` has passed or a
/// stop signal arrives (the bundle is still written then), announcing each
/// interval as Consul does.
async fn capture_dynamic(
    c: &Client,
    dir: &Path,
    a: &DebugArgs,
    duration: Duration,
    logs: bool,
    metrics: bool,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + duration;
    let trace = [("loglevel", "TRACE".to_string())];
    let mut streams = Vec::new();
    if logs {
        streams.push((
            c.stream("/v1/agent/monitor", &trace),
            dir.join("consul.log"),
        ));
    }
    if metrics {
        streams.push((
            c.stream("/v1/agent/metrics/stream", &[]),
            dir.join("metrics.json"),
        ));
    }
    let recorders = futures::future::join_all(
        streams
            .into_iter()
            .map(|(resp, path)| record(resp, path, deadline)),
    );
    let announce = async {
        output(&format!(
            "Beginning capture interval {} (0)",
            go_time(now_ms())
        ));
        output(&format!("Capture successful {} (0)", go_time(now_ms())));
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + a.interval, a.interval);
        let mut n = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    n += 1;
                    output(&format!("Capture successful {} ({n})", go_time(now_ms())));
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    };
    let mut stops = super::agent::Stops::new();
    tokio::select! {
        (results, ()) = async { tokio::join!(recorders, announce) } => {
            let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
            if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
        }
        _ = stops.next() => Err("stopping collection due to shutdown signal".into()),
    }
}

/// Writes what a stream sends into `path` until `deadline` (or its end).
async fn record(
    resp: impl std::future::Future<Output = Result<reqwest::Response, CliError>>,
    path: PathBuf,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut resp = tokio::time::timeout_at(deadline, resp)
        .await
        .map_err(|_| format!("{}: the agent did not answer", path.display()))?
        .map_err(|e| e.message)?;
    loop {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(b))) => f
                .write_all(&b)
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Ok(Err(e)) => return Err(format!("{}: {e}", path.display())),
        }
    }
}

/// `listpeers.json`: the raft peers with each one's commit index and how
/// far it trails the leader (a table, as Consul writes it).
async fn capture_raft(c: &Client, dir: &Path) -> Result<(), String> {
    let v: Value = c
        .get("/v1/operator/raft/configuration", &[])
        .await
        .and_then(|r| r.json())
        .map_err(|e| format!("Failed to retrieve raft configuration: {}", e.message))?;
    let servers: Vec<&Value> = v["Servers"].as_array().into_iter().flatten().collect();
    let leader_index = servers
        .iter()
        .find(|s| s["Leader"] == true)
        .and_then(|s| s["LastIndex"].as_u64())
        .unwrap_or(0);
    let text = |s: &Value, k: &str| match &s[k] {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut rows = vec![
        [
            "Node",
            "ID",
            "Address",
            "State",
            "Voter",
            "RaftProtocol",
            "Commit Index",
            "Trails Leader By",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in servers {
        let leader = s["Leader"] == true;
        let last = s["LastIndex"].as_u64();
        let trails = match last {
            _ if leader => "-".to_string(),
            None => "-".to_string(),
            Some(i) => {
                let by = leader_index.saturating_sub(i);
                format!("{by} commit{}", if by == 1 { "" } else { "s" })
            }
        };
        let protocol = match text(s, "ProtocolVersion") {
            p if p.is_empty() => "<=1".to_string(),
            p => p,
        };
        rows.push(vec![
            text(s, "Node"),
            text(s, "ID"),
            text(s, "Address"),
            if leader { "leader" } else { "follower" }.to_string(),
            text(s, "Voter"),
            protocol,
            last.unwrap_or(0).to_string(),
            trails,
        ]);
    }
    let path = dir.join("listpeers.json");
    std::fs::write(&path, columnize(&rows)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Packs `dir` into `<dir>.tar.gz` (entries named `<dir name>/...`), through
/// a temporary file renamed into place, then removes `dir`.
fn archive(dir: &Path) -> Result<(), String> {
    let target = PathBuf::from(format!("{}.tar.gz", dir.display()));
    let base = dir
        .file_name()
        .ok_or_else(|| format!("{}: not a directory name", dir.display()))?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = parent.join(format!(
        ".{}.tmp{}",
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let packed = (|| -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.append_dir_all(base, dir)?;
        let gz = tar.into_inner()?;
        let f = gz.finish()?;
        f.sync_all()
    })();
    if let Err(e) = packed {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("failed to create compressed archive: {e}"));
    }
    std::fs::rename(&tmp, &target).map_err(|e| e.to_string())?;
    std::fs::remove_dir_all(dir).map_err(|e| format!("failed to remove archived directory: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_times_as_consul_writes_them() {
        // 2026-11-27T01:05:09.123Z
        let ms = 1_795_741_509_123;
        assert_eq!(default_output(ms), "meshgate-debug-2026-11-27T01-05-09Z");
        assert_eq!(go_time(ms), "2026-11-27 01:05:09.123 +0000 UTC");
    }
}
