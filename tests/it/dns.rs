//! The DNS interface of a real `meshgate agent -dev`: questions built with
//! hickory-proto, sent over real UDP and TCP sockets to 127.0.0.1, plus `dig`
//! as an independent client.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use meshgate_test_support::{Agent, free_port_tcp_udp, patience};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::dev_builder;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn question(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(rand_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn rand_id() -> u16 {
    (std::process::id() as u16)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u16)
}

/// One question over UDP; the answer and its size on the wire.
async fn udp(
    addr: SocketAddr,
    name: &str,
    qtype: RecordType,
    edns: Option<u16>,
) -> (Message, usize) {
    udp_from("127.0.0.1", addr, name, qtype, edns).await
}

/// [`udp`] from a socket on the loopback address `local`.
async fn udp_from(
    local: &str,
    addr: SocketAddr,
    name: &str,
    qtype: RecordType,
    edns: Option<u16>,
) -> (Message, usize) {
    let sock = UdpSocket::bind((local, 0)).await.unwrap();
    let q = question(name, qtype, edns);
    sock.send_to(&q, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(patience(IO_TIMEOUT), sock.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no UDP answer for {name}"))
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.id(), u16::from_be_bytes([q[0], q[1]]));
    (m, n)
}

/// One question over TCP.
async fn tcp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let io = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let q = question(name, qtype, None);
        let mut out = (q.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&q);
        s.write_all(&out).await.unwrap();
        let len = s.read_u16().await.unwrap() as usize;
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).await.unwrap();
        Message::from_vec(&buf).unwrap()
    };
    tokio::time::timeout(patience(IO_TIMEOUT), io)
        .await
        .unwrap_or_else(|_| panic!("no TCP answer for {name}"))
}

fn ips(m: &Message) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn srvs(m: &Message) -> Vec<(u16, String)> {
    let mut v: Vec<(u16, String)> = m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(s) => Some((s.port(), s.target().to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn soa(m: &Message) -> Option<&Record> {
    m.name_servers()
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
}

async fn start(config: Option<&str>) -> (Agent, SocketAddr) {
    let mut b = dev_builder().dns();
    if let Some(c) = config {
        b = b.config_file("dns.hcl", c);
    }
    let a = b.start().await;
    let addr = a.dns_addr.expect("DNS address");
    (a, addr)
}

async fn register(a: &Agent, body: Value) {
    let (st, text) = a.put("/v1/catalog/register", body.to_string()).await;
    assert_eq!(st, 200, "{text}");
}

/// A node with one instance and its check.
async fn instance(a: &Agent, node: &str, addr: &str, id: &str, service: Value, status: &str) {
    let mut service = service;
    service["ID"] = json!(id);
    register(
        a,
        json!({"Node": node, "Address": addr, "NodeMeta": {"rack": "r1"}, "Service": service,
               "Check": {"CheckID": format!("{id}-check"), "Name": "check", "ServiceID": id, "Status": status}}),
    )
    .await;
}

#[tokio::test]
async fn service_node_and_reverse_lookups_over_udp_and_tcp() {
    let (a, dns) = start(None).await;
    a.wait_log("DNS on 127.0.0.1:", Duration::from_secs(10))
        .await;
    instance(
        &a,
        "n1",
        "10.0.0.1",
        "db1",
        json!({"Service": "db", "Tags": ["primary"], "Port": 5432}),
        "passing",
    )
    .await;
    instance(
        &a,
        "n2",
        "10.0.0.2",
        "db2",
        json!({"Service": "db", "Tags": ["replica"], "Port": 5433}),
        "warning",
    )
    .await;
    instance(
        &a,
        "n3",
        "10.0.0.3",
        "db3",
        json!({"Service": "db", "Tags": ["replica"], "Port": 5434}),
        "critical",
    )
    .await;

    // A: passing and warning instances, not the critical one; any case.
    let (m, _) = udp(dns, "DB.Service.Consul.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.authoritative());
    assert_eq!(ips(&m), vec![ip("10.0.0.1"), ip("10.0.0.2")]);
    let m = tcp(dns, "db.service.dc1.consul", RecordType::A).await;
    assert_eq!(ips(&m), vec![ip("10.0.0.1"), ip("10.0.0.2")]);

    // SRV: port and node target, the target's address as additional record.
    let m = tcp(dns, "db.service.consul", RecordType::SRV).await;
    assert_eq!(
        srvs(&m),
        vec![
            (5432, "n1.node.dc1.consul.".into()),
            (5433, "n2.node.dc1.consul.".into())
        ]
    );
    let glue: Vec<(String, String)> = m
        .additionals()
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| (r.name().to_ascii(), r.data().to_string()))
        .collect();
    assert!(
        glue.contains(&("n1.node.dc1.consul.".into(), "10.0.0.1".into())),
        "{glue:?}"
    );

    // Tags, and the RFC 2782 form (with and without `service`).
    let (m, _) = udp(dns, "replica.db.service.consul", RecordType::A, None).await;
    assert_eq!(ips(&m), vec![ip("10.0.0.2")]);
    let (m, _) = udp(dns, "_db._primary.service.consul", RecordType::SRV, None).await;
    assert_eq!(srvs(&m), vec![(5432, "n1.node.dc1.consul.".into())]);
    let (m, _) = udp(dns, "_db._tcp.consul", RecordType::SRV, None).await;
    assert_eq!(srvs(&m).len(), 2);

    // Nodes: the agent's own node and a registered one; metadata as TXT.
    let (m, _) = udp(dns, "test-node.node.consul", RecordType::A, None).await;
    assert_eq!(ips(&m), vec![ip("127.0.0.1")]);
    let (m, _) = udp(dns, "n1.node.dc1.consul", RecordType::TXT, None).await;
    assert_eq!(m.answers().len(), 1);
    assert_eq!(m.answers()[0].data().to_string(), "rack=r1");

    // Reverse lookups: a node address, then a service address.
    let (m, _) = udp(dns, "2.0.0.10.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(m.answers()[0].data().to_string(), "n2.node.dc1.consul.");
    register(&a, json!({"Node": "n4", "Address": "10.0.0.4", "Service": {"Service": "cache", "Address": "10.7.0.1", "Port": 1}})).await;
    let (m, _) = udp(dns, "1.0.7.10.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(
        m.answers()[0].data().to_string(),
        "cache.service.dc1.consul."
    );

    // Unknown names in our domain: NXDOMAIN with the SOA, over both transports.
    for name in [
        "nope.service.consul.",
        "db.bogus.consul.",
        "db.service.dc9.consul.",
        "nobody.node.consul.",
    ] {
        let (m, _) = udp(dns, name, RecordType::A, None).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain, "{name}");
        let s = soa(&m).unwrap_or_else(|| panic!("{name}: no SOA: {m}"));
        assert_eq!(s.name().to_ascii(), "consul.");
        let m = tcp(dns, name, RecordType::A).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain, "{name}");
    }
    // No recursor: other names are refused, not answered.
    let (m, _) = udp(dns, "example.org.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::Refused);
}

#[tokio::test]
async fn prepared_queries_by_name_id_and_template() {
    let (a, dns) = start(None).await;
    instance(
        &a,
        "n1",
        "10.0.0.1",
        "db1",
        json!({"Service": "db", "Tags": ["primary"], "Port": 5432}),
        "passing",
    )
    .await;
    instance(
        &a,
        "n2",
        "10.0.0.2",
        "db2",
        json!({"Service": "db", "Tags": ["replica"], "Port": 5433}),
        "passing",
    )
    .await;
    instance(
        &a,
        "n3",
        "10.0.0.3",
        "mysql1",
        json!({"Service": "mysql-customer", "Tags": ["primary"], "Port": 3306}),
        "passing",
    )
    .await;
    let create = |body: Value| {
        let a = &a;
        async move {
            let r = a
                .http
                .post(a.url("/v1/query"))
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["ID"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let id = create(json!({"Name": "files-db", "Service": {"Service": "db", "Tags": ["primary"]}, "DNS": {"TTL": "17s"}})).await;
    create(json!({"Name": "geo-db-", "Template": {"Type": "name_prefix_match", "Regexp": "^geo-db-(.*?)-([^\\-]+?)$"},
                  "Service": {"Service": "mysql-${match(1)}", "Tags": ["${match(2)}"]}})).await;

    let (m, _) = udp(dns, "files-db.query.consul", RecordType::A, None).await;
    assert_eq!(ips(&m), vec![ip("10.0.0.1")]);
    assert_eq!(m.answers()[0].ttl(), 17);
    let m = tcp(dns, &format!("{id}.query.consul"), RecordType::SRV).await;
    assert_eq!(srvs(&m), vec![(5432, "n1.node.dc1.consul.".into())]);
    let (m, _) = udp(
        dns,
        "_files-db._tcp.query.dc1.consul",
        RecordType::SRV,
        None,
    )
    .await;
    assert_eq!(srvs(&m).len(), 1);
    let (m, _) = udp(
        dns,
        "geo-db-customer-primary.query.consul",
        RecordType::A,
        None,
    )
    .await;
    assert_eq!(ips(&m), vec![ip("10.0.0.3")]);
    let (m, _) = udp(dns, "no-such-query.query.consul", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert!(soa(&m).is_some());

    // `Near = "_ip"`: the instance on the node whose address is the DNS
    // client's answers first (the others stay shuffled after it).
    for (node, addr) in [
        ("web-a", "127.0.0.2"),
        ("web-b", "127.0.0.3"),
        ("web-c", "10.0.0.9"),
    ] {
        let id = format!("{node}-1");
        instance(
            &a,
            node,
            addr,
            &id,
            json!({"Service": "near-web", "Port": 80}),
            "passing",
        )
        .await;
    }
    create(json!({"Name": "near-web", "Service": {"Service": "near-web", "Near": "_ip"}})).await;
    for client in [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.2",
        "127.0.0.3",
    ] {
        let (m, _) = udp_from(client, dns, "near-web.query.consul", RecordType::A, None).await;
        // In the answer's order (`ips` sorts).
        let got: Vec<IpAddr> = m
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), 3, "{m}");
        assert_eq!(got[0], ip(client), "from {client}: {got:?}");
    }
}

#[tokio::test]
async fn truncation_over_udp_and_the_whole_answer_over_tcp() {
    let (a, dns) = start(Some("dns_config { enable_truncate = true }")).await;
    for n in 0..30 {
        instance(
            &a,
            &format!("web-node-{n}"),
            &format!("10.1.0.{}", n + 1),
            &format!("web{n}"),
            json!({"Service": "web", "Port": 8080}),
            "passing",
        )
        .await;
    }
    // Plain UDP: at most udp_answer_limit (3) answers, TC set.
    let (m, len) = udp(dns, "web.service.consul", RecordType::A, None).await;
    assert_eq!(m.answers().len(), 3);
    assert!(m.truncated());
    assert!(len <= 512);
    assert!(m.extensions().is_none());
    // The same question over TCP: all 30, no TC.
    let m = tcp(dns, "web.service.consul", RecordType::A).await;
    assert_eq!(m.answers().len(), 30);
    assert!(!m.truncated());
    let m = tcp(dns, "web.service.consul", RecordType::SRV).await;
    assert_eq!(m.answers().len(), 30);
    // EDNS with room for everything: all 30 over UDP, OPT echoed.
    let (m, _) = udp(dns, "web.service.consul", RecordType::A, Some(4096)).await;
    assert_eq!(m.answers().len(), 30);
    assert!(!m.truncated());
    assert_eq!(m.extensions().as_ref().map(|e| e.max_payload()), Some(4096));
    // EDNS with a small buffer: cut to fit it, TC set.
    let (m, len) = udp(dns, "web.service.consul", RecordType::SRV, Some(600)).await;
    assert!(len <= 600, "{len}");
    assert!(m.truncated());
    assert!(!m.answers().is_empty() && m.answers().len() < 30);
}

#[tokio::test]
async fn ttls_soa_and_domains_from_config() {
    let (a, dns) = start(Some(
        r#"
domain     = "mesh"
alt_domain = "svc.example.internal"
dns_config {
  node_ttl = "10s"
  service_ttl {
    "*"   = "5s"
    "db*" = "15s"
  }
  soa {
    min_ttl = 3
    refresh = 900
  }
}
"#,
    ))
    .await;
    instance(
        &a,
        "n1",
        "10.0.0.1",
        "db1",
        json!({"Service": "db-main", "Port": 1}),
        "passing",
    )
    .await;
    instance(
        &a,
        "n1",
        "10.0.0.1",
        "web1",
        json!({"Service": "web", "Port": 2}),
        "passing",
    )
    .await;
    let (m, _) = udp(dns, "db-main.service.mesh", RecordType::A, None).await;
    assert_eq!(m.answers()[0].ttl(), 15);
    let (m, _) = udp(dns, "web.service.mesh", RecordType::A, None).await;
    assert_eq!(m.answers()[0].ttl(), 5);
    let (m, _) = udp(dns, "n1.node.mesh", RecordType::A, None).await;
    assert_eq!(m.answers()[0].ttl(), 10);
    // The alt domain answers too, with its own names.
    let (m, _) = udp(
        dns,
        "web.service.svc.example.internal",
        RecordType::SRV,
        None,
    )
    .await;
    assert_eq!(
        srvs(&m),
        vec![(2, "n1.node.dc1.svc.example.internal.".into())]
    );
    // consul. is no longer ours.
    let (m, _) = udp(dns, "web.service.consul", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::Refused);
    // The SOA carries the configured values.
    let (m, _) = udp(dns, "nope.service.mesh", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    let s = soa(&m).unwrap();
    assert_eq!(s.ttl(), 3);
    let RData::SOA(rd) = s.data() else { panic!() };
    assert_eq!((rd.refresh(), rd.minimum()), (900, 3));
    assert_eq!(rd.rname().to_ascii(), "hostmaster.mesh.");
    let (_, me) = a.get_json("/v1/agent/self").await;
    assert_eq!(me["DebugConfig"]["DNSDomain"], "mesh.");
}

/// A tiny upstream resolver on 127.0.0.2 (UDP and TCP on one port): A
/// records for `*.upstream.test.`, NXDOMAIN for the rest. Counts questions.
async fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let port = free_port_tcp_udp("127.0.0.2");
    let addr: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let udp = UdpSocket::bind(addr).await.unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    fn answer(q: &[u8], seen: &AtomicUsize) -> Vec<u8> {
        seen.fetch_add(1, Ordering::SeqCst);
        let req = Message::from_vec(q).unwrap();
        let mut m = Message::new();
        m.set_id(req.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_available(true);
        m.add_queries(req.queries().iter().cloned());
        let name = req.queries()[0].name().clone();
        if name.to_ascii().to_lowercase().ends_with(".upstream.test.") {
            m.add_answer(Record::from_rdata(
                name,
                60,
                RData::A(A::new(192, 0, 2, 10)),
            ));
        } else {
            m.set_response_code(ResponseCode::NXDomain);
        }
        m.to_vec().unwrap()
    }
    let s1 = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        // Bounded: a test sends a handful of questions.
        for _ in 0..1000 {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                return;
            };
            let out = answer(&buf[..n], &s1);
            let _ = udp.send_to(&out, peer).await;
        }
    });
    let s2 = seen.clone();
    tokio::spawn(async move {
        for _ in 0..1000 {
            let Ok((mut s, _)) = tcp.accept().await else {
                return;
            };
            let len = s.read_u16().await.unwrap() as usize;
            let mut q = vec![0u8; len];
            s.read_exact(&mut q).await.unwrap();
            let out = answer(&q, &s2);
            let mut framed = (out.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&out);
            let _ = s.write_all(&framed).await;
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn other_names_go_to_the_recursors() {
    let (up, seen) = fake_upstream().await;
    // The first recursor is dead (nothing listens): the next one answers.
    let dead = free_port_tcp_udp("127.0.0.3");
    let (a, dns) = start(Some(&format!(
        "recursors = [\"127.0.0.3:{dead}\", \"{up}\"]\ndns_config {{ recursor_timeout = \"500ms\" }}"
    )))
    .await;
    let (m, _) = udp(dns, "www.upstream.test.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(ips(&m), vec![ip("192.0.2.10")]);
    assert!(m.recursion_available());
    let m = tcp(dns, "api.upstream.test.", RecordType::A).await;
    assert_eq!(ips(&m), vec![ip("192.0.2.10")]);
    let (m, _) = udp(dns, "missing.example.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    let asked = seen.load(Ordering::SeqCst);
    assert!(asked >= 3, "the upstream saw {asked} questions");
    // Our own names never go upstream, even unknown ones.
    let (m, _) = udp(dns, "nope.service.consul.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(seen.load(Ordering::SeqCst), asked);
    // An external service registered by host name: CNAME plus the address
    // the recursor gives.
    register(&a, json!({"Node": "ext", "Address": "db.upstream.test", "Service": {"Service": "extdb", "Port": 5432}})).await;
    let (m, _) = udp(dns, "extdb.service.consul", RecordType::A, None).await;
    assert!(
        matches!(m.answers()[0].data(), RData::CNAME(c) if c.0.to_ascii() == "db.upstream.test."),
        "{m}"
    );
    assert_eq!(ips(&m), vec![ip("192.0.2.10")]);
    // Unknown reverse names are forwarded too.
    let (m, _) = udp(dns, "9.9.9.10.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert!(seen.load(Ordering::SeqCst) > asked + 1);
}

#[tokio::test]
async fn the_dns_token_decides_what_dns_reveals() {
    const DNS_SECRET: &str = "3f9a1c2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
    let (a, dns) = start(Some(&format!(
        r#"acl {{
  enabled        = true
  default_policy = "deny"
  tokens {{
    initial_management = "root"
    dns                = "{DNS_SECRET}"
  }}
}}"#
    )))
    .await;
    let root = |rb: reqwest::RequestBuilder| rb.header("X-Consul-Token", "root");
    let put = |path: &str, body: Value| {
        let r = root(a.http.put(a.url(path))).body(body.to_string());
        async move {
            let r = r.send().await.unwrap();
            let st = r.status();
            let text = r.text().await.unwrap();
            assert_eq!(st, 200, "{text}");
            text
        }
    };
    put(
        "/v1/catalog/register",
        json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "web", "Port": 80}}),
    )
    .await;
    put(
        "/v1/catalog/register",
        json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "db", "Port": 5432}}),
    )
    .await;
    let r = root(a.http.post(a.url("/v1/query")))
        .body(json!({"Name": "db-q", "Service": {"Service": "db"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The DNS token does not exist yet: nothing is revealed (and no SERVFAIL).
    let (m, _) = udp(dns, "web.service.consul", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);

    put("/v1/acl/policy", json!({"Name": "dns", "Rules": "service \"web\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }"})).await;
    put(
        "/v1/acl/token",
        json!({"SecretID": DNS_SECRET, "Description": "DNS", "Policies": [{"Name": "dns"}]}),
    )
    .await;

    let (m, _) = udp(dns, "web.service.consul", RecordType::A, None).await;
    assert_eq!(ips(&m), vec![ip("10.0.0.1")]);
    let (m, _) = udp(dns, "n1.node.consul", RecordType::A, None).await;
    assert_eq!(ips(&m), vec![ip("10.0.0.1")]);
    // No service:read on db: hidden, directly and through a prepared query.
    let (m, _) = udp(dns, "db.service.consul", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    let (m, _) = udp(dns, "db-q.query.consul", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    // Reverse lookups see the node (node:read).
    let (m, _) = udp(dns, "1.0.0.10.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(m.answers().len(), 1);

    // Swapping the agent's DNS token takes effect at once.
    put("/v1/agent/token/dns", json!({"Token": "root"})).await;
    let (m, _) = udp(dns, "db.service.consul", RecordType::A, None).await;
    assert_eq!(ips(&m), vec![ip("10.0.0.1")]);
}

/// `dig` as an independent client (installed by `.ci/run`).
#[tokio::test]
async fn dig_resolves_services_over_udp_and_tcp() {
    let dig = std::process::Command::new("dig").arg("-v").output();
    assert!(
        dig.is_ok(),
        "dig is not installed: apt-get install -y dnsutils (.ci/run installs it)"
    );
    let (a, dns) = start(None).await;
    instance(
        &a,
        "n1",
        "10.0.0.1",
        "db1",
        json!({"Service": "db", "Port": 5432}),
        "passing",
    )
    .await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &dns.port().to_string(),
                "+time=5",
                "+tries=1",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run(&["+short", "db.service.consul", "SRV"]);
    assert_eq!(out.trim(), "1 1 5432 n1.node.dc1.consul.");
    let out = run(&["+short", "+tcp", "db.service.consul", "A"]);
    assert_eq!(out.trim(), "10.0.0.1");
    let out = run(&["nope.service.consul", "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(out.contains("AUTHORITY SECTION"), "{out}");
    let out = run(&["+short", "-x", "10.0.0.1"]);
    assert_eq!(out.trim(), "n1.node.dc1.consul.");
}

#[tokio::test]
async fn dns_stops_with_the_agent() {
    let (mut a, dns) = start(None).await;
    let (m, _) = udp(dns, "test-node.node.consul", RecordType::A, None).await;
    assert_eq!(ips(&m), vec![ip("127.0.0.1")]);
    let status = a.terminate().expect("agent exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    let log = a.log();
    assert!(log.contains("Graceful shutdown complete"), "{log}");
    assert!(!log.contains("shutdown took too long"), "{log}");
    // The port is free again: the listeners are gone.
    assert!(std::net::UdpSocket::bind(dns).is_ok());
    assert!(std::net::TcpListener::bind(dns).is_ok());
}

#[test]
fn bad_dns_settings_fail_at_start() {
    for (conf, key) in [
        (
            "dns_config { recursor_strategy = \"fastest\" }",
            "recursor_strategy",
        ),
        ("recursors = [\"dns.example\"]", "recursors"),
        ("domain = \"not a domain\"", "domain"),
        (
            "dns_config { service_ttl { \"*\" = \"soon\" } }",
            "service_ttl",
        ),
        ("addresses { dns = \"localhost\" }", "addresses.dns"),
    ] {
        let (code, out) = dev_builder().config_file("bad.hcl", conf).start_failure();
        assert_eq!(code, 1, "{conf}: {out}");
        assert!(out.contains(key), "{conf}: {out}");
    }
}

/// glibc's resolver (through `getent`) asks the agent on port 53, in a mount
/// namespace of its own whose /etc/resolv.conf names the agent. glibc sends
/// no EDNS: the UDP answer is cut to 3 records with TC set (enable_truncate),
/// glibc asks again over TCP and gets all of them.
#[tokio::test]
async fn glibc_resolves_through_the_agent_and_falls_back_to_tcp() {
    let ip = format!("127.0.83.{}", 1 + std::process::id() % 250);
    let a = dev_builder()
        .ip(&ip)
        .dns_port(53)
        .config_file("dns.hcl", "dns_config { enable_truncate = true }")
        .start()
        .await;
    for n in 1..=12 {
        instance(
            &a,
            &format!("web-{n}"),
            &format!("10.2.0.{n}"),
            &format!("web{n}"),
            json!({"Service": "web", "Port": 80}),
            "passing",
        )
        .await;
    }
    let conf = a.dir().join("resolv.conf");
    std::fs::write(
        &conf,
        format!("nameserver {ip}\noptions attempts:1 timeout:5\n"),
    )
    .unwrap();
    let getent = |args: &[&str]| {
        let out = std::process::Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                "mount --bind \"$0\" /etc/resolv.conf && exec getent \"$@\"",
            ])
            .arg(&conf)
            .args(args)
            .output()
            .expect("unshare (util-linux) runs");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let out = getent(&["ahostsv4", "web.service.consul"]);
    let mut found: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    found.sort();
    found.dedup();
    let mut want: Vec<String> = (1..=12).map(|n| format!("10.2.0.{n}")).collect();
    want.sort();
    assert_eq!(found, want, "{out}");
    let out = getent(&["hosts", "web-3.node.consul"]);
    assert!(out.starts_with("10.2.0.3 "), "{out}");
    // Unknown names fail cleanly (NXDOMAIN): getent prints nothing.
    let out = getent(&["hosts", "nope.service.consul"]);
    assert_eq!(out.trim(), "", "{out}");
}

#[tokio::test]
async fn connect_lookups_answer_the_linked_terminating_gateway() {
    let (a, addr) = start(None).await;
    // The scenario: an external database, a gateway linked to it.
    register(
        &a,
        json!({"Node": "external-files-db-node", "Address": "127.0.0.9",
               "NodeMeta": {"external-node": "true", "external-probe": "true"},
               "Service": {"ID": "carbonio-gateway", "Service": "carbonio-files-db", "Port": 5432}}),
    )
    .await;
    instance(
        &a,
        "gw-node",
        "127.0.0.7",
        "carbonio-gateway-1",
        json!({"Service": "carbonio-gateway", "Kind": "terminating-gateway", "Port": 8443}),
        "passing",
    )
    .await;
    let name = "carbonio-files-db.connect.consul.";
    let (m, _) = udp(addr, name, RecordType::SRV, None).await;
    assert!(srvs(&m).is_empty(), "not linked yet: {m:?}");
    let (st, text) = a
        .put(
            "/v1/config",
            r#"{"Kind": "terminating-gateway", "Name": "carbonio-gateway",
                "Services": [{"Name": "carbonio-files-db"}]}"#,
        )
        .await;
    assert_eq!((st, text.as_str()), (200, "true"));
    let (m, _) = udp(addr, name, RecordType::SRV, None).await;
    assert_eq!(srvs(&m).iter().map(|(p, _)| *p).collect::<Vec<_>>(), [8443]);
    let (m, _) = udp(addr, name, RecordType::A, None).await;
    assert_eq!(ips(&m), [ip("127.0.0.7")]);
    // The plain lookup still answers the database itself.
    let (m, _) = udp(
        addr,
        "carbonio-files-db.service.consul.",
        RecordType::A,
        None,
    )
    .await;
    assert_eq!(ips(&m), [ip("127.0.0.9")]);
}

/// HAProxy, a real DNS consumer, discovers a service's instances through
/// SRV (`server-template` with a `resolvers` section on the agent's DNS, as
/// operators wire HAProxy to Consul): addresses from the additional
/// records, only passing instances, and changes within seconds.
#[tokio::test]
async fn haproxy_discovers_instances_through_srv() {
    crate::require("haproxy", &["-v"], "HAProxy: apt-get install haproxy");
    let (a, dns) = start(None).await;
    let ports = [
        free_port_tcp_udp("127.0.0.1"),
        free_port_tcp_udp("127.0.0.1"),
    ];
    for (i, (node, ip)) in [("n1", "127.0.0.11"), ("n2", "127.0.0.12")]
        .into_iter()
        .enumerate()
    {
        instance(
            &a,
            node,
            ip,
            &format!("web-{node}"),
            json!({"Service": "web", "Port": ports[i]}),
            "passing",
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  log stdout format raw local0 info\n  stats socket {} level admin\n\
             defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
             resolvers meshgate\n  nameserver agent {dns}\n  accepted_payload_size 8192\n\
             \x20 resolve_retries 3\n  timeout resolve 200ms\n  timeout retry 200ms\n\
             \x20 hold valid 1s\n  hold obsolete 1s\n\
             backend web\n  server-template web 3 _web._tcp.service.consul resolvers meshgate init-addr none resolve-prefer ipv4\n",
            dir.path().join("admin.sock").display()
        ),
    )
    .unwrap();
    let hap = meshgate_test_support::Proc::spawn(
        "haproxy",
        "haproxy",
        &["-f", cfg.to_str().unwrap()],
        &[],
    );
    // The addresses HAProxy's servers hold, from its runtime API
    // (`show servers state`: address in the 5th column, port in the 19th;
    // `-` for a server slot without one).
    let sock = dir.path().join("admin.sock");
    let servers = || {
        let sock = sock.clone();
        async move {
            let mut s = tokio::net::UnixStream::connect(&sock).await.ok()?;
            s.write_all(b"show servers state web\n").await.ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).await.ok()?;
            let mut got: Vec<String> = out
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.split(' ').collect::<Vec<_>>())
                .filter(|f| f.len() > 18 && f[1] == "web" && f[4] != "-")
                .map(|f| format!("{}:{}", f[4], f[18]))
                .collect();
            got.sort();
            Some(got)
        }
    };
    let want = |list: &[(&str, u16)]| -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|(ip, p)| format!("{ip}:{p}")).collect();
        v.sort();
        v
    };
    let both = want(&[("127.0.0.11", ports[0]), ("127.0.0.12", ports[1])]);
    meshgate_test_support::eventually(
        "HAProxy resolves both instances",
        Duration::from_secs(20),
        || async { (servers().await? == both).then_some(()) },
    )
    .await;
    // A failing instance leaves the answers, and HAProxy's servers.
    instance(
        &a,
        "n2",
        "127.0.0.12",
        "web-n2",
        json!({"Service": "web", "Port": ports[1]}),
        "critical",
    )
    .await;
    let one = want(&[("127.0.0.11", ports[0])]);
    meshgate_test_support::eventually(
        "HAProxy drops the critical instance",
        Duration::from_secs(20),
        || async { (servers().await? == one).then_some(()) },
    )
    .await;
    // A new instance appears.
    let port3 = free_port_tcp_udp("127.0.0.1");
    instance(
        &a,
        "n3",
        "127.0.0.13",
        "web-n3",
        json!({"Service": "web", "Port": port3}),
        "passing",
    )
    .await;
    let two = want(&[("127.0.0.11", ports[0]), ("127.0.0.13", port3)]);
    meshgate_test_support::eventually(
        "HAProxy adds the new instance",
        Duration::from_secs(20),
        || async { (servers().await? == two).then_some(()) },
    )
    .await;
    assert!(
        hap.log().contains("by DNS additional record"),
        "{}",
        hap.log()
    );
}
