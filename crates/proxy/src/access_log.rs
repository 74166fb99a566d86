//! Access logs: the `AccessLogs` block of the `proxy-defaults` entry, as
//! Consul configures Envoy's. One line per connection when it ends (relayed
//! or refused), in Consul's default JSON format or the operator's
//! `JSONFormat` / `TextFormat` with Envoy's command operators (those a TCP
//! connection has a value for), to stdout, stderr or a file.
//!
//! Lines are formatted on the connection's thread and handed to a writer
//! thread through a bounded queue, so a slow disk never holds a connection
//! up; when the queue is full the line is dropped and counted. A file that
//! is moved away or deleted (log rotation) is opened again within a second.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshgate_config_entries::AccessLogsConfig;
use parking_lot::RwLock;
use serde_json::Value;
use tracing::warn;

/// Consul's default format: its JSON keys, Envoy's operators (the HTTP
/// ones have no value for a TCP connection and show `null`).
const DEFAULT_FORMAT: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
];

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 4096;

/// Envoy's termination detail for a connection its RBAC filter (Consul's
/// intentions) refused.
pub const DENIED: &str = "rbac_access_denied_matched_policy[none]";

/// An operator with a value for a TCP connection.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    StartTime(Option<String>),
    Duration,
    BytesReceived,
    BytesSent,
    ResponseCode,
    ResponseFlags,
    TerminationDetails,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress,
    UpstreamTransportFailure,
    DownstreamLocalAddress,
    DownstreamLocalAddressWithoutPort,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamTransportFailure,
    DownstreamPeerUriSan,
    DownstreamTlsVersion,
    RequestedServerName,
    ConnectionId,
    Hostname,
    /// A known operator with no value for a TCP connection (HTTP ones).
    Unset,
}

/// Envoy's operators that only HTTP streams fill in.
const HTTP_ONLY: &[&str] = &[
    "REQ",
    "RESP",
    "TRAILER",
    "PROTOCOL",
    "ROUTE_NAME",
    "RESPONSE_CODE_DETAILS",
    "UPSTREAM_REQUEST_ATTEMPT_COUNT",
    "REQUEST_DURATION",
    "RESPONSE_DURATION",
    "RESPONSE_TX_DURATION",
    "REQUEST_HEADERS_BYTES",
    "RESPONSE_HEADERS_BYTES",
    "GRPC_STATUS",
    "DYNAMIC_METADATA",
    "FILTER_STATE",
    "VIRTUAL_CLUSTER_NAME",
];

fn op(name: &str, arg: Option<&str>) -> Option<Op> {
    Some(match name {
        "START_TIME" => Op::StartTime(arg.map(str::to_string)),
        "DURATION" => Op::Duration,
        "BYTES_RECEIVED" => Op::BytesReceived,
        "BYTES_SENT" => Op::BytesSent,
        "RESPONSE_CODE" => Op::ResponseCode,
        "RESPONSE_FLAGS" => Op::ResponseFlags,
        "CONNECTION_TERMINATION_DETAILS" => Op::TerminationDetails,
        "UPSTREAM_HOST" => Op::UpstreamHost,
        "UPSTREAM_CLUSTER" => Op::UpstreamCluster,
        "UPSTREAM_LOCAL_ADDRESS" => Op::UpstreamLocalAddress,
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => Op::UpstreamTransportFailure,
        "DOWNSTREAM_LOCAL_ADDRESS" => Op::DownstreamLocalAddress,
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Op::DownstreamLocalAddressWithoutPort,
        "DOWNSTREAM_REMOTE_ADDRESS" | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => {
            Op::DownstreamRemoteAddress
        }
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
        | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => Op::DownstreamRemoteAddressWithoutPort,
        "DOWNSTREAM_TRANSPORT_FAILURE_REASON" => Op::DownstreamTransportFailure,
        "DOWNSTREAM_PEER_URI_SAN" => Op::DownstreamPeerUriSan,
        "DOWNSTREAM_TLS_VERSION" => Op::DownstreamTlsVersion,
        "REQUESTED_SERVER_NAME" => Op::RequestedServerName,
        "CONNECTION_ID" => Op::ConnectionId,
        "HOSTNAME" => Op::Hostname,
        n if HTTP_ONLY.contains(&n) => Op::Unset,
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    /// An operator and its `:N` length limit.
    Op(Op, Option<usize>),
}

/// Parses a format string into text and operators (`%NAME%`,
/// `%NAME(arg)%`, `%NAME(arg):N%`; a `%` that starts none is text). Unknown
/// operator names are returned for a warning and stay as they are written.
fn parse(s: &str, unknown: &mut Vec<String>) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match operator(after) {
            Some((name, arg, limit, len)) => {
                match op(name, arg) {
                    Some(o) => {
                        if !text.is_empty() {
                            out.push(Piece::Text(std::mem::take(&mut text)));
                        }
                        out.push(Piece::Op(o, limit));
                    }
                    None => {
                        unknown.push(name.to_string());
                        text.push_str(&rest[i..i + 1 + len + 1]);
                    }
                }
                rest = &after[len + 1..];
            }
            None => {
                text.push('%');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

/// `NAME(arg):N%...` → (name, arg, N, length up to the closing `%`).
fn operator(s: &str) -> Option<(&str, Option<&str>, Option<usize>, usize)> {
    let name_len = s
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(s.len());
    if name_len == 0 {
        return None;
    }
    let name = &s[..name_len];
    let mut pos = name_len;
    let mut arg = None;
    if s[pos..].starts_with('(') {
        let close = s[pos..].find(')')? + pos;
        arg = Some(&s[pos + 1..close]);
        pos = close + 1;
    }
    let mut limit = None;
    if s[pos..].starts_with(':') {
        let digits = s[pos + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.len() - pos - 1);
        limit = s[pos + 1..pos + 1 + digits].parse().ok();
        pos += 1 + digits;
    }
    s[pos..].starts_with('%').then_some((name, arg, limit, pos))
}

/// A parsed format.
#[derive(Debug, Clone, PartialEq)]
enum Format {
    Text(Vec<Piece>),
    /// A JSON template: each string in it is a format.
    Json(Template),
}

#[derive(Debug, Clone, PartialEq)]
enum Template {
    Pieces(Vec<Piece>),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    Literal(Value),
}

fn template(v: &Value, unknown: &mut Vec<String>) -> Template {
    match v {
        Value::String(s) => Template::Pieces(parse(s, unknown)),
        Value::Object(m) => Template::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), template(v, unknown)))
                .collect(),
        ),
        Value::Array(a) => Template::Array(a.iter().map(|v| template(v, unknown)).collect()),
        other => Template::Literal(other.clone()),
    }
}

/// What is known about one connection.
#[derive(Debug, Clone)]
pub struct Entry {
    start: SystemTime,
    started: Instant,
    id: u64,
    pub downstream_remote: SocketAddr,
    pub downstream_local: Option<SocketAddr>,
    /// The SNI the caller sent.
    pub server_name: String,
    /// The caller's SPIFFE identity (mesh listeners).
    pub peer_uri: String,
    pub tls_version: &'static str,
    pub cluster: String,
    pub upstream_host: String,
    pub upstream_local: Option<SocketAddr>,
    /// From the downstream.
    pub bytes_received: u64,
    /// To the downstream.
    pub bytes_sent: u64,
    /// Envoy's response flags: `-`, `NR` (no route: an unknown SNI), `UH`
    /// (no healthy instance), `UF` (the upstream connection or its TLS
    /// failed), `UO` (over the connection limit).
    pub flags: &'static str,
    pub termination: String,
    pub upstream_failure: String,
    pub downstream_failure: String,
    /// Refused before reaching a service (Consul's listener logs).
    pub listener: bool,
}

enum Val<'a> {
    Str(std::borrow::Cow<'a, str>),
    Num(u64),
    Unset,
}

/// A string value; empty is unset.
fn text_val(v: &str) -> Val<'_> {
    if v.is_empty() {
        Val::Unset
    } else {
        Val::Str(std::borrow::Cow::Borrowed(v))
    }
}

impl Entry {
    fn value<'a>(&'a self, op: &Op, hostname: &'a str) -> Val<'a> {
        let s = text_val;
        use std::borrow::Cow::{Borrowed, Owned};

        let addr = |a: Option<SocketAddr>, port: bool| match a {
            None => Val::Unset,
            Some(a) if port => Val::Str(Owned(a.to_string())),
            Some(a) => Val::Str(Owned(a.ip().to_string())),
        };
        match op {
            Op::StartTime(fmt) => {
                let ms = self
                    .start
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                Val::Str(Owned(strftime(
                    fmt.as_deref().unwrap_or("%Y-%m-%dT%H:%M:%E3SZ"),
                    ms,
                )))
            }
            Op::Duration => Val::Num(self.started.elapsed().as_millis() as u64),
            Op::BytesReceived => Val::Num(self.bytes_received),
            Op::BytesSent => Val::Num(self.bytes_sent),
            Op::ResponseCode => Val::Num(0),
            Op::ResponseFlags => Val::Str(Borrowed(self.flags)),
            Op::TerminationDetails => s(&self.termination),
            Op::UpstreamHost => s(&self.upstream_host),
            Op::UpstreamCluster => s(&self.cluster),
            Op::UpstreamLocalAddress => addr(self.upstream_local, true),
            Op::UpstreamTransportFailure => s(&self.upstream_failure),
            Op::DownstreamLocalAddress => addr(self.downstream_local, true),
            Op::DownstreamLocalAddressWithoutPort => addr(self.downstream_local, false),
            Op::DownstreamRemoteAddress => addr(Some(self.downstream_remote), true),
            Op::DownstreamRemoteAddressWithoutPort => addr(Some(self.downstream_remote), false),
            Op::DownstreamTransportFailure => s(&self.downstream_failure),
            Op::DownstreamPeerUriSan => s(&self.peer_uri),
            Op::DownstreamTlsVersion => s(self.tls_version),
            Op::RequestedServerName => s(&self.server_name),
            Op::ConnectionId => Val::Num(self.id),
            Op::Hostname => s(hostname),
            Op::Unset => Val::Unset,
        }
    }

    fn text(&self, pieces: &[Piece], hostname: &str, out: &mut String) {
        for p in pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Op(o, limit) => match self.value(o, hostname) {
                    Val::Str(v) => out.push_str(truncated(&v, *limit)),
                    Val::Num(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Val::Unset => out.push('-'),
                },
            }
        }
    }

    fn json(&self, t: &Template, hostname: &str) -> Value {
        match t {
            // A string that is one operator keeps the value's type (a
            // number, or null when unset), as in Envoy's JSON logs.
            Template::Pieces(p) => match p.as_slice() {
                [Piece::Op(o, limit)] => match self.value(o, hostname) {
                    Val::Str(v) => Value::String(truncated(&v, *limit).to_string()),
                    Val::Num(n) => Value::from(n),
                    Val::Unset => Value::Null,
                },
                _ => {
                    let mut s = String::new();
                    self.text(p, hostname, &mut s);
                    Value::String(s)
                }
            },
            Template::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), self.json(v, hostname)))
                    .collect(),
            ),
            Template::Array(items) => {
                Value::Array(items.iter().map(|v| self.json(v, hostname)).collect())
            }
            Template::Literal(v) => v.clone(),
        }
    }
}

/// At most `limit` characters of `v` (`%OP:N%`).
fn truncated(v: &str, limit: Option<usize>) -> &str {
    match limit.and_then(|n| v.char_indices().nth(n)) {
        Some((i, _)) => &v[..i],
        None => v,
    }
}

/// `strftime` as Envoy reads `START_TIME(...)`, for the specifiers a log
/// line uses: `%Y %m %d %H %M %S %s %z %Z %%`, and `%E3S` / `%3f` for
/// milliseconds (`%E6S`, `%E9S`, `%6f`, `%9f` pad them). Others stay as
/// written.
fn strftime(fmt: &str, ms: u64) -> String {
    let [y, mo, d, h, mi, s, milli] = meshgate_types::time::utc_parts(ms);
    let mut out = String::new();
    let mut chars = fmt.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let rest = &fmt[i + 1..];
        let (written, skip) = match rest {
            r if r.starts_with("E3S") => (format!("{s:02}.{milli:03}"), 3),
            r if r.starts_with("E6S") => (format!("{s:02}.{milli:03}000"), 3),
            r if r.starts_with("E9S") => (format!("{s:02}.{milli:03}000000"), 3),
            r if r.starts_with("3f") => (format!("{milli:03}"), 2),
            r if r.starts_with("6f") => (format!("{milli:03}000"), 2),
            r if r.starts_with("9f") => (format!("{milli:03}000000"), 2),
            r => match r.chars().next() {
                Some('Y') => (format!("{y:04}"), 1),
                Some('m') => (format!("{mo:02}"), 1),
                Some('d') => (format!("{d:02}"), 1),
                Some('H') => (format!("{h:02}"), 1),
                Some('M') => (format!("{mi:02}"), 1),
                Some('S') => (format!("{s:02}"), 1),
                Some('s') => ((ms / 1000).to_string(), 1),
                Some('z') => ("+0000".to_string(), 1),
                Some('Z') => ("UTC".to_string(), 1),
                Some('%') => ("%".to_string(), 1),
                _ => ("%".to_string(), 0),
            },
        };
        out.push_str(&written);
        for _ in 0..skip {
            chars.next();
        }
    }
    out
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Stdout,
    Stderr,
    File(String),
}

/// One configuration in force: its format and its writer thread.
struct Sink {
    format: Format,
    disable_listener_logs: bool,
    tx: SyncSender<String>,
    hostname: String,
    /// Lines lost (the queue full, or the target failing); shared by the
    /// sinks of one proxy.
    dropped: Arc<AtomicU64>,
    /// Lines this sink could not queue (when to say so in the log).
    queue_full: AtomicU64,
}

impl Sink {
    fn write(&self, e: &Entry) {
        if e.listener && self.disable_listener_logs {
            return;
        }
        let mut line = match &self.format {
            Format::Text(p) => {
                let mut s = String::new();
                e.text(p, &self.hostname, &mut s);
                s
            }
            Format::Json(t) => e.json(t, &self.hostname).to_string(),
        };
        if !line.ends_with('\n') {
            line.push('\n');
        }
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                // Counted on /metrics; said in the log at the first loss and
                // every 1,000 after it.
                self.dropped.fetch_add(1, Relaxed);
                if self.queue_full.fetch_add(1, Relaxed).is_multiple_of(1000) {
                    warn!("access log: the writer is behind; lines are dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// A proxy's access log: what `proxy-defaults` says now.
#[derive(Default)]
pub struct AccessLog {
    /// Whether there is a sink (checked first: a connection costs nothing
    /// more while access logs are off).
    enabled: AtomicBool,
    sink: RwLock<Option<Arc<Sink>>>,
    config: RwLock<Option<AccessLogsConfig>>,
    /// `proxy-defaults`' `AccessLogs`, and the proxy registration's own
    /// (which, when set, comes first, as in Consul).
    global: RwLock<Option<AccessLogsConfig>>,
    local: RwLock<Option<AccessLogsConfig>>,
    next_id: AtomicU64,
    dropped: Arc<AtomicU64>,
    /// The writer threads started (each ends once its sink and the records
    /// holding it are gone).
    writers: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// One connection's log line, written when it is dropped (whichever way the
/// connection ends). Empty when access logs are off.
pub struct Record {
    entry: Option<Box<Entry>>,
    sink: Option<Arc<Sink>>,
}

impl Record {
    /// The entry to fill in (`None` when access logs are off).
    pub fn entry(&mut self) -> Option<&mut Entry> {
        self.entry.as_deref_mut()
    }

    /// Marks a failure towards the upstream: its flags (`UF`, `UH`) and why
    /// (`%UPSTREAM_TRANSPORT_FAILURE_REASON%`).
    pub fn upstream_failed(&mut self, flags: &'static str, why: &str) {
        if let Some(e) = self.entry() {
            e.flags = flags;
            e.upstream_failure = why.to_string();
        }
    }

    /// Marks a refusal: its flags and details.
    pub fn refused(&mut self, flags: &'static str, termination: &str) {
        if let Some(e) = self.entry() {
            e.flags = flags;
            e.termination = termination.to_string();
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let (Some(e), Some(s)) = (&self.entry, &self.sink) {
            s.write(e);
        }
    }
}

/// Envoy's name of a TLS version (`%DOWNSTREAM_TLS_VERSION%`).
pub fn tls_version(v: Option<rustls::ProtocolVersion>) -> &'static str {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "",
    }
}

/// A connection refused during the mesh TLS handshake: a listener log (an
/// unknown SNI is Envoy's `NR`, no filter chain), with the reason.
pub fn listener_refusal(log: &mut Record, reason: &str) {
    if let Some(e) = log.entry() {
        e.listener = true;
        e.downstream_failure = reason.to_string();
        if reason.contains("no server certificate chain resolved") {
            e.flags = "NR";
            e.termination = "no linked service for this SNI".into();
        }
    }
}

impl AccessLog {
    /// Starts the record of a connection accepted from `peer` on `stream`.
    pub fn start(&self, peer: SocketAddr, stream: &tokio::net::TcpStream) -> Record {
        if !self.enabled.load(Relaxed) {
            return Record {
                entry: None,
                sink: None,
            };
        }
        let sink = self.sink.read().clone();
        let entry = sink.as_ref().map(|_| {
            Box::new(Entry {
                start: SystemTime::now(),
                started: Instant::now(),
                id: self.next_id.fetch_add(1, Relaxed) + 1,
                downstream_remote: peer,
                downstream_local: stream.local_addr().ok(),
                server_name: String::new(),
                peer_uri: String::new(),
                tls_version: "",
                cluster: String::new(),
                upstream_host: String::new(),
                upstream_local: None,
                bytes_received: 0,
                bytes_sent: 0,
                flags: "-",
                termination: String::new(),
                upstream_failure: String::new(),
                downstream_failure: String::new(),
                listener: false,
            })
        });
        Record { entry, sink }
    }

    /// Sets `proxy-defaults`' `AccessLogs` (None: no entry); returns what to
    /// warn about.
    pub fn set_global(&self, cfg: Option<&AccessLogsConfig>) -> Vec<String> {
        *self.global.write() = cfg.cloned();
        self.apply_current()
    }

    /// Sets the proxy registration's own `Proxy.AccessLogs` (None or all
    /// unset: proxy-defaults' apply); returns what to warn about.
    pub fn set_local(&self, cfg: Option<&AccessLogsConfig>) -> Vec<String> {
        *self.local.write() = cfg.filter(|c| **c != AccessLogsConfig::default()).cloned();
        self.apply_current()
    }

    fn apply_current(&self) -> Vec<String> {
        let cfg = self
            .local
            .read()
            .clone()
            .or_else(|| self.global.read().clone());
        self.apply(cfg.as_ref())
    }

    /// Applies an `AccessLogs` block. Returns what to warn about (operators
    /// without a value here); an unchanged configuration changes nothing.
    fn apply(&self, cfg: Option<&AccessLogsConfig>) -> Vec<String> {
        let cfg = cfg.filter(|c| c.enabled).cloned();
        if *self.config.read() == cfg {
            return Vec::new();
        }
        let mut unknown = Vec::new();
        let sink = match &cfg {
            None => None,
            Some(c) => {
                let (sink, u, thread) = build(c, self.dropped.clone());
                unknown = u;
                let mut writers = self.writers.lock();
                writers.retain(|t| !t.is_finished());
                writers.extend(thread);
                Some(Arc::new(sink))
            }
        };
        self.enabled.store(sink.is_some(), Relaxed);
        *self.sink.write() = sink;
        *self.config.write() = cfg;
        unknown
            .into_iter()
            .map(|n| {
                format!(
                    "access log: %{n}% is not an operator meshgate knows; it is written as it is"
                )
            })
            .collect()
    }
}

impl AccessLog {
    /// Lines lost so far (`/metrics`).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// When the proxy stops, after its connections ended: the lines still
    /// queued are written, waiting up to `patience`.
    pub async fn shutdown(&self, patience: Duration) {
        self.enabled.store(false, Relaxed);
        *self.sink.write() = None;
        let writers = std::mem::take(&mut *self.writers.lock());
        let deadline = Instant::now() + patience;
        for w in writers {
            while !w.is_finished() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

type Built = (Sink, Vec<String>, Option<std::thread::JoinHandle<()>>);

fn build(c: &AccessLogsConfig, dropped: Arc<AtomicU64>) -> Built {
    let mut unknown = Vec::new();
    let format = if !c.text_format.is_empty() {
        Format::Text(parse(&c.text_format, &mut unknown))
    } else {
        let template_value = if c.json_format.is_empty() {
            Value::Object(
                DEFAULT_FORMAT
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
                    .collect(),
            )
        } else {
            // Validated when the entry was written.
            serde_json::from_str(&c.json_format).unwrap_or(Value::Null)
        };
        Format::Json(template(&template_value, &mut unknown))
    };
    let target = match c.r#type.as_str() {
        "stderr" => Target::Stderr,
        "file" => Target::File(c.path.clone()),
        _ => Target::Stdout,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let lost = dropped.clone();
    let spawned = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || writer(target, rx, &lost));
    let thread = match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            warn!("access log: cannot start its writer thread: {e}");
            None
        }
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let sink = Sink {
        format,
        disable_listener_logs: c.disable_listener_logs,
        tx,
        hostname,
        dropped,
        queue_full: AtomicU64::new(0),
    };
    (sink, unknown, thread)
}

/// The writer thread: lines to the target in batches, flushed whenever the
/// queue is empty; a file is opened again when its path no longer leads to
/// it. Lines that cannot be written are counted in `lost`, and the failure
/// is logged once until a batch goes out again.
fn writer(target: Target, rx: Receiver<String>, lost: &AtomicU64) {
    let mut out: Option<Opened> = None;
    let mut failing = false;
    let mut broken = false;
    let mut last_check = Instant::now();
    let mut batch = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(l) => batch.push(l),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Target::File(path) = &target
            && last_check.elapsed() >= Duration::from_secs(1)
        {
            last_check = Instant::now();
            let now = inode(path);
            if out
                .as_ref()
                .is_some_and(|(_, ino)| *ino != now || now.is_none())
            {
                // A new file: nothing of a broken line is in it.
                out = None;
                broken = false;
            }
        }
        if batch.is_empty() {
            continue;
        }
        // More lines waiting go out in the same write.
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut bytes = String::new();
        if broken {
            // The last failed write left part of a line: end it, so the
            // next line starts on its own.
            bytes.push('\n');
        }
        bytes.push_str(&batch.concat());
        batch.clear();
        if out.is_none() {
            match open(&target) {
                Ok(o) => out = Some(o),
                Err(e) => {
                    lost.fetch_add(lines_in(bytes.as_bytes()), Relaxed);
                    if !failing {
                        warn!("access log: {e}; lines are lost until it can be written");
                        failing = true;
                    }
                    continue;
                }
            }
        }
        let Some((w, _)) = out.as_mut() else { continue };
        // One write of whole lines (appends of several proxies to one file
        // do not mix within a line).
        let (written, result) = write_counted(w.as_mut(), bytes.as_bytes());
        match result {
            Ok(()) => {
                failing = false;
                broken = false;
            }
            Err(e) => {
                let bytes = bytes.as_bytes();
                let written = written.min(bytes.len());
                lost.fetch_add(lines_in(&bytes[written..]), Relaxed);
                // Only what reached the file decides whether a line is left
                // open there.
                if written > 0 {
                    broken = !bytes[..written].ends_with(b"\n");
                }
                if !failing {
                    warn!("access log: writing: {e}; lines are lost until it can be written");
                    failing = true;
                }
                out = None;
            }
        }
    }
}

/// Writes `bytes`, saying how many went out before an error.
fn write_counted(w: &mut dyn std::io::Write, bytes: &[u8]) -> (usize, std::io::Result<()>) {
    let mut done = 0;
    while done < bytes.len() {
        match w.write(&bytes[done..]) {
            Ok(0) => return (done, Err(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Err(e)),
        }
    }
    (done, w.flush())
}

/// Lines begun in `s` (a part of a line counts as one; a lone newline that
/// ends an earlier broken line does not).
fn lines_in(s: &[u8]) -> u64 {
    s.split_inclusive(|b| *b == b'\n')
        .filter(|l| *l != b"\n")
        .count() as u64
}

fn inode(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

type Opened = (Box<dyn std::io::Write>, Option<u64>);

/// Opens the target; the writer batches lines itself, so nothing is
/// buffered here (a failed write leaves nothing to be written later).
fn open(target: &Target) -> Result<Opened, String> {
    Ok(match target {
        Target::Stdout => (Box::new(std::io::stdout()), None),
        Target::Stderr => (Box::new(std::io::stderr()), None),
        Target::File(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("opening {path}: {e}"))?;
            let ino = inode(path);
            (Box::new(f), ino)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            start: UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            started: Instant::now(),
            id: 7,
            downstream_remote: "127.0.0.9:40000".parse().unwrap(),
            downstream_local: Some("127.0.0.1:8443".parse().unwrap()),
            server_name: "db.default.dc1.internal.x.consul".into(),
            peer_uri: "spiffe://x.consul/ns/default/dc/dc1/svc/web".into(),
            tls_version: "TLSv1.3",
            cluster: "db.default.dc1.internal.x.consul".into(),
            upstream_host: "127.0.0.5:5432".into(),
            upstream_local: None,
            bytes_received: 12,
            bytes_sent: 34,
            flags: "-",
            termination: String::new(),
            upstream_failure: String::new(),
            downstream_failure: String::new(),
            listener: false,
        }
    }

    #[test]
    fn text_format() {
        let mut unknown = Vec::new();
        let p = parse(
            "[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% -> %UPSTREAM_HOST% %BYTES_RECEIVED%/%BYTES_SENT% %RESPONSE_FLAGS% %REQ(USER-AGENT)% %DOWNSTREAM_PEER_URI_SAN% %START_TIME(%s)% %NOPE% 100% %UPSTREAM_HOST:9%",
            &mut unknown,
        );
        assert_eq!(unknown, vec!["NOPE".to_string()]);
        let mut out = String::new();
        entry().text(&p, "h", &mut out);
        assert_eq!(
            out,
            "[2026-11-18T11:06:40.123Z] 127.0.0.9:40000 -> 127.0.0.5:5432 12/34 - - spiffe://x.consul/ns/default/dc/dc1/svc/web 1795000000 %NOPE% 100% 127.0.0.5"
        );
    }

    #[test]
    fn default_json_keeps_types() {
        let (sink, unknown, _) = build(
            &AccessLogsConfig {
                enabled: true,
                ..Default::default()
            },
            Arc::default(),
        );
        assert!(unknown.is_empty(), "{unknown:?}");
        let Format::Json(t) = &sink.format else {
            panic!("the default is JSON")
        };
        let v = entry().json(t, "h");
        assert_eq!(v["bytes_received"], 12);
        assert_eq!(v["bytes_sent"], 34);
        assert_eq!(v["response_code"], 0);
        assert_eq!(v["method"], Value::Null);
        assert_eq!(v["upstream_local_address"], Value::Null);
        assert_eq!(v["downstream_remote_address"], "127.0.0.9:40000");
        assert_eq!(v["start_time"], "2026-11-18T11:06:40.123Z");
        assert_eq!(v.as_object().unwrap().len(), DEFAULT_FORMAT.len());
    }

    /// A write that stops part-way says how much went out; lines are
    /// counted by their starts.
    #[test]
    fn partial_writes_and_line_counts() {
        struct Five(Vec<u8>);
        impl std::io::Write for Five {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let room = 5 - self.0.len();
                if room == 0 {
                    return Err(std::io::ErrorKind::StorageFull.into());
                }
                let n = room.min(b.len());
                self.0.extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = Five(Vec::new());
        let (n, r) = write_counted(&mut w, "é1\nline2\n".as_bytes());
        assert_eq!(n, 5);
        assert!(r.is_err());
        assert_eq!(lines_in("é1\nline2\n".as_bytes()), 2);
        assert_eq!(lines_in(b"\nabc\n"), 1);
        assert_eq!(lines_in(b"ab"), 1);
    }

    #[test]
    fn operators_with_arguments_and_lengths() {
        let mut unknown = Vec::new();
        assert_eq!(
            parse("%REQ(X-FOO):10%x", &mut unknown),
            vec![Piece::Op(Op::Unset, Some(10)), Piece::Text("x".into())]
        );
        assert_eq!(
            parse("%START_TIME(%Y)%", &mut unknown),
            vec![Piece::Op(Op::StartTime(Some("%Y".into())), None)]
        );
        assert_eq!(
            parse("50% off %", &mut unknown),
            vec![Piece::Text("50% off %".into())]
        );
        assert!(unknown.is_empty());
        assert_eq!(
            strftime("%Y/%m/%d %H:%M:%3f %z %q", 86_400_000 + 5),
            "1970/01/02 00:00:005 +0000 %q"
        );
    }
}
