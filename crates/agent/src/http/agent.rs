//! `/v1/agent/*`: this agent's services, checks and identity.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use meshgate_acl::{Access, Resource};
use meshgate_types::agent::{AgentService, CheckDefinition, Member, ServiceDefinition};
use meshgate_types::catalog::{HealthCheck, status};
use serde::Deserialize;
use serde_json::json;

use super::catalog::decode_body;
use super::{
    AclFilter, AclRule, ApiError, ApiResult, Ctx, Route, apply_filter, apply_filter_map, empty,
    flag_value, handler, hdr, json, route,
};
use crate::filter::schema;
use crate::local::{Source, agent_service, content_hash};
use crate::{Agent, COMPAT_VERSION, VERSION};

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::PUT,
            "/v1/agent/service/register",
            AclRule::Handler,
            handler!(service_register),
        ),
        route(
            Method::PUT,
            "/v1/agent/service/deregister/{id}",
            AclRule::Handler,
            handler!(service_deregister),
        ),
        route(
            Method::GET,
            "/v1/agent/services",
            AclRule::Handler,
            handler!(services),
        ),
        route(
            Method::GET,
            "/v1/agent/service/{id}",
            AclRule::Handler,
            handler!(service),
        ),
        route(
            Method::GET,
            "/v1/agent/health/service/id/{id}",
            AclRule::Handler,
            handler!(health_by_id),
        ),
        route(
            Method::GET,
            "/v1/agent/health/service/name/{name}",
            AclRule::Handler,
            handler!(health_by_name),
        ),
        route(
            Method::GET,
            "/v1/agent/health/service/id/",
            AclRule::Handler,
            handler!(missing_service_id),
        ),
        route(
            Method::GET,
            "/v1/agent/health/service/name/",
            AclRule::Handler,
            handler!(missing_service_name),
        ),
        route(
            Method::GET,
            "/v1/agent/checks",
            AclRule::Handler,
            handler!(checks),
        ),
        route(
            Method::PUT,
            "/v1/agent/check/register",
            AclRule::Handler,
            handler!(check_register),
        ),
        route(
            Method::PUT,
            "/v1/agent/check/deregister/{id}",
            AclRule::Handler,
            handler!(check_deregister),
        ),
        route(
            Method::PUT,
            "/v1/agent/check/pass/{id}",
            AclRule::Handler,
            handler!(check_pass),
        ),
        route(
            Method::PUT,
            "/v1/agent/check/warn/{id}",
            AclRule::Handler,
            handler!(check_warn),
        ),
        route(
            Method::PUT,
            "/v1/agent/check/fail/{id}",
            AclRule::Handler,
            handler!(check_fail),
        ),
        route(
            Method::PUT,
            "/v1/agent/check/update/{id}",
            AclRule::Handler,
            handler!(check_update),
        ),
        route(
            Method::GET,
            "/v1/agent/self",
            AclRule::AgentNode(Access::Read),
            handler!(self_),
        ),
        route(
            Method::GET,
            "/v1/agent/members",
            AclRule::Handler,
            handler!(members),
        ),
    ]
}

/// The token a request carries (for recording with registrations).
pub(super) fn request_token(ctx: &Ctx) -> String {
    if let Some(t) = ctx.query.get("token") {
        return t.to_string();
    }
    if let Some(t) = ctx
        .headers
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
    {
        return t.to_string();
    }
    if let Some(v) = ctx
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        let mut it = v.split_whitespace();
        if it.next().is_some_and(|s| s.eq_ignore_ascii_case("bearer")) {
            return it.next().unwrap_or("").to_string();
        }
    }
    String::new()
}

async fn service_register(ctx: Ctx) -> ApiResult {
    let mut def: ServiceDefinition = decode_body(&ctx)?;
    // An all-empty `Check` object is ignored.
    if def
        .check
        .as_ref()
        .is_some_and(|c| *c == CheckDefinition::default())
    {
        def.check = None;
    }
    def.checks.retain(|c| *c != CheckDefinition::default());
    let replace = flag_value(
        &ctx.query,
        "replace-existing-checks",
        "Invalid value for ?replace-existing-checks",
    )?;
    let token = request_token(&ctx);
    authorize_service_def(&ctx, &def)?;
    ctx.agent
        .add_service(def, &token, replace, Source::Api)
        .await?;
    Ok(empty())
}

/// `service:write` on the service, on the name a registration with the same ID
/// has now, and on a proxy's destination; the same for a sidecar.
fn authorize_service_def(ctx: &Ctx, def: &ServiceDefinition) -> Result<(), ApiError> {
    let id = ctx.identity()?;
    if def.name.is_empty() {
        // Validation answers first (400 Missing service name).
        return Ok(());
    }
    id.require(Resource::Service, Access::Write, &def.name)?;
    if let Some(existing) = ctx.agent.local.service(def.instance_id()) {
        id.require(Resource::Service, Access::Write, &existing.svc.service)?;
    }
    if def.kind == "connect-proxy"
        && let Some(p) = &def.proxy
        && !p.destination_service_name.is_empty()
    {
        id.require(
            Resource::Service,
            Access::Write,
            &p.destination_service_name,
        )?;
    }
    if let Some(sc) = def
        .connect
        .as_ref()
        .and_then(|c| c.sidecar_service.as_ref())
    {
        let name = if sc.name.is_empty() {
            format!("{}-sidecar-proxy", def.name)
        } else {
            sc.name.clone()
        };
        id.require(Resource::Service, Access::Write, &name)?;
    }
    Ok(())
}

/// 404 for an unknown service ID, then `service:write` on its name.
fn authorize_existing_service(ctx: &Ctx, id: &str) -> Result<(), ApiError> {
    let Some(s) = ctx.agent.local.service(id) else {
        return Err(ApiError::not_found(format!(
            "Unknown service ID \"{id}\". Ensure that the service ID is passed, not the service name."
        )));
    };
    ctx.require(Resource::Service, Access::Write, &s.svc.service)
}

/// 404 for an unknown check ID, then `service:write` on its service or
/// `node:write` on this node for a node check.
fn authorize_existing_check(ctx: &Ctx, check_id: &str) -> Result<(), ApiError> {
    let Some((hc, _)) = ctx.agent.local.check(check_id) else {
        return Err(ApiError::not_found(format!(
            "Unknown check ID \"{check_id}\". Ensure that the check ID is passed, not the check name."
        )));
    };
    if hc.service_id.is_empty() {
        ctx.require(Resource::Node, Access::Write, &ctx.agent.node_name)
    } else {
        ctx.require(Resource::Service, Access::Write, &hc.service_name)
    }
}

async fn service_deregister(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    authorize_existing_service(&ctx, &id)?;
    ctx.agent.remove_service(&id).await?;
    Ok(empty())
}

fn agent_services(agent: &Agent) -> BTreeMap<String, AgentService> {
    agent
        .local
        .services()
        .into_iter()
        .map(|s| (s.svc.id.clone(), agent_service(agent, &s.svc)))
        .collect()
}

async fn services(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let mut acl = AclFilter::new(&ctx)?;
    let mut map = agent_services(&ctx.agent);
    map.retain(|_, s| acl.keep(acl.id.allows(Resource::Service, Access::Read, &s.service)));
    let map = apply_filter_map(&opts, schema::agent_services(), map)?;
    let mut r = json(&ctx, &map);
    acl.mark(&mut r);
    Ok(r)
}

async fn service(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    // The token must be valid even when the service does not exist.
    ctx.identity()?;
    let wait = match ctx.query.get("wait") {
        None => Duration::from_secs(300),
        Some(w) => meshgate_types::duration::parse(w)
            .map_err(|_| ApiError::bad_request("Invalid wait time"))?,
    };
    let wait = if wait.is_zero() {
        Duration::from_secs(300)
    } else {
        wait.min(Duration::from_secs(600))
    };
    let want_hash = ctx.query.get("hash").map(str::to_string);
    let agent = ctx.agent.clone();
    let lookup = |agent: &Arc<Agent>| -> Option<AgentService> {
        let s = agent.local.service(&id)?;
        let mut svc = agent_service(agent, &s.svc);
        svc.content_hash = content_hash(&svc);
        Some(svc)
    };
    let mut rx = agent.local.watch();
    rx.borrow_and_update();
    let mut found = lookup(&agent);
    if let Some(h) = &want_hash {
        let jitter = rand::random_range(0..(wait.as_millis() as u64 / 16).max(1));
        let deadline = tokio::time::Instant::now() + wait + Duration::from_millis(jitter);
        while found.as_ref().map(|s| &s.content_hash) == Some(h) {
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
            if agent.is_shutting_down() {
                break;
            }
            rx.borrow_and_update();
            found = lookup(&agent);
        }
    }
    let Some(svc) = found else {
        return Err(ApiError::not_found(format!("unknown service ID: {id}")));
    };
    ctx.require(Resource::Service, Access::Read, &svc.service)?;
    let mut r = json(&ctx, &svc);
    if let Ok(v) = HeaderValue::from_str(&svc.content_hash) {
        r.headers_mut().insert(hdr::CONTENT_HASH, v);
    }
    Ok(r)
}

/// A local service with the status of its checks and of the node's
/// (`/v1/agent/health/service/...`, Consul's `AgentServiceChecksInfo`).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceHealth {
    aggregated_status: &'static str,
    service: Option<AgentService>,
    checks: Option<Vec<HealthCheck>>,
}

/// The status of a set of checks as Consul sums it up: `maintenance` when
/// the node or service is in maintenance, else the worst status, `passing`
/// when there are none.
fn aggregated_status(checks: &[HealthCheck]) -> &'static str {
    let maintenance = checks.iter().any(|c| {
        c.check_id == crate::local::NODE_MAINT_CHECK
            || c.check_id.starts_with(crate::local::SERVICE_MAINT_PREFIX)
    });
    let has = |st: &str| checks.iter().any(|c| c.status == st);
    if maintenance {
        "maintenance"
    } else if has(status::CRITICAL) {
        status::CRITICAL
    } else if has(status::WARNING) {
        status::WARNING
    } else {
        status::PASSING
    }
}

/// The answer's status for an aggregated status: 200 passing, 429 warning,
/// 503 critical or maintenance (what load balancers probing the agent
/// act on).
fn health_code(status: &str) -> StatusCode {
    match status {
        status::PASSING => StatusCode::OK,
        status::WARNING => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The health of local service `id` (its checks and the node's).
fn local_health(agent: &Arc<Agent>, id: &str) -> Option<ServiceHealth> {
    let s = agent.local.service(id)?;
    let checks: Vec<HealthCheck> = agent
        .local
        .checks()
        .into_iter()
        .filter(|c| c.service_id == id || c.service_id.is_empty())
        .collect();
    Some(ServiceHealth {
        aggregated_status: aggregated_status(&checks),
        service: Some(agent_service(agent, &s.svc)),
        checks: Some(checks),
    })
}

/// Plain text instead of JSON: `Accept: text/plain...`, or `?format=text`.
fn wants_text(ctx: &Ctx) -> bool {
    if ctx
        .headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"))
    {
        return true;
    }
    ctx.query.get("format").is_some_and(|f| f == "text")
}

/// An answer of these endpoints: `body` as JSON, or `text` alone.
fn health_answer<T: serde::Serialize>(
    ctx: &Ctx,
    code: StatusCode,
    text: &str,
    body: &T,
) -> Response {
    let mut r = if wants_text(ctx) {
        let mut r = Response::new(axum::body::Body::from(text.to_string()));
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        r
    } else {
        json(ctx, body)
    };
    *r.status_mut() = code;
    r
}

/// `GET /v1/agent/health/service/id/:id`: one local service's health, for
/// load balancers and probes (status 200, 429 or 503; `?format=text`).
async fn health_by_id(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    // The token must be valid even when the service does not exist.
    ctx.identity()?;
    let Some(health) = local_health(&ctx.agent, &id) else {
        let missing = ServiceHealth {
            aggregated_status: status::CRITICAL,
            service: None,
            checks: None,
        };
        let why = format!("ServiceId {id} not found");
        return Ok(health_answer(&ctx, StatusCode::NOT_FOUND, &why, &missing));
    };
    if let Some(svc) = &health.service {
        ctx.require(Resource::Service, Access::Read, &svc.service)?;
    }
    let st = health.aggregated_status;
    Ok(health_answer(&ctx, health_code(st), st, &health))
}

/// `GET /v1/agent/health/service/name/:name`: every local instance of a
/// service with its health; the answer's status is the worst of them.
async fn health_by_name(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    ctx.require(Resource::Service, Access::Read, &name)?;
    let mut code = StatusCode::NOT_FOUND;
    let mut text = format!("ServiceName {name} Not Found");
    let mut all = Vec::new();
    for s in ctx.agent.local.services() {
        if s.svc.service != name {
            continue;
        }
        let Some(health) = local_health(&ctx.agent, &s.svc.id) else {
            continue;
        };
        let c = health_code(health.aggregated_status);
        // 200 < 429 < 503: the worst wins.
        if code == StatusCode::NOT_FOUND || c.as_u16() > code.as_u16() {
            code = c;
            text = health.aggregated_status.to_string();
        }
        all.push(health);
    }
    Ok(health_answer(&ctx, code, &text, &all))
}

async fn missing_service_id(_ctx: Ctx) -> ApiResult {
    Err(ApiError::bad_request("Missing serviceID"))
}

async fn missing_service_name(_ctx: Ctx) -> ApiResult {
    Err(ApiError::bad_request("Missing service Name"))
}

async fn checks(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let mut acl = AclFilter::new(&ctx)?;
    let node = ctx.agent.node_name.clone();
    let map: BTreeMap<String, HealthCheck> = ctx
        .agent
        .local
        .checks()
        .into_iter()
        .filter(|c| {
            let ok = if c.service_id.is_empty() {
                acl.id.allows(Resource::Node, Access::Read, &node)
            } else {
                acl.id
                    .allows(Resource::Service, Access::Read, &c.service_name)
            };
            acl.keep(ok)
        })
        .map(|c| (c.check_id.clone(), c))
        .collect();
    let map = apply_filter_map(&opts, schema::agent_checks(), map)?;
    let mut r = json(&ctx, &map);
    acl.mark(&mut r);
    Ok(r)
}

async fn check_register(ctx: Ctx) -> ApiResult {
    let def: CheckDefinition = decode_body(&ctx)?;
    if !def.status.is_empty() && !status::is_valid(&def.status) {
        return Err(ApiError::bad_request("Bad check status"));
    }
    if !def.service_id.is_empty() {
        let Some(svc) = ctx.agent.local.service(&def.service_id) else {
            return Err(ApiError::not_found(format!(
                "ServiceID \"{}\" does not exist",
                def.service_id
            )));
        };
        ctx.require(Resource::Service, Access::Write, &svc.svc.service)?;
    } else {
        ctx.require(Resource::Node, Access::Write, &ctx.agent.node_name)?;
    }
    let existing = if def.given_id().is_empty() {
        def.name.clone()
    } else {
        def.given_id().to_string()
    };
    if ctx.agent.local.check(&existing).is_some() {
        authorize_existing_check(&ctx, &existing)?;
    }
    let token = request_token(&ctx);
    ctx.agent.add_check(def, &token, Source::Api).await?;
    Ok(empty())
}

async fn check_deregister(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    authorize_existing_check(&ctx, &id)?;
    ctx.agent.remove_check(&id).await?;
    Ok(empty())
}

async fn ttl_update(ctx: Ctx, st: &str) -> ApiResult {
    let id = ctx.param(0).to_string();
    authorize_existing_check(&ctx, &id)?;
    let note = ctx.query.get("note").unwrap_or("").to_string();
    ctx.agent.update_ttl_check(&id, st, &note).await?;
    Ok(empty())
}

async fn check_pass(ctx: Ctx) -> ApiResult {
    ttl_update(ctx, status::PASSING).await
}

async fn check_warn(ctx: Ctx) -> ApiResult {
    ttl_update(ctx, status::WARNING).await
}

async fn check_fail(ctx: Ctx) -> ApiResult {
    ttl_update(ctx, status::CRITICAL).await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CheckUpdate {
    status: String,
    output: String,
}

async fn check_update(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    authorize_existing_check(&ctx, &id)?;
    let u: CheckUpdate = decode_body(&ctx)?;
    if !status::is_valid(&u.status) {
        return Err(ApiError::bad_request(format!(
            "Invalid check status: '{}'",
            u.status
        )));
    }
    ctx.agent
        .update_ttl_check(&id, &u.status, &u.output)
        .await?;
    Ok(empty())
}

/// This agent as a cluster member.
/// The cluster's members: this agent, and in cluster mode every other node
/// that runs an agent (it has a `serfHealth` check), alive (1) or failed (4)
/// as the leader judges from their heartbeats; servers are the raft voters.
pub fn members_of(agent: &Agent) -> Vec<Member> {
    let me = member(agent);
    let Some(c) = agent.store.cluster() else {
        return vec![me];
    };
    let voters: Vec<u64> = c.voters().into_keys().collect();
    let st = agent.store.read();
    let mut out = vec![me];
    for ch in st.checks_in_state("any").1 {
        if ch.check_id != meshgate_types::catalog::SERF_CHECK_ID || ch.node == agent.node_name {
            continue;
        }
        let Some(n) = st.node(&ch.node) else { continue };
        let server = voters.contains(&meshgate_consensus::node_id_from_uuid(&n.id));
        // Every agent runs this build: the version tags are this agent's.
        let mut tags: BTreeMap<String, String> = out[0]
            .tags
            .iter()
            .filter(|(k, _)| {
                [
                    "dc", "segment", "vsn", "vsn_min", "vsn_max", "build", "acls",
                ]
                .contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tags.insert(
            "role".to_string(),
            if server { "consul" } else { "node" }.to_string(),
        );
        tags.insert("id".to_string(), n.id.clone());
        out.push(Member {
            name: n.node.clone(),
            addr: n.address.clone(),
            port: agent.config.ports.serf_lan.clamp(0, 65535) as u16,
            tags,
            status: if ch.status == meshgate_types::catalog::status::CRITICAL {
                4
            } else {
                1
            },
            ..member(agent)
        });
    }
    out
}

pub fn member(agent: &Agent) -> Member {
    let c = &agent.config;
    let mut tags = BTreeMap::new();
    let mut t = |k: &str, v: String| {
        tags.insert(k.to_string(), v);
    };
    t("role", if c.server { "consul" } else { "node" }.into());
    t("dc", c.datacenter.clone());
    t("segment", String::new());
    t("id", agent.node_id.clone());
    t("vsn", "2".into());
    t("vsn_min", "2".into());
    t("vsn_max", "3".into());
    t("build", format!("{COMPAT_VERSION}:meshgate-{VERSION}"));
    t("acls", if c.acl.enabled { "1" } else { "0" }.into());
    if c.server {
        t("raft_vsn", "3".into());
        t("port", c.ports.server.to_string());
        t("wan_join_port", c.ports.serf_wan.to_string());
        t("ft_fs", "1".into());
        t("ft_si", "1".into());
        if c.bootstrap || c.dev {
            t("bootstrap", "1".into());
        } else if c.bootstrap_expect > 0 {
            t("expect", c.bootstrap_expect.to_string());
        }
    }
    Member {
        name: agent.node_name.clone(),
        addr: agent.advertise_addr(),
        port: c.ports.serf_lan.clamp(0, 65535) as u16,
        tags,
        status: 1,
        protocol_min: 1,
        protocol_max: 5,
        protocol_cur: 2,
        delegate_min: 2,
        delegate_max: 5,
        delegate_cur: 4,
    }
}

async fn members(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let mut acl = AclFilter::new(&ctx)?;
    // `?wan=<anything>`: the servers' WAN pool. meshgate runs one datacenter,
    // so that is this datacenter's servers under their WAN names
    // (`node.dc`, the serf WAN port), as a Consul server lists them; a
    // client agent has no WAN pool and answers `null`, as Consul's does.
    let wan = ctx.query.get("wan").is_some_and(|v| !v.is_empty());
    if wan && ctx.query.get("segment").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_request(
            "Cannot provide a segment with wan=true",
        ));
    }
    if wan && !ctx.agent.config.server {
        return Ok(json(&ctx, &serde_json::Value::Null));
    }
    let dc = &ctx.agent.config.datacenter;
    // ACLs read the name listed (a WAN member's is `node.dc`, as Consul's
    // filter sees it).
    let list: Vec<Member> = members_of(&ctx.agent)
        .into_iter()
        .filter(|m| !wan || m.tags.get("role").is_some_and(|r| r == "consul"))
        .map(|mut m| {
            if wan {
                m.name = format!("{}.{dc}", m.name);
                m.port = ctx.agent.config.ports.serf_wan.clamp(0, 65535) as u16;
                m.tags.remove("segment");
            }
            m
        })
        .filter(|m| acl.keep(acl.id.allows(Resource::Node, Access::Read, &m.name)))
        .collect();
    let list = apply_filter(&opts, schema::agent_members(), list)?;
    let mut r = json(&ctx, &list);
    acl.mark(&mut r);
    Ok(r)
}

/// Listeners as Consul's `DebugConfig` lists them (`tcp://127.0.0.1:8500`);
/// none when the port is off.
fn listen_addrs(addrs: &[String], port: i64) -> Vec<String> {
    if port <= 0 {
        return Vec::new();
    }
    addrs
        .iter()
        .map(|a| match a.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(ip)) => format!("tcp://[{ip}]:{port}"),
            _ => format!("tcp://{a}:{port}"),
        })
        .collect()
}

async fn self_(ctx: Ctx) -> ApiResult {
    let a = &ctx.agent;
    let c = &a.config;
    let services = a.local.services().len();
    let checks = a.local.checks();
    let ttl_checks = checks.iter().filter(|c| c.check_type == "ttl").count();
    let mut meta = c.node_meta.clone();
    meta.insert("consul-network-segment".into(), String::new());
    meta.insert("consul-version".into(), COMPAT_VERSION.into());
    let body = json!({
        "Config": {
            "Datacenter": c.datacenter,
            "PrimaryDatacenter": if c.primary_datacenter.is_empty() { &c.datacenter } else { &c.primary_datacenter },
            "NodeName": a.node_name,
            "NodeID": a.node_id,
            "Revision": format!("meshgate-{VERSION}"),
            "Server": c.server,
            "Version": COMPAT_VERSION,
            "BuildDate": crate::BUILD_DATE,
            "BindAddr": a.advertise_addr(),
            "MeshgateVersion": VERSION,
        },
        "DebugConfig": {
            "Datacenter": c.datacenter,
            "NodeName": a.node_name,
            "NodeID": a.node_id,
            "ServerMode": c.server,
            "DevMode": c.dev,
            "DataDir": c.data_dir,
            "BindAddr": a.advertise_addr(),
            "ClientAddrs": c.http_addrs(),
            "HTTPPort": c.ports.http,
            "HTTPSPort": c.ports.https,
            "HTTPAddrs": listen_addrs(&c.http_addrs(), c.ports.http),
            "HTTPSAddrs": listen_addrs(&c.https_addrs(), c.ports.https),
            "DNSPort": c.ports.dns,
            "DNSAddrs": a.dns_addrs.lock().iter().flat_map(|sa| [format!("tcp://{sa}"), format!("udp://{sa}")]).collect::<Vec<_>>(),
            "DNSDomain": a.dns_settings().domain(crate::dns::Zone::Primary),
            "DNSAltDomain": if c.alt_domain.is_empty() { String::new() } else { a.dns_settings().domain(crate::dns::Zone::Alt) },
            "DNSRecursors": a.dns_settings().recursors.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "ServerPort": c.ports.server,
            "SerfPortLAN": c.ports.serf_lan,
            "SerfPortWAN": c.ports.serf_wan,
            "GRPCPort": c.ports.grpc,
            "GRPCTLSPort": c.ports.grpc_tls,
            // The mesh is always on here (Nomad reads this to offer
            // Connect).
            "ConnectEnabled": true,
            // No Go profiling endpoints here: `consul debug` then skips
            // its `pprof` capture instead of failing on it.
            "EnableDebug": false,
            "ACLsEnabled": c.acl.enabled,
            "ACLResolverSettings": { "ACLDefaultPolicy": c.acl.default_policy, "ACLDownPolicy": c.acl.down_policy },
            "KVMaxValueSize": c.kv_max_value_size(),
            "TxnMaxReqLen": c.txn_max_req_len(),
            "CheckOutputMaxSize": c.check_output_max_size,
            "EnableScriptChecks": c.enable_script_checks,
            "EnableLocalScriptChecks": c.enable_local_script_checks,
            "Logging": { "LogLevel": c.log_level, "LogJSON": c.log_json },
            "UIConfig": { "Enabled": c.ui_enabled() },
        },
        "Coord": { "Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05 },
        "Member": member(a),
        "Stats": {
            "agent": {
                "check_monitors": "0",
                "check_ttls": ttl_checks.to_string(),
                "checks": checks.len().to_string(),
                "services": services.to_string(),
            },
            "build": {
                "prerelease": "",
                "revision": "meshgate",
                "version": COMPAT_VERSION,
                "version_metadata": "",
            },
            "consul": {
                "acl": if c.acl.enabled { "enabled" } else { "disabled" },
                "bootstrap": (c.bootstrap || c.dev).to_string(),
                "known_datacenters": "1",
                "leader": a.is_leader().to_string(),
                "leader_addr": a.server_addr(),
                "server": c.server.to_string(),
            },
            "runtime": {
                "arch": std::env::consts::ARCH,
                "cpu_count": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string(),
                "os": std::env::consts::OS,
                "version": "rust",
            },
        },
        "Meta": meta,
    });
    Ok(json(&ctx, &body))
}
