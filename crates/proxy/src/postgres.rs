//! PostgreSQL's own way of starting TLS: the client sends an `SSLRequest`
//! (8 bytes: length 8, code 80877103) and the server answers one byte, `S`
//! (go ahead with a TLS handshake) or `N` (no TLS).
//!
//! A terminating gateway that originates TLS to PostgreSQL does the client
//! half of that exchange itself; and since the mesh leg is already mutual
//! TLS, it answers `N` to an `SSLRequest` (or `GSSENCRequest`) that arrives
//! from the mesh, so that `sslmode=prefer` clients go on in clear text inside
//! the mesh tunnel.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
