//! `/v1/txn`: atomic transactions of KV and catalog (node, service, check) operations.

use axum::http::{HeaderValue, Method, StatusCode, header};
use meshgate_acl::{Access, Resource};
use meshgate_state::{Applied, Command, KV_VERBS, is_read_only};
use meshgate_types::lenient::{self, Options};
use meshgate_types::txn::{
    TxnCheckOp, TxnError, TxnKvOp, TxnNodeOp, TxnOp, TxnOperation, TxnResponse, TxnResult,
    TxnServiceOp,
};
use serde::Serialize;

use super::catalog::go_json_error;
use super::{AclRule, ApiError, ApiResult, Ctx, Route, handler, json, route};

/// Most operations in one transaction.
pub const MAX_OPS: usize = 128;
const DOC: &str = "https://developer.hashicorp.com/docs/agent/config/config-files#txn_max_req_len";

pub(super) fn routes() -> Vec<Route> {
    vec![route(
        Method::PUT,
        "/v1/txn",
        AclRule::Handler,
        handler!(txn),
    )]
}

/// A read-only transaction's answer also carries the query metadata.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReadResponse {
    results: Option<Vec<TxnResult>>,
    errors: Option<Vec<TxnError>>,
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

fn conflict<T: Serialize>(ctx: &Ctx, body: &T) -> axum::response::Response {
    let mut r = json(ctx, body);
    *r.status_mut() = StatusCode::CONFLICT;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

async fn txn(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let cfg = &ctx.agent.config;
    let max_len = cfg.txn_max_req_len().max(cfg.kv_max_value_size());
    if ctx.body.len() as u64 > max_len {
        let msg = if ctx.headers.contains_key(header::CONTENT_LENGTH) {
            format!(
                "Request body({} bytes) too large, max size: {max_len} bytes. See {DOC}.",
                ctx.body.len()
            )
        } else {
            format!("Request body too large, max size: {max_len} bytes. See {DOC}.")
        };
        return Err(ApiError::too_large(msg));
    }
    let value: serde_json::Value = if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("Failed to parse body: EOF"));
    } else {
        serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("Failed to parse body: {e}")))?
    };
    let ops: Vec<TxnOp> =
        lenient::from_value(value, Options { deny_unknown: true }).map_err(body_error)?;
    // Ops with no operation at all are dropped, as Consul does.
    let ops: Vec<TxnOp> = ops
        .into_iter()
        .filter(|o| o.kv.is_some() || o.node.is_some() || o.service.is_some() || o.check.is_some())
        .collect();
    if ops.len() > MAX_OPS {
        return Err(ApiError::too_large(format!(
            "Transaction contains too many operations ({} > {MAX_OPS})",
            ops.len()
        )));
    }
    let max_value = cfg.kv_max_value_size();
    let mut parsed: Vec<TxnOperation> = Vec::with_capacity(ops.len());
    for op in ops {
        parsed.push(operation(&ctx, op, max_value)?);
    }
    // ACLs, per operation; a refusal is reported like any failed operation and
    // nothing is applied.
    let id = ctx.identity()?;
    let denied: Vec<TxnError> = {
        let st = ctx.agent.store.read();
        parsed
            .iter()
            .enumerate()
            .filter_map(|(i, op)| {
                authorize(&id.authz, &st, op).err().map(|d| TxnError {
                    op_index: i,
                    what: d.message(id.accessor()),
                })
            })
            .collect()
    };
    if !denied.is_empty() {
        return Ok(conflict(
            &ctx,
            &TxnResponse {
                results: None,
                errors: Some(denied),
            },
        ));
    }
    if parsed.iter().all(|o| matches!(o, TxnOperation::Kv(_))) {
        let kv_ops = parsed
            .into_iter()
            .filter_map(|o| match o {
                TxnOperation::Kv(kv) => Some(kv),
                _ => None,
            })
            .collect();
        return kv_txn(ctx, &id, kv_ops).await;
    }
    let readable = |r: &TxnResult| result_readable(&id, r);
    if parsed.iter().all(TxnOperation::is_read) {
        ctx.query_options()?;
        let resp = ctx.agent.store.read().txn_ops_read(&parsed);
        return Ok(read_answer(&ctx, resp, readable));
    }
    let applied = ctx.agent.store.write(Command::TxnOps(parsed)).await?;
    let Applied::Txn(resp) = applied else {
        return Err(ApiError::internal("unexpected transaction result"));
    };
    Ok(write_answer(&ctx, resp, readable))
}

/// One operation of the body, read as Consul's endpoint reads it.
fn operation(ctx: &Ctx, op: TxnOp, max_value: u64) -> Result<TxnOperation, ApiError> {
    if let Some(kv) = op.kv {
        let len = kv.value.as_ref().map_or(0, Vec::len) as u64;
        if len > max_value {
            return Err(ApiError::too_large(format!(
                "Value for key {:?} is too large ({len} > {max_value} bytes)",
                kv.key
            )));
        }
        return Ok(TxnOperation::Kv(kv));
    }
    if let Some(mut v) = op.node {
        strip_unstored(&mut v, "Node");
        let mut o: TxnNodeOp =
            lenient::from_value(v, Options { deny_unknown: true }).map_err(body_error)?;
        if o.node.datacenter.is_empty() {
            o.node.datacenter = ctx.agent.config.datacenter.clone();
        }
        return Ok(TxnOperation::Node(o));
    }
    if let Some(mut v) = op.service {
        strip_unstored(&mut v, "Service");
        let mut o: TxnServiceOp =
            lenient::from_value(v, Options { deny_unknown: true }).map_err(body_error)?;
        // Go clients send `{"Passing":0,"Warning":0}` for no weights.
        if o.service.weights.passing < 1 || o.service.weights.warning < 0 {
            o.service.weights = Default::default();
        }
        return Ok(TxnOperation::Service(o));
    }
    let mut v = op.check.unwrap_or_default();
    strip_unstored(&mut v, "Check");
    if let Some((_, check)) = v
        .as_object_mut()
        .and_then(|o| o.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("Check")))
    {
        meshgate_types::catalog::HealthCheckDefinition::drop_unknown_keys(check);
    }
    let mut o: TxnCheckOp =
        lenient::from_value(v, Options { deny_unknown: true }).map_err(body_error)?;
    if o.check.check_type.is_empty() {
        o.check.check_type = super::catalog::definition_type(&o.check.definition).into();
    }
    Ok(TxnOperation::Check(o))
}

/// A KV-only transaction: reads answered from the store, writes through
/// the log as one KV transaction.
async fn kv_txn(ctx: Ctx, id: &crate::acl::Identity, kv_ops: Vec<TxnKvOp>) -> ApiResult {
    let readable = |r: &TxnResult| result_readable(id, r);
    // Unknown verbs count as reads (and fail there with their own message).
    let write = kv_ops
        .iter()
        .any(|o| KV_VERBS.contains(&o.verb.as_str()) && !is_read_only(std::slice::from_ref(o)));
    if !write {
        ctx.query_options()?;
        let resp = ctx.agent.store.read().txn_read(&kv_ops);
        return Ok(read_answer(&ctx, resp, readable));
    }
    let applied = ctx.agent.store.write(Command::Txn(kv_ops)).await?;
    let Applied::Txn(resp) = applied else {
        return Err(ApiError::internal("unexpected transaction result"));
    };
    Ok(write_answer(&ctx, resp, readable))
}

/// A read-only transaction's answer: the results the token may read, with
/// the query metadata.
fn read_answer(
    ctx: &Ctx,
    resp: TxnResponse,
    readable: impl Fn(&TxnResult) -> bool,
) -> axum::response::Response {
    let ok = resp.errors.is_none();
    let body = ReadResponse {
        results: resp
            .results
            .map(|r| r.into_iter().filter(|x| readable(x)).collect()),
        errors: resp.errors,
        index: 1,
        last_contact: 0,
        known_leader: true,
        consistency_level: String::new(),
        not_modified: false,
        backend: 0,
        results_filtered_by_acls: false,
    };
    let mut r = if ok {
        json(ctx, &body)
    } else {
        conflict(ctx, &body)
    };
    r.headers_mut()
        .insert("x-consul-knownleader", HeaderValue::from_static("true"));
    r.headers_mut()
        .insert("x-consul-lastcontact", HeaderValue::from_static("0"));
    r
}

/// A written transaction's answer: 409 with every error, or the results
/// the token may read.
fn write_answer(
    ctx: &Ctx,
    resp: TxnResponse,
    readable: impl Fn(&TxnResult) -> bool,
) -> axum::response::Response {
    let TxnResponse { results, errors } = resp;
    if errors.is_some() {
        return conflict(
            ctx,
            &TxnResponse {
                results: None,
                errors,
            },
        );
    }
    json(
        ctx,
        &TxnResponse {
            results: Some(
                results
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|x| readable(x))
                    .collect(),
            ),
            errors: None,
        },
    )
}

/// Consul's rules per operation: reads are filtered on the way out; KV
/// writes need `key:write` (`delete-tree` on the whole prefix), KV checks
/// `key:read`; node writes `node:write`; service writes `service:write` on
/// the service (and on a proxy's destination); check writes `node:write` for
/// a node's check and `service:write` on the service of a service's check.
/// Besides the names the request gives, the names stored under the IDs it
/// touches count too (as catalog registration checks them), so a request
/// cannot change another service's instance or check by naming its own.
fn authorize(
    authz: &meshgate_acl::Authorizer,
    st: &meshgate_state::State,
    op: &TxnOperation,
) -> Result<(), meshgate_acl::Denied> {
    // The name of the service instance stored under an ID on a node.
    let stored_name = |node: &str, id: &str| {
        st.node_services(node)
            .1
            .and_then(|(_, svcs)| svcs.into_iter().find(|s| s.id == id))
            .map(|s| s.service.clone())
    };
    let service_write = |names: &[Option<String>]| {
        for n in names.iter().flatten().filter(|n| !n.is_empty()) {
            authz.check(Resource::Service, Access::Write, n)?;
        }
        Ok(())
    };
    match op {
        TxnOperation::Kv(op) => match op.verb.as_str() {
            "get" | "get-tree" | "get-or-empty" => Ok(()),
            "check-index" | "check-session" => authz.check(Resource::Key, Access::Read, &op.key),
            "delete-tree" if authz.key_write_prefix(&op.key) => Ok(()),
            "delete-tree" => Err(meshgate_acl::Denied::new(
                Resource::Key,
                Access::Write,
                Some(&op.key),
            )),
            _ => authz.check(Resource::Key, Access::Write, &op.key),
        },
        _ if op.is_read() => Ok(()),
        TxnOperation::Node(op) => authz.check(Resource::Node, Access::Write, &op.node.node),
        TxnOperation::Service(op) => {
            let svc = &op.service;
            let id = if svc.id.is_empty() {
                &svc.service
            } else {
                &svc.id
            };
            let stored = stored_name(&op.node, id);
            if svc.service.is_empty() && stored.is_none() {
                // Nothing named, nothing stored: a write on "" (Consul's).
                return authz.check(Resource::Service, Access::Write, "");
            }
            let destination =
                (svc.kind == "connect-proxy").then(|| svc.proxy.destination_service_name.clone());
            service_write(&[Some(svc.service.clone()), stored, destination])
        }
        TxnOperation::Check(op) => {
            // What the request says the check is, and what the stored
            // check under that ID is: both must be allowed (a node's check
            // needs `node:write`, a service's `service:write` on it).
            let c = &op.check;
            let existing = st.check(&c.node, &c.check_id);
            match existing {
                Some(e) if e.service_id.is_empty() => {
                    authz.check(Resource::Node, Access::Write, &c.node)?
                }
                Some(e) => service_write(&[Some(e.service_name.clone())])?,
                None => {}
            }
            // A delete removes what is stored, whatever the request says.
            if existing.is_some() && op.verb.starts_with("delete") {
                return Ok(());
            }
            if c.service_id.is_empty() {
                return authz.check(Resource::Node, Access::Write, &c.node);
            }
            let stored = stored_name(&c.node, &c.service_id);
            if c.service_name.is_empty() && stored.is_none() {
                return authz.check(Resource::Service, Access::Write, "");
            }
            service_write(&[Some(c.service_name.clone()), stored])
        }
    }
}

/// Whether the token may read a result (others are left out of the answer).
fn result_readable(id: &crate::acl::Identity, r: &TxnResult) -> bool {
    if let Some(kv) = &r.kv {
        return id.allows(Resource::Key, Access::Read, &kv.key);
    }
    if let Some(n) = &r.node {
        return id.allows(Resource::Node, Access::Read, &n.node);
    }
    if let Some(s) = &r.service {
        return id.allows(Resource::Service, Access::Read, &s.service);
    }
    if let Some(c) = &r.check {
        return if c.service_id.is_empty() {
            id.allows(Resource::Node, Access::Read, &c.node)
        } else {
            id.allows(Resource::Service, Access::Read, &c.service_name)
        };
    }
    false
}

/// Fields of Go's API types that a client sends and meshgate does not keep
/// (Consul Enterprise's tenancy, peering, locality, the agent's hash);
/// dropped before the strict read so that whole structs from Go clients
/// are accepted while misspelt fields are still refused.
fn strip_unstored(v: &mut serde_json::Value, part: &str) {
    const DROP: &[&str] = &[
        "namespace",
        "partition",
        "peername",
        "locality",
        "contenthash",
        "datacenter",
        "socketpath",
    ];
    let Some(inner) = v
        .as_object_mut()
        .and_then(|o| o.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(part)))
        .and_then(|(_, v)| v.as_object_mut())
    else {
        return;
    };
    // A node's Datacenter is kept; the others have none to keep.
    let keep_dc = part == "Node";
    inner.retain(|k, _| {
        let k = k.to_ascii_lowercase();
        !DROP.contains(&k.as_str()) || (keep_dc && k == "datacenter")
    });
}

fn body_error(e: lenient::LenientError) -> ApiError {
    ApiError::bad_request(format!("Failed to parse body: {}", go_json_error(&e)))
}
