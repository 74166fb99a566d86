//! openraft's storage conformance suite against the redb log store and the
//! state machine (with the real `meshgate-state` as the host).

use std::sync::Arc;

use meshgate_state::{Request, State};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use parking_lot::RwLock;

use crate::log_store::LogStore;
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
        let sm = StateMachine::open(Arc::new(MemHost::default()), db.clone())?;
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn storage_conformance_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}
