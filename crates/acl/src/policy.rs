//! The parsed form of a set of ACL rules, merging, and printing back to HCL.

use std::collections::BTreeMap;
use std::fmt;

use crate::access::{Access, Resource};

/// The resources whose rules are labelled blocks (`service "web" { ... }`),
/// each with an exact form and a `_prefix` form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleResource {
    /// `agent` / `agent_prefix`, labelled by node name.
    Agent,
    /// `event` / `event_prefix`, labelled by event name.
    Event,
    /// `key` / `key_prefix`, labelled by KV key; the only rules that accept
    /// `list`.
    Key,
    /// `node` / `node_prefix`, labelled by node name.
    Node,
    /// `query` / `query_prefix`, labelled by prepared-query name.
    Query,
    /// `service` / `service_prefix`, labelled by service name; the only
    /// rules with an `intentions` field.
    Service,
    /// `session` / `session_prefix`, labelled by node name.
    Session,
}

impl RuleResource {
    /// Every labelled resource, in printing order.
    pub const ALL: [RuleResource; 7] = [
        RuleResource::Agent,
        RuleResource::Event,
        RuleResource::Key,
        RuleResource::Node,
        RuleResource::Query,
        RuleResource::Service,
        RuleResource::Session,
    ];

    /// The block keyword: `service` or `service_prefix`, etc.
    pub fn keyword(self, matching: Match) -> &'static str {
        use Match::{Exact, Prefix};
        match (self, matching) {
            (RuleResource::Agent, Exact) => "agent",
            (RuleResource::Agent, Prefix) => "agent_prefix",
            (RuleResource::Event, Exact) => "event",
            (RuleResource::Event, Prefix) => "event_prefix",
            (RuleResource::Key, Exact) => "key",
            (RuleResource::Key, Prefix) => "key_prefix",
            (RuleResource::Node, Exact) => "node",
            (RuleResource::Node, Prefix) => "node_prefix",
            (RuleResource::Query, Exact) => "query",
            (RuleResource::Query, Prefix) => "query_prefix",
            (RuleResource::Service, Exact) => "service",
            (RuleResource::Service, Prefix) => "service_prefix",
            (RuleResource::Session, Exact) => "session",
            (RuleResource::Session, Prefix) => "session_prefix",
        }
    }

    /// The resource and match kind of a block keyword (ASCII
    /// case-insensitive, as HCL1 matches field names).
    pub fn from_keyword(keyword: &str) -> Option<(RuleResource, Match)> {
        RuleResource::ALL.into_iter().find_map(|resource| {
            [Match::Exact, Match::Prefix]
                .into_iter()
                .find(|&m| keyword.eq_ignore_ascii_case(resource.keyword(m)))
                .map(|m| (resource, m))
        })
    }

    /// The resource checked by rules of this kind.
    pub fn resource(self) -> Resource {
        match self {
            RuleResource::Agent => Resource::Agent,
            RuleResource::Event => Resource::Event,
            RuleResource::Key => Resource::Key,
            RuleResource::Node => Resource::Node,
            RuleResource::Query => Resource::Query,
            RuleResource::Service => Resource::Service,
            RuleResource::Session => Resource::Session,
        }
    }

    /// Whether `policy = "list"` is valid (only for keys).
    pub fn allows_list(self) -> bool {
        self == RuleResource::Key
    }

    /// Whether rules of this kind have an `intentions` field.
    pub fn has_intentions(self) -> bool {
        self == RuleResource::Service
    }
}

/// Whether a rule applies to one name or to every name starting with its
/// label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Match {
    /// `service "web"`: only the name `web`.
    Exact,
    /// `service_prefix "web"`: every name starting with `web`; the empty
    /// label matches everything.
    Prefix,
}

/// The identity of a labelled rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    /// The kind of rule.
    pub resource: RuleResource,
    /// Exact or prefix.
    pub matching: Match,
    /// The label.
    pub name: String,
}

/// What a labelled rule grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The `policy` field.
    pub policy: Access,
    /// The `intentions` field of `service`/`service_prefix` rules, when
    /// stated (`None` lets the authorizer derive it from `policy`).
    pub intentions: Option<Access>,
}

impl Grant {
    /// A grant with only a `policy`.
    pub fn new(policy: Access) -> Grant {
        Grant {
            policy,
            intentions: None,
        }
    }

    /// Merges another grant for the same rule into this one, field by field,
    /// as Consul's policy merger does: deny > write > list > read, and a
    /// stated `intentions` wins over an unstated one.
    pub fn merge(&mut self, other: Grant) {
        if other.policy.takes_precedence_over(self.policy) {
            self.policy = other.policy;
        }
        self.intentions = Access::merge(self.intentions, other.intentions);
    }
}

/// A parsed set of ACL rules (the `Rules` of one ACL policy), with
/// duplicate rules already merged.
///
/// The attribute resources are `None` when unset (or set to `""`, which
/// Consul treats as unset). Labelled rules are kept in a sorted map, so two
/// policies with the same rules compare equal whatever the order or the
/// syntax they were written in.
///
/// Values built by hand are not validated: a `list` grant outside `key`
/// rules, or `intentions` outside `service` rules, will not survive
/// [`Policy::to_hcl`] followed by [`parse_rules`](crate::parse_rules). The
/// authorizer treats such a `list` like Consul would (it grants read and
/// list) and ignores such `intentions`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `acl = "..."`.
    pub acl: Option<Access>,
    /// `keyring = "..."`.
    pub keyring: Option<Access>,
    /// `mesh = "..."` (falls back to `operator` when unset).
    pub mesh: Option<Access>,
    /// `operator = "..."`.
    pub operator: Option<Access>,
    /// `peering = "..."` (falls back to `operator` when unset).
    pub peering: Option<Access>,
    /// The labelled rules.
    pub rules: BTreeMap<RuleKey, Grant>,
}

impl Policy {
    /// A policy with no rules.
    pub fn new() -> Policy {
        Policy::default()
    }

    /// Whether the policy has no rule at all.
    pub fn is_empty(&self) -> bool {
        self.acl.is_none()
            && self.keyring.is_none()
            && self.mesh.is_none()
            && self.operator.is_none()
            && self.peering.is_none()
            && self.rules.is_empty()
    }

    /// Adds a labelled rule, merging it with an existing rule for the same
    /// resource, match kind and label.
    pub fn add(
        &mut self,
        resource: RuleResource,
        matching: Match,
        name: impl Into<String>,
        grant: Grant,
    ) -> &mut Policy {
        let key = RuleKey {
            resource,
            matching,
            name: name.into(),
        };
        self.rules
            .entry(key)
            .and_modify(|existing| existing.merge(grant))
            .or_insert(grant);
        self
    }

    /// The (merged) rule for a resource, match kind and label.
    pub fn rule(&self, resource: RuleResource, matching: Match, name: &str) -> Option<Grant> {
        self.rules
            .get(&RuleKey {
                resource,
                matching,
                name: name.to_owned(),
            })
            .copied()
    }

    /// The value of an attribute resource (`acl`, `keyring`, `mesh`,
    /// `operator`, `peering`); `None` for the other resources.
    pub fn attribute(&self, resource: Resource) -> Option<Access> {
        match resource {
            Resource::Acl => self.acl,
            Resource::Keyring => self.keyring,
            Resource::Mesh => self.mesh,
            Resource::Operator => self.operator,
            Resource::Peering => self.peering,
            _ => None,
        }
    }

    /// Merges every rule of `other` into this policy (deny > write > list >
    /// read for each attribute and each labelled rule).
    pub fn merge(&mut self, other: &Policy) {
        self.acl = Access::merge(self.acl, other.acl);
        self.keyring = Access::merge(self.keyring, other.keyring);
        self.mesh = Access::merge(self.mesh, other.mesh);
        self.operator = Access::merge(self.operator, other.operator);
        self.peering = Access::merge(self.peering, other.peering);
        for (key, grant) in &other.rules {
            self.add(key.resource, key.matching, key.name.clone(), *grant);
        }
    }

    /// The merge of several policies, as Consul's `MergePolicies`.
    pub fn merged<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> Policy {
        let mut out = Policy::new();
        for policy in policies {
            out.merge(policy);
        }
        out
    }

    /// Prints the policy as canonical HCL rules, which
    /// [`parse_rules`](crate::parse_rules) reads back to an equal policy.
    ///
    /// Keywords come in alphabetical order (`acl`, `agent`, `agent_prefix`,
    /// `event`, `event_prefix`, `key`, `key_prefix`, `keyring`, `mesh`,
    /// `node`, `node_prefix`, `operator`, `peering`, `query`,
    /// `query_prefix`, `service`, `service_prefix`, `session`,
    /// `session_prefix`), labels in byte order, one rule per block,
    /// two-space indentation, lower-case levels and a final newline. An
    /// empty policy prints as the empty string.
    ///
    /// ```
    /// let policy = meshgate_acl::parse_rules(
    ///     r#"{"service": [{"web": {"policy": "write"}}], "operator": "read"}"#,
    /// )?;
    /// assert_eq!(
    ///     policy.to_hcl(),
    ///     "operator = \"read\"\nservice \"web\" {\n  policy = \"write\"\n}\n"
    /// );
    /// # Ok::<(), meshgate_acl::RuleError>(())
    /// ```
    pub fn to_hcl(&self) -> String {
        let mut out = String::new();
        let attribute = |out: &mut String, name: &str, value: Option<Access>| {
            if let Some(value) = value {
                out.push_str(name);
                out.push_str(" = \"");
                out.push_str(value.as_str());
                out.push_str("\"\n");
            }
        };
        let blocks = |out: &mut String, resource: RuleResource| {
            for (key, grant) in self.rules.iter().filter(|(k, _)| k.resource == resource) {
                out.push_str(resource.keyword(key.matching));
                out.push(' ');
                hcl_quote(&key.name, out);
                out.push_str(" {\n  policy = \"");
                out.push_str(grant.policy.as_str());
                out.push_str("\"\n");
                if let Some(intentions) = grant.intentions {
                    out.push_str("  intentions = \"");
                    out.push_str(intentions.as_str());
                    out.push_str("\"\n");
                }
                out.push_str("}\n");
            }
        };
        attribute(&mut out, "acl", self.acl);
        blocks(&mut out, RuleResource::Agent);
        blocks(&mut out, RuleResource::Event);
        blocks(&mut out, RuleResource::Key);
        attribute(&mut out, "keyring", self.keyring);
        attribute(&mut out, "mesh", self.mesh);
        blocks(&mut out, RuleResource::Node);
        attribute(&mut out, "operator", self.operator);
        attribute(&mut out, "peering", self.peering);
        blocks(&mut out, RuleResource::Query);
        blocks(&mut out, RuleResource::Service);
        blocks(&mut out, RuleResource::Session);
        out
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hcl())
    }
}

/// Writes `s` as a quoted HCL string that both HCL1 and `meshgate_hcl` read
/// back verbatim: quotes, backslashes and control characters are escaped,
/// and a `$` before `{` is written `\u0024` so that no interpolation
/// sequence starts.
fn hcl_quote(s: &str, out: &mut String) {
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\u0024"),
            c if c.is_control() => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
