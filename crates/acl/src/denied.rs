//! Consul's permission-denied errors (acl/errors.go).

use crate::access::{Access, Resource};

/// The AccessorID of the anonymous token, used when a request carries no
/// token.
pub const ANONYMOUS_TOKEN_ID: &str = "00000000-0000-0000-0000-000000000002";

/// The SecretID of the anonymous token.
pub const ANONYMOUS_TOKEN_SECRET: &str = "anonymous";

/// Consul's `acl.ErrNotFound` text (unknown token secret, missing ACL
/// object).
pub const ERR_NOT_FOUND: &str = "ACL not found";

/// Consul's `acl.ErrDisabled` text (HTTP 401 from `/v1/acl/*` when ACLs are
/// off).
pub const ERR_DISABLED: &str = "ACL support disabled";

/// Consul's `acl.ErrPermissionDenied` text, the prefix of every
/// [`Denied::message`].
pub const ERR_PERMISSION_DENIED: &str = "Permission denied";

/// Consul's `acl.ErrRootDenied` text (a request used `allow`, `deny` or
/// `manage` as a token).
pub const ERR_ROOT_DENIED: &str = "Cannot resolve root ACL";

/// A refused permission, for Consul's 403 message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Denied {
    /// The resource checked (`intention` for intention checks, not
    /// `service`).
    pub resource: Resource,
    /// The access needed.
    pub access: Access,
    /// The name checked; `None` (or empty) for global permissions such as
    /// `operator:read`, which print without an ` on "..."` part.
    pub segment: Option<String>,
}

impl Denied {
    /// A refusal of `access` on `resource` (for `segment`, if named).
    pub fn new(resource: Resource, access: Access, segment: Option<&str>) -> Denied {
        Denied {
            resource,
            access,
            segment: segment.map(str::to_owned),
        }
    }

    /// The refusal of [`Authorizer::node_read_all`](crate::Authorizer::node_read_all):
    /// `'node:read' on "all nodes"`.
    pub fn node_read_all() -> Denied {
        Denied::new(Resource::Node, Access::Read, Some("all nodes"))
    }

    /// The refusal of [`Authorizer::service_read_all`](crate::Authorizer::service_read_all):
    /// `'service:read' on "all services"`.
    pub fn service_read_all() -> Denied {
        Denied::new(Resource::Service, Access::Read, Some("all services"))
    }

    /// The refusal of [`Authorizer::service_write_any`](crate::Authorizer::service_write_any):
    /// `'service:write' on "any service"`.
    pub fn service_write_any() -> Denied {
        Denied::new(Resource::Service, Access::Write, Some("any service"))
    }

    /// The permission as Consul names it: `service:write`.
    pub fn permission(&self) -> String {
        format!("{}:{}", self.resource.as_str(), self.access.as_str())
    }

    /// Consul's 403 text (`PermissionDeniedError.Error()`), for the token
    /// with this AccessorID; `None` or [`ANONYMOUS_TOKEN_ID`] is the
    /// anonymous token:
    ///
    /// * `Permission denied: token with AccessorID '<id>' lacks permission 'service:write' on "web"`
    /// * `Permission denied: anonymous token lacks permission 'key:read' on "x". The anonymous token is used implicitly when a request does not specify a token.`
    /// * without a segment: `Permission denied: token with AccessorID '<id>' lacks permission 'operator:read'`
    ///
    /// The segment is put between double quotes as is, without escaping,
    /// like Consul's `ResourceDescriptor.ToString`.
    ///
    /// ```
    /// use meshgate_acl::{Access, Denied, Resource};
    ///
    /// let denied = Denied::new(Resource::Service, Access::Write, Some("web"));
    /// assert_eq!(
    ///     denied.message(Some("6a1253d2-1785-24fd-91c2-f8e78c745511")),
    ///     "Permission denied: token with AccessorID '6a1253d2-1785-24fd-91c2-f8e78c745511' \
    ///      lacks permission 'service:write' on \"web\""
    /// );
    /// ```
    pub fn message(&self, accessor: Option<&str>) -> String {
        let anonymous = accessor.is_none_or(|id| id == ANONYMOUS_TOKEN_ID);
        let mut out = String::from(ERR_PERMISSION_DENIED);
        if anonymous {
            out.push_str(": anonymous token");
        } else {
            out.push_str(": token with AccessorID '");
            out.push_str(accessor.unwrap_or_default());
            out.push('\'');
        }
        out.push_str(" lacks permission '");
        out.push_str(&self.permission());
        out.push('\'');
        if let Some(segment) = self.segment.as_deref().filter(|s| !s.is_empty()) {
            out.push_str(" on \"");
            out.push_str(segment);
            out.push('"');
        }
        if anonymous {
            out.push_str(
                ". The anonymous token is used implicitly when a request does not specify a token.",
            );
        }
        out
    }
}

/// Consul's `acl.PermissionDenied(cause)` text: `Permission denied: <cause>`
/// (for refusals that are not about a resource, such as
/// `ACL bootstrap no longer allowed (reset index: N)`).
pub fn permission_denied(cause: &str) -> String {
    format!("{ERR_PERMISSION_DENIED}: {cause}")
}
