//! Which selectors a filter may use, per endpoint element type.
//!
//! Consul (through go-bexpr v0.1.2) derives the valid selectors of an
//! endpoint by reflecting over the Go struct that is filtered: every exported
//! field not tagged `bexpr:"-"` is selectable under its Go field name, maps
//! with string keys accept any key below them, and slices of structs expose
//! the element's fields. A [`Schema`] is the same information written down
//! explicitly, together with the JSON key under which each field appears in
//! the response (normally identical to the field name).
//!
//! The ready-made constructors in this module describe the element types of
//! the Consul endpoints that accept `?filter=`; their field lists follow the
//! Go structs of current Consul releases (which is a superset of the
//! "Filtering" tables of the API documentation).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use crate::parser::MatchOp;

/// One selectable field of an element type.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    name: String,
    json_key: Option<String>,
    kind: FieldKind,
}

/// The shape of a field, which decides the operators it supports and how
/// match values are coerced (mirroring go-bexpr's reflection rules).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// A string: `==`, `!=`, `in`/`contains` (substring), `matches` and
    /// their negations.
    String,
    /// A boolean: `==`, `!=`; values are parsed like Go's `strconv.ParseBool`.
    Bool,
    /// A signed integer (Go `int`): `==`, `!=`; values are parsed like Go's
    /// `strconv.ParseInt(v, 0, 64)` (so `0x50`, `0o17`, `1_000` are accepted).
    Int,
    /// An unsigned integer (Go `uint64`): `==`, `!=`.
    Uint,
    /// A floating point number: `==`, `!=`.
    Float,
    /// A list of strings: `in`/`contains` (element equality), `is empty`
    /// and their negations.
    StringList,
    /// A map of strings to strings: `in`/`contains` (key presence), `is
    /// empty` and negations; any key below it selects a string value
    /// (`Meta.key`, `Meta["any key"]`).
    StringMap,
    /// A nested object: not matchable itself, its fields are selectable.
    Object(Vec<FieldSpec>),
    /// A list of objects: `is empty`/`is not empty`; a selector continuing
    /// below it matches when *any* element matches.
    ObjectList(Vec<FieldSpec>),
    /// A map of strings to objects: `in` (key presence) and `is empty`;
    /// any key below it selects an object with the given fields.
    ObjectMap(Vec<FieldSpec>),
}

impl FieldSpec {
    /// A field selected as `name` and read from the JSON key `name`.
    pub fn new(name: impl Into<String>, kind: FieldKind) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            json_key: None,
            kind,
        }
    }

    /// Read the field from a JSON key that differs from its selector name.
    #[must_use]
    pub fn with_json_key(mut self, key: impl Into<String>) -> FieldSpec {
        self.json_key = Some(key.into());
        self
    }

    /// Shorthand for [`FieldKind::String`].
    pub fn string(name: impl Into<String>) -> FieldSpec {
        FieldSpec::new(name, FieldKind::String)
    }
    /// Shorthand for [`FieldKind::Bool`].
    pub fn bool(name: impl Into<String>) -> FieldSpec {
        FieldSpec::new(name, FieldKind::Bool)
    }
    /// Shorthand for [`FieldKind::Int`].
    pub fn int(name: impl Into<String>) -> FieldSpec {
        FieldSpec::new(name, FieldKind::Int)
    }
    /// Shorthand for [`FieldKind::Uint`].
    pub fn uint(name: impl Into<String>) -> FieldSpec {
        FieldSpec::new(name, FieldKind::Uint)
    }
    /// Shorthand for [`FieldKind::Float`].
    pub fn float(name: impl Into<String>) -> FieldSpec {
        FieldSpec::new(name, FieldKind::Float)
    }
    /// Shorthand for [`FieldKind::StringList`].
    pub fn string_list(name: impl Into<String>) -> FieldSpec {
        FieldSpec::new(name, FieldKind::StringList)
    }
    /// Shorthand for [`FieldKind::StringMap`].
    pub fn string_map(name: impl Into<String>) -> FieldSpec {
        FieldSpec::new(name, FieldKind::StringMap)
    }
    /// Shorthand for [`FieldKind::Object`].
    pub fn object(name: impl Into<String>, fields: Vec<FieldSpec>) -> FieldSpec {
        FieldSpec::new(name, FieldKind::Object(fields))
    }
    /// Shorthand for [`FieldKind::ObjectList`].
    pub fn object_list(name: impl Into<String>, fields: Vec<FieldSpec>) -> FieldSpec {
        FieldSpec::new(name, FieldKind::ObjectList(fields))
    }
    /// Shorthand for [`FieldKind::ObjectMap`].
    pub fn object_map(name: impl Into<String>, fields: Vec<FieldSpec>) -> FieldSpec {
        FieldSpec::new(name, FieldKind::ObjectMap(fields))
    }

    /// The selector name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The JSON key the value is read from.
    pub fn json_key(&self) -> &str {
        self.json_key.as_deref().unwrap_or(&self.name)
    }

    /// The field's shape.
    pub fn kind(&self) -> &FieldKind {
        &self.kind
    }
}

/// Compiled shape of a field.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    String,
    Bool,
    Int,
    Uint,
    Float,
    StringList,
    StringMap,
    Object(Arc<Fields>),
    ObjectList(Arc<Fields>),
    ObjectMap(Arc<Fields>),
}

#[derive(Debug, Clone)]
pub(crate) struct FieldCfg {
    pub(crate) json_key: String,
    pub(crate) shape: Shape,
}

#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub(crate) by_name: HashMap<String, FieldCfg>,
}

impl Fields {
    fn compile(specs: &[FieldSpec]) -> Arc<Fields> {
        let mut by_name = HashMap::with_capacity(specs.len());
        for spec in specs {
            let shape = match &spec.kind {
                FieldKind::String => Shape::String,
                FieldKind::Bool => Shape::Bool,
                FieldKind::Int => Shape::Int,
                FieldKind::Uint => Shape::Uint,
                FieldKind::Float => Shape::Float,
                FieldKind::StringList => Shape::StringList,
                FieldKind::StringMap => Shape::StringMap,
                FieldKind::Object(f) => Shape::Object(Fields::compile(f)),
                FieldKind::ObjectList(f) => Shape::ObjectList(Fields::compile(f)),
                FieldKind::ObjectMap(f) => Shape::ObjectMap(Fields::compile(f)),
            };
            by_name.insert(
                spec.name.clone(),
                FieldCfg {
                    json_key: spec.json_key().to_string(),
                    shape,
                },
            );
        }
        Arc::new(Fields { by_name })
    }
}

impl Shape {
    /// go-bexpr's `SupportedOperations` for a field of this shape.
    pub(crate) fn supports(&self, op: MatchOp) -> bool {
        use MatchOp::*;
        match self {
            Shape::String => matches!(op, Equal | NotEqual | In | NotIn | Matches | NotMatches),
            Shape::Bool | Shape::Int | Shape::Uint | Shape::Float => matches!(op, Equal | NotEqual),
            Shape::StringList | Shape::StringMap | Shape::ObjectMap(_) => {
                matches!(op, In | NotIn | IsEmpty | IsNotEmpty)
            }
            Shape::ObjectList(_) => matches!(op, IsEmpty | IsNotEmpty),
            Shape::Object(_) => false,
        }
    }

    fn operations(&self) -> Vec<&'static str> {
        use MatchOp::*;
        // The order go-bexpr lists them in (and Consul's docs copy).
        let order: &[MatchOp] = match self {
            Shape::StringMap | Shape::ObjectMap(_) => &[IsEmpty, IsNotEmpty, In, NotIn],
            _ => &[
                Equal, NotEqual, In, NotIn, IsEmpty, IsNotEmpty, Matches, NotMatches,
            ],
        };
        order
            .iter()
            .filter(|op| self.supports(**op))
            .map(|op| op.go_name())
            .collect()
    }
}

/// The selectors that are valid for one endpoint's element type.
#[derive(Debug, Clone)]
pub struct Schema {
    pub(crate) root: Arc<Fields>,
    specs: Vec<FieldSpec>,
}

impl Schema {
    /// A schema whose top-level fields are `fields`. A later spec with the
    /// same name replaces an earlier one.
    pub fn new(fields: &[FieldSpec]) -> Schema {
        Schema {
            root: Fields::compile(fields),
            specs: fields.to_vec(),
        }
    }

    /// The top-level field specs.
    pub fn fields(&self) -> &[FieldSpec] {
        &self.specs
    }

    /// Every selector with the operations it supports, in the format of the
    /// "Filtering" tables of Consul's API documentation (`<any>` stands for
    /// an arbitrary map key), sorted by selector.
    pub fn selectors(&self) -> Vec<(String, Vec<&'static str>)> {
        fn walk(fields: &Fields, prefix: &str, out: &mut Vec<(String, Vec<&'static str>)>) {
            for (name, cfg) in &fields.by_name {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                walk_shape(&cfg.shape, &path, out);
            }
        }
        fn walk_shape(shape: &Shape, path: &str, out: &mut Vec<(String, Vec<&'static str>)>) {
            let ops = shape.operations();
            if !ops.is_empty() {
                out.push((path.to_string(), ops));
            }
            match shape {
                Shape::Object(f) | Shape::ObjectList(f) => walk(f, path, out),
                Shape::ObjectMap(f) => walk(f, &format!("{path}.<any>"), out),
                Shape::StringMap => walk_shape(&Shape::String, &format!("{path}.<any>"), out),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.root, "", &mut out);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

// ----- Consul element types ------------------------------------------------

fn weights() -> Vec<FieldSpec> {
    vec![FieldSpec::int("Passing"), FieldSpec::int("Warning")]
}

fn service_address() -> Vec<FieldSpec> {
    vec![FieldSpec::string("Address"), FieldSpec::int("Port")]
}

fn mesh_gateway() -> FieldSpec {
    FieldSpec::object("MeshGateway", vec![FieldSpec::string("Mode")])
}

fn upstream() -> Vec<FieldSpec> {
    vec![
        FieldSpec::string("DestinationType"),
        FieldSpec::string("DestinationNamespace"),
        FieldSpec::string("DestinationPartition"),
        FieldSpec::string("DestinationPeer"),
        FieldSpec::string("DestinationName"),
        FieldSpec::string("Datacenter"),
        FieldSpec::string("LocalBindAddress"),
        FieldSpec::int("LocalBindPort"),
        FieldSpec::string("LocalBindSocketPath"),
        FieldSpec::string("LocalBindSocketMode"),
        mesh_gateway(),
    ]
}

/// `ConnectProxyConfig` (`Config` is `bexpr:"-"`).
fn connect_proxy_config() -> Vec<FieldSpec> {
    vec![
        FieldSpec::object_list(
            "EnvoyExtensions",
            vec![
                FieldSpec::string("Name"),
                FieldSpec::bool("Required"),
                FieldSpec::string("ConsulVersion"),
                FieldSpec::string("EnvoyVersion"),
            ],
        ),
        FieldSpec::string("DestinationServiceName"),
        FieldSpec::string("DestinationServiceID"),
        FieldSpec::string("LocalServiceAddress"),
        FieldSpec::int("LocalServicePort"),
        FieldSpec::string("LocalServiceSocketPath"),
        FieldSpec::string("Mode"),
        FieldSpec::object_list("Upstreams", upstream()),
        mesh_gateway(),
        FieldSpec::object(
            "Expose",
            vec![
                FieldSpec::bool("Checks"),
                FieldSpec::object_list(
                    "Paths",
                    vec![
                        FieldSpec::int("ListenerPort"),
                        FieldSpec::string("Path"),
                        FieldSpec::int("LocalPathPort"),
                        FieldSpec::string("Protocol"),
                        FieldSpec::bool("ParsedFromCheck"),
                    ],
                ),
            ],
        ),
        FieldSpec::object(
            "TransparentProxy",
            vec![
                FieldSpec::int("OutboundListenerPort"),
                FieldSpec::bool("DialedDirectly"),
            ],
        ),
        FieldSpec::object(
            "AccessLogs",
            vec![
                FieldSpec::bool("Enabled"),
                FieldSpec::bool("DisableListenerLogs"),
                FieldSpec::string("Type"),
                FieldSpec::string("Path"),
                FieldSpec::string("JSONFormat"),
                FieldSpec::string("TextFormat"),
            ],
        ),
    ]
}

/// `ServiceConnect` (`SidecarService` and `PeerMeta` are `bexpr:"-"`).
fn service_connect() -> Vec<FieldSpec> {
    vec![FieldSpec::bool("Native")]
}

/// `structs.Node` (`Locality` and the raft indexes are `bexpr:"-"`).
fn node_fields() -> Vec<FieldSpec> {
    vec![
        FieldSpec::string("ID"),
        FieldSpec::string("Node"),
        FieldSpec::string("Partition"),
        FieldSpec::string("PeerName"),
        FieldSpec::string("Address"),
        FieldSpec::string("Datacenter"),
        FieldSpec::string_map("TaggedAddresses"),
        FieldSpec::string_map("Meta"),
    ]
}

/// `structs.NodeService` / `api.AgentService`.
fn node_service_fields() -> Vec<FieldSpec> {
    vec![
        FieldSpec::string("Kind"),
        FieldSpec::string("ID"),
        FieldSpec::string("Service"),
        FieldSpec::string_list("Tags"),
        FieldSpec::string("Address"),
        FieldSpec::object_map("TaggedAddresses", service_address()),
        FieldSpec::string_map("Meta"),
        FieldSpec::int("Port"),
        FieldSpec::string("SocketPath"),
        FieldSpec::object("Weights", weights()),
        FieldSpec::bool("EnableTagOverride"),
        FieldSpec::object("Proxy", connect_proxy_config()),
        FieldSpec::object("Connect", service_connect()),
        FieldSpec::string("PeerName"),
    ]
}

/// `structs.ServiceNode`.
fn service_node_fields() -> Vec<FieldSpec> {
    vec![
        FieldSpec::string("ID"),
        FieldSpec::string("Node"),
        FieldSpec::string("Address"),
        FieldSpec::string("Datacenter"),
        FieldSpec::string_map("TaggedAddresses"),
        FieldSpec::string_map("NodeMeta"),
        FieldSpec::string("ServiceKind"),
        FieldSpec::string("ServiceID"),
        FieldSpec::string("ServiceName"),
        FieldSpec::string_list("ServiceTags"),
        FieldSpec::string("ServiceAddress"),
        FieldSpec::object_map("ServiceTaggedAddresses", service_address()),
        FieldSpec::object("ServiceWeights", weights()),
        FieldSpec::string_map("ServiceMeta"),
        FieldSpec::int("ServicePort"),
        FieldSpec::string("ServiceSocketPath"),
        FieldSpec::bool("ServiceEnableTagOverride"),
        FieldSpec::object("ServiceProxy", connect_proxy_config()),
        FieldSpec::object("ServiceConnect", service_connect()),
        FieldSpec::string("PeerName"),
    ]
}

/// `structs.HealthCheck` (`Definition` is `bexpr:"-"`).
fn health_check_fields() -> Vec<FieldSpec> {
    vec![
        FieldSpec::string("Node"),
        FieldSpec::string("CheckID"),
        FieldSpec::string("Name"),
        FieldSpec::string("Status"),
        FieldSpec::string("Notes"),
        FieldSpec::string("Output"),
        FieldSpec::string("ServiceID"),
        FieldSpec::string("ServiceName"),
        FieldSpec::string_list("ServiceTags"),
        FieldSpec::string("Type"),
        FieldSpec::string("Interval"),
        FieldSpec::string("Timeout"),
        FieldSpec::int("ExposedPort"),
        FieldSpec::string("PeerName"),
    ]
}

macro_rules! static_schema {
    ($(#[$doc:meta])* $name:ident => $fields:expr) => {
        $(#[$doc])*
        pub fn $name() -> &'static Schema {
            static SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema::new(&$fields));
            &SCHEMA
        }
    };
}

static_schema! {
    /// Elements of `GET /v1/catalog/nodes` (`structs.Node`).
    catalog_nodes => node_fields()
}

static_schema! {
    /// Elements of `GET /v1/catalog/service/:service` and
    /// `GET /v1/catalog/connect/:service` (`structs.ServiceNode`).
    catalog_service_nodes => service_node_fields()
}

static_schema! {
    /// Service instances of `GET /v1/catalog/services`: the filter runs on
    /// each `structs.ServiceNode` before they are grouped by name.
    catalog_services => service_node_fields()
}

static_schema! {
    /// Values of the `Services` map of `GET /v1/catalog/node/:node` and
    /// elements of the `Services` list of `GET /v1/catalog/node-services/:node`
    /// (`structs.NodeService`).
    catalog_node_services => node_service_fields()
}

static_schema! {
    /// Elements of `GET /v1/health/node/:node`, `/v1/health/checks/:service`
    /// and `/v1/health/state/:state` (`structs.HealthCheck`).
    health_checks => health_check_fields()
}

static_schema! {
    /// Elements of `GET /v1/health/service/:service`,
    /// `/v1/health/connect/:service` and `/v1/health/ingress/:service`
    /// (`structs.CheckServiceNode`: `Node`, `Service`, `Checks`).
    health_service_entries => [
        FieldSpec::object("Node", node_fields()),
        FieldSpec::object("Service", node_service_fields()),
        FieldSpec::object_list("Checks", health_check_fields()),
    ]
}

static_schema! {
    /// Values of `GET /v1/agent/services` (`api.AgentService`, whose filter
    /// fields are kept identical to `structs.NodeService`).
    agent_services => node_service_fields()
}

static_schema! {
    /// Values of `GET /v1/agent/checks` (`structs.HealthCheck`).
    agent_checks => health_check_fields()
}

static_schema! {
    /// Elements of `GET /v1/agent/members` (`api.AgentMember`, filterable
    /// through `consul members -filter`).
    agent_members => [
        FieldSpec::string("Name"),
        FieldSpec::string("Addr"),
        FieldSpec::uint("Port"),
        FieldSpec::string_map("Tags"),
        FieldSpec::int("Status"),
        FieldSpec::uint("ProtocolMin"),
        FieldSpec::uint("ProtocolMax"),
        FieldSpec::uint("ProtocolCur"),
        FieldSpec::uint("DelegateMin"),
        FieldSpec::uint("DelegateMax"),
        FieldSpec::uint("DelegateCur"),
    ]
}

static_schema! {
    /// Elements of `GET /v1/connect/intentions` (`structs.Intention`).
    intentions => [
        FieldSpec::string("ID"),
        FieldSpec::string("Description"),
        FieldSpec::string("SourcePeer"),
        FieldSpec::string("SourceSamenessGroup"),
        FieldSpec::string("SourcePartition"),
        FieldSpec::string("SourceNS"),
        FieldSpec::string("SourceName"),
        FieldSpec::string("DestinationPartition"),
        FieldSpec::string("DestinationNS"),
        FieldSpec::string("DestinationName"),
        FieldSpec::string("SourceType"),
        FieldSpec::string("Action"),
        FieldSpec::int("Precedence"),
        FieldSpec::string_map("Meta"),
    ]
}

static_schema! {
    /// Elements of `GET /v1/internal/ui/nodes` (`structs.NodeInfo`).
    internal_ui_nodes => [
        FieldSpec::string("ID"),
        FieldSpec::string("Node"),
        FieldSpec::string("Partition"),
        FieldSpec::string("PeerName"),
        FieldSpec::string("Address"),
        FieldSpec::string_map("TaggedAddresses"),
        FieldSpec::string_map("Meta"),
        FieldSpec::object_list("Services", node_service_fields()),
        FieldSpec::object_list("Checks", health_check_fields()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(schema: &Schema, selector: &str) -> Option<Vec<&'static str>> {
        schema
            .selectors()
            .into_iter()
            .find(|(s, _)| s == selector)
            .map(|(_, o)| o)
    }

    #[test]
    fn documented_catalog_nodes_selectors() {
        let s = catalog_nodes();
        let strings = vec![
            "Equal",
            "Not Equal",
            "In",
            "Not In",
            "Matches",
            "Not Matches",
        ];
        let maps = vec!["Is Empty", "Is Not Empty", "In", "Not In"];
        for sel in [
            "Address",
            "Datacenter",
            "ID",
            "Node",
            "Meta.<any>",
            "TaggedAddresses.<any>",
        ] {
            assert_eq!(ops(s, sel), Some(strings.clone()), "{sel}");
        }
        for sel in ["Meta", "TaggedAddresses"] {
            assert_eq!(ops(s, sel), Some(maps.clone()), "{sel}");
        }
    }

    #[test]
    fn documented_health_service_selectors() {
        let s = health_service_entries();
        assert_eq!(ops(s, "Checks"), Some(vec!["Is Empty", "Is Not Empty"]));
        assert_eq!(ops(s, "Service.Port"), Some(vec!["Equal", "Not Equal"]));
        assert_eq!(
            ops(s, "Service.Tags"),
            Some(vec!["In", "Not In", "Is Empty", "Is Not Empty"])
        );
        assert_eq!(
            ops(s, "Service.Proxy.Upstreams.LocalBindPort"),
            Some(vec!["Equal", "Not Equal"])
        );
        assert_eq!(
            ops(s, "Service.TaggedAddresses.<any>.Port"),
            Some(vec!["Equal", "Not Equal"])
        );
        assert!(ops(s, "Service.Weights").is_none());
        assert!(ops(s, "Checks.Definition").is_none());
    }
}
