//! Agent-local types: service and check definitions as registered with an agent,
//! and the shapes of `/v1/agent/*` answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{ProxyConfig, ServiceAddress, ServiceConnect, Weights};
use crate::duration::GoDuration;

/// A check definition (`Check`/`Checks` of a service, or `PUT /v1/agent/check/register`).
/// Decoded leniently: `ID` or `CheckID`, `Args` or `ScriptArgs`, snake_case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckDefinition {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: String,
    pub notes: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub args: Vec<String>,
    pub script_args: Vec<String>,
    #[serde(rename = "HTTP")]
    pub http: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub method: String,
    pub body: String,
    pub disable_redirects: bool,
    #[serde(rename = "TCP")]
    pub tcp: String,
    #[serde(rename = "TCPUseTLS")]
    pub tcp_use_tls: bool,
    #[serde(rename = "UDP")]
    pub udp: String,
    #[serde(rename = "GRPC")]
    pub grpc: String,
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    #[serde(rename = "H2PING")]
    pub h2ping: String,
    /// TLS for `H2PING` checks; absent means yes (as in Consul).
    #[serde(rename = "H2PingUseTLS", skip_serializing_if = "Option::is_none")]
    pub h2ping_use_tls: Option<bool>,
    #[serde(rename = "OSService")]
    pub os_service: String,
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    pub interval: GoDuration,
    pub timeout: GoDuration,
    #[serde(rename = "TTL")]
    pub ttl: GoDuration,
    pub deregister_critical_service_after: GoDuration,
    pub alias_node: String,
    pub alias_service: String,
    #[serde(rename = "DockerContainerID")]
    pub docker_container_id: String,
    pub shell: String,
    pub output_max_size: i64,
    pub success_before_passing: i64,
    pub failures_before_warning: i64,
    pub failures_before_critical: i64,
    /// meshgate's PostgreSQL check target (`host:port`).
    #[serde(rename = "PostgreSQL")]
    pub postgresql: String,
}

impl CheckDefinition {
    /// The check's id as given (`ID` or `CheckID`).
    pub fn given_id(&self) -> &str {
        if !self.check_id.is_empty() {
            &self.check_id
        } else {
            &self.id
        }
    }

    /// Script arguments (`Args` or `ScriptArgs`).
    pub fn script(&self) -> &[String] {
        if !self.args.is_empty() {
            &self.args
        } else {
            &self.script_args
        }
    }

    /// Whether an `H2PING` check talks TLS (the default) or cleartext h2c.
    pub fn h2ping_tls(&self) -> bool {
        self.h2ping_use_tls.unwrap_or(true)
    }

    /// The kind of check this definition describes, or `None` when it names no
    /// way to run it.
    pub fn kind(&self) -> Option<CheckKind> {
        if !self.ttl.is_zero() {
            Some(CheckKind::Ttl)
        } else if !self.http.is_empty() {
            Some(CheckKind::Http)
        } else if !self.tcp.is_empty() {
            Some(CheckKind::Tcp)
        } else if !self.udp.is_empty() {
            Some(CheckKind::Udp)
        } else if !self.grpc.is_empty() {
            Some(CheckKind::Grpc)
        } else if !self.h2ping.is_empty() {
            Some(CheckKind::H2Ping)
        } else if !self.script().is_empty() {
            Some(CheckKind::Script)
        } else if !self.alias_node.is_empty() || !self.alias_service.is_empty() {
            Some(CheckKind::Alias)
        } else if !self.docker_container_id.is_empty() {
            Some(CheckKind::Docker)
        } else if !self.os_service.is_empty() {
            Some(CheckKind::OsService)
        } else if !self.postgresql.is_empty() {
            Some(CheckKind::PostgreSql)
        } else {
            None
        }
    }
}

/// The ways a check can be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    Ttl,
    Http,
    Tcp,
    Udp,
    Grpc,
    H2Ping,
    Script,
    Alias,
    Docker,
    OsService,
    PostgreSql,
}

impl CheckKind {
    /// The `Type` string the catalog shows.
    pub fn type_name(self) -> &'static str {
        match self {
            CheckKind::Ttl => "ttl",
            CheckKind::Http => "http",
            CheckKind::Tcp => "tcp",
            CheckKind::Udp => "udp",
            CheckKind::Grpc => "grpc",
            CheckKind::H2Ping => "h2ping",
            CheckKind::Script => "script",
            CheckKind::Alias => "alias",
            CheckKind::Docker => "docker",
            CheckKind::OsService => "os_service",
            CheckKind::PostgreSql => "postgresql",
        }
    }
}

/// The `Connect` block of a service definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectDefinition {
    pub native: bool,
    pub sidecar_service: Option<Box<ServiceDefinition>>,
}

/// A service definition (`PUT /v1/agent/service/register`, `service {}` in config
/// files, `meshgate services register` files).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceDefinition {
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: BTreeMap<String, String>,
    pub port: i64,
    pub socket_path: String,
    pub weights: Option<Weights>,
    pub enable_tag_override: bool,
    pub proxy: Option<ProxyConfig>,
    pub connect: Option<ConnectDefinition>,
    pub check: Option<CheckDefinition>,
    pub checks: Vec<CheckDefinition>,
    pub token: String,
    pub namespace: String,
    pub partition: String,
    pub locality: Option<Value>,
}

impl ServiceDefinition {
    /// The instance id: `ID`, defaulting to `Name`.
    pub fn instance_id(&self) -> &str {
        if self.id.is_empty() {
            &self.name
        } else {
            &self.id
        }
    }

    /// All checks of the definition (`Check` then `Checks`).
    pub fn all_checks(&self) -> Vec<CheckDefinition> {
        let mut out = Vec::new();
        if let Some(c) = &self.check {
            out.push(c.clone());
        }
        out.extend(self.checks.iter().cloned());
        out
    }
}

/// A service as the agent reports it (`/v1/agent/services`, `/v1/agent/service/:id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentService {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub port: i64,
    pub address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub weights: Weights,
    pub enable_tag_override: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ServiceConnect>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content_hash: String,
    pub datacenter: String,
}

/// A member of the cluster (`/v1/agent/members`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Member {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    /// 1 alive, 2 leaving, 3 left, 4 failed (serf's codes).
    pub status: i64,
    pub protocol_min: i64,
    pub protocol_max: i64,
    pub protocol_cur: i64,
    pub delegate_min: i64,
    pub delegate_max: i64,
    pub delegate_cur: i64,
}
