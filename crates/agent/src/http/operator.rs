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
            Method::POST,
            "/v1/operator/raft/transfer-leader",
            write,
            handler!(transfer_leader),
        ),
        route(
            Method::GET,
            "/v1/operator/autopilot/configuration",
            read,
            handler!(autopilot_configuration),
        ),
        route(
            Method::PUT,
            "/v1/operator/autopilot/configuration",
            write,
            handler!(autopilot_set_configuration),
        ),
        route(
            Method::GET,
            "/v1/operator/autopilot/health",
            read,
            handler!(autopilot_health),
        ),
        route(
            Method::GET,
            "/v1/operator/autopilot/state",
            read,
            handler!(autopilot_state),
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

/// `POST /v1/operator/raft/transfer-leader[?id=ID]`: moves the leadership
/// to the server with node ID (or raft id) `ID`, or to the most up-to-date
/// other server.
async fn transfer_leader(ctx: Ctx) -> ApiResult {
    let c = ctx
        .agent
        .store
        .cluster()
        .cloned()
        .ok_or_else(|| ApiError::internal("cannot find peer"))?;
    let id = ctx.query.get("id").unwrap_or_default().to_string();
    let target = if id.is_empty() {
        None
    } else {
        let list = servers(&ctx);
        let found = c.voters().into_iter().find_map(|(raft_id, addr)| {
            let node_id = list
                .iter()
                .find(|s| s["Address"] == *addr)
                .and_then(|e| e["ID"].as_str())
                .unwrap_or("")
                .to_string();
            (id == node_id || id == raft_id.to_string()).then_some(raft_id)
        });
        Some(found.ok_or_else(|| {
            ApiError::internal(format!("Could not find address for server id {id}"))
        })?)
    };
    c.transfer_leader_via_leader(target)
        .await
        .map_err(ApiError::internal)?;
    Ok(json(&ctx, &json!({"Success": true})))
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

fn config_json(c: &meshgate_state::AutopilotConfig) -> Value {
    json!({
        "CleanupDeadServers": c.cleanup_dead_servers,
        "LastContactThreshold": c.last_contact_threshold,
        "MaxTrailingLogs": c.max_trailing_logs,
        "MinQuorum": c.min_quorum,
        "ServerStabilizationTime": c.server_stabilization_time,
        "RedundancyZoneTag": c.redundancy_zone_tag,
        "DisableUpgradeMigration": c.disable_upgrade_migration,
        "UpgradeVersionTag": c.upgrade_version_tag,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    })
}

async fn autopilot_configuration(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    let c = ctx.agent.store.read().autopilot();
    Ok(json(&ctx, &config_json(&c)))
}

/// `PUT /v1/operator/autopilot/configuration[?cas=N]`: fields left out take
/// Consul's defaults; answers `true`, or `false` when `cas` did not match.
async fn autopilot_set_configuration(ctx: Ctx) -> ApiResult {
    use meshgate_types::lenient::{self, Options};
    let cas = match ctx.query.get("cas").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "Error parsing cas value: strconv.ParseUint: parsing \"{v}\": invalid syntax"
            ))
        })?),
    };
    if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("Error parsing autopilot config: EOF"));
    }
    let body: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("Error parsing autopilot config: {e}")))?;
    // Start from the defaults, then the fields given.
    let mut merged = config_json(&meshgate_state::AutopilotConfig::default());
    if let (Some(m), Some(b)) = (merged.as_object_mut(), body.as_object()) {
        for (k, v) in b {
            let known = m.keys().find(|mk| mk.eq_ignore_ascii_case(k)).cloned();
            match known {
                Some(mk) => {
                    if !v.is_null() {
                        m.insert(mk, v.clone());
                    }
                }
                None => {
                    return Err(ApiError::bad_request(format!(
                        "Error parsing autopilot config: json: unknown field \"{k}\""
                    )));
                }
            }
        }
    }
    let config: meshgate_state::AutopilotConfig =
        lenient::from_value(merged, Options { deny_unknown: true })
            .map_err(|e| ApiError::bad_request(format!("Error parsing autopilot config: {e}")))?;
    let applied = ctx
        .agent
        .store
        .write(meshgate_state::Command::AutopilotSet {
            config: Box::new(config),
            cas,
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let ok = matches!(applied, meshgate_state::Applied::Bool(true));
    Ok(json(&ctx, &json!(ok)))
}

/// A server's last contact as Consul's API writes it: a Go duration, `0s`
/// when not known (a server that does not answer), as Consul's zero stats —
/// Go clients cannot read anything that is not a duration here.
fn duration_text(d: Option<std::time::Duration>) -> String {
    meshgate_types::duration::format(d.unwrap_or_default())
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    meshgate_types::time::format_rfc3339_ms(ms)
}

/// Each server's health as autopilot judges it (`LastContactThreshold`,
/// `MaxTrailingLogs`, the leader's term); 429 when not every server is
/// healthy, as in Consul.
async fn autopilot_health(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    let config = ctx.agent.store.read().autopilot();
    let view = crate::autopilot::view_or_self(&ctx.agent, &config).await;
    let servers: Vec<Value> = view
        .servers
        .iter()
        .map(|s| {
            json!({
                "ID": s.id,
                "Name": s.name,
                "Address": s.address,
                "SerfStatus": s.node_status,
                "Version": crate::COMPAT_VERSION,
                "Leader": s.leader,
                "LastContact": duration_text(s.last_contact),
                "LastTerm": s.last_term,
                "LastIndex": s.last_index,
                "Healthy": s.healthy,
                "Voter": true,
                "StableSince": rfc3339(s.stable_since),
            })
        })
        .collect();
    let body = json!({
        "Healthy": view.healthy,
        "FailureTolerance": view.failure_tolerance,
        "Servers": servers,
    });
    let mut r = json(&ctx, &body);
    if !view.healthy {
        *r.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
    }
    Ok(r)
}

/// `GET /v1/operator/autopilot/state`: the servers of the raft configuration
/// keyed by ID, their role and health, the voters (leader first).
async fn autopilot_state(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    let config = ctx.agent.store.read().autopilot();
    let view = crate::autopilot::view_or_self(&ctx.agent, &config).await;
    let mut servers = serde_json::Map::new();
    for s in &view.servers {
        servers.insert(
            s.id.clone(),
            json!({
                "ID": s.id,
                "Name": s.name,
                "Address": s.address,
                "NodeStatus": s.node_status,
                "Version": crate::COMPAT_VERSION,
                "LastContact": duration_text(s.last_contact),
                "LastTerm": s.last_term,
                "LastIndex": s.last_index,
                "Healthy": s.healthy,
                "StableSince": rfc3339(s.stable_since),
                "ReadReplica": false,
                "Status": if s.leader { "leader" } else { "voter" },
                "Meta": s.meta,
                "NodeType": "voter",
            }),
        );
    }
    let mut voters: Vec<&crate::autopilot::ServerView> = view.servers.iter().collect();
    voters.sort_by(|a, b| {
        b.leader
            .cmp(&a.leader)
            .then(b.healthy.cmp(&a.healthy))
            .then(a.stable_since.cmp(&b.stable_since))
            .then(a.id.cmp(&b.id))
    });
    let leader = view
        .servers
        .iter()
        .find(|s| s.leader)
        .map(|s| s.id.clone())
        .unwrap_or_default();
    Ok(json(
        &ctx,
        &json!({
            "Healthy": view.healthy,
            "FailureTolerance": view.failure_tolerance,
            "OptimisticFailureTolerance": view.failure_tolerance,
            "Servers": servers,
            "Leader": leader,
            "Voters": voters.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        }),
    ))
}

/// The mesh kinds Consul counts in `ConnectServiceInstances`, each present
/// (zero when none).
const MESH_KINDS: [&str; 6] = [
    "api-gateway",
    "connect-native",
    "connect-proxy",
    "ingress-gateway",
    "mesh-gateway",
    "terminating-gateway",
];

/// Counts of what the catalog holds, as Consul's `ServiceUsage`: instances
/// by mesh kind (`connect-native` for services with `Connect.Native`), and
/// billable instances (plain services other than `consul`).
async fn usage(ctx: Ctx) -> ApiResult {
    ctx.query_options()?;
    let st = ctx.agent.store.read();
    let (idx, services) = st.services();
    let mut instances = 0u64;
    let mut billable = 0u64;
    let mut kinds: serde_json::Map<String, Value> = MESH_KINDS
        .iter()
        .map(|k| (k.to_string(), json!(0)))
        .collect();
    let mut bump = |kind: &str| {
        if let Some(n) = kinds.get_mut(kind) {
            *n = json!(n.as_u64().unwrap_or(0) + 1);
        }
    };
    for (_, s) in st.all_service_instances() {
        instances += 1;
        if s.kind.is_empty() {
            if s.service != "consul" {
                billable += 1;
            }
            if s.connect.native {
                bump("connect-native");
            }
        } else {
            bump(&s.kind);
        }
    }
    let nodes = st.nodes().1.len();
    let dc = ctx.agent.config.datacenter.clone();
    let body = json!({
        "Usage": { dc: {
            "Services": services.len(),
            "ServiceInstances": instances,
            "ConnectServiceInstances": kinds,
            "BillableServiceInstances": billable,
            "Nodes": nodes,
        }},
        "Index": idx,
    });
    Ok(json(&ctx, &body))
}
