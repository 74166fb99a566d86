//! Certificate inspection (x509-parser) and chain validation (rustls-webpki).
//!
//! Chain validation is webpki's; the identity (URI SAN) check is ours, because webpki only
//! matches DNS names and IP addresses — the same split as linkerd's meshtls verifier.

use std::net::IpAddr;
use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::CaError;
use crate::spiffe::{ServiceId, SpiffeId};
use crate::util::{certs_from_pem, certs_from_pems, colon_hex, format_rfc3339};

/// What [`cert_info`] reports about a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// Serial number, colon-hex of its minimal big-endian bytes (Consul's `EncodeSerialNumber`).
    pub serial: String,
    /// `NotBefore`, RFC 3339 UTC.
    pub not_before: String,
    /// `NotAfter`, RFC 3339 UTC.
    pub not_after: String,
    /// URI SANs, in certificate order.
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// Basic constraints `CA:TRUE`.
    pub is_ca: bool,
    /// Subject common name, if any.
    pub subject_cn: Option<String>,
    /// Issuer common name, if any.
    pub issuer_cn: Option<String>,
    /// Subject key identifier, colon-hex.
    pub subject_key_id: Option<String>,
    /// Authority key identifier (key id part), colon-hex.
    pub authority_key_id: Option<String>,
}

pub(crate) fn parse_der<'a>(der: &'a [u8]) -> Result<X509Certificate<'a>, CaError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| CaError::Parse(format!("X.509 certificate: {e}")))?;
    Ok(cert)
}

/// URI, DNS and IP SANs of a parsed certificate.
pub(crate) fn sans(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<String>, Vec<IpAddr>) {
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uris.push((*u).to_string()),
                GeneralName::DNSName(d) => dns.push((*d).to_string()),
                GeneralName::IPAddress(raw) => match raw.len() {
                    4 => {
                        let b: [u8; 4] = [raw[0], raw[1], raw[2], raw[3]];
                        ips.push(IpAddr::from(b));
                    }
                    16 => {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(raw);
                        ips.push(IpAddr::from(b));
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    (uris, dns, ips)
}

/// URI SANs of a DER certificate (empty when it cannot be parsed).
pub(crate) fn uri_sans_der(der: &[u8]) -> Vec<String> {
    parse_der(der).map(|c| sans(&c).0).unwrap_or_default()
}

/// The service identity carried by a DER certificate: exactly one URI SAN may parse as a
/// service SPIFFE id (Consul signs exactly one URI per leaf).
pub(crate) fn service_id_of_der(der: &[u8]) -> Result<ServiceId, CaError> {
    let uris = uri_sans_der(der);
    let ids: Vec<ServiceId> = uris.iter().filter_map(|u| ServiceId::parse(u)).collect();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CaError::Identity(format!(
            "certificate carries no SPIFFE service URI SAN (URIs: {uris:?})"
        ))),
        _ => Err(CaError::Identity(format!(
            "certificate carries more than one SPIFFE service URI SAN: {uris:?}"
        ))),
    }
}

/// Trust domain of a CA certificate: the host of its `spiffe://<td>` URI SAN.
pub(crate) fn signing_trust_domain(cert: &X509Certificate<'_>) -> Option<String> {
    sans(cert).0.iter().find_map(|u| match SpiffeId::parse(u)? {
        SpiffeId::Signing { trust_domain } => Some(trust_domain.to_ascii_lowercase()),
        _ => None,
    })
}

fn common_name(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

pub(crate) fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(kid) => Some(kid.0.to_vec()),
            _ => None,
        })
}

fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

pub(crate) fn info_of(cert: &X509Certificate<'_>) -> CertInfo {
    let (uris, dns_names, ip_addresses) = sans(cert);
    CertInfo {
        serial: colon_hex(&cert.serial.to_bytes_be()),
        not_before: format_rfc3339(cert.validity().not_before.to_datetime()),
        not_after: format_rfc3339(cert.validity().not_after.to_datetime()),
        uris,
        dns_names,
        ip_addresses,
        is_ca: cert.is_ca(),
        subject_cn: common_name(cert.subject()),
        issuer_cn: common_name(cert.issuer()),
        subject_key_id: subject_key_id(cert).map(|k| colon_hex(&k)),
        authority_key_id: authority_key_id(cert).map(|k| colon_hex(&k)),
    }
}

/// Facts about the first certificate of a PEM string.
pub fn cert_info(pem: &str) -> Result<CertInfo, CaError> {
    let certs = certs_from_pem(pem)?;
    let cert = parse_der(&certs[0])?;
    Ok(info_of(&cert))
}

/// Trust anchors from DER roots.
pub(crate) fn anchors<'a>(
    roots: &'a [CertificateDer<'static>],
) -> Result<Vec<TrustAnchor<'a>>, CaError> {
    roots
        .iter()
        .map(|r| {
            webpki::anchor_from_trusted_cert(r)
                .map_err(|e| CaError::Parse(format!("root certificate: {e}")))
        })
        .collect()
}

#[allow(deprecated)] // `RequiredEkuNotFound` is still produced by some paths
fn is_eku_error(e: &webpki::Error) -> bool {
    matches!(
        e,
        webpki::Error::RequiredEkuNotFound | webpki::Error::RequiredEkuNotFoundContext(_)
    )
}

/// Chain-validates `leaf` (+ `intermediates`) against `anchors` at `now`, accepting the
/// server-auth or the client-auth extended key usage.
pub(crate) fn verify_chain(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &[TrustAnchor<'_>],
    now: UnixTime,
) -> Result<(), CaError> {
    let ee = EndEntityCert::try_from(leaf).map_err(CaError::Untrusted)?;
    let algs = webpki::ALL_VERIFICATION_ALGS;
    let server = ee.verify_for_usage(
        algs,
        anchors,
        intermediates,
        now,
        KeyUsage::server_auth(),
        None,
        None,
    );
    let Err(server_err) = server else {
        return Ok(());
    };
    match ee.verify_for_usage(
        algs,
        anchors,
        intermediates,
        now,
        KeyUsage::client_auth(),
        None,
        None,
    ) {
        Ok(_) => Ok(()),
        Err(client_err) if is_eku_error(&server_err) => Err(CaError::Untrusted(client_err)),
        Err(_) => Err(CaError::Untrusted(server_err)),
    }
}

pub(crate) fn unix_time(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default())
}

/// Verifies a mesh leaf and returns its service identity.
///
/// * `roots_pem`: the trust bundle (every `RootCert` of `/v1/connect/ca/roots`; one string may
///   hold several certificates);
/// * `leaf_pem`: the leaf followed by any intermediates, exactly as issued (`CertPEM`), e.g.
///   leaf + cross-signed old-root intermediate during a rotation;
/// * `now`: the validation time.
///
/// Rules: webpki path building to one of the roots, with EKU serverAuth *or* clientAuth;
/// then the leaf must carry exactly one SPIFFE *service* URI SAN, whose trust domain must be
/// the trust domain (URI SAN) of one of the roots when the roots declare any.
pub fn verify_leaf(
    roots_pem: &[String],
    leaf_pem: &str,
    now: SystemTime,
) -> Result<ServiceId, CaError> {
    let roots = certs_from_pems(roots_pem)?;
    let anchors = anchors(&roots)?;
    let chain = certs_from_pem(leaf_pem)?;
    verify_chain(&chain[0], &chain[1..], &anchors, unix_time(now))?;
    let id = service_id_of_der(&chain[0])?;

    let mut domains = Vec::new();
    for r in &roots {
        if let Some(td) = signing_trust_domain(&parse_der(r)?) {
            domains.push(td);
        }
    }
    if !domains.is_empty()
        && !domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&id.trust_domain))
    {
        return Err(CaError::Identity(format!(
            "leaf trust domain {} is not one of the roots' trust domains {domains:?}",
            id.trust_domain
        )));
    }
    Ok(id)
}
