//! Session TTL timers and KV tombstone reaping.
//!
//! TTLs are not replicated state: the process that orders writes keeps one timer
//! per session and, when it fires, proposes the session's destruction. As in
//! Consul, a session is invalidated only after twice its TTL without renewal, to
//! give clients a grace period.

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
