//! `service-resolver`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::common::{FailoverPolicy, PrioritizeByLocality, is_false, is_zero_u32, is_zero_u64};
use crate::decode::go_quote as q;
use crate::duration::{Nanos, as_go_string};
use crate::validate::{ValidationError, meta_result};

/// `service-resolver`: which instances satisfy discovery requests for a
/// service (subsets, redirect, failover, timeouts, load balancing).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceResolver {
    /// The service name.
    pub name: String,
    /// Subset used when none is requested.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub default_subset: String,
    /// Named subsets.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub subsets: BTreeMap<String, ServiceResolverSubset>,
    /// Resolve another service instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<ServiceResolverRedirect>,
    /// Failover per subset (`*` for any subset).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failover: BTreeMap<String, ServiceResolverFailover>,
    /// Locality prioritization (Enterprise; rejected when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prioritize_by_locality: Option<PrioritizeByLocality>,
    /// Timeout for new connections; a Go duration string in JSON.
    #[serde(
        serialize_with = "as_go_string::serialize",
        skip_serializing_if = "Nanos::is_zero"
    )]
    pub connect_timeout: Nanos,
    /// Timeout for HTTP requests; a Go duration string in JSON.
    #[serde(
        serialize_with = "as_go_string::serialize",
        skip_serializing_if = "Nanos::is_zero"
    )]
    pub request_timeout: Nanos,
    /// Load balancing policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
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

/// One named subset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceResolverSubset {
    /// A `?filter=` expression selecting the subset's instances.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter: String,
    /// Only instances whose checks are all passing.
    #[serde(skip_serializing_if = "is_false")]
    pub only_passing: bool,
}

/// `Redirect`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceResolverRedirect {
    /// Service to resolve instead.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Subset of that service.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    /// Namespace (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Partition (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
    /// Datacenter to resolve in.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    /// Cluster peer to resolve from.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// Sameness group (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sameness_group: String,
}

impl ServiceResolverRedirect {
    fn is_empty(&self) -> bool {
        self.service.is_empty()
            && self.service_subset.is_empty()
            && self.namespace.is_empty()
            && self.partition.is_empty()
            && self.datacenter.is_empty()
            && self.peer.is_empty()
            && self.sameness_group.is_empty()
    }
}

/// One failover definition.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceResolverFailover {
    /// Service to fail over to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Subset to fail over to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    /// Namespace (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Datacenters to try, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
    /// Explicit targets, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<ServiceResolverFailoverTarget>,
    /// Failover policy (Enterprise when a mode is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<FailoverPolicy>,
    /// Sameness group (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sameness_group: String,
}

impl ServiceResolverFailover {
    fn is_empty(&self) -> bool {
        self.service.is_empty()
            && self.service_subset.is_empty()
            && self.namespace.is_empty()
            && self.datacenters.is_empty()
            && self.targets.is_empty()
            && self.sameness_group.is_empty()
    }
}

/// One failover target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceResolverFailoverTarget {
    /// Service.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Subset.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    /// Partition (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
    /// Namespace (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Datacenter.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    /// Cluster peer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
}

/// `LoadBalancer`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LoadBalancer {
    /// `""`, `random`, `round_robin`, `least_request`, `ring_hash`, `maglev`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub policy: String,
    /// For `ring_hash`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_hash_config: Option<RingHashConfig>,
    /// For `least_request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub least_request_config: Option<LeastRequestConfig>,
    /// For hash-based policies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hash_policies: Vec<HashPolicy>,
}

/// `RingHashConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RingHashConfig {
    /// Minimum ring size.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub minimum_ring_size: u64,
    /// Maximum ring size.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub maximum_ring_size: u64,
}

/// `LeastRequestConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LeastRequestConfig {
    /// Hosts compared per pick.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub choice_count: u32,
}

/// One hash policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HashPolicy {
    /// `header`, `cookie` or `query_parameter`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
    /// Header, cookie or parameter name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field_value: String,
    /// Generated cookie settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_config: Option<CookieConfig>,
    /// Hash the source IP.
    #[serde(rename = "SourceIP", skip_serializing_if = "is_false")]
    pub source_ip: bool,
    /// Stop at this policy when it produced a hash.
    #[serde(skip_serializing_if = "is_false")]
    pub terminal: bool,
}

/// `CookieConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CookieConfig {
    /// Session cookie (no expiry).
    #[serde(skip_serializing_if = "is_false")]
    pub session: bool,
    /// Cookie lifetime (nanoseconds in JSON).
    #[serde(rename = "TTL", skip_serializing_if = "Nanos::is_zero")]
    pub ttl: Nanos,
    /// Cookie path.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// Consul's `validateServiceSubset`.
fn validate_subset_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be non-empty and 63 characters or fewer");
    }
    let b = name.as_bytes();
    let ok_inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let ok_edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !ok_edge(&b[0]) || !ok_edge(&b[b.len() - 1]) || !b.iter().all(ok_inner) {
        return Err(
            "must be 63 characters or fewer, begin or end with lower case alphanumeric characters, and contain lower case alphanumeric characters or '-' in between",
        );
    }
    Ok(())
}

const LB_POLICIES: &[&str] = &[
    "",
    "random",
    "round_robin",
    "least_request",
    "ring_hash",
    "maglev",
];
const HASH_FIELDS: &[&str] = &["header", "cookie", "query_parameter"];

impl ServiceResolver {
    /// Whether `name` is one of the named subsets.
    pub fn subset_exists(&self, name: &str) -> bool {
        name.is_empty() || self.subsets.contains_key(name)
    }

    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        let err = |m: String| Err(ValidationError::single(m));
        if self.name.is_empty() {
            return err("Name is required".into());
        }
        meta_result(&self.meta)?;
        for name in self.subsets.keys() {
            if name.is_empty() {
                return err("Subset defined with empty name".into());
            }
            if let Err(e) = validate_subset_name(name) {
                return err(format!("Subset {} is invalid: {e}", q(name)));
            }
        }
        let is_subset = |s: &str| self.subsets.contains_key(s);
        if !self.default_subset.is_empty() && !is_subset(&self.default_subset) {
            return err(format!(
                "DefaultSubset {} is not a valid subset",
                q(&self.default_subset)
            ));
        }
        if let Some(p) = &self.prioritize_by_locality {
            p.validate().map_err(ValidationError::single)?;
        }
        if let Some(r) = &self.redirect {
            let partition = if r.partition.is_empty() {
                "default"
            } else {
                r.partition.as_str()
            };
            if partition != "default" && !r.datacenter.is_empty() {
                return err(
                    "Cross-datacenter and cross-partition redirect is not supported".into(),
                );
            }
            if !r.partition.is_empty() {
                return err("Redirect: Setting Partition requires Consul Enterprise".into());
            }
            if !r.namespace.is_empty() {
                return err("Redirect: Setting Namespace requires Consul Enterprise".into());
            }
            if !r.sameness_group.is_empty() {
                return err("Redirect: Setting SamenessGroup requires Consul Enterprise".into());
            }
            if !self.failover.is_empty() {
                return err("Redirect and Failover cannot both be set".into());
            }
            if r.is_empty() {
                return err("Redirect is empty".into());
            }
            if !r.peer.is_empty() && !r.service_subset.is_empty() {
                return err("Redirect.Peer cannot be set with Redirect.ServiceSubset".into());
            }
            if !r.peer.is_empty() && !r.datacenter.is_empty() {
                return err("Redirect.Peer cannot be set with Redirect.Datacenter".into());
            }
            if r.service.is_empty() {
                if !r.service_subset.is_empty() {
                    return err("Redirect.ServiceSubset defined without Redirect.Service".into());
                }
                if !r.peer.is_empty() {
                    return err("Redirect.Peer defined without Redirect.Service".into());
                }
            } else if !r.service_subset.is_empty()
                && r.service == self.name
                && !is_subset(&r.service_subset)
            {
                return err(format!(
                    "Redirect.ServiceSubset {} is not a valid subset of {}",
                    q(&r.service_subset),
                    q(&self.name)
                ));
            }
        }
        for (subset, f) in &self.failover {
            let prefix = format!("Bad Failover[{}]: ", q(subset));
            if !f.namespace.is_empty() {
                return err(format!(
                    "{prefix}Setting Namespace requires Consul Enterprise"
                ));
            }
            if !f.sameness_group.is_empty() {
                return err(format!(
                    "{prefix}Setting SamenessGroup requires Consul Enterprise"
                ));
            }
            if subset != "*" && !is_subset(subset) {
                return err(format!("{prefix}not a valid subset subset"));
            }
            if f.is_empty() {
                return err(format!(
                    "{prefix}one of Service, ServiceSubset, Namespace, Targets, SamenessGroup, or Datacenters is required"
                ));
            }
            if let Some(policy) = &f.policy {
                if !policy.mode.is_empty() {
                    return err(format!(
                        "{prefix}Setting failover policies requires Consul Enterprise"
                    ));
                }
                if let Err(e) = policy.validate() {
                    return err(format!("{prefix}{e}"));
                }
            }
            if !f.service_subset.is_empty()
                && (f.service.is_empty() || f.service == self.name)
                && !is_subset(&f.service_subset)
            {
                return err(format!(
                    "{prefix}ServiceSubset {} is not a valid subset of {}",
                    q(&f.service_subset),
                    q(&f.service)
                ));
            }
            if !f.datacenters.is_empty() && !f.targets.is_empty() {
                return err(format!("{prefix}Targets cannot be set with Datacenters"));
            }
            if !f.service_subset.is_empty() && !f.targets.is_empty() {
                return err(format!("{prefix}Targets cannot be set with ServiceSubset"));
            }
            if !f.service.is_empty() && !f.targets.is_empty() {
                return err(format!("{prefix}Targets cannot be set with Service"));
            }
            for (i, t) in f.targets.iter().enumerate() {
                let tp = format!("Bad Failover[{}].Targets[{i}]: ", q(subset));
                if !t.partition.is_empty() {
                    return err(format!("{tp}Setting Partition requires Consul Enterprise"));
                }
                if !t.namespace.is_empty() {
                    return err(format!("{tp}Setting Namespace requires Consul Enterprise"));
                }
                if !t.peer.is_empty() && !t.service_subset.is_empty() {
                    return err(format!("{tp}Peer cannot be set with ServiceSubset"));
                }
                if !t.peer.is_empty() && !t.datacenter.is_empty() {
                    return err(format!("{tp}Peer cannot be set with Datacenter"));
                }
                if !t.service_subset.is_empty()
                    && (t.service.is_empty() || t.service == self.name)
                    && !is_subset(&t.service_subset)
                {
                    return err(format!(
                        "{tp}ServiceSubset {} is not a valid subset of {}",
                        q(&t.service_subset),
                        q(&self.name)
                    ));
                }
            }
            if f.datacenters.iter().any(String::is_empty) {
                return err(format!(
                    "Bad Failover[{}].Datacenters: found empty datacenter",
                    q(subset)
                ));
            }
        }
        if self.connect_timeout.0 < 0 {
            return err(format!(
                "Bad ConnectTimeout '{}', must be >= 0",
                self.connect_timeout
            ));
        }
        if self.request_timeout.0 < 0 {
            return err(format!(
                "Bad RequestTimeout '{}', must be >= 0",
                self.request_timeout
            ));
        }
        if let Some(lb) = &self.load_balancer {
            validate_lb(lb)?;
        }
        Ok(())
    }
}

fn validate_lb(lb: &LoadBalancer) -> Result<(), ValidationError> {
    let err = |m: String| Err(ValidationError::single(m));
    if !LB_POLICIES.contains(&lb.policy.as_str()) {
        return err(format!(
            "Bad LoadBalancer policy: {} is not supported",
            q(&lb.policy)
        ));
    }
    if lb.policy != "ring_hash" && lb.ring_hash_config.is_some() {
        return err(format!(
            "Bad LoadBalancer configuration. RingHashConfig specified for incompatible load balancing policy {}",
            q(&lb.policy)
        ));
    }
    if lb.policy != "least_request" && lb.least_request_config.is_some() {
        return err(format!(
            "Bad LoadBalancer configuration. LeastRequestConfig specified for incompatible load balancing policy {}",
            q(&lb.policy)
        ));
    }
    let hash_based = lb.policy == "maglev" || lb.policy == "ring_hash";
    if !hash_based && !lb.hash_policies.is_empty() {
        return err(format!(
            "Bad LoadBalancer configuration: HashPolicies specified for non-hash-based Policy: {}",
            q(&lb.policy)
        ));
    }
    for (i, hp) in lb.hash_policies.iter().enumerate() {
        if !hp.field.is_empty() && !HASH_FIELDS.contains(&hp.field.as_str()) {
            return err(format!(
                "Bad LoadBalancer HashPolicy[{i}]: {} is not a supported field",
                q(&hp.field)
            ));
        }
        if hp.source_ip && !hp.field.is_empty() {
            return err(format!(
                "Bad LoadBalancer HashPolicy[{i}]: A single hash policy cannot hash both a source address and a {}",
                q(&hp.field)
            ));
        }
        if hp.source_ip && !hp.field_value.is_empty() {
            return err(format!(
                "Bad LoadBalancer HashPolicy[{i}]: A FieldValue cannot be specified when hashing SourceIP"
            ));
        }
        if !hp.field.is_empty() && hp.field_value.is_empty() {
            return err(format!(
                "Bad LoadBalancer HashPolicy[{i}]: Field {} was specified without a FieldValue",
                q(&hp.field)
            ));
        }
        if !hp.field_value.is_empty() && hp.field.is_empty() {
            return err(format!(
                "Bad LoadBalancer HashPolicy[{i}]: FieldValue requires a Field to apply to"
            ));
        }
        if let Some(cc) = &hp.cookie_config {
            if hp.field != "cookie" {
                return err(format!(
                    "Bad LoadBalancer HashPolicy[{i}]: cookie_config provided for {}",
                    q(&hp.field)
                ));
            }
            if cc.session && !cc.ttl.is_zero() {
                return err(format!(
                    "Bad LoadBalancer HashPolicy[{i}]: a session cookie cannot have an associated TTL"
                ));
            }
        }
    }
    Ok(())
}
