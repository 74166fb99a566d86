//! The HTTP API client the commands share: address and token resolution (flags,
//! then `MESHGATE_*`, then `CONSUL_*` environment variables), requests, and
//! errors worded like Consul's Go client.

use std::time::Duration;

use clap::Args;
use serde::de::DeserializeOwned;

/// A command failure: the message printed to stderr, and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    /// Exit 1 with a message.
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A command's result.
pub type CliResult = Result<(), CliError>;

/// The flags every API command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct HttpFlags {
    /// The `address` and port of the agent HTTP server (env MESHGATE_HTTP_ADDR or CONSUL_HTTP_ADDR).
    #[arg(long = "http-addr", value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// ACL token to use in the request (env MESHGATE_HTTP_TOKEN or CONSUL_HTTP_TOKEN).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// File containing the ACL token (env MESHGATE_HTTP_TOKEN_FILE or CONSUL_HTTP_TOKEN_FILE).
    #[arg(long = "token-file", value_name = "PATH")]
    pub token_file: Option<String>,
    /// Name of the datacenter to query (defaults to the agent's).
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Permit any server to answer (stale reads).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub stale: Option<bool>,
    /// CA file to verify the agent's HTTPS certificate (env CONSUL_CACERT).
    #[arg(long = "ca-file", value_name = "PATH")]
    pub ca_file: Option<String>,
    /// Directory of CA files to verify the agent's HTTPS certificate (env CONSUL_CAPATH).
    #[arg(long = "ca-path", value_name = "PATH")]
    pub ca_path: Option<String>,
    /// Client certificate for HTTPS (env CONSUL_CLIENT_CERT).
    #[arg(long = "client-cert", value_name = "PATH")]
    pub client_cert: Option<String>,
    /// Client key for HTTPS (env CONSUL_CLIENT_KEY).
    #[arg(long = "client-key", value_name = "PATH")]
    pub client_key: Option<String>,
    /// TLS server name to expect from the agent (env CONSUL_TLS_SERVER_NAME).
    #[arg(long = "tls-server-name", value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Consul Enterprise's namespace (env CONSUL_NAMESPACE): sent as `?ns=`,
    /// which the agent refuses on namespaced endpoints, as Consul's
    /// community edition does.
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Consul Enterprise's admin partition (env CONSUL_PARTITION): sent as
    /// `?partition=`, refused as `-namespace` is.
    #[arg(long, value_name = "PARTITION")]
    pub partition: Option<String>,
}

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// A flag's value, else the first of the environment variables set.
fn flag_or_env(flag: &Option<String>, names: &[&str]) -> Option<String> {
    flag.clone().or_else(|| env(names))
}

fn read_token_file(path: &str) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| CliError::new(format!("Error loading token file: {e}")))
}

/// A configured API client.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: Option<String>,
    pub datacenter: Option<String>,
    pub stale: bool,
    /// `?ns=` and `?partition=` for every request (Consul Enterprise's).
    tenancy: Vec<(&'static str, String)>,
    http: reqwest::Client,
}

/// A response: status, headers, body.
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, CliError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| CliError::new(format!("Failed to decode response: {e}")))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error text of a non-200 answer, as Consul's Go client words it.
    pub fn error_text(&self) -> String {
        format!(
            "Unexpected response code: {} ({})",
            self.status,
            self.text().trim()
        )
    }
}

impl Client {
    /// Builds a client from flags and environment.
    pub fn new(f: &HttpFlags) -> Result<Client, CliError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let addr = flag_or_env(&f.http_addr, &["MESHGATE_HTTP_ADDR", "CONSUL_HTTP_ADDR"])
            .unwrap_or_else(|| "127.0.0.1:8500".into());
        let ssl = env(&["MESHGATE_HTTP_SSL", "CONSUL_HTTP_SSL"])
            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "True"));
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else if addr.starts_with("unix://") {
            return Err(CliError::new(
                "Error connecting to Consul agent: unix socket addresses are not supported by meshgate",
            ));
        } else if ssl {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        };
        let token = if let Some(p) = &f.token_file {
            Some(read_token_file(p)?)
        } else if let Some(t) = &f.token {
            Some(t.clone())
        } else if let Some(p) = env(&["MESHGATE_HTTP_TOKEN_FILE", "CONSUL_HTTP_TOKEN_FILE"]) {
            Some(read_token_file(&p)?)
        } else {
            env(&["MESHGATE_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"])
        };
        let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        let ca = flag_or_env(&f.ca_file, &["MESHGATE_CACERT", "CONSUL_CACERT"]);
        if let Some(ca) = ca {
            let pem = std::fs::read(&ca)
                .map_err(|e| CliError::new(format!("Error loading CA File: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| CliError::new(format!("Error loading CA File: {e}")))?;
            b = b.tls_certs_merge(certs);
        }
        // Every PEM file of the CA directory.
        let ca_path = flag_or_env(&f.ca_path, &["MESHGATE_CAPATH", "CONSUL_CAPATH"]);
        if let Some(dir) = ca_path {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| CliError::new(format!("Error loading CA Path: {e}")))?;
            for entry in entries.flatten() {
                let Ok(pem) = std::fs::read(entry.path()) else {
                    continue;
                };
                if let Ok(certs) = reqwest::Certificate::from_pem_bundle(&pem) {
                    b = b.tls_certs_merge(certs);
                }
            }
        }
        // A client certificate, for an agent with `verify_incoming`.
        let cert = flag_or_env(
            &f.client_cert,
            &["MESHGATE_CLIENT_CERT", "CONSUL_CLIENT_CERT"],
        );
        let key = flag_or_env(&f.client_key, &["MESHGATE_CLIENT_KEY", "CONSUL_CLIENT_KEY"]);
        // (One without the other is ignored, as Consul's client does.)
        if let (Some(cert), Some(key)) = (cert, key) {
            let read = |p: &str| {
                std::fs::read(p).map_err(|e| {
                    CliError::new(format!("Error loading client certificate {p}: {e}"))
                })
            };
            let mut pem = read(&cert)?;
            pem.push(b'\n');
            pem.extend(read(&key)?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| CliError::new(format!("Error loading client certificate: {e}")))?;
            b = b.identity(id);
        }
        // The name TLS expects of the agent, when it differs from the host
        // the address names: reached at the address, verified by the name.
        let server_name = flag_or_env(
            &f.tls_server_name,
            &["MESHGATE_TLS_SERVER_NAME", "CONSUL_TLS_SERVER_NAME"],
        );
        let mut base = base;
        if let Some(name) = server_name
            && let Some(rest) = base.strip_prefix("https://")
        {
            let authority = rest.split('/').next().unwrap_or(rest).to_string();
            // `host`, `host:port`, `[v6]` or `[v6]:port`; 443 by default.
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !p.ends_with(']') && p.parse::<u16>().is_ok() => {
                    (h.to_string(), p.parse::<u16>().unwrap_or(443))
                }
                _ => (authority.clone(), 443),
            };
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let addrs: Vec<std::net::SocketAddr> =
                std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .map_err(|e| CliError::new(format!("Error connecting to Consul agent: {e}")))?
                    .collect();
            b = b.resolve_to_addrs(&name, &addrs);
            base = format!("https://{name}:{port}{}", &rest[authority.len()..]);
        }
        let insecure = env(&["MESHGATE_HTTP_SSL_VERIFY", "CONSUL_HTTP_SSL_VERIFY"])
            .is_some_and(|v| matches!(v.as_str(), "0" | "false" | "FALSE" | "False"));
        if insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| CliError::new(format!("Error connecting to Consul agent: {e}")))?;
        Ok(Client {
            base,
            token: token.filter(|t| !t.is_empty()),
            datacenter: f.datacenter.clone(),
            stale: f.stale.unwrap_or(false),
            tenancy: [
                ("ns", flag_or_env(&f.namespace, &["CONSUL_NAMESPACE"])),
                (
                    "partition",
                    flag_or_env(&f.partition, &["CONSUL_PARTITION"]),
                ),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k, v)))
            .collect(),
            http,
        })
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if let Some(dc) = &self.datacenter {
            q.push(("dc".into(), dc.clone()));
        }
        if self.stale {
            q.push(("stale".into(), String::new()));
        }
        for (k, v) in &self.tenancy {
            q.push((k.to_string(), v.clone()));
        }
        let mut url = format!("{}{}", self.base, path);
        if !q.is_empty() {
            let mut parts = Vec::new();
            for (k, v) in q {
                let k: String = form_urlencoded::byte_serialize(k.as_bytes()).collect();
                if v.is_empty() {
                    parts.push(k);
                } else {
                    let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
                    parts.push(format!("{k}={v}"));
                }
            }
            url.push('?');
            url.push_str(&parts.join("&"));
        }
        url
    }

    /// Sends a request and returns whatever the agent answered.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Resp, CliError> {
        let mut req = self.http.request(method, self.url(path, query));
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            CliError::new(msg)
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| CliError::new(e.to_string()))?
            .to_vec();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    /// GET a streaming answer (`/v1/agent/monitor`); non-200 answers are errors.
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, CliError> {
        let mut req = self.http.get(self.url(path, query));
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        let resp = req.send().await.map_err(|e| CliError::new(e.to_string()))?;
        if resp.status() != 200 {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            return Err(CliError::new(format!(
                "Unexpected response code: {status} ({})",
                text.trim()
            )));
        }
        Ok(resp)
    }

    /// GET; non-200 answers are errors.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Resp, CliError> {
        let r = self.send(reqwest::Method::GET, path, query, None).await?;
        if r.status != 200 {
            return Err(CliError::new(r.error_text()));
        }
        Ok(r)
    }

    /// PUT; non-200 answers are errors.
    pub async fn put(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Resp, CliError> {
        let r = self.send(reqwest::Method::PUT, path, query, body).await?;
        if r.status != 200 {
            return Err(CliError::new(r.error_text()));
        }
        Ok(r)
    }

    /// DELETE; non-200 answers are errors.
    pub async fn delete(&self, path: &str, query: &[(&str, String)]) -> Result<Resp, CliError> {
        let r = self
            .send(reqwest::Method::DELETE, path, query, None)
            .await?;
        if r.status != 200 {
            return Err(CliError::new(r.error_text()));
        }
        Ok(r)
    }
}

/// A boolean as Go's `strconv.ParseBool` reads it (a flag value parser).
pub fn go_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "parse error: strconv.ParseBool: parsing \"{v}\": invalid syntax"
        )),
    }
}

/// A duration as Go's `time.ParseDuration` reads it (a flag value parser).
pub fn go_duration(v: &str) -> Result<std::time::Duration, String> {
    meshgate_types::duration::parse(v).map_err(|e| e.to_string())
}

/// Percent-encodes a path segment that may contain `/` (KV keys keep their slashes).
pub fn escape_path(p: &str) -> String {
    p.split('/')
        .map(|seg| {
            form_urlencoded::byte_serialize(seg.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Reads a data argument: `@file`, `-` (stdin) or the literal.
pub fn read_data_arg(arg: &str) -> Result<Vec<u8>, String> {
    if let Some(path) = arg.strip_prefix('@') {
        std::fs::read(path).map_err(|e| e.to_string())
    } else if arg == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

/// Aligns rows into columns separated by two spaces, the last column unpadded
/// (ryanuber/columnize's output).
pub fn columnize(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.trim().chars().count());
        }
    }
    let mut out = String::new();
    for (ri, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            let c = c.trim();
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                let pad = widths[i] - c.chars().count();
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(&line);
        if ri + 1 < rows.len() {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns() {
        let rows = vec![
            vec!["Node".to_string(), "ID".into(), "Address".into()],
            vec!["node-1".to_string(), "abc".into(), "127.0.0.1".into()],
        ];
        assert_eq!(
            columnize(&rows),
            "Node    ID   Address\nnode-1  abc  127.0.0.1"
        );
    }

    #[test]
    fn path_escaping() {
        assert_eq!(escape_path("a b/c?d"), "a%20b/c%3Fd");
    }
}
