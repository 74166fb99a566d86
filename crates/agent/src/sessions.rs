//! Session TTL timers and KV tombstone reaping.
//!
//! TTLs are not replicated state: the process that orders writes keeps them and,
//! when one runs out, proposes the session's destruction. A single agent keeps
//! one timer per session ([`SessionTimers`]); in a cluster the leader keeps
//! them all ([`leader_ttls`]), whichever agent created or renews a session, and
//! a new leader gives every session its whole TTL again, as Consul's does. As
//! in Consul, a session is invalidated only after twice its TTL without
//! renewal, to give clients a grace period.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use meshgate_state::Command;
use parking_lot::Mutex;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::info;

use crate::Agent;
use crate::store::now_ms;

/// Consul invalidates a session after `TTL * 2` without renewal.
pub const TTL_MULTIPLIER: u32 = 2;

#[derive(Default)]
struct Timer {
    deadline: Option<Instant>,
    task: Option<AbortHandle>,
}

/// The running session timers.
#[derive(Default)]
pub struct SessionTimers {
    timers: Mutex<HashMap<String, Timer>>,
}

impl SessionTimers {
    /// Starts (or restarts) the timer of a session with the given TTL.
    pub fn reset(&self, agent: &Arc<Agent>, id: &str, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let deadline = Instant::now() + ttl * TTL_MULTIPLIER;
        let mut timers = self.timers.lock();
        let t = timers.entry(id.to_string()).or_default();
        t.deadline = Some(deadline);
        if t.task.is_none() {
            let agent = agent.clone();
            let id = id.to_string();
            t.task = Some(tokio::spawn(expire(agent, id)).abort_handle());
        }
    }

    /// Forgets a session's timer.
    pub fn clear(&self, id: &str) {
        if let Some(t) = self.timers.lock().remove(id)
            && let Some(task) = t.task
        {
            task.abort();
        }
    }

    /// Stops every timer.
    pub fn stop_all(&self) {
        for (_, t) in self.timers.lock().drain() {
            if let Some(task) = t.task {
                task.abort();
            }
        }
    }
}

async fn expire(agent: Arc<Agent>, id: String) {
    loop {
        let deadline = {
            let timers = agent.sessions.timers.lock();
            match timers.get(&id).and_then(|t| t.deadline) {
                Some(d) => d,
                None => return,
            }
        };
        tokio::time::sleep_until(deadline).await;
        let due = {
            let timers = agent.sessions.timers.lock();
            timers
                .get(&id)
                .and_then(|t| t.deadline)
                .is_some_and(|d| d <= Instant::now())
        };
        if due {
            info!(session = %id, "Session TTL expired, invalidating");
            agent.sessions.timers.lock().remove(&id);
            let _ = agent
                .store
                .write(Command::SessionDestroy { id: id.clone() })
                .await;
            return;
        }
    }
}

/// How often the leader looks for sessions whose TTL ran out.
const TTL_SCAN_EVERY: Duration = Duration::from_millis(500);

/// On the leader of a cluster: invalidates the sessions not renewed within
/// twice their TTL. A session's TTL runs from the latest of: when this server
/// first saw it while leading, its latest renewal sent to this leader
/// ([`meshgate_consensus::Consensus::renew_session`]), and when this server
/// became leader.
pub async fn leader_ttls(agent: Arc<Agent>) {
    let Some(c) = agent.store.cluster().cloned() else {
        return;
    };
    let mut stop = agent.shutdown_signal();
    let mut leading_since: Option<std::time::Instant> = None;
    let mut first_seen: HashMap<String, std::time::Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TTL_SCAN_EVERY) => {}
            _ = crate::stopped(&mut stop) => return,
        }
        if !c.is_leader() {
            leading_since = None;
            first_seen.clear();
            continue;
        }
        let since = *leading_since.get_or_insert_with(std::time::Instant::now);
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
        let renewed = c.session_renewals(|id| ttls.contains_key(id));
        first_seen.retain(|id, _| ttls.contains_key(id));
        let now = std::time::Instant::now();
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
