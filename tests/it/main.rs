//! End-to-end tests: real `meshgate` processes on loopback, driven over HTTP, by
//! the CLI, and by a third-party Consul client library.

mod acl;
mod acl_cli;
mod agent_api;
mod catalog;
mod cli;
mod cluster;
mod compat;
mod config;
mod config_cli;
mod connect;
mod dataplane;
mod dns;
mod external;
mod gateway_cli;
mod guide;
mod health;
mod kv;
mod multinode;
mod ops;
mod patroni;
mod query;
mod session;
mod snapshot;
mod txn;
mod ui;

use meshgate_test_support::{Agent, AgentBuilder};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_meshgate");

/// A dev agent with a fixed node name.
pub async fn dev() -> Agent {
    AgentBuilder::dev(BIN)
        .args(["-node", "test-node"])
        .start()
        .await
}

/// A builder for a dev agent with a fixed node name.
pub fn dev_builder() -> AgentBuilder {
    AgentBuilder::dev(BIN).args(["-node", "test-node"])
}

/// The value of a response header.
pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Fails the test, saying how to install it, unless `cmd args...` runs and
/// succeeds (a prerequisite such as a third-party client or tool).
pub fn require(cmd: &str, args: &[&str], install: &str) {
    let ok = std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "this test needs {install} (.ci/run installs it)");
}

/// A gauge's name as an agent publishes it by default: Consul puts the host
/// name after the prefix (`consul.<host>.state.nodes`) unless
/// `telemetry.disable_hostname` is set.
pub fn host_gauge(name: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name")
        .trim()
        .to_string();
    match name.split_once('.') {
        Some((prefix, rest)) => format!("{prefix}.{host}.{rest}"),
        None => format!("{host}.{name}"),
    }
}

/// A metric's value since start in `/v1/agent/metrics?format=prometheus`
/// (a counter's total, a timer's `_count` when `series` is `"_count"`), by
/// its dotted name: `consul.kvs.apply`.
pub async fn prometheus_total(
    a: &meshgate_test_support::Agent,
    name: &str,
    series: &str,
) -> Option<f64> {
    let text = a
        .http
        .get(a.url("/v1/agent/metrics?format=prometheus"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let prefix = format!("{name}{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

/// A TLS acceptor presenting `cert_pem` (with `key_pem`) to any client,
/// for the test servers that play a TLS service.
pub fn tls_acceptor(cert_pem: &str, key_pem: &str) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let cfg = rustls::ServerConfig::builder_with_provider(meshgate_ca::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg))
}

/// One metric of `/v1/agent/metrics` by kind (`Gauges`, `Counters`,
/// `Samples`) and name.
pub fn metric<'a>(
    m: &'a serde_json::Value,
    kind: &str,
    name: &str,
) -> Option<&'a serde_json::Value> {
    m[kind].as_array()?.iter().find(|g| g["Name"] == name)
}
