//! ACLs end to end: the scenario's policy and token, enforcement and
//! filtering, token sources, agent tokens, and a walk over every route.

use std::collections::BTreeMap;
use std::time::Duration;

use meshgate_test_support::{Agent, AgentBuilder};
use serde_json::{Value, json};

use crate::BIN;

pub const ROOT: &str = "2b0e5a5c-1b5b-4c36-9d1e-5c0b5c7c1a11";

/// HCL for an agent with ACLs on, deny by default, and `ROOT` as the
/// initial management token.
pub fn acl_config(default_policy: &str) -> String {
    format!(
        r#"acl {{
  enabled = true
  default_policy = "{default_policy}"
  down_policy = "extend-cache"
  tokens {{
    initial_management = "{ROOT}"
  }}
}}
"#
    )
}

/// A dev agent with ACLs enforced (default deny).
pub async fn acl_agent() -> Agent {
    AgentBuilder::dev(BIN)
        .args(["-node", "test-node"])
        .config_file("acl.hcl", &acl_config("deny"))
        .start()
        .await
}

/// The scenario's `policies.json`, verbatim.
pub const SCENARIO_POLICY: &str = r#"{
  "key_prefix": [ { "carbonio-gateway/": { "policy": "read" } } ],
  "node_prefix": [ { "": { "policy": "read" } } ],
  "service": [ { "carbonio-gateway": { "policy": "write" },
                 "carbonio-files-db": { "policy": "write" } } ]
}"#;

/// Sends a request with an optional `X-Consul-Token`.
pub async fn call(
    a: &Agent,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = a.http.request(m, a.url(path));
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    // Streams (the monitor) never end: read what arrives in a moment.
    let text = if (path.starts_with("/v1/agent/monitor")
        || path.starts_with("/v1/agent/metrics/stream"))
        && status == 200
    {
        String::new()
    } else {
        r.text().await.unwrap_or_default()
    };
    (status, text, headers)
}

/// Creates a policy from `rules` and a token holding it; returns the secret.
pub async fn token_with_rules(a: &Agent, name: &str, rules: &str) -> String {
    let (s, body, _) = call(
        a,
        "PUT",
        "/v1/acl/policy",
        Some(ROOT),
        Some(json!({"Name": name, "Rules": rules}).to_string()),
    )
    .await;
    assert_eq!(s, 200, "policy {name}: {body}");
    let (s, body, _) = call(
        a,
        "PUT",
        "/v1/acl/token",
        Some(ROOT),
        Some(json!({"Policies": [{"Name": name}]}).to_string()),
    )
    .await;
    assert_eq!(s, 200, "token for {name}: {body}");
    let t: Value = serde_json::from_str(&body).expect("token json");
    t["SecretID"].as_str().expect("secret").to_string()
}

#[tokio::test]
async fn scenario_policy_and_gateway_token() {
    let a = acl_agent().await;
    // The policy file loads as the scenario writes it.
    let (s, body, _) = call(
        &a,
        "PUT",
        "/v1/acl/policy",
        Some(ROOT),
        Some(
            json!({
                "Name": "carbonio-gateway-policy",
                "Description": "Policy for carbonio-gateway",
                "Rules": SCENARIO_POLICY
            })
            .to_string(),
        ),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    // The token names the policy by name, as `-policy-name` does.
    let (s, body, _) = call(
        &a,
        "PUT",
        "/v1/acl/token",
        Some(ROOT),
        Some(
            json!({"Policies": [{"Name": "carbonio-gateway-policy"}],
                   "Description": "Token for carbonio-gateway"})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    let gw = token["SecretID"].as_str().unwrap().to_string();
    assert_eq!(token["Policies"][0]["Name"], "carbonio-gateway-policy");
    assert!(token["AccessorID"].as_str().is_some_and(|s| s.len() == 36));

    // Seed with the management token.
    for key in ["carbonio-gateway/config", "carbonio-files/db-password"] {
        let (s, _, _) = call(
            &a,
            "PUT",
            &format!("/v1/kv/{key}"),
            Some(ROOT),
            Some("v".into()),
        )
        .await;
        assert_eq!(s, 200);
    }

    // Allowed: write the two services, read gateway keys, read any node.
    for svc in ["carbonio-files-db", "carbonio-gateway"] {
        let (s, body, _) = call(
            &a,
            "PUT",
            "/v1/agent/service/register",
            Some(&gw),
            Some(json!({"Name": svc, "Port": 5432}).to_string()),
        )
        .await;
        assert_eq!(s, 200, "register {svc}: {body}");
    }
    let (s, body, _) = call(&a, "GET", "/v1/kv/carbonio-gateway/config", Some(&gw), None).await;
    assert_eq!(s, 200, "{body}");
    let (s, body, _) = call(&a, "GET", "/v1/catalog/node/test-node", Some(&gw), None).await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Node"]["Node"], "test-node");
    let (s, body, _) = call(&a, "GET", "/v1/catalog/nodes", Some(&gw), None).await;
    assert_eq!(s, 200);
    assert!(body.contains("test-node"), "{body}");

    // Refused: other services, other keys, writing keys.
    let (s, body, _) = call(
        &a,
        "PUT",
        "/v1/agent/service/register",
        Some(&gw),
        Some(json!({"Name": "carbonio-files"}).to_string()),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    let accessor = token["AccessorID"].as_str().unwrap();
    assert_eq!(
        body,
        format!(
            "Permission denied: token with AccessorID '{accessor}' lacks permission 'service:write' on \"carbonio-files\""
        )
    );
    let (s, body, _) = call(
        &a,
        "GET",
        "/v1/kv/carbonio-files/db-password",
        Some(&gw),
        None,
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body.contains("lacks permission 'key:read' on \"carbonio-files/db-password\""),
        "{body}"
    );
    let (s, body, _) = call(
        &a,
        "PUT",
        "/v1/kv/carbonio-gateway/x",
        Some(&gw),
        Some("v".into()),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("'key:write'"), "{body}");
    // Nothing was written by the refused request.
    let (s, _, _) = call(&a, "GET", "/v1/kv/carbonio-gateway/x", Some(ROOT), None).await;
    assert_eq!(s, 404);
    let (s, _, _) = call(
        &a,
        "GET",
        "/v1/agent/service/carbonio-files",
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // The gateway token cannot manage ACLs.
    let (s, body, _) = call(&a, "GET", "/v1/acl/tokens", Some(&gw), None).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("'acl:read'"), "{body}");

    // Lists are filtered for it, and say so.
    let (s, body, h) = call(&a, "GET", "/v1/kv/?recurse", Some(&gw), None).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("carbonio-gateway/config") && !body.contains("carbonio-files/"),
        "{body}"
    );
    assert_eq!(
        h.get("X-Consul-Results-Filtered-By-ACLs")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let (_, body, _) = call(&a, "GET", "/v1/catalog/services", Some(&gw), None).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v.get("carbonio-files-db").is_some(), "{body}");
    assert!(v.get("consul").is_none(), "{body}");

    // token/self shows the token and its policy.
    let (s, body, _) = call(&a, "GET", "/v1/acl/token/self", Some(&gw), None).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("carbonio-gateway-policy"), "{body}");
}

#[tokio::test]
async fn anonymous_token_and_unknown_tokens() {
    let a = acl_agent().await;
    let (s, _, _) = call(&a, "PUT", "/v1/kv/app/x", Some(ROOT), Some("1".into())).await;
    assert_eq!(s, 200);
    // Anonymous: refused KV, filtered lists, public status.
    let (s, body, h) = call(&a, "GET", "/v1/kv/app/x", None, None).await;
    assert_eq!(s, 403);
    assert_eq!(
        body,
        "Permission denied: anonymous token lacks permission 'key:read' on \"app/x\". \
         The anonymous token is used implicitly when a request does not specify a token."
    );
    assert_eq!(
        h.get("X-Consul-Default-ACL-Policy")
            .and_then(|v| v.to_str().ok()),
        Some("deny")
    );
    let (s, body, h) = call(&a, "GET", "/v1/catalog/nodes", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(body.trim(), "[]");
    // Consul does not tell the anonymous token that anything was filtered.
    assert!(h.get("X-Consul-Results-Filtered-By-ACLs").is_none());
    let (s, _, _) = call(&a, "GET", "/v1/status/leader", None, None).await;
    assert_eq!(s, 200);
    // An unknown secret is not anonymous: it is refused outright.
    let (s, body, _) = call(&a, "GET", "/v1/catalog/nodes", Some("no-such-token"), None).await;
    assert_eq!(s, 403);
    assert_eq!(body, "ACL not found");
    // Management sees everything.
    let (_, body, _) = call(&a, "GET", "/v1/catalog/nodes", Some(ROOT), None).await;
    assert!(body.contains("test-node"));
}

#[tokio::test]
async fn token_sources_in_order() {
    let a = acl_agent().await;
    let reader = token_with_rules(&a, "kv-read", r#"key_prefix "" { policy = "read" }"#).await;
    let (s, _, _) = call(&a, "PUT", "/v1/kv/k", Some(ROOT), Some("1".into())).await;
    assert_eq!(s, 200);
    let get = |req: reqwest::RequestBuilder| async move {
        req.send().await.expect("send").status().as_u16()
    };
    // ?token
    assert_eq!(
        get(a.http.get(a.url(&format!("/v1/kv/k?token={reader}")))).await,
        200
    );
    // X-Consul-Token
    assert_eq!(
        get(a
            .http
            .get(a.url("/v1/kv/k"))
            .header("X-Consul-Token", &reader))
        .await,
        200
    );
    // Authorization: Bearer
    assert_eq!(
        get(a
            .http
            .get(a.url("/v1/kv/k"))
            .header("Authorization", format!("Bearer {reader}")))
        .await,
        200
    );
    // ?token wins over the header.
    assert_eq!(
        get(a
            .http
            .get(a.url("/v1/kv/k?token=bogus"))
            .header("X-Consul-Token", &reader))
        .await,
        403
    );
    // X-Consul-Token wins over Authorization.
    assert_eq!(
        get(a
            .http
            .get(a.url("/v1/kv/k"))
            .header("X-Consul-Token", &reader)
            .header("Authorization", "Bearer bogus"))
        .await,
        200
    );
    // Nothing: the agent's default token, set through the API.
    assert_eq!(get(a.http.get(a.url("/v1/kv/k"))).await, 403);
    let (s, body, _) = call(
        &a,
        "PUT",
        "/v1/agent/token/default",
        Some(ROOT),
        Some(json!({ "Token": reader }).to_string()),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(get(a.http.get(a.url("/v1/kv/k"))).await, 200);
    let (s, body, _) = call(
        &a,
        "PUT",
        "/v1/agent/token/bogus",
        Some(ROOT),
        Some(json!({ "Token": "x" }).to_string()),
    )
    .await;
    assert_eq!((s, body.as_str()), (404, "Token \"bogus\" is unknown"));
}

#[tokio::test]
async fn secrets_never_reach_the_log() {
    let a = AgentBuilder::dev(BIN)
        .args(["-node", "test-node", "-log-level", "debug"])
        .config_file("acl.hcl", &acl_config("deny"))
        .start()
        .await;
    let secret = token_with_rules(&a, "kv-read", r#"key_prefix "" { policy = "read" }"#).await;
    let r = a
        .http
        .get(a.url(&format!("/v1/kv/nothing?token={secret}&stale")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let log =
        meshgate_test_support::eventually("the request is logged", Duration::from_secs(5), || {
            let log = a.log();
            async move { log.contains("/v1/kv/nothing").then_some(log) }
        })
        .await;
    assert!(log.contains("token=<hidden>"), "{log}");
    assert!(
        !log.contains(&secret),
        "the secret leaked into the log: {log}"
    );
    assert!(
        !log.contains(ROOT),
        "the management secret leaked into the log"
    );
}

#[tokio::test]
async fn acls_disabled_answer_401_and_allow_everything() {
    let a = crate::dev().await;
    let (s, body, h) = call(&a, "GET", "/v1/acl/policies", None, None).await;
    assert_eq!((s, body.as_str()), (401, "ACL support disabled"));
    assert_eq!(header_of(&h, "X-Consul-Default-ACL-Policy"), "allow");
    let (s, _, _) = call(&a, "PUT", "/v1/kv/x", Some("whatever"), Some("1".into())).await;
    assert_eq!(s, 200);
    let (s, _, _) = call(&a, "PUT", "/v1/acl/bootstrap", None, None).await;
    assert_eq!(s, 401);
}

fn header_of(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn bootstrap_once_and_default_allow() {
    let a = AgentBuilder::dev(BIN)
        .args(["-node", "test-node"])
        .config_file(
            "acl.json",
            r#"{"acl": {"enabled": true, "default_policy": "allow"}}"#,
        )
        .start()
        .await;
    // default allow: anonymous may read and write.
    let (s, _, _) = call(&a, "PUT", "/v1/kv/x", None, Some("1".into())).await;
    assert_eq!(s, 200);
    let (s, body, _) = call(&a, "PUT", "/v1/acl/bootstrap", None, None).await;
    assert_eq!(s, 200, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["Policies"][0]["Name"], "global-management");
    assert_eq!(t["Description"], "Bootstrap Token (Global Management)");
    let secret = t["SecretID"].as_str().unwrap().to_string();
    let (s, body, _) = call(&a, "PUT", "/v1/acl/bootstrap", None, None).await;
    assert_eq!(s, 403);
    assert!(
        body.starts_with("Permission denied: ACL bootstrap no longer allowed (reset index: "),
        "{body}"
    );
    // Built-ins exist.
    let (s, body, _) = call(&a, "GET", "/v1/acl/policies", Some(&secret), None).await;
    assert_eq!(s, 200);
    assert!(
        body.contains("global-management") && body.contains("builtin/global-read-only"),
        "{body}"
    );
    let (_, body, _) = call(&a, "GET", "/v1/acl/tokens", Some(&secret), None).await;
    assert!(
        body.contains("00000000-0000-0000-0000-000000000002"),
        "{body}"
    );
    // A policy with bad rules is refused and not created.
    let (s, body, _) = call(
        &a,
        "PUT",
        "/v1/acl/policy",
        Some(&secret),
        Some(json!({"Name": "bad", "Rules": "key_prefix \"\" { policy = \"maybe\" }"}).to_string()),
    )
    .await;
    // Consul answers invalid rules with a 500 naming the rule and position.
    assert_eq!(s, 500, "{body}");
    assert!(
        body.contains("\"maybe\" is not a valid access level (line 1, column 17)"),
        "{body}"
    );
    let (s, _, _) = call(&a, "GET", "/v1/acl/policy/name/bad", Some(&secret), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn agent_tokens_persist_0600() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_string();
    let cfg = format!(
        "{}\ndata_dir = \"{data_dir}\"\n",
        acl_config("deny").replace(
            "enabled = true",
            "enabled = true\n  enable_token_persistence = true"
        )
    );
    let a = AgentBuilder::dev(BIN)
        .args(["-node", "test-node"])
        .config_file("acl.hcl", &cfg)
        .start()
        .await;
    let reader = token_with_rules(&a, "kv-read", r#"key_prefix "" { policy = "read" }"#).await;
    let (s, body, _) = call(
        &a,
        "PUT",
        "/v1/agent/token/default",
        Some(ROOT),
        Some(json!({ "Token": reader }).to_string()),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let file = data.path().join("acl-tokens.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved.get("default"), Some(&reader));
    // Without a token, the persisted default token is used; an agent:write
    // token is needed to change it.
    let (s, _, _) = call(&a, "PUT", "/v1/kv/k", Some(ROOT), Some("1".into())).await;
    assert_eq!(s, 200);
    let (s, _, _) = call(&a, "GET", "/v1/kv/k", None, None).await;
    assert_eq!(s, 200);
    let (s, body, _) = call(
        &a,
        "PUT",
        "/v1/agent/token/default",
        Some(&reader),
        Some(json!({ "Token": "" }).to_string()),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("'agent:write' on \"test-node\""), "{body}");
}

// === The route walk ===

/// What an anonymous request under default-deny gets.
#[derive(Clone, Copy, Debug)]
enum Anon {
    /// 403 naming the missing permission (or the bare refusal).
    Refused,
    /// 200 with everything filtered out.
    Filtered,
    /// Refused with this status (transactions answer 409, logout 401).
    RefusedWith(u16),
    /// Open to everyone (documented as such).
    Public,
}

struct Walk {
    path: String,
    body: Option<String>,
    /// The rules a token needs for the request to be accepted.
    rules: &'static str,
    anon: Anon,
}

fn w(path: impl Into<String>, body: Option<Value>, rules: &'static str, anon: Anon) -> Walk {
    Walk {
        path: path.into(),
        body: body.map(|b| b.to_string()),
        rules,
        anon,
    }
}

const EC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEepSkP1mpGuUFuVO65x1MIUpa3FzL\nLZSGFxJewvBd9z5idujU9Y3gZ8o5UekIbkFu47mtlEaDsTkhm9LxAQd6DA==\n-----END PUBLIC KEY-----\n";

struct Seeds {
    session: String,
    session_to_destroy: String,
    query: String,
    query_to_delete: String,
    policy: String,
    policy_to_delete: String,
    token: String,
    token_to_delete: String,
    role: String,
    role_to_delete: String,
    rule: String,
    rule_to_delete: String,
    legacy_intention: String,
    legacy_intention_to_delete: String,
}

async fn put_root(a: &Agent, path: &str, body: Value) -> Value {
    let (s, text, _) = call(a, "PUT", path, Some(ROOT), Some(body.to_string())).await;
    assert_eq!(s, 200, "seeding {path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn seed(a: &Agent) -> Seeds {
    put_root(
        a,
        "/v1/agent/service/register",
        json!({"ID": "web1", "Name": "web", "Port": 80,
               "Check": {"CheckID": "chk1", "TTL": "60s"},
               "Connect": {"SidecarService": {}}}),
    )
    .await;
    put_root(
        a,
        "/v1/agent/service/register",
        json!({"ID": "db1", "Name": "db", "Port": 5432}),
    )
    .await;
    put_root(a, "/v1/kv/app/x", json!("1")).await;
    let id = |v: Value, k: &str| v[k].as_str().expect("id").to_string();
    let session = id(
        put_root(a, "/v1/session/create", json!({"Node": "test-node"})).await,
        "ID",
    );
    let session_to_destroy = id(
        put_root(a, "/v1/session/create", json!({"Node": "test-node"})).await,
        "ID",
    );
    let mut query = String::new();
    let mut query_to_delete = String::new();
    for (name, out) in [("q-walk", &mut query), ("q-del", &mut query_to_delete)] {
        let (s, text, _) = call(
            a,
            "POST",
            "/v1/query",
            Some(ROOT),
            Some(json!({"Name": name, "Service": {"Service": "db"}}).to_string()),
        )
        .await;
        assert_eq!(s, 200, "{text}");
        *out = id(serde_json::from_str(&text).unwrap(), "ID");
    }
    put_root(
        a,
        "/v1/config",
        json!({"Kind": "terminating-gateway", "Name": "walk-gw", "Services": [{"Name": "db"}]}),
    )
    .await;
    put_root(
        a,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "walk-del"}),
    )
    .await;
    put_root(
        a,
        "/v1/connect/intentions/exact?source=web&destination=db",
        json!({"Action": "allow"}),
    )
    .await;
    // Legacy (ID-based) intentions, on a destination of their own.
    let mut legacy = Vec::new();
    for source in ["web", "api"] {
        let (s, text, _) = call(
            a,
            "POST",
            "/v1/connect/intentions",
            Some(ROOT),
            Some(
                json!({"SourceName": source, "DestinationName": "ldb", "Action": "allow"})
                    .to_string(),
            ),
        )
        .await;
        assert_eq!(s, 200, "{text}");
        legacy.push(id(serde_json::from_str(&text).unwrap(), "ID"));
    }
    let policy = id(
        put_root(a, "/v1/acl/policy", json!({"Name": "p-walk", "Rules": ""})).await,
        "ID",
    );
    let policy_to_delete = id(
        put_root(a, "/v1/acl/policy", json!({"Name": "p-del", "Rules": ""})).await,
        "ID",
    );
    let token = id(
        put_root(
            a,
            "/v1/acl/token",
            json!({"Policies": [{"Name": "p-walk"}]}),
        )
        .await,
        "AccessorID",
    );
    let token_to_delete = id(
        put_root(
            a,
            "/v1/acl/token",
            json!({"Policies": [{"Name": "p-walk"}]}),
        )
        .await,
        "AccessorID",
    );
    let role = id(
        put_root(
            a,
            "/v1/acl/role",
            json!({"Name": "r-walk", "Policies": [{"Name": "p-walk"}]}),
        )
        .await,
        "ID",
    );
    let role_to_delete = id(
        put_root(
            a,
            "/v1/acl/role",
            json!({"Name": "r-del", "Policies": [{"Name": "p-walk"}]}),
        )
        .await,
        "ID",
    );
    for m in ["m-walk", "m-del"] {
        put_root(
            a,
            "/v1/acl/auth-method",
            json!({"Name": m, "Type": "jwt",
                   "Config": {"JWTValidationPubKeys": [EC_PUBLIC_KEY], "JWTSupportedAlgs": ["ES256"],
                              "ClaimMappings": {"sub": "sub"}}}),
        )
        .await;
    }
    let rule = id(
        put_root(
            a,
            "/v1/acl/binding-rule",
            json!({"AuthMethod": "m-walk", "BindType": "service", "BindName": "${value.sub}"}),
        )
        .await,
        "ID",
    );
    let rule_to_delete = id(
        put_root(
            a,
            "/v1/acl/binding-rule",
            json!({"AuthMethod": "m-walk", "BindType": "service", "BindName": "x"}),
        )
        .await,
        "ID",
    );
    Seeds {
        session,
        session_to_destroy,
        query,
        query_to_delete,
        policy,
        policy_to_delete,
        token,
        token_to_delete,
        role,
        role_to_delete,
        rule,
        rule_to_delete,
        legacy_intention: legacy[0].clone(),
        legacy_intention_to_delete: legacy[1].clone(),
    }
}

/// One entry per route: how to call it, and the rules that must suffice.
fn walk_table(s: &Seeds) -> BTreeMap<(String, &'static str), Walk> {
    use Anon::*;
    const ACL_R: &str = r#"acl = "read""#;
    const ACL_W: &str = r#"acl = "write""#;
    let mut t: BTreeMap<(String, &'static str), Walk> = BTreeMap::new();
    let mut add = |m: &str, pattern: &'static str, walk: Walk| {
        assert!(
            t.insert((m.to_string(), pattern), walk).is_none(),
            "duplicate {m} {pattern}"
        );
    };
    let method_cfg =
        json!({"JWTValidationPubKeys": [EC_PUBLIC_KEY], "JWTSupportedAlgs": ["ES256"]});
    // ACL system.
    add(
        "PUT",
        "/v1/acl/bootstrap",
        w("/v1/acl/bootstrap", None, "", RefusedWith(403)),
    );
    add(
        "GET",
        "/v1/acl/replication",
        w("/v1/acl/replication", None, "", Public),
    );
    add(
        "POST",
        "/v1/acl/login",
        w(
            "/v1/acl/login",
            Some(json!({"AuthMethod": "m-walk", "BearerToken": "not-a-jwt"})),
            "",
            Public,
        ),
    );
    add(
        "POST",
        "/v1/acl/logout",
        w("/v1/acl/logout", None, "", RefusedWith(401)),
    );
    add(
        "GET",
        "/v1/acl/policies",
        w("/v1/acl/policies", None, ACL_R, Refused),
    );
    add(
        "PUT",
        "/v1/acl/policy",
        w(
            "/v1/acl/policy",
            Some(json!({"Name": "p-new", "Rules": ""})),
            ACL_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/acl/policy/{id}",
        w(format!("/v1/acl/policy/{}", s.policy), None, ACL_R, Refused),
    );
    add(
        "PUT",
        "/v1/acl/policy/{id}",
        w(
            format!("/v1/acl/policy/{}", s.policy),
            Some(json!({"Name": "p-walk", "Description": "changed", "Rules": ""})),
            ACL_W,
            Refused,
        ),
    );
    add(
        "DELETE",
        "/v1/acl/policy/{id}",
        w(
            format!("/v1/acl/policy/{}", s.policy_to_delete),
            None,
            ACL_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/acl/policy/name/{name}",
        w("/v1/acl/policy/name/p-walk", None, ACL_R, Refused),
    );
    add(
        "GET",
        "/v1/acl/tokens",
        w("/v1/acl/tokens", None, ACL_R, Refused),
    );
    add(
        "PUT",
        "/v1/acl/token",
        w(
            "/v1/acl/token",
            Some(json!({"Policies": [{"Name": "p-walk"}]})),
            ACL_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/acl/token/self",
        w("/v1/acl/token/self", None, "", Public),
    );
    add(
        "GET",
        "/v1/acl/token/{id}",
        w(format!("/v1/acl/token/{}", s.token), None, ACL_R, Refused),
    );
    add(
        "PUT",
        "/v1/acl/token/{id}",
        w(
            format!("/v1/acl/token/{}", s.token),
            Some(json!({"Description": "changed", "Policies": [{"Name": "p-walk"}]})),
            ACL_W,
            Refused,
        ),
    );
    add(
        "DELETE",
        "/v1/acl/token/{id}",
        w(
            format!("/v1/acl/token/{}", s.token_to_delete),
            None,
            ACL_W,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/acl/token/{id}/clone",
        w(
            format!("/v1/acl/token/{}/clone", s.token),
            Some(json!({})),
            ACL_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/acl/roles",
        w("/v1/acl/roles", None, ACL_R, Refused),
    );
    add(
        "PUT",
        "/v1/acl/role",
        w(
            "/v1/acl/role",
            Some(json!({"Name": "r-new", "Policies": [{"Name": "p-walk"}]})),
            ACL_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/acl/role/{id}",
        w(format!("/v1/acl/role/{}", s.role), None, ACL_R, Refused),
    );
    add(
        "PUT",
        "/v1/acl/role/{id}",
        w(
            format!("/v1/acl/role/{}", s.role),
            Some(
                json!({"Name": "r-walk", "Description": "changed", "Policies": [{"Name": "p-walk"}]}),
            ),
            ACL_W,
            Refused,
        ),
    );
    add(
        "DELETE",
        "/v1/acl/role/{id}",
        w(
            format!("/v1/acl/role/{}", s.role_to_delete),
            None,
            ACL_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/acl/role/name/{name}",
        w("/v1/acl/role/name/r-walk", None, ACL_R, Refused),
    );
    add(
        "GET",
        "/v1/acl/templated-policies",
        w("/v1/acl/templated-policies", None, ACL_R, Refused),
    );
    add(
        "GET",
        "/v1/acl/templated-policy/name/{*name}",
        w(
            "/v1/acl/templated-policy/name/builtin/service",
            None,
            ACL_R,
            Refused,
        ),
    );
    add(
        "POST",
        "/v1/acl/templated-policy/preview/{*name}",
        w(
            "/v1/acl/templated-policy/preview/builtin/service",
            Some(json!({"Name": "web"})),
            ACL_R,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/acl/auth-methods",
        w("/v1/acl/auth-methods", None, ACL_R, Refused),
    );
    add(
        "PUT",
        "/v1/acl/auth-method",
        w(
            "/v1/acl/auth-method",
            Some(json!({"Name": "m-new", "Type": "jwt", "Config": method_cfg.clone()})),
            ACL_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/acl/auth-method/{name}",
        w("/v1/acl/auth-method/m-walk", None, ACL_R, Refused),
    );
    add(
        "PUT",
        "/v1/acl/auth-method/{name}",
        w(
            "/v1/acl/auth-method/m-walk",
            Some(
                json!({"Name": "m-walk", "Type": "jwt", "Description": "changed",
                        "Config": method_cfg}),
            ),
            ACL_W,
            Refused,
        ),
    );
    add(
        "DELETE",
        "/v1/acl/auth-method/{name}",
        w("/v1/acl/auth-method/m-del", None, ACL_W, Refused),
    );
    add(
        "GET",
        "/v1/acl/binding-rules",
        w("/v1/acl/binding-rules", None, ACL_R, Refused),
    );
    add(
        "PUT",
        "/v1/acl/binding-rule",
        w(
            "/v1/acl/binding-rule",
            Some(json!({"AuthMethod": "m-walk", "BindType": "node", "BindName": "n"})),
            ACL_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/acl/binding-rule/{id}",
        w(
            format!("/v1/acl/binding-rule/{}", s.rule),
            None,
            ACL_R,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/acl/binding-rule/{id}",
        w(
            format!("/v1/acl/binding-rule/{}", s.rule),
            Some(json!({"AuthMethod": "m-walk", "BindType": "service", "BindName": "y"})),
            ACL_W,
            Refused,
        ),
    );
    add(
        "DELETE",
        "/v1/acl/binding-rule/{id}",
        w(
            format!("/v1/acl/binding-rule/{}", s.rule_to_delete),
            None,
            ACL_W,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/agent/token/{kind}",
        w(
            "/v1/agent/token/dns",
            Some(json!({"Token": ""})),
            r#"agent "test-node" { policy = "write" }"#,
            Refused,
        ),
    );
    add(
        "POST",
        "/v1/internal/acl/authorize",
        w(
            "/v1/internal/acl/authorize",
            Some(json!([{"Resource": "key", "Segment": "x", "Access": "read"}])),
            "",
            Public,
        ),
    );
    // Catalog.
    add(
        "PUT",
        "/v1/catalog/register",
        w(
            "/v1/catalog/register",
            Some(json!({"Node": "ext-node", "Address": "127.0.0.5",
                        "Service": {"Service": "ext-svc", "Port": 5432}})),
            r#"node "ext-node" { policy = "write" }
service "ext-svc" { policy = "write" }"#,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/catalog/deregister",
        w(
            "/v1/catalog/deregister",
            Some(json!({"Node": "ext-node", "ServiceID": "ext-svc"})),
            r#"node "ext-node" { policy = "write" }
service "ext-svc" { policy = "write" }"#,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/catalog/datacenters",
        w("/v1/catalog/datacenters", None, "", Public),
    );
    add(
        "GET",
        "/v1/catalog/nodes",
        w(
            "/v1/catalog/nodes",
            None,
            r#"node "test-node" { policy = "read" }"#,
            Filtered,
        ),
    );
    add(
        "GET",
        "/v1/catalog/services",
        w(
            "/v1/catalog/services",
            None,
            r#"service "web" { policy = "read" }"#,
            Filtered,
        ),
    );
    const WEB_R: &str = r#"service "web" { policy = "read" }
node "test-node" { policy = "read" }"#;
    add(
        "GET",
        "/v1/catalog/service/{service}",
        w("/v1/catalog/service/web", None, WEB_R, Filtered),
    );
    // Finding proxies needs `service:read` on the service itself.
    const PROXY_R: &str = r#"service_prefix "web" { policy = "read" }
node "test-node" { policy = "read" }"#;
    add(
        "GET",
        "/v1/catalog/connect/{service}",
        w("/v1/catalog/connect/web", None, PROXY_R, Refused),
    );
    add(
        "GET",
        "/v1/catalog/node/{node}",
        w("/v1/catalog/node/test-node", None, WEB_R, Filtered),
    );
    add(
        "GET",
        "/v1/catalog/node-services/{node}",
        w("/v1/catalog/node-services/test-node", None, WEB_R, Filtered),
    );
    // Health.
    add(
        "GET",
        "/v1/health/node/{node}",
        w("/v1/health/node/test-node", None, WEB_R, Filtered),
    );
    add(
        "GET",
        "/v1/health/checks/{service}",
        w("/v1/health/checks/web", None, WEB_R, Filtered),
    );
    add(
        "GET",
        "/v1/health/state/{state}",
        w("/v1/health/state/any", None, WEB_R, Filtered),
    );
    add(
        "GET",
        "/v1/health/service/{service}",
        w("/v1/health/service/web", None, WEB_R, Filtered),
    );
    // The UI's service summary: filtered like the health endpoints.
    add(
        "GET",
        "/v1/internal/ui/services",
        w("/v1/internal/ui/services", None, WEB_R, Filtered),
    );
    add(
        "GET",
        "/v1/internal/ui/nodes",
        w("/v1/internal/ui/nodes", None, WEB_R, Filtered),
    );
    add(
        "GET",
        "/v1/health/connect/{service}",
        w("/v1/health/connect/web", None, PROXY_R, Refused),
    );
    add(
        "GET",
        "/v1/health/ingress/{service}",
        w("/v1/health/ingress/web", None, PROXY_R, Refused),
    );
    // The raft configuration: operator.
    add(
        "GET",
        "/v1/operator/raft/configuration",
        w(
            "/v1/operator/raft/configuration",
            None,
            r#"operator = "read""#,
            Refused,
        ),
    );
    add(
        "DELETE",
        "/v1/operator/raft/peer",
        w(
            "/v1/operator/raft/peer?id=x",
            None,
            r#"operator = "write""#,
            Refused,
        ),
    );
    for path in [
        "/v1/operator/autopilot/configuration",
        "/v1/operator/autopilot/health",
        "/v1/operator/autopilot/state",
        "/v1/operator/usage",
    ] {
        add("GET", path, w(path, None, r#"operator = "read""#, Refused));
    }
    add(
        "PUT",
        "/v1/operator/autopilot/configuration",
        w(
            "/v1/operator/autopilot/configuration",
            Some(json!({"MinQuorum": 0})),
            r#"operator = "write""#,
            Refused,
        ),
    );
    add(
        "POST",
        "/v1/operator/raft/transfer-leader",
        w(
            "/v1/operator/raft/transfer-leader",
            None,
            r#"operator = "write""#,
            Refused,
        ),
    );
    // The cluster key: keyring.
    add(
        "GET",
        "/v1/operator/keyring",
        w("/v1/operator/keyring", None, r#"keyring = "read""#, Refused),
    );
    for m in ["POST", "PUT", "DELETE"] {
        add(
            m,
            "/v1/operator/keyring",
            w(
                "/v1/operator/keyring",
                Some(json!({"Key": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="})),
                r#"keyring = "write""#,
                Refused,
            ),
        );
    }
    // The discovery chain: service:read on the service.
    add(
        "GET",
        "/v1/discovery-chain/{*service}",
        w(
            "/v1/discovery-chain/web",
            None,
            r#"service "web" { policy = "read" }"#,
            Refused,
        ),
    );
    add(
        "POST",
        "/v1/discovery-chain/{*service}",
        w(
            "/v1/discovery-chain/web",
            Some(json!({"OverrideProtocol": "tcp"})),
            r#"service "web" { policy = "read" }"#,
            Refused,
        ),
    );
    // KV.
    add(
        "GET",
        "/v1/kv/{*key}",
        w(
            "/v1/kv/app/x",
            None,
            r#"key "app/x" { policy = "read" }"#,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/kv/{*key}",
        w(
            "/v1/kv/app/y",
            Some(json!("v")),
            r#"key "app/y" { policy = "write" }"#,
            Refused,
        ),
    );
    add(
        "DELETE",
        "/v1/kv/{*key}",
        w(
            "/v1/kv/app/y",
            None,
            r#"key "app/y" { policy = "write" }"#,
            Refused,
        ),
    );
    // Sessions.
    const SESSION_W: &str = r#"session "test-node" { policy = "write" }
node "test-node" { policy = "read" }"#;
    const SESSION_R: &str = r#"session "test-node" { policy = "read" }"#;
    add(
        "PUT",
        "/v1/session/create",
        w(
            "/v1/session/create",
            Some(json!({"Node": "test-node"})),
            SESSION_W,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/session/destroy/{id}",
        w(
            format!("/v1/session/destroy/{}", s.session_to_destroy),
            None,
            SESSION_W,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/session/renew/{id}",
        w(
            format!("/v1/session/renew/{}", s.session),
            None,
            SESSION_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/session/info/{id}",
        w(
            format!("/v1/session/info/{}", s.session),
            None,
            SESSION_R,
            Filtered,
        ),
    );
    add(
        "GET",
        "/v1/session/node/{node}",
        w("/v1/session/node/test-node", None, SESSION_R, Filtered),
    );
    add(
        "GET",
        "/v1/session/list",
        w("/v1/session/list", None, SESSION_R, Filtered),
    );
    // Transactions: writes are checked before anything applies (a refused
    // one fails the transaction with 409); reads are filtered.
    add(
        "PUT",
        "/v1/txn",
        w(
            "/v1/txn",
            Some(json!([{"KV": {"Verb": "get", "Key": "app/x"}}])),
            r#"key "app/x" { policy = "read" }"#,
            Filtered,
        ),
    );
    // Agent.
    const WEB_W: &str = r#"service "web" { policy = "write" }"#;
    const NODE_W: &str = r#"node "test-node" { policy = "write" }"#;
    const AGENT_R: &str = r#"agent "test-node" { policy = "read" }"#;
    const AGENT_W: &str = r#"agent "test-node" { policy = "write" }"#;
    add(
        "PUT",
        "/v1/agent/service/register",
        w(
            "/v1/agent/service/register",
            Some(json!({"Name": "walk-svc"})),
            r#"service "walk-svc" { policy = "write" }"#,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/agent/service/deregister/{id}",
        w(
            "/v1/agent/service/deregister/walk-svc",
            None,
            r#"service "walk-svc" { policy = "write" }"#,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/agent/services",
        w(
            "/v1/agent/services",
            None,
            r#"service "web" { policy = "read" }"#,
            Filtered,
        ),
    );
    // The web UI's gateway counters: service read on the gateway's name.
    add(
        "GET",
        "/v1/internal/ui/gateway-metrics/{name}",
        w(
            "/v1/internal/ui/gateway-metrics/web",
            None,
            r#"service "web" { policy = "read" }"#,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/agent/service/{id}",
        w(
            "/v1/agent/service/web1",
            None,
            r#"service "web" { policy = "read" }"#,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/agent/checks",
        w("/v1/agent/checks", None, WEB_R, Filtered),
    );
    // The local health for load balancers: service read (the answer's
    // status is the health's, 503 for web1's critical check).
    add(
        "GET",
        "/v1/agent/health/service/id/{id}",
        w(
            "/v1/agent/health/service/id/web1",
            None,
            r#"service "web" { policy = "read" }"#,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/agent/health/service/name/{name}",
        w(
            "/v1/agent/health/service/name/web",
            None,
            r#"service "web" { policy = "read" }"#,
            Refused,
        ),
    );
    // Without an ID or name: 400 before any permission.
    add(
        "GET",
        "/v1/agent/health/service/id/",
        w("/v1/agent/health/service/id/", None, "", Public),
    );
    add(
        "GET",
        "/v1/agent/health/service/name/",
        w("/v1/agent/health/service/name/", None, "", Public),
    );
    add(
        "PUT",
        "/v1/agent/check/register",
        w(
            "/v1/agent/check/register",
            Some(json!({"Name": "walk-chk", "TTL": "60s"})),
            NODE_W,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/agent/check/deregister/{id}",
        w("/v1/agent/check/deregister/walk-chk", None, NODE_W, Refused),
    );
    add(
        "PUT",
        "/v1/agent/check/pass/{id}",
        w("/v1/agent/check/pass/chk1", None, WEB_W, Refused),
    );
    add(
        "PUT",
        "/v1/agent/check/warn/{id}",
        w("/v1/agent/check/warn/chk1", None, WEB_W, Refused),
    );
    add(
        "PUT",
        "/v1/agent/check/fail/{id}",
        w("/v1/agent/check/fail/chk1", None, WEB_W, Refused),
    );
    add(
        "PUT",
        "/v1/agent/check/update/{id}",
        w(
            "/v1/agent/check/update/chk1",
            Some(json!({"Status": "passing"})),
            WEB_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/agent/self",
        w("/v1/agent/self", None, AGENT_R, Refused),
    );
    add(
        "GET",
        "/v1/agent/members",
        w(
            "/v1/agent/members",
            None,
            r#"node "test-node" { policy = "read" }"#,
            Filtered,
        ),
    );
    add(
        "PUT",
        "/v1/agent/maintenance",
        w("/v1/agent/maintenance?enable=false", None, NODE_W, Refused),
    );
    add(
        "PUT",
        "/v1/agent/service/maintenance/{id}",
        w(
            "/v1/agent/service/maintenance/web1?enable=false",
            None,
            WEB_W,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/agent/reload",
        w("/v1/agent/reload", None, AGENT_W, Refused),
    );
    add(
        "PUT",
        "/v1/agent/leave",
        w("/v1/agent/leave", None, AGENT_W, Refused),
    );
    // (This -dev agent then says it has no cluster to join: 500.)
    add(
        "PUT",
        "/v1/agent/join/{address}",
        w("/v1/agent/join/127.0.0.1", None, AGENT_W, Refused),
    );
    add(
        "PUT",
        "/v1/agent/force-leave/{node}",
        w(
            "/v1/agent/force-leave/nobody",
            None,
            r#"operator = "write""#,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/agent/monitor",
        w("/v1/agent/monitor", None, AGENT_R, Refused),
    );
    add(
        "GET",
        "/v1/agent/metrics",
        w("/v1/agent/metrics", None, AGENT_R, Refused),
    );
    add(
        "GET",
        "/v1/agent/metrics/stream",
        w("/v1/agent/metrics/stream", None, AGENT_R, Refused),
    );
    add(
        "GET",
        "/v1/agent/host",
        w("/v1/agent/host", None, r#"operator = "read""#, Refused),
    );
    add(
        "GET",
        "/v1/agent/version",
        w("/v1/agent/version", None, "", Public),
    );
    // Status: open, as in the compatible API.
    add(
        "GET",
        "/v1/status/leader",
        w("/v1/status/leader", None, "", Public),
    );
    add(
        "GET",
        "/v1/status/peers",
        w("/v1/status/peers", None, "", Public),
    );
    // Snapshots hold every secret: acl:write.
    add(
        "GET",
        "/v1/snapshot",
        w("/v1/snapshot", None, ACL_W, Refused),
    );
    add(
        "PUT",
        "/v1/snapshot",
        w(
            "/v1/snapshot",
            Some(json!("not a snapshot")),
            ACL_W,
            Refused,
        ),
    );
    // Events.
    add(
        "PUT",
        "/v1/event/fire/{name}",
        w(
            "/v1/event/fire/deploy",
            None,
            r#"event "deploy" { policy = "write" }"#,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/event/list",
        w(
            "/v1/event/list",
            None,
            r#"event_prefix "" { policy = "read" }"#,
            Filtered,
        ),
    );
    // Coordinates.
    add(
        "GET",
        "/v1/coordinate/datacenters",
        w("/v1/coordinate/datacenters", None, "", Public),
    );
    add(
        "GET",
        "/v1/coordinate/nodes",
        w(
            "/v1/coordinate/nodes",
            None,
            r#"node "test-node" { policy = "read" }"#,
            Filtered,
        ),
    );
    add(
        "GET",
        "/v1/coordinate/node/{node}",
        w(
            "/v1/coordinate/node/test-node",
            None,
            r#"node "test-node" { policy = "read" }"#,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/coordinate/update",
        w(
            "/v1/coordinate/update",
            Some(
                json!({"Node": "test-node", "Coord": {"Vec": [0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 0.00001}}),
            ),
            NODE_W,
            Refused,
        ),
    );
    // Prepared queries.
    const Q_W: &str = r#"query "q-walk" { policy = "write" }
query "q-new" { policy = "write" }
query "q-del" { policy = "write" }"#;
    const Q_R: &str = r#"query "q-walk" { policy = "read" }
service "db" { policy = "read" }
node "test-node" { policy = "read" }"#;
    add(
        "POST",
        "/v1/query",
        w(
            "/v1/query",
            Some(json!({"Name": "q-new", "Service": {"Service": "db"}})),
            Q_W,
            Refused,
        ),
    );
    add("GET", "/v1/query", w("/v1/query", None, Q_R, Filtered));
    add(
        "GET",
        "/v1/query/{id}",
        w(format!("/v1/query/{}", s.query), None, Q_R, Refused),
    );
    add(
        "PUT",
        "/v1/query/{id}",
        w(
            format!("/v1/query/{}", s.query),
            Some(json!({"Name": "q-walk", "Service": {"Service": "db", "OnlyPassing": true}})),
            Q_W,
            Refused,
        ),
    );
    add(
        "DELETE",
        "/v1/query/{id}",
        w(
            format!("/v1/query/{}", s.query_to_delete),
            None,
            Q_W,
            Refused,
        ),
    );
    // Knowing a query's ID is enough to run it; the answer is filtered.
    add(
        "GET",
        "/v1/query/{id}/execute",
        w(
            format!("/v1/query/{}/execute", s.query),
            None,
            Q_R,
            Filtered,
        ),
    );
    add(
        "GET",
        "/v1/query/{id}/explain",
        w(format!("/v1/query/{}/explain", s.query), None, Q_R, Refused),
    );
    // Config entries.
    add(
        "PUT",
        "/v1/config",
        w(
            "/v1/config",
            Some(
                json!({"Kind": "terminating-gateway", "Name": "walk-gw2", "Services": [{"Name": "db"}]}),
            ),
            r#"mesh = "write""#,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/config/{kind}",
        w(
            "/v1/config/terminating-gateway",
            None,
            r#"service "walk-gw" { policy = "read" }"#,
            Filtered,
        ),
    );
    add(
        "DELETE",
        "/v1/config/{kind}",
        w("/v1/config/service-defaults", None, "", Public),
    );
    add(
        "GET",
        "/v1/config/{kind}/{*name}",
        w(
            "/v1/config/terminating-gateway/walk-gw",
            None,
            r#"service "walk-gw" { policy = "read" }"#,
            Refused,
        ),
    );
    add(
        "DELETE",
        "/v1/config/{kind}/{*name}",
        w(
            "/v1/config/service-defaults/walk-del",
            None,
            r#"service "walk-del" { policy = "write" }"#,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/catalog/gateway-services/{gateway}",
        w(
            "/v1/catalog/gateway-services/walk-gw",
            None,
            r#"service_prefix "" { policy = "read" }"#,
            Refused,
        ),
    );
    // Intentions: `intentions` of the destination's service rule.
    const IXN_R: &str = r#"service "db" { policy = "read" }"#;
    const IXN_W: &str = r#"service "db" { policy = "read" intentions = "write" }"#;
    add(
        "GET",
        "/v1/connect/intentions",
        w("/v1/connect/intentions", None, IXN_R, Filtered),
    );
    add(
        "GET",
        "/v1/connect/intentions/exact",
        w(
            "/v1/connect/intentions/exact?source=web&destination=db",
            None,
            IXN_R,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/connect/intentions/exact",
        w(
            "/v1/connect/intentions/exact?source=api&destination=db",
            Some(json!({"Action": "deny"})),
            IXN_W,
            Refused,
        ),
    );
    add(
        "DELETE",
        "/v1/connect/intentions/exact",
        w(
            "/v1/connect/intentions/exact?source=api&destination=db",
            None,
            IXN_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/connect/intentions/match",
        w(
            "/v1/connect/intentions/match?by=destination&name=db",
            None,
            IXN_R,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/connect/intentions/check",
        w(
            "/v1/connect/intentions/check?source=web&destination=db",
            None,
            IXN_R,
            Refused,
        ),
    );
    // The legacy ID-based intention API (destination `ldb`).
    const LIXN_R: &str = r#"service "ldb" { policy = "read" }"#;
    const LIXN_W: &str = r#"service "ldb" { policy = "read" intentions = "write" }"#;
    add(
        "POST",
        "/v1/connect/intentions",
        w(
            "/v1/connect/intentions",
            Some(json!({"SourceName": "walk", "DestinationName": "ldb", "Action": "deny"})),
            LIXN_W,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/connect/intentions/{id}",
        w(
            format!("/v1/connect/intentions/{}", s.legacy_intention),
            None,
            LIXN_R,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/connect/intentions/{id}",
        w(
            format!("/v1/connect/intentions/{}", s.legacy_intention),
            Some(json!({"SourceName": "web", "DestinationName": "ldb", "Action": "deny"})),
            LIXN_W,
            Refused,
        ),
    );
    add(
        "DELETE",
        "/v1/connect/intentions/{id}",
        w(
            format!("/v1/connect/intentions/{}", s.legacy_intention_to_delete),
            None,
            LIXN_W,
            Refused,
        ),
    );
    // The CA.
    add(
        "GET",
        "/v1/connect/ca/roots",
        w("/v1/connect/ca/roots", None, "", Public),
    );
    add(
        "GET",
        "/v1/agent/connect/ca/roots",
        w("/v1/agent/connect/ca/roots", None, "", Public),
    );
    add(
        "GET",
        "/v1/connect/ca/configuration",
        w(
            "/v1/connect/ca/configuration",
            None,
            r#"operator = "write""#,
            Refused,
        ),
    );
    add(
        "PUT",
        "/v1/connect/ca/configuration",
        w(
            "/v1/connect/ca/configuration",
            Some(json!({"Provider": "consul", "Config": {"LeafCertTTL": "72h"}})),
            r#"operator = "write""#,
            Refused,
        ),
    );
    add(
        "GET",
        "/v1/agent/connect/ca/leaf/{service}",
        w(
            "/v1/agent/connect/ca/leaf/web",
            None,
            r#"service "web" { policy = "write" }"#,
            Refused,
        ),
    );
    add(
        "POST",
        "/v1/agent/connect/authorize",
        w(
            "/v1/agent/connect/authorize",
            Some(
                json!({"Target": "db", "ClientCertURI": "spiffe://x.consul/ns/default/dc/dc1/svc/web"}),
            ),
            r#"service "db" { policy = "write" }"#,
            Refused,
        ),
    );
    t
}

/// Whether a 200 answer holds nothing (everything was filtered).
fn is_empty_answer(body: &str) -> bool {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(a)) => a.is_empty(),
        // Transactions and query executions: their result list.
        Ok(Value::Object(o)) if o.contains_key("Results") || o.contains_key("Nodes") => {
            let list = o.get("Results").or_else(|| o.get("Nodes"));
            list.is_none_or(|l| l.is_null() || l == &json!([]))
        }
        Ok(Value::Object(o)) => o.values().all(Value::is_null),
        Ok(Value::Null) => true,
        _ => false,
    }
}

#[tokio::test]
async fn every_route_declares_and_enforces_its_permission() {
    let a = acl_agent().await;
    let seeds = seed(&a).await;
    let mut table = walk_table(&seeds);
    let mut failures = Vec::new();
    let mut routes: Vec<(String, &'static str)> = meshgate_agent::http::routes()
        .into_iter()
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    // Leaving stops the agent: walk it last.
    routes.sort_by_key(|(m, p)| (*p == "/v1/agent/leave", m == "DELETE"));
    for (method, pattern) in routes {
        let Some(entry) = table.remove(&(method.clone(), pattern)) else {
            failures.push(format!(
                "{method} {pattern}: no entry in the route walk (add one saying which rules it needs)"
            ));
            continue;
        };
        let what = format!("{method} {pattern} ({})", entry.path);
        // Anonymous, default deny.
        let (s, body, _) = call(&a, &method, &entry.path, None, entry.body.clone()).await;
        let anon_ok = match entry.anon {
            Anon::Refused => s == 403 && body.starts_with("Permission denied"),
            Anon::RefusedWith(code) => s == code,
            Anon::Filtered => s == 200 && is_empty_answer(&body),
            Anon::Public => s != 401 && s != 403,
        };
        if !anon_ok {
            failures.push(format!(
                "{what}: anonymous expected {:?}, got {s} {body:.200}",
                entry.anon
            ));
        }
        if matches!(entry.anon, Anon::Public) || entry.rules.is_empty() {
            continue;
        }
        // A token holding exactly the declared rules.
        let name = format!("walk-{}", rand_suffix(&entry.path, &method));
        let secret = token_with_rules(&a, &name, entry.rules).await;
        let (s, body, _) = call(&a, &method, &entry.path, Some(&secret), entry.body.clone()).await;
        let accepted = match entry.anon {
            Anon::Filtered => s == 200 && !is_empty_answer(&body),
            _ => s != 401 && s != 403 && !body.contains("Permission denied"),
        };
        if !accepted {
            failures.push(format!(
                "{what}: with rules {:?} expected acceptance, got {s} {body:.300}",
                entry.rules
            ));
        }
    }
    for (k, _) in table {
        failures.push(format!(
            "{} {}: walk entry for a route that does not exist",
            k.0, k.1
        ));
    }
    assert!(
        failures.is_empty(),
        "route walk failures:\n{}",
        failures.join("\n")
    );
}

fn rand_suffix(path: &str, method: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (path, method).hash(&mut h);
    format!("{:x}", h.finish())
}

#[tokio::test]
async fn kv_key_listing_is_filtered_by_key_read() {
    let a = acl_agent().await;
    for k in ["carbonio-gateway/a", "carbonio-files/db-password", "top"] {
        let (s, _, _) = call(
            &a,
            "PUT",
            &format!("/v1/kv/{k}"),
            Some(ROOT),
            Some("v".into()),
        )
        .await;
        assert_eq!(s, 200);
    }
    let t = token_with_rules(
        &a,
        "gw-keys",
        r#"key_prefix "carbonio-gateway/" { policy = "read" }"#,
    )
    .await;
    let (s, body, h) = call(&a, "GET", "/v1/kv/?keys&separator=/", Some(&t), None).await;
    assert_eq!(s, 200, "{body}");
    let keys: Vec<String> = serde_json::from_str(&body).unwrap();
    assert_eq!(keys, vec!["carbonio-gateway/".to_string()]);
    assert_eq!(
        h.get("x-consul-results-filtered-by-acls")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let (s, _, _) = call(&a, "GET", "/v1/kv/carbonio-files/?keys", Some(&t), None).await;
    assert_eq!(s, 404);
    let (_, body, _) = call(&a, "GET", "/v1/kv/?keys", Some(ROOT), None).await;
    let keys: Vec<String> = serde_json::from_str(&body).unwrap();
    assert_eq!(keys.len(), 3);
}

/// Members are filtered by `node:read` on the name listed: a WAN member
/// (`?wan=1`) is `node.dc`, which an exact rule on the node's LAN name does
/// not cover and a prefix rule does, as in Consul.
#[tokio::test]
async fn members_are_filtered_by_the_name_listed() {
    let a = acl_agent().await;
    let exact = token_with_rules(&a, "exact", r#"node "test-node" { policy = "read" }"#).await;
    let prefix = token_with_rules(
        &a,
        "prefix",
        r#"node_prefix "test-node" { policy = "read" }"#,
    )
    .await;
    let names = |body: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, body, _) = call(&a, "GET", "/v1/agent/members", Some(&exact), None).await;
    assert_eq!(s, 200);
    assert_eq!(names(&body), ["test-node"]);
    let (_, body, _) = call(&a, "GET", "/v1/agent/members?wan=1", Some(&exact), None).await;
    assert!(names(&body).is_empty(), "{body}");
    let (_, body, _) = call(&a, "GET", "/v1/agent/members?wan=1", Some(&prefix), None).await;
    assert_eq!(names(&body), ["test-node.dc1"]);
}

/// A `jwt` auth method's `Config` keys are matched in any case, as Consul's
/// decoder matches them (Ansible's `consul_auth_method` sends
/// `JWTValidationPubkeys`), and kept as sent, so a client comparing what it
/// sent with what it reads sees no change; an unknown key is refused.
#[tokio::test]
async fn auth_method_config_keys_in_any_case() {
    let a = acl_agent().await;
    let config = json!({"JWTValidationPubkeys": [EC_PUBLIC_KEY], "BoundAudiences": ["api"],
                        "JWTSupportedAlgs": ["ES256"]});
    let body = json!({"Name": "ansible", "Type": "jwt", "Config": config});
    let (s, text, _) = call(
        &a,
        "PUT",
        "/v1/acl/auth-method",
        Some(ROOT),
        Some(body.to_string()),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    let (s, text, _) = call(&a, "GET", "/v1/acl/auth-method/ansible", Some(ROOT), None).await;
    assert_eq!(s, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Config"], config);
    let body = json!({"Name": "bogus", "Type": "jwt",
                      "Config": {"JWTValidationPubKeys": [EC_PUBLIC_KEY], "Bogus": 1}});
    let (s, text, _) = call(
        &a,
        "PUT",
        "/v1/acl/auth-method",
        Some(ROOT),
        Some(body.to_string()),
    )
    .await;
    assert_eq!(
        (s, text.as_str()),
        (
            500,
            "Invalid Auth Method: error decoding config: 1 error(s) decoding:\n\n* '' has invalid keys: Bogus"
        )
    );
}
