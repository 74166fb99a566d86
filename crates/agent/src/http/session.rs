//! `/v1/session/*`.

use std::time::Duration;

use axum::http::Method;
use meshgate_acl::{Access, Resource};
use meshgate_state::{Command, Table};
use meshgate_types::duration;
use meshgate_types::kv::{ServiceCheck, Session, behavior};
use serde_json::Value;

use super::{
    AclFilter, AclRule, ApiError, ApiResult, Ctx, Route, blocking, handler, json, route,
    set_index_headers,
};

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::PUT,
            "/v1/session/create",
            AclRule::Handler,
            handler!(create),
        ),
        route(
            Method::PUT,
            "/v1/session/destroy/{id}",
            AclRule::Handler,
            handler!(destroy),
        ),
        route(
            Method::PUT,
            "/v1/session/renew/{id}",
            AclRule::Handler,
            handler!(renew),
        ),
        route(
            Method::GET,
            "/v1/session/info/{id}",
            AclRule::Handler,
            handler!(info),
        ),
        route(
            Method::GET,
            "/v1/session/node/{node}",
            AclRule::Handler,
            handler!(node),
        ),
        route(
            Method::GET,
            "/v1/session/list",
            AclRule::Handler,
            handler!(list),
        ),
    ]
}

/// The longest TTL a session may have.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn string_list(v: &Value) -> Result<Vec<String>, ApiError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::bad_request("Request decode failed: checks must be strings")
                })
            })
            .collect(),
        _ => Err(ApiError::bad_request(
            "Request decode failed: json: cannot unmarshal into a list of strings",
        )),
    }
}

/// Builds the session from the request body with Consul's defaults and rules.
fn parse_create(ctx: &Ctx) -> Result<Session, ApiError> {
    let mut s = Session {
        node: ctx.agent.node_name.clone(),
        lock_delay: 15_000_000_000,
        behavior: behavior::RELEASE.into(),
        node_checks: Some(vec!["serfHealth".into()]),
        ..Default::default()
    };
    let mut checks: Option<Vec<String>> = Some(vec!["serfHealth".into()]);
    let body = ctx.json_body("Request")?;
    let obj = match body {
        Value::Null => serde_json::Map::new(),
        Value::Object(o) => o,
        _ => {
            return Err(ApiError::bad_request(
                "Request decode failed: json: cannot unmarshal into a session",
            ));
        }
    };
    let str_field = |name: &str| -> Result<Option<String>, ApiError> {
        match field(&obj, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(_) => Err(ApiError::bad_request(format!(
                "Request decode failed: json: cannot unmarshal {name} into a string"
            ))),
        }
    };
    if let Some(v) = str_field("Name")? {
        s.name = v;
    }
    if let Some(v) = str_field("Node")?
        && !v.is_empty()
    {
        s.node = v;
    }
    if let Some(v) = str_field("Behavior")? {
        s.behavior = v;
    }
    if let Some(v) = str_field("TTL")? {
        s.ttl = v;
    }
    match field(&obj, "LockDelay") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => {
            s.lock_delay = n.as_f64().unwrap_or(0.0).max(0.0) as u64;
        }
        Some(Value::String(d)) => {
            s.lock_delay = duration::parse(d)
                .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?
                .as_nanos() as u64;
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "Request decode failed: LockDelay must be a number or a duration string",
            ));
        }
    }
    // Small numbers are seconds.
    if s.lock_delay < 1000 {
        s.lock_delay *= 1_000_000_000;
    }
    if let Some(v) = field(&obj, "Checks") {
        checks = Some(string_list(v)?);
    }
    if let Some(v) = field(&obj, "NodeChecks") {
        s.node_checks = Some(string_list(v)?);
    }
    if let Some(v) = field(&obj, "ServiceChecks") {
        let list: Vec<ServiceCheck> = serde_json::from_value(v.clone())
            .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
        s.service_checks = Some(list);
    }
    // Consul's fix-up of the deprecated `Checks` field.
    match &checks {
        Some(c) if c.is_empty() => {
            s.node_checks = Some(Vec::new());
            checks = None;
        }
        Some(c) if c.len() == 1 && c[0] == "serfHealth" => checks = None,
        _ => {
            if s.node_checks.as_ref().is_none_or(Vec::is_empty) {
                checks = None;
            }
        }
    }
    s.checks = checks.unwrap_or_default();
    Ok(s)
}

async fn create(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let mut s = parse_create(&ctx)?;
    if s.node.is_empty() {
        return Err(ApiError::internal("Must provide Node"));
    }
    if s.behavior.is_empty() {
        s.behavior = behavior::RELEASE.into();
    }
    if s.behavior != behavior::RELEASE && s.behavior != behavior::DELETE {
        return Err(ApiError::internal(format!(
            "Invalid Behavior setting '{}'",
            s.behavior
        )));
    }
    ctx.require(Resource::Session, Access::Write, &s.node)?;
    if !s.ttl.is_empty() {
        let ttl = duration::parse(&s.ttl)
            .map_err(|e| ApiError::internal(format!("Session TTL '{}' invalid: {e}", s.ttl)))?;
        let min = ctx.agent.config.session_ttl_min();
        if !ttl.is_zero() && (ttl < min || ttl > MAX_TTL) {
            return Err(ApiError::internal(format!(
                "Invalid Session TTL '{}', must be between [{}={}]",
                ttl.as_nanos(),
                duration::format(min),
                duration::format(MAX_TTL)
            )));
        }
    }
    s.id = uuid::Uuid::new_v4().to_string();
    let id = s.id.clone();
    match ctx.agent.store.write(Command::SessionCreate(s)).await {
        Ok(_) => {}
        Err(crate::store::WriteError::Apply(e)) => {
            return Err(ApiError::internal(format!("apply failed: {e}")));
        }
        Err(e) => return Err(e.into()),
    }
    // The TTL runs from when `sessions::expire_ttls` (on the leader, in a
    // cluster) first sees the new session, within half a second.
    Ok(json(&ctx, &serde_json::json!({ "ID": id })))
}

async fn destroy(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let id = ctx.param(0).to_string();
    if id.is_empty() {
        return Err(ApiError::bad_request("Missing session"));
    }
    let node = ctx
        .agent
        .store
        .read()
        .session(&id)
        .1
        .map(|s| s.node.clone());
    if let Some(node) = node {
        ctx.require(Resource::Session, Access::Write, &node)?;
    }
    ctx.agent
        .store
        .write(Command::SessionDestroy { id: id.clone() })
        .await?;
    Ok(json(&ctx, &true))
}

async fn renew(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let id = ctx.param(0).to_string();
    if id.is_empty() {
        return Err(ApiError::bad_request("Missing session"));
    }
    let found = ctx.agent.store.read().session(&id).1.cloned();
    let Some(s) = found else {
        return Err(ApiError::not_found(format!("Session id '{id}' not found")));
    };
    ctx.require(Resource::Session, Access::Write, &s.node)?;
    match ctx.agent.store.cluster() {
        // The leader keeps the TTLs, whichever agent is asked.
        Some(c) => c
            .renew_session(&id, crate::store::LEADER_PATIENCE)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?,
        None => ctx.agent.sessions.renewed(&id),
    }
    Ok(json(&ctx, &[s]))
}

fn session_json(ctx: &Ctx, idx: u64, list: &[Session]) -> ApiResult {
    let mut acl = AclFilter::new(ctx)?;
    let list: Vec<&Session> = list
        .iter()
        .filter(|s| acl.keep(acl.id.allows(Resource::Session, Access::Read, &s.node)))
        .collect();
    let mut r = json(ctx, &list);
    acl.mark(&mut r);
    set_index_headers(&mut r, idx);
    Ok(r)
}

async fn info(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    if id.is_empty() {
        return Err(ApiError::bad_request("Missing session"));
    }
    let opts = ctx.query_options()?;
    let (idx, list) = blocking(&ctx, &opts, &[Table::Sessions], |st| {
        let (idx, s) = st.session(&id.to_lowercase());
        (idx, s.cloned().into_iter().collect::<Vec<_>>())
    })
    .await;
    session_json(&ctx, idx, &list)
}

async fn node(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing node name"));
    }
    let opts = ctx.query_options()?;
    let (idx, list) = blocking(&ctx, &opts, &[Table::Sessions], |st| {
        let (idx, l) = st.node_sessions(&name);
        (idx, l.into_iter().cloned().collect::<Vec<_>>())
    })
    .await;
    session_json(&ctx, idx, &list)
}

async fn list(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let (idx, list) = blocking(&ctx, &opts, &[Table::Sessions], |st| {
        let (idx, l) = st.sessions();
        (idx, l.into_iter().cloned().collect::<Vec<_>>())
    })
    .await;
    session_json(&ctx, idx, &list)
}
