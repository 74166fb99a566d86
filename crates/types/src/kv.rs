//! Key/value and session types.

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A stored key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvEntry {
    pub lock_index: u64,
    pub key: String,
    pub flags: u64,
    #[serde(with = "b64_opt")]
    pub value: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Serde for base64 `Value` fields (`null` when empty).
pub mod b64_opt {
    use super::*;

    /// Serialize as base64 or null.
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) if !b.is_empty() => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
            }
            _ => s.serialize_none(),
        }
    }

    /// Deserialize from base64 or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Session behaviours.
pub mod behavior {
    /// Release held locks when the session is invalidated.
    pub const RELEASE: &str = "release";
    /// Delete held keys when the session is invalidated.
    pub const DELETE: &str = "delete";
}

/// A session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Session {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub node: String,
    /// Lock delay in nanoseconds (Go's `time.Duration` JSON form).
    pub lock_delay: u64,
    pub behavior: String,
    #[serde(rename = "TTL")]
    pub ttl: String,
    pub node_checks: Option<Vec<String>>,
    pub service_checks: Option<Vec<ServiceCheck>>,
    /// Deprecated spelling of `NodeChecks`, kept when a client sent it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Session {
    /// Every check the session depends on.
    pub fn all_checks(&self) -> impl Iterator<Item = &str> {
        self.checks
            .iter()
            .map(String::as_str)
            .chain(self.node_checks.iter().flatten().map(String::as_str))
            .chain(self.service_checks.iter().flatten().map(|c| c.id.as_str()))
    }
}

/// A service check a session depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheck {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
}
