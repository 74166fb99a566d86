//! The raft log and vote in redb: one table of entries by index, one of
//! metadata (vote, committed id, last purged id, the current snapshot). Every
//! write is a redb transaction committed with immediate durability (fsync)
//! before it is acknowledged.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

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

/// The log store; clones share the database (the reader openraft's
/// replication tasks use).
#[derive(Clone)]
pub struct LogStore {
    pub(crate) db: Arc<Database>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> LogStore {
        LogStore { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, Err> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = match txn.open_table(LOGS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read_err(e)),
        };
        let mut out = Vec::new();
        for item in table.range(range).map_err(read_err)? {
            let (_, v) = item.map_err(read_err)?;
            out.push(serde_json::from_slice(v.value()).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, Err> {
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
        meta_put(&self.db, VOTE, vote).map_err(|e| vote_err(std::io::Error::other(e.to_string())))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, Err> {
        meta_get(&self.db, VOTE)
    }

    /// The committed index is a hint (openraft learns it again from the
    /// leader): written without its own fsync, it becomes durable with the
    /// next log append. One fsync per write instead of two on every server.
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), Err> {
        let bytes = serde_json::to_vec(&committed).map_err(write_err)?;
        let mut txn = self.db.begin_write().map_err(write_err)?;
        txn.set_durability(redb::Durability::None)
            .map_err(write_err)?;
        {
            let mut table = txn.open_table(META).map_err(write_err)?;
            table
                .insert(COMMITTED, bytes.as_slice())
                .map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, Err> {
        Ok(meta_get::<Option<LogId<u64>>>(&self.db, COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), Err>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(LOGS).map_err(write_err)?;
            for e in entries {
                let bytes = serde_json::to_vec(&e).map_err(write_err)?;
                table
                    .insert(e.get_log_id().index, bytes.as_slice())
                    .map_err(write_err)?;
            }
        }
        // Immediate durability: the commit returns once the data is on disk.
        let r = txn.commit();
        match r {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), Err> {
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(LOGS).map_err(write_err)?;
            table
                .retain_in(log_id.index.., |_, _| false)
                .map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), Err> {
        let bytes = serde_json::to_vec(&Some(log_id)).map_err(write_err)?;
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut meta = txn.open_table(META).map_err(write_err)?;
            meta.insert(PURGED, bytes.as_slice()).map_err(write_err)?;
            let mut table = txn.open_table(LOGS).map_err(write_err)?;
            table
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }
}
