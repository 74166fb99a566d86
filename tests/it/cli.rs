use meshgate_test_support::cli;
use serde_json::{Value, json};

use crate::{BIN, dev};

#[tokio::test]
async fn kv_commands_with_consul_output() {
    let a = dev().await;
    let run = |args: &[&str]| cli(BIN, &a, args, None);
    assert_eq!(
        run(&["kv", "put", "carbonio-files/db-name", "files"]),
        (
            0,
            "Success! Data written to: carbonio-files/db-name\n".into(),
            String::new()
        )
    );
    assert_eq!(run(&["kv", "get", "carbonio-files/db-name"]).1, "files\n");
    let (code, out, err) = run(&["kv", "get", "nope"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (1, "", "Error! No key exists at: nope\n")
    );
    // Single- and double-dash flags both work.
    run(&["kv", "put", "-flags=5", "a/b", "1"]);
    run(&["kv", "put", "--flags", "6", "a/c", "2"]);
    assert_eq!(run(&["kv", "get", "-recurse", "a"]).1, "a/b:1\na/c:2\n");
    assert_eq!(run(&["kv", "get", "-keys"]).1, "a/\ncarbonio-files/\n");
    let (_, out, _) = run(&["kv", "get", "-detailed", "a/b"]);
    assert!(out.contains("Flags            5\n"), "{out}");
    assert!(out.contains("Session          -\n"), "{out}");
    assert!(out.ends_with("Value            1\n"), "{out}");
    // CAS with a stale index fails and says so.
    let (code, _, err) = run(&["kv", "put", "-cas", "-modify-index=1", "a/b", "x"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "Error! Did not write to a/b: CAS failed\n")
    );
    let (code, _, err) = run(&["kv", "put", "-cas", "-modify-index=0", "a/b", "x"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "Error! Did not write to a/b: CAS performed with index=0 and key already exists.\n"
        )
    );
    assert_eq!(
        run(&["kv", "delete", "a/b"]).1,
        "Success! Deleted key: a/b\n"
    );
    assert_eq!(
        run(&["kv", "delete", "-recurse", "a"]).1,
        "Success! Deleted keys with prefix: a\n"
    );
    assert_eq!(run(&["kv", "get", "-recurse", "a"]).1, "");
    let (code, _, err) = run(&["kv", "get"]);
    assert_eq!((code, err.as_str()), (1, "Error! Missing KEY argument\n"));
}

#[tokio::test]
async fn kv_put_from_file_stdin_and_base64() {
    let a = dev().await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("value.txt");
    std::fs::write(&f, "from a file").unwrap();
    let at = format!("@{}", f.display());
    assert_eq!(cli(BIN, &a, &["kv", "put", "f", &at], None).0, 0);
    assert_eq!(cli(BIN, &a, &["kv", "get", "f"], None).1, "from a file\n");
    assert_eq!(
        cli(BIN, &a, &["kv", "put", "s", "-"], Some(b"from stdin")).0,
        0
    );
    assert_eq!(cli(BIN, &a, &["kv", "get", "s"], None).1, "from stdin\n");
    assert_eq!(
        cli(BIN, &a, &["kv", "put", "-base64", "b", "aGk="], None).0,
        0
    );
    assert_eq!(cli(BIN, &a, &["kv", "get", "b"], None).1, "hi\n");
    assert_eq!(
        cli(BIN, &a, &["kv", "get", "-base64", "b"], None).1,
        "aGk=\n"
    );
}

#[tokio::test]
async fn kv_export_import_roundtrip() {
    let a = dev().await;
    cli(BIN, &a, &["kv", "put", "-flags=3", "app/x", "1"], None);
    cli(BIN, &a, &["kv", "put", "app/y", "2"], None);
    let (code, out, _) = cli(BIN, &a, &["kv", "export", "app/"], None);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!([{"key": "app/x", "flags": 3, "value": "MQ=="}, {"key": "app/y", "flags": 0, "value": "Mg=="}])
    );
    assert!(out.contains("\n\t{"), "tab-indented like Consul: {out}");
    let b = dev().await;
    let (code, out, _) = cli(BIN, &b, &["kv", "import", "-"], Some(out.as_bytes()));
    assert_eq!(
        (code, out.as_str()),
        (0, "Imported: app/x\nImported: app/y\n")
    );
    let (_, v) = b.get_json("/v1/kv/app/x").await;
    assert_eq!(v[0]["Flags"], 3);
    let (code, _, err) = cli(BIN, &b, &["kv", "import", "not json"], None);
    assert_eq!(code, 1);
    assert!(err.starts_with("Cannot unmarshal data: "), "{err}");
}

#[tokio::test]
async fn catalog_and_members_output() {
    let a = dev().await;
    a.put("/v1/catalog/register", crate::catalog::EXTERNAL_DB)
        .await;
    assert_eq!(cli(BIN, &a, &["catalog", "datacenters"], None).1, "dc1\n");
    let (_, out, _) = cli(BIN, &a, &["catalog", "services"], None);
    assert_eq!(out, "carbonio-files-db\nconsul\n");
    let (_, out, _) = cli(BIN, &a, &["catalog", "nodes"], None);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        vec!["Node", "ID", "Address", "DC"]
    );
    assert!(lines[1].starts_with("external-files-db-node  "), "{out}");
    assert!(
        lines[1].ends_with("external-database.example.com  dc1"),
        "{out}"
    );
    let (_, out, _) = cli(
        BIN,
        &a,
        &["catalog", "nodes", "-node-meta", "external-node=true"],
        None,
    );
    assert_eq!(out.lines().count(), 2);
    let (code, out, err) = cli(BIN, &a, &["catalog", "nodes", "-service", "nothing"], None);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(
        err,
        "No nodes match the given query - try expanding your search.\n"
    );
    let (_, out, _) = cli(BIN, &a, &["members"], None);
    assert!(
        out.starts_with("Node       Address         Status  Type    Build"),
        "{out}"
    );
    assert!(
        out.contains("test-node  127.0.0.1:8301  alive   server"),
        "{out}"
    );
}

#[tokio::test]
async fn services_register_from_files_and_flags() {
    let a = dev().await;
    let dir = tempfile::tempdir().unwrap();
    let hcl = dir.path().join("web.hcl");
    std::fs::write(
        &hcl,
        r#"service {
  name = "web"
  id   = "web-1"
  port = 8080
  tags = ["primary"]
  # a comment
  check {
    ttl = "30s"
  }
}
"#,
    )
    .unwrap();
    let file = hcl.display().to_string();
    assert_eq!(
        cli(BIN, &a, &["services", "register", &file], None),
        (0, "Registered service: web\n".into(), String::new())
    );
    let (_, v) = a.get_json("/v1/agent/services").await;
    assert_eq!(v["web-1"]["Tags"], json!(["primary"]));
    let (_, checks) = a.get_json("/v1/agent/checks").await;
    assert_eq!(checks["service:web-1"]["Type"], "ttl");
    assert_eq!(
        cli(
            BIN,
            &a,
            &[
                "services", "register", "-name", "db", "-port", "5432", "-tag", "x"
            ],
            None
        )
        .1,
        "Registered service: db\n"
    );
    assert_eq!(
        cli(BIN, &a, &["services", "deregister", &file], None).1,
        "Deregistered service: web-1\n"
    );
    assert_eq!(
        cli(BIN, &a, &["services", "deregister", "-id", "db"], None).1,
        "Deregistered service: db\n"
    );
    let (code, _, err) = cli(BIN, &a, &["services", "deregister", "-id", "db"], None);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Error deregistering service \"db\": Unexpected response code: 404 (Unknown service ID \"db\". Ensure that the service ID is passed, not the service name.)\n"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"service": {"name": "x", "wrong_key": 1}}"#).unwrap();
    let (code, _, err) = cli(
        BIN,
        &a,
        &["services", "register", &bad.display().to_string()],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("wrong_key"), "{err}");
}

#[tokio::test]
async fn addresses_env_and_help() {
    let a = dev().await;
    // -http-addr beats the environment.
    let (code, out, _) = cli(
        BIN,
        &a,
        &["catalog", "datacenters", "-http-addr", &a.base],
        None,
    );
    assert_eq!((code, out.as_str()), (0, "dc1\n"));
    let out = std::process::Command::new(BIN)
        .args(["catalog", "datacenters"])
        .env("CONSUL_HTTP_ADDR", "127.0.0.1:1")
        .env("MESHGATE_HTTP_ADDR", &a.base)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "dc1\n",
        "MESHGATE_* wins over CONSUL_*"
    );
    let out = std::process::Command::new(BIN)
        .args(["catalog", "datacenters", "-http-addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error listing datacenters: "));
    for cmd in [
        vec!["kv", "put", "-h"],
        vec!["agent", "-h"],
        vec!["catalog", "nodes", "-h"],
    ] {
        let out = std::process::Command::new(BIN).args(&cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{cmd:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("--http-addr") || cmd[0] == "agent");
    }
    let out = std::process::Command::new(BIN)
        .args(["kv", "get", "-bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}

/// `meshgate validate` (Consul's `consul validate`): the agent's own reading
/// of files and directories, its checks before a start, and the watches.
#[test]
fn validate_reads_configuration_as_the_agent_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("validate")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let etc = d.join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(
        etc.join("agent.hcl"),
        "server = true\ndata_dir = \"/var/lib/meshgate\"\nbind_addr = \"127.0.0.2\"\nperformance { raft_multiplier = 1 }\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("svc.json"),
        r#"{"service": {"name": "web", "port": 80}}"#,
    )
    .unwrap();
    let etc_s = etc.display().to_string();
    let (code, out, err) = run(&[&etc_s]);
    assert_eq!(
        (code, out.as_str()),
        (0, "Configuration is valid!\n"),
        "{err}"
    );
    assert!(
        err.contains("raft_multiplier"),
        "no-effect keys are reported: {err}"
    );
    let (code, out, _) = run(&["-quiet", &etc_s]);
    assert_eq!((code, out.as_str()), (0, ""));
    // A file on its own and a directory together.
    let extra = d.join("extra.hcl");
    std::fs::write(&extra, "node_meta { rack = \"r1\" }\n").unwrap();
    let (code, _, err) = run(&[&etc_s, &extra.display().to_string()]);
    assert_eq!(code, 0, "{err}");

    for (contents, want) in [
        ("bogus_key = 1\n", "invalid config key bogus_key"),
        ("server = true\n", "data_dir is required"),
        (
            "data_dir = \"/tmp/x\"\n",
            "a client agent needs servers to join",
        ),
        (
            "server = true\ndata_dir = \"/tmp/x\"\nbind_addr = \"127.0.0.2\"\nwatches = [{ type = \"key\", key = \"k\" }]\n",
            "Must define a watch handler",
        ),
    ] {
        std::fs::write(&extra, contents).unwrap();
        let (code, out, err) = run(&[&extra.display().to_string()]);
        assert_eq!(code, 1, "{contents}: {out}");
        assert!(
            err.contains("Config validation failed: "),
            "{contents}: {err}"
        );
        assert!(err.contains(want), "{contents}: {err}");
    }
    let (code, _, err) = run(&[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Must specify at least one config file or directory"),
        "{err}"
    );
    let (code, _, err) = run(&["-config-format=yaml", &etc_s]);
    assert_eq!(code, 1);
    assert!(
        err.contains("-config-format must be either 'hcl' or 'json'"),
        "{err}"
    );
}
