//! External services monitored by the servers (issue 8): TCP, HTTP, TLS and
//! PostgreSQL checks registered with an external node, the node probe, results
//! written only on change; propagation to `/v1/health/connect?passing`; the
//! discovery chain with a `service-resolver` failover followed by a sidecar;
//! the gateway refusing a service with no passing instance and balancing among
//! the passing ones. Real PostgreSQL servers are stopped and started.

use std::collections::BTreeSet;
use std::time::Duration;

use meshgate_test_support::postgres::{Postgres, ServerTls};
use meshgate_test_support::{Agent, AgentBuilder, Proc, eventually, free_port};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::BIN;
use crate::dataplane::{admin_addr, mesh_connect, metric, psql_via, test_ca, wait_ready};

/// Fast probing so that the tests see transitions within seconds.
const FAST: &str = r#"
external_health {
  node_probe_interval = "1s"
  node_probe_timeout  = "1s"
  check_interval      = "1s"
  check_timeout       = "2s"
  critical_threshold  = 2
  passing_threshold   = 1
}
"#;

async fn agent() -> Agent {
    AgentBuilder::dev(BIN)
        .args(["-node", "server-1"])
        .config_file("external.hcl", FAST)
        .start()
        .await
}

async fn put(a: &Agent, path: &str, body: Value) {
    let (st, b) = a.put(path, body.to_string()).await;
    assert_eq!(st, 200, "PUT {path}: {b}");
}

/// `(status, output)` of a check, once it exists.
async fn check_of(a: &Agent, node: &str, id: &str) -> Option<(String, String)> {
    let (_, v) = a.get_json(&format!("/v1/health/node/{node}")).await;
    v.as_array()?.iter().find(|c| c["CheckID"] == id).map(|c| {
        (
            c["Status"].as_str().unwrap_or("").to_string(),
            c["Output"].as_str().unwrap_or("").to_string(),
        )
    })
}

/// Waits until check `id` on `node` has `status` written by the monitor (an
/// output); returns the output.
async fn wait_status(a: &Agent, node: &str, id: &str, status: &str) -> String {
    let what = format!("{node}/{id} {status}");
    eventually(&what, Duration::from_secs(20), || async {
        match check_of(a, node, id).await {
            Some((s, out)) if s == status && !out.is_empty() => Some(out),
            _ => None,
        }
    })
    .await
}

/// A tiny HTTP server: `/ok` 200, `/busy` 429, `/moved` a 302 to `/ok`,
/// anything else 500.
pub(crate) async fn http_server(host: &str) -> u16 {
    let l = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let (code, text) = if req.starts_with("GET /ok ") {
                    ("200 OK", "fine")
                } else if req.starts_with("GET /moved ") {
                    ("302 Found\r\nlocation: /ok", "moved")
                } else if req.starts_with("GET /busy ") {
                    ("429 Too Many Requests", "slow down")
                } else {
                    ("500 Internal Server Error", "broken")
                };
                let resp = format!(
                    "HTTP/1.1 {code}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// A TLS server presenting `cert` for any client.
async fn tls_server(host: &str, cert_pem: &str, key_pem: &str) -> u16 {
    let acceptor = crate::tls_acceptor(cert_pem, key_pem);
    let l = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut t) = acceptor.accept(s).await {
                    let mut b = [0u8; 16];
                    let _ = t.read(&mut b).await;
                }
            });
        }
    });
    port
}

/// A new output under an unchanged status waits for `check_update_interval`
/// (5m by default) after the monitor's last write, as an agent's own checks
/// do: an endpoint whose body changes at every probe does not wake the
/// blocking queries on its service each time. A status change goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_output_changes_wait_for_check_update_interval() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let a = agent().await;
    let l = tokio::net::TcpListener::bind("127.0.0.4:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    // Answers `n=<count>`, 200 while the count is below `fail_from`, 500 after.
    let fail_from = Arc::new(AtomicU32::new(u32::MAX));
    let limit = fail_from.clone();
    tokio::spawn(async move {
        let mut n = 0u32;
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            n += 1;
            let code = if n >= limit.load(Ordering::SeqCst) {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let body = format!("n={n}");
            let mut buf = vec![0u8; 2048];
            let _ = s.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 {code}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    put(
        &a,
        "/v1/catalog/register",
        json!({
            "Node": "ext-counter", "Address": "127.0.0.4",
            "NodeMeta": {"external-node": "true"},
            "Service": {"ID": "api", "Service": "api", "Port": port},
            "Check": {"CheckID": "api-http", "Name": "api", "ServiceID": "api",
                      "Definition": {"HTTP": format!("http://127.0.0.4:{port}/"),
                                     "Interval": "1s", "Timeout": "1s"}}
        }),
    )
    .await;
    let first = wait_status(&a, "ext-counter", "api-http", "passing").await;
    assert!(first.contains("n="), "{first}");
    let index = |v: &Value| v[0]["ModifyIndex"].as_u64().unwrap();
    let (_, before) = a.get_json("/v1/health/checks/api").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (_, after) = a.get_json("/v1/health/checks/api").await;
    assert_eq!(index(&before), index(&after), "{before} then {after}");
    assert_eq!(after[0]["Output"], first.as_str(), "the first output stays");
    fail_from.store(0, Ordering::SeqCst);
    let out = wait_status(&a, "ext-counter", "api-http", "critical").await;
    assert!(out.contains("500"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_checks_tcp_http_tls_postgres() {
    let a = agent().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca("db.meshgate.test");
    let other = test_ca("db.meshgate.test");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, &other.ca_pem).unwrap();
    let ca_file = ca_file.display().to_string();
    let other_file = other_file.display().to_string();

    let mut pg = Postgres::start(
        "127.0.0.3",
        Some(ServerTls {
            cert_pem: ca.cert_pem.clone(),
            key_pem: ca.key_pem.clone(),
        }),
    );
    // A user the server refuses outright (pg_hba), for the warning case.
    let hba = pg.dir().join("data/pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all nobody 127.0.0.0/8 reject\n{rules}")).unwrap();
    pg.psql("postgres", "select pg_reload_conf()");

    let tcp_open = tokio::net::TcpListener::bind("127.0.0.3:0").await.unwrap();
    let open = tcp_open.local_addr().unwrap().to_string();
    let closed = format!("127.0.0.3:{}", free_port("127.0.0.3"));
    let http = http_server("127.0.0.3").await;
    let tls = tls_server("127.0.0.3", &ca.cert_pem, &ca.key_pem).await;
    let (https, sni) = crate::agent_api::https_server("127.0.0.3", &ca.cert_pem, &ca.key_pem).await;
    let pg_addr = format!("127.0.0.3:{}", pg.port);

    let def = |id: &str, d: Value| {
        let mut d = d;
        d["Interval"] = json!("1s");
        d["Timeout"] = json!("2s");
        json!({"Node": "ext-1", "CheckID": id, "Name": id, "ServiceID": "db", "Status": "critical", "Definition": d})
    };
    put(
        &a,
        "/v1/catalog/register",
        json!({
            "Node": "ext-1", "Address": "127.0.0.3",
            "NodeMeta": {"external-node": "true", "external-probe": "true"},
            "Service": {"ID": "db", "Service": "db", "Port": pg.port},
            "Checks": [
                def("tcp-ok", json!({"TCP": open})),
                def("tcp-down", json!({"TCP": closed})),
                def("http-ok", json!({"HTTP": format!("http://127.0.0.3:{http}/ok")})),
                def("http-busy", json!({"HTTP": format!("http://127.0.0.3:{http}/busy")})),
                def("http-broken", json!({"HTTP": format!("http://127.0.0.3:{http}/broken")})),
                def("http-moved", json!({"HTTP": format!("http://127.0.0.3:{http}/moved")})),
                def("http-moved-kept", json!({"HTTP": format!("http://127.0.0.3:{http}/moved"),
                                              "DisableRedirects": true})),
                def("https-named", json!({"HTTP": format!("https://127.0.0.3:{https}/"),
                                          "TLSServerName": "db.meshgate.test", "TLSCAFile": ca_file})),
                def("https-unnamed", json!({"HTTP": format!("https://127.0.0.3:{https}/"),
                                            "TLSCAFile": ca_file})),
                def("tls-ok", json!({"TCP": format!("127.0.0.3:{tls}"), "TCPUseTLS": true,
                                      "TLSServerName": "db.meshgate.test", "TLSCAFile": ca_file})),
                def("tls-wrong-ca", json!({"TCP": format!("127.0.0.3:{tls}"), "TCPUseTLS": true,
                                      "TLSServerName": "db.meshgate.test", "TLSCAFile": other_file})),
                def("tls-skip", json!({"TCP": format!("127.0.0.3:{tls}"), "TCPUseTLS": true,
                                      "TLSSkipVerify": true})),
                def("pg", json!({"PostgreSQL": pg_addr, "PostgreSQLUser": "postgres"})),
                def("pg-tls", json!({"PostgreSQL": pg_addr, "PostgreSQLUseTLS": true,
                                     "TLSServerName": "db.meshgate.test", "TLSCAFile": ca_file})),
                def("pg-refused", json!({"PostgreSQL": pg_addr, "PostgreSQLUser": "nobody"})),
            ]
        }),
    )
    .await;

    let out = wait_status(&a, "ext-1", "tcp-ok", "passing").await;
    assert!(out.contains("Success"), "{out}");
    let out = wait_status(&a, "ext-1", "tcp-down", "critical").await;
    assert!(out.contains("connection refused"), "{out}");
    let out = wait_status(&a, "ext-1", "http-ok", "passing").await;
    assert!(out.contains("200 OK") && out.contains("fine"), "{out}");
    let out = wait_status(&a, "ext-1", "http-busy", "warning").await;
    assert!(out.contains("429"), "{out}");
    let out = wait_status(&a, "ext-1", "http-broken", "critical").await;
    assert!(out.contains("500"), "{out}");
    let out = wait_status(&a, "ext-1", "http-moved", "passing").await;
    assert!(out.contains("200 OK") && out.contains("fine"), "{out}");
    let out = wait_status(&a, "ext-1", "http-moved-kept", "critical").await;
    assert!(out.contains("302") && out.contains("moved"), "{out}");
    // TLSServerName names the certificate's host while the URL's address is
    // reached; without it the certificate must name 127.0.0.3, and does not.
    let out = wait_status(&a, "ext-1", "https-named", "passing").await;
    assert!(out.contains("200 OK"), "{out}");
    assert!(
        sni.lock()
            .unwrap()
            .iter()
            .any(|n| n.as_deref() == Some("db.meshgate.test")),
        "the name was sent (SNI)"
    );
    wait_status(&a, "ext-1", "https-unnamed", "critical").await;
    let out = wait_status(&a, "ext-1", "tls-ok", "passing").await;
    assert!(out.contains("TLS handshake: TLSv1.3"), "{out}");
    let out = wait_status(&a, "ext-1", "tls-skip", "passing").await;
    assert!(out.contains("TLS handshake"), "{out}");
    // The wrong CA: connected, but the certificate is refused.
    eventually("tls-wrong-ca says why", Duration::from_secs(20), || async {
        let (s, out) = check_of(&a, "ext-1", "tls-wrong-ca").await?;
        (s == "critical" && out.contains("TLS handshake")).then_some(())
    })
    .await;
    let out = wait_status(&a, "ext-1", "pg", "passing").await;
    assert!(
        out.contains("asked user \"postgres\" for SASL (SCRAM)"),
        "{out}"
    );
    let out = wait_status(&a, "ext-1", "pg-tls", "passing").await;
    assert!(out.ends_with("(over TLS)"), "{out}");
    let out = wait_status(&a, "ext-1", "pg-refused", "warning").await;
    assert!(
        out.contains("refused authentication") && out.contains("28000"),
        "{out}"
    );
    let out = wait_status(&a, "ext-1", "externalNodeHealth", "passing").await;
    assert!(out.starts_with("Node alive or reachable"), "{out}");
    let (_, checks) = a.get_json("/v1/health/node/ext-1").await;
    let node_check = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "externalNodeHealth")
        .unwrap()
        .clone();
    assert_eq!(node_check["Name"], "External Node Status");
    assert_eq!(node_check["ServiceID"], "");

    // Results are written only when they change: a stable state leaves the
    // check indexes alone for several intervals.
    let (_, before) = a.get_json("/v1/health/node/ext-1").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (_, after) = a.get_json("/v1/health/node/ext-1").await;
    let idx = |v: &Value| -> Vec<(String, u64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["CheckID"].as_str().unwrap().to_string(),
                    c["ModifyIndex"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        idx(&before),
        idx(&after),
        "a check was rewritten without a change"
    );

    // PostgreSQL stops: after the threshold the PostgreSQL checks and the node
    // probe turn critical, with an output saying why; the other checks stay.
    pg.stop();
    let out = wait_status(&a, "ext-1", "pg", "critical").await;
    assert!(out.contains("connection refused"), "{out}");
    wait_status(&a, "ext-1", "pg-tls", "critical").await;
    let out = wait_status(&a, "ext-1", "externalNodeHealth", "critical").await;
    assert!(out.starts_with("Node not live or unreachable"), "{out}");
    assert_eq!(check_of(&a, "ext-1", "tcp-ok").await.unwrap().0, "passing");
    // And back.
    pg.restart();
    wait_status(&a, "ext-1", "pg", "passing").await;
    wait_status(&a, "ext-1", "externalNodeHealth", "passing").await;
    // `catalog services` shows the external node's service like any other.
    let (code, out, err) =
        crate::dataplane::cli(&a, "", &["catalog", "services", "-node", "ext-1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.trim() == "db"), "{out}");
    // A node that is no longer external is no longer probed: its check stays
    // as last written, and removing the node stops everything.
    put(&a, "/v1/catalog/deregister", json!({"Node": "ext-1"})).await;
    drop(tcp_open);
}

/// One external database server for the failover test.
struct Db {
    pg: Postgres,
}

fn database(host: &str) -> Db {
    let pg = Postgres::start(host, None);
    pg.psql(
        "postgres",
        "CREATE ROLE carbonio WITH LOGIN PASSWORD 'files-secret'",
    );
    pg.psql("postgres", "CREATE DATABASE files OWNER carbonio");
    Db { pg }
}

/// Which server answered, by its port.
fn served_by(port: u16) -> Result<String, String> {
    psql_via(
        port,
        "files-secret",
        "select current_setting('port')",
        "disable",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_fails_over_and_back() {
    let a = agent().await;
    let mut primary = database("127.0.0.4");
    let replica = database("127.0.0.5");
    let (p_port, r_port) = (primary.pg.port, replica.pg.port);
    // The scenario's registration (node probe on), plus a PostgreSQL check;
    // a replica service; and a pool of both servers.
    let pg_check = |node: &str, port: u16| {
        json!({"Node": node, "CheckID": "postgres", "Name": "PostgreSQL", "Status": "critical",
               "Definition": {"PostgreSQL": format!("{}:{port}", if node == "db-primary" {"127.0.0.4"} else {"127.0.0.5"}),
                              "PostgreSQLUser": "carbonio", "Interval": "1s", "Timeout": "2s"}})
    };
    put(
        &a,
        "/v1/catalog/register",
        json!({
        "Node": "db-primary", "Address": "127.0.0.4",
        "NodeMeta": {"external-node": "true", "external-probe": "true"},
        "Service": {"ID": "files-db", "Service": "carbonio-files-db", "Port": p_port},
        "Check": pg_check("db-primary", p_port)}),
    )
    .await;
    put(&a, "/v1/catalog/register", json!({
        "Node": "db-replica", "Address": "127.0.0.5",
        "NodeMeta": {"external-node": "true", "external-probe": "true"},
        "Service": {"ID": "files-db-replica", "Service": "carbonio-files-db-replica", "Port": r_port},
        "Check": pg_check("db-replica", r_port)})).await;
    put(
        &a,
        "/v1/catalog/register",
        json!({
        "Node": "db-primary", "Address": "127.0.0.4", "SkipNodeUpdate": true,
        "Service": {"ID": "pool-a", "Service": "files-pool", "Port": p_port}}),
    )
    .await;
    put(
        &a,
        "/v1/catalog/register",
        json!({
        "Node": "db-replica", "Address": "127.0.0.5", "SkipNodeUpdate": true,
        "Service": {"ID": "pool-b", "Service": "files-pool", "Port": r_port}}),
    )
    .await;
    put(
        &a,
        "/v1/config",
        json!({
        "Kind": "terminating-gateway", "Name": "db-gateway",
        "Services": [{"Name": "carbonio-files-db"}, {"Name": "carbonio-files-db-replica"},
                     {"Name": "files-pool"}]}),
    )
    .await;
    put(
        &a,
        "/v1/config",
        json!({
        "Kind": "service-resolver", "Name": "carbonio-files-db", "ConnectTimeout": "2s",
        "Failover": {"*": {"Service": "carbonio-files-db-replica"}}}),
    )
    .await;

    // The compiled chain names the failover target.
    let (st, chain) = a.get_json("/v1/discovery-chain/carbonio-files-db").await;
    assert_eq!(st, 200, "{chain}");
    let c = &chain["Chain"];
    assert_eq!(c["ServiceName"], "carbonio-files-db");
    assert_eq!(c["Protocol"], "tcp");
    assert_eq!(
        c["StartNode"],
        "resolver:carbonio-files-db.default.default.dc1"
    );
    let r = &c["Nodes"]["resolver:carbonio-files-db.default.default.dc1"]["Resolver"];
    assert_eq!(r["ConnectTimeout"], "2s");
    assert_eq!(r["Target"], "carbonio-files-db.default.default.dc1");
    assert_eq!(
        r["Failover"]["Targets"],
        json!(["carbonio-files-db-replica.default.default.dc1"])
    );
    let t = &c["Targets"]["carbonio-files-db-replica.default.default.dc1"];
    assert_eq!(t["Service"], "carbonio-files-db-replica");
    assert!(
        t["SNI"]
            .as_str()
            .unwrap()
            .starts_with("carbonio-files-db-replica.default.dc1.internal."),
        "{t}"
    );
    assert!(c.get("Default").is_none(), "{c}");

    // The gateway and a sidecar with upstreams to the database and the pool.
    let gw_port = free_port("127.0.0.1");
    let mut gateway = Proc::spawn(
        "gateway",
        BIN,
        &[
            "connect",
            "envoy",
            "-gateway=terminating",
            "-register",
            "-service",
            "db-gateway",
            "-address",
            &format!("127.0.0.1:{gw_port}"),
            "-admin-bind",
            "127.0.0.1:0",
        ],
        &[("CONSUL_HTTP_ADDR", &a.base)],
    );
    let gw_admin = admin_addr(&mut gateway);
    wait_ready(&mut gateway, &gw_admin).await;
    let up_db = free_port("127.0.0.1");
    let up_pool = free_port("127.0.0.1");
    put(&a, "/v1/agent/service/register", json!({
        "Name": "carbonio-files", "Port": 10000,
        "Connect": {"SidecarService": {"Port": free_port("127.0.0.1"), "Address": "127.0.0.1",
            "Proxy": {"Upstreams": [
                {"DestinationName": "carbonio-files-db", "LocalBindAddress": "127.0.0.1", "LocalBindPort": up_db},
                {"DestinationName": "files-pool", "LocalBindAddress": "127.0.0.1", "LocalBindPort": up_pool}]}}}})).await;
    let mut sidecar = Proc::spawn(
        "sidecar",
        BIN,
        &[
            "connect",
            "proxy",
            "-sidecar-for",
            "carbonio-files",
            "-admin-bind",
            "127.0.0.1:0",
        ],
        &[("CONSUL_HTTP_ADDR", &a.base)],
    );
    let sc_admin = admin_addr(&mut sidecar);
    wait_ready(&mut sidecar, &sc_admin).await;

    wait_status(&a, "db-primary", "postgres", "passing").await;
    wait_status(&a, "db-replica", "postgres", "passing").await;
    let p = p_port.to_string();
    let r = r_port.to_string();
    eventually(
        "the primary answers through the mesh",
        Duration::from_secs(20),
        || async { (served_by(up_db).ok()? == p).then_some(()) },
    )
    .await;
    // The pool is balanced over both servers.
    let seen = eventually(
        "both pool members answer",
        Duration::from_secs(20),
        || async {
            let mut seen = BTreeSet::new();
            for _ in 0..12 {
                seen.insert(served_by(up_pool).ok()?);
            }
            (seen.len() == 2).then_some(seen)
        },
    )
    .await;
    assert_eq!(seen, BTreeSet::from([p.clone(), r.clone()]));
    let (_, passing) = a
        .get_json("/v1/health/connect/carbonio-files-db?passing")
        .await;
    assert_eq!(passing.as_array().unwrap().len(), 1, "{passing}");
    assert_eq!(passing[0]["Service"]["Service"], "db-gateway");

    // The primary stops: its checks go critical, the gateway is no longer a
    // passing way to it, the sidecar fails over to the replica, and the pool
    // sends every new connection to the member that passes.
    primary.pg.stop();
    wait_status(&a, "db-primary", "postgres", "critical").await;
    eventually(
        "health/connect?passing drops the gateway",
        Duration::from_secs(10),
        || async {
            let (_, v) = a
                .get_json("/v1/health/connect/carbonio-files-db?passing")
                .await;
            (v == json!([])).then_some(())
        },
    )
    .await;
    let (_, all) = a.get_json("/v1/health/connect/carbonio-files-db").await;
    assert_eq!(
        all.as_array().unwrap().len(),
        1,
        "without ?passing the gateway is listed: {all}"
    );
    eventually(
        "the sidecar fails over to the replica",
        Duration::from_secs(20),
        || async { (served_by(up_db).ok()? == r).then_some(()) },
    )
    .await;
    for _ in 0..6 {
        assert_eq!(
            served_by(up_pool).unwrap(),
            r,
            "a pool connection went to the stopped server"
        );
    }
    assert!(
        sidecar
            .log()
            .contains("failing over from carbonio-files-db to carbonio-files-db-replica"),
        "{}",
        sidecar.log()
    );
    // The gateway itself refuses the stopped service, with a log line.
    let roots = a.get_json("/v1/agent/connect/ca/roots").await.1;
    let pems: Vec<String> = roots["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["RootCert"].as_str().unwrap().to_string())
        .collect();
    let td = roots["TrustDomain"].as_str().unwrap().to_string();
    let leaf = a
        .get_json("/v1/agent/connect/ca/leaf/carbonio-files")
        .await
        .1;
    let refused = mesh_connect(
        &format!("127.0.0.1:{gw_port}"),
        &format!("carbonio-files-db.default.dc1.internal.{td}"),
        leaf["CertPEM"].as_str().unwrap(),
        leaf["PrivateKeyPEM"].as_str().unwrap(),
        &pems,
        meshgate_ca::ServiceId::new(&td, "default", "dc1", "carbonio-files-db"),
    )
    .await;
    assert!(
        refused.is_err(),
        "the gateway carried a connection to a stopped service"
    );
    gateway.wait_log(
        "no instance of carbonio-files-db passes its health checks",
        Duration::from_secs(10),
    );
    assert!(
        metric(
            &gw_admin,
            "no_healthy_instance_refused_total",
            "carbonio-files-db"
        )
        .await
            >= 1
    );

    // The primary comes back: passing again, and traffic returns to it.
    primary.pg.restart();
    wait_status(&a, "db-primary", "postgres", "passing").await;
    eventually(
        "traffic returns to the primary",
        Duration::from_secs(20),
        || async { (served_by(up_db).ok()? == p).then_some(()) },
    )
    .await;
    sidecar.wait_log("back to carbonio-files-db", Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_chain_defaults_subsets_and_errors() {
    let a = agent().await;
    // No resolver: the default chain.
    let (st, v) = a.get_json("/v1/discovery-chain/web").await;
    assert_eq!(st, 200, "{v}");
    let c = &v["Chain"];
    assert_eq!(c["Default"], true);
    assert_eq!(c["Datacenter"], "dc1");
    assert_eq!(c["Namespace"], "default");
    let r = &c["Nodes"]["resolver:web.default.default.dc1"]["Resolver"];
    assert_eq!(r["Default"], true);
    assert_eq!(r["ConnectTimeout"], "5s");
    let t = &c["Targets"]["web.default.default.dc1"];
    assert_eq!(t["ID"], "web.default.default.dc1");
    assert_eq!(t["Name"], t["SNI"]);
    assert_eq!(t["MeshGateway"], json!({}));
    // compile-dc.
    let (_, v) = a.get_json("/v1/discovery-chain/web?compile-dc=dc2").await;
    assert_eq!(v["Chain"]["StartNode"], "resolver:web.default.default.dc2");
    // A default subset and the protocol from service-defaults.
    put(
        &a,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
    )
    .await;
    put(
        &a,
        "/v1/config",
        json!({"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v2",
        "Subsets": {"v2": {"Filter": "Service.Meta.version == v2", "OnlyPassing": true}},
        "Failover": {"v2": {"Datacenters": ["dc2", "dc3"]}}}),
    )
    .await;
    let (_, v) = a.get_json("/v1/discovery-chain/web").await;
    let c = &v["Chain"];
    assert_eq!(c["Protocol"], "http");
    assert_eq!(c["StartNode"], "resolver:v2.web.default.default.dc1");
    let t = &c["Targets"]["v2.web.default.default.dc1"];
    assert_eq!(t["ServiceSubset"], "v2");
    assert_eq!(
        t["Subset"],
        json!({"Filter": "Service.Meta.version == v2", "OnlyPassing": true})
    );
    assert!(
        t["SNI"]
            .as_str()
            .unwrap()
            .starts_with("v2.web.default.dc1.internal.")
    );
    assert_eq!(
        c["Nodes"]["resolver:v2.web.default.default.dc1"]["Resolver"]["Failover"]["Targets"],
        json!(["v2.web.default.default.dc2", "v2.web.default.default.dc3"])
    );
    // POST overrides.
    let (st, b) = meshgate_test_support::client()
        .post(a.url("/v1/discovery-chain/web"))
        .body(json!({"OverrideConnectTimeout": "7s", "OverrideProtocol": "tcp"}).to_string())
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(st, 200);
    let v: Value = b.json().await.unwrap();
    assert_eq!(v["Chain"]["Protocol"], "tcp");
    assert_eq!(
        v["Chain"]["Targets"]["v2.web.default.default.dc1"]["ConnectTimeout"],
        "7s"
    );
    // Bad bodies are refused and a bad redirect is an error.
    let r = meshgate_test_support::client()
        .post(a.url("/v1/discovery-chain/web"))
        .body(r#"{"Bogus": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .starts_with("Request decoding failed")
    );
    put(
        &a,
        "/v1/config",
        json!({"Kind": "service-resolver", "Name": "api",
        "Redirect": {"Service": "web", "ServiceSubset": "v9"}}),
    )
    .await;
    let (st, _) = a.get_json("/v1/discovery-chain/api").await;
    assert_eq!(st, 500);
    // Blocking: a resolver write wakes a waiting reader.
    let r = meshgate_test_support::client()
        .get(a.url("/v1/discovery-chain/db"))
        .send()
        .await
        .unwrap();
    let idx: u64 = r.headers()["x-consul-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let url = a.url(&format!("/v1/discovery-chain/db?index={idx}&wait=10s"));
    let waiter = tokio::spawn(async move {
        let t = std::time::Instant::now();
        let v: Value = meshgate_test_support::client()
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (t.elapsed(), v)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    put(
        &a,
        "/v1/config",
        json!({"Kind": "service-resolver", "Name": "db", "ConnectTimeout": "3s"}),
    )
    .await;
    let (took, v) = waiter.await.unwrap();
    assert!(
        took < Duration::from_secs(5),
        "the blocking read did not wake"
    );
    assert_eq!(
        v["Chain"]["Nodes"]["resolver:db.default.default.dc1"]["Resolver"]["ConnectTimeout"],
        "3s"
    );
}
