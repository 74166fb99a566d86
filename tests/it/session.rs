use std::time::Duration;

use meshgate_test_support::eventually;
use serde_json::{Value, json};

use crate::{dev, dev_builder};

async fn create(a: &meshgate_test_support::Agent, body: &str) -> String {
    let (st, text) = a.put("/v1/session/create", body.to_string()).await;
    assert_eq!(st, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["ID"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn create_read_renew_destroy() {
    let a = dev().await;
    let id = create(&a, r#"{"Name":"web-lock","TTL":"30s"}"#).await;
    let (st, v) = a.get_json(&format!("/v1/session/info/{id}")).await;
    assert_eq!(st, 200);
    let s = &v[0];
    assert_eq!(s["Name"], "web-lock");
    assert_eq!(s["Node"], "test-node");
    assert_eq!(s["LockDelay"], 15_000_000_000u64);
    assert_eq!(s["Behavior"], "release");
    assert_eq!(s["TTL"], "30s");
    assert_eq!(s["NodeChecks"], json!(["serfHealth"]));
    let (_, list) = a.get_json("/v1/session/list").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = a.get_json("/v1/session/node/test-node").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (st, body) = a.put(&format!("/v1/session/renew/{id}"), "").await;
    assert_eq!(st, 200);
    let renewed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(renewed[0]["ID"], id.as_str());
    let (st, body) = a.put(&format!("/v1/session/destroy/{id}"), "").await;
    assert_eq!((st, body.as_str()), (200, "true"));
    let (st, v) = a.get_json(&format!("/v1/session/info/{id}")).await;
    assert_eq!(
        (st, v),
        (200, json!([])),
        "an unknown session reads as an empty list"
    );
    let (st, body) = a.put(&format!("/v1/session/renew/{id}"), "").await;
    assert_eq!((st, body), (404, format!("Session id '{id}' not found")));
}

#[tokio::test]
async fn create_validation() {
    let a = dev().await;
    let (st, body) = a.put("/v1/session/create", r#"{"TTL":"5s"}"#).await;
    assert_eq!(
        (st, body.as_str()),
        (
            500,
            "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"
        )
    );
    let (st, body) = a.put("/v1/session/create", r#"{"TTL":"abc"}"#).await;
    assert_eq!(
        (st, body.as_str()),
        (
            500,
            "Session TTL 'abc' invalid: time: invalid duration \"abc\""
        )
    );
    let (st, body) = a
        .put("/v1/session/create", r#"{"Behavior":"explode"}"#)
        .await;
    assert_eq!(
        (st, body.as_str()),
        (500, "Invalid Behavior setting 'explode'")
    );
    let (st, body) = a.put("/v1/session/create", r#"{"Node":"ghost"}"#).await;
    assert_eq!(
        (st, body.as_str()),
        (500, "apply failed: Missing node registration")
    );
    let (st, body) = a
        .put("/v1/session/create", r#"{"NodeChecks":["nope"]}"#)
        .await;
    assert_eq!(
        (st, body.as_str()),
        (500, "apply failed: Missing check 'nope' registration")
    );
    let (_, list) = a.get_json("/v1/session/list").await;
    assert_eq!(list, json!([]));
    // LockDelay as a small number means seconds.
    let id = create(&a, r#"{"LockDelay":5}"#).await;
    let (_, v) = a.get_json(&format!("/v1/session/info/{id}")).await;
    assert_eq!(v[0]["LockDelay"], 5_000_000_000u64);
}

#[tokio::test]
async fn ttl_expiry_releases_or_deletes_locks() {
    let a = dev_builder()
        .args(["-hcl", "session_ttl_min = \"1s\""])
        .start()
        .await;
    let rel = create(&a, r#"{"TTL":"1s","LockDelay":"0s"}"#).await;
    let del = create(&a, r#"{"TTL":"1s","Behavior":"delete","LockDelay":"0s"}"#).await;
    assert_eq!(
        a.put(&format!("/v1/kv/r?acquire={rel}"), "x").await.1,
        "true"
    );
    assert_eq!(
        a.put(&format!("/v1/kv/d?acquire={del}"), "x").await.1,
        "true"
    );
    // Sessions are invalidated after twice their TTL without renewal.
    eventually(
        "both sessions to expire",
        Duration::from_secs(10),
        || async {
            let (_, v) = a.get_json("/v1/session/list").await;
            (v == json!([])).then_some(())
        },
    )
    .await;
    let (_, v) = a.get_json("/v1/kv/r").await;
    assert!(
        v[0].get("Session").is_none(),
        "release behaviour keeps the key, unlocked"
    );
    let (st, _) = a.get_json("/v1/kv/d").await;
    assert_eq!(st, 404, "delete behaviour removes the key");
}

#[tokio::test]
async fn check_going_critical_invalidates_and_lock_delay_applies() {
    let a = dev().await;
    let (st, _) = a
        .put(
            "/v1/agent/check/register",
            r#"{"Name":"guard","TTL":"1h","Status":"passing"}"#,
        )
        .await;
    assert_eq!(st, 200);
    let s1 = create(
        &a,
        r#"{"NodeChecks":["serfHealth","guard"],"LockDelay":"2s"}"#,
    )
    .await;
    let s2 = create(&a, "").await;
    assert_eq!(
        a.put(&format!("/v1/kv/leader?acquire={s1}"), "me").await.1,
        "true"
    );
    a.put("/v1/agent/check/fail/guard", "").await;
    eventually(
        "the session to be invalidated",
        Duration::from_secs(5),
        || async {
            let (_, v) = a.get_json(&format!("/v1/session/info/{s1}")).await;
            (v == json!([])).then_some(())
        },
    )
    .await;
    // The lock-delay keeps others from taking the lock at once.
    assert_eq!(
        a.put(&format!("/v1/kv/leader?acquire={s2}"), "you").await.1,
        "false"
    );
    eventually("the lock-delay to end", Duration::from_secs(5), || async {
        (a.put(&format!("/v1/kv/leader?acquire={s2}"), "you").await.1 == "true").then_some(())
    })
    .await;
}

/// A session brought back by a snapshot restore gets its TTL again: it runs
/// out like one just created.
#[tokio::test]
async fn a_restored_session_still_runs_out() {
    let a = dev_builder()
        .args(["-hcl", "session_ttl_min = \"1s\""])
        .start()
        .await;
    let id = create(&a, r#"{"TTL":"1s"}"#).await;
    let r = a.http.get(a.url("/v1/snapshot")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let snapshot = r.bytes().await.unwrap();
    let gone = || async {
        let (_, v) = a.get_json("/v1/session/list").await;
        (v == json!([])).then_some(())
    };
    eventually("the session to expire", Duration::from_secs(10), gone).await;
    let (st, body) = a.put("/v1/snapshot", snapshot).await;
    assert_eq!(st, 200, "{body}");
    let (_, v) = a.get_json("/v1/session/list").await;
    assert_eq!(v[0]["ID"], id.as_str(), "{v}");
    eventually(
        "the restored session to expire",
        Duration::from_secs(10),
        gone,
    )
    .await;
}
