//! This node's own services and checks: registration (with sidecar expansion),
//! the check runners, TTL timers, alias checks, syncing to the catalog
//! (anti-entropy) and reaping services that stayed critical too long.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshgate_state::Command;
use meshgate_types::GoDuration;
use meshgate_types::agent::{AgentService, CheckDefinition, CheckKind, ServiceDefinition};
use meshgate_types::catalog::{
    DeregisterRequest, HealthCheck, HealthCheckDefinition, NodeService, RegisterRequest,
    SERF_CHECK_ID, ServiceAddress, ServiceConnect, aggregate_status, status,
};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::Agent;
use crate::checks::{self, Outcome, Thresholds};
use crate::external::probes;
use crate::http::ApiError;

/// Where a registration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The HTTP API.
    Api,
    /// An agent config file (removed again on reload if gone from the file).
    Config,
}

/// A service this agent owns.
#[derive(Debug, Clone)]
pub struct LocalService {
    pub svc: NodeService,
    pub token: String,
    pub source: Source,
}

/// A check this agent owns.
#[derive(Debug)]
pub struct LocalCheck {
    pub hc: HealthCheck,
    pub def: CheckDefinition,
    pub kind: Option<CheckKind>,
    pub token: String,
    pub source: Source,
    /// When the check last turned critical.
    pub critical_since: Option<Instant>,
    /// TTL checks: when the TTL runs out.
    pub ttl_deadline: Option<Instant>,
    thresholds: Thresholds,
    task: Option<AbortHandle>,
    /// A new output (same status) waits for `check_update_interval` before
    /// it is written to the catalog; anti-entropy leaves the output alone
    /// meanwhile.
    output_deferred: bool,
    /// A timer that will write a deferred output is running (one at most
    /// per check, as Consul's `DeferCheck`).
    deferral_timer: bool,
}

/// What to do with a check's new (status, output).
enum CheckSync {
    /// Write it to the catalog now (the status changed, or no deferral).
    Now(String, String),
    /// Only the output changed: write it later; `schedule` when no later
    /// write is pending yet.
    Later { schedule: bool },
}

impl LocalCheck {
    /// Routes a change from [`set_status`]: a status change goes to the
    /// catalog at once, a new output under the same status after
    /// `interval` (Consul's `check_update_interval`; zero: at once).
    fn route(&mut self, change: StatusChange, interval: Duration) -> CheckSync {
        if change.status_changed || interval.is_zero() {
            self.output_deferred = false;
            return CheckSync::Now(change.status, change.output);
        }
        self.output_deferred = true;
        let schedule = !self.deferral_timer;
        self.deferral_timer = true;
        CheckSync::Later { schedule }
    }
}

#[derive(Default)]
struct Inner {
    services: BTreeMap<String, LocalService>,
    checks: BTreeMap<String, LocalCheck>,
}

/// The agent's local services and checks.
pub struct LocalState {
    inner: Mutex<Inner>,
    version: watch::Sender<u64>,
}

impl Default for LocalState {
    fn default() -> Self {
        LocalState {
            inner: Mutex::new(Inner::default()),
            version: watch::channel(0).0,
        }
    }
}

impl LocalState {
    /// A receiver that wakes on any local change.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Wakes the watchers of the local state (at shutdown).
    pub fn wake_all(&self) {
        self.version.send_modify(|_| {});
    }

    pub(crate) fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// A copy of one service.
    pub fn service(&self, id: &str) -> Option<LocalService> {
        self.inner.lock().services.get(id).cloned()
    }

    /// Copies of every service.
    pub fn services(&self) -> Vec<LocalService> {
        self.inner.lock().services.values().cloned().collect()
    }

    /// Copies of every check's catalog view.
    pub fn checks(&self) -> Vec<HealthCheck> {
        self.inner
            .lock()
            .checks
            .values()
            .map(|c| c.hc.clone())
            .collect()
    }

    /// One check's catalog view and kind.
    pub fn check(&self, id: &str) -> Option<(HealthCheck, Option<CheckKind>)> {
        self.inner
            .lock()
            .checks
            .get(id)
            .map(|c| (c.hc.clone(), c.kind))
    }

    /// The checks of one service.
    pub fn service_checks(&self, service_id: &str) -> Vec<HealthCheck> {
        self.inner
            .lock()
            .checks
            .values()
            .filter(|c| c.hc.service_id == service_id)
            .map(|c| c.hc.clone())
            .collect()
    }

    /// Stops every check runner.
    pub fn stop_all(&self) {
        for c in self.inner.lock().checks.values_mut() {
            if let Some(t) = c.task.take() {
                t.abort();
            }
        }
    }
}

/// The agent's view of a service (`/v1/agent/services`).
pub fn agent_service(agent: &Agent, s: &NodeService) -> AgentService {
    let proxy = if s.kind.is_empty() && s.proxy.is_empty() {
        None
    } else {
        Some(s.proxy.clone())
    };
    let connect = if s.connect == ServiceConnect::default() {
        None
    } else {
        Some(s.connect.clone())
    };
    AgentService {
        kind: s.kind.clone(),
        id: s.id.clone(),
        service: s.service.clone(),
        tags: s.tags.clone(),
        meta: s.meta.clone(),
        port: s.port,
        address: s.address.clone(),
        socket_path: s.socket_path.clone(),
        tagged_addresses: s.tagged_addresses.clone(),
        weights: s.weights,
        enable_tag_override: s.enable_tag_override,
        proxy,
        connect,
        content_hash: String::new(),
        datacenter: agent.config.datacenter.clone(),
    }
}

/// A stable hash of a serialisable value (FNV-1a over its JSON), as hex.
pub fn content_hash<T: serde::Serialize>(v: &T) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

const VALID_KINDS: &[&str] = &[
    "",
    "connect-proxy",
    "mesh-gateway",
    "terminating-gateway",
    "ingress-gateway",
    "api-gateway",
];

/// Validates a check definition the way Consul's `CheckType.Validate` does.
pub fn validate_check(c: &CheckDefinition) -> Result<(), String> {
    let interval_check = !c.script().is_empty()
        || !c.http.is_empty()
        || !c.tcp.is_empty()
        || !c.udp.is_empty()
        || !c.grpc.is_empty()
        || !c.h2ping.is_empty()
        || !c.os_service.is_empty()
        || !c.postgresql.is_empty();
    let alias = !c.alias_node.is_empty() || !c.alias_service.is_empty();
    if !c.interval.is_zero() && !c.ttl.is_zero() {
        return Err("Interval and TTL cannot both be specified".into());
    }
    if interval_check && c.interval.is_zero() {
        return Err(
            "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks".into(),
        );
    }
    if interval_check && alias {
        return Err("Interval cannot be set for Alias checks".into());
    }
    if alias && !c.ttl.is_zero() {
        return Err("TTL must be not be set for Alias checks".into());
    }
    if !interval_check && !alias && c.ttl.is_zero() {
        return Err("TTL must be > 0 for TTL checks".into());
    }
    if c.output_max_size < 0 {
        return Err("MaxOutputMaxSize must be positive".into());
    }
    if !c.status.is_empty() && !status::is_valid(&c.status) {
        return Err("Status for checks must 'passing', 'warning', 'critical'".into());
    }
    if !c.docker_container_id.is_empty() {
        return Err("Docker checks are not supported by meshgate".into());
    }
    if !c.os_service.is_empty() {
        return Err("OSService checks are not supported by meshgate".into());
    }
    Ok(())
}

impl Agent {
    /// Registers a service (and its checks, and its sidecar) with this agent and
    /// syncs it to the catalog.
    pub async fn add_service(
        self: &Arc<Self>,
        def: ServiceDefinition,
        token: &str,
        replace_existing_checks: bool,
        source: Source,
    ) -> Result<(), ApiError> {
        if def.name.is_empty() {
            return Err(ApiError::bad_request("Missing service name"));
        }
        if matches!(def.address.as_str(), "0.0.0.0" | "::" | "[::]") {
            return Err(ApiError::bad_request("Invalid service address"));
        }
        if !VALID_KINDS.contains(&def.kind.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Invalid service kind: \"{}\"",
                def.kind
            )));
        }
        if let Some(w) = &def.weights {
            if w.passing < 1 {
                return Err(ApiError::bad_request(
                    "Invalid Weights: Passing must be greater than 0",
                ));
            }
            if w.warning < 0 {
                return Err(ApiError::bad_request(
                    "Invalid Weights: Warning must be greater or equal than 0",
                ));
            }
        }
        validate_meta(&def.meta)
            .map_err(|e| ApiError::bad_request(format!("Invalid Service Meta: {e}")))?;
        if def.kind == "connect-proxy" {
            let dest = def
                .proxy
                .as_ref()
                .map(|p| p.destination_service_name.as_str())
                .unwrap_or("");
            if dest.is_empty() {
                return Err(ApiError::bad_request(
                    "Validation failed: Proxy.DestinationServiceName must be non-empty for Connect proxy services",
                ));
            }
            if def.port == 0 && def.socket_path.is_empty() {
                return Err(ApiError::bad_request(
                    "Validation failed: Port or SocketPath must be set for a Connect proxy",
                ));
            }
        }
        let checks = def.all_checks();
        for c in &checks {
            validate_check(c).map_err(|e| ApiError::bad_request(format!("Invalid check: {e}")))?;
            self.check_script_allowed(c, source)?;
        }
        let mut sidecar = None;
        if let Some(sc) = def
            .connect
            .as_ref()
            .and_then(|c| c.sidecar_service.as_ref())
        {
            for c in sc.all_checks() {
                validate_check(&c).map_err(|e| {
                    ApiError::bad_request(format!("Invalid check in sidecar_service: {e}"))
                })?;
            }
            sidecar = Some(self.sidecar_definition(&def, sc)?);
        }

        let id = def.instance_id().to_string();
        let svc = node_service(&def);
        let check_count = checks.len();
        let mut hcs = Vec::new();
        for (i, c) in checks.into_iter().enumerate() {
            let check_id = if !c.given_id().is_empty() {
                c.given_id().to_string()
            } else if check_count == 1 {
                format!("service:{id}")
            } else {
                format!("service:{id}:{}", i + 1)
            };
            let name = if c.name.is_empty() {
                format!("Service '{}' check", def.name)
            } else {
                c.name.clone()
            };
            hcs.push((check_id, name, c));
        }
        {
            let mut inner = self.local.inner.lock();
            inner.services.insert(
                id.clone(),
                LocalService {
                    svc: svc.clone(),
                    token: token.to_string(),
                    source,
                },
            );
            if replace_existing_checks {
                let keep: Vec<&String> = hcs.iter().map(|(cid, _, _)| cid).collect();
                let remove: Vec<String> = inner
                    .checks
                    .iter()
                    .filter(|(cid, c)| c.hc.service_id == id && !keep.contains(cid))
                    .map(|(cid, _)| cid.clone())
                    .collect();
                for cid in remove {
                    if let Some(mut c) = inner.checks.remove(&cid)
                        && let Some(t) = c.task.take()
                    {
                        t.abort();
                    }
                }
            }
        }
        for (check_id, name, c) in hcs {
            // A service registered again keeps its checks' state (Consul
            // restores status and output from a snapshot), so re-registering
            // an unchanged service (Nomad's sync) changes nothing.
            self.insert_check(check_id, name, &id, &svc, c, token, source, true);
        }
        self.local.bump();
        info!(service = %id, "Synced service");
        // The sidecar joins the local state whether or not the catalog
        // write below succeeds (anti-entropy writes both later if not).
        let synced = self.sync_service(&id).await;
        if let Some(sc) = sidecar {
            Box::pin(self.add_service(sc, token, replace_existing_checks, source)).await?;
        }
        self.refresh_alias_checks().await;
        synced
    }

    fn check_script_allowed(&self, c: &CheckDefinition, source: Source) -> Result<(), ApiError> {
        if c.script().is_empty() {
            return Ok(());
        }
        let allowed = self.config.enable_script_checks
            || (source == Source::Config && self.config.enable_local_script_checks);
        if allowed {
            Ok(())
        } else {
            Err(ApiError::internal(
                "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true",
            ))
        }
    }

    /// Builds the sidecar service definition of `parent` (Consul's rules: id
    /// `<id>-sidecar-proxy`, inherited tags and meta, a free port from the
    /// sidecar range, a listening check and an alias check).
    fn sidecar_definition(
        &self,
        parent: &ServiceDefinition,
        sc: &ServiceDefinition,
    ) -> Result<ServiceDefinition, ApiError> {
        if !sc.id.is_empty() {
            return Err(ApiError::bad_request(
                "Invalid SidecarService: sidecar_service can't specify an ID",
            ));
        }
        if sc
            .connect
            .as_ref()
            .is_some_and(|c| c.sidecar_service.is_some())
        {
            return Err(ApiError::bad_request(
                "Invalid SidecarService: sidecar_service can't have a nested sidecar_service",
            ));
        }
        let pid = parent.instance_id().to_string();
        let mut d = sc.clone();
        d.kind = "connect-proxy".into();
        d.id = format!("{pid}-sidecar-proxy");
        if d.name.is_empty() {
            d.name = format!("{}-sidecar-proxy", parent.name);
        }
        if d.tags.is_empty() {
            d.tags = parent.tags.clone();
        }
        if d.meta.is_empty() {
            d.meta = parent.meta.clone();
        }
        let mut proxy = d.proxy.clone().unwrap_or_default();
        proxy.destination_service_name = parent.name.clone();
        proxy.destination_service_id = pid.clone();
        if proxy.local_service_address.is_empty() && parent.socket_path.is_empty() {
            proxy.local_service_address = "127.0.0.1".into();
        }
        if proxy.local_service_port == 0 && parent.socket_path.is_empty() {
            proxy.local_service_port = parent.port;
        }
        d.proxy = Some(proxy);
        if d.port == 0 {
            d.port = self.free_sidecar_port(&d.id)?;
        }
        if d.check.is_none() && d.checks.is_empty() {
            let addr = if d.address.is_empty() {
                "127.0.0.1".to_string()
            } else {
                d.address.clone()
            };
            d.checks = vec![
                CheckDefinition {
                    name: "Connect Sidecar Listening".into(),
                    tcp: format!("{addr}:{}", d.port),
                    interval: GoDuration(Duration::from_secs(10)),
                    ..Default::default()
                },
                CheckDefinition {
                    name: format!("Connect Sidecar Aliasing {pid}"),
                    alias_service: pid,
                    ..Default::default()
                },
            ];
        }
        Ok(d)
    }

    fn free_sidecar_port(&self, own_id: &str) -> Result<i64, ApiError> {
        let inner = self.local.inner.lock();
        if let Some(existing) = inner.services.get(own_id) {
            return Ok(existing.svc.port);
        }
        let used: Vec<i64> = inner.services.values().map(|s| s.svc.port).collect();
        let (lo, hi) = (
            self.config.ports.sidecar_min_port,
            self.config.ports.sidecar_max_port,
        );
        (lo..=hi).find(|p| !used.contains(p)).ok_or_else(|| {
            ApiError::internal(format!("No free sidecar port in the range {lo}-{hi}"))
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_check(
        self: &Arc<Self>,
        check_id: String,
        name: String,
        service_id: &str,
        svc: &NodeService,
        c: CheckDefinition,
        token: &str,
        source: Source,
        restore_state: bool,
    ) {
        let kind = c.kind();
        let initial = if c.status.is_empty() {
            status::CRITICAL.to_string()
        } else {
            c.status.clone()
        };
        let mut hc = HealthCheck {
            node: self.node_name.clone(),
            check_id: check_id.clone(),
            name,
            status: initial.clone(),
            notes: c.notes.clone(),
            output: String::new(),
            service_id: service_id.to_string(),
            service_name: if service_id.is_empty() {
                String::new()
            } else {
                svc.service.clone()
            },
            service_tags: if service_id.is_empty() {
                Vec::new()
            } else {
                svc.tags.clone()
            },
            check_type: kind.map(|k| k.type_name().to_string()).unwrap_or_default(),
            interval: if c.interval.is_zero() {
                String::new()
            } else {
                c.interval.to_string()
            },
            timeout: if c.timeout.is_zero() {
                String::new()
            } else {
                c.timeout.to_string()
            },
            exposed_port: 0,
            definition: HealthCheckDefinition::default(),
            create_index: 0,
            modify_index: 0,
        };
        let ttl_deadline = (kind == Some(CheckKind::Ttl)).then(|| Instant::now() + c.ttl.get());
        let task = self.spawn_runner(&check_id, &c, kind);
        let mut inner = self.local.inner.lock();
        let mut critical_since = (initial == status::CRITICAL).then(Instant::now);
        let mut output_deferred = false;
        let mut deferral_timer = false;
        if let Some(mut old) = inner.checks.remove(&check_id) {
            if let Some(t) = old.task.take() {
                t.abort();
            }
            if restore_state {
                hc.status = old.hc.status;
                hc.output = old.hc.output;
                critical_since = old.critical_since;
                output_deferred = old.output_deferred;
                deferral_timer = old.deferral_timer;
            }
        }
        inner.checks.insert(
            check_id,
            LocalCheck {
                critical_since,
                hc,
                thresholds: Thresholds::from_def(&c),
                def: c,
                kind,
                token: token.to_string(),
                source,
                ttl_deadline,
                task,
                output_deferred,
                deferral_timer,
            },
        );
    }

    fn spawn_runner(
        self: &Arc<Self>,
        check_id: &str,
        c: &CheckDefinition,
        kind: Option<CheckKind>,
    ) -> Option<AbortHandle> {
        let agent = self.clone();
        let id = check_id.to_string();
        let def = c.clone();
        let interval = c.interval.get().max(checks::MIN_INTERVAL);
        let timeout = if c.timeout.is_zero() {
            checks::DEFAULT_TIMEOUT
        } else {
            c.timeout.get()
        };
        let handle = match kind? {
            CheckKind::Ttl => tokio::spawn(ttl_watch(agent, id)),
            CheckKind::Tcp => {
                let addr = def.tcp.clone();
                let tls = def.tcp_use_tls.then(|| self.check_tls(&def));
                tokio::spawn(periodic(agent, id, interval, move || {
                    let addr = addr.clone();
                    let tls = tls.clone();
                    async move {
                        match tls {
                            Some(opts) => probes::tls(&addr, &opts, timeout).await,
                            None => checks::tcp(&addr, timeout).await,
                        }
                    }
                }))
            }
            CheckKind::Grpc => {
                let target = def.grpc.clone();
                let tls = def.grpc_use_tls.then(|| self.check_tls(&def));
                tokio::spawn(periodic(agent, id, interval, move || {
                    let target = target.clone();
                    let tls = tls.clone();
                    async move { checks::h2::grpc(&target, tls.as_ref(), timeout).await }
                }))
            }
            CheckKind::H2Ping => {
                let addr = def.h2ping.clone();
                let tls = def.h2ping_tls().then(|| self.check_tls(&def));
                tokio::spawn(periodic(agent, id, interval, move || {
                    let addr = addr.clone();
                    let tls = tls.clone();
                    async move { checks::h2::h2ping(&addr, tls.as_ref(), timeout).await }
                }))
            }
            CheckKind::Http => {
                // The agent's CA (`tls.defaults.ca_file`) is trusted besides
                // the system's roots, as Consul's HTTP checks trust it (a
                // file that cannot be read fails an https check, as it fails
                // the TLS probes of the other checks; a plain one needs none).
                let https = def
                    .http
                    .get(..8)
                    .is_some_and(|p| p.eq_ignore_ascii_case("https://"));
                let roots = if https {
                    checks::ca_roots(&self.config.tls.defaults.ca_file)
                } else {
                    Ok(Vec::new())
                };
                // One client for the check's life, unless TLS must name
                // another host than the URL's (a client per run then, see
                // `checks::http_named`).
                let client = match (&roots, checks::names_other_host(&def)) {
                    (Ok(r), false) => Some(checks::http_client(&def, r)),
                    _ => None,
                };
                tokio::spawn(periodic(agent, id, interval, move || {
                    let (def, roots, client) = (def.clone(), roots.clone(), client.clone());
                    async move {
                        match (client, roots) {
                            (Some(client), _) => checks::http(&client, &def, timeout).await,
                            (None, Ok(roots)) => checks::http_named(&def, &roots, timeout).await,
                            (None, Err(e)) => Outcome::new(status::CRITICAL, e),
                        }
                    }
                }))
            }
            CheckKind::Script => {
                let args = def.script().to_vec();
                tokio::spawn(periodic(agent, id, interval, move || {
                    let args = args.clone();
                    async move { checks::script(&args, timeout).await }
                }))
            }
            _ => return None,
        };
        Some(handle.abort_handle())
    }

    /// How a TLS check of `def` verifies its server: the definition's
    /// `TLSServerName`/`TLSSkipVerify`, the agent's `tls.defaults.ca_file`.
    fn check_tls(&self, def: &CheckDefinition) -> probes::TlsOptions {
        probes::TlsOptions {
            server_name: def.tls_server_name.clone(),
            skip_verify: def.tls_skip_verify,
            ca_file: self.config.tls.defaults.ca_file.clone(),
        }
    }

    /// Records the raw result of a check run (thresholds applied) and syncs it.
    pub async fn check_result(self: &Arc<Self>, check_id: &str, outcome: Outcome) {
        let update = {
            let mut inner = self.local.inner.lock();
            let Some(c) = inner.checks.get_mut(check_id) else {
                return;
            };
            let Some(st) = c.thresholds.feed(outcome.status) else {
                debug!(check = %check_id, "check result below threshold, status kept");
                return;
            };
            let max = if c.def.output_max_size > 0 {
                c.def.output_max_size as usize
            } else {
                self.config.check_output_max_size
            };
            let output = if self.config.discard_check_output {
                String::new()
            } else {
                checks::truncate_output(outcome.output, max)
            };
            set_status(c, st, output).map(|ch| c.route(ch, self.config.check_update_interval()))
        };
        self.sync_check_change(check_id, update).await;
    }

    /// Writes a local check's change to the catalog now, or has its new
    /// output written once `check_update_interval` has passed (half of it
    /// plus a random share of all of it, as Consul staggers it), so that a
    /// check whose output changes at every run (a time in an HTTP body)
    /// does not wake every blocking query on its service at every run. The
    /// agent's own endpoints show the new output at once.
    async fn sync_check_change(self: &Arc<Self>, check_id: &str, change: Option<CheckSync>) {
        match change {
            None => {}
            Some(CheckSync::Now(status, output)) => {
                self.local.bump();
                self.push_check(check_id, &status, &output).await;
                self.refresh_alias_checks().await;
            }
            Some(CheckSync::Later { schedule }) => {
                self.local.bump();
                if schedule {
                    let interval = self.config.check_update_interval();
                    let wait = interval / 2 + interval.mul_f64(rand::random::<f64>());
                    debug!(check = %check_id, ?wait, "check output changed, status the same: catalog update deferred");
                    tokio::spawn(deferred_output(self.clone(), check_id.to_string(), wait));
                }
            }
        }
    }

    /// Sets a TTL check's status (`/v1/agent/check/pass|warn|fail|update`) and
    /// restarts its TTL.
    pub async fn update_ttl_check(
        self: &Arc<Self>,
        check_id: &str,
        st: &str,
        output: &str,
    ) -> Result<(), ApiError> {
        let update = {
            let mut inner = self.local.inner.lock();
            let Some(c) = inner.checks.get_mut(check_id) else {
                return Err(ApiError::not_found(format!(
                    "Unknown check ID \"{check_id}\". Ensure that the check ID is passed, not the check name."
                )));
            };
            if c.kind != Some(CheckKind::Ttl) {
                return Err(ApiError::internal(format!(
                    "CheckID \"{check_id}\" does not have associated TTL"
                )));
            }
            c.ttl_deadline = Some(Instant::now() + c.def.ttl.get());
            let output = if self.config.discard_check_output {
                String::new()
            } else {
                checks::truncate_output(output.to_string(), self.config.check_output_max_size)
            };
            set_status(c, status_str(st), output)
                .map(|ch| c.route(ch, self.config.check_update_interval()))
        };
        self.sync_check_change(check_id, update).await;
        Ok(())
    }

    /// Whether this agent's own services and checks can be written to the
    /// catalog now. In cluster mode without a known leader (servers not up
    /// yet, or unreachable) they are kept locally only, as Consul's agents
    /// keep them: the call answers at once instead of waiting 15 s for a
    /// leader, and anti-entropy writes them once there is one.
    fn catalog_reachable(&self) -> bool {
        self.store.cluster().is_none_or(|c| c.known_leader())
    }

    /// Whether a change to one of this agent's services or checks can be
    /// written to the catalog now: there is a leader and this node is in the
    /// catalog (not yet, for an agent that joins late, or no longer, after a
    /// `catalog/deregister` of the node); otherwise the change is kept
    /// locally and anti-entropy, which registers the node first, writes it.
    fn node_in_catalog(&self) -> bool {
        self.catalog_reachable() && self.store.read().node(&self.node_name).is_some()
    }

    /// Removes one of this agent's services or checks from the catalog (when
    /// it can: see [`Agent::node_in_catalog`]).
    async fn deregister_in_catalog(&self, req: DeregisterRequest) -> Result<(), ApiError> {
        if self.node_in_catalog() {
            self.store.write(Command::Deregister(req)).await?;
        }
        Ok(())
    }

    async fn push_check(&self, check_id: &str, st: &str, output: &str) {
        if !self.node_in_catalog() {
            return;
        }
        let r = self
            .store
            .write(Command::UpdateCheck {
                node: self.node_name.clone(),
                check_id: check_id.to_string(),
                status: st.to_string(),
                output: output.to_string(),
            })
            .await;
        if let Err(e) = r {
            // The check is not in the catalog yet (or was removed there):
            // anti-entropy will register it with its current status.
            debug!(check = %check_id, "check update not applied: {e}");
        }
    }

    /// Recomputes alias checks (status mirrors the aliased local service).
    pub async fn refresh_alias_checks(self: &Arc<Self>) {
        let updates: Vec<(String, String, String)> = {
            let mut inner = self.local.inner.lock();
            let aliases: Vec<(String, String)> = inner
                .checks
                .iter()
                .filter(|(_, c)| c.kind == Some(CheckKind::Alias))
                .map(|(id, c)| (id.clone(), c.def.alias_service.clone()))
                .collect();
            let mut out = Vec::new();
            for (id, target) in aliases {
                let exists = inner.services.contains_key(&target);
                let (st, output) = if !exists {
                    (
                        status::CRITICAL,
                        format!("Service {target} could not be found on the local agent"),
                    )
                } else {
                    let st = aggregate_status(
                        inner
                            .checks
                            .values()
                            .filter(|c| c.hc.service_id == target || c.hc.service_id.is_empty())
                            .filter(|c| c.kind != Some(CheckKind::Alias))
                            .map(|c| c.hc.status.as_str()),
                    );
                    (st, "All checks passing.".to_string())
                };
                if let Some(c) = inner.checks.get_mut(&id)
                    && let Some(ch) = set_status(c, st, output)
                {
                    out.push((id, ch.status, ch.output));
                }
            }
            out
        };
        for (id, s, o) in updates {
            self.local.bump();
            self.push_check(&id, &s, &o).await;
        }
    }

    /// Removes a service and its checks from the agent and the catalog.
    pub async fn remove_service(self: &Arc<Self>, id: &str) -> Result<(), ApiError> {
        let removed = {
            let mut inner = self.local.inner.lock();
            let svc = inner.services.remove(id);
            let check_ids: Vec<String> = inner
                .checks
                .iter()
                .filter(|(_, c)| c.hc.service_id == id)
                .map(|(k, _)| k.clone())
                .collect();
            for cid in check_ids {
                if let Some(mut c) = inner.checks.remove(&cid)
                    && let Some(t) = c.task.take()
                {
                    t.abort();
                }
            }
            svc
        };
        if removed.is_none() {
            return Err(ApiError::not_found(format!(
                "Unknown service ID \"{id}\". Ensure that the service ID is passed, not the service name."
            )));
        }
        self.local.bump();
        self.deregister_in_catalog(DeregisterRequest {
            node: self.node_name.clone(),
            service_id: id.to_string(),
            ..Default::default()
        })
        .await?;
        info!(service = %id, "Deregistered service");
        // A sidecar goes with its service.
        let sidecar = format!("{id}-sidecar-proxy");
        let owns_sidecar = self
            .local
            .service(&sidecar)
            .is_some_and(|s| s.svc.proxy.destination_service_id == id);
        if owns_sidecar {
            Box::pin(self.remove_service(&sidecar)).await?;
        }
        self.refresh_alias_checks().await;
        Ok(())
    }

    /// Adds a node- or service-level check (`/v1/agent/check/register`).
    pub async fn add_check(
        self: &Arc<Self>,
        c: CheckDefinition,
        token: &str,
        source: Source,
    ) -> Result<(), ApiError> {
        if c.name.is_empty() {
            return Err(ApiError::bad_request("Missing check name"));
        }
        validate_check(&c).map_err(|e| ApiError::bad_request(format!("Invalid check: {e}")))?;
        self.check_script_allowed(&c, source)?;
        let svc = if c.service_id.is_empty() {
            NodeService::default()
        } else {
            match self.local.service(&c.service_id) {
                Some(s) => s.svc,
                None => {
                    return Err(ApiError::not_found(format!(
                        "ServiceID \"{}\" does not exist",
                        c.service_id
                    )));
                }
            }
        };
        let id = if c.given_id().is_empty() {
            c.name.clone()
        } else {
            c.given_id().to_string()
        };
        let service_id = c.service_id.clone();
        let name = c.name.clone();
        self.insert_check(id.clone(), name, &service_id, &svc, c, token, source, false);
        self.local.bump();
        self.sync_check(&id).await?;
        self.refresh_alias_checks().await;
        Ok(())
    }

    /// Removes a check (`/v1/agent/check/deregister/:id`).
    pub async fn remove_check(self: &Arc<Self>, id: &str) -> Result<(), ApiError> {
        let removed = {
            let mut inner = self.local.inner.lock();
            inner.checks.remove(id).map(|mut c| {
                if let Some(t) = c.task.take() {
                    t.abort();
                }
            })
        };
        if removed.is_none() {
            return Err(ApiError::not_found(format!(
                "Unknown check ID \"{id}\". Ensure that the check ID is passed, not the check name."
            )));
        }
        self.local.bump();
        self.deregister_in_catalog(DeregisterRequest {
            node: self.node_name.clone(),
            check_id: id.to_string(),
            ..Default::default()
        })
        .await?;
        self.refresh_alias_checks().await;
        Ok(())
    }

    /// Writes one local service and its checks to the catalog.
    async fn sync_service(&self, id: &str) -> Result<(), ApiError> {
        if !self.node_in_catalog() {
            return Ok(());
        }
        let (svc, checks) = {
            let inner = self.local.inner.lock();
            let Some(s) = inner.services.get(id) else {
                return Ok(());
            };
            let checks: Vec<HealthCheck> = inner
                .checks
                .values()
                .filter(|c| c.hc.service_id == id)
                .map(|c| c.hc.clone())
                .collect();
            (s.svc.clone(), checks)
        };
        self.store
            .write(Command::Register(Box::new(RegisterRequest {
                node: self.node_name.clone(),
                skip_node_update: true,
                service: Some(svc),
                checks,
                ..Default::default()
            })))
            .await?;
        Ok(())
    }

    async fn sync_check(&self, id: &str) -> Result<(), ApiError> {
        if !self.node_in_catalog() {
            return Ok(());
        }
        let Some((hc, _)) = self.local.check(id) else {
            return Ok(());
        };
        self.store
            .write(Command::Register(Box::new(RegisterRequest {
                node: self.node_name.clone(),
                skip_node_update: true,
                check: Some(hc),
                ..Default::default()
            })))
            .await?;
        Ok(())
    }

    /// Makes the catalog's view of this node equal to the local state:
    /// registers what is missing or different, removes what the agent does not own.
    pub async fn reconcile(self: &Arc<Self>) {
        if self.leaving.load(std::sync::atomic::Ordering::SeqCst) || !self.catalog_reachable() {
            return;
        }
        let registered = self.store.read().node(&self.node_name).is_some();
        if !registered && let Err(e) = self.register_self().await {
            warn!("anti-entropy: {e}");
        }
        let (catalog_services, catalog_checks) = {
            let st = self.store.read();
            let svcs: BTreeMap<String, NodeService> = st
                .node_services(&self.node_name)
                .1
                .map(|(_, list)| {
                    list.into_iter()
                        .map(|s| (s.id.clone(), s.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let checks: BTreeMap<String, HealthCheck> = st
                .node_checks(&self.node_name)
                .1
                .into_iter()
                .map(|c| (c.check_id.clone(), c.clone()))
                .collect();
            (svcs, checks)
        };
        // `EnableTagOverride`: tags edited in the catalog win; the agent
        // adopts them (and its checks' copy) instead of writing its own back.
        {
            let mut inner = self.local.inner.lock();
            let mut adopted = false;
            let Inner { services, checks } = &mut *inner;
            for (id, ls) in services.iter_mut() {
                let Some(remote) = catalog_services.get(id) else {
                    continue;
                };
                if ls.svc.enable_tag_override && ls.svc.tags != remote.tags {
                    ls.svc.tags = remote.tags.clone();
                    for c in checks.values_mut().filter(|c| &c.hc.service_id == id) {
                        c.hc.service_tags = remote.tags.clone();
                    }
                    adopted = true;
                }
            }
            drop(inner);
            if adopted {
                self.local.bump();
            }
        }
        let (services, checks) = {
            let inner = self.local.inner.lock();
            (
                inner
                    .services
                    .values()
                    .map(|s| s.svc.clone())
                    .collect::<Vec<_>>(),
                inner
                    .checks
                    .values()
                    .map(|c| (c.hc.clone(), c.output_deferred))
                    .collect::<Vec<_>>(),
            )
        };
        for s in &services {
            let same = catalog_services.get(&s.id).is_some_and(|c| {
                let mut c = c.clone();
                c.create_index = 0;
                c.modify_index = 0;
                c == *s
            });
            if !same {
                info!(service = %s.id, "anti-entropy: syncing service");
                if let Err(e) = self.sync_service(&s.id).await {
                    warn!(service = %s.id, "anti-entropy: {}", e.message);
                }
            }
        }
        for (c, output_deferred) in &checks {
            let same = catalog_checks.get(&c.check_id).is_some_and(|cc| {
                let mut cc = cc.clone();
                cc.create_index = 0;
                cc.modify_index = 0;
                // A deferred output is written by its own timer.
                if *output_deferred {
                    cc.output = c.output.clone();
                }
                cc == *c
            });
            if !same && let Err(e) = self.sync_check(&c.check_id).await {
                warn!(check = %c.check_id, "anti-entropy: {}", e.message);
            }
        }
        let own_services: Vec<&str> = services.iter().map(|s| s.id.as_str()).collect();
        for id in catalog_services.keys() {
            if id == "consul" && self.config.server {
                continue;
            }
            if !own_services.contains(&id.as_str()) {
                info!(service = %id, "anti-entropy: removing service not owned by this agent");
                let _ = self
                    .store
                    .write(Command::Deregister(DeregisterRequest {
                        node: self.node_name.clone(),
                        service_id: id.clone(),
                        ..Default::default()
                    }))
                    .await;
            }
        }
        let own_checks: Vec<&str> = checks.iter().map(|(c, _)| c.check_id.as_str()).collect();
        for id in catalog_checks.keys() {
            if id == SERF_CHECK_ID || own_checks.contains(&id.as_str()) {
                continue;
            }
            let _ = self
                .store
                .write(Command::Deregister(DeregisterRequest {
                    node: self.node_name.clone(),
                    check_id: id.clone(),
                    ..Default::default()
                }))
                .await;
        }
    }
}

fn status_str(s: &str) -> &'static str {
    match s {
        status::PASSING => status::PASSING,
        status::WARNING => status::WARNING,
        _ => status::CRITICAL,
    }
}

/// A local check's new status and output, from [`set_status`].
struct StatusChange {
    status: String,
    output: String,
    status_changed: bool,
}

/// Sets a local check's status; returns the new status and output when
/// either changed.
fn set_status(c: &mut LocalCheck, st: &str, output: String) -> Option<StatusChange> {
    if c.hc.status == st && c.hc.output == output {
        return None;
    }
    let status_changed = c.hc.status != st;
    if st == status::CRITICAL {
        if c.hc.status != status::CRITICAL || c.critical_since.is_none() {
            c.critical_since = Some(Instant::now());
        }
    } else {
        c.critical_since = None;
    }
    c.hc.status = st.to_string();
    c.hc.output = output.clone();
    Some(StatusChange {
        status: st.to_string(),
        output,
        status_changed,
    })
}

/// Writes a check's deferred output to the catalog after `wait`, unless a
/// status change has written it meanwhile (or the check is gone). A check
/// whose timer was restored from an earlier registration of its service
/// keeps that timer.
async fn deferred_output(agent: Arc<Agent>, check_id: String, wait: Duration) {
    let mut stop = agent.shutdown_signal();
    tokio::select! {
        _ = crate::stopped(&mut stop) => return,
        _ = tokio::time::sleep(wait) => {}
    }
    let due = {
        let mut inner = agent.local.inner.lock();
        match inner.checks.get_mut(&check_id) {
            Some(c) => {
                c.deferral_timer = false;
                std::mem::take(&mut c.output_deferred)
                    .then(|| (c.hc.status.clone(), c.hc.output.clone()))
            }
            None => None,
        }
    };
    if let Some((status, output)) = due {
        agent.push_check(&check_id, &status, &output).await;
    }
}

fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > 64 {
        return Err("Node metadata cannot contain more than 64 key/value pairs".to_string());
    }
    for (k, v) in meta {
        if k.is_empty() {
            return Err("Key cannot be blank".into());
        }
        if k.len() > 128 {
            return Err("Key is too long (limit: 128 characters)".to_string());
        }
        if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("Key contains invalid characters: {k}"));
        }
        if k.starts_with("consul-") {
            return Err("Key prefix 'consul-' is reserved for internal use".to_string());
        }
        if v.len() > 512 {
            return Err("Value is too long (limit: 512 characters)".to_string());
        }
    }
    Ok(())
}

/// The catalog form of a service definition. As Consul does, an IP literal
/// `Address` adds `lan_ipv4`/`wan_ipv4` (or `_ipv6`) tagged addresses unless given.
pub fn node_service(def: &ServiceDefinition) -> NodeService {
    let mut tagged = def.tagged_addresses.clone();
    if let Ok(ip) = def.address.parse::<std::net::IpAddr>() {
        let (lan, wan) = if ip.is_ipv4() {
            ("lan_ipv4", "wan_ipv4")
        } else {
            ("lan_ipv6", "wan_ipv6")
        };
        for k in [lan, wan] {
            tagged
                .entry(k.to_string())
                .or_insert_with(|| ServiceAddress {
                    address: def.address.clone(),
                    port: def.port,
                });
        }
    }
    NodeService {
        kind: def.kind.clone(),
        id: def.instance_id().to_string(),
        service: def.name.clone(),
        tags: def.tags.clone(),
        address: def.address.clone(),
        tagged_addresses: tagged,
        meta: def.meta.clone(),
        port: def.port,
        socket_path: def.socket_path.clone(),
        weights: def.weights.unwrap_or_default(),
        enable_tag_override: def.enable_tag_override,
        proxy: def.proxy.clone().unwrap_or_default(),
        connect: ServiceConnect {
            native: def.connect.as_ref().is_some_and(|c| c.native),
            sidecar_service: None,
        },
        peer_name: String::new(),
        create_index: 0,
        modify_index: 0,
    }
}

/// Runs a probe every `interval` (after a short random stagger).
async fn periodic<F, Fut>(agent: Arc<Agent>, id: String, interval: Duration, probe: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let stagger = rand::random_range(0..interval.as_millis().clamp(1, 500) as u64);
    tokio::time::sleep(Duration::from_millis(stagger)).await;
    loop {
        let outcome = probe().await;
        agent.check_result(&id, outcome).await;
        tokio::time::sleep(interval).await;
    }
}

/// Turns a TTL check critical when its TTL runs out without an update.
async fn ttl_watch(agent: Arc<Agent>, id: String) {
    loop {
        let deadline = {
            let inner = agent.local.inner.lock();
            match inner.checks.get(&id) {
                Some(c) => c.ttl_deadline,
                None => return,
            }
        };
        let Some(deadline) = deadline else { return };
        tokio::time::sleep_until(deadline.into()).await;
        let expired = {
            let mut inner = agent.local.inner.lock();
            match inner.checks.get_mut(&id) {
                None => return,
                Some(c) if c.ttl_deadline.is_some_and(|d| d <= Instant::now()) => {
                    c.ttl_deadline = Some(Instant::now() + c.def.ttl.get());
                    set_status(c, status::CRITICAL, "TTL expired".into())
                        .map(|ch| c.route(ch, agent.config.check_update_interval()))
                }
                Some(_) => None,
            }
        };
        if expired.is_some() {
            warn!(check = %id, "Check missed TTL, is now critical");
        }
        agent.sync_check_change(&id, expired).await;
    }
}

/// Registers the services and checks of the agent config files.
pub async fn load_config_services(agent: &Arc<Agent>) {
    for def in agent.config.all_services() {
        let name = def.name.clone();
        if let Err(e) = agent.add_service(def, "", false, Source::Config).await {
            warn!(service = %name, "service from config file not registered: {}", e.message);
        }
    }
    for c in agent.config.all_checks() {
        let name = c.name.clone();
        if let Err(e) = agent.add_check(c, "", Source::Config).await {
            warn!(check = %name, "check from config file not registered: {}", e.message);
        }
    }
}

/// Periodic full sync of the local state to the catalog.
pub async fn anti_entropy(agent: Arc<Agent>) {
    let mut stop = agent.shutdown_signal();
    let mut local = agent.local.watch();
    // Once at start: what was registered while the agent joined (its API
    // answers meanwhile) is written as soon as it is in the catalog.
    agent.reconcile().await;
    loop {
        tokio::select! {
            _ = crate::stopped(&mut stop) => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = local.changed() => {
                // Coalesce bursts of changes.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        local.borrow_and_update();
        agent.reconcile().await;
    }
}

/// Minimum time a check must stay critical before its service is reaped.
fn reap_minimum() -> Duration {
    std::env::var("MESHGATE_CHECK_REAP_MIN")
        .ok()
        .and_then(|v| meshgate_types::duration::parse(&v).ok())
        .unwrap_or(Duration::from_secs(60))
}

/// Deregisters services whose check has been critical for longer than its
/// `DeregisterCriticalServiceAfter`.
pub async fn reaper(agent: Arc<Agent>) {
    let mut stop = agent.shutdown_signal();
    let min = reap_minimum();
    loop {
        tokio::select! {
            _ = crate::stopped(&mut stop) => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let due: Vec<(String, String)> = {
            let inner = agent.local.inner.lock();
            inner
                .checks
                .values()
                .filter(|c| !c.hc.service_id.is_empty())
                .filter_map(|c| {
                    let after = c.def.deregister_critical_service_after.get();
                    if after.is_zero() {
                        return None;
                    }
                    let after = after.max(min);
                    let since = c.critical_since?;
                    (since.elapsed() >= after)
                        .then(|| (c.hc.service_id.clone(), c.hc.check_id.clone()))
                })
                .collect()
        };
        for (svc, check) in due {
            info!(service = %svc, check = %check, "Check critical for too long, deregistering service");
            let _ = agent.remove_service(&svc).await;
        }
    }
}

/// The check id of node maintenance.
pub const NODE_MAINT_CHECK: &str = "_node_maintenance";
/// The check id prefix of service maintenance.
pub const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";
const DEFAULT_MAINT_REASON: &str = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
const DEFAULT_SERVICE_MAINT_REASON: &str = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

impl Agent {
    /// Puts the node (or one service) into maintenance: a critical check that
    /// takes it out of every `?passing` answer.
    pub async fn set_maintenance(
        self: &Arc<Self>,
        service_id: Option<&str>,
        enable: bool,
        reason: &str,
        token: &str,
    ) -> Result<(), ApiError> {
        let (check_id, name, svc) = match service_id {
            None => (
                NODE_MAINT_CHECK.to_string(),
                "Node Maintenance Mode".to_string(),
                None,
            ),
            Some(id) => {
                let Some(s) = self.local.service(id) else {
                    return Err(ApiError::not_found(format!("Unknown service ID {id:?}")));
                };
                (
                    format!("{SERVICE_MAINT_PREFIX}{id}"),
                    "Service Maintenance Mode".to_string(),
                    Some(s.svc),
                )
            }
        };
        if !enable {
            let exists = self.local.check(&check_id).is_some();
            if exists {
                self.remove_check(&check_id).await?;
                info!(check = %check_id, "Maintenance mode disabled");
            }
            return Ok(());
        }
        let notes = if !reason.is_empty() {
            reason.to_string()
        } else if svc.is_some() {
            DEFAULT_SERVICE_MAINT_REASON.to_string()
        } else {
            DEFAULT_MAINT_REASON.to_string()
        };
        let svc_ref = svc.clone().unwrap_or_default();
        let hc = HealthCheck {
            node: self.node_name.clone(),
            check_id: check_id.clone(),
            name,
            status: status::CRITICAL.into(),
            notes,
            output: String::new(),
            service_id: service_id.unwrap_or("").to_string(),
            service_name: svc.as_ref().map(|s| s.service.clone()).unwrap_or_default(),
            service_tags: svc.as_ref().map(|s| s.tags.clone()).unwrap_or_default(),
            check_type: "maintenance".into(),
            interval: String::new(),
            timeout: String::new(),
            exposed_port: 0,
            definition: HealthCheckDefinition::default(),
            create_index: 0,
            modify_index: 0,
        };
        let _ = svc_ref;
        {
            let mut inner = self.local.inner.lock();
            if let Some(mut old) = inner.checks.remove(&check_id)
                && let Some(t) = old.task.take()
            {
                t.abort();
            }
            inner.checks.insert(
                check_id.clone(),
                LocalCheck {
                    hc,
                    def: CheckDefinition::default(),
                    kind: None,
                    token: token.to_string(),
                    source: Source::Api,
                    critical_since: None,
                    ttl_deadline: None,
                    thresholds: Thresholds::default(),
                    task: None,
                    output_deferred: false,
                    deferral_timer: false,
                },
            );
        }
        self.local.bump();
        self.sync_check(&check_id).await?;
        info!(check = %check_id, "Maintenance mode enabled");
        Ok(())
    }

    /// Re-reads the configuration files: services and checks defined there are
    /// added, updated or removed to match. Returns the warnings of the load.
    pub async fn reload(self: &Arc<Self>) -> Result<Vec<String>, ApiError> {
        let loaded = crate::config::load(&self.sources)
            .map_err(|e| ApiError::internal(format!("Failed to reload configs: {e}")))?;
        let failed = |e: crate::config::ConfigError| {
            ApiError::internal(format!("Failed to reload configs: {e}"))
        };
        // Both built before either is applied: nothing changes on an error.
        let dns = crate::dns::DnsSettings::from_config(&loaded.config).map_err(failed)?;
        let policy = crate::http::policy::HttpPolicy::from_config(&loaded.config.http_config)
            .map_err(failed)?;
        let hooks: Vec<Box<dyn FnOnce() + Send>> = self
            .reload_hooks
            .lock()
            .iter()
            .map(|hook| hook(&loaded.config))
            .collect::<Result<_, String>>()
            .map_err(|e| ApiError::internal(format!("Failed to reload configs: {e}")))?;
        // DNS settings take effect for the next question (listeners stay),
        // `http_config` and the connection limit for the next request.
        *self.dns.write() = std::sync::Arc::new(dns);
        *self.http_policy.write() = std::sync::Arc::new(policy);
        self.http_limiter
            .set_max(loaded.config.limits.http_max_conns_per_client);
        for apply in hooks {
            apply();
        }
        let new_services = loaded.config.all_services();
        let new_checks = loaded.config.all_checks();
        let keep_services: Vec<String> = new_services
            .iter()
            .map(|d| d.instance_id().to_string())
            .collect();
        let keep_checks: Vec<String> = new_checks
            .iter()
            .map(|c| {
                if c.given_id().is_empty() {
                    c.name.clone()
                } else {
                    c.given_id().to_string()
                }
            })
            .collect();
        let (old_services, old_checks): (Vec<String>, Vec<String>) = {
            let inner = self.local.inner.lock();
            (
                inner
                    .services
                    .values()
                    .filter(|s| s.source == Source::Config)
                    .map(|s| s.svc.id.clone())
                    .filter(|id| !keep_services.contains(id))
                    .collect(),
                inner
                    .checks
                    .values()
                    .filter(|c| c.source == Source::Config && c.hc.service_id.is_empty())
                    .map(|c| c.hc.check_id.clone())
                    .filter(|id| !keep_checks.contains(id))
                    .collect(),
            )
        };
        for id in old_services {
            // A sidecar of a removed service may already be gone with it.
            let _ = self.remove_service(&id).await;
        }
        for id in old_checks {
            let _ = self.remove_check(&id).await;
        }
        for def in new_services {
            self.add_service(def, "", true, Source::Config).await?;
        }
        for c in new_checks {
            self.add_check(c, "", Source::Config).await?;
        }
        info!("Configuration reloaded");
        Ok(loaded.warnings)
    }
}
