//! PostgreSQL's own way of starting TLS: the client sends an `SSLRequest`
//! (8 bytes: length 8, code 80877103) and the server answers one byte, `S`
//! (go ahead with a TLS handshake) or `N` (no TLS).
//!
//! A terminating gateway that originates TLS to PostgreSQL does the client
//! half of that exchange itself; and since the mesh leg is already mutual
//! TLS, it answers `N` to an `SSLRequest` (or `GSSENCRequest`) that arrives
//! from the mesh, so that `sslmode=prefer` clients go on in clear text inside
//! the mesh tunnel.

use std::sync::atomic::Ordering::Relaxed;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::metrics::Counters;

/// The SASL mechanism that binds authentication to the TLS channel: it
/// cannot work when TLS ends at the gateway.
const SCRAM_PLUS: &[u8] = b"SCRAM-SHA-256-PLUS";

/// `SSLRequest` code.
pub const SSL_REQUEST: u32 = 80_877_103;
/// `GSSENCRequest` code.
pub const GSSENC_REQUEST: u32 = 80_877_104;

/// The `SSLRequest` message.
pub fn ssl_request() -> [u8; 8] {
    let mut m = [0u8; 8];
    m[..4].copy_from_slice(&8u32.to_be_bytes());
    m[4..].copy_from_slice(&SSL_REQUEST.to_be_bytes());
    m
}

/// Reads the client's first message header. Encryption requests are
/// answered `N` (at most two: a client may ask for GSS then SSL); the
/// first 8 bytes of the real startup message are returned, to be sent on.
pub async fn decline_client_encryption<S>(client: &mut S) -> std::io::Result<[u8; 8]>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for _ in 0..3 {
        let mut head = [0u8; 8];
        client.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if len == 8 && (code == SSL_REQUEST || code == GSSENC_REQUEST) {
            client.write_all(b"N").await?;
            client.flush().await?;
            continue;
        }
        return Ok(head);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the PostgreSQL client keeps asking for encryption",
    ))
}

/// Asks the server to start TLS; `Ok` when it answered `S`.
pub async fn request_server_tls<S>(server: &mut S) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    server
        .write_all(&ssl_request())
        .await
        .map_err(|e| format!("sending SSLRequest: {e}"))?;
    let mut answer = [0u8; 1];
    server
        .read_exact(&mut answer)
        .await
        .map_err(|e| format!("reading the answer to SSLRequest: {e}"))?;
    match answer[0] {
        b'S' => Ok(()),
        b'N' => Err("the PostgreSQL server refused TLS (answered N to SSLRequest); turn on ssl in postgresql.conf or remove CAFile".into()),
        b'E' => Err("the PostgreSQL server answered SSLRequest with an error (not a PostgreSQL 7.2+ server?)".into()),
        other => Err(format!(
            "unexpected answer {other:#04x} to SSLRequest: is this a PostgreSQL server?"
        )),
    }
}

/// Removes `SCRAM-SHA-256-PLUS` from an `AuthenticationSASL` body (after
/// its 4-byte code): the client's TLS session is not the server's, so
/// channel binding cannot succeed, and libpq refuses a server that offers it
/// over a connection without TLS.
fn without_channel_binding(body: &[u8]) -> Option<Vec<u8>> {
    let names: Vec<&[u8]> = body[4..]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .collect();
    if !names.contains(&SCRAM_PLUS) {
        return None;
    }
    let kept: Vec<&[u8]> = names.into_iter().filter(|n| *n != SCRAM_PLUS).collect();
    if kept.is_empty() {
        return None;
    }
    let mut out = body[..4].to_vec();
    for n in kept {
        out.extend_from_slice(n);
        out.push(0);
    }
    out.push(0);
    Some(out)
}

/// Copies the server's messages to the client until authentication ends
/// (`AuthenticationOk` or an error), adjusting the SASL mechanism list on
/// the way. Returns the bytes written.
async fn authentication<R, W>(server: &mut R, client: &mut W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut written = 0u64;
    for _ in 0..64 {
        let mut head = [0u8; 5];
        server.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if !(4..=1 << 20).contains(&len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("PostgreSQL message of {len} bytes during authentication"),
            ));
        }
        let mut body = vec![0u8; len - 4];
        server.read_exact(&mut body).await?;
        let code = (head[0] == b'R' && body.len() >= 4)
            .then(|| u32::from_be_bytes([body[0], body[1], body[2], body[3]]));
        if code == Some(10)
            && let Some(b) = without_channel_binding(&body)
        {
            body = b;
        }
        let mut msg = Vec::with_capacity(body.len() + 5);
        msg.push(head[0]);
        msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        msg.extend_from_slice(&body);
        client.write_all(&msg).await?;
        written += msg.len() as u64;
        if code == Some(0) || head[0] == b'E' {
            break;
        }
    }
    client.flush().await?;
    Ok(written)
}

/// Relays a PostgreSQL session whose server side is TLS from the gateway:
/// the client's bytes go through untouched; the server's authentication
/// messages are checked first (see [`authentication`]), then everything is
/// copied.
pub async fn relay<D, U>(
    down: D,
    up: U,
    counters: &Counters,
) -> (crate::relay::Carried, std::io::Result<()>)
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut dr, mut dw) = tokio::io::split(down);
    let (mut ur, mut uw) = tokio::io::split(up);
    // Counted as they go: a direction that ends in an error still reports
    // what it carried.
    let (mut up_bytes, mut down_bytes) = (0u64, 0u64);
    let to_server = async {
        let r = copy_counted(&mut dr, &mut uw, &mut up_bytes).await;
        let _ = uw.shutdown().await;
        r
    };
    let to_client = async {
        let rest = match authentication(&mut ur, &mut dw).await {
            Ok(n) => {
                down_bytes = n;
                copy_counted(&mut ur, &mut dw, &mut down_bytes).await
            }
            Err(e) => Err(e),
        };
        let _ = dw.shutdown().await;
        rest
    };
    let (sent, received) = tokio::join!(to_server, to_client);
    let carried = crate::relay::Carried {
        up: up_bytes,
        down: down_bytes,
    };
    counters.bytes_sent.fetch_add(carried.up, Relaxed);
    counters.bytes_received.fetch_add(carried.down, Relaxed);
    (carried, sent.and(received))
}

/// Copies until the reader's end, adding what it wrote to `n`.
async fn copy_counted<R, W>(r: &mut R, w: &mut W, n: &mut u64) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let k = r.read(&mut buf).await?;
        if k == 0 {
            return Ok(());
        }
        w.write_all(&buf[..k]).await?;
        w.flush().await?;
        *n += k as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn client_encryption_requests_are_declined() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let client = tokio::spawn(async move {
            a.write_all(&ssl_request()).await.unwrap();
            let mut n = [0u8; 1];
            a.read_exact(&mut n).await.unwrap();
            // A startup message header (length 16, protocol 3.0).
            a.write_all(&[0, 0, 0, 16, 0, 3, 0, 0]).await.unwrap();
            n[0]
        });
        let head = decline_client_encryption(&mut b).await.unwrap();
        assert_eq!(head, [0, 0, 0, 16, 0, 3, 0, 0]);
        assert_eq!(client.await.unwrap(), b'N');
    }

    #[test]
    fn channel_binding_is_not_offered() {
        let mut body = 10u32.to_be_bytes().to_vec();
        body.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let out = without_channel_binding(&body).unwrap();
        let mut want = 10u32.to_be_bytes().to_vec();
        want.extend_from_slice(b"SCRAM-SHA-256\0\0");
        assert_eq!(out, want);
        let mut plain = 10u32.to_be_bytes().to_vec();
        plain.extend_from_slice(b"SCRAM-SHA-256\0\0");
        assert_eq!(without_channel_binding(&plain), None);
    }

    #[tokio::test]
    async fn server_answers() {
        for (answer, ok) in [(b'S', true), (b'N', false), (b'E', false)] {
            let (mut a, mut b) = tokio::io::duplex(64);
            let server = tokio::spawn(async move {
                let mut req = [0u8; 8];
                b.read_exact(&mut req).await.unwrap();
                b.write_all(&[answer]).await.unwrap();
                req
            });
            assert_eq!(request_server_tls(&mut a).await.is_ok(), ok);
            assert_eq!(server.await.unwrap(), ssl_request());
        }
    }
}
