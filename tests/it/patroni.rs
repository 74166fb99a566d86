//! Patroni, the PostgreSQL high-availability manager, keeps a cluster's state
//! in meshgate exactly as it does in Consul (its `consul` store): the leader
//! lock held by a session with a TTL and the `delete` behaviour, member keys
//! acquired by the same session, the `initialize` key created with `?cas=0`,
//! `failover` and `config` written with `?cas`, a blocking query on the
//! leader key between its loops, and its service registered with the local
//! agent, tagged with the role, with an HTTP check of its REST API that the
//! agent runs. Two Patroni nodes, each with its own PostgreSQL, on 127.0.0.2
//! and 127.0.0.3, bootstrap, replicate, switch over on request and fail over
//! when the leader dies without a word. As in production: Patroni reaches
//! the agent over HTTPS with a client certificate (`verify_incoming`), with
//! a token whose policy grants only what Patroni's documentation lists, on
//! an agent that denies by default.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meshgate_test_support::postgres::{
    as_postgres_user, bin_dir, give_to_postgres_user, psql_as_superuser,
};
use meshgate_test_support::{Agent, eventually, free_port};

use crate::acl::{ROOT, acl_config, token_with_rules};

const SCOPE: &str = "pgcluster";
const INSTALL: &str =
    "Patroni with its Consul client: apt-get install -y patroni python3-consul (Debian)";

/// The interpreter of the `patroni` script on PATH (its `#!` line).
fn patroni_python() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let script = path
        .split(':')
        .map(|d| Path::new(d).join("patroni"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("this test needs {INSTALL} (.ci/run installs it)"));
    let text = std::fs::read_to_string(&script).unwrap_or_default();
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("python3")
        .to_string()
}

/// One Patroni node and the PostgreSQL it manages.
struct Node {
    name: String,
    host: String,
    pg_port: u16,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// How Patroni reaches the agent: `host:port` of its HTTPS API, the files
/// of the client certificate and the CA, and the token.
struct AgentAccess {
    host: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    token: String,
}

impl Node {
    fn new(dir: &Path, n: u8, agent: &AgentAccess) -> Node {
        let name = format!("node{n}");
        let host = format!("127.0.0.{}", n + 1);
        let pg_port = free_port(&host);
        let api_port = free_port(&host);
        let home = dir.join(&name);
        let sock = home.join("sock");
        std::fs::create_dir_all(&sock).expect("node dir");
        let data = home.join("data");
        let config = home.join("patroni.yml");
        // ttl 20 is Patroni's least; it asks Consul for a session TTL of
        // half of it (Consul doubles a TTL before it invalidates).
        let yaml = format!(
            "scope: {SCOPE}
name: {name}
log:
  level: INFO
restapi:
  listen: {host}:{api_port}
  connect_address: {host}:{api_port}
consul:
  host: {agent_host}
  scheme: https
  cacert: {ca}
  cert: {cert}
  key: {key}
  token: {token}
  register_service: true
  service_check_interval: 1s
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    postgresql:
      parameters:
        fsync: 'off'
        full_page_writes: 'off'
        synchronous_commit: 'off'
  initdb:
  - encoding: UTF8
  - locale: C
postgresql:
  listen: {host}:{pg_port}
  connect_address: {host}:{pg_port}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {home}/pgpass
  authentication:
    replication:
      username: replicator
      password: rep-pass
    superuser:
      username: postgres
      password: postgres
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.0/8 scram-sha-256
  - host all all 127.0.0.0/8 scram-sha-256
  parameters:
    unix_socket_directories: {sock}
    shared_buffers: 16MB
",
            agent_host = agent.host,
            ca = agent.ca.display(),
            cert = agent.cert.display(),
            key = agent.key.display(),
            token = agent.token,
            data = data.display(),
            bin = bin_dir().display(),
            home = home.display(),
            sock = sock.display(),
        );
        std::fs::write(&config, yaml).expect("write patroni.yml");
        Node {
            log: home.join("patroni.log"),
            name,
            host,
            pg_port,
            config,
            data,
            child: None,
        }
    }

    fn start(&mut self) {
        let log = std::fs::File::create(&self.log).expect("patroni log");
        give_to_postgres_user(self.log.parent().expect("node dir"));
        let mut cmd = Command::new("patroni");
        as_postgres_user(&mut cmd)
            .arg(&self.config)
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("patroni log"))
            .stderr(log);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("run patroni: {e}; this test needs {INSTALL}")),
        );
    }

    /// Kills Patroni and its PostgreSQL at once (SIGKILL), as a crash of
    /// the machine would: nothing is released, nothing is said.
    fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
        if let Some(pid) = pid.lines().next().filter(|p| !p.is_empty()) {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sql(&self, sql: &str) -> Result<String, String> {
        psql_as_superuser(&bin_dir(), &self.host, self.pg_port, "postgres", sql)
    }

    fn patronictl(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("patronictl");
        as_postgres_user(&mut cmd)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null());
        cmd.output().expect("run patronictl")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.crash();
    }
}

/// A read with the management token: status and JSON (`null` when empty).
async fn read(a: &Agent, path: &str) -> (u16, serde_json::Value) {
    let r = a
        .http
        .get(a.url(path))
        .header("X-Consul-Token", ROOT)
        .send()
        .await
        .expect("request");
    let st = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (st, serde_json::from_str(&text).unwrap_or_default())
}

/// The name in the leader key and the session that holds it.
async fn leader(a: &Agent) -> Option<(String, String)> {
    let (st, v) = read(a, &format!("/v1/kv/service/{SCOPE}/leader")).await;
    if st != 200 {
        return None;
    }
    let e = &v[0];
    let value = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        e["Value"].as_str()?,
    )
    .ok()?;
    Some((
        String::from_utf8(value).ok()?,
        e["Session"].as_str()?.to_string(),
    ))
}

/// The address of the one instance tagged `primary` whose checks pass.
async fn passing_primary(a: &Agent) -> Option<String> {
    let (st, v) = read(
        a,
        &format!("/v1/health/service/{SCOPE}?tag=primary&passing"),
    )
    .await;
    let list = v.as_array().filter(|l| st == 200 && l.len() == 1)?;
    let s = &list[0]["Service"];
    Some(format!(
        "{}:{}",
        s["Address"].as_str()?,
        s["Port"].as_u64()?
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn patroni_bootstraps_switches_over_and_fails_over_on_meshgate() {
    crate::require(
        &patroni_python(),
        &["-c", "import patroni.dcs.consul"],
        INSTALL,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    crate::agent_api::make_agent_certs(&certs);
    let https = free_port("127.0.0.1");
    let tls = format!(
        "ports {{ https = {https} }}\n{}",
        crate::agent_api::https_tls_hcl(&certs)
    );
    let a = crate::dev_builder()
        .config_file("acl.hcl", &acl_config("deny"))
        .config_file("tls.hcl", &tls)
        .start()
        .await;
    // What Patroni's documentation asks of a Consul token.
    let token = token_with_rules(
        &a,
        "patroni",
        &format!(
            r#"key_prefix "service/{SCOPE}/" {{ policy = "write" }}
session_prefix "" {{ policy = "write" }}
service_prefix "{SCOPE}" {{ policy = "write" }}
node_prefix "" {{ policy = "read" }}
agent_prefix "" {{ policy = "read" }}"#
        ),
    )
    .await;
    let access = AgentAccess {
        host: format!("127.0.0.1:{https}"),
        ca: certs.join("consul-agent-ca.pem"),
        cert: certs.join("dc1-client-consul-0.pem"),
        key: certs.join("dc1-client-consul-0-key.pem"),
        token,
    };
    let mut n1 = Node::new(dir.path(), 1, &access);
    let mut n2 = Node::new(dir.path(), 2, &access);
    give_to_postgres_user(dir.path());
    let logs = |n1: &Node, n2: &Node| {
        format!(
            "node1 log:\n{}\nnode2 log:\n{}\nagent log:\n{}",
            n1.log_text(),
            n2.log_text(),
            a.log()
        )
    };

    // Bootstrap: node1 wins the `initialize` race, runs initdb and takes the
    // leader lock with its session.
    n1.start();
    let first = eventually(
        "node1 holds the leader lock",
        Duration::from_secs(90),
        || {
            let a = &a;
            async move { leader(a).await.filter(|(name, _)| name == "node1") }
        },
    )
    .await;
    let (st, v) = read(&a, &format!("/v1/session/info/{}", first.1)).await;
    assert_eq!(st, 200, "{}", logs(&n1, &n2));
    assert_eq!(v[0]["Behavior"], "delete", "{v}");
    // Half of ttl as Patroni writes it, kept as given (as Consul keeps it).
    assert_eq!(v[0]["TTL"], "10.0s", "{v}");
    let (st, init) = read(&a, &format!("/v1/kv/service/{SCOPE}/initialize")).await;
    assert_eq!(st, 200, "the initialize key: {init}");

    // The agent runs the HTTP check Patroni registered with its service.
    let primary = format!("{}:{}", n1.host, n1.pg_port);
    let got = eventually(
        "node1 is the passing primary",
        Duration::from_secs(30),
        || {
            let a = &a;
            async move { passing_primary(a).await }
        },
    )
    .await;
    assert_eq!(got, primary, "{}", logs(&n1, &n2));

    // node2 finds the leader in the store, clones it and streams from it.
    n2.start();
    eventually("node2 streams from node1", Duration::from_secs(90), || {
        let n1 = &n1;
        async move {
            n1.sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                .ok()
                .filter(|c| c == "1")
        }
    })
    .await;
    n1.sql("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (42)")
        .unwrap_or_else(|e| panic!("write on the leader: {e}\n{}", logs(&n1, &n2)));
    eventually("the row reaches node2", Duration::from_secs(30), || {
        let n2 = &n2;
        async move { n2.sql("SELECT id FROM orders").ok().filter(|v| v == "42") }
    })
    .await;
    let (st, members) = read(&a, &format!("/v1/kv/service/{SCOPE}/members/?recurse")).await;
    assert_eq!(st, 200);
    assert_eq!(members.as_array().map(Vec::len), Some(2), "{members}");

    // A switchover on request: node1 hands the lock to node2.
    let out = n1.patronictl(&[
        "switchover",
        "--leader",
        "node1",
        "--candidate",
        "node2",
        "--force",
    ]);
    assert!(
        out.status.success(),
        "patronictl switchover: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        logs(&n1, &n2)
    );
    let second = eventually(
        "node2 holds the leader lock",
        Duration::from_secs(60),
        || {
            let a = &a;
            async move { leader(a).await.filter(|(name, _)| name == "node2") }
        },
    )
    .await;
    let primary = format!("{}:{}", n2.host, n2.pg_port);
    eventually(
        "node2 is the passing primary",
        Duration::from_secs(30),
        || {
            let (a, primary) = (&a, &primary);
            async move { passing_primary(a).await.filter(|p| p == primary) }
        },
    )
    .await;
    eventually("node1 follows node2", Duration::from_secs(60), || {
        let n2 = &n2;
        async move {
            n2.sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                .ok()
                .filter(|c| c == "1")
        }
    })
    .await;

    // A failover: node2 dies without releasing anything. Its session expires
    // (Consul's twice the TTL), the `delete` behaviour removes the leader
    // key, node1's blocking query on it returns and node1 takes the lock.
    n2.crash();
    eventually(
        "node1 takes the lock after node2's session expires",
        Duration::from_secs(90),
        || {
            let a = &a;
            async move { leader(a).await.filter(|(name, _)| name == "node1") }
        },
    )
    .await;
    let (st, v) = read(&a, &format!("/v1/session/info/{}", second.1)).await;
    assert_eq!(st, 200);
    assert!(
        v.as_array().is_some_and(Vec::is_empty),
        "node2's session is gone: {v}"
    );
    let (st, _) = read(&a, &format!("/v1/kv/service/{SCOPE}/members/{}", n2.name)).await;
    assert_eq!(st, 404, "node2's member key went with its session");
    eventually(
        "node1 accepts writes again",
        Duration::from_secs(60),
        || {
            let n1 = &n1;
            async move {
                n1.sql("INSERT INTO orders VALUES (43) RETURNING id")
                    .ok()
                    .filter(|v| v == "43")
            }
        },
    )
    .await;
    let primary = format!("{}:{}", n1.host, n1.pg_port);
    eventually(
        "node1 is the passing primary again",
        Duration::from_secs(30),
        || {
            let (a, primary) = (&a, &primary);
            async move { passing_primary(a).await.filter(|p| p == primary) }
        },
    )
    .await;

    let out = n1.patronictl(&["list", "-f", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "patronictl list: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let node1 = list
        .as_array()
        .and_then(|l| l.iter().find(|m| m["Member"] == "node1"))
        .unwrap_or_else(|| panic!("node1 in {list}"));
    assert_eq!(node1["Role"], "Leader", "{list}");
    assert_eq!(node1["State"], "running", "{list}");
    assert!(
        node1["TL"].as_u64().is_some_and(|tl| tl >= 3),
        "two promotions moved the timeline on: {list}"
    );
}
