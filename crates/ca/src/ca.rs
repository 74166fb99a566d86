//! The built-in CA (Consul's `consul` provider): root generation, leaf signing (directly or
//! from an agent's CSR) and cross-signing for root rotation.
//!
//! Certificate profiles mirror Consul's `agent/connect/ca/provider_consul.go`
//! (`generateCA`, `Sign`, `CrossSignCA`), `agent/connect/common_names.go` (`CACN`) and
//! `agent/connect/parsing.go` (`KeyId`, `HexString`); see the crate docs for the field-by-field
//! profile.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::public_key::PublicKey;

use crate::CaError;
use crate::spiffe::{ServiceId, SpiffeId, signing_uri, trust_domain};
use crate::util::{
    certs_from_pem, colon_hex, compact_uid, csr_from_pem, now_utc, push_pem, random_serial,
    serial_bytes, sha1, sha256, to_time_duration,
};
use crate::verify::{info_of, parse_der, signing_trust_domain, subject_key_id};

/// Default leaf lifetime (Consul `LeafCertTTL` = 72h).
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(72 * 3600);
/// Default root lifetime (Consul `RootCertTTL` = 87600h, 10 years).
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(87_600 * 3600);
/// Backdating of `NotBefore` for clock drift (Consul `CertificateTimeDriftBuffer`).
pub const CERT_TIME_DRIFT: Duration = Duration::from_secs(60);
/// Lifetime of a cross-signed root (Consul `CrossSignCA`: 7 days, > 2 × default leaf TTL).
pub const CROSS_SIGN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// `CARoot.Name` of roots made by the built-in provider.
pub const ROOT_NAME: &str = "Consul CA Root Cert";
/// Provider name used in the root's common name.
pub const PROVIDER: &str = "consul";

/// A trusted CA root, as replicated in the state store and served (minus nothing: it holds no
/// secret) by `/v1/connect/ca/roots`. JSON field names are Consul's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CaRoot {
    /// SHA-1 fingerprint of the root certificate's DER, colon-hex (Consul's
    /// `CalculateCertFingerprint`; this is `ActiveRootID` when active).
    #[serde(rename = "ID")]
    pub id: String,
    /// Human-friendly name ([`ROOT_NAME`]).
    pub name: String,
    /// X.509 serial number of the root certificate.
    pub serial_number: u64,
    /// Subject key id of the certificate that signs leaves (the root itself for the built-in
    /// provider), colon-hex of SHA-256(SubjectPublicKeyInfo) — 32 bytes like Consul.
    #[serde(rename = "SigningKeyID")]
    pub signing_key_id: String,
    /// Cluster id this root was generated under (Consul fills it with the cluster id).
    #[serde(default)]
    pub external_trust_domain: String,
    /// Root `NotBefore`, RFC 3339.
    pub not_before: String,
    /// Root `NotAfter`, RFC 3339.
    pub not_after: String,
    /// PEM of the root certificate (trailing newline).
    #[serde(rename = "RootCert")]
    pub root_cert_pem: String,
    /// PEM intermediates attached to every leaf this root signs (during a rotation: the
    /// certificate of this root cross-signed by the previous root's key, first).
    /// JSON `null` when empty, as Consul.
    #[serde(
        default,
        serialize_with = "ser_null_if_empty",
        deserialize_with = "de_null_as_empty"
    )]
    pub intermediate_certs: Vec<String>,
    /// `"ec"`.
    pub private_key_type: String,
    /// `256`.
    pub private_key_bits: u32,
    /// Whether this root currently signs leaves (exactly one root is active).
    pub active: bool,
    /// When the root stopped being active (RFC 3339); drives pruning. Consul keeps this out
    /// of its JSON (`json:"-"`): the API layer should not emit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_out_at: Option<String>,
}

fn ser_null_if_empty<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        v.serialize(s)
    }
}

fn de_null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl CaRoot {
    /// Builds the root record from a CA certificate (Consul's `newCARoot`).
    pub fn from_cert_pem(cert_pem: &str, cluster_id: &str) -> Result<CaRoot, CaError> {
        let certs = certs_from_pem(cert_pem)?;
        let der = &certs[0];
        let cert = parse_der(der)?;
        if !cert.is_ca() {
            return Err(CaError::Parse("root certificate is not a CA".into()));
        }
        let info = info_of(&cert);
        let skid = subject_key_id(&cert)
            .ok_or_else(|| CaError::Parse("root certificate has no subject key id".into()))?;
        let (key_type, key_bits) = key_info(&cert)?;
        let serial = cert.serial.to_u64_digits();
        let mut root_cert_pem = String::new();
        push_pem(&mut root_cert_pem, cert_pem);
        Ok(CaRoot {
            id: colon_hex(&sha1(der)),
            name: ROOT_NAME.to_string(),
            // Go's big.Int.Uint64(): the low 64 bits.
            serial_number: serial.first().copied().unwrap_or(0),
            signing_key_id: colon_hex(&skid),
            external_trust_domain: cluster_id.to_string(),
            not_before: info.not_before,
            not_after: info.not_after,
            root_cert_pem,
            intermediate_certs: Vec::new(),
            private_key_type: key_type,
            private_key_bits: key_bits,
            active: true,
            rotated_out_at: None,
        })
    }

    /// The trust domain of this root (host of its `spiffe://<td>` URI SAN), lower-case.
    pub fn trust_domain(&self) -> Result<String, CaError> {
        let certs = certs_from_pem(&self.root_cert_pem)?;
        signing_trust_domain(&parse_der(&certs[0])?)
            .ok_or_else(|| CaError::Parse("root certificate has no spiffe:// URI SAN".into()))
    }
}

/// Key type/bits of a certificate's public key (Consul's `KeyInfoFromCert`).
fn key_info(cert: &X509Certificate<'_>) -> Result<(String, u32), CaError> {
    match cert.public_key().parsed() {
        Ok(PublicKey::EC(point)) => Ok(("ec".into(), point.key_size() as u32)),
        Ok(PublicKey::RSA(rsa)) => Ok(("rsa".into(), rsa.key_size() as u32)),
        _ => Err(CaError::Parse("unsupported CA key type".into())),
    }
}

/// The CA's private signing material: key (PKCS#8 PEM) and the certificate it signs leaves
/// with (the root for the built-in provider). Lives in the replicated state next to the roots,
/// but must never be returned by an API. `Debug` redacts the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaSigner {
    /// PKCS#8 PEM private key.
    #[serde(rename = "SigningKey")]
    pub key_pem: String,
    /// PEM of the certificate matching `key_pem`.
    #[serde(rename = "SigningCert")]
    pub cert_pem: String,
}

impl fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaSigner")
            .field("key_pem", &"[redacted]")
            .field("cert_pem", &self.cert_pem)
            .finish()
    }
}

impl CaSigner {
    fn key_pair(&self) -> Result<KeyPair, CaError> {
        crate::util::key_pair_from_pem(&self.key_pem)
            .map_err(|e| CaError::Pem(format!("CA signing key: {e}")))
    }

    /// An rcgen issuer for `cert_pem` + `key_pem`, after checking that they belong together
    /// (Consul's `validateIntermediateSignedByPrivateKey`).
    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, CaError> {
        let key = self.key_pair()?;
        let certs = certs_from_pem(&self.cert_pem)?;
        let cert = parse_der(&certs[0])?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CaError::Config(
                "CA signing key does not match the signing certificate".into(),
            ));
        }
        if !cert.is_ca() {
            return Err(CaError::Config("signing certificate is not a CA".into()));
        }
        Ok(Issuer::from_ca_cert_der(&certs[0], key)?)
    }
}

/// An issued leaf certificate (Consul's `IssuedCert`, as returned by
/// `/v1/agent/connect/ca/leaf/:service`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Leaf {
    /// Serial number, colon-hex (e.g. `"08"`, `"4f:2a:…"`).
    pub serial_number: String,
    /// PEM of the leaf followed by the root's intermediates (cross-signed certs).
    #[serde(rename = "CertPEM")]
    pub cert_pem: String,
    /// PKCS#8 PEM private key; empty when signed from a CSR (the requester keeps its key).
    #[serde(rename = "PrivateKeyPEM")]
    pub private_key_pem: String,
    /// Service name.
    pub service: String,
    /// The SPIFFE id (URI SAN).
    #[serde(rename = "ServiceURI")]
    pub service_uri: String,
    /// `NotBefore`, RFC 3339.
    pub valid_after: String,
    /// `NotAfter`, RFC 3339.
    pub valid_before: String,
}

// === roots ===

/// Consul's `CACN`: `{pri|sec}-<uid8>.<provider>.ca.<cluster-id first 8>.consul`, with the
/// uid and provider stripped to `[a-z0-9]`.
pub fn ca_common_name(provider: &str, unique_id: &str, cluster_id: &str, primary: bool) -> String {
    let clean = |s: &str| -> String {
        s.to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .collect()
    };
    let typ = if primary { "pri" } else { "sec" };
    let uid = truncate(&clean(unique_id), 8);
    let prov = truncate(&clean(provider), 64 - 32);
    format!("{typ}-{uid}.{prov}.ca.{}.consul", truncate(cluster_id, 8))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Consul's `KeyId`: SHA-256 over the DER SubjectPublicKeyInfo (32 bytes).
fn key_id(key: &impl PublicKeyData) -> Vec<u8> {
    sha256(&key.subject_public_key_info())
}

fn cn_dn(cn: &str) -> Result<DistinguishedName, CaError> {
    let mut dn = DistinguishedName::new();
    // Go encodes printable names as PrintableString.
    let value = match cn.to_string().try_into() {
        Ok(p) => DnValue::PrintableString(p),
        Err(_) => DnValue::Utf8String(cn.to_string()),
    };
    dn.push(DnType::CommonName, value);
    Ok(dn)
}

fn uri_san(uri: &str) -> Result<SanType, CaError> {
    Ok(SanType::URI(uri.to_string().try_into()?))
}

/// Generates a new self-signed root for the built-in CA (Consul's `GenerateCAChain` +
/// `generateCA` + `newCARoot`).
///
/// Profile: ECDSA P-256 key; subject `CN=pri-<uid>.consul.ca.<cluster8>.consul`; issuer = subject;
/// random 63-bit serial; `NotBefore` = now − 1 min; `NotAfter` = now + `ttl`; extensions:
/// KeyUsage (critical) digitalSignature+keyCertSign+cRLSign, BasicConstraints (critical)
/// CA:TRUE without path length, SubjectKeyId = AuthorityKeyId = SHA-256(SPKI), SAN
/// `URI:spiffe://<cluster-id>.consul`.
pub fn new_root(cluster_id: &str, ttl: Duration) -> Result<(CaRoot, CaSigner), CaError> {
    if cluster_id.is_empty() {
        return Err(CaError::Config("cluster id must not be empty".into()));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let td = trust_domain(cluster_id);
    let now = now_utc();
    let drift = to_time_duration(CERT_TIME_DRIFT)?;

    let mut params = CertificateParams::default();
    params.distinguished_name =
        cn_dn(&ca_common_name(PROVIDER, &compact_uid()?, cluster_id, true))?;
    params.serial_number = Some(SerialNumber::from_slice(&serial_bytes(random_serial()?)));
    params.not_before = now - drift;
    params.not_after = now + to_time_duration(ttl)?;
    params.subject_alt_names = vec![uri_san(&signing_uri(&td))?];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(&key));

    let cert = params.self_signed(&key)?;
    let cert_pem = cert.pem();
    let root = CaRoot::from_cert_pem(&cert_pem, cluster_id)?;
    let signer = CaSigner {
        key_pem: key.serialize_pem(),
        cert_pem: root.root_cert_pem.clone(),
    };
    Ok((root, signer))
}

// === leaves ===

/// Leaf common name: `<service stripped to [a-z0-9]>.svc.<ns>.<td first 8>.consul` (Consul's
/// historical `ServiceCN`; informational only). The service part is shortened so that the
/// name fits the 64-character X.520 limit.
pub fn leaf_common_name(id: &ServiceId) -> String {
    let svc: String = id
        .service
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .collect();
    let ns = if id.namespace.is_empty() {
        "default"
    } else {
        &id.namespace
    };
    let suffix = format!(".svc.{ns}.{}.consul", truncate(&id.trust_domain, 8));
    let room = 64usize.saturating_sub(suffix.len()).max(1);
    format!("{}{suffix}", truncate(&svc, room))
}

/// Checks that the root is usable for signing now (Consul's `checkExpired`).
fn check_root_valid(root: &CaRoot) -> Result<(), CaError> {
    let certs = certs_from_pem(&root.root_cert_pem)?;
    let cert = parse_der(&certs[0])?;
    let now = now_utc();
    let v = cert.validity();
    if now < v.not_before.to_datetime() || now > v.not_after.to_datetime() {
        return Err(CaError::RootExpired(format!(
            "root {} is valid from {} to {}",
            root.id, root.not_before, root.not_after
        )));
    }
    Ok(())
}

/// Signs a leaf for `public_key` with `sans` (the SPIFFE URI first). Consul's
/// `ConsulProvider.Sign` plus the chain assembly of `CAManager.SignCertificate`.
fn issue(
    signer: &CaSigner,
    root: &CaRoot,
    id: &ServiceId,
    public_key: &impl PublicKeyData,
    extra_dns: &[String],
    extra_ips: &[IpAddr],
    ttl: Duration,
) -> Result<(String, crate::verify::CertInfo), CaError> {
    let td = root.trust_domain()?;
    if !id.trust_domain.eq_ignore_ascii_case(&td) {
        return Err(CaError::InvalidCsr(format!(
            "SPIFFE ID in CSR from a different trust domain: {}, we are {td}",
            id.trust_domain
        )));
    }
    check_root_valid(root)?;
    let issuer = signer.issuer()?;

    let mut sans = vec![uri_san(&id.uri())?];
    for d in extra_dns {
        sans.push(SanType::DnsName(d.clone().try_into()?));
    }
    for ip in extra_ips {
        sans.push(SanType::IpAddress(*ip));
    }
    let params = end_entity_params(&leaf_common_name(id), sans, ttl, public_key)?;
    let cert = params.signed_by(public_key, &issuer)?;
    let info = info_of(&parse_der(cert.der())?);
    let mut pem = cert.pem();
    for inter in &root.intermediate_certs {
        push_pem(&mut pem, inter);
    }
    Ok((pem, info))
}

/// The profile every certificate this CA issues to an end entity shares
/// (mesh leaves and agent certificates): `CN=<cn>`, the given SANs, a random
/// 63-bit serial, valid from one minute ago (clock drift, like Consul) for
/// `ttl`, not a CA, the leaf key usages, client and server auth, key ids.
fn end_entity_params(
    cn: &str,
    sans: Vec<SanType>,
    ttl: Duration,
    public_key: &impl PublicKeyData,
) -> Result<CertificateParams, CaError> {
    let effective_now = now_utc() - to_time_duration(CERT_TIME_DRIFT)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = cn_dn(cn)?;
    params.serial_number = Some(SerialNumber::from_slice(&serial_bytes(random_serial()?)));
    params.not_before = effective_now;
    params.not_after = effective_now + to_time_duration(ttl)?;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DataEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(public_key));
    Ok(params)
}

fn leaf_from(id: &ServiceId, pem: String, info: crate::verify::CertInfo, key_pem: String) -> Leaf {
    Leaf {
        serial_number: info.serial,
        cert_pem: pem,
        private_key_pem: key_pem,
        service: id.service.clone(),
        service_uri: info.uris.first().cloned().unwrap_or_else(|| id.uri()),
        valid_after: info.not_before,
        valid_before: info.not_after,
    }
}

/// Issues a leaf for `id` directly on the server. `key` is the leaf key pair; `None` generates
/// an ECDSA P-256 key. The returned `private_key_pem` is PKCS#8.
///
/// Profile: subject `CN=<leaf_common_name>`; issuer = signing certificate's subject; random
/// 63-bit serial; `NotBefore` = now − 1 min, `NotAfter` = `NotBefore` + `ttl`; extensions:
/// SAN `URI:<spiffe id>` (no DNS SAN), KeyUsage (critical) digitalSignature, keyEncipherment,
/// dataEncipherment, keyAgreement; ExtKeyUsage clientAuth, serverAuth; BasicConstraints
/// (critical) CA:FALSE; SubjectKeyId = SHA-256(leaf SPKI); AuthorityKeyId = the root's SKID.
/// `cert_pem` = leaf + `root.intermediate_certs`.
pub fn sign_leaf(
    signer: &CaSigner,
    root: &CaRoot,
    id: &ServiceId,
    ttl: Duration,
    key: Option<KeyPair>,
) -> Result<Leaf, CaError> {
    let key = match key {
        Some(k) => k,
        None => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
    };
    let (pem, info) = issue(signer, root, id, &key, &[], &[], ttl)?;
    Ok(leaf_from(id, pem, info, key.serialize_pem()))
}

/// Issues the certificate an agent presents on the cluster's server port
/// (traffic between agents; not the mesh): `CN=<node>`, DNS SAN
/// `<role>.<datacenter>.meshgate` (`role`: `server` or `client`), IP SANs of
/// the addresses it is reached at, usable as client and server certificate,
/// signed by the *cluster* CA `signer` (made by `meshgate setup`). Returns
/// `(cert_pem, key_pem /* PKCS#8 */)`.
pub fn sign_agent_cert(
    signer: &CaSigner,
    node: &str,
    role: &str,
    datacenter: &str,
    ips: &[IpAddr],
    ttl: Duration,
) -> Result<(String, String), CaError> {
    let issuer = signer.issuer()?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut sans = vec![SanType::DnsName(
        format!("{role}.{datacenter}.meshgate").try_into()?,
    )];
    for ip in ips {
        sans.push(SanType::IpAddress(*ip));
    }
    let params = end_entity_params(node, sans, ttl, &key)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What an agent does before asking the servers for a leaf (Consul's `generateNewLeaf`):
/// a fresh ECDSA P-256 key and a CSR with an empty subject and a single URI SAN (critical,
/// since the subject is empty). Returns `(key_pem /* PKCS#8 */, csr_pem)`.
pub fn generate_key_and_csr(id: &ServiceId) -> Result<(String, String), CaError> {
    generate_key_and_csr_with_sans(&id.uri(), &[], &[])
}

/// Like [`generate_key_and_csr`] for any SPIFFE URI, with extra DNS/IP SANs (Consul's
/// `DNSSAN`/`IPSAN` leaf request options; ports after `:` are dropped and duplicates removed).
pub fn generate_key_and_csr_with_sans(
    uri: &str,
    dns_names: &[String],
    ip_addresses: &[IpAddr],
) -> Result<(String, String), CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let mut sans = vec![uri_san(uri)?];
    let mut seen = Vec::new();
    for host in dns_names {
        let host = host.split(':').next().unwrap_or_default();
        if host.is_empty() || seen.iter().any(|h: &String| h == host) {
            continue;
        }
        seen.push(host.to_string());
        sans.push(SanType::DnsName(host.to_string().try_into()?));
    }
    for ip in ip_addresses {
        sans.push(SanType::IpAddress(*ip));
    }
    params.subject_alt_names = sans;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// Signs an agent's CSR for a *service* identity (Consul's `AuthorizeAndSignCertificate` +
/// `SignCertificate`, minus the ACL and datacenter checks, which belong to the API layer).
///
/// The CSR's signature must verify; it must carry exactly one URI SAN, no e-mail (or other)
/// SANs, and the URI must be a service SPIFFE id in the root's trust domain (case-insensitive).
/// DNS and IP SANs are copied; requested key usages / basic constraints are ignored (the leaf
/// profile of [`sign_leaf`] is always used). Refusals are [`CaError::InvalidCsr`].
/// The returned `private_key_pem` is empty.
pub fn sign_csr(
    signer: &CaSigner,
    root: &CaRoot,
    csr_pem: &str,
    ttl: Duration,
) -> Result<Leaf, CaError> {
    let der = csr_from_pem(csr_pem)?;
    let csr = CertificateSigningRequestParams::from_der(&der)
        .map_err(|e| CaError::InvalidCsr(format!("cannot parse or verify CSR: {e}")))?;
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for san in &csr.params.subject_alt_names {
        match san {
            SanType::URI(u) => uris.push(u.as_str().to_string()),
            SanType::DnsName(d) => dns.push(d.as_str().to_string()),
            SanType::IpAddress(ip) => ips.push(*ip),
            SanType::Rfc822Name(_) => {
                return Err(CaError::InvalidCsr(
                    "CSR SAN does not allow specifying email addresses".into(),
                ));
            }
            _ => {
                return Err(CaError::InvalidCsr(
                    "CSR SAN contains an unsupported name type".into(),
                ));
            }
        }
    }
    if uris.len() != 1 {
        return Err(CaError::InvalidCsr(format!(
            "CSR SAN contains an invalid number of URIs: {}",
            uris.len()
        )));
    }
    let id = match SpiffeId::parse(&uris[0]) {
        Some(SpiffeId::Service(id)) => id,
        Some(_) => {
            return Err(CaError::InvalidCsr(
                "SPIFFE ID in CSR must be a service ID".into(),
            ));
        }
        None => {
            return Err(CaError::InvalidCsr(format!(
                "SPIFFE ID is not in the expected format: {}",
                uris[0]
            )));
        }
    };
    let (pem, info) = issue(signer, root, &id, &csr.public_key, &dns, &ips, ttl)?;
    Ok(leaf_from(&id, pem, info, String::new()))
}

// === rotation ===

/// Rebuilds an X.509 name as an rcgen name, keeping each attribute's string type so that the
/// re-encoded bytes equal the original (issuer/subject chaining compares bytes).
fn dn_from_x509(name: &x509_parser::x509::X509Name<'_>) -> Result<DistinguishedName, CaError> {
    let mut dn = DistinguishedName::new();
    for attr in name.iter_attributes() {
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| CaError::Parse("bad attribute OID in name".into()))?
            .collect();
        let data = attr.attr_value().data;
        let text = std::str::from_utf8(data)
            .map_err(|_| CaError::Parse("non-UTF-8 attribute in name".into()))?
            .to_string();
        let value = match attr.attr_value().header.tag() {
            Tag::PrintableString => DnValue::PrintableString(text.try_into()?),
            Tag::Ia5String => DnValue::Ia5String(text.try_into()?),
            Tag::Utf8String => DnValue::Utf8String(text),
            other => {
                return Err(CaError::Parse(format!(
                    "unsupported string type {other:?} in name"
                )));
            }
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// Cross-signs `new_root`'s certificate with the previous CA's key (Consul's `CrossSignCA`):
/// same subject, public key, SubjectKeyId, SANs, key usages and CA:TRUE as the new root, but
/// issuer = the old root's subject, AuthorityKeyId = the old root's SKID, a fresh serial,
/// `NotBefore` = now − 1 min and `NotAfter` = now − 1 min + [`CROSS_SIGN_TTL`].
///
/// Put the result first in `new_root.intermediate_certs` (see [`crate::rotation`]).
pub fn cross_sign(old_signer: &CaSigner, new_root: &CaRoot) -> Result<String, CaError> {
    cross_sign_with_ttl(old_signer, new_root, CROSS_SIGN_TTL)
}

/// [`cross_sign`] with an explicit lifetime (it must cover the lifetime of leaves issued by the
/// new root to peers that only trust the old root: ≥ 2 × leaf TTL is safe).
pub fn cross_sign_with_ttl(
    old_signer: &CaSigner,
    new_root: &CaRoot,
    ttl: Duration,
) -> Result<String, CaError> {
    let issuer = old_signer.issuer()?;
    let certs = certs_from_pem(&new_root.root_cert_pem)?;
    let cert = parse_der(&certs[0])?;
    if !cert.is_ca() {
        return Err(CaError::Parse("new root is not a CA certificate".into()));
    }
    let skid = subject_key_id(&cert)
        .ok_or_else(|| CaError::Parse("new root has no subject key id".into()))?;
    let path_len = cert
        .basic_constraints()
        .ok()
        .flatten()
        .and_then(|bc| bc.value.path_len_constraint);

    let effective_now = now_utc() - to_time_duration(CERT_TIME_DRIFT)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn_from_x509(cert.subject())?;
    params.serial_number = Some(SerialNumber::from_slice(&serial_bytes(random_serial()?)));
    params.not_before = effective_now;
    params.not_after = effective_now + to_time_duration(ttl)?;
    let (uris, dns, ips) = crate::verify::sans(&cert);
    let mut sans = Vec::new();
    for u in uris {
        sans.push(uri_san(&u)?);
    }
    for d in dns {
        sans.push(SanType::DnsName(d.try_into()?));
    }
    for ip in ips {
        sans.push(SanType::IpAddress(ip));
    }
    params.subject_alt_names = sans;
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n.min(u8::MAX as u32) as u8),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(skid);

    let spki = SubjectPublicKeyInfo::from_der(cert.public_key().raw)?;
    let xc = params.signed_by(&spki, &issuer)?;
    Ok(xc.pem())
}

// === `meshgate tls`: a CA and certificates for agents' TLS ===

/// A certificate authority for agents' TLS (`meshgate tls ca create`, as
/// Consul's `tls ca create`): ECDSA P-256, valid `days`, named
/// `common_name` (default `Consul Agent CA <serial>`); with
/// `name_constraints`, it may only sign names under those DNS domains.
/// Returns `(cert_pem, key_pem)`.
pub fn new_agent_ca(
    days: u32,
    common_name: &str,
    name_constraints: &[String],
) -> Result<(String, String), CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let serial = random_serial()?;
    let now = now_utc();
    let mut params = CertificateParams::default();
    let cn = if common_name.is_empty() {
        format!("Consul Agent CA {serial}")
    } else {
        common_name.to_string()
    };
    params.distinguished_name = cn_dn(&cn)?;
    params.serial_number = Some(SerialNumber::from_slice(&serial_bytes(serial)));
    params.not_before = now - to_time_duration(CERT_TIME_DRIFT)?;
    params.not_after = now + to_time_duration(Duration::from_secs(u64::from(days) * 86_400))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    if !name_constraints.is_empty() {
        params.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: name_constraints
                .iter()
                .map(|d| rcgen::GeneralSubtree::DnsName(d.clone()))
                .collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(&key));
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What an agent certificate says (`meshgate tls cert create`).
#[derive(Debug, Clone, Default)]
pub struct AgentTlsCert {
    /// The subject's common name (`server.dc1.consul`).
    pub name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Server and client authentication; `false`: client only (the CLI's).
    pub server_auth: bool,
    pub days: u32,
}

/// Signs an agent certificate with the CA of [`new_agent_ca`] (its PEM
/// certificate and key as a signer, checked to belong together). Returns
/// `(cert_pem, key_pem)`.
pub fn sign_agent_tls_cert(
    signer: &CaSigner,
    want: &AgentTlsCert,
) -> Result<(String, String), CaError> {
    let issuer = signer.issuer()?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut sans = Vec::new();
    for d in &want.dns_names {
        sans.push(SanType::DnsName(d.clone().try_into()?));
    }
    for ip in &want.ip_addresses {
        sans.push(SanType::IpAddress(*ip));
    }
    let ttl = Duration::from_secs(u64::from(want.days) * 86_400);
    let mut params = end_entity_params(&want.name, sans, ttl, &key)?;
    if !want.server_auth {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}
