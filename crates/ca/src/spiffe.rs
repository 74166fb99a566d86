//! SPIFFE identities and SNI names used by Consul Connect.
//!
//! Behaviour follows Consul's `agent/connect/{uri.go, uri_service.go, uri_agent.go,
//! uri_signing.go, sni.go}`:
//!
//! * trust domain: `<cluster-id>.consul`, lower-cased;
//! * CA signing id: `spiffe://<td>` (no path);
//! * service: `spiffe://<td>/ns/<ns>/dc/<dc>/svc/<svc>`, or with a non-default admin
//!   partition `spiffe://<td>/ap/<ap>/ns/<ns>/dc/<dc>/svc/<svc>`;
//! * agent: `spiffe://<td>/agent/client/dc/<dc>/id/<node>` (`/ap/<ap>` prefix when parsed);
//! * server: `spiffe://<td>/agent/server/dc/<dc>`;
//! * mesh gateway: `spiffe://<td>[/ap/<ap>]/gateway/mesh/dc/<dc>`.
//!
//! Path segments are percent-decoded when parsing (Consul unescapes `RawPath`); [`ServiceId::uri`]
//! does not escape, since Consul service, namespace and datacenter names are DNS-like.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Name of the default admin partition and namespace.
pub const DEFAULT: &str = "default";

/// The trust domain of a cluster: `<cluster-id>.consul`, lower-cased (Consul's
/// `SpiffeIDSigningForCluster(..).Host()`).
pub fn trust_domain(cluster_id: &str) -> String {
    format!("{cluster_id}.consul").to_ascii_lowercase()
}

/// The URI SAN of a CA certificate: `spiffe://<trust domain>`.
pub fn signing_uri(trust_domain: &str) -> String {
    format!("spiffe://{}", trust_domain.to_ascii_lowercase())
}

/// Identity of a service instance (Consul's `SpiffeIDService`).
///
/// `partition` is always normalised: `"default"` for the default partition, which the URI omits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceId {
    /// Trust domain (URI host), e.g. `7f42f496-fbc7-8692-05ed-334aa5340c1e.consul`.
    pub trust_domain: String,
    /// Admin partition; `"default"` unless an `/ap/<ap>` segment was present.
    #[serde(default = "default_string")]
    pub partition: String,
    /// Namespace (`"default"` in CE).
    pub namespace: String,
    /// Datacenter that issued the identity.
    pub datacenter: String,
    /// Service name.
    pub service: String,
}

fn default_string() -> String {
    DEFAULT.to_string()
}

impl ServiceId {
    /// A service identity in the default partition. An empty namespace means `"default"`.
    pub fn new(trust_domain: &str, namespace: &str, datacenter: &str, service: &str) -> Self {
        ServiceId {
            trust_domain: trust_domain.to_string(),
            partition: DEFAULT.to_string(),
            namespace: or_default(namespace),
            datacenter: datacenter.to_string(),
            service: service.to_string(),
        }
    }

    /// The same identity in another admin partition (empty means `"default"`; lower-cased like
    /// Consul's `PartitionOrDefault`).
    pub fn with_partition(mut self, partition: &str) -> Self {
        self.partition = or_default(partition).to_ascii_lowercase();
        self
    }

    /// `spiffe://<td>[/ap/<ap>]/ns/<ns>/dc/<dc>/svc/<svc>`; the partition segment is present only
    /// for a non-default partition.
    pub fn uri(&self) -> String {
        let ns = if self.namespace.is_empty() {
            DEFAULT
        } else {
            &self.namespace
        };
        let path = format!("/ns/{ns}/dc/{}/svc/{}", self.datacenter, self.service);
        if self.partition.is_empty() || self.partition.eq_ignore_ascii_case(DEFAULT) {
            format!("spiffe://{}{path}", self.trust_domain)
        } else {
            format!(
                "spiffe://{}/ap/{}{path}",
                self.trust_domain,
                self.partition.to_ascii_lowercase()
            )
        }
    }

    /// Parses a service SPIFFE id; `None` for anything else (agents, CA ids, malformed input).
    pub fn parse(uri: &str) -> Option<ServiceId> {
        match SpiffeId::parse(uri)? {
            SpiffeId::Service(id) => Some(id),
            _ => None,
        }
    }

    /// The SNI name Envoy-compatible clients use to reach this service
    /// (`[<subset>.]<svc>.<ns>[.<ap>].<dc>.internal[-v1].<td>`), see [`service_sni_full`].
    pub fn sni(&self) -> String {
        service_sni_full(
            &self.service,
            "",
            &self.namespace,
            &self.partition,
            &self.datacenter,
            &self.trust_domain,
        )
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// Identity of a client agent (Consul's `SpiffeIDAgent`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentId {
    /// Trust domain (URI host).
    pub trust_domain: String,
    /// Admin partition, `"default"` unless present in the URI.
    #[serde(default = "default_string")]
    pub partition: String,
    /// Datacenter of the agent.
    pub datacenter: String,
    /// Node name.
    pub node: String,
}

impl AgentId {
    /// An agent identity in the default partition.
    pub fn new(trust_domain: &str, datacenter: &str, node: &str) -> Self {
        AgentId {
            trust_domain: trust_domain.to_string(),
            partition: DEFAULT.to_string(),
            datacenter: datacenter.to_string(),
            node: node.to_string(),
        }
    }

    /// `spiffe://<td>/agent/client/dc/<dc>/id/<node>`. Like Consul CE the partition is never
    /// written (it is accepted when parsing).
    pub fn uri(&self) -> String {
        format!(
            "spiffe://{}/agent/client/dc/{}/id/{}",
            self.trust_domain, self.datacenter, self.node
        )
    }

    /// Parses an agent SPIFFE id.
    pub fn parse(uri: &str) -> Option<AgentId> {
        match SpiffeId::parse(uri)? {
            SpiffeId::Agent(id) => Some(id),
            _ => None,
        }
    }
}

/// Any SPIFFE id Consul puts into certificates (Consul's `connect.ParseCertURI`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpiffeId {
    /// A service leaf.
    Service(ServiceId),
    /// A client agent.
    Agent(AgentId),
    /// A Consul server: `/agent/server/dc/<dc>`.
    Server {
        /// Trust domain.
        trust_domain: String,
        /// Datacenter.
        datacenter: String,
    },
    /// A mesh gateway: `[/ap/<ap>]/gateway/mesh/dc/<dc>`.
    MeshGateway {
        /// Trust domain.
        trust_domain: String,
        /// Admin partition (`"default"` when absent).
        partition: String,
        /// Datacenter.
        datacenter: String,
    },
    /// A CA ("signing") id: `spiffe://<cluster-id>.<domain>` with an empty path.
    Signing {
        /// The whole host, e.g. `<cluster-id>.consul`.
        trust_domain: String,
    },
}

impl SpiffeId {
    /// The trust domain (URI host) of any kind of id.
    pub fn trust_domain(&self) -> &str {
        match self {
            SpiffeId::Service(s) => &s.trust_domain,
            SpiffeId::Agent(a) => &a.trust_domain,
            SpiffeId::Server { trust_domain, .. }
            | SpiffeId::MeshGateway { trust_domain, .. }
            | SpiffeId::Signing { trust_domain } => trust_domain,
        }
    }

    /// Parses `spiffe://host/path` following Consul's regular expressions. The scheme is
    /// case-insensitive; query strings, fragments and user info are refused.
    pub fn parse(uri: &str) -> Option<SpiffeId> {
        let (scheme, rest) = uri.split_once("://")?;
        if !scheme.eq_ignore_ascii_case("spiffe") {
            return None;
        }
        if rest.contains(['?', '#', '@']) {
            return None;
        }
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if host.is_empty() {
            return None;
        }
        let host = host.to_string();
        if path.is_empty() {
            // Consul: a signing id needs a host with at least one dot after a non-empty label.
            return match host.find('.') {
                Some(i) if i > 0 => Some(SpiffeId::Signing { trust_domain: host }),
                _ => None,
            };
        }
        // Split into segments; "/a/b" -> ["a", "b"]. Every segment must be non-empty
        // (the Go regexps use `[^/]+`).
        let segs: Vec<&str> = path[1..].split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return None;
        }
        let dec = |s: &str| percent_decode(s);
        let (partition, segs) = match segs.as_slice() {
            ["ap", ap, tail @ ..] => (Some(dec(ap)?), tail),
            all => (None, all),
        };
        let ap = partition.unwrap_or_else(default_string);
        match segs {
            ["ns", ns, "dc", dc, "svc", svc] => Some(SpiffeId::Service(ServiceId {
                trust_domain: host,
                partition: ap.to_ascii_lowercase(),
                namespace: dec(ns)?,
                datacenter: dec(dc)?,
                service: dec(svc)?,
            })),
            ["agent", "client", "dc", dc, "id", node] => Some(SpiffeId::Agent(AgentId {
                trust_domain: host,
                partition: ap,
                datacenter: dec(dc)?,
                node: dec(node)?,
            })),
            ["gateway", "mesh", "dc", dc] => Some(SpiffeId::MeshGateway {
                trust_domain: host,
                partition: ap,
                datacenter: dec(dc)?,
            }),
            ["agent", "server", "dc", dc] if partition_absent(path) => Some(SpiffeId::Server {
                trust_domain: host,
                datacenter: dec(dc)?,
            }),
            _ => None,
        }
    }
}

fn partition_absent(path: &str) -> bool {
    !path.starts_with("/ap/")
}

fn or_default(s: &str) -> String {
    if s.is_empty() {
        DEFAULT.to_string()
    } else {
        s.to_string()
    }
}

/// Decodes `%XX` escapes; `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// === SNI (agent/connect/sni.go) ===

/// `<svc>.<ns>.<dc>.internal.<td>` — the SNI of a service in the default partition, no subset.
/// An empty namespace means `"default"`.
pub fn service_sni(service: &str, namespace: &str, datacenter: &str, trust_domain: &str) -> String {
    service_sni_full(service, "", namespace, "", datacenter, trust_domain)
}

/// `<subset>.<svc>.<ns>.<dc>.internal.<td>` (plain [`service_sni`] when `subset` is empty).
pub fn service_sni_with_subset(
    subset: &str,
    service: &str,
    namespace: &str,
    datacenter: &str,
    trust_domain: &str,
) -> String {
    service_sni_full(service, subset, namespace, "", datacenter, trust_domain)
}

/// Consul's `ServiceSNI` with every parameter. Default partition (`""` or `"default"`):
/// `[<subset>.]<svc>.<ns>.<dc>.internal.<td>`; any other partition:
/// `[<subset>.]<svc>.<ns>.<ap>.<dc>.internal-v1.<td>`.
pub fn service_sni_full(
    service: &str,
    subset: &str,
    namespace: &str,
    partition: &str,
    datacenter: &str,
    trust_domain: &str,
) -> String {
    let namespace = if namespace.is_empty() {
        DEFAULT
    } else {
        namespace
    };
    let partition = if partition.is_empty() {
        DEFAULT
    } else {
        partition
    };
    let mut parts: Vec<&str> = Vec::with_capacity(7);
    if !subset.is_empty() {
        parts.push(subset);
    }
    parts.push(service);
    parts.push(namespace);
    if partition == DEFAULT {
        parts.extend([datacenter, "internal", trust_domain]);
    } else {
        parts.extend([partition, datacenter, "internal-v1", trust_domain]);
    }
    parts.join(".")
}

/// Consul's `QuerySNI`: `<query>.default.<dc>.query.<td>`.
pub fn query_sni(query: &str, datacenter: &str, trust_domain: &str) -> String {
    format!("{query}.default.{datacenter}.query.{trust_domain}")
}

/// Consul's `GatewaySNI`: `<dc>.internal.<td>` (default partition) or
/// `<ap>.<dc>.internal-v1.<td>`.
pub fn gateway_sni(datacenter: &str, partition: &str, trust_domain: &str) -> String {
    if partition.is_empty() || partition == DEFAULT {
        format!("{datacenter}.internal.{trust_domain}")
    } else {
        format!("{partition}.{datacenter}.internal-v1.{trust_domain}")
    }
}

/// Consul's `PeeredServiceSNI`: `<svc>.<ns>.<ap>.<peer>.external.<td>`. `None` when `peer` is
/// empty (Consul panics there).
pub fn peered_service_sni(
    service: &str,
    namespace: &str,
    partition: &str,
    peer: &str,
    trust_domain: &str,
) -> Option<String> {
    if peer.is_empty() {
        return None;
    }
    let namespace = if namespace.is_empty() {
        DEFAULT
    } else {
        namespace
    };
    let partition = if partition.is_empty() {
        DEFAULT
    } else {
        partition
    };
    Some(format!(
        "{service}.{namespace}.{partition}.{peer}.external.{trust_domain}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: &str = "7f42f496-fbc7-8692-05ed-334aa5340c1e.consul";

    #[test]
    fn trust_domain_is_lowercase() {
        assert_eq!(
            trust_domain("7F42F496-FBC7-8692-05ED-334AA5340C1E"),
            "7f42f496-fbc7-8692-05ed-334aa5340c1e.consul"
        );
    }

    #[test]
    fn service_uri_round_trip() {
        let id = ServiceId::new(TD, "", "dc1", "web");
        assert_eq!(id.namespace, "default");
        let uri = id.uri();
        assert_eq!(uri, format!("spiffe://{TD}/ns/default/dc/dc1/svc/web"));
        assert_eq!(ServiceId::parse(&uri), Some(id.clone()));
        assert_eq!(id.to_string(), uri);

        let ap = ServiceId::new(TD, "ns1", "dc2", "db").with_partition("Team");
        let uri = ap.uri();
        assert_eq!(uri, format!("spiffe://{TD}/ap/team/ns/ns1/dc/dc2/svc/db"));
        assert_eq!(ServiceId::parse(&uri), Some(ap));

        // Explicit default partition parses to the same id as none.
        let explicit = format!("spiffe://{TD}/ap/default/ns/default/dc/dc1/svc/web");
        assert_eq!(ServiceId::parse(&explicit), Some(id));
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "http://x.consul/ns/default/dc/dc1/svc/web",
            "spiffe:///ns/default/dc/dc1/svc/web",
            "spiffe://x.consul/ns/default/dc/dc1/svc/",
            "spiffe://x.consul/ns/default/dc/dc1/svc/web/extra",
            "spiffe://x.consul/ns//dc/dc1/svc/web",
            "spiffe://x.consul/ns/default/dc/dc1/svc/web?x=1",
            "spiffe://x.consul/ns/default/dc/dc1/svc/w%zz",
            "spiffe://x.consul/agent/client/dc/dc1/id/n1",
            "spiffe://x.consul",
        ] {
            assert_eq!(ServiceId::parse(bad), None, "{bad}");
        }
        // Scheme is case-insensitive, segments are percent-decoded.
        let id = ServiceId::parse("SPIFFE://x.consul/ns/default/dc/dc1/svc/we%62").unwrap();
        assert_eq!(id.service, "web");
    }

    #[test]
    fn other_kinds() {
        let agent = AgentId::new(TD, "dc1", "node-1");
        assert_eq!(
            agent.uri(),
            format!("spiffe://{TD}/agent/client/dc/dc1/id/node-1")
        );
        assert_eq!(AgentId::parse(&agent.uri()), Some(agent));
        assert_eq!(
            SpiffeId::parse(&format!("spiffe://{TD}")),
            Some(SpiffeId::Signing {
                trust_domain: TD.to_string()
            })
        );
        assert_eq!(SpiffeId::parse("spiffe://nodot"), None);
        assert_eq!(
            SpiffeId::parse(&format!("spiffe://{TD}/agent/server/dc/dc1")),
            Some(SpiffeId::Server {
                trust_domain: TD.to_string(),
                datacenter: "dc1".into()
            })
        );
        assert_eq!(
            SpiffeId::parse(&format!("spiffe://{TD}/ap/p1/gateway/mesh/dc/dc1")),
            Some(SpiffeId::MeshGateway {
                trust_domain: TD.to_string(),
                partition: "p1".into(),
                datacenter: "dc1".into()
            })
        );
        assert_eq!(signing_uri("ABC.consul"), "spiffe://abc.consul");
    }

    #[test]
    fn sni_matches_consul() {
        // Examples from Consul's sni_test.go / docs.
        assert_eq!(
            service_sni("carbonio-files-db", "", "dc1", TD),
            format!("carbonio-files-db.default.dc1.internal.{TD}")
        );
        assert_eq!(
            service_sni_with_subset("v2", "web", "default", "dc1", TD),
            format!("v2.web.default.dc1.internal.{TD}")
        );
        assert_eq!(
            service_sni_with_subset("", "web", "default", "dc1", TD),
            format!("web.default.dc1.internal.{TD}")
        );
        assert_eq!(
            service_sni_full("api", "", "ns1", "part1", "dc1", TD),
            format!("api.ns1.part1.dc1.internal-v1.{TD}")
        );
        assert_eq!(
            service_sni_full("api", "canary", "ns1", "part1", "dc1", TD),
            format!("canary.api.ns1.part1.dc1.internal-v1.{TD}")
        );
        assert_eq!(
            query_sni("q", "dc1", TD),
            format!("q.default.dc1.query.{TD}")
        );
        assert_eq!(gateway_sni("dc1", "", TD), format!("dc1.internal.{TD}"));
        assert_eq!(
            gateway_sni("dc1", "p", TD),
            format!("p.dc1.internal-v1.{TD}")
        );
        assert_eq!(
            peered_service_sni("web", "", "", "peer1", TD).unwrap(),
            format!("web.default.default.peer1.external.{TD}")
        );
        assert_eq!(peered_service_sni("web", "", "", "", TD), None);
        assert_eq!(
            ServiceId::new(TD, "default", "dc1", "web").sni(),
            service_sni("web", "default", "dc1", TD)
        );
    }
}
