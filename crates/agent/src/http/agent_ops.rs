//! `/v1/agent/*` operations: maintenance, reload, leave, monitor, metrics, host,
//! version.

use axum::body::Body;
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use futures::StreamExt;
use meshgate_acl::{Access, Resource};
use meshgate_state::Command;
use meshgate_types::catalog::DeregisterRequest;

use super::agent::request_token;
use super::{AclRule, ApiError, ApiResult, Ctx, Route, empty, handler, json, route};
use crate::{COMPAT_VERSION, VERSION, monitor};

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::PUT,
            "/v1/agent/maintenance",
            AclRule::Handler,
            handler!(node_maintenance),
        ),
        route(
            Method::PUT,
            "/v1/agent/service/maintenance/{id}",
            AclRule::Handler,
            handler!(service_maintenance),
        ),
        route(
            Method::PUT,
            "/v1/agent/reload",
            AclRule::AgentNode(Access::Write),
            handler!(reload),
        ),
        route(
            Method::PUT,
            "/v1/agent/leave",
            AclRule::AgentNode(Access::Write),
            handler!(leave),
        ),
        route(
            Method::PUT,
            "/v1/agent/join/{address}",
            AclRule::AgentNode(Access::Write),
            handler!(join),
        ),
        route(
            Method::PUT,
            "/v1/agent/force-leave/{node}",
            AclRule::Global(Resource::Operator, Access::Write),
            handler!(force_leave),
        ),
        route(
            Method::GET,
            "/v1/agent/monitor",
            AclRule::AgentNode(Access::Read),
            handler!(monitor_logs),
        ),
        route(
            Method::GET,
            "/v1/agent/metrics",
            AclRule::AgentNode(Access::Read),
            handler!(metrics),
        ),
        route(
            Method::GET,
            "/v1/agent/metrics/stream",
            AclRule::AgentNode(Access::Read),
            handler!(metrics_stream),
        ),
        route(
            Method::GET,
            "/v1/agent/host",
            AclRule::Global(Resource::Operator, Access::Read),
            handler!(host),
        ),
        route(
            Method::GET,
            "/v1/agent/version",
            AclRule::None,
            handler!(version),
        ),
    ]
}

fn enable_flag(ctx: &Ctx) -> Result<bool, ApiError> {
    match ctx.query.get("enable") {
        None => Err(ApiError::bad_request("Missing value for enable")),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => Ok(true),
            "0" | "f" | "false" => Ok(false),
            _ => Err(ApiError::bad_request(format!(
                "Invalid value for enable: {v:?}"
            ))),
        },
    }
}

async fn node_maintenance(ctx: Ctx) -> ApiResult {
    let enable = enable_flag(&ctx)?;
    ctx.require(Resource::Node, Access::Write, &ctx.agent.node_name)?;
    let reason = ctx.query.get("reason").unwrap_or("").to_string();
    let token = request_token(&ctx);
    ctx.agent
        .set_maintenance(None, enable, &reason, &token)
        .await?;
    Ok(empty())
}

async fn service_maintenance(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    if id.is_empty() {
        return Err(ApiError::bad_request("Missing service ID"));
    }
    let enable = enable_flag(&ctx)?;
    let Some(svc) = ctx.agent.local.service(&id) else {
        return Err(ApiError::not_found(format!("Unknown service ID {id:?}")));
    };
    ctx.require(Resource::Service, Access::Write, &svc.svc.service)?;
    let reason = ctx.query.get("reason").unwrap_or("").to_string();
    let token = request_token(&ctx);
    ctx.agent
        .set_maintenance(Some(&id), enable, &reason, &token)
        .await?;
    Ok(empty())
}

async fn reload(ctx: Ctx) -> ApiResult {
    let warnings = ctx.agent.reload().await?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(empty())
}

async fn leave(ctx: Ctx) -> ApiResult {
    let agent = ctx.agent.clone();
    agent.leave_cluster().await;
    // Answer first, then stop: the client gets its 200.
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        tracing::info!("Graceful leave requested, shutting down");
        agent.request_shutdown();
    });
    Ok(empty())
}

/// `PUT /v1/agent/join/:address`: joins the cluster through the agent at
/// `address` (`host[:port]`, the server port; 8300 by default).
async fn join(ctx: Ctx) -> ApiResult {
    let raw = ctx.param(0).to_string();
    if ctx.query.has("wan") {
        return Err(ApiError::bad_request(
            "WAN join is not supported: meshgate runs a single datacenter",
        ));
    }
    let Some(c) = ctx.agent.store.cluster().cloned() else {
        return Err(ApiError::internal(
            "this agent runs with -dev (a single in-memory server): it has no cluster to join",
        ));
    };
    let addr = crate::join_target(&raw, ctx.agent.server_port());
    c.join_at(&addr)
        .await
        .map_err(|e| ApiError::internal(format!("Failed to join {addr}: {e}")))?;
    tracing::info!("join: contacted {addr}");
    Ok(empty())
}

async fn force_leave(ctx: Ctx) -> ApiResult {
    let node = ctx.param(0).to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request("Missing node name"));
    }
    if node.eq_ignore_ascii_case(&ctx.agent.node_name) {
        // The agent itself is alive; force-leave only affects failed members.
        return Ok(empty());
    }
    // `?wan`: the WAN pool. meshgate's is its servers, seen through the LAN
    // (a failed one leaves with a LAN force-leave), so a server has nothing
    // more to remove; a client has no WAN pool, as Consul says.
    if ctx.query.has("wan") {
        if !ctx.agent.config.server {
            return Err(ApiError::internal(
                "Must be a server to force-leave a node from the WAN",
            ));
        }
        return Ok(empty());
    }
    let known = ctx.agent.store.read().node(&node).is_some();
    if !known {
        return Err(ApiError::internal(format!(
            "agent: No node found with name '{node}'"
        )));
    }
    // A node without an agent (or whose agent is gone) is removed from the
    // catalog, as a server reaps a member that left; in a cluster, from the
    // raft membership too.
    let raft_id = ctx
        .agent
        .store
        .read()
        .node(&node)
        .map(|n| meshgate_consensus::node_id_from_uuid(&n.id));
    if let (Some(c), Some(id)) = (ctx.agent.store.cluster().cloned(), raft_id) {
        c.remove_member(id).await.map_err(ApiError::internal)?;
    }
    ctx.agent
        .store
        .write(Command::Deregister(DeregisterRequest {
            node,
            ..Default::default()
        }))
        .await?;
    Ok(empty())
}

async fn monitor_logs(ctx: Ctx) -> ApiResult {
    let level = ctx.query.get("loglevel").unwrap_or("info");
    let Some(min) = monitor::parse_level(level) else {
        return Err(ApiError::bad_request(format!("Unknown log level: {level}")));
    };
    let json_lines = ctx.query.has("logjson");
    let sub = monitor::subscribe(min);
    let mut stop = ctx.agent.shutdown_signal();
    let stream = futures::stream::unfold(sub, move |mut sub| async move {
        loop {
            match sub.rx.recv().await {
                Ok(line) => {
                    // Levels order TRACE > DEBUG > INFO > WARN > ERROR in tracing.
                    if line.level > min {
                        continue;
                    }
                    let mut text = if json_lines { line.json } else { line.text };
                    text.push('\n');
                    return Some((Ok::<_, std::io::Error>(bytes::Bytes::from(text)), sub));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    let stream = stream.take_until(async move { crate::stopped(&mut stop).await });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    tracing::info!("Monitor started (level {level})");
    Ok(r)
}

async fn metrics(ctx: Ctx) -> ApiResult {
    let metrics = &ctx.agent.metrics;
    let gauges = crate::metrics::gauges(&ctx.agent);
    match ctx.query.get("format") {
        Some("prometheus") => {
            let text = crate::metrics::prometheus(&metrics.totals(gauges));
            let mut r = Response::new(Body::from(text));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(r)
        }
        None | Some("") => Ok(json(&ctx, &metrics.finished(gauges))),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid format {other:?}; supported: prometheus"
        ))),
    }
}

/// `GET /v1/agent/metrics/stream`: each interval of the metrics (10 s, as
/// `/v1/agent/metrics` shows the last finished one) as one JSON line as soon
/// as it ends, until the client goes away or the agent stops — what
/// `consul debug` records.
async fn metrics_stream(ctx: Ctx) -> ApiResult {
    let agent = ctx.agent.clone();
    let mut stop = agent.shutdown_signal();
    let stream = futures::stream::unfold(agent, |agent| async move {
        let (interval, left) = agent.metrics.current_interval();
        // A moment past the end, so that the interval's last records are in.
        tokio::time::sleep(left + std::time::Duration::from_millis(5)).await;
        let summary = agent
            .metrics
            .interval(interval, crate::metrics::gauges(&agent));
        let mut line = serde_json::to_vec(&summary).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(line)), agent))
    });
    let stream = stream.take_until(async move { crate::stopped(&mut stop).await });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}

async fn host(ctx: Ctx) -> ApiResult {
    Ok(json(&ctx, &crate::host::info(&ctx.agent.config.data_dir)))
}

async fn version(ctx: Ctx) -> ApiResult {
    Ok(json(
        &ctx,
        &serde_json::json!({
            "SHA": "",
            "BuildDate": crate::BUILD_DATE,
            "HumanVersion": COMPAT_VERSION,
            "FIPS": "",
            "MeshgateVersion": VERSION,
        }),
    ))
}
