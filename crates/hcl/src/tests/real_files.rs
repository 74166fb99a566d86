//! Files of the kinds Consul operators have: agent configuration, service
//! definitions, ACL rules and config entries.

use serde_json::json;

use super::{assert_round_trip, json_of};
use crate::{Item, Pos, Value, parse};

const AGENT_CONFIG: &str = r#"
# Consul agent configuration, as in the Consul documentation.
datacenter = "dc1"
data_dir = "/opt/consul"
log_level = "INFO"
node_name = "consul-server-1"
server = true
bootstrap_expect = 3
client_addr = "0.0.0.0"
retry_join = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]

ui_config {
  enabled = true
}

ports { http = 8500 grpc_tls = -1 }

acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = true
  tokens {
    initial_management = "x"
  }
}

performance {
  raft_multiplier = 1
}

node_meta {
  "external-node" = "true"
  rack = "r1"
}
"#;

#[test]
fn agent_config() {
    assert_eq!(
        json_of(AGENT_CONFIG),
        json!({
            "datacenter": "dc1",
            "data_dir": "/opt/consul",
            "log_level": "INFO",
            "node_name": "consul-server-1",
            "server": true,
            "bootstrap_expect": 3,
            "client_addr": "0.0.0.0",
            "retry_join": ["10.0.0.11", "10.0.0.12", "10.0.0.13"],
            "ui_config": {"enabled": true},
            "ports": {"http": 8500, "grpc_tls": -1},
            "acl": {
                "enabled": true,
                "default_policy": "deny",
                "enable_token_persistence": true,
                "tokens": {"initial_management": "x"}
            },
            "performance": {"raft_multiplier": 1},
            "node_meta": {"external-node": "true", "rack": "r1"}
        })
    );
}

#[test]
fn agent_config_keeps_positions_and_order() {
    let body = parse(AGENT_CONFIG).unwrap();
    let keys: Vec<&str> = body.items.iter().map(Item::key).collect();
    assert_eq!(
        keys,
        [
            "datacenter",
            "data_dir",
            "log_level",
            "node_name",
            "server",
            "bootstrap_expect",
            "client_addr",
            "retry_join",
            "ui_config",
            "ports",
            "acl",
            "performance",
            "node_meta"
        ]
    );
    assert_eq!(body.items[0].pos(), Pos { line: 3, column: 1 });
    let Item::Block { body: ports, .. } = &body.items[9] else {
        panic!("ports is a block");
    };
    assert_eq!(
        ports.items[1].pos(),
        Pos {
            line: 16,
            column: 21
        }
    );
    assert_eq!(
        ports.attribute("grpc_tls"),
        Some(&Value::Number((-1).into()))
    );
    // The integers are integers, not floats.
    let json = json_of(AGENT_CONFIG);
    assert!(json["ports"]["http"].is_u64());
    assert!(json["ports"]["grpc_tls"].is_i64());
}

#[test]
fn agent_config_json_form_gives_the_same_value() {
    let from_hcl = json_of(AGENT_CONFIG);
    let text = serde_json::to_string_pretty(&from_hcl).unwrap();
    assert_eq!(json_of(&text), from_hcl);
}

#[test]
fn service_definition() {
    let src = r#"
service {
  name = "web"
  tags = ["rails"]
  port = 80
  check {
    tcp = "localhost:80"
    interval = "10s"
  }
  connect { sidecar_service {} }
}
"#;
    assert_eq!(
        json_of(src),
        json!({
            "service": {
                "name": "web",
                "tags": ["rails"],
                "port": 80,
                "check": {"tcp": "localhost:80", "interval": "10s"},
                "connect": {"sidecar_service": {}}
            }
        })
    );
}

#[test]
fn service_definition_one_line() {
    let src = r#"service { name = "web" port = 80 check { tcp = "localhost:80" interval = "10s" } connect { sidecar_service {} } }"#;
    assert_eq!(
        json_of(src),
        json!({
            "service": {
                "name": "web",
                "port": 80,
                "check": {"tcp": "localhost:80", "interval": "10s"},
                "connect": {"sidecar_service": {}}
            }
        })
    );
}

#[test]
fn services_list() {
    let src = r#"
services = [
  {
    id = "red0"
    name = "redis"
    tags = [
      "primary"
    ]
    address = ""
    port = 6000
    checks = [
      {
        args = ["/bin/check_redis", "-p", "6000"]
        interval = "5s"
        timeout = "20s"
      }
    ]
  },
  {
    id = "red1"
    name = "redis"
    tags = [
      "delayed",
      "secondary"
    ]
    address = ""
    port = 7000
    checks = [
      {
        args = ["/bin/check_redis", "-p", "7000"]
        interval = "30s"
        timeout = "60s"
      }
    ]
  },
]
"#;
    assert_eq!(
        json_of(src),
        json!({
            "services": [
                {
                    "id": "red0",
                    "name": "redis",
                    "tags": ["primary"],
                    "address": "",
                    "port": 6000,
                    "checks": [{
                        "args": ["/bin/check_redis", "-p", "6000"],
                        "interval": "5s",
                        "timeout": "20s"
                    }]
                },
                {
                    "id": "red1",
                    "name": "redis",
                    "tags": ["delayed", "secondary"],
                    "address": "",
                    "port": 7000,
                    "checks": [{
                        "args": ["/bin/check_redis", "-p", "7000"],
                        "interval": "30s",
                        "timeout": "60s"
                    }]
                }
            ]
        })
    );
}

#[test]
fn repeated_service_blocks_make_a_list() {
    let src = r#"
service {
  name = "web"
  port = 80
}
service {
  name = "api"
  port = 8080
  connect { sidecar_service { port = 21000 } }
}
"#;
    assert_eq!(
        json_of(src),
        json!({
            "service": [
                {"name": "web", "port": 80},
                {"name": "api", "port": 8080, "connect": {"sidecar_service": {"port": 21000}}}
            ]
        })
    );
}

#[test]
fn acl_rules() {
    let src = r#"
# Policy for the carbonio gateway.
key_prefix "carbonio-gateway/" {
  policy = "read"
}
key_prefix "carbonio-gateway/secret/" {
  policy = "deny"
}
service "carbonio-gateway" {
  policy = "write"
  intentions = "read"
}
service "x" { policy = "write" intentions = "read" }
service_prefix "" { policy = "read" }
node_prefix "" {
  policy = "read"
}
operator = "read"
agent_prefix "" { policy = "read" }
"#;
    assert_eq!(
        json_of(src),
        json!({
            "key_prefix": {
                "carbonio-gateway/": {"policy": "read"},
                "carbonio-gateway/secret/": {"policy": "deny"}
            },
            "service": {
                "carbonio-gateway": {"policy": "write", "intentions": "read"},
                "x": {"policy": "write", "intentions": "read"}
            },
            "service_prefix": {"": {"policy": "read"}},
            "node_prefix": {"": {"policy": "read"}},
            "operator": "read",
            "agent_prefix": {"": {"policy": "read"}}
        })
    );
}

#[test]
fn acl_rules_bare_labels() {
    // HCL1 also takes bare identifiers as labels.
    assert_eq!(
        json_of("service web { policy = \"read\" }"),
        json!({"service": {"web": {"policy": "read"}}})
    );
}

#[test]
fn terminating_gateway_with_commented_lines() {
    let src = r#"
Kind = "terminating-gateway"
Name = "carbonio-gateway"
Services = [
  {
    Name = "carbonio-files-db"
    # CAFile = "/etc/ssl/certs/external-db-ca.pem"
    # SNI = "x"
  },
  {
    Name = "billing" // the billing database
    /* CAFile = "/etc/ssl/certs/billing-ca.pem" */
  }
]
"#;
    assert_eq!(
        json_of(src),
        json!({
            "Kind": "terminating-gateway",
            "Name": "carbonio-gateway",
            "Services": [
                {"Name": "carbonio-files-db"},
                {"Name": "billing"}
            ]
        })
    );
}

#[test]
fn terminating_gateway_with_uncommented_lines() {
    let src = r#"
Kind = "terminating-gateway"
Name = "carbonio-gateway"
Services = [
  {
    Name = "carbonio-files-db"
    CAFile = "/etc/ssl/certs/external-db-ca.pem"
    SNI = "x"
  }
]
"#;
    assert_eq!(
        json_of(src),
        json!({
            "Kind": "terminating-gateway",
            "Name": "carbonio-gateway",
            "Services": [{
                "Name": "carbonio-files-db",
                "CAFile": "/etc/ssl/certs/external-db-ca.pem",
                "SNI": "x"
            }]
        })
    );
}

#[test]
fn terminating_gateway_comment_on_one_line() {
    // The comment runs to the end of the line, swallowing nothing after it.
    let src = "Services = [ { Name = \"carbonio-files-db\"  # CAFile = \"/etc/ssl/certs/external-db-ca.pem\" \n # SNI = \"x\" \n } ]";
    assert_eq!(
        json_of(src),
        json!({"Services": [{"Name": "carbonio-files-db"}]})
    );
}

#[test]
fn service_router_with_blocks_in_list_objects() {
    let src = r#"
Kind = "service-router"
Name = "web"
Routes = [
  {
    Match {
      HTTP {
        PathPrefix = "/admin"
      }
    }
    Destination {
      Service = "admin"
    }
  },
  {
    Match { HTTP { PathPrefix = "/api" Header = [{ Name = "x-debug", Exact = "1" }] } }
    Destination { Service = "api" RequestTimeout = "10s" NumRetries = 3 }
  },
]
"#;
    assert_eq!(
        json_of(src),
        json!({
            "Kind": "service-router",
            "Name": "web",
            "Routes": [
                {
                    "Match": {"HTTP": {"PathPrefix": "/admin"}},
                    "Destination": {"Service": "admin"}
                },
                {
                    "Match": {"HTTP": {
                        "PathPrefix": "/api",
                        "Header": [{"Name": "x-debug", "Exact": "1"}]
                    }},
                    "Destination": {"Service": "api", "RequestTimeout": "10s", "NumRetries": 3}
                }
            ]
        })
    );
}

#[test]
fn service_router_one_line() {
    let src = r#"Routes = [{ Match { HTTP { PathPrefix = "/admin" } } Destination { Service = "admin" } }]"#;
    assert_eq!(
        json_of(src),
        json!({"Routes": [{
            "Match": {"HTTP": {"PathPrefix": "/admin"}},
            "Destination": {"Service": "admin"}
        }]})
    );
}

#[test]
fn service_intentions() {
    let src = r#"
Kind = "service-intentions"
Name = "db"
Sources = [
  {
    Name   = "web"
    Action = "allow"
  },
  {
    Name   = "*"
    Action = "deny"
    Description = "deny all others"
  },
  {
    Name = "admin"
    Permissions = [
      {
        Action = "allow"
        HTTP {
          PathPrefix = "/"
          Methods = ["GET", "HEAD"]
        }
      }
    ]
  }
]
"#;
    assert_eq!(
        json_of(src),
        json!({
            "Kind": "service-intentions",
            "Name": "db",
            "Sources": [
                {"Name": "web", "Action": "allow"},
                {"Name": "*", "Action": "deny", "Description": "deny all others"},
                {
                    "Name": "admin",
                    "Permissions": [{
                        "Action": "allow",
                        "HTTP": {"PathPrefix": "/", "Methods": ["GET", "HEAD"]}
                    }]
                }
            ]
        })
    );
}

#[test]
fn proxy_defaults_with_object_attribute_and_meta() {
    let src = r#"
Kind      = "proxy-defaults"
Name      = "global"
Config = {
  protocol = "http"
  "envoy_prometheus_bind_addr" = "0.0.0.0:9102"
  local_connect_timeout_ms = 1000,
}
MeshGateway {
  Mode = "local"
}
Meta = { "owner-team" = "platform", version = 2.5 }
"#;
    assert_eq!(
        json_of(src),
        json!({
            "Kind": "proxy-defaults",
            "Name": "global",
            "Config": {
                "protocol": "http",
                "envoy_prometheus_bind_addr": "0.0.0.0:9102",
                "local_connect_timeout_ms": 1000
            },
            "MeshGateway": {"Mode": "local"},
            "Meta": {"owner-team": "platform", "version": 2.5}
        })
    );
}

#[test]
fn real_files_round_trip_through_to_hcl() {
    for src in [
        AGENT_CONFIG,
        r#"Routes = [{ Match { HTTP { PathPrefix = "/admin" } } Destination { Service = "admin" } }]"#,
        r#"service "a" { x = 1 } service "a" { x = 2 } service { name = "b" } acl = { x = [] }"#,
    ] {
        assert_round_trip(&json_of(src));
    }
}
