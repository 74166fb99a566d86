//! Robustness: no input makes parsing or matching panic.

use meshgate_filter::{Filter, schema};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const TOKENS: &[&str] = &[
    "Node",
    "Service",
    "Checks",
    "Meta",
    "Tags",
    "Status",
    "Port",
    ".",
    "[",
    "]",
    "(",
    ")",
    " ",
    " ",
    "\t",
    "\n",
    "and",
    "or",
    "not",
    "in",
    "is",
    "empty",
    "contains",
    "matches",
    "==",
    "!=",
    "\"",
    "`",
    "\\",
    "-",
    "0",
    "7",
    "1.5",
    "x",
    "é",
    "_",
    "\"passing\"",
    "`v1`",
    "\"\\x41\"",
    "\"\\q\"",
    "\"(\"",
    "\"[a-z]+\"",
    "Node.Meta[\"k v\"]",
    "Checks.Status",
    "Service.Port",
    "Service.Tags",
    "\"a**\"",
    "\"\\\\d{2,1}\"",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.concat())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z]{0,6}".prop_map(Value::String),
        prop::sample::select(vec!["passing", "critical", "web", "v1", "n1", "80"])
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "Node",
                        "Service",
                        "Checks",
                        "Meta",
                        "Tags",
                        "Status",
                        "Port",
                        "k v",
                        "Passing",
                        "Weights",
                        "TaggedAddresses",
                        "lan",
                        "Address",
                        "Upstreams",
                        "DestinationName",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_never_panic(expr in "\\PC{0,200}") {
        let _ = Filter::parse(&expr, schema::health_service_entries());
    }

    #[test]
    fn arbitrary_bytes_as_text_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let expr = String::from_utf8_lossy(&bytes);
        let _ = Filter::parse(&expr, schema::catalog_service_nodes());
    }

    #[test]
    fn token_soup_never_panics_and_matching_never_panics(expr in token_soup(), item in json_value()) {
        match Filter::parse(&expr, schema::health_service_entries()) {
            Ok(f) => {
                let _ = f.matches(&item);
                let _ = f.filter_json(Value::Array(vec![item]));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn valid_filters_on_arbitrary_json(item in json_value()) {
        for expr in [
            "Checks.Status == passing",
            "Service.Tags contains v1 or not Service.Port != 80",
            "Node.Meta[\"k v\"] matches \"^x\" and Service.TaggedAddresses.lan.Port == 0",
            "Service.Proxy.Upstreams.DestinationName != web and Checks is not empty",
            "Service.Weights.Passing == 1 and Node.Meta is empty",
        ] {
            let f = Filter::parse(expr, schema::health_service_entries()).unwrap();
            let _ = f.matches(&item);
        }
    }

    #[test]
    fn regex_patterns_never_panic(pattern in "[\\\\a-z{}()\\[\\]*+?|^$.:<>=!PQE0-9,é٣-]{0,30}") {
        let expr = format!("Node.Node matches `{pattern}`");
        if let Ok(f) = Filter::parse(&expr, schema::health_service_entries()) {
            let _ = f.matches(&json!({"Node": {"Node": pattern}}));
        }
    }
}
