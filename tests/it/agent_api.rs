use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use meshgate_test_support::{Agent, eventually};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{dev, dev_builder, header};

async fn catalog_check(a: &Agent, check_id: &str) -> Option<Value> {
    let (_, v) = a.get_json("/v1/health/node/test-node").await;
    v.as_array()?
        .iter()
        .find(|c| c["CheckID"] == check_id)
        .cloned()
}

async fn wait_status(a: &Agent, check_id: &str, status: &str) -> Value {
    eventually(
        &format!("check {check_id} to be {status}"),
        Duration::from_secs(10),
        || async {
            catalog_check(a, check_id)
                .await
                .filter(|c| c["Status"] == status)
        },
    )
    .await
}

/// A tiny HTTP server answering every request with the status in `code`.
async fn http_server(code: Arc<AtomicU16>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let code = code.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let body = format!("status {code}");
                let resp = format!(
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/health")
}

#[tokio::test]
async fn tcp_check_follows_the_listener() {
    let a = dev().await;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let body = json!({"Name": "web", "Port": 80,
        "Check": {"TCP": addr, "Interval": "1s", "Timeout": "500ms"}});
    let (st, text) = a.put("/v1/agent/service/register", body.to_string()).await;
    assert_eq!((st, text.as_str()), (200, ""));
    let c = wait_status(&a, "service:web", "passing").await;
    assert_eq!(c["Output"], format!("TCP connect {addr}: Success"));
    assert_eq!(c["ServiceName"], "web");
    assert_eq!(c["Type"], "tcp");
    drop(l);
    let c = wait_status(&a, "service:web", "critical").await;
    assert!(
        c["Output"].as_str().unwrap().contains("connection refused"),
        "{c}"
    );
}

#[tokio::test]
async fn http_check_statuses() {
    let a = dev().await;
    let code = Arc::new(AtomicU16::new(200));
    let url = http_server(code.clone()).await;
    let body =
        json!({"Name": "api", "Checks": [{"CheckID": "api-http", "HTTP": url, "Interval": "1s"}]});
    assert_eq!(
        a.put("/v1/agent/service/register", body.to_string())
            .await
            .0,
        200
    );
    let c = wait_status(&a, "api-http", "passing").await;
    // The status line as the server sent it (`200 X`), as Go prints it.
    assert_eq!(
        c["Output"],
        format!("HTTP GET {url}: 200 X Output: status 200")
    );
    code.store(429, Ordering::SeqCst);
    wait_status(&a, "api-http", "warning").await;
    code.store(503, Ordering::SeqCst);
    wait_status(&a, "api-http", "critical").await;
}

/// An HTTP check's request carries Consul's headers: its user agent, an
/// `Accept` for text unless the check sets one, and `Connection: close`.
#[tokio::test]
async fn http_checks_send_consuls_headers() {
    let a = dev().await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", l.local_addr().unwrap());
    let heads = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            // The whole head, however many reads it takes.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).to_lowercase());
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    });
    let body = json!({"Name": "api", "Checks": [
        {"CheckID": "plain", "HTTP": url, "Interval": "1s"},
        {"CheckID": "json", "HTTP": url, "Interval": "1s", "Header": {"Accept": ["application/json"]}}]});
    let (st, text) = a.put("/v1/agent/service/register", body.to_string()).await;
    assert_eq!((st, text.as_str()), (200, ""));
    wait_ran(&a, "plain", "passing").await;
    wait_ran(&a, "json", "passing").await;
    let heads = heads.lock().unwrap().clone();
    assert!(
        heads
            .iter()
            .any(|h| h.contains("accept: text/plain, text/*, */*\r\n")),
        "{heads:?}"
    );
    assert!(
        heads
            .iter()
            .any(|h| h.contains("accept: application/json\r\n") && !h.contains("text/plain")),
        "{heads:?}"
    );
    assert!(
        heads.iter().all(|h| h.contains("connection: close\r\n")
            && h.contains("user-agent: consul health check\r\n")),
        "{heads:?}"
    );
}

/// HTTP checks follow redirects (up to 10, as Go's client), unless
/// `DisableRedirects`: then the 3xx is the answer, and critical.
#[tokio::test]
async fn http_checks_follow_redirects_unless_disabled() {
    let a = dev().await;
    let port = crate::external::http_server("127.0.0.1").await;
    let url = format!("http://127.0.0.1:{port}/moved");
    let body = json!({"Name": "api", "Checks": [
        {"CheckID": "follows", "HTTP": url, "Interval": "1s"},
        {"CheckID": "stays", "HTTP": url, "Interval": "1s", "DisableRedirects": true}]});
    let (st, text) = a.put("/v1/agent/service/register", body.to_string()).await;
    assert_eq!((st, text.as_str()), (200, ""));
    let c = wait_ran(&a, "follows", "passing").await;
    assert_eq!(
        output(&c),
        format!("HTTP GET {url}: 200 OK Output: fine"),
        "{c}"
    );
    let c = wait_ran(&a, "stays", "critical").await;
    assert_eq!(
        output(&c),
        format!("HTTP GET {url}: 302 Found Output: moved"),
        "{c}"
    );
}

/// `check_update_interval` (Consul's, 5m by default): a new output under an
/// unchanged status reaches the catalog only after it (the agent's own view
/// has it at once), so a check whose output changes at every run does not
/// wake the blocking queries on its service each time; a status change goes
/// at once, with its output; `0s` writes every change at once.
#[tokio::test]
async fn check_output_changes_wait_for_check_update_interval() {
    async fn start(interval: Option<&str>) -> Agent {
        let b = dev_builder();
        let b = match interval {
            Some(i) => b.config_file("c.hcl", &format!("check_update_interval = \"{i}\"\n")),
            None => b,
        };
        let a = b.start().await;
        let body = json!({"Name": "job", "Check": {"CheckID": "job-ttl", "TTL": "60s"}});
        let (st, _) = a.put("/v1/agent/service/register", body.to_string()).await;
        assert_eq!(st, 200);
        let (st, _) = a.put("/v1/agent/check/pass/job-ttl?note=one", "").await;
        assert_eq!(st, 200);
        a
    }
    async fn agent_output(a: &Agent) -> Value {
        let (_, checks) = a.get_json("/v1/agent/checks").await;
        checks["job-ttl"]["Output"].clone()
    }
    async fn catalog_output(a: &Agent) -> Value {
        catalog_check(a, "job-ttl").await.unwrap()["Output"].clone()
    }

    // The default: the status change is in the catalog at once.
    let a = start(None).await;
    assert_eq!(catalog_output(&a).await, "one");
    let r = a
        .http
        .get(a.url("/v1/health/service/job"))
        .send()
        .await
        .unwrap();
    let idx = header(&r, "x-consul-index");
    let http = a.http.clone();
    let url = a.url(&format!("/v1/health/service/job?index={idx}&wait=2s"));
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = http.get(url).send().await.unwrap();
        (started.elapsed(), header(&r, "x-consul-index"))
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, _) = a.put("/v1/agent/check/pass/job-ttl?note=two", "").await;
    assert_eq!(st, 200);
    assert_eq!(agent_output(&a).await, "two");
    assert_eq!(catalog_output(&a).await, "one");
    // The blocking query was not woken: it ran out its wait, index unchanged.
    let (took, after) = waiter.await.unwrap();
    assert!(took >= Duration::from_millis(1900), "woken after {took:?}");
    assert_eq!(after, idx);
    assert_eq!(catalog_output(&a).await, "one");
    // A status change goes at once, with the latest output.
    let (st, _) = a
        .put(
            "/v1/agent/check/update/job-ttl",
            r#"{"Status":"warning","Output":"three"}"#,
        )
        .await;
    assert_eq!(st, 200);
    let c = catalog_check(&a, "job-ttl").await.unwrap();
    assert_eq!(
        (&c["Status"], &c["Output"]),
        (&json!("warning"), &json!("three"))
    );
    drop(a);

    // A short interval: the output follows within it (half of it at least).
    let a = start(Some("2s")).await;
    let (st, _) = a.put("/v1/agent/check/pass/job-ttl?note=two", "").await;
    assert_eq!(st, 200);
    assert_eq!(catalog_output(&a).await, "one");
    eventually("the deferred output", Duration::from_secs(5), || async {
        (catalog_output(&a).await == "two").then_some(())
    })
    .await;
    drop(a);

    // `0s`: at once.
    let a = start(Some("0s")).await;
    let (st, _) = a.put("/v1/agent/check/pass/job-ttl?note=two", "").await;
    assert_eq!(st, 200);
    assert_eq!(catalog_output(&a).await, "two");
    // A bad value stops the start.
    let (code, out) = dev_builder()
        .config_file("c.hcl", "check_update_interval = \"soon\"\n")
        .start_failure();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("check_update_interval: invalid value \"soon\""),
        "{out}"
    );
}

/// Registering a service again (Nomad re-syncs its services this way) keeps
/// the state of its checks, as Consul restores it: no flap to critical, no
/// new index for the watchers of the service when nothing else changed.
#[tokio::test]
async fn registering_a_service_again_keeps_its_checks_state() {
    let a = dev().await;
    let body = json!({
        "ID": "_nomad-task-api", "Name": "api", "Port": 8080, "Tags": ["http"],
        "Checks": [{"CheckID": "_nomad-check-ttl", "Name": "ttl", "TTL": "1m0s"}]
    })
    .to_string();
    assert_eq!(
        a.put("/v1/agent/service/register", body.clone()).await.0,
        200
    );
    let (st, _) = a
        .put(
            "/v1/agent/check/update/_nomad-check-ttl",
            r#"{"Status":"passing","Output":"fine"}"#,
        )
        .await;
    assert_eq!(st, 200);
    let r = a
        .http
        .get(a.url("/v1/health/service/api?passing=1"))
        .send()
        .await
        .unwrap();
    let idx = header(&r, "x-consul-index");
    for path in [
        "/v1/agent/service/register",
        "/v1/agent/service/register?replace-existing-checks",
    ] {
        assert_eq!(a.put(path, body.clone()).await.0, 200, "{path}");
        let (_, checks) = a.get_json("/v1/agent/checks").await;
        let c = &checks["_nomad-check-ttl"];
        assert_eq!(
            (&c["Status"], &c["Output"]),
            (&json!("passing"), &json!("fine")),
            "{path}: {c}"
        );
        let r = a
            .http
            .get(a.url("/v1/health/service/api?passing=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "x-consul-index"), idx, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{path}: {v}");
    }
}

/// `EnableTagOverride`: tags edited in the catalog stay, and the agent
/// adopts them at its next anti-entropy run; without it the agent writes
/// its own tags back, as Consul's does.
#[tokio::test]
async fn enable_tag_override_keeps_catalog_tags() {
    let a = dev().await;
    for (id, eto) in [("eto", true), ("plain", false)] {
        let body =
            json!({"ID": id, "Name": id, "Port": 80, "Tags": ["http"], "EnableTagOverride": eto});
        assert_eq!(
            a.put("/v1/agent/service/register", body.to_string())
                .await
                .0,
            200
        );
        let edit = json!({"Node": "test-node", "SkipNodeUpdate": true,
            "Service": {"ID": id, "Service": id, "Port": 80, "Tags": ["http", "edited"], "EnableTagOverride": eto}});
        assert_eq!(a.put("/v1/catalog/register", edit.to_string()).await.0, 200);
    }
    // Any local change sets anti-entropy off (else it runs every 30 s).
    let other = json!({"Name": "other", "Port": 81});
    assert_eq!(
        a.put("/v1/agent/service/register", other.to_string())
            .await
            .0,
        200
    );
    eventually("anti-entropy ran", Duration::from_secs(10), || async {
        let (_, v) = a.get_json("/v1/catalog/service/plain").await;
        (v[0]["ServiceTags"] == json!(["http"])).then_some(())
    })
    .await;
    let (_, v) = a.get_json("/v1/catalog/service/eto").await;
    assert_eq!(v[0]["ServiceTags"], json!(["http", "edited"]), "{v}");
    let (_, local) = a.get_json("/v1/agent/service/eto").await;
    assert_eq!(local["Tags"], json!(["http", "edited"]), "{local}");
}

/// A dev agent whose TLS checks trust the CA in `ca_file`
/// (`tls.defaults.ca_file`).
async fn agent_trusting(ca_file: &std::path::Path) -> Agent {
    dev_builder()
        .config_file(
            "tls.hcl",
            &format!(
                "tls {{ defaults {{ ca_file = \"{}\" }} }}",
                ca_file.display()
            ),
        )
        .start()
        .await
}

/// An HTTPS server on `host` answering `200 ok` to every request with
/// `cert`; records the name each client sent (SNI).
pub(crate) async fn https_server(
    host: &str,
    cert_pem: &str,
    key_pem: &str,
) -> (u16, Arc<std::sync::Mutex<Vec<Option<String>>>>) {
    let acceptor = crate::tls_acceptor(cert_pem, key_pem);
    let l = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let names = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let (acceptor, names) = (acceptor.clone(), names.clone());
            tokio::spawn(async move {
                let Ok(mut t) = acceptor.accept(s).await else {
                    return;
                };
                let sni = t.get_ref().1.server_name().map(str::to_string);
                names.lock().unwrap().push(sni);
                let mut b = [0u8; 4096];
                let _ = t.read(&mut b).await;
                let _ = t
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = t.shutdown().await;
            });
        }
    });
    (port, seen)
}

/// HTTPS checks trust the agent's CA (`tls.defaults.ca_file`) and, with
/// `TLSServerName`, send that name (SNI) and verify the certificate against
/// it while reaching the URL's address, as Consul's do; without it the
/// certificate must name the URL's host.
#[tokio::test]
async fn https_checks_use_the_agent_ca_and_tls_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::dataplane::test_ca("web.meshgate.test");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let (port, seen) = https_server("127.0.0.1", &ca.cert_pem, &ca.key_pem).await;
    let a = agent_trusting(&ca_file).await;
    let url = format!("https://127.0.0.1:{port}/health");
    for (id, extra) in [
        ("named", json!({"TLSServerName": "web.meshgate.test"})),
        ("unnamed", json!({})),
        (
            "wrong-name",
            json!({"TLSServerName": "other.meshgate.test"}),
        ),
    ] {
        let mut body = json!({"ID": id, "Name": id, "HTTP": url, "Interval": "1s"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        register_check(&a, body).await;
    }
    let c = wait_ran(&a, "named", "passing").await;
    assert!(
        output(&c).starts_with(&format!("HTTP GET {url}: 200 OK Output: ok")),
        "{c}"
    );
    assert!(
        seen.lock()
            .unwrap()
            .contains(&Some("web.meshgate.test".to_string())),
        "{:?}",
        seen.lock().unwrap()
    );
    // Failures read as Go's client words them: the method as the
    // operation, the URL, what failed.
    let c = wait_ran(&a, "unnamed", "critical").await;
    assert!(output(&c).starts_with(&format!("Get \"{url}\": ")), "{c}");
    assert!(output(&c).contains("certificate"), "{c}");
    wait_ran(&a, "wrong-name", "critical").await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = format!("http://127.0.0.1:{closed}/hook");
    register_check(
        &a,
        json!({"ID": "refused", "Name": "refused", "HTTP": refused, "Method": "POST", "Interval": "1s"}),
    )
    .await;
    let c = wait_ran(&a, "refused", "critical").await;
    assert_eq!(
        output(&c),
        format!("Post \"{refused}\": dial tcp 127.0.0.1:{closed}: connect: connection refused")
    );
}

#[tokio::test]
async fn ttl_check_updates_and_expiry() {
    let a = dev().await;
    let body = json!({"Name": "job", "Check": {"CheckID": "job-ttl", "TTL": "1s"}});
    assert_eq!(
        a.put("/v1/agent/service/register", body.to_string())
            .await
            .0,
        200
    );
    let c = catalog_check(&a, "job-ttl").await.unwrap();
    assert_eq!(c["Status"], "critical", "new checks start critical");
    assert_eq!(
        a.put("/v1/agent/check/pass/job-ttl?note=all+good", "")
            .await
            .0,
        200
    );
    let c = wait_status(&a, "job-ttl", "passing").await;
    assert_eq!(c["Output"], "all good");
    let c = wait_status(&a, "job-ttl", "critical").await;
    assert!(
        c["Output"].as_str().unwrap().starts_with("TTL expired"),
        "{c}"
    );
    let (st, _) = a
        .put(
            "/v1/agent/check/update/job-ttl",
            r#"{"Status":"warning","Output":"slow"}"#,
        )
        .await;
    assert_eq!(st, 200);
    wait_status(&a, "job-ttl", "warning").await;
    let (st, body) = a
        .put("/v1/agent/check/update/job-ttl", r#"{"Status":"bogus"}"#)
        .await;
    assert_eq!((st, body.as_str()), (400, "Invalid check status: 'bogus'"));
    let (st, body) = a.put("/v1/agent/check/pass/nope", "").await;
    assert_eq!(
        (st, body.as_str()),
        (
            404,
            "Unknown check ID \"nope\". Ensure that the check ID is passed, not the check name."
        )
    );
}

#[tokio::test]
async fn agent_services_and_content_hash_blocking() {
    let a = dev().await;
    let body = json!({"name": "web", "id": "web-1", "port": 8080, "tags": ["a"], "address": "127.0.0.1",
        "enable_tag_override": true, "meta": {"team": "files"}});
    assert_eq!(
        a.put("/v1/agent/service/register", body.to_string())
            .await
            .0,
        200
    );
    let (_, v) = a.get_json("/v1/agent/services").await;
    let s = &v["web-1"];
    assert_eq!(s["Service"], "web");
    assert_eq!(s["Port"], 8080);
    assert_eq!(s["Datacenter"], "dc1");
    assert_eq!(s["EnableTagOverride"], true);
    assert_eq!(s["Meta"]["team"], "files");
    assert_eq!(
        s["TaggedAddresses"]["lan_ipv4"],
        json!({"Address": "127.0.0.1", "Port": 8080})
    );
    assert!(s.get("Proxy").is_none());
    assert!(
        v.get("consul").is_none(),
        "the servers' consul service is catalog-only"
    );
    let r = a
        .http
        .get(a.url("/v1/agent/service/web-1"))
        .send()
        .await
        .unwrap();
    let hash = header(&r, "x-consul-contenthash");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ContentHash"], hash.as_str());
    let url = a.url(&format!("/v1/agent/service/web-1?hash={hash}&wait=20s"));
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
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!w.is_finished());
    let body = json!({"name": "web", "id": "web-1", "port": 9090});
    a.put("/v1/agent/service/register", body.to_string()).await;
    let v = tokio::time::timeout(Duration::from_secs(5), w)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v["Port"], 9090);
    assert_ne!(v["ContentHash"], hash.as_str());
    let r = a
        .http
        .get(a.url("/v1/agent/service/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (404, "unknown service ID: nope".into())
    );
}

#[tokio::test]
async fn deregister_and_errors() {
    let a = dev().await;
    let (st, body) = a
        .put("/v1/agent/service/deregister/carbonio-gateway", "")
        .await;
    assert_eq!(
        (st, body.as_str()),
        (
            404,
            "Unknown service ID \"carbonio-gateway\". Ensure that the service ID is passed, not the service name."
        )
    );
    let (st, body) = a.put("/v1/agent/service/register", r#"{"Port": 1}"#).await;
    assert_eq!((st, body.as_str()), (400, "Missing service name"));
    let (st, body) = a
        .put(
            "/v1/agent/service/register",
            r#"{"Name":"x","Check":{"TCP":"127.0.0.1:1"}}"#,
        )
        .await;
    assert_eq!(
        (st, body.as_str()),
        (
            400,
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
        )
    );
    let (st, body) = a
        .put("/v1/agent/service/register", r#"{"Name":"x","Nope":1}"#)
        .await;
    assert_eq!(
        (st, body.as_str()),
        (400, "Request decode failed: json: unknown field \"Nope\"")
    );
    let (st, body) = a
        .put(
            "/v1/agent/service/register",
            r#"{"Name":"x","Check":{"Args":["/bin/true"],"Interval":"10s"}}"#,
        )
        .await;
    assert_eq!(st, 500);
    assert!(
        body.starts_with("Scripts are disabled on this agent"),
        "{body}"
    );
    let (_, v) = a.get_json("/v1/agent/services").await;
    assert_eq!(v, json!({}), "refused registrations left nothing behind");
    let (st, _) = a
        .put("/v1/agent/service/register", r#"{"Name":"x","Port":1}"#)
        .await;
    assert_eq!(st, 200);
    assert_eq!(a.put("/v1/agent/service/deregister/x", "").await.0, 200);
    let (_, v) = a.get_json("/v1/catalog/service/x").await;
    assert_eq!(v, json!([]));
}

#[tokio::test]
async fn sidecar_service_is_expanded() {
    let a = dev().await;
    let body = json!({
        "Name": "carbonio-files", "Port": 10000,
        "Connect": {"SidecarService": {"Proxy": {"Upstreams": [
            {"DestinationName": "carbonio-files-db", "LocalBindAddress": "127.0.0.1", "LocalBindPort": 20000}
        ]}}}
    });
    assert_eq!(
        a.put("/v1/agent/service/register", body.to_string())
            .await
            .0,
        200
    );
    let (_, v) = a.get_json("/v1/agent/services").await;
    let sc = &v["carbonio-files-sidecar-proxy"];
    assert_eq!(sc["Kind"], "connect-proxy");
    assert_eq!(sc["Service"], "carbonio-files-sidecar-proxy");
    assert_eq!(sc["Port"], 21000);
    assert_eq!(sc["Proxy"]["DestinationServiceName"], "carbonio-files");
    assert_eq!(sc["Proxy"]["DestinationServiceID"], "carbonio-files");
    assert_eq!(sc["Proxy"]["LocalServicePort"], 10000);
    assert_eq!(
        sc["Proxy"]["Upstreams"][0]["DestinationName"],
        "carbonio-files-db"
    );
    assert_eq!(sc["Proxy"]["Upstreams"][0]["LocalBindPort"], 20000);
    let (_, c) = a.get_json("/v1/health/connect/carbonio-files").await;
    assert_eq!(c[0]["Service"]["ID"], "carbonio-files-sidecar-proxy");
    let (_, c) = a.get_json("/v1/catalog/connect/carbonio-files").await;
    assert_eq!(c[0]["ServiceKind"], "connect-proxy");
    // Removing the service removes its sidecar.
    a.put("/v1/agent/service/deregister/carbonio-files", "")
        .await;
    let (_, v) = a.get_json("/v1/agent/services").await;
    assert_eq!(v, json!({}));
}

#[tokio::test]
async fn critical_services_are_reaped() {
    let a = dev_builder()
        .env("MESHGATE_CHECK_REAP_MIN", "1s")
        .start()
        .await;
    let body =
        json!({"Name": "flaky", "Check": {"TTL": "30s", "DeregisterCriticalServiceAfter": "1s"}});
    assert_eq!(
        a.put("/v1/agent/service/register", body.to_string())
            .await
            .0,
        200
    );
    eventually(
        "the critical service to be deregistered",
        Duration::from_secs(10),
        || async {
            let (_, v) = a.get_json("/v1/agent/services").await;
            (v == json!({})).then_some(())
        },
    )
    .await;
    let (_, v) = a.get_json("/v1/catalog/service/flaky").await;
    assert_eq!(v, json!([]));
}

#[tokio::test]
async fn node_checks_self_and_members() {
    let a = dev().await;
    let (st, _) = a
        .put(
            "/v1/agent/check/register",
            r#"{"Name":"mem","TTL":"10s","Status":"passing"}"#,
        )
        .await;
    assert_eq!(st, 200);
    let (_, v) = a.get_json("/v1/agent/checks").await;
    assert_eq!(v["mem"]["Status"], "passing");
    assert_eq!(v["mem"]["Node"], "test-node");
    assert!(v.get("serfHealth").is_none());
    assert_eq!(catalog_check(&a, "mem").await.unwrap()["Status"], "passing");
    assert_eq!(a.put("/v1/agent/check/deregister/mem", "").await.0, 200);
    assert!(catalog_check(&a, "mem").await.is_none());
    let (st, body) = a
        .put(
            "/v1/agent/check/register",
            r#"{"Name":"c","TTL":"10s","ServiceID":"ghost"}"#,
        )
        .await;
    assert_eq!(
        (st, body.as_str()),
        (404, "ServiceID \"ghost\" does not exist")
    );
    let (_, s) = a.get_json("/v1/agent/self").await;
    assert_eq!(s["Config"]["NodeName"], "test-node");
    assert_eq!(s["Config"]["Datacenter"], "dc1");
    assert_eq!(s["Config"]["Server"], true);
    assert!(s["Config"]["Version"].as_str().unwrap().starts_with("1."));
    assert_eq!(s["DebugConfig"]["ConnectEnabled"], true, "{s}");
    let (_, m) = a.get_json("/v1/agent/members").await;
    assert_eq!(m[0]["Name"], "test-node");
    assert_eq!(m[0]["Status"], 1);
    assert_eq!(m[0]["Tags"]["role"], "consul");
    let (_, l) = a.get_json("/v1/status/leader").await;
    assert!(l.as_str().unwrap().ends_with(":8300"));
    let (_, p) = a.get_json("/v1/status/peers").await;
    assert_eq!(p.as_array().unwrap().len(), 1);
}

/// A real gRPC server (Python grpcio with the standard health service), driven
/// through its stdin.
struct GrpcServer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    addr: String,
}

impl GrpcServer {
    fn start(tls: Option<(&std::path::Path, &std::path::Path)>) -> GrpcServer {
        use std::io::BufRead;
        crate::require(
            "python3",
            &["-c", "import grpc, grpc_health.v1.health"],
            "Python's grpcio: pip install grpcio grpcio-health-checking",
        );
        let port = meshgate_test_support::free_port("127.0.0.1");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/grpc_health_server.py"
        );
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(script).arg(port.to_string());
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the gRPC health server");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read from the gRPC server");
        assert_eq!(line.trim(), "ready", "the gRPC server did not start");
        GrpcServer {
            child,
            stdin,
            stdout,
            addr: format!("127.0.0.1:{port}"),
        }
    }

    fn set(&mut self, service: &str, status: &str) {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "set {service} {status}").expect("write to the gRPC server");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("gRPC server answer");
        assert_eq!(line.trim(), "ok");
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn register_check(a: &Agent, body: Value) {
    let (st, text) = a.put("/v1/agent/check/register", body.to_string()).await;
    assert_eq!((st, text.as_str()), (200, ""), "{body}");
}

/// Waits until a check has run (it has an output) and has `status`, as the
/// agent sees it: a new check starts critical with no output, and a first
/// run that leaves it critical only changes its output, which reaches the
/// catalog after `check_update_interval` (as in Consul).
async fn wait_ran(a: &Agent, check_id: &str, status: &str) -> Value {
    eventually(
        &format!("check {check_id} to run and be {status}"),
        Duration::from_secs(10),
        || async {
            let (_, checks) = a.get_json("/v1/agent/checks").await;
            checks
                .get(check_id)
                .cloned()
                .filter(|c| c["Status"] == status && !output(c).is_empty())
        },
    )
    .await
}

fn output(c: &Value) -> &str {
    c["Output"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_h2ping_checks_against_a_real_grpc_server() {
    let a = dev().await;
    let mut srv = GrpcServer::start(None);
    srv.set("db", "SERVING");
    let addr = srv.addr.clone();
    let db = format!("{addr}/db");
    register_check(
        &a,
        json!({"ID": "g-db", "Name": "db", "GRPC": db, "Interval": "1s"}),
    )
    .await;
    register_check(
        &a,
        json!({"ID": "g-all", "Name": "all", "GRPC": addr, "Interval": "1s"}),
    )
    .await;
    register_check(
        &a,
        json!({"ID": "g-nope", "Name": "nope", "GRPC": format!("{addr}/nope"), "Interval": "1s"}),
    )
    .await;
    register_check(
        &a,
        json!({"ID": "h2c", "Name": "h2c", "H2PING": addr, "H2PingUseTLS": false, "Interval": "1s"}),
    )
    .await;
    // H2PingUseTLS defaults to true: TLS against a cleartext server fails.
    register_check(
        &a,
        json!({"ID": "h2-tls", "Name": "h2 tls", "H2PING": addr, "Interval": "1s"}),
    )
    .await;

    let c = wait_ran(&a, "g-db", "passing").await;
    assert_eq!(output(&c), format!("gRPC check {db}: success"));
    assert_eq!(c["Type"], "grpc");
    let c = wait_ran(&a, "g-all", "passing").await;
    assert_eq!(output(&c), format!("gRPC check {addr}: success"));
    let c = wait_ran(&a, "g-nope", "critical").await;
    assert!(
        output(&c).starts_with("rpc error: code = NotFound desc = "),
        "{c}"
    );
    let c = wait_ran(&a, "h2c", "passing").await;
    assert_eq!(output(&c), "HTTP2 ping was successful");
    assert_eq!(c["Type"], "h2ping");
    let c = wait_ran(&a, "h2-tls", "critical").await;
    assert!(
        output(&c).starts_with(&format!("Failed to dial to {addr}: ")),
        "{c}"
    );

    // The service stops serving, then serves again.
    srv.set("db", "NOT_SERVING");
    let c = wait_ran(&a, "g-db", "critical").await;
    assert_eq!(output(&c), format!("gRPC {db} serving status: NOT_SERVING"));
    wait_ran(&a, "g-all", "passing").await;
    srv.set("db", "SERVING");
    wait_ran(&a, "g-db", "passing").await;

    // The server goes away.
    drop(srv);
    let c = wait_ran(&a, "g-db", "critical").await;
    assert!(
        output(&c).starts_with("rpc error: code = Unavailable desc = connection error")
            && output(&c).contains("connection refused"),
        "{c}"
    );
    // (A ping in flight while the server went away fails with "broken
    // pipe"; the runs after it find nothing listening.)
    eventually(
        "the h2ping check finds nothing listening",
        Duration::from_secs(10),
        || async {
            let c = wait_ran(&a, "h2c", "critical").await;
            output(&c).contains("connection refused").then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_h2ping_checks_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::dataplane::test_ca("grpc.meshgate.test");
    let other = crate::dataplane::test_ca("grpc.meshgate.test");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_file = write("ca.pem", &ca.ca_pem);
    let cert = write("cert.pem", &ca.cert_pem);
    let key = write("key.pem", &ca.key_pem);
    let other_ca = write("other-ca.pem", &other.ca_pem);
    let srv = GrpcServer::start(Some((&cert, &key)));
    let addr = srv.addr.clone();

    // The agent trusts the server's CA through tls.defaults.ca_file.
    let a = agent_trusting(&ca_file).await;
    // A second agent trusts another CA only.
    let b = agent_trusting(&other_ca).await;
    let name = "grpc.meshgate.test";
    for agent in [&a, &b] {
        register_check(
            agent,
            json!({"ID": "grpc-tls", "Name": "grpc tls", "GRPC": addr, "GRPCUseTLS": true,
                   "TLSServerName": name, "Interval": "1s"}),
        )
        .await;
        register_check(
            agent,
            json!({"ID": "h2-tls", "Name": "h2 tls", "H2PING": addr,
                   "TLSServerName": name, "Interval": "1s"}),
        )
        .await;
        register_check(
            agent,
            json!({"ID": "grpc-skip", "Name": "grpc skip", "GRPC": addr, "GRPCUseTLS": true,
                   "TLSSkipVerify": true, "Interval": "1s"}),
        )
        .await;
        register_check(
            agent,
            json!({"ID": "grpc-plain", "Name": "grpc plain", "GRPC": addr, "Interval": "1s"}),
        )
        .await;
        register_check(
            agent,
            json!({"ID": "tcp-tls", "Name": "tcp tls", "TCP": addr, "TCPUseTLS": true,
                   "TLSServerName": name, "Interval": "1s"}),
        )
        .await;
    }
    let c = wait_ran(&a, "grpc-tls", "passing").await;
    assert_eq!(output(&c), format!("gRPC check {addr}: success"));
    let c = wait_ran(&a, "h2-tls", "passing").await;
    assert_eq!(output(&c), "HTTP2 ping was successful");
    wait_ran(&a, "grpc-skip", "passing").await;
    let c = wait_ran(&a, "tcp-tls", "passing").await;
    assert!(output(&c).contains("TLS handshake: TLSv1.3"), "{c}");
    // Cleartext against a TLS server never succeeds.
    wait_ran(&a, "grpc-plain", "critical").await;

    // Certificates from a CA the agent does not trust are refused; skipping
    // verification still works.
    let c = wait_ran(&b, "grpc-tls", "critical").await;
    assert!(
        output(&c).contains("authentication handshake failed"),
        "{c}"
    );
    let c = wait_ran(&b, "h2-tls", "critical").await;
    assert!(
        output(&c).starts_with(&format!("Failed to dial to {addr}: ")),
        "{c}"
    );
    wait_ran(&b, "grpc-skip", "passing").await;
    wait_ran(&b, "tcp-tls", "critical").await;
}

/// Status, headers (but `Date`) and body of a GET.
async fn answer(a: &Agent, path: &str) -> (u16, Vec<(String, String)>, String) {
    let r = a.http.get(a.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    let mut headers: Vec<(String, String)> = r
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str() != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    headers.sort();
    (status, headers, r.text().await.unwrap())
}

/// The API's routes match the decoded path, as Consul's mux matches Go's
/// `URL.Path`: a percent-encoded path answers byte for byte as its decoded
/// form, an escape in a fixed segment included (for HEAD and OPTIONS too),
/// and 405s and redirects still happen. (That the direct way and the
/// router's answer alike is a unit test in crates/agent/src/http.rs.)
#[tokio::test]
async fn direct_and_routed_requests_answer_alike() {
    let a = dev().await;
    assert_eq!(a.put("/v1/kv/plain", "v").await.0, 200);
    let (st, _) = a
        .put(
            "/v1/agent/service/register",
            r#"{"Name":"web","Port":80,"Check":{"TTL":"30s","Status":"passing"}}"#,
        )
        .await;
    assert_eq!(st, 200);
    for (direct, routed) in [
        ("/v1/kv/plain", "/v1/kv/pl%61in"),
        ("/v1/kv/plain?raw", "/v1/kv/pl%61in?raw"),
        ("/v1/kv/missing", "/v1/kv/mi%73sing"),
        ("/v1/catalog/service/web", "/v1/catalog/service/w%65b"),
        (
            "/v1/health/service/web?passing",
            "/v1/health/service/w%65b?passing",
        ),
        ("/v1/agent/service/web", "/v1/agent/service/w%65b"),
    ] {
        let d = answer(&a, direct).await;
        let r = answer(&a, routed).await;
        assert_eq!(d, r, "{direct} and {routed} answer differently");
        assert!(d.1.iter().any(|(k, _)| k == "x-consul-default-acl-policy"));
    }
    let (st, me) = a.get_json("/v1/agent/s%65lf").await;
    assert_eq!(st, 200);
    assert_eq!(me["Config"]["NodeName"], "test-node", "{me}");
    let head = a.http.head(a.url("/v1/agent/s%65lf")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let options = a
        .http
        .request(reqwest::Method::OPTIONS, a.url("/v1/status/le%61der"))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 200);
    assert_eq!(header(&options, "allow"), "OPTIONS,GET");
    assert_eq!(a.put("/v1/kv/dir%2Fkey", "in a folder").await.0, 200);
    let raw = answer(&a, "/v1/kv/dir/key?raw").await;
    assert_eq!((raw.0, raw.2.as_str()), (200, "in a folder"));
    let head = a.http.head(a.url("/v1/kv/plain")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-type"), "application/json");
    assert!(head.text().await.unwrap().is_empty());
    let wrong = a
        .http
        .post(a.url("/v1/status/leader"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(header(&wrong, "allow"), "OPTIONS,GET");
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, location) in [
        ("/v1//kv/plain?x=1", "/v1/kv/plain?x=1"),
        ("/v1/kv/a%2F..%2Fplain", "/v1/kv/plain"),
    ] {
        let moved = no_follow.get(a.url(path)).send().await.unwrap();
        assert_eq!(moved.status(), 301, "{path}");
        assert_eq!(header(&moved, "location"), location, "{path}");
    }
}

/// `GET /v1/agent/health/service/{id,name}/...`: what load balancers probe.
/// The status follows the service's checks and the node's (200 passing,
/// 429 warning, 503 critical or maintenance), by name the worst instance;
/// `?format=text` or `Accept: text/plain` gives the status alone; unknown
/// services are 404 in Consul's forms; the token needs `service:read`.
#[tokio::test]
async fn service_health_for_load_balancers() {
    use crate::acl::{ROOT, acl_agent, call, token_with_rules};
    let a = acl_agent().await;
    let get = |path: &str, token: Option<&str>, accept: Option<&str>| {
        let mut req = a.http.get(a.url(path));
        if let Some(t) = token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(v) = accept {
            req = req.header("Accept", v);
        }
        async move {
            let r = req.send().await.unwrap();
            let code = r.status().as_u16();
            let ctype = header(&r, "content-type");
            (code, ctype, r.text().await.unwrap())
        }
    };
    for (id, port) in [("web1", 8081), ("web2", 8082)] {
        let (st, body, _) = call(
            &a,
            "PUT",
            "/v1/agent/service/register",
            Some(ROOT),
            Some(
                json!({"Name": "web", "ID": id, "Port": port, "Check": {"TTL": "60s"}}).to_string(),
            ),
        )
        .await;
        assert_eq!(st, 200, "{body}");
    }
    let ttl = |id: &str, verb: &str| {
        let path = format!("/v1/agent/check/{verb}/service:{id}");
        let a = &a;
        async move {
            let (st, body, _) = call(a, "PUT", &path, Some(ROOT), None).await;
            assert_eq!(st, 200, "{path}: {body}");
        }
    };
    // TTL checks start critical.
    let (code, ctype, body) = get("/v1/agent/health/service/id/web1", Some(ROOT), None).await;
    assert_eq!((code, ctype.as_str()), (503, "application/json"), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["AggregatedStatus"], "critical", "{v}");
    assert_eq!(v["Service"]["ID"], "web1", "{v}");
    assert_eq!(v["Service"]["Port"], 8081, "{v}");
    assert_eq!(v["Checks"][0]["CheckID"], "service:web1", "{v}");
    assert_eq!(v["Checks"].as_array().unwrap().len(), 1, "{v}");
    ttl("web1", "pass").await;
    ttl("web2", "warn").await;
    let (code, ctype, body) = get(
        "/v1/agent/health/service/id/web1?format=text",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!(
        (code, ctype.as_str(), body.as_str()),
        (200, "text/plain", "passing")
    );
    let (code, _, body) = get(
        "/v1/agent/health/service/id/web2",
        Some(ROOT),
        Some("text/plain"),
    )
    .await;
    assert_eq!((code, body.as_str()), (429, "warning"));
    // By name: every instance, the worst status.
    let (code, _, body) = get("/v1/agent/health/service/name/web", Some(ROOT), None).await;
    assert_eq!(code, 429, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut got: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["Service"]["ID"].as_str().unwrap().to_string(),
                i["AggregatedStatus"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("web1".to_string(), "passing".to_string()),
            ("web2".to_string(), "warning".to_string())
        ]
    );
    ttl("web2", "pass").await;
    let (code, _, body) = get(
        "/v1/agent/health/service/name/web?format=text",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!((code, body.as_str()), (200, "passing"));
    // Maintenance (of the service, then of the node) is 503 "maintenance".
    let (st, body, _) = call(
        &a,
        "PUT",
        "/v1/agent/service/maintenance/web1?enable=true&reason=deploy",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (code, _, body) = get(
        "/v1/agent/health/service/id/web1?format=text",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!((code, body.as_str()), (503, "maintenance"));
    let (code, _, body) = get(
        "/v1/agent/health/service/id/web2?format=text",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!((code, body.as_str()), (200, "passing"));
    let (st, _, _) = call(
        &a,
        "PUT",
        "/v1/agent/maintenance?enable=true",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (code, _, body) = get(
        "/v1/agent/health/service/id/web2?format=text",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!((code, body.as_str()), (503, "maintenance"));
    // Unknown services and missing names, in Consul's forms.
    let (code, _, body) = get("/v1/agent/health/service/id/nope", Some(ROOT), None).await;
    assert_eq!(code, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"AggregatedStatus": "critical", "Service": null, "Checks": null})
    );
    let (code, _, body) = get(
        "/v1/agent/health/service/id/nope?format=text",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!((code, body.as_str()), (404, "ServiceId nope not found"));
    let (code, _, body) = get("/v1/agent/health/service/name/nope", Some(ROOT), None).await;
    assert_eq!((code, body.as_str()), (404, "[]"));
    let (code, _, body) = get(
        "/v1/agent/health/service/name/nope?format=text",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!((code, body.as_str()), (404, "ServiceName nope Not Found"));
    let (code, _, body) = get("/v1/agent/health/service/id/", Some(ROOT), None).await;
    assert_eq!((code, body.as_str()), (400, "Missing serviceID"));
    // ACLs: service:read on the service.
    let reader = token_with_rules(&a, "web-read", r#"service "web" { policy = "read" }"#).await;
    let other = token_with_rules(&a, "db-read", r#"service "db" { policy = "read" }"#).await;
    let (code, _, _) = get("/v1/agent/health/service/id/web2", Some(&reader), None).await;
    assert_eq!(code, 503);
    let (code, _, _) = get("/v1/agent/health/service/id/web2", Some(&other), None).await;
    assert_eq!(code, 403);
    let (code, _, _) = get("/v1/agent/health/service/name/web", Some(&other), None).await;
    assert_eq!(code, 403);
    let (code, _, _) = get("/v1/agent/health/service/name/web", None, None).await;
    assert_eq!(code, 403);
}

/// The `tls` block of an agent serving its HTTPS API with the certificates
/// [`make_agent_certs`] made in `dir`, client certificates required.
pub(crate) fn https_tls_hcl(dir: &std::path::Path) -> String {
    let file = |n: &str| dir.join(n).display().to_string();
    format!(
        r#"tls {{
  defaults {{
    ca_file   = "{}"
    cert_file = "{}"
    key_file  = "{}"
  }}
  https {{ verify_incoming = true }}
}}
"#,
        file("consul-agent-ca.pem"),
        file("dc1-server-consul-0.pem"),
        file("dc1-server-consul-0-key.pem"),
    )
}

/// Runs `meshgate tls ...` in `dir` (Consul's file names: a CA, a server and
/// a client certificate).
pub(crate) fn make_agent_certs(dir: &std::path::Path) {
    for args in [
        &["ca", "create"][..],
        &["cert", "create", "-server"][..],
        &["cert", "create", "-client"][..],
    ] {
        let out = std::process::Command::new(crate::BIN)
            .arg("tls")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("meshgate tls");
        assert!(out.status.success(), "tls {args:?}: {out:?}");
    }
}

/// The HTTPS API (`ports.https`, Consul's `tls.https` falling back to
/// `tls.defaults`): the agent's certificate, and with `verify_incoming` a
/// client certificate of its CA is required; the CLI reaches it with
/// Consul's variables and flags (`CONSUL_HTTP_ADDR=https://...`,
/// `CONSUL_CACERT`, `CONSUL_CLIENT_CERT`/`KEY`, `-tls-server-name`); the
/// plain HTTP port can be switched off.
#[tokio::test]
async fn https_api_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_agent_certs(d);
    let file = |n: &str| d.join(n).display().to_string();
    let https = meshgate_test_support::free_port("127.0.0.1");
    let config = format!("ports {{ https = {https} }}\n{}", https_tls_hcl(d));
    let a = crate::dev_builder()
        .config_file("tls.hcl", &config)
        .start()
        .await;
    assert!(
        a.log()
            .contains(&format!("HTTPS API on https://127.0.0.1:{https}")),
        "{}",
        a.log()
    );
    let (_, me) = a.get_json("/v1/agent/self").await;
    assert_eq!(me["DebugConfig"]["HTTPSPort"], https, "{me}");
    assert_eq!(
        me["DebugConfig"]["HTTPSAddrs"],
        json!([format!("tcp://127.0.0.1:{https}")])
    );
    assert_eq!(
        me["DebugConfig"]["HTTPAddrs"],
        json!([format!("tcp://127.0.0.1:{}", a.addr.port())])
    );
    let old_ca_pem = std::fs::read(d.join("consul-agent-ca.pem")).unwrap();
    let ca = reqwest::Certificate::from_pem(&old_ca_pem).unwrap();
    let mut id_pem = std::fs::read(d.join("dc1-client-consul-0.pem")).unwrap();
    id_pem.extend(std::fs::read(d.join("dc1-client-consul-0-key.pem")).unwrap());
    let url = format!("https://127.0.0.1:{https}/v1/status/leader");
    let with_cert = reqwest::Client::builder()
        .tls_certs_merge([ca.clone()])
        .identity(reqwest::Identity::from_pem(&id_pem).unwrap())
        .build()
        .unwrap();
    let r = with_cert.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "\"127.0.0.1:8300\"");
    // No client certificate: the handshake is refused.
    let without = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .unwrap();
    assert!(without.get(&url).send().await.is_err());

    // The CLI, as operators set it up for Consul.
    let run = |args: &[&str], env: &[(&str, String)]| {
        let out = std::process::Command::new(crate::BIN)
            .args(args)
            .env_remove("MESHGATE_HTTP_ADDR")
            .env_remove("MESHGATE_HTTP_TOKEN")
            .env("CONSUL_HTTP_ADDR", format!("https://127.0.0.1:{https}"))
            .env("CONSUL_CACERT", file("consul-agent-ca.pem"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("meshgate");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let client_env = [
        ("CONSUL_CLIENT_CERT", file("dc1-client-consul-0.pem")),
        ("CONSUL_CLIENT_KEY", file("dc1-client-consul-0-key.pem")),
    ];
    let (code, out, err) = run(&["kv", "put", "db/host", "10.0.0.5"], &client_env);
    assert_eq!(
        (code, out.as_str()),
        (0, "Success! Data written to: db/host\n"),
        "{err}"
    );
    let (code, _, err) = run(&["kv", "get", "db/host"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("CertificateRequired"), "{err}");
    // Reached at an address, verified by a name its certificate carries.
    let (code, out, err) = run(
        &["kv", "get", "-tls-server-name=server.dc1.consul", "db/host"],
        &client_env,
    );
    assert_eq!((code, out.as_str()), (0, "10.0.0.5\n"), "{err}");
    let (code, _, err) = run(
        &["kv", "get", "-tls-server-name=db.example.com", "db/host"],
        &client_env,
    );
    assert_eq!(code, 1);
    assert!(err.contains("not valid for name"), "{err}");

    // Rotation: new files at the same paths (a new CA here), then a reload;
    // new connections get the new certificate and need the new CA's clients.
    let fresh = tempfile::tempdir().unwrap();
    make_agent_certs(fresh.path());
    for f in [
        "consul-agent-ca.pem",
        "dc1-server-consul-0.pem",
        "dc1-server-consul-0-key.pem",
        "dc1-client-consul-0.pem",
        "dc1-client-consul-0-key.pem",
    ] {
        std::fs::copy(fresh.path().join(f), d.join(f)).unwrap();
    }
    let (st, text) = a.put("/v1/agent/reload", "").await;
    assert_eq!(st, 200, "{text}");
    let (code, out, err) = run(&["kv", "get", "db/host"], &client_env);
    assert_eq!((code, out.as_str()), (0, "10.0.0.5\n"), "{err}");
    // (A connection made before the reload keeps its session; a new one
    // meets the new certificate.)
    let old_ca = reqwest::Certificate::from_pem(&old_ca_pem).unwrap();
    let old_client = reqwest::Client::builder()
        .tls_certs_merge([old_ca])
        .identity(reqwest::Identity::from_pem(&id_pem).unwrap())
        .build()
        .unwrap();
    assert!(
        old_client.get(&url).send().await.is_err(),
        "the old CA's client is no longer served"
    );
    drop(with_cert);
}

/// `ports.https` without a certificate, or `verify_incoming` without a CA,
/// stops the agent at start with what is missing; so does a TLS version or
/// cipher suite that does not exist.
#[test]
fn https_and_tls_settings_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (config, want) in [
        (
            "ports { https = 8501 }\n",
            "ports.https is set but no certificate is",
        ),
        (
            "ports { https = 8501 }\ntls { https { cert_file = \"/c.pem\", key_file = \"/k.pem\", verify_incoming = true } }\n",
            "verify_incoming is set for the HTTPS API but no CA is",
        ),
        (
            "tls { defaults { tls_min_version = \"TLSv1_4\" } }\n",
            "tls.defaults.tls_min_version: invalid TLS version: no matching TLS version found for TLSv1_4, please specify one of [TLS_AUTO, TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3]",
        ),
        (
            "tls {\n defaults { tls_min_version = \"TLSv1_3\" }\n https { tls_cipher_suites = \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\" }\n}\n",
            "tls.https.tls_cipher_suites: TLS 1.3 cipher suites are not configurable",
        ),
        (
            "tls { internal_rpc { tls_cipher_suites = \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,BOGUS\" } }\n",
            "tls.internal_rpc.tls_cipher_suites: invalid TLS cipher suites: no matching Consul Agent TLS cipher suite found for BOGUS",
        ),
        (
            // tls.defaults is checked on its own, even where every block
            // overrides it (Consul).
            "tls {\n defaults { tls_min_version = \"TLSv9\" }\n https { tls_min_version = \"TLSv1_2\" }\n internal_rpc { tls_min_version = \"TLSv1_2\" }\n}\n",
            "tls.defaults.tls_min_version: invalid TLS version",
        ),
    ] {
        let f = dir.path().join("https.hcl");
        std::fs::write(&f, config).unwrap();
        let out = std::process::Command::new(crate::BIN)
            .args(["validate"])
            .arg(&f)
            .output()
            .expect("meshgate validate");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{config}: {err}"
        );
    }
    // A block with a TLS 1.3 minimum does not inherit tls.defaults' suites
    // (Consul accepts this).
    let f = dir.path().join("ok.hcl");
    std::fs::write(
        &f,
        "server = true\nbootstrap = true\ndata_dir = \"/tmp/unused\"\nbind_addr = \"127.0.0.1\"\ntls {\n defaults { tls_cipher_suites = \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\" }\n https { tls_min_version = \"TLSv1_3\" }\n}\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::BIN)
        .args(["validate"])
        .arg(&f)
        .output()
        .expect("meshgate validate");
    assert!(out.status.success(), "{out:?}");
}

/// An agent whose only API is HTTPS (`ports.http = -1`) runs its `watches`
/// over it, with its own CA and certificate (as Consul's agent does), even
/// when clients must present one.
#[tokio::test]
async fn watches_follow_an_https_only_agent() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_agent_certs(d);
    let https = meshgate_test_support::free_port("127.0.0.1");
    let out = d.join("watch.out");
    let config = format!(
        "ports {{\n  http  = -1\n  https = {https}\n}}\n{}watches = [{{ type = \"key\", key = \"app/flag\", args = [\"sh\", \"-c\", \"cat > {}\"] }}]\n",
        https_tls_hcl(d),
        out.display(),
    );
    let cfg = d.join("agent.hcl");
    std::fs::write(&cfg, config).unwrap();
    let mut p = meshgate_test_support::Proc::spawn(
        "https-only",
        crate::BIN,
        &[
            "agent",
            "-dev",
            "-node=https-only",
            "-client=127.0.0.1",
            "-dns-port=-1",
            &format!("-config-file={}", cfg.display()),
        ],
        &[],
    );
    p.wait_log("meshgate agent running", Duration::from_secs(20));
    let mut id_pem = std::fs::read(d.join("dc1-client-consul-0.pem")).unwrap();
    id_pem.extend(std::fs::read(d.join("dc1-client-consul-0-key.pem")).unwrap());
    let client = reqwest::Client::builder()
        .tls_certs_merge([reqwest::Certificate::from_pem(
            &std::fs::read(d.join("consul-agent-ca.pem")).unwrap(),
        )
        .unwrap()])
        .identity(reqwest::Identity::from_pem(&id_pem).unwrap())
        .build()
        .unwrap();
    let r = client
        .put(format!("https://127.0.0.1:{https}/v1/kv/app/flag"))
        .body("on")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = eventually("the watch handler ran", Duration::from_secs(20), || async {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|s| s.contains("\"Key\":\"app/flag\""))
    })
    .await;
    assert!(seen.contains("\"Value\":\"b24=\""), "{seen}");
    p.sigterm();
    assert!(p.wait_exit(Duration::from_secs(10)).is_some());
}

/// `tls_min_version` and `tls_cipher_suites` (in `tls.https`, else
/// `tls.defaults`) are what the HTTPS API offers, checked with curl (built
/// on OpenSSL); a reload applies new values to new connections.
#[tokio::test]
async fn https_api_tls_versions_and_cipher_suites() {
    crate::require("curl", &["--version"], "curl (apt-get install curl)");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_agent_certs(d);
    let file = |n: &str| d.join(n).display().to_string();
    let https = meshgate_test_support::free_port("127.0.0.1");
    let settings = d.join("versions.hcl");
    let write = |defaults: &str, https_block: &str| {
        std::fs::write(
            &settings,
            format!(
                "ports {{ https = {https} }}\ntls {{\n  defaults {{\n    cert_file = \"{}\"\n    key_file = \"{}\"\n    {defaults}\n  }}\n  https {{ {https_block} }}\n}}\n",
                file("dc1-server-consul-0.pem"),
                file("dc1-server-consul-0-key.pem"),
            ),
        )
        .unwrap();
    };
    write("tls_min_version = \"TLSv1_3\"", "");
    let a = crate::dev_builder()
        .args(["-config-file".to_string(), settings.display().to_string()])
        .start()
        .await;
    let curl = |extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sSv", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["--cacert", &file("consul-agent-ca.pem")])
            .args(extra)
            .arg(format!("https://127.0.0.1:{https}/v1/status/leader"))
            .output()
            .expect("curl");
        // `-v` names the version agreed: "SSL connection using TLSv1.3 / ...".
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let version = err
            .split("SSL connection using ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or("")
            .to_string();
        (
            out.status.code().unwrap_or(-1),
            format!("{} {version}", String::from_utf8_lossy(&out.stdout)),
            err,
        )
    };
    // TLS 1.3 minimum: a client that stops at 1.2 is refused.
    let (code, _, err) = curl(&["--tls-max", "1.2"]);
    assert_eq!(code, 35, "curl's SSL connect error: {err}");
    let (code, out, err) = curl(&[]);
    assert_eq!((code, out.as_str()), (0, "200 TLSv1.3"), "{err}");

    // tls.https overrides tls.defaults: 1.2 allowed again, with one suite.
    write(
        "tls_min_version = \"TLSv1_3\"",
        "tls_min_version = \"TLSv1_2\"\n    tls_cipher_suites = \"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"",
    );
    let (st, text) = a.put("/v1/agent/reload", "").await;
    assert_eq!(st, 200, "{text}");
    let (code, _, err) = curl(&[
        "--tls-max",
        "1.2",
        "--ciphers",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ]);
    assert_eq!(code, 35, "a suite not listed is refused: {err}");
    let (code, out, err) = curl(&[
        "--tls-max",
        "1.2",
        "--ciphers",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ]);
    assert_eq!((code, out.as_str()), (0, "200 TLSv1.2"), "{err}");
    // TLS 1.3 is not narrowed by the list.
    let (code, out, err) = curl(&[]);
    assert_eq!((code, out.as_str()), (0, "200 TLSv1.3"), "{err}");
}
