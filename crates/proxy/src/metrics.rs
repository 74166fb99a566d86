//! Counters of the proxy, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::RwLock;

/// The counters of one service (a gateway's linked service, a sidecar's
/// upstream or its inbound listener).
#[derive(Default, Debug)]
pub struct Counters {
    pub opened: AtomicU64,
    pub active: AtomicU64,
    pub closed: AtomicU64,
    /// Bytes from the connecting side to the far side.
    pub bytes_sent: AtomicU64,
    /// Bytes from the far side back.
    pub bytes_received: AtomicU64,
    pub handshake_failures: AtomicU64,
    pub authz_denied: AtomicU64,
    pub connect_errors: AtomicU64,
    pub limit_refused: AtomicU64,
    pub upstream_tls_failures: AtomicU64,
    /// Connections refused because the service had no passing instance.
    pub no_healthy_refused: AtomicU64,
    /// Instances set aside by the passive health check.
    pub ejections: AtomicU64,
}

impl Counters {
    fn rows(&self) -> [(&'static str, &'static str, &'static str, u64); 12] {
        [
            (
                "connections_opened_total",
                "counter",
                "Connections accepted and carried",
                self.opened.load(Relaxed),
            ),
            (
                "connections_active",
                "gauge",
                "Connections open now",
                self.active.load(Relaxed),
            ),
            (
                "connections_closed_total",
                "counter",
                "Connections that ended",
                self.closed.load(Relaxed),
            ),
            (
                "bytes_sent_total",
                "counter",
                "Bytes from the caller towards the service",
                self.bytes_sent.load(Relaxed),
            ),
            (
                "bytes_received_total",
                "counter",
                "Bytes from the service back to the caller",
                self.bytes_received.load(Relaxed),
            ),
            (
                "tls_handshake_failures_total",
                "counter",
                "Mesh TLS handshakes that failed",
                self.handshake_failures.load(Relaxed),
            ),
            (
                "authorization_denied_total",
                "counter",
                "Connections refused by intentions",
                self.authz_denied.load(Relaxed),
            ),
            (
                "connect_errors_total",
                "counter",
                "Failed connection attempts to an instance",
                self.connect_errors.load(Relaxed),
            ),
            (
                "limit_refused_total",
                "counter",
                "Connections refused by a connection limit",
                self.limit_refused.load(Relaxed),
            ),
            (
                "upstream_tls_failures_total",
                "counter",
                "TLS origination failures towards the service",
                self.upstream_tls_failures.load(Relaxed),
            ),
            (
                "no_healthy_instance_refused_total",
                "counter",
                "Connections refused because no instance of the service passed its checks",
                self.no_healthy_refused.load(Relaxed),
            ),
            (
                "outlier_ejections_total",
                "counter",
                "Instances set aside after consecutive connect failures (PassiveHealthCheck)",
                self.ejections.load(Relaxed),
            ),
        ]
    }
}

/// Counters by service name.
#[derive(Default)]
pub struct Metrics {
    by_service: RwLock<BTreeMap<String, Arc<Counters>>>,
}

impl Metrics {
    /// The counters of `service` (created on first use). The empty name
    /// holds what belongs to no known service (an unknown SNI).
    pub fn service(&self, service: &str) -> Arc<Counters> {
        if let Some(c) = self.by_service.read().get(service) {
            return c.clone();
        }
        self.by_service
            .write()
            .entry(service.to_string())
            .or_default()
            .clone()
    }

    /// Connections open across every service.
    pub fn active_total(&self) -> u64 {
        self.by_service
            .read()
            .values()
            .map(|c| c.active.load(Relaxed))
            .sum()
    }

    /// The Prometheus exposition of every counter.
    pub fn render(&self, mode: &str) -> String {
        let services = self.by_service.read();
        let mut out = String::new();
        let names = Counters::default().rows();
        for (i, (name, kind, help, _)) in names.iter().enumerate() {
            let _ = writeln!(out, "# HELP meshgate_proxy_{name} {help}.");
            let _ = writeln!(out, "# TYPE meshgate_proxy_{name} {kind}");
            for (svc, c) in services.iter() {
                let v = c.rows()[i].3;
                let _ = writeln!(
                    out,
                    "meshgate_proxy_{name}{{mode=\"{mode}\",service=\"{}\"}} {v}",
                    escape(svc)
                );
            }
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counts a connection as open until dropped.
pub struct ActiveGuard(Arc<Counters>);

impl ActiveGuard {
    pub fn new(c: Arc<Counters>) -> ActiveGuard {
        c.opened.fetch_add(1, Relaxed);
        c.active.fetch_add(1, Relaxed);
        ActiveGuard(c)
    }

    /// Counts the connection in if fewer than `max` are open (checked and
    /// counted in one step: connections on other threads cannot slip in
    /// between); `None` when the limit is reached.
    pub fn within(c: Arc<Counters>, max: Option<u64>) -> Option<ActiveGuard> {
        let Some(max) = max else {
            return Some(ActiveGuard::new(c));
        };
        c.active
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .ok()?;
        c.opened.fetch_add(1, Relaxed);
        Some(ActiveGuard(c))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
        self.0.closed.fetch_add(1, Relaxed);
    }
}
