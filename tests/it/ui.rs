//! The web UI in a real browser: Debian's headless Chromium driven over
//! WebDriver (chromedriver) against real agents. Logging in with a token,
//! KV create/edit/delete, an intention, a policy with bad rules, a token
//! without `key:read` refused on the KV page, and the scenario's external
//! database and gateway turning critical when PostgreSQL stops.
//!
//! With `MESHGATE_UI_SCREENSHOTS=<dir>` the scenario test saves PNGs of the
//! main pages there (docs/img holds the committed ones).

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use meshgate_test_support::postgres::Postgres;
use meshgate_test_support::{Agent, AgentBuilder, Proc, free_port, patience};
use serde_json::{Value, json};

use crate::BIN;
use crate::acl::{ROOT, acl_config, call, token_with_rules};
use crate::dataplane::{admin_addr, test_ca, wait_ready};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session over WebDriver (plain HTTP + JSON).
struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    driver_port: u16,
    session_id: String,
    _profile: tempfile::TempDir,
    _driver: Proc,
}

impl Browser {
    async fn start() -> Browser {
        for (bin, what) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")] {
            assert!(
                Path::new(bin).exists(),
                "{what} is missing ({bin}): the UI tests need a real browser; install it with \
                 `apt-get install chromium chromium-driver`"
            );
        }
        let http = meshgate_test_support::client();
        // chromedriver binds its port on 127.0.0.1 and on ::1 and exits when
        // either is taken: a port free on one may not be on the other, so a
        // driver that exits at once is started again on another port.
        let mut attempt = 0;
        let (driver, port, base) = 'started: loop {
            attempt += 1;
            let port = free_port("127.0.0.1");
            let mut driver = Proc::spawn(
                "chromedriver",
                CHROMEDRIVER,
                &[&format!("--port={port}"), "--allowed-ips=127.0.0.1"],
                &[],
            );
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + patience(Duration::from_secs(20));
            loop {
                if let Ok(r) = http.get(format!("{base}/status")).send().await
                    && let Ok(v) = r.json::<Value>().await
                    && v["value"]["ready"] == true
                {
                    break 'started (driver, port, base);
                }
                if !driver.running() && attempt < 5 {
                    continue 'started;
                }
                assert!(
                    Instant::now() < deadline && driver.running(),
                    "chromedriver did not start:\n{}",
                    driver.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,800",
                         "--hide-scrollbars", "--no-first-run", "--disable-extensions",
                         "--force-device-scale-factor=1",
                         format!("--user-data-dir={}", profile.path().display())],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("new session json");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}\n{}", driver.log()))
            .to_string();
        Browser {
            http,
            session: format!("{base}/session/{id}"),
            driver_port: port,
            session_id: id,
            _profile: profile,
            _driver: driver,
        }
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let r: Value = req
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver json");
        if r["value"].get("error").is_some() {
            panic!("webdriver {method} {path}: {}", r["value"]);
        }
        r["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits until `script` returns something truthy; returns it.
    async fn wait_js(&self, what: &str, script: &str, args: Value, timeout: Duration) -> Value {
        let deadline = Instant::now() + patience(timeout);
        loop {
            let v = self.js(script, args.clone()).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let text = self
                    .js("return document.querySelector('main').innerText", json!([]))
                    .await;
                panic!("timed out after {timeout:?} waiting for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an element matching `css`; returns its text.
    async fn wait_for(&self, css: &str) -> String {
        self.wait_js(
            css,
            "const e = document.querySelector(arguments[0]); return e ? (e.innerText || e.value || ' ') : null;",
            json!([css]),
            Duration::from_secs(15),
        )
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// Waits for `css` to exist and contain `text`.
    async fn wait_text(&self, css: &str, text: &str) {
        self.wait_js(
            &format!("{css} containing {text:?}"),
            "const e = document.querySelector(arguments[0]); return !!e && (e.innerText + (e.value || '')).includes(arguments[1]);",
            json!([css, text]),
            Duration::from_secs(15),
        )
        .await;
    }

    async fn find(&self, css: &str) -> String {
        self.wait_for(css).await;
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("element {css}: {v}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), json!({}))
            .await;
    }

    /// Clears a field and types `text` into it (real key events).
    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/clear"), json!({}))
            .await;
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Saves a PNG of the window when `MESHGATE_UI_SCREENSHOTS` names a directory.
    async fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("MESHGATE_UI_SCREENSHOTS") else {
            return;
        };
        // Let the last redraw and fonts settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let v = self.cmd("GET", "/screenshot", json!({})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot"))
            .expect("png base64");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(Path::new(&dir).join(format!("ui-{name}.png")), png).expect("write png");
    }

    /// The browser console since the last call: (level, source, message).
    async fn console(&self) -> Vec<(String, String, String)> {
        let v = self
            .cmd("POST", "/se/log", json!({"type": "browser"}))
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or("").to_string(),
                            e["source"].as_str().unwrap_or("").to_string(),
                            e["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails on any console error or warning other than the network log of
    /// the refusals and misses the test provoked on purpose (Chromium logs
    /// every 4xx answer of `fetch`, even handled ones), and `expected`: more
    /// network failures provoked on purpose (a URL and status).
    async fn assert_clean_console(&self, expected: &[&str]) {
        let bad: Vec<_> = self
            .console()
            .await
            .into_iter()
            .filter(|(level, source, msg)| {
                let expected_network = source == "network"
                    && (msg.contains("status of 401")
                        || msg.contains("status of 403")
                        || msg.contains("status of 404")
                        || expected.iter().any(|e| msg.contains(e)));
                (level == "SEVERE" || level == "WARNING") && !expected_network
            })
            .collect();
        assert!(bad.is_empty(), "browser console errors: {bad:#?}");
    }

    async fn quit(self) {
        let _ = self.cmd("DELETE", "", json!({})).await;
    }
}

impl Drop for Browser {
    /// Ends the session (and Chromium with it) even when a test fails.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.driver_port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session_id
            );
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
        }
    }
}

async fn login(b: &Browser, a: &Agent, token: &str) {
    b.goto(&a.url("/ui/")).await;
    b.wait_for("#login-form").await;
    b.type_into("#login-form input[name=token]", token).await;
    b.click("#login-form button[type=submit]").await;
    b.wait_for("#whoami").await;
}

async fn kv_get(a: &Agent, key: &str) -> (u16, Value) {
    let (s, body, _) = call(a, "GET", &format!("/v1/kv/{key}"), Some(ROOT), None).await;
    (s, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn kv_text(v: &Value) -> String {
    let b64 = v[0]["Value"].as_str().unwrap_or("");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_routes_and_dev_mode_without_login() {
    let a = crate::dev().await;
    let http = &a.http;
    // Assets with their types; client-side routes get the page itself.
    for (path, ctype) in [
        ("/ui/", "text/html"),
        ("/ui/services/web", "text/html"),
        ("/ui/style.css", "text/css"),
        ("/ui/js/app.js", "text/javascript"),
        ("/ui/js/pages/kv.js", "text/javascript"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let r = http.get(a.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            crate::header(&r, "content-type").starts_with(ctype),
            "{path}"
        );
        assert!(!crate::header(&r, "content-security-policy").is_empty());
    }
    let r = http.get(a.url("/ui/js/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.get(a.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(crate::header(&r, "location"), "/ui/");
    let r = http.get(a.url("/ui")).send().await.unwrap();
    assert_eq!(crate::header(&r, "location"), "/ui/");
    // As Consul's agent with its UI on.
    let r = http.get(a.url("/robots.txt")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "User-agent: *\nDisallow: /\n");

    // `-dev` without ACLs: no login, the services are there at once.
    let b = Browser::start().await;
    b.goto(&a.url("/ui/")).await;
    b.wait_for("tr[data-service='consul']").await;
    assert_eq!(b.text("#session").await.trim(), "ACLs disabled");
    // The ACL section is hidden only when ACLs are on and the token may not read them.
    b.goto(&a.url("/ui/#/acl/tokens")).await;
    b.wait_text("main", "ACLs are disabled").await;
    // Keyboard: the skip link is the first stop and leads to the content.
    let first = b
        .js(
            "document.activeElement.blur(); return document.querySelector('a.skip').getAttribute('href')",
            json!([]),
        )
        .await;
    assert_eq!(first, "#main");
    b.assert_clean_console(&[]).await;

    // `-ui-content-path` (behind a reverse proxy that maps a prefix): the
    // UI moves there, written as Consul writes it, and the page names its
    // files under it; the page works in a browser.
    let moved = AgentBuilder::dev(BIN)
        .args(["-ui-content-path", "consul/ui"])
        .start()
        .await;
    let r = moved.http.get(moved.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(crate::header(&r, "location"), "/consul/ui/");
    let r = moved
        .http
        .get(moved.url("/consul/ui"))
        .send()
        .await
        .unwrap();
    assert_eq!(crate::header(&r, "location"), "/consul/ui/");
    let page = moved
        .http
        .get(moved.url("/consul/ui/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("\"/consul/ui/js/app.js\""), "{page}");
    assert!(!page.contains("\"/ui/"), "{page}");
    let r = moved
        .http
        .get(moved.url("/consul/ui/js/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let length = crate::header(&r, "content-length");
    assert_eq!(length, r.bytes().await.unwrap().len().to_string());
    let r = moved.http.get(moved.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    b.goto(&moved.url("/consul/ui/")).await;
    b.wait_for("tr[data-service='consul']").await;
    b.assert_clean_console(&[]).await;
    b.quit().await;
    // The same key in a file; values that cannot be a UI path stop the start.
    let file = AgentBuilder::dev(BIN)
        .config_file("ui.hcl", "ui_config { content_path = \"/a/b\" }\n")
        .start()
        .await;
    let r = file.http.get(file.url("/a/b/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for (bad, why) in [
        ("/v1/", "the UI cannot be served under /v1/"),
        ("/", "the UI cannot take the whole address space"),
        ("/a b/", "use letters, digits and - _ . ~ between slashes"),
        ("/x/../y", "use letters, digits and - _ . ~ between slashes"),
    ] {
        let (code, out) = AgentBuilder::dev(BIN)
            .config_file(
                "ui.hcl",
                &format!("ui_config {{ content_path = {bad:?} }}\n"),
            )
            .start_failure();
        assert_ne!(code, 0, "{bad}");
        assert!(
            out.contains("ui_config.content_path: invalid value") && out.contains(why),
            "{bad}: {out}"
        );
    }

    // `ui_config { enabled = false }`: no UI.
    let off = AgentBuilder::dev(BIN)
        .config_file("ui.hcl", "ui_config { enabled = false }\n")
        .start()
        .await;
    let r = off.http.get(off.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = off.http.get(off.url("/")).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("UI disabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_kv_intentions_policies_and_refusals() {
    let a = AgentBuilder::dev(BIN)
        .args(["-node", "test-node"])
        .config_file("acl.hcl", &acl_config("deny"))
        .start()
        .await;
    let b = Browser::start().await;

    // A wrong token is refused on the login page.
    b.goto(&a.url("/ui/")).await;
    b.wait_for("#login-form").await;
    b.type_into("#login-form input[name=token]", "not-a-token")
        .await;
    b.click("#login-form button[type=submit]").await;
    b.wait_text("#login-form", "does not know this token").await;
    // The secret is never put in the address or the page.
    login(&b, &a, ROOT).await;
    let page = b
        .js("return document.documentElement.outerHTML", json!([]))
        .await;
    assert!(!page.as_str().unwrap().contains(ROOT));

    // KV: create a key in a new folder.
    b.goto(&a.url("/ui/#/kv/")).await;
    b.wait_text("main", "empty").await;
    b.click("#kv-create").await;
    b.type_into("#kv-name", "carbonio-files/db-name").await;
    b.type_into("#kv-value", "files").await;
    b.type_into("#kv-flags", "42").await;
    b.click("#kv-save").await;
    // Saved, the page shows the key's folder.
    b.wait_for("tr[data-key='carbonio-files/db-name']").await;
    let (s, v) = kv_get(&a, "carbonio-files/db-name").await;
    assert_eq!(s, 200);
    assert_eq!(kv_text(&v), "files");
    assert_eq!(v[0]["Flags"], 42);
    // Browse into the folder, open the key: flags and indexes are shown.
    b.goto(&a.url("/ui/#/kv/")).await;
    b.click("tr[data-key='carbonio-files/'] a").await;
    b.click("tr[data-key='carbonio-files/db-name'] a").await;
    b.wait_text("#kv-meta", "ModifyIndex").await;
    assert!(b.text("#kv-meta").await.contains("42"));
    // Edit.
    b.type_into("#kv-value", "files-prod").await;
    b.click("#kv-save").await;
    b.wait_for("tr[data-key='carbonio-files/db-name']").await;
    let (_, v) = kv_get(&a, "carbonio-files/db-name").await;
    assert_eq!(kv_text(&v), "files-prod");
    // A binary value is shown as a hex dump, not as text.
    let (s, _, _) = call(
        &a,
        "PUT",
        "/v1/kv/carbonio-files/blob",
        Some(ROOT),
        Some(String::from_utf8_lossy(&[0u8, 1, 2, 0x7f]).to_string()),
    )
    .await;
    assert_eq!(s, 200);
    b.goto(&a.url("/ui/#/kv/carbonio-files/blob")).await;
    b.wait_text("#kv-hex", "00 01 02 7f").await;
    // Delete, with a confirmation.
    b.goto(&a.url("/ui/#/kv/carbonio-files/db-name")).await;
    b.click("#kv-delete").await;
    b.click("dialog.confirm button.danger").await;
    b.wait_for("tr[data-key='carbonio-files/blob']").await;
    let (s, _) = kv_get(&a, "carbonio-files/db-name").await;
    assert_eq!(s, 404);

    // Intentions: create one, then edit its action.
    b.goto(&a.url("/ui/#/intentions")).await;
    b.wait_text("main", "No intentions").await;
    b.click("#intention-new").await;
    b.type_into("#intention-source", "carbonio-files").await;
    b.type_into("#intention-destination", "carbonio-files-db")
        .await;
    b.type_into("#intention-description", "files reads its database")
        .await;
    b.click("#intention-save").await;
    b.wait_for("tr[data-source='carbonio-files'][data-action='allow']")
        .await;
    let (s, body, _) = call(
        &a,
        "GET",
        "/v1/connect/intentions/exact?source=carbonio-files&destination=carbonio-files-db",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let it: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(it["Action"], "allow");
    assert_eq!(it["Description"], "files reads its database");

    // A policy with broken rules: the agent's error is shown by the rules.
    b.goto(&a.url("/ui/#/acl/policies/new")).await;
    b.type_into("#policy-name", "broken").await;
    b.type_into(
        "#policy-rules",
        "key_prefix \"\" { policy = \"sometimes\" }",
    )
    .await;
    b.click("#policy-save").await;
    let err = b.wait_for("#policy-rules-error p").await;
    assert!(!err.trim().is_empty());
    // A good one is saved.
    b.type_into("#policy-name", "services-only").await;
    b.type_into(
        "#policy-rules",
        "service_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }",
    )
    .await;
    b.click("#policy-save").await;
    b.wait_js(
        "policy saved",
        "return location.hash.startsWith('#/acl/policies/') && !location.hash.endsWith('/new')",
        json!([]),
        Duration::from_secs(10),
    )
    .await;
    // Tokens: the secret stays hidden until asked.
    b.goto(&a.url("/ui/#/acl/tokens")).await;
    b.wait_for("#tokens-table").await;
    assert!(!b.text("#tokens-table").await.contains(ROOT));
    // A new token holding the new policy.
    b.goto(&a.url("/ui/#/acl/tokens/new")).await;
    b.type_into("#token-description", "for the browser test")
        .await;
    b.click("#token-form fieldset label").await;
    b.wait_js(
        "a policy ticked",
        "return document.querySelectorAll('#token-form fieldset input:checked').length === 1",
        json!([]),
        Duration::from_secs(5),
    )
    .await;
    b.click("#token-save").await;
    b.wait_text("#token-form", "SecretID").await;
    let (_, body, _) = call(&a, "GET", "/v1/acl/tokens", Some(ROOT), None).await;
    let tokens: Value = serde_json::from_str(&body).unwrap();
    let made = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["Description"] == "for the browser test")
        .expect("the token was created")
        .clone();
    assert_eq!(made["Policies"].as_array().map(Vec::len), Some(1));
    assert!(
        !b.text("#token-form")
            .await
            .contains(made["SecretID"].as_str().unwrap())
    );
    // Intentions are deleted after a confirmation.
    b.goto(&a.url("/ui/#/intentions")).await;
    b.click("tr[data-source='carbonio-files'] button[aria-label^='Delete']")
        .await;
    b.click("dialog.confirm button.danger").await;
    b.wait_text("main", "No intentions").await;
    b.assert_clean_console(&[
        "/v1/acl/policy - Failed to load resource: the server responded with a status of 500",
    ])
    .await;

    // A token without key:read: the KV page refuses and names the permission;
    // the ACL section is not offered.
    let secret = token_with_rules(
        &a,
        "no-kv",
        "service_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }",
    )
    .await;
    b.click("#logout").await;
    b.wait_for("#login-form").await;
    b.type_into("#login-form input[name=token]", &secret).await;
    b.click("#login-form button[type=submit]").await;
    b.wait_for("#whoami").await;
    let acl_hidden = b
        .js(
            "return document.querySelector('nav#nav [data-needs=acl]').hidden",
            json!([]),
        )
        .await;
    assert_eq!(acl_hidden, true);
    b.goto(&a.url("/ui/#/kv/")).await;
    b.wait_for(".error.denied[data-permission='key:read']")
        .await;
    assert!(b.text("main").await.contains("key:read"));
    b.screenshot("kv-denied").await;
    // A direct read of a key is refused the same way.
    b.goto(&a.url("/ui/#/kv/carbonio-files/blob")).await;
    b.wait_text(".error.denied", "key:read").await;
    // Other pages still work for what the token may see.
    b.goto(&a.url("/ui/#/services")).await;
    b.wait_for("tr[data-service='consul']").await;
    b.assert_clean_console(&[]).await;
    b.quit().await;
}

/// The scenario: an external PostgreSQL behind a terminating gateway, seen
/// in the UI, turning critical live when PostgreSQL stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_external_database_turns_critical_live() {
    let fast = r#"
external_health {
  check_interval      = "1s"
  node_probe_interval = "1s"
  node_probe_timeout  = "1s"
  check_timeout       = "1s"
  critical_threshold  = 1
}
"#;
    let a = AgentBuilder::dev(BIN)
        .args(["-node", "gateway-node"])
        .config_file("acl.hcl", &acl_config("deny"))
        .config_file("external.hcl", fast)
        .start()
        .await;
    let mut pg = Postgres::start("127.0.0.6", None);
    let put = |path: &'static str, body: Value| {
        let a = &a;
        async move {
            let (s, b, _) = call(a, "PUT", path, Some(ROOT), Some(body.to_string())).await;
            assert_eq!(s, 200, "PUT {path}: {b}");
        }
    };
    // Steps 2, 4, 5, 6 and 8 of the scenario.
    put(
        "/v1/acl/policy",
        json!({"Name": "carbonio-gateway-policy", "Description": "Policy for carbonio-gateway",
               "Rules": crate::acl::SCENARIO_POLICY}),
    )
    .await;
    put(
        "/v1/acl/token",
        json!({"Description": "Token for carbonio-gateway",
               "Policies": [{"Name": "carbonio-gateway-policy"}]}),
    )
    .await;
    put(
        "/v1/catalog/register",
        json!({"Address": "127.0.0.6", "Node": "external-files-db-node",
               "NodeMeta": {"external-node": "true", "external-probe": "true"},
               "Service": {"ID": "carbonio-gateway", "Port": pg.port, "Service": "carbonio-files-db"}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca("external-database.example.com");
    let ca_file = dir.path().join("external-db-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    put(
        "/v1/config",
        json!({"Kind": "terminating-gateway", "Name": "carbonio-gateway",
               "Services": [{"Name": "carbonio-files-db", "CAFile": ca_file.display().to_string(),
                             "SNI": "external-database.example.com"}]}),
    )
    .await;
    put(
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "carbonio-files-db", "Protocol": "tcp"}),
    )
    .await;
    for (k, v) in [
        ("db-name", "files"),
        ("db-username", "carbonio"),
        ("db-password", "files-secret"),
    ] {
        let (s, _, _) = call(
            &a,
            "PUT",
            &format!("/v1/kv/carbonio-files/{k}"),
            Some(ROOT),
            Some(v.into()),
        )
        .await;
        assert_eq!(s, 200);
    }
    put(
        "/v1/connect/intentions/exact?source=carbonio-files&destination=carbonio-files-db",
        json!({"Action": "allow", "Description": "files reads its database"}),
    )
    .await;
    put(
        "/v1/agent/service/register",
        json!({"Name": "carbonio-files", "Port": 10000, "Tags": ["files"],
               "Connect": {"SidecarService": {"Port": free_port("127.0.0.1"), "Address": "127.0.0.1",
                   "Proxy": {"Upstreams": [{"DestinationName": "carbonio-files-db",
                       "LocalBindAddress": "127.0.0.1", "LocalBindPort": 5433}]}}}}),
    )
    .await;
    // Step 7: the gateway.
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
            "carbonio-gateway",
            "-address",
            &format!("127.0.0.1:{gw_port}"),
            "-admin-bind",
            "localhost:0",
        ],
        &[("CONSUL_HTTP_ADDR", &a.base), ("CONSUL_HTTP_TOKEN", ROOT)],
    );
    let gw_admin = admin_addr(&mut gateway);
    wait_ready(&mut gateway, &gw_admin).await;

    let b = Browser::start().await;
    login(&b, &a, ROOT).await;

    // Services: the external database passes, marked external.
    b.goto(&a.url("/ui/#/services")).await;
    b.wait_for("tr[data-service='carbonio-files-db'][data-status='passing']")
        .await;
    assert!(
        b.text("tr[data-service='carbonio-files-db']")
            .await
            .contains("external")
    );
    b.wait_for("tr[data-service='carbonio-gateway']").await;
    b.screenshot("services").await;
    // Search filters the list.
    b.type_into("#service-search", "files-db").await;
    b.wait_js(
        "filtered list",
        "return !document.querySelector(\"tr[data-service='carbonio-gateway']\")",
        json!([]),
        Duration::from_secs(5),
    )
    .await;

    // Service detail: node meta and the probe's result.
    b.goto(&a.url("/ui/#/services/carbonio-files-db")).await;
    b.wait_for("[data-check='externalNodeHealth'][data-status='passing']")
        .await;
    let detail = b.text("#service-detail").await;
    assert!(detail.contains("external-probe = true"), "{detail}");
    assert!(detail.contains("Node alive or reachable"), "{detail}");
    b.wait_text("#service-via", "carbonio-gateway").await;
    b.screenshot("service-detail").await;
    // The file service's sidecar and its upstream.
    b.goto(&a.url("/ui/#/services/carbonio-files")).await;
    b.wait_text("#service-via", "carbonio-files-db on 127.0.0.1:5433")
        .await;

    // Nodes: the external node is marked.
    b.goto(&a.url("/ui/#/nodes")).await;
    b.wait_for("tr[data-node='external-files-db-node'][data-external='true']")
        .await;
    b.wait_for("tr[data-node='gateway-node'][data-external='false']")
        .await;
    b.screenshot("nodes").await;

    // Gateways: instance, linked service with TLS settings, protocol, counters.
    b.goto(&a.url("/ui/#/gateways")).await;
    let gw = "section[data-gateway='carbonio-gateway']";
    b.wait_for(&format!(
        "{gw} tr[data-linked='carbonio-files-db'][data-status='passing']"
    ))
    .await;
    b.wait_for(&format!("{gw} tr[data-instance='carbonio-gateway']"))
        .await;
    let section = b.text(gw).await;
    assert!(section.contains("external-db-ca.pem"), "{section}");
    assert!(
        section.contains("external-database.example.com"),
        "{section}"
    );
    assert!(section.contains("tcp"), "{section}");
    b.wait_for(&format!(
        "{gw} tr[data-linked='carbonio-files-db'] [data-active]"
    ))
    .await;
    b.screenshot("gateways").await;

    // The other pages, for the screenshots (and no console errors).
    b.goto(&a.url("/ui/#/kv/carbonio-files/")).await;
    b.wait_for("tr[data-key='carbonio-files/db-password']")
        .await;
    b.screenshot("kv").await;
    b.goto(&a.url("/ui/#/kv/carbonio-files/db-name")).await;
    b.wait_for("#kv-meta").await;
    b.screenshot("kv-edit").await;
    b.goto(&a.url("/ui/#/intentions")).await;
    b.wait_for("tr[data-source='carbonio-files']").await;
    b.screenshot("intentions").await;
    b.goto(&a.url("/ui/#/acl/tokens")).await;
    b.wait_text("#tokens-table", "Token for carbonio-gateway")
        .await;
    b.screenshot("acl-tokens").await;
    b.goto(&a.url("/ui/#/acl/policies")).await;
    b.click("tr[data-policy='carbonio-gateway-policy'] a").await;
    b.wait_text("#policy-rules", "carbonio-gateway/").await;
    b.screenshot("acl-policy").await;
    b.goto(&a.url("/ui/#/config/terminating-gateway/carbonio-gateway"))
        .await;
    b.wait_text("#config-hcl", "Kind = \"terminating-gateway\"")
        .await;
    b.screenshot("config").await;

    // PostgreSQL stops: without a reload, the database turns red on the
    // services page and on the gateway page within seconds.
    b.goto(&a.url("/ui/#/services")).await;
    b.wait_for("tr[data-service='carbonio-files-db'][data-status='passing']")
        .await;
    let marker = b
        .js("window.__notReloaded = true; return true", json!([]))
        .await;
    assert_eq!(marker, true);
    let stopped = Instant::now();
    pg.stop();
    b.wait_js(
        "carbonio-files-db critical on the services page",
        "return !!document.querySelector(\"tr[data-service='carbonio-files-db'][data-status='critical']\")",
        json!([]),
        Duration::from_secs(20),
    )
    .await;
    let took = stopped.elapsed();
    assert!(took < patience(Duration::from_secs(15)), "took {took:?}");
    let not_reloaded = b
        .js("return window.__notReloaded === true", json!([]))
        .await;
    assert_eq!(not_reloaded, true, "the page was reloaded");
    b.click("nav#nav a[data-section='gateways']").await;
    b.wait_for(&format!(
        "{gw} tr[data-linked='carbonio-files-db'][data-status='critical']"
    ))
    .await;
    assert!(b.text(gw).await.contains("Node not live or unreachable"));
    b.screenshot("gateways-critical").await;

    // A narrow window: the menu folds, nothing overflows the page.
    b.resize(420, 800).await;
    b.goto(&a.url("/ui/#/services")).await;
    b.wait_for("tr[data-service='carbonio-files-db']").await;
    let fits = b
        .js(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            json!([]),
        )
        .await;
    assert_eq!(fits, true, "the page overflows a narrow window");
    b.click(".menu-toggle").await;
    b.click("nav#nav a[data-section='nodes']").await;
    b.wait_for("tr[data-node='external-files-db-node']").await;
    b.screenshot("narrow").await;

    // And back when PostgreSQL returns.
    pg.restart();
    b.goto(&a.url("/ui/#/services")).await;
    b.wait_js(
        "carbonio-files-db passing again",
        "return !!document.querySelector(\"tr[data-service='carbonio-files-db'][data-status='passing']\")",
        json!([]),
        Duration::from_secs(20),
    )
    .await;
    b.assert_clean_console(&[]).await;
    b.quit().await;
    drop(gateway);
}
