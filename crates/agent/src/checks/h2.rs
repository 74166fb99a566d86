//! Checks over HTTP/2: the gRPC health protocol (`GRPC`) and HTTP/2 PING
//! (`H2PING`), in cleartext (h2c, prior knowledge) or over TLS (ALPN `h2`).
//!
//! The gRPC check sends one `grpc.health.v1.Health/Check` request naming the
//! service after the `/` of the target (none: the whole server) and is passing
//! only when the answer is `SERVING`. Outputs use the words operators know from
//! the checks of the API we are compatible with.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use meshgate_types::catalog::status;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Outcome, dial_error};
use crate::external::probes::{TlsOptions, client_config};

/// The path of the standard health service's `Check` method.
const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// Largest health answer read (a real one is a few bytes).
const MAX_ANSWER: usize = 64 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why an HTTP/2 exchange failed, kept apart so each check can word it.
enum Failure {
    /// The TCP connect failed (text in Go's `dial tcp` words).
    Dial(String),
    /// The TLS handshake failed.
    Tls(String),
    /// The HTTP/2 layer failed.
    H2(String),
}

/// A connected HTTP/2 client: the request handle, the PING handle, and the
/// task driving the connection (aborted on drop).
struct Client {
    send: h2::client::SendRequest<Bytes>,
    ping: Option<h2::PingPong>,
    driver: tokio::task::JoinHandle<()>,
    scheme: &'static str,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects to `addr` and completes the HTTP/2 handshake; over TLS when `tls`.
async fn connect(addr: &str, tls: Option<&TlsOptions>) -> Result<Client, Failure> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::Dial(dial_error(addr, &e)))?;
    let _ = tcp.set_nodelay(true);
    let (io, scheme): (Box<dyn Io>, _) = match tls {
        None => (Box::new(tcp), "http"),
        Some(opts) => {
            let (mut cfg, name) = client_config(addr, opts).map_err(Failure::Tls)?;
            std::sync::Arc::make_mut(&mut cfg).alpn_protocols = vec![b"h2".to_vec()];
            let stream = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| Failure::Tls(e.to_string()))?;
            (Box::new(stream), "https")
        }
    };
    let (send, mut conn) = h2::client::Builder::new()
        .max_frame_size(16 * 1024)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| Failure::H2(e.to_string()))?;
    let ping = conn.ping_pong();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Client {
        send,
        ping,
        driver,
        scheme,
    })
}

/// The gRPC status codes' names as Go's `codes.Code` prints them.
fn code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// The gRPC code a transport maps an unexpected HTTP status to.
fn code_of_http_status(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// The health answer's serving status names.
fn serving_status_name(v: u64) -> String {
    match v {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

fn rpc_error(code: u32, desc: &str) -> String {
    format!("rpc error: code = {} desc = {desc}", code_name(code))
}

/// Decodes a `grpc-message` (percent-encoded UTF-8).
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends a protobuf varint.
fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Reads a protobuf varint.
fn get_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if buf.is_empty() {
            return None;
        }
        let b = buf.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// A `HealthCheckRequest { service }` in a gRPC length-prefixed frame.
fn health_request(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + msg.len());
    frame.put_u8(0); // not compressed
    frame.put_u32(msg.len() as u32);
    frame.put_slice(&msg);
    frame.freeze()
}

/// The `status` of a `HealthCheckResponse` message (0 when absent); other
/// fields are skipped.
fn health_status(mut msg: &[u8]) -> Result<u64, String> {
    let bad = || "grpc: failed to unmarshal the received message".to_string();
    let mut status = 0;
    while !msg.is_empty() {
        let key = get_varint(&mut msg).ok_or_else(bad)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = get_varint(&mut msg).ok_or_else(bad)?,
            (_, 0) => {
                get_varint(&mut msg).ok_or_else(bad)?;
            }
            (_, 1) if msg.len() >= 8 => msg.advance(8),
            (_, 5) if msg.len() >= 4 => msg.advance(4),
            (_, 2) => {
                let n = get_varint(&mut msg).ok_or_else(bad)? as usize;
                if msg.len() < n {
                    return Err(bad());
                }
                msg.advance(n);
            }
            _ => return Err(bad()),
        }
    }
    Ok(status)
}

/// Splits a gRPC target `host:port[/service]`.
pub fn split_grpc_target(target: &str) -> (&str, &str) {
    match target.split_once('/') {
        Some((addr, service)) => (addr, service),
        None => (target, ""),
    }
}

/// The `grpc-status` and `grpc-message` of a header map, if it has them.
fn grpc_status(h: &http::HeaderMap) -> Option<(u32, String)> {
    let code = h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    let msg = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some((code, msg))
}

/// One health RPC; `Ok(serving status)` or the error text.
async fn health_rpc(addr: &str, service: &str, tls: Option<&TlsOptions>) -> Result<u64, String> {
    let client = connect(addr, tls).await.map_err(|f| match f {
        Failure::Dial(e) => rpc_error(
            14,
            &format!("connection error: desc = \"transport: Error while dialing: {e}\""),
        ),
        Failure::Tls(e) => rpc_error(
            14,
            &format!(
                "connection error: desc = \"transport: authentication handshake failed: {e}\""
            ),
        ),
        Failure::H2(e) => rpc_error(14, &format!("connection error: desc = \"{e}\"")),
    })?;
    let unavailable = |e: h2::Error| rpc_error(14, &e.to_string());
    let mut send = client.send.clone().ready().await.map_err(unavailable)?;
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("{}://{addr}{HEALTH_CHECK_PATH}", client.scheme))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "meshgate-health-check")
        .body(())
        .map_err(|e| rpc_error(13, &e.to_string()))?;
    let (answer, mut body_tx) = send.send_request(req, false).map_err(unavailable)?;
    body_tx
        .send_data(health_request(service), true)
        .map_err(unavailable)?;
    let resp = answer.await.map_err(unavailable)?;
    let (parts, mut body) = resp.into_parts();
    // A trailers-only answer carries the status in the headers.
    if let Some((code, msg)) = grpc_status(&parts.headers)
        && code != 0
    {
        return Err(rpc_error(code, &msg));
    }
    if parts.status != http::StatusCode::OK {
        let s = parts.status;
        return Err(rpc_error(
            code_of_http_status(s.as_u16()),
            &format!(
                "unexpected HTTP status code received from server: {} ({})",
                s.as_u16(),
                s.canonical_reason().unwrap_or("")
            ),
        ));
    }
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(unavailable)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
        if data.len() > MAX_ANSWER {
            return Err(rpc_error(8, "the health answer is too large"));
        }
    }
    let trailers = body.trailers().await.map_err(unavailable)?;
    match trailers.as_ref().and_then(grpc_status) {
        Some((0, _)) => {}
        Some((code, msg)) => return Err(rpc_error(code, &msg)),
        None if grpc_status(&parts.headers).is_some() => {}
        None => {
            return Err(rpc_error(
                13,
                "server closed the stream without sending trailers",
            ));
        }
    }
    if data.len() < 5 {
        return Err(rpc_error(13, "the server sent no health answer"));
    }
    if data[0] != 0 {
        return Err(rpc_error(
            13,
            "grpc: compressed answers are not supported by this check",
        ));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let msg = data
        .get(5..5 + len)
        .ok_or_else(|| rpc_error(13, "the health answer is cut short"))?;
    health_status(msg).map_err(|e| rpc_error(13, &e))
}

/// A gRPC health check of `target` (`host:port[/service]`).
pub async fn grpc(target: &str, tls: Option<&TlsOptions>, timeout: Duration) -> Outcome {
    let (addr, service) = split_grpc_target(target);
    match tokio::time::timeout(timeout, health_rpc(addr, service, tls)).await {
        Err(_) => Outcome::new(status::CRITICAL, rpc_error(4, "context deadline exceeded")),
        Ok(Err(e)) => Outcome::new(status::CRITICAL, e),
        Ok(Ok(1)) => Outcome::new(status::PASSING, format!("gRPC check {target}: success")),
        Ok(Ok(s)) => Outcome::new(
            status::CRITICAL,
            format!("gRPC {target} serving status: {}", serving_status_name(s)),
        ),
    }
}

/// An HTTP/2 PING check of `addr`.
pub async fn h2ping(addr: &str, tls: Option<&TlsOptions>, timeout: Duration) -> Outcome {
    let run = async {
        let mut client = connect(addr, tls).await.map_err(|f| match f {
            Failure::Dial(e) | Failure::Tls(e) => format!("Failed to dial to {addr}: {e}"),
            Failure::H2(e) => format!("Failed to create client connection {e}"),
        })?;
        let ping = client
            .ping
            .as_mut()
            .ok_or_else(|| "HTTP2 ping failed: no PING handle".to_string())?;
        ping.ping(h2::Ping::opaque())
            .await
            .map_err(|e| format!("HTTP2 ping failed: {e}"))?;
        Ok::<_, String>(())
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Outcome::new(
            status::CRITICAL,
            "HTTP2 ping failed: context deadline exceeded",
        ),
        Ok(Err(e)) => Outcome::new(status::CRITICAL, e),
        Ok(Ok(())) => Outcome::new(status::PASSING, "HTTP2 ping was successful"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encoding() {
        assert_eq!(&health_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &health_request("db")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']
        );
    }

    #[test]
    fn answer_decoding() {
        assert_eq!(health_status(&[]).unwrap(), 0);
        assert_eq!(health_status(&[0x08, 1]).unwrap(), 1);
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(health_status(&[0x12, 1, b'x', 0x08, 2]).unwrap(), 2);
        assert!(health_status(&[0x08]).is_err());
        assert!(health_status(&[0x12, 5, b'x']).is_err());
        assert_eq!(serving_status_name(2), "NOT_SERVING");
    }

    #[test]
    fn targets_and_messages() {
        assert_eq!(split_grpc_target("127.0.0.1:5/db"), ("127.0.0.1:5", "db"));
        assert_eq!(split_grpc_target("127.0.0.1:5"), ("127.0.0.1:5", ""));
        assert_eq!(percent_decode("a%20b%zz%"), "a b%zz%");
        assert_eq!(
            rpc_error(12, "unknown service"),
            "rpc error: code = Unimplemented desc = unknown service"
        );
    }
}
