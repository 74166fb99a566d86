mod denied;
mod eval;
mod parse;
mod props;
mod templates;

use crate::{Access, Grant, Match, Policy, RuleResource, parse_rules};

/// Parses rules that must be valid.
#[track_caller]
fn rules(text: &str) -> Policy {
    match parse_rules(text) {
        Ok(policy) => policy,
        Err(err) => panic!("rules should parse: {err}\n{text}"),
    }
}

/// The error of rules that must be invalid.
#[track_caller]
fn error(text: &str) -> crate::RuleError {
    match parse_rules(text) {
        Ok(policy) => panic!("rules should be refused, got {policy:?}\n{text}"),
        Err(err) => err,
    }
}

fn grant(policy: Access, intentions: Option<Access>) -> Grant {
    Grant { policy, intentions }
}

fn get(policy: &Policy, resource: RuleResource, matching: Match, name: &str) -> Option<Grant> {
    policy.rule(resource, matching, name)
}
