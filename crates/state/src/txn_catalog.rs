//! Transactions with catalog operations (nodes, service instances, health
//! checks) besides KV ones, as consul-esm writes its probes' results: every
//! operation applies, or none does.

use meshgate_types::catalog::{HealthCheck, Node, NodeService, status};
use meshgate_types::txn::{
    TxnCheckOp, TxnError, TxnNodeOp, TxnOperation, TxnResponse, TxnResult, TxnServiceOp,
};

use crate::txn::Undo;
use crate::{ApplyError, State, fold};

/// Whether a `set` may go ahead: always, and for a `cas` on an entry whose
/// `ModifyIndex` is `current` (`None`: absent) only at index 0 when it is
/// absent or at its very index (`what`: how the error names the entry).
fn set_matches(
    cas: bool,
    index: u64,
    current: Option<u64>,
    what: impl FnOnce() -> String,
) -> Result<(), String> {
    let ok = !cas
        || match current {
            None => index == 0,
            Some(c) => index != 0 && index == c,
        };
    if ok {
        Ok(())
    } else {
        Err(format!("failed to set {}, index is stale", what()))
    }
}

/// A `delete-cas` may go ahead only on the version read (`what`: how the
/// error names the entry).
fn delete_matches(
    current: Option<u64>,
    index: u64,
    what: impl FnOnce() -> String,
) -> Result<(), String> {
    if current == Some(index) {
        Ok(())
    } else {
        Err(format!("failed to delete {}, index is stale", what()))
    }
}

fn invalid(e: ApplyError) -> String {
    e.to_string()
}

/// Whether `s` has a UUID's shape (what a node ID must be).
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl State {
    /// Runs a transaction that may hold catalog operations. A failed one
    /// leaves the store as it found it: KV keys are journalled as they are
    /// touched (as in a KV transaction), and before the first catalog write
    /// the catalog, the sessions and what their invalidation touches are kept
    /// (see `CatalogCopy`), so that a failure puts everything back.
    pub fn txn_ops(&mut self, idx: u64, now: u64, ops: &[TxnOperation]) -> TxnResponse {
        let mut undo = Undo {
            kv_table: self.tables.kv,
            tables: Some(self.tables),
            ..Undo::default()
        };
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            // (The last operation needs nothing kept when all before it
            // succeeded: if it fails it has changed nothing, and if it
            // succeeds nothing can fail after it. After a failure every
            // operation still runs, to report its own error, and is undone.)
            let last_with_no_error = i + 1 == ops.len() && errors.is_empty();
            if !matches!(op, TxnOperation::Kv(_)) && !op.is_read() && !last_with_no_error {
                self.save_for_catalog_write(&mut undo);
            }
            let r = match op {
                TxnOperation::Kv(kv) => self.txn_op(idx, now, kv, &mut undo),
                TxnOperation::Node(o) => self.txn_node(idx, now, o),
                TxnOperation::Service(o) => self.txn_service(idx, now, o),
                TxnOperation::Check(o) => self.txn_check(idx, now, o),
            };
            match r {
                Ok(mut r) => results.append(&mut r),
                Err(what) => errors.push(TxnError { op_index: i, what }),
            }
        }
        if errors.is_empty() {
            return TxnResponse {
                results: Some(results),
                errors: None,
            };
        }
        self.rollback(undo);
        TxnResponse {
            results: None,
            errors: Some(errors),
        }
    }

    /// Runs a transaction of reads only, changing nothing.
    pub fn txn_ops_read(&self, ops: &[TxnOperation]) -> TxnResponse {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let r = match op {
                TxnOperation::Kv(kv) => self.txn_read_op(kv),
                TxnOperation::Node(o) if o.verb == "get" => self.txn_node_get(&o.node),
                TxnOperation::Service(o) if o.verb == "get" => {
                    self.txn_service_get(&o.node, &o.service.id)
                }
                TxnOperation::Check(o) if o.verb == "get" => {
                    self.txn_check_get(&o.check.node, &o.check.check_id)
                }
                _ => Err("cannot write in a read-only transaction".into()),
            };
            match r {
                Ok(mut r) => results.append(&mut r),
                Err(what) => errors.push(TxnError { op_index: i, what }),
            }
        }
        if errors.is_empty() {
            TxnResponse {
                results: Some(results),
                errors: None,
            }
        } else {
            TxnResponse {
                results: None,
                errors: Some(errors),
            }
        }
    }

    /// A node by ID when one is given, else by name.
    fn txn_find_node(&self, node: &Node) -> Option<&Node> {
        if node.id.is_empty() {
            self.nodes.get(&fold(&node.node))
        } else {
            self.nodes
                .values()
                .find(|n| n.id.eq_ignore_ascii_case(&node.id))
        }
    }

    fn txn_node_get(&self, node: &Node) -> Result<Vec<TxnResult>, String> {
        let n = self
            .txn_find_node(node)
            .ok_or_else(|| format!("node {:?} doesn't exist", node.node))?;
        Ok(vec![node_result(n)])
    }

    fn txn_node(&mut self, idx: u64, now: u64, op: &TxnNodeOp) -> Result<Vec<TxnResult>, String> {
        let node = &op.node;
        let key = fold(&node.node);
        let current = self.nodes.get(&key).map(|n| n.modify_index);
        match op.verb.as_str() {
            "get" => self.txn_node_get(node),
            "set" | "cas" => {
                set_matches(op.verb == "cas", node.modify_index, current, || {
                    format!("node {:?}", node.node)
                })?;
                if node.node.is_empty() {
                    return Err("Must provide node".into());
                }
                if !node.id.is_empty() && !is_uuid(&node.id) {
                    return Err("Bad node ID: uuid string is wrong length".into());
                }
                self.check_node_id(&node.id, &node.node).map_err(invalid)?;
                self.ensure_node(idx, node.clone());
                self.txn_node_get(node)
            }
            "delete" | "delete-cas" if node.node.is_empty() => Err("Must provide node".into()),
            "delete" => {
                self.delete_node(idx, now, &key);
                Ok(Vec::new())
            }
            "delete-cas" => {
                delete_matches(current, node.modify_index, || {
                    format!("node {:?}", node.node)
                })?;
                self.delete_node(idx, now, &key);
                Ok(Vec::new())
            }
            other => Err(format!("unknown Node verb {other:?}")),
        }
    }

    fn txn_service_get(&self, node: &str, id: &str) -> Result<Vec<TxnResult>, String> {
        let s = self
            .services
            .get(&(fold(node), id.to_string()))
            .ok_or_else(|| format!("service {id:?} on node {node:?} doesn't exist"))?;
        Ok(vec![service_result(s)])
    }

    fn txn_service(
        &mut self,
        idx: u64,
        now: u64,
        op: &TxnServiceOp,
    ) -> Result<Vec<TxnResult>, String> {
        let node_key = fold(&op.node);
        let mut svc = op.service.clone();
        if svc.id.is_empty() {
            svc.id = svc.service.clone();
        }
        let key = (node_key.clone(), svc.id.clone());
        let current = self.services.get(&key).map(|s| s.modify_index);
        match op.verb.as_str() {
            "get" => self.txn_service_get(&op.node, &svc.id),
            "set" | "cas" => {
                set_matches(op.verb == "cas", svc.modify_index, current, || {
                    format!("service {:?} on node {:?}", svc.id, op.node)
                })?;
                if !self.nodes.contains_key(&node_key) {
                    return Err("Missing node registration".into());
                }
                if svc.service.is_empty() {
                    return Err(
                        "Must provide service name (Service.Service) when service ID is provided"
                            .into(),
                    );
                }
                let id = svc.id.clone();
                self.ensure_service(idx, &node_key, svc);
                self.txn_service_get(&op.node, &id)
            }
            "delete" => {
                self.delete_service(idx, now, &node_key, &svc.id);
                Ok(Vec::new())
            }
            "delete-cas" => {
                delete_matches(current, svc.modify_index, || {
                    format!("service {:?} on node {:?}", svc.id, op.node)
                })?;
                self.delete_service(idx, now, &node_key, &svc.id);
                Ok(Vec::new())
            }
            other => Err(format!("unknown Service verb {other:?}")),
        }
    }

    fn txn_check_get(&self, node: &str, check_id: &str) -> Result<Vec<TxnResult>, String> {
        let c = self
            .check(node, check_id)
            .ok_or_else(|| format!("check {check_id:?} on node {node:?} doesn't exist"))?;
        Ok(vec![check_result(c)])
    }

    fn txn_check(&mut self, idx: u64, now: u64, op: &TxnCheckOp) -> Result<Vec<TxnResult>, String> {
        let mut c = op.check.clone();
        let node_key = fold(&c.node);
        let current = self
            .checks
            .get(&(node_key.clone(), c.check_id.clone()))
            .map(|c| c.modify_index);
        match op.verb.as_str() {
            "get" => self.txn_check_get(&c.node, &c.check_id),
            "set" | "cas" => {
                set_matches(op.verb == "cas", c.modify_index, current, || {
                    format!("check {:?} on node {:?}", c.check_id, c.node)
                })?;
                if !self.nodes.contains_key(&node_key) {
                    return Err("Missing node registration".into());
                }
                if c.check_id.is_empty() {
                    return Err("Missing check ID".into());
                }
                if c.status.is_empty() {
                    c.status = status::CRITICAL.into();
                }
                if !status::is_valid(&c.status) {
                    return Err(format!("Invalid check status: '{}'", c.status));
                }
                if !c.service_id.is_empty()
                    && !self
                        .services
                        .contains_key(&(node_key.clone(), c.service_id.clone()))
                {
                    return Err("Missing service registration".into());
                }
                let (node, id) = (c.node.clone(), c.check_id.clone());
                self.ensure_check(idx, now, &node_key, c);
                self.txn_check_get(&node, &id)
            }
            "delete" => {
                self.delete_check(idx, now, &node_key, &c.check_id);
                Ok(Vec::new())
            }
            "delete-cas" => {
                delete_matches(current, c.modify_index, || {
                    format!("check {:?} on node {:?}", c.check_id, c.node)
                })?;
                self.delete_check(idx, now, &node_key, &c.check_id);
                Ok(Vec::new())
            }
            other => Err(format!("unknown Check verb {other:?}")),
        }
    }
}

fn node_result(n: &Node) -> TxnResult {
    TxnResult {
        node: Some(n.clone()),
        ..TxnResult::default()
    }
}

fn service_result(s: &NodeService) -> TxnResult {
    TxnResult {
        service: Some(s.clone()),
        ..TxnResult::default()
    }
}

fn check_result(c: &HealthCheck) -> TxnResult {
    TxnResult {
        check: Some(c.clone()),
        ..TxnResult::default()
    }
}
