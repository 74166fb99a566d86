//! The DNS interface in-process: an agent's state, real wire messages in and
//! out of [`handle`], no sockets.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use meshgate_state::Command;
use meshgate_types::catalog::RegisterRequest;
use serde_json::{Value, json};

use super::*;
use crate::config::Config;

fn agent_with(f: impl FnOnce(&mut Config)) -> Arc<Agent> {
    let mut c = Config {
        node_name: "agent-1".into(),
        ..Config::default()
    };
    f(&mut c);
    Agent::new(c, Default::default())
}

async fn register(a: &Agent, body: Value) {
    let mut body = body;
    body["Datacenter"] = json!("dc1");
    let req: RegisterRequest = serde_json::from_value(body).unwrap();
    a.store
        .write(Command::Register(Box::new(req)))
        .await
        .unwrap();
}

/// A node with one instance of `service` and a check in `status`.
async fn instance(a: &Agent, node: &str, addr: &str, service: Value, status: &str) {
    let id = service["ID"].as_str().unwrap_or("").to_string();
    let id = if id.is_empty() {
        service["Service"].as_str().unwrap().to_string()
    } else {
        id
    };
    register(
        a,
        json!({
            "Node": node, "Address": addr,
            "NodeMeta": {"rack": "r1"},
            "Service": service,
            "Check": {"CheckID": format!("{id}-check"), "Name": "c", "ServiceID": id, "Status": status},
        }),
    )
    .await;
}

fn query_msg(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(4242)
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

async fn ask_with(
    a: &Agent,
    name: &str,
    qtype: RecordType,
    edns: Option<u16>,
    t: Transport,
) -> (Message, usize) {
    let bytes = handle(a, &query_msg(name, qtype, edns), t, None)
        .await
        .expect("an answer");
    (Message::from_vec(&bytes).unwrap(), bytes.len())
}

async fn ask(a: &Agent, name: &str, qtype: RecordType) -> Message {
    ask_with(a, name, qtype, None, Transport::Tcp).await.0
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

fn soa_of(m: &Message) -> Option<&Record> {
    m.name_servers()
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
}

#[tokio::test]
async fn service_a_and_srv_answer_healthy_instances_only() {
    let a = agent_with(|_| {});
    instance(
        &a,
        "n1",
        "10.0.0.1",
        json!({"Service": "db", "Port": 5432}),
        "passing",
    )
    .await;
    instance(
        &a,
        "n2",
        "10.0.0.2",
        json!({"Service": "db", "Port": 5433}),
        "warning",
    )
    .await;
    instance(
        &a,
        "n3",
        "10.0.0.3",
        json!({"Service": "db", "Port": 5434}),
        "critical",
    )
    .await;

    let m = ask(&a, "DB.service.consul.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.authoritative());
    assert_eq!(m.id(), 4242);
    assert_eq!(ips(&m), vec![ip("10.0.0.1"), ip("10.0.0.2")]);
    // The answer keeps the question's spelling.
    assert_eq!(m.answers()[0].name().to_ascii(), "DB.service.consul.");

    let m = ask(&a, "db.service.dc1.consul", RecordType::SRV).await;
    let mut srv: Vec<(u16, String)> = m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(s) => Some((s.port(), s.target().to_ascii())),
            _ => None,
        })
        .collect();
    srv.sort();
    assert_eq!(
        srv,
        vec![
            (5432, "n1.node.dc1.consul.".to_string()),
            (5433, "n2.node.dc1.consul.".to_string())
        ]
    );
    let extra_a: Vec<String> = m
        .additionals()
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.name().to_ascii())
        .collect();
    assert_eq!(extra_a.len(), 2, "{m}");
    // Node metadata as TXT in the additional section.
    assert!(
        m.additionals()
            .iter()
            .any(|r| matches!(r.data(), RData::TXT(t) if t.to_string() == "rack=r1")),
        "{m}"
    );

    // only_passing leaves the warning instance out.
    let b = agent_with(|c| c.dns_config.only_passing = true);
    instance(
        &b,
        "n1",
        "10.0.0.1",
        json!({"Service": "db", "Port": 1}),
        "passing",
    )
    .await;
    instance(
        &b,
        "n2",
        "10.0.0.2",
        json!({"Service": "db", "Port": 1}),
        "warning",
    )
    .await;
    assert_eq!(
        ips(&ask(&b, "db.service.consul", RecordType::A).await),
        vec![ip("10.0.0.1")]
    );
}

#[tokio::test]
async fn tags_rfc2782_and_unknown_names() {
    let a = agent_with(|_| {});
    instance(
        &a,
        "n1",
        "10.0.0.1",
        json!({"ID": "db1", "Service": "db", "Tags": ["primary"], "Port": 1}),
        "passing",
    )
    .await;
    instance(
        &a,
        "n2",
        "10.0.0.2",
        json!({"ID": "db2", "Service": "db", "Tags": ["replica"], "Port": 2}),
        "passing",
    )
    .await;
    assert_eq!(
        ips(&ask(&a, "primary.db.service.consul", RecordType::A).await),
        vec![ip("10.0.0.1")]
    );
    let m = ask(&a, "_db._replica.service.consul", RecordType::SRV).await;
    assert_eq!(m.answers().len(), 1);
    assert!(matches!(m.answers()[0].data(), RData::SRV(s) if s.port() == 2));
    let m = ask(&a, "_db._tcp.service.consul", RecordType::SRV).await;
    assert_eq!(m.answers().len(), 2);

    for name in [
        "nope.service.consul",
        "other.db.service.consul",
        "db.unknown.consul",
        "db.service.dc9.consul",
    ] {
        let m = ask(&a, name, RecordType::A).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain, "{name}");
        assert!(m.authoritative());
        let soa = soa_of(&m).unwrap_or_else(|| panic!("{name}: no SOA in {m}"));
        assert_eq!(soa.name().to_ascii(), "consul.");
        assert!(m.answers().is_empty());
    }
    // Existing service, no record of that type: NODATA with the SOA.
    let m = ask(&a, "db.service.consul", RecordType::AAAA).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.answers().is_empty());
    assert!(soa_of(&m).is_some());
}

#[tokio::test]
async fn nodes_meta_ptr_and_addr() {
    let a = agent_with(|c| {
        c.dns_config.node_ttl = "30s".into();
        c.dns_config.soa.min_ttl = 7;
    });
    register(&a, json!({"Node": "Files-1", "Address": "10.1.0.5", "NodeMeta": {"rfc1035-x": "raw", "k=y": "v"}})).await;
    let m = ask(&a, "files-1.node.consul", RecordType::A).await;
    assert_eq!(ips(&m), vec![ip("10.1.0.5")]);
    assert_eq!(m.answers()[0].ttl(), 30);
    let txt: Vec<String> = m
        .additionals()
        .iter()
        .map(|r| r.data().to_string())
        .collect();
    assert!(txt.iter().any(|t| t.contains("raw")), "{txt:?}");
    assert!(txt.iter().any(|t| t.contains("k`=y=v")), "{txt:?}");
    let m = ask(&a, "files-1.node.dc1.consul", RecordType::TXT).await;
    assert_eq!(m.answers().len(), 2);
    let m = ask(&a, "nobody.node.consul", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(soa_of(&m).unwrap().ttl(), 7);

    let m = ask(&a, "5.0.1.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(m.answers().len(), 1, "{m}");
    assert_eq!(
        m.answers()[0].data().to_string(),
        "Files-1.node.dc1.consul."
    );
    let m = ask(&a, "9.9.9.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);

    let m = ask(&a, "0a010005.addr.dc1.consul", RecordType::A).await;
    assert_eq!(ips(&m), vec![ip("10.1.0.5")]);
}

#[tokio::test]
async fn hostnames_become_cnames_and_service_addresses_win() {
    let a = agent_with(|_| {});
    register(&a, json!({"Node": "ext", "Address": "db.example.com", "Service": {"Service": "extdb", "Port": 5432}})).await;
    let m = ask(&a, "extdb.service.consul", RecordType::A).await;
    assert_eq!(m.answers().len(), 1, "{m}");
    assert!(
        matches!(m.answers()[0].data(), RData::CNAME(c) if c.0.to_ascii() == "db.example.com.")
    );
    let m = ask(&a, "extdb.service.consul", RecordType::SRV).await;
    assert!(
        matches!(m.answers()[0].data(), RData::SRV(s) if s.target().to_ascii() == "db.example.com.")
    );

    // A service address overrides the node's; SRV targets name it by address.
    register(&a, json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "web", "Address": "10.9.9.9", "Port": 80}})).await;
    let m = ask(&a, "web.service.consul", RecordType::A).await;
    assert_eq!(ips(&m), vec![ip("10.9.9.9")]);
    let m = ask(&a, "web.service.consul", RecordType::SRV).await;
    assert!(
        matches!(m.answers()[0].data(), RData::SRV(s) if s.target().to_ascii() == "0a090909.addr.dc1.consul.")
    );
    assert!(
        m.additionals()
            .iter()
            .any(|r| r.name().to_ascii() == "0a090909.addr.dc1.consul.")
    );

    // A service address that is another of our names is followed.
    register(&a, json!({"Node": "n2", "Address": "10.0.0.2", "Service": {"Service": "alias", "Address": "web.service.consul", "Port": 80}})).await;
    let m = ask(&a, "alias.service.consul", RecordType::A).await;
    assert!(matches!(m.answers()[0].data(), RData::CNAME(_)), "{m}");
    assert!(ips(&m).contains(&ip("10.9.9.9")), "{m}");
}

#[tokio::test]
async fn connect_lookups_answer_proxies_and_native_services() {
    let a = agent_with(|_| {});
    instance(
        &a,
        "n1",
        "10.0.0.1",
        json!({"Service": "web", "Port": 80}),
        "passing",
    )
    .await;
    instance(&a, "n1", "10.0.0.1", json!({"ID": "web-proxy", "Service": "web-sidecar-proxy", "Kind": "connect-proxy", "Port": 21000, "Proxy": {"DestinationServiceName": "web"}}), "passing").await;
    instance(
        &a,
        "n2",
        "10.0.0.2",
        json!({"Service": "api", "Port": 81, "Connect": {"Native": true}}),
        "passing",
    )
    .await;
    let m = ask(&a, "web.connect.consul", RecordType::SRV).await;
    assert_eq!(m.answers().len(), 1, "{m}");
    assert!(matches!(m.answers()[0].data(), RData::SRV(s) if s.port() == 21000));
    assert_eq!(
        ips(&ask(&a, "api.connect.consul", RecordType::A).await),
        vec![ip("10.0.0.2")]
    );
    let m = ask(&a, "web.ingress.consul", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[tokio::test]
async fn ttls_limits_and_alt_domain() {
    let a = agent_with(|c| {
        c.dns_config.service_ttl = [("*", "5s"), ("db*", "10s"), ("db-exact", "20s")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c.dns_config.a_record_limit = 2;
        c.alt_domain = "mesh.example.".into();
    });
    for (i, svc) in ["web", "dbx", "db-exact"].iter().enumerate() {
        for n in 0..4 {
            instance(
                &a,
                &format!("n{n}"),
                &format!("10.0.{i}.{n}"),
                json!({"Service": svc, "Port": 1}),
                "passing",
            )
            .await;
        }
    }
    for (svc, ttl) in [("web", 5), ("dbx", 10), ("db-exact", 20)] {
        let m = ask(&a, &format!("{svc}.service.consul"), RecordType::A).await;
        assert_eq!(m.answers().len(), 2, "a_record_limit: {m}");
        assert!(m.answers().iter().all(|r| r.ttl() == ttl), "{svc}: {m}");
    }
    // SRV is not limited by a_record_limit.
    assert_eq!(
        ask(&a, "web.service.consul", RecordType::SRV)
            .await
            .answers()
            .len(),
        4
    );
    // The alt domain answers with its own names.
    let m = ask(&a, "web.service.MESH.example", RecordType::SRV).await;
    assert!(
        matches!(m.answers()[0].data(), RData::SRV(s) if s.target().to_ascii().ends_with(".node.dc1.mesh.example.")),
        "{m}"
    );
    let m = ask(&a, "nope.service.mesh.example", RecordType::A).await;
    assert_eq!(soa_of(&m).unwrap().name().to_ascii(), "mesh.example.");
}

#[tokio::test]
async fn udp_truncation_and_edns() {
    let a = agent_with(|_| {});
    for n in 0..40 {
        let meta: serde_json::Map<String, Value> = (0..4)
            .map(|k| {
                (
                    format!("key-{k}"),
                    json!("a value long enough to weigh on the size"),
                )
            })
            .collect();
        register(
            &a,
            json!({"Node": format!("node-with-a-long-name-{n}"), "Address": format!("10.0.1.{n}"),
                   "NodeMeta": meta, "Service": {"Service": "web", "Port": 80}}),
        )
        .await;
    }
    // UDP without EDNS: udp_answer_limit (3) answers; no TC by default.
    let (m, len) = ask_with(
        &a,
        "web.service.consul",
        RecordType::A,
        None,
        Transport::Udp,
    )
    .await;
    assert_eq!(m.answers().len(), 3);
    assert!(!m.truncated());
    assert!(len <= 512);
    // SRV answers with their additional records do not fit in 512 bytes:
    // cut to fit, TC set so that resolvers retry over TCP.
    let (m, len) = ask_with(
        &a,
        "web.service.consul",
        RecordType::SRV,
        None,
        Transport::Udp,
    )
    .await;
    assert!(len <= 512, "{len}");
    assert!(m.truncated());
    assert!(!m.answers().is_empty() && m.answers().len() <= 3);
    // Every remaining SRV target keeps its address.
    for r in m.answers() {
        let RData::SRV(s) = r.data() else { panic!() };
        assert!(
            m.additionals().iter().any(|x| x.name() == s.target()),
            "{m}"
        );
    }
    // EDNS: the advertised size is the limit; the OPT record is echoed.
    let (m, len) = ask_with(
        &a,
        "web.service.consul",
        RecordType::A,
        Some(1232),
        Transport::Udp,
    )
    .await;
    assert_eq!(m.answers().len(), 40);
    assert!(len <= 1232);
    assert_eq!(m.extensions().as_ref().map(|e| e.max_payload()), Some(1232));
    let (m, len) = ask_with(
        &a,
        "web.service.consul",
        RecordType::SRV,
        Some(1232),
        Transport::Udp,
    )
    .await;
    assert!(
        len <= 1232 && m.truncated() && m.answers().len() < 40,
        "{len}"
    );
    // TCP: everything.
    let (m, _) = ask_with(
        &a,
        "web.service.consul",
        RecordType::SRV,
        None,
        Transport::Tcp,
    )
    .await;
    assert_eq!(m.answers().len(), 40);
    assert!(!m.truncated());
    // enable_truncate: TC whenever answers were left out.
    let b = agent_with(|c| c.dns_config.enable_truncate = true);
    for n in 0..5 {
        instance(
            &b,
            &format!("n{n}"),
            &format!("10.0.1.{n}"),
            json!({"Service": "web", "Port": 80}),
            "passing",
        )
        .await;
    }
    let (m, _) = ask_with(
        &b,
        "web.service.consul",
        RecordType::A,
        None,
        Transport::Udp,
    )
    .await;
    assert_eq!(m.answers().len(), 3);
    assert!(m.truncated());
    // Compression off still fits and decodes.
    let c = agent_with(|c| c.dns_config.disable_compression = true);
    instance(
        &c,
        "n1",
        "10.0.0.1",
        json!({"Service": "web", "Port": 80}),
        "passing",
    )
    .await;
    let (m, _) = ask_with(
        &c,
        "web.service.consul",
        RecordType::SRV,
        None,
        Transport::Udp,
    )
    .await;
    assert_eq!(m.answers().len(), 1);
}

#[tokio::test]
async fn soa_ns_and_protocol_errors() {
    let a = agent_with(|c| {
        c.server = true;
        c.dns_config.soa.refresh = 1234;
    });
    a.register_self().await.unwrap();
    let m = ask(&a, "consul.", RecordType::SOA).await;
    let RData::SOA(soa) = m.answers()[0].data() else {
        panic!("{m}")
    };
    assert_eq!(soa.refresh(), 1234);
    assert_eq!(soa.mname().to_ascii(), "ns.consul.");
    assert_eq!(m.name_servers().len(), 1, "{m}");
    let m = ask(&a, "consul.", RecordType::NS).await;
    assert!(
        matches!(m.answers()[0].data(), RData::NS(ns) if ns.0.to_ascii() == "agent-1.node.dc1.consul."),
        "{m}"
    );
    assert_eq!(m.additionals().len(), 1);
    // Apex A: NODATA.
    let m = ask(&a, "consul.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(soa_of(&m).is_some());

    // Names elsewhere with no recursor: refused, never answered.
    let m = ask(&a, "example.org.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::Refused);
    assert!(!m.recursion_available());

    // Not a query.
    let mut upd = Message::new();
    upd.set_id(7)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Update);
    upd.add_query(Query::query(
        Name::from_ascii("consul.").unwrap(),
        RecordType::SOA,
    ));
    let r = Message::from_vec(
        &handle(&a, &upd.to_vec().unwrap(), Transport::Udp, None)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(r.response_code(), ResponseCode::NotImp);
    // Garbage with a header: FORMERR; less than a header: nothing.
    let r = handle(
        &a,
        &[0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff],
        Transport::Udp,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        Message::from_vec(&r).unwrap().response_code(),
        ResponseCode::FormErr
    );
    assert_eq!(Message::from_vec(&r).unwrap().id(), 9);
    assert!(handle(&a, &[1, 2, 3], Transport::Udp, None).await.is_none());
    // EDNS version 1: BADVERS.
    let mut m = Message::new();
    m.set_id(8)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("consul.").unwrap(),
        RecordType::A,
    ));
    let mut e = Edns::new();
    e.set_version(1);
    m.set_edns(e);
    let r = Message::from_vec(
        &handle(&a, &m.to_vec().unwrap(), Transport::Udp, None)
            .await
            .unwrap(),
    )
    .unwrap();
    // BADVERS (16) decodes as BADSIG, its twin code.
    assert_eq!(u16::from(r.response_code()), 16);
    assert_eq!(r.extensions().as_ref().map(|e| e.version()), Some(0));
}

#[test]
fn settings_are_checked() {
    let bad = |f: &dyn Fn(&mut Config)| {
        let mut c = Config::default();
        f(&mut c);
        DnsSettings::from_config(&c).unwrap_err().0
    };
    assert!(bad(&|c| c.domain = "bad domain".into()).contains("domain"));
    assert!(bad(&|c| c.alt_domain = "consul".into()).contains("same as domain"));
    assert!(bad(&|c| c.recursors = vec!["dns.example".into()]).contains("recursors"));
    assert!(bad(&|c| c.dns_config.node_ttl = "soon".into()).contains("node_ttl"));
    assert!(
        bad(&|c| c.dns_config.recursor_strategy = "fastest".into()).contains("recursor_strategy")
    );
    assert!(bad(&|c| c.dns_config.udp_answer_limit = -1).contains("udp_answer_limit"));
    let c = Config {
        recursors: vec![
            "127.0.0.2".into(),
            "[::1]:5353".into(),
            "10.0.0.1:53".into(),
        ],
        ..Config::default()
    };
    let s = DnsSettings::from_config(&c).unwrap();
    assert_eq!(
        s.recursors
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>(),
        vec!["127.0.0.2:53", "[::1]:5353", "10.0.0.1:53"]
    );
    assert_eq!(s.domain(Zone::Primary), "consul.");
}

#[tokio::test]
async fn acl_dns_token_filters_answers() {
    let a = agent_with(|c| {
        c.acl.enabled = true;
        c.acl.default_policy = "deny".into();
    });
    instance(
        &a,
        "n1",
        "10.0.0.1",
        json!({"Service": "web", "Port": 80}),
        "passing",
    )
    .await;
    // No token: anonymous, denied by default.
    let m = ask(&a, "web.service.consul", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    let m = ask(&a, "n1.node.consul", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    // An unknown DNS token reveals nothing either (and is not SERVFAIL).
    a.acl.tokens.write().dns = "no-such-token".into();
    let m = ask(&a, "web.service.consul", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[tokio::test]
async fn node_meta_txt_can_be_left_out_and_ecs_is_echoed() {
    let a = agent_with(|c| c.dns_config.enable_additional_node_meta_txt = false);
    instance(
        &a,
        "n1",
        "10.0.0.1",
        json!({"Service": "web", "Port": 80}),
        "passing",
    )
    .await;
    let m = ask(&a, "web.service.consul", RecordType::SRV).await;
    assert_eq!(m.answers().len(), 1);
    assert!(
        m.additionals()
            .iter()
            .all(|r| r.record_type() != RecordType::TXT),
        "{m}"
    );
    // TXT questions still answer the metadata.
    let m = ask(&a, "n1.node.consul", RecordType::TXT).await;
    assert_eq!(m.answers().len(), 1);

    // EDNS client subnet: echoed with scope 0 (the answer fits every client).
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
    let mut q = Message::new();
    q.set_id(1)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii("web.service.consul.").unwrap(),
        RecordType::A,
    ));
    let mut e = Edns::new();
    e.set_max_payload(1400);
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        ip("192.0.2.0"),
        24,
        0,
    )));
    q.set_edns(e);
    let r = handle(&a, &q.to_vec().unwrap(), Transport::Udp, None)
        .await
        .unwrap();
    let r = Message::from_vec(&r).unwrap();
    let Some(EdnsOption::Subnet(s)) = r.extensions().as_ref().unwrap().option(EdnsCode::Subnet)
    else {
        panic!("no client subnet in {r}")
    };
    assert_eq!(
        (s.addr(), s.source_prefix(), s.scope_prefix()),
        (ip("192.0.2.0"), 24, 0)
    );
}

#[test]
fn defaults_serve_port_8600_on_the_client_address() {
    let c = Config::default();
    assert_eq!(c.ports.dns, 8600);
    assert_eq!(c.dns_addrs(), vec!["127.0.0.1".to_string()]);
    let c = Config {
        client_addr: "127.0.0.1 10.0.0.5".into(),
        ..Config::default()
    };
    assert_eq!(c.dns_addrs().len(), 2);
    let s = DnsSettings::default();
    assert_eq!(s.domain(Zone::Primary), "consul.");
    assert_eq!(
        (s.udp_answer_limit, s.a_record_limit, s.node_ttl),
        (3, 0, 0)
    );
    assert!(s.node_meta_txt && s.compress && !s.enable_truncate && !s.only_passing);
    assert_eq!(
        (s.soa.refresh, s.soa.retry, s.soa.expire, s.soa.min_ttl),
        (3600, 600, 86400, 0)
    );
}
