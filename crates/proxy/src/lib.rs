//! meshgate's data plane, built into the `meshgate` binary: the sidecar
//! proxy (`meshgate connect proxy -sidecar-for ID`) and the terminating
//! gateway (`meshgate connect envoy -gateway=terminating -register -service
//! NAME`), with mutual TLS from the mesh CA, intentions, and TLS
//! origination to external services — PostgreSQL's `SSLRequest` included.
//!
//! Everything is learnt from the local agent's HTTP API with blocking
//! queries; when the agent is unreachable the proxy keeps serving with the
//! last good configuration.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod agent;
pub mod gateway;
pub mod mesh;
pub mod metrics;
pub mod postgres;
pub mod relay;
pub mod sidecar;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

pub use agent::AgentClient;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure that stops the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    Agent(String),
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Which proxy to run.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A sidecar: the proxy service `proxy_id`, or the sidecar of the
    /// service `sidecar_for`.
    Sidecar {
        proxy_id: Option<String>,
        sidecar_for: Option<String>,
    },
    /// A terminating gateway named `service`.
    Gateway {
        service: String,
        proxy_id: Option<String>,
        register: bool,
        /// `host:port` to listen on and register (default: the agent's
        /// address, port 8443).
        address: Option<String>,
        deregister_after_critical: String,
    },
}

/// Everything `meshgate connect proxy|envoy` passes.
#[derive(Debug, Clone)]
pub struct Options {
    /// The agent's HTTP address (`http://127.0.0.1:8500`).
    pub http_addr: String,
    pub token: String,
    pub mode: Mode,
    /// `host:port` of the admin endpoint (`localhost:0`: a free port).
    pub admin_bind: Option<String>,
    /// How long open connections may take to finish after SIGTERM.
    pub drain_timeout: Duration,
    /// How many threads carry connections (the calling one included).
    pub threads: usize,
    /// How many open connections a thread takes before the next is used.
    pub conns_per_thread: usize,
}

/// The signal that stops accepting (and starts draining).
#[derive(Clone)]
pub struct Drain(watch::Sender<bool>);

impl Drain {
    fn new() -> Drain {
        Drain(watch::channel(false).0)
    }
    /// A receiver that turns true when draining starts.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
    fn start(&self) {
        self.0.send_replace(true);
    }
}

/// Whether a new connection closed without sending a byte (a TCP health
/// check): such connections are not TLS failures. Waits up to `deadline`,
/// the one its TLS handshake must also meet.
pub(crate) async fn is_probe(
    stream: &tokio::net::TcpStream,
    deadline: tokio::time::Instant,
) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout_at(deadline, stream.peek(&mut b)).await,
        Ok(Ok(0))
    )
}

/// A step of a mesh TLS handshake under its deadline: the value, or why it
/// failed (as logged and put in the access log).
pub(crate) fn handshake_step<T>(
    r: Result<std::io::Result<T>, tokio::time::error::Elapsed>,
) -> Result<T, String> {
    match r {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("TLS handshake timed out".into()),
    }
}

/// Resolves when draining starts.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Binds a listener on `host:port` (`localhost` is 127.0.0.1).
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, ProxyError> {
    let host = match host {
        "localhost" => "127.0.0.1",
        "" => "0.0.0.0",
        h => h.trim_matches(['[', ']']),
    };
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let sa: SocketAddr = addr
        .parse()
        .map_err(|e| ProxyError::Config(format!("address {addr:?}: {e}")))?;
    TcpListener::bind(sa)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })
}

/// Splits `host:port` (`[v6]:port`, `:port`).
pub fn split_host_port(s: &str) -> Result<(String, u16), ProxyError> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| ProxyError::Config(format!("{s:?} is not host:port")))?;
    let port = p
        .parse::<u16>()
        .map_err(|_| ProxyError::Config(format!("{s:?}: bad port")))?;
    Ok((h.trim_matches(['[', ']']).to_string(), port))
}

struct View {
    mode: &'static str,
    metrics: Arc<metrics::Metrics>,
    workers: Arc<workers::Workers>,
    access: Arc<access_log::AccessLog>,
    inner: ViewKind,
}

enum ViewKind {
    Gateway(Arc<gateway::Gateway>),
    Sidecar(Arc<sidecar::Sidecar>),
}

impl admin::AdminView for View {
    fn ready(&self) -> Result<(), String> {
        match &self.inner {
            ViewKind::Gateway(g) => g.ready(),
            ViewKind::Sidecar(s) => s.ready(),
        }
    }
    fn metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = self.metrics.render(self.mode);
        self.workers.render(self.mode, &mut out);
        let _ = writeln!(
            out,
            "# HELP meshgate_proxy_access_log_dropped_lines_total Access log lines lost (the writer behind, or the file not writable).\n# TYPE meshgate_proxy_access_log_dropped_lines_total counter\nmeshgate_proxy_access_log_dropped_lines_total{{mode=\"{}\"}} {}",
            self.mode,
            self.access.dropped()
        );
        out
    }
    fn config(&self) -> Value {
        let mut c = match &self.inner {
            ViewKind::Gateway(g) => g.config_json(),
            ViewKind::Sidecar(s) => s.config_json(),
        };
        if let Some(o) = c.as_object_mut() {
            o.insert(
                "Threads".into(),
                serde_json::json!({
                    "Count": self.workers.threads(),
                    "ConnectionsPerThread": self.workers.per_thread(),
                }),
            );
        }
        c
    }
}

/// systemd's `Type=notify`: `READY=1` once the proxy is ready (what `/ready`
/// answers), so that `systemctl start` returns when connections can flow;
/// then watchdog pings when systemd asks for them.
async fn tell_systemd(view: Arc<View>) {
    use admin::AdminView;
    use meshgate_types::sdnotify;
    let mut last = String::new();
    loop {
        match view.ready() {
            Ok(()) => break,
            Err(e) if e != last => {
                tracing::debug!("not ready yet: {e}");
                last = e;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Ok(true) = sdnotify::send("READY=1") {
        info!("told systemd the proxy is ready");
    }
    let Some(every) = sdnotify::watchdog_interval() else {
        return;
    };
    loop {
        let _ = sdnotify::send("WATCHDOG=1");
        tokio::time::sleep(every / 2).await;
    }
}

async fn find_sidecar(client: &AgentClient, sidecar_for: &str) -> Result<String, ProxyError> {
    let a = client.get_ok("/v1/agent/services").await?;
    let mut found = Vec::new();
    if let Some(m) = a.body.as_object() {
        for (id, s) in m {
            let kind = s.get("Kind").and_then(Value::as_str).unwrap_or("");
            let dest = s
                .pointer("/Proxy/DestinationServiceID")
                .and_then(Value::as_str)
                .unwrap_or("");
            if kind == "connect-proxy" && dest == sidecar_for {
                found.push(id.clone());
            }
        }
    }
    match found.len() {
        0 => Err(ProxyError::Config(format!(
            "No sidecar proxy registered for {sidecar_for}"
        ))),
        1 => Ok(found.remove(0)),
        _ => Err(ProxyError::Config(format!(
            "More than one sidecar proxy registered for {sidecar_for}.\n    Start proxy with -proxy-id and one of the following IDs: {}",
            found.join(", ")
        ))),
    }
}

/// The datacenter and the agent's address: from `/v1/agent/self` when the
/// token may read the agent, else from `/v1/catalog/datacenters` and the
/// agent's HTTP address (a gateway token usually may not read the agent).
async fn agent_facts(
    client: &AgentClient,
    http_addr: &str,
) -> Result<(String, String), ProxyError> {
    let me = client.get("/v1/agent/self").await?;
    if me.status == reqwest::StatusCode::OK {
        let dc = me
            .body
            .pointer("/Config/Datacenter")
            .and_then(Value::as_str);
        let addr = me.body.pointer("/Member/Addr").and_then(Value::as_str);
        if let (Some(dc), Some(addr)) = (dc, addr) {
            return Ok((dc.to_string(), addr.to_string()));
        }
    }
    let dcs = client.get_ok("/v1/catalog/datacenters").await?;
    let dc = dcs
        .body
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .unwrap_or("dc1")
        .to_string();
    let host = http_addr
        .split("://")
        .last()
        .and_then(|h| {
            h.rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        })
        .filter(|h| h.parse::<std::net::IpAddr>().is_ok())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    Ok((dc, host))
}

/// Runs the proxy until `shutdown` resolves, then drains open connections
/// for up to `drain_timeout`.
pub async fn run(
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ProxyError> {
    let client = AgentClient::new(&opts.http_addr, &opts.token)?;
    let (datacenter, agent_addr) = agent_facts(&client, &opts.http_addr).await?;
    let metrics = Arc::new(metrics::Metrics::default());
    let drain = Drain::new();
    let mut tasks = agent::Tasks::default();
    let workers = Arc::new(
        workers::Workers::start(opts.threads, opts.conns_per_thread)
            .map_err(|e| ProxyError::Config(format!("cannot start connection threads: {e}")))?,
    );
    let (mut roots, t) = mesh::watch_roots(&client);
    tasks.push(t);
    crate::agent::first(&mut roots, Duration::from_secs(30), "CA roots").await?;
    // The mesh's TLS versions and suites apply from the first connection.
    let (mut mesh_tls, t) = mesh::watch_mesh_tls(&client);
    tasks.push(t);
    crate::agent::first(
        &mut mesh_tls,
        Duration::from_secs(30),
        "the mesh config entry",
    )
    .await?;
    // Access logs follow proxy-defaults, from the first connection.
    let access = Arc::new(access_log::AccessLog::default());
    let (global, t) = mesh::watch_proxy_defaults(&client);
    tasks.push(t);
    let mut logs_cfg = global.clone();
    crate::agent::first(
        &mut logs_cfg,
        Duration::from_secs(30),
        "the proxy-defaults entry",
    )
    .await?;
    let a = access.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let cfg = logs_cfg
                .borrow_and_update()
                .clone()
                .and_then(|g| g.access_logs);
            for w in a.set_global(cfg.as_ref()) {
                warn!("{w}");
            }
            if logs_cfg.changed().await.is_err() {
                return;
            }
        }
    }));
    // The admin endpoint is bound first so that a gateway can register where
    // it is (`meshgate gateway status` reads connection counts there).
    let admin_listener = match &opts.admin_bind {
        Some(a) => {
            let (h, p) = split_host_port(a)?;
            Some(bind(&h, p).await?)
        }
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string());

    let view = match &opts.mode {
        Mode::Gateway {
            service,
            proxy_id,
            register,
            address,
            deregister_after_critical,
        } => {
            let id = proxy_id.clone().unwrap_or_else(|| service.clone());
            let (host, port) = match address {
                Some(a) => split_host_port(a)?,
                None if *register => (String::new(), 8443),
                None => {
                    // An existing registration tells where to listen.
                    let a = client.get_ok(&format!("/v1/agent/service/{id}")).await.map_err(|e| {
                        ProxyError::Config(format!(
                            "no gateway {id:?} is registered with the local agent (use -register): {e}"
                        ))
                    })?;
                    let addr = a
                        .body
                        .get("Address")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let port = a.body.get("Port").and_then(Value::as_u64).unwrap_or(8443) as u16;
                    (addr, port)
                }
            };
            let listener = bind(&host, port).await?;
            let registered_addr = if host.is_empty() || host == "0.0.0.0" || host == "::" {
                agent_addr.clone()
            } else {
                host.clone()
            };
            if *register {
                gateway::register(
                    &client,
                    &id,
                    service,
                    &registered_addr,
                    port,
                    deregister_after_critical,
                    admin_addr.as_deref(),
                )
                .await?;
                info!("Registered service: {service}");
            }
            let gw = gateway::Gateway::new(
                client.clone(),
                service,
                &datacenter,
                roots.clone(),
                mesh_tls.clone(),
                access.clone(),
                metrics.clone(),
                &mut tasks,
            );
            info!(
                gateway = %service,
                "terminating gateway listening on {}",
                listener.local_addr().map(|a| a.to_string()).unwrap_or_default()
            );
            tasks.push(tokio::spawn(gw.clone().serve(
                listener,
                drain.clone(),
                workers.clone(),
            )));
            View {
                mode: "terminating-gateway",
                metrics: metrics.clone(),
                workers: workers.clone(),
                access: access.clone(),
                inner: ViewKind::Gateway(gw),
            }
        }
        Mode::Sidecar {
            proxy_id,
            sidecar_for,
        } => {
            let id = match (proxy_id, sidecar_for) {
                (Some(id), _) => id.clone(),
                (None, Some(svc)) => find_sidecar(&client, svc).await?,
                (None, None) => {
                    return Err(ProxyError::Config(
                        "No proxy ID specified. One of -proxy-id, -sidecar-for, or -gateway is required".into(),
                    ));
                }
            };
            let a = client.get_ok(&format!("/v1/agent/service/{id}")).await?;
            let mut reg = sidecar::parse_registration(&a.body).map_err(ProxyError::Config)?;
            if reg.local_port == 0 {
                // The destination's own port.
                let dest_id = a
                    .body
                    .pointer("/Proxy/DestinationServiceID")
                    .and_then(Value::as_str)
                    .unwrap_or(&reg.service)
                    .to_string();
                if let Ok(d) = client.get_ok(&format!("/v1/agent/service/{dest_id}")).await {
                    reg.local_port = d.body.get("Port").and_then(Value::as_u64).unwrap_or(0) as u16;
                }
            }
            let listener = bind(&reg.address, reg.port).await?;
            let sc = sidecar::Sidecar::start(
                client.clone(),
                reg.clone(),
                &datacenter,
                roots.clone(),
                mesh_tls.clone(),
                global.clone(),
                access.clone(),
                metrics.clone(),
                drain.clone(),
                workers.clone(),
                &mut tasks,
            )
            .await?;
            info!(
                proxy = %reg.id,
                service = %reg.service,
                "sidecar public listener on {}, local service {}:{}",
                listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                reg.local_address,
                reg.local_port
            );
            tasks.push(tokio::spawn(sc.clone().serve_inbound(listener)));
            View {
                mode: "sidecar",
                metrics: metrics.clone(),
                workers: workers.clone(),
                access: access.clone(),
                inner: ViewKind::Sidecar(sc),
            }
        }
    };
    let view = Arc::new(view);
    if let Some(l) = admin_listener {
        info!(
            "admin endpoint on http://{}",
            admin_addr.unwrap_or_default()
        );
        tasks.push(tokio::spawn(admin::serve(l, view.clone())));
    }
    tasks.push(tokio::spawn(tell_systemd(view)));
    shutdown.await;
    let _ = meshgate_types::sdnotify::send("STOPPING=1");
    drain.start();
    let open = metrics.active_total();
    info!(
        "stopping: no new connections; waiting for {open} open connections (up to {:?})",
        opts.drain_timeout
    );
    let deadline = Instant::now() + opts.drain_timeout;
    while metrics.active_total() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = metrics.active_total();
    if left > 0 {
        warn!("drain timeout: closing {left} connections");
    }
    // Whatever is still open (relaying, or still in its handshake) ends
    // where it runs, so that each writes its access log line.
    if workers.open().iter().any(|n| *n > 0) {
        workers.close_all();
        let deadline = Instant::now() + Duration::from_secs(2);
        while workers.open().iter().any(|n| *n > 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    drop(tasks);
    access.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
