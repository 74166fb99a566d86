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

/// A one-shot HTTP server on loopback: reads one request, then answers
/// `answer` (raw bytes) or, when `None`, closes the connection unanswered.
async fn one_answer(answer: Option<&'static str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut c, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // The headers and the (small, length-delimited) body.
        loop {
            let n = c.read(&mut buf).await.unwrap_or(0);
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_lowercase();
            let done = text.find("\r\n\r\n").is_some_and(|end| {
                let len = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                got.len() >= end + 4 + len
            });
            if n == 0 || done {
                break;
            }
        }
        if let Some(a) = answer {
            let _ = c.write_all(a.as_bytes()).await;
        }
    });
    addr
}

fn http_answer(status: &str, body: &str) -> &'static str {
    Box::leak(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    )
}

/// A forwarded write is sent again only when it certainly was not applied:
/// a refused connection or the other server's own "not applied"; a lost
/// answer (the leader killed after it committed) must not be retried, nor
/// a request the other server refused outright.
#[tokio::test]
async fn a_forwarded_write_is_retried_only_when_not_applied() {
    use crate::{WriteFailure, send_write};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let req = Request {
        now_ms: 1,
        cmd: meshgate_state::Command::KvSet {
            key: "k".into(),
            value: Some(b"v".to_vec()),
            flags: 0,
            op: meshgate_state::KvSetOp::Set,
        },
    };
    let send = |addr: String| {
        let http = http.clone();
        let req = req.clone();
        async move {
            send_write(
                http.post(format!("http://{addr}/v1/internal/raft/write")),
                &addr,
                &req,
            )
            .await
        }
    };
    // Nobody listens.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    assert!(matches!(
        send(closed).await,
        Err(WriteFailure::NotApplied(_))
    ));
    // Refused before the handler (the cluster key): not applied, and no
    // use sending again.
    let a = one_answer(Some(http_answer("403 Forbidden", "wrong cluster key"))).await;
    assert!(
        matches!(send(a).await, Err(WriteFailure::Refused(e)) if e.ends_with("403 Forbidden: wrong cluster key"))
    );
    // The request arrived and the connection closed without an answer.
    let a = one_answer(None).await;
    assert!(matches!(send(a).await, Err(WriteFailure::Uncertain(_))));
    // The other server says which.
    let a = one_answer(Some(http_answer(
        "200 OK",
        r#"{"Err":{"NotApplied":"No cluster leader"}}"#,
    )))
    .await;
    assert!(matches!(send(a).await, Err(WriteFailure::NotApplied(_))));
    let a = one_answer(Some(http_answer(
        "200 OK",
        r#"{"Err":{"Uncertain":"timed out"}}"#,
    )))
    .await;
    assert!(matches!(send(a).await, Err(WriteFailure::Uncertain(e)) if e == "timed out"));
    // An older server's plain message cannot say.
    let a = one_answer(Some(http_answer(
        "200 OK",
        r#"{"Err":"No cluster leader"}"#,
    )))
    .await;
    assert!(matches!(send(a).await, Err(WriteFailure::Uncertain(_))));
    // And what a server says when it cannot order.
    assert!(matches!(
        WriteFailure::from(crate::ConsensusError::NoLeader),
        WriteFailure::NotApplied(_)
    ));
    assert!(matches!(
        WriteFailure::from(crate::ConsensusError::Timeout),
        WriteFailure::Uncertain(_)
    ));
}
