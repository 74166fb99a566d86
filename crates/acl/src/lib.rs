//! Consul-compatible ACLs for meshgate: the rule language, its evaluation,
//! the built-in and templated policies, and Consul's permission errors.
//!
//! The crate is pure (no IO) and never panics on any input.
//!
//! # Rules
//!
//! [`parse_rules`] reads the `Rules` of an ACL policy, in HCL or in JSON
//! (every shape Consul's HCL1 decoder accepts), into a [`Policy`]:
//!
//! * attributes `acl`, `keyring`, `operator`, `mesh`, `peering` with
//!   `read`, `write` or `deny` (`""` means unset);
//! * labelled rules `agent`, `event`, `key`, `node`, `query`, `service`,
//!   `session` and their `_prefix` forms with a `policy` field (`read`,
//!   `write`, `deny`, and `list` for keys only); `service`/`service_prefix`
//!   also take `intentions` (`read`, `write`, `deny`).
//!
//! Consul CE behaviour reproduced, and the choices made where it is
//! ambiguous (based on acl/policy.go, acl/policy_ce.go, acl/policy_merger.go):
//!
//! * Top-level keys and field names match ASCII-case-insensitively and
//!   levels are case-insensitive, as in HCL1/Consul. Levels are normalized
//!   to lower case *before* merging and before deriving intentions (Consul
//!   compares the raw strings there, so `policy = "WRITE"` would imply
//!   intentions deny and `"DENY"` would not win a merge; we treat them like
//!   their lower-case forms).
//! * Duplicate labels, in one policy or across policies, are merged:
//!   deny > write > list > read, `policy` and `intentions` separately.
//! * An attribute written twice in one HCL body (`acl = "read"` then
//!   `acl = "write"`, or two `policy =` in a block) is an error, as Consul's
//!   `hcl.DecodeErrorOnDuplicates`.
//! * `namespace`, `namespace_prefix`, `partition`, `partition_prefix`
//!   (Enterprise) and the deprecated `identity`, `identity_prefix` are
//!   **accepted and ignored**, whatever their content: Consul CE's policy
//!   struct has no Enterprise fields (HCL1 skips unknown keys) and
//!   `PolicyRules.Validate` zeroes the identity rules. A `sentinel` field in
//!   `key`, `node` and `service` rules (Enterprise) is ignored likewise.
//! * **Stricter than Consul**: any other unknown top-level key, and any
//!   unknown field inside a rule, is an error. Consul ignores them silently
//!   (hashicorp/consul#11352), which hides typos such as `servce` or
//!   `intention` — a misspelt key there grants nothing and fails later.
//!
//! # Error formats
//!
//! [`RuleError`] messages (Display) start with Consul's text. Go's `%#v`
//! dumps are reproduced (Go string quoting included); where Consul has no
//! position or reason, ours follow it. `L:C` is a 1-based line and column;
//! positions are known for HCL input, not for JSON (except syntax errors).
//!
//! * syntax: `Failed to parse ACL rules: At L:C: <what was expected>`
//! * repeated attribute: `Failed to parse ACL rules: The argument "acl" at
//!   L:C was already set. Each argument can only be defined once` (Consul's
//!   exact text)
//! * wrong shape: `Failed to parse ACL rules: At L:C: service "web": policy:
//!   expected a string, found a list`, `... operator: expected a string,
//!   found an object`, `... service: missing the name label, as in service
//!   "<name>" { policy = ... }`
//! * unknown key: `Failed to parse ACL rules: At L:C: unknown ACL resource
//!   "servce"`; unknown field: `Failed to parse ACL rules: At L:C: service
//!   "web": unknown field "intention" ("policy" and "intentions" are
//!   allowed)`
//! * invalid level in a rule: `Invalid <keyword> policy: <Go dump>: <reason>
//!   (line L, column C)`, e.g. `Invalid service policy:
//!   &acl.ServiceRule{Name:"web", Policy:"admin", Intentions:"",
//!   EnterpriseRule:acl.EnterpriseRule{}}: "admin" is not a valid access
//!   level (line 2, column 3)`. The dumps are `&acl.AgentRule{Node:..,
//!   Policy:..}`, `&acl.EventRule{Event:.., Policy:..}`,
//!   `&acl.KeyRule{Prefix:.., Policy:.., EnterpriseRule:acl.EnterpriseRule{}}`,
//!   `&acl.NodeRule{Name:.., Policy:.., EnterpriseRule:acl.EnterpriseRule{}}`,
//!   `&acl.PreparedQueryRule{Prefix:.., Policy:..}`, `&acl.ServiceRule{Name:..,
//!   Policy:.., Intentions:.., EnterpriseRule:acl.EnterpriseRule{}}`,
//!   `&acl.SessionRule{Node:.., Policy:..}`. Reasons: `"x" is not a valid
//!   access level`, `"list" is only valid in key and key_prefix rules`,
//!   `the policy is not set`.
//! * invalid intentions: `Invalid service intentions policy: <Go dump>:
//!   <reason>` (and `service_prefix`).
//! * invalid attribute: `Invalid operator policy: "admin": "admin" is not a
//!   valid access level (line 1, column 1)`.
//!
//! As in Consul, when several rules are invalid the first one in Consul's
//! validation order is reported (acl, agent, agent_prefix, key, key_prefix,
//! node, node_prefix, service, service_prefix, session, session_prefix,
//! event, event_prefix, query, query_prefix, keyring, operator, mesh,
//! peering).
//!
//! # Evaluation
//!
//! [`Authorizer`] reproduces acl/policy_authorizer.go chained with
//! acl/static_authorizer.go: per resource, an exact rule for the name wins,
//! else the longest matching prefix rule; `write` grants read/list/write,
//! `list` grants list/read, `read` grants read, `deny` refuses; no rule
//! falls through to the default policy. The default policy never grants
//! `acl:*` (only [`Authorizer::management`] does). See [`Authorizer`] for
//! intentions, mesh/peering fallback, key listing and the aggregate checks.
//!
//! # Permission errors
//!
//! [`Denied::message`] produces Consul's 403 text (acl/errors.go):
//!
//! * `Permission denied: token with AccessorID '<id>' lacks permission 'service:write' on "web"`
//! * `Permission denied: anonymous token lacks permission 'key:read' on "x". The anonymous token is used implicitly when a request does not specify a token.`
//! * global permissions (`acl`, `keyring`, `mesh`, `operator`, `peering`)
//!   have no ` on "..."` part: `... lacks permission 'operator:read'`.
//! * intention checks name the resource `intention` (`'intention:read'`),
//!   key listing `'key:list'`, recursive deletes `'key:write'` on the prefix,
//!   snapshots `'acl:write'`, [`Denied::node_read_all`] `'node:read' on "all
//!   nodes"`, [`Denied::service_read_all`] `'service:read' on "all
//!   services"`, [`Denied::service_write_any`] `'service:write' on "any
//!   service"`.

#![forbid(unsafe_code)]

mod access;
mod authorizer;
mod denied;
mod parse;
mod policy;
mod templates;
mod util;

#[cfg(test)]
mod tests;

pub use access::{Access, Decision, InvalidAccess, InvalidResource, Resource};
pub use authorizer::Authorizer;
pub use denied::{
    ANONYMOUS_TOKEN_ID, ANONYMOUS_TOKEN_SECRET, Denied, ERR_DISABLED, ERR_NOT_FOUND,
    ERR_PERMISSION_DENIED, ERR_ROOT_DENIED, permission_denied,
};
pub use parse::{RuleError, RuleErrorKind, parse_rules};
pub use policy::{Grant, Match, Policy, RuleKey, RuleResource};
pub use templates::{
    BuiltinPolicy, GLOBAL_MANAGEMENT_POLICY_DESCRIPTION, GLOBAL_MANAGEMENT_POLICY_ID,
    GLOBAL_MANAGEMENT_POLICY_NAME, GLOBAL_MANAGEMENT_RULES, GLOBAL_READ_ONLY_POLICY_DESCRIPTION,
    GLOBAL_READ_ONLY_POLICY_ID, GLOBAL_READ_ONLY_POLICY_NAME, GLOBAL_READ_ONLY_RULES,
    RESERVED_ID_PREFIX, TEMPLATED_POLICY_API_GATEWAY, TEMPLATED_POLICY_DNS, TEMPLATED_POLICY_NODE,
    TEMPLATED_POLICY_NOMAD_CLIENT, TEMPLATED_POLICY_NOMAD_SERVER, TEMPLATED_POLICY_SERVICE,
    TemplatedPolicyInfo, builtin_policies, is_valid_node_identity_name,
    is_valid_service_identity_name, node_identity_policy, render_templated_policy,
    service_identity_policy, synthetic_policy_id, templated_policy, templated_policy_info,
    templated_policy_list,
};
