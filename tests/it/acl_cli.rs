//! `meshgate acl ...`, `meshgate login` and `meshgate logout` against a real
//! agent with ACLs enabled (default policy deny).

use std::process::{Command, Stdio};

use meshgate_test_support::Agent;
use serde_json::{Value, json};

use crate::{BIN, dev_builder};

/// An agent enforcing ACLs with a deny default.
async fn acl_agent() -> Agent {
    dev_builder()
        .config_file(
            "acl.hcl",
            r#"acl { enabled = true default_policy = "deny" }"#,
        )
        .start()
        .await
}

/// Runs the CLI with `CONSUL_HTTP_TOKEN` set to `token` (when given);
/// returns (exit code, stdout, stderr).
fn mg(a: &Agent, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("CONSUL_HTTP_ADDR", &a.base)
        .env_remove("MESHGATE_HTTP_ADDR")
        .env_remove("MESHGATE_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("MESHGATE_HTTP_TOKEN_FILE")
        .env_remove("CONSUL_HTTP_TOKEN_FILE")
        .stdin(Stdio::null());
    if let Some(t) = token {
        cmd.env("CONSUL_HTTP_TOKEN", t);
    }
    let out = cmd.output().expect("run meshgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the CLI and expects success; returns stdout.
fn ok(a: &Agent, token: Option<&str>, args: &[&str]) -> String {
    let (code, out, err) = mg(a, token, args);
    assert_eq!(code, 0, "{args:?} failed: {err}");
    out
}

/// Runs the CLI and expects exit code 1 with nothing on stdout; returns stderr.
fn fails(a: &Agent, token: Option<&str>, args: &[&str]) -> String {
    let (code, out, err) = mg(a, token, args);
    assert_eq!((code, out.as_str()), (1, ""), "{args:?}: {err}");
    err
}

/// The value of a `Label:   value` line of pretty output.
fn field(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{label}:")))
        .unwrap_or_else(|| panic!("no {label} in:\n{out}"))
        .trim()
        .to_string()
}

/// Bootstraps and returns the management token's secret.
fn bootstrap(a: &Agent) -> String {
    field(&ok(a, None, &["acl", "bootstrap"]), "SecretID")
}

const SCENARIO_RULES: &str = r#"{"service": {"carbonio-files-db": {"policy": "write"}, "carbonio-gateway": {"policy": "write"}}, "key_prefix": {"carbonio-gateway/": {"policy": "read"}}, "node_prefix": {"": {"policy": "read"}}}"#;

#[tokio::test]
async fn bootstrap_once_then_refused() {
    let a = acl_agent().await;
    let out = ok(&a, None, &["acl", "bootstrap"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    assert!(lines[0].starts_with("AccessorID:       "), "{out}");
    assert!(lines[1].starts_with("SecretID:         "), "{out}");
    assert_eq!(
        lines[2..4],
        [
            "Description:      Bootstrap Token (Global Management)",
            "Local:            false"
        ]
    );
    assert!(lines[4].starts_with("Create Time:      "), "{out}");
    assert!(lines[4].ends_with(" +0000 UTC"), "Go time format: {out}");
    assert_eq!(
        lines[5..],
        [
            "Policies:",
            "   00000000-0000-0000-0000-000000000001 - global-management",
            ""
        ]
    );
    assert!(out.ends_with("global-management\n\n"));

    let err = fails(&a, None, &["acl", "bootstrap"]);
    assert!(
        err.starts_with(
            "Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL bootstrap no longer allowed (reset index: "
        ),
        "{err}"
    );
    assert!(err.ends_with("))\n"), "{err}");
    let err = fails(&a, None, &["acl", "bootstrap", "a", "b"]);
    assert_eq!(err, "This command takes up to one argument\n");
    let err = fails(&a, None, &["acl", "bootstrap", "/nonexistent/secret"]);
    assert_eq!(
        err,
        "Error reading provided token: Failed to read file: open /nonexistent/secret: no such file or directory\n"
    );
}

#[tokio::test]
async fn operator_scenario_end_to_end() {
    let a = acl_agent().await;
    let dir = tempfile::tempdir().unwrap();
    let mgmt = bootstrap(&a);
    let rules = dir.path().join("policies.json");
    std::fs::write(&rules, SCENARIO_RULES).unwrap();
    let at_rules = format!("@{}", rules.display());

    let out = ok(
        &a,
        Some(&mgmt),
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "carbonio-gateway-policy",
            "-description",
            "Policy for carbonio-gateway",
            "-rules",
            &at_rules,
        ],
    );
    let policy_id = field(&out, "ID");
    assert_eq!(
        out,
        format!(
            "ID:           {policy_id}\nName:         carbonio-gateway-policy\nDescription:  Policy for carbonio-gateway\nDatacenters:  \nRules:\n{SCENARIO_RULES}\n"
        )
    );

    let out = ok(
        &a,
        Some(&mgmt),
        &[
            "acl",
            "token",
            "create",
            "-policy-name",
            "carbonio-gateway-policy",
            "-description",
            "Token for carbonio-gateway",
            "-format",
            "json",
        ],
    );
    assert!(out.starts_with("{\n    \"CreateIndex\": "), "{out}");
    assert!(out.ends_with("}\n"), "{out}");
    let t: Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "CreateIndex",
            "ModifyIndex",
            "AccessorID",
            "SecretID",
            "Description",
            "Policies",
            "Local",
            "CreateTime",
            "Hash"
        ]
    );
    assert_eq!(
        t["Policies"],
        json!([{"ID": policy_id, "Name": "carbonio-gateway-policy"}])
    );
    let gateway = t["SecretID"].as_str().unwrap().to_string();
    assert_eq!(gateway.len(), 36);

    // The exact pipeline of the procedure, when jq is around.
    let jq = Command::new("jq").arg("--version").output().is_ok();
    if jq {
        let sink = dir.path().join("gateway-token");
        let script = format!(
            "\"{BIN}\" acl token create -policy-name \"carbonio-gateway-policy\" -description \"Token for carbonio-gateway\" -format json | jq -r .SecretID > \"{}\"",
            sink.display()
        );
        let st = Command::new("sh")
            .args(["-c", &script])
            .env("CONSUL_HTTP_ADDR", &a.base)
            .env("CONSUL_HTTP_TOKEN", &mgmt)
            .status()
            .unwrap();
        assert!(st.success());
        let piped = std::fs::read_to_string(&sink).unwrap();
        assert_eq!(piped.trim().len(), 36, "{piped:?}");
        assert_ne!(piped.trim(), gateway);
    }

    // What the token may do: read its keys, not the files service's.
    ok(
        &a,
        Some(&mgmt),
        &["kv", "put", "carbonio-gateway/port", "8080"],
    );
    ok(
        &a,
        Some(&mgmt),
        &["kv", "put", "carbonio-files/db-name", "files"],
    );
    assert_eq!(
        ok(&a, Some(&gateway), &["kv", "get", "carbonio-gateway/port"]),
        "8080\n"
    );
    let err = fails(&a, Some(&gateway), &["kv", "get", "carbonio-files/db-name"]);
    assert!(
        err.contains("403") && err.contains("lacks permission 'key:read'"),
        "{err}"
    );
    let err = fails(
        &a,
        Some(&gateway),
        &["kv", "put", "carbonio-gateway/port", "1"],
    );
    assert!(err.contains("lacks permission 'key:write'"), "{err}");

    // The token reads itself back.
    let out = ok(&a, Some(&gateway), &["acl", "token", "read", "-self"]);
    assert_eq!(field(&out, "SecretID"), gateway);
    assert_eq!(field(&out, "Description"), "Token for carbonio-gateway");
    assert!(
        out.ends_with(&format!(
            "Policies:\n   {policy_id} - carbonio-gateway-policy\n\n"
        )),
        "{out}"
    );
    // ...but may not manage ACLs.
    let err = fails(&a, Some(&gateway), &["acl", "policy", "list"]);
    assert!(
        err.starts_with("Failed to retrieve the policy list: Unexpected response code: 403 (Permission denied: token with AccessorID '"),
        "{err}"
    );

    // The array-of-objects JSON rules form works as well.
    let array_rules = r#"{"key_prefix": [{"carbonio-gateway/": [{"policy": "read"}]}], "service": [{"carbonio-gateway": [{"policy": "write"}]}]}"#;
    ok(
        &a,
        Some(&mgmt),
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "array-form",
            "-rules",
            array_rules,
        ],
    );
}

#[tokio::test]
async fn policy_commands_and_errors() {
    let a = acl_agent().await;
    let m = bootstrap(&a);
    let t = Some(m.as_str());
    let out = ok(
        &a,
        t,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "web-read",
            "-description",
            "reads web",
            "-valid-datacenter",
            "dc1",
            "-valid-datacenter",
            "dc2",
            "-rules",
            "service \"web\" { policy = \"read\" }",
            "-meta",
        ],
    );
    let id = field(&out, "ID");
    let hash = field(&out, "Hash");
    assert_eq!(hash.len(), 64, "hex of 32 bytes: {out}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(
        out.contains("\nDatacenters:  dc1, dc2\nHash:         "),
        "{out}"
    );
    assert!(out.contains("\nCreate Index: "), "{out}");

    // Read by a unique ID prefix, and by name; both the same.
    let by_id = ok(&a, t, &["acl", "policy", "read", "-id", &id[..8]]);
    let by_name = ok(&a, t, &["acl", "policy", "read", "-name", "web-read"]);
    assert_eq!(by_id, by_name);
    assert_eq!(
        by_id,
        format!(
            "ID:           {id}\nName:         web-read\nDescription:  reads web\nDatacenters:  dc1, dc2\nRules:\nservice \"web\" {{ policy = \"read\" }}\n"
        )
    );
    let json_out = ok(
        &a,
        t,
        &["acl", "policy", "read", "-id", &id, "-format", "json"],
    );
    let v: Value = serde_json::from_str(&json_out).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "ID",
            "Name",
            "Description",
            "Rules",
            "Datacenters",
            "Hash",
            "CreateIndex",
            "ModifyIndex"
        ]
    );

    // A merge update changes only what is given.
    let out = ok(
        &a,
        t,
        &["acl", "policy", "update", "-id", &id, "-description", "new"],
    );
    assert!(
        out.contains("\nDescription:  new\nDatacenters:  dc1, dc2\n"),
        "{out}"
    );
    assert!(
        out.ends_with("Rules:\nservice \"web\" { policy = \"read\" }\n"),
        "{out}"
    );
    // -no-merge replaces everything.
    let out = ok(
        &a,
        t,
        &[
            "acl",
            "policy",
            "update",
            "-id",
            &id,
            "-no-merge",
            "-name",
            "web-read",
            "-rules",
            "acl = \"read\"",
        ],
    );
    assert!(
        out.ends_with("Description:  \nDatacenters:  \nRules:\nacl = \"read\"\n"),
        "{out}"
    );

    // The list: the built-ins and ours, sorted by name, 3-space indented.
    let out = ok(&a, t, &["acl", "policy", "list"]);
    let names: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .collect();
    assert_eq!(
        names,
        [
            "builtin/global-read-only:",
            "global-management:",
            "web-read:"
        ]
    );
    assert!(
        out.ends_with(&format!(
            "web-read:\n   ID:           {id}\n   Description:  \n   Datacenters:  \n\n"
        )),
        "{out}"
    );
    let v: Value =
        serde_json::from_str(&ok(&a, t, &["acl", "policy", "list", "-format", "json"])).unwrap();
    assert_eq!(v[2]["Name"], "web-read");
    assert_eq!(v[2]["Datacenters"], Value::Null);
    assert!(v[2].get("Rules").is_none());

    // Errors: exit 1, the message on stderr.
    let err = fails(&a, t, &["acl", "policy", "create", "-description", "x"]);
    assert!(err.starts_with("Missing required '-name' flag\n"), "{err}");
    assert!(err.contains("Usage:"), "followed by the help: {err}");
    assert_eq!(
        fails(
            &a,
            t,
            &["acl", "policy", "create", "-name", "x", "-format", "yaml"]
        ),
        "Unknown format: yaml\n"
    );
    assert_eq!(
        fails(
            &a,
            t,
            &[
                "acl",
                "policy",
                "create",
                "-name",
                "bad",
                "-rules",
                "key_prefix \"x\" {"
            ]
        ),
        "Failed to create new policy: Unexpected response code: 500 (Failed to parse ACL rules: At 1:17: expected '}' to close the '{' opened at 1:16, found end of input)\n"
    );
    assert_eq!(
        fails(
            &a,
            t,
            &[
                "acl",
                "policy",
                "create",
                "-name",
                "bad",
                "-rules",
                "@/nonexistent.hcl"
            ]
        ),
        "Error loading rules: Failed to read file: open /nonexistent.hcl: no such file or directory\n"
    );
    assert_eq!(
        fails(&a, t, &["acl", "policy", "read"]),
        "Must specify either the -id or -name parameters\n"
    );
    assert_eq!(
        fails(&a, t, &["acl", "policy", "read", "-name", "nope"]),
        "Error policy not found: nope\n"
    );
    let missing = "5e1b3b4a-0000-4000-8000-000000000000";
    assert_eq!(
        fails(&a, t, &["acl", "policy", "read", "-id", missing]),
        format!(
            "Error reading policy \"id:{missing}\": Unexpected response code: 404 (Requested policy does not exist: ACL not found)\n"
        )
    );
    // Both built-ins start with 0000.
    assert_eq!(
        fails(&a, t, &["acl", "policy", "read", "-id", "0000"]),
        "Error determining policy ID: Partial policy ID is not unique\n"
    );
    assert_eq!(
        fails(&a, t, &["acl", "policy", "read", "-id", "zzz"]),
        "Error determining policy ID: No such policy ID with prefix: zzz\n"
    );
    // A built-in by name.
    let out = ok(
        &a,
        t,
        &["acl", "policy", "read", "-id", "global-management"],
    );
    assert!(out.starts_with("ID:           00000000-0000-0000-0000-000000000001\n"));
    assert!(out.contains("Rules:\n\nacl = \"write\"\n"), "{out}");

    // Delete by name.
    assert_eq!(
        ok(&a, t, &["acl", "policy", "delete", "-name", "web-read"]),
        format!("Policy \"{id}\" deleted successfully\n")
    );
    assert_eq!(
        fails(&a, t, &["acl", "policy", "delete", "-name", "web-read"]),
        "Error determining policy ID: No such policy with name: web-read\n"
    );
}

#[tokio::test]
async fn token_commands() {
    let a = acl_agent().await;
    let m = bootstrap(&a);
    let t = Some(m.as_str());
    ok(
        &a,
        t,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "p1",
            "-rules",
            "acl = \"read\"",
        ],
    );
    let out = ok(
        &a,
        t,
        &[
            "acl",
            "token",
            "create",
            "-description",
            "many things",
            "-policy-name",
            "p1",
            "-service-identity",
            "web:dc1,dc2",
            "-node-identity",
            "node-1:dc1",
            "-templated-policy",
            "builtin/service",
            "-var",
            "name:api",
            "-expires-ttl",
            "1h",
        ],
    );
    let accessor = field(&out, "AccessorID");
    let secret = field(&out, "SecretID");
    assert!(
        field(&out, "Expiration Time").ends_with(" +0000 UTC"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "Service Identities:\n   web (Datacenters: dc1, dc2)\nNode Identities:\n   node-1 (Datacenter: dc1)\nTemplated Policies:\n   builtin/service\n      Name: api\n      Datacenters: all\n\n"
        ),
        "{out}"
    );
    let v: Value = serde_json::from_str(&ok(
        &a,
        t,
        &[
            "acl",
            "token",
            "read",
            "-accessor-id",
            &accessor,
            "-format",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(
        v["TemplatedPolicies"],
        json!([{"TemplateName": "builtin/service", "TemplateVariables": {"Name": "api"}}])
    );
    assert!(v["ExpirationTime"].as_str().unwrap().ends_with('Z'));

    // Read by prefix, -self, and -meta.
    let by_prefix = ok(
        &a,
        t,
        &["acl", "token", "read", "-accessor-id", &accessor[..6]],
    );
    let own = ok(&a, Some(&secret), &["acl", "token", "read", "-self"]);
    assert_eq!(by_prefix, own);
    let meta = ok(
        &a,
        t,
        &["acl", "token", "read", "-accessor-id", &accessor, "-meta"],
    );
    assert_eq!(field(&meta, "Hash").len(), 64);
    assert!(meta.contains("\nCreate Index:     "), "{meta}");
    assert_eq!(
        fails(
            &a,
            Some("00000000-aaaa-4000-8000-000000000000"),
            &["acl", "token", "read", "-self"]
        ),
        "Error reading token: Unexpected response code: 403 (token does not exist: ACL not found)\n"
    );
    assert_eq!(
        fails(&a, t, &["acl", "token", "read", "-self", "-expanded"]),
        "Cannot use both -expanded and -self. Instead, use -expanded and -accessor-id=<accessor id>.\n"
    );
    assert_eq!(
        fails(&a, t, &["acl", "token", "read"]),
        "Must specify the -accessor-id parameter\n"
    );

    // Expanded: the policies' rules, the synthetic policies, the trailer.
    let x = ok(
        &a,
        t,
        &[
            "acl",
            "token",
            "read",
            "-accessor-id",
            &accessor,
            "-expanded",
        ],
    );
    assert!(x.contains("Policies:\n\tPolicy Name: p1\n\t\tID: "), "{x}");
    assert!(x.contains("\t\tRules:\n\t\t\tacl = \"read\"\n\n"), "{x}");
    assert!(
        x.contains("Service Identities:\n\tName: web (Datacenters: dc1, dc2)\n\t\tDescription: synthetic policy generated from templated policy: builtin/service\n\t\tRules:\n\t\t\tservice \"web\" {\n"),
        "{x}"
    );
    assert!(
        x.contains("=== End of Authorizer Layer 0: Token ===\n"),
        "{x}"
    );
    assert!(
        x.contains("Resolved By Agent: \"test-node\"\n\nDefault Policy: deny\n"),
        "{x}"
    );

    // Clone keeps the links and gets a new accessor.
    let out = ok(
        &a,
        t,
        &[
            "acl",
            "token",
            "clone",
            "-accessor-id",
            &accessor[..8],
            "-description",
            "the copy",
        ],
    );
    let copy = field(&out, "AccessorID");
    assert_ne!(copy, accessor);
    assert_eq!(field(&out, "Description"), "the copy");
    assert!(
        out.contains("Node Identities:\n   node-1 (Datacenter: dc1)\n"),
        "{out}"
    );

    // Update: append a policy; service identities not given are cleared.
    let out = ok(
        &a,
        t,
        &[
            "acl",
            "token",
            "update",
            "-accessor-id",
            &copy,
            "-append-policy-name",
            "global-management",
        ],
    );
    assert!(out.contains("Policies:\n   "), "{out}");
    assert!(
        out.contains(" - p1\n   00000000-0000-0000-0000-000000000001 - global-management\n"),
        "{out}"
    );
    assert!(!out.contains("Service Identities:"), "{out}");
    assert!(!out.contains("Node Identities:"), "{out}");
    assert!(
        out.contains("Templated Policies:\n   builtin/service\n"),
        "{out}"
    );
    assert_eq!(
        fails(
            &a,
            t,
            &[
                "acl",
                "token",
                "update",
                "-accessor-id",
                &copy,
                "-policy-name",
                "p1",
                "-append-policy-name",
                "p1"
            ]
        ),
        "Cannot combine the use of policy-id/policy-name flags with append- variants. To set or overwrite existing policies, use -policy-id or -policy-name. To append to existing policies, use -append-policy-id or -append-policy-name.\n"
    );

    // The list: every token, anonymous included, blocks separated by a blank line.
    let out = ok(&a, t, &["acl", "token", "list"]);
    let blocks: Vec<&str> = out.trim_end().split("\n\n").collect();
    assert_eq!(blocks.len(), 4, "{out}");
    assert!(out.contains("AccessorID:       00000000-0000-0000-0000-000000000002\nSecretID:         anonymous\nDescription:      Anonymous Token\n"), "{out}");
    assert!(out.ends_with("\n\n"));
    let v: Value =
        serde_json::from_str(&ok(&a, t, &["acl", "token", "list", "-format", "json"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("Hash").is_some())
    );

    // Errors from flags and from the agent.
    assert_eq!(
        fails(&a, t, &["acl", "token", "create", "-description", "x"]),
        "Cannot create a token without specifying -policy-name, -policy-id, -role-name, -role-id, -service-identity, -node-identity, -templated-policy, or -templated-policy-file at least once\n"
    );
    assert_eq!(
        fails(&a, t, &["acl", "token", "create", "-policy-name", "nope"]),
        "Failed to create new token: Unexpected response code: 500 (No such ACL policy with name \"nope\")\n"
    );
    assert_eq!(
        fails(
            &a,
            t,
            &["acl", "token", "create", "-service-identity", "a:b:c"]
        ),
        "Malformed -service-identity argument: \"a:b:c\"\n"
    );
    assert_eq!(
        fails(
            &a,
            t,
            &[
                "acl",
                "token",
                "create",
                "-policy-name",
                "p1",
                "-format",
                "xml"
            ]
        ),
        "Unknown format: xml\n"
    );

    // Delete, then the accessor is gone.
    assert_eq!(
        ok(
            &a,
            t,
            &["acl", "token", "delete", "-accessor-id", &copy[..10]]
        ),
        format!("Token \"{copy}\" deleted successfully\n")
    );
    assert_eq!(
        fails(&a, t, &["acl", "token", "read", "-accessor-id", &copy]),
        format!(
            "Error reading token \"{copy}\": Unexpected response code: 403 (token does not exist: ACL not found)\n"
        )
    );
    assert_eq!(
        fails(
            &a,
            t,
            &["acl", "token", "read", "-accessor-id", &copy[..10]]
        ),
        format!(
            "Error determining token ID: No such token ID with prefix: {}\n",
            &copy[..10]
        )
    );
}

#[tokio::test]
async fn role_templated_policy_and_agent_token_commands() {
    let a = acl_agent().await;
    let m = bootstrap(&a);
    let t = Some(m.as_str());
    let pid = field(
        &ok(
            &a,
            t,
            &[
                "acl",
                "policy",
                "create",
                "-name",
                "kv-read",
                "-rules",
                "key_prefix \"\" { policy = \"read\" }",
            ],
        ),
        "ID",
    );
    let out = ok(
        &a,
        t,
        &[
            "acl",
            "role",
            "create",
            "-name",
            "reader",
            "-description",
            "reads keys",
            "-policy-id",
            &pid[..8],
            "-service-identity",
            "web",
        ],
    );
    let rid = field(&out, "ID");
    assert_eq!(
        out,
        format!(
            "ID:           {rid}\nName:         reader\nDescription:  reads keys\nPolicies:\n   {pid} - kv-read\nService Identities:\n   web (Datacenters: all)\n\n"
        )
    );
    assert_eq!(ok(&a, t, &["acl", "role", "read", "-id", &rid[..5]]), out);
    assert_eq!(ok(&a, t, &["acl", "role", "read", "-name", "reader"]), out);
    assert_eq!(
        ok(&a, t, &["acl", "role", "list"]),
        format!(
            "reader:\n   ID:           {rid}\n   Description:  reads keys\n   Policies:\n      {pid} - kv-read\n   Service Identities:\n      web (Datacenters: all)\n\n"
        )
    );
    let out = ok(
        &a,
        t,
        &[
            "acl",
            "role",
            "update",
            "-id",
            &rid,
            "-node-identity",
            "n1:dc1",
        ],
    );
    assert!(out.contains("Service Identities:\n   web (Datacenters: all)\nNode Identities:\n   n1 (Datacenter: dc1)\n"), "{out}");
    assert_eq!(
        fails(&a, t, &["acl", "role", "read", "-name", "nope"]),
        "Role not found with name \"nope\"\n"
    );
    assert_eq!(
        fails(&a, t, &["acl", "role", "create", "-name", "empty"]),
        "Cannot create a role without specifying -policy-name, -policy-id, -service-identity, -node-identity, -templated-policy-file or -templated-policy at least once\n"
    );
    // A token with the role gets the role's policies.
    let tok = field(
        &ok(&a, t, &["acl", "token", "create", "-role-name", "reader"]),
        "SecretID",
    );
    ok(&a, t, &["kv", "put", "k", "v"]);
    assert_eq!(ok(&a, Some(&tok), &["kv", "get", "k"]), "v\n");

    // Templated policies.
    assert_eq!(
        ok(&a, t, &["acl", "templated-policy", "list"]),
        "builtin/api-gateway\nbuiltin/dns\nbuiltin/node\nbuiltin/nomad-client\nbuiltin/nomad-server\nbuiltin/service\n\n"
    );
    let out = ok(
        &a,
        t,
        &["acl", "templated-policy", "read", "-name", "builtin/node"],
    );
    assert!(
        out.ends_with("Input variables:\n\tName: String - Required - The node name.\nExample usage:\n\tconsul acl token create -templated-policy builtin/node -var name:node-1\n\n"),
        "{out}"
    );
    let out = ok(
        &a,
        t,
        &[
            "acl",
            "templated-policy",
            "preview",
            "-name",
            "builtin/service",
            "-var",
            "name:api",
        ],
    );
    assert!(out.starts_with("ID:           0a73657276696365"), "{out}");
    assert!(
        out.contains(
            "\nDescription:  synthetic policy generated from templated policy: builtin/service\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("Rules:\n\nservice \"api\" {\n\tpolicy = \"write\"\n}\n"),
        "{out}"
    );
    assert_eq!(
        fails(&a, t, &["acl", "templated-policy", "list", "-format", "x"]),
        "unknown format: \"x\"\n"
    );

    // Agent tokens.
    assert_eq!(
        ok(&a, t, &["acl", "set-agent-token", "default", &tok]),
        "ACL token \"default\" set successfully\n"
    );
    // The default token now answers for requests without one.
    assert_eq!(ok(&a, None, &["kv", "get", "k"]), "v\n");
    assert_eq!(
        fails(&a, t, &["acl", "set-agent-token", "default"]),
        "Error! Missing TOKEN argument\n"
    );
    assert_eq!(
        fails(&a, t, &["acl", "set-agent-token", "bogus", "x"]),
        "Unknown token type\n"
    );

    // Without its role, the token can no longer read.
    assert_eq!(
        ok(&a, t, &["acl", "role", "delete", "-name", "reader"]),
        format!("Role \"{rid}\" deleted successfully\n")
    );
    let err = fails(&a, None, &["kv", "get", "k"]);
    assert!(
        err.contains("lacks permission 'key:read' on \"k\""),
        "{err}"
    );
}

/// A P-256 key pair: (private key PEM, public key PEM).
fn es256_keys() -> (String, String) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    (kp.serialize_pem(), kp.public_key_pem())
}

fn jwt(private_pem: &str, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        claims,
        &key,
    )
    .unwrap()
}

#[tokio::test]
async fn login_and_logout_with_a_jwt_auth_method() {
    let a = acl_agent().await;
    let m = bootstrap(&a);
    let t = Some(m.as_str());
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = es256_keys();
    let cfg = dir.path().join("jwt.json");
    std::fs::write(
        &cfg,
        json!({
            "JWTValidationPubKeys": [public],
            "JWTSupportedAlgs": ["ES256"],
            "BoundIssuer": "https://issuer.test",
            "ClaimMappings": {"svc": "svc"}
        })
        .to_string(),
    )
    .unwrap();
    let at_cfg = format!("@{}", cfg.display());
    let out = ok(
        &a,
        t,
        &[
            "acl",
            "auth-method",
            "create",
            "-type",
            "jwt",
            "-name",
            "ci",
            "-description",
            "CI jobs",
            "-max-token-ttl",
            "1h",
            "-config",
            &at_cfg,
        ],
    );
    assert!(
        out.starts_with("Name:          ci\nType:          jwt\nDescription:   CI jobs\nMaxTokenTTL:   1h0m0s\nConfig:\n{\n  \"BoundIssuer\": \"https://issuer.test\",\n  \"ClaimMappings\": {\n    \"svc\": \"svc\"\n  },\n"),
        "{out}"
    );
    assert_eq!(
        ok(&a, t, &["acl", "auth-method", "list"]),
        "ci:\n   Type:         jwt\n   Description:  CI jobs\n\n"
    );
    let v: Value = serde_json::from_str(&ok(
        &a,
        t,
        &[
            "acl",
            "auth-method",
            "read",
            "-name",
            "ci",
            "-format",
            "json",
        ],
    ))
    .unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "MaxTokenTTL",
            "Name",
            "Type",
            "Description",
            "Config",
            "CreateIndex",
            "ModifyIndex"
        ]
    );
    assert!(
        fails(&a, t, &["acl", "auth-method", "create", "-name", "x"])
            .starts_with("Missing required '-type' flag\n")
    );

    let out = ok(
        &a,
        t,
        &[
            "acl",
            "binding-rule",
            "create",
            "-method",
            "ci",
            "-bind-type",
            "service",
            "-bind-name",
            "${value.svc}",
            "-selector",
            "value.svc == \"web\"",
        ],
    );
    let rule = field(&out, "ID");
    assert_eq!(
        out,
        format!(
            "ID:           {rule}\nAuthMethod:   ci\nDescription:  \nBindType:     service\nBindName:     ${{value.svc}}\nSelector:     value.svc == \"web\"\n\n"
        )
    );
    assert_eq!(
        ok(&a, t, &["acl", "binding-rule", "read", "-id", &rule[..6]]),
        out
    );
    assert!(
        ok(&a, t, &["acl", "binding-rule", "list", "-method", "ci"])
            .starts_with(&format!("{rule}:\n   AuthMethod:   ci\n"))
    );
    // A merge update keeps the selector it is not given.
    let out = ok(
        &a,
        t,
        &[
            "acl",
            "binding-rule",
            "update",
            "-id",
            &rule[..8],
            "-description",
            "web jobs",
        ],
    );
    assert!(
        out.contains("\nDescription:  web jobs\nBindType:     service\n"),
        "{out}"
    );
    assert!(
        out.contains("\nSelector:     value.svc == \"web\"\n"),
        "{out}"
    );
    let err = fails(
        &a,
        t,
        &[
            "acl",
            "binding-rule",
            "create",
            "-method",
            "ci",
            "-bind-name",
            "x",
            "-bind-vars",
            "name=y",
        ],
    );
    assert!(
        err.starts_with("Cannot specify -bind-vars when -bind-type is not templated-policy\n"),
        "{err}"
    );
    assert!(
        err.contains("Usage: meshgate acl binding-rule create"),
        "with the help: {err}"
    );
    let out = ok(
        &a,
        t,
        &[
            "acl",
            "auth-method",
            "update",
            "-name",
            "ci",
            "-display-name",
            "CI",
        ],
    );
    assert!(
        out.starts_with("Name:          ci\nType:          jwt\nDisplayName:   CI\nDescription:   CI jobs\nMaxTokenTTL:   1h0m0s\n"),
        "{out}"
    );

    // Log in: the secret lands in the sink file, nothing is printed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let bearer = dir.path().join("bearer.jwt");
    std::fs::write(
        &bearer,
        format!(
            "{}\n",
            jwt(
                &private,
                &json!({"iss": "https://issuer.test", "sub": "job-1", "svc": "web", "iat": now, "exp": now + 600})
            )
        ),
    )
    .unwrap();
    let sink = dir.path().join("sub/dir/token");
    let bearer_s = bearer.display().to_string();
    let sink_s = sink.display().to_string();
    let login = [
        "login",
        "-method",
        "ci",
        "-bearer-token-file",
        &bearer_s,
        "-token-sink-file",
        &sink_s,
        "-meta",
        "job=1",
    ];
    assert_eq!(ok(&a, None, &login), "");
    let secret = std::fs::read_to_string(&sink).unwrap();
    assert_eq!(secret.len(), 36, "no newline: {secret:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sink).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = ok(&a, Some(&secret), &["acl", "token", "read", "-self"]);
    assert_eq!(
        field(&out, "Description"),
        "token created via login: {\"job\":\"1\"}"
    );
    assert_eq!(field(&out, "Local"), "true");
    assert_eq!(field(&out, "Auth Method"), "ci (Namespace: )");
    assert!(
        field(&out, "Expiration Time").ends_with(" +0000 UTC"),
        "{out}"
    );
    assert!(
        out.ends_with("Service Identities:\n   web (Datacenters: all)\n\n"),
        "{out}"
    );

    // Logout destroys it; a management token cannot be logged out.
    assert_eq!(
        fails(&a, t, &["logout"]),
        "Error destroying token: Unexpected response code: 403 (Permission denied: token wasn't created via login)\n"
    );
    assert_eq!(ok(&a, Some(&secret), &["logout"]), "");
    assert_eq!(
        fails(&a, Some(&secret), &["acl", "token", "read", "-self"]),
        "Error reading token: Unexpected response code: 403 (token does not exist: ACL not found)\n"
    );

    // A token whose claims match no rule is refused; flag errors first.
    std::fs::write(
        &bearer,
        jwt(
            &private,
            &json!({"iss": "https://issuer.test", "svc": "db", "iat": now}),
        ),
    )
    .unwrap();
    assert_eq!(
        fails(&a, None, &login),
        "Error logging in: Unexpected response code: 403 (Permission denied)\n"
    );
    assert_eq!(
        fails(&a, None, &["login", "-method", "ci"]),
        "Missing required '-token-sink-file' flag\n"
    );
    assert_eq!(
        fails(
            &a,
            None,
            &[
                "login",
                "-method",
                "ci",
                "-token-sink-file",
                &sink_s,
                "-bearer-token-file",
                "/nonexistent.jwt"
            ]
        ),
        "open /nonexistent.jwt: no such file or directory\n"
    );

    assert_eq!(
        ok(&a, t, &["acl", "binding-rule", "delete", "-id", &rule]),
        format!("Binding rule \"{rule}\" deleted successfully\n")
    );
    assert_eq!(
        ok(&a, t, &["acl", "auth-method", "delete", "-name", "ci"]),
        "Auth method \"ci\" deleted successfully\n"
    );
    assert_eq!(ok(&a, t, &["acl", "auth-method", "list"]), "");
}
