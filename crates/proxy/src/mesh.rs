//! What both proxies learn from the agent: the CA roots, leaf certificates,
//! intentions, service instances and service defaults.

use std::sync::Arc;
use std::time::Duration;

use meshgate_config_entries::intentions::{self, Intention};
use meshgate_config_entries::{ConfigEntry, ServiceDefaults};
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

/// Protocol and connection limit from a service's `service-defaults`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Defaults {
    /// Lower case; empty means `tcp`.
    pub protocol: String,
    /// Concurrent connections allowed (None: no limit).
    pub max_connections: Option<u64>,
    /// Connect timeout to an instance.
    pub connect_timeout: Option<Duration>,
}

impl Defaults {
    pub fn is_postgres(&self) -> bool {
        self.protocol == "postgres"
    }

    fn from_entry(sd: &ServiceDefaults) -> Defaults {
        let upstream = sd
            .upstream_config
            .as_ref()
            .and_then(|u| u.defaults.as_ref());
        let from_limits = upstream
            .and_then(|d| d.limits.as_ref())
            .and_then(|l| l.max_connections)
            .filter(|n| *n > 0)
            .map(|n| n as u64);
        let inbound = (sd.max_inbound_connections > 0).then_some(sd.max_inbound_connections as u64);
        Defaults {
            protocol: sd.protocol.to_ascii_lowercase(),
            max_connections: inbound.or(from_limits),
            connect_timeout: upstream
                .map(|d| d.connect_timeout_ms)
                .filter(|ms| *ms > 0)
                .map(|ms| Duration::from_millis(ms as u64)),
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

/// A watched list of instances (`host`, `port`) and its task.
pub type InstancesWatch = (
    watch::Receiver<Option<Vec<(String, u16)>>>,
    tokio::task::JoinHandle<()>,
);

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
