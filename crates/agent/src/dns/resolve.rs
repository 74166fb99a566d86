//! Answers for names in our domains, from the state store, as the DNS token
//! sees it.
//!
//! The state lock is taken per lookup and released before anything else runs
//! (prepared queries and internal CNAME chasing take it again themselves).
//! Hostnames outside our domains that answers point to (external services
//! registered with a host name) are left in [`Answer::external`] for the
//! recursors, which are asked after the lock is gone.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use meshgate_acl::{Access, Resource};
use meshgate_state::State;
use meshgate_types::catalog::{CheckServiceNode, Node, NodeService, status};
use rand::seq::SliceRandom;
use tracing::warn;

use super::DnsSettings;
use super::name::{self, Lookup, Zone};
use crate::Agent;
use crate::acl::Identity;

/// How many times an answer may point back into our domain (a service whose
/// address is another of our names) before we stop following.
const MAX_RECURSION: u8 = 3;
/// Records taken from a resolved external name without EDNS.
const MAX_RECURSE_RECORDS: usize = 5;
/// Name servers listed for the domain.
const MAX_NAME_SERVERS: usize = 3;

/// Where records of an external name go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Answer,
    Additional,
}

/// A host name outside our domains to resolve through the recursors.
#[derive(Debug, Clone)]
pub(crate) struct External {
    pub target: Name,
    pub ttl: u32,
    pub section: Section,
    /// At most this many records (without EDNS).
    pub limit: Option<usize>,
}

/// The answer to one question, before size limits.
#[derive(Debug, Clone, Default)]
pub(crate) struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
    /// Add the zone's SOA to the authority section (negative answers).
    pub soa: bool,
    pub external: Vec<External>,
}

impl Answer {
    /// NXDOMAIN with the SOA.
    pub fn nxdomain() -> Answer {
        Answer {
            rcode: ResponseCode::NXDomain,
            soa: true,
            ..Default::default()
        }
    }

    /// NOERROR without records, with the SOA (RFC 2308 NODATA).
    pub fn nodata() -> Answer {
        Answer {
            soa: true,
            ..Default::default()
        }
    }

    /// Turns an empty positive answer into NODATA.
    fn or_nodata(mut self) -> Answer {
        if self.answers.is_empty() && self.rcode == ResponseCode::NoError {
            self.soa = true;
        }
        self
    }

    /// Writes the answer into a response.
    pub fn apply(self, cx: &Cx<'_>, resp: &mut Message) {
        resp.set_response_code(self.rcode);
        resp.add_answers(self.answers);
        resp.add_name_servers(self.authority);
        if self.soa {
            resp.add_name_server(soa_record(cx));
        }
        resp.add_additionals(self.additional);
    }
}

/// Logs that the DNS token does not resolve: a warning at most once a
/// minute (every question would log it), debug lines in between.
fn warn_unusable_token(why: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = crate::store::now_ms() / 1000;
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        warn!("DNS: the DNS token cannot be used ({why}); DNS answers nothing it would reveal");
    } else {
        tracing::debug!("DNS: the DNS token cannot be used ({why})");
    }
}

/// The context of one request.
pub(crate) struct Cx<'a> {
    pub agent: &'a Agent,
    pub settings: &'a DnsSettings,
    /// The zone the question is in (answers use its domain).
    pub zone: Zone,
    /// Whether the client sent EDNS.
    pub edns: bool,
    /// The DNS token's identity; None when the token is unusable (nothing is
    /// visible then).
    id: Option<Identity>,
    /// The DNS token itself (a key of the answer cache; never logged).
    secret: String,
    /// The client's address (prepared queries' `Near = "_ip"`).
    client: Option<std::net::IpAddr>,
}

impl<'a> Cx<'a> {
    /// The context of a request, resolving the DNS token (`acl.tokens.dns`,
    /// else the default token, else anonymous).
    pub fn new(
        agent: &'a Agent,
        settings: &'a DnsSettings,
        zone: Zone,
        edns: bool,
        client: Option<std::net::IpAddr>,
    ) -> Cx<'a> {
        let secret = agent.acl.tokens.read().dns.clone();
        let id = match agent.resolve_token(&secret) {
            Ok(id) => Some(id),
            Err(e) => {
                warn_unusable_token(&e.message);
                None
            }
        };
        Cx {
            agent,
            settings,
            zone,
            edns,
            id,
            secret,
            client,
        }
    }

    fn allows(&self, r: Resource, segment: &str) -> bool {
        self.id
            .as_ref()
            .is_some_and(|id| id.allows(r, Access::Read, segment))
    }

    fn domain(&self) -> String {
        self.settings.domain(self.zone)
    }

    /// Whether a datacenter label names ours (none given: ours).
    fn local(&self, dc: &Option<String>) -> bool {
        dc.as_ref()
            .is_none_or(|d| d.eq_ignore_ascii_case(&self.settings.datacenter))
    }

    /// `<prefix>.<domain>` as a name (None when it is no valid name).
    fn fqdn(&self, prefix: &str) -> Option<Name> {
        Name::from_ascii(format!("{prefix}.{}", self.domain())).ok()
    }

    /// `<node>.node.<dc>.<domain>`: the node's label prepended to a parsed
    /// `node.<dc>.<domain>` kept across questions (parsing whole names for
    /// every SRV target was a tenth of the DNS path's time).
    fn node_fqdn(&self, node: &Node) -> Option<Name> {
        static BASES: std::sync::LazyLock<parking_lot::Mutex<HashMap<String, Option<Name>>>> =
            std::sync::LazyLock::new(|| parking_lot::Mutex::new(HashMap::new()));
        let dc = dc_of(node, self.settings);
        if !node.node.contains('.') {
            let key = format!("node.{dc}.{}", self.domain());
            let base = {
                let mut bases = BASES.lock();
                if bases.len() > 256 {
                    bases.clear();
                }
                bases
                    .entry(key)
                    .or_insert_with_key(|k| Name::from_ascii(k).ok())
                    .clone()
            };
            let label = hickory_proto::rr::domain::Label::from_ascii(&node.node).ok();
            if let Some(n) = base.zip(label).and_then(|(b, l)| b.prepend_label(l).ok()) {
                return Some(n);
            }
        }
        self.fqdn(&format!("{}.node.{dc}", node.node))
    }
}

fn dc_of<'n>(node: &'n Node, settings: &'n DnsSettings) -> &'n str {
    if node.datacenter.is_empty() {
        &settings.datacenter
    } else {
        &node.datacenter
    }
}

/// The SOA of the request's zone.
pub(crate) fn soa_record(cx: &Cx<'_>) -> Record {
    let domain = cx.domain();
    let apex = Name::from_ascii(&domain).unwrap_or_else(|_| Name::root());
    let mname = Name::from_ascii(format!("ns.{domain}")).unwrap_or_else(|_| apex.clone());
    let rname = Name::from_ascii(format!("hostmaster.{domain}")).unwrap_or_else(|_| apex.clone());
    let soa = &cx.settings.soa;
    let serial = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1);
    let clamp = |v: u32| v.min(i32::MAX as u32) as i32;
    Record::from_rdata(
        apex,
        soa.min_ttl,
        RData::SOA(SOA::new(
            mname,
            rname,
            serial,
            clamp(soa.refresh),
            clamp(soa.retry),
            clamp(soa.expire),
            soa.min_ttl,
        )),
    )
}

/// Answers a question in one of our domains.
pub(crate) fn answer(cx: &Cx<'_>, qname: &Name, qtype: RecordType, lookup: &Lookup) -> Answer {
    match qtype {
        RecordType::SOA => {
            let (ns, glue) = name_servers(cx);
            Answer {
                answers: vec![soa_record(cx)],
                authority: ns,
                additional: glue,
                ..Default::default()
            }
        }
        RecordType::NS => {
            let (ns, glue) = name_servers(cx);
            Answer {
                answers: ns,
                additional: glue,
                ..Default::default()
            }
            .or_nodata()
        }
        RecordType::AXFR | RecordType::IXFR => Answer {
            rcode: ResponseCode::NotImp,
            ..Default::default()
        },
        _ => dispatch(cx, qname, qtype, lookup, MAX_RECURSION),
    }
}

fn dispatch(cx: &Cx<'_>, qname: &Name, qtype: RecordType, lookup: &Lookup, level: u8) -> Answer {
    match lookup {
        Lookup::Apex => Answer::nodata(),
        Lookup::Invalid => Answer::nxdomain(),
        Lookup::Service { service, tag, dc } => {
            if !cx.local(dc) {
                return Answer::nxdomain();
            }
            let (all, order) = service_entries(cx, service, tag.as_deref(), Kind::Plain);
            service_answer(
                cx,
                qname,
                qtype,
                &in_order(&all, &order),
                cx.settings.service_ttl(service),
                level,
            )
        }
        Lookup::Connect { service, dc } => {
            if !cx.local(dc) {
                return Answer::nxdomain();
            }
            let (all, order) = service_entries(cx, service, None, Kind::Connect);
            service_answer(
                cx,
                qname,
                qtype,
                &in_order(&all, &order),
                cx.settings.service_ttl(service),
                level,
            )
        }
        Lookup::Ingress { service, dc } => {
            if !cx.local(dc) {
                return Answer::nxdomain();
            }
            let (all, order) = service_entries(cx, service, None, Kind::Ingress);
            service_answer(
                cx,
                qname,
                qtype,
                &in_order(&all, &order),
                cx.settings.service_ttl(service),
                level,
            )
        }
        Lookup::Node { node, dc } => {
            if !cx.local(dc) {
                return Answer::nxdomain();
            }
            node_answer(cx, qname, qtype, node, level)
        }
        Lookup::Query { query, dc } => {
            if !cx.local(dc) {
                return Answer::nxdomain();
            }
            query_answer(cx, qname, qtype, query, level)
        }
        Lookup::Addr { ip, dc } => {
            if !cx.local(dc) {
                return Answer::nxdomain();
            }
            let ttl = cx.settings.node_ttl;
            let rec =
                match (ip, qtype) {
                    (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => {
                        Some(Record::from_rdata(qname.clone(), ttl, RData::A(A(*v4))))
                    }
                    (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(
                        Record::from_rdata(qname.clone(), ttl, RData::AAAA(AAAA(*v6))),
                    ),
                    _ => None,
                };
            Answer {
                answers: rec.into_iter().collect(),
                ..Default::default()
            }
            .or_nodata()
        }
    }
}

/// Which instances a service lookup wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// The service's own instances.
    Plain,
    /// Mesh-capable instances (`.connect`).
    Connect,
    /// Ingress gateways exposing it (`.ingress`).
    Ingress,
}

/// Whether an instance may be answered: no critical check (with
/// `only_passing`: every check passing).
fn healthy(e: &CheckServiceNode, only_passing: bool) -> bool {
    e.checks.iter().all(|c| {
        if only_passing {
            c.status == status::PASSING
        } else {
            c.status != status::CRITICAL
        }
    })
}

/// The ingress gateways exposing a service (`<service>.ingress.<domain>`).
///
/// Like the terminating-gateway links, the listeners of `ingress-gateway`
/// config entries are not in the state store yet, so there are none (the
/// HTTP API's `/v1/health/ingress/:service` answers an empty list too).
pub(crate) fn ingress_gateway_instances<'s>(
    _st: &'s State,
    _service: &str,
) -> Vec<(&'s Node, &'s NodeService)> {
    Vec::new()
}

/// What makes two lookups' instance lists the same: the agent, the DNS token,
/// the service, tag and kind, and `only_passing`.
type EntriesKey = (String, String, String, Option<String>, Kind, bool);

/// The instance lists of recent lookups, valid while the state's index is
/// the one they were made at (any write moves it): under load the same few
/// names are asked again and again, and building the list copies every
/// instance's node, service and checks.
static ENTRIES: std::sync::LazyLock<parking_lot::Mutex<EntriesCache>> =
    std::sync::LazyLock::new(|| parking_lot::Mutex::new(HashMap::new()));

/// Lookup → (the state index it was built at, its instances).
type EntriesCache = HashMap<EntriesKey, (u64, Arc<Vec<CheckServiceNode>>)>;

/// Beyond this many remembered lists the cache starts over.
const ENTRIES_MAX: usize = 4096;

/// The answerable instances of a lookup (healthy, visible to the DNS token)
/// and a random order to answer them in.
fn service_entries(
    cx: &Cx<'_>,
    service: &str,
    tag: Option<&str>,
    kind: Kind,
) -> (Arc<Vec<CheckServiceNode>>, Vec<usize>) {
    let key: EntriesKey = (
        cx.agent.node_id.clone(),
        cx.secret.clone(),
        service.to_ascii_lowercase(),
        tag.map(str::to_ascii_lowercase),
        kind,
        cx.settings.only_passing,
    );
    let index = cx.agent.store.read().index;
    let cached = ENTRIES
        .lock()
        .get(&key)
        .filter(|(i, _)| *i == index)
        .map(|(_, v)| v.clone());
    let list = match cached {
        Some(v) => v,
        None => {
            let (index, v) = build_entries(cx, service, tag, kind);
            let v = Arc::new(v);
            let mut cache = ENTRIES.lock();
            if cache.len() >= ENTRIES_MAX {
                cache.clear();
            }
            cache.insert(key, (index, v.clone()));
            v
        }
    };
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.shuffle(&mut rand::rng());
    (list, order)
}

/// The instances of `service` in `order`.
fn in_order<'e>(list: &'e [CheckServiceNode], order: &[usize]) -> Vec<&'e CheckServiceNode> {
    order.iter().filter_map(|i| list.get(*i)).collect()
}

/// Builds a lookup's instance list: healthy and visible to the DNS token;
/// with the state index it was read at.
fn build_entries(
    cx: &Cx<'_>,
    service: &str,
    tag: Option<&str>,
    kind: Kind,
) -> (u64, Vec<CheckServiceNode>) {
    let (index, mut list): (u64, Vec<CheckServiceNode>) = {
        let st = cx.agent.store.read();
        let v = match kind {
            Kind::Plain => {
                let tags: Vec<String> = tag.into_iter().map(str::to_string).collect();
                st.check_service_nodes(service, &tags).1
            }
            Kind::Connect => {
                // Proxies, native services and the terminating gateways the
                // service is linked to.
                // A gateway answers only while the service behind it has a
                // healthy instance (the way /v1/health/connect does).
                let behind_ok = st
                    .check_service_nodes(service, &[])
                    .1
                    .iter()
                    .any(|e| healthy(e, cx.settings.only_passing));
                let v = crate::http::catalog::connect_instances(&st, service);
                v.into_iter()
                    .filter(|(_, s)| {
                        behind_ok || s.kind != meshgate_config_entries::TERMINATING_GATEWAY
                    })
                    .map(|(n, s)| st.check_service_node(n, s))
                    .collect()
            }
            Kind::Ingress => ingress_gateway_instances(&st, service)
                .into_iter()
                .map(|(n, s)| st.check_service_node(n, s))
                .collect(),
        };
        (st.index, v)
    };
    let only_passing = cx.settings.only_passing;
    // Mesh and ingress lookups need read access to the service asked for.
    if kind != Kind::Plain && !cx.allows(Resource::Service, service) {
        return (index, Vec::new());
    }
    list.retain(|e| {
        healthy(e, only_passing)
            && cx.allows(Resource::Node, &e.node.node)
            && cx.allows(Resource::Service, &e.service.service)
    });
    (index, list)
}

/// Which address families a question takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    V4,
    V6,
    Any,
}

fn accept_for(qtype: RecordType) -> Accept {
    match qtype {
        RecordType::A => Accept::V4,
        RecordType::AAAA => Accept::V6,
        _ => Accept::Any,
    }
}

/// Picks the address to answer from the default one and the `lan_ipv4` /
/// `lan_ipv6` tagged ones: the tagged one of the wanted family, else the
/// default when it is of that family or a host name; "" when none fits.
fn translate(def: &str, v4: Option<&str>, v6: Option<&str>, accept: Accept) -> String {
    let v4 = v4.filter(|s| !s.is_empty());
    let v6 = v6.filter(|s| !s.is_empty());
    match accept {
        Accept::Any => v6.or(v4).unwrap_or(def).to_string(),
        Accept::V4 | Accept::V6 => {
            let tagged = if accept == Accept::V4 { v4 } else { v6 };
            if let Some(t) = tagged {
                return t.to_string();
            }
            match def.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) if accept == Accept::V4 => def.to_string(),
                Ok(IpAddr::V6(_)) if accept == Accept::V6 => def.to_string(),
                Ok(_) => String::new(),
                Err(_) => def.to_string(),
            }
        }
    }
}

fn node_address(n: &Node, accept: Accept) -> String {
    let tagged = |k: &str| {
        n.tagged_addresses
            .as_ref()
            .and_then(|t| t.get(k))
            .map(String::as_str)
    };
    translate(&n.address, tagged("lan_ipv4"), tagged("lan_ipv6"), accept)
}

fn service_address(s: &NodeService, accept: Accept) -> String {
    let tagged = |k: &str| s.tagged_addresses.get(k).map(|a| a.address.as_str());
    translate(&s.address, tagged("lan_ipv4"), tagged("lan_ipv6"), accept)
}

/// An A or AAAA record for an address, when the question takes that family
/// (SRV, ANY, NS and TXT questions take both).
fn ip_record(qtype: RecordType, ip: IpAddr, ttl: u32, name: Name) -> Option<Record> {
    let both = matches!(
        qtype,
        RecordType::SRV | RecordType::ANY | RecordType::NS | RecordType::TXT
    );
    match ip {
        IpAddr::V4(v4) if both || qtype == RecordType::A => {
            Some(Record::from_rdata(name, ttl, RData::A(A(v4))))
        }
        IpAddr::V6(v6) if both || qtype == RecordType::AAAA => {
            Some(Record::from_rdata(name, ttl, RData::AAAA(AAAA(v6))))
        }
        _ => None,
    }
}

/// The SRV weight of an instance: `Weights.Warning` when a check warns, else
/// `Weights.Passing`.
fn weight(e: &CheckServiceNode) -> u16 {
    let relevant = e
        .checks
        .iter()
        .filter(|c| c.service_name.is_empty() || c.service_name == e.service.service);
    let mut warning = false;
    for c in relevant {
        match c.status.as_str() {
            status::CRITICAL => return 0,
            status::WARNING => warning = true,
            _ => {}
        }
    }
    let w = if warning {
        e.service.weights.warning
    } else {
        e.service.weights.passing
    };
    w.clamp(0, u16::MAX as i64) as u16
}

/// Records of one instance.
#[derive(Default)]
struct Recs {
    answers: Vec<Record>,
    additional: Vec<Record>,
    external: Vec<External>,
}

fn srv_record(qname: &Name, ttl: u32, e: &CheckServiceNode, target: Name) -> Record {
    let port = e.service.port.clamp(0, u16::MAX as i64) as u16;
    Record::from_rdata(
        qname.clone(),
        ttl,
        RData::SRV(SRV::new(1, weight(e), port, target)),
    )
}

/// Records for an instance reached at an IP address: an SRV whose target is
/// `target` plus the address under that name, or the address itself.
fn records_for_ip(
    qname: &Name,
    qtype: RecordType,
    e: &CheckServiceNode,
    ip: IpAddr,
    ttl: u32,
    target: impl FnOnce() -> Option<Name>,
) -> Recs {
    let mut r = Recs::default();
    if qtype == RecordType::SRV {
        // The target's name is built only for SRV answers.
        let Some(target) = target() else {
            return r;
        };
        if let Some(rec) = ip_record(qtype, ip, ttl, target.clone()) {
            r.answers.push(srv_record(qname, ttl, e, target));
            r.additional.push(rec);
        }
    } else if let Some(rec) = ip_record(qtype, ip, ttl, qname.clone()) {
        r.answers.push(rec);
    }
    r
}

/// Records for an instance reached at a host name: an SRV targeting it (its
/// addresses as additional records) or a CNAME (followed by its addresses).
fn records_for_host(
    cx: &Cx<'_>,
    qname: &Name,
    qtype: RecordType,
    e: &CheckServiceNode,
    host: &str,
    ttl: u32,
    level: u8,
) -> Recs {
    let mut r = Recs::default();
    let Ok(mut target) = Name::from_ascii(host) else {
        return r;
    };
    target.set_fqdn(true);
    let section = if qtype == RecordType::SRV {
        r.answers.push(srv_record(qname, ttl, e, target.clone()));
        Section::Additional
    } else {
        r.answers.push(Record::from_rdata(
            qname.clone(),
            ttl,
            RData::CNAME(CNAME(target.clone())),
        ));
        Section::Answer
    };
    let (resolved, external) = resolve_cname(cx, &target, ttl, level, section);
    match section {
        Section::Answer => r.answers.extend(resolved),
        Section::Additional => r.additional.extend(resolved),
    }
    r.external.extend(external);
    r
}

/// The addresses of a host name an answer points to: from our own names
/// (followed here, a few levels deep), else left for the recursors.
fn resolve_cname(
    cx: &Cx<'_>,
    target: &Name,
    ttl: u32,
    level: u8,
    section: Section,
) -> (Vec<Record>, Option<External>) {
    let labels: Vec<String> = target
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    let limit = (!cx.edns).then_some(MAX_RECURSE_RECORDS);
    if let Some((zone, rest)) = cx.settings.domains.split(&labels) {
        if level == 0 {
            warn!("DNS: {target} points back into our domain too often, not following it");
            return (Vec::new(), None);
        }
        let lookup = name::parse_lookup(rest, false);
        let inner = Cx {
            agent: cx.agent,
            settings: cx.settings,
            zone,
            edns: cx.edns,
            id: cx.id.clone(),
            secret: cx.secret.clone(),
            client: cx.client,
        };
        let ans = dispatch(&inner, target, RecordType::ANY, &lookup, level - 1);
        let mut out: Vec<Record> = ans
            .answers
            .into_iter()
            .filter(|r| {
                matches!(
                    r.record_type(),
                    RecordType::A | RecordType::AAAA | RecordType::CNAME
                )
            })
            .map(|mut r| {
                r.set_ttl(ttl);
                r
            })
            .collect();
        if let Some(l) = limit {
            out.truncate(l);
        }
        return (out, None);
    }
    if cx.settings.recursors.is_empty() {
        return (Vec::new(), None);
    }
    (
        Vec::new(),
        Some(External {
            target: target.clone(),
            ttl,
            section,
            limit,
        }),
    )
}

/// The records of one instance, choosing between the service's and the
/// node's address as Consul does.
fn instance_records(
    cx: &Cx<'_>,
    qname: &Name,
    qtype: RecordType,
    e: &CheckServiceNode,
    ttl: u32,
    level: u8,
) -> Recs {
    let accept = accept_for(qtype);
    let svc_addr = service_address(&e.service, accept);
    let node_addr = node_address(&e.node, accept);
    if svc_addr.is_empty() && node_addr.is_empty() {
        return Recs::default();
    }
    let node_ip = node_addr.parse::<IpAddr>().ok();
    let svc_ip = svc_addr.parse::<IpAddr>().ok();
    let addr_target = |ip: IpAddr| {
        cx.fqdn(&format!(
            "{}.addr.{}",
            name::ip_to_hex(ip),
            dc_of(&e.node, cx.settings)
        ))
    };
    if svc_addr.is_empty() {
        return match node_ip {
            // A tagged address replaced the node's own: name it by address.
            Some(ip) if node_addr != e.node.address => {
                records_for_ip(qname, qtype, e, ip, ttl, || addr_target(ip))
            }
            Some(ip) => records_for_ip(qname, qtype, e, ip, ttl, || cx.node_fqdn(&e.node)),
            None => records_for_host(cx, qname, qtype, e, &node_addr, ttl, level),
        };
    }
    if let Some(ip) = svc_ip {
        return records_for_ip(qname, qtype, e, ip, ttl, || addr_target(ip));
    }
    // A service address naming the very service asked for: use the node.
    let same = Name::from_ascii(&svc_addr)
        .map(|mut n| {
            n.set_fqdn(true);
            n.eq(qname)
        })
        .unwrap_or(false);
    if let (true, Some(ip)) = (same, node_ip) {
        return records_for_ip(qname, qtype, e, ip, ttl, || cx.node_fqdn(&e.node));
    }
    records_for_host(cx, qname, qtype, e, &svc_addr, ttl, level)
}

/// RFC 1464 `key=value`, with `` ` `` escaping `=`, `` ` `` and edge spaces of
/// the key.
fn rfc1464(key: &str, value: &str) -> String {
    let mut k = String::new();
    let lead = key.len() - key.trim_start_matches(' ').len();
    let trail = key.len() - key.trim_end_matches(' ').len();
    for (i, c) in key.chars().enumerate() {
        match c {
            '`' => k.push_str("``"),
            '=' => k.push_str("`="),
            ' ' if i < lead || i >= key.len() - trail => k.push_str("` "),
            c => k.push(c),
        }
    }
    format!("{k}={}", value.replace('`', "``"))
}

/// TXT records of a node's metadata (`rfc1035-` keys: the value alone).
fn meta_txt(node: &Node, name: &Name, ttl: u32) -> Vec<Record> {
    node.meta
        .iter()
        .flatten()
        .map(|(k, v)| {
            let txt = if k.to_ascii_lowercase().starts_with("rfc1035-") {
                v.clone()
            } else {
                rfc1464(k, v)
            };
            Record::from_rdata(name.clone(), ttl, RData::TXT(TXT::new(vec![txt])))
        })
        .collect()
}

/// The answer of a service-like lookup (also prepared queries). Nothing
/// found: NXDOMAIN; found but no record of the asked type: NODATA.
fn service_answer(
    cx: &Cx<'_>,
    qname: &Name,
    qtype: RecordType,
    entries: &[&CheckServiceNode],
    ttl: u32,
    level: u8,
) -> Answer {
    if entries.is_empty() {
        return Answer::nxdomain();
    }
    let mut ans = Answer::default();
    if qtype == RecordType::SRV {
        let mut seen = HashSet::new();
        let mut meta_done = HashSet::new();
        for e in entries {
            let addr = service_address(&e.service, Accept::Any);
            if !seen.insert((e.node.node.clone(), addr, e.service.port)) {
                continue;
            }
            let r = instance_records(cx, qname, qtype, e, ttl, level);
            ans.answers.extend(r.answers);
            ans.additional.extend(r.additional);
            ans.external.extend(r.external);
            if cx.settings.node_meta_txt
                && meta_done.insert(e.node.node.clone())
                && let Some(n) = cx.node_fqdn(&e.node)
            {
                ans.additional.extend(meta_txt(&e.node, &n, ttl));
            }
        }
        return ans.or_nodata();
    }
    let limit = cx.settings.a_record_limit;
    let mut seen: Vec<RData> = Vec::new();
    let mut cname: Option<Recs> = None;
    let mut count = 0;
    for e in entries {
        let r = instance_records(cx, qname, qtype, e, ttl, level);
        let Some(first) = r.answers.first() else {
            continue;
        };
        if seen.contains(first.data()) {
            continue;
        }
        seen.push(first.data().clone());
        if first.record_type() == RecordType::CNAME {
            // Used only when no instance has an address.
            if cname.is_none() {
                cname = Some(r);
            }
            continue;
        }
        ans.answers.extend(r.answers);
        count += 1;
        if limit > 0 && count >= limit {
            break;
        }
    }
    if ans.answers.is_empty()
        && let Some(c) = cname
    {
        ans.answers = c.answers;
        ans.external = c.external;
    }
    ans.or_nodata()
}

/// `<node>.node.<domain>`: its address (A/AAAA, a CNAME for a host name) and
/// its metadata as TXT records (answers for TXT and ANY questions, else
/// additional records when `enable_additional_node_meta_txt`).
fn node_answer(cx: &Cx<'_>, qname: &Name, qtype: RecordType, node: &str, level: u8) -> Answer {
    let found = cx.agent.store.read().node(node).cloned();
    let Some(n) = found else {
        return Answer::nxdomain();
    };
    if !cx.allows(Resource::Node, &n.node) {
        return Answer::nxdomain();
    }
    if !matches!(
        qtype,
        RecordType::ANY | RecordType::A | RecordType::AAAA | RecordType::TXT
    ) {
        return Answer::nodata();
    }
    let ttl = cx.settings.node_ttl;
    let mut ans = Answer::default();
    if qtype != RecordType::TXT {
        let (recs, ext) = node_records(cx, &n, qtype, qname, ttl, level);
        ans.answers.extend(recs);
        ans.external.extend(ext);
    }
    let meta = meta_txt(&n, qname, ttl);
    if matches!(qtype, RecordType::TXT | RecordType::ANY) {
        ans.answers.extend(meta);
    } else if cx.settings.node_meta_txt {
        ans.additional.extend(meta);
    }
    ans.or_nodata()
}

/// The address records of a node under `name`.
fn node_records(
    cx: &Cx<'_>,
    n: &Node,
    qtype: RecordType,
    name: &Name,
    ttl: u32,
    level: u8,
) -> (Vec<Record>, Option<External>) {
    let addr = node_address(n, accept_for(qtype));
    if addr.is_empty() {
        return (Vec::new(), None);
    }
    match addr.parse::<IpAddr>() {
        Ok(ip) => (
            ip_record(qtype, ip, ttl, name.clone())
                .into_iter()
                .collect(),
            None,
        ),
        Err(_) => {
            let Ok(mut target) = Name::from_ascii(&addr) else {
                return (Vec::new(), None);
            };
            target.set_fqdn(true);
            let mut out = vec![Record::from_rdata(
                name.clone(),
                ttl,
                RData::CNAME(CNAME(target.clone())),
            )];
            let (more, ext) = resolve_cname(cx, &target, ttl, level, Section::Answer);
            out.extend(more);
            (out, ext)
        }
    }
}

/// `<query>.query.<domain>`: runs the prepared query with the DNS token (or
/// the query's own token) and answers its instances. TTL: the query's
/// `DNS.TTL`, else the service's `service_ttl`.
fn query_answer(cx: &Cx<'_>, qname: &Name, qtype: RecordType, query: &str, level: u8) -> Answer {
    let caller = || {
        cx.id
            .clone()
            .ok_or_else(|| crate::http::ApiError::forbidden(meshgate_acl::ERR_NOT_FOUND))
    };
    let ran = crate::http::query::execute_query(cx.agent, query, caller, false, 0, None, cx.client);
    let ex = match ran {
        Ok(ex) => ex,
        Err(e) => {
            if e.status != axum::http::StatusCode::NOT_FOUND {
                warn!("DNS: prepared query {query:?} failed: {}", e.message);
            }
            return Answer::nxdomain();
        }
    };
    let ttl = if ex.query.dns.ttl.is_empty() {
        cx.settings.service_ttl(&ex.query.service.service)
    } else {
        meshgate_types::duration::parse(&ex.query.dns.ttl)
            .map(|d| d.as_secs().min(u32::MAX as u64) as u32)
            .unwrap_or(0)
    };
    let nodes: Vec<&CheckServiceNode> = ex.nodes.iter().collect();
    service_answer(cx, qname, qtype, &nodes, ttl, level)
}

/// NS records for the domain (up to three servers, the `consul` service)
/// and their addresses.
fn name_servers(cx: &Cx<'_>) -> (Vec<Record>, Vec<Record>) {
    let Some(apex) = Name::from_ascii(cx.domain()).ok() else {
        return (Vec::new(), Vec::new());
    };
    let mut ns = Vec::new();
    let mut glue = Vec::new();
    let (all, order) = service_entries(cx, "consul", None, Kind::Plain);
    for e in in_order(&all, &order) {
        let valid = e
            .node
            .node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            continue;
        }
        let Some(target) = cx.node_fqdn(&e.node).map(|n| n.to_lowercase()) else {
            continue;
        };
        ns.push(Record::from_rdata(
            apex.clone(),
            cx.settings.node_ttl,
            RData::NS(NS(target.clone())),
        ));
        let (recs, _) = node_records(
            cx,
            &e.node,
            RecordType::ANY,
            &target,
            cx.settings.node_ttl,
            MAX_RECURSION,
        );
        glue.extend(recs);
        if ns.len() >= MAX_NAME_SERVERS {
            break;
        }
    }
    (ns, glue)
}

/// PTR records for an address: the node with that address, else a service
/// instance registered with it (`<service>.service.<dc>.<domain>`).
pub(crate) fn ptr(cx: &Cx<'_>, qname: &Name, ip: IpAddr) -> Vec<Record> {
    let is = |a: &str| a.parse::<IpAddr>().is_ok_and(|x| x == ip);
    let target = {
        let st = cx.agent.store.read();
        let node = st
            .nodes()
            .1
            .into_iter()
            .find(|n| is(&n.address) && cx.allows(Resource::Node, &n.node))
            .map(|n| format!("{}.node.{}", n.node, dc_of(n, cx.settings)));
        node.or_else(|| {
            st.all_service_instances()
                .find(|(n, s)| {
                    is(&s.address)
                        && cx.allows(Resource::Service, &s.service)
                        && cx.allows(Resource::Node, &n.node)
                })
                .map(|(n, s)| format!("{}.service.{}", s.service, dc_of(n, cx.settings)))
        })
    };
    target
        .and_then(|t| cx.fqdn(&t))
        .map(|t| Record::from_rdata(qname.clone(), 0, RData::PTR(PTR(t))))
        .into_iter()
        .collect()
}
