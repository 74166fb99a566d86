//! The local agent's HTTP API, and watches that keep a value fresh with
//! blocking queries, keeping the last good value while the agent is away.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::ProxyError;

/// How long one blocking query may wait at the agent.
const WAIT: &str = "5m";

/// A client of the local agent.
#[derive(Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// One answer of the agent.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// `X-Consul-Index` (0 when absent).
    pub index: u64,
    /// `X-Consul-ContentHash` (agent endpoints).
    pub hash: String,
    /// `X-Consul-Default-ACL-Policy` is `allow` (or absent).
    pub default_allow: bool,
}

impl AgentClient {
    /// A client of the agent at `base` (`http://127.0.0.1:8500`) using `token`.
    pub fn new(base: &str, token: &str) -> Result<AgentClient, ProxyError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(6 * 60 + 30))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ProxyError::Agent(format!("HTTP client: {e}")))?;
        let base = if base.contains("://") {
            base.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        Ok(AgentClient {
            http,
            base,
            token: token.to_string(),
        })
    }

    /// The agent's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if !self.token.is_empty() {
            r = r.header("X-Consul-Token", &self.token);
        }
        r
    }

    async fn answer(r: reqwest::Response) -> Result<Answer, ProxyError> {
        let status = r.status();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let index = header("X-Consul-Index").parse().unwrap_or(0);
        let hash = header("X-Consul-ContentHash");
        let default_allow = header("X-Consul-Default-ACL-Policy") != "deny";
        let text = r
            .text()
            .await
            .map_err(|e| ProxyError::Agent(format!("reading the agent's answer: {e}")))?;
        let body = if status.is_success() {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        } else {
            Value::String(text.trim().to_string())
        };
        Ok(Answer {
            status,
            body,
            index,
            hash,
            default_allow,
        })
    }

    /// `GET path` (which may carry a query string).
    pub async fn get(&self, path: &str) -> Result<Answer, ProxyError> {
        let r = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(|e| ProxyError::Agent(format!("GET {path}: {e}")))?;
        Self::answer(r).await
    }

    /// `PUT path` with a JSON body; an error unless 2xx.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Answer, ProxyError> {
        let r = self
            .request(reqwest::Method::PUT, path)
            .json(body)
            .send()
            .await
            .map_err(|e| ProxyError::Agent(format!("PUT {path}: {e}")))?;
        let a = Self::answer(r).await?;
        if !a.status.is_success() {
            return Err(ProxyError::Agent(format!(
                "PUT {path}: {} ({})",
                a.status.as_u16(),
                a.body.as_str().unwrap_or("")
            )));
        }
        Ok(a)
    }

    /// `GET path`, an error unless 200.
    pub async fn get_ok(&self, path: &str) -> Result<Answer, ProxyError> {
        let a = self.get(path).await?;
        if a.status != StatusCode::OK {
            return Err(ProxyError::Agent(format!(
                "GET {path}: {} ({})",
                a.status.as_u16(),
                a.body.as_str().unwrap_or("")
            )));
        }
        Ok(a)
    }
}

/// How a watched endpoint blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocking {
    /// `?index=` with `X-Consul-Index`.
    Index,
    /// `?hash=` with `X-Consul-ContentHash` (agent-local endpoints).
    Hash,
}

/// Starts a task that keeps `path`'s answer in a watch channel: `parse`
/// turns an answer into a value (`Ok(None)`: leave the value as it is).
/// When the agent is unreachable or refuses, the last good value stays and
/// the problem is logged once until it is solved.
pub fn watch<T, F>(
    client: AgentClient,
    path: String,
    blocking: Blocking,
    parse: F,
) -> (watch::Receiver<Option<T>>, tokio::task::JoinHandle<()>)
where
    T: Send + Sync + 'static,
    F: Fn(&Answer) -> Result<Option<T>, String> + Send + 'static,
{
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut index = 0u64;
        let mut hash = String::new();
        let mut failing = false;
        let mut backoff = Duration::from_millis(250);
        let sep = if path.contains('?') { '&' } else { '?' };
        loop {
            let url = match blocking {
                Blocking::Index if index > 0 => format!("{path}{sep}index={index}&wait={WAIT}"),
                Blocking::Hash if !hash.is_empty() => format!("{path}{sep}hash={hash}&wait={WAIT}"),
                _ => path.clone(),
            };
            let result = client.get(&url).await.and_then(|a| {
                parse(&a)
                    .map(|v| (a.index, a.hash, v))
                    .map_err(ProxyError::Agent)
            });
            match result {
                Ok((new_index, new_hash, value)) => {
                    if failing {
                        info!(path = %path, "the agent answers again");
                        failing = false;
                    }
                    backoff = Duration::from_millis(250);
                    if let Some(v) = value {
                        tx.send_replace(Some(v));
                    }
                    // An index that goes backwards (a restore) restarts the watch.
                    index = if new_index < index { 0 } else { new_index };
                    hash = new_hash;
                    if blocking == Blocking::Index && index == 0
                        || blocking == Blocking::Hash && hash.is_empty()
                    {
                        // Not a blocking endpoint after all: poll.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                Err(e) => {
                    if !failing {
                        warn!(path = %path, "keeping the last good configuration: {e}");
                        failing = true;
                    }
                    index = 0;
                    hash.clear();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    (rx, task)
}

/// Aborts the tasks it holds when dropped.
#[derive(Default)]
pub struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    pub fn push(&mut self, t: tokio::task::JoinHandle<()>) {
        self.0.push(t);
    }

    /// Aborts the tasks and waits until they are gone (what they held,
    /// listeners included, is dropped).
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.0);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Waits until a watch has a first value, up to `timeout`.
pub async fn first<T: Clone>(
    rx: &mut watch::Receiver<Option<T>>,
    timeout: Duration,
    what: &str,
) -> Result<T, ProxyError> {
    let fut = rx.wait_for(Option::is_some);
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => v
            .clone()
            .ok_or_else(|| ProxyError::Agent(format!("{what}: no value"))),
        Ok(Err(_)) => Err(ProxyError::Agent(format!("{what}: watch ended"))),
        Err(_) => Err(ProxyError::Agent(format!(
            "{what}: no answer from the agent within {timeout:?}"
        ))),
    }
}
