//! Behaviour of `meshgate-filter` against Consul-shaped JSON elements.
//!
//! Error texts in these tests are the ones go-bexpr v0.1.2 (as used by
//! Consul) produces for the same expressions.

use meshgate_filter::{
    ERROR_PREFIX, FieldSpec, Filter, FilterError, MAX_NESTING, Schema, filter_items, schema,
};
use serde_json::{Value, json};

fn entry_web1() -> Value {
    json!({
        "Node": {"ID": "40e4a748", "Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1",
                 "TaggedAddresses": {"lan": "10.0.0.1"},
                 "Meta": {"external-node": "true", "env": "prod", "rack id": "r-7"}},
        "Service": {"ID": "web1", "Service": "web", "Tags": ["v1", "primary"], "Address": "",
                    "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}},
                    "Meta": {}, "Port": 80, "Weights": {"Passing": 1, "Warning": 1},
                    "EnableTagOverride": false,
                    "Proxy": {"Upstreams": [
                        {"DestinationName": "db", "LocalBindPort": 9191},
                        {"DestinationName": "cache", "LocalBindPort": 9292}]}},
        "Checks": [
            {"Node": "n1", "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing", "ServiceTags": []},
            {"Node": "n1", "CheckID": "service:web1", "Name": "web check", "Status": "critical",
             "ServiceID": "web1", "ServiceName": "web", "ServiceTags": ["v1", "primary"]}
        ]
    })
}

fn entry_db1() -> Value {
    json!({
        "Node": {"Node": "n2", "Address": "10.0.0.2", "Meta": {"env": "dev"}},
        "Service": {"ID": "db1", "Service": "db", "Tags": [], "Port": 5432, "Meta": {"version": "15"},
                    "EnableTagOverride": true},
        "Checks": [{"Node": "n2", "CheckID": "serfHealth", "Status": "passing"}]
    })
}

/// An element with nearly everything left out (Consul omits empty fields).
fn entry_sparse() -> Value {
    json!({"Node": {"Node": "n3"}, "Service": null, "Checks": []})
}

fn health(expr: &str) -> Filter {
    Filter::parse(expr, schema::health_service_entries())
        .unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
}

/// Which of the three sample entries match.
fn which(expr: &str) -> [bool; 3] {
    let f = health(expr);
    [
        f.matches(&entry_web1()),
        f.matches(&entry_db1()),
        f.matches(&entry_sparse()),
    ]
}

fn err(expr: &str) -> String {
    match Filter::parse(expr, schema::health_service_entries()) {
        Ok(_) => panic!("{expr:?} should not parse"),
        Err(e) => e.to_string(),
    }
}

// ----- operators -------------------------------------------------------------

#[test]
fn equality_and_inequality() {
    assert_eq!(which(r#"Service.Service == "web""#), [true, false, false]);
    assert_eq!(which(r#"Service.Service != "web""#), [false, true, true]);
    assert_eq!(which("Node.Node == n2"), [false, true, false]);
    assert_eq!(which("Node.Node==n2"), [false, true, false]);
    // Strings compare exactly: case matters.
    assert_eq!(which(r#"Service.Service == "WEB""#), [false, false, false]);
    // An absent string field is "".
    assert_eq!(which(r#"Service.Service == """#), [false, false, true]);
    assert_eq!(which(r#"Node.Address == """#), [false, false, true]);
}

#[test]
fn is_empty_and_is_not_empty() {
    assert_eq!(which("Service.Tags is empty"), [false, true, true]);
    assert_eq!(which("Service.Tags is not empty"), [true, false, false]);
    assert_eq!(which("Service.Meta is empty"), [true, false, true]);
    assert_eq!(which("Node.Meta is not empty"), [true, true, false]);
    assert_eq!(which("Checks is empty"), [false, false, true]);
    assert_eq!(
        which("Service.Proxy.Upstreams is not empty"),
        [true, false, false]
    );
}

#[test]
fn in_and_contains() {
    // On a list: element equality.
    assert_eq!(which(r#""v1" in Service.Tags"#), [true, false, false]);
    assert_eq!(
        which(r#"Service.Tags contains "primary""#),
        [true, false, false]
    );
    assert_eq!(
        which(r#"Service.Tags contains "prim""#),
        [false, false, false]
    );
    assert_eq!(which(r#""v1" not in Service.Tags"#), [false, true, true]);
    assert_eq!(
        which(r#"Service.Tags not contains "v1""#),
        [false, true, true]
    );
    // On a string: substring.
    assert_eq!(which(r#""eb" in Service.Service"#), [true, false, false]);
    assert_eq!(
        which(r#"Node.Address contains "10.0.0""#),
        [true, true, false]
    );
    assert_eq!(
        which(r#"Node.Address not contains ".2""#),
        [true, false, true]
    );
    // On a map: key presence.
    assert_eq!(which(r#""env" in Node.Meta"#), [true, true, false]);
    assert_eq!(
        which(r#"Node.Meta contains "external-node""#),
        [true, false, false]
    );
    assert_eq!(
        which(r#"Node.Meta not contains "external-node""#),
        [false, true, true]
    );
    assert_eq!(
        which(r#"Service.TaggedAddresses contains lan"#),
        [true, false, false]
    );
}

#[test]
fn matches_and_not_matches() {
    assert_eq!(
        which(r#"Service.ID matches "^[a-z]+1$""#),
        [true, true, false]
    );
    assert_eq!(which(r#"Service.ID matches "^db""#), [false, true, false]);
    assert_eq!(
        which(r#"Service.ID not matches "^db""#),
        [true, false, true]
    );
    assert_eq!(
        which(r"Node.Address matches `^10\.0\.0\.\d$`"),
        [true, true, false]
    );
    // Go's \d is ASCII only.
    let f = Filter::parse(
        r#"Name matches "^\\d+$""#,
        &Schema::new(&[FieldSpec::string("Name")]),
    )
    .unwrap();
    assert!(f.matches(&json!({"Name": "123"})));
    assert!(!f.matches(&json!({"Name": "١٢٣"})));
    // Unanchored search, like Go's regexp.Match.
    assert_eq!(which(r#"Node.Node matches "2""#), [false, true, false]);
}

// ----- boolean structure ---------------------------------------------------

#[test]
fn and_or_not_precedence() {
    // `a or b and c` is `a or (b and c)`.
    assert_eq!(
        which("Service.Service == web or Service.Service == db and Node.Node == nX"),
        [true, false, false]
    );
    assert_eq!(
        which("(Service.Service == web or Service.Service == db) and Node.Node == nX"),
        [false, false, false]
    );
    // `not` binds tighter than `and`.
    assert_eq!(
        which("not Service.Service == web and Node.Node == n2"),
        [false, true, false]
    );
    assert_eq!(
        which("not (Service.Service == web and Node.Node == n1)"),
        [false, true, true]
    );
    assert_eq!(
        which("not not Service.Service == web"),
        [true, false, false]
    );
    assert_eq!(
        which("not not not Service.Service == web"),
        [false, true, true]
    );
    // The whole expression may be parenthesized, with free whitespace.
    assert_eq!(
        which("\t( Service.Service == web )\n"),
        [true, false, false]
    );
    assert_eq!(
        which("((Service.Service == web) or ((Service.Service == db)))"),
        [true, true, false]
    );
    // Hyphens need quotes.
    assert!(err("Node.Node == host-name").starts_with("1:18 (17): no match found"));
    // Long chains are fine.
    let long = vec!["Service.Service != x"; 500].join(" and ");
    assert_eq!(which(&long), [true, true, true]);
    let ors = format!(
        "{} or Node.Node == n3",
        vec!["Node.Node == x"; 500].join(" or ")
    );
    assert_eq!(which(&ors), [false, false, true]);
}

// ----- values ----------------------------------------------------------------

#[test]
fn value_forms() {
    // Double quotes, back quotes and bare words are all strings for a string field.
    for v in [r#""web""#, "`web`", "web"] {
        assert_eq!(
            which(&format!("Service.Service == {v}")),
            [true, false, false],
            "{v}"
        );
    }
    // A selector-like bare value is its dotted text.
    let s = Schema::new(&[FieldSpec::string("Name")]);
    let f = Filter::parse(r#"Name == a.b["c d"]"#, &s).unwrap();
    assert!(f.matches(&json!({"Name": "a.b.c d"})));
    // Numbers are their literal text for a string field.
    let f = Filter::parse("Name == -1.50", &s).unwrap();
    assert!(f.matches(&json!({"Name": "-1.50"})));
    // Go escapes in double quotes; none in back quotes.
    let f = Filter::parse(r#"Name == "a\tb\x41\u00e9""#, &s).unwrap();
    assert!(f.matches(&json!({"Name": "a\tbAé"})));
    let f = Filter::parse(r"Name == `a\tb`", &s).unwrap();
    assert!(f.matches(&json!({"Name": "a\\tb"})));
    // Keywords are only keywords in their position.
    let f = Filter::parse("Name == and", &s).unwrap();
    assert!(f.matches(&json!({"Name": "and"})));
    let f = Filter::parse(r#"Name == """#, &s).unwrap();
    assert!(f.matches(&json!({})));
}

#[test]
fn number_and_bool_coercion() {
    // The value is converted to the field's type: these are all the same.
    for v in [
        "80",
        r#""80""#,
        "`80`",
        r#""0x50""#,
        r#""0o120""#,
        r#""+80""#,
    ] {
        assert_eq!(
            which(&format!("Service.Port == {v}")),
            [true, false, false],
            "{v}"
        );
    }
    assert_eq!(which("Service.Port != 80"), [false, true, true]);
    // An absent number is 0.
    assert_eq!(which("Service.Port == 0"), [false, false, true]);
    assert_eq!(
        which("Service.Proxy.Upstreams.LocalBindPort == 9292"),
        [true, false, false]
    );
    for v in ["true", "True", "TRUE", "t", "1", r#""true""#] {
        assert_eq!(
            which(&format!("Service.EnableTagOverride == {v}")),
            [false, true, false],
            "{v}"
        );
    }
    assert_eq!(
        which("Service.EnableTagOverride == false"),
        [true, false, true]
    );
    assert_eq!(which("Service.Weights.Passing == 1"), [true, false, false]);
    // Unsigned and float fields.
    let s = Schema::new(&[FieldSpec::uint("Index"), FieldSpec::float("Score")]);
    let f = Filter::parse("Index == 18446744073709551615 and Score == 0.5", &s).unwrap();
    assert!(f.matches(&json!({"Index": u64::MAX, "Score": 0.5})));
    assert!(!f.matches(&json!({"Index": 1, "Score": 0.5})));
}

// ----- selectors ---------------------------------------------------------------

#[test]
fn map_index_forms() {
    assert_eq!(which("Node.Meta.env == prod"), [true, false, false]);
    assert_eq!(which(r#"Node.Meta["env"] == prod"#), [true, false, false]);
    assert_eq!(which("Node.Meta[`env`] == prod"), [true, false, false]);
    assert_eq!(
        which(r#"Node.Meta[ "rack id" ] == "r-7""#),
        [true, false, false]
    );
    assert_eq!(
        which(r#"Node.Meta["external-node"] == "true""#),
        [true, false, false]
    );
    // Indexing into a map of objects.
    assert_eq!(
        which("Service.TaggedAddresses.lan.Port == 80"),
        [true, false, false]
    );
    assert_eq!(
        which(r#"Service.TaggedAddresses["lan"].Address == "10.0.0.1""#),
        [true, false, false]
    );
}

#[test]
fn missing_map_keys() {
    // Node n2 has no "external-node" key, n3 has no Meta at all.
    let k = r#"Node.Meta["external-node"]"#;
    assert_eq!(which(&format!("{k} == true")), [true, false, false]);
    assert_eq!(which(&format!("{k} != true")), [false, true, true]);
    assert_eq!(which(&format!(r#""ru" in {k}"#)), [true, false, false]);
    assert_eq!(which(&format!(r#""x" not in {k}"#)), [true, true, true]);
    // go-bexpr v0.1.2 answers `matches` on a missing key with true.
    assert_eq!(which(&format!(r#"{k} matches "^t""#)), [true, true, true]);
    assert_eq!(
        which(&format!(r#"{k} not matches "^t""#)),
        [false, true, true]
    );
    assert_eq!(
        which("Service.TaggedAddresses.wan.Port == 0"),
        [false, false, false]
    );
    assert_eq!(
        which("Service.TaggedAddresses.wan.Port != 0"),
        [true, true, true]
    );
}

#[test]
fn list_of_object_selectors_match_any_element() {
    assert_eq!(which("Checks.Status == passing"), [true, true, false]);
    assert_eq!(which("Checks.Status == critical"), [true, false, false]);
    // The operator applies per element: "some check is not passing".
    assert_eq!(which("Checks.Status != passing"), [true, false, false]);
    // Negating the whole match instead: "no check is passing".
    assert_eq!(which("not Checks.Status == passing"), [false, false, true]);
    assert_eq!(
        which(r#"Checks.ServiceTags contains "v1""#),
        [true, false, false]
    );
    assert_eq!(
        which(r#"Checks.CheckID == "service:web1" and Checks.Status == passing"#),
        [true, false, false]
    );
    assert_eq!(
        which(r#"Service.Proxy.Upstreams.DestinationName == cache"#),
        [true, false, false]
    );
    // An empty list never matches through, whatever the operator.
    assert_eq!(
        which("Checks.Status not matches \"zzz\""),
        [true, true, false]
    );
}

#[test]
fn selectors_are_case_sensitive_and_checked_up_front() {
    assert_eq!(
        err("service.Service == web"),
        r#"Selector "service" is not valid"#
    );
    assert_eq!(
        err("Service.service == web"),
        r#"Selector "Service.service" is not valid"#
    );
    assert_eq!(err("Nodes.Node == n1"), r#"Selector "Nodes" is not valid"#);
    assert_eq!(
        err("Service.Port.Value == 1"),
        r#"Selector "Service.Port.Value" is not valid"#
    );
    assert_eq!(
        err("Node.Meta.a.b == c"),
        r#"Selector "Node.Meta.a.b" is not valid"#
    );
    assert_eq!(
        err("Checks.Definition.HTTP == x"),
        r#"Selector "Checks.Definition" is not valid"#
    );
    // Validation runs left to right and stops at the first problem.
    assert_eq!(
        err("Service.Tags is empty and Checks.Foo == 1 or Bar == 2"),
        r#"Selector "Checks.Foo" is not valid"#
    );
    // `x in y` puts the selector on the right.
    assert_eq!(err("Node.Node in x"), r#"Selector "x" is not valid"#);
}

#[test]
fn operators_must_suit_the_field() {
    assert_eq!(
        err("Node is empty"),
        r#"Invalid match operator "Is Empty" for selector "Node""#
    );
    assert_eq!(
        err("Node.Node is empty"),
        r#"Invalid match operator "Is Empty" for selector "Node.Node""#
    );
    assert_eq!(
        err("Service.Weights == 1"),
        r#"Invalid match operator "Equal" for selector "Service.Weights""#
    );
    assert_eq!(
        err("Checks == passing"),
        r#"Invalid match operator "Equal" for selector "Checks""#
    );
    assert_eq!(
        err("Service.Tags == v1"),
        r#"Invalid match operator "Equal" for selector "Service.Tags""#
    );
    assert_eq!(
        err(r#"Service.Meta matches "x""#),
        r#"Invalid match operator "Matches" for selector "Service.Meta""#
    );
    assert_eq!(
        err("Service.Port contains 8"),
        r#"Invalid match operator "In" for selector "Service.Port""#
    );
    assert_eq!(
        err("Checks not contains x"),
        r#"Invalid match operator "Not In" for selector "Checks""#
    );
}

#[test]
fn values_must_suit_the_field() {
    assert_eq!(
        err(r#"Service.Port == "x""#),
        r#"Failed to coerce value "x" for selector "Service.Port": strconv.ParseInt: parsing "x": invalid syntax"#
    );
    assert_eq!(
        err("Service.Port == 99999999999999999999"),
        r#"Failed to coerce value "99999999999999999999" for selector "Service.Port": strconv.ParseInt: parsing "99999999999999999999": value out of range"#
    );
    assert_eq!(
        err("Service.Port == 8.5"),
        r#"Failed to coerce value "8.5" for selector "Service.Port": strconv.ParseInt: parsing "8.5": invalid syntax"#
    );
    assert_eq!(
        err("Service.EnableTagOverride == yes"),
        r#"Failed to coerce value "yes" for selector "Service.EnableTagOverride": strconv.ParseBool: parsing "yes": invalid syntax"#
    );
    assert_eq!(
        err(r#"Service.Service matches "(" "#),
        "Failed to compile regular expression \"(\": error parsing regexp: missing closing ): `(`"
    );
    assert_eq!(
        err(r#"Service.Service matches "[""#),
        "Failed to compile regular expression \"[\": error parsing regexp: missing closing ]: `[`"
    );
    assert_eq!(
        err(r#"Service.Service matches "a**""#),
        "Failed to compile regular expression \"a**\": error parsing regexp: invalid nested repetition operator: `**`"
    );
}

// ----- syntax errors -------------------------------------------------------------

#[test]
fn malformed_expressions() {
    let cases: &[(&str, &str)] = &[
        (
            "Service.Port == 80x",
            r#"1:19 (18): rule "number": Invalid number literal"#,
        ),
        (
            "Node.Node == 01",
            r#"1:15 (14): rule "number": Invalid number literal"#,
        ),
        (
            "Node.Node == 1.",
            r#"1:15 (14): rule "number": Invalid number literal"#,
        ),
        (
            "Address == 10.10.10.10",
            r#"1:17 (16): rule "number": Invalid number literal"#,
        ),
        (
            r#"Node.Node == "abc\q""#,
            r#"1:14 (13): rule "string": invalid syntax"#,
        ),
        (
            r#"Node.Meta["a\qb"] == x"#,
            r#"1:11 (10): rule "string": invalid syntax"#,
        ),
        (
            "Node.Node == \"a\nb\"",
            r#"1:14 (13): rule "string": invalid syntax"#,
        ),
        (
            r#"Node.Node == "unterminated"#,
            r#"1:27 (26): rule "string": Unterminated string literal"#,
        ),
        (
            "(Node.Node == x",
            r#"1:16 (15): rule "grouping": Unmatched parentheses"#,
        ),
        (r#""x" in 5"#, r#"1:8 (7): rule "match": Invalid selector"#),
        (r#"x in "y""#, r#"1:6 (5): rule "match": Invalid selector"#),
        ("Node.Meta[]", r#"1:11 (10): rule "index": Invalid index"#),
        (
            "Node.Meta[x] == 1",
            r#"1:11 (10): rule "index": Invalid index"#,
        ),
        (
            r#"Node.Meta["x" == 1"#,
            r#"1:15 (14): rule "index": Unclosed index expression"#,
        ),
        (
            "foo",
            r#"1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \t\r\n] or [a-zA-Z0-9_]"#,
        ),
        (
            "not",
            r#"1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \t\r\n] or [a-zA-Z0-9_]"#,
        ),
        (
            "()",
            "1:2 (1): no match found, expected: \"(\", \"-\", \"0\", \"\\\"\", \"`\", \"not\", [ \\t\\r\\n], [1-9] or [a-zA-Z]",
        ),
        (
            "Node.Node == x)",
            r#"1:15 (14): no match found, expected: ".", "[", [ \t\r\n], [a-zA-Z0-9_] or EOF"#,
        ),
        (
            "Node.Node ==",
            "1:13 (12): no match found, expected: \"-\", \"0\", \"\\\"\", \"`\", [ \\t\\r\\n], [1-9] or [a-zA-Z]",
        ),
        (
            "Node.Node = x",
            r#"1:11 (10): no match found, expected: "!=", "==", "contains", "in", "is", "matches", "not" or [ \t\r\n]"#,
        ),
        (
            "Node.Node == x and",
            r#"1:19 (18): no match found, expected: [ \t\r\n]"#,
        ),
        (
            "Node.Node == x andy",
            r#"1:19 (18): no match found, expected: [ \t\r\n]"#,
        ),
        (
            "Node.Node == x && y",
            r#"1:16 (15): no match found, expected: "and", "or", [ \t\r\n] or EOF"#,
        ),
        (
            "Node.Node is not",
            r#"1:17 (16): no match found, expected: [ \t\r\n]"#,
        ),
        (
            "Node..Node == 1",
            "1:6 (5): no match found, expected: [a-zA-Z]",
        ),
        (
            "Node.Node == -",
            r#"1:15 (14): no match found, expected: "0" or [1-9]"#,
        ),
        (
            "  ",
            "1:3 (2): no match found, expected: \"(\", \"-\", \"0\", \"\\\"\", \"`\", \"not\", [ \\t\\r\\n], [1-9] or [a-zA-Z]",
        ),
        (
            "\n\nNode.Node == x\n)",
            r#"4:1 (17): no match found, expected: "and", "or", [ \t\r\n] or EOF"#,
        ),
        // Not in go-bexpr v0.1.2: quoted / JSON-pointer selectors, list
        // indexes, collection expressions, ordering operators, upper-case keywords.
        (
            r#""Node.Meta.env" == "prod""#,
            r#"1:17 (16): no match found, expected: "in", "not" or [ \t\r\n]"#,
        ),
        (
            r#""/Node/Meta/env" == prod"#,
            r#"1:18 (17): no match found, expected: "in", "not" or [ \t\r\n]"#,
        ),
        (
            "Service.Tags[0] == v1",
            r#"1:14 (13): rule "index": Invalid index"#,
        ),
        (
            "any Checks as c { c.Status == passing }",
            r#"1:5 (4): no match found, expected: "!=", "==", "contains", "in", "is", "matches", "not" or [ \t\r\n]"#,
        ),
        (
            "Service.Port > 80",
            r#"1:14 (13): no match found, expected: "!=", "==", "contains", "in", "is", "matches", "not" or [ \t\r\n]"#,
        ),
        (
            "Node.Node == x AND Node.Node == y",
            r#"1:16 (15): no match found, expected: "and", "or", [ \t\r\n] or EOF"#,
        ),
        (
            "Node.Node == é",
            "1:14 (13): no match found, expected: \"-\", \"0\", \"\\\"\", \"`\", [ \\t\\r\\n], [1-9] or [a-zA-Z]",
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(&err(expr), want, "{expr:?}");
    }
    assert!(matches!(
        Filter::parse("Node.Node ==", schema::health_service_entries()),
        Err(FilterError::Syntax { .. })
    ));
}

#[test]
fn nesting_depth_is_bounded() {
    let deep = format!(
        "{}Node.Node == x{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    let e = Filter::parse(&deep, schema::health_service_entries()).unwrap_err();
    assert!(matches!(e, FilterError::TooDeep { .. }), "{e}");
    assert!(e.to_string().contains("maximum depth"), "{e}");
    let ok = format!(
        "{}Node.Node == n1{}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert!(health(&ok).matches(&entry_web1()));
}

#[test]
fn consul_error_body() {
    assert_eq!(
        ERROR_PREFIX,
        "Failed to create boolean expression evaluator: "
    );
    let e = Filter::parse("Nodes == x", schema::catalog_nodes()).unwrap_err();
    assert_eq!(
        e.consul_message(),
        r#"Failed to create boolean expression evaluator: Selector "Nodes" is not valid"#
    );
}

// ----- API helpers -----------------------------------------------------------

#[test]
fn empty_expression_matches_everything() {
    let f = Filter::parse("", schema::catalog_nodes()).unwrap();
    assert!(f.is_empty());
    assert!(f.matches(&json!({})));
    assert!(f.matches(&json!(null)));
}

#[test]
fn filter_json_and_filter_items() {
    let f = health("Service.Service == web");
    let list = json!([entry_web1(), entry_db1(), entry_sparse()]);
    assert_eq!(f.filter_json(list), json!([entry_web1()]));

    // Maps (agent endpoints) are filtered by value.
    let services = json!({
        "web1": {"ID": "web1", "Service": "web", "Port": 80},
        "db1": {"ID": "db1", "Service": "db", "Port": 5432}
    });
    let f = Filter::parse("Port == 5432", schema::agent_services()).unwrap();
    assert_eq!(
        f.filter_json(services),
        json!({"db1": {"ID": "db1", "Service": "db", "Port": 5432}})
    );

    #[derive(serde::Serialize, Debug, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Node {
        node: String,
        address: String,
    }
    let nodes = vec![
        Node {
            node: "a".into(),
            address: "10.0.0.1".into(),
        },
        Node {
            node: "b".into(),
            address: "10.0.0.2".into(),
        },
    ];
    let f = Filter::parse(r#"Address matches "\\.2$""#, schema::catalog_nodes()).unwrap();
    let kept = filter_items(Some(&f), nodes).unwrap();
    assert_eq!(
        kept,
        vec![Node {
            node: "b".into(),
            address: "10.0.0.2".into()
        }]
    );
    assert_eq!(filter_items::<Node>(None, vec![]).unwrap(), vec![]);
}

// ----- Consul schemas ------------------------------------------------------------

#[test]
fn consul_schemas_accept_their_documented_selectors() {
    let cases: &[(&Schema, &[&str])] = &[
        (
            schema::catalog_nodes(),
            &[
                "Address == x",
                "Datacenter == x",
                "ID == x",
                "Node == x",
                "Meta is empty",
                "Meta.k == v",
                "TaggedAddresses contains lan",
                "TaggedAddresses.lan == x",
                "Partition == x",
                "PeerName == x",
            ],
        ),
        (
            schema::catalog_service_nodes(),
            &[
                "ServiceName == web",
                "ServiceTags contains v1",
                "ServicePort == 80",
                "NodeMeta.k == v",
                "ServiceMeta.k == v",
                "ServiceTaggedAddresses.lan.Port == 80",
                "ServiceWeights.Passing == 1",
                "ServiceEnableTagOverride == true",
                "ServiceConnect.Native == true",
                r#"ServiceKind == "connect-proxy""#,
                "ServiceProxy.DestinationServiceName == web",
                "ServiceProxy.Upstreams is empty",
                "ServiceProxy.Upstreams.DestinationName == db",
                "ServiceProxy.MeshGateway.Mode == local",
                "ServiceProxy.TransparentProxy.OutboundListenerPort == 15001",
                "ServiceProxy.Mode == transparent",
                "ServiceProxy.Expose.Paths.Path == x",
                "ServiceProxy.Upstreams.MeshGateway.Mode == local",
            ],
        ),
        (
            schema::catalog_services(),
            &["ServiceName == web", "NodeMeta is not empty"],
        ),
        (
            schema::catalog_node_services(),
            &[
                "Service == web",
                "Tags contains v1",
                "Connect.Native == true",
                "Weights.Warning == 1",
                "TaggedAddresses.wan.Address == x",
                "Proxy.Upstreams.LocalBindPort == 1",
                "Kind == x",
            ],
        ),
        (
            schema::health_checks(),
            &[
                "CheckID == x",
                "Name == x",
                "Node == x",
                "Notes == x",
                "Output == x",
                "ServiceID == x",
                "ServiceName == x",
                "ServiceTags contains x",
                "Status == passing",
                "Type == http",
                "ExposedPort == 1",
            ],
        ),
        (
            schema::agent_checks(),
            &["Status == critical", "ServiceTags is empty"],
        ),
        (
            schema::agent_services(),
            &[
                "Service == web",
                "Meta.env == prod",
                "Port == 80",
                "Proxy.DestinationServiceID == x",
            ],
        ),
        (
            schema::agent_members(),
            &[
                "Name == n1",
                r#"Tags["dc"] == dc2"#,
                "Status == 1",
                "Port == 8301",
                "Addr == x",
            ],
        ),
        (
            schema::intentions(),
            &[
                "Action == allow",
                "Description == x",
                "DestinationNS == x",
                "DestinationName == web",
                "ID == x",
                "Meta is empty",
                "Meta.k == v",
                "Precedence == 9",
                "SourceNS == x",
                "SourceName == x",
                "SourceType == consul",
            ],
        ),
        (
            schema::internal_ui_nodes(),
            &[
                "Node == n1",
                "Services.Service == web",
                "Checks.Status == critical",
            ],
        ),
    ];
    for (schema, exprs) in cases {
        for expr in *exprs {
            if let Err(e) = Filter::parse(expr, schema) {
                panic!("{expr:?}: {e}");
            }
        }
    }
    // `bexpr:"-"` fields of Consul's structs are not selectable.
    assert!(Filter::parse("CreateIndex == 1", schema::catalog_nodes()).is_err());
    assert!(Filter::parse("Definition.HTTP == x", schema::health_checks()).is_err());
    assert!(
        Filter::parse(
            "ServiceProxy.Config.x == y",
            schema::catalog_service_nodes()
        )
        .is_err()
    );
}

#[test]
fn health_checks_on_realistic_elements() {
    let checks = json!([
        {"Node": "n1", "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
         "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": ""},
        {"Node": "n1", "CheckID": "service:web1", "Name": "web", "Status": "warning",
         "ServiceID": "web1", "ServiceName": "web", "ServiceTags": ["v1"], "Type": "http"}
    ]);
    let f = Filter::parse(r#"ServiceName != """#, schema::health_checks()).unwrap();
    assert_eq!(f.filter_json(checks.clone())[0]["CheckID"], "service:web1");
    let f = Filter::parse("Status == passing or Type == http", schema::health_checks()).unwrap();
    assert_eq!(f.filter_json(checks).as_array().unwrap().len(), 2);
}

#[test]
fn custom_schema_with_json_key() {
    let s = Schema::new(&[
        FieldSpec::string("Name").with_json_key("name"),
        FieldSpec::object_map("Ports", vec![FieldSpec::int("Number").with_json_key("n")]),
    ]);
    let f = Filter::parse("Name == a and Ports.http.Number == 80", &s).unwrap();
    assert!(f.matches(&json!({"name": "a", "Ports": {"http": {"n": 80}}})));
    assert!(!f.matches(&json!({"Name": "a", "Ports": {"http": {"n": 80}}})));
    let ops = s.selectors();
    assert!(ops.iter().any(|(sel, _)| sel == "Ports.<any>.Number"));
}

#[test]
fn filters_are_send_and_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Filter>();
    check::<Schema>();
    check::<FilterError>();
}

#[test]
fn large_inputs_stay_cheap() {
    // Shapes that are exponential or quadratic for a naive PEG parser.
    let n = 64 * 1024;
    let inputs = [
        vec!["Node.Node == a"; n / 16].join(" and "),
        vec!["\"x\" in Service.Tags"; n / 22].join(" or "),
        vec!["x in 1"; n / 10].join(" or "),
        vec![r#"Node.Meta["\q"] == x"#; n / 22].join(" and "),
        format!("{}a ==", "( ".repeat(MAX_NESTING - 2)).repeat(n / 300),
        "not ".repeat(n / 4) + "Node.Node == a",
        format!("Node.Node == \"{}", "a".repeat(n)),
        "(a[\"".repeat(n / 4),
        "(".repeat(n),
        "a.".repeat(n / 2),
    ];
    for input in inputs {
        let _ = Filter::parse(&input, schema::health_service_entries());
    }
    let f = health(&vec!["Checks.Status == passing"; 5000].join(" and "));
    assert!(f.matches(&entry_web1()));
}
