//! The agent's metrics sent to statsd and DogStatsD servers over UDP
//! (`telemetry.statsd_address`, `telemetry.dogstatsd_addr`), as Consul's
//! sinks send them: every request's timing as `NAME:MS|ms` and counter
//! increments as `NAME:N|c` when they happen (sent in packets of at most
//! 1,432 bytes every 100 ms), and the gauges of `/v1/agent/metrics` as
//! `NAME:V|g` every 10 s. DogStatsD lines carry `telemetry.dogstatsd_tags`
//! (`|#env:prod,team:files`). Names follow `telemetry.metrics_prefix`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::warn;

use crate::Agent;
use crate::config::{ConfigError, TelemetryConfig};

/// Consul's statsd packet limit (fits an Ethernet frame).
const PACKET: usize = 1432;
/// How often the lines kept so far are sent.
const FLUSH: Duration = Duration::from_millis(100);
/// How often the gauges are sent (the first time 1 s after start).
const GAUGES: Duration = Duration::from_secs(10);

/// A server to send to: its `host:port`, and for DogStatsD the tag suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: String,
    /// `|#a,b` (DogStatsD with tags), or empty.
    pub tags: String,
}

/// The configured servers, their addresses checked (`host:port`).
pub fn targets(t: &TelemetryConfig) -> Result<Vec<Target>, ConfigError> {
    let mut out = Vec::new();
    for (key, addr, tags) in [
        ("telemetry.statsd_address", &t.statsd_address, String::new()),
        (
            "telemetry.dogstatsd_addr",
            &t.dogstatsd_addr,
            if t.dogstatsd_tags.is_empty() {
                String::new()
            } else {
                format!("|#{}", t.dogstatsd_tags.join(","))
            },
        ),
    ] {
        if addr.is_empty() {
            continue;
        }
        let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Err(ConfigError(format!(
                "{key}: invalid address \"{addr}\": want host:port"
            )));
        }
        out.push(Target {
            addr: addr.clone(),
            tags,
        });
    }
    Ok(out)
}

/// `lines` (one metric per line) in packets of at most [`PACKET`] bytes,
/// each line followed by `tags`. A line longer than a packet goes alone.
fn packets(lines: &str, tags: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in lines.lines().filter(|l| !l.is_empty()) {
        let need = line.len() + tags.len() + usize::from(!cur.is_empty());
        if !cur.is_empty() && cur.len() + need > PACKET {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(line);
        cur.push_str(tags);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A socket connected to the target, or why not (the name does not resolve
/// yet, and so on: tried again at the next flush that has something).
async fn connect(addr: &str) -> std::io::Result<UdpSocket> {
    let to: SocketAddr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let local: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(to).await?;
    Ok(sock)
}

/// Sends the agent's metrics to `targets` until the agent stops.
pub async fn run(agent: Arc<Agent>, targets: Vec<Target>, mut stop: watch::Receiver<bool>) {
    if targets.is_empty() {
        return;
    }
    agent.metrics.tap();
    let mut socks: Vec<Option<UdpSocket>> = targets.iter().map(|_| None).collect();
    let mut warned = vec![false; targets.len()];
    let mut tick = tokio::time::interval(FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gauges_at = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::stopped(&mut stop) => return,
        }
        let mut lines = agent.metrics.take_lines();
        if tokio::time::Instant::now() >= gauges_at {
            gauges_at += GAUGES;
            for (name, v) in crate::metrics::gauges(&agent) {
                let _ = writeln!(lines, "{}:{v}|g", agent.metrics.name(&name));
            }
        }
        if lines.is_empty() {
            continue;
        }
        for (i, t) in targets.iter().enumerate() {
            if socks[i].is_none() {
                match connect(&t.addr).await {
                    Ok(s) => socks[i] = Some(s),
                    Err(e) => {
                        if !warned[i] {
                            warn!("metrics: cannot reach {}: {e}; retrying", t.addr);
                            warned[i] = true;
                        }
                        continue;
                    }
                }
            }
            let Some(sock) = &socks[i] else { continue };
            for p in packets(&lines, &t.tags) {
                // UDP: a server that is down loses these lines, as with
                // Consul; nothing waits for it.
                let _ = sock.send(p.as_bytes()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_stay_under_the_limit_and_carry_tags() {
        let line = format!("consul.http.GET.v1.kv._:{}|ms", "1".repeat(80));
        let lines: String = (0..40).map(|_| format!("{line}\n")).collect();
        let ps = packets(&lines, "|#env:test");
        assert!(ps.len() > 1);
        let mut n = 0;
        for p in &ps {
            assert!(p.len() <= PACKET, "{}", p.len());
            for l in p.split('\n') {
                assert_eq!(l, format!("{line}|#env:test"));
                n += 1;
            }
        }
        assert_eq!(n, 40);
        assert!(packets("", "").is_empty());
    }

    #[test]
    fn addresses_are_checked() {
        let mut t = TelemetryConfig {
            statsd_address: "127.0.0.1:8125".into(),
            dogstatsd_addr: "dd-agent.example:8125".into(),
            dogstatsd_tags: vec!["env:prod".into(), "team:files".into()],
            ..TelemetryConfig::default()
        };
        let ts = targets(&t).unwrap();
        assert_eq!(ts.len(), 2);
        assert_eq!(ts[0].tags, "");
        assert_eq!(ts[1].tags, "|#env:prod,team:files");
        for bad in ["127.0.0.1", "127.0.0.1:0", ":8125", "host:port"] {
            t.statsd_address = bad.into();
            let e = targets(&t).unwrap_err().to_string();
            assert!(
                e.contains("telemetry.statsd_address: invalid address"),
                "{bad}: {e}"
            );
        }
    }
}
