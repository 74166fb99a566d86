//! The DNS interface: answers `<service>.service.consul`, `<node>.node.consul`,
//! `<query>.query.consul`, reverse lookups and the rest of Consul's DNS names
//! over UDP and TCP (default port 8600), and forwards other names to the
//! configured recursors.
//!
//! hickory-proto does the wire format; the name forms are in [`name`], the
//! lookups against the state in `resolve`, forwarding in `recursor`. This
//! module owns the sockets, the per-request flow, EDNS and the size limits
//! (truncation over UDP, the 64 KiB cap over TCP). See `docs/dns.md`.

pub mod name;
mod recursor;
mod resolve;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

use crate::config::{Config, ConfigError, DnsSoaConfig};
use crate::{Agent, AgentError, stopped};
pub use name::{Domains, Lookup, Target, Zone};

/// Largest UDP answer without EDNS (RFC 1035).
const DEFAULT_UDP_SIZE: usize = 512;
/// Largest UDP answer with EDNS, whatever the client advertises (what fits in
/// one datagram with IP and UDP headers).
const MAX_UDP_SIZE: usize = 65535 - 68;
/// Largest TCP answer (the two-byte length prefix).
const MAX_TCP_SIZE: usize = 65535;
/// Answers a UDP response without EDNS carries at most, whatever
/// `udp_answer_limit` says (as Consul).
const MAX_UDP_ANSWER_LIMIT: usize = 8;
/// Requests handled at once over UDP; more are dropped (the client retries).
const MAX_UDP_IN_FLIGHT: usize = 1024;
/// Open TCP connections at once; more wait in the accept queue.
const MAX_TCP_CONNS: usize = 512;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The DNS settings of an agent, checked and ready to use (from `domain`,
/// `alt_domain`, `recursors` and `dns_config`).
#[derive(Debug, Clone)]
pub struct DnsSettings {
    pub domains: Domains,
    pub datacenter: String,
    pub node_ttl: u32,
    service_ttl_exact: HashMap<String, u32>,
    /// `prefix*` entries, longest prefix first.
    service_ttl_prefix: Vec<(String, u32)>,
    pub only_passing: bool,
    pub enable_truncate: bool,
    pub udp_answer_limit: usize,
    pub a_record_limit: usize,
    pub recursors: Vec<SocketAddr>,
    pub recursor_random: bool,
    pub recursor_timeout: Duration,
    pub compress: bool,
    pub node_meta_txt: bool,
    pub soa: DnsSoaConfig,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings::from_config(&Config::default()).expect("the default DNS settings are valid")
    }
}

fn ttl_secs(key: &str, v: &str) -> Result<u32, ConfigError> {
    let d = meshgate_types::duration::parse(v).map_err(|_| {
        ConfigError(format!(
            "{key}: invalid duration \"{v}\": use a duration such as \"10s\""
        ))
    })?;
    Ok(d.as_secs().min(u32::MAX as u64) as u32)
}

/// `1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]:53` → a socket address (port 53
/// when none is given).
pub fn recursor_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'))
        && let Ok(ip) = inner.parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "invalid recursor address \"{s}\": use an IP address with an optional port"
    ))
}

impl DnsSettings {
    /// Checks and converts the DNS part of a configuration.
    pub fn from_config(c: &Config) -> Result<DnsSettings, ConfigError> {
        let primary = name::parse_domain(&c.domain)
            .map_err(|e| ConfigError(format!("domain: invalid value \"{}\": {e}", c.domain)))?;
        let alt = if c.alt_domain.trim().is_empty() {
            None
        } else {
            let alt = name::parse_domain(&c.alt_domain).map_err(|e| {
                ConfigError(format!(
                    "alt_domain: invalid value \"{}\": {e}",
                    c.alt_domain
                ))
            })?;
            if alt == primary {
                return Err(ConfigError(format!(
                    "alt_domain: \"{}\" is the same as domain",
                    c.alt_domain
                )));
            }
            Some(alt)
        };
        let d = &c.dns_config;
        let node_ttl = ttl_secs("dns_config.node_ttl", &d.node_ttl)?;
        ttl_secs("dns_config.max_stale", &d.max_stale)?;
        let mut service_ttl_exact = HashMap::new();
        let mut service_ttl_prefix = Vec::new();
        for (k, v) in &d.service_ttl {
            let ttl = ttl_secs(&format!("dns_config.service_ttl.{k}"), v)?;
            let k = k.to_lowercase();
            match k.strip_suffix('*') {
                Some(prefix) => service_ttl_prefix.push((prefix.to_string(), ttl)),
                None => {
                    service_ttl_exact.insert(k, ttl);
                }
            }
        }
        service_ttl_prefix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        if d.udp_answer_limit < 0 {
            return Err(ConfigError(format!(
                "dns_config.udp_answer_limit: invalid value {}: must be 0 or more",
                d.udp_answer_limit
            )));
        }
        if d.a_record_limit < 0 {
            return Err(ConfigError(format!(
                "dns_config.a_record_limit: invalid value {}: must be 0 or more",
                d.a_record_limit
            )));
        }
        let recursor_random = match d.recursor_strategy.to_ascii_lowercase().as_str() {
            "" | "sequential" => false,
            "random" => true,
            other => {
                return Err(ConfigError(format!(
                    "dns_config.recursor_strategy: invalid value \"{other}\": use \"sequential\" or \"random\""
                )));
            }
        };
        let recursor_timeout = meshgate_types::duration::parse(&d.recursor_timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                ConfigError(format!(
                    "dns_config.recursor_timeout: invalid duration \"{}\"",
                    d.recursor_timeout
                ))
            })?;
        let recursors = c
            .recursors
            .iter()
            .map(|r| recursor_addr(r).map_err(|e| ConfigError(format!("recursors: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DnsSettings {
            domains: Domains { primary, alt },
            datacenter: c.datacenter.to_lowercase(),
            node_ttl,
            service_ttl_exact,
            service_ttl_prefix,
            only_passing: d.only_passing,
            enable_truncate: d.enable_truncate,
            udp_answer_limit: d.udp_answer_limit as usize,
            a_record_limit: d.a_record_limit as usize,
            recursors,
            recursor_random,
            recursor_timeout,
            compress: !d.disable_compression,
            node_meta_txt: d.enable_additional_node_meta_txt,
            soa: d.soa.clone(),
        })
    }

    /// The TTL of a service's records: an exact `service_ttl` entry, else the
    /// longest matching `prefix*` entry (`*` matches all), else 0.
    pub fn service_ttl(&self, service: &str) -> u32 {
        let s = service.to_lowercase();
        if let Some(t) = self.service_ttl_exact.get(&s) {
            return *t;
        }
        self.service_ttl_prefix
            .iter()
            .find(|(p, _)| s.starts_with(p.as_str()))
            .map(|(_, t)| *t)
            .unwrap_or(0)
    }

    /// The domain of a zone as written in answers (`consul.`).
    pub fn domain(&self, zone: Zone) -> String {
        let mut s = self.domains.labels(zone).join(".");
        s.push('.');
        s
    }
}

/// How a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Agent {
    /// The DNS settings in force (replaced on reload).
    pub fn dns_settings(&self) -> Arc<DnsSettings> {
        self.dns.read().clone()
    }
}

/// Binds the DNS listeners (UDP and TCP on every DNS address) and starts
/// serving. Returns the tasks and the addresses bound.
pub(crate) async fn start(
    agent: &Arc<Agent>,
) -> Result<(Vec<tokio::task::JoinHandle<()>>, Vec<SocketAddr>), AgentError> {
    let port = agent.config.ports.dns;
    let mut tasks = Vec::new();
    let mut bound = Vec::new();
    if port <= 0 {
        return Ok((tasks, bound));
    }
    for addr in agent.config.dns_addrs() {
        if addr.parse::<IpAddr>().is_err() {
            // A unix socket in client_addr serves HTTP only.
            warn!("DNS: not listening on {addr}: not an IP address");
            continue;
        }
        let sa = format!("{}:{port}", crate::bracket(&addr));
        let err = |proto: &'static str, source: std::io::Error| AgentError::DnsBind {
            addr: sa.clone(),
            proto,
            source,
        };
        let udp = UdpSocket::bind(&sa).await.map_err(|e| err("udp", e))?;
        let tcp = crate::bind_listener(&sa).map_err(|e| err("tcp", e))?;
        let local = udp.local_addr().map_err(|e| err("udp", e))?;
        bound.push(local);
        tasks.push(tokio::spawn(serve_udp(
            agent.clone(),
            Arc::new(udp),
            agent.shutdown_signal(),
        )));
        tasks.push(tokio::spawn(serve_tcp(
            agent.clone(),
            tcp,
            agent.shutdown_signal(),
        )));
    }
    Ok((tasks, bound))
}

async fn serve_udp(agent: Arc<Agent>, sock: Arc<UdpSocket>, mut stop: watch::Receiver<bool>) {
    let in_flight = Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT));
    let mut buf = vec![0u8; 65535];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // ICMP errors of earlier replies surface here; go on.
                        debug!("DNS UDP receive error: {e}");
                        continue;
                    }
                };
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    debug!("DNS: too many requests in flight, dropping one from {peer}");
                    continue;
                };
                let packet = buf[..n].to_vec();
                let agent = agent.clone();
                let sock = sock.clone();
                tokio::spawn(async move {
                    if let Some(resp) = handle(&agent, &packet, Transport::Udp, Some(peer.ip())).await
                        && let Err(e) = sock.send_to(&resp, peer).await
                    {
                        debug!("DNS: failed to respond to {peer}: {e}");
                    }
                    drop(permit);
                });
            }
            _ = stopped(&mut stop) => break,
        }
    }
}

async fn serve_tcp(
    agent: Arc<Agent>,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Semaphore::new(MAX_TCP_CONNS));
    loop {
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        warn!("DNS TCP accept error: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let agent = agent.clone();
                let stop = agent.shutdown_signal();
                tokio::spawn(async move {
                    serve_tcp_conn(agent, stream, stop).await;
                    drop(permit);
                });
            }
            _ = stopped(&mut stop) => break,
        }
    }
}

/// Serves one TCP connection: length-prefixed messages, answered in order,
/// until the client closes, stays idle too long, or the agent stops.
async fn serve_tcp_conn(agent: Arc<Agent>, mut stream: TcpStream, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let client = stream.peer_addr().ok().map(|a| a.ip());
    loop {
        let read = async {
            let len = stream.read_u16().await? as usize;
            let mut msg = vec![0u8; len];
            stream.read_exact(&mut msg).await?;
            Ok::<_, std::io::Error>(msg)
        };
        let msg = tokio::select! {
            r = tokio::time::timeout(TCP_IDLE, read) => match r {
                Ok(Ok(m)) => m,
                _ => return,
            },
            _ = stopped(&mut stop) => return,
        };
        let Some(resp) = handle(&agent, &msg, Transport::Tcp, client).await else {
            return;
        };
        let mut out = Vec::with_capacity(resp.len() + 2);
        out.extend_from_slice(&(resp.len() as u16).to_be_bytes());
        out.extend_from_slice(&resp);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// A reply that only echoes the header of an undecodable request with
/// FORMERR (nothing when not even the header is there, or it is a response).
fn format_error(packet: &[u8]) -> Option<Vec<u8>> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return None;
    }
    let mut m = Message::new();
    m.set_id(u16::from_be_bytes([packet[0], packet[1]]))
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::from_u8((packet[2] >> 3) & 0x0f))
        .set_response_code(ResponseCode::FormErr);
    m.to_vec().ok()
}

/// Answers one request; `None` when there is nothing to send back.
pub async fn handle(
    agent: &Agent,
    packet: &[u8],
    transport: Transport,
    client: Option<IpAddr>,
) -> Option<Vec<u8>> {
    let settings = agent.dns_settings();
    let req = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(e) => {
            debug!("DNS: undecodable request: {e}");
            return format_error(packet);
        }
    };
    if req.message_type() != MessageType::Query {
        return None;
    }
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_checking_disabled(req.checking_disabled())
        .set_recursion_available(!settings.recursors.is_empty());
    resp.add_queries(req.queries().iter().cloned());
    let edns = req.extensions().as_ref();
    if req.op_code() != OpCode::Query {
        resp.set_response_code(ResponseCode::NotImp);
    } else if req.queries().len() != 1 {
        resp.set_response_code(ResponseCode::FormErr);
    } else if edns.is_some_and(|e| e.version() > 0) {
        resp.set_response_code(ResponseCode::BADVERS);
    } else {
        let q = &req.queries()[0];
        let labels: Vec<String> = q
            .name()
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        let target = name::classify(
            &labels,
            q.query_type() == RecordType::SRV,
            &settings.domains,
        );
        let cx = |zone| resolve::Cx::new(agent, &settings, zone, edns.is_some(), client);
        match target {
            Target::Ours { zone, lookup } => {
                let cx = cx(zone);
                let answer = resolve::answer(&cx, q.name(), q.query_type(), &lookup);
                let answer = recursor::complete(&settings, answer).await;
                answer.apply(&cx, &mut resp);
                resp.set_authoritative(true);
            }
            Target::Reverse(ip) => {
                // PTR targets are in the primary domain.
                let cx = cx(Zone::Primary);
                let found = ip
                    .map(|ip| resolve::ptr(&cx, q.name(), ip))
                    .unwrap_or_default();
                if found.is_empty() && !settings.recursors.is_empty() {
                    return forward(&settings, &req, packet, transport).await;
                }
                let mut answer = resolve::Answer::default();
                if found.is_empty() {
                    answer = resolve::Answer::nxdomain();
                } else {
                    answer.answers = found;
                }
                answer.apply(&cx, &mut resp);
                resp.set_authoritative(true);
            }
            Target::Other => {
                if !settings.recursors.is_empty() {
                    return forward(&settings, &req, packet, transport).await;
                }
                // Not ours and nowhere to send it.
                resp.set_response_code(ResponseCode::Refused);
            }
        }
    }
    if let Some(req_edns) = edns {
        resp.set_edns(response_edns(req_edns));
    }
    finish(&settings, &req, resp, transport)
}

/// The OPT record of a response: the client's payload size (at least 512),
/// version 0, and its client-subnet option echoed as valid for every client
/// (answers do not depend on the client's address).
fn response_edns(req: &Edns) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(req.max_payload().max(DEFAULT_UDP_SIZE as u16));
    e.set_version(0);
    if let Some(EdnsOption::Subnet(s)) = req.option(EdnsCode::Subnet) {
        let mut s = *s;
        s.set_scope_prefix(0);
        e.options_mut().insert(EdnsOption::Subnet(s));
    }
    e
}

/// Forwards a request to the recursors; SERVFAIL when none answers.
async fn forward(
    settings: &DnsSettings,
    req: &Message,
    packet: &[u8],
    transport: Transport,
) -> Option<Vec<u8>> {
    if let Some(bytes) = recursor::forward(settings, packet, transport).await {
        return Some(bytes);
    }
    let q = req
        .queries()
        .first()
        .map(|q| q.to_string())
        .unwrap_or_default();
    warn!("DNS: every recursor failed for {q}");
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::ServFail);
    resp.add_queries(req.queries().iter().cloned());
    if let Some(e) = req.extensions() {
        resp.set_edns(response_edns(e));
    }
    finish(settings, req, resp, transport)
}

/// Encodes a message, compressed or not.
pub(crate) fn encode(msg: &Message, compress: bool) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_canonical_names(!compress);
    match msg.emit(&mut enc) {
        Ok(()) => Some(buf),
        Err(e) => {
            warn!("DNS: cannot encode a response: {e}");
            None
        }
    }
}

/// Keeps the additional records an SRV answer still needs after answers were
/// dropped: those named after a remaining SRV target (and CNAME chains from
/// there). Answers without SRV records keep their additional section.
fn sync_additional(resp: &mut Message, all: &[Record]) {
    let mut wanted: HashSet<String> = resp
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(srv) => Some(srv.target().to_lowercase().to_ascii()),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    // Follow CNAMEs among the additional records.
    loop {
        let more: Vec<String> = all
            .iter()
            .filter(|r| wanted.contains(&r.name().to_lowercase().to_ascii()))
            .filter_map(|r| match r.data() {
                RData::CNAME(c) => Some(c.0.to_lowercase().to_ascii()),
                _ => None,
            })
            .filter(|t| !wanted.contains(t))
            .collect();
        if more.is_empty() {
            break;
        }
        wanted.extend(more);
    }
    let keep: Vec<Record> = all
        .iter()
        .filter(|r| wanted.contains(&r.name().to_lowercase().to_ascii()))
        .cloned()
        .collect();
    *resp.additionals_mut() = keep;
}

/// Cuts a response to its size limit and encodes it.
///
/// UDP without EDNS: at most `udp_answer_limit` answers (never more than 8)
/// and 512 bytes; UDP with EDNS: the client's advertised size; TCP: 64 KiB.
/// Answers are dropped from the end (the list is shuffled already), the
/// authority section first. TC is set when answers had to go to fit the
/// size — the client should ask again over TCP — and, with
/// `enable_truncate`, whenever answers were dropped.
fn finish(
    settings: &DnsSettings,
    req: &Message,
    mut resp: Message,
    transport: Transport,
) -> Option<Vec<u8>> {
    let compress = settings.compress;
    let max = match transport {
        Transport::Tcp => MAX_TCP_SIZE,
        Transport::Udp => match req.extensions() {
            Some(e) => (e.max_payload() as usize).clamp(DEFAULT_UDP_SIZE, MAX_UDP_SIZE),
            None => DEFAULT_UDP_SIZE,
        },
    };
    let all_additional = resp.additionals().to_vec();
    let mut cut = false;
    if transport == Transport::Udp && req.extensions().is_none() {
        let limit = settings.udp_answer_limit.min(MAX_UDP_ANSWER_LIMIT);
        if resp.answers().len() > limit {
            resp.answers_mut().truncate(limit);
            sync_additional(&mut resp, &all_additional);
            cut = true;
        }
    }
    let mut bytes = encode(&resp, compress)?;
    let answers_before = resp.answers().len();
    if bytes.len() > max {
        resp.name_servers_mut().clear();
        bytes = encode(&resp, compress)?;
        if bytes.len() > max && resp.answers().len() > 1 {
            // The longest prefix of the answers that fits: binary search.
            let answers = resp.answers().to_vec();
            let (mut lo, mut hi) = (1usize, answers.len());
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                *resp.answers_mut() = answers[..mid].to_vec();
                sync_additional(&mut resp, &all_additional);
                match encode(&resp, compress) {
                    Some(b) if b.len() <= max => lo = mid,
                    _ => hi = mid - 1,
                }
            }
            *resp.answers_mut() = answers[..lo].to_vec();
            sync_additional(&mut resp, &all_additional);
            bytes = encode(&resp, compress)?;
        }
        if bytes.len() > max {
            resp.additionals_mut().clear();
            bytes = encode(&resp, compress)?;
        }
        if bytes.len() > max {
            resp.answers_mut().clear();
            bytes = encode(&resp, compress)?;
        }
    }
    let size_cut = resp.answers().len() < answers_before;
    let tc = (size_cut && transport == Transport::Udp)
        || ((cut || size_cut) && settings.enable_truncate);
    if tc {
        resp.set_truncated(true);
        bytes = encode(&resp, compress)?;
    }
    Some(bytes)
}
