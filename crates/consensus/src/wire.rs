//! One persistent HTTP/1.1 connection per peer for AppendEntries, the RPC of
//! every write and heartbeat, driven by the replication task itself.
//!
//! Through the general HTTP client each message went from the replication
//! task to the client's connection task and the answer back, two hand-offs
//! between tasks per message on top of the network; here the task that
//! sends the request writes it to the socket and reads the answer. The
//! messages are the same requests the other RPCs send (same path, headers,
//! JSON), answered by the same server route, over plain TCP or the cluster's
//! mutual TLS.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// The largest answer accepted (an AppendEntries answer is a few hundred
/// bytes; anything this big is not one).
const MAX_BODY: usize = 1 << 20;
/// The most header lines, and the longest line, accepted in an answer.
const MAX_HEADERS: usize = 64;
const MAX_LINE: usize = 8 << 10;

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// An open connection to a peer's server port.
pub(crate) struct Wire {
    io: BufReader<Box<dyn Io>>,
}

/// What went wrong: no connection (the peer is unreachable), or the
/// exchange on an open one.
pub(crate) enum Failure {
    Connect(io::Error),
    Exchange(io::Error),
}

/// How connections to peers are made: plain TCP, or TLS with the cluster's
/// client configuration.
#[derive(Clone)]
pub(crate) struct Dialer {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Dialer {
    /// `tls`: the client side of the cluster's mutual TLS (`None`: plain).
    /// It must not offer HTTP/2 (this speaks HTTP/1.1 only).
    pub(crate) fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Dialer {
        Dialer {
            tls: tls.map(|mut cfg| {
                Arc::make_mut(&mut cfg).alpn_protocols.clear();
                tokio_rustls::TlsConnector::from(cfg)
            }),
        }
    }

    /// Connects to `addr` (`host:port`).
    pub(crate) async fn dial(&self, addr: &str) -> Result<Wire, Failure> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(Failure::Connect)?;
        tcp.set_nodelay(true).map_err(Failure::Connect)?;
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let host = host_of(addr);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| Failure::Connect(io::Error::other(format!("{addr}: {e}"))))?;
                Box::new(tls.connect(name, tcp).await.map_err(Failure::Connect)?)
            }
        };
        Ok(Wire {
            io: BufReader::new(io),
        })
    }
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Wire {
    /// Sends `POST path` with a JSON body and `headers`; returns the answer's
    /// status and body. The connection can carry the next request only if
    /// this returned `Ok` (the answer was read whole).
    pub(crate) async fn post(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        let io = self.io.get_mut();
        io.write_all(&out).await?;
        io.flush().await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> io::Result<(u16, Vec<u8>)> {
        let status_line = self.line().await?;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("not an HTTP/1.1 answer: {status_line:?}")))?;
        let mut length = None;
        for _ in 0..MAX_HEADERS {
            let line = self.line().await?;
            if line.is_empty() {
                let length =
                    length.ok_or_else(|| bad("an answer without Content-Length".into()))?;
                if length > MAX_BODY {
                    return Err(bad(format!("an answer of {length} bytes")));
                }
                let mut body = vec![0; length];
                self.io.read_exact(&mut body).await?;
                return Ok((status, body));
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(bad(format!("a malformed header line: {line:?}")));
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| bad(format!("Content-Length {value:?}")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("a chunked answer".into()));
            }
        }
        Err(bad("too many header lines".into()))
    }

    /// One line of the answer's head, without its CRLF.
    async fn line(&mut self) -> io::Result<String> {
        let mut buf = Vec::new();
        let n = (&mut self.io)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection",
            ));
        }
        if buf.last() != Some(&b'\n') {
            return Err(bad("a header line too long".into()));
        }
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        String::from_utf8(buf).map_err(|_| bad("a header line that is not UTF-8".into()))
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A one-connection server that answers each request it reads with the
    /// next canned answer.
    async fn serve(answers: Vec<&'static [u8]>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.expect("accept");
            let mut s = BufReader::new(s);
            for answer in answers {
                // Read the head and the body (the tests' bodies are "{}").
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if s.read_line(&mut line).await.expect("read") == 0 {
                        return;
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                assert!(head.starts_with("POST /p HTTP/1.1\r\n"), "{head}");
                assert!(head.contains("x-k: v\r\n"), "{head}");
                let mut body = [0u8; 2];
                s.read_exact(&mut body).await.expect("body");
                s.get_mut().write_all(answer).await.expect("write");
            }
        });
        addr
    }

    #[tokio::test]
    async fn answers_in_turn_on_one_connection() {
        let addr = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntrue",
            b"HTTP/1.1 409 Conflict\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nwrong",
        ])
        .await;
        let mut w = match Dialer::new(None).dial(&addr).await {
            Ok(w) => w,
            Err(_) => panic!("dial"),
        };
        let h = [("x-k", "v")];
        assert_eq!(
            w.post(&addr, "/p", &h, b"{}").await.expect("first"),
            (200, b"true".to_vec())
        );
        assert_eq!(
            w.post(&addr, "/p", &h, b"{}").await.expect("second"),
            (409, b"wrong".to_vec())
        );
        // The server is gone after two answers.
        let e = w.post(&addr, "/p", &h, b"{}").await.expect_err("closed");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn malformed_answers_are_errors() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\ntrue\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        ] {
            let addr = serve(vec![answer]).await;
            let mut w = match Dialer::new(None).dial(&addr).await {
                Ok(w) => w,
                Err(_) => panic!("dial"),
            };
            let e = w
                .post(&addr, "/p", &[("x-k", "v")], b"{}")
                .await
                .expect_err("refused");
            assert_eq!(
                e.kind(),
                io::ErrorKind::InvalidData,
                "{:?}: {e}",
                String::from_utf8_lossy(answer)
            );
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_failure() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        drop(l);
        assert!(matches!(
            Dialer::new(None).dial(&addr).await,
            Err(Failure::Connect(_))
        ));
    }

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("127.0.0.2:8300"), "127.0.0.2");
        assert_eq!(host_of("[::1]:8300"), "::1");
        assert_eq!(host_of("server-1.example:8300"), "server-1.example");
    }
}
