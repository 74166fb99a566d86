//! `meshgate connect proxy` and `meshgate connect envoy`: run the built-in
//! sidecar proxy or terminating gateway (no Envoy is involved; `envoy` is
//! kept as a name so existing systemd units work unchanged).

use std::time::Duration;

use clap::Args;
use meshgate_proxy::{Mode, Options};
use tracing::{info, warn};

use crate::client::{CliError, CliResult, Client, HttpFlags};

/// Flags of `connect proxy` / `connect envoy`.
#[derive(Args, Debug, Clone)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The proxy's service ID in the local agent (env CONNECT_PROXY_ID).
    #[arg(long = "proxy-id", env = "CONNECT_PROXY_ID")]
    pub proxy_id: Option<String>,
    /// Run the sidecar of this service ID (env CONNECT_SIDECAR_FOR).
    #[arg(long = "sidecar-for", env = "CONNECT_SIDECAR_FOR")]
    pub sidecar_for: Option<String>,
    /// Run a gateway of this kind: only `terminating` is built in.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Register the gateway service with the local agent.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub register: Option<bool>,
    /// The gateway's service name (default `terminating-gateway`).
    #[arg(long)]
    pub service: Option<String>,
    /// `host:port` the gateway listens on and registers (default: the agent's address, port 8443).
    #[arg(long)]
    pub address: Option<String>,
    /// Deregister a registered gateway after it has been critical this long.
    #[arg(long = "deregister-after-critical", default_value = "6h")]
    pub deregister_after_critical: String,
    /// `host:port` of the admin endpoint (/ready, /metrics, /config); port 0 picks a free one.
    #[arg(long = "admin-bind", default_value = "localhost:19000")]
    pub admin_bind: String,
    /// How long open connections may take to finish after SIGTERM.
    #[arg(long = "drain-timeout", default_value = "30s")]
    pub drain_timeout: String,
    /// Log level (trace, debug, info, warn, error); `-- -l LEVEL` works too.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// Accepted for compatibility with `consul connect envoy`; no effect.
    #[arg(long = "bootstrap", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub bootstrap: Option<bool>,
    /// Arguments after `--` (Envoy's): `-l LEVEL` / `--log-level LEVEL` set the log level, others are ignored.
    #[arg(last = true, allow_hyphen_values = true)]
    pub passthrough: Vec<String>,
}

/// The log level asked for after `--` (`-l debug`, `--log-level=debug`),
/// and the arguments that are ignored.
fn passthrough_level(args: &[String]) -> (Option<String>, Vec<String>) {
    let mut level = None;
    let mut ignored = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "-l" || a == "--log-level" {
            if let Some(v) = args.get(i + 1) {
                level = Some(v.clone());
                i += 2;
                continue;
            }
        } else if a == "--concurrency" && i + 1 < args.len() {
            i += 2;
            continue;
        } else if a.starts_with("--concurrency=") {
            i += 1;
            continue;
        } else if let Some(v) = a
            .strip_prefix("--log-level=")
            .or_else(|| a.strip_prefix("-l="))
        {
            level = Some(v.to_string());
            i += 1;
            continue;
        }
        ignored.push(a.clone());
        i += 1;
    }
    (level, ignored)
}

/// Envoy's `--concurrency N` (or `--concurrency=N`) among the arguments
/// after `--`: the number of threads the proxy runs on (`0` runs one, as
/// Envoy does).
pub fn concurrency(args: &[String]) -> Result<Option<usize>, String> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let value = if a == "--concurrency" {
            i += 1;
            Some(args.get(i).map(String::as_str).ok_or_else(|| {
                "--concurrency (after --) needs a value: the number of proxy threads".to_string()
            })?)
        } else {
            a.strip_prefix("--concurrency=")
        };
        if let Some(v) = value {
            match v.parse::<usize>() {
                Ok(n) => found = Some(n.max(1)),
                Err(_) => {
                    return Err(format!(
                        "Invalid --concurrency {v:?} (after --): the number of proxy threads"
                    ));
                }
            }
        }
        i += 1;
    }
    Ok(found)
}

/// How many threads carry the proxy's connections: `--concurrency N` after
/// `--`, else `MESHGATE_WORKER_THREADS`, else one per CPU.
pub fn threads(passthrough: &[String]) -> Result<usize, String> {
    Ok(match concurrency(passthrough)? {
        Some(n) => n,
        None => crate::env_worker_threads()?.unwrap_or_else(crate::cpus),
    })
}

/// How many open connections a proxy thread takes before the next thread
/// gets any: `MESHGATE_CONNS_PER_THREAD`, else
/// [`meshgate_proxy::workers::DEFAULT_PER_THREAD`].
pub fn conns_per_thread() -> Result<usize, String> {
    match std::env::var("MESHGATE_CONNS_PER_THREAD") {
        Err(_) => Ok(meshgate_proxy::workers::DEFAULT_PER_THREAD),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "Invalid MESHGATE_CONNS_PER_THREAD {v:?}: the number of open connections a proxy thread takes before the next, 1 or more"
            )),
        },
    }
}

/// Runs the proxy until SIGTERM or Ctrl-C.
pub async fn run(args: ProxyArgs, name: &str) -> CliResult {
    // Checked first, so that a bad value stops the proxy before anything
    // starts.
    let threads = threads(&args.passthrough).map_err(CliError::new)?;
    let conns_per_thread = conns_per_thread().map_err(CliError::new)?;
    let (pass_level, ignored) = passthrough_level(&args.passthrough);
    let level = args
        .log_level
        .clone()
        .or(pass_level)
        .unwrap_or_else(|| "info".into());
    let level = match level.as_str() {
        "critical" | "off" => "error".to_string(),
        l => l.to_string(),
    };
    // Debug output of our own crates only: the HTTP and TLS libraries are
    // very talkative at that level.
    let filter = match level.as_str() {
        "debug" | "trace" => {
            format!("info,meshgate_proxy={level},meshgate_cli={level},meshgate_ca={level}")
        }
        l => l.to_string(),
    };
    crate::cmd::agent::init_logging(&filter, false);
    if !ignored.is_empty() {
        warn!(
            "arguments after -- are for Envoy and ignored by meshgate's built-in proxy: {ignored:?}"
        );
    }
    if args.bootstrap == Some(true) {
        warn!(
            "-bootstrap has no effect: meshgate runs its own proxy, there is no Envoy bootstrap to print"
        );
    }
    let client = Client::new(&args.http)?;
    let drain_timeout = meshgate_types::duration::parse(&args.drain_timeout)
        .map_err(|e| CliError::new(format!("Invalid -drain-timeout: {e}")))?;
    let mode = match args.gateway.as_deref() {
        Some("terminating") => Mode::Gateway {
            service: args
                .service
                .clone()
                .unwrap_or_else(|| "terminating-gateway".into()),
            proxy_id: args.proxy_id.clone(),
            register: args.register.unwrap_or(false),
            address: args.address.clone(),
            deregister_after_critical: args.deregister_after_critical.clone(),
        },
        Some("mesh" | "ingress" | "api") => {
            return Err(CliError::new(format!(
                "meshgate's built-in proxy supports -gateway=terminating only (got {:?})",
                args.gateway.as_deref().unwrap_or("")
            )));
        }
        Some(other) => {
            return Err(CliError::new(format!(
                "Gateway must be one of: api, terminating, mesh, or ingress (got {other:?})"
            )));
        }
        None => {
            if args.register == Some(true) {
                return Err(CliError::new(
                    "Auto-Registration can only be used for gateways",
                ));
            }
            if args.proxy_id.is_none() && args.sidecar_for.is_none() {
                return Err(CliError::new(
                    "No proxy ID specified. One of -proxy-id, -sidecar-for, or -gateway is required",
                ));
            }
            Mode::Sidecar {
                proxy_id: args.proxy_id.clone(),
                sidecar_for: args.sidecar_for.clone(),
            }
        }
    };
    if client.token.is_none() {
        warn!(
            "no ACL token given (-token, -token-file, CONSUL_HTTP_TOKEN): requests use the agent's default token"
        );
    }
    let opts = Options {
        threads,
        conns_per_thread,
        http_addr: client.base.clone(),
        token: client.token.clone().unwrap_or_default(),
        mode,
        admin_bind: Some(args.admin_bind.clone()),
        drain_timeout: if drain_timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            drain_timeout
        },
    };
    info!("meshgate {name} starting (built-in proxy, no Envoy)");
    // SIGHUP (a terminal hangup, a stray `systemctl reload`) must not end a
    // proxy: it has nothing to re-read (it follows its configuration through
    // the agent) and is only logged.
    let mut hangups = crate::cmd::agent::hangups();
    // Caught from here on, so that a stop asked for while the proxy starts
    // is a graceful one.
    let mut stops = crate::cmd::agent::Stops::new();
    tokio::spawn(async move {
        while crate::cmd::agent::next_hangup(&mut hangups).await.is_some() {
            info!(
                "caught hangup signal: ignored (the proxy follows its configuration through the agent)"
            );
        }
    });
    meshgate_proxy::run(opts, async {
        let why = stops.next().await;
        info!("caught {why} signal");
    })
    .await
    .map_err(|e| CliError::new(format!("{e}")))?;
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{concurrency, passthrough_level};

    #[test]
    fn envoy_log_level_after_double_dash() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            passthrough_level(&v(&["-l", "debug"])).0.as_deref(),
            Some("debug")
        );
        assert_eq!(
            passthrough_level(&v(&[
                "--log-level=trace",
                "--concurrency",
                "2",
                "--base-id",
                "1"
            ])),
            (Some("trace".into()), v(&["--base-id", "1"]))
        );
        assert_eq!(passthrough_level(&v(&[])).0, None);
    }

    /// Envoy's `--concurrency` sets the proxy's threads (0 runs one, as
    /// Envoy); a bad value is an error, not a silent default.
    #[test]
    fn envoy_concurrency_after_double_dash() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(concurrency(&v(&["-l", "info"])), Ok(None));
        assert_eq!(concurrency(&v(&["--concurrency", "3"])), Ok(Some(3)));
        assert_eq!(
            concurrency(&v(&["--concurrency=2", "-l", "debug"])),
            Ok(Some(2))
        );
        assert_eq!(concurrency(&v(&["--concurrency", "0"])), Ok(Some(1)));
        for bad in [
            &["--concurrency"][..],
            &["--concurrency", "-1"],
            &["--concurrency=x"],
        ] {
            let e = concurrency(&v(bad)).expect_err("a bad --concurrency is refused");
            assert!(e.contains("--concurrency"), "{e}");
        }
    }
}
