//! A third-party Consul client library (rs-consul) against a real agent.

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
