//! Agent start-up: configuration files, flags, errors, signals.

use std::time::Duration;

use meshgate_test_support::AgentBuilder;
use serde_json::json;

use crate::{BIN, dev_builder};

#[tokio::test]
async fn config_files_in_hcl_and_json() {
    let a = dev_builder()
        .config_file(
            "agent.hcl",
            r#"
datacenter = "east"
node_meta { rack = "r1" }
performance { raft_multiplier = 1 }   # accepted, no effect
ports { grpc_tls = -1 }
service {
  name = "from-config"
  port = 7000
}
"#,
        )
        .config_file(
            "more.json",
            r#"{"services": [{"name": "also-config", "port": 7001}]}"#,
        )
        .start()
        .await;
    let (_, dcs) = a.get_json("/v1/catalog/datacenters").await;
    assert_eq!(dcs, json!(["east"]));
    let (_, node) = a.get_json("/v1/catalog/node/test-node").await;
    assert_eq!(node["Node"]["Meta"]["rack"], "r1");
    // Next to the configured meta, Consul's own: the version it speaks.
    let (_, me) = a.get_json("/v1/agent/self").await;
    assert_eq!(
        node["Node"]["Meta"]["consul-version"], me["Config"]["Version"],
        "{node}"
    );
    let (_, by_version) = a
        .get_json(&format!(
            "/v1/catalog/nodes?node-meta=consul-version:{}",
            me["Config"]["Version"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(by_version.as_array().map(Vec::len), Some(1), "{by_version}");
    let (_, svcs) = a.get_json("/v1/agent/services").await;
    assert_eq!(svcs["from-config"]["Port"], 7000);
    assert_eq!(svcs["also-config"]["Port"], 7001);
    let log = a.log();
    assert!(
        log.contains("performance.raft_multiplier\" is accepted but has no effect"),
        "{log}"
    );
    assert!(log.contains("meshgate agent running"), "{log}");
}

#[test]
fn unknown_keys_and_bad_values_fail_at_start() {
    let (code, out) = dev_builder()
        .config_file("bad.hcl", "datacenter = \"dc1\"\nbogus_key = 1\n")
        .start_failure();
    assert_eq!(code, 1);
    assert!(
        out.contains("bad.hcl: invalid config key bogus_key"),
        "{out}"
    );
    let (code, out) = dev_builder()
        .config_file("bad.json", r#"{"ports": {"http": "eighty"}}"#)
        .start_failure();
    assert_eq!(code, 1);
    assert!(out.contains("bad.json: ports.http: invalid value"), "{out}");
    let (code, out) = dev_builder()
        .config_file("syntax.hcl", "datacenter = \n")
        .start_failure();
    assert_eq!(code, 1);
    assert!(out.contains("syntax.hcl"), "{out}");
    let (code, out) = dev_builder()
        .args(["-datacenter", "Bad DC"])
        .start_failure();
    assert_eq!(code, 1);
    assert!(out.contains("datacenter"), "{out}");
}

#[test]
fn servers_need_a_data_dir_and_loopback_without_credentials() {
    let (code, out) = AgentBuilder::dev(BIN).without_dev().start_failure();
    assert_eq!(code, 1);
    assert!(
        out.contains("a client agent needs servers to join"),
        "{out}"
    );
    let (code, out) = AgentBuilder::dev(BIN)
        .without_dev()
        .args(["-server"])
        .start_failure();
    assert_eq!(code, 1);
    assert!(out.contains("data_dir is required"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = AgentBuilder::dev(BIN)
        .without_dev()
        .args(["-server", "-data-dir", &dir.path().display().to_string()])
        .start_failure();
    assert_eq!(code, 1);
    assert!(
        out.contains("refusing to bind cluster traffic to 0.0.0.0"),
        "{out}"
    );
    assert!(out.contains("without mutual TLS"), "{out}");
}

#[tokio::test]
async fn node_name_defaults_to_hostname_and_sigterm_stops_cleanly() {
    let mut a = AgentBuilder::dev(BIN).start().await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .split('.')
        .next()
        .unwrap()
        .to_string();
    let (_, s) = a.get_json("/v1/agent/self").await;
    assert_eq!(s["Config"]["NodeName"], host.as_str());
    let started = std::time::Instant::now();
    let status = a.terminate().expect("agent exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        a.log().contains("Graceful shutdown complete"),
        "{}",
        a.log()
    );
}

/// SIGTERM while the agent starts (here a server waiting for the other two
/// of `bootstrap_expect = 3`, which can take 15 s) stops it at once and
/// cleanly: it used to be caught only once the start was over, and before
/// the handler was in place it ended the process with the signal.
#[test]
fn sigterm_during_the_start_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pid = dir.path().join("agent.pid");
    let mut p = meshgate_test_support::Proc::spawn(
        "server",
        BIN,
        &[
            "agent",
            "-server",
            "-bootstrap-expect",
            "3",
            "-node",
            "s1",
            "-bind",
            "127.0.0.121",
            "-client",
            "127.0.0.121",
            "-http-port",
            &meshgate_test_support::free_port("127.0.0.121").to_string(),
            "-dns-port",
            "-1",
            "-data-dir",
            data.to_str().unwrap(),
            "-pid-file",
            pid.to_str().unwrap(),
        ],
        &[("NO_COLOR", "1")],
    );
    p.wait_log(
        "waiting for servers to form a cluster",
        Duration::from_secs(10),
    );
    let started = std::time::Instant::now();
    p.sigterm();
    let status = p
        .wait_exit(Duration::from_secs(5))
        .expect("the agent stops within 5 s of SIGTERM");
    assert!(status.success(), "{status:?}\n{}", p.log());
    assert!(started.elapsed() < Duration::from_secs(5));
    let log = p.log();
    assert!(
        log.contains("Caught signal: terminate while starting, stopping"),
        "{log}"
    );
    assert!(!log.contains("meshgate agent running"), "{log}");
    assert!(!pid.exists(), "the PID file is left behind");
}

/// A raw HTTP/1.1 connection to `to` from the loopback address `from` (a
/// client host of its own).
async fn connect_from(from: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

/// Sends `GET /v1/status/leader` on a keep-alive connection and returns the
/// answer's status line, or what went wrong.
async fn status_line(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = "GET /v1/status/leader HTTP/1.1\r\nHost: agent\r\n\r\n";
    if let Err(e) = s.write_all(req.as_bytes()).await {
        return format!("write: {e}");
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return head.lines().next().unwrap_or("").to_string();
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) => return format!("closed after {text:?}"),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return format!("read: {e}"),
            Err(_) => return format!("no answer after {text:?}"),
        }
    }
}

/// Everything the agent sends on a connection until it closes it.
async fn read_until_closed(mut s: tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the agent closes the connection")
        .expect("read");
    String::from_utf8_lossy(&got).to_string()
}

#[tokio::test]
async fn http_connections_per_client_address_are_limited() {
    let a = dev_builder()
        .config_file("limits.hcl", "limits { http_max_conns_per_client = 3 }\n")
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect_from("127.0.0.2", a.addr).await;
        assert_eq!(status_line(&mut c).await, "HTTP/1.1 200 OK");
        held.push(c);
    }
    // A fourth from the same address gets Consul's answer and is closed.
    let refused = read_until_closed(connect_from("127.0.0.2", a.addr).await).await;
    assert_eq!(
        refused,
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 81\r\n\
         Connection: close\r\n\r\nYour IP is issuing too many concurrent connections, please \
         rate limit your calls\n"
    );
    // The refusal is logged.
    a.wait_log("HTTP connection refused", Duration::from_secs(10))
        .await;
    // Those already open go on working; another address has its own count;
    // the agent's own host (127.0.0.1 to 127.0.0.1) is not counted.
    for c in &mut held {
        assert_eq!(status_line(c).await, "HTTP/1.1 200 OK");
    }
    let mut other = connect_from("127.0.0.3", a.addr).await;
    assert_eq!(status_line(&mut other).await, "HTTP/1.1 200 OK");
    let mut local = Vec::new();
    for _ in 0..10 {
        let mut c = connect_from("127.0.0.1", a.addr).await;
        assert_eq!(status_line(&mut c).await, "HTTP/1.1 200 OK");
        local.push(c);
    }
    // A closed connection gives its place back.
    drop(held.pop());
    let mut back = None;
    for _ in 0..100 {
        let mut c = connect_from("127.0.0.2", a.addr).await;
        if status_line(&mut c).await == "HTTP/1.1 200 OK" {
            back = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    held.push(back.expect("a place comes free when a connection closes"));
    // `reload` changes the limit for new connections.
    std::fs::write(
        a.dir().join("limits.hcl"),
        "limits { http_max_conns_per_client = 5 }\n",
    )
    .unwrap();
    let (st, body) = a.put("/v1/agent/reload", "").await;
    assert_eq!(st, 200, "{body}");
    for _ in 0..2 {
        let mut c = connect_from("127.0.0.2", a.addr).await;
        assert_eq!(status_line(&mut c).await, "HTTP/1.1 200 OK");
        held.push(c);
    }
    let refused = read_until_closed(connect_from("127.0.0.2", a.addr).await).await;
    assert!(refused.starts_with("HTTP/1.1 429 "), "{refused}");
}

/// Consul's API never closes an idle keep-alive connection; a client that
/// pools connections must not find its next request on a closing one.
#[tokio::test]
async fn an_idle_keep_alive_connection_stays_open() {
    let a = dev_builder().start().await;
    let mut c = connect_from("127.0.0.1", a.addr).await;
    assert_eq!(status_line(&mut c).await, "HTTP/1.1 200 OK");
    // hyper's default closes a connection after 30 s without a request head.
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(status_line(&mut c).await, "HTTP/1.1 200 OK");
}

/// `http_config`: headers on every answer, blocked endpoints, writes only
/// from `allow_write_http_from`; reloadable; a bad CIDR stops the start.
#[tokio::test]
async fn http_config_headers_blocked_endpoints_and_write_networks() {
    let config = r#"
http_config {
  response_headers {
    "Access-Control-Allow-Origin" = "*"
  }
  block_endpoints = ["/v1/agent/self", "/v1/acl"]
  allow_write_http_from = ["127.0.0.2/32"]
}
"#;
    let a = dev_builder()
        .config_file("http.hcl", config)
        .args(["-ui"])
        .start()
        .await;
    // The writer: a client on 127.0.0.2.
    let writer = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();

    for path in ["/v1/agent/self", "/v1/agent/s%65lf", "/v1/acl/tokens"] {
        let r = a.http.get(a.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert_eq!(
            r.text().await.unwrap(),
            "Endpoint is blocked by agent configuration"
        );
    }
    // Every other answer carries the configured header: reads, errors, the UI.
    for path in [
        "/v1/status/leader",
        "/v1/kv/missing",
        "/v1/agent/services",
        "/ui/",
    ] {
        let r = a.http.get(a.url(path)).send().await.unwrap();
        assert_ne!(r.status(), 403, "{path}");
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
    }
    // A write from 127.0.0.1 is refused and changes nothing; from 127.0.0.2
    // it goes through. Reads are open to everyone.
    let (st, body) = a.put("/v1/kv/k", "v").await;
    assert_eq!((st, body.as_str()), (403, "Access is restricted"));
    let (st, _) = a.get_json("/v1/kv/k").await;
    assert_eq!(st, 404, "the refused write changed nothing");
    let r = writer
        .put(a.url("/v1/kv/k"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, _) = a.get_json("/v1/kv/k").await;
    assert_eq!(st, 200);

    // Reload (itself a write: from 127.0.0.2) lifts both restrictions.
    std::fs::write(
        a.dir().join("http.hcl"),
        "http_config { response_headers { \"X-Frame-Options\" = \"DENY\" } }\n",
    )
    .unwrap();
    let (st, _) = a.put("/v1/agent/reload", "").await;
    assert_eq!(st, 403, "reload is a write too");
    let r = writer.put(a.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (st, _) = a.put("/v1/kv/k", "w").await;
    assert_eq!(st, 200);
    let r = a.http.get(a.url("/v1/agent/self")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let (code, out) = dev_builder()
        .config_file(
            "bad.hcl",
            "http_config { allow_write_http_from = [\"10.0.0.1\"] }\n",
        )
        .start_failure();
    assert_eq!(code, 1);
    assert!(
        out.contains("allow_write_http_from: invalid cidr: 10.0.0.1"),
        "{out}"
    );
}

/// `pid_file` (written once the agent runs, removed when it stops),
/// `default_query_time` and `max_query_time` (a blocking read's default and
/// longest wait).
#[tokio::test]
async fn pid_file_and_query_times() {
    let dir = tempfile::tempdir().unwrap();
    let pid_path = dir.path().join("agent.pid");
    let mut a = dev_builder()
        .config_file(
            "agent.hcl",
            &format!(
                "pid_file = \"{}\"\ndefault_query_time = \"1s\"\nmax_query_time = \"2s\"\n",
                pid_path.display()
            ),
        )
        .start()
        .await;
    let written = std::fs::read_to_string(&pid_path).expect("pid file written");
    assert_eq!(written, a.pid().unwrap().to_string());

    let (st, _) = a.put("/v1/kv/q", "1").await;
    assert_eq!(st, 200);
    let r = a.http.get(a.url("/v1/kv/q")).send().await.unwrap();
    let index = crate::header(&r, "x-consul-index");
    // No `wait`: the default (1 s here, 5 min by default); a `wait` above
    // the maximum: the maximum (2 s here, 10 min by default).
    for (query, at_least) in [("", 0.9), ("&wait=1m", 1.9)] {
        let started = std::time::Instant::now();
        let r = a
            .http
            .get(a.url(&format!("/v1/kv/q?index={index}{query}")))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the blocking read ends at its wait, not after minutes");
        assert_eq!(r.status(), 200);
        let took = started.elapsed().as_secs_f64();
        assert!(took >= at_least, "{query}: answered after {took} s");
    }

    let status = a.terminate().expect("the agent stops on SIGTERM");
    assert!(status.success());
    assert!(!pid_path.exists(), "the pid file is removed at exit");

    refused("max_query_time = \"0s\"\n", "max_query_time: invalid value");
}

/// `config_entries.bootstrap`: entries from the agent configuration exist
/// when the API answers (HCL field names in any case, JSON too); a bad entry
/// stops the start naming it.
#[tokio::test]
async fn config_entries_bootstrap() {
    let a = dev_builder()
        .config_file(
            "entries.hcl",
            r#"
config_entries {
  bootstrap = [
    {
      kind     = "service-defaults"
      name     = "carbonio-files-db"
      protocol = "postgres"
    },
    {
      Kind = "proxy-defaults"
      Name = "global"
      Config {
        local_connect_timeout_ms = 2000
      }
    }
  ]
}
"#,
        )
        .config_file(
            "more.json",
            r#"{"config_entries": {"bootstrap": [{"Kind": "terminating-gateway", "Name": "carbonio-gateway", "Services": [{"Name": "carbonio-files-db"}]}]}}"#,
        )
        .start()
        .await;
    let (st, sd) = a
        .get_json("/v1/config/service-defaults/carbonio-files-db")
        .await;
    assert_eq!(st, 200, "{sd}");
    assert_eq!(sd["Protocol"], "postgres");
    let (st, pd) = a.get_json("/v1/config/proxy-defaults/global").await;
    assert_eq!(st, 200, "{pd}");
    assert_eq!(pd["Config"]["local_connect_timeout_ms"], 2000);
    let (st, gw) = a
        .get_json("/v1/config/terminating-gateway/carbonio-gateway")
        .await;
    assert_eq!(st, 200, "{gw}");
    assert_eq!(gw["Services"][0]["Name"], "carbonio-files-db");

    refused(
        "config_entries { bootstrap = [{ kind = \"service-defaults\", name = \"x\", protocol = 7 }] }\n",
        "config_entries.bootstrap[0]",
    );
}

/// `discard_check_output` (checks' output is not kept) and
/// `tagged_addresses` (the node's own, next to lan/wan).
#[tokio::test]
async fn discard_check_output_and_node_tagged_addresses() {
    let a = dev_builder()
        .config_file(
            "agent.hcl",
            "discard_check_output = true\ntagged_addresses { custom_lan = \"127.0.0.9\" }\n",
        )
        .start()
        .await;
    let (st, body) = a
        .put("/v1/agent/check/register", r#"{"Name": "t", "TTL": "30s"}"#)
        .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = a
        .put("/v1/agent/check/pass/t?note=changes%20every%20run", "")
        .await;
    assert_eq!(st, 200, "{body}");
    let (_, checks) = a.get_json("/v1/agent/checks").await;
    assert_eq!(checks["t"]["Status"], "passing");
    assert_eq!(checks["t"]["Output"], "");
    let (_, node_checks) = a.get_json("/v1/health/node/test-node").await;
    let t = node_checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "t")
        .cloned()
        .unwrap();
    assert_eq!(t["Status"], "passing");
    assert_eq!(t["Output"], "", "the catalog's copy too");

    let (_, node) = a.get_json("/v1/catalog/node/test-node").await;
    let tagged = &node["Node"]["TaggedAddresses"];
    assert_eq!(tagged["custom_lan"], "127.0.0.9", "{node}");
    assert_eq!(tagged["lan"], "127.0.0.1", "{node}");
}

/// `connect { ca_provider, ca_config }` configures the mesh CA when it is
/// created; free-form blocks Consul accepts (`snapshot_agent`) start the agent with
/// a "no effect" line instead of failing.
#[tokio::test]
async fn connect_ca_config_and_free_form_blocks() {
    let a = dev_builder()
        .config_file(
            "connect.hcl",
            r#"
connect {
  enabled     = true
  ca_provider = "consul"
  ca_config {
    leaf_cert_ttl    = "24h"
    private_key_type = "ec"
  }
}
snapshot_agent {
  snapshot { interval = "1h" }
}
"#,
        )
        .start()
        .await;
    let (st, ca) = a.get_json("/v1/connect/ca/configuration").await;
    assert_eq!(st, 200, "{ca}");
    assert_eq!(ca["Provider"], "consul");
    assert_eq!(ca["Config"]["LeafCertTTL"], "24h", "{ca}");
    assert_eq!(ca["Config"]["RootCertTTL"], "87600h", "defaults kept: {ca}");
    let (st, leaf) = a.get_json("/v1/agent/connect/ca/leaf/web").await;
    assert_eq!(st, 200, "{leaf}");
    let at = |k: &str| {
        let t = leaf[k].as_str().unwrap_or_else(|| panic!("{k} in {leaf}"));
        meshgate_ca::parse_rfc3339(t).unwrap().unix_timestamp()
    };
    let lifetime = at("ValidBefore") - at("ValidAfter");
    assert!(
        (23 * 3600..=25 * 3600).contains(&lifetime),
        "a leaf lives LeafCertTTL: {lifetime} s"
    );
    assert!(
        a.log().contains("snapshot_agent") && a.log().contains("no effect"),
        "{}",
        a.log()
    );

    for (conf, want) in [
        (
            "connect { ca_provider = \"vault\" }",
            "unsupported CA provider \"vault\"",
        ),
        (
            "connect { ca_config { leaf_cert_ttl = \"10m\" } }",
            "LeafCertTTL must be at least",
        ),
    ] {
        refused(conf, want);
    }
}

/// `log_file` with rotation: the agent writes its log to the file as well as
/// to stderr (without colours), moves it aside once it reaches
/// `log_rotate_bytes` and keeps `log_rotate_max_files` moved-aside files; a
/// directory gets `consul.log`; a file it cannot open stops the start.
#[tokio::test]
async fn log_file_is_written_and_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let a = dev_builder()
        .config_file(
            "log.hcl",
            &format!(
                "log_level = \"debug\"\nlog_file = \"{}/\"\nlog_rotate_bytes = 4096\nlog_rotate_max_files = 2\n",
                dir.path().display()
            ),
        )
        .start()
        .await;
    // Each request is a debug line (`Request finished ...`).
    for i in 0..200 {
        let (st, _) = a.put(&format!("/v1/kv/log/{i}"), "x").await;
        assert_eq!(st, 200);
    }
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let all = names();
    assert!(all.contains(&"consul.log".to_string()), "{all:?}");
    let aside: Vec<&String> = all.iter().filter(|n| n.as_str() != "consul.log").collect();
    assert_eq!(aside.len(), 2, "two moved-aside files kept: {all:?}");
    for n in &aside {
        let stamp = n
            .strip_prefix("consul-")
            .and_then(|r| r.strip_suffix(".log"))
            .unwrap_or_else(|| panic!("moved aside as consul-<nanoseconds>.log: {n}"));
        assert!(
            stamp.len() >= 19 && stamp.bytes().all(|b| b.is_ascii_digit()),
            "{n}"
        );
        let text = std::fs::read_to_string(dir.path().join(n)).unwrap();
        // Moved aside at the first line that finds it at the limit or over.
        assert!(
            text.len() >= 4096 && text.len() < 4096 + 1024,
            "{n}: {} bytes",
            text.len()
        );
        assert!(text.contains("Request finished"), "{n}: {text}");
        assert!(!text.contains('\x1b'), "no colour codes in the file");
        assert!(text.ends_with('\n'), "whole lines only");
    }
    let current = std::fs::read_to_string(dir.path().join("consul.log")).unwrap();
    assert!(current.len() < 4096 + 1024, "{} bytes", current.len());
    // stderr still gets the log.
    a.wait_log("Request finished", Duration::from_secs(10))
        .await;
    drop(a);

    refused(
        &format!(
            "log_file = \"{}/missing/agent.log\"\n",
            dir.path().display()
        ),
        "Failed to setup logging",
    );
    refused(
        "log_rotate_duration = \"daily\"\n",
        "log_rotate_duration: invalid value \"daily\"",
    );
}

/// Receives HTTP requests on loopback, answering `200 ok`, and passes each
/// one on (head and body as text).
async fn http_sink() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let _ = tx.send(text.clone());
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, rx)
}

/// The agent's `watches` (Consul's agent configuration): a script handler
/// (`args`, JSON on stdin, `CONSUL_INDEX`), the deprecated shell `handler`,
/// and an `http` handler (POST with `X-Consul-Index` and the configured
/// headers) run on the first answer and on each change; a bad watch stops
/// the start with Consul's message.
#[tokio::test]
async fn agent_watches_run_their_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let key_out = dir.path().join("key.out");
    let prefix_out = dir.path().join("prefix.out");
    let svc_out = dir.path().join("svc.out");
    let (hook, mut hooked) = http_sink().await;
    let conf = format!(
        r#"
watches = [
  {{
    type = "key"
    key  = "app/flag"
    args = ["/bin/sh", "-c", "cat >> {key}; echo \"index=$CONSUL_INDEX\" >> {key}"]
  }},
  {{
    type    = "keyprefix"
    prefix  = "app/"
    handler = "cat >> {prefix}; echo >> {prefix}"
  }},
  {{
    type       = "agent_service"
    service_id = "files"
    args       = ["/bin/sh", "-c", "cat >> {svc}; echo >> {svc}"]
  }},
  {{
    type         = "services"
    handler_type = "http"
    http_handler_config {{
      path   = "{hook}"
      header = {{ x-team = ["files"] }}
    }}
  }}
]
"#,
        key = key_out.display(),
        prefix = prefix_out.display(),
        svc = svc_out.display(),
    );
    let a = dev_builder()
        .config_file("watches.hcl", &conf)
        .start()
        .await;
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    // The first answer: no such key yet.
    meshgate_test_support::eventually(
        "the key watch's first run",
        Duration::from_secs(15),
        || async { read(&key_out).starts_with("null\nindex=").then_some(()) },
    )
    .await;
    let first = hooked.recv().await.expect("the http handler's first call");
    assert!(first.starts_with("POST /hook HTTP/1.1\r\n"), "{first}");
    let lower = first.to_ascii_lowercase();
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n"),
        "{first}"
    );
    assert!(lower.contains("\r\nx-team: files\r\n"), "{first}");
    assert!(lower.contains("\r\nx-consul-index: "), "{first}");
    assert!(first.ends_with("{\"consul\":[]}\n"), "{first}");

    let (st, _) = a.put("/v1/kv/app/flag", "on").await;
    assert_eq!(st, 200);
    meshgate_test_support::eventually(
        "the key watch's handler to see the write",
        Duration::from_secs(15),
        || async {
            let text = read(&key_out);
            let lines: Vec<&str> = text.lines().collect();
            (lines.len() >= 4
                && lines[2].contains("\"Key\":\"app/flag\"")
                && lines[2].contains("\"Value\":\"b24=\""))
            .then_some(())
        },
    )
    .await;
    let text = read(&key_out);
    let index: u64 = text
        .lines()
        .nth(3)
        .unwrap()
        .strip_prefix("index=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(index > 0, "{text}");
    file_gets(
        &prefix_out,
        "\"Key\":\"app/flag\"",
        "the prefix watch (deprecated handler)",
    )
    .await;
    a.wait_log(
        "'handler' field in watches has been deprecated",
        Duration::from_secs(10),
    )
    .await;

    let (st, _) = a
        .put(
            "/v1/agent/service/register",
            r#"{"Name": "files", "Port": 10000}"#,
        )
        .await;
    assert_eq!(st, 200);
    let next = tokio::time::timeout(Duration::from_secs(15), hooked.recv())
        .await
        .expect("the http handler runs on the change")
        .unwrap();
    assert!(next.contains("\"files\":[]"), "{next}");
    // The agent-local watch (blocking on the content hash) sees the service
    // once it exists, then its change.
    file_gets(
        &svc_out,
        "\"Port\":10000",
        "the agent_service watch to see the service",
    )
    .await;
    let (st, _) = a
        .put(
            "/v1/agent/service/register",
            r#"{"Name": "files", "Port": 10001}"#,
        )
        .await;
    assert_eq!(st, 200);
    file_gets(
        &svc_out,
        "\"Port\":10001",
        "the agent_service watch to see the change",
    )
    .await;
    assert_eq!(
        read(&svc_out).lines().filter(|l| !l.is_empty()).count(),
        2,
        "one run per answer: {}",
        read(&svc_out)
    );
    // A write elsewhere that leaves the answer as it was runs nothing.
    let (st, _) = a.put("/v1/kv/other", "x").await;
    assert_eq!(st, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(read(&key_out).lines().count(), 4, "{}", read(&key_out));

    // `reload` with other watches: the old ones stop, the new one runs.
    let other_out = dir.path().join("other.out");
    let conf_path = a.dir().join("watches.hcl");
    std::fs::write(
        &conf_path,
        format!(
            "watches = [{{ type = \"key\", key = \"app/other\", args = [\"/bin/sh\", \"-c\", \"cat >> {}\"] }}]\n",
            other_out.display()
        ),
    )
    .unwrap();
    let r = a.http.put(a.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    meshgate_test_support::eventually(
        "the new watch's first run",
        Duration::from_secs(15),
        || async { (read(&other_out) == "null\n").then_some(()) },
    )
    .await;
    let (st, _) = a.put("/v1/kv/app/flag", "off").await;
    assert_eq!(st, 200);
    // A reload that fails (a bad watch) changes nothing: the new watch runs on.
    std::fs::write(&conf_path, "watches = [{ type = \"key\", key = \"k\" }]\n").unwrap();
    let r = a.http.put(a.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("Failed to reload configs: Must define a watch handler"),
        "{text}"
    );
    let (st, _) = a.put("/v1/kv/app/other", "1").await;
    assert_eq!(st, 200);
    file_gets(
        &other_out,
        "\"Key\":\"app/other\"",
        "the new watch to see its key",
    )
    .await;
    assert_eq!(
        read(&key_out).lines().count(),
        4,
        "the old key watch stopped at the reload: {}",
        read(&key_out)
    );
    drop(a);

    for (conf, want) in [
        (
            "watches = [{ type = \"key\", key = \"k\" }]",
            "Error starting agent: Must define a watch handler",
        ),
        (
            "watches = [{ type = \"key\", args = [\"true\"] }]",
            "Must specify a single key to watch",
        ),
        (
            "watches = [{ type = \"connect_roots\", args = [\"true\"] }]",
            "Watch type connect_roots is not allowed in agent config",
        ),
    ] {
        refused(conf, want);
    }
}

/// SIGHUP reloads the configuration, as with Consul (`systemctl reload`);
/// it used to stop the agent. A reload that fails is logged and the agent
/// runs on as it was.
#[tokio::test]
async fn sighup_reloads_the_configuration() {
    let a = dev_builder()
        .config_file("svc.hcl", "service { name = \"before\" port = 1 }\n")
        .start()
        .await;
    let services = || async {
        let (st, v) = a.get_json("/v1/agent/services").await;
        assert_eq!(st, 200);
        let mut names: Vec<String> = v
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(services().await, ["before"]);
    std::fs::write(
        a.dir().join("svc.hcl"),
        "service { name = \"after\" port = 2 }\n",
    )
    .unwrap();
    a.signal("HUP");
    meshgate_test_support::eventually("the reload on SIGHUP", Duration::from_secs(15), || async {
        (services().await == ["after"]).then_some(())
    })
    .await;
    a.wait_log("Caught signal: hangup", Duration::from_secs(10))
        .await;

    std::fs::write(a.dir().join("svc.hcl"), "service { name = \n").unwrap();
    a.signal("HUP");
    meshgate_test_support::eventually(
        "the failed reload to be logged",
        Duration::from_secs(15),
        || async { a.log().contains("Failed to reload configs").then_some(()) },
    )
    .await;
    assert_eq!(
        services().await,
        ["after"],
        "a failed reload changes nothing"
    );

    // `log_level` changes on reload, as with Consul: debug lines (one per
    // request) appear once it is `debug`.
    let (st, _) = a.put("/v1/kv/quiet", "1").await;
    assert_eq!(st, 200);
    assert!(
        !a.log().contains("Request finished"),
        "info: no debug lines yet"
    );
    std::fs::write(
        a.dir().join("svc.hcl"),
        "service { name = \"after\" port = 2 }\nlog_level = \"debug\"\n",
    )
    .unwrap();
    let r = a.http.put(a.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (st, _) = a.put("/v1/kv/loud", "1").await;
    assert_eq!(st, 200);
    meshgate_test_support::eventually(
        "debug lines after the reload",
        Duration::from_secs(15),
        || async { a.log().contains("Request finished").then_some(()) },
    )
    .await;
    a.wait_log("log level: debug", Duration::from_secs(10))
        .await;
}

/// `telemetry`: every request's timing goes to statsd (`NAME:MS|ms`) and to
/// DogStatsD with the configured tags, the gauges every 10 s (the first
/// after 1 s), all named with `metrics_prefix`, which `/v1/agent/metrics`
/// uses too; a bad address stops the start.
#[tokio::test]
async fn telemetry_statsd_and_dogstatsd() {
    let statsd = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dogstatsd = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let statsite = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = dev_builder()
        .config_file(
            "telemetry.hcl",
            &format!(
                "telemetry {{\n  statsd_address = \"{}\"\n  dogstatsd_addr = \"{}\"\n  dogstatsd_tags = [\"env:test\", \"team:files\"]\n  statsite_address = \"{}\"\n  metrics_prefix = \"meshgate\"\n  disable_hostname = true\n}}\n",
                statsd.local_addr().unwrap(),
                dogstatsd.local_addr().unwrap(),
                statsite.local_addr().unwrap()
            ),
        )
        .start()
        .await;
    let (st, _) = a.put("/v1/kv/t", "1").await;
    assert_eq!(st, 200);
    // Everything received for up to 5 s, until a timing and a gauge came.
    async fn collect(sock: &tokio::net::UdpSocket, want: &[&str]) -> String {
        let mut all = String::new();
        let mut buf = vec![0u8; 65536];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !want.iter().all(|w| all.contains(w)) {
            let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await else {
                break;
            };
            assert!(n <= 1432, "a packet of {n} bytes");
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            all.push('\n');
        }
        all
    }
    let got = collect(
        &statsd,
        &["meshgate.http.PUT.v1.kv._:", "meshgate.state.kv_entries:"],
    )
    .await;
    let timing = got
        .lines()
        .find(|l| l.starts_with("meshgate.http.PUT.v1.kv._:"))
        .unwrap_or_else(|| panic!("a timing line: {got}"));
    let ms: f64 = timing
        .strip_prefix("meshgate.http.PUT.v1.kv._:")
        .and_then(|r| r.strip_suffix("|ms"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("NAME:MS|ms: {timing}"));
    assert!(ms >= 0.0);
    assert!(
        got.lines().any(|l| l == "meshgate.state.kv_entries:1|g"),
        "{got}"
    );
    assert!(!got.contains("consul."), "every name has the prefix: {got}");
    let got = collect(
        &dogstatsd,
        &["meshgate.http.PUT.v1.kv._:", "meshgate.state.kv_entries:"],
    )
    .await;
    assert!(
        got.lines()
            .filter(|l| !l.is_empty())
            .all(|l| l.ends_with("|#env:test,team:files")),
        "{got}"
    );
    assert!(
        got.contains("meshgate.state.kv_entries:1|g|#env:test,team:files"),
        "{got}"
    );
    // statsite: the same lines over one TCP stream.
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(10), statsite.accept())
        .await
        .expect("the agent connects to statsite")
        .unwrap();
    let mut got = String::new();
    let mut buf = vec![0u8; 65536];
    while !(got.contains("meshgate.http.PUT.v1.kv._:")
        && got.contains("meshgate.state.kv_entries:1|g\n"))
    {
        use tokio::io::AsyncReadExt;
        let n = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("statsite lines: {got}"))
            .unwrap();
        assert!(n > 0, "the agent closed the statsite stream: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        got.lines().all(|l| !l.is_empty() && !l.contains("|#")),
        "{got}"
    );
    // The JSON form shows one 10 s interval: the one with this PUT, once
    // it has ended.
    let (st, _) = a.put("/v1/kv/t", "2").await;
    assert_eq!(st, 200);
    let m = meshgate_test_support::eventually(
        "the interval with the PUT",
        Duration::from_secs(25),
        || async {
            let (_, m) = a.get_json("/v1/agent/metrics").await;
            m.to_string()
                .contains("meshgate.http.PUT.v1.kv._")
                .then_some(m)
        },
    )
    .await;
    let names: Vec<&str> = m["Samples"]
        .as_array()
        .unwrap()
        .iter()
        .chain(m["Gauges"].as_array().unwrap())
        .filter_map(|s| s["Name"].as_str())
        .collect();
    assert!(names.contains(&"meshgate.http.PUT.v1.kv._"), "{names:?}");
    assert!(names.contains(&"meshgate.state.kv_entries"), "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("meshgate.")),
        "{names:?}"
    );
    drop(a);

    refused(
        "telemetry { statsd_address = \"127.0.0.1\" }\n",
        "telemetry.statsd_address: invalid address \"127.0.0.1\"",
    );
}

/// Starts a dev agent with `conf` as a config file and checks that it
/// refuses to start (status 1), saying `want`.
fn refused(conf: &str, want: &str) {
    let (code, out) = dev_builder().config_file("bad.hcl", conf).start_failure();
    assert_eq!(code, 1, "{conf}: {out}");
    assert!(out.contains(want), "{conf}: {out}");
}

/// Waits (15 s at most) until the file at `path` contains `needle`.
async fn file_gets(path: &std::path::Path, needle: &str, what: &str) {
    meshgate_test_support::eventually(what, Duration::from_secs(15), || async {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(needle)
            .then_some(())
    })
    .await;
}
