//! Sessions: creation, invalidation, and what happens to the locks they hold.

use meshgate_types::catalog::status;
use meshgate_types::kv::{Session, behavior};

use crate::{ApplyError, State, Table, fold};

impl State {
    pub(crate) fn session_create(&mut self, idx: u64, s: &Session) -> Result<(), ApplyError> {
        if s.id.is_empty() {
            return Err(ApplyError::Invalid("Missing session ID".into()));
        }
        if self.sessions.contains_key(&s.id) {
            return Err(ApplyError::Invalid("Session ID already exists".into()));
        }
        match s.behavior.as_str() {
            behavior::RELEASE | behavior::DELETE => {}
            other => {
                return Err(ApplyError::Invalid(format!(
                    "Invalid Behavior setting '{other}'"
                )));
            }
        }
        let node_key = fold(&s.node);
        if !self.nodes.contains_key(&node_key) {
            return Err(ApplyError::Invalid("Missing node registration".into()));
        }
        for id in s.all_checks() {
            match self.checks.get(&(node_key.clone(), id.to_string())) {
                None => {
                    return Err(ApplyError::Invalid(format!(
                        "Missing check '{id}' registration"
                    )));
                }
                Some(c) if c.status == status::CRITICAL => {
                    return Err(ApplyError::Invalid(format!(
                        "Check '{id}' is in critical state"
                    )));
                }
                Some(_) => {}
            }
        }
        let mut s = s.clone();
        s.create_index = idx;
        s.modify_index = idx;
        self.sessions.insert(s.id.clone(), s);
        self.touch(Table::Sessions, idx);
        Ok(())
    }

    /// Destroys a session; its locks are released (or its keys deleted) and the
    /// lock-delay starts for each of them.
    pub(crate) fn session_destroy(&mut self, idx: u64, now: u64, id: &str) {
        let Some(s) = self.sessions.remove(id) else {
            return;
        };
        self.touch(Table::Sessions, idx);
        self.delete_session_queries(idx, id);
        let held: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, e)| e.session == id)
            .map(|(k, _)| k.clone())
            .collect();
        if held.is_empty() {
            return;
        }
        // Consul caps the lock-delay it applies at 60 s.
        let delay_ms = (s.lock_delay / 1_000_000).min(60_000);
        for k in held {
            if delay_ms > 0 {
                self.lock_delays
                    .insert(k.clone(), now.saturating_add(delay_ms));
            }
            if s.behavior == behavior::DELETE {
                self.kv.remove(&k);
                self.tombstones.insert(k, idx);
            } else if let Some(e) = self.kv.get_mut(&k) {
                e.session.clear();
                e.modify_index = idx;
            }
        }
        self.lock_delays.retain(|_, until| *until > now);
        self.touch(Table::Kv, idx);
    }

    pub(crate) fn invalidate_sessions_for_check(
        &mut self,
        idx: u64,
        now: u64,
        node_key: &str,
        check_id: &str,
    ) {
        let ids: Vec<String> = self
            .sessions
            .values()
            .filter(|s| fold(&s.node) == node_key && s.all_checks().any(|c| c == check_id))
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            self.session_destroy(idx, now, &id);
        }
    }

    // === queries ===

    /// One session.
    pub fn session(&self, id: &str) -> (u64, Option<&Session>) {
        (self.tables.sessions, self.sessions.get(id))
    }

    /// Every session.
    pub fn sessions(&self) -> (u64, Vec<&Session>) {
        (self.tables.sessions, self.sessions.values().collect())
    }

    /// The sessions of one node.
    pub fn node_sessions(&self, node: &str) -> (u64, Vec<&Session>) {
        let f = fold(node);
        (
            self.tables.sessions,
            self.sessions
                .values()
                .filter(|s| fold(&s.node) == f)
                .collect(),
        )
    }
}
