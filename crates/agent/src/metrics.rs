//! In-memory metrics for `/v1/agent/metrics` (Consul's JSON form and
//! Prometheus text): counters and timing samples recorded by the agent, and
//! gauges computed from the state when asked.
//!
//! As Consul's in-memory sink, the JSON form aggregates each 10 s interval
//! (aligned to the wall clock) and shows the last finished one, so its
//! `Count`, `Sum` and `Rate` (per second) are those of that interval; the
//! Prometheus form carries totals since start, as Prometheus counters and
//! summaries do.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Debug, Clone, Copy, Default)]
struct Agg {
    count: u64,
    sum: f64,
    sumsq: f64,
    min: f64,
    max: f64,
}

impl Agg {
    fn add(&mut self, v: f64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
        self.sumsq += v * v;
    }
}

/// The length of an interval of the JSON form (Consul's in-memory sink
/// aggregates 10 s).
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
const INTERVAL_MS: u64 = INTERVAL.as_millis() as u64;

/// A counter or a timer: its totals since start (the Prometheus form), and
/// what it recorded in the latest interval it had a value in and in the one
/// before that (the JSON form), by interval number (wall-clock milliseconds
/// since the epoch divided by [`INTERVAL_MS`]).
#[derive(Debug, Default)]
struct Series {
    total: Agg,
    latest: (u64, Agg),
    before: (u64, Agg),
}

impl Series {
    fn add(&mut self, interval: u64, v: f64) {
        self.total.add(v);
        // A value read from the clock just before a boundary may arrive
        // after one from just after it (the clock is read before the lock):
        // it goes to its own interval, which never replaces a later one.
        if interval == self.before.0 && interval < self.latest.0 {
            self.before.1.add(v);
            return;
        }
        if interval < self.latest.0 {
            return;
        }
        if self.latest.0 != interval {
            self.before = std::mem::replace(&mut self.latest, (interval, Agg::default()));
        }
        self.latest.1.add(v);
    }

    /// What was recorded during `interval`, if anything.
    fn during(&self, interval: u64) -> Option<&Agg> {
        [&self.latest, &self.before]
            .into_iter()
            .find(|(i, a)| *i == interval && a.count > 0)
            .map(|(_, a)| a)
    }
}

/// Where the metrics' time starts: a monotonic instant and the wall clock
/// then (every later reading takes one clock read, the monotonic one).
struct Clock {
    started: std::time::Instant,
    wall_ms: u64,
}

/// A reading of the [`Clock`].
#[derive(Debug, Clone, Copy)]
struct Stamp {
    /// Tenths of a second since the start (for the quantiles' window).
    tenths: u32,
    /// The interval it falls in.
    interval: u64,
    /// Milliseconds until that interval ends.
    left_ms: u64,
}

impl Clock {
    fn now(&self) -> Stamp {
        let elapsed = self.started.elapsed().as_millis();
        let wall = self.wall_ms + u64::try_from(elapsed).unwrap_or(u64::MAX / 2);
        Stamp {
            tenths: u32::try_from(elapsed / 100).unwrap_or(u32::MAX),
            interval: wall / INTERVAL_MS,
            left_ms: INTERVAL_MS - wall % INTERVAL_MS,
        }
    }
}

/// How long a timing sample counts towards the quantiles of the Prometheus
/// form: Consul's Prometheus sink keeps its summaries' observations 10 s.
const QUANTILE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// The most recent samples kept per timer for the quantiles.
const QUANTILE_SAMPLES: usize = 512;
/// The quantiles of a timer in the Prometheus form, as Consul's sink gives.
pub const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// A timer: its aggregates, and its latest samples for the quantiles as
/// (tenths of a second since the start, value) — 8 bytes a sample; single
/// precision is what Consul's metrics library keeps too.
#[derive(Default)]
struct Timer {
    series: Series,
    recent: std::collections::VecDeque<(u32, f32)>,
}

/// The [`QUANTILES`] of the samples taken since `since`, nearest rank
/// (`NaN` without any, as a Prometheus summary with no observations in its
/// window).
fn quantiles(recent: &std::collections::VecDeque<(u32, f32)>, since: u32) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = recent
        .iter()
        .filter(|(t, _)| *t >= since)
        .map(|(_, x)| f64::from(*x))
        .collect();
    v.sort_by(f64::total_cmp);
    QUANTILES
        .iter()
        .map(|q| {
            let value = if v.is_empty() {
                f64::NAN
            } else {
                let rank = (q * v.len() as f64).ceil() as usize;
                v[rank.clamp(1, v.len()) - 1]
            };
            (*q, value)
        })
        .collect()
}

/// The agent's metrics.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, Series>>,
    samples: Mutex<BTreeMap<String, Timer>>,
    clock: std::sync::OnceLock<Clock>,
    /// statsd lines waiting for [`crate::statsd`] (only when a sink is
    /// configured: see [`Metrics::tap`]).
    tap: std::sync::OnceLock<Mutex<String>>,
    /// `telemetry.metrics_prefix`, when it is not `consul`.
    prefix: std::sync::OnceLock<String>,
    /// The host name gauges carry after the prefix (unless
    /// `telemetry.disable_hostname`).
    host: std::sync::OnceLock<String>,
}

/// The most statsd text kept for the sink (if it cannot send for a while).
const TAP_LIMIT: usize = 1 << 20;

/// An aggregated value in Consul's JSON shape.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Aggregate {
    pub name: String,
    pub count: u64,
    pub rate: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
    pub labels: BTreeMap<String, String>,
    /// A timer's quantiles over the last 10 s, `(quantile, value)`: for the
    /// Prometheus form only (Consul's JSON has none).
    #[serde(skip)]
    pub quantiles: Vec<(f64, f64)>,
}

/// A gauge in Consul's JSON shape.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Gauge {
    pub name: String,
    pub value: f64,
    pub labels: BTreeMap<String, String>,
}

/// `/v1/agent/metrics`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    pub timestamp: String,
    pub gauges: Vec<Gauge>,
    pub points: Vec<serde_json::Value>,
    pub counters: Vec<Aggregate>,
    pub samples: Vec<Aggregate>,
}

impl Metrics {
    /// Names metrics `PREFIX.…` instead of `consul.…` (set once, at start).
    pub fn set_prefix(&self, prefix: &str) {
        if prefix != "consul" {
            let _ = self.prefix.set(prefix.to_string());
        }
    }

    /// Puts `host` in gauge names, as Consul does unless
    /// `telemetry.disable_hostname` (set once, at start).
    pub fn set_hostname(&self, host: &str) {
        if !host.is_empty() {
            let _ = self.host.set(host.to_string());
        }
    }

    /// A gauge's name as published: `consul.<host>.rest` (with the host
    /// name unless `telemetry.disable_hostname`, and the prefix).
    pub fn gauge_name(&self, name: &str) -> String {
        let named = self.name(name);
        match self.host.get() {
            Some(host) => match named.split_once('.') {
                Some((prefix, rest)) => format!("{prefix}.{host}.{rest}"),
                None => format!("{host}.{named}"),
            },
            None => named.into_owned(),
        }
    }

    /// A metric's name as published (with `telemetry.metrics_prefix`).
    pub fn name<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        match (self.prefix.get(), name.strip_prefix("consul.")) {
            (Some(p), Some(rest)) => format!("{p}.{rest}").into(),
            _ => name.into(),
        }
    }

    /// Starts keeping every counter increment and timing sample as a statsd
    /// line, for [`Metrics::take_lines`].
    pub fn tap(&self) {
        let _ = self.tap.set(Mutex::new(String::new()));
    }

    /// The statsd lines kept since the last call.
    pub fn take_lines(&self) -> String {
        self.tap
            .get()
            .map(|t| std::mem::take(&mut *t.lock()))
            .unwrap_or_default()
    }

    fn tapped(&self, name: &str, v: f64, kind: &str) {
        if let Some(t) = self.tap.get() {
            let mut lines = t.lock();
            if lines.len() < TAP_LIMIT {
                let _ = writeln!(lines, "{}:{v}|{kind}", self.name(name));
            }
        }
    }

    /// The metrics' clock, started by the first metric or read.
    fn clock(&self) -> &Clock {
        self.clock.get_or_init(|| Clock {
            started: std::time::Instant::now(),
            wall_ms: crate::store::now_ms(),
        })
    }

    fn now(&self) -> Stamp {
        self.clock().now()
    }

    /// The interval the metrics started in: until it ends, the JSON form
    /// shows it (there is no finished one yet), as Consul's does.
    fn first_interval(&self) -> u64 {
        self.clock().wall_ms / INTERVAL_MS
    }

    /// Adds to a counter.
    pub fn incr(&self, name: &str, v: f64) {
        self.tapped(name, v, "c");
        self.incr_at(name, v, self.now());
    }

    fn incr_at(&self, name: &str, v: f64, at: Stamp) {
        let mut counters = self.counters.lock();
        let series = match counters.get_mut(name) {
            Some(s) => s,
            None => counters.entry(name.to_string()).or_default(),
        };
        series.add(at.interval, v);
    }

    /// A request committed by this server as leader, `took` after it was
    /// proposed: Consul's `raft.apply` and `raft.commitTime`.
    pub fn committed(&self, took: std::time::Duration) {
        self.incr("consul.raft.apply", 1.0);
        self.sample("consul.raft.commitTime", took.as_secs_f64() * 1e3);
    }

    /// Records a timing sample in milliseconds.
    pub fn sample(&self, name: &str, ms: f64) {
        self.tapped(name, ms, "ms");
        self.sample_at(name, ms, self.now());
    }

    fn sample_at(&self, name: &str, ms: f64, at: Stamp) {
        let mut samples = self.samples.lock();
        // No allocation for a name already seen (every request samples).
        let timer = match samples.get_mut(name) {
            Some(t) => t,
            None => samples.entry(name.to_string()).or_default(),
        };
        timer.series.add(at.interval, ms);
        if timer.recent.len() == QUANTILE_SAMPLES {
            timer.recent.pop_front();
        }
        timer.recent.push_back((at.tenths, ms as f32));
    }

    /// Consul's JSON shape of aggregates, their `Rate` per second over
    /// `secs`.
    fn aggregates<'a>(
        &self,
        map: impl Iterator<Item = (&'a String, &'a Agg)>,
        secs: f64,
    ) -> Vec<Aggregate> {
        map.map(|(name, a)| {
            let mean = if a.count == 0 {
                0.0
            } else {
                a.sum / a.count as f64
            };
            let var = if a.count > 1 {
                ((a.sumsq - a.sum * a.sum / a.count as f64) / (a.count as f64 - 1.0)).max(0.0)
            } else {
                0.0
            };
            Aggregate {
                name: self.name(name).into_owned(),
                count: a.count,
                rate: a.sum / secs,
                sum: a.sum,
                min: a.min,
                max: a.max,
                mean,
                stddev: var.sqrt(),
                labels: BTreeMap::new(),
                quantiles: Vec::new(),
            }
        })
        .collect()
    }

    fn gauges(&self, gauges: Vec<(String, f64)>) -> Vec<Gauge> {
        gauges
            .into_iter()
            .map(|(name, value)| Gauge {
                name: self.gauge_name(&name),
                value,
                labels: BTreeMap::new(),
            })
            .collect()
    }

    /// Totals since start, with the timers' quantiles over the last 10 s and
    /// the given gauges: the Prometheus form.
    pub fn totals(&self, gauges: Vec<(String, f64)>) -> Summary {
        let now = self.now();
        let uptime = (f64::from(now.tenths) / 10.0).max(1.0);
        Summary {
            timestamp: meshgate_types::time::format_go_utc(now.interval * INTERVAL_MS),
            gauges: self.gauges(gauges),
            points: Vec::new(),
            counters: self.aggregates(
                self.counters.lock().iter().map(|(n, s)| (n, &s.total)),
                uptime,
            ),
            samples: {
                let timers = self.samples.lock();
                let window = (QUANTILE_WINDOW.as_millis() / 100) as u32;
                let since = now.tenths.saturating_sub(window);
                let mut out =
                    self.aggregates(timers.iter().map(|(n, t)| (n, &t.series.total)), uptime);
                for (a, t) in out.iter_mut().zip(timers.values()) {
                    a.quantiles = quantiles(&t.recent, since);
                }
                out
            },
        }
    }

    /// What `GET /v1/agent/metrics` shows: the last finished interval, or
    /// the current one while the metrics are in their first, as Consul's
    /// in-memory sink; with the given gauges.
    pub fn finished(&self, gauges: Vec<(String, f64)>) -> Summary {
        let now = self.now().interval;
        let shown = if now == self.first_interval() {
            now
        } else {
            now - 1
        };
        self.interval(shown, gauges)
    }

    /// The interval running now and how long until it ends.
    pub fn current_interval(&self) -> (u64, std::time::Duration) {
        let now = self.now();
        (now.interval, std::time::Duration::from_millis(now.left_ms))
    }

    /// What was recorded during `interval` (a number from
    /// [`Metrics::current_interval`]), with the given gauges. A counter or
    /// timer with nothing in it is left out, as Consul leaves it out.
    pub fn interval(&self, interval: u64, gauges: Vec<(String, f64)>) -> Summary {
        let secs = INTERVAL.as_secs_f64();
        Summary {
            timestamp: meshgate_types::time::format_go_utc(interval * INTERVAL_MS),
            gauges: self.gauges(gauges),
            points: Vec::new(),
            counters: self.aggregates(
                self.counters
                    .lock()
                    .iter()
                    .filter_map(|(n, s)| Some((n, s.during(interval)?))),
                secs,
            ),
            samples: self.aggregates(
                self.samples
                    .lock()
                    .iter()
                    .filter_map(|(n, t)| Some((n, t.series.during(interval)?))),
                secs,
            ),
        }
    }
}

/// The gauges computed from the state.
pub fn gauges(agent: &crate::Agent) -> Vec<(String, f64)> {
    let st = agent.store.read();
    let (_, nodes) = st.nodes();
    let (_, services) = st.services();
    let instances = st.all_service_instances().count();
    let (_, sessions) = st.sessions();
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        * 1024.0;
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks() as f64;
    // What only a server says (Consul: its leader), under Consul's names.
    let mut server = Vec::new();
    let leader = match agent.store.cluster() {
        None => Some(true),
        Some(c) if agent.config.server => Some(c.is_leader() && c.holds_lease()),
        Some(_) => None,
    };
    if let Some(leader) = leader {
        server.push((
            "consul.server.isLeader".to_string(),
            if leader { 1.0 } else { 0.0 },
        ));
    }
    if leader == Some(true) {
        let judged = match agent.store.cluster() {
            None => Some((true, 0)),
            Some(_) => crate::autopilot::judged(),
        };
        if let Some((healthy, tolerance)) = judged {
            server.push((
                "consul.autopilot.healthy".into(),
                if healthy { 1.0 } else { 0.0 },
            ));
            server.push((
                "consul.autopilot.failure_tolerance".into(),
                tolerance as f64,
            ));
        }
        // Seconds until the active root expires (the built-in CA signs
        // leaves with its root: the signing CA is the same certificate).
        let expiry = st.ca().1.and_then(|ca| {
            let root = ca.roots.iter().find(|r| r.active)?;
            let until = meshgate_types::time::parse_rfc3339_ms(&root.not_after)?;
            Some((until as f64 - crate::store::now_ms() as f64) / 1e3)
        });
        if let Some(secs) = expiry {
            server.push(("consul.mesh.active-root-ca.expiry".into(), secs.floor()));
            server.push(("consul.mesh.active-signing-ca.expiry".into(), secs.floor()));
        }
    }
    // Seconds until this agent's own TLS certificate (the server port's)
    // expires, as Consul reports it on every agent that has one.
    if let Some(files) = agent.config.tls.cluster() {
        let expiry = std::fs::read_to_string(&files.cert_file)
            .ok()
            .and_then(|pem| meshgate_ca::cert_info(&pem).ok())
            .and_then(|info| meshgate_types::time::parse_rfc3339_ms(&info.not_after));
        if let Some(until) = expiry {
            let secs = (until as f64 - crate::store::now_ms() as f64) / 1e3;
            server.push(("consul.agent.tls.cert.expiry".into(), secs.floor()));
        }
    }
    let mut all = vec![
        ("consul.state.nodes".into(), nodes.len() as f64),
        ("consul.state.services".into(), services.len() as f64),
        ("consul.state.service_instances".into(), instances as f64),
        ("consul.state.kv_entries".into(), st.kv_len() as f64),
        ("consul.session_ttl.active".into(), sessions.len() as f64),
        ("consul.runtime.alloc_bytes".into(), rss),
        ("consul.runtime.num_goroutines".into(), tasks),
        (
            "consul.raft.last_index".into(),
            st.tables().get(meshgate_state::Table::Kv).max(st.index) as f64,
        ),
    ];
    all.extend(server);
    all
}

/// A sample value in the text format (`NaN`, `+Inf` as Prometheus writes
/// them).
fn prom_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        v.to_string()
    }
}

fn prom_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Renders a summary as Prometheus text exposition.
pub fn prometheus(s: &Summary) -> String {
    let mut out = String::new();
    for g in &s.gauges {
        let n = prom_name(&g.name);
        let _ = writeln!(out, "# TYPE {n} gauge\n{n} {}", g.value);
    }
    for c in &s.counters {
        let n = prom_name(&c.name);
        let _ = writeln!(out, "# TYPE {n} counter\n{n} {}", c.sum);
    }
    for m in &s.samples {
        let n = prom_name(&m.name);
        let _ = writeln!(out, "# TYPE {n} summary");
        for (q, v) in &m.quantiles {
            let _ = writeln!(out, "{n}{{quantile=\"{q}\"}} {}", prom_value(*v));
        }
        let _ = writeln!(out, "{n}_sum {}\n{n}_count {}", m.sum, m.count);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_the_recent_samples_by_nearest_rank() {
        // Now is 400 tenths of a second after the start; the window began
        // at 300.
        let (now, old, since) = (400, 50, 300);
        let mut recent: std::collections::VecDeque<(u32, f32)> =
            (1..=100).map(|i| (now, i as f32)).collect();
        // Samples before the window do not count.
        recent.push_front((old, 1000.0));
        assert_eq!(
            quantiles(&recent, since),
            vec![(0.5, 50.0), (0.9, 90.0), (0.99, 99.0)]
        );
        let one: std::collections::VecDeque<_> = [(now, 7.0)].into();
        assert_eq!(
            quantiles(&one, since),
            vec![(0.5, 7.0), (0.9, 7.0), (0.99, 7.0)]
        );
        let stale: std::collections::VecDeque<_> = [(old, 7.0)].into();
        assert!(quantiles(&stale, since).iter().all(|(_, v)| v.is_nan()));
    }

    #[test]
    fn prometheus_summaries_carry_quantiles() {
        let m = Metrics::default();
        for ms in [1.0, 2.0, 3.0, 4.0] {
            m.sample("consul.kvs.apply", ms);
        }
        m.incr("consul.raft.apply", 2.0);
        let text = prometheus(&m.totals(vec![("consul.state.nodes".into(), 1.0)]));
        assert_eq!(
            text,
            "# TYPE consul_state_nodes gauge\nconsul_state_nodes 1\n\
             # TYPE consul_raft_apply counter\nconsul_raft_apply 2\n\
             # TYPE consul_kvs_apply summary\n\
             consul_kvs_apply{quantile=\"0.5\"} 2\n\
             consul_kvs_apply{quantile=\"0.9\"} 4\n\
             consul_kvs_apply{quantile=\"0.99\"} 4\n\
             consul_kvs_apply_sum 10\nconsul_kvs_apply_count 4\n"
        );
        // The JSON form stays Consul's: no quantiles in it.
        let json = serde_json::to_value(m.finished(Vec::new())).unwrap();
        assert!(json["Samples"][0].get("Quantiles").is_none(), "{json}");
        assert_eq!(json["Samples"][0]["Count"], 4);
        assert_eq!(prom_value(f64::NAN), "NaN");
        assert_eq!(prom_value(f64::INFINITY), "+Inf");
    }

    /// The JSON form is per interval (`Count`, `Sum`, `Rate` per second of
    /// that interval only; nothing recorded, nothing shown), the Prometheus
    /// form keeps totals.
    #[test]
    fn intervals_aggregate_apart_from_the_totals() {
        let m = Metrics::default();
        let at = |interval| Stamp {
            tenths: 0,
            interval,
            left_ms: 1,
        };
        for v in [1.0, 3.0] {
            m.incr_at("consul.raft.apply", v, at(100));
            m.sample_at("consul.kvs.apply", v, at(100));
        }
        m.incr_at("consul.raft.apply", 5.0, at(101));
        m.incr_at("consul.other", 1.0, at(101));
        let json = |interval| serde_json::to_value(m.interval(interval, Vec::new())).unwrap();
        let first = json(100);
        assert_eq!(first["Timestamp"], "1970-01-01 00:16:40 +0000 UTC");
        let c = &first["Counters"][0];
        assert_eq!(first["Counters"].as_array().unwrap().len(), 1, "{first}");
        assert_eq!(
            (&c["Name"], &c["Count"], &c["Sum"], &c["Rate"], &c["Mean"]),
            (
                &"consul.raft.apply".into(),
                &2.into(),
                &4.0.into(),
                &0.4.into(),
                &2.0.into()
            ),
            "{first}"
        );
        assert_eq!(first["Samples"][0]["Max"], 3.0, "{first}");
        let second = json(101);
        assert!(second["Samples"].as_array().unwrap().is_empty(), "{second}");
        let names: Vec<_> = second["Counters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["Name"].as_str().unwrap(), c["Sum"].as_f64().unwrap()))
            .collect();
        assert_eq!(names, [("consul.other", 1.0), ("consul.raft.apply", 5.0)]);
        // A late value of the interval before the latest joins it; an
        // older one counts in the totals only.
        m.incr_at("consul.raft.apply", 2.0, at(100));
        assert_eq!(json(100)["Counters"][0]["Sum"], 6.0);
        assert_eq!(json(101)["Counters"][1]["Sum"], 5.0);
        m.incr_at("consul.raft.apply", 0.5, at(99));
        assert_eq!(json(100)["Counters"][0]["Sum"], 6.0);
        // Two intervals on, the first is gone; the latest is kept until a
        // later one has a value.
        m.incr_at("consul.raft.apply", 1.0, at(103));
        assert!(json(100)["Counters"].as_array().unwrap().is_empty());
        assert_eq!(json(101)["Counters"].as_array().unwrap().len(), 2);
        assert_eq!(json(103)["Counters"][0]["Sum"], 1.0);
        // The totals.
        let text = prometheus(&m.totals(Vec::new()));
        assert!(text.contains("consul_raft_apply 12.5\n"), "{text}");
        assert!(text.contains("consul_kvs_apply_count 2\n"), "{text}");
    }

    /// Until its first interval ends, the JSON form shows it.
    #[test]
    fn the_first_interval_is_shown_until_it_ends() {
        let m = Metrics::default();
        m.incr("consul.raft.apply", 1.0);
        let (now, left) = m.current_interval();
        assert!(left <= INTERVAL, "{left:?}");
        assert!(now - m.first_interval() <= 1);
        // Whether or not a boundary passed meanwhile, the interval shown is
        // the first: the current one, or the one just finished.
        let json = serde_json::to_value(m.finished(Vec::new())).unwrap();
        assert_eq!(
            json["Timestamp"],
            meshgate_types::time::format_go_utc(m.first_interval() * INTERVAL_MS)
        );
        assert_eq!(json["Counters"][0]["Count"], 1, "{json}");
    }
}
