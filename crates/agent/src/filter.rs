//! `?filter=` expressions (go-bexpr syntax), evaluated against each element's JSON.
//! Temporary stand-in until the filter crate lands.

/// Prefix of the 400 body for a bad filter.
pub const ERROR_PREFIX: &str = "Failed to create boolean expression evaluator: ";

/// Valid selectors of one element type.
#[derive(Debug, Clone, Default)]
pub struct Schema;

/// A parsed expression.
#[derive(Debug, Clone)]
pub struct Filter;

impl Filter {
    /// Parses an expression.
    pub fn parse(_expr: &str, _schema: &Schema) -> Result<Filter, String> {
        Err("filtering is not supported yet".into())
    }
    /// Whether `v` matches.
    pub fn matches(&self, _v: &serde_json::Value) -> bool {
        true
    }
}

/// Schema constructors per endpoint.
pub mod schema {
    use super::Schema;
    pub fn catalog_nodes() -> Schema {
        Schema
    }
    pub fn catalog_service_nodes() -> Schema {
        Schema
    }
    pub fn node_services() -> Schema {
        Schema
    }
    pub fn health_checks() -> Schema {
        Schema
    }
    pub fn health_service_entries() -> Schema {
        Schema
    }
    pub fn agent_services() -> Schema {
        Schema
    }
    pub fn agent_checks() -> Schema {
        Schema
    }
}
