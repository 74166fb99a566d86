//! `meshgate watch`, and the agent's own `watches`: a blocking query in a loop
//! and, each time the answer changes, a handler run with the JSON on its
//! standard input (or, for the command without a handler, the JSON printed).

use std::time::Duration;

use clap::Args;
use serde_json::{Map, Value};

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
    #[arg(long, alias = "passingonly", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
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

/// What a watch type reads, by its parameters.
#[derive(Debug, Default, Clone, PartialEq)]
struct Params {
    key: String,
    prefix: String,
    service: String,
    tags: Vec<String>,
    passing: bool,
    state: String,
    name: String,
    service_id: String,
    stale: bool,
}

/// What one watch reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    path: String,
    query: Vec<(&'static str, String)>,
    /// 404 means "nothing" (KV) rather than an error.
    not_found_is_null: bool,
    /// Single key: answer the first element, not the list.
    first: bool,
    event: bool,
    /// Agent-local data (`agent_service`): blocks on `hash`, not `index`.
    hash: bool,
}

/// The plan of a watch type (Consul's messages for missing parameters).
fn plan_for(kind: &str, a: &Params) -> Result<Plan, String> {
    let need = |v: &str, what: &str| -> Result<String, String> {
        if v.is_empty() {
            Err(format!("Must specify a single {what} to watch"))
        } else {
            Ok(v.to_string())
        }
    };
    let mut p = Plan {
        path: String::new(),
        query: Vec::new(),
        not_found_is_null: false,
        first: false,
        event: false,
        hash: false,
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
            for t in &a.tags {
                p.query.push(("tag", t.clone()));
            }
            if a.passing {
                p.query.push(("passing", String::new()));
            }
        }
        "checks" => match (a.service.as_str(), a.state.as_str()) {
            ("", "") => p.path = "/v1/health/state/any".into(),
            (s, "") => p.path = format!("/v1/health/checks/{}", escape_path(s)),
            ("", st) => {
                p.path = format!("/v1/health/state/{}", escape_path(st));
                for t in &a.tags {
                    p.query.push(("tag", t.clone()));
                }
            }
            _ => return Err("Cannot specify service and state".into()),
        },
        "event" => {
            p.path = "/v1/event/list".into();
            if !a.name.is_empty() {
                p.query.push(("name", a.name.clone()));
            }
            p.event = true;
        }
        "agent_service" => {
            p.path = format!(
                "/v1/agent/service/{}",
                escape_path(&need(&a.service_id, "service_id")?)
            );
            p.hash = true;
        }
        other => return Err(format!("Unsupported watch type: {other}")),
    }
    if a.stale && !p.event && !p.hash {
        p.query.push(("stale", String::new()));
    }
    Ok(p)
}

fn plan(a: &WatchArgs) -> Result<Plan, CliError> {
    let kind = a
        .kind
        .as_deref()
        .ok_or_else(|| CliError::new("Must specify watch type"))?;
    let params = Params {
        key: a.key.clone().unwrap_or_default(),
        prefix: a.prefix.clone().unwrap_or_default(),
        service: a.service.clone().unwrap_or_default(),
        tags: a.tag.clone(),
        passing: a.passing.unwrap_or(false),
        state: a.state.clone().unwrap_or_default(),
        name: a.name.clone().unwrap_or_default(),
        service_id: String::new(),
        stale: false,
    };
    if kind == "agent_service" || kind.starts_with("connect_") {
        return Err(CliError::new(format!("Unsupported watch type: {kind}")));
    }
    plan_for(kind, &params).map_err(CliError::new)
}

/// What runs when the answer changes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Handler {
    /// `meshgate watch` without a handler: the JSON, indented, on stdout.
    Print,
    /// A command: `sh -c LINE` when `shell`, else the arguments as given.
    /// `capture`: its output is kept (4 KiB) and logged, as the agent does;
    /// otherwise it goes where the caller's goes.
    Command {
        args: Vec<String>,
        shell: bool,
        capture: bool,
    },
    /// `handler_type = "http"`: the JSON sent to a URL.
    Http(HttpHandler),
}

/// `http_handler_config`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpHandler {
    path: String,
    method: String,
    timeout: Duration,
    header: Vec<(String, String)>,
    tls_skip_verify: bool,
}

/// The agent keeps this much of a handler's output for its log.
const OUTPUT_KEPT: usize = 4096;

/// The last [`OUTPUT_KEPT`] bytes of `out`, saying how much was cut.
fn kept_output(out: &[u8]) -> String {
    if out.len() <= OUTPUT_KEPT {
        return String::from_utf8_lossy(out).into_owned();
    }
    format!(
        "Captured {OUTPUT_KEPT} of {} bytes\n...\n{}",
        out.len(),
        String::from_utf8_lossy(&out[out.len() - OUTPUT_KEPT..])
    )
}

impl Handler {
    /// Runs the handler on one answer. An error is for the caller to report:
    /// the command stops on it, the agent logs it and goes on watching.
    async fn run(&self, data: &Value, index: u64) -> Result<(), String> {
        match self {
            Handler::Print => {
                use serde::Serialize;
                let mut out = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
                data.serialize(&mut ser).map_err(|e| e.to_string())?;
                out.push(b'\n');
                // SIGPIPE is ignored for `watch` (see `serves_network`): a
                // reader that went away is not worth a panic.
                use std::io::Write;
                let _ = std::io::stdout().lock().write_all(&out);
                Ok(())
            }
            Handler::Command {
                args,
                shell,
                capture,
            } => {
                // One compact line, as Consul's JSON encoder writes it.
                let mut json = serde_json::to_vec(data).map_err(|e| e.to_string())?;
                json.push(b'\n');
                run_command(args, *shell, *capture, &json, index).await
            }
            Handler::Http(h) => h.send(data, index).await,
        }
    }
}

async fn run_command(
    args: &[String],
    shell: bool,
    capture: bool,
    json: &[u8],
    index: u64,
) -> Result<(), String> {
    use std::process::Stdio;
    let mut cmd = if shell {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(args.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(&args[0]);
        c.args(&args[1..]);
        c
    };
    cmd.env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .kill_on_drop(true);
    if capture {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("Error executing handler: {e}"))?;
    let feed = {
        let stdin = child.stdin.take();
        let json = json.to_vec();
        async move {
            if let Some(mut stdin) = stdin {
                use tokio::io::AsyncWriteExt;
                // A handler that does not read its input is not an error.
                let _ = stdin.write_all(&json).await;
            }
        }
    };
    let (_, out) = tokio::join!(feed, child.wait_with_output());
    let out = out.map_err(|e| format!("Error executing handler: {e}"))?;
    if capture {
        let mut all = out.stdout;
        all.extend_from_slice(&out.stderr);
        tracing::debug!(
            handler = %args.join(" "),
            output = %kept_output(&all),
            "watch handler output"
        );
    }
    if out.status.success() {
        return Ok(());
    }
    // Go's words for a failed command.
    let why = match out.status.code() {
        Some(code) => format!("exit status {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            format!("signal: {}", out.status.signal().unwrap_or(0))
        }
    };
    Err(format!("Error executing handler: {why}"))
}

impl HttpHandler {
    async fn send(&self, data: &Value, index: u64) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .tls_danger_accept_invalid_certs(self.tls_skip_verify)
            .build()
            .map_err(|e| format!("Failed to setup http watch: {e}"))?;
        let method = reqwest::Method::from_bytes(self.method.as_bytes())
            .map_err(|e| format!("Failed to setup http watch: {e}"))?;
        let mut body = serde_json::to_vec(data).map_err(|e| e.to_string())?;
        body.push(b'\n');
        let mut req = http
            .request(method, &self.path)
            .header("Content-Type", "application/json")
            .header("X-Consul-Index", index.to_string())
            .body(body);
        for (k, v) in &self.header {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("Failed to invoke http watch handler: {e}"))?;
        let status = resp.status().as_u16();
        let out = resp.bytes().await.unwrap_or_default();
        if !(200..=299).contains(&status) {
            return Err(format!(
                "http watch handler failed with status code {status}: {}",
                kept_output(&out)
            ));
        }
        tracing::trace!(output = %kept_output(&out), "http watch handler output");
        Ok(())
    }
}

/// Follows `plan` through `c` until `stop` resolves, running `handler` on
/// the first answer and on every answer that differs from the one before
/// (events: on each new event); with `once`, on the first answer only.
/// Errors from the agent are reported through `report` and retried after a
/// pause; a handler's error ends the loop when `handler_errors_end` (the
/// command), else it is reported too (the agent).
pub(crate) async fn follow(
    c: &Client,
    p: &Plan,
    handler: &Handler,
    once: bool,
    handler_errors_end: bool,
    report: impl Fn(&str),
    stop: impl std::future::Future<Output = ()>,
) -> CliResult {
    tokio::pin!(stop);
    let mut index: u64 = 0;
    let mut hash = String::new();
    let mut last: Option<Value> = None;
    let mut seen_events: std::collections::HashSet<String> = Default::default();
    let mut pause = Duration::from_secs(1);
    loop {
        let mut q = p.query.clone();
        if p.hash && !hash.is_empty() {
            q.push(("hash", hash.clone()));
            q.push(("wait", "5m".to_string()));
        } else if !p.hash && index > 0 {
            q.push(("index", index.to_string()));
            q.push(("wait", "5m".to_string()));
        }
        let r = tokio::select! {
            r = c.send(reqwest::Method::GET, &p.path, &q, None) => r,
            _ = &mut stop => return Ok(()),
        };
        let answer: Result<(crate::client::Resp, Value), String> = match r {
            Err(e) => Err(e.to_string()),
            Ok(r) => match r.status {
                200 => match r.json::<Value>() {
                    Ok(v) => Ok((r, v)),
                    Err(e) => Err(e.to_string()),
                },
                404 if p.not_found_is_null => Ok((r, Value::Null)),
                _ => Err(r.error_text()),
            },
        };
        let (r, data) = match answer {
            Ok(a) => a,
            Err(msg) => {
                report(&format!("Error querying Consul agent: {msg}"));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = &mut stop => return Ok(()),
                }
                pause = (pause * 2).min(Duration::from_secs(20));
                continue;
            }
        };
        pause = Duration::from_secs(1);
        let header = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let new_index = header("x-consul-index")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if p.hash {
            hash = header("x-consul-contenthash").unwrap_or_default();
        }
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
        let outcome = if p.event {
            let events: Vec<Value> = data.as_array().cloned().unwrap_or_default();
            let first_run = last.is_none();
            let fresh: Vec<Value> = events
                .into_iter()
                .filter(|e| seen_events.insert(e["ID"].as_str().unwrap_or("").to_string()))
                .collect();
            last = Some(Value::Null);
            if first_run || !fresh.is_empty() {
                handler.run(&Value::Array(fresh), new_index).await
            } else {
                Ok(())
            }
        } else if last.as_ref() != Some(&data) {
            let r = handler.run(&data, new_index).await;
            last = Some(data);
            r
        } else {
            Ok(())
        };
        if let Err(e) = outcome {
            if handler_errors_end {
                return Err(CliError::new(e));
            }
            report(&e);
        }
        if once {
            return Ok(());
        }
        // An answer without an index (or hash) to block on would make the
        // next query return at once: pace the loop instead of spinning.
        let unblockable = if p.hash { hash.is_empty() } else { index == 0 };
        if unblockable {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = &mut stop => return Ok(()),
            }
        }
    }
}

/// Runs `meshgate watch`.
pub async fn run(a: WatchArgs) -> CliResult {
    let p = plan(&a)?;
    let c = Client::new(&a.http)?;
    // As Consul's command: an agent that cannot be reached at the start is an
    // error (later, errors are reported and the query retried).
    let me = c
        .send(reqwest::Method::GET, "/v1/agent/self", &[], None)
        .await
        .map_err(|e| CliError::new(format!("Error querying Consul agent: {e}")))?;
    if me.status != 200 {
        return Err(CliError::new(format!(
            "Error querying Consul agent: {}",
            me.error_text()
        )));
    }
    let handler = if a.handler.is_empty() {
        Handler::Print
    } else {
        Handler::Command {
            args: a.handler.clone(),
            shell: a.shell.unwrap_or(true),
            capture: false,
        }
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // As Consul's command: without a handler, the current answer is printed
    // and the command ends; a handler that fails ends it with status 1.
    let once = handler == Handler::Print;
    follow(&c, &p, &handler, once, true, |m| eprintln!("{m}"), stop).await
}

/// One of the agent's `watches`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentWatch {
    plan: Plan,
    handler: Handler,
    token: Option<String>,
    datacenter: Option<String>,
    /// The deprecated `handler` field was used (the agent warns, as Consul).
    deprecated_handler: bool,
}

/// Reads the agent configuration's `watches` as Consul's agent does, with
/// its error messages: the first bad watch stops the start.
pub(crate) fn agent_watches(watches: &[Value]) -> Result<Vec<AgentWatch>, String> {
    watches
        .iter()
        .map(|w| {
            let Some(params) = w.as_object() else {
                return Err(format!("Failed to parse watch ({w}): a watch is an object"));
            };
            parse_agent_watch(params.clone()).map_err(|e| match e {
                WatchError::Parse(e) => format!("Failed to parse watch ({w}): {e}"),
                WatchError::Agent(e) => e,
            })
        })
        .collect()
}

enum WatchError {
    /// Consul's `watch.Parse` errors (wrapped with the watch).
    Parse(String),
    /// The agent's own checks (not wrapped).
    Agent(String),
}

fn parse_agent_watch(mut params: Map<String, Value>) -> Result<AgentWatch, WatchError> {
    use WatchError::{Agent, Parse};
    let handler_type = match params.get("handler_type") {
        None => "script".to_string(),
        Some(Value::String(t)) if t == "http" || t == "script" => t.clone(),
        Some(other) => {
            let shown = other
                .as_str()
                .map(str::to_string)
                .unwrap_or(other.to_string());
            return Err(Agent(format!("Handler type '{shown}' not recognized")));
        }
    };
    params.remove("handler_type");
    if let Some(Value::String(t)) = params.get("type")
        && t.starts_with("connect_")
    {
        return Err(Agent(format!(
            "Watch type {t} is not allowed in agent config"
        )));
    }
    let string = |params: &mut Map<String, Value>, name: &str| -> Result<String, WatchError> {
        match params.remove(name) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Parse(format!("Expecting {name} to be a string"))),
        }
    };
    let boolean = |params: &mut Map<String, Value>, name: &str| -> Result<bool, WatchError> {
        match params.remove(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(Parse(format!("Expecting {name} to be a boolean"))),
        }
    };
    let datacenter = string(&mut params, "datacenter")?;
    let token = string(&mut params, "token")?;
    let kind = string(&mut params, "type")?;
    if kind.is_empty() {
        return Err(Parse("Watch type must be specified".into()));
    }
    let http = if handler_type == "http" {
        let Some(raw) = params.remove("http_handler_config") else {
            return Err(Parse(
                "Handler type 'http' requires 'http_handler_config' to be set".into(),
            ));
        };
        Some(
            http_handler_config(&raw)
                .map_err(|e| Parse(format!("Failed to parse 'http_handler_config': {e}")))?,
        )
    } else {
        None
    };
    // The parameters of each type (Consul's factories).
    let mut a = Params::default();
    let known_kind = matches!(
        kind.as_str(),
        "key"
            | "keyprefix"
            | "services"
            | "nodes"
            | "service"
            | "checks"
            | "event"
            | "agent_service"
    );
    if !known_kind {
        return Err(Parse(format!("Unsupported watch type: {kind}")));
    }
    if !matches!(kind.as_str(), "event" | "agent_service") {
        a.stale = boolean(&mut params, "stale")?;
    }
    match kind.as_str() {
        "key" => a.key = string(&mut params, "key")?,
        "keyprefix" => a.prefix = string(&mut params, "prefix")?,
        "service" => {
            a.service = string(&mut params, "service")?;
            if a.service.is_empty() {
                return Err(Parse("Must specify a single service to watch".into()));
            }
            a.tags = tags(&mut params)?;
            a.passing = boolean(&mut params, "passingonly")?;
        }
        "checks" => {
            a.service = string(&mut params, "service")?;
            a.state = string(&mut params, "state")?;
            if !a.service.is_empty() && !a.state.is_empty() {
                return Err(Parse("Cannot specify service and state".into()));
            }
            a.tags = tags(&mut params)?;
        }
        "event" => a.name = string(&mut params, "name")?,
        "agent_service" => a.service_id = string(&mut params, "service_id")?,
        _ => {}
    }
    let plan = plan_for(&kind, &a).map_err(Parse)?;
    let handler_field = params.remove("handler");
    let args_field = params.remove("args");
    if !params.is_empty() {
        let bad: Vec<&str> = params.keys().map(String::as_str).collect();
        return Err(Parse(format!("Invalid parameters: [{}]", bad.join(" "))));
    }
    let script = match &handler_field {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Agent("Watch handler must be a string".into())),
    };
    let args = match &args_field {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| Agent("Watch args must be a list of strings".into()))?,
        ),
        Some(_) => return Err(Agent("Watch args must be a list of strings".into())),
    };
    let handler = match (script, args, http) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            return Err(Agent("Only one watch handler allowed".into()));
        }
        (None, None, None) => return Err(Agent("Must define a watch handler".into())),
        (None, Some(args), None) if args.is_empty() => {
            return Err(Agent("Must define a watch handler".into()));
        }
        (Some(line), None, None) => Handler::Command {
            args: vec![line],
            shell: true,
            capture: true,
        },
        (None, Some(args), None) => Handler::Command {
            args,
            shell: false,
            capture: true,
        },
        (None, None, Some(h)) => Handler::Http(h),
    };
    Ok(AgentWatch {
        plan,
        handler,
        token: Some(token).filter(|t| !t.is_empty()),
        datacenter: Some(datacenter).filter(|d| !d.is_empty()),
        deprecated_handler: handler_field.is_some(),
    })
}

/// `tag`: a string or a list of strings.
fn tags(params: &mut Map<String, Value>) -> Result<Vec<String>, WatchError> {
    match params.remove("tag") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    WatchError::Parse(format!("Index {i} of tag expected to be string"))
                })
            })
            .collect(),
        Some(_) => Err(WatchError::Parse(
            "Expecting tag to be a string or []string".into(),
        )),
    }
}

/// `http_handler_config`: `path` (required), `method` (POST), `timeout`
/// (10s), `header` (name to list of values), `tls_skip_verify`. Field names
/// match in any case, as Go's decoder does.
fn http_handler_config(raw: &Value) -> Result<HttpHandler, String> {
    // An HCL block may come as a list of one object (Consul decodes it
    // weakly for that reason).
    let raw = match raw {
        Value::Array(items) if items.len() == 1 => &items[0],
        other => other,
    };
    let obj = raw
        .as_object()
        .ok_or_else(|| "expected a map".to_string())?;
    let mut h = HttpHandler {
        path: String::new(),
        method: "POST".into(),
        timeout: Duration::from_secs(10),
        header: Vec::new(),
        tls_skip_verify: false,
    };
    for (k, v) in obj {
        match k.to_ascii_lowercase().as_str() {
            "path" => h.path = v.as_str().ok_or("'path' expected a string")?.to_string(),
            "method" => {
                let m = v.as_str().ok_or("'method' expected a string")?;
                if !m.is_empty() {
                    h.method = m.to_string();
                }
            }
            "timeout" => {
                let t = v.as_str().ok_or("'timeout' expected a string")?;
                if !t.is_empty() {
                    h.timeout = meshgate_types::duration::parse(t)
                        .map_err(|e| format!("Failed to parse timeout: {e}"))?;
                }
            }
            "tls_skip_verify" => {
                h.tls_skip_verify = v.as_bool().ok_or("'tls_skip_verify' expected a bool")?;
            }
            "header" => {
                let map = v.as_object().ok_or("'header' expected a map")?;
                for (name, values) in map {
                    let values: Vec<&Value> = match values {
                        Value::Array(a) => a.iter().collect(),
                        one => vec![one],
                    };
                    for value in values {
                        let value = value
                            .as_str()
                            .ok_or_else(|| format!("'header[{name}]' expected strings"))?;
                        h.header.push((name.clone(), value.to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    if h.path.is_empty() {
        return Err("Requires 'path' to be set".into());
    }
    Ok(h)
}

/// The watches an agent runs, against its own HTTP API at `base`
/// (`http://127.0.0.1:8500`; `None`: the agent serves no HTTP), until the
/// agent stops; `meshgate reload` replaces them when the configuration's
/// `watches` changed.
pub(crate) struct WatchSet {
    base: Option<String>,
    /// For an `https://` base: the CA to trust and the certificate to
    /// present (`ca_file`, `cert_file`, `key_file` of the agent's HTTPS API).
    tls: Option<(String, String, String)>,
    stop: tokio::sync::watch::Receiver<bool>,
    /// The configuration the running watches came from, and their tasks.
    running: std::sync::Mutex<(Vec<Value>, Vec<tokio::task::JoinHandle<()>>)>,
}

impl WatchSet {
    pub(crate) fn new(
        base: Option<String>,
        tls: Option<(String, String, String)>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> WatchSet {
        WatchSet {
            base,
            tls,
            stop,
            running: std::sync::Mutex::new((Vec::new(), Vec::new())),
        }
    }

    /// Reads `raw` (the configuration's `watches`) as Consul's agent does;
    /// the error stops a start or fails a reload.
    pub(crate) fn check(&self, raw: &[Value]) -> Result<Vec<AgentWatch>, String> {
        let watches = agent_watches(raw)?;
        if !watches.is_empty() && self.base.is_none() {
            return Err("watch plans require an HTTP or HTTPS endpoint".into());
        }
        Ok(watches)
    }

    /// Runs `watches` (read from `raw`) in place of the running ones. The
    /// same configuration again (a reload that did not touch `watches`)
    /// leaves them running: their handlers do not fire again for nothing.
    pub(crate) fn replace(&self, raw: Vec<Value>, watches: Vec<AgentWatch>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.0 == raw {
            return;
        }
        // Stopping a watch stops its blocking query and a handler it is
        // running (its process is killed).
        for task in running.1.drain(..) {
            task.abort();
        }
        let Some(base) = &self.base else { return };
        for w in watches {
            if w.deprecated_handler {
                tracing::warn!(
                    "The 'handler' field in watches has been deprecated and replaced with the 'args' field"
                );
            }
            let nonempty = |s: &String| (!s.is_empty()).then(|| s.clone());
            let flags = HttpFlags {
                http_addr: Some(base.clone()),
                token: w.token.clone(),
                datacenter: w.datacenter.clone(),
                ca_file: self.tls.as_ref().and_then(|t| nonempty(&t.0)),
                client_cert: self.tls.as_ref().and_then(|t| nonempty(&t.1)),
                client_key: self.tls.as_ref().and_then(|t| nonempty(&t.2)),
                ..HttpFlags::default()
            };
            let c = match Client::new(&flags) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("Failed to run watch: {e}");
                    continue;
                }
            };
            let mut stop = self.stop.clone();
            running.1.push(tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                let report = |m: &str| tracing::error!("watch {}: {m}", w.plan.path);
                let _ = follow(&c, &w.plan, &w.handler, false, false, report, stopped).await;
            }));
        }
        running.0 = raw;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<AgentWatch, String> {
        agent_watches(&[v]).map(|mut w| w.remove(0))
    }

    #[test]
    fn agent_watches_read_like_consuls() {
        let w = parse(json!({"type": "key", "key": "a/b c", "args": ["/bin/handler", "-x"], "token": "t", "datacenter": "dc2", "stale": true})).unwrap();
        assert_eq!(w.plan.path, "/v1/kv/a/b%20c");
        assert_eq!(w.plan.query, vec![("stale", String::new())]);
        assert!(w.plan.first);
        assert_eq!(w.token.as_deref(), Some("t"));
        assert_eq!(w.datacenter.as_deref(), Some("dc2"));
        assert_eq!(
            w.handler,
            Handler::Command {
                args: vec!["/bin/handler".into(), "-x".into()],
                shell: false,
                capture: true
            }
        );
        let w = parse(json!({"type": "service", "service": "db", "tag": ["a", "b"], "passingonly": true, "handler": "echo hi"})).unwrap();
        assert_eq!(w.plan.path, "/v1/health/service/db");
        assert_eq!(
            w.plan.query,
            vec![
                ("tag", "a".into()),
                ("tag", "b".into()),
                ("passing", String::new())
            ]
        );
        assert!(w.deprecated_handler);
        assert!(matches!(w.handler, Handler::Command { shell: true, .. }));
        let w = parse(json!({"type": "checks", "handler_type": "http", "http_handler_config": {"Path": "https://127.0.0.1:1/hook", "header": {"x-a": ["1", "2"]}, "timeout": "3s"}})).unwrap();
        assert_eq!(w.plan.path, "/v1/health/state/any");
        let Handler::Http(h) = w.handler else {
            panic!("http handler")
        };
        assert_eq!(h.method, "POST");
        assert_eq!(h.timeout, Duration::from_secs(3));
        assert_eq!(
            h.header,
            vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())]
        );
        let w = parse(json!({"type": "agent_service", "service_id": "web-1", "args": ["true"]}))
            .unwrap();
        assert!(w.plan.hash);
        assert_eq!(w.plan.path, "/v1/agent/service/web-1");
    }

    #[test]
    fn bad_agent_watches_say_why() {
        let cases = [
            (
                json!({"type": "key", "key": "k"}),
                "Must define a watch handler",
            ),
            (
                json!({"type": "key", "args": ["x"]}),
                "Must specify a single key to watch",
            ),
            (json!({"args": ["x"]}), "Watch type must be specified"),
            (
                json!({"type": "keys", "args": ["x"]}),
                "Unsupported watch type: keys",
            ),
            (
                json!({"type": "connect_roots", "args": ["x"]}),
                "Watch type connect_roots is not allowed in agent config",
            ),
            (
                json!({"type": "nodes", "handler_type": "exec", "args": ["x"]}),
                "Handler type 'exec' not recognized",
            ),
            (
                json!({"type": "nodes", "handler_type": "http"}),
                "Handler type 'http' requires 'http_handler_config' to be set",
            ),
            (
                json!({"type": "nodes", "handler_type": "http", "http_handler_config": {"method": "PUT"}}),
                "Failed to parse 'http_handler_config': Requires 'path' to be set",
            ),
            (
                json!({"type": "nodes", "args": ["x"], "handler": "y"}),
                "Only one watch handler allowed",
            ),
            (
                json!({"type": "nodes", "args": ["x", 1]}),
                "Watch args must be a list of strings",
            ),
            (
                json!({"type": "nodes", "handler": ["x"]}),
                "Watch handler must be a string",
            ),
            (
                json!({"type": "nodes", "args": ["x"], "bogus": 1}),
                "Invalid parameters: [bogus]",
            ),
            (
                json!({"type": "nodes", "args": ["x"], "stale": "yes"}),
                "Expecting stale to be a boolean",
            ),
            (
                json!({"type": "checks", "service": "a", "state": "critical", "args": ["x"]}),
                "Cannot specify service and state",
            ),
            (
                json!({"type": "event", "args": ["x"], "stale": true}),
                "Invalid parameters: [stale]",
            ),
        ];
        for (w, want) in cases {
            let e = parse(w.clone()).unwrap_err();
            assert!(e.ends_with(want), "{w}: {e}");
        }
        let e = parse(json!({"type": "key", "args": ["x"]})).unwrap_err();
        assert!(e.starts_with("Failed to parse watch ({"), "{e}");
    }

    #[test]
    fn long_output_is_cut_from_the_front() {
        let out = vec![b'a'; OUTPUT_KEPT + 10];
        let kept = kept_output(&out);
        assert!(kept.starts_with(&format!(
            "Captured {OUTPUT_KEPT} of {} bytes\n...\n",
            OUTPUT_KEPT + 10
        )));
        assert_eq!(kept_output(b"short"), "short");
    }
}
