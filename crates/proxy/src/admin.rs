//! The admin endpoint: `/ready`, `/metrics` (Prometheus text), `/config`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::debug;

/// What the admin endpoint shows.
pub trait AdminView: Send + Sync + 'static {
    /// `Ok` when the proxy serves; else why not.
    fn ready(&self) -> Result<(), String>;
    /// Prometheus text.
    fn metrics(&self) -> String;
    /// The current configuration as JSON (no secrets).
    fn config(&self) -> serde_json::Value;
}

fn respond(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

fn answer(view: &dyn AdminView, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        );
    }
    match req.uri().path() {
        "/ready" => match view.ready() {
            Ok(()) => respond(StatusCode::OK, "text/plain", "ready\n".into()),
            Err(e) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {e}\n"),
            ),
        },
        "/metrics" | "/stats/prometheus" => {
            respond(StatusCode::OK, "text/plain; version=0.0.4", view.metrics())
        }
        "/config" | "/config_dump" => {
            let text = serde_json::to_string_pretty(&view.config()).unwrap_or_default();
            respond(StatusCode::OK, "application/json", text + "\n")
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /ready, /metrics or /config\n".into(),
        ),
    }
}

/// Serves the admin endpoint on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, view: Arc<dyn AdminView>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let view = view.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = answer(view.as_ref(), &req);
                async move { Ok::<_, std::convert::Infallible>(r) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!("admin connection: {e}");
            }
        });
    }
}
