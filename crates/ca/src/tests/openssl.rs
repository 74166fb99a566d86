//! Independent verification with the system `openssl` binary. These tests never skip: without
//! `openssl` they fail and say how to install it.

use std::path::Path;
use std::process::{Command, Output};

use super::*;
use crate::rotation;

/// Runs `openssl <args>` in `dir`. Panics (test failure) when the binary is missing.
fn openssl(dir: &Path, args: &[&str]) -> Output {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the `openssl` binary is required by the meshgate-ca tests but was not found: \
             install it with `apt-get install openssl`"
        ),
        Err(e) => panic!("running openssl {args:?}: {e}"),
    }
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = openssl(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).unwrap();
}

/// First certificate of a PEM chain.
fn first_cert(pem: &str) -> String {
    let end = "-----END CERTIFICATE-----";
    let i = pem.find(end).unwrap() + end.len();
    format!("{}\n", &pem[..i])
}

#[test]
fn openssl_verifies_root_and_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, signer) = ca();
    let web = svc("web");
    let leaf = leaf(&root, &signer, &web);
    write(d, "root.pem", &root.root_cert_pem);
    write(d, "leaf.pem", &leaf.cert_pem);
    write(d, "key.pem", &leaf.private_key_pem);

    let out = ok(d, &["verify", "-CAfile", "root.pem", "leaf.pem"]);
    assert!(out.contains("leaf.pem: OK"), "{out}");
    // Strict RFC 5280 checks and both TLS purposes.
    for purpose in ["sslserver", "sslclient"] {
        let out = ok(
            d,
            &[
                "verify",
                "-x509_strict",
                "-purpose",
                purpose,
                "-CAfile",
                "root.pem",
                "leaf.pem",
            ],
        );
        assert!(out.contains("leaf.pem: OK"), "{purpose}: {out}");
    }

    let leaf_text = ok(d, &["x509", "-noout", "-text", "-in", "leaf.pem"]);
    assert!(
        leaf_text.contains(&format!("URI:{}", web.uri())),
        "{leaf_text}"
    );
    assert!(leaf_text.contains("CA:FALSE"), "{leaf_text}");
    assert!(
        leaf_text.contains("TLS Web Client Authentication"),
        "{leaf_text}"
    );
    assert!(
        leaf_text.contains("TLS Web Server Authentication"),
        "{leaf_text}"
    );
    assert!(
        leaf_text.contains("Digital Signature, Key Encipherment, Data Encipherment, Key Agreement"),
        "{leaf_text}"
    );
    assert!(
        leaf_text.contains("Subject: CN = web.svc.default.7f42f496.consul"),
        "{leaf_text}"
    );
    assert!(leaf_text.contains("ecdsa-with-SHA256"), "{leaf_text}");
    assert!(!leaf_text.contains("DNS:"), "{leaf_text}");

    let root_text = ok(d, &["x509", "-noout", "-text", "-in", "root.pem"]);
    assert!(root_text.contains("CA:TRUE"), "{root_text}");
    assert!(
        root_text.contains(&format!("URI:spiffe://{}", td())),
        "{root_text}"
    );
    assert!(
        root_text.contains("Digital Signature, Certificate Sign, CRL Sign"),
        "{root_text}"
    );
    assert!(root_text.contains("NIST CURVE: P-256"), "{root_text}");
    assert!(
        root_text.contains(".consul.ca.7f42f496.consul"),
        "{root_text}"
    );

    // The key the agent keeps is readable by OpenSSL and matches the certificate.
    let cert_pub = ok(d, &["x509", "-noout", "-pubkey", "-in", "leaf.pem"]);
    let key_pub = ok(d, &["pkey", "-pubout", "-in", "key.pem"]);
    assert_eq!(cert_pub, key_pub);

    // A leaf from another CA does not verify against this root.
    let (other_root, other_signer) = crate::new_root(OTHER_CLUSTER, DEFAULT_ROOT_TTL).unwrap();
    let other = crate::sign_leaf(
        &other_signer,
        &other_root,
        &ServiceId::new(&crate::trust_domain(OTHER_CLUSTER), "default", "dc1", "web"),
        hours(1),
        None,
    )
    .unwrap();
    write(d, "other.pem", &other.cert_pem);
    let out = openssl(d, &["verify", "-CAfile", "root.pem", "other.pem"]);
    assert!(!out.status.success());
}

/// A CSR produced by OpenSSL (not rcgen) is accepted and signed.
#[test]
fn openssl_csr_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (root, signer) = ca();
    let web = svc("web");
    ok(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "key.pem",
        ],
    );
    let san = format!("subjectAltName=URI:{}", web.uri());
    ok(
        d,
        &[
            "req", "-new", "-key", "key.pem", "-subj", "/CN=web", "-addext", &san, "-out",
            "csr.pem",
        ],
    );
    let csr = std::fs::read_to_string(d.join("csr.pem")).unwrap();
    let leaf = crate::sign_csr(&signer, &root, &csr, DEFAULT_LEAF_TTL).unwrap();
    assert_eq!(
        crate::verify_leaf(
            std::slice::from_ref(&root.root_cert_pem),
            &leaf.cert_pem,
            now()
        )
        .unwrap(),
        web
    );
    write(d, "root.pem", &root.root_cert_pem);
    write(d, "leaf.pem", &leaf.cert_pem);
    let out = ok(
        d,
        &["verify", "-x509_strict", "-CAfile", "root.pem", "leaf.pem"],
    );
    assert!(out.contains("leaf.pem: OK"), "{out}");
    let cert_pub = ok(d, &["x509", "-noout", "-pubkey", "-in", "leaf.pem"]);
    let key_pub = ok(d, &["pkey", "-pubout", "-in", "key.pem"]);
    assert_eq!(cert_pub, key_pub);
    // OpenSSL's SEC1 key works with the rustls helpers too.
    let key_pem = std::fs::read_to_string(d.join("key.pem")).unwrap();
    crate::tls::certified_key(&leaf.cert_pem, &key_pem).unwrap();
}

/// The rotation chain as OpenSSL sees it: new leaf → cross-signed cert → old root.
#[test]
fn openssl_verifies_rotation_chain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (old_root, old_signer) = ca();
    let old_leaf = leaf(&old_root, &old_signer, &svc("web"));
    let (new_root, new_signer) = ca();
    let roots = rotation::rotate(
        std::slice::from_ref(&old_root),
        Some(&old_signer),
        new_root,
        now(),
    )
    .unwrap();
    let active = rotation::active_root(&roots).unwrap().clone();
    let xc = active.intermediate_certs[0].clone();
    let new_leaf = leaf(&active, &new_signer, &svc("web"));

    write(d, "old_root.pem", &old_root.root_cert_pem);
    write(d, "new_root.pem", &active.root_cert_pem);
    write(d, "xc.pem", &xc);
    write(d, "new_leaf.pem", &first_cert(&new_leaf.cert_pem));
    write(d, "old_leaf.pem", &old_leaf.cert_pem);
    let mut bundle = old_root.root_cert_pem.clone();
    bundle.push_str(&active.root_cert_pem);
    write(d, "bundle.pem", &bundle);

    let xc_text = ok(d, &["x509", "-noout", "-text", "-in", "xc.pem"]);
    assert!(xc_text.contains("CA:TRUE"), "{xc_text}");

    // Peer that only knows the old root: needs the cross-signed intermediate.
    let out = ok(
        d,
        &[
            "verify",
            "-x509_strict",
            "-CAfile",
            "old_root.pem",
            "-untrusted",
            "xc.pem",
            "new_leaf.pem",
        ],
    );
    assert!(out.contains("new_leaf.pem: OK"), "{out}");
    let out = openssl(d, &["verify", "-CAfile", "old_root.pem", "new_leaf.pem"]);
    assert!(
        !out.status.success(),
        "without the cross-signed cert the chain must break"
    );
    // Peer with the new bundle: both generations verify.
    for leaf in ["new_leaf.pem", "old_leaf.pem"] {
        let out = ok(
            d,
            &["verify", "-x509_strict", "-CAfile", "bundle.pem", leaf],
        );
        assert!(out.contains("OK"), "{leaf}: {out}");
    }
    // Peer that only knows the new root cannot verify old leaves (why the old root stays).
    let out = openssl(d, &["verify", "-CAfile", "new_root.pem", "old_leaf.pem"]);
    assert!(!out.status.success());
}
