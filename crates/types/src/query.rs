//! Prepared queries (`/v1/query`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A failover target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryFailoverTarget {
    pub peer: String,
    pub datacenter: String,
}

/// Where to look when the local datacenter has no healthy instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryFailoverOptions {
    pub nearest_n: i64,
    pub datacenters: Option<Vec<String>>,
    pub targets: Option<Vec<QueryFailoverTarget>>,
}

/// DNS options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryDnsOptions {
    #[serde(rename = "TTL")]
    pub ttl: String,
}

/// The service part of a query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceQuery {
    pub service: String,
    pub sameness_group: String,
    pub failover: QueryFailoverOptions,
    pub only_passing: bool,
    #[serde(rename = "IgnoreCheckIDs")]
    pub ignore_check_ids: Option<Vec<String>>,
    pub near: String,
    pub tags: Option<Vec<String>>,
    pub node_meta: Option<BTreeMap<String, String>>,
    pub service_meta: Option<BTreeMap<String, String>>,
    pub connect: bool,
    pub peer: String,
}

/// Template options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryTemplateOptions {
    #[serde(rename = "Type")]
    pub template_type: String,
    pub regexp: String,
    pub remove_empty_tags: bool,
}

/// A prepared query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PreparedQuery {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub session: String,
    pub token: String,
    pub template: QueryTemplateOptions,
    pub service: ServiceQuery,
    #[serde(rename = "DNS")]
    pub dns: QueryDnsOptions,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The template type meshgate (and Consul) supports.
pub const TEMPLATE_NAME_PREFIX_MATCH: &str = "name_prefix_match";
