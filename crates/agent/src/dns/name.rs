//! What a question name asks for: the pure, table-driven part of the DNS
//! interface (no state, no sockets), tested on its own.
//!
//! Names are compared case-insensitively: the caller passes the labels in
//! lower case. The forms, right to left after the domain:
//!
//! | form | lookup |
//! |---|---|
//! | `[tag.]<service>.service[.<dc>]` | service instances (tag may contain dots) |
//! | `_<service>._<tag>[.service][.<dc>]` | RFC 2782; `_tcp` means no tag; without `service` only for SRV |
//! | `<service>.connect[.<dc>]` | mesh-capable instances |
//! | `<service>.ingress[.<dc>]` | ingress gateways exposing the service |
//! | `<node>.node[.<dc>]` | a node (name may contain dots) |
//! | `<query>.query[.<dc>]`, `_<query>._<proto>.query[.<dc>]` | a prepared query |
//! | `<hex-ip>.addr[.<dc>]` | an address encoded in hex (SRV targets) |
//!
//! The datacenter may also be written `<dc>.dc`. Cluster peers (`.peer`),
//! named ports (`.port`), namespaces and partitions do not exist in meshgate:
//! such names are unknown (NXDOMAIN), as is every other label.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The lookup a name in one of our domains asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Service instances, optionally with a tag, in a datacenter (None: ours).
    Service {
        service: String,
        tag: Option<String>,
        dc: Option<String>,
    },
    /// Mesh-capable instances of a service.
    Connect { service: String, dc: Option<String> },
    /// Ingress gateways exposing a service.
    Ingress { service: String, dc: Option<String> },
    /// A node.
    Node { node: String, dc: Option<String> },
    /// A prepared query by ID or name.
    Query { query: String, dc: Option<String> },
    /// An IP address written in hex.
    Addr { ip: IpAddr, dc: Option<String> },
    /// The domain itself.
    Apex,
    /// A name in our domain that matches no form: NXDOMAIN.
    Invalid,
}

/// Which of our domains a name is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Primary,
    Alt,
}

/// What a question name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A name in one of our domains.
    Ours { zone: Zone, lookup: Lookup },
    /// A reverse name under `in-addr.arpa.` or `ip6.arpa.`: the address when
    /// the name spells a whole one.
    Reverse(Option<IpAddr>),
    /// Anything else: for the recursors.
    Other,
}

/// Parses a domain as configured (`consul`, `consul.`, `Example.COM.`) into
/// lower-case labels; an error says why it is not usable.
pub fn parse_domain(s: &str) -> Result<Vec<String>, String> {
    let trimmed = s.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return Err("must not be empty or the root".into());
    }
    let labels: Vec<String> = trimmed.split('.').map(|l| l.to_ascii_lowercase()).collect();
    for l in &labels {
        if l.is_empty()
            || l.len() > 63
            || !l
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("invalid label \"{l}\""));
        }
    }
    Ok(labels)
}

/// The domains we answer for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domains {
    pub primary: Vec<String>,
    pub alt: Option<Vec<String>>,
}

impl Domains {
    /// The zone a name is in and the labels before the domain. When both
    /// domains match (one is a suffix of the other) the longer one wins.
    pub fn split<'a>(&self, labels: &'a [String]) -> Option<(Zone, &'a [String])> {
        let mut best: Option<(Zone, usize)> = None;
        let candidates = std::iter::once((Zone::Primary, &self.primary))
            .chain(self.alt.iter().map(|a| (Zone::Alt, a)));
        for (zone, dom) in candidates {
            if labels.len() >= dom.len() && labels[labels.len() - dom.len()..] == dom[..] {
                let better = match best {
                    Some((_, len)) => dom.len() > len,
                    None => true,
                };
                if better {
                    best = Some((zone, dom.len()));
                }
            }
        }
        best.map(|(zone, len)| (zone, &labels[..labels.len() - len]))
    }

    /// The labels of a zone.
    pub fn labels(&self, zone: Zone) -> &[String] {
        match (zone, &self.alt) {
            (Zone::Alt, Some(alt)) => alt,
            _ => &self.primary,
        }
    }
}

/// Classifies a question name (lower-case labels, root excluded).
pub fn classify(labels: &[String], is_srv: bool, domains: &Domains) -> Target {
    if let Some((zone, rest)) = domains.split(labels) {
        return Target::Ours {
            zone,
            lookup: parse_lookup(rest, is_srv),
        };
    }
    let n = labels.len();
    if n >= 2 && labels[n - 1] == "arpa" && (labels[n - 2] == "in-addr" || labels[n - 2] == "ip6") {
        return Target::Reverse(ip_from_arpa(labels));
    }
    Target::Other
}

/// The datacenter suffix: nothing, `<dc>` or `<dc>.dc`. `None` when the labels
/// are no valid suffix (peers, ports and other pairs included).
fn locality(suffix: &[String]) -> Option<Option<String>> {
    match suffix {
        [] => Some(None),
        [dc] => Some(Some(dc.clone())),
        [dc, kind] if kind == "dc" => Some(Some(dc.clone())),
        _ => None,
    }
}

/// Parses the labels before the domain.
pub fn parse_lookup(labels: &[String], is_srv: bool) -> Lookup {
    if labels.is_empty() {
        return Lookup::Apex;
    }
    // The rightmost keyword decides; an SRV question may leave out `service`
    // after an `_`-label.
    let mut found: Option<(usize, &str)> = None;
    for i in (0..labels.len()).rev() {
        match labels[i].as_str() {
            k @ ("service" | "connect" | "ingress" | "node" | "query" | "addr") => {
                found = Some((i, k));
                break;
            }
            l if is_srv && l.starts_with('_') => {
                found = Some((i + 1, "service"));
                break;
            }
            _ => {}
        }
    }
    let Some((i, kind)) = found else {
        return Lookup::Invalid;
    };
    let parts = &labels[..i];
    let suffix = if kind == "service" && i < labels.len() && labels[i] != "service" {
        // The implicit `service` of an RFC 2782 SRV name.
        &labels[i..]
    } else {
        &labels[(i + 1).min(labels.len())..]
    };
    if parts.is_empty() {
        return Lookup::Invalid;
    }
    let Some(dc) = locality(suffix) else {
        return Lookup::Invalid;
    };
    let last = parts[parts.len() - 1].clone();
    match kind {
        "service" => {
            let n = parts.len();
            if n == 2 && parts[0].starts_with('_') && parts[1].starts_with('_') {
                let service = parts[0][1..].to_string();
                let tag = &parts[1][1..];
                if service.is_empty() {
                    return Lookup::Invalid;
                }
                let tag = (!tag.is_empty() && tag != "tcp").then(|| tag.to_string());
                Lookup::Service { service, tag, dc }
            } else {
                let tag = (n >= 2).then(|| parts[..n - 1].join("."));
                Lookup::Service {
                    service: last,
                    tag,
                    dc,
                }
            }
        }
        "connect" => Lookup::Connect { service: last, dc },
        "ingress" => Lookup::Ingress { service: last, dc },
        "node" => Lookup::Node {
            node: parts.join("."),
            dc,
        },
        "query" => {
            let n = parts.len();
            let query = if n >= 2 && parts[0].starts_with('_') && parts[n - 1].starts_with('_') {
                parts[..n - 1].join(".")[1..].to_string()
            } else {
                parts.join(".")
            };
            if query.is_empty() {
                return Lookup::Invalid;
            }
            Lookup::Query { query, dc }
        }
        "addr" => {
            if parts.len() != 1 {
                return Lookup::Invalid;
            }
            match ip_from_hex(&parts[0]) {
                Some(ip) => Lookup::Addr { ip, dc },
                None => Lookup::Invalid,
            }
        }
        _ => Lookup::Invalid,
    }
}

/// `0a000001` → 10.0.0.1; 32 hex digits → an IPv6 address.
pub fn ip_from_hex(s: &str) -> Option<IpAddr> {
    let bytes = decode_hex(s)?;
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The hex spelling of an address used in `<hex>.addr.<dc>.<domain>` names.
pub fn ip_to_hex(ip: IpAddr) -> String {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The address a full reverse name spells (`4.3.2.1.in-addr.arpa` → 1.2.3.4,
/// 32 nibbles under `ip6.arpa`); None for partial or malformed names.
pub fn ip_from_arpa(labels: &[String]) -> Option<IpAddr> {
    let n = labels.len();
    if n < 2 {
        return None;
    }
    let body = &labels[..n - 2];
    match labels[n - 2].as_str() {
        "in-addr" => {
            if body.len() != 4 {
                return None;
            }
            let mut octets = [0u8; 4];
            for (i, l) in body.iter().rev().enumerate() {
                if l.is_empty() || l.len() > 3 || !l.chars().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                octets[i] = l.parse().ok()?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        "ip6" => {
            if body.len() != 32 {
                return None;
            }
            let hex: String = body.iter().rev().map(String::as_str).collect();
            if hex.len() != 32 {
                return None;
            }
            ip_from_hex(&hex)
        }
        _ => None,
    }
}

/// The reverse name of an address, without the trailing dot.
pub fn arpa_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Vec<String> {
        name.trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
            .map(|l| l.to_ascii_lowercase())
            .collect()
    }

    fn domains() -> Domains {
        Domains {
            primary: parse_domain("consul.").unwrap(),
            alt: Some(parse_domain("mesh.example.com").unwrap()),
        }
    }

    fn ours(name: &str, srv: bool) -> (Zone, Lookup) {
        match classify(&labels(name), srv, &domains()) {
            Target::Ours { zone, lookup } => (zone, lookup),
            other => panic!("{name}: {other:?}"),
        }
    }

    fn lookup(name: &str) -> Lookup {
        ours(name, false).1
    }

    fn svc(service: &str, tag: Option<&str>, dc: Option<&str>) -> Lookup {
        Lookup::Service {
            service: service.into(),
            tag: tag.map(Into::into),
            dc: dc.map(Into::into),
        }
    }

    #[test]
    fn service_forms() {
        assert_eq!(lookup("web.service.consul."), svc("web", None, None));
        assert_eq!(lookup("web.service.consul"), svc("web", None, None));
        assert_eq!(lookup("WEB.Service.CONSUL."), svc("web", None, None));
        assert_eq!(
            lookup("primary.db.service.consul"),
            svc("db", Some("primary"), None)
        );
        assert_eq!(
            lookup("v1.2.db.service.consul"),
            svc("db", Some("v1.2"), None)
        );
        assert_eq!(
            lookup("db.service.dc2.consul"),
            svc("db", None, Some("dc2"))
        );
        assert_eq!(
            lookup("db.service.dc2.dc.consul"),
            svc("db", None, Some("dc2"))
        );
        assert_eq!(
            lookup("primary.db.service.east.consul."),
            svc("db", Some("primary"), Some("east"))
        );
    }

    #[test]
    fn rfc2782_forms() {
        assert_eq!(
            lookup("_db._primary.service.consul"),
            svc("db", Some("primary"), None)
        );
        assert_eq!(lookup("_db._tcp.service.consul"), svc("db", None, None));
        assert_eq!(lookup("_DB._TCP.service.consul"), svc("db", None, None));
        assert_eq!(
            lookup("_db._tcp.service.dc1.consul"),
            svc("db", None, Some("dc1"))
        );
        // Without `service`: only for SRV questions.
        assert_eq!(ours("_db._tcp.consul", true).1, svc("db", None, None));
        assert_eq!(
            ours("_db._replica.dc1.consul", true).1,
            svc("db", Some("replica"), Some("dc1"))
        );
        assert_eq!(ours("_db._tcp.consul", false).1, Lookup::Invalid);
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            lookup("web.connect.consul"),
            Lookup::Connect {
                service: "web".into(),
                dc: None
            }
        );
        assert_eq!(
            lookup("web.ingress.dc1.consul"),
            Lookup::Ingress {
                service: "web".into(),
                dc: Some("dc1".into())
            }
        );
        assert_eq!(
            lookup("Files-1.node.consul."),
            Lookup::Node {
                node: "files-1".into(),
                dc: None
            }
        );
        assert_eq!(
            lookup("host.example.node.dc1.consul"),
            Lookup::Node {
                node: "host.example".into(),
                dc: Some("dc1".into())
            }
        );
        assert_eq!(
            lookup("files-db.query.consul"),
            Lookup::Query {
                query: "files-db".into(),
                dc: None
            }
        );
        assert_eq!(
            lookup("_files-db._tcp.query.dc1.consul"),
            Lookup::Query {
                query: "files-db".into(),
                dc: Some("dc1".into())
            }
        );
        assert_eq!(
            lookup("0a000001.addr.dc1.consul"),
            Lookup::Addr {
                ip: "10.0.0.1".parse().unwrap(),
                dc: Some("dc1".into())
            }
        );
        assert_eq!(
            lookup("20010db8000000000000000000000001.addr.consul"),
            Lookup::Addr {
                ip: "2001:db8::1".parse().unwrap(),
                dc: None
            }
        );
        assert_eq!(lookup("consul."), Lookup::Apex);
    }

    #[test]
    fn unknown_names_are_invalid() {
        for name in [
            "web.consul",
            "web.foo.consul",
            "service.consul",
            "node.consul",
            "web.service.dc1.extra.consul",
            "web.service.p1.peer.consul",
            "web.service.http.port.consul",
            "web.service.ns1.ns.consul",
            "zz.addr.consul",
            "0a0001.addr.consul",
            "query.consul",
            "a.b.addr.consul",
        ] {
            assert_eq!(lookup(name), Lookup::Invalid, "{name}");
        }
    }

    #[test]
    fn alt_domain_and_longest_match() {
        assert_eq!(
            ours("web.service.mesh.example.com.", false),
            (Zone::Alt, svc("web", None, None))
        );
        assert_eq!(
            ours("web.service.dc1.MESH.example.com", false),
            (Zone::Alt, svc("web", None, Some("dc1")))
        );
        // One domain inside the other: the longer one is the zone.
        let d = Domains {
            primary: parse_domain("consul").unwrap(),
            alt: Some(parse_domain("internal.consul").unwrap()),
        };
        assert_eq!(
            classify(&labels("web.service.internal.consul"), false, &d),
            Target::Ours {
                zone: Zone::Alt,
                lookup: svc("web", None, None)
            }
        );
        assert_eq!(
            classify(&labels("web.service.dc1.consul"), false, &d),
            Target::Ours {
                zone: Zone::Primary,
                lookup: svc("web", None, Some("dc1"))
            }
        );
    }

    #[test]
    fn reverse_and_other_names() {
        let d = domains();
        assert_eq!(
            classify(&labels("1.0.0.10.in-addr.arpa."), false, &d),
            Target::Reverse(Some("10.0.0.1".parse().unwrap()))
        );
        let v6: IpAddr = "2001:db8::5".parse().unwrap();
        assert_eq!(
            classify(&labels(&arpa_name(v6)), false, &d),
            Target::Reverse(Some(v6))
        );
        assert_eq!(
            classify(&labels("0.10.in-addr.arpa"), false, &d),
            Target::Reverse(None)
        );
        assert_eq!(
            classify(&labels("300.0.0.10.in-addr.arpa"), false, &d),
            Target::Reverse(None)
        );
        assert_eq!(classify(&labels("example.org."), false, &d), Target::Other);
        assert_eq!(classify(&labels("consulx."), false, &d), Target::Other);
    }

    #[test]
    fn hex_and_domains() {
        let ip: IpAddr = "192.168.1.20".parse().unwrap();
        assert_eq!(ip_to_hex(ip), "c0a80114");
        assert_eq!(ip_from_hex("c0a80114"), Some(ip));
        assert_eq!(ip_from_hex("C0A80114"), Some(ip));
        assert_eq!(parse_domain("Consul."), Ok(vec!["consul".to_string()]));
        assert!(parse_domain(".").is_err());
        assert!(parse_domain("a..b").is_err());
        assert!(parse_domain("bad label").is_err());
    }
}
