use std::time::{Duration, Instant};

use base64::Engine;
use meshgate_test_support::Agent;
use serde_json::Value;

use crate::{dev, dev_builder, header};

#[tokio::test]
async fn put_get_roundtrip_with_metadata() {
    let a = dev().await;
    let (st, body) = a
        .put("/v1/kv/carbonio-files/db-name?flags=42", "files")
        .await;
    assert_eq!((st, body.as_str()), (200, "true"));
    let r = a
        .http
        .get(a.url("/v1/kv/carbonio-files/db-name"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/json");
    assert_eq!(header(&r, "x-consul-knownleader"), "true");
    assert_eq!(header(&r, "x-consul-default-acl-policy"), "allow");
    let idx: u64 = header(&r, "x-consul-index").parse().unwrap();
    let v: Value = r.json().await.unwrap();
    let e = &v[0];
    assert_eq!(e["Key"], "carbonio-files/db-name");
    assert_eq!(e["Flags"], 42);
    assert_eq!(e["LockIndex"], 0);
    assert_eq!(
        e["Value"],
        base64::engine::general_purpose::STANDARD.encode("files")
    );
    assert_eq!(e["ModifyIndex"], idx);
    assert!(e.get("Session").is_none(), "Session is omitted when empty");
    // ?raw gives the bytes with Consul's safety headers.
    let r = a
        .http
        .get(a.url("/v1/kv/carbonio-files/db-name?raw"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-type"), "text/plain; charset=utf-8");
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(header(&r, "content-security-policy"), "sandbox");
    assert_eq!(r.text().await.unwrap(), "files");
}

#[tokio::test]
async fn binary_and_empty_values() {
    let a = dev().await;
    let bytes: Vec<u8> = (0..=255u8).collect();
    a.put("/v1/kv/bin", bytes.clone()).await;
    let r = a.http.get(a.url("/v1/kv/bin?raw")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
    a.put("/v1/kv/empty", "").await;
    let (_, v) = a.get_json("/v1/kv/empty").await;
    assert_eq!(v[0]["Value"], Value::Null);
}

#[tokio::test]
async fn missing_key_is_404_with_empty_body_and_index() {
    let a = dev().await;
    let r = a.http.get(a.url("/v1/kv/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(header(&r, "x-consul-index").parse::<u64>().unwrap() >= 1);
    assert_eq!(r.text().await.unwrap(), "");
    let r = a.http.get(a.url("/v1/kv/")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "Missing key name");
}

#[tokio::test]
async fn keys_recurse_and_separator() {
    let a = dev().await;
    for k in ["app/a", "app/b/c", "app/b/d", "app2/x", "other"] {
        a.put(&format!("/v1/kv/{k}"), "v").await;
    }
    let (_, v) = a.get_json("/v1/kv/?keys&separator=/").await;
    assert_eq!(v, serde_json::json!(["app/", "app2/", "other"]));
    let (_, v) = a.get_json("/v1/kv/app/?keys&separator=/").await;
    assert_eq!(v, serde_json::json!(["app/a", "app/b/"]));
    let (_, v) = a.get_json("/v1/kv/app?recurse").await;
    let keys: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["app/a", "app/b/c", "app/b/d", "app2/x"]);
    let (st, _) = a.get_json("/v1/kv/zzz/?keys").await;
    assert_eq!(st, 404, "no keys under a non-empty prefix is a 404");
    let r = a
        .http
        .delete(a.url("/v1/kv/app/?recurse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "true");
    let (_, v) = a.get_json("/v1/kv/?keys").await;
    assert_eq!(v, serde_json::json!(["app2/x", "other"]));
}

#[tokio::test]
async fn cas_semantics() {
    let a = dev().await;
    assert_eq!(a.put("/v1/kv/c?cas=0", "1").await.1, "true");
    assert_eq!(
        a.put("/v1/kv/c?cas=0", "2").await.1,
        "false",
        "cas=0 only creates"
    );
    let (_, v) = a.get_json("/v1/kv/c").await;
    let idx = v[0]["ModifyIndex"].as_u64().unwrap();
    assert_eq!(
        a.put(&format!("/v1/kv/c?cas={}", idx + 100), "3").await.1,
        "false"
    );
    assert_eq!(a.put(&format!("/v1/kv/c?cas={idx}"), "4").await.1, "true");
    let r = a.http.delete(a.url("/v1/kv/c?cas=1")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "false");
    let (st, _) = a.get_json("/v1/kv/c").await;
    assert_eq!(st, 200, "a failed delete-cas keeps the key");
}

#[tokio::test]
async fn bad_requests_get_consul_errors() {
    let a = dev().await;
    let r = a
        .http
        .put(a.url("/v1/kv/x?cas=1&acquire=abc"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "Conflicting flags: acquire=abc&cas=1\n"
    );
    let r = a
        .http
        .put(a.url("/v1/kv/x?flags=abc"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.text().await.unwrap(),
        "strconv.ParseUint: parsing \"abc\": invalid syntax"
    );
    let r = a
        .http
        .put(a.url("/v1/kv/a%252F..%252Fb"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.text().await.unwrap(),
        "invalid key name, path traversal is not allowed"
    );
    let r = a
        .http
        .post(a.url("/v1/kv/x"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "allow"), "OPTIONS,GET,PUT,DELETE");
    assert_eq!(r.text().await.unwrap(), "method POST not allowed");
    let r = a
        .http
        .request(reqwest::Method::OPTIONS, a.url("/v1/kv/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "allow"), "OPTIONS,GET,PUT,DELETE");
    // Nothing of the refused writes was stored.
    let (_, v) = a.get_json("/v1/kv/?keys").await;
    assert_eq!(v, serde_json::json!([]));
}

#[tokio::test]
async fn body_limit_is_413_and_configurable() {
    let a = dev().await;
    let big = vec![b'x'; 512 * 1024 + 1];
    let r = a
        .http
        .put(a.url("/v1/kv/big"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.text().await.unwrap(),
        "Request body(524289 bytes) too large, max size: 524288 bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size."
    );
    let ok = vec![b'x'; 512 * 1024];
    assert_eq!(a.put("/v1/kv/big", ok).await.0, 200);
    let small = dev_builder()
        .config_file("limits.hcl", "limits { kv_max_value_size = 10 }")
        .start()
        .await;
    assert_eq!(small.put("/v1/kv/k", "0123456789").await.0, 200);
    assert_eq!(small.put("/v1/kv/k", "0123456789A").await.0, 413);
}

/// A write wakes the blocking query that waits for it, and only that one —
/// on the default runtime and on the agent's current-thread one
/// (`MESHGATE_WORKER_THREADS=1`: everything on the main thread).
#[tokio::test]
async fn blocking_query_wakes_promptly_on_write() {
    wakes_promptly(&dev().await).await;
    let one = dev_builder()
        .env("MESHGATE_WORKER_THREADS", "1")
        .start()
        .await;
    wakes_promptly(&one).await;
}

async fn wakes_promptly(a: &Agent) {
    a.put("/v1/kv/watched", "1").await;
    let r = a.http.get(a.url("/v1/kv/watched")).send().await.unwrap();
    let idx: u64 = header(&r, "x-consul-index").parse().unwrap();
    let url = a.url(&format!("/v1/kv/watched?index={idx}&wait=30s"));
    let http = a.http.clone();
    let waiter = tokio::spawn(async move {
        let r = http.get(url).send().await.unwrap();
        let idx: u64 = header(&r, "x-consul-index").parse().unwrap();
        let v: Value = r.json().await.unwrap();
        (Instant::now(), idx, v)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A write to another key does not wake the watcher.
    a.put("/v1/kv/unrelated", "x").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "an unrelated write woke the blocking query"
    );
    let written = Instant::now();
    a.put("/v1/kv/watched", "2").await;
    let (woke, new_idx, v) = waiter.await.unwrap();
    assert!(new_idx > idx);
    assert_eq!(
        v[0]["Value"],
        base64::engine::general_purpose::STANDARD.encode("2")
    );
    assert!(
        woke.duration_since(written) < Duration::from_millis(500),
        "woke {:?} after the write",
        woke.duration_since(written)
    );
}

/// Every shape of KV read answers a blocking query with what the request
/// asked for (the handler takes it from the request before waiting): `?raw`,
/// `?keys` with a separator, `?recurse`, `?pretty`, a key that appears. None
/// sends `X-Consul-Effective-Consistency` (Consul's KV endpoint does not).
#[tokio::test]
async fn blocking_kv_reads_of_every_shape() {
    let a = dev().await;
    a.put("/v1/kv/shape/a/x", "1").await;
    let r = a.http.get(a.url("/v1/kv/shape/a/x")).send().await.unwrap();
    let idx: u64 = header(&r, "x-consul-index").parse().unwrap();
    let queries = [
        "shape/a/x?raw",
        "shape/?keys&separator=/",
        "shape/?recurse",
        "shape/a/x?pretty",
        "shape/b",
    ];
    let mut waiters = Vec::new();
    for q in queries {
        let sep = if q.contains('?') { '&' } else { '?' };
        let url = a.url(&format!("/v1/kv/{q}{sep}index={idx}&wait=30s"));
        let http = a.http.clone();
        waiters.push(tokio::spawn(async move {
            let r = http.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let index: u64 = header(&r, "x-consul-index").parse().unwrap();
            assert_eq!(header(&r, "x-consul-knownleader"), "true", "{q}");
            assert_eq!(header(&r, "x-consul-lastcontact"), "0", "{q}");
            assert!(
                r.headers().get("x-consul-effective-consistency").is_none(),
                "{q}"
            );
            (status, index, r.text().await.unwrap())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "woke before the write"
    );
    // One transaction changes both keys, so every watcher sees both.
    let (st, _) = a
        .put(
            "/v1/txn",
            serde_json::json!([
                {"KV": {"Verb": "set", "Key": "shape/a/x", "Value": "Mg=="}},
                {"KV": {"Verb": "set", "Key": "shape/b", "Value": "Mw=="}},
            ])
            .to_string(),
        )
        .await;
    assert_eq!(st, 200);
    let mut answers = Vec::new();
    for w in waiters {
        let (status, index, body) = w.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(index > idx);
        answers.push(body);
    }
    assert_eq!(answers[0], "2");
    assert_eq!(answers[1], r#"["shape/a/","shape/b"]"#);
    let list: Value = serde_json::from_str(&answers[2]).unwrap();
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["shape/a/x", "shape/b"]);
    assert!(
        answers[3].starts_with("[\n    {\n        \""),
        "{}",
        answers[3]
    );
    let b: Value = serde_json::from_str(&answers[4]).unwrap();
    assert_eq!(b[0]["Value"], "Mw==");
}

#[tokio::test]
async fn blocking_query_times_out_with_same_index() {
    let a = dev().await;
    a.put("/v1/kv/k", "1").await;
    let r = a.http.get(a.url("/v1/kv/k")).send().await.unwrap();
    let idx = header(&r, "x-consul-index");
    let start = Instant::now();
    let r = a
        .http
        .get(a.url(&format!("/v1/kv/k?index={idx}&wait=300ms")))
        .send()
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-consul-index"), idx);
    assert!(
        took >= Duration::from_millis(300),
        "returned after {took:?}"
    );
    assert!(took < Duration::from_secs(3));
    // The answer at the end of the wait is the entry itself.
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v[0]["Key"].as_str(), v[0]["Value"].as_str()),
        (Some("k"), Some("MQ=="))
    );
    // An index ahead of the store waits as well (Consul answers only an
    // index greater than the one asked for), then answers the lower one.
    let ahead = idx.parse::<u64>().unwrap() + 1000;
    let start = Instant::now();
    let r = a
        .http
        .get(a.url(&format!("/v1/kv/k?index={ahead}&wait=300ms")))
        .send()
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(header(&r, "x-consul-index"), idx);
    let r = a
        .http
        .get(a.url("/v1/kv/k?index=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, "Invalid index".to_string())
    );
    let r = a
        .http
        .get(a.url("/v1/kv/k?index=1&wait=forever"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, "Invalid wait time".to_string())
    );
    let r = a
        .http
        .get(a.url("/v1/kv/k?stale&consistent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn locks_with_sessions() {
    let a = dev().await;
    let (_, s) = a.put("/v1/session/create", r#"{"LockDelay":"0s"}"#).await;
    let s1: Value = serde_json::from_str(&s).unwrap();
    let s1 = s1["ID"].as_str().unwrap().to_string();
    let (_, s) = a.put("/v1/session/create", "").await;
    let s2: Value = serde_json::from_str(&s).unwrap();
    let s2 = s2["ID"].as_str().unwrap().to_string();
    assert_eq!(
        a.put(&format!("/v1/kv/lock?acquire={s1}"), "me").await.1,
        "true"
    );
    assert_eq!(
        a.put(&format!("/v1/kv/lock?acquire={s2}"), "you").await.1,
        "false"
    );
    let (_, v) = a.get_json("/v1/kv/lock").await;
    assert_eq!(v[0]["Session"], s1.as_str());
    assert_eq!(v[0]["LockIndex"], 1);
    assert_eq!(
        a.put(&format!("/v1/kv/lock?release={s2}"), "x").await.1,
        "false"
    );
    assert_eq!(
        a.put(&format!("/v1/kv/lock?release={s1}"), "done").await.1,
        "true"
    );
    let (_, v) = a.get_json("/v1/kv/lock").await;
    assert!(v[0].get("Session").is_none());
    let r = a
        .http
        .put(a.url("/v1/kv/lock?acquire=not-a-session"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.text().await.unwrap(),
        "raft apply failed: invalid session \"not-a-session\""
    );
}
