//! Agent configuration: Consul-style HCL/JSON files and command-line flags.
//!
//! Files are read with the HCL reader (JSON is HCL too), every key is checked
//! against the list of keys Consul documents ([`crate::config_keys`]): unknown keys
//! and values of the wrong type fail with the file, the key and the reason; keys
//! meshgate has no use for are accepted with one log line each. The files are
//! merged in order (maps merge, lists append, scalars: later wins), then flags are
//! laid on top, then the result is decoded into [`Config`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshgate_types::agent::{CheckDefinition, ServiceDefinition};
use meshgate_types::lenient::{self, Options};
use meshgate_types::tls::TlsSettings;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config_keys::{self, KeyCheck};

/// A configuration error: which file, which key, why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Ports; `-1` disables a listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct Ports {
    pub http: i64,
    pub https: i64,
    pub dns: i64,
    pub grpc: i64,
    pub grpc_tls: i64,
    pub serf_lan: i64,
    pub serf_wan: i64,
    pub server: i64,
    pub sidecar_min_port: i64,
    pub sidecar_max_port: i64,
    pub expose_min_port: i64,
    pub expose_max_port: i64,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            http: 8500,
            https: -1,
            dns: 8600,
            grpc: -1,
            grpc_tls: 8503,
            serf_lan: 8301,
            serf_wan: 8302,
            server: 8300,
            sidecar_min_port: 21000,
            sidecar_max_port: 21255,
            expose_min_port: 21500,
            expose_max_port: 21755,
        }
    }
}

/// Per-listener bind addresses (`addresses { http = "..." }`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Addresses {
    pub http: String,
    pub https: String,
    pub dns: String,
    pub grpc: String,
    pub grpc_tls: String,
}

/// `limits { ... }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct Limits {
    pub http_max_conns_per_client: i64,
    pub kv_max_value_size: u64,
    pub txn_max_req_len: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http_max_conns_per_client: 200,
            kv_max_value_size: 512 * 1024,
            txn_max_req_len: 512 * 1024,
        }
    }
}

/// `http_config { ... }`: headers added to every HTTP answer, endpoints
/// refused, networks allowed to write (see `http::policy`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpConfig {
    pub response_headers: BTreeMap<String, String>,
    pub block_endpoints: Vec<String>,
    pub allow_write_http_from: Vec<String>,
}

/// `config_entries { bootstrap = [...] }`: config entries the leader creates
/// when they do not exist (checked at load: see [`Config::bootstrap_entries`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConfigEntriesConfig {
    /// A list of entries (one `bootstrap { ... }` block in HCL: one entry).
    pub bootstrap: Value,
}

/// `telemetry`: where the agent sends its metrics besides
/// `/v1/agent/metrics` (see [`crate::statsd`]).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct TelemetryConfig {
    /// A statsd server (`host:port`, UDP).
    pub statsd_address: String,
    /// A DogStatsD server (`host:port`, UDP): statsd lines with tags.
    pub dogstatsd_addr: String,
    /// A statsite server (`host:port`, TCP): statsd lines over a stream.
    pub statsite_address: String,
    /// Tags added to every DogStatsD line (`env:prod`).
    pub dogstatsd_tags: Vec<String>,
    /// The first part of every metric name (Consul: `consul`).
    pub metrics_prefix: String,
    /// Gauge names without the host name (Consul puts it after the prefix:
    /// `consul.<host>.runtime.alloc_bytes`, unless this is `true`).
    pub disable_hostname: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            statsd_address: String::new(),
            dogstatsd_addr: String::new(),
            statsite_address: String::new(),
            dogstatsd_tags: Vec::new(),
            metrics_prefix: "consul".into(),
            disable_hostname: false,
        }
    }
}

/// `connect { ca_provider, ca_config }`: the mesh CA's configuration when it
/// is first created (see `connect::initial_ca_config`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConnectConfig {
    pub ca_provider: String,
    pub ca_config: Map<String, Value>,
}

/// `acl { ... }` (enforced by the ACL subsystem).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct AclConfig {
    pub enabled: bool,
    pub default_policy: String,
    pub down_policy: String,
    pub enable_token_persistence: bool,
    pub enable_key_list_policy: bool,
    pub tokens: BTreeMap<String, Value>,
}

impl Default for AclConfig {
    fn default() -> Self {
        AclConfig {
            enabled: false,
            default_policy: "allow".into(),
            down_policy: "extend-cache".into(),
            enable_token_persistence: false,
            enable_key_list_policy: false,
            tokens: BTreeMap::new(),
        }
    }
}

/// `dns_config { soa { ... } }`: the SOA record of the DNS domain (seconds).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct DnsSoaConfig {
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub min_ttl: u32,
}

impl Default for DnsSoaConfig {
    fn default() -> Self {
        DnsSoaConfig {
            refresh: 3600,
            retry: 600,
            expire: 86400,
            min_ttl: 0,
        }
    }
}

/// `tls { defaults { ... } internal_rpc { ... } https { ... } }`: what
/// meshgate uses of the agent's TLS settings — the CA that TLS health checks
/// trust, mutual TLS on the server port (traffic between agents), and the
/// HTTPS API (`ports.https`), with their versions and cipher suites.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TlsConfig {
    pub defaults: TlsFiles,
    pub internal_rpc: TlsFiles,
    pub https: TlsFiles,
}

/// The files of a `tls` block.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TlsFiles {
    /// PEM file of the CAs to trust. In `defaults`, also the CAs TLS health
    /// checks (`GRPCUseTLS`, `H2PING`, `TCPUseTLS`) trust (empty: the
    /// system's bundle).
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    /// Clients must present a certificate of `ca_file` (the HTTPS API; the
    /// server port always asks for one).
    pub verify_incoming: Option<bool>,
    /// `TLSv1_2` (default) or `TLSv1_3` (Consul's names; `TLSv1_0` and
    /// `TLSv1_1` mean TLS 1.2 here).
    pub tls_min_version: String,
    /// TLS 1.2 cipher suites, comma-separated (Consul's names).
    pub tls_cipher_suites: Option<String>,
}

/// The HTTPS API's TLS: `tls.https`, each setting falling back to
/// `tls.defaults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsTls {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub verify_incoming: bool,
    pub settings: TlsSettings,
}

/// The files of mutual TLS between agents: `(ca_file, cert_file, key_file)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTlsFiles {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub settings: TlsSettings,
}

impl TlsConfig {
    /// Mutual TLS on the server port: `tls.internal_rpc`, each file falling
    /// back to `tls.defaults` (as in Consul); `None` unless all three are set.
    pub fn cluster(&self) -> Option<ClusterTlsFiles> {
        let pick = |a: &String, b: &String| if a.is_empty() { b.clone() } else { a.clone() };
        let (i, d) = (&self.internal_rpc, &self.defaults);
        let f = ClusterTlsFiles {
            ca_file: pick(&i.ca_file, &d.ca_file),
            cert_file: pick(&i.cert_file, &d.cert_file),
            key_file: pick(&i.key_file, &d.key_file),
            settings: self.settings_or_default("internal_rpc"),
        };
        (!f.ca_file.is_empty() && !f.cert_file.is_empty() && !f.key_file.is_empty()).then_some(f)
    }

    /// The HTTPS API's settings: `tls.https`, each falling back to
    /// `tls.defaults` (as in Consul).
    pub fn https(&self) -> HttpsTls {
        let pick = |a: &String, b: &String| if a.is_empty() { b.clone() } else { a.clone() };
        let (h, d) = (&self.https, &self.defaults);
        HttpsTls {
            ca_file: pick(&h.ca_file, &d.ca_file),
            cert_file: pick(&h.cert_file, &d.cert_file),
            key_file: pick(&h.key_file, &d.key_file),
            verify_incoming: h.verify_incoming.or(d.verify_incoming).unwrap_or(false),
            settings: self.settings_or_default("https"),
        }
    }

    /// The versions and TLS 1.2 cipher suites of block `name` (`https`,
    /// `internal_rpc`, `defaults`), as Consul builds them: `tls.defaults` is
    /// checked on its own; a block takes each setting it lacks from it,
    /// except the suites when the block's own minimum is TLS 1.3. Errors
    /// name the key as Consul does.
    pub fn settings(&self, name: &str) -> Result<meshgate_types::tls::Parsed, String> {
        let d = &self.defaults;
        let own = check_tls_block(
            &d.tls_min_version,
            d.tls_cipher_suites.as_deref(),
            "defaults",
            "defaults",
        )?;
        let block = match name {
            "https" => &self.https,
            "internal_rpc" => &self.internal_rpc,
            _ => return Ok(own),
        };
        let (min, min_from) = if block.tls_min_version.is_empty() {
            (&d.tls_min_version, "defaults")
        } else {
            (&block.tls_min_version, name)
        };
        let own_13 = matches!(block.tls_min_version.as_str(), "TLSv1_3" | "tls13");
        let (suites, suites_from) = match (&block.tls_cipher_suites, &d.tls_cipher_suites) {
            (Some(s), _) => (Some(s.as_str()), name),
            (None, _) if own_13 => (None, name),
            (None, s) => (s.as_deref(), "defaults"),
        };
        check_tls_block(min, suites, min_from, suites_from)
    }
    /// [`Self::settings`] of a configuration already validated.
    fn settings_or_default(&self, name: &str) -> TlsSettings {
        self.settings(name).map(|p| p.settings).unwrap_or_default()
    }

    /// What the operator should hear about the TLS versions and suites (a
    /// version or suite meshgate does not have), each once.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for name in ["https", "internal_rpc"] {
            if let Ok(p) = self.settings(name) {
                for w in p.warnings {
                    let w = format!("tls: {w}");
                    if !out.contains(&w) {
                        out.push(w);
                    }
                }
            }
        }
        out
    }
}

/// One `tls` block's version and suites, errors naming where each came
/// from (`tls.<from>.tls_min_version`, `tls.<from>.tls_cipher_suites`).
fn check_tls_block(
    min: &str,
    suites: Option<&str>,
    min_from: &str,
    suites_from: &str,
) -> Result<meshgate_types::tls::Parsed, String> {
    use meshgate_types::tls::{Flavor, parse, split_suites};
    parse(min, "", &[], Flavor::Agent)
        .map_err(|e| format!("tls.{min_from}.tls_min_version: invalid TLS version: {e}"))?;
    let list = suites.map(split_suites).unwrap_or_default();
    parse(min, "", &list, Flavor::Agent).map_err(|e| {
        if e.starts_with("TLS 1.3") {
            format!("tls.{suites_from}.tls_cipher_suites: {e}")
        } else {
            format!("tls.{suites_from}.tls_cipher_suites: invalid TLS cipher suites: {e}")
        }
    })
}

/// `dns_config { ... }`: how the DNS interface answers (see `docs/dns.md`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct DnsConfig {
    pub allow_stale: bool,
    pub max_stale: String,
    pub node_ttl: String,
    /// Service name (or prefix ending in `*`) → TTL.
    pub service_ttl: BTreeMap<String, String>,
    pub only_passing: bool,
    pub enable_truncate: bool,
    pub udp_answer_limit: i64,
    pub a_record_limit: i64,
    pub recursor_strategy: String,
    pub recursor_timeout: String,
    pub disable_compression: bool,
    pub enable_additional_node_meta_txt: bool,
    pub soa: DnsSoaConfig,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            allow_stale: true,
            max_stale: "87600h".into(),
            node_ttl: "0s".into(),
            service_ttl: BTreeMap::new(),
            only_passing: false,
            enable_truncate: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            recursor_strategy: "sequential".into(),
            recursor_timeout: "2s".into(),
            disable_compression: false,
            enable_additional_node_meta_txt: true,
            soa: DnsSoaConfig::default(),
        }
    }
}

/// `external_health { ... }`: how servers monitor external nodes (see
/// `docs/external-services.md`). Durations are Go duration strings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct ExternalHealthConfig {
    /// Whether the servers monitor nodes with `external-node = "true"`.
    pub enabled: bool,
    /// How often a node with `external-probe = "true"` is probed.
    pub node_probe_interval: String,
    /// How long a node probe may take.
    pub node_probe_timeout: String,
    /// Interval of a check whose definition names none.
    pub check_interval: String,
    /// Timeout of a check whose definition names none.
    pub check_timeout: String,
    /// Consecutive failures before a check or node probe turns critical.
    pub critical_threshold: u32,
    /// Consecutive successes before a check or node probe turns passing.
    pub passing_threshold: u32,
}

impl Default for ExternalHealthConfig {
    fn default() -> Self {
        ExternalHealthConfig {
            enabled: true,
            node_probe_interval: "10s".into(),
            node_probe_timeout: "2s".into(),
            check_interval: "10s".into(),
            check_timeout: "5s".into(),
            critical_threshold: 3,
            passing_threshold: 1,
        }
    }
}

/// The decoded agent configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    pub dev: bool,
    pub server: bool,
    pub bootstrap: bool,
    pub bootstrap_expect: i64,
    pub datacenter: String,
    pub primary_datacenter: String,
    pub node_name: String,
    pub node_id: String,
    pub node_meta: BTreeMap<String, String>,
    pub data_dir: String,
    pub bind_addr: String,
    pub advertise_addr: String,
    pub client_addr: String,
    pub ports: Ports,
    pub addresses: Addresses,
    pub log_level: String,
    pub log_json: bool,
    /// A file the log is also written to (a path ending in `/`: a directory,
    /// the file `consul.log` in it); empty: none.
    pub log_file: String,
    /// Size that rotates the log file (0: no limit).
    pub log_rotate_bytes: i64,
    /// Age that rotates the log file (empty or 0: 24 h).
    pub log_rotate_duration: String,
    /// Rotated log files kept (0: all; negative: none).
    pub log_rotate_max_files: i64,
    pub limits: Limits,
    pub http_config: HttpConfig,
    pub config_entries: ConfigEntriesConfig,
    pub connect: ConnectConfig,
    pub kv_max_value_size: Option<u64>,
    pub txn_max_req_len: Option<u64>,
    pub check_output_max_size: usize,
    pub enable_script_checks: bool,
    pub enable_local_script_checks: bool,
    pub disable_update_check: bool,
    pub retry_join: Vec<String>,
    pub start_join: Vec<String>,
    /// Time between two attempts to reach the servers to join (empty:
    /// meshgate's 300 ms; Consul's default is 30 s).
    pub retry_interval: String,
    /// Attempts to reach the servers after the first, before the agent gives
    /// up and exits (0: for ever).
    pub retry_max: i64,
    pub acl: AclConfig,
    pub services: Vec<ServiceDefinition>,
    pub service: Vec<ServiceDefinition>,
    pub checks: Vec<CheckDefinition>,
    pub check: Vec<CheckDefinition>,
    pub session_ttl_min: String,
    /// How long a check's new output waits before it is written to the
    /// catalog when its status did not change (Consul: 5m; `0s` writes
    /// every change at once).
    pub check_update_interval: String,
    /// A blocking query's wait when it names none (Consul: 300s).
    pub default_query_time: String,
    /// The longest wait a blocking query may ask for (Consul: 600s).
    pub max_query_time: String,
    /// Where the agent writes its process ID at start (removed at exit).
    pub pid_file: String,
    /// Health checks' output is not kept (fewer catalog writes when output
    /// changes on every run, e.g. timestamps).
    pub discard_check_output: bool,
    /// Leave the cluster on SIGTERM (Consul: clients yes, servers no).
    pub leave_on_terminate: Option<bool>,
    /// Do not leave the cluster on SIGINT (Consul: servers yes, clients no).
    pub skip_leave_on_interrupt: Option<bool>,
    /// The node's own tagged addresses, added to (or replacing) `lan`,
    /// `lan_ipv4`, `wan`, `wan_ipv4`.
    pub tagged_addresses: BTreeMap<String, String>,
    pub ui_config: BTreeMap<String, Value>,
    /// `watches`: blocking queries the agent follows, running a handler on
    /// each change (run by the `agent` command: see `meshgate_cli`).
    pub watches: Value,
    /// The DNS domain answered (`consul.`).
    pub domain: String,
    /// A second domain answered like `domain` (empty: none).
    pub alt_domain: String,
    /// Upstream DNS servers for names outside the domains.
    pub recursors: Vec<String>,
    pub dns_config: DnsConfig,
    pub external_health: ExternalHealthConfig,
    pub telemetry: TelemetryConfig,
    pub tls: TlsConfig,
    /// The cluster key: agents of a cluster send it with every request
    /// between them (see docs/cluster.md).
    pub encrypt: String,
    /// Files the configuration was read from (for `/v1/agent/reload`).
    #[serde(skip)]
    pub sources: Vec<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dev: false,
            server: false,
            bootstrap: false,
            bootstrap_expect: 0,
            datacenter: "dc1".into(),
            primary_datacenter: String::new(),
            node_name: String::new(),
            node_id: String::new(),
            node_meta: BTreeMap::new(),
            data_dir: String::new(),
            bind_addr: "0.0.0.0".into(),
            advertise_addr: String::new(),
            client_addr: "127.0.0.1".into(),
            ports: Ports::default(),
            addresses: Addresses::default(),
            log_level: "info".into(),
            log_json: false,
            log_file: String::new(),
            log_rotate_bytes: 0,
            log_rotate_duration: String::new(),
            log_rotate_max_files: 0,
            limits: Limits::default(),
            http_config: HttpConfig::default(),
            config_entries: ConfigEntriesConfig::default(),
            connect: ConnectConfig::default(),
            kv_max_value_size: None,
            txn_max_req_len: None,
            check_output_max_size: 4096,
            enable_script_checks: false,
            enable_local_script_checks: false,
            disable_update_check: false,
            retry_join: Vec::new(),
            start_join: Vec::new(),
            retry_interval: String::new(),
            retry_max: 0,
            acl: AclConfig::default(),
            services: Vec::new(),
            service: Vec::new(),
            checks: Vec::new(),
            check: Vec::new(),
            session_ttl_min: "10s".into(),
            check_update_interval: "5m".into(),
            default_query_time: "300s".into(),
            max_query_time: "600s".into(),
            pid_file: String::new(),
            discard_check_output: false,
            leave_on_terminate: None,
            skip_leave_on_interrupt: None,
            tagged_addresses: BTreeMap::new(),
            ui_config: BTreeMap::new(),
            watches: Value::Null,
            domain: "consul.".into(),
            alt_domain: String::new(),
            recursors: Vec::new(),
            dns_config: DnsConfig::default(),
            external_health: ExternalHealthConfig::default(),
            telemetry: TelemetryConfig::default(),
            tls: TlsConfig::default(),
            encrypt: String::new(),
            sources: Vec::new(),
        }
    }
}

/// A duration key's value, or `fallback` when it is empty, zero or not a
/// duration (bad values are refused at load: see [`validate`]).
fn positive_or(v: &str, fallback: Duration) -> Duration {
    meshgate_types::duration::parse(v)
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or(fallback)
}

impl Config {
    /// Largest KV value accepted.
    pub fn kv_max_value_size(&self) -> u64 {
        self.kv_max_value_size
            .unwrap_or(self.limits.kv_max_value_size)
    }

    /// Largest `/v1/txn` body accepted.
    pub fn txn_max_req_len(&self) -> u64 {
        self.txn_max_req_len.unwrap_or(self.limits.txn_max_req_len)
    }

    /// The addresses the HTTP API binds (`addresses.http`, else `client_addr`;
    /// both may list several addresses separated by spaces).
    pub fn http_addrs(&self) -> Vec<String> {
        let src = if self.addresses.http.trim().is_empty() {
            &self.client_addr
        } else {
            &self.addresses.http
        };
        src.split_whitespace().map(str::to_string).collect()
    }

    /// The addresses the HTTPS API binds (`addresses.https`, else
    /// `client_addr`; space separated).
    pub fn https_addrs(&self) -> Vec<String> {
        let src = if self.addresses.https.trim().is_empty() {
            &self.client_addr
        } else {
            &self.addresses.https
        };
        src.split_whitespace().map(str::to_string).collect()
    }

    /// The addresses the DNS interface binds (`addresses.dns`, else
    /// `client_addr`; space separated).
    pub fn dns_addrs(&self) -> Vec<String> {
        let src = if self.addresses.dns.trim().is_empty() {
            &self.client_addr
        } else {
            &self.addresses.dns
        };
        src.split_whitespace().map(str::to_string).collect()
    }

    /// The address other nodes reach this one on.
    pub fn advertise(&self) -> String {
        if !self.advertise_addr.is_empty() {
            return self.advertise_addr.clone();
        }
        match self.bind_addr.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => self.bind_addr.clone(),
            _ => "127.0.0.1".into(),
        }
    }

    /// `config_entries.bootstrap`, decoded, normalized and validated; the
    /// error names the entry as Consul does (`config_entries.bootstrap[1]:
    /// ...`).
    pub fn bootstrap_entries(
        &self,
    ) -> Result<Vec<meshgate_config_entries::ConfigEntry>, ConfigError> {
        let raw: Vec<&Value> = match &self.config_entries.bootstrap {
            Value::Null => Vec::new(),
            Value::Array(list) => list.iter().collect(),
            one @ Value::Object(_) => vec![one],
            _ => {
                return Err(ConfigError(
                    "config_entries.bootstrap: must be a list of config entries".into(),
                ));
            }
        };
        let mut out = Vec::new();
        for (i, raw) in raw.into_iter().enumerate() {
            let mut entry = meshgate_config_entries::decode_from_agent_config(raw.clone())
                .map_err(|e| ConfigError(format!("config_entries.bootstrap[{i}]: {e}")))?;
            entry.normalize();
            entry
                .validate()
                .map_err(|e| ConfigError(format!("config_entries.bootstrap[{i}]: {e}")))?;
            out.push(entry);
        }
        Ok(out)
    }

    /// Whether a stop by this signal (`"terminate"`, `"interrupt"`) first
    /// leaves the cluster: `leave_on_terminate` / `skip_leave_on_interrupt`,
    /// with Consul's defaults (client agents leave, servers do not).
    pub fn leave_on_signal(&self, signal: &str) -> bool {
        match signal {
            "terminate" => self.leave_on_terminate.unwrap_or(!self.server),
            _ => !self.skip_leave_on_interrupt.unwrap_or(self.server),
        }
    }

    /// `default_query_time` and `max_query_time` (checked at load).
    pub fn query_times(&self) -> (Duration, Duration) {
        (
            positive_or(&self.default_query_time, Duration::from_secs(300)),
            positive_or(&self.max_query_time, Duration::from_secs(600)),
        )
    }

    /// How the log file rotates: size (0: none), age, files kept.
    pub fn log_rotation(&self) -> (u64, Duration, i64) {
        let every = positive_or(&self.log_rotate_duration, Duration::from_secs(24 * 3600));
        (
            u64::try_from(self.log_rotate_bytes).unwrap_or(0),
            every,
            self.log_rotate_max_files,
        )
    }

    /// Time between two attempts to reach the servers to join, and how many
    /// attempts after the first may fail before the agent gives up (0: no
    /// limit).
    pub fn join_retry(&self) -> (Duration, u64) {
        let interval = positive_or(&self.retry_interval, Duration::from_millis(300));
        (interval, u64::try_from(self.retry_max).unwrap_or(0))
    }

    /// `watches` as a list (one HCL `watches { ... }` block: one watch).
    pub fn watch_list(&self) -> Vec<Value> {
        match &self.watches {
            Value::Null => Vec::new(),
            Value::Array(list) => list.clone(),
            one => vec![one.clone()],
        }
    }

    /// `check_update_interval` (checked at load).
    pub fn check_update_interval(&self) -> Duration {
        meshgate_types::duration::parse(&self.check_update_interval)
            .unwrap_or(Duration::from_secs(300))
    }

    /// Minimum session TTL.
    pub fn session_ttl_min(&self) -> Duration {
        meshgate_types::duration::parse(&self.session_ttl_min).unwrap_or(Duration::from_secs(10))
    }

    /// Every service defined in config files.
    pub fn all_services(&self) -> Vec<ServiceDefinition> {
        self.services
            .iter()
            .chain(self.service.iter())
            .cloned()
            .collect()
    }

    /// Every check defined in config files.
    pub fn all_checks(&self) -> Vec<CheckDefinition> {
        self.checks
            .iter()
            .chain(self.check.iter())
            .cloned()
            .collect()
    }

    /// Where the web UI is served (`ui_config.content_path`), as Consul
    /// writes it: one `/` before and after (`consul/ui` → `/consul/ui/`);
    /// `/ui/` when unset.
    pub fn ui_content_path(&self) -> Result<String, ConfigError> {
        let raw = match self.ui_config.get("content_path") {
            None | Some(Value::Null) => return Ok("/ui/".into()),
            Some(Value::String(s)) if s.is_empty() => return Ok("/ui/".into()),
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(ConfigError(format!(
                    "ui_config.content_path: invalid value {other}: not a string"
                )));
            }
        };
        let path = format!("/{}/", raw.trim_matches('/'));
        let bad = |why: &str| {
            Err(ConfigError(format!(
                "ui_config.content_path: invalid value {raw:?}: {why}"
            )))
        };
        if path == "//" {
            return bad("the UI cannot take the whole address space (the API is under /v1/)");
        }
        // The path goes into the UI's page and into redirects: plain URL
        // path characters only.
        if !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c))
            || path.contains("//")
            || path.split('/').any(|seg| seg == "." || seg == "..")
        {
            return bad("use letters, digits and - _ . ~ between slashes");
        }
        if path == "/v1/" || path.starts_with("/v1/") {
            return bad("the UI cannot be served under /v1/ (the API)");
        }
        Ok(path)
    }

    /// Whether the web UI is on.
    pub fn ui_enabled(&self) -> bool {
        match self.ui_config.get("enabled") {
            Some(Value::Bool(b)) => *b,
            _ => self.dev,
        }
    }
}

/// What to read: files and directories in order, then flag overrides.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
    /// Config fragments from flags (`-node`, `-http-port`...), as JSON.
    pub flags: Map<String, Value>,
    /// `-dev`.
    pub dev: bool,
    /// `-config-format`: force `hcl` or `json` for files without a known extension.
    pub format: Option<String>,
}

/// The result of loading: the config plus warnings to log once the logger runs.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Reads one file into a JSON object, checking every key.
pub fn read_file(path: &Path, format: Option<&str>) -> Result<(Value, Vec<String>), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("Error reading {}: {e}", path.display())))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|s| s.to_ascii_lowercase());
    let is_json = match ext.as_deref() {
        Some("json") => true,
        Some("hcl") => false,
        _ => format == Some("json"),
    };
    let value = if is_json {
        serde_json::from_str::<Value>(&text)
            .map_err(|e| ConfigError(format!("Error parsing {}: {e}", path.display())))?
    } else {
        meshgate_hcl::parse_to_json(&text)
            .map_err(|e| ConfigError(format!("Error parsing {}: {e}", path.display())))?
    };
    if !value.is_object() {
        return Err(ConfigError(format!(
            "Error parsing {}: the top level must be an object",
            path.display()
        )));
    }
    let warnings = check_keys(&value, &path.display().to_string())?;
    Ok((value, warnings))
}

/// Validates keys and value types against the documented list; returns warnings
/// for keys accepted without effect.
pub fn check_keys(value: &Value, source: &str) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    config_keys::walk(value, &mut |path, v| match config_keys::check(path, v) {
        KeyCheck::Ok => {}
        KeyCheck::NoEffect => warnings.push(format!(
            "{source}: config key \"{path}\" is accepted but has no effect in meshgate"
        )),
        KeyCheck::Deprecated(new) => warnings.push(format!(
            "{source}: config key \"{path}\" is deprecated, use \"{new}\" instead"
        )),
        KeyCheck::Unknown => errors.push(format!("{source}: invalid config key {path}")),
        KeyCheck::BadValue(why) => errors.push(format!("{source}: {path}: {why}")),
    });
    if errors.is_empty() {
        Ok(warnings)
    } else {
        Err(ConfigError(errors.join("\n")))
    }
}

/// Merges `src` into `dst`: objects merge key by key, lists append, anything else
/// is replaced.
pub fn merge(dst: &mut Value, src: Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        d.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(s)) => d.extend(s),
        (d, s) => *d = s,
    }
}

/// The files of a config directory: `*.hcl` and `*.json`, sorted by name.
fn dir_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| ConfigError(format!("Error reading {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("hcl") | Some("json")
                )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads the configuration from files, directories and flags.
pub fn load(src: &Sources) -> Result<Loaded, ConfigError> {
    let mut merged = Value::Object(Map::new());
    let mut warnings = Vec::new();
    let mut files = Vec::new();
    for f in &src.files {
        if f.is_dir() {
            files.extend(dir_files(f)?);
        } else {
            files.push(f.clone());
        }
    }
    for d in &src.dirs {
        files.extend(dir_files(d)?);
    }
    for f in &files {
        let (v, w) = read_file(f, src.format.as_deref())?;
        warnings.extend(w);
        merge(&mut merged, v);
    }
    config_keys::translate_deprecated(&mut merged);
    let flags = Value::Object(src.flags.clone());
    warnings.extend(check_keys(&flags, "command line")?);
    merge(&mut merged, flags);
    if src.dev
        && let Value::Object(m) = &mut merged
    {
        m.insert("dev".into(), Value::Bool(true));
        m.entry("server").or_insert(Value::Bool(true));
        m.entry("bind_addr")
            .or_insert(Value::String("127.0.0.1".into()));
    }
    // Keys decoded below are a subset; `lenient` ignores the rest (already checked).
    let mut config: Config = lenient::from_value(merged, Options::default())
        .map_err(|e| ConfigError(format!("Error decoding configuration: {e}")))?;
    config.sources = files;
    validate(&config)?;
    warnings.extend(config.tls.warnings());
    Ok(Loaded { config, warnings })
}

fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn validate(c: &Config) -> Result<(), ConfigError> {
    if !valid_dns_label(&c.datacenter) || c.datacenter.to_lowercase() != c.datacenter {
        return Err(ConfigError(format!(
            "datacenter: invalid value \"{}\": must be lower case letters, digits, '-' and '_'",
            c.datacenter
        )));
    }
    match c.log_level.to_ascii_lowercase().as_str() {
        "trace" | "debug" | "info" | "warn" | "err" | "error" | "off" => {}
        other => {
            return Err(ConfigError(format!(
                "log_level: invalid value \"{other}\": use trace, debug, info, warn or error"
            )));
        }
    }
    for (name, p) in [
        ("ports.http", c.ports.http),
        ("ports.dns", c.ports.dns),
        ("ports.server", c.ports.server),
    ] {
        if !(-1..=65535).contains(&p) {
            return Err(ConfigError(format!(
                "{name}: invalid port {p}: must be between 0 and 65535, or -1 to disable"
            )));
        }
    }
    for a in c.http_addrs() {
        if a.parse::<IpAddr>().is_err() && !a.starts_with("unix://") {
            return Err(ConfigError(format!(
                "client_addr: invalid address \"{a}\": not an IP address"
            )));
        }
    }
    if !c.bind_addr.is_empty() && c.bind_addr.parse::<IpAddr>().is_err() {
        return Err(ConfigError(format!(
            "bind_addr: invalid address \"{}\": not an IP address",
            c.bind_addr
        )));
    }
    if c.kv_max_value_size() == 0 {
        return Err(ConfigError("limits.kv_max_value_size: must be > 0".into()));
    }
    for a in c.addresses.dns.split_whitespace() {
        if a.parse::<IpAddr>().is_err() {
            return Err(ConfigError(format!(
                "addresses.dns: invalid address \"{a}\": not an IP address"
            )));
        }
    }
    for name in ["https", "internal_rpc"] {
        c.tls.settings(name).map_err(ConfigError)?;
    }
    if c.ports.https > 0 {
        let t = c.tls.https();
        if t.cert_file.is_empty() || t.key_file.is_empty() {
            return Err(ConfigError(
                "ports.https is set but no certificate is: set cert_file and key_file in tls.https or tls.defaults".into(),
            ));
        }
        if t.verify_incoming && t.ca_file.is_empty() {
            return Err(ConfigError(
                "verify_incoming is set for the HTTPS API but no CA is: set ca_file in tls.https or tls.defaults".into(),
            ));
        }
    }
    crate::dns::DnsSettings::from_config(c)?;
    crate::external::Settings::from_config(c)?;
    crate::http::policy::HttpPolicy::from_config(&c.http_config)?;
    c.bootstrap_entries()?;
    crate::connect::initial_ca_config(&c.connect).map_err(|e| ConfigError(e.to_string()))?;
    if meshgate_types::duration::parse(&c.check_update_interval).is_err() {
        return Err(ConfigError(format!(
            "check_update_interval: invalid value {:?}: must be a duration",
            c.check_update_interval
        )));
    }
    for (key, v) in [
        ("default_query_time", &c.default_query_time),
        ("max_query_time", &c.max_query_time),
    ] {
        match meshgate_types::duration::parse(v) {
            Ok(d) if !d.is_zero() => {}
            _ => {
                return Err(ConfigError(format!(
                    "{key}: invalid value {v:?}: must be a positive duration"
                )));
            }
        }
    }
    crate::statsd::targets(&c.telemetry)?;
    c.ui_content_path()?;
    for (key, list) in [("retry_join", &c.retry_join), ("start_join", &c.start_join)] {
        if let Some(j) = list.iter().find(|j| j.contains("provider=")) {
            return Err(ConfigError(format!(
                "{key}: {j:?}: cloud auto-join (go-discover \"provider=...\") is not supported \
                 by meshgate: list the servers' addresses (host or host:port)"
            )));
        }
    }
    for (key, v) in [
        ("log_rotate_duration", &c.log_rotate_duration),
        ("retry_interval", &c.retry_interval),
    ] {
        if !v.is_empty() && meshgate_types::duration::parse(v).is_err() {
            return Err(ConfigError(format!(
                "{key}: invalid value {v:?}: not a duration"
            )));
        }
    }
    match c.acl.default_policy.as_str() {
        "allow" | "deny" => {}
        other => {
            return Err(ConfigError(format!(
                "acl.default_policy: invalid value \"{other}\": use \"allow\" or \"deny\""
            )));
        }
    }
    Ok(())
}
