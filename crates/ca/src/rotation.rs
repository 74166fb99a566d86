//! Root rotation and pruning, as Consul's leader does it (`agent/consul/leader_connect_ca.go`
//! `UpdateConfiguration`, `agent/consul/leader_connect.go` `pruneCARoots`).
//!
//! # The rule
//!
//! 1. A new root `N` is generated ([`crate::new_root`]) while root `O` is active.
//! 2. `O`'s key cross-signs `N`'s certificate ([`crate::cross_sign`]); the result `X` has `N`'s
//!    subject, key and SKID, but is issued by `O` (issuer = `O`'s subject, AKID = `O`'s SKID)
//!    and lives [`crate::CROSS_SIGN_TTL`] (7 days). `X` is put **first** in
//!    `N.intermediate_certs`.
//! 3. In one state-store write: `O.active = false`, `O.rotated_out_at = now`; `N.active = true`.
//!    `/v1/connect/ca/roots` then returns **both** roots in `Roots`, with
//!    `ActiveRootID = N.id`; the `?pem` form concatenates every `RootCert` (not the
//!    intermediates).
//! 4. From now on leaves are signed by `N`'s key and served as `CertPEM = leaf + X`
//!    ([`crate::sign_leaf`] appends the active root's `intermediate_certs`). Therefore:
//!    * a peer that already has the new bundle `[O, N]` validates new leaves directly to `N`,
//!      and leaves still signed by `O` directly to `O`;
//!    * a peer that still only trusts `[O]` validates a new leaf via `leaf → X → O`;
//!    * a peer that only trusts `[N]` (a fresh agent) cannot validate leaves still signed by
//!      `O` — which is why `O` stays in the bundle.
//! 5. `O` is pruned once it has been inactive for more than 2 × `LeafCertTTL`
//!    ([`prune_roots`]): by then every leaf it signed has expired (agents renew well before
//!    expiry and re-issue as soon as they see the new active root).
//!
//! The tests in `src/tests/rotation.rs` exercise exactly these cases with webpki and `openssl`.

use std::time::{Duration, SystemTime};

use crate::CaError;
use crate::ca::{CaRoot, CaSigner, cross_sign};
use crate::util::{format_rfc3339, parse_rfc3339, system_time_to_offset, to_time_duration};

/// The active root of a set (the one whose `ID` is `ActiveRootID`).
pub fn active_root(roots: &[CaRoot]) -> Option<&CaRoot> {
    roots.iter().find(|r| r.active)
}

/// Every root certificate of the set: the trust bundle for verifiers and the body of
/// `/v1/connect/ca/roots?pem=true` (concatenate them).
pub fn trust_bundle(roots: &[CaRoot]) -> Vec<String> {
    roots.iter().map(|r| r.root_cert_pem.clone()).collect()
}

/// Makes `new_root` the active root (steps 2–3 of the module docs).
///
/// When `old_signer` is given (the currently active root's key) the new root is cross-signed
/// and the cross-signed certificate is put first in `new_root.intermediate_certs`; `None` is
/// Consul's `ForceWithoutCrossSigning`. Returns the complete new root set: all previous roots
/// (the active one now inactive with `rotated_out_at = now`) followed by `new_root`.
pub fn rotate(
    roots: &[CaRoot],
    old_signer: Option<&CaSigner>,
    mut new_root: CaRoot,
    now: SystemTime,
) -> Result<Vec<CaRoot>, CaError> {
    if roots.iter().any(|r| r.id == new_root.id) {
        return Err(CaError::Config(format!(
            "root {} is already in the root set",
            new_root.id
        )));
    }
    if let Some(old) = old_signer {
        let xc = cross_sign(old, &new_root)?;
        new_root.intermediate_certs.insert(0, xc);
    }
    let stamp = format_rfc3339(system_time_to_offset(now));
    let mut out: Vec<CaRoot> = roots
        .iter()
        .cloned()
        .map(|mut r| {
            if r.active {
                r.active = false;
                r.rotated_out_at = Some(stamp.clone());
            }
            r
        })
        .collect();
    new_root.active = true;
    new_root.rotated_out_at = None;
    out.push(new_root);
    Ok(out)
}

/// Drops inactive roots that were rotated out more than `2 × leaf_ttl` before `now`
/// (Consul's `pruneCARoots`). Roots without `rotated_out_at` are kept.
pub fn prune_roots(
    roots: &[CaRoot],
    leaf_ttl: Duration,
    now: SystemTime,
) -> Result<Vec<CaRoot>, CaError> {
    let now = system_time_to_offset(now);
    let keep_for = to_time_duration(leaf_ttl)? * 2;
    let mut out = Vec::with_capacity(roots.len());
    for r in roots {
        if !r.active
            && let Some(at) = &r.rotated_out_at
            && now - parse_rfc3339(at)? > keep_for
        {
            continue;
        }
        out.push(r.clone());
    }
    Ok(out)
}
