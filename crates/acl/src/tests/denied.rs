use crate::{ANONYMOUS_TOKEN_ID, Access, Denied, Resource, permission_denied};

const ACCESSOR: &str = "6a1253d2-1785-24fd-91c2-f8e78c745511";

#[test]
fn named_permission() {
    let d = Denied::new(Resource::Service, Access::Write, Some("web"));
    assert_eq!(
        d.message(Some(ACCESSOR)),
        "Permission denied: token with AccessorID '6a1253d2-1785-24fd-91c2-f8e78c745511' lacks permission 'service:write' on \"web\""
    );
    assert_eq!(d.permission(), "service:write");
}

#[test]
fn anonymous_token() {
    let d = Denied::new(Resource::Key, Access::Read, Some("x"));
    let expected = "Permission denied: anonymous token lacks permission 'key:read' on \"x\". \
                    The anonymous token is used implicitly when a request does not specify a token.";
    assert_eq!(d.message(None), expected);
    assert_eq!(d.message(Some(ANONYMOUS_TOKEN_ID)), expected);
    let g = Denied::new(Resource::Operator, Access::Write, None);
    assert_eq!(
        g.message(None),
        "Permission denied: anonymous token lacks permission 'operator:write'. \
         The anonymous token is used implicitly when a request does not specify a token."
    );
}

#[test]
fn global_permissions_have_no_segment() {
    for (resource, text) in [
        (Resource::Acl, "acl"),
        (Resource::Keyring, "keyring"),
        (Resource::Mesh, "mesh"),
        (Resource::Operator, "operator"),
        (Resource::Peering, "peering"),
    ] {
        for access in [Access::Read, Access::Write] {
            let d = Denied::new(resource, access, None);
            assert_eq!(
                d.message(Some("a")),
                format!(
                    "Permission denied: token with AccessorID 'a' lacks permission '{text}:{access}'"
                )
            );
        }
    }
    // An empty segment prints like no segment, as in Consul.
    let d = Denied::new(Resource::Key, Access::Write, Some(""));
    assert_eq!(
        d.message(Some("a")),
        "Permission denied: token with AccessorID 'a' lacks permission 'key:write'"
    );
    // An empty accessor is not the anonymous token.
    let d = Denied::new(Resource::Acl, Access::Read, None);
    assert_eq!(
        d.message(Some("")),
        "Permission denied: token with AccessorID '' lacks permission 'acl:read'"
    );
}

#[test]
fn other_resources() {
    let cases = [
        (
            Denied::new(Resource::Intention, Access::Read, Some("db")),
            "'intention:read' on \"db\"",
        ),
        (
            Denied::new(Resource::Key, Access::List, Some("app/")),
            "'key:list' on \"app/\"",
        ),
        (
            Denied::new(Resource::Agent, Access::Read, Some("node1")),
            "'agent:read' on \"node1\"",
        ),
        (
            Denied::new(Resource::Event, Access::Write, Some("deploy")),
            "'event:write' on \"deploy\"",
        ),
        (
            Denied::new(Resource::Query, Access::Read, Some("q")),
            "'query:read' on \"q\"",
        ),
        (
            Denied::new(Resource::Session, Access::Write, Some("n")),
            "'session:write' on \"n\"",
        ),
        (Denied::node_read_all(), "'node:read' on \"all nodes\""),
        (
            Denied::service_read_all(),
            "'service:read' on \"all services\"",
        ),
        (
            Denied::service_write_any(),
            "'service:write' on \"any service\"",
        ),
        // Segments are not escaped (Consul's ResourceDescriptor.ToString).
        (
            Denied::new(Resource::Key, Access::Read, Some("a\"b")),
            "'key:read' on \"a\"b\"",
        ),
    ];
    for (d, tail) in cases {
        assert_eq!(
            d.message(Some("t")),
            format!("Permission denied: token with AccessorID 't' lacks permission {tail}")
        );
    }
    assert_eq!(
        permission_denied("ACL bootstrap no longer allowed (reset index: 7)"),
        "Permission denied: ACL bootstrap no longer allowed (reset index: 7)"
    );
}

#[test]
fn names_round_trip() {
    for r in Resource::ALL {
        assert_eq!(r.as_str().parse::<Resource>(), Ok(r));
        assert_eq!(r.to_string(), r.as_str());
    }
    for a in Access::ALL {
        assert_eq!(a.as_str().parse::<Access>(), Ok(a));
        assert_eq!(a.as_str().to_uppercase().parse::<Access>(), Ok(a));
    }
    assert_eq!(
        "admin".parse::<Access>().unwrap_err().to_string(),
        "\"admin\" is not a valid access level"
    );
    assert!("services".parse::<Resource>().is_err());
}
