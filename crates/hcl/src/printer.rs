//! Pretty-printing JSON as HCL.

use std::fmt::Write as _;

use serde_json::{Map, Value as Json};

use crate::lexer::{is_ident_continue, is_ident_start};

const INDENT: &str = "  ";
/// Lists of scalars up to this width stay on one line.
const ONE_LINE_LIST_WIDTH: usize = 72;

/// Prints a JSON object as HCL text that [`parse_to_json`](crate::parse_to_json)
/// reads back to an equal value (for values within [`MAX_DEPTH`](crate::MAX_DEPTH)).
///
/// Members whose value is an object and whose key is an identifier are
/// printed as blocks (`ports { http = 8500 }`), the others as attributes;
/// inside lists, objects are printed as object literals. Strings are always
/// quoted; a `${` that starts a complete interpolation sequence is printed
/// as it is, any other `$` before `{` is escaped as `\u0024`.
///
/// A value that is not an object is printed as an HCL value (for instance
/// `[1, 2]`), which is not a valid HCL file on its own.
pub fn to_hcl(value: &Json) -> String {
    let mut out = String::new();
    match value {
        Json::Object(map) => print_body(map, 0, true, &mut out),
        other => {
            print_value(other, 0, &mut out);
            out.push('\n');
        }
    }
    out
}

fn indent(level: usize, out: &mut String) {
    for _ in 0..level {
        out.push_str(INDENT);
    }
}

/// The members of an object, one a line. `blocks`: print object members
/// with identifier keys as blocks.
fn print_body(map: &Map<String, Json>, level: usize, blocks: bool, out: &mut String) {
    for (key, value) in map {
        indent(level, out);
        match value {
            Json::Object(inner) if blocks && is_bare_key(key) => {
                out.push_str(key);
                if inner.is_empty() {
                    out.push_str(" {}\n");
                } else {
                    out.push_str(" {\n");
                    print_body(inner, level + 1, true, out);
                    indent(level, out);
                    out.push_str("}\n");
                }
            }
            _ => {
                print_key(key, out);
                out.push_str(" = ");
                print_value(value, level, out);
                out.push('\n');
            }
        }
    }
}

fn print_key(key: &str, out: &mut String) {
    if is_bare_key(key) {
        out.push_str(key);
    } else {
        print_string(key, out);
    }
}

/// Keys that can be written without quotes. `true`, `false` and `null` are
/// quoted for the benefit of HCL1, which reads them as values.
fn is_bare_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(is_ident_start)
        && chars.all(is_ident_continue)
        && !matches!(key, "true" | "false" | "null")
}

fn is_scalar(value: &Json) -> bool {
    !matches!(value, Json::Array(_) | Json::Object(_))
}

/// A value starting at the current column, whose line is indented `level`.
fn print_value(value: &Json, level: usize, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Json::String(s) => print_string(s, out),
        Json::Array(list) if list.is_empty() => out.push_str("[]"),
        Json::Array(list) => {
            if list.iter().all(is_scalar) {
                let mut line = String::from("[");
                for (i, element) in list.iter().enumerate() {
                    if i > 0 {
                        line.push_str(", ");
                    }
                    print_value(element, level, &mut line);
                }
                line.push(']');
                if line.len() <= ONE_LINE_LIST_WIDTH && !line.contains('\n') {
                    out.push_str(&line);
                    return;
                }
            }
            out.push_str("[\n");
            for element in list {
                indent(level + 1, out);
                print_value(element, level + 1, out);
                out.push_str(",\n");
            }
            indent(level, out);
            out.push(']');
        }
        Json::Object(map) if map.is_empty() => out.push_str("{}"),
        Json::Object(map) => {
            out.push_str("{\n");
            print_body(map, level + 1, false, out);
            indent(level, out);
            out.push('}');
        }
    }
}

/// The length in bytes of the interpolation sequence at the start of `s`
/// (which starts with `${`), if it is complete: the parser keeps such a
/// sequence verbatim up to its matching `}`, on the same line.
fn interpolation_len(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            '\n' => return None,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn print_string(s: &str, out: &mut String) {
    out.push('"');
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("${") {
            if let Some(len) = interpolation_len(rest) {
                out.push_str(&rest[..len]);
                rest = &rest[len..];
                continue;
            }
            // Not a complete sequence: keep the parser from starting one.
            out.push_str("\\u0024");
            rest = &rest[1..];
            continue;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out.push('"');
}
