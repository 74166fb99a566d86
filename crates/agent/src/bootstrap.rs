//! `config_entries { bootstrap = [...] }`: config entries written in the
//! servers' agent configuration, created by the leader when they do not
//! exist — at start in `-dev` mode, and each time a server becomes leader in
//! a cluster (so an entry deleted by hand comes back at the next leader
//! change, as in Consul). An entry that exists is never overwritten.

use std::sync::Arc;
use std::time::Duration;

use meshgate_config_entries::ConfigEntry;
use meshgate_state::Command;
use tracing::{info, warn};

use crate::Agent;

/// How often a server checks whether it has become leader.
const LEADERSHIP_POLL: Duration = Duration::from_secs(1);

/// The entries to bootstrap: only servers (and `-dev`) bootstrap, as only
/// Consul's servers read the key.
fn entries(agent: &Agent) -> Vec<ConfigEntry> {
    if !(agent.config.server || agent.config.dev) {
        return Vec::new();
    }
    // Checked when the configuration was loaded.
    agent.config.bootstrap_entries().unwrap_or_default()
}

/// Creates the entries that do not exist yet; whether every write landed.
pub async fn apply_missing(agent: &Agent) -> bool {
    let mut all = true;
    for e in entries(agent) {
        let exists = agent
            .store
            .read()
            .config_entry(e.kind(), e.name())
            .1
            .is_some();
        if exists {
            continue;
        }
        // CAS 0: created only if still missing when the write applies.
        let cmd = Command::ConfigSet {
            entry: e.to_json(),
            cas: Some(0),
        };
        match agent.store.write(cmd).await {
            Ok(_) => info!(
                kind = e.kind(),
                name = e.name(),
                "config entry created from config_entries.bootstrap"
            ),
            Err(err) => {
                warn!(
                    kind = e.kind(),
                    name = e.name(),
                    "config_entries.bootstrap: not written yet: {err}"
                );
                all = false;
            }
        }
    }
    all
}

/// In a cluster: applies the missing entries each time this server becomes
/// leader (retrying each second until every write lands).
pub async fn follow_leadership(agent: Arc<Agent>) {
    // A single agent applied them at start (cluster mode is set before
    // this task starts).
    if agent.store.cluster().is_none() || entries(&agent).is_empty() {
        return;
    }
    let mut stop = agent.shutdown_signal();
    let mut done = false;
    loop {
        match agent.store.cluster() {
            Some(c) if c.is_leader() => {
                if !done {
                    done = apply_missing(&agent).await;
                }
            }
            _ => done = false,
        }
        tokio::select! {
            _ = tokio::time::sleep(LEADERSHIP_POLL) => {}
            _ = crate::stopped(&mut stop) => return,
        }
    }
}
