//! Intentions: conversion, precedence, ordering, matching, decisions, and
//! the edits behind `/v1/connect/intentions/exact`.

use serde_json::json;

use crate::intentions::{
    Intention, MatchBy, check, compare_precedence, decide, exact, exact_upsert, intentions_of,
    matching, precedence, precedence_with_namespaces, remove_source, sort_by_precedence,
    upsert_source,
};
use crate::{ConfigEntry, ServiceIntentions, SourceIntention, decode};

fn entry(v: serde_json::Value) -> ServiceIntentions {
    let mut e = decode(v).unwrap();
    e.normalize();
    e.validate().unwrap();
    match e {
        ConfigEntry::ServiceIntentions(si) => si,
        other => panic!("{other:?}"),
    }
}

fn allow(name: &str) -> SourceIntention {
    SourceIntention {
        name: name.into(),
        action: "allow".into(),
        ..SourceIntention::default()
    }
}

fn deny(name: &str) -> SourceIntention {
    SourceIntention {
        name: name.into(),
        action: "deny".into(),
        ..SourceIntention::default()
    }
}

/// All intentions of several entries.
fn all(entries: &[ServiceIntentions]) -> Vec<Intention> {
    entries.iter().flat_map(intentions_of).collect()
}

#[test]
fn precedence_values() {
    assert_eq!(precedence("web", "db"), 9);
    assert_eq!(precedence("*", "db"), 8);
    assert_eq!(precedence("web", "*"), 6);
    assert_eq!(precedence("*", "*"), 5);
    assert_eq!(precedence_with_namespaces("*", "*", "default", "db"), 7);
    assert_eq!(precedence_with_namespaces("*", "*", "*", "*"), 1);
}

#[test]
fn intention_json_shape() {
    let mut si = entry(json!({
        "Kind": "service-intentions",
        "Name": "db",
        "Meta": {"team": "dba"},
        "Sources": [{"Name": "web", "Action": "allow", "Description": "web to db"}]
    }));
    si.create_index = 10;
    si.modify_index = 12;
    let ixns = intentions_of(&si);
    assert_eq!(ixns.len(), 1);
    assert_eq!(
        ixns[0].to_json(),
        json!({
            "Description": "web to db",
            "SourceNS": "default",
            "SourceName": "web",
            "DestinationNS": "default",
            "DestinationName": "db",
            "SourceType": "consul",
            "Action": "allow",
            "Meta": {"team": "dba"},
            "Precedence": 9,
            "CreateIndex": 10,
            "ModifyIndex": 12
        })
    );
    assert_eq!(
        ixns[0].to_string(),
        "default/web => default/db (Precedence: 9, Action: ALLOW)"
    );
    assert_eq!(exact(&si, "web"), Some(ixns[0].clone()));
    assert_eq!(exact(&si, "api"), None);
}

#[test]
fn sorting_follows_consul() {
    let db = entry(
        json!({"Kind": "service-intentions", "Name": "db", "Sources": [
            {"Name": "*", "Action": "deny"},
            {"Name": "web", "Action": "allow"},
            {"Name": "api", "Action": "allow"}
        ]}),
    );
    let any = entry(
        json!({"Kind": "service-intentions", "Name": "*", "Sources": [
            {"Name": "*", "Action": "deny"},
            {"Name": "web", "Action": "allow"}
        ]}),
    );
    let mut ixns = all(&[any, db]);
    sort_by_precedence(&mut ixns);
    let order: Vec<String> = ixns
        .iter()
        .map(|i| format!("{}=>{}:{}", i.source_name, i.destination_name, i.precedence))
        .collect();
    assert_eq!(
        order,
        ["api=>db:9", "web=>db:9", "*=>db:8", "web=>*:6", "*=>*:5"]
    );

    // Equal precedence and names: deny sorts before allow.
    let a = intentions_of(&entry(json!({"Kind": "service-intentions", "Name": "db",
        "Sources": [{"Name": "web", "Action": "allow"}]})))
    .remove(0);
    let mut d = a.clone();
    d.action = "deny".into();
    assert_eq!(compare_precedence(&d, &a), std::cmp::Ordering::Less);
    let mut v = vec![a.clone(), d.clone()];
    sort_by_precedence(&mut v);
    assert_eq!(v[0].action, "deny");
    let (allowed, reason) = check(&v, "web", "db", true);
    assert!(!allowed);
    assert!(
        reason.ends_with("(Precedence: 9, Action: DENY)"),
        "{reason}"
    );
}

#[test]
fn matching_by_source_and_destination() {
    let db = entry(
        json!({"Kind": "service-intentions", "Name": "db", "Sources": [
            {"Name": "*", "Action": "deny"},
            {"Name": "web", "Action": "allow"},
            {"Name": "web", "Peer": "other", "Action": "allow"}
        ]}),
    );
    let api = entry(
        json!({"Kind": "service-intentions", "Name": "api", "Sources": [
            {"Name": "web", "Action": "allow"}
        ]}),
    );
    let any = entry(
        json!({"Kind": "service-intentions", "Name": "*", "Sources": [
            {"Name": "*", "Action": "deny"}
        ]}),
    );
    let ixns = all(&[db, api, any]);
    let names = |v: Vec<Intention>| -> Vec<String> {
        v.iter()
            .map(|i| format!("{}=>{}", i.source_name, i.destination_name))
            .collect()
    };
    assert_eq!(
        names(matching(&ixns, MatchBy::Destination, "db")),
        ["web=>db", "web=>db", "*=>db", "*=>*"]
    );
    assert_eq!(
        names(matching(&ixns, MatchBy::Source, "web")),
        ["web=>api", "web=>db", "*=>db", "*=>*"]
    );
    assert_eq!(
        names(matching(&ixns, MatchBy::Source, "billing")),
        ["*=>db", "*=>*"]
    );
    assert_eq!(MatchBy::parse("source"), Some(MatchBy::Source));
    assert_eq!(MatchBy::parse("destination"), Some(MatchBy::Destination));
    assert_eq!(MatchBy::parse("both"), None);
}

#[test]
fn check_exact_wildcard_and_default() {
    let db = entry(
        json!({"Kind": "service-intentions", "Name": "db", "Sources": [
            {"Name": "*", "Action": "deny"},
            {"Name": "web", "Action": "allow"}
        ]}),
    );
    let ixns = intentions_of(&db);
    // The exact intention beats the wildcard.
    assert_eq!(
        check(&ixns, "web", "db", false),
        (
            true,
            "Matched L4 intention: default/web => default/db (Precedence: 9, Action: ALLOW)".into()
        )
    );
    // Others hit the wildcard deny, whatever the default.
    assert_eq!(
        check(&ixns, "api", "db", true),
        (
            false,
            "Matched L4 intention: default/* => default/db (Precedence: 8, Action: DENY)".into()
        )
    );
    // No intention for the destination: the default.
    assert_eq!(
        check(&ixns, "web", "cache", true),
        (true, "Default behavior configured by ACLs".into())
    );
    assert_eq!(
        check(&ixns, "web", "cache", false),
        (false, "Default behavior configured by ACLs".into())
    );
    // A peered source never matches a local one.
    let peered = entry(
        json!({"Kind": "service-intentions", "Name": "db", "Sources": [
            {"Name": "web", "Peer": "other", "Action": "allow"}
        ]}),
    );
    assert!(!check(&intentions_of(&peered), "web", "db", false).0);

    let d = decide(&ixns, "web", "db", false);
    assert!(d.allowed && d.has_exact && !d.has_permissions);
    assert_eq!(d.matched.unwrap().source_name, "web");
    let d = decide(&ixns, "api", "db", false);
    assert!(!d.has_exact);
}

#[test]
fn l7_intentions_deny_l4_checks() {
    let api = entry(
        json!({"Kind": "service-intentions", "Name": "api", "Sources": [
            {"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/v1"}}]}
        ]}),
    );
    let (allowed, reason) = check(&intentions_of(&api), "web", "api", true);
    assert!(!allowed);
    assert_eq!(
        reason,
        "Matched L7 intention: default/web => default/api (Precedence: 9, Permissions: 1)"
    );
    assert!(decide(&intentions_of(&api), "web", "api", true).has_permissions);
}

#[test]
fn upsert_and_remove_sources() {
    // Creating the entry.
    let e = upsert_source(None, "db", allow("web"));
    assert_eq!(e.name, "db");
    assert_eq!(e.sources().len(), 1);
    assert_eq!(e.sources()[0].precedence, 9);
    assert_eq!(e.sources()[0].source_type, "consul");
    assert_ne!(e.hash, 0);
    ConfigEntry::ServiceIntentions(e.clone())
        .validate()
        .unwrap();

    // Adding a wildcard and a second source keeps precedence order.
    let mut e = upsert_source(Some(e), "db", deny("*"));
    e.create_index = 4;
    e.modify_index = 4;
    let e = upsert_source(Some(e), "db", allow("api"));
    let names: Vec<&str> = e.sources().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "api", "*"]);
    assert_eq!((e.create_index, e.modify_index), (4, 4));

    // Replacing by name.
    let e = upsert_source(Some(e), "db", deny("web"));
    assert_eq!(e.sources().len(), 3);
    assert_eq!(e.sources()[0].action, "deny");
    assert!(!check(&intentions_of(&e), "web", "db", true).0);

    // Removing.
    let e = remove_source(e, "api").unwrap();
    assert_eq!(e.sources().len(), 2);
    let e = remove_source(e, "nope").unwrap();
    assert_eq!(e.sources().len(), 2);
    let e = remove_source(e, "web").unwrap();
    assert_eq!(remove_source(e, "*"), None);
}

#[test]
fn exact_upsert_like_the_http_api() {
    let body = Intention::from_json(json!({
        "SourceType": "consul",
        "action": "allow",
        "Description": "from the API",
        "ID": "ignored",
        "SourceName": "ignored-too",
        "Bogus": true
    }))
    .unwrap();
    let e = exact_upsert(None, "web", "db", &body).unwrap();
    let ixn = exact(&e, "web").unwrap();
    assert_eq!(ixn.action, "allow");
    assert_eq!(ixn.description, "from the API");
    assert_eq!(ixn.id, "");
    assert_eq!(ixn.destination_name, "db");

    // Meta may not be set on a new entry...
    let mut with_meta = body.clone();
    with_meta.meta.insert("k".into(), "v".into());
    assert_eq!(
        exact_upsert(None, "web", "db", &with_meta)
            .unwrap_err()
            .to_string(),
        "Meta must not be specified"
    );
    // ...nor changed on an existing one; an unchanged copy is dropped.
    let mut prev = e.clone();
    prev.meta.insert("k".into(), "v".into());
    let mut other_meta = body.clone();
    other_meta.meta.insert("k".into(), "w".into());
    assert_eq!(
        exact_upsert(Some(prev.clone()), "web", "db", &other_meta)
            .unwrap_err()
            .to_string(),
        "Meta must not be specified, or should be unchanged during an update."
    );
    let updated = exact_upsert(Some(prev), "api", "db", &with_meta).unwrap();
    assert_eq!(updated.sources().len(), 2);
    assert!(updated.sources().iter().all(|s| s.legacy_meta.is_empty()));

    // Validation applies.
    let bad = Intention::from_json(json!({"Action": "maybe"})).unwrap();
    assert_eq!(
        exact_upsert(None, "web", "db", &bad)
            .unwrap_err()
            .to_string(),
        "Sources[0].Action must be set to 'allow' or 'deny'"
    );
}
