//! A real PostgreSQL server for tests, in a temporary directory, on a
//! loopback address of the test's choosing. As root (CI), it runs as the
//! `postgres` system user, since PostgreSQL refuses to run as root.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, patience};

const INSTALL_HINT: &str = "PostgreSQL's server programs (initdb, postgres) are needed by this test: \
     install them with `apt-get install -y postgresql` (Debian), or put their directory on PATH";

/// Where `initdb` and `postgres` are.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("MESHGATE_PG_BINDIR") {
        return PathBuf::from(d);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if d.join("initdb").exists() {
            return d;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    if let Some(d) = found.pop() {
        return d;
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        if Path::new(dir).join("initdb").exists() {
            return PathBuf::from(dir);
        }
    }
    panic!("{INSTALL_HINT}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The uid and gid of the `postgres` user.
fn postgres_ids() -> (u32, u32) {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .expect("run id");
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().unwrap_or_else(|_| {
        panic!("running as root, the `postgres` system user is needed to run PostgreSQL: {INSTALL_HINT}")
    });
    let out = Command::new("id")
        .args(["-g", "postgres"])
        .output()
        .expect("run id");
    let gid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u32>()
        .unwrap_or(uid);
    (uid, gid)
}

/// Makes `cmd` run as the `postgres` user when the tests run as root (as
/// PostgreSQL's own programs must), for tools that start PostgreSQL
/// themselves, such as Patroni.
pub fn as_postgres_user(cmd: &mut Command) -> &mut Command {
    if is_root() {
        use std::os::unix::process::CommandExt;
        let (uid, gid) = postgres_ids();
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Gives `path` and everything under it to the `postgres` user when the
/// tests run as root (a directory such a tool writes to).
pub fn give_to_postgres_user(path: &Path) {
    if is_root() {
        let (uid, gid) = postgres_ids();
        chown_tree(path, uid, gid);
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let st = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}"), &path.display().to_string()])
        .status()
        .expect("run chown");
    assert!(st.success(), "chown {}", path.display());
}

/// TLS for the server: certificate chain and key, PEM.
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A running PostgreSQL server.
pub struct Postgres {
    child: Option<Child>,
    pub host: String,
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    ids: Option<(u32, u32)>,
    log: PathBuf,
}

impl Postgres {
    /// Starts a server listening on `host` (a 127.0.0.x address), with
    /// password authentication for TCP clients and TLS when `tls` is given.
    /// The superuser is `postgres` with password `postgres`.
    pub fn start(host: &str, tls: Option<ServerTls>) -> Postgres {
        Postgres::start_on(host, None, tls)
    }

    /// Like [`Postgres::start`], on a given port (`None`: a free one).
    pub fn start_on(host: &str, port: Option<u16>, tls: Option<ServerTls>) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = is_root().then(postgres_ids);
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, "postgres\n").expect("write pwfile");
        if let Some((uid, gid)) = ids {
            chown_tree(dir.path(), uid, gid);
        }
        let run = |prog: &str| {
            let mut c = Command::new(bin.join(prog));
            if let Some((uid, gid)) = ids {
                use std::os::unix::process::CommandExt;
                c.uid(uid).gid(gid);
            }
            c
        };
        let out = run("initdb")
            .args([
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "-E",
                "UTF8",
            ])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run initdb: {e}; {INSTALL_HINT}"));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut conf = String::from(
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\nshared_buffers = 32MB\n",
        );
        if let Some(t) = &tls {
            std::fs::write(data.join("server.crt"), &t.cert_pem).expect("write server.crt");
            std::fs::write(data.join("server.key"), &t.key_pem).expect("write server.key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .expect("chmod key");
            if let Some((uid, gid)) = ids {
                chown_tree(&data, uid, gid);
            }
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        let mut f = std::fs::read_to_string(data.join("postgresql.conf")).unwrap_or_default();
        f.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), f).expect("write postgresql.conf");
        let sock = dir.path().join("sock");
        std::fs::create_dir_all(&sock).expect("socket dir");
        if let Some((uid, gid)) = ids {
            chown_tree(dir.path(), uid, gid);
        }
        let log = dir.path().join("postgres.log");
        let mut pg = Postgres {
            child: None,
            host: host.to_string(),
            port: 0,
            dir,
            bin,
            ids,
            log,
        };
        let mut last = String::new();
        for _ in 0..5 {
            pg.port = port.unwrap_or_else(|| free_port(host));
            match pg.spawn() {
                Ok(()) => return pg,
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start:\n{last}");
    }

    fn command(&self, prog: &str) -> Command {
        let mut c = Command::new(self.bin.join(prog));
        if let Some((uid, gid)) = self.ids {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(gid);
        }
        c
    }

    /// Runs the server on `self.port`; the log on failure.
    fn spawn(&mut self) -> Result<(), String> {
        let data = self.dir.path().join("data");
        let sock = self.dir.path().join("sock");
        let logf = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("log file: {e}"))?;
        let mut child = self
            .command("postgres")
            .args(["-D", &data.display().to_string()])
            .args(["-p", &self.port.to_string()])
            .args(["-c", &format!("listen_addresses={}", self.host)])
            .args(["-c", &format!("unix_socket_directories={}", sock.display())])
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(|e| format!("log file: {e}"))?)
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("run postgres: {e}; {INSTALL_HINT}"));
        if wait_ready(&mut child, &self.bin, &self.host, self.port) {
            self.child = Some(child);
            return Ok(());
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(self.log_text())
    }

    /// Stops the server (fast shutdown: clients are disconnected), keeping
    /// its data; [`Postgres::restart`] brings it back on the same port.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let data = self.dir.path().join("data");
        let stopped = self
            .command("pg_ctl")
            .args([
                "-D",
                &data.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            return;
        }
        if let Err(log) = self.spawn() {
            panic!("PostgreSQL did not restart:\n{log}");
        }
    }

    /// The data directory's parent (certificates may be written there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        psql_as_superuser(&self.bin, &self.host, self.port, db, sql)
    }

    /// Runs SQL as the superuser directly on the server; panics on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
    }

    /// Whether the server runs as the `postgres` user (as root).
    pub fn runs_as_postgres_user(&self) -> bool {
        self.ids.is_some()
    }
}

fn wait_ready(child: &mut Child, bin: &Path, host: &str, port: u16) -> bool {
    let deadline = Instant::now() + patience(Duration::from_secs(30));
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect((host, port)).is_ok()
            && psql_as_superuser(bin, host, port, "postgres", "select 1").is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Runs SQL with `psql` as the superuser `postgres` (password `postgres`)
/// on any server; its output (unaligned, tuples only) or its error.
pub fn psql_as_superuser(
    bin: &Path,
    host: &str,
    port: u16,
    db: &str,
    sql: &str,
) -> Result<String, String> {
    let out = Command::new(psql_path(bin))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-h",
            host,
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args(["-c", sql])
        .env("PGPASSWORD", "postgres")
        .env("PGSSLMODE", "prefer")
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// `psql` next to the server programs, else on PATH.
pub fn psql_path(bin: &Path) -> PathBuf {
    let p = bin.join("psql");
    if p.exists() { p } else { PathBuf::from("psql") }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
