//! systemd's readiness protocol (`Type=notify`): `READY=1` once the agent
//! serves, `WATCHDOG=1` at half the watchdog interval while it runs,
//! `STOPPING=1` on shutdown. Datagrams go to `$NOTIFY_SOCKET` (a path, or an
//! abstract name starting with `@`); without it, nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tracing::debug;

fn socket() -> Option<(UnixDatagram, std::os::unix::net::SocketAddr)> {
    let path = std::env::var_os("NOTIFY_SOCKET")?;
    let path = path.to_string_lossy().into_owned();
    let addr = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
    } else {
        std::os::unix::net::SocketAddr::from_pathname(&path).ok()?
    };
    let sock = UnixDatagram::unbound().ok()?;
    Some((sock, addr))
}

/// Sends one notification; whether it was sent.
pub fn notify(state: &str) -> bool {
    let Some((sock, addr)) = socket() else {
        return false;
    };
    match sock.send_to_addr(state.as_bytes(), &addr) {
        Ok(_) => true,
        Err(e) => {
            debug!("sd_notify {state:?}: {e}");
            false
        }
    }
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`), when it is
/// meant for this process (`WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
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
