use std::collections::BTreeMap;

use meshgate_types::catalog::{DeregisterRequest, HealthCheck, NodeService, RegisterRequest};
use meshgate_types::kv::Session;
use meshgate_types::txn::TxnKvOp;
use proptest::prelude::*;

use super::*;

struct Harness {
    state: State,
    idx: u64,
    now: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            state: State::new(),
            idx: 0,
            now: 1_000_000,
        }
    }

    fn apply(&mut self, cmd: Command) -> Result<Applied, ApplyError> {
        self.idx += 1;
        self.state.apply(
            self.idx,
            &Request {
                now_ms: self.now,
                cmd,
            },
        )
    }

    fn ok(&mut self, cmd: Command) -> Applied {
        self.apply(cmd).expect("apply")
    }

    fn set(&mut self, key: &str, value: &str) -> bool {
        match self.ok(Command::KvSet {
            key: key.into(),
            value: Some(value.as_bytes().to_vec()),
            flags: 0,
            op: KvSetOp::Set,
        }) {
            Applied::Bool(b) => b,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn kv_op(&mut self, key: &str, op: KvSetOp) -> bool {
        match self.apply(Command::KvSet {
            key: key.into(),
            value: Some(b"v".to_vec()),
            flags: 0,
            op,
        }) {
            Ok(Applied::Bool(b)) => b,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn register_node(&mut self, node: &str) {
        self.ok(Command::Register(Box::new(RegisterRequest {
            node: node.into(),
            address: "127.0.0.1".into(),
            ..Default::default()
        })));
    }

    fn register_service(&mut self, node: &str, id: &str, name: &str, tags: &[&str]) {
        self.ok(Command::Register(Box::new(RegisterRequest {
            node: node.into(),
            address: "127.0.0.1".into(),
            service: Some(NodeService {
                id: id.into(),
                service: name.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                port: 80,
                ..Default::default()
            }),
            ..Default::default()
        })));
    }

    fn register_check(&mut self, node: &str, id: &str, service_id: &str, status: &str) {
        self.ok(Command::Register(Box::new(RegisterRequest {
            node: node.into(),
            address: "127.0.0.1".into(),
            check: Some(HealthCheck {
                check_id: id.into(),
                name: id.into(),
                service_id: service_id.into(),
                status: status.into(),
                ..Default::default()
            }),
            ..Default::default()
        })));
    }

    fn session(&mut self, id: &str, node: &str, behavior: &str, checks: &[&str]) {
        self.ok(Command::SessionCreate(Session {
            id: id.into(),
            node: node.into(),
            behavior: behavior.into(),
            lock_delay: 15_000_000_000,
            node_checks: Some(checks.iter().map(|c| c.to_string()).collect()),
            ..Default::default()
        }));
    }
}

#[test]
fn autopilot_check_and_set_matches_what_was_read() {
    let mut h = Harness::new();
    let set = |min_quorum: u64, cas: Option<u64>| Command::AutopilotSet {
        config: Box::new(AutopilotConfig {
            min_quorum,
            ..AutopilotConfig::default()
        }),
        cas,
    };
    // Never written: the defaults read with index 0, which a CAS of 0
    // matches and any other index does not.
    assert_eq!(h.state.autopilot().modify_index, 0);
    assert_eq!(h.ok(set(5, Some(7))), Applied::Bool(false));
    assert_eq!(h.state.autopilot().min_quorum, 0);
    assert_eq!(h.ok(set(3, Some(0))), Applied::Bool(true));
    let c = h.state.autopilot();
    assert_eq!((c.min_quorum, c.modify_index), (3, h.idx));
    // Written: only its own index matches; a stale read loses.
    assert_eq!(h.ok(set(4, Some(0))), Applied::Bool(false));
    assert_eq!(h.ok(set(4, Some(c.modify_index))), Applied::Bool(true));
    assert_eq!(h.state.autopilot().min_quorum, 4);
    assert_eq!(h.state.autopilot().create_index, c.create_index);
}

#[test]
fn register_and_query_service() {
    let mut h = Harness::new();
    h.register_service("n1", "web1", "web", &["v1", "primary"]);
    h.register_service("n2", "web2", "web", &["v2"]);
    h.register_service("n2", "db", "db", &[]);
    let (_, nodes) = h.state.nodes();
    assert_eq!(nodes.len(), 2);
    let (_, svcs) = h.state.services();
    assert_eq!(svcs["web"], vec!["primary", "v1", "v2"]);
    assert_eq!(svcs["db"], Vec::<String>::new());
    let (_, web) = h.state.service_nodes("web", &[]);
    assert_eq!(web.len(), 2);
    let (_, tagged) = h.state.service_nodes("WEB", &["PRIMARY".to_string()]);
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].service_id, "web1");
    assert_eq!(tagged[0].node, "n1");
}

#[test]
fn unchanged_registration_keeps_indexes() {
    let mut h = Harness::new();
    h.register_service("n1", "web1", "web", &[]);
    let before = h.state.tables();
    let sidx = h.state.service_index("web");
    h.register_service("n1", "web1", "web", &[]);
    assert_eq!(h.state.tables(), before);
    assert_eq!(h.state.service_index("web"), sidx);
    h.register_service("n1", "web1", "web", &["new"]);
    assert!(h.state.service_index("web") > sidx);
}

#[test]
fn service_index_is_per_service() {
    let mut h = Harness::new();
    h.register_service("n1", "web1", "web", &[]);
    h.register_service("n1", "db1", "db", &[]);
    let web = h.state.service_index("web");
    h.register_check("n1", "db-check", "db1", "passing");
    assert_eq!(h.state.service_index("web"), web);
    // A node-level check touches every service on the node.
    h.register_check("n1", "node-check", "", "passing");
    assert!(h.state.service_index("web") > web);
}

#[test]
fn register_validation_changes_nothing() {
    let mut h = Harness::new();
    let err = h
        .apply(Command::Register(Box::new(RegisterRequest {
            node: "n1".into(),
            ..Default::default()
        })))
        .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Invalid("Must provide address if SkipNodeUpdate is not set".into())
    );
    let err = h
        .apply(Command::Register(Box::new(RegisterRequest {
            node: "n1".into(),
            address: "1.2.3.4".into(),
            check: Some(HealthCheck {
                check_id: "c".into(),
                service_id: "missing".into(),
                ..Default::default()
            }),
            ..Default::default()
        })))
        .unwrap_err();
    assert!(matches!(err, ApplyError::Invalid(_)));
    assert!(h.state.node("n1").is_none(), "nothing half-applied");
}

#[test]
fn check_defaults_and_health() {
    let mut h = Harness::new();
    h.register_service("n1", "web1", "web", &["t"]);
    h.register_check("n1", "web-check", "web1", "");
    let c = h.state.check("n1", "web-check").unwrap();
    assert_eq!(c.status, "critical");
    assert_eq!(c.service_name, "web");
    assert_eq!(c.service_tags, vec!["t"]);
    h.register_check("n1", "serfHealth", "", "passing");
    let (_, entries) = h.state.check_service_nodes("web", &[]);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].checks.len(), 2);
    assert_eq!(entries[0].aggregated_status(), "critical");
    h.ok(Command::UpdateCheck {
        node: "N1".into(),
        check_id: "web-check".into(),
        status: "passing".into(),
        output: "ok".into(),
    });
    let (_, entries) = h.state.check_service_nodes("web", &[]);
    assert_eq!(entries[0].aggregated_status(), "passing");
    let (_, crit) = h.state.checks_in_state("critical");
    assert!(crit.is_empty());
}

#[test]
fn deregister_service_removes_its_checks() {
    let mut h = Harness::new();
    h.register_service("n1", "web1", "web", &[]);
    h.register_check("n1", "web-check", "web1", "passing");
    h.register_check("n1", "node-check", "", "passing");
    h.ok(Command::Deregister(DeregisterRequest {
        node: "n1".into(),
        service_id: "web1".into(),
        ..Default::default()
    }));
    assert!(h.state.service_nodes("web", &[]).1.is_empty());
    assert!(h.state.check("n1", "web-check").is_none());
    assert!(h.state.check("n1", "node-check").is_some());
    let (_, svcs) = h.state.services();
    assert!(svcs.is_empty());
    h.ok(Command::Deregister(DeregisterRequest {
        node: "n1".into(),
        ..Default::default()
    }));
    assert!(h.state.node("n1").is_none());
    assert!(h.state.check("n1", "node-check").is_none());
}

#[test]
fn kv_set_get_cas_delete() {
    let mut h = Harness::new();
    assert!(h.set("a/b", "1"));
    let (idx, e) = h.state.kv_get("a/b");
    let e = e.unwrap().clone();
    assert_eq!(idx, e.modify_index);
    assert_eq!(e.value.as_deref(), Some(&b"1"[..]));
    assert!(
        !h.kv_op("a/b", KvSetOp::Cas(0)),
        "cas 0 on existing key fails"
    );
    assert!(!h.kv_op("a/b", KvSetOp::Cas(e.modify_index + 100)));
    assert!(h.kv_op("a/b", KvSetOp::Cas(e.modify_index)));
    assert!(h.kv_op("new", KvSetOp::Cas(0)));
    let (_, e2) = h.state.kv_get("a/b");
    assert_eq!(e2.unwrap().create_index, e.create_index);
    // delete with a stale cas does nothing
    let stale = Command::KvDelete {
        key: "a/b".into(),
        recurse: false,
        cas: Some(1),
    };
    assert_eq!(h.ok(stale), Applied::Bool(false));
    assert!(h.state.kv_get("a/b").1.is_some());
    h.ok(Command::KvDelete {
        key: "a/b".into(),
        recurse: false,
        cas: None,
    });
    let (idx, e) = h.state.kv_get("a/b");
    assert!(e.is_none());
    assert_eq!(idx, h.idx, "a deleted key reports its deletion index");
}

#[test]
fn kv_single_key_index_ignores_other_keys() {
    let mut h = Harness::new();
    h.set("watched", "1");
    let (idx, _) = h.state.kv_get("watched");
    h.set("other", "2");
    assert_eq!(h.state.kv_get("watched").0, idx);
    h.set("watched", "3");
    assert!(h.state.kv_get("watched").0 > idx);
}

#[test]
fn kv_list_keys_separator_and_tree_delete() {
    let mut h = Harness::new();
    for k in ["app/a", "app/b/c", "app/b/d", "app2/x", "other"] {
        h.set(k, "v");
    }
    let (_, list) = h.state.kv_list("app/");
    let keys: Vec<&str> = list.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["app/a", "app/b/c", "app/b/d"]);
    let (_, keys) = h.state.kv_keys("app/", "/");
    assert_eq!(keys, vec!["app/a", "app/b/"]);
    let (_, keys) = h.state.kv_keys("", "/");
    assert_eq!(keys, vec!["app/", "app2/", "other"]);
    let (_, keys) = h.state.kv_keys("app", "");
    assert_eq!(keys.len(), 4);
    let before = h.state.kv_list("app/").0;
    h.ok(Command::KvDelete {
        key: "app/".into(),
        recurse: true,
        cas: None,
    });
    let (idx, list) = h.state.kv_list("app/");
    assert!(list.is_empty());
    assert!(idx > before, "tombstones move the prefix index forward");
    assert_eq!(h.state.kv_list("").1.len(), 2);
}

#[test]
fn locks_sessions_and_release() {
    let mut h = Harness::new();
    h.register_node("n1");
    h.register_check("n1", "serfHealth", "", "passing");
    h.session("s1", "n1", "release", &["serfHealth"]);
    h.session("s2", "n1", "release", &[]);
    assert!(h.kv_op("lock", KvSetOp::Lock("s1".into())));
    assert!(h.kv_op("lock", KvSetOp::Lock("s1".into())), "re-acquire ok");
    assert_eq!(h.state.kv_get("lock").1.unwrap().lock_index, 1);
    assert!(!h.kv_op("lock", KvSetOp::Lock("s2".into())));
    assert!(!h.kv_op("lock", KvSetOp::Unlock("s2".into())));
    // A plain set keeps the lock holder but, as in Consul, resets LockIndex.
    h.set("lock", "x");
    assert_eq!(h.state.kv_get("lock").1.unwrap().session, "s1");
    assert_eq!(h.state.kv_get("lock").1.unwrap().lock_index, 0);
    // Invalid session is an error.
    let err = h
        .apply(Command::KvSet {
            key: "lock".into(),
            value: None,
            flags: 0,
            op: KvSetOp::Lock("nope".into()),
        })
        .unwrap_err();
    assert_eq!(err, ApplyError::Invalid("invalid session \"nope\"".into()));
    // The check going critical invalidates s1 and releases the lock.
    h.register_check("n1", "serfHealth", "", "critical");
    assert!(h.state.session("s1").1.is_none());
    let e = h.state.kv_get("lock").1.unwrap();
    assert!(e.session.is_empty());
    // Lock delay: s2 cannot take it until 15 s later.
    assert!(!h.kv_op("lock", KvSetOp::Lock("s2".into())));
    h.now += 15_001;
    assert!(h.kv_op("lock", KvSetOp::Lock("s2".into())));
    assert_eq!(h.state.kv_get("lock").1.unwrap().lock_index, 1);
}

#[test]
fn session_delete_behavior_and_node_removal() {
    let mut h = Harness::new();
    h.register_node("n1");
    h.session("s1", "n1", "delete", &[]);
    assert!(h.kv_op("k", KvSetOp::Lock("s1".into())));
    h.ok(Command::Deregister(DeregisterRequest {
        node: "n1".into(),
        ..Default::default()
    }));
    assert!(h.state.session("s1").1.is_none());
    assert!(
        h.state.kv_get("k").1.is_none(),
        "delete behavior removes the key"
    );
}

#[test]
fn session_create_validation() {
    let mut h = Harness::new();
    let s = Session {
        id: "s".into(),
        node: "ghost".into(),
        behavior: "release".into(),
        ..Default::default()
    };
    assert!(h.apply(Command::SessionCreate(s)).is_err());
    h.register_node("n1");
    h.register_check("n1", "bad", "", "critical");
    let s = Session {
        id: "s".into(),
        node: "n1".into(),
        behavior: "release".into(),
        node_checks: Some(vec!["bad".into()]),
        ..Default::default()
    };
    assert_eq!(
        h.apply(Command::SessionCreate(s)).unwrap_err(),
        ApplyError::Invalid("Check 'bad' is in critical state".into())
    );
}

fn txn_op(verb: &str, key: &str, index: u64) -> TxnKvOp {
    TxnKvOp {
        verb: verb.into(),
        key: key.into(),
        value: Some(b"x".to_vec()),
        index,
        ..Default::default()
    }
}

#[test]
fn txn_all_or_nothing() {
    let mut h = Harness::new();
    h.set("existing", "1");
    let Applied::Txn(r) = h.ok(Command::Txn(vec![
        txn_op("set", "a", 0),
        txn_op("delete", "existing", 0),
        txn_op("get", "missing", 0),
    ])) else {
        panic!()
    };
    assert_eq!(r.results, None);
    let errs = r.errors.unwrap();
    assert_eq!(errs[0].op_index, 2);
    assert_eq!(errs[0].what, "key \"missing\" doesn't exist");
    assert_eq!(errs.len(), 1);
    assert!(h.state.kv_get("a").1.is_none());
    assert!(h.state.kv_get("existing").1.is_some());
    let Applied::Txn(r) = h.ok(Command::Txn(vec![
        txn_op("set", "a", 0),
        txn_op("get", "a", 0),
        txn_op("cas", "a", 0),
    ])) else {
        panic!()
    };
    assert_eq!(
        r.errors.unwrap()[0].what,
        "failed to set key \"a\", index is stale"
    );
    let Applied::Txn(r) = h.ok(Command::Txn(vec![
        txn_op("set", "a", 0),
        txn_op("get", "a", 0),
    ])) else {
        panic!()
    };
    let res = r.results.unwrap();
    assert_eq!(res.len(), 2);
    assert_eq!(
        res[0].kv.as_ref().unwrap().value,
        None,
        "writes return no value"
    );
    assert_eq!(
        res[1].kv.as_ref().unwrap().value.as_deref(),
        Some(&b"x"[..])
    );
}

#[test]
fn txn_with_catalog_operations_is_all_or_nothing() {
    use meshgate_types::catalog::Node;
    use meshgate_types::txn::{TxnCheckOp, TxnNodeOp, TxnOperation, TxnServiceOp};
    let mut h = Harness::new();
    let node = |name: &str, modify_index: u64| Node {
        node: name.into(),
        address: "127.0.0.9".into(),
        modify_index,
        ..Node::default()
    };
    let set_node = |n: Node| {
        TxnOperation::Node(TxnNodeOp {
            verb: "set".into(),
            node: n,
        })
    };
    let service = TxnOperation::Service(TxnServiceOp {
        verb: "set".into(),
        node: "ext".into(),
        service: NodeService {
            id: "db1".into(),
            service: "db".into(),
            port: 5432,
            ..NodeService::default()
        },
    });
    let check = |status: &str, modify_index: u64| {
        TxnOperation::Check(TxnCheckOp {
            verb: "cas".into(),
            check: HealthCheck {
                node: "ext".into(),
                check_id: "db-alive".into(),
                service_id: "db1".into(),
                status: status.into(),
                modify_index,
                ..HealthCheck::default()
            },
        })
    };
    let Applied::Txn(r) = h.ok(Command::TxnOps(vec![
        set_node(node("ext", 0)),
        service.clone(),
        check("passing", 0),
        TxnOperation::Kv(txn_op("set", "probes/ext", 0)),
    ])) else {
        panic!()
    };
    assert!(r.errors.is_none(), "{r:?}");
    let res = r.results.unwrap();
    assert_eq!(res.len(), 4);
    assert_eq!(res[1].service.as_ref().unwrap().service, "db");
    assert_eq!(res[2].check.as_ref().unwrap().service_name, "db");
    let created = res[2].check.as_ref().unwrap().modify_index;
    let before_nodes = h.state.tables().nodes;

    // A later failure undoes the earlier catalog and KV writes.
    let Applied::Txn(r) = h.ok(Command::TxnOps(vec![
        set_node(node("other", 0)),
        check("critical", created),
        TxnOperation::Kv(txn_op("delete", "probes/ext", 0)),
        check("passing", created),
    ])) else {
        panic!()
    };
    let errs = r.errors.unwrap();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].op_index, 3);
    assert_eq!(
        errs[0].what,
        "failed to set check \"db-alive\" on node \"ext\", index is stale"
    );
    assert!(h.state.node("other").is_none());
    assert_eq!(h.state.check("ext", "db-alive").unwrap().status, "passing");
    assert!(h.state.kv_get("probes/ext").1.is_some());
    assert_eq!(h.state.tables().nodes, before_nodes);

    // A check turned critical invalidates the session that depends on it
    // (its lock deleted, a lock delay set); a later failure puts the
    // session, the key and every index back.
    let node_check = |status: &str| {
        TxnOperation::Check(TxnCheckOp {
            verb: "set".into(),
            check: HealthCheck {
                node: "ext".into(),
                check_id: "ext-alive".into(),
                status: status.into(),
                ..HealthCheck::default()
            },
        })
    };
    let Applied::Txn(r) = h.ok(Command::TxnOps(vec![node_check("passing")])) else {
        panic!()
    };
    assert!(r.errors.is_none(), "{r:?}");
    h.session("s1", "ext", "delete", &["ext-alive"]);
    assert!(h.kv_op("leader", KvSetOp::Lock("s1".into())));
    let before = (h.state.tables(), h.state.kv_get("leader").1.cloned());
    let Applied::Txn(r) = h.ok(Command::TxnOps(vec![
        node_check("critical"),
        TxnOperation::Node(TxnNodeOp {
            verb: "delete-cas".into(),
            node: node("ext", 999),
        }),
    ])) else {
        panic!()
    };
    assert_eq!(r.errors.unwrap()[0].op_index, 1);
    assert!(h.state.session("s1").1.is_some(), "the session is back");
    assert_eq!(
        (h.state.tables(), h.state.kv_get("leader").1.cloned()),
        before
    );
    assert!(
        h.kv_op("leader", KvSetOp::Lock("s1".into())),
        "no lock delay left"
    );
    // One operation that fails changes nothing, not even an index.
    let tables = h.state.tables();
    let Applied::Txn(r) = h.ok(Command::TxnOps(vec![TxnOperation::Service(TxnServiceOp {
        verb: "set".into(),
        node: "nowhere".into(),
        service: NodeService {
            service: "x".into(),
            ..NodeService::default()
        },
    })])) else {
        panic!()
    };
    assert_eq!(r.errors.unwrap()[0].what, "Missing node registration");
    assert_eq!(h.state.tables(), tables);

    // A node delete-cas removes the node with its service and checks.
    let index = h.state.node("ext").unwrap().modify_index;
    let Applied::Txn(r) = h.ok(Command::TxnOps(vec![TxnOperation::Node(TxnNodeOp {
        verb: "delete-cas".into(),
        node: node("ext", index),
    })])) else {
        panic!()
    };
    assert_eq!(r.results, Some(Vec::new()));
    assert!(h.state.node("ext").is_none());
    assert!(h.state.check("ext", "db-alive").is_none());
    assert!(h.state.service_instances("db").is_empty());
}

fn kv_snapshot(s: &State) -> BTreeMap<String, (Option<Vec<u8>>, u64)> {
    s.kv_list("")
        .1
        .into_iter()
        .map(|e| (e.key.clone(), (e.value.clone(), e.modify_index)))
        .collect()
}

/// The whole state as a snapshot holds it, but the applied index (which a
/// failed request still advances).
fn whole_state(s: &State) -> serde_json::Value {
    let mut v = serde_json::to_value(s.snapshot()).expect("snapshot");
    if let Some(o) = v.as_object_mut() {
        o.remove("index");
    }
    v
}

/// One catalog or KV write of a generated transaction.
fn mixed_op(kind: u8, name: u8, flag: bool) -> meshgate_types::txn::TxnOperation {
    use meshgate_types::catalog::Node;
    use meshgate_types::txn::{TxnCheckOp, TxnNodeOp, TxnOperation, TxnServiceOp};
    let node = format!("n{}", name % 3);
    match kind % 7 {
        0 => TxnOperation::Node(TxnNodeOp {
            verb: "set".into(),
            node: Node {
                node: node.clone(),
                address: format!("127.0.0.{}", 10 + name),
                ..Node::default()
            },
        }),
        1 => TxnOperation::Node(TxnNodeOp {
            verb: "delete".into(),
            node: Node {
                node,
                ..Node::default()
            },
        }),
        2 => TxnOperation::Service(TxnServiceOp {
            verb: if flag { "set" } else { "delete" }.into(),
            node,
            service: NodeService {
                id: "svc".into(),
                service: "svc".into(),
                port: 80,
                ..NodeService::default()
            },
        }),
        3 | 4 => TxnOperation::Check(TxnCheckOp {
            verb: "set".into(),
            check: HealthCheck {
                node,
                check_id: if kind % 7 == 3 { "alive" } else { "svc-check" }.into(),
                service_id: if kind % 7 == 3 { "" } else { "svc" }.into(),
                status: if flag { "passing" } else { "critical" }.into(),
                ..HealthCheck::default()
            },
        }),
        5 => TxnOperation::Check(TxnCheckOp {
            verb: "delete".into(),
            check: HealthCheck {
                node,
                check_id: "alive".into(),
                ..HealthCheck::default()
            },
        }),
        _ => TxnOperation::Kv(txn_op(
            if flag { "set" } else { "delete" },
            &format!("k{name}"),
            0,
        )),
    }
}

proptest! {
    /// A transaction with catalog operations that fails leaves the whole
    /// state as it was: catalog, sessions invalidated on the way (and the
    /// keys they held, their lock delays), KV, every table index.
    #[test]
    fn failed_mixed_txn_changes_nothing(
        ops in proptest::collection::vec((0u8..7, 0u8..4, any::<bool>()), 1..8),
        fail_at in 0usize..8,
    ) {
        use meshgate_types::catalog::Node;
        use meshgate_types::txn::{TxnNodeOp, TxnOperation};
        let mut h = Harness::new();
        for n in ["n0", "n1", "n2"] {
            h.register_service(n, "svc", "svc", &[]);
            h.register_check(n, "alive", "", "passing");
            h.register_check(n, "svc-check", "svc", "passing");
        }
        h.session("s0", "n0", "delete", &["alive"]);
        h.session("s1", "n1", "release", &["alive"]);
        prop_assert!(h.kv_op("k0", KvSetOp::Lock("s0".into())));
        prop_assert!(h.kv_op("k1", KvSetOp::Lock("s1".into())));
        h.set("k2", "v");
        let before = whole_state(&h.state);
        let mut txn: Vec<TxnOperation> =
            ops.iter().map(|(k, n, f)| mixed_op(*k, *n, *f)).collect();
        // Something that fails, anywhere (the operations after it still run).
        txn.insert(fail_at.min(txn.len()), TxnOperation::Node(TxnNodeOp {
            verb: "get".into(),
            node: Node { node: "nowhere".into(), ..Node::default() },
        }));
        let Applied::Txn(r) = h.ok(Command::TxnOps(txn)) else { panic!() };
        prop_assert!(r.errors.is_some());
        prop_assert_eq!(whole_state(&h.state), before);
    }

    /// A failed transaction leaves the KV store exactly as it was; a successful
    /// one equals applying its writes one by one.
    #[test]
    fn txn_atomicity(
        initial in proptest::collection::btree_map("[a-c]{1,2}", "[a-z]{0,3}", 0..6),
        ops in proptest::collection::vec(
            (prop::sample::select(vec!["set", "cas", "delete", "delete-tree", "get",
                "check-not-exists", "delete-cas", "check-index"]),
             "[a-c]{1,2}", 0u64..8),
            1..8),
    ) {
        let mut h = Harness::new();
        for (k, v) in &initial {
            h.set(k, v);
        }
        let before = kv_snapshot(&h.state);
        let tables_before = h.state.tables();
        let txn: Vec<TxnKvOp> = ops.iter().map(|(v, k, i)| txn_op(v, k, *i)).collect();
        let Applied::Txn(r) = h.ok(Command::Txn(txn.clone())) else { panic!() };
        if r.errors.is_some() {
            prop_assert_eq!(kv_snapshot(&h.state), before);
            prop_assert_eq!(h.state.tables().kv, tables_before.kv);
        } else {
            // Replaying the same ops one by one on a copy of the old state gives the same store.
            let mut replay = Harness::new();
            for (k, v) in &initial {
                replay.set(k, v);
            }
            replay.idx = h.idx - 1;
            let Applied::Txn(r2) = replay.ok(Command::Txn(txn)) else { panic!() };
            prop_assert!(r2.errors.is_none());
            prop_assert_eq!(kv_snapshot(&replay.state), kv_snapshot(&h.state));
        }
    }
}

#[test]
fn snapshot_roundtrip_gives_identical_reads() {
    let mut h = Harness::new();
    h.register_service("n1", "web1", "web", &["a"]);
    h.register_check("n1", "c1", "web1", "passing");
    h.register_node("n2");
    h.set("k/a", "1");
    h.set("k/b", "2");
    h.ok(Command::KvDelete {
        key: "k/b".into(),
        recurse: false,
        cas: None,
    });
    h.session("s1", "n1", "release", &[]);
    assert!(h.kv_op("k/lock", KvSetOp::Lock("s1".into())));
    let snap = h.state.snapshot();
    let json = serde_json::to_vec(&snap).unwrap();
    let back: Snapshot = serde_json::from_slice(&json).unwrap();
    let st = State::from_snapshot(&back).unwrap();
    assert_eq!(st.snapshot(), snap);
    assert_eq!(
        st.service_nodes("web", &[]),
        h.state.service_nodes("web", &[])
    );
    assert_eq!(
        st.check_service_nodes("web", &[]),
        h.state.check_service_nodes("web", &[])
    );
    assert_eq!(st.kv_get("k/b"), h.state.kv_get("k/b"));
    assert_eq!(st.kv_get("k/lock").1.unwrap().session, "s1");
    // Restoring through a command moves every index forward.
    let mut other = Harness::new();
    other.set("x", "1");
    other.idx = h.idx + 5;
    other.ok(Command::Restore(Box::new(snap)));
    assert!(other.state.kv_get("x").1.is_none());
    assert_eq!(other.state.tables().kv, other.idx);
    assert_eq!(other.state.node_services("n1").1.unwrap().1.len(), 1);
}

#[test]
fn corrupt_snapshots_are_refused_without_change() {
    let mut h = Harness::new();
    h.register_service("n1", "web1", "web", &[]);
    let mut snap = h.state.snapshot();
    snap.service_nodes[0] = "ghost".into();
    assert!(State::from_snapshot(&snap).is_err());
    h.set("keep", "1");
    let before = h.state.snapshot();
    assert!(h.apply(Command::Restore(Box::new(snap))).is_err());
    let mut after = h.state.snapshot();
    after.index = before.index;
    assert_eq!(after, before);
}

mod config_entries {
    use serde_json::json;

    use crate::{Applied, Command, Request, State};

    fn apply(st: &mut State, cmd: Command) -> Applied {
        let idx = st.index + 1;
        st.apply(idx, &Request { now_ms: 0, cmd }).expect("apply")
    }

    fn gw(services: serde_json::Value) -> Command {
        Command::ConfigSet {
            entry: json!({"Kind": "terminating-gateway", "Name": "gw", "Services": services,
                          "CreateIndex": 99, "ModifyIndex": 99}),
            cas: None,
        }
    }

    #[test]
    fn set_cas_delete_and_snapshot() {
        let mut st = State::new();
        assert_eq!(
            apply(&mut st, gw(json!([{"Name": "db"}]))),
            Applied::Bool(true)
        );
        let (_, e) = st.config_entry("terminating-gateway", "gw");
        let e = e.expect("stored");
        assert_eq!((e.create_index(), e.modify_index()), (1, 1));
        // cas 0 refuses to overwrite; the right index succeeds.
        let mut cmd = gw(json!([{"Name": "db2"}]));
        if let Command::ConfigSet { cas, .. } = &mut cmd {
            *cas = Some(0);
        }
        assert_eq!(apply(&mut st, cmd), Applied::Bool(false));
        let mut cmd = gw(json!([{"Name": "db2"}]));
        if let Command::ConfigSet { cas, .. } = &mut cmd {
            *cas = Some(1);
        }
        assert_eq!(apply(&mut st, cmd), Applied::Bool(true));
        let e = st
            .config_entry("terminating-gateway", "gw")
            .1
            .expect("stored");
        assert_eq!((e.create_index(), e.modify_index()), (1, 3));
        // Snapshot round trip keeps the entry and its indexes.
        let snap = st.snapshot();
        let back = State::from_snapshot(&snap).expect("restore");
        let e2 = back
            .config_entry("terminating-gateway", "gw")
            .1
            .expect("restored");
        assert_eq!(e2, e);
        // Delete with a stale cas fails; without cas succeeds and is idempotent.
        let del = |cas| Command::ConfigDelete {
            kind: "terminating-gateway".into(),
            name: "gw".into(),
            cas,
        };
        assert_eq!(apply(&mut st, del(Some(1))), Applied::Bool(false));
        assert_eq!(apply(&mut st, del(None)), Applied::Bool(true));
        assert_eq!(apply(&mut st, del(None)), Applied::Bool(true));
        assert!(st.config_entry("terminating-gateway", "gw").1.is_none());
    }

    #[test]
    fn wildcard_links_typical_services_only() {
        let mut st = State::new();
        let reg = |node: &str, svc: serde_json::Value| {
            Command::Register(Box::new(
                serde_json::from_value(
                    json!({"Node": node, "Address": "127.0.0.1", "Service": svc}),
                )
                .expect("register"),
            ))
        };
        apply(&mut st, reg("n1", json!({"Service": "db", "Port": 5432})));
        apply(
            &mut st,
            reg("n1", json!({"Service": "consul", "Port": 8300})),
        );
        apply(
            &mut st,
            reg(
                "n1",
                json!({"Service": "web-proxy", "Kind": "connect-proxy", "Port": 21000,
                            "Proxy": {"DestinationServiceName": "web"}}),
            ),
        );
        apply(
            &mut st,
            reg(
                "n1",
                json!({"Service": "gw", "Kind": "terminating-gateway", "Port": 8443}),
            ),
        );
        apply(
            &mut st,
            gw(json!([{"Name": "*"}, {"Name": "ext", "CAFile": "/ca.pem", "SNI": "ext.example"}])),
        );
        let (_, list) = st.gateway_services("gw");
        let names: Vec<(&str, bool)> = list
            .iter()
            .map(|g| (g.service.name.as_str(), g.from_wildcard))
            .collect();
        assert_eq!(names, [("db", true), ("ext", false)]);
        assert_eq!(list[1].ca_file, "/ca.pem");
        assert_eq!(st.gateways_for_service("db"), ["gw"]);
        assert_eq!(st.gateways_for_service("ext"), ["gw"]);
        assert!(st.gateways_for_service("consul").is_empty());
        let inst = st.linked_gateway_instances("ext");
        assert_eq!(inst.len(), 1);
        assert_eq!(inst[0].1.service, "gw");
    }
}

#[test]
fn batch_applies_each_request_at_one_index() {
    let mut h = Harness::new();
    assert!(h.set("a", "0"));
    let req = |cmd: Command| Request { now_ms: h.now, cmd };
    let set = |key: &str, value: &str, op: KvSetOp| Command::KvSet {
        key: key.into(),
        value: Some(value.as_bytes().to_vec()),
        flags: 0,
        op,
    };
    let batch = Command::Batch(vec![
        req(set("a", "1", KvSetOp::Set)),
        // Fails (the key exists): changes nothing, the rest still applies.
        req(set("a", "2", KvSetOp::Cas(0))),
        // An error, not a refusal: also changes nothing.
        req(Command::SessionCreate(Session::default())),
        req(set("b", "1", KvSetOp::Cas(0))),
        req(Command::Batch(Vec::new())),
    ]);
    let results = match h.ok(batch) {
        Applied::Batch(r) => r,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(results.len(), 5);
    assert_eq!(results[0], Ok(Applied::Bool(true)));
    assert_eq!(results[1], Ok(Applied::Bool(false)));
    assert_eq!(
        results[2],
        Err(ApplyError::Invalid("Missing session ID".into()))
    );
    assert_eq!(results[3], Ok(Applied::Bool(true)));
    assert_eq!(
        results[4],
        Err(ApplyError::Invalid("batches do not nest".into()))
    );
    let a = h.state.kv_get("a").1.expect("a").clone();
    let b = h.state.kv_get("b").1.expect("b").clone();
    assert_eq!(
        a.value.as_deref(),
        Some(&b"1"[..]),
        "the refused CAS wrote nothing"
    );
    assert_eq!((a.modify_index, b.modify_index), (h.idx, h.idx));
    assert!(h.state.sessions.is_empty());
    // The next entry's index is above the batch's.
    assert!(h.kv_op("a", KvSetOp::Cas(h.idx)));
}

#[test]
fn request_weight_counts_values_and_sends_restores_alone() {
    let req = |cmd| Request { now_ms: 0, cmd };
    let small = req(Command::KvDelete {
        key: "k".into(),
        recurse: false,
        cas: None,
    });
    let big = req(Command::KvSet {
        key: "k".into(),
        value: Some(vec![0; 100_000]),
        flags: 0,
        op: KvSetOp::Set,
    });
    assert!(small.weight() < 1024);
    assert!(big.weight() >= 100_000);
    let restore = req(Command::Restore(Box::new(State::new().snapshot())));
    assert!(restore.weight() > 1 << 30);
}
