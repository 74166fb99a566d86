//! Property tests: `to_hcl` output reads back to the same JSON, and no input
//! makes the parser panic.

use proptest::prelude::*;
use serde_json::{Map, Number, Value as Json, json};

use super::assert_round_trip;
use crate::{parse, parse_to_json, to_hcl, to_json};

/// Pieces that exercise the string printer and lexer.
fn tricky_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("${".to_owned()),
        Just("}".to_owned()),
        Just("{".to_owned()),
        Just("$".to_owned()),
        Just("%{".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just("\t".to_owned()),
        Just("\u{0}".to_owned()),
        Just("\u{7f}".to_owned()),
        Just("\u{85}".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("é".to_owned()),
        Just("中".to_owned()),
        Just("😀".to_owned()),
        Just("#".to_owned()),
        Just("//".to_owned()),
        Just("/*".to_owned()),
        Just("<<EOF".to_owned()),
        Just(" ".to_owned()),
        Just("=".to_owned()),
        "[a-z0-9_.-]{1,4}",
    ]
}

fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(tricky_piece(), 0..8).prop_map(|pieces| pieces.concat()),
        any::<String>(),
        "[a-zA-Z0-9 /:.-]{0,12}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        // Identifiers, printed bare.
        "[a-zA-Z_][a-zA-Z0-9_.-]{0,10}",
        // Keys that need quotes.
        "[a-z]{0,3}[ =\"\\\\{}$#/:\\[\\]]{1,3}[a-z]{0,3}",
        Just(String::new()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("9lives".to_owned()),
        Just("ünïcödé".to_owned()),
        tricky_string(),
    ]
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<u64>().prop_map(Number::from),
        any::<i64>().prop_map(Number::from),
        (-1000i64..1000).prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
        (-1.0e6f64..1.0e6).prop_filter_map("finite", Number::from_f64),
    ]
}

fn scalar() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Number),
        tricky_string().prop_map(Json::String),
    ]
}

fn json_value() -> impl Strategy<Value = Json> {
    scalar().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|members| Json::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Json> {
    prop::collection::vec((key(), json_value()), 0..8)
        .prop_map(|members| Json::Object(members.into_iter().collect::<Map<_, _>>()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn to_hcl_round_trips(json in json_object()) {
        let hcl = to_hcl(&json);
        let back = parse_to_json(&hcl);
        prop_assert_eq!(back.as_ref(), Ok(&json), "printed:\n{}", hcl);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(body) = parse(&text) {
            let json = to_json(&body);
            let again = parse_to_json(&to_hcl(&json));
            prop_assert_eq!(again.as_ref(), Ok(&json));
        }
    }

    #[test]
    fn hcl_like_input_never_panics(pieces in prop::collection::vec(prop_oneof![
        Just("a"), Just("b"), Just(" "), Just("\n"), Just("="), Just("{"), Just("}"),
        Just("["), Just("]"), Just(","), Just("\""), Just("\\"), Just("${"), Just("<<EOF\n"),
        Just("<<-EOF\n"), Just("EOF\n"), Just("  EOF\n"), Just("#"), Just("//"), Just("/*"),
        Just("*/"), Just("1"), Just("-"), Just("0x"), Just("."), Just("e"), Just("true"),
        Just("\"x\""), Just("null"), Just(":"),
    ], 0..40)) {
        let text = pieces.concat();
        if let Ok(body) = parse(&text) {
            let json = to_json(&body);
            let again = parse_to_json(&to_hcl(&json));
            prop_assert_eq!(again.as_ref(), Ok(&json), "input:\n{}", text);
        }
    }

    #[test]
    fn json_text_reads_as_itself(json in json_object()) {
        // serde_json's float parsing is not always exact, so compare with
        // what serde_json itself reads.
        let text = serde_json::to_string(&json).unwrap();
        let expected: Json = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(parse_to_json(&text), Ok(expected.clone()));
        let pretty = serde_json::to_string_pretty(&json).unwrap();
        prop_assert_eq!(parse_to_json(&pretty), Ok(expected.clone()));
        // And what was read prints as HCL that reads back the same.
        let hcl = to_hcl(&expected);
        prop_assert_eq!(parse_to_json(&hcl), Ok(expected));
    }
}

#[test]
fn to_hcl_prints_consul_style() {
    let json = json!({
        "datacenter": "dc1",
        "ports": {"http": 8500, "grpc_tls": -1},
        "retry_join": ["a", "b"],
        "empty": {},
        "services": [{"name": "web", "check": {"interval": "10s"}}],
        "node_meta": {"external-node": "true"},
        "quoted key": {"x": 1},
        "tmpl": "${node.name} costs $5 and ${",
        "nested": [[1, 2], []]
    });
    let hcl = to_hcl(&json);
    let expected = r#"datacenter = "dc1"
ports {
  http = 8500
  grpc_tls = -1
}
retry_join = ["a", "b"]
empty {}
services = [
  {
    name = "web"
    check = {
      interval = "10s"
    }
  },
]
node_meta {
  external-node = "true"
}
"quoted key" = {
  x = 1
}
tmpl = "${node.name} costs $5 and \u0024{"
nested = [
  [1, 2],
  [],
]
"#;
    assert_eq!(hcl, expected);
    assert_round_trip(&json);
}

#[test]
fn to_hcl_of_non_objects_prints_a_value() {
    assert_eq!(to_hcl(&json!([1, "a"])), "[1, \"a\"]\n");
    assert_eq!(to_hcl(&json!(null)), "null\n");
    assert_eq!(to_hcl(&json!({})), "");
}

#[test]
fn to_hcl_round_trips_tricky_values() {
    for json in [
        json!({"a": "${"}),
        json!({"a": "${a\nb}"}),
        json!({"a": "x${a\"b\\c}y"}),
        json!({"a": "${${}}"}),
        json!({"a": "$${x}"}),
        json!({"a": "\u{0}\u{1f}\u{7f}\u{9f}"}),
        json!({"": {"": []}}),
        json!({"true": true, "false": false, "null": null}),
        json!({"a": 1e300, "b": -1.5e-300, "c": 0.1, "d": -0.0, "e": 5e-324}),
        json!({"a": u64::MAX, "b": i64::MIN}),
        json!({"long": ["a very long string that will not fit on a line", "and another one here"]}),
        json!({"obj": {"k": [{"x": {"y": {}}}]}}),
    ] {
        assert_round_trip(&json);
    }
}
