//! Agent operations: `info`, `monitor`, `reload`, `maint`, `leave`,
//! `join`, `force-leave`, `rtt`, `event`.

use std::collections::BTreeMap;
use std::io::Write;

use clap::Args;
use serde_json::Value;

use crate::client::{CliError, CliResult, Client, HttpFlags, escape_path};

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub http: HttpFlags,
}

/// `meshgate info`: the agent's stats, grouped.
pub async fn info(a: InfoArgs) -> CliResult {
    let c = Client::new(&a.http)?;
    let r = c
        .get("/v1/agent/self", &[])
        .await
        .map_err(|e| CliError::new(format!("Error querying agent: {}", e.message)))?;
    let v: Value = r.json()?;
    let Some(stats) = v.get("Stats").and_then(Value::as_object) else {
        return Err(CliError::new(
            "Error querying agent: no Stats in the answer",
        ));
    };
    for (group, vals) in stats {
        println!("{group}:");
        if let Some(m) = vals.as_object() {
            for (k, val) in m {
                let text = val
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| val.to_string());
                println!("\t{k} = {text}");
            }
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Log level to stream: trace, debug, info, warn, error.
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
    /// Stream JSON log lines.
    #[arg(long = "log-json", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub log_json: Option<bool>,
}

/// `meshgate monitor`: streams the agent's log until interrupted.
pub async fn monitor(a: MonitorArgs) -> CliResult {
    let c = Client::new(&a.http)?;
    let mut q = vec![("loglevel", a.log_level.clone())];
    if a.log_json.unwrap_or(false) {
        q.push(("logjson", String::new()));
    }
    let mut resp = c
        .stream("/v1/agent/monitor", &q)
        .await
        .map_err(|e| CliError::new(format!("Error starting monitor: {}", e.message)))?;
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            chunk = resp.chunk() => match chunk {
                Ok(Some(b)) => {
                    if out.write_all(&b).and_then(|_| out.flush()).is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => {
                    eprintln!("Remote side ended the monitor! This usually means that the");
                    eprintln!("remote side has exited or crashed.");
                    return Ok(());
                }
                Err(e) => return Err(CliError::new(format!("Error reading monitor: {e}"))),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[derive(Args, Debug)]
pub struct PlainArgs {
    #[command(flatten)]
    pub http: HttpFlags,
}

/// `meshgate reload`.
pub async fn reload(a: PlainArgs) -> CliResult {
    let c = Client::new(&a.http)?;
    c.put("/v1/agent/reload", &[], None)
        .await
        .map_err(|e| CliError::new(format!("Error reloading: {}", e.message)))?;
    println!("Configuration reload triggered");
    Ok(())
}

/// `meshgate leave`.
pub async fn leave(a: PlainArgs) -> CliResult {
    let c = Client::new(&a.http)?;
    c.put("/v1/agent/leave", &[], None)
        .await
        .map_err(|e| CliError::new(format!("Error leaving: {}", e.message)))?;
    println!("Graceful leave complete");
    Ok(())
}

#[derive(Args, Debug)]
pub struct ForceLeaveArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Remove the node from the member list entirely.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub prune: Option<bool>,
    /// Remove the node from the WAN pool (a server's `node.dc` name).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub wan: Option<bool>,
    /// The node.
    pub node: Option<String>,
}

#[derive(Args, Debug)]
pub struct JoinArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Join the WAN pool (not supported: meshgate runs one datacenter).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub wan: Option<bool>,
    /// Servers to join through (`host[:port]`, the server port).
    pub addresses: Vec<String>,
}

/// `meshgate join ADDR...`: asks the agent to join the cluster through
/// each address, as Consul's command words it.
pub async fn join(a: JoinArgs) -> CliResult {
    if a.addresses.is_empty() {
        return Err(CliError::new(
            "At least one address to join must be specified.",
        ));
    }
    let c = Client::new(&a.http)?;
    let mut q = Vec::new();
    if a.wan.unwrap_or(false) {
        q.push(("wan", "1".to_string()));
    }
    let mut joined = 0;
    for addr in &a.addresses {
        let path = format!("/v1/agent/join/{}", escape_path(addr));
        match c.put(&path, &q, None).await {
            Ok(_) => joined += 1,
            Err(e) => eprintln!("Error joining address '{addr}': {}", e.message),
        }
    }
    if joined == 0 {
        return Err(CliError::new("Failed to join any nodes."));
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    Ok(())
}

#[derive(Args, Debug)]
pub struct RttArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Use WAN coordinates (node names as NODE.DATACENTER).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub wan: Option<bool>,
    /// One or two node names (the second defaults to the agent's node).
    pub nodes: Vec<String>,
}

/// `meshgate rtt NODE1 [NODE2]`: the round trip time the network
/// coordinates estimate between two nodes, as Consul's command prints it.
pub async fn rtt(a: RttArgs) -> CliResult {
    use meshgate_state::Coord;
    let mut nodes = a.nodes.clone();
    if nodes.is_empty() || nodes.len() > 2 {
        return Err(CliError::new("One or two node names must be specified"));
    }
    let c = Client::new(&a.http)?;
    let wan = a.wan.unwrap_or(false);
    let coord = |v: &Value| serde_json::from_value::<Coord>(v.clone()).ok();
    // The second node defaults to the agent's (NODE.DC with -wan).
    if nodes.len() < 2 {
        let me: Value = c
            .get("/v1/agent/self", &[])
            .await
            .map_err(|e| CliError::new(format!("Unable to look up agent info: {}", e.message)))?
            .json()?;
        let node = me["Config"]["NodeName"].as_str().unwrap_or_default();
        nodes.push(if wan {
            let dc = me["Config"]["Datacenter"].as_str().unwrap_or_default();
            format!("{node}.{dc}")
        } else {
            node.to_string()
        });
    }
    let (found1, found2) = if wan {
        let split = |n: &str| {
            n.split_once('.')
                .filter(|(_, dc)| !dc.contains('.'))
                .map(|(a, b)| (a.to_string(), b.to_string()))
        };
        let (Some((n1, dc1)), Some((n2, dc2))) = (split(&nodes[0]), split(&nodes[1])) else {
            return Err(CliError::new(
                "Node names must be specified as <node name>.<datacenter> with -wan",
            ));
        };
        let dcs: Vec<Value> = c
            .get("/v1/coordinate/datacenters", &[])
            .await
            .map_err(|e| CliError::new(format!("Error getting coordinates: {}", e.message)))?
            .json()?;
        let find = |node: &str, dc: &str| {
            dcs.iter()
                .filter(|d| d["Datacenter"] == dc)
                .flat_map(|d| d["Coordinates"].as_array().cloned().unwrap_or_default())
                // (Entries name servers `node.dc` or `node`.)
                .find(|e| {
                    e["Node"].as_str().is_some_and(|n| {
                        n.eq_ignore_ascii_case(node)
                            || n.eq_ignore_ascii_case(&format!("{node}.{dc}"))
                    })
                })
                .and_then(|e| coord(&e["Coord"]))
        };
        (find(&n1, &dc1), find(&n2, &dc2))
    } else {
        let entries: Vec<Value> = c
            .get("/v1/coordinate/nodes", &[])
            .await
            .map_err(|e| CliError::new(format!("Error getting coordinates: {}", e.message)))?
            .json()?;
        // By network segment: the two must be in the same one (the
        // default one first).
        let of = |node: &str| -> BTreeMap<String, Coord> {
            entries
                .iter()
                .filter(|e| {
                    e["Node"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(node))
                })
                .filter_map(|e| {
                    Some((
                        e["Segment"].as_str().unwrap_or_default().to_string(),
                        coord(&e["Coord"])?,
                    ))
                })
                .collect()
        };
        let (s1, s2) = (of(&nodes[0]), of(&nodes[1]));
        match s1.iter().find(|(seg, _)| s2.contains_key(*seg)) {
            Some((seg, c1)) => (Some(c1.clone()), s2.get(seg).cloned()),
            // Node 2 unknown (node 1 found), or both known in different
            // segments: no comparable pair (Consul names node 1 then).
            None if !s1.is_empty() && s2.is_empty() => (s1.values().next().cloned(), None),
            None => (None, None),
        }
    };
    let Some(c1) = found1 else {
        return Err(CliError::new(format!(
            "Could not find a coordinate for node {:?}",
            nodes[0]
        )));
    };
    let Some(c2) = found2 else {
        return Err(CliError::new(format!(
            "Could not find a coordinate for node {:?}",
            nodes[1]
        )));
    };
    let d = c1.distance_to(&c2).ok_or_else(|| {
        CliError::new("The coordinates of the two nodes have different dimensions")
    })?;
    println!(
        "Estimated {} <-> {} rtt: {:.3} ms (using {} coordinates)",
        nodes[0],
        nodes[1],
        d.as_secs_f64() * 1000.0,
        if wan { "WAN" } else { "LAN" }
    );
    Ok(())
}

/// `meshgate force-leave NODE`.
pub async fn force_leave(a: ForceLeaveArgs) -> CliResult {
    let Some(node) = a.node else {
        return Err(CliError::new(
            "A node name must be specified to force leave.",
        ));
    };
    let c = Client::new(&a.http)?;
    let mut q = Vec::new();
    if a.prune.unwrap_or(false) {
        q.push(("prune", "1".to_string()));
    }
    if a.wan.unwrap_or(false) {
        q.push(("wan", "1".to_string()));
    }
    c.put(
        &format!("/v1/agent/force-leave/{}", escape_path(&node)),
        &q,
        None,
    )
    .await
    .map_err(|e| CliError::new(format!("Error force leaving: {}", e.message)))?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct MaintArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Enable maintenance mode.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable: Option<bool>,
    /// Disable maintenance mode.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disable: Option<bool>,
    /// Why (shown as the check's notes).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// A service ID (default: the whole node).
    #[arg(long)]
    pub service: Option<String>,
}

/// `meshgate maint`.
pub async fn maint(a: MaintArgs) -> CliResult {
    let (enable, disable) = (a.enable.unwrap_or(false), a.disable.unwrap_or(false));
    if enable && disable {
        return Err(CliError::new(
            "Only one of -enable or -disable may be provided",
        ));
    }
    if !enable && !a.reason.is_empty() {
        return Err(CliError::new("Reason may only be provided with -enable"));
    }
    if !enable && !disable && a.service.is_some() {
        return Err(CliError::new("Service requires either -enable or -disable"));
    }
    let c = Client::new(&a.http)?;
    if !enable && !disable {
        // List what is in maintenance.
        let r = c
            .get("/v1/agent/checks", &[])
            .await
            .map_err(|e| CliError::new(format!("Error querying checks: {}", e.message)))?;
        let checks: std::collections::BTreeMap<String, Value> = r.json()?;
        let me = c
            .get("/v1/agent/self", &[])
            .await
            .map_err(|e| CliError::new(format!("Error querying agent: {}", e.message)))?
            .json::<Value>()?;
        let node = me["Config"]["NodeName"].as_str().unwrap_or("").to_string();
        for (id, chk) in checks {
            let notes = chk["Notes"].as_str().unwrap_or("");
            if id == "_node_maintenance" {
                println!("Node:");
                println!("  Name:   {node}");
                println!("  Reason: {notes}");
                println!();
            } else if let Some(svc) = id.strip_prefix("_service_maintenance:") {
                println!("Service:");
                println!("  ID:     {svc}");
                println!("  Reason: {notes}");
                println!();
            }
        }
        return Ok(());
    }
    let mut q = vec![("enable", enable.to_string())];
    if enable {
        q.push(("reason", a.reason.clone()));
    }
    match &a.service {
        None => {
            c.put("/v1/agent/maintenance", &q, None)
                .await
                .map_err(|e| {
                    CliError::new(format!("Error toggling maintenance mode: {}", e.message))
                })?;
            println!(
                "Node maintenance is now {}",
                if enable { "enabled" } else { "disabled" }
            );
        }
        Some(id) => {
            c.put(
                &format!("/v1/agent/service/maintenance/{}", escape_path(id)),
                &q,
                None,
            )
            .await
            .map_err(|e| {
                CliError::new(format!("Error toggling maintenance mode: {}", e.message))
            })?;
            println!(
                "Service maintenance is now {} for \"{id}\"",
                if enable { "enabled" } else { "disabled" }
            );
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct EventArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The event name.
    #[arg(long)]
    pub name: Option<String>,
    /// Regular expression on node names.
    #[arg(long, default_value = "")]
    pub node: String,
    /// Regular expression on service names.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Regular expression on service tags (needs -service).
    #[arg(long, default_value = "")]
    pub tag: String,
    /// The payload.
    #[arg(allow_hyphen_values = true)]
    pub payload: Option<String>,
}

/// `meshgate event`.
pub async fn event(a: EventArgs) -> CliResult {
    let Some(name) = a.name.filter(|n| !n.is_empty()) else {
        return Err(CliError::new("Event name must be specified"));
    };
    if !a.tag.is_empty() && a.service.is_empty() {
        return Err(CliError::new(
            "Cannot provide tag filter without service filter.",
        ));
    }
    let c = Client::new(&a.http)?;
    let mut q = Vec::new();
    for (k, v) in [("node", &a.node), ("service", &a.service), ("tag", &a.tag)] {
        if !v.is_empty() {
            q.push((k, v.clone()));
        }
    }
    let body = a.payload.map(String::into_bytes);
    let r = c
        .put(&format!("/v1/event/fire/{}", escape_path(&name)), &q, body)
        .await
        .map_err(|e| CliError::new(format!("Error firing event: {}", e.message)))?;
    let v: Value = r.json()?;
    println!("Event ID: {}", v["ID"].as_str().unwrap_or(""));
    Ok(())
}
