//! The agent configuration keys Consul documents, with their types, and whether
//! meshgate implements them.
//!
//! Operators bring existing Consul configs: every documented key is accepted.
//! Keys meshgate implements are decoded into [`crate::config::Config`]; the rest
//! are accepted with a log line saying they have no effect. Unknown keys and
//! values of the wrong type are errors.

use meshgate_types::agent::{CheckDefinition, ServiceDefinition};
use meshgate_types::lenient::{self, Options};
use serde_json::Value;

/// The type a key's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    Bool,
    Duration,
    Float,
    StrList,
    /// A map with free-form keys and string values.
    StrMap,
    /// An object whose keys are listed in the table.
    Object,
    /// A list of objects whose keys are listed in the table.
    ObjectList,
    /// Anything (free-form).
    Any,
    /// Service definitions (checked by decoding).
    Services,
    /// Check definitions (checked by decoding).
    Checks,
}

/// Whether meshgate uses a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Implemented.
    Yes,
    /// Accepted, no effect.
    No,
    /// Deprecated spelling of another key.
    Deprecated(&'static str),
}

/// The verdict on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    Ok,
    NoEffect,
    Deprecated(&'static str),
    Unknown,
    BadValue(String),
}

use Ty::*;

/// The documented keys: `path<TAB>type<TAB>flag`, read from Consul's
/// configuration source (`*` matches any key of a named map).
static KEYS_TSV: &str = include_str!("config_keys.tsv");

/// The keys meshgate implements (decoded into [`crate::config::Config`] or read
/// by a subsystem).
pub static IMPLEMENTED: &[&str] = &[
    "acl",
    "acl.enabled",
    "acl.default_policy",
    "acl.down_policy",
    "acl.enable_token_persistence",
    "acl.enable_key_list_policy",
    "acl.tokens",
    "acl.tokens.initial_management",
    "acl.tokens.agent",
    "acl.tokens.agent_recovery",
    "acl.tokens.default",
    "acl.tokens.dns",
    "acl.tokens.replication",
    "acl.tokens.config_file_service_registration",
    "addresses",
    "addresses.dns",
    "addresses.http",
    "addresses.https",
    "addresses.grpc",
    "addresses.grpc_tls",
    "advertise_addr",
    "alt_domain",
    "bind_addr",
    "bootstrap",
    "bootstrap_expect",
    "check",
    "checks",
    "check_output_max_size",
    "check_update_interval",
    "client_addr",
    "data_dir",
    "datacenter",
    "disable_update_check",
    "dns_config",
    "encrypt",
    "external_health",
    "external_health.enabled",
    "external_health.node_probe_interval",
    "external_health.node_probe_timeout",
    "external_health.check_interval",
    "external_health.check_timeout",
    "external_health.critical_threshold",
    "external_health.passing_threshold",
    "dns_config.a_record_limit",
    "dns_config.allow_stale",
    "dns_config.disable_compression",
    "dns_config.enable_additional_node_meta_txt",
    "dns_config.enable_truncate",
    "dns_config.max_stale",
    "dns_config.node_ttl",
    "dns_config.only_passing",
    "dns_config.recursor_strategy",
    "dns_config.recursor_timeout",
    "dns_config.service_ttl",
    "dns_config.soa",
    "dns_config.soa.expire",
    "dns_config.soa.min_ttl",
    "dns_config.soa.refresh",
    "dns_config.soa.retry",
    "dns_config.udp_answer_limit",
    "config_entries",
    "config_entries.bootstrap",
    "connect",
    "connect.ca_config",
    "connect.ca_provider",
    "default_query_time",
    "discard_check_output",
    "domain",
    "enable_local_script_checks",
    "enable_script_checks",
    "kv_max_value_size",
    "http_config",
    "http_config.allow_write_http_from",
    "http_config.block_endpoints",
    "http_config.response_headers",
    "limits",
    "limits.http_max_conns_per_client",
    "limits.kv_max_value_size",
    "limits.txn_max_req_len",
    "leave_on_terminate",
    "log_file",
    "log_json",
    "log_level",
    "log_rotate_bytes",
    "log_rotate_duration",
    "log_rotate_max_files",
    "max_query_time",
    "node_id",
    "node_meta",
    "node_name",
    "ports",
    "ports.dns",
    "ports.http",
    "ports.https",
    "ports.grpc",
    "ports.grpc_tls",
    "ports.serf_lan",
    "ports.serf_wan",
    "ports.server",
    "ports.sidecar_min_port",
    "ports.sidecar_max_port",
    "ports.expose_min_port",
    "ports.expose_max_port",
    "pid_file",
    "primary_datacenter",
    "recursors",
    "retry_interval",
    "retry_join",
    "retry_max",
    "server",
    "service",
    "services",
    "session_ttl_min",
    "skip_leave_on_interrupt",
    "start_join",
    "tagged_addresses",
    "txn_max_req_len",
    "telemetry",
    "telemetry.dogstatsd_addr",
    "telemetry.dogstatsd_tags",
    "telemetry.metrics_prefix",
    "telemetry.disable_hostname",
    "telemetry.statsd_address",
    "telemetry.statsite_address",
    "tls",
    "tls.defaults",
    "tls.defaults.ca_file",
    "tls.defaults.cert_file",
    "tls.defaults.key_file",
    "tls.defaults.verify_incoming",
    "tls.defaults.tls_min_version",
    "tls.defaults.tls_cipher_suites",
    "tls.https",
    "tls.https.ca_file",
    "tls.https.cert_file",
    "tls.https.key_file",
    "tls.https.verify_incoming",
    "tls.https.tls_min_version",
    "tls.https.tls_cipher_suites",
    "tls.internal_rpc",
    "tls.internal_rpc.ca_file",
    "tls.internal_rpc.cert_file",
    "tls.internal_rpc.key_file",
    "tls.internal_rpc.tls_min_version",
    "tls.internal_rpc.tls_cipher_suites",
    "ui_config",
    "ui_config.enabled",
    "ui_config.content_path",
    "watches",
];

/// One documented key.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub segments: Vec<String>,
    pub ty: Ty,
    pub use_: Use,
    pub rejected: bool,
}

static KEYS: std::sync::LazyLock<Vec<KeySpec>> = std::sync::LazyLock::new(|| {
    let mut out = Vec::new();
    for line in KEYS_TSV.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split('\t');
        let path = parts.next().unwrap_or_default();
        let ty = match parts.next().unwrap_or_default() {
            "string" => Str,
            "int" => Int,
            "bool" => Bool,
            "duration" => Duration,
            "float" => Float,
            "[string]" => StrList,
            "map[string]string" => StrMap,
            "object" => Object,
            "[object]" => ObjectList,
            "services" => Services,
            "checks" => Checks,
            _ => Any,
        };
        let flag = parts.next().unwrap_or_default();
        let use_ = if let Some(new) = flag.strip_prefix("dep:") {
            Use::Deprecated(leak(new))
        } else if IMPLEMENTED.contains(&path) {
            Use::Yes
        } else {
            Use::No
        };
        out.push(KeySpec {
            segments: path.split('.').map(str::to_string).collect(),
            ty,
            use_,
            rejected: flag == "rejected",
        });
    }
    // `dev` is set by the -dev flag.
    out.push(KeySpec {
        segments: vec!["dev".into()],
        ty: Bool,
        use_: Use::Yes,
        rejected: false,
    });
    out
});

fn leak(s: &str) -> &'static str {
    // The table is built once per process; these few strings live as long.
    Box::leak(s.to_string().into_boxed_str())
}

fn lookup(path: &str) -> Option<&'static KeySpec> {
    let segs: Vec<&str> = path.split('.').collect();
    KEYS.iter().find(|k| {
        k.segments.len() == segs.len()
            && k.segments
                .iter()
                .zip(&segs)
                .all(|(a, b)| a == "*" || a.eq_ignore_ascii_case(b))
    })
}

/// Whether some documented key lives below `path` (a named map such as `audit.sink`).
fn has_children(path: &str) -> bool {
    let segs: Vec<&str> = path.split('.').collect();
    KEYS.iter().any(|k| {
        k.segments.len() > segs.len()
            && k.segments
                .iter()
                .zip(&segs)
                .all(|(a, b)| a == "*" || a.eq_ignore_ascii_case(b))
    })
}

/// Calls `f(path, value)` for every key of `v`, descending into objects the table
/// lists as `Object`/`ObjectList` (and into unknown objects, so their own keys
/// are reported too).
pub fn walk(v: &Value, f: &mut dyn FnMut(&str, &Value)) {
    fn go(prefix: &str, v: &Value, f: &mut dyn FnMut(&str, &Value)) {
        let Value::Object(m) = v else { return };
        for (k, child) in m {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            f(&path, child);
            let descend = match lookup(&path) {
                Some(k) => {
                    matches!(k.ty, Object | ObjectList) || (k.ty == Any && has_children(&path))
                }
                None => has_children(&path),
            };
            if descend {
                match child {
                    Value::Object(_) => go(&path, child, f),
                    Value::Array(items) => {
                        for i in items {
                            go(&path, i, f);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    go("", v, f)
}

fn type_ok(ty: Ty, v: &Value) -> Result<(), String> {
    let is_intish = |v: &Value| match v {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::String(s) => s.trim().parse::<i64>().is_ok(),
        _ => false,
    };
    let ok = match ty {
        Any | Object | ObjectList | Services | Checks => true,
        Str => matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)),
        Int => is_intish(v),
        Float => {
            matches!(v, Value::Number(_))
                || matches!(v, Value::String(s) if s.trim().parse::<f64>().is_ok())
        }
        Bool => {
            matches!(v, Value::Bool(_))
                || matches!(v, Value::String(s) if matches!(s.as_str(), "true" | "false"))
        }
        Duration => match v {
            Value::String(s) => meshgate_types::duration::parse(s).is_ok(),
            Value::Number(_) => true,
            _ => false,
        },
        StrList => match v {
            Value::Array(a) => a.iter().all(|x| x.is_string()),
            Value::String(_) => true,
            _ => false,
        },
        StrMap => match v {
            Value::Object(m) => m.values().all(|x| !x.is_object() && !x.is_array()),
            Value::Array(a) => a.iter().all(|x| x.is_object()),
            _ => false,
        },
    };
    if ok {
        Ok(())
    } else {
        let want = match ty {
            Str => "a string",
            Int => "an integer",
            Bool => "a boolean",
            Duration => "a duration such as \"10s\"",
            Float => "a number",
            StrList => "a list of strings",
            StrMap => "a map of strings",
            _ => "an object",
        };
        Err(format!("invalid value {v}: expected {want}"))
    }
}

/// Checks one key and its value.
pub fn check(path: &str, v: &Value) -> KeyCheck {
    let Some(spec) = lookup(path) else {
        // A named entry of a map whose entries have documented keys (`audit.sink.x`).
        if has_children(path) && v.is_object() {
            return KeyCheck::Ok;
        }
        return KeyCheck::Unknown;
    };
    if spec.rejected {
        return KeyCheck::BadValue("this key is not valid here".into());
    }
    let (ty, use_) = (spec.ty, spec.use_);
    if matches!(ty, Object | ObjectList) && use_ != Use::Yes {
        // Reported on its leaves instead.
        if let Use::Deprecated(new) = use_ {
            return KeyCheck::Deprecated(new);
        }
        return KeyCheck::Ok;
    }
    if let Err(why) = type_ok(ty, v) {
        return KeyCheck::BadValue(why);
    }
    match ty {
        Services => {
            if let Err(e) = lenient::from_value::<Vec<ServiceDefinition>>(
                v.clone(),
                Options { deny_unknown: true },
            ) {
                return KeyCheck::BadValue(e.to_string());
            }
        }
        Checks => {
            if let Err(e) = lenient::from_value::<Vec<CheckDefinition>>(
                v.clone(),
                Options { deny_unknown: true },
            ) {
                return KeyCheck::BadValue(e.to_string());
            }
        }
        _ => {}
    }
    match use_ {
        Use::Yes => KeyCheck::Ok,
        Use::No => KeyCheck::NoEffect,
        Use::Deprecated(new) => KeyCheck::Deprecated(new),
    }
}

/// Moves values of deprecated keys to their current spelling (when that one is
/// not set too), so the decoder sees one key.
pub fn translate_deprecated(v: &mut Value) {
    for spec in KEYS.iter() {
        let Use::Deprecated(new) = spec.use_ else {
            continue;
        };
        if spec.segments.iter().any(|s| s == "*") {
            continue;
        }
        let old: Vec<&str> = spec.segments.iter().map(String::as_str).collect();
        if let Some(val) = take_path(v, &old) {
            let new: Vec<&str> = new.split('.').collect();
            set_path_if_absent(v, &new, val);
        }
    }
}

fn take_path(v: &mut Value, path: &[&str]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut cur = v;
    for p in parents {
        cur = cur.as_object_mut()?.get_mut(*p)?;
    }
    cur.as_object_mut()?.remove(*last)
}

fn set_path_if_absent(v: &mut Value, path: &[&str], val: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        cur = obj
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    if let Some(obj) = cur.as_object_mut() {
        obj.entry(last.to_string()).or_insert(val);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn verdicts(v: Value) -> Vec<(String, KeyCheck)> {
        let mut out = Vec::new();
        walk(&v, &mut |p, val| out.push((p.to_string(), check(p, val))));
        out
    }

    #[test]
    fn known_unknown_and_no_effect() {
        let v = verdicts(json!({
            "datacenter": "dc1",
            "performance": {"raft_multiplier": 1},
            "ports": {"grpc_tls": -1, "http": 8500},
            "bogus": true,
            "audit": {"sink": {"mine": {"type": "file", "path": "/x"}}},
        }));
        let get = |p: &str| v.iter().find(|(k, _)| k == p).map(|(_, c)| c.clone());
        assert_eq!(get("datacenter"), Some(KeyCheck::Ok));
        assert_eq!(get("performance.raft_multiplier"), Some(KeyCheck::NoEffect));
        assert_eq!(get("ports.http"), Some(KeyCheck::Ok));
        assert_eq!(get("bogus"), Some(KeyCheck::Unknown));
        assert_eq!(get("audit.sink.mine.type"), Some(KeyCheck::NoEffect));
    }

    #[test]
    fn cluster_tls_falls_back_to_defaults() {
        let v = verdicts(
            json!({"tls": {"internal_rpc": {"ca_file": "/a", "verify_incoming": true},
                                        "defaults": {"cert_file": "/c", "key_file": "/k"}}}),
        );
        let get = |p: &str| v.iter().find(|(k, _)| k == p).map(|(_, c)| c.clone());
        assert_eq!(get("tls.internal_rpc.ca_file"), Some(KeyCheck::Ok));
        assert_eq!(get("tls.defaults.cert_file"), Some(KeyCheck::Ok));
        // meshgate always verifies both ways when the files are there.
        assert_eq!(
            get("tls.internal_rpc.verify_incoming"),
            Some(KeyCheck::NoEffect)
        );
        let mut t = crate::config::TlsConfig::default();
        t.internal_rpc.ca_file = "/a".into();
        assert_eq!(t.cluster(), None);
        t.defaults.cert_file = "/c".into();
        t.defaults.key_file = "/k".into();
        let f = t.cluster().expect("all three files");
        assert_eq!(
            (
                f.ca_file.as_str(),
                f.cert_file.as_str(),
                f.key_file.as_str()
            ),
            ("/a", "/c", "/k")
        );
    }

    #[test]
    fn dns_keys_take_effect() {
        let v = verdicts(json!({
            "domain": "consul", "alt_domain": "mesh", "recursors": ["10.0.0.53"],
            "dns_config": {"node_ttl": "10s", "service_ttl": {"*": "5s"}, "soa": {"min_ttl": 3},
                           "udp_answer_limit": 3, "use_cache": true},
        }));
        let get = |p: &str| v.iter().find(|(k, _)| k == p).map(|(_, c)| c.clone());
        for key in [
            "domain",
            "alt_domain",
            "recursors",
            "dns_config.node_ttl",
            "dns_config.service_ttl",
            "dns_config.soa.min_ttl",
            "dns_config.udp_answer_limit",
        ] {
            assert_eq!(get(key), Some(KeyCheck::Ok), "{key}");
        }
        assert_eq!(get("dns_config.use_cache"), Some(KeyCheck::NoEffect));
    }

    #[test]
    fn wrong_types_and_case() {
        let v = verdicts(json!({"Ports": {"HTTP": "x"}, "Datacenter": "dc1", "server": "maybe"}));
        assert!(matches!(v[1].1, KeyCheck::BadValue(_)), "{v:?}");
        assert_eq!(v[2].1, KeyCheck::Ok);
        assert!(matches!(v[3].1, KeyCheck::BadValue(_)));
    }

    #[test]
    fn deprecated_keys_move() {
        let mut v = json!({"acl": {"tokens": {"master": "s3cr3t"}}, "acl_default_policy": "deny"});
        translate_deprecated(&mut v);
        assert_eq!(v["acl"]["tokens"]["initial_management"], "s3cr3t");
        assert_eq!(v["acl"]["default_policy"], "deny");
        assert!(v.get("acl_default_policy").is_none());
    }

    #[test]
    fn services_checked_by_decoding() {
        let v = verdicts(json!({"service": {"name": "web", "port": 80, "nope": 1}}));
        assert!(
            matches!(&v[0].1, KeyCheck::BadValue(m) if m.contains("nope")),
            "{v:?}"
        );
    }
}
