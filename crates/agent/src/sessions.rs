//! Session TTLs and KV tombstone reaping.
//!
//! TTLs are not replicated state: the process that orders writes keeps them
//! and, when one runs out, proposes the session's destruction ([`expire_ttls`]):
//! a single agent itself, in a cluster the leader, whichever agent created or
//! renews a session; a new leader gives every session its whole TTL again, as
//! Consul's does. As in Consul, a session is invalidated only after twice its
//! TTL without renewal, to give clients a grace period.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshgate_state::Command;
use parking_lot::Mutex;
use tracing::info;

use crate::Agent;
use crate::store::now_ms;

/// Consul invalidates a session after `TTL * 2` without renewal.
pub const TTL_MULTIPLIER: u32 = 2;

/// The session renewals a single agent (not a cluster's) has taken: session
/// ID → when. In a cluster the leader records them
/// ([`meshgate_consensus::Consensus::renew_session`]).
#[derive(Default)]
pub struct SessionRenewals(Mutex<BTreeMap<String, Instant>>);

impl SessionRenewals {
    /// Records a renewal of session `id`, now.
    pub fn renewed(&self, id: &str) {
        self.0.lock().insert(id.to_string(), Instant::now());
    }

    /// The renewals of the sessions for which `keep` holds (the others are
    /// forgotten).
    fn of(&self, keep: impl Fn(&str) -> bool) -> BTreeMap<String, Instant> {
        let mut r = self.0.lock();
        r.retain(|id, _| keep(id));
        r.clone()
    }
}

/// How often the sessions are checked for a TTL that ran out.
const TTL_SCAN_EVERY: Duration = Duration::from_millis(500);

/// Invalidates the sessions not renewed within twice their TTL: on a single
/// agent, or on the leader of a cluster. A session's TTL runs from the latest
/// of: when this process first saw it (while leading), its latest renewal, and
/// when this server became leader.
pub async fn expire_ttls(agent: Arc<Agent>) {
    let mut stop = agent.shutdown_signal();
    let mut leading_since: Option<Instant> = None;
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TTL_SCAN_EVERY) => {}
            _ = crate::stopped(&mut stop) => return,
        }
        // Read each time: cluster mode is set while the agent starts.
        let cluster = agent.store.cluster();
        if cluster.is_some_and(|c| !c.is_leader()) {
            leading_since = None;
            first_seen.clear();
            continue;
        }
        let since = *leading_since.get_or_insert_with(Instant::now);
        let ttls: HashMap<String, Duration> = {
            let st = agent.store.read();
            st.sessions()
                .1
                .into_iter()
                .filter_map(|s| {
                    let ttl = meshgate_types::duration::parse(&s.ttl).ok()?;
                    (!ttl.is_zero()).then(|| (s.id.clone(), ttl))
                })
                .collect()
        };
        let keep = |id: &str| ttls.contains_key(id);
        let renewed = match cluster {
            Some(c) => c.session_renewals(keep),
            None => agent.sessions.of(keep),
        };
        first_seen.retain(|id, _| ttls.contains_key(id));
        let now = Instant::now();
        for (id, ttl) in ttls {
            let seen = *first_seen.entry(id.clone()).or_insert(now);
            let last = renewed.get(&id).map_or(seen, |r| (*r).max(seen)).max(since);
            if now.duration_since(last) < ttl * TTL_MULTIPLIER {
                continue;
            }
            info!(session = %id, "Session TTL expired, invalidating");
            if agent
                .store
                .write(Command::SessionDestroy { id: id.clone() })
                .await
                .is_ok()
            {
                first_seen.remove(&id);
            }
        }
    }
}

/// How long a KV tombstone is kept (Consul's default `tombstone_ttl`).
const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);

/// Reaps KV tombstones older than the tombstone TTL.
pub async fn tombstone_reaper(agent: Arc<Agent>) {
    let mut stop = agent.shutdown_signal();
    // (time seen, index) marks: tombstones at or below an index seen long enough
    // ago can go.
    let mut marks: Vec<(std::time::Instant, u64)> = Vec::new();
    loop {
        tokio::select! {
            _ = crate::stopped(&mut stop) => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        let (index, count) = {
            let st = agent.store.read();
            (st.index, st.tombstone_count())
        };
        marks.push((std::time::Instant::now(), index));
        let cutoff = marks
            .iter()
            .rev()
            .find(|(t, _)| t.elapsed() >= TOMBSTONE_TTL)
            .map(|(_, i)| *i);
        marks.retain(|(t, _)| t.elapsed() < TOMBSTONE_TTL + Duration::from_secs(60));
        if let (Some(up_to), true) = (cutoff, count > 0) {
            let _ = agent.store.write(Command::KvReapTombstones { up_to }).await;
        }
        let _ = now_ms();
    }
}
