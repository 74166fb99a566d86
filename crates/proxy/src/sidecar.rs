//! The sidecar proxy: one local listener per upstream, carrying connections
//! over mTLS to a healthy instance of the destination (its sidecar, or the
//! terminating gateway it is linked to), and a public mTLS listener that
//! checks intentions and forwards to the local service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use meshgate_ca::ServiceId;
use meshgate_ca::tls::ClientAuth;
use meshgate_config_entries::AccessLogsConfig;
use parking_lot::RwLock;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

use crate::access_log::{AccessLog, listener_refusal};
use crate::agent::{AgentClient, Blocking, Tasks, watch as watch_path};
use crate::mesh::{self, ChainTarget, Defaults, Global, IntentionSet, LeafCert, MeshTls, Roots};
use crate::metrics::{ActiveGuard, Counters, Metrics};
use crate::relay::{self, Balancer, Resolver};
use crate::workers::Workers;
use crate::{Drain, HANDSHAKE_TIMEOUT, ProxyError, bind};

/// One upstream of the proxy registration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamDef {
    pub destination: String,
    pub datacenter: String,
    pub bind_address: String,
    pub bind_port: u16,
}

/// What the sidecar's registration says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub id: String,
    pub service: String,
    pub address: String,
    pub port: u16,
    pub local_address: String,
    pub local_port: u16,
    pub upstreams: Vec<UpstreamDef>,
    /// `Proxy.Config.local_connect_timeout_ms`.
    pub local_connect_timeout: Option<Duration>,
    /// `Proxy.Config.handshake_timeout_ms`: the public listener's TLS
    /// handshake timeout.
    pub handshake_timeout: Option<Duration>,
    /// `Proxy.AccessLogs`: this proxy's own access logs (over
    /// proxy-defaults').
    pub access_logs: Option<AccessLogsConfig>,
    /// Upstreams' `Config.connect_timeout_ms`, by local bind address and
    /// port.
    pub upstream_timeouts: Vec<((String, u16), Duration)>,
}

/// A number of milliseconds from a proxy `Config` (a number or a string,
/// as Consul decodes it); zero or unreadable: unset.
pub fn config_ms(config: &Value, key: &str) -> Option<Duration> {
    let v = config.get(key)?;
    let ms = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (ms >= 1.0).then(|| Duration::from_millis(ms as u64))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Reads a `connect-proxy` registration (`/v1/agent/service/:id`).
pub fn parse_registration(v: &Value) -> Result<Registration, String> {
    if s(v, "Kind") != "connect-proxy" {
        return Err(format!(
            "service {:?} is not a connect-proxy (Kind {:?})",
            s(v, "ID"),
            s(v, "Kind")
        ));
    }
    let proxy = v.get("Proxy").cloned().unwrap_or(Value::Null);
    let service = s(&proxy, "DestinationServiceName").to_string();
    if service.is_empty() {
        return Err("the proxy registration has no Proxy.DestinationServiceName".into());
    }
    let mut upstreams = Vec::new();
    let mut upstream_timeouts = Vec::new();
    for u in proxy
        .get("Upstreams")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let t = s(u, "DestinationType");
        if !t.is_empty() && t != "service" {
            warn!(
                "upstream {:?} of type {t:?} is not supported; skipped",
                s(u, "DestinationName")
            );
            continue;
        }
        let port = u.get("LocalBindPort").and_then(Value::as_u64).unwrap_or(0) as u16;
        if port == 0 {
            warn!(
                "upstream {:?} has no LocalBindPort; skipped",
                s(u, "DestinationName")
            );
            continue;
        }
        let bind_address = match s(u, "LocalBindAddress") {
            "" => "127.0.0.1".to_string(),
            a => a.to_string(),
        };
        if let Some(t) = u
            .get("Config")
            .and_then(|c| config_ms(c, "connect_timeout_ms"))
        {
            upstream_timeouts.push(((bind_address.clone(), port), t));
        }
        upstreams.push(UpstreamDef {
            destination: s(u, "DestinationName").to_string(),
            datacenter: s(u, "Datacenter").to_string(),
            bind_address,
            bind_port: port,
        });
    }
    // `Proxy.Config`: `bind_address` / `bind_port` move the public listener
    // off the registered address (which mesh clients still dial).
    let config = proxy.get("Config").cloned().unwrap_or(Value::Null);
    let bind_port = match config.get("bind_port") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let port = match v {
                Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
                Value::String(p) => p.trim().parse::<u16>().ok(),
                _ => None,
            };
            if port.is_none() {
                warn!("Proxy.Config.bind_port {v} is not a port; the registered port is used");
            }
            port
        }
    };
    Ok(Registration {
        id: s(v, "ID").to_string(),
        service,
        address: match (s(&config, "bind_address"), s(v, "Address")) {
            (b, _) if !b.is_empty() => b.to_string(),
            (_, "") => "0.0.0.0".to_string(),
            (_, a) => a.to_string(),
        },
        port: bind_port
            .filter(|p| *p > 0)
            .unwrap_or(v.get("Port").and_then(Value::as_u64).unwrap_or(0) as u16),
        local_connect_timeout: config_ms(&config, "local_connect_timeout_ms"),
        upstream_timeouts,
        access_logs: match proxy.get("AccessLogs") {
            None | Some(Value::Null) => None,
            Some(v) => match serde_json::from_value::<AccessLogsConfig>(v.clone()) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!("Proxy.AccessLogs of the registration: {e}; proxy-defaults' apply");
                    None
                }
            },
        },
        handshake_timeout: config_ms(&config, "handshake_timeout_ms"),
        local_address: match s(&proxy, "LocalServiceAddress") {
            "" => "127.0.0.1".to_string(),
            a => a.to_string(),
        },
        local_port: proxy
            .get("LocalServicePort")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u16,
        upstreams,
    })
}

struct Upstream {
    def: UpstreamDef,
    balancer: Balancer,
    /// The chain target connections go to now (the first of the chain's
    /// targets with a passing instance).
    route: RwLock<ChainTarget>,
    /// Whether the instances of the upstream are known (the sidecar is not
    /// ready before).
    known: std::sync::atomic::AtomicBool,
    counters: Arc<Counters>,
    tls: RwLock<Option<(String, Arc<ClientConfig>)>>,
    tasks: parking_lot::Mutex<Tasks>,
}

/// The sidecar's shared state.
pub struct Sidecar {
    client: AgentClient,
    pub reg: RwLock<Registration>,
    pub datacenter: String,
    leaf: watch::Receiver<Option<LeafCert>>,
    roots: watch::Receiver<Option<Roots>>,
    mesh_tls: watch::Receiver<Option<MeshTls>>,
    /// The `proxy-defaults` entry.
    global: watch::Receiver<Option<Global>>,
    access: Arc<AccessLog>,
    intentions: watch::Receiver<Option<IntentionSet>>,
    /// The service's own `service-defaults` (inbound limit, local connect
    /// timeout).
    own: watch::Receiver<Option<Defaults>>,
    inbound: RwLock<Option<TlsAcceptor>>,
    /// Where the public listener listens (bound at start).
    public: RwLock<String>,
    upstreams: RwLock<HashMap<(String, u16), Arc<Upstream>>>,
    pub metrics: Arc<Metrics>,
    dns: Resolver,
    drain: Drain,
    workers: Arc<Workers>,
}

impl Sidecar {
    /// Starts the sidecar for registration `reg`.
    #[allow(clippy::too_many_arguments, reason = "wiring of independent parts")]
    pub async fn start(
        client: AgentClient,
        reg: Registration,
        datacenter: &str,
        roots: watch::Receiver<Option<Roots>>,
        mesh_tls: watch::Receiver<Option<MeshTls>>,
        global: watch::Receiver<Option<Global>>,
        access: Arc<AccessLog>,
        metrics: Arc<Metrics>,
        drain: Drain,
        workers: Arc<Workers>,
        tasks: &mut Tasks,
    ) -> Result<Arc<Sidecar>, ProxyError> {
        let (leaf, t) = mesh::watch_leaf(&client, &reg.service);
        tasks.push(t);
        let (intentions, t) = mesh::watch_intentions(&client, &reg.service);
        tasks.push(t);
        let (own, t) = mesh::watch_defaults(&client, &reg.service);
        tasks.push(t);
        let sc = Arc::new(Sidecar {
            client: client.clone(),
            reg: RwLock::new(reg.clone()),
            datacenter: datacenter.to_string(),
            leaf,
            roots,
            mesh_tls,
            global,
            access,
            intentions,
            own,
            inbound: RwLock::new(None),
            public: RwLock::new(format!("{}:{}", reg.address, reg.port)),
            upstreams: RwLock::new(HashMap::new()),
            metrics,
            dns: Resolver::default(),
            drain,
            workers,
        });
        // Inbound TLS follows the leaf, the roots and the mesh's TLS.
        let s2 = sc.clone();
        tasks.push(tokio::spawn(async move {
            let mut leaf = s2.leaf.clone();
            let mut roots = s2.roots.clone();
            let mut mesh_tls = s2.mesh_tls.clone();
            loop {
                let l = leaf.borrow_and_update().clone();
                let r = roots.borrow_and_update().clone();
                let m = mesh_tls.borrow_and_update().clone().unwrap_or_default();
                if let (Some(l), Some(r)) = (l, r) {
                    match meshgate_ca::tls::server_config(
                        &l.cert_pem,
                        &l.key_pem,
                        &r.pems,
                        ClientAuth::Required,
                        &m.incoming,
                    ) {
                        Ok(cfg) => {
                            *s2.inbound.write() = Some(TlsAcceptor::from(cfg));
                            debug!(serial = %l.serial, "inbound TLS uses the current leaf");
                        }
                        Err(e) => warn!("inbound TLS configuration: {e}"),
                    }
                }
                tokio::select! {
                    r = leaf.changed() => if r.is_err() { return },
                    r = roots.changed() => if r.is_err() { return },
                    r = mesh_tls.changed() => if r.is_err() { return },
                }
            }
        }));
        // The registration may change (upstreams added or removed).
        let (mut regs, t) = watch_path(
            client,
            format!("/v1/agent/service/{}", reg.id),
            Blocking::Hash,
            |a| {
                if a.status != reqwest::StatusCode::OK {
                    return Err(format!(
                        "{} {}",
                        a.status.as_u16(),
                        a.body.as_str().unwrap_or("")
                    ));
                }
                parse_registration(&a.body).map(Some)
            },
        );
        tasks.push(t);
        sc.reconcile(&reg).await?;
        let s2 = sc.clone();
        tasks.push(tokio::spawn(async move {
            while regs.changed().await.is_ok() {
                let r = regs.borrow_and_update().clone();
                if let Some(r) = r
                    && let Err(e) = s2.reconcile(&r).await
                {
                    warn!("applying the new registration: {e}");
                }
            }
        }));
        Ok(sc)
    }

    async fn reconcile(self: &Arc<Self>, reg: &Registration) -> Result<(), ProxyError> {
        *self.reg.write() = reg.clone();
        for w in self.access.set_local(reg.access_logs.as_ref()) {
            warn!("{w}");
        }
        let wanted: HashMap<(String, u16), UpstreamDef> = reg
            .upstreams
            .iter()
            .map(|u| ((u.bind_address.clone(), u.bind_port), u.clone()))
            .collect();
        let stale: Vec<(String, u16)> = self
            .upstreams
            .read()
            .iter()
            .filter(|(k, u)| wanted.get(*k) != Some(&u.def))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            let removed = self.upstreams.write().remove(&k);
            if let Some(u) = removed {
                // The listener closes now, whatever still holds the
                // upstream (its open connections go on), so that the port
                // can be bound again at once.
                let tasks = std::mem::take(&mut *u.tasks.lock());
                tasks.stop().await;
                info!(upstream = %u.def.destination, "upstream listener {}:{} closed", k.0, k.1);
            }
        }
        for (k, def) in wanted {
            if self.upstreams.read().contains_key(&k) {
                continue;
            }
            let listener = bind(&def.bind_address, def.bind_port).await?;
            let mut tasks = Tasks::default();
            let up = Arc::new(Upstream {
                counters: self.metrics.service(&def.destination),
                def: def.clone(),
                balancer: Balancer::default(),
                route: RwLock::new(ChainTarget::plain(&def.destination, &def.datacenter)),
                known: std::sync::atomic::AtomicBool::new(false),
                tls: RwLock::new(None),
                tasks: parking_lot::Mutex::new(Tasks::default()),
            });
            tasks.push(tokio::spawn(follow_chain(
                self.client.clone(),
                self.datacenter.clone(),
                Arc::downgrade(&up),
            )));
            let me = self.clone();
            let weak = Arc::downgrade(&up);
            let mut stop = self.drain.signal();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, peer)) => {
                                let _ = stream.set_nodelay(true);
                                let Some(up) = weak.upgrade() else { return };
                                let me = me.clone();
                                let workers = me.workers.clone();
                                let spread = me.own.borrow().as_ref().is_some_and(|d| {
                                    d.for_upstream(&up.def.destination).exact_balance
                                });
                                workers.spawn(stream, spread, move |s| me.outbound(s, peer, up));
                            }
                            Err(e) => {
                                warn!("accept: {e}");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        },
                        _ = crate::stopped(&mut stop) => return,
                    }
                }
            }));
            info!(upstream = %def.destination, "listening for {} on {}:{}", def.destination, k.0, k.1);
            *up.tasks.lock() = tasks;
            self.upstreams.write().insert(k, up);
        }
        Ok(())
    }

    /// The mTLS client config for an upstream, rebuilt when the leaf, the
    /// roots or the mesh's outgoing TLS changed.
    fn client_tls(&self, up: &Upstream) -> Result<(Arc<ClientConfig>, String), String> {
        let leaf = self
            .leaf
            .borrow()
            .clone()
            .ok_or("no leaf certificate yet")?;
        let roots = self.roots.borrow().clone().ok_or("no CA roots yet")?;
        let generation = self.mesh_tls.borrow().as_ref().map_or(0, |m| m.generation);
        let route = up.route.read().clone();
        let dc = if route.datacenter.is_empty() {
            self.datacenter.clone()
        } else {
            route.datacenter.clone()
        };
        let key = format!(
            "{}|{}|{}|{}|{dc}|{generation}",
            leaf.serial,
            roots.pems.iter().map(String::len).sum::<usize>(),
            route.service,
            route.subset
        );
        let sni = meshgate_ca::service_sni_with_subset(
            &route.subset,
            &route.service,
            "default",
            &dc,
            &roots.trust_domain,
        );
        if let Some((k, cfg)) = up.tls.read().as_ref()
            && *k == key
        {
            return Ok((cfg.clone(), sni));
        }
        let expected = ServiceId::new(&roots.trust_domain, "default", &dc, &route.service);
        let outgoing = self
            .mesh_tls
            .borrow()
            .as_ref()
            .map(|m| m.outgoing.clone())
            .unwrap_or_default();
        let cfg = meshgate_ca::tls::client_config(
            &leaf.cert_pem,
            &leaf.key_pem,
            &roots.pems,
            expected,
            &outgoing,
        )
        .map_err(|e| format!("mesh TLS client configuration: {e}"))?;
        *up.tls.write() = Some((key, cfg.clone()));
        Ok((cfg, sni))
    }

    async fn outbound(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, up: Arc<Upstream>) {
        // Written when dropped, however the connection ends.
        let mut log = self.access.start(peer, &stream);
        let dest = up.def.destination.clone();
        // This service's UpstreamConfig for the upstream: its limit and its
        // passive health check.
        let settings = self
            .own
            .borrow()
            .as_ref()
            .map(|d| d.for_upstream(&dest).clone())
            .unwrap_or_default();
        let Some(_active) = ActiveGuard::within(up.counters.clone(), settings.max_connections)
        else {
            up.counters.limit_refused.fetch_add(1, Relaxed);
            warn!(%peer, upstream = %dest, "refused: {} connections already open to {dest} (UpstreamConfig limits)",
                  settings.max_connections.unwrap_or(0));
            log.refused("UO", "");
            return;
        };
        let (cfg, sni) = match self.client_tls(&up) {
            Ok(x) => x,
            Err(e) => {
                warn!(%peer, upstream = %dest, "{e}");
                log.upstream_failed("UF", &e);
                return;
            }
        };
        if let Some(e) = log.entry() {
            e.cluster = sni.clone();
        }
        let connect_timeout = self.connect_timeout(&up, settings.connect_timeout);
        let (tcp, _ep, label) = match relay::connect(
            &up.balancer,
            &self.dns,
            connect_timeout,
            &up.counters,
            settings.outlier.as_ref(),
        )
        .await
        {
            Ok(x) => x,
            Err(e) => {
                warn!(%peer, upstream = %dest, "no instance of {dest} answers: {e}");
                let flags = if up.balancer.is_empty() { "UH" } else { "UF" };
                log.upstream_failed(flags, &e);
                return;
            }
        };
        if let Some(e) = log.entry() {
            e.upstream_host = label.clone();
            e.upstream_local = tcp.local_addr().ok();
        }
        let name = match ServerName::try_from(sni.clone()) {
            Ok(n) => n,
            Err(e) => {
                warn!(upstream = %dest, "SNI {sni:?}: {e}");
                log.upstream_failed("UF", &e.to_string());
                return;
            }
        };
        let tls = match tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            TlsConnector::from(cfg).connect(name, tcp),
        )
        .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                up.counters.handshake_failures.fetch_add(1, Relaxed);
                warn!(%peer, upstream = %dest, "mesh TLS to {label} failed: {e}");
                log.upstream_failed("UF", &format!("TLS error: {e}"));
                return;
            }
            Err(_) => {
                up.counters.handshake_failures.fetch_add(1, Relaxed);
                warn!(%peer, upstream = %dest, "mesh TLS to {label} timed out");
                log.upstream_failed("UF", "TLS handshake timed out");
                return;
            }
        };
        let (carried, result) = relay::relay(stream, tls, &up.counters).await;
        if let Some(e) = log.entry() {
            e.bytes_received = carried.up;
            e.bytes_sent = carried.down;
        }
        if let Err(e) = result {
            debug!(%peer, upstream = %dest, "relay ended: {e}");
        }
    }

    /// Serves the public mTLS listener until the drain starts.
    pub async fn serve_inbound(self: Arc<Self>, listener: TcpListener) {
        if let Ok(a) = listener.local_addr() {
            *self.public.write() = a.to_string();
        }
        let mut stop = self.drain.signal();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let me = self.clone();
                        let workers = me.workers.clone();
                        let spread = me.own.borrow().as_ref().is_some_and(|d| d.exact_balance_inbound);
                        workers.spawn(stream, spread, move |s| me.inbound(s, peer));
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

    async fn inbound(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        // One deadline for the first byte and the whole handshake
        // (`handshake_timeout_ms`).
        let deadline = tokio::time::Instant::now() + self.handshake_timeout();
        if crate::is_probe(&stream, deadline).await {
            debug!(%peer, "closed without sending anything (a TCP health check)");
            return;
        }
        let (service, local) = {
            let r = self.reg.read();
            (r.service.clone(), (r.local_address.clone(), r.local_port))
        };
        let counters = self.metrics.service(&format!("inbound:{service}"));
        // Written when dropped, however the connection ends.
        let mut log = self.access.start(peer, &stream);
        let target = format!("{}:{}", local.0, local.1);
        let Some(acceptor) = self.inbound.read().clone() else {
            debug!(%peer, "refused: no TLS configuration yet");
            log.refused("NR", "no TLS configuration yet");
            return;
        };
        let tls = match crate::handshake_step(
            tokio::time::timeout_at(deadline, acceptor.accept(stream)).await,
        ) {
            Ok(t) => t,
            Err(why) => {
                counters.handshake_failures.fetch_add(1, Relaxed);
                warn!(%peer, "mesh TLS handshake refused: {why}");
                listener_refusal(&mut log, &why);
                return;
            }
        };
        let caller = meshgate_ca::tls::peer_service_id(tls.get_ref().1);
        if let Some(e) = log.entry() {
            let conn = tls.get_ref().1;
            e.server_name = conn.server_name().unwrap_or("").to_string();
            e.tls_version = crate::access_log::tls_version(conn.protocol_version());
            e.peer_uri = caller.as_ref().map(|c| c.uri()).unwrap_or_default();
        }
        let Some(caller) = caller else {
            counters.handshake_failures.fetch_add(1, Relaxed);
            warn!(%peer, "refused: the client certificate has no service identity");
            log.refused("-", "the client certificate has no service identity");
            return;
        };
        let set = self.intentions.borrow().clone();
        let (allowed, reason) = match set {
            Some(set) => set.decide(&caller.service, &service),
            None => (false, "intentions not loaded yet".to_string()),
        };
        if !allowed {
            counters.authz_denied.fetch_add(1, Relaxed);
            warn!(%peer, source = %caller.service, service = %service, "connection denied: {reason}");
            log.refused("-", crate::access_log::DENIED);
            return;
        }
        if let Some(e) = log.entry() {
            e.cluster = "local_app".into();
            e.upstream_host = target.clone();
        }
        let (max_inbound, own_timeout) = self
            .own
            .borrow()
            .as_ref()
            .map_or((None, None), |d| (d.max_inbound, d.local_connect_timeout));
        let Some(_active) = ActiveGuard::within(counters.clone(), max_inbound) else {
            counters.limit_refused.fetch_add(1, Relaxed);
            warn!(%peer, source = %caller.service, service = %service,
                  "refused: {} connections already open (MaxInboundConnections)",
                  max_inbound.unwrap_or(0));
            log.refused("UO", "");
            return;
        };
        let timeout = self.local_connect_timeout(own_timeout);
        let up = match tokio::time::timeout(timeout, TcpStream::connect(&target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                counters.connect_errors.fetch_add(1, Relaxed);
                warn!(%peer, "local service {target}: {e}");
                log.upstream_failed("UF", &e.to_string());
                return;
            }
            Err(_) => {
                counters.connect_errors.fetch_add(1, Relaxed);
                warn!(%peer, "local service {target}: connect timed out after {timeout:?}");
                log.upstream_failed("UF", "connect timed out");
                return;
            }
        };
        let _ = up.set_nodelay(true);
        if let Some(e) = log.entry() {
            e.upstream_local = up.local_addr().ok();
        }
        let (carried, result) = relay::relay(tls, up, &counters).await;
        if let Some(e) = log.entry() {
            e.bytes_received = carried.up;
            e.bytes_sent = carried.down;
        }
        if let Err(e) = result {
            debug!(%peer, "relay ended: {e}");
        }
    }

    /// The connect timeout to the local service: the registration's
    /// `Proxy.Config.local_connect_timeout_ms`, else the service's
    /// `LocalConnectTimeoutMs`, else proxy-defaults' `Config` (Consul's order
    /// of precedence), else 5 s.
    fn local_connect_timeout(&self, own: Option<Duration>) -> Duration {
        let global = self
            .global
            .borrow()
            .as_ref()
            .and_then(|g| g.local_connect_timeout);
        self.reg
            .read()
            .local_connect_timeout
            .or(own)
            .or(global)
            .unwrap_or(Duration::from_secs(5))
    }

    /// The connect timeout to an upstream's instances: its registration
    /// `Config.connect_timeout_ms`, else this service's `UpstreamConfig`
    /// `ConnectTimeoutMs` (`configured`), else the discovery chain's
    /// (`service-resolver` `ConnectTimeout`, 5 s by default) — Consul's
    /// order: an upstream's configuration overrides the resolver's.
    fn connect_timeout(&self, up: &Upstream, configured: Option<Duration>) -> Duration {
        let key = (up.def.bind_address.as_str(), up.def.bind_port);
        let own = self
            .reg
            .read()
            .upstream_timeouts
            .iter()
            .find(|((a, p), _)| (a.as_str(), *p) == key)
            .map(|(_, t)| *t);
        own.or(configured)
            .unwrap_or_else(|| up.route.read().connect_timeout)
    }

    /// The public listener's TLS handshake timeout: the registration's
    /// `Proxy.Config.handshake_timeout_ms`, else proxy-defaults', else 10 s.
    fn handshake_timeout(&self) -> Duration {
        let global = self
            .global
            .borrow()
            .as_ref()
            .and_then(|g| g.handshake_timeout);
        self.reg
            .read()
            .handshake_timeout
            .or(global)
            .unwrap_or(HANDSHAKE_TIMEOUT)
    }

    /// Whether the sidecar can serve.
    pub fn ready(&self) -> Result<(), String> {
        if self.inbound.read().is_none() {
            return Err("waiting for the leaf certificate and the CA roots".into());
        }
        if self.intentions.borrow().is_none() {
            return Err("waiting for intentions".into());
        }
        if let Some(u) = self
            .upstreams
            .read()
            .values()
            .find(|u| !u.known.load(Relaxed))
        {
            return Err(format!(
                "waiting for the instances of upstream {}",
                u.def.destination
            ));
        }
        Ok(())
    }

    /// `/config`.
    pub fn config_json(&self) -> Value {
        let reg = self.reg.read().clone();
        let tls = self.mesh_tls.borrow().clone().unwrap_or_default();
        let own = self.own.borrow().clone().unwrap_or_default();
        let mut ups: Vec<Value> = self
            .upstreams
            .read()
            .values()
            .map(|u| {
                let settings = own.for_upstream(&u.def.destination);
                json!({
                    "DestinationName": u.def.destination,
                    "Datacenter": u.def.datacenter,
                    "LocalBind": format!("{}:{}", u.def.bind_address, u.def.bind_port),
                    "ConnectTimeoutMs": self
                        .connect_timeout(u, settings.connect_timeout)
                        .as_millis() as u64,
                    "Instances": u.balancer.labels(),
                    "SetAside": if settings.outlier.is_some() { u.balancer.ejected() } else { Vec::new() },
                    "ActiveConnections": u.counters.active.load(Relaxed),
                })
            })
            .collect();
        ups.sort_by(|a, b| a["LocalBind"].as_str().cmp(&b["LocalBind"].as_str()));
        json!({
            "Mode": "sidecar",
            "ProxyID": reg.id,
            "Service": reg.service,
            "Datacenter": self.datacenter,
            "PublicListener": self.public.read().clone(),
            "LocalService": format!("{}:{}", reg.local_address, reg.local_port),
            "LeafValidBefore": self.leaf.borrow().as_ref().map(|l| l.valid_before.clone()),
            "Intentions": self.intentions.borrow().as_ref().map(|i| i.list.len()),
            "Upstreams": ups,
            "MaxInboundConnections": own.max_inbound,
            "LocalConnectTimeoutMs": self.local_connect_timeout(own.local_connect_timeout).as_millis() as u64,
            "HandshakeTimeoutMs": self.handshake_timeout().as_millis() as u64,
            "TLS": {
                "Incoming": mesh::settings_json(&tls.incoming),
                "Outgoing": mesh::settings_json(&tls.outgoing),
            },
        })
    }
}

/// Keeps an upstream's instances and route in step with its discovery chain:
/// connections go to the first target (the resolver's, then its failover
/// targets in order) that has a passing instance.
async fn follow_chain(client: AgentClient, local_dc: String, up: Weak<Upstream>) {
    let (service, dc) = match up.upgrade() {
        Some(u) => (u.def.destination.clone(), u.def.datacenter.clone()),
        None => return,
    };
    let (mut chain, chain_task) = mesh::watch_chain(&client, &service, &dc, &local_dc);
    let mut _chain_task = Tasks::default();
    _chain_task.push(chain_task);
    // Instance watches by health path, kept across chain changes so that a
    // target that stays keeps its instances.
    let mut watches: HashMap<String, (mesh::InstancesRx, Tasks)> = HashMap::new();
    let mut targets: Vec<ChainTarget> = Vec::new();
    let mut current: Option<(ChainTarget, Vec<(String, u16)>)> = None;
    loop {
        let wanted = chain
            .borrow_and_update()
            .clone()
            .unwrap_or_else(|| vec![ChainTarget::plain(&service, &dc)]);
        if wanted != targets {
            targets = wanted;
            let paths: Vec<String> = targets.iter().map(ChainTarget::health_path).collect();
            watches.retain(|p, _| paths.contains(p));
            for p in paths {
                watches.entry(p.clone()).or_insert_with(|| {
                    let (rx, task) = mesh::watch_instances(&client, p);
                    let mut t = Tasks::default();
                    t.push(task);
                    (rx, t)
                });
            }
        }
        // The first target with a passing instance. A target whose instances
        // are not known yet (a new watch) holds the decision back; when every
        // target is known and empty, the primary (connections then fail fast
        // with a clear message).
        let mut pick = Some(0);
        for (i, t) in targets.iter().enumerate() {
            match watches
                .get_mut(&t.health_path())
                .map(|w| w.0.borrow_and_update().clone())
            {
                Some(Some(l)) if !l.is_empty() => {
                    pick = Some(i);
                    break;
                }
                Some(Some(_)) => {}
                _ => {
                    pick = None;
                    break;
                }
            }
        }
        if let Some(i) = pick {
            let target = targets[i].clone();
            let list = watches
                .get(&target.health_path())
                .and_then(|w| w.0.borrow().clone())
                .unwrap_or_default();
            let Some(u) = up.upgrade() else { return };
            if current.as_ref().map(|(t, _)| t) != Some(&target) {
                if let Some((old, _)) = &current {
                    if i == 0 {
                        info!(upstream = %service, "back to {}: it has passing instances again", target.service);
                    } else {
                        warn!(upstream = %service, "failing over from {} to {}: no passing instance of {}",
                              old.service, target.service, targets[0].service);
                    }
                }
                *u.route.write() = target.clone();
            }
            if current.as_ref() != Some(&(target.clone(), list.clone())) {
                u.balancer.update(&list);
                current = Some((target, list));
            }
            u.known.store(true, Relaxed);
        }
        let changed =
            futures::future::select_all(watches.values_mut().map(|w| Box::pin(w.0.changed())));
        tokio::select! {
            r = chain.changed() => {
                if r.is_err() { return; }
            }
            (r, _, _) = changed => {
                if r.is_err() { return; }
            }
        }
    }
}
