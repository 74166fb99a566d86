//! The key/value store, its locks and tombstones.

use std::ops::Bound;

use meshgate_types::kv::KvEntry;
use serde::{Deserialize, Serialize};

use crate::{ApplyError, State, Table};

/// The flavours of a KV write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvSetOp {
    /// Unconditional write.
    Set,
    /// Write only if the key's ModifyIndex equals this (0: only if absent).
    Cas(u64),
    /// Write and take the key's lock for this session.
    Lock(String),
    /// Write and release the key's lock held by this session.
    Unlock(String),
}

/// The range of keys starting with `prefix`.
pub(crate) fn prefix_range(prefix: &str) -> (Bound<String>, Bound<String>) {
    (Bound::Included(prefix.to_string()), prefix_upper(prefix))
}

fn prefix_upper(prefix: &str) -> Bound<String> {
    // The smallest string greater than every string starting with `prefix`:
    // increment the last char that can be incremented.
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        // Skip the surrogate range.
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Bound::Excluded(chars.into_iter().collect());
        }
    }
    Bound::Unbounded
}

impl State {
    /// Whether a lock-delay keeps `key` from being locked at time `now`.
    pub fn lock_delayed(&self, key: &str, now: u64) -> bool {
        self.lock_delays.get(key).is_some_and(|until| *until > now)
    }

    pub(crate) fn kv_set(
        &mut self,
        idx: u64,
        now: u64,
        key: &str,
        value: Option<Vec<u8>>,
        flags: u64,
        op: &KvSetOp,
    ) -> Result<bool, ApplyError> {
        let existing = self.kv.get(key);
        let mut entry = KvEntry {
            lock_index: 0,
            key: key.to_string(),
            flags,
            value: value.filter(|v| !v.is_empty()),
            session: String::new(),
            create_index: idx,
            modify_index: idx,
        };
        if let Some(e) = existing {
            entry.create_index = e.create_index;
            entry.session = e.session.clone();
            // Lock operations keep the lock count; a plain write (or CAS) takes it
            // from the request, which over HTTP is always 0 (Consul does the same).
            if matches!(op, KvSetOp::Lock(_) | KvSetOp::Unlock(_)) {
                entry.lock_index = e.lock_index;
            }
        }
        match op {
            KvSetOp::Set => {}
            KvSetOp::Cas(c) => {
                let ok = match existing {
                    None => *c == 0,
                    Some(e) => *c != 0 && e.modify_index == *c,
                };
                if !ok {
                    return Ok(false);
                }
            }
            KvSetOp::Lock(session) => {
                if session.is_empty() {
                    return Err(ApplyError::Invalid("missing session".into()));
                }
                if !self.sessions.contains_key(session) {
                    return Err(ApplyError::Invalid(format!(
                        "invalid session \"{session}\""
                    )));
                }
                if self.lock_delayed(key, now) {
                    return Ok(false);
                }
                match existing {
                    Some(e) if e.session == *session => {}
                    Some(e) if !e.session.is_empty() => return Ok(false),
                    _ => {
                        entry.lock_index += 1;
                        entry.session = session.clone();
                    }
                }
            }
            KvSetOp::Unlock(session) => match existing {
                Some(e) if e.session == *session => entry.session.clear(),
                _ => return Ok(false),
            },
        }
        if let Some(e) = existing {
            let same = e.lock_index == entry.lock_index
                && e.flags == entry.flags
                && e.value == entry.value
                && e.session == entry.session;
            if same {
                // Nothing changed: no write, the indexes stay.
                return Ok(true);
            }
        }
        self.tombstones.remove(key);
        self.kv.insert(key.to_string(), entry);
        self.touch(Table::Kv, idx);
        Ok(true)
    }

    pub(crate) fn kv_delete(
        &mut self,
        idx: u64,
        key: &str,
        recurse: bool,
        cas: Option<u64>,
    ) -> bool {
        if recurse {
            let keys: Vec<String> = self
                .kv
                .range::<String, _>(prefix_range(key))
                .map(|(k, _)| k.clone())
                .collect();
            if keys.is_empty() {
                return true;
            }
            for k in keys {
                self.kv.remove(&k);
                self.tombstones.insert(k, idx);
            }
            self.tombstones.insert(key.to_string(), idx);
            self.touch(Table::Kv, idx);
            return true;
        }
        match (self.kv.get(key), cas) {
            (None, _) => true,
            (Some(e), Some(c)) if e.modify_index != c => false,
            (Some(_), _) => {
                self.kv.remove(key);
                self.tombstones.insert(key.to_string(), idx);
                self.touch(Table::Kv, idx);
                true
            }
        }
    }

    // === queries ===

    /// One key. The index is the key's own (its last write or deletion), so that a
    /// blocking read of one key wakes only when that key changes.
    pub fn kv_get(&self, key: &str) -> (u64, Option<&KvEntry>) {
        let entry = self.kv.get(key);
        let idx = entry
            .map(|e| e.modify_index)
            .or_else(|| self.tombstones.get(key).copied())
            .unwrap_or(self.tables.kv);
        (idx, entry)
    }

    /// Every key under a prefix, sorted.
    pub fn kv_list(&self, prefix: &str) -> (u64, Vec<&KvEntry>) {
        let list: Vec<&KvEntry> = self
            .kv
            .range::<String, _>(prefix_range(prefix))
            .map(|(_, e)| e)
            .collect();
        (
            self.prefix_index(prefix, list.iter().map(|e| e.modify_index)),
            list,
        )
    }

    /// The keys under a prefix; with a separator, keys below the next separator
    /// are folded into one `prefix/sub/` entry.
    pub fn kv_keys(&self, prefix: &str, separator: &str) -> (u64, Vec<String>) {
        let mut out: Vec<String> = Vec::new();
        let mut max = 0;
        for (k, e) in self.kv.range::<String, _>(prefix_range(prefix)) {
            max = max.max(e.modify_index);
            let name = if separator.is_empty() {
                k.clone()
            } else {
                match k[prefix.len()..].find(separator) {
                    Some(pos) => k[..prefix.len() + pos + separator.len()].to_string(),
                    None => k.clone(),
                }
            };
            if out.last() != Some(&name) {
                out.push(name);
            }
        }
        (self.prefix_index(prefix, std::iter::once(max)), out)
    }

    fn prefix_index(&self, prefix: &str, modify: impl Iterator<Item = u64>) -> u64 {
        if prefix.is_empty() {
            return self.tables.kv;
        }
        let m = modify.max().unwrap_or(0);
        let t = self
            .tombstones
            .range::<String, _>(prefix_range(prefix))
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        match m.max(t) {
            0 => self.tables.kv,
            i => i,
        }
    }

    /// The number of tombstones kept (for tests and metrics).
    pub fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    /// The number of keys stored.
    pub fn kv_len(&self) -> usize {
        self.kv.len()
    }
}
