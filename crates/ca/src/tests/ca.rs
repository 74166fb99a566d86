//! Root and leaf issuance, CSR validation and `verify_leaf`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, IsCa, KeyPair, SanType};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use super::*;
use crate::util::certs_from_pem;
use crate::{CaError, cert_info, generate_key_and_csr_with_sans, sign_csr, sign_leaf, verify_leaf};

/// Runs `f` on the first certificate of `pem`, parsed by x509-parser.
fn with_cert<R>(pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> R) -> R {
    let der = certs_from_pem(pem).unwrap().remove(0);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    f(&cert)
}

fn bits_of_hex(h: &str) -> usize {
    h.split(':').count() * 8
}

/// The root follows Consul's profile: CN convention, SPIFFE signing URI, CA:TRUE, usages,
/// SKID = AKID = SHA-256(SPKI), ID = SHA-1 fingerprint, 10-year default lifetime.
#[test]
fn root_profile() {
    let (root, signer) = ca();
    assert_eq!(root.name, "Consul CA Root Cert");
    assert!(root.active);
    assert_eq!(root.private_key_type, "ec");
    assert_eq!(root.private_key_bits, 256);
    assert_eq!(root.external_trust_domain, CLUSTER);
    assert!(root.intermediate_certs.is_empty());
    assert_eq!(signer.cert_pem, root.root_cert_pem);
    assert!(signer.key_pem.contains("PRIVATE KEY"));
    assert!(!format!("{signer:?}").contains("PRIVATE KEY"));
    assert_eq!(root.trust_domain().unwrap(), td());

    let info = cert_info(&root.root_cert_pem).unwrap();
    assert!(info.is_ca);
    assert_eq!(info.uris, vec![format!("spiffe://{}", td())]);
    assert!(info.dns_names.is_empty());
    let cn = info.subject_cn.clone().unwrap();
    assert_eq!(info.issuer_cn.as_deref(), Some(cn.as_str()));
    let (head, tail) = cn.split_once('.').unwrap();
    assert!(
        head.starts_with("pri-") && head.len() <= 12 && head.len() > 4,
        "{cn}"
    );
    assert!(
        head[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    );
    assert_eq!(tail, "consul.ca.7f42f496.consul");
    assert_eq!(info.subject_key_id, info.authority_key_id);
    assert_eq!(
        info.subject_key_id.as_deref(),
        Some(root.signing_key_id.as_str())
    );
    assert_eq!(bits_of_hex(&root.signing_key_id), 256);
    assert_eq!(bits_of_hex(&root.id), 160);
    assert_eq!(
        crate::colon_hex(&crate::util::serial_bytes(root.serial_number)),
        info.serial
    );
    assert_eq!(info.not_before, root.not_before);
    assert_eq!(info.not_after, root.not_after);
    let nb = crate::parse_rfc3339(&root.not_before).unwrap();
    let na = crate::parse_rfc3339(&root.not_after).unwrap();
    let life = na - nb;
    assert!(
        life >= time::Duration::hours(87_600)
            && life <= time::Duration::hours(87_600) + time::Duration::minutes(2)
    );
    assert!(nb < time::OffsetDateTime::now_utc());

    with_cert(&root.root_cert_pem, |c| {
        let ku = c.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature() && ku.value.key_cert_sign() && ku.value.crl_sign());
        assert!(!ku.value.key_encipherment());
        let bc = c.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
        assert_eq!(
            c.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.10045.4.3.2"
        );
    });

    // Consul-compatible JSON (ID/SigningKeyID/RootCert, IntermediateCerts null).
    let json = serde_json::to_value(&root).unwrap();
    assert_eq!(json["ID"], root.id.as_str());
    assert_eq!(json["SigningKeyID"], root.signing_key_id.as_str());
    assert_eq!(json["RootCert"], root.root_cert_pem.as_str());
    assert!(json["IntermediateCerts"].is_null());
    assert_eq!(json["PrivateKeyBits"], 256);
    assert!(json.get("RotatedOutAt").is_none());
    let back: CaRoot = serde_json::from_value(json).unwrap();
    assert_eq!(back, root);
    let s: CaSigner = serde_json::from_str(&serde_json::to_string(&signer).unwrap()).unwrap();
    assert_eq!(s, signer);

    // Two roots of the same cluster differ (unique CN, key, serial).
    let (root2, _) = ca();
    assert_ne!(root2.id, root.id);
    assert_ne!(
        cert_info(&root2.root_cert_pem).unwrap().subject_cn,
        Some(cn)
    );
}

/// The agent flow: key + CSR locally, server signs, verify_leaf accepts and returns the id.
#[test]
fn leaf_via_csr_verifies() {
    let (root, signer) = ca();
    let web = svc("web");
    let (key_pem, csr_pem) = crate::generate_key_and_csr(&web).unwrap();
    assert!(csr_pem.contains("BEGIN CERTIFICATE REQUEST"));
    let leaf = sign_csr(&signer, &root, &csr_pem, DEFAULT_LEAF_TTL).unwrap();
    assert!(leaf.private_key_pem.is_empty());
    assert_eq!(leaf.service, "web");
    assert_eq!(leaf.service_uri, web.uri());
    assert_eq!(
        leaf.service_uri,
        format!("spiffe://{CLUSTER}.consul/ns/default/dc/dc1/svc/web")
    );
    assert!(leaf.serial_number.split(':').all(|b| b.len() == 2));

    let roots = vec![root.root_cert_pem.clone()];
    assert_eq!(verify_leaf(&roots, &leaf.cert_pem, now()).unwrap(), web);
    // The key the agent kept matches the certificate.
    crate::tls::certified_key(&leaf.cert_pem, &key_pem).unwrap();

    let info = cert_info(&leaf.cert_pem).unwrap();
    assert!(!info.is_ca);
    assert_eq!(info.uris, vec![web.uri()]);
    assert!(info.dns_names.is_empty() && info.ip_addresses.is_empty());
    assert_eq!(
        info.subject_cn.as_deref(),
        Some("web.svc.default.7f42f496.consul")
    );
    assert_eq!(
        info.issuer_cn,
        cert_info(&root.root_cert_pem).unwrap().subject_cn
    );
    assert_eq!(
        info.authority_key_id.as_deref(),
        Some(root.signing_key_id.as_str())
    );
    assert_eq!(bits_of_hex(info.subject_key_id.as_deref().unwrap()), 256);
    assert_eq!(info.serial, leaf.serial_number);
    assert_eq!(info.not_before, leaf.valid_after);
    assert_eq!(info.not_after, leaf.valid_before);
    let nb = crate::parse_rfc3339(&leaf.valid_after).unwrap();
    let na = crate::parse_rfc3339(&leaf.valid_before).unwrap();
    assert_eq!(na - nb, time::Duration::hours(72));
    let lag = time::OffsetDateTime::now_utc() - nb;
    assert!(
        lag >= time::Duration::seconds(55) && lag <= time::Duration::seconds(90),
        "{lag}"
    );

    with_cert(&leaf.cert_pem, |c| {
        let ku = c.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        let k = ku.value;
        assert!(k.digital_signature() && k.key_encipherment() && k.data_encipherment());
        assert!(k.key_agreement() && !k.key_cert_sign());
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let bc = c.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && !bc.value.ca);
        assert!(c.extensions().iter().any(|e| matches!(
            e.parsed_extension(),
            ParsedExtension::SubjectKeyIdentifier(_)
        )));
    });

    // Leaf JSON uses Consul's IssuedCert names.
    let json = serde_json::to_value(&leaf).unwrap();
    for k in [
        "SerialNumber",
        "CertPEM",
        "PrivateKeyPEM",
        "Service",
        "ServiceURI",
        "ValidAfter",
        "ValidBefore",
    ] {
        assert!(json.get(k).is_some(), "{k}");
    }
}

/// Server-side issuance with or without a caller-provided key.
#[test]
fn sign_leaf_direct() {
    let (root, signer) = ca();
    let db = svc("db");
    let leaf = sign_leaf(&signer, &root, &db, hours(1), None).unwrap();
    crate::tls::certified_key(&leaf.cert_pem, &leaf.private_key_pem).unwrap();
    assert_eq!(
        verify_leaf(
            std::slice::from_ref(&root.root_cert_pem),
            &leaf.cert_pem,
            now()
        )
        .unwrap(),
        db
    );

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_pem = key.serialize_pem();
    let leaf = sign_leaf(&signer, &root, &db, hours(1), Some(key)).unwrap();
    assert_eq!(leaf.private_key_pem, key_pem);
    crate::tls::certified_key(&leaf.cert_pem, &key_pem).unwrap();

    // Partition form and a long, odd service name.
    let odd = ServiceId::new(
        &td(),
        "ns1",
        "dc1",
        &format!("My_Service-{}", "x".repeat(80)),
    )
    .with_partition("part1");
    let leaf = sign_leaf(&signer, &root, &odd, hours(1), None).unwrap();
    assert_eq!(
        verify_leaf(
            std::slice::from_ref(&root.root_cert_pem),
            &leaf.cert_pem,
            now()
        )
        .unwrap(),
        odd
    );
    assert!(
        leaf.service_uri
            .contains("/ap/part1/ns/ns1/dc/dc1/svc/My_Service-")
    );
    let cn = cert_info(&leaf.cert_pem).unwrap().subject_cn.unwrap();
    assert!(
        cn.len() <= 64 && cn.starts_with("myservicex") && cn.ends_with(".svc.ns1.7f42f496.consul"),
        "{cn}"
    );
}

#[test]
fn csr_from_other_trust_domain_is_refused() {
    let (root, signer) = ca();
    let foreign = ServiceId::new(&crate::trust_domain(OTHER_CLUSTER), "default", "dc1", "web");
    let (_, csr) = crate::generate_key_and_csr(&foreign).unwrap();
    let err = sign_csr(&signer, &root, &csr, DEFAULT_LEAF_TTL).unwrap_err();
    assert!(err.is_invalid_csr(), "{err}");
    assert!(err.to_string().contains("different trust domain"), "{err}");
    assert!(sign_leaf(&signer, &root, &foreign, hours(1), None).is_err());

    // Trust domain comparison is ASCII case-insensitive (Consul's CanSign).
    let upper = ServiceId::new(&td().to_uppercase(), "default", "dc1", "web");
    let (_, csr) = crate::generate_key_and_csr(&upper).unwrap();
    sign_csr(&signer, &root, &csr, DEFAULT_LEAF_TTL).unwrap();
}

fn csr_with_sans(sans: Vec<SanType>, is_ca: IsCa) -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    params.is_ca = is_ca;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.to_string().try_into().unwrap())
}

#[test]
fn malformed_csrs_are_refused() {
    let (root, signer) = ca();
    let web = svc("web").uri();
    let cases = [
        ("no URI", csr_with_sans(vec![], IsCa::NoCa)),
        (
            "two URIs",
            csr_with_sans(vec![uri(&web), uri(&svc("db").uri())], IsCa::NoCa),
        ),
        (
            "agent id",
            csr_with_sans(
                vec![uri(&crate::AgentId::new(&td(), "dc1", "n1").uri())],
                IsCa::NoCa,
            ),
        ),
        (
            "signing id",
            csr_with_sans(vec![uri(&format!("spiffe://{}", td()))], IsCa::NoCa),
        ),
        (
            "not spiffe",
            csr_with_sans(vec![uri("https://example.com/web")], IsCa::NoCa),
        ),
        (
            "email",
            csr_with_sans(
                vec![
                    uri(&web),
                    SanType::Rfc822Name("a@b.c".to_string().try_into().unwrap()),
                ],
                IsCa::NoCa,
            ),
        ),
        (
            "garbage",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                .to_string(),
        ),
        ("no PEM", "hello".to_string()),
    ];
    for (what, csr) in cases {
        let err = sign_csr(&signer, &root, &csr, DEFAULT_LEAF_TTL).unwrap_err();
        assert!(err.is_invalid_csr(), "{what}: {err}");
    }

    // A CSR whose signature does not verify (public key swapped for another one).
    let good = csr_with_sans(vec![uri(&web)], IsCa::NoCa);
    let der = crate::util::csr_from_pem(&good).unwrap().as_ref().to_vec();
    let other_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    // SPKI BIT STRING header (03 42 00) followed by the uncompressed point (04 ...).
    let pos = der
        .windows(4)
        .position(|w| w == [0x03, 0x42, 0x00, 0x04])
        .unwrap()
        + 3;
    let mut tampered = der.clone();
    tampered[pos..pos + 65].copy_from_slice(other_key.public_key_raw());
    let pem = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        b64(&tampered)
    );
    let err = sign_csr(&signer, &root, &pem, DEFAULT_LEAF_TTL).unwrap_err();
    assert!(err.is_invalid_csr(), "{err}");

    // A CSR asking for CA:TRUE still gets a plain leaf.
    let ca_csr = csr_with_sans(
        vec![uri(&web)],
        IsCa::Ca(rcgen::BasicConstraints::Unconstrained),
    );
    let leaf = sign_csr(&signer, &root, &ca_csr, DEFAULT_LEAF_TTL).unwrap();
    assert!(!cert_info(&leaf.cert_pem).unwrap().is_ca);
}

/// Minimal standard base64 for the tampered-CSR test.
fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn dns_and_ip_sans_from_csr_are_copied() {
    let (root, signer) = ca();
    let web = svc("web");
    let (_, csr) = generate_key_and_csr_with_sans(
        &web.uri(),
        &[
            "web.example.com:8443".into(),
            "web.example.com".into(),
            "alt.example.com".into(),
        ],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )
    .unwrap();
    let leaf = sign_csr(&signer, &root, &csr, DEFAULT_LEAF_TTL).unwrap();
    let info = cert_info(&leaf.cert_pem).unwrap();
    assert_eq!(info.uris, vec![web.uri()]);
    assert_eq!(info.dns_names, vec!["web.example.com", "alt.example.com"]);
    assert_eq!(info.ip_addresses, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    assert_eq!(
        verify_leaf(
            std::slice::from_ref(&root.root_cert_pem),
            &leaf.cert_pem,
            now()
        )
        .unwrap(),
        web
    );
}

#[test]
fn expired_and_not_yet_valid_leaves_are_refused() {
    let (root, signer) = ca();
    let roots = vec![root.root_cert_pem.clone()];
    let leaf = sign_leaf(&signer, &root, &svc("web"), hours(1), None).unwrap();
    verify_leaf(&roots, &leaf.cert_pem, now()).unwrap();
    let later = now() + hours(2);
    match verify_leaf(&roots, &leaf.cert_pem, later) {
        Err(CaError::Untrusted(webpki::Error::CertExpired { .. })) => {}
        other => panic!("expected CertExpired, got {other:?}"),
    }
    let earlier = now() - Duration::from_secs(600);
    match verify_leaf(&roots, &leaf.cert_pem, earlier) {
        Err(CaError::Untrusted(webpki::Error::CertNotValidYet { .. })) => {}
        other => panic!("expected CertNotValidYet, got {other:?}"),
    }
}

#[test]
fn leaf_from_another_root_is_refused() {
    let (root, signer) = ca();
    let (other_root, other_signer) = crate::new_root(OTHER_CLUSTER, DEFAULT_ROOT_TTL).unwrap();
    let foreign_id = ServiceId::new(&crate::trust_domain(OTHER_CLUSTER), "default", "dc1", "web");
    let foreign = leaf(&other_root, &other_signer, &foreign_id);
    let roots = vec![root.root_cert_pem.clone()];
    match verify_leaf(&roots, &foreign.cert_pem, now()) {
        Err(CaError::Untrusted(webpki::Error::UnknownIssuer)) => {}
        other => panic!("expected UnknownIssuer, got {other:?}"),
    }
    // Same cluster, different root: still refused.
    let (sibling, sibling_signer) = ca();
    let l = leaf(&sibling, &sibling_signer, &svc("web"));
    assert!(verify_leaf(&roots, &l.cert_pem, now()).is_err());
    // Trusting both roots accepts both leaves.
    let both = vec![root.root_cert_pem.clone(), other_root.root_cert_pem.clone()];
    assert_eq!(
        verify_leaf(&both, &foreign.cert_pem, now()).unwrap(),
        foreign_id
    );
    let mine = leaf(&root, &signer, &svc("web"));
    assert_eq!(
        verify_leaf(&both, &mine.cert_pem, now()).unwrap(),
        svc("web")
    );
}

#[test]
fn signer_must_match_its_certificate() {
    let (root, signer) = ca();
    let (_, other_signer) = ca();
    let mixed = CaSigner {
        key_pem: other_signer.key_pem.clone(),
        cert_pem: signer.cert_pem.clone(),
    };
    assert!(sign_leaf(&mixed, &root, &svc("web"), hours(1), None).is_err());
}

#[test]
fn expired_root_cannot_sign() {
    let (root, signer) = crate::new_root(CLUSTER, Duration::ZERO).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    match sign_leaf(&signer, &root, &svc("web"), hours(1), None) {
        Err(CaError::RootExpired(_)) => {}
        other => panic!("expected RootExpired, got {other:?}"),
    }
}

#[test]
fn cert_info_and_errors() {
    assert!(matches!(cert_info("nope"), Err(CaError::Pem(_))));
    assert!(matches!(
        verify_leaf(&[], "nope", now()),
        Err(CaError::Pem(_))
    ));
    let (root, signer) = ca();
    let l = leaf(&root, &signer, &svc("web"));
    // Empty trust bundle.
    assert!(verify_leaf(&[], &l.cert_pem, now()).is_err());
    // A root is not a leaf.
    assert!(
        verify_leaf(
            std::slice::from_ref(&root.root_cert_pem),
            &root.root_cert_pem,
            now()
        )
        .is_err()
    );
}
