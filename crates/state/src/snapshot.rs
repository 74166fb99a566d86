//! A serialisable copy of the whole state, for `/v1/snapshot`, and later for the
//! replicated log's snapshots.

use std::collections::{BTreeMap, HashMap};

use meshgate_types::acl::{AclAuthMethod, AclBindingRule, AclPolicy, AclRole, AclToken};
use meshgate_types::catalog::{HealthCheck, Node, NodeService};
use meshgate_types::kv::{KvEntry, Session};
use serde::{Deserialize, Serialize};

use crate::{State, TableIndexes, fold};

/// The snapshot format version.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything in the state, as plain lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub index: u64,
    pub tables: TableIndexes,
    pub nodes: Vec<Node>,
    pub services: Vec<NodeService>,
    /// Node name of each service, in the same order as `services`.
    pub service_nodes: Vec<String>,
    pub checks: Vec<HealthCheck>,
    pub service_indexes: Vec<(String, u64)>,
    pub kv: Vec<KvEntry>,
    pub tombstones: Vec<(String, u64)>,
    pub sessions: Vec<Session>,
    pub lock_delays: Vec<(String, u64)>,
    pub acl_tokens: Vec<AclToken>,
    pub acl_policies: Vec<AclPolicy>,
    pub acl_roles: Vec<AclRole>,
    pub acl_auth_methods: Vec<AclAuthMethod>,
    pub acl_binding_rules: Vec<AclBindingRule>,
    pub acl_bootstrap_index: Option<u64>,
    #[serde(default)]
    pub events: Vec<crate::UserEvent>,
    #[serde(default)]
    pub coordinates: Vec<crate::CoordinateEntry>,
    #[serde(default)]
    pub queries: Vec<meshgate_types::query::PreparedQuery>,
    /// Config entries as their API JSON (with indexes).
    #[serde(default)]
    pub config_entries: Vec<serde_json::Value>,
    #[serde(default)]
    pub ca: Option<crate::CaState>,
    #[serde(default)]
    pub autopilot: Option<crate::AutopilotConfig>,
}

impl State {
    /// A copy of everything.
    pub fn snapshot(&self) -> Snapshot {
        let mut service_nodes = Vec::with_capacity(self.services.len());
        let mut services = Vec::with_capacity(self.services.len());
        for ((node_key, _), s) in &self.services {
            let name = self
                .nodes
                .get(node_key)
                .map(|n| n.node.clone())
                .unwrap_or_else(|| node_key.clone());
            service_nodes.push(name);
            services.push(s.clone());
        }
        let mut service_indexes: Vec<(String, u64)> = self
            .service_indexes
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        service_indexes.sort();
        let mut lock_delays: Vec<(String, u64)> = self
            .lock_delays
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        lock_delays.sort();
        Snapshot {
            version: SNAPSHOT_VERSION,
            index: self.index,
            tables: self.tables,
            nodes: self.nodes.values().cloned().collect(),
            services,
            service_nodes,
            checks: self.checks.values().cloned().collect(),
            service_indexes,
            kv: self.kv.values().cloned().collect(),
            tombstones: self
                .tombstones
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            sessions: self.sessions.values().cloned().collect(),
            lock_delays,
            acl_tokens: self.acl.tokens.values().cloned().collect(),
            acl_policies: self.acl.policies.values().cloned().collect(),
            acl_roles: self.acl.roles.values().cloned().collect(),
            acl_auth_methods: self.acl.auth_methods.values().cloned().collect(),
            acl_binding_rules: self.acl.binding_rules.values().cloned().collect(),
            acl_bootstrap_index: self.acl.bootstrap_index,
            events: self.events.iter().cloned().collect(),
            coordinates: self.coordinates.values().cloned().collect(),
            queries: self.queries.values().cloned().collect(),
            config_entries: self.config.values().map(|e| e.to_json()).collect(),
            ca: self.ca.clone(),
            autopilot: self.autopilot.clone(),
        }
    }

    /// Rebuilds a state from a snapshot, checking that it is consistent.
    pub fn from_snapshot(s: &Snapshot) -> Result<State, String> {
        if s.version != SNAPSHOT_VERSION {
            return Err(format!(
                "unsupported snapshot version {} (this build reads version {SNAPSHOT_VERSION})",
                s.version
            ));
        }
        if s.services.len() != s.service_nodes.len() {
            return Err("corrupt snapshot: services and their nodes do not match".into());
        }
        let mut st = State {
            index: s.index,
            tables: s.tables,
            ..State::default()
        };
        for n in &s.nodes {
            if st.nodes.insert(fold(&n.node), n.clone()).is_some() {
                return Err(format!("corrupt snapshot: node {:?} appears twice", n.node));
            }
        }
        for (svc, node) in s.services.iter().zip(&s.service_nodes) {
            let nk = fold(node);
            if !st.nodes.contains_key(&nk) {
                return Err(format!(
                    "corrupt snapshot: service {:?} on unknown node {node:?}",
                    svc.id
                ));
            }
            let key = (nk, svc.id.clone());
            st.by_service
                .entry(fold(&svc.service))
                .or_default()
                .insert(key.clone());
            st.services.insert(key, svc.clone());
        }
        for c in &s.checks {
            let nk = fold(&c.node);
            if !st.nodes.contains_key(&nk) {
                return Err(format!(
                    "corrupt snapshot: check {:?} on unknown node {:?}",
                    c.check_id, c.node
                ));
            }
            st.checks.insert((nk, c.check_id.clone()), c.clone());
        }
        st.service_indexes = s.service_indexes.iter().cloned().collect::<HashMap<_, _>>();
        st.kv =
            s.kv.iter()
                .map(|e| (e.key.clone(), e.clone()))
                .collect::<BTreeMap<_, _>>();
        st.tombstones = s.tombstones.iter().cloned().collect();
        for sess in &s.sessions {
            st.sessions.insert(sess.id.clone(), sess.clone());
        }
        st.lock_delays = s.lock_delays.iter().cloned().collect();
        st.acl.bootstrap_index = s.acl_bootstrap_index;
        for p in &s.acl_policies {
            st.acl.policies.insert(p.id.clone(), p.clone());
        }
        for r in &s.acl_roles {
            st.acl.roles.insert(r.id.clone(), r.clone());
        }
        for m in &s.acl_auth_methods {
            st.acl.auth_methods.insert(m.name.clone(), m.clone());
        }
        for r in &s.acl_binding_rules {
            st.acl.binding_rules.insert(r.id.clone(), r.clone());
        }
        for t in &s.acl_tokens {
            st.acl.insert_token_unchecked(t.clone());
        }
        st.events = s.events.iter().cloned().collect();
        for q in &s.queries {
            st.queries.insert(q.id.clone(), q.clone());
        }
        for c in &s.coordinates {
            st.coordinates
                .insert((fold(&c.node), c.segment.clone()), c.clone());
        }
        for v in &s.config_entries {
            let e = meshgate_config_entries::decode(v.clone())
                .map_err(|e| format!("corrupt snapshot: config entry: {e}"))?;
            let (c, m) = (
                v.get("CreateIndex")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0),
                v.get("ModifyIndex")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0),
            );
            let mut e = e;
            e.set_indexes(c, m);
            st.config
                .insert((e.kind().to_string(), e.name().to_string()), e);
        }
        st.ca = s.ca.clone();
        st.autopilot = s.autopilot.clone();
        Ok(st)
    }

    /// Replaces the whole state with a snapshot's contents at log index `idx`:
    /// every table's index moves to `idx` so that every watcher wakes.
    pub(crate) fn restore(&mut self, idx: u64, s: &Snapshot) -> Result<(), crate::ApplyError> {
        let mut st = State::from_snapshot(s).map_err(crate::ApplyError::Invalid)?;
        st.index = idx;
        for t in crate::Table::ALL {
            st.tables.set(t, idx);
        }
        for v in st.service_indexes.values_mut() {
            *v = idx;
        }
        *self = st;
        Ok(())
    }
}
