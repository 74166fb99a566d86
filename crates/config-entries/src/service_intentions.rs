//! `service-intentions`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::common::{is_false, is_zero_u64};
use crate::decode::go_quote as q;
use crate::validate::{META_VALUE_MAX_LENGTH, ValidationError, meta_result, multi_result};

/// `service-intentions`: the intentions whose destination is `Name`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceIntentions {
    /// The destination service (`*` for all).
    pub name: String,
    /// The sources, stored sorted by descending precedence. `null` in JSON
    /// when absent, as in Consul.
    pub sources: Option<Vec<SourceIntention>>,
    /// JWT requirements for every request to the destination.
    #[serde(rename = "JWT", skip_serializing_if = "Option::is_none")]
    pub jwt: Option<IntentionJwtRequirement>,
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

/// One source of a service-intentions entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SourceIntention {
    /// Source service name, or `*`.
    pub name: String,
    /// `allow` or `deny`; mutually exclusive with `Permissions`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// L7 permissions, evaluated in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<IntentionPermission>,
    /// Read-only: recomputed by normalization.
    pub precedence: i64,
    /// Legacy UUID (legacy API only; cleared by normalization).
    #[serde(rename = "LegacyID", skip_serializing_if = "String::is_empty")]
    pub legacy_id: String,
    /// Source type; always `consul` (the default).
    #[serde(rename = "Type")]
    pub source_type: String,
    /// Free-form description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Legacy metadata (must be omitted on config-entry writes).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub legacy_meta: BTreeMap<String, String>,
    /// Legacy creation time, RFC 3339 (cleared by normalization).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_create_time: Option<String>,
    /// Legacy update time, RFC 3339 (cleared by normalization).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_update_time: Option<String>,
    /// Cluster peer of the source.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// Sameness group (Enterprise; rejected by validation).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sameness_group: String,
}

/// One L7 permission.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IntentionPermission {
    /// `allow` or `deny`.
    pub action: String,
    /// HTTP match criteria.
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<IntentionHttpPermission>,
    /// JWT requirements.
    #[serde(rename = "JWT", skip_serializing_if = "Option::is_none")]
    pub jwt: Option<IntentionJwtRequirement>,
}

/// HTTP match criteria of a permission.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IntentionHttpPermission {
    /// Exact path.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_exact: String,
    /// Path prefix.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// Path regex.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_regex: String,
    /// Header matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<IntentionHttpHeaderPermission>,
    /// Methods (upper-cased by normalization).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

/// One header match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IntentionHttpHeaderPermission {
    /// Header name.
    pub name: String,
    /// Header present.
    #[serde(skip_serializing_if = "is_false")]
    pub present: bool,
    /// Exact value.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub exact: String,
    /// Value prefix.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Value suffix.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub suffix: String,
    /// Value substring.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub contains: String,
    /// Value regex.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub regex: String,
    /// Invert the match.
    #[serde(skip_serializing_if = "is_false")]
    pub invert: bool,
    /// Case-insensitive match.
    #[serde(skip_serializing_if = "is_false")]
    pub ignore_case: bool,
}

/// JWT requirements.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IntentionJwtRequirement {
    /// Providers to verify tokens with.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<IntentionJwtProvider>,
}

/// One JWT provider reference.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IntentionJwtProvider {
    /// Name of a `jwt-provider` config entry.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Extra claims to verify.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_claims: Vec<IntentionJwtClaimVerification>,
}

/// One claim check.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IntentionJwtClaimVerification {
    /// Path to the claim.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    /// Expected value.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
}

impl IntentionJwtRequirement {
    fn errors(&self) -> Vec<String> {
        self.providers
            .iter()
            .filter(|p| p.name.is_empty())
            .map(|_| "JWT provider name is required".to_owned())
            .collect()
    }
}

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

/// Number of exact parts (namespace, name) in a name, for precedence: the
/// namespace is always the exact `default` outside Enterprise.
pub(crate) fn count_exact(ns: &str, name: &str) -> i64 {
    if ns == "*" {
        0
    } else if name == "*" {
        1
    } else {
        2
    }
}

/// Consul's intention precedence for a source and destination.
pub(crate) fn compute_precedence(src_ns: &str, src: &str, dst_ns: &str, dst: &str) -> i64 {
    let max = match count_exact(dst_ns, dst) {
        2 => 9,
        1 => 6,
        _ => 3,
    };
    max - (2 - count_exact(src_ns, src))
}

impl ServiceIntentions {
    /// The sources (empty when absent).
    pub fn sources(&self) -> &[SourceIntention] {
        self.sources.as_deref().unwrap_or(&[])
    }

    pub(crate) fn normalize(&mut self) {
        self.normalize_with(false);
    }

    /// Normalization of an entry written through the legacy (ID-based)
    /// intention API: the legacy fields are kept.
    pub fn normalize_legacy(&mut self) {
        self.normalize_with(true);
    }

    /// Whether every source came from the legacy (ID-based) API: only such
    /// an entry may be edited through it (Consul's
    /// `LegacyIDFieldsAreAllSet`).
    pub fn is_legacy(&self) -> bool {
        self.sources().iter().all(|s| !s.legacy_id.is_empty())
    }

    fn normalize_with(&mut self, legacy: bool) {
        let dest = self.name.clone();
        if let Some(sources) = &mut self.sources {
            for src in sources.iter_mut() {
                if src.source_type.is_empty() {
                    src.source_type = "consul".to_owned();
                }
                src.precedence = compute_precedence("default", &src.name, "default", &dest);
                if !legacy {
                    src.legacy_id.clear();
                    src.legacy_create_time = None;
                    src.legacy_update_time = None;
                }
                for perm in &mut src.permissions {
                    if let Some(http) = &mut perm.http {
                        for m in &mut http.methods {
                            *m = m.to_uppercase();
                        }
                    }
                }
            }
            // Highest precedence first; stable, as Consul's SliceStable.
            sources.sort_by_key(|s| std::cmp::Reverse(s.precedence));
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        self.validate_with(false)
    }

    /// Validation of an entry written through the legacy (ID-based)
    /// intention API: every source has its `LegacyID`, and its legacy
    /// `Meta` is checked as metadata.
    pub fn validate_legacy(&self) -> Result<(), ValidationError> {
        self.validate_with(true)
    }

    fn validate_with(&self, legacy: bool) -> Result<(), ValidationError> {
        let err = |m: String| Err(ValidationError::single(m));
        if self.name.is_empty() {
            return err("Name is required".into());
        }
        if self.name != "*" && self.name.contains('*') {
            return err("Name: wildcard character '*' cannot be used with partial values".into());
        }
        let dest_is_wild = self.name == "*";
        if let Some(jwt) = &self.jwt {
            multi_result(jwt.errors())?;
        }
        meta_result(&self.meta)?;
        let sources = self.sources();
        if sources.is_empty() {
            return err("At least one source is required".into());
        }
        let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
        for (i, src) in sources.iter().enumerate() {
            if src.name.is_empty() {
                return err(format!("Sources[{i}].Name is required"));
            }
            if !src.sameness_group.is_empty() {
                return err(format!(
                    "Sources[{i}].SamenessGroup: Sameness groups are a Consul Enterprise feature. "
                ));
            }
            if src.name != "*" && src.name.contains('*') {
                return err(format!(
                    "Sources[{i}].Name: wildcard character '*' cannot be used with partial values"
                ));
            }
            if src.peer.contains('*') {
                return err(format!(
                    "Sources[{i}].Peer: cannot use wildcard '*' in peer"
                ));
            }
            if src.description.len() > META_VALUE_MAX_LENGTH {
                return err(format!(
                    "Sources[{i}].Description exceeds maximum length {META_VALUE_MAX_LENGTH}"
                ));
            }
            if legacy {
                if src.legacy_id.is_empty() {
                    return err(format!("Sources[{i}].LegacyID must be set"));
                }
                meta_result(&src.legacy_meta)?;
            } else {
                if !src.legacy_meta.is_empty() {
                    return err(format!("Sources[{i}].LegacyMeta must be omitted"));
                }
                if src.legacy_create_time.is_some() {
                    return err(format!("Sources[{i}].LegacyCreateTime must be omitted"));
                }
                if src.legacy_update_time.is_some() {
                    return err(format!("Sources[{i}].LegacyUpdateTime must be omitted"));
                }
                if !src.legacy_id.is_empty() {
                    return err(format!("Sources[{i}].LegacyID must be omitted"));
                }
            }
            if src.permissions.is_empty() && src.action != "allow" && src.action != "deny" {
                return err(format!(
                    "Sources[{i}].Action must be set to 'allow' or 'deny'"
                ));
            }
            if !src.permissions.is_empty() && !src.action.is_empty() {
                return err(format!(
                    "Sources[{i}].Action must be omitted if Permissions are specified"
                ));
            }
            if dest_is_wild && !src.permissions.is_empty() {
                return err(format!(
                    "Sources[{i}].Permissions cannot be specified on intentions with wildcarded destinations"
                ));
            }
            if src.source_type != "consul" {
                return err(format!("Sources[{i}].Type must be set to 'consul'"));
            }
            for (j, perm) in src.permissions.iter().enumerate() {
                validate_permission(i, j, perm)?;
            }
            let key = (
                src.name.clone(),
                src.peer.clone(),
                src.sameness_group.clone(),
            );
            if !seen.insert(key) {
                if !src.peer.is_empty() {
                    return err(format!(
                        "Sources[{i}] defines peer({}) {} more than once",
                        q(&src.peer),
                        q(&src.name)
                    ));
                }
                return err(format!(
                    "Sources[{i}] defines {} more than once",
                    q(&src.name)
                ));
            }
        }
        // Consul checks, when it stores the entry, that every JWT provider it
        // names is a `jwt-provider` entry. meshgate has no such entries (its
        // data plane is L4 and does not verify JWTs), so an intention that
        // asks for one is refused with Consul's words rather than stored and
        // never enforced.
        let providers: BTreeSet<&str> = self
            .jwt
            .iter()
            .chain(
                sources
                    .iter()
                    .flat_map(|s| s.permissions.iter())
                    .filter_map(|p| p.jwt.as_ref()),
            )
            .flat_map(|j| j.providers.iter().map(|p| p.name.as_str()))
            .collect();
        multi_result(
            providers
                .into_iter()
                .map(|n| format!("Referenced JWT Provider does not exist. Provider Name: {n}"))
                .collect(),
        )
    }
}

fn validate_permission(
    i: usize,
    j: usize,
    perm: &IntentionPermission,
) -> Result<(), ValidationError> {
    let err = |m: String| Err(ValidationError::single(m));
    if perm.action != "allow" && perm.action != "deny" {
        return err(format!(
            "Sources[{i}].Permissions[{j}].Action must be set to 'allow' or 'deny'"
        ));
    }
    let prefix = format!("Sources[{i}].Permissions[{j}].HTTP");
    let Some(http) = &perm.http else {
        return err(format!("{prefix} is required"));
    };
    let mut path_parts = 0;
    if !http.path_exact.is_empty() {
        path_parts += 1;
        if !http.path_exact.starts_with('/') {
            return err(format!(
                "{prefix}.PathExact doesn't start with '/': {}",
                q(&http.path_exact)
            ));
        }
    }
    if !http.path_prefix.is_empty() {
        path_parts += 1;
        if !http.path_prefix.starts_with('/') {
            return err(format!(
                "{prefix}.PathPrefix doesn't start with '/': {}",
                q(&http.path_prefix)
            ));
        }
    }
    if !http.path_regex.is_empty() {
        path_parts += 1;
    }
    if path_parts > 1 {
        return err(format!(
            "{prefix} should only contain at most one of PathExact, PathPrefix, or PathRegex"
        ));
    }
    let mut perm_parts = path_parts;
    for (k, hdr) in http.header.iter().enumerate() {
        if hdr.name.is_empty() {
            return err(format!("{prefix}.Header[{k}] missing required Name field"));
        }
        let parts = [
            hdr.present,
            !hdr.exact.is_empty(),
            !hdr.regex.is_empty(),
            !hdr.prefix.is_empty(),
            !hdr.suffix.is_empty(),
            !hdr.contains.is_empty(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if parts != 1 {
            return err(format!(
                "{prefix}.Header[{k}] should only contain one of Present, Exact, Prefix, Suffix, Contains, or Regex"
            ));
        }
        if hdr.ignore_case && (hdr.present || !hdr.regex.is_empty()) {
            return err(format!(
                "{prefix}.Header[{k}] should set one of Exact, Prefix, Suffix, or Contains when using IgnoreCase"
            ));
        }
        perm_parts += 1;
    }
    if !http.methods.is_empty() {
        let mut found = BTreeSet::new();
        for m in &http.methods {
            if !HTTP_METHODS.contains(&m.as_str()) {
                return err(format!(
                    "{prefix}.Methods contains an invalid method {}",
                    q(m)
                ));
            }
            if !found.insert(m.as_str()) {
                return err(format!("{prefix}.Methods contains {} more than once", q(m)));
            }
        }
        perm_parts += 1;
    }
    if perm_parts == 0 {
        return err(format!("{prefix} should not be empty"));
    }
    if let Some(jwt) = &perm.jwt {
        multi_result(jwt.errors())?;
    }
    Ok(())
}
