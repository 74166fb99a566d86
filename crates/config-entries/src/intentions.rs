//! Intentions as the `/v1/connect/intentions` API shows them, derived from
//! `service-intentions` config entries, and Consul's evaluation rules.
//!
//! Since Consul 1.9 intentions live inside `service-intentions` config
//! entries (one entry per destination, one source per intention). The
//! intention API presents each source as a flat [`Intention`]; this module
//! converts between the two and implements matching, precedence ordering and
//! the allow/deny decision.
//!
//! Names are service names in the `default` namespace (meshgate, like
//! Consul CE, has no namespaces); `*` is the wildcard.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::service_intentions::{
    IntentionJwtRequirement, IntentionPermission, ServiceIntentions, SourceIntention,
    compute_precedence,
};
use crate::{ConfigEntry, ValidationError};

/// The namespace every name lives in.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One intention, in the JSON shape of Consul's `structs.Intention` (what
/// `GET /v1/connect/intentions/exact`, `.../match` and the list endpoint
/// return).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Intention {
    /// Creation time (legacy intentions only), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Update time (legacy intentions only), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Legacy UUID; empty for config-entry intentions.
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Free-form description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Source namespace (`default`).
    #[serde(rename = "SourceNS")]
    pub source_ns: String,
    /// Source service name or `*`.
    pub source_name: String,
    /// Destination namespace (`default`).
    #[serde(rename = "DestinationNS")]
    pub destination_ns: String,
    /// Destination service name or `*`.
    pub destination_name: String,
    /// Source partition (Enterprise; empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_partition: String,
    /// Destination partition (Enterprise; empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_partition: String,
    /// Cluster peer of the source.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_peer: String,
    /// Sameness group of the source (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_sameness_group: String,
    /// Always `consul`.
    pub source_type: String,
    /// `allow` or `deny` (empty when `Permissions` are set).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// L7 permissions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<IntentionPermission>,
    /// JWT requirements of the destination.
    #[serde(rename = "JWT", skip_serializing_if = "Option::is_none")]
    pub jwt: Option<IntentionJwtRequirement>,
    /// The enclosing config entry's `Meta`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Evaluation precedence (higher first).
    pub precedence: i64,
    /// Raft index of the enclosing config entry's creation.
    pub create_index: u64,
    /// Raft index of the enclosing config entry's last change.
    pub modify_index: u64,
}

impl Intention {
    /// Reads a request body of the intention API (`PUT .../exact`, legacy
    /// `POST`): field names case-insensitive, unknown fields ignored (Go's
    /// `encoding/json`).
    pub fn from_json(value: serde_json::Value) -> Result<Intention, String> {
        meshgate_types::lenient::from_value(value, meshgate_types::lenient::Options::default())
            .map_err(|e| e.to_string())
    }

    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Whether the intention carries L7 permissions.
    pub fn has_permissions(&self) -> bool {
        !self.permissions.is_empty()
    }

    /// The source part of a config entry for this intention (Consul's
    /// `ToSourceIntention(false)`): precedence is recomputed by
    /// normalization, `Meta` becomes `LegacyMeta` (which validation rejects
    /// unless empty; see [`exact_upsert`]).
    pub fn to_source_intention(&self) -> SourceIntention {
        SourceIntention {
            name: self.source_name.clone(),
            action: self.action.clone(),
            permissions: self.permissions.clone(),
            precedence: 0,
            legacy_id: self.id.clone(),
            source_type: self.source_type.clone(),
            description: self.description.clone(),
            legacy_meta: self.meta.clone(),
            legacy_create_time: None,
            legacy_update_time: None,
            peer: self.source_peer.clone(),
            sameness_group: self.source_sameness_group.clone(),
        }
    }
}

/// Consul's `Intention.String()`:
/// `default/web => default/db (Precedence: 9, Action: ALLOW)`.
impl fmt::Display for Intention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id_part = if self.id.is_empty() {
            String::new()
        } else {
            format!("ID: {}, ", self.id)
        };
        let mut src_cluster = String::new();
        if !self.source_partition.is_empty() {
            src_cluster = format!("{}/", self.source_partition);
        }
        if !self.source_peer.is_empty() {
            src_cluster = format!("peer({})/", self.source_peer);
        }
        if !self.source_sameness_group.is_empty() {
            src_cluster = format!("sameness-group({})/", self.source_sameness_group);
        }
        let dst_partition = if self.destination_partition.is_empty() {
            String::new()
        } else {
            format!("{}/", self.destination_partition)
        };
        let detail = if self.permissions.is_empty() {
            format!("Action: {}", self.action.to_uppercase())
        } else {
            format!("Permissions: {}", self.permissions.len())
        };
        write!(
            f,
            "{src_cluster}{}/{} => {dst_partition}{}/{} ({id_part}Precedence: {}, {detail})",
            self.source_ns,
            self.source_name,
            self.destination_ns,
            self.destination_name,
            self.precedence
        )
    }
}

/// The intention of one source of `entry` (Consul's `ToIntention`).
pub fn intention_of(entry: &ServiceIntentions, src: &SourceIntention) -> Intention {
    let meta = if src.legacy_id.is_empty() {
        entry.meta.clone()
    } else {
        src.legacy_meta.clone()
    };
    Intention {
        created_at: src.legacy_create_time.clone(),
        updated_at: src.legacy_update_time.clone(),
        id: src.legacy_id.clone(),
        description: src.description.clone(),
        source_ns: DEFAULT_NAMESPACE.to_owned(),
        source_name: src.name.clone(),
        destination_ns: DEFAULT_NAMESPACE.to_owned(),
        destination_name: entry.name.clone(),
        source_partition: String::new(),
        destination_partition: String::new(),
        source_peer: src.peer.clone(),
        source_sameness_group: src.sameness_group.clone(),
        source_type: src.source_type.clone(),
        action: src.action.clone(),
        permissions: src.permissions.clone(),
        jwt: entry.jwt.clone(),
        meta,
        precedence: src.precedence,
        create_index: entry.create_index,
        modify_index: entry.modify_index,
    }
}

/// All intentions of a service-intentions entry, in the entry's order
/// (which is descending precedence once normalized).
pub fn intentions_of(entry: &ServiceIntentions) -> Vec<Intention> {
    entry
        .sources()
        .iter()
        .map(|src| intention_of(entry, src))
        .collect()
}

/// The intention for `source` in `entry`, if any (what
/// `GET /v1/connect/intentions/exact` returns). Peered sources are not
/// matched.
pub fn exact(entry: &ServiceIntentions, source: &str) -> Option<Intention> {
    entry
        .sources()
        .iter()
        .find(|s| s.name == source && s.peer.is_empty())
        .map(|s| intention_of(entry, s))
}

/// Consul's precedence for a source and a destination name (`*` is the
/// wildcard): exact→exact 9, `*`→exact 8, exact→`*` 6, `*`→`*` 5.
pub fn precedence(source: &str, destination: &str) -> i32 {
    compute_precedence(DEFAULT_NAMESPACE, source, DEFAULT_NAMESPACE, destination) as i32
}

/// The same with namespaces (`*` allowed): values 3–9.
pub fn precedence_with_namespaces(
    source_ns: &str,
    source: &str,
    destination_ns: &str,
    destination: &str,
) -> i32 {
    compute_precedence(source_ns, source, destination_ns, destination) as i32
}

/// Consul's `IntentionPrecedenceSorter`: higher precedence first; ties are
/// broken on (source sameness group, source peer, source partition, source
/// namespace, source name, destination partition, destination namespace,
/// destination name), then `deny` before `allow`.
pub fn compare_precedence(a: &Intention, b: &Intention) -> Ordering {
    b.precedence
        .cmp(&a.precedence)
        .then_with(|| a.source_sameness_group.cmp(&b.source_sameness_group))
        .then_with(|| a.source_peer.cmp(&b.source_peer))
        .then_with(|| a.source_partition.cmp(&b.source_partition))
        .then_with(|| a.source_ns.cmp(&b.source_ns))
        .then_with(|| a.source_name.cmp(&b.source_name))
        .then_with(|| a.destination_partition.cmp(&b.destination_partition))
        .then_with(|| a.destination_ns.cmp(&b.destination_ns))
        .then_with(|| a.destination_name.cmp(&b.destination_name))
        .then_with(|| action_rank(a).cmp(&action_rank(b)))
}

fn action_rank(i: &Intention) -> u8 {
    match i.action.as_str() {
        "deny" => 0,
        "allow" => 1,
        _ => 2,
    }
}

/// Sorts intentions into evaluation order (see [`compare_precedence`]).
pub fn sort_by_precedence(intentions: &mut [Intention]) {
    intentions.sort_by(compare_precedence);
}

/// Which end of an intention a match query looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchBy {
    /// Intentions whose source matches the name.
    Source,
    /// Intentions whose destination matches the name.
    Destination,
}

impl MatchBy {
    /// Parses the `by=` query parameter (`source` or `destination`).
    pub fn parse(s: &str) -> Option<MatchBy> {
        match s {
            "source" => Some(MatchBy::Source),
            "destination" => Some(MatchBy::Destination),
            _ => None,
        }
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    pattern == "*" || pattern == name
}

/// The intentions that apply to `name` on the `by` end (the name itself or
/// a wildcard), in evaluation order: what
/// `GET /v1/connect/intentions/match?by=...&name=...` returns for one name.
/// Sources from cluster peers never match a local source name.
pub fn matching(intentions: &[Intention], by: MatchBy, name: &str) -> Vec<Intention> {
    let mut out: Vec<Intention> = intentions
        .iter()
        .filter(|i| match by {
            MatchBy::Source => {
                i.source_peer.is_empty()
                    && name_matches(&i.source_ns, DEFAULT_NAMESPACE)
                    && name_matches(&i.source_name, name)
            }
            MatchBy::Destination => {
                name_matches(&i.destination_ns, DEFAULT_NAMESPACE)
                    && name_matches(&i.destination_name, name)
            }
        })
        .cloned()
        .collect();
    sort_by_precedence(&mut out);
    out
}

/// The outcome of evaluating intentions for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the connection is allowed (L7 intentions count as deny).
    pub allowed: bool,
    /// The deciding intention, if one matched.
    pub matched: Option<Intention>,
    /// The deciding intention has L7 permissions.
    pub has_permissions: bool,
    /// The deciding intention names both services exactly.
    pub has_exact: bool,
    /// Consul's reason text (as `/v1/agent/connect/authorize` gives it).
    pub reason: String,
}

/// Evaluates `intentions` for a connection from `source` to `destination`:
/// the matching intention with the highest precedence decides; with none,
/// `default_allow` (the ACL default policy; allow when ACLs are off).
pub fn decide(
    intentions: &[Intention],
    source: &str,
    destination: &str,
    default_allow: bool,
) -> Decision {
    let found = matching(intentions, MatchBy::Source, source)
        .into_iter()
        .find(|i| {
            name_matches(&i.destination_ns, DEFAULT_NAMESPACE)
                && name_matches(&i.destination_name, destination)
        });
    match found {
        Some(ixn) => {
            let has_permissions = ixn.has_permissions();
            let allowed = !has_permissions && ixn.action == "allow";
            let reason = if has_permissions {
                format!("Matched L7 intention: {ixn}")
            } else {
                format!("Matched L4 intention: {ixn}")
            };
            Decision {
                allowed,
                has_permissions,
                has_exact: ixn.source_name != "*" && ixn.destination_name != "*",
                matched: Some(ixn),
                reason,
            }
        }
        None => Decision {
            allowed: default_allow,
            matched: None,
            has_permissions: false,
            has_exact: false,
            reason: "Default behavior configured by ACLs".to_owned(),
        },
    }
}

/// Whether a connection from `source` to `destination` is allowed, and why
/// (`Matched L4 intention: default/web => default/db (Precedence: 9,
/// Action: ALLOW)`, `Default behavior configured by ACLs`). L7 intentions
/// count as deny, as in `GET /v1/connect/intentions/check`.
pub fn check(
    intentions: &[Intention],
    source: &str,
    destination: &str,
    default_allow: bool,
) -> (bool, String) {
    let d = decide(intentions, source, destination, default_allow);
    (d.allowed, d.reason)
}

fn normalized(entry: ServiceIntentions) -> ServiceIntentions {
    let mut ce = ConfigEntry::ServiceIntentions(entry);
    ce.normalize();
    match ce {
        ConfigEntry::ServiceIntentions(e) => e,
        _ => unreachable!("normalize keeps the kind"),
    }
}

/// Inserts or replaces the source named like `source` in the
/// service-intentions entry of `destination` (creating the entry when
/// `entry` is `None`), then normalizes it: Consul's upsert of
/// `PUT /v1/connect/intentions/exact`. The caller validates the result.
pub fn upsert_source(
    entry: Option<ServiceIntentions>,
    destination: &str,
    source: SourceIntention,
) -> ServiceIntentions {
    let entry = match entry {
        None => ServiceIntentions {
            name: destination.to_owned(),
            sources: Some(vec![source]),
            ..ServiceIntentions::default()
        },
        Some(mut e) => {
            let sources = e.sources.get_or_insert_with(Vec::new);
            match sources.iter_mut().find(|s| s.name == source.name) {
                Some(slot) => *slot = source,
                None => sources.push(source),
            }
            e
        }
    };
    normalized(entry)
}

/// Removes the source named `source`; `None` when no source is left (the
/// entry is then deleted, as Consul does). An entry without that source is
/// returned unchanged (deleting is idempotent).
pub fn remove_source(mut entry: ServiceIntentions, source: &str) -> Option<ServiceIntentions> {
    let Some(sources) = entry.sources.as_mut() else {
        return Some(entry);
    };
    let Some(pos) = sources.iter().position(|s| s.name == source) else {
        return Some(entry);
    };
    sources.remove(pos);
    if sources.is_empty() {
        return None;
    }
    Some(normalized(entry))
}

/// The legacy (ID-based) intention API's check of a request body (Consul's
/// `Intention.Validate`): names, action, source type and metadata; L7
/// permissions are for config entries only.
pub fn legacy_validate(ixn: &Intention) -> Result<(), ValidationError> {
    let mut errs = Vec::new();
    for (what, name) in [
        ("SourceName", &ixn.source_name),
        ("DestinationName", &ixn.destination_name),
    ] {
        if name.is_empty() {
            errs.push(format!("{what} must be set"));
        } else if name != "*" && name.contains('*') {
            errs.push(format!(
                "{what}: wildcard character '*' cannot be used with partial values"
            ));
        }
    }
    errs.extend(crate::validate::meta_errors(&ixn.meta));
    if !ixn.permissions.is_empty() {
        errs.push("Permissions are not supported on legacy intentions".to_owned());
    } else if ixn.action != "allow" && ixn.action != "deny" {
        errs.push("Action must be set to 'allow' or 'deny'".to_owned());
    }
    if ixn.source_type != "consul" {
        errs.push("SourceType must be set to 'consul'".to_owned());
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ValidationError::multi(errs))
    }
}

/// Whether the legacy API may edit `entry`: only while every source of it
/// came from that API (Consul refuses once the destination was edited as a
/// service-intentions config entry).
fn legacy_allowed(entry: Option<&ServiceIntentions>) -> Result<(), ValidationError> {
    match entry {
        Some(e) if !e.is_legacy() => Err(ValidationError::single(format!(
            "cannot use legacy intention API to edit intentions with a destination of {} after editing them via a service-intentions config entry",
            crate::decode::go_quote(&e.name)
        ))),
        _ => Ok(()),
    }
}

/// The source of a legacy intention: its ID, metadata and times kept.
fn legacy_source(ixn: &Intention, id: &str, created: &str, updated: &str) -> SourceIntention {
    let mut src = ixn.to_source_intention();
    src.legacy_id = id.to_owned();
    src.legacy_create_time = Some(created.to_owned());
    src.legacy_update_time = Some(updated.to_owned());
    src
}

/// `POST /v1/connect/intentions`: adds the intention `ixn` (validated by
/// [`legacy_validate`]) with the new `id` to its destination's entry `prev`;
/// `now` is RFC 3339. A source already present there is an error.
pub fn legacy_create(
    prev: Option<ServiceIntentions>,
    ixn: &Intention,
    id: &str,
    now: &str,
) -> Result<ServiceIntentions, ValidationError> {
    legacy_allowed(prev.as_ref())?;
    let src = legacy_source(ixn, id, now, now);
    let mut entry = prev.unwrap_or_else(|| ServiceIntentions {
        name: ixn.destination_name.clone(),
        ..ServiceIntentions::default()
    });
    entry.sources.get_or_insert_with(Vec::new).push(src);
    entry.normalize_legacy();
    entry.validate_legacy()?;
    Ok(entry)
}

/// `PUT /v1/connect/intentions/:id`: replaces the intention `id` of `entry`
/// (its destination) with `ixn`, keeping its creation time. The
/// destination cannot change.
pub fn legacy_update(
    entry: ServiceIntentions,
    id: &str,
    ixn: &Intention,
    now: &str,
) -> Result<ServiceIntentions, ValidationError> {
    legacy_allowed(Some(&entry))?;
    if ixn.destination_name != entry.name {
        return Err(ValidationError::single(
            "Cannot modify Destination partition/namespace/name for an intention once it exists.",
        ));
    }
    let mut entry = entry;
    let sources = entry.sources.get_or_insert_with(Vec::new);
    let Some(slot) = sources.iter_mut().find(|s| s.legacy_id == id) else {
        return Err(ValidationError::single(format!(
            "Cannot modify non-existent intention: '{id}'"
        )));
    };
    let created = slot
        .legacy_create_time
        .clone()
        .unwrap_or_else(|| now.to_owned());
    *slot = legacy_source(ixn, id, &created, now);
    entry.normalize_legacy();
    entry.validate_legacy()?;
    Ok(entry)
}

/// `DELETE /v1/connect/intentions/:id`: removes the intention `id` from
/// `entry`; `None` when no source is left (the entry is then deleted).
pub fn legacy_delete(mut entry: ServiceIntentions, id: &str) -> Option<ServiceIntentions> {
    let sources = entry.sources.get_or_insert_with(Vec::new);
    sources.retain(|s| s.legacy_id != id);
    if sources.is_empty() {
        return None;
    }
    entry.normalize_legacy();
    Some(entry)
}

/// The destination whose entry holds the intention with legacy `id`, and
/// that intention.
pub fn find_legacy<'a>(
    entries: impl IntoIterator<Item = &'a ServiceIntentions>,
    id: &str,
) -> Option<(String, Intention)> {
    entries.into_iter().find_map(|e| {
        e.sources()
            .iter()
            .find(|s| !id.is_empty() && s.legacy_id == id)
            .map(|s| (e.name.clone(), intention_of(e, s)))
    })
}

/// The whole `PUT /v1/connect/intentions/exact?source=S&destination=D`
/// write: `body` is the decoded request body (its identity fields are
/// replaced by `source` and `destination`); `prev` the current
/// service-intentions entry of `destination`. Applies Consul's rule on
/// `Meta` (not allowed, except an unchanged copy of the entry's `Meta`),
/// upserts, normalizes and validates. Returns the entry to store.
pub fn exact_upsert(
    prev: Option<ServiceIntentions>,
    source: &str,
    destination: &str,
    body: &Intention,
) -> Result<ServiceIntentions, ValidationError> {
    let mut ixn = body.clone();
    ixn.id.clear();
    ixn.source_name = source.to_owned();
    ixn.source_ns = DEFAULT_NAMESPACE.to_owned();
    ixn.destination_name = destination.to_owned();
    ixn.destination_ns = DEFAULT_NAMESPACE.to_owned();
    if !ixn.meta.is_empty() {
        match &prev {
            None => return Err(ValidationError::single("Meta must not be specified")),
            Some(p) if p.meta != ixn.meta => {
                return Err(ValidationError::single(
                    "Meta must not be specified, or should be unchanged during an update.",
                ));
            }
            Some(_) => ixn.meta.clear(),
        }
    }
    let entry = upsert_source(prev, destination, ixn.to_source_intention());
    ConfigEntry::ServiceIntentions(entry.clone()).validate()?;
    Ok(entry)
}
