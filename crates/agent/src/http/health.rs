//! `/v1/health/*`.

use axum::http::Method;
use meshgate_state::Table;
use meshgate_types::catalog::{CheckServiceNode, HealthCheck, status};

use super::catalog::{connect_instances, node_meta_match};
use super::{
    ApiError, ApiResult, Ctx, Route, apply_filter, blocking, flag_value, handler, json_read, route,
};
use crate::filter::schema;

const CATALOG: &[Table] = &[Table::Nodes, Table::Services, Table::Checks];

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/v1/health/node/{node}", handler!(node)),
        route(Method::GET, "/v1/health/checks/{service}", handler!(checks)),
        route(Method::GET, "/v1/health/state/{state}", handler!(state)),
        route(
            Method::GET,
            "/v1/health/service/{service}",
            handler!(service),
        ),
        route(
            Method::GET,
            "/v1/health/connect/{service}",
            handler!(connect),
        ),
        route(
            Method::GET,
            "/v1/health/ingress/{service}",
            handler!(ingress),
        ),
    ]
}

async fn node(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing node name"));
    }
    let opts = ctx.query_options()?;
    let (idx, list) = blocking(&ctx, &opts, &[Table::Checks], |st| {
        let (idx, list) = st.node_checks(&name);
        (idx, list.into_iter().cloned().collect::<Vec<HealthCheck>>())
    })
    .await;
    let list = apply_filter(&opts, schema::health_checks(), list)?;
    Ok(json_read(&ctx, &opts, idx, &list))
}

async fn checks(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let opts = ctx.query_options()?;
    let meta = ctx.node_meta();
    let (idx, list) = blocking(&ctx, &opts, &[Table::Checks, Table::Nodes], |st| {
        let (idx, list) = st.service_checks(&name);
        let list = list
            .into_iter()
            .filter(|c| {
                meta.is_empty() || st.node(&c.node).is_some_and(|n| node_meta_match(n, &meta))
            })
            .cloned()
            .collect::<Vec<HealthCheck>>();
        (idx, list)
    })
    .await;
    let list = apply_filter(&opts, schema::health_checks(), list)?;
    Ok(json_read(&ctx, &opts, idx, &list))
}

async fn state(ctx: Ctx) -> ApiResult {
    let want = ctx.param(0).to_string();
    if want.is_empty() {
        return Err(ApiError::bad_request("Missing check state"));
    }
    let want = want.to_ascii_lowercase();
    let opts = ctx.query_options()?;
    let meta = ctx.node_meta();
    let (idx, list) = blocking(&ctx, &opts, &[Table::Checks, Table::Nodes], |st| {
        // An unknown state is not an error: it matches nothing.
        let (idx, list) = if want == status::ANY || status::is_valid(&want) {
            st.checks_in_state(&want)
        } else {
            (st.tables().checks, Vec::new())
        };
        let list = list
            .into_iter()
            .filter(|c| {
                meta.is_empty() || st.node(&c.node).is_some_and(|n| node_meta_match(n, &meta))
            })
            .cloned()
            .collect::<Vec<HealthCheck>>();
        (idx, list)
    })
    .await;
    let list = apply_filter(&opts, schema::health_checks(), list)?;
    Ok(json_read(&ctx, &opts, idx, &list))
}

/// Filters shared by `/service` and `/connect`: `?passing`, `?node-meta`.
fn finish(
    ctx: &Ctx,
    opts: &super::QueryOptions,
    mut list: Vec<CheckServiceNode>,
) -> Result<Vec<CheckServiceNode>, ApiError> {
    let passing = flag_value(&ctx.query, "passing", "Invalid value for ?passing")?;
    let meta = ctx.node_meta();
    list.retain(|e| node_meta_match(&e.node, &meta));
    if passing {
        list.retain(|e| e.checks.iter().all(|c| c.status == status::PASSING));
    }
    apply_filter(opts, schema::health_service_entries(), list)
}

async fn service(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let opts = ctx.query_options()?;
    flag_value(&ctx.query, "passing", "Invalid value for ?passing")?;
    let tags = ctx.query.all("tag");
    let (idx, list) = blocking(&ctx, &opts, CATALOG, |st| {
        st.check_service_nodes(&name, &tags)
    })
    .await;
    let list = finish(&ctx, &opts, list)?;
    Ok(json_read(&ctx, &opts, idx, &list))
}

async fn connect(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let opts = ctx.query_options()?;
    flag_value(&ctx.query, "passing", "Invalid value for ?passing")?;
    let tags = ctx.query.all("tag");
    let (idx, list) = blocking(&ctx, &opts, CATALOG, |st| {
        let list = connect_instances(st, &name)
            .into_iter()
            .filter(|(_, s)| {
                tags.iter()
                    .all(|t| s.tags.iter().any(|st| st.eq_ignore_ascii_case(t)))
            })
            .map(|(n, s)| st.check_service_node(n, s))
            .collect::<Vec<_>>();
        let t = st.tables();
        (t.services.max(t.nodes).max(t.checks), list)
    })
    .await;
    let list = finish(&ctx, &opts, list)?;
    Ok(json_read(&ctx, &opts, idx, &list))
}

async fn ingress(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let opts = ctx.query_options()?;
    let (idx, list) = blocking(&ctx, &opts, CATALOG, |st| {
        // No ingress gateways exist yet: always an empty list.
        (st.tables().services, Vec::<CheckServiceNode>::new())
    })
    .await;
    Ok(json_read(&ctx, &opts, idx, &list))
}
