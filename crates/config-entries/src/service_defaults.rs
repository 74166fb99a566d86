//! `service-defaults` and `proxy-defaults`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::{
    AccessLogsConfig, DestinationConfig, EnvoyExtension, ExposeConfig, FailoverPolicy,
    MeshGatewayConfig, PrioritizeByLocality, RateLimits, TransparentProxyConfig,
    UpstreamConfiguration, is_valid_connection_balance, is_zero_i64, is_zero_u64,
    validate_extensions, validate_mutual_tls_mode,
};
use crate::validate::{ValidationError, meta_errors, meta_result, multi_result};

/// The protocols a service-defaults entry accepts. Consul accepts `tcp`,
/// `http`, `http2` and `grpc`; meshgate adds `postgres`, which its data
/// plane understands (the PostgreSQL wire protocol, including the in-band
/// `SSLRequest` TLS upgrade).
pub const VALID_PROTOCOLS: &[&str] = &["tcp", "http", "http2", "grpc", "postgres"];

/// `service-defaults`: defaults for one service across the cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceDefaults {
    /// The service name (not `*`).
    pub name: String,
    /// `tcp` (default), `http`, `http2`, `grpc`, or meshgate's `postgres`.
    /// Lower-cased by normalization. Always present in JSON, as in Consul.
    pub protocol: String,
    /// Proxy mode: `""`, `direct` or `transparent`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Transparent proxy settings.
    pub transparent_proxy: TransparentProxyConfig,
    /// `""`, `strict` or `permissive`.
    #[serde(rename = "MutualTLSMode", skip_serializing_if = "String::is_empty")]
    pub mutual_tls_mode: String,
    /// Mesh gateway mode.
    pub mesh_gateway: MeshGatewayConfig,
    /// Exposed paths.
    pub expose: ExposeConfig,
    /// SNI for a service outside the mesh.
    #[serde(rename = "ExternalSNI", skip_serializing_if = "String::is_empty")]
    pub external_sni: String,
    /// Per-upstream settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_config: Option<UpstreamConfiguration>,
    /// Transparent-proxy egress destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationConfig>,
    /// Maximum inbound connections per instance.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub max_inbound_connections: i64,
    /// Timeout for connections to the local application, in ms.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub local_connect_timeout_ms: i64,
    /// Timeout for requests to the local application, in ms.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub local_request_timeout_ms: i64,
    /// `""` or `exact_balance`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub balance_inbound_connections: String,
    /// Enterprise rate limits (rejected by validation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    /// Envoy extensions (kept for compatibility).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub envoy_extensions: Vec<EnvoyExtension>,
    /// Free-form metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Content hash, computed by normalization.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub hash: u64,
    /// Raft index of creation (set by the store).
    pub create_index: u64,
    /// Raft index of the last change (set by the store).
    pub modify_index: u64,
    /// Maximum request header size in KB.
    #[serde(
        rename = "MaxRequestHeadersKB",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_request_headers_kb: Option<u32>,
}

impl ServiceDefaults {
    pub(crate) fn normalize(&mut self) {
        self.protocol = self.protocol.to_lowercase();
        if let Some(uc) = &mut self.upstream_config {
            for o in &mut uc.overrides {
                o.normalize();
            }
            if let Some(d) = &mut uc.defaults {
                d.normalize();
            }
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        if self.name.is_empty() {
            return Err(ValidationError::single("Name is required"));
        }
        if self.name == "*" {
            return Err(ValidationError::single(
                "service-defaults name must be the name of a service, and not a wildcard",
            ));
        }
        let mut errs = meta_errors(&self.meta);
        if !is_valid_connection_balance(&self.balance_inbound_connections) {
            errs.push(format!(
                "invalid value for balance_inbound_connections: {}",
                self.balance_inbound_connections
            ));
        }
        if !self.protocol.is_empty() && !VALID_PROTOCOLS.contains(&self.protocol.as_str()) {
            errs.push(format!("invalid value for protocol: {}", self.protocol));
        }
        if self.upstream_config.is_some() && self.destination.is_some() {
            errs.push(
                "UpstreamConfig and Destination are mutually exclusive for service defaults".into(),
            );
            return multi_result(errs);
        }
        if let Some(uc) = &self.upstream_config {
            for o in &uc.overrides {
                if let Err(e) = o.validate(true) {
                    errs.push(format!(
                        "error in upstream override for {}: {e}",
                        o.peered_name()
                    ));
                }
            }
            if let Some(d) = &uc.defaults
                && let Err(e) = d.validate(false)
            {
                errs.push(format!("error in upstream defaults: {e}"));
            }
        }
        if let Some(dest) = &self.destination {
            if dest.addresses.is_empty() {
                errs.push("Destination must contain at least one valid address".into());
            }
            let mut seen = std::collections::BTreeSet::new();
            for a in &dest.addresses {
                if !seen.insert(a.as_str()) {
                    errs.push(format!("Duplicate address '{a}' is not allowed"));
                    continue;
                }
                if !is_ip_or_hostname(a) {
                    errs.push(format!(
                        "Destination address '{a}' is invalid Could not validate address {a} as an IP or Hostname"
                    ));
                }
            }
            if dest.port < 1 || dest.port > 65535 {
                errs.push(format!("Invalid Port number {}", dest.port));
            }
        }
        if self.rate_limits.is_some() {
            errs.push(
                "invalid rate_limits config. Rate limiting is a consul enterprise feature".into(),
            );
        }
        errs.extend(validate_extensions(&self.envoy_extensions));
        validate_mutual_tls_mode(&self.mutual_tls_mode)?;
        multi_result(errs)
    }
}

/// Consul's `validateEndpointAddress`: an IP, or a domain name (as liberal
/// as `dns.IsDomainName`) without `*`.
fn is_ip_or_hostname(a: &str) -> bool {
    if a.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if a.is_empty() || a.contains('*') || a.len() > 254 {
        return false;
    }
    let trimmed = a.strip_suffix('.').unwrap_or(a);
    if trimmed.is_empty() {
        return a == ".";
    }
    trimmed
        .split('.')
        .all(|label| !label.is_empty() && label.len() <= 63)
}

/// `proxy-defaults`: global defaults for every proxy. The name is always
/// `global`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProxyDefaults {
    /// Always `global` (normalization fills it in).
    pub name: String,
    /// Opaque proxy configuration (`protocol`, `connect_timeout_ms`,
    /// `envoy_*` ...). `null` in JSON when absent, as in Consul.
    pub config: Option<BTreeMap<String, Value>>,
    /// Proxy mode: `""`, `direct` or `transparent`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Transparent proxy settings.
    pub transparent_proxy: TransparentProxyConfig,
    /// `""`, `strict` or `permissive`.
    #[serde(rename = "MutualTLSMode", skip_serializing_if = "String::is_empty")]
    pub mutual_tls_mode: String,
    /// Mesh gateway mode.
    pub mesh_gateway: MeshGatewayConfig,
    /// Exposed paths.
    pub expose: ExposeConfig,
    /// Access logs.
    pub access_logs: AccessLogsConfig,
    /// Envoy extensions (kept for compatibility).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub envoy_extensions: Vec<EnvoyExtension>,
    /// Default failover policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_policy: Option<FailoverPolicy>,
    /// Locality prioritization (Enterprise; rejected when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prioritize_by_locality: Option<PrioritizeByLocality>,
    /// Free-form metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Content hash, computed by normalization.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub hash: u64,
    /// Raft index of creation (set by the store).
    pub create_index: u64,
    /// Raft index of the last change (set by the store).
    pub modify_index: u64,
}

/// Longest `envoy_hcp_metrics_bind_socket_dir` Consul accepts.
const MAX_SOCKET_DIR_LEN: usize = 70;

impl ProxyDefaults {
    /// The protocol from `Config["protocol"]` (Consul's `ComputeProtocol`,
    /// weakly typed), `""` when unset.
    pub fn protocol(&self) -> String {
        match self.config.as_ref().and_then(|c| c.get("protocol")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => if *b { "1" } else { "0" }.to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    }

    pub(crate) fn normalize(&mut self) {
        if self.name.is_empty() {
            self.name = "global".to_owned();
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        if self.name != "global" {
            return Err(ValidationError::single(format!(
                "invalid name ({}), only \"global\" is supported",
                crate::decode::go_quote(&self.name)
            )));
        }
        self.access_logs
            .validate()
            .map_err(ValidationError::single)?;
        meta_result(&self.meta)?;
        if let Some(Value::String(dir)) = self
            .config
            .as_ref()
            .and_then(|c| c.get("envoy_hcp_metrics_bind_socket_dir"))
            && dir.len() > MAX_SOCKET_DIR_LEN
        {
            return Err(ValidationError::single(format!(
                "Config: envoy_hcp_metrics_bind_socket_dir length {} exceeds max {MAX_SOCKET_DIR_LEN}",
                dir.len()
            )));
        }
        multi_result(validate_extensions(&self.envoy_extensions))?;
        if let Some(fp) = &self.failover_policy {
            fp.validate().map_err(ValidationError::single)?;
        }
        if let Some(p) = &self.prioritize_by_locality {
            p.validate().map_err(ValidationError::single)?;
        }
        validate_mutual_tls_mode(&self.mutual_tls_mode)
    }
}
