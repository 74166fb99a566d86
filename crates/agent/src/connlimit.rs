//! `limits { http_max_conns_per_client = N }`: how many HTTP API connections
//! one client IP address may hold open at once (Consul's default: 200).
//!
//! A connection over the limit is answered, as Consul answers it, with a fixed
//! `429 Too Many Requests` and closed, without reading its request. A limit of
//! 0 or less means no limit. `meshgate reload` changes the limit for new
//! connections; connections already open stay open.
//!
//! One deliberate difference from Consul: a connection whose source address is
//! the address it reached the agent on (a process on the agent's own host —
//! its sidecars and gateways, `consul-template`, the CLI) is not counted.
//! meshgate's proxies follow their configuration with blocking HTTP queries
//! where Consul's Envoy proxies hold one gRPC stream, so a gateway linked to
//! many services holds a few connections per service; counting them would cap
//! how many services one node's gateway can serve.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::warn;

/// The body Consul's HTTP server sends to a client over its limit.
const TOO_MANY_MESSAGE: &str =
    "Your IP is issuing too many concurrent connections, please rate limit your calls\n";

/// How long the 429 answer may take to write before the connection is closed
/// anyway (Consul: 10 ms; a slow client is not waited for).
pub const REFUSAL_WRITE_PATIENCE: Duration = Duration::from_millis(10);

/// At most one log line per this interval about refused connections.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The whole answer to a connection over the limit.
pub fn refusal() -> Vec<u8> {
    format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TOO_MANY_MESSAGE}",
        TOO_MANY_MESSAGE.len()
    )
    .into_bytes()
}

/// Counts the open API connections of each client address.
#[derive(Debug)]
pub struct ConnLimiter {
    max: AtomicI64,
    open: Mutex<HashMap<IpAddr, u32>>,
    /// Refusals since the last log line, and when that line was written.
    refused: Mutex<(u64, Option<Instant>)>,
}

/// A counted connection: dropping it gives its place back.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What to do with a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Serve it; the slot (if it was counted) lives as long as the connection.
    Serve(Option<Slot>),
    /// Over the limit: answer [`refusal`] and close.
    Refuse,
}

impl ConnLimiter {
    pub fn new(max: i64) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            max: AtomicI64::new(max),
            open: Mutex::new(HashMap::new()),
            refused: Mutex::new((0, None)),
        })
    }

    /// Changes the limit for connections accepted from now on.
    pub fn set_max(&self, max: i64) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Decides about a connection from `peer` accepted on `local`.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, local: IpAddr) -> Admission {
        let peer = peer.to_canonical();
        if peer == local.to_canonical() {
            return Admission::Serve(None);
        }
        let max = self.max.load(Ordering::Relaxed);
        {
            let mut open = self.open.lock();
            let n = open.entry(peer).or_insert(0);
            if max <= 0 || i64::from(*n) < max {
                *n += 1;
                return Admission::Serve(Some(Slot {
                    limiter: self.clone(),
                    ip: peer,
                }));
            }
        }
        self.note_refusal(peer, max);
        Admission::Refuse
    }

    /// Connections currently counted for `ip`.
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.open
            .lock()
            .get(&ip.to_canonical())
            .copied()
            .unwrap_or(0)
    }

    fn note_refusal(&self, peer: IpAddr, max: i64) {
        let mut r = self.refused.lock();
        r.0 += 1;
        let due = r.1.is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            warn!(
                client = %peer,
                limit = max,
                refused = r.0,
                "HTTP connection refused: the client holds limits.http_max_conns_per_client connections already (429)"
            );
            *r = (0, Some(Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_each_client_and_gives_places_back() {
        let l = ConnLimiter::new(2);
        let agent = ip("127.0.0.1");
        let a1 = l.admit(ip("127.0.0.2"), agent);
        let a2 = l.admit(ip("127.0.0.2"), agent);
        assert!(matches!(a1, Admission::Serve(Some(_))));
        assert!(matches!(a2, Admission::Serve(Some(_))));
        assert!(matches!(l.admit(ip("127.0.0.2"), agent), Admission::Refuse));
        // Another client has its own count.
        let b = l.admit(ip("127.0.0.3"), agent);
        assert!(matches!(b, Admission::Serve(Some(_))));
        assert_eq!(l.open(ip("127.0.0.2")), 2);
        drop(a1);
        assert_eq!(l.open(ip("127.0.0.2")), 1);
        let a3 = l.admit(ip("127.0.0.2"), agent);
        assert!(matches!(a3, Admission::Serve(Some(_))));
        drop((a2, a3, b));
        assert_eq!(l.open(ip("127.0.0.2")), 0);
        assert!(l.open.lock().is_empty(), "no entry left for closed clients");
    }

    #[test]
    fn the_agents_own_host_is_not_counted() {
        let l = ConnLimiter::new(1);
        let held: Vec<_> = (0..5)
            .map(|_| l.admit(ip("127.0.0.1"), ip("127.0.0.1")))
            .collect();
        assert!(held.iter().all(|a| matches!(a, Admission::Serve(None))));
        // An IPv4 client seen on a dual-stack listener is the same address.
        let mapped = l.admit(ip("::ffff:10.0.0.5"), ip("10.0.0.5"));
        assert!(matches!(mapped, Admission::Serve(None)));
        assert_eq!(l.open(ip("127.0.0.1")), 0);
    }

    #[test]
    fn zero_or_less_is_no_limit_and_the_limit_can_change() {
        let l = ConnLimiter::new(0);
        let agent = ip("::1");
        let held: Vec<_> = (0..300).map(|_| l.admit(ip("::2"), agent)).collect();
        assert!(held.iter().all(|a| matches!(a, Admission::Serve(Some(_)))));
        l.set_max(300);
        assert!(matches!(l.admit(ip("::2"), agent), Admission::Refuse));
        l.set_max(-1);
        assert!(matches!(l.admit(ip("::2"), agent), Admission::Serve(_)));
    }

    #[test]
    fn the_refusal_is_consuls_answer() {
        let r = String::from_utf8(refusal()).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Connection: close"));
        assert_eq!(body, TOO_MANY_MESSAGE);
    }
}
