//! What both proxies learn from the agent: the CA roots, leaf certificates,
//! intentions, service instances, service defaults and the mesh's TLS
//! versions and cipher suites.

use std::sync::Arc;
use std::time::Duration;

use meshgate_ca::tls::TlsSettings;
use meshgate_config_entries::intentions::{self, Intention};
use meshgate_config_entries::{
    AccessLogsConfig, ConfigEntry, MeshDirectionalTlsConfig, MeshTlsConfig, PassiveHealthCheck,
    ServiceDefaults, UpstreamConfig,
};
use reqwest::StatusCode;
use rustls::sign::CertifiedKey;
use serde_json::Value;
use tokio::sync::watch;

use crate::agent::{AgentClient, Answer, Blocking, watch as watch_path};

/// The mesh roots.
#[derive(Clone, Debug)]
pub struct Roots {
    pub pems: Vec<String>,
    pub trust_domain: String,
}

/// A service's leaf certificate.
#[derive(Clone)]
pub struct LeafCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub key: Arc<CertifiedKey>,
    pub valid_before: String,
    pub serial: String,
}

/// The intentions whose destination is one service, and the default.
#[derive(Clone, Debug, Default)]
pub struct IntentionSet {
    pub list: Vec<Intention>,
    pub default_allow: bool,
}

impl IntentionSet {
    /// Whether `source` may connect to `destination`, and why.
    pub fn decide(&self, source: &str, destination: &str) -> (bool, String) {
        let d = intentions::decide(&self.list, source, destination, self.default_allow);
        (d.allowed, d.reason)
    }
}

/// `PassiveHealthCheck` (Envoy's outlier detection) as the proxies apply it
/// to connect failures, with Envoy's defaults for what is unset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outlier {
    /// Consecutive connect failures that set an instance aside.
    pub max_failures: u32,
    /// The chance, in per cent, that they do.
    pub enforcing: u32,
    /// The most instances set aside at once, in per cent (at least one).
    pub max_ejection_percent: u32,
    /// How long an instance stays aside, times the number of times it was.
    pub base_ejection: Duration,
    /// Each `Interval` an instance stays healthy lowers that number by one
    /// (Envoy's ejection multiplier).
    pub interval: Duration,
}

impl Outlier {
    fn from_config(p: &PassiveHealthCheck) -> Outlier {
        Outlier {
            max_failures: if p.max_failures == 0 {
                5
            } else {
                p.max_failures
            },
            enforcing: p.enforcing_consecutive_5xx.unwrap_or(100),
            max_ejection_percent: p.max_ejection_percent.unwrap_or(10),
            base_ejection: p
                .base_ejection_time
                .filter(|n| n.0 > 0)
                .map(|n| Duration::from_nanos(n.0 as u64))
                .unwrap_or(Duration::from_secs(30)),
            interval: Some(p.interval)
                .filter(|n| n.0 > 0)
                .map(|n| Duration::from_nanos(n.0 as u64))
                .unwrap_or(Duration::from_secs(10)),
        }
    }
}

/// What a service's `UpstreamConfig` says for one upstream: its `Defaults`,
/// with what the `Overrides` entry of that name sets over them (as Consul
/// merges them: `Limits` and `PassiveHealthCheck` as whole blocks, other
/// fields one by one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpstreamSettings {
    pub max_connections: Option<u64>,
    pub outlier: Option<Outlier>,
    /// `ConnectTimeoutMs`.
    pub connect_timeout: Option<Duration>,
    /// `BalanceOutboundConnections = "exact_balance"`: connections to it
    /// are spread over the proxy's threads rather than packed.
    pub exact_balance: bool,
}

impl UpstreamSettings {
    fn from_config(u: &UpstreamConfig) -> UpstreamSettings {
        UpstreamSettings {
            max_connections: u
                .limits
                .as_ref()
                .and_then(|l| l.max_connections)
                .filter(|n| *n > 0)
                .map(|n| n as u64),
            outlier: u.passive_health_check.as_ref().map(Outlier::from_config),
            connect_timeout: (u.connect_timeout_ms > 0)
                .then(|| Duration::from_millis(u.connect_timeout_ms as u64)),
            exact_balance: u.balance_outbound_connections == "exact_balance",
        }
    }
}

/// Protocol and connection limit from a service's `service-defaults`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Defaults {
    /// Lower case; empty means `tcp`.
    pub protocol: String,
    /// Concurrent connections allowed (None: no limit).
    pub max_connections: Option<u64>,
    /// `MaxInboundConnections`: what a sidecar's public listener carries at
    /// once for this service (None: no limit).
    pub max_inbound: Option<u64>,
    /// `LocalConnectTimeoutMs`: a sidecar's connect timeout to its local
    /// service.
    pub local_connect_timeout: Option<Duration>,
    /// `BalanceInboundConnections = "exact_balance"`: a sidecar spreads
    /// its public listener's connections over its threads.
    pub exact_balance_inbound: bool,
    /// `UpstreamConfig.Defaults`: for a gateway, what it applies to this
    /// linked service's instances; for a sidecar, to each of its upstreams
    /// that no override names.
    pub upstream: UpstreamSettings,
    /// `UpstreamConfig.Overrides`, by upstream name (sidecars).
    pub overrides: Vec<(String, UpstreamSettings)>,
}

impl Defaults {
    pub fn is_postgres(&self) -> bool {
        self.protocol == "postgres"
    }

    /// The settings of the upstream `name` of a sidecar of this service.
    pub fn for_upstream(&self, name: &str) -> &UpstreamSettings {
        self.overrides
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&self.upstream, |(_, s)| s)
    }

    fn from_entry(sd: &ServiceDefaults) -> Defaults {
        let upstream = sd
            .upstream_config
            .as_ref()
            .and_then(|u| u.defaults.as_ref());
        let settings = upstream
            .map(UpstreamSettings::from_config)
            .unwrap_or_default();
        let from_limits = settings.max_connections;
        let overrides = sd
            .upstream_config
            .as_ref()
            .map(|u| {
                u.overrides
                    .iter()
                    .map(|entry| {
                        let o = UpstreamSettings::from_config(entry);
                        // `Limits` and `PassiveHealthCheck` are taken as
                        // whole blocks (Consul's MergeInto), the rest field
                        // by field.
                        let merged = UpstreamSettings {
                            max_connections: if entry.limits.is_some() {
                                o.max_connections
                            } else {
                                settings.max_connections
                            },
                            outlier: o.outlier.or_else(|| settings.outlier.clone()),
                            connect_timeout: o.connect_timeout.or(settings.connect_timeout),
                            exact_balance: if entry.balance_outbound_connections.is_empty() {
                                settings.exact_balance
                            } else {
                                o.exact_balance
                            },
                        };
                        (entry.name.clone(), merged)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let inbound = (sd.max_inbound_connections > 0).then_some(sd.max_inbound_connections as u64);
        let ms = |v: i64| (v > 0).then(|| Duration::from_millis(v as u64));
        Defaults {
            protocol: sd.protocol.to_ascii_lowercase(),
            max_connections: inbound.or(from_limits),
            max_inbound: inbound,
            local_connect_timeout: ms(sd.local_connect_timeout_ms),
            exact_balance_inbound: sd.balance_inbound_connections == "exact_balance",
            upstream: settings,
            overrides,
        }
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn ok_body(a: &Answer) -> Result<&Value, String> {
    if a.status == StatusCode::OK {
        Ok(&a.body)
    } else {
        Err(format!(
            "{} {}",
            a.status.as_u16(),
            a.body.as_str().unwrap_or("")
        ))
    }
}

/// The mesh's TLS for proxies (the `mesh` config entry's `TLS.Incoming`,
/// for the sidecars' public listeners and the gateways; `TLS.Outgoing`, for
/// the sidecars' upstream connections).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeshTls {
    pub incoming: TlsSettings,
    pub outgoing: TlsSettings,
    /// Grows with each change (what cached client configurations compare).
    pub generation: u64,
}

impl MeshTls {
    /// From a `mesh` entry; the warnings name what meshgate leaves out.
    /// A stored entry is read leniently (see
    /// [`meshgate_types::tls::parse_lenient`]): a proxy must start and serve
    /// whatever is stored.
    fn from_entry(tls: Option<&MeshTlsConfig>) -> (MeshTls, Vec<String>) {
        let mut warnings = Vec::new();
        let mut side = |d: Option<&MeshDirectionalTlsConfig>, what: &str| match d {
            None => TlsSettings::default(),
            Some(d) => {
                let p = meshgate_types::tls::parse_lenient(
                    &d.tls_min_version,
                    &d.tls_max_version,
                    &d.cipher_suites,
                );
                warnings.extend(
                    p.warnings
                        .into_iter()
                        .map(|w| format!("mesh TLS.{what}: {w}")),
                );
                p.settings
            }
        };
        let incoming = side(tls.and_then(|t| t.incoming.as_ref()), "Incoming");
        let outgoing = side(tls.and_then(|t| t.outgoing.as_ref()), "Outgoing");
        (
            MeshTls {
                incoming,
                outgoing,
                generation: 0,
            },
            warnings,
        )
    }
}

/// How `/config` shows one side's TLS.
pub fn settings_json(s: &TlsSettings) -> Value {
    serde_json::json!({
        "TLSMinVersion": s.min.to_string(),
        "TLSMaxVersion": s.max.to_string(),
        "CipherSuites": s.cipher_suites,
    })
}

/// Watches the `mesh` config entry's TLS settings (no entry: the defaults,
/// TLS 1.2 and 1.3 with every suite). What meshgate cannot honour is
/// replaced by the closest safe setting, logged.
pub fn watch_mesh_tls(
    client: &AgentClient,
) -> (
    watch::Receiver<Option<MeshTls>>,
    tokio::task::JoinHandle<()>,
) {
    // The config entries' index moves with every entry: only a change of
    // this one is passed on (and its warnings logged once).
    let last = parking_lot::Mutex::new(None::<MeshTls>);
    watch_path(
        client.clone(),
        "/v1/config/mesh/mesh".into(),
        Blocking::Index,
        move |a| {
            let read = if a.status == StatusCode::NOT_FOUND {
                Ok((MeshTls::default(), Vec::new()))
            } else {
                ok_body(a).and_then(|b| match meshgate_config_entries::decode(b.clone()) {
                    Ok(ConfigEntry::Mesh(m)) => Ok(MeshTls::from_entry(m.tls.as_ref())),
                    Ok(_) => Err("not a mesh entry".into()),
                    Err(e) => Err(format!("mesh: {e}")),
                })
            };
            let (tls, warnings) = match read {
                Ok(x) => x,
                // The first answer unreadable: start with the defaults (see
                // `defaults_first`); later, keep the last good value.
                Err(e) if last.lock().is_none() => {
                    tracing::warn!("{e}; starting with the defaults of the mesh entry");
                    (MeshTls::default(), Vec::new())
                }
                Err(e) => return Err(e),
            };
            let mut last = last.lock();
            if let Some(l) = last.as_ref()
                && (&l.incoming, &l.outgoing) == (&tls.incoming, &tls.outgoing)
            {
                return Ok(None);
            }
            for w in warnings {
                tracing::warn!("{w}");
            }
            let tls = MeshTls {
                generation: last.as_ref().map_or(1, |l| l.generation + 1),
                ..tls
            };
            *last = Some(tls.clone());
            Ok(Some(tls))
        },
    )
}

/// What the proxies use of the `proxy-defaults` entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Global {
    pub access_logs: Option<AccessLogsConfig>,
    /// `Config.local_connect_timeout_ms`.
    pub local_connect_timeout: Option<Duration>,
    /// `Config.handshake_timeout_ms`.
    pub handshake_timeout: Option<Duration>,
}

/// Watches the `proxy-defaults` entry (no entry: the defaults).
pub fn watch_proxy_defaults(
    client: &AgentClient,
) -> (watch::Receiver<Option<Global>>, tokio::task::JoinHandle<()>) {
    watch_path(
        client.clone(),
        "/v1/config/proxy-defaults/global".into(),
        Blocking::Index,
        {
            let seen = std::sync::atomic::AtomicBool::new(false);
            move |a| defaults_first(read_proxy_defaults(a), &seen, "proxy-defaults")
        },
    )
}

/// A watched entry's value, or — when the first answer cannot be read (an
/// entry a newer server wrote with fields this proxy does not know) — the
/// defaults, logged, so that a proxy always starts; later, the last good
/// value stays (the watch keeps it on an error).
fn defaults_first<T: Default>(
    r: Result<Option<T>, String>,
    seen: &std::sync::atomic::AtomicBool,
    what: &str,
) -> Result<Option<T>, String> {
    use std::sync::atomic::Ordering::Relaxed;
    match r {
        Ok(v) => {
            seen.store(true, Relaxed);
            Ok(v)
        }
        Err(e) if !seen.swap(true, Relaxed) => {
            tracing::warn!("{e}; starting with the defaults of {what}");
            Ok(Some(T::default()))
        }
        Err(e) => Err(e),
    }
}

fn read_proxy_defaults(a: &Answer) -> Result<Option<Global>, String> {
    if a.status == StatusCode::NOT_FOUND {
        return Ok(Some(Global::default()));
    }
    match meshgate_config_entries::decode(ok_body(a)?.clone()) {
        Ok(ConfigEntry::ProxyDefaults(p)) => {
            let config = p
                .config
                .map(|c| Value::Object(c.into_iter().collect()))
                .unwrap_or(Value::Null);
            Ok(Some(Global {
                access_logs: Some(p.access_logs),
                local_connect_timeout: crate::sidecar::config_ms(
                    &config,
                    "local_connect_timeout_ms",
                ),
                handshake_timeout: crate::sidecar::config_ms(&config, "handshake_timeout_ms"),
            }))
        }
        Ok(_) => Err("not a proxy-defaults entry".into()),
        Err(e) => Err(format!("proxy-defaults: {e}")),
    }
}

/// Watches the CA roots.
pub fn watch_roots(
    client: &AgentClient,
) -> (watch::Receiver<Option<Roots>>, tokio::task::JoinHandle<()>) {
    watch_path(
        client.clone(),
        "/v1/agent/connect/ca/roots".into(),
        Blocking::Index,
        |a| {
            let b = ok_body(a)?;
            let pems: Vec<String> = b
                .get("Roots")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .map(|r| str_of(r, "RootCert").to_string())
                        .filter(|p| !p.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            if pems.is_empty() {
                return Err("the agent has no CA roots".into());
            }
            Ok(Some(Roots {
                pems,
                trust_domain: str_of(b, "TrustDomain").to_string(),
            }))
        },
    )
}

/// Watches the leaf certificate of `service`.
pub fn watch_leaf(
    client: &AgentClient,
    service: &str,
) -> (
    watch::Receiver<Option<LeafCert>>,
    tokio::task::JoinHandle<()>,
) {
    watch_path(
        client.clone(),
        format!("/v1/agent/connect/ca/leaf/{service}"),
        Blocking::Index,
        |a| {
            let b = ok_body(a)?;
            let cert_pem = str_of(b, "CertPEM").to_string();
            let key_pem = str_of(b, "PrivateKeyPEM").to_string();
            let key = meshgate_ca::tls::certified_key(&cert_pem, &key_pem)
                .map_err(|e| format!("leaf certificate: {e}"))?;
            Ok(Some(LeafCert {
                cert_pem,
                key_pem,
                key,
                valid_before: str_of(b, "ValidBefore").to_string(),
                serial: str_of(b, "SerialNumber").to_string(),
            }))
        },
    )
}

/// Watches the intentions whose destination is `service`.
pub fn watch_intentions(
    client: &AgentClient,
    service: &str,
) -> (
    watch::Receiver<Option<IntentionSet>>,
    tokio::task::JoinHandle<()>,
) {
    let name = service.to_string();
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("by", "destination")
        .append_pair("name", service)
        .finish();
    watch_path(
        client.clone(),
        format!("/v1/connect/intentions/match?{q}"),
        Blocking::Index,
        move |a| {
            let b = ok_body(a)?;
            let list = b.get(&name).cloned().unwrap_or(Value::Array(Vec::new()));
            let list: Vec<Intention> = match list {
                Value::Null => Vec::new(),
                v => serde_json::from_value(v).map_err(|e| format!("intentions: {e}"))?,
            };
            Ok(Some(IntentionSet {
                list,
                default_allow: a.default_allow,
            }))
        },
    )
}

/// An instance address from a `CheckServiceNode`: the service address, else
/// the node address.
pub fn instance_address(entry: &Value) -> Option<(String, u16)> {
    let svc = entry.get("Service")?;
    let port = svc.get("Port").and_then(Value::as_u64)? as u16;
    let addr = match str_of(svc, "Address") {
        "" => str_of(entry.get("Node")?, "Address"),
        a => a,
    };
    if addr.is_empty() || port == 0 {
        return None;
    }
    Some((addr.to_string(), port))
}

/// A watched list of instances (`host`, `port`).
pub type InstancesRx = watch::Receiver<Option<Vec<(String, u16)>>>;

/// A watched list of instances and its task.
pub type InstancesWatch = (InstancesRx, tokio::task::JoinHandle<()>);

/// Watches the passing instances at `path` (`/v1/health/service/...` or
/// `/v1/health/connect/...`, with `?passing`).
pub fn watch_instances(client: &AgentClient, path: String) -> InstancesWatch {
    watch_path(client.clone(), path, Blocking::Index, |a| {
        let b = ok_body(a)?;
        let list = b
            .as_array()
            .map(|es| es.iter().filter_map(instance_address).collect())
            .unwrap_or_default();
        Ok(Some(list))
    })
}

/// Watches a service's `service-defaults` (a missing entry is the default).
pub fn watch_defaults(
    client: &AgentClient,
    service: &str,
) -> (
    watch::Receiver<Option<Defaults>>,
    tokio::task::JoinHandle<()>,
) {
    watch_path(
        client.clone(),
        format!("/v1/config/service-defaults/{service}"),
        Blocking::Index,
        |a| {
            if a.status == StatusCode::NOT_FOUND {
                return Ok(Some(Defaults::default()));
            }
            let b = ok_body(a)?;
            match meshgate_config_entries::decode(b.clone()) {
                Ok(ConfigEntry::ServiceDefaults(sd)) => Ok(Some(Defaults::from_entry(&sd))),
                Ok(_) => Err("not a service-defaults entry".into()),
                Err(e) => Err(format!("service-defaults: {e}")),
            }
        },
    )
}

/// One target of a compiled discovery chain: where an upstream's connections
/// go, in failover order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTarget {
    pub service: String,
    pub subset: String,
    /// Empty: the local datacenter.
    pub datacenter: String,
    /// The subset's instance filter (`?filter=`).
    pub filter: String,
    pub connect_timeout: Duration,
}

impl ChainTarget {
    /// The plain target of `service` (no resolver, or no chain yet).
    pub fn plain(service: &str, datacenter: &str) -> ChainTarget {
        ChainTarget {
            service: service.to_string(),
            subset: String::new(),
            datacenter: datacenter.to_string(),
            filter: String::new(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The passing mesh instances of this target.
    pub fn health_path(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("passing", "1");
        if !self.datacenter.is_empty() {
            q.append_pair("dc", &self.datacenter);
        }
        if !self.filter.is_empty() {
            q.append_pair("filter", &self.filter);
        }
        format!("/v1/health/connect/{}?{}", self.service, q.finish())
    }
}

/// The targets of a chain answer: the start resolver's target, then its
/// failover targets.
pub fn chain_targets(body: &Value, local_dc: &str) -> Result<Vec<ChainTarget>, String> {
    let chain = body.get("Chain").ok_or("no Chain in the answer")?;
    let start = str_of(chain, "StartNode");
    let resolver = chain
        .get("Nodes")
        .and_then(|n| n.get(start))
        .and_then(|n| n.get("Resolver"))
        .ok_or("the chain's start node is not a resolver")?;
    let mut ids = vec![str_of(resolver, "Target").to_string()];
    if let Some(f) = resolver
        .get("Failover")
        .and_then(|f| f.get("Targets"))
        .and_then(Value::as_array)
    {
        ids.extend(f.iter().filter_map(Value::as_str).map(str::to_string));
    }
    let targets = chain.get("Targets").ok_or("no Targets in the chain")?;
    ids.iter()
        .map(|id| {
            let t = targets
                .get(id)
                .ok_or_else(|| format!("target {id} is missing from the chain"))?;
            let dc = str_of(t, "Datacenter");
            Ok(ChainTarget {
                service: str_of(t, "Service").to_string(),
                subset: str_of(t, "ServiceSubset").to_string(),
                datacenter: if dc == local_dc {
                    String::new()
                } else {
                    dc.to_string()
                },
                filter: t
                    .get("Subset")
                    .map(|s| str_of(s, "Filter").to_string())
                    .unwrap_or_default(),
                connect_timeout: meshgate_types::duration::parse(str_of(t, "ConnectTimeout"))
                    .ok()
                    .filter(|d| !d.is_zero())
                    .unwrap_or(Duration::from_secs(5)),
            })
        })
        .collect()
}

/// Watches the compiled discovery chain of `service` (as seen from `dc`).
pub fn watch_chain(
    client: &AgentClient,
    service: &str,
    dc: &str,
    local_dc: &str,
) -> (
    watch::Receiver<Option<Vec<ChainTarget>>>,
    tokio::task::JoinHandle<()>,
) {
    let path = if dc.is_empty() {
        format!("/v1/discovery-chain/{service}")
    } else {
        format!("/v1/discovery-chain/{service}?compile-dc={dc}")
    };
    let local_dc = local_dc.to_string();
    watch_path(client.clone(), path, Blocking::Index, move |a| {
        chain_targets(ok_body(a)?, &local_dc).map(Some)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An override takes each field it sets and inherits the rest from
    /// `Defaults` (Consul merges them field by field).
    #[test]
    fn upstream_overrides_merge_over_defaults() {
        let entry = serde_json::json!({
            "Kind": "service-defaults",
            "Name": "web",
            "UpstreamConfig": {
                "Defaults": {"Limits": {"MaxConnections": 10}, "ConnectTimeoutMs": 2500,
                             "PassiveHealthCheck": {"MaxFailures": 3, "Interval": "20s"}},
                "Overrides": [{"Name": "db", "Limits": {"MaxConnections": 2}},
                              {"Name": "cache", "Limits": {"MaxPendingRequests": 5}}]
            }
        });
        let Ok(ConfigEntry::ServiceDefaults(sd)) = meshgate_config_entries::decode(entry) else {
            panic!("a service-defaults entry")
        };
        let d = Defaults::from_entry(&sd);
        let db = d.for_upstream("db");
        assert_eq!(db.max_connections, Some(2));
        assert_eq!(db.connect_timeout, Some(Duration::from_millis(2500)));
        let o = db.outlier.as_ref().expect("inherited from Defaults");
        assert_eq!((o.max_failures, o.interval), (3, Duration::from_secs(20)));
        assert_eq!(o.base_ejection, Duration::from_secs(30), "Envoy's default");
        let other = d.for_upstream("other");
        assert_eq!(other.max_connections, Some(10));
        // An override's `Limits` replaces the defaults' as a whole.
        assert_eq!(d.for_upstream("cache").max_connections, None);
    }
}
