use serde_json::json;

use super::{get, grant, rules};
use crate::{
    Access, Authorizer, GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_READ_ONLY_POLICY_ID, Match, Policy,
    RuleErrorKind, RuleResource, builtin_policies, node_identity_policy, render_templated_policy,
    service_identity_policy, synthetic_policy_id, templated_policy, templated_policy_info,
    templated_policy_list,
};

use Access::{Read, Write};

#[test]
fn builtin_ids() {
    assert_eq!(
        GLOBAL_MANAGEMENT_POLICY_ID,
        "00000000-0000-0000-0000-000000000001"
    );
    assert_eq!(
        GLOBAL_READ_ONLY_POLICY_ID,
        "00000000-0000-0000-0000-000000000002"
    );
    let [gm, ro] = builtin_policies();
    assert_eq!(
        (gm.name, ro.name),
        ("global-management", "builtin/global-read-only")
    );
    assert!(
        gm.rules
            .starts_with("\nacl = \"write\"\nagent_prefix \"\" {\n\tpolicy = \"write\"\n}")
    );
    assert!(
        ro.rules
            .ends_with("session_prefix \"\" {\n\tpolicy = \"read\"\n}")
    );
}

#[test]
fn service_identity() {
    let p = service_identity_policy("web");
    assert_eq!(
        p.to_hcl(),
        "node_prefix \"\" {\n  policy = \"read\"\n}\n\
         service \"web\" {\n  policy = \"write\"\n}\n\
         service \"web-sidecar-proxy\" {\n  policy = \"write\"\n}\n\
         service_prefix \"\" {\n  policy = \"read\"\n}\n"
    );
    assert_eq!(
        p,
        templated_policy("builtin/service", &json!({"name": "web"})).unwrap()
    );
    let a = Authorizer::new(&[&p], false);
    assert!(a.service_write("web") && a.service_write("web-sidecar-proxy"));
    assert!(a.service_read("db") && !a.service_write("db") && a.node_read("n"));
    assert!(a.intention_read("web") && !a.intention_write("web"));
}

#[test]
fn node_identity() {
    let p = node_identity_policy("node-1");
    let mut expected = Policy::new();
    expected
        .add(
            RuleResource::Node,
            Match::Exact,
            "node-1",
            grant(Write, None),
        )
        .add(RuleResource::Service, Match::Prefix, "", grant(Read, None));
    assert_eq!(p, expected);
    assert_eq!(
        p,
        templated_policy("builtin/node", &json!({"Name": "node-1"})).unwrap()
    );
}

#[test]
fn list_matches_consul() {
    let list = templated_policy_list();
    let names: Vec<_> = list.iter().map(|t| (t.name, t.id)).collect();
    assert_eq!(
        names,
        [
            ("builtin/service", "00000000-0000-0000-0000-000000000003"),
            ("builtin/node", "00000000-0000-0000-0000-000000000004"),
            ("builtin/dns", "00000000-0000-0000-0000-000000000005"),
            (
                "builtin/nomad-server",
                "00000000-0000-0000-0000-000000000006"
            ),
            (
                "builtin/api-gateway",
                "00000000-0000-0000-0000-000000000008"
            ),
            (
                "builtin/nomad-client",
                "00000000-0000-0000-0000-000000000009"
            ),
        ]
    );
    for t in &list {
        assert!(!t.description.is_empty());
        if t.schema.is_empty() {
            // Templates without variables parse as they are.
            rules(t.template);
        } else {
            let schema: serde_json::Value = serde_json::from_str(t.schema).unwrap();
            assert_eq!(schema["required"], json!(["name"]));
            assert!(t.template.contains("{{.Name}}"));
        }
    }
    let service = templated_policy_info("builtin/service").unwrap();
    assert!(
        service
            .template
            .starts_with("\nservice \"{{.Name}}\" {\n\tpolicy = \"write\"\n}")
    );
    assert_eq!(
        serde_json::to_value(service).unwrap(),
        json!({
            "TemplateName": "builtin/service",
            "Schema": service.schema,
            "Template": service.template,
            "Description": "Gives the token or role permissions to register a service and discover services in the Consul catalog. It also gives the specified service's sidecar proxy the permission to discover and route traffic to other services."
        })
    );
    assert!(templated_policy_info("builtin/workload-identity").is_none());
}

#[test]
fn rendering() {
    let text = render_templated_policy("builtin/api-gateway", &json!({"name": "gw"})).unwrap();
    assert_eq!(
        text,
        "mesh = \"read\"\nnode_prefix \"\" {\n\tpolicy = \"read\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}\nservice \"gw\" {\n\tpolicy = \"write\"\n}"
    );
    let dns = templated_policy("builtin/dns", &serde_json::Value::Null).unwrap();
    assert_eq!(
        get(&dns, RuleResource::Query, Match::Prefix, ""),
        Some(grant(Read, None))
    );
    let nomad = templated_policy("builtin/nomad-server", &json!({"name": "ignored"})).unwrap();
    assert_eq!(nomad.acl, Some(Write));
    let client = templated_policy("builtin/nomad-client", &json!({})).unwrap();
    assert_eq!(
        get(&client, RuleResource::Key, Match::Prefix, ""),
        Some(grant(Read, None))
    );
}

#[test]
fn template_errors() {
    let err = templated_policy("builtin/nope", &json!({})).unwrap_err();
    assert_eq!(err.kind(), RuleErrorKind::UnknownTemplate);
    assert_eq!(
        err.to_string(),
        "no such ACL templated policy with Name \"builtin/nope\""
    );

    let err = templated_policy("builtin/service", &json!({"name": "Web"})).unwrap_err();
    assert_eq!(err.kind(), RuleErrorKind::InvalidTemplateVariables);
    assert_eq!(
        err.to_string(),
        "service identity \"Web\" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"
    );
    let err = templated_policy("builtin/service", &json!({})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "service identity \"\" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"
    );
    let err = templated_policy("builtin/node", &json!({"name": "-x"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node identity \"-x\"  has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"
    );
    let err = templated_policy("builtin/api-gateway", &json!({"name": ""})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 error occurred:\n\t* name is required\n\n"
    );
    let err = templated_policy("builtin/api-gateway", &serde_json::Value::Null).unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 error occurred:\n\t* Invalid type. Expected: object, given: null\n\n"
    );
    let err = templated_policy("builtin/service", &json!({"name": 3})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "json: cannot unmarshal number into Go struct field ACLTemplatedPolicyVariables.name of type string"
    );
    // api-gateway names are not validated by Consul; one that breaks the
    // rules text fails to parse.
    let err = templated_policy("builtin/api-gateway", &json!({"name": "a\"b"})).unwrap_err();
    assert!(
        err.to_string().starts_with("Failed to parse ACL rules: "),
        "{err}"
    );
}

#[test]
fn identity_names() {
    use crate::{is_valid_node_identity_name, is_valid_service_identity_name};
    for ok in ["a", "web", "web-1", "a_b", "0", "x9"] {
        assert!(is_valid_service_identity_name(ok), "{ok}");
        assert!(is_valid_node_identity_name(ok), "{ok}");
    }
    for bad in [
        "",
        "-a",
        "a-",
        "_a",
        "Web",
        "a.b",
        "a b",
        "é",
        &"a".repeat(257),
    ] {
        assert!(!is_valid_service_identity_name(bad), "{bad}");
    }
    assert!(is_valid_service_identity_name(&"a".repeat(256)));
}

#[test]
fn synthetic_ids() {
    assert_eq!(synthetic_policy_id(""), "6c62272e07bb014262b821756295c58d");
    assert_eq!(
        synthetic_policy_id("ab"),
        "61626c62272e07bb014262b821756295c58d"
    );
}
