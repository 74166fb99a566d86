//! Output forms: Consul's HTTP JSON, the `api` JSON, HCL; the hash.

use serde_json::{Value, json};

use super::{file, json};
use crate::{ConfigEntry, parse_file_text};

fn normalized(v: Value) -> ConfigEntry {
    let mut e = json(v);
    e.normalize();
    e
}

fn without_hash(mut v: Value) -> Value {
    v.as_object_mut().unwrap().retain(|k, _| k != "Hash");
    v
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn http_json_of_each_kind() {
    let e = normalized(json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}));
    assert_eq!(
        without_hash(e.to_json()),
        json!({
            "Kind": "service-defaults", "Name": "web", "Protocol": "http",
            "TransparentProxy": {}, "MeshGateway": {}, "Expose": {},
            "CreateIndex": 0, "ModifyIndex": 0
        })
    );
    assert_eq!(
        keys(&e.to_json()),
        [
            "Kind",
            "Name",
            "Protocol",
            "TransparentProxy",
            "MeshGateway",
            "Expose",
            "Hash",
            "CreateIndex",
            "ModifyIndex"
        ]
    );
    assert_eq!(
        e.to_api_json(),
        json!({
            "Kind": "service-defaults", "Name": "web", "Protocol": "http",
            "TransparentProxy": {}, "MeshGateway": {}, "Expose": {},
            "CreateIndex": 0, "ModifyIndex": 0
        })
    );

    let e = normalized(json!({"Kind": "proxy-defaults", "Config": {"protocol": "http"}}));
    assert_eq!(
        without_hash(e.to_json()),
        json!({
            "Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"},
            "TransparentProxy": {}, "MeshGateway": {}, "Expose": {}, "AccessLogs": {},
            "CreateIndex": 0, "ModifyIndex": 0
        })
    );

    let e = normalized(json!({"Kind": "service-resolver", "Name": "web", "ConnectTimeout": "5s"}));
    assert_eq!(
        without_hash(e.to_json()),
        json!({"Kind": "service-resolver", "Name": "web", "ConnectTimeout": "5s",
               "CreateIndex": 0, "ModifyIndex": 0})
    );

    let e = normalized(json!({"Kind": "service-intentions", "Name": "db",
        "Sources": [{"Name": "web", "Action": "allow"}]}));
    assert_eq!(
        without_hash(e.to_json()),
        json!({"Kind": "service-intentions", "Name": "db",
               "Sources": [{"Name": "web", "Action": "allow", "Precedence": 9, "Type": "consul"}],
               "CreateIndex": 0, "ModifyIndex": 0})
    );

    let e = normalized(json!({"Kind": "terminating-gateway", "Name": "gw"}));
    assert_eq!(
        without_hash(e.to_json()),
        json!({"Kind": "terminating-gateway", "Name": "gw", "Services": null,
               "CreateIndex": 0, "ModifyIndex": 0})
    );
    assert_eq!(
        e.to_api_json(),
        json!({"Kind": "terminating-gateway", "Name": "gw", "CreateIndex": 0, "ModifyIndex": 0})
    );

    let e = normalized(
        json!({"Kind": "mesh", "Peering": {}, "HTTP": {"Incoming": {"RequestNormalization": {}}}}),
    );
    assert_eq!(
        without_hash(e.to_json()),
        json!({
            "Kind": "mesh",
            "TransparentProxy": {"MeshDestinationsOnly": false},
            "HTTP": {"SanitizeXForwardedClientCert": false, "Incoming": {"RequestNormalization": {
                "InsecureDisablePathNormalization": false,
                "MergeSlashes": false,
                "PathWithEscapedSlashesAction": "",
                "HeadersWithUnderscoresAction": ""
            }}},
            "Peering": {"PeerThroughMeshGateways": false},
            "CreateIndex": 0, "ModifyIndex": 0
        })
    );
    assert_eq!(
        e.to_api_json(),
        json!({
            "Kind": "mesh",
            "TransparentProxy": {"MeshDestinationsOnly": false},
            "HTTP": {"SanitizeXForwardedClientCert": false, "Incoming": {"RequestNormalization": {}}},
            "Peering": {},
            "CreateIndex": 0, "ModifyIndex": 0
        })
    );
}

#[test]
fn indexes_and_hash() {
    let mut e = normalized(json!({"Kind": "terminating-gateway", "Name": "gw",
        "Services": [{"Name": "db"}]}));
    let h = e.hash();
    assert_ne!(h, 0);
    e.set_indexes(7, 9);
    assert_eq!((e.create_index(), e.modify_index()), (7, 9));
    let out = e.to_json();
    assert_eq!(out["CreateIndex"], 7);
    assert_eq!(out["ModifyIndex"], 9);
    assert_eq!(out["Hash"], h);
    // The hash ignores the indexes and is stable...
    e.normalize();
    assert_eq!(e.hash(), h);
    // ...and follows the content.
    let other = normalized(json!({"Kind": "terminating-gateway", "Name": "gw",
        "Services": [{"Name": "db", "SNI": "x"}]}));
    assert_ne!(other.hash(), h);
}

#[test]
fn hcl_output() {
    let e = file(
        r#"
Kind = "terminating-gateway"
Name = "carbonio-gateway"
Services = [
  {
    Name   = "carbonio-files-db"
    CAFile = "/etc/ssl/certs/external-db-ca.pem"
    SNI    = "external-database.example.com"
  }
]
"#,
    );
    assert_eq!(
        e.to_hcl(),
        r#"Kind = "terminating-gateway"
Name = "carbonio-gateway"
Services = [
  {
    Name = "carbonio-files-db"
    CAFile = "/etc/ssl/certs/external-db-ca.pem"
    SNI = "external-database.example.com"
  },
]
"#
    );
    assert_eq!(parse_file_text(&e.to_hcl()).unwrap(), e);

    let e = normalized(
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http",
        "Meta": {"owner": "team-a", "a b": "c"}}),
    );
    assert_eq!(
        e.to_hcl(),
        r#"Kind = "service-defaults"
Name = "web"
Protocol = "http"
TransparentProxy {}
MeshGateway {}
Expose {}
Meta {
  "a b" = "c"
  owner = "team-a"
}
"#
    );
    let mut back = parse_file_text(&e.to_hcl()).unwrap();
    back.normalize();
    assert_eq!(back, e);
}

#[test]
fn free_form_maps_are_sorted_like_go() {
    let e = normalized(json!({"Kind": "proxy-defaults", "Config": {
        "zeta": 1, "alpha": {"z": 1, "a": 2}, "mid": [{"y": 1, "b": 2}, 3]
    }}));
    assert_eq!(
        serde_json::to_string(&e.to_json()["Config"]).unwrap(),
        r#"{"alpha":{"a":2,"z":1},"mid":[{"b":2,"y":1},3],"zeta":1}"#
    );
}
