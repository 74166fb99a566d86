use serde_json::{Value, json};

use crate::dev;

async fn register(a: &meshgate_test_support::Agent, node: &str, tags: &str, status: &str) {
    let body = format!(
        r#"{{"Node":"{node}","Address":"10.0.0.1","Service":{{"ID":"db","Service":"db","Tags":{tags},"Port":5432}},
            "Check":{{"CheckID":"db-check","Name":"db","ServiceID":"db","Status":"{status}"}}}}"#
    );
    assert_eq!(a.put("/v1/catalog/register", body).await.0, 200);
}

async fn create(a: &meshgate_test_support::Agent, body: Value) -> (u16, String) {
    let r = a
        .http
        .post(a.url("/v1/query"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn crud_and_execute() {
    let a = dev().await;
    register(&a, "n1", r#"["primary"]"#, "passing").await;
    register(&a, "n2", r#"["replica"]"#, "warning").await;
    register(&a, "n3", r#"["replica","experimental"]"#, "critical").await;
    let (st, body) = create(&a, json!({"Name": "db-query", "Service": {"Service": "db", "Failover": {"Datacenters": ["dc2", "dc3"]}}, "DNS": {"TTL": "10s"}})).await;
    assert_eq!(st, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, list) = a.get_json("/v1/query").await;
    assert_eq!(list[0]["Name"], "db-query");
    let (_, one) = a.get_json(&format!("/v1/query/{id}")).await;
    assert_eq!(one[0]["Service"]["Service"], "db");
    // Execute by name: critical instances are excluded, warning ones kept.
    let (_, r) = a.get_json("/v1/query/db-query/execute").await;
    let nodes: Vec<&str> = {
        let mut v: Vec<&str> = r["Nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["Node"]["Node"].as_str().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(nodes, vec!["n1", "n2"]);
    assert_eq!(r["DNS"]["TTL"], "10s");
    assert_eq!(r["Datacenter"], "dc1");
    assert_eq!(r["Failovers"], 0);
    let (_, r) = a.get_json(&format!("/v1/query/{id}/execute?limit=1")).await;
    assert_eq!(r["Nodes"].as_array().unwrap().len(), 1);
    // Update: only passing, not experimental.
    let upd = json!({"Name": "db-query", "Service": {"Service": "db", "OnlyPassing": true, "Tags": ["!experimental"], "Failover": {"Datacenters": ["dc2", "dc3"]}}});
    let (st, _) = a.put(&format!("/v1/query/{id}"), upd.to_string()).await;
    assert_eq!(st, 200);
    let (_, r) = a.get_json("/v1/query/db-query/execute").await;
    assert_eq!(r["Nodes"].as_array().unwrap().len(), 1);
    assert_eq!(r["Nodes"][0]["Node"]["Node"], "n1");
    // No local answer: datacenters meshgate does not know are skipped, not
    // counted (as Consul skips unknown ones).
    a.put("/v1/catalog/deregister", r#"{"Node":"n1"}"#).await;
    let (_, r) = a.get_json("/v1/query/db-query/execute").await;
    assert_eq!(r["Nodes"], json!([]));
    assert_eq!(r["Failovers"], 0);
    let r = a
        .http
        .delete(a.url(&format!("/v1/query/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = a
        .http
        .get(a.url("/v1/query/db-query/execute"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (404, "Query not found".into())
    );
}

#[tokio::test]
async fn templates_and_explain() {
    let a = dev().await;
    register(&a, "n1", r#"["customer"]"#, "passing").await;
    let (st, body) = create(
        &a,
        json!({
            "Name": "geo-",
            "Template": {"Type": "name_prefix_match", "Regexp": "^geo-(.*)$"},
            "Service": {"Service": "${match(1)}", "Tags": ["${name.suffix}"]}
        }),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (_, r) = a.get_json("/v1/query/geo-db/explain").await;
    assert_eq!(r["Query"]["Service"]["Service"], "db");
    assert_eq!(r["Query"]["Service"]["Tags"], json!(["db"]));
    assert_eq!(r["ResultsFilteredByACLs"], false, "{r}");
    let (_, r) = a.get_json("/v1/query/geo-db/execute").await;
    assert_eq!(r["Service"], "db");
    assert_eq!(r["ResultsFilteredByACLs"], false, "{r}");
    assert_eq!(r["Nodes"], json!([]), "the rendered tag filter applies");
}

#[tokio::test]
async fn validation_and_sessions() {
    let a = dev().await;
    let (st, body) = create(&a, json!({"Service": {"Service": "db"}})).await;
    assert_eq!(
        (st, body.as_str()),
        (500, "Invalid prepared query: Must be bound to a session")
    );
    let (st, body) = create(&a, json!({"Name": "q", "Service": {}})).await;
    assert_eq!(
        (st, body.as_str()),
        (
            500,
            "Invalid prepared query: Must provide a Service name to query"
        )
    );
    let (st, body) = create(
        &a,
        json!({"Name": "q", "Service": {"Service": "db"}, "DNS": {"TTL": "soon"}}),
    )
    .await;
    assert_eq!(st, 500);
    assert!(
        body.starts_with("Invalid prepared query: Bad DNS TTL 'soon'"),
        "{body}"
    );
    let (st, body) = create(&a, json!({"Name": "q", "Bogus": 1})).await;
    assert_eq!(
        (st, body.as_str()),
        (400, "Request decode failed: json: unknown field \"Bogus\"")
    );
    let (_, s) = a.put("/v1/session/create", "").await;
    let sid = serde_json::from_str::<Value>(&s).unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = create(&a, json!({"Session": sid, "Service": {"Service": "db"}})).await;
    assert_eq!(st, 200);
    assert_eq!(a.get_json("/v1/query").await.1.as_array().unwrap().len(), 1);
    a.put(&format!("/v1/session/destroy/{sid}"), "").await;
    assert_eq!(
        a.get_json("/v1/query").await.1,
        json!([]),
        "session-bound queries go with the session"
    );
    let (st, body) = create(&a, json!({"Name": "dup", "Service": {"Service": "db"}})).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = create(&a, json!({"Name": "dup", "Service": {"Service": "db"}})).await;
    assert_eq!(
        (st, body.as_str()),
        (
            500,
            "raft apply failed: Name 'dup' aliases an existing query name"
        )
    );
}
