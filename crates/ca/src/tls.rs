//! rustls building blocks for the mesh data plane (always the `ring` provider).
//!
//! * [`server_config`] / [`server_config_with_resolver`]: inbound mTLS (sidecar public
//!   listener, terminating gateway). With [`ClientAuth::Required`] the client chain is
//!   validated against the mesh roots (webpki, EKU clientAuth) and must carry a SPIFFE
//!   *service* URI SAN; read it after the handshake with [`peer_service_id`].
//! * [`client_config`]: outbound mTLS to an upstream. The server chain is validated against
//!   the mesh roots and the leaf must carry exactly the expected SPIFFE URI; the DNS name the
//!   caller connects with is **not** used for identity: it is only sent as SNI (use the
//!   service SNI, e.g. [`crate::ServiceId::sni`]).
//! * [`origination_client_config`]: TLS origination from a terminating gateway to an external
//!   service (Consul's `CAFile`/`CertFile`/`KeyFile`/`SNI`).
//! * [`SniResolver`]: per-SNI server certificates (one leaf per linked service on a
//!   terminating gateway), swappable at run time.
//!
//! TLS 1.3 and 1.2 are enabled unless a [`TlsSettings`] narrows them (versions, TLS 1.2
//! cipher suites); no ALPN is configured.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    OtherError, RootCertStore, ServerConfig, SignatureScheme, SupportedCipherSuite,
    SupportedProtocolVersion,
};

pub use meshgate_types::tls::{TlsSettings, TlsVersion};

use crate::CaError;
use crate::spiffe::ServiceId;
use crate::util::{certs_from_pem, certs_from_pems, key_from_pem};
use crate::verify::{service_id_of_der, uri_sans_der};

/// Whether an inbound listener demands a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Mesh mTLS: a client certificate is mandatory, must chain to the mesh roots and must
    /// carry a SPIFFE service URI SAN.
    Required,
    /// No client certificate is requested.
    None,
}

/// The crypto provider used everywhere in meshgate: rustls' `ring` provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The provider and protocol versions `settings` allow: TLS 1.3's suites
/// always (they are not configurable), TLS 1.2's as listed (all when none
/// are).
fn restricted(
    settings: &TlsSettings,
) -> (Arc<CryptoProvider>, Vec<&'static SupportedProtocolVersion>) {
    let mut p = rustls::crypto::ring::default_provider();
    if !settings.cipher_suites.is_empty() {
        let mut suites: Vec<SupportedCipherSuite> = p
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .copied()
            .collect();
        for name in &settings.cipher_suites {
            suites.extend(
                p.cipher_suites
                    .iter()
                    .filter(|s| s.suite().as_str() == Some(name.as_str())),
            );
        }
        p.cipher_suites = suites;
    }
    let versions = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (settings.min..=settings.max).contains(v))
    .map(|(_, pv)| pv)
    .collect();
    (Arc::new(p), versions)
}

/// A server config builder with what `settings` allow.
fn server_builder(
    settings: &TlsSettings,
) -> Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>, CaError> {
    let (p, versions) = restricted(settings);
    Ok(ServerConfig::builder_with_provider(p).with_protocol_versions(&versions)?)
}

/// A root store holding every certificate of `roots_pem`.
pub fn root_store(roots_pem: &[String]) -> Result<RootCertStore, CaError> {
    let mut store = RootCertStore::empty();
    for der in certs_from_pems(roots_pem)? {
        store.add(der)?;
    }
    Ok(store)
}

/// Loads a certificate chain (leaf first) and its private key, checking that they match.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, CaError> {
    let chain = certs_from_pem(chain_pem)?;
    let key = key_from_pem(key_pem)?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider())?))
}

fn identity_error(e: CaError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

// === server side ===

/// Always serves the same certificate.
#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Client-certificate verifier for mesh listeners: webpki chain validation to the mesh roots
/// (EKU clientAuth), then a SPIFFE service URI SAN is required.
#[derive(Debug)]
struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        service_id_of_der(end_entity).map_err(identity_error)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The client-certificate verifier used by [`ClientAuth::Required`]: chain to `roots_pem`
/// (EKU clientAuth) and a SPIFFE service URI SAN. For callers that build their own
/// `ServerConfig` (other protocol versions, ALPN, …).
pub fn mesh_client_cert_verifier(
    roots_pem: &[String],
) -> Result<Arc<dyn ClientCertVerifier>, CaError> {
    let roots = Arc::new(root_store(roots_pem)?);
    let inner = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| CaError::Config(format!("client verifier: {e}")))?;
    Ok(Arc::new(SpiffeClientVerifier { inner }))
}

/// Inbound TLS with a fixed certificate: `leaf_chain_pem` (leaf first, then intermediates,
/// i.e. a leaf's `CertPEM`) and its `key_pem`; `roots_pem` are the mesh roots used to verify
/// clients when `client_auth` is [`ClientAuth::Required`].
pub fn server_config(
    leaf_chain_pem: &str,
    key_pem: &str,
    roots_pem: &[String],
    client_auth: ClientAuth,
    settings: &TlsSettings,
) -> Result<Arc<ServerConfig>, CaError> {
    let resolver = Arc::new(FixedCert(certified_key(leaf_chain_pem, key_pem)?));
    server_config_with_resolver(resolver, roots_pem, client_auth, settings)
}

/// Inbound TLS whose certificate is chosen by `resolver` (e.g. a [`SniResolver`]).
pub fn server_config_with_resolver(
    resolver: Arc<dyn ResolvesServerCert>,
    roots_pem: &[String],
    client_auth: ClientAuth,
    settings: &TlsSettings,
) -> Result<Arc<ServerConfig>, CaError> {
    let builder = server_builder(settings)?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Required => {
            builder.with_client_cert_verifier(mesh_client_cert_verifier(roots_pem)?)
        }
    };
    Ok(Arc::new(builder.with_cert_resolver(resolver)))
}

/// The SPIFFE service identity of the peer's (already verified) end-entity certificate;
/// `None` before the handshake, without a client certificate, or when the certificate has no
/// service URI SAN. Works on `ServerConnection` and `ClientConnection` (they deref to
/// `CommonState`).
pub fn peer_service_id(conn: &CommonState) -> Option<ServiceId> {
    let ee = conn.peer_certificates()?.first()?;
    service_id_of_der(ee).ok()
}

// === client side ===

/// Webpki chain validation to a root store (EKU serverAuth) followed by an identity check
/// that does not depend on the name the caller connected with.
#[derive(Debug)]
struct PinnedIdentityVerifier {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
    identity: Identity,
}

#[derive(Debug)]
enum Identity {
    /// The leaf must carry this exact URI SAN (mesh).
    SpiffeUri(String),
    /// The leaf must be valid for this DNS name (webpki rules: DNS SANs, wildcards).
    DnsName(ServerName<'static>),
    /// Chain validation only.
    Any,
}

impl ServerCertVerifier for PinnedIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        match &self.identity {
            Identity::SpiffeUri(expected) => {
                let uris = uri_sans_der(end_entity);
                if !uris.iter().any(|u| u == expected) {
                    return Err(identity_error(CaError::Identity(format!(
                        "server certificate URI SANs {uris:?} do not include the expected {expected}"
                    ))));
                }
            }
            Identity::DnsName(name) => rustls::client::verify_server_name(&cert, name)?,
            Identity::Any => {}
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn client_builder(
    roots: RootCertStore,
    identity: Identity,
    settings: &TlsSettings,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, CaError> {
    let (provider, versions) = restricted(settings);
    let verifier = PinnedIdentityVerifier {
        roots: Arc::new(roots),
        algs: provider.signature_verification_algorithms,
        identity,
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier)))
}

/// The server-certificate verifier used by [`client_config`]: chain to `roots_pem` (EKU
/// serverAuth) and `expected.uri()` among the leaf's URI SANs, ignoring the connect name.
/// For callers that build their own `ClientConfig`.
pub fn mesh_server_cert_verifier(
    roots_pem: &[String],
    expected: &ServiceId,
) -> Result<Arc<dyn ServerCertVerifier>, CaError> {
    Ok(Arc::new(PinnedIdentityVerifier {
        roots: Arc::new(root_store(roots_pem)?),
        algs: provider().signature_verification_algorithms,
        identity: Identity::SpiffeUri(expected.uri()),
    }))
}

/// Outbound mesh mTLS to `expected`: presents `leaf_chain_pem`/`key_pem`, validates the
/// server chain against `roots_pem` and requires the server leaf to carry exactly
/// `expected.uri()` as a URI SAN.
///
/// Connect with `ServerName::try_from(expected.sni())` (or the discovery-chain target SNI): the
/// name is sent as SNI so a terminating gateway can pick the right leaf, but it plays no part
/// in identity verification.
pub fn client_config(
    leaf_chain_pem: &str,
    key_pem: &str,
    roots_pem: &[String],
    expected: ServiceId,
    settings: &TlsSettings,
) -> Result<Arc<ClientConfig>, CaError> {
    let roots = root_store(roots_pem)?;
    let chain = certs_from_pem(leaf_chain_pem)?;
    let key = key_from_pem(key_pem)?;
    let cfg = client_builder(roots, Identity::SpiffeUri(expected.uri()), settings)?
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(cfg))
}

/// TLS origination to an external service (terminating gateway → upstream), following
/// Consul's `injectGatewayServiceAddons`:
///
/// * `ca_file_pem` (the contents of `CAFile`) is required: Consul originates TLS only when
///   `CAFile` is set (otherwise the gateway speaks plaintext upstream). `None` is an error.
///   The server chain must validate to one of its certificates (EKU serverAuth).
/// * `client_cert`: `(CertFile chain PEM, KeyFile PEM)` presented when the server asks.
/// * `sni`: when set, it is the only name checked: the server certificate must be valid for
///   it as a DNS name (DNS SAN, wildcards per RFC 6125; the subject CN is ignored) — newer
///   Consul's `match_subject_alt_names: [exact: SNI]`. Connect with
///   `ServerName::try_from(sni)` so that it is also sent as SNI.
///   When unset, no SNI is sent (`enable_sni = false`) and only the chain is validated,
///   whatever name the caller connects with.
pub fn origination_client_config(
    ca_file_pem: Option<&str>,
    client_cert: Option<(&str, &str)>,
    sni: Option<&str>,
) -> Result<Arc<ClientConfig>, CaError> {
    let ca = ca_file_pem.ok_or_else(|| {
        CaError::Config(
            "TLS origination needs a CAFile; without one the gateway connects in plaintext".into(),
        )
    })?;
    let roots = root_store(&[ca.to_string()])?;
    let identity = match sni {
        Some(s) => Identity::DnsName(
            ServerName::try_from(s.to_string())
                .map_err(|e| CaError::Config(format!("SNI {s:?} is not a DNS name: {e}")))?,
        ),
        None => Identity::Any,
    };
    let builder = client_builder(roots, identity, &TlsSettings::default())?;
    let mut cfg = match client_cert {
        Some((chain_pem, key_pem)) => {
            builder.with_client_auth_cert(certs_from_pem(chain_pem)?, key_from_pem(key_pem)?)?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.enable_sni = sni.is_some();
    Ok(Arc::new(cfg))
}

// === SNI resolver ===

/// Picks the server certificate by the client's SNI (one leaf per service behind a
/// terminating gateway; the SNI is the service SNI). Names are matched case-insensitively
/// and exactly (no wildcards); no SNI or an unknown SNI yields no certificate, which aborts
/// the handshake (Consul's catch-all filter chain resets such connections).
///
/// The table is copy-on-write behind an `Arc`: [`insert`](Self::insert),
/// [`remove`](Self::remove) and [`replace_all`](Self::replace_all) swap it atomically, so
/// rotating a leaf affects only handshakes that start afterwards; established connections
/// keep the certificate they negotiated.
#[derive(Debug, Default)]
pub struct SniResolver {
    table: RwLock<Arc<HashMap<String, Arc<CertifiedKey>>>>,
}

impl SniResolver {
    /// An empty resolver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the certificate for `sni` from a PEM chain (leaf first) and key.
    pub fn insert(&self, sni: &str, chain_pem: &str, key_pem: &str) -> Result<(), CaError> {
        let key = certified_key(chain_pem, key_pem)?;
        self.insert_key(sni, key);
        Ok(())
    }

    /// Adds or replaces an already loaded certificate for `sni`.
    pub fn insert_key(&self, sni: &str, key: Arc<CertifiedKey>) {
        let mut guard = self.table.write();
        let mut next = HashMap::clone(&guard);
        next.insert(sni.to_ascii_lowercase(), key);
        *guard = Arc::new(next);
    }

    /// Removes the certificate for `sni`; `true` if there was one.
    pub fn remove(&self, sni: &str) -> bool {
        let mut guard = self.table.write();
        let key = sni.to_ascii_lowercase();
        if !guard.contains_key(&key) {
            return false;
        }
        let mut next = HashMap::clone(&guard);
        next.remove(&key);
        *guard = Arc::new(next);
        true
    }

    /// Replaces the whole table in one step.
    pub fn replace_all(&self, entries: impl IntoIterator<Item = (String, Arc<CertifiedKey>)>) {
        let next: HashMap<_, _> = entries
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        *self.table.write() = Arc::new(next);
    }

    /// The certificate currently served for `sni`.
    pub fn get(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let table = self.table.read().clone();
        table.get(&sni.to_ascii_lowercase()).cloned()
    }

    /// The names currently served, sorted.
    pub fn names(&self) -> Vec<String> {
        let table = self.table.read().clone();
        let mut names: Vec<String> = table.keys().cloned().collect();
        names.sort();
        names
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get(client_hello.server_name()?)
    }
}

// === the agent's HTTPS API ===

/// TLS for the agent's HTTPS API: its certificate chain and key; with
/// `client_ca_pem` (`verify_incoming`), clients must present a certificate
/// of that CA. HTTP/1.1 is the protocol offered (ALPN), with the versions
/// and suites `settings` allow (`tls_min_version`, `tls_cipher_suites`).
pub fn api_server_config(
    chain_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
    settings: &TlsSettings,
) -> Result<Arc<ServerConfig>, CaError> {
    let key = certified_key(chain_pem, key_pem)?;
    let builder = server_builder(settings)?;
    let mut server = match client_ca_pem {
        Some(ca) => {
            let roots = root_store(&[ca.to_string()])?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| CaError::Config(format!("client verifier: {e}")))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(Arc::new(FixedCert(key)))
        }
        None => builder
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedCert(key))),
    };
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

// === between agents (the cluster CA, not the mesh) ===

/// Mutual TLS on the cluster's server port (traffic between agents): the
/// server side, which requires a client certificate of the cluster CA, and the
/// client side, which presents this agent's certificate and accepts servers
/// whose chain leads to the cluster CA. `ca_pem`: the cluster CA; `chain_pem`
/// and `key_pem`: this agent's certificate (see [`crate::sign_agent_cert`]);
/// `settings`: the versions and suites both sides allow.
pub fn cluster_configs(
    ca_pem: &str,
    chain_pem: &str,
    key_pem: &str,
    settings: &TlsSettings,
) -> Result<(Arc<ServerConfig>, ClientConfig), CaError> {
    let roots = root_store(&[ca_pem.to_string()])?;
    let key = certified_key(chain_pem, key_pem)?;
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider())
            .build()
            .map_err(|e| CaError::Config(format!("client verifier: {e}")))?;
    let server = server_builder(settings)?
        .with_client_cert_verifier(client_verifier)
        .with_cert_resolver(Arc::new(FixedCert(key)));
    // Servers: the chain must lead to the cluster CA; the name a server is
    // reached by is not checked (agents join by address or host name;
    // holding a certificate of the cluster CA is what admits a peer —
    // Consul's default `verify_server_hostname = false`).
    let client = client_builder(roots, Identity::Any, settings)?
        .with_client_auth_cert(certs_from_pem(chain_pem)?, key_from_pem(key_pem)?)?;
    Ok((Arc::new(server), client))
}
