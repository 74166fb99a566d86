use super::rules;
use crate::{
    Access, Authorizer, Decision, Denied, GLOBAL_MANAGEMENT_RULES, GLOBAL_READ_ONLY_RULES,
    Resource, parse_rules,
};

fn authz(text: &str, default_allow: bool) -> Authorizer {
    Authorizer::new(&[&rules(text)], default_allow)
}

fn authz_many(texts: &[&str], default_allow: bool) -> Authorizer {
    let policies: Vec<_> = texts.iter().map(|t| rules(t)).collect();
    let refs: Vec<_> = policies.iter().collect();
    Authorizer::new(&refs, default_allow)
}

#[test]
fn scenario_policies_json() {
    let policy = parse_rules(
        r#"{
  "key_prefix": [ { "carbonio-gateway/": { "policy": "read" } } ],
  "node_prefix": [ { "": { "policy": "read" } } ],
  "service": [ { "carbonio-gateway": { "policy": "write" },
                 "carbonio-files-db": { "policy": "write" } } ]
}"#,
    )
    .unwrap();
    let a = Authorizer::new(&[&policy], false);
    assert!(a.service_write("carbonio-files-db"));
    assert!(a.service_write("carbonio-gateway"));
    assert!(a.service_read("carbonio-gateway"));
    assert!(a.key_read("carbonio-gateway/"));
    assert!(a.key_read("carbonio-gateway/config/x"));
    assert!(a.node_read("any-node"));
    assert!(a.node_read(""));
    assert!(a.node_read_all());
    assert!(a.intention_read("carbonio-gateway"));
    assert!(a.service_write_any());

    assert!(!a.service_write("carbonio-files"));
    assert!(!a.service_write("other"));
    assert!(!a.service_read("other"));
    assert!(!a.key_read("carbonio-files/"));
    assert!(!a.key_read("carbonio-gateway"));
    assert!(!a.key_write("carbonio-gateway/x"));
    assert!(!a.key_write("anything"));
    assert!(!a.node_write("any-node"));
    assert!(!a.intention_write("carbonio-gateway"));
    assert!(!a.operator_read());
    assert!(!a.acl_read());
    assert!(!a.service_read_all());

    let denied = a
        .check(Resource::Key, Access::Read, "carbonio-files/")
        .unwrap_err();
    assert_eq!(
        denied.message(Some("0b6a4e0e-1b1d-4a5c-9a1b-2f7f0e7a9c11")),
        "Permission denied: token with AccessorID '0b6a4e0e-1b1d-4a5c-9a1b-2f7f0e7a9c11' \
         lacks permission 'key:read' on \"carbonio-files/\""
    );
    assert!(
        a.check(Resource::Service, Access::Write, "carbonio-gateway")
            .is_ok()
    );
}

#[test]
fn exact_beats_prefix_and_longest_prefix_wins() {
    let a = authz(
        r#"
key_prefix "" { policy = "deny" }
key_prefix "a/" { policy = "read" }
key_prefix "a/b/" { policy = "write" }
key "a/b/locked" { policy = "read" }
key "a/open" { policy = "write" }
key_prefix "a/open" { policy = "deny" }
"#,
        true,
    );
    assert!(!a.key_read("b"));
    assert!(!a.key_read(""));
    assert!(a.key_read("a/"));
    assert!(a.key_read("a/x"));
    assert!(!a.key_write("a/x"));
    assert!(a.key_write("a/b/"));
    assert!(a.key_write("a/b/c/d"));
    assert!(a.key_read("a/b/locked"));
    assert!(!a.key_write("a/b/locked"));
    assert!(a.key_write("a/b/locked2"));
    // An exact rule wins over a prefix rule with the same label...
    assert!(a.key_write("a/open"));
    // ...but does not apply to longer names.
    assert!(!a.key_read("a/open2"));
    // Without a trailing slash, a prefix also matches siblings.
    let b = authz(r#"service_prefix "web" { policy = "write" }"#, false);
    assert!(b.service_write("web"));
    assert!(b.service_write("webapp"));
    assert!(!b.service_write("we"));
    let c = authz(r#"service "web" { policy = "write" }"#, false);
    assert!(c.service_write("web"));
    assert!(!c.service_write("webapp"));
}

#[test]
fn consul_prefix_table() {
    // Mirrors the shape of Consul's "Prefer Exact Matches" cases.
    let a = authz(
        r#"
agent_prefix "fo" { policy = "read" }
agent "foo" { policy = "write" }
agent_prefix "football" { policy = "deny" }
node_prefix "fo" { policy = "read" }
node "foo" { policy = "write" }
node_prefix "football" { policy = "deny" }
service_prefix "fo" { policy = "read" }
service "foo" { policy = "write" }
service_prefix "football" { policy = "deny" }
"#,
        false,
    );
    for name in ["fo", "for", "foot", "foot2", "food"] {
        assert!(a.agent_read(name) && !a.agent_write(name), "{name}");
        assert!(a.node_read(name) && !a.node_write(name), "{name}");
        assert!(a.service_read(name) && !a.service_write(name), "{name}");
        assert!(a.intention_read(name) && !a.intention_write(name), "{name}");
    }
    assert!(a.agent_write("foo") && a.node_write("foo") && a.service_write("foo"));
    for name in ["football", "footballs"] {
        assert!(!a.agent_read(name) && !a.node_read(name) && !a.service_read(name));
        assert!(!a.intention_read(name));
    }
    assert!(!a.service_read_prefix("foot"));
    assert!(a.service_read_prefix("fo2"));
    assert!(!a.service_read_prefix("g"));
    assert!(a.service_write_any());
    assert!(!a.service_read_all());
    assert!(!a.node_read_all());
}

#[test]
fn enforcement_levels() {
    let a = authz(
        r#"
key "w" { policy = "write" }
key "l" { policy = "list" }
key "r" { policy = "read" }
key "d" { policy = "deny" }
"#,
        true,
    )
    .with_key_list_policy(true);
    let expect = [
        ("w", true, true, true),
        ("l", true, true, false),
        ("r", true, false, false),
        ("d", false, false, false),
        ("none", true, true, true),
    ];
    for (key, read, list, write) in expect {
        assert_eq!(a.key_read(key), read, "read {key}");
        assert_eq!(a.key_list(key), list, "list {key}");
        assert_eq!(a.key_write(key), write, "write {key}");
    }
    // A read rule refuses write even when the default allows.
    let b = authz(r#"service "web" { policy = "read" }"#, true);
    assert!(!b.service_write("web"));
    assert!(b.service_write("other"));
    assert_eq!(
        b.enforce(Resource::Service, Access::Write, "web"),
        Decision::Deny
    );
    assert_eq!(
        b.enforce(Resource::Service, Access::Write, "other"),
        Decision::Default
    );
    assert_eq!(
        b.enforce(Resource::Service, Access::Read, "web"),
        Decision::Allow
    );
}

#[test]
fn key_list_policy_flag() {
    let a = authz(r#"key_prefix "app/" { policy = "read" }"#, false);
    // Consul without acl.enable_key_list_policy does no list check at all.
    assert!(!a.key_list_policy());
    assert!(a.key_list("app/"));
    assert!(a.key_list(""));
    assert!(a.decide(Resource::Key, Access::List, "x"));
    let a = a.with_key_list_policy(true);
    assert!(!a.key_list("app/"));
    assert!(!a.key_list(""));
    let b = authz(
        r#"key_prefix "app/" { policy = "list" } key_prefix "w/" { policy = "write" }"#,
        false,
    )
    .with_key_list_policy(true);
    assert!(b.key_list("app/x"));
    assert!(b.key_list("w/"));
    assert!(!b.key_list("other/"));
    assert!(
        Authorizer::allow_all()
            .with_key_list_policy(true)
            .key_list("x")
    );
    assert!(
        !Authorizer::deny_all()
            .with_key_list_policy(true)
            .key_list("x")
    );
}

#[test]
fn policies_merge_deny_wins() {
    let a = authz_many(
        &[
            r#"service "web" { policy = "write" } key "k" { policy = "read" } operator = "write""#,
            r#"service "web" { policy = "deny" } key "k" { policy = "list" } operator = "read""#,
            r#"key "k" { policy = "read" } node "n" { policy = "read" }"#,
            r#"node "n" { policy = "write" } acl = "read""#,
        ],
        true,
    )
    .with_key_list_policy(true);
    assert!(!a.service_read("web"));
    assert!(a.key_list("k"));
    assert!(!a.key_write("k"));
    assert!(a.operator_write());
    assert!(a.node_write("n"));
    assert!(a.acl_read());
    assert!(!a.acl_write());
    // Merging is per (resource, match kind, label): a prefix deny does not
    // override an exact write.
    let b = authz_many(
        &[
            r#"service_prefix "" { policy = "deny" }"#,
            r#"service "web" { policy = "write" }"#,
        ],
        true,
    );
    assert!(b.service_write("web"));
    assert!(!b.service_read("db"));
}

#[test]
fn defaults() {
    for default_allow in [false, true] {
        let a = Authorizer::new(&[], default_allow);
        assert_eq!(a.default_allow(), default_allow);
        assert_eq!(a.service_read("x"), default_allow);
        assert_eq!(a.service_write("x"), default_allow);
        assert_eq!(a.key_write("x"), default_allow);
        assert_eq!(a.key_write_prefix(""), default_allow);
        assert_eq!(a.operator_write(), default_allow);
        assert_eq!(a.mesh_write(), default_allow);
        assert_eq!(a.peering_read(), default_allow);
        assert_eq!(a.keyring_read(), default_allow);
        assert_eq!(a.node_read_all(), default_allow);
        assert_eq!(a.service_read_all(), default_allow);
        assert_eq!(a.service_write_any(), default_allow);
        assert_eq!(a.intention_read("*"), default_allow);
        assert_eq!(a.intention_write("*"), default_allow);
        assert_eq!(a.intention_default_allow(), default_allow);
        assert_eq!(a.session_write("n"), default_allow);
        assert_eq!(a.event_write("e"), default_allow);
        assert_eq!(a.query_write("q"), default_allow);
        assert_eq!(a.agent_write("n"), default_allow);
        // The default policy never grants ACL management.
        assert!(!a.acl_read());
        assert!(!a.acl_write());
        assert!(!a.snapshot());
    }
    let allow = Authorizer::allow_all();
    assert!(allow.service_write("x") && allow.operator_write() && !allow.acl_read());
    let deny = Authorizer::deny_all();
    assert!(!deny.service_read("x") && !deny.operator_read() && !deny.acl_read());
    let manage = Authorizer::management();
    assert!(manage.acl_write() && manage.acl_read() && manage.snapshot());
    assert!(manage.service_write("x") && manage.key_write_prefix("") && manage.mesh_write());
    assert!(manage.intention_write("*") && manage.service_read_all());
}

#[test]
fn global_management_and_read_only() {
    let g = authz(GLOBAL_MANAGEMENT_RULES, false);
    assert!(g.acl_write() && g.operator_write() && g.keyring_write());
    assert!(g.mesh_write() && g.peering_write());
    assert!(g.key_write_prefix("") && g.service_write("x") && g.intention_write("*"));
    assert!(g.node_write("n") && g.session_write("n") && g.event_write("e"));
    assert!(g.query_write("q") && g.agent_write("a"));
    assert!(g.node_read_all() && g.service_read_all() && g.service_write_any());
    let r = authz(GLOBAL_READ_ONLY_RULES, false);
    assert!(r.acl_read() && !r.acl_write());
    assert!(r.service_read("x") && !r.service_write("x"));
    assert!(r.intention_read("x") && !r.intention_write("x"));
    assert!(r.key_read("k") && !r.key_write("k") && !r.key_write_prefix(""));
    assert!(r.mesh_read() && !r.mesh_write());
    assert!(r.node_read_all() && r.service_read_all() && !r.service_write_any());
}

#[test]
fn intentions_follow_service_rules() {
    let a = authz(
        r#"
service "w" { policy = "write" }
service "r" { policy = "read" }
service "d" { policy = "deny" }
service "iw" { policy = "read" intentions = "write" }
service "id" { policy = "write" intentions = "deny" }
service_prefix "p-" { policy = "write" }
service_prefix "q-" { policy = "deny" }
"#,
        true,
    );
    let expect = [
        ("w", true, false),
        ("r", true, false),
        ("d", false, false),
        ("iw", true, true),
        ("id", false, false),
        ("p-x", true, false),
        ("q-x", false, false),
        ("unrelated", true, true),
    ];
    for (name, read, write) in expect {
        assert_eq!(a.intention_read(name), read, "read {name}");
        assert_eq!(a.intention_write(name), write, "write {name}");
    }
    // Merging: policy and intentions merge separately, intentions are
    // derived afterwards.
    let b = authz_many(
        &[
            r#"service "x" { policy = "deny" }"#,
            r#"service "x" { policy = "read" intentions = "write" }"#,
            r#"service "y" { policy = "write" }"#,
            r#"service "y" { policy = "read" }"#,
        ],
        false,
    );
    assert!(!b.service_read("x"));
    assert!(b.intention_write("x"));
    assert!(b.intention_read("y") && !b.intention_write("y"));
}

#[test]
fn intention_wildcard() {
    let a = authz(r#"service "web" { policy = "read" }"#, false);
    assert!(a.intention_read("*"));
    assert!(!a.intention_write("*"));
    let b = authz(
        r#"service_prefix "" { policy = "write" intentions = "write" }"#,
        false,
    );
    assert!(b.intention_read("*") && b.intention_write("*"));
    let c = authz(
        r#"service_prefix "" { policy = "write" intentions = "write" } service "x" { policy = "deny" }"#,
        true,
    );
    assert!(c.intention_read("*"));
    assert!(!c.intention_write("*"));
    let d = authz(r#"service_prefix "" { policy = "deny" }"#, true);
    assert!(!d.intention_read("*"));
    let e = authz(r#"service "web" { policy = "deny" }"#, true);
    // No rule grants intentions read, no "" catch-all: default decides.
    assert!(e.intention_read("*"));
}

#[test]
fn mesh_and_peering_fall_back_to_operator() {
    let a = authz(r#"operator = "write""#, false);
    assert!(a.mesh_write() && a.mesh_read() && a.peering_write() && a.peering_read());
    let b = authz(r#"operator = "read""#, true);
    assert!(b.mesh_read() && !b.mesh_write() && b.peering_read() && !b.peering_write());
    let c = authz(
        r#"operator = "write" mesh = "deny" peering = "read""#,
        false,
    );
    assert!(!c.mesh_read() && !c.mesh_write());
    assert!(c.peering_read() && !c.peering_write());
    assert!(c.operator_write());
    let d = authz(r#"mesh = "write""#, false);
    assert!(d.mesh_write() && !d.operator_read() && !d.peering_read());
    let e = authz(r#"operator = "deny""#, true);
    assert!(!e.mesh_read() && !e.peering_read());
    assert_eq!(e.enforce(Resource::Mesh, Access::Read, ""), Decision::Deny);
    let f = authz("", true);
    assert_eq!(
        f.enforce(Resource::Mesh, Access::Read, ""),
        Decision::Default
    );
}

#[test]
fn key_write_prefix() {
    let a = authz(
        r#"
key_prefix "" { policy = "write" }
key_prefix "ro/" { policy = "read" }
key "mixed/locked" { policy = "deny" }
"#,
        false,
    );
    assert!(!a.key_write_prefix(""));
    assert!(a.key_write_prefix("app/"));
    assert!(!a.key_write_prefix("ro/"));
    assert!(!a.key_write_prefix("ro/sub/"));
    assert!(!a.key_write_prefix("r"));
    assert!(!a.key_write_prefix("mixed/"));
    assert!(!a.key_write_prefix("mixed/locked"));
    assert!(a.key_write_prefix("mixed/other"));
    // The governing prefix must be write...
    let b = authz(
        r#"key_prefix "a/" { policy = "read" } key "a/b" { policy = "write" }"#,
        true,
    );
    assert!(!b.key_write_prefix("a/"));
    assert!(!b.key_write_prefix("a/b"));
    // ...and when there is none, the default decides unless a rule below
    // is not write.
    let c = authz(r#"key "x/y" { policy = "write" }"#, true);
    assert!(c.key_write_prefix("x/"));
    let c = authz(r#"key "x/y" { policy = "write" }"#, false);
    assert!(!c.key_write_prefix("x/"));
    let d = authz(r#"key "x/y" { policy = "list" }"#, true);
    assert!(!d.key_write_prefix("x/"));
    assert!(d.key_write_prefix("z/"));
    // An exact write on the prefix itself does not govern it.
    let e = authz(r#"key "x/" { policy = "write" }"#, false);
    assert!(!e.key_write_prefix("x/"));
    let f = authz(r#"key_prefix "x/" { policy = "write" }"#, false);
    assert!(f.key_write_prefix("x/"));
    assert!(f.key_write_prefix("x/deeper/"));
    assert!(!f.key_write_prefix("x"));
}

#[test]
fn aggregates() {
    let a = authz(
        r#"node_prefix "" { policy = "read" } node "secret" { policy = "deny" }"#,
        true,
    );
    assert!(!a.node_read_all());
    let b = authz(r#"node "one" { policy = "write" }"#, true);
    assert!(b.node_read_all());
    let b = authz(r#"node "one" { policy = "write" }"#, false);
    assert!(!b.node_read_all());
    let c = authz(r#"service_prefix "" { policy = "read" }"#, false);
    assert!(c.service_read_all());
    assert!(!c.service_write_any());
    let c = authz(r#"service_prefix "" { policy = "read" }"#, true);
    // A catch-all that does not grant write refuses, whatever the default.
    assert!(!c.service_write_any());
    let d = authz(r#"service "a" { policy = "read" }"#, true);
    assert!(d.service_write_any());
    let d = authz(r#"service "a" { policy = "read" }"#, false);
    assert!(!d.service_write_any());
    let e = authz(r#"service_prefix "x" { policy = "write" }"#, false);
    assert!(e.service_write_any());
    assert!(!e.service_read_all());
}

#[test]
fn decide_rejects_meaningless_access() {
    let m = Authorizer::management();
    assert!(!m.decide(Resource::Service, Access::List, "x"));
    assert!(!m.decide(Resource::Service, Access::Deny, "x"));
    assert!(!m.decide(Resource::Operator, Access::List, ""));
    assert!(m.decide(Resource::Key, Access::List, "x"));
    assert_eq!(m.enforce(Resource::Node, Access::List, "x"), Decision::Deny);
}

#[test]
fn check_builds_denied() {
    let a = Authorizer::deny_all();
    assert_eq!(
        a.check(Resource::Operator, Access::Read, "ignored"),
        Err(Denied::new(Resource::Operator, Access::Read, None))
    );
    assert_eq!(
        a.check(Resource::Intention, Access::Write, "web"),
        Err(Denied::new(Resource::Intention, Access::Write, Some("web")))
    );
}

#[test]
fn authorizer_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Authorizer>();
    let a = authz(r#"service "x" { policy = "write" }"#, false);
    let b = a.clone();
    assert!(b.service_write("x"));
}

#[test]
fn unicode_names() {
    let a = authz(
        r#"key_prefix "é" { policy = "write" } key "日本" { policy = "read" }"#,
        false,
    );
    assert!(a.key_write("été"));
    assert!(!a.key_write("e"));
    assert!(a.key_read("日本"));
    assert!(!a.key_read("日"));
    assert!(!a.key_read("日本語"));
}
