//! Error positions and messages, and the nesting limit.

use serde_json::json;

use super::{assert_error, assert_round_trip, error_of, json_of};
use crate::{MAX_DEPTH, parse};

#[test]
fn missing_equals_names_key_and_found_token() {
    let src = "service \"web\" {\n  intentions = \"read\"\n  policy     \"read\"\n}\n";
    let err = error_of(src);
    assert_eq!(
        err.to_string(),
        "At 3:14: expected '=' or '{' after key \"policy\", found \"read\""
    );
    assert_eq!((err.line, err.column), (3, 14));
}

#[test]
fn missing_equals_before_a_number() {
    assert_error(
        "ports {\n  http 8500\n}",
        2,
        8,
        "expected '=' or '{' after key \"http\", found 8500",
    );
}

#[test]
fn missing_equals_followed_by_another_item() {
    // The label-looking token after the key is reported, not the '='
    // further on.
    assert_error(
        "acl {\n  policy \"read\"\n  other = 1\n}",
        2,
        10,
        "expected '=' or '{' after key \"policy\", found \"read\"",
    );
}

#[test]
fn unterminated_strings() {
    assert_error("a = \"abc\nb = 1\n", 1, 5, "unterminated string");
    assert_error("a = 1\nb = \"abc", 2, 5, "unterminated string");
    assert_error("\"key", 1, 1, "unterminated string");
    assert_error("a = \"abc\\", 1, 9, "unterminated string");
}

#[test]
fn unterminated_heredoc() {
    assert_error("x = 1\nval = <<EOF\nfoo\n", 2, 7, "unterminated heredoc");
    assert_error(
        "val = <<EOF\nfoo\nEOFX\n",
        1,
        7,
        "no line holds the closing marker EOF",
    );
    assert_error("val = <<-EOT\n  foo", 1, 7, "unterminated heredoc");
    assert_error(
        "val = <<EOF",
        1,
        12,
        "expected a newline after the heredoc marker EOF",
    );
    assert_error("val = <<EOF x\nEOF\n", 1, 12, "expected a newline");
    assert_error("val = <<\nEOF\n", 1, 9, "expected a heredoc marker");
}

#[test]
fn unterminated_block_comment() {
    assert_error("a = 1\n  /* never closed\n", 2, 3, "unterminated comment");
    assert_error("a = [1, /*", 1, 9, "unterminated comment");
}

#[test]
fn unclosed_and_stray_braces() {
    assert_error(
        "a {\n  b = 1\n",
        3,
        1,
        "expected '}' to close the '{' opened at 1:3, found end of input",
    );
    assert_error(
        "a = 1\n}",
        2,
        1,
        "expected an attribute name or a block type, found '}'",
    );
    assert_error("a = { b = 1", 1, 12, "to close the '{' opened at 1:5");
    assert_error(
        "a { = 1 }",
        1,
        5,
        "expected an attribute name, a block type or '}', found '='",
    );
}

#[test]
fn bad_values() {
    assert_error("a = \n", 2, 1, "expected a value, found end of input");
    assert_error("policy = read", 1, 10, "expected a value, found \"read\"");
    assert_error("a = = 1", 1, 5, "expected a value, found '='");
    assert_error("a = }", 1, 5, "expected a value, found '}'");
    assert_error("a = var.x + 1", 1, 5, "expressions are not supported");
}

#[test]
fn colon_is_not_an_assignment() {
    // HCL1 does not accept `key: value` either.
    assert_error(
        "a: 1",
        1,
        2,
        "expected '=' or '{' after key \"a\", found ':'",
    );
    assert_error("\"a\": 1", 1, 4, "found ':'");
}

#[test]
fn bad_lists() {
    assert_error(
        "a = [1 2]",
        1,
        8,
        "expected ',' or ']' after a list element (the list opened at 1:5), found 2",
    );
    assert_error("a = [1,,2]", 1, 8, "expected a value, found ','");
    assert_error("a = [1, 2", 1, 10, "found end of input");
    assert_error("a = [\n  \"x\"\n  \"y\"\n]", 3, 3, "expected ',' or ']'");
}

#[test]
fn bad_escapes() {
    assert_error("a = \"x\\qy\"", 1, 7, "invalid escape sequence '\\q'");
    assert_error(
        "a = \"\\u12\"",
        1,
        6,
        "'\\u' must be followed by 4 hexadecimal digits",
    );
    assert_error("a = \"\\uD800\"", 1, 6, "not a Unicode character");
    assert_error("a = \"\\U00110000\"", 1, 6, "not a Unicode character");
    assert_error("a = \"\\xff\"", 1, 6, "limited to ASCII");
    assert_error("a = \"\\777\"", 1, 6, "limited to ASCII");
    assert_error("a = \"\\12\"", 1, 6, "three digits");
}

#[test]
fn bad_numbers() {
    assert_error(
        "port = 80s",
        1,
        8,
        "invalid number: unexpected 's' after 80",
    );
    assert_error("mode = 0789", 1, 8, "invalid octal number 0789");
    assert_error("a = 1.", 1, 5, "invalid number");
    assert_error("a = 1.2.3", 1, 5, "invalid number");
    assert_error("a = 1e", 1, 5, "expected digits in the exponent");
    assert_error("a = 0x", 1, 5, "invalid hexadecimal number");
    assert_error("a = 1e999", 1, 5, "number out of range");
    assert_error("a = 0x10000000000000000", 1, 5, "number out of range");
    assert_error("a = -0x8000000000000001", 1, 5, "number out of range");
    assert_eq!(json_of("a = -0x8000000000000000"), json!({"a": i64::MIN}));
    assert_error("a = -", 1, 5, "expected a value, found '-'");
}

#[test]
fn bad_block_headers() {
    assert_error(
        "service \"a\" \"b\" = 1",
        1,
        17,
        "expected '{' after the labels of block \"service\", found '='",
    );
    assert_error(
        "service \"a\" = 1",
        1,
        9,
        "after key \"service\", found \"a\"",
    );
    assert_error("a = 1 / 2", 1, 7, "unexpected '/'");
    assert_error(
        "a = 1 @",
        1,
        7,
        "expected an attribute name or a block type, found '@'",
    );
    assert_error("= 1", 1, 1, "found '='");
    assert_error("a = 1,, b = 2", 1, 7, "found ','");
}

#[test]
fn unterminated_interpolation() {
    assert_error("a = \"${foo\"\nb = 1", 1, 6, "unterminated interpolation");
    assert_error("a = \"x ${", 1, 8, "unterminated interpolation");
}

#[test]
fn long_tokens_are_shortened_in_messages() {
    let long = "x".repeat(100);
    let err = error_of(&format!("a = {long}"));
    assert!(err.message.contains('…'), "{err}");
    assert!(err.message.len() < 150, "{err}");
}

#[test]
fn json_errors_have_positions() {
    assert_error(
        "{\n  \"a\": 1,\n  \"b\" 2\n}",
        3,
        7,
        "invalid JSON: expected `:`",
    );
    assert_error(
        "{\"a\": 1",
        1,
        8,
        "invalid JSON: EOF while parsing an object",
    );
    assert_error("{\"é\": x}", 1, 7, "invalid JSON");
    assert_error(
        "  [1, 2]",
        1,
        3,
        "expected a JSON object at the top level, found an array",
    );
    assert_error("\u{feff}{\"a\" 1}", 1, 7, "expected `:`");
}

#[test]
fn error_display_and_pos() {
    let err = error_of("a = [1 2]");
    assert_eq!(err.pos(), crate::Pos { line: 1, column: 8 });
    assert!(err.to_string().starts_with("At 1:8: "));
}

fn nested_lists(levels: usize) -> String {
    format!("a = {}{}", "[".repeat(levels), "]".repeat(levels))
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    // The top-level object is level 1.
    let json = json_of(&nested_lists(MAX_DEPTH - 1));
    assert_round_trip(&json);
    assert_error(
        &nested_lists(MAX_DEPTH),
        1,
        4 + MAX_DEPTH,
        "nesting too deep",
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = 100_000;
    for src in [
        format!("a = {}", "[".repeat(deep)),
        format!("a = {}", "{ b = ".repeat(deep)),
        "a { ".repeat(deep),
        format!("a = [{}", "{ b { x = [".repeat(deep)),
        format!("k {} {{}}", "\"l\" ".repeat(deep)),
        "[".repeat(deep),
        format!("{{\"a\": {}", "[".repeat(deep)),
    ] {
        let err = parse(&src).unwrap_err();
        assert!(
            err.message.contains("nesting too deep") || err.message.contains("recursion limit"),
            "{err}"
        );
    }
}

#[test]
fn depth_added_by_normalization_counts() {
    // Each level repeats its block, so each adds an array as well as an
    // object: the syntax nests 100 levels, the JSON 200.
    fn repeated(levels: usize) -> String {
        if levels == 0 {
            String::new()
        } else {
            format!("x {{ {} }} x {{}}", repeated(levels - 1))
        }
    }
    let shallow = repeated(60);
    assert_round_trip(&json_of(&shallow));
    let err = error_of(&repeated(100));
    assert!(err.message.contains("nesting too deep"), "{err}");
    assert!(err.message.contains("limit is 128"), "{err}");

    // Labels count too.
    let labels = format!("k {} {{}}", "\"l\" ".repeat(MAX_DEPTH - 2));
    assert_round_trip(&json_of(&labels));
    let labels = format!("k {} {{}}", "\"l\" ".repeat(MAX_DEPTH - 1));
    assert!(error_of(&labels).message.contains("nesting too deep"));
}

#[test]
fn json_input_at_serde_json_depth_limit_round_trips() {
    // The deepest JSON serde_json accepts must also be accepted as HCL,
    // so that anything read as JSON can be printed with to_hcl.
    let mut deepest = 0;
    for depth in 1..=200 {
        let src = format!(
            "{{\"a\": {}1{}}}",
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        );
        if serde_json::from_str::<serde_json::Value>(&src).is_err() {
            break;
        }
        deepest = depth;
        let json = json_of(&src);
        assert_round_trip(&json);
    }
    // serde_json stops at 127 levels, within our limit.
    assert!(deepest >= 100, "serde_json accepted only {deepest} levels");
    assert!(deepest <= MAX_DEPTH);
}
