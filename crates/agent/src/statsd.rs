//! The agent's metrics sent to statsd and DogStatsD servers over UDP
//! (`telemetry.statsd_address`, `telemetry.dogstatsd_addr`) and to a
//! statsite server over TCP (`telemetry.statsite_address`), as Consul's
//! sinks send them: every request's timing as `NAME:MS|ms` and counter
//! increments as `NAME:N|c` when they happen (sent in packets of at most
//! 1,432 bytes every 100 ms), and the gauges of `/v1/agent/metrics` as
//! `NAME:V|g` every 10 s. DogStatsD lines carry `telemetry.dogstatsd_tags`
//! (`|#env:prod,team:files`). Names follow `telemetry.metrics_prefix`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::Agent;
use crate::config::{ConfigError, TelemetryConfig};

/// Consul's statsd packet limit (fits an Ethernet frame).
const PACKET: usize = 1432;
/// How often the lines kept so far are sent.
const FLUSH: Duration = Duration::from_millis(100);
/// How often the gauges are sent (the first time 1 s after start).
const GAUGES: Duration = Duration::from_secs(10);

/// A server to send to: its `host:port`, for DogStatsD the tag suffix, and
/// whether it takes a TCP stream (statsite) rather than UDP packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: String,
    /// `|#a,b` (DogStatsD with tags), or empty.
    pub tags: String,
    pub tcp: bool,
}

/// The configured servers, their addresses checked (`host:port`).
pub fn targets(t: &TelemetryConfig) -> Result<Vec<Target>, ConfigError> {
    let mut out = Vec::new();
    for (key, addr, tags, tcp) in [
        (
            "telemetry.statsd_address",
            &t.statsd_address,
            String::new(),
            false,
        ),
        (
            "telemetry.dogstatsd_addr",
            &t.dogstatsd_addr,
            if t.dogstatsd_tags.is_empty() {
                String::new()
            } else {
                format!("|#{}", t.dogstatsd_tags.join(","))
            },
            false,
        ),
        (
            "telemetry.statsite_address",
            &t.statsite_address,
            String::new(),
            true,
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
            tcp,
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

/// Where metrics go: a UDP socket, or a TCP stream (statsite).
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// A connection to the target, or why not (the name does not resolve yet,
/// the server is down, and so on: tried again at the next flush that has
/// something).
async fn connect(t: &Target) -> std::io::Result<Conn> {
    let to: SocketAddr = tokio::net::lookup_host(t.addr.as_str())
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    if t.tcp {
        let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(to))
            .await
            .map_err(|_| std::io::Error::other("connection timed out"))??;
        let _ = s.set_nodelay(true);
        return Ok(Conn::Tcp(s));
    }
    let local: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(to).await?;
    Ok(Conn::Udp(sock))
}

/// Sends the agent's metrics to `targets` until the agent stops. Each
/// target has its own task, so a slow or unreachable one (a statsite server
/// that does not answer the TCP connect) does not delay the others; a target
/// more than [`BACKLOG`] flushes behind loses the newest.
pub async fn run(agent: Arc<Agent>, targets: Vec<Target>, mut stop: watch::Receiver<bool>) {
    if targets.is_empty() {
        return;
    }
    agent.metrics.tap();
    let senders: Vec<mpsc::Sender<Arc<str>>> = targets
        .into_iter()
        .map(|t| {
            let (tx, rx) = mpsc::channel(BACKLOG);
            tokio::spawn(send_to(t, rx));
            tx
        })
        .collect();
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
                let _ = writeln!(lines, "{}:{v}|g", agent.metrics.gauge_name(&name));
            }
        }
        if lines.is_empty() {
            continue;
        }
        let lines: Arc<str> = lines.into();
        for tx in &senders {
            let _ = tx.try_send(lines.clone());
        }
    }
}

/// Flushes a target may fall behind before it loses lines.
const BACKLOG: usize = 64;

/// Sends what `rx` brings to one target until the channel closes.
async fn send_to(t: Target, mut rx: mpsc::Receiver<Arc<str>>) {
    let mut conn = None;
    let mut warned = false;
    while let Some(lines) = rx.recv().await {
        if conn.is_none() {
            match connect(&t).await {
                Ok(c) => {
                    conn = Some(c);
                    warned = false;
                }
                Err(e) => {
                    if !warned {
                        warn!("metrics: cannot reach {}: {e}; retrying", t.addr);
                        warned = true;
                    }
                    continue;
                }
            }
        }
        match &mut conn {
            Some(Conn::Udp(sock)) => {
                for p in packets(&lines, &t.tags) {
                    // UDP: a server that is down loses these lines, as with
                    // Consul; nothing waits for it.
                    let _ = sock.send(p.as_bytes()).await;
                }
            }
            Some(Conn::Tcp(stream)) => {
                // A stream that breaks (or stalls 5 s) is dropped and opened
                // again with the next lines; these are lost.
                let write = tokio::time::timeout(
                    Duration::from_secs(5),
                    stream.write_all(lines.as_bytes()),
                )
                .await;
                if !matches!(write, Ok(Ok(()))) {
                    conn = None;
                }
            }
            None => {}
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
