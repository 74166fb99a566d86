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
