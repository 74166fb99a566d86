//! Every kind decodes from JSON and from HCL, in CamelCase and snake_case,
//! to the same entry, and round-trips through `to_json`, `to_api_json` and
//! `to_hcl`.

use serde_json::{Value, json};

use super::{file, json};
use crate::{ConfigEntry, decode, parse_file_text};

/// Checks that the CamelCase HCL, the snake_case HCL and the JSON decode to
/// one entry that validates, and that it survives every output form.
fn same_everywhere(camel: &str, snake: &str, js: Value) -> ConfigEntry {
    let a = file(camel);
    let b = file(snake);
    let c = json(js.clone());
    let d = file(&serde_json::to_string_pretty(&js).unwrap());
    assert_eq!(a, b, "camel vs snake");
    assert_eq!(a, c, "hcl vs json");
    assert_eq!(a, d, "json text");
    let mut e = a;
    e.normalize();
    if let Err(err) = e.validate() {
        panic!("{}: {err}", e.kind());
    }
    e.set_indexes(5, 9);
    round_trip(&e);
    e
}

fn round_trip(e: &ConfigEntry) {
    let back = decode(e.to_json()).unwrap_or_else(|err| panic!("{err}\n{}", e.to_json()));
    assert_eq!(&back, e, "to_json round trip");
    let back = decode(e.to_api_json()).unwrap_or_else(|err| panic!("{err}"));
    let mut back = back;
    back.normalize();
    back.set_indexes(e.create_index(), e.modify_index());
    assert_eq!(&back, e, "to_api_json round trip");
    let hcl = e.to_hcl();
    let mut back = parse_file_text(&hcl).unwrap_or_else(|err| panic!("{err}\n{hcl}"));
    back.normalize();
    back.set_indexes(e.create_index(), e.modify_index());
    assert_eq!(&back, e, "to_hcl round trip:\n{hcl}");
}

#[test]
fn service_defaults() {
    let camel = r#"
Kind = "service-defaults"
Name = "main"
Meta {
  "foo" = "bar"
}
Protocol = "http"
ExternalSNI = "abc-123"
Mode = "transparent"
TransparentProxy {
  OutboundListenerPort = 15001
  DialedDirectly = true
}
MutualTLSMode = "strict"
MeshGateway {
  Mode = "remote"
}
Expose {
  Checks = true
  Paths = [
    { ListenerPort = 21500, Path = "/metrics", LocalPathPort = 9102, Protocol = "http" }
  ]
}
UpstreamConfig {
  Overrides = [
    {
      Name = "redis"
      Peer = "peer1"
      Protocol = "TCP"
      ConnectTimeoutMs = 2500
      Limits { MaxConnections = 10, MaxPendingRequests = 0 }
      PassiveHealthCheck {
        Interval = "10s"
        MaxFailures = 3
        EnforcingConsecutive5xx = 50
        MaxEjectionPercent = 20
        BaseEjectionTime = "30s"
      }
      MeshGateway { Mode = "local" }
      BalanceOutboundConnections = "exact_balance"
      EnvoyClusterJSON = "{}"
    }
  ]
  Defaults {
    ConnectTimeoutMs = 1000
    Limits { MaxConcurrentRequests = 5 }
  }
}
MaxInboundConnections = 100
LocalConnectTimeoutMs = 500
LocalRequestTimeoutMs = 1500
BalanceInboundConnections = "exact_balance"
EnvoyExtensions = [
  { Name = "builtin/lua", Required = true, Arguments = { ProxyType = "connect-proxy" }, ConsulVersion = ">= 1.15", EnvoyVersion = "" }
]
MaxRequestHeadersKB = 96
"#;
    let snake = r#"
kind = "service-defaults"
name = "main"
meta {
  "foo" = "bar"
}
protocol = "http"
external_sni = "abc-123"
mode = "transparent"
transparent_proxy {
  outbound_listener_port = 15001
  dialed_directly = true
}
mutual_tls_mode = "strict"
mesh_gateway {
  mode = "remote"
}
expose {
  checks = true
  paths = [
    { listener_port = 21500, path = "/metrics", local_path_port = 9102, protocol = "http" }
  ]
}
upstream_config {
  overrides = [
    {
      name = "redis"
      peer = "peer1"
      protocol = "TCP"
      connect_timeout_ms = 2500
      limits { max_connections = 10, max_pending_requests = 0 }
      passive_health_check {
        interval = "10s"
        max_failures = 3
        enforcing_consecutive_5xx = 50
        max_ejection_percent = 20
        base_ejection_time = "30s"
      }
      mesh_gateway { mode = "local" }
      balance_outbound_connections = "exact_balance"
      envoy_cluster_json = "{}"
    }
  ]
  defaults {
    connect_timeout_ms = 1000
    limits { max_concurrent_requests = 5 }
  }
}
max_inbound_connections = 100
local_connect_timeout_ms = 500
local_request_timeout_ms = 1500
balance_inbound_connections = "exact_balance"
envoy_extensions = [
  { name = "builtin/lua", required = true, arguments = { ProxyType = "connect-proxy" }, consulversion = ">= 1.15", envoyversion = "" }
]
MaxRequestHeadersKB = 96
"#;
    let js = json!({
        "Kind": "service-defaults",
        "Name": "main",
        "Meta": {"foo": "bar"},
        "Protocol": "http",
        "ExternalSNI": "abc-123",
        "Mode": "transparent",
        "TransparentProxy": {"OutboundListenerPort": 15001, "DialedDirectly": true},
        "MutualTLSMode": "strict",
        "MeshGateway": {"Mode": "remote"},
        "Expose": {"Checks": true, "Paths": [
            {"ListenerPort": 21500, "Path": "/metrics", "LocalPathPort": 9102, "Protocol": "http"}
        ]},
        "UpstreamConfig": {
            "Overrides": [{
                "Name": "redis",
                "Peer": "peer1",
                "Protocol": "TCP",
                "ConnectTimeoutMs": 2500,
                "Limits": {"MaxConnections": 10, "MaxPendingRequests": 0},
                "PassiveHealthCheck": {
                    "Interval": 10_000_000_000u64,
                    "MaxFailures": 3,
                    "EnforcingConsecutive5xx": 50,
                    "MaxEjectionPercent": 20,
                    "BaseEjectionTime": 30_000_000_000u64
                },
                "MeshGateway": {"Mode": "local"},
                "BalanceOutboundConnections": "exact_balance",
                "EnvoyClusterJSON": "{}"
            }],
            "Defaults": {"ConnectTimeoutMs": 1000, "Limits": {"MaxConcurrentRequests": 5}}
        },
        "MaxInboundConnections": 100,
        "LocalConnectTimeoutMs": 500,
        "LocalRequestTimeoutMs": 1500,
        "BalanceInboundConnections": "exact_balance",
        "EnvoyExtensions": [{
            "Name": "builtin/lua",
            "Required": true,
            "Arguments": {"ProxyType": "connect-proxy"},
            "ConsulVersion": ">= 1.15",
            "EnvoyVersion": ""
        }],
        "MaxRequestHeadersKB": 96
    });
    let e = same_everywhere(camel, snake, js);
    let out = e.to_json();
    // Normalization lower-cases upstream protocols.
    assert_eq!(out["UpstreamConfig"]["Overrides"][0]["Protocol"], "tcp");
    assert_eq!(
        out["UpstreamConfig"]["Overrides"][0]["Limits"],
        json!({"MaxConnections": 10, "MaxPendingRequests": 0})
    );
    // The api form lists every limit and drops an empty upstream Peer.
    let api = e.to_api_json();
    assert_eq!(
        api["UpstreamConfig"]["Defaults"]["Limits"],
        json!({"MaxConcurrentRequests": 5, "MaxConnections": null, "MaxPendingRequests": null})
    );
    assert!(api["UpstreamConfig"]["Defaults"].get("Peer").is_none());
    assert_eq!(out["UpstreamConfig"]["Defaults"]["Peer"], "");
    assert_eq!(api["Expose"]["Paths"][0]["ParsedFromCheck"], false);
    assert!(api.get("Hash").is_none());
}

#[test]
fn service_defaults_with_destination() {
    let e = same_everywhere(
        r#"
Kind = "service-defaults"
Name = "external"
Protocol = "tcp"
Destination {
  Addresses = ["api.google.com", "10.0.0.1"]
  Port = 443
}
"#,
        r#"
kind = "service-defaults"
name = "external"
protocol = "tcp"
destination {
  addresses = ["api.google.com", "10.0.0.1"]
  port = 443
}
"#,
        json!({
            "Kind": "service-defaults",
            "Name": "external",
            "Protocol": "tcp",
            "Destination": {"Addresses": ["api.google.com", "10.0.0.1"], "Port": 443}
        }),
    );
    assert_eq!(e.to_json()["Destination"]["Port"], 443);
}

#[test]
fn postgres_protocol_is_meshgates_own() {
    let e = same_everywhere(
        "Kind = \"service-defaults\"\nName = \"carbonio-files-db\"\nProtocol = \"PostgreS\"\n",
        "kind = \"service-defaults\"\nname = \"carbonio-files-db\"\nprotocol = \"PostgreS\"\n",
        json!({"Kind": "service-defaults", "Name": "carbonio-files-db", "Protocol": "PostgreS"}),
    );
    assert_eq!(e.to_json()["Protocol"], "postgres");
}

#[test]
fn proxy_defaults() {
    let camel = r#"
Kind = "proxy-defaults"
Name = "global"
Meta {
  "gir" = "zim"
}
Config {
  protocol = "http"
  connect_timeout_ms = 5000
  envoy_dns_discovery_type = "STRICT_DNS"
}
Mode = "direct"
TransparentProxy { DialedDirectly = true }
MutualTLSMode = "permissive"
MeshGateway { Mode = "none" }
Expose { Checks = true }
AccessLogs {
  Enabled = true
  DisableListenerLogs = true
  Type = "file"
  Path = "/var/log/envoy.log"
  JSONFormat = "{\"a\": \"%START_TIME%\"}"
}
FailoverPolicy {
  Mode = "sequential"
  Regions = ["us-east-1"]
}
"#;
    let snake = r#"
kind = "proxy-defaults"
name = "global"
meta {
  "gir" = "zim"
}
config {
  protocol = "http"
  connect_timeout_ms = 5000
  envoy_dns_discovery_type = "STRICT_DNS"
}
mode = "direct"
transparent_proxy { dialed_directly = true }
mutual_tls_mode = "permissive"
mesh_gateway { mode = "none" }
expose { checks = true }
access_logs {
  enabled = true
  disable_listener_logs = true
  type = "file"
  path = "/var/log/envoy.log"
  json_format = "{\"a\": \"%START_TIME%\"}"
}
failover_policy {
  mode = "sequential"
  regions = ["us-east-1"]
}
"#;
    let js = json!({
        "Kind": "proxy-defaults",
        "Name": "global",
        "Meta": {"gir": "zim"},
        "Config": {"protocol": "http", "connect_timeout_ms": 5000, "envoy_dns_discovery_type": "STRICT_DNS"},
        "Mode": "direct",
        "TransparentProxy": {"DialedDirectly": true},
        "MutualTLSMode": "permissive",
        "MeshGateway": {"Mode": "none"},
        "Expose": {"Checks": true},
        "AccessLogs": {
            "Enabled": true,
            "DisableListenerLogs": true,
            "Type": "file",
            "Path": "/var/log/envoy.log",
            "JSONFormat": "{\"a\": \"%START_TIME%\"}"
        },
        "FailoverPolicy": {"Mode": "sequential", "Regions": ["us-east-1"]}
    });
    let e = same_everywhere(camel, snake, js);
    assert_eq!(
        e.write_warning(),
        Some(crate::WARNING_PROXY_DEFAULTS_PERMISSIVE_MTLS)
    );
    let ConfigEntry::ProxyDefaults(pd) = &e else {
        panic!()
    };
    assert_eq!(pd.protocol(), "http");
}

#[test]
fn proxy_defaults_name_is_forced_to_global() {
    let mut e = json(json!({"Kind": "proxy-defaults", "Config": {"protocol": "tcp"}}));
    assert_eq!(e.name(), "global");
    e.normalize();
    e.validate().unwrap();
    assert_eq!(e.to_json()["Name"], "global");
    // No Config at all is `null`, as Consul returns it.
    let mut e = json(json!({"Kind": "proxy-defaults"}));
    e.normalize();
    assert_eq!(e.to_json()["Config"], Value::Null);
    assert!(e.to_api_json().get("Config").is_none());
    round_trip(&e);
}

#[test]
fn service_resolver() {
    let camel = r#"
Kind = "service-resolver"
Name = "main"
DefaultSubset = "v1"
ConnectTimeout = "15s"
RequestTimeout = "1m30s"
Subsets = {
  "v1" = {
    Filter = "Service.Meta.version == v1"
  },
  "v2" = {
    Filter = "Service.Meta.version == v2"
    OnlyPassing = true
  },
}
Failover = {
  "v2" = {
    Service = "failcopy"
    Datacenters = ["dc2", "dc3"]
  },
  "*" = {
    Targets = [
      { Service = "backup", Datacenter = "dc4" },
      { Peer = "cluster-02" },
      { ServiceSubset = "v1" },
    ]
  },
}
LoadBalancer {
  Policy = "ring_hash"
  RingHashConfig {
    MinimumRingSize = 1
    MaximumRingSize = 2
  }
  HashPolicies = [
    { Field = "cookie", FieldValue = "good-cookie", CookieConfig { TTL = "1s", Path = "/oven" }, Terminal = true },
    { SourceIP = true },
  ]
}
Meta {
  "foo" = "bar"
}
"#;
    let snake = r#"
kind = "service-resolver"
name = "main"
default_subset = "v1"
connect_timeout = "15s"
request_timeout = "1m30s"
subsets = {
  "v1" = {
    filter = "Service.Meta.version == v1"
  },
  "v2" = {
    filter = "Service.Meta.version == v2"
    only_passing = true
  },
}
failover = {
  "v2" = {
    service = "failcopy"
    datacenters = ["dc2", "dc3"]
  },
  "*" = {
    targets = [
      { service = "backup", datacenter = "dc4" },
      { peer = "cluster-02" },
      { service_subset = "v1" },
    ]
  },
}
load_balancer {
  policy = "ring_hash"
  ring_hash_config {
    minimum_ring_size = 1
    maximum_ring_size = 2
  }
  hash_policies = [
    { field = "cookie", field_value = "good-cookie", cookie_config { ttl = "1s", path = "/oven" }, terminal = true },
    { source_ip = true },
  ]
}
meta {
  "foo" = "bar"
}
"#;
    let js = json!({
        "Kind": "service-resolver",
        "Name": "main",
        "DefaultSubset": "v1",
        "ConnectTimeout": "15s",
        "RequestTimeout": "1m30s",
        "Subsets": {
            "v1": {"Filter": "Service.Meta.version == v1"},
            "v2": {"Filter": "Service.Meta.version == v2", "OnlyPassing": true}
        },
        "Failover": {
            "v2": {"Service": "failcopy", "Datacenters": ["dc2", "dc3"]},
            "*": {"Targets": [
                {"Service": "backup", "Datacenter": "dc4"},
                {"Peer": "cluster-02"},
                {"ServiceSubset": "v1"}
            ]}
        },
        "LoadBalancer": {
            "Policy": "ring_hash",
            "RingHashConfig": {"MinimumRingSize": 1, "MaximumRingSize": 2},
            "HashPolicies": [
                {"Field": "cookie", "FieldValue": "good-cookie",
                 "CookieConfig": {"TTL": 1_000_000_000u64, "Path": "/oven"}, "Terminal": true},
                {"SourceIP": true}
            ]
        },
        "Meta": {"foo": "bar"}
    });
    let e = same_everywhere(camel, snake, js);
    let out = e.to_json();
    assert_eq!(out["ConnectTimeout"], "15s");
    assert_eq!(out["RequestTimeout"], "1m30s");
    assert_eq!(
        out["LoadBalancer"]["HashPolicies"][0]["CookieConfig"]["TTL"],
        1_000_000_000u64
    );
    // Kind and Name come first.
    let keys: Vec<&String> = out.as_object().unwrap().keys().take(2).collect();
    assert_eq!(keys, ["Kind", "Name"]);
}

#[test]
fn service_resolver_redirect_and_least_request() {
    same_everywhere(
        r#"
Kind = "service-resolver"
Name = "main"
Redirect {
  Service = "other"
  Datacenter = "dc9"
}
"#,
        r#"
kind = "service-resolver"
name = "main"
redirect {
  service = "other"
  datacenter = "dc9"
}
"#,
        json!({"Kind": "service-resolver", "Name": "main",
               "Redirect": {"Service": "other", "Datacenter": "dc9"}}),
    );
    same_everywhere(
        r#"
Kind = "service-resolver"
Name = "main"
LoadBalancer {
  Policy = "least_request"
  LeastRequestConfig { ChoiceCount = 2 }
}
"#,
        r#"
kind = "service-resolver"
name = "main"
load_balancer {
  policy = "least_request"
  least_request_config { choice_count = 2 }
}
"#,
        json!({"Kind": "service-resolver", "Name": "main",
               "LoadBalancer": {"Policy": "least_request", "LeastRequestConfig": {"ChoiceCount": 2}}}),
    );
}

#[test]
fn service_intentions() {
    let camel = r#"
Kind = "service-intentions"
Name = "web"
Meta {
  "foo" = "bar"
}
Sources = [
  {
    Name        = "foo"
    Action      = "deny"
    Type        = "consul"
    Description = "foo desc"
  },
  {
    Name        = "bar"
    Action      = "allow"
    Description = "bar desc"
  },
  {
    Name = "l7"
    Permissions = [
      {
        Action = "deny"
        HTTP {
          PathExact = "/admin"
          Header = [
            { Name = "hdr-present", Present = true },
            { Name = "hdr-exact", Exact = "exact" },
            { Name = "hdr-prefix", Prefix = "prefix" },
            { Name = "hdr-suffix", Suffix = "suffix" },
            { Name = "hdr-contains", Contains = "contains" },
            { Name = "hdr-regex", Regex = "regex" },
            { Name = "hdr-absent", Present = true, Invert = true },
            { Name = "hdr-ignore-case", Exact = "exact", IgnoreCase = true },
          ]
        }
      },
      {
        Action = "allow"
        HTTP {
          PathPrefix = "/v3/"
        }
      },
      {
        Action = "allow"
        HTTP {
          PathRegex = "/v[12]/.*"
          Methods   = ["get", "POST"]
        }
      }
    ]
  },
  {
    Name = "remote"
    Peer = "cluster-02"
    Action = "allow"
  }
]
Sources {
  Name        = "*"
  Action      = "deny"
  Description = "wild desc"
}
"#;
    let snake = r#"
kind = "service-intentions"
name = "web"
meta {
  "foo" = "bar"
}
sources = [
  {
    name        = "foo"
    action      = "deny"
    type        = "consul"
    description = "foo desc"
  },
  {
    name        = "bar"
    action      = "allow"
    description = "bar desc"
  },
  {
    name = "l7"
    permissions = [
      {
        action = "deny"
        http {
          path_exact = "/admin"
          header = [
            { name = "hdr-present", present = true },
            { name = "hdr-exact", exact = "exact" },
            { name = "hdr-prefix", prefix = "prefix" },
            { name = "hdr-suffix", suffix = "suffix" },
            { name = "hdr-contains", contains = "contains" },
            { name = "hdr-regex", regex = "regex" },
            { name = "hdr-absent", present = true, invert = true },
            { name = "hdr-ignore-case", exact = "exact", ignore_case = true },
          ]
        }
      },
      {
        action = "allow"
        http {
          path_prefix = "/v3/"
        }
      },
      {
        action = "allow"
        http {
          path_regex = "/v[12]/.*"
          methods    = ["get", "POST"]
        }
      }
    ]
  },
  {
    name = "remote"
    peer = "cluster-02"
    action = "allow"
  }
]
sources {
  name        = "*"
  action      = "deny"
  description = "wild desc"
}
"#;
    let header = |name: &str, k: &str, v: Value| {
        let mut m = serde_json::Map::new();
        m.insert("Name".into(), json!(name));
        m.insert(k.into(), v);
        Value::Object(m)
    };
    let js = json!({
        "Kind": "service-intentions",
        "Name": "web",
        "Meta": {"foo": "bar"},
        "Sources": [
            {"Name": "foo", "Action": "deny", "Type": "consul", "Description": "foo desc"},
            {"Name": "bar", "Action": "allow", "Description": "bar desc"},
            {"Name": "l7", "Permissions": [
                {"Action": "deny", "HTTP": {"PathExact": "/admin", "Header": [
                    header("hdr-present", "Present", json!(true)),
                    header("hdr-exact", "Exact", json!("exact")),
                    header("hdr-prefix", "Prefix", json!("prefix")),
                    header("hdr-suffix", "Suffix", json!("suffix")),
                    header("hdr-contains", "Contains", json!("contains")),
                    header("hdr-regex", "Regex", json!("regex")),
                    {"Name": "hdr-absent", "Present": true, "Invert": true},
                    {"Name": "hdr-ignore-case", "Exact": "exact", "IgnoreCase": true}
                ]}},
                {"Action": "allow", "HTTP": {"PathPrefix": "/v3/"}},
                {"Action": "allow", "HTTP": {"PathRegex": "/v[12]/.*", "Methods": ["get", "POST"]}}
            ]},
            {"Name": "remote", "Peer": "cluster-02", "Action": "allow"},
            {"Name": "*", "Action": "deny", "Description": "wild desc"}
        ]
    });
    let e = same_everywhere(camel, snake, js);
    let out = e.to_json();
    let sources = out["Sources"].as_array().unwrap();
    // Sorted by descending precedence (stable), Type defaulted, methods
    // upper-cased.
    let order: Vec<(&str, i64)> = sources
        .iter()
        .map(|s| {
            (
                s["Name"].as_str().unwrap(),
                s["Precedence"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [("foo", 9), ("bar", 9), ("l7", 9), ("remote", 9), ("*", 8)]
    );
    assert!(sources.iter().all(|s| s["Type"] == "consul"));
    assert_eq!(
        sources[2]["Permissions"][2]["HTTP"]["Methods"],
        json!(["GET", "POST"])
    );
}

#[test]
fn service_intentions_wildcard_destination() {
    let e = same_everywhere(
        "Kind = \"service-intentions\"\nName = \"*\"\nSources = [{ Name = \"*\", Action = \"deny\" }, { Name = \"web\", Action = \"allow\" }]\n",
        "kind = \"service-intentions\"\nname = \"*\"\nsources = [{ name = \"*\", action = \"deny\" }, { name = \"web\", action = \"allow\" }]\n",
        json!({"Kind": "service-intentions", "Name": "*", "Sources": [
            {"Name": "*", "Action": "deny"}, {"Name": "web", "Action": "allow"}
        ]}),
    );
    let out = e.to_json();
    assert_eq!(out["Sources"][0]["Name"], "web");
    assert_eq!(out["Sources"][0]["Precedence"], 6);
    assert_eq!(out["Sources"][1]["Precedence"], 5);
}

/// JWT requirements read alike in every spelling; storing one is refused,
/// as Consul refuses a provider with no `jwt-provider` entry (meshgate has
/// none: its data plane does not verify JWTs).
#[test]
fn service_intentions_jwt() {
    let (camel, snake) = (
        r#"
Kind = "service-intentions"
Name = "api"
JWT {
  Providers = [
    { Name = "okta", VerifyClaims = [{ Path = ["perms", "role"], Value = "admin" }] }
  ]
}
Sources = [{ Name = "web", Action = "allow" }]
"#,
        r#"
kind = "service-intentions"
name = "api"
jwt {
  providers = [
    { name = "okta", verify_claims = [{ path = ["perms", "role"], value = "admin" }] }
  ]
}
sources = [{ name = "web", action = "allow" }]
"#,
    );
    let js = json!({"Kind": "service-intentions", "Name": "api",
           "JWT": {"Providers": [{"Name": "okta", "VerifyClaims": [{"Path": ["perms", "role"], "Value": "admin"}]}]},
           "Sources": [{"Name": "web", "Action": "allow"}]});
    let a = file(camel);
    assert_eq!(a, file(snake), "camel vs snake");
    assert_eq!(a, json(js), "hcl vs json");
    let mut e = a;
    e.normalize();
    round_trip(&e);
    assert_eq!(
        e.validate().map_err(|e| e.to_string()),
        Err("1 error occurred:\n\t* Referenced JWT Provider does not exist. Provider Name: okta\n\n".to_string())
    );
}

#[test]
fn terminating_gateway() {
    let camel = r#"
Kind = "terminating-gateway"
Name = "terminating-gw-west"
Meta {
  "foo" = "bar"
}
Services = [
  {
    Name = "payments",
    CAFile = "/etc/payments/ca.pem",
    CertFile = "/etc/payments/cert.pem",
    KeyFile = "/etc/payments/tls.key",
    SNI = "mydomain",
  },
  {
    Name = "*",
    CAFile = "/etc/all/ca.pem",
    SNI = "my-alt-domain",
    DisableAutoHostRewrite = true,
  },
]
"#;
    let snake = r#"
kind = "terminating-gateway"
name = "terminating-gw-west"
meta {
  "foo" = "bar"
}
services = [
  {
    name = "payments",
    ca_file = "/etc/payments/ca.pem",
    cert_file = "/etc/payments/cert.pem",
    key_file = "/etc/payments/tls.key",
    sni = "mydomain",
  },
  {
    name = "*",
    ca_file = "/etc/all/ca.pem",
    sni = "my-alt-domain",
    disableautohostrewrite = true,
  },
]
"#;
    let js = json!({
        "Kind": "terminating-gateway",
        "Name": "terminating-gw-west",
        "Meta": {"foo": "bar"},
        "Services": [
            {"Name": "payments", "CAFile": "/etc/payments/ca.pem", "CertFile": "/etc/payments/cert.pem",
             "KeyFile": "/etc/payments/tls.key", "SNI": "mydomain"},
            {"Name": "*", "CAFile": "/etc/all/ca.pem", "SNI": "my-alt-domain", "DisableAutoHostRewrite": true}
        ]
    });
    same_everywhere(camel, snake, js);
}

#[test]
fn mesh() {
    let camel = r#"
Kind = "mesh"
Meta {
  "foo" = "bar"
}
TransparentProxy {
  MeshDestinationsOnly = true
}
AllowEnablingPermissiveMutualTLS = true
ValidateClusters = true
TLS {
  Incoming {
    TLSMinVersion = "TLSv1_1"
    TLSMaxVersion = "TLSv1_2"
    CipherSuites = [
      "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
      "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    ]
  }
  Outgoing {
    TLSMinVersion = "TLSv1_3"
  }
}
HTTP {
  SanitizeXForwardedClientCert = true
  Incoming {
    RequestNormalization {
      InsecureDisablePathNormalization = true
      MergeSlashes = true
      PathWithEscapedSlashesAction = "UNESCAPE_AND_FORWARD"
      HeadersWithUnderscoresAction = "DROP_HEADER"
    }
  }
}
Peering {
  PeerThroughMeshGateways = true
}
"#;
    let snake = r#"
kind = "mesh"
meta {
  "foo" = "bar"
}
transparent_proxy {
  mesh_destinations_only = true
}
allow_enabling_permissive_mutual_tls = true
validate_clusters = true
tls {
  incoming {
    tls_min_version = "TLSv1_1"
    tls_max_version = "TLSv1_2"
    cipher_suites = [
      "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
      "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    ]
  }
  outgoing {
    tls_min_version = "TLSv1_3"
  }
}
http {
  sanitize_x_forwarded_client_cert = true
  incoming {
    request_normalization {
      insecure_disable_path_normalization = true
      merge_slashes = true
      path_with_escaped_slashes_action = "UNESCAPE_AND_FORWARD"
      headers_with_underscores_action = "DROP_HEADER"
    }
  }
}
peering {
  peer_through_mesh_gateways = true
}
"#;
    let js = json!({
        "Kind": "mesh",
        "Meta": {"foo": "bar"},
        "TransparentProxy": {"MeshDestinationsOnly": true},
        "AllowEnablingPermissiveMutualTLS": true,
        "ValidateClusters": true,
        "TLS": {
            "Incoming": {"TLSMinVersion": "TLSv1_1", "TLSMaxVersion": "TLSv1_2", "CipherSuites": [
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            ]},
            "Outgoing": {"TLSMinVersion": "TLSv1_3"}
        },
        "HTTP": {"SanitizeXForwardedClientCert": true, "Incoming": {"RequestNormalization": {
            "InsecureDisablePathNormalization": true,
            "MergeSlashes": true,
            "PathWithEscapedSlashesAction": "UNESCAPE_AND_FORWARD",
            "HeadersWithUnderscoresAction": "DROP_HEADER"
        }}},
        "Peering": {"PeerThroughMeshGateways": true}
    });
    let e = same_everywhere(camel, snake, js);
    assert_eq!(e.name(), "mesh");
    assert!(e.to_json().get("Name").is_none());
    assert_eq!(
        e.write_warning(),
        Some(crate::WARNING_MESH_ALLOW_PERMISSIVE_MTLS)
    );
}

#[test]
fn minimal_entries_round_trip() {
    for v in [
        json!({"Kind": "service-defaults", "Name": "web"}),
        json!({"Kind": "proxy-defaults"}),
        json!({"Kind": "service-resolver", "Name": "web"}),
        json!({"Kind": "service-intentions", "Name": "web", "Sources": [{"Name": "api", "Action": "allow"}]}),
        json!({"Kind": "terminating-gateway", "Name": "gw"}),
        json!({"Kind": "mesh"}),
    ] {
        let mut e = json(v);
        e.normalize();
        e.validate().unwrap();
        round_trip(&e);
    }
}
