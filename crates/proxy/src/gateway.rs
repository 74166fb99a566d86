//! The terminating gateway: accepts mesh mTLS for every service linked to
//! it (one leaf per service, chosen by SNI), checks intentions, and carries
//! each connection to a healthy instance of the external service, with TLS
//! origination when the link asks for it — PostgreSQL's `SSLRequest`
//! included.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use meshgate_ca::tls::{ClientAuth, SniResolver};
use parking_lot::RwLock;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

use crate::access_log::{AccessLog, Record, listener_refusal};
use crate::agent::{AgentClient, Blocking, Tasks, watch as watch_path};
use crate::mesh::{self, Defaults, IntentionSet, MeshTls, Roots};
use crate::metrics::{ActiveGuard, Counters, Metrics};
use crate::relay::{self, Balancer, Resolver};
use crate::{Drain, HANDSHAKE_TIMEOUT, ProxyError};

/// TLS origination settings of one linked service (from the gateway's
/// config entry, via `/v1/catalog/gateway-services`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkSettings {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub sni: String,
}

/// The upstream TLS configuration in force, and what it was built from.
#[derive(Default)]
struct Origination {
    built_from: Option<(LinkSettings, Vec<Option<SystemTime>>)>,
    config: Option<Arc<ClientConfig>>,
    error: Option<String>,
}

/// One service the gateway fronts.
pub struct Linked {
    pub name: String,
    pub sni: String,
    settings: RwLock<LinkSettings>,
    balancer: Balancer,
    defaults: RwLock<Defaults>,
    intentions: watch::Receiver<Option<IntentionSet>>,
    origination: RwLock<Origination>,
    has_leaf: std::sync::atomic::AtomicBool,
    leaf_expiry: RwLock<String>,
    leaf_serial: RwLock<String>,
    counters: Arc<Counters>,
    /// The watchers of this service; they stop when the link goes.
    tasks: parking_lot::Mutex<Tasks>,
}

fn mtime(path: &str) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(path: &str, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {what} {path}: {e}"))
}

impl Linked {
    /// Rebuilds the origination config when the settings or the files
    /// changed; keeps the last good one when the files are broken.
    fn refresh_origination(&self) {
        let settings = self.settings.read().clone();
        let stamps: Vec<Option<SystemTime>> =
            [&settings.ca_file, &settings.cert_file, &settings.key_file]
                .iter()
                .map(|p| if p.is_empty() { None } else { mtime(p) })
                .collect();
        {
            let o = self.origination.read();
            if o.built_from.as_ref() == Some(&(settings.clone(), stamps.clone())) {
                return;
            }
        }
        let result: Result<Option<Arc<ClientConfig>>, String> = if settings.ca_file.is_empty() {
            Ok(None)
        } else {
            (|| {
                let ca = read(&settings.ca_file, "CAFile")?;
                let client = if settings.cert_file.is_empty() && settings.key_file.is_empty() {
                    None
                } else {
                    Some((
                        read(&settings.cert_file, "CertFile")?,
                        read(&settings.key_file, "KeyFile")?,
                    ))
                };
                let sni = (!settings.sni.is_empty()).then_some(settings.sni.as_str());
                meshgate_ca::tls::origination_client_config(
                    Some(&ca),
                    client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
                    sni,
                )
                .map(Some)
                .map_err(|e| format!("TLS settings for {}: {e}", self.name))
            })()
        };
        let mut o = self.origination.write();
        o.built_from = Some((settings, stamps));
        match result {
            Ok(cfg) => {
                if o.config.is_some() || cfg.is_some() {
                    info!(service = %self.name, "upstream TLS settings loaded");
                }
                o.config = cfg;
                o.error = None;
            }
            Err(e) => {
                warn!(service = %self.name, "{e}; keeping the previous TLS settings");
                o.error = Some(e);
            }
        }
    }

    fn config_json(&self) -> Value {
        let s = self.settings.read().clone();
        let d = self.defaults.read().clone();
        let o = self.origination.read();
        json!({
            "Service": self.name,
            "SNI": self.sni,
            "Instances": self.balancer.labels(),
            "SetAside": if d.upstream.outlier.is_some() { self.balancer.ejected() } else { Vec::new() },
            "Protocol": if d.protocol.is_empty() { "tcp".to_string() } else { d.protocol.clone() },
            "MaxConnections": d.max_connections,
            "ActiveConnections": self.counters.active.load(Relaxed),
            "LeafValidBefore": *self.leaf_expiry.read(),
            "LeafSerial": *self.leaf_serial.read(),
            "UpstreamTLS": {
                "CAFile": s.ca_file, "CertFile": s.cert_file, "KeyFile": s.key_file, "SNI": s.sni,
                "Originating": o.config.is_some(),
                "Error": o.error,
            },
            "Intentions": self.intentions.borrow().as_ref().map(|i| i.list.len()),
            "DefaultAllow": self.intentions.borrow().as_ref().map(|i| i.default_allow),
        })
    }
}

/// Why a connection ended early: before it was carried (logged as a
/// warning), or while relaying (a peer went away: debug).
enum Failure {
    Setup(String),
    Relay(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Setup(s)
    }
}

/// The gateway's shared state.
pub struct Gateway {
    pub name: String,
    pub datacenter: String,
    client: AgentClient,
    resolver: Arc<SniResolver>,
    server: RwLock<Option<TlsAcceptor>>,
    roots: watch::Receiver<Option<Roots>>,
    mesh_tls: watch::Receiver<Option<MeshTls>>,
    access: Arc<AccessLog>,
    /// Linked services by SNI (lower case).
    by_sni: RwLock<HashMap<String, Arc<Linked>>>,
    pub metrics: Arc<Metrics>,
    dns: Arc<Resolver>,
    services_loaded: std::sync::atomic::AtomicBool,
}

fn link_settings(g: &Value) -> LinkSettings {
    let s = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    LinkSettings {
        ca_file: s("CAFile"),
        cert_file: s("CertFile"),
        key_file: s("KeyFile"),
        sni: s("SNI"),
    }
}

impl Gateway {
    /// Starts watching what the gateway `name` fronts.
    #[allow(clippy::too_many_arguments, reason = "wiring of independent parts")]
    pub fn new(
        client: AgentClient,
        name: &str,
        datacenter: &str,
        roots: watch::Receiver<Option<Roots>>,
        mesh_tls: watch::Receiver<Option<MeshTls>>,
        access: Arc<AccessLog>,
        metrics: Arc<Metrics>,
        tasks: &mut Tasks,
    ) -> Arc<Gateway> {
        let gw = Arc::new(Gateway {
            name: name.to_string(),
            datacenter: datacenter.to_string(),
            client: client.clone(),
            resolver: Arc::new(SniResolver::new()),
            server: RwLock::new(None),
            roots,
            mesh_tls,
            access,
            by_sni: RwLock::new(HashMap::new()),
            metrics,
            dns: Arc::new(Resolver::default()),
            services_loaded: std::sync::atomic::AtomicBool::new(false),
        });
        // The server TLS config follows the roots and the mesh's TLS.
        let g = gw.clone();
        tasks.push(tokio::spawn(async move {
            let mut rx = g.roots.clone();
            let mut mesh_tls = g.mesh_tls.clone();
            loop {
                let roots = rx.borrow_and_update().clone();
                let m = mesh_tls.borrow_and_update().clone().unwrap_or_default();
                if let Some(r) = roots {
                    match meshgate_ca::tls::server_config_with_resolver(
                        g.resolver.clone(),
                        &r.pems,
                        ClientAuth::Required,
                        &m.incoming,
                    ) {
                        Ok(cfg) => *g.server.write() = Some(TlsAcceptor::from(cfg)),
                        Err(e) => warn!("mesh TLS configuration: {e}"),
                    }
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    r = mesh_tls.changed() => if r.is_err() { return },
                }
            }
        }));
        // The linked services follow the gateway's config entry.
        let (mut links, t) = watch_path(
            client,
            format!("/v1/catalog/gateway-services/{name}"),
            Blocking::Index,
            |a| {
                if a.status != reqwest::StatusCode::OK {
                    return Err(format!(
                        "{} {}",
                        a.status.as_u16(),
                        a.body.as_str().unwrap_or("")
                    ));
                }
                Ok(Some(a.body.as_array().cloned().unwrap_or_default()))
            },
        );
        tasks.push(t);
        let g = gw.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let list = links.borrow_and_update().clone();
                if let Some(list) = list {
                    g.reconcile(&list).await;
                }
                if links.changed().await.is_err() {
                    return;
                }
            }
        }));
        // TLS files are re-read when they change.
        let g = gw.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let all: Vec<Arc<Linked>> = g.by_sni.read().values().cloned().collect();
                for l in all {
                    l.refresh_origination();
                }
            }
        }));
        gw
    }

    async fn reconcile(self: &Arc<Self>, list: &[Value]) {
        let mut roots_rx = self.roots.clone();
        let td = match crate::agent::first(&mut roots_rx, Duration::from_secs(30), "CA roots").await
        {
            Ok(r) => r.trust_domain,
            Err(e) => {
                warn!("cannot serve linked services yet: {e}");
                return;
            }
        };
        let mut wanted: HashMap<String, (String, LinkSettings)> = HashMap::new();
        for g in list {
            let Some(svc) = g.pointer("/Service/Name").and_then(Value::as_str) else {
                continue;
            };
            let sni = meshgate_ca::service_sni(svc, "default", &self.datacenter, &td)
                .to_ascii_lowercase();
            wanted.insert(sni, (svc.to_string(), link_settings(g)));
        }
        let mut added = Vec::new();
        let mut removed = Vec::new();
        {
            let mut by_sni = self.by_sni.write();
            by_sni.retain(|sni, l| {
                let keep = wanted.contains_key(sni);
                if !keep {
                    removed.push(l.name.clone());
                    self.resolver.remove(sni);
                }
                keep
            });
            for (sni, (svc, settings)) in wanted {
                if let Some(l) = by_sni.get(&sni) {
                    *l.settings.write() = settings;
                    continue;
                }
                let l = self.link(&svc, &sni, settings);
                added.push(svc);
                by_sni.insert(sni, l);
            }
        }
        for l in self.by_sni.read().values() {
            l.refresh_origination();
        }
        self.services_loaded.store(true, Relaxed);
        if !added.is_empty() || !removed.is_empty() {
            info!(gateway = %self.name, added = ?added, removed = ?removed, "linked services changed");
        }
    }

    fn link(self: &Arc<Self>, svc: &str, sni: &str, settings: LinkSettings) -> Arc<Linked> {
        let mut tasks = Tasks::default();
        let (intentions, t) = mesh::watch_intentions(&self.client, svc);
        tasks.push(t);
        let (mut leaf, t) = mesh::watch_leaf(&self.client, svc);
        tasks.push(t);
        let (mut inst, t) =
            mesh::watch_instances(&self.client, format!("/v1/health/service/{svc}?passing"));
        tasks.push(t);
        let (mut defaults, t) = mesh::watch_defaults(&self.client, svc);
        tasks.push(t);
        let linked = Arc::new(Linked {
            name: svc.to_string(),
            sni: sni.to_string(),
            settings: RwLock::new(settings),
            balancer: Balancer::default(),
            defaults: RwLock::new(Defaults::default()),
            intentions,
            origination: RwLock::new(Origination::default()),
            has_leaf: std::sync::atomic::AtomicBool::new(false),
            leaf_expiry: RwLock::new(String::new()),
            leaf_serial: RwLock::new(String::new()),
            counters: self.metrics.service(svc),
            tasks: parking_lot::Mutex::new(Tasks::default()),
        });
        // Follow the leaf, the instances and the defaults. The tasks hold
        // only weak references, and stop with the link.
        let weak = Arc::downgrade(&linked);
        let resolver = self.resolver.clone();
        let sni_owned = sni.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let v = leaf.borrow_and_update().clone();
                if let (Some(l), Some(linked)) = (v, weak.upgrade()) {
                    resolver.insert_key(&sni_owned, l.key.clone());
                    linked.has_leaf.store(true, Relaxed);
                    *linked.leaf_expiry.write() = l.valid_before.clone();
                    *linked.leaf_serial.write() = l.serial.clone();
                    debug!(service = %linked.name, serial = %l.serial, "leaf certificate in use");
                }
                if leaf.changed().await.is_err() {
                    return;
                }
            }
        }));
        let weak = Arc::downgrade(&linked);
        tasks.push(tokio::spawn(async move {
            loop {
                let v = inst.borrow_and_update().clone();
                if let (Some(list), Some(linked)) = (v, weak.upgrade()) {
                    linked.balancer.update(&list);
                }
                if inst.changed().await.is_err() {
                    return;
                }
            }
        }));
        let weak = Arc::downgrade(&linked);
        tasks.push(tokio::spawn(async move {
            loop {
                let v = defaults.borrow_and_update().clone();
                if let (Some(d), Some(linked)) = (v, weak.upgrade()) {
                    *linked.defaults.write() = d;
                }
                if defaults.changed().await.is_err() {
                    return;
                }
            }
        }));
        // Hand the tasks to the link so they end with it.
        *linked.tasks.lock() = tasks;
        linked
    }

    /// Whether the gateway can serve: TLS ready, the linked services known,
    /// and each of them has its leaf.
    pub fn ready(&self) -> Result<(), String> {
        if self.server.read().is_none() {
            return Err("waiting for the CA roots".into());
        }
        if !self.services_loaded.load(Relaxed) {
            return Err("waiting for the linked services".into());
        }
        for l in self.by_sni.read().values() {
            if !l.has_leaf.load(Relaxed) {
                return Err(format!("waiting for the leaf certificate of {}", l.name));
            }
        }
        Ok(())
    }

    /// `/config`.
    pub fn config_json(&self) -> Value {
        let mut services: Vec<Value> = self
            .by_sni
            .read()
            .values()
            .map(|l| l.config_json())
            .collect();
        services.sort_by(|a, b| a["Service"].as_str().cmp(&b["Service"].as_str()));
        json!({
            "Mode": "terminating-gateway",
            "Gateway": self.name,
            "Datacenter": self.datacenter,
            "TrustDomain": self.roots.borrow().as_ref().map(|r| r.trust_domain.clone()),
            "Services": services,
            "TLS": {
                "Incoming": mesh::settings_json(
                    &self.mesh_tls.borrow().clone().unwrap_or_default().incoming
                ),
            },
        })
    }

    /// Accepts connections until `drain` says stop.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        drain: Drain,
        workers: Arc<crate::workers::Workers>,
    ) {
        let mut stop = drain.signal();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let g = self.clone();
                        workers.spawn(stream, false, move |s| g.handle(s, peer));
                    }
                    Err(e) => {
                        warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = crate::stopped(&mut stop) => return,
            }
        }
    }

    async fn handle(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        // One deadline for the first byte and the whole handshake.
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        if crate::is_probe(&stream, deadline).await {
            debug!(%peer, "closed without sending anything (a TCP health check)");
            return;
        }
        // The access log line is written when `log` drops, however the
        // connection ends.
        let mut log = self.access.start(peer, &stream);
        let Some(acceptor) = self.server.read().clone() else {
            log.refused("NR", "no TLS configuration yet");
            debug!(%peer, "refused: no TLS configuration yet");
            return;
        };
        // The SNI first, as Envoy matches a filter chain: a name no linked
        // service has is refused before any handshake work (and logged with
        // it).
        let hello = async {
            let start =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                    .await?;
            let sni = start
                .client_hello()
                .server_name()
                .unwrap_or("")
                .to_ascii_lowercase();
            Ok::<_, std::io::Error>((start, sni))
        };
        let refused = |log: &mut Record, why: &str| {
            self.metrics
                .service("")
                .handshake_failures
                .fetch_add(1, Relaxed);
            warn!(%peer, "mesh TLS handshake refused: {why}");
            listener_refusal(log, why);
        };
        let (start, sni) =
            match crate::handshake_step(tokio::time::timeout_at(deadline, hello).await) {
                Ok(x) => x,
                Err(why) => return refused(&mut log, &why),
            };
        if let Some(e) = log.entry() {
            e.server_name = sni.clone();
        }
        let Some(linked) = self.by_sni.read().get(&sni).cloned() else {
            self.metrics
                .service("")
                .handshake_failures
                .fetch_add(1, Relaxed);
            warn!(%peer, sni = %sni, "refused: no linked service for this SNI");
            listener_refusal(&mut log, "");
            log.refused("NR", "no linked service for this SNI");
            return;
        };
        let accept = start.into_stream(acceptor.config().clone());
        let tls = match crate::handshake_step(tokio::time::timeout_at(deadline, accept).await) {
            Ok(t) => t,
            Err(why) => return refused(&mut log, &why),
        };
        let caller = {
            let (_, conn) = tls.get_ref();
            let caller = meshgate_ca::tls::peer_service_id(conn);
            if let Some(e) = log.entry() {
                e.tls_version = crate::access_log::tls_version(conn.protocol_version());
                e.peer_uri = caller.as_ref().map(|c| c.uri()).unwrap_or_default();
            }
            caller
        };
        if let Some(e) = log.entry() {
            e.cluster = linked.sni.clone();
        }
        let Some(caller) = caller else {
            linked.counters.handshake_failures.fetch_add(1, Relaxed);
            warn!(%peer, service = %linked.name, "refused: the client certificate has no service identity");
            log.refused("-", "the client certificate has no service identity");
            return;
        };
        let set = linked.intentions.borrow().clone();
        let Some(set) = set else {
            linked.counters.authz_denied.fetch_add(1, Relaxed);
            warn!(%peer, source = %caller.service, service = %linked.name, "refused: intentions not loaded yet");
            log.refused("-", crate::access_log::DENIED);
            return;
        };
        let (allowed, reason) = set.decide(&caller.service, &linked.name);
        if !allowed {
            linked.counters.authz_denied.fetch_add(1, Relaxed);
            warn!(%peer, source = %caller.service, service = %linked.name, "connection denied: {reason}");
            log.refused("-", crate::access_log::DENIED);
            return;
        }
        if linked.balancer.is_empty() {
            linked.counters.no_healthy_refused.fetch_add(1, Relaxed);
            warn!(%peer, source = %caller.service, service = %linked.name,
                  "refused: no instance of {} passes its health checks", linked.name);
            log.refused("UH", "");
            return;
        }
        let defaults = linked.defaults.read().clone();
        let Some(_active) = ActiveGuard::within(linked.counters.clone(), defaults.max_connections)
        else {
            linked.counters.limit_refused.fetch_add(1, Relaxed);
            warn!(%peer, source = %caller.service, service = %linked.name,
                      "refused: {} connections already open (the service's connection limit)",
                      defaults.max_connections.unwrap_or(0));
            log.refused("UO", "");
            return;
        };
        match self.carry(tls, &linked, &defaults, &mut log).await {
            Ok(()) => {}
            Err(Failure::Setup(e)) => {
                warn!(%peer, source = %caller.service, service = %linked.name, "connection failed: {e}");
                log.upstream_failed("UF", &e);
            }
            Err(Failure::Relay(e)) => {
                debug!(%peer, source = %caller.service, service = %linked.name, "connection ended: {e}");
            }
        }
    }

    async fn carry<S>(
        &self,
        mut down: S,
        linked: &Linked,
        defaults: &Defaults,
        log: &mut Record,
    ) -> Result<(), Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let origination = linked.origination.read().config.clone();
        let origination_error = linked.origination.read().error.clone();
        let settings = linked.settings.read().clone();
        if origination.is_none() && !settings.ca_file.is_empty() {
            linked.counters.upstream_tls_failures.fetch_add(1, Relaxed);
            return Err(origination_error
                .unwrap_or_else(|| "upstream TLS settings not loaded".into())
                .into());
        }
        let pg = defaults.is_postgres();
        // PostgreSQL clients asking for TLS inside the mesh are told no: the
        // gateway encrypts towards the server itself.
        let head = if pg && origination.is_some() {
            // A client that sends nothing does not hold the slot forever.
            let startup = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                crate::postgres::decline_client_encryption(&mut down),
            )
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("timed out")));
            Some(
                startup
                    .map_err(|e| Failure::Relay(format!("reading the PostgreSQL startup: {e}")))?,
            )
        } else {
            None
        };
        // The client's first message, read here, is carried too.
        let head_len = head.as_ref().map_or(0, |h| h.len() as u64);
        let timeout = defaults
            .upstream
            .connect_timeout
            .unwrap_or(Duration::from_secs(5));
        let (mut up, _ep, label) = relay::connect(
            &linked.balancer,
            &self.dns,
            timeout,
            &linked.counters,
            defaults.upstream.outlier.as_ref(),
        )
        .await
        .map_err(|e| format!("no instance of {} answers: {e}", linked.name))?;
        if let Some(e) = log.entry() {
            e.upstream_host = label.clone();
            e.upstream_local = up.local_addr().ok();
        }
        let (carried, result) = match origination {
            None => relay::relay(down, up, &linked.counters).await,
            Some(cfg) => {
                if pg {
                    // An instance that accepts and never answers does not
                    // hold the slot forever either.
                    let answer =
                        tokio::time::timeout(timeout, crate::postgres::request_server_tls(&mut up))
                            .await
                            .unwrap_or_else(|_| {
                                Err(format!("no answer to SSLRequest within {timeout:?}"))
                            });
                    if let Err(e) = answer {
                        linked.counters.upstream_tls_failures.fetch_add(1, Relaxed);
                        return Err(Failure::Setup(format!("{label}: {e}")));
                    }
                }
                let name = if settings.sni.is_empty() {
                    // No SNI is sent (the config says so); the name only
                    // satisfies the API.
                    ServerName::try_from("upstream.invalid".to_string())
                } else {
                    ServerName::try_from(settings.sni.clone())
                }
                .map_err(|e| format!("SNI {:?}: {e}", settings.sni))?;
                let mut tls = match tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    TlsConnector::from(cfg).connect(name, up),
                )
                .await
                {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        linked.counters.upstream_tls_failures.fetch_add(1, Relaxed);
                        return Err(Failure::Setup(format!("TLS to {label} failed: {e}")));
                    }
                    Err(_) => {
                        linked.counters.upstream_tls_failures.fetch_add(1, Relaxed);
                        return Err(Failure::Setup(format!("TLS to {label} timed out")));
                    }
                };
                if let Some(h) = head {
                    tls.write_all(&h)
                        .await
                        .map_err(|e| format!("{label}: {e}"))?;
                }
                if pg {
                    crate::postgres::relay(down, tls, &linked.counters).await
                } else {
                    relay::relay(down, tls, &linked.counters).await
                }
            }
        };
        if let Some(e) = log.entry() {
            e.bytes_received = carried.up + head_len;
            e.bytes_sent = carried.down;
        }
        result.map_err(|e| Failure::Relay(format!("relay to {label}: {e}")))
    }
}

/// Service meta key where a registered gateway says where its admin endpoint
/// listens.
pub const ADMIN_META: &str = "meshgate-admin";

/// Registers the gateway service with the local agent (`-register`): Kind
/// `terminating-gateway`, a TCP check on its address, and the admin address
/// in its meta. The registration outlives the process, as in the compatible
/// tooling.
pub async fn register(
    client: &AgentClient,
    id: &str,
    name: &str,
    address: &str,
    port: u16,
    deregister_after: &str,
    admin: Option<&str>,
) -> Result<(), ProxyError> {
    let check_addr = if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    };
    let mut meta = serde_json::Map::new();
    if let Some(a) = admin {
        meta.insert(ADMIN_META.into(), json!(a));
    }
    let body = json!({
        "ID": id,
        "Name": name,
        "Kind": "terminating-gateway",
        "Meta": meta,
        "Address": address,
        "Port": port,
        // The listener is bound before the registration, so the check starts
        // passing: mesh clients can use the gateway as soon as it is ready,
        // not only after its first check ran.
        "Check": {
            "Name": format!("{name} listening"),
            "TCP": check_addr,
            "Interval": "10s",
            "Status": "passing",
            "DeregisterCriticalServiceAfter": deregister_after,
        },
    });
    client.put("/v1/agent/service/register", &body).await?;
    Ok(())
}
