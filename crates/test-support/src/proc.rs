//! Any long-running process of a test (a proxy, a gateway), with its output
//! captured and searched, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::patience;

/// A running process.
pub struct Proc {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    pub name: String,
}

impl Proc {
    /// Starts `bin args...` with extra environment variables.
    pub fn spawn(name: &str, bin: impl AsRef<Path>, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(bin.as_ref());
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("MESHGATE_HTTP_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN_FILE")
            .env_remove("MESHGATE_HTTP_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.as_ref().display()));
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
        Proc {
            child: Some(child),
            log,
            name: name.to_string(),
        }
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until the output contains `needle`; returns the line holding it.
    /// Panics (with the output) if the process exits or time runs out.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + patience(timeout);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{} exited ({st}) before logging {needle:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not log {needle:?} within {timeout:?}:\n{log}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends SIGTERM (through `kill`, no unsafe code).
    pub fn sigterm(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// Waits for the exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + patience(timeout);
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
