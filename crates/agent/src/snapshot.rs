//! The snapshot archive: a gzip-compressed tar with `meta.json`, `state.json`
//! and `SHA256SUMS` (the layout Consul's snapshots use, with meshgate's own
//! state encoding). Reading checks the checksums before anything is decoded.

use std::io::{Read, Write};

use meshgate_state::Snapshot;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What `meta.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Meta {
    #[serde(rename = "ID")]
    pub id: String,
    pub size: u64,
    pub index: u64,
    pub term: u64,
    pub version: u32,
    pub meshgate_version: String,
}

/// A failure to read an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the snapshot is not a gzip-compressed archive: {0}")]
    NotGzip(String),
    #[error("the snapshot archive is unreadable: {0}")]
    Tar(String),
    #[error("the snapshot archive lacks {0}")]
    Missing(&'static str),
    #[error("checksum mismatch for {0}: the snapshot is corrupt")]
    Checksum(String),
    #[error("the snapshot's state is unreadable: {0}")]
    Decode(String),
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds an archive of a snapshot taken at `index`.
pub fn write(snapshot: &Snapshot, now_ms: u64) -> Result<Vec<u8>, std::io::Error> {
    let state = serde_json::to_vec(snapshot)?;
    let meta = Meta {
        id: format!("1-{}-{now_ms}", snapshot.index),
        size: state.len() as u64,
        index: snapshot.index,
        term: 1,
        version: snapshot.version,
        meshgate_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let meta = serde_json::to_vec_pretty(&meta)?;
    let sums = format!(
        "{}  meta.json\n{}  state.json\n",
        hex(&Sha256::digest(&meta)),
        hex(&Sha256::digest(&state))
    );
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in [
        ("meta.json", meta.as_slice()),
        ("state.json", state.as_slice()),
        ("SHA256SUMS", sums.as_bytes()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(now_ms / 1000);
        h.set_cksum();
        tar.append_data(&mut h, name, data)?;
    }
    let gz = tar.into_inner()?;
    let mut out = gz.finish()?;
    out.flush()?;
    Ok(out)
}

/// Reads and verifies an archive.
pub fn read(bytes: &[u8]) -> Result<(Meta, Snapshot), ArchiveError> {
    if bytes.len() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b {
        return Err(ArchiveError::NotGzip("missing gzip header".into()));
    }
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .map_err(|e| ArchiveError::NotGzip(e.to_string()))?;
    let mut archive = tar::Archive::new(raw.as_slice());
    let (mut meta, mut state, mut sums) = (None, None, None);
    for entry in archive
        .entries()
        .map_err(|e| ArchiveError::Tar(e.to_string()))?
    {
        let mut entry = entry.map_err(|e| ArchiveError::Tar(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| ArchiveError::Tar(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| ArchiveError::Tar(e.to_string()))?;
        match name.as_str() {
            "meta.json" => meta = Some(data),
            "state.json" => state = Some(data),
            "SHA256SUMS" => sums = Some(data),
            _ => {}
        }
    }
    let meta = meta.ok_or(ArchiveError::Missing("meta.json"))?;
    let state = state.ok_or(ArchiveError::Missing("state.json"))?;
    let sums = sums.ok_or(ArchiveError::Missing("SHA256SUMS"))?;
    let sums = String::from_utf8_lossy(&sums);
    for (name, data) in [("meta.json", &meta), ("state.json", &state)] {
        let want = sums
            .lines()
            .find_map(|l| l.strip_suffix(&format!("  {name}")))
            .ok_or_else(|| ArchiveError::Checksum(name.into()))?;
        if hex(&Sha256::digest(data)) != want {
            return Err(ArchiveError::Checksum(name.into()));
        }
    }
    let meta: Meta =
        serde_json::from_slice(&meta).map_err(|e| ArchiveError::Decode(e.to_string()))?;
    let snapshot: Snapshot =
        serde_json::from_slice(&state).map_err(|e| ArchiveError::Decode(e.to_string()))?;
    Ok((meta, snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let snap = Snapshot {
            version: meshgate_state::SNAPSHOT_VERSION,
            index: 7,
            ..Default::default()
        };
        let bytes = write(&snap, 1_000_000).unwrap();
        let (meta, back) = read(&bytes).unwrap();
        assert_eq!(back, snap);
        assert_eq!(meta.index, 7);
        assert!(matches!(read(b"not gzip"), Err(ArchiveError::NotGzip(_))));
        let mut broken = bytes.clone();
        let n = broken.len();
        broken[n / 2] ^= 0xff;
        assert!(read(&broken).is_err());
        assert!(read(&bytes[..bytes.len() / 2]).is_err());
    }
}
