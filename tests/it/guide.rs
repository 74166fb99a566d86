//! Runs `docs/guide-external-database.md`: every `sh` block, in order, on the
//! node its first line names (`# on gateway-1`, or several: `# on a, b`).
//!
//! Each node is a mount namespace with private overlays over `/etc` and
//! `/var/lib` (kept under a temp dir), so six "machines" share this one
//! without touching its files; the package's files are installed into each
//! meshgate node the way dpkg would. `systemctl` and `scp` are stand-ins
//! (tests/it/guide/); everything else is the real program. How this works is
//! also told at the end of the guide itself.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshgate_test_support::postgres::{self, Postgres, ServerTls};
use serde_json::Value;

use crate::BIN;

const GUIDE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/docs/guide-external-database.md"
);
const SHIMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/guide");
const PACKAGING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging");
/// The cluster credential password the guide's prompts are answered with.
const PASSWORD: &str = "correct horse battery staple";
/// The nodes of the guide, as its table lists them.
const NODES: [(&str, &str); 6] = [
    ("server-1", "127.0.0.81"),
    ("server-2", "127.0.0.82"),
    ("server-3", "127.0.0.83"),
    ("gateway-1", "127.0.0.84"),
    ("files-1", "127.0.0.85"),
    ("database", "127.0.0.86"),
];
const DB_IP: &str = "127.0.0.86";
/// How long one block may take.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(180);

/// One `sh` block of the guide.
#[derive(Debug)]
struct Block {
    nodes: Vec<String>,
    script: String,
    line: usize,
}

/// The guide's `sh` blocks; every one must say where it runs.
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, l)) = lines.next() {
        if l.trim_end() != "```sh" {
            continue;
        }
        let mut body = Vec::new();
        for (_, l) in lines.by_ref() {
            if l.trim_end() == "```" {
                break;
            }
            body.push(l);
        }
        let first = body.first().copied().unwrap_or_default();
        let nodes = first
            .strip_prefix("# on ")
            .unwrap_or_else(|| {
                panic!(
                    "docs/guide-external-database.md line {}: an sh block must start with \
                     `# on NODE` (every command of the guide is run by this test)",
                    i + 1
                )
            })
            .split(',')
            .map(|n| n.trim().to_string())
            .collect::<Vec<_>>();
        for n in &nodes {
            assert!(
                NODES.iter().any(|(name, _)| name == n),
                "line {}: unknown node {n:?}",
                i + 1
            );
        }
        out.push(Block {
            nodes,
            script: body[1..].join("\n"),
            line: i + 1,
        });
    }
    out
}

#[test]
fn guide_blocks_all_name_their_node() {
    let text = std::fs::read_to_string(GUIDE).expect("read the guide");
    let b = blocks(&text);
    assert!(b.len() > 15, "{} blocks", b.len());
    // The guide covers what it promises: setup, both paths, TLS, teardown.
    let all: String = b.iter().map(|b| b.script.as_str()).collect();
    for needle in [
        "meshgate setup --bind",
        "meshgate setup --role client",
        "meshgate bootstrap-token --setup",
        "meshgate acl policy create",
        "/v1/catalog/register",
        "meshgate config write",
        "systemctl enable --now carbonio-gateway",
        "meshgate gateway external add",
        "--ca-file",
        "meshgate gateway status",
        "psql",
        "meshgate gateway external remove",
        "meshgate config delete",
    ] {
        assert!(all.contains(needle), "the guide runs no {needle:?}");
    }
}

/// A node: its mount namespace (held by a sleeping process) and its dirs.
struct Node {
    ip: String,
    dir: PathBuf,
    holder: Child,
    /// Blocks run so far (numbers the scripts and outputs kept in run/).
    runs: std::cell::Cell<usize>,
}

impl Node {
    fn start(root: &Path, ip: &str) -> Node {
        let dir = root.join(ip);
        for d in [
            "etc-upper",
            "etc-work",
            "var-lib-upper",
            "var-lib-work",
            "run",
            "home",
        ] {
            std::fs::create_dir_all(dir.join(d)).expect("node dirs");
        }
        let d = dir.display();
        let setup = format!(
            "mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc \
             && mount -t overlay overlay -o lowerdir=/var/lib,upperdir={d}/var-lib-upper,workdir={d}/var-lib-work /var/lib \
             && echo ready && exec sleep 100000"
        );
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c", &setup])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run unshare (util-linux)");
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().expect("stdout")).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = holder.kill();
            let out = holder.wait_with_output().expect("unshare output");
            panic!(
                "could not make the mount namespace of node {ip} (this test needs root, \
                 like CI, for `unshare -m` and overlay mounts): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Node {
            ip: ip.to_string(),
            dir,
            holder,
            runs: std::cell::Cell::new(0),
        }
    }

    /// Runs a shell script in the node's namespace; (status, stdout+stderr).
    fn run(&self, env: &BTreeMap<String, String>, script: &str) -> (bool, String) {
        let n = self.runs.get();
        self.runs.set(n + 1);
        let file = self.dir.join("run").join(format!("block-{n}.sh"));
        let prelude = r#"set -eo pipefail
cd "$GUIDE_RUN/../home"
__GUIDE_BASE=" $(compgen -v | tr '\n' ' ') "
__guide_save() {
  local v
  for v in $(compgen -v); do
    case "$__GUIDE_BASE" in *" $v "*) continue ;; esac
    case "$v" in __GUIDE_*|BASH*|FUNCNAME|PIPESTATUS|_|v) continue ;; esac
    declare -p "$v" 2>/dev/null || true
  done > "$GUIDE_RUN/vars.sh.new" && mv "$GUIDE_RUN/vars.sh.new" "$GUIDE_RUN/vars.sh"
}
if [ -f "$GUIDE_RUN/vars.sh" ]; then . "$GUIDE_RUN/vars.sh"; fi
trap __guide_save EXIT
"#;
        std::fs::write(&file, format!("{prelude}{script}\n")).expect("write block");
        let answers = self.dir.join("run").join("stdin");
        std::fs::write(&answers, format!("{PASSWORD}\n")).expect("write stdin");
        let out_path = self.dir.join("run").join(format!("block-{n}.out"));
        let out = std::fs::File::create(&out_path).expect("output file");
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "--", "bash"])
            .arg(&file)
            .current_dir(self.dir.join("home"))
            .env_clear()
            .envs(env)
            .env("GUIDE_RUN", self.dir.join("run"))
            .stdin(std::fs::File::open(&answers).expect("stdin file"))
            .stdout(out.try_clone().expect("output file"))
            .stderr(out);
        let mut child = cmd.spawn().expect("run nsenter (util-linux)");
        let deadline = Instant::now() + BLOCK_TIMEOUT;
        let ok = loop {
            if let Some(st) = child.try_wait().expect("wait for the block") {
                break st.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (ok, std::fs::read_to_string(&out_path).unwrap_or_default())
    }

    /// The tails of the logs of the units this node started.
    fn unit_logs(&self) -> String {
        let mut out = String::new();
        if let Ok(d) = std::fs::read_dir(self.dir.join("run")) {
            for e in d.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(25).collect();
                    out.push_str(&format!("--- {} ---\n", p.display()));
                    for l in tail.iter().rev() {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    /// Stops what the node's units run, then the namespace's holder.
    fn stop(&mut self) {
        let pids: Vec<i32> = std::fs::read_dir(self.dir.join("run"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|t| t.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for pid in &pids {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && pids
                .iter()
                .any(|p| Path::new(&format!("/proc/{p}")).exists() && !zombie(*p))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in &pids {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// All nodes, stopped when dropped (also when the test fails).
struct Rehearsal {
    nodes: BTreeMap<String, Node>,
}

impl Drop for Rehearsal {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            n.stop();
        }
    }
}

fn need(program: &str, hint: &str) {
    let found = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .any(|d| Path::new(d).join(program).is_file());
    assert!(found, "the guide test needs {program}: {hint}");
}

fn http_get(url: &str, token: &str) -> Value {
    let out = Command::new("curl")
        .args(["--silent", "--fail", "--header"])
        .arg(format!("X-Consul-Token: {token}"))
        .arg(url)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "GET {url} failed");
    serde_json::from_slice(&out.stdout).expect("JSON answer")
}

#[test]
fn the_guide_runs_as_written() {
    for (p, hint) in [
        ("unshare", "apt-get install util-linux"),
        ("nsenter", "apt-get install util-linux"),
        ("python3", "apt-get install python3"),
        ("jq", "apt-get install jq"),
        ("curl", "apt-get install curl"),
        ("useradd", "apt-get install passwd"),
        ("adduser", "apt-get install adduser"),
    ] {
        need(p, hint);
    }
    let text = std::fs::read_to_string(GUIDE).expect("read the guide");
    let blocks = blocks(&text);

    // The database: PostgreSQL with TLS, on its own address, port 5432.
    let ca = crate::dataplane::test_ca("files-db.example.com");
    let _pg = Postgres::start_on(
        DB_IP,
        Some(5432),
        Some(ServerTls {
            cert_pem: ca.cert_pem.clone(),
            key_pem: ca.key_pem.clone(),
        }),
    );

    let mut root = tempfile::tempdir().expect("tempdir");
    // MESHGATE_GUIDE_KEEP=1 keeps every block's output (run/block-N.out of
    // each node) and the units' logs for reading.
    if std::env::var_os("MESHGATE_GUIDE_KEEP").is_some() {
        root.disable_cleanup(true);
        eprintln!("keeping {}", root.path().display());
    }
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for shim in ["systemctl", "scp"] {
        std::fs::copy(Path::new(SHIMS).join(shim), bin.join(shim)).expect("copy shim");
    }
    std::os::unix::fs::symlink(BIN, bin.join("meshgate")).expect("meshgate on PATH");
    let pg_bin = postgres::bin_dir();
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_string(),
        format!(
            "{}:{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            bin.display(),
            pg_bin.display()
        ),
    );
    env.insert("HOME".into(), "/root".into());
    env.insert("LANG".into(), "C.UTF-8".into());
    env.insert("NO_COLOR".into(), "1".into());
    env.insert("GUIDE_ROOT".into(), root.path().display().to_string());
    env.insert("GUIDE_UNITS".into(), format!("{PACKAGING}/systemd"));
    env.insert("GUIDE_BIN".into(), BIN.to_string());

    let mut r = Rehearsal {
        nodes: BTreeMap::new(),
    };
    for (name, ip) in NODES {
        r.nodes
            .insert(name.to_string(), Node::start(root.path(), ip));
    }
    // The package, installed the dpkg way on every meshgate node.
    for (name, node) in &r.nodes {
        let script = if name == "database" {
            let mut f = std::fs::File::create(node.dir.join("home").join("ca.pem")).unwrap();
            f.write_all(ca.ca_pem.as_bytes()).unwrap();
            "install -D -m 0644 ca.pem /etc/ssl/files-db-ca.pem".to_string()
        } else {
            format!(
                "install -D -m 0640 {PACKAGING}/meshgate.hcl /etc/meshgate/meshgate.hcl\n\
                 sh {PACKAGING}/debian/postinst configure"
            )
        };
        let (ok, out) = node.run(&env, &script);
        assert!(ok, "installing on {name}: {out}");
    }

    for b in &blocks {
        for name in &b.nodes {
            let node = &r.nodes[name];
            let mut env = env.clone();
            if name == "database" {
                env.insert("PGHOST".into(), DB_IP.into());
                env.insert("PGPORT".into(), "5432".into());
                env.insert("PGPASSWORD".into(), "postgres".into());
            }
            let (ok, out) = node.run(&env, &b.script);
            if !ok {
                let logs: String = r.nodes.values().map(Node::unit_logs).collect();
                panic!(
                    "the guide's block at line {} failed on {name} ({}):\n{}\n--- output ---\n{out}\n{logs}",
                    b.line, node.ip, b.script
                );
            }
        }
    }

    // The agents talked to each other over mutual TLS (setup wrote it).
    for ip in ["127.0.0.81", "127.0.0.84", "127.0.0.85"] {
        let log = std::fs::read_to_string(root.path().join(ip).join("run/meshgate.service.log"))
            .unwrap_or_default();
        assert!(
            log.contains("cluster traffic: mutual TLS with the cluster CA"),
            "{ip}: {log}"
        );
    }

    // After both teardowns nothing of the external service is left.
    let conf = std::fs::read_to_string(
        root.path()
            .join("127.0.0.81/etc-upper/meshgate/meshgate.hcl"),
    )
    .expect("server-1's configuration");
    let token = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("initial_management = "))
        .map(|t| t.trim_matches('"').to_string())
        .expect("the bootstrap token in server-1's configuration");
    let base = "http://127.0.0.81:8500";
    let nodes = http_get(&format!("{base}/v1/catalog/nodes"), &token);
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["Node"].as_str())
        .collect();
    assert_eq!(
        names,
        ["files-1", "gateway-1", "server-1", "server-2", "server-3"],
        "{nodes}"
    );
    let gw = http_get(
        &format!("{base}/v1/catalog/service/carbonio-gateway"),
        &token,
    );
    assert_eq!(gw, serde_json::json!([]));
    for kind in ["terminating-gateway", "service-defaults"] {
        let list = http_get(&format!("{base}/v1/config/{kind}"), &token);
        assert_eq!(list, serde_json::json!([]), "{kind}");
    }
    assert!(
        !root
            .path()
            .join("127.0.0.84/etc-upper/systemd/system/carbonio-gateway.service")
            .exists(),
        "the unit is removed"
    );
    drop(r);
}
