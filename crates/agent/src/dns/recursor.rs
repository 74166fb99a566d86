//! Talking to the upstream resolvers (`recursors`): forwarding questions for
//! names outside our domains, and resolving host names our answers point to.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use rand::seq::SliceRandom;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

use super::resolve::{Answer, Section};
use super::{DnsSettings, Transport};

/// The recursors in the order to try them (`recursor_strategy`).
fn order(settings: &DnsSettings) -> Vec<SocketAddr> {
    let mut list = settings.recursors.clone();
    if settings.recursor_random {
        list.shuffle(&mut rand::rng());
    }
    list
}

/// Forwards a request as it came (same ID, same transport) and returns the
/// first answer that is NOERROR or NXDOMAIN (or truncated: the client asks
/// again over TCP), trying the recursors in turn.
pub(crate) async fn forward(
    settings: &DnsSettings,
    packet: &[u8],
    transport: Transport,
) -> Option<Vec<u8>> {
    for addr in order(settings) {
        let r = match transport {
            Transport::Udp => exchange_udp(addr, packet, settings.recursor_timeout).await,
            Transport::Tcp => exchange_tcp(addr, packet, settings.recursor_timeout).await,
        };
        match r {
            Ok(bytes) => match Message::from_vec(&bytes) {
                Ok(m)
                    if m.truncated()
                        || matches!(
                            m.response_code(),
                            ResponseCode::NoError | ResponseCode::NXDomain
                        ) =>
                {
                    return Some(bytes);
                }
                Ok(m) => debug!("DNS: recursor {addr} answered {}", m.response_code()),
                Err(e) => debug!("DNS: recursor {addr} sent garbage: {e}"),
            },
            Err(e) => debug!("DNS: recursor {addr} failed: {e}"),
        }
    }
    None
}

/// Resolves the external host names an answer points to (A records, as
/// Consul asks) and adds what the recursors say.
pub(crate) async fn complete(settings: &DnsSettings, mut answer: Answer) -> Answer {
    let pending = std::mem::take(&mut answer.external);
    for ext in pending {
        let mut q = Message::new();
        q.set_id(rand::random())
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true);
        q.add_query(Query::query(ext.target.clone(), RecordType::A));
        let Ok(packet) = q.to_vec() else {
            continue;
        };
        let Some(bytes) = forward(settings, &packet, Transport::Udp).await else {
            continue;
        };
        let Ok(m) = Message::from_vec(&bytes) else {
            continue;
        };
        let mut recs: Vec<Record> = m
            .answers()
            .iter()
            .filter(|r| {
                matches!(
                    r.record_type(),
                    RecordType::A | RecordType::AAAA | RecordType::CNAME
                )
            })
            .cloned()
            .map(|mut r| {
                r.set_ttl(ext.ttl);
                r
            })
            .collect();
        if let Some(l) = ext.limit {
            recs.truncate(l);
        }
        match ext.section {
            Section::Answer => answer.answers.extend(recs),
            Section::Additional => answer.additional.extend(recs),
        }
    }
    answer
}

async fn exchange_udp(
    addr: SocketAddr,
    packet: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(addr).await?;
    sock.send(packet).await?;
    let id = &packet[..2.min(packet.len())];
    let mut buf = vec![0u8; 65535];
    let recv = async {
        loop {
            let n = sock.recv(&mut buf).await?;
            // Ignore stray datagrams that answer something else.
            if n >= 12 && buf[..2] == *id {
                return Ok::<_, std::io::Error>(buf[..n].to_vec());
            }
        }
    };
    tokio::time::timeout(timeout, recv)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))?
}

async fn exchange_tcp(
    addr: SocketAddr,
    packet: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let io = async {
        let mut s = TcpStream::connect(addr).await?;
        let mut out = Vec::with_capacity(packet.len() + 2);
        out.extend_from_slice(&(packet.len() as u16).to_be_bytes());
        out.extend_from_slice(packet);
        s.write_all(&out).await?;
        let len = s.read_u16().await? as usize;
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))?
}
