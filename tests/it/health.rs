use serde_json::{Value, json};

use crate::dev;

async fn register(a: &meshgate_test_support::Agent, node: &str, status: &str) {
    let body = format!(
        r#"{{"Node":"{node}","Address":"10.0.0.1","Service":{{"ID":"db-{node}","Service":"db","Port":5432}},
            "Checks":[{{"CheckID":"db-alive","Name":"db alive","Status":"{status}","ServiceID":"db-{node}",
                        "Definition":{{"TCP":"10.0.0.1:5432","Interval":"10s","Timeout":"1s"}}}}]}}"#
    );
    assert_eq!(a.put("/v1/catalog/register", body).await.0, 200);
}

#[tokio::test]
async fn service_health_and_passing_filter() {
    let a = dev().await;
    register(&a, "n1", "passing").await;
    register(&a, "n2", "critical").await;
    let (_, all) = a.get_json("/v1/health/service/db").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let c = &all[0]["Checks"][0];
    assert_eq!(c["CheckID"], "db-alive");
    assert_eq!(c["ServiceName"], "db");
    assert_eq!(c["Type"], "tcp");
    assert_eq!(c["Definition"]["TCP"], "10.0.0.1:5432");
    assert_eq!(c["Definition"]["Interval"], "10s");
    let (_, passing) = a.get_json("/v1/health/service/db?passing").await;
    let nodes: Vec<&str> = passing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Node"]["Node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, vec!["n1"]);
    let (_, p) = a.get_json("/v1/health/service/db?passing=false").await;
    assert_eq!(p.as_array().unwrap().len(), 2);
    let r = a
        .http
        .get(a.url("/v1/health/service/db?passing=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, "Invalid value for ?passing".into())
    );
}

#[tokio::test]
async fn node_level_checks_fail_every_instance() {
    let a = dev().await;
    register(&a, "n1", "passing").await;
    let body = r#"{"Node":"n1","Address":"10.0.0.1","Check":{"CheckID":"externalNodeHealth","Name":"External Node Status","Status":"critical"}}"#;
    assert_eq!(a.put("/v1/catalog/register", body).await.0, 200);
    let (_, v) = a.get_json("/v1/health/service/db").await;
    let ids: Vec<&str> = v[0]["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["externalNodeHealth", "db-alive"],
        "node checks come first"
    );
    let (_, p) = a.get_json("/v1/health/service/db?passing").await;
    assert_eq!(p, json!([]));
}

#[tokio::test]
async fn check_lists_by_node_service_and_state() {
    let a = dev().await;
    register(&a, "n1", "passing").await;
    register(&a, "n2", "critical").await;
    let (_, v) = a.get_json("/v1/health/node/n2").await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, v) = a.get_json("/v1/health/checks/db").await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = a.get_json("/v1/health/state/critical").await;
    let nodes: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, vec!["n2"]);
    let (_, v) = a.get_json("/v1/health/state/any").await;
    assert_eq!(
        v.as_array().unwrap().len(),
        3,
        "two db checks and the agent's serfHealth"
    );
    let (st, v) = a.get_json("/v1/health/state/bogus").await;
    assert_eq!((st, v), (200, json!([])));
    let (_, v) = a.get_json("/v1/health/ingress/db").await;
    assert_eq!(v, json!([]));
    let (_, v) = a.get_json("/v1/health/node/test-node").await;
    let serf: &Value = &v[0];
    assert_eq!(serf["CheckID"], "serfHealth");
    assert_eq!(serf["Output"], "Agent alive and reachable");
    assert_eq!(serf["Type"], "");
}
