//! The data plane end to end: a real PostgreSQL as the external database,
//! an agent with ACLs, the gateway started as the scenario's systemd unit
//! does, a sidecar, and real PostgreSQL clients (psql and tokio-postgres).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use meshgate_test_support::postgres::{Postgres, ServerTls, bin_dir, psql_path};
use meshgate_test_support::{Agent, Proc, eventually, free_port};
use serde_json::{Value, json};

use crate::BIN;
use crate::acl::{ROOT, SCENARIO_POLICY, acl_agent, call};

/// A test CA and a server certificate for `dns_name`, PEM.
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn test_ca(dns_name: &str) -> TestCa {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "meshgate test database CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec![dns_name.to_string()]).expect("server params");
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    TestCa {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Runs the CLI against `a` with `token`; returns (code, stdout, stderr).
pub fn cli(a: &Agent, token: &str, args: &[&str]) -> (i32, String, String) {
    cli_env(a, token, args, &[])
}

/// [`cli`] with more environment variables.
fn cli_env(a: &Agent, token: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("CONSUL_HTTP_ADDR", &a.base)
        .env("CONSUL_HTTP_TOKEN", token)
        .env_remove("MESHGATE_HTTP_TOKEN")
        .env_remove("MESHGATE_HTTP_ADDR")
        .envs(env.iter().copied())
        .output()
        .expect("run meshgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn ok(r: (i32, String, String)) -> String {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    r.1
}

/// Whether a process ignores SIGPIPE (a proxy writing to a peer that reset
/// must get EPIPE, not die).
pub fn ignores_sigpipe(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (13 - 1)) != 0)
}

/// The names of a process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// Whether a process runs with transparent huge pages turned off for itself
/// (`THP_enabled: 0` in its status): the proxies do, to keep their idle
/// memory small.
pub fn huge_pages_off(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .is_some_and(|v| v.trim() == "0")
}

/// The admin address a proxy logged.
pub fn admin_addr(p: &mut Proc) -> String {
    let line = p.wait_log("admin endpoint on http://", Duration::from_secs(20));
    line.split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("admin address")
        .to_string()
}

/// Waits until the proxy says it is ready.
pub async fn wait_ready(p: &mut Proc, admin: &str) {
    let http = meshgate_test_support::client();
    let url = format!("http://{admin}/ready");
    let mut last = String::new();
    for _ in 0..500 {
        if let Ok(r) = http.get(&url).send().await {
            let ok = r.status().is_success();
            last = r.text().await.unwrap_or_default();
            if ok {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} not ready: {last}\n{}", p.name, p.log());
}

/// The proxy's `/metrics` text.
async fn metrics_text(admin: &str) -> String {
    meshgate_test_support::client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// A proxy's `/config` (None while it does not answer).
pub async fn admin_config(admin: &str) -> Option<Value> {
    meshgate_test_support::client()
        .get(format!("http://{admin}/config"))
        .send()
        .await
        .ok()?
        .json::<Value>()
        .await
        .ok()
}

/// `PUT /v1/config` with `body` (a config entry as JSON), which must be
/// written.
async fn put_config(a: &Agent, body: impl Into<String>) {
    let (st, b) = a.put("/v1/config", body.into()).await;
    assert_eq!(st, 200, "{b}");
}

/// A counter of the proxy's `/metrics`.
pub async fn metric(admin: &str, name: &str, service: &str) -> u64 {
    let text = metrics_text(admin).await;
    let prefix = format!("meshgate_proxy_{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(&format!("service=\"{service}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .next()
        .unwrap_or(0)
}

/// The open connections on each of a proxy's connection threads, first
/// thread first (`meshgate_proxy_thread_connections`).
pub async fn thread_connections(admin: &str) -> Vec<u64> {
    metrics_text(admin)
        .await
        .lines()
        .filter(|l| l.starts_with("meshgate_proxy_thread_connections{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .collect()
}

/// psql through `port` on 127.0.0.1 as the scenario's database user.
pub fn psql_via(port: u16, password: &str, sql: &str, sslmode: &str) -> Result<String, String> {
    let out = Command::new(psql_path(&bin_dir()))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(format!(
            "host=127.0.0.1 port={port} user=carbonio dbname=files sslmode={sslmode} connect_timeout=5"
        ))
        .args(["-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .map_err(|e| format!("run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// A tokio-postgres client through `port`.
pub async fn pg_client(port: u16, password: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=carbonio password={password} dbname=files connect_timeout=5"),
        tokio_postgres::NoTls,
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Whether the server sees this session encrypted (`pg_stat_ssl`).
pub async fn session_ssl(c: &tokio_postgres::Client) -> (bool, String) {
    let row = c
        .query_one(
            "select ssl, coalesce(version, '') from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    (row.get(0), row.get(1))
}

/// The external database of the scenario, with TLS from a test CA.
pub struct Scene {
    pub pg: Postgres,
    /// Where the gateway listens.
    pub gateway_addr: String,
    pub ca: TestCa,
    pub dir: tempfile::TempDir,
    pub agent: Agent,
    pub gateway: Proc,
    pub gw_admin: String,
    pub sidecar: Proc,
    pub sc_admin: String,
    pub upstream_port: u16,
    pub password: String,
}

pub const DB_SNI: &str = "db.meshgate.test";

/// Envoy's termination detail for a connection intentions refused, as the
/// access logs give it.
const DENIED: &str = "rbac_access_denied_matched_policy[none]";

/// Steps 2–10 of the scenario, as the operator types them.
pub async fn scenario() -> Scene {
    scenario_at(None).await
}

/// The scenario with the gateway on `address` (`-address host:port`)
/// instead of the default port 8443, so that tests can run side by side.
pub async fn scenario_at(address: Option<String>) -> Scene {
    let ca = test_ca(DB_SNI);
    let pg = Postgres::start(
        "127.0.0.2",
        Some(ServerTls {
            cert_pem: ca.cert_pem.clone(),
            key_pem: ca.key_pem.clone(),
        }),
    );
    // Step 9: the database role and database.
    pg.psql(
        "postgres",
        "CREATE ROLE carbonio WITH LOGIN PASSWORD 'files-secret'",
    );
    pg.psql("postgres", "CREATE DATABASE files OWNER carbonio");

    let a = acl_agent().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Step 2: the policy file and the policy.
    std::fs::write(d.join("policies.json"), SCENARIO_POLICY).unwrap();
    let rules = format!("@{}", d.join("policies.json").display());
    ok(cli(
        &a,
        ROOT,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "carbonio-gateway-policy",
            "-description",
            "Policy for carbonio-gateway",
            "-rules",
            &rules,
        ],
    ));
    // Step 4: the token, saved to a file (`| jq -r '.SecretID' > token`).
    let out = ok(cli(
        &a,
        ROOT,
        &[
            "acl",
            "token",
            "create",
            "-format",
            "json",
            "-policy-name",
            "carbonio-gateway-policy",
            "-description",
            "Token for carbonio-gateway",
        ],
    ));
    let token: Value = serde_json::from_str(&out).unwrap();
    let token_file = d.join("token");
    std::fs::write(
        &token_file,
        format!("{}\n", token["SecretID"].as_str().unwrap()),
    )
    .unwrap();
    // Step 5: the external service.
    let (s, b, _) = call(
        &a,
        "PUT",
        "/v1/catalog/register",
        Some(ROOT),
        Some(
            json!({"Address": "127.0.0.2", "Node": "external-files-db-node",
                   "NodeMeta": {"external-node": "true", "external-probe": "true"},
                   "Service": {"ID": "carbonio-gateway", "Port": pg.port, "Service": "carbonio-files-db"}})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // Step 6: the gateway's config entry.
    write_gateway_config(&a, d, None);
    // Step 8: the credentials in KV.
    for (k, v) in [
        ("db-name", "files"),
        ("db-username", "carbonio"),
        ("db-password", "files-secret"),
    ] {
        ok(cli(
            &a,
            ROOT,
            &["kv", "put", &format!("carbonio-files/{k}"), v],
        ));
    }
    // The mesh lets the file service use its database.
    let (s, b, _) = call(
        &a,
        "PUT",
        "/v1/connect/intentions/exact?source=carbonio-files&destination=carbonio-files-db",
        Some(ROOT),
        Some(json!({"Action": "allow"}).to_string()),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // Step 7: the gateway, as the unit's ExecStart runs it.
    let token_path = token_file.display().to_string();
    let mut args = vec![
        "connect",
        "envoy",
        "-token-file",
        &token_path,
        "-admin-bind",
        "localhost:0",
        "-gateway=terminating",
        "-register",
        "-service",
        "carbonio-gateway",
    ];
    if let Some(addr) = &address {
        args.extend(["-address", addr.as_str()]);
    }
    // Envoy's arguments after `--`, as units pass them: the log level, and
    // the number of threads (a proxy otherwise runs a thread per CPU).
    args.extend(["--", "-l", "debug", "--concurrency", "8"]);
    let mut gateway = Proc::spawn("gateway", BIN, &args, &[("CONSUL_HTTP_ADDR", &a.base)]);
    let gw_admin = admin_addr(&mut gateway);
    wait_ready(&mut gateway, &gw_admin).await;
    // Step 10: the file service with its sidecar and upstream.
    let public = free_port("127.0.0.1");
    let upstream_port = free_port("127.0.0.1");
    let (s, b, _) = call(
        &a,
        "PUT",
        "/v1/agent/service/register",
        Some(ROOT),
        Some(
            json!({"Name": "carbonio-files", "Port": 10000,
                   "Connect": {"SidecarService": {"Port": public, "Address": "127.0.0.1",
                      "Proxy": {"Upstreams": [{"DestinationName": "carbonio-files-db",
                                               "LocalBindAddress": "127.0.0.1",
                                               "LocalBindPort": upstream_port}]}}}})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(s, 200, "{b}");
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
        &[
            ("CONSUL_HTTP_ADDR", &a.base),
            ("CONSUL_HTTP_TOKEN", ROOT),
            ("MESHGATE_WORKER_THREADS", "1"),
        ],
    );
    let sc_admin = admin_addr(&mut sidecar);
    wait_ready(&mut sidecar, &sc_admin).await;
    // Both proxies survive peers that reset: SIGPIPE is ignored (the CLI's
    // reset of SIGPIPE, for `meshgate kv get | head`, is not for them).
    assert!(
        ignores_sigpipe(gateway.pid()),
        "the gateway dies on SIGPIPE"
    );
    assert!(
        ignores_sigpipe(sidecar.pid()),
        "the sidecar dies on SIGPIPE"
    );
    // The gateway carries connections on the eight threads asked for: its
    // main thread and seven more (by default it would have one per CPU);
    // the sidecar, told one thread by its environment, on its main thread
    // alone (and at most one blocking helper).
    let conn_threads = |pid| {
        let names = thread_names(pid);
        let n = names
            .iter()
            .filter(|n| n.starts_with("meshgate-conn-"))
            .count();
        (n, names)
    };
    let (gw_threads, names) = conn_threads(gateway.pid());
    assert_eq!(gw_threads, 7, "gateway threads: {names:?}");
    let (sc_threads, names) = conn_threads(sidecar.pid());
    assert_eq!(sc_threads, 0, "sidecar threads: {names:?}");
    assert!(names.len() <= 2, "sidecar threads: {names:?}");
    // A thread count that is not a number is refused before anything
    // starts (0 is one thread, as with Envoy).
    for bad in ["-1", "many"] {
        let (code, _, err) = cli(
            &a,
            ROOT,
            &[
                "connect",
                "proxy",
                "-sidecar-for",
                "carbonio-files",
                "--",
                "--concurrency",
                bad,
            ],
        );
        assert_eq!(code, 1, "--concurrency {bad}: {err}");
        assert!(err.contains("Invalid --concurrency"), "{err}");
    }
    // So is a bad number of connections per thread.
    let (code, _, err) = cli_env(
        &a,
        ROOT,
        &["connect", "proxy", "-sidecar-for", "carbonio-files"],
        &[("MESHGATE_CONNS_PER_THREAD", "none")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Invalid MESHGATE_CONNS_PER_THREAD"), "{err}");
    // And a bad number of threads, for a proxy and for any other command.
    for args in [
        &["connect", "proxy", "-sidecar-for", "carbonio-files"][..],
        &["kv", "get", "carbonio-files/db-password"],
    ] {
        let (code, _, err) = cli_env(&a, ROOT, args, &[("MESHGATE_WORKER_THREADS", "0")]);
        assert_eq!(code, 1, "{err}");
        assert_eq!(
            err,
            "Invalid MESHGATE_WORKER_THREADS \"0\": the number of threads that run meshgate's tasks, 1 or more\n"
        );
    }
    // ... and run on small pages (they executed themselves again for it,
    // keeping their pid and arguments), as does the agent.
    for (name, p) in [("gateway", &gateway), ("sidecar", &sidecar)] {
        assert!(huge_pages_off(p.pid()), "the {name} runs with huge pages");
    }
    let agent_pid = a.pid().expect("the agent runs");
    assert!(huge_pages_off(agent_pid), "the agent runs with huge pages");
    let password = ok(cli(&a, ROOT, &["kv", "get", "carbonio-files/db-password"]))
        .trim()
        .to_string();
    Scene {
        pg,
        gateway_addr: address.unwrap_or_else(|| "127.0.0.1:8443".into()),
        ca,
        dir,
        agent: a,
        gateway,
        gw_admin,
        sidecar,
        sc_admin,
        upstream_port,
        password,
    }
}

/// Writes the scenario's gateway file (optionally with CAFile and SNI) and
/// applies it.
pub fn write_gateway_config(a: &Agent, d: &Path, tls: Option<(&Path, &str)>) {
    let extra = match tls {
        Some((ca, sni)) => format!("    CAFile = \"{}\"\n    SNI    = \"{sni}\"\n", ca.display()),
        None => "    # CAFile = \"/etc/ssl/certs/external-db-ca.pem\"\n    # SNI    = \"external-database.example.com\"\n".into(),
    };
    let hcl = format!(
        "Kind = \"terminating-gateway\"\nName = \"carbonio-gateway\"\nServices = [\n  {{\n    Name = \"carbonio-files-db\"\n{extra}  }}\n]\n"
    );
    let path = d.join("gateway-config.hcl");
    std::fs::write(&path, hcl).unwrap();
    let out = ok(cli(
        a,
        ROOT,
        &["config", "write", &path.display().to_string()],
    ));
    assert!(
        out.contains("Config entry written: terminating-gateway/carbonio-gateway"),
        "{out}"
    );
}

/// Waits until a psql query through the upstream gives `want` (or, with
/// `want = None`, fails); returns the last result.
pub async fn eventually_psql(
    scene: &Scene,
    sql: &str,
    want: Option<&str>,
) -> Result<String, String> {
    let port = scene.upstream_port;
    let pw = scene.password.clone();
    let sql = sql.to_string();
    let want = want.map(str::to_string);
    eventually(
        "the query through the mesh gives the expected result",
        Duration::from_secs(10),
        || {
            let r = psql_via(port, &pw, &sql, "prefer");
            let want = want.clone();
            async move {
                match (&want, &r) {
                    (Some(w), Ok(out)) if out == w => Some(r),
                    (None, Err(_)) => Some(r),
                    _ => None,
                }
            }
        },
    )
    .await
}

#[tokio::test]
async fn scenario_end_to_end_through_the_gateway() {
    let mut s = scenario().await;
    let d = s.dir.path().to_path_buf();
    // psql and a Rust client reach the external database through the mesh.
    let out = eventually_psql(
        &s,
        "select current_user || '@' || current_database()",
        Some("carbonio@files"),
    )
    .await
    .unwrap();
    assert_eq!(out, "carbonio@files");
    let c = pg_client(s.upstream_port, &s.password).await.unwrap();
    c.batch_execute(
        "create table files (id int primary key, name text); insert into files values (1, 'a.txt')",
    )
    .await
    .unwrap();
    let row = c
        .query_one("select name from files where id = 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "a.txt");
    // It really is the external database that got the row.
    assert_eq!(s.pg.psql("files", "select name from files"), "a.txt");
    assert!(metric(&s.sc_admin, "connections_opened_total", "carbonio-files-db").await >= 2);
    // The gateway's eight threads are all counted, and its few connections
    // are packed on the first (a thread takes 16 before the next gets any).
    let per_thread = thread_connections(&s.gw_admin).await;
    assert_eq!(per_thread.len(), 8, "{per_thread:?}");
    assert!(per_thread[0] >= 1, "{per_thread:?}");
    assert!(per_thread[1..].iter().all(|n| *n == 0), "{per_thread:?}");
    assert!(s.sidecar.running());
    // Without CAFile the gateway speaks plain TCP to the database.
    assert!(!session_ssl(&c).await.0);
    // The gateway registered itself; mesh clients of the database find it.
    let (_, list, _) = call(
        &s.agent,
        "GET",
        "/v1/health/connect/carbonio-files-db",
        Some(ROOT),
        None,
    )
    .await;
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["Service"]["Service"], "carbonio-gateway");
    assert_eq!(list[0]["Service"]["Port"], 8443);
    assert!(
        s.gateway.log().contains("DEBUG"),
        "-- -l debug raises the log level"
    );

    // TLS origination with PostgreSQL's SSLRequest.
    let ca_path = d.join("db-ca.pem");
    std::fs::write(&ca_path, &s.ca.ca_pem).unwrap();
    ok(cli(
        &s.agent,
        ROOT,
        &[
            "config",
            "write",
            &write_file(
                &d,
                "db-defaults.hcl",
                "Kind = \"service-defaults\"\nName = \"carbonio-files-db\"\nProtocol = \"postgres\"\n",
            ),
        ],
    ));
    write_gateway_config(&s.agent, &d, Some((&ca_path, DB_SNI)));
    let ssl = eventually(
        "new sessions are encrypted by the gateway",
        Duration::from_secs(10),
        || {
            let port = s.upstream_port;
            let pw = s.password.clone();
            async move {
                let c = pg_client(port, &pw).await.ok()?;
                let (ssl, version) = session_ssl(&c).await;
                ssl.then_some(version)
            }
        },
    )
    .await;
    assert!(ssl.starts_with("TLSv1."), "{ssl}");
    // The old session, opened before, still works: configuration changes
    // never reset established connections.
    let row = c
        .query_one("select count(*) from files", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    // The CA file is re-read when it changes: a wrong CA written over it
    // breaks new connections, the right one restores them, and a session
    // opened through TLS stays up throughout.
    let tls_session = pg_client(s.upstream_port, &s.password).await.unwrap();
    assert!(session_ssl(&tls_session).await.0);
    let wrong = test_ca(DB_SNI);
    std::fs::write(&ca_path, &wrong.ca_pem).unwrap();
    assert!(eventually_psql(&s, "select 1", None).await.is_err());
    std::fs::write(&ca_path, &s.ca.ca_pem).unwrap();
    eventually_psql(&s, "select 1", Some("1")).await.unwrap();
    assert!(
        session_ssl(&tls_session).await.0,
        "the TLS session survived the reloads"
    );
    drop(tls_session);
    // sslmode=prefer clients are told N inside the mesh and carry on.
    let out = psql_via(
        s.upstream_port,
        &s.password,
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        "prefer",
    )
    .unwrap();
    assert_eq!(out, "t");
    // sslmode=require cannot be satisfied by the gateway (it answers N).
    assert!(psql_via(s.upstream_port, &s.password, "select 1", "require").is_err());

    // An intention deny refuses the next connection, and says so.
    let (st, b, _) = call(
        &s.agent,
        "PUT",
        "/v1/connect/intentions/exact?source=carbonio-files&destination=carbonio-files-db",
        Some(ROOT),
        Some(json!({"Action": "deny"}).to_string()),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let r = eventually_psql(&s, "select 1", None).await;
    assert!(r.is_err());
    assert!(
        metric(
            &s.gw_admin,
            "authorization_denied_total",
            "carbonio-files-db"
        )
        .await
            >= 1
    );
    s.gateway
        .wait_log("connection denied", Duration::from_secs(5));
    assert!(
        s.gateway.log().contains("source=carbonio-files"),
        "the caller is named"
    );
    // The established session survives the revocation (documented).
    assert!(c.query_one("select 1", &[]).await.is_ok());
    let (st, _, _) = call(
        &s.agent,
        "PUT",
        "/v1/connect/intentions/exact?source=carbonio-files&destination=carbonio-files-db",
        Some(ROOT),
        Some(json!({"Action": "allow"}).to_string()),
    )
    .await;
    assert_eq!(st, 200);
    eventually_psql(&s, "select 1", Some("1")).await.unwrap();

    // A wrong CA, then a wrong SNI: clear failures, counted.
    let other = test_ca(DB_SNI);
    let wrong_ca = d.join("wrong-ca.pem");
    std::fs::write(&wrong_ca, &other.ca_pem).unwrap();
    write_gateway_config(&s.agent, &d, Some((&wrong_ca, DB_SNI)));
    assert!(eventually_psql(&s, "select 1", None).await.is_err());
    s.gateway
        .wait_log("TLS to 127.0.0.2", Duration::from_secs(5));
    assert!(
        metric(
            &s.gw_admin,
            "upstream_tls_failures_total",
            "carbonio-files-db"
        )
        .await
            >= 1
    );
    write_gateway_config(&s.agent, &d, Some((&ca_path, "not-the-db.meshgate.test")));
    assert!(eventually_psql(&s, "select 1", None).await.is_err());
    s.gateway.wait_log(
        "not valid for name \"not-the-db.meshgate.test\"",
        Duration::from_secs(10),
    );
    write_gateway_config(&s.agent, &d, Some((&ca_path, DB_SNI)));
    eventually_psql(&s, "select 1", Some("1")).await.unwrap();

    // The admin endpoint shows the configuration without secrets.
    let cfg: Value = meshgate_test_support::client()
        .get(format!("http://{}/config", s.gw_admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["Services"][0]["Service"], "carbonio-files-db");
    assert_eq!(cfg["Services"][0]["Protocol"], "postgres");
    assert_eq!(cfg["Services"][0]["UpstreamTLS"]["Originating"], true);
    assert!(!cfg.to_string().contains("PRIVATE KEY"));

    // Step 11: teardown.
    drop(c);
    let active = eventually("the old session is closed", Duration::from_secs(10), || {
        let admin = s.gw_admin.clone();
        async move {
            let n = metric(&admin, "connections_active", "carbonio-files-db").await;
            (n == 0).then_some(n)
        }
    })
    .await;
    assert_eq!(active, 0);
    s.gateway.sigterm();
    let Some(st) = s.gateway.wait_exit(Duration::from_secs(20)) else {
        panic!("the gateway did not stop on SIGTERM:\n{}", s.gateway.log());
    };
    assert!(st.success(), "{st}");
    ok(cli(
        &s.agent,
        ROOT,
        &[
            "config",
            "delete",
            "-kind",
            "terminating-gateway",
            "-name",
            "carbonio-gateway",
        ],
    ));
    for id in ["carbonio-gateway"] {
        let (st, b, _) = call(
            &s.agent,
            "PUT",
            &format!("/v1/agent/service/deregister/{id}"),
            Some(ROOT),
            None,
        )
        .await;
        assert_eq!(st, 200, "{b}");
    }
    let (_, list, _) = call(
        &s.agent,
        "GET",
        "/v1/catalog/gateway-services/carbonio-gateway",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!(list, "[]");
    let (st, list, _) = call(
        &s.agent,
        "GET",
        "/v1/health/connect/carbonio-files-db",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!((st, list.as_str()), (200, "[]"));
    assert!(psql_via(s.upstream_port, &s.password, "select 1", "prefer").is_err());
}

fn write_file(d: &Path, name: &str, text: &str) -> String {
    let p = d.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

// === Refusals, rotation, limits, drain, agent loss, sidecar to sidecar ===

/// A raw mesh mTLS client: connects to `addr` with `sni`, presenting
/// `leaf`/`key`, expecting the server to be `expect`. Returns an error when
/// the handshake fails or the server rejects the client right after it.
pub async fn mesh_connect(
    addr: &str,
    sni: &str,
    leaf: &str,
    key: &str,
    roots: &[String],
    expect: meshgate_ca::ServiceId,
) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let cfg = meshgate_ca::tls::client_config(leaf, key, roots, expect, &Default::default())
        .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // TLS 1.3: a rejected client certificate shows on the first read. An
    // accepted one leaves the gateway waiting for the client to speak.
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(500), tls.read(&mut b)).await {
        Err(_) => Ok(()),
        Ok(Ok(0)) => Err("closed by the server".into()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("rejected: {e}")),
    }
}

async fn get_root(a: &Agent, path: &str) -> Value {
    let (st, b, _) = call(a, "GET", path, Some(ROOT), None).await;
    assert_eq!(st, 200, "{path}: {b}");
    serde_json::from_str(&b).unwrap()
}

#[tokio::test]
async fn refusals_rotation_without_loss_and_limits() {
    let addr = format!("127.0.0.31:{}", free_port("127.0.0.31"));
    let mut s = scenario_at(Some(addr)).await;
    let addr = s.gateway_addr.clone();
    let roots = get_root(&s.agent, "/v1/connect/ca/roots").await;
    let td = roots["TrustDomain"].as_str().unwrap().to_string();
    let root_pems: Vec<String> = roots["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["RootCert"].as_str().unwrap().to_string())
        .collect();
    let leaf = get_root(&s.agent, "/v1/agent/connect/ca/leaf/carbonio-files").await;
    let (cert, key) = (
        leaf["CertPEM"].as_str().unwrap(),
        leaf["PrivateKeyPEM"].as_str().unwrap(),
    );
    let db = meshgate_ca::ServiceId::new(&td, "default", "dc1", "carbonio-files-db");
    let sni = db.sni();
    // A caller with a good certificate gets through the handshake.
    mesh_connect(&addr, &sni, cert, key, &root_pems, db.clone())
        .await
        .unwrap();
    // Unknown SNI: no certificate for it, refused and counted.
    let unknown = meshgate_ca::ServiceId::new(&td, "default", "dc1", "nope");
    let e = mesh_connect(&addr, &unknown.sni(), cert, key, &root_pems, unknown)
        .await
        .unwrap_err();
    assert!(e.contains("handshake"), "{e}");
    // A certificate from another CA.
    let (foreign_root, foreign_signer) = meshgate_ca::new_root(
        "11111111-2222-3333-4444-555555555555",
        Duration::from_secs(86400),
    )
    .unwrap();
    let caller = meshgate_ca::ServiceId::new(
        "11111111-2222-3333-4444-555555555555.consul",
        "default",
        "dc1",
        "carbonio-files",
    );
    let f = meshgate_ca::sign_leaf(
        &foreign_signer,
        &foreign_root,
        &caller,
        Duration::from_secs(3600),
        None,
    )
    .unwrap();
    assert!(
        mesh_connect(
            &addr,
            &sni,
            &f.cert_pem,
            &f.private_key_pem,
            &root_pems,
            db.clone()
        )
        .await
        .is_err()
    );
    s.gateway
        .wait_log("mesh TLS handshake refused", Duration::from_secs(5));
    assert!(metric(&s.gw_admin, "tls_handshake_failures_total", "").await >= 2);

    // An open session survives a root rotation (new leaves everywhere).
    let c = pg_client(s.upstream_port, &s.password).await.unwrap();
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    let cfg_before: Value = meshgate_test_support::client()
        .get(format!("http://{}/config", s.gw_admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cluster = td.trim_end_matches(".consul");
    let (new_root, signer) =
        meshgate_ca::new_root(cluster, Duration::from_secs(3650 * 86400)).unwrap();
    let (st, b, _) = call(
        &s.agent,
        "PUT",
        "/v1/connect/ca/configuration",
        Some(ROOT),
        Some(json!({"Provider": "consul", "Config": {"PrivateKey": signer.key_pem, "RootCert": new_root.root_cert_pem}}).to_string()),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let admin = s.gw_admin.clone();
    let before = cfg_before["Services"][0]["LeafSerial"].clone();
    assert!(
        before.as_str().is_some_and(|s| !s.is_empty()),
        "{cfg_before}"
    );
    eventually(
        "the gateway uses a leaf from the new root",
        Duration::from_secs(10),
        || {
            let admin = admin.clone();
            let before = before.clone();
            async move {
                let cfg: Value = meshgate_test_support::client()
                    .get(format!("http://{admin}/config"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (cfg["Services"][0]["LeafSerial"] != before).then_some(())
            }
        },
    )
    .await;
    eventually_psql(&s, "select 2", Some("2")).await.unwrap();
    assert_eq!(
        c.query_one("select 3", &[]).await.unwrap().get::<_, i32>(0),
        3,
        "the old session survived"
    );
    // An expired certificate of the (new) mesh CA is refused.
    let expired = meshgate_ca::sign_leaf(
        &signer,
        &new_root,
        &meshgate_ca::ServiceId::new(&td, "default", "dc1", "carbonio-files"),
        Duration::from_secs(1),
        None,
    )
    .unwrap();
    let roots_now: Vec<String> = get_root(&s.agent, "/v1/connect/ca/roots").await["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["RootCert"].as_str().unwrap().to_string())
        .collect();
    let e = mesh_connect(
        &addr,
        &sni,
        &expired.cert_pem,
        &expired.private_key_pem,
        &roots_now,
        db.clone(),
    )
    .await;
    assert!(e.is_err(), "an expired client certificate must be refused");

    // A connection limit from service-defaults: over it, refused at once.
    ok(cli(
        &s.agent,
        ROOT,
        &[
            "config",
            "write",
            &write_file(
                s.dir.path(),
                "limit.hcl",
                "Kind = \"service-defaults\"\nName = \"carbonio-files-db\"\nMaxInboundConnections = 1\n",
            ),
        ],
    ));
    let port = s.upstream_port;
    let pw = s.password.clone();
    eventually(
        "a second session is refused by the limit",
        Duration::from_secs(10),
        || {
            let pw = pw.clone();
            async move { pg_client(port, &pw).await.is_err().then_some(()) }
        },
    )
    .await;
    assert!(metric(&s.gw_admin, "limit_refused_total", "carbonio-files-db").await >= 1);
    s.gateway
        .wait_log("connections already open", Duration::from_secs(5));
    assert_eq!(
        c.query_one("select 4", &[]).await.unwrap().get::<_, i32>(0),
        4
    );
    drop(c);
    eventually_psql(&s, "select 5", Some("5")).await.unwrap();
}

#[tokio::test]
async fn agent_loss_keeps_serving_and_sigterm_drains() {
    let addr = format!("127.0.0.32:{}", free_port("127.0.0.32"));
    let mut s = scenario_at(Some(addr)).await;
    eventually_psql(&s, "select 1", Some("1")).await.unwrap();
    let c = pg_client(s.upstream_port, &s.password).await.unwrap();
    // The agent goes away: both proxies keep their last good configuration.
    s.agent.terminate();
    s.gateway.wait_log(
        "keeping the last good configuration",
        Duration::from_secs(10),
    );
    assert_eq!(
        psql_via(s.upstream_port, &s.password, "select 6", "prefer").unwrap(),
        "6"
    );
    // SIGHUP (a stray `systemctl reload`, a terminal hangup) is only logged.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &s.gateway.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    s.gateway
        .wait_log("caught hangup signal: ignored", Duration::from_secs(10));
    assert_eq!(
        psql_via(s.upstream_port, &s.password, "select 66", "prefer").unwrap(),
        "66"
    );
    // SIGTERM: no new connections, the open one finishes, then exit 0.
    s.gateway.sigterm();
    s.gateway
        .wait_log("stopping: no new connections", Duration::from_secs(5));
    assert!(psql_via(s.upstream_port, &s.password, "select 7", "prefer").is_err());
    assert_eq!(
        c.query_one("select 8", &[]).await.unwrap().get::<_, i32>(0),
        8
    );
    assert!(
        s.gateway.running(),
        "the gateway waits for the open session"
    );
    drop(c);
    // Let the client's connection task close the session while waiting.
    let mut exit = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(st) = s.gateway.wait_exit(Duration::ZERO) {
            exit = Some(st);
            break;
        }
    }
    let st = exit.unwrap_or_else(|| {
        panic!(
            "the gateway did not exit once drained:\n{}",
            s.gateway.log()
        )
    });
    assert!(st.success(), "{st}");
}

#[tokio::test]
async fn sidecar_to_sidecar_with_inbound_intentions() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = crate::dev().await;
    // The "api" service: an echo server on 127.0.0.3.
    let echo = tokio::net::TcpListener::bind("127.0.0.3:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let api_public = free_port("127.0.0.3");
    let web_upstream = free_port("127.0.0.1");
    let web_public = free_port("127.0.0.1");
    for body in [
        json!({"Name": "api", "Address": "127.0.0.3", "Port": echo_port,
               "Connect": {"SidecarService": {"Address": "127.0.0.3", "Port": api_public,
                           "Proxy": {"LocalServiceAddress": "127.0.0.3"}}}}),
        json!({"Name": "web", "Port": 9,
               "Connect": {"SidecarService": {"Port": web_public, "Address": "127.0.0.1",
                   "Proxy": {"Upstreams": [{"DestinationName": "api", "LocalBindPort": web_upstream}]}}}}),
    ] {
        let (st, b) = a.put("/v1/agent/service/register", body.to_string()).await;
        assert_eq!(st, 200, "{b}");
    }
    let mut api = spawn_sidecar("api", &[], &[("CONSUL_HTTP_ADDR", &a.base)]);
    let mut web = spawn_sidecar("web", &[], &[("CONSUL_HTTP_ADDR", &a.base)]);
    let api_admin = admin_addr(&mut api);
    let web_admin = admin_addr(&mut web);
    wait_ready(&mut api, &api_admin).await;
    wait_ready(&mut web, &web_admin).await;
    let roundtrip = || async move {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", web_upstream))
            .await
            .ok()?;
        c.write_all(b"hello mesh").await.ok()?;
        let mut buf = [0u8; 10];
        tokio::time::timeout(Duration::from_secs(2), c.read_exact(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf.to_vec())
    };
    let got = eventually(
        "web reaches api through both sidecars",
        Duration::from_secs(10),
        roundtrip,
    )
    .await;
    assert_eq!(got, b"hello mesh");
    // api's service-defaults: one connection at a time through its public
    // listener (MaxInboundConnections), and its local connect timeout.
    put_config(&a, r#"{"Kind": "service-defaults", "Name": "api", "MaxInboundConnections": 1, "LocalConnectTimeoutMs": 1500}"#).await;
    let api_cfg = || admin_config(&api_admin);
    eventually(
        "api's sidecar has its limits",
        Duration::from_secs(10),
        || async {
            let c = api_cfg().await?;
            (c["MaxInboundConnections"] == 1 && c["LocalConnectTimeoutMs"] == 1500).then_some(())
        },
    )
    .await;
    // A connection through both sidecars that stays open.
    let hold = || async move {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", web_upstream))
            .await
            .unwrap();
        c.write_all(b"hold").await.unwrap();
        let mut four = [0u8; 4];
        c.read_exact(&mut four).await.unwrap();
        c
    };
    let held = hold().await;
    assert!(
        roundtrip().await.is_none(),
        "a second connection is refused"
    );
    assert!(metric(&api_admin, "limit_refused_total", "inbound:api").await >= 1);
    api.wait_log("MaxInboundConnections", Duration::from_secs(5));
    drop(held);
    eventually(
        "room again once the first one closed",
        Duration::from_secs(10),
        roundtrip,
    )
    .await;
    // web's own service-defaults: at most one connection to its upstream api
    // (UpstreamConfig.Overrides), enforced by web's sidecar.
    put_config(&a, r#"{"Kind": "service-defaults", "Name": "api"}"#).await;
    put_config(&a, r#"{"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {"Overrides": [{"Name": "api", "Limits": {"MaxConnections": 1}}]}}"#).await;
    let refused_before = metric(&web_admin, "limit_refused_total", "api").await;
    let held = hold().await;
    eventually(
        "web's sidecar refuses a second connection to api",
        Duration::from_secs(10),
        || async {
            (roundtrip().await.is_none()
                && metric(&web_admin, "limit_refused_total", "api").await > refused_before)
                .then_some(())
        },
    )
    .await;
    drop(held);
    eventually(
        "room again at web's sidecar",
        Duration::from_secs(10),
        roundtrip,
    )
    .await;
    put_config(&a, r#"{"Kind": "service-defaults", "Name": "web"}"#).await;
    // The upstream changed under the same local port (here its datacenter
    // named): the old listener closes and the new one takes the port at once.
    let (st, b) = a
        .put(
            "/v1/agent/service/register",
            json!({"Name": "web", "Port": 9,
                   "Connect": {"SidecarService": {"Port": web_public, "Address": "127.0.0.1",
                       "Proxy": {"Upstreams": [{"DestinationName": "api", "Datacenter": "dc1",
                                                "LocalBindPort": web_upstream}]}}}})
            .to_string(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    eventually(
        "the upstream listener rebound with its new definition",
        Duration::from_secs(10),
        || async {
            let c = admin_config(&web_admin).await?;
            (c["Upstreams"][0]["Datacenter"] == "dc1").then_some(())
        },
    )
    .await;
    eventually("web reaches api again", Duration::from_secs(10), roundtrip).await;
    // Deny at the destination's sidecar.
    let (st, _) = a
        .put(
            "/v1/connect/intentions/exact?source=web&destination=api",
            r#"{"Action": "deny"}"#,
        )
        .await;
    assert_eq!(st, 200);
    // (By api's intentions, not by web's limit of the step before.)
    eventually(
        "web is refused by api's sidecar",
        Duration::from_secs(10),
        || async {
            (roundtrip().await.is_none()
                && metric(&api_admin, "authorization_denied_total", "inbound:api").await >= 1)
                .then_some(())
        },
    )
    .await;
    api.wait_log("connection denied", Duration::from_secs(5));
    assert!(metric(&web_admin, "connections_opened_total", "api").await >= 2);
    // A real Prometheus reads both proxies' `/metrics` whole and finds the
    // same counters.
    use crate::compat::{Job, Prometheus};
    let prom = Prometheus::start(&[
        Job {
            name: "web-sidecar",
            target: web_admin.clone(),
            path: "/metrics",
            format: None,
        },
        Job {
            name: "api-sidecar",
            target: api_admin.clone(),
            path: "/metrics",
            format: None,
        },
    ]);
    prom.wait_up(&["web-sidecar", "api-sidecar"]).await;
    let denied = prom
        .query_number("meshgate_proxy_authorization_denied_total{job=\"api-sidecar\",service=\"inbound:api\"}")
        .await;
    assert!(denied >= Some(1.0), "{denied:?}");
    let opened = prom
        .query_number(
            "meshgate_proxy_connections_opened_total{job=\"web-sidecar\",service=\"api\"}",
        )
        .await;
    assert!(opened >= Some(2.0), "{opened:?}");
}

/// `meshgate connect proxy -sidecar-for SERVICE` with its admin endpoint on
/// a free port, and `extra` flags.
fn spawn_sidecar(service: &str, extra: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut args = vec![
        "connect",
        "proxy",
        "-sidecar-for",
        service,
        "-admin-bind",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&format!("{service}-sidecar"), BIN, &args, env)
}

/// `openssl s_client` as a mesh caller of the gateway: `Ok(brief output)`
/// when the handshake completes, `Err(output)` when it fails.
fn s_client(addr: &str, sni: &str, files: &Path, extra: &[&str]) -> Result<String, String> {
    let f = |n: &str| files.join(n).display().to_string();
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", sni, "-brief"])
        .args(["-cert", &f("leaf.pem"), "-key", &f("key.pem")])
        .args(["-CAfile", &f("roots.pem")])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.contains("CONNECTION ESTABLISHED") {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The `mesh` config entry's `TLS.Incoming` (the gateway's and the
/// sidecars' listeners) and `TLS.Outgoing` (the sidecars' upstream
/// connections): versions and TLS 1.2 suites apply to new connections within
/// a second, checked with OpenSSL's client; an open database session lives
/// through every change.
#[tokio::test]
async fn mesh_tls_versions_and_cipher_suites() {
    crate::require("openssl", &["version"], "openssl (apt-get install openssl)");
    let addr = format!("127.0.0.33:{}", free_port("127.0.0.33"));
    let s = scenario_at(Some(addr)).await;
    let addr = s.gateway_addr.clone();
    let roots = get_root(&s.agent, "/v1/connect/ca/roots").await;
    let td = roots["TrustDomain"].as_str().unwrap().to_string();
    let pems: Vec<&str> = roots["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["RootCert"].as_str().unwrap())
        .collect();
    let leaf = get_root(&s.agent, "/v1/agent/connect/ca/leaf/carbonio-files").await;
    let files = s.dir.path().join("caller");
    std::fs::create_dir_all(&files).unwrap();
    write_file(&files, "leaf.pem", leaf["CertPEM"].as_str().unwrap());
    write_file(&files, "key.pem", leaf["PrivateKeyPEM"].as_str().unwrap());
    write_file(&files, "roots.pem", &pems.concat());
    let sni = meshgate_ca::ServiceId::new(&td, "default", "dc1", "carbonio-files-db").sni();
    let tls12 = ["-tls1_2"];
    let aes128 = ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"];
    let aes256 = ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"];
    let out = s_client(&addr, &sni, &files, &tls12).unwrap();
    assert!(out.contains("Protocol version: TLSv1.2"), "{out}");
    let session = pg_client(s.upstream_port, &s.password).await.unwrap();
    let still_open = |n: i32| {
        let session = &session;
        async move {
            let q = format!("select {n}");
            let got: i32 = session.query_one(q.as_str(), &[]).await.unwrap().get(0);
            assert_eq!(got, n, "the open session lives on");
        }
    };
    let write_mesh = |tls: &str| {
        let path = write_file(
            s.dir.path(),
            "mesh.hcl",
            &format!("Kind = \"mesh\"\nTLS {{\n{tls}\n}}\n"),
        );
        ok(cli(&s.agent, ROOT, &["config", "write", &path]));
    };
    let gateway_tls =
        || async { admin_config(&s.gw_admin).await.unwrap()["TLS"]["Incoming"].clone() };

    // TLS 1.3 minimum on the listeners.
    write_mesh("  Incoming { TLSMinVersion = \"TLSv1_3\" }");
    eventually(
        "a TLS 1.2 caller is refused",
        Duration::from_secs(5),
        || async { s_client(&addr, &sni, &files, &tls12).is_err().then_some(()) },
    )
    .await;
    let out = s_client(&addr, &sni, &files, &["-tls1_3"]).unwrap();
    assert!(out.contains("Protocol version: TLSv1.3"), "{out}");
    assert_eq!(gateway_tls().await["TLSMinVersion"], "TLSv1_3");
    // The sidecar's public listener too.
    let sc_cfg = admin_config(&s.sc_admin).await.unwrap();
    let public = sc_cfg["PublicListener"].as_str().unwrap().to_string();
    let own_sni = meshgate_ca::ServiceId::new(&td, "default", "dc1", "carbonio-files").sni();
    eventually(
        "the sidecar refuses TLS 1.2 too",
        Duration::from_secs(5),
        || async {
            // No handshake at all (not one closed afterwards by intentions).
            let out = s_client(&public, &own_sni, &files, &tls12).unwrap_or_else(|e| e);
            (!out.contains("CONNECTION ESTABLISHED")).then_some(())
        },
    )
    .await;
    // (The handshake completes; the sidecar may then close the connection:
    // no intention lets carbonio-files call itself.)
    let out = s_client(&public, &own_sni, &files, &["-tls1_3"]).unwrap_or_else(|e| e);
    assert!(out.contains("Protocol version: TLSv1.3"), "{out}");
    still_open(1).await;
    eventually_psql(&s, "select 2", Some("2")).await.unwrap();

    // One TLS 1.2 suite on the listeners; the sidecars offer only another
    // one and only TLS 1.2: no agreement, new sessions fail.
    write_mesh(
        "  Incoming { CipherSuites = [\"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"] }\n  Outgoing {\n    TLSMaxVersion = \"TLSv1_2\"\n    CipherSuites = [\"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\"]\n  }",
    );
    eventually(
        "the listed suite is the only one",
        Duration::from_secs(5),
        || async {
            s_client(&addr, &sni, &files, &aes128)
                .is_err()
                .then_some(())
        },
    )
    .await;
    let out = s_client(&addr, &sni, &files, &aes256).unwrap();
    assert!(
        out.contains("Ciphersuite: ECDHE-ECDSA-AES256-GCM-SHA384"),
        "{out}"
    );
    eventually_psql(&s, "select 3", None).await.unwrap_err();
    still_open(4).await;
    let sc_cfg = admin_config(&s.sc_admin).await.unwrap();
    assert_eq!(
        sc_cfg["TLS"]["Outgoing"]["TLSMaxVersion"], "TLSv1_2",
        "{sc_cfg}"
    );
    assert!(metric(&s.gw_admin, "tls_handshake_failures_total", "").await >= 1);

    // The sidecars offer the listeners' suite: sessions again, over TLS 1.2.
    write_mesh(
        "  Incoming { CipherSuites = [\"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"] }\n  Outgoing {\n    TLSMaxVersion = \"TLSv1_2\"\n    CipherSuites = [\"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]\n  }",
    );
    eventually_psql(&s, "select 5", Some("5")).await.unwrap();
    still_open(6).await;

    // No mesh entry: the defaults again.
    ok(cli(
        &s.agent,
        ROOT,
        &["config", "delete", "-kind", "mesh", "-name", "mesh"],
    ));
    eventually("every suite again", Duration::from_secs(5), || async {
        s_client(&addr, &sni, &files, &aes128).ok()
    })
    .await;
    assert_eq!(gateway_tls().await["CipherSuites"], json!([]));
    still_open(7).await;
}

/// The lines of an access log file that came from the listener at `local`
/// (both proxies write to the file proxy-defaults names).
fn access_lines(path: &Path, local: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["downstream_local_address"] == local)
        .collect()
}

/// `proxy-defaults` `AccessLogs`: a line per connection from the gateway
/// and the sidecar in Consul's default JSON format, refusals with Envoy's
/// flags and details, listener logs that can be switched off, a text
/// format, and a log file that rotation moves away is opened again.
#[tokio::test]
async fn access_logs_of_the_proxies() {
    let addr = format!("127.0.0.34:{}", free_port("127.0.0.34"));
    let mut s = scenario_at(Some(addr)).await;
    let gw = s.gateway_addr.clone();
    let log = s.dir.path().join("access.log");
    let write_defaults = |logs: &str| {
        let path = write_file(
            s.dir.path(),
            "proxy-defaults.hcl",
            &format!("Kind = \"proxy-defaults\"\nName = \"global\"\nAccessLogs {{\n{logs}\n}}\n"),
        );
        ok(cli(&s.agent, ROOT, &["config", "write", &path]));
    };
    write_defaults(&format!(
        "  Enabled = true\n  Type = \"file\"\n  Path = \"{}\"",
        log.display()
    ));
    // A query through the sidecar and the gateway: one line from each.
    let sidecar_local = format!("127.0.0.1:{}", s.upstream_port);
    eventually("a logged session", Duration::from_secs(10), || async {
        psql_via(s.upstream_port, &s.password, "select 1", "prefer").ok()?;
        (!access_lines(&log, &gw).is_empty() && !access_lines(&log, &sidecar_local).is_empty())
            .then_some(())
    })
    .await;
    let roots = get_root(&s.agent, "/v1/connect/ca/roots").await;
    let td = roots["TrustDomain"].as_str().unwrap().to_string();
    let db = meshgate_ca::ServiceId::new(&td, "default", "dc1", "carbonio-files-db");
    let line = access_lines(&log, &gw).pop().unwrap();
    assert_eq!(line["response_flags"], "-", "{line}");
    assert_eq!(line["requested_server_name"], db.sni(), "{line}");
    assert_eq!(line["upstream_cluster"], db.sni(), "{line}");
    assert_eq!(
        line["upstream_host"],
        format!("{}:{}", s.pg.host, s.pg.port),
        "{line}"
    );
    assert!(line["bytes_received"].as_u64().unwrap() > 0, "{line}");
    assert!(line["bytes_sent"].as_u64().unwrap() > 0, "{line}");
    assert_eq!(line["method"], Value::Null, "HTTP fields are null: {line}");
    assert_eq!(line["response_code"], 0, "{line}");
    assert!(
        line["start_time"].as_str().unwrap().ends_with('Z'),
        "{line}"
    );
    let out = access_lines(&log, &sidecar_local).pop().unwrap();
    assert_eq!(out["upstream_host"], gw, "{out}");
    assert_eq!(out["upstream_cluster"], db.sni(), "{out}");
    assert_eq!(
        out["bytes_received"], line["bytes_received"],
        "what the sidecar took from psql is what the gateway carried"
    );

    // Refusals: a caller the intentions deny, and an unknown SNI (a
    // listener log, `NR`).
    let root_pems: Vec<String> = roots["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["RootCert"].as_str().unwrap().to_string())
        .collect();
    let other = get_root(&s.agent, "/v1/agent/connect/ca/leaf/intruder").await;
    let (cert, key) = (
        other["CertPEM"].as_str().unwrap(),
        other["PrivateKeyPEM"].as_str().unwrap(),
    );
    let _ = mesh_connect(&gw, &db.sni(), cert, key, &root_pems, db.clone()).await;
    let nope = meshgate_ca::ServiceId::new(&td, "default", "dc1", "nope");
    let _ = mesh_connect(&gw, &nope.sni(), cert, key, &root_pems, nope.clone()).await;
    let refused = eventually("the refusals logged", Duration::from_secs(10), || async {
        let lines = access_lines(&log, &gw);
        let denied = lines
            .iter()
            .find(|l| l["connection_termination_details"] == DENIED)?
            .clone();
        let no_route = lines.iter().find(|l| l["response_flags"] == "NR")?.clone();
        Some((denied, no_route))
    })
    .await;
    assert_eq!(refused.0["bytes_received"], 0, "{}", refused.0);
    assert_eq!(
        refused.0["requested_server_name"],
        db.sni(),
        "{}",
        refused.0
    );
    // The name nobody serves is in its line (read before the handshake).
    assert_eq!(
        refused.1["requested_server_name"],
        nope.sni(),
        "{}",
        refused.1
    );
    // Directions: a large answer is what the caller received (sent to it).
    let n = psql_via(
        s.upstream_port,
        &s.password,
        "select repeat('x', 200000)",
        "prefer",
    )
    .unwrap();
    assert_eq!(n.len(), 200_000);
    let big = eventually(
        "the large answer logged",
        Duration::from_secs(10),
        || async {
            access_lines(&log, &gw)
                .into_iter()
                .find(|l| l["bytes_sent"].as_u64().unwrap_or(0) > 200_000)
        },
    )
    .await;
    assert!(big["bytes_received"].as_u64().unwrap() < 10_000, "{big}");

    // Listener logs off: an unknown SNI leaves no line; a text format.
    let text_log = s.dir.path().join("access.txt");
    write_defaults(&format!(
        "  Enabled = true\n  DisableListenerLogs = true\n  Type = \"file\"\n  Path = \"{}\"\n  TextFormat = \"%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_PEER_URI_SAN% %UPSTREAM_HOST% %RESPONSE_FLAGS% %REQ(USER-AGENT)%\"",
        text_log.display()
    ));
    let caller = meshgate_ca::ServiceId::new(&td, "default", "dc1", "carbonio-files");
    eventually(
        "the text format in use",
        Duration::from_secs(10),
        || async {
            psql_via(s.upstream_port, &s.password, "select 1", "prefer").ok()?;
            let text = std::fs::read_to_string(&text_log).ok()?;
            text.lines()
                .any(|l| l == format!("{gw} {} {}:{} - -", caller.uri(), s.pg.host, s.pg.port))
                .then_some(())
        },
    )
    .await;
    let _ = mesh_connect(&gw, &nope.sni(), cert, key, &root_pems, nope).await;
    // Log rotation: the file moved away, the next lines go to a new one.
    std::fs::rename(&text_log, s.dir.path().join("access.txt.1")).unwrap();
    eventually(
        "a new file after rotation",
        Duration::from_secs(10),
        || async {
            psql_via(s.upstream_port, &s.password, "select 1", "prefer").ok()?;
            std::fs::read_to_string(&text_log)
                .ok()
                .filter(|t| t.contains(&caller.uri()))
        },
    )
    .await;
    let all = format!(
        "{}{}",
        std::fs::read_to_string(s.dir.path().join("access.txt.1")).unwrap(),
        std::fs::read_to_string(&text_log).unwrap()
    );
    assert!(
        !all.lines().any(|l| l.contains(" NR ")),
        "listener logs are off: {all}"
    );

    // A proxy that stops writes the lines of the connections it had to
    // close at its drain timeout: the sidecar again, with a 1 s drain.
    s.sidecar.sigterm();
    assert!(s.sidecar.wait_exit(Duration::from_secs(40)).is_some());
    let mut sidecar = spawn_sidecar(
        "carbonio-files",
        &["-drain-timeout=1s"],
        &[
            ("CONSUL_HTTP_ADDR", &s.agent.base),
            ("CONSUL_HTTP_TOKEN", ROOT),
        ],
    );
    let admin = admin_addr(&mut sidecar);
    wait_ready(&mut sidecar, &admin).await;
    let sidecar_lines = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{sidecar_local} ")))
            .count()
    };
    let before = sidecar_lines(&std::fs::read_to_string(&text_log).unwrap());
    let held = pg_client(s.upstream_port, &s.password).await.unwrap();
    assert_eq!(
        held.query_one("select 9", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        9
    );
    sidecar.sigterm();
    sidecar.wait_log(
        "drain timeout: closing 1 connections",
        Duration::from_secs(10),
    );
    assert!(sidecar.wait_exit(Duration::from_secs(10)).is_some());
    let after = sidecar_lines(&std::fs::read_to_string(&text_log).unwrap());
    assert_eq!(after, before + 1, "the held connection's line");
}

/// `UpstreamConfig.Defaults.PassiveHealthCheck` of the linked service: an
/// instance whose connections keep failing (here a second instance nobody
/// listens at, which no health check watches) is set aside, so new sessions
/// stop paying for it, and comes back after its time aside.
#[tokio::test]
async fn passive_health_check_sets_a_dead_instance_aside() {
    let addr = format!("127.0.0.35:{}", free_port("127.0.0.35"));
    let s = scenario_at(Some(addr)).await;
    let dead = free_port("127.0.0.7");
    let (st, b, _) = call(
        &s.agent,
        "PUT",
        "/v1/catalog/register",
        Some(ROOT),
        Some(
            json!({"Address": "127.0.0.7", "Node": "dead-db-node",
                   "Service": {"ID": "dead-replica", "Port": dead, "Service": "carbonio-files-db"}})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let path = write_file(
        s.dir.path(),
        "outlier.hcl",
        "Kind = \"service-defaults\"\nName = \"carbonio-files-db\"\nUpstreamConfig {\n  Defaults {\n    PassiveHealthCheck {\n      MaxFailures = 2\n      MaxEjectionPercent = 50\n      BaseEjectionTime = \"2s\"\n    }\n  }\n}\n",
    );
    ok(cli(&s.agent, ROOT, &["config", "write", &path]));
    let gw_config = || admin_config(&s.gw_admin);
    eventually("both instances known", Duration::from_secs(10), || async {
        let c = gw_config().await?;
        (c["Services"][0]["Instances"].as_array()?.len() == 2).then_some(())
    })
    .await;
    let dead_label = format!("127.0.0.7:{dead}");
    // Sessions go through (the gateway retries on the live instance) until
    // the dead one has failed twice in a row and is set aside.
    eventually(
        "the dead instance set aside",
        Duration::from_secs(20),
        || async {
            psql_via(s.upstream_port, &s.password, "select 1", "prefer").ok()?;
            let c = gw_config().await?;
            (c["Services"][0]["SetAside"] == json!([dead_label])).then_some(())
        },
    )
    .await;
    assert!(metric(&s.gw_admin, "outlier_ejections_total", "carbonio-files-db").await >= 1);
    let errors = metric(&s.gw_admin, "connect_errors_total", "carbonio-files-db").await;
    for n in 0..4 {
        let got = psql_via(
            s.upstream_port,
            &s.password,
            &format!("select {n}"),
            "prefer",
        );
        assert_eq!(got.as_deref(), Ok(n.to_string().as_str()));
    }
    assert_eq!(
        metric(&s.gw_admin, "connect_errors_total", "carbonio-files-db").await,
        errors,
        "no connection tried the instance set aside"
    );
    // Its time aside over, it is a candidate again.
    eventually("back after 2 s", Duration::from_secs(10), || async {
        let c = gw_config().await?;
        (c["Services"][0]["SetAside"] == json!([])).then_some(())
    })
    .await;
}

/// A sidecar reads Consul's proxy `Config` keys: `bind_address` /
/// `bind_port` move its public listener (mesh clients still dial the
/// registered address), `local_connect_timeout_ms` and `handshake_timeout_ms`
/// from the registration, else the service's `LocalConnectTimeoutMs`, else
/// proxy-defaults' `Config`.
#[tokio::test]
async fn sidecar_reads_the_proxy_config_keys() {
    let a = crate::dev().await;
    let bind_port = free_port("127.0.0.4");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("tuned.log");
    let (st, b) = a
        .put(
            "/v1/agent/service/register",
            json!({"Name": "tuned", "Port": 9,
                   "Connect": {"SidecarService": {"Port": free_port("127.0.0.1"), "Address": "127.0.0.1",
                       "Proxy": {"Config": {"bind_address": "127.0.0.4", "bind_port": bind_port,
                                            "local_connect_timeout_ms": "1200", "handshake_timeout_ms": 2500},
                                 "Upstreams": [{"DestinationName": "backend", "LocalBindPort": free_port("127.0.0.1"),
                                                "Config": {"connect_timeout_ms": 750}}],
                                 "AccessLogs": {"Enabled": true, "Type": "file", "Path": log.display().to_string(),
                                                "TextFormat": "%DOWNSTREAM_LOCAL_ADDRESS% listener %RESPONSE_FLAGS%"}}}}})
            .to_string(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = a
        .put(
            "/v1/agent/service/register",
            json!({"Name": "plain", "Port": 9,
                   "Connect": {"SidecarService": {"Port": free_port("127.0.0.1"), "Address": "127.0.0.1",
                       "Proxy": {"Upstreams": [{"DestinationName": "backend", "LocalBindPort": free_port("127.0.0.1")}]}}}})
            .to_string(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    put_config(
        &a,
        json!({"Kind": "proxy-defaults", "Name": "global",
                    "Config": {"local_connect_timeout_ms": 900, "handshake_timeout_ms": 3000},
                    "AccessLogs": {"Enabled": true, "Type": "file",
                                   "Path": logs.path().join("global.log").display().to_string(),
                                   "TextFormat": "%DOWNSTREAM_LOCAL_ADDRESS% global"}})
        .to_string(),
    )
    .await;
    let start = |svc: &str| spawn_sidecar(svc, &[], &[("CONSUL_HTTP_ADDR", &a.base)]);
    let mut tuned = start("tuned");
    let mut plain = start("plain");
    let tuned_admin = admin_addr(&mut tuned);
    let plain_admin = admin_addr(&mut plain);
    wait_ready(&mut tuned, &tuned_admin).await;
    wait_ready(&mut plain, &plain_admin).await;
    let config = |admin: String| async move { admin_config(&admin).await };
    let c = config(tuned_admin.clone()).await.unwrap();
    assert_eq!(c["PublicListener"], format!("127.0.0.4:{bind_port}"), "{c}");
    assert_eq!(c["LocalConnectTimeoutMs"], 1200, "{c}");
    assert_eq!(c["HandshakeTimeoutMs"], 2500, "{c}");
    assert_eq!(
        c["Upstreams"][0]["ConnectTimeoutMs"], 750,
        "the upstream's own Config: {c}"
    );
    // Its own Proxy.AccessLogs (proxy-defaults has none): a caller that
    // fails the handshake is a listener log line.
    {
        use tokio::io::AsyncWriteExt;
        let mut c = tokio::net::TcpStream::connect(("127.0.0.4", bind_port))
            .await
            .expect("the public listener is on the bind address");
        c.write_all(b"not a TLS client hello\r\n").await.unwrap();
    }
    let line = eventually(
        "the registration's access log",
        Duration::from_secs(10),
        || async { std::fs::read_to_string(&log).ok().filter(|t| !t.is_empty()) },
    )
    .await;
    assert_eq!(line, format!("127.0.0.4:{bind_port} listener -\n"));
    // ... not proxy-defaults' (which the other sidecar uses).
    let global = std::fs::read_to_string(logs.path().join("global.log")).unwrap_or_default();
    assert!(!global.contains("127.0.0.4"), "{global}");
    let c = config(plain_admin.clone()).await.unwrap();
    assert_eq!(c["LocalConnectTimeoutMs"], 900, "proxy-defaults: {c}");
    assert_eq!(c["HandshakeTimeoutMs"], 3000, "proxy-defaults: {c}");
    assert_eq!(
        c["Upstreams"][0]["ConnectTimeoutMs"], 5000,
        "the resolver's default: {c}"
    );
    // The service's own LocalConnectTimeoutMs comes before proxy-defaults.
    put_config(&a, r#"{"Kind": "service-defaults", "Name": "plain", "LocalConnectTimeoutMs": 1500, "UpstreamConfig": {"Defaults": {"ConnectTimeoutMs": 1800}}}"#).await;
    eventually("service-defaults first", Duration::from_secs(10), || {
        let admin = plain_admin.clone();
        async move {
            let c = config(admin).await?;
            (c["LocalConnectTimeoutMs"] == 1500 && c["Upstreams"][0]["ConnectTimeoutMs"] == 1800)
                .then_some(())
        }
    })
    .await;
}
