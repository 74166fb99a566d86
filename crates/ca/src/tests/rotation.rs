//! Root rotation: the rule documented in `crate::rotation`, checked with webpki and real
//! handshakes.

use super::*;
use crate::rotation::{active_root, prune_roots, rotate, trust_bundle};
use crate::tls::{ClientAuth, client_config, peer_service_id, server_config};
use crate::{cert_info, cross_sign, verify_leaf};

struct Rotated {
    old_root: CaRoot,
    new_root: CaRoot,
    roots: Vec<CaRoot>,
    old_leaf: Leaf,
    new_leaf: Leaf,
    new_signer: CaSigner,
}

fn rotated() -> Rotated {
    let (old_root, old_signer) = ca();
    let old_leaf = leaf(&old_root, &old_signer, &svc("web"));
    let (candidate, new_signer) = ca();
    let roots = rotate(
        std::slice::from_ref(&old_root),
        Some(&old_signer),
        candidate,
        now(),
    )
    .unwrap();
    let new_root = active_root(&roots).unwrap().clone();
    let new_leaf = leaf(&new_root, &new_signer, &svc("web"));
    Rotated {
        old_root,
        new_root,
        roots,
        old_leaf,
        new_leaf,
        new_signer,
    }
}

#[test]
fn rotate_builds_the_expected_root_set() {
    let r = rotated();
    assert_eq!(r.roots.len(), 2);
    assert!(!r.roots[0].active);
    assert_eq!(r.roots[0].id, r.old_root.id);
    assert!(r.roots[0].rotated_out_at.is_some());
    assert!(r.roots[1].active && r.roots[1].rotated_out_at.is_none());
    assert_eq!(r.new_root.intermediate_certs.len(), 1);
    assert_eq!(
        trust_bundle(&r.roots),
        vec![
            r.old_root.root_cert_pem.clone(),
            r.new_root.root_cert_pem.clone()
        ]
    );

    // The cross-signed certificate: new root's subject/key id, old root as issuer, 7 days.
    let xc = cert_info(&r.new_root.intermediate_certs[0]).unwrap();
    let new = cert_info(&r.new_root.root_cert_pem).unwrap();
    let old = cert_info(&r.old_root.root_cert_pem).unwrap();
    assert!(xc.is_ca);
    assert_eq!(xc.subject_cn, new.subject_cn);
    assert_eq!(xc.issuer_cn, old.subject_cn);
    assert_eq!(xc.subject_key_id, new.subject_key_id);
    assert_eq!(xc.authority_key_id, old.subject_key_id);
    assert_eq!(xc.uris, new.uris);
    assert_ne!(xc.serial, new.serial);
    let life = crate::parse_rfc3339(&xc.not_after).unwrap()
        - crate::parse_rfc3339(&xc.not_before).unwrap();
    assert_eq!(life, time::Duration::days(7));

    // Leaves of the new root carry the cross-signed certificate after the leaf.
    assert_eq!(
        crate::util::certs_from_pem(&r.new_leaf.cert_pem)
            .unwrap()
            .len(),
        2
    );
    assert!(
        r.new_leaf
            .cert_pem
            .ends_with(&r.new_root.intermediate_certs[0])
    );
}

#[test]
fn leaves_of_both_generations_verify_during_rotation() {
    let r = rotated();
    let web = svc("web");
    let bundle = trust_bundle(&r.roots);
    let old_only = vec![r.old_root.root_cert_pem.clone()];
    let new_only = vec![r.new_root.root_cert_pem.clone()];

    // Peers with the full bundle accept both generations.
    assert_eq!(
        verify_leaf(&bundle, &r.old_leaf.cert_pem, now()).unwrap(),
        web
    );
    assert_eq!(
        verify_leaf(&bundle, &r.new_leaf.cert_pem, now()).unwrap(),
        web
    );
    // A peer that has not yet seen the new root accepts new leaves through the cross-signed
    // intermediate...
    assert_eq!(
        verify_leaf(&old_only, &r.new_leaf.cert_pem, now()).unwrap(),
        web
    );
    // ...but not without it.
    let bare = {
        let end = "-----END CERTIFICATE-----";
        let i = r.new_leaf.cert_pem.find(end).unwrap() + end.len();
        r.new_leaf.cert_pem[..i].to_string()
    };
    assert!(verify_leaf(&old_only, &bare, now()).is_err());
    // A peer that only knows the new root accepts new leaves, not old ones: the old root must
    // stay in the bundle until its leaves have expired.
    assert_eq!(
        verify_leaf(&new_only, &r.new_leaf.cert_pem, now()).unwrap(),
        web
    );
    assert!(verify_leaf(&new_only, &r.old_leaf.cert_pem, now()).is_err());
    // Once the cross-signed certificate has expired (7 days) the old-root-only path is gone.
    assert!(verify_leaf(&old_only, &r.new_leaf.cert_pem, now() + hours(24 * 8)).is_err());
}

#[test]
fn pruning_follows_twice_the_leaf_ttl() {
    let r = rotated();
    let ttl = DEFAULT_LEAF_TTL;
    let kept = prune_roots(&r.roots, ttl, now() + hours(1)).unwrap();
    assert_eq!(kept.len(), 2);
    let kept = prune_roots(&r.roots, ttl, now() + hours(143)).unwrap();
    assert_eq!(kept.len(), 2);
    let kept = prune_roots(&r.roots, ttl, now() + hours(145)).unwrap();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].active);
    assert_eq!(kept[0].id, r.new_root.id);
    // The active root is never pruned.
    let kept = prune_roots(&kept, ttl, now() + hours(100_000)).unwrap();
    assert_eq!(kept.len(), 1);
}

#[test]
fn rotation_without_cross_signing_and_duplicates() {
    let (old_root, _) = ca();
    let (new_root, _) = ca();
    let roots = rotate(
        std::slice::from_ref(&old_root),
        None,
        new_root.clone(),
        now(),
    )
    .unwrap();
    assert!(active_root(&roots).unwrap().intermediate_certs.is_empty());
    assert!(rotate(&roots, None, new_root, now()).is_err());
}

#[test]
fn a_second_rotation_chains_again() {
    let r = rotated();
    let (third, third_signer) = ca();
    let old_signer_of_second = CaSigner {
        key_pem: r.new_signer.key_pem.clone(),
        cert_pem: r.new_root.root_cert_pem.clone(),
    };
    let roots = rotate(&r.roots, Some(&old_signer_of_second), third, now()).unwrap();
    assert_eq!(roots.iter().filter(|x| x.active).count(), 1);
    let active = active_root(&roots).unwrap();
    // The cross-signed cert of the third root is issued by the second one.
    let xc = cert_info(&active.intermediate_certs[0]).unwrap();
    assert_eq!(
        xc.issuer_cn,
        cert_info(&r.new_root.root_cert_pem).unwrap().subject_cn
    );
    let l = leaf(active, &third_signer, &svc("web"));
    assert!(
        verify_leaf(
            std::slice::from_ref(&r.new_root.root_cert_pem),
            &l.cert_pem,
            now()
        )
        .is_ok()
    );
    assert!(verify_leaf(&trust_bundle(&roots), &l.cert_pem, now()).is_ok());
    // cross_sign by itself is deterministic in shape.
    let again = cross_sign(&old_signer_of_second, active).unwrap();
    assert_eq!(cert_info(&again).unwrap().subject_key_id, xc.subject_key_id);
}

/// mTLS during a rotation: a server with a new-root leaf (leaf + cross-signed cert) is
/// accepted by a client that still trusts only the old root, and a client with an old-root
/// leaf is accepted by a server that trusts the bundle.
#[tokio::test]
async fn handshakes_across_generations() {
    let r = rotated();
    let db = svc("db");
    let db_leaf = leaf(&r.new_root, &r.new_signer, &db);
    let bundle = trust_bundle(&r.roots);
    let old_only = vec![r.old_root.root_cert_pem.clone()];

    let server = server_config(
        &db_leaf.cert_pem,
        &db_leaf.private_key_pem,
        &bundle,
        ClientAuth::Required,
        &Default::default(),
    )
    .unwrap();
    let client = client_config(
        &r.old_leaf.cert_pem,
        &r.old_leaf.private_key_pem,
        &old_only,
        db.clone(),
        &Default::default(),
    )
    .unwrap();
    let (srv, cli) = handshake(server, client, &db.sni()).await;
    let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
    ping_pong(&mut srv, &mut cli).await;
    assert_eq!(peer_service_id(srv.get_ref().1), Some(svc("web")));
    assert_eq!(peer_service_id(cli.get_ref().1), Some(db));
}
