//! Validation errors with Consul's formatting.

use std::collections::BTreeMap;
use std::fmt;

/// Maximum number of `Meta` pairs.
pub const META_MAX_KEY_PAIRS: usize = 64;
/// Maximum length of a `Meta` key.
pub const META_KEY_MAX_LENGTH: usize = 128;
/// Maximum length of a `Meta` value (and of an intention description).
pub const META_VALUE_MAX_LENGTH: usize = 512;

/// A config entry that failed validation.
///
/// Consul returns either a plain error or a `go-multierror` list, depending
/// on the check; [`Display`](fmt::Display) reproduces the text exactly (this
/// is the body of the HTTP 500 a failed `PUT /v1/config` answers with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    errors: Vec<String>,
    multi: bool,
}

impl ValidationError {
    /// A plain error.
    pub fn single(msg: impl Into<String>) -> ValidationError {
        ValidationError {
            errors: vec![msg.into()],
            multi: false,
        }
    }

    /// A multierror (printed as `N error(s) occurred:` ...).
    pub fn multi(errors: Vec<String>) -> ValidationError {
        ValidationError {
            errors,
            multi: true,
        }
    }

    /// The individual messages.
    pub fn messages(&self) -> &[String] {
        &self.errors
    }

    /// Whether Consul reports this as a multierror list.
    pub fn is_multi(&self) -> bool {
        self.multi
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.multi {
            f.write_str(&multi_text(&self.errors))
        } else {
            f.write_str(self.errors.first().map(String::as_str).unwrap_or(""))
        }
    }
}

impl std::error::Error for ValidationError {}

/// `go-multierror`'s default format.
pub fn multi_text(errors: &[String]) -> String {
    if errors.len() == 1 {
        return format!("1 error occurred:\n\t* {}\n\n", errors[0]);
    }
    let points: Vec<String> = errors.iter().map(|e| format!("* {e}")).collect();
    format!(
        "{} errors occurred:\n\t{}\n\n",
        errors.len(),
        points.join("\n\t")
    )
}

/// Consul's `validateConfigEntryMeta` (keys visited in sorted order; Go's
/// map order is random).
pub(crate) fn meta_errors(meta: &BTreeMap<String, String>) -> Vec<String> {
    let mut errs = Vec::new();
    if meta.len() > META_MAX_KEY_PAIRS {
        errs.push(format!(
            "Meta exceeds maximum element count {META_MAX_KEY_PAIRS}"
        ));
    }
    for (k, v) in meta {
        if k.len() > META_KEY_MAX_LENGTH {
            errs.push(format!(
                "Meta key {} exceeds maximum length {META_KEY_MAX_LENGTH}",
                crate::decode::go_quote(k)
            ));
        }
        if v.len() > META_VALUE_MAX_LENGTH {
            errs.push(format!(
                "Meta value for key {} exceeds maximum length {META_VALUE_MAX_LENGTH}",
                crate::decode::go_quote(k)
            ));
        }
    }
    errs
}

/// The meta check as an error on its own (a multierror, as Consul returns
/// it when a kind's `Validate` returns it directly).
pub(crate) fn meta_result(meta: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    let errs = meta_errors(meta);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ValidationError::multi(errs))
    }
}

/// `Ok` when `errs` is empty, otherwise a multierror.
pub(crate) fn multi_result(errs: Vec<String>) -> Result<(), ValidationError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ValidationError::multi(errs))
    }
}
