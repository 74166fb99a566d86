//! Types shared by several config entry kinds, with Consul's JSON shape
//! (`omitempty` as in `agent/structs`) and their validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::Nanos;
use crate::validate::{ValidationError, multi_text};

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

pub(crate) fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

pub(crate) fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// `MeshGateway`: how upstream connections use mesh gateways.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MeshGatewayConfig {
    /// `""`, `none`, `local` or `remote`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// `TransparentProxy` of service-defaults and proxy-defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TransparentProxyConfig {
    /// Port of the outbound listener traffic is redirected to.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub outbound_listener_port: i64,
    /// Whether transparent proxies may dial this proxy's instances directly.
    #[serde(skip_serializing_if = "is_false")]
    pub dialed_directly: bool,
}

/// `Expose`: HTTP paths exposed outside the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExposeConfig {
    /// Expose the paths of HTTP and gRPC checks.
    #[serde(skip_serializing_if = "is_false")]
    pub checks: bool,
    /// Paths to expose.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<ExposePath>,
}

/// One exposed path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExposePath {
    /// Port of the proxy's listener for this path.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub listener_port: i64,
    /// The path, e.g. `/metrics`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Port the local service listens on for the path.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub local_path_port: i64,
    /// `http` or `http2`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Set when the path came from a registered check.
    #[serde(skip_serializing_if = "is_false")]
    pub parsed_from_check: bool,
}

/// One `EnvoyExtensions` element. Meshgate's data plane is not Envoy; the
/// extensions are stored and returned for compatibility.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EnvoyExtension {
    /// Extension name, e.g. `builtin/lua`.
    pub name: String,
    /// Fail the proxy configuration when the extension cannot be applied.
    pub required: bool,
    /// Free-form arguments (`null` when absent).
    pub arguments: Option<BTreeMap<String, Value>>,
    /// Version constraint on Consul.
    pub consul_version: String,
    /// Version constraint on Envoy.
    pub envoy_version: String,
}

/// The built-in extension names Consul CE knows.
const BUILTIN_EXTENSIONS: &[&str] = &[
    "builtin/aws/lambda",
    "builtin/ext-authz",
    "builtin/lua",
    "builtin/otel-access-logging",
    "builtin/property-override",
    "builtin/wasm",
];

/// Consul's `envoyextensions.ValidateExtensions`, without the per-extension
/// argument checks: a name is required and must be a built-in extension.
pub(crate) fn validate_extensions(exts: &[EnvoyExtension]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, ext) in exts.iter().enumerate() {
        if ext.name.is_empty() {
            out.push(format!("invalid EnvoyExtensions[{i}]: Name is required"));
            continue;
        }
        if !BUILTIN_EXTENSIONS.contains(&ext.name.as_str()) {
            out.push(format!(
                "invalid EnvoyExtensions[{i}][{}]: name {} is not a built-in extension",
                ext.name,
                crate::decode::go_quote(&ext.name)
            ));
        }
    }
    out
}

/// `AccessLogs` of proxy-defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AccessLogsConfig {
    /// Turn access logs on.
    #[serde(skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// Turn off logs for connections rejected for lack of a listener.
    #[serde(skip_serializing_if = "is_false")]
    pub disable_listener_logs: bool,
    /// `""`, `file`, `stderr` or `stdout`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub r#type: String,
    /// Output file for `file`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// JSON log format.
    #[serde(rename = "JSONFormat", skip_serializing_if = "String::is_empty")]
    pub json_format: String,
    /// Text log format.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text_format: String,
}

impl AccessLogsConfig {
    /// Consul's `AccessLogsConfig.Validate`.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self.r#type.as_str() {
            "" | "stderr" | "stdout" => {}
            "file" => {
                if self.path.is_empty() {
                    return Err("path must be specified when using file type access logs".into());
                }
            }
            other => return Err(format!("invalid access log type: {other}")),
        }
        if !self.json_format.is_empty() && !self.text_format.is_empty() {
            return Err("cannot specify both access log JSONFormat and TextFormat".into());
        }
        if self.r#type != "file" && !self.path.is_empty() {
            return Err("path is only valid for file type access logs".into());
        }
        if !self.json_format.is_empty() {
            match serde_json::from_str::<Value>(&self.json_format) {
                Err(e) => return Err(format!("invalid access log json for JSON format: {e}")),
                // A struct, as Consul decodes it.
                Ok(v) if !v.is_object() => {
                    return Err(
                        "invalid access log json for JSON format: it must be a JSON object".into(),
                    );
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }
}

/// `FailoverPolicy` (proxy-defaults and service-resolver failover).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FailoverPolicy {
    /// `""`, `sequential` or `order-by-locality`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Region order for `order-by-locality`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
}

impl FailoverPolicy {
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self.mode.as_str() {
            "" | "sequential" | "order-by-locality" => Ok(()),
            _ => Err(
                "Failover-policy mode must be one of '', 'sequential', or 'order-by-locality'"
                    .into(),
            ),
        }
    }
}

/// `PrioritizeByLocality`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PrioritizeByLocality {
    /// `""`, `none` or `failover`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

impl PrioritizeByLocality {
    /// Consul CE rejects any non-empty setting.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.mode.is_empty() {
            Ok(())
        } else {
            Err("Prioritize-by-locality requires Consul Enterprise ".into())
        }
    }
}

/// `UpstreamConfig` of service-defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpstreamConfiguration {
    /// Per-upstream settings; `Name` is required in each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<UpstreamConfig>,
    /// Settings for all upstreams; `Name` must be empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defaults: Option<UpstreamConfig>,
}

/// One upstream's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpstreamConfig {
    /// Upstream service name (overrides only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Cluster peer of the upstream (overrides only).
    pub peer: String,
    /// Listener escape hatch.
    #[serde(rename = "EnvoyListenerJSON", skip_serializing_if = "String::is_empty")]
    pub envoy_listener_json: String,
    /// Cluster escape hatch.
    #[serde(rename = "EnvoyClusterJSON", skip_serializing_if = "String::is_empty")]
    pub envoy_cluster_json: String,
    /// Upstream protocol (lower-cased by normalization).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Connect timeout in milliseconds (5000 when unset).
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub connect_timeout_ms: i64,
    /// Connection limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<UpstreamLimits>,
    /// Outlier detection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passive_health_check: Option<PassiveHealthCheck>,
    /// Mesh gateway mode for this upstream.
    pub mesh_gateway: MeshGatewayConfig,
    /// `""` or `exact_balance`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub balance_outbound_connections: String,
}

impl UpstreamConfig {
    pub(crate) fn normalize(&mut self) {
        self.protocol = self.protocol.to_lowercase();
        if self.connect_timeout_ms < 0 {
            self.connect_timeout_ms = 0;
        }
    }

    /// `PeeredServiceName.String()` as Consul prints it in errors.
    pub(crate) fn peered_name(&self) -> String {
        if self.name.is_empty() {
            ":".to_owned()
        } else {
            format!("{}:{}", self.name, self.peer)
        }
    }

    /// Consul's `UpstreamConfig.validate(named)`: a plain message, or the
    /// text of a multierror.
    pub(crate) fn validate(&self, named: bool) -> Result<(), String> {
        if named {
            if self.name.is_empty() {
                return Err("Name is required".into());
            }
            if self.name == "*" {
                return Err("Wildcard name is not supported".into());
            }
        } else if !self.name.is_empty() {
            return Err("Name must be empty".into());
        }
        let mut errs = Vec::new();
        if let Some(phc) = &self.passive_health_check
            && let Err(e) = phc.validate()
        {
            errs.push(e);
        }
        if let Some(l) = &self.limits
            && let Err(e) = l.validate()
        {
            errs.push(e);
        }
        if !is_valid_connection_balance(&self.balance_outbound_connections) {
            errs.push(format!(
                "invalid value for balance_outbound_connections: {}",
                self.balance_outbound_connections
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(multi_text(&errs))
        }
    }
}

pub(crate) fn is_valid_connection_balance(s: &str) -> bool {
    s.is_empty() || s == "exact_balance"
}

/// Connection limits of an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpstreamLimits {
    /// Maximum connections to the upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// Maximum queued requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<i64>,
    /// Maximum in-flight requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<i64>,
}

impl UpstreamLimits {
    fn validate(&self) -> Result<(), String> {
        if self.max_connections.is_some_and(|v| v < 0) {
            return Err("max connections cannot be negative".into());
        }
        if self.max_pending_requests.is_some_and(|v| v < 0) {
            return Err("max pending requests cannot be negative".into());
        }
        if self.max_concurrent_requests.is_some_and(|v| v < 0) {
            return Err("max concurrent requests cannot be negative".into());
        }
        Ok(())
    }
}

/// Outlier detection of an upstream. Durations are integers of nanoseconds
/// in JSON, as in Consul.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PassiveHealthCheck {
    /// Time between ejection sweeps.
    #[serde(skip_serializing_if = "Nanos::is_zero")]
    pub interval: Nanos,
    /// Consecutive failures before ejection.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub max_failures: u32,
    /// Percentage chance to eject on consecutive 5xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcing_consecutive_5xx: Option<u32>,
    /// Maximum percentage of hosts ejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    /// Base ejection time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Nanos>,
}

impl PassiveHealthCheck {
    fn validate(&self) -> Result<(), String> {
        if self.interval.0 < 0 {
            return Err("passive health check interval cannot be negative".into());
        }
        if self.enforcing_consecutive_5xx.is_some_and(|v| v > 100) {
            return Err(
                "passive health check enforcing_consecutive_5xx must be a percentage between 0 and 100"
                    .into(),
            );
        }
        if self.max_ejection_percent.is_some_and(|v| v > 100) {
            return Err(
                "passive health check max_ejection_percent must be a percentage between 0 and 100"
                    .into(),
            );
        }
        if self.base_ejection_time.is_some_and(|v| v.0 < 0) {
            return Err("passive health check base_ejection_time cannot be negative".into());
        }
        Ok(())
    }
}

/// `Destination` of service-defaults (transparent-proxy egress).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DestinationConfig {
    /// IPs or host names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Port, 1–65535.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub port: i64,
}

/// `RateLimits` (an Enterprise feature; rejected by validation, as on CE).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RateLimits {
    /// Per-instance limits.
    pub instance_level: InstanceLevelRateLimits,
}

/// Per-instance rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InstanceLevelRateLimits {
    /// Average requests per second.
    pub requests_per_second: i64,
    /// Burst size.
    pub requests_max_burst: i64,
    /// Per-route limits (`null` when absent).
    pub routes: Option<Vec<InstanceLevelRouteRateLimits>>,
}

/// Per-route rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InstanceLevelRouteRateLimits {
    /// Exact path.
    pub path_exact: String,
    /// Path prefix.
    pub path_prefix: String,
    /// Path regex.
    pub path_regex: String,
    /// Average requests per second.
    pub requests_per_second: i64,
    /// Burst size.
    pub requests_max_burst: i64,
}

/// Consul's `MutualTLSMode.validate`.
pub(crate) fn validate_mutual_tls_mode(mode: &str) -> Result<(), ValidationError> {
    match mode {
        "" | "strict" | "permissive" => Ok(()),
        other => Err(ValidationError::single(format!(
            "Invalid MutualTLSMode {}. Must be one of \"\", \"strict\", or \"permissive\".",
            crate::decode::go_quote(other)
        ))),
    }
}
