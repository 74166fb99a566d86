//! The accepted syntax, construct by construct.

use serde_json::json;

use super::json_of;
use crate::{Body, Item, Pos, Value, parse};

#[test]
fn empty_input_and_only_comments() {
    assert_eq!(json_of(""), json!({}));
    assert_eq!(json_of("   \n\t\r\n  "), json!({}));
    assert_eq!(json_of("# one\n// two\n/* three\n four */\n"), json!({}));
    assert_eq!(json_of("# no newline at the end"), json!({}));
    assert_eq!(json_of("/**/"), json!({}));
    assert_eq!(parse("").unwrap(), Body::default());
}

#[test]
fn byte_order_mark_and_crlf() {
    assert_eq!(
        json_of("\u{feff}a = 1\r\nb {\r\n  c = \"x\"\r\n}\r\n"),
        json!({"a": 1, "b": {"c": "x"}})
    );
    let body = parse("\u{feff}a = 1").unwrap();
    assert_eq!(body.items[0].pos(), Pos { line: 1, column: 2 });
    assert_eq!(json_of("\u{feff}{\"a\": 1}"), json!({"a": 1}));
}

#[test]
fn comments_everywhere() {
    let src = r##"
# hash
// slashes
/* block */ a /* after key */ = /* before value */ 1 # after value
b = [ # after bracket
  1, // after element
  /* before element */ 2,
  # own line
  3 /* before bracket */ ]
c /* between key and label */ "l" /* before brace */ {
  # inside
  d = { /* in object */ e = 1 /* end */ }
  /* multi
     line
     comment with "quotes" and { braces } */
}
f = "# not a comment // nor this /* nor this */"
g = 2 // trailing comment at end of input"##;
    assert_eq!(
        json_of(src),
        json!({
            "a": 1,
            "b": [1, 2, 3],
            "c": {"l": {"d": {"e": 1}}},
            "f": "# not a comment // nor this /* nor this */",
            "g": 2
        })
    );
}

#[test]
fn attribute_keys() {
    assert_eq!(
        json_of(
            r#"
plain = 1
with_underscore = 2
with-dash = 3
with.dot = 4
_leading = 5
"quoted key" = 6
"" = 7
"a=b" = 8
true = 9
ünïcödé = 10
"#
        ),
        json!({
            "plain": 1, "with_underscore": 2, "with-dash": 3, "with.dot": 4,
            "_leading": 5, "quoted key": 6, "": 7, "a=b": 8, "true": 9, "ünïcödé": 10
        })
    );
}

#[test]
fn scalars() {
    assert_eq!(
        json_of("t = true\nf = false\nn = null\ns = \"x\"\ni = 42\nneg = -7\nfl = 1.5"),
        json!({"t": true, "f": false, "n": null, "s": "x", "i": 42, "neg": -7, "fl": 1.5})
    );
}

#[test]
fn numbers() {
    let json = json_of(
        r#"
zero = 0
int = 8500
negative = -1
big = 18446744073709551615
min = -9223372036854775808
huge = 18446744073709551616
float = 3.25
negative_float = -0.5
exponent = 1e3
exponent_sign = 2.5E-2
exponent_plus = 1e+2
hex = 0x1F
hex_upper = 0XfF
negative_hex = -0x10
octal = 0755
negative_octal = -010
"#,
    );
    assert_eq!(json["zero"], json!(0));
    assert_eq!(json["int"], json!(8500));
    assert_eq!(json["negative"], json!(-1));
    assert_eq!(json["big"], json!(u64::MAX));
    assert_eq!(json["min"], json!(i64::MIN));
    assert_eq!(json["huge"], json!(18446744073709551616.0));
    assert!(json["huge"].is_f64());
    assert_eq!(json["float"], json!(3.25));
    assert_eq!(json["negative_float"], json!(-0.5));
    assert_eq!(json["exponent"], json!(1000.0));
    assert!(json["exponent"].is_f64());
    assert_eq!(json["exponent_sign"], json!(0.025));
    assert_eq!(json["exponent_plus"], json!(100.0));
    assert_eq!(json["hex"], json!(31));
    assert_eq!(json["hex_upper"], json!(255));
    assert_eq!(json["negative_hex"], json!(-16));
    assert_eq!(json["octal"], json!(493));
    assert_eq!(json["negative_octal"], json!(-8));
    assert!(json["int"].is_u64());
    assert!(json["negative"].is_i64());
}

#[test]
fn strings_and_escapes() {
    let json = json_of(
        r#"
newline = "a\nb"
tab = "a\tb"
cr = "a\rb"
quote = "say \"hi\""
backslash = "C:\\dir\\file"
unicode = "\u00e9\u4e2d"
big_unicode = "\U0001F600"
hcl1 = "\a\b\f\v\x41\101"
raw_unicode = "é中😀"
empty = ""
single_quote = "it's"
"#,
    );
    assert_eq!(json["newline"], "a\nb");
    assert_eq!(json["tab"], "a\tb");
    assert_eq!(json["cr"], "a\rb");
    assert_eq!(json["quote"], "say \"hi\"");
    assert_eq!(json["backslash"], "C:\\dir\\file");
    assert_eq!(json["unicode"], "é中");
    assert_eq!(json["big_unicode"], "😀");
    assert_eq!(json["hcl1"], "\u{7}\u{8}\u{c}\u{b}AA");
    assert_eq!(json["raw_unicode"], "é中😀");
    assert_eq!(json["empty"], "");
    assert_eq!(json["single_quote"], "it's");
}

#[test]
fn interpolation_is_kept_verbatim() {
    let json = json_of(
        r#"
simple = "${var.name}"
mixed = "http://${host}:${port}/path"
nested_quotes = "${lookup(var.map, "key")}"
nested_braces = "${ { a = 1 }["a"] }"
backslash_inside = "${replace(x, "\\", "/")} \\ done"
dollar = "cost: $5 and $$ and ${x}"
directive = "%{ if x }yes%{ endif }"
"#,
    );
    assert_eq!(json["simple"], "${var.name}");
    assert_eq!(json["mixed"], "http://${host}:${port}/path");
    assert_eq!(json["nested_quotes"], "${lookup(var.map, \"key\")}");
    assert_eq!(json["nested_braces"], "${ { a = 1 }[\"a\"] }");
    // Inside `${}` backslashes are kept as they are; outside, they escape.
    assert_eq!(
        json["backslash_inside"],
        "${replace(x, \"\\\\\", \"/\")} \\ done"
    );
    assert_eq!(json["dollar"], "cost: $5 and $$ and ${x}");
    assert_eq!(json["directive"], "%{ if x }yes%{ endif }");
}

#[test]
fn heredocs() {
    let src = "
plain = <<EOF
line one
  line two
EOF
indented_marker = <<EOT
    Foo
    Bar
  EOT
stripped = <<-EOT
    Foo
      Bar

    Baz
  EOT
tabs = <<-EOT
\tFoo
  Bar
  EOT
less = <<-EOT
    Foo
  Bar
EOT
empty = <<EOF
EOF
not_a_marker = <<EOF
  NOT EOF
EOF
raw = <<EOF
no \\n escapes, ${kept} \"quotes\"
EOF
crlf = <<EOF\r\nwindows\r\nEOF\r\n
after = 1
";
    let json = json_of(src);
    assert_eq!(json["plain"], "line one\n  line two\n");
    assert_eq!(json["indented_marker"], "    Foo\n    Bar\n");
    assert_eq!(json["stripped"], "Foo\n  Bar\n\nBaz\n");
    assert_eq!(json["tabs"], "Foo\n Bar\n");
    assert_eq!(json["less"], "  Foo\nBar\n");
    assert_eq!(json["empty"], "");
    assert_eq!(json["not_a_marker"], "  NOT EOF\n");
    assert_eq!(json["raw"], "no \\n escapes, ${kept} \"quotes\"\n");
    assert_eq!(json["crlf"], "windows\r\n");
    assert_eq!(json["after"], 1);
}

#[test]
fn heredoc_in_list_and_marker_at_end_of_input() {
    assert_eq!(
        json_of("a = [<<EOF\nx\nEOF\n, \"y\"]\nb = <<EOF\nz\nEOF"),
        json!({"a": ["x\n", "y"], "b": "z\n"})
    );
}

#[test]
fn lists() {
    assert_eq!(
        json_of(
            r#"
empty = []
one = [1]
trailing = [1, 2, ]
mixed = [1, "two", true, null, 2.5, { a = 1 }, [3, [4]]]
multi = [
  "a",
  "b"
]
objects = [{ a = 1 }, { b = 2, }, {}]
"#
        ),
        json!({
            "empty": [],
            "one": [1],
            "trailing": [1, 2],
            "mixed": [1, "two", true, null, 2.5, {"a": 1}, [3, [4]]],
            "multi": ["a", "b"],
            "objects": [{"a": 1}, {"b": 2}, {}]
        })
    );
}

#[test]
fn object_literals() {
    assert_eq!(
        json_of(
            r#"
commas = { a = 1, b = "x" }
newlines = { a = 1
  b = 2 }
trailing = { a = 1, }
empty = {}
nested = { inner = { deep = true } }
quoted = { "external-node" = "true", "with space" = 1 }
blocks = { check { interval = "10s" } }
"#
        ),
        json!({
            "commas": {"a": 1, "b": "x"},
            "newlines": {"a": 1, "b": 2},
            "trailing": {"a": 1},
            "empty": {},
            "nested": {"inner": {"deep": true}},
            "quoted": {"external-node": "true", "with space": 1},
            "blocks": {"check": {"interval": "10s"}}
        })
    );
}

#[test]
fn hcl1_commas_between_items() {
    assert_eq!(
        json_of("a = 1, b = 2,\nc { d = 3, e = 4 },"),
        json!({"a": 1, "b": 2, "c": {"d": 3, "e": 4}})
    );
}

#[test]
fn blocks() {
    assert_eq!(
        json_of(
            r#"
unlabelled { a = 1 }
labelled "one" { a = 2 }
two_labels "a" "b" { a = 3 }
bare_labels x y { a = 4 }
empty {}
"quoted kind" "l" {}
one_line { inner { deeper {} } }
"#
        ),
        json!({
            "unlabelled": {"a": 1},
            "labelled": {"one": {"a": 2}},
            "two_labels": {"a": {"b": {"a": 3}}},
            "bare_labels": {"x": {"y": {"a": 4}}},
            "empty": {},
            "quoted kind": {"l": {}},
            "one_line": {"inner": {"deeper": {}}}
        })
    );
}

#[test]
fn body_structure_and_positions() {
    let body = parse("a = 1\nsvc \"web\" {\n  port = 80\n}\n").unwrap();
    assert_eq!(
        body,
        Body {
            items: vec![
                Item::Attribute {
                    key: "a".into(),
                    value: Value::Number(1.into()),
                    pos: Pos { line: 1, column: 1 },
                },
                Item::Block {
                    kind: "svc".into(),
                    labels: vec!["web".into()],
                    body: Body {
                        items: vec![Item::Attribute {
                            key: "port".into(),
                            value: Value::Number(80.into()),
                            pos: Pos { line: 3, column: 3 },
                        }],
                    },
                    pos: Pos { line: 2, column: 1 },
                },
            ],
        }
    );
    // Columns count characters, not bytes.
    let body = parse("é = \"ü\"  b = 1").unwrap();
    assert_eq!(
        body.items[1].pos(),
        Pos {
            line: 1,
            column: 10
        }
    );
}

#[test]
fn json_input() {
    let src = r#"
{
  "datacenter": "dc1",
  "ports": {"http": 8500, "grpc_tls": -1},
  "service": [{"name": "a"}, {"name": "b"}],
  "float": 1.5,
  "big": 18446744073709551615,
  "nothing": null,
  "empty": {},
  "nested": [[1, 2], []]
}
"#;
    let expected: serde_json::Value = serde_json::from_str(src).unwrap();
    assert_eq!(json_of(src), expected);
    let body = parse(src).unwrap();
    assert_eq!(body.items.len(), 8);
    assert!(matches!(
        body.attribute("ports"),
        Some(Value::Object(Body { items })) if items.len() == 2
    ));
    // Key order is kept.
    let keys: Vec<&str> = body.items.iter().map(Item::key).collect();
    assert_eq!(keys[..3], ["datacenter", "ports", "service"]);
}

#[test]
fn json_input_with_duplicate_keys_matches_serde_json() {
    let src = r#"{"a": 1, "b": 2, "a": 3}"#;
    let expected: serde_json::Value = serde_json::from_str(src).unwrap();
    assert_eq!(json_of(src), expected);
}
