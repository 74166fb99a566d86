//! `/v1/operator/raft/*`: the raft configuration and removing a server.

use axum::http::Method;
use meshgate_acl::{Access, Resource};
use serde_json::{Value, json};

use super::{AclRule, ApiError, ApiResult, Ctx, Route, handler, json, route};

pub(super) fn routes() -> Vec<Route> {
    let read = AclRule::Global(Resource::Operator, Access::Read);
    let write = AclRule::Global(Resource::Operator, Access::Write);
    vec![
        route(
            Method::GET,
            "/v1/operator/raft/configuration",
            read,
            handler!(configuration),
        ),
        route(
            Method::DELETE,
            "/v1/operator/raft/peer",
            write,
            handler!(remove_peer),
        ),
        route(
            Method::GET,
            "/v1/operator/autopilot/configuration",
            read,
            handler!(autopilot_configuration),
        ),
        route(
            Method::GET,
            "/v1/operator/autopilot/health",
            read,
            handler!(autopilot_health),
        ),
        route(Method::GET, "/v1/operator/usage", read, handler!(usage)),
    ]
}

/// The servers: raft id, address, and the catalog node at that address.
fn servers(ctx: &Ctx) -> Vec<Value> {
    let st = ctx.agent.store.read();
    let nodes = st.nodes().1;
    let port = |a: &str| a.rsplit(':').next().unwrap_or("").to_string();
    let host = |a: &str| {
        a.rsplit_once(':')
            .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string())
            .unwrap_or_default()
    };
    match ctx.agent.store.cluster() {
        None => vec![json!({
            "ID": ctx.agent.node_id,
            "Node": ctx.agent.node_name,
            "Address": ctx.agent.server_addr(),
            "Leader": true,
            "ProtocolVersion": "3",
            "Voter": true,
            "LastIndex": st.index,
        })],
        Some(c) => {
            let leader = c.info().leader.map(|(id, _)| id);
            c.voters()
                .into_iter()
                .map(|(id, addr)| {
                    let node = nodes.iter().find(|n| {
                        n.address == host(&addr)
                            && st.node_services(&n.node).1.is_some_and(|(_, svcs)| {
                                svcs.iter().any(|s| {
                                    s.service == "consul" && s.port.to_string() == port(&addr)
                                })
                            })
                    });
                    json!({
                        "ID": node.map(|n| n.id.clone()).unwrap_or_else(|| id.to_string()),
                        "Node": node.map(|n| n.node.clone()).unwrap_or_default(),
                        "Address": addr,
                        "Leader": leader == Some(id),
                        "ProtocolVersion": "3",
                        "Voter": true,
                        "LastIndex": st.index,
                    })
                })
                .collect()
        }
    }
}

async fn configuration(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    let index = ctx.agent.store.read().index;
    Ok(json(
        &ctx,
        &json!({"Servers": servers(&ctx), "Index": index}),
    ))
}

/// The raft id of the server named by `?id=` (node ID or raft id) or
/// `?address=`.
fn target(ctx: &Ctx) -> Result<u64, ApiError> {
    let id = ctx.query.get("id").unwrap_or_default().to_string();
    let address = ctx.query.get("address").unwrap_or_default().to_string();
    if id.is_empty() && address.is_empty() {
        return Err(ApiError::bad_request(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
        ));
    }
    let c = ctx
        .agent
        .store
        .cluster()
        .ok_or_else(|| ApiError::internal("this agent runs without a cluster (-dev)"))?;
    let voters = c.voters();
    let list = servers(ctx);
    for (raft_id, addr) in &voters {
        let entry = list.iter().find(|s| s["Address"] == *addr);
        let node_id = entry.and_then(|e| e["ID"].as_str()).unwrap_or("");
        if (!id.is_empty() && (id == node_id || id == raft_id.to_string()))
            || (!address.is_empty() && address == *addr)
        {
            return Ok(*raft_id);
        }
    }
    Err(ApiError::internal(format!(
        "id {id:?} / address {address:?} was not found in the Raft configuration"
    )))
}

async fn remove_peer(ctx: Ctx) -> ApiResult {
    let id = target(&ctx)?;
    let c = ctx
        .agent
        .store
        .cluster()
        .cloned()
        .ok_or_else(|| ApiError::internal("no cluster"))?;
    if !c.is_leader() {
        return Err(ApiError::internal(
            "removing a peer must be sent to the leader (see /v1/status/leader)",
        ));
    }
    c.remove_server(id).await.map_err(ApiError::internal)?;
    Ok(json(&ctx, &Value::Null))
}

/// Log entries a healthy server may trail the leader by.
const MAX_TRAILING_LOGS: u64 = 250;

async fn autopilot_configuration(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    Ok(json(
        &ctx,
        &json!({
            "CleanupDeadServers": false,
            "LastContactThreshold": "10s",
            "MaxTrailingLogs": MAX_TRAILING_LOGS,
            "MinQuorum": 0,
            "ServerStabilizationTime": "10s",
            "RedundancyZoneTag": "",
            "DisableUpgradeMigration": false,
            "UpgradeVersionTag": "",
            "CreateIndex": 0,
            "ModifyIndex": 0,
        }),
    ))
}

/// Each server's health as the leader sees it: heard from within the
/// failure window (heartbeats) and not trailing the log by more than
/// `MaxTrailingLogs`.
async fn autopilot_health(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    let list = servers(&ctx);
    let Some(c) = ctx.agent.store.cluster().cloned() else {
        let servers: Vec<Value> = list
            .into_iter()
            .map(|s| {
                json!({"ID": s["ID"], "Name": s["Node"], "Address": s["Address"],
                       "SerfStatus": "alive", "Version": crate::COMPAT_VERSION,
                       "Leader": true, "LastContact": "0s", "LastTerm": 1,
                       "LastIndex": s["LastIndex"], "Healthy": true, "Voter": true,
                       "StableSince": ""})
            })
            .collect();
        return Ok(json(
            &ctx,
            &json!({"Healthy": true, "FailureTolerance": 0, "Servers": servers}),
        ));
    };
    let rep = c
        .leader_replication()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let leader = c.info().leader.map(|(id, _)| id);
    let voters = c.voters();
    let serf: std::collections::BTreeMap<String, String> = {
        let st = ctx.agent.store.read();
        st.checks_in_state("any")
            .1
            .into_iter()
            .filter(|ch| ch.check_id == meshgate_types::catalog::SERF_CHECK_ID)
            .map(|ch| (ch.node.clone(), ch.status.clone()))
            .collect()
    };
    let mut healthy_count = 0usize;
    let mut out = Vec::new();
    for (id, addr) in &voters {
        let entry = list
            .iter()
            .find(|s| s["Address"] == *addr)
            .cloned()
            .unwrap_or(Value::Null);
        let name = entry["Node"].as_str().unwrap_or("").to_string();
        let is_leader = leader == Some(*id);
        let index = if is_leader {
            rep.last_index
        } else {
            rep.matched.get(id).copied().unwrap_or(0)
        };
        let alive = serf.get(&name).is_none_or(|s| s != "critical");
        let healthy = alive && rep.last_index.saturating_sub(index) <= MAX_TRAILING_LOGS;
        if healthy {
            healthy_count += 1;
        }
        out.push(json!({
            "ID": entry["ID"],
            "Name": name,
            "Address": addr,
            "SerfStatus": if alive { "alive" } else { "failed" },
            "Version": crate::COMPAT_VERSION,
            "Leader": is_leader,
            "LastContact": if is_leader { "0s" } else if alive { "<10s" } else { ">10s" },
            "LastTerm": rep.term,
            "LastIndex": index,
            "Healthy": healthy,
            "Voter": true,
            "StableSince": "",
        }));
    }
    let quorum = voters.len() / 2 + 1;
    Ok(json(
        &ctx,
        &json!({
            "Healthy": healthy_count == voters.len(),
            "FailureTolerance": healthy_count.saturating_sub(quorum),
            "Servers": out,
        }),
    ))
}

/// Counts of what the catalog holds.
async fn usage(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    let st = ctx.agent.store.read();
    let (idx, services) = st.services();
    let instances: Vec<_> = st.all_service_instances().collect();
    let connect = instances.iter().filter(|(_, s)| !s.kind.is_empty()).count();
    let nodes = st.nodes().1.len();
    let dc = ctx.agent.config.datacenter.clone();
    let body = json!({
        "Usage": { dc: {
            "Services": services.len(),
            "ServiceInstances": instances.len(),
            "ConnectServiceInstances": {"connect-proxy": instances.iter().filter(|(_, s)| s.kind == "connect-proxy").count(),
                                        "terminating-gateway": instances.iter().filter(|(_, s)| s.kind == "terminating-gateway").count()},
            "BillableServiceInstances": instances.len() - connect,
            "Nodes": nodes,
        }},
        "Index": idx,
    });
    Ok(json(&ctx, &body))
}
