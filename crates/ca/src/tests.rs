//! Crate tests with real cryptography (no mocks): one test binary (the lib's), split by topic.

mod ca;
mod openssl;
mod rotation;
mod tls;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use crate::{CaRoot, CaSigner, DEFAULT_LEAF_TTL, DEFAULT_ROOT_TTL, Leaf, ServiceId};

pub(crate) const CLUSTER: &str = "7f42f496-fbc7-8692-05ed-334aa5340c1e";
pub(crate) const OTHER_CLUSTER: &str = "a1499528-fbf6-df7b-05e5-ae81e1873fc4";

pub(crate) fn td() -> String {
    crate::trust_domain(CLUSTER)
}

pub(crate) fn svc(name: &str) -> ServiceId {
    ServiceId::new(&td(), "default", "dc1", name)
}

pub(crate) fn ca() -> (CaRoot, CaSigner) {
    crate::new_root(CLUSTER, DEFAULT_ROOT_TTL).expect("root")
}

/// A leaf the way an agent gets one: local key + CSR, signed by the server.
pub(crate) fn leaf(root: &CaRoot, signer: &CaSigner, id: &ServiceId) -> Leaf {
    let (key_pem, csr_pem) = crate::generate_key_and_csr(id).expect("csr");
    let mut leaf = crate::sign_csr(signer, root, &csr_pem, DEFAULT_LEAF_TTL).expect("sign");
    leaf.private_key_pem = key_pem;
    leaf
}

pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}

pub(crate) fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

pub(crate) type Handshake = (
    std::io::Result<server::TlsStream<DuplexStream>>,
    std::io::Result<client::TlsStream<DuplexStream>>,
);

/// Runs a TLS handshake over an in-memory duplex pipe.
pub(crate) async fn handshake(
    server_cfg: Arc<ServerConfig>,
    client_cfg: Arc<ClientConfig>,
    server_name: &str,
) -> Handshake {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from(server_name.to_string()).expect("server name");
    let acceptor = TlsAcceptor::from(server_cfg);
    let connector = TlsConnector::from(client_cfg);
    tokio::join!(acceptor.accept(s), connector.connect(name, c))
}

/// Sends one message each way and checks it arrives.
pub(crate) async fn ping_pong(
    srv: &mut server::TlsStream<DuplexStream>,
    cli: &mut client::TlsStream<DuplexStream>,
) {
    let mut buf = [0u8; 4];
    cli.write_all(b"ping").await.expect("client write");
    cli.flush().await.expect("client flush");
    srv.read_exact(&mut buf).await.expect("server read");
    assert_eq!(&buf, b"ping");
    srv.write_all(b"pong").await.expect("server write");
    srv.flush().await.expect("server flush");
    cli.read_exact(&mut buf).await.expect("client read");
    assert_eq!(&buf, b"pong");
}
