//! Log streaming for `/v1/agent/monitor`: a tracing layer that copies every log
//! event, formatted like Consul's log lines (text or JSON), to subscribers.

use std::fmt::Write as _;
use std::sync::OnceLock;

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// One log event.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub level: Level,
    /// `2026-11-25T18:02:07.644Z [INFO]  agent: message: key=value`
    pub text: String,
    /// `{"@level":"info","@message":"...","@module":"agent","@timestamp":"..."}`
    pub json: String,
}

static SENDER: OnceLock<broadcast::Sender<LogLine>> = OnceLock::new();

fn sender() -> &'static broadcast::Sender<LogLine> {
    SENDER.get_or_init(|| broadcast::channel(1024).0)
}

/// Whether anyone streams the log (`/v1/agent/monitor`). Used as the
/// monitor layer's filter: without a stream, debug and trace events (hyper's
/// among them, several per request) are not even built.
pub fn active() -> bool {
    SENDER.get().is_some_and(|s| s.receiver_count() > 0)
}

/// Subscribes to the log stream.
pub fn subscribe() -> broadcast::Receiver<LogLine> {
    sender().subscribe()
}

/// The layer to install next to the process's own log output.
pub fn layer() -> MonitorLayer {
    MonitorLayer
}

/// Parses a level name as Consul's `?loglevel` does.
pub fn parse_level(s: &str) -> Option<Level> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Some(Level::TRACE),
        "debug" => Some(Level::DEBUG),
        "" | "info" => Some(Level::INFO),
        "warn" | "warning" => Some(Level::WARN),
        "err" | "error" => Some(Level::ERROR),
        _ => None,
    }
}

/// The tracing layer.
pub struct MonitorLayer;

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let tx = sender();
        if tx.receiver_count() == 0 {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let meta = event.metadata();
        let module = meta
            .target()
            .trim_start_matches("meshgate_")
            .split("::")
            .next()
            .unwrap_or("agent")
            .to_string();
        let ts = crate::store::now_ms();
        let ts = meshgate_types::time::format_rfc3339_ms(ts);
        let level = *meta.level();
        let lvl = match level {
            Level::TRACE => "TRACE",
            Level::DEBUG => "DEBUG",
            Level::INFO => "INFO",
            Level::WARN => "WARN",
            Level::ERROR => "ERROR",
        };
        let mut text = format!(
            "{ts} [{lvl}] {:pad$}{module}: {}",
            "",
            f.message,
            pad = 5 - lvl.len().min(5)
        );
        for (k, v) in &f.rest {
            let _ = write!(text, ": {k}={v}");
        }
        let mut obj = serde_json::Map::new();
        obj.insert("@level".into(), lvl.to_ascii_lowercase().into());
        obj.insert("@message".into(), f.message.clone().into());
        obj.insert("@module".into(), module.into());
        obj.insert("@timestamp".into(), ts.into());
        for (k, v) in f.rest {
            obj.insert(k, v.into());
        }
        let json = serde_json::Value::Object(obj).to_string();
        let _ = tx.send(LogLine { level, text, json });
    }
}
