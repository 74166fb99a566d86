use meshgate_test_support::cli;
use serde_json::{Value, json};

use crate::{BIN, catalog::EXTERNAL_DB, dev};

#[tokio::test]
async fn save_restore_into_a_fresh_agent_gives_identical_reads() {
    let a = dev().await;
    a.put("/v1/catalog/register", EXTERNAL_DB).await;
    a.put("/v1/kv/carbonio-files/db-name", "files").await;
    a.put("/v1/kv/bin", vec![0u8, 1, 2, 255]).await;
    let (_, sid) = a.put("/v1/session/create", r#"{"Name":"s"}"#).await;
    let sid: serde_json::Value = serde_json::from_str(&sid).unwrap();
    let sid = sid["ID"].as_str().unwrap().to_string();
    a.put(&format!("/v1/kv/lock?acquire={sid}"), "x").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.snap").display().to_string();
    let (code, out, err) = cli(BIN, &a, &["snapshot", "save", &file], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Saved and verified snapshot to index "),
        "{out}"
    );
    let (code, out, _) = cli(BIN, &a, &["snapshot", "inspect", &file], None);
    assert_eq!(code, 0);
    assert!(out.contains(" KVS "), "{out}");
    assert!(out.contains(" Type ") && out.contains(" Total "), "{out}");
    // Consul's JSON form and KV breakdown (`-kvdepth`, `-kvfilter`).
    let (code, out, err) = cli(
        BIN,
        &a,
        &[
            "snapshot",
            "inspect",
            "-format=json",
            "-kvdetails",
            "-kvdepth=1",
            "-kvfilter=carbonio-files/",
            &file,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v["Meta"]["Index"].as_u64().unwrap() > 0, "{v}");
    let kvs = v["Stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["Name"] == "KVS")
        .unwrap_or_else(|| panic!("{v}"));
    assert!(kvs["Count"].as_u64().unwrap() >= 2, "{v}");
    let by_prefix = v["StatsKV"].as_array().unwrap();
    assert_eq!(by_prefix.len(), 1, "{v}");
    assert_eq!(by_prefix[0]["Name"], "carbonio-files");
    assert_eq!(v["TotalSizeKV"], by_prefix[0]["Sum"]);
    let (code, _, err) = cli(
        BIN,
        &a,
        &["snapshot", "inspect", "-format=xml", &file],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("Unknown format: xml"), "{err}");

    let b = dev().await;
    b.put("/v1/kv/only-in-b", "gone after restore").await;
    let (code, out, err) = cli(BIN, &b, &["snapshot", "restore", &file], None);
    assert_eq!((code, out.as_str()), (0, "Restored snapshot\n"), "{err}");
    for path in [
        "/v1/catalog/service/carbonio-files-db",
        "/v1/kv/carbonio-files/db-name",
        "/v1/kv/bin",
        "/v1/kv/lock",
        &format!("/v1/session/info/{sid}"),
        "/v1/catalog/node/external-files-db-node",
    ] {
        assert_eq!(a.get_json(path).await, b.get_json(path).await, "{path}");
    }
    let (st, _) = b.get_json("/v1/kv/only-in-b").await;
    assert_eq!(st, 404);
    // The restoring agent keeps its own node registered.
    let (_, node) = b.get_json("/v1/catalog/node/test-node").await;
    assert_eq!(node["Node"]["Node"], "test-node");
}

#[tokio::test]
async fn corrupt_snapshots_are_refused_and_change_nothing() {
    let a = dev().await;
    a.put("/v1/kv/keep", "1").await;
    let r = a.http.get(a.url("/v1/snapshot")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut bytes = r.bytes().await.unwrap().to_vec();
    let n = bytes.len();
    bytes[n - 20] ^= 0x55;
    let (st, body) = a.put("/v1/snapshot", bytes).await;
    assert_eq!(st, 500);
    assert!(body.starts_with("failed to restore snapshot: "), "{body}");
    let (st, body) = a.put("/v1/snapshot", "definitely not a snapshot").await;
    assert_eq!(st, 500);
    assert!(body.contains("not a gzip-compressed archive"), "{body}");
    let (st, v) = a.get_json("/v1/kv/keep").await;
    assert_eq!(st, 200);
    assert_eq!(v[0]["Key"], "keep");
    let (_, list) = a.get_json("/v1/kv/?keys").await;
    assert_eq!(list, json!(["keep"]));
}
