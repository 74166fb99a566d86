//! `http_config { response_headers, block_endpoints, allow_write_http_from }`:
//! what the HTTP API adds to every answer and what it refuses before any
//! endpoint runs, as Consul's HTTP server does.

use std::net::IpAddr;

use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use ipnet::IpNet;

use crate::config::{ConfigError, HttpConfig};

/// The answer to a request for a blocked endpoint.
pub const BLOCKED: &str = "Endpoint is blocked by agent configuration";
/// The answer to a write from an address outside `allow_write_http_from`.
pub const RESTRICTED: &str = "Access is restricted";

/// The `http_config` settings in force (replaced by `/v1/agent/reload`).
#[derive(Debug, Default)]
pub struct HttpPolicy {
    headers: Vec<(HeaderName, HeaderValue)>,
    blocked: Vec<String>,
    write_from: Vec<IpNet>,
}

impl HttpPolicy {
    /// Checks and compiles the configuration; the error names the key.
    pub fn from_config(c: &HttpConfig) -> Result<HttpPolicy, ConfigError> {
        let mut headers = Vec::new();
        for (name, value) in &c.response_headers {
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError(format!(
                    "http_config.response_headers: invalid header name {name:?}"
                ))
            })?;
            let v = HeaderValue::from_str(value).map_err(|_| {
                ConfigError(format!(
                    "http_config.response_headers: invalid value for {name:?}"
                ))
            })?;
            headers.push((n, v));
        }
        let mut write_from = Vec::new();
        for cidr in &c.allow_write_http_from {
            // Go's ParseCIDR: a prefix length is required; host bits may be set.
            let net: IpNet = cidr
                .trim()
                .parse()
                .map_err(|_| ConfigError(format!("allow_write_http_from: invalid cidr: {cidr}")))?;
            write_from.push(net);
        }
        Ok(HttpPolicy {
            headers,
            blocked: c.block_endpoints.clone(),
            write_from,
        })
    }

    /// Nothing configured: every request goes straight on.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.blocked.is_empty() && self.write_from.is_empty()
    }

    /// A path under one of `block_endpoints` (prefixes of the decoded path).
    pub fn blocks(&self, path: &str) -> bool {
        self.blocked.iter().any(|p| path.starts_with(p.as_str()))
    }

    /// Whether a request with `method` from `peer` may go on: reads always;
    /// writes only from `allow_write_http_from` when it is set. A peer
    /// address unknown to the server (none here) is refused, as Consul
    /// refuses a remote address it cannot parse.
    pub fn write_allowed(&self, method: &Method, peer: Option<IpAddr>) -> bool {
        if self.write_from.is_empty()
            || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        {
            return true;
        }
        let Some(ip) = peer.map(|ip| ip.to_canonical()) else {
            return false;
        };
        self.write_from.iter().any(|n| n.contains(&ip))
    }

    /// Adds the configured headers to an answer, unless the endpoint set the
    /// same header itself (Consul sets them before the endpoint runs).
    pub fn decorate(&self, r: &mut Response) {
        for (n, v) in &self.headers {
            if !r.headers().contains_key(n) {
                r.headers_mut().insert(n.clone(), v.clone());
            }
        }
    }

    /// A plain-text refusal with the configured headers.
    pub fn refusal(&self, status: StatusCode, text: &'static str) -> Response {
        let mut r = Response::new(axum::body::Body::from(text));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        self.decorate(&mut r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn policy(headers: &[(&str, &str)], blocked: &[&str], from: &[&str]) -> HttpPolicy {
        HttpPolicy::from_config(&HttpConfig {
            response_headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            block_endpoints: blocked.iter().map(|s| s.to_string()).collect(),
            allow_write_http_from: from.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn writes_only_from_the_listed_networks() {
        let p = policy(&[], &[], &["127.0.0.2/32", " 10.1.2.3/16 ", "fd00::/8"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(p.write_allowed(&Method::PUT, ip("127.0.0.2")));
        assert!(p.write_allowed(&Method::DELETE, ip("10.1.200.1")));
        assert!(p.write_allowed(&Method::POST, ip("fd12::1")));
        // An IPv4 client on a dual-stack listener is its IPv4 address.
        assert!(p.write_allowed(&Method::PUT, ip("::ffff:127.0.0.2")));
        assert!(!p.write_allowed(&Method::PUT, ip("127.0.0.1")));
        assert!(!p.write_allowed(&Method::PUT, None));
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(p.write_allowed(&m, ip("192.0.2.1")), "{m}");
        }
        assert!(policy(&[], &[], &[]).write_allowed(&Method::PUT, None));
    }

    #[test]
    fn blocked_prefixes() {
        let p = policy(&[], &["/v1/acl", "/v1/agent/self"], &[]);
        assert!(p.blocks("/v1/acl/tokens"));
        assert!(p.blocks("/v1/acl"));
        assert!(p.blocks("/v1/agent/self"));
        assert!(!p.blocks("/v1/agent/services"));
        assert!(!policy(&[], &[], &[]).blocks("/v1/acl"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = |c: HttpConfig| HttpPolicy::from_config(&c).unwrap_err().to_string();
        let e = err(HttpConfig {
            allow_write_http_from: vec!["10.0.0.1".into()],
            ..HttpConfig::default()
        });
        assert!(
            e.contains("allow_write_http_from: invalid cidr: 10.0.0.1"),
            "{e}"
        );
        let e = err(HttpConfig {
            response_headers: [("bad name".to_string(), "x".to_string())].into(),
            ..HttpConfig::default()
        });
        assert!(e.contains("http_config.response_headers"), "{e}");
    }

    #[test]
    fn configured_headers_do_not_override_the_endpoints() {
        let p = policy(
            &[
                ("Access-Control-Allow-Origin", "*"),
                ("Content-Type", "x/y"),
            ],
            &[],
            &[],
        );
        let mut r = Response::new(axum::body::Body::empty());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        p.decorate(&mut r);
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert_eq!(r.headers()["content-type"], "application/json");
    }
}
