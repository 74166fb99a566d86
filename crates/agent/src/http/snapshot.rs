//! `/v1/snapshot`: save and restore the whole state.

use axum::body::Body;
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use meshgate_acl::{Access, Resource};
use meshgate_state::Command;

use super::{AclRule, ApiError, ApiResult, Ctx, Route, empty, handler, route, set_index_headers};
use crate::snapshot;
use crate::store::now_ms;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::GET,
            "/v1/snapshot",
            AclRule::Global(Resource::Acl, Access::Write),
            handler!(save),
        ),
        route(
            Method::PUT,
            "/v1/snapshot",
            AclRule::Global(Resource::Acl, Access::Write),
            handler!(restore),
        ),
    ]
}

async fn save(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    let snap = ctx.agent.store.read().snapshot();
    let index = snap.index;
    let bytes = snapshot::write(&snap, now_ms())
        .map_err(|e| ApiError::internal(format!("failed to write snapshot: {e}")))?;
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-gzip"),
    );
    set_index_headers(&mut r, index);
    Ok(r)
}

async fn restore(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    if ctx.body.is_empty() {
        return Err(ApiError::bad_request("Missing snapshot in request body"));
    }
    // Everything is checked before the state is touched: checksums, decoding,
    // and consistency (the restore command validates before replacing).
    let (_, snap) = snapshot::read(&ctx.body)
        .map_err(|e| ApiError::internal(format!("failed to restore snapshot: {e}")))?;
    ctx.agent
        .store
        .write(Command::Restore(Box::new(snap)))
        .await
        .map_err(|e| ApiError::internal(format!("failed to restore snapshot: {e}")))?;
    // The catalog entries this agent owns are put back as the agent sees them.
    ctx.agent.reconcile().await;
    Ok(empty())
}
