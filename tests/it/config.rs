//! Agent start-up: configuration files, flags, errors, signals.

use std::time::Duration;

use meshgate_test_support::AgentBuilder;
use serde_json::json;

use crate::{BIN, dev_builder};

#[tokio::test]
async fn config_files_in_hcl_and_json() {
    let a = dev_builder()
        .config_file(
            "agent.hcl",
            r#"
datacenter = "east"
node_meta { rack = "r1" }
performance { raft_multiplier = 1 }   # accepted, no effect
ports { grpc_tls = -1 }
service {
  name = "from-config"
  port = 7000
}
"#,
        )
        .config_file(
            "more.json",
            r#"{"services": [{"name": "also-config", "port": 7001}]}"#,
        )
        .start()
        .await;
    let (_, dcs) = a.get_json("/v1/catalog/datacenters").await;
    assert_eq!(dcs, json!(["east"]));
    let (_, node) = a.get_json("/v1/catalog/node/test-node").await;
    assert_eq!(node["Node"]["Meta"]["rack"], "r1");
    let (_, svcs) = a.get_json("/v1/agent/services").await;
    assert_eq!(svcs["from-config"]["Port"], 7000);
    assert_eq!(svcs["also-config"]["Port"], 7001);
    let log = a.log();
    assert!(
        log.contains("performance.raft_multiplier\" is accepted but has no effect"),
        "{log}"
    );
    assert!(log.contains("meshgate agent running"), "{log}");
}

#[test]
fn unknown_keys_and_bad_values_fail_at_start() {
    let (code, out) = dev_builder()
        .config_file("bad.hcl", "datacenter = \"dc1\"\nbogus_key = 1\n")
        .start_failure();
    assert_eq!(code, 1);
    assert!(
        out.contains("bad.hcl: invalid config key bogus_key"),
        "{out}"
    );
    let (code, out) = dev_builder()
        .config_file("bad.json", r#"{"ports": {"http": "eighty"}}"#)
        .start_failure();
    assert_eq!(code, 1);
    assert!(out.contains("bad.json: ports.http: invalid value"), "{out}");
    let (code, out) = dev_builder()
        .config_file("syntax.hcl", "datacenter = \n")
        .start_failure();
    assert_eq!(code, 1);
    assert!(out.contains("syntax.hcl"), "{out}");
    let (code, out) = dev_builder()
        .args(["-datacenter", "Bad DC"])
        .start_failure();
    assert_eq!(code, 1);
    assert!(out.contains("datacenter"), "{out}");
}

#[test]
fn servers_need_a_data_dir_and_loopback_without_credentials() {
    let (code, out) = AgentBuilder::dev(BIN).without_dev().start_failure();
    assert_eq!(code, 1);
    assert!(
        out.contains("a client agent needs servers to join"),
        "{out}"
    );
    let (code, out) = AgentBuilder::dev(BIN)
        .without_dev()
        .args(["-server"])
        .start_failure();
    assert_eq!(code, 1);
    assert!(out.contains("data_dir is required"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = AgentBuilder::dev(BIN)
        .without_dev()
        .args(["-server", "-data-dir", &dir.path().display().to_string()])
        .start_failure();
    assert_eq!(code, 1);
    assert!(
        out.contains("refusing to bind cluster traffic to 0.0.0.0"),
        "{out}"
    );
    assert!(out.contains("without mutual TLS"), "{out}");
}

#[tokio::test]
async fn node_name_defaults_to_hostname_and_sigterm_stops_cleanly() {
    let mut a = AgentBuilder::dev(BIN).start().await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .split('.')
        .next()
        .unwrap()
        .to_string();
    let (_, s) = a.get_json("/v1/agent/self").await;
    assert_eq!(s["Config"]["NodeName"], host.as_str());
    let started = std::time::Instant::now();
    let status = a.terminate().expect("agent exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        a.log().contains("Graceful shutdown complete"),
        "{}",
        a.log()
    );
}
