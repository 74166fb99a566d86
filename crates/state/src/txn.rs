//! Atomic KV transactions: every operation applies, or none does.

use std::collections::HashMap;

use meshgate_types::kv::KvEntry;
use meshgate_types::txn::{TxnError, TxnKvOp, TxnResponse, TxnResult};

use crate::kv::prefix_range;
use crate::{KvSetOp, State};

/// The KV verbs a transaction accepts.
pub const KV_VERBS: &[&str] = &[
    "set",
    "cas",
    "lock",
    "unlock",
    "get",
    "get-or-empty",
    "get-tree",
    "check-index",
    "check-session",
    "check-not-exists",
    "delete",
    "delete-tree",
    "delete-cas",
];

/// Whether the transaction only reads (and so needs no log entry).
pub fn is_read_only(ops: &[TxnKvOp]) -> bool {
    ops.iter().all(TxnKvOp::is_read)
}

/// What to put back if the transaction fails.
#[derive(Default)]
pub(crate) struct Undo {
    pub(crate) kv: HashMap<String, (Option<KvEntry>, Option<u64>)>,
    pub(crate) kv_table: u64,
    /// Every table index as it was (transactions with catalog operations).
    pub(crate) tables: Option<crate::TableIndexes>,
    /// What catalog operations may change besides KV keys, as it was
    /// before the first of them.
    pub(crate) catalog: Option<Box<CatalogCopy>>,
}

/// The parts of the state a catalog write can change, directly or by
/// invalidating sessions (which releases or deletes their keys — those are
/// journalled one by one — sets lock delays and drops prepared queries bound
/// to them). Small next to the KV store, which is never copied whole.
pub(crate) struct CatalogCopy {
    nodes: std::collections::BTreeMap<String, meshgate_types::catalog::Node>,
    services: std::collections::BTreeMap<crate::NodeKey, meshgate_types::catalog::NodeService>,
    checks: std::collections::BTreeMap<crate::NodeKey, meshgate_types::catalog::HealthCheck>,
    by_service: HashMap<String, std::collections::BTreeSet<crate::NodeKey>>,
    service_indexes: HashMap<String, u64>,
    sessions: std::collections::BTreeMap<String, meshgate_types::kv::Session>,
    lock_delays: HashMap<String, u64>,
    coordinates: std::collections::BTreeMap<crate::NodeKey, crate::misc::CoordinateEntry>,
    queries: std::collections::BTreeMap<String, meshgate_types::query::PreparedQuery>,
}

impl State {
    /// Before a catalog write in a transaction: keeps what it may change
    /// (once per transaction), the keys held by sessions included.
    pub(crate) fn save_for_catalog_write(&self, undo: &mut Undo) {
        if undo.catalog.is_some() {
            return;
        }
        undo.catalog = Some(Box::new(CatalogCopy {
            nodes: self.nodes.clone(),
            services: self.services.clone(),
            checks: self.checks.clone(),
            by_service: self.by_service.clone(),
            service_indexes: self.service_indexes.clone(),
            sessions: self.sessions.clone(),
            lock_delays: self.lock_delays.clone(),
            coordinates: self.coordinates.clone(),
            queries: self.queries.clone(),
        }));
        // Only keys held by a session can change when one is invalidated.
        let held: Vec<String> = if self.sessions.is_empty() {
            Vec::new()
        } else {
            self.kv
                .iter()
                .filter(|(_, e)| !e.session.is_empty())
                .map(|(k, _)| k.clone())
                .collect()
        };
        for k in held {
            self.remember(undo, &k);
        }
    }

    fn remember(&self, undo: &mut Undo, key: &str) {
        undo.kv
            .entry(key.to_string())
            .or_insert_with(|| (self.kv.get(key).cloned(), self.tombstones.get(key).copied()));
    }

    pub(crate) fn rollback(&mut self, undo: Undo) {
        for (k, (entry, tomb)) in undo.kv {
            match entry {
                Some(e) => {
                    self.kv.insert(k.clone(), e);
                }
                None => {
                    self.kv.remove(&k);
                }
            }
            match tomb {
                Some(t) => {
                    self.tombstones.insert(k, t);
                }
                None => {
                    self.tombstones.remove(&k);
                }
            }
        }
        self.tables.kv = undo.kv_table;
        if let Some(c) = undo.catalog {
            let c = *c;
            self.nodes = c.nodes;
            self.services = c.services;
            self.checks = c.checks;
            self.by_service = c.by_service;
            self.service_indexes = c.service_indexes;
            self.sessions = c.sessions;
            self.lock_delays = c.lock_delays;
            self.coordinates = c.coordinates;
            self.queries = c.queries;
        }
        if let Some(t) = undo.tables {
            self.tables = t;
        }
    }

    /// Runs a transaction (also used read-only, on a clone, by the API).
    pub fn txn(&mut self, idx: u64, now: u64, ops: &[TxnKvOp]) -> TxnResponse {
        let mut undo = Undo {
            kv_table: self.tables.kv,
            ..Undo::default()
        };
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            // Every op runs even after a failure, so that every error is reported;
            // then the whole transaction is rolled back.
            match self.txn_op(idx, now, op, &mut undo) {
                Ok(mut r) => results.append(&mut r),
                Err(what) => errors.push(TxnError { op_index: i, what }),
            }
        }
        if !errors.is_empty() {
            self.rollback(undo);
            return TxnResponse {
                results: None,
                errors: Some(errors),
            };
        }
        TxnResponse {
            results: Some(results),
            errors: None,
        }
    }

    /// Runs a read-only transaction without changing anything.
    pub fn txn_read(&self, ops: &[TxnKvOp]) -> TxnResponse {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match self.txn_read_op(op) {
                Ok(mut r) => results.append(&mut r),
                Err(what) => errors.push(TxnError { op_index: i, what }),
            }
        }
        if !errors.is_empty() {
            return TxnResponse {
                results: None,
                errors: Some(errors),
            };
        }
        TxnResponse {
            results: Some(results),
            errors: None,
        }
    }

    pub(crate) fn txn_read_op(&self, op: &TxnKvOp) -> Result<Vec<TxnResult>, String> {
        let key = op.key.as_str();
        if key.is_empty() && op.verb != "get-tree" {
            return Err("Must provide key".into());
        }
        let existing = || {
            self.kv
                .get(key)
                .ok_or_else(|| format!("key {key:?} doesn't exist"))
        };
        let blank = |e: &KvEntry| {
            let mut e = e.clone();
            e.value = None;
            vec![TxnResult::kv(e)]
        };
        match op.verb.as_str() {
            "get" => Ok(vec![TxnResult::kv(existing()?.clone())]),
            "get-or-empty" => Ok(vec![TxnResult::kv(
                self.kv.get(key).cloned().unwrap_or_else(|| KvEntry {
                    key: key.to_string(),
                    flags: op.flags,
                    session: op.session.clone(),
                    ..KvEntry::default()
                }),
            )]),
            "get-tree" => Ok(self
                .kv
                .range::<String, _>(prefix_range(key))
                .map(|(_, e)| TxnResult::kv(e.clone()))
                .collect()),
            "check-index" => {
                let e = self
                    .kv
                    .get(key)
                    .ok_or_else(|| format!("failed to check index, key {key:?} doesn't exist"))?;
                if e.modify_index != op.index {
                    return Err(format!(
                        "failed index check for key {key:?}, current modify index {} != {}",
                        e.modify_index, op.index
                    ));
                }
                Ok(blank(e))
            }
            "check-session" => {
                let e = self
                    .kv
                    .get(key)
                    .ok_or_else(|| format!("failed to check session, key {key:?} doesn't exist"))?;
                if e.session != op.session {
                    return Err(format!(
                        "failed session check for key {key:?}, current session {:?} != {:?}",
                        e.session, op.session
                    ));
                }
                Ok(blank(e))
            }
            "check-not-exists" => {
                if self.kv.contains_key(key) {
                    return Err(format!("key {key:?} exists"));
                }
                Ok(Vec::new())
            }
            other => Err(format!("unknown KV verb {other:?}")),
        }
    }

    pub(crate) fn txn_op(
        &mut self,
        idx: u64,
        now: u64,
        op: &TxnKvOp,
        undo: &mut Undo,
    ) -> Result<Vec<TxnResult>, String> {
        let key = op.key.as_str();
        if key.is_empty() && op.verb != "delete-tree" {
            return Err("Must provide key".into());
        }
        if op.verb == "lock" && self.lock_delayed(key, now) {
            return Err(format!("failed to lock key {key:?} due to lock delay"));
        }
        let set_op = match op.verb.as_str() {
            "set" => Some(KvSetOp::Set),
            "cas" => Some(KvSetOp::Cas(op.index)),
            "lock" => Some(KvSetOp::Lock(op.session.clone())),
            "unlock" => Some(KvSetOp::Unlock(op.session.clone())),
            _ => None,
        };
        if let Some(set_op) = set_op {
            self.remember(undo, key);
            let ok = self
                .kv_set(idx, now, key, op.value.clone(), op.flags, &set_op)
                .map_err(|e| e.to_string())?;
            if !ok {
                return Err(match set_op {
                    KvSetOp::Cas(_) => format!("failed to set key {key:?}, index is stale"),
                    KvSetOp::Lock(_) => {
                        format!("failed to lock key {key:?}, lock is already held")
                    }
                    _ => format!(
                        "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                    ),
                });
            }
            let mut e = self.kv.get(key).cloned().unwrap_or_default();
            e.value = None;
            return Ok(vec![TxnResult::kv(e)]);
        }
        match op.verb.as_str() {
            "delete" => {
                self.remember(undo, key);
                self.kv_delete(idx, key, false, None);
                Ok(Vec::new())
            }
            "delete-cas" => {
                self.remember(undo, key);
                if !self.kv_delete(idx, key, false, Some(op.index)) {
                    return Err(format!("failed to delete key {key:?}, index is stale"));
                }
                Ok(Vec::new())
            }
            "delete-tree" => {
                let keys: Vec<String> = self
                    .kv
                    .range::<String, _>(prefix_range(key))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &keys {
                    self.remember(undo, k);
                }
                self.remember(undo, key);
                self.kv_delete(idx, key, true, None);
                Ok(Vec::new())
            }
            _ => self.txn_read_op(op),
        }
    }
}
