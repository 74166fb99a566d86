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
    // Zero weights (what Go clients such as Terraform's send for none) are
    // stored as the default, as Consul stores them.
    let (st, _) = a
        .put(
            "/v1/catalog/register",
            r#"{"Node":"ext","Address":"10.0.0.9","Service":{"Service":"w","Port":80,"Weights":{"Passing":0,"Warning":0}}}"#,
        )
        .await;
    assert_eq!(st, 200);
    let (_, svc) = a.get_json("/v1/catalog/service/w").await;
    assert_eq!(
        svc[0]["ServiceWeights"],
        json!({"Passing": 1, "Warning": 1})
    );
    let (_, n) = a.get_json("/v1/catalog/node/ext").await;
    assert_eq!(
        n["Services"]["w"]["Weights"],
        json!({"Passing": 1, "Warning": 1})
    );
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
    // A check's `Definition` is read by Consul's own decoder, which ignores
    // keys a definition does not have (node-consul sends `IntervalDuration`);
    // the check's other fields are still read strictly.
    let (st, text) = a
        .put(
            "/v1/catalog/register",
            r#"{"Node":"defn","Address":"127.0.0.40","Check":{"CheckID":"d","Name":"d",
                "Definition":{"HTTP":"http://127.0.0.40/","IntervalDuration":"10s","Interval":"5s"}}}"#,
        )
        .await;
    assert_eq!((st, text.as_str()), (200, "true"));
    let (_, checks) = a.get_json("/v1/health/node/defn").await;
    assert_eq!(checks[0]["Definition"]["Interval"], "5s", "{checks}");
    let (st, text) = a
        .put(
            "/v1/catalog/register",
            r#"{"Node":"defn","Address":"127.0.0.40","Checks":[{"CheckID":"d","Bogus":1}]}"#,
        )
        .await;
    assert_eq!(
        (st, text.as_str()),
        (400, "Request decode failed: json: unknown field \"Bogus\"")
    );
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
    // The service list: the filter runs on each instance (node and service
    // fields alike) before they are grouped by name, as Prometheus's Consul
    // discovery relies on.
    a.put(
        "/v1/catalog/register",
        r#"{"Node":"external-files-db-node","SkipNodeUpdate":true,
            "Service":{"ID":"replica","Service":"carbonio-files-db-replica","Tags":["replica"],"Port":5433}}"#,
    )
    .await;
    let services = |f: &'static str| {
        let a = &a;
        async move {
            let (st, v) = a
                .get_json(&format!("/v1/catalog/services?filter={}", url_escape(f)))
                .await;
            assert_eq!(st, 200, "{f}: {v}");
            v
        }
    };
    assert_eq!(
        services(r#"NodeMeta["external-node"] == "true""#).await,
        json!({"carbonio-files-db": [], "carbonio-files-db-replica": ["replica"]})
    );
    assert_eq!(
        services(r#"ServiceTags contains "replica""#).await,
        json!({"carbonio-files-db-replica": ["replica"]})
    );
    assert_eq!(
        services(r#"ServicePort == 5432 and Node != "test-node""#).await,
        json!({"carbonio-files-db": []})
    );
    assert_eq!(services(r#"ServiceName == "nothing""#).await, json!({}));
    // A node's services.
    let (_, v) = a
        .get_json(&format!(
            "/v1/catalog/node/external-files-db-node?filter={}",
            url_escape(r#"Port == 5433"#)
        ))
        .await;
    assert_eq!(
        v["Services"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["replica"],
        "{v}"
    );
    for path in [
        "/v1/catalog/services",
        "/v1/catalog/node/external-files-db-node",
        "/v1/catalog/node/no-such-node",
    ] {
        let text = bad_filter_refused(&a, path).await;
        assert!(
            text.starts_with("Failed to create boolean expression evaluator"),
            "{path}: {text}"
        );
    }
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

/// The string `key` of each element of a JSON list.
fn field_of_each<'a>(list: &'a Value, key: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|e| e[key].as_str().unwrap_or_else(|| panic!("{key} in {e}")))
        .collect()
}

/// `/v1/internal/ui/services`, Consul's per-service summary (what its UI's
/// service list reads): counts, merged sidecar checks, proxy and gateway
/// links; a blocking query.
#[tokio::test]
async fn ui_services_summary() {
    let a = dev().await;
    let register = |body: Value| {
        let a = &a;
        async move {
            let (st, b) = a.put("/v1/catalog/register", body.to_string()).await;
            assert_eq!(st, 200, "{b}");
        }
    };
    let check = |node: &str, id: &str, service: &str, status: &str| json!({"Node": node, "CheckID": id, "Name": id, "ServiceID": service, "Status": status});
    register(json!({"Node": "n1", "Address": "127.0.0.10",
        "Service": {"ID": "web1", "Service": "web", "Tags": ["v1"], "Port": 80},
        "Checks": [check("n1", "n1-alive", "", "passing"), check("n1", "web-check", "web1", "passing")]}))
    .await;
    register(json!({"Node": "n2", "Address": "127.0.0.11",
        "Service": {"ID": "web2", "Service": "web", "Tags": ["v2", "v1"], "Port": 80},
        "Checks": [check("n2", "n2-alive", "", "critical"), check("n2", "web-check", "web2", "warning")]}))
    .await;
    register(json!({"Node": "n1", "Address": "127.0.0.10",
        "Service": {"ID": "web1-sidecar-proxy", "Service": "web-sidecar-proxy", "Kind": "connect-proxy",
            "Port": 21000, "Proxy": {"DestinationServiceName": "web", "Mode": "transparent"}},
        "Check": check("n1", "proxy-alive", "web1-sidecar-proxy", "critical")}))
    .await;
    register(json!({"Node": "n2", "Address": "127.0.0.11",
        "Service": {"ID": "nat", "Service": "nat", "Connect": {"Native": true}}}))
    .await;
    register(json!({"Node": "ext1", "Address": "127.0.0.12",
        "Service": {"ID": "db", "Service": "db", "Meta": {"external-source": "meshgate"}}}))
    .await;
    register(json!({"Node": "n1", "Address": "127.0.0.10",
        "Service": {"ID": "gw", "Service": "gw", "Kind": "terminating-gateway", "Port": 8443}}))
    .await;
    let (st, b) = a
        .put(
            "/v1/config",
            r#"{"Kind": "terminating-gateway", "Name": "gw", "Services": [{"Name": "db"}]}"#,
        )
        .await;
    assert_eq!(st, 200, "{b}");

    let r = a
        .http
        .get(a.url("/v1/internal/ui/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let index: u64 = header(&r, "x-consul-index").parse().unwrap();
    let list: Value = r.json().await.unwrap();
    let by_name = |list: &Value, name: &str| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["Name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {list}"))
    };
    let names = field_of_each(&list, "Name");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name");
    // Both instances' checks, the nodes' checks once per node, and the
    // sidecar's check counted for the service it serves.
    assert_eq!(
        by_name(&list, "web"),
        json!({"Name": "web", "Datacenter": "dc1", "Tags": ["v1", "v2"], "Nodes": ["n1", "n2"],
            "ExternalSources": null, "InstanceCount": 2, "ChecksPassing": 2, "ChecksWarning": 1,
            "ChecksCritical": 2, "GatewayConfig": {}, "TransparentProxy": true,
            "ConnectNative": false, "ConnectedWithProxy": true, "ConnectedWithGateway": false})
    );
    assert_eq!(
        by_name(&list, "web-sidecar-proxy"),
        json!({"Kind": "connect-proxy", "Name": "web-sidecar-proxy", "Datacenter": "dc1",
            "Tags": null, "Nodes": ["n1"], "ExternalSources": null, "InstanceCount": 1,
            "ChecksPassing": 1, "ChecksWarning": 0, "ChecksCritical": 1, "GatewayConfig": {},
            "TransparentProxy": false, "ConnectNative": false, "ConnectedWithProxy": false,
            "ConnectedWithGateway": false})
    );
    assert_eq!(
        by_name(&list, "db"),
        json!({"Name": "db", "Datacenter": "dc1", "Tags": null, "Nodes": ["ext1"],
            "ExternalSources": ["meshgate"], "InstanceCount": 1, "ChecksPassing": 0,
            "ChecksWarning": 0, "ChecksCritical": 0, "GatewayConfig": {},
            "TransparentProxy": false, "ConnectNative": false, "ConnectedWithProxy": false,
            "ConnectedWithGateway": true})
    );
    let gw = by_name(&list, "gw");
    assert_eq!(gw["Kind"], "terminating-gateway");
    assert_eq!(gw["GatewayConfig"], json!({"AssociatedServiceCount": 1}));
    assert_eq!(gw["ChecksPassing"], 1, "n1's node check: {gw}");
    let nat = by_name(&list, "nat");
    assert_eq!(nat["ConnectNative"], true);
    assert_eq!(nat["ChecksCritical"], 1, "n2's node check: {nat}");

    // A blocking read wakes on a change and shows it.
    let waiting = {
        let url = a.url(&format!("/v1/internal/ui/services?index={index}&wait=30s"));
        let http = a.http.clone();
        tokio::spawn(async move { http.get(url).send().await.unwrap().json::<Value>().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the read blocks until a change");
    register(json!({"Node": "n2", "Address": "127.0.0.11",
        "Service": {"ID": "web3", "Service": "web", "Port": 81}}))
    .await;
    let after = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("woken by the change")
        .unwrap()
        .unwrap();
    assert_eq!(by_name(&after, "web")["InstanceCount"], 3);

    // `/v1/internal/ui/nodes`: every node with its services and checks.
    let (st, nodes) = a.get_json("/v1/internal/ui/nodes").await;
    assert_eq!(st, 200);
    assert_eq!(
        field_of_each(&nodes, "Node"),
        ["ext1", "n1", "n2", "test-node"]
    );
    let n1 = &nodes[1];
    assert_eq!(n1["Address"], "127.0.0.10");
    assert_eq!(
        field_of_each(&n1["Services"], "ID"),
        ["gw", "web1", "web1-sidecar-proxy"]
    );
    assert_eq!(n1["Services"][2]["Kind"], "connect-proxy");
    assert_eq!(
        field_of_each(&n1["Checks"], "CheckID"),
        ["n1-alive", "proxy-alive", "web-check"]
    );
    // A node without services or checks has empty lists, not null.
    assert_eq!(nodes[0]["Checks"], json!([]));

    // `?filter`: instances before they are summed up (the selectors of
    // /v1/health/service), nodes by NodeInfo's selectors; a bad expression
    // is a 500, as everywhere.
    let (st, only_v2) = a
        .get_json("/v1/internal/ui/services?filter=Service.Tags%20contains%20%22v2%22")
        .await;
    assert_eq!(st, 200, "{only_v2}");
    assert_eq!(only_v2.as_array().unwrap().len(), 1, "{only_v2}");
    assert_eq!(only_v2[0]["Name"], "web");
    assert_eq!(only_v2[0]["InstanceCount"], 1);
    assert_eq!(only_v2[0]["Nodes"], json!(["n2"]));
    let (st, on_n1) = a
        .get_json("/v1/internal/ui/nodes?filter=Node%20%3D%3D%20%22n1%22")
        .await;
    assert_eq!(st, 200, "{on_n1}");
    assert_eq!(on_n1.as_array().unwrap().len(), 1, "{on_n1}");
    assert_eq!(on_n1[0]["Node"], "n1");
    for path in ["/v1/internal/ui/services", "/v1/internal/ui/nodes"] {
        bad_filter_refused(&a, path).await;
    }
}

/// `path` with a filter on a field that does not exist: a 500 (asserted),
/// whose text is returned.
async fn bad_filter_refused(a: &meshgate_test_support::Agent, path: &str) -> String {
    let r = a
        .http
        .get(a.url(&format!("{path}?filter=Bogus%20%3D%3D%201")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500, "{path}");
    r.text().await.unwrap()
}
