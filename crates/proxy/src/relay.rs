//! Choosing an instance (least connections), connecting with a timeout and
//! retries, resolving host names with a short cache, and relaying bytes.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::mesh::Outlier;
use crate::metrics::Counters;

/// How long a host name's addresses are reused before asking again.
pub const DNS_TTL: Duration = Duration::from_secs(30);
/// Per-direction relay buffer of a new connection: enough for the request
/// and answer messages of a database session, and little memory for the
/// many connections that sit idle.
const BUF: usize = 16 * 1024;
/// What a direction's buffer grows to once a read fills it (a bulk
/// transfer): a quarter of the reads and writes per byte, and several TLS
/// records per `writev`.
const BUF_MAX: usize = 64 * 1024;

/// One instance to connect to: an IP address or a host name, and a port.
#[derive(Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Connections open to it now (for least-connections balancing).
    pub active: AtomicU64,
    /// Connect failures in a row (the passive health check).
    failures: AtomicU32,
    /// Until when it is set aside ([`now_ms`]; 0: it is not).
    ejected_until: AtomicU64,
    /// Envoy's ejection multiplier: how many times it was set aside, less
    /// the intervals it stayed healthy since.
    ejections: AtomicU32,
}

/// The longest an instance is set aside (unless its base time is longer):
/// Envoy's `max_ejection_time` default.
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Milliseconds since the process first asked (a monotonic clock).
fn now_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_millis() as u64 + 1
}

impl Endpoint {
    fn new(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
            active: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
        }
    }

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
    /// Held while an instance is set aside (the cap is checked and the
    /// instance marked in one step).
    ejecting: Mutex<()>,
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
                old.get(&(h.clone(), *p))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::new(h, *p)))
            })
            .collect();
    }

    /// The instances, fewest open connections first (ties in random order),
    /// leaving out those the passive health check set aside — unless that
    /// leaves none, or the check is off (`aside_counts` false).
    pub fn ordered(&self, aside_counts: bool) -> Vec<Arc<Endpoint>> {
        let now = now_ms();
        let eps = self.endpoints.read();
        let usable = !aside_counts || eps.iter().any(|e| e.ejected_until.load(Relaxed) <= now);
        let mut v: Vec<(u64, u32, Arc<Endpoint>)> = eps
            .iter()
            .filter(|e| !usable || e.ejected_until.load(Relaxed) <= now)
            .map(|e| (e.active.load(Relaxed), rand::random::<u32>(), e.clone()))
            .collect();
        v.sort_by_key(|(a, r, _)| (*a, *r));
        v.into_iter().map(|(_, _, e)| e).collect()
    }

    /// The instances set aside now (for `/config`).
    pub fn ejected(&self) -> Vec<String> {
        let now = now_ms();
        self.endpoints
            .read()
            .iter()
            .filter(|e| e.ejected_until.load(Relaxed) > now)
            .map(|e| e.label())
            .collect()
    }

    /// Counts a connect failure of `ep`; after `o.max_failures` in a row it
    /// is set aside (Envoy's consecutive-failure outlier detection), within
    /// `o.max_ejection_percent` of the instances (at least one), for the base
    /// time times the number of times it was (at most 300 s or the base).
    fn failed(&self, ep: &Endpoint, o: &Outlier, counters: &Counters) {
        let now = now_ms();
        // Already aside (connections that chose it before it was): nothing
        // to add.
        if ep.ejected_until.load(Relaxed) > now {
            return;
        }
        // Exactly one of the connections that fail at once reaches the
        // threshold (and resets the count).
        let reached = ep
            .failures
            .fetch_update(Relaxed, Relaxed, |f| {
                Some(if f + 1 >= o.max_failures { 0 } else { f + 1 })
            })
            .is_ok_and(|f| f + 1 >= o.max_failures);
        if !reached || rand::random::<u32>() % 100 >= o.enforcing {
            return;
        }
        // The cap is counted and the instance set aside in one step; another
        // thread may have set it aside meanwhile.
        let _one_at_a_time = self.ejecting.lock();
        if ep.ejected_until.load(Relaxed) > now {
            return;
        }
        let (aside, total) = {
            let eps = self.endpoints.read();
            let aside = eps
                .iter()
                .filter(|e| e.ejected_until.load(Relaxed) > now)
                .count();
            (aside, eps.len())
        };
        if aside >= (total * o.max_ejection_percent as usize / 100).max(1) {
            return;
        }
        // Envoy's multiplier: one more than before, less one for each
        // interval the instance stayed healthy since it last came back.
        let back_since = ep.ejected_until.load(Relaxed);
        let healthy = if back_since == 0 {
            u64::MAX
        } else {
            now.saturating_sub(back_since) / (o.interval.as_millis() as u64).max(1)
        };
        let before = u64::from(ep.ejections.load(Relaxed));
        // It stops growing once the time aside reaches the maximum.
        let max = o.base_ejection.max(MAX_EJECTION);
        let most = max.as_millis().div_ceil(o.base_ejection.as_millis().max(1)) as u32;
        let times = (before.saturating_sub(healthy) as u32 + 1).min(most.max(1));
        ep.ejections.store(times, Relaxed);
        let d = (o.base_ejection * times).min(max);
        ep.ejected_until.store(now + d.as_millis() as u64, Relaxed);
        counters.ejections.fetch_add(1, Relaxed);
        warn!(
            "instance {} set aside for {d:?} after {} connect failures in a row (PassiveHealthCheck)",
            ep.label(),
            o.max_failures
        );
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
/// connection fails or times out; every failure is counted, and with
/// `outlier` an instance that keeps failing is set aside for a while.
pub async fn connect(
    balancer: &Balancer,
    resolver: &Resolver,
    timeout: Duration,
    counters: &Counters,
    outlier: Option<&Outlier>,
) -> Result<(TcpStream, EndpointGuard, String), String> {
    let endpoints = balancer.ordered(outlier.is_some());
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
                    if outlier.is_some() {
                        ep.failures.store(0, Relaxed);
                    }
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
        if let Some(o) = outlier {
            balancer.failed(&ep, o, counters);
        }
    }
    Err(errors.join("; "))
}

/// The bytes one connection carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// From the downstream to the upstream.
    pub up: u64,
    /// From the upstream to the downstream.
    pub down: u64,
}

/// Relays bytes both ways until both sides are done; counts them.
///
/// Like `tokio::io::copy_bidirectional` (same flushing, half-close and error
/// behaviour), except that each direction starts with a [`BUF`] buffer and
/// moves to a [`BUF_MAX`] one when a read fills it.
pub async fn relay<A, B>(mut down: A, mut up: B, counters: &Counters) -> (Carried, io::Result<()>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut sent = Direction::new();
    let mut received = Direction::new();
    let r = poll_fn(|cx| {
        let a = sent.poll(cx, &mut down, &mut up)?;
        let b = received.poll(cx, &mut up, &mut down)?;
        ready!(a);
        ready!(b);
        Poll::Ready(Ok(()))
    })
    .await;
    counters.bytes_sent.fetch_add(sent.copy.amt, Relaxed);
    counters
        .bytes_received
        .fetch_add(received.copy.amt, Relaxed);
    let carried = Carried {
        up: sent.copy.amt,
        down: received.copy.amt,
    };
    (carried, r)
}

/// One direction of a relay: copying until the reader's end, then shutting
/// the writer down.
struct Direction {
    copy: Copy,
    state: State,
}

#[derive(PartialEq)]
enum State {
    Copying,
    ShuttingDown,
    Done,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            copy: Copy::new(),
            state: State::Copying,
        }
    }

    fn poll<R, W>(&mut self, cx: &mut Context<'_>, r: &mut R, w: &mut W) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            match self.state {
                State::Copying => {
                    ready!(self.copy.poll_copy(cx, r, w))?;
                    self.state = State::ShuttingDown;
                }
                State::ShuttingDown => {
                    ready!(Pin::new(&mut *w).poll_shutdown(cx))?;
                    self.state = State::Done;
                }
                State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// tokio's `CopyBuffer` with a buffer that grows: bytes are read into the
/// free end of the buffer while the writer is busy, written out, and the
/// buffer is reused from the start once it is empty.
struct Copy {
    buf: Box<[u8]>,
    /// Written up to here…
    pos: usize,
    /// …of the bytes read up to here.
    cap: usize,
    /// Bytes written in total.
    amt: u64,
    read_done: bool,
    need_flush: bool,
    /// A read filled the buffer: take the larger one once it is empty.
    grow: bool,
}

impl Copy {
    fn new() -> Copy {
        Copy {
            buf: vec![0; BUF].into_boxed_slice(),
            pos: 0,
            cap: 0,
            amt: 0,
            read_done: false,
            need_flush: false,
            grow: false,
        }
    }

    fn poll_fill_buf<R>(&mut self, cx: &mut Context<'_>, reader: &mut R) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
    {
        let mut buf = ReadBuf::new(&mut self.buf);
        buf.set_filled(self.cap);
        let res = loop {
            match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                res => break res,
            }
        };
        if let Poll::Ready(Ok(())) = res {
            let filled = buf.filled().len();
            self.read_done = self.cap == filled;
            self.cap = filled;
            if filled == self.buf.len() && self.buf.len() < BUF_MAX {
                self.grow = true;
            }
        }
        res
    }

    fn poll_write_buf<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<usize>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            match Pin::new(&mut *writer).poll_write(cx, &self.buf[self.pos..self.cap]) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Pending => {
                    // Read more while the writer is busy, for a larger
                    // write when it is ready again.
                    if !self.read_done && self.cap < self.buf.len() {
                        ready!(self.poll_fill_buf(cx, reader))?;
                    }
                    return Poll::Pending;
                }
                res => return res,
            }
        }
    }

    /// Copies until the reader's end and a final flush; the number of
    /// bytes is in `amt`.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // Yield now and then when both sides are always ready, as tokio's
        // own copy does.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        loop {
            if self.cap < self.buf.len() && !self.read_done {
                match self.poll_fill_buf(cx, reader) {
                    Poll::Ready(Ok(())) => coop.made_progress(),
                    Poll::Ready(Err(e)) => {
                        coop.made_progress();
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => {
                        if self.pos == self.cap {
                            // Nothing to write: flush what was written, in
                            // case the reader waits for it.
                            if self.need_flush {
                                ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                                coop.made_progress();
                                self.need_flush = false;
                            }
                            return Poll::Pending;
                        }
                    }
                }
            }
            while self.pos < self.cap {
                let n = ready!(self.poll_write_buf(cx, reader, writer))?;
                coop.made_progress();
                if n == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "write zero byte into writer",
                    )));
                }
                self.pos += n;
                self.amt += n as u64;
                self.need_flush = true;
            }
            debug_assert!(self.pos <= self.cap, "writer wrote more than it was given");
            // Everything read is written: the buffer is empty again.
            self.pos = 0;
            self.cap = 0;
            if self.grow {
                self.grow = false;
                self.buf = vec![0; BUF_MAX].into_boxed_slice();
            }
            if self.read_done {
                ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                coop.made_progress();
                return Poll::Ready(Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_connections_first_and_counters_kept() {
        let b = Balancer::default();
        b.update(&[("127.0.0.1".into(), 1), ("127.0.0.1".into(), 2)]);
        let first = b.ordered(true);
        first[0].active.fetch_add(5, Relaxed);
        let busy = first[0].port;
        assert_ne!(b.ordered(true)[0].port, busy, "the busy one goes last");
        // An update keeps the counters of the instances that stay.
        b.update(&[("127.0.0.1".into(), busy), ("127.0.0.1".into(), 3)]);
        let kept = b
            .ordered(true)
            .into_iter()
            .find(|e| e.port == busy)
            .unwrap();
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
        b.ordered(true)
            .into_iter()
            .find(|e| e.port == live_port)
            .unwrap()
            .active
            .fetch_add(1, Relaxed);
        let counters = Counters::default();
        let (_s, _g, label) = connect(
            &b,
            &Resolver::default(),
            Duration::from_secs(2),
            &counters,
            None,
        )
        .await
        .unwrap();
        assert_eq!(label, format!("127.0.0.1:{live_port}"));
        assert_eq!(counters.connect_errors.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn an_instance_that_keeps_failing_is_set_aside() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_port = live.local_addr().unwrap().port();
        let dead_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let b = Balancer::default();
        b.update(&[
            ("127.0.0.1".into(), dead_port),
            ("127.0.0.1".into(), live_port),
        ]);
        let o = Outlier {
            max_failures: 2,
            enforcing: 100,
            max_ejection_percent: 50,
            base_ejection: Duration::from_millis(300),
            interval: Duration::from_secs(10),
        };
        let counters = Counters::default();
        let live_ep = b
            .ordered(true)
            .into_iter()
            .find(|e| e.port == live_port)
            .unwrap();
        // Keep the live one looking busier so the dead one is tried first.
        live_ep.active.fetch_add(100, Relaxed);
        for _ in 0..2 {
            connect(
                &b,
                &Resolver::default(),
                Duration::from_secs(2),
                &counters,
                Some(&o),
            )
            .await
            .unwrap();
        }
        assert_eq!(counters.connect_errors.load(Relaxed), 2);
        assert_eq!(counters.ejections.load(Relaxed), 1);
        assert_eq!(b.ejected(), vec![format!("127.0.0.1:{dead_port}")]);
        // Set aside: not tried any more.
        connect(
            &b,
            &Resolver::default(),
            Duration::from_secs(2),
            &counters,
            Some(&o),
        )
        .await
        .unwrap();
        assert_eq!(counters.connect_errors.load(Relaxed), 2);
        // At most half of the instances: the live one is never set aside,
        // even if it failed too.
        drop(live);
        for _ in 0..3 {
            let _ = connect(
                &b,
                &Resolver::default(),
                Duration::from_secs(2),
                &counters,
                Some(&o),
            )
            .await;
        }
        assert_eq!(b.ejected().len(), 1);
        // Back once its time aside is over.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(b.ejected().is_empty());
        assert_eq!(b.ordered(true).len(), 2);
    }

    fn outlier(max_failures: u32, base_ms: u64, interval_ms: u64) -> Outlier {
        Outlier {
            max_failures,
            enforcing: 100,
            max_ejection_percent: 50,
            base_ejection: Duration::from_millis(base_ms),
            interval: Duration::from_millis(interval_ms),
        }
    }

    /// Connections failing at once on several threads set each instance
    /// aside once, with no cap in the way.
    #[test]
    fn simultaneous_failures_set_each_instance_aside_once() {
        let b = Arc::new(Balancer::default());
        b.update(&[
            ("127.0.0.1".into(), 1),
            ("127.0.0.1".into(), 2),
            ("127.0.0.1".into(), 3),
            ("127.0.0.1".into(), 4),
        ]);
        let o = Outlier {
            max_ejection_percent: 100,
            ..outlier(1, 60_000, 10_000)
        };
        let counters = Arc::new(Counters::default());
        let eps = b.ordered(true);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (b, counters, o) = (b.clone(), counters.clone(), o.clone());
                let ep = eps[i % 4].clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        b.failed(&ep, &o, &counters);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.ejected().len(), 4);
        assert_eq!(counters.ejections.load(Relaxed), 4);
        for e in &eps {
            assert_eq!(e.ejections.load(Relaxed), 1, "{}", e.label());
        }
    }

    /// The multiplier stops growing once the time aside is the maximum.
    #[test]
    fn the_multiplier_stops_at_the_maximum() {
        let b = Balancer::default();
        b.update(&[("127.0.0.1".into(), 1), ("127.0.0.1".into(), 2)]);
        let o = outlier(1, 100_000, 1_000_000);
        let counters = Counters::default();
        let ep = b.ordered(true)[0].clone();
        for _ in 0..10 {
            ep.ejected_until.store(1, Relaxed);
            b.failed(&ep, &o, &counters);
        }
        // 300 s / 100 s: three at most.
        assert_eq!(ep.ejections.load(Relaxed), 3);
    }

    /// Connections failing at once on several threads set an instance aside
    /// once, and never more instances than the cap allows.
    #[test]
    fn simultaneous_failures_set_aside_once_within_the_cap() {
        let b = Arc::new(Balancer::default());
        b.update(&[("127.0.0.1".into(), 1), ("127.0.0.1".into(), 2)]);
        let o = outlier(3, 60_000, 10_000);
        let counters = Arc::new(Counters::default());
        let eps = b.ordered(true);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (b, counters, o) = (b.clone(), counters.clone(), o.clone());
                let ep = eps[i % 2].clone();
                std::thread::spawn(move || {
                    for _ in 0..30 {
                        b.failed(&ep, &o, &counters);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Two instances, 50 %: one set aside, once.
        assert_eq!(b.ejected().len(), 1);
        assert_eq!(counters.ejections.load(Relaxed), 1);
        let aside = eps
            .iter()
            .find(|e| e.ejected_until.load(Relaxed) > now_ms())
            .unwrap();
        assert_eq!(aside.ejections.load(Relaxed), 1);
    }

    /// Envoy's multiplier: set aside again soon after coming back, twice the
    /// time; after intervals of health, back to once.
    #[test]
    fn the_time_aside_grows_and_decays() {
        let b = Balancer::default();
        b.update(&[("127.0.0.1".into(), 1), ("127.0.0.1".into(), 2)]);
        let o = outlier(1, 100, 1000);
        let counters = Counters::default();
        let ep = b.ordered(true)[0].clone();
        b.failed(&ep, &o, &counters);
        assert_eq!(ep.ejections.load(Relaxed), 1);
        std::thread::sleep(Duration::from_millis(150));
        b.failed(&ep, &o, &counters);
        assert_eq!(ep.ejections.load(Relaxed), 2, "again at once: twice");
        let until = ep.ejected_until.load(Relaxed);
        assert!(until >= now_ms() + 100, "about 200 ms aside");
        // Back, then two intervals healthy: the multiplier is spent.
        std::thread::sleep(Duration::from_millis(200 + 2100));
        b.failed(&ep, &o, &counters);
        assert_eq!(ep.ejections.load(Relaxed), 1);
        assert_eq!(counters.ejections.load(Relaxed), 3);
    }

    #[tokio::test]
    async fn relays_both_ways_with_half_close_and_counts() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, down) = tokio::io::duplex(256 * 1024);
        let (up, mut server) = tokio::io::duplex(256 * 1024);
        let counters = Arc::new(Counters::default());
        let c2 = counters.clone();
        let relay = tokio::spawn(async move { relay(down, up, &c2).await });
        let request: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let answer: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        let (req, ans) = (request.clone(), answer.clone());
        let server = tokio::spawn(async move {
            // The whole request arrives, then its end (the client's
            // half-close); the answer still goes back afterwards.
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            assert!(got == req, "request corrupted ({} bytes)", got.len());
            server.write_all(&ans).await.unwrap();
            server.shutdown().await.unwrap();
        });
        client.write_all(&request).await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(got == answer, "answer corrupted ({} bytes)", got.len());
        server.await.unwrap();
        let (carried, result) = relay.await.unwrap();
        result.unwrap();
        assert_eq!(
            carried,
            Carried {
                up: 1_000_000,
                down: 300_000
            }
        );
        assert_eq!(counters.bytes_sent.load(Relaxed), 1_000_000);
        assert_eq!(counters.bytes_received.load(Relaxed), 300_000);
    }

    #[tokio::test]
    async fn the_buffer_grows_for_bulk_transfers_only() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Small messages, one at a time: the buffer stays small.
        let (mut src, mut r) = tokio::io::duplex(1024 * 1024);
        let (mut w, mut dst) = tokio::io::duplex(1024 * 1024);
        let mut d = Direction::new();
        for _ in 0..100 {
            src.write_all(&[7u8; 200]).await.unwrap();
            let mut msg = [0u8; 200];
            tokio::select! {
                end = poll_fn(|cx| d.poll(cx, &mut r, &mut w)) => panic!("the copy ended: {end:?}"),
                read = dst.read_exact(&mut msg) => read.unwrap(),
            };
        }
        assert_eq!(d.copy.buf.len(), BUF);
        // A bulk transfer: reads fill it, and it grows; every byte arrives.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            dst.read_to_end(&mut got).await.unwrap();
            got.len()
        });
        src.write_all(&vec![1u8; 512 * 1024]).await.unwrap();
        src.shutdown().await.unwrap();
        poll_fn(|cx| d.poll(cx, &mut r, &mut w)).await.unwrap();
        assert_eq!(d.copy.buf.len(), BUF_MAX);
        drop(w);
        assert_eq!(reader.await.unwrap(), 512 * 1024);
        assert_eq!(d.copy.amt, 100 * 200 + 512 * 1024);
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
