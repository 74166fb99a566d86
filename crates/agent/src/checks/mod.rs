//! Running health checks: TCP connects, HTTP requests, scripts, and the result
//! rules shared by all of them (thresholds, output truncation).

pub mod h2;

use std::time::Duration;

use meshgate_types::agent::CheckDefinition;
use meshgate_types::catalog::status;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Default timeout of network checks.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Checks never run more often than this.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How much of an HTTP body is read for the output.
const HTTP_BODY_LIMIT: usize = 4 * 1024;

/// What a probe found: a status and an output text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: &'static str,
    pub output: String,
}

impl Outcome {
    pub(crate) fn new(status: &'static str, output: impl Into<String>) -> Outcome {
        Outcome {
            status,
            output: output.into(),
        }
    }
}

/// A TCP connect check.
pub async fn tcp(addr: &str, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Outcome::new(status::PASSING, format!("TCP connect {addr}: Success")),
        Ok(Err(e)) => Outcome::new(status::CRITICAL, dial_error(addr, &e)),
        Err(_) => Outcome::new(status::CRITICAL, format!("dial tcp {addr}: i/o timeout")),
    }
}

/// A failed connect, in Go's words (the outputs operators know).
pub(crate) fn dial_error(addr: &str, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp {addr}: connect: {why}")
}

fn http_client_builder(
    def: &CheckDefinition,
    roots: &[reqwest::Certificate],
) -> reqwest::ClientBuilder {
    // Go's client follows up to 10 redirects; `DisableRedirects` makes the
    // 3xx itself the answer (critical, as any status outside 2xx and 429).
    let redirects = if def.disable_redirects {
        reqwest::redirect::Policy::none()
    } else {
        reqwest::redirect::Policy::limited(10)
    };
    let mut b = reqwest::Client::builder()
        .redirect(redirects)
        .user_agent("Consul Health Check");
    if def.tls_skip_verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    for c in roots {
        b = b.add_root_certificate(c.clone());
    }
    b
}

/// The certificates of a CA file (PEM, one or more), for HTTPS checks: the
/// agent's `tls.defaults.ca_file`, trusted besides the system's roots.
pub fn ca_roots(ca_file: &str) -> Result<Vec<reqwest::Certificate>, String> {
    if ca_file.is_empty() {
        return Ok(Vec::new());
    }
    let pem = std::fs::read(ca_file).map_err(|e| format!("reading the CA file {ca_file}: {e}"))?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("the CA file {ca_file}: {e}"))
}

/// Builds the HTTP client used by an HTTP check (see [`http_named`] for a
/// check with `TLSServerName`).
pub fn http_client(def: &CheckDefinition, roots: &[reqwest::Certificate]) -> reqwest::Client {
    http_client_builder(def, roots)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Whether TLS must name another host than the URL's (`TLSServerName` on an
/// `https://` check, and not an IP address): such a check needs a client of
/// its own per run ([`http_named`]).
pub fn names_other_host(def: &CheckDefinition) -> bool {
    def.http
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
        && !def.tls_server_name.is_empty()
        && def.tls_server_name.parse::<std::net::IpAddr>().is_err()
}

/// Runs an HTTP check once with a client made for this run.
pub async fn http_once(
    def: &CheckDefinition,
    roots: &[reqwest::Certificate],
    timeout: Duration,
) -> Outcome {
    if names_other_host(def) {
        http_named(def, roots, timeout).await
    } else {
        http(&http_client(def, roots), def, timeout).await
    }
}

/// An HTTPS check with `TLSServerName`: the URL's host is the one reached
/// (and named in `Host`, unless the check sets that header), but TLS names
/// `TLSServerName` — the SNI sent and the name the certificate must carry —
/// as Go's `tls.Config.ServerName` does for Consul. A plain `http://` URL
/// ignores it.
pub async fn http_named(
    def: &CheckDefinition,
    roots: &[reqwest::Certificate],
    timeout: Duration,
) -> Outcome {
    let plain = || async { http(&http_client(def, roots), def, timeout).await };
    let Ok(url) = reqwest::Url::parse(&def.http) else {
        return plain().await;
    };
    // (A name that is an IP address cannot stand in for the URL's host:
    // the request would go to it. Such a check verifies the URL's host.)
    if def.tls_server_name.is_empty()
        || url.scheme() != "https"
        || def.tls_server_name.parse::<std::net::IpAddr>().is_ok()
    {
        return plain().await;
    }
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return plain().await;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let op = go_op(&check_method(def));
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(found)) => found.collect(),
            Ok(Err(e)) => {
                return Outcome::new(
                    status::CRITICAL,
                    format!("{op} \"{}\": dial tcp: lookup {host}: {e}", def.http),
                );
            }
            Err(_) => {
                return Outcome::new(
                    status::CRITICAL,
                    format!(
                        "{op} \"{}\": dial tcp: lookup {host}: i/o timeout",
                        def.http
                    ),
                );
            }
        };
    let mut named = url.clone();
    if named.set_host(Some(&def.tls_server_name)).is_err() {
        return Outcome::new(
            status::CRITICAL,
            format!("invalid TLSServerName {:?}", def.tls_server_name),
        );
    }
    let client = match http_client_builder(def, roots)
        .resolve_to_addrs(&def.tls_server_name, &addrs)
        .build()
    {
        Ok(c) => c,
        Err(e) => return Outcome::new(status::CRITICAL, format!("HTTP client: {e}")),
    };
    let mut d = def.clone();
    d.http = named.to_string();
    if !d.header.keys().any(|k| k.eq_ignore_ascii_case("host")) {
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or(host)),
            None => url.host_str().unwrap_or(host).to_string(),
        };
        d.header.insert("Host".into(), vec![authority]);
    }
    let mut out = http(&client, &d, timeout).await;
    // The operator's URL in the output, not the rewritten one.
    out.output = out.output.replacen(&d.http, &def.http, 1);
    out
}

/// An HTTP check: 2xx passing, 429 warning, anything else critical.
pub async fn http(client: &reqwest::Client, def: &CheckDefinition, timeout: Duration) -> Outcome {
    let method = check_method(def);
    let m = match reqwest::Method::from_bytes(method.as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            return Outcome::new(status::CRITICAL, format!("invalid HTTP method {method:?}"));
        }
    };
    let mut req = client.request(m, &def.http).timeout(timeout);
    for (k, vals) in &def.header {
        for v in vals {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    // Consul's check asks for text unless told otherwise, and closes the
    // connection after each run.
    let set = |name: &str| {
        def.header
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
    };
    if !set("accept") {
        req = req.header(reqwest::header::ACCEPT, "text/plain, text/*, */*");
    }
    if !set("connection") {
        req = req.header(reqwest::header::CONNECTION, "close");
    }
    if !def.body.is_empty() {
        req = req.body(def.body.clone());
    }
    let url = def.http.clone();
    match req.send().await {
        Err(e) => Outcome::new(status::CRITICAL, http_error(&method, &url, &e)),
        Ok(resp) => {
            let code = resp.status();
            // The server's own reason phrase when it sends another than the
            // standard one (Go prints the status line as it came).
            let reason = resp
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
                .unwrap_or_else(|| code.canonical_reason().unwrap_or("").to_string());
            let mut body = Vec::new();
            let mut stream = resp;
            while body.len() < HTTP_BODY_LIMIT {
                match stream.chunk().await {
                    Ok(Some(c)) => body.extend_from_slice(&c),
                    _ => break,
                }
            }
            body.truncate(HTTP_BODY_LIMIT);
            let text = String::from_utf8_lossy(&body);
            let output = format!(
                "HTTP {method} {url}: {} {reason} Output: {text}",
                code.as_u16()
            );
            let st = if code.is_success() {
                status::PASSING
            } else if code.as_u16() == 429 {
                status::WARNING
            } else {
                status::CRITICAL
            };
            Outcome::new(st, output)
        }
    }
}

/// An HTTP method as Go's client names the operation in its errors: `Get`,
/// `Post`.
fn go_op(method: &str) -> String {
    let mut op = method.to_ascii_lowercase();
    if let Some(first) = op.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    op
}

/// The method of an HTTP check (`GET` unless it names one).
fn check_method(def: &CheckDefinition) -> String {
    if def.method.is_empty() {
        "GET".to_string()
    } else {
        def.method.to_uppercase()
    }
}

/// A failed HTTP check request in the words of Go's client, which Consul's
/// outputs carry: the method as Go names the operation (`Get`, `Post`),
/// the URL, then what failed — `dial tcp 127.0.0.1:1: connect: connection
/// refused`, the TLS error, or the timeout.
fn http_error(method: &str, url: &str, e: &reqwest::Error) -> String {
    let op = go_op(method);
    if e.is_timeout() {
        return format!(
            "{op} \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        );
    }
    // The innermost cause says what failed (reqwest's own layers only say
    // "error sending request").
    let mut innermost: &dyn std::error::Error = e;
    let mut io_kind = None;
    while let Some(next) = innermost.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        innermost = next;
    }
    let addr = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_default();
    let why = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            format!("dial tcp {addr}: connect: connection refused")
        }
        Some(std::io::ErrorKind::TimedOut) => format!("dial tcp {addr}: i/o timeout"),
        _ => innermost.to_string(),
    };
    format!("{op} \"{url}\": {why}")
}

/// A script check: exit 0 passing, 1 warning, anything else critical.
pub async fn script(args: &[String], timeout: Duration) -> Outcome {
    let Some((prog, rest)) = args.split_first() else {
        return Outcome::new(status::CRITICAL, "no script given");
    };
    let child = tokio::process::Command::new(prog)
        .args(rest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Outcome::new(status::CRITICAL, format!("Failed to start: {e}")),
    };
    let mut out = Vec::new();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let run = async {
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut out).await;
        }
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut out).await;
        }
        child.wait().await
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Outcome::new(
            status::CRITICAL,
            format!(
                "Timed out ({}) running check",
                meshgate_types::duration::format(timeout)
            ),
        ),
        Ok(Err(e)) => Outcome::new(status::CRITICAL, format!("Failed to run: {e}")),
        Ok(Ok(exit)) => {
            let text = String::from_utf8_lossy(&out).into_owned();
            let st = match exit.code() {
                Some(0) => status::PASSING,
                Some(1) => status::WARNING,
                _ => status::CRITICAL,
            };
            Outcome::new(st, text)
        }
    }
}

/// Truncates an output to `max` bytes (on a char boundary), saying so.
pub fn truncate_output(mut s: String, max: usize) -> String {
    if max == 0 || s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(" ...\n(Output truncated)");
    s
}

/// Consecutive-result thresholds (`SuccessBeforePassing`, `FailuresBeforeWarning`,
/// `FailuresBeforeCritical`).
#[derive(Debug, Clone, Default)]
pub struct Thresholds {
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
    successes: u32,
    failures: u32,
}

impl Thresholds {
    /// Explicit thresholds (0 and 1 both mean "at once").
    pub fn new(
        success_before_passing: u32,
        failures_before_warning: u32,
        failures_before_critical: u32,
    ) -> Thresholds {
        Thresholds {
            success_before_passing,
            failures_before_warning,
            failures_before_critical,
            successes: 0,
            failures: 0,
        }
    }

    /// From a check definition.
    pub fn from_def(def: &CheckDefinition) -> Thresholds {
        let fbc = def.failures_before_critical.max(0) as u32;
        let fbw = if def.failures_before_warning > 0 {
            def.failures_before_warning as u32
        } else {
            fbc
        };
        Thresholds {
            success_before_passing: def.success_before_passing.max(0) as u32,
            failures_before_warning: fbw,
            failures_before_critical: fbc,
            successes: 0,
            failures: 0,
        }
    }

    /// Feeds one raw result; returns the status to record, or `None` to keep the
    /// current one.
    pub fn feed(&mut self, raw: &'static str) -> Option<&'static str> {
        if raw == status::PASSING || raw == status::WARNING {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.success_before_passing {
                return Some(raw);
            }
            None
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.failures_before_critical {
                return Some(status::CRITICAL);
            }
            if self.failures >= self.failures_before_warning {
                return Some(status::WARNING);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let def = CheckDefinition {
            success_before_passing: 2,
            failures_before_warning: 1,
            failures_before_critical: 3,
            ..Default::default()
        };
        let mut t = Thresholds::from_def(&def);
        assert_eq!(t.feed(status::PASSING), None);
        assert_eq!(t.feed(status::PASSING), Some(status::PASSING));
        assert_eq!(t.feed(status::CRITICAL), Some(status::WARNING));
        assert_eq!(t.feed(status::CRITICAL), Some(status::WARNING));
        assert_eq!(t.feed(status::CRITICAL), Some(status::CRITICAL));
        let mut plain = Thresholds::from_def(&CheckDefinition::default());
        assert_eq!(plain.feed(status::CRITICAL), Some(status::CRITICAL));
        assert_eq!(plain.feed(status::PASSING), Some(status::PASSING));
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate_output("abc".into(), 10), "abc");
        assert_eq!(
            truncate_output("abcdef".into(), 3),
            "abc ...\n(Output truncated)"
        );
        assert_eq!(
            truncate_output("ééé".into(), 3),
            "é ...\n(Output truncated)"
        );
    }

    #[tokio::test]
    async fn tcp_check_against_a_real_listener() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let ok = tcp(&addr, Duration::from_secs(1)).await;
        assert_eq!(ok.status, status::PASSING);
        assert_eq!(ok.output, format!("TCP connect {addr}: Success"));
        drop(l);
        let bad = tcp(&addr, Duration::from_secs(1)).await;
        assert_eq!(bad.status, status::CRITICAL);
        assert!(bad.output.contains("connection refused"), "{}", bad.output);
    }
}
