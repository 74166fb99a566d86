//! Unit tests of the crate.

mod errors;
mod normalize;
mod props;
mod real_files;
mod syntax;

use serde_json::Value as Json;

use crate::{Error, parse_to_json};

/// Parses `src` and returns its normalized JSON, failing the test on error.
#[track_caller]
fn json_of(src: &str) -> Json {
    match parse_to_json(src) {
        Ok(json) => json,
        Err(err) => panic!("{err}\n--- input ---\n{src}"),
    }
}

/// Parses `src`, which must fail, and returns the error.
#[track_caller]
fn error_of(src: &str) -> Error {
    match parse_to_json(src) {
        Ok(json) => panic!("expected an error, got {json}\n--- input ---\n{src}"),
        Err(err) => err,
    }
}

/// Asserts the error of `src` is at `line`:`column` and its message
/// contains `fragment`.
#[track_caller]
fn assert_error(src: &str, line: usize, column: usize, fragment: &str) {
    let err = error_of(src);
    assert_eq!(
        (err.line, err.column),
        (line, column),
        "wrong position for error {err}\n--- input ---\n{src}"
    );
    assert!(
        err.message.contains(fragment),
        "error {err:?} does not mention {fragment:?}"
    );
}

/// Prints `json` with `to_hcl`, parses it back and checks it is unchanged.
#[track_caller]
fn assert_round_trip(json: &Json) {
    let hcl = crate::to_hcl(json);
    match parse_to_json(&hcl) {
        Ok(back) => assert_eq!(&back, json, "--- printed ---\n{hcl}"),
        Err(err) => panic!("{err}\n--- printed ---\n{hcl}"),
    }
}
