//! `/v1/config`: config entries (terminating gateways, service defaults,
//! proxy defaults, intentions, resolvers, mesh).

use axum::http::Method;
use axum::response::IntoResponse;
use meshgate_acl::{Access, Resource};
use meshgate_config_entries::{self as ce, ConfigEntry};
use meshgate_state::{Applied, Command, Table};
use serde_json::Value;
use tracing::warn;

use super::{
    AclFilter, AclRule, ApiError, ApiResult, Ctx, Route, blocking, handler, json, json_read, route,
};

const CONFIG: &[Table] = &[Table::Config];

pub(super) fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(M::PUT, "/v1/config", AclRule::Handler, handler!(apply)),
        route(
            M::GET,
            "/v1/config/{kind}",
            AclRule::Handler,
            handler!(list),
        ),
        route(
            M::DELETE,
            "/v1/config/{kind}",
            AclRule::None,
            handler!(delete_without_name),
        ),
        route(
            M::GET,
            "/v1/config/{kind}/{*name}",
            AclRule::Handler,
            handler!(get),
        ),
        route(
            M::DELETE,
            "/v1/config/{kind}/{*name}",
            AclRule::Handler,
            handler!(delete),
        ),
    ]
}

/// The permission needed to read an entry of `kind` named `name` (`None`:
/// any valid token).
pub(crate) fn read_permission(kind: &str, name: &str) -> Option<(Resource, Access, String)> {
    match kind {
        ce::PROXY_DEFAULTS | ce::MESH => None,
        ce::SERVICE_INTENTIONS => Some((Resource::Intention, Access::Read, name.to_string())),
        _ => Some((Resource::Service, Access::Read, name.to_string())),
    }
}

/// The permission needed to write an entry of `kind` named `name`.
pub(crate) fn write_permission(kind: &str, name: &str) -> (Resource, Access, String) {
    match kind {
        ce::SERVICE_DEFAULTS | ce::SERVICE_RESOLVER => {
            (Resource::Service, Access::Write, name.to_string())
        }
        ce::SERVICE_INTENTIONS => (Resource::Intention, Access::Write, name.to_string()),
        _ => (Resource::Mesh, Access::Write, String::new()),
    }
}

fn may_read(id: &crate::acl::Identity, e: &ConfigEntry) -> bool {
    read_permission(e.kind(), e.name()).is_none_or(|(r, a, s)| id.allows(r, a, &s))
}

/// Parses `?cas=`.
fn cas_param(ctx: &Ctx) -> Result<Option<u64>, ApiError> {
    match ctx.query.get("cas") {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("strconv.ParseUint: parsing {v:?}: {e}"))),
    }
}

/// Decodes, normalizes and validates a `PUT /v1/config` body.
pub(crate) fn prepare(body: &[u8]) -> Result<ConfigEntry, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("Request decoding failed: EOF"));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))?;
    let mut entry = ce::decode(v)
        .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))?;
    entry.normalize();
    let warnings = entry
        .validate()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    for w in warnings {
        warn!(
            kind = entry.kind(),
            name = entry.name(),
            "config entry: {w}"
        );
    }
    Ok(entry)
}

/// Writes a prepared entry; `Ok(false)` when a `cas` did not match.
pub(crate) async fn store(
    ctx: &Ctx,
    entry: &ConfigEntry,
    cas: Option<u64>,
) -> Result<bool, ApiError> {
    let r = ctx
        .agent
        .store
        .write(Command::ConfigSet {
            entry: entry.to_json(),
            cas,
        })
        .await?;
    Ok(matches!(r, Applied::Bool(true)))
}

/// Consul's rule across entries: a service- or proxy-defaults entry may
/// only *become* `MutualTLSMode = "permissive"` while the mesh entry has
/// `AllowEnablingPermissiveMutualTLS = true` (one that already is
/// permissive may stay so).
fn check_mutual_tls_mode(ctx: &Ctx, entry: &ConfigEntry) -> Result<(), ApiError> {
    fn mode(e: &ConfigEntry) -> Option<&str> {
        match e {
            ConfigEntry::ServiceDefaults(s) => Some(&s.mutual_tls_mode),
            ConfigEntry::ProxyDefaults(p) => Some(&p.mutual_tls_mode),
            _ => None,
        }
    }
    if mode(entry) != Some("permissive") {
        return Ok(());
    }
    let st = ctx.agent.store.read();
    if st.config_entry(entry.kind(), entry.name()).1.and_then(mode) == Some("permissive") {
        return Ok(());
    }
    match st.config_entry(ce::MESH, ce::MESH).1 {
        Some(ConfigEntry::Mesh(m)) if m.allow_enabling_permissive_mutual_tls => Ok(()),
        _ => Err(ApiError::internal(
            "cannot set MutualTLSMode=permissive because AllowEnablingPermissiveMutualTLS=false in the mesh config entry",
        )),
    }
}

async fn apply(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let cas = cas_param(&ctx)?;
    let entry = prepare(&ctx.body)?;
    let (r, a, s) = write_permission(entry.kind(), entry.name());
    ctx.require(r, a, &s)?;
    check_mutual_tls_mode(&ctx, &entry)?;
    let ok = store(&ctx, &entry, cas).await?;
    Ok(json(&ctx, &ok))
}

fn known_kind(kind: &str) -> Result<(), ApiError> {
    ce::check_kind(kind)
        .map(|_| ())
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn get(ctx: Ctx) -> ApiResult {
    let kind = ctx.param(0).to_string();
    let name = ctx.param(1).to_string();
    if name.is_empty() {
        return list(ctx).await;
    }
    known_kind(&kind)?;
    if let Some((r, a, s)) = read_permission(&kind, &name) {
        ctx.require(r, a, &s)?;
    } else {
        ctx.identity()?;
    }
    let opts = ctx.query_options()?;
    let (idx, entry) = blocking(&ctx, &opts, CONFIG, |st| {
        let (idx, e) = st.config_entry(&kind, &name);
        (idx, e.map(ConfigEntry::to_json))
    })
    .await;
    match entry {
        Some(e) => Ok(json_read(&ctx, &opts, idx, &e)),
        None => {
            // The index comes with the 404 so that a watcher can block until
            // the entry appears.
            let mut r =
                ApiError::not_found(format!("Config entry not found for {kind:?} / {name:?}"))
                    .into_response();
            super::set_read_headers(&mut r, &opts, idx);
            Ok(r)
        }
    }
}

async fn list(ctx: Ctx) -> ApiResult {
    let kind = ctx.param(0).to_string();
    known_kind(&kind)?;
    let opts = ctx.query_options()?;
    let mut acl = AclFilter::new(&ctx)?;
    let (idx, entries) = blocking(&ctx, &opts, CONFIG, |st| {
        let (idx, list) = st.config_entries(&kind);
        (idx, list.into_iter().cloned().collect::<Vec<ConfigEntry>>())
    })
    .await;
    let out: Vec<Value> = entries
        .into_iter()
        .filter(|e| {
            let ok = may_read(&acl.id, e);
            acl.keep(ok)
        })
        .map(|e| e.to_json())
        .collect();
    let mut r = json_read(&ctx, &opts, idx, &out);
    acl.mark(&mut r);
    Ok(r)
}

async fn delete_without_name(_ctx: Ctx) -> ApiResult {
    Err(ApiError::not_found(
        "Must provide both a kind and name to delete",
    ))
}

async fn delete(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let kind = ctx.param(0).to_string();
    let name = ctx.param(1).to_string();
    if name.is_empty() {
        return delete_without_name(ctx).await;
    }
    ce::check_kind(&kind).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (r, a, s) = write_permission(&kind, &name);
    ctx.require(r, a, &s)?;
    let cas = cas_param(&ctx)?;
    let res = ctx
        .agent
        .store
        .write(Command::ConfigDelete { kind, name, cas })
        .await?;
    let ok = matches!(res, Applied::Bool(true));
    if cas.is_some() {
        Ok(json(&ctx, &ok))
    } else {
        Ok(json(&ctx, &serde_json::json!({})))
    }
}
