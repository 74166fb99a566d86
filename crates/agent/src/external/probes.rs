//! The probes only the external-service monitor runs: a TCP connect followed by
//! a TLS handshake, and a PostgreSQL startup handshake (optionally after an
//! `SSLRequest`). TCP and HTTP probes are shared with agent checks
//! ([`crate::checks`]).

use std::sync::Arc;
use std::time::Duration;

use meshgate_types::catalog::status;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::checks::{Outcome, dial_error};

/// Where the system's CA bundle lives on Debian; used when a TLS probe names no
/// `TLSCAFile`.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How a probe verifies the server it talks TLS to.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Name sent as SNI and checked against the certificate; empty: the host
    /// part of the address.
    pub server_name: String,
    /// Accept any certificate (the handshake still has to complete).
    pub skip_verify: bool,
    /// PEM file of the CA(s) to trust; empty: the system bundle.
    pub ca_file: String,
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(addr: &str) -> &str {
    let host = match addr.rfind(':') {
        Some(i) if !addr[..i].contains(':') || addr.starts_with('[') => &addr[..i],
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Accepts any server certificate but still checks the handshake signatures,
/// for `TLSSkipVerify`.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls client configuration and server name of a probe.
pub(crate) fn client_config(
    addr: &str,
    opts: &TlsOptions,
) -> Result<(Arc<ClientConfig>, ServerName<'static>), String> {
    let name = if opts.server_name.is_empty() {
        host_of(addr).to_string()
    } else {
        opts.server_name.clone()
    };
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| format!("invalid server name {name:?}: {e}"))?;
    let provider = meshgate_ca::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?;
    let cfg = if opts.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let path = if opts.ca_file.is_empty() {
            SYSTEM_CA_BUNDLE
        } else {
            opts.ca_file.as_str()
        };
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the CA file {path}: {e}"))?;
        let roots =
            meshgate_ca::tls::root_store(&[pem]).map_err(|e| format!("the CA file {path}: {e}"))?;
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok((Arc::new(cfg), server_name))
}

/// A TLS check: TCP connect, then a complete TLS handshake verified against
/// the CA file (or the system bundle), unless `skip_verify`.
pub async fn tls(addr: &str, opts: &TlsOptions, timeout: Duration) -> Outcome {
    let (cfg, name) = match client_config(addr, opts) {
        Ok(c) => c,
        Err(e) => return Outcome::new(status::CRITICAL, e),
    };
    let run = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| dial_error(addr, &e))?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        let (_, conn) = tls.get_ref();
        let version = conn
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("TLS")
            .replace('_', " ")
            .replace("TLSv1 ", "TLSv1.");
        Ok::<_, String>(format!(
            "TCP connect {addr}: Success; TLS handshake: {version}"
        ))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(out)) => Outcome::new(status::PASSING, out),
        Ok(Err(e)) => Outcome::new(status::CRITICAL, e),
        Err(_) => Outcome::new(status::CRITICAL, format!("{addr}: i/o timeout")),
    }
}

/// What a PostgreSQL check sends and expects.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// Ask for TLS with an `SSLRequest` first; a server that declines is critical.
    pub use_tls: bool,
    pub tls: TlsOptions,
    /// Database named in the startup message (empty: `postgres`).
    pub database: String,
    /// User named in the startup message (empty: `postgres`).
    pub user: String,
}

/// The protocol 3.0 startup message.
fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for (k, v) in [
        ("user", user),
        ("database", database),
        ("application_name", "meshgate-health-check"),
    ] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// The authentication method an `R` message asks for.
fn auth_method(code: u32) -> &'static str {
    match code {
        2 => "Kerberos V5",
        3 => "cleartext password",
        5 => "MD5 password",
        7 => "GSSAPI",
        9 => "SSPI",
        10 => "SASL (SCRAM)",
        _ => "an unknown",
    }
}

/// The fields of an `ErrorResponse` body: (SQLSTATE, message).
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        let Some((&kind, text)) = field.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(text).into_owned();
        match kind {
            b'C' => code = text,
            b'M' => message = text,
            _ => {}
        }
    }
    (code, message)
}

/// Largest server message the probe reads (an error message is far smaller).
const MAX_MESSAGE: usize = 64 * 1024;

/// Sends the startup message and judges the server's first answer.
async fn startup<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    addr: &str,
    opts: &PostgresOptions,
) -> Result<(&'static str, String), String> {
    let user = if opts.user.is_empty() {
        "postgres"
    } else {
        &opts.user
    };
    let database = if opts.database.is_empty() {
        "postgres"
    } else {
        &opts.database
    };
    s.write_all(&startup_message(user, database))
        .await
        .map_err(|e| format!("sending the startup message to {addr}: {e}"))?;
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await.map_err(|e| {
            format!("PostgreSQL at {addr} closed the connection without answering: {e}")
        })?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if !(4..=MAX_MESSAGE).contains(&len) {
            return Err(format!(
                "{addr} does not speak the PostgreSQL protocol (message length {len})"
            ));
        }
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body)
            .await
            .map_err(|e| format!("reading the answer of {addr}: {e}"))?;
        match head[0] {
            b'R' if body.len() >= 4 => {
                let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let text = if code == 0 {
                    format!("PostgreSQL at {addr} accepted user {user:?} on database {database:?}")
                } else {
                    format!(
                        "PostgreSQL at {addr} is up: it asked user {user:?} for {} authentication",
                        auth_method(code)
                    )
                };
                return Ok((status::PASSING, text));
            }
            b'E' => {
                let (code, message) = error_fields(&body);
                let st = match code.as_str() {
                    // cannot_connect_now: starting up, shutting down, in recovery
                    // without hot standby: nothing can be served.
                    "57P03" => status::CRITICAL,
                    _ => status::WARNING,
                };
                let what = if code.starts_with("28") {
                    "refused authentication"
                } else {
                    "answered with an error"
                };
                return Ok((
                    st,
                    format!("PostgreSQL at {addr} {what}: {message} (SQLSTATE {code})"),
                ));
            }
            // NoticeResponse before the answer: read on.
            b'N' => continue,
            other => {
                return Err(format!(
                    "{addr} does not speak the PostgreSQL protocol (message type {:?})",
                    other as char
                ));
            }
        }
    }
}

/// A PostgreSQL check: a real startup handshake (after an `SSLRequest` when
/// `use_tls`). Passing when the server answers the startup message with an
/// authentication request or success, warning when it refuses (authentication
/// failure, unknown database, too many connections), critical when it does not
/// answer, refuses TLS that was asked for, or is starting up or shutting down.
pub async fn postgres(addr: &str, opts: &PostgresOptions, timeout: Duration) -> Outcome {
    let run = async {
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| dial_error(addr, &e))?;
        let _ = tcp.set_nodelay(true);
        if opts.use_tls {
            let (cfg, name) = client_config(addr, &opts.tls)?;
            tcp.write_all(&ssl_request())
                .await
                .map_err(|e| format!("sending SSLRequest to {addr}: {e}"))?;
            let mut answer = [0u8; 1];
            tcp.read_exact(&mut answer).await.map_err(|e| {
                format!("PostgreSQL at {addr} closed the connection after SSLRequest: {e}")
            })?;
            match answer[0] {
                b'S' => {}
                b'N' => {
                    return Err(format!(
                        "PostgreSQL at {addr} refused TLS (answered N to SSLRequest)"
                    ));
                }
                b => {
                    return Err(format!(
                        "{addr} does not speak the PostgreSQL protocol (answered {:?} to SSLRequest)",
                        b as char
                    ));
                }
            }
            let mut tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with PostgreSQL at {addr}: {e}"))?;
            let r = startup(&mut tls, addr, opts).await;
            let _ = tls.write_all(&TERMINATE).await;
            let _ = tls.shutdown().await;
            r.map(|(st, text)| (st, format!("{text} (over TLS)")))
        } else {
            let r = startup(&mut tcp, addr, opts).await;
            let _ = tcp.write_all(&TERMINATE).await;
            r
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok((st, text))) => Outcome::new(st, text),
        Ok(Err(e)) => Outcome::new(status::CRITICAL, e),
        Err(_) => Outcome::new(
            status::CRITICAL,
            format!("PostgreSQL at {addr} did not answer within {timeout:?}"),
        ),
    }
}

/// The `Terminate` message.
const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

/// The `SSLRequest` message: length 8, code 80877103.
fn ssl_request() -> [u8; 8] {
    let mut m = [0u8; 8];
    m[..4].copy_from_slice(&8u32.to_be_bytes());
    m[4..].copy_from_slice(&80_877_103u32.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_of("db.example.com:5432"), "db.example.com");
        assert_eq!(host_of("127.0.0.5:5432"), "127.0.0.5");
        assert_eq!(host_of("[::1]:5432"), "::1");
    }

    #[test]
    fn startup_message_layout() {
        let m = startup_message("u", "d");
        assert_eq!(
            u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(&m[4..8], &196_608u32.to_be_bytes());
        assert!(m.ends_with(b"meshgate-health-check\0\0"));
    }

    #[test]
    fn error_response_fields() {
        let body = b"SFATAL\0C28000\0Mno pg_hba.conf entry\0\0";
        assert_eq!(
            error_fields(body),
            ("28000".to_string(), "no pg_hba.conf entry".to_string())
        );
    }

    #[tokio::test]
    async fn not_postgres_is_critical() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let o = postgres(&addr, &PostgresOptions::default(), Duration::from_secs(2)).await;
        assert_eq!(o.status, status::CRITICAL, "{o:?}");
        assert!(
            o.output.contains("does not speak the PostgreSQL protocol"),
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn refused_is_critical() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let o = postgres(&addr, &PostgresOptions::default(), Duration::from_secs(2)).await;
        assert_eq!(o.status, status::CRITICAL);
        assert!(o.output.contains("connection refused"), "{o:?}");
        let o = tls(&addr, &TlsOptions::default(), Duration::from_secs(2)).await;
        assert_eq!(o.status, status::CRITICAL);
    }
}
