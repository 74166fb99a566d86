//! The raft log and vote in redb: one table of entries by index, one of
//! metadata (vote, committed id, last purged id, the current snapshot). Every
//! write is a redb transaction committed with immediate durability (fsync)
//! before it is acknowledged, by a writer thread (see [`LogStore`]).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::TypeConfig;

pub(crate) const LOGS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("logs");
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

type Err = StorageError<u64>;

fn read_err(e: impl std::error::Error + 'static) -> Err {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> Err {
    StorageIOError::write_logs(&e).into()
}

fn vote_err(e: impl std::error::Error + 'static) -> Err {
    StorageIOError::write_vote(&e).into()
}

/// Reads a JSON value from the meta table.
pub(crate) fn meta_get<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, Err> {
    let txn = db.begin_read().map_err(read_err)?;
    let table = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    match table.get(key).map_err(read_err)? {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(read_err),
        None => Ok(None),
    }
}

/// Writes a JSON value to the meta table, durably.
pub(crate) fn meta_put<T: Serialize>(db: &Database, key: &str, v: &T) -> Result<(), Err> {
    let bytes = serde_json::to_vec(v).map_err(write_err)?;
    let txn = db.begin_write().map_err(write_err)?;
    {
        let mut table = txn.open_table(META).map_err(write_err)?;
        table.insert(key, bytes.as_slice()).map_err(write_err)?;
    }
    txn.commit().map_err(write_err)
}

/// Something for the log writer to do. Jobs are written in the order they
/// were sent; every job the writer finds queued goes into one redb
/// transaction (group commit).
enum Job {
    /// Entries (index, the pending map's sequence number, JSON), and the
    /// callback that tells openraft they are on disk.
    Append {
        entries: Vec<(u64, u64, Vec<u8>)>,
        done: LogFlushed<TypeConfig>,
    },
    /// An operation whose caller waits for it to be durable.
    Sync {
        op: SyncOp,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

enum SyncOp {
    /// Delete the entries from this index on.
    Truncate(u64),
    /// Delete the entries up to this index and record the purged log id.
    Purge(u64, Vec<u8>),
    Vote(Vec<u8>),
    /// Nothing: returns once every job sent before it is on disk.
    Barrier,
}

/// Entries appended and not yet committed to redb: index → (sequence
/// number, entry). Readers see them at once, as openraft requires.
type Pending = Arc<parking_lot::Mutex<BTreeMap<u64, (u64, Entry<TypeConfig>)>>>;

/// The log store; clones share the database, the entries not yet on disk
/// and the writer (the reader openraft's replication tasks use is a clone).
///
/// `append` only hands the entries to a writer thread and returns, as
/// openraft's storage API asks; openraft learns that they are durable from
/// the callback the writer calls after the commit. The fsync thus never
/// blocks a thread of the async runtime, and whatever queued up meanwhile
/// (votes, truncations, purges) shares the transaction. It does not let the
/// leader replicate before its own fsync: openraft 0.9 waits for the
/// callback before its next step; concurrent client writes share fsyncs
/// because they share log entries ([`crate::proposer`]). A failed commit
/// fails every job in it, and openraft stops on a log write error.
#[derive(Clone)]
pub struct LogStore {
    pub(crate) db: Arc<Database>,
    pending: Pending,
    /// The committed log id (JSON) not yet written: a hint, it rides along
    /// with the writer's next transaction and costs no transaction of its
    /// own.
    committed: Arc<parking_lot::Mutex<Option<Vec<u8>>>>,
    seq: Arc<AtomicU64>,
    jobs: mpsc::Sender<Job>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> LogStore {
        let pending = Pending::default();
        let committed = Arc::<parking_lot::Mutex<Option<Vec<u8>>>>::default();
        let (jobs, rx) = mpsc::channel();
        let (wdb, wpending, wcommitted) = (db.clone(), pending.clone(), committed.clone());
        // The thread ends when the last clone of the store (the last sender)
        // is dropped.
        let spawned = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer(&wdb, &wpending, &wcommitted, &rx));
        if let Err(e) = spawned {
            // Every job then fails with "the log writer is gone", which
            // openraft treats as a storage error.
            tracing::error!("could not start the raft log writer: {e}");
        }
        LogStore {
            db,
            pending,
            committed,
            seq: Arc::default(),
            jobs,
        }
    }

    /// Sends a job the caller waits for, and waits.
    async fn sync(&self, op: SyncOp) -> Result<(), String> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Sync { op, done })
            .map_err(|_| GONE.to_string())?;
        rx.await.map_err(|_| GONE.to_string())?
    }
}

const GONE: &str = "the raft log writer is gone";

/// The writer thread: takes every queued job, writes them in one
/// transaction, then reports to each.
fn writer(
    db: &Database,
    pending: &Pending,
    committed: &parking_lot::Mutex<Option<Vec<u8>>>,
    rx: &mpsc::Receiver<Job>,
) {
    /// A bound on one transaction, so a burst does not hold every callback
    /// back until all of it is written.
    const MAX_JOBS: usize = 1024;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let hint = committed.lock().take();
        let result = write_batch(db, &batch, hint.as_deref());
        if result.is_ok() {
            // On disk now: readers find these in redb. An entry replaced
            // meanwhile (truncated and appended again) has a newer sequence
            // number and stays.
            let mut p = pending.lock();
            for job in &batch {
                if let Job::Append { entries, .. } = job {
                    for (index, seq, _) in entries {
                        if p.get(index).is_some_and(|(s, _)| s == seq) {
                            p.remove(index);
                        }
                    }
                }
            }
        }
        for job in batch {
            match job {
                Job::Append { done, .. } => {
                    done.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                Job::Sync { done, .. } => {
                    let _ = done.send(result.clone());
                }
            }
        }
    }
}

fn write_batch(db: &Database, batch: &[Job], committed: Option<&[u8]>) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let txn = db.begin_write().map_err(|x| e(&x))?;
    {
        let mut logs = txn.open_table(LOGS).map_err(|x| e(&x))?;
        let mut meta = txn.open_table(META).map_err(|x| e(&x))?;
        for job in batch {
            match job {
                Job::Append { entries, .. } => {
                    for (index, _, bytes) in entries {
                        logs.insert(*index, bytes.as_slice()).map_err(|x| e(&x))?;
                    }
                }
                Job::Sync { op, .. } => match op {
                    SyncOp::Truncate(index) => {
                        logs.retain_in(*index.., |_, _| false).map_err(|x| e(&x))?;
                    }
                    SyncOp::Purge(index, bytes) => {
                        meta.insert(PURGED, bytes.as_slice()).map_err(|x| e(&x))?;
                        logs.retain_in(..=*index, |_, _| false).map_err(|x| e(&x))?;
                    }
                    SyncOp::Vote(bytes) => {
                        meta.insert(VOTE, bytes.as_slice()).map_err(|x| e(&x))?;
                    }
                    SyncOp::Barrier => {}
                },
            }
        }
        if let Some(bytes) = committed {
            meta.insert(COMMITTED, bytes).map_err(|x| e(&x))?;
        }
    }
    // Immediate durability: the commit returns once the data is on disk.
    txn.commit().map_err(|x| e(&x))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, Err> {
        // The entries not yet on disk first, redb second: an entry the
        // writer commits in between is then in one or the other (it leaves
        // the pending map only after its commit).
        let unwritten: Vec<Entry<TypeConfig>> = self
            .pending
            .lock()
            .range(range.clone())
            .map(|(_, (_, e))| e.clone())
            .collect();
        let txn = self.db.begin_read().map_err(read_err)?;
        let mut out = BTreeMap::new();
        match txn.open_table(LOGS) {
            Ok(table) => {
                for item in table.range(range).map_err(read_err)? {
                    let (k, v) = item.map_err(read_err)?;
                    let e: Entry<TypeConfig> =
                        serde_json::from_slice(v.value()).map_err(read_err)?;
                    out.insert(k.value(), e);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(read_err(e)),
        }
        for e in unwritten {
            out.insert(e.get_log_id().index, e);
        }
        Ok(out.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, Err> {
        self.sync(SyncOp::Barrier)
            .await
            .map_err(|e| read_err(std::io::Error::other(e)))?;
        let last_purged: Option<LogId<u64>> = meta_get(&self.db, PURGED)?;
        let txn = self.db.begin_read().map_err(read_err)?;
        let last = match txn.open_table(LOGS) {
            Ok(t) => match t.last().map_err(read_err)? {
                Some((_, v)) => {
                    let e: Entry<TypeConfig> =
                        serde_json::from_slice(v.value()).map_err(read_err)?;
                    Some(*e.get_log_id())
                }
                None => None,
            },
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(read_err(e)),
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), Err> {
        let bytes = serde_json::to_vec(vote).map_err(vote_err)?;
        self.sync(SyncOp::Vote(bytes))
            .await
            .map_err(|e| vote_err(std::io::Error::other(e)))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, Err> {
        meta_get(&self.db, VOTE)
    }

    /// The committed index is a hint (openraft learns it again from the
    /// leader, and a lone server commits its term's first entry): kept in
    /// memory, it is written with the writer's next transaction (the next
    /// append), so it costs neither a transaction nor an fsync of its own.
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), Err> {
        let bytes = serde_json::to_vec(&committed).map_err(write_err)?;
        *self.committed.lock() = Some(bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, Err> {
        self.sync(SyncOp::Barrier)
            .await
            .map_err(|e| read_err(std::io::Error::other(e)))?;
        Ok(meta_get::<Option<LogId<u64>>>(&self.db, COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), Err>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        let mut unwritten = Vec::new();
        for e in entries {
            let bytes = serde_json::to_vec(&e).map_err(write_err)?;
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let index = e.get_log_id().index;
            batch.push((index, seq, bytes));
            unwritten.push((index, (seq, e)));
        }
        // Readable at once (before the writer has them on disk).
        self.pending.lock().extend(unwritten);
        self.jobs
            .send(Job::Append {
                entries: batch,
                done: callback,
            })
            .map_err(|_| write_err(std::io::Error::other(GONE)))
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), Err> {
        self.pending.lock().retain(|index, _| *index < log_id.index);
        self.sync(SyncOp::Truncate(log_id.index))
            .await
            .map_err(|e| write_err(std::io::Error::other(e)))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), Err> {
        let bytes = serde_json::to_vec(&Some(log_id)).map_err(write_err)?;
        self.pending.lock().retain(|index, _| *index > log_id.index);
        self.sync(SyncOp::Purge(log_id.index, bytes))
            .await
            .map_err(|e| write_err(std::io::Error::other(e)))
    }
}
