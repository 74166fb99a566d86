//! `mesh`.

use std::collections::BTreeMap;

use meshgate_types::tls::{CONSUL_CIPHER_SUITES, Flavor, VERSION_NAMES};
use serde::{Deserialize, Serialize};

use crate::common::{is_false, is_zero_u64};
use crate::validate::{ValidationError, meta_result};

/// `mesh`: the cluster-wide mesh settings. A singleton: it has no `Name`
/// field (Consul rejects one), its name is always `mesh`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Mesh {
    /// Transparent proxy settings.
    pub transparent_proxy: TransparentProxyMeshConfig,
    /// Allow `MutualTLSMode = "permissive"` in service- and proxy-defaults.
    #[serde(
        rename = "AllowEnablingPermissiveMutualTLS",
        skip_serializing_if = "is_false"
    )]
    pub allow_enabling_permissive_mutual_tls: bool,
    /// Validate route table clusters.
    #[serde(skip_serializing_if = "is_false")]
    pub validate_clusters: bool,
    /// TLS versions and ciphers for mesh traffic.
    #[serde(rename = "TLS", skip_serializing_if = "Option::is_none")]
    pub tls: Option<MeshTlsConfig>,
    /// HTTP settings.
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<MeshHttpConfig>,
    /// Peering settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peering: Option<PeeringMeshConfig>,
    /// Free-form metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Content hash, computed by normalization.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub hash: u64,
    /// Raft index of creation (set by the store).
    pub create_index: u64,
    /// Raft index of the last change (set by the store).
    pub modify_index: u64,
}

/// `TransparentProxy` of mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TransparentProxyMeshConfig {
    /// Only allow traffic to destinations inside the mesh.
    pub mesh_destinations_only: bool,
}

/// `TLS` of mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MeshTlsConfig {
    /// Incoming connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incoming: Option<MeshDirectionalTlsConfig>,
    /// Outgoing connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outgoing: Option<MeshDirectionalTlsConfig>,
}

/// TLS settings for one direction.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MeshDirectionalTlsConfig {
    /// `TLS_AUTO`, `TLSv1_0` ... `TLSv1_3`.
    #[serde(rename = "TLSMinVersion", skip_serializing_if = "String::is_empty")]
    pub tls_min_version: String,
    /// `TLS_AUTO`, `TLSv1_0` ... `TLSv1_3`.
    #[serde(rename = "TLSMaxVersion", skip_serializing_if = "String::is_empty")]
    pub tls_max_version: String,
    /// Cipher suites (TLS 1.2 and earlier).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
}

/// `HTTP` of mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MeshHttpConfig {
    /// Strip `X-Forwarded-Client-Cert` from incoming requests.
    #[serde(rename = "SanitizeXForwardedClientCert")]
    pub sanitize_x_forwarded_client_cert: bool,
    /// Incoming request settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incoming: Option<MeshDirectionalHttpConfig>,
}

/// Incoming HTTP settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MeshDirectionalHttpConfig {
    /// Request normalization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_normalization: Option<RequestNormalizationMeshConfig>,
}

/// Request normalization.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestNormalizationMeshConfig {
    /// Turn off RFC 3986 path normalization.
    pub insecure_disable_path_normalization: bool,
    /// Merge consecutive slashes.
    pub merge_slashes: bool,
    /// Action for escaped slashes.
    pub path_with_escaped_slashes_action: String,
    /// Action for headers with underscores.
    pub headers_with_underscores_action: String,
}

/// `Peering` of mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PeeringMeshConfig {
    /// Route peering control-plane traffic through mesh gateways.
    pub peer_through_mesh_gateways: bool,
}

const PATH_WITH_ESCAPED_SLASHES_ACTIONS: &[&str] = &[
    "IMPLEMENTATION_SPECIFIC_DEFAULT",
    "KEEP_UNCHANGED",
    "REJECT_REQUEST",
    "UNESCAPE_AND_REDIRECT",
    "UNESCAPE_AND_FORWARD",
];

const HEADERS_WITH_UNDERSCORES_ACTIONS: &[&str] = &["ALLOW", "REJECT_REQUEST", "DROP_HEADER"];

fn tls_version_rank(v: &str) -> Option<u8> {
    match v {
        "TLSv1_0" => Some(1),
        "TLSv1_1" => Some(2),
        "TLSv1_2" => Some(3),
        "TLSv1_3" => Some(4),
        _ => None,
    }
}

fn validate_tls_version(v: &str) -> Result<(), String> {
    if VERSION_NAMES.contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "no matching TLS version found for {v}, please specify one of [{}]",
            VERSION_NAMES.join(", ")
        ))
    }
}

/// Consul's `validateTLSConfig`.
fn validate_directional(cfg: &MeshDirectionalTlsConfig) -> Result<(), String> {
    let min = cfg.tls_min_version.as_str();
    let max = cfg.tls_max_version.as_str();
    if !min.is_empty() {
        validate_tls_version(min)?;
    }
    if !max.is_empty() {
        validate_tls_version(max)?;
        if !min.is_empty()
            && let (Some(a), Some(b)) = (tls_version_rank(max), tls_version_rank(min))
            && a < b
        {
            return Err(format!(
                "configuring max version {max} less than the configured min version {min} is invalid"
            ));
        }
    }
    if !cfg.cipher_suites.is_empty() {
        if !matches!(min, "" | "TLS_AUTO" | "TLSv1_0" | "TLSv1_1" | "TLSv1_2") {
            return Err(format!(
                "configuring CipherSuites is only applicable to connections negotiated with TLS 1.2 or earlier, TLSMinVersion is set to {min}"
            ));
        }
        let unmatched: Vec<&str> = cfg
            .cipher_suites
            .iter()
            .map(String::as_str)
            .filter(|c| !CONSUL_CIPHER_SUITES.contains(c))
            .collect();
        if !unmatched.is_empty() {
            return Err(format!(
                "no matching Envoy TLS cipher suite found for {}",
                unmatched.join(",")
            ));
        }
    }
    // What meshgate's proxies cannot do at all (TLS 1.2 and 1.3 only, no
    // CBC or RSA key exchange suites) is refused here rather than found
    // later by every proxy.
    meshgate_types::tls::parse(min, max, &cfg.cipher_suites, Flavor::Proxy).map(|_| ())
}

impl Mesh {
    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        meta_result(&self.meta)?;
        if let Some(tls) = &self.tls {
            if let Some(inc) = &tls.incoming {
                validate_directional(inc).map_err(|e| {
                    ValidationError::single(format!("error in incoming TLS configuration: {e}"))
                })?;
            }
            if let Some(out) = &tls.outgoing {
                validate_directional(out).map_err(|e| {
                    ValidationError::single(format!("error in outgoing TLS configuration: {e}"))
                })?;
            }
        }
        if let Some(rn) = self
            .http
            .as_ref()
            .and_then(|h| h.incoming.as_ref())
            .and_then(|i| i.request_normalization.as_ref())
        {
            let prefix = "error in HTTP incoming request normalization configuration";
            let a = rn.path_with_escaped_slashes_action.as_str();
            if !a.is_empty() && !PATH_WITH_ESCAPED_SLASHES_ACTIONS.contains(&a) {
                return Err(ValidationError::single(format!(
                    "{prefix}: no matching PathWithEscapedSlashesAction value found for {a}, please specify one of [{}]",
                    PATH_WITH_ESCAPED_SLASHES_ACTIONS.join(", ")
                )));
            }
            let h = rn.headers_with_underscores_action.as_str();
            if !h.is_empty() && !HEADERS_WITH_UNDERSCORES_ACTIONS.contains(&h) {
                return Err(ValidationError::single(format!(
                    "{prefix}: no matching HeadersWithUnderscoresAction value found for {h}, please specify one of [{}]",
                    HEADERS_WITH_UNDERSCORES_ACTIONS.join(", ")
                )));
            }
        }
        Ok(())
    }
}
