#![forbid(unsafe_code)]
//! Consul's `?filter=` expressions.
//!
//! Consul evaluates the `filter` query parameter of its list endpoints with
//! [go-bexpr](https://github.com/hashicorp/go-bexpr) **v0.1.2** (the version
//! it pins), against each element of the result. This crate implements the
//! same language and semantics over the JSON form of the elements
//! ([`serde_json::Value`] with Consul's PascalCase keys).
//!
//! ```
//! use meshgate_filter::{schema, Filter};
//! use serde_json::json;
//!
//! let f = Filter::parse(r#"Service.Tags contains "v1" and Checks.Status == passing"#,
//!                       schema::health_service_entries()).unwrap();
//! assert!(f.matches(&json!({
//!     "Service": {"Service": "web", "Tags": ["v1"]},
//!     "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]
//! })));
//! ```
//!
//! # Grammar
//!
//! ```text
//! Expression  := Or
//! Or          := And ( "or" And )*                 (lowest precedence)
//! And         := Not ( "and" Not )*
//! Not         := "not" Not | "(" Or ")" | Match    ("not not X" is X)
//! Match       := Selector ( "==" | "!=" ) Value
//!              | Selector ( "contains" | "not contains" | "matches" | "not matches" ) Value
//!              | Selector ( "is empty" | "is not empty" )
//!              | Value ( "in" | "not in" ) Selector
//! Selector    := Identifier ( "." Identifier | "[" String "]" )*
//! Identifier  := [a-zA-Z] [a-zA-Z0-9_]*
//! Value       := Selector | Number | String        (a selector value is its text: `a.b` -> "a.b")
//! Number      := "-"? ( "0" | [1-9][0-9]* ) ( "." [0-9]+ )?   (must be followed by space, ")" or the end)
//! String      := '"' Go-escaped text '"' | '`' raw text '`'
//! ```
//!
//! Keywords are lower case and must be separated by whitespace; `==` and
//! `!=` need none. The whole expression may be wrapped in parentheses and
//! whitespace (space, tab, CR, LF) is free between tokens. Quoted strings
//! never contain their quote character (there is no `\"`); double-quoted
//! strings understand Go escapes (`\n`, `\t`, `\x41`, `\u00e9`, `\101`, ...),
//! back-quoted ones are raw. Map keys that are not identifiers are written
//! `Meta["key with spaces"]` (or with back quotes); `Meta.key` works for
//! identifier-like keys. There is no other selector syntax in this version
//! of go-bexpr (no JSON-pointer `"/a/b"` selectors, no list indexing, no
//! `any`/`all` collection expressions).
//!
//! An empty expression is no filter at all (every element matches), as in
//! Consul.
//!
//! # Semantics
//!
//! * Selectors are checked against a [`Schema`] when the filter is parsed,
//!   case-sensitively, by Go field name: an unknown one is the error
//!   `Selector "Nodes" is not valid`, an operator the field does not support
//!   is `Invalid match operator "Is Empty" for selector "Node"`.
//! * Values are converted to the field's type when the filter is parsed
//!   (`Port == 80` and `Port == "80"` are the same; `Port == "x"` fails with
//!   `Failed to coerce value "x" for selector "Port": strconv.ParseInt:
//!   parsing "x": invalid syntax`). Strings compare byte-wise and case-
//!   sensitively; `in`/`contains` on a string is a substring test, on a list
//!   an element test and on a map a key test.
//! * A selector that goes *through* a list of objects (`Checks.Status ==
//!   passing`) matches when any element matches; the operator is applied per
//!   element, so `Checks.Status != passing` means "some check is not
//!   passing". An empty list never matches through.
//! * A missing map key (`Meta.env == prod` on an element without `env`) is
//!   false for `==`, `in` and `is not empty` and true for every other
//!   operator (`!=`, `not in`, `is empty`, and — faithfully to go-bexpr
//!   v0.1.2 — `matches` and `not matches`).
//! * Fields absent from (or `null` in) the JSON read as the zero value of
//!   their type, as an unset Go struct field would: `""`, `0`, `false`, an
//!   empty list or map.
//! * `matches` patterns follow Go's `regexp` (RE2) syntax and semantics:
//!   they run on Rust's `regex` crate after a translation that keeps Go's
//!   meaning (ASCII-only `\d \w \s \b`, literal `{` where no repeat
//!   parses, `\Q..\E`, octal escapes, duplicate group names) and Go's
//!   rejections (`a**`, repeat counts above 1000, flags other than `imsU`,
//!   escapes Go does not know), with Go's error texts.
//! * Parentheses may nest [`MAX_NESTING`] deep (go-bexpr has no limit);
//!   `and`/`or`/`not` chains may be of any length.
//!
//! Error texts are go-bexpr's (see [`FilterError`]); Consul prefixes them
//! with [`ERROR_PREFIX`] in its response body.

mod error;
mod eval;
mod parser;
mod regex_go;
pub mod schema;
mod strconv;

use serde::Serialize;
use serde_json::Value;

pub use error::{ERROR_PREFIX, FilterError};
pub use parser::MAX_NESTING;
pub use schema::{FieldKind, FieldSpec, Schema};

/// A validated filter expression, ready to be applied to many elements.
#[derive(Debug, Clone)]
pub struct Filter {
    expression: String,
    root: Option<eval::Node>,
}

impl Filter {
    /// Parse `expr` and validate it against `schema` (selectors, operators,
    /// values and regular expressions are all checked here, so
    /// [`Filter::matches`] cannot fail). An empty `expr` gives a filter that
    /// matches everything.
    pub fn parse(expr: &str, schema: &Schema) -> Result<Filter, FilterError> {
        if expr.is_empty() {
            return Ok(Filter {
                expression: String::new(),
                root: None,
            });
        }
        let parsed = parser::parse(expr).map_err(|e| match e {
            parser::ParseError::Syntax(message) => FilterError::Syntax { message },
            parser::ParseError::TooDeep(message) => FilterError::TooDeep { message },
        })?;
        let root = eval::compile(&parsed, &schema.root)?;
        Ok(Filter {
            expression: expr.to_string(),
            root: Some(root),
        })
    }

    /// The expression this filter was parsed from.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// True for the empty expression, which matches every element.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// Whether `item` (one element of a list result, as JSON) is kept.
    pub fn matches(&self, item: &Value) -> bool {
        self.root.as_ref().is_none_or(|root| root.eval(item))
    }

    /// [`Filter::matches`] on the JSON serialization of `item`.
    pub fn matches_serialize<T: Serialize + ?Sized>(
        &self,
        item: &T,
    ) -> Result<bool, serde_json::Error> {
        if self.root.is_none() {
            return Ok(true);
        }
        Ok(self.matches(&serde_json::to_value(item)?))
    }

    /// Filter a JSON result the way Consul filters its results: an array
    /// keeps the elements that match, an object (such as the maps returned
    /// by `/v1/agent/services` and `/v1/agent/checks`) keeps the entries
    /// whose *value* matches; any other value is returned unchanged.
    pub fn filter_json(&self, value: Value) -> Value {
        if self.root.is_none() {
            return value;
        }
        match value {
            Value::Array(items) => {
                Value::Array(items.into_iter().filter(|i| self.matches(i)).collect())
            }
            Value::Object(map) => {
                Value::Object(map.into_iter().filter(|(_, v)| self.matches(v)).collect())
            }
            other => other,
        }
    }
}

/// Keep the elements of `items` whose JSON serialization matches `filter`
/// (`None` keeps everything).
pub fn filter_items<T: Serialize>(
    filter: Option<&Filter>,
    items: Vec<T>,
) -> Result<Vec<T>, serde_json::Error> {
    let Some(filter) = filter.filter(|f| !f.is_empty()) else {
        return Ok(items);
    };
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        if filter.matches_serialize(&item)? {
            kept.push(item);
        }
    }
    Ok(kept)
}
