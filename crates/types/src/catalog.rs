//! Catalog and health types: nodes, service instances, health checks, and the
//! flattened shapes the `/v1/catalog` and `/v1/health` endpoints answer with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::GoDuration;

/// Health status values.
pub mod status {
    /// Every check in this state is fine.
    pub const PASSING: &str = "passing";
    /// A warning.
    pub const WARNING: &str = "warning";
    /// Down.
    pub const CRITICAL: &str = "critical";
    /// Maintenance checks use critical; `any` is a query wildcard only.
    pub const ANY: &str = "any";

    /// Whether `s` is a status a check may have.
    pub fn is_valid(s: &str) -> bool {
        matches!(s, PASSING | WARNING | CRITICAL)
    }
}

/// The node-level liveness check every agent node carries.
pub const SERF_CHECK_ID: &str = "serfHealth";
/// Its name.
pub const SERF_CHECK_NAME: &str = "Serf Health Status";
/// Its output while the agent is alive.
pub const SERF_CHECK_ALIVE_OUTPUT: &str = "Agent alive and reachable";
/// Its output once the agent stopped answering.
pub const SERF_CHECK_FAILED_OUTPUT: &str = "Agent not live or unreachable";

/// A node in the catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: Option<BTreeMap<String, String>>,
    pub meta: Option<BTreeMap<String, String>>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Weights used by DNS and load balancing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Weights {
    pub passing: i64,
    pub warning: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// An address/port pair in a service's `TaggedAddresses`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceAddress {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Port")]
    pub port: i64,
}

/// An upstream of a connect proxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Upstream {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_partition: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_peer: String,
    pub destination_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_bind_address: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub local_bind_port: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_bind_socket_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_bind_socket_mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh_gateway: Option<MeshGatewayConfig>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub centrally_configured: bool,
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// Mesh gateway mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MeshGatewayConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// Exposed paths of a proxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExposeConfig {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub checks: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<ExposePath>,
}

/// One exposed path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExposePath {
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub listener_port: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub local_path_port: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
}

/// Transparent proxy settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TransparentProxyConfig {
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub outbound_listener_port: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dialed_directly: bool,
}

/// The `Proxy` block of a service: for `connect-proxy` services the destination
/// and upstreams, for gateways their config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProxyConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transparent_proxy: Option<TransparentProxyConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_logs: Option<Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_service_name: String,
    #[serde(
        rename = "DestinationServiceID",
        skip_serializing_if = "String::is_empty"
    )]
    pub destination_service_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_service_address: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub local_service_port: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_service_socket_path: String,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
    pub mesh_gateway: MeshGatewayConfig,
    pub expose: ExposeConfig,
}

impl ProxyConfig {
    /// Whether nothing is set (a non-proxy service).
    pub fn is_empty(&self) -> bool {
        *self == ProxyConfig::default()
    }
}

/// The `Connect` block as stored in the catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceConnect {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub native: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar_service: Option<Box<Value>>,
}

/// A service instance on a node, as the catalog stores it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeService {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub port: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    pub weights: Weights,
    pub enable_tag_override: bool,
    pub proxy: ProxyConfig,
    pub connect: ServiceConnect,
    pub peer_name: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// How a check is run, kept with the check so the agent (or the external-service
/// monitor) can run it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheckDefinition {
    #[serde(skip_serializing_if = "GoDuration::is_zero")]
    pub interval: GoDuration,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub output_max_size: i64,
    #[serde(skip_serializing_if = "GoDuration::is_zero")]
    pub timeout: GoDuration,
    #[serde(skip_serializing_if = "GoDuration::is_zero")]
    pub deregister_critical_service_after: GoDuration,
    #[serde(rename = "HTTP", skip_serializing_if = "String::is_empty")]
    pub http: String,
    #[serde(rename = "TLSServerName", skip_serializing_if = "String::is_empty")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "std::ops::Not::not")]
    pub tls_skip_verify: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub body: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable_redirects: bool,
    #[serde(rename = "TCP", skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    #[serde(rename = "TCPUseTLS", skip_serializing_if = "std::ops::Not::not")]
    pub tcp_use_tls: bool,
    #[serde(rename = "UDP", skip_serializing_if = "String::is_empty")]
    pub udp: String,
    #[serde(rename = "H2PING", skip_serializing_if = "String::is_empty")]
    pub h2ping: String,
    #[serde(rename = "OSService", skip_serializing_if = "String::is_empty")]
    pub os_service: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub script_args: Vec<String>,
    #[serde(rename = "GRPC", skip_serializing_if = "String::is_empty")]
    pub grpc: String,
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "std::ops::Not::not")]
    pub grpc_use_tls: bool,
    /// meshgate's own PostgreSQL check: `host:port` to run a startup handshake against.
    #[serde(rename = "PostgreSQL", skip_serializing_if = "String::is_empty")]
    pub postgresql: String,
    /// meshgate: ask the PostgreSQL server for TLS (`SSLRequest`) before the
    /// startup message; verified like `TCPUseTLS`.
    #[serde(
        rename = "PostgreSQLUseTLS",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub postgresql_use_tls: bool,
    /// meshgate: the database named in the PostgreSQL startup message.
    #[serde(
        rename = "PostgreSQLDatabase",
        skip_serializing_if = "String::is_empty"
    )]
    pub postgresql_database: String,
    /// meshgate: the user named in the PostgreSQL startup message.
    #[serde(rename = "PostgreSQLUser", skip_serializing_if = "String::is_empty")]
    pub postgresql_user: String,
    /// meshgate: PEM file of the CA that TLS, HTTPS and PostgreSQL-over-TLS
    /// checks trust (on the servers; empty: the system bundle).
    #[serde(rename = "TLSCAFile", skip_serializing_if = "String::is_empty")]
    pub tls_ca_file: String,
    /// A check of `Type` `session` (consul-esm's agentless mode): the
    /// session it follows; stored as given.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session_name: String,
}

impl HealthCheckDefinition {
    /// The fields a definition has, as the API spells them.
    pub const FIELDS: &'static [&'static str] = &[
        "Interval",
        "OutputMaxSize",
        "Timeout",
        "DeregisterCriticalServiceAfter",
        "HTTP",
        "TLSServerName",
        "TLSSkipVerify",
        "Header",
        "Method",
        "Body",
        "DisableRedirects",
        "TCP",
        "TCPUseTLS",
        "UDP",
        "H2PING",
        "OSService",
        "ScriptArgs",
        "GRPC",
        "GRPCUseTLS",
        "PostgreSQL",
        "PostgreSQLUseTLS",
        "PostgreSQLDatabase",
        "PostgreSQLUser",
        "TLSCAFile",
        "SessionName",
    ];

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == HealthCheckDefinition::default()
    }

    /// Drops from a check's JSON (`{"Definition": {...}, ...}`) the keys of
    /// its `Definition` that a definition does not have: Consul reads a
    /// definition with its own decoder, which ignores them (clients send
    /// `IntervalDuration` and the like), while the rest of the body is read
    /// strictly.
    pub fn drop_unknown_keys(check: &mut serde_json::Value) {
        let Some(def) = check
            .as_object_mut()
            .and_then(|o| {
                o.iter_mut()
                    .find(|(k, _)| k.eq_ignore_ascii_case("Definition"))
            })
            .and_then(|(_, v)| v.as_object_mut())
        else {
            return;
        };
        def.retain(|k, _| {
            let k = crate::lenient::normalize_key(k);
            Self::FIELDS
                .iter()
                .any(|f| crate::lenient::normalize_key(f) == k)
        });
    }
}

/// A health check on a node or service instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheck {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: String,
    pub notes: String,
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    #[serde(rename = "Type")]
    pub check_type: String,
    pub interval: String,
    pub timeout: String,
    pub exposed_port: i64,
    pub definition: HealthCheckDefinition,
    pub create_index: u64,
    pub modify_index: u64,
}

/// `PUT /v1/catalog/register` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RegisterRequest {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: Option<BTreeMap<String, String>>,
    pub node_meta: Option<BTreeMap<String, String>>,
    pub service: Option<NodeService>,
    pub check: Option<HealthCheck>,
    pub checks: Vec<HealthCheck>,
    pub skip_node_update: bool,
}

/// `PUT /v1/catalog/deregister` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeregisterRequest {
    pub node: String,
    pub datacenter: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
}

/// One element of `/v1/catalog/service/:name`: a service instance flattened with
/// its node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceNode {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: Option<BTreeMap<String, String>>,
    pub node_meta: Option<BTreeMap<String, String>>,
    pub service_kind: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub service_address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub service_weights: Weights,
    pub service_meta: BTreeMap<String, String>,
    pub service_port: i64,
    pub service_ports: Option<Value>,
    pub service_socket_path: String,
    pub service_enable_tag_override: bool,
    pub service_proxy: ProxyConfig,
    pub service_connect: ServiceConnect,
    pub service_locality: Option<Value>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl ServiceNode {
    /// Flattens a node and one of its services.
    pub fn new(node: &Node, svc: &NodeService) -> ServiceNode {
        ServiceNode {
            id: node.id.clone(),
            node: node.node.clone(),
            address: node.address.clone(),
            datacenter: node.datacenter.clone(),
            tagged_addresses: node.tagged_addresses.clone(),
            node_meta: node.meta.clone(),
            service_kind: svc.kind.clone(),
            service_id: svc.id.clone(),
            service_name: svc.service.clone(),
            service_tags: svc.tags.clone(),
            service_address: svc.address.clone(),
            service_tagged_addresses: svc.tagged_addresses.clone(),
            service_weights: svc.weights,
            service_meta: svc.meta.clone(),
            service_port: svc.port,
            service_ports: None,
            service_socket_path: svc.socket_path.clone(),
            service_enable_tag_override: svc.enable_tag_override,
            service_proxy: svc.proxy.clone(),
            service_connect: svc.connect.clone(),
            service_locality: None,
            create_index: svc.create_index,
            modify_index: svc.modify_index,
        }
    }
}

/// One element of `/v1/health/service/:name`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckServiceNode {
    pub node: Node,
    pub service: NodeService,
    pub checks: Vec<HealthCheck>,
}

impl CheckServiceNode {
    /// The worst status among the checks (`passing` when there are none).
    pub fn aggregated_status(&self) -> &'static str {
        aggregate_status(self.checks.iter().map(|c| c.status.as_str()))
    }
}

/// The worst of several statuses: critical > warning > passing.
pub fn aggregate_status<'a>(statuses: impl Iterator<Item = &'a str>) -> &'static str {
    let mut worst = status::PASSING;
    for s in statuses {
        match s {
            status::CRITICAL => return status::CRITICAL,
            status::WARNING => worst = status::WARNING,
            status::PASSING => {}
            // Unknown statuses count as critical.
            _ => return status::CRITICAL,
        }
    }
    worst
}

/// `/v1/catalog/node/:node`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServices {
    pub node: Node,
    pub services: BTreeMap<String, NodeService>,
}

/// `/v1/catalog/node-services/:node`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServiceList {
    pub node: Node,
    pub services: Vec<NodeService>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `FIELDS` names every field of a definition as it is written out.
    #[test]
    fn definition_fields_are_listed() {
        let d = GoDuration(Duration::from_secs(1));
        let s = || "x".to_string();
        let full = HealthCheckDefinition {
            interval: d,
            output_max_size: 1,
            timeout: d,
            deregister_critical_service_after: d,
            http: s(),
            tls_server_name: s(),
            tls_skip_verify: true,
            header: BTreeMap::from([(s(), vec![s()])]),
            method: s(),
            body: s(),
            disable_redirects: true,
            tcp: s(),
            tcp_use_tls: true,
            udp: s(),
            h2ping: s(),
            os_service: s(),
            script_args: vec![s()],
            grpc: s(),
            grpc_use_tls: true,
            postgresql: s(),
            postgresql_use_tls: true,
            postgresql_database: s(),
            postgresql_user: s(),
            tls_ca_file: s(),
            session_name: s(),
        };
        let v = serde_json::to_value(&full).unwrap();
        let mut written: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut listed = HealthCheckDefinition::FIELDS.to_vec();
        written.sort_unstable();
        listed.sort_unstable();
        assert_eq!(written, listed);
    }

    #[test]
    fn unknown_definition_keys_are_dropped() {
        let mut check = serde_json::json!({"CheckID": "c",
            "Definition": {"http": "http://x/", "IntervalDuration": "10s", "Interval": "5s"}});
        HealthCheckDefinition::drop_unknown_keys(&mut check);
        assert_eq!(
            check["Definition"],
            serde_json::json!({"http": "http://x/", "Interval": "5s"})
        );
    }
}
