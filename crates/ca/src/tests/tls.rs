//! Real TLS handshakes (tokio-rustls over in-memory pipes) with the data-plane configs.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ProtocolVersion;

use super::*;
use crate::tls::{
    ClientAuth, SniResolver, TlsSettings, client_config, mesh_server_cert_verifier,
    origination_client_config, peer_service_id, provider, server_config,
    server_config_with_resolver,
};
use crate::{cert_info, sign_leaf};

struct Mesh {
    root: CaRoot,
    signer: CaSigner,
    roots: Vec<String>,
}

fn mesh() -> Mesh {
    let (root, signer) = ca();
    let roots = vec![root.root_cert_pem.clone()];
    Mesh {
        root,
        signer,
        roots,
    }
}

impl Mesh {
    fn leaf(&self, name: &str) -> Leaf {
        leaf(&self.root, &self.signer, &svc(name))
    }

    fn server(&self, l: &Leaf, auth: ClientAuth) -> Arc<rustls::ServerConfig> {
        server_config(
            &l.cert_pem,
            &l.private_key_pem,
            &self.roots,
            auth,
            &Default::default(),
        )
        .unwrap()
    }

    fn client(&self, l: &Leaf, expected: &str) -> Arc<rustls::ClientConfig> {
        client_config(
            &l.cert_pem,
            &l.private_key_pem,
            &self.roots,
            svc(expected),
            &Default::default(),
        )
        .unwrap()
    }
}

#[tokio::test]
async fn mtls_succeeds_and_both_sides_see_the_peer_identity() {
    let m = mesh();
    let (web, db) = (m.leaf("web"), m.leaf("db"));
    let (srv, cli) = handshake(
        m.server(&db, ClientAuth::Required),
        m.client(&web, "db"),
        &svc("db").sni(),
    )
    .await;
    let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
    ping_pong(&mut srv, &mut cli).await;

    let s = srv.get_ref().1;
    assert_eq!(peer_service_id(s), Some(svc("web")));
    assert_eq!(s.server_name(), Some(svc("db").sni().as_str()));
    assert_eq!(s.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(s.alpn_protocol(), None);
    assert_eq!(peer_service_id(cli.get_ref().1), Some(svc("db")));
}

#[tokio::test]
async fn client_expecting_one_service_refuses_another() {
    let m = mesh();
    let (web, billing) = (m.leaf("web"), m.leaf("billing"));
    // The SNI says db and the server is a valid mesh member, but it presents billing.
    let (srv, cli) = handshake(
        m.server(&billing, ClientAuth::Required),
        m.client(&web, "db"),
        &svc("db").sni(),
    )
    .await;
    let err = cli.expect_err("client must refuse the wrong identity");
    assert!(
        err.to_string().contains("do not include the expected"),
        "{err}"
    );
    assert!(srv.is_err());
}

#[tokio::test]
async fn server_refuses_client_certificates_from_a_foreign_ca() {
    let m = mesh();
    let db = m.leaf("db");
    let (other_root, other_signer) = crate::new_root(OTHER_CLUSTER, DEFAULT_ROOT_TTL).unwrap();
    let foreign_id = ServiceId::new(&crate::trust_domain(OTHER_CLUSTER), "default", "dc1", "web");
    let foreign = leaf(&other_root, &other_signer, &foreign_id);
    // The client trusts the real mesh roots (so it accepts the server) but presents a
    // certificate from another CA.
    let client = client_config(
        &foreign.cert_pem,
        &foreign.private_key_pem,
        &m.roots,
        svc("db"),
        &Default::default(),
    )
    .unwrap();
    let (srv, cli) = handshake(
        m.server(&db, ClientAuth::Required),
        client,
        &svc("db").sni(),
    )
    .await;
    assert!(
        srv.is_err(),
        "server must refuse a foreign client certificate"
    );
    // In TLS 1.3 the client may finish first; it then sees the server's alert on read.
    if let Ok(mut cli) = cli {
        let mut buf = [0u8; 1];
        let r = tokio::io::AsyncReadExt::read(&mut cli, &mut buf).await;
        assert!(matches!(r, Err(_) | Ok(0)), "{r:?}");
    }
}

#[tokio::test]
async fn server_requires_a_client_certificate_with_a_service_identity() {
    let m = mesh();
    let db = m.leaf("db");

    // No client certificate at all.
    let anonymous = origination_client_config(Some(&m.root.root_cert_pem), None, None).unwrap();
    let (srv, _cli) = handshake(m.server(&db, ClientAuth::Required), anonymous.clone(), "db").await;
    assert!(srv.is_err());

    // A mesh-signed certificate without a SPIFFE service URI (DNS SAN only).
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let issuer = Issuer::from_ca_cert_pem(
        &m.signer.cert_pem,
        KeyPair::from_pem(&m.signer.key_pem).unwrap(),
    )
    .unwrap();
    let mut p = CertificateParams::new(vec!["web.example.com".to_string()]).unwrap();
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(&key, &issuer).unwrap();
    let client = client_config(
        &cert.pem(),
        &key.serialize_pem(),
        &m.roots,
        svc("db"),
        &Default::default(),
    )
    .unwrap();
    let (srv, _cli) = handshake(m.server(&db, ClientAuth::Required), client, "db").await;
    let err = srv.expect_err("certificate without SPIFFE service id must be refused");
    assert!(err.to_string().contains("SPIFFE"), "{err}");

    // ClientAuth::None: anonymous clients are fine and have no identity.
    let (srv, cli) = handshake(m.server(&db, ClientAuth::None), anonymous, "db").await;
    let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
    ping_pong(&mut srv, &mut cli).await;
    assert_eq!(peer_service_id(srv.get_ref().1), None);
}

fn leaf_der(pem: &str) -> Vec<u8> {
    crate::util::certs_from_pem(pem).unwrap()[0]
        .as_ref()
        .to_vec()
}

fn served_leaf(cli: &tokio_rustls::client::TlsStream<tokio::io::DuplexStream>) -> Vec<u8> {
    cli.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn sni_resolver_picks_the_leaf_per_sni_and_rotates_in_place() {
    let m = mesh();
    let web = m.leaf("web");
    let (db, billing) = (m.leaf("db"), m.leaf("billing"));
    let resolver = Arc::new(SniResolver::new());
    resolver
        .insert(&svc("db").sni(), &db.cert_pem, &db.private_key_pem)
        .unwrap();
    // Names are case-insensitive.
    resolver
        .insert(
            &svc("billing").sni().to_uppercase(),
            &billing.cert_pem,
            &billing.private_key_pem,
        )
        .unwrap();
    assert_eq!(resolver.names().len(), 2);
    let server = server_config_with_resolver(
        resolver.clone(),
        &m.roots,
        ClientAuth::Required,
        &Default::default(),
    )
    .unwrap();

    for name in ["db", "billing"] {
        let (srv, cli) = handshake(server.clone(), m.client(&web, name), &svc(name).sni()).await;
        let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
        ping_pong(&mut srv, &mut cli).await;
        assert_eq!(peer_service_id(cli.get_ref().1), Some(svc(name)));
        assert_eq!(peer_service_id(srv.get_ref().1), Some(svc("web")));
    }

    // SNI of billing while expecting db: the server answers with billing's leaf, refused.
    let (_, cli) = handshake(server.clone(), m.client(&web, "db"), &svc("billing").sni()).await;
    assert!(cli.is_err());
    // Unknown SNI: no certificate, handshake fails.
    let (srv, cli) = handshake(server.clone(), m.client(&web, "db"), &svc("nope").sni()).await;
    assert!(srv.is_err() && cli.is_err());

    // Rotation: an established connection keeps working, new ones get the new leaf.
    let (srv, cli) = handshake(server.clone(), m.client(&web, "db"), &svc("db").sni()).await;
    let (mut old_srv, mut old_cli) = (srv.unwrap(), cli.unwrap());
    assert_eq!(served_leaf(&old_cli), leaf_der(&db.cert_pem));
    let db2 = m.leaf("db");
    assert_ne!(db2.serial_number, db.serial_number);
    resolver
        .insert(&svc("db").sni(), &db2.cert_pem, &db2.private_key_pem)
        .unwrap();
    ping_pong(&mut old_srv, &mut old_cli).await;
    let (srv, cli) = handshake(server.clone(), m.client(&web, "db"), &svc("db").sni()).await;
    let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
    ping_pong(&mut srv, &mut cli).await;
    assert_eq!(served_leaf(&cli), leaf_der(&db2.cert_pem));

    // Removal and whole-table swap.
    assert!(resolver.remove(&svc("db").sni()));
    assert!(!resolver.remove(&svc("db").sni()));
    let (_, cli) = handshake(server.clone(), m.client(&web, "db"), &svc("db").sni()).await;
    assert!(cli.is_err());
    ping_pong(&mut old_srv, &mut old_cli).await;
    resolver.replace_all([(
        svc("db").sni(),
        crate::tls::certified_key(&db.cert_pem, &db.private_key_pem).unwrap(),
    )]);
    assert_eq!(resolver.names(), vec![svc("db").sni()]);
    let (srv, cli) = handshake(server, m.client(&web, "db"), &svc("db").sni()).await;
    assert!(srv.is_ok() && cli.is_ok());
}

/// An external service with its own (non-mesh) CA, like the PostgreSQL server a terminating
/// gateway originates TLS to.
struct External {
    ca_pem: String,
    chain_pem: String,
    key_pem: String,
}

fn external(dns: &[&str]) -> External {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "External Test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "external-database.example.com");
    p.subject_alt_names = dns
        .iter()
        .map(|d| SanType::DnsName(d.to_string().try_into().unwrap()))
        .collect();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(&key, &issuer).unwrap();
    External {
        ca_pem: ca_cert.pem(),
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

#[tokio::test]
async fn origination_verifies_against_cafile_and_sni() {
    let ext = external(&["db.example.com", "*.db.example.com"]);
    let server = server_config(
        &ext.chain_pem,
        &ext.key_pem,
        &[],
        ClientAuth::None,
        &Default::default(),
    )
    .unwrap();

    // CAFile + SNI matching a DNS SAN: OK, and the SNI is sent.
    let cfg = origination_client_config(Some(&ext.ca_pem), None, Some("db.example.com")).unwrap();
    let (srv, cli) = handshake(server.clone(), cfg, "db.example.com").await;
    let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
    ping_pong(&mut srv, &mut cli).await;
    assert_eq!(srv.get_ref().1.server_name(), Some("db.example.com"));

    // Wildcard SAN.
    let cfg =
        origination_client_config(Some(&ext.ca_pem), None, Some("r1.db.example.com")).unwrap();
    let (_, cli) = handshake(server.clone(), cfg, "r1.db.example.com").await;
    assert!(cli.is_ok());

    // SNI not carried by the certificate: refused (newer Consul's SAN = SNI rule), whatever
    // name the caller connects with.
    let cfg =
        origination_client_config(Some(&ext.ca_pem), None, Some("other.example.com")).unwrap();
    let (_, cli) = handshake(server.clone(), cfg.clone(), "other.example.com").await;
    assert!(cli.is_err());
    let (_, cli) = handshake(server.clone(), cfg, "db.example.com").await;
    assert!(
        cli.is_err(),
        "the configured SNI, not the connect name, is verified"
    );
    // The subject CN is not a SAN.
    let cfg = origination_client_config(
        Some(&ext.ca_pem),
        None,
        Some("external-database.example.com"),
    )
    .unwrap();
    let (_, cli) = handshake(server.clone(), cfg, "external-database.example.com").await;
    assert!(cli.is_err());

    // Wrong CAFile: refused.
    let m = mesh();
    let cfg = origination_client_config(Some(&m.root.root_cert_pem), None, Some("db.example.com"))
        .unwrap();
    let (_, cli) = handshake(server.clone(), cfg, "db.example.com").await;
    assert!(cli.is_err());

    // No SNI configured: chain-only validation and no SNI on the wire.
    let cfg = origination_client_config(Some(&ext.ca_pem), None, None).unwrap();
    let (srv, cli) = handshake(server.clone(), cfg, "10.1.2.3").await;
    let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
    ping_pong(&mut srv, &mut cli).await;
    assert_eq!(srv.get_ref().1.server_name(), None);

    // No CAFile: Consul does not originate TLS at all.
    assert!(origination_client_config(None, None, Some("db.example.com")).is_err());
    assert!(origination_client_config(Some(&ext.ca_pem), None, Some("not a name")).is_err());
}

#[tokio::test]
async fn origination_presents_the_client_certificate() {
    let ext = external(&["db.example.com"]);
    let m = mesh();
    let gw = sign_leaf(
        &m.signer,
        &m.root,
        &svc("carbonio-files-db"),
        hours(1),
        None,
    )
    .unwrap();
    // The external server demands a client certificate issued by the mesh CA.
    let server = server_config(
        &ext.chain_pem,
        &ext.key_pem,
        &m.roots,
        ClientAuth::Required,
        &Default::default(),
    )
    .unwrap();
    let cfg = origination_client_config(
        Some(&ext.ca_pem),
        Some((&gw.cert_pem, &gw.private_key_pem)),
        Some("db.example.com"),
    )
    .unwrap();
    let (srv, cli) = handshake(server.clone(), cfg, "db.example.com").await;
    let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
    ping_pong(&mut srv, &mut cli).await;
    assert_eq!(
        peer_service_id(srv.get_ref().1),
        Some(svc("carbonio-files-db"))
    );
    assert_eq!(
        cert_info(&gw.cert_pem).unwrap().uris,
        vec![svc("carbonio-files-db").uri()]
    );

    // Key that does not match the certificate: refused at configuration time.
    let other = sign_leaf(&m.signer, &m.root, &svc("x"), hours(1), None).unwrap();
    assert!(crate::tls::certified_key(&gw.cert_pem, &other.private_key_pem).is_err());
}

/// TLS 1.2 (ECDSA) is accepted by the mesh server config too.
#[tokio::test]
async fn tls12_clients_are_accepted() {
    let m = mesh();
    let (web, db) = (m.leaf("web"), m.leaf("db"));
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(mesh_server_cert_verifier(&m.roots, &svc("db")).unwrap())
        .with_client_auth_cert(
            crate::util::certs_from_pem(&web.cert_pem).unwrap(),
            crate::util::key_from_pem(&web.private_key_pem).unwrap(),
        )
        .unwrap();
    let (srv, cli) = handshake(
        m.server(&db, ClientAuth::Required),
        Arc::new(client),
        &svc("db").sni(),
    )
    .await;
    let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
    ping_pong(&mut srv, &mut cli).await;
    assert_eq!(
        srv.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    assert_eq!(peer_service_id(srv.get_ref().1), Some(svc("web")));
    assert_eq!(peer_service_id(cli.get_ref().1), Some(svc("db")));
}

/// `TlsSettings`: versions outside min..max and TLS 1.2 suites not listed
/// are not offered, on either side; TLS 1.3 suites stay whatever is listed.
#[tokio::test]
async fn versions_and_cipher_suites_follow_the_settings() {
    use meshgate_types::tls::parse;
    let m = mesh();
    let (web, db) = (m.leaf("web"), m.leaf("db"));
    let settings = |min: &str, max: &str, suites: &[&str]| {
        let suites: Vec<String> = suites.iter().map(|s| s.to_string()).collect();
        parse(min, max, &suites, meshgate_types::tls::Flavor::Proxy)
            .unwrap()
            .settings
    };
    let server = |s: &TlsSettings| {
        server_config(
            &db.cert_pem,
            &db.private_key_pem,
            &m.roots,
            ClientAuth::Required,
            s,
        )
        .unwrap()
    };
    let client = |s: &TlsSettings| {
        client_config(&web.cert_pem, &web.private_key_pem, &m.roots, svc("db"), s).unwrap()
    };
    let sni = svc("db").sni();
    let only12 = settings("", "TLSv1_2", &[]);
    let only13 = settings("TLSv1_3", "", &[]);
    // A TLS 1.3 minimum refuses a client that stops at 1.2, both ways round.
    let (srv, cli) = handshake(server(&only13), client(&only12), &sni).await;
    assert!(srv.is_err() && cli.is_err());
    let (srv, cli) = handshake(server(&only12), client(&only13), &sni).await;
    assert!(srv.is_err() && cli.is_err());
    // Where both allow 1.2 only, 1.2 it is.
    let (srv, cli) = handshake(server(&only12), client(&TlsSettings::default()), &sni).await;
    let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
    ping_pong(&mut srv, &mut cli).await;
    assert_eq!(
        cli.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    // TLS 1.2 with one listed suite: that one is agreed; a client offering
    // only another fails.
    let aes256 = settings("", "TLSv1_2", &["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]);
    let (srv, cli) = handshake(server(&aes256), client(&only12), &sni).await;
    let (_srv, cli) = (srv.unwrap(), cli.unwrap());
    assert_eq!(
        cli.get_ref()
            .1
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str()),
        Some("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
    );
    let chacha = settings(
        "",
        "TLSv1_2",
        &["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"],
    );
    let (srv, cli) = handshake(server(&aes256), client(&chacha), &sni).await;
    assert!(srv.is_err() && cli.is_err());
    // The suite list does not touch TLS 1.3.
    let listed = settings("", "", &["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]);
    let chacha_or_13 = settings("", "", &["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]);
    let (srv, cli) = handshake(server(&listed), client(&chacha_or_13), &sni).await;
    assert!(srv.is_ok() && cli.is_ok());
    assert_eq!(
        cli.unwrap().get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
}

/// The suites meshgate says it has are the provider's.
#[test]
fn every_suite_meshgate_names_is_in_the_provider() {
    let p = provider();
    for name in meshgate_types::tls::AVAILABLE_CIPHER_SUITES {
        assert!(
            p.cipher_suites
                .iter()
                .any(|s| s.suite().as_str() == Some(name)),
            "{name}"
        );
    }
}
