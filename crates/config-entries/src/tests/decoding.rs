//! Decoding: the scenario file, HCL forms, key matching, unknown keys,
//! kinds, weak typing.

use serde_json::json;

use super::{decode_err, file, json};
use crate::{ConfigEntry, DecodeError, LinkedService, decode, parse_file_text};

const SCENARIO: &str = r#"Kind = "terminating-gateway"
Name = "carbonio-gateway"
Services = [
  {
    Name = "carbonio-files-db"
    # CAFile = "/etc/ssl/certs/external-db-ca.pem"
    # SNI    = "external-database.example.com"
  }
]
"#;

fn gateway(e: &ConfigEntry) -> &crate::TerminatingGateway {
    match e {
        ConfigEntry::TerminatingGateway(g) => g,
        other => panic!("not a terminating gateway: {other:?}"),
    }
}

#[test]
fn scenario_gateway_file_decodes_exactly() {
    let mut e = file(SCENARIO);
    assert_eq!(e.kind(), "terminating-gateway");
    assert_eq!(e.name(), "carbonio-gateway");
    assert_eq!(
        gateway(&e).services(),
        [LinkedService {
            name: "carbonio-files-db".into(),
            ..LinkedService::default()
        }]
    );
    assert!(gateway(&e).meta.is_empty());
    e.normalize();
    assert_eq!(e.validate().unwrap(), Vec::<String>::new());
    let mut out = e.to_json();
    out.as_object_mut().unwrap().retain(|k, _| k != "Hash");
    assert_eq!(
        out,
        json!({
            "Kind": "terminating-gateway",
            "Name": "carbonio-gateway",
            "Services": [{"Name": "carbonio-files-db"}],
            "CreateIndex": 0,
            "ModifyIndex": 0
        })
    );
}

#[test]
fn scenario_gateway_file_with_tls_lines() {
    let text = SCENARIO
        .replace("# CAFile", "CAFile")
        .replace("# SNI", "SNI");
    let mut e = file(&text);
    assert_eq!(
        gateway(&e).services(),
        [LinkedService {
            name: "carbonio-files-db".into(),
            ca_file: "/etc/ssl/certs/external-db-ca.pem".into(),
            sni: "external-database.example.com".into(),
            ..LinkedService::default()
        }]
    );
    e.normalize();
    assert_eq!(e.validate().unwrap(), Vec::<String>::new());
    assert_eq!(
        e.to_api_json(),
        json!({
            "Kind": "terminating-gateway",
            "Name": "carbonio-gateway",
            "Services": [{
                "Name": "carbonio-files-db",
                "CAFile": "/etc/ssl/certs/external-db-ca.pem",
                "SNI": "external-database.example.com"
            }],
            "CreateIndex": 0,
            "ModifyIndex": 0
        })
    );

    // Only the CA file: TLS without SNI, which Consul warns about.
    let text = SCENARIO.replace("# CAFile", "CAFile");
    let mut e = file(&text);
    e.normalize();
    assert_eq!(
        e.validate().unwrap(),
        [
            "TLS is configured but SNI is not set for service \"carbonio-files-db\". \
          Enabling SNI is strongly recommended when using TLS."
        ]
    );
}

#[test]
fn services_as_list_blocks_or_single_block() {
    let list = file(
        r#"
Kind = "terminating-gateway"
Name = "gw"
Services = [{ Name = "a" }, { Name = "b", CAFile = "/ca.pem", SNI = "b.example" }]
"#,
    );
    let blocks = file(
        r#"
Kind = "terminating-gateway"
Name = "gw"
Services {
  Name = "a"
}
Services {
  Name   = "b"
  CAFile = "/ca.pem"
  SNI    = "b.example"
}
"#,
    );
    assert_eq!(list, blocks);
    assert_eq!(gateway(&list).services().len(), 2);

    let single = file(
        r#"
Kind = "terminating-gateway"
Name = "gw"
Services {
  Name = "a"
}
"#,
    );
    assert_eq!(gateway(&single).services()[0].name, "a");

    // A list attribute plus blocks of the same key make one list (HCL1).
    let mixed = file(
        r#"
Kind = "terminating-gateway"
Name = "gw"
Services = [{ Name = "a" }]
Services { Name = "b" }
"#,
    );
    let names: Vec<&str> = gateway(&mixed)
        .services()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn snake_case_and_case_insensitive_keys() {
    let snake = file(
        r#"
kind = "terminating-gateway"
name = "terminating-gw-west"
meta {
  "foo" = "bar"
}
services = [
  {
    name      = "payments"
    ca_file   = "/etc/payments/ca.pem"
    cert_file = "/etc/payments/cert.pem"
    key_file  = "/etc/payments/tls.key"
    sni       = "mydomain"
  },
]
"#,
    );
    let camel = json(json!({
        "Kind": "terminating-gateway",
        "Name": "terminating-gw-west",
        "Meta": {"foo": "bar"},
        "Services": [{
            "Name": "payments",
            "CAFile": "/etc/payments/ca.pem",
            "CertFile": "/etc/payments/cert.pem",
            "KeyFile": "/etc/payments/tls.key",
            "SNI": "mydomain"
        }]
    }));
    let shouty = json(json!({
        "KIND": "x",
        "kind": "terminating-gateway",
        "NAME": "terminating-gw-west",
        "meta": {"foo": "bar"},
        "SERVICES": [{
            "name": "payments",
            "CA_FILE": "/etc/payments/ca.pem",
            "certfile": "/etc/payments/cert.pem",
            "Key_File": "/etc/payments/tls.key",
            "Sni": "mydomain"
        }]
    }));
    assert_eq!(snake, camel);
    assert_eq!(shouty, camel);
}

#[test]
fn duplicate_spellings_of_a_field_are_unknown_keys() {
    // mapstructure uses the exact name and reports the other spelling.
    assert_eq!(
        decode_err(json!({"Kind": "terminating-gateway", "Name": "a", "name": "b"})),
        "1 error occurred:\n\t* invalid config key \"name\"\n\n"
    );
    let e = json(json!({"Kind": "terminating-gateway", "Name": "a"}));
    assert_eq!(e.name(), "a");
}

#[test]
fn unknown_keys_are_reported_like_consul() {
    assert_eq!(
        decode_err(json!({"Kind": "terminating-gateway", "Name": "gw", "Foo": 1})),
        "1 error occurred:\n\t* invalid config key \"Foo\"\n\n"
    );
    let err = decode(json!({
        "Kind": "terminating-gateway",
        "Name": "gw",
        "Foo": 1,
        "Services": [{"Name": "a", "Bar": 2}],
        "Partition": "p"
    }))
    .unwrap_err();
    assert_eq!(
        err,
        DecodeError::InvalidKeys(vec![
            "Services[0].Bar".into(),
            "Foo".into(),
            "Partition".into()
        ])
    );
    assert_eq!(
        err.to_string(),
        "3 errors occurred:\n\t* invalid config key \"Services[0].Bar\"\n\t\
         * invalid config key \"Foo\"\n\t* invalid config key \"Partition\"\n\n"
    );
    // From an HCL file, with Consul's own test case.
    let err = parse_file_text(
        r#"
kind = "proxy-defaults"
name = "main"
cornfig {
  "foo" = 19
}
"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 error occurred:\n\t* invalid config key \"cornfig\"\n\n"
    );
    // Map keys (Meta, Config, Subsets) are data, not fields.
    json(json!({"Kind": "service-defaults", "Name": "web", "Meta": {"Foo": "x"}}));
}

#[test]
fn namespace_and_partition_keys_are_enterprise() {
    assert_eq!(
        decode_err(json!({"Kind": "service-defaults", "Name": "web", "Namespace": "ns1"})),
        "1 error occurred:\n\t* invalid config key \"Namespace\", \
         namespaces are a consul enterprise feature\n\n"
    );
    assert_eq!(
        decode_err(json!({
            "Kind": "terminating-gateway",
            "Name": "gw",
            "Services": [{"Name": "a", "namespace": "x", "Partition": "p"}]
        })),
        "2 errors occurred:\n\t* invalid config key \"Services[0].Partition\"\n\t\
         * invalid config key \"Services[0].namespace\", \
         namespaces are a consul enterprise feature\n\n"
    );
    assert_eq!(
        decode_err(json!({
            "Kind": "service-intentions",
            "Name": "db",
            "Sources": [{"Name": "web", "Action": "allow", "Namespace": "x"}]
        })),
        "1 error occurred:\n\t* invalid config key \"Sources[0].Namespace\", \
         namespaces are a consul enterprise feature\n\n"
    );
}

#[test]
fn mesh_has_no_name_field() {
    assert_eq!(
        decode_err(json!({"Kind": "mesh", "Name": "mesh"})),
        "1 error occurred:\n\t* invalid config key \"Name\"\n\n"
    );
    let e = json(json!({"Kind": "mesh"}));
    assert_eq!(e.name(), "mesh");
}

#[test]
fn kind_errors() {
    assert_eq!(
        decode_err(json!({"Name": "web"})),
        "Payload does not contain a kind/Kind key at the top level"
    );
    // Only `Kind` and `kind` are looked for.
    assert_eq!(
        decode_err(json!({"KIND": "mesh"})),
        "Payload does not contain a kind/Kind key at the top level"
    );
    assert_eq!(
        decode_err(json!({"Kind": 5, "Name": "web"})),
        "Kind value in payload is not a string"
    );
    assert_eq!(
        decode_err(json!({"Kind": "foo", "Name": "web"})),
        "invalid config entry kind: foo"
    );
    assert_eq!(
        decode(json!({"kind": "service-router", "name": "web"})).unwrap_err(),
        DecodeError::UnsupportedKind("service-router".into())
    );
    assert_eq!(
        decode_err(json!({"Kind": "control-plane-request-limit"})),
        "invalid config entry kind: control-plane-request-limit"
    );
    assert_eq!(
        decode_err(json!([1])),
        "json: cannot unmarshal array into Go value of type map[string]interface {}"
    );
    assert_eq!(crate::check_kind("mesh"), Ok("mesh"));
    assert!(crate::check_kind("nope").is_err());
}

#[test]
fn syntax_errors_carry_the_position() {
    let err = parse_file_text("Kind = \"mesh\"\nTransparentProxy {\n  x \"y\"\n}\n").unwrap_err();
    assert!(matches!(err, DecodeError::Syntax(_)), "{err:?}");
    assert!(err.to_string().starts_with("At 3:"), "{err}");
}

#[test]
fn type_errors_are_aggregated_like_mapstructure() {
    assert_eq!(
        decode_err(json!({
            "Kind": "terminating-gateway",
            "Name": {"a": 1},
            "Services": [{"Name": ["a", "b"]}, "x"]
        })),
        "decoding failed due to the following error(s):\n\n\
         'Name' expected type 'string', got unconvertible type 'map[string]interface {}'\n\
         'Services[0].Name' expected type 'string', got unconvertible type '[]interface {}'\n\
         'Services[1]' expected a map or struct, got \"string\""
    );
    assert_eq!(
        decode_err(
            json!({"Kind": "service-defaults", "Name": "web", "MaxInboundConnections": "lots"})
        ),
        "decoding failed due to the following error(s):\n\n\
         'MaxInboundConnections' cannot parse value as 'int': strconv.ParseInt: invalid syntax"
    );
    assert_eq!(
        decode_err(json!({"Kind": "mesh", "ValidateClusters": "maybe"})),
        "decoding failed due to the following error(s):\n\n\
         'ValidateClusters' cannot parse value as 'bool': strconv.ParseBool: invalid syntax"
    );
    // Type errors win over unknown keys, as in Consul.
    assert!(
        decode_err(json!({"Kind": "mesh", "ValidateClusters": [1, 2], "Bogus": 1}))
            .starts_with("decoding failed")
    );
    // HCL integers are Go ints.
    let err =
        parse_file_text("Kind = \"terminating-gateway\"\nName = 5\nServices = 7\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "decoding failed due to the following error(s):\n\n\
         'Services[0]' expected a map or struct, got \"int\""
    );
}

#[test]
fn weak_typing() {
    let e = json(json!({
        "Kind": "service-defaults",
        "Name": ["web"],
        "Protocol": "HTTP",
        "MaxInboundConnections": "0x10",
        "LocalConnectTimeoutMs": 12.9,
        "TransparentProxy": [{"DialedDirectly": "true", "OutboundListenerPort": "15001"}],
        "Expose": {"Checks": 1, "Paths": {"Path": "/metrics", "ListenerPort": "21500"}},
        "Meta": [{"a": 1}, {"b": true}],
        "ExternalSNI": 42,
    }));
    let ConfigEntry::ServiceDefaults(sd) = e else {
        panic!()
    };
    assert_eq!(sd.name, "web");
    assert_eq!(sd.protocol, "HTTP");
    assert_eq!(sd.max_inbound_connections, 16);
    assert_eq!(sd.local_connect_timeout_ms, 12);
    assert!(sd.transparent_proxy.dialed_directly);
    assert_eq!(sd.transparent_proxy.outbound_listener_port, 15001);
    assert!(sd.expose.checks);
    assert_eq!(sd.expose.paths.len(), 1);
    assert_eq!(sd.expose.paths[0].listener_port, 21500);
    assert_eq!(sd.meta.get("a").map(String::as_str), Some("1"));
    assert_eq!(sd.meta.get("b").map(String::as_str), Some("1"));
    assert_eq!(sd.external_sni, "42");
    // null leaves a field at its zero value.
    let e = json(json!({"Kind": "terminating-gateway", "Name": "gw", "Services": null}));
    assert_eq!(e.to_json()["Services"], serde_json::Value::Null);
    let e = json(json!({"Kind": "terminating-gateway", "Name": "gw", "Services": []}));
    assert_eq!(e.to_json()["Services"], json!([]));
}

#[test]
fn free_form_config_is_unsliced_like_consul() {
    let e = file(
        r#"
Kind = "proxy-defaults"
Name = "global"
Config {
  protocol = "http"
  "foo" = 19
  list = ["one"]
  pair = ["a", "b"]
  nested = [{ inner = ["x"], keep = ["y", "z"] }]
  moreconfig {
    "moar" = "config"
  }
}
"#,
    );
    let ConfigEntry::ProxyDefaults(pd) = &e else {
        panic!()
    };
    assert_eq!(pd.protocol(), "http");
    assert_eq!(
        serde_json::to_value(pd.config.as_ref().unwrap()).unwrap(),
        json!({
            "foo": 19,
            "list": "one",
            "moreconfig": {"moar": "config"},
            "nested": {"inner": "x", "keep": ["y", "z"]},
            "pair": ["a", "b"],
            "protocol": "http"
        })
    );
}

#[test]
fn durations() {
    let e = json(json!({
        "Kind": "service-resolver",
        "Name": "web",
        "ConnectTimeout": "15s",
        "request_timeout": 2_000_000_000u64
    }));
    assert_eq!(e.to_json()["ConnectTimeout"], "15s");
    assert_eq!(e.to_json()["RequestTimeout"], "2s");
    assert_eq!(
        decode_err(json!({"Kind": "service-resolver", "Name": "web", "ConnectTimeout": "soon"})),
        "decoding failed due to the following error(s):\n\n'ConnectTimeout' time: invalid duration"
    );
    assert_eq!(
        decode_err(json!({"Kind": "service-resolver", "Name": "web", "ConnectTimeout": "10"})),
        "decoding failed due to the following error(s):\n\n\
         'ConnectTimeout' time: missing unit in duration"
    );
    // Other durations are nanoseconds in JSON, strings accepted on input.
    let e = json(json!({
        "Kind": "service-defaults",
        "Name": "web",
        "UpstreamConfig": {"Defaults": {"PassiveHealthCheck": {"Interval": "10s", "BaseEjectionTime": "30s"}}}
    }));
    let phc = &e.to_json()["UpstreamConfig"]["Defaults"]["PassiveHealthCheck"];
    assert_eq!(phc["Interval"], 10_000_000_000i64);
    assert_eq!(phc["BaseEjectionTime"], 30_000_000_000i64);
}

#[test]
fn create_and_modify_index_are_accepted() {
    let e = json(json!({"Kind": "mesh", "CreateIndex": 3, "ModifyIndex": 7, "Hash": 1}));
    assert_eq!((e.create_index(), e.modify_index()), (3, 7));
}

#[test]
fn config_entry_implements_serde() {
    let e: ConfigEntry =
        serde_json::from_value(json!({"Kind": "service-defaults", "Name": "web"})).unwrap();
    assert_eq!(e.kind(), "service-defaults");
    let back = serde_json::to_value(&e).unwrap();
    assert_eq!(back["Name"], "web");
    let err = serde_json::from_value::<ConfigEntry>(json!({"Name": "web"})).unwrap_err();
    assert!(err.to_string().contains("kind/Kind"));
}

#[test]
fn odd_inputs_never_panic() {
    let odd = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1.5e300),
        json!("x"),
        json!([]),
        json!([[]]),
        json!([{}, {}]),
        json!({}),
        json!({"": [1, {"a": [null]}]}),
        json!([{"Name": [[["deep"]]]}]),
    ];
    let fields = [
        "Name",
        "Services",
        "Sources",
        "Meta",
        "Config",
        "Subsets",
        "Failover",
        "ConnectTimeout",
        "UpstreamConfig",
        "TLS",
        "HTTP",
        "Expose",
        "EnvoyExtensions",
        "LoadBalancer",
        "Destination",
        "Precedence",
    ];
    for kind in crate::SUPPORTED_KINDS {
        for field in fields {
            for v in &odd {
                let mut body = serde_json::Map::new();
                body.insert("Kind".into(), json!(kind));
                body.insert(field.into(), v.clone());
                if let Ok(mut e) = decode(serde_json::Value::Object(body)) {
                    e.normalize();
                    let _ = e.validate();
                    let _ = e.to_hcl();
                    let _ = e.to_api_json();
                }
            }
        }
    }
}
