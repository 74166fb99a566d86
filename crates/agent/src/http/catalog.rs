//! `/v1/catalog/*`.

use std::collections::BTreeMap;

use axum::http::Method;
use meshgate_acl::{Access, Resource};
use meshgate_state::{Command, State, Table};
use meshgate_types::catalog::{
    DeregisterRequest, HealthCheckDefinition, Node, NodeService, NodeServiceList, NodeServices,
    RegisterRequest, ServiceNode,
};
use meshgate_types::lenient::{self, LenientError, Options};
use serde::Serialize;

use super::{
    AclFilter, AclRule, ApiError, ApiResult, Ctx, Route, apply_filter, bare_denied, blocking,
    handler, json, json_read, route,
};
use crate::filter::schema;

const CATALOG: &[Table] = &[Table::Nodes, Table::Services, Table::Checks];

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::PUT,
            "/v1/catalog/register",
            AclRule::Handler,
            handler!(register),
        ),
        route(
            Method::PUT,
            "/v1/catalog/deregister",
            AclRule::Handler,
            handler!(deregister),
        ),
        route(
            Method::GET,
            "/v1/catalog/datacenters",
            AclRule::None,
            handler!(datacenters),
        ),
        route(
            Method::GET,
            "/v1/catalog/nodes",
            AclRule::Handler,
            handler!(nodes),
        ),
        route(
            Method::GET,
            "/v1/catalog/services",
            AclRule::Handler,
            handler!(services),
        ),
        route(
            Method::GET,
            "/v1/catalog/service/{service}",
            AclRule::Handler,
            handler!(service),
        ),
        route(
            Method::GET,
            "/v1/catalog/connect/{service}",
            AclRule::Handler,
            handler!(connect),
        ),
        route(
            Method::GET,
            "/v1/catalog/node/{node}",
            AclRule::Handler,
            handler!(node),
        ),
        route(
            Method::GET,
            "/v1/catalog/node-services/{node}",
            AclRule::Handler,
            handler!(node_services),
        ),
        route(
            Method::GET,
            "/v1/catalog/gateway-services/{gateway}",
            AclRule::Handler,
            handler!(gateway_services),
        ),
    ]
}

/// Decodes a request body like Go's `decodeBody`: case-insensitive field names,
/// unknown fields rejected.
pub(super) fn decode_body<T: serde::de::DeserializeOwned>(ctx: &Ctx) -> Result<T, ApiError> {
    decode_body_fixed(ctx, |_| {})
}

/// [`decode_body`], with `fix` applied to the JSON before it is read.
pub(super) fn decode_body_fixed<T: serde::de::DeserializeOwned>(
    ctx: &Ctx,
    fix: impl FnOnce(&mut serde_json::Value),
) -> Result<T, ApiError> {
    let mut v = if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("Request decode failed: EOF"));
    } else {
        serde_json::from_slice::<serde_json::Value>(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?
    };
    fix(&mut v);
    lenient::from_value(v, Options { deny_unknown: true })
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {}", go_json_error(&e))))
}

/// Go's `encoding/json` wording for a decode error.
pub(super) fn go_json_error(e: &LenientError) -> String {
    match e {
        LenientError::UnknownKey(path) => {
            let field = path.rsplit('.').next().unwrap_or(path);
            if field.eq_ignore_ascii_case("namespace") {
                format!(
                    "json: unknown field \"{field}\" - Namespaces are a Consul Enterprise feature"
                )
            } else if field.eq_ignore_ascii_case("partition") {
                format!(
                    "json: unknown field \"{field}\" - Partitions are a Consul Enterprise feature"
                )
            } else {
                format!("json: unknown field \"{field}\"")
            }
        }
        LenientError::Message(m) => format!("json: {m}"),
    }
}

async fn register(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    // A check's `Definition` is read as Consul reads it: keys it does not
    // have are ignored (node-consul sends `IntervalDuration`).
    let mut req: RegisterRequest = decode_body_fixed(&ctx, |v| {
        let Some(o) = v.as_object_mut() else { return };
        for (k, c) in o.iter_mut() {
            if k.eq_ignore_ascii_case("check") {
                HealthCheckDefinition::drop_unknown_keys(c);
            } else if k.eq_ignore_ascii_case("checks")
                && let Some(list) = c.as_array_mut()
            {
                list.iter_mut()
                    .for_each(HealthCheckDefinition::drop_unknown_keys);
            }
        }
    })?;
    if req.datacenter.is_empty() {
        req.datacenter = ctx.agent.config.datacenter.clone();
    }
    if !req.id.is_empty() && uuid::Uuid::parse_str(&req.id).is_err() {
        return Err(ApiError::internal(
            "Bad node ID: uuid string is wrong length".to_string(),
        ));
    }
    if req.node.is_empty() {
        return Err(ApiError::internal("Must provide node"));
    }
    for c in req.check.iter_mut().chain(req.checks.iter_mut()) {
        if c.check_type.is_empty() {
            c.check_type = definition_type(&c.definition).into();
        }
    }
    // Weights that are not valid (Go clients send `{"Passing":0,...}` for
    // none) are stored as the default 1/1, as Consul stores them.
    if let Some(svc) = req.service.as_mut()
        && (svc.weights.passing < 1 || svc.weights.warning < 0)
    {
        svc.weights = Default::default();
    }
    authorize_register(&ctx, &req)?;
    ctx.agent
        .store
        .write(Command::Register(Box::new(req)))
        .await?;
    Ok(json(&ctx, &true))
}

/// Consul's rules for catalog registration: `node:write` when the node is new
/// or changes, `service:write` on the service (and on the name an existing
/// instance with that ID had, and on a proxy's destination), and for checks
/// `node:write` (node-level) or `service:write` on their service.
fn authorize_register(ctx: &Ctx, req: &RegisterRequest) -> Result<(), ApiError> {
    let id = ctx.identity()?;
    let st = ctx.agent.store.read();
    let node_changes = match st.node(&req.node) {
        None => true,
        Some(n) => {
            !req.skip_node_update
                && (n.address != req.address
                    || (!req.id.is_empty() && n.id != req.id)
                    || n.tagged_addresses != req.tagged_addresses
                    || n.meta != req.node_meta)
        }
    };
    if node_changes {
        id.require(Resource::Node, Access::Write, &req.node)?;
    }
    let existing_services = st.node_services(&req.node).1.map(|(_, s)| s);
    if let Some(svc) = &req.service {
        if svc.service != "consul" {
            id.require(Resource::Service, Access::Write, &svc.service)?;
        }
        let sid = if svc.id.is_empty() {
            &svc.service
        } else {
            &svc.id
        };
        if let Some(old) = existing_services
            .iter()
            .flatten()
            .find(|s| s.id == *sid && s.service != svc.service)
            && !id.allows(Resource::Service, Access::Write, &old.service)
        {
            return Err(bare_denied());
        }
        if svc.kind == "connect-proxy" && !svc.proxy.destination_service_name.is_empty() {
            id.require(
                Resource::Service,
                Access::Write,
                &svc.proxy.destination_service_name,
            )?;
        }
    }
    for c in req.check.iter().chain(req.checks.iter()) {
        if c.service_id.is_empty() {
            id.require(Resource::Node, Access::Write, &req.node)?;
            continue;
        }
        let name = req
            .service
            .as_ref()
            .filter(|s| s.id == c.service_id || (s.id.is_empty() && s.service == c.service_id))
            .map(|s| s.service.clone())
            .or_else(|| {
                existing_services
                    .iter()
                    .flatten()
                    .find(|s| s.id == c.service_id)
                    .map(|s| s.service.clone())
            });
        if let Some(name) = name {
            id.require(Resource::Service, Access::Write, &name)?;
        }
    }
    Ok(())
}

/// The check `Type` implied by a catalog check's `Definition`.
pub(super) fn definition_type(d: &meshgate_types::catalog::HealthCheckDefinition) -> &'static str {
    if !d.http.is_empty() {
        "http"
    } else if !d.tcp.is_empty() {
        "tcp"
    } else if !d.udp.is_empty() {
        "udp"
    } else if !d.grpc.is_empty() {
        "grpc"
    } else if !d.h2ping.is_empty() {
        "h2ping"
    } else if !d.os_service.is_empty() {
        "os_service"
    } else if !d.postgresql.is_empty() {
        "postgresql"
    } else {
        ""
    }
}

async fn deregister(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let req: DeregisterRequest = decode_body(&ctx)?;
    if req.node.is_empty() {
        return Err(ApiError::internal("Must provide node"));
    }
    authorize_deregister(&ctx, &req)?;
    ctx.agent.store.write(Command::Deregister(req)).await?;
    Ok(json(&ctx, &true))
}

/// `node:write` allows any deregistration on the node; otherwise a service needs
/// `service:write` on its name, a check `service:write` on its service.
fn authorize_deregister(ctx: &Ctx, req: &DeregisterRequest) -> Result<(), ApiError> {
    let id = ctx.identity()?;
    if id.allows(Resource::Node, Access::Write, &req.node) {
        return Ok(());
    }
    let st = ctx.agent.store.read();
    if !req.service_id.is_empty() {
        let name = st
            .node_services(&req.node)
            .1
            .and_then(|(_, svcs)| svcs.into_iter().find(|s| s.id == req.service_id))
            .map(|s| s.service.clone());
        if let Some(name) = name {
            id.require(Resource::Service, Access::Write, &name)?;
        }
        return Ok(());
    }
    if !req.check_id.is_empty() {
        if let Some(c) = st.check(&req.node, &req.check_id) {
            if c.service_name.is_empty() {
                return id.require(Resource::Node, Access::Write, &req.node);
            }
            return id.require(Resource::Service, Access::Write, &c.service_name);
        }
        return Ok(());
    }
    id.require(Resource::Node, Access::Write, &req.node)
}

async fn datacenters(ctx: Ctx) -> ApiResult {
    Ok(json(
        &ctx,
        std::slice::from_ref(&ctx.agent.config.datacenter),
    ))
}

/// Whether a node carries every `?node-meta` pair.
pub(super) fn node_meta_match(node: &Node, want: &[(String, String)]) -> bool {
    want.iter().all(|(k, v)| {
        node.meta
            .as_ref()
            .and_then(|m| m.get(k))
            .is_some_and(|mv| mv == v)
    })
}

async fn nodes(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let meta = ctx.node_meta();
    let mut acl = AclFilter::new(&ctx)?;
    let (idx, list) = blocking(&ctx, &opts, &[Table::Nodes], |st| {
        let (idx, nodes) = st.nodes();
        let list: Vec<Node> = nodes
            .into_iter()
            .filter(|n| node_meta_match(n, &meta))
            .cloned()
            .collect();
        (idx, list)
    })
    .await;
    let list: Vec<Node> = list
        .into_iter()
        .filter(|n| acl.node_service(&n.node, None))
        .collect();
    let mut list = apply_filter(&opts, schema::catalog_nodes(), list)?;
    super::sort_near(&ctx, &mut list, |n| &n.node);
    let mut r = json_read(&ctx, &opts, idx, &list);
    acl.mark(&mut r);
    Ok(r)
}

async fn services(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let meta = ctx.node_meta();
    // Consul runs the filter on each instance (`structs.ServiceNode`)
    // before grouping them by name.
    let filter = super::query_filter(&opts, schema::catalog_services())?;
    let acl = std::sync::Mutex::new(AclFilter::new(&ctx)?);
    let (idx, map) = blocking(&ctx, &opts, CATALOG, |st| {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut acl = acl.lock().unwrap_or_else(|e| e.into_inner());
        acl.removed = false;
        for (n, s) in st.all_service_instances() {
            // Consul filters the service list by `service:read` alone.
            let readable = acl.id.allows(Resource::Service, Access::Read, &s.service);
            let wanted = node_meta_match(n, &meta)
                && filter.as_ref().is_none_or(|f| {
                    f.matches_serialize(&ServiceNode::new(n, s))
                        .unwrap_or(false)
                });
            if wanted && acl.keep(readable) {
                out.entry(s.service.clone())
                    .or_default()
                    .extend(s.tags.iter().cloned());
            }
        }
        for tags in out.values_mut() {
            tags.sort();
            tags.dedup();
        }
        let t = st.tables();
        (t.services.max(t.nodes), out)
    })
    .await;
    let mut r = json_read(&ctx, &opts, idx, &map);
    acl.lock().unwrap_or_else(|e| e.into_inner()).mark(&mut r);
    Ok(r)
}

async fn service(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let opts = ctx.query_options()?;
    let tags = ctx.query.all("tag");
    let meta = ctx.node_meta();
    let (idx, list) = blocking(&ctx, &opts, CATALOG, |st| {
        let (idx, list) = st.service_nodes(&name, &tags);
        let list: Vec<ServiceNode> = list
            .into_iter()
            .filter(|sn| meta_match_flat(sn, &meta))
            .collect();
        (idx, list)
    })
    .await;
    let mut acl = AclFilter::new(&ctx)?;
    let list: Vec<ServiceNode> = list
        .into_iter()
        .filter(|sn| acl.node_service(&sn.node, Some(&sn.service_name)))
        .collect();
    let mut list = apply_filter(&opts, schema::catalog_service_nodes(), list)?;
    super::sort_near(&ctx, &mut list, |sn| &sn.node);
    let mut r = json_read(&ctx, &opts, idx, &list);
    acl.mark(&mut r);
    Ok(r)
}

fn meta_match_flat(sn: &ServiceNode, want: &[(String, String)]) -> bool {
    want.iter().all(|(k, v)| {
        sn.node_meta
            .as_ref()
            .and_then(|m| m.get(k))
            .is_some_and(|mv| mv == v)
    })
}

/// The mesh-capable instances of a service: its sidecar proxies and its
/// connect-native instances.
pub(crate) fn connect_instances<'a>(st: &'a State, name: &str) -> Vec<(&'a Node, &'a NodeService)> {
    let mut out: Vec<(&Node, &NodeService)> = st
        .all_service_instances()
        .filter(|(_, s)| {
            s.kind == "connect-proxy" && s.proxy.destination_service_name.eq_ignore_ascii_case(name)
        })
        .collect();
    out.extend(
        st.service_instances(name)
            .into_iter()
            .filter(|(_, s)| s.connect.native),
    );
    // A service outside the mesh is reached through the terminating
    // gateways it is linked to: their instances stand in for its proxies.
    out.extend(st.linked_gateway_instances(name));
    out
}

/// The tables a connect query depends on.
pub(super) const CONNECT: &[Table] = &[Table::Nodes, Table::Services, Table::Checks, Table::Config];

async fn gateway_services(ctx: Ctx) -> ApiResult {
    let gateway = ctx.param(0).to_string();
    if gateway.is_empty() {
        return Err(ApiError::bad_request("Missing gateway name"));
    }
    ctx.require(Resource::Service, Access::Read, &gateway)?;
    let opts = ctx.query_options()?;
    let (idx, list) = blocking(&ctx, &opts, &[Table::Config, Table::Services], |st| {
        st.gateway_services(&gateway)
    })
    .await;
    let mut acl = AclFilter::new(&ctx)?;
    let list: Vec<meshgate_state::GatewayService> = list
        .into_iter()
        .filter(|g| {
            let ok = acl
                .id
                .allows(Resource::Service, Access::Read, &g.service.name);
            acl.keep(ok)
        })
        .collect();
    let mut r = json_read(&ctx, &opts, idx, &list);
    acl.mark(&mut r);
    Ok(r)
}

async fn connect(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let opts = ctx.query_options()?;
    let tags = ctx.query.all("tag");
    let meta = ctx.node_meta();
    let (idx, list) = blocking(&ctx, &opts, CONNECT, |st| {
        let list: Vec<ServiceNode> = connect_instances(st, &name)
            .into_iter()
            .filter(|(_, s)| {
                tags.iter()
                    .all(|t| s.tags.iter().any(|st| st.eq_ignore_ascii_case(t)))
            })
            .map(|(n, s)| ServiceNode::new(n, s))
            .filter(|sn| meta_match_flat(sn, &meta))
            .collect();
        let t = st.tables();
        (t.services.max(t.nodes).max(t.checks).max(t.config), list)
    })
    .await;
    let mut acl = AclFilter::new(&ctx)?;
    // Finding a service's proxies needs `service:read` on the service itself.
    acl.id.require(Resource::Service, Access::Read, &name)?;
    let list: Vec<ServiceNode> = list
        .into_iter()
        .filter(|sn| acl.node_service(&sn.node, Some(&sn.service_name)))
        .collect();
    let mut list = apply_filter(&opts, schema::catalog_service_nodes(), list)?;
    super::sort_near(&ctx, &mut list, |sn| &sn.node);
    let mut r = json_read(&ctx, &opts, idx, &list);
    acl.mark(&mut r);
    Ok(r)
}

#[derive(Serialize)]
struct NullableNodeServiceList {
    #[serde(rename = "Node")]
    node: Option<Node>,
    #[serde(rename = "Services")]
    services: Option<Vec<NodeService>>,
}

async fn node(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing node name"));
    }
    let opts = ctx.query_options()?;
    // A bad `?filter` is an error even for a node that does not exist.
    super::query_filter(&opts, schema::catalog_node_services())?;
    let (idx, found) = blocking(&ctx, &opts, CATALOG, |st| {
        let (idx, found) = st.node_services(&name);
        let found = found.map(|(n, svcs)| NodeServices {
            node: n.clone(),
            services: svcs
                .into_iter()
                .map(|s| (s.id.clone(), s.clone()))
                .collect(),
        });
        (idx, found)
    })
    .await;
    // A node the caller may not read is answered as if it did not exist;
    // its services are filtered by `service:read`.
    let mut acl = AclFilter::new(&ctx)?;
    let found = found
        .filter(|f| acl.node_service(&f.node.node, None))
        .map(|mut f| {
            f.services.retain(|_, s| {
                acl.keep(acl.id.allows(Resource::Service, Access::Read, &s.service))
            });
            f
        });
    // `?filter` runs on the node's services.
    let found = match found {
        Some(mut f) => {
            f.services =
                super::apply_filter_map(&opts, schema::catalog_node_services(), f.services)?;
            Some(f)
        }
        None => None,
    };
    let mut r = json_read(&ctx, &opts, idx, &found);
    acl.mark(&mut r);
    Ok(r)
}

async fn node_services(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing node name"));
    }
    let opts = ctx.query_options()?;
    let (idx, found) = blocking(&ctx, &opts, CATALOG, |st| {
        let (idx, found) = st.node_services(&name);
        let found = found.map(|(n, svcs)| NodeServiceList {
            node: n.clone(),
            services: svcs.into_iter().cloned().collect(),
        });
        (idx, found)
    })
    .await;
    let mut acl = AclFilter::new(&ctx)?;
    let found = found.filter(|f| acl.node_service(&f.node.node, None));
    match found {
        Some(mut f) => {
            f.services
                .retain(|s| acl.keep(acl.id.allows(Resource::Service, Access::Read, &s.service)));
            f.services = apply_filter(&opts, schema::catalog_node_services(), f.services)?;
            let mut r = json_read(&ctx, &opts, idx, &f);
            acl.mark(&mut r);
            Ok(r)
        }
        None => Ok(json_read(
            &ctx,
            &opts,
            idx,
            &NullableNodeServiceList {
                node: None,
                services: None,
            },
        )),
    }
}
