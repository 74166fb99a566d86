//! The state machine: committed entries are applied to the host's state (the
//! agent's store) at their log index; snapshots are the host's serialized
//! state, kept in redb so that a restarted server starts from its latest
//! snapshot and replays only the log after it.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use redb::Database;
use serde::{Deserialize, Serialize};

use crate::log_store::{Durable, meta_get, meta_put};
use crate::{Host, Response, TypeConfig};

type Err = StorageError<u64>;
type Node = openraft::BasicNode;

const SNAPSHOT: &str = "snapshot";

/// A snapshot as stored: its meta and the host's bytes.
#[derive(Serialize, Deserialize)]
struct Stored {
    meta: SnapshotMeta<u64, Node>,
    data: Vec<u8>,
}

fn sm_err(e: impl std::fmt::Display) -> Err {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

fn snap_err(e: impl std::fmt::Display) -> Err {
    StorageIOError::write_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

/// The state machine around a [`Host`].
pub struct StateMachine {
    host: Arc<dyn Host>,
    db: Arc<Database>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, Node>,
    snapshot_seq: u64,
    /// The log's durability mark: an entry is applied only once it is on
    /// this server's disk (a leader's own entries may be committed by its
    /// followers' disks while its own fsync is still running).
    durable: Durable,
}

impl StateMachine {
    /// Opens the state machine: the latest stored snapshot, if any, is
    /// restored into the host. `durable`: the log store's mark.
    pub fn open(
        host: Arc<dyn Host>,
        db: Arc<Database>,
        durable: Durable,
    ) -> Result<StateMachine, Err> {
        let mut sm = StateMachine {
            host,
            db,
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot_seq: 0,
            durable,
        };
        if let Some(s) = meta_get::<Stored>(&sm.db, SNAPSHOT)? {
            sm.host.restore(&s.data).map_err(snap_err)?;
            sm.last_applied = s.meta.last_log_id;
            sm.membership = s.meta.last_membership.clone();
        }
        Ok(sm)
    }
}

/// Builds a snapshot from what was captured when it was asked for.
pub struct Builder {
    db: Arc<Database>,
    meta: SnapshotMeta<u64, Node>,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, Err> {
        let stored = Stored {
            meta: self.meta.clone(),
            data: std::mem::take(&mut self.data),
        };
        meta_put(&self.db, SNAPSHOT, &stored)?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, Node>), Err> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, Err>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        if let Some(last) = entries.last() {
            self.durable.wait(last.log_id.index).await.map_err(sm_err)?;
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            self.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(Ok(meshgate_state::Applied::Done)),
                EntryPayload::Normal(req) => out.push(self.host.apply(e.log_id.index, &req)),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Ok(meshgate_state::Applied::Done));
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Captured here, in step with `apply`, so the data matches
        // `last_applied` exactly.
        self.snapshot_seq += 1;
        let id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.snapshot_seq),
            None => format!("0-0-{}", self.snapshot_seq),
        };
        Builder {
            db: self.db.clone(),
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id: id,
            },
            data: self.host.snapshot(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, Err> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), Err> {
        let data = snapshot.into_inner();
        self.host.restore(&data).map_err(sm_err)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        meta_put(
            &self.db,
            SNAPSHOT,
            &Stored {
                meta: meta.clone(),
                data,
            },
        )
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, Err> {
        Ok(meta_get::<Stored>(&self.db, SNAPSHOT)?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
