//! The catalog: nodes, service instances and health checks.

use std::collections::BTreeMap;
use std::ops::Bound;

use meshgate_types::catalog::{
    CheckServiceNode, DeregisterRequest, HealthCheck, Node, NodeService, RegisterRequest,
    ServiceNode, status,
};

use crate::{ApplyError, NodeKey, State, Table, fold};

impl State {
    pub(crate) fn register(
        &mut self,
        idx: u64,
        now: u64,
        r: &RegisterRequest,
    ) -> Result<(), ApplyError> {
        let node_key = fold(&r.node);
        // --- validate everything before changing anything ---
        if r.node.is_empty() {
            return Err(ApplyError::Invalid("Must provide node".into()));
        }
        if r.address.is_empty() && !r.skip_node_update {
            return Err(ApplyError::Invalid(
                "Must provide address if SkipNodeUpdate is not set".into(),
            ));
        }
        if r.skip_node_update && !self.nodes.contains_key(&node_key) {
            return Err(ApplyError::Invalid("Missing node registration".into()));
        }
        self.check_node_id(&r.id, &r.node)?;
        let mut service = r.service.clone();
        if let Some(svc) = &mut service {
            if svc.service.is_empty() && svc.id.is_empty() {
                return Err(ApplyError::Invalid(
                    "service name (Service.Service) is required; both Service ID (Service.ID) and Service Name cannot be empty".into(),
                ));
            }
            if svc.service.is_empty() {
                return Err(ApplyError::Invalid(
                    "Must provide service name (Service.Service) when service ID is provided"
                        .into(),
                ));
            }
            if svc.id.is_empty() {
                svc.id = svc.service.clone();
            }
            if svc.address == "0.0.0.0" || svc.address == "::" || svc.address == "[::]" {
                return Err(ApplyError::Invalid("Invalid service address".into()));
            }
        }
        let mut checks: Vec<HealthCheck> = Vec::new();
        if let Some(c) = &r.check {
            checks.push(c.clone());
        }
        checks.extend(r.checks.iter().cloned());
        for c in &mut checks {
            if c.check_id.is_empty() && !c.name.is_empty() {
                c.check_id = c.name.clone();
            }
            if c.node.is_empty() {
                c.node = r.node.clone();
            }
            if fold(&c.node) != node_key {
                return Err(ApplyError::Invalid(format!(
                    "check node \"{}\" does not match node \"{}\"",
                    c.node, r.node
                )));
            }
            if c.check_id.is_empty() {
                return Err(ApplyError::Invalid("Missing check ID".into()));
            }
            if c.status.is_empty() {
                c.status = status::CRITICAL.into();
            }
            if !status::is_valid(&c.status) {
                return Err(ApplyError::Invalid(format!(
                    "Invalid check status: '{}'",
                    c.status
                )));
            }
            if !c.service_id.is_empty() {
                let exists_now = self
                    .services
                    .contains_key(&(node_key.clone(), c.service_id.clone()));
                let in_request = service.as_ref().is_some_and(|s| s.id == c.service_id);
                if !exists_now && !in_request {
                    return Err(ApplyError::Invalid("Missing service registration".into()));
                }
            }
        }

        // --- apply ---
        if !r.skip_node_update {
            let node = Node {
                id: r.id.clone(),
                node: r.node.clone(),
                address: r.address.clone(),
                datacenter: r.datacenter.clone(),
                tagged_addresses: r.tagged_addresses.clone(),
                meta: r.node_meta.clone(),
                create_index: 0,
                modify_index: 0,
            };
            self.ensure_node(idx, node);
        }
        if let Some(svc) = service {
            self.ensure_service(idx, &node_key, svc);
        }
        for c in checks {
            self.ensure_check(idx, now, &node_key, c);
        }
        Ok(())
    }

    /// Refuses a node ID that another node (by name) already has.
    pub(crate) fn check_node_id(&self, id: &str, name: &str) -> Result<(), ApplyError> {
        let node_key = fold(name);
        if !id.is_empty()
            && let Some(other) = self
                .nodes
                .values()
                .find(|n| n.id.eq_ignore_ascii_case(id) && fold(&n.node) != node_key)
        {
            return Err(ApplyError::Invalid(format!(
                "failed inserting node: Error while renaming Node ID: \"{id}\": Node name {name} is reserved by node {} with name {} ({})",
                other.id, other.node, other.address
            )));
        }
        Ok(())
    }

    /// Inserts or replaces a node, keeping its indexes when nothing changed.
    pub(crate) fn ensure_node(&mut self, idx: u64, mut node: Node) {
        let key = fold(&node.node);
        if let Some(existing) = self.nodes.get(&key) {
            node.create_index = existing.create_index;
            node.modify_index = existing.modify_index;
            // An agent re-registering without an ID keeps the known one.
            if node.id.is_empty() {
                node.id = existing.id.clone();
            }
            if *existing == node {
                return;
            }
        } else {
            node.create_index = idx;
        }
        node.modify_index = idx;
        self.nodes.insert(key.clone(), node);
        self.touch(Table::Nodes, idx);
        self.touch_services_of_node(&key, idx);
    }

    fn touch_services_of_node(&mut self, node_key: &str, idx: u64) {
        let names: Vec<String> = self
            .services
            .range(node_range(node_key))
            .map(|(_, s)| s.service.clone())
            .collect();
        for n in names {
            self.touch_service(&n, idx);
        }
    }

    pub(crate) fn ensure_service(&mut self, idx: u64, node_key: &str, mut svc: NodeService) {
        let key = (node_key.to_string(), svc.id.clone());
        if let Some(existing) = self.services.get(&key) {
            svc.create_index = existing.create_index;
            svc.modify_index = existing.modify_index;
            if *existing == svc {
                return;
            }
            if fold(&existing.service) != fold(&svc.service) {
                let old = existing.service.clone();
                self.unindex_service(&old, &key);
                self.touch_service(&old, idx);
            }
        } else {
            svc.create_index = idx;
        }
        svc.modify_index = idx;
        let name = svc.service.clone();
        let tags = svc.tags.clone();
        self.services.insert(key.clone(), svc);
        self.by_service
            .entry(fold(&name))
            .or_default()
            .insert(key.clone());
        self.touch(Table::Services, idx);
        self.touch_service(&name, idx);
        // Keep the denormalised service name/tags of its checks current.
        let ids: Vec<NodeKey> = self
            .checks
            .range(node_range(node_key))
            .filter(|(_, c)| c.service_id == key.1)
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = false;
        for k in ids {
            if let Some(c) = self.checks.get_mut(&k)
                && (c.service_name != name || c.service_tags != tags)
            {
                c.service_name = name.clone();
                c.service_tags = tags.clone();
                c.modify_index = idx;
                changed = true;
            }
        }
        if changed {
            self.touch(Table::Checks, idx);
        }
    }

    fn unindex_service(&mut self, name: &str, key: &NodeKey) {
        let f = fold(name);
        let empty = match self.by_service.get_mut(&f) {
            Some(set) => {
                set.remove(key);
                set.is_empty()
            }
            None => false,
        };
        if empty {
            self.by_service.remove(&f);
            self.service_indexes.remove(&f);
        }
    }

    pub(crate) fn ensure_check(&mut self, idx: u64, now: u64, node_key: &str, mut c: HealthCheck) {
        if !c.service_id.is_empty() {
            if let Some(s) = self
                .services
                .get(&(node_key.to_string(), c.service_id.clone()))
            {
                c.service_name = s.service.clone();
                c.service_tags = s.tags.clone();
            }
        } else {
            c.service_name.clear();
            c.service_tags.clear();
        }
        let key = (node_key.to_string(), c.check_id.clone());
        if let Some(existing) = self.checks.get(&key) {
            c.create_index = existing.create_index;
            c.modify_index = existing.modify_index;
            if *existing == c {
                return;
            }
        } else {
            c.create_index = idx;
        }
        c.modify_index = idx;
        let critical = c.status == status::CRITICAL;
        let service_name = c.service_name.clone();
        let node_level = c.service_id.is_empty();
        let check_id = c.check_id.clone();
        self.checks.insert(key, c);
        self.touch(Table::Checks, idx);
        if node_level {
            self.touch_services_of_node(node_key, idx);
        } else {
            self.touch_service(&service_name, idx);
        }
        if critical {
            self.invalidate_sessions_for_check(idx, now, node_key, &check_id);
        }
    }

    pub(crate) fn update_check(
        &mut self,
        idx: u64,
        now: u64,
        node: &str,
        check_id: &str,
        new_status: &str,
        output: &str,
    ) -> Result<(), ApplyError> {
        if !status::is_valid(new_status) {
            return Err(ApplyError::Invalid(format!(
                "Invalid check status: '{new_status}'"
            )));
        }
        let node_key = fold(node);
        let key = (node_key.clone(), check_id.to_string());
        let Some(existing) = self.checks.get(&key) else {
            return Err(ApplyError::NotFound(format!(
                "Unknown check ID \"{check_id}\""
            )));
        };
        if existing.status == new_status && existing.output == output {
            return Ok(());
        }
        let mut c = existing.clone();
        c.status = new_status.to_string();
        c.output = output.to_string();
        self.ensure_check(idx, now, &node_key, c);
        Ok(())
    }

    pub(crate) fn deregister(
        &mut self,
        idx: u64,
        now: u64,
        r: &DeregisterRequest,
    ) -> Result<(), ApplyError> {
        if r.node.is_empty() {
            return Err(ApplyError::Invalid("Must provide node".into()));
        }
        let node_key = fold(&r.node);
        if !r.service_id.is_empty() {
            self.delete_service(idx, now, &node_key, &r.service_id);
        }
        if !r.check_id.is_empty() {
            self.delete_check(idx, now, &node_key, &r.check_id);
        }
        if r.service_id.is_empty() && r.check_id.is_empty() {
            self.delete_node(idx, now, &node_key);
        }
        Ok(())
    }

    pub(crate) fn delete_service(&mut self, idx: u64, now: u64, node_key: &str, id: &str) {
        let key = (node_key.to_string(), id.to_string());
        let Some(svc) = self.services.remove(&key) else {
            return;
        };
        self.unindex_service(&svc.service, &key);
        self.touch(Table::Services, idx);
        if self.by_service.contains_key(&fold(&svc.service)) {
            self.touch_service(&svc.service, idx);
        }
        let check_ids: Vec<String> = self
            .checks
            .range(node_range(node_key))
            .filter(|(_, c)| c.service_id == id)
            .map(|(k, _)| k.1.clone())
            .collect();
        for c in check_ids {
            self.delete_check(idx, now, node_key, &c);
        }
    }

    pub(crate) fn delete_check(&mut self, idx: u64, now: u64, node_key: &str, check_id: &str) {
        let key = (node_key.to_string(), check_id.to_string());
        let Some(c) = self.checks.remove(&key) else {
            return;
        };
        self.touch(Table::Checks, idx);
        if c.service_id.is_empty() {
            self.touch_services_of_node(node_key, idx);
        } else if self.by_service.contains_key(&fold(&c.service_name)) {
            self.touch_service(&c.service_name, idx);
        }
        self.invalidate_sessions_for_check(idx, now, node_key, check_id);
    }

    pub(crate) fn delete_node(&mut self, idx: u64, now: u64, node_key: &str) {
        if !self.nodes.contains_key(node_key) {
            return;
        }
        let svc_ids: Vec<String> = self
            .services
            .range(node_range(node_key))
            .map(|(k, _)| k.1.clone())
            .collect();
        for id in svc_ids {
            self.delete_service(idx, now, node_key, &id);
        }
        let check_ids: Vec<String> = self
            .checks
            .range(node_range(node_key))
            .map(|(k, _)| k.1.clone())
            .collect();
        for id in check_ids {
            self.delete_check(idx, now, node_key, &id);
        }
        self.nodes.remove(node_key);
        self.touch(Table::Nodes, idx);
        self.delete_node_coordinates(idx, node_key);
        let sessions: Vec<String> = self
            .sessions
            .values()
            .filter(|s| fold(&s.node) == node_key)
            .map(|s| s.id.clone())
            .collect();
        for s in sessions {
            self.session_destroy(idx, now, &s);
        }
    }

    // === queries ===

    /// All nodes, sorted by name.
    pub fn nodes(&self) -> (u64, Vec<&Node>) {
        (self.tables.nodes, self.nodes.values().collect())
    }

    /// One node by name (case-insensitive).
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(&fold(name))
    }

    /// Service name → sorted unique tags, over all instances.
    pub fn services(&self) -> (u64, BTreeMap<String, Vec<String>>) {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for svc in self.services.values() {
            let tags = out.entry(svc.service.clone()).or_default();
            tags.extend(svc.tags.iter().cloned());
        }
        for tags in out.values_mut() {
            tags.sort();
            tags.dedup();
        }
        (self.tables.services, out)
    }

    /// All service instances with their node.
    pub fn all_service_instances(&self) -> impl Iterator<Item = (&Node, &NodeService)> {
        self.services
            .iter()
            .filter_map(|((nk, _), s)| self.nodes.get(nk).map(|n| (n, s)))
    }

    /// The index of a service's last change, or the catalog's when it does not exist.
    pub fn service_index(&self, name: &str) -> u64 {
        match self.service_indexes.get(&fold(name)) {
            Some(i) => *i,
            None => self.tables.nodes.max(self.tables.services),
        }
    }

    /// The instances of a service (case-insensitive name).
    pub fn service_instances(&self, name: &str) -> Vec<(&Node, &NodeService)> {
        let Some(keys) = self.by_service.get(&fold(name)) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| {
                let s = self.services.get(k)?;
                let n = self.nodes.get(&k.0)?;
                Some((n, s))
            })
            .collect()
    }

    /// `/v1/catalog/service/:name`: instances having every tag in `tags`.
    pub fn service_nodes(&self, name: &str, tags: &[String]) -> (u64, Vec<ServiceNode>) {
        let list = self
            .service_instances(name)
            .into_iter()
            .filter(|(_, s)| has_tags(s, tags))
            .map(|(n, s)| ServiceNode::new(n, s))
            .collect();
        (self.service_index(name), list)
    }

    /// A node and its services.
    pub fn node_services(&self, name: &str) -> (u64, Option<(&Node, Vec<&NodeService>)>) {
        let idx = self.tables.nodes.max(self.tables.services);
        let key = fold(name);
        let Some(node) = self.nodes.get(&key) else {
            return (idx, None);
        };
        let svcs = self
            .services
            .range(node_range(&key))
            .map(|(_, s)| s)
            .collect();
        (idx, Some((node, svcs)))
    }

    /// The checks of one node.
    pub fn node_checks(&self, name: &str) -> (u64, Vec<&HealthCheck>) {
        let key = fold(name);
        (
            self.tables.checks,
            self.checks
                .range(node_range(&key))
                .map(|(_, c)| c)
                .collect(),
        )
    }

    /// The checks of a service's instances.
    pub fn service_checks(&self, name: &str) -> (u64, Vec<&HealthCheck>) {
        let f = fold(name);
        let list = self
            .checks
            .values()
            .filter(|c| !c.service_id.is_empty() && fold(&c.service_name) == f)
            .collect();
        (self.tables.checks, list)
    }

    /// Every check in the given state (`any` for all).
    pub fn checks_in_state(&self, state: &str) -> (u64, Vec<&HealthCheck>) {
        let list = self
            .checks
            .values()
            .filter(|c| state == status::ANY || c.status == state)
            .collect();
        (self.tables.checks, list)
    }

    /// One check.
    pub fn check(&self, node: &str, check_id: &str) -> Option<&HealthCheck> {
        self.checks.get(&(fold(node), check_id.to_string()))
    }

    /// `/v1/health/service/:name`: instances with their node's and their own checks.
    pub fn check_service_nodes(&self, name: &str, tags: &[String]) -> (u64, Vec<CheckServiceNode>) {
        let list = self
            .service_instances(name)
            .into_iter()
            .filter(|(_, s)| has_tags(s, tags))
            .map(|(n, s)| self.check_service_node(n, s))
            .collect();
        (self.service_index(name), list)
    }

    /// Builds the health entry of one instance.
    pub fn check_service_node(&self, n: &Node, s: &NodeService) -> CheckServiceNode {
        let nk = fold(&n.node);
        // Node-level checks first, then the instance's own (each by check id).
        let on_node: Vec<&HealthCheck> =
            self.checks.range(node_range(&nk)).map(|(_, c)| c).collect();
        let mut checks: Vec<HealthCheck> = on_node
            .iter()
            .filter(|c| c.service_id.is_empty())
            .map(|c| (*c).clone())
            .collect();
        checks.extend(
            on_node
                .iter()
                .filter(|c| c.service_id == s.id)
                .map(|c| (*c).clone()),
        );
        CheckServiceNode {
            node: n.clone(),
            service: s.clone(),
            checks,
        }
    }
}

/// Whether a service has every one of `tags` (case-insensitive).
fn has_tags(s: &NodeService, tags: &[String]) -> bool {
    tags.iter()
        .all(|t| s.tags.iter().any(|st| st.eq_ignore_ascii_case(t)))
}

/// The key range of one node in the services/checks tables.
pub(crate) fn node_range(node_key: &str) -> (Bound<NodeKey>, Bound<NodeKey>) {
    let mut upper = node_key.to_string();
    upper.push('\0');
    (
        Bound::Included((node_key.to_string(), String::new())),
        Bound::Excluded((upper, String::new())),
    )
}
