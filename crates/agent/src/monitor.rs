//! Log streaming for `/v1/agent/monitor`: a tracing layer that copies every log
//! event, formatted like Consul's log lines (text or JSON), to subscribers.

use std::fmt::Write as _;
use std::sync::OnceLock;

use parking_lot::Mutex;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
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

/// Whether anyone streams the log (`/v1/agent/monitor`).
pub fn active() -> bool {
    SENDER.get().is_some_and(|s| s.receiver_count() > 0)
}

/// Something that sets the monitor layer's level filter.
type FilterControl = Box<dyn Fn(LevelFilter) + Send + Sync>;

/// The control of the monitor layer's filter, installed by whoever sets up
/// logging (a reloadable level filter, `OFF` at first).
static CONTROL: OnceLock<FilterControl> = OnceLock::new();

/// How many streams are open at each level (in the order of [`LEVELS`]).
static STREAMS: Mutex<[usize; 5]> = Mutex::new([0; 5]);

/// The levels, least verbose first.
const LEVELS: [Level; 5] = [
    Level::ERROR,
    Level::WARN,
    Level::INFO,
    Level::DEBUG,
    Level::TRACE,
];

/// Installs what opens and closes the monitor layer's filter. The filter
/// is a plain level that changes only when a stream starts or ends: a
/// filter asked at every event (a dynamic one) would make `tracing` treat
/// every callsite as "sometimes" enabled, and then every debug-level span
/// of the libraries (openraft's, on each raft message) is built and
/// entered even when nothing records it.
pub fn set_filter_control(f: impl Fn(LevelFilter) + Send + Sync + 'static) {
    let _ = CONTROL.set(Box::new(f));
}

/// Counts a stream in or out and sets the filter to the most verbose level
/// any open stream asks for (`OFF` when none is open).
fn count_stream(level: Level, delta: isize) {
    let mut streams = STREAMS.lock();
    if let Some(i) = LEVELS.iter().position(|l| *l == level) {
        streams[i] = streams[i].saturating_add_signed(delta);
    }
    let most = (0..LEVELS.len())
        .rev()
        .find(|i| streams[*i] > 0)
        .map_or(LevelFilter::OFF, |i| LevelFilter::from_level(LEVELS[i]));
    if let Some(set) = CONTROL.get() {
        set(most);
    }
}

/// An open log stream: the lines, and its place in the filter (given back
/// when the stream is dropped).
pub struct Stream {
    pub rx: broadcast::Receiver<LogLine>,
    level: Level,
}

impl Drop for Stream {
    fn drop(&mut self) {
        count_stream(self.level, -1);
    }
}

/// Subscribes to the log stream at `level` (lines up to that verbosity are
/// built while the stream is open).
pub fn subscribe(level: Level) -> Stream {
    let rx = sender().subscribe();
    count_stream(level, 1);
    Stream { rx, level }
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
