//! `/v1/txn` request and response types.

use serde::{Deserialize, Serialize};

use crate::catalog::{HealthCheck, Node, NodeService};
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

impl TxnKvOp {
    /// Whether the KV operation only reads.
    pub fn is_read(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "get"
                | "get-or-empty"
                | "get-tree"
                | "check-index"
                | "check-session"
                | "check-not-exists"
        )
    }
}

/// One operation of a transaction as the API receives it: the KV part
/// typed, the catalog parts kept as JSON until the endpoint reads them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnOp {
    #[serde(rename = "KV")]
    pub kv: Option<TxnKvOp>,
    pub node: Option<serde_json::Value>,
    pub service: Option<serde_json::Value>,
    pub check: Option<serde_json::Value>,
}

/// A node operation: `set`, `cas`, `get`, `delete`, `delete-cas` (the
/// node's `ModifyIndex` is the CAS index).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnNodeOp {
    pub verb: String,
    pub node: Node,
}

/// A service operation on one node's instance: `set`, `cas`, `get`,
/// `delete`, `delete-cas` (the service's `ModifyIndex` is the CAS index).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnServiceOp {
    pub verb: String,
    pub node: String,
    pub service: NodeService,
}

/// A health check operation: `set`, `cas`, `get`, `delete`, `delete-cas`
/// (the check's `ModifyIndex` is the CAS index).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnCheckOp {
    pub verb: String,
    pub check: HealthCheck,
}

/// One operation of a transaction, read and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxnOperation {
    #[serde(rename = "KV")]
    Kv(TxnKvOp),
    Node(TxnNodeOp),
    Service(TxnServiceOp),
    Check(TxnCheckOp),
}

impl TxnOperation {
    /// Whether the operation only reads.
    pub fn is_read(&self) -> bool {
        match self {
            TxnOperation::Kv(o) => o.is_read(),
            TxnOperation::Node(o) => o.verb == "get",
            TxnOperation::Service(o) => o.verb == "get",
            TxnOperation::Check(o) => o.verb == "get",
        }
    }
}

/// One result of a successful transaction: exactly one of its parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TxnResult {
    #[serde(rename = "KV", default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvEntry>,
    #[serde(rename = "Node", default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Node>,
    #[serde(rename = "Service", default, skip_serializing_if = "Option::is_none")]
    pub service: Option<NodeService>,
    #[serde(rename = "Check", default, skip_serializing_if = "Option::is_none")]
    pub check: Option<HealthCheck>,
}

impl TxnResult {
    /// A KV result.
    pub fn kv(e: KvEntry) -> TxnResult {
        TxnResult {
            kv: Some(e),
            ..TxnResult::default()
        }
    }
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnResponse {
    #[serde(rename = "Results")]
    pub results: Option<Vec<TxnResult>>,
    #[serde(rename = "Errors")]
    pub errors: Option<Vec<TxnError>>,
}
