//! Third-party Consul client libraries against a real agent: rs-consul
//! (Rust) and py-consul (Python, the python-consul lineage).

use std::time::Duration;

use meshgate_test_support::eventually;
use rs_consul::types::{
    CreateOrUpdateKeyRequest, DeleteKeyRequest, GetServiceNodesRequest, LockRequest,
    ReadKeyRequest, RegisterEntityPayload, RegisterEntityService,
};
use rs_consul::{Config, Consul};

use crate::dev;

fn client(a: &meshgate_test_support::Agent) -> Consul {
    Consul::new(Config {
        address: a.base.clone(),
        token: None,
        ..Default::default()
    })
}

#[tokio::test]
async fn rs_consul_kv_catalog_and_locks() {
    let a = dev().await;
    let c = client(&a);
    let req = CreateOrUpdateKeyRequest {
        key: "carbonio-files/db-username",
        ..Default::default()
    };
    let (ok, _) = c
        .create_or_update_key(req, b"files_user".to_vec())
        .await
        .unwrap();
    assert!(ok);
    let read = c
        .read_key(ReadKeyRequest {
            key: "carbonio-files/db-username",
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(read.response[0].value.as_deref(), Some("files_user"));
    assert!(read.index >= 1);

    let payload = RegisterEntityPayload {
        ID: None,
        Node: "external-files-db-node".into(),
        Address: "127.0.0.9".into(),
        Datacenter: None,
        TaggedAddresses: Default::default(),
        NodeMeta: [("external-node".to_string(), "true".to_string())].into(),
        Service: Some(RegisterEntityService {
            ID: Some("carbonio-gateway".into()),
            Service: "carbonio-files-db".into(),
            Tags: vec![],
            TaggedAddresses: Default::default(),
            Meta: Default::default(),
            Port: Some(5432),
            Namespace: None,
        }),
        Checks: vec![],
        SkipNodeUpdate: None,
    };
    c.register_entity(&payload).await.unwrap();
    let names = c.get_all_registered_service_names(None).await.unwrap();
    assert!(names.response.contains(&"carbonio-files-db".to_string()));
    let nodes = c
        .get_service_nodes(
            GetServiceNodesRequest {
                service: "carbonio-files-db",
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(nodes.response.len(), 1);
    assert_eq!(nodes.response[0].service.port, 5432);
    assert_eq!(nodes.response[0].node.address, "127.0.0.9");

    let lock = c
        .get_lock(
            LockRequest {
                key: "locks/leader",
                ..Default::default()
            },
            b"me",
        )
        .await
        .unwrap();
    let (_, v) = a.get_json("/v1/kv/locks/leader").await;
    assert_eq!(v[0]["Session"], lock.session_id.as_str());
    let second = c
        .get_lock(
            LockRequest {
                key: "locks/leader",
                ..Default::default()
            },
            b"you",
        )
        .await;
    assert!(second.is_err(), "a held lock cannot be taken twice");
    drop(lock);

    let deleted = c
        .delete_key(DeleteKeyRequest {
            key: "carbonio-files/db-username",
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(deleted);
    let (st, _) = a.get_json("/v1/kv/carbonio-files/db-username").await;
    assert_eq!(st, 404);
}

/// Runs tests/it/py_consul_client.py against `a` (`mode`: extra
/// arguments) and checks that every step passed.
async fn py_consul(a: &meshgate_test_support::Agent, mode: &[&str]) {
    crate::require(
        "python3",
        &["-c", "import consul; consul.Consul"],
        "the py-consul client: pip install py-consul",
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/py_consul_client.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .arg(a.addr.ip().to_string())
        .arg(a.addr.port().to_string())
        .arg("test-node")
        .args(mode);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run python3"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ALL OK"),
        "py-consul run {mode:?} failed ({}):\n{stdout}\n{stderr}\nagent log:\n{}",
        out.status,
        a.log()
    );
}

/// py-consul drives a `-dev` agent through an application's whole use of
/// the API (tests/it/py_consul_client.py: KV with blocking reads, CAS and
/// locks, sessions, agent services and TTL checks, catalog, health,
/// transactions, events, config entries, intentions, the CA, prepared
/// queries, status): every step asserts what the client got back.
#[tokio::test]
async fn python_client_drives_the_api() {
    py_consul(&dev().await, &[]).await;
}

/// py-consul sets up ACLs on an agent that enforces them (default deny,
/// not bootstrapped): bootstrap, a policy in Consul's JSON rule form, a role,
/// a token; what the token may and may not do; token self, list, clone,
/// update and delete.
#[tokio::test]
async fn python_client_sets_up_acls() {
    let a = crate::dev_builder()
        .config_file(
            "acl.hcl",
            "acl {\n  enabled = true\n  default_policy = \"deny\"\n}\n",
        )
        .start()
        .await;
    py_consul(&a, &["acl"]).await;
}

/// A real Prometheus (Debian's `prometheus`) scraping `targets` every
/// second: its parser is the judge of meshgate's text format.
pub struct Prometheus {
    port: u16,
    _dir: tempfile::TempDir,
    _proc: meshgate_test_support::Proc,
}

/// One scrape job: name, `host:port`, path, and the `format` parameter.
pub struct Job<'a> {
    pub name: &'a str,
    pub target: String,
    pub path: &'a str,
    pub format: Option<&'a str>,
}

impl Prometheus {
    pub fn start(jobs: &[Job<'_>]) -> Prometheus {
        crate::require(
            "prometheus",
            &["--version"],
            "Prometheus: apt-get install --no-install-recommends prometheus",
        );
        let dir = tempfile::tempdir().unwrap();
        let port = meshgate_test_support::free_port("127.0.0.1");
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for j in jobs {
            config.push_str(&format!(
                "  - job_name: {}\n    metrics_path: {}\n    static_configs:\n      - targets: [\"{}\"]\n",
                j.name, j.path, j.target
            ));
            if let Some(f) = j.format {
                config.push_str(&format!("    params:\n      format: [{f}]\n"));
            }
        }
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let proc = meshgate_test_support::Proc::spawn(
            "prometheus",
            "prometheus",
            &[
                &format!("--config.file={}", file.display()),
                &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
            ],
            &[],
        );
        Prometheus {
            port,
            _dir: dir,
            _proc: proc,
        }
    }

    /// The first value of an instant query, if there is one.
    pub async fn query(&self, q: &str) -> Option<String> {
        let encoded: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let r = meshgate_test_support::client()
            .get(format!(
                "http://127.0.0.1:{}/api/v1/query?query={encoded}",
                self.port
            ))
            .send()
            .await
            .ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        Some(v["data"]["result"][0]["value"][1].as_str()?.to_string())
    }

    /// [`Prometheus::query`] read as a number (`NaN` included).
    pub async fn query_number(&self, q: &str) -> Option<f64> {
        self.query(q).await?.parse().ok()
    }

    /// Waits until every job's target was scraped whole (`up` is 1 only
    /// when Prometheus accepted all of the text).
    pub async fn wait_up(&self, jobs: &[&str]) {
        for job in jobs {
            let q = format!("up{{job=\"{job}\"}}");
            eventually(
                &format!("Prometheus scrapes {job}"),
                Duration::from_secs(30),
                || async { (self.query(&q).await.as_deref() == Some("1")).then_some(()) },
            )
            .await;
        }
    }
}

/// A real Prometheus scrapes `/v1/agent/metrics?format=prometheus` and sees
/// Consul's names: gauges, counters and timers as summaries with the
/// 0.5/0.9/0.99 quantiles Consul's dashboards query.
#[tokio::test]
async fn prometheus_scrapes_the_agent() {
    let a = crate::dev_builder()
        .config_file(
            "telemetry.hcl",
            "telemetry {\n  disable_hostname = true\n}\n",
        )
        .start()
        .await;
    let prom = Prometheus::start(&[Job {
        name: "meshgate",
        target: a.addr.to_string(),
        path: "/v1/agent/metrics",
        format: Some("prometheus"),
    }]);
    prom.wait_up(&["meshgate"]).await;
    let n = 3;
    let p99 = eventually(
        "the KV timer's quantiles",
        Duration::from_secs(20),
        || async {
            // Writes keep the 10 s window of the quantiles filled.
            for i in 0..n {
                let (st, _) = a.put(&format!("/v1/kv/prom/{i}"), "v").await;
                assert_eq!(st, 200);
            }
            prom.query_number("consul_kvs_apply{quantile=\"0.99\"}")
                .await
                .filter(|x| x.is_finite() && *x > 0.0)
        },
    )
    .await;
    assert!(p99 < 10_000.0, "{p99} ms");
    assert_eq!(
        prom.query("consul_state_kv_entries").await.as_deref(),
        Some("3"),
        "a gauge under Consul's name (no host name: disable_hostname)"
    );
    let count = prom.query_number("consul_kvs_apply_count").await.unwrap();
    assert!(count >= n as f64, "{count}");
    assert_eq!(
        prom.query("consul_server_isLeader").await.as_deref(),
        Some("1")
    );
}

/// A client set up for a Consul Enterprise namespace or admin partition is
/// refused as Consul's community edition refuses it (400, Consul's words),
/// on every namespaced endpoint, and nothing is written; endpoints that are
/// not namespaced answer as usual.
#[tokio::test]
async fn enterprise_namespaces_and_partitions_are_refused() {
    let a = dev().await;
    let http = meshgate_test_support::client();
    let ns_query = "Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature";
    let ap_query =
        "Invalid query parameter: \"partition\" - Partitions are a Consul Enterprise feature";
    for (method, path, header, want) in [
        ("PUT", "/v1/kv/tenant?ns=team-a", None, ns_query),
        ("PUT", "/v1/kv/tenant?ns=default", None, ns_query),
        ("GET", "/v1/kv/tenant?partition=p1", None, ap_query),
        ("GET", "/v1/catalog/services?ns=team-a", None, ns_query),
        (
            "GET",
            "/v1/health/service/web?partition=default",
            None,
            ap_query,
        ),
        (
            "PUT",
            "/v1/kv/tenant",
            Some(("X-Consul-Namespace", "team-a")),
            "Invalid header: \"X-Consul-Namespace\" - Namespaces are a Consul Enterprise feature",
        ),
        (
            "GET",
            "/v1/agent/services",
            Some(("X-Consul-Partition", "p1")),
            "Invalid header: \"X-Consul-Partition\" - Partitions are a Consul Enterprise feature",
        ),
        ("PUT", "/v1/config?ns=team-a", None, ns_query),
        ("GET", "/v1/connect/intentions?ns=team-a", None, ns_query),
        ("PUT", "/v1/session/create?ns=team-a", None, ns_query),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = http.request(m, a.url(path)).body("x");
        if let Some((h, v)) = header {
            req = req.header(h, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 400, "{method} {path}");
        assert_eq!(r.text().await.unwrap(), want, "{method} {path}");
    }
    let (st, _) = a.get_json("/v1/kv/tenant").await;
    assert_eq!(st, 404, "nothing was written");
    // Empty values name nothing; endpoints without namespaces ignore them.
    assert_eq!(a.put("/v1/kv/tenant?ns=", "x").await.0, 200);
    let (st, _) = a.get_json("/v1/status/leader?ns=team-a").await;
    assert_eq!(st, 200);
    // The CLI takes Consul's `-namespace` / `-partition` (and their
    // environment variables) and meets the same refusal.
    let (code, _, err) = meshgate_test_support::cli(
        crate::BIN,
        &a,
        &["kv", "put", "-namespace=team-a", "k", "v"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains(ns_query), "{err}");
    let out = std::process::Command::new(crate::BIN)
        .args(["kv", "get", "k"])
        .env("CONSUL_HTTP_ADDR", &a.base)
        .env("CONSUL_PARTITION", "p1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(ap_query),
        "{out:?}"
    );
    let (st, _) = a.get_json("/v1/kv/k").await;
    assert_eq!(st, 404, "nothing was written");
}

/// Answers are gzipped for clients that accept it (Go's and Python's HTTP
/// clients ask for it and decode it without the caller knowing): large
/// whole answers only, blocking answers included; never for a client that
/// does not ask, for `q=0`, for HEAD or for small answers.
#[tokio::test]
async fn large_answers_are_gzipped_for_clients_that_take_it() {
    use std::io::Read as _;
    let a = dev().await;
    for i in 0..60 {
        let (st, _) = a
            .put(
                &format!("/v1/kv/big/k{i:02}"),
                format!("value {i} of a large listing"),
            )
            .await;
        assert_eq!(st, 200);
    }
    let http = meshgate_test_support::client();
    let get = |path: &str, accept: Option<&str>| {
        let mut req = http.get(a.url(path));
        if let Some(v) = accept {
            req = req.header("Accept-Encoding", v);
        }
        req.send()
    };
    let encoding = |r: &reqwest::Response| crate::header(r, "Content-Encoding");
    let r = get("/v1/kv/big?recurse", None).await.unwrap();
    assert_eq!(encoding(&r), "");
    let index = crate::header(&r, "X-Consul-Index");
    let plain = r.bytes().await.unwrap();
    assert!(plain.len() >= 1400, "{}", plain.len());
    let gunzip = |b: &[u8]| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .expect("a gzip body");
        out
    };
    for accept in ["gzip", "gzip, deflate", "br;q=1.0, gzip;q=0.8", "*"] {
        let r = get("/v1/kv/big?recurse", Some(accept)).await.unwrap();
        assert_eq!(encoding(&r), "gzip", "{accept}");
        assert_eq!(crate::header(&r, "Vary"), "Accept-Encoding");
        assert_eq!(crate::header(&r, "X-Consul-Index"), index);
        let body = r.bytes().await.unwrap();
        assert!(
            body.len() < plain.len() / 2,
            "{} of {}",
            body.len(),
            plain.len()
        );
        assert_eq!(gunzip(&body), plain, "{accept}");
    }
    for accept in ["gzip;q=0", "br", "identity"] {
        let r = get("/v1/kv/big?recurse", Some(accept)).await.unwrap();
        assert_eq!(encoding(&r), "", "{accept}");
        assert_eq!(r.bytes().await.unwrap(), plain, "{accept}");
    }
    // Small answers stay as they are.
    let r = get("/v1/kv/big/k01", Some("gzip")).await.unwrap();
    assert_eq!(encoding(&r), "");
    // HEAD: the head of the plain answer.
    let r = http
        .head(a.url("/v1/kv/big?recurse"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(encoding(&r), "");
    // A blocking query's answer, woken by a write.
    let waiting = get(
        &format!("/v1/kv/big?recurse&index={index}&wait=10s"),
        Some("gzip"),
    );
    let write = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.put("/v1/kv/big/k99", "late").await
    };
    let (r, (st, _)) = tokio::join!(waiting, write);
    assert_eq!(st, 200);
    let r = r.unwrap();
    assert_eq!(encoding(&r), "gzip");
    let woken = gunzip(&r.bytes().await.unwrap());
    assert!(String::from_utf8(woken).unwrap().contains("big/k99"));
}
