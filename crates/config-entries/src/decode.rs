//! A serde [`Deserializer`] over [`serde_json::Value`] that follows the rules
//! of the decoder Consul uses for config entries (`structs.DecodeConfigEntry`
//! on the server, `helpers.ParseConfigEntry` in the CLI): mapstructure with
//! `WeaklyTypedInput`, the `HookWeakDecodeFromSlice`, `HookTranslateKeys`,
//! `StringToTimeDurationHookFunc` hooks and unused-key metadata.
//!
//! The rules, as implemented here:
//!
//! * A struct field is found by its exact name, then by its snake_case alias
//!   (the `alias:"..."` tags of Consul's structs, matched case-insensitively),
//!   then by a case-insensitive match of its name. When several keys of one
//!   object match the same field, the first chosen by that order is used and
//!   the others are *unused* keys, as in mapstructure.
//! * A one-element list where the target is not a list is replaced by its
//!   element (HCL blocks); for free-form (`interface{}`) targets the element
//!   is also "unsliced" deeply: every map value that is a one-element list is
//!   replaced by its element, as Consul does for `Config` and extension
//!   `Arguments`.
//! * Weak typing: bools and numbers decode into strings (`"1"`/`"0"`,
//!   decimal), strings and bools into numbers, strings and numbers into bools,
//!   a single value into a list of one, a list of maps into a merged map.
//! * `null` leaves the target at its zero value.
//! * Type errors do not stop decoding: they are all collected (in field
//!   order) and reported together as mapstructure does
//!   (`decoding failed due to the following error(s):` ...), and unused keys
//!   are only reported when there is no type error.
//!
//! Unused keys are reported with their path in mapstructure's form: the Go
//! field names of the enclosing structs, `[i]` for list elements, `[key]`
//! for map values, then the key as written (`Services[0].Foo`).

use std::cell::RefCell;
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::{Map, Value};

use crate::duration::{DURATION_MARKER, parse_go};

/// Consul's snake_case aliases: `(canonical field name, alias)`. Taken from
/// the `alias:"..."` struct tags of the config entry types meshgate supports.
const ALIASES: &[(&str, &str)] = &[
    ("AccessLogs", "access_logs"),
    (
        "AllowEnablingPermissiveMutualTLS",
        "allow_enabling_permissive_mutual_tls",
    ),
    ("BalanceInboundConnections", "balance_inbound_connections"),
    ("BalanceOutboundConnections", "balance_outbound_connections"),
    ("BaseEjectionTime", "base_ejection_time"),
    ("CAFile", "ca_file"),
    ("CertFile", "cert_file"),
    ("ChoiceCount", "choice_count"),
    ("CipherSuites", "cipher_suites"),
    ("ConnectTimeout", "connect_timeout"),
    ("ConnectTimeoutMs", "connect_timeout_ms"),
    ("CookieConfig", "cookie_config"),
    ("DefaultSubset", "default_subset"),
    ("DialedDirectly", "dialed_directly"),
    ("DisableListenerLogs", "disable_listener_logs"),
    ("EnforcingConsecutive5xx", "enforcing_consecutive_5xx"),
    ("EnvoyClusterJSON", "envoy_cluster_json"),
    ("EnvoyExtensions", "envoy_extensions"),
    ("EnvoyListenerJSON", "envoy_listener_json"),
    ("ExternalSNI", "external_sni"),
    ("FailoverPolicy", "failover_policy"),
    ("FieldValue", "field_value"),
    ("HashPolicies", "hash_policies"),
    (
        "HeadersWithUnderscoresAction",
        "headers_with_underscores_action",
    ),
    ("IgnoreCase", "ignore_case"),
    (
        "InsecureDisablePathNormalization",
        "insecure_disable_path_normalization",
    ),
    ("InstanceLevel", "instance_level"),
    ("JSONFormat", "json_format"),
    ("KeyFile", "key_file"),
    ("LeastRequestConfig", "least_request_config"),
    ("LegacyCreateTime", "legacy_create_time"),
    ("LegacyID", "legacy_id"),
    ("LegacyMeta", "legacy_meta"),
    ("LegacyUpdateTime", "legacy_update_time"),
    ("ListenerPort", "listener_port"),
    ("LoadBalancer", "load_balancer"),
    ("LocalConnectTimeoutMs", "local_connect_timeout_ms"),
    ("LocalPathPort", "local_path_port"),
    ("LocalRequestTimeoutMs", "local_request_timeout_ms"),
    ("MaxConcurrentRequests", "max_concurrent_requests"),
    ("MaxConnections", "max_connections"),
    ("MaxEjectionPercent", "max_ejection_percent"),
    ("MaxFailures", "max_failures"),
    ("MaxInboundConnections", "max_inbound_connections"),
    ("MaxPendingRequests", "max_pending_requests"),
    ("MaximumRingSize", "maximum_ring_size"),
    ("MergeSlashes", "merge_slashes"),
    ("MeshDestinationsOnly", "mesh_destinations_only"),
    ("MeshGateway", "mesh_gateway"),
    ("MinimumRingSize", "minimum_ring_size"),
    ("MutualTLSMode", "mutual_tls_mode"),
    ("OnlyPassing", "only_passing"),
    ("OutboundListenerPort", "outbound_listener_port"),
    ("ParsedFromCheck", "parsed_from_check"),
    ("PassiveHealthCheck", "passive_health_check"),
    ("PathExact", "path_exact"),
    ("PathPrefix", "path_prefix"),
    ("PathRegex", "path_regex"),
    (
        "PathWithEscapedSlashesAction",
        "path_with_escaped_slashes_action",
    ),
    ("PeerThroughMeshGateways", "peer_through_mesh_gateways"),
    ("PrioritizeByLocality", "prioritize_by_locality"),
    ("RateLimits", "rate_limits"),
    ("RequestNormalization", "request_normalization"),
    ("RequestTimeout", "request_timeout"),
    ("RequestsMaxBurst", "requests_max_burst"),
    ("RequestsPerSecond", "requests_per_second"),
    ("RingHashConfig", "ring_hash_config"),
    ("SamenessGroup", "sameness_group"),
    (
        "SanitizeXForwardedClientCert",
        "sanitize_x_forwarded_client_cert",
    ),
    ("ServiceSubset", "service_subset"),
    ("SourceIP", "source_ip"),
    ("TLSMaxVersion", "tls_max_version"),
    ("TLSMinVersion", "tls_min_version"),
    ("TextFormat", "text_format"),
    ("TransparentProxy", "transparent_proxy"),
    ("UpstreamConfig", "upstream_config"),
    ("ValidateClusters", "validate_clusters"),
    ("VerifyClaims", "verify_claims"),
];

/// The alias of a canonical field name, if Consul has one.
fn alias_of(field: &str) -> Option<&'static str> {
    ALIASES.iter().find(|(f, _)| *f == field).map(|(_, a)| *a)
}

/// What a decode run collects.
#[derive(Default)]
struct Ctx {
    /// Type errors, already formatted as `'path' message`.
    errors: RefCell<Vec<String>>,
    /// Unused keys, with their path.
    unused: RefCell<Vec<String>>,
    /// The input came from HCL: Go reports its integers as `int` (JSON
    /// numbers as `float64`), and a key given both as a list and as blocks
    /// (`Sources = [...]` plus `Sources { ... }`) is one list, as HCL1
    /// merges them.
    from_hcl: bool,
}

/// The result of a failed decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Type errors (mapstructure's message lines).
    Errors(Vec<String>),
    /// Keys that match no field, with their paths.
    Unused(Vec<String>),
}

/// Decodes `value` into `T` with Consul's config-entry decoder rules.
pub(crate) fn decode<T: DeserializeOwned>(value: Value, from_hcl: bool) -> Result<T, Failure> {
    let ctx = Ctx {
        from_hcl,
        ..Ctx::default()
    };
    let result = T::deserialize(De {
        value,
        path: String::new(),
        ctx: &ctx,
    });
    let mut errors = ctx.errors.into_inner();
    let out = match result {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e.0);
            None
        }
    };
    if !errors.is_empty() {
        return Err(Failure::Errors(errors));
    }
    let unused = ctx.unused.into_inner();
    if !unused.is_empty() {
        return Err(Failure::Unused(unused));
    }
    out.ok_or_else(|| Failure::Errors(vec!["decoding failed".to_owned()]))
}

/// The error type of [`De`]. Type mismatches are recorded in the context and
/// never returned; this carries only unexpected failures of a visitor.
#[derive(Debug)]
pub(crate) struct DeError(String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

struct De<'c> {
    value: Value,
    path: String,
    ctx: &'c Ctx,
}

/// Go's `reflect.TypeOf` name of a decoded JSON/HCL value.
fn go_type(v: &Value, from_hcl: bool) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if from_hcl && (n.is_i64() || n.is_u64()) => "int",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `reflect.Kind` name of a decoded JSON/HCL value.
fn go_kind(v: &Value, from_hcl: bool) -> &'static str {
    match v {
        Value::Null => "invalid",
        Value::Bool(_) => "bool",
        Value::Number(n) if from_hcl && (n.is_i64() || n.is_u64()) => "int",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

/// `HookWeakDecodeFromSlice` for targets that are not lists.
fn unslice(value: Value) -> Value {
    match value {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        other => other,
    }
}

/// `HookWeakDecodeFromSlice` for `interface{}` targets: the single element,
/// with every map value that is a one-element list replaced by its element,
/// at any depth.
fn unslice_deep(value: Value) -> Value {
    match value {
        Value::Array(mut a) if a.len() == 1 => {
            let mut v = a.remove(0);
            walk_unslice(&mut v);
            v
        }
        other => other,
    }
}

fn walk_unslice(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (_, val) in m.iter_mut() {
                if let Value::Array(a) = val
                    && a.len() == 1
                {
                    let first = a.remove(0);
                    *val = first;
                }
                walk_unslice(val);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(walk_unslice),
        _ => {}
    }
}

/// Flattens the lists of objects inside a list: the normalized form of a
/// key written both as a list attribute and as blocks.
fn flatten_hcl_lists(items: Vec<Value>) -> Vec<Value> {
    let nested = |v: &Value| match v {
        Value::Array(a) => !a.is_empty() && a.iter().all(Value::is_object),
        _ => false,
    };
    if !items.iter().any(nested) {
        return items;
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Array(a) if a.iter().all(Value::is_object) && !a.is_empty() => out.extend(a),
            other => out.push(other),
        }
    }
    out
}

/// Sorts the keys of every object, recursively: Go marshals maps with sorted
/// keys, so free-form maps are kept that way.
pub(crate) fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect::<Map<String, Value>>(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`.
fn format_float(f: f64) -> String {
    if f.is_finite() {
        format!("{f}")
    } else if f.is_nan() {
        "NaN".to_owned()
    } else if f > 0.0 {
        "+Inf".to_owned()
    } else {
        "-Inf".to_owned()
    }
}

/// Go's `strconv.ParseInt(s, 0, bits)` / `ParseUint`, returning the value or
/// the error suffix (`invalid syntax`, `value out of range`).
fn parse_go_int(s: &str, signed: bool, bits: u32) -> Result<i128, &'static str> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) if signed => (true, r),
        _ => (false, s.strip_prefix('+').filter(|_| signed).unwrap_or(s)),
    };
    if body.is_empty() {
        return Err("invalid syntax");
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r.to_owned(), true)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r.to_owned(), true)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r.to_owned(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_owned(), true)
    } else {
        (10, lower.clone(), false)
    };
    let digits = if prefixed {
        digits.replace('_', "")
    } else {
        digits
    };
    if digits.is_empty() {
        return Err("invalid syntax");
    }
    let mut v: i128 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix).ok_or("invalid syntax")?;
        v = v
            .checked_mul(i128::from(radix))
            .and_then(|v| v.checked_add(i128::from(d)))
            .ok_or("value out of range")?;
    }
    if neg {
        v = -v;
    }
    let (min, max) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    if v < min || v > max {
        return Err("value out of range");
    }
    Ok(v)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// mapstructure's `wrapTimeParseDurationError`: the quoted input is dropped.
fn wrap_duration_error(msg: &str) -> String {
    if msg.starts_with("time: unknown unit ") {
        "time: unknown unit".to_owned()
    } else if msg.starts_with("time: ") {
        match msg.rfind(' ') {
            Some(i) => msg[..i].to_owned(),
            None => msg.to_owned(),
        }
    } else {
        msg.to_owned()
    }
}

impl De<'_> {
    fn record(&self, msg: impl fmt::Display) {
        self.ctx
            .errors
            .borrow_mut()
            .push(format!("'{}' {}", self.path, msg));
    }

    fn unconvertible(&self, expected: &str, value: &Value) {
        self.record(format!(
            "expected type '{expected}', got unconvertible type '{}'",
            go_type(value, self.ctx.from_hcl)
        ));
    }

    fn with(&self, value: Value, path: String) -> De<'_> {
        De {
            value,
            path,
            ctx: self.ctx,
        }
    }

    /// An integer target: the decoded value, or `None` after recording the
    /// error (the target then takes its zero value).
    fn integer(&self, go_name: &str, signed: bool, bits: u32) -> Option<i128> {
        let value = unslice(self.value.clone());
        let wrap = |v: i128| -> i128 {
            // Go's reflect.SetInt/SetUint truncate to the target width.
            let modulus = 1i128 << bits;
            let mut r = v.rem_euclid(modulus);
            if signed && r >= modulus / 2 {
                r -= modulus;
            }
            r
        };
        match &value {
            Value::Null => Some(0),
            Value::Bool(b) => Some(i128::from(*b)),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Some(wrap(i128::from(i)))
                } else if let Some(u) = n.as_u64() {
                    Some(wrap(i128::from(u)))
                } else {
                    let f = n.as_f64().unwrap_or(0.0);
                    Some(wrap(f.trunc() as i128))
                }
            }
            Value::String(s) => {
                let s = if s.is_empty() { "0" } else { s.as_str() };
                match parse_go_int(s, signed, bits) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        let func = if signed { "ParseInt" } else { "ParseUint" };
                        self.record(format!(
                            "cannot parse value as '{go_name}': strconv.{func}: {e}"
                        ));
                        None
                    }
                }
            }
            other => {
                self.unconvertible(go_name, other);
                None
            }
        }
    }

    fn float(&self) -> f64 {
        let value = unslice(self.value.clone());
        match &value {
            Value::Null => 0.0,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Number(n) => n.as_f64().unwrap_or(0.0),
            Value::String(s) => {
                let s = if s.is_empty() { "0" } else { s.as_str() };
                match s.parse::<f64>() {
                    Ok(f) => f,
                    Err(_) => {
                        self.record(
                            "cannot parse value as 'float64': strconv.ParseFloat: invalid syntax",
                        );
                        0.0
                    }
                }
            }
            other => {
                self.unconvertible("float64", other);
                0.0
            }
        }
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty, $go:expr, $signed:expr, $bits:expr) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v = self.integer($go, $signed, $bits).unwrap_or(0);
            visitor.$visit(v as $ty)
        }
    };
}

impl<'de> Deserializer<'de> for De<'_> {
    type Error = DeError;

    /// Free-form (`interface{}`) targets: the value as it is, after the
    /// deep unslicing of a one-element list.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let value = sort_keys(unslice_deep(self.value));
        value
            .deserialize_any(visitor)
            .map_err(|e| DeError(e.to_string()))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let value = unslice(self.value.clone());
        let b = match &value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().unwrap_or(0.0) != 0.0,
            Value::String(s) => match parse_go_bool(s) {
                Some(b) => b,
                None if s.is_empty() => false,
                None => {
                    self.record("cannot parse value as 'bool': strconv.ParseBool: invalid syntax");
                    false
                }
            },
            other => {
                self.unconvertible("bool", other);
                false
            }
        };
        visitor.visit_bool(b)
    }

    int_method!(deserialize_i8, visit_i8, i8, "int8", true, 8);
    int_method!(deserialize_i16, visit_i16, i16, "int16", true, 16);
    int_method!(deserialize_i32, visit_i32, i32, "int32", true, 32);
    int_method!(deserialize_i64, visit_i64, i64, "int", true, 64);
    int_method!(deserialize_u8, visit_u8, u8, "uint8", false, 8);
    int_method!(deserialize_u16, visit_u16, u16, "uint16", false, 16);
    int_method!(deserialize_u32, visit_u32, u32, "uint32", false, 32);
    int_method!(deserialize_u64, visit_u64, u64, "uint64", false, 64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let f = self.float();
        visitor.visit_f32(f as f32)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let f = self.float();
        visitor.visit_f64(f)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let value = unslice(self.value.clone());
        let s = match value {
            Value::Null => String::new(),
            Value::String(s) => s,
            Value::Bool(b) => if b { "1" } else { "0" }.to_owned(),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    i.to_string()
                } else if let Some(u) = n.as_u64() {
                    u.to_string()
                } else {
                    format_float(n.as_f64().unwrap_or(0.0))
                }
            }
            other => {
                self.unconvertible("string", &other);
                String::new()
            }
        };
        visitor.visit_string(s)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name != DURATION_MARKER {
            return visitor.visit_newtype_struct(self);
        }
        // time.Duration: a duration string (StringToTimeDurationHookFunc) or
        // an integer of nanoseconds.
        let value = unslice(self.value.clone());
        let nanos = match &value {
            Value::String(s) => match parse_go(s) {
                Ok(n) => n,
                Err(e) => {
                    self.record(wrap_duration_error(&e));
                    0
                }
            },
            _ => self.integer("time.Duration", true, 64).unwrap_or(0) as i64,
        };
        visitor.visit_i64(nanos)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let items = match self.value {
            Value::Null => Vec::new(),
            Value::Array(a) if self.ctx.from_hcl => flatten_hcl_lists(a),
            Value::Array(a) => a,
            Value::Object(m) if m.is_empty() => Vec::new(),
            other => vec![other],
        };
        visitor.visit_seq(SeqDe {
            items: items.into_iter(),
            path: self.path,
            idx: 0,
            ctx: self.ctx,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let value = unslice(self.value.clone());
        let mut entries = Vec::new();
        self.map_entries(value, self.path.clone(), &mut entries);
        visitor.visit_map(MapDe {
            entries: entries.into_iter(),
            pending: None,
            ctx: self.ctx,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let value = unslice(self.value.clone());
        let object = match value {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                self.record(format!(
                    "expected a map or struct, got \"{}\"",
                    go_kind(&other, self.ctx.from_hcl)
                ));
                Map::new()
            }
        };
        let (chosen, mut unused) = match_fields(object, fields);
        let entries: Vec<(String, String, Value)> = chosen
            .into_iter()
            .map(|(field, v)| (field.to_owned(), child(&self.path, field), v))
            .collect();
        let result = visitor.visit_map(MapDe {
            entries: entries.into_iter(),
            pending: None,
            ctx: self.ctx,
        });
        unused.sort();
        self.ctx
            .unused
            .borrow_mut()
            .extend(unused.iter().map(|k| child(&self.path, k)));
        result
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        unslice(self.value)
            .deserialize_enum(name, variants, visitor)
            .map_err(|e| DeError(e.to_string()))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

impl De<'_> {
    /// The entries of a map target: an object's members, or (weakly) the
    /// merged members of a list of objects.
    fn map_entries(&self, value: Value, path: String, out: &mut Vec<(String, String, Value)>) {
        match value {
            Value::Null => {}
            Value::Object(m) => {
                for (k, v) in m {
                    let p = format!("{path}[{k}]");
                    out.push((k, p, v));
                }
            }
            Value::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    self.map_entries(unslice(item), format!("{path}[{i}]"), out);
                }
            }
            other => {
                let at = self.with(Value::Null, path);
                at.unconvertible("map[string]interface {}", &other);
            }
        }
    }
}

/// An input key, its value (taken once used) and the field it can fill with
/// how well it matches (0 exact, 1 alias, 2 case-insensitive).
type Keyed = (String, Option<Value>, Option<(usize, u8)>);

/// Picks, for each field in declaration order, the key that mapstructure
/// would use; returns the chosen `(field, value)` pairs and the unused keys.
fn match_fields(
    object: Map<String, Value>,
    fields: &'static [&'static str],
) -> (Vec<(&'static str, Value)>, Vec<String>) {
    // For each input key: the field it can fill and how well (0 exact,
    // 1 alias, 2 case-insensitive).
    let mut keyed: Vec<Keyed> = object
        .into_iter()
        .map(|(k, v)| {
            let lower = k.to_lowercase();
            let m = fields
                .iter()
                .position(|f| *f == k)
                .map(|i| (i, 0u8))
                .or_else(|| {
                    fields
                        .iter()
                        .position(|f| alias_of(f) == Some(lower.as_str()))
                        .map(|i| (i, 1u8))
                })
                .or_else(|| {
                    fields
                        .iter()
                        .position(|f| f.to_lowercase() == lower)
                        .map(|i| (i, 2u8))
                });
            (k, Some(v), m)
        })
        .collect();
    let mut chosen = Vec::new();
    for (fi, field) in fields.iter().enumerate() {
        let best = keyed
            .iter()
            .enumerate()
            .filter_map(|(ki, (_, _, m))| match m {
                Some((f, rank)) if *f == fi => Some((*rank, ki)),
                _ => None,
            })
            .min();
        if let Some((_, ki)) = best
            && let Some(value) = keyed[ki].1.take()
        {
            chosen.push((*field, value));
        }
    }
    let unused = keyed
        .into_iter()
        .filter(|(_, v, _)| v.is_some())
        .map(|(k, _, _)| k)
        .collect();
    (chosen, unused)
}

struct SeqDe<'c> {
    items: std::vec::IntoIter<Value>,
    path: String,
    idx: usize,
    ctx: &'c Ctx,
}

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(value) => {
                let path = format!("{}[{}]", self.path, self.idx);
                self.idx += 1;
                seed.deserialize(De {
                    value,
                    path,
                    ctx: self.ctx,
                })
                .map(Some)
            }
            None => Ok(None),
        }
    }
}

struct MapDe<'c> {
    /// `(key handed to the visitor, path of the value, value)`.
    entries: std::vec::IntoIter<(String, String, Value)>,
    pending: Option<(String, Value)>,
    ctx: &'c Ctx,
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, path, value)) => {
                let de: StrDeserializer<'_, DeError> = key.as_str().into_deserializer();
                let k = seed.deserialize(de)?;
                self.pending = Some((path, value));
                Ok(Some(k))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (path, value) = self
            .pending
            .take()
            .ok_or_else(|| DeError("value without key".to_owned()))?;
        seed.deserialize(De {
            value,
            path,
            ctx: self.ctx,
        })
    }
}

/// Go's `%q` for the strings that appear in decode errors.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
