//! Reading ACL rules text (HCL or JSON) into a [`Policy`].

use std::collections::HashSet;

use meshgate_hcl::{Body, Item, Pos, Value};
use serde_json::{Map, Value as Json};

use crate::access::{Access, Resource};
use crate::policy::{Grant, Match, Policy, RuleResource};
use crate::util::go_quote;

/// What kind of problem a [`RuleError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleErrorKind {
    /// The text is not valid HCL or JSON.
    Syntax,
    /// An attribute is set twice in one body (HCL input only), as HCL1's
    /// `DecodeErrorOnDuplicates` reports.
    DuplicateArgument,
    /// A value has the wrong shape (a string where a block is expected, a
    /// list where a string is expected, a block without its label...).
    Structure,
    /// A top-level key that is not an ACL resource.
    UnknownResource,
    /// A field other than `policy` (and `intentions` for services) inside a
    /// rule.
    UnknownField,
    /// A `policy` (or attribute) value that is not a valid access level for
    /// that resource.
    InvalidPolicy,
    /// An `intentions` value that is not `read`, `write` or `deny`.
    InvalidIntentions,
    /// [`templated_policy`](crate::templated_policy) was given an unknown
    /// template name.
    UnknownTemplate,
    /// [`templated_policy`](crate::templated_policy) was given variables that
    /// do not fit the template.
    InvalidTemplateVariables,
}

/// Invalid ACL rules (or templated-policy input).
///
/// The message starts with Consul's wording for the same problem
/// (`Failed to parse ACL rules: ...`, `Invalid service policy: ...`,
/// `Invalid service intentions policy: ...`); see the crate documentation
/// for every format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    kind: RuleErrorKind,
    message: String,
    resource: Option<String>,
    label: Option<String>,
    pos: Option<Pos>,
}

impl RuleError {
    pub(crate) fn new(kind: RuleErrorKind, message: String) -> RuleError {
        RuleError {
            kind,
            message,
            resource: None,
            label: None,
            pos: None,
        }
    }

    pub(crate) fn set_resource(&mut self, resource: &str) {
        self.resource = Some(resource.to_owned());
    }

    /// The kind of problem.
    pub fn kind(&self) -> RuleErrorKind {
        self.kind
    }

    /// The whole message (the same as `to_string()`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The top-level key involved, as written (`service_prefix`, `acl`, or
    /// the unknown key), when there is one.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The label of the rule involved (`web` in `service "web"`), when there
    /// is one.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The 1-based line of the problem, for HCL input (JSON input carries no
    /// positions beyond syntax errors).
    pub fn line(&self) -> Option<usize> {
        self.pos.map(|p| p.line)
    }

    /// The 1-based column (in characters) of the problem, when the line is
    /// known.
    pub fn column(&self) -> Option<usize> {
        self.pos.map(|p| p.column)
    }
}

/// Parses ACL rules, written in HCL or JSON, as Consul's
/// `acl.NewPolicyFromSource` does, and validates them.
///
/// Every JSON shape HCL1 accepts for a labelled rule is accepted: an object
/// of objects (`{"service": {"web": {"policy": "read"}}}`), a list of such
/// objects (`{"service": [{"web": {...}, "db": {...}}]}`) and a label mapped
/// to a list of bodies (`{"service": {"web": [{...}]}}`). Keys and field
/// names are matched ASCII-case-insensitively and levels are read
/// case-insensitively (as HCL1 and Consul do), and stored in lower case.
/// The same label may appear several times, in one policy or across
/// policies: the rules are merged, deny > write > list > read.
///
/// Empty (or blank) text is an empty policy.
///
/// ```
/// use meshgate_acl::{parse_rules, Access, Match, RuleResource};
///
/// let policy = parse_rules(r#"
/// key_prefix "carbonio-gateway/" { policy = "read" }
/// service "x" { policy = "write" intentions = "read" }
/// operator = "read"
/// "#)?;
/// assert_eq!(policy.operator, Some(Access::Read));
/// let rule = policy.rule(RuleResource::Service, Match::Exact, "x").unwrap();
/// assert_eq!((rule.policy, rule.intentions), (Access::Write, Some(Access::Read)));
///
/// let err = parse_rules("service \"web\" {\n  policy = \"admin\"\n}").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "Invalid service policy: &acl.ServiceRule{Name:\"web\", Policy:\"admin\", Intentions:\"\", \
///      EnterpriseRule:acl.EnterpriseRule{}}: \"admin\" is not a valid access level (line 2, column 3)"
/// );
/// # Ok::<(), meshgate_acl::RuleError>(())
/// ```
pub fn parse_rules(text: &str) -> Result<Policy, RuleError> {
    let body = meshgate_hcl::parse(text).map_err(|err| {
        let mut e = RuleError::new(
            RuleErrorKind::Syntax,
            format!("Failed to parse ACL rules: {err}"),
        );
        e.pos = Some(err.pos());
        e
    })?;
    let json_input = is_json(text);
    if !json_input {
        check_duplicates(&body)?;
    }
    let reader = Reader {
        body: &body,
        json_input,
    };
    let mut raw = Raw::default();
    if let Json::Object(top) = meshgate_hcl::to_json(&body) {
        for (key, value) in &top {
            reader.decode_item(key, value, &mut raw)?;
        }
    }
    reader.validate(raw)
}

/// Whether `parse` reads this text as JSON (same rule as `meshgate_hcl`).
fn is_json(text: &str) -> bool {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    matches!(
        text.trim_start_matches([' ', '\t', '\r', '\n'])
            .chars()
            .next(),
        Some('{') | Some('[')
    )
}

/// HCL1 (`hcl.DecodeErrorOnDuplicates`, which Consul uses) refuses an
/// attribute set twice in the same body; blocks may repeat. Nested bodies
/// are checked before the item that holds them, as HCL1's parser does.
fn check_duplicates(body: &Body) -> Result<(), RuleError> {
    let mut seen: HashSet<&str> = HashSet::new();
    for item in &body.items {
        match item {
            Item::Block { body, .. } => check_duplicates(body)?,
            Item::Attribute { key, value, pos } => {
                check_value_duplicates(value)?;
                if !seen.insert(key.as_str()) {
                    let mut e = RuleError::new(
                        RuleErrorKind::DuplicateArgument,
                        format!(
                            "Failed to parse ACL rules: The argument {} at {pos} was already set. \
                             Each argument can only be defined once",
                            go_quote(key)
                        ),
                    );
                    e.pos = Some(*pos);
                    e.resource = Some(key.clone());
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

fn check_value_duplicates(value: &Value) -> Result<(), RuleError> {
    match value {
        Value::Object(body) => check_duplicates(body),
        Value::List(items) => items.iter().try_for_each(check_value_duplicates),
        _ => Ok(()),
    }
}

/// An attribute resource as read, before validation.
struct RawAttr {
    resource: Resource,
    key: String,
    value: String,
}

/// A labelled rule as read, before validation.
struct RawRule {
    resource: RuleResource,
    matching: Match,
    key: String,
    name: String,
    policy: String,
    intentions: String,
}

#[derive(Default)]
struct Raw {
    attrs: Vec<RawAttr>,
    rules: Vec<RawRule>,
}

/// Top-level keys that Consul CE reads and then ignores: the Enterprise
/// `namespace`/`partition` blocks (CE's policy struct has no such fields, so
/// HCL1 skips them) and the deprecated `identity` rules (decoded, then
/// zeroed by `PolicyRules.Validate`).
const IGNORED_KEYS: [&str; 6] = [
    "namespace",
    "namespace_prefix",
    "partition",
    "partition_prefix",
    "identity",
    "identity_prefix",
];

/// Consul validates the rules in this order and reports the first failure.
#[derive(Clone, Copy)]
enum Group {
    Attr(Resource),
    Rules(RuleResource, Match),
}

const VALIDATION_ORDER: [Group; 19] = [
    Group::Attr(Resource::Acl),
    Group::Rules(RuleResource::Agent, Match::Exact),
    Group::Rules(RuleResource::Agent, Match::Prefix),
    Group::Rules(RuleResource::Key, Match::Exact),
    Group::Rules(RuleResource::Key, Match::Prefix),
    Group::Rules(RuleResource::Node, Match::Exact),
    Group::Rules(RuleResource::Node, Match::Prefix),
    Group::Rules(RuleResource::Service, Match::Exact),
    Group::Rules(RuleResource::Service, Match::Prefix),
    Group::Rules(RuleResource::Session, Match::Exact),
    Group::Rules(RuleResource::Session, Match::Prefix),
    Group::Rules(RuleResource::Event, Match::Exact),
    Group::Rules(RuleResource::Event, Match::Prefix),
    Group::Rules(RuleResource::Query, Match::Exact),
    Group::Rules(RuleResource::Query, Match::Prefix),
    Group::Attr(Resource::Keyring),
    Group::Attr(Resource::Operator),
    Group::Attr(Resource::Mesh),
    Group::Attr(Resource::Peering),
];

const ATTRIBUTES: [Resource; 5] = [
    Resource::Acl,
    Resource::Keyring,
    Resource::Operator,
    Resource::Mesh,
    Resource::Peering,
];

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// The text of a value that HCL1 decodes into a Go string: strings, and
/// numbers (as written).
fn scalar_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

struct Reader<'a> {
    body: &'a Body,
    json_input: bool,
}

impl Reader<'_> {
    fn locate(
        &self,
        key: &str,
        label: Option<&str>,
        field: Option<&str>,
        value: Option<&str>,
    ) -> Option<Pos> {
        if self.json_input {
            None
        } else {
            locate(self.body, key, label, field, value)
        }
    }

    fn structure(
        &self,
        key: &str,
        label: Option<&str>,
        field: Option<&str>,
        kind: RuleErrorKind,
        what: String,
    ) -> RuleError {
        let pos = self.locate(key, label, field, None);
        let at = pos.map(|p| format!("At {p}: ")).unwrap_or_default();
        RuleError {
            kind,
            message: format!("Failed to parse ACL rules: {at}{what}"),
            resource: Some(key.to_owned()),
            label: label.map(str::to_owned),
            pos,
        }
    }

    fn decode_item(&self, key: &str, value: &Json, raw: &mut Raw) -> Result<(), RuleError> {
        if let Some(resource) = ATTRIBUTES
            .into_iter()
            .find(|r| key.eq_ignore_ascii_case(r.as_str()))
        {
            let Some(text) = scalar_text(value) else {
                return Err(self.structure(
                    key,
                    None,
                    None,
                    RuleErrorKind::Structure,
                    format!("{key}: expected a string, found {}", json_kind(value)),
                ));
            };
            raw.attrs.push(RawAttr {
                resource,
                key: key.to_owned(),
                value: text,
            });
            return Ok(());
        }
        if IGNORED_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k)) {
            return Ok(());
        }
        let Some((resource, matching)) = RuleResource::from_keyword(key) else {
            return Err(self.structure(
                key,
                None,
                None,
                RuleErrorKind::UnknownResource,
                format!("unknown ACL resource {}", go_quote(key)),
            ));
        };
        let mut bodies: Vec<(&str, &Map<String, Json>)> = Vec::new();
        match value {
            Json::Object(map) => self.label_map(key, map, &mut bodies)?,
            Json::Array(items) => {
                for item in items {
                    match item {
                        Json::Object(map) => self.label_map(key, map, &mut bodies)?,
                        other => {
                            return Err(self.structure(
                                key,
                                None,
                                None,
                                RuleErrorKind::Structure,
                                format!(
                                    "{key}: expected a list of objects of named rules, found {} in the list",
                                    json_kind(other)
                                ),
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(self.structure(
                    key,
                    None,
                    None,
                    RuleErrorKind::Structure,
                    format!(
                        "{key}: expected a labelled block such as {key} \"<name>\" {{ policy = \"read\" }}, found {}",
                        json_kind(other)
                    ),
                ));
            }
        }
        for (label, body) in bodies {
            let rule = self.decode_body(key, resource, matching, label, body)?;
            raw.rules.push(rule);
        }
        Ok(())
    }

    /// The bodies of an object that maps labels to a body or to a list of
    /// bodies.
    fn label_map<'j>(
        &self,
        key: &str,
        map: &'j Map<String, Json>,
        out: &mut Vec<(&'j str, &'j Map<String, Json>)>,
    ) -> Result<(), RuleError> {
        for (label, value) in map {
            match value {
                Json::Object(body) => out.push((label, body)),
                Json::Array(items) => {
                    for item in items {
                        match item {
                            Json::Object(body) => out.push((label, body)),
                            other => {
                                return Err(self.structure(
                                    key,
                                    Some(label),
                                    None,
                                    RuleErrorKind::Structure,
                                    format!(
                                        "{key} {}: expected a rule body, found {} in the list",
                                        go_quote(label),
                                        json_kind(other)
                                    ),
                                ));
                            }
                        }
                    }
                }
                _ if ["policy", "intentions"]
                    .iter()
                    .any(|f| label.eq_ignore_ascii_case(f)) =>
                {
                    // `service { policy = "read" }`: the name label is missing.
                    return Err(self.structure(
                        key,
                        None,
                        None,
                        RuleErrorKind::Structure,
                        format!(
                            "{key}: missing the name label, as in {key} \"<name>\" {{ {label} = ... }}"
                        ),
                    ));
                }
                other => {
                    return Err(self.structure(
                        key,
                        Some(label),
                        None,
                        RuleErrorKind::Structure,
                        format!(
                            "{key} {}: expected a rule body, found {}",
                            go_quote(label),
                            json_kind(other)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn decode_body(
        &self,
        key: &str,
        resource: RuleResource,
        matching: Match,
        label: &str,
        body: &Map<String, Json>,
    ) -> Result<RawRule, RuleError> {
        let mut rule = RawRule {
            resource,
            matching,
            key: key.to_owned(),
            name: label.to_owned(),
            policy: String::new(),
            intentions: String::new(),
        };
        for (field, value) in body {
            let slot = if field.eq_ignore_ascii_case("policy") {
                &mut rule.policy
            } else if resource.has_intentions() && field.eq_ignore_ascii_case("intentions") {
                &mut rule.intentions
            } else if field.eq_ignore_ascii_case("sentinel")
                && matches!(
                    resource,
                    RuleResource::Key | RuleResource::Node | RuleResource::Service
                )
            {
                // Consul Enterprise's Sentinel code; CE ignores it.
                continue;
            } else {
                let allowed = if resource.has_intentions() {
                    "\"policy\" and \"intentions\" are"
                } else {
                    "only \"policy\" is"
                };
                return Err(self.structure(
                    key,
                    Some(label),
                    Some(field),
                    RuleErrorKind::UnknownField,
                    format!(
                        "{key} {}: unknown field {} ({allowed} allowed)",
                        go_quote(label),
                        go_quote(field)
                    ),
                ));
            };
            match scalar_text(value) {
                Some(text) => *slot = text,
                None => {
                    return Err(self.structure(
                        key,
                        Some(label),
                        Some(field),
                        RuleErrorKind::Structure,
                        format!(
                            "{key} {}: {field}: expected a string, found {}",
                            go_quote(label),
                            json_kind(value)
                        ),
                    ));
                }
            }
        }
        Ok(rule)
    }

    fn validate(&self, raw: Raw) -> Result<Policy, RuleError> {
        for group in VALIDATION_ORDER {
            match group {
                Group::Attr(resource) => {
                    for attr in raw.attrs.iter().filter(|a| a.resource == resource) {
                        self.validate_attr(attr)?;
                    }
                }
                Group::Rules(resource, matching) => {
                    for rule in raw
                        .rules
                        .iter()
                        .filter(|r| r.resource == resource && r.matching == matching)
                    {
                        self.validate_rule(rule)?;
                    }
                }
            }
        }
        let mut policy = Policy::new();
        for attr in &raw.attrs {
            let level = Access::parse(&attr.value);
            let slot = match attr.resource {
                Resource::Acl => &mut policy.acl,
                Resource::Keyring => &mut policy.keyring,
                Resource::Operator => &mut policy.operator,
                Resource::Mesh => &mut policy.mesh,
                _ => &mut policy.peering,
            };
            *slot = Access::merge(*slot, level);
        }
        for rule in raw.rules {
            let Some(level) = Access::parse(&rule.policy) else {
                continue; // unreachable: validated above
            };
            let grant = Grant {
                policy: level,
                intentions: Access::parse(&rule.intentions),
            };
            policy.add(rule.resource, rule.matching, rule.name, grant);
        }
        Ok(policy)
    }

    /// An invalid level; `site` is (key, label, field, value) for locating
    /// it.
    fn invalid(
        &self,
        kind: RuleErrorKind,
        site: (&str, Option<&str>, Option<&str>, &str),
        head: String,
        reason: String,
    ) -> RuleError {
        let (key, label, field, value) = site;
        let pos = self.locate(key, label, field, Some(value));
        let at = pos
            .map(|p| format!(" (line {}, column {})", p.line, p.column))
            .unwrap_or_default();
        RuleError {
            kind,
            message: format!("{head}: {reason}{at}"),
            resource: Some(key.to_owned()),
            label: label.map(str::to_owned),
            pos,
        }
    }

    fn validate_attr(&self, attr: &RawAttr) -> Result<(), RuleError> {
        if attr.value.is_empty() {
            return Ok(());
        }
        match level_problem(&attr.value, false) {
            None => Ok(()),
            Some(reason) => Err(self.invalid(
                RuleErrorKind::InvalidPolicy,
                (&attr.key, None, None, &attr.value),
                format!(
                    "Invalid {} policy: {}",
                    attr.resource.as_str(),
                    go_quote(&attr.value)
                ),
                reason,
            )),
        }
    }

    fn validate_rule(&self, rule: &RawRule) -> Result<(), RuleError> {
        let keyword = rule.resource.keyword(rule.matching);
        if let Some(reason) = level_problem(&rule.policy, rule.resource.allows_list()) {
            return Err(self.invalid(
                RuleErrorKind::InvalidPolicy,
                (&rule.key, Some(&rule.name), Some("policy"), &rule.policy),
                format!("Invalid {keyword} policy: {}", go_dump(rule)),
                reason,
            ));
        }
        if !rule.intentions.is_empty()
            && let Some(reason) = level_problem(&rule.intentions, false)
        {
            return Err(self.invalid(
                RuleErrorKind::InvalidIntentions,
                (
                    &rule.key,
                    Some(&rule.name),
                    Some("intentions"),
                    &rule.intentions,
                ),
                format!("Invalid {keyword} intentions policy: {}", go_dump(rule)),
                reason,
            ));
        }
        Ok(())
    }
}

/// Why a level is not acceptable, if it is not (Consul's `isPolicyValid`).
fn level_problem(value: &str, allow_list: bool) -> Option<String> {
    match Access::parse(value) {
        None if value.is_empty() => Some("the policy is not set".to_owned()),
        None => Some(format!("{} is not a valid access level", go_quote(value))),
        Some(Access::List) if !allow_list => Some(format!(
            "{} is only valid in key and key_prefix rules",
            go_quote(value)
        )),
        Some(_) => None,
    }
}

/// The rule as Go's `%#v` prints Consul's rule struct.
fn go_dump(rule: &RawRule) -> String {
    let (type_name, label_field, enterprise) = match rule.resource {
        RuleResource::Agent => ("AgentRule", "Node", false),
        RuleResource::Event => ("EventRule", "Event", false),
        RuleResource::Key => ("KeyRule", "Prefix", true),
        RuleResource::Node => ("NodeRule", "Name", true),
        RuleResource::Query => ("PreparedQueryRule", "Prefix", false),
        RuleResource::Service => ("ServiceRule", "Name", true),
        RuleResource::Session => ("SessionRule", "Node", false),
    };
    let mut out = format!(
        "&acl.{type_name}{{{label_field}:{}, Policy:{}",
        go_quote(&rule.name),
        go_quote(&rule.policy)
    );
    if rule.resource.has_intentions() {
        out.push_str(", Intentions:");
        out.push_str(&go_quote(&rule.intentions));
    }
    if enterprise {
        out.push_str(", EnterpriseRule:acl.EnterpriseRule{}");
    }
    out.push('}');
    out
}

// ---------------------------------------------------------------------------
// Positions (HCL input only): find where a key, a label or a field was
// written, by walking the parsed body in the same shapes the JSON walk
// accepts.

fn locate(
    body: &Body,
    key: &str,
    label: Option<&str>,
    field: Option<&str>,
    value: Option<&str>,
) -> Option<Pos> {
    let items: Vec<&Item> = body.items_named(key).collect();
    let first = items.first().map(|item| item.pos());
    let Some(label) = label else {
        if let Some(want) = value {
            for item in &items {
                if let Item::Attribute { value: v, pos, .. } = item
                    && value_is(v, want)
                {
                    return Some(*pos);
                }
            }
        }
        return first;
    };
    let mut bodies: Vec<(Option<&Body>, Pos)> = Vec::new();
    for item in &items {
        match item {
            Item::Block {
                labels, body, pos, ..
            } => match labels.first() {
                Some(l) if l == label => bodies.push((Some(body), *pos)),
                Some(_) => {}
                None => label_bodies(body, label, &mut bodies),
            },
            Item::Attribute { value, .. } => value_label_bodies(value, label, &mut bodies),
        }
    }
    if let Some(field) = field {
        let mut fallback = None;
        for body in bodies.iter().filter_map(|(b, _)| *b) {
            for item in &body.items {
                if let Item::Attribute { key, value: v, pos } = item
                    && key.eq_ignore_ascii_case(field)
                {
                    if value.is_none_or(|want| value_is(v, want)) {
                        return Some(*pos);
                    }
                    fallback.get_or_insert(*pos);
                }
            }
        }
        if fallback.is_some() {
            return fallback;
        }
    }
    bodies.first().map(|(_, pos)| *pos).or(first)
}

fn value_is(value: &Value, want: &str) -> bool {
    match value {
        Value::String(s) => s == want,
        Value::Number(n) => n.to_string() == want,
        _ => false,
    }
}

fn value_label_bodies<'a>(value: &'a Value, label: &str, out: &mut Vec<(Option<&'a Body>, Pos)>) {
    match value {
        Value::Object(body) => label_bodies(body, label, out),
        Value::List(items) => {
            for item in items {
                if let Value::Object(body) = item {
                    label_bodies(body, label, out);
                }
            }
        }
        _ => {}
    }
}

fn label_bodies<'a>(body: &'a Body, label: &str, out: &mut Vec<(Option<&'a Body>, Pos)>) {
    for item in body.items.iter().filter(|item| item.key() == label) {
        match item {
            Item::Block { body, pos, .. } => out.push((Some(body), *pos)),
            Item::Attribute {
                value: Value::Object(body),
                pos,
                ..
            } => out.push((Some(body), *pos)),
            Item::Attribute {
                value: Value::List(items),
                pos,
                ..
            } => {
                let before = out.len();
                for v in items {
                    if let Value::Object(body) = v {
                        out.push((Some(body), *pos));
                    }
                }
                if out.len() == before {
                    out.push((None, *pos));
                }
            }
            Item::Attribute { pos, .. } => out.push((None, *pos)),
        }
    }
}
