//! Unit tests of the crate, by topic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod decoding;
mod intentions;
mod kinds;
mod output;
mod validation;

use serde_json::Value;

use crate::{ConfigEntry, decode, parse_file_text};

/// Decodes HCL or JSON text, panicking on failure.
fn file(text: &str) -> ConfigEntry {
    parse_file_text(text).unwrap_or_else(|e| panic!("decode failed: {e}\n{text}"))
}

/// Decodes JSON, panicking on failure.
fn json(v: Value) -> ConfigEntry {
    decode(v.clone()).unwrap_or_else(|e| panic!("decode failed: {e}\n{v}"))
}

/// Decodes, normalizes and validates JSON; the validation error text.
fn invalid(v: Value) -> String {
    let mut e = json(v);
    e.normalize();
    match e.validate() {
        Ok(w) => panic!("expected a validation error, got warnings {w:?}"),
        Err(err) => err.to_string(),
    }
}

/// Decodes, normalizes and validates JSON; the warnings.
fn valid(v: Value) -> Vec<String> {
    let mut e = json(v);
    e.normalize();
    e.validate()
        .unwrap_or_else(|err| panic!("unexpected validation error: {err}"))
}

/// The decode error text of JSON.
fn decode_err(v: Value) -> String {
    decode(v).expect_err("expected a decode error").to_string()
}
