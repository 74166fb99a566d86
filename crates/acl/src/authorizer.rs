//! Evaluation of merged policies: Consul's policy authorizer chained with
//! the default (static) authorizer.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::access::{Access, Decision, Resource};
use crate::denied::Denied;
use crate::policy::{Match, Policy, RuleResource};

/// The exact and prefix rule stored for one label.
#[derive(Clone, Copy, Debug, Default)]
struct Leaf {
    exact: Option<Access>,
    prefix: Option<Access>,
}

/// The rules of one labelled resource, keyed by label.
///
/// Lookups probe only the label lengths that carry a prefix rule, longest
/// first, so a query costs one map lookup per distinct prefix length (plus
/// one for the exact rule) whatever the length of the name.
#[derive(Clone, Debug, Default)]
struct Tree {
    leaves: BTreeMap<String, Leaf>,
    /// Byte lengths of the labels that have a prefix rule, longest first.
    prefix_lens: Vec<usize>,
}

impl Tree {
    fn set(&mut self, name: &str, matching: Match, level: Access) {
        let leaf = self.leaves.entry(name.to_owned()).or_default();
        match matching {
            Match::Exact => leaf.exact = Some(level),
            Match::Prefix => leaf.prefix = Some(level),
        }
    }

    fn finish(&mut self) {
        let mut lens: Vec<usize> = self
            .leaves
            .iter()
            .filter(|(_, leaf)| leaf.prefix.is_some())
            .map(|(label, _)| label.len())
            .collect();
        lens.sort_unstable_by(|a, b| b.cmp(a));
        lens.dedup();
        self.prefix_lens = lens;
    }

    /// The longest prefix rule whose label is a prefix of `name` (`name`
    /// itself included).
    fn longest_prefix(&self, name: &str) -> Option<Access> {
        self.prefix_lens
            .iter()
            .filter(|&&len| len <= name.len() && name.is_char_boundary(len))
            .find_map(|&len| self.leaves.get(&name[..len]).and_then(|leaf| leaf.prefix))
    }

    /// Consul's `getPolicy`: the exact rule for `name` if there is one, else
    /// the longest matching prefix rule.
    fn lookup(&self, name: &str) -> Option<Access> {
        self.leaves
            .get(name)
            .and_then(|leaf| leaf.exact)
            .or_else(|| self.longest_prefix(name))
    }

    /// The leaves whose label starts with `prefix` (`prefix` included).
    fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Leaf> + 'a {
        self.leaves
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(label, _)| label.starts_with(prefix))
            .map(|(_, leaf)| leaf)
    }

    fn enforce(&self, name: &str, required: Access) -> Decision {
        self.lookup(name)
            .map_or(Decision::Default, |level| level.enforce(required))
    }

    /// Consul's `anyAllowed`: Allow if some rule grants `required`;
    /// otherwise Deny if a catch-all `""` prefix rule exists (it does not
    /// grant), else Default.
    fn any_allowed(&self, required: Access) -> Decision {
        let mut decision = Decision::Default;
        if let Some(level) = self.leaves.get("").and_then(|leaf| leaf.prefix) {
            decision = level.enforce(required);
            if decision == Decision::Allow {
                return Decision::Allow;
            }
        }
        let grants = |level: Option<Access>| level.is_some_and(|l| l.grants(required));
        if self
            .leaves
            .values()
            .any(|leaf| grants(leaf.prefix) || grants(leaf.exact))
        {
            return Decision::Allow;
        }
        decision
    }

    /// Consul's `allAllowed`: Deny if some rule does not grant `required`;
    /// otherwise Allow if a catch-all `""` prefix rule exists, else Default.
    fn all_allowed(&self, required: Access) -> Decision {
        let mut decision = Decision::Default;
        if let Some(level) = self.leaves.get("").and_then(|leaf| leaf.prefix) {
            decision = level.enforce(required);
            if decision == Decision::Deny {
                return Decision::Deny;
            }
        }
        let refuses = |level: Option<Access>| level.is_some_and(|l| !l.grants(required));
        if self
            .leaves
            .values()
            .any(|leaf| refuses(leaf.prefix) || refuses(leaf.exact))
        {
            return Decision::Deny;
        }
        decision
    }
}

/// The compiled rules of an authorizer.
#[derive(Debug, Default)]
struct Rules {
    acl: Option<Access>,
    keyring: Option<Access>,
    mesh: Option<Access>,
    operator: Option<Access>,
    peering: Option<Access>,
    agent: Tree,
    event: Tree,
    intention: Tree,
    key: Tree,
    node: Tree,
    query: Tree,
    service: Tree,
    session: Tree,
}

impl Rules {
    fn compile(policy: &Policy) -> Rules {
        let mut rules = Rules {
            acl: policy.acl,
            keyring: policy.keyring,
            mesh: policy.mesh,
            operator: policy.operator,
            peering: policy.peering,
            ..Rules::default()
        };
        for (key, grant) in &policy.rules {
            let tree = match key.resource {
                RuleResource::Agent => &mut rules.agent,
                RuleResource::Event => &mut rules.event,
                RuleResource::Key => &mut rules.key,
                RuleResource::Node => &mut rules.node,
                RuleResource::Query => &mut rules.query,
                RuleResource::Service => &mut rules.service,
                RuleResource::Session => &mut rules.session,
            };
            tree.set(&key.name, key.matching, grant.policy);
            if key.resource == RuleResource::Service {
                // policy_authorizer.go loadRules: an unstated `intentions`
                // is read for read/write services and deny otherwise.
                let intentions = grant.intentions.unwrap_or(match grant.policy {
                    Access::Read | Access::Write => Access::Read,
                    Access::Deny | Access::List => Access::Deny,
                });
                rules.intention.set(&key.name, key.matching, intentions);
            }
        }
        for tree in [
            &mut rules.agent,
            &mut rules.event,
            &mut rules.intention,
            &mut rules.key,
            &mut rules.node,
            &mut rules.query,
            &mut rules.service,
            &mut rules.session,
        ] {
            tree.finish();
        }
        rules
    }

    fn tree(&self, resource: Resource) -> Option<&Tree> {
        Some(match resource {
            Resource::Agent => &self.agent,
            Resource::Event => &self.event,
            Resource::Intention => &self.intention,
            Resource::Key => &self.key,
            Resource::Node => &self.node,
            Resource::Query => &self.query,
            Resource::Service => &self.service,
            Resource::Session => &self.session,
            _ => return None,
        })
    }
}

fn attribute(level: Option<Access>, required: Access) -> Decision {
    level.map_or(Decision::Default, |l| l.enforce(required))
}

/// Answers ACL questions for one token: its merged policies first, then the
/// default policy — Consul's chained authorizer of a policy authorizer and a
/// static one.
///
/// Cloning is cheap (the compiled rules are shared), and the type is `Send`
/// and `Sync`.
///
/// ```
/// use meshgate_acl::{parse_rules, Authorizer};
///
/// let policy = parse_rules(r#"
/// service_prefix "" { policy = "read" }
/// service "web" { policy = "write" }
/// key_prefix "app/" { policy = "write" }
/// key "app/secret" { policy = "deny" }
/// "#)?;
/// let authz = Authorizer::new(&[&policy], false);
/// assert!(authz.service_write("web"));
/// assert!(!authz.service_write("db"));
/// assert!(authz.service_read("db"));
/// assert!(authz.intention_read("web")); // implied by the service rule
/// assert!(authz.key_write("app/config"));
/// assert!(!authz.key_read("app/secret"));
/// assert!(!authz.key_write_prefix("app/")); // app/secret is not writable
/// assert!(!authz.operator_read()); // no rule: default deny
/// # Ok::<(), meshgate_acl::RuleError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Authorizer {
    rules: Arc<Rules>,
    /// The default policy (`acl.default_policy = "allow"`).
    default_allow: bool,
    /// Whether the default layer also allows ACL management (only for
    /// management authorizers: Consul's `allowAll` refuses `acl:*` even
    /// though it allows everything else).
    allow_manage: bool,
    /// `acl.enable_key_list_policy`.
    key_list_policy: bool,
}

impl Authorizer {
    /// The authorizer of a token with these policies (merged first, deny >
    /// write > list > read), falling back to the default policy:
    /// `default_allow` is `acl.default_policy = "allow"`.
    ///
    /// As in Consul, the default policy never grants `acl:read`/`acl:write`
    /// (Consul's `allowAll` authorizer has no management rights); only an
    /// `acl` rule or [`Authorizer::management`] does.
    pub fn new(policies: &[&Policy], default_allow: bool) -> Authorizer {
        let merged = Policy::merged(policies.iter().copied());
        Authorizer {
            rules: Arc::new(Rules::compile(&merged)),
            default_allow,
            allow_manage: false,
            key_list_policy: false,
        }
    }

    /// No rules and default allow: Consul's `acl.AllowAll()`, which is what
    /// a token without policies gets under `default_policy = "allow"`.
    /// Everything is allowed except ACL management (`acl:read`,
    /// `acl:write`, snapshots).
    ///
    /// Note: with ACLs *disabled*, Consul resolves every request to
    /// `acl.ManageAll()`, i.e. [`Authorizer::management`].
    pub fn allow_all() -> Authorizer {
        Authorizer {
            rules: Arc::new(Rules::default()),
            default_allow: true,
            allow_manage: false,
            key_list_policy: false,
        }
    }

    /// No rules and default deny: Consul's `acl.DenyAll()`.
    pub fn deny_all() -> Authorizer {
        Authorizer {
            default_allow: false,
            ..Authorizer::allow_all()
        }
    }

    /// Everything allowed, ACL management included: Consul's
    /// `acl.ManageAll()` (ACLs disabled, server management token). A token
    /// with the global-management policy gets the same answers from
    /// `Authorizer::new(&[&parse_rules(GLOBAL_MANAGEMENT_RULES)?], ..)`.
    pub fn management() -> Authorizer {
        Authorizer {
            allow_manage: true,
            ..Authorizer::allow_all()
        }
    }

    /// Sets `acl.enable_key_list_policy` (default `false`).
    ///
    /// When enabled, [`Authorizer::key_list`] needs a `list` or `write` rule
    /// (or the default policy) on the prefix. When disabled, Consul performs
    /// no list check at all — listing always proceeds and each returned
    /// entry is filtered with `key:read` — so `key_list` returns `true`;
    /// callers must filter entries with [`Authorizer::key_read`] in both
    /// modes, as Consul does.
    pub fn with_key_list_policy(mut self, enabled: bool) -> Authorizer {
        self.key_list_policy = enabled;
        self
    }

    /// The default policy of this authorizer (also the answer to Consul's
    /// `IntentionDefaultAllow`: policies never decide it).
    pub fn default_allow(&self) -> bool {
        self.default_allow
    }

    /// Whether `acl.enable_key_list_policy` is on.
    pub fn key_list_policy(&self) -> bool {
        self.key_list_policy
    }

    fn default_for(&self, resource: Resource) -> bool {
        if resource == Resource::Acl {
            self.allow_manage
        } else {
            self.default_allow
        }
    }

    /// The decision of the rules alone, before the default policy: `Default`
    /// when no rule applies.
    ///
    /// `access` `List` is only meaningful for [`Resource::Key`]; `List` on
    /// another resource, and `Deny` as a required access, are `Deny` (as
    /// Consul's `acl.Enforce` refuses them). `mesh` and `peering` fall back
    /// to the `operator` rule when unset. For [`Resource::Intention`], the
    /// segment `*` asks about every intention: read needs some rule that
    /// grants intentions read, write needs every rule to grant write
    /// (Consul's `anyAllowed` / `allAllowed`).
    pub fn enforce(&self, resource: Resource, access: Access, segment: &str) -> Decision {
        let rules = &*self.rules;
        if access == Access::Deny || (access == Access::List && resource != Resource::Key) {
            return Decision::Deny;
        }
        match resource {
            Resource::Acl => attribute(rules.acl, access),
            Resource::Keyring => attribute(rules.keyring, access),
            Resource::Operator => attribute(rules.operator, access),
            Resource::Mesh => attribute(rules.mesh.or(rules.operator), access),
            Resource::Peering => attribute(rules.peering.or(rules.operator), access),
            Resource::Intention if segment == "*" => match access {
                Access::Write => rules.intention.all_allowed(Access::Write),
                _ => rules.intention.any_allowed(Access::Read),
            },
            _ => rules
                .tree(resource)
                .map_or(Decision::Default, |tree| tree.enforce(segment, access)),
        }
    }

    /// The final answer: the rules, then the default policy.
    ///
    /// `segment` is ignored for the global resources (`acl`, `keyring`,
    /// `mesh`, `operator`, `peering`). See [`Authorizer::enforce`] for
    /// `List`, `Deny` and the intention wildcard, and
    /// [`Authorizer::with_key_list_policy`] for key listing.
    pub fn decide(&self, resource: Resource, access: Access, segment: &str) -> bool {
        if resource == Resource::Key && access == Access::List && !self.key_list_policy {
            return true;
        }
        self.enforce(resource, access, segment)
            .or(self.default_for(resource))
    }

    /// [`Authorizer::decide`] as a `Result` carrying the permission error.
    pub fn check(&self, resource: Resource, access: Access, segment: &str) -> Result<(), Denied> {
        if self.decide(resource, access, segment) {
            Ok(())
        } else {
            Err(Denied::new(
                resource,
                access,
                resource.is_named().then_some(segment),
            ))
        }
    }

    /// `acl:read`: reading tokens, policies, roles, auth methods.
    pub fn acl_read(&self) -> bool {
        self.decide(Resource::Acl, Access::Read, "")
    }

    /// `acl:write`: managing ACLs.
    pub fn acl_write(&self) -> bool {
        self.decide(Resource::Acl, Access::Write, "")
    }

    /// Saving and restoring snapshots (Consul checks `acl` write).
    pub fn snapshot(&self) -> bool {
        self.acl_write()
    }

    /// `agent:read` on a node.
    pub fn agent_read(&self, node: &str) -> bool {
        self.decide(Resource::Agent, Access::Read, node)
    }

    /// `agent:write` on a node.
    pub fn agent_write(&self, node: &str) -> bool {
        self.decide(Resource::Agent, Access::Write, node)
    }

    /// `event:read` on a user event name.
    pub fn event_read(&self, name: &str) -> bool {
        self.decide(Resource::Event, Access::Read, name)
    }

    /// `event:write` (fire) on a user event name.
    pub fn event_write(&self, name: &str) -> bool {
        self.decide(Resource::Event, Access::Write, name)
    }

    /// `intention:read` for intentions whose destination is `service`;
    /// `*` asks whether some intentions can be read (see
    /// [`Authorizer::enforce`]).
    pub fn intention_read(&self, service: &str) -> bool {
        self.decide(Resource::Intention, Access::Read, service)
    }

    /// `intention:write` for intentions whose destination is `service`;
    /// `*` needs write on every intention rule.
    pub fn intention_write(&self, service: &str) -> bool {
        self.decide(Resource::Intention, Access::Write, service)
    }

    /// Whether traffic with no matching intention is allowed (the default
    /// policy; rules never decide it).
    pub fn intention_default_allow(&self) -> bool {
        self.default_allow
    }

    /// `key:read`.
    pub fn key_read(&self, key: &str) -> bool {
        self.decide(Resource::Key, Access::Read, key)
    }

    /// `key:list` on a prefix; always `true` unless
    /// [`Authorizer::with_key_list_policy`] is on.
    pub fn key_list(&self, key: &str) -> bool {
        self.decide(Resource::Key, Access::List, key)
    }

    /// `key:write`.
    pub fn key_write(&self, key: &str) -> bool {
        self.decide(Resource::Key, Access::Write, key)
    }

    /// Whether every key under `prefix` may be written (recursive delete,
    /// `delete-tree`): the longest prefix rule governing `prefix` must be
    /// write, and no rule (exact or prefix) whose label starts with `prefix`
    /// may be anything but write. With no governing prefix rule and no rule
    /// below, the default policy decides. Permission errors use
    /// `'key:write'` on the prefix.
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        let tree = &self.rules.key;
        let base = tree.longest_prefix(prefix);
        if base.is_some_and(|level| level != Access::Write) {
            return false;
        }
        let not_write = |level: Option<Access>| level.is_some_and(|l| l != Access::Write);
        if tree
            .under(prefix)
            .any(|leaf| not_write(leaf.prefix) || not_write(leaf.exact))
        {
            return false;
        }
        base.is_some() || self.default_allow
    }

    /// `keyring:read`.
    pub fn keyring_read(&self) -> bool {
        self.decide(Resource::Keyring, Access::Read, "")
    }

    /// `keyring:write`.
    pub fn keyring_write(&self) -> bool {
        self.decide(Resource::Keyring, Access::Write, "")
    }

    /// `mesh:read` (the `operator` rule when `mesh` is unset).
    pub fn mesh_read(&self) -> bool {
        self.decide(Resource::Mesh, Access::Read, "")
    }

    /// `mesh:write` (the `operator` rule when `mesh` is unset).
    pub fn mesh_write(&self) -> bool {
        self.decide(Resource::Mesh, Access::Write, "")
    }

    /// `peering:read` (the `operator` rule when `peering` is unset).
    pub fn peering_read(&self) -> bool {
        self.decide(Resource::Peering, Access::Read, "")
    }

    /// `peering:write` (the `operator` rule when `peering` is unset).
    pub fn peering_write(&self) -> bool {
        self.decide(Resource::Peering, Access::Write, "")
    }

    /// `node:read`.
    pub fn node_read(&self, name: &str) -> bool {
        self.decide(Resource::Node, Access::Read, name)
    }

    /// Whether every node can be read: no node rule (exact or prefix) may
    /// be `deny`, and then a `node_prefix ""` rule allows, else the default
    /// policy decides (Consul's `NodeReadAll`). Permission errors use
    /// [`Denied::node_read_all`].
    pub fn node_read_all(&self) -> bool {
        self.rules
            .node
            .all_allowed(Access::Read)
            .or(self.default_allow)
    }

    /// `node:write`.
    pub fn node_write(&self, name: &str) -> bool {
        self.decide(Resource::Node, Access::Write, name)
    }

    /// `operator:read`.
    pub fn operator_read(&self) -> bool {
        self.decide(Resource::Operator, Access::Read, "")
    }

    /// `operator:write`.
    pub fn operator_write(&self) -> bool {
        self.decide(Resource::Operator, Access::Write, "")
    }

    /// `query:read` on a prepared-query name.
    pub fn query_read(&self, name: &str) -> bool {
        self.decide(Resource::Query, Access::Read, name)
    }

    /// `query:write` on a prepared-query name.
    pub fn query_write(&self, name: &str) -> bool {
        self.decide(Resource::Query, Access::Write, name)
    }

    /// `service:read`.
    pub fn service_read(&self, name: &str) -> bool {
        self.decide(Resource::Service, Access::Read, name)
    }

    /// Whether every service can be read: no service rule may be `deny`,
    /// and then a `service_prefix ""` rule allows, else the default policy
    /// decides (Consul's `ServiceReadAll`). Permission errors use
    /// [`Denied::service_read_all`].
    pub fn service_read_all(&self) -> bool {
        self.rules
            .service
            .all_allowed(Access::Read)
            .or(self.default_allow)
    }

    /// Whether every service whose name starts with `prefix` can be read
    /// (Consul's `ServiceReadPrefix`): the longest prefix rule governing
    /// `prefix` decides, then any `deny` rule whose label starts with
    /// `prefix` refuses; with neither, the default policy decides.
    pub fn service_read_prefix(&self, prefix: &str) -> bool {
        // Only read and write count as granting here (Consul's switch).
        let grants = |level: Access| matches!(level, Access::Read | Access::Write);
        let tree = &self.rules.service;
        let mut decision = tree
            .longest_prefix(prefix)
            .map_or(Decision::Default, |level| {
                if grants(level) {
                    Decision::Allow
                } else {
                    Decision::Deny
                }
            });
        let refuses = |level: Option<Access>| level.is_some_and(|l| !grants(l));
        if tree
            .under(prefix)
            .any(|leaf| refuses(leaf.prefix) || refuses(leaf.exact))
        {
            decision = Decision::Deny;
        }
        decision.or(self.default_allow)
    }

    /// `service:write`.
    pub fn service_write(&self, name: &str) -> bool {
        self.decide(Resource::Service, Access::Write, name)
    }

    /// Whether some service can be written: any service rule granting write
    /// allows; otherwise a `service_prefix ""` rule refuses, else the
    /// default policy decides (Consul's `ServiceWriteAny`). Permission
    /// errors use [`Denied::service_write_any`].
    pub fn service_write_any(&self) -> bool {
        self.rules
            .service
            .any_allowed(Access::Write)
            .or(self.default_allow)
    }

    /// `session:read` on a node.
    pub fn session_read(&self, node: &str) -> bool {
        self.decide(Resource::Session, Access::Read, node)
    }

    /// `session:write` (create sessions) on a node.
    pub fn session_write(&self, node: &str) -> bool {
        self.decide(Resource::Session, Access::Write, node)
    }
}
