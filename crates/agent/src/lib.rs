//! The meshgate agent: serves the `/v1` HTTP API, holds the state store (in `-dev`
//! and server mode), keeps this node's own services and checks, runs the checks,
//! and expires sessions.
#![forbid(unsafe_code)]

pub mod acl;
pub mod autopilot;
pub mod bootstrap;
pub mod checks;
pub mod config;
pub mod config_keys;
pub mod connect;
pub mod connlimit;
pub mod dns;
pub mod external;
pub mod filter;
pub mod host;
pub mod http;
pub mod jwt;
pub mod liveness;
pub mod local;
pub mod metrics;
pub mod monitor;
pub mod sdnotify;
pub mod sessions;
pub mod snapshot;
pub mod statsd;
pub mod store;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use meshgate_state::Command;
use meshgate_types::catalog::{
    HealthCheck, NodeService, RegisterRequest, SERF_CHECK_ALIVE_OUTPUT, SERF_CHECK_ID,
    SERF_CHECK_NAME, status,
};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

pub use config::{Config, Loaded, Sources};
pub use store::Store;

/// The version of the Consul API meshgate answers as (`Config.Version`); tools
/// gate features on it.
pub const COMPAT_VERSION: &str = "1.21.0";
/// meshgate's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The build date reported with the version (`/v1/agent/self`,
/// `/v1/agent/version`, `meshgate version -format=json`): the release's
/// date, fixed so that builds are reproducible.
pub const BUILD_DATE: &str = "2026-11-25T00:00:00Z";

/// A failure to start or run the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("Error starting HTTP listener on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("Error starting DNS server on {addr} ({proto}): {source}")]
    DnsBind {
        addr: String,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// A step of `reload` owned outside this crate: given the new
/// configuration, it checks what it needs and returns what to do once every
/// check of the reload has passed (so that a reload that fails changes
/// nothing), or why the reload fails.
pub type ReloadHook =
    Box<dyn Fn(&config::Config) -> Result<Box<dyn FnOnce() + Send>, String> + Send + Sync>;

/// One agent process.
pub struct Agent {
    pub config: Config,
    /// Where the configuration came from (for `/v1/agent/reload`).
    pub sources: Sources,
    pub node_name: String,
    pub node_id: String,
    pub store: Arc<Store>,
    pub local: local::LocalState,
    pub sessions: sessions::SessionRenewals,
    pub metrics: Arc<metrics::Metrics>,
    /// The last JSON answer for one KV entry, shared by the blocking queries
    /// that one write wakes together.
    pub kv_answers: http::kv::SharedAnswer,
    pub acl: acl::AclResolver,
    /// Leaf certificates issued to services on this agent.
    pub leaves: connect::LeafCache,
    pub started: Instant,
    /// Addresses the HTTP API actually listens on.
    pub http_addrs: Mutex<Vec<SocketAddr>>,
    /// Addresses the DNS interface listens on (UDP and TCP each).
    pub dns_addrs: Mutex<Vec<SocketAddr>>,
    /// The DNS settings in force (replaced by `/v1/agent/reload`).
    pub dns: parking_lot::RwLock<Arc<dns::DnsSettings>>,
    shutdown: watch::Sender<bool>,
    /// Why the agent stopped by itself, if it did (`retry_max` exhausted):
    /// the command exits with this error.
    failure: Mutex<Option<String>>,
    /// Set by `leave`: the agent stops putting itself back in the catalog.
    pub leaving: std::sync::atomic::AtomicBool,
    /// `limits.http_max_conns_per_client` over the HTTP API's listeners.
    pub http_limiter: Arc<connlimit::ConnLimiter>,
    /// `http_config` in force (replaced by `/v1/agent/reload`).
    pub http_policy: parking_lot::RwLock<Arc<http::policy::HttpPolicy>>,
    /// `default_query_time` and `max_query_time`.
    pub query_times: (std::time::Duration, std::time::Duration),
    /// Steps of `reload` owned outside this crate (the `agent` command's
    /// watches): see [`ReloadHook`].
    pub reload_hooks: Mutex<Vec<ReloadHook>>,
}

fn hostname() -> String {
    gethostname::gethostname()
        .to_string_lossy()
        .split('.')
        .next()
        .unwrap_or("meshgate")
        .to_string()
}

impl Agent {
    /// Builds an agent from a loaded configuration (nothing runs yet).
    pub fn new(config: Config, sources: Sources) -> Arc<Agent> {
        let node_name = if config.node_name.is_empty() {
            hostname()
        } else {
            config.node_name.clone()
        };
        let node_id = if config.node_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            config.node_id.clone()
        };
        let acl = acl::AclResolver::new(&config.acl);
        // Checked when the configuration was loaded.
        let dns = dns::DnsSettings::from_config(&config).unwrap_or_default();
        let http_limiter = connlimit::ConnLimiter::new(config.limits.http_max_conns_per_client);
        // Checked when the configuration was loaded.
        let http_policy =
            http::policy::HttpPolicy::from_config(&config.http_config).unwrap_or_default();
        let query_times = config.query_times();
        let metrics = Arc::new(metrics::Metrics::default());
        Arc::new(Agent {
            config,
            sources,
            node_name,
            node_id,
            store: Arc::new(Store::with_metrics(metrics.clone())),
            local: local::LocalState::default(),
            sessions: sessions::SessionRenewals::default(),
            metrics,
            kv_answers: http::kv::SharedAnswer::default(),
            acl,
            leaves: connect::LeafCache::default(),
            started: Instant::now(),
            http_addrs: Mutex::new(Vec::new()),
            dns_addrs: Mutex::new(Vec::new()),
            dns: parking_lot::RwLock::new(Arc::new(dns)),
            shutdown: watch::channel(false).0,
            failure: Mutex::new(None),
            leaving: std::sync::atomic::AtomicBool::new(false),
            http_limiter,
            http_policy: parking_lot::RwLock::new(Arc::new(http_policy)),
            reload_hooks: Mutex::new(Vec::new()),
            query_times,
        })
    }

    /// The address this node advertises.
    pub fn advertise_addr(&self) -> String {
        self.config.advertise()
    }

    /// The server port (`ports.server`, 8300 by default).
    pub fn server_port(&self) -> i64 {
        if self.config.ports.server > 0 {
            self.config.ports.server
        } else {
            8300
        }
    }

    /// `ip:port` of the server RPC port, as `/v1/status/leader` reports it.
    pub fn server_addr(&self) -> String {
        format!("{}:{}", self.advertise_addr(), self.server_port())
    }

    /// Asks the agent to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.store.wake_all();
        self.local.wake_all();
    }

    /// Stops the agent because it cannot go on (`retry_max` exhausted): the
    /// command exits with `why` as its error.
    pub fn fail(&self, why: String) {
        tracing::error!("{why}");
        *self.failure.lock() = Some(why);
        self.request_shutdown();
    }

    /// Why the agent stopped by itself ([`Agent::fail`]), if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    /// Whether the agent is stopping.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Whether this agent leads the servers: it orders writes and runs the
    /// leader's duties (the external-service monitor). A single server (`-dev`)
    /// always leads.
    pub fn is_leader(&self) -> bool {
        match self.store.cluster() {
            Some(c) => c.is_leader(),
            None => self.config.server,
        }
    }

    /// A receiver that turns true when the agent stops.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Loads the agent tokens persisted by `/v1/agent/token` (local: needs
    /// no leader).
    fn load_persisted_tokens(&self) -> Result<(), AgentError> {
        if self.config.acl.enable_token_persistence {
            self.acl
                .load_persisted(&self.config.data_dir)
                .map_err(|e| AgentError::Other(format!("loading persisted ACL tokens: {e}")))?;
        }
        Ok(())
    }

    /// Installs the built-in policies and the anonymous token and creates the
    /// `initial_management` token (writes, through the leader).
    pub(crate) async fn init_acls(self: &Arc<Self>) -> Result<(), AgentError> {
        let (policies, tokens) = http::acl_builtins();
        self.store
            .write(Command::AclInit { policies, tokens })
            .await
            .map_err(|e| AgentError::Other(format!("initializing ACLs: {e}")))?;
        let initial = acl::token_value(&self.config.acl, "initial_management");
        let initial = if initial.is_empty() {
            acl::token_value(&self.config.acl, "master")
        } else {
            initial
        };
        if !initial.is_empty() && self.store.read().acl_token_by_secret(&initial).is_none() {
            let token = Box::new(http::acl_initial_management_token(&initial));
            let bootstrapped = self.store.read().acl_bootstrap_index().is_some();
            let cmd = if bootstrapped {
                Command::AclTokenSet(token)
            } else {
                Command::AclBootstrap {
                    token,
                    reset_index: None,
                }
            };
            self.store.write(cmd).await.map_err(|e| {
                AgentError::Other(format!("creating the initial management token: {e}"))
            })?;
            info!("created the ACL initial management token");
        }
        Ok(())
    }

    /// What the agent writes through the leader when it starts: its node
    /// (and liveness check, and on servers the `consul` service), the ACL
    /// built-ins and initial token, the mesh CA root if there is none.
    async fn join_writes(self: &Arc<Self>) -> Result<(), AgentError> {
        self.register_self().await?;
        if self.acl.enabled {
            self.init_acls().await?;
        }
        connect::init_ca(self)
            .await
            .map_err(|e| AgentError::Other(format!("initializing the mesh CA: {e}")))
    }

    /// Writes the agent tokens set through `/v1/agent/token` to
    /// `<data_dir>/acl-tokens.json` (mode 0600) when token persistence is on.
    pub fn persist_tokens(&self, _kind: &str) -> std::io::Result<()> {
        if !self.config.acl.enable_token_persistence || self.config.data_dir.is_empty() {
            return Ok(());
        }
        self.acl.persist(&self.config.data_dir)
    }

    /// Registers this node, its liveness check and (on servers) the `consul`
    /// service.
    pub(crate) async fn register_self(self: &Arc<Self>) -> Result<(), AgentError> {
        let addr = self.advertise_addr();
        let mut tagged = std::collections::BTreeMap::new();
        tagged.insert("lan".to_string(), addr.clone());
        tagged.insert("lan_ipv4".to_string(), addr.clone());
        tagged.insert("wan".to_string(), addr.clone());
        tagged.insert("wan_ipv4".to_string(), addr.clone());
        // `tagged_addresses` from the configuration: added, or replacing those.
        for (k, v) in &self.config.tagged_addresses {
            tagged.insert(k.clone(), v.clone());
        }
        let mut meta = self.config.node_meta.clone();
        meta.entry("consul-network-segment".into()).or_default();
        // As Consul's agents: tools select nodes by it (Prometheus's
        // `__meta_consul_metadata_consul_version`).
        meta.insert("consul-version".into(), COMPAT_VERSION.into());
        let service = if self.config.server {
            let mut m = std::collections::BTreeMap::new();
            m.insert("raft_version".to_string(), "3".to_string());
            m.insert("serf_protocol_current".to_string(), "2".to_string());
            m.insert("serf_protocol_max".to_string(), "5".to_string());
            m.insert("serf_protocol_min".to_string(), "1".to_string());
            m.insert("version".to_string(), COMPAT_VERSION.to_string());
            Some(NodeService {
                id: "consul".into(),
                service: "consul".into(),
                port: self.config.ports.server.max(0),
                meta: m,
                ..Default::default()
            })
        } else {
            None
        };
        let req = RegisterRequest {
            id: self.node_id.clone(),
            node: self.node_name.clone(),
            address: addr,
            datacenter: self.config.datacenter.clone(),
            tagged_addresses: Some(tagged),
            node_meta: Some(meta),
            service,
            check: Some(HealthCheck {
                node: self.node_name.clone(),
                check_id: SERF_CHECK_ID.into(),
                name: SERF_CHECK_NAME.into(),
                status: status::PASSING.into(),
                output: SERF_CHECK_ALIVE_OUTPUT.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.store
            .write(Command::Register(Box::new(req)))
            .await
            .map_err(|e| AgentError::Other(format!("registering this node: {e}")))?;
        // The agent's network coordinate: meshgate does not run Vivaldi over
        // gossip, so every agent reports the origin with the initial error
        // estimate (what a new Consul agent reports before its first probes).
        self.store
            .write(Command::CoordinateUpdate(vec![
                meshgate_state::CoordinateEntry {
                    node: self.node_name.clone(),
                    segment: String::new(),
                    coord: meshgate_state::Coord::default(),
                },
            ]))
            .await
            .map_err(|e| AgentError::Other(format!("registering this node: {e}")))?;
        Ok(())
    }
}

/// A running agent.
pub struct Running {
    pub agent: Arc<Agent>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits for every server task to end (after [`Agent::request_shutdown`]).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.agent.local.stop_all();
    }
}

impl Agent {
    /// In a cluster, takes this agent out of the membership and the catalog
    /// (`meshgate leave`, and a stop by signal when `leave_on_terminate` /
    /// `skip_leave_on_interrupt` say so), so that the others neither wait
    /// for this node nor report it failed; from now on nothing syncs it back.
    /// A no-op for a single agent.
    pub async fn leave_cluster(&self) {
        let Some(c) = self.store.cluster().cloned() else {
            return;
        };
        self.leaving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let id = meshgate_consensus::node_id_from_uuid(&self.node_id);
        let r = self
            .store
            .write(meshgate_state::Command::Deregister(
                meshgate_types::catalog::DeregisterRequest {
                    node: self.node_name.clone(),
                    ..Default::default()
                },
            ))
            .await;
        if let Err(e) = r {
            warn!("leaving: deregistering this node: {e}");
        }
        match c.remove_member(id).await {
            Ok(()) => info!("left the cluster"),
            Err(e) => warn!("leaving: removing this node from the cluster: {e}"),
        }
    }

    /// Removes `pid_file` at exit (whether or not the shutdown finished in
    /// time).
    pub fn remove_pid_file(&self) {
        if !self.config.pid_file.is_empty() {
            let _ = std::fs::remove_file(&self.config.pid_file);
        }
    }
}

/// Writes the process ID to `pid_file` (as Consul: the number, no newline).
fn write_pid_file(path: &str) -> Result<(), AgentError> {
    std::fs::write(path, std::process::id().to_string())
        .map_err(|e| AgentError::Other(format!("Could not write pid file {path}: {e}")))
}

/// Starts the agent: binds the listeners, registers the node, starts background
/// work. Returns once the API answers.
pub async fn start(loaded: Loaded, sources: Sources) -> Result<Running, AgentError> {
    for w in &loaded.warnings {
        warn!("{w}");
    }
    let mut config = loaded.config;
    let cluster = !config.dev;
    if cluster {
        check_cluster_config(&mut config)?;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let agent = Agent::new(config, sources);
    let mut early_tasks = Vec::new();
    // Metrics: names as configured from the first one on, and the statsd /
    // DogStatsD sinks (checked at load).
    agent
        .metrics
        .set_prefix(&agent.config.telemetry.metrics_prefix);
    if !agent.config.telemetry.disable_hostname {
        agent
            .metrics
            .set_hostname(&gethostname::gethostname().to_string_lossy());
    }
    let sinks = statsd::targets(&agent.config.telemetry).map_err(|e| AgentError::Other(e.0))?;
    if !sinks.is_empty() {
        early_tasks.push(tokio::spawn(statsd::run(
            agent.clone(),
            sinks,
            agent.shutdown_signal(),
        )));
    }
    if cluster {
        early_tasks.extend(start_consensus(&agent).await?);
    }
    if agent.acl.enabled {
        agent.load_persisted_tokens()?;
    }
    // Services and checks from config files exist from the start, as
    // Consul's: the agent's own endpoints list them (and their checks run)
    // while it waits for a leader; they reach the catalog when the agent
    // does (below, or when it joins late).
    local::load_config_services(&agent).await;
    // A cluster agent's API answers from here on, as Consul's does while
    // its agent joins: its own endpoints at once, catalog reads once there is
    // a leader. It says it runs (and tells systemd) once it is in the
    // catalog, or has given up waiting for a leader (below). A `-dev` agent
    // (no one to wait for) serves once everything is in place.
    let mut served = None;
    if agent.store.cluster().is_some() {
        served = Some(serve_api(&agent).await?);
    }
    // With a leader (at once, or within 15 s: servers starting together),
    // the agent is in the catalog, with the services and checks of its
    // config files, before it says it runs. Without one it goes on anyway
    // and keeps its own services and checks locally, as Consul's agents do,
    // and joins the catalog once the servers have a leader.
    let leader = match agent.store.cluster() {
        None => true,
        Some(c) => {
            // An agent that gives up joining (`retry_max`) stops waiting.
            let mut stop = agent.shutdown_signal();
            tokio::select! {
                r = c.leader_barrier(store::LEADER_PATIENCE) => r.is_ok(),
                _ = stopped(&mut stop) => match agent.failure() {
                    Some(why) => return Err(AgentError::Other(why)),
                    None => false,
                },
            }
        }
    };
    if leader {
        agent.join_writes().await?;
        // The config files' services and checks, in the catalog before the
        // agent says it runs.
        agent.reconcile().await;
    } else {
        sdnotify::notify("STATUS=waiting for the servers to have a leader");
        early_tasks.push(tokio::spawn(join_when_led(agent.clone())));
    }
    // `config_entries.bootstrap`: a single agent creates them before it says
    // it runs; in a cluster each new leader does (below).
    if agent.store.cluster().is_none() {
        bootstrap::apply_missing(&agent).await;
    }

    let (mut tasks, dns_bound, bound) = match served {
        Some(s) => s,
        None => serve_api(&agent).await?,
    };
    tasks.extend(early_tasks);
    tasks.push(tokio::spawn(local::anti_entropy(agent.clone())));
    tasks.push(tokio::spawn(local::reaper(agent.clone())));
    tasks.push(tokio::spawn(sessions::tombstone_reaper(agent.clone())));
    tasks.push(tokio::spawn(sessions::expire_ttls(agent.clone())));
    tasks.push(tokio::spawn(connect::prune_loop(agent.clone())));
    tasks.push(tokio::spawn(external::run(agent.clone())));
    tasks.push(tokio::spawn(bootstrap::follow_leadership(agent.clone())));

    // Once everything is bound (a start that fails leaves no pid file), and
    // before the agent says it is running.
    if !agent.config.pid_file.is_empty() {
        write_pid_file(&agent.config.pid_file)?;
    }
    let addrs: Vec<String> = bound.iter().map(|a| format!("http://{a}")).collect();
    let dns_addrs: Vec<String> = dns_bound.iter().map(|a| a.to_string()).collect();
    let dns_note = if dns_addrs.is_empty() {
        String::new()
    } else {
        format!(", DNS on {} (udp and tcp)", dns_addrs.join(", "))
    };
    info!(
        node = %agent.node_name,
        datacenter = %agent.config.datacenter,
        "meshgate agent running: HTTP API on {}{dns_note} (ready in {} ms)",
        addrs.join(", "),
        agent.started.elapsed().as_millis()
    );
    if sdnotify::notify("READY=1") {
        info!("told systemd the agent is ready");
    }
    tasks.push(tokio::spawn(sdnotify::watchdog(agent.clone())));
    Ok(Running { agent, tasks })
}

/// The listening tasks and the DNS and HTTP addresses bound.
type Served = (
    Vec<tokio::task::JoinHandle<()>>,
    Vec<std::net::SocketAddr>,
    Vec<std::net::SocketAddr>,
);

/// Binds and serves DNS, then the HTTP API: once the HTTP API answers, DNS
/// answers too.
async fn serve_api(agent: &Arc<Agent>) -> Result<Served, AgentError> {
    let (mut tasks, dns_bound) = dns::start(agent).await?;
    *agent.dns_addrs.lock() = dns_bound.clone();
    let mut bound = Vec::new();
    if agent.config.ports.http > 0 {
        for addr in agent.config.http_addrs() {
            let sa = format!("{}:{}", bracket(&addr), agent.config.ports.http);
            let listener = bind_listener(&sa).map_err(|source| AgentError::Bind {
                addr: sa.clone(),
                source,
            })?;
            let local = listener.local_addr().map_err(|source| AgentError::Bind {
                addr: sa.clone(),
                source,
            })?;
            bound.push(local);
            let app = http::api(agent.clone());
            tasks.push(tokio::spawn(serve_http(
                listener,
                app,
                agent.http_limiter.clone(),
                agent.shutdown_signal(),
            )));
        }
    }
    *agent.http_addrs.lock() = bound.clone();
    if agent.config.ports.https > 0 {
        let acceptor: SharedAcceptor = Arc::new(parking_lot::RwLock::new(https_acceptor(
            &agent.config.tls.https(),
        )?));
        // A reload reads the files again (rotated certificates); the
        // listeners stay as they started.
        let target = acceptor.clone();
        agent.reload_hooks.lock().push(Box::new(move |c: &Config| {
            if c.ports.https <= 0 {
                return Ok(Box::new(|| {}));
            }
            let fresh = https_acceptor(&c.tls.https()).map_err(|e| e.to_string())?;
            let target = target.clone();
            Ok(Box::new(move || *target.write() = fresh))
        }));
        for addr in agent.config.https_addrs() {
            let sa = format!("{}:{}", bracket(&addr), agent.config.ports.https);
            let listener = bind_listener(&sa).map_err(|source| AgentError::Bind {
                addr: sa.clone(),
                source,
            })?;
            if let Ok(local) = listener.local_addr() {
                info!("HTTPS API on https://{local}");
            }
            let app = http::api(agent.clone());
            tasks.push(tokio::spawn(serve(
                listener,
                Some(acceptor.clone()),
                Some(agent.http_limiter.clone()),
                move |peer: SocketAddr| app.for_peer(peer.ip()),
                agent.shutdown_signal(),
            )));
        }
    }
    Ok((tasks, dns_bound, bound))
}

/// A TLS acceptor that a reload can replace (new connections take the new
/// one).
type SharedAcceptor = Arc<parking_lot::RwLock<tokio_rustls::TlsAcceptor>>;

/// The HTTPS API's TLS from its files (`tls.https`, else `tls.defaults`).
fn https_acceptor(t: &config::HttpsTls) -> Result<tokio_rustls::TlsAcceptor, AgentError> {
    let read = |what: &str, path: &str| {
        std::fs::read_to_string(path)
            .map_err(|e| AgentError::Other(format!("tls.https.{what} {path}: {e}")))
    };
    let ca = if t.verify_incoming {
        Some(read("ca_file", &t.ca_file)?)
    } else {
        None
    };
    let server = meshgate_ca::tls::api_server_config(
        &read("cert_file", &t.cert_file)?,
        &read("key_file", &t.key_file)?,
        ca.as_deref(),
        &t.settings,
    )
    .map_err(|e| AgentError::Other(format!("the HTTPS API's TLS files: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(server))
}

/// Cluster mode, when the servers had no leader at start: waits for one as
/// long as it takes (as Consul's agents keep retrying to join), logging every
/// 15 s, then makes the agent's start-up writes (retried until they land) and
/// has anti-entropy write its services and checks.
async fn join_when_led(agent: Arc<Agent>) {
    let Some(c) = agent.store.cluster() else {
        return;
    };
    let mut stop = agent.shutdown_signal();
    loop {
        let r = tokio::select! {
            _ = stopped(&mut stop) => return,
            r = c.leader_barrier(store::LEADER_PATIENCE) => r,
        };
        let r = match r {
            Ok(()) => agent.join_writes().await,
            Err(e) => Err(AgentError::Other(e.to_string())),
        };
        match r {
            Ok(()) => break,
            Err(e) => {
                warn!(
                    "{e} after {} s: waiting for the servers; this agent serves its API and keeps its services locally meanwhile",
                    agent.started.elapsed().as_secs()
                );
                // A write that failed at once (not for want of a leader) is
                // not retried in a tight loop.
                tokio::select! {
                    _ = stopped(&mut stop) => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    }
    sdnotify::notify("STATUS=");
    info!(
        "joined the catalog after {} s: the servers have a leader",
        agent.started.elapsed().as_secs()
    );
    agent.local.bump();
}

/// What a cluster agent (not `-dev`) needs in its configuration: servers to
/// join for a client agent, a data directory, and a loopback `bind_addr`
/// unless agents talk over mutual TLS. Checked at start and by `meshgate
/// validate`.
pub fn check_cluster_settings(config: &Config) -> Result<(), AgentError> {
    if !config.server && config.retry_join.is_empty() && config.start_join.is_empty() {
        return Err(AgentError::Other(
            "a client agent needs servers to join (-retry-join=ADDR); \
             use -server for a server, or -dev for a single-node agent"
                .into(),
        ));
    }
    if config.data_dir.is_empty() {
        return Err(AgentError::Other(
            "data_dir is required (-data-dir=DIR): the agent keeps its copy of the log there"
                .into(),
        ));
    }
    let bind: IpAddr = config.bind_addr.parse().map_err(|_| {
        AgentError::Other(format!(
            "bind_addr {:?} is not an IP address",
            config.bind_addr
        ))
    })?;
    let tls = config.tls.cluster().is_some();
    if !bind.is_loopback() && !tls {
        return Err(AgentError::Other(format!(
            "refusing to bind cluster traffic to {bind}: traffic between agents is not \
             encrypted without mutual TLS (`tls {{ internal_rpc {{ ca_file, cert_file, \
             key_file }} }}`, written by `meshgate setup`), so only loopback addresses \
             (127.0.0.0/8, ::1) may be used (-bind 127.0.0.2)"
        )));
    }
    Ok(())
}

/// The address to advertise when the agent binds every address (`0.0.0.0`
/// or `::`) and names none: as Consul, the one private IPv4 address of the
/// host's interfaces (the one public IPv6 address for `::`); none, or more
/// than one, is an error that asks for `bind`/`advertise`.
fn detect_advertise(bind: IpAddr, addrs: &[IpAddr]) -> Result<IpAddr, AgentError> {
    let (kind, found): (&str, Vec<IpAddr>) = match bind {
        IpAddr::V4(_) => (
            "private IPv4",
            addrs
                .iter()
                .filter(|a| match a {
                    // RFC 1918 and RFC 6598 (carrier-grade NAT), as Consul's
                    // private ranges; not loopback or link-local.
                    IpAddr::V4(v4) => {
                        v4.is_private() || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
                    }
                    IpAddr::V6(_) => false,
                })
                .copied()
                .collect(),
        ),
        IpAddr::V6(_) => (
            "public IPv6",
            addrs
                .iter()
                .filter(|a| match a {
                    IpAddr::V6(v6) => {
                        let first = v6.segments()[0];
                        !v6.is_loopback()
                            && !v6.is_unspecified()
                            && (first & 0xfe00) != 0xfc00 // unique local
                            && (first & 0xffc0) != 0xfe80 // link-local
                            && !v6.is_multicast()
                    }
                    IpAddr::V4(_) => false,
                })
                .copied()
                .collect(),
        ),
    };
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(AgentError::Other(format!(
            "No {kind} address found: set one with -bind or -advertise (bind_addr, advertise_addr)"
        ))),
        many => Err(AgentError::Other(format!(
            "Multiple {kind} addresses found ({}). Please configure one with 'bind' and/or 'advertise'.",
            many.iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Checks what cluster mode needs, and gives the node a stable id.
fn check_cluster_config(config: &mut Config) -> Result<(), AgentError> {
    check_cluster_settings(config)?;
    // Bound to every address with none to advertise: other agents must be
    // told an address they can reach (not 0.0.0.0 or 127.0.0.1).
    if let Ok(bind) = config.bind_addr.parse::<IpAddr>()
        && bind.is_unspecified()
        && config.advertise_addr.is_empty()
    {
        // Interfaces that are down (a Docker bridge with no container, a
        // cable out) are not candidates.
        let addrs: Vec<IpAddr> = if_addrs::get_if_addrs()
            .map_err(|e| AgentError::Other(format!("listing the network interfaces: {e}")))?
            .into_iter()
            .filter(|i| {
                !matches!(
                    i.oper_status,
                    if_addrs::IfOperStatus::Down
                        | if_addrs::IfOperStatus::NotPresent
                        | if_addrs::IfOperStatus::LowerLayerDown
                )
            })
            .map(|i| i.ip())
            .collect();
        let ip = detect_advertise(bind, &addrs)?;
        info!(%ip, "advertising the host's address (bind_addr {bind}, no advertise_addr)");
        config.advertise_addr = ip.to_string();
    }
    let tls = config.tls.cluster().is_some();
    if tls {
        info!("cluster traffic: mutual TLS with the cluster CA");
    } else if config.encrypt.is_empty() {
        warn!(
            "cluster traffic is unauthenticated and unencrypted (no cluster key and no \
             TLS: run `meshgate setup`); loopback only"
        );
    } else {
        warn!(
            "cluster traffic carries the cluster key but is not encrypted (no `tls` \
             block: run `meshgate setup`); loopback only"
        );
    }
    if config.node_id.is_empty() {
        let path = std::path::Path::new(&config.data_dir).join("node-id");
        config.node_id = match std::fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
            _ => {
                let id = uuid::Uuid::new_v4().to_string();
                std::fs::create_dir_all(&config.data_dir)
                    .and_then(|()| std::fs::write(&path, &id))
                    .map_err(|e| AgentError::Other(format!("{}: {e}", path.display())))?;
                id
            }
        };
    }
    Ok(())
}

/// `host:port` with IPv6 brackets.
fn host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A server to join as `host:port`: `host` alone (an IP address or a name)
/// gets `port`, the server port.
pub fn join_target(j: &str, port: i64) -> String {
    if j.parse::<IpAddr>().is_ok() {
        host_port(j, port)
    } else if j.contains(':') {
        j.to_string()
    } else {
        format!("{j}:{port}")
    }
}

/// Starts the replicated log, its server port and cluster formation.
async fn start_consensus(
    agent: &Arc<Agent>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, AgentError> {
    let c = &agent.config;
    let port = agent.server_port();
    let addr = host_port(&c.bind_addr, port);
    let id = meshgate_consensus::node_id_from_uuid(&agent.node_id);
    let dir = std::path::Path::new(&c.data_dir).join("raft");
    let listener = bind_listener(&addr).map_err(|source| AgentError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let host: Arc<dyn meshgate_consensus::Host> = agent.store.clone();
    let key = (!c.encrypt.is_empty()).then(|| c.encrypt.clone());
    let (acceptor, client_tls) = match c.tls.cluster() {
        Some(files) => {
            let read = |what: &str, path: &str| {
                std::fs::read_to_string(path)
                    .map_err(|e| AgentError::Other(format!("tls.internal_rpc.{what} {path}: {e}")))
            };
            let (server, client) = meshgate_ca::tls::cluster_configs(
                &read("ca_file", &files.ca_file)?,
                &read("cert_file", &files.cert_file)?,
                &read("key_file", &files.key_file)?,
                &files.settings,
            )
            .map_err(|e| AgentError::Other(format!("the cluster TLS files: {e}")))?;
            (Some(tokio_rustls::TlsAcceptor::from(server)), Some(client))
        }
        None => (None, None),
    };
    if key.is_none() && acceptor.is_none() {
        warn!(
            "no cluster key (`encrypt`, written by `meshgate setup`): any local process can talk to the server port"
        );
    }
    // Other servers reach this one, and `/v1/status/leader` names it, by
    // the advertised address (the bind address may be 0.0.0.0), as Consul's
    // raft does.
    let advertised = host_port(&agent.advertise_addr(), port);
    let consensus =
        meshgate_consensus::Consensus::start(id, advertised, &dir, host, key, client_tls)
            .await
            .map_err(|e| AgentError::Other(format!("starting the replicated log: {e}")))?;
    // Consul's raft metrics, under its names.
    let metrics = agent.metrics.clone();
    consensus.observe(Arc::new(move |e| {
        use meshgate_consensus::RaftEvent;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        match e {
            RaftEvent::Committed(d) => metrics.committed(d),
            RaftEvent::BecameLeader => metrics.incr("consul.raft.state.leader", 1.0),
            RaftEvent::BecameCandidate => metrics.incr("consul.raft.state.candidate", 1.0),
            RaftEvent::LeaderContact(d) => metrics.sample("consul.raft.leader.lastContact", ms(d)),
        }
    }));
    agent.store.set_cluster(consensus.clone());
    let mut tasks = Vec::new();
    let app = hyper_util::service::TowerToHyperService::new(meshgate_consensus::network::router(
        consensus.clone(),
    ));
    tasks.push(tokio::spawn(serve(
        listener,
        acceptor.map(|a| Arc::new(parking_lot::RwLock::new(a))),
        None,
        move |_| app.clone(),
        agent.shutdown_signal(),
    )));
    let join: Vec<String> = c
        .retry_join
        .iter()
        .chain(&c.start_join)
        .map(|j| join_target(j, port))
        .collect();
    let expect = if c.bootstrap {
        1
    } else {
        c.bootstrap_expect.max(1) as usize
    };
    if c.server {
        info!(server = id, %addr, expect, "raft server starting");
    } else {
        info!(node = id, %addr, "client agent starting: it follows the servers' log");
    }
    let stop = agent.shutdown_signal();
    let voter = c.server;
    let (interval, max) = c.join_retry();
    let retry = meshgate_consensus::JoinRetry { interval, max };
    let joining = agent.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = consensus.form(join, expect, voter, retry, stop).await {
            joining.fail(format!("Retry join failed: {e}"));
        }
    }));
    tasks.push(tokio::spawn(liveness::heartbeats(agent.clone())));
    tasks.push(tokio::spawn(liveness::watch(agent.clone())));
    if c.server {
        tasks.push(tokio::spawn(autopilot::run(agent.clone())));
    }
    Ok(tasks)
}

/// Serves the HTTP API (HTTP/1.1) on a listener until the shutdown signal,
/// then lets open requests finish (blocking queries answer at once on
/// shutdown) for up to 5 s.
///
/// A hand-rolled accept loop over hyper's HTTP/1 connection instead of
/// `axum::serve`: it costs about a quarter of the memory per connection, which
/// matters with thousands of long-lived blocking queries.
///
/// As Consul's, the API keeps an idle keep-alive connection open for as long
/// as the client wants it, and holds each client address to
/// `limits.http_max_conns_per_client` connections (see [`connlimit`]).
async fn serve_http(
    listener: TcpListener,
    app: http::Api,
    limiter: Arc<connlimit::ConnLimiter>,
    stop: watch::Receiver<bool>,
) {
    serve(
        listener,
        None,
        Some(limiter),
        move |peer: SocketAddr| app.for_peer(peer.ip()),
        stop,
    )
    .await
}

/// [`serve_http`], over TLS when `tls` is given (the server port with mutual
/// TLS: the handshake, client certificate included, happens in the
/// connection's own task, so a slow client never holds up the accept loop);
/// `make_service` gives each connection its service, knowing the client's
/// address.
///
/// Without a `limiter` (the server port, agents' own traffic) a connection
/// that sits 30 s without sending a whole request head is closed; with one
/// (the API) it is not, as Consul's API does not close idle connections: a
/// client that pools them would otherwise now and then send a request on a
/// connection the agent is just closing.
async fn serve<S, B, M>(
    listener: TcpListener,
    tls: Option<SharedAcceptor>,
    limiter: Option<Arc<connlimit::ConnLimiter>>,
    make_service: M,
    mut stop: watch::Receiver<bool>,
) where
    M: Fn(SocketAddr) -> S,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        warn!("HTTP accept error: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let slot = match (&limiter, stream.local_addr()) {
                    (Some(l), Ok(local)) => match l.admit(peer.ip(), local.ip()) {
                        connlimit::Admission::Serve(slot) => slot,
                        connlimit::Admission::Refuse => {
                            tokio::spawn(refuse(stream));
                            continue;
                        }
                    },
                    _ => None,
                };
                let _ = stream.set_nodelay(true);
                let svc = make_service(peer);
                let mut builder = hyper::server::conn::http1::Builder::new();
                let header_read_timeout = match limiter {
                    Some(_) => None,
                    None => Some(std::time::Duration::from_secs(30)),
                };
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .max_buf_size(1024 * 1024)
                    // One buffer, one `send`, rather than `writev` of the
                    // head and the body: the answers are small, and the copy
                    // costs less than the vectored call (measured on the
                    // wake-up of 10,000 blocking queries: ~5 % less CPU).
                    .writev(false);
                match &tls {
                    None => {
                        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
                        tokio::spawn(async move {
                            let _ = conn.await;
                            drop(slot);
                        });
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.read().clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(
                                std::time::Duration::from_secs(10),
                                acceptor.accept(stream),
                            );
                            let stream = match handshake.await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, "TLS handshake refused: {e}");
                                    return;
                                }
                                Err(_) => return,
                            };
                            let conn = builder.serve_connection(TokioIo::new(stream), svc);
                            let _ = watcher.watch(conn).await;
                            drop(slot);
                        });
                    }
                }
            }
            _ = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
    }
}

/// Answers a connection over `limits.http_max_conns_per_client` with Consul's
/// 429 and closes it, without reading what it sent.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let answer = connlimit::refusal();
    let _ =
        tokio::time::timeout(connlimit::REFUSAL_WRITE_PATIENCE, stream.write_all(&answer)).await;
}

/// Binds a listening socket with a backlog as deep as the system allows (like
/// Go's listeners), so that bursts of thousands of connections — blocking
/// queries of a whole fleet — are not dropped by a short accept queue.
pub fn bind_listener(addr: &str) -> std::io::Result<TcpListener> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let socket = if sa.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(sa)?;
    let backlog = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(4096)
        .max(1024);
    socket.listen(backlog)
}

/// Resolves when the shutdown signal turns true.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

pub(crate) fn bracket(addr: &str) -> String {
    if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]")
    } else {
        addr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address advertised for a bind to every address: the host's one
    /// private IPv4 (or public IPv6) address, else a clear error.
    #[test]
    fn advertise_detection_picks_the_one_private_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let any4 = ip("0.0.0.0");
        let host = [
            ip("127.0.0.1"),
            ip("10.1.2.3"),
            ip("169.254.1.1"),
            ip("::1"),
        ];
        assert_eq!(detect_advertise(any4, &host).unwrap(), ip("10.1.2.3"));
        // Carrier-grade NAT counts as private, a public address does not.
        assert_eq!(
            detect_advertise(any4, &[ip("100.64.0.7"), ip("8.8.4.4")]).unwrap(),
            ip("100.64.0.7")
        );
        let none = detect_advertise(any4, &[ip("127.0.0.1"), ip("8.8.4.4")]).unwrap_err();
        assert!(
            none.to_string()
                .starts_with("No private IPv4 address found"),
            "{none}"
        );
        let two = detect_advertise(any4, &[ip("10.0.0.1"), ip("192.168.1.1")]).unwrap_err();
        assert_eq!(
            two.to_string(),
            "Multiple private IPv4 addresses found (10.0.0.1, 192.168.1.1). Please configure one with 'bind' and/or 'advertise'."
        );
        let any6 = ip("::");
        let v6 = [
            ip("::1"),
            ip("fe80::1"),
            ip("fd00::1"),
            ip("2001:db8::5"),
            ip("10.0.0.1"),
        ];
        assert_eq!(detect_advertise(any6, &v6).unwrap(), ip("2001:db8::5"));
    }
}
