//! Arbitrary bytes as a DNS query to a dev agent's DNS handler (UDP and
//! TCP framing rules): it must never panic, and whatever it answers must be a
//! DNS message that parses.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use meshgate_agent::config::{self, Sources};
use meshgate_agent::dns::{Transport, handle};
use meshgate_agent::Agent;
use meshgate_state::Command;
use meshgate_types::catalog::{NodeService, RegisterRequest};

struct World {
    rt: tokio::runtime::Runtime,
    agent: Arc<Agent>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let sources = Sources {
            dev: true,
            ..Default::default()
        };
        let loaded = config::load(&sources).expect("dev config");
        let agent = Agent::new(loaded.config, sources);
        rt.block_on(async {
            // Something to find: a node with a service, tags and a port.
            for (node, addr) in [("db-node", "127.0.0.5"), ("gw-node", "::1")] {
                let req = RegisterRequest {
                    node: node.into(),
                    address: addr.into(),
                    service: Some(NodeService {
                        id: format!("{node}-svc"),
                        service: "carbonio-files-db".into(),
                        tags: vec!["primary".into()],
                        port: 5432,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let _ = agent.store.write(Command::Register(Box::new(req))).await;
            }
        });
        World { rt, agent }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    for t in [Transport::Udp, Transport::Tcp] {
        if let Some(answer) = w.rt.block_on(handle(&w.agent, data, t)) {
            assert!(
                hickory_proto::op::Message::from_vec(&answer).is_ok(),
                "the handler answered with a message that does not parse"
            );
        }
    }
});
