//! The `/v1` HTTP API: the route table, request context, error mapping, response
//! headers and blocking queries shared by every endpoint.
//!
//! Every endpoint is one entry of [`routes`]; the router is built from that table
//! only, so there is exactly one list of what the API serves.

mod acl;
mod agent;
mod agent_ops;
pub(crate) mod catalog;
mod chain;
mod config;
mod connect;
mod coordinate;
mod event;
mod health;
mod keyring;
pub mod kv;
mod operator;
pub mod policy;
pub(crate) mod query;
mod session;
mod snapshot;
mod status;
mod txn;
pub mod ui;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawPathParams, Request, State as AxState};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use futures::future::BoxFuture;
use meshgate_acl::{Access, Resource};
use meshgate_state::{State, Table};
use serde::Serialize;

use crate::Agent;

/// Largest request body read at all (per-endpoint limits are smaller).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// An API failure: a status code and a plain-text message, as Consul answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    /// 400.
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: msg.into(),
        }
    }
    /// 404.
    pub fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: msg.into(),
        }
    }
    /// 500.
    pub fn internal(msg: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: msg.into(),
        }
    }
    /// 403.
    pub fn forbidden(msg: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            message: msg.into(),
        }
    }
    /// 413.
    pub fn too_large(msg: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: msg.into(),
        }
    }
    /// Any status.
    pub fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: msg.into(),
        }
    }
}

impl From<crate::store::WriteError> for ApiError {
    fn from(e: crate::store::WriteError) -> Self {
        match e {
            crate::store::WriteError::Apply(meshgate_state::ApplyError::NotFound(m)) => {
                ApiError::not_found(m)
            }
            other => {
                let m = other.to_string();
                // Consul's HTTP layer maps by message: permission errors are 403.
                if m.contains("Permission denied") || m.contains("ACL not found") {
                    ApiError::forbidden(m)
                } else {
                    ApiError::internal(m)
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.message).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }
}

/// The result of a handler.
pub type ApiResult = Result<Response, ApiError>;

/// A handler: takes the request context, answers.
pub type Handler = fn(Ctx) -> BoxFuture<'static, ApiResult>;

/// The ACL permission an endpoint needs. Every route declares one: there is no
/// way to add an endpoint without saying what it requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclRule {
    /// Anyone may call it (status, datacenters, CA roots, bootstrap...).
    None,
    /// A permission without a name: `acl`, `operator`, `keyring`, `mesh`, `peering`.
    Global(Resource, Access),
    /// A permission on the value of path parameter `n` (a key, a service...).
    Param(Resource, Access, usize),
    /// `agent:<access>` on this agent's node.
    AgentNode(Access),
    /// The handler checks: the permission depends on the body or on stored data
    /// (registrations, filtered lists, transactions).
    Handler,
}

/// One endpoint.
pub struct Route {
    pub method: Method,
    /// axum path syntax: `/v1/kv/{*key}`, `/v1/agent/service/{id}`.
    pub path: &'static str,
    pub acl: AclRule,
    pub handler: Handler,
}

/// Wraps an `async fn(Ctx) -> ApiResult` as a [`Handler`].
macro_rules! handler {
    ($f:path) => {{
        fn h(
            ctx: $crate::http::Ctx,
        ) -> futures::future::BoxFuture<'static, $crate::http::ApiResult> {
            Box::pin($f(ctx))
        }
        h as $crate::http::Handler
    }};
}
pub(crate) use handler;

/// Builds a route.
pub(crate) fn route(method: Method, path: &'static str, acl: AclRule, handler: Handler) -> Route {
    Route {
        method,
        path,
        acl,
        handler,
    }
}

/// Every endpoint of the API.
pub use acl::{builtins as acl_builtins, initial_management_token as acl_initial_management_token};

pub fn routes() -> Vec<Route> {
    let mut r = Vec::new();
    r.extend(acl::routes());
    r.extend(catalog::routes());
    r.extend(config::routes());
    r.extend(chain::routes());
    r.extend(connect::routes());
    r.extend(health::routes());
    r.extend(kv::routes());
    r.extend(session::routes());
    r.extend(txn::routes());
    r.extend(agent::routes());
    r.extend(agent_ops::routes());
    r.extend(ui::routes());
    r.extend(status::routes());
    r.extend(operator::routes());
    r.extend(keyring::routes());
    r.extend(snapshot::routes());
    r.extend(event::routes());
    r.extend(coordinate::routes());
    r.extend(query::routes());
    r
}

/// Parsed query string: repeated keys kept, flags without value allowed.
#[derive(Debug, Clone, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Query {
        Query(
            form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    /// Whether the key is present (with or without value).
    pub fn has(&self, k: &str) -> bool {
        self.0.iter().any(|(key, _)| key == k)
    }
    /// The first value of a key.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    /// Every value of a repeated key.
    pub fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// A numeric parameter; `what` names it in the error.
    pub fn u64(&self, k: &str, err: &str) -> Result<Option<u64>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(err.to_string())),
        }
    }
}

/// Consistency mode of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Default,
    Stale,
    Consistent,
}

/// The common read options (`?index`, `?wait`, `?stale`, `?consistent`, `?filter`...).
#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub index: u64,
    pub wait: Duration,
    pub consistency: Consistency,
    pub filter: Option<String>,
}

/// Everything a handler gets.
pub struct Ctx {
    pub agent: Arc<Agent>,
    /// The caller, resolved before the handler for every rule but `None`.
    pub identity: Option<crate::acl::Identity>,
    pub method: Method,
    pub params: Vec<String>,
    pub query: Query,
    pub raw_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The answer's header map when [`blocking`] allocated it before waiting
    /// (taken by [`json_read`]).
    answer_headers: parking_lot::Mutex<Option<HeaderMap>>,
    /// The address the connection came from (see [`Ctx::source_ip`]).
    peer: Option<std::net::IpAddr>,
}

/// The client's address, in a request's extensions.
#[derive(Clone, Copy)]
struct Peer(std::net::IpAddr);

impl Ctx {
    /// The client's address as Consul takes it for `near=_ip`: the first
    /// address of `X-Forwarded-For` when it is one, else the connection's.
    pub fn source_ip(&self) -> Option<std::net::IpAddr> {
        self.headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|first| first.trim().parse().ok())
            .or(self.peer)
    }

    /// The token secret the request carries: `?token`, `X-Consul-Token`,
    /// `Authorization: Bearer`, in that order (empty: none).
    pub fn token_secret(&self) -> String {
        if let Some(t) = self.query.get("token") {
            return t.to_string();
        }
        if let Some(t) = self
            .headers
            .get("x-consul-token")
            .and_then(|v| v.to_str().ok())
        {
            return t.trim().to_string();
        }
        if let Some(v) = self
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            let mut it = v.split_whitespace();
            if it.next().is_some_and(|s| s.eq_ignore_ascii_case("bearer")) {
                return it.next().unwrap_or("").to_string();
            }
        }
        String::new()
    }

    /// The caller's identity (resolved now if the route did not need it).
    pub fn identity(&self) -> Result<crate::acl::Identity, ApiError> {
        match &self.identity {
            Some(i) => Ok(i.clone()),
            None => self.agent.resolve_token(&self.token_secret()),
        }
    }

    /// Requires a permission of the caller.
    pub fn require(
        &self,
        resource: Resource,
        access: Access,
        segment: &str,
    ) -> Result<(), ApiError> {
        self.identity()?.require(resource, access, segment)
    }

    /// Path parameter `i` (0-based).
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
    }

    /// Whether `?pretty` was given.
    pub fn pretty(&self) -> bool {
        self.query.has("pretty")
    }

    /// Parses the read options shared by all blocking endpoints.
    pub fn query_options(&self) -> Result<QueryOptions, ApiError> {
        let q = &self.query;
        let index = q.u64("index", "Invalid index")?.unwrap_or(0);
        // `default_query_time` when no wait is named, at most `max_query_time`.
        let (default_wait, max_wait) = self.agent.query_times;
        let wait = match q.get("wait") {
            None => default_wait,
            Some(w) => {
                let d = meshgate_types::duration::parse(w)
                    .map_err(|_| ApiError::bad_request("Invalid wait time"))?;
                if d.is_zero() {
                    default_wait
                } else {
                    d.min(max_wait)
                }
            }
        };
        let stale = q.has("stale");
        let consistent = q.has("consistent");
        if stale && consistent {
            return Err(ApiError::bad_request(
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ));
        }
        if q.has("cached") && consistent {
            return Err(ApiError::bad_request(
                "Cannot specify ?cached with ?consistent, conflicting semantics.",
            ));
        }
        if let Some(ms) = q.get("max_stale")
            && meshgate_types::duration::parse(ms).is_err()
        {
            return Err(ApiError::bad_request("Invalid max_stale value"));
        }
        let consistency = if stale {
            Consistency::Stale
        } else if consistent {
            Consistency::Consistent
        } else {
            Consistency::Default
        };
        self.check_dc()?;
        Ok(QueryOptions {
            index,
            wait,
            consistency,
            filter: q
                .get("filter")
                .map(str::to_string)
                .filter(|f| !f.is_empty()),
        })
    }

    /// `?dc=` must name our datacenter (the only one there is).
    pub fn check_dc(&self) -> Result<(), ApiError> {
        match self.query.get("dc") {
            Some(dc) if !dc.is_empty() && dc != self.agent.config.datacenter => {
                Err(ApiError::internal("No path to datacenter"))
            }
            _ => Ok(()),
        }
    }

    /// `?node-meta=k:v` pairs.
    pub fn node_meta(&self) -> Vec<(String, String)> {
        self.query
            .all("node-meta")
            .into_iter()
            .map(|kv| match kv.split_once(':') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect()
    }

    /// The body as UTF-8 JSON value; empty body is `null`.
    pub fn json_body(&self, what: &str) -> Result<serde_json::Value, ApiError> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("{what} decoding failed: {e}")))
    }
}

/// Reads a consistent value and, for a blocking query (`?index=N`), waits until
/// the value's index moves past `N` or the wait runs out. An `N` ahead of
/// the store (a client that read another cluster, or before a snapshot
/// restore) waits too, as in Consul: the answer then carries the lower index,
/// which tells the client to start again from it.
pub async fn blocking<T, F>(ctx: &Ctx, opts: &QueryOptions, tables: &[Table], f: F) -> (u64, T)
where
    F: Fn(&State) -> (u64, T),
{
    if opts.index != 0 {
        *ctx.answer_headers.lock() = Some(HeaderMap::with_capacity(READ_ANSWER_HEADERS));
    }
    blocking_on(&ctx.agent, opts, tables, f).await
}

/// [`blocking`] for a handler that has already taken what it needs from its
/// request and dropped it: the request's buffers are freed before the wait
/// rather than in the burst of answers a write sets off.
pub async fn blocking_on<T, F>(
    agent: &Agent,
    opts: &QueryOptions,
    tables: &[Table],
    f: F,
) -> (u64, T)
where
    F: Fn(&State) -> (u64, T),
{
    let store = &agent.store;
    let mut rxs: Vec<_> = tables.iter().map(|t| store.watch(*t)).collect();
    for rx in &mut rxs {
        rx.borrow_and_update();
    }
    let (idx, v) = f(&store.read());
    if opts.index == 0 || idx > opts.index {
        return (idx, v);
    }
    let jitter = {
        let max = opts.wait.as_millis() as u64 / 16;
        if max == 0 {
            0
        } else {
            rand::random_range(0..max)
        }
    };
    let deadline = tokio::time::Instant::now() + opts.wait + Duration::from_millis(jitter);
    // One timer for the whole wait (a re-check after a change elsewhere in
    // the table does not re-register it), and a change is looked at first.
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    loop {
        let timed_out = tokio::select! {
            biased;
            _ = any_changed(&mut rxs) => false,
            _ = &mut sleep => true,
        };
        // Shutting down wakes every watcher: answer with what there is.
        let timed_out = timed_out || agent.is_shutting_down();
        for rx in &mut rxs {
            rx.borrow_and_update();
        }
        let (idx, v) = f(&store.read());
        if timed_out || idx > opts.index {
            return (idx, v);
        }
    }
}

/// Resolves when any of the receivers sees a change.
async fn any_changed(rxs: &mut [tokio::sync::watch::Receiver<u64>]) {
    match rxs {
        [] => std::future::pending().await,
        [one] => {
            let _ = one.changed().await;
        }
        many => {
            let futs: Vec<_> = many.iter_mut().map(|rx| Box::pin(rx.changed())).collect();
            let _ = futures::future::select_all(futs).await;
        }
    }
}

/// Serialises `v` as Consul does (compact, or 4-space indented with `?pretty`).
pub fn to_json_bytes<T: Serialize + ?Sized>(v: &T, pretty: bool) -> Vec<u8> {
    if pretty {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        if v.serialize(&mut ser).is_err() {
            return b"null".to_vec();
        }
        out.push(b'\n');
        out
    } else {
        serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec())
    }
}

/// A 200 JSON response.
pub fn json<T: Serialize + ?Sized>(ctx: &Ctx, v: &T) -> Response {
    json_as(ctx.pretty(), v)
}

/// A 200 JSON response, indented when `pretty`.
pub fn json_as<T: Serialize + ?Sized>(pretty: bool, v: &T) -> Response {
    json_body_in(Bytes::from(to_json_bytes(v, pretty)), answer_headers())
}

/// A 200 JSON response with an already encoded body, its headers going into
/// `headers` (a map allocated before a blocking query waited: see
/// [`answer_headers`]).
pub fn json_body_in(body: Bytes, headers: HeaderMap) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.headers_mut() = headers;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An empty header map with room for what a KV read answer carries
/// (`Content-Type`, `X-Consul-Index`, `X-Consul-KnownLeader`,
/// `X-Consul-LastContact` and the two every answer gets): allocated once,
/// not grown and rehashed, and no larger than needed, as hyper keeps an
/// answer's map for the connection's next request.
///
/// A blocking query allocates it *before* it waits ([`blocking`] does the
/// same for [`json_read`]): when one write wakes thousands of queries, every
/// answer's map is fresh memory, and allocated in the burst of answers that
/// is the allocator extending fresh pages and the kernel faulting them in
/// while every watcher waits.
pub fn answer_headers() -> HeaderMap {
    HeaderMap::with_capacity(6)
}

/// Room in a [`json_read`] answer's map: the answer's own headers, the four
/// read headers, `X-Cache`, and the two every answer gets.
const READ_ANSWER_HEADERS: usize = 9;

/// A JSON response with the read headers (`X-Consul-Index` and friends).
pub fn json_read<T: Serialize + ?Sized>(
    ctx: &Ctx,
    opts: &QueryOptions,
    index: u64,
    v: &T,
) -> Response {
    let headers = ctx.answer_headers.lock().take();
    let headers = headers.unwrap_or_else(|| HeaderMap::with_capacity(READ_ANSWER_HEADERS));
    let mut r = json_body_in(Bytes::from(to_json_bytes(v, ctx.pretty())), headers);
    set_read_headers(&mut r, opts, index);
    if ctx.query.has("cached") {
        // meshgate serves every read from the state store itself: an agent-cache
        // request is always a miss, answered fresh.
        r.headers_mut()
            .insert("x-cache", HeaderValue::from_static("MISS"));
    }
    r
}

/// Sets only `X-Consul-Index` (never 0).
pub fn set_index(r: &mut Response, index: u64) {
    r.headers_mut()
        .insert(hdr::INDEX, HeaderValue::from(index.max(1)));
}

/// Sets `X-Consul-Index` (never 0), `X-Consul-KnownLeader`, `X-Consul-LastContact`
/// and `X-Consul-Effective-Consistency`.
pub fn set_read_headers(r: &mut Response, opts: &QueryOptions, index: u64) {
    set_index_headers(r, index);
    let c = match opts.consistency {
        Consistency::Default => "leader",
        Consistency::Stale => "stale",
        Consistency::Consistent => "consistent",
    };
    r.headers_mut()
        .insert(hdr::EFFECTIVE_CONSISTENCY, HeaderValue::from_static(c));
}

/// The read headers but `X-Consul-Effective-Consistency` (which Consul's KV
/// endpoint does not send): `X-Consul-Index` (never 0), `X-Consul-KnownLeader`
/// and `X-Consul-LastContact`.
pub fn set_index_headers(r: &mut Response, index: u64) {
    let h = r.headers_mut();
    h.insert(hdr::INDEX, HeaderValue::from(index.max(1)));
    h.insert(hdr::KNOWN_LEADER, HeaderValue::from_static("true"));
    h.insert(hdr::LAST_CONTACT, HeaderValue::from_static("0"));
}

/// A 200 response with an empty body.
pub fn empty() -> Response {
    StatusCode::OK.into_response()
}

/// Applies `?filter` to a list, keeping the elements the expression matches.
pub fn apply_filter<T: Serialize>(
    opts: &QueryOptions,
    schema: &crate::filter::Schema,
    items: Vec<T>,
) -> Result<Vec<T>, ApiError> {
    let Some(expr) = &opts.filter else {
        return Ok(items);
    };
    let f = parse_filter(expr, schema)?;
    Ok(items
        .into_iter()
        .filter(|i| match serde_json::to_value(i) {
            Ok(v) => f.matches(&v),
            Err(_) => false,
        })
        .collect())
}

/// The request's `?filter`, compiled, if it has one (for handlers that test
/// elements themselves rather than through [`apply_filter`]).
pub(crate) fn query_filter(
    opts: &QueryOptions,
    schema: &crate::filter::Schema,
) -> Result<Option<crate::filter::Filter>, ApiError> {
    opts.filter
        .as_deref()
        .map(|expr| parse_filter(expr, schema))
        .transpose()
}

/// Parses a filter; a bad expression is a 500 with go-bexpr's message, as in Consul.
fn parse_filter(
    expr: &str,
    schema: &crate::filter::Schema,
) -> Result<crate::filter::Filter, ApiError> {
    crate::filter::Filter::parse(expr, schema).map_err(|e| ApiError::internal(e.consul_message()))
}

/// Applies `?filter` to a map's values.
pub fn apply_filter_map<T: Serialize>(
    opts: &QueryOptions,
    schema: &crate::filter::Schema,
    items: BTreeMap<String, T>,
) -> Result<BTreeMap<String, T>, ApiError> {
    let Some(expr) = &opts.filter else {
        return Ok(items);
    };
    let f = parse_filter(expr, schema)?;
    Ok(items
        .into_iter()
        .filter(|(_, i)| match serde_json::to_value(i) {
            Ok(v) => f.matches(&v),
            Err(_) => false,
        })
        .collect())
}

/// Reads the whole body, answering 413 beyond `MAX_BODY`.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::too_large(format!(
            "Request body too large, max size: {MAX_BODY} bytes"
        ))
    })
}

fn method_filter(m: &Method) -> MethodFilter {
    match *m {
        Method::GET => MethodFilter::GET,
        Method::PUT => MethodFilter::PUT,
        Method::POST => MethodFilter::POST,
        Method::DELETE => MethodFilter::DELETE,
        Method::HEAD => MethodFilter::HEAD,
        Method::PATCH => MethodFilter::PATCH,
        _ => MethodFilter::OPTIONS,
    }
}

async fn dispatch(
    agent: Arc<Agent>,
    handler: Handler,
    rule: AclRule,
    metric: &'static str,
    params: Vec<String>,
    peer: Option<std::net::IpAddr>,
    req: Request,
) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    // The router's own bookkeeping (path parameters, already copied into
    // `params`) is freed now, not when a blocking query finally answers.
    drop(parts.extensions);
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let uri = parts.uri;
    // The URI shares hyper's read buffer: what the log line needs is copied
    // (only when it will be written) so that the buffer is released before a
    // blocking query waits, not in the burst of answers a write sets off.
    let log_url = tracing::enabled!(target: "agent.http", tracing::Level::DEBUG)
        .then(|| LogUrl(&uri).to_string());
    let method_for_log = parts.method.clone();
    let stale_read = parts.method == Method::GET
        && uri.query().is_some_and(|q| {
            q.split('&')
                .any(|kv| kv == "stale" || kv.starts_with("stale="))
        });
    let gzip = parts.method != Method::HEAD && accepts_gzip(&parts.headers);
    let default_policy = if agent.config.acl.default_policy == "deny" {
        "deny"
    } else {
        "allow"
    };
    let metrics_agent = agent.clone();
    let ctx = Ctx {
        identity: None,
        agent,
        method: parts.method,
        params,
        query: Query::parse(&raw_query),
        raw_query,
        headers: parts.headers,
        body,
        answer_headers: parking_lot::Mutex::new(None),
        peer,
    };
    let checked = match enterprise_tenancy(uri.path(), &ctx) {
        Some(e) => Err(e),
        None => authorize(ctx, rule),
    };
    let mut r = match checked {
        Ok(ctx) => {
            let barrier = read_barrier(&ctx, uri.path()).await;
            drop(uri);
            match barrier {
                Err(e) => e.into_response(),
                Ok(()) => handler(ctx).await.unwrap_or_else(|e| e.into_response()),
            }
        }
        Err(e) => e.into_response(),
    };
    if let Some(c) = metrics_agent.store.cluster()
        && r.headers().contains_key(hdr::KNOWN_LEADER)
    {
        if !c.known_leader() {
            r.headers_mut()
                .insert(hdr::KNOWN_LEADER, HeaderValue::from_static("false"));
        }
        // Stale reads are answered from this node's copy: say how old it may
        // be (ms since the leader last replicated to it). Other reads went
        // through the leader (0).
        if stale_read {
            let ms = c
                .last_contact()
                .map(|d| d.as_millis() as u64)
                .unwrap_or(u64::MAX / 2);
            r.headers_mut()
                .insert(hdr::LAST_CONTACT, HeaderValue::from(ms));
        }
    }
    if gzip {
        r = gzipped(r).await;
    }
    let h = r.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        hdr::DEFAULT_ACL_POLICY,
        HeaderValue::from_static(default_policy),
    );
    let elapsed = started.elapsed();
    metrics_agent
        .metrics
        .sample(metric, elapsed.as_secs_f64() * 1000.0);
    tracing::debug!(
        target: "agent.http",
        "Request finished: method={} url={} status={} latency={:?}",
        method_for_log,
        log_url.as_deref().unwrap_or_default(),
        r.status().as_u16(),
        elapsed
    );
    r
}

/// The endpoints whose data Consul Enterprise keeps per namespace and admin
/// partition (Consul's handlers that read the namespace of a request).
const TENANT_SCOPED: &[&str] = &[
    "/v1/kv/",
    "/v1/catalog/",
    "/v1/health/",
    "/v1/session/",
    "/v1/acl/policy",
    "/v1/acl/role",
    "/v1/acl/token",
    "/v1/acl/auth-method",
    "/v1/acl/binding-rule",
    "/v1/acl/login",
    "/v1/config",
    "/v1/connect/intentions",
    "/v1/discovery-chain/",
    "/v1/agent/service",
    "/v1/agent/check",
    "/v1/agent/health/",
    "/v1/agent/connect/authorize",
    "/v1/agent/connect/ca/leaf/",
    "/v1/internal/ui/services",
    "/v1/internal/ui/nodes",
];

/// Namespaces and admin partitions are Consul Enterprise features: as
/// Consul's community edition does, a request to a namespaced endpoint that
/// names one (`?ns=`, `?partition=` or the `X-Consul-Namespace` /
/// `X-Consul-Partition` headers, even `default`) is refused with 400 rather
/// than served from the one namespace there is — a client set up for an
/// Enterprise namespace must not read or write other data unknowingly.
fn enterprise_tenancy(path: &str, ctx: &Ctx) -> Option<ApiError> {
    if !TENANT_SCOPED.iter().any(|p| path.starts_with(p)) {
        return None;
    }
    let named = |v: Option<&str>| v.is_some_and(|v| !v.is_empty());
    for (header, feature) in [
        ("X-Consul-Namespace", "Namespaces"),
        ("X-Consul-Partition", "Partitions"),
    ] {
        if named(ctx.headers.get(header).and_then(|v| v.to_str().ok())) {
            return Some(ApiError::bad_request(format!(
                "Invalid header: \"{header}\" - {feature} are a Consul Enterprise feature"
            )));
        }
    }
    for (param, feature) in [("ns", "Namespaces"), ("partition", "Partitions")] {
        if named(ctx.query.get(param)) {
            return Some(ApiError::bad_request(format!(
                "Invalid query parameter: \"{param}\" - {feature} are a Consul Enterprise feature"
            )));
        }
    }
    None
}

/// The replicated state's read endpoints: their default-mode reads go
/// through the leader (agent-local endpoints such as `/v1/agent/*` do not).
const STATE_READS: &[&str] = &[
    "/v1/catalog/",
    "/v1/health/",
    "/v1/kv/",
    "/v1/session/",
    "/v1/config",
    "/v1/connect/",
    "/v1/query",
    "/v1/coordinate/",
    "/v1/acl/",
    "/v1/discovery-chain/",
    "/v1/event/list",
    "/v1/internal/ui/",
    "/v1/operator/autopilot/configuration",
    "/v1/operator/usage",
];

/// Reads in cluster mode, by consistency mode (as Consul serves them):
/// `?consistent` waits until this node has applied everything the leader had
/// committed when the request arrived, the leader confirming with a quorum
/// that it still leads; the default mode waits until this node has applied
/// what the leader had applied (the leader's view, without the quorum
/// round); `?stale` is answered from this node's copy at once. Without a
/// leader, the first two fail with `500 No cluster leader` after 7 s.
async fn read_barrier(ctx: &Ctx, path: &str) -> Result<(), ApiError> {
    let Some(c) = ctx.agent.store.cluster() else {
        return Ok(());
    };
    if ctx.method != Method::GET || ctx.query.has("stale") {
        return Ok(());
    }
    let patience = Duration::from_secs(7);
    // The prefixes name the decoded path (the one routes match).
    let decoded = if path.contains('%') {
        std::borrow::Cow::Owned(percent_decode_path(path))
    } else {
        std::borrow::Cow::Borrowed(path)
    };
    let r = if ctx.query.has("consistent") {
        c.read_barrier(patience).await
    } else if STATE_READS.iter().any(|p| decoded.starts_with(p)) {
        c.leader_barrier(patience).await
    } else {
        return Ok(());
    };
    r.map_err(|e| ApiError::internal(e.to_string()))
}

/// `?near=NODE` (`_agent`: this agent's node), as Consul sorts catalog and
/// health answers: by the round trip time Serf's coordinates estimate from
/// NODE, nearest first; entries whose node has no coordinate keep their
/// order after the others. Without a coordinate for NODE nothing moves.
pub fn sort_near<T>(ctx: &Ctx, items: &mut [T], node_of: impl Fn(&T) -> &str) {
    if let Some(near) = ctx.query.get("near").filter(|n| !n.is_empty()) {
        sort_near_from(&ctx.agent, near, items, node_of);
    }
}

/// [`sort_near`] from node `near` (`_agent`: this agent's node).
pub fn sort_near_from<T>(agent: &Agent, near: &str, items: &mut [T], node_of: impl Fn(&T) -> &str) {
    let source = if near == "_agent" {
        agent.node_name.as_str()
    } else {
        near
    };
    // Each node's coordinate in the default segment (else its first).
    let coords: std::collections::HashMap<String, meshgate_state::Coord> = {
        let st = agent.store.read();
        let (_, entries) = st.coordinates();
        let mut m = std::collections::HashMap::new();
        for e in entries {
            let key = e.node.to_lowercase();
            if e.segment.is_empty() || !m.contains_key(&key) {
                m.insert(key, e.coord.clone());
            }
        }
        m
    };
    let Some(from) = coords.get(&source.to_lowercase()) else {
        return;
    };
    items.sort_by_cached_key(|item| {
        coords
            .get(&node_of(item).to_lowercase())
            .and_then(|c| from.distance_to(c))
            .map_or(u128::MAX, |d| d.as_nanos())
    });
}

/// A request URL fit for logs: the value of a `token` query parameter is
/// replaced by `<hidden>`. Formatted only when a log line is written, so a
/// request logged at a level nobody records costs nothing.
pub struct LogUrl<'a>(pub &'a axum::http::Uri);

impl std::fmt::Display for LogUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.path())?;
        let Some(query) = self.0.query().filter(|q| !q.is_empty()) else {
            return Ok(());
        };
        for (i, kv) in query.split('&').enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            let name = kv.split('=').next().unwrap_or("");
            if name.eq_ignore_ascii_case("token") && kv.contains('=') {
                write!(f, "{name}=<hidden>")?;
            } else {
                f.write_str(kv)?;
            }
        }
        Ok(())
    }
}

/// ACL filtering of list answers: remembers whether anything was removed, so
/// that `X-Consul-Results-Filtered-By-ACLs: true` can be set (only for a token
/// other than the anonymous one, as Consul does).
pub struct AclFilter {
    pub id: crate::acl::Identity,
    pub removed: bool,
    token_given: bool,
}

impl AclFilter {
    /// For the caller of `ctx`.
    pub fn new(ctx: &Ctx) -> Result<AclFilter, ApiError> {
        Ok(AclFilter {
            id: ctx.identity()?,
            removed: false,
            token_given: !ctx.token_secret().is_empty(),
        })
    }

    /// Keeps an element when `allowed`; remembers a removal.
    pub fn keep(&mut self, allowed: bool) -> bool {
        if !allowed {
            self.removed = true;
        }
        allowed
    }

    /// Whether the caller may read a node and, when given, a service.
    pub fn node_service(&mut self, node: &str, service: Option<&str>) -> bool {
        let ok = self.id.allows(Resource::Node, Access::Read, node)
            && service.is_none_or(|s| self.id.allows(Resource::Service, Access::Read, s));
        self.keep(ok)
    }

    /// Sets the header on an answer when something was removed.
    pub fn mark(&self, r: &mut Response) {
        let anonymous = self.id.is_anonymous() && !self.token_given;
        if self.removed && self.id.token.is_some() && !anonymous && !self.id.is_anonymous() {
            r.headers_mut().insert(
                "x-consul-results-filtered-by-acls",
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// The bare `Permission denied` some endpoints answer with.
pub fn bare_denied() -> ApiError {
    ApiError::forbidden(meshgate_acl::ERR_PERMISSION_DENIED)
}

/// Resolves the caller and enforces the route's declared rule.
fn authorize(mut ctx: Ctx, rule: AclRule) -> Result<Ctx, ApiError> {
    if rule == AclRule::None {
        return Ok(ctx);
    }
    let id = ctx.agent.resolve_token(&ctx.token_secret())?;
    match rule {
        AclRule::None | AclRule::Handler => {}
        AclRule::Global(r, a) => id.require(r, a, "")?,
        AclRule::Param(r, a, i) => {
            let seg = ctx.param(i).to_string();
            id.require(r, a, &seg)?
        }
        AclRule::AgentNode(a) => {
            let node = ctx.agent.node_name.clone();
            id.require(Resource::Agent, a, &node)?
        }
    }
    ctx.identity = Some(id);
    Ok(ctx)
}

/// Consul's metric name for an endpoint: `consul.http.GET.v1.kv._`.
fn metric_name(method: &Method, path: &str) -> &'static str {
    let mut name = format!("consul.http.{method}");
    for seg in path.trim_matches('/').split('/') {
        name.push('.');
        if seg.starts_with('{') {
            name.push('_');
        } else {
            name.push_str(seg);
        }
    }
    // Built once per route when the router is built; lives as long as the process.
    Box::leak(name.into_boxed_str())
}

/// Builds the HTTP API from [`routes`]: the direct table of [`Api`] and the
/// axum router behind it, from the same list.
pub fn api(agent: Arc<Agent>) -> Api {
    let mut by_path: BTreeMap<&'static str, Vec<Route>> = BTreeMap::new();
    let all = routes();
    let exact: std::collections::BTreeSet<&str> = all.iter().map(|r| r.path).collect();
    let mut redirects: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for r in all {
        // `/v1/x/{param}` also answers `/v1/x/` (empty parameter, the handler's
        // own "Missing ..." error), and `/v1/x` redirects there, like Go's mux.
        let last_is_param = r.path.ends_with('}');
        if let (Some(pos), true) = (r.path.rfind("/{"), last_is_param) {
            let with_slash: &'static str = &r.path[..=pos];
            let bare = &r.path[..pos];
            let dup = by_path
                .get(with_slash)
                .is_some_and(|v| v.iter().any(|x| x.method == r.method));
            if !exact.contains(with_slash) && !dup {
                by_path.entry(with_slash).or_default().push(Route {
                    method: r.method.clone(),
                    path: with_slash,
                    acl: r.acl,
                    handler: r.handler,
                });
            }
            if !exact.contains(bare) {
                redirects.insert(bare.to_string());
            }
        }
        by_path.entry(r.path).or_default().push(r);
    }
    let mut router = Router::new();
    let mut direct = matchit::Router::new();
    let mut direct_failed = None;
    for (path, routes) in by_path {
        let mut allow: Vec<String> = vec!["OPTIONS".to_string()];
        let mut mr: MethodRouter<Arc<Agent>> = MethodRouter::new();
        let mut entries = Vec::with_capacity(routes.len());
        for r in routes {
            allow.push(r.method.to_string());
            let handler = r.handler;
            let rule = r.acl;
            // Computed once per route when the router is built.
            let metric = metric_name(&r.method, r.path);
            entries.push(DirectRoute {
                method: r.method.clone(),
                handler,
                rule,
                metric,
            });
            mr = mr.merge(on(
                method_filter(&r.method),
                move |AxState(agent): AxState<Arc<Agent>>, params: RawPathParams, req: Request| {
                    let params: Vec<String> = params.iter().map(|(_, v)| v.to_string()).collect();
                    let peer = req.extensions().get::<Peer>().map(|p| p.0);
                    dispatch(agent, handler, rule, metric, params, peer, req)
                },
            ));
        }
        let allow_value = allow.join(",");
        let allow_fallback = allow_value.clone();
        let allow_direct = allow_value.clone();
        mr = mr
            .on(MethodFilter::OPTIONS, move || {
                let allow = allow_value.clone();
                async move { options_response(&allow) }
            })
            .fallback(move |req: Request| {
                let allow = allow_fallback.clone();
                async move { method_not_allowed(req.method(), &allow) }
            });
        router = router.route(path, mr);
        let direct_path = DirectPath {
            routes: entries,
            allow: allow_direct,
        };
        if let Err(e) = direct.insert(path, Some(direct_path)) {
            direct_failed.get_or_insert(format!("{path}: {e}"));
        }
    }
    for bare in redirects {
        if let Err(e) = direct.insert(bare.as_str(), None) {
            direct_failed.get_or_insert(format!("{bare}: {e}"));
        }
        let target = format!("{bare}/");
        router = router.route(
            &bare,
            axum::routing::any(move |req: Request| {
                let target = target.clone();
                async move { redirect_to(&target, req.uri().query()) }
            }),
        );
    }
    // (The content path was checked when the configuration was read.)
    let ui = agent.config.ui_enabled().then(|| {
        agent
            .config
            .ui_content_path()
            .unwrap_or_else(|_| "/ui/".into())
    });
    let root = ui.clone();
    let router: Router = ui::add_routes(router, ui)
        .route(
            "/",
            axum::routing::get(move || async move {
                if let Some(path) = &root {
                    redirect_to(path, None)
                } else {
                    (
                        StatusCode::OK,
                        "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.",
                    )
                        .into_response()
                }
            }),
        )
        .fallback(|req: Request| async move { unknown_path(req.uri().path()) })
        .layer(axum::middleware::from_fn(check_path))
        .with_state(agent.clone());
    Api {
        inner: Arc::new(ApiInner {
            agent,
            router,
            // axum accepted these very paths, and matchit is what it matches
            // with, so this cannot fail; if it ever did, everything would take
            // the router's way (answers unchanged, only slower).
            direct: match direct_failed {
                None => Some(direct),
                Some(why) => {
                    tracing::error!(
                        "HTTP API: direct route table not built ({why}); using the router for every request"
                    );
                    None
                }
            },
        }),
        peer: None,
    }
}

/// One path of the direct table of [`Api`]: its endpoints and the methods
/// it allows (`OPTIONS` first, as the router states them).
struct DirectPath {
    routes: Vec<DirectRoute>,
    allow: String,
}

/// What the direct table answers for a request.
enum Direct<'a> {
    /// The endpoint and its path parameters.
    Endpoint(&'a DirectRoute, Vec<String>),
    /// `OPTIONS`: the methods allowed.
    Options(&'a str),
    /// A method the path does not have: 405 with the methods allowed.
    NotAllowed(&'a str),
}

/// One endpoint of the direct table of [`Api`].
struct DirectRoute {
    method: Method,
    handler: Handler,
    rule: AclRule,
    metric: &'static str,
}

/// The HTTP API as a hyper service. A request for one of [`routes`], with its
/// exact method (HEAD as GET, without the body) and a path whose decoded form
/// is clean and matches the route, goes straight to [`dispatch`]; `OPTIONS`
/// and 405s of those paths are answered here too. Everything else (redirects
/// to a clean path or to `/x/`, the UI, unknown paths, a `%2F` inside a
/// one-segment parameter) goes through the axum router, which answers those
/// as it always has. Both ways end in the same `dispatch`, so an endpoint
/// answers the same either way; the direct way skips the router's
/// per-request layers (boxed route services, the path middleware,
/// extractors), which a write waking thousands of blocking queries otherwise
/// pays for thousands of times.
///
/// Each connection's copy knows the client's address (for
/// `http_config.allow_write_http_from`).
#[derive(Clone)]
pub struct Api {
    inner: Arc<ApiInner>,
    peer: Option<std::net::IpAddr>,
}

struct ApiInner {
    agent: Arc<Agent>,
    router: Router,
    /// `None` entries are paths the router redirects.
    direct: Option<matchit::Router<Option<DirectPath>>>,
}

impl Api {
    /// The direct answer for a request (its endpoint, its `OPTIONS`, its
    /// 405), if the path is one of the API's and needs nothing the router
    /// does first.
    fn direct(&self, method: &Method, path: &str) -> Option<Direct<'_>> {
        // Routes match the decoded path, as Go's mux matches `URL.Path`: an
        // escape in a fixed segment (`/v1/agent/s%65lf`) names the same
        // endpoint, and a parameter is decoded once. A path that does not
        // decode to UTF-8, holds a control character or is not in its clean
        // form takes the router's way (its 400 or redirect, as `check_path`
        // decides); so does one whose decoded form matches no route (a `%2F`
        // inside a one-segment parameter, which the router matches raw).
        // Without `%` the path is its own decoded form, and the URI parser
        // admits no control characters.
        if !path.starts_with("/v1/") {
            return None;
        }
        let decoded = if path.contains('%') {
            let d = String::from_utf8(percent_decode(path)).ok()?;
            if d.chars().any(char::is_control) {
                return None;
            }
            std::borrow::Cow::Owned(d)
        } else {
            std::borrow::Cow::Borrowed(path)
        };
        let path = decoded.as_ref();
        if clean_form(path) != path {
            return None;
        }
        let found = self.inner.direct.as_ref()?.at(path).ok()?;
        // `None`: a path the router redirects to its `/` form.
        let entry = found.value.as_ref()?;
        if let Some(route) = entry.routes.iter().find(|r| r.method == method) {
            let params = found.params.iter().map(|(_, v)| v.to_string()).collect();
            return Some(Direct::Endpoint(route, params));
        }
        Some(if method == Method::OPTIONS {
            Direct::Options(&entry.allow)
        } else {
            Direct::NotAllowed(&entry.allow)
        })
    }
}

impl<B> hyper::service::Service<hyper::Request<B>> for Api
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Response, std::convert::Infallible>>;

    fn call(&self, req: hyper::Request<B>) -> Self::Future {
        // Nothing configured (the usual case): no copy of the policy taken.
        let policy = {
            let p = self.inner.agent.http_policy.read();
            (!p.is_empty()).then(|| p.clone())
        };
        let Some(policy) = policy else {
            return self.answer(req);
        };
        // `http_config`: blocked endpoints first, then writes from outside
        // `allow_write_http_from` (Consul checks the method is allowed in
        // between; an unknown method is refused here too, as a write), and
        // the configured headers on every answer.
        let decoded;
        let path = match percent_decode_if_needed(req.uri().path()) {
            Some(d) => {
                decoded = d;
                decoded.as_str()
            }
            None => req.uri().path(),
        };
        if path.starts_with("/v1/") && policy.blocks(path) {
            tracing::warn!(path, "request refused: {}", policy::BLOCKED);
            let r = policy.refusal(StatusCode::FORBIDDEN, policy::BLOCKED);
            return Box::pin(std::future::ready(Ok(r)));
        }
        if path.starts_with("/v1/") && !policy.write_allowed(req.method(), self.peer) {
            let r = policy.refusal(StatusCode::FORBIDDEN, policy::RESTRICTED);
            return Box::pin(std::future::ready(Ok(r)));
        }
        let fut = self.answer(req);
        Box::pin(async move {
            let mut r = fut.await?;
            policy.decorate(&mut r);
            Ok(r)
        })
    }
}

/// A path with its escapes decoded, when it has any and they decode to UTF-8.
fn percent_decode_if_needed(path: &str) -> Option<String> {
    if !path.contains('%') {
        return None;
    }
    String::from_utf8(percent_decode(path)).ok()
}

impl Api {
    /// This connection's copy, for a client at `peer`.
    pub fn for_peer(&self, peer: std::net::IpAddr) -> Api {
        Api {
            inner: self.inner.clone(),
            peer: Some(peer),
        }
    }

    fn answer<B>(
        &self,
        req: hyper::Request<B>,
    ) -> BoxFuture<'static, Result<Response, std::convert::Infallible>>
    where
        B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        // HEAD is the GET endpoint without the body, as the router serves it.
        let head = req.method() == Method::HEAD;
        let method = if head { &Method::GET } else { req.method() };
        match self.direct(method, req.uri().path()) {
            Some(Direct::Endpoint(route, params)) => {
                let fut = dispatch(
                    self.inner.agent.clone(),
                    route.handler,
                    route.rule,
                    route.metric,
                    params,
                    self.peer,
                    req.map(Body::new),
                );
                return Box::pin(async move {
                    let r = fut.await;
                    Ok(if head { without_body(r) } else { r })
                });
            }
            Some(Direct::Options(allow)) => {
                return Box::pin(std::future::ready(Ok(options_response(allow))));
            }
            Some(Direct::NotAllowed(allow)) => {
                let r = method_not_allowed(req.method(), allow);
                return Box::pin(std::future::ready(Ok(r)));
            }
            None => {}
        }
        let router = self.inner.router.clone();
        let mut req = req;
        if let Some(peer) = self.peer {
            // For the router's handlers (the direct path takes it as is).
            req.extensions_mut().insert(Peer(peer));
        }
        Box::pin(async move {
            use tower::ServiceExt;
            router.oneshot(req).await
        })
    }
}

/// Answers at least this long are gzipped for a client that accepts gzip
/// (smaller ones would cost more to compress than they save; Consul
/// compresses every answer, which clients cannot tell apart).
const GZIP_MIN: u64 = 1400;

/// Whether the request's `Accept-Encoding` takes gzip (or `*`) with a
/// q-value above 0.
fn accepts_gzip(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
        })
}

/// `r` gzipped, when its body is whole (not a stream), long enough and not
/// already encoded; otherwise `r` as it is.
async fn gzipped(r: Response) -> Response {
    use axum::body::HttpBody as _;
    use std::io::Write as _;
    let long = r.body().size_hint().exact().is_some_and(|n| n >= GZIP_MIN);
    if !long || r.headers().contains_key(header::CONTENT_ENCODING) {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return ApiError::internal(format!("reading the answer: {e}")).into_response(),
    };
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    match enc.write_all(&bytes).and_then(|()| enc.finish()) {
        Ok(gz) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            Response::from_parts(parts, Body::from(gz))
        }
        Err(_) => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// The answer to a HEAD request: the GET answer's head, its length stated.
fn without_body(r: Response) -> Response {
    use axum::body::HttpBody as _;
    let (mut parts, body) = r.into_parts();
    if !parts.headers.contains_key(header::CONTENT_LENGTH)
        && let Some(n) = body.size_hint().exact()
    {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    Response::from_parts(parts, Body::empty())
}

fn redirect_to(target: &str, query: Option<&str>) -> Response {
    let loc = match query {
        Some(q) if !q.is_empty() => format!("{target}?{q}"),
        _ => target.to_string(),
    };
    let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
    if let Ok(v) = HeaderValue::from_str(&loc) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn unknown_path(path: &str) -> Response {
    let msg = if path.contains("/v1/") {
        "Invalid URL path: not a recognized HTTP API endpoint\n"
    } else {
        "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
    };
    let mut r = (StatusCode::NOT_FOUND, msg).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Refuses paths with unprintable characters (400, empty body) and redirects
/// non-clean paths (`//`, `/./`, `/../`) to their clean form, as Consul's HTTP
/// stack does, before any endpoint sees them.
async fn check_path(req: Request, next: axum::middleware::Next) -> Response {
    match path_verdict(req.uri().path(), req.uri().query()) {
        Some(r) => r,
        None => next.run(req).await,
    }
}

/// What [`check_path`] answers for a path instead of the endpoint: `None`
/// for a clean one.
fn path_verdict(raw: &str, query: Option<&str>) -> Option<Response> {
    let decoded = percent_decode_path(raw);
    if decoded.chars().any(|c| c.is_control()) {
        return Some(StatusCode::BAD_REQUEST.into_response());
    }
    let cleaned = clean_form(&decoded);
    if cleaned != decoded {
        let encoded: String = cleaned
            .split('/')
            .map(|seg| {
                form_urlencoded::byte_serialize(seg.as_bytes())
                    .collect::<String>()
                    .replace('+', "%20")
            })
            .collect::<Vec<_>>()
            .join("/");
        return Some(redirect_to(&encoded, query));
    }
    None
}

/// A decoded path in its clean form (no `//`, `/./`, `/../`; a trailing
/// slash kept).
fn clean_form(decoded: &str) -> String {
    let cleaned = crate::http::kv::clean_path(decoded);
    if decoded.ends_with('/') && cleaned != "/" {
        format!("{cleaned}/")
    } else {
        cleaned
    }
}

/// `p` with its `%XX` escapes decoded (a `%` not followed by two hex digits
/// stays as it is), invalid UTF-8 replaced.
fn percent_decode_path(p: &str) -> String {
    String::from_utf8_lossy(&percent_decode(p)).into_owned()
}

fn percent_decode(p: &str) -> Vec<u8> {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn options_response(allow: &str) -> Response {
    let mut r = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

fn method_not_allowed(method: &Method, allow: &str) -> Response {
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    r
}

/// Header name constants.
pub mod hdr {
    use super::HeaderName;
    /// `X-Consul-Default-ACL-Policy`.
    pub const DEFAULT_ACL_POLICY: HeaderName =
        HeaderName::from_static("x-consul-default-acl-policy");
    /// `X-Consul-ContentHash`.
    pub const CONTENT_HASH: HeaderName = HeaderName::from_static("x-consul-contenthash");
    /// `X-Consul-Index`.
    pub const INDEX: HeaderName = HeaderName::from_static("x-consul-index");
    /// `X-Consul-KnownLeader`.
    pub const KNOWN_LEADER: HeaderName = HeaderName::from_static("x-consul-knownleader");
    /// `X-Consul-LastContact`.
    pub const LAST_CONTACT: HeaderName = HeaderName::from_static("x-consul-lastcontact");
    /// `X-Consul-Effective-Consistency`.
    pub const EFFECTIVE_CONSISTENCY: HeaderName =
        HeaderName::from_static("x-consul-effective-consistency");
}

/// Parses a boolean-ish flag value (`?passing`, `?recurse=true`): present with
/// no value or a true value is true.
pub fn flag_value(q: &Query, k: &str, err: &str) -> Result<bool, ApiError> {
    match q.get(k) {
        None => Ok(false),
        Some("") => Ok(true),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => Ok(true),
            "0" | "f" | "false" => Ok(false),
            _ => Err(ApiError::bad_request(err.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{LogUrl, hdr};

    #[tokio::test]
    async fn api_routes_go_direct_unless_the_router_must_answer() {
        use axum::http::Method;
        let api = super::api(crate::Agent::new(
            crate::config::Config::default(),
            Default::default(),
        ));
        let direct = |m: Method, p: &str| match api.direct(&m, p) {
            Some(super::Direct::Endpoint(r, params)) => Some((r.method.clone(), r.metric, params)),
            _ => None,
        };
        // Routes match the decoded path; a parameter is decoded once.
        for (m, p, route, params) in [
            (
                Method::GET,
                "/v1/kv/a/b",
                "consul.http.GET.v1.kv._",
                &["a/b"][..],
            ),
            (Method::PUT, "/v1/kv/a", "consul.http.PUT.v1.kv._", &["a"]),
            (
                Method::GET,
                "/v1/status/leader",
                "consul.http.GET.v1.status.leader",
                &[],
            ),
            (
                Method::GET,
                "/v1/kv/a%20b",
                "consul.http.GET.v1.kv._",
                &["a b"],
            ),
            (
                Method::GET,
                "/v1/kv/a%2Fb",
                "consul.http.GET.v1.kv._",
                &["a/b"],
            ),
            (
                Method::GET,
                "/v1/kv/a%252F",
                "consul.http.GET.v1.kv._",
                &["a%2F"],
            ),
            (Method::GET, "/v1/k%76/x", "consul.http.GET.v1.kv._", &["x"]),
            (
                Method::GET,
                "/v1/kv/caf%C3%A9",
                "consul.http.GET.v1.kv._",
                &["café"],
            ),
            (
                Method::GET,
                "/v1/agent/s%65lf",
                "consul.http.GET.v1.agent.self",
                &[],
            ),
        ] {
            let params: Vec<String> = params.iter().map(|p| p.to_string()).collect();
            assert_eq!(direct(m.clone(), p), Some((m, route, params)), "{p}");
        }
        // OPTIONS and a method the path does not have are answered directly.
        assert!(matches!(
            api.direct(&Method::OPTIONS, "/v1/k%76/a"),
            Some(super::Direct::Options(_))
        ));
        assert!(matches!(
            api.direct(&Method::POST, "/v1/status/leader"),
            Some(super::Direct::NotAllowed("OPTIONS,GET"))
        ));
        // What only the router answers (or answers first).
        for (m, p) in [
            (Method::GET, "/v1//kv/a"),
            (Method::GET, "/v1/kv/a/../b"),
            (Method::GET, "/v1/kv/a/./b"),
            (Method::GET, "/v1/kv/a%2F..%2Fb"),
            (Method::GET, "/v1/kv/a%0Ab"),
            (Method::GET, "/v1/kv/%FF"),
            (Method::GET, "/v1/status"),
            (Method::GET, "/v1/no-such-endpoint"),
            (Method::GET, "/ui/"),
            (Method::GET, "/"),
        ] {
            assert_eq!(direct(m.clone(), p), None, "{m} {p}");
        }
    }

    /// A request the API's table answers directly gets the very answer the
    /// router would give it (status, every header, body).
    #[tokio::test]
    async fn direct_and_routed_answers_are_alike() {
        use axum::body::Body;
        use axum::http::{Method, Request};
        use hyper::service::Service as _;
        use tower::ServiceExt as _;
        let api = super::api(crate::Agent::new(
            crate::config::Config::default(),
            Default::default(),
        ));
        for uri in [
            "/v1/kv/missing",
            "/v1/kv/?keys",
            "/v1/catalog/services",
            "/v1/catalog/nodes?pretty",
            "/v1/health/service/web?passing",
            "/v1/acl/token/self",
        ] {
            let path = uri.split('?').next().unwrap_or_default();
            assert!(api.direct(&Method::GET, path).is_some(), "{uri}");
            for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::PATCH] {
                let req = || {
                    Request::builder()
                        .method(method.clone())
                        .uri(uri)
                        .body(Body::empty())
                        .expect("request")
                };
                let head = method == Method::HEAD;
                let answer = |r: axum::response::Response| async move {
                    let (mut parts, body) = r.into_parts();
                    let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
                    // The router states a body's length itself and hyper
                    // writes it for both on the wire (tests/it/agent_api.rs
                    // compares there); a HEAD answer must state it.
                    if !head {
                        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
                    }
                    (parts.status, parts.headers, body)
                };
                let d = answer(api.call(req()).await.expect("direct")).await;
                let r = answer(
                    api.inner
                        .router
                        .clone()
                        .oneshot(req())
                        .await
                        .expect("routed"),
                )
                .await;
                assert_eq!(d, r, "{method} {uri}");
                if method == Method::OPTIONS || method == Method::PATCH {
                    assert!(
                        d.1.contains_key(axum::http::header::ALLOW),
                        "{method} {uri}"
                    );
                    continue;
                }
                assert!(d.1.contains_key(hdr::DEFAULT_ACL_POLICY), "{uri}");
                if head {
                    assert!(d.2.is_empty(), "{uri}");
                    assert!(
                        d.1.contains_key(axum::http::header::CONTENT_LENGTH),
                        "{uri}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn a_blocking_read_answers_in_the_map_it_allocated_before_waiting() {
        use super::*;
        let agent = crate::Agent::new(crate::config::Config::default(), Default::default());
        let ctx = Ctx {
            identity: None,
            agent,
            method: Method::GET,
            params: vec![],
            query: Query::parse(""),
            raw_query: String::new(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            answer_headers: parking_lot::Mutex::new(None),
            peer: None,
        };
        let opts = |index| QueryOptions {
            index,
            wait: Duration::from_secs(1),
            consistency: Consistency::Default,
            filter: None,
        };
        // Not blocking: nothing is allocated ahead.
        let (idx, ()) = blocking(&ctx, &opts(0), &[Table::Kv], |_| (5, ())).await;
        assert!(ctx.answer_headers.lock().is_none());
        assert_eq!(idx, 5);
        // Blocking (the index has already moved, so it answers at once): the
        // map is there before the answer and the answer takes it.
        blocking(&ctx, &opts(4), &[Table::Kv], |_| (5, ())).await;
        let ahead = ctx.answer_headers.lock().as_ref().map(HeaderMap::capacity);
        assert!(ahead.is_some_and(|c| c >= READ_ANSWER_HEADERS), "{ahead:?}");
        let r = json_read(&ctx, &opts(4), 5, &[1, 2]);
        assert!(ctx.answer_headers.lock().is_none());
        assert_eq!(r.headers().capacity(), ahead.unwrap_or_default());
        assert_eq!(r.headers()[hdr::INDEX], "5");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }

    fn logged(uri: &str) -> String {
        let uri: axum::http::Uri = uri.parse().expect("test URI");
        LogUrl(&uri).to_string()
    }

    #[test]
    fn log_url_hides_token_values_only() {
        assert_eq!(logged("/v1/kv/a"), "/v1/kv/a");
        assert_eq!(logged("/v1/kv/a?"), "/v1/kv/a");
        assert_eq!(
            logged("/v1/kv/a?token=s3cret&stale&index=7"),
            "/v1/kv/a?token=<hidden>&stale&index=7"
        );
        assert_eq!(logged("/v1/kv/a?TOKEN=x"), "/v1/kv/a?TOKEN=<hidden>");
        // Only a parameter named `token` with a value is hidden.
        assert_eq!(logged("/v1/kv/a?tokens=x&token"), "/v1/kv/a?tokens=x&token");
    }
}
