//! Node liveness in cluster mode: every agent sends a heartbeat to the
//! leader every 2 s; the leader keeps each node's `serfHealth` check in step —
//! critical once a node has been silent for 10 s, passing when it is heard
//! again. (meshgate has no gossip layer; this is what Consul's serf failure
//! detection gives the catalog.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshgate_state::Command;
use meshgate_types::catalog::{
    SERF_CHECK_ALIVE_OUTPUT, SERF_CHECK_FAILED_OUTPUT, SERF_CHECK_ID, status,
};
use tracing::{info, warn};

use crate::Agent;

/// How often agents send heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// Silence after which a node's `serfHealth` turns critical.
pub const DEAD_AFTER: Duration = Duration::from_secs(10);

/// Sends heartbeats to the leader until the agent stops.
pub async fn heartbeats(agent: Arc<Agent>) {
    let Some(c) = agent.store.cluster().cloned() else {
        return;
    };
    let mut stop = agent.shutdown_signal();
    loop {
        if c.is_leader() {
            c.heartbeat_from(&agent.node_name);
        } else if let Err(e) = c.send_heartbeat(&agent.node_name).await {
            tracing::debug!("heartbeat to the leader: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            _ = crate::stopped(&mut stop) => return,
        }
    }
}

/// On the leader: turns `serfHealth` critical for silent nodes and passing
/// for nodes heard again.
pub async fn watch(agent: Arc<Agent>) {
    let Some(c) = agent.store.cluster().cloned() else {
        return;
    };
    let mut stop = agent.shutdown_signal();
    // When this server became leader: every node gets DEAD_AFTER from then
    // before it can be declared dead (its heartbeats went to the old leader).
    let mut leading_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = crate::stopped(&mut stop) => return,
        }
        if !c.is_leader() {
            leading_since = None;
            continue;
        }
        let since = *leading_since.get_or_insert_with(Instant::now);
        let heard = c.heartbeats();
        let checks: BTreeMap<String, (String, String)> = {
            let st = agent.store.read();
            st.checks_in_state("any")
                .1
                .into_iter()
                .filter(|ch| ch.check_id == SERF_CHECK_ID)
                .map(|ch| (ch.node.clone(), (ch.status.clone(), ch.output.clone())))
                .collect()
        };
        for (node, (st, _)) in checks {
            let last = heard.get(&node).copied().unwrap_or(since).max(since);
            let alive = node == agent.node_name || last.elapsed() < DEAD_AFTER;
            let (want, output) = if alive {
                (status::PASSING, SERF_CHECK_ALIVE_OUTPUT)
            } else {
                (status::CRITICAL, SERF_CHECK_FAILED_OUTPUT)
            };
            if st == want {
                continue;
            }
            if alive {
                info!(node = %node, "node is alive again");
            } else {
                warn!(node = %node, "node has not been heard from for {DEAD_AFTER:?}: serfHealth critical");
            }
            let r = agent
                .store
                .write(Command::UpdateCheck {
                    node: node.clone(),
                    check_id: SERF_CHECK_ID.into(),
                    status: want.into(),
                    output: output.into(),
                })
                .await;
            if let Err(e) = r {
                warn!(node = %node, "updating serfHealth: {e}");
            }
        }
    }
}
