//! The scenario on a multi-node installation (issue 9): three servers, two
//! gateway nodes and two file-service nodes (client agents), each on its own
//! loopback address, PostgreSQL on another. The external database is
//! published with `meshgate gateway external add`; queries flow from both
//! file-service nodes; the leader server is killed and restarted, a gateway
//! instance is stopped (traffic goes on through the other) and restarted
//! (traffic goes through it when the other stops); `remove` leaves the
//! catalog and config entries as they were.

use std::path::Path;
use std::time::Duration;

use meshgate_test_support::postgres::Postgres;
use meshgate_test_support::{Agent, AgentBuilder, Proc, eventually, free_port};
use serde_json::json;

use crate::BIN;
use crate::dataplane::{admin_addr, psql_via, wait_ready};
use crate::gateway_cli::state;

const SERVERS: [&str; 3] = ["127.0.0.71", "127.0.0.72", "127.0.0.73"];
const GATEWAYS: [&str; 2] = ["127.0.0.74", "127.0.0.75"];
const FILES: [&str; 2] = ["127.0.0.76", "127.0.0.77"];
const DB: &str = "127.0.0.78";

fn server(i: usize, data: &Path) -> AgentBuilder {
    crate::cluster::server_on(&SERVERS, i, data)
}

fn client(ip: &str, name: &str, data: &Path) -> AgentBuilder {
    let mut args = vec![
        format!("-node={name}"),
        format!("-data-dir={}", data.join(name).display()),
    ];
    for ip in SERVERS {
        args.push(format!("-retry-join={ip}"));
    }
    AgentBuilder::dev(BIN).without_dev().ip(ip).args(args)
}

fn cli(a: &Agent, args: &[&str]) -> String {
    let (code, out, err) = meshgate_test_support::cli(BIN, a, args, None);
    assert_eq!(code, 0, "{args:?}\nstdout: {out}\nstderr: {err}");
    out
}

/// A query through a file node's upstream.
fn query(port: u16, sql: &str) -> Result<String, String> {
    psql_via(port, "files-secret", sql, "disable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_on_three_servers_two_gateways_two_file_nodes() {
    let pg = Postgres::start(DB, None);
    pg.psql(
        "postgres",
        "CREATE ROLE carbonio WITH LOGIN PASSWORD 'files-secret'",
    );
    pg.psql("postgres", "CREATE DATABASE files OWNER carbonio");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (s0, s1, s2) = tokio::join!(
        server(0, data).start(),
        server(1, data).start(),
        server(2, data).start()
    );
    let mut servers = [s0, s1, s2];
    let (g0, g1, f0, f1) = tokio::join!(
        client(GATEWAYS[0], "gateway-1", data).start(),
        client(GATEWAYS[1], "gateway-2", data).start(),
        client(FILES[0], "files-1", data).start(),
        client(FILES[1], "files-2", data).start()
    );
    let gw_agents = [g0, g1];
    let file_agents = [f0, f1];
    eventually(
        "the cluster has a leader",
        Duration::from_secs(20),
        || async {
            let l = crate::cluster::leader_of(&servers[0]).await;
            (!l.is_empty()).then_some(l)
        },
    )
    .await;
    let before = state(&servers[0]).await;

    // The one-command path, run on a server.
    let port = pg.port.to_string();
    let out = cli(
        &servers[0],
        &[
            "gateway",
            "external",
            "add",
            "carbonio-files-db",
            "--address",
            DB,
            "--port",
            &port,
            "--gateway",
            "carbonio-gateway",
            "--protocol",
            "postgres",
            "--allow",
            "carbonio-files",
        ],
    );
    assert!(
        out.contains("carbonio-files-db is published through carbonio-gateway"),
        "{out}"
    );

    // Two gateway instances, one per gateway node, each talking to its own
    // local agent.
    let mut gateways = Vec::new();
    let gateway_addrs: Vec<String> = GATEWAYS
        .iter()
        .map(|ip| format!("{ip}:{}", free_port(ip)))
        .collect();
    for (i, a) in gw_agents.iter().enumerate() {
        let addr = gateway_addrs[i].clone();
        let mut p = Proc::spawn(
            &format!("gateway-{}", i + 1),
            BIN,
            &[
                "connect",
                "envoy",
                "-gateway=terminating",
                "-register",
                "-service",
                "carbonio-gateway",
                "-proxy-id",
                &format!("carbonio-gateway-{}", i + 1),
                "-address",
                &addr,
                "-admin-bind",
                "127.0.0.1:0",
            ],
            &[("CONSUL_HTTP_ADDR", &a.base)],
        );
        let admin = admin_addr(&mut p);
        wait_ready(&mut p, &admin).await;
        gateways.push(p);
    }
    // The file service and its sidecar on both file nodes.
    let mut sidecars = Vec::new();
    let mut upstreams = Vec::new();
    for (i, a) in file_agents.iter().enumerate() {
        let up = free_port("127.0.0.1");
        let body = json!({"Name": "carbonio-files", "Port": 10000,
            "Connect": {"SidecarService": {"Port": free_port(FILES[i]), "Address": FILES[i],
                "Proxy": {"Upstreams": [{"DestinationName": "carbonio-files-db",
                    "LocalBindAddress": "127.0.0.1", "LocalBindPort": up}]}}}});
        let (st, b) = a.put("/v1/agent/service/register", body.to_string()).await;
        assert_eq!(st, 200, "{b}");
        let mut p = Proc::spawn(
            &format!("sidecar-{}", i + 1),
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
        let admin = admin_addr(&mut p);
        wait_ready(&mut p, &admin).await;
        sidecars.push(p);
        upstreams.push(up);
    }
    // Queries flow from both file nodes.
    for up in &upstreams {
        let up = *up;
        eventually(
            "a query through the mesh",
            Duration::from_secs(30),
            || async move { (query(up, "select 40 + 2").ok()? == "42").then_some(()) },
        )
        .await;
    }
    let out = cli(&servers[1], &["gateway", "status", "carbonio-gateway"]);
    assert!(out.contains("carbonio-gateway-1 on gateway-1"), "{out}");
    assert!(out.contains("carbonio-gateway-2 on gateway-2"), "{out}");
    assert!(out.contains(&format!("{DB}:{}  passing", pg.port)), "{out}");

    // The leader server dies: queries go on; it comes back and catches up.
    let l = crate::cluster::leader_of(&servers[0]).await;
    let li = SERVERS
        .iter()
        .position(|ip| l.starts_with(&format!("{ip}:")))
        .expect("a leader among the servers");
    servers[li].kill();
    for up in &upstreams {
        assert_eq!(query(*up, "select 1").unwrap(), "1");
    }
    servers[li] = server(li, data).start().await;
    for up in &upstreams {
        let up = *up;
        eventually(
            "queries after the server restart",
            Duration::from_secs(30),
            || async move { (query(up, "select 2").ok()? == "2").then_some(()) },
        )
        .await;
    }
    // One gateway instance dies: traffic goes through the other.
    gateways[0].sigterm();
    assert!(gateways[0].wait_exit(Duration::from_secs(30)).is_some());
    for _ in 0..4 {
        for up in &upstreams {
            assert_eq!(query(*up, "select 3").unwrap(), "3");
        }
    }

    // It comes back (same registration, same address) and takes traffic again.
    let mut p = Proc::spawn(
        "gateway-1-again",
        BIN,
        &[
            "connect",
            "envoy",
            "-gateway=terminating",
            "-register",
            "-service",
            "carbonio-gateway",
            "-proxy-id",
            "carbonio-gateway-1",
            "-address",
            &gateway_addrs[0],
            "-admin-bind",
            "127.0.0.1:0",
        ],
        &[("CONSUL_HTTP_ADDR", &gw_agents[0].base)],
    );
    let admin = admin_addr(&mut p);
    wait_ready(&mut p, &admin).await;
    gateways[0] = p;
    gateways[1].sigterm();
    assert!(gateways[1].wait_exit(Duration::from_secs(30)).is_some());
    for up in &upstreams {
        let up = *up;
        eventually(
            "queries through the restarted gateway",
            Duration::from_secs(30),
            || async move { (query(up, "select 4").ok()? == "4").then_some(()) },
        )
        .await;
    }

    // Teardown: the proxies go, the gateway registrations with them, and
    // `remove` undoes `add`.
    drop(sidecars);
    drop(gateways);
    for (i, a) in file_agents.iter().enumerate() {
        let (st, b) = a
            .put("/v1/agent/service/deregister/carbonio-files", "")
            .await;
        assert_eq!(st, 200, "files-{}: {b}", i + 1);
    }
    for (i, a) in gw_agents.iter().enumerate() {
        let (st, b) = a
            .put(
                &format!("/v1/agent/service/deregister/carbonio-gateway-{}", i + 1),
                "",
            )
            .await;
        assert_eq!(st, 200, "gateway-{}: {b}", i + 1);
    }
    let out = cli(
        &servers[2],
        &[
            "gateway",
            "external",
            "remove",
            "carbonio-files-db",
            "--gateway",
            "carbonio-gateway",
        ],
    );
    assert!(
        out.contains("carbonio-files-db is withdrawn from carbonio-gateway"),
        "{out}"
    );
    eventually(
        "the catalog and config entries are as before",
        Duration::from_secs(20),
        || async { (state(&servers[0]).await == before).then_some(()) },
    )
    .await;
}
