//! `?filter=` expressions (go-bexpr syntax), evaluated against each element's JSON.

pub use meshgate_filter::{ERROR_PREFIX, Filter, FilterError, Schema, schema};
