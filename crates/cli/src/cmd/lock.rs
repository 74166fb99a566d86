//! `meshgate lock`: runs a command while holding a lock (or one of `-n`
//! semaphore slots) in the KV store, as Consul's `consul lock` does, with
//! the same keys, flags and session, so that both can contend for the same
//! prefix.
//!
//! The lock is `PREFIX/.lock`, acquired with a session (TTL 15 s, renewed
//! every 7.5 s) and Consul's lock flag value; a semaphore keeps one
//! contender key `PREFIX/<session>` per candidate and the holders in
//! `PREFIX/.lock` (`{"Limit": N, "Holders": {...}}`), changed with
//! check-and-set. When the lock is lost (the key released or deleted, the
//! session gone), the child gets SIGTERM and, 5 s later, SIGKILL.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;
use serde_json::{Value, json};

use crate::client::{CliError, CliResult, Client, HttpFlags, escape_path};

/// The flags value of a lock key (Consul's `api.LockFlagValue`).
const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
/// The flags value of a semaphore's keys (Consul's `api.SemaphoreFlagValue`).
const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;
/// The lock's key under the prefix (also the semaphore's holder list).
const LOCK_KEY: &str = ".lock";
/// The session's TTL; it is renewed at half of it.
const SESSION_TTL: Duration = Duration::from_secs(15);
/// How long one blocking read waits.
const WAIT: Duration = Duration::from_secs(15);
/// After a refused acquisition (the lock delay of a lost holder), the next
/// try.
const RETRY: Duration = Duration::from_secs(5);
/// Between SIGTERM and SIGKILL for a child whose lock is gone.
const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct LockArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Exit 2 when the child fails (otherwise 0 whatever the child did).
    #[arg(long = "child-exit-code", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub child_exit_code: Option<bool>,
    /// How many may hold it at once; more than 1 makes it a semaphore.
    #[arg(
        short = 'n',
        long = "n",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub limit: i64,
    /// Errors (500) tolerated while watching the lock, 1 s apart.
    #[arg(
        long = "monitor-retry",
        default_value_t = 3,
        allow_negative_numbers = true
    )]
    pub monitor_retry: i64,
    /// The session's name (default: from the command and prefix).
    #[arg(long)]
    pub name: Option<String>,
    /// Give the child this command's standard input.
    #[arg(long = "pass-stdin", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub pass_stdin: Option<bool>,
    /// Run the child through `$SHELL -c` (default true).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub shell: Option<bool>,
    /// Give up acquiring after this long (`-try` is the old name); 0 waits
    /// for ever.
    #[arg(long, alias = "try")]
    pub timeout: Option<String>,
    /// Say what happens, step by step.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub verbose: Option<bool>,
    /// The key prefix, then the command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PREFIX CHILD..."
    )]
    pub args: Vec<String>,
}

/// One KV entry as read.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Pair {
    key: String,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    modify_index: u64,
}

impl Pair {
    fn held_by(&self) -> Option<&str> {
        self.session.as_deref().filter(|s| !s.is_empty())
    }

    fn value(&self) -> Vec<u8> {
        self.value
            .as_deref()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .unwrap_or_default()
    }
}

/// The semaphore's holder list (`PREFIX/.lock`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Holders {
    limit: i64,
    #[serde(default)]
    holders: BTreeMap<String, bool>,
}

struct Locker {
    client: Client,
    prefix: String,
    limit: i64,
    session: String,
    verbose: bool,
}

impl Locker {
    fn say(&self, what: &str) {
        if self.verbose {
            println!("{what}");
        }
    }

    fn lock_key(&self) -> String {
        join(&self.prefix, LOCK_KEY)
    }

    fn contender_key(&self) -> String {
        join(&self.prefix, &self.session)
    }

    /// A blocking read of `key` (or of the prefix, `recurse`) after `index`:
    /// the entries and the index.
    async fn read(
        &self,
        key: &str,
        recurse: bool,
        index: u64,
        wait: Duration,
    ) -> Result<(Vec<Pair>, u64), CliError> {
        let mut q = vec![
            ("index", index.to_string()),
            ("wait", format!("{}ms", wait.as_millis().max(1))),
        ];
        if recurse {
            q.push(("recurse", String::new()));
        }
        let r = self
            .client
            .send(reqwest::Method::GET, &kv_path(key), &q, None)
            .await?;
        let idx = r
            .headers
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match r.status {
            200 => Ok((r.json()?, idx)),
            404 => Ok((Vec::new(), idx)),
            _ => Err(CliError::new(r.error_text())),
        }
    }

    /// A KV PUT answered `true` or `false`.
    async fn put(&self, key: &str, q: &[(&str, String)], body: Vec<u8>) -> Result<bool, CliError> {
        let r = self.client.put(&kv_path(key), q, Some(body)).await?;
        Ok(r.text().trim() == "true")
    }

    /// Waits until this session holds the lock or a slot; `None` when
    /// `deadline` passed first.
    async fn acquire(&self, deadline: Option<Instant>) -> Result<Option<()>, CliError> {
        if self.limit > 1 {
            let ok = self
                .put(
                    &self.contender_key(),
                    &[
                        ("acquire", self.session.clone()),
                        ("flags", SEMAPHORE_FLAG.to_string()),
                    ],
                    Vec::new(),
                )
                .await?;
            if !ok {
                return Err(CliError::new(
                    "Lock acquisition failed: failed to make contender entry",
                ));
            }
        }
        let mut index = 0;
        loop {
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    left.min(WAIT)
                }
                None => WAIT,
            };
            let free = if self.limit > 1 {
                let (pairs, idx) = self.read(&self.prefix_dir(), true, index, wait).await?;
                index = idx;
                self.take_slot(&pairs).await?
            } else {
                let (pairs, idx) = self.read(&self.lock_key(), false, index, wait).await?;
                index = idx;
                match pairs.first() {
                    Some(p) if p.flags != LOCK_FLAG => {
                        return Err(CliError::new(
                            "Lock acquisition failed: Existing key does not match lock use",
                        ));
                    }
                    Some(p) if p.held_by().is_some_and(|s| s != self.session) => None,
                    _ => Some(
                        self.put(
                            &self.lock_key(),
                            &[
                                ("acquire", self.session.clone()),
                                ("flags", LOCK_FLAG.to_string()),
                            ],
                            Vec::new(),
                        )
                        .await?,
                    ),
                }
            };
            match free {
                Some(true) => return Ok(Some(())),
                // A semaphore's check-and-set lost to another contender:
                // read again at once.
                Some(false) if self.limit > 1 => index = 0,
                // A lock refused although free: the lock delay of a holder
                // whose session ended.
                Some(false) => {
                    let pause = match deadline {
                        Some(d) => RETRY.min(d.saturating_duration_since(Instant::now())),
                        None => RETRY,
                    };
                    tokio::time::sleep(pause).await;
                    index = 0;
                }
                None => {}
            }
        }
    }

    /// The prefix as a directory (`PREFIX/`), for recursive reads.
    fn prefix_dir(&self) -> String {
        format!("{}/", self.prefix.trim_end_matches('/'))
    }

    /// The semaphore: adds this session to the holders when there is room
    /// (`Some(true)`), `Some(false)` when the check-and-set lost a race,
    /// `None` when full.
    async fn take_slot(&self, pairs: &[Pair]) -> Result<Option<bool>, CliError> {
        let (mut holders, cas) = self.holders(pairs)?;
        // Holders whose contender key lost its session are gone.
        let alive: Vec<&str> = pairs
            .iter()
            .filter(|p| p.flags == SEMAPHORE_FLAG && p.held_by().is_some())
            .filter_map(|p| p.key.rsplit('/').next())
            .collect();
        holders.holders.retain(|s, _| alive.contains(&s.as_str()));
        if holders.holders.contains_key(&self.session) {
            return Ok(Some(true));
        }
        if holders.holders.len() as i64 >= self.limit {
            return Ok(None);
        }
        holders.holders.insert(self.session.clone(), true);
        let body = serde_json::to_vec(&holders).unwrap_or_default();
        Ok(Some(
            self.put(
                &self.lock_key(),
                &[
                    ("cas", cas.to_string()),
                    ("flags", SEMAPHORE_FLAG.to_string()),
                ],
                body,
            )
            .await?,
        ))
    }

    /// The holder list among `pairs` and the index to check-and-set it with
    /// (0: it does not exist yet).
    fn holders(&self, pairs: &[Pair]) -> Result<(Holders, u64), CliError> {
        let lock_key = self.lock_key();
        let Some(p) = pairs.iter().find(|p| p.key == lock_key) else {
            return Ok((
                Holders {
                    limit: self.limit,
                    holders: BTreeMap::new(),
                },
                0,
            ));
        };
        if p.flags != SEMAPHORE_FLAG {
            return Err(CliError::new(
                "Lock acquisition failed: Existing key does not match semaphore use",
            ));
        }
        let h: Holders = serde_json::from_slice(&p.value())
            .map_err(|e| CliError::new(format!("Failed to read semaphore lock: {e}")))?;
        if h.limit != self.limit {
            return Err(CliError::new(format!(
                "Lock acquisition failed: semaphore limit conflict (lock: {}, local: {})",
                h.limit, self.limit
            )));
        }
        Ok((h, p.modify_index))
    }

    /// Returns once the lock (or slot) is no longer this session's: the key
    /// changed hands or went away, or the agent failed more than `retries`
    /// times in a row.
    async fn monitor(&self, retries: i64) {
        let mut index = 0;
        let mut left = retries;
        loop {
            let read = if self.limit > 1 {
                self.read(&self.prefix_dir(), true, index, WAIT).await
            } else {
                self.read(&self.lock_key(), false, index, WAIT).await
            };
            let (pairs, idx) = match read {
                Ok(r) => {
                    left = retries;
                    r
                }
                Err(e) => {
                    if left <= 0 {
                        self.say(&format!("Watching the lock failed: {e}"));
                        return;
                    }
                    left -= 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let held = if self.limit > 1 {
                self.holders(&pairs)
                    .is_ok_and(|(h, _)| h.holders.contains_key(&self.session))
            } else {
                pairs
                    .first()
                    .is_some_and(|p| p.held_by() == Some(self.session.as_str()))
            };
            if !held {
                return;
            }
            index = idx;
        }
    }

    /// Gives the lock (or slot) back.
    async fn release(&self) -> Result<(), CliError> {
        if self.limit <= 1 {
            self.put(
                &self.lock_key(),
                &[
                    ("release", self.session.clone()),
                    ("flags", LOCK_FLAG.to_string()),
                ],
                Vec::new(),
            )
            .await?;
            return Ok(());
        }
        loop {
            let (pairs, _) = self.read(&self.lock_key(), false, 0, WAIT).await?;
            let (mut h, cas) = self.holders(&pairs)?;
            if cas == 0 || h.holders.remove(&self.session).is_none() {
                break;
            }
            let body = serde_json::to_vec(&h).unwrap_or_default();
            let q = [
                ("cas", cas.to_string()),
                ("flags", SEMAPHORE_FLAG.to_string()),
            ];
            if self.put(&self.lock_key(), &q, body).await? {
                break;
            }
        }
        self.client
            .delete(&kv_path(&self.contender_key()), &[])
            .await?;
        Ok(())
    }

    /// Removes the lock key when nobody holds it (Consul's `Destroy`):
    /// `Ok(false)` when it is in use.
    async fn cleanup(&self) -> Result<bool, CliError> {
        let (pairs, _) = if self.limit > 1 {
            self.read(&self.prefix_dir(), true, 0, WAIT).await?
        } else {
            self.read(&self.lock_key(), false, 0, WAIT).await?
        };
        let lock_key = self.lock_key();
        let Some(lock) = pairs.iter().find(|p| p.key == lock_key) else {
            return Ok(true);
        };
        if self.limit > 1 {
            let (h, _) = self.holders(&pairs)?;
            let alive = pairs
                .iter()
                .filter(|p| p.flags == SEMAPHORE_FLAG && p.held_by().is_some())
                .filter_map(|p| p.key.rsplit('/').next())
                .any(|s| h.holders.contains_key(s));
            if alive {
                return Ok(false);
            }
        } else {
            if lock.flags != LOCK_FLAG {
                return Err(CliError::new(
                    "Lock cleanup failed: Existing key does not match lock use",
                ));
            }
            if lock.held_by().is_some() {
                return Ok(false);
            }
        }
        let r = self
            .client
            .delete(
                &kv_path(&lock_key),
                &[("cas", lock.modify_index.to_string())],
            )
            .await?;
        Ok(r.text().trim() == "true")
    }
}

fn join(prefix: &str, name: &str) -> String {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        name.to_string()
    } else {
        format!("{p}/{name}")
    }
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", escape_path(key))
}

/// Renews `session` every half TTL until `stop`; returns when the session
/// is gone (the lock with it) or on `stop`.
async fn renew(client: Client, session: String, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SESSION_TTL / 2) => {}
            _ = stop.changed() => return,
        }
        let path = format!("/v1/session/renew/{session}");
        match client.send(reqwest::Method::PUT, &path, &[], None).await {
            Ok(r) if r.status == 404 => return,
            // A failure now is tried again at the next period; the TTL
            // leaves room for one.
            _ => {}
        }
    }
}

/// Sends `sig` to the child (not through a shell: its process ID).
fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Runs `meshgate lock`.
pub async fn run(a: LockArgs) -> CliResult {
    if a.limit <= 0 {
        return Err(CliError::new("Lock holder limit must be positive"));
    }
    if a.args.len() < 2 {
        return Err(CliError::new(
            "Key prefix and child command must be specified",
        ));
    }
    let prefix = a.args[0].trim_start_matches('/').to_string();
    let child = a.args[1..].to_vec();
    let timeout = match a.timeout.as_deref() {
        None => Duration::ZERO,
        Some(t) => meshgate_types::duration::parse(t).map_err(|_| {
            CliError::new(format!(
                "invalid value \"{t}\" for flag -timeout: parse error"
            ))
        })?,
    };
    if a.monitor_retry < 0 {
        return Err(CliError::new("Number for 'monitor-retry' must be >= 0"));
    }
    let verbose = a.verbose.unwrap_or(false);
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("Consul lock for '{}' at '{prefix}'", child.join(" ")));
    let client = Client::new(&a.http)?;
    client
        .get("/v1/agent/self", &[])
        .await
        .map_err(|e| CliError::new(format!("Error querying Consul agent: {e}")))?;
    // The session: released (not deleted) with its locks, as Consul's.
    let r = client
        .put(
            "/v1/session/create",
            &[],
            Some(
                json!({"Name": name, "TTL": format!("{}s", SESSION_TTL.as_secs())})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await
        .map_err(|e| CliError::new(format!("Lock setup failed: {e}")))?;
    let session = r.json::<Value>()?["ID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (stop_renew, renew_stop) = tokio::sync::watch::channel(false);
    let renewer = tokio::spawn(renew(client.clone(), session.clone(), renew_stop));
    let locker = Locker {
        client: client.clone(),
        prefix,
        limit: a.limit,
        session: session.clone(),
        verbose,
    };
    let outcome = hold_and_run(&locker, &a, &child, timeout).await;
    // The session ends with this command (and with it anything it held).
    let _ = stop_renew.send(true);
    let _ = renewer.await;
    let _ = client
        .send(
            reqwest::Method::PUT,
            &format!("/v1/session/destroy/{session}"),
            &[],
            None,
        )
        .await;
    let child_failed = outcome?;
    match locker.cleanup().await {
        Ok(true) => locker.say("Cleanup succeeded"),
        Ok(false) => locker.say("Cleanup aborted, lock in use"),
        Err(e) => return Err(e),
    }
    if child_failed && a.child_exit_code.unwrap_or(false) {
        return Err(CliError {
            message: String::new(),
            code: 2,
        });
    }
    Ok(())
}

/// Acquires, runs the child until it ends, the lock is lost or a stop
/// signal comes, and releases. `Ok(true)`: the child failed.
async fn hold_and_run(
    locker: &Locker,
    a: &LockArgs,
    child: &[String],
    timeout: Duration,
) -> Result<bool, CliError> {
    let mut stops = super::agent::Stops::new();
    locker.say("Attempting lock acquisition");
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let acquired = tokio::select! {
        r = locker.acquire(deadline) => r?,
        _ = stops.next() => None,
    };
    if acquired.is_none() {
        let _ = locker.release().await;
        return Err(CliError::new(
            "Shutdown triggered or timeout during lock acquisition",
        ));
    }
    locker.say("Starting handler");
    let mut cmd = if a.shell.unwrap_or(true) {
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".into());
        let mut c = tokio::process::Command::new(shell);
        c.arg("-c").arg(child.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(&child[0]);
        c.args(&child[1..]);
        c
    };
    cmd.env("CONSUL_LOCK_HELD", "true")
        .stdin(if a.pass_stdin.unwrap_or(false) {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    let mut proc = match cmd.spawn() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error executing handler: {e}");
            locker.release().await?;
            return Ok(true);
        }
    };
    let pid = proc.id().unwrap_or(0);
    let lost = tokio::select! {
        st = proc.wait() => {
            let failed = !st.as_ref().is_ok_and(|s| s.success());
            if failed {
                eprintln!("Error running handler: {}", match &st {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                });
            }
            locker.say("Child terminated, releasing lock");
            locker.release().await?;
            return Ok(failed);
        }
        _ = locker.monitor(a.monitor_retry) => {
            locker.say("Lock lost, killing child");
            true
        }
        sig = stops.next() => {
            locker.say(&format!("Shutdown triggered ({sig}), killing child"));
            false
        }
    };
    // SIGTERM, then SIGKILL after the grace period.
    locker.say(&format!("Terminating child pid {pid}"));
    signal(pid, rustix::process::Signal::TERM);
    if tokio::time::timeout(KILL_GRACE, proc.wait()).await.is_err() {
        locker.say(&format!("Killing child pid {pid}"));
        signal(pid, rustix::process::Signal::KILL);
        let _ = proc.wait().await;
    }
    if !lost {
        locker.release().await?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_under_the_prefix() {
        assert_eq!(join("jobs/backup", LOCK_KEY), "jobs/backup/.lock");
        assert_eq!(join("jobs/backup/", LOCK_KEY), "jobs/backup/.lock");
        assert_eq!(join("", LOCK_KEY), ".lock");
        // Consul's flag values, so that both tools see each other's keys.
        assert_eq!(LOCK_FLAG, 3_304_740_253_564_472_344);
        assert_eq!(SEMAPHORE_FLAG, 16_210_313_421_097_356_768);
    }

    #[test]
    fn holders_json_is_consuls() {
        let h = Holders {
            limit: 2,
            holders: BTreeMap::from([("s1".to_string(), true)]),
        };
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"Limit":2,"Holders":{"s1":true}}"#
        );
    }
}
