//! `meshgate config ...`, `meshgate intention ...` and `meshgate connect ca
//! ...` against a real dev agent: the scenario's terminating gateway file,
//! service defaults, check-and-set, deletes, intentions with wildcards, and
//! the CA configuration.

use meshgate_test_support::{Agent, cli};
use serde_json::{Value, json};

use crate::{BIN, dev};

/// The scenario's file, exactly as the operator writes it.
const GATEWAY_HCL: &str = r#"Kind = "terminating-gateway"
Name = "carbonio-gateway"
Services = [
  {
    Name = "carbonio-files-db"
    # CAFile = "/etc/ssl/certs/external-db-ca.pem"
    # SNI    = "external-database.example.com"
  }
]
"#;

/// Runs the CLI; (exit code, stdout, stderr).
fn run(a: &Agent, args: &[&str]) -> (i32, String, String) {
    cli(BIN, a, args, None)
}

/// Runs the CLI and expects success; returns stdout.
fn ok(a: &Agent, args: &[&str]) -> String {
    let (code, out, err) = run(a, args);
    assert_eq!(code, 0, "{args:?} failed: {err}");
    out
}

/// Runs the CLI and expects exit code 1 with nothing on stdout; returns stderr.
fn fails(a: &Agent, args: &[&str]) -> String {
    let (code, out, err) = run(a, args);
    assert_eq!((code, out.as_str()), (1, ""), "{args:?}: {err}");
    err
}

/// Writes a file in the agent's temporary directory; returns its path.
fn file(a: &Agent, name: &str, contents: &str) -> String {
    let p = a.dir().join(name);
    std::fs::write(&p, contents).expect("write file");
    p.to_string_lossy().into_owned()
}

fn parse(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

#[tokio::test]
async fn scenario_gateway_write_read_list_delete() {
    let a = dev().await;
    let path = file(&a, "gateway-config.hcl", GATEWAY_HCL);

    assert_eq!(
        ok(&a, &["config", "write", &path]),
        "Config entry written: terminating-gateway/carbonio-gateway\n"
    );
    let out = ok(
        &a,
        &[
            "config",
            "read",
            "-kind",
            "terminating-gateway",
            "-name",
            "carbonio-gateway",
        ],
    );
    // The Go api struct, four-space indent, in Consul's field order.
    assert!(
        out.starts_with(
            "{\n    \"Kind\": \"terminating-gateway\",\n    \"Name\": \"carbonio-gateway\",\n    \"Services\": [\n        {\n            \"Name\": \"carbonio-files-db\"\n        }\n    ],\n    \"CreateIndex\": "
        ),
        "{out}"
    );
    let v = parse(&out);
    let obj = v.as_object().unwrap();
    assert_eq!(
        obj.keys().collect::<Vec<_>>(),
        ["Kind", "Name", "Services", "CreateIndex", "ModifyIndex"]
    );
    assert_eq!(v["Services"], json!([{"Name": "carbonio-files-db"}]));
    assert!(v["ModifyIndex"].as_u64().unwrap() > 0);
    assert_eq!(
        ok(&a, &["config", "list", "-kind", "terminating-gateway"]),
        "carbonio-gateway\n"
    );
    // The agent has it, as the HTTP API shows it.
    let (status, body) = a
        .get_json("/v1/config/terminating-gateway/carbonio-gateway")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["Services"][0]["Name"], "carbonio-files-db");
    assert!(body["Services"][0].get("CAFile").is_none(), "{body}");

    // The same file with the commented lines in: CAFile and SNI are kept.
    let tls = GATEWAY_HCL.replace("    # ", "    ");
    assert!(tls.contains("    CAFile = "), "{tls}");
    let tls_path = file(&a, "gateway-config-tls.hcl", &tls);
    let (code, out, err) = run(&a, &["config", "write", &tls_path]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            0,
            "Config entry written: terminating-gateway/carbonio-gateway\n",
            ""
        )
    );
    let v = parse(&ok(
        &a,
        &[
            "config",
            "read",
            "-kind",
            "terminating-gateway",
            "-name",
            "carbonio-gateway",
        ],
    ));
    assert_eq!(
        v["Services"],
        json!([{
            "Name": "carbonio-files-db",
            "CAFile": "/etc/ssl/certs/external-db-ca.pem",
            "SNI": "external-database.example.com"
        }])
    );
    // -filename reads the kind and name from the file.
    let by_file = parse(&ok(&a, &["config", "read", "-filename", &path]));
    assert_eq!(by_file, v);

    // The scenario's delete.
    assert_eq!(
        ok(
            &a,
            &[
                "config",
                "delete",
                "-kind",
                "terminating-gateway",
                "-name",
                "carbonio-gateway"
            ]
        ),
        "Config entry deleted: terminating-gateway/carbonio-gateway\n"
    );
    assert_eq!(
        ok(&a, &["config", "list", "-kind", "terminating-gateway"]),
        ""
    );
    let err = fails(
        &a,
        &[
            "config",
            "read",
            "-kind",
            "terminating-gateway",
            "-name",
            "carbonio-gateway",
        ],
    );
    assert_eq!(
        err,
        "Error reading config entry terminating-gateway/carbonio-gateway: Unexpected response code: 404 (Config entry not found for \"terminating-gateway\" / \"carbonio-gateway\")\n"
    );
    // Deleting what is not there is not an error (as in Consul).
    assert_eq!(
        ok(
            &a,
            &[
                "config",
                "delete",
                "-kind",
                "terminating-gateway",
                "-name",
                "carbonio-gateway"
            ]
        ),
        "Config entry deleted: terminating-gateway/carbonio-gateway\n"
    );

    // From stdin, in JSON.
    let (code, out, err) = cli(
        BIN,
        &a,
        &["config", "write", "-"],
        Some(br#"{"Kind": "terminating-gateway", "Name": "gw2", "Services": [{"Name": "x"}]}"#),
    );
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "Config entry written: terminating-gateway/gw2\n", "")
    );
    assert_eq!(
        ok(&a, &["config", "list", "-kind", "terminating-gateway"]),
        "gw2\n"
    );
    // -filename deletes the entry the file names.
    let gw2 = file(
        &a,
        "gw2.hcl",
        "kind = \"terminating-gateway\"\nname = \"gw2\"\n",
    );
    assert_eq!(
        ok(&a, &["config", "delete", "-filename", &gw2]),
        "Config entry deleted: terminating-gateway/gw2\n"
    );
    assert_eq!(
        ok(&a, &["config", "list", "-kind", "terminating-gateway"]),
        ""
    );
}

#[tokio::test]
async fn service_defaults_protocols() {
    let a = dev().await;
    let pg = file(
        &a,
        "pg.hcl",
        "Kind = \"service-defaults\"\nName = \"carbonio-files-db\"\nProtocol = \"postgres\"\n",
    );
    assert_eq!(
        ok(&a, &["config", "write", &pg]),
        "Config entry written: service-defaults/carbonio-files-db\n"
    );
    let v = parse(&ok(
        &a,
        &[
            "config",
            "read",
            "-kind",
            "service-defaults",
            "-name",
            "carbonio-files-db",
        ],
    ));
    assert_eq!(v["Kind"], "service-defaults");
    assert_eq!(v["Protocol"], "postgres");

    let bad = file(
        &a,
        "bad.hcl",
        "Kind = \"service-defaults\"\nName = \"web\"\nProtocol = \"smtp\"\n",
    );
    let err = fails(&a, &["config", "write", &bad]);
    assert_eq!(
        err,
        "Error writing config entry service-defaults/web: Unexpected response code: 500 (1 error occurred:\n\t* invalid value for protocol: smtp)\n"
    );
    // Nothing was written.
    assert_eq!(
        ok(&a, &["config", "list", "-kind", "service-defaults"]),
        "carbonio-files-db\n"
    );
    let (status, _) = a.get_json("/v1/config/service-defaults/web").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn file_errors_write_nothing() {
    let a = dev().await;
    let unknown = file(
        &a,
        "unknown.hcl",
        r#"Kind = "terminating-gateway"
Name = "carbonio-gateway"
Services = [
  {
    Name = "carbonio-files-db"
    CAFiel = "/etc/ssl/certs/external-db-ca.pem"
  }
]
"#,
    );
    let err = fails(&a, &["config", "write", &unknown]);
    assert!(
        err.starts_with("Failed to decode config entry input: 1 error occurred:\n\t* invalid config key \"Services[0].CAFiel\""),
        "{err}"
    );
    let top = file(
        &a,
        "top.hcl",
        "Kind = \"service-defaults\"\nName = \"web\"\nProtocl = \"http\"\n",
    );
    let err = fails(&a, &["config", "write", &top]);
    assert_eq!(
        err,
        "Failed to decode config entry input: 1 error occurred:\n\t* invalid config key \"Protocl\"\n\n\n"
    );
    for kind in ["terminating-gateway", "service-defaults"] {
        assert_eq!(ok(&a, &["config", "list", "-kind", kind]), "", "{kind}");
    }

    let syntax = file(&a, "syntax.hcl", "Kind = \n");
    let err = fails(&a, &["config", "write", &syntax]);
    // Consul wraps a syntax error twice.
    assert!(
        err.starts_with(
            "Failed to decode config entry input: Failed to decode config entry input: At "
        ),
        "{err}"
    );
    let no_kind = file(&a, "nokind.hcl", "Name = \"x\"\n");
    assert_eq!(
        fails(&a, &["config", "write", &no_kind]),
        "Failed to decode config entry input: Payload does not contain a kind/Kind key at the top level\n"
    );
    let bad_kind = file(&a, "badkind.hcl", "Kind = \"nope\"\nName = \"x\"\n");
    assert_eq!(
        fails(&a, &["config", "write", &bad_kind]),
        "Failed to decode config entry input: invalid config entry kind: nope\n"
    );
    assert_eq!(
        fails(&a, &["config", "write", "/nonexistent/gw.hcl"]),
        "Failed to load data: Failed to read file: open /nonexistent/gw.hcl: no such file or directory\n"
    );
    assert_eq!(
        fails(&a, &["config", "write"]),
        "Must provide exactly one positional argument to specify the config entry to write\n"
    );
    assert_eq!(
        fails(&a, &["config", "read", "-name", "x"]),
        "Must specify the -kind parameter\n"
    );
    assert_eq!(
        fails(&a, &["config", "read", "-kind", "mesh"]),
        "Must specify the -name parameter\n"
    );
    assert_eq!(
        fails(&a, &["config", "read", "-kind", "nope", "-name", "x"]),
        "Error reading config entry nope/x: invalid config entry kind: nope\n"
    );
    assert_eq!(
        fails(&a, &["config", "list"]),
        "Must specify the -kind parameter\n"
    );
    assert_eq!(
        fails(&a, &["config", "list", "-kind", "nope"]),
        "Error listing config entries for kind \"nope\": Unexpected response code: 500 (invalid config entry kind: nope)\n"
    );
}

#[tokio::test]
async fn check_and_set() {
    let a = dev().await;
    let path = file(&a, "gateway-config.hcl", GATEWAY_HCL);
    let read_index = |a: &Agent| {
        parse(&ok(
            a,
            &[
                "config",
                "read",
                "-kind",
                "terminating-gateway",
                "-name",
                "carbonio-gateway",
            ],
        ))["ModifyIndex"]
            .as_u64()
            .unwrap()
    };

    // Index 0: only when the entry does not exist yet.
    assert_eq!(
        ok(&a, &["config", "write", "-cas", "-modify-index=0", &path]),
        "Config entry written: terminating-gateway/carbonio-gateway\n"
    );
    assert_eq!(
        fails(
            &a,
            &["config", "write", "-cas", "-modify-index", "0", &path]
        ),
        "Config entry not updated: terminating-gateway/carbonio-gateway\n"
    );
    let idx = read_index(&a);
    let stale = (idx - 1).to_string();
    assert_eq!(
        fails(
            &a,
            &["config", "write", "-cas", "-modify-index", &stale, &path]
        ),
        "Config entry not updated: terminating-gateway/carbonio-gateway\n"
    );
    assert_eq!(read_index(&a), idx, "a failed CAS changes nothing");
    let current = idx.to_string();
    assert_eq!(
        ok(
            &a,
            &["config", "write", "-cas", "-modify-index", &current, &path]
        ),
        "Config entry written: terminating-gateway/carbonio-gateway\n"
    );
    let idx2 = read_index(&a);
    assert!(idx2 > idx);

    // Deletes: the flag rules, then a stale and a current index.
    let del = ["config", "delete", "-kind", "terminating-gateway"];
    assert_eq!(fails(&a, &del), "Must specify the -name parameter\n");
    assert_eq!(
        fails(&a, &["config", "delete", "-name", "x"]),
        "Must specify the -kind parameter\n"
    );
    assert_eq!(
        fails(&a, &["config", "delete"]),
        "Must specify the -kind or -filename parameter\n"
    );
    assert_eq!(
        fails(
            &a,
            &["config", "delete", "-filename", &path, "-kind", "mesh"]
        ),
        "filename can't be used with kind or name\n"
    );
    let with_name = [&del[..], &["-name", "carbonio-gateway"]].concat();
    assert_eq!(
        fails(&a, &[&with_name[..], &["-cas"]].concat()),
        "Must specify a -modify-index greater than 0 with -cas\n"
    );
    assert_eq!(
        fails(&a, &[&with_name[..], &["-modify-index", "3"]].concat()),
        "Cannot specify -modify-index without -cas\n"
    );
    assert_eq!(
        fails(
            &a,
            &[&with_name[..], &["-cas", "-modify-index", &current]].concat()
        ),
        "Config entry not deleted: terminating-gateway/carbonio-gateway\n"
    );
    assert_eq!(read_index(&a), idx2, "still there");
    let current2 = idx2.to_string();
    assert_eq!(
        ok(
            &a,
            &[&with_name[..], &["-cas", "-modify-index", &current2]].concat()
        ),
        "Config entry deleted: terminating-gateway/carbonio-gateway\n"
    );
    assert_eq!(
        ok(&a, &["config", "list", "-kind", "terminating-gateway"]),
        ""
    );
    assert_eq!(
        fails(&a, &["config", "delete", "-kind", "nope", "-name", "x"]),
        "Error deleting config entry nope/x: Unexpected response code: 400 (invalid config entry kind: nope)\n"
    );
}

#[tokio::test]
async fn permissive_mutual_tls_needs_the_mesh_entry_and_warns() {
    let a = dev().await;
    let sd = file(
        &a,
        "sd.hcl",
        "Kind = \"service-defaults\"\nName = \"web\"\nMutualTLSMode = \"permissive\"\n",
    );
    assert_eq!(
        fails(&a, &["config", "write", &sd]),
        "Error writing config entry service-defaults/web: Unexpected response code: 500 (cannot set MutualTLSMode=permissive because AllowEnablingPermissiveMutualTLS=false in the mesh config entry)\n"
    );
    assert_eq!(ok(&a, &["config", "list", "-kind", "service-defaults"]), "");
    let mesh = file(
        &a,
        "mesh.hcl",
        "Kind = \"mesh\"\nAllowEnablingPermissiveMutualTLS = true\n",
    );
    let (code, out, err) = run(&a, &["config", "write", &mesh]);
    assert_eq!(
        (code, out.as_str()),
        (0, "Config entry written: mesh/mesh\n")
    );
    assert!(
        err.starts_with("WARNING: AllowEnablingPermissiveMutualTLS=true allows insecure"),
        "{err}"
    );
    let (code, out, err) = run(&a, &["config", "write", &sd]);
    assert_eq!(
        (code, out.as_str()),
        (0, "Config entry written: service-defaults/web\n")
    );
    assert!(
        err.starts_with("WARNING: MutualTLSMode=permissive is insecure."),
        "{err}"
    );
    assert_eq!(ok(&a, &["config", "list", "-kind", "mesh"]), "mesh\n");
}

#[tokio::test]
async fn intentions_end_to_end() {
    let a = dev().await;
    let (code, out, err) = run(&a, &["intention", "list"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (2, "", "There are no intentions.\n")
    );

    assert_eq!(
        ok(&a, &["intention", "create", "web", "db"]),
        "Created: web => db (allow)\n"
    );
    // An existing pair is refused without -replace, with Consul's error.
    assert_eq!(
        fails(&a, &["intention", "create", "-deny", "web", "db"]),
        "Error creating intention \"web => db (deny)\": Unexpected response code: 500 (Sources[1] defines \"web\" more than once)\n"
    );
    assert_eq!(
        ok(&a, &["intention", "create", "-deny", "*", "db"]),
        "Created: * => db (deny)\n"
    );

    // Wildcard precedence: the exact allow beats `* -> db` deny.
    let (code, out, _) = run(&a, &["intention", "check", "web", "db"]);
    assert_eq!((code, out.as_str()), (0, "Allowed\n"));
    let (code, out, _) = run(&a, &["intention", "check", "other", "db"]);
    assert_eq!((code, out.as_str()), (1, "Denied\n"));
    // No intention for the pair: the default (allow without ACLs).
    let (code, out, _) = run(&a, &["intention", "check", "other", "cache"]);
    assert_eq!((code, out.as_str()), (0, "Allowed\n"));

    assert_eq!(
        ok(&a, &["intention", "list"]),
        "ID  Source  Action  Destination  Precedence\n    web     allow   db           9\n    *       deny    db           8\n"
    );
    assert_eq!(
        ok(&a, &["intention", "get", "web", "db"]),
        "Source:       web\nDestination:  db\nAction:       allow\nCreated At:   Monday, 01-Jan-01 00:00:00 UTC\n"
    );
    assert_eq!(
        ok(&a, &["intention", "match", "db"]),
        "web => db (allow)\n* => db (deny)\n"
    );
    assert_eq!(
        ok(&a, &["intention", "match", "-destination", "db"]),
        "web => db (allow)\n* => db (deny)\n"
    );
    assert_eq!(
        ok(&a, &["intention", "match", "-source", "web"]),
        "web => db (allow)\n* => db (deny)\n"
    );
    assert_eq!(
        ok(&a, &["intention", "match", "-source", "other"]),
        "* => db (deny)\n"
    );

    // -replace turns the allow into a deny (Consul prints nothing then).
    let (code, out, err) = run(
        &a,
        &["intention", "create", "-replace", "-deny", "web", "db"],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    assert!(ok(&a, &["intention", "get", "web", "db"]).contains("\nAction:       deny\n"));
    let (code, out, _) = run(&a, &["intention", "check", "web", "db"]);
    assert_eq!((code, out.as_str()), (1, "Denied\n"));
    // -replace of a pair that does not exist creates it.
    assert_eq!(
        ok(&a, &["intention", "create", "-replace", "web", "cache"]),
        "Created: web => cache (allow)\n"
    );

    // Deleting the exact intention leaves the wildcard deciding.
    assert_eq!(
        ok(&a, &["intention", "delete", "web", "db"]),
        "Intention deleted.\n"
    );
    assert_eq!(
        fails(&a, &["intention", "get", "web", "db"]),
        "Intention not found with source \"web\" and destination \"db\"\n"
    );
    let (code, out, _) = run(&a, &["intention", "check", "web", "db"]);
    assert_eq!((code, out.as_str()), (1, "Denied\n"));
    assert_eq!(
        ok(&a, &["intention", "delete", "*", "db"]),
        "Intention deleted.\n"
    );
    let (code, out, _) = run(&a, &["intention", "check", "other", "db"]);
    assert_eq!((code, out.as_str()), (0, "Allowed\n"));
    assert_eq!(
        ok(&a, &["intention", "list"]),
        "ID  Source  Action  Destination  Precedence\n    web     allow   cache        9\n"
    );
    // The destination's service-intentions entry is gone with its last source.
    let (status, _) = a.get_json("/v1/config/service-intentions/db").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn intentions_from_files_and_config_entries() {
    let a = dev().await;
    // An intention file (the api.Intention JSON) with a description.
    let f = file(
        &a,
        "i.json",
        r#"{"SourceName": "api", "DestinationName": "db", "Action": "deny", "Description": "not the api"}"#,
    );
    assert_eq!(
        ok(&a, &["intention", "create", "-file", &f]),
        "Created: api => db (deny)\n"
    );
    assert_eq!(
        ok(&a, &["intention", "get", "api", "db"]),
        "Source:       api\nDestination:  db\nAction:       deny\nDescription:  not the api\nCreated At:   Monday, 01-Jan-01 00:00:00 UTC\n"
    );
    let l7 = file(
        &a,
        "l7.json",
        r#"{"SourceName": "web", "DestinationName": "db", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}"#,
    );
    assert_eq!(
        fails(&a, &["intention", "create", "-file", &l7]),
        format!(
            "Error: cannot create L7 intention from file \"{l7}\" using this CLI; use 'meshgate config write' instead\n"
        )
    );

    // Intentions written as a service-intentions config entry are seen by
    // the intention commands.
    let entry = file(
        &a,
        "db-intentions.hcl",
        r#"Kind = "service-intentions"
Name = "cache"
Sources = [
  { Name = "web", Action = "allow" },
  { Name = "*", Action = "deny" },
]
"#,
    );
    assert_eq!(
        ok(&a, &["config", "write", &entry]),
        "Config entry written: service-intentions/cache\n"
    );
    let (code, out, _) = run(&a, &["intention", "check", "web", "cache"]);
    assert_eq!((code, out.as_str()), (0, "Allowed\n"));
    let (code, out, _) = run(&a, &["intention", "check", "api", "cache"]);
    assert_eq!((code, out.as_str()), (1, "Denied\n"));
    assert_eq!(
        ok(&a, &["intention", "match", "cache"]),
        "web => cache (allow)\n* => cache (deny)\n"
    );
    let v = parse(&ok(
        &a,
        &[
            "config",
            "read",
            "-kind",
            "service-intentions",
            "-name",
            "cache",
        ],
    ));
    assert_eq!(v["Sources"][0]["Name"], "web");
    assert_eq!(v["Sources"][0]["Precedence"], 9);
    assert_eq!(v["Sources"][1]["Name"], "*");
}

#[tokio::test]
async fn intention_argument_errors() {
    let a = dev().await;
    assert_eq!(
        fails(&a, &["intention", "create", "-allow", "-deny", "web", "db"]),
        "Only one of -allow or -deny may be specified.\n"
    );
    assert_eq!(
        fails(&a, &["intention", "create", "web"]),
        "Error: Must specify two arguments: source and destination\n"
    );
    assert_eq!(
        fails(&a, &["intention", "create", "a/b/c/web", "db"]),
        "Error: Invalid intention source: input can contain at most two '/'\n"
    );
    assert_eq!(
        fails(
            &a,
            &["intention", "create", "-meta", "novalue", "web", "db"]
        ),
        "invalid value \"novalue\" for flag -meta: Missing \"=\" value in argument: novalue\n"
    );
    // The exact API keeps no per-intention metadata (as Consul's).
    assert_eq!(
        fails(
            &a,
            &["intention", "create", "-meta", "team=db", "web", "db"]
        ),
        "Error creating intention \"web => db (allow)\": Unexpected response code: 500 (Meta must not be specified)\n"
    );
    let (code, out, err) = run(&a, &["intention", "check", "web"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            2,
            "",
            "Error: command requires exactly two arguments: src and dst\n"
        )
    );
    assert_eq!(
        fails(&a, &["intention", "match", "-source", "-destination", "db"]),
        "Error: only one of -source or -destination may be specified\n"
    );
    assert_eq!(
        fails(&a, &["intention", "match"]),
        "Error: command requires exactly one argument: src or dst\n"
    );
    assert_eq!(
        fails(&a, &["intention", "get", "a", "b", "c"]),
        "command requires exactly 1 or 2 arguments\n"
    );
    assert_eq!(
        fails(
            &a,
            &["intention", "get", "0f2ba0d6-0000-0000-0000-000000000000"]
        ),
        "Intention not found with ID \"0f2ba0d6-0000-0000-0000-000000000000\"\n"
    );
    assert_eq!(
        fails(&a, &["intention", "delete", "web"]),
        "Error deleting the intention: Cannot delete non-existent intention: 'web'\n"
    );
    // Nothing was created by any of these.
    let (code, _, _) = run(&a, &["intention", "list"]);
    assert_eq!(code, 2);
}

#[tokio::test]
async fn connect_ca_get_and_set_config() {
    let a = dev().await;
    let out = ok(&a, &["connect", "ca", "get-config"]);
    // Go's api.CAConfig with a tab indent.
    assert!(
        out.starts_with("{\n\t\"Provider\": \"consul\",\n\t\"Config\": {\n\t\t"),
        "{out}"
    );
    let v = parse(&out);
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "Provider",
            "Config",
            "State",
            "ForceWithoutCrossSigning",
            "CreateIndex",
            "ModifyIndex"
        ]
    );
    assert_eq!(v["Config"]["LeafCertTTL"], "72h");
    assert_eq!(v["Config"]["RotationPeriod"], "2160h");

    let cfg = file(
        &a,
        "ca.json",
        r#"{"Provider": "consul", "Config": {"LeafCertTTL": "24h", "RotationPeriod": "2160h", "IntermediateCertTTL": "8760h"}}"#,
    );
    assert_eq!(
        ok(&a, &["connect", "ca", "set-config", "-config-file", &cfg]),
        "Configuration updated!\n"
    );
    let v2 = parse(&ok(&a, &["connect", "ca", "get-config"]));
    assert_eq!(v2["Config"]["LeafCertTTL"], "24h");
    assert!(v2["ModifyIndex"].as_u64() > v["ModifyIndex"].as_u64());

    assert_eq!(
        fails(&a, &["connect", "ca", "set-config"]),
        "The -config-file flag is required\n"
    );
    assert_eq!(
        fails(
            &a,
            &[
                "connect",
                "ca",
                "set-config",
                "-config-file",
                "/nonexistent/ca.json"
            ]
        ),
        "Error reading config file: open /nonexistent/ca.json: no such file or directory\n"
    );
    let short = file(
        &a,
        "short.json",
        r#"{"Provider": "consul", "Config": {"LeafCertTTL": "1m"}}"#,
    );
    let err = fails(&a, &["connect", "ca", "set-config", "-config-file", &short]);
    assert!(
        err.starts_with("Error setting CA configuration: Unexpected response code: 500 ("),
        "{err}"
    );
    assert!(err.contains("LeafCertTTL"), "{err}");
    let v3 = parse(&ok(&a, &["connect", "ca", "get-config"]));
    assert_eq!(v3["Config"]["LeafCertTTL"], "24h", "unchanged");
}
