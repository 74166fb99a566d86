//! Test harness for meshgate's end-to-end tests: starts real `meshgate`
//! processes on loopback addresses with temporary directories, waits until they
//! serve, captures their logs, and kills them when the test ends.
#![forbid(unsafe_code)]

pub mod postgres;
pub mod proc;

pub use proc::Proc;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long to wait for something that should happen "soon". Scaled by
/// `MESHGATE_TEST_PATIENCE` (a factor, default 1) on slow machines.
pub fn patience(base: Duration) -> Duration {
    let factor: f64 = std::env::var("MESHGATE_TEST_PATIENCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    base.mul_f64(factor.max(1.0))
}

/// Waits until `f` returns `Some`, polling every 20 ms, or panics with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience(timeout);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port that was free a moment ago on `ip`.
pub fn free_port(ip: &str) -> u16 {
    let l = TcpListener::bind((ip, 0)).expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A port free for both TCP and UDP on `ip` a moment ago (for listeners that
/// bind both, like DNS).
pub fn free_port_tcp_udp(ip: &str) -> u16 {
    for _ in 0..100 {
        let port = free_port(ip);
        if std::net::UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on {ip}");
}

/// Builder for an agent process.
#[derive(Debug, Clone)]
pub struct AgentBuilder {
    bin: PathBuf,
    ip: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: Vec<(String, String)>,
    dns: bool,
    dns_port: Option<u16>,
    start_patience: Duration,
}

impl AgentBuilder {
    /// An agent `-dev` on 127.0.0.1.
    pub fn dev(bin: impl AsRef<Path>) -> AgentBuilder {
        AgentBuilder {
            bin: bin.as_ref().to_path_buf(),
            ip: "127.0.0.1".into(),
            args: vec!["agent".into(), "-dev".into()],
            env: Vec::new(),
            config: Vec::new(),
            dns: false,
            dns_port: None,
            start_patience: Duration::from_secs(10),
        }
    }

    /// How long [`AgentBuilder::start`] waits for the API to answer (10 s,
    /// scaled by [`patience`]).
    pub fn start_patience(mut self, d: Duration) -> Self {
        self.start_patience = d;
        self
    }

    /// Serves DNS on a free port (UDP and TCP; see [`Agent::dns_addr`]).
    /// Without it the agent runs with `-dns-port -1`.
    pub fn dns(mut self) -> Self {
        self.dns = true;
        self
    }

    /// Serves DNS on this port (53 for the system resolver; pick an address of
    /// its own with [`AgentBuilder::ip`]).
    pub fn dns_port(mut self, port: u16) -> Self {
        self.dns = true;
        self.dns_port = Some(port);
        self
    }

    /// Binds to another loopback address (127.0.0.2, ...).
    pub fn ip(mut self, ip: &str) -> Self {
        self.ip = ip.into();
        self
    }

    /// Drops the `-dev` flag.
    pub fn without_dev(mut self) -> Self {
        self.args.retain(|a| a != "-dev");
        self
    }

    /// Adds command-line arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Adds a config file (name, contents) passed with `-config-file`.
    pub fn config_file(mut self, name: &str, contents: &str) -> Self {
        self.config.push((name.into(), contents.into()));
        self
    }

    /// Starts the agent and waits until its HTTP API answers.
    pub async fn start(self) -> Agent {
        let mut last_err = String::new();
        for _ in 0..3 {
            match self.try_start().await {
                Ok(a) => return a,
                Err(e) => last_err = e,
            }
        }
        panic!("agent did not start: {last_err}");
    }

    /// Runs the agent expecting it to fail at start; returns (exit code, output).
    /// An agent still running after a while is killed and reported as -1.
    pub fn start_failure(self) -> (i32, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args);
        for (name, contents) in &self.config {
            let p = dir.path().join(name);
            std::fs::write(&p, contents).expect("write config");
            cmd.arg("-config-file").arg(p);
        }
        let port = free_port(&self.ip);
        cmd.args(["-client", &self.ip, "-http-port", &port.to_string()]);
        let dns_port = if self.dns {
            free_port_tcp_udp(&self.ip).to_string()
        } else {
            "-1".to_string()
        };
        cmd.args(["-dns-port", &dns_port]);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // An agent that starts after all must not hang the test: it is
        // killed after a while and reported with code -1.
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run meshgate");
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|mut s| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                buf
            })
        })
        .collect();
        let deadline = Instant::now() + patience(Duration::from_secs(20));
        let code = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut text = String::new();
        for r in readers {
            text.push_str(&String::from_utf8_lossy(&r.join().unwrap_or_default()));
        }
        (code, text)
    }

    async fn try_start(&self) -> Result<Agent, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port(&self.ip);
        let dns_port = match (self.dns, self.dns_port) {
            (_, Some(p)) => Some(p),
            (true, None) => Some(free_port_tcp_udp(&self.ip)),
            (false, None) => None,
        };
        let dns_flag = dns_port
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-1".into());
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .args(["-client", &self.ip, "-bind", &self.ip])
            .args(["-http-port", &port.to_string()])
            .args(["-dns-port", &dns_flag])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, contents) in &self.config {
            let p = dir.path().join(name);
            std::fs::write(&p, contents).map_err(|e| e.to_string())?;
            cmd.arg("-config-file").arg(p);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        let addr: SocketAddr = format!("{}:{port}", self.ip)
            .parse()
            .map_err(|e| format!("{e}"))?;
        let base = format!("http://{addr}");
        let http = client();
        let deadline = Instant::now() + patience(self.start_patience);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let l = log.lock().map(|l| l.clone()).unwrap_or_default();
                return Err(format!("agent exited with {status}:\n{l}"));
            }
            // Up once the API answers and the agent says it runs: a cluster
            // agent answers while it still joins (as Consul's does), and is
            // in the catalog (or has stopped waiting for a leader) once it
            // says it runs.
            let running = log
                .lock()
                .map(|l| l.contains("meshgate agent running"))
                .unwrap_or(false);
            if running
                && let Ok(r) = http.get(format!("{base}/v1/status/leader")).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let l = log.lock().map(|l| l.clone()).unwrap_or_default();
                return Err(format!("agent on {base} did not answer in time:\n{l}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dns_addr = dns_port.map(|p| SocketAddr::new(addr.ip(), p));
        Ok(Agent {
            child: Some(child),
            base,
            addr,
            dns_addr,
            log,
            dir,
            http,
        })
    }
}

/// A plain HTTP client for tests.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// A running agent process, killed on drop.
pub struct Agent {
    child: Option<Child>,
    /// `http://ip:port`.
    pub base: String,
    pub addr: SocketAddr,
    /// Where DNS is served (UDP and TCP), when built with
    /// [`AgentBuilder::dns`].
    pub dns_addr: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Agent {
    /// Sends a signal by name (`STOP`, `CONT`, ...) to the agent process:
    /// `STOP` freezes it (a partition: nothing goes in or out) until `CONT`.
    pub fn signal(&self, name: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(c.id().to_string())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -{name} {}", c.id());
        }
    }

    /// The agent's process id (`None` once it was stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The full URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until the agent's output has a line with `needle`: the output
    /// is read by another thread, a little after the agent wrote it, so a
    /// line logged just before an effect a test observes may not be there
    /// yet. Panics with the output after `timeout`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + patience(timeout);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the agent did not log {needle:?} within {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A temporary directory that lives as long as the agent.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// GET a path, returning (status, body as JSON or null).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        let status = r.status().as_u16();
        let body = r.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// PUT a body to a path, returning (status, body text).
    pub async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let r = self
            .http
            .put(self.url(path))
            .body(body)
            .send()
            .await
            .expect("PUT");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// Waits for the process to exit by itself (None if it did not in time).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + patience(timeout);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                self.child = None;
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status (None if it had to be killed).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + patience(Duration::from_secs(10));
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                self.child = None;
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the `meshgate` binary as a CLI command against an agent; returns
/// (exit code, stdout, stderr).
pub fn cli(
    bin: impl AsRef<Path>,
    agent: &Agent,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (i32, String, String) {
    let mut cmd = Command::new(bin.as_ref());
    cmd.args(args)
        .env("CONSUL_HTTP_ADDR", &agent.base)
        .env_remove("MESHGATE_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("MESHGATE_HTTP_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("spawn meshgate cli");
    if let Some(input) = stdin {
        use std::io::Write;
        if let Some(mut s) = child.stdin.take() {
            s.write_all(input).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("cli output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
