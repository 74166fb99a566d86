//! Server-to-server raft RPCs over HTTP: the client side (openraft's
//! `RaftNetwork`) and the server side (an axum router on the server port).
//! AppendEntries go on one connection per peer that the replication task
//! drives itself ([`crate::wire`]); the rare RPCs (votes, snapshots) through
//! the general HTTP client.
//!
//! Every RPC carries the target's id in the path and the receiving server
//! checks it, so a message meant for one server never lands on another that
//! took over its address.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use parking_lot::RwLock;

use crate::keyring::{KeyAnswer, KeyOp, Keyring};
use crate::log_store::Durable;
use crate::wire::{Dialer, Failure, Wire};
use crate::{Consensus, Info, Response, TypeConfig};

/// Makes clients to other servers.
pub struct Network {
    http: reqwest::Client,
    scheme: &'static str,
    keyring: Arc<RwLock<Keyring>>,
    durable: Durable,
    dialer: Dialer,
}

impl Network {
    /// `scheme`: `https` when the server port speaks mutual TLS.
    /// `durable`: this server's log durability mark (see `append_entries`).
    /// `tls`: the client side of the cluster's mutual TLS, for the
    /// AppendEntries connections (`None`: plain TCP, with `scheme` `http`).
    pub fn new(
        http: reqwest::Client,
        scheme: &'static str,
        keyring: Arc<RwLock<Keyring>>,
        durable: Durable,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Network {
        Network {
            http,
            scheme,
            keyring,
            durable,
            dialer: Dialer::new(tls),
        }
    }
}

/// A client to one server.
pub struct Conn {
    http: reqwest::Client,
    scheme: &'static str,
    keyring: Arc<RwLock<Keyring>>,
    target: u64,
    addr: String,
    durable: Durable,
    dialer: Dialer,
    /// The AppendEntries connection (see [`crate::wire`]): taken out for an
    /// exchange and put back only after a whole answer, so a message that
    /// was cut short (a timeout, a cancelled replication) never leaves a
    /// half-read answer for the next one.
    wire: Option<Wire>,
    /// `/v1/internal/raft/append/<target>`.
    append_path: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Conn {
        Conn {
            http: self.http.clone(),
            scheme: self.scheme,
            keyring: self.keyring.clone(),
            target,
            addr: node.addr.clone(),
            durable: self.durable.clone(),
            dialer: self.dialer.clone(),
            wire: None,
            append_path: format!("/v1/internal/raft/append/{target}"),
        }
    }
}

impl Conn {
    /// AppendEntries on this peer's connection (made when there is none).
    /// A reused connection that fails is replaced once and the message sent
    /// again (the peer may have closed it; AppendEntries may be repeated).
    async fn append_on_wire(
        &mut self,
        rpc: &AppendEntriesRequest<TypeConfig>,
        option: &RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let network = |e: std::io::Error| RPCError::Network(NetworkError::new(&e));
        let body = serde_json::to_vec(rpc).map_err(|e| network(e.into()))?;
        let key = self.keyring.read().primary.clone();
        let headers: Vec<(&str, &str)> = key
            .as_deref()
            .map(|k| (KEY_HEADER, k))
            .into_iter()
            .collect();
        let exchange = async {
            let mut reused = self.wire.take();
            loop {
                let was_reused = reused.is_some();
                let mut wire = match reused.take() {
                    Some(w) => w,
                    None => self.dialer.dial(&self.addr).await?,
                };
                match wire
                    .post(&self.addr, &self.append_path, &headers, &body)
                    .await
                {
                    Ok(answer) => return Ok((wire, answer)),
                    Err(_) if was_reused => continue,
                    Err(e) => return Err(Failure::Exchange(e)),
                }
            }
        };
        let (wire, (status, answer)) = match tokio::time::timeout(option.hard_ttl(), exchange).await
        {
            Err(_) => {
                return Err(network(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "AppendEntries timed out",
                )));
            }
            Ok(Err(Failure::Connect(e))) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Ok(Err(Failure::Exchange(e))) => return Err(network(e)),
            Ok(Ok(done)) => done,
        };
        self.wire = Some(wire);
        if status != 200 {
            return Err(network(std::io::Error::other(format!(
                "{} answered {status}: {}",
                self.addr,
                String::from_utf8_lossy(&answer)
            ))));
        }
        let r: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
            serde_json::from_slice(&answer).map_err(|e| network(e.into()))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn call<Req, Resp, E>(
        &self,
        rpc: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!(
            "{}://{}/v1/internal/raft/{rpc}/{}",
            self.scheme, self.addr, self.target
        );
        let r = crate::keyed(self.http.post(url), &self.keyring)
            .timeout(option.hard_ttl())
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let r: Result<Resp, RaftError<u64, E>> = r
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    /// The leader writes its own entries while its followers do (see
    /// [`crate::log_store::LogStore`]), and its own disk still counts: a
    /// commit index goes out only once it is durable here, and a follower's
    /// answer reaches openraft only once this log is durable up to the last
    /// entry the follower was sent. An entry thus counts as committed only
    /// when a quorum including the leader has it on disk. Both waits end at
    /// once in the common case (the leader's fsync finishes while the
    /// follower writes), and they concern only a leader's own new entries:
    /// what a server wrote as a follower was durable before it answered.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let durable = |r: Result<(), String>| {
            r.map_err(|e| RPCError::Network(NetworkError::new(&std::io::Error::other(e))))
        };
        if let Some(commit) = &rpc.leader_commit {
            durable(self.durable.wait(commit.index).await)?;
        }
        let last = rpc
            .entries
            .last()
            .map(|e| e.log_id.index)
            .or(rpc.prev_log_id.map(|p| p.index));
        let answer = self.append_on_wire(&rpc, &option).await?;
        if let Some(last) = last {
            durable(self.durable.wait(last).await)?;
        }
        Ok(answer)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("vote", &rpc, &option).await
    }
}

/// A message meant for another server id is refused (the client sees a
/// network error and retries; it never reaches the wrong state machine).
fn check_target(me: u64, target: u64) -> Result<(), (StatusCode, String)> {
    if me == target {
        return Ok(());
    }
    tracing::warn!("a raft message for server {target} reached server {me}");
    Err((
        StatusCode::CONFLICT,
        format!("this is server {me}, not {target}"),
    ))
}

type Answer<T> = Result<Json<T>, (StatusCode, String)>;

async fn append(
    State(c): State<Consensus>,
    Path(target): Path<u64>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Answer<Result<AppendEntriesResponse<u64>, RaftError<u64>>> {
    check_target(c.id, target)?;
    let r = c.raft.append_entries(req).await;
    if r.as_ref().is_ok_and(|a| a.is_success()) {
        c.contacted();
    }
    Ok(Json(r))
}

async fn vote(
    State(c): State<Consensus>,
    Path(target): Path<u64>,
    Json(req): Json<VoteRequest<u64>>,
) -> Answer<Result<VoteResponse<u64>, RaftError<u64>>> {
    check_target(c.id, target)?;
    Ok(Json(c.raft.vote(req).await))
}

async fn snapshot(
    State(c): State<Consensus>,
    Path(target): Path<u64>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Answer<Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>> {
    check_target(c.id, target)?;
    Ok(Json(c.raft.install_snapshot(req).await))
}

/// Who is asking (a server forming the cluster).
#[derive(serde::Deserialize)]
struct Asker {
    id: Option<u64>,
    addr: Option<String>,
}

async fn info(State(c): State<Consensus>, Query(q): Query<Asker>) -> Json<Info> {
    if let (Some(id), Some(addr)) = (q.id, q.addr.as_deref()) {
        c.heard_of(id, addr);
    }
    Json(c.info())
}

async fn write(
    State(c): State<Consensus>,
    Json(req): Json<meshgate_state::Request>,
) -> Json<Result<(Response, u64), crate::WriteFailure>> {
    // Only the leader orders; a follower that receives a forwarded write
    // forwards it on (the leader may have changed meanwhile).
    Json(
        c.order(req, std::time::Duration::from_secs(5))
            .await
            .map_err(crate::WriteFailure::from),
    )
}

async fn join(
    State(c): State<Consensus>,
    Json(j): Json<crate::JoinRequest>,
) -> Json<Result<(), String>> {
    if !c.is_leader() {
        return Json(Err("not the leader".into()));
    }
    if j.voter {
        Json(c.add_server(j.id, &j.addr).await)
    } else {
        Json(c.add_client(j.id, &j.addr).await)
    }
}

async fn remove(State(c): State<Consensus>, Json(id): Json<u64>) -> Json<Result<(), String>> {
    if !c.is_leader() {
        return Json(Err("not the leader".into()));
    }
    Json(c.remove_local(id).await)
}

async fn replication(State(c): State<Consensus>) -> Json<Option<crate::Replication>> {
    Json(c.replication())
}

async fn heartbeat(State(c): State<Consensus>, Json(node): Json<String>) -> Json<()> {
    c.heartbeat_from(&node);
    Json(())
}

async fn session_renew(
    State(c): State<Consensus>,
    Json(id): Json<String>,
) -> Json<Result<(), String>> {
    if !c.is_leader() {
        return Json(Err("not the leader".into()));
    }
    c.session_renewed(&id);
    Json(Ok(()))
}

async fn read_index(State(c): State<Consensus>) -> Json<Result<u64, String>> {
    Json(c.read_index().await.map_err(|e| e.to_string()))
}

async fn keyring_op(
    State(c): State<Consensus>,
    Json((op, key)): Json<(KeyOp, String)>,
) -> Json<KeyAnswer> {
    Json(c.keyring_local(op, &key))
}

async fn pause(State(c): State<Consensus>, Json(pause): Json<bool>) -> Json<()> {
    c.pause_elections(pause);
    Json(())
}

async fn elect(State(c): State<Consensus>) -> Json<Result<bool, String>> {
    c.pause_elections(false);
    Json(c.elect_self().await)
}

async fn transfer(
    State(c): State<Consensus>,
    Json(target): Json<Option<u64>>,
) -> Json<Result<u64, String>> {
    Json(c.transfer_leader(target).await)
}

async fn applied_index(State(c): State<Consensus>) -> Json<Result<u64, String>> {
    Json(if c.holds_lease() {
        Ok(c.applied_index())
    } else {
        Err("not the leader".into())
    })
}

/// The header carrying the cluster key between agents.
pub const KEY_HEADER: &str = "x-meshgate-cluster-key";

/// Refuses requests without the cluster key, when the cluster has one.
async fn check_key(
    State(c): State<Consensus>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let refused = {
        let ring = c.keyring.read();
        !ring.keys.is_empty()
            && !ring.accepts(
                req.headers()
                    .get(KEY_HEADER)
                    .map(|v| v.as_bytes())
                    .unwrap_or_default(),
            )
    };
    if refused {
        tracing::warn!("refused a cluster request without the cluster key");
        return axum::response::IntoResponse::into_response((
            StatusCode::FORBIDDEN,
            "missing or wrong cluster key",
        ));
    }
    next.run(req).await
}

/// The server port's routes.
pub fn router(c: Consensus) -> Router {
    Router::new()
        .route("/v1/internal/raft/append/{target}", post(append))
        .route("/v1/internal/raft/vote/{target}", post(vote))
        .route("/v1/internal/raft/snapshot/{target}", post(snapshot))
        .route("/v1/internal/raft/info", get(info))
        .route("/v1/internal/raft/write", post(write))
        .route("/v1/internal/raft/join", post(join))
        .route("/v1/internal/raft/heartbeat", post(heartbeat))
        .route("/v1/internal/raft/session-renew", post(session_renew))
        .route("/v1/internal/raft/remove", post(remove))
        .route("/v1/internal/raft/replication", get(replication))
        .route("/v1/internal/raft/applied-index", get(applied_index))
        .route("/v1/internal/raft/keyring", post(keyring_op))
        .route("/v1/internal/raft/pause", post(pause))
        .route("/v1/internal/raft/elect", post(elect))
        .route("/v1/internal/raft/transfer", post(transfer))
        .route("/v1/internal/raft/read-index", get(read_index))
        .layer(axum::middleware::from_fn_with_state(c.clone(), check_key))
        .with_state(c)
}
