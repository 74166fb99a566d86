//! Built-in policies, service/node identities and templated policies
//! (agent/structs/acl.go, agent/structs/acl_templated_policy.go and the
//! `acltemplatedpolicy` directory of Consul CE).

use serde::Serialize;
use serde_json::Value as Json;

use crate::access::Access;
use crate::parse::{RuleError, RuleErrorKind, parse_rules};
use crate::policy::{Grant, Match, Policy, RuleResource};
use crate::util::go_quote;

/// ID of the built-in `global-management` policy.
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
/// Name of the built-in `global-management` policy.
pub const GLOBAL_MANAGEMENT_POLICY_NAME: &str = "global-management";
/// Description of the built-in `global-management` policy.
pub const GLOBAL_MANAGEMENT_POLICY_DESCRIPTION: &str =
    "A built-in policy that grants read and write access to all Consul features";

/// ID of the built-in `builtin/global-read-only` policy.
pub const GLOBAL_READ_ONLY_POLICY_ID: &str = "00000000-0000-0000-0000-000000000002";
/// Name of the built-in `builtin/global-read-only` policy.
pub const GLOBAL_READ_ONLY_POLICY_NAME: &str = "builtin/global-read-only";
/// Description of the built-in `builtin/global-read-only` policy.
pub const GLOBAL_READ_ONLY_POLICY_DESCRIPTION: &str =
    "A built-in policy that grants read-only access to all Consul features";

/// IDs starting with this prefix are reserved for built-in policies
/// (Consul's `ACLReservedIDPrefix`).
pub const RESERVED_ID_PREFIX: &str = "00000000-0000-0000-0000-0000000000";

/// The `Rules` of the `global-management` policy, byte for byte as Consul CE
/// stores them (leading newline, tab indentation, no final newline).
pub const GLOBAL_MANAGEMENT_RULES: &str = "
acl = \"write\"
agent_prefix \"\" {
\tpolicy = \"write\"
}
event_prefix \"\" {
\tpolicy = \"write\"
}
key_prefix \"\" {
\tpolicy = \"write\"
}
keyring = \"write\"
node_prefix \"\" {
\tpolicy = \"write\"
}
operator = \"write\"
mesh = \"write\"
peering = \"write\"
query_prefix \"\" {
\tpolicy = \"write\"
}
service_prefix \"\" {
\tpolicy = \"write\"
\tintentions = \"write\"
}
session_prefix \"\" {
\tpolicy = \"write\"
}";

/// The `Rules` of the `builtin/global-read-only` policy, byte for byte as
/// Consul CE stores them.
pub const GLOBAL_READ_ONLY_RULES: &str = "
acl = \"read\"
agent_prefix \"\" {
\tpolicy = \"read\"
}
event_prefix \"\" {
\tpolicy = \"read\"
}
key_prefix \"\" {
\tpolicy = \"read\"
}
keyring = \"read\"
node_prefix \"\" {
\tpolicy = \"read\"
}
operator = \"read\"
mesh = \"read\"
peering = \"read\"
query_prefix \"\" {
\tpolicy = \"read\"
}
service_prefix \"\" {
\tpolicy = \"read\"
\tintentions = \"read\"
}
session_prefix \"\" {
\tpolicy = \"read\"
}";

/// A built-in policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinPolicy {
    /// Its fixed ID.
    pub id: &'static str,
    /// Its (default) name.
    pub name: &'static str,
    /// Its description.
    pub description: &'static str,
    /// Its rules text.
    pub rules: &'static str,
}

/// The built-in policies every cluster has: `global-management` and
/// `builtin/global-read-only`, in ID order.
pub fn builtin_policies() -> [BuiltinPolicy; 2] {
    [
        BuiltinPolicy {
            id: GLOBAL_MANAGEMENT_POLICY_ID,
            name: GLOBAL_MANAGEMENT_POLICY_NAME,
            description: GLOBAL_MANAGEMENT_POLICY_DESCRIPTION,
            rules: GLOBAL_MANAGEMENT_RULES,
        },
        BuiltinPolicy {
            id: GLOBAL_READ_ONLY_POLICY_ID,
            name: GLOBAL_READ_ONLY_POLICY_NAME,
            description: GLOBAL_READ_ONLY_POLICY_DESCRIPTION,
            rules: GLOBAL_READ_ONLY_RULES,
        },
    ]
}

/// The policy Consul synthesizes for a `ServiceIdentity` (the
/// `builtin/service` template): `service "<name>"` and
/// `service "<name>-sidecar-proxy"` write, `service_prefix ""` read and
/// `node_prefix ""` read.
pub fn service_identity_policy(service: &str) -> Policy {
    let mut policy = Policy::new();
    policy
        .add(
            RuleResource::Service,
            Match::Exact,
            service,
            Grant::new(Access::Write),
        )
        .add(
            RuleResource::Service,
            Match::Exact,
            format!("{service}-sidecar-proxy"),
            Grant::new(Access::Write),
        )
        .add(
            RuleResource::Service,
            Match::Prefix,
            "",
            Grant::new(Access::Read),
        )
        .add(
            RuleResource::Node,
            Match::Prefix,
            "",
            Grant::new(Access::Read),
        );
    policy
}

/// The policy Consul synthesizes for a `NodeIdentity` (the `builtin/node`
/// template): `node "<name>"` write and `service_prefix ""` read.
pub fn node_identity_policy(node: &str) -> Policy {
    let mut policy = Policy::new();
    policy
        .add(
            RuleResource::Node,
            Match::Exact,
            node,
            Grant::new(Access::Write),
        )
        .add(
            RuleResource::Service,
            Match::Prefix,
            "",
            Grant::new(Access::Read),
        );
    policy
}

/// Name of the `builtin/service` templated policy.
pub const TEMPLATED_POLICY_SERVICE: &str = "builtin/service";
/// Name of the `builtin/node` templated policy.
pub const TEMPLATED_POLICY_NODE: &str = "builtin/node";
/// Name of the `builtin/dns` templated policy.
pub const TEMPLATED_POLICY_DNS: &str = "builtin/dns";
/// Name of the `builtin/nomad-server` templated policy.
pub const TEMPLATED_POLICY_NOMAD_SERVER: &str = "builtin/nomad-server";
/// Name of the `builtin/api-gateway` templated policy.
pub const TEMPLATED_POLICY_API_GATEWAY: &str = "builtin/api-gateway";
/// Name of the `builtin/nomad-client` templated policy.
pub const TEMPLATED_POLICY_NOMAD_CLIENT: &str = "builtin/nomad-client";

/// The JSON schema of the templates that take a `name` (service, node,
/// api-gateway), as Consul returns it (tab-indented).
const NAME_SCHEMA: &str = "{
\t\"type\": \"object\",
\t\"properties\": {
\t\t\"name\": { \"type\": \"string\", \"$ref\": \"#/definitions/min-length-one\" }
\t},
\t\"required\": [\"name\"],
\t\"definitions\": {
\t\t\"min-length-one\": {
\t\t\t\t\"type\": \"string\",
\t\t\t\t\"minLength\": 1
\t\t}
\t}
}";

const SERVICE_TEMPLATE: &str = "
service \"{{.Name}}\" {
\tpolicy = \"write\"
}
service \"{{.Name}}-sidecar-proxy\" {
\tpolicy = \"write\"
}
service_prefix \"\" {
\tpolicy = \"read\"
}
node_prefix \"\" {
\tpolicy = \"read\"
}";

const NODE_TEMPLATE: &str = "
node \"{{.Name}}\" {
\tpolicy = \"write\"
}
service_prefix \"\" {
\tpolicy = \"read\"
}";

const DNS_TEMPLATE: &str = "
node_prefix \"\" {
\tpolicy = \"read\"
}
service_prefix \"\" {
\tpolicy = \"read\"
}
query_prefix \"\" {
\tpolicy = \"read\"
}";

const NOMAD_SERVER_TEMPLATE: &str = "
acl = \"write\"
agent_prefix \"\" {
  policy = \"read\"
}
node_prefix \"\" {
  policy = \"read\"
}
service_prefix \"\" {
  policy = \"write\"
}";

const API_GATEWAY_TEMPLATE: &str = "mesh = \"read\"
node_prefix \"\" {
\tpolicy = \"read\"
}
service_prefix \"\" {
\tpolicy = \"read\"
}
service \"{{.Name}}\" {
\tpolicy = \"write\"
}";

const NOMAD_CLIENT_TEMPLATE: &str = "agent_prefix \"\" {
  policy = \"read\"
}
node_prefix \"\" {
  policy = \"read\"
}
service_prefix \"\" {
  policy = \"write\"
}
key_prefix \"\" {
  policy = \"read\"
}";

/// A built-in templated policy, as listed by `/v1/acl/templated-policies`.
///
/// Serializes like Consul's `api.ACLTemplatedPolicyResponse`
/// (`TemplateName`, `Schema`, `Template`, `Description`; the ID is not
/// shown, as in Consul).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TemplatedPolicyInfo {
    /// `builtin/service`, ...
    #[serde(rename = "TemplateName")]
    pub name: &'static str,
    /// `00000000-0000-0000-0000-00000000000N`.
    #[serde(skip)]
    pub id: &'static str,
    /// The JSON schema of the variables, or `""` when the template takes
    /// none.
    pub schema: &'static str,
    /// The rules template (Go `text/template` syntax, `{{.Name}}`).
    pub template: &'static str,
    /// Consul's description.
    pub description: &'static str,
}

const TEMPLATED_POLICIES: [TemplatedPolicyInfo; 6] = [
    TemplatedPolicyInfo {
        name: TEMPLATED_POLICY_SERVICE,
        id: "00000000-0000-0000-0000-000000000003",
        schema: NAME_SCHEMA,
        template: SERVICE_TEMPLATE,
        description: "Gives the token or role permissions to register a service and discover services in the Consul catalog. It also gives the specified service's sidecar proxy the permission to discover and route traffic to other services.",
    },
    TemplatedPolicyInfo {
        name: TEMPLATED_POLICY_NODE,
        id: "00000000-0000-0000-0000-000000000004",
        schema: NAME_SCHEMA,
        template: NODE_TEMPLATE,
        description: "Gives the token or role permissions for a register an agent/node into the catalog. A node is typically a consul agent but can also be a physical server, cloud instance or a container.",
    },
    TemplatedPolicyInfo {
        name: TEMPLATED_POLICY_DNS,
        id: "00000000-0000-0000-0000-000000000005",
        schema: "",
        template: DNS_TEMPLATE,
        description: "Gives the token or role permissions for the Consul DNS to query services in the network.",
    },
    TemplatedPolicyInfo {
        name: TEMPLATED_POLICY_NOMAD_SERVER,
        id: "00000000-0000-0000-0000-000000000006",
        schema: "",
        template: NOMAD_SERVER_TEMPLATE,
        description: "Gives the token or role permissions required for integration with a nomad server.",
    },
    TemplatedPolicyInfo {
        name: TEMPLATED_POLICY_API_GATEWAY,
        id: "00000000-0000-0000-0000-000000000008",
        schema: NAME_SCHEMA,
        template: API_GATEWAY_TEMPLATE,
        description: "Gives the token or role permissions for a Consul api gateway",
    },
    TemplatedPolicyInfo {
        name: TEMPLATED_POLICY_NOMAD_CLIENT,
        id: "00000000-0000-0000-0000-000000000009",
        schema: "",
        template: NOMAD_CLIENT_TEMPLATE,
        description: "Gives the token or role permissions required for integration with a nomad client.",
    },
];

/// Every built-in templated policy of Consul CE, in ID order: service
/// (`…0003`), node (`…0004`), dns (`…0005`), nomad-server (`…0006`),
/// api-gateway (`…0008`), nomad-client (`…0009`). (`…0007` was the
/// workload-identity template, which current Consul no longer has.)
pub fn templated_policy_list() -> Vec<TemplatedPolicyInfo> {
    TEMPLATED_POLICIES.to_vec()
}

/// One built-in templated policy by name.
pub fn templated_policy_info(name: &str) -> Option<TemplatedPolicyInfo> {
    TEMPLATED_POLICIES.iter().find(|t| t.name == name).copied()
}

/// Whether `name` can be a service identity's name (and the `name` of
/// `builtin/service`): 1 to 256 characters of `a-z`, `0-9`, `-`, `_`,
/// starting and ending with a letter or digit (Consul's
/// `IsValidServiceIdentityName`).
pub fn is_valid_service_identity_name(name: &str) -> bool {
    is_valid_identity_name(name)
}

/// Whether `name` can be a node identity's name (and the `name` of
/// `builtin/node`); same rule as services.
pub fn is_valid_node_identity_name(name: &str) -> bool {
    is_valid_identity_name(name)
}

fn is_valid_identity_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 256
        && bytes.first().copied().is_some_and(edge)
        && bytes.last().copied().is_some_and(edge)
        && bytes.iter().all(|&b| edge(b) || b == b'-' || b == b'_')
}

fn variables_error(message: String) -> RuleError {
    RuleError::new(RuleErrorKind::InvalidTemplateVariables, message)
}

/// The Go JSON type name of a value, as `encoding/json` reports it.
fn go_json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// One validation failure in `go-multierror`'s format.
fn multierror(message: &str) -> String {
    format!("1 error occurred:\n\t* {message}\n\n")
}

/// Validates the variables of a template as Consul's
/// `ValidateTemplatedPolicy` does and returns the `name` variable.
fn template_name_variable(info: &TemplatedPolicyInfo, vars: &Json) -> Result<String, RuleError> {
    if info.schema.is_empty() {
        return Ok(String::new());
    }
    let map = match vars {
        Json::Object(map) => map,
        Json::Null => {
            return Err(variables_error(multierror(
                "Invalid type. Expected: object, given: null",
            )));
        }
        other => {
            return Err(variables_error(format!(
                "json: cannot unmarshal {} into Go value of type structs.ACLTemplatedPolicyVariables",
                go_json_kind(other)
            )));
        }
    };
    // encoding/json: an exact key match wins, else a case-insensitive one.
    let value = map.get("name").or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("name"))
            .map(|(_, v)| v)
    });
    let name = match value {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => {
            return Err(variables_error(format!(
                "json: cannot unmarshal {} into Go struct field ACLTemplatedPolicyVariables.name of type string",
                go_json_kind(other)
            )));
        }
    };
    if info.name == TEMPLATED_POLICY_SERVICE && !is_valid_service_identity_name(&name) {
        return Err(variables_error(format!(
            "service identity {} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
            go_quote(&name)
        )));
    }
    if info.name == TEMPLATED_POLICY_NODE && !is_valid_node_identity_name(&name) {
        // Two spaces, as in Consul's message.
        return Err(variables_error(format!(
            "node identity {}  has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
            go_quote(&name)
        )));
    }
    if name.is_empty() {
        return Err(variables_error(multierror("name is required")));
    }
    Ok(name)
}

/// The rules text of a templated policy for these variables (what Consul
/// stores as the synthetic policy's `Rules`), after validating the
/// variables.
///
/// `vars` is the JSON of `TemplateVariables` (`{"name": "web"}`; the key is
/// matched case-insensitively, as Go's `encoding/json` does; `null` means
/// no variables). Templates without a schema ignore `vars`.
///
/// Errors ([`RuleErrorKind::UnknownTemplate`],
/// [`RuleErrorKind::InvalidTemplateVariables`]) carry Consul's inner
/// messages: `no such ACL templated policy with Name "builtin/x"`,
/// `service identity "Web" has an invalid name. Only lowercase alphanumeric
/// characters, '-' and '_' are allowed`, `node identity "Web"  has an
/// invalid name. ...` (sic, two spaces), and for other schema failures
/// go-multierror's `1 error occurred:\n\t* name is required\n\n`. Consul's
/// token endpoint prefixes them with `validation error for templated policy
/// "<name>": `, its preview endpoint with `validation error for templated
/// policy: "<name>": `.
pub fn render_templated_policy(name: &str, vars: &Json) -> Result<String, RuleError> {
    let Some(info) = templated_policy_info(name) else {
        let mut e = RuleError::new(
            RuleErrorKind::UnknownTemplate,
            format!("no such ACL templated policy with Name {}", go_quote(name)),
        );
        e.set_resource(name);
        return Err(e);
    };
    let variable = template_name_variable(&info, vars)?;
    Ok(info.template.replace("{{.Name}}", &variable))
}

/// The parsed policy of a templated policy for these variables (see
/// [`render_templated_policy`] for the validation and its errors).
///
/// ```
/// use meshgate_acl::{templated_policy, Authorizer};
///
/// let policy = templated_policy("builtin/service", &serde_json::json!({"name": "web"}))?;
/// let authz = Authorizer::new(&[&policy], false);
/// assert!(authz.service_write("web-sidecar-proxy"));
/// assert!(authz.node_read("any"));
/// assert!(!authz.service_write("db"));
/// # Ok::<(), meshgate_acl::RuleError>(())
/// ```
pub fn templated_policy(name: &str, vars: &Json) -> Result<Policy, RuleError> {
    parse_rules(&render_templated_policy(name, vars)?)
}

/// The ID Consul gives the synthetic policy of a templated policy (and of
/// service/node identities): `fmt.Sprintf("%x", fnv.New128a().Sum([]byte(rules)))`.
///
/// `Sum` *appends* the hash of nothing to its argument, so the ID is the
/// hex of the rules text followed by the 128-bit FNV-1a offset basis. This
/// reproduces that, so that IDs match Consul's.
pub fn synthetic_policy_id(rules: &str) -> String {
    const FNV128A_EMPTY: &str = "6c62272e07bb014262b821756295c58d";
    let mut out = String::with_capacity(rules.len() * 2 + FNV128A_EMPTY.len());
    for byte in rules.bytes() {
        out.push_str(&format!("{byte:02x}"));
    }
    out.push_str(FNV128A_EMPTY);
    out
}
