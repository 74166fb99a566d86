//! systemd's readiness protocol (`Type=notify`) for the agent: `READY=1` once
//! it serves, `WATCHDOG=1` at half the watchdog interval while it runs,
//! `STOPPING=1` on shutdown (see [`meshgate_types::sdnotify`]).

use tracing::debug;

pub use meshgate_types::sdnotify::watchdog_interval;

/// Sends one notification; whether it was sent.
pub fn notify(state: &str) -> bool {
    match meshgate_types::sdnotify::send(state) {
        Ok(sent) => sent,
        Err(e) => {
            debug!("sd_notify {state:?}: {e}");
            false
        }
    }
}

/// Pings the watchdog at half its interval until the agent stops.
pub async fn watchdog(agent: std::sync::Arc<crate::Agent>) {
    let Some(every) = watchdog_interval() else {
        return;
    };
    let mut stop = agent.shutdown_signal();
    loop {
        notify("WATCHDOG=1");
        tokio::select! {
            _ = tokio::time::sleep(every / 2) => {}
            _ = crate::stopped(&mut stop) => return,
        }
    }
}
