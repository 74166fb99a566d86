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
