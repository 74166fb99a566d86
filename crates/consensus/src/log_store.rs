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
use tokio::sync::watch;

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
    /// callback that tells openraft they are on disk (`None`: it was told
    /// at once, see [`LogStore`] on a leader's own entries).
    Append {
        entries: Vec<(u64, u64, Vec<u8>)>,
        done: Option<LogFlushed<TypeConfig>>,
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
/// openraft's storage API asks; the fsync thus never blocks a thread of the
/// async runtime, and whatever queued up meanwhile (votes, truncations,
/// purges, entries) shares the transaction. A failed commit fails every job
/// in it, and openraft stops on a log write error.
///
/// When openraft learns that entries are durable decides when the leader
/// replicates them: openraft 0.9 takes its next step only after the
/// callback. A follower's entries are reported after their commit (its
/// answer to the leader says they are on disk). A leader's own entries of
/// its current term are reported at once, so that the leader's fsync runs
/// while its followers receive and write the same entries, as in etcd —
/// and the leader's own disk is accounted for elsewhere, from the
/// [`Durable`] mark the writer moves after each commit:
/// - a follower's acknowledgement reaches openraft only once the leader's
///   log is durable up to what that follower acknowledged
///   ([`crate::network`]), so an entry counts as committed only when a
///   quorum including the leader has it on disk;
/// - the leader announces a commit index to other servers only once it is
///   durable here (a lone voter commits on its own: its learners never
///   apply what it could still lose);
/// - the state machine applies an entry only once it is durable here
///   ([`crate::state_machine`]), so no client is answered earlier.
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
    /// This server's id.
    me: u64,
    /// The vote last saved: whose entries are a leader's own.
    vote: Arc<parking_lot::Mutex<Option<Vote<u64>>>>,
    durable: Durable,
}

/// How far the log is on disk: `Ok(end)` when every entry below index
/// `end` is durable; `Err` once a commit failed (the log is then stuck).
pub(crate) type DurableEnd = Result<u64, String>;

/// The writer's durability mark, shared with whoever must not go ahead of
/// the leader's disk (the network, the state machine).
#[derive(Clone)]
pub struct Durable(Arc<watch::Sender<DurableEnd>>);

impl Durable {
    fn new(end: u64) -> Durable {
        Durable(Arc::new(watch::Sender::new(Ok(end))))
    }

    /// Returns once the entry at `index` is on disk (at once when it
    /// already is), or the error of the commit that failed.
    pub(crate) async fn wait(&self, index: u64) -> Result<(), String> {
        let mut rx = self.0.subscribe();
        let state = rx
            .wait_for(|s| match s {
                Ok(end) => *end > index,
                Err(_) => true,
            })
            .await
            .map_err(|_| GONE.to_string())?;
        state.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// Returns the error of the commit that failed, once one has (a
    /// leader's own entries were reported to openraft before their commit,
    /// so it learns of the failure from here).
    pub(crate) async fn failed(&self) -> String {
        let mut rx = self.0.subscribe();
        match rx.wait_for(Result::is_err).await {
            Ok(state) => state.clone().err().unwrap_or_default(),
            Err(_) => GONE.to_string(),
        }
    }

    /// A mark at `end`, moved by hand (`u64::MAX`: past every entry, for a
    /// state machine tested on its own, whose entries were never in a log).
    #[cfg(test)]
    pub(crate) fn at(end: u64) -> Durable {
        Durable::new(end)
    }

    #[cfg(test)]
    pub(crate) fn set(&self, end: u64) {
        self.0.send_modify(|state| *state = Ok(end));
    }

    /// The end of the durable log.
    #[cfg(test)]
    pub(crate) fn end(&self) -> DurableEnd {
        self.0.borrow().clone()
    }

    /// Moves the mark after a commit that wrote `batch`.
    fn advance(&self, batch: &[Job]) {
        self.0.send_modify(|state| {
            let Ok(end) = state else { return };
            for job in batch {
                match job {
                    // Appends come in log order, after any truncation.
                    Job::Append { entries, .. } => {
                        if let Some((index, _, _)) = entries.last() {
                            *end = index + 1;
                        }
                    }
                    Job::Sync {
                        op: SyncOp::Truncate(index),
                        ..
                    } => *end = (*end).min(*index),
                    Job::Sync { .. } => {}
                }
            }
        });
    }

    fn fail(&self, error: &str) {
        self.0.send_modify(|state| *state = Err(error.to_string()));
    }
}

/// Whether `entries` are a leader's own, proposed in its current term: the
/// saved vote is this server's committed leadership, and every entry
/// carries that leader id. Only such entries may be reported durable before
/// their commit (see [`LogStore`]); a follower never matches (its saved
/// vote names another server, and one term has one leader).
fn leaders_own(me: u64, vote: Option<&Vote<u64>>, entries: &[Entry<TypeConfig>]) -> bool {
    let Some(vote) = vote else {
        return false;
    };
    vote.is_committed()
        && vote.leader_id().voted_for() == Some(me)
        && !entries.is_empty()
        && entries
            .iter()
            .all(|e| e.get_log_id().leader_id == *vote.leader_id())
}

impl LogStore {
    /// `me`: this server's id, which tells its own entries as a leader
    /// (reported at once, see [`LogStore`]) from a follower's.
    pub fn new(db: Arc<Database>, me: u64) -> Result<LogStore, Err> {
        let pending = Pending::default();
        let committed = Arc::<parking_lot::Mutex<Option<Vec<u8>>>>::default();
        let vote: Option<Vote<u64>> = meta_get(&db, VOTE)?;
        let durable = Durable::new(stored_end(&db)?);
        let (jobs, rx) = mpsc::channel();
        let (wdb, wpending, wcommitted, wdurable) = (
            db.clone(),
            pending.clone(),
            committed.clone(),
            durable.clone(),
        );
        // The thread ends when the last clone of the store (the last sender)
        // is dropped.
        let spawned = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer(&wdb, &wpending, &wcommitted, &wdurable, &rx));
        if let Err(e) = spawned {
            // Every job then fails with "the log writer is gone", which
            // openraft treats as a storage error.
            tracing::error!("could not start the raft log writer: {e}");
        }
        Ok(LogStore {
            db,
            pending,
            committed,
            seq: Arc::default(),
            jobs,
            me,
            vote: Arc::new(parking_lot::Mutex::new(vote)),
            durable,
        })
    }

    /// The writer's durability mark.
    pub fn durable(&self) -> Durable {
        self.durable.clone()
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

/// The end of the log on disk when the store opens: one past the last
/// entry, or past the last purged one when the log is empty.
fn stored_end(db: &Database) -> Result<u64, Err> {
    let purged: Option<LogId<u64>> = meta_get(db, PURGED)?;
    let txn = db.begin_read().map_err(read_err)?;
    let last = match txn.open_table(LOGS) {
        Ok(t) => t.last().map_err(read_err)?.map(|(k, _)| k.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(read_err(e)),
    };
    Ok(last.or(purged.map(|p| p.index)).map_or(0, |i| i + 1))
}

/// The writer thread: takes every queued job, writes them in one
/// transaction, then reports to each.
fn writer(
    db: &Database,
    pending: &Pending,
    committed: &parking_lot::Mutex<Option<Vec<u8>>>,
    durable: &Durable,
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
        match &result {
            Ok(()) => durable.advance(&batch),
            Err(e) => {
                tracing::error!("writing the raft log failed: {e}");
                durable.fail(e);
            }
        }
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
                Job::Append {
                    done: Some(done), ..
                } => {
                    done.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                Job::Append { done: None, .. } => {}
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
            .map_err(|e| vote_err(std::io::Error::other(e)))?;
        *self.vote.lock() = Some(*vote);
        Ok(())
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
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let early = leaders_own(self.me, self.vote.lock().as_ref(), &entries);
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
        let (done, now) = if early {
            (None, Some(callback))
        } else {
            (Some(callback), None)
        };
        self.jobs
            .send(Job::Append {
                entries: batch,
                done,
            })
            .map_err(|_| write_err(std::io::Error::other(GONE)))?;
        if let Some(callback) = now {
            callback.log_io_completed(Ok(()));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, leader: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, leader), index),
            payload: EntryPayload::Blank,
        }
    }

    fn committed(term: u64, leader: u64) -> Vote<u64> {
        Vote::new_committed(term, leader)
    }

    #[test]
    fn only_a_leaders_own_entries_of_its_term_skip_the_wait() {
        let own = [entry(3, 1, 10), entry(3, 1, 11)];
        assert!(leaders_own(1, Some(&committed(3, 1)), &own));
        // A candidate's vote for itself, not yet granted.
        assert!(!leaders_own(1, Some(&Vote::new(3, 1)), &own));
        // A follower: the leader of term 3 is server 2.
        assert!(!leaders_own(1, Some(&committed(3, 2)), &[entry(3, 2, 10)]));
        // Its own entries of an older term, sent back by a newer leader.
        assert!(!leaders_own(1, Some(&committed(4, 2)), &[entry(3, 1, 10)]));
        // Leader of term 4 appending an entry of term 3 (never happens; no
        // shortcut for it either).
        assert!(!leaders_own(
            1,
            Some(&committed(4, 1)),
            &[entry(4, 1, 9), entry(3, 1, 10)]
        ));
        assert!(!leaders_own(1, None, &own));
        assert!(!leaders_own(1, Some(&committed(3, 1)), &[]));
    }

    fn append_job(indexes: std::ops::RangeInclusive<u64>) -> Job {
        Job::Append {
            entries: indexes.map(|i| (i, i, Vec::new())).collect(),
            done: None,
        }
    }

    fn sync_job(op: SyncOp) -> Job {
        Job::Sync {
            op,
            done: tokio::sync::oneshot::channel().0,
        }
    }

    #[test]
    fn the_mark_follows_appends_and_truncations_in_order() {
        let d = Durable::new(5);
        d.advance(&[append_job(5..=7)]);
        assert_eq!(d.end(), Ok(8));
        // Truncated from 6 and appended again: 6 and 7 are the new entries.
        d.advance(&[sync_job(SyncOp::Truncate(6)), append_job(6..=6)]);
        assert_eq!(d.end(), Ok(7));
        d.advance(&[append_job(7..=9), sync_job(SyncOp::Truncate(8))]);
        assert_eq!(d.end(), Ok(8));
        d.advance(&[
            sync_job(SyncOp::Barrier),
            sync_job(SyncOp::Purge(3, Vec::new())),
        ]);
        assert_eq!(d.end(), Ok(8));
        d.fail("disk full");
        d.advance(&[append_job(8..=8)]);
        assert_eq!(d.end(), Err("disk full".to_string()));
    }

    #[tokio::test]
    async fn waiting_for_the_disk() {
        let d = Durable::new(3);
        // Already on disk: at once.
        d.wait(2).await.expect("index 2 is durable");
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait(4).await }
        });
        d.set(4);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "index 4 is not durable at end 4");
        d.set(5);
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken when the mark passes the index")
            .expect("task");
        assert_eq!(r, Ok(()));
        let failing = tokio::spawn({
            let d = d.clone();
            async move { d.wait(9).await }
        });
        let watcher = tokio::spawn({
            let d = d.clone();
            async move { d.failed().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!watcher.is_finished(), "nothing failed yet");
        d.fail("disk full");
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), watcher)
            .await
            .expect("told of the failure")
            .expect("task");
        assert_eq!(e, "disk full");
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), failing)
            .await
            .expect("woken by the failure")
            .expect("task");
        assert_eq!(r, Err("disk full".to_string()));
    }

    #[test]
    fn a_reopened_log_starts_durable_at_its_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::create(dir.path().join("raft.redb")).expect("db");
        assert_eq!(stored_end(&db).expect("empty"), 0);
        let txn = db.begin_write().expect("txn");
        {
            let mut logs = txn.open_table(LOGS).expect("logs");
            for i in 4..=6u64 {
                logs.insert(i, b"{}".as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
        assert_eq!(stored_end(&db).expect("entries"), 7);
        let txn = db.begin_write().expect("txn");
        {
            let mut logs = txn.open_table(LOGS).expect("logs");
            logs.retain_in(0u64.., |_, _| false).expect("clear");
        }
        txn.commit().expect("commit");
        meta_put(
            &db,
            PURGED,
            &Some(LogId::new(CommittedLeaderId::new(2, 1), 6)),
        )
        .expect("purged");
        assert_eq!(stored_end(&db).expect("purged"), 7);
    }
}
