//! meshgate's state store.
//!
//! All replicated state (catalog, health, KV, sessions, and later ACLs, config
//! entries and the CA) lives in one [`State`] value. It changes only through
//! [`State::apply`], which takes a [`Request`] — a [`Command`] plus the wall-clock
//! time chosen by whoever ordered it — and the log index assigned to it. `apply`
//! is pure: no IO, no clock, no randomness, so every server that applies the same
//! log computes the same state, and tests need no network.
//!
//! Reads are plain methods returning `(index, value)`: the index is what the HTTP
//! API reports as `X-Consul-Index` and what blocking queries compare against.
#![forbid(unsafe_code)]

mod acl;
mod catalog;
mod config;
mod kv;
mod misc;
mod query;
mod session;
mod snapshot;
mod txn;
mod txn_catalog;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meshgate_types::acl::{AclAuthMethod, AclBindingRule, AclPolicy, AclRole, AclToken};
use meshgate_types::catalog::{DeregisterRequest, HealthCheck, Node, NodeService, RegisterRequest};
use meshgate_types::kv::{KvEntry, Session};
use meshgate_types::txn::{TxnKvOp, TxnOperation, TxnResponse};
use serde::{Deserialize, Serialize};

pub use config::{CaState, GatewayService, ServiceName};
pub use kv::KvSetOp;
pub use misc::{Coord, CoordinateEntry, EVENT_BUFFER, UserEvent};
pub use snapshot::{SNAPSHOT_VERSION, Snapshot};
pub use txn::{KV_VERBS, is_read_only};

/// One change to the replicated state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Catalog registration of a node, optionally a service and checks.
    Register(Box<RegisterRequest>),
    /// Catalog deregistration of a node, a service or a check.
    Deregister(DeregisterRequest),
    /// Sets the status and output of an existing check (agent check results).
    UpdateCheck {
        node: String,
        check_id: String,
        status: String,
        output: String,
    },
    /// Writes a key.
    KvSet {
        key: String,
        value: Option<Vec<u8>>,
        flags: u64,
        op: KvSetOp,
    },
    /// Deletes a key, or a prefix when `recurse`; `cas` makes it conditional.
    KvDelete {
        key: String,
        recurse: bool,
        cas: Option<u64>,
    },
    /// An atomic list of KV operations.
    Txn(Vec<TxnKvOp>),
    /// An atomic list of operations on KV and the catalog (nodes, service
    /// instances, checks).
    TxnOps(Vec<TxnOperation>),
    /// Creates a session (id made by the proposer).
    SessionCreate(Session),
    /// Destroys a session, releasing or deleting its locks.
    SessionDestroy { id: String },
    /// Forgets KV tombstones at or below this index.
    KvReapTombstones { up_to: u64 },
    /// Installs built-in ACL policies and tokens that do not exist yet.
    AclInit {
        policies: Vec<AclPolicy>,
        tokens: Vec<AclToken>,
    },
    /// Bootstraps ACLs with this management token.
    AclBootstrap {
        token: Box<AclToken>,
        reset_index: Option<u64>,
    },
    /// Creates or replaces a token.
    AclTokenSet(Box<AclToken>),
    /// Deletes a token.
    AclTokenDelete { accessor: String },
    /// Creates or replaces a policy.
    AclPolicySet(Box<AclPolicy>),
    /// Deletes a policy.
    AclPolicyDelete { id: String },
    /// Creates or replaces a role.
    AclRoleSet(Box<AclRole>),
    /// Deletes a role.
    AclRoleDelete { id: String },
    /// Creates or replaces an auth method.
    AclAuthMethodSet(Box<AclAuthMethod>),
    /// Deletes an auth method, its binding rules and the tokens it issued.
    AclAuthMethodDelete { name: String },
    /// Creates or replaces a binding rule.
    AclBindingRuleSet(Box<AclBindingRule>),
    /// Deletes a binding rule.
    AclBindingRuleDelete { id: String },
    /// Replaces the whole state with a snapshot (validated first).
    Restore(Box<Snapshot>),
    /// Records a user event (ID and filters chosen by the proposer).
    FireEvent(Box<UserEvent>),
    /// Updates network coordinates.
    CoordinateUpdate(Vec<CoordinateEntry>),
    /// Creates or replaces a prepared query (ID chosen by the proposer).
    QuerySet(Box<meshgate_types::query::PreparedQuery>),
    /// Deletes a prepared query.
    QueryDelete { id: String },
    /// Writes a config entry (its API JSON, normalized and validated);
    /// `cas`: only when the stored `ModifyIndex` equals it (0: absent).
    ConfigSet {
        entry: serde_json::Value,
        cas: Option<u64>,
    },
    /// Deletes a config entry; `cas` as for [`Command::ConfigSet`].
    ConfigDelete {
        kind: String,
        name: String,
        cas: Option<u64>,
    },
    /// Replaces the mesh CA (initialization, rotation, configuration) when
    /// its index is still `cas` (0: not initialized yet).
    CaSet { ca: Box<CaState>, cas: u64 },
    /// Sets autopilot's configuration; with `cas`, only if one exists and
    /// its `ModifyIndex` is `cas` (as Consul).
    AutopilotSet {
        config: Box<AutopilotConfig>,
        cas: Option<u64>,
    },
    /// Requests ordered together in one log entry (group commit of
    /// concurrent writes): applied in turn at the same index, each with its
    /// own result ([`Applied::Batch`]); one that fails changes nothing and
    /// does not stop the others. Batches do not nest.
    Batch(Vec<Request>),
}

/// Autopilot's configuration (`/v1/operator/autopilot/configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AutopilotConfig {
    pub cleanup_dead_servers: bool,
    pub last_contact_threshold: meshgate_types::GoDuration,
    pub max_trailing_logs: u64,
    pub min_quorum: u64,
    pub server_stabilization_time: meshgate_types::GoDuration,
    pub redundancy_zone_tag: String,
    pub disable_upgrade_migration: bool,
    pub upgrade_version_tag: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Default for AutopilotConfig {
    /// Consul's defaults.
    fn default() -> Self {
        AutopilotConfig {
            cleanup_dead_servers: true,
            last_contact_threshold: meshgate_types::GoDuration(std::time::Duration::from_millis(
                200,
            )),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: meshgate_types::GoDuration(std::time::Duration::from_secs(
                10,
            )),
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// A command with the time (milliseconds since the Unix epoch) its proposer
/// attached, used for lock delays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub now_ms: u64,
    pub cmd: Command,
}

impl Request {
    /// About how many bytes the request adds to a log entry, for keeping
    /// batches small: its values, plus a fixed share for the rest. A restore
    /// counts as unbounded (it always goes alone).
    pub fn weight(&self) -> usize {
        const BASE: usize = 256;
        BASE + match &self.cmd {
            Command::KvSet { value, .. } => value.as_ref().map_or(0, Vec::len),
            Command::Txn(ops) => ops
                .iter()
                .map(|o| o.value.as_ref().map_or(0, Vec::len) + o.key.len())
                .sum(),
            Command::TxnOps(ops) => ops
                .iter()
                .map(|o| match o {
                    TxnOperation::Kv(o) => o.value.as_ref().map_or(0, Vec::len) + o.key.len(),
                    _ => 256,
                })
                .sum(),
            Command::Restore(_) | Command::Batch(_) => usize::MAX / 2,
            _ => 0,
        }
    }
}

/// What a successful `apply` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Applied {
    /// Done; nothing to report.
    Done,
    /// A conditional write: whether it happened.
    Bool(bool),
    /// A transaction's results or errors.
    Txn(TxnResponse),
    /// The result of each request of a [`Command::Batch`], in order.
    Batch(Vec<Result<Applied, ApplyError>>),
}

/// An `apply` failure. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    /// The request is invalid in the current state (HTTP 500 in Consul's API).
    #[error("{0}")]
    Invalid(String),
    /// The thing to change does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
}

/// The tables whose index a blocking query can wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Nodes,
    Services,
    Checks,
    Kv,
    Sessions,
    Acl,
    Events,
    Coordinates,
    Queries,
    Config,
    Ca,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 11] = [
        Table::Nodes,
        Table::Services,
        Table::Checks,
        Table::Kv,
        Table::Sessions,
        Table::Acl,
        Table::Events,
        Table::Coordinates,
        Table::Queries,
        Table::Config,
        Table::Ca,
    ];
}

/// The index at which each table last changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableIndexes {
    pub nodes: u64,
    pub services: u64,
    pub checks: u64,
    pub kv: u64,
    pub sessions: u64,
    pub acl: u64,
    #[serde(default)]
    pub events: u64,
    #[serde(default)]
    pub coordinates: u64,
    #[serde(default)]
    pub queries: u64,
    #[serde(default)]
    pub config: u64,
    #[serde(default)]
    pub ca: u64,
}

impl TableIndexes {
    /// The index of one table.
    pub fn get(&self, t: Table) -> u64 {
        match t {
            Table::Nodes => self.nodes,
            Table::Services => self.services,
            Table::Checks => self.checks,
            Table::Kv => self.kv,
            Table::Sessions => self.sessions,
            Table::Acl => self.acl,
            Table::Events => self.events,
            Table::Coordinates => self.coordinates,
            Table::Queries => self.queries,
            Table::Config => self.config,
            Table::Ca => self.ca,
        }
    }

    fn set(&mut self, t: Table, idx: u64) {
        match t {
            Table::Nodes => self.nodes = idx,
            Table::Services => self.services = idx,
            Table::Checks => self.checks = idx,
            Table::Kv => self.kv = idx,
            Table::Sessions => self.sessions = idx,
            Table::Acl => self.acl = idx,
            Table::Events => self.events = idx,
            Table::Coordinates => self.coordinates = idx,
            Table::Queries => self.queries = idx,
            Table::Config => self.config = idx,
            Table::Ca => self.ca = idx,
        }
    }
}

/// A key of the services and checks tables: (lower-cased node name, id).
pub type NodeKey = (String, String);

/// The whole replicated state.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The index of the last applied request.
    pub index: u64,
    tables: TableIndexes,
    /// Node name (lower case) → node.
    nodes: BTreeMap<String, Node>,
    services: BTreeMap<NodeKey, NodeService>,
    checks: BTreeMap<NodeKey, HealthCheck>,
    /// Lower-cased service name → instances.
    by_service: HashMap<String, BTreeSet<NodeKey>>,
    /// Lower-cased service name → index of its last change (instances or checks).
    service_indexes: HashMap<String, u64>,
    kv: BTreeMap<String, KvEntry>,
    /// Deleted key → index of its deletion, until reaped.
    tombstones: BTreeMap<String, u64>,
    sessions: BTreeMap<String, Session>,
    /// Key → time (ms) until which it may not be locked again (lock-delay).
    lock_delays: HashMap<String, u64>,
    acl: acl::AclTables,
    events: std::collections::VecDeque<misc::UserEvent>,
    coordinates: BTreeMap<NodeKey, misc::CoordinateEntry>,
    queries: BTreeMap<String, meshgate_types::query::PreparedQuery>,
    config: config::ConfigTable,
    ca: Option<CaState>,
    autopilot: Option<AutopilotConfig>,
}

/// Node names and service names are case-insensitive.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

impl State {
    /// An empty store.
    pub fn new() -> State {
        State::default()
    }

    /// The per-table indexes.
    pub fn tables(&self) -> TableIndexes {
        self.tables
    }

    /// Applies one request at log index `index` (which must be greater than the
    /// current index). On error nothing changes, but the index still advances so
    /// that every replica agrees on it.
    pub fn apply(&mut self, index: u64, req: &Request) -> Result<Applied, ApplyError> {
        debug_assert!(index > self.index, "apply index must grow");
        self.index = index;
        if let Command::Batch(reqs) = &req.cmd {
            return Ok(Applied::Batch(
                reqs.iter().map(|r| self.apply_one(index, r)).collect(),
            ));
        }
        self.apply_one(index, req)
    }

    /// Applies one request (not a batch) at `index`.
    fn apply_one(&mut self, index: u64, req: &Request) -> Result<Applied, ApplyError> {
        let now = req.now_ms;
        match &req.cmd {
            Command::Register(r) => self.register(index, now, r).map(|_| Applied::Done),
            Command::Deregister(r) => self.deregister(index, now, r).map(|_| Applied::Done),
            Command::UpdateCheck {
                node,
                check_id,
                status,
                output,
            } => self
                .update_check(index, now, node, check_id, status, output)
                .map(|_| Applied::Done),
            Command::KvSet {
                key,
                value,
                flags,
                op,
            } => self
                .kv_set(index, now, key, value.clone(), *flags, op)
                .map(Applied::Bool),
            Command::KvDelete { key, recurse, cas } => {
                Ok(Applied::Bool(self.kv_delete(index, key, *recurse, *cas)))
            }
            Command::Txn(ops) => Ok(Applied::Txn(self.txn(index, now, ops))),
            Command::TxnOps(ops) => Ok(Applied::Txn(self.txn_ops(index, now, ops))),
            Command::SessionCreate(s) => self.session_create(index, s).map(|_| Applied::Done),
            Command::SessionDestroy { id } => {
                self.session_destroy(index, now, id);
                Ok(Applied::Done)
            }
            Command::KvReapTombstones { up_to } => {
                self.tombstones.retain(|_, idx| *idx > *up_to);
                Ok(Applied::Done)
            }
            Command::AclInit { policies, tokens } => self
                .acl_init(index, policies, tokens)
                .map(|_| Applied::Done),
            Command::AclBootstrap { token, reset_index } => self
                .acl_bootstrap(index, token, *reset_index)
                .map(|_| Applied::Done),
            Command::AclTokenSet(t) => self.acl_token_set(index, t).map(|_| Applied::Done),
            Command::AclTokenDelete { accessor } => {
                self.acl_token_delete(index, accessor);
                Ok(Applied::Done)
            }
            Command::AclPolicySet(p) => self.acl_policy_set(index, p).map(|_| Applied::Done),
            Command::AclPolicyDelete { id } => {
                self.acl_policy_delete(index, id);
                Ok(Applied::Done)
            }
            Command::AclRoleSet(r) => self.acl_role_set(index, r).map(|_| Applied::Done),
            Command::AclRoleDelete { id } => {
                self.acl_role_delete(index, id);
                Ok(Applied::Done)
            }
            Command::AclAuthMethodSet(m) => {
                self.acl_auth_method_set(index, m).map(|_| Applied::Done)
            }
            Command::AclAuthMethodDelete { name } => {
                self.acl_auth_method_delete(index, name);
                Ok(Applied::Done)
            }
            Command::AclBindingRuleSet(r) => {
                self.acl_binding_rule_set(index, r).map(|_| Applied::Done)
            }
            Command::AclBindingRuleDelete { id } => {
                self.acl_binding_rule_delete(index, id);
                Ok(Applied::Done)
            }
            Command::Restore(s) => self.restore(index, s).map(|_| Applied::Done),
            Command::FireEvent(e) => {
                self.fire_event(index, (**e).clone());
                Ok(Applied::Done)
            }
            Command::CoordinateUpdate(u) => {
                self.update_coordinates(index, u);
                Ok(Applied::Done)
            }
            Command::QuerySet(q) => self.query_set(index, q).map(|_| Applied::Done),
            Command::QueryDelete { id } => {
                self.query_delete(index, id);
                Ok(Applied::Done)
            }
            Command::ConfigSet { entry, cas } => {
                self.config_set(index, entry, *cas).map(Applied::Bool)
            }
            Command::ConfigDelete { kind, name, cas } => {
                Ok(Applied::Bool(self.config_delete(index, kind, name, *cas)))
            }
            Command::CaSet { ca, cas } => self.ca_set(index, ca, *cas).map(Applied::Bool),
            Command::AutopilotSet { config, cas } => {
                Ok(Applied::Bool(self.autopilot_set(index, config, *cas)))
            }
            Command::Batch(_) => Err(ApplyError::Invalid("batches do not nest".into())),
        }
    }

    fn autopilot_set(&mut self, idx: u64, config: &AutopilotConfig, cas: Option<u64>) -> bool {
        let current = self.autopilot.as_ref();
        // Before the first write the defaults are read with index 0: a
        // check-and-set against what was read matches them.
        if let Some(cas) = cas
            && current.map_or(0, |c| c.modify_index) != cas
        {
            return false;
        }
        let mut c = config.clone();
        c.create_index = current.map(|c| c.create_index).unwrap_or(idx);
        c.modify_index = idx;
        self.autopilot = Some(c);
        true
    }

    /// Autopilot's configuration (Consul's defaults until one is set).
    pub fn autopilot(&self) -> AutopilotConfig {
        self.autopilot.clone().unwrap_or_default()
    }

    fn touch(&mut self, t: Table, idx: u64) {
        self.tables.set(t, idx);
    }

    fn touch_service(&mut self, name: &str, idx: u64) {
        self.service_indexes.insert(fold(name), idx);
    }
}

#[cfg(test)]
mod tests;
