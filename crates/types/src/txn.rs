//! `/v1/txn` request and response types.

use serde::{Deserialize, Serialize};

use crate::kv::{KvEntry, b64_opt};

/// One KV operation in a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnKvOp {
    pub verb: String,
    pub key: String,
    #[serde(with = "b64_opt")]
    pub value: Option<Vec<u8>>,
    pub flags: u64,
    pub index: u64,
    pub session: String,
}

/// One operation of a transaction. Only KV operations are applied by meshgate's
/// transaction endpoint today; Node/Service/Check operations are refused with a
/// clear error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnOp {
    #[serde(rename = "KV")]
    pub kv: Option<TxnKvOp>,
    pub node: Option<serde_json::Value>,
    pub service: Option<serde_json::Value>,
    pub check: Option<serde_json::Value>,
}

/// One result of a successful transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResult {
    #[serde(rename = "KV")]
    pub kv: KvEntry,
}

/// One error of a failed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    #[serde(rename = "OpIndex")]
    pub op_index: usize,
    #[serde(rename = "What")]
    pub what: String,
}

/// The transaction response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    #[serde(rename = "Results")]
    pub results: Option<Vec<TxnResult>>,
    #[serde(rename = "Errors")]
    pub errors: Option<Vec<TxnError>>,
}
