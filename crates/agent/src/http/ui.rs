//! The web UI: its static files under `/ui/` (built into the binary, no build
//! step) and the one API route it needs beyond Consul's, the connection
//! counts of this agent's terminating gateways.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meshgate_acl::{Access, Resource};
use serde_json::{Value, json};

use super::{AclRule, ApiResult, Ctx, Route, handler, json as json_response, route};
use crate::Agent;

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

fn serve(path: &str, head: bool) -> Response {
    let rel = path.trim_start_matches("/ui").trim_start_matches('/');
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
    let mut r = if head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(a.body))
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.ctype));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(a.body.len()));
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

/// Adds `/ui`, `/ui/` and `/ui/{*path}` to `router` when the UI is on.
pub(super) fn add_routes(
    router: Router<std::sync::Arc<Agent>>,
    enabled: bool,
) -> Router<std::sync::Arc<Agent>> {
    if !enabled {
        return router;
    }
    let files = |req: Request| async move {
        match *req.method() {
            Method::GET => serve(req.uri().path(), false),
            Method::HEAD => serve(req.uri().path(), true),
            _ => {
                let mut r =
                    (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n").into_response();
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
                r
            }
        }
    };
    router
        .route(
            "/ui",
            axum::routing::any(|| async { super::redirect_to("/ui/", None) }),
        )
        .route("/ui/", axum::routing::any(files))
        .route("/ui/{*path}", axum::routing::any(files))
}

pub(super) fn routes() -> Vec<Route> {
    vec![route(
        Method::GET,
        "/v1/internal/ui/gateway-metrics/{name}",
        AclRule::Param(Resource::Service, Access::Read, 0),
        handler!(gateway_metrics),
    )]
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
