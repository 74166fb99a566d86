//! Small helpers: PEM/DER conversion, hashing, colon-hex, time formatting, randomness.

use std::time::{Duration, SystemTime};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::CaError;

/// Every `CERTIFICATE` block of a PEM string, in order. Errors when there is none.
pub(crate) fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError::Pem(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(CaError::Pem("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// All certificates of several PEM strings (each may hold more than one).
pub(crate) fn certs_from_pems(pems: &[String]) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let mut out = Vec::new();
    for p in pems {
        out.extend(certs_from_pem(p)?);
    }
    Ok(out)
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) of a PEM string.
pub(crate) fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, CaError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| CaError::Pem(format!("private key PEM: {e}")))
}

/// The first `CERTIFICATE REQUEST` block of a PEM string.
pub(crate) fn csr_from_pem(pem: &str) -> Result<CertificateSigningRequestDer<'static>, CaError> {
    CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| CaError::InvalidCsr(format!("CSR PEM: {e}")))
}

/// Consul's `connect.HexString`: lower-case hex bytes joined by `:`.
pub fn colon_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// SHA-256 of `data` (Consul's `connect.KeyId` hashes the DER SubjectPublicKeyInfo with it).
pub(crate) fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

/// SHA-1 of `data` (Consul's `CalculateCertFingerprint`, used for `CARoot.ID`).
pub(crate) fn sha1(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .to_vec()
}

fn random_u64() -> Result<u64, CaError> {
    let mut buf = [0u8; 8];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| CaError::Crypto("system random number generator failed".into()))?;
    Ok(u64::from_le_bytes(buf))
}

/// A random, positive, non-zero 63-bit serial number.
pub(crate) fn random_serial() -> Result<u64, CaError> {
    loop {
        let v = random_u64()? & 0x7fff_ffff_ffff_ffff;
        if v != 0 {
            return Ok(v);
        }
    }
}

/// Minimal big-endian bytes of a serial (what Go's `big.Int.Bytes()` returns).
pub(crate) fn serial_bytes(serial: u64) -> Vec<u8> {
    let b = serial.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(7);
    b[first..].to_vec()
}

/// Consul's `CompactUID`: 8 characters of base36 randomness.
pub(crate) fn compact_uid() -> Result<String, CaError> {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut v = random_u64()?;
    let mut s = Vec::new();
    while v > 0 {
        s.push(DIGITS[(v % 36) as usize]);
        v /= 36;
    }
    s.reverse();
    s.truncate(8);
    Ok(String::from_utf8(s).unwrap_or_default())
}

/// Current time, whole seconds (X.509 times carry no fractions).
pub(crate) fn now_utc() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

pub(crate) fn to_time_duration(d: Duration) -> Result<time::Duration, CaError> {
    time::Duration::try_from(d).map_err(|_| CaError::Config(format!("duration {d:?} too large")))
}

/// RFC 3339 in UTC, like Go's `time.Time` JSON encoding of a certificate time
/// (`2018-05-25T21:39:23Z`).
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| CaError::Config(format!("bad time {s:?}: {e}")))
}

pub(crate) fn system_time_to_offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

/// Appends `pem` to `out`, making sure the result ends with a newline (Consul's
/// `lib.EnsureTrailingNewline` when it concatenates a chain).
pub(crate) fn push_pem(out: &mut String, pem: &str) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(pem);
    if !out.ends_with('\n') {
        out.push('\n');
    }
}

/// Reads a PEM file (CAFile, CertFile, KeyFile of a terminating gateway).
pub fn read_pem_file(path: impl AsRef<std::path::Path>) -> Result<String, CaError> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A key pair from PEM: PKCS#8 (`PRIVATE KEY`), or a P-256 key in SEC1 form
/// (`EC PRIVATE KEY`, what OpenSSL and Consul's `tls ca create` write),
/// which is wrapped in PKCS#8 first (the signing backend reads only that).
pub(crate) fn key_pair_from_pem(pem: &str) -> Result<rcgen::KeyPair, String> {
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(PrivateKeyDer::Sec1(sec1)) => {
            let pkcs8 = p256_sec1_to_pkcs8(sec1.secret_sec1_der());
            rcgen::KeyPair::try_from(pkcs8.as_slice())
                .map_err(|e| format!("EC private key (P-256 expected): {e}"))
        }
        _ => rcgen::KeyPair::from_pem(pem).map_err(|e| e.to_string()),
    }
}

/// `PrivateKeyInfo { version 0, id-ecPublicKey with prime256v1, sec1 }`.
fn p256_sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    fn der_len(n: usize, out: &mut Vec<u8>) {
        if n < 0x80 {
            out.push(n as u8);
        } else if n < 0x100 {
            out.extend([0x81, n as u8]);
        } else {
            out.extend([0x82, (n >> 8) as u8, n as u8]);
        }
    }
    const VERSION: [u8; 3] = [0x02, 0x01, 0x00];
    // SEQUENCE { OID 1.2.840.10045.2.1, OID 1.2.840.10045.3.1.7 }
    const ALGORITHM: [u8; 21] = [
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut octets = vec![0x04];
    der_len(sec1.len(), &mut octets);
    octets.extend_from_slice(sec1);
    let mut out = vec![0x30];
    der_len(VERSION.len() + ALGORITHM.len() + octets.len(), &mut out);
    out.extend_from_slice(&VERSION);
    out.extend_from_slice(&ALGORITHM);
    out.extend_from_slice(&octets);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_serial() {
        assert_eq!(colon_hex(&[0x08, 0x2a, 0xff]), "08:2a:ff");
        assert_eq!(colon_hex(&[]), "");
        assert_eq!(serial_bytes(8), vec![8]);
        assert_eq!(serial_bytes(0x0102), vec![1, 2]);
        assert_eq!(serial_bytes(0), vec![0]);
        for _ in 0..50 {
            let s = random_serial().unwrap();
            assert!(s > 0 && s < (1 << 63));
            let uid = compact_uid().unwrap();
            assert!(!uid.is_empty() && uid.len() <= 8);
            assert!(
                uid.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
            );
        }
    }

    #[test]
    fn rfc3339() {
        let t = parse_rfc3339("2018-05-25T21:39:23Z").unwrap();
        assert_eq!(format_rfc3339(t), "2018-05-25T21:39:23Z");
    }
}
