//! `/v1/query`: prepared queries — stored service lookups with filters,
//! templates and failover, executed by ID or name.

use axum::http::Method;
use meshgate_acl::{Access, Resource};
use meshgate_state::{Command, State, Table};
use meshgate_types::catalog::{CheckServiceNode, status};
use meshgate_types::query::{PreparedQuery, ServiceQuery, TEMPLATE_NAME_PREFIX_MATCH};
use rand::seq::SliceRandom;
use serde::Serialize;

use super::catalog::{connect_instances, decode_body};
use super::{
    AclFilter, AclRule, ApiError, ApiResult, Ctx, Route, bare_denied, blocking, handler, json,
    json_read, route,
};

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::POST,
            "/v1/query",
            AclRule::Handler,
            handler!(create),
        ),
        route(Method::GET, "/v1/query", AclRule::Handler, handler!(list)),
        route(
            Method::GET,
            "/v1/query/{id}",
            AclRule::Handler,
            handler!(get),
        ),
        route(
            Method::PUT,
            "/v1/query/{id}",
            AclRule::Handler,
            handler!(update),
        ),
        route(
            Method::DELETE,
            "/v1/query/{id}",
            AclRule::Handler,
            handler!(delete),
        ),
        route(
            Method::GET,
            "/v1/query/{id}/execute",
            AclRule::Handler,
            handler!(execute),
        ),
        route(
            Method::GET,
            "/v1/query/{id}/explain",
            AclRule::Handler,
            handler!(explain),
        ),
    ]
}

const NOT_FOUND: &str = "Query not found";

/// Validates a query as Consul's `parseQuery` does.
fn validate(q: &PreparedQuery) -> Result<(), String> {
    if q.name.is_empty() && q.template.template_type.is_empty() && q.session.is_empty() {
        return Err("Must be bound to a session".into());
    }
    if q.token == "<hidden>" {
        return Err(format!(
            "Bad Token '{}', it looks like a query definition with a redacted token was submitted",
            q.token
        ));
    }
    if q.service.service.is_empty() {
        return Err("Must provide a Service name to query".into());
    }
    let f = &q.service.failover;
    if f.nearest_n < 0 {
        return Err(format!("Bad NearestN '{}', must be >= 0", f.nearest_n));
    }
    let has_dcs = f.datacenters.as_ref().is_some_and(|d| !d.is_empty());
    let has_targets = f.targets.as_ref().is_some_and(|t| !t.is_empty());
    if (f.nearest_n != 0 || has_dcs) && has_targets {
        return Err("Targets cannot be populated with NearestN or Datacenters".into());
    }
    if !q.dns.ttl.is_empty() {
        meshgate_types::duration::parse(&q.dns.ttl)
            .map_err(|e| format!("Bad DNS TTL '{}': {e}", q.dns.ttl))?;
    }
    match q.template.template_type.as_str() {
        "" => {}
        TEMPLATE_NAME_PREFIX_MATCH => {
            if !q.template.regexp.is_empty() {
                regex::Regex::new(&q.template.regexp)
                    .map_err(|e| format!("Invalid template: Bad Regexp: {e}"))?;
            }
            // Every interpolation must be one we can evaluate.
            render(q, &q.name, "")?;
        }
        other => return Err(format!("Bad Template.Type '{other}'")),
    }
    Ok(())
}

/// Evaluates `${...}` in one string.
fn interpolate(s: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("Bad evaluation for '{s}': unclosed \"${{\""));
        };
        let expr = after[..end].trim();
        let value = vars(expr)
            .ok_or_else(|| format!("Bad evaluation for '{s}': unknown expression \"{expr}\""))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders a template for the name it was invoked with.
fn render(q: &PreparedQuery, name: &str, segment: &str) -> Result<PreparedQuery, String> {
    if q.template.template_type.is_empty() {
        return Ok(q.clone());
    }
    let matches: Vec<String> = if q.template.regexp.is_empty() {
        Vec::new()
    } else {
        let re = regex::Regex::new(&q.template.regexp).map_err(|e| e.to_string())?;
        re.captures(name)
            .map(|c| {
                c.iter()
                    .map(|m| m.map(|m| m.as_str().to_string()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    };
    let prefix = q.name.clone();
    let vars = |expr: &str| -> Option<String> {
        match expr {
            "name.full" => Some(name.to_string()),
            "name.prefix" => Some(prefix.clone()),
            "name.suffix" => Some(name.strip_prefix(&prefix).unwrap_or(name).to_string()),
            "agent.segment" => Some(segment.to_string()),
            e => {
                let n: usize = e
                    .strip_prefix("match(")?
                    .strip_suffix(')')?
                    .trim()
                    .parse()
                    .ok()?;
                Some(matches.get(n).cloned().unwrap_or_default())
            }
        }
    };
    let mut out = q.clone();
    let s: &mut ServiceQuery = &mut out.service;
    s.service = interpolate(&s.service, &vars)?;
    s.near = interpolate(&s.near, &vars)?;
    s.peer = interpolate(&s.peer, &vars)?;
    s.sameness_group = interpolate(&s.sameness_group, &vars)?;
    for list in [
        &mut s.tags,
        &mut s.ignore_check_ids,
        &mut s.failover.datacenters,
    ]
    .into_iter()
    .flatten()
    {
        for v in list.iter_mut() {
            *v = interpolate(v, &vars)?;
        }
    }
    for map in [&mut s.node_meta, &mut s.service_meta]
        .into_iter()
        .flatten()
    {
        for v in map.values_mut() {
            *v = interpolate(v, &vars)?;
        }
    }
    if let (true, Some(tags)) = (q.template.remove_empty_tags, &mut s.tags) {
        tags.retain(|t| !t.is_empty());
    }
    Ok(out)
}

/// Runs a (rendered) query against the state.
fn run(st: &State, q: &PreparedQuery, force_connect: bool) -> Vec<CheckServiceNode> {
    let svc = &q.service;
    let mut nodes: Vec<CheckServiceNode> = if svc.connect || force_connect {
        connect_instances(st, &svc.service)
            .into_iter()
            .map(|(n, s)| st.check_service_node(n, s))
            .collect()
    } else {
        st.check_service_nodes(&svc.service, &[]).1
    };
    let ignore: Vec<&str> = svc
        .ignore_check_ids
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    nodes.retain(|e| {
        e.checks
            .iter()
            .filter(|c| !ignore.contains(&c.check_id.as_str()))
            .all(|c| {
                if svc.only_passing {
                    c.status == status::PASSING
                } else {
                    c.status != status::CRITICAL
                }
            })
    });
    if let Some(meta) = &svc.node_meta {
        nodes.retain(|e| {
            meta.iter()
                .all(|(k, v)| e.node.meta.as_ref().and_then(|m| m.get(k)) == Some(v))
        });
    }
    if let Some(meta) = &svc.service_meta {
        nodes.retain(|e| meta.iter().all(|(k, v)| e.service.meta.get(k) == Some(v)));
    }
    if let Some(tags) = &svc.tags {
        nodes.retain(|e| {
            tags.iter().all(|t| {
                let (negate, tag) = match t.strip_prefix('!') {
                    Some(rest) => (true, rest),
                    None => (false, t.as_str()),
                };
                let has = e.service.tags.iter().any(|st| st.eq_ignore_ascii_case(tag));
                has != negate
            })
        });
    }
    nodes
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExecuteResponse {
    service: String,
    nodes: Vec<CheckServiceNode>,
    #[serde(rename = "DNS")]
    dns: meshgate_types::query::QueryDnsOptions,
    datacenter: String,
    failovers: usize,
    index: u64,
    last_contact: u64,
    known_leader: bool,
    consistency_level: String,
    not_modified: bool,
    backend: u64,
    // Go's field name, which PascalCase would spell `ResultsFilteredByAcls`.
    #[serde(rename = "ResultsFilteredByACLs")]
    results_filtered_by_acls: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExplainResponse {
    query: PreparedQuery,
    index: u64,
    last_contact: u64,
    known_leader: bool,
    consistency_level: String,
    not_modified: bool,
    backend: u64,
    // Go's field name, which PascalCase would spell `ResultsFilteredByAcls`.
    #[serde(rename = "ResultsFilteredByACLs")]
    results_filtered_by_acls: bool,
}

fn decode_query(ctx: &Ctx) -> Result<PreparedQuery, ApiError> {
    decode_body(ctx)
}

/// The ACL name of a query: its name, for named and template queries.
fn acl_name(q: &PreparedQuery) -> Option<&str> {
    (!q.name.is_empty() || !q.template.template_type.is_empty()).then_some(q.name.as_str())
}

/// Whether the caller may see a query; the stored token is hidden unless the
/// caller has `acl:write`.
fn visible(id: &crate::acl::Identity, mut q: PreparedQuery) -> Option<PreparedQuery> {
    let manage = id.authz.acl_write();
    if let Some(name) = acl_name(&q)
        && !manage
        && !id.allows(Resource::Query, Access::Read, name)
    {
        return None;
    }
    if !manage && !q.token.is_empty() {
        q.token = "<hidden>".into();
    }
    Some(q)
}

async fn create(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let mut q = decode_query(&ctx)?;
    if !q.id.is_empty() {
        return Err(ApiError::internal(
            "ID must be empty when creating a new prepared query",
        ));
    }
    if let Some(name) = acl_name(&q) {
        ctx.require(Resource::Query, Access::Write, name)?;
    }
    validate(&q).map_err(|e| ApiError::internal(format!("Invalid prepared query: {e}")))?;
    q.id = uuid::Uuid::new_v4().to_string();
    let id = q.id.clone();
    ctx.agent
        .store
        .write(Command::QuerySet(Box::new(q)))
        .await
        .map_err(|e| ApiError::internal(format!("raft apply failed: {e}")))?;
    Ok(json(&ctx, &serde_json::json!({ "ID": id })))
}

async fn list(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let (idx, list) = blocking(&ctx, &opts, &[Table::Queries], |st| {
        let (idx, l) = st.prepared_queries();
        (idx, l.into_iter().cloned().collect::<Vec<_>>())
    })
    .await;
    let mut acl = AclFilter::new(&ctx)?;
    let manage = acl.id.authz.acl_write();
    let list: Vec<PreparedQuery> = list
        .into_iter()
        .filter_map(|q| {
            // Unnamed queries are listed only to managers.
            if acl_name(&q).is_none() && !manage {
                acl.removed = true;
                return None;
            }
            let v = visible(&acl.id, q);
            acl.keep(v.is_some());
            v
        })
        .collect();
    let mut r = json_read(&ctx, &opts, idx, &list);
    acl.mark(&mut r);
    Ok(r)
}

async fn get(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    let opts = ctx.query_options()?;
    let (idx, found) = blocking(&ctx, &opts, &[Table::Queries], |st| {
        let (idx, q) = st.prepared_query(&id);
        (idx, q.cloned())
    })
    .await;
    let Some(q) = found else {
        return Err(ApiError::not_found(NOT_FOUND));
    };
    let Some(q) = visible(&ctx.identity()?, q) else {
        return Err(bare_denied());
    };
    Ok(json_read(&ctx, &opts, idx, &[q]))
}

async fn update(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let id = ctx.param(0).to_string();
    let mut q = decode_query(&ctx)?;
    if !q.id.is_empty() && q.id != id {
        return Err(ApiError::bad_request(
            "Query ID in URL and payload do not match",
        ));
    }
    q.id = id.clone();
    let existing = ctx.agent.store.read().prepared_query(&id).1.cloned();
    let Some(existing) = existing else {
        return Err(ApiError::internal(format!(
            "Cannot modify non-existent prepared query: '{id}'"
        )));
    };
    if let Some(name) = acl_name(&q) {
        ctx.require(Resource::Query, Access::Write, name)?;
    }
    if let Some(name) = acl_name(&existing) {
        ctx.require(Resource::Query, Access::Write, name)?;
    }
    validate(&q).map_err(|e| ApiError::internal(format!("Invalid prepared query: {e}")))?;
    ctx.agent
        .store
        .write(Command::QuerySet(Box::new(q)))
        .await
        .map_err(|e| ApiError::internal(format!("raft apply failed: {e}")))?;
    Ok(super::empty())
}

async fn delete(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let id = ctx.param(0).to_string();
    let existing = ctx.agent.store.read().prepared_query(&id).1.cloned();
    let Some(existing) = existing else {
        return Err(ApiError::internal(format!(
            "Cannot modify non-existent prepared query: '{id}'"
        )));
    };
    if let Some(name) = acl_name(&existing) {
        ctx.require(Resource::Query, Access::Write, name)?;
    }
    ctx.agent.store.write(Command::QueryDelete { id }).await?;
    Ok(super::empty())
}

fn resolve_rendered(st: &State, id_or_name: &str) -> Result<PreparedQuery, ApiError> {
    let q = st
        .prepared_query_resolve(id_or_name)
        .ok_or_else(|| ApiError::not_found(NOT_FOUND))?;
    render(q, id_or_name, "").map_err(ApiError::internal)
}

/// A prepared query run for a caller.
pub(crate) struct Executed {
    /// The query as it ran (templates rendered).
    pub query: PreparedQuery,
    /// The instances, filtered by ACLs, shuffled and cut at the limit.
    pub nodes: Vec<CheckServiceNode>,
    /// Datacenters counted as tried when nothing answered locally.
    pub failovers: usize,
}

/// Resolves (by ID or name, templates rendered), runs and filters a prepared
/// query: the one implementation behind `/v1/query/:id/execute` and the DNS
/// interface's `<query>.query.<domain>`.
///
/// Results are filtered with the query's own token when it has one, else with
/// the caller's identity (`caller` is asked only then). Unknown queries are
/// `404 Query not found`.
pub(crate) fn execute_query(
    agent: &crate::Agent,
    id_or_name: &str,
    caller: impl FnOnce() -> Result<crate::acl::Identity, ApiError>,
    force_connect: bool,
    limit: usize,
    near: Option<&str>,
    source_ip: Option<std::net::IpAddr>,
) -> Result<Executed, ApiError> {
    let (q, mut nodes) = {
        let st = agent.store.read();
        let q = resolve_rendered(&st, id_or_name)?;
        let nodes = run(&st, &q, force_connect);
        (q, nodes)
    };
    let filter_id = if q.token.is_empty() {
        caller()?
    } else {
        agent.resolve_token(&q.token)?
    };
    nodes.retain(|e| {
        filter_id.allows(Resource::Node, Access::Read, &e.node.node)
            && filter_id.allows(Resource::Service, Access::Read, &e.service.service)
    });
    nodes.shuffle(&mut rand::rng());
    // `?near=` on the request, else the query's `Near`: nearest first
    // (the shuffle stays among equals), before the limit.
    let near = near
        .filter(|n| !n.is_empty())
        .unwrap_or(q.service.near.as_str());
    if let Some(source) = near_node(agent, near, source_ip) {
        super::sort_near_from(agent, &source, &mut nodes, |e| &e.node.node);
        // The node asked for answers first even without coordinates, as
        // Consul puts it there (searching its first ten).
        if let Some(i) = nodes
            .iter()
            .take(10)
            .position(|e| e.node.node.eq_ignore_ascii_case(&source))
        {
            nodes.swap(0, i);
        }
    }
    if limit > 0 {
        nodes.truncate(limit);
    }
    // Failover, as Consul's: datacenters it does not know are skipped
    // without counting, and meshgate knows no other datacenter than its own
    // (itself never a failover target); a peer target is tried — and fails,
    // meshgate having no peerings — and counted.
    let failovers = if nodes.is_empty() {
        q.service
            .failover
            .targets
            .iter()
            .flatten()
            .filter(|t| !t.peer.is_empty())
            .count()
    } else {
        0
    };
    Ok(Executed {
        query: q,
        nodes,
        failovers,
    })
}

/// The node a prepared query's results are sorted from: `Near` (or
/// `?near=`) names it; `_agent` is this agent's node, `_ip` the node whose
/// address is the client's (none when no node has it: the results stay
/// shuffled).
fn near_node(
    agent: &crate::Agent,
    near: &str,
    source_ip: Option<std::net::IpAddr>,
) -> Option<String> {
    match near {
        "" => None,
        "_agent" => Some(agent.node_name.clone()),
        "_ip" => {
            let Some(ip) = source_ip else {
                tracing::warn!(
                    "prepared query with near=_ip: the client's address is not known, so the results are not sorted by distance"
                );
                return None;
            };
            // A v4 client on a dual-stack listener shows as `::ffff:a.b.c.d`.
            let ip = ip.to_canonical().to_string();
            // The first by name, as the nodes are kept.
            let st = agent.store.read();
            let (_, nodes) = st.nodes();
            nodes
                .iter()
                .find(|n| n.address == ip)
                .map(|n| n.node.clone())
        }
        node => Some(node.to_string()),
    }
}

async fn execute(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    let opts = ctx.query_options()?;
    let limit = match ctx.query.get("limit") {
        None => 0,
        Some(l) => l
            .parse::<usize>()
            .map_err(|e| ApiError::internal(format!("Bad limit: {e}")))?,
    };
    let force_connect = match ctx.query.get("connect") {
        None | Some("") => false,
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => true,
            "0" | "f" | "false" => false,
            _ => {
                return Err(ApiError::internal(format!(
                    "Error parsing 'connect' value: strconv.ParseBool: parsing {v:?}: invalid syntax"
                )));
            }
        },
    };
    let Executed {
        query: q,
        nodes,
        failovers,
    } = execute_query(
        &ctx.agent,
        &id,
        || ctx.identity(),
        force_connect,
        limit,
        ctx.query.get("near"),
        ctx.source_ip(),
    )?;
    let idx = ctx.agent.store.read().tables().get(Table::Queries);
    let body = ExecuteResponse {
        service: q.service.service.clone(),
        nodes,
        dns: q.dns.clone(),
        datacenter: ctx.agent.config.datacenter.clone(),
        failovers,
        index: idx.max(1),
        last_contact: 0,
        known_leader: true,
        consistency_level: "leader".into(),
        not_modified: false,
        backend: 0,
        results_filtered_by_acls: false,
    };
    Ok(json_read(&ctx, &opts, idx, &body))
}

async fn explain(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    let opts = ctx.query_options()?;
    let (idx, q) = {
        let st = ctx.agent.store.read();
        (st.tables().get(Table::Queries), resolve_rendered(&st, &id)?)
    };
    let Some(q) = visible(&ctx.identity()?, q) else {
        return Err(bare_denied());
    };
    let body = ExplainResponse {
        query: q,
        index: idx.max(1),
        last_contact: 0,
        known_leader: true,
        consistency_level: "leader".into(),
        not_modified: false,
        backend: 0,
        results_filtered_by_acls: false,
    };
    Ok(json_read(&ctx, &opts, idx, &body))
}

#[cfg(test)]
mod tests {
    use meshgate_types::query::QueryTemplateOptions;

    use super::*;

    #[test]
    fn templates_render() {
        let q = PreparedQuery {
            name: "geo-db-".into(),
            template: QueryTemplateOptions {
                template_type: TEMPLATE_NAME_PREFIX_MATCH.into(),
                regexp: "^geo-db-(.*?)-([^\\-]+?)$".into(),
                remove_empty_tags: true,
            },
            service: ServiceQuery {
                service: "mysql-${match(1)}".into(),
                tags: Some(vec!["${match(2)}".into(), "${match(9)}".into()]),
                ..Default::default()
            },
            ..Default::default()
        };
        let r = render(&q, "geo-db-customer-primary", "").unwrap();
        assert_eq!(r.service.service, "mysql-customer");
        assert_eq!(r.service.tags, Some(vec!["primary".to_string()]));
        let mut bad = q.clone();
        bad.service.service = "${nope}".into();
        assert!(validate(&bad).unwrap_err().contains("unknown expression"));
    }

    #[test]
    fn validation_messages() {
        let q = PreparedQuery::default();
        assert_eq!(validate(&q).unwrap_err(), "Must be bound to a session");
        let q = PreparedQuery {
            name: "x".into(),
            ..Default::default()
        };
        assert_eq!(
            validate(&q).unwrap_err(),
            "Must provide a Service name to query"
        );
    }
}
