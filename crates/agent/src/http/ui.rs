//! The web UI: its static files under `/ui/` or `ui_config.content_path`
//! (built into the binary, no build step), the two summaries Consul's UI
//! lists services and nodes with
//! (`/v1/internal/ui/services`, `/v1/internal/ui/nodes`), and the one API
//! route it needs beyond Consul's, the connection counts of this agent's
//! terminating gateways.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meshgate_acl::{Access, Resource};
use meshgate_config_entries::{ConfigEntry, TERMINATING_GATEWAY};
use meshgate_state::{State, Table};
use meshgate_types::catalog::{HealthCheck, Node, NodeService};
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    AclFilter, AclRule, ApiResult, Ctx, Route, blocking, handler, json as json_response, json_read,
    query_filter, route,
};
use crate::Agent;
use crate::filter::schema;

/// Service meta key under which `connect envoy -register` records its admin
/// endpoint (`ip:port`).
pub const ADMIN_META: &str = "meshgate-admin";

/// One built-in file: path under `/ui/`, content type, bytes.
struct Asset {
    path: &'static str,
    ctype: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($p:literal, $t:expr) => {
        Asset {
            path: $p,
            ctype: $t,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $p)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/live.js", JS),
    asset!("js/pages/services.js", JS),
    asset!("js/pages/nodes.js", JS),
    asset!("js/pages/gateways.js", JS),
    asset!("js/pages/kv.js", JS),
    asset!("js/pages/intentions.js", JS),
    asset!("js/pages/acl.js", JS),
    asset!("js/pages/config.js", JS),
];

/// The Content-Security-Policy of every UI file: only this origin's scripts
/// and styles; API calls to this origin.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The UI's files as this agent serves them: under `prefix`
/// (`ui_config.content_path`, `/ui/` by default), the page naming its
/// files under that prefix.
struct Files {
    prefix: String,
    index: axum::body::Bytes,
}

impl Files {
    fn new(prefix: String) -> Files {
        let page = ASSETS.first().map(|a| a.body).unwrap_or_default();
        let index = if prefix == "/ui/" {
            axum::body::Bytes::from_static(page)
        } else {
            let text = String::from_utf8_lossy(page).replace("\"/ui/", &format!("\"{prefix}"));
            axum::body::Bytes::from(text)
        };
        Files { prefix, index }
    }

    fn serve(&self, path: &str, head: bool) -> Response {
        let rel = path.strip_prefix(self.prefix.as_str()).unwrap_or_default();
        serve(rel, head, &self.index)
    }
}

fn serve(rel: &str, head: bool, index: &axum::body::Bytes) -> Response {
    let asset = ASSETS
        .iter()
        .find(|a| a.path == rel)
        // Client-side routes and unknown paths get the application itself,
        // except for missing files that look like assets.
        .or_else(|| {
            let looks_like_file = rel.starts_with("js/")
                || rel.ends_with(".js")
                || rel.ends_with(".css")
                || rel.ends_with(".svg");
            if looks_like_file {
                None
            } else {
                ASSETS.first()
            }
        });
    let Some(a) = asset else {
        let mut r = (StatusCode::NOT_FOUND, "not found\n").into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return r;
    };
    let body = if std::ptr::eq(a, &ASSETS[0]) {
        index.clone()
    } else {
        axum::body::Bytes::from_static(a.body)
    };
    let length = body.len();
    let mut r = if head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(body))
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.ctype));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    // Built into the binary: a new binary may bring new files.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Adds the UI's routes to `router` when the UI is on: `content_path`
/// (`/ui/` by default) and everything under it, and the same path without
/// its final `/` redirecting to it.
pub(super) fn add_routes(
    router: Router<std::sync::Arc<Agent>>,
    content_path: Option<String>,
) -> Router<std::sync::Arc<Agent>> {
    let Some(prefix) = content_path else {
        return router;
    };
    let files = std::sync::Arc::new(Files::new(prefix.clone()));
    let serve_files = move |req: Request| {
        let files = files.clone();
        async move {
            match *req.method() {
                Method::GET => files.serve(req.uri().path(), false),
                Method::HEAD => files.serve(req.uri().path(), true),
                _ => {
                    let mut r =
                        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n").into_response();
                    r.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
                    r
                }
            }
        }
    };
    let bare = prefix.trim_end_matches('/').to_string();
    let target = prefix.clone();
    router
        // As Consul's agent with its UI on: no crawling.
        .route(
            "/robots.txt",
            axum::routing::get(|| async { "User-agent: *\nDisallow: /\n" }),
        )
        .route(
            &bare,
            axum::routing::any(move || {
                let target = target.clone();
                async move { super::redirect_to(&target, None) }
            }),
        )
        .route(&prefix, axum::routing::any(serve_files.clone()))
        .route(
            &format!("{prefix}{{*path}}"),
            axum::routing::any(serve_files),
        )
}

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::GET,
            "/v1/internal/ui/gateway-metrics/{name}",
            AclRule::Param(Resource::Service, Access::Read, 0),
            handler!(gateway_metrics),
        ),
        route(
            Method::GET,
            "/v1/internal/ui/services",
            AclRule::Handler,
            handler!(services),
        ),
        route(
            Method::GET,
            "/v1/internal/ui/nodes",
            AclRule::Handler,
            handler!(nodes),
        ),
    ]
}

/// One node in `/v1/internal/ui/nodes` (Consul's `NodeInfo`): the node, its
/// services and all its checks.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeInfo<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    tagged_addresses: &'a Option<BTreeMap<String, String>>,
    meta: &'a Option<BTreeMap<String, String>>,
    services: Vec<&'a NodeService>,
    checks: Vec<&'a HealthCheck>,
}

/// `GET /v1/internal/ui/nodes`: every node with its services and checks, in
/// one read (what Consul's UI lists nodes with). Blocking; a node needs
/// `node:read`, a service and its checks `service:read`; `?filter` selects
/// nodes (`structs.NodeInfo` selectors: `Node`, `Meta`, `Services`, `Checks`,
/// ...).
async fn nodes(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let filter = query_filter(&opts, schema::internal_ui_nodes())?;
    let acl = std::sync::Mutex::new(AclFilter::new(&ctx)?);
    let tables = [Table::Nodes, Table::Services, Table::Checks];
    let (idx, body) = blocking(&ctx, &opts, &tables, |st| {
        let mut guard = acl.lock().unwrap_or_else(|e| e.into_inner());
        let acl = &mut *guard;
        acl.removed = false;
        let mut list = Vec::new();
        for node in st.nodes().1 {
            if !acl.node_service(&node.node, None) {
                continue;
            }
            let services: Vec<&NodeService> = st
                .node_services(&node.node)
                .1
                .map(|(_, svcs)| svcs)
                .unwrap_or_default()
                .into_iter()
                .filter(|s| acl.keep(acl.id.allows(Resource::Service, Access::Read, &s.service)))
                .collect();
            let checks: Vec<&HealthCheck> = st
                .node_checks(&node.node)
                .1
                .into_iter()
                .filter(|c| {
                    c.service_id.is_empty()
                        || acl.keep(
                            acl.id
                                .allows(Resource::Service, Access::Read, &c.service_name),
                        )
                })
                .collect();
            let info = NodeInfo {
                id: &node.id,
                node: &node.node,
                address: &node.address,
                tagged_addresses: &node.tagged_addresses,
                meta: &node.meta,
                services,
                checks,
            };
            let selected = filter
                .as_ref()
                .is_none_or(|f| serde_json::to_value(&info).is_ok_and(|v| f.matches(&v)));
            if selected {
                list.push(info);
            }
        }
        let t = st.tables();
        // Turned into a value here: the list borrows from the state.
        let value = serde_json::to_value(&list).unwrap_or(Value::Null);
        (t.nodes.max(t.services).max(t.checks), value)
    })
    .await;
    let mut r = json_read(&ctx, &opts, idx, &body);
    acl.lock().unwrap_or_else(|e| e.into_inner()).mark(&mut r);
    Ok(r)
}

/// One service in `/v1/internal/ui/services`, with Consul's field names and
/// order (`Tags`, `Nodes` and `ExternalSources` are `null` when empty, as
/// Consul's nil lists are).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceSummary {
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    name: String,
    datacenter: String,
    tags: Option<Vec<String>>,
    nodes: Option<Vec<String>>,
    external_sources: Option<Vec<String>>,
    instance_count: usize,
    checks_passing: usize,
    checks_warning: usize,
    checks_critical: usize,
    gateway_config: GatewayConfig,
    transparent_proxy: bool,
    connect_native: bool,
    connected_with_proxy: bool,
    connected_with_gateway: bool,
    /// Check statuses by (node, check ID): a node's checks count once per
    /// node, and a sidecar's checks count for the service it serves.
    #[serde(skip)]
    checks: BTreeMap<(String, String), String>,
    #[serde(skip)]
    transparent_proxy_set: bool,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct GatewayConfig {
    #[serde(skip_serializing_if = "is_zero")]
    associated_service_count: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Appends `v` to a list kept without duplicates.
fn push_unique(list: &mut Option<Vec<String>>, v: &str) {
    let list = list.get_or_insert_with(Vec::new);
    if !list.iter().any(|x| x == v) {
        list.push(v.to_string());
    }
}

/// Consul's service summary over the instances `keep` lets through (given
/// the node, the instance and its checks, node checks included): one entry
/// per service name, sorted by name.
fn summarize(
    st: &State,
    mut keep: impl FnMut(&Node, &NodeService, &[&HealthCheck]) -> bool,
) -> Vec<ServiceSummary> {
    let mut sums: BTreeMap<String, ServiceSummary> = BTreeMap::new();
    fn entry<'a>(
        sums: &'a mut BTreeMap<String, ServiceSummary>,
        name: &str,
    ) -> &'a mut ServiceSummary {
        sums.entry(name.to_string())
            .or_insert_with(|| ServiceSummary {
                name: name.to_string(),
                ..ServiceSummary::default()
            })
    }
    let mut has_proxy: BTreeSet<String> = BTreeSet::new();
    for (node, svc) in st.all_service_instances() {
        let checks: Vec<_> = st
            .node_checks(&node.node)
            .1
            .into_iter()
            .filter(|c| c.service_id.is_empty() || c.service_id == svc.id)
            .collect();
        if !keep(node, svc, &checks) {
            continue;
        }
        if svc.kind == "connect-proxy" && !svc.proxy.destination_service_name.is_empty() {
            let dest = &svc.proxy.destination_service_name;
            has_proxy.insert(dest.clone());
            let d = entry(&mut sums, dest);
            for c in &checks {
                d.checks
                    .insert((node.node.clone(), c.check_id.clone()), c.status.clone());
            }
            // Transparent only while every proxy of it is.
            let transparent = svc.proxy.mode == "transparent";
            if transparent && !d.transparent_proxy_set {
                d.transparent_proxy = true;
            }
            if !transparent {
                d.transparent_proxy = false;
            }
            d.transparent_proxy_set = true;
        }
        let sum = entry(&mut sums, &svc.service);
        push_unique(&mut sum.nodes, &node.node);
        sum.kind = svc.kind.clone();
        sum.datacenter = node.datacenter.clone();
        sum.instance_count += 1;
        sum.connect_native |= svc.connect.native;
        for t in &svc.tags {
            push_unique(&mut sum.tags, t);
        }
        if let Some(source) = svc.meta.get("external-source").filter(|s| !s.is_empty()) {
            push_unique(&mut sum.external_sources, source);
        }
        for c in &checks {
            sum.checks
                .insert((node.node.clone(), c.check_id.clone()), c.status.clone());
        }
    }
    // Terminating gateways and the services linked to them.
    let mut gateways_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut linked_count: BTreeMap<String, usize> = BTreeMap::new();
    for e in st.config_entries(TERMINATING_GATEWAY).1 {
        let ConfigEntry::TerminatingGateway(gw) = e else {
            continue;
        };
        for link in st.gateway_services(&gw.name).1 {
            gateways_of
                .entry(link.service.name.clone())
                .or_default()
                .push(gw.name.clone());
            *linked_count.entry(gw.name.clone()).or_default() += 1;
        }
    }
    let has_instances: BTreeSet<String> = sums.keys().cloned().collect();
    let mut out: Vec<ServiceSummary> = sums.into_values().collect();
    for sum in &mut out {
        if let Some(nodes) = &mut sum.nodes {
            nodes.sort();
        }
        if let Some(tags) = &mut sum.tags {
            tags.sort();
        }
        for status in sum.checks.values() {
            match status.as_str() {
                "passing" => sum.checks_passing += 1,
                "warning" => sum.checks_warning += 1,
                "critical" => sum.checks_critical += 1,
                _ => {}
            }
        }
        sum.connected_with_proxy = has_proxy.contains(&sum.name);
        sum.connected_with_gateway = sum.instance_count > 0
            && gateways_of
                .get(&sum.name)
                .is_some_and(|gws| gws.iter().any(|g| has_instances.contains(g)));
        sum.gateway_config.associated_service_count =
            linked_count.get(&sum.name).copied().unwrap_or(0);
    }
    out
}

/// `GET /v1/internal/ui/services`: Consul's summary of every service (what
/// its UI's service list reads): instance count, nodes, tags, the checks of
/// its instances and their sidecars by status, whether a sidecar or a
/// terminating gateway serves it. Blocking; filtered by `node:read` and
/// `service:read` as the health endpoints are; `?filter` selects instances
/// before they are summed up, with the selectors of `/v1/health/service`
/// (`Node`, `Service`, `Checks`), as Consul's service dump does.
async fn services(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let filter = query_filter(&opts, schema::health_service_entries())?;
    let acl = std::sync::Mutex::new(AclFilter::new(&ctx)?);
    let tables = [Table::Nodes, Table::Services, Table::Checks, Table::Config];
    let (idx, list) = blocking(&ctx, &opts, &tables, |st| {
        let mut acl = acl.lock().unwrap_or_else(|e| e.into_inner());
        acl.removed = false;
        let list = summarize(st, |node, svc, checks| {
            acl.node_service(&node.node, Some(&svc.service))
                && filter.as_ref().is_none_or(|f| {
                    f.matches(&json!({"Node": node, "Service": svc, "Checks": checks}))
                })
        });
        let t = st.tables();
        let idx = t.nodes.max(t.services).max(t.checks).max(t.config);
        (idx, list)
    })
    .await;
    let mut r = json_read(&ctx, &opts, idx, &list);
    acl.lock().unwrap_or_else(|e| e.into_inner()).mark(&mut r);
    Ok(r)
}

/// `GET /v1/internal/ui/gateway-metrics/:name`: for every instance of the
/// terminating gateway `name` registered with *this* agent that recorded its
/// admin endpoint, the Prometheus text of its `/metrics` (or why it could not
/// be read). Only addresses the gateway registered itself are fetched, so the
/// route cannot be pointed elsewhere.
async fn gateway_metrics(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    let targets: Vec<(String, String)> = ctx
        .agent
        .local
        .services()
        .into_iter()
        .filter(|s| s.svc.service == name && s.svc.kind == "terminating-gateway")
        .filter_map(|s| {
            let addr = s.svc.meta.get(ADMIN_META)?.clone();
            Some((s.svc.id.clone(), addr))
        })
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| super::ApiError::internal(format!("http client: {e}")))?;
    let mut out = Vec::new();
    for (id, addr) in targets {
        let entry = match addr.parse::<SocketAddr>() {
            Err(_) => {
                json!({"ServiceID": id, "AdminAddr": addr, "Error": "not an ip:port address"})
            }
            Ok(sa) => match fetch(&client, sa).await {
                Ok(text) => json!({"ServiceID": id, "AdminAddr": addr, "Metrics": text}),
                Err(e) => json!({"ServiceID": id, "AdminAddr": addr, "Error": e}),
            },
        };
        out.push(entry);
    }
    Ok(json_response(&ctx, &Value::Array(out)))
}

async fn fetch(client: &reqwest::Client, addr: SocketAddr) -> Result<String, String> {
    let r = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .map_err(|e| format!("admin endpoint unreachable: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("admin endpoint answered {}", r.status()));
    }
    let text = r
        .text()
        .await
        .map_err(|e| format!("reading metrics: {e}"))?;
    // Only the proxy's own counters: nothing else travels back.
    Ok(text
        .lines()
        .filter(|l| l.starts_with("meshgate_proxy_"))
        .collect::<Vec<_>>()
        .join("\n"))
}
