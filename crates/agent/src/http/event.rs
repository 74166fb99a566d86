//! `/v1/event/*`: user events.
//!
//! Events are kept in the replicated state (the last 256), so every agent sees
//! every event; each agent lists the ones whose node, service and tag filters
//! match it.

use axum::http::Method;
use meshgate_acl::{Access, Resource};
use meshgate_state::{Command, Table, UserEvent};

use super::{
    AclRule, ApiError, ApiResult, Ctx, Route, blocking, handler, json, route, set_index_headers,
};
use crate::Agent;

/// Largest name plus payload (serf's user event limit).
pub const EVENT_SIZE_LIMIT: usize = 512;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::PUT,
            "/v1/event/fire/{name}",
            AclRule::Handler,
            handler!(fire),
        ),
        route(
            Method::GET,
            "/v1/event/list",
            AclRule::Handler,
            handler!(list),
        ),
    ]
}

fn compile(what: &str, re: &str) -> Result<Option<regex::Regex>, ApiError> {
    if re.is_empty() {
        return Ok(None);
    }
    regex::Regex::new(re)
        .map(Some)
        // (Consul answers every refusal of the event itself with 500.)
        .map_err(|e| ApiError::internal(format!("Invalid {what} filter: {e}")))
}

async fn fire(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing name"));
    }
    // The agent answers a refusal with the bare text, as Consul's does.
    if !ctx
        .identity()?
        .allows(Resource::Event, Access::Write, &name)
    {
        return Err(super::bare_denied());
    }
    let q = &ctx.query;
    let node = q.get("node").unwrap_or("").to_string();
    let service = q.get("service").unwrap_or("").to_string();
    let tag = q.get("tag").unwrap_or("").to_string();
    compile("node", &node)?;
    compile("service", &service)?;
    compile("tag", &tag)?;
    if !tag.is_empty() && service.is_empty() {
        return Err(ApiError::internal(
            "Cannot provide tag filter without service filter.",
        ));
    }
    if name.len() + ctx.body.len() > EVENT_SIZE_LIMIT {
        return Err(ApiError::internal(format!(
            "user event exceeds configured limit of {EVENT_SIZE_LIMIT} bytes before encoding"
        )));
    }
    let event = UserEvent {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        payload: if ctx.body.is_empty() {
            None
        } else {
            Some(ctx.body.to_vec())
        },
        node_filter: node,
        service_filter: service,
        tag_filter: tag,
        version: 1,
        ltime: 0,
    };
    ctx.agent
        .store
        .write(Command::FireEvent(Box::new(event.clone())))
        .await?;
    Ok(json(&ctx, &event))
}

/// Whether this agent receives an event (its filters match the node or a local
/// service).
pub fn matches_agent(agent: &Agent, e: &UserEvent) -> bool {
    if let Ok(Some(re)) = compile("node", &e.node_filter)
        && !re.is_match(&agent.node_name)
    {
        return false;
    }
    if e.service_filter.is_empty() {
        return true;
    }
    let Ok(Some(svc_re)) = compile("service", &e.service_filter) else {
        return false;
    };
    let tag_re = compile("tag", &e.tag_filter).ok().flatten();
    agent.local.services().iter().any(|s| {
        svc_re.is_match(&s.svc.service)
            && tag_re
                .as_ref()
                .is_none_or(|t| s.svc.tags.iter().any(|tag| t.is_match(tag)))
    })
}

async fn list(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let name = ctx.query.get("name").unwrap_or("").to_string();
    let agent = ctx.agent.clone();
    let (idx, events) = blocking(&ctx, &opts, &[Table::Events], |st| {
        let (idx, evs) = st.events();
        let list: Vec<UserEvent> = evs
            .iter()
            .filter(|e| name.is_empty() || e.name == name)
            .filter(|e| matches_agent(&agent, e))
            .cloned()
            .collect();
        (idx, list)
    })
    .await;
    let mut acl = super::AclFilter::new(&ctx)?;
    let events: Vec<UserEvent> = events
        .into_iter()
        .filter(|e| acl.keep(acl.id.allows(Resource::Event, Access::Read, &e.name)))
        .collect();
    let mut r = json(&ctx, &events);
    acl.mark(&mut r);
    set_index_headers(&mut r, idx);
    Ok(r)
}
