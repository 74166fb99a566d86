//! Group commit of concurrent writes: requests that arrive while earlier ones
//! are being ordered go together into one log entry ([`Command::Batch`]).
//!
//! openraft 0.9 puts each proposed entry on the leader's disk (fsync) before
//! it takes the next proposal, so one entry per request would cap a server at
//! one write per fsync however many clients wait. The proposer keeps at most
//! [`IN_FLIGHT`] entries in flight; requests that arrive meanwhile wait and
//! go together into the next entry. A request that arrives when a slot is
//! free and nothing waits is proposed at once, alone, from the caller's own
//! task: a lone client's write costs what it did.

use std::sync::Arc;

use meshgate_state::{Applied, ApplyError, Command, Request};
use openraft::Raft;
use openraft::error::{ClientWriteError, Fatal, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{Response, TypeConfig};

/// Entries proposed and not yet applied, at most.
const IN_FLIGHT: usize = 4;
/// Requests in one entry, at most.
const MAX_REQUESTS: usize = 256;
/// About how many bytes of requests one entry carries, at most (a heavier
/// request goes alone).
const MAX_WEIGHT: usize = 1 << 20;

/// What ordering a request gave: its result and the index of the entry
/// that carried it, or why it was not ordered (e.g. not the leader).
pub type Outcome =
    Result<(Response, u64), RaftError<u64, ClientWriteError<u64, openraft::BasicNode>>>;

struct Proposal {
    req: Request,
    done: oneshot::Sender<Outcome>,
}

/// The handle requests are proposed through (clones share the queue).
#[derive(Clone)]
pub struct Proposer {
    raft: Raft<TypeConfig>,
    queue: mpsc::UnboundedSender<Proposal>,
    slots: Arc<Semaphore>,
}

impl Proposer {
    /// Starts the task that proposes queued requests to `raft`; it ends
    /// when every handle is dropped.
    pub fn start(raft: Raft<TypeConfig>) -> Proposer {
        let (queue, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(run(raft.clone(), rx, slots.clone()));
        Proposer { raft, queue, slots }
    }

    /// Orders a request (with the ones queued beside it) and returns its own
    /// result.
    pub async fn propose(&self, req: Request) -> Outcome {
        let stopped = || Err(RaftError::Fatal(Fatal::Stopped));
        // A slot free, so no batch is gathering (a request waiting for a
        // slot would hold every released one): propose from this task,
        // without the hop through the queue's.
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            let r = write(&self.raft, req).await;
            drop(slot);
            return r;
        }
        let (done, rx) = oneshot::channel();
        if self.queue.send(Proposal { req, done }).is_err() {
            return stopped();
        }
        rx.await.unwrap_or_else(|_| stopped())
    }
}

async fn run(
    raft: Raft<TypeConfig>,
    mut rx: mpsc::UnboundedReceiver<Proposal>,
    slots: Arc<Semaphore>,
) {
    // A request that did not fit in the previous entry.
    let mut carried: Option<Proposal> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Waiting for a slot is what lets requests gather.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut weight = first.req.weight();
        let mut batch = vec![first];
        while batch.len() < MAX_REQUESTS {
            let Ok(p) = rx.try_recv() else { break };
            let w = p.req.weight();
            if weight.saturating_add(w) > MAX_WEIGHT {
                carried = Some(p);
                break;
            }
            weight += w;
            batch.push(p);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            order(&raft, batch).await;
            drop(slot);
        });
    }
}

/// Proposes one request as an entry of its own.
async fn write(raft: &Raft<TypeConfig>, req: Request) -> Outcome {
    raft.client_write(req)
        .await
        .map(|r| (r.data, r.log_id.index))
}

/// Proposes one entry: the request itself when alone, else a batch whose
/// results are handed back one by one.
async fn order(raft: &Raft<TypeConfig>, mut batch: Vec<Proposal>) {
    if batch.len() == 1
        && let Some(p) = batch.pop()
    {
        let _ = p.done.send(write(raft, p.req).await);
        return;
    }
    let (reqs, dones): (Vec<Request>, Vec<oneshot::Sender<Outcome>>) =
        batch.into_iter().map(|p| (p.req, p.done)).unzip();
    let n = reqs.len();
    let now_ms = reqs.iter().map(|r| r.now_ms).max().unwrap_or_default();
    let entry = Request {
        now_ms,
        cmd: Command::Batch(reqs),
    };
    match raft.client_write(entry).await {
        Ok(r) => {
            let index = r.log_id.index;
            match r.data {
                Ok(Applied::Batch(results)) if results.len() == n => {
                    for (done, result) in dones.into_iter().zip(results) {
                        let _ = done.send(Ok((result, index)));
                    }
                }
                // The state answers a batch with one result per request;
                // anything else fails every request of it, loudly.
                other => {
                    let e = match other {
                        Err(e) => e,
                        Ok(_) => ApplyError::Invalid(format!(
                            "a batch of {n} requests at index {index} gave no result for each"
                        )),
                    };
                    tracing::error!("{e}");
                    for done in dones {
                        let _ = done.send(Ok((Err(e.clone()), index)));
                    }
                }
            }
        }
        Err(e) => {
            for done in dones {
                let _ = done.send(Err(e.clone()));
            }
        }
    }
}
