//! Events, coordinates, maintenance, reload, leave, monitor, metrics, host,
//! version, usage, autopilot on a `-dev` server, and the CLI commands for
//! them.

use std::time::Duration;

use meshgate_test_support::{cli, eventually};
use serde_json::{Value, json};

use crate::{BIN, dev, dev_builder};

#[tokio::test]
async fn events_fire_list_and_filters() {
    let a = dev().await;
    a.put(
        "/v1/agent/service/register",
        r#"{"Name":"web","Tags":["blue"]}"#,
    )
    .await;
    let (st, body) = a
        .put("/v1/event/fire/deploy?service=web&tag=blue", "v1.2")
        .await;
    assert_eq!(st, 200);
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["Name"], "deploy");
    assert_eq!(e["Payload"], "djEuMg==");
    assert_eq!(e["ServiceFilter"], "web");
    a.put("/v1/event/fire/other?node=^nobody$", "").await;
    let (_, list) = a.get_json("/v1/event/list").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["deploy"],
        "an event for another node is not listed here"
    );
    let (_, list) = a.get_json("/v1/event/list?name=nope").await;
    assert_eq!(list, json!([]));
    let (st, body) = a.put("/v1/event/fire/x?tag=blue", "").await;
    assert_eq!(
        (st, body.as_str()),
        (500, "Cannot provide tag filter without service filter.")
    );
    let (st, body) = a.put("/v1/event/fire/x?node=%5B", "").await;
    assert_eq!(st, 500);
    assert!(body.starts_with("Invalid node filter: "), "{body}");
    let (st, _) = a.put("/v1/event/fire/big", vec![b'x'; 600]).await;
    assert_eq!(st, 500);
    let (code, out, _) = cli(BIN, &a, &["event", "-name", "restart", "now"], None);
    assert_eq!(code, 0);
    assert!(out.starts_with("Event ID: "), "{out}");
}

#[tokio::test]
async fn coordinates() {
    let a = dev().await;
    let (_, nodes) = a.get_json("/v1/coordinate/nodes").await;
    assert_eq!(
        nodes[0]["Node"], "test-node",
        "the agent reports its own coordinate"
    );
    assert_eq!(nodes[0]["Coord"]["Vec"].as_array().unwrap().len(), 8);
    // A node in the catalog with a coordinate: its first two dimensions
    // and its height.
    let place = |node: &'static str, x: f64, y: f64, height: f64| {
        let a = &a;
        async move {
            let reg = json!({"Node": node, "Address": "10.0.0.2"});
            let (st, _) = a.put("/v1/catalog/register", reg.to_string()).await;
            assert_eq!(st, 200);
            let body = json!({"Node": node, "Coord": {"Vec": [x,y,0,0,0,0,0,0], "Error": 0.5, "Adjustment": 0, "Height": height}});
            let (st, _) = a.put("/v1/coordinate/update", body.to_string()).await;
            assert_eq!(st, 200);
        }
    };
    place("n2", 0.1, 0.0, 0.0001).await;
    let (_, c) = a.get_json("/v1/coordinate/node/n2").await;
    assert_eq!(c[0]["Coord"]["Error"], 0.5);
    let (st, _) = a.get_json("/v1/coordinate/node/ghost").await;
    assert_eq!(st, 404);
    let (_, dcs) = a.get_json("/v1/coordinate/datacenters").await;
    assert_eq!(dcs[0]["Datacenter"], "dc1");
    assert_eq!(dcs[0]["Coordinates"][0]["Node"], "test-node.dc1");
    let (st, _) = a
        .put(
            "/v1/coordinate/update",
            r#"{"Node":"n2","Coord":{"Vec":[1]}}"#,
        )
        .await;
    assert_eq!(st, 400);

    // `meshgate rtt`: |(0.1,0) - (0.1,0.2)| = 0.2 s, plus both heights.
    place("n3", 0.1, 0.2, 0.0002).await;
    let (code, out, err) = cli(BIN, &a, &["rtt", "n2", "N3"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "Estimated n2 <-> N3 rtt: 200.300 ms (using LAN coordinates)\n"
    );
    // The second node defaults to the agent's.
    let (code, out, err) = cli(BIN, &a, &["rtt", "n2"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Estimated n2 <-> test-node rtt: "), "{out}");
    let (code, out, err) = cli(BIN, &a, &["rtt", "-wan", "test-node.dc1"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Estimated test-node.dc1 <-> test-node.dc1 rtt: ")
            && out.ends_with(" ms (using WAN coordinates)\n"),
        "{out}"
    );
    for (args, want) in [
        (vec!["rtt"], "One or two node names must be specified"),
        (
            vec!["rtt", "ghost", "n2"],
            "Could not find a coordinate for node \"ghost\"",
        ),
        (
            vec!["rtt", "n2", "ghost"],
            "Could not find a coordinate for node \"ghost\"",
        ),
        (
            vec!["rtt", "-wan", "n2"],
            "Node names must be specified as <node name>.<datacenter> with -wan",
        ),
    ] {
        let (code, _, err) = cli(BIN, &a, &args, None);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }

    // `?near=`: nearest first by the same estimate, nodes without a
    // coordinate last. From n2: n2 itself, n4 (0.05 s away), test-node (the
    // origin, 0.1 s), n3 (0.2 s), then n5 (no coordinate).
    place("n4", 0.1, 0.05, 0.0001).await;
    for node in ["n5", "n3", "test-node", "n4", "n2"] {
        let reg = json!({
            "Node": node, "Address": "10.0.0.9",
            "Service": {"Service": "web", "ID": format!("web-{node}"), "Port": 80},
            "Check": {"CheckID": format!("web-{node}"), "Name": "web", "Status": "passing", "ServiceID": format!("web-{node}")}
        });
        let (st, _) = a.put("/v1/catalog/register", reg.to_string()).await;
        assert_eq!(st, 200);
    }
    let order = |v: &Value, node: &dyn Fn(&Value) -> &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| node(e).as_str().unwrap().to_string())
            .collect()
    };
    let want = ["n2", "n4", "test-node", "n3", "n5"];
    let (_, v) = a.get_json("/v1/catalog/service/web?near=n2").await;
    assert_eq!(order(&v, &|e| &e["Node"]), want);
    let (_, v) = a.get_json("/v1/health/service/web?near=n2").await;
    assert_eq!(order(&v, &|e| &e["Node"]["Node"]), want);
    let (_, v) = a.get_json("/v1/health/checks/web?near=n2").await;
    assert_eq!(order(&v, &|e| &e["Node"]), want);
    let (_, v) = a.get_json("/v1/catalog/nodes?near=N2").await;
    assert_eq!(order(&v, &|e| &e["Node"]), want);
    // The CLI passes `-near` on, for all nodes and a service's nodes.
    for extra in [&[][..], &["-service", "web"][..]] {
        let mut args = vec!["catalog", "nodes", "-near", "n2"];
        args.extend_from_slice(extra);
        let (code, out, err) = cli(BIN, &a, &args, None);
        assert_eq!(code, 0, "{err}");
        let listed: Vec<&str> = out
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(listed, want, "{args:?}: {out}");
    }
    // `_agent`: from this agent's node.
    let (_, v) = a.get_json("/v1/catalog/service/web?near=_agent").await;
    assert_eq!(order(&v, &|e| &e["Node"])[..2], ["test-node", "n2"]);
    // A node without a coordinate sorts nothing.
    let (_, plain) = a.get_json("/v1/catalog/service/web").await;
    let (_, v) = a.get_json("/v1/catalog/service/web?near=n5").await;
    assert_eq!(order(&v, &|e| &e["Node"]), order(&plain, &|e| &e["Node"]));
    // Prepared queries: the query's `Near`, or `?near=` on execute.
    let r = a
        .http
        .post(a.url("/v1/query"))
        .body(json!({"Name": "near-web", "Service": {"Service": "web", "Near": "n2"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = a.get_json("/v1/query/near-web/execute").await;
    assert_eq!(order(&v["Nodes"], &|e| &e["Node"]["Node"]), want);
    let (_, v) = a
        .get_json("/v1/query/near-web/execute?near=n3&limit=2")
        .await;
    assert_eq!(order(&v["Nodes"], &|e| &e["Node"]["Node"]), ["n3", "n4"]);
    // The node asked for answers first even without a coordinate (the
    // others stay shuffled): n5 has none.
    for _ in 0..5 {
        let (_, v) = a.get_json("/v1/query/near-web/execute?near=n5").await;
        assert_eq!(v["Nodes"][0]["Node"]["Node"], "n5", "{v}");
    }
    // `_ip`: from the node whose address is the client's — the first of
    // `X-Forwarded-For`, else the connection's (127.0.0.1, given to n3 here).
    for (node, addr) in [("n4", "10.0.0.4"), ("n3", "127.0.0.1")] {
        let reg = json!({"Node": node, "Address": addr});
        let (st, _) = a.put("/v1/catalog/register", reg.to_string()).await;
        assert_eq!(st, 200);
    }
    let from_n4 = {
        let (_, v) = a.get_json("/v1/query/near-web/execute?near=n4").await;
        order(&v["Nodes"], &|e| &e["Node"]["Node"])
    };
    assert_eq!(from_n4[0], "n4");
    let execute = |near: &'static str, forwarded: Option<&'static str>| {
        let a = &a;
        async move {
            let mut req = a
                .http
                .get(a.url(&format!("/v1/query/near-web/execute?near={near}")));
            if let Some(f) = forwarded {
                req = req.header("X-Forwarded-For", f);
            }
            let v: Value = req.send().await.unwrap().json().await.unwrap();
            order(&v["Nodes"], &|e| &e["Node"]["Node"])
        }
    };
    assert_eq!(execute("_ip", Some("10.0.0.4, 192.0.2.1")).await, from_n4);
    assert_eq!(execute("_ip", None).await[..2], ["n3", "n4"]);
    // A client no node has: nothing is sorted, every instance answers.
    assert_eq!(execute("_ip", Some("192.0.2.7")).await.len(), 5);
}

#[tokio::test]
async fn maintenance_takes_the_node_and_services_out() {
    let a = dev().await;
    a.put(
        "/v1/agent/service/register",
        r#"{"Name":"web","Check":{"TTL":"1h","Status":"passing"}}"#,
    )
    .await;
    let passing = || async {
        let (_, v) = a.get_json("/v1/health/service/web?passing").await;
        v.as_array().unwrap().len()
    };
    assert_eq!(passing().await, 1);
    assert_eq!(
        a.put(
            "/v1/agent/service/maintenance/web?enable=true&reason=upgrade",
            ""
        )
        .await
        .0,
        200
    );
    assert_eq!(passing().await, 0);
    let (_, checks) = a.get_json("/v1/agent/checks").await;
    assert_eq!(checks["_service_maintenance:web"]["Notes"], "upgrade");
    assert_eq!(checks["_service_maintenance:web"]["Status"], "critical");
    let (code, out, _) = cli(BIN, &a, &["maint"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("Service:\n  ID:     web\n  Reason: upgrade"),
        "{out}"
    );
    assert_eq!(
        a.put("/v1/agent/service/maintenance/web?enable=false", "")
            .await
            .0,
        200
    );
    assert_eq!(passing().await, 1);
    let (code, out, _) = cli(BIN, &a, &["maint", "-enable", "-reason", "kernel"], None);
    assert_eq!(
        (code, out.as_str()),
        (0, "Node maintenance is now enabled\n")
    );
    assert_eq!(passing().await, 0);
    let (_, c) = a.get_json("/v1/health/node/test-node").await;
    assert!(
        c.as_array()
            .unwrap()
            .iter()
            .any(|c| c["CheckID"] == "_node_maintenance" && c["Notes"] == "kernel")
    );
    cli(BIN, &a, &["maint", "-disable"], None);
    assert_eq!(passing().await, 1);
    let (st, body) = a.put("/v1/agent/maintenance", "").await;
    assert_eq!((st, body.as_str()), (400, "Missing value for enable"));
    let (st, _) = a
        .put("/v1/agent/service/maintenance/ghost?enable=true", "")
        .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn reload_adds_and_removes_config_services() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("svc.hcl");
    std::fs::write(&file, "service { name = \"one\" port = 1 }\n").unwrap();
    let a = dev_builder()
        .args(["-config-file", file.to_str().unwrap()])
        .start()
        .await;
    let (_, v) = a.get_json("/v1/agent/services").await;
    assert!(v.get("one").is_some());
    std::fs::write(&file, "service { name = \"two\" port = 2 }\n").unwrap();
    let (code, out, _) = cli(BIN, &a, &["reload"], None);
    assert_eq!(
        (code, out.as_str()),
        (0, "Configuration reload triggered\n")
    );
    let (_, v) = a.get_json("/v1/agent/services").await;
    assert!(v.get("one").is_none());
    assert_eq!(v["two"]["Port"], 2);
    // A broken file is refused and changes nothing.
    std::fs::write(&file, "service { name = \"three\" bogus = 1 }\n").unwrap();
    let (st, body) = a.put("/v1/agent/reload", "").await;
    assert_eq!(st, 500);
    assert!(body.contains("bogus"), "{body}");
    let (_, v) = a.get_json("/v1/agent/services").await;
    assert!(v.get("two").is_some());
}

#[tokio::test]
async fn metrics_host_version_info() {
    use crate::{host_gauge, metric};
    let a = dev().await;
    a.get_json("/v1/kv/x").await;
    let (st, _) = a.put("/v1/kv/x", "1").await;
    assert_eq!(st, 200);
    let (st, _) = a
        .put(
            "/v1/txn",
            r#"[{"KV": {"Verb": "set", "Key": "y", "Value": "MQ=="}}]"#,
        )
        .await;
    assert_eq!(st, 200);
    // The write timers of Consul's key metrics, and raft's (a single
    // server is its own leader), counted since start in the Prometheus
    // form (the JSON form shows one 10 s interval: see
    // `metrics_json_shows_the_last_finished_interval`).
    for (name, series) in [
        ("consul.http.GET.v1.kv._", "_count"),
        ("consul.kvs.apply", "_count"),
        ("consul.txn.apply", "_count"),
        ("consul.catalog.register", "_count"),
        ("consul.raft.commitTime", "_count"),
        ("consul.raft.apply", ""),
    ] {
        let v = crate::prometheus_total(&a, name, series).await;
        assert!(v.is_some_and(|v| v >= 1.0), "{name}: {v:?}");
    }
    assert_eq!(
        crate::prometheus_total(&a, "consul.kvs.apply", "_count").await,
        Some(1.0)
    );
    let (_, m) = a.get_json("/v1/agent/metrics").await;
    // Consul's names: gauges carry the host name by default.
    let nodes = metric(&m, "Gauges", &host_gauge("consul.state.nodes")).expect("state.nodes");
    assert_eq!(nodes["Value"], 1.0, "{m}");
    for (name, want) in [
        ("consul.server.isLeader", Some(1.0)),
        ("consul.autopilot.healthy", Some(1.0)),
        ("consul.autopilot.failure_tolerance", Some(0.0)),
        ("consul.mesh.active-root-ca.expiry", None),
        ("consul.mesh.active-signing-ca.expiry", None),
    ] {
        let g = metric(&m, "Gauges", &host_gauge(name)).unwrap_or_else(|| panic!("{name}: {m}"));
        match want {
            Some(v) => assert_eq!(g["Value"], v, "{name}: {g}"),
            // The built-in root lives ten years.
            None => assert!(g["Value"].as_f64().unwrap() > 9.0 * 365.0 * 86400.0, "{g}"),
        }
    }
    let r = a
        .http
        .get(a.url("/v1/agent/metrics?format=prometheus"))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let prom: String = host_gauge("consul.state.nodes")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    assert!(
        text.contains(&format!("# TYPE {prom} gauge\n{prom} 1")),
        "{text}"
    );
    // `telemetry.disable_hostname`: the names without it.
    let plain = crate::dev_builder()
        .config_file("t.hcl", "telemetry { disable_hostname = true }\n")
        .start()
        .await;
    let (_, m) = plain.get_json("/v1/agent/metrics").await;
    assert!(metric(&m, "Gauges", "consul.state.nodes").is_some(), "{m}");
    assert!(
        metric(&m, "Gauges", "consul.server.isLeader").is_some(),
        "{m}"
    );
    drop(plain);
    let (_, h) = a.get_json("/v1/agent/host").await;
    assert!(h["Memory"]["total"].as_u64().unwrap() > 0);
    assert!(!h["Host"]["hostname"].as_str().unwrap().is_empty());
    let (_, v) = a.get_json("/v1/agent/version").await;
    assert!(v["HumanVersion"].as_str().unwrap().starts_with("1."));
    let (code, out, _) = cli(BIN, &a, &["info"], None);
    assert_eq!(code, 0);
    assert!(out.contains("agent:\n\tcheck_monitors = 0\n"), "{out}");
}

#[tokio::test]
async fn monitor_streams_log_lines() {
    let a = dev().await;
    let mut r = a
        .http
        .get(a.url("/v1/agent/monitor?loglevel=info"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.put("/v1/agent/service/register", r#"{"Name":"logged-service"}"#)
        .await;
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(chunk)) = r.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("logged-service") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{seen}");
    assert!(seen.contains("[INFO]"), "{seen}");
    let (st, _) = a.get_json("/v1/agent/monitor?loglevel=chatty").await;
    assert_eq!(st, 400);
    // Below the agent's own log level (info) too: debug lines reach a
    // debug stream (events are built only while someone streams).
    drop(r);
    let mut r = a
        .http
        .get(a.url("/v1/agent/monitor?loglevel=debug"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, _) = a.get_json("/v1/kv/debug-marker").await;
    assert_eq!(st, 404);
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(chunk)) = r.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("/v1/kv/debug-marker") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{seen}");
    assert!(seen.contains("[DEBUG]"), "{seen}");
}

#[tokio::test]
async fn watch_runs_the_handler_on_change() {
    let a = dev().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen");
    let handler = format!("cat >> {}; echo >> {}", out.display(), out.display());
    let mut child = std::process::Command::new(BIN)
        .args(["watch", "-type", "key", "-key", "config/flag", &handler])
        .env("CONSUL_HTTP_ADDR", &a.base)
        .spawn()
        .unwrap();
    a.put("/v1/kv/config/flag", "on").await;
    eventually(
        "the handler to see the write",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            text.contains("\"Value\":\"b24=\"").then_some(())
        },
    )
    .await;
    a.put("/v1/kv/config/flag", "off").await;
    eventually(
        "the handler to see the change",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            text.contains("\"Value\":\"b2Zm\"").then_some(())
        },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    // The handler gets one compact JSON line per change (as Consul's encoder
    // writes it).
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("{\"") && l.ends_with('}')),
        "{text}"
    );

    // Without a handler: the current answer, indented, and the command ends.
    let (code, printed, err) = cli(
        BIN,
        &a,
        &["watch", "-type", "key", "-key", "config/flag"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        printed.contains("\n    \"Key\": \"config/flag\","),
        "{printed}"
    );
    // No agent to talk to: an error at once, not a retry loop.
    let free = meshgate_test_support::free_port("127.0.0.1");
    let out = std::process::Command::new(BIN)
        .args(["watch", "-type", "nodes"])
        .env("CONSUL_HTTP_ADDR", format!("127.0.0.1:{free}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Error querying Consul agent: "), "{err}");
    // A handler that fails ends the command with status 1. The answer is
    // larger than a pipe holds and the handler exits without reading it: the
    // command's write fails (EPIPE), and that must not kill the command.
    let (st, _) = a.put("/v1/kv/config/flag", vec![b'x'; 200 * 1024]).await;
    assert_eq!(st, 200);
    let (code, _, err) = cli(
        BIN,
        &a,
        &["watch", "-type", "key", "-key", "config/flag", "exit 3"],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Error executing handler: exit status 3"),
        "{err}"
    );
}

#[tokio::test]
async fn leave_stops_the_agent() {
    let mut a = dev().await;
    let (code, out, _) = cli(BIN, &a, &["leave"], None);
    assert_eq!((code, out.as_str()), (0, "Graceful leave complete\n"));
    let status = a
        .wait_exit(Duration::from_secs(10))
        .expect("the agent exits after leave");
    assert!(status.success(), "{status:?}");
    let r = a.http.get(a.url("/v1/status/leader")).send().await;
    assert!(r.is_err(), "the agent still answers after leave");
}

/// `Type=notify`: the agent says READY=1 once it serves, pings the watchdog,
/// and says STOPPING=1 on SIGTERM.
#[tokio::test]
async fn systemd_notify_ready_watchdog_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut a = meshgate_test_support::AgentBuilder::dev(crate::BIN)
        .env("NOTIFY_SOCKET", &path.display().to_string())
        .env("WATCHDOG_USEC", "200000")
        .start()
        .await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !(seen.iter().any(|m| m == "READY=1") && seen.iter().any(|m| m == "WATCHDOG=1")) {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({e}); got {seen:?}"));
        seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    // READY comes once the API answers, before anything else.
    assert_eq!(seen[0], "READY=1", "{seen:?}");
    let (st, _) = a.get_json("/v1/status/leader").await;
    assert_eq!(st, 200);
    a.terminate();
    loop {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no STOPPING=1 ({e})"));
        if &buf[..n] == b"STOPPING=1" {
            break;
        }
    }
}

/// `meshgate lock`: the child runs only while the lock is held, with
/// Consul's keys and flags; others wait (or give up at `-timeout`); the
/// lock and its session are gone afterwards; a lost lock stops the child
/// with SIGTERM; `-n` makes it a semaphore; the child's own flags are its
/// own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_runs_the_child_under_a_lock() {
    let a = dev().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let spawn = |args: &[&str]| {
        std::process::Command::new(BIN)
            .arg("lock")
            .args(args)
            .env("CONSUL_HTTP_ADDR", &a.base)
            .env("SHELL", "/bin/sh")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("meshgate lock")
    };
    let finish = |c: std::process::Child| {
        let out = c.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let l = log.display().to_string();
    // The holder: the child sees CONSUL_LOCK_HELD and runs for 2 s.
    let holder = spawn(&[
        "locks/job",
        &format!("echo start:$CONSUL_LOCK_HELD >> {l}; sleep 2; echo end >> {l}"),
    ]);
    eventually(
        "the holder's child runs",
        Duration::from_secs(10),
        || async { read(&log).contains("start").then_some(()) },
    )
    .await;
    assert_eq!(read(&log), "start:true\n");
    let (st, v) = a.get_json("/v1/kv/locks/job/.lock").await;
    assert_eq!(st, 200);
    assert_eq!(v[0]["Flags"], 3_304_740_253_564_472_344u64, "{v}");
    let session = v[0]["Session"].as_str().expect("held").to_string();
    let (_, s) = a.get_json(&format!("/v1/session/info/{session}")).await;
    assert_eq!(s[0]["TTL"], "15s", "{s}");
    assert_eq!(s[0]["Behavior"], "release", "{s}");
    // A waiter runs after the holder; one with -timeout gives up.
    let waiter = spawn(&["locks/job", &format!("echo waiter >> {l}")]);
    let quick = spawn(&[
        "-timeout",
        "500ms",
        "locks/job",
        &format!("echo quick >> {l}"),
    ]);
    let (code, _, err) = finish(quick);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Shutdown triggered or timeout during lock acquisition"),
        "{err}"
    );
    let (code, _, err) = finish(holder);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = finish(waiter);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read(&log), "start:true\nend\nwaiter\n");
    // Nothing left behind: the lock key and the sessions are gone.
    let (st, _) = a.get_json("/v1/kv/locks/job/.lock").await;
    assert_eq!(st, 404);
    let (_, sessions) = a.get_json("/v1/session/list").await;
    assert_eq!(sessions, json!([]));

    // The child's exit status: 2 with -child-exit-code, else 0.
    let (code, _, _) = finish(spawn(&["-child-exit-code", "locks/x", "exit 3"]));
    assert_eq!(code, 2);
    let (code, _, _) = finish(spawn(&["locks/x", "exit 3"]));
    assert_eq!(code, 0);
    // Without a shell, the child's flags reach it untouched.
    let (code, out, err) = finish(spawn(&[
        "-shell=false",
        "locks/x",
        "printf",
        "%s|%s",
        "-x=1",
        "-verbose",
    ]));
    assert_eq!((code, out.as_str()), (0, "-x=1|-verbose"), "{err}");

    // A lost lock (its session destroyed) stops the child with SIGTERM.
    let lost = dir.path().join("lost");
    let p = lost.display().to_string();
    let holder = spawn(&[
        "locks/lost",
        &format!(
            "trap 'echo term >> {p}; exit 0' TERM; echo start >> {p}; while true; do sleep 0.1; done"
        ),
    ]);
    eventually("the child runs", Duration::from_secs(10), || async {
        read(&lost).contains("start").then_some(())
    })
    .await;
    let (_, v) = a.get_json("/v1/kv/locks/lost/.lock").await;
    let session = v[0]["Session"].as_str().unwrap().to_string();
    let (st, _) = a.put(&format!("/v1/session/destroy/{session}"), "").await;
    assert_eq!(st, 200);
    let (code, _, err) = finish(holder);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read(&lost), "start\nterm\n");

    // -n 2: a semaphore; two run at once, a third gives up.
    let sem = dir.path().join("sem");
    let s = sem.display().to_string();
    let one = spawn(&["-n", "2", "sem/job", &format!("echo one >> {s}; sleep 4")]);
    let two = spawn(&["-n=2", "sem/job", &format!("echo two >> {s}; sleep 4")]);
    eventually("both hold a slot", Duration::from_secs(10), || async {
        (read(&sem).lines().count() == 2).then_some(())
    })
    .await;
    let (st, v) = a.get_json("/v1/kv/sem/job/.lock").await;
    assert_eq!(st, 200);
    assert_eq!(v[0]["Flags"], 16_210_313_421_097_356_768u64, "{v}");
    let holders: Value = {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v[0]["Value"].as_str().unwrap())
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    };
    assert_eq!(holders["Limit"], 2, "{holders}");
    assert_eq!(
        holders["Holders"].as_object().unwrap().len(),
        2,
        "{holders}"
    );
    let (code, _, err) = finish(spawn(&[
        "-n",
        "2",
        "-timeout",
        "500ms",
        "sem/job",
        &format!("echo three >> {s}"),
    ]));
    assert_eq!(code, 1, "{err}");
    // A lock on a semaphore's prefix (and the reverse) is a conflict.
    let (code, _, err) = finish(spawn(&["-timeout", "500ms", "sem/job", "true"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Existing key does not match lock use"),
        "{err}"
    );
    assert_eq!(finish(one).0, 0);
    assert_eq!(finish(two).0, 0);
    assert!(!read(&sem).contains("three"));
    let (st, v) = a.get_json("/v1/kv/sem/job/?recurse").await;
    assert_eq!(st, 404, "{v}");

    // Usage errors.
    let (code, _, err) = finish(spawn(&["locks/x"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("Key prefix and child command must be specified"),
        "{err}"
    );
    let (code, _, err) = finish(spawn(&["-n", "0", "locks/x", "true"]));
    assert_eq!(code, 1);
    assert!(err.contains("Lock holder limit must be positive"), "{err}");
}

/// `operator usage instances` and `operator autopilot` against a `-dev`
/// server: Consul's counts by kind and its tables, the single server's
/// autopilot state, the configuration read and changed.
#[tokio::test]
async fn operator_usage_and_autopilot_on_a_dev_server() {
    let a = dev().await;
    for body in [
        r#"{"Name":"web","ID":"web-1","Port":80}"#,
        r#"{"Name":"web","ID":"web-2","Port":81,"Connect":{"SidecarService":{}}}"#,
        r#"{"Name":"native","Port":82,"Connect":{"Native":true}}"#,
        r#"{"Name":"gw","Kind":"terminating-gateway","Port":8443}"#,
    ] {
        assert_eq!(
            a.put("/v1/agent/service/register", body).await.0,
            200,
            "{body}"
        );
    }
    // Services: web, web-sidecar-proxy, native, gw (and consul, the
    // server's own, if registered); billable: web twice and native.
    let (st, u) = a.get_json("/v1/operator/usage").await;
    assert_eq!(st, 200);
    let dc = &u["Usage"]["dc1"];
    let has_consul = a
        .get_json("/v1/catalog/service/consul")
        .await
        .1
        .as_array()
        .is_some_and(|l| !l.is_empty());
    let extra = u64::from(has_consul);
    assert_eq!(dc["Services"], 4 + extra, "{u}");
    assert_eq!(dc["ServiceInstances"], 5 + extra, "{u}");
    assert_eq!(dc["BillableServiceInstances"], 3, "{u}");
    assert_eq!(
        dc["ConnectServiceInstances"],
        json!({"api-gateway": 0, "connect-native": 1, "connect-proxy": 1,
               "ingress-gateway": 0, "mesh-gateway": 0, "terminating-gateway": 1}),
        "{u}"
    );
    let services = 4 + extra;
    let (code, out, err) = cli(BIN, &a, &["operator", "usage", "instances"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "Billable Service Instances Total: 3\n\
             dc1 Billable Service Instances: 3\n\n\
             Billable Services\n\
             Services      Service instances\n\
             {services}             3\n\n\
             Connect Services\n\
             Type                     Service instances\n\
             api-gateway              0\n\
             connect-native           1\n\
             connect-proxy            1\n\
             ingress-gateway          0\n\
             mesh-gateway             0\n\
             terminating-gateway      1\n"
        )
    );
    let (code, out, _) = cli(
        BIN,
        &a,
        &["operator", "usage", "instances", "-connect"],
        None,
    );
    assert_eq!(code, 0);
    assert!(out.starts_with("Connect Services\n"), "{out}");
    assert!(!out.contains("Billable"), "{out}");
    let (code, out, _) = cli(
        BIN,
        &a,
        &[
            "operator",
            "usage",
            "instances",
            "-billable",
            "-all-datacenters",
        ],
        None,
    );
    assert_eq!(code, 0);
    assert!(!out.contains("Connect Services"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[4], "Datacenter      Services      Service instances",
        "{out}"
    );
    assert_eq!(
        lines[5].split_whitespace().collect::<Vec<_>>(),
        ["dc1", &services.to_string(), "3"],
        "{out}"
    );
    assert_eq!(
        lines[7].split_whitespace().collect::<Vec<_>>(),
        ["Total", &services.to_string(), "3"],
        "{out}"
    );
    let (code, _, err) = cli(
        BIN,
        &a,
        &["operator", "usage", "instances", "-billable", "-connect"],
        None,
    );
    assert_eq!(
        (code, err.trim()),
        (1, "Cannot specify both -billable and -connect flags")
    );

    // Autopilot on a single server: itself, the healthy leader.
    let (st, state) = a.get_json("/v1/operator/autopilot/state").await;
    assert_eq!(st, 200, "{state}");
    let id = state["Leader"].as_str().unwrap().to_string();
    assert!(!id.is_empty(), "{state}");
    assert_eq!(state["Voters"], json!([id]), "{state}");
    assert_eq!(state["Servers"][&id]["Status"], "leader", "{state}");
    let (code, out, err) = cli(BIN, &a, &["operator", "autopilot", "state"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "Healthy:                      true\n\
             Failure Tolerance:            0\n\
             Optimistic Failure Tolerance: 0\n\
             Leader:                       {id}\n\
             Voters:\n   {id}\n\
             Servers:\n   {id}\n"
        )),
        "{out}"
    );
    for line in [
        "      Status:          leader\n",
        "      Node Type:       voter\n",
        "      Node Status:     alive\n",
        "      Healthy:         true\n",
        "      Last Contact:    0s\n",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    let (code, out, _) = cli(
        BIN,
        &a,
        &["operator", "autopilot", "state", "-format=json"],
        None,
    );
    assert_eq!(code, 0);
    assert!(out.starts_with("{\n    \"Healthy\": true,\n"), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Leader"], id.as_str());
    let (code, _, err) = cli(
        BIN,
        &a,
        &["operator", "autopilot", "state", "-format", "yaml"],
        None,
    );
    assert_eq!((code, err.trim()), (1, "Unknown format: yaml"));

    // The configuration: Consul's defaults, then a change of two fields
    // that keeps the others.
    let defaults = "CleanupDeadServers = true\n\
                    LastContactThreshold = 200ms\n\
                    MaxTrailingLogs = 250\n\
                    MinQuorum = 0\n\
                    ServerStabilizationTime = 10s\n\
                    RedundancyZoneTag = \"\"\n\
                    DisableUpgradeMigration = false\n\
                    UpgradeVersionTag = \"\"\n";
    let (code, out, err) = cli(BIN, &a, &["operator", "autopilot", "get-config"], None);
    assert_eq!((code, out.as_str()), (0, defaults), "{err}");
    let (code, out, err) = cli(
        BIN,
        &a,
        &[
            "operator",
            "autopilot",
            "set-config",
            "-last-contact-threshold",
            "1m30s",
            "-redundancy-zone-tag=zone",
            "-cleanup-dead-servers=false",
        ],
        None,
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "Configuration updated!\n"),
        "{err}"
    );
    let (code, out, _) = cli(BIN, &a, &["operator", "autopilot", "get-config"], None);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        defaults
            .replace("CleanupDeadServers = true", "CleanupDeadServers = false")
            .replace("200ms", "1m30s")
            .replace("RedundancyZoneTag = \"\"", "RedundancyZoneTag = \"zone\"")
    );
    // A bad value changes nothing.
    let (code, _, err) = cli(
        BIN,
        &a,
        &["operator", "autopilot", "set-config", "-min-quorum=many"],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("many"), "{err}");
    let (_, c) = a.get_json("/v1/operator/autopilot/configuration").await;
    assert_eq!(c["MinQuorum"], 0, "{c}");
    assert_eq!(c["LastContactThreshold"], "1m30s", "{c}");
}

/// `meshgate debug`: Consul's bundle layout, its checks before anything is
/// written, a static-only capture kept as a directory, and a capture stopped
/// by SIGTERM that still writes and packs what it recorded.
#[tokio::test]
async fn debug_records_a_bundle() {
    let a = dev().await;
    let tmp = tempfile::tempdir().unwrap();
    let out = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();

    // Checks first: nothing is created when one fails.
    for (args, want) in [
        (
            vec!["-duration=5s"],
            "Capture validation failed: duration must be longer than 10s",
        ),
        (
            vec!["-interval=1s"],
            "Capture validation failed: interval must be longer than 5s",
        ),
        (
            vec!["-duration=10s", "-interval=20s"],
            "Capture validation failed: duration (10s) must be longer than interval (20s)",
        ),
        (
            vec!["-capture", "bogus"],
            "Capture validation failed: target not found: bogus",
        ),
    ] {
        let dir = out("refused");
        let mut argv = vec!["debug", "-output", &dir];
        argv.extend(args.iter().copied());
        let (code, _, err) = cli(BIN, &a, &argv, None);
        assert_eq!((code, err.trim()), (1, want), "{args:?}");
        assert!(!tmp.path().join("refused").exists(), "{args:?}");
    }

    // Static targets only, kept as a directory: no waiting.
    let dir = out("static");
    let (code, stdout, err) = cli(
        BIN,
        &a,
        &[
            "debug",
            "-capture",
            "agent",
            "-capture",
            "host",
            "-capture",
            "cluster",
            "-archive=false",
            "-output",
            &dir,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.starts_with("==> Starting debugger and capturing static information...\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("       Capture: 'agent, host, cluster'\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(&format!("    Saved debug archive: {dir}\n")),
        "{stdout}"
    );
    let read = |p: std::path::PathBuf| -> Value {
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
            .unwrap()
    };
    let d = tmp.path().join("static");
    let agent = read(d.join("agent.json"));
    assert_eq!(agent["Config"]["NodeName"], "test-node", "{agent}");
    assert_eq!(agent["DebugConfig"]["EnableDebug"], false, "{agent}");
    assert!(
        std::fs::read_to_string(d.join("agent.json"))
            .unwrap()
            .contains("\n\t\"Config\"")
    );
    assert!(read(d.join("host.json"))["Host"].is_object());
    assert!(
        read(d.join("members.json"))
            .as_array()
            .is_some_and(|m| !m.is_empty())
    );
    let index = read(d.join("index.json"));
    assert_eq!(index["Version"], 1, "{index}");
    assert_eq!(
        index["Targets"],
        json!(["agent", "host", "cluster"]),
        "{index}"
    );
    let peers = std::fs::read_to_string(d.join("listpeers.json")).unwrap();
    assert!(peers.starts_with("Node"), "{peers}");
    assert!(peers.contains("Trails Leader By"), "{peers}");
    assert!(peers.contains("leader"), "{peers}");
    assert!(!d.join("consul.log").exists() && !d.join("metrics.json").exists());

    // Everything, for a minute, stopped after three intervals: the log and
    // the metrics stream recorded so far are packed as `<output>.tar.gz`.
    let dir = out("bundle");
    let mut p = meshgate_test_support::Proc::spawn(
        "debug",
        BIN,
        &[
            "debug",
            "-http-addr",
            &a.base,
            "-duration=1m",
            "-interval=5s",
            "-output",
            &dir,
        ],
        &[],
    );
    p.wait_log("Capture successful", Duration::from_secs(10));
    p.wait_log("(3)", Duration::from_secs(30));
    p.sigterm();
    let status = p
        .wait_exit(Duration::from_secs(10))
        .expect("debug stops on SIGTERM");
    let log = p.log();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("[WARN] Unable to capture pprof"), "{log}");
    assert!(
        log.contains(
            "Error encountered during collection: stopping collection due to shutdown signal"
        ),
        "{log}"
    );
    assert!(
        log.contains(&format!("Saved debug archive: {dir}.tar.gz")),
        "{log}"
    );
    assert!(
        !tmp.path().join("bundle").exists(),
        "the directory is removed once packed"
    );
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let st = std::process::Command::new("tar")
        .args([
            "-xzf",
            &format!("{dir}.tar.gz"),
            "-C",
            unpacked.to_str().unwrap(),
        ])
        .status()
        .expect("tar (apt-get install tar)");
    assert!(st.success());
    let d = unpacked.join("bundle");
    let index = read(d.join("index.json"));
    assert_eq!(index["Interval"], "5s", "{index}");
    assert_eq!(index["Duration"], "1m2s", "{index}");
    assert_eq!(
        index["Targets"],
        json!(["metrics", "logs", "host", "agent", "members"]),
        "{index}"
    );
    let logged = std::fs::read_to_string(d.join("consul.log")).unwrap();
    assert!(logged.contains("Monitor started (level TRACE)"), "{logged}");
    let metrics = std::fs::read_to_string(d.join("metrics.json")).unwrap();
    let first = metrics
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no metrics line: {log}"));
    let m: Value = serde_json::from_str(first).unwrap();
    assert!(m["Gauges"].is_array(), "{m}");
    for f in ["agent.json", "host.json", "members.json", "listpeers.json"] {
        assert!(d.join(f).exists(), "{f}");
    }
}

/// `/v1/agent/metrics` as Consul's in-memory sink gives it: counters and
/// timers of the last finished 10 s interval only (`Rate` per second over
/// it), its start as `Timestamp` in Go's `time.Time` text, which tools such
/// as Telegraf's `consul_agent` input parse with the layout
/// `2006-01-02 15:04:05 -0700 MST`; `/v1/agent/metrics/stream` writes each
/// interval as it ends.
#[tokio::test]
async fn metrics_json_shows_the_last_finished_interval() {
    use crate::metric;
    let a = dev().await;
    let mut stream = a
        .http
        .get(a.url("/v1/agent/metrics/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let (st, _) = a.put("/v1/kv/once", "1").await;
    assert_eq!(st, 200);
    // A `Timestamp`, checked against the layout (the same text for every
    // interval: later intervals compare greater).
    let stamp = |m: &Value| -> String {
        let t = m["Timestamp"].as_str().unwrap_or_else(|| panic!("{m}"));
        let shape: String = t
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999-99-99 99:99:99 +9999 UTC", "{t}");
        assert_eq!(
            &t[18..19],
            "0",
            "an interval starts on a multiple of 10 s: {t}"
        );
        t.to_string()
    };
    // The PUT shows in the interval it fell in (the current one while the
    // agent is in its first interval, else once that interval has ended).
    let m = eventually(
        "an interval with the KV write",
        Duration::from_secs(25),
        || async {
            let (_, m) = a.get_json("/v1/agent/metrics").await;
            metric(&m, "Samples", "consul.kvs.apply")
                .is_some()
                .then_some(m)
        },
    )
    .await;
    let with_write = stamp(&m);
    let w = metric(&m, "Samples", "consul.kvs.apply").unwrap();
    assert_eq!(w["Count"], 1, "{w}");
    let sum = w["Sum"].as_f64().unwrap();
    assert!(
        (w["Rate"].as_f64().unwrap() - sum / 10.0).abs() < 1e-9,
        "{w}"
    );
    assert!(w["Stddev"].is_number() && w["Labels"].is_object(), "{w}");
    // The next interval had no KV write: it is not in it.
    let later = eventually("the next interval", Duration::from_secs(35), || async {
        let (_, m) = a.get_json("/v1/agent/metrics").await;
        (stamp(&m) > with_write).then_some(m)
    })
    .await;
    assert!(
        metric(&later, "Samples", "consul.kvs.apply").is_none(),
        "{later}"
    );
    assert!(
        metric(&later, "Samples", "consul.http.GET.v1.agent.metrics").is_some(),
        "{later}"
    );
    // The stream's first line is the interval that was running when it was
    // opened, written when it ended.
    let mut got = Vec::new();
    while !got.contains(&b'\n') {
        let chunk = tokio::time::timeout(Duration::from_secs(15), stream.chunk())
            .await
            .expect("a metrics line within an interval")
            .unwrap()
            .expect("the stream stays open");
        got.extend_from_slice(&chunk);
    }
    let line = String::from_utf8(got).unwrap();
    let first: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert!(stamp(&first) <= with_write, "{first}");
    assert!(first["Gauges"].is_array(), "{first}");
}

/// `meshgate version`: meshgate's version and the Consul API version it
/// speaks; `-format=json` has the fields of `consul version -format=json`.
#[tokio::test]
async fn version_pretty_and_json() {
    let a = dev().await;
    let (code, out, err) = cli(BIN, &a, &["version"], None);
    assert_eq!(code, 0, "{err}");
    let (_, self_) = a.get_json("/v1/agent/self").await;
    let api = self_["Config"]["Version"].as_str().unwrap().to_string();
    let (_, v) = a.get_json("/v1/agent/version").await;
    let ours = v["MeshgateVersion"].as_str().unwrap().to_string();
    assert_eq!(
        out,
        format!("meshgate v{ours}\nCompatible with the Consul API v{api}\n")
    );
    let (code, out, err) = cli(BIN, &a, &["version", "-format=json"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("{\n   \"Version\": "), "{out}");
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["Version"], api.as_str(), "{j}");
    assert_eq!(j["MeshgateVersion"], ours.as_str(), "{j}");
    assert_eq!(j["BuildDate"], self_["Config"]["BuildDate"], "{j}");
    assert_eq!(j["RPC"]["Max"], 3, "{j}");
    let (code, _, err) = cli(BIN, &a, &["version", "-format", "yaml"], None);
    assert_eq!((code, err.trim()), (1, "Unknown format: yaml"));
}
