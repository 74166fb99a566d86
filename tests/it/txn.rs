use base64::Engine;
use serde_json::{Value, json};

use crate::dev;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn atomic_writes_and_results() {
    let a = dev().await;
    let body = json!([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": b64("1")}},
        {"KV": {"Verb": "set", "Key": "t/b", "Value": b64("2"), "Flags": 7}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
    ]);
    let (st, text) = a.put("/v1/txn", body.to_string()).await;
    assert_eq!(st, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Errors"], Value::Null);
    let r = v["Results"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["KV"]["Value"], Value::Null, "writes return no value");
    assert_eq!(r[1]["KV"]["Flags"], 7);
    assert_eq!(r[2]["KV"]["Value"], b64("1"));
}

#[tokio::test]
async fn a_failed_op_rolls_everything_back() {
    let a = dev().await;
    a.put("/v1/kv/t/keep", "v").await;
    let body = json!([
        {"KV": {"Verb": "set", "Key": "t/new", "Value": b64("x")}},
        {"KV": {"Verb": "delete", "Key": "t/keep"}},
        {"KV": {"Verb": "cas", "Key": "t/keep", "Value": b64("y"), "Index": 999}},
        {"KV": {"Verb": "check-not-exists", "Key": "t/keep"}},
    ]);
    let r = a
        .http
        .put(a.url("/v1/txn"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        crate::header(&r, "content-type"),
        "application/json; charset=utf-8"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Results"], Value::Null);
    assert_eq!(
        v["Errors"],
        json!([{"OpIndex": 2, "What": "failed to set key \"t/keep\", index is stale"}])
    );
    let (st, _) = a.get_json("/v1/kv/t/new").await;
    assert_eq!(st, 404, "nothing of the failed transaction was applied");
    let (st, _) = a.get_json("/v1/kv/t/keep").await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn read_only_transactions_and_limits() {
    let a = dev().await;
    a.put("/v1/kv/r", "v").await;
    let body =
        json!([{"KV": {"Verb": "get", "Key": "r"}}, {"KV": {"Verb": "get-tree", "Key": ""}}]);
    let (st, text) = a.put("/v1/txn", body.to_string()).await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["KnownLeader"], true);
    assert_eq!(v["Index"], 1);
    // Go's spelling of the query metadata's fields.
    assert_eq!(v["ResultsFilteredByACLs"], false, "{v}");
    assert_eq!(v["Results"].as_array().unwrap().len(), 2);
    let ops: Vec<Value> = (0..129)
        .map(|i| json!({"KV": {"Verb": "get", "Key": format!("k{i}")}}))
        .collect();
    let (st, text) = a.put("/v1/txn", Value::Array(ops).to_string()).await;
    assert_eq!(
        (st, text.as_str()),
        (413, "Transaction contains too many operations (129 > 128)")
    );
    let (st, text) = a.put("/v1/txn", "[{").await;
    assert_eq!(st, 400);
    assert!(text.starts_with("Failed to parse body: "), "{text}");
    let (st, text) = a
        .put("/v1/txn", r#"[{"KV":{"Verb":"get","Key":"r","Bogus":1}}]"#)
        .await;
    assert_eq!(
        (st, text.as_str()),
        (400, "Failed to parse body: json: unknown field \"Bogus\"")
    );
}

/// The node, service and check operations consul-esm writes its probes'
/// results with: a check `cas` against the index it read, a node probe's
/// check `set` beside KV writes, a node `delete-cas` when a node has been
/// gone too long; all or nothing, like the KV ones.
#[tokio::test]
async fn catalog_operations_as_consul_esm_sends_them() {
    let a = dev().await;
    let reg = json!({
        "Node": "ext1", "Address": "127.0.0.9",
        "NodeMeta": {"external-node": "true"},
        "Service": {"ID": "web1", "Service": "web", "Port": 80},
        "Check": {"CheckID": "web-check", "Name": "web check", "ServiceID": "web1",
                  "Status": "passing", "Definition": {"HTTP": "http://127.0.0.9:80", "Interval": "10s"}}
    });
    assert_eq!(a.put("/v1/catalog/register", reg.to_string()).await.0, 200);
    let (_, checks) = a.get_json("/v1/health/node/ext1").await;
    let mut check = checks[0].clone();
    let read_index = check["ModifyIndex"].as_u64().unwrap();
    let (_, before) = a.get_json("/v1/health/service/web?passing").await;
    assert_eq!(before.as_array().unwrap().len(), 1);

    // A check `cas` as a Go client sends it: the whole struct as read, with
    // fields meshgate does not keep (`Namespace` of Consul Enterprise).
    check["Status"] = json!("critical");
    check["Output"] = json!("HTTP GET http://127.0.0.9:80: connection refused");
    check["Namespace"] = json!("");
    let body = json!([{"Check": {"Verb": "cas", "Check": check}}]);
    let (st, text) = a.put("/v1/txn", body.to_string()).await;
    assert_eq!(st, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let written = &v["Results"][0]["Check"];
    assert_eq!(written["Status"], "critical", "{v}");
    assert!(written["ModifyIndex"].as_u64().unwrap() > read_index, "{v}");
    assert!(
        v["Results"][0].get("KV").is_none(),
        "one part per result: {v}"
    );
    let (_, after) = a.get_json("/v1/health/service/web?passing").await;
    assert_eq!(after, json!([]), "the instance left ?passing");

    // The same `cas` again is stale, and changes nothing.
    check["Status"] = json!("passing");
    let (st, text) = a
        .put(
            "/v1/txn",
            json!([{"Check": {"Verb": "cas", "Check": check}}]).to_string(),
        )
        .await;
    assert_eq!(st, 409, "{text}");
    assert!(
        text.contains(r#"failed to set check \"web-check\" on node \"ext1\", index is stale"#),
        "{text}"
    );
    let (_, now) = a.get_json("/v1/health/checks/web").await;
    assert_eq!(now[0]["Status"], "critical");

    // KV and catalog writes in one transaction: a stale node `delete-cas`
    // fails it, and the KV write before it is undone.
    let body = json!([
        {"KV": {"Verb": "set", "Key": "consul-esm/probes/ext1", "Value": b64("x")}},
        {"Check": {"Verb": "set", "Check": {"Node": "ext1", "CheckID": "externalNodeHealth",
                   "Name": "External Node Status", "Status": "passing"}}},
        {"Node": {"Verb": "delete-cas", "Node": {"Node": "ext1", "ModifyIndex": 1}}},
    ]);
    let (st, text) = a.put("/v1/txn", body.to_string()).await;
    assert_eq!(st, 409, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Errors"][0]["OpIndex"], 2, "{v}");
    assert_eq!(
        v["Errors"][0]["What"],
        "failed to delete node \"ext1\", index is stale"
    );
    assert_eq!(a.get_json("/v1/kv/consul-esm/probes/ext1").await.0, 404);
    let (_, node_checks) = a.get_json("/v1/health/node/ext1").await;
    assert_eq!(node_checks.as_array().unwrap().len(), 1, "{node_checks}");

    // Without the stale operation it applies: results in order, one part each.
    let body = json!([
        {"KV": {"Verb": "set", "Key": "consul-esm/probes/ext1", "Value": b64("x")}},
        {"Check": {"Verb": "set", "Check": {"Node": "ext1", "CheckID": "externalNodeHealth",
                   "Name": "External Node Status", "Status": "passing"}}},
        {"Node": {"Verb": "get", "Node": {"Node": "ext1"}}},
        {"Service": {"Verb": "get", "Node": "ext1", "Service": {"ID": "web1"}}},
    ]);
    let (st, text) = a.put("/v1/txn", body.to_string()).await;
    assert_eq!(st, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let r = v["Results"].as_array().unwrap();
    assert_eq!(r.len(), 4, "{v}");
    assert_eq!(r[0]["KV"]["Key"], "consul-esm/probes/ext1");
    assert_eq!(r[1]["Check"]["CheckID"], "externalNodeHealth");
    assert_eq!(r[2]["Node"]["Meta"]["external-node"], "true");
    assert_eq!(r[3]["Service"]["Service"], "web");
    assert_eq!(a.get_json("/v1/kv/consul-esm/probes/ext1").await.0, 200);

    // Reads only: answered with the query metadata; a missing entry fails.
    let body = json!([
        {"Node": {"Verb": "get", "Node": {"Node": "ext1"}}},
        {"Check": {"Verb": "get", "Check": {"Node": "ext1", "CheckID": "nope"}}},
    ]);
    let (st, text) = a.put("/v1/txn", body.to_string()).await;
    assert_eq!(st, 409, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["Errors"][0]["What"],
        "check \"nope\" on node \"ext1\" doesn't exist"
    );
    assert_eq!(v["KnownLeader"], true);

    // A whole new node with a service and a check, in one transaction.
    let body = json!([
        {"Node": {"Verb": "set", "Node": {"Node": "db-host", "Address": "127.0.0.3"}}},
        {"Service": {"Verb": "set", "Node": "db-host",
                     "Service": {"Service": "db", "Port": 5432, "ContentHash": "",
                                 "Weights": {"Passing": 0, "Warning": 0}}}},
        {"Check": {"Verb": "set", "Check": {"Node": "db-host", "CheckID": "db-alive",
                   "ServiceID": "db", "Status": "passing"}}},
    ]);
    let (st, text) = a.put("/v1/txn", body.to_string()).await;
    assert_eq!(st, 200, "{text}");
    let (_, db) = a.get_json("/v1/health/service/db?passing").await;
    assert_eq!(db.as_array().unwrap().len(), 1, "{db}");
    assert_eq!(
        db[0]["Service"]["Weights"]["Passing"], 1,
        "zero weights: 1/1"
    );
    assert_eq!(db[0]["Checks"][0]["ServiceName"], "db");

    // What Consul refuses, it refuses with its words.
    for (body, what) in [
        (
            json!([{"Service": {"Verb": "set", "Node": "nowhere", "Service": {"Service": "x"}}}]),
            "Missing node registration",
        ),
        (
            json!([{"Check": {"Verb": "set", "Check": {"Node": "db-host", "CheckID": "c",
                              "ServiceID": "nope"}}}]),
            "Missing service registration",
        ),
        (
            json!([{"Node": {"Verb": "frob", "Node": {"Node": "db-host"}}}]),
            "unknown Node verb \"frob\"",
        ),
        (
            json!([{"KV": {"Verb": "frob", "Key": "k"}}, {"Node": {"Verb": "get", "Node": {"Node": "db-host"}}}]),
            "unknown KV verb \"frob\"",
        ),
        (
            json!([{"Service": {"Verb": "cas", "Node": "db-host",
                                "Service": {"Service": "db", "ModifyIndex": 0}}}]),
            "failed to set service \"db\" on node \"db-host\", index is stale",
        ),
    ] {
        let (st, text) = a.put("/v1/txn", body.to_string()).await;
        assert_eq!(st, 409, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Errors"][0]["What"], what, "{body}");
    }
    let (st, text) = a
        .put(
            "/v1/txn",
            r#"[{"Node":{"Verb":"set","Node":{"Node":"n","Bogus":1}}}]"#,
        )
        .await;
    assert_eq!(
        (st, text.as_str()),
        (400, "Failed to parse body: json: unknown field \"Bogus\"")
    );

    // A node `delete-cas` with the index read removes it, its services and
    // checks.
    let (_, node) = a.get_json("/v1/catalog/node/ext1").await;
    let index = node["Node"]["ModifyIndex"].as_u64().unwrap();
    let body =
        json!([{"Node": {"Verb": "delete-cas", "Node": {"Node": "ext1", "ModifyIndex": index}}}]);
    let (st, text) = a.put("/v1/txn", body.to_string()).await;
    assert_eq!(
        (st, text.as_str()),
        (200, r#"{"Results":[],"Errors":null}"#)
    );
    let (_, gone) = a.get_json("/v1/catalog/node/ext1").await;
    assert_eq!(gone, Value::Null);
    assert_eq!(a.get_json("/v1/health/service/web").await.1, json!([]));
}

/// A token writes only what its rules allow: a node write needs
/// `node:write`, a service's check `service:write` on that service; a
/// refusal fails the whole transaction before anything applies.
#[tokio::test]
async fn catalog_operations_follow_acl_rules() {
    use crate::acl::{ROOT, acl_agent, call, token_with_rules};
    let a = acl_agent().await;
    let register = |body: Value| {
        let a = &a;
        async move {
            let (st, text, _) = call(
                a,
                "PUT",
                "/v1/catalog/register",
                Some(ROOT),
                Some(body.to_string()),
            )
            .await;
            assert_eq!(st, 200, "{body}: {text}");
        }
    };
    register(json!({"Node": "ext1", "Address": "127.0.0.9",
                     "Service": {"ID": "web1", "Service": "web", "Port": 80}}))
    .await;
    let esm = token_with_rules(
        &a,
        "esm",
        r#"service "web" { policy = "write" }
           node "ext1" { policy = "read" }
           key_prefix "consul-esm/" { policy = "write" }"#,
    )
    .await;
    let check = json!({"Check": {"Verb": "set", "Check": {"Node": "ext1", "CheckID": "web-check",
                       "ServiceID": "web1", "Status": "passing"}}});
    let node_check = json!({"Check": {"Verb": "set", "Check": {"Node": "ext1",
                            "CheckID": "externalNodeHealth", "Status": "passing"}}});
    let kv = json!({"KV": {"Verb": "set", "Key": "consul-esm/probes/ext1", "Value": b64("x")}});
    let (st, text, _) = call(
        &a,
        "PUT",
        "/v1/txn",
        Some(&esm),
        Some(json!([kv, check, node_check]).to_string()),
    )
    .await;
    assert_eq!(st, 409, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let errors = v["Errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["OpIndex"], 2);
    assert!(
        errors[0]["What"]
            .as_str()
            .unwrap()
            .starts_with("Permission denied"),
        "{v}"
    );
    let (st, _, _) = call(&a, "GET", "/v1/kv/consul-esm/probes/ext1", Some(ROOT), None).await;
    assert_eq!(st, 404, "nothing applied");
    let (st, text, _) = call(
        &a,
        "PUT",
        "/v1/txn",
        Some(&esm),
        Some(json!([kv, check]).to_string()),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    // Another service's instance or check cannot be changed by naming one's
    // own service, and a proxy needs write on its destination.
    register(json!({"Node": "ext1", "Address": "127.0.0.9",
                    "Service": {"ID": "db1", "Service": "db", "Port": 5432},
                    "Checks": [{"CheckID": "db-alive", "ServiceID": "db1", "Status": "passing"},
                               {"CheckID": "node-alive", "Status": "passing"}]}))
    .await;
    for body in [
        json!([{"Check": {"Verb": "set", "Check": {"Node": "ext1", "CheckID": "db-alive",
                          "ServiceID": "db1", "ServiceName": "web", "Status": "critical"}}}]),
        json!([{"Check": {"Verb": "set", "Check": {"Node": "ext1", "CheckID": "db-alive",
                          "Status": "critical"}}}]),
        json!([{"Service": {"Verb": "set", "Node": "ext1",
                            "Service": {"ID": "db1", "Service": "web", "Port": 1}}}]),
        json!([{"Service": {"Verb": "delete", "Node": "ext1", "Service": {"ID": "db1"}}}]),
        json!([{"Service": {"Verb": "set", "Node": "ext1",
                            "Service": {"ID": "web-proxy", "Service": "web", "Kind": "connect-proxy",
                                        "Port": 2, "Proxy": {"DestinationServiceName": "db"}}}}]),
        // The node's own check, reached by naming one's own service.
        json!([{"Check": {"Verb": "delete", "Check": {"Node": "ext1", "CheckID": "node-alive",
                          "ServiceID": "web1"}}}]),
        json!([{"Check": {"Verb": "set", "Check": {"Node": "ext1", "CheckID": "node-alive",
                          "ServiceID": "web1", "Status": "critical"}}}]),
    ] {
        let (st, text, _) = call(&a, "PUT", "/v1/txn", Some(&esm), Some(body.to_string())).await;
        assert_eq!(st, 409, "{body}: {text}");
        assert!(text.contains("Permission denied"), "{body}: {text}");
    }
    let (_, text, _) = call(&a, "GET", "/v1/health/node/ext1", Some(ROOT), None).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    let status = |id: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|c| c["CheckID"] == id)
            .map(|c| c["Status"].clone())
    };
    assert_eq!(status("db-alive"), Some(json!("passing")), "{v}");
    assert_eq!(status("node-alive"), Some(json!("passing")), "{v}");
    // Reads are filtered: the node result is readable with node:read, the
    // result of a node nobody granted is left out.
    register(json!({"Node": "secret-host", "Address": "127.0.0.8"})).await;
    let body = json!([
        {"Node": {"Verb": "get", "Node": {"Node": "ext1"}}},
        {"Node": {"Verb": "get", "Node": {"Node": "secret-host"}}},
    ]);
    let (st, text, _) = call(&a, "PUT", "/v1/txn", Some(&esm), Some(body.to_string())).await;
    assert_eq!(st, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let r = v["Results"].as_array().unwrap();
    assert_eq!(r.len(), 1, "{v}");
    assert_eq!(r[0]["Node"]["Node"], "ext1");
}
