//! JSON input, read with `serde_json` and turned into a [`Body`].

use serde_json::Value as Json;

use crate::{Body, Error, Item, Pos, Value};

pub(crate) fn parse_json(src: &str, first_column: usize) -> Result<Body, Error> {
    let json: Json =
        serde_json::from_str(src).map_err(|err| json_error(src, &err, first_column))?;
    match json {
        Json::Object(map) => Ok(object_to_body(map, item_pos(first_column))),
        other => {
            let found = match other {
                Json::Array(_) => "an array",
                _ => "a scalar",
            };
            let start = src.len() - src.trim_start_matches([' ', '\t', '\r', '\n']).len();
            Err(Error::new(
                position_of(src, start, first_column),
                format!("expected a JSON object at the top level, found {found}"),
            ))
        }
    }
}

/// `serde_json` reports no positions for values: items from JSON carry the
/// position of the document's start.
fn item_pos(first_column: usize) -> Pos {
    Pos {
        line: 1,
        column: first_column,
    }
}

fn object_to_body(map: serde_json::Map<String, Json>, pos: Pos) -> Body {
    Body {
        items: map
            .into_iter()
            .map(|(key, value)| Item::Attribute {
                key,
                value: json_to_value(value, pos),
                pos,
            })
            .collect(),
    }
}

fn json_to_value(json: Json, pos: Pos) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => Value::Number(n),
        Json::String(s) => Value::String(s),
        Json::Array(list) => Value::List(list.into_iter().map(|v| json_to_value(v, pos)).collect()),
        Json::Object(map) => Value::Object(object_to_body(map, pos)),
    }
}

/// The position of a byte offset, with columns in characters.
fn position_of(src: &str, offset: usize, first_column: usize) -> Pos {
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut column = before[line_start..].chars().count() + 1;
    if line == 1 {
        column += first_column - 1;
    }
    Pos { line, column }
}

/// Converts a `serde_json` error (byte columns) to an [`Error`] (character
/// columns), without the position suffix of its message.
fn json_error(src: &str, err: &serde_json::Error, first_column: usize) -> Error {
    let text = err.to_string();
    let message = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    if err.classify() == serde_json::error::Category::Eof {
        return Error::new(
            position_of(src, src.len(), first_column),
            format!("invalid JSON: {message}"),
        );
    }
    let line = err.line().max(1);
    // The byte offset of the line's start, then of the column within it.
    let line_start = if line == 1 {
        Some(0)
    } else {
        src.match_indices('\n').nth(line - 2).map(|(i, _)| i + 1)
    };
    let pos = match line_start {
        Some(start) => {
            let line_text = src[start..].split('\n').next().unwrap_or("");
            let mut end = err.column().min(line_text.len());
            while !line_text.is_char_boundary(end) {
                end -= 1;
            }
            // serde_json's column is that of the last byte it read, so a
            // column of 0 is the line's start.
            let column = line_text[..end].chars().count().max(1);
            let column = if line == 1 {
                column + first_column - 1
            } else {
                column
            };
            Pos { line, column }
        }
        None => position_of(src, src.len(), first_column),
    };
    Error::new(pos, format!("invalid JSON: {message}"))
}
