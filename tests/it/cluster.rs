//! A real cluster (issue 7, first part): three servers on their own loopback
//! addresses replicate every write with raft, keep accepting writes when the
//! leader is killed with SIGKILL or a follower dies, a killed server restarted
//! from its data directory catches up, and a full restart keeps every
//! acknowledged write.

use std::path::Path;
use std::time::Duration;

use meshgate_test_support::{Agent, AgentBuilder, eventually};

use crate::BIN;

const IPS: [&str; 3] = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];

fn server(i: usize, data: &Path) -> AgentBuilder {
    server_on(&IPS, i, data)
}

pub fn server_on(ips: &[&str; 3], i: usize, data: &Path) -> AgentBuilder {
    let mut args = vec![
        "-server".to_string(),
        "-bootstrap-expect=3".into(),
        format!("-node=server-{}", i + 1),
        format!("-data-dir={}", data.join(format!("s{}", i + 1)).display()),
    ];
    for ip in ips {
        args.push(format!("-retry-join={ip}"));
    }
    AgentBuilder::dev(BIN).without_dev().ip(ips[i]).args(args)
}

async fn start_all(data: &Path) -> Vec<Agent> {
    start_three(&IPS, data).await
}

/// Three servers on `ips`, started together (they wait for each other).
async fn start_three(ips: &[&str; 3], data: &Path) -> Vec<Agent> {
    let (a, b, c) = tokio::join!(
        server_on(ips, 0, data).start(),
        server_on(ips, 1, data).start(),
        server_on(ips, 2, data).start()
    );
    vec![a, b, c]
}

pub async fn leader_of(a: &Agent) -> String {
    let (_, v) = a.get_json("/v1/status/leader").await;
    v.as_str().unwrap_or("").to_string()
}

/// Waits until every given server names the same, non-empty leader.
async fn agreed_leader(servers: &[&Agent]) -> String {
    agreed_leader_not(servers, "").await
}

/// The same, for a leader other than `not` (a server just killed).
async fn agreed_leader_not(servers: &[&Agent], not: &str) -> String {
    eventually(
        "the servers agree on a leader",
        Duration::from_secs(20),
        || async {
            let mut seen = Vec::new();
            for s in servers {
                seen.push(leader_of(s).await);
            }
            (!seen[0].is_empty() && seen[0] != not && seen.iter().all(|l| *l == seen[0]))
                .then(|| seen[0].clone())
        },
    )
    .await
}

async fn put_kv(a: &Agent, key: &str, value: &str) {
    let (st, b) = a.put(&format!("/v1/kv/{key}"), value.to_string()).await;
    assert_eq!((st, b.as_str()), (200, "true"), "PUT {key} on {}", a.base);
}

async fn get_kv(a: &Agent, key: &str) -> Option<String> {
    let r = meshgate_test_support::client()
        .get(a.url(&format!("/v1/kv/{key}?raw")))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.text().await.ok()
}

async fn wait_kv(a: &Agent, key: &str, value: &str) {
    eventually(
        &format!("{key}={value} on {}", a.base),
        Duration::from_secs(20),
        || async { (get_kv(a, key).await.as_deref() == Some(value)).then_some(()) },
    )
    .await;
}

async fn put_text(url: String, body: String) -> String {
    let r = meshgate_test_support::client()
        .put(url)
        .body(body)
        .send()
        .await
        .expect("PUT");
    r.text().await.expect("an answer")
}

/// Writes that arrive together are committed together (one log entry, the
/// proposer's batch) and each still gets its own answer: 64 new keys all
/// written, one winner among 16 check-and-sets of one key, sent to every
/// server at once. Batches form when writes queue up, so a round whose
/// writes all got entries of their own is tried again (five rounds).
async fn concurrent_writes_commit_together(s: &[Agent]) {
    for round in 0..5 {
        let mut tasks = Vec::new();
        for i in 0..64 {
            let url = s[i % s.len()].url(&format!("/v1/kv/burst{round}/k{i}?cas=0"));
            tasks.push(tokio::spawn(put_text(url, format!("v{i}"))));
        }
        for i in 0..16 {
            let url = s[i % s.len()].url(&format!("/v1/kv/burst{round}-one?cas=0"));
            tasks.push(tokio::spawn(put_text(url, format!("w{i}"))));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.expect("a writer"));
        }
        let (keys, same) = answers.split_at(64);
        assert!(keys.iter().all(|a| a == "true"), "{answers:?}");
        assert!(same.iter().all(|a| a == "true" || a == "false"), "{same:?}");
        let winners: Vec<usize> = (0..same.len()).filter(|i| same[*i] == "true").collect();
        assert_eq!(winners.len(), 1, "one check-and-set wins: {same:?}");
        wait_kv(
            &s[0],
            &format!("burst{round}-one"),
            &format!("w{}", winners[0]),
        )
        .await;
        let (_, list) = s[1]
            .get_json(&format!("/v1/kv/burst{round}/?recurse"))
            .await;
        let list = list.as_array().expect("a list");
        assert_eq!(list.len(), 64);
        for e in list {
            let key = e["Key"].as_str().unwrap_or_default();
            let i = key.rsplit('k').next().unwrap_or_default();
            let v = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                e["Value"].as_str().unwrap_or_default(),
            )
            .expect("base64");
            assert_eq!(String::from_utf8_lossy(&v), format!("v{i}"), "{e}");
        }
        let indexes: std::collections::BTreeSet<u64> = list
            .iter()
            .map(|e| e["ModifyIndex"].as_u64().expect("ModifyIndex"))
            .collect();
        if indexes.len() < list.len() {
            eprintln!(
                "round {round}: 64 concurrent writes went into {} entries",
                indexes.len()
            );
            return;
        }
    }
    panic!("64 concurrent writes never shared a log entry in 5 rounds");
}

fn index_of_leader(servers: &[Agent], leader: &str) -> usize {
    index_in(&IPS, servers, leader)
}

fn index_in(ips: &[&str; 3], servers: &[Agent], leader: &str) -> usize {
    ips.iter()
        .position(|ip| leader.starts_with(&format!("{ip}:")))
        .unwrap_or_else(|| panic!("leader {leader} is none of the servers ({})", servers.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_replicate_and_survive_failures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut s = start_all(data).await;
    let leader = agreed_leader(&[&s[0], &s[1], &s[2]]).await;
    let (_, peers) = s[0].get_json("/v1/status/peers").await;
    let mut peers: Vec<String> = serde_json::from_value(peers).unwrap();
    peers.sort();
    assert_eq!(
        peers,
        IPS.iter()
            .map(|ip| format!("{ip}:8300"))
            .collect::<Vec<_>>()
    );
    // Every server registered itself through the log.
    let (_, nodes) = s[2].get_json("/v1/catalog/nodes").await;
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["server-1", "server-2", "server-3"]);
    concurrent_writes_commit_together(&s).await;

    // The operator's view: three voters, one leader.
    let (code, out, err) =
        meshgate_test_support::cli(BIN, &s[0], &["operator", "raft", "list-peers"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Node"), "{out}");
    assert_eq!(out.matches(" leader ").count(), 1, "{out}");
    assert_eq!(out.matches(" follower ").count(), 2, "{out}");
    for n in ["server-1", "server-2", "server-3"] {
        assert!(out.contains(n), "{out}");
    }
    // Autopilot's view: three healthy voters, one failure tolerated.
    let h = eventually(
        "autopilot sees three healthy servers",
        Duration::from_secs(10),
        || async {
            let (st, h) = s[1].get_json("/v1/operator/autopilot/health").await;
            (st == 200 && h["Healthy"] == true).then_some(h)
        },
    )
    .await;
    assert_eq!(h["FailureTolerance"], 1, "{h}");
    assert_eq!(h["Servers"].as_array().unwrap().len(), 3, "{h}");
    assert_eq!(
        h["Servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Leader"] == true)
            .count(),
        1
    );
    let (_, u) = s[2].get_json("/v1/operator/usage").await;
    assert_eq!(u["Usage"]["dc1"]["Nodes"], 3, "{u}");

    // A write through any server is on every server.
    let li = index_of_leader(&s, &leader);
    let follower = (li + 1) % 3;
    put_kv(&s[follower], "a", "1").await;
    // Read-your-write on the server written through.
    assert_eq!(get_kv(&s[follower], "a").await.as_deref(), Some("1"));
    for a in &s {
        wait_kv(a, "a", "1").await;
    }
    // Default reads are the leader's view: a write through one server is
    // read at once through another, every time (no waiting for replication).
    let other = (li + 2) % 3;
    for i in 0..30 {
        let v = format!("v{i}");
        put_kv(&s[follower], "ryw", &v).await;
        assert_eq!(get_kv(&s[other], "ryw").await.as_deref(), Some(v.as_str()));
    }
    // X-Consul-LastContact: 0 for reads that went through the leader; for
    // ?stale reads on a follower, how long since the leader replicated to it
    // (heartbeats every 150 ms).
    let header_of = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let http = meshgate_test_support::client();
    let r = http.get(s[other].url("/v1/kv/ryw")).send().await.unwrap();
    assert_eq!(header_of(&r, "x-consul-lastcontact"), "0");
    assert_eq!(header_of(&r, "x-consul-knownleader"), "true");
    let r = http
        .get(s[other].url("/v1/kv/ryw?stale"))
        .send()
        .await
        .unwrap();
    let ms: u64 = header_of(&r, "x-consul-lastcontact").parse().unwrap();
    assert!(ms < 2000, "last contact {ms} ms ago");
    let r = http
        .get(s[li].url("/v1/kv/ryw?stale"))
        .send()
        .await
        .unwrap();
    assert_eq!(header_of(&r, "x-consul-lastcontact"), "0");

    // The leader dies without warning: a new one is elected among the
    // others, and writes go on. A session renewal sent in the middle of the
    // election waits for the new leader (as a write does) instead of failing.
    let rest: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let (st, created) = s[rest[0]]
        .put("/v1/session/create", r#"{"TTL": "30s"}"#)
        .await;
    assert_eq!(st, 200, "{created}");
    let session: serde_json::Value = serde_json::from_str(&created).unwrap();
    let session = session["ID"].as_str().unwrap().to_string();
    s[li].kill();
    let (st, renewed) = s[rest[0]]
        .put(&format!("/v1/session/renew/{session}"), "")
        .await;
    assert_eq!(st, 200, "a renewal during the election: {renewed}");
    assert!(renewed.contains(&session), "{renewed}");
    let new_leader = agreed_leader_not(&[&s[rest[0]], &s[rest[1]]], &leader).await;
    assert_ne!(new_leader, leader);
    put_kv(&s[rest[0]], "b", "2").await;
    put_kv(&s[rest[1]], "c", "3").await;
    // Restarted from its data directory, it catches up.
    s[li] = server(li, data).start().await;
    wait_kv(&s[li], "b", "2").await;
    wait_kv(&s[li], "c", "3").await;
    wait_kv(&s[li], "a", "1").await;

    // A follower dies: the two others still make a quorum.
    let leader = agreed_leader(&[&s[0], &s[1], &s[2]]).await;
    let li = index_of_leader(&s, &leader);
    let fi = (li + 1) % 3;
    s[fi].kill();
    put_kv(&s[li], "d", "4").await;
    let other = (0..3).find(|i| *i != li && *i != fi).unwrap();
    wait_kv(&s[other], "d", "4").await;
    s[fi] = server(fi, data).start().await;
    wait_kv(&s[fi], "d", "4").await;

    // Everything stops (SIGTERM) and starts again: every acknowledged write
    // is still there.
    for a in &mut s {
        a.terminate();
    }
    drop(s);
    let s = start_all(data).await;
    agreed_leader(&[&s[0], &s[1], &s[2]]).await;
    for a in &s {
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
            wait_kv(a, k, v).await;
        }
    }
    // No write is acknowledged without a quorum: with two of three servers
    // gone, a write fails with "No cluster leader" instead of succeeding.
    let mut s = s;
    s[0].kill();
    s[1].kill();
    let r = meshgate_test_support::client()
        .put(s[2].url("/v1/kv/e"))
        .body("5")
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let body: String = r.text().await.unwrap();
    assert_eq!(st, 500, "{body}");
    assert!(body.contains("No cluster leader"), "{body}");
    // Reads: the default mode needs the leader too; ?stale is answered from
    // the survivor's copy, saying there is no known leader.
    let r = meshgate_test_support::client()
        .get(s[2].url("/v1/kv/a"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let r = meshgate_test_support::client()
        .get(s[2].url("/v1/kv/a?stale"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()
            .get("x-consul-knownleader")
            .and_then(|v| v.to_str().ok()),
        Some("false")
    );
    // The survivor names no leader, even when it was the leader (a leader
    // without a quorum within its lease has stepped down as Consul's does),
    // and does not count itself one.
    let (st, leader) = s[2].get_json("/v1/status/leader").await;
    assert_eq!((st, leader), (200, serde_json::json!("")));
    let is_leader =
        crate::prometheus_total(&s[2], &crate::host_gauge("consul.server.isLeader"), "").await;
    assert_eq!(is_leader, Some(0.0));
}

/// Autopilot: its configuration is replicated state (PUT with `?cas`), its
/// state names every server with real last-contact figures, and a server
/// that is gone for good is removed from the raft configuration by the
/// leader (`CleanupDeadServers`), within the limits Consul keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autopilot_configuration_state_and_dead_server_cleanup() {
    const ON: [&str; 3] = ["127.0.0.91", "127.0.0.92", "127.0.0.93"];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut s = start_three(&ON, data).await;
    let leader = agreed_leader(&[&s[0], &s[1], &s[2]]).await;
    let http = meshgate_test_support::client();

    // The configuration: Consul's defaults, then a PUT (fields left out
    // take the defaults), a check-and-set that misses, bad input.
    let (st, c) = s[1].get_json("/v1/operator/autopilot/configuration").await;
    assert_eq!(st, 200);
    assert_eq!(c["CleanupDeadServers"], true, "{c}");
    assert_eq!(c["LastContactThreshold"], "200ms", "{c}");
    assert_eq!(c["MaxTrailingLogs"], 250, "{c}");
    let r = http
        .put(s[2].url("/v1/operator/autopilot/configuration"))
        .body(r#"{"MinQuorum": 3, "LastContactThreshold": "1s"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "true");
    let (_, c) = s[0].get_json("/v1/operator/autopilot/configuration").await;
    assert_eq!(c["MinQuorum"], 3, "{c}");
    assert_eq!(c["LastContactThreshold"], "1s", "{c}");
    assert_eq!(c["CleanupDeadServers"], true, "{c}");
    let modify = c["ModifyIndex"].as_u64().unwrap();
    assert!(modify > 0);
    let r = http
        .put(s[0].url(&format!(
            "/v1/operator/autopilot/configuration?cas={}",
            modify + 1000
        )))
        .body(r#"{"MinQuorum": 0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "false");
    let r = http
        .put(s[0].url("/v1/operator/autopilot/configuration"))
        .body(r#"{"Bogus": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "Error parsing autopilot config: json: unknown field \"Bogus\""
    );

    // The state: three servers, the leader first among the voters.
    let state = eventually(
        "autopilot state with three healthy servers",
        Duration::from_secs(15),
        || async {
            let (st, v) = s[2].get_json("/v1/operator/autopilot/state").await;
            (st == 200 && v["Healthy"] == true).then_some(v)
        },
    )
    .await;
    let servers = state["Servers"].as_object().unwrap();
    assert_eq!(servers.len(), 3, "{state}");
    assert_eq!(state["FailureTolerance"], 1, "{state}");
    let leader_id = state["Leader"].as_str().unwrap();
    assert_eq!(state["Voters"][0], leader_id, "{state}");
    let l = &servers[leader_id];
    assert_eq!(l["Status"], "leader", "{state}");
    assert_eq!(l["LastContact"], "0s", "{state}");
    assert!(
        leader.starts_with(l["Address"].as_str().unwrap()),
        "{state}"
    );
    for v in servers.values() {
        assert_eq!(v["NodeStatus"], "alive", "{state}");
        assert!(v["LastIndex"].as_u64().unwrap() > 0, "{state}");
    }
    // `agent/self`'s `Stats.consul.leader`: "true" on the leader only
    // (`snapshot save -append-filename=status` and monitoring read it).
    eventually(
        "one server says it leads",
        Duration::from_secs(10),
        || async {
            let mut leaders = 0;
            for server in &s {
                let (_, me) = server.get_json("/v1/agent/self").await;
                match me["Stats"]["consul"]["leader"].as_str()? {
                    "true" => leaders += 1,
                    "false" => {}
                    _ => return None,
                }
            }
            (leaders == 1).then_some(())
        },
    )
    .await;
    // The same through the CLI, as Consul's `operator autopilot`.
    let (code, out, err) =
        meshgate_test_support::cli(BIN, &s[1], &["operator", "autopilot", "state"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Healthy:                      true\n"),
        "{out}"
    );
    assert!(out.contains("Failure Tolerance:            1\n"), "{out}");
    assert!(
        out.contains(&format!("Leader:                       {leader_id}\n")),
        "{out}"
    );
    assert_eq!(
        out.matches("      Node Status:     alive\n").count(),
        3,
        "{out}"
    );
    assert_eq!(
        out.matches("      Status:          leader\n").count(),
        1,
        "{out}"
    );
    let (code, out, err) =
        meshgate_test_support::cli(BIN, &s[0], &["operator", "autopilot", "get-config"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("LastContactThreshold = 1s\nMaxTrailingLogs = 250\nMinQuorum = 3\n"),
        "{out}"
    );
    let (code, out, err) = meshgate_test_support::cli(
        BIN,
        &s[2],
        &[
            "operator",
            "autopilot",
            "set-config",
            "-max-trailing-logs=500",
        ],
        None,
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "Configuration updated!\n"),
        "{err}"
    );
    let (_, c) = s[0].get_json("/v1/operator/autopilot/configuration").await;
    assert_eq!(c["MaxTrailingLogs"], 500, "{c}");
    assert_eq!(c["MinQuorum"], 3, "{c}");
    assert_eq!(c["LastContactThreshold"], "1s", "{c}");

    // Consul's key metrics of a cluster: on the leader, autopilot's
    // judgement (every 10 s), leadership, raft's commits (the configuration
    // written above went through it) and its contact with a quorum; the
    // followers say they do not lead.
    use crate::{host_gauge, metric};
    let li = index_in(&ON, &s, &leader);
    let m = eventually(
        "the leader's autopilot gauges",
        Duration::from_secs(15),
        || async {
            let (_, m) = s[li].get_json("/v1/agent/metrics").await;
            metric(&m, "Gauges", &host_gauge("consul.autopilot.healthy"))
                .is_some()
                .then_some(m)
        },
    )
    .await;
    for (name, want) in [
        ("consul.autopilot.healthy", 1.0),
        ("consul.autopilot.failure_tolerance", 1.0),
        ("consul.server.isLeader", 1.0),
    ] {
        let g = metric(&m, "Gauges", &host_gauge(name)).unwrap_or_else(|| panic!("{name}: {m}"));
        assert_eq!(g["Value"], want, "{name}: {m}");
    }
    // Counted since start (the Prometheus form: the JSON form shows one
    // 10 s interval).
    for (name, series) in [
        ("consul.raft.state.leader", ""),
        ("consul.raft.apply", ""),
        ("consul.raft.commitTime", "_count"),
        ("consul.raft.leader.lastContact", "_count"),
    ] {
        let v = crate::prometheus_total(&s[li], name, series).await;
        assert!(v.is_some_and(|v| v >= 1.0), "{name}: {v:?}");
    }
    for f in (0..3).filter(|i| *i != li) {
        let (_, m) = s[f].get_json("/v1/agent/metrics").await;
        let g = metric(&m, "Gauges", &host_gauge("consul.server.isLeader"))
            .unwrap_or_else(|| panic!("isLeader on a follower: {m}"));
        assert_eq!(g["Value"], 0.0, "{m}");
        assert!(
            metric(&m, "Gauges", &host_gauge("consul.autopilot.healthy")).is_none(),
            "{m}"
        );
    }

    // Moving the leadership: to a named server, then to any other; never to
    // the leader itself or an unknown server.
    let target = servers
        .values()
        .find(|v| v["Status"] != "leader")
        .unwrap()
        .clone();
    let target_id = target["ID"].as_str().unwrap();
    let (code, out, err) = meshgate_test_support::cli(
        BIN,
        &s[0],
        &[
            "operator",
            "raft",
            "transfer-leader",
            &format!("-id={target_id}"),
        ],
        None,
    );
    assert_eq!((code, out.as_str()), (0, "Success\n"), "{err}");
    let moved = agreed_leader(&[&s[0], &s[1], &s[2]]).await;
    assert_eq!(moved, target["Address"].as_str().unwrap(), "{state}");
    let (code, _, err) = meshgate_test_support::cli(
        BIN,
        &s[1],
        &[
            "operator",
            "raft",
            "transfer-leader",
            &format!("-id={target_id}"),
        ],
        None,
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "Error transfering leadership: Failed to transfer leadership Unexpected response code: 500 (cannot transfer leadership to itself)"
    );
    let r = http
        .post(s[2].url("/v1/operator/raft/transfer-leader?id=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.text().await.unwrap(),
        "Could not find address for server id nope"
    );
    let r = http
        .post(s[2].url("/v1/operator/raft/transfer-leader"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"Success":true}"#);
    let leader = agreed_leader(&[&s[0], &s[1], &s[2]]).await;
    assert_ne!(leader, moved);
    put_kv(&s[0], "after-transfer", "ok").await;

    // A follower dies for good. With MinQuorum 3 it stays in the
    // configuration (removing it would leave two voters)...
    let li = index_in(&ON, &s, &leader);
    let dead = (li + 1) % 3;
    s[dead].kill();
    let other = (0..3).find(|i| *i != li && *i != dead).unwrap();
    eventually(
        "the dead server's node is failed",
        Duration::from_secs(30),
        || async {
            let (st, v) = s[other].get_json("/v1/operator/autopilot/state").await;
            (st == 200
                && v["Servers"]
                    .as_object()?
                    .values()
                    .any(|x| x["NodeStatus"] == "failed"))
            .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (_, peers) = s[li].get_json("/v1/status/peers").await;
    assert_eq!(peers.as_array().unwrap().len(), 3, "{peers}");
    // ...and with MinQuorum 0 the leader removes it within a round.
    let r = http
        .put(s[other].url("/v1/operator/autopilot/configuration"))
        .body(r#"{"MinQuorum": 0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(
        "the dead server is removed",
        Duration::from_secs(25),
        || async {
            let (_, peers) = s[li].get_json("/v1/status/peers").await;
            (peers.as_array()?.len() == 2).then_some(())
        },
    )
    .await;
    put_kv(&s[other], "after-cleanup", "ok").await;
    let (st, h) = s[other].get_json("/v1/operator/autopilot/health").await;
    assert_eq!(st, 200, "{h}");
    assert_eq!(h["Servers"].as_array().unwrap().len(), 2, "{h}");
}

/// A partitioned server (its process frozen with SIGSTOP: no traffic in or
/// out) — first the leader, then a follower — comes back without divergence:
/// the old leader steps down, nothing written meanwhile is lost, and every
/// server ends with the same values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_servers_rejoin_without_divergence() {
    const ON: [&str; 3] = ["127.0.0.101", "127.0.0.102", "127.0.0.103"];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let s = start_three(&ON, data).await;
    let mut expected = Vec::new();
    for round in 0..2 {
        let leader = agreed_leader(&[&s[0], &s[1], &s[2]]).await;
        let li = index_in(&ON, &s, &leader);
        let victim = if round == 0 { li } else { (li + 1) % 3 };
        let rest: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
        put_kv(&s[rest[0]], &format!("before-{round}"), "1").await;
        s[victim].signal("STOP");
        if victim == li {
            agreed_leader_not(&[&s[rest[0]], &s[rest[1]]], &leader).await;
        }
        for i in 0..5 {
            let k = format!("during-{round}-{i}");
            put_kv(&s[rest[i % 2]], &k, "x").await;
            expected.push(k);
        }
        s[victim].signal("CONT");
        // Back: it follows the cluster's leader and has every write.
        agreed_leader(&[&s[0], &s[1], &s[2]]).await;
        for k in &expected {
            wait_kv(&s[victim], k, "x").await;
        }
        put_kv(&s[victim], &format!("after-{round}"), "1").await;
    }
    // No divergence: the whole key space is the same on every server.
    let mut views = Vec::new();
    for a in &s {
        let r = meshgate_test_support::client()
            .get(a.url("/v1/kv/?recurse"))
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        let mut kvs: Vec<(String, String, u64)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["Key"].as_str().unwrap().to_string(),
                    e["Value"].as_str().unwrap_or("").to_string(),
                    e["ModifyIndex"].as_u64().unwrap(),
                )
            })
            .collect();
        kvs.sort();
        views.push(kvs);
    }
    assert_eq!(views[0].len(), 2 + 10 + 2, "{:?}", views[0]);
    assert_eq!(views[0], views[1]);
    assert_eq!(views[1], views[2]);

    // A snapshot saved through one server and restored through another is
    // the state of every server afterwards (the restore is replicated).
    let http = meshgate_test_support::client();
    let snap = http
        .get(s[1].url("/v1/snapshot"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    put_kv(&s[0], "after-snapshot", "1").await;
    let r = http
        .put(s[2].url("/v1/snapshot"))
        .body(snap.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for a in &s {
        assert_eq!(get_kv(a, "after-snapshot").await, None);
        assert_eq!(get_kv(a, "during-1-4").await.as_deref(), Some("x"));
    }
}

/// The external-service monitor runs on the leader only; when the leader is
/// killed, the new leader takes the checks over within seconds and the
/// transitions that follow are written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_leader_takes_over_external_checks() {
    use meshgate_test_support::postgres::Postgres;
    const ON: [&str; 3] = ["127.0.0.31", "127.0.0.32", "127.0.0.33"];
    const FAST: &str = r#"external_health {
  check_interval = "1s"
  node_probe_interval = "1s"
  critical_threshold = 2
}"#;
    let mut pg = Postgres::start("127.0.0.34", None);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let b = |i: usize| server_on(&ON, i, data).config_file("external.hcl", FAST);
    let (a0, a1, a2) = tokio::join!(b(0).start(), b(1).start(), b(2).start());
    let mut s = vec![a0, a1, a2];
    let leader = agreed_leader(&[&s[0], &s[1], &s[2]]).await;
    let reg = serde_json::json!({
        "Node": "db-node", "Address": "127.0.0.34",
        "NodeMeta": {"external-node": "true", "external-probe": "true"},
        "Service": {"ID": "db", "Service": "db", "Port": pg.port},
        "Check": {"CheckID": "pg", "Name": "PostgreSQL", "ServiceID": "db", "Status": "critical",
                  "Definition": {"PostgreSQL": format!("127.0.0.34:{}", pg.port), "Interval": "1s"}}
    });
    let (st, body) = s[0].put("/v1/catalog/register", reg.to_string()).await;
    assert_eq!(st, 200, "{body}");
    let status = |a: &Agent| {
        let url = a.url("/v1/health/node/db-node");
        async move {
            let v: serde_json::Value = meshgate_test_support::client()
                .get(url)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let c = v.as_array()?.iter().find(|c| c["CheckID"] == "pg")?.clone();
            Some((
                c["Status"].as_str()?.to_string(),
                c["ModifyIndex"].as_u64()?,
            ))
        }
    };
    let li = index_in(&ON, &s, &leader);
    let other = (li + 1) % 3;
    eventually(
        "the leader runs the check",
        Duration::from_secs(20),
        || async { (status(&s[other]).await?.0 == "passing").then_some(()) },
    )
    .await;
    // The leader goes; the database goes too. The new leader notices.
    s[li].kill();
    agreed_leader_not(&[&s[other], &s[(li + 2) % 3]], &leader).await;
    pg.stop();
    let (_, idx) = eventually(
        "the new leader reports critical",
        Duration::from_secs(30),
        || async {
            let (st, idx) = status(&s[other]).await?;
            (st == "critical").then_some((st, idx))
        },
    )
    .await;
    // Written once: the index stays while nothing changes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        status(&s[other]).await.unwrap(),
        ("critical".to_string(), idx)
    );
    pg.restart();
    eventually("passing again", Duration::from_secs(30), || async {
        (status(&s[other]).await?.0 == "passing").then_some(())
    })
    .await;
}

/// `meshgate setup` on the first server and `setup --join` on two more: the
/// cluster forms from the written configuration, and the bootstrap token
/// comes out of the password-protected credential file, the way the
/// scenario's step 3 takes it (`export CONSUL_HTTP_TOKEN=$(meshgate
/// bootstrap-token --setup)`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_with_the_cluster_credential_password() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    const ON: [&str; 3] = ["127.0.0.41", "127.0.0.42", "127.0.0.43"];
    const PW: &str = "correct horse battery\n";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let etc = |i: usize| d.join(format!("etc{i}")).display().to_string();
    let data = |i: usize| d.join(format!("data{i}")).display().to_string();
    // The first server.
    let (code, out, err) = run(
        &[
            "setup",
            "--password-stdin",
            "--config-dir",
            &etc(0),
            "--data-dir",
            &data(0),
            "--bind",
            ON[0],
            "--node",
            "server-1",
            "--bootstrap-expect",
            "3",
        ],
        PW,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bootstrap-token --setup"), "{out}");
    let cred = format!("{}/cluster-credentials.age", etc(0));
    let meta = std::fs::metadata(&cred).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&cred)
            .unwrap()
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
    );
    // Set up twice: refused, nothing replaced.
    let (code, _, err) = run(
        &[
            "setup",
            "--password-stdin",
            "--config-dir",
            &etc(0),
            "--bind",
            ON[0],
        ],
        PW,
    );
    assert_eq!(code, 1);
    assert!(err.contains("already set up"), "{err}");
    // Joining with the wrong password fails and writes nothing.
    let (code, _, err) = run(
        &[
            "setup",
            "--password-stdin",
            "--join",
            ON[0],
            "--credentials",
            &cred,
            "--config-dir",
            &etc(1),
            "--data-dir",
            &data(1),
            "--bind",
            ON[1],
        ],
        "not the password\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("Wrong password."), "{err}");
    assert!(!Path::new(&etc(1)).join("meshgate.hcl").exists());
    for (i, ip) in ON.iter().enumerate().skip(1) {
        let (code, out, err) = run(
            &[
                "setup",
                "--password-stdin",
                "--join",
                ON[0],
                "--credentials",
                &cred,
                "--config-dir",
                &etc(i),
                "--data-dir",
                &data(i),
                "--bind",
                ip,
                "--node",
                &format!("server-{}", i + 1),
                "--bootstrap-expect",
                "3",
            ],
            PW,
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("(joins {})", ON[0])), "{out}");
    }
    // The three agents run from the written configuration.
    let b = |i: usize| {
        AgentBuilder::dev(BIN)
            .without_dev()
            .ip(ON[i])
            .args(["-config-dir".to_string(), etc(i)])
    };
    let (a0, a1, a2) = tokio::join!(b(0).start(), b(1).start(), b(2).start());
    agreed_leader(&[&a0, &a1, &a2]).await;
    // The bootstrap token, bare, from the password on standard input.
    let (code, token, err) = run(&["bootstrap-token", "--setup", "--config-dir", &etc(1)], PW);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_string();
    assert_eq!(token.lines().count(), 1);
    assert!(err.is_empty(), "--setup prints no prompt text: {err}");
    // It manages the cluster; without it, nothing.
    let r = meshgate_test_support::client()
        .put(a2.url("/v1/kv/setup-check"))
        .header("X-Consul-Token", &token)
        .body("ok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, _) = a1.put("/v1/kv/setup-check", "anon").await;
    assert_eq!(st, 403);
    // The server port speaks mutual TLS with the cluster CA `setup` made, and
    // wants the cluster key too (a local process cannot write around the
    // ACLs). curl is the independent client.
    let url = format!("https://{}:8300/v1/internal/raft/info", ON[0]);
    let file = |name: &str| format!("{}/{name}", etc(2));
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "5"])
            .args(["--write-out", "%{http_code}", "--output", "/dev/null"])
            .args(args)
            .output()
            .expect("run curl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let ca = file("cluster-ca.pem");
    let cert = file("agent.pem");
    let key = file("agent-key.pem");
    // Plain HTTP gets no HTTP answer.
    let (code, _, _) = curl(&[&format!("http://{}:8300/v1/internal/raft/info", ON[0])]);
    assert_ne!(code, 0, "plain HTTP must not be answered");
    // TLS without a client certificate is refused in the handshake.
    let (code, status, err) = curl(&["--cacert", &ca, &url]);
    assert_ne!(code, 0, "no client certificate: {status} {err}");
    // A certificate of another CA is refused too.
    let other = crate::dataplane::test_ca("127.0.0.41");
    std::fs::write(d.join("other.pem"), &other.cert_pem).unwrap();
    std::fs::write(d.join("other-key.pem"), &other.key_pem).unwrap();
    let other_cert = d.join("other.pem").display().to_string();
    let other_key = d.join("other-key.pem").display().to_string();
    let (code, status, err) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &other_cert,
        "--key",
        &other_key,
        &url,
    ]);
    assert!(
        code != 0 || status != "200",
        "a foreign certificate: {status} {err}"
    );
    // The cluster's certificate, without the cluster key: 403.
    let (code, status, err) = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]);
    assert_eq!((code, status.as_str()), (0, "403"), "{err}");
    // With both: answered.
    let conf = std::fs::read_to_string(file("meshgate.hcl")).unwrap();
    let cluster_key = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("encrypt"))
        .and_then(|l| l.split('"').nth(1))
        .expect("encrypt in meshgate.hcl")
        .to_string();
    let header = format!("x-meshgate-cluster-key: {cluster_key}");
    let (code, status, err) = curl(&[
        "--cacert", &ca, "--cert", &cert, "--key", &key, "-H", &header, &url,
    ]);
    assert_eq!((code, status.as_str()), (0, "200"), "{err}");

    // Rotating the cluster key on every agent: install, use, remove.
    let token_arg = format!("-token={token}");
    let keyring = |a: &Agent, args: &[&str]| {
        meshgate_test_support::cli(BIN, a, &[&["keyring", &token_arg], args].concat(), None)
    };
    let (code, out, err) = keyring(&a1, &["-list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("==> Gathering installed encryption keys...\n\nWAN:\n"),
        "{out}"
    );
    assert!(out.contains("\ndc1 (LAN):\n"), "{out}");
    assert_eq!(
        out.matches(&format!("  {cluster_key} [3/3]")).count(),
        2,
        "{out}"
    );
    // A new key from `meshgate keygen`: 32 random bytes, base64.
    let keygen = || {
        let (code, out, err) = meshgate_test_support::cli(BIN, &a1, &["keygen"], None);
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    let new_key = keygen();
    {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&new_key)
            .unwrap_or_else(|e| panic!("{new_key}: {e}"));
        assert_eq!(raw.len(), 32, "{new_key}");
    }
    assert_ne!(keygen(), new_key, "every key is new");
    let new_key = new_key.as_str();
    let (code, out, err) = keyring(&a1, &[&format!("-install={new_key}")]);
    assert_eq!(
        (code, out.as_str()),
        (0, "==> Installing new gossip encryption key...\n"),
        "{err}"
    );
    let (code, _, err) = keyring(&a2, &["-install=c2hvcnQ="]);
    assert_eq!(code, 1);
    assert!(err.contains("key size must be 16, 24 or 32 bytes"), "{err}");
    let (code, _, err) = keyring(&a0, &[&format!("-remove={cluster_key}")]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: Unexpected response code: 500 ("),
        "{err}"
    );
    assert!(
        err.contains("Removing the primary key is not allowed"),
        "{err}"
    );
    let (code, _, err) = keyring(&a0, &[&format!("-use={new_key}")]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = keyring(&a2, &["-list-primary"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.matches(&format!("  {new_key} [3/3]")).count(),
        2,
        "{out}"
    );
    let (code, _, err) = keyring(&a0, &[&format!("-remove={cluster_key}")]);
    assert_eq!(code, 0, "{err}");
    // The old key no longer opens the server port; the cluster works on the
    // new one, also after a restart (each agent saved its keyring).
    let (code, status, _) = curl(&[
        "--cacert", &ca, "--cert", &cert, "--key", &key, "-H", &header, &url,
    ]);
    assert_eq!((code, status.as_str()), (0, "403"));
    let (code, status, err) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "-H",
        &format!("x-meshgate-cluster-key: {new_key}"),
        &url,
    ]);
    assert_eq!((code, status.as_str()), (0, "200"), "{err}");
    let mut a2 = a2;
    a2.terminate();
    let a2 = b(2).start().await;
    let r = meshgate_test_support::client()
        .put(a2.url("/v1/kv/after-rotation"))
        .header("X-Consul-Token", &token)
        .body("ok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (code, out, _) = keyring(&a0, &["-list"]);
    assert_eq!(code, 0);
    assert!(!out.contains(cluster_key.as_str()), "{out}");

    let (code, out, err) = run(&["bootstrap-token", "--config-dir", &etc(0)], "nope\n");
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("Wrong password."), "{err}");
}

// === Linearizability ===

/// One operation of the recorded history on a single register.
#[derive(Debug, Clone, Default)]
struct Op {
    write: Option<String>,
    /// What a read returned (`None`: the key did not exist).
    read: Option<Option<String>>,
    /// A check-and-set: `(expected, new, answer)` — write `new` if the
    /// register holds `expected` (`None`: does not exist). Every value is
    /// written once, so the `ModifyIndex` the client passed as `?cas=`
    /// stands for the value it read. `answer`: `true`/`false` as answered.
    cas: Option<(Option<String>, String, bool)>,
    start: u128,
    /// `None`: no answer (a write that may or may not have happened).
    end: Option<u128>,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |t: u128| t as f64 / 1e6;
        let what = match (&self.write, &self.read, &self.cas) {
            (Some(v), _, _) => format!("write {v}"),
            (None, Some(r), _) => format!("read {r:?}"),
            (None, None, Some((exp, new, ok))) => format!("cas {exp:?} -> {new}: {ok}"),
            _ => "nothing".into(),
        };
        match self.end {
            Some(end) => write!(f, "{:9.1} .. {:9.1} ms  {what}", ms(self.start), ms(end)),
            None => write!(f, "{:9.1} .. no answer     {what}", ms(self.start)),
        }
    }
}

/// For a history the checker refuses, one line per operation: the last 40
/// of its shortest refused prefix (in order of start) where the fault is,
/// among prefixes that hold the write of every value they read (a prefix
/// cut between a read and the overlapping write it saw is refused for no
/// fault). The whole history goes to a file, named at the end.
fn refused_prefix(ops: &[Op]) -> String {
    let mut sorted = ops.to_vec();
    sorted.sort_by_key(|o| o.start);
    let written = |ops: &[Op], v: &String| {
        ops.iter()
            .any(|o| o.write.as_ref() == Some(v) || matches!(&o.cas, Some((_, n, _)) if n == v))
    };
    let closed = |ops: &[Op]| {
        ops.iter().all(|o| match (&o.read, &o.cas) {
            (Some(Some(v)), _) | (None, Some((Some(v), _, _))) => written(ops, v),
            _ => true,
        })
    };
    let n = (1..=sorted.len())
        .find(|&n| closed(&sorted[..n]) && !linearizable(&sorted[..n]))
        .unwrap_or(sorted.len());
    let lines = |ops: &[Op]| {
        ops.iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let file = std::env::temp_dir().join("meshgate-refused-history.txt");
    let saved = match std::fs::write(&file, lines(&sorted)) {
        Ok(()) => format!("the whole history: {}", file.display()),
        Err(e) => format!("(the whole history could not be saved: {e})"),
    };
    format!("{}\n{saved}", lines(&sorted[n.saturating_sub(40)..n]))
}

/// Wing–Gong search: is there an order of the operations, consistent with
/// real time, in which every read returns the last write before it? Writes
/// without an answer may be placed anywhere after their start, or nowhere.
fn linearizable(ops: &[Op]) -> bool {
    use std::collections::HashSet;
    fn go(
        ops: &[Op],
        done: &mut Vec<bool>,
        state: Option<String>,
        seen: &mut HashSet<(Vec<bool>, Option<String>)>,
    ) -> bool {
        if (0..ops.len()).all(|i| done[i] || ops[i].end.is_none()) {
            return true;
        }
        if !seen.insert((done.clone(), state.clone())) {
            return false;
        }
        // A history this test makes is checked in well under a million
        // states; beyond that something is wrong with the history (or the
        // checker), and saying so beats running out of memory.
        assert!(
            seen.len() < 2_000_000,
            "the linearizability search explodes ({} states); history of {} operations",
            seen.len(),
            ops.len()
        );
        // The earliest end among pending, answered operations: an operation
        // can go next only if it started before that.
        let horizon = (0..ops.len())
            .filter(|i| !done[*i])
            .filter_map(|i| ops[i].end)
            .min()
            .unwrap_or(u128::MAX);
        for i in 0..ops.len() {
            if done[i] || ops[i].start > horizon {
                continue;
            }
            let next = match (&ops[i].write, &ops[i].read, &ops[i].cas) {
                (Some(v), _, _) => Some(v.clone()),
                (None, Some(r), _) if *r == state => state.clone(),
                // A CAS without an answer took effect (if it did) only
                // where its expectation held.
                (None, None, Some((exp, new, ok)))
                    if *exp == state && (*ok || ops[i].end.is_none()) =>
                {
                    Some(new.clone())
                }
                (None, None, Some((exp, _, false))) if *exp != state && ops[i].end.is_some() => {
                    state.clone()
                }
                _ => continue,
            };
            done[i] = true;
            if go(ops, done, next, seen) {
                return true;
            }
            done[i] = false;
        }
        false
    }
    let mut done = vec![false; ops.len()];
    go(ops, &mut done, None, &mut HashSet::new())
}

#[test]
fn the_checker_finds_a_stale_read() {
    let w = |v: &str, s, e| Op {
        write: Some(v.into()),
        start: s,
        end: Some(e),
        ..Default::default()
    };
    let r = |v: Option<&str>, s, e| Op {
        read: Some(v.map(str::to_string)),
        start: s,
        end: Some(e),
        ..Default::default()
    };
    // A read after a completed write returning the older value: not
    // linearizable.
    assert!(!linearizable(&[
        w("a", 0, 1),
        w("b", 2, 3),
        r(Some("a"), 4, 5)
    ]));
    // Overlapping, either order works.
    assert!(linearizable(&[
        w("a", 0, 10),
        r(Some("a"), 1, 2),
        r(None, 0, 1)
    ]));
    // A write with no answer may have happened...
    let lost = Op {
        write: Some("c".into()),
        start: 6,
        end: None,
        ..Default::default()
    };
    assert!(linearizable(&[
        w("a", 0, 1),
        lost.clone(),
        r(Some("c"), 7, 8)
    ]));
    // ...or not.
    assert!(linearizable(&[w("a", 0, 1), lost, r(Some("a"), 7, 8)]));
    // Check-and-set: success only where the expectation holds.
    let cas = |exp: Option<&str>, new: &str, ok: bool, s, e| Op {
        cas: Some((exp.map(str::to_string), new.into(), ok)),
        start: s,
        end: Some(e),
        ..Default::default()
    };
    assert!(linearizable(&[
        w("a", 0, 1),
        cas(Some("a"), "b", true, 2, 3),
        r(Some("b"), 4, 5)
    ]));
    // Two CAS from the same expectation cannot both succeed.
    assert!(!linearizable(&[
        w("a", 0, 1),
        cas(Some("a"), "b", true, 2, 5),
        cas(Some("a"), "c", true, 2, 5)
    ]));
    // A failed CAS whose expectation held throughout is wrong.
    assert!(!linearizable(&[
        w("a", 0, 1),
        cas(Some("a"), "b", false, 2, 3),
        r(Some("a"), 4, 5)
    ]));
    // Creation only if absent.
    assert!(linearizable(&[
        cas(None, "x", true, 0, 1),
        cas(None, "y", false, 2, 3),
        r(Some("x"), 4, 5)
    ]));
}

/// Clients write and read one key (`?consistent`) on every server while
/// servers are killed and restarted; the history must be linearizable and
/// every acknowledged write must be there at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_under_server_kills_is_linearizable() {
    history_under_faults_is_linearizable(["127.0.0.51", "127.0.0.52", "127.0.0.53"], false).await;
}

/// The same while servers are frozen (SIGSTOP) for 3 s and resumed: the
/// leader first — the others elect a new one while it is away, and it comes
/// back believing it leads, with requests it accepted before the freeze —
/// then a follower. Nothing it answers after it resumes may go back in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_under_frozen_servers_is_linearizable() {
    history_under_faults_is_linearizable(["127.0.0.54", "127.0.0.55", "127.0.0.56"], true).await;
}

/// The history test: four clients against three servers on `on`, two
/// faults (the leader, then a follower), killed and restarted or (`freeze`)
/// stopped and continued.
async fn history_under_faults_is_linearizable(on: [&'static str; 3], freeze: bool) {
    use std::sync::Arc;
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let mut s = start_three(&on, &data).await;
    agreed_leader(&[&s[0], &s[1], &s[2]]).await;
    let bases: Arc<Vec<String>> = Arc::new(s.iter().map(|a| a.base.clone()).collect());
    let origin = Instant::now();
    let history = Arc::new(std::sync::Mutex::new(Vec::<Op>::new()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut clients = Vec::new();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for c in 0..4usize {
        let (bases, history, http) = (bases.clone(), history.clone(), http.clone());
        let done = done.clone();
        clients.push(tokio::spawn(async move {
            let mut server = c % 3;
            // Until the faults below are over (at most 600 rounds).
            for n in 0..600usize {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                // Paced, so that the run spans the faults.
                tokio::time::sleep(Duration::from_millis(30)).await;
                let base = bases[server].clone();
                // An unrecorded probe first: while no server answers, the
                // client waits instead of piling up operations whose outcome
                // is unknown (each disruption leaves at most one per
                // client), which keeps the search over possible orders
                // small on a slow machine too.
                let probe = http
                    .get(format!("{base}/v1/kv/lin/x?consistent"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                if !matches!(&probe, Ok(r) if r.status() == 200 || r.status() == 404) {
                    server = (server + 1) % 3;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                let start = origin.elapsed().as_nanos();
                if (n + c) % 3 == 2 {
                    // Read (with its ModifyIndex), then check-and-set on it.
                    let r = http
                        .get(format!("{base}/v1/kv/lin/x?consistent"))
                        .send()
                        .await;
                    let (got, index) = match r {
                        // (A body cut off by a kill is no answer at all.)
                        Ok(r) if r.status() == 200 => {
                            match r.json::<serde_json::Value>().await.ok().and_then(|v| {
                                use base64::Engine;
                                let e = &v[0];
                                let b = base64::engine::general_purpose::STANDARD
                                    .decode(e["Value"].as_str()?)
                                    .ok()?;
                                Some((String::from_utf8(b).ok()?, e["ModifyIndex"].as_u64()?))
                            }) {
                                Some((value, index)) => (Some(Some(value)), index),
                                None => (None, 0),
                            }
                        }
                        Ok(r) if r.status() == 404 => (Some(None), 0),
                        _ => (None, 0),
                    };
                    let end = origin.elapsed().as_nanos();
                    let Some(seen) = got else {
                        server = (server + 1) % 3;
                        continue;
                    };
                    history.lock().unwrap().push(Op {
                        read: Some(seen.clone()),
                        start,
                        end: Some(end),
                        ..Default::default()
                    });
                    let v = format!("c{c}-{n}");
                    let start = origin.elapsed().as_nanos();
                    let r = http
                        .put(format!("{base}/v1/kv/lin/x?cas={index}"))
                        .body(v.clone())
                        .send()
                        .await;
                    let refused = matches!(&r, Err(e) if e.is_connect());
                    let answer = match r {
                        Ok(r) if r.status() == 200 => {
                            r.text().await.ok().map(|t| t.trim() == "true")
                        }
                        _ => None,
                    };
                    let end = origin.elapsed().as_nanos();
                    if !refused {
                        history.lock().unwrap().push(Op {
                            cas: Some((seen, v, answer.unwrap_or(false))),
                            start,
                            end: answer.map(|_| end),
                            ..Default::default()
                        });
                    }
                    if answer.is_none() {
                        server = (server + 1) % 3;
                    }
                } else if (n + c) % 3 == 0 {
                    let v = format!("c{c}-{n}");
                    let r = http
                        .put(format!("{base}/v1/kv/lin/x"))
                        .body(v.clone())
                        .send()
                        .await;
                    let ok = matches!(&r, Ok(r) if r.status() == 200);
                    let end = origin.elapsed().as_nanos();
                    // A refused connection never reached a server: the
                    // write did not happen (only other failures are
                    // uncertain).
                    if !matches!(&r, Err(e) if e.is_connect()) {
                        history.lock().unwrap().push(Op {
                            write: Some(v),
                            start,
                            end: ok.then_some(end),
                            ..Default::default()
                        });
                    }
                    if !ok {
                        server = (server + 1) % 3;
                    }
                } else {
                    let r = http
                        .get(format!("{base}/v1/kv/lin/x?consistent&raw"))
                        .send()
                        .await;
                    let got = match r {
                        Ok(r) if r.status() == 200 => r.text().await.ok().map(Some),
                        Ok(r) if r.status() == 404 => Some(None),
                        _ => None,
                    };
                    let end = origin.elapsed().as_nanos();
                    match got {
                        Some(v) => history.lock().unwrap().push(Op {
                            read: Some(v),
                            start,
                            end: Some(end),
                            ..Default::default()
                        }),
                        None => server = (server + 1) % 3,
                    }
                }
            }
        }));
    }
    // Faults while the clients run: the leader, then a follower, killed and
    // restarted from their data directories, or frozen and resumed.
    let mut kills = Vec::new();
    let mut leaders = Vec::new();
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let leader = agreed_leader(&[&s[0], &s[1], &s[2]]).await;
        leaders.push(leader.clone());
        let li = index_in(&on, &s, &leader);
        let victim = if round == 0 { li } else { (li + 1) % 3 };
        kills.push(origin.elapsed().as_nanos());
        if freeze {
            s[victim].signal("STOP");
            tokio::time::sleep(Duration::from_secs(3)).await;
            s[victim].signal("CONT");
        } else {
            s[victim].kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            s[victim] = server_on(&on, victim, &data).start().await;
            // (The restarted server answers on a new HTTP port: clients
            // that used it move on to the next server after their first
            // failure.)
        }
    }
    // The frozen leader was replaced while it was away (so it came back
    // deposed, the case that matters). (A killed one may win again after
    // its restart, at the same address.)
    if freeze {
        assert_ne!(leaders[0], leaders[1], "no new leader while it was frozen");
    }
    // Some more operations after the last restart, then stop.
    tokio::time::sleep(Duration::from_millis(700)).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let mut ops = history.lock().unwrap().clone();
    // The final value, read consistently once everything settled.
    let last = eventually(
        "a final consistent read",
        Duration::from_secs(20),
        || async {
            let r = meshgate_test_support::client()
                .get(s[0].url("/v1/kv/lin/x?consistent&raw"))
                .send()
                .await
                .ok()?;
            match r.status().as_u16() {
                200 => Some(Some(r.text().await.ok()?)),
                404 => Some(None),
                _ => None,
            }
        },
    )
    .await;
    let t = origin.elapsed().as_nanos();
    ops.push(Op {
        read: Some(last.clone()),
        start: t,
        end: Some(t + 1),
        ..Default::default()
    });
    let acked = ops
        .iter()
        .filter(|o| o.write.is_some() && o.end.is_some())
        .count();
    assert!(
        acked >= 20,
        "too few acknowledged writes to mean anything: {acked}"
    );
    assert!(ops.iter().filter(|o| o.read.is_some()).count() >= 20);
    let cas_ok = ops
        .iter()
        .filter(|o| matches!(o.cas, Some((_, _, true))) && o.end.is_some())
        .count();
    assert!(cas_ok >= 5, "too few successful check-and-sets: {cas_ok}");
    assert!(last.is_some(), "every acknowledged write vanished");
    assert!(
        linearizable(&ops),
        "the history of {} operations is not linearizable (servers {} at {:?} ms); the last operations of its shortest refused prefix:\n{}",
        ops.len(),
        if freeze { "frozen" } else { "killed" },
        kills.iter().map(|t| t / 1_000_000).collect::<Vec<_>>(),
        refused_prefix(&ops)
    );
}

/// An agent started before its servers does not give up (it used to exit
/// after the 15 s a write waits for a leader): as Consul's agents do, it
/// serves its API, keeps the services registered with it locally, and puts
/// itself and them in the catalog once a server is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_started_before_its_server_serves_and_joins_later() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let client = AgentBuilder::dev(BIN)
        .without_dev()
        .ip("127.0.0.112")
        .start_patience(Duration::from_secs(60))
        .args([
            "-node=early-client".to_string(),
            format!("-data-dir={}", d.join("c").display()),
            "-retry-join=127.0.0.111".into(),
        ])
        .start()
        .await;
    // No server anywhere: the agent's own endpoints answer, and a service
    // registered now is kept locally at once (no wait for a leader).
    let (st, me) = client.get_json("/v1/agent/self").await;
    assert_eq!(st, 200);
    assert_eq!(me["Config"]["NodeName"], "early-client");
    let t = std::time::Instant::now();
    let (st, b) = client
        .put(
            "/v1/agent/service/register",
            r#"{"Name": "early", "Port": 8080}"#,
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let (_, local) = client.get_json("/v1/agent/services").await;
    assert_eq!(local["early"]["Service"], "early", "{local}");
    let server = AgentBuilder::dev(BIN)
        .without_dev()
        .ip("127.0.0.111")
        .args([
            "-server".to_string(),
            "-bootstrap".into(),
            "-node=late-server".into(),
            format!("-data-dir={}", d.join("s").display()),
        ])
        .start()
        .await;
    eventually(
        "early-client and its service in the server's catalog",
        Duration::from_secs(60),
        || async {
            let (_, v) = server.get_json("/v1/catalog/service/early").await;
            (v.as_array()?.first()?["Node"] == "early-client").then_some(())
        },
    )
    .await;
    client
        .wait_log("joined the catalog after", Duration::from_secs(10))
        .await;
}

/// Client agents (no `-server`): they follow the servers' log, serve the
/// whole API locally, keep their own services in the catalog, and the leader
/// marks them failed within seconds of their heartbeats stopping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_agents_serve_sync_and_are_watched() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = AgentBuilder::dev(BIN)
        .without_dev()
        .ip("127.0.0.61")
        .args([
            "-server".to_string(),
            "-bootstrap".into(),
            "-node=server-1".into(),
            format!("-data-dir={}", d.join("s1").display()),
        ])
        .start()
        .await;
    let client = |i: usize| {
        AgentBuilder::dev(BIN)
            .without_dev()
            .ip(["127.0.0.62", "127.0.0.63"][i])
            .args([
                format!("-node=client-{}", i + 1),
                format!("-data-dir={}", d.join(format!("c{i}")).display()),
                "-retry-join=127.0.0.61".into(),
            ])
    };
    let (c1, c2) = tokio::join!(client(0).start(), client(1).start());
    let mut c2 = c2;
    // A service registered with a client agent reaches the catalog.
    let (st, b) = c1
        .put(
            "/v1/agent/service/register",
            r#"{"Name": "web", "Port": 8080}"#,
        )
        .await;
    assert_eq!(st, 200, "{b}");
    eventually(
        "web in the servers' catalog",
        Duration::from_secs(10),
        || async {
            let (_, v) = server.get_json("/v1/catalog/service/web").await;
            (v.as_array()?.first()?["Node"] == "client-1").then_some(())
        },
    )
    .await;
    // Removed behind the agent's back, anti-entropy puts it back.
    let (st, _) = server
        .put(
            "/v1/catalog/deregister",
            r#"{"Node": "client-1", "ServiceID": "web"}"#,
        )
        .await;
    assert_eq!(st, 200);
    eventually(
        "anti-entropy restores web",
        Duration::from_secs(30),
        || async {
            let (_, v) = server.get_json("/v1/catalog/service/web").await;
            (!v.as_array()?.is_empty()).then_some(())
        },
    )
    .await;
    // Writes through a client reach everyone; reads are served locally.
    put_kv(&c2, "from-client", "yes").await;
    wait_kv(&c1, "from-client", "yes").await;
    wait_kv(&server, "from-client", "yes").await;
    // Members: the server and both clients, alive.
    let (code, out, err) = meshgate_test_support::cli(BIN, &c1, &["members"], None);
    assert_eq!(code, 0, "{err}");
    for (n, t) in [
        ("server-1", "server"),
        ("client-1", "client"),
        ("client-2", "client"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(n) && l.contains(" alive ") && l.contains(t)),
            "{out}"
        );
    }
    // The WAN pool (`?wan=1`, `members -wan`): on a server, the servers
    // under their WAN names (`node.dc`, the serf WAN port); a client agent
    // has none (`null`, as Consul's).
    let (_, wan) = server.get_json("/v1/agent/members?wan=1").await;
    let names: Vec<_> = wan
        .as_array()
        .unwrap_or_else(|| panic!("{wan}"))
        .iter()
        .map(|m| (m["Name"].as_str().unwrap_or_default(), m["Port"].as_u64()))
        .collect();
    assert_eq!(names, [("server-1.dc1", Some(8302))], "{wan}");
    let (_, none) = c1.get_json("/v1/agent/members?wan=1").await;
    assert_eq!(none, serde_json::Value::Null);
    let (st, _) = server
        .get_json("/v1/agent/members?wan=1&segment=alpha")
        .await;
    assert_eq!(st, 400);
    let (code, out, err) = meshgate_test_support::cli(BIN, &server, &["members", "-wan"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("server-1.dc1 ")), "{out}");
    // A client dies: its serfHealth goes critical within the failure window.
    c2.kill();
    let serf = |a: &Agent| {
        let url = a.url("/v1/health/node/client-2");
        async move {
            let v: serde_json::Value = meshgate_test_support::client()
                .get(url)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v.as_array()?
                .iter()
                .find(|c| c["CheckID"] == "serfHealth")
                .map(|c| c["Status"].as_str().unwrap_or("").to_string())
        }
    };
    eventually(
        "client-2 marked critical",
        Duration::from_secs(20),
        || async { (serf(&server).await? == "critical").then_some(()) },
    )
    .await;
    let (_, out, _) = meshgate_test_support::cli(BIN, &server, &["members"], None);
    assert!(
        out.lines()
            .any(|l| l.starts_with("client-2") && l.contains(" failed ")),
        "{out}"
    );
    // Back again: passing.
    c2 = client(1).start().await;
    eventually("client-2 alive again", Duration::from_secs(20), || async {
        (serf(&server).await? == "passing").then_some(())
    })
    .await;
    wait_kv(&c2, "from-client", "yes").await;
    // `leave`: the agent leaves the cluster and the catalog, and stops.
    let mut c1 = c1;
    let (code, _, err) = meshgate_test_support::cli(BIN, &c1, &["leave"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        c1.wait_exit(Duration::from_secs(20)).is_some(),
        "client-1 still runs"
    );
    // `force-leave -wan` on a client: it has no WAN pool (Consul's words).
    let (code, _, err) =
        meshgate_test_support::cli(BIN, &c2, &["force-leave", "-wan", "server-1.dc1"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("Must be a server to force-leave a node from the WAN"),
        "{err}"
    );
    // `force-leave` for a dead one.
    c2.kill();
    let (code, _, err) =
        meshgate_test_support::cli(BIN, &server, &["force-leave", "client-2"], None);
    assert_eq!(code, 0, "{err}");
    eventually(
        "both clients out of the catalog",
        Duration::from_secs(20),
        || async {
            let (_, nodes) = server.get_json("/v1/catalog/nodes").await;
            let names: Vec<String> = nodes
                .as_array()?
                .iter()
                .filter_map(|n| n["Node"].as_str().map(str::to_string))
                .collect();
            (names == ["server-1"]).then_some(())
        },
    )
    .await;
    let (_, out, _) = meshgate_test_support::cli(BIN, &server, &["members"], None);
    assert!(!out.contains("client-"), "{out}");
    // The cluster still takes writes (nobody waits for the departed).
    put_kv(&server, "after-leave", "ok").await;
    // A client that left joins again when it starts, and a SIGTERM makes it
    // leave again (`leave_on_terminate`, true by default for client agents
    // as in Consul; servers stay members when stopped).
    let catalog_nodes = || async {
        let (_, nodes) = server.get_json("/v1/catalog/nodes").await;
        nodes
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|n| n["Node"].as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let mut c1 = client(0).start().await;
    eventually("client-1 joined again", Duration::from_secs(30), || async {
        (catalog_nodes().await == ["client-1", "server-1"]).then_some(())
    })
    .await;
    let status = c1.terminate().expect("client-1 stops on SIGTERM");
    assert!(status.success());
    eventually(
        "client-1 left on SIGTERM",
        Duration::from_secs(20),
        || async { (catalog_nodes().await == ["server-1"]).then_some(()) },
    )
    .await;
    let (_, out, _) = meshgate_test_support::cli(BIN, &server, &["members"], None);
    assert!(!out.contains("client-1"), "{out}");
}

/// Session TTLs are kept by the leader, as in Consul: a session created
/// through a client agent lives on while it is renewed through the server,
/// and while it is renewed through the client (which sends the renewal to the
/// leader), and one whose creating agent is gone still runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ttls_are_kept_by_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = AgentBuilder::dev(BIN)
        .without_dev()
        .ip("127.0.0.113")
        .args([
            "-server".to_string(),
            "-bootstrap".into(),
            "-node=ttl-server".into(),
            format!("-data-dir={}", d.join("s").display()),
            "-hcl".into(),
            "session_ttl_min = \"1s\"".into(),
            // The leader creates the configuration's bootstrap entries.
            "-hcl".into(),
            "config_entries { bootstrap = [{ kind = \"service-defaults\", name = \"boot-db\", protocol = \"postgres\" }] }".into(),
        ])
        .start()
        .await;
    let mut client = AgentBuilder::dev(BIN)
        .without_dev()
        .ip("127.0.0.114")
        .args([
            "-node=ttl-client".to_string(),
            format!("-data-dir={}", d.join("c").display()),
            "-retry-join=127.0.0.113".into(),
            "-hcl".into(),
            "session_ttl_min = \"1s\"".into(),
        ])
        .start()
        .await;
    eventually(
        "ttl-client in the catalog",
        Duration::from_secs(30),
        || async {
            let (st, _) = client.get_json("/v1/catalog/node/ttl-client").await;
            (st == 200).then_some(())
        },
    )
    .await;
    eventually(
        "the leader's bootstrap entry, read through the client",
        Duration::from_secs(30),
        || async {
            let (st, v) = client.get_json("/v1/config/service-defaults/boot-db").await;
            (st == 200 && v["Protocol"] == "postgres").then_some(())
        },
    )
    .await;
    let create = |name: &'static str, ttl: &'static str| {
        let client = &client;
        async move {
            let body = format!(r#"{{"Name":"{name}","TTL":"{ttl}","NodeChecks":[]}}"#);
            let (st, b) = client.put("/v1/session/create", body).await;
            assert_eq!(st, 200, "{b}");
            let v: serde_json::Value = serde_json::from_str(&b).unwrap();
            v["ID"].as_str().unwrap().to_string()
        }
    };
    let held = create("held", "2s").await;
    // Renewed for 6 s only through the server, then 6 s only through the
    // client: each phase outlasts the 4 s a 2 s TTL allows without renewal.
    for via in [&server, &client] {
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(6) {
            let (st, b) = via.put(&format!("/v1/session/renew/{held}"), "").await;
            assert_eq!(st, 200, "{b}");
            assert!(b.contains(&held), "{b}");
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    }
    let (_, v) = server.get_json(&format!("/v1/session/info/{held}")).await;
    assert_eq!(
        v[0]["ID"],
        held.as_str(),
        "a renewed session was invalidated: {v}"
    );
    // No more renewals, and the agent that created both sessions is gone:
    // the leader invalidates them.
    let orphan = create("orphan", "1s").await;
    let (_, v) = server.get_json(&format!("/v1/session/info/{orphan}")).await;
    assert_eq!(v[0]["ID"], orphan.as_str(), "{v}");
    client.kill();
    let t = std::time::Instant::now();
    eventually(
        "both sessions invalidated by the leader",
        Duration::from_secs(30),
        || async {
            let (_, v) = server.get_json("/v1/session/list").await;
            v.as_array()?.is_empty().then_some(())
        },
    )
    .await;
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    server
        .wait_log("Session TTL expired", Duration::from_secs(10))
        .await;
}

/// `retry_interval` / `retry_max`: a client agent that reaches none of its
/// servers tries once and `retry_max` more times, `retry_interval` apart,
/// then exits with Consul's error (code 1).
#[test]
fn join_retries_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.117";
    let server_port = meshgate_test_support::free_port(ip);
    // A port where nothing listens, on another loopback "host".
    let nobody = format!(
        "127.0.0.118:{}",
        meshgate_test_support::free_port("127.0.0.118")
    );
    let started = std::time::Instant::now();
    let (code, out) = AgentBuilder::dev(BIN)
        .without_dev()
        .ip(ip)
        .args([
            "-node=lonely".to_string(),
            format!("-data-dir={}", dir.path().display()),
            format!("-bind={ip}"),
            format!("-server-port={server_port}"),
            format!("-retry-join={nobody}"),
            "-retry-interval=1s".into(),
            "-retry-max=2".into(),
        ])
        .start_failure();
    let took = started.elapsed();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Retry join failed: agent: max join LAN retry exhausted, exiting"),
        "{out}"
    );
    assert_eq!(
        out.matches("Join cluster failed, will retry").count(),
        2,
        "one warning per failed attempt but the last: {out}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "two intervals of 1 s: {took:?}"
    );
    assert!(
        took < Duration::from_secs(12),
        "it exits once it gives up, not after the 15 s it waits for a leader: {took:?}"
    );

    // Cloud auto-join strings (go-discover) are refused at once, not retried
    // for ever as if they were addresses.
    let (code, out) = AgentBuilder::dev(BIN)
        .without_dev()
        .ip(ip)
        .args([
            "-node=cloudy".to_string(),
            format!("-data-dir={}", dir.path().display()),
            format!("-bind={ip}"),
            "-retry-join=provider=aws tag_key=consul tag_value=server".into(),
        ])
        .start_failure();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("cloud auto-join (go-discover \"provider=...\") is not supported"),
        "{out}"
    );
}

/// `meshgate join` (`PUT /v1/agent/join/:address`): a server started
/// without servers to join (it waits for a second one) joins a running
/// cluster through the address given at run time; errors as Consul words
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_at_run_time() {
    use meshgate_test_support::cli;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A: a cluster of one. B: a server expecting two, told of nobody (its
    // API answers once its start stops waiting for a leader, 15 s).
    let a = AgentBuilder::dev(BIN)
        .without_dev()
        .ip("127.0.0.125")
        .args([
            "-server",
            "-bootstrap-expect=1",
            "-node=join-a",
            &format!("-data-dir={}", d.join("a").display()),
        ])
        .start()
        .await;
    let b = AgentBuilder::dev(BIN)
        .without_dev()
        .ip("127.0.0.126")
        .start_patience(Duration::from_secs(60))
        .args([
            "-server",
            "-bootstrap-expect=2",
            "-node=join-b",
            &format!("-data-dir={}", d.join("b").display()),
        ])
        .start()
        .await;
    assert_eq!(leader_of(&b).await, "", "B has no cluster yet");
    // Errors first: nobody there, no address, WAN.
    let (code, out, err) = cli(BIN, &b, &["join", "127.0.0.125:1"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("Error joining address '127.0.0.125:1': Unexpected response code: 500 (Failed to join 127.0.0.125:1:"),
        "{err}"
    );
    assert!(err.contains("Failed to join any nodes."), "{err}");
    let (code, _, err) = cli(BIN, &b, &["join"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("At least one address to join must be specified."),
        "{err}"
    );
    let (code, _, err) = cli(BIN, &b, &["join", "-wan", "127.0.0.125"], None);
    assert_eq!(code, 1);
    assert!(err.contains("WAN join is not supported"), "{err}");
    // Through A's address (the default server port).
    let (code, out, err) = cli(BIN, &b, &["join", "127.0.0.125"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Successfully joined cluster by contacting 1 nodes.\n");
    let peers = eventually(
        "B is a voter of A's cluster",
        Duration::from_secs(20),
        || async {
            let (_, v) = a.get_json("/v1/status/peers").await;
            (v.as_array().map(Vec::len) == Some(2)).then_some(v)
        },
    )
    .await;
    assert!(peers.to_string().contains("127.0.0.126:8300"), "{peers}");
    assert_eq!(agreed_leader(&[&a, &b]).await, "127.0.0.125:8300");
    // B's own write reaches the leader's copy.
    let (st, _) = b.put("/v1/kv/joined", "yes").await;
    assert_eq!(st, 200);
    let (st, v) = a.get_json("/v1/kv/joined").await;
    assert_eq!(st, 200, "{v}");
    // Joining again (a member, its own cluster) changes nothing.
    let (code, out, _) = cli(BIN, &a, &["join", "127.0.0.126"], None);
    assert_eq!(
        (code, out.as_str()),
        (0, "Successfully joined cluster by contacting 1 nodes.\n")
    );
    // A -dev agent has no cluster to join.
    let dev = crate::dev().await;
    let (code, _, err) = cli(BIN, &dev, &["join", "127.0.0.125"], None);
    assert_eq!(code, 1);
    assert!(err.contains("it has no cluster to join"), "{err}");
}

/// `meshgate tls ca create` / `tls cert create`: Consul's files and names;
/// a server and a client agent talk over mutual TLS with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_use_certificates_from_meshgate_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tls = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("tls")
            .args(args)
            .current_dir(d)
            .output()
            .expect("meshgate tls");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = tls(&["ca", "create"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n"
    );
    // Never over an existing CA.
    let (code, _, err) = tls(&["ca", "create"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("CA file consul-agent-ca.pem already exists"),
        "{err}"
    );
    let (code, out, err) = tls(&["cert", "create", "-server", "-node", "tls-s1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("==> Saved dc1-server-consul-0.pem\n==> Saved dc1-server-consul-0-key.pem\n"),
        "{out}"
    );
    let (code, out, err) = tls(&["cert", "create", "-client"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("==> Saved dc1-client-consul-0.pem"), "{out}");
    let (code, _, err) = tls(&["cert", "create"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Please provide either -server, -client, or -cli"),
        "{err}"
    );
    // Names as Consul puts them, checked by OpenSSL; keys private.
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(d.join("dc1-server-consul-0.pem"))
        .output()
        .expect("openssl (apt-get install openssl)");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("DNS:server.dc1.consul, DNS:localhost, DNS:tls-s1.server.dc1.consul, IP Address:127.0.0.1"),
        "{text}"
    );
    let verify = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(d.join("consul-agent-ca.pem"))
        .arg(d.join("dc1-server-consul-0.pem"))
        .arg(d.join("dc1-client-consul-0.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("consul-agent-ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A CA made elsewhere (OpenSSL, as Consul writes it: a SEC1 `EC
    // PRIVATE KEY`) signs too.
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "other-ca-key.pem",
    ]);
    assert!(
        std::fs::read_to_string(d.join("other-ca-key.pem"))
            .unwrap()
            .starts_with("-----BEGIN EC PRIVATE KEY-----")
    );
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "other-ca-key.pem",
        "-subj",
        "/CN=Other CA",
        "-days",
        "30",
        "-out",
        "other-ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]);
    let (code, out, err) = tls(&[
        "cert",
        "create",
        "-client",
        "-dc",
        "dc9",
        "-ca",
        "other-ca.pem",
        "-key",
        "other-ca-key.pem",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("==> Saved dc9-client-consul-0.pem"), "{out}");
    openssl(&[
        "verify",
        "-CAfile",
        "other-ca.pem",
        "dc9-client-consul-0.pem",
    ]);
    // A key that is not the CA's is refused.
    let (code, _, err) = tls(&[
        "cert",
        "create",
        "-client",
        "-ca",
        "other-ca.pem",
        "-key",
        "consul-agent-ca-key.pem",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("does not match"), "{err}");

    // A server and a client agent over mutual TLS with these files.
    let conf = |cert: &str| {
        format!(
            "tls {{\n  defaults {{\n    ca_file = \"{}\"\n    cert_file = \"{}\"\n    key_file = \"{}\"\n  }}\n  internal_rpc {{ tls_min_version = \"TLSv1_3\" }}\n}}\n",
            d.join("consul-agent-ca.pem").display(),
            d.join(format!("{cert}.pem")).display(),
            d.join(format!("{cert}-key.pem")).display()
        )
    };
    let server = AgentBuilder::dev(BIN)
        .without_dev()
        .ip("127.0.0.127")
        .config_file("tls.hcl", &conf("dc1-server-consul-0"))
        .args([
            "-server".to_string(),
            "-bootstrap".into(),
            "-node=tls-s1".into(),
            format!("-data-dir={}", d.join("s1").display()),
        ])
        .start()
        .await;
    let _client = AgentBuilder::dev(BIN)
        .without_dev()
        .ip("127.0.0.128")
        .config_file("tls.hcl", &conf("dc1-client-consul-0"))
        .args([
            "-node=tls-c1".to_string(),
            format!("-data-dir={}", d.join("c1").display()),
            "-retry-join=127.0.0.127".into(),
        ])
        .start()
        .await;
    eventually(
        "the client agent in the catalog",
        Duration::from_secs(30),
        || async {
            let (_, v) = server.get_json("/v1/catalog/nodes").await;
            v.to_string().contains("tls-c1").then_some(())
        },
    )
    .await;
    // (The server port spoke TLS: no warning about plain traffic.)
    assert!(
        !server.log().contains("unauthenticated"),
        "{}",
        server.log()
    );
    // Only TLS 1.3 there (`tls.internal_rpc.tls_min_version`): OpenSSL's
    // client limited to 1.2 is told the version is refused.
    let (_, me) = server.get_json("/v1/agent/self").await;
    let port = me["Member"]["Tags"]["port"].as_str().unwrap().to_string();
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.127:{port}"),
            "-tls1_2",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("alert protocol version"),
        "{text}"
    );
    // Consul's gauge of the agent certificate's remaining life (365 days).
    let (_, m) = server.get_json("/v1/agent/metrics").await;
    let g = crate::metric(
        &m,
        "Gauges",
        &crate::host_gauge("consul.agent.tls.cert.expiry"),
    )
    .unwrap_or_else(|| panic!("the certificate expiry gauge: {m}"));
    let secs = g["Value"].as_f64().unwrap();
    assert!(
        (364.0 * 86400.0..=365.0 * 86400.0).contains(&secs),
        "{secs}"
    );
}

/// `/v1/status/leader` and `/v1/status/peers` name a server by its
/// advertised address (what the other servers dial; the bind address may be
/// 0.0.0.0), which is what `/v1/agent/self` gives as `Member.Addr` and
/// `Member.Tags.port`: monitoring (Datadog's Consul check) compares the two
/// to tell whether it runs on the leader.
#[tokio::test]
async fn status_names_servers_by_their_advertised_address() {
    let dir = tempfile::tempdir().unwrap();
    let a = AgentBuilder::dev(BIN)
        .without_dev()
        .ip("127.0.0.131")
        .args([
            "-server".to_string(),
            "-bootstrap".into(),
            "-advertise=127.0.0.132".into(),
            format!("-data-dir={}", dir.path().display()),
        ])
        .start()
        .await;
    let leader = eventually("a leader", Duration::from_secs(15), || async {
        let l = leader_of(&a).await;
        (!l.is_empty()).then_some(l)
    })
    .await;
    let (_, me) = a.get_json("/v1/agent/self").await;
    let member = format!(
        "{}:{}",
        me["Member"]["Addr"].as_str().unwrap_or_default(),
        me["Member"]["Tags"]["port"].as_str().unwrap_or_default()
    );
    assert_eq!(leader, member, "{me}");
    assert!(leader.starts_with("127.0.0.132:"), "{leader}");
    let (_, peers) = a.get_json("/v1/status/peers").await;
    assert_eq!(peers, serde_json::json!([leader]));
}

/// A server waiting for the others (`-bootstrap-expect=3`, alone) answers
/// its API at once, as Consul's does: its own endpoints, `""` as the leader,
/// `No cluster leader` for catalog reads; it says it runs (and tells
/// systemd) only once it has a leader or stopped waiting for one (15 s).
/// The services of its config files are listed by its own endpoints from the
/// start.
#[tokio::test]
async fn a_lone_server_answers_while_it_waits_for_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.0.133";
    let port = meshgate_test_support::free_port(ip).to_string();
    let data = format!("-data-dir={}", dir.path().join("data").display());
    let svc_file = dir.path().join("web.hcl");
    std::fs::write(
        &svc_file,
        r#"service { name = "web", port = 8080, check { ttl = "30s" } }"#,
    )
    .unwrap();
    let config = format!("-config-file={}", svc_file.display());
    let mut p = meshgate_test_support::Proc::spawn(
        "lone-server",
        BIN,
        &[
            "agent",
            "-server",
            "-bootstrap-expect=3",
            "-node=lone",
            &data,
            "-bind",
            ip,
            "-client",
            ip,
            "-http-port",
            &port,
            "-dns-port",
            "-1",
            "-retry-join=127.0.0.134",
            &config,
        ],
        &[],
    );
    let base = format!("http://{ip}:{port}");
    let http = meshgate_test_support::client();
    let me = eventually("the API answers", Duration::from_secs(10), || async {
        let r = http
            .get(format!("{base}/v1/agent/self"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())?;
        r.json::<serde_json::Value>().await.ok()
    })
    .await;
    assert_eq!(me["Config"]["NodeName"], "lone", "{me}");
    assert!(!p.log().contains("meshgate agent running"), "{}", p.log());
    let own = |path: &'static str| {
        let r = http.get(format!("{base}{path}")).send();
        async move { r.await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let services = own("/v1/agent/services").await;
    assert_eq!(services["web"]["Port"], 8080, "{services}");
    let checks = own("/v1/agent/checks").await;
    assert_eq!(checks["service:web"]["Status"], "critical", "{checks}");
    let r = http
        .get(format!("{base}/v1/status/leader"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "\"\"");
    let r = http
        .get(format!("{base}/v1/catalog/nodes"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("No cluster leader"));
    // After 15 s without a leader it says it runs and keeps waiting.
    p.wait_log("meshgate agent running", Duration::from_secs(30));
    p.sigterm();
    assert!(p.wait_exit(Duration::from_secs(10)).is_some());
}
