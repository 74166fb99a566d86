//! `/v1/connect/*` and `/v1/agent/connect/*`: intentions, the CA's roots and
//! configuration, leaf certificates, and authorization of mesh connections.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderValue, Method, header};
use axum::response::IntoResponse;
use meshgate_acl::{Access, Resource};
use meshgate_config_entries::intentions::{self, Intention, MatchBy};
use meshgate_config_entries::{ConfigEntry, SERVICE_INTENTIONS, ServiceIntentions};
use meshgate_state::{Applied, CaState, Command, State, Table};
use serde_json::{Map, Value, json};

use super::{
    AclFilter, AclRule, ApiError, ApiResult, Ctx, Route, apply_filter, bare_denied, blocking,
    handler, json, json_read, route,
};
use crate::filter::schema;

const CONFIG: &[Table] = &[Table::Config];
const CA: &[Table] = &[Table::Ca];

pub(super) fn routes() -> Vec<Route> {
    use Method as M;
    let op_write = AclRule::Global(Resource::Operator, Access::Write);
    vec![
        route(
            M::GET,
            "/v1/connect/intentions",
            AclRule::Handler,
            handler!(list),
        ),
        route(
            M::POST,
            "/v1/connect/intentions",
            AclRule::Handler,
            handler!(legacy_create),
        ),
        route(
            M::GET,
            "/v1/connect/intentions/{id}",
            AclRule::Handler,
            handler!(legacy_get),
        ),
        route(
            M::PUT,
            "/v1/connect/intentions/{id}",
            AclRule::Handler,
            handler!(legacy_update),
        ),
        route(
            M::DELETE,
            "/v1/connect/intentions/{id}",
            AclRule::Handler,
            handler!(legacy_delete),
        ),
        route(
            M::GET,
            "/v1/connect/intentions/exact",
            AclRule::Handler,
            handler!(exact_get),
        ),
        route(
            M::PUT,
            "/v1/connect/intentions/exact",
            AclRule::Handler,
            handler!(exact_put),
        ),
        route(
            M::DELETE,
            "/v1/connect/intentions/exact",
            AclRule::Handler,
            handler!(exact_delete),
        ),
        route(
            M::GET,
            "/v1/connect/intentions/match",
            AclRule::Handler,
            handler!(matches),
        ),
        route(
            M::GET,
            "/v1/connect/intentions/check",
            AclRule::Handler,
            handler!(check),
        ),
        route(
            M::GET,
            "/v1/connect/ca/roots",
            AclRule::None,
            handler!(roots),
        ),
        route(
            M::GET,
            "/v1/connect/ca/configuration",
            op_write,
            handler!(ca_config_get),
        ),
        route(
            M::PUT,
            "/v1/connect/ca/configuration",
            op_write,
            handler!(ca_config_put),
        ),
        route(
            M::GET,
            "/v1/agent/connect/ca/roots",
            AclRule::None,
            handler!(roots),
        ),
        route(
            M::GET,
            "/v1/agent/connect/ca/leaf/{service}",
            AclRule::Param(Resource::Service, Access::Write, 0),
            handler!(leaf),
        ),
        route(
            M::POST,
            "/v1/agent/connect/authorize",
            AclRule::Handler,
            handler!(authorize),
        ),
    ]
}

// === intentions ===

/// Every intention, in evaluation order.
pub(crate) fn all_intentions(st: &State) -> Vec<Intention> {
    let mut out: Vec<Intention> = intention_entries(st)
        .flat_map(intentions::intentions_of)
        .collect();
    intentions::sort_by_precedence(&mut out);
    out
}

/// Every service-intentions entry.
fn intention_entries(st: &State) -> impl Iterator<Item = &ServiceIntentions> {
    st.config_entries(SERVICE_INTENTIONS)
        .1
        .into_iter()
        .filter_map(|e| match e {
            ConfigEntry::ServiceIntentions(si) => Some(si),
            _ => None,
        })
}

/// The default when no intention matches: allow unless ACLs default to deny.
pub(crate) fn default_allow(ctx: &Ctx) -> bool {
    !ctx.agent.acl.enabled || ctx.agent.acl.default_allow
}

fn required<'a>(ctx: &'a Ctx, name: &str) -> Result<&'a str, ApiError> {
    match ctx.query.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::bad_request(format!(
            "required query parameter '{name}' not set"
        ))),
    }
}

async fn list(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let mut acl = AclFilter::new(&ctx)?;
    let (idx, all) = blocking(&ctx, &opts, CONFIG, |st| {
        (st.tables().config, all_intentions(st))
    })
    .await;
    let kept: Vec<Intention> = all
        .into_iter()
        .filter(|i| {
            let ok = acl
                .id
                .allows(Resource::Intention, Access::Read, &i.source_name)
                || acl
                    .id
                    .allows(Resource::Intention, Access::Read, &i.destination_name);
            acl.keep(ok)
        })
        .collect();
    let kept = apply_filter(&opts, schema::intentions(), kept)?;
    let mut r = json_read(&ctx, &opts, idx, &kept);
    acl.mark(&mut r);
    Ok(r)
}

async fn exact_get(ctx: Ctx) -> ApiResult {
    let source = required(&ctx, "source")?.to_string();
    let destination = required(&ctx, "destination")?.to_string();
    let opts = ctx.query_options()?;
    let id = ctx.identity()?;
    let (idx, found) = blocking(&ctx, &opts, CONFIG, |st| {
        let (idx, e) = st.config_entry(SERVICE_INTENTIONS, &destination);
        let found = match e {
            Some(ConfigEntry::ServiceIntentions(si)) => intentions::exact(si, &source),
            _ => None,
        };
        (idx, found)
    })
    .await;
    readable(&ctx, &opts, &id, idx, found)
}

/// One intention as read, for a caller with `intentions:read` on its source
/// or destination; `404 Intention not found` when there is none.
fn readable(
    ctx: &Ctx,
    opts: &super::QueryOptions,
    id: &crate::acl::Identity,
    idx: u64,
    found: Option<Intention>,
) -> ApiResult {
    let Some(ixn) = found else {
        return Err(ApiError::not_found("Intention not found"));
    };
    if !id.allows(Resource::Intention, Access::Read, &ixn.source_name)
        && !id.allows(Resource::Intention, Access::Read, &ixn.destination_name)
    {
        return Err(bare_denied());
    }
    Ok(json_read(ctx, opts, idx, &ixn))
}

fn current_entry(ctx: &Ctx, destination: &str) -> Option<ServiceIntentions> {
    match ctx
        .agent
        .store
        .read()
        .config_entry(SERVICE_INTENTIONS, destination)
        .1
    {
        Some(ConfigEntry::ServiceIntentions(si)) => Some(si.clone()),
        _ => None,
    }
}

/// Which API writes an entry: the config-entry one (legacy fields dropped)
/// or the legacy ID-based one (legacy fields kept).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Current,
    Legacy,
}

/// Read-modify-write of a destination's service-intentions entry, retried
/// when another write got there first.
async fn update_entry<F>(ctx: &Ctx, destination: &str, api: Api, f: F) -> Result<(), ApiError>
where
    F: Fn(Option<ServiceIntentions>) -> Result<Option<ServiceIntentions>, ApiError>,
{
    for _ in 0..10 {
        let prev = current_entry(ctx, destination);
        let cas = prev.as_ref().map(|p| p.modify_index).unwrap_or(0);
        let applied = match f(prev)? {
            Some(next) => {
                let mut entry = ConfigEntry::ServiceIntentions(next);
                let checked = if api == Api::Legacy {
                    entry.normalize_legacy();
                    match &entry {
                        ConfigEntry::ServiceIntentions(e) => e.validate_legacy(),
                        _ => Ok(()),
                    }
                } else {
                    entry.normalize();
                    entry.validate().map(|_warnings| ())
                };
                checked.map_err(|e| ApiError::internal(e.to_string()))?;
                super::config::store(ctx, &entry, Some(cas)).await?
            }
            None => {
                let r = ctx
                    .agent
                    .store
                    .write(Command::ConfigDelete {
                        kind: SERVICE_INTENTIONS.into(),
                        name: destination.into(),
                        cas: Some(cas),
                    })
                    .await?;
                matches!(r, Applied::Bool(true))
            }
        };
        if applied {
            return Ok(());
        }
    }
    Err(ApiError::internal(
        "intention write conflicted with other writes; try again",
    ))
}

async fn exact_put(ctx: Ctx) -> ApiResult {
    let source = required(&ctx, "source")?.to_string();
    let destination = required(&ctx, "destination")?.to_string();
    let body = decode_intention(&ctx)?;
    if !ctx
        .identity()?
        .allows(Resource::Intention, Access::Write, &destination)
    {
        return Err(bare_denied());
    }
    update_entry(&ctx, &destination, Api::Current, |prev| {
        intentions::exact_upsert(prev, &source, &destination, &body)
            .map(Some)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    Ok(json(&ctx, &true))
}

async fn exact_delete(ctx: Ctx) -> ApiResult {
    let source = required(&ctx, "source")?.to_string();
    let destination = required(&ctx, "destination")?.to_string();
    if !ctx
        .identity()?
        .allows(Resource::Intention, Access::Write, &destination)
    {
        return Err(bare_denied());
    }
    if current_entry(&ctx, &destination).is_none() {
        return Ok(json(&ctx, &true));
    }
    update_entry(&ctx, &destination, Api::Current, |prev| {
        Ok(prev.and_then(|p| intentions::remove_source(p, &source)))
    })
    .await?;
    Ok(json(&ctx, &true))
}

/// An intention in a request body (`400 Request decode failed: ...` when
/// it is not one).
fn decode_intention(ctx: &Ctx) -> Result<Intention, ApiError> {
    if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("Request decode failed: EOF"));
    }
    let v: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    Intention::from_json(v)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))
}

/// A body of the legacy intention API, with Consul's defaults filled in.
fn legacy_body(ctx: &Ctx) -> Result<Intention, ApiError> {
    let mut ixn = decode_intention(ctx)?;
    for ns in [&mut ixn.source_ns, &mut ixn.destination_ns] {
        if ns.is_empty() {
            *ns = "default".into();
        }
    }
    if ixn.source_type.is_empty() {
        ixn.source_type = "consul".into();
    }
    Ok(ixn)
}

fn legacy_now() -> String {
    meshgate_types::time::format_rfc3339_ms(crate::store::now_ms())
}

/// `POST /v1/connect/intentions` (deprecated in Consul 1.9, still served):
/// creates an intention with an ID, answered `{"ID": "<uuid>"}`.
async fn legacy_create(ctx: Ctx) -> ApiResult {
    let ixn = legacy_body(&ctx)?;
    if !ctx
        .identity()?
        .allows(Resource::Intention, Access::Write, &ixn.destination_name)
    {
        return Err(bare_denied());
    }
    if !ixn.id.is_empty() {
        return Err(ApiError::internal(
            "ID must be empty when creating a new intention",
        ));
    }
    intentions::legacy_validate(&ixn).map_err(|e| ApiError::internal(e.to_string()))?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = legacy_now();
    update_entry(&ctx, &ixn.destination_name, Api::Legacy, |prev| {
        intentions::legacy_create(prev, &ixn, &id, &now)
            .map(Some)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    Ok(json(&ctx, &json!({ "ID": id })))
}

/// The intention with legacy ID `id`: (destination, intention).
fn legacy_find(ctx: &Ctx, id: &str) -> Option<(String, Intention)> {
    intentions::find_legacy(intention_entries(&ctx.agent.store.read()), id)
}

/// `GET /v1/connect/intentions/:id`.
async fn legacy_get(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    let opts = ctx.query_options()?;
    let ident = ctx.identity()?;
    let (idx, found) = blocking(&ctx, &opts, CONFIG, |st| {
        (
            st.tables().config,
            intentions::find_legacy(intention_entries(st), &id).map(|(_, i)| i),
        )
    })
    .await;
    readable(&ctx, &opts, &ident, idx, found)
}

/// `PUT /v1/connect/intentions/:id`: replaces the intention (its
/// destination cannot change); answers with an empty body.
async fn legacy_update(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    let mut ixn = legacy_body(&ctx)?;
    ixn.id = id.clone();
    let Some((destination, _)) = legacy_find(&ctx, &id) else {
        return Err(ApiError::internal(format!(
            "Cannot modify non-existent intention: '{id}'"
        )));
    };
    let ident = ctx.identity()?;
    if !ident.allows(Resource::Intention, Access::Write, &destination)
        || !ident.allows(Resource::Intention, Access::Write, &ixn.destination_name)
    {
        return Err(bare_denied());
    }
    intentions::legacy_validate(&ixn).map_err(|e| ApiError::internal(e.to_string()))?;
    let now = legacy_now();
    update_entry(&ctx, &destination, Api::Legacy, |prev| {
        let Some(prev) = prev else {
            return Err(ApiError::internal(format!(
                "Cannot modify non-existent intention: '{id}'"
            )));
        };
        intentions::legacy_update(prev, &id, &ixn, &now)
            .map(Some)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    Ok(super::empty())
}

/// `DELETE /v1/connect/intentions/:id`: answers with an empty body.
async fn legacy_delete(ctx: Ctx) -> ApiResult {
    let id = ctx.param(0).to_string();
    let Some((destination, _)) = legacy_find(&ctx, &id) else {
        return Err(ApiError::internal(format!(
            "Cannot delete non-existent intention: '{id}'"
        )));
    };
    if !ctx
        .identity()?
        .allows(Resource::Intention, Access::Write, &destination)
    {
        return Err(bare_denied());
    }
    update_entry(&ctx, &destination, Api::Legacy, |prev| {
        Ok(prev.and_then(|p| intentions::legacy_delete(p, &id)))
    })
    .await?;
    Ok(super::empty())
}

async fn matches(ctx: Ctx) -> ApiResult {
    let by = required(&ctx, "by")?;
    let by = MatchBy::parse(by).ok_or_else(|| {
        ApiError::bad_request("'by' parameter must be one of 'source' or 'destination'")
    })?;
    let names = ctx.query.all("name");
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "required query parameter 'name' not set",
        ));
    }
    let id = ctx.identity()?;
    for n in &names {
        id.require(Resource::Intention, Access::Read, n)?;
    }
    let opts = ctx.query_options()?;
    let (idx, out) = blocking(&ctx, &opts, CONFIG, |st| {
        let all = all_intentions(st);
        let mut out = Map::new();
        for n in &names {
            let list = intentions::matching(&all, by, n);
            out.insert(n.clone(), serde_json::to_value(list).unwrap_or(Value::Null));
        }
        (st.tables().config, Value::Object(out))
    })
    .await;
    Ok(json_read(&ctx, &opts, idx, &out))
}

async fn check(ctx: Ctx) -> ApiResult {
    let source = required(&ctx, "source")?.to_string();
    let destination = required(&ctx, "destination")?.to_string();
    ctx.require(Resource::Service, Access::Read, &destination)?;
    let all = all_intentions(&ctx.agent.store.read());
    let (allowed, _) = intentions::check(&all, &source, &destination, default_allow(&ctx));
    Ok(json(&ctx, &json!({ "Allowed": allowed })))
}

async fn authorize(ctx: Ctx) -> ApiResult {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Req {
        target: String,
        #[serde(rename = "ClientCertURI")]
        client_cert_uri: String,
        client_cert_serial: String,
        namespace: String,
        partition: String,
    }
    let req: Req = super::catalog::decode_body(&ctx)?;
    let _ = (&req.client_cert_serial, &req.namespace, &req.partition);
    if req.target.is_empty() {
        return Err(ApiError::bad_request("Target service must be specified"));
    }
    if req.client_cert_uri.is_empty() {
        return Err(ApiError::bad_request("Client Cert URI must be specified"));
    }
    ctx.require(Resource::Service, Access::Write, &req.target)?;
    let Some(spiffe) = meshgate_ca::SpiffeId::parse(&req.client_cert_uri) else {
        return Err(ApiError::bad_request(
            "ClientCertURI not a valid Connect identifier",
        ));
    };
    let meshgate_ca::SpiffeId::Service(client) = spiffe else {
        return Err(ApiError::bad_request(
            "ClientCertURI not a valid Service identifier",
        ));
    };
    let (trust_domain, all) = {
        let st = ctx.agent.store.read();
        (
            st.ca().1.map(|c| meshgate_ca::trust_domain(&c.cluster_id)),
            all_intentions(&st),
        )
    };
    if trust_domain.is_none_or(|td| !td.eq_ignore_ascii_case(&client.trust_domain)) {
        return Ok(json(
            &ctx,
            &json!({"Authorized": false, "Reason": "Identity from an external trust domain"}),
        ));
    }
    let d = intentions::decide(&all, &client.service, &req.target, default_allow(&ctx));
    Ok(json(
        &ctx,
        &json!({"Authorized": d.allowed, "Reason": d.reason}),
    ))
}

// === CA ===

fn not_ready() -> ApiError {
    ApiError::internal("CA is not initialized yet")
}

/// The `/v1/connect/ca/roots` answer.
pub(crate) fn roots_json(ca: &CaState) -> Value {
    let active = meshgate_ca::rotation::active_root(&ca.roots)
        .map(|r| r.id.clone())
        .unwrap_or_default();
    let roots: Vec<Value> = ca
        .roots
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.remove("RotatedOutAt");
                o.insert("CreateIndex".into(), json!(ca.modify_index));
                o.insert("ModifyIndex".into(), json!(ca.modify_index));
            }
            v
        })
        .collect();
    json!({
        "ActiveRootID": active,
        "TrustDomain": meshgate_ca::trust_domain(&ca.cluster_id),
        "Roots": roots,
    })
}

async fn roots(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    // A Go boolean, as Consul reads it: `?pem` alone (empty) is JSON.
    let pem = match ctx.query.get("pem") {
        None | Some("") => false,
        Some(_) => super::flag_value(
            &ctx.query,
            "pem",
            "The 'pem' query parameter must be a boolean value",
        )?,
    };
    let (idx, ca) = blocking(&ctx, &opts, CA, |st| {
        let (idx, ca) = st.ca();
        (idx, ca.cloned())
    })
    .await;
    let ca = ca.ok_or_else(not_ready)?;
    if pem {
        let pems = meshgate_ca::rotation::trust_bundle(&ca.roots).concat();
        let mut r = pems.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/pem-certificate-chain"),
        );
        super::set_index(&mut r, idx);
        return Ok(r);
    }
    Ok(json_read(&ctx, &opts, idx, &roots_json(&ca)))
}

async fn ca_config_get(ctx: Ctx) -> ApiResult {
    let (idx, ca) = {
        let st = ctx.agent.store.read();
        let (idx, ca) = st.ca();
        (idx, ca.cloned())
    };
    let ca = ca.ok_or_else(not_ready)?;
    let mut v = ca.config.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("CreateIndex".into(), json!(ca.modify_index));
        o.insert("ModifyIndex".into(), json!(ca.modify_index));
    }
    let opts = ctx.query_options()?;
    Ok(json_read(&ctx, &opts, idx, &v))
}

async fn ca_config_put(ctx: Ctx) -> ApiResult {
    if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("Request decode failed: EOF"));
    }
    let body: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "Request decode failed: json: cannot unmarshal into Go value of type structs.CAConfiguration",
        ));
    }
    crate::connect::set_config(&ctx.agent, body)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(super::empty())
}

fn leaf_json(c: &crate::connect::CachedLeaf) -> Value {
    let l = &c.leaf;
    json!({
        "SerialNumber": l.serial_number,
        "CertPEM": l.cert_pem,
        "PrivateKeyPEM": l.private_key_pem,
        "Service": l.service,
        "ServiceURI": l.service_uri,
        "ValidAfter": l.valid_after,
        "ValidBefore": l.valid_before,
        "CreateIndex": c.index,
        "ModifyIndex": c.index,
    })
}

async fn leaf(ctx: Ctx) -> ApiResult {
    let service = ctx.param(0).to_string();
    if service.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let opts = ctx.query_options()?;
    let agent = ctx.agent.clone();
    let get = || {
        agent
            .leaves
            .get(&agent, &service)
            .map_err(|e| ApiError::internal(e.to_string()))
    };
    let mut current = get()?;
    // (An index ahead of the leaf's waits too, as for every blocking query.)
    if opts.index > 0 && current.index <= opts.index {
        // Block until the leaf changes: a new root, renewal time, or the wait.
        let deadline = tokio::time::Instant::now() + opts.wait;
        let mut ca_rx = ctx.agent.store.watch(Table::Ca);
        ca_rx.borrow_and_update();
        loop {
            let renew_in = ctx
                .agent
                .leaves
                .renew_time(&service)
                .and_then(|t| t.duration_since(SystemTime::now()).ok())
                .unwrap_or(Duration::ZERO);
            let wake = (tokio::time::Instant::now() + renew_in).min(deadline);
            let timed_out = tokio::select! {
                _ = ca_rx.changed() => false,
                _ = ctx.agent.leaves.wait_changed() => false,
                _ = tokio::time::sleep_until(wake) => tokio::time::Instant::now() >= deadline,
            };
            current = get()?;
            if timed_out || current.index > opts.index || ctx.agent.is_shutting_down() {
                break;
            }
        }
    }
    Ok(json_read(&ctx, &opts, current.index, &leaf_json(&current)))
}
