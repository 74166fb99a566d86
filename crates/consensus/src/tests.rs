//! openraft's storage conformance suite against the redb log store and the
//! state machine (with the real `meshgate-state` as the host).

use std::sync::Arc;

use meshgate_state::{Request, State};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use parking_lot::RwLock;

use crate::log_store::{Durable, LogStore};
use crate::state_machine::StateMachine;
use crate::{Host, Response, TypeConfig};

/// The pure state, as a host.
#[derive(Default)]
struct MemHost(RwLock<State>);

impl Host for MemHost {
    fn apply(&self, index: u64, req: &Request) -> Response {
        self.0.write().apply(index, req)
    }
    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0.read().snapshot()).unwrap_or_default()
    }
    fn restore(&self, data: &[u8]) -> Result<(), String> {
        let s = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        *self.0.write() = State::from_snapshot(&s)?;
        Ok(())
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| -> StorageError<u64> {
            openraft::StorageIOError::write_logs(&e).into()
        })?;
        let db = Arc::new(
            redb::Database::create(dir.path().join("raft.redb")).map_err(
                |e| -> StorageError<u64> {
                    openraft::StorageIOError::write_logs(&std::io::Error::other(e.to_string()))
                        .into()
                },
            )?,
        );
        // As server 0, the suite's node: its appends under its own
        // committed vote take the leader's path. The suite applies entries
        // it never appended, so its state machine does not wait for the log.
        let log = LogStore::new(db.clone(), 0)?;
        let sm = StateMachine::open(Arc::new(MemHost::default()), db, Durable::at(u64::MAX))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn storage_conformance_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}

/// A committed entry is applied only once it is on this server's disk (a
/// leader's followers can commit an entry while the leader still writes it).
#[tokio::test]
async fn entries_are_applied_only_once_durable() {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(redb::Database::create(dir.path().join("raft.redb")).expect("db"));
    let durable = Durable::at(5);
    let mut sm = StateMachine::open(Arc::new(MemHost::default()), db, durable.clone())
        .expect("state machine");
    let entry = |index| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Blank,
    };
    sm.apply([entry(4)]).await.expect("index 4 is durable");
    let applying = tokio::spawn(async move {
        let r = sm.apply([entry(5), entry(6)]).await.map(|r| r.len());
        (sm, r)
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !applying.is_finished(),
        "applied before index 6 was durable"
    );
    durable.set(7);
    let (mut sm, r) = tokio::time::timeout(std::time::Duration::from_secs(5), applying)
        .await
        .expect("applied once durable")
        .expect("task");
    assert_eq!(r.expect("apply"), 2);
    let (applied, _) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied.map(|l| l.index), Some(6));
}
