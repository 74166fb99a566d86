//! The external-service monitor: the server that leads the cluster checks the
//! health of nodes registered with `external-node = "true"` (databases and
//! other services outside the mesh, which run no agent), and writes the results
//! into the catalog like any agent would for its own checks.
//!
//! * A node with `external-probe = "true"` gets a node check
//!   `externalNodeHealth`: a TCP connect to each port its services are
//!   registered with; passing when one answers.
//! * Every check registered with such a node through `/v1/catalog/register`
//!   with a `Definition` (`TCP`, `TCP` + `TCPUseTLS`, `HTTP`, `PostgreSQL`) is run
//!   at its `Interval` with its `Timeout`.
//!
//! Only the leader runs them (so exactly one server probes at a time and a new
//! leader takes over when one is lost; writes go through the leader anyway).
//! A result is written only when the status or the output changes, after
//! `critical_threshold` consecutive failures or `passing_threshold`
//! consecutive successes.

pub mod probes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshgate_state::{Command, State, Table};
use meshgate_types::catalog::{
    DeregisterRequest, HealthCheck, HealthCheckDefinition, RegisterRequest, status,
};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::Agent;
use crate::checks::{self, Outcome, Thresholds};
use crate::config::{Config, ConfigError};

/// Node meta key marking a node the servers monitor.
pub const EXTERNAL_NODE: &str = "external-node";
/// Node meta key asking for the node probe.
pub const EXTERNAL_PROBE: &str = "external-probe";
/// Check ID of the node probe (the one consul-esm writes).
pub const NODE_CHECK_ID: &str = "externalNodeHealth";
/// Name of the node probe check.
pub const NODE_CHECK_NAME: &str = "External Node Status";

/// The monitor's settings, from `external_health { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub enabled: bool,
    pub node_probe_interval: Duration,
    pub node_probe_timeout: Duration,
    pub check_interval: Duration,
    pub check_timeout: Duration,
    pub critical_threshold: u32,
    pub passing_threshold: u32,
}

fn duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    meshgate_types::duration::parse(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| ConfigError(format!("external_health.{key}: invalid duration \"{v}\"")))
}

impl Settings {
    /// Validated settings.
    pub fn from_config(c: &Config) -> Result<Settings, ConfigError> {
        let e = &c.external_health;
        Ok(Settings {
            enabled: e.enabled,
            node_probe_interval: duration("node_probe_interval", &e.node_probe_interval)?,
            node_probe_timeout: duration("node_probe_timeout", &e.node_probe_timeout)?,
            check_interval: duration("check_interval", &e.check_interval)?,
            check_timeout: duration("check_timeout", &e.check_timeout)?,
            critical_threshold: e.critical_threshold.max(1),
            passing_threshold: e.passing_threshold.max(1),
        })
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds::new(
            self.passing_threshold,
            self.critical_threshold,
            self.critical_threshold,
        )
    }
}

/// One thing the monitor runs. Equal plans mean nothing to restart.
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    /// The node probe, against these `host:port` targets.
    Node { targets: Vec<String> },
    /// A registered check with a definition.
    Check {
        service_id: String,
        def: Box<HealthCheckDefinition>,
    },
}

/// Whether the monitor can run a definition.
fn runnable(def: &HealthCheckDefinition) -> bool {
    !def.postgresql.is_empty() || !def.http.is_empty() || !def.tcp.is_empty()
}

fn is_true(v: Option<&String>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// What must run now, by `(node, check ID)`.
fn plan(st: &State) -> HashMap<(String, String), Plan> {
    let mut out = HashMap::new();
    for node in st.nodes().1 {
        if !is_true(node.meta.as_ref().and_then(|m| m.get(EXTERNAL_NODE))) {
            continue;
        }
        if is_true(node.meta.as_ref().and_then(|m| m.get(EXTERNAL_PROBE))) {
            let mut targets: Vec<String> = st
                .node_services(&node.node)
                .1
                .map(|(_, services)| {
                    services
                        .iter()
                        .filter(|s| s.port > 0)
                        .map(|s| {
                            let host = if s.address.is_empty() {
                                &node.address
                            } else {
                                &s.address
                            };
                            join_host_port(host, s.port)
                        })
                        .collect()
                })
                .unwrap_or_default();
            targets.sort();
            targets.dedup();
            out.insert(
                (node.node.clone(), NODE_CHECK_ID.to_string()),
                Plan::Node { targets },
            );
        }
        for c in st.node_checks(&node.node).1 {
            if c.check_id == NODE_CHECK_ID || !runnable(&c.definition) {
                continue;
            }
            out.insert(
                (node.node.clone(), c.check_id.clone()),
                Plan::Check {
                    service_id: c.service_id.clone(),
                    def: Box::new(c.definition.clone()),
                },
            );
        }
    }
    out
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Runs the monitor until the agent shuts down. Does nothing on client agents
/// or when `external_health { enabled = false }`.
pub async fn run(agent: Arc<Agent>) {
    let settings = match Settings::from_config(&agent.config) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            warn!("external-service monitor not started: {e}");
            return;
        }
    };
    if !settings.enabled || !agent.config.server {
        return;
    }
    let mut stop = agent.shutdown_signal();
    let mut nodes = agent.store.watch(Table::Nodes);
    let mut services = agent.store.watch(Table::Services);
    let mut checks_w = agent.store.watch(Table::Checks);
    let mut running: HashMap<(String, String), (Plan, JoinHandle<()>)> = HashMap::new();
    loop {
        let wanted = if agent.is_leader() {
            plan(&agent.store.read())
        } else {
            HashMap::new()
        };
        running.retain(|key, (p, task)| {
            let keep = wanted.get(key) == Some(p) && !task.is_finished();
            if !keep {
                task.abort();
                debug!(node = %key.0, check = %key.1, "external check stopped");
            }
            keep
        });
        for (key, p) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            debug!(node = %key.0, check = %key.1, "external check started");
            let task = tokio::spawn(run_one(
                agent.clone(),
                settings.clone(),
                key.0.clone(),
                key.1.clone(),
                p.clone(),
            ));
            running.insert(key, (p, task));
        }
        tokio::select! {
            _ = nodes.changed() => {}
            _ = services.changed() => {}
            _ = checks_w.changed() => {}
            // Leadership moves without a table change.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = crate::stopped(&mut stop) => {
                for (_, (_, t)) in running.drain() {
                    t.abort();
                }
                return;
            }
        }
        // Coalesce a burst of writes (a registration touches several tables).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn non_zero(d: Duration, default: Duration) -> Duration {
    if d.is_zero() { default } else { d }
}

/// Runs one probe forever (until aborted by the planner).
async fn run_one(agent: Arc<Agent>, s: Arc<Settings>, node: String, check_id: String, p: Plan) {
    let (interval, timeout) = match &p {
        Plan::Node { .. } => (s.node_probe_interval, s.node_probe_timeout),
        Plan::Check { def, .. } => (
            non_zero(def.interval.get(), s.check_interval).max(checks::MIN_INTERVAL),
            non_zero(def.timeout.get(), s.check_timeout),
        ),
    };
    let mut thresholds = s.thresholds();
    let mut critical_since: Option<Instant> = None;
    // When this task last wrote a result (`None`: not yet).
    let mut written: Option<Instant> = None;
    loop {
        let outcome = match &p {
            Plan::Node { targets } => node_probe(targets, timeout).await,
            Plan::Check { def, .. } => run_definition(def, timeout).await,
        };
        if let Some(st) = thresholds.feed(outcome.status) {
            let output =
                checks::truncate_output(outcome.output, agent.config.check_output_max_size);
            // A new output under the same status waits for
            // `check_update_interval` after the last write, as an agent's
            // checks do (the first result is written at once).
            let output_may_wait =
                written.is_some_and(|w| w.elapsed() < agent.config.check_update_interval());
            if record(
                &agent,
                &node,
                &check_id,
                matches!(p, Plan::Node { .. }),
                st,
                output,
                output_may_wait,
            )
            .await
            {
                written = Some(Instant::now());
            }
        }
        if let Plan::Check { service_id, def } = &p {
            let after = def.deregister_critical_service_after.get();
            let critical = agent
                .store
                .read()
                .check(&node, &check_id)
                .is_some_and(|c| c.status == status::CRITICAL);
            if !critical {
                critical_since = None;
            } else if !after.is_zero() && !service_id.is_empty() {
                let since = *critical_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= after {
                    info!(node = %node, service = %service_id,
                          "deregistering the external service: its check {check_id} has been critical for longer than {after:?}");
                    let r = agent
                        .store
                        .write(Command::Deregister(DeregisterRequest {
                            node: node.clone(),
                            service_id: service_id.clone(),
                            ..Default::default()
                        }))
                        .await;
                    if let Err(e) = r {
                        warn!(node = %node, service = %service_id, "deregistering: {e}");
                    }
                    return;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// The node probe: a TCP connect to each registered port; passing when one
/// answers.
async fn node_probe(targets: &[String], timeout: Duration) -> Outcome {
    if targets.is_empty() {
        return Outcome::new(
            status::CRITICAL,
            "Node not live or unreachable: no service with a port is registered on it to probe",
        );
    }
    let mut failures = Vec::new();
    for t in targets {
        let o = checks::tcp(t, timeout).await;
        if o.status == status::PASSING {
            return Outcome::new(
                status::PASSING,
                format!("Node alive or reachable (TCP connect {t})"),
            );
        }
        failures.push(o.output);
    }
    Outcome::new(
        status::CRITICAL,
        format!("Node not live or unreachable: {}", failures.join("; ")),
    )
}

/// Runs a check definition once.
pub async fn run_definition(def: &HealthCheckDefinition, timeout: Duration) -> Outcome {
    let tls = probes::TlsOptions {
        server_name: def.tls_server_name.clone(),
        skip_verify: def.tls_skip_verify,
        ca_file: def.tls_ca_file.clone(),
    };
    if !def.postgresql.is_empty() {
        let opts = probes::PostgresOptions {
            use_tls: def.postgresql_use_tls,
            tls,
            database: def.postgresql_database.clone(),
            user: def.postgresql_user.clone(),
        };
        probes::postgres(&def.postgresql, &opts, timeout).await
    } else if !def.http.is_empty() {
        let roots = match checks::ca_roots(&def.tls_ca_file) {
            Ok(r) => r,
            Err(e) => return Outcome::new(status::CRITICAL, e),
        };
        let agent_def = meshgate_types::agent::CheckDefinition {
            http: def.http.clone(),
            header: def.header.clone(),
            method: def.method.clone(),
            body: def.body.clone(),
            tls_server_name: def.tls_server_name.clone(),
            tls_skip_verify: def.tls_skip_verify,
            disable_redirects: def.disable_redirects,
            ..Default::default()
        };
        checks::http_once(&agent_def, &roots, timeout).await
    } else if def.tcp_use_tls {
        probes::tls(&def.tcp, &tls, timeout).await
    } else {
        checks::tcp(&def.tcp, timeout).await
    }
}

/// Writes a result when it differs from what the catalog holds (a new output
/// under the same status not while `output_may_wait`); whether it wrote.
async fn record(
    agent: &Agent,
    node: &str,
    check_id: &str,
    is_node_probe: bool,
    st: &'static str,
    output: String,
    output_may_wait: bool,
) -> bool {
    let current = {
        let s = agent.store.read();
        match s.check(node, check_id) {
            Some(c) => Some((c.status.clone(), c.output.clone())),
            None => {
                if !is_node_probe {
                    // Deregistered meanwhile: the planner stops this task.
                    return false;
                }
                if s.node(node).is_none() {
                    return false;
                }
                None
            }
        }
    };
    let cmd = match &current {
        Some((cs, co)) if cs == st && (*co == output || output_may_wait) => return false,
        Some(_) => Command::UpdateCheck {
            node: node.to_string(),
            check_id: check_id.to_string(),
            status: st.to_string(),
            output: output.clone(),
        },
        None => {
            let address = agent
                .store
                .read()
                .node(node)
                .map(|n| n.address.clone())
                .unwrap_or_default();
            Command::Register(Box::new(RegisterRequest {
                node: node.to_string(),
                address,
                skip_node_update: true,
                check: Some(HealthCheck {
                    node: node.to_string(),
                    check_id: NODE_CHECK_ID.into(),
                    name: NODE_CHECK_NAME.into(),
                    status: st.to_string(),
                    output: output.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
    };
    let was = current.as_ref().map(|(s, _)| s.as_str()).unwrap_or("none");
    if was != st {
        info!(node = %node, check = %check_id, "external check {was} → {st}: {output}");
    }
    match agent.store.write(cmd).await {
        Ok(_) => true,
        Err(e) => {
            warn!(node = %node, check = %check_id, "writing the external check result: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(join_host_port("127.0.0.5", 5432), "127.0.0.5:5432");
        assert_eq!(join_host_port("::1", 5432), "[::1]:5432");
    }

    #[test]
    fn settings_validate() {
        let mut c = Config::default();
        assert!(Settings::from_config(&c).is_ok());
        c.external_health.check_interval = "soon".into();
        let e = Settings::from_config(&c).unwrap_err();
        assert!(e.0.contains("external_health.check_interval"), "{e}");
    }
}
