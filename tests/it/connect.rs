//! Config entries, gateway-services, intentions and the mesh CA over HTTP,
//! on real agents; certificates checked with `openssl`.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::acl::call;
use crate::{dev, header};

const SCENARIO_GATEWAY: &str = r#"{
  "Kind": "terminating-gateway",
  "Name": "carbonio-gateway",
  "Services": [ { "Name": "carbonio-files-db" } ]
}"#;

async fn put(a: &meshgate_test_support::Agent, path: &str, body: &str) -> (u16, String) {
    let (s, b, _) = call(a, "PUT", path, None, Some(body.to_string())).await;
    (s, b)
}

#[tokio::test]
async fn config_entries_write_read_list_cas_delete() {
    let a = dev().await;
    let (s, b) = put(&a, "/v1/config", SCENARIO_GATEWAY).await;
    assert_eq!((s, b.as_str()), (200, "true"));
    let (s, e) = a
        .get_json("/v1/config/terminating-gateway/carbonio-gateway")
        .await;
    assert_eq!(s, 200);
    assert_eq!(e["Kind"], "terminating-gateway");
    assert_eq!(e["Services"][0]["Name"], "carbonio-files-db");
    let modify = e["ModifyIndex"].as_u64().unwrap();
    assert!(modify > 0 && e["CreateIndex"] == e["ModifyIndex"]);

    // TLS origination settings, snake_case spellings accepted.
    let (s, b) = put(
        &a,
        "/v1/config",
        r#"{"kind": "terminating-gateway", "name": "carbonio-gateway",
            "services": [{"name": "carbonio-files-db", "ca_file": "/etc/ssl/certs/external-db-ca.pem",
                          "sni": "external-database.example.com"}]}"#,
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "true"));
    let (_, e) = a
        .get_json("/v1/config/terminating-gateway/carbonio-gateway")
        .await;
    assert_eq!(
        e["Services"][0]["CAFile"],
        "/etc/ssl/certs/external-db-ca.pem"
    );
    assert_eq!(e["Services"][0]["SNI"], "external-database.example.com");
    assert_eq!(e["CreateIndex"].as_u64(), Some(modify));

    // cas: stale index refused, current accepted.
    let (s, b) = put(&a, &format!("/v1/config?cas={modify}"), SCENARIO_GATEWAY).await;
    assert_eq!((s, b.as_str()), (200, "false"));
    let (_, e) = a
        .get_json("/v1/config/terminating-gateway/carbonio-gateway")
        .await;
    let now = e["ModifyIndex"].as_u64().unwrap();
    let (s, b) = put(&a, &format!("/v1/config?cas={now}"), SCENARIO_GATEWAY).await;
    assert_eq!((s, b.as_str()), (200, "true"));

    // service-defaults with our own protocol.
    let (s, b) = put(
        &a,
        "/v1/config",
        r#"{"Kind": "service-defaults", "Name": "carbonio-files-db", "Protocol": "postgres"}"#,
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "true"));
    let (_, list) = a.get_json("/v1/config/service-defaults").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["Protocol"], "postgres");

    // Bad input: nothing written, Consul's status and text.
    let (s, b) = put(&a, "/v1/config", r#"{"Name": "x"}"#).await;
    assert_eq!(s, 400);
    assert!(
        b.contains("Payload does not contain a kind/Kind key at the top level"),
        "{b}"
    );
    let (s, b) = put(
        &a,
        "/v1/config",
        r#"{"Kind": "service-defaults", "Name": "y", "Bogus": 1}"#,
    )
    .await;
    assert_eq!(s, 400);
    assert!(b.contains("invalid config key \"Bogus\""), "{b}");
    let (s, b) = put(
        &a,
        "/v1/config",
        r#"{"Kind": "service-defaults", "Name": "y", "Protocol": "smtp"}"#,
    )
    .await;
    assert_eq!(s, 500, "{b}");
    assert!(b.to_lowercase().contains("protocol"), "{b}");
    let (s, _) = a.get_json("/v1/config/service-defaults/y").await;
    assert_eq!(s, 404);
    let (s, b) = put(&a, "/v1/config", "{not json").await;
    assert_eq!(s, 400, "{b}");
    let (s, b, _) = call(&a, "GET", "/v1/config/terminating-gateway/nope", None, None).await;
    assert_eq!(
        (s, b.as_str()),
        (
            404,
            "Config entry not found for \"terminating-gateway\" / \"nope\""
        )
    );
    let (s, _, _) = call(&a, "GET", "/v1/config/not-a-kind", None, None).await;
    assert_eq!(s, 500);

    // Delete: `{}`; with cas: true/false; the scenario's teardown.
    let (s, b, _) = call(
        &a,
        "DELETE",
        "/v1/config/service-defaults/carbonio-files-db?cas=1",
        None,
        None,
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "false"));
    let (s, b, _) = call(
        &a,
        "DELETE",
        "/v1/config/terminating-gateway/carbonio-gateway",
        None,
        None,
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "{}"));
    let (s, _) = a
        .get_json("/v1/config/terminating-gateway/carbonio-gateway")
        .await;
    assert_eq!(s, 404);
    let (s, b, _) = call(&a, "DELETE", "/v1/config/service-defaults", None, None).await;
    assert_eq!(
        (s, b.as_str()),
        (404, "Must provide both a kind and name to delete")
    );
}

#[tokio::test]
async fn blocking_config_read_wakes_on_write() {
    let a = dev().await;
    put(&a, "/v1/config", SCENARIO_GATEWAY).await;
    let r = a
        .http
        .get(a.url("/v1/config/terminating-gateway"))
        .send()
        .await
        .unwrap();
    let idx = header(&r, "X-Consul-Index");
    let url = a.url(&format!(
        "/v1/config/terminating-gateway?index={idx}&wait=10s"
    ));
    let waiter = tokio::spawn({
        let http = a.http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "the blocking query returned before any change"
    );
    put(
        &a,
        "/v1/config",
        r#"{"Kind": "terminating-gateway", "Name": "other-gw", "Services": [{"Name": "x"}]}"#,
    )
    .await;
    let body = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woke up")
        .unwrap();
    assert!(body.contains("other-gw"), "{body}");
}

async fn register(a: &meshgate_test_support::Agent, body: Value) {
    let (s, b) = put(a, "/v1/catalog/register", &body.to_string()).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn gateway_services_and_connect_through_the_gateway() {
    let a = dev().await;
    // The scenario's external service and the gateway instance.
    register(
        &a,
        json!({"Address": "127.0.0.9", "Node": "external-files-db-node",
               "NodeMeta": {"external-node": "true", "external-probe": "true"},
               "Service": {"ID": "carbonio-gateway", "Port": 5432, "Service": "carbonio-files-db"}}),
    )
    .await;
    let (s, b) = put(
        &a,
        "/v1/agent/service/register",
        &json!({"Name": "carbonio-gateway", "Kind": "terminating-gateway", "Port": 8443,
                "Check": {"CheckID": "gw-alive", "TTL": "60s", "Status": "passing"}})
        .to_string(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // Not linked yet: no mesh instance.
    let (_, list) = a.get_json("/v1/health/connect/carbonio-files-db").await;
    assert_eq!(list, json!([]));

    put(
        &a,
        "/v1/config",
        r#"{"Kind": "terminating-gateway", "Name": "carbonio-gateway",
            "Services": [{"Name": "carbonio-files-db", "CAFile": "/ca.pem", "SNI": "db.example"},
                         {"Name": "*"}]}"#,
    )
    .await;
    let (s, gs) = a
        .get_json("/v1/catalog/gateway-services/carbonio-gateway")
        .await;
    assert_eq!(s, 200);
    let names: Vec<(&str, bool)> = gs
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["Service"]["Name"].as_str().unwrap(),
                g["FromWildcard"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(names, [("carbonio-files-db", false)]);
    assert_eq!(gs[0]["Gateway"]["Name"], "carbonio-gateway");
    assert_eq!(gs[0]["GatewayKind"], "terminating-gateway");
    assert_eq!(gs[0]["CAFile"], "/ca.pem");
    assert_eq!(gs[0]["SNI"], "db.example");

    // The wildcard follows services as they come and go.
    let r = a
        .http
        .get(a.url("/v1/catalog/gateway-services/carbonio-gateway"))
        .send()
        .await
        .unwrap();
    let idx = header(&r, "X-Consul-Index");
    let url = a.url(&format!(
        "/v1/catalog/gateway-services/carbonio-gateway?index={idx}&wait=10s"
    ));
    let waiter = tokio::spawn({
        let http = a.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    register(&a, json!({"Node": "ext2", "Address": "127.0.0.10", "Service": {"Service": "ldap", "Port": 389}})).await;
    let gs = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    let ldap = gs
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["Service"]["Name"] == "ldap")
        .expect("ldap linked by the wildcard");
    assert_eq!(ldap["FromWildcard"], true);
    let (s, _) = put(&a, "/v1/catalog/deregister", r#"{"Node": "ext2"}"#).await;
    assert_eq!(s, 200);
    let (_, gs) = a
        .get_json("/v1/catalog/gateway-services/carbonio-gateway")
        .await;
    assert!(!gs.to_string().contains("ldap"), "{gs}");

    // Mesh clients of the external service find the gateway.
    let (_, list) = a.get_json("/v1/health/connect/carbonio-files-db").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["Service"]["Service"], "carbonio-gateway");
    assert_eq!(list[0]["Service"]["Kind"], "terminating-gateway");
    assert_eq!(list[0]["Service"]["Port"], 8443);
    let (_, list) = a.get_json("/v1/catalog/connect/carbonio-files-db").await;
    assert_eq!(list[0]["ServiceName"], "carbonio-gateway");
    // ?passing drops a gateway whose check fails.
    let (s, _) = put(&a, "/v1/agent/check/fail/gw-alive", "").await;
    assert_eq!(s, 200);
    let (_, list) = a
        .get_json("/v1/health/connect/carbonio-files-db?passing")
        .await;
    assert_eq!(list, json!([]));
    let (_, list) = a.get_json("/v1/health/connect/carbonio-files-db").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn intentions_exact_list_match_check_and_authorize() {
    let a = dev().await;
    let (s, b) = put(
        &a,
        "/v1/connect/intentions/exact?source=*&destination=db",
        r#"{"Action": "deny"}"#,
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "true"));
    let (s, b) = put(
        &a,
        "/v1/connect/intentions/exact?source=web&destination=db",
        r#"{"Action": "allow", "Description": "web reads db"}"#,
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "true"));
    // Stored as one service-intentions entry, sources by precedence.
    let (_, e) = a.get_json("/v1/config/service-intentions/db").await;
    assert_eq!(e["Sources"][0]["Name"], "web");
    assert_eq!(e["Sources"][0]["Precedence"], 9);
    assert_eq!(e["Sources"][1]["Name"], "*");
    assert_eq!(e["Sources"][1]["Precedence"], 8);

    let (s, i) = a
        .get_json("/v1/connect/intentions/exact?source=web&destination=db")
        .await;
    assert_eq!(s, 200);
    assert_eq!(i["Action"], "allow");
    assert_eq!(i["Description"], "web reads db");
    assert_eq!(i["SourceNS"], "default");
    let (s, _) = a
        .get_json("/v1/connect/intentions/exact?source=api&destination=db")
        .await;
    assert_eq!(s, 404);
    let (s, b, _) = call(
        &a,
        "GET",
        "/v1/connect/intentions/exact?source=web",
        None,
        None,
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (400, "required query parameter 'destination' not set")
    );

    let (_, list) = a.get_json("/v1/connect/intentions").await;
    let pairs: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["SourceName"].as_str().unwrap().into(),
                i["Action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("web".to_string(), "allow".to_string()),
            ("*".into(), "deny".into())
        ]
    );
    let (_, list) = a
        .get_json("/v1/connect/intentions?filter=Action%20%3D%3D%20deny")
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    let (_, m) = a
        .get_json("/v1/connect/intentions/match?by=destination&name=db")
        .await;
    assert_eq!(m["db"].as_array().map(Vec::len), Some(2));
    assert_eq!(m["db"][0]["SourceName"], "web");
    let (_, m) = a
        .get_json("/v1/connect/intentions/match?by=source&name=api")
        .await;
    assert_eq!(m["api"][0]["SourceName"], "*");

    let (_, c) = a
        .get_json("/v1/connect/intentions/check?source=web&destination=db")
        .await;
    assert_eq!(c, json!({"Allowed": true}));
    let (_, c) = a
        .get_json("/v1/connect/intentions/check?source=api&destination=db")
        .await;
    assert_eq!(c, json!({"Allowed": false}));
    // No intention at all: allowed when ACLs are off.
    let (_, c) = a
        .get_json("/v1/connect/intentions/check?source=api&destination=cache")
        .await;
    assert_eq!(c, json!({"Allowed": true}));

    // Authorize a client certificate's identity.
    let (_, roots) = a.get_json("/v1/connect/ca/roots").await;
    let td = roots["TrustDomain"].as_str().unwrap().to_string();
    let auth = |svc: &str, td: &str| {
        json!({"Target": "db", "ClientCertURI": format!("spiffe://{td}/ns/default/dc/dc1/svc/{svc}")})
            .to_string()
    };
    let (s, b, _) = call(
        &a,
        "POST",
        "/v1/agent/connect/authorize",
        None,
        Some(auth("web", &td)),
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["Authorized"], true);
    assert!(v["Reason"].as_str().unwrap().contains("web => "), "{v}");
    let (_, b, _) = call(
        &a,
        "POST",
        "/v1/agent/connect/authorize",
        None,
        Some(auth("api", &td)),
    )
    .await;
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["Authorized"], false);
    let (_, b, _) = call(
        &a,
        "POST",
        "/v1/agent/connect/authorize",
        None,
        Some(auth("web", "other.consul")),
    )
    .await;
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["Authorized"], false);
    let (s, b, _) = call(
        &a,
        "POST",
        "/v1/agent/connect/authorize",
        None,
        Some(r#"{"Target": "db"}"#.into()),
    )
    .await;
    assert_eq!((s, b.as_str()), (400, "Client Cert URI must be specified"));

    // Deleting the last source deletes the entry.
    for src in ["web", "*"] {
        let (s, _, _) = call(
            &a,
            "DELETE",
            &format!("/v1/connect/intentions/exact?source={src}&destination=db"),
            None,
            None,
        )
        .await;
        assert_eq!(s, 200);
    }
    let (s, _) = a.get_json("/v1/config/service-intentions/db").await;
    assert_eq!(s, 404);
}

fn openssl(args: &[&str], dir: &std::path::Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed to run this test (apt-get install -y openssl)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The legacy ID-based intention API (deprecated in Consul 1.9, still
/// served and still used, e.g. by Terraform's `consul_intention`): create
/// answers an ID, read shows it with its times and metadata, update keeps
/// the creation time, delete removes it; a destination edited as a config
/// entry no longer takes legacy writes, as in Consul.
#[tokio::test]
async fn legacy_intentions_by_id() {
    let a = dev().await;
    let http = a.http.clone();
    let post = |body: Value| {
        let (http, url) = (http.clone(), a.url("/v1/connect/intentions"));
        async move {
            let r = http.post(url).body(body.to_string()).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (st, body) = post(json!({"SourceName": "web", "DestinationName": "db",
        "Action": "allow", "Description": "from TF", "Meta": {"team": "files"}}))
    .await;
    assert_eq!(st, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 36, "{id}");
    let by_id = format!("/v1/connect/intentions/{id}");
    // Kept in the destination's entry, with its legacy fields and a hash.
    let (_, entry) = a.get_json("/v1/config/service-intentions/db").await;
    assert_eq!(entry["Sources"][0]["LegacyID"], id.as_str(), "{entry}");
    assert_eq!(entry["Sources"][0]["LegacyMeta"], json!({"team": "files"}));
    assert!(entry["Hash"].as_u64().is_some_and(|h| h != 0), "{entry}");
    let (st, ixn) = a.get_json(&format!("/v1/connect/intentions/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(ixn["ID"], id.as_str(), "{ixn}");
    assert_eq!(
        (&ixn["SourceName"], &ixn["DestinationName"], &ixn["Action"]),
        (&json!("web"), &json!("db"), &json!("allow"))
    );
    assert_eq!(ixn["Meta"], json!({"team": "files"}));
    assert_eq!(ixn["Description"], "from TF");
    assert_eq!(ixn["Precedence"], 9);
    assert_eq!(ixn["SourceType"], "consul");
    let created = ixn["CreatedAt"].as_str().unwrap().to_string();
    assert!(created.ends_with('Z'), "{ixn}");
    // It takes part like any intention.
    let (_, c) = a
        .get_json("/v1/connect/intentions/check?source=web&destination=db")
        .await;
    assert_eq!(c["Allowed"], true);
    let (_, all) = a.get_json("/v1/connect/intentions").await;
    assert_eq!(all[0]["ID"], id.as_str(), "{all}");
    // Update: a new action, the same creation time; an empty answer.
    let (st, text, _) = call(
        &a,
        "PUT",
        &by_id,
        None,
        Some(json!({"SourceName": "web", "DestinationName": "db", "Action": "deny"}).to_string()),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(text, "");
    let (_, ixn) = a.get_json(&format!("/v1/connect/intentions/{id}")).await;
    assert_eq!(ixn["Action"], "deny", "{ixn}");
    assert_eq!(ixn["CreatedAt"], created.as_str());
    let (_, c) = a
        .get_json("/v1/connect/intentions/check?source=web&destination=db")
        .await;
    assert_eq!(c["Allowed"], false);
    // Refusals, in Consul's words.
    for (body, want) in [
        (
            json!({"SourceName": "web", "DestinationName": "db", "Action": "allow"}),
            "Sources[1] defines \"web\" more than once",
        ),
        (
            json!({"ID": id, "SourceName": "x", "DestinationName": "db", "Action": "allow"}),
            "ID must be empty when creating a new intention",
        ),
        (
            json!({"DestinationName": "db", "Action": "allow"}),
            "SourceName must be set",
        ),
        (
            json!({"SourceName": "x", "DestinationName": "db", "Action": "maybe"}),
            "Action must be set to 'allow' or 'deny'",
        ),
    ] {
        let (st, text) = post(body.clone()).await;
        assert_eq!(st, 500, "{body}: {text}");
        assert!(text.contains(want), "{body}: {text}");
    }
    let (st, text, _) = call(
        &a,
        "PUT",
        &by_id,
        None,
        Some(
            json!({"SourceName": "web", "DestinationName": "other", "Action": "deny"}).to_string(),
        ),
    )
    .await;
    assert_eq!(st, 500);
    assert_eq!(
        text,
        "Cannot modify Destination partition/namespace/name for an intention once it exists."
    );
    // Delete, then it is gone.
    let (st, text, _) = call(&a, "DELETE", &by_id, None, None).await;
    assert_eq!(st, 200, "{text}");
    let (st, text, _) = call(&a, "GET", &by_id, None, None).await;
    assert_eq!(st, 404, "{text}");
    assert_eq!(text, "Intention not found");
    let (st, text, _) = call(&a, "DELETE", &by_id, None, None).await;
    assert_eq!(st, 500, "{text}");
    assert_eq!(
        text,
        format!("Cannot delete non-existent intention: '{id}'")
    );
    // A destination written as a config entry takes no legacy writes.
    let (st, _) = put(
        &a,
        "/v1/connect/intentions/exact?source=api&destination=cfg",
        r#"{"Action":"allow"}"#,
    )
    .await;
    assert_eq!(st, 200);
    let (st, text) =
        post(json!({"SourceName": "web", "DestinationName": "cfg", "Action": "allow"})).await;
    assert_eq!(st, 500);
    assert_eq!(
        text,
        "cannot use legacy intention API to edit intentions with a destination of \"cfg\" after editing them via a service-intentions config entry"
    );
}

#[tokio::test]
async fn ca_roots_leaf_verified_by_openssl_and_rotation() {
    let a = dev().await;
    let dir = tempfile::tempdir().unwrap();
    let (s, roots) = a.get_json("/v1/connect/ca/roots").await;
    assert_eq!(s, 200);
    let td = roots["TrustDomain"].as_str().unwrap().to_string();
    assert!(td.ends_with(".consul") && td.len() == 36 + 7, "{td}");
    assert_eq!(roots["Roots"].as_array().map(Vec::len), Some(1));
    let root = &roots["Roots"][0];
    assert_eq!(root["ID"], roots["ActiveRootID"]);
    assert_eq!(root["Name"], "Consul CA Root Cert");
    assert_eq!(root["Active"], true);
    assert_eq!(root["PrivateKeyType"], "ec");
    assert_eq!(root["PrivateKeyBits"], 256);
    assert!(
        root["RootCert"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    // The agent endpoint and the PEM form agree.
    let (_, agent_roots) = a.get_json("/v1/agent/connect/ca/roots").await;
    assert_eq!(agent_roots["ActiveRootID"], roots["ActiveRootID"]);
    let r = a
        .http
        .get(a.url("/v1/connect/ca/roots?pem=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "Content-Type"),
        "application/pem-certificate-chain"
    );
    let pem = r.text().await.unwrap();
    assert_eq!(pem, root["RootCert"].as_str().unwrap());
    std::fs::write(dir.path().join("roots.pem"), &pem).unwrap();
    // As Consul: `pem` is a Go boolean; without a value it is JSON.
    for q in ["pem", "pem=false", "pem=0"] {
        let (st, v) = a.get_json(&format!("/v1/connect/ca/roots?{q}")).await;
        assert_eq!(st, 200, "{q}");
        assert_eq!(v["ActiveRootID"], roots["ActiveRootID"], "{q}");
    }
    let r = a
        .http
        .get(a.url("/v1/connect/ca/roots?pem=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "The 'pem' query parameter must be a boolean value"
    );

    // A leaf, checked by an independent verifier.
    let (s, leaf) = a.get_json("/v1/agent/connect/ca/leaf/carbonio-files").await;
    assert_eq!(s, 200);
    let uri = format!("spiffe://{td}/ns/default/dc/dc1/svc/carbonio-files");
    assert_eq!(leaf["ServiceURI"], uri);
    assert_eq!(leaf["Service"], "carbonio-files");
    std::fs::write(
        dir.path().join("leaf.pem"),
        leaf["CertPEM"].as_str().unwrap(),
    )
    .unwrap();
    let (ok, out) = openssl(&["verify", "-CAfile", "roots.pem", "leaf.pem"], dir.path());
    assert!(ok, "openssl verify: {out}");
    let (ok, out) = openssl(&["x509", "-in", "leaf.pem", "-noout", "-text"], dir.path());
    assert!(ok, "{out}");
    assert!(out.contains(&format!("URI:{uri}")), "{out}");
    assert!(out.contains("ASN1 OID: prime256v1"), "{out}");
    std::fs::write(
        dir.path().join("key.pem"),
        leaf["PrivateKeyPEM"].as_str().unwrap(),
    )
    .unwrap();
    let (ok, out) = openssl(&["pkey", "-in", "key.pem", "-noout"], dir.path());
    assert!(ok, "the private key parses: {out}");
    // 72 hours by default.
    let after = leaf["ValidAfter"].as_str().unwrap();
    let before = leaf["ValidBefore"].as_str().unwrap();
    assert_ne!(after, before);
    // The same leaf is served until renewal.
    let (_, again) = a.get_json("/v1/agent/connect/ca/leaf/carbonio-files").await;
    assert_eq!(again["SerialNumber"], leaf["SerialNumber"]);

    // Configuration.
    let (s, cfg) = a.get_json("/v1/connect/ca/configuration").await;
    assert_eq!(s, 200);
    assert_eq!(cfg["Provider"], "consul");
    assert_eq!(cfg["Config"]["LeafCertTTL"], "72h");
    assert!(cfg["Config"].get("PrivateKey").is_none());
    let (s, b) = put(
        &a,
        "/v1/connect/ca/configuration",
        r#"{"Provider": "vault", "Config": {}}"#,
    )
    .await;
    assert_eq!(s, 500, "{b}");
    let (s, b) = put(
        &a,
        "/v1/connect/ca/configuration",
        r#"{"Provider": "consul", "Config": {"LeafCertTTL": "10m"}}"#,
    )
    .await;
    assert_eq!(s, 500);
    assert!(b.contains("LeafCertTTL must be at least 1h0m0s"), "{b}");

    // Rotation: a blocking leaf query wakes with a leaf from the new root;
    // the old root stays trusted, and the old leaf still verifies.
    let leaf_index = leaf["ModifyIndex"].as_u64().unwrap();
    let waiter = tokio::spawn({
        let http = a.http.clone();
        let url = a.url(&format!(
            "/v1/agent/connect/ca/leaf/carbonio-files?index={leaf_index}&wait=20s"
        ));
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());
    let cluster_id = td.trim_end_matches(".consul");
    let (new_root, signer) =
        meshgate_ca::new_root(cluster_id, Duration::from_secs(3650 * 24 * 3600)).unwrap();
    let (s, b) = put(
        &a,
        "/v1/connect/ca/configuration",
        &json!({"Provider": "consul",
                "Config": {"LeafCertTTL": "72h", "PrivateKey": signer.key_pem, "RootCert": new_root.root_cert_pem}})
        .to_string(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let new_leaf = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(new_leaf["SerialNumber"], leaf["SerialNumber"]);
    assert!(new_leaf["ModifyIndex"].as_u64().unwrap() > leaf_index);
    let (_, roots) = a.get_json("/v1/connect/ca/roots").await;
    assert_eq!(roots["Roots"].as_array().map(Vec::len), Some(2));
    assert_eq!(roots["ActiveRootID"], new_root.id);
    let r = a
        .http
        .get(a.url("/v1/connect/ca/roots?pem=true"))
        .send()
        .await
        .unwrap();
    std::fs::write(dir.path().join("bundle.pem"), r.text().await.unwrap()).unwrap();
    std::fs::write(
        dir.path().join("new.pem"),
        new_leaf["CertPEM"].as_str().unwrap(),
    )
    .unwrap();
    let (ok, out) = openssl(&["verify", "-CAfile", "bundle.pem", "leaf.pem"], dir.path());
    assert!(ok, "old leaf against the bundle: {out}");
    let (ok, out) = openssl(&["verify", "-CAfile", "bundle.pem", "new.pem"], dir.path());
    assert!(ok, "new leaf against the bundle: {out}");
    // A peer that only knows the old root validates the new leaf through the
    // cross-signed intermediate the leaf carries.
    let chain = new_leaf["CertPEM"].as_str().unwrap();
    let parts: Vec<&str> = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    assert_eq!(parts.len(), 2, "leaf plus cross-signed root");
    std::fs::write(dir.path().join("new-leaf-only.pem"), parts[0]).unwrap();
    std::fs::write(dir.path().join("cross.pem"), parts[1]).unwrap();
    let (ok, out) = openssl(
        &[
            "verify",
            "-CAfile",
            "roots.pem",
            "-untrusted",
            "cross.pem",
            "new-leaf-only.pem",
        ],
        dir.path(),
    );
    assert!(ok, "new leaf via the cross-signed root: {out}");
}
