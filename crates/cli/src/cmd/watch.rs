//! `meshgate watch`: runs a blocking query in a loop and, each time the answer
//! changes, runs a handler with the JSON on its standard input (or prints it).

use clap::Args;
use serde_json::Value;

use crate::client::{CliError, CliResult, Client, HttpFlags, escape_path};

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// What to watch: key, keyprefix, services, nodes, service, checks, event.
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// The key (type key).
    #[arg(long)]
    pub key: Option<String>,
    /// The prefix (type keyprefix).
    #[arg(long)]
    pub prefix: Option<String>,
    /// The service (types service, checks).
    #[arg(long)]
    pub service: Option<String>,
    /// A tag filter (type service; repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only passing instances (type service).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub passing: Option<bool>,
    /// A check state (type checks).
    #[arg(long)]
    pub state: Option<String>,
    /// The event name (type event).
    #[arg(long)]
    pub name: Option<String>,
    /// Run the handler through `sh -c` (default true).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub shell: Option<bool>,
    /// The handler command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub handler: Vec<String>,
}

/// What one watch type reads.
struct Plan {
    path: String,
    query: Vec<(&'static str, String)>,
    /// 404 means "nothing" (KV) rather than an error.
    not_found_is_null: bool,
    /// Single key: answer the first element, not the list.
    first: bool,
    event: bool,
}

fn plan(a: &WatchArgs) -> Result<Plan, CliError> {
    let kind = a
        .kind
        .as_deref()
        .ok_or_else(|| CliError::new("Must specify watch type"))?;
    let need = |v: &Option<String>, flag: &str| -> Result<String, CliError> {
        v.clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| CliError::new(format!("Must specify a {flag} to watch")))
    };
    let mut p = Plan {
        path: String::new(),
        query: Vec::new(),
        not_found_is_null: false,
        first: false,
        event: false,
    };
    match kind {
        "key" => {
            p.path = format!("/v1/kv/{}", escape_path(&need(&a.key, "key")?));
            p.not_found_is_null = true;
            p.first = true;
        }
        "keyprefix" => {
            p.path = format!("/v1/kv/{}", escape_path(&need(&a.prefix, "prefix")?));
            p.query.push(("recurse", String::new()));
            p.not_found_is_null = true;
        }
        "services" => p.path = "/v1/catalog/services".into(),
        "nodes" => p.path = "/v1/catalog/nodes".into(),
        "service" => {
            p.path = format!(
                "/v1/health/service/{}",
                escape_path(&need(&a.service, "service")?)
            );
            for t in &a.tag {
                p.query.push(("tag", t.clone()));
            }
            if a.passing.unwrap_or(false) {
                p.query.push(("passing", String::new()));
            }
        }
        "checks" => match (&a.service, &a.state) {
            (Some(s), None) => p.path = format!("/v1/health/checks/{}", escape_path(s)),
            (None, Some(st)) => p.path = format!("/v1/health/state/{}", escape_path(st)),
            (None, None) => p.path = "/v1/health/state/any".into(),
            (Some(_), Some(_)) => {
                return Err(CliError::new("Cannot specify service and state"));
            }
        },
        "event" => {
            p.path = "/v1/event/list".into();
            if let Some(n) = &a.name {
                p.query.push(("name", n.clone()));
            }
            p.event = true;
        }
        other => return Err(CliError::new(format!("Unsupported watch type: {other}"))),
    }
    Ok(p)
}

async fn run_handler(a: &WatchArgs, data: &Value, index: u64) -> CliResult {
    let json = serde_json::to_vec_pretty(data).map_err(|e| CliError::new(e.to_string()))?;
    if a.handler.is_empty() {
        println!("{}", String::from_utf8_lossy(&json));
        return Ok(());
    }
    let mut cmd = if a.shell.unwrap_or(true) {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(a.handler.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(&a.handler[0]);
        c.args(&a.handler[1..]);
        c
    };
    cmd.env("CONSUL_INDEX", index.to_string())
        .stdin(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::new(format!("Error executing handler: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&json).await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| CliError::new(format!("Error executing handler: {e}")))?;
    if !status.success() {
        eprintln!("Error executing handler: {status}");
    }
    Ok(())
}

/// Runs `meshgate watch`.
pub async fn run(a: WatchArgs) -> CliResult {
    let p = plan(&a)?;
    let c = Client::new(&a.http)?;
    let mut index: u64 = 0;
    let mut last: Option<Value> = None;
    let mut seen_events: std::collections::HashSet<String> = Default::default();
    loop {
        let mut q = p.query.clone();
        if index > 0 {
            q.push(("index", index.to_string()));
            q.push(("wait", "5m".to_string()));
        }
        let r = tokio::select! {
            r = c.send(reqwest::Method::GET, &p.path, &q, None) => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let new_index = r
            .headers
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let data: Value = match r.status {
            200 => r.json()?,
            404 if p.not_found_is_null => Value::Null,
            _ => {
                eprintln!("Error querying Consul agent: {}", r.error_text());
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let data = if p.first {
            data.as_array()
                .and_then(|a| a.first())
                .cloned()
                .unwrap_or(Value::Null)
        } else {
            data
        };
        // An index going backwards means the server's state was reset.
        index = if new_index < index { 0 } else { new_index };
        if p.event {
            let events: Vec<Value> = data.as_array().cloned().unwrap_or_default();
            let first_run = last.is_none();
            let fresh: Vec<Value> = events
                .into_iter()
                .filter(|e| seen_events.insert(e["ID"].as_str().unwrap_or("").to_string()))
                .collect();
            if first_run || !fresh.is_empty() {
                run_handler(&a, &Value::Array(fresh), new_index).await?;
            }
            last = Some(Value::Null);
            continue;
        }
        if last.as_ref() != Some(&data) {
            run_handler(&a, &data, new_index).await?;
            last = Some(data);
        }
    }
}
