//! Third-party Consul client libraries against a real agent: rs-consul
//! (Rust) and py-consul (Python, the python-consul lineage).

use rs_consul::types::{
    CreateOrUpdateKeyRequest, DeleteKeyRequest, GetServiceNodesRequest, LockRequest,
    ReadKeyRequest, RegisterEntityPayload, RegisterEntityService,
};
use rs_consul::{Config, Consul};

use crate::dev;

fn client(a: &meshgate_test_support::Agent) -> Consul {
    Consul::new(Config {
        address: a.base.clone(),
        token: None,
        ..Default::default()
    })
}

#[tokio::test]
async fn rs_consul_kv_catalog_and_locks() {
    let a = dev().await;
    let c = client(&a);
    let req = CreateOrUpdateKeyRequest {
        key: "carbonio-files/db-username",
        ..Default::default()
    };
    let (ok, _) = c
        .create_or_update_key(req, b"files_user".to_vec())
        .await
        .unwrap();
    assert!(ok);
    let read = c
        .read_key(ReadKeyRequest {
            key: "carbonio-files/db-username",
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(read.response[0].value.as_deref(), Some("files_user"));
    assert!(read.index >= 1);

    let payload = RegisterEntityPayload {
        ID: None,
        Node: "external-files-db-node".into(),
        Address: "127.0.0.9".into(),
        Datacenter: None,
        TaggedAddresses: Default::default(),
        NodeMeta: [("external-node".to_string(), "true".to_string())].into(),
        Service: Some(RegisterEntityService {
            ID: Some("carbonio-gateway".into()),
            Service: "carbonio-files-db".into(),
            Tags: vec![],
            TaggedAddresses: Default::default(),
            Meta: Default::default(),
            Port: Some(5432),
            Namespace: None,
        }),
        Checks: vec![],
        SkipNodeUpdate: None,
    };
    c.register_entity(&payload).await.unwrap();
    let names = c.get_all_registered_service_names(None).await.unwrap();
    assert!(names.response.contains(&"carbonio-files-db".to_string()));
    let nodes = c
        .get_service_nodes(
            GetServiceNodesRequest {
                service: "carbonio-files-db",
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(nodes.response.len(), 1);
    assert_eq!(nodes.response[0].service.port, 5432);
    assert_eq!(nodes.response[0].node.address, "127.0.0.9");

    let lock = c
        .get_lock(
            LockRequest {
                key: "locks/leader",
                ..Default::default()
            },
            b"me",
        )
        .await
        .unwrap();
    let (_, v) = a.get_json("/v1/kv/locks/leader").await;
    assert_eq!(v[0]["Session"], lock.session_id.as_str());
    let second = c
        .get_lock(
            LockRequest {
                key: "locks/leader",
                ..Default::default()
            },
            b"you",
        )
        .await;
    assert!(second.is_err(), "a held lock cannot be taken twice");
    drop(lock);

    let deleted = c
        .delete_key(DeleteKeyRequest {
            key: "carbonio-files/db-username",
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(deleted);
    let (st, _) = a.get_json("/v1/kv/carbonio-files/db-username").await;
    assert_eq!(st, 404);
}

/// Runs tests/it/py_consul_client.py against `a` (`mode`: extra
/// arguments) and checks that every step passed.
async fn py_consul(a: &meshgate_test_support::Agent, mode: &[&str]) {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import consul; consul.Consul"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test needs the py-consul client: pip install py-consul (.ci/run does this)"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/py_consul_client.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .arg(a.addr.ip().to_string())
        .arg(a.addr.port().to_string())
        .arg("test-node")
        .args(mode);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run python3"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ALL OK"),
        "py-consul run {mode:?} failed ({}):\n{stdout}\n{stderr}\nagent log:\n{}",
        out.status,
        a.log()
    );
}

/// py-consul drives a `-dev` agent through an application's whole use of
/// the API (tests/it/py_consul_client.py: KV with blocking reads, CAS and
/// locks, sessions, agent services and TTL checks, catalog, health,
/// transactions, events, config entries, intentions, the CA, prepared
/// queries, status): every step asserts what the client got back.
#[tokio::test]
async fn python_client_drives_the_api() {
    py_consul(&dev().await, &[]).await;
}

/// py-consul sets up ACLs on an agent that enforces them (default deny,
/// not bootstrapped): bootstrap, a policy in Consul's JSON rule form, a role,
/// a token; what the token may and may not do; token self, list, clone,
/// update and delete.
#[tokio::test]
async fn python_client_sets_up_acls() {
    let a = meshgate_test_support::AgentBuilder::dev(crate::BIN)
        .args(["-node", "test-node"])
        .config_file(
            "acl.hcl",
            "acl {\n  enabled = true\n  default_policy = \"deny\"\n}\n",
        )
        .start()
        .await;
    py_consul(&a, &["acl"]).await;
}
