//! meshgate's replicated log: servers order every [`Request`] with openraft
//! (log and vote in redb, fsync before acknowledging), apply it at its log
//! index to the host's state, and talk to each other over HTTP on the server
//! port (`/v1/internal/raft/*`).
//!
//! The host (the agent's store) is behind the [`Host`] trait, so this crate
//! knows nothing of endpoints.
#![forbid(unsafe_code)]
// openraft's traits return its own (large) StorageError and RaftError.
#![allow(clippy::result_large_err)]

pub mod keyring;
pub mod log_store;
pub mod network;
pub mod proposer;
pub mod state_machine;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshgate_state::{Applied, ApplyError, Request};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

openraft::declare_raft_types!(
    /// The raft types of meshgate.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// What applying one entry gave.
pub type Response = Result<Applied, ApplyError>;

/// The state the log is applied to.
pub trait Host: Send + Sync + 'static {
    /// Applies a committed request at its log index.
    fn apply(&self, index: u64, req: &Request) -> Response;
    /// The whole state, serialized.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a serialized one.
    fn restore(&self, data: &[u8]) -> Result<(), String>;
}

/// A failure to order a write.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error("No cluster leader")]
    NoLeader,
    #[error(
        "No cluster leader: timed out waiting for a quorum of servers to commit the write (it may still be applied if they come back)"
    )]
    Timeout,
    /// The request reached the leader (or a server on the way) but no
    /// answer came back: it may or may not have been applied, so it is not
    /// sent again (a second copy could land after later writes).
    #[error("rpc error making call: {0} (the write may or may not have been applied)")]
    Uncertain(String),
    #[error("{0}")]
    Other(String),
}

impl ConsensusError {
    /// Whether the write certainly was not applied (so sending it again,
    /// to this or another leader, cannot apply it twice).
    pub fn not_applied(&self) -> bool {
        matches!(self, ConsensusError::NoLeader)
    }
}

/// What this server's raft does, for its metrics (see [`Consensus::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftEvent {
    /// As leader, it committed and applied a request it ordered (its own or
    /// one forwarded to it), this long after it proposed it.
    Committed(Duration),
    /// It became the leader.
    BecameLeader,
    /// It started an election.
    BecameCandidate,
    /// On the leader, every 500 ms: how long since a quorum last
    /// acknowledged it.
    LeaderContact(Duration),
}

/// Receives [`RaftEvent`]s.
pub type Observer = Arc<dyn Fn(RaftEvent) + Send + Sync>;

/// A failed forwarded write, as the server that received it answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum WriteFailure {
    /// Certainly not applied: the sender may try again.
    NotApplied(String),
    /// May have been applied.
    Uncertain(String),
    /// Refused before it was looked at (a wrong cluster key, a request the
    /// server cannot read): not applied, and sending it again would not
    /// change the answer.
    Refused(String),
}

impl From<ConsensusError> for WriteFailure {
    fn from(e: ConsensusError) -> Self {
        if e.not_applied() {
            WriteFailure::NotApplied(e.to_string())
        } else {
            WriteFailure::Uncertain(e.to_string())
        }
    }
}

/// What a server says about itself (`GET /v1/internal/raft/info`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    pub id: u64,
    /// `host:port` of its raft endpoint.
    pub addr: String,
    /// Whether it is a voter of an initialized cluster.
    pub member: bool,
    /// Whether it follows the log without a vote (a client agent).
    #[serde(default)]
    pub learner: bool,
    /// The leader it knows of: `(id, addr)`.
    pub leader: Option<(u64, String)>,
    /// Every server it has heard of (itself included), so that servers
    /// joining through one of them learn of each other.
    #[serde(default)]
    pub known: BTreeMap<u64, String>,
    /// Milliseconds since the leader last replicated to it (0 on the
    /// leader; `None`: never).
    #[serde(default)]
    pub last_contact_ms: Option<u64>,
    /// Its last log index and current term.
    #[serde(default)]
    pub last_index: u64,
    #[serde(default)]
    pub term: u64,
}

/// How recently a quorum must have acknowledged a leader for its default
/// reads to count as the leader's view.
const LEADER_LEASE_MS: u64 = 500;

/// A running raft member.
#[derive(Clone)]
pub struct Consensus {
    pub raft: Raft<TypeConfig>,
    pub id: u64,
    /// `host:port` of this server's raft endpoint.
    pub addr: String,
    http: reqwest::Client,
    /// `https` when the server port speaks mutual TLS, else `http`.
    scheme: &'static str,
    known: Arc<parking_lot::Mutex<BTreeMap<u64, String>>>,
    /// Told of what raft does ([`Consensus::observe`]).
    observer: Arc<std::sync::OnceLock<Observer>>,
    /// Servers to join given while the agent runs ([`Consensus::join_at`]),
    /// tried with the configured ones.
    extra_join: Arc<parking_lot::Mutex<Vec<String>>>,
    /// When the leader last replicated to this node (a successful append).
    last_contact: Arc<parking_lot::Mutex<Option<Instant>>>,
    /// Heartbeats received (on the leader): node name → when.
    heartbeats: Arc<parking_lot::Mutex<BTreeMap<String, Instant>>>,
    /// Session renewals received (on the leader): session ID → when.
    session_renewals: Arc<parking_lot::Mutex<BTreeMap<String, Instant>>>,
    /// The cluster keys: accepted on the server port; the primary one is
    /// sent with every request to other agents.
    pub(crate) keyring: Arc<parking_lot::RwLock<keyring::Keyring>>,
    keyring_path: Option<std::path::PathBuf>,
    /// Where writes are proposed (grouped when they arrive together).
    proposer: proposer::Proposer,
}

/// The leader's view of replication.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replication {
    /// Node id → last log index it has.
    pub matched: BTreeMap<u64, u64>,
    pub last_index: u64,
    pub term: u64,
}

/// A server or client asking the leader to add it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: u64,
    pub addr: String,
    /// A server (voter) or a client agent (a learner: it follows the log).
    pub voter: bool,
}

/// A node id from a node's UUID (its first 8 bytes; never 0).
pub fn node_id_from_uuid(uuid: &str) -> u64 {
    let hex: String = uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect();
    u64::from_str_radix(&hex, 16).unwrap_or(1).max(1)
}

impl Consensus {
    /// Opens the log in `dir` and starts raft for node `id` reachable at
    /// `addr`.
    /// `key`: the cluster key; when set, every request between agents
    /// carries it and requests without it are refused.
    /// `tls`: the client side of mutual TLS on the server port (the cluster
    /// CA as roots, this agent's certificate); `None`: plain HTTP.
    pub async fn start(
        id: u64,
        addr: String,
        dir: &Path,
        host: Arc<dyn Host>,
        key: Option<String>,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Consensus, ConsensusError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ConsensusError::Other(format!("{}: {e}", dir.display())))?;
        let db = redb::Database::create(dir.join("raft.redb"))
            .map_err(|e| ConsensusError::Other(format!("opening the raft log: {e}")))?;
        let db = Arc::new(db);
        let config = openraft::Config {
            cluster_name: "meshgate".into(),
            heartbeat_interval: 150,
            election_timeout_min: 600,
            election_timeout_max: 1200,
            install_snapshot_timeout: 5000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(8192),
            max_in_snapshot_log_to_keep: 1024,
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| ConsensusError::Other(format!("raft configuration: {e}")))?,
        );
        let log = log_store::LogStore::new(db.clone(), id)
            .map_err(|e| ConsensusError::Other(format!("opening the raft log: {e}")))?;
        let durable = log.durable();
        let sm = state_machine::StateMachine::open(host, db, durable.clone())
            .map_err(|e| ConsensusError::Other(format!("opening the state machine: {e}")))?;
        let keyring_path = dir.parent().map(|p| p.join("keyring.json"));
        let ring = keyring::Keyring::load(keyring_path.as_ref(), key)
            .map_err(|e| ConsensusError::Other(format!("the keyring: {e}")))?;
        if let Some(k) = &ring.primary {
            reqwest::header::HeaderValue::from_str(k)
                .map_err(|_| ConsensusError::Other("the cluster key is not valid text".into()))?;
        }
        let keyring = Arc::new(parking_lot::RwLock::new(ring));
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        let tls = tls.map(Arc::new);
        let scheme = if let Some(cfg) = &tls {
            builder = builder.tls_backend_preconfigured(rustls::ClientConfig::clone(cfg));
            "https"
        } else {
            "http"
        };
        let http = builder
            .build()
            .map_err(|e| ConsensusError::Other(e.to_string()))?;
        let net =
            network::Network::new(http.clone(), scheme, keyring.clone(), durable.clone(), tls);
        let raft = Raft::new(id, config, net, log, sm)
            .await
            .map_err(|e| ConsensusError::Other(format!("starting raft: {e}")))?;
        // openraft stops on a log write error it is told of; a leader's own
        // entries were reported before their commit, so a failure is told
        // here.
        let stopping = raft.clone();
        tokio::spawn(async move {
            let e = durable.failed().await;
            tracing::error!("the raft log could not be written ({e}): this server stops raft");
            let _ = stopping.shutdown().await;
        });
        let known = Arc::new(parking_lot::Mutex::new(BTreeMap::from([(
            id,
            addr.clone(),
        )])));
        Ok(Consensus {
            proposer: proposer::Proposer::start(raft.clone()),
            raft,
            id,
            addr,
            http,
            scheme,
            known,
            observer: Arc::default(),
            extra_join: Arc::default(),
            heartbeats: Arc::default(),
            session_renewals: Arc::default(),
            last_contact: Arc::default(),
            keyring,
            keyring_path,
        })
    }

    /// Tells `observer` of what this server's raft does from now on: every
    /// request it commits as leader, its elections and leaderships, and, on
    /// the leader, the time since a quorum acknowledged it (every 500 ms).
    /// Set once.
    pub fn observe(&self, observer: Observer) {
        if self.observer.set(observer.clone()).is_err() {
            return;
        }
        let mut rx = self.raft.metrics();
        tokio::spawn(async move {
            use openraft::ServerState;
            let mut last = rx.borrow().state;
            let mut tick = tokio::time::interval(Duration::from_millis(LEADER_LEASE_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    changed = rx.changed() => {
                        // Raft has stopped.
                        if changed.is_err() {
                            return;
                        }
                        let state = rx.borrow().state;
                        if state != last {
                            match state {
                                ServerState::Leader => observer(RaftEvent::BecameLeader),
                                ServerState::Candidate => observer(RaftEvent::BecameCandidate),
                                _ => {}
                            }
                            last = state;
                        }
                    }
                    _ = tick.tick() => {
                        let contact = {
                            let m = rx.borrow();
                            (m.state == ServerState::Leader)
                                .then_some(m.millis_since_quorum_ack)
                                .flatten()
                        };
                        if let Some(ms) = contact {
                            observer(RaftEvent::LeaderContact(Duration::from_millis(ms)));
                        }
                    }
                }
            }
        });
    }

    /// A GET of `/v1/internal/raft/<path>` on another agent's server port
    /// (`addr`), with the cluster key.
    fn get(&self, addr: &str, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}://{addr}/v1/internal/raft/{path}", self.scheme);
        keyed(self.http.get(url), &self.keyring)
    }

    /// A POST to `/v1/internal/raft/<path>` on another agent's server port
    /// (`addr`), with the cluster key.
    fn post(&self, addr: &str, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}://{addr}/v1/internal/raft/{path}", self.scheme);
        keyed(self.http.post(url), &self.keyring)
    }

    /// Every member of the cluster (voters and client agents): id → (server
    /// port address, voter).
    pub fn members(&self) -> BTreeMap<u64, (String, bool)> {
        let m = self.raft.metrics().borrow().clone();
        let mem = m.membership_config.membership();
        mem.nodes()
            .map(|(id, n)| (*id, (n.addr.clone(), mem.voter_ids().any(|v| v == *id))))
            .collect()
    }

    /// Applies a keyring operation to this agent's keyring (saved when it
    /// changes).
    pub fn keyring_local(&self, op: keyring::KeyOp, key: &str) -> keyring::KeyAnswer {
        let mut ring = self.keyring.write();
        let mut next = ring.clone();
        let result = next.apply(op, key).and_then(|changed| {
            if changed && let Some(p) = &self.keyring_path {
                next.save(p)?;
            }
            Ok(changed)
        });
        match result {
            Ok(_) => {
                *ring = next;
                keyring::KeyAnswer {
                    keys: ring.keys.clone(),
                    primary: ring.primary.clone(),
                    error: String::new(),
                }
            }
            Err(e) => keyring::KeyAnswer {
                keys: ring.keys.clone(),
                primary: ring.primary.clone(),
                error: e,
            },
        }
    }

    /// Runs a keyring operation on every member, in parallel: (id, address,
    /// voter, the member's answer or why it gave none).
    pub async fn keyring_everywhere(
        &self,
        op: keyring::KeyOp,
        key: &str,
    ) -> Vec<(u64, String, bool, Result<keyring::KeyAnswer, String>)> {
        let calls = self.members().into_iter().map(|(id, (addr, voter))| {
            let key = key.to_string();
            async move {
                let answer = if id == self.id {
                    Ok(self.keyring_local(op, &key))
                } else {
                    let r = self
                        .post(&addr, "keyring")
                        .timeout(Duration::from_secs(5))
                        .json(&(op, key))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => r
                            .json::<keyring::KeyAnswer>()
                            .await
                            .map_err(|e| e.to_string()),
                        Ok(r) => Err(format!("{}", r.status())),
                        Err(e) => Err(e.to_string()),
                    }
                };
                (id, addr, voter, answer)
            }
        });
        futures::future::join_all(calls).await
    }

    /// Pauses (or resumes) this server's elections and, on the leader, its
    /// heartbeats: the first step of a leadership transfer.
    /// A pause ends by itself after 10 s, so that a transfer interrupted
    /// halfway (its leader gone) never leaves a server unable to elect.
    pub fn pause_elections(&self, pause: bool) {
        let rc = self.raft.runtime_config();
        rc.elect(!pause);
        rc.heartbeat(!pause);
        if pause {
            let raft = self.raft.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let rc = raft.runtime_config();
                rc.elect(true);
                rc.heartbeat(true);
            });
        }
    }

    /// Starts an election on this server and waits up to 5 s to win it.
    pub async fn elect_self(&self) -> Result<bool, String> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| e.to_string())?;
        let won = self
            .raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(|m| m.current_leader == Some(self.id), "leadership")
            .await
            .is_ok();
        Ok(won)
    }

    /// Moves the leadership to `target` (`None`: the most up-to-date other
    /// voter), Consul's `transfer-leader`. On the leader: the other voters
    /// stop electing and the leader stops its heartbeats, so that once their
    /// leader lease (the longest election timeout) has run out, the target's
    /// election is the only one; then everything resumes.
    pub async fn transfer_leader(&self, target: Option<u64>) -> Result<u64, String> {
        let Some(rep) = self.replication() else {
            return Err("node is not the leader".into());
        };
        let voters = self.voters();
        let target = match target {
            Some(t) if t == self.id => return Err("cannot transfer leadership to itself".into()),
            Some(t) if !voters.contains_key(&t) => {
                return Err(format!("Could not find address for server id {t}"));
            }
            Some(t) => t,
            None => voters
                .keys()
                .filter(|id| **id != self.id)
                .max_by_key(|id| rep.matched.get(id).copied().unwrap_or(0))
                .copied()
                .ok_or("cannot find peer")?,
        };
        let others: Vec<(u64, String)> = voters
            .iter()
            .filter(|(id, _)| **id != target && **id != self.id)
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        let pause_all = |pause: bool| {
            let others = others.clone();
            async move {
                self.pause_elections(pause);
                for (_, addr) in &others {
                    let _ = self
                        .post(addr, "pause")
                        .timeout(Duration::from_secs(2))
                        .json(&pause)
                        .send()
                        .await;
                }
            }
        };
        pause_all(true).await;
        let result = async {
            // The target must have everything before it asks for votes.
            let last = self.raft.metrics().borrow().last_log_index.unwrap_or(0);
            let caught_up = self
                .raft
                .wait(Some(Duration::from_secs(3)))
                .metrics(
                    |m| {
                        m.replication.as_ref().is_some_and(|r| {
                            r.get(&target)
                                .and_then(|l| l.as_ref())
                                .is_some_and(|l| l.index >= last)
                        })
                    },
                    "the target to catch up",
                )
                .await;
            if caught_up.is_err() {
                return Err("leadership transfer timeout".to_string());
            }
            // Let the followers' leader lease run out (no heartbeats now).
            tokio::time::sleep(Duration::from_millis(1300)).await;
            let addr = voters.get(&target).cloned().unwrap_or_default();
            let won: Result<bool, String> = self
                .post(&addr, "elect")
                .timeout(Duration::from_secs(8))
                .send()
                .await
                .map_err(|e| format!("failed to make TimeoutNow RPC to {target}: {e}"))?
                .json()
                .await
                .map_err(|e| format!("failed to make TimeoutNow RPC to {target}: {e}"))?;
            match won {
                Ok(true) => Ok(target),
                Ok(false) => Err("leadership transfer timeout".to_string()),
                Err(e) => Err(e),
            }
        }
        .await;
        pause_all(false).await;
        result
    }

    /// Asks the leader to move the leadership (see [`Consensus::transfer_leader`]).
    pub async fn transfer_leader_via_leader(&self, target: Option<u64>) -> Result<u64, String> {
        if self.is_leader() {
            return self.transfer_leader(target).await;
        }
        self.post_leader("transfer", &target, Duration::from_secs(15))
            .await
    }

    /// POSTs `body` to the leader's `/v1/internal/raft/<path>` and returns
    /// the leader's `Result` answer (transport failures as errors too).
    async fn post_leader<B: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, String> {
        let (_, addr) = self.info().leader.ok_or("No cluster leader")?;
        self.post(&addr, path)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json::<Result<R, String>>()
            .await
            .map_err(|e| e.to_string())?
    }

    /// This server's view.
    pub fn info(&self) -> Info {
        let m = self.raft.metrics().borrow().clone();
        let member = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id);
        let learner = m
            .membership_config
            .membership()
            .learner_ids()
            .any(|v| v == self.id);
        let leader = m.current_leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| (l, n.addr.clone()))
        });
        Info {
            id: self.id,
            addr: self.addr.clone(),
            member,
            learner,
            leader,
            known: self.known.lock().clone(),
            last_contact_ms: self.last_contact().map(|d| d.as_millis() as u64),
            last_index: m.last_log_index.unwrap_or(0),
            term: m.current_term,
        }
    }

    /// Whether this server leads.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Voters: id → raft address.
    pub fn voters(&self) -> BTreeMap<u64, String> {
        let m = self.raft.metrics().borrow().clone();
        let mem = m.membership_config.membership();
        mem.voter_ids()
            .filter_map(|id| mem.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect()
    }

    /// Orders a request: on the leader directly, else forwarded to it; in
    /// both cases it returns once this server has applied it too (so a
    /// client reads its own write on the server it wrote through). Waits up
    /// to `patience` for a leader.
    pub async fn write(
        &self,
        req: Request,
        patience: Duration,
    ) -> Result<Response, ConsensusError> {
        let (r, index) = self.order(req, patience).await?;
        if !self.is_leader() {
            let _ = self
                .raft
                .wait(Some(patience))
                .applied_index_at_least(Some(index), "a forwarded write")
                .await;
        }
        Ok(r)
    }

    /// Orders a request; the response and the entry's log index.
    pub async fn order(
        &self,
        req: Request,
        patience: Duration,
    ) -> Result<(Response, u64), ConsensusError> {
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // A leader that lost its quorum never commits: give up at the
            // deadline (the write may still be committed later).
            let proposed = Instant::now();
            let leader = match tokio::time::timeout(left, self.proposer.propose(req.clone())).await
            {
                Err(_) => return Err(ConsensusError::Timeout),
                Ok(Ok(r)) => {
                    if let Some(o) = self.observer.get() {
                        o(RaftEvent::Committed(proposed.elapsed()));
                    }
                    return Ok(r);
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => f.leader_node,
                Ok(Err(e)) => return Err(ConsensusError::Other(e.to_string())),
            };
            if let Some(node) = leader {
                match self.forward(&node.addr, &req).await {
                    Ok(r) => return Ok(r),
                    // Only a write that certainly was not applied is sent
                    // again: a copy applied after later writes would undo
                    // them (and a repeated check-and-set would answer
                    // false for a write that happened).
                    Err(WriteFailure::Uncertain(e)) => {
                        warn!(
                            "forwarding a write to the leader at {}: {e}; it may or may not have been applied",
                            node.addr
                        );
                        return Err(ConsensusError::Uncertain(e));
                    }
                    Err(WriteFailure::NotApplied(e)) => {
                        warn!("forwarding a write to the leader at {}: {e}", node.addr)
                    }
                    Err(WriteFailure::Refused(e)) => {
                        return Err(ConsensusError::Other(format!(
                            "the leader refused the write: {e}"
                        )));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(ConsensusError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends a write to the server at `addr` (the leader, as far as this
    /// one knows). The error says whether the write may have been applied:
    /// a refused connection or a refusal before the write was looked at
    /// means it was not; a lost answer means it may have been.
    async fn forward(&self, addr: &str, req: &Request) -> Result<(Response, u64), WriteFailure> {
        send_write(self.post(addr, "write"), addr, req).await
    }

    /// A linearizable read point: returns once this server has applied
    /// everything the leader had committed when the read started (the leader
    /// first confirms with a quorum that it still leads). Backs `?consistent`.
    pub async fn read_barrier(&self, patience: Duration) -> Result<(), ConsensusError> {
        let index = if self.is_leader() {
            self.read_index().await?
        } else {
            self.ask_leader_index("read-index", patience).await?
        };
        self.wait_applied(index, patience).await
    }

    /// The default read mode (Consul forwards such reads to the leader):
    /// returns once this node has applied everything the leader had applied
    /// when the read started, so that the answer is the leader's view
    /// without a quorum round. Immediate on the leader.
    /// A leader that has not heard from a quorum within the lease does not
    /// count (it may have been replaced); without a leader this waits up to
    /// `patience` for one.
    pub async fn leader_barrier(&self, patience: Duration) -> Result<(), ConsensusError> {
        let deadline = Instant::now() + patience;
        loop {
            if self.is_leader() {
                if self.holds_lease() {
                    return Ok(());
                }
            } else if self.info().leader.is_some() {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Ok(index) = self.ask_leader_index("applied-index", left).await {
                    return self.wait_applied(index, left).await;
                }
            }
            if Instant::now() >= deadline {
                return Err(ConsensusError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether this node knows a leader (`X-Consul-KnownLeader`): a leader
    /// that has lost its quorum (no ack within the lease) does not count
    /// itself.
    pub fn known_leader(&self) -> bool {
        match self.info().leader {
            None => false,
            Some((id, _)) if id == self.id => self.holds_lease(),
            Some(_) => true,
        }
    }

    /// On the leader: whether a quorum acknowledged it within the lease
    /// (Consul's leader lease, 500 ms; here a little under the shortest
    /// election timeout).
    pub fn holds_lease(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader == Some(self.id)
            && m.millis_since_quorum_ack
                .is_some_and(|ms| ms <= LEADER_LEASE_MS)
    }

    /// An index from the leader's `/v1/internal/raft/<what>`.
    async fn ask_leader_index(
        &self,
        what: &str,
        patience: Duration,
    ) -> Result<u64, ConsensusError> {
        let r: Result<u64, String> = self.leader_get(what, patience).await?;
        r.map_err(|_| ConsensusError::NoLeader)
    }

    /// The leader's answer to `GET /v1/internal/raft/<what>`; any failure
    /// to get it is [`ConsensusError::NoLeader`].
    async fn leader_get<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        timeout: Duration,
    ) -> Result<T, ConsensusError> {
        let (_, addr) = self.info().leader.ok_or(ConsensusError::NoLeader)?;
        self.get(&addr, what)
            .timeout(timeout)
            .send()
            .await
            .map_err(|_| ConsensusError::NoLeader)?
            .json()
            .await
            .map_err(|_| ConsensusError::NoLeader)
    }

    /// Waits until this node has applied `index`.
    async fn wait_applied(&self, index: u64, patience: Duration) -> Result<(), ConsensusError> {
        self.raft
            .wait(Some(patience))
            .applied_index_at_least(Some(index), "a read")
            .await
            .map(|_| ())
            .map_err(|_| ConsensusError::NoLeader)
    }

    /// The last log index this node has applied.
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// Records contact from the leader (a successful append).
    pub(crate) fn contacted(&self) {
        *self.last_contact.lock() = Some(Instant::now());
    }

    /// How long since this node last heard from the leader: zero on the
    /// leader, `None` when it never has.
    pub fn last_contact(&self) -> Option<Duration> {
        if self.is_leader() {
            return Some(Duration::ZERO);
        }
        self.last_contact.lock().map(|t| t.elapsed())
    }

    /// On the leader: confirms leadership with a quorum and returns the
    /// index a linearizable read must wait for.
    pub async fn read_index(&self) -> Result<u64, ConsensusError> {
        self.raft
            .ensure_linearizable()
            .await
            .map(|l| l.map(|l| l.index).unwrap_or(0))
            .map_err(|_| ConsensusError::NoLeader)
    }

    /// On the leader: each voter's and learner's last matched log index, the
    /// leader's last log index and term. `None` on a follower.
    pub fn replication(&self) -> Option<Replication> {
        let m = self.raft.metrics().borrow().clone();
        let rep = m.replication?;
        Some(Replication {
            matched: rep
                .into_iter()
                .map(|(id, l)| (id, l.map(|l| l.index).unwrap_or(0)))
                .collect(),
            last_index: m.last_log_index.unwrap_or(0),
            term: m.current_term,
        })
    }

    /// The leader's replication view, asked from any server.
    pub async fn leader_replication(&self) -> Result<Replication, ConsensusError> {
        if let Some(r) = self.replication() {
            return Ok(r);
        }
        let r: Option<Replication> = self
            .leader_get("replication", Duration::from_secs(3))
            .await?;
        r.ok_or(ConsensusError::NoLeader)
    }

    /// Records a heartbeat of node `node` (on the leader).
    pub fn heartbeat_from(&self, node: &str) {
        self.heartbeats
            .lock()
            .insert(node.to_string(), Instant::now());
    }

    /// The heartbeats received: node name → when.
    pub fn heartbeats(&self) -> BTreeMap<String, Instant> {
        self.heartbeats.lock().clone()
    }

    /// Sends this node's heartbeat to the leader.
    pub async fn send_heartbeat(&self, node: &str) -> Result<(), String> {
        let (_, addr) = self.info().leader.ok_or("no leader")?;
        self.post(&addr, "heartbeat")
            .timeout(Duration::from_secs(2))
            .json(&node)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Records a renewal of session `id` (on the leader).
    pub fn session_renewed(&self, id: &str) {
        self.session_renewals
            .lock()
            .insert(id.to_string(), Instant::now());
    }

    /// The session renewals received: session ID → when. Only the sessions
    /// for which `keep` holds stay recorded.
    pub fn session_renewals(&self, keep: impl Fn(&str) -> bool) -> BTreeMap<String, Instant> {
        let mut r = self.session_renewals.lock();
        r.retain(|id, _| keep(id));
        r.clone()
    }

    /// Renews session `id` with the leader, which keeps the sessions' TTLs
    /// (as Consul's leader does): recorded here when this server leads, else
    /// sent to the leader. Like a write, a renewal that finds no leader (an
    /// election under way, a leader that just died) is retried until one
    /// takes it or `patience` runs out; then the error says why.
    pub async fn renew_session(&self, id: &str, patience: Duration) -> Result<(), ConsensusError> {
        let deadline = Instant::now() + patience;
        loop {
            if self.is_leader() {
                self.session_renewed(id);
                return Ok(());
            }
            let err = if self.info().leader.is_none() {
                ConsensusError::NoLeader
            } else {
                match self
                    .post_leader::<_, ()>("session-renew", &id, Duration::from_secs(5))
                    .await
                {
                    Ok(()) => return Ok(()),
                    Err(e) => ConsensusError::Other(format!("session renew: {e}")),
                }
            };
            if Instant::now() >= deadline {
                return Err(err);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Adds a client agent (leader only): it follows the log as a learner.
    pub async fn add_client(&self, id: u64, addr: &str) -> Result<(), String> {
        let m = self.raft.metrics().borrow().clone();
        if m.membership_config.membership().get_node(&id).is_some() {
            return Ok(());
        }
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map_err(|e| e.to_string())?;
        info!(node = id, addr, "client agent follows the log");
        Ok(())
    }

    /// Removes a client agent (a learner) from the membership (leader only).
    pub async fn remove_client(&self, id: u64) -> Result<(), String> {
        self.raft
            .change_membership(
                openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id])),
                false,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Removes node `id` (server or client agent) from the membership,
    /// through the leader.
    pub async fn remove_member(&self, id: u64) -> Result<(), String> {
        if self.is_leader() {
            return self.remove_local(id).await;
        }
        // 10 s: the HTTP client's default timeout for other requests too.
        self.post_leader("remove", &id, Duration::from_secs(10))
            .await
    }

    /// On the leader: removes a voter or a learner; a node not in the
    /// membership is fine.
    pub async fn remove_local(&self, id: u64) -> Result<(), String> {
        let m = self.raft.metrics().borrow().clone();
        let mem = m.membership_config.membership();
        if mem.voter_ids().any(|v| v == id) {
            self.remove_server(id).await
        } else if mem.learner_ids().any(|v| v == id) {
            self.remove_client(id).await
        } else {
            Ok(())
        }
    }

    /// Adds a server (leader only): as a learner first, then as a voter.
    pub async fn add_server(&self, id: u64, addr: &str) -> Result<(), String> {
        if self.voters().contains_key(&id) {
            return Ok(());
        }
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map_err(|e| e.to_string())?;
        let mut ids: BTreeSet<u64> = self.voters().into_keys().collect();
        ids.insert(id);
        self.raft
            .change_membership(ids, false)
            .await
            .map_err(|e| e.to_string())?;
        info!(server = id, addr, "server joined the raft configuration");
        Ok(())
    }

    /// Removes a server from the voters (leader only).
    pub async fn remove_server(&self, id: u64) -> Result<(), String> {
        let mut ids: BTreeSet<u64> = self.voters().into_keys().collect();
        if !ids.remove(&id) {
            return Err(format!("server {id} is not in the raft configuration"));
        }
        self.raft
            .change_membership(ids, false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Records a server heard of.
    pub fn heard_of(&self, id: u64, addr: &str) {
        if id != 0 && !addr.is_empty() {
            self.known.lock().insert(id, addr.to_string());
        }
    }

    /// Asks another server about itself (telling it about this one).
    pub async fn peer_info(&self, addr: &str) -> Result<Info, String> {
        self.get(addr, &format!("info?id={}&addr={}", self.id, self.addr))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())
    }

    /// `meshgate join` / `PUT /v1/agent/join/:address`: contacts the agent
    /// at `addr` (its server port). A node not yet in a cluster joins
    /// through it (with the configured addresses); for a member, joining a
    /// server of its own cluster changes nothing, and one of another
    /// cluster, or an agent in none, is an error (clusters are not merged).
    pub async fn join_at(&self, addr: &str) -> Result<(), String> {
        let peer = self.peer_info(addr).await?;
        let me = self.info();
        if me.member || me.learner {
            if !peer.member && !peer.learner {
                return Err(format!(
                    "the agent at {addr} is in no cluster yet: join it to this cluster from that agent (meshgate join {})",
                    self.addr
                ));
            }
            if peer.member && !self.members().contains_key(&peer.id) {
                return Err(format!(
                    "the server at {addr} belongs to another cluster: meshgate does not merge clusters"
                ));
            }
            return Ok(());
        }
        self.heard_of(peer.id, &peer.addr);
        for (id, a) in &peer.known {
            self.heard_of(*id, a);
        }
        let mut extra = self.extra_join.lock();
        if !extra.iter().any(|a| a == addr) {
            extra.push(addr.to_string());
        }
        Ok(())
    }

    /// Asks the leader at `addr` to add this node.
    pub async fn ask_to_join(&self, addr: &str, voter: bool) -> Result<(), String> {
        let r: Result<(), String> = self
            .post(addr, "join")
            .json(&JoinRequest {
                id: self.id,
                addr: self.addr.clone(),
                voter,
            })
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        r
    }

    /// Forms or joins the cluster: until this server is a voter, it learns
    /// the servers at `join` (`host:port` of their raft endpoints); once
    /// `expect` servers are known and none is initialized, the one with the
    /// lowest id initializes the cluster with all of them; a server that
    /// finds an initialized cluster asks its leader to add it. A client
    /// agent (`voter = false`) only ever asks a leader to add it, as a
    /// learner that follows the log.
    ///
    /// `retry` paces the attempts while none of the `join` addresses answers
    /// (Consul's `retry_interval` / `retry_max`); once one has answered, the
    /// node keeps asking every 300 ms until it is a member (forming a
    /// cluster, waiting for a leader), as Consul's join is then complete.
    /// Gives up with [`JoinExhausted`] after `retry.max` failed attempts
    /// past the first (0: never).
    pub async fn form(
        &self,
        join: Vec<String>,
        expect: usize,
        voter: bool,
        retry: JoinRetry,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), JoinExhausted> {
        let expect = expect.max(1);
        let mut failed_attempts = 0u64;
        let mut reached_once = join.is_empty();
        let mut warned = Instant::now() - Duration::from_secs(60);
        let mut logged = Instant::now() - Duration::from_secs(60);
        // A client agent asks the leader once per start even when its own
        // copy of the log says it is a learner: that copy may predate its
        // removal (`leave`, `force-leave`), which a removed learner does not
        // always receive, and it would wait for replication for ever. Asking
        // is a no-op for a node that is still a member.
        let mut asked = false;
        loop {
            let me = self.info();
            if me.member || (!voter && me.learner && asked) {
                return Ok(());
            }
            let mut leader = None;
            let mut reached = false;
            let targets: Vec<String> = join
                .iter()
                .cloned()
                .chain(self.extra_join.lock().iter().cloned())
                .collect();
            for addr in &targets {
                if let Ok(i) = self.peer_info(addr).await {
                    reached = true;
                    if i.member {
                        leader = leader.or(i.leader.clone());
                    }
                    self.heard_of(i.id, &i.addr);
                    for (id, a) in &i.known {
                        self.heard_of(*id, a);
                    }
                }
            }
            let known = self.known.lock().clone();
            if let Some((_, laddr)) = leader {
                match self.ask_to_join(&laddr, voter).await {
                    Ok(()) => {
                        asked = true;
                        info!("joined the cluster through the leader at {laddr}");
                    }
                    Err(e) => warn!("asking the leader at {laddr} to add this node: {e}"),
                }
            } else if voter && known.len() >= expect && known.keys().next() == Some(&self.id) {
                let members: BTreeMap<u64, BasicNode> = known
                    .iter()
                    .map(|(id, a)| (*id, BasicNode::new(a)))
                    .collect();
                match self.raft.initialize(members).await {
                    Ok(()) => info!(servers = known.len(), "bootstrapped the cluster"),
                    Err(e) => warn!("bootstrapping the cluster: {e}"),
                }
            } else if logged.elapsed() > Duration::from_secs(10) {
                info!(
                    known = known.len(),
                    expect, "waiting for servers to form a cluster"
                );
                logged = Instant::now();
            }
            let mut pause = Duration::from_millis(300);
            if reached {
                reached_once = true;
            } else if !reached_once {
                failed_attempts += 1;
                if retry.max > 0 && failed_attempts > retry.max {
                    return Err(JoinExhausted);
                }
                pause = retry.interval;
                // Every attempt when they are paced by the operator; every
                // 10 s at meshgate's own quick pace.
                if pause >= Duration::from_secs(1) || warned.elapsed() > Duration::from_secs(10) {
                    warn!(
                        retry_interval = ?pause,
                        "Join cluster failed, will retry: none of {join:?} answered"
                    );
                    warned = Instant::now();
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    }
}

/// How [`Consensus::form`] retries while no server to join answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinRetry {
    /// Time between two attempts.
    pub interval: Duration,
    /// Failed attempts after the first before giving up (0: never).
    pub max: u64,
}

/// No server to join answered within `retry_max` attempts (Consul's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("agent: max join LAN retry exhausted, exiting")]
pub struct JoinExhausted;

/// Posts a write to another server's `/v1/internal/raft/write`. The
/// error says whether the write may have been applied: a refused
/// connection, or a refusal before the write was looked at, means it was
/// not; a lost answer means it may have been.
async fn send_write(
    post: reqwest::RequestBuilder,
    addr: &str,
    req: &Request,
) -> Result<(Response, u64), WriteFailure> {
    let r = match post.json(req).send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(WriteFailure::NotApplied(e.to_string())),
        Err(e) => return Err(WriteFailure::Uncertain(e.to_string())),
    };
    if !r.status().is_success() {
        // Refused before the handler ran (a missing cluster key, a request
        // an older server cannot read).
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        let body: String = body.trim().chars().take(200).collect();
        return Err(WriteFailure::Refused(format!(
            "{addr} answered {status}: {body}"
        )));
    }
    match r.json::<Result<(Response, u64), WriteFailure>>().await {
        Ok(answer) => answer,
        // (An older server answers a plain string: it cannot say.)
        Err(e) => Err(WriteFailure::Uncertain(e.to_string())),
    }
}

#[cfg(test)]
mod tests;

/// Adds the primary cluster key to a request between agents.
pub(crate) fn keyed(
    r: reqwest::RequestBuilder,
    ring: &parking_lot::RwLock<keyring::Keyring>,
) -> reqwest::RequestBuilder {
    match &ring.read().primary {
        Some(k) => r.header(network::KEY_HEADER, k.as_str()),
        None => r,
    }
}
