//! In-memory metrics for `/v1/agent/metrics` (Consul's JSON form and
//! Prometheus text): counters and timing samples recorded by the agent, and
//! gauges computed from the state when asked.

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

/// The agent's metrics.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, Agg>>,
    samples: Mutex<BTreeMap<String, Agg>>,
    started: std::sync::OnceLock<std::time::Instant>,
}

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
    /// Adds to a counter.
    pub fn incr(&self, name: &str, v: f64) {
        self.started.get_or_init(std::time::Instant::now);
        self.counters
            .lock()
            .entry(name.to_string())
            .or_default()
            .add(v);
    }

    /// Records a timing sample in milliseconds.
    pub fn sample(&self, name: &str, ms: f64) {
        self.started.get_or_init(std::time::Instant::now);
        let mut samples = self.samples.lock();
        // No allocation for a name already seen (every request samples).
        match samples.get_mut(name) {
            Some(a) => a.add(ms),
            None => samples.entry(name.to_string()).or_default().add(ms),
        }
    }

    fn aggregates(&self, map: &BTreeMap<String, Agg>) -> Vec<Aggregate> {
        let secs = self
            .started
            .get()
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(1.0)
            .max(1.0);
        map.iter()
            .map(|(name, a)| {
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
                    name: name.clone(),
                    count: a.count,
                    rate: a.sum / secs,
                    sum: a.sum,
                    min: a.min,
                    max: a.max,
                    mean,
                    stddev: var.sqrt(),
                    labels: BTreeMap::new(),
                }
            })
            .collect()
    }

    /// Everything, with the given gauges.
    pub fn summary(&self, gauges: Vec<(String, f64)>) -> Summary {
        let now = crate::store::now_ms();
        let ts = meshgate_types::time::format_rfc3339_ms(now - now % 10_000);
        Summary {
            timestamp: ts,
            gauges: gauges
                .into_iter()
                .map(|(name, value)| Gauge {
                    name,
                    value,
                    labels: BTreeMap::new(),
                })
                .collect(),
            points: Vec::new(),
            counters: self.aggregates(&self.counters.lock()),
            samples: self.aggregates(&self.samples.lock()),
        }
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
        let _ = writeln!(
            out,
            "# TYPE {n} summary\n{n}_sum {}\n{n}_count {}",
            m.sum, m.count
        );
    }
    out
}
