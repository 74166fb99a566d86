//! `/v1/acl/*` and `/v1/agent/token/*`: bootstrap, policies, tokens, roles,
//! templated policies, auth methods, binding rules, login and logout.

use std::time::Duration;

use axum::http::Method;
use blake2::{Blake2b, Digest, digest::consts::U32};
use meshgate_acl::{Access, Resource};
use meshgate_state::{Command, Table};
use meshgate_types::acl::{
    ANONYMOUS_ACCESSOR, AclAuthMethod, AclBindingRule, AclPolicy, AclRole, AclToken, Link,
    NodeIdentity, ServiceIdentity, TemplatedPolicyRef, token_expired,
};
use meshgate_types::lenient::{self, Options};
use serde::Serialize;
use serde_json::{Value, json};

use super::catalog::go_json_error;
use super::{
    AclRule, ApiError, ApiResult, Ctx, Route, blocking, empty, handler, json, json_read, route,
};
use crate::store::now_ms;

const READ: AclRule = AclRule::Global(Resource::Acl, Access::Read);
const WRITE: AclRule = AclRule::Global(Resource::Acl, Access::Write);

pub(super) fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(
            M::PUT,
            "/v1/acl/bootstrap",
            AclRule::None,
            handler!(bootstrap),
        ),
        route(
            M::GET,
            "/v1/acl/replication",
            AclRule::None,
            handler!(replication),
        ),
        route(M::POST, "/v1/acl/login", AclRule::None, handler!(login)),
        route(
            M::POST,
            "/v1/acl/logout",
            AclRule::Handler,
            handler!(logout),
        ),
        route(M::GET, "/v1/acl/policies", READ, handler!(policy_list)),
        route(M::PUT, "/v1/acl/policy", WRITE, handler!(policy_create)),
        route(M::GET, "/v1/acl/policy/{id}", READ, handler!(policy_read)),
        route(
            M::PUT,
            "/v1/acl/policy/{id}",
            WRITE,
            handler!(policy_update),
        ),
        route(
            M::DELETE,
            "/v1/acl/policy/{id}",
            WRITE,
            handler!(policy_delete),
        ),
        route(
            M::GET,
            "/v1/acl/policy/name/{name}",
            READ,
            handler!(policy_read_by_name),
        ),
        route(M::GET, "/v1/acl/tokens", READ, handler!(token_list)),
        route(M::PUT, "/v1/acl/token", WRITE, handler!(token_create)),
        route(
            M::GET,
            "/v1/acl/token/self",
            AclRule::Handler,
            handler!(token_self),
        ),
        route(M::GET, "/v1/acl/token/{id}", READ, handler!(token_read)),
        route(M::PUT, "/v1/acl/token/{id}", WRITE, handler!(token_update)),
        route(
            M::DELETE,
            "/v1/acl/token/{id}",
            WRITE,
            handler!(token_delete),
        ),
        route(
            M::PUT,
            "/v1/acl/token/{id}/clone",
            WRITE,
            handler!(token_clone),
        ),
        route(M::GET, "/v1/acl/roles", READ, handler!(role_list)),
        route(M::PUT, "/v1/acl/role", WRITE, handler!(role_create)),
        route(M::GET, "/v1/acl/role/{id}", READ, handler!(role_read)),
        route(M::PUT, "/v1/acl/role/{id}", WRITE, handler!(role_update)),
        route(M::DELETE, "/v1/acl/role/{id}", WRITE, handler!(role_delete)),
        route(
            M::GET,
            "/v1/acl/role/name/{name}",
            READ,
            handler!(role_read_by_name),
        ),
        route(
            M::GET,
            "/v1/acl/templated-policies",
            READ,
            handler!(templated_list),
        ),
        route(
            M::GET,
            "/v1/acl/templated-policy/name/{*name}",
            READ,
            handler!(templated_read),
        ),
        route(
            M::POST,
            "/v1/acl/templated-policy/preview/{*name}",
            READ,
            handler!(templated_preview),
        ),
        route(M::GET, "/v1/acl/auth-methods", READ, handler!(method_list)),
        route(
            M::PUT,
            "/v1/acl/auth-method",
            WRITE,
            handler!(method_create),
        ),
        route(
            M::GET,
            "/v1/acl/auth-method/{name}",
            READ,
            handler!(method_read),
        ),
        route(
            M::PUT,
            "/v1/acl/auth-method/{name}",
            WRITE,
            handler!(method_update),
        ),
        route(
            M::DELETE,
            "/v1/acl/auth-method/{name}",
            WRITE,
            handler!(method_delete),
        ),
        route(M::GET, "/v1/acl/binding-rules", READ, handler!(rule_list)),
        route(M::PUT, "/v1/acl/binding-rule", WRITE, handler!(rule_create)),
        route(
            M::GET,
            "/v1/acl/binding-rule/{id}",
            READ,
            handler!(rule_read),
        ),
        route(
            M::PUT,
            "/v1/acl/binding-rule/{id}",
            WRITE,
            handler!(rule_update),
        ),
        route(
            M::DELETE,
            "/v1/acl/binding-rule/{id}",
            WRITE,
            handler!(rule_delete),
        ),
        route(
            M::PUT,
            "/v1/agent/token/{kind}",
            AclRule::AgentNode(Access::Write),
            handler!(agent_token),
        ),
        route(
            M::POST,
            "/v1/internal/acl/authorize",
            AclRule::Handler,
            handler!(internal_authorize),
        ),
    ]
}

// === shared ===

/// 401 when ACLs are off.
fn enabled(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.agent.acl.enabled {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            meshgate_acl::ERR_DISABLED,
        ))
    }
}

/// BLAKE2b-256 over the parts, base64 (Consul's `Hash` fields).
fn hash(parts: &[&str]) -> String {
    use base64::Engine;
    let mut h = Blake2b::<U32>::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

fn decode<T: serde::de::DeserializeOwned>(ctx: &Ctx, what: &str) -> Result<T, ApiError> {
    if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request(format!(
            "{what} decoding failed: EOF"
        )));
    }
    let v: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("{what} decoding failed: {e}")))?;
    lenient::from_value(v, Options { deny_unknown: true }).map_err(|e| {
        ApiError::bad_request(format!("{what} decoding failed: {}", go_json_error(&e)))
    })
}

async fn write(ctx: &Ctx, cmd: Command, what: &str) -> Result<(), ApiError> {
    ctx.agent.store.write(cmd).await.map(|_| ()).map_err(|e| {
        let m = e.to_string();
        if m.contains("Permission denied") {
            ApiError::forbidden(m)
        } else if what.is_empty() {
            ApiError::internal(m)
        } else {
            ApiError::internal(format!("{what}: {m}"))
        }
    })
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

const RESERVED_PREFIX: &str = "00000000-0000-0000-0000-0000000000";

fn token_hash(t: &AclToken) -> String {
    let mut parts: Vec<String> = vec![
        t.description.clone(),
        if t.local {
            "local".into()
        } else {
            "global".into()
        },
    ];
    parts.extend(t.policies.iter().map(|l| l.id.clone()));
    parts.extend(t.roles.iter().map(|l| l.id.clone()));
    for s in &t.service_identities {
        parts.push(s.service_name.clone());
        parts.extend(s.datacenters.iter().cloned());
    }
    for n in &t.node_identities {
        parts.push(n.node_name.clone());
        parts.push(n.datacenter.clone());
    }
    for tp in &t.templated_policies {
        parts.push(tp.template_name.clone());
        if let Some(v) = &tp.template_variables {
            parts.push(v.to_string());
        }
        parts.extend(tp.datacenters.iter().cloned());
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    hash(&refs)
}

fn policy_hash(p: &AclPolicy) -> String {
    let mut parts = vec![p.name.as_str(), p.description.as_str(), p.rules.as_str()];
    for d in p.datacenters.iter().flatten() {
        parts.push(d);
    }
    hash(&parts)
}

fn role_hash(r: &AclRole) -> String {
    let mut parts: Vec<String> = vec![r.name.clone(), r.description.clone()];
    parts.extend(r.policies.iter().map(|l| l.id.clone()));
    for s in &r.service_identities {
        parts.push(s.service_name.clone());
        parts.extend(s.datacenters.iter().cloned());
    }
    for n in &r.node_identities {
        parts.push(n.node_name.clone());
        parts.push(n.datacenter.clone());
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    hash(&refs)
}

/// The built-in policies and the anonymous token, installed when ACLs start.
pub fn builtins() -> (Vec<AclPolicy>, Vec<AclToken>) {
    let policies = meshgate_acl::builtin_policies()
        .iter()
        .map(|b| {
            let mut p = AclPolicy {
                id: b.id.into(),
                name: b.name.into(),
                description: b.description.into(),
                rules: b.rules.into(),
                datacenters: None,
                ..Default::default()
            };
            p.hash = policy_hash(&p);
            p
        })
        .collect();
    let mut anon = AclToken {
        accessor_id: ANONYMOUS_ACCESSOR.into(),
        secret_id: meshgate_types::acl::ANONYMOUS_SECRET.into(),
        description: "Anonymous Token".into(),
        create_time: meshgate_types::time::format_rfc3339_ms(now_ms()),
        ..Default::default()
    };
    anon.hash = token_hash(&anon);
    (policies, vec![anon])
}

/// The token the `initial_management` setting creates.
pub fn initial_management_token(secret: &str) -> AclToken {
    let mut t = AclToken {
        accessor_id: new_uuid(),
        secret_id: secret.into(),
        description: "Initial Management Token".into(),
        policies: vec![Link {
            id: meshgate_acl::GLOBAL_MANAGEMENT_POLICY_ID.into(),
            name: meshgate_acl::GLOBAL_MANAGEMENT_POLICY_NAME.into(),
        }],
        create_time: meshgate_types::time::format_rfc3339_ms(now_ms()),
        ..Default::default()
    };
    t.hash = token_hash(&t);
    t
}

// === bootstrap ===

async fn bootstrap(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Body {
        bootstrap_secret: String,
    }
    let body: Body = if ctx.body.is_empty() {
        Body::default()
    } else {
        let v: Value = serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))?;
        lenient::from_value(v, Options::default())
            .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))?
    };
    let done = ctx.agent.store.read().acl_bootstrap_index();
    let mut reset = None;
    if let Some(n) = done {
        let file = std::path::Path::new(&ctx.agent.config.data_dir).join("acl-bootstrap-reset");
        let given = if ctx.agent.config.data_dir.is_empty() {
            None
        } else {
            std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        match given {
            None => {
                return Err(ApiError::forbidden(format!(
                    "Permission denied: ACL bootstrap no longer allowed (reset index: {n})"
                )));
            }
            Some(g) if g != n => {
                return Err(ApiError::internal(format!(
                    "Invalid bootstrap reset index (specified {g}, reset index: {n})"
                )));
            }
            Some(g) => {
                let _ = std::fs::remove_file(&file);
                reset = Some(g);
            }
        }
    }
    let secret = if body.bootstrap_secret.is_empty() {
        new_uuid()
    } else {
        if !is_uuid(&body.bootstrap_secret) {
            return Err(ApiError::internal("uuid string is wrong length"));
        }
        let taken = {
            let st = ctx.agent.store.read();
            st.acl_token_by_secret(&body.bootstrap_secret).is_some()
                || st.acl_token(&body.bootstrap_secret).is_some()
        };
        if taken || body.bootstrap_secret.starts_with(RESERVED_PREFIX) {
            return Err(ApiError::internal(
                "Provided token cannot be used because a token with that secret already exists.",
            ));
        }
        body.bootstrap_secret.clone()
    };
    let mut t = initial_management_token(&secret);
    t.description = "Bootstrap Token (Global Management)".into();
    t.hash = token_hash(&t);
    let accessor = t.accessor_id.clone();
    write(
        &ctx,
        Command::AclBootstrap {
            token: Box::new(t),
            reset_index: reset,
        },
        "",
    )
    .await?;
    let t = ctx
        .agent
        .store
        .read()
        .acl_token(&accessor)
        .ok_or_else(|| ApiError::internal("bootstrap token missing after write"))?;
    let mut v = serde_json::to_value(&t).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Value::Object(m) = &mut v {
        let mut out = serde_json::Map::new();
        out.insert("ID".into(), Value::String(t.secret_id.clone()));
        out.extend(std::mem::take(m));
        *m = out;
    }
    Ok(json(&ctx, &v))
}

async fn replication(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    Ok(json(
        &ctx,
        &json!({
            "Enabled": false, "Running": false, "SourceDatacenter": "", "ReplicationType": "",
            "ReplicatedIndex": 0, "ReplicatedRoleIndex": 0, "ReplicatedTokenIndex": 0,
            "LastSuccess": "0001-01-01T00:00:00Z", "LastError": "0001-01-01T00:00:00Z",
            "LastErrorMessage": ""
        }),
    ))
}

// === policies ===

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyStub {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    description: String,
    datacenters: Option<Vec<String>>,
    hash: String,
    create_index: u64,
    modify_index: u64,
}

fn policy_out(p: &AclPolicy) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v
        && p.datacenters.as_ref().is_none_or(Vec::is_empty)
    {
        m.remove("Datacenters");
    }
    v
}

async fn policy_list(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let opts = ctx.query_options()?;
    let (idx, list) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        let mut l: Vec<PolicyStub> = st
            .acl_policies()
            .into_iter()
            .map(|p| PolicyStub {
                id: p.id.clone(),
                name: p.name.clone(),
                description: p.description.clone(),
                datacenters: p.datacenters.clone().filter(|d| !d.is_empty()),
                hash: p.hash.clone(),
                create_index: p.create_index,
                modify_index: p.modify_index,
            })
            .collect();
        l.sort_by_key(|p| p.name.to_lowercase());
        (st.acl_index(), l)
    })
    .await;
    Ok(json_read(&ctx, &opts, idx, &list))
}

fn validate_policy_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::internal("Invalid Policy: no Name is set"));
    }
    if name.len() > 128 {
        return Err(ApiError::internal(
            "Invalid Policy: invalid Name. Length must be greater than 0 and less than 128",
        ));
    }
    if name.starts_with('/') || name.starts_with("builtin/") {
        return Err(ApiError::internal(
            "Invalid Policy: invalid Name. Names cannot be prefixed with '/' or 'builtin/'",
        ));
    }
    let ok = {
        let mut parts = name.splitn(2, '/');
        let a = parts.next().unwrap_or("");
        let b = parts.next().unwrap_or("");
        let good = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        !a.is_empty() && good(a) && good(b)
    };
    if !ok {
        return Err(ApiError::internal(
            "Invalid Policy: invalid Name. Only alphanumeric characters, a single '/', '-' and '_' are allowed",
        ));
    }
    Ok(())
}

async fn save_policy(ctx: &Ctx, mut p: AclPolicy, create: bool) -> ApiResult {
    let builtin = meshgate_acl::builtin_policies()
        .into_iter()
        .find(|b| b.id == p.id);
    if builtin.is_none() {
        validate_policy_name(&p.name)?;
    } else if p.name.is_empty() {
        return Err(ApiError::internal("Invalid Policy: no Name is set"));
    }
    {
        let st = ctx.agent.store.read();
        if !create {
            if !is_uuid(&p.id) {
                return Err(ApiError::internal("Policy ID invalid UUID"));
            }
            let Some(existing) = st.acl_policy(&p.id) else {
                return Err(ApiError::internal(format!("cannot find policy {}", p.id)));
            };
            if let Some(b) = &builtin {
                if p.datacenters.is_some() {
                    return Err(ApiError::internal(format!(
                        "Changing the Datacenters of the {} policy is not permitted",
                        b.name
                    )));
                }
                if p.rules != existing.rules {
                    return Err(ApiError::internal(format!(
                        "Changing the Rules for the builtin {} policy is not permitted",
                        b.name
                    )));
                }
            }
            if !existing.name.eq_ignore_ascii_case(&p.name)
                && st
                    .acl_policies()
                    .iter()
                    .any(|o| o.id != p.id && o.name.eq_ignore_ascii_case(&p.name))
            {
                return Err(ApiError::internal(format!(
                    "Invalid Policy: A policy with name \"{}\" already exists",
                    p.name
                )));
            }
        } else if st
            .acl_policies()
            .iter()
            .any(|o| o.name.eq_ignore_ascii_case(&p.name))
        {
            return Err(ApiError::internal(format!(
                "Invalid Policy: A Policy with Name \"{}\" already exists",
                p.name
            )));
        }
    }
    if !p.rules.trim().is_empty() {
        meshgate_acl::parse_rules(&p.rules).map_err(|e| ApiError::internal(e.message()))?;
    }
    p.hash = policy_hash(&p);
    let id = p.id.clone();
    write(
        ctx,
        Command::AclPolicySet(Box::new(p)),
        "Failed to apply policy upsert request",
    )
    .await?;
    let p = ctx
        .agent
        .store
        .read()
        .acl_policy(&id)
        .cloned()
        .ok_or_else(|| ApiError::internal("policy missing after write"))?;
    Ok(json(ctx, &policy_out(&p)))
}

async fn policy_create(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let mut p: AclPolicy = decode(&ctx, "Policy")?;
    if !p.id.is_empty() {
        return Err(ApiError::bad_request(
            "Cannot specify the ID when creating a new policy",
        ));
    }
    p.id = new_uuid();
    save_policy(&ctx, p, true).await
}

async fn policy_update(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let id = ctx.param(0).to_string();
    let mut p: AclPolicy = decode(&ctx, "Policy")?;
    if p.id.is_empty() {
        p.id = id.clone();
    } else if p.id != id {
        return Err(ApiError::bad_request(
            "Policy ID in URL and payload do not match",
        ));
    }
    save_policy(&ctx, p, false).await
}

async fn policy_read(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let id = ctx.param(0).to_string();
    if id.is_empty() {
        return Err(ApiError::bad_request("Missing policy ID"));
    }
    let opts = ctx.query_options()?;
    let (idx, p) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        (st.acl_index(), st.acl_policy(&id).cloned())
    })
    .await;
    let p =
        p.ok_or_else(|| ApiError::not_found("Requested policy does not exist: ACL not found"))?;
    Ok(json_read(&ctx, &opts, idx, &policy_out(&p)))
}

async fn policy_read_by_name(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing policy Name"));
    }
    let opts = ctx.query_options()?;
    let (idx, p) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        let p = st
            .acl_policies()
            .into_iter()
            .find(|p| p.name.eq_ignore_ascii_case(&name))
            .cloned();
        (st.acl_index(), p)
    })
    .await;
    let p =
        p.ok_or_else(|| ApiError::not_found("Requested policy does not exist: ACL not found"))?;
    Ok(json_read(&ctx, &opts, idx, &policy_out(&p)))
}

async fn policy_delete(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let id = ctx.param(0).to_string();
    if id.is_empty() {
        return Err(ApiError::bad_request("Missing policy ID"));
    }
    if ctx.agent.store.read().acl_policy(&id).is_none() {
        return Err(ApiError::not_found("Cannot find policy to delete"));
    }
    if let Some(b) = meshgate_acl::builtin_policies()
        .into_iter()
        .find(|b| b.id == id)
    {
        return Err(ApiError::internal(format!(
            "Delete operation not permitted on the builtin {} policy",
            b.name
        )));
    }
    write(&ctx, Command::AclPolicyDelete { id }, "").await?;
    Ok(json(&ctx, &true))
}

// === tokens ===

fn redact(ctx_id: &crate::acl::Identity, mut t: AclToken) -> AclToken {
    if !ctx_id.authz.acl_write() {
        t.secret_id = "<hidden>".into();
    }
    t
}

async fn token_list(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let opts = ctx.query_options()?;
    let q = &ctx.query;
    let filters = ["policy", "role", "authmethod", "servicename"]
        .iter()
        .filter(|k| q.get(k).is_some_and(|v| !v.is_empty()))
        .count();
    if filters > 1 {
        return Err(ApiError::internal(
            "can only filter by one of policy, role, serviceName, or methodName at a time",
        ));
    }
    let policy = q.get("policy").unwrap_or("").to_string();
    let role = q.get("role").unwrap_or("").to_string();
    let method = q.get("authmethod").unwrap_or("").to_string();
    let svc = q.get("servicename").unwrap_or("").to_lowercase();
    let now = now_ms();
    let (idx, mut list) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        let l: Vec<AclToken> = st
            .acl_tokens()
            .into_iter()
            .filter(|t| !token_expired(t, now))
            .filter(|t| policy.is_empty() || t.policies.iter().any(|l| l.id == policy))
            .filter(|t| role.is_empty() || t.roles.iter().any(|l| l.id == role))
            .filter(|t| method.is_empty() || t.auth_method == method)
            .filter(|t| {
                svc.is_empty()
                    || t.service_identities
                        .iter()
                        .any(|s| s.service_name.to_lowercase() == svc)
            })
            .collect();
        (st.acl_index(), l)
    })
    .await;
    list.sort_by(|a, b| a.secret_id.cmp(&b.secret_id));
    let id = ctx.identity()?;
    let list: Vec<AclToken> = list.into_iter().map(|t| redact(&id, t)).collect();
    Ok(json_read(&ctx, &opts, idx, &list))
}

/// Validates and normalises a token for create/update (Consul's order).
fn normalize_token(ctx: &Ctx, t: &mut AclToken) -> Result<(), ApiError> {
    let st = ctx.agent.store.read();
    let mut links = Vec::new();
    for l in &t.roles {
        let found = if !l.id.is_empty() {
            st.acl_role(&l.id)
        } else {
            st.acl_role_by_name(&l.name)
        };
        match found {
            Some(r) => {
                if !links.iter().any(|x: &Link| x.id == r.id) {
                    links.push(Link {
                        id: r.id,
                        name: r.name,
                    });
                }
            }
            None if l.id.is_empty() => {
                return Err(ApiError::internal(format!(
                    "No such ACL role with name \"{}\"",
                    l.name
                )));
            }
            None => {
                return Err(ApiError::internal(format!(
                    "No such ACL role with ID \"{}\"",
                    l.id
                )));
            }
        }
    }
    t.roles = links;
    let mut links = Vec::new();
    for l in &t.policies {
        let found = if !l.id.is_empty() {
            st.acl_policy(&l.id).cloned()
        } else {
            st.acl_policies()
                .into_iter()
                .find(|p| p.name.eq_ignore_ascii_case(&l.name))
                .cloned()
        };
        match found {
            Some(p) => {
                if !links.iter().any(|x: &Link| x.id == p.id) {
                    links.push(Link {
                        id: p.id,
                        name: p.name,
                    });
                }
            }
            None if l.id.is_empty() => {
                return Err(ApiError::internal(format!(
                    "No such ACL policy with name \"{}\"",
                    l.name
                )));
            }
            None => {
                return Err(ApiError::internal(format!(
                    "No such ACL policy with ID \"{}\"",
                    l.id
                )));
            }
        }
    }
    t.policies = links;
    drop(st);
    let mut merged: Vec<ServiceIdentity> = Vec::new();
    for s in &t.service_identities {
        if s.service_name.is_empty() {
            return Err(ApiError::internal(
                "Service identity is missing the service name field on this token",
            ));
        }
        if t.local && !s.datacenters.is_empty() {
            return Err(ApiError::internal(format!(
                "Service identity \"{}\" cannot specify a list of datacenters on a local token",
                s.service_name
            )));
        }
        if !meshgate_acl::is_valid_service_identity_name(&s.service_name) {
            return Err(ApiError::internal(format!(
                "Service identity \"{}\" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
                s.service_name
            )));
        }
        match merged.iter_mut().find(|m| m.service_name == s.service_name) {
            Some(m) => {
                m.datacenters.extend(s.datacenters.iter().cloned());
                m.datacenters.sort();
                m.datacenters.dedup();
            }
            None => merged.push(s.clone()),
        }
    }
    t.service_identities = merged;
    let mut nodes: Vec<NodeIdentity> = Vec::new();
    for n in &t.node_identities {
        if n.node_name.is_empty() {
            return Err(ApiError::internal(
                "Node identity is missing the node name field on this token",
            ));
        }
        if n.datacenter.is_empty() {
            return Err(ApiError::internal(
                "Node identity is missing the datacenter field on this token",
            ));
        }
        if !meshgate_acl::is_valid_node_identity_name(&n.node_name) {
            return Err(ApiError::internal(
                "Node identity has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
            ));
        }
        if !nodes.contains(n) {
            nodes.push(n.clone());
        }
    }
    t.node_identities = nodes;
    for tp in &t.templated_policies {
        check_templated(tp, "token")?;
    }
    Ok(())
}

fn check_templated(tp: &TemplatedPolicyRef, on: &str) -> Result<(), ApiError> {
    if tp.template_name.is_empty() {
        return Err(ApiError::internal(format!(
            "templated policy is missing the template name field on this {on}"
        )));
    }
    if meshgate_acl::templated_policy_info(&tp.template_name).is_none() {
        return Err(ApiError::internal(format!(
            "no such ACL templated policy with Name \"{}\"",
            tp.template_name
        )));
    }
    let vars = tp.template_variables.clone().unwrap_or(Value::Null);
    meshgate_acl::templated_policy(&tp.template_name, &vars).map_err(|e| {
        ApiError::internal(format!(
            "validation error for templated policy \"{}\": {}",
            tp.template_name,
            e.message()
        ))
    })?;
    Ok(())
}

fn check_id_field(which: &str, v: &str, ctx: &Ctx) -> Result<(), ApiError> {
    if v.is_empty() {
        return Ok(());
    }
    if v.starts_with(RESERVED_PREFIX) {
        return Err(ApiError::internal(format!(
            "Invalid Token: {which} - UUIDs with the prefix \"{RESERVED_PREFIX}\" are reserved"
        )));
    }
    if !is_uuid(v) {
        return Err(ApiError::internal(format!(
            "Invalid Token: {which} - not a valid UUID"
        )));
    }
    let st = ctx.agent.store.read();
    if st.acl_token(v).is_some() || st.acl_token_by_secret(v).is_some() {
        return Err(ApiError::internal(format!(
            "Invalid Token: {which} is already in use"
        )));
    }
    Ok(())
}

async fn store_token(ctx: &Ctx, mut t: AclToken) -> ApiResult {
    t.hash = token_hash(&t);
    let accessor = t.accessor_id.clone();
    write(
        ctx,
        Command::AclTokenSet(Box::new(t)),
        "Failed to apply token write request",
    )
    .await?;
    let t = ctx
        .agent
        .store
        .read()
        .acl_token(&accessor)
        .ok_or_else(|| ApiError::internal("token missing after write"))?;
    Ok(json(ctx, &t))
}

/// Creates a token from a decoded body (shared by create and clone).
async fn create_token(ctx: &Ctx, mut t: AclToken) -> ApiResult {
    check_id_field("AccessorID", &t.accessor_id, ctx)?;
    check_id_field("SecretID", &t.secret_id, ctx)?;
    let now = now_ms();
    t.create_time = meshgate_types::time::format_rfc3339_ms(now);
    if !t.expiration_ttl.is_empty() {
        let ttl = meshgate_types::duration::parse(&t.expiration_ttl)
            .map_err(|e| ApiError::bad_request(format!("Token decoding failed: {e}")))?;
        if t.expiration_time.is_some() && !ttl.is_zero() {
            return Err(ApiError::internal(
                "Token Expiration TTL and Expiration Time cannot both be set",
            ));
        }
        if !ttl.is_zero() {
            t.expiration_time = Some(meshgate_types::time::format_rfc3339_ms(
                now + ttl.as_millis() as u64,
            ));
        }
    }
    if let Some(exp) = &t.expiration_time {
        let Some(exp_ms) = meshgate_types::time::parse_rfc3339_ms(exp) else {
            return Err(ApiError::bad_request(format!(
                "Token decoding failed: parsing time {exp:?}: invalid RFC 3339 time"
            )));
        };
        if exp_ms < now {
            return Err(ApiError::internal(
                "ExpirationTime cannot be before CreateTime",
            ));
        }
        if exp_ms < now + 60_000 {
            let was = meshgate_types::duration::format(Duration::from_millis(exp_ms - now));
            return Err(ApiError::internal(format!(
                "ExpirationTime cannot be less than 1m0s in the future (was {was})"
            )));
        }
    }
    if !t.auth_method.is_empty() {
        return Err(ApiError::internal(
            "AuthMethod field is disallowed outside of login",
        ));
    }
    normalize_token(ctx, &mut t)?;
    if t.accessor_id.is_empty() {
        t.accessor_id = new_uuid();
    }
    if t.secret_id.is_empty() {
        t.secret_id = new_uuid();
    }
    store_token(ctx, t).await
}

async fn token_create(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let t: AclToken = decode(&ctx, "Token")?;
    create_token(&ctx, t).await
}

fn find_token(ctx: &Ctx, accessor: &str) -> Result<AclToken, ApiError> {
    let t = ctx.agent.store.read().acl_token(accessor);
    match t {
        None => Err(ApiError::forbidden("token does not exist: ACL not found")),
        Some(t) if token_expired(&t, now_ms()) => {
            Err(ApiError::forbidden("token has expired: ACL not found"))
        }
        Some(t) => Ok(t),
    }
}

async fn token_read(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let accessor = ctx.param(0).to_string();
    if accessor.is_empty() {
        return Err(ApiError::bad_request("Missing token AccessorID"));
    }
    let opts = ctx.query_options()?;
    let (idx, _) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        (st.acl_index(), st.acl_token(&accessor))
    })
    .await;
    let t = find_token(&ctx, &accessor)?;
    let t = redact(&ctx.identity()?, t);
    if ctx.query.has("expanded") {
        let mut v = serde_json::to_value(&t).map_err(|e| ApiError::internal(e.to_string()))?;
        let (policies, roles) = expanded(&ctx, &t);
        if let Value::Object(m) = &mut v {
            m.insert("ExpandedPolicies".into(), policies);
            m.insert("ExpandedRoles".into(), roles);
            m.insert("NamespaceDefaultPolicyIDs".into(), Value::Null);
            m.insert("NamespaceDefaultRoleIDs".into(), Value::Null);
            m.insert(
                "AgentACLDefaultPolicy".into(),
                Value::String(ctx.agent.config.acl.default_policy.clone()),
            );
            m.insert(
                "AgentACLDownPolicy".into(),
                Value::String(ctx.agent.config.acl.down_policy.clone()),
            );
            m.insert(
                "ResolvedByAgent".into(),
                Value::String(ctx.agent.node_name.clone()),
            );
        }
        return Ok(json_read(&ctx, &opts, idx, &v));
    }
    Ok(json_read(&ctx, &opts, idx, &t))
}

/// The policies and roles behind a token (`?expanded`).
fn expanded(ctx: &Ctx, t: &AclToken) -> (Value, Value) {
    let st = ctx.agent.store.read();
    let mut policies: Vec<Value> = t
        .policies
        .iter()
        .filter_map(|l| st.acl_policy(&l.id).map(policy_out))
        .collect();
    let roles: Vec<AclRole> = t.roles.iter().filter_map(|l| st.acl_role(&l.id)).collect();
    for r in &roles {
        policies.extend(
            r.policies
                .iter()
                .filter_map(|l| st.acl_policy(&l.id).map(policy_out)),
        );
    }
    let synth = |name: &str, vars: Value| -> Option<Value> {
        let rules = meshgate_acl::render_templated_policy(name, &vars).ok()?;
        let id = meshgate_acl::synthetic_policy_id(&rules);
        let mut p = AclPolicy {
            id: id.clone(),
            name: format!("synthetic-policy-{id}"),
            description: format!("synthetic policy generated from templated policy: {name}"),
            rules,
            datacenters: None,
            ..Default::default()
        };
        p.hash = policy_hash(&p);
        Some(policy_out(&p))
    };
    for s in &t.service_identities {
        if let Some(p) = synth(
            meshgate_acl::TEMPLATED_POLICY_SERVICE,
            json!({"name": s.service_name}),
        ) {
            policies.push(p);
        }
    }
    for n in &t.node_identities {
        if let Some(p) = synth(
            meshgate_acl::TEMPLATED_POLICY_NODE,
            json!({"name": n.node_name}),
        ) {
            policies.push(p);
        }
    }
    for tp in &t.templated_policies {
        if let Some(p) = synth(
            &tp.template_name,
            tp.template_variables.clone().unwrap_or(Value::Null),
        ) {
            policies.push(p);
        }
    }
    let roles = if roles.is_empty() {
        Value::Null
    } else {
        serde_json::to_value(&roles).unwrap_or(Value::Null)
    };
    let policies = if policies.is_empty() {
        Value::Null
    } else {
        Value::Array(policies)
    };
    (policies, roles)
}

async fn token_update(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let accessor = ctx.param(0).to_string();
    let mut t: AclToken = decode(&ctx, "Token")?;
    if t.accessor_id.is_empty() {
        t.accessor_id = accessor.clone();
    } else if t.accessor_id != accessor {
        return Err(ApiError::bad_request(
            "Token Accessor ID in URL and payload do not match",
        ));
    }
    if !is_uuid(&accessor) {
        return Err(ApiError::internal("AccessorID is not a valid UUID"));
    }
    if matches!(t.secret_id.as_str(), "allow" | "deny" | "manage") {
        return Err(ApiError::forbidden(
            "Permission denied: Cannot modify root ACL",
        ));
    }
    let existing = ctx.agent.store.read().acl_token(&accessor);
    let Some(existing) = existing.filter(|e| !token_expired(e, now_ms())) else {
        return Err(ApiError::internal(format!(
            "Cannot find token \"{accessor}\""
        )));
    };
    if t.secret_id.is_empty() {
        t.secret_id = existing.secret_id.clone();
    } else if t.secret_id != existing.secret_id {
        return Err(ApiError::internal(
            "Changing a token's SecretID is not permitted",
        ));
    }
    if t.local != existing.local {
        return Err(ApiError::internal(format!(
            "Cannot toggle local mode of {accessor}"
        )));
    }
    if t.auth_method.is_empty() {
        t.auth_method = existing.auth_method.clone();
    } else if t.auth_method != existing.auth_method {
        return Err(ApiError::internal(format!(
            "Cannot change AuthMethod of {accessor}"
        )));
    }
    if !t.expiration_ttl.is_empty()
        && meshgate_types::duration::parse(&t.expiration_ttl).is_ok_and(|d| !d.is_zero())
    {
        return Err(ApiError::internal(format!(
            "Cannot change expiration time of {accessor}"
        )));
    }
    t.expiration_ttl.clear();
    match &t.expiration_time {
        None => t.expiration_time = existing.expiration_time.clone(),
        Some(e) if Some(e) != existing.expiration_time.as_ref() => {
            return Err(ApiError::internal(format!(
                "Cannot change expiration time of {accessor}"
            )));
        }
        Some(_) => {}
    }
    t.create_time = existing.create_time.clone();
    normalize_token(&ctx, &mut t)?;
    store_token(&ctx, t).await
}

async fn token_delete(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let accessor = ctx.param(0).to_string();
    if !is_uuid(&accessor) {
        return Err(ApiError::internal(
            "Accessor ID is missing or an invalid UUID",
        ));
    }
    if accessor == ANONYMOUS_ACCESSOR {
        return Err(ApiError::internal(
            "Delete operation not permitted on the anonymous token",
        ));
    }
    if ctx.identity()?.accessor() == Some(accessor.as_str()) {
        return Err(ApiError::internal(
            "Deletion of the request's authorization token is not permitted",
        ));
    }
    if ctx.agent.store.read().acl_token(&accessor).is_none() {
        return Err(ApiError::not_found("Cannot find token to delete"));
    }
    write(
        &ctx,
        Command::AclTokenDelete { accessor },
        "Failed to apply token delete request",
    )
    .await?;
    Ok(json(&ctx, &true))
}

async fn token_clone(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let accessor = ctx.param(0).to_string();
    let body: AclToken = decode(&ctx, "Token")?;
    let t = ctx.agent.store.read().acl_token(&accessor);
    let t = match t {
        None => return Err(ApiError::forbidden("token does not exist: ACL not found")),
        Some(t) if token_expired(&t, now_ms()) => {
            return Err(ApiError::forbidden("token is expired: ACL not found"));
        }
        Some(t) => t,
    };
    if !t.auth_method.is_empty() {
        return Err(ApiError::internal(
            "Cannot clone a token created from an auth method",
        ));
    }
    let clone = AclToken {
        accessor_id: String::new(),
        secret_id: String::new(),
        description: if body.description.is_empty() {
            t.description.clone()
        } else {
            body.description.clone()
        },
        policies: t.policies.clone(),
        roles: t.roles.clone(),
        service_identities: t.service_identities.clone(),
        node_identities: t.node_identities.clone(),
        templated_policies: t.templated_policies.clone(),
        local: t.local,
        expiration_time: t.expiration_time.clone(),
        ..Default::default()
    };
    create_token(&ctx, clone).await
}

async fn token_self(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let secret = ctx.token_secret();
    let secret = if secret.is_empty() {
        ctx.agent.acl.tokens.read().default.clone()
    } else {
        secret
    };
    let t = ctx
        .agent
        .store
        .read()
        .acl_token_by_secret(if secret.is_empty() {
            meshgate_types::acl::ANONYMOUS_SECRET
        } else {
            &secret
        });
    match t {
        None => Err(ApiError::forbidden("token does not exist: ACL not found")),
        Some(t) if token_expired(&t, now_ms()) => {
            Err(ApiError::forbidden("token has expired: ACL not found"))
        }
        Some(t) => Ok(json(&ctx, &t)),
    }
}

// === roles ===

fn validate_role(ctx: &Ctx, r: &mut AclRole, create: bool) -> Result<(), ApiError> {
    if r.name.is_empty() {
        return Err(ApiError::internal("Invalid Role: no Name is set"));
    }
    if r.name.len() > 256
        || !r
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::internal(
            "Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed",
        ));
    }
    let st = ctx.agent.store.read();
    if create {
        if st
            .acl_roles()
            .iter()
            .any(|o| o.name.eq_ignore_ascii_case(&r.name))
        {
            return Err(ApiError::internal(format!(
                "Invalid Role: A Role with Name \"{}\" already exists",
                r.name
            )));
        }
    } else {
        if !is_uuid(&r.id) {
            return Err(ApiError::internal("Role ID invalid UUID"));
        }
        let Some(existing) = st.acl_role(&r.id) else {
            return Err(ApiError::internal(format!("cannot find role {}", r.id)));
        };
        if !existing.name.eq_ignore_ascii_case(&r.name)
            && st
                .acl_roles()
                .iter()
                .any(|o| o.id != r.id && o.name.eq_ignore_ascii_case(&r.name))
        {
            return Err(ApiError::internal(format!(
                "Invalid Role: A role with name \"{}\" already exists",
                r.name
            )));
        }
    }
    let mut links = Vec::new();
    for l in &r.policies {
        let p = if !l.id.is_empty() {
            st.acl_policy(&l.id).cloned()
        } else {
            st.acl_policies()
                .into_iter()
                .find(|p| p.name.eq_ignore_ascii_case(&l.name))
                .cloned()
        };
        match p {
            Some(p) => {
                if !links.iter().any(|x: &Link| x.id == p.id) {
                    links.push(Link {
                        id: p.id,
                        name: p.name,
                    });
                }
            }
            None if l.id.is_empty() => {
                return Err(ApiError::internal(format!(
                    "No such ACL policy with name \"{}\"",
                    l.name
                )));
            }
            None => {
                return Err(ApiError::internal(format!(
                    "Failed to apply role upsert request: No such policy with ID: {}",
                    l.id
                )));
            }
        }
    }
    r.policies = links;
    for s in &r.service_identities {
        if s.service_name.is_empty() {
            return Err(ApiError::internal(
                "Service identity is missing the service name field on this role",
            ));
        }
        if !meshgate_acl::is_valid_service_identity_name(&s.service_name) {
            return Err(ApiError::internal(format!(
                "Service identity \"{}\" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
                s.service_name
            )));
        }
    }
    for n in &r.node_identities {
        if n.node_name.is_empty() {
            return Err(ApiError::internal(
                "Node identity is missing the node name field on this role",
            ));
        }
        if n.datacenter.is_empty() {
            return Err(ApiError::internal(
                "Node identity is missing the datacenter field on this role",
            ));
        }
    }
    for tp in &r.templated_policies {
        check_templated(tp, "role")?;
    }
    Ok(())
}

async fn save_role(ctx: &Ctx, mut r: AclRole, create: bool) -> ApiResult {
    validate_role(ctx, &mut r, create)?;
    r.hash = role_hash(&r);
    let id = r.id.clone();
    write(
        ctx,
        Command::AclRoleSet(Box::new(r)),
        "Failed to apply role upsert request",
    )
    .await?;
    let r = ctx
        .agent
        .store
        .read()
        .acl_role(&id)
        .ok_or_else(|| ApiError::internal("role missing after write"))?;
    Ok(json(ctx, &r))
}

async fn role_list(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let opts = ctx.query_options()?;
    let policy = ctx.query.get("policy").unwrap_or("").to_string();
    let (idx, mut list) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        let l: Vec<AclRole> = st
            .acl_roles()
            .into_iter()
            .filter(|r| policy.is_empty() || r.policies.iter().any(|l| l.id == policy))
            .collect();
        (st.acl_index(), l)
    })
    .await;
    list.sort_by_key(|r| r.name.to_lowercase());
    Ok(json_read(&ctx, &opts, idx, &list))
}

async fn role_create(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let mut r: AclRole = decode(&ctx, "Role")?;
    if !r.id.is_empty() {
        return Err(ApiError::bad_request(
            "Role ID in URL and payload do not match",
        ));
    }
    r.id = new_uuid();
    save_role(&ctx, r, true).await
}

async fn role_update(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let id = ctx.param(0).to_string();
    let mut r: AclRole = decode(&ctx, "Role")?;
    if r.id.is_empty() {
        r.id = id;
    } else if r.id != id {
        return Err(ApiError::bad_request(
            "Role ID in URL and payload do not match",
        ));
    }
    save_role(&ctx, r, false).await
}

async fn role_read(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let id = ctx.param(0).to_string();
    if id.is_empty() {
        return Err(ApiError::bad_request("Missing role ID"));
    }
    let opts = ctx.query_options()?;
    let (idx, r) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        (st.acl_index(), st.acl_role(&id))
    })
    .await;
    let r = r.ok_or_else(|| ApiError::not_found("Requested role does not exist: ACL not found"))?;
    Ok(json_read(&ctx, &opts, idx, &r))
}

async fn role_read_by_name(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing role Name"));
    }
    let opts = ctx.query_options()?;
    let (idx, r) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        let r = st
            .acl_roles()
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(&name));
        (st.acl_index(), r)
    })
    .await;
    let r = r.ok_or_else(|| ApiError::not_found("Requested role does not exist: ACL not found"))?;
    Ok(json_read(&ctx, &opts, idx, &r))
}

async fn role_delete(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let id = ctx.param(0).to_string();
    if id.is_empty() {
        return Err(ApiError::bad_request("Missing role ID"));
    }
    if ctx.agent.store.read().acl_role(&id).is_none() {
        return Err(ApiError::not_found("Cannot find role to delete"));
    }
    write(&ctx, Command::AclRoleDelete { id }, "").await?;
    Ok(json(&ctx, &true))
}

// === templated policies ===

async fn templated_list(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let map: std::collections::BTreeMap<String, meshgate_acl::TemplatedPolicyInfo> =
        meshgate_acl::templated_policy_list()
            .into_iter()
            .map(|t| (t.name.to_string(), t))
            .collect();
    Ok(json(&ctx, &map))
}

async fn templated_read(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing templated policy Name"));
    }
    let info = meshgate_acl::templated_policy_info(&name)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid templated policy Name: {name}")))?;
    Ok(json(&ctx, &info))
}

async fn templated_preview(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing templated policy Name"));
    }
    if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("Failed to decode request body: EOF"));
    }
    let vars: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("Failed to decode request body: {e}")))?;
    // Accept "Name" as well as "name".
    let vars = match vars {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    (
                        if k.eq_ignore_ascii_case("name") {
                            "name".into()
                        } else {
                            k
                        },
                        v,
                    )
                })
                .collect(),
        ),
        other => other,
    };
    if meshgate_acl::templated_policy_info(&name).is_none() {
        return Err(ApiError::bad_request(format!(
            "templated policy \"{name}\" does not exist"
        )));
    }
    let rules = meshgate_acl::render_templated_policy(&name, &vars).map_err(|e| {
        ApiError::bad_request(format!(
            "validation error for templated policy: \"{name}\": {}",
            e.message()
        ))
    })?;
    let id = meshgate_acl::synthetic_policy_id(&rules);
    let mut p = AclPolicy {
        id: id.clone(),
        name: format!("synthetic-policy-{id}"),
        description: format!("synthetic policy generated from templated policy: {name}"),
        rules,
        datacenters: None,
        ..Default::default()
    };
    p.hash = policy_hash(&p);
    Ok(json(&ctx, &policy_out(&p)))
}

// === auth methods ===

fn method_out(m: &AclAuthMethod, stub: bool) -> Value {
    let mut out = serde_json::Map::new();
    if !m.max_token_ttl.is_empty() {
        out.insert("MaxTokenTTL".into(), Value::String(m.max_token_ttl.clone()));
    }
    out.insert("Name".into(), Value::String(m.name.clone()));
    out.insert("Type".into(), Value::String(m.method_type.clone()));
    if !m.display_name.is_empty() {
        out.insert("DisplayName".into(), Value::String(m.display_name.clone()));
    }
    if !m.description.is_empty() {
        out.insert("Description".into(), Value::String(m.description.clone()));
    }
    if !m.token_locality.is_empty() {
        out.insert(
            "TokenLocality".into(),
            Value::String(m.token_locality.clone()),
        );
    }
    if !stub {
        out.insert(
            "Config".into(),
            serde_json::to_value(&m.config).unwrap_or(Value::Null),
        );
    }
    out.insert("CreateIndex".into(), json!(m.create_index));
    out.insert("ModifyIndex".into(), json!(m.modify_index));
    Value::Object(out)
}

async fn method_list(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let opts = ctx.query_options()?;
    let (idx, list) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        let mut l: Vec<AclAuthMethod> = st.acl_auth_methods().into_iter().cloned().collect();
        l.sort_by_key(|m| m.name.to_lowercase());
        (st.acl_index(), l)
    })
    .await;
    let out: Vec<Value> = list.iter().map(|m| method_out(m, true)).collect();
    Ok(json_read(&ctx, &opts, idx, &out))
}

async fn save_method(ctx: &Ctx, mut m: AclAuthMethod) -> ApiResult {
    if m.name.is_empty() {
        return Err(ApiError::internal("Invalid Auth Method: no Name is set"));
    }
    if m.name.len() > 128
        || !m
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::internal(
            "Invalid Auth Method: invalid Name. Only alphanumeric characters, '-' and '_' are allowed",
        ));
    }
    if let Some(existing) = ctx.agent.store.read().acl_auth_method(&m.name) {
        if m.method_type.is_empty() {
            m.method_type = existing.method_type.clone();
        } else if m.method_type != existing.method_type {
            return Err(ApiError::internal(
                "the Type field of an Auth Method is immutable",
            ));
        }
    }
    if m.method_type != "jwt" {
        return Err(ApiError::internal(
            "Invalid Auth Method: Type should be one of: [jwt]",
        ));
    }
    if !m.max_token_ttl.is_empty() {
        let d = meshgate_types::duration::parse(&m.max_token_ttl)
            .map_err(|e| ApiError::bad_request(format!("AuthMethod decoding failed: {e}")))?;
        if !d.is_zero() && d < Duration::from_secs(60) {
            return Err(ApiError::internal(format!(
                "MaxTokenTTL {} cannot be less than 1m0s",
                meshgate_types::duration::format(d)
            )));
        }
        m.max_token_ttl = if d.is_zero() {
            String::new()
        } else {
            meshgate_types::duration::format(d)
        };
    }
    match m.token_locality.as_str() {
        "" | "local" | "global" => {}
        _ => {
            return Err(ApiError::internal(
                "Invalid Auth Method: TokenLocality should be one of 'local' or 'global'",
            ));
        }
    }
    crate::jwt::JwtConfig::from_config(&m.config)
        .map_err(|e| ApiError::internal(format!("Invalid Auth Method: {e}")))?;
    let name = m.name.clone();
    write(ctx, Command::AclAuthMethodSet(Box::new(m)), "").await?;
    let m = ctx
        .agent
        .store
        .read()
        .acl_auth_method(&name)
        .cloned()
        .ok_or_else(|| ApiError::internal("auth method missing after write"))?;
    Ok(json(ctx, &method_out(&m, false)))
}

async fn method_create(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let m: AclAuthMethod = decode(&ctx, "AuthMethod")?;
    save_method(&ctx, m).await
}

async fn method_update(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let name = ctx.param(0).to_string();
    let mut m: AclAuthMethod = decode(&ctx, "AuthMethod")?;
    if m.name.is_empty() {
        m.name = name;
    } else if m.name != name {
        return Err(ApiError::bad_request(
            "AuthMethod Name in URL and payload do not match",
        ));
    }
    save_method(&ctx, m).await
}

async fn method_read(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing auth method name"));
    }
    let opts = ctx.query_options()?;
    let (idx, m) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        (st.acl_index(), st.acl_auth_method(&name).cloned())
    })
    .await;
    let m = m.ok_or_else(|| {
        ApiError::not_found("Requested auth method does not exist: ACL not found")
    })?;
    Ok(json_read(&ctx, &opts, idx, &method_out(&m, false)))
}

async fn method_delete(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing auth method name"));
    }
    if ctx.agent.store.read().acl_auth_method(&name).is_none() {
        return Err(ApiError::not_found("Cannot find auth method to delete"));
    }
    write(&ctx, Command::AclAuthMethodDelete { name }, "").await?;
    Ok(json(&ctx, &true))
}

// === binding rules ===

const BIND_TYPES: &[&str] = &["service", "node", "role", "policy", "templated-policy"];

async fn save_rule(ctx: &Ctx, mut r: AclBindingRule, create: bool) -> ApiResult {
    if !create {
        if !is_uuid(&r.id) {
            return Err(ApiError::internal("Binding Rule ID invalid UUID"));
        }
        let existing = ctx.agent.store.read().acl_binding_rule(&r.id).cloned();
        let Some(existing) = existing else {
            return Err(ApiError::internal(format!(
                "cannot find binding rule {}",
                r.id
            )));
        };
        if r.auth_method.is_empty() {
            r.auth_method = existing.auth_method.clone();
        } else if r.auth_method != existing.auth_method {
            return Err(ApiError::internal(
                "the AuthMethod field of an Binding Rule is immutable",
            ));
        }
    }
    if r.auth_method.is_empty() {
        return Err(ApiError::internal(
            "Invalid Binding Rule: no AuthMethod is set",
        ));
    }
    let method = ctx
        .agent
        .store
        .read()
        .acl_auth_method(&r.auth_method)
        .cloned();
    let Some(method) = method else {
        return Err(ApiError::internal(format!(
            "cannot find auth method with name \"{}\"",
            r.auth_method
        )));
    };
    let cfg = crate::jwt::JwtConfig::from_config(&method.config).map_err(|e| {
        ApiError::internal(format!(
            "auth method validator for \"{}\" could not be initialized: {e}",
            r.auth_method
        ))
    })?;
    if !r.selector.is_empty() {
        cfg.compile_selector(&r.selector).map_err(|e| {
            ApiError::internal(format!("invalid Binding Rule: Selector is invalid: {e}"))
        })?;
    }
    if r.bind_type.is_empty() {
        return Err(ApiError::internal(
            "Invalid Binding Rule: no BindType is set",
        ));
    }
    if r.bind_name.is_empty() {
        return Err(ApiError::internal(
            "Invalid Binding Rule: no BindName is set",
        ));
    }
    if r.bind_vars.is_some() && r.bind_type != "templated-policy" {
        return Err(ApiError::internal(
            "invalid Binding Rule: BindVars cannot be set when bind type is not templated-policy.",
        ));
    }
    if !BIND_TYPES.contains(&r.bind_type.as_str()) {
        return Err(ApiError::internal(format!(
            "Invalid Binding Rule: invalid BindName or BindVars: invalid Binding Rule: unknown BindType {:?}",
            r.bind_type
        )));
    }
    cfg.check_bind_name(&r.bind_name).map_err(|e| {
        ApiError::internal(format!(
            "Invalid Binding Rule: invalid BindName or BindVars: failed to validate bindType {:?}: {e}",
            r.bind_type
        ))
    })?;
    if create {
        r.id = new_uuid();
    }
    let id = r.id.clone();
    write(
        ctx,
        Command::AclBindingRuleSet(Box::new(r)),
        "Failed to apply binding rule upsert request",
    )
    .await?;
    let r = ctx
        .agent
        .store
        .read()
        .acl_binding_rule(&id)
        .cloned()
        .ok_or_else(|| ApiError::internal("binding rule missing after write"))?;
    Ok(json(ctx, &r))
}

async fn rule_list(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let opts = ctx.query_options()?;
    let method = ctx.query.get("authmethod").map(str::to_string);
    let (idx, list) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        let l: Vec<AclBindingRule> = st
            .acl_binding_rules(method.as_deref())
            .into_iter()
            .cloned()
            .collect();
        (st.acl_index(), l)
    })
    .await;
    Ok(json_read(&ctx, &opts, idx, &list))
}

async fn rule_create(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let r: AclBindingRule = decode(&ctx, "BindingRule")?;
    if !r.id.is_empty() {
        return Err(ApiError::bad_request(
            "BindingRule ID in URL and payload do not match",
        ));
    }
    save_rule(&ctx, r, true).await
}

async fn rule_update(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let id = ctx.param(0).to_string();
    let mut r: AclBindingRule = decode(&ctx, "BindingRule")?;
    if r.id.is_empty() {
        r.id = id;
    } else if r.id != id {
        return Err(ApiError::bad_request(
            "BindingRule ID in URL and payload do not match",
        ));
    }
    save_rule(&ctx, r, false).await
}

async fn rule_read(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let id = ctx.param(0).to_string();
    if id.is_empty() {
        return Err(ApiError::bad_request("Missing binding rule ID"));
    }
    let opts = ctx.query_options()?;
    let (idx, r) = blocking(&ctx, &opts, &[Table::Acl], |st| {
        (st.acl_index(), st.acl_binding_rule(&id).cloned())
    })
    .await;
    let r = r.ok_or_else(|| {
        ApiError::not_found("Requested binding rule does not exist: ACL not found")
    })?;
    Ok(json_read(&ctx, &opts, idx, &r))
}

async fn rule_delete(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let id = ctx.param(0).to_string();
    if id.is_empty() {
        return Err(ApiError::bad_request("Missing binding rule ID"));
    }
    if ctx.agent.store.read().acl_binding_rule(&id).is_none() {
        return Err(ApiError::not_found("Cannot find binding rule to delete"));
    }
    write(&ctx, Command::AclBindingRuleDelete { id }, "").await?;
    Ok(json(&ctx, &true))
}

// === login / logout ===

async fn login(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Body {
        auth_method: String,
        bearer_token: String,
        meta: std::collections::BTreeMap<String, String>,
    }
    if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("Failed to decode request body: EOF"));
    }
    let v: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("Failed to decode request body: {e}")))?;
    let b: Body = lenient::from_value(v, Options { deny_unknown: true }).map_err(|e| {
        ApiError::bad_request(format!(
            "Failed to decode request body: {}",
            go_json_error(&e)
        ))
    })?;
    let (method, rules) = {
        let st = ctx.agent.store.read();
        let m = st.acl_auth_method(&b.auth_method).cloned();
        let rules: Vec<AclBindingRule> = st
            .acl_binding_rules(Some(&b.auth_method))
            .into_iter()
            .cloned()
            .collect();
        (m, rules)
    };
    let Some(method) = method else {
        return Err(ApiError::forbidden(format!(
            "ACL not found: auth method {:?} not found",
            b.auth_method
        )));
    };
    let cfg = crate::jwt::JwtConfig::from_config(&method.config)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let identity = cfg
        .verify(&b.bearer_token, now_ms())
        .map_err(ApiError::internal)?;
    let mut t = AclToken {
        description: if b.meta.is_empty() {
            "token created via login".into()
        } else {
            format!(
                "token created via login: {}",
                serde_json::to_string(&b.meta).unwrap_or_default()
            )
        },
        local: method.token_locality != "global",
        auth_method: method.name.clone(),
        ..Default::default()
    };
    let mut bound = false;
    {
        let st = ctx.agent.store.read();
        for r in &rules {
            if !r.selector.is_empty() && !cfg.selector_matches(&r.selector, &identity) {
                continue;
            }
            let Ok(name) = cfg.interpolate(&r.bind_name, &identity) else {
                continue;
            };
            match r.bind_type.as_str() {
                "service" => {
                    t.service_identities.push(ServiceIdentity {
                        service_name: name,
                        datacenters: Vec::new(),
                    });
                    bound = true;
                }
                "node" => {
                    t.node_identities.push(NodeIdentity {
                        node_name: name,
                        datacenter: ctx.agent.config.datacenter.clone(),
                    });
                    bound = true;
                }
                "role" => {
                    if let Some(role) = st.acl_role_by_name(&name) {
                        t.roles.push(Link {
                            id: role.id,
                            name: role.name,
                        });
                        bound = true;
                    }
                }
                "policy" => {
                    if let Some(p) = st.acl_policy_by_name(&name) {
                        t.policies.push(Link {
                            id: p.id.clone(),
                            name: p.name.clone(),
                        });
                        bound = true;
                    }
                }
                "templated-policy" => {
                    t.templated_policies.push(TemplatedPolicyRef {
                        template_name: name,
                        template_variables: r
                            .bind_vars
                            .clone()
                            .map(|v| cfg.interpolate_value(&v, &identity)),
                        datacenters: Vec::new(),
                    });
                    bound = true;
                }
                _ => {}
            }
        }
    }
    if !bound {
        return Err(super::bare_denied());
    }
    let now = now_ms();
    t.accessor_id = new_uuid();
    t.secret_id = new_uuid();
    t.create_time = meshgate_types::time::format_rfc3339_ms(now);
    if let Ok(d) = meshgate_types::duration::parse(&method.max_token_ttl)
        && !d.is_zero()
    {
        t.expiration_time = Some(meshgate_types::time::format_rfc3339_ms(
            now + d.as_millis() as u64,
        ));
    }
    store_token(&ctx, t).await
}

async fn logout(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let secret = ctx.token_secret();
    let secret = if secret.is_empty() {
        ctx.agent.acl.tokens.read().default.clone()
    } else {
        secret
    };
    if secret.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "Supplied token does not exist",
        ));
    }
    let t = ctx.agent.store.read().acl_token_by_secret(&secret);
    let Some(t) = t else {
        return Err(ApiError::forbidden(meshgate_acl::ERR_NOT_FOUND));
    };
    if t.auth_method.is_empty() {
        return Err(ApiError::forbidden(
            "Permission denied: token wasn't created via login",
        ));
    }
    write(
        &ctx,
        Command::AclTokenDelete {
            accessor: t.accessor_id,
        },
        "",
    )
    .await?;
    Ok(json(&ctx, &true))
}

// === agent tokens ===

async fn agent_token(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let kind = ctx.param(0).to_string();
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Body {
        token: String,
    }
    let b: Body = super::catalog::decode_body(&ctx)?;
    {
        let mut tokens = ctx.agent.acl.tokens.write();
        let slot = match kind.as_str() {
            "default" | "acl_token" => &mut tokens.default,
            "agent" | "acl_agent_token" => &mut tokens.agent,
            "agent_recovery" | "agent_master" | "acl_agent_master_token" => {
                &mut tokens.agent_recovery
            }
            "replication" | "acl_replication_token" => &mut tokens.replication,
            "config_file_service_registration" => &mut tokens.config_file_service_registration,
            "dns" | "dns_token" => &mut tokens.dns,
            other => return Err(ApiError::not_found(format!("Token \"{other}\" is unknown"))),
        };
        *slot = b.token;
    }
    ctx.agent
        .persist_tokens(&kind)
        .map_err(|e| ApiError::internal(format!("Failed to persist tokens - {e}")))?;
    Ok(empty())
}

async fn internal_authorize(ctx: Ctx) -> ApiResult {
    enabled(&ctx)?;
    let id = ctx.identity()?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Req {
        resource: String,
        #[serde(default)]
        segment: String,
        access: String,
    }
    let reqs: Vec<Req> = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    if reqs.len() > 64 {
        return Err(ApiError::bad_request(
            "Refusing to process more than 64 authorizations at once",
        ));
    }
    let mut out = Vec::new();
    for r in reqs {
        let resource: Resource = r.resource.parse().map_err(|_| {
            ApiError::bad_request(format!("Invalid ACL resource requested: {:?}", r.resource))
        })?;
        let access: Access = r.access.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid access level for {} resource: {}",
                r.resource, r.access
            ))
        })?;
        let allow = id.allows(resource, access, &r.segment);
        let mut o = serde_json::Map::new();
        o.insert("Resource".into(), json!(r.resource));
        if !r.segment.is_empty() {
            o.insert("Segment".into(), json!(r.segment));
        }
        o.insert("Access".into(), json!(r.access));
        o.insert("Allow".into(), json!(allow));
        out.push(Value::Object(o));
    }
    Ok(json(&ctx, &out))
}
