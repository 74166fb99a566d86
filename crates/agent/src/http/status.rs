//! `/v1/status/*`.

use axum::http::Method;

use super::{AclRule, ApiResult, Ctx, Route, handler, json, route};

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::GET,
            "/v1/status/leader",
            AclRule::None,
            handler!(leader),
        ),
        route(
            Method::GET,
            "/v1/status/peers",
            AclRule::None,
            handler!(peers),
        ),
    ]
}

async fn leader(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    let leader = match ctx.agent.store.cluster() {
        // "" while the cluster has no leader, as Consul answers; a leader
        // that lost its quorum (no ack within the lease) has stepped down
        // as far as clients can tell.
        Some(c) if c.known_leader() => c.info().leader.map(|(_, addr)| addr).unwrap_or_default(),
        Some(_) => String::new(),
        None => ctx.agent.server_addr(),
    };
    Ok(json(&ctx, &leader))
}

async fn peers(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    let peers: Vec<String> = match ctx.agent.store.cluster() {
        Some(c) => c.voters().into_values().collect(),
        None => vec![ctx.agent.server_addr()],
    };
    Ok(json(&ctx, &peers))
}
