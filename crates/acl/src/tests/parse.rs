use super::{error, get, grant, rules};
use crate::{
    Access, GLOBAL_MANAGEMENT_RULES, GLOBAL_READ_ONLY_RULES, Match, Policy, RuleErrorKind,
    RuleResource,
};

use Access::{Deny, List, Read, Write};
use Match::{Exact, Prefix};
use RuleResource::{Agent, Event, Key, Node, Query, Service, Session};

const SCENARIO_JSON: &str = r#"{
  "key_prefix": [ { "carbonio-gateway/": { "policy": "read" } } ],
  "node_prefix": [ { "": { "policy": "read" } } ],
  "service": [ { "carbonio-gateway": { "policy": "write" },
                 "carbonio-files-db": { "policy": "write" } } ]
}"#;

#[test]
fn hcl_every_resource() {
    let p = rules(
        r#"
acl = "write"
agent "foo" { policy = "read" }
agent_prefix "bar" { policy = "write" }
event "foo" { policy = "write" }
event_prefix "" { policy = "read" }
key "foo/bar" { policy = "deny" }
key_prefix "foo/" { policy = "list" }
keyring = "deny"
mesh = "read"
node "n1" { policy = "write" }
node_prefix "" { policy = "read" }
operator = "read"
peering = "write"
query "q" { policy = "write" }
query_prefix "" { policy = "read" }
service "web" {
  policy = "write"
  intentions = "read"
}
service_prefix "" { policy = "read" }
session "n1" { policy = "write" }
session_prefix "" { policy = "deny" }
"#,
    );
    assert_eq!(p.acl, Some(Write));
    assert_eq!(p.keyring, Some(Deny));
    assert_eq!(p.mesh, Some(Read));
    assert_eq!(p.operator, Some(Read));
    assert_eq!(p.peering, Some(Write));
    assert_eq!(get(&p, Agent, Exact, "foo"), Some(grant(Read, None)));
    assert_eq!(get(&p, Agent, Prefix, "bar"), Some(grant(Write, None)));
    assert_eq!(get(&p, Event, Exact, "foo"), Some(grant(Write, None)));
    assert_eq!(get(&p, Event, Prefix, ""), Some(grant(Read, None)));
    assert_eq!(get(&p, Key, Exact, "foo/bar"), Some(grant(Deny, None)));
    assert_eq!(get(&p, Key, Prefix, "foo/"), Some(grant(List, None)));
    assert_eq!(get(&p, Node, Exact, "n1"), Some(grant(Write, None)));
    assert_eq!(get(&p, Node, Prefix, ""), Some(grant(Read, None)));
    assert_eq!(get(&p, Query, Exact, "q"), Some(grant(Write, None)));
    assert_eq!(get(&p, Query, Prefix, ""), Some(grant(Read, None)));
    assert_eq!(
        get(&p, Service, Exact, "web"),
        Some(grant(Write, Some(Read)))
    );
    assert_eq!(get(&p, Service, Prefix, ""), Some(grant(Read, None)));
    assert_eq!(get(&p, Session, Exact, "n1"), Some(grant(Write, None)));
    assert_eq!(get(&p, Session, Prefix, ""), Some(grant(Deny, None)));
    assert_eq!(p.rules.len(), 14);
}

#[test]
fn brief_hcl_examples() {
    let p = rules(
        r#"key_prefix "carbonio-gateway/" { policy = "read" }
service "x" { policy = "write" intentions = "read" }
operator = "read""#,
    );
    assert_eq!(
        get(&p, Key, Prefix, "carbonio-gateway/"),
        Some(grant(Read, None))
    );
    assert_eq!(get(&p, Service, Exact, "x"), Some(grant(Write, Some(Read))));
    assert_eq!(p.operator, Some(Read));
}

#[test]
fn json_object_of_objects() {
    let p = rules(
        r#"{"service": {"a": {"policy": "write"}, "b": {"policy": "read", "intentions": "deny"}}}"#,
    );
    assert_eq!(get(&p, Service, Exact, "a"), Some(grant(Write, None)));
    assert_eq!(get(&p, Service, Exact, "b"), Some(grant(Read, Some(Deny))));
}

#[test]
fn json_array_of_objects_scenario() {
    let p = rules(SCENARIO_JSON);
    assert_eq!(
        get(&p, Key, Prefix, "carbonio-gateway/"),
        Some(grant(Read, None))
    );
    assert_eq!(get(&p, Node, Prefix, ""), Some(grant(Read, None)));
    assert_eq!(
        get(&p, Service, Exact, "carbonio-gateway"),
        Some(grant(Write, None))
    );
    assert_eq!(
        get(&p, Service, Exact, "carbonio-files-db"),
        Some(grant(Write, None))
    );
    assert_eq!(p.rules.len(), 4);
}

#[test]
fn json_label_to_array_of_bodies() {
    let p = rules(
        r#"{"service": {"a": [{"policy": "write"}]}, "key": {"k": [{"policy": "read"}, {"policy": "list"}]}}"#,
    );
    assert_eq!(get(&p, Service, Exact, "a"), Some(grant(Write, None)));
    assert_eq!(get(&p, Key, Exact, "k"), Some(grant(List, None)));
}

#[test]
fn json_array_of_label_arrays() {
    let p = rules(
        r#"{"node": [{"a": [{"policy": "read"}]}, {"a": {"policy": "deny"}, "b": {"policy": "write"}}]}"#,
    );
    assert_eq!(get(&p, Node, Exact, "a"), Some(grant(Deny, None)));
    assert_eq!(get(&p, Node, Exact, "b"), Some(grant(Write, None)));
}

#[test]
fn json_attributes() {
    let p = rules(
        r#"{"acl": "write", "operator": "read", "keyring": "deny", "mesh": "write", "peering": "read"}"#,
    );
    assert_eq!(
        (p.acl, p.operator, p.keyring, p.mesh, p.peering),
        (Some(Write), Some(Read), Some(Deny), Some(Write), Some(Read))
    );
}

#[test]
fn hcl_object_literal_forms() {
    // HCL1 also accepts the JSON shapes written as HCL values.
    let p = rules(
        r#"
service = { "a" = { policy = "write" } }
node = [{ "n" = { policy = "read" } }]
key_prefix { "app/" { policy = "list" } }
"#,
    );
    assert_eq!(get(&p, Service, Exact, "a"), Some(grant(Write, None)));
    assert_eq!(get(&p, Node, Exact, "n"), Some(grant(Read, None)));
    assert_eq!(get(&p, Key, Prefix, "app/"), Some(grant(List, None)));
}

#[test]
fn same_policy_in_every_shape() {
    let hcl = rules(r#"service "a" { policy = "write" } service "b" { policy = "write" }"#);
    for json in [
        r#"{"service": {"a": {"policy": "write"}, "b": {"policy": "write"}}}"#,
        r#"{"service": [{"a": {"policy": "write"}, "b": {"policy": "write"}}]}"#,
        r#"{"service": [{"a": {"policy": "write"}}, {"b": {"policy": "write"}}]}"#,
        r#"{"service": {"a": [{"policy": "write"}], "b": [{"policy": "write"}]}}"#,
    ] {
        assert_eq!(rules(json), hcl, "{json}");
    }
}

#[test]
fn duplicate_labels_merge() {
    let p = rules(
        r#"
service "a" { policy = "read" }
service "a" { policy = "write" }
service "b" { policy = "write" }
service "b" { policy = "deny" }
service "c" { policy = "read" }
service "c" { policy = "read" intentions = "write" }
key "k" { policy = "list" }
key "k" { policy = "read" }
key "l" { policy = "list" }
key "l" { policy = "write" }
"#,
    );
    assert_eq!(get(&p, Service, Exact, "a"), Some(grant(Write, None)));
    assert_eq!(get(&p, Service, Exact, "b"), Some(grant(Deny, None)));
    assert_eq!(get(&p, Service, Exact, "c"), Some(grant(Read, Some(Write))));
    assert_eq!(get(&p, Key, Exact, "k"), Some(grant(List, None)));
    assert_eq!(get(&p, Key, Exact, "l"), Some(grant(Write, None)));
    // Exact and prefix rules with the same label are distinct.
    let p = rules(r#"node "x" { policy = "deny" } node_prefix "x" { policy = "write" }"#);
    assert_eq!(get(&p, Node, Exact, "x"), Some(grant(Deny, None)));
    assert_eq!(get(&p, Node, Prefix, "x"), Some(grant(Write, None)));
}

#[test]
fn case_insensitive_keys_fields_and_levels() {
    let p = rules(r#"SERVICE "Web" { Policy = "WRITE" INTENTIONS = "Deny" } Operator = "Read""#);
    assert_eq!(
        get(&p, Service, Exact, "Web"),
        Some(grant(Write, Some(Deny)))
    );
    assert_eq!(get(&p, Service, Exact, "web"), None);
    assert_eq!(p.operator, Some(Read));
    assert_eq!(
        p.to_hcl(),
        "operator = \"read\"\nservice \"Web\" {\n  policy = \"write\"\n  intentions = \"deny\"\n}\n"
    );
}

#[test]
fn empty_inputs() {
    assert_eq!(rules(""), Policy::new());
    assert_eq!(rules("  \n\t"), Policy::new());
    assert_eq!(rules("# nothing\n"), Policy::new());
    assert_eq!(rules("{}"), Policy::new());
    assert_eq!(rules(r#"{"service": {}}"#), Policy::new());
    assert_eq!(rules(r#"{"service": []}"#), Policy::new());
    for attr in ["acl", "keyring", "operator", "mesh", "peering"] {
        assert!(rules(&format!("{attr} = \"\"")).is_empty(), "{attr}");
    }
}

#[test]
fn ignored_enterprise_and_identity_blocks() {
    let p = rules(
        r#"
namespace "team" { service_prefix "" { policy = "write" } }
namespace_prefix "" { policy = "read" }
partition "p" { node_prefix "" { policy = "read" } }
partition_prefix "" { mesh = "write" }
identity "x" { policy = "write" }
identity_prefix "" { policy = "nonsense" }
key "k" {
  policy = "write"
  sentinel { code = "main = rule { true }" enforcementlevel = "soft-mandatory" }
}
"#,
    );
    let mut expected = Policy::new();
    expected.add(Key, Exact, "k", grant(Write, None));
    assert_eq!(p, expected);
}

#[test]
fn numbers_are_read_as_text() {
    let err = error("operator = 1");
    assert_eq!(err.kind(), RuleErrorKind::InvalidPolicy);
    assert_eq!(
        err.to_string(),
        "Invalid operator policy: \"1\": \"1\" is not a valid access level (line 1, column 1)"
    );
}

#[test]
fn global_policies_parse() {
    let p = rules(GLOBAL_MANAGEMENT_RULES);
    assert_eq!(
        (p.acl, p.keyring, p.mesh, p.operator, p.peering),
        (
            Some(Write),
            Some(Write),
            Some(Write),
            Some(Write),
            Some(Write)
        )
    );
    for resource in RuleResource::ALL {
        let expected = if resource == Service {
            grant(Write, Some(Write))
        } else {
            grant(Write, None)
        };
        assert_eq!(
            get(&p, resource, Prefix, ""),
            Some(expected),
            "{resource:?}"
        );
    }
    assert_eq!(p.rules.len(), 7);
    let r = rules(GLOBAL_READ_ONLY_RULES);
    assert_eq!(r.acl, Some(Read));
    assert_eq!(get(&r, Service, Prefix, ""), Some(grant(Read, Some(Read))));
}

#[test]
fn to_hcl_is_canonical_and_round_trips() {
    let p = rules(SCENARIO_JSON);
    assert_eq!(
        p.to_hcl(),
        "key_prefix \"carbonio-gateway/\" {\n  policy = \"read\"\n}\n\
         node_prefix \"\" {\n  policy = \"read\"\n}\n\
         service \"carbonio-files-db\" {\n  policy = \"write\"\n}\n\
         service \"carbonio-gateway\" {\n  policy = \"write\"\n}\n"
    );
    assert_eq!(rules(&p.to_hcl()), p);

    let g = rules(GLOBAL_MANAGEMENT_RULES);
    let text = g.to_hcl();
    assert_eq!(
        text,
        "acl = \"write\"\n\
         agent_prefix \"\" {\n  policy = \"write\"\n}\n\
         event_prefix \"\" {\n  policy = \"write\"\n}\n\
         key_prefix \"\" {\n  policy = \"write\"\n}\n\
         keyring = \"write\"\n\
         mesh = \"write\"\n\
         node_prefix \"\" {\n  policy = \"write\"\n}\n\
         operator = \"write\"\n\
         peering = \"write\"\n\
         query_prefix \"\" {\n  policy = \"write\"\n}\n\
         service_prefix \"\" {\n  policy = \"write\"\n  intentions = \"write\"\n}\n\
         session_prefix \"\" {\n  policy = \"write\"\n}\n"
    );
    assert_eq!(rules(&text), g);
    assert_eq!(Policy::new().to_hcl(), "");

    // Awkward labels survive.
    let mut odd = Policy::new();
    for name in [
        "a\"b",
        "back\\slash",
        "new\nline",
        "${x}",
        "$${",
        "tab\t",
        "ünï",
        "\u{7}",
    ] {
        odd.add(Key, Exact, name, grant(Read, None));
    }
    assert_eq!(rules(&odd.to_hcl()), odd);
    assert_eq!(odd.to_string(), odd.to_hcl());
}

// ----------------------------------------------------------------- errors

#[test]
fn syntax_errors() {
    let err = error("service \"web\" {\n  policy \"read\"\n}");
    assert_eq!(err.kind(), RuleErrorKind::Syntax);
    assert!(
        err.to_string()
            .starts_with("Failed to parse ACL rules: At 2:10: "),
        "{err}"
    );
    assert_eq!((err.line(), err.column()), (Some(2), Some(10)));
    let err = error("{\"service\": ");
    assert_eq!(err.kind(), RuleErrorKind::Syntax);
    assert!(
        err.to_string()
            .starts_with("Failed to parse ACL rules: At 1:"),
        "{err}"
    );
    let err = error("[1, 2]");
    assert!(err.to_string().contains("expected a JSON object"), "{err}");
}

#[test]
fn duplicate_attributes() {
    let err = error("acl=\"read\"\nacl=\"write\"");
    assert_eq!(err.kind(), RuleErrorKind::DuplicateArgument);
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: The argument \"acl\" at 2:1 was already set. Each argument can only be defined once"
    );
    assert_eq!(err.line(), Some(2));
    let err = error("service \"foo/\" { policy = \"read\" policy = \"read\" }");
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: The argument \"policy\" at 1:34 was already set. Each argument can only be defined once"
    );
    // Repeated blocks are not repeated attributes.
    rules("service \"a\" { policy = \"read\" }\nservice \"a\" { policy = \"read\" }");
    // JSON input has no duplicate check (serde_json keeps the last value).
    assert_eq!(rules(r#"{"acl": "read", "acl": "write"}"#).acl, Some(Write));
}

#[test]
fn invalid_policy_for_every_resource() {
    // The prefixes Consul's own tests expect (acl/policy_test.go).
    let cases = [
        (
            "agent \"foo\" { policy = \"nope\" }",
            "Invalid agent policy",
        ),
        (
            "agent_prefix \"foo\" { policy = \"nope\" }",
            "Invalid agent_prefix policy",
        ),
        ("key \"foo\" { policy = \"nope\" }", "Invalid key policy"),
        (
            "key_prefix \"foo\" { policy = \"nope\" }",
            "Invalid key_prefix policy",
        ),
        ("node \"foo\" { policy = \"nope\" }", "Invalid node policy"),
        (
            "node_prefix \"foo\" { policy = \"nope\" }",
            "Invalid node_prefix policy",
        ),
        (
            "service \"foo\" { policy = \"nope\" }",
            "Invalid service policy",
        ),
        (
            "service_prefix \"foo\" { policy = \"nope\" }",
            "Invalid service_prefix policy",
        ),
        (
            "session \"foo\" { policy = \"nope\" }",
            "Invalid session policy",
        ),
        (
            "session_prefix \"foo\" { policy = \"nope\" }",
            "Invalid session_prefix policy",
        ),
        (
            "event \"foo\" { policy = \"nope\" }",
            "Invalid event policy",
        ),
        (
            "event_prefix \"foo\" { policy = \"nope\" }",
            "Invalid event_prefix policy",
        ),
        (
            "query \"foo\" { policy = \"nope\" }",
            "Invalid query policy",
        ),
        (
            "query_prefix \"foo\" { policy = \"nope\" }",
            "Invalid query_prefix policy",
        ),
        ("keyring = \"nope\"", "Invalid keyring policy"),
        ("operator = \"nope\"", "Invalid operator policy"),
        ("mesh = \"nope\"", "Invalid mesh policy"),
        ("peering = \"nope\"", "Invalid peering policy"),
        ("acl = \"list\"", "Invalid acl policy"),
        (
            "service \"foo\" { policy = \"write\" intentions = \"foo\" }",
            "Invalid service intentions policy",
        ),
        (
            "service_prefix \"foo\" { policy = \"write\" intentions = \"foo\" }",
            "Invalid service_prefix intentions policy",
        ),
    ];
    for (text, prefix) in cases {
        let err = error(text);
        assert!(err.to_string().starts_with(prefix), "{text} => {err}");
        assert_eq!(err.line(), Some(1), "{text}");
    }
    // JSON forms give the same messages, without positions.
    let json_cases = [
        (
            r#"{ "agent": { "foo": { "policy": "nope" }}}"#,
            "Invalid agent policy: &acl.AgentRule{Node:\"foo\", Policy:\"nope\"}: \"nope\" is not a valid access level",
        ),
        (
            r#"{ "event_prefix": { "foo": { "policy": "nope" }}}"#,
            "Invalid event_prefix policy: &acl.EventRule{Event:\"foo\", Policy:\"nope\"}: \"nope\" is not a valid access level",
        ),
        (
            r#"{ "key": { "foo": { "policy": "nope" }}}"#,
            "Invalid key policy: &acl.KeyRule{Prefix:\"foo\", Policy:\"nope\", EnterpriseRule:acl.EnterpriseRule{}}: \"nope\" is not a valid access level",
        ),
        (
            r#"{ "node_prefix": { "foo": { "policy": "nope" }}}"#,
            "Invalid node_prefix policy: &acl.NodeRule{Name:\"foo\", Policy:\"nope\", EnterpriseRule:acl.EnterpriseRule{}}: \"nope\" is not a valid access level",
        ),
        (
            r#"{ "query": { "foo": { "policy": "nope" }}}"#,
            "Invalid query policy: &acl.PreparedQueryRule{Prefix:\"foo\", Policy:\"nope\"}: \"nope\" is not a valid access level",
        ),
        (
            r#"{ "session_prefix": { "foo": { "policy": "nope" }}}"#,
            "Invalid session_prefix policy: &acl.SessionRule{Node:\"foo\", Policy:\"nope\"}: \"nope\" is not a valid access level",
        ),
        (
            r#"{ "service": { "foo": { "policy": "write", "intentions": "foo" }}}"#,
            "Invalid service intentions policy: &acl.ServiceRule{Name:\"foo\", Policy:\"write\", Intentions:\"foo\", EnterpriseRule:acl.EnterpriseRule{}}: \"foo\" is not a valid access level",
        ),
        (
            r#"{ "acl": "list" }"#,
            "Invalid acl policy: \"list\": \"list\" is only valid in key and key_prefix rules",
        ),
        (
            r#"{ "peering": "nope" }"#,
            "Invalid peering policy: \"nope\": \"nope\" is not a valid access level",
        ),
    ];
    for (text, message) in json_cases {
        let err = error(text);
        assert_eq!(err.to_string(), message);
        assert_eq!(err.line(), None);
    }
}

#[test]
fn invalid_policy_values_with_positions() {
    let err = error("# comment\nservice \"web\" {\n  policy = \"admin\"\n}\n");
    assert_eq!(err.kind(), RuleErrorKind::InvalidPolicy);
    assert_eq!(
        err.to_string(),
        "Invalid service policy: &acl.ServiceRule{Name:\"web\", Policy:\"admin\", Intentions:\"\", \
         EnterpriseRule:acl.EnterpriseRule{}}: \"admin\" is not a valid access level (line 3, column 3)"
    );
    assert_eq!(
        (err.resource(), err.label()),
        (Some("service"), Some("web"))
    );
    assert_eq!((err.line(), err.column()), (Some(3), Some(3)));

    // `list` outside keys.
    let err = error("node \"n\" {\n  policy = \"list\"\n}");
    assert_eq!(
        err.to_string(),
        "Invalid node policy: &acl.NodeRule{Name:\"n\", Policy:\"list\", EnterpriseRule:acl.EnterpriseRule{}}: \
         \"list\" is only valid in key and key_prefix rules (line 2, column 3)"
    );
    let err = error("service_prefix \"\" {\n  policy = \"list\"\n}");
    assert!(
        err.to_string()
            .starts_with("Invalid service_prefix policy: "),
        "{err}"
    );
    // `list` is fine for keys.
    rules("key \"k\" { policy = \"list\" } key_prefix \"\" { policy = \"list\" }");

    // intentions = "list".
    let err = error("service \"web\" {\n  policy = \"read\"\n  intentions = \"list\"\n}");
    assert_eq!(err.kind(), RuleErrorKind::InvalidIntentions);
    assert_eq!(
        err.to_string(),
        "Invalid service intentions policy: &acl.ServiceRule{Name:\"web\", Policy:\"read\", Intentions:\"list\", \
         EnterpriseRule:acl.EnterpriseRule{}}: \"list\" is only valid in key and key_prefix rules (line 3, column 3)"
    );

    // A missing policy (Consul's isPolicyValid("") is false).
    let err = error("service \"web\" {\n  intentions = \"read\"\n}");
    assert_eq!(
        err.to_string(),
        "Invalid service policy: &acl.ServiceRule{Name:\"web\", Policy:\"\", Intentions:\"read\", \
         EnterpriseRule:acl.EnterpriseRule{}}: the policy is not set (line 1, column 1)"
    );
    let err = error("key \"k\" {}");
    assert!(
        err.to_string()
            .ends_with("the policy is not set (line 1, column 1)"),
        "{err}"
    );

    // The failing rule among several with the same label is located.
    let err = error("service \"a\" { policy = \"read\" }\n\nservice \"a\" { policy = \"nope\" }");
    assert_eq!(err.line(), Some(3));
    // Attributes.
    let err = error("\n\noperator = \"admin\"");
    assert_eq!(
        err.to_string(),
        "Invalid operator policy: \"admin\": \"admin\" is not a valid access level (line 3, column 1)"
    );
    // JSON-shaped HCL values are located too.
    let err = error("service = {\n  web = {\n    policy = \"admin\"\n  }\n}");
    assert_eq!(err.line(), Some(3));
}

#[test]
fn validation_order_follows_consul() {
    // Consul validates acl first and peering last, whatever the text order.
    let err = error("peering = \"x\"\nservice \"s\" { policy = \"x\" }\nacl = \"x\"");
    assert!(err.to_string().starts_with("Invalid acl policy"), "{err}");
    let err =
        error("peering = \"x\"\nsession \"s\" { policy = \"x\" }\nkey \"k\" { policy = \"x\" }");
    assert!(err.to_string().starts_with("Invalid key policy"), "{err}");
    let err = error("query \"q\" { policy = \"x\" }\nevent \"e\" { policy = \"x\" }");
    assert!(err.to_string().starts_with("Invalid event policy"), "{err}");
}

#[test]
fn unknown_resources_and_fields() {
    let err = error("servce \"web\" { policy = \"read\" }");
    assert_eq!(err.kind(), RuleErrorKind::UnknownResource);
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: At 1:1: unknown ACL resource \"servce\""
    );
    assert_eq!(err.resource(), Some("servce"));
    let err = error(r#"{"nodes": {"a": {"policy": "read"}}}"#);
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: unknown ACL resource \"nodes\""
    );
    let err = error("service \"web\" {\n  policy = \"write\"\n  intention = \"read\"\n}");
    assert_eq!(err.kind(), RuleErrorKind::UnknownField);
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: At 3:3: service \"web\": unknown field \"intention\" (\"policy\" and \"intentions\" are allowed)"
    );
    let err = error("node \"n\" {\n  policy = \"write\"\n  intentions = \"read\"\n}");
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: At 3:3: node \"n\": unknown field \"intentions\" (only \"policy\" is allowed)"
    );
    // `service "" { service = "write" }` (Consul would say the policy is unset).
    let err = error("service \"\" { service = \"write\" }");
    assert_eq!(err.kind(), RuleErrorKind::UnknownField);
}

#[test]
fn structure_errors() {
    let err = error("service = \"web\"");
    assert_eq!(err.kind(), RuleErrorKind::Structure);
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: At 1:1: service: expected a labelled block such as service \"<name>\" { policy = \"read\" }, found a string"
    );
    let err = error("service { policy = \"read\" }");
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: At 1:1: service: missing the name label, as in service \"<name>\" { policy = ... }"
    );
    let err = error(r#"{"service": {"web": "write"}}"#);
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: service \"web\": expected a rule body, found a string"
    );
    let err = error(r#"{"service": ["web"]}"#);
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: service: expected a list of objects of named rules, found a string in the list"
    );
    let err = error(r#"{"service": {"web": [1]}}"#);
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: service \"web\": expected a rule body, found a number in the list"
    );
    let err = error("operator { policy = \"read\" }");
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: At 1:1: operator: expected a string, found an object"
    );
    let err = error(r#"{"acl": ["read"]}"#);
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: acl: expected a string, found a list"
    );
    let err = error("key \"k\" {\n  policy = true\n}");
    assert_eq!(
        err.to_string(),
        "Failed to parse ACL rules: At 2:3: key \"k\": policy: expected a string, found a boolean"
    );
    let err = error("service \"a\" \"b\" { policy = \"read\" }");
    assert_eq!(err.kind(), RuleErrorKind::UnknownField);
}
