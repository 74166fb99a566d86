//! `/v1/operator/keyring`: the cluster key material of every agent — list,
//! install a key, make one primary, remove one — run on every member of the
//! cluster at once (see docs/cluster.md, "Rotating the cluster key").
//!
//! The answer has Consul's shape: a `WAN` entry (the servers) and a `LAN`
//! entry (every agent), each counting how many nodes hold each key
//! (`Keys`) and use it as primary (`PrimaryKeys`); a failure on any node is a
//! 500 listing the nodes and their reasons.

use std::collections::BTreeMap;

use axum::http::Method;
use meshgate_acl::{Access, Resource};
use meshgate_consensus::keyring::{KeyAnswer, KeyOp};
use serde::Deserialize;
use serde_json::json;

use super::{AclRule, ApiError, ApiResult, Ctx, Route, empty, handler, json, route};

pub(super) fn routes() -> Vec<Route> {
    let read = AclRule::Global(Resource::Keyring, Access::Read);
    let write = AclRule::Global(Resource::Keyring, Access::Write);
    vec![
        route(Method::GET, "/v1/operator/keyring", read, handler!(list)),
        route(
            Method::POST,
            "/v1/operator/keyring",
            write,
            handler!(install),
        ),
        route(
            Method::PUT,
            "/v1/operator/keyring",
            write,
            handler!(use_key),
        ),
        route(
            Method::DELETE,
            "/v1/operator/keyring",
            write,
            handler!(remove),
        ),
    ]
}

/// The body of install/use/remove.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct KeyringArgs {
    key: String,
    #[allow(dead_code)]
    token: String,
    #[allow(dead_code)]
    relay_factor: u8,
    local_only: bool,
}

/// Checks `?relay-factor` and `?local-only` like Consul (they change nothing
/// here: every agent is asked directly).
fn check_params(ctx: &Ctx, write: bool, body_local_only: bool) -> Result<(), ApiError> {
    if let Some(rf) = ctx.query.get("relay-factor").filter(|v| !v.is_empty()) {
        let n: i64 = rf.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "Error parsing relay factor: strconv.Atoi: parsing \"{rf}\": invalid syntax"
            ))
        })?;
        if !(0..=5).contains(&n) {
            return Err(ApiError::bad_request(
                "Invalid relay-factor: Relay factor must be in range: [0, 5]",
            ));
        }
    }
    let mut local_only = body_local_only;
    if let Some(lo) = ctx.query.get("local-only").filter(|v| !v.is_empty()) {
        local_only |= match lo {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Error parsing local-only: strconv.ParseBool: parsing \"{lo}\": invalid syntax"
                )));
            }
        };
    }
    if write && local_only {
        return Err(ApiError::bad_request(
            "Invalid use of local-only: local-only can only be set for list requests",
        ));
    }
    Ok(())
}

/// One member's answer, with the name it is known by.
struct Answer {
    node: String,
    voter: bool,
    answer: Result<KeyAnswer, String>,
}

/// Runs `op` on every agent of the cluster (or this one, without a cluster).
async fn everywhere(ctx: &Ctx, op: KeyOp, key: &str) -> Vec<Answer> {
    let Some(c) = ctx.agent.store.cluster() else {
        // A single agent: encryption is not enabled (-dev has no server port).
        let error = match op {
            KeyOp::List => "Keyring is empty (encryption not enabled)",
            _ => "No keyring to modify (encryption not enabled)",
        };
        return vec![Answer {
            node: ctx.agent.node_name.clone(),
            voter: true,
            answer: Ok(KeyAnswer {
                error: error.into(),
                ..Default::default()
            }),
        }];
    };
    // Names of the members, from the catalog (by address).
    let by_addr: BTreeMap<String, String> = {
        let st = ctx.agent.store.read();
        st.nodes()
            .1
            .iter()
            .map(|n| (n.address.clone(), n.node.clone()))
            .collect()
    };
    c.keyring_everywhere(op, key)
        .await
        .into_iter()
        .map(|(id, addr, voter, answer)| {
            let host = addr
                .rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
                .unwrap_or_default();
            Answer {
                node: by_addr
                    .get(&host)
                    .cloned()
                    .unwrap_or_else(|| id.to_string()),
                voter,
                answer,
            }
        })
        .collect()
}

/// Go's go-multierror list format.
fn multierror(errors: &[String]) -> String {
    let head = if errors.len() == 1 {
        "1 error occurred:".to_string()
    } else {
        format!("{} errors occurred:", errors.len())
    };
    let mut out = head;
    out.push('\n');
    for e in errors {
        out.push_str(&format!("\t* {e}\n"));
    }
    out.push('\n');
    out
}

/// The WAN (servers) and LAN (every agent) entries, or the 500 listing what
/// failed.
fn summarize(ctx: &Ctx, answers: &[Answer]) -> Result<serde_json::Value, ApiError> {
    let dc = &ctx.agent.config.datacenter;
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for wan in [true, false] {
        let pool: Vec<&Answer> = answers.iter().filter(|a| !wan || a.voter).collect();
        let label = if wan {
            "WAN".to_string()
        } else {
            format!("{dc} (LAN)")
        };
        let name = |a: &Answer| {
            if wan {
                format!("{}.{dc}", a.node)
            } else {
                a.node.clone()
            }
        };
        let mut keys: BTreeMap<String, u64> = BTreeMap::new();
        let mut primary: BTreeMap<String, u64> = BTreeMap::new();
        let mut messages: BTreeMap<String, String> = BTreeMap::new();
        let (mut failed, mut answered) = (0, 0);
        for a in &pool {
            match &a.answer {
                Ok(k) => {
                    answered += 1;
                    if !k.error.is_empty() {
                        failed += 1;
                        messages.insert(name(a), k.error.clone());
                    }
                    for key in &k.keys {
                        *keys.entry(key.clone()).or_default() += 1;
                    }
                    if let Some(p) = &k.primary {
                        *primary.entry(p.clone()).or_default() += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %a.node, "keyring: no answer: {e}");
                }
            }
        }
        let n = pool.len();
        let error = if failed > 0 {
            format!("{failed}/{n} nodes reported failure")
        } else if answered < n {
            format!("{answered}/{n} nodes reported success")
        } else {
            String::new()
        };
        if !error.is_empty() {
            errors.push(format!("{label} error: {error}"));
            for (node, msg) in &messages {
                errors.push(format!("{node}: {msg}"));
            }
        }
        let mut e = json!({
            "WAN": wan,
            "Datacenter": dc,
            "Segment": "",
            "Keys": keys,
            "PrimaryKeys": primary,
            "NumNodes": n,
        });
        if !messages.is_empty() {
            e["Messages"] = json!(messages);
        }
        entries.push(e);
    }
    if errors.is_empty() {
        Ok(json!(entries))
    } else {
        Err(ApiError::internal(multierror(&errors)))
    }
}

async fn list(ctx: Ctx) -> ApiResult {
    check_params(&ctx, false, false)?;
    let answers = everywhere(&ctx, KeyOp::List, "").await;
    let body = summarize(&ctx, &answers)?;
    Ok(json(&ctx, &body))
}

/// install/use/remove: the body's key, checked for base64 before any agent
/// is asked; 200 with an empty body when every agent did it.
async fn change(ctx: Ctx, op: KeyOp) -> ApiResult {
    let args: KeyringArgs = super::catalog::decode_body(&ctx)?;
    check_params(&ctx, true, args.local_only)?;
    if let Err(e) = meshgate_consensus::keyring::check_key(&args.key)
        && e.starts_with("illegal base64")
    {
        let dc = &ctx.agent.config.datacenter;
        return Err(ApiError::internal(multierror(&[
            format!("WAN error: {e}"),
            format!("{dc} (LAN) error: {e}"),
        ])));
    }
    let answers = everywhere(&ctx, op, &args.key).await;
    summarize(&ctx, &answers)?;
    Ok(empty())
}

async fn install(ctx: Ctx) -> ApiResult {
    change(ctx, KeyOp::Install).await
}

async fn use_key(ctx: Ctx) -> ApiResult {
    change(ctx, KeyOp::Use).await
}

async fn remove(ctx: Ctx) -> ApiResult {
    change(ctx, KeyOp::Remove).await
}
