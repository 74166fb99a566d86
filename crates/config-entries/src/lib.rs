//! Consul-compatible config entries: the kinds meshgate supports
//! (`service-defaults`, `proxy-defaults`, `service-resolver`,
//! `service-intentions`, `terminating-gateway`, `mesh`), decoded, normalized,
//! validated and serialized the way Consul does, plus the intention logic of
//! the `/v1/connect/intentions` API ([`intentions`]).
//!
//! # Decoding
//!
//! [`decode`] reads the body of `PUT /v1/config`; [`parse_file_text`] reads
//! the HCL or JSON file of `meshgate config write FILE`. Both follow the
//! decoder Consul uses for config entries:
//!
//! * the kind comes from a top-level `Kind` or `kind` key
//!   (`Payload does not contain a kind/Kind key at the top level`,
//!   `Kind value in payload is not a string`,
//!   `invalid config entry kind: foo`);
//! * field names match exactly, by their snake_case alias (`ca_file`,
//!   `mesh_gateway`, ...) or case-insensitively;
//! * input is weakly typed (`"80"` for a number, `"true"` for a bool, a
//!   single value for a list, `[{...}]` for an object), durations are Go
//!   duration strings or nanoseconds;
//! * keys that match no field are errors, all reported at once as a
//!   multierror (`1 error occurred:\n\t* invalid config key "Foo"\n\n`);
//!   `Namespace` keys get Consul CE's
//!   `..., namespaces are a consul enterprise feature` and `Partition` keys
//!   are plain unknown keys, as in Consul CE.
//!
//! Kinds Consul has but meshgate does not implement (`service-router`,
//! `ingress-gateway`, ...) are rejected with [`DecodeError::UnsupportedKind`].
//!
//! # Normalization, validation, output
//!
//! [`ConfigEntry::normalize`] then [`ConfigEntry::validate`] are what
//! Consul's server runs on every write, with its messages (Consul CE's:
//! Enterprise-only settings such as sameness groups, failover policies of
//! resolvers, `PrioritizeByLocality` or `RateLimits` are rejected). Meshgate
//! accepts one protocol Consul does not: `postgres` in service-defaults.
//! Not checked here: the syntax of service-resolver subset `Filter`
//! expressions and the arguments of Envoy extensions (only their names), and
//! the cross-entry rule that `MutualTLSMode = "permissive"` needs the mesh
//! entry's `AllowEnablingPermissiveMutualTLS` (the store's job).
//!
//! [`ConfigEntry::to_json`] is the JSON Consul's HTTP API returns for the
//! entry (`GET /v1/config/:kind/:name`); [`ConfigEntry::to_api_json`] the
//! JSON of Consul's Go `api` structs (what `consul config read` prints and
//! `consul config write` sends); [`ConfigEntry::to_hcl`] an HCL rendering
//! that [`parse_file_text`] reads back. Maps are written with sorted keys,
//! as Go does; `Kind` and `Name` always come first (Consul itself writes a
//! service-resolver's `ConnectTimeout`/`RequestTimeout` before `Kind`; key
//! order has no meaning in JSON).
//!
//! ```
//! let entry = meshgate_config_entries::parse_file_text(r#"
//! Kind = "terminating-gateway"
//! Name = "carbonio-gateway"
//! Services = [
//!   { Name = "carbonio-files-db", CAFile = "/etc/ssl/ca.pem" }
//! ]
//! "#)?;
//! let mut entry = entry;
//! entry.normalize();
//! let warnings = entry.validate()?;
//! assert_eq!(
//!     warnings,
//!     ["TLS is configured but SNI is not set for service \"carbonio-files-db\". \
//!       Enabling SNI is strongly recommended when using TLS."]
//! );
//! assert_eq!(entry.to_json()["Services"][0]["CAFile"], "/etc/ssl/ca.pem");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod common;
mod decode;
mod duration;
pub mod intentions;
mod mesh;
mod service_defaults;
mod service_intentions;
mod service_resolver;
mod terminating_gateway;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use common::{
    AccessLogsConfig, DestinationConfig, EnvoyExtension, ExposeConfig, ExposePath, FailoverPolicy,
    InstanceLevelRateLimits, InstanceLevelRouteRateLimits, MeshGatewayConfig, PassiveHealthCheck,
    PrioritizeByLocality, RateLimits, TransparentProxyConfig, UpstreamConfig,
    UpstreamConfiguration, UpstreamLimits,
};
pub use duration::{Nanos, format_go as format_go_duration, parse_go as parse_go_duration};
pub use mesh::{
    Mesh, MeshDirectionalHttpConfig, MeshDirectionalTlsConfig, MeshHttpConfig, MeshTlsConfig,
    PeeringMeshConfig, RequestNormalizationMeshConfig, TransparentProxyMeshConfig,
};
pub use service_defaults::{ProxyDefaults, ServiceDefaults, VALID_PROTOCOLS};
pub use service_intentions::{
    IntentionHttpHeaderPermission, IntentionHttpPermission, IntentionJwtClaimVerification,
    IntentionJwtProvider, IntentionJwtRequirement, IntentionPermission, ServiceIntentions,
    SourceIntention,
};
pub use service_resolver::{
    CookieConfig, HashPolicy, LeastRequestConfig, LoadBalancer, RingHashConfig, ServiceResolver,
    ServiceResolverFailover, ServiceResolverFailoverTarget, ServiceResolverRedirect,
    ServiceResolverSubset,
};
pub use terminating_gateway::{LinkedService, TerminatingGateway};
pub use validate::{
    META_KEY_MAX_LENGTH, META_MAX_KEY_PAIRS, META_VALUE_MAX_LENGTH, ValidationError, multi_text,
};

/// `service-defaults`.
pub const SERVICE_DEFAULTS: &str = "service-defaults";
/// `proxy-defaults`.
pub const PROXY_DEFAULTS: &str = "proxy-defaults";
/// `service-resolver`.
pub const SERVICE_RESOLVER: &str = "service-resolver";
/// `service-intentions`.
pub const SERVICE_INTENTIONS: &str = "service-intentions";
/// `terminating-gateway`.
pub const TERMINATING_GATEWAY: &str = "terminating-gateway";
/// `mesh`.
pub const MESH: &str = "mesh";

/// The kinds meshgate implements.
pub const SUPPORTED_KINDS: &[&str] = &[
    SERVICE_DEFAULTS,
    PROXY_DEFAULTS,
    SERVICE_RESOLVER,
    SERVICE_INTENTIONS,
    TERMINATING_GATEWAY,
    MESH,
];

/// Kinds Consul CE knows that meshgate does not implement.
pub const UNSUPPORTED_CONSUL_KINDS: &[&str] = &[
    "service-router",
    "service-splitter",
    "ingress-gateway",
    "exported-services",
    "sameness-group",
    "api-gateway",
    "bound-api-gateway",
    "file-system-certificate",
    "inline-certificate",
    "http-route",
    "tcp-route",
    "jwt-provider",
];

/// Why a payload could not be decoded into a config entry. The
/// [`Display`](std::fmt::Display) text is Consul's (the HTTP API prefixes it
/// with `Request decoding failed: `, the CLI with
/// `Failed to decode config entry input: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The file is not valid HCL or JSON (`At 2:10: ...`).
    #[error("{0}")]
    Syntax(String),
    /// The payload is not an object.
    #[error("json: cannot unmarshal {0} into Go value of type map[string]interface {{}}")]
    NotAnObject(&'static str),
    /// No `Kind`/`kind` key.
    #[error("Payload does not contain a kind/Kind key at the top level")]
    MissingKind,
    /// `Kind` is not a string.
    #[error("Kind value in payload is not a string")]
    KindNotString,
    /// Not a config entry kind.
    #[error("invalid config entry kind: {0}")]
    InvalidKind(String),
    /// A Consul kind meshgate does not implement.
    #[error("config entry kind {0:?} is not supported by meshgate")]
    UnsupportedKind(String),
    /// Values of the wrong type (mapstructure's messages, one per line).
    #[error("decoding failed due to the following error(s):\n\n{}", .0.join("\n"))]
    Decode(Vec<String>),
    /// Keys that match no field, with their paths (`Services[0].Foo`);
    /// displayed as Consul's multierror of `invalid config key "..."`.
    #[error("{}", multi_text(&unused_key_messages(.0)))]
    InvalidKeys(Vec<String>),
}

impl DecodeError {
    /// The individual messages (one for most variants).
    pub fn messages(&self) -> Vec<String> {
        match self {
            DecodeError::Decode(v) => v.clone(),
            DecodeError::InvalidKeys(keys) => unused_key_messages(keys),
            other => vec![other.to_string()],
        }
    }
}

/// Consul CE's `validateUnusedKeys` messages.
fn unused_key_messages(keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            let lower = k.to_lowercase();
            let quoted = decode::go_quote(k);
            if lower.ends_with("namespace") {
                format!("invalid config key {quoted}, namespaces are a consul enterprise feature")
            } else if lower.contains("jwt") {
                format!(
                    "invalid config key {quoted}, api-gateway jwt validation is a consul enterprise feature"
                )
            } else {
                format!("invalid config key {quoted}")
            }
        })
        .collect()
}

/// Checks a kind name as Consul's `MakeConfigEntry` does (used by
/// `DELETE /v1/config/:kind/:name` and `GET`): the canonical kind, or
/// [`DecodeError::InvalidKind`] / [`DecodeError::UnsupportedKind`].
pub fn check_kind(kind: &str) -> Result<&'static str, DecodeError> {
    if let Some(k) = SUPPORTED_KINDS.iter().find(|k| **k == kind) {
        return Ok(k);
    }
    if UNSUPPORTED_CONSUL_KINDS.contains(&kind) {
        return Err(DecodeError::UnsupportedKind(kind.to_owned()));
    }
    Err(DecodeError::InvalidKind(kind.to_owned()))
}

/// A config entry of one of the supported kinds.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "entries are few and short-lived; plain variants keep matching simple"
)]
pub enum ConfigEntry {
    /// `service-defaults`.
    ServiceDefaults(ServiceDefaults),
    /// `proxy-defaults`.
    ProxyDefaults(ProxyDefaults),
    /// `service-resolver`.
    ServiceResolver(ServiceResolver),
    /// `service-intentions`.
    ServiceIntentions(ServiceIntentions),
    /// `terminating-gateway`.
    TerminatingGateway(TerminatingGateway),
    /// `mesh`.
    Mesh(Mesh),
}

/// Decodes a `PUT /v1/config` body (already parsed JSON) into an entry.
pub fn decode(value: Value) -> Result<ConfigEntry, DecodeError> {
    decode_inner(value, false)
}

/// Decodes an entry written in an agent configuration file
/// (`config_entries { bootstrap = [...] }`): field names in any case or in
/// snake_case, as Consul decodes them there.
pub fn decode_from_agent_config(value: Value) -> Result<ConfigEntry, DecodeError> {
    decode_inner(value, true)
}

/// Decodes the text of a config entry file, HCL or JSON (JSON when the
/// first character that is not whitespace is `{`), as
/// `consul config write FILE` does.
pub fn parse_file_text(text: &str) -> Result<ConfigEntry, DecodeError> {
    let is_json = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('{');
    let value =
        meshgate_hcl::parse_to_json(text).map_err(|e| DecodeError::Syntax(e.to_string()))?;
    decode_inner(value, !is_json)
}

fn decode_inner(value: Value, from_hcl: bool) -> Result<ConfigEntry, DecodeError> {
    let mut map = match value {
        Value::Object(m) => m,
        Value::Array(_) => return Err(DecodeError::NotAnObject("array")),
        Value::String(_) => return Err(DecodeError::NotAnObject("string")),
        Value::Number(_) => return Err(DecodeError::NotAnObject("number")),
        Value::Bool(_) => return Err(DecodeError::NotAnObject("bool")),
        Value::Null => Map::new(),
    };
    let kind = match map.get("Kind").or_else(|| map.get("kind")) {
        None => return Err(DecodeError::MissingKind),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(DecodeError::KindNotString),
    };
    let kind = check_kind(&kind)?;
    // The kind selects the target; it is not a field of it.
    map.retain(|k, _| !k.eq_ignore_ascii_case("kind"));
    let value = Value::Object(map);
    let map_failure = |f: decode::Failure| match f {
        decode::Failure::Errors(e) => DecodeError::Decode(e),
        decode::Failure::Unused(k) => DecodeError::InvalidKeys(k),
    };
    let entry = match kind {
        SERVICE_DEFAULTS => {
            ConfigEntry::ServiceDefaults(decode::decode(value, from_hcl).map_err(map_failure)?)
        }
        PROXY_DEFAULTS => {
            ConfigEntry::ProxyDefaults(decode::decode(value, from_hcl).map_err(map_failure)?)
        }
        SERVICE_RESOLVER => {
            ConfigEntry::ServiceResolver(decode::decode(value, from_hcl).map_err(map_failure)?)
        }
        SERVICE_INTENTIONS => {
            ConfigEntry::ServiceIntentions(decode::decode(value, from_hcl).map_err(map_failure)?)
        }
        TERMINATING_GATEWAY => {
            ConfigEntry::TerminatingGateway(decode::decode(value, from_hcl).map_err(map_failure)?)
        }
        _ => ConfigEntry::Mesh(decode::decode(value, from_hcl).map_err(map_failure)?),
    };
    Ok(entry)
}

/// The CLI's warning for `MutualTLSMode = "permissive"` in service-defaults.
pub const WARNING_SERVICE_DEFAULTS_PERMISSIVE_MTLS: &str = "MutualTLSMode=permissive is insecure. Set to `strict` when your service no longer needs to accept non-mTLS traffic. Check `tcp.permissive_public_listener` metrics in Envoy for non-mTLS traffic. Refer to Consul documentation for more information.";
/// The CLI's warning for `MutualTLSMode = "permissive"` in proxy-defaults.
pub const WARNING_PROXY_DEFAULTS_PERMISSIVE_MTLS: &str = "MutualTLSMode=permissive is insecure. To keep your services secure, set MutualTLSMode to `strict` whenever possible and override with service-defaults only if necessary. To check which service-defaults are currently in permissive mode, run `consul config list -kind service-defaults -filter 'MutualTLSMode = \"permissive\"'`.";
/// The CLI's warning for `AllowEnablingPermissiveMutualTLS = true` in mesh.
pub const WARNING_MESH_ALLOW_PERMISSIVE_MTLS: &str = "AllowEnablingPermissiveMutualTLS=true allows insecure MutualTLSMode=permissive configurations in the proxy-defaults and service-defaults config entries. You can set AllowEnablingPermissiveMutualTLS=false at any time to disallow additional permissive configurations. To list services in permissive mode, run `consul config list -kind service-defaults -filter 'MutualTLSMode = \"permissive\"'`.";

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn to_object<T: Serialize>(v: &T) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

impl ConfigEntry {
    /// The kind name (`terminating-gateway`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            ConfigEntry::ServiceDefaults(_) => SERVICE_DEFAULTS,
            ConfigEntry::ProxyDefaults(_) => PROXY_DEFAULTS,
            ConfigEntry::ServiceResolver(_) => SERVICE_RESOLVER,
            ConfigEntry::ServiceIntentions(_) => SERVICE_INTENTIONS,
            ConfigEntry::TerminatingGateway(_) => TERMINATING_GATEWAY,
            ConfigEntry::Mesh(_) => MESH,
        }
    }

    /// The entry name: `global` for proxy-defaults (also before
    /// normalization fills it in), `mesh` for mesh.
    pub fn name(&self) -> &str {
        match self {
            ConfigEntry::ServiceDefaults(e) => &e.name,
            ConfigEntry::ProxyDefaults(e) if e.name.is_empty() => "global",
            ConfigEntry::ProxyDefaults(e) => &e.name,
            ConfigEntry::ServiceResolver(e) => &e.name,
            ConfigEntry::ServiceIntentions(e) => &e.name,
            ConfigEntry::TerminatingGateway(e) => &e.name,
            ConfigEntry::Mesh(_) => MESH,
        }
    }

    /// The entry's `Meta`.
    pub fn meta(&self) -> &BTreeMap<String, String> {
        match self {
            ConfigEntry::ServiceDefaults(e) => &e.meta,
            ConfigEntry::ProxyDefaults(e) => &e.meta,
            ConfigEntry::ServiceResolver(e) => &e.meta,
            ConfigEntry::ServiceIntentions(e) => &e.meta,
            ConfigEntry::TerminatingGateway(e) => &e.meta,
            ConfigEntry::Mesh(e) => &e.meta,
        }
    }

    fn indexes_mut(&mut self) -> (&mut u64, &mut u64, &mut u64) {
        match self {
            ConfigEntry::ServiceDefaults(e) => {
                (&mut e.create_index, &mut e.modify_index, &mut e.hash)
            }
            ConfigEntry::ProxyDefaults(e) => {
                (&mut e.create_index, &mut e.modify_index, &mut e.hash)
            }
            ConfigEntry::ServiceResolver(e) => {
                (&mut e.create_index, &mut e.modify_index, &mut e.hash)
            }
            ConfigEntry::ServiceIntentions(e) => {
                (&mut e.create_index, &mut e.modify_index, &mut e.hash)
            }
            ConfigEntry::TerminatingGateway(e) => {
                (&mut e.create_index, &mut e.modify_index, &mut e.hash)
            }
            ConfigEntry::Mesh(e) => (&mut e.create_index, &mut e.modify_index, &mut e.hash),
        }
    }

    fn indexes(&self) -> (u64, u64, u64) {
        match self {
            ConfigEntry::ServiceDefaults(e) => (e.create_index, e.modify_index, e.hash),
            ConfigEntry::ProxyDefaults(e) => (e.create_index, e.modify_index, e.hash),
            ConfigEntry::ServiceResolver(e) => (e.create_index, e.modify_index, e.hash),
            ConfigEntry::ServiceIntentions(e) => (e.create_index, e.modify_index, e.hash),
            ConfigEntry::TerminatingGateway(e) => (e.create_index, e.modify_index, e.hash),
            ConfigEntry::Mesh(e) => (e.create_index, e.modify_index, e.hash),
        }
    }

    /// `CreateIndex`.
    pub fn create_index(&self) -> u64 {
        self.indexes().0
    }

    /// `ModifyIndex`.
    pub fn modify_index(&self) -> u64 {
        self.indexes().1
    }

    /// `Hash` (computed by [`normalize`](Self::normalize); 0 before).
    pub fn hash(&self) -> u64 {
        self.indexes().2
    }

    /// Sets `CreateIndex` and `ModifyIndex` (the store does this on write).
    pub fn set_indexes(&mut self, create_index: u64, modify_index: u64) {
        let (c, m, _) = self.indexes_mut();
        *c = create_index;
        *m = modify_index;
    }

    /// Consul's `Normalize`, run on every write before validation:
    /// proxy-defaults gets the name `global` when it has none,
    /// service-defaults lower-cases `Protocol` (and the upstream protocols,
    /// clamping negative connect timeouts), service-intentions defaults
    /// `Type` to `consul`, recomputes `Precedence`, clears the legacy fields,
    /// upper-cases HTTP methods and sorts the sources by descending
    /// precedence. Every kind then gets its `Hash` (a 64-bit FNV-1a of the
    /// entry's JSON without `Hash` and the indexes: stable, but not the
    /// value Consul would compute).
    pub fn normalize(&mut self) {
        match self {
            ConfigEntry::ServiceDefaults(e) => e.normalize(),
            ConfigEntry::ProxyDefaults(e) => e.normalize(),
            ConfigEntry::ServiceIntentions(e) => e.normalize(),
            ConfigEntry::ServiceResolver(_)
            | ConfigEntry::TerminatingGateway(_)
            | ConfigEntry::Mesh(_) => {}
        }
        self.rehash();
    }

    /// A service-intentions entry written through the legacy (ID-based)
    /// intention API: normalized keeping its legacy fields, then hashed.
    pub fn normalize_legacy(&mut self) {
        if let ConfigEntry::ServiceIntentions(e) = self {
            e.normalize_legacy();
        }
        self.rehash();
    }

    /// Sets `Hash` from the entry's JSON (see [`normalize`](Self::normalize)).
    fn rehash(&mut self) {
        let mut bare = self.clone();
        {
            let (c, m, h) = bare.indexes_mut();
            *c = 0;
            *m = 0;
            *h = 0;
        }
        let text = serde_json::to_string(&bare.to_json()).unwrap_or_default();
        let hash = fnv1a(text.as_bytes());
        *self.indexes_mut().2 = hash;
    }

    /// Consul's `Validate`, with its messages; on success the warnings
    /// Consul's server logs for the entry (terminating-gateway: TLS without
    /// SNI). Run [`normalize`](Self::normalize) first, as Consul does.
    pub fn validate(&self) -> Result<Vec<String>, ValidationError> {
        match self {
            ConfigEntry::ServiceDefaults(e) => e.validate()?,
            ConfigEntry::ProxyDefaults(e) => e.validate()?,
            ConfigEntry::ServiceResolver(e) => e.validate()?,
            ConfigEntry::ServiceIntentions(e) => e.validate()?,
            ConfigEntry::TerminatingGateway(e) => {
                e.validate()?;
                return Ok(e.warnings());
            }
            ConfigEntry::Mesh(e) => e.validate()?,
        }
        Ok(Vec::new())
    }

    /// The warning `consul config write` prints after a successful write
    /// (`WARNING: ...`): permissive mutual TLS in service- or proxy-defaults,
    /// `AllowEnablingPermissiveMutualTLS` in mesh.
    pub fn write_warning(&self) -> Option<&'static str> {
        match self {
            ConfigEntry::ServiceDefaults(e) if e.mutual_tls_mode == "permissive" => {
                Some(WARNING_SERVICE_DEFAULTS_PERMISSIVE_MTLS)
            }
            ConfigEntry::ProxyDefaults(e) if e.mutual_tls_mode == "permissive" => {
                Some(WARNING_PROXY_DEFAULTS_PERMISSIVE_MTLS)
            }
            ConfigEntry::Mesh(e) if e.allow_enabling_permissive_mutual_tls => {
                Some(WARNING_MESH_ALLOW_PERMISSIVE_MTLS)
            }
            _ => None,
        }
    }

    /// The JSON Consul's HTTP API returns for this entry: `Kind` first, then
    /// the fields of Consul's `agent/structs` type in their order, with
    /// their `omitempty` rules (so `Protocol`, `TransparentProxy`,
    /// `MeshGateway`, `Expose` of service-defaults are always present, and
    /// `Services` of a terminating-gateway is `null` when unset).
    pub fn to_json(&self) -> Value {
        let body = match self {
            ConfigEntry::ServiceDefaults(e) => to_object(e),
            ConfigEntry::ProxyDefaults(e) => to_object(e),
            ConfigEntry::ServiceResolver(e) => to_object(e),
            ConfigEntry::ServiceIntentions(e) => to_object(e),
            ConfigEntry::TerminatingGateway(e) => to_object(e),
            ConfigEntry::Mesh(e) => to_object(e),
        };
        let mut out = Map::new();
        out.insert("Kind".to_owned(), Value::String(self.kind().to_owned()));
        out.extend(body);
        Value::Object(out)
    }

    /// The JSON of Consul's Go `api` structs for this entry, as
    /// `consul config read` prints it: like [`to_json`](Self::to_json)
    /// without `Hash`, with the `api` package's own `omitempty` rules (an
    /// empty `Protocol` or upstream `Peer` is left out, `Limits` fields and
    /// `MaxFailures` are always present, ...).
    pub fn to_api_json(&self) -> Value {
        let mut v = self.to_json();
        let Some(obj) = v.as_object_mut() else {
            return v;
        };
        obj.retain(|k, _| k != "Hash");
        match self {
            ConfigEntry::ServiceDefaults(_) => {
                remove_if(obj, "Protocol", |v| v == "");
                if let Some(uc) = obj.get_mut("UpstreamConfig").and_then(Value::as_object_mut) {
                    if let Some(list) = uc.get_mut("Overrides").and_then(Value::as_array_mut) {
                        list.iter_mut().for_each(api_upstream);
                    }
                    if let Some(d) = uc.get_mut("Defaults") {
                        api_upstream(d);
                    }
                }
                api_expose(obj);
            }
            ConfigEntry::ProxyDefaults(_) => {
                remove_if(obj, "Config", Value::is_null);
                api_expose(obj);
            }
            ConfigEntry::TerminatingGateway(_) => {
                remove_if(obj, "Services", Value::is_null);
            }
            ConfigEntry::Mesh(_) => {
                if let Some(rn) = obj
                    .get_mut("HTTP")
                    .and_then(|h| h.get_mut("Incoming"))
                    .and_then(|i| i.get_mut("RequestNormalization"))
                    .and_then(Value::as_object_mut)
                {
                    rn.retain(|_, v| v != &Value::Bool(false) && v != "");
                }
                if let Some(p) = obj.get_mut("Peering").and_then(Value::as_object_mut) {
                    remove_if(p, "PeerThroughMeshGateways", |v| v == &Value::Bool(false));
                }
            }
            ConfigEntry::ServiceResolver(_) | ConfigEntry::ServiceIntentions(_) => {}
        }
        v
    }

    /// The entry as HCL (for "view as HCL"): the
    /// [`to_api_json`](Self::to_api_json) form without the read-only
    /// `CreateIndex` and `ModifyIndex`, printed by [`meshgate_hcl::to_hcl`].
    /// [`parse_file_text`] reads it back to the same entry.
    pub fn to_hcl(&self) -> String {
        let mut v = self.to_api_json();
        if let Some(obj) = v.as_object_mut() {
            obj.retain(|k, _| k != "CreateIndex" && k != "ModifyIndex");
        }
        meshgate_hcl::to_hcl(&v)
    }
}

fn remove_if(obj: &mut Map<String, Value>, key: &str, pred: impl Fn(&Value) -> bool) {
    if obj.get(key).is_some_and(pred) {
        obj.retain(|k, _| k != key);
    }
}

/// An upstream config in the `api` package's shape.
fn api_upstream(v: &mut Value) {
    let Some(u) = v.as_object_mut() else { return };
    remove_if(u, "Peer", |v| v == "");
    if let Some(l) = u.get_mut("Limits").and_then(Value::as_object_mut) {
        for k in [
            "MaxConnections",
            "MaxPendingRequests",
            "MaxConcurrentRequests",
        ] {
            l.entry(k).or_insert(Value::Null);
        }
    }
    if let Some(p) = u
        .get_mut("PassiveHealthCheck")
        .and_then(Value::as_object_mut)
    {
        p.entry("MaxFailures").or_insert(Value::from(0));
    }
}

/// `Expose.Paths[].ParsedFromCheck` is always present in the `api` shape.
fn api_expose(obj: &mut Map<String, Value>) {
    if let Some(paths) = obj
        .get_mut("Expose")
        .and_then(|e| e.get_mut("Paths"))
        .and_then(Value::as_array_mut)
    {
        for p in paths.iter_mut().filter_map(Value::as_object_mut) {
            p.entry("ParsedFromCheck").or_insert(Value::Bool(false));
        }
    }
}

impl Serialize for ConfigEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for ConfigEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        decode(v).map_err(serde::de::Error::custom)
    }
}

macro_rules! from_kind {
    ($ty:ident) => {
        impl From<$ty> for ConfigEntry {
            fn from(e: $ty) -> ConfigEntry {
                ConfigEntry::$ty(e)
            }
        }
    };
}

from_kind!(ServiceDefaults);
from_kind!(ProxyDefaults);
from_kind!(ServiceResolver);
from_kind!(ServiceIntentions);
from_kind!(TerminatingGateway);
from_kind!(Mesh);
