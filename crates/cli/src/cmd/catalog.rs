//! `meshgate catalog datacenters|nodes|services`, `meshgate members`,
//! `meshgate services register|deregister`.

use std::collections::BTreeMap;
use std::path::Path;

use clap::{Args, Subcommand};
use meshgate_types::agent::{Member, ServiceDefinition};
use meshgate_types::catalog::{Node, ServiceAddress, ServiceNode};
use meshgate_types::lenient::{self, Options};
use serde_json::Value;

use crate::client::{CliError, CliResult, Client, HttpFlags, columnize, escape_path};

/// Catalog commands.
#[derive(Subcommand, Debug)]
pub enum CatalogCmd {
    /// List datacenters.
    Datacenters(DcArgs),
    /// List nodes.
    Nodes(NodesArgs),
    /// List services.
    Services(ServicesArgs),
}

#[derive(Args, Debug)]
pub struct DcArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(hide = true)]
    pub extra: Vec<String>,
}

#[derive(Args, Debug)]
pub struct NodesArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Show full IDs, tagged addresses and metadata.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub detailed: Option<bool>,
    /// Sort by estimated round trip time from this node, nearest first
    /// (`_agent`: the agent's own node).
    #[arg(long)]
    pub near: Option<String>,
    /// Only nodes with this `key=value` metadata (repeatable).
    #[arg(long = "node-meta")]
    pub node_meta: Vec<String>,
    /// Only nodes running this service.
    #[arg(long)]
    pub service: Option<String>,
    /// A filter expression.
    #[arg(long)]
    pub filter: Option<String>,
}

#[derive(Args, Debug)]
pub struct ServicesArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Only services on this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Only services on nodes with this `key=value` metadata (repeatable).
    #[arg(long = "node-meta")]
    pub node_meta: Vec<String>,
    /// Show tags.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tags: Option<bool>,
}

fn meta_query(pairs: &[String]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            ("node-meta", format!("{k}:{v}"))
        })
        .collect()
}

/// Runs a catalog subcommand.
pub async fn run(cmd: CatalogCmd) -> CliResult {
    match cmd {
        CatalogCmd::Datacenters(a) => {
            if !a.extra.is_empty() {
                return Err(CliError::new(format!(
                    "Too many arguments (expected 0, got {})",
                    a.extra.len()
                )));
            }
            let c = Client::new(&a.http)?;
            let r = c
                .get("/v1/catalog/datacenters", &[])
                .await
                .map_err(|e| CliError::new(format!("Error listing datacenters: {}", e.message)))?;
            let dcs: Vec<String> = r.json()?;
            for dc in dcs {
                println!("{dc}");
            }
            Ok(())
        }
        CatalogCmd::Nodes(a) => nodes(a).await,
        CatalogCmd::Services(a) => services(a).await,
    }
}

fn short_id(id: &str) -> String {
    id.split('-').next().unwrap_or("").to_string()
}

fn kv_join<V: std::fmt::Display>(m: &BTreeMap<String, V>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn nodes(a: NodesArgs) -> CliResult {
    let c = Client::new(&a.http)?;
    let mut q = meta_query(&a.node_meta);
    if let Some(f) = &a.filter {
        q.push(("filter", f.clone()));
    }
    if let Some(n) = &a.near {
        q.push(("near", n.clone()));
    }
    let rows: Vec<Node> = if let Some(svc) = &a.service {
        let r = c
            .get(&format!("/v1/catalog/service/{}", escape_path(svc)), &q)
            .await
            .map_err(|e| {
                CliError::new(format!("Error listing nodes for service: {}", e.message))
            })?;
        let list: Vec<ServiceNode> = r.json()?;
        list.into_iter()
            .map(|sn| Node {
                id: sn.id,
                node: sn.node,
                address: sn.address,
                datacenter: sn.datacenter,
                tagged_addresses: sn.tagged_addresses,
                meta: sn.node_meta,
                ..Default::default()
            })
            .collect()
    } else {
        let r = c
            .get("/v1/catalog/nodes", &q)
            .await
            .map_err(|e| CliError::new(format!("Error listing nodes: {}", e.message)))?;
        r.json()?
    };
    if rows.is_empty() {
        eprintln!("No nodes match the given query - try expanding your search.");
        return Ok(());
    }
    let detailed = a.detailed.unwrap_or(false);
    let mut table = Vec::new();
    if detailed {
        table.push(
            ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
                .map(String::from)
                .to_vec(),
        );
    } else {
        table.push(["Node", "ID", "Address", "DC"].map(String::from).to_vec());
    }
    for n in rows {
        if detailed {
            table.push(vec![
                n.node,
                n.id,
                n.address,
                n.datacenter,
                kv_join(&n.tagged_addresses.unwrap_or_default()),
                kv_join(&n.meta.unwrap_or_default()),
            ]);
        } else {
            table.push(vec![n.node, short_id(&n.id), n.address, n.datacenter]);
        }
    }
    println!("{}", columnize(&table));
    Ok(())
}

async fn services(a: ServicesArgs) -> CliResult {
    let c = Client::new(&a.http)?;
    let q = meta_query(&a.node_meta);
    let map: BTreeMap<String, Vec<String>> = if let Some(node) = &a.node {
        let r = c
            .get(&format!("/v1/catalog/node/{}", escape_path(node)), &q)
            .await
            .map_err(|e| {
                CliError::new(format!("Error listing services for node: {}", e.message))
            })?;
        let v: Value = r.json()?;
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(svcs) = v.get("Services").and_then(Value::as_object) {
            for s in svcs.values() {
                let name = s
                    .get("Service")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let tags: Vec<String> = s
                    .get("Tags")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                out.entry(name).or_default().extend(tags);
            }
        }
        out
    } else {
        let r = c
            .get("/v1/catalog/services", &q)
            .await
            .map_err(|e| CliError::new(format!("Error listing services: {}", e.message)))?;
        r.json()?
    };
    if map.is_empty() {
        eprintln!("No services match the given query - try expanding your search.");
        return Ok(());
    }
    if a.tags.unwrap_or(false) {
        let width = map.keys().map(|k| k.chars().count()).max().unwrap_or(0) + 6;
        let mut lines = Vec::new();
        for (name, mut tags) in map {
            tags.sort();
            tags.dedup();
            lines.push(format!("{name:<width$}{}", tags.join(",")));
        }
        println!("{}", lines.join("\n").trim());
    } else {
        for name in map.keys() {
            println!("{name}");
        }
    }
    Ok(())
}

/// `meshgate members`.
#[derive(Args, Debug)]
pub struct MembersArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Show all tags.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub detailed: Option<bool>,
    /// Show WAN members (the same in a single datacenter).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub wan: Option<bool>,
    /// Only members whose status matches this regular expression.
    #[arg(long, default_value = ".*")]
    pub status: String,
    /// Segment (accepted for compatibility).
    #[arg(long, default_value = "_all")]
    pub segment: String,
    /// A filter expression.
    #[arg(long)]
    pub filter: Option<String>,
}

fn status_name(s: i64) -> &'static str {
    match s {
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "none",
    }
}

fn status_matches(re: &regex::Regex, status: &str) -> bool {
    re.is_match(status)
}

/// Runs `meshgate members`.
pub async fn members(a: MembersArgs) -> CliResult {
    let c = Client::new(&a.http)?;
    let mut q = Vec::new();
    if a.wan.unwrap_or(false) {
        q.push(("wan", "1".to_string()));
    }
    if let Some(f) = &a.filter {
        q.push(("filter", f.clone()));
    }
    let r = c
        .get("/v1/agent/members", &q)
        .await
        .map_err(|e| CliError::new(format!("Error retrieving members: {}", e.message)))?;
    // (`null`: a client agent asked for the WAN pool, which it has none of.)
    let mut list: Vec<Member> = r.json::<Option<Vec<Member>>>()?.unwrap_or_default();
    let re = regex::Regex::new(&a.status)
        .map_err(|e| CliError::new(format!("Failed to compile status regexp: {e}")))?;
    let mut kept = Vec::new();
    for m in list.drain(..) {
        if status_matches(&re, status_name(m.status)) {
            kept.push(m);
        }
    }
    if kept.is_empty() {
        return Err(CliError {
            message: String::new(),
            code: 2,
        });
    }
    kept.sort_by(|x, y| {
        let sx = x.tags.get("role").map(String::as_str) != Some("consul");
        let sy = y.tags.get("role").map(String::as_str) != Some("consul");
        (sx, &x.name).cmp(&(sy, &y.name))
    });
    let mut table = Vec::new();
    if a.detailed.unwrap_or(false) {
        table.push(
            ["Node", "Address", "Status", "Tags"]
                .map(String::from)
                .to_vec(),
        );
        for m in kept {
            let tags = m
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            table.push(vec![
                m.name.clone(),
                addr(&m),
                status_name(m.status).into(),
                tags,
            ]);
        }
    } else {
        table.push(
            [
                "Node",
                "Address",
                "Status",
                "Type",
                "Build",
                "Protocol",
                "DC",
                "Partition",
                "Segment",
            ]
            .map(String::from)
            .to_vec(),
        );
        for m in kept {
            let role = m.tags.get("role").map(String::as_str).unwrap_or("");
            let kind = match role {
                "consul" => "server",
                "node" => "client",
                _ => "unknown",
            };
            let build = m
                .tags
                .get("build")
                .map(|b| b.split(':').next().unwrap_or("").to_string())
                .unwrap_or_else(|| "< 0.3".into());
            let segment = if kind == "server" {
                "<all>".to_string()
            } else {
                m.tags
                    .get("segment")
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .unwrap_or_else(|| "<default>".into())
            };
            table.push(vec![
                m.name.clone(),
                addr(&m),
                status_name(m.status).into(),
                kind.into(),
                build,
                m.tags.get("vsn").cloned().unwrap_or_default(),
                m.tags.get("dc").cloned().unwrap_or_default(),
                m.tags
                    .get("ap")
                    .cloned()
                    .unwrap_or_else(|| "default".into()),
                segment,
            ]);
        }
    }
    println!("{}", columnize(&table));
    Ok(())
}

fn addr(m: &Member) -> String {
    if m.addr.contains(':') {
        format!("[{}]:{}", m.addr, m.port)
    } else {
        format!("{}:{}", m.addr, m.port)
    }
}

/// `meshgate services register|deregister`.
#[derive(Subcommand, Debug)]
pub enum ServicesCmd {
    /// Register services from definition files or flags.
    Register(RegisterArgs),
    /// Deregister services from definition files or by -id.
    Deregister(DeregisterArgs),
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Service ID (default: the name).
    #[arg(long)]
    pub id: Option<String>,
    /// Service name.
    #[arg(long)]
    pub name: Option<String>,
    /// Service address.
    #[arg(long)]
    pub address: Option<String>,
    /// Service port.
    #[arg(long, default_value_t = 0)]
    pub port: i64,
    /// Unix socket path.
    #[arg(long)]
    pub socket: Option<String>,
    /// Metadata `key=value` (repeatable).
    #[arg(long)]
    pub meta: Vec<String>,
    /// Tag (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Tagged address `key=address:port` (repeatable).
    #[arg(long = "tagged-address")]
    pub tagged_address: Vec<String>,
    /// Service kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Service definition files (HCL or JSON).
    pub files: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DeregisterArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Service ID.
    #[arg(long)]
    pub id: Option<String>,
    /// Service definition files (HCL or JSON).
    pub files: Vec<String>,
}

/// Reads service definitions from a file (`service {}` / `services [...]`, HCL or JSON).
pub fn read_service_file(path: &str) -> Result<Vec<ServiceDefinition>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("Error reading {path}: {e}"))?;
    let is_json = Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let v: Value = if is_json {
        serde_json::from_str(&text).map_err(|e| format!("Error parsing {path}: {e}"))?
    } else {
        meshgate_hcl::parse_to_json(&text).map_err(|e| format!("Error parsing {path}: {e}"))?
    };
    let Value::Object(mut obj) = v else {
        return Err(format!("Error parsing {path}: expected an object"));
    };
    let mut out = Vec::new();
    let mut take = |key: &str| {
        obj.remove(key).or_else(|| {
            let k = obj.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned();
            k.and_then(|k| obj.remove(&k))
        })
    };
    for key in ["service", "services"] {
        if let Some(v) = take(key) {
            let defs: Vec<ServiceDefinition> =
                lenient::from_value(v, Options { deny_unknown: true })
                    .map_err(|e| format!("Error decoding {path}: {e}"))?;
            out.extend(defs);
        }
    }
    if let Some(k) = obj.keys().next() {
        return Err(format!("Error decoding {path}: invalid config key {k}"));
    }
    if out.is_empty() {
        return Err(format!("{path}: no service definition found"));
    }
    Ok(out)
}

/// Runs a services subcommand.
pub async fn run_services(cmd: ServicesCmd) -> CliResult {
    match cmd {
        ServicesCmd::Register(a) => register(a).await,
        ServicesCmd::Deregister(a) => deregister(a).await,
    }
}

async fn register(a: RegisterArgs) -> CliResult {
    let flags_given = a.name.is_some() || a.id.is_some();
    if a.files.is_empty() && !flags_given {
        return Err(CliError::new(
            "Service registration requires at least one argument or flags.",
        ));
    }
    if !a.files.is_empty() && flags_given {
        return Err(CliError::new(
            "Service registration requires arguments or -id, not both.",
        ));
    }
    let defs = if flags_given {
        if let Some(addr) = &a.address
            && addr.contains(':')
            && addr.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(CliError::new(
                "Invalid Service address when using CLI flags. Use -port flag instead: address should not contain port",
            ));
        }
        let mut meta = BTreeMap::new();
        for kv in &a.meta {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            meta.insert(k.to_string(), v.to_string());
        }
        let mut tagged = BTreeMap::new();
        for kv in &a.tagged_address {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            let (addr, port) = match v.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().unwrap_or(0)),
                None => (v.to_string(), 0),
            };
            tagged.insert(
                k.to_string(),
                ServiceAddress {
                    address: addr,
                    port,
                },
            );
        }
        vec![ServiceDefinition {
            id: a.id.clone().unwrap_or_default(),
            name: a.name.clone().unwrap_or_default(),
            address: a.address.clone().unwrap_or_default(),
            port: a.port,
            socket_path: a.socket.clone().unwrap_or_default(),
            meta,
            tags: a.tag.clone(),
            tagged_addresses: tagged,
            kind: a.kind.clone().unwrap_or_default(),
            ..Default::default()
        }]
    } else {
        let mut all = Vec::new();
        for f in &a.files {
            all.extend(read_service_file(f).map_err(|e| CliError::new(format!("Error: {e}")))?);
        }
        all
    };
    let c = Client::new(&a.http)?;
    for d in defs {
        let body = serde_json::to_vec(&d).map_err(|e| CliError::new(e.to_string()))?;
        c.put("/v1/agent/service/register", &[], Some(body))
            .await
            .map_err(|e| {
                CliError::new(format!(
                    "Error registering service \"{}\": {}",
                    d.name, e.message
                ))
            })?;
        println!("Registered service: {}", d.name);
    }
    Ok(())
}

async fn deregister(a: DeregisterArgs) -> CliResult {
    if a.files.is_empty() && a.id.is_none() {
        return Err(CliError::new(
            "Service deregistration requires at least one argument or -id.",
        ));
    }
    if !a.files.is_empty() && a.id.is_some() {
        return Err(CliError::new(
            "Service deregistration requires arguments or -id, not both.",
        ));
    }
    let ids: Vec<String> = match &a.id {
        Some(id) => vec![id.clone()],
        None => {
            let mut ids = Vec::new();
            for f in &a.files {
                for d in read_service_file(f).map_err(|e| CliError::new(format!("Error: {e}")))? {
                    ids.push(d.instance_id().to_string());
                }
            }
            ids
        }
    };
    let c = Client::new(&a.http)?;
    for id in ids {
        c.put(
            &format!("/v1/agent/service/deregister/{}", escape_path(&id)),
            &[],
            None,
        )
        .await
        .map_err(|e| {
            CliError::new(format!(
                "Error deregistering service \"{id}\": {}",
                e.message
            ))
        })?;
        println!("Deregistered service: {id}");
    }
    Ok(())
}
