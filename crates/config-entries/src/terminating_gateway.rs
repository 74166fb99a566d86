//! `terminating-gateway`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::common::{is_false, is_zero_u64};
use crate::decode::go_quote as q;
use crate::validate::{ValidationError, meta_result};

/// `terminating-gateway`: the services a terminating gateway (a service
/// named `Name`) represents, with optional TLS origination per service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TerminatingGateway {
    /// The gateway's service name.
    pub name: String,
    /// Linked services. `null` in JSON when absent, as in Consul.
    pub services: Option<Vec<LinkedService>>,
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

/// A service linked to a terminating gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LinkedService {
    /// Catalog name of the service, or `*` for every service.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// CA bundle (path on the gateway host); turns on TLS origination.
    #[serde(rename = "CAFile", skip_serializing_if = "String::is_empty")]
    pub ca_file: String,
    /// Client certificate for mTLS origination.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cert_file: String,
    /// Client key for mTLS origination.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key_file: String,
    /// TLS server name sent when originating TLS.
    #[serde(rename = "SNI", skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// Do not rewrite the Host header of HTTP requests to the upstream.
    #[serde(skip_serializing_if = "is_false")]
    pub disable_auto_host_rewrite: bool,
}

impl LinkedService {
    /// Whether any TLS file is set (what Consul's SNI warning looks at).
    pub fn tls_configured(&self) -> bool {
        !self.ca_file.is_empty() || !self.cert_file.is_empty() || !self.key_file.is_empty()
    }

    /// Whether the gateway originates TLS to this service: Consul keys TLS
    /// origination on `CAFile` (mutual TLS when `CertFile` and `KeyFile`
    /// are set as well).
    pub fn originates_tls(&self) -> bool {
        !self.ca_file.is_empty()
    }
}

impl TerminatingGateway {
    /// The linked services (empty when absent).
    pub fn services(&self) -> &[LinkedService] {
        self.services.as_deref().unwrap_or(&[])
    }

    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        meta_result(&self.meta)?;
        let mut seen = BTreeSet::new();
        for svc in self.services() {
            if svc.name.is_empty() {
                return Err(ValidationError::single("Service name cannot be blank."));
            }
            if !seen.insert(svc.name.as_str()) {
                return Err(ValidationError::single(format!(
                    "Service {} was specified more than once within a namespace",
                    q(&svc.name)
                )));
            }
            if (!svc.cert_file.is_empty() || !svc.key_file.is_empty())
                && (svc.ca_file.is_empty() || svc.cert_file.is_empty() || svc.key_file.is_empty())
            {
                return Err(ValidationError::single(format!(
                    "Service {} must have a CertFile, CAFile, and KeyFile specified for TLS origination",
                    q(&svc.name)
                )));
            }
        }
        Ok(())
    }

    /// Consul's `Warnings()`: TLS without SNI.
    pub(crate) fn warnings(&self) -> Vec<String> {
        self.services()
            .iter()
            .filter(|s| s.tls_configured() && s.sni.is_empty())
            .map(|s| {
                format!(
                    "TLS is configured but SNI is not set for service {}. Enabling SNI is strongly recommended when using TLS.",
                    q(&s.name)
                )
            })
            .collect()
    }
}
