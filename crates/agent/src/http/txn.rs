//! `/v1/txn`: atomic KV transactions.

use axum::http::{HeaderValue, Method, StatusCode, header};
use meshgate_acl::{Access, Resource};
use meshgate_state::{Applied, Command, KV_VERBS, is_read_only};
use meshgate_types::lenient::{self, Options};
use meshgate_types::txn::{TxnKvOp, TxnOp, TxnResponse};
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
    results: Option<Vec<meshgate_types::txn::TxnResult>>,
    errors: Option<Vec<meshgate_types::txn::TxnError>>,
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
        lenient::from_value(value, Options { deny_unknown: true }).map_err(|e| {
            ApiError::bad_request(format!("Failed to parse body: {}", go_json_error(&e)))
        })?;
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
    let mut kv_ops: Vec<TxnKvOp> = Vec::with_capacity(ops.len());
    for op in ops {
        let Some(kv) = op.kv else {
            return Err(ApiError::bad_request(
                "meshgate transactions support KV operations only; Node, Service and Check operations are not implemented",
            ));
        };
        let len = kv.value.as_ref().map_or(0, Vec::len) as u64;
        if len > max_value {
            return Err(ApiError::too_large(format!(
                "Value for key {:?} is too large ({len} > {max_value} bytes)",
                kv.key
            )));
        }
        kv_ops.push(kv);
    }
    // ACLs, per operation; a refusal is reported like any failed operation and
    // nothing is applied.
    let id = ctx.identity()?;
    let mut denied = Vec::new();
    for (i, op) in kv_ops.iter().enumerate() {
        let res = match op.verb.as_str() {
            "get" | "get-tree" | "get-or-empty" => Ok(()),
            "check-index" | "check-session" => id.authz.check(Resource::Key, Access::Read, &op.key),
            "delete-tree" => {
                if id.authz.key_write_prefix(&op.key) {
                    Ok(())
                } else {
                    Err(meshgate_acl::Denied::new(
                        Resource::Key,
                        Access::Write,
                        Some(&op.key),
                    ))
                }
            }
            _ => id.authz.check(Resource::Key, Access::Write, &op.key),
        };
        if let Err(d) = res {
            denied.push(meshgate_types::txn::TxnError {
                op_index: i,
                what: d.message(id.accessor()),
            });
        }
    }
    if !denied.is_empty() {
        return Ok(conflict(
            &ctx,
            &TxnResponse {
                results: None,
                errors: Some(denied),
            },
        ));
    }
    let readable =
        |r: &meshgate_types::txn::TxnResult| id.allows(Resource::Key, Access::Read, &r.kv.key);
    // Unknown verbs count as reads (and fail there with their own message).
    let write = kv_ops
        .iter()
        .any(|o| KV_VERBS.contains(&o.verb.as_str()) && !is_read_only(std::slice::from_ref(o)));
    if !write {
        let opts = ctx.query_options()?;
        let resp = ctx.agent.store.read().txn_read(&kv_ops);
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
        let _ = opts;
        let mut r = if ok {
            json(&ctx, &body)
        } else {
            conflict(&ctx, &body)
        };
        r.headers_mut()
            .insert("x-consul-knownleader", HeaderValue::from_static("true"));
        r.headers_mut()
            .insert("x-consul-lastcontact", HeaderValue::from_static("0"));
        return Ok(r);
    }
    let applied = ctx.agent.store.write(Command::Txn(kv_ops)).await?;
    let Applied::Txn(resp) = applied else {
        return Err(ApiError::internal("unexpected transaction result"));
    };
    let TxnResponse { results, errors } = resp;
    if errors.is_some() {
        return Ok(conflict(
            &ctx,
            &TxnResponse {
                results: None,
                errors,
            },
        ));
    }
    Ok(json(
        &ctx,
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
    ))
}
