//! A reader for the HCL and JSON files that Consul operators actually write:
//! agent configuration files, service definitions, config entries and ACL
//! rules.
//!
//! Consul reads its HCL with the first-generation HCL library (HCL1), while
//! most documentation and tooling today is written in HCL2 style. This crate
//! accepts the common subset of both (plus the HCL1-only forms Consul users
//! depend on), keeps positions for error messages, and normalizes the result
//! to a [`serde_json::Value`] so that the rest of meshgate only ever deals
//! with JSON-shaped data. It is pure Rust, performs no IO, never panics on
//! any input, and bounds its recursion (see [`MAX_DEPTH`]).
//!
//! # Entry points
//!
//! * [`parse`] reads HCL text — or JSON text, when the first character that
//!   is not whitespace is `{` or `[` — into a [`Body`] that keeps every item,
//!   in source order, with its position.
//! * [`to_json`] normalizes a [`Body`] to a JSON object (rules below), and
//!   [`parse_to_json`] does both steps.
//! * [`to_hcl`] pretty-prints a JSON object as HCL that [`parse_to_json`]
//!   reads back to an equal value.
//!
//! ```
//! let json = meshgate_hcl::parse_to_json(
//!     r#"
//! datacenter = "dc1"
//! ports { http = 8500 grpc_tls = -1 }
//! service "web" { policy = "read" }
//! service "api" { policy = "write" }
//! "#,
//! )?;
//! assert_eq!(
//!     json,
//!     serde_json::json!({
//!         "datacenter": "dc1",
//!         "ports": {"http": 8500, "grpc_tls": -1},
//!         "service": {"web": {"policy": "read"}, "api": {"policy": "write"}}
//!     })
//! );
//! let hcl = meshgate_hcl::to_hcl(&json);
//! assert_eq!(meshgate_hcl::parse_to_json(&hcl)?, json);
//!
//! let err = meshgate_hcl::parse("acl {\n  policy \"read\"\n}").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "At 2:10: expected '=' or '{' after key \"policy\", found \"read\""
//! );
//! # Ok::<(), meshgate_hcl::Error>(())
//! ```
//!
//! # Syntax accepted
//!
//! * Attributes `key = value`; keys are identifiers (a letter or `_`, then
//!   letters, digits, `_`, `-`, `.`) or quoted strings.
//! * Blocks `kind { ... }`, `kind "label" { ... }`, `kind "a" "b" { ... }`;
//!   labels may be quoted strings or bare identifiers.
//! * Object literals `{ a = 1, b = "x" }`, with items separated by newlines,
//!   whitespace or commas (a trailing comma is fine). An object literal is a
//!   body, so blocks are allowed inside it, as HCL1 allows:
//!   `Routes = [{ Match { HTTP { PathPrefix = "/admin" } } }]`.
//! * Lists `[1, "x", { ... }, [ ... ]]`: elements are separated by commas,
//!   newlines are free, a trailing comma is fine.
//! * Quoted strings with the escapes `\n \t \r \" \\ \uXXXX \UXXXXXXXX` and
//!   HCL1's `\a \b \f \v \xHH \NNN` (octal; both limited to ASCII).
//!   Interpolation sequences `${ ... }` are *not* evaluated: they are kept
//!   verbatim, backslashes and quotes inside them included, exactly as HCL1
//!   does (nested braces are counted, so `"${lookup(m, "k")}"` is one
//!   string); `$${` is not an escape either, as in HCL1. A string must end
//!   on the line it started on.
//! * Heredocs `<<EOF` and indented heredocs `<<-EOF`. The closing marker may
//!   be indented. The text includes the final newline; `<<-` removes the
//!   smallest indentation (spaces and tabs, each counted as one character)
//!   found on the lines that are not blank, as HCL2 does. Heredoc text is
//!   taken verbatim (no escapes).
//! * Numbers: integers, negative numbers, decimals, exponents, and HCL1's
//!   hexadecimal (`0x1F`) and octal (`0755`, a leading zero) integers
//!   (HCL2 would read `0755` as 755, but Consul reads HCL1).
//!   Integers stay integers (`u64`/`i64`; a decimal integer too large for
//!   those becomes a float, as in `serde_json`), the others are `f64`.
//! * `true`, `false`, `null`.
//! * Comments `#`, `//` and `/* */` wherever whitespace may appear.
//! * Newlines are not significant (as in HCL1): `ports { http = 8500
//!   grpc_tls = -1 }` on one line is fine, and commas may separate items.
//!
//! Not accepted: HCL2 expressions (bare variable references, operators,
//! function calls, `for` expressions), `key: value`, which HCL1 rejects too.
//!
//! # Normalization rules of [`to_json`]
//!
//! A body becomes a JSON object whose keys appear in order of first
//! appearance. For each key, the items with that key (attributes with that
//! name and blocks of that kind) are combined:
//!
//! 1. An attribute `k = v` contributes the value `v` (object values are
//!    normalized recursively with these same rules); an unlabelled block
//!    `k { body }` contributes the object of its body; a labelled block
//!    `k "a" "b" { body }` contributes its body *at the label path* `a`, `b`.
//! 2. The contributions for a key are put in a tree keyed by labels. At each
//!    node of that tree:
//!    * if only labelled blocks go through the node, it is an object with one
//!      member per next label, in order of first appearance — so
//!      `service "a" {..}` and `service "b" {..}` give
//!      `"service": {"a": {..}, "b": {..}}`;
//!    * if exactly one item ends at the node and none goes further, the node
//!      is that item's value — `k "a" "b" {x = 1}` gives
//!      `"k": {"a": {"b": {"x": 1}}}`;
//!    * if several items end at the node and none goes further, the node is
//!      the array of their values in source order — `service {name = "a"}`
//!      twice gives `"service": [{"name": "a"}, {..}]`, `a = 1` and `a = 2`
//!      give `"a": [1, 2]`, and `service "a" {x = 1}` twice gives
//!      `"service": {"a": [{"x": 1}, {"x": 1}]}`;
//!    * if items both end at the node and go further (a mix such as
//!      `service {..}` with `service "a" {..}`), the node is an array in
//!      source order holding each ending item's value, plus one object for
//!      all the labelled continuations, placed where the first of them
//!      appeared: `[{..}, {"a": {..}}]`.
//!
//! JSON input is turned into a body of attributes (JSON objects become
//! object values), so it normalizes back to exactly the JSON it was:
//! `to_json(&parse(json)?) == serde_json::from_str(json)?` for objects.
//!
//! # Limits
//!
//! Nesting is limited to [`MAX_DEPTH`] levels of the *normalized* JSON
//! (the top-level object is level 1; every object, array, and every level
//! added by block labels or by the arrays of repeated keys counts). JSON
//! input is also held to `serde_json`'s own limit (127 levels), which is
//! within this one. Deeper input is an error, never a stack overflow. This
//! guarantees that anything [`parse`] accepts can be printed with
//! [`to_hcl`] and read back.

#![forbid(unsafe_code)]

mod json;
mod lexer;
mod normalize;
mod parser;
mod printer;

#[cfg(test)]
mod tests;

use std::fmt;

pub use normalize::to_json;
pub use printer::to_hcl;

/// The deepest nesting of the normalized JSON that [`parse`] accepts.
///
/// The top-level object counts as one level; so does every object and array
/// inside it, every label of a block, and the array made when a key repeats.
pub const MAX_DEPTH: usize = 128;

/// A position in the source text: 1-based line and column. Columns count
/// Unicode characters (a tab counts as one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pos {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Pos {
    /// The position of the first character of a file.
    pub const START: Pos = Pos { line: 1, column: 1 };
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A syntax error, with the position where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("At {line}:{column}: {message}")]
pub struct Error {
    /// 1-based line of the error.
    pub line: usize,
    /// 1-based column of the error, in characters.
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl Error {
    pub(crate) fn new(pos: Pos, message: impl Into<String>) -> Error {
        Error {
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }

    /// The position of the error.
    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }
}

/// A sequence of attributes and blocks: a whole file, the inside of a block,
/// or the inside of an object literal. Items stay in source order and
/// repeated keys are all kept; [`to_json`] combines them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Body {
    /// The items, in source order.
    pub items: Vec<Item>,
}

impl Body {
    /// The items whose key (attribute name or block kind) is `key`.
    pub fn items_named<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Item> + 'a {
        self.items.iter().filter(move |item| item.key() == key)
    }

    /// The value of the last attribute named `key`, if any.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.items.iter().rev().find_map(|item| match item {
            Item::Attribute { key: k, value, .. } if k == key => Some(value),
            _ => None,
        })
    }
}

/// One item of a [`Body`].
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `key = value`.
    Attribute {
        /// The attribute name.
        key: String,
        /// Its value.
        value: Value,
        /// Where the key starts.
        pos: Pos,
    },
    /// `kind "label"... { body }`.
    Block {
        /// The block type.
        kind: String,
        /// The labels, possibly none.
        labels: Vec<String>,
        /// The block's contents.
        body: Body,
        /// Where the block type starts.
        pos: Pos,
    },
}

impl Item {
    /// The attribute name or block kind.
    pub fn key(&self) -> &str {
        match self {
            Item::Attribute { key, .. } => key,
            Item::Block { kind, .. } => kind,
        }
    }

    /// Where the item starts. Items read from JSON input carry the position
    /// of the document's first character, as `serde_json` reports none.
    pub fn pos(&self) -> Pos {
        match self {
            Item::Attribute { pos, .. } | Item::Block { pos, .. } => *pos,
        }
    }
}

/// A value: the right-hand side of an attribute, or an element of a list.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer or a float.
    Number(serde_json::Number),
    /// A quoted string or heredoc, with escapes decoded.
    String(String),
    /// `[ ... ]`.
    List(Vec<Value>),
    /// `{ ... }`: an object literal, which is a body (it may hold blocks and
    /// repeated keys).
    Object(Body),
}

impl Value {
    /// The normalized JSON form of this value (see [`to_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        normalize::value_to_json(self)
    }
}

/// Parses HCL text, or JSON text when the first character that is not
/// whitespace (after an optional byte-order mark) is `{` or `[`.
///
/// JSON input must be an object; it becomes a body of attributes, JSON
/// objects becoming [`Value::Object`] values.
pub fn parse(src: &str) -> Result<Body, Error> {
    // A byte-order mark is skipped, but still occupies column 1.
    let (src, first_column) = match src.strip_prefix('\u{feff}') {
        Some(rest) => (rest, 2),
        None => (src, 1),
    };
    let body = match src
        .trim_start_matches([' ', '\t', '\r', '\n'])
        .chars()
        .next()
    {
        Some('{') | Some('[') => json::parse_json(src, first_column)?,
        _ => parser::parse_hcl(src, first_column)?,
    };
    if let Some((depth, pos)) = normalize::too_deep(&body, MAX_DEPTH) {
        return Err(Error::new(
            pos,
            format!(
                "nesting too deep: the normalized JSON would have {depth} levels, the limit is {MAX_DEPTH}"
            ),
        ));
    }
    Ok(body)
}

/// [`parse`], then [`to_json`].
pub fn parse_to_json(src: &str) -> Result<serde_json::Value, Error> {
    parse(src).map(|body| to_json(&body))
}
