//! Choosing an instance (least connections), connecting with a timeout and
//! retries, resolving host names with a short cache, and relaying bytes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::debug;

use crate::metrics::Counters;

/// How long a host name's addresses are reused before asking again.
pub const DNS_TTL: Duration = Duration::from_secs(30);
/// Per-direction relay buffer.
const BUF: usize = 16 * 1024;

/// One instance to connect to: an IP address or a host name, and a port.
#[derive(Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Connections open to it now (for least-connections balancing).
    pub active: AtomicU64,
}

impl Endpoint {
    pub fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Counts a connection to an endpoint while it lives.
pub struct EndpointGuard(Arc<Endpoint>);

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

/// The instances of one destination, balanced by least connections.
#[derive(Default)]
pub struct Balancer {
    endpoints: RwLock<Vec<Arc<Endpoint>>>,
}

impl Balancer {
    /// Replaces the instance set, keeping the counters of instances that
    /// stay.
    pub fn update(&self, list: &[(String, u16)]) {
        let mut cur = self.endpoints.write();
        let old: HashMap<(String, u16), Arc<Endpoint>> = cur
            .iter()
            .map(|e| ((e.host.clone(), e.port), e.clone()))
            .collect();
        *cur = list
            .iter()
            .map(|(h, p)| {
                old.get(&(h.clone(), *p)).cloned().unwrap_or_else(|| {
                    Arc::new(Endpoint {
                        host: h.clone(),
                        port: *p,
                        active: AtomicU64::new(0),
                    })
                })
            })
            .collect();
    }

    /// The instances, fewest open connections first (ties in random order).
    pub fn ordered(&self) -> Vec<Arc<Endpoint>> {
        let mut v: Vec<(u64, u32, Arc<Endpoint>)> = self
            .endpoints
            .read()
            .iter()
            .map(|e| (e.active.load(Relaxed), rand::random::<u32>(), e.clone()))
            .collect();
        v.sort_by_key(|(a, r, _)| (*a, *r));
        v.into_iter().map(|(_, _, e)| e).collect()
    }

    /// The instance labels, for `/config`.
    pub fn labels(&self) -> Vec<String> {
        self.endpoints.read().iter().map(|e| e.label()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.read().is_empty()
    }
}

/// Host name → (when resolved, addresses).
#[derive(Default)]
pub struct Resolver {
    cache: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
}

impl Resolver {
    /// The addresses of `host` (an IP literal is its own answer).
    pub async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if let Some((at, ips)) = self.cache.lock().get(host)
            && at.elapsed() < DNS_TTL
        {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        self.cache.lock().insert(
            host.to_string(),
            (Instant::now(), addrs.iter().map(SocketAddr::ip).collect()),
        );
        Ok(addrs)
    }
}

/// Connects to the least-loaded instance, trying the next one when a
/// connection fails or times out; every failure is counted.
pub async fn connect(
    balancer: &Balancer,
    resolver: &Resolver,
    timeout: Duration,
    counters: &Counters,
) -> Result<(TcpStream, EndpointGuard, String), String> {
    let endpoints = balancer.ordered();
    if endpoints.is_empty() {
        return Err("no healthy instance".into());
    }
    let mut errors = Vec::new();
    for ep in endpoints.into_iter().take(3) {
        let label = ep.label();
        ep.active.fetch_add(1, Relaxed);
        let guard = EndpointGuard(ep.clone());
        let addrs = match resolver.resolve(&ep.host, ep.port).await {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => {
                counters.connect_errors.fetch_add(1, Relaxed);
                errors.push(format!("{label}: no address"));
                continue;
            }
            Err(e) => {
                counters.connect_errors.fetch_add(1, Relaxed);
                errors.push(format!("{label}: resolving: {e}"));
                continue;
            }
        };
        for addr in addrs {
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok((s, guard, label));
                }
                Ok(Err(e)) => {
                    counters.connect_errors.fetch_add(1, Relaxed);
                    debug!("connecting to {addr}: {e}");
                    errors.push(format!("{addr}: {e}"));
                }
                Err(_) => {
                    counters.connect_errors.fetch_add(1, Relaxed);
                    errors.push(format!("{addr}: timed out after {timeout:?}"));
                }
            }
        }
    }
    Err(errors.join("; "))
}

/// Relays bytes both ways until both sides are done; counts them.
pub async fn relay<A, B>(mut down: A, mut up: B, counters: &Counters) -> std::io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let r = tokio::io::copy_bidirectional_with_sizes(&mut down, &mut up, BUF, BUF).await;
    if let Ok((sent, received)) = r {
        counters.bytes_sent.fetch_add(sent, Relaxed);
        counters.bytes_received.fetch_add(received, Relaxed);
    }
    r.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_connections_first_and_counters_kept() {
        let b = Balancer::default();
        b.update(&[("127.0.0.1".into(), 1), ("127.0.0.1".into(), 2)]);
        let first = b.ordered();
        first[0].active.fetch_add(5, Relaxed);
        let busy = first[0].port;
        assert_ne!(b.ordered()[0].port, busy, "the busy one goes last");
        // An update keeps the counters of the instances that stay.
        b.update(&[("127.0.0.1".into(), busy), ("127.0.0.1".into(), 3)]);
        let kept = b.ordered().into_iter().find(|e| e.port == busy).unwrap();
        assert_eq!(kept.active.load(Relaxed), 5);
    }

    #[tokio::test]
    async fn a_failed_instance_is_skipped_and_counted() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_port = live.local_addr().unwrap().port();
        // A port nobody listens on.
        let dead_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let b = Balancer::default();
        b.update(&[
            ("127.0.0.1".into(), dead_port),
            ("127.0.0.1".into(), live_port),
        ]);
        // Make the live one look busier, so the dead one is tried first.
        b.ordered()
            .into_iter()
            .find(|e| e.port == live_port)
            .unwrap()
            .active
            .fetch_add(1, Relaxed);
        let counters = Counters::default();
        let (_s, _g, label) = connect(&b, &Resolver::default(), Duration::from_secs(2), &counters)
            .await
            .unwrap();
        assert_eq!(label, format!("127.0.0.1:{live_port}"));
        assert_eq!(counters.connect_errors.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn host_names_are_resolved_and_cached() {
        let r = Resolver::default();
        let addrs = r.resolve("localhost", 5432).await.unwrap();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(r.cache.lock().contains_key("localhost"));
        let ip = r.resolve("127.0.0.2", 1).await.unwrap();
        assert_eq!(ip, vec!["127.0.0.2:1".parse::<SocketAddr>().unwrap()]);
    }
}
