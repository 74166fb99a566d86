//! The cluster key material each agent holds: the keys it accepts on its
//! server port and the primary one it sends. Rotated cluster-wide with
//! `/v1/operator/keyring` (install a new key everywhere, make it primary
//! everywhere, remove the old one), each agent keeping its keyring in
//! `<data_dir>/keyring.json` (0600) so that a rotation survives restarts.

use std::path::PathBuf;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// One agent's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyring {
    /// The key sent with every request to other agents.
    pub primary: Option<String>,
    /// Every key accepted (the primary included).
    pub keys: Vec<String>,
}

/// An operation on the keyring, as `/v1/operator/keyring` fans it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOp {
    List,
    Install,
    Use,
    Remove,
}

/// What one agent answers to a keyring operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAnswer {
    pub keys: Vec<String>,
    pub primary: Option<String>,
    /// Why the operation failed on this agent (empty: it did not).
    pub error: String,
}

/// The base64 of a 16, 24 or 32 byte key, or why not.
pub fn check_key(key: &str) -> Result<(), String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|e| format!("illegal base64 data at input byte {}", bad_byte(&e)))?;
    if matches!(raw.len(), 16 | 24 | 32) {
        Ok(())
    } else {
        Err("key size must be 16, 24 or 32 bytes".into())
    }
}

fn bad_byte(e: &base64::DecodeError) -> usize {
    match e {
        base64::DecodeError::InvalidByte(i, _) => *i,
        base64::DecodeError::InvalidLastSymbol(i, _) => *i,
        base64::DecodeError::InvalidLength(n) => *n,
        base64::DecodeError::InvalidPadding => 0,
    }
}

impl Keyring {
    /// The keyring at start: the saved one, else the configured key.
    pub fn load(path: Option<&PathBuf>, configured: Option<String>) -> Result<Keyring, String> {
        if let Some(p) = path
            && let Ok(text) = std::fs::read_to_string(p)
        {
            return serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()));
        }
        Ok(match configured {
            Some(k) => Keyring {
                primary: Some(k.clone()),
                keys: vec![k],
            },
            None => Keyring::default(),
        })
    }

    /// Whether `given` is one of the keys (in time that does not depend on
    /// where it differs).
    pub fn accepts(&self, given: &[u8]) -> bool {
        self.keys
            .iter()
            .fold(false, |ok, k| same(given, k.as_bytes()) | ok)
    }

    /// Applies an operation; `Err` says why it is refused (nothing changed).
    pub fn apply(&mut self, op: KeyOp, key: &str) -> Result<bool, String> {
        if self.primary.is_none() {
            return Err(match op {
                KeyOp::List => "Keyring is empty (encryption not enabled)".into(),
                _ => "No keyring to modify (encryption not enabled)".into(),
            });
        }
        match op {
            KeyOp::List => Ok(false),
            KeyOp::Install => {
                check_key(key)?;
                if self.keys.iter().any(|k| k == key) {
                    return Ok(false);
                }
                self.keys.push(key.to_string());
                Ok(true)
            }
            KeyOp::Use => {
                if !self.keys.iter().any(|k| k == key) {
                    return Err("Requested key is not in the keyring".into());
                }
                let changed = self.primary.as_deref() != Some(key);
                self.primary = Some(key.to_string());
                Ok(changed)
            }
            KeyOp::Remove => {
                if self.primary.as_deref() == Some(key) {
                    return Err("Removing the primary key is not allowed".into());
                }
                let before = self.keys.len();
                self.keys.retain(|k| k != key);
                Ok(self.keys.len() != before)
            }
        }
    }

    /// Saves the keyring (0600, atomically).
    pub fn save(&self, path: &PathBuf) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Equal, in time that does not depend on where they differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    const K2: &str = "ZWTL+bgjHyQPhJRKcFe3ccirc2SFHmc/Nw67l8NQfdk=";

    #[test]
    fn rotation_rules() {
        let mut k = Keyring::load(None, Some(K1.into())).unwrap();
        assert!(k.accepts(K1.as_bytes()));
        assert!(!k.accepts(K2.as_bytes()));
        assert_eq!(
            k.apply(KeyOp::Use, K2),
            Err("Requested key is not in the keyring".into())
        );
        assert_eq!(k.apply(KeyOp::Install, K2), Ok(true));
        assert_eq!(k.apply(KeyOp::Install, K2), Ok(false));
        assert!(k.accepts(K2.as_bytes()));
        assert_eq!(
            k.apply(KeyOp::Remove, K1),
            Err("Removing the primary key is not allowed".into())
        );
        assert_eq!(k.apply(KeyOp::Use, K2), Ok(true));
        assert_eq!(k.apply(KeyOp::Remove, K1), Ok(true));
        assert_eq!(k.apply(KeyOp::Remove, K1), Ok(false));
        assert!(!k.accepts(K1.as_bytes()));
        assert_eq!(k.primary.as_deref(), Some(K2));
        assert_eq!(
            k.apply(KeyOp::Install, "c2hvcnQ="),
            Err("key size must be 16, 24 or 32 bytes".into())
        );
        assert!(
            k.apply(KeyOp::Install, "no!")
                .unwrap_err()
                .starts_with("illegal base64 data at input byte 2")
        );
        let mut none = Keyring::default();
        assert_eq!(
            none.apply(KeyOp::List, ""),
            Err("Keyring is empty (encryption not enabled)".into())
        );
    }

    #[test]
    fn saved_keyring_wins_over_the_configured_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let mut k = Keyring::load(Some(&path), Some(K1.into())).unwrap();
        k.apply(KeyOp::Install, K2).unwrap();
        k.apply(KeyOp::Use, K2).unwrap();
        k.save(&path).unwrap();
        let again = Keyring::load(Some(&path), Some(K1.into())).unwrap();
        assert_eq!(again, k);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
