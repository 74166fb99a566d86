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
    Ok(json(&ctx, &ctx.agent.server_addr()))
}

async fn peers(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    Ok(json(&ctx, &[ctx.agent.server_addr()]))
}
