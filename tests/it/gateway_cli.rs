//! `meshgate gateway external add|remove` and `meshgate gateway status`
//! (issue 9): the one-command path publishes a real PostgreSQL through a real
//! gateway, is idempotent, keeps other linked services, stops on a failing
//! step, prints instead of doing with `--dry-run`, and `remove` leaves the
//! catalog and config entries as they were.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use meshgate_test_support::postgres::Postgres;
use meshgate_test_support::{Agent, Proc, eventually, free_port};
use serde_json::{Value, json};

use crate::BIN;
use crate::acl::{ROOT, acl_agent, call};
use crate::dataplane::{admin_addr, cli, wait_ready};

async fn get(a: &Agent, path: &str) -> (u16, Value) {
    let (st, b, _) = call(a, "GET", path, Some(ROOT), None).await;
    (st, serde_json::from_str(&b).unwrap_or(Value::Null))
}

/// What `remove` must restore: the catalog's nodes and services, and every
/// config entry (indexes left out).
pub async fn state(a: &Agent) -> Value {
    let (_, nodes) = get(a, "/v1/catalog/nodes").await;
    let mut out = serde_json::Map::new();
    for n in nodes.as_array().unwrap() {
        let name = n["Node"].as_str().unwrap();
        let (_, svcs) = get(a, &format!("/v1/catalog/node/{name}")).await;
        let keys: Vec<String> = svcs["Services"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        out.insert(format!("node {name}"), json!(keys));
    }
    for kind in [
        "terminating-gateway",
        "service-defaults",
        "service-intentions",
    ] {
        let (_, list) = get(a, &format!("/v1/config/{kind}")).await;
        for mut e in list.as_array().unwrap().clone() {
            let o = e.as_object_mut().unwrap();
            for k in [
                "CreateIndex",
                "ModifyIndex",
                "Hash",
                "CreatedAt",
                "UpdatedAt",
            ] {
                o.remove(k);
            }
            out.insert(format!("{kind} {}", e["Name"].as_str().unwrap()), e);
        }
    }
    Value::Object(out)
}

fn ok(r: (i32, String, String)) -> String {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    r.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_add_publishes_idempotently_and_remove_undoes_it() {
    let pg = Postgres::start("127.0.0.6", None);
    pg.psql(
        "postgres",
        "CREATE ROLE carbonio WITH LOGIN PASSWORD 'files-secret'",
    );
    pg.psql("postgres", "CREATE DATABASE files OWNER carbonio");
    let a = acl_agent().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token_file = d.join("gw/token").display().to_string();
    let units = d.join("units").display().to_string();
    // Another service is already linked to the gateway by hand.
    let (st, b, _) = call(
        &a,
        "PUT",
        "/v1/config",
        Some(ROOT),
        Some(
            json!({"Kind": "terminating-gateway", "Name": "carbonio-gateway",
                   "Services": [{"Name": "legacy-db"}]})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let before = state(&a).await;
    let port = pg.port.to_string();
    let add = [
        "gateway",
        "external",
        "add",
        "carbonio-files-db",
        "--address",
        "127.0.0.6",
        "--port",
        &port,
        "--gateway",
        "carbonio-gateway",
        "--protocol",
        "postgres",
        "--allow",
        "carbonio-files",
        "--token-file",
        &token_file,
        "--systemd",
        "--systemd-dir",
        &units,
    ];

    // A dry run changes nothing.
    let out = ok(cli(&a, ROOT, &[&add[..], &["--dry-run"]].concat()));
    assert!(out.contains("would PUT /v1/acl/policy"), "{out}");
    assert!(out.contains("would PUT /v1/catalog/register"), "{out}");
    assert!(
        out.contains(&format!("would write {token_file} (mode 600")),
        "{out}"
    );
    assert_eq!(state(&a).await, before, "a dry run changed something");
    assert!(!std::path::Path::new(&token_file).exists());

    // The real thing: seven steps, one line each.
    let out = ok(cli(&a, ROOT, &add));
    for i in 1..=7 {
        assert!(out.contains(&format!("[{i}/7] ")), "{out}");
    }
    assert!(
        out.contains("policy carbonio-gateway-policy: created"),
        "{out}"
    );
    assert!(out.contains("token: created"), "{out}");
    assert!(
        out.contains("linked carbonio-files-db (1 other linked services kept)"),
        "{out}"
    );
    // What it did.
    let meta = std::fs::metadata(&token_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let secret = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    let (st, me, _) = call(&a, "GET", "/v1/acl/token/self", Some(&secret), None).await;
    assert_eq!(st, 200, "{me}");
    assert!(me.contains("carbonio-gateway-policy"), "{me}");
    let (_, node) = get(&a, "/v1/catalog/node/carbonio-files-db-external-node").await;
    assert_eq!(node["Node"]["Meta"]["external-node"], "true");
    assert_eq!(node["Node"]["Meta"]["external-probe"], "true");
    assert_eq!(node["Services"]["carbonio-files-db"]["Port"], pg.port);
    let (_, entry) = get(&a, "/v1/config/terminating-gateway/carbonio-gateway").await;
    let names: Vec<&str> = entry["Services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["legacy-db", "carbonio-files-db"]);
    let (_, sd) = get(&a, "/v1/config/service-defaults/carbonio-files-db").await;
    assert_eq!(sd["Protocol"], "postgres");
    let (_, i) = get(
        &a,
        "/v1/connect/intentions/exact?source=carbonio-files&destination=carbonio-files-db",
    )
    .await;
    assert_eq!(i["Action"], "allow");
    let unit = std::fs::read_to_string(d.join("units/carbonio-gateway.service")).unwrap();
    assert!(
        unit.contains(&format!(
            "connect envoy -token-file {token_file} -admin-bind localhost:0 -gateway=terminating -register -service carbonio-gateway"
        )),
        "{unit}"
    );
    assert!(unit.contains("Restart=on-failure"), "{unit}");

    // Twice: nothing changes, and it says so.
    let snapshot = state(&a).await;
    let out = ok(cli(&a, ROOT, &add));
    assert!(out.contains("Nothing changed"), "{out}");
    assert!(
        out.matches("unchanged").count() + out.matches("already").count() >= 6,
        "{out}"
    );
    assert_eq!(state(&a).await, snapshot);
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap().trim(),
        secret,
        "the token was replaced"
    );

    // The published service works: the gateway runs with the token `add`
    // wrote, a sidecar reaches the database through it.
    let gw_port = free_port("127.0.0.1");
    let mut gateway = Proc::spawn(
        "gateway",
        BIN,
        &[
            "connect",
            "envoy",
            "-token-file",
            &token_file,
            "-admin-bind",
            "localhost:0",
            "-gateway=terminating",
            "-register",
            "-service",
            "carbonio-gateway",
            "-address",
            &format!("127.0.0.1:{gw_port}"),
        ],
        &[("CONSUL_HTTP_ADDR", &a.base)],
    );
    let gw_admin = admin_addr(&mut gateway);
    wait_ready(&mut gateway, &gw_admin).await;
    let upstream = free_port("127.0.0.1");
    let (st, b, _) = call(
        &a,
        "PUT",
        "/v1/agent/service/register",
        Some(ROOT),
        Some(
            json!({"Name": "carbonio-files", "Port": 10000,
                   "Connect": {"SidecarService": {"Port": free_port("127.0.0.1"), "Address": "127.0.0.1",
                      "Proxy": {"Upstreams": [{"DestinationName": "carbonio-files-db",
                                               "LocalBindAddress": "127.0.0.1", "LocalBindPort": upstream}]}}}})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(st, 200, "{b}");
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
        &[("CONSUL_HTTP_ADDR", &a.base), ("CONSUL_HTTP_TOKEN", ROOT)],
    );
    let sc_admin = admin_addr(&mut sidecar);
    wait_ready(&mut sidecar, &sc_admin).await;
    let c = eventually(
        "the database answers through the mesh",
        Duration::from_secs(20),
        || async {
            crate::dataplane::pg_client(upstream, "files-secret")
                .await
                .ok()
        },
    )
    .await;
    let row = c.query_one("select 41 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);

    // `gateway status`: the instance with its open connection, the linked
    // services, the external instance and its health.
    let out = eventually(
        "status shows the open connection",
        Duration::from_secs(20),
        || async {
            let out = ok(cli(&a, ROOT, &["gateway", "status", "carbonio-gateway"]));
            (out.contains("1 open connections (admin")
                && out.contains(&format!("127.0.0.6:{port}  passing")))
            .then_some(out)
        },
    )
    .await;
    assert!(out.starts_with("Gateway carbonio-gateway\n"), "{out}");
    assert!(out.contains("carbonio-files-db  protocol postgres  TLS to the service: none (plain TCP)  1 open connections"), "{out}");
    assert!(
        out.contains(&format!(
            "carbonio-files-db-external-node 127.0.0.6:{}  passing",
            pg.port
        )),
        "{out}"
    );
    assert!(out.contains("legacy-db  protocol tcp"), "{out}");
    let all = ok(cli(&a, ROOT, &["gateway", "status"]));
    assert!(all.contains("Gateway carbonio-gateway"), "{all}");
    drop(c);
    drop(sidecar);
    drop(gateway);
    // The proxies' own registrations are not `add`'s business (the sidecar
    // goes with the service it belongs to).
    for id in ["carbonio-files", "carbonio-gateway"] {
        let (st, b, _) = call(
            &a,
            "PUT",
            &format!("/v1/agent/service/deregister/{id}"),
            Some(ROOT),
            None,
        )
        .await;
        assert_eq!(st, 200, "{b}");
    }

    // remove, dry: nothing changes.
    let rm = [
        "gateway",
        "external",
        "remove",
        "carbonio-files-db",
        "--gateway",
        "carbonio-gateway",
        "--token-file",
        &token_file,
        "--systemd-dir",
        &units,
    ];
    let snapshot = state(&a).await;
    let out = ok(cli(&a, ROOT, &[&rm[..], &["--dry-run"]].concat()));
    assert!(out.contains("would PUT /v1/catalog/deregister"), "{out}");
    assert_eq!(state(&a).await, snapshot);
    // remove: back to where we started, other linked services untouched; the
    // gateway still fronts legacy-db, so its token, policy and unit stay.
    let out = ok(cli(&a, ROOT, &rm));
    assert!(
        out.contains("catalog: deregistered node carbonio-files-db-external-node"),
        "{out}"
    );
    assert!(
        out.contains("unlinked carbonio-files-db (1 other linked services kept)"),
        "{out}"
    );
    assert_eq!(state(&a).await, before);
    assert!(std::path::Path::new(&token_file).exists());
    let (_, p) = get(&a, "/v1/acl/policy/name/carbonio-gateway-policy").await;
    assert!(
        !p["Rules"].as_str().unwrap().contains("carbonio-files-db"),
        "{p}"
    );
    // Again: nothing to do.
    let out = ok(cli(&a, ROOT, &rm));
    assert!(out.contains("Nothing changed"), "{out}");
    // The last linked service: the entry, the policy, the token, its file and
    // the unit go.
    let out = ok(cli(
        &a,
        ROOT,
        &[
            "gateway",
            "external",
            "remove",
            "legacy-db",
            "--gateway",
            "carbonio-gateway",
            "--token-file",
            &token_file,
            "--systemd-dir",
            &units,
        ],
    ));
    assert!(out.contains("deleted (no linked service left)"), "{out}");
    let (st, _) = get(&a, "/v1/config/terminating-gateway/carbonio-gateway").await;
    assert_eq!(st, 404);
    let (st, _) = get(&a, "/v1/acl/policy/name/carbonio-gateway-policy").await;
    assert_eq!(st, 404);
    let (st, _, _) = call(&a, "GET", "/v1/acl/token/self", Some(&secret), None).await;
    assert_eq!(st, 403);
    assert!(!std::path::Path::new(&token_file).exists());
    assert!(!d.join("units/carbonio-gateway.service").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_add_stops_at_a_failing_step_and_refuses_bad_flags() {
    let a = acl_agent().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Bad flags: clear errors, nothing done.
    let (code, _, err) = cli(
        &a,
        ROOT,
        &[
            "gateway",
            "external",
            "add",
            "db",
            "--address",
            "127.0.0.7",
            "--port",
            "5432",
            "--gateway",
            "gw",
            "--ca-file",
            &d.join("missing.pem").display().to_string(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("missing.pem: no such file"), "{err}");
    let (code, _, err) = cli(
        &a,
        ROOT,
        &[
            "gateway",
            "external",
            "add",
            "db",
            "--address",
            "127.0.0.7",
            "--port",
            "5432",
            "--gateway",
            "gw",
            "--sni",
            "db.example.com",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("--sni needs --ca-file"), "{err}");
    let (code, _, err) = cli(
        &a,
        ROOT,
        &[
            "gateway",
            "external",
            "add",
            "db",
            "--address",
            "127.0.0.7",
            "--port",
            "x",
            "--gateway",
            "gw",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("--port"), "{err}");
    let (code, _, err) = cli(
        &a,
        ROOT,
        &[
            "gateway",
            "external",
            "add",
            "db/x",
            "--address",
            "h",
            "--port",
            "1",
            "--gateway",
            "gw",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("Invalid service name"), "{err}");
    let (_, policies) = get(&a, "/v1/acl/policies").await;
    let before = policies.as_array().unwrap().len();

    // A token that may not write policies: step 1 fails and says why.
    let (st, b, _) = call(
        &a,
        "PUT",
        "/v1/acl/policy",
        Some(ROOT),
        Some(
            json!({"Name": "reader", "Rules": "service_prefix \"\" { policy = \"read\" }"})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let (_, t, _) = call(
        &a,
        "PUT",
        "/v1/acl/token",
        Some(ROOT),
        Some(json!({"Policies": [{"Name": "reader"}]}).to_string()),
    )
    .await;
    let reader: Value = serde_json::from_str(&t).unwrap();
    let reader = reader["SecretID"].as_str().unwrap().to_string();
    let args = [
        "gateway",
        "external",
        "add",
        "db",
        "--address",
        "127.0.0.7",
        "--port",
        "5432",
        "--gateway",
        "gw",
    ];
    let tf = d.join("token").display().to_string();
    let (code, out, err) = cli(&a, &reader, &[&args[..], &["--token-file", &tf]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("step 1/7 (policy) failed"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    let (_, policies) = get(&a, "/v1/acl/policies").await;
    assert_eq!(policies.as_array().unwrap().len(), before + 1);
    // A token file that cannot be written (its directory is a file): step 2
    // fails after step 1, and no partial file is left.
    let blocker = d.join("blocker");
    std::fs::write(&blocker, "not a directory").unwrap();
    let tf = blocker.join("token").display().to_string();
    let (code, out, err) = cli(&a, ROOT, &[&args[..], &["--token-file", &tf]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[1/7] policy gw-policy: created"), "{out}");
    assert!(err.contains("step 2/7 (token) failed"), "{err}");
    let (_, node) = get(&a, "/v1/catalog/node/db-external-node").await;
    assert_eq!(node, Value::Null, "steps after the failing one ran");
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}
