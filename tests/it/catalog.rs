use serde_json::{Value, json};

use crate::{dev, header};

/// The scenario's external database registration (step 5), byte for byte.
pub const EXTERNAL_DB: &str = r#"{ "Address": "external-database.example.com",
  "Node": "external-files-db-node",
  "NodeMeta": { "external-node": "true", "external-probe": "true" },
  "Service": { "ID": "carbonio-gateway", "Port": 5432, "Service": "carbonio-files-db" } }"#;

#[tokio::test]
async fn scenario_external_service_registration() {
    let a = dev().await;
    let (st, body) = a.put("/v1/catalog/register", EXTERNAL_DB).await;
    assert_eq!((st, body.as_str()), (200, "true"));
    let (_, nodes) = a.get_json("/v1/catalog/nodes").await;
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["external-files-db-node", "test-node"]);
    let (_, ext) = a
        .get_json("/v1/catalog/nodes?node-meta=external-node:true")
        .await;
    assert_eq!(ext.as_array().unwrap().len(), 1);
    assert_eq!(ext[0]["Meta"]["external-probe"], "true");
    assert_eq!(ext[0]["Address"], "external-database.example.com");
    let (_, svc) = a.get_json("/v1/catalog/service/carbonio-files-db").await;
    let s = &svc[0];
    assert_eq!(s["ServiceID"], "carbonio-gateway");
    assert_eq!(s["ServiceName"], "carbonio-files-db");
    assert_eq!(s["ServicePort"], 5432);
    assert_eq!(s["ServiceAddress"], "");
    assert_eq!(s["Address"], "external-database.example.com");
    assert_eq!(s["ServiceTags"], json!([]));
    assert_eq!(s["ServiceWeights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(
        s["ServiceProxy"],
        json!({"Mode": "", "MeshGateway": {}, "Expose": {}})
    );
    assert!(s.get("ServicePorts").is_some());
    let (_, services) = a.get_json("/v1/catalog/services").await;
    assert_eq!(services, json!({"carbonio-files-db": [], "consul": []}));
    let (_, n) = a.get_json("/v1/catalog/node/external-files-db-node").await;
    assert_eq!(n["Services"]["carbonio-gateway"]["Port"], 5432);
    let (_, n) = a
        .get_json("/v1/catalog/node-services/EXTERNAL-FILES-DB-NODE")
        .await;
    assert_eq!(
        n["Services"][0]["ID"], "carbonio-gateway",
        "node names are case-insensitive"
    );
    // The teardown the manual procedure forgets: remove the external node.
    let (st, _) = a
        .put(
            "/v1/catalog/deregister",
            r#"{"Node":"external-files-db-node"}"#,
        )
        .await;
    assert_eq!(st, 200);
    let (_, svc) = a.get_json("/v1/catalog/service/carbonio-files-db").await;
    assert_eq!(svc, json!([]));
}

#[tokio::test]
async fn register_errors_match_consul() {
    let a = dev().await;
    let r = a
        .http
        .put(a.url("/v1/catalog/register"))
        .body(r#"{"Node":"n","Address":"a","Bogus":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "Request decode failed: json: unknown field \"Bogus\""
    );
    let r = a
        .http
        .put(a.url("/v1/catalog/register"))
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, "Request decode failed: EOF".to_string())
    );
    let r = a
        .http
        .put(a.url("/v1/catalog/register"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (st, body) = a.put("/v1/catalog/register", r#"{"Node":"n1"}"#).await;
    assert_eq!(
        (st, body.as_str()),
        (500, "Must provide address if SkipNodeUpdate is not set")
    );
    let (st, body) = a
        .put("/v1/catalog/register", r#"{"Address":"1.2.3.4"}"#)
        .await;
    assert_eq!((st, body.as_str()), (500, "Must provide node"));
    let (st, body) = a
        .put(
            "/v1/catalog/register",
            r#"{"Node":"n1","Address":"1.2.3.4","Service":{"ID":"x"}}"#,
        )
        .await;
    assert_eq!(
        (st, body.as_str()),
        (
            500,
            "Must provide service name (Service.Service) when service ID is provided"
        )
    );
    let (st, body) = a
        .put(
            "/v1/catalog/register",
            r#"{"Node":"n1","Address":"1.2.3.4","Check":{"Name":"c","ServiceID":"nope"}}"#,
        )
        .await;
    assert_eq!((st, body.as_str()), (500, "Missing service registration"));
    // Nothing was half-applied.
    let (_, nodes) = a.get_json("/v1/catalog/nodes").await;
    assert_eq!(nodes.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn lowercase_field_names_are_accepted() {
    let a = dev().await;
    let (st, _) = a
        .put(
            "/v1/catalog/register",
            r#"{"node":"lc","address":"10.0.0.9","service":{"service":"lcsvc","port":1}}"#,
        )
        .await;
    assert_eq!(st, 200);
    let (_, svc) = a.get_json("/v1/catalog/service/lcsvc").await;
    assert_eq!(svc[0]["Node"], "lc");
}

#[tokio::test]
async fn tags_node_meta_and_missing_things() {
    let a = dev().await;
    for (node, id, tags, meta) in [
        ("n1", "web1", r#"["v1","primary"]"#, r#"{"rack":"a"}"#),
        ("n2", "web2", r#"["v2"]"#, r#"{"rack":"b"}"#),
    ] {
        let body = format!(
            r#"{{"Node":"{node}","Address":"10.0.0.1","NodeMeta":{meta},"Service":{{"ID":"{id}","Service":"web","Tags":{tags},"Port":80}}}}"#
        );
        assert_eq!(a.put("/v1/catalog/register", body).await.0, 200);
    }
    let (_, v) = a.get_json("/v1/catalog/service/web?tag=PRIMARY").await;
    assert_eq!(
        v.as_array().unwrap().len(),
        1,
        "tags match case-insensitively"
    );
    let (_, v) = a.get_json("/v1/catalog/service/web?tag=v1&tag=v2").await;
    assert_eq!(v, json!([]), "every tag must match");
    let (_, v) = a.get_json("/v1/catalog/service/web?node-meta=rack:b").await;
    assert_eq!(v[0]["ServiceID"], "web2");
    let (_, v) = a.get_json("/v1/catalog/services?node-meta=rack:a").await;
    assert_eq!(v, json!({"web": ["primary", "v1"]}));
    let r = a
        .http
        .get(a.url("/v1/catalog/node/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "null");
    let (_, v) = a.get_json("/v1/catalog/node-services/nope").await;
    assert_eq!(v, json!({"Node": null, "Services": null}));
    let (_, v) = a.get_json("/v1/catalog/datacenters").await;
    assert_eq!(v, json!(["dc1"]));
    let r = a
        .http
        .get(a.url("/v1/catalog/service/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, "Missing service name".into())
    );
    let r = a
        .http
        .get(a.url("/v1/catalog/nodes?dc=elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (500, "No path to datacenter".into())
    );
}

#[tokio::test]
async fn service_index_moves_only_for_that_service() {
    let a = dev().await;
    a.put(
        "/v1/catalog/register",
        r#"{"Node":"n1","Address":"10.0.0.1","Service":{"Service":"web"}}"#,
    )
    .await;
    let r = a
        .http
        .get(a.url("/v1/catalog/service/web"))
        .send()
        .await
        .unwrap();
    let idx = header(&r, "x-consul-index");
    assert_eq!(header(&r, "x-consul-effective-consistency"), "leader");
    a.put(
        "/v1/catalog/register",
        r#"{"Node":"n2","Address":"10.0.0.2","Service":{"Service":"db"}}"#,
    )
    .await;
    let r = a
        .http
        .get(a.url("/v1/catalog/service/web"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-consul-index"), idx);
    // A blocking query on web returns when web changes.
    let url = a.url(&format!("/v1/catalog/service/web?index={idx}&wait=20s"));
    let http = a.http.clone();
    let w = tokio::spawn(async move {
        http.get(url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    a.put(
        "/v1/catalog/register",
        r#"{"Node":"n3","Address":"10.0.0.3","Service":{"Service":"web"}}"#,
    )
    .await;
    let v = w.await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn filter_expressions() {
    let a = dev().await;
    a.put("/v1/catalog/register", EXTERNAL_DB).await;
    let q = |f: &str| {
        let enc: String = url_escape(f);
        format!("/v1/catalog/nodes?filter={enc}")
    };
    let (_, v) = a.get_json(&q(r#"Meta["external-node"] == "true""#)).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["Node"], "external-files-db-node");
    let (_, v) = a
        .get_json(&q(r#"Node != "test-node" and not (Address == "x")"#))
        .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, v) = a
        .get_json(&q(r#"Node contains "files" or Node == "test-node""#))
        .await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = a
        .get_json(&format!(
            "/v1/health/service/carbonio-files-db?filter={}",
            url_escape(r#"Service.Port == 5432 and Node.Meta["external-probe"] == "true""#)
        ))
        .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let r = a.http.get(a.url(&q("Nodes == x"))).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.text().await.unwrap(),
        "Failed to create boolean expression evaluator: Selector \"Nodes\" is not valid"
    );
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
