use crate::strconv::quote_str;

/// What Consul puts in front of every filter error
/// (`fmt.Errorf("Failed to create boolean expression evaluator: %v", err)`
/// in go-bexpr's `CreateFilter`). The complete response body Consul sends is
/// `ERROR_PREFIX` followed by the [`FilterError`]'s `Display` text; see
/// [`FilterError::consul_message`].
pub const ERROR_PREFIX: &str = "Failed to create boolean expression evaluator: ";

/// A filter expression that cannot be used.
///
/// `Display` renders exactly the text go-bexpr v0.1.2 produces (the part of
/// Consul's error after [`ERROR_PREFIX`]), except for the variants that have
/// no go-bexpr counterpart ([`FilterError::TooDeep`]) or whose inner text
/// comes from a different regular-expression engine ([`FilterError::Regex`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The expression does not follow the grammar. `message` is pigeon's
    /// report, e.g. `1:4 (3): no match found, expected: "!=", ".", "==", "[",
    /// [ \t\r\n] or [a-zA-Z0-9_]` or `1:9 (8): rule "number": Invalid number
    /// literal` (line:column (byte offset)); several errors are separated by
    /// newlines.
    #[error("{message}")]
    Syntax {
        /// The parser's message.
        message: String,
    },
    /// A selector (or a prefix of it) names no field of the element type.
    #[error("Selector {} is not valid", quote_str(.selector))]
    InvalidSelector {
        /// The selector up to and including the first unknown part, joined with `.`.
        selector: String,
    },
    /// The operator is not supported by the selected field.
    #[error("Invalid match operator \"{operator}\" for selector {}", quote_str(.selector))]
    InvalidOperator {
        /// go-bexpr's operator name (`Equal`, `Not Equal`, `In`, `Not In`,
        /// `Is Empty`, `Is Not Empty`, `Matches`, `Not Matches`).
        operator: &'static str,
        /// The full selector joined with `.`.
        selector: String,
    },
    /// The value cannot be converted to the field's type.
    #[error("Failed to coerce value {} for selector {}: {reason}", quote_str(.value), quote_str(.selector))]
    Coerce {
        /// The value as written (unquoted).
        value: String,
        /// The full selector joined with `.`.
        selector: String,
        /// Go's `strconv` error, e.g. `strconv.ParseInt: parsing "x": invalid syntax`.
        reason: String,
    },
    /// The value of a `matches` operator is not a valid regular expression.
    #[error("Failed to compile regular expression {}: {reason}", quote_str(.pattern))]
    Regex {
        /// The pattern as written (unquoted).
        pattern: String,
        /// In the style of Go's `regexp/syntax` errors:
        /// ``error parsing regexp: missing closing ): `(` ``.
        reason: String,
    },
    /// Parentheses nest deeper than [`crate::MAX_NESTING`].
    #[error("{message}")]
    TooDeep {
        /// Position and description.
        message: String,
    },
}

impl FilterError {
    /// The error text Consul returns for this filter:
    /// [`ERROR_PREFIX`] followed by `self`.
    pub fn consul_message(&self) -> String {
        format!("{ERROR_PREFIX}{self}")
    }
}
