//! `/v1/health/*`.

use axum::http::Method;
use meshgate_acl::{Access, Resource};
use meshgate_state::Table;
use meshgate_types::catalog::{CheckServiceNode, HealthCheck, status};

use super::catalog::{CONNECT, connect_instances, node_meta_match};
use super::{
    AclFilter, AclRule, ApiError, ApiResult, Ctx, Route, apply_filter, bare_denied, blocking,
    flag_value, handler, json_read, route,
};
use crate::filter::schema;
use meshgate_config_entries::TERMINATING_GATEWAY;

const CATALOG: &[Table] = &[Table::Nodes, Table::Services, Table::Checks];

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::GET,
            "/v1/health/node/{node}",
            AclRule::Handler,
            handler!(node),
        ),
        route(
            Method::GET,
            "/v1/health/checks/{service}",
            AclRule::Handler,
            handler!(checks),
        ),
        route(
            Method::GET,
            "/v1/health/state/{state}",
            AclRule::Handler,
            handler!(state),
        ),
        route(
            Method::GET,
            "/v1/health/service/{service}",
            AclRule::Handler,
            handler!(service),
        ),
        route(
            Method::GET,
            "/v1/health/connect/{service}",
            AclRule::Handler,
            handler!(connect),
        ),
        route(
            Method::GET,
            "/v1/health/ingress/{service}",
            AclRule::Handler,
            handler!(ingress),
        ),
    ]
}

/// Answers a list of checks: filtered by `node:read` (and `service:read` for
/// service checks), then by `?filter`.
fn checks_answer(
    ctx: &Ctx,
    opts: &super::QueryOptions,
    idx: u64,
    list: Vec<HealthCheck>,
) -> ApiResult {
    let mut acl = AclFilter::new(ctx)?;
    let list: Vec<HealthCheck> = list
        .into_iter()
        .filter(|c| {
            let svc = (!c.service_name.is_empty()).then_some(c.service_name.as_str());
            acl.node_service(&c.node, svc)
        })
        .collect();
    let mut list = apply_filter(opts, schema::health_checks(), list)?;
    super::sort_near(ctx, &mut list, |c| &c.node);
    let mut r = json_read(ctx, opts, idx, &list);
    acl.mark(&mut r);
    Ok(r)
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
    checks_answer(&ctx, &opts, idx, list)
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
    checks_answer(&ctx, &opts, idx, list)
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
    checks_answer(&ctx, &opts, idx, list)
}

/// Filters shared by `/service` and `/connect`: ACLs, `?passing`, `?node-meta`,
/// `?filter`; answers.
fn entries_answer(
    ctx: &Ctx,
    opts: &super::QueryOptions,
    idx: u64,
    mut list: Vec<CheckServiceNode>,
) -> ApiResult {
    let passing = flag_value(&ctx.query, "passing", "Invalid value for ?passing")?;
    let meta = ctx.node_meta();
    let mut acl = AclFilter::new(ctx)?;
    list.retain(|e| acl.node_service(&e.node.node, Some(&e.service.service)));
    list.retain(|e| node_meta_match(&e.node, &meta));
    if passing {
        list.retain(|e| e.checks.iter().all(|c| c.status == status::PASSING));
    }
    let mut list = apply_filter(opts, schema::health_service_entries(), list)?;
    super::sort_near(ctx, &mut list, |e| &e.node.node);
    let mut r = json_read(ctx, opts, idx, &list);
    acl.mark(&mut r);
    Ok(r)
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
    entries_answer(&ctx, &opts, idx, list)
}

async fn connect(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let opts = ctx.query_options()?;
    flag_value(&ctx.query, "passing", "Invalid value for ?passing")?;
    if !ctx
        .identity()?
        .allows(Resource::Service, Access::Read, &name)
    {
        return Err(bare_denied());
    }
    let passing = flag_value(&ctx.query, "passing", "Invalid value for ?passing")?;
    let tags = ctx.query.all("tag");
    let (idx, list) = blocking(&ctx, &opts, CONNECT, |st| {
        let mut list = connect_instances(st, &name)
            .into_iter()
            .filter(|(_, s)| {
                tags.iter()
                    .all(|t| s.tags.iter().any(|st| st.eq_ignore_ascii_case(t)))
            })
            .map(|(n, s)| st.check_service_node(n, s))
            .collect::<Vec<_>>();
        // A terminating gateway is a healthy way to the service only while
        // the service behind it is: with ?passing, linked gateways are left
        // out when no instance of the external service passes.
        if passing && !external_passing(st, &name) {
            list.retain(|e| e.service.kind != TERMINATING_GATEWAY);
        }
        let t = st.tables();
        (t.services.max(t.nodes).max(t.checks).max(t.config), list)
    })
    .await;
    entries_answer(&ctx, &opts, idx, list)
}

/// Whether some instance of `service` has every check (node and service)
/// passing.
pub(crate) fn external_passing(st: &meshgate_state::State, service: &str) -> bool {
    st.check_service_nodes(service, &[])
        .1
        .iter()
        .any(|e| e.checks.iter().all(|c| c.status == status::PASSING))
}

async fn ingress(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let opts = ctx.query_options()?;
    if !ctx
        .identity()?
        .allows(Resource::Service, Access::Read, &name)
    {
        return Err(bare_denied());
    }
    let (idx, list) = blocking(&ctx, &opts, CATALOG, |st| {
        // No ingress gateways exist yet: always an empty list.
        (st.tables().services, Vec::<CheckServiceNode>::new())
    })
    .await;
    Ok(json_read(&ctx, &opts, idx, &list))
}
