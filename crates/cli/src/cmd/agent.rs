//! `meshgate agent`: runs the agent until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use clap::Args;
use meshgate_agent::config::{self, Sources};
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use crate::client::{CliError, CliResult};

/// Flags of `meshgate agent`, with Consul's names. Flags meshgate has no use for
/// are accepted and reported once at start.
#[derive(Args, Debug, Default)]
pub struct AgentArgs {
    /// Development mode: a single in-memory server with the API on 127.0.0.1:8500.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub dev: Option<bool>,
    /// Run as a server.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub server: Option<bool>,
    /// Node name (default: the host name).
    #[arg(long)]
    pub node: Option<String>,
    /// Node ID (a UUID).
    #[arg(long = "node-id")]
    pub node_id: Option<String>,
    /// Node metadata `key:value` (repeatable).
    #[arg(long = "node-meta")]
    pub node_meta: Vec<String>,
    /// Datacenter (default dc1).
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Data directory.
    #[arg(long = "data-dir")]
    pub data_dir: Option<String>,
    /// Address to bind cluster communication to.
    #[arg(long)]
    pub bind: Option<String>,
    /// Address to advertise.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Address(es) the HTTP/DNS interfaces bind to (space separated).
    #[arg(long)]
    pub client: Option<String>,
    /// HTTP API port (-1 disables).
    #[arg(long = "http-port", allow_hyphen_values = true)]
    pub http_port: Option<i64>,
    /// HTTPS API port (-1 disables).
    #[arg(long = "https-port", allow_hyphen_values = true)]
    pub https_port: Option<i64>,
    /// DNS port (-1 disables).
    #[arg(long = "dns-port", allow_hyphen_values = true)]
    pub dns_port: Option<i64>,
    /// gRPC port.
    #[arg(long = "grpc-port", allow_hyphen_values = true)]
    pub grpc_port: Option<i64>,
    /// gRPC TLS port.
    #[arg(long = "grpc-tls-port", allow_hyphen_values = true)]
    pub grpc_tls_port: Option<i64>,
    /// Server RPC port.
    #[arg(long = "server-port", allow_hyphen_values = true)]
    pub server_port: Option<i64>,
    /// Serf LAN port.
    #[arg(long = "serf-lan-port", allow_hyphen_values = true)]
    pub serf_lan_port: Option<i64>,
    /// Serf WAN port.
    #[arg(long = "serf-wan-port", allow_hyphen_values = true)]
    pub serf_wan_port: Option<i64>,
    /// Configuration file (HCL or JSON; repeatable).
    #[arg(long = "config-file")]
    pub config_file: Vec<PathBuf>,
    /// Configuration directory: every *.hcl and *.json in it (repeatable).
    #[arg(long = "config-dir")]
    pub config_dir: Vec<PathBuf>,
    /// Force the format of config files: hcl or json.
    #[arg(long = "config-format")]
    pub config_format: Option<String>,
    /// HCL configuration fragment (repeatable; applied after files and flags).
    #[arg(long = "hcl")]
    pub hcl: Vec<String>,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// Log in JSON.
    #[arg(long = "log-json", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub log_json: Option<bool>,
    /// Bootstrap a single server.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub bootstrap: Option<bool>,
    /// Number of servers to wait for before bootstrapping.
    #[arg(long = "bootstrap-expect")]
    pub bootstrap_expect: Option<i64>,
    /// Server to join, retrying (repeatable).
    #[arg(long = "retry-join")]
    pub retry_join: Vec<String>,
    /// Server to join at start (repeatable; deprecated form of -retry-join).
    #[arg(long = "join")]
    pub join: Vec<String>,
    /// Serve the web UI.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ui: Option<bool>,
    /// Enable script checks registered over the HTTP API.
    #[arg(long = "enable-script-checks", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_script_checks: Option<bool>,
    /// Enable script checks from config files.
    #[arg(long = "enable-local-script-checks", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_local_script_checks: Option<bool>,
    /// Maximum check output size.
    #[arg(long = "check_output_max_size")]
    pub check_output_max_size: Option<i64>,
    /// Accepted for compatibility; meshgate has no use for these flags yet.
    #[arg(long = "advertise-wan")]
    pub advertise_wan: Option<String>,
    #[arg(long = "allow-write-http-from", hide = true)]
    pub allow_write_http_from: Vec<String>,
    /// A second DNS domain answered like -domain.
    #[arg(long = "alt-domain")]
    pub alt_domain: Option<String>,
    #[arg(long = "auto-reload-config", num_args = 0..=1, require_equals = true, default_missing_value = "true", hide = true)]
    pub auto_reload_config: Option<bool>,
    #[arg(long = "default-query-time", hide = true)]
    pub default_query_time: Option<String>,
    #[arg(long = "disable-host-node-id", num_args = 0..=1, require_equals = true, default_missing_value = "true", hide = true)]
    pub disable_host_node_id: Option<bool>,
    #[arg(long = "disable-keyring-file", num_args = 0..=1, require_equals = true, default_missing_value = "true", hide = true)]
    pub disable_keyring_file: Option<bool>,
    /// DNS domain answered (default consul.).
    #[arg(long)]
    pub domain: Option<String>,
    #[arg(long, hide = true)]
    pub encrypt: Option<String>,
    #[arg(long = "join-wan", hide = true)]
    pub join_wan: Vec<String>,
    /// Also write the log to this file (a path ending in / : consul.log in that directory).
    #[arg(long = "log-file")]
    pub log_file: Option<String>,
    /// Rotate the log file at this size (0: no limit).
    #[arg(long = "log-rotate-bytes")]
    pub log_rotate_bytes: Option<i64>,
    /// Rotate the log file at this age (default 24h).
    #[arg(long = "log-rotate-duration")]
    pub log_rotate_duration: Option<String>,
    /// Rotated log files kept (0: all, -1: none).
    #[arg(long = "log-rotate-max-files", allow_hyphen_values = true)]
    pub log_rotate_max_files: Option<i64>,
    #[arg(long = "max-query-time", hide = true)]
    pub max_query_time: Option<String>,
    #[arg(long = "non-voting-server", num_args = 0..=1, require_equals = true, default_missing_value = "true", hide = true)]
    pub non_voting_server: Option<bool>,
    #[arg(long = "pid-file", hide = true)]
    pub pid_file: Option<String>,
    #[arg(long = "primary-gateway", hide = true)]
    pub primary_gateway: Vec<String>,
    #[arg(long, hide = true)]
    pub protocol: Option<i64>,
    #[arg(long = "raft-protocol", hide = true)]
    pub raft_protocol: Option<i64>,
    #[arg(long = "read-replica", num_args = 0..=1, require_equals = true, default_missing_value = "true", hide = true)]
    pub read_replica: Option<bool>,
    /// Upstream DNS server for other names (repeatable).
    #[arg(long)]
    pub recursor: Vec<String>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", hide = true)]
    pub rejoin: Option<bool>,
    /// Time between attempts to reach the servers to join (default 300ms).
    #[arg(long = "retry-interval")]
    pub retry_interval: Option<String>,
    #[arg(long = "retry-interval-wan", hide = true)]
    pub retry_interval_wan: Option<String>,
    #[arg(long = "retry-join-wan", hide = true)]
    pub retry_join_wan: Vec<String>,
    /// Give up and exit after this many failed join attempts (0: never).
    #[arg(long = "retry-max")]
    pub retry_max: Option<i64>,
    #[arg(long = "retry-max-wan", hide = true)]
    pub retry_max_wan: Option<i64>,
    #[arg(long, hide = true)]
    pub segment: Option<String>,
    #[arg(long = "serf-lan-allowed-cidrs", hide = true)]
    pub serf_lan_allowed_cidrs: Vec<String>,
    #[arg(long = "serf-lan-bind", hide = true)]
    pub serf_lan_bind: Option<String>,
    #[arg(long = "serf-wan-allowed-cidrs", hide = true)]
    pub serf_wan_allowed_cidrs: Vec<String>,
    #[arg(long = "serf-wan-bind", hide = true)]
    pub serf_wan_bind: Option<String>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", hide = true)]
    pub syslog: Option<bool>,
    /// Where the web UI is served (ui_config.content_path; default /ui/).
    #[arg(long = "ui-content-path", value_name = "PATH")]
    pub ui_content_path: Option<String>,
    #[arg(long = "ui-dir", hide = true)]
    pub ui_dir: Option<String>,
}

fn set(m: &mut Map<String, Value>, path: &str, v: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or(path);
    let mut cur = m;
    for p in parts {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        cur = next;
    }
    cur.insert(last.to_string(), v);
}

impl AgentArgs {
    /// The configuration sources these flags describe.
    pub fn sources(&self) -> Result<Sources, CliError> {
        let mut m = Map::new();
        macro_rules! opt {
            ($field:expr, $key:expr) => {
                if let Some(v) = &$field {
                    set(&mut m, $key, json!(v));
                }
            };
        }
        opt!(self.server, "server");
        opt!(self.node, "node_name");
        opt!(self.node_id, "node_id");
        opt!(self.datacenter, "datacenter");
        opt!(self.data_dir, "data_dir");
        opt!(self.bind, "bind_addr");
        opt!(self.advertise, "advertise_addr");
        opt!(self.client, "client_addr");
        opt!(self.http_port, "ports.http");
        opt!(self.https_port, "ports.https");
        opt!(self.dns_port, "ports.dns");
        opt!(self.grpc_port, "ports.grpc");
        opt!(self.grpc_tls_port, "ports.grpc_tls");
        opt!(self.server_port, "ports.server");
        opt!(self.serf_lan_port, "ports.serf_lan");
        opt!(self.serf_wan_port, "ports.serf_wan");
        opt!(self.log_level, "log_level");
        opt!(self.log_json, "log_json");
        opt!(self.bootstrap, "bootstrap");
        opt!(self.bootstrap_expect, "bootstrap_expect");
        opt!(self.ui, "ui_config.enabled");
        opt!(self.enable_script_checks, "enable_script_checks");
        opt!(
            self.enable_local_script_checks,
            "enable_local_script_checks"
        );
        opt!(self.check_output_max_size, "check_output_max_size");
        opt!(self.advertise_wan, "advertise_addr_wan");
        opt!(self.alt_domain, "alt_domain");
        opt!(self.auto_reload_config, "auto_reload_config");
        opt!(self.default_query_time, "default_query_time");
        opt!(self.disable_host_node_id, "disable_host_node_id");
        opt!(self.disable_keyring_file, "disable_keyring_file");
        opt!(self.domain, "domain");
        opt!(self.encrypt, "encrypt");
        opt!(self.log_file, "log_file");
        opt!(self.log_rotate_bytes, "log_rotate_bytes");
        opt!(self.log_rotate_duration, "log_rotate_duration");
        opt!(self.log_rotate_max_files, "log_rotate_max_files");
        opt!(self.max_query_time, "max_query_time");
        opt!(self.non_voting_server, "read_replica");
        opt!(self.read_replica, "read_replica");
        opt!(self.pid_file, "pid_file");
        opt!(self.protocol, "protocol");
        opt!(self.raft_protocol, "raft_protocol");
        opt!(self.rejoin, "rejoin_after_leave");
        opt!(self.retry_interval, "retry_interval");
        opt!(self.retry_interval_wan, "retry_interval_wan");
        opt!(self.retry_max, "retry_max");
        opt!(self.retry_max_wan, "retry_max_wan");
        opt!(self.segment, "segment");
        opt!(self.serf_lan_bind, "serf_lan");
        opt!(self.serf_wan_bind, "serf_wan");
        opt!(self.syslog, "enable_syslog");
        opt!(self.ui_content_path, "ui_config.content_path");
        opt!(self.ui_dir, "ui_config.dir");
        let mut list = |v: &Vec<String>, key: &str| {
            if !v.is_empty() {
                set(&mut m, key, json!(v));
            }
        };
        list(
            &self.allow_write_http_from,
            "http_config.allow_write_http_from",
        );
        list(&self.primary_gateway, "primary_gateways");
        list(&self.recursor, "recursors");
        list(&self.retry_join_wan, "retry_join_wan");
        list(&self.serf_lan_allowed_cidrs, "serf_lan_allowed_cidrs");
        list(&self.serf_wan_allowed_cidrs, "serf_wan_allowed_cidrs");
        let mut joins = self.retry_join.clone();
        joins.extend(self.join.iter().cloned());
        list(&joins, "retry_join");
        let mut wan_joins = self.retry_join_wan.clone();
        wan_joins.extend(self.join_wan.iter().cloned());
        list(&wan_joins, "retry_join_wan");
        if !self.node_meta.is_empty() {
            let mut meta = Map::new();
            for kv in &self.node_meta {
                let (k, v) = kv.split_once(':').unwrap_or((kv.as_str(), ""));
                meta.insert(k.to_string(), json!(v));
            }
            set(&mut m, "node_meta", Value::Object(meta));
        }
        for (i, frag) in self.hcl.iter().enumerate() {
            let v = meshgate_hcl::parse_to_json(frag).map_err(|e| {
                CliError::new(format!("==> Error parsing -hcl flag {}: {e}", i + 1))
            })?;
            config::check_keys(&v, &format!("-hcl flag {}", i + 1))
                .map_err(|e| CliError::new(format!("==> {e}")))?;
            let mut whole = Value::Object(std::mem::take(&mut m));
            config::merge(&mut whole, v);
            if let Value::Object(o) = whole {
                m = o;
            }
        }
        if let Some(f) = &self.config_format
            && f != "hcl"
            && f != "json"
        {
            return Err(CliError::new(
                "==> config: -config-format must be either 'hcl' or 'json'",
            ));
        }
        Ok(Sources {
            files: self.config_file.clone(),
            dirs: self.config_dir.clone(),
            flags: m,
            dev: self.dev.unwrap_or(false),
            format: self.config_format.clone(),
        })
    }
}

pub(crate) fn init_logging(level: &str, json: bool) {
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = log_subscriber(log_filter(level), json, None).try_init();
}

/// The log filter for a level (`MESHGATE_LOG` overrides it).
fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    let level = match level.to_ascii_lowercase().as_str() {
        "err" => "error".to_string(),
        other => other.to_string(),
    };
    // openraft's own INFO lines (every vote and membership step) are noise
    // for operators at info; they appear at debug.
    let quiet_raft = match level.as_str() {
        "trace" | "debug" => String::new(),
        _ => ",openraft=error".to_string(),
    };
    tracing_subscriber::EnvFilter::try_from_env("MESHGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level}{quiet_raft}")))
}

/// The agent's log: stderr, and the `log_file` when one is configured (the
/// same lines, without colours). A log file that cannot be opened stops the
/// start, as with Consul.
fn init_agent_logging(c: &meshgate_agent::config::Config) -> Result<(), CliError> {
    use tracing_subscriber::util::SubscriberInitExt;
    let file = if c.log_file.is_empty() {
        None
    } else {
        let (bytes, every, max_files) = c.log_rotation();
        let rotation = crate::logfile::Rotation {
            bytes,
            every,
            max_files,
        };
        let file = crate::logfile::LogFile::open(&c.log_file, rotation).map_err(|e| {
            CliError::new(format!("==> Failed to setup logging: {}: {e}", c.log_file))
        })?;
        Some(std::sync::Arc::new(file))
    };
    let _ = log_subscriber(log_filter(&c.log_level), c.log_json, file).try_init();
    Ok(())
}

/// The process's subscriber: the log to stderr (and to `file`) at the
/// configured level, and the monitor layer (for /v1/agent/monitor) behind a
/// level filter that is `OFF` until someone streams and follows the streams'
/// levels (see `meshgate_agent::monitor::set_filter_control`), so that events
/// and spans below the log level cost nothing while nobody watches.
pub(crate) fn log_subscriber(
    filter: tracing_subscriber::EnvFilter,
    json: bool,
    file: Option<std::sync::Arc<crate::logfile::LogFile>>,
) -> impl tracing::Subscriber + Send + Sync {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let (monitor_filter, control) = tracing_subscriber::reload::Layer::new(LevelFilter::OFF);
    meshgate_agent::monitor::set_filter_control(move |level| {
        if let Err(e) = control.modify(|f| *f = level) {
            eprintln!("could not change the log stream's level: {e}");
        }
    });
    let monitor = meshgate_agent::monitor::layer().with_filter(monitor_filter);
    let to_file = file.map(|f| {
        let l = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(f);
        if json { l.json().boxed() } else { l.boxed() }
    });
    let to_stderr = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    // The level can change while the process runs (`reload` with another
    // `log_level`, as with Consul).
    let (filter, level_control) = tracing_subscriber::reload::Layer::new(filter);
    let _ = LOG_LEVEL_CONTROL.set(Box::new(move |level: &str| {
        if let Err(e) = level_control.modify(|f| *f = log_filter(level)) {
            eprintln!("could not change the log level: {e}");
        }
    }));
    tracing_subscriber::registry()
        .with(monitor)
        .with(to_stderr.and_then(to_file).with_filter(filter))
}

type LevelControl = Box<dyn Fn(&str) + Send + Sync>;

/// Changes the level of the process's log ([`log_subscriber`]).
static LOG_LEVEL_CONTROL: std::sync::OnceLock<LevelControl> = std::sync::OnceLock::new();

/// Sets the log level (`MESHGATE_LOG`, when set, still decides).
fn set_log_level(level: &str) {
    if let Some(control) = LOG_LEVEL_CONTROL.get() {
        control(level);
    }
}

/// SIGHUP, when it can be caught.
#[cfg(unix)]
pub(crate) fn hangups() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
pub(crate) fn hangups() -> Option<()> {
    None
}

/// The next SIGHUP (never, when it cannot be caught).
#[cfg(unix)]
pub(crate) async fn next_hangup(h: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match h {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
pub(crate) async fn next_hangup(_: &mut Option<()>) -> Option<()> {
    std::future::pending().await
}

/// SIGTERM and SIGINT, caught from the moment this is made: one that
/// arrives before the first [`Stops::next`] (while the agent or proxy is
/// still starting) is kept for it instead of ending the process at once
/// with the default action.
pub(crate) struct Stops {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Stops {
    pub(crate) fn new() -> Stops {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Stops {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Stops {}
    }

    /// The next stop signal: `"terminate"` or `"interrupt"`.
    pub(crate) async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        if s.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = one(&mut self.int) => "interrupt",
                _ = one(&mut self.term) => "terminate",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupt"
        }
    }
}

/// Runs `meshgate agent`.
pub async fn run(args: AgentArgs) -> CliResult {
    let sources = args.sources()?;
    let loaded = config::load(&sources).map_err(|e| CliError::new(format!("==> {e}")))?;
    init_agent_logging(&loaded.config)?;
    let watch_config = loaded.config.watch_list();
    // Checked before the agent starts (as far as it can be without knowing
    // where the API listens: that is checked once it does).
    super::watch::agent_watches(&watch_config)
        .map_err(|e| CliError::new(format!("==> Error starting agent: {e}")))?;
    // SIGHUP, SIGTERM and SIGINT are caught from here on (a reload or stop
    // asked for during the start happens once the agent runs), not left to
    // end the process.
    let mut hangups = hangups();
    let mut stops = Stops::new();
    // A stop during the start (which can wait up to 15 s for the servers to
    // have a leader) ends it there: nothing is served yet, nothing to drain.
    let pid_file = loaded.config.pid_file.clone();
    let running = tokio::select! {
        r = meshgate_agent::start(loaded, sources) => {
            r.map_err(|e| CliError::new(format!("==> {e}")))?
        }
        sig = stops.next() => {
            info!("Caught signal: {sig} while starting, stopping");
            if !pid_file.is_empty() {
                let _ = std::fs::remove_file(&pid_file);
            }
            return Ok(());
        }
    };
    let agent = running.agent.clone();
    // Watches follow this agent's own HTTP API, as Consul's do (its HTTPS
    // API when it has no plain one, with its own CA and certificate).
    let local = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    let mut tls = None;
    let mut base = agent.http_addrs.lock().first().map(|a| {
        format!(
            "http://{}",
            std::net::SocketAddr::new(local(a.ip()), a.port())
        )
    });
    let https = agent.config.ports.https;
    if base.is_none()
        && https > 0
        && let Some(ip) = agent
            .config
            .https_addrs()
            .first()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
    {
        let t = agent.config.tls.https();
        base = Some(format!(
            "https://{}",
            std::net::SocketAddr::new(local(ip), https.clamp(1, 65535) as u16)
        ));
        tls = Some((t.ca_file, t.cert_file, t.key_file));
    }
    let watch_set = std::sync::Arc::new(super::watch::WatchSet::new(
        base,
        tls,
        agent.shutdown_signal(),
    ));
    match watch_set.check(&watch_config) {
        Ok(watches) => watch_set.replace(watch_config, watches),
        Err(e) => {
            agent.request_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), running.wait()).await;
            agent.remove_pid_file();
            return Err(CliError::new(format!("==> Error starting agent: {e}")));
        }
    }
    // `reload` applies a changed `log_level` (checked by the load).
    let level_now = std::sync::Arc::new(std::sync::Mutex::new(agent.config.log_level.clone()));
    agent
        .reload_hooks
        .lock()
        .push(Box::new(move |c: &meshgate_agent::config::Config| {
            let level = c.log_level.clone();
            let level_now = level_now.clone();
            Ok(Box::new(move || {
                let mut now = level_now.lock().unwrap_or_else(|e| e.into_inner());
                if *now != level {
                    set_log_level(&level);
                    info!("log level: {level}");
                    *now = level;
                }
            }) as Box<dyn FnOnce() + Send>)
        }));
    agent
        .reload_hooks
        .lock()
        .push(Box::new(move |c: &meshgate_agent::config::Config| {
            let raw = c.watch_list();
            let watches = watch_set.check(&raw)?;
            let set = watch_set.clone();
            Ok(Box::new(move || set.replace(raw, watches)) as Box<dyn FnOnce() + Send>)
        }));
    let mut stop = agent.shutdown_signal();
    loop {
        tokio::select! {
            // SIGHUP reloads the configuration, as with Consul (`systemctl
            // reload`: `ExecReload=kill -HUP $MAINPID`).
            Some(()) = next_hangup(&mut hangups) => {
                info!("Caught signal: hangup");
                info!("Reloading configuration...");
                match agent.reload().await {
                    Ok(warnings) => {
                        for w in warnings {
                            warn!("{w}");
                        }
                    }
                    Err(e) => tracing::error!("{}", e.message),
                }
                continue;
            }
            sig = stops.next() => {
                info!("Caught signal: {sig}, shutting down");
                // `leave_on_terminate` / `skip_leave_on_interrupt` (Consul's
                // defaults: a client agent leaves, a server does not).
                if agent.config.leave_on_signal(sig) && agent.store.cluster().is_some() {
                    info!("leaving the cluster before stopping");
                    let leave = agent.leave_cluster();
                    if tokio::time::timeout(std::time::Duration::from_secs(15), leave)
                        .await
                        .is_err()
                    {
                        warn!("leaving the cluster took too long; stopping anyway");
                    }
                }
                agent.request_shutdown();
            }
            // `/v1/agent/leave` asked the agent to stop.
            _ = stop.wait_for(|s| *s) => {}
        }
        break;
    }
    meshgate_agent::sdnotify::notify("STOPPING=1");
    let wait = running.wait();
    if tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .is_err()
    {
        warn!("shutdown took too long, exiting");
    }
    agent.remove_pid_file();
    info!("Graceful shutdown complete");
    match agent.failure() {
        Some(why) => Err(CliError::new(format!("==> {why}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    /// Below the log level, spans and events are not built while nobody
    /// streams the log (a library's debug spans — openraft makes several per
    /// raft message — cost nothing); a stream opens its level and closing
    /// it shuts it again.
    #[test]
    fn below_the_log_level_nothing_is_built_unless_streamed() {
        let filter = tracing_subscriber::EnvFilter::new("warn,openraft=error");
        let subscriber = super::log_subscriber(filter, false, None);
        tracing::subscriber::with_default(subscriber, || {
            let debug_span = || tracing::debug_span!(target: "openraft::core", "main");
            assert!(debug_span().is_disabled());
            assert!(tracing::info_span!("request").is_disabled());
            assert!(!tracing::enabled!(Level::DEBUG));
            assert!(tracing::enabled!(Level::WARN));

            let stream = meshgate_agent::monitor::subscribe(Level::DEBUG);
            assert!(!debug_span().is_disabled(), "a debug stream sees debug");
            assert!(tracing::enabled!(Level::DEBUG));
            assert!(!tracing::enabled!(Level::TRACE));
            let info = meshgate_agent::monitor::subscribe(Level::INFO);
            drop(stream);
            assert!(debug_span().is_disabled(), "only an info stream is left");
            assert!(tracing::enabled!(Level::INFO));
            drop(info);
            assert!(tracing::info_span!("request").is_disabled());
            assert!(!tracing::enabled!(Level::INFO));
        });
    }
}
