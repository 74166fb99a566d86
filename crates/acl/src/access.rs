//! Access levels, enforcement decisions and resource names.

use std::fmt;
use std::str::FromStr;

use crate::util::go_quote;

/// An access level: the value of a rule (`policy = "write"`) or the level a
/// request needs.
///
/// The derived order (`Deny < Read < List < Write`) is the order of the
/// privileges granted, *not* the precedence used when rules are merged (for
/// that, deny comes first: see [`Access::takes_precedence_over`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// `deny`: an explicit refusal, which stops the search for a rule.
    Deny,
    /// `read`.
    Read,
    /// `list`: read, plus listing a key prefix (only valid in `key` and
    /// `key_prefix` rules).
    List,
    /// `write`: read, list and write.
    Write,
}

impl Access {
    /// All the levels, weakest grant first.
    pub const ALL: [Access; 4] = [Access::Deny, Access::Read, Access::List, Access::Write];

    /// The rule-language spelling: `deny`, `read`, `list` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Deny => "deny",
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
        }
    }

    /// Reads a level the way Consul's `AccessLevelFromString` does: the four
    /// names, compared case-insensitively.
    pub fn parse(text: &str) -> Option<Access> {
        Access::ALL
            .into_iter()
            .find(|level| text.eq_ignore_ascii_case(level.as_str()))
    }

    /// The merge rank: deny > write > list > read.
    fn rank(self) -> u8 {
        match self {
            Access::Read => 1,
            Access::List => 2,
            Access::Write => 3,
            Access::Deny => 4,
        }
    }

    /// Whether `self` wins over `other` when two rules for the same
    /// resource, match kind and name are merged (deny > write > list > read).
    pub fn takes_precedence_over(self, other: Access) -> bool {
        self.rank() > other.rank()
    }

    /// Merges two optional levels with the precedence of
    /// [`Access::takes_precedence_over`]; an unset level loses to any level.
    pub fn merge(a: Option<Access>, b: Option<Access>) -> Option<Access> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.takes_precedence_over(a) { b } else { a }),
            (a, None) => a,
            (None, b) => b,
        }
    }

    /// Whether a rule at this level grants `required` (Consul's `enforce`):
    /// write grants everything, list grants list and read, read grants
    /// read, deny grants nothing.
    pub fn grants(self, required: Access) -> bool {
        match self {
            Access::Write => true,
            Access::List => matches!(required, Access::List | Access::Read),
            Access::Read => required == Access::Read,
            Access::Deny => false,
        }
    }

    /// The decision of a rule at this level for a request needing
    /// `required`.
    pub fn enforce(self, required: Access) -> Decision {
        if self.grants(required) {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of `deny`, `read`, `list`, `write`. Displays as
/// Consul's `AccessLevelFromString` error: `"admin" is not a valid access
/// level`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a valid access level", go_quote(.0))]
pub struct InvalidAccess(pub String);

impl FromStr for Access {
    type Err = InvalidAccess;

    fn from_str(s: &str) -> Result<Access, InvalidAccess> {
        Access::parse(s).ok_or_else(|| InvalidAccess(s.to_owned()))
    }
}

/// The answer of one layer of authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A rule grants the access.
    Allow,
    /// A rule refuses the access.
    Deny,
    /// No rule applies: the next layer (in the end the default policy)
    /// decides.
    Default,
}

impl Decision {
    /// Resolves `Default` with the given fallback.
    pub fn or(self, default_allow: bool) -> bool {
        match self {
            Decision::Allow => true,
            Decision::Deny => false,
            Decision::Default => default_allow,
        }
    }
}

/// A kind of thing that ACLs protect, as named in permission errors
/// (`'service:write'`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// ACL management (tokens, policies, roles, auth methods) and snapshots.
    Acl,
    /// Agent endpoints of a node.
    Agent,
    /// User events.
    Event,
    /// Intentions whose destination is a service (`intentions = ...` in a
    /// `service` rule).
    Intention,
    /// KV keys.
    Key,
    /// The gossip keyring.
    Keyring,
    /// Mesh-wide configuration.
    Mesh,
    /// Catalog nodes.
    Node,
    /// Operator endpoints.
    Operator,
    /// Cluster peering.
    Peering,
    /// Prepared queries.
    Query,
    /// Catalog services.
    Service,
    /// Sessions, by node.
    Session,
}

impl Resource {
    /// Every resource.
    pub const ALL: [Resource; 13] = [
        Resource::Acl,
        Resource::Agent,
        Resource::Event,
        Resource::Intention,
        Resource::Key,
        Resource::Keyring,
        Resource::Mesh,
        Resource::Node,
        Resource::Operator,
        Resource::Peering,
        Resource::Query,
        Resource::Service,
        Resource::Session,
    ];

    /// The name used in permission errors: `acl`, `agent`, `event`,
    /// `intention`, `key`, `keyring`, `mesh`, `node`, `operator`, `peering`,
    /// `query`, `service`, `session`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Acl => "acl",
            Resource::Agent => "agent",
            Resource::Event => "event",
            Resource::Intention => "intention",
            Resource::Key => "key",
            Resource::Keyring => "keyring",
            Resource::Mesh => "mesh",
            Resource::Node => "node",
            Resource::Operator => "operator",
            Resource::Peering => "peering",
            Resource::Query => "query",
            Resource::Service => "service",
            Resource::Session => "session",
        }
    }

    /// Whether checks on this resource take a name (`service "web"`) rather
    /// than being global (`operator`).
    pub fn is_named(self) -> bool {
        !matches!(
            self,
            Resource::Acl
                | Resource::Keyring
                | Resource::Mesh
                | Resource::Operator
                | Resource::Peering
        )
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of the resources of [`Resource::as_str`]. Displays
/// as Consul's `acl.Enforce` error: `Invalid ACL resource requested: "x"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid ACL resource requested: {}", go_quote(.0))]
pub struct InvalidResource(pub String);

impl FromStr for Resource {
    type Err = InvalidResource;

    fn from_str(s: &str) -> Result<Resource, InvalidResource> {
        Resource::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| InvalidResource(s.to_owned()))
    }
}
