//! The agent's home for the replicated state: a [`State`] behind a lock that is
//! held only for microseconds, one watch channel per table for blocking queries,
//! and the write path that orders commands.
//!
//! In `-dev` mode this process orders commands itself (the next index is the last
//! plus one). The cluster mode puts a replicated log in front of the same
//! [`Store::apply_ordered`] without touching any endpoint.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use meshgate_state::{Applied, ApplyError, Command, Request, State, Table};
use parking_lot::{RwLock, RwLockReadGuard};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// A failure to write.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The state refused the command; nothing changed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// No leader could order the command.
    #[error("No cluster leader")]
    NoLeader,
    /// The cluster failed to order the command.
    #[error("{0}")]
    Cluster(String),
}

/// How long a write waits for a cluster leader.
pub const LEADER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

/// The state store with its watches.
pub struct Store {
    state: RwLock<State>,
    watches: Vec<watch::Sender<u64>>,
    /// In cluster mode, the replicated log that orders writes.
    cluster: std::sync::OnceLock<meshgate_consensus::Consensus>,
    /// Where each write's time is recorded (`consul.kvs.apply`, ...).
    metrics: Arc<Metrics>,
}

/// The timer Consul records for a write of this kind, on the agent that
/// received it (from the request to the applied answer, through the
/// leader).
fn write_metric(cmd: &Command) -> Option<&'static str> {
    Some(match cmd {
        Command::KvSet { .. } | Command::KvDelete { .. } => "consul.kvs.apply",
        Command::Txn(_) | Command::TxnOps(_) => "consul.txn.apply",
        // (An agent's check results reach the servers as registrations.)
        Command::Register(_) | Command::UpdateCheck { .. } => "consul.catalog.register",
        Command::Deregister(_) => "consul.catalog.deregister",
        Command::SessionCreate(_) | Command::SessionDestroy { .. } => "consul.session.apply",
        Command::AclTokenSet(_) => "consul.acl.token.upsert",
        Command::AclTokenDelete { .. } => "consul.acl.token.delete",
        Command::AclPolicySet(_) => "consul.acl.policy.upsert",
        Command::AclPolicyDelete { .. } => "consul.acl.policy.delete",
        Command::AclRoleSet(_) => "consul.acl.role.upsert",
        Command::AclRoleDelete { .. } => "consul.acl.role.delete",
        Command::AclAuthMethodSet(_) => "consul.acl.authmethod.upsert",
        Command::AclAuthMethodDelete { .. } => "consul.acl.authmethod.delete",
        Command::AclBindingRuleSet(_) => "consul.acl.bindingrule.upsert",
        Command::AclBindingRuleDelete { .. } => "consul.acl.bindingrule.delete",
        Command::QuerySet(_) | Command::QueryDelete { .. } => "consul.prepared-query.apply",
        Command::ConfigSet { .. } | Command::ConfigDelete { .. } => "consul.config_entry.apply",
        _ => return None,
    })
}

fn table_slot(t: Table) -> usize {
    match t {
        Table::Nodes => 0,
        Table::Services => 1,
        Table::Checks => 2,
        Table::Kv => 3,
        Table::Sessions => 4,
        Table::Acl => 5,
        Table::Events => 6,
        Table::Coordinates => 7,
        Table::Queries => 8,
        Table::Config => 9,
        Table::Ca => 10,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::with_metrics(Arc::default())
    }

    /// An empty store that records its writes' times in `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Store {
        Store {
            state: RwLock::new(State::new()),
            watches: Table::ALL.iter().map(|_| watch::channel(0).0).collect(),
            cluster: std::sync::OnceLock::new(),
            metrics,
        }
    }

    /// A consistent read view. Hold it only while computing an answer, never
    /// across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    /// A receiver that wakes when `table` changes.
    pub fn watch(&self, table: Table) -> watch::Receiver<u64> {
        self.watches[table_slot(table)].subscribe()
    }

    /// Wakes every watcher without a change (used at shutdown, so that blocking
    /// queries answer at once).
    pub fn wake_all(&self) {
        for w in &self.watches {
            w.send_modify(|_| {});
        }
    }

    /// Puts the replicated log in front of the state (cluster mode).
    pub fn set_cluster(&self, c: meshgate_consensus::Consensus) {
        let _ = self.cluster.set(c);
    }

    /// The replicated log, in cluster mode.
    pub fn cluster(&self) -> Option<&meshgate_consensus::Consensus> {
        self.cluster.get()
    }

    /// Orders and applies one command: in single-node mode here; in cluster
    /// mode through the leader, returning once a quorum has it on disk and
    /// this server applied it.
    pub async fn write(&self, cmd: Command) -> Result<Applied, WriteError> {
        let req = Request {
            now_ms: now_ms(),
            cmd,
        };
        let timer = write_metric(&req.cmd).map(|name| (name, std::time::Instant::now()));
        let r = match self.cluster.get() {
            None => {
                let started = std::time::Instant::now();
                let r = self.apply_with(|st| st.index + 1, &req);
                // A single server is its own leader: what a cluster's
                // leader records when it commits (see `start_consensus`).
                self.metrics.committed(started.elapsed());
                Ok(r?)
            }
            Some(c) => match c.write(req, LEADER_PATIENCE).await {
                Ok(r) => Ok(r?),
                Err(meshgate_consensus::ConsensusError::NoLeader) => Err(WriteError::NoLeader),
                Err(e) => Err(WriteError::Cluster(e.to_string())),
            },
        };
        if let Some((name, started)) = timer {
            self.metrics
                .sample(name, started.elapsed().as_secs_f64() * 1e3);
        }
        r
    }

    /// Replaces the whole state (a snapshot from the leader) and wakes every
    /// watcher.
    pub fn install(&self, st: State) {
        *self.state.write() = st;
        let t = self.state.read().tables();
        for table in Table::ALL {
            self.watches[table_slot(table)].send_replace(t.get(table));
        }
    }

    /// Applies a command at an index chosen by the orderer and wakes the watchers
    /// of every table it changed.
    pub fn apply_ordered(&self, index: u64, req: &Request) -> Result<Applied, ApplyError> {
        self.apply_with(|_| index, req)
    }

    fn apply_with(
        &self,
        index: impl FnOnce(&State) -> u64,
        req: &Request,
    ) -> Result<Applied, ApplyError> {
        let mut st = self.state.write();
        let index = index(&st);
        let before = st.tables();
        let result = st.apply(index, req);
        let after = st.tables();
        drop(st);
        for t in Table::ALL {
            let v = after.get(t);
            if v != before.get(t) {
                self.watches[table_slot(t)].send_replace(v);
            }
        }
        result
    }
}

impl meshgate_consensus::Host for Store {
    fn apply(&self, index: u64, req: &Request) -> meshgate_consensus::Response {
        self.apply_ordered(index, req)
    }

    fn snapshot(&self) -> Vec<u8> {
        let snap = self.read().snapshot();
        serde_json::to_vec(&snap).unwrap_or_default()
    }

    fn restore(&self, data: &[u8]) -> Result<(), String> {
        let snap = serde_json::from_slice(data).map_err(|e| format!("snapshot: {e}"))?;
        let st = State::from_snapshot(&snap)?;
        self.install(st);
        Ok(())
    }
}
