//! Autopilot: each server's health as Consul's autopilot judges it (last
//! contact with the leader, term, log lag), the cluster's failure tolerance,
//! and — on the leader — removal of dead servers (`CleanupDeadServers`).
//!
//! Stats come from every server's server port (`/v1/internal/raft/info`);
//! a server is dead when the node that runs it is `failed` (its `serfHealth`
//! critical: no heartbeat for 10 s) or gone from the catalog (`left`).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use meshgate_state::AutopilotConfig;
use meshgate_types::catalog::{SERF_CHECK_ID, status};
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::Agent;

/// The leader's last judgement: (healthy, failure tolerance), for the
/// `consul.autopilot.*` gauges.
static JUDGED: Mutex<Option<(bool, usize)>> = Mutex::new(None);

/// `consul.autopilot.healthy` and `consul.autopilot.failure_tolerance` as
/// the leader last judged them (`None` elsewhere, or before its first
/// look).
pub fn judged() -> Option<(bool, usize)> {
    *JUDGED.lock()
}

/// How often the leader looks for dead servers (Consul's AutopilotInterval).
const CLEANUP_INTERVAL: Duration = Duration::from_secs(10);

/// One server, as autopilot sees it.
#[derive(Debug, Clone)]
pub struct ServerView {
    pub raft_id: u64,
    /// The node's ID (UUID) when the catalog knows the node.
    pub id: String,
    pub name: String,
    pub address: String,
    /// `alive`, `failed` or `left`.
    pub node_status: &'static str,
    pub leader: bool,
    pub last_contact: Option<Duration>,
    pub last_term: u64,
    pub last_index: u64,
    pub healthy: bool,
    pub stable_since: SystemTime,
    pub meta: Option<BTreeMap<String, String>>,
}

/// The cluster as autopilot sees it.
#[derive(Debug, Clone)]
pub struct View {
    pub servers: Vec<ServerView>,
    pub leader: Option<u64>,
    pub healthy: bool,
    pub failure_tolerance: usize,
}

/// When each server's health last flipped (raft id → (healthy, since)).
static STABLE: LazyLock<Mutex<BTreeMap<u64, (bool, SystemTime)>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// The servers of the raft configuration with their health, judged by
/// `config`. `None` without a cluster.
pub async fn view(agent: &Arc<Agent>, config: &AutopilotConfig) -> Option<View> {
    let c = agent.store.cluster()?.clone();
    let voters = c.voters();
    let leader = c.info().leader.map(|(id, _)| id);
    let stats = futures::future::join_all(voters.iter().map(|(id, addr)| {
        let c = c.clone();
        async move {
            if *id == c.id {
                Some(c.info())
            } else {
                c.peer_info(addr).await.ok()
            }
        }
    }))
    .await;
    let (by_addr, serf) = {
        let st = agent.store.read();
        let nodes: BTreeMap<String, (String, String, BTreeMap<String, String>)> = st
            .nodes()
            .1
            .iter()
            .map(|n| {
                (
                    n.address.clone(),
                    (
                        n.node.clone(),
                        n.id.clone(),
                        n.meta.clone().unwrap_or_default(),
                    ),
                )
            })
            .collect();
        let serf: BTreeMap<String, String> = st
            .checks_in_state("any")
            .1
            .into_iter()
            .filter(|ch| ch.check_id == SERF_CHECK_ID)
            .map(|ch| (ch.node.clone(), ch.status.clone()))
            .collect();
        (nodes, serf)
    };
    let leader_stats = leader.and_then(|l| {
        voters
            .keys()
            .position(|id| *id == l)
            .and_then(|i| stats[i].clone())
    });
    let (leader_index, leader_term) = leader_stats
        .map(|i| (i.last_index, i.term))
        .unwrap_or((0, 0));
    let threshold = config.last_contact_threshold.get();
    let now = SystemTime::now();
    let mut stable = STABLE.lock();
    let mut servers = Vec::new();
    for ((raft_id, addr), info) in voters.iter().zip(stats) {
        let host = addr
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
            .unwrap_or_default();
        let node = by_addr.get(&host);
        let node_status = match node {
            None => "left",
            Some((name, _, _)) => match serf.get(name).map(String::as_str) {
                Some(status::CRITICAL) => "failed",
                _ => "alive",
            },
        };
        let is_leader = leader == Some(*raft_id);
        let last_contact = info
            .as_ref()
            .and_then(|i| i.last_contact_ms)
            .map(Duration::from_millis);
        let (last_index, last_term) = info
            .as_ref()
            .map(|i| (i.last_index, i.term))
            .unwrap_or((0, 0));
        let healthy = leader_index > 0
            && leader_term > 0
            && node_status == "alive"
            && last_contact.is_some_and(|d| d <= threshold)
            && last_term == leader_term
            && last_index + config.max_trailing_logs >= leader_index;
        let entry = stable.entry(*raft_id).or_insert((healthy, now));
        if entry.0 != healthy {
            *entry = (healthy, now);
        }
        servers.push(ServerView {
            raft_id: *raft_id,
            id: node
                .map(|n| n.1.clone())
                .unwrap_or_else(|| raft_id.to_string()),
            name: node.map(|n| n.0.clone()).unwrap_or_default(),
            address: addr.clone(),
            node_status,
            leader: is_leader,
            last_contact,
            last_term,
            last_index,
            healthy,
            stable_since: entry.1,
            meta: node.map(|n| n.2.clone()),
        });
    }
    stable.retain(|id, _| voters.contains_key(id));
    let healthy_voters = servers.iter().filter(|s| s.healthy).count();
    let quorum = servers.len() / 2 + 1;
    Some(View {
        healthy: servers.iter().all(|s| s.healthy),
        failure_tolerance: healthy_voters.saturating_sub(quorum),
        servers,
        leader,
    })
}

/// [`view`], or on a server without a cluster (`-dev`) the server itself:
/// the healthy leader, as Consul's dev agent reports it.
pub async fn view_or_self(agent: &Arc<Agent>, config: &AutopilotConfig) -> View {
    if let Some(v) = view(agent, config).await {
        return v;
    }
    let st = agent.store.read();
    let meta = st
        .nodes()
        .1
        .iter()
        .find(|n| n.node == agent.node_name)
        .and_then(|n| n.meta.clone());
    View {
        servers: vec![ServerView {
            raft_id: 1,
            id: agent.node_id.clone(),
            name: agent.node_name.clone(),
            address: agent.server_addr(),
            node_status: "alive",
            leader: true,
            last_contact: Some(Duration::ZERO),
            last_term: 1,
            last_index: st.index,
            healthy: true,
            stable_since: SystemTime::now(),
            meta,
        }],
        leader: Some(1),
        healthy: true,
        failure_tolerance: 0,
    }
}

/// The servers to remove now: dead (`failed` or `left`), at most
/// `(voters - 1) / 2` of them, never leaving fewer than `MinQuorum` voters,
/// never the leader.
pub fn dead_to_remove(view: &View, config: &AutopilotConfig) -> Vec<u64> {
    if !config.cleanup_dead_servers {
        return Vec::new();
    }
    let mut voters = view.servers.len() as u64;
    let mut max_removal = voters.saturating_sub(1) / 2;
    let mut out = Vec::new();
    // Servers gone from the catalog first (Consul's "stale" servers), then
    // failed ones.
    for wanted in ["left", "failed"] {
        for s in view
            .servers
            .iter()
            .filter(|s| s.node_status == wanted && !s.leader)
        {
            if voters.saturating_sub(1) < config.min_quorum || max_removal < 1 {
                continue;
            }
            out.push(s.raft_id);
            max_removal -= 1;
            voters -= 1;
        }
    }
    out
}

/// On the leader, every 10 s: removes dead servers from the raft
/// configuration when `CleanupDeadServers` is on.
pub async fn run(agent: Arc<Agent>) {
    let mut stop = agent.shutdown_signal();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CLEANUP_INTERVAL) => {}
            _ = crate::stopped(&mut stop) => return,
        }
        let Some(c) = agent.store.cluster().cloned() else {
            return;
        };
        if !c.is_leader() {
            *JUDGED.lock() = None;
            continue;
        }
        let config = agent.store.read().autopilot();
        let Some(view) = view(&agent, &config).await else {
            continue;
        };
        *JUDGED.lock() = Some((view.healthy, view.failure_tolerance));
        for id in dead_to_remove(&view, &config) {
            let name = view
                .servers
                .iter()
                .find(|s| s.raft_id == id)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            info!(server = id, node = %name, "autopilot: removing a dead server from the raft configuration");
            if let Err(e) = c.remove_server(id).await {
                warn!(server = id, "autopilot: removing a dead server: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: u64, status: &'static str, leader: bool) -> ServerView {
        ServerView {
            raft_id: id,
            id: id.to_string(),
            name: format!("s{id}"),
            address: String::new(),
            node_status: status,
            leader,
            last_contact: None,
            last_term: 1,
            last_index: 1,
            healthy: status == "alive",
            stable_since: SystemTime::UNIX_EPOCH,
            meta: None,
        }
    }

    fn view_of(servers: Vec<ServerView>) -> View {
        View {
            servers,
            leader: Some(1),
            healthy: false,
            failure_tolerance: 0,
        }
    }

    #[test]
    fn never_a_majority_and_never_below_min_quorum() {
        let cfg = AutopilotConfig::default();
        let three = view_of(vec![
            server(1, "alive", true),
            server(2, "failed", false),
            server(3, "alive", false),
        ]);
        assert_eq!(dead_to_remove(&three, &cfg), vec![2]);
        let two_dead = view_of(vec![
            server(1, "alive", true),
            server(2, "failed", false),
            server(3, "left", false),
        ]);
        // (3-1)/2 = 1 per round, stale ("left") first.
        assert_eq!(dead_to_remove(&two_dead, &cfg), vec![3]);
        let min3 = AutopilotConfig {
            min_quorum: 3,
            ..AutopilotConfig::default()
        };
        assert!(dead_to_remove(&three, &min3).is_empty());
        let off = AutopilotConfig {
            cleanup_dead_servers: false,
            ..AutopilotConfig::default()
        };
        assert!(dead_to_remove(&three, &off).is_empty());
        let pair = view_of(vec![server(1, "alive", true), server(2, "failed", false)]);
        assert!(dead_to_remove(&pair, &cfg).is_empty());
    }
}
