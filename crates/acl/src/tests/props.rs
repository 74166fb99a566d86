//! Property tests: the authorizer against a slow, independent reference
//! evaluation; printing and parsing round trips; no panics on any input.

use proptest::prelude::*;
use serde_json::{Map, Value as Json, json};

use crate::{Access, Authorizer, Match, Policy, Resource, RuleResource, parse_rules};

#[derive(Clone, Debug)]
struct GenRule {
    resource: RuleResource,
    matching: Match,
    label: String,
    policy: Access,
    intentions: Option<Access>,
}

/// acl, keyring, mesh, operator, peering.
const ATTRS: [&str; 5] = ["acl", "keyring", "mesh", "operator", "peering"];

#[derive(Clone, Debug)]
struct GenPolicy {
    attrs: [Option<Access>; 5],
    rules: Vec<GenRule>,
    /// 0: HCL blocks, 1: JSON label -> list of bodies, 2: JSON list of
    /// one-rule objects.
    syntax: u8,
}

fn level() -> impl Strategy<Value = Access> {
    prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::Deny)]
}

fn gen_rule() -> impl Strategy<Value = GenRule> {
    (
        0..RuleResource::ALL.len(),
        any::<bool>(),
        "[ab]{0,3}",
        0..4usize,
        prop::option::of(level()),
    )
        .prop_map(|(r, prefix, label, p, intentions)| {
            let resource = RuleResource::ALL[r];
            let policy = match p {
                0 => Access::Read,
                1 => Access::Write,
                2 => Access::Deny,
                // `list` only where it is valid.
                _ if resource == RuleResource::Key => Access::List,
                _ => Access::Read,
            };
            GenRule {
                resource,
                matching: if prefix { Match::Prefix } else { Match::Exact },
                label,
                policy,
                intentions: intentions.filter(|_| resource == RuleResource::Service),
            }
        })
}

fn gen_policy() -> impl Strategy<Value = GenPolicy> {
    (
        prop::array::uniform5(prop::option::weighted(0.4, level())),
        prop::collection::vec(gen_rule(), 0..12),
        0..3u8,
    )
        .prop_map(|(attrs, rules, syntax)| GenPolicy {
            attrs,
            rules,
            syntax,
        })
}

fn body_json(rule: &GenRule) -> Json {
    let mut body = Map::new();
    body.insert("policy".into(), json!(rule.policy.as_str()));
    if let Some(i) = rule.intentions {
        body.insert("intentions".into(), json!(i.as_str()));
    }
    Json::Object(body)
}

/// The policy written as rules text, in the syntax it asks for.
fn render(p: &GenPolicy) -> String {
    match p.syntax {
        0 => {
            let mut out = String::new();
            for (name, value) in ATTRS.iter().zip(p.attrs) {
                if let Some(v) = value {
                    out.push_str(&format!("{name} = \"{v}\"\n"));
                }
            }
            for r in &p.rules {
                out.push_str(&format!(
                    "{} \"{}\" {{\n  policy = \"{}\"\n",
                    r.resource.keyword(r.matching),
                    r.label,
                    r.policy
                ));
                if let Some(i) = r.intentions {
                    out.push_str(&format!("  intentions = \"{i}\"\n"));
                }
                out.push_str("}\n");
            }
            out
        }
        syntax => {
            let mut top = Map::new();
            for (name, value) in ATTRS.iter().zip(p.attrs) {
                if let Some(v) = value {
                    top.insert((*name).into(), json!(v.as_str()));
                }
            }
            for r in &p.rules {
                let keyword = r.resource.keyword(r.matching);
                if syntax == 1 {
                    // {"service": {"a": [{...}, {...}]}}
                    let labels = top
                        .entry(keyword)
                        .or_insert_with(|| Json::Object(Map::new()));
                    if let Json::Object(labels) = labels {
                        let bodies = labels
                            .entry(r.label.clone())
                            .or_insert_with(|| Json::Array(Vec::new()));
                        if let Json::Array(bodies) = bodies {
                            bodies.push(body_json(r));
                        }
                    }
                } else {
                    // {"service": [{"a": {...}}, {"a": {...}}]}
                    let list = top
                        .entry(keyword)
                        .or_insert_with(|| Json::Array(Vec::new()));
                    if let Json::Array(list) = list {
                        list.push(json!({ r.label.clone(): body_json(r) }));
                    }
                }
            }
            Json::Object(top).to_string()
        }
    }
}

// ------------------------------------------------------------ reference

/// Merge rank, written independently of the crate: deny > write > list > read.
fn rank(a: Access) -> u8 {
    match a {
        Access::Deny => 40,
        Access::Write => 30,
        Access::List => 20,
        Access::Read => 10,
    }
}

fn strongest(levels: impl Iterator<Item = Access>) -> Option<Access> {
    levels.max_by_key(|a| rank(*a))
}

fn allows(level: Access, need: Access) -> bool {
    matches!(
        (level, need),
        (Access::Write, _)
            | (Access::List, Access::List)
            | (Access::List, Access::Read)
            | (Access::Read, Access::Read)
    )
}

struct Reference<'a> {
    rules: Vec<&'a GenRule>,
    attrs: [Option<Access>; 5],
    default_allow: bool,
}

impl<'a> Reference<'a> {
    fn new(policies: &'a [GenPolicy], default_allow: bool) -> Reference<'a> {
        let mut attrs = [None; 5];
        for p in policies {
            for (slot, value) in attrs.iter_mut().zip(p.attrs) {
                *slot = strongest(slot.iter().copied().chain(value));
            }
        }
        Reference {
            rules: policies.iter().flat_map(|p| p.rules.iter()).collect(),
            attrs,
            default_allow,
        }
    }

    /// The rules that govern `name`: the exact ones if any, else the
    /// prefix ones with the longest label.
    fn governing(&self, resource: RuleResource, name: &str) -> Vec<&'a GenRule> {
        let candidates: Vec<&GenRule> = self
            .rules
            .iter()
            .copied()
            .filter(|r| r.resource == resource)
            .collect();
        let exact: Vec<&GenRule> = candidates
            .iter()
            .copied()
            .filter(|r| r.matching == Match::Exact && r.label == name)
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        let prefixes: Vec<&GenRule> = candidates
            .into_iter()
            .filter(|r| r.matching == Match::Prefix && name.starts_with(r.label.as_str()))
            .collect();
        let Some(longest) = prefixes.iter().map(|r| r.label.len()).max() else {
            return Vec::new();
        };
        prefixes
            .into_iter()
            .filter(|r| r.label.len() == longest)
            .collect()
    }

    fn intention_level(rules: &[&GenRule]) -> Option<Access> {
        let policy = strongest(rules.iter().map(|r| r.policy))?;
        Some(
            strongest(rules.iter().filter_map(|r| r.intentions)).unwrap_or(match policy {
                Access::Read | Access::Write => Access::Read,
                _ => Access::Deny,
            }),
        )
    }

    fn with_default(&self, level: Option<Access>, need: Access) -> bool {
        level.map_or(self.default_allow, |l| allows(l, need))
    }

    fn decide(&self, resource: Resource, need: Access, name: &str) -> bool {
        if need == Access::List && resource != Resource::Key {
            return false;
        }
        let attr = |i: usize| self.attrs[i];
        match resource {
            Resource::Acl => attr(0).is_some_and(|l| allows(l, need)),
            Resource::Keyring => self.with_default(attr(1), need),
            Resource::Mesh => self.with_default(attr(2).or(attr(3)), need),
            Resource::Operator => self.with_default(attr(3), need),
            Resource::Peering => self.with_default(attr(4).or(attr(3)), need),
            Resource::Intention => {
                let rules = self.governing(RuleResource::Service, name);
                self.with_default(Self::intention_level(&rules), need)
            }
            other => {
                let rr = RuleResource::ALL
                    .into_iter()
                    .find(|r| r.resource() == other)
                    .expect("labelled resource");
                let rules = self.governing(rr, name);
                self.with_default(strongest(rules.iter().map(|r| r.policy)), need)
            }
        }
    }

    /// Every (match kind, label) of a resource with its merged level.
    fn merged(&self, resource: RuleResource) -> Vec<(Match, String, Access)> {
        let mut out: Vec<(Match, String, Access)> = Vec::new();
        for r in self.rules.iter().filter(|r| r.resource == resource) {
            match out
                .iter_mut()
                .find(|(m, l, _)| *m == r.matching && *l == r.label)
            {
                Some(entry) => entry.2 = strongest([entry.2, r.policy].into_iter()).unwrap(),
                None => out.push((r.matching, r.label.clone(), r.policy)),
            }
        }
        out
    }

    fn merged_intentions(&self) -> Vec<(Match, String, Access)> {
        let mut keys: Vec<(Match, String)> = Vec::new();
        for r in self
            .rules
            .iter()
            .filter(|r| r.resource == RuleResource::Service)
        {
            if !keys.contains(&(r.matching, r.label.clone())) {
                keys.push((r.matching, r.label.clone()));
            }
        }
        keys.into_iter()
            .map(|(m, l)| {
                let rules: Vec<&GenRule> = self
                    .rules
                    .iter()
                    .copied()
                    .filter(|r| {
                        r.resource == RuleResource::Service && r.matching == m && r.label == l
                    })
                    .collect();
                let level = Self::intention_level(&rules).unwrap();
                (m, l, level)
            })
            .collect()
    }

    fn read_all(&self, resource: RuleResource) -> bool {
        let merged = self.merged(resource);
        if merged.iter().any(|(_, _, l)| !allows(*l, Access::Read)) {
            return false;
        }
        merged
            .iter()
            .any(|(m, l, _)| *m == Match::Prefix && l.is_empty())
            || self.default_allow
    }

    fn any_grants(&self, merged: &[(Match, String, Access)], need: Access) -> bool {
        if merged.iter().any(|(_, _, l)| allows(*l, need)) {
            return true;
        }
        let catch_all = merged
            .iter()
            .any(|(m, l, _)| *m == Match::Prefix && l.is_empty());
        !catch_all && self.default_allow
    }

    fn all_grant(&self, merged: &[(Match, String, Access)], need: Access) -> bool {
        if merged.iter().any(|(_, _, l)| !allows(*l, need)) {
            return false;
        }
        merged
            .iter()
            .any(|(m, l, _)| *m == Match::Prefix && l.is_empty())
            || self.default_allow
    }

    fn key_write_prefix(&self, prefix: &str) -> bool {
        let merged = self.merged(RuleResource::Key);
        let base = merged
            .iter()
            .filter(|(m, l, _)| *m == Match::Prefix && prefix.starts_with(l.as_str()))
            .max_by_key(|(_, l, _)| l.len())
            .map(|(_, _, a)| *a);
        if base.is_some_and(|a| a != Access::Write) {
            return false;
        }
        if merged
            .iter()
            .any(|(_, l, a)| l.starts_with(prefix) && *a != Access::Write)
        {
            return false;
        }
        base.is_some() || self.default_allow
    }
}

fn all_names() -> Vec<String> {
    let mut names = vec![String::new()];
    let mut frontier = vec![String::new()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for n in &frontier {
            for c in ['a', 'b'] {
                next.push(format!("{n}{c}"));
            }
        }
        names.extend(next.iter().cloned());
        frontier = next;
    }
    names
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn authorizer_matches_reference(
        policies in prop::collection::vec(gen_policy(), 1..4),
        default_allow in any::<bool>(),
    ) {
        let parsed: Vec<Policy> = policies
            .iter()
            .map(|p| {
                let text = render(p);
                parse_rules(&text).map_err(|e| format!("{e}\n{text}"))
            })
            .collect::<Result<_, _>>()
            .map_err(TestCaseError::fail)?;
        let refs: Vec<&Policy> = parsed.iter().collect();
        let authz = Authorizer::new(&refs, default_allow).with_key_list_policy(true);
        let reference = Reference::new(&policies, default_allow);

        for name in all_names() {
            for resource in Resource::ALL {
                for need in [Access::Read, Access::List, Access::Write] {
                    prop_assert_eq!(
                        authz.decide(resource, need, &name),
                        reference.decide(resource, need, &name),
                        "{:?} {:?} {:?}", resource, need, name
                    );
                }
            }
            prop_assert_eq!(authz.key_write_prefix(&name), reference.key_write_prefix(&name), "key_write_prefix {:?}", name);
        }
        prop_assert_eq!(authz.node_read_all(), reference.read_all(RuleResource::Node));
        prop_assert_eq!(authz.service_read_all(), reference.read_all(RuleResource::Service));
        prop_assert_eq!(
            authz.service_write_any(),
            reference.any_grants(&reference.merged(RuleResource::Service), Access::Write)
        );
        let intentions = reference.merged_intentions();
        prop_assert_eq!(authz.intention_read("*"), reference.any_grants(&intentions, Access::Read));
        prop_assert_eq!(authz.intention_write("*"), reference.all_grant(&intentions, Access::Write));
        // The wrappers agree with decide.
        prop_assert_eq!(authz.acl_read(), authz.decide(Resource::Acl, Access::Read, ""));
        prop_assert_eq!(authz.mesh_write(), authz.decide(Resource::Mesh, Access::Write, ""));
        prop_assert_eq!(authz.service_write("ab"), authz.decide(Resource::Service, Access::Write, "ab"));
        prop_assert_eq!(authz.intention_read("a"), authz.decide(Resource::Intention, Access::Read, "a"));
    }

    #[test]
    fn every_syntax_gives_the_same_policy(p in gen_policy()) {
        let texts: Vec<String> = (0..3u8)
            .map(|syntax| render(&GenPolicy { syntax, ..p.clone() }))
            .collect();
        let first = parse_rules(&texts[0]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for text in &texts[1..] {
            let other = parse_rules(text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&other, &first, "{}", text);
        }
        // Printing and parsing back is the identity.
        let printed = first.to_hcl();
        let reparsed = parse_rules(&printed).map_err(|e| TestCaseError::fail(format!("{e}\n{printed}")))?;
        prop_assert_eq!(&reparsed, &first);
        prop_assert_eq!(reparsed.to_hcl(), printed);
    }

    #[test]
    fn awkward_labels_round_trip(
        labels in prop::collection::vec((any::<String>(), 0..RuleResource::ALL.len(), any::<bool>()), 0..6),
    ) {
        let mut policy = Policy::new();
        for (label, r, prefix) in labels {
            let m = if prefix { Match::Prefix } else { Match::Exact };
            policy.add(RuleResource::ALL[r], m, label, crate::Grant::new(Access::Write));
        }
        let text = policy.to_hcl();
        let back = parse_rules(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(back, policy);
    }

    #[test]
    fn parse_never_panics_on_any_string(text in any::<String>()) {
        let _ = parse_rules(&text);
    }

    #[test]
    fn parse_never_panics_on_token_soup(
        tokens in prop::collection::vec(
            prop_oneof![
                Just("service"), Just("key_prefix"), Just("acl"), Just("operator"),
                Just("namespace"), Just("policy"), Just("intentions"), Just("\"web\""),
                Just("\"\""), Just("\"write\""), Just("\"list\""), Just("\"nope\""),
                Just("{"), Just("}"), Just("["), Just("]"), Just("="), Just(":"),
                Just(","), Just("\n"), Just(" "), Just("#"), Just("1"), Just("true"),
                Just("\"${"), Just("<<EOF\n"), Just("EOF\n"), Just("\\"),
            ],
            0..40,
        )
    ) {
        let text: String = tokens.concat();
        if let Ok(policy) = parse_rules(&text) {
            // Whatever parses prints back to itself.
            prop_assert_eq!(parse_rules(&policy.to_hcl()).ok(), Some(policy));
        }
    }

    #[test]
    fn parse_never_panics_on_json_values(value in json_value()) {
        let text = value.to_string();
        if let Ok(policy) = parse_rules(&text) {
            prop_assert_eq!(parse_rules(&policy.to_hcl()).ok(), Some(policy));
        }
    }
}

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("read"),
            Just("write"),
            Just("list"),
            Just("deny"),
            Just(""),
            Just("x")
        ]
        .prop_map(|s| json!(s)),
    ];
    let key = prop_oneof![
        Just("service".to_owned()),
        Just("key_prefix".to_owned()),
        Just("operator".to_owned()),
        Just("policy".to_owned()),
        Just("intentions".to_owned()),
        Just("partition".to_owned()),
        "[a-c]{0,2}",
    ];
    leaf.prop_recursive(4, 32, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec((key.clone(), inner), 0..4)
                .prop_map(|entries| Json::Object(entries.into_iter().collect())),
        ]
    })
}
