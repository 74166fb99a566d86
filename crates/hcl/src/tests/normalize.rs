//! The normalization rules of `to_json`, case by case.

use serde_json::json;

use super::json_of;
use crate::{Body, Item, Pos, Value, to_json};

#[test]
fn attribute_and_unlabelled_block() {
    assert_eq!(
        json_of("k = 1\nb { x = 1 }"),
        json!({"k": 1, "b": {"x": 1}})
    );
}

#[test]
fn labelled_blocks_nest_one_object_per_label() {
    assert_eq!(
        json_of("k \"a\" { x = 1 }\nm \"a\" \"b\" \"c\" { x = 2 }"),
        json!({"k": {"a": {"x": 1}}, "m": {"a": {"b": {"c": {"x": 2}}}}})
    );
}

#[test]
fn labelled_blocks_merge_by_label() {
    assert_eq!(
        json_of("service \"a\" { x = 1 }\nservice \"b\" { x = 2 }\nservice \"c\" { x = 3 }"),
        json!({"service": {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}}})
    );
}

#[test]
fn labelled_blocks_merge_deeply() {
    assert_eq!(
        json_of(
            r#"
k "a" "x" { v = 1 }
k "b" "y" { v = 2 }
k "a" "z" { v = 3 }
"#
        ),
        json!({"k": {"a": {"x": {"v": 1}, "z": {"v": 3}}, "b": {"y": {"v": 2}}}})
    );
}

#[test]
fn repeated_label_path_makes_an_array() {
    assert_eq!(
        json_of("service \"a\" { x = 1 }\nservice \"a\" { x = 2 }"),
        json!({"service": {"a": [{"x": 1}, {"x": 2}]}})
    );
}

#[test]
fn repeated_label_path_three_times() {
    assert_eq!(
        json_of("s \"a\" { x = 1 }\ns \"a\" { x = 2 }\ns \"a\" { x = 3 }"),
        json!({"s": {"a": [{"x": 1}, {"x": 2}, {"x": 3}]}})
    );
}

#[test]
fn repeated_two_label_path() {
    assert_eq!(
        json_of("s \"a\" \"b\" { x = 1 }\ns \"a\" \"b\" { x = 2 }\ns \"a\" \"c\" { x = 3 }"),
        json!({"s": {"a": {"b": [{"x": 1}, {"x": 2}], "c": {"x": 3}}}})
    );
}

#[test]
fn mix_of_single_and_repeated_labels() {
    assert_eq!(
        json_of(
            r#"
service "a" { x = 1 }
service "b" { x = 2 }
service "a" { x = 3 }
service "c" { x = 4 }
service "a" { x = 5 }
"#
        ),
        json!({"service": {
            "a": [{"x": 1}, {"x": 3}, {"x": 5}],
            "b": {"x": 2},
            "c": {"x": 4}
        }})
    );
}

#[test]
fn repeated_unlabelled_blocks_make_an_array() {
    assert_eq!(
        json_of("service { name = \"a\" }\nservice { name = \"b\" }"),
        json!({"service": [{"name": "a"}, {"name": "b"}]})
    );
}

#[test]
fn three_unlabelled_blocks() {
    assert_eq!(
        json_of("check { id = 1 }\ncheck { id = 2 }\ncheck { id = 3 }"),
        json!({"check": [{"id": 1}, {"id": 2}, {"id": 3}]})
    );
}

#[test]
fn repeated_attributes_make_an_array() {
    assert_eq!(json_of("a = 1\na = 2"), json!({"a": [1, 2]}));
    assert_eq!(json_of("a = 1\na = 2\na = 3"), json!({"a": [1, 2, 3]}));
    // A repeated list attribute gives an array of arrays.
    assert_eq!(json_of("a = [1]\na = [2]"), json!({"a": [[1], [2]]}));
}

#[test]
fn repetition_does_not_leak_into_other_keys() {
    assert_eq!(
        json_of("a = 1\nb = 2\na = 3\nc { }\nb = 4"),
        json!({"a": [1, 3], "b": [2, 4], "c": {}})
    );
}

#[test]
fn attribute_and_block_with_the_same_key() {
    assert_eq!(
        json_of("service = { name = \"a\" }\nservice { name = \"b\" }"),
        json!({"service": [{"name": "a"}, {"name": "b"}]})
    );
}

#[test]
fn unlabelled_and_labelled_blocks_of_one_kind() {
    // Items that end at the node, plus one object for the labelled ones,
    // placed where the first labelled one appeared.
    assert_eq!(
        json_of("s { n = 1 }\ns \"a\" { n = 2 }\ns \"b\" { n = 3 }\ns { n = 4 }"),
        json!({"s": [{"n": 1}, {"a": {"n": 2}, "b": {"n": 3}}, {"n": 4}]})
    );
    assert_eq!(
        json_of("s \"a\" { n = 2 }\ns { n = 1 }"),
        json!({"s": [{"a": {"n": 2}}, {"n": 1}]})
    );
    // The same rule below the first label.
    assert_eq!(
        json_of("s \"a\" { n = 1 }\ns \"a\" \"b\" { n = 2 }"),
        json!({"s": {"a": [{"n": 1}, {"b": {"n": 2}}]}})
    );
}

#[test]
fn rules_apply_inside_blocks_and_object_literals() {
    assert_eq!(
        json_of(
            r#"
outer {
  check { id = 1 }
  check { id = 2 }
}
list = [{ r "x" { a = 1 } r "y" { a = 2 } a = 1 a = 2 }]
"#
        ),
        json!({
            "outer": {"check": [{"id": 1}, {"id": 2}]},
            "list": [{"r": {"x": {"a": 1}, "y": {"a": 2}}, "a": [1, 2]}]
        })
    );
}

#[test]
fn keys_keep_first_appearance_order() {
    let json = json_of("b = 1\na = 2\nb = 3\nc = 4");
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["b", "a", "c"]);
}

#[test]
fn to_json_of_a_built_body() {
    let pos = Pos { line: 1, column: 1 };
    let body = Body {
        items: vec![
            Item::Block {
                kind: "k".into(),
                labels: vec!["a".into()],
                body: Body {
                    items: vec![Item::Attribute {
                        key: "v".into(),
                        value: Value::List(vec![Value::Null, Value::Bool(true)]),
                        pos,
                    }],
                },
                pos,
            },
            Item::Attribute {
                key: "s".into(),
                value: Value::String("x".into()),
                pos,
            },
        ],
    };
    assert_eq!(
        to_json(&body),
        json!({"k": {"a": {"v": [null, true]}}, "s": "x"})
    );
    assert_eq!(Value::Object(body.clone()).to_json(), to_json(&body));
}
