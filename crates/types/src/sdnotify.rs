//! systemd's readiness protocol (`Type=notify`), shared by the agent and the
//! proxies: `READY=1` once a process serves, `WATCHDOG=1` pings, `STOPPING=1`
//! on shutdown. Datagrams go to `$NOTIFY_SOCKET` (a path, or an abstract name
//! starting with `@`); without it, nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

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

/// Sends one notification: `Ok(false)` when no `$NOTIFY_SOCKET` is set.
pub fn send(state: &str) -> std::io::Result<bool> {
    let Some((sock, addr)) = socket() else {
        return Ok(false);
    };
    sock.send_to_addr(state.as_bytes(), &addr).map(|_| true)
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
