//! `meshgate operator raft list-peers|remove-peer|transfer-leader`,
//! `operator autopilot get-config|set-config|state` and
//! `operator usage instances`, with Consul's flags and output.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use crate::client::{CliError, CliResult, Client, HttpFlags, columnize, go_bool, go_duration};

/// Operator commands.
#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Inspect and change the raft configuration of the servers.
    #[command(subcommand)]
    Raft(RaftCmd),
    /// Read and change autopilot's configuration; show its view of the
    /// servers.
    #[command(subcommand)]
    Autopilot(AutopilotCmd),
    /// Counts of what the catalog holds.
    #[command(subcommand)]
    Usage(UsageCmd),
}

/// `operator autopilot` commands.
#[derive(Subcommand, Debug)]
pub enum AutopilotCmd {
    /// Print the autopilot configuration.
    GetConfig(ListArgs),
    /// Change the autopilot configuration (the flags given; the rest is
    /// kept), with a check-and-set against the configuration read.
    SetConfig(SetConfigArgs),
    /// Print autopilot's view of the servers: health, failure tolerance,
    /// leader, voters.
    State(StateArgs),
}

/// `operator usage` commands.
#[derive(Subcommand, Debug)]
pub enum UsageCmd {
    /// Count the services and service instances (all, and by mesh kind).
    Instances(InstancesArgs),
}

#[derive(Args, Debug)]
pub struct SetConfigArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Remove dead servers when new ones are added: `true` or `false`.
    #[arg(long = "cleanup-dead-servers", value_name = "BOOL", value_parser = go_bool)]
    pub cleanup_dead_servers: Option<bool>,
    /// How many log entries a server may trail the leader by and still be
    /// healthy.
    #[arg(long = "max-trailing-logs", value_name = "N")]
    pub max_trailing_logs: Option<u64>,
    /// The fewest servers below which dead servers are not pruned.
    #[arg(long = "min-quorum", value_name = "N")]
    pub min_quorum: Option<u64>,
    /// How long a server may go without contact from the leader and still
    /// be healthy, such as `200ms`.
    #[arg(long = "last-contact-threshold", value_name = "DURATION", value_parser = go_duration)]
    pub last_contact_threshold: Option<std::time::Duration>,
    /// How long a server must be healthy before it counts as stable, such
    /// as `10s`.
    #[arg(long = "server-stabilization-time", value_name = "DURATION", value_parser = go_duration)]
    pub server_stabilization_time: Option<std::time::Duration>,
    /// Stored as given (Consul Enterprise's redundancy zones; no effect here).
    #[arg(long = "redundancy-zone-tag", value_name = "TAG")]
    pub redundancy_zone_tag: Option<String>,
    /// Stored as given (Consul Enterprise's upgrade migrations; no effect
    /// here): `true` or `false`.
    #[arg(long = "disable-upgrade-migration", value_name = "BOOL", value_parser = go_bool)]
    pub disable_upgrade_migration: Option<bool>,
    /// Stored as given (Consul Enterprise's upgrade migrations; no effect
    /// here).
    #[arg(long = "upgrade-version-tag", value_name = "TAG")]
    pub upgrade_version_tag: Option<String>,
}

#[derive(Args, Debug)]
pub struct StateArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Output format: `pretty` or `json`.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct InstancesArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Only the counts of instances that are not proxies or gateways.
    #[arg(long)]
    pub billable: bool,
    /// Only the counts of mesh instances, by kind.
    #[arg(long)]
    pub connect: bool,
    /// Every datacenter (one here: the agent's).
    #[arg(long = "all-datacenters")]
    pub all_datacenters: bool,
}

/// `operator raft` commands.
#[derive(Subcommand, Debug)]
pub enum RaftCmd {
    /// List the servers of the raft configuration.
    ListPeers(ListArgs),
    /// Remove a server from the raft configuration.
    RemovePeer(RemoveArgs),
    /// Move the leadership to another server (-id), or to the most
    /// up-to-date one.
    TransferLeader(TransferArgs),
}

#[derive(Args, Debug)]
pub struct TransferArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The ID of the server to make leader (as `list-peers` shows it).
    #[arg(long, default_value = "")]
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub http: HttpFlags,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The ID of the server to remove.
    #[arg(long, default_value = "")]
    pub id: String,
    /// The address (IP:port) of the server to remove.
    #[arg(long, default_value = "")]
    pub address: String,
}

pub async fn run(cmd: OperatorCmd) -> CliResult {
    match cmd {
        OperatorCmd::Raft(RaftCmd::ListPeers(a)) => list(a).await,
        OperatorCmd::Raft(RaftCmd::RemovePeer(a)) => remove(a).await,
        OperatorCmd::Raft(RaftCmd::TransferLeader(a)) => transfer(a).await,
        OperatorCmd::Autopilot(AutopilotCmd::GetConfig(a)) => get_config(a).await,
        OperatorCmd::Autopilot(AutopilotCmd::SetConfig(a)) => set_config(a).await,
        OperatorCmd::Autopilot(AutopilotCmd::State(a)) => state(a).await,
        OperatorCmd::Usage(UsageCmd::Instances(a)) => instances(a).await,
    }
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

async fn list(a: ListArgs) -> CliResult {
    let c = Client::new(&a.http)?;
    let v: Value = c
        .get("/v1/operator/raft/configuration", &[])
        .await
        .map_err(|e| {
            CliError::new(format!(
                "Failed to retrieve raft configuration: {}",
                e.message
            ))
        })?
        .json()?;
    let mut rows = vec![vec![
        "Node".to_string(),
        "ID".into(),
        "Address".into(),
        "State".into(),
        "Voter".into(),
        "RaftProtocol".into(),
    ]];
    for srv in v
        .get("Servers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let state = if srv.get("Leader").and_then(Value::as_bool) == Some(true) {
            "leader"
        } else {
            "follower"
        };
        rows.push(vec![
            s(srv, "Node"),
            s(srv, "ID"),
            s(srv, "Address"),
            state.into(),
            s(srv, "Voter"),
            s(srv, "ProtocolVersion"),
        ]);
    }
    println!("{}", columnize(&rows));
    Ok(())
}

async fn remove(a: RemoveArgs) -> CliResult {
    if a.id.is_empty() == a.address.is_empty() {
        return Err(CliError::new(
            "Error removing peer: Exactly one of -id or -address is required",
        ));
    }
    let c = Client::new(&a.http)?;
    let q = if a.id.is_empty() {
        vec![("address", a.address.clone())]
    } else {
        vec![("id", a.id.clone())]
    };
    let r = c
        .send(Method::DELETE, "/v1/operator/raft/peer", &q, None)
        .await?;
    if r.status != 200 {
        return Err(CliError::new(format!(
            "Error removing peer: {}",
            r.error_text()
        )));
    }
    if a.id.is_empty() {
        println!("Removed peer with address \"{}\"", a.address);
    } else {
        println!("Removed peer with id \"{}\"", a.id);
    }
    Ok(())
}

async fn transfer(a: TransferArgs) -> CliResult {
    let c = Client::new(&a.http)
        .map_err(|e| CliError::new(format!("Error initializing client: {}", e.message)))?;
    let q = if a.id.is_empty() {
        Vec::new()
    } else {
        vec![("id", a.id.clone())]
    };
    // The upstream wording, spelling included, for scripts that match it.
    let fail = |why: String| {
        CliError::new(format!(
            "Error transfering leadership: Failed to transfer leadership{why}"
        ))
    };
    let r = c
        .send(Method::POST, "/v1/operator/raft/transfer-leader", &q, None)
        .await
        .map_err(|e| fail(format!(" {}", e.message)))?;
    if r.status != 200 {
        return Err(fail(format!(" {}", r.error_text())));
    }
    let v: Value = r.json()?;
    if v["Success"] != true {
        return Err(fail(String::new()));
    }
    println!("Success");
    Ok(())
}

/// The autopilot configuration as the agent answers it.
async fn read_config(c: &Client) -> Result<Value, CliError> {
    c.get("/v1/operator/autopilot/configuration", &[])
        .await?
        .json()
}

/// A duration field of the agent's answer, written as Go writes durations.
fn duration_field(v: &Value, k: &str) -> String {
    let text = s(v, k);
    match meshgate_types::duration::parse(&text) {
        Ok(d) => meshgate_types::duration::format(d),
        Err(_) => text,
    }
}

/// `"text"` as Go's `%q` writes it (escapes as JSON does).
fn quoted(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

async fn get_config(a: ListArgs) -> CliResult {
    let c = Client::new(&a.http)
        .map_err(|e| CliError::new(format!("Error initializing client: {}", e.message)))?;
    let v = read_config(&c).await.map_err(|e| {
        CliError::new(format!(
            "Error querying Autopilot configuration: {}",
            e.message
        ))
    })?;
    println!("CleanupDeadServers = {}", s(&v, "CleanupDeadServers"));
    println!(
        "LastContactThreshold = {}",
        duration_field(&v, "LastContactThreshold")
    );
    println!("MaxTrailingLogs = {}", s(&v, "MaxTrailingLogs"));
    println!("MinQuorum = {}", s(&v, "MinQuorum"));
    println!(
        "ServerStabilizationTime = {}",
        duration_field(&v, "ServerStabilizationTime")
    );
    println!(
        "RedundancyZoneTag = {}",
        quoted(&s(&v, "RedundancyZoneTag"))
    );
    println!(
        "DisableUpgradeMigration = {}",
        s(&v, "DisableUpgradeMigration")
    );
    println!(
        "UpgradeVersionTag = {}",
        quoted(&s(&v, "UpgradeVersionTag"))
    );
    Ok(())
}

/// Reads the configuration, changes what the flags give and writes it back
/// with `?cas=` its `ModifyIndex`: a change made by someone else in between
/// is not overwritten (exit 1, as Consul's).
async fn set_config(a: SetConfigArgs) -> CliResult {
    let c = Client::new(&a.http)
        .map_err(|e| CliError::new(format!("Error initializing client: {}", e.message)))?;
    let mut v = read_config(&c).await.map_err(|e| {
        CliError::new(format!(
            "Error querying Autopilot configuration: {}",
            e.message
        ))
    })?;
    let cas = v.get("ModifyIndex").and_then(Value::as_u64).unwrap_or(0);
    let Some(m) = v.as_object_mut() else {
        return Err(CliError::new(
            "Error querying Autopilot configuration: not a JSON object",
        ));
    };
    m.remove("CreateIndex");
    m.remove("ModifyIndex");
    let go = |d: std::time::Duration| Value::String(meshgate_types::duration::format(d));
    let changes = [
        (
            "CleanupDeadServers",
            a.cleanup_dead_servers.map(Value::Bool),
        ),
        ("MaxTrailingLogs", a.max_trailing_logs.map(Value::from)),
        ("MinQuorum", a.min_quorum.map(Value::from)),
        ("LastContactThreshold", a.last_contact_threshold.map(go)),
        (
            "ServerStabilizationTime",
            a.server_stabilization_time.map(go),
        ),
        (
            "RedundancyZoneTag",
            a.redundancy_zone_tag.map(Value::String),
        ),
        (
            "DisableUpgradeMigration",
            a.disable_upgrade_migration.map(Value::Bool),
        ),
        (
            "UpgradeVersionTag",
            a.upgrade_version_tag.map(Value::String),
        ),
    ];
    for (k, value) in changes {
        if let Some(value) = value {
            m.insert(k.to_string(), value);
        }
    }
    let body = serde_json::to_vec(&v).map_err(|e| CliError::new(e.to_string()))?;
    let r = c
        .put(
            "/v1/operator/autopilot/configuration",
            &[("cas", cas.to_string())],
            Some(body),
        )
        .await
        .map_err(|e| {
            CliError::new(format!(
                "Error setting Autopilot configuration: {}",
                e.message
            ))
        })?;
    if r.json::<Value>()? == Value::Bool(true) {
        println!("Configuration updated!");
        Ok(())
    } else {
        println!("Configuration could not be atomically updated, please try again");
        Err(CliError::new(""))
    }
}

async fn state(a: StateArgs) -> CliResult {
    if a.format != "pretty" && a.format != "json" {
        return Err(CliError::new(format!("Unknown format: {}", a.format)));
    }
    let c = Client::new(&a.http)
        .map_err(|e| CliError::new(format!("Error initializing client: {}", e.message)))?;
    let v: Value = c
        .get("/v1/operator/autopilot/state", &[])
        .await
        .and_then(|r| r.json())
        .map_err(|e| CliError::new(format!("Error querying Autopilot state: {}", e.message)))?;
    if a.format == "json" {
        println!("{}", indent4(&v));
    } else {
        print!("{}", pretty_state(&v));
    }
    Ok(())
}

/// JSON indented by four spaces, as Go's `json.MarshalIndent(v, "", "    ")`.
fn indent4(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    match serde::Serialize::serialize(v, &mut ser) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => v.to_string(),
    }
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// Consul's `pretty` layout of the autopilot state.
fn pretty_state(v: &Value) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "Healthy:                      {}", s(v, "Healthy"));
    let _ = writeln!(
        o,
        "Failure Tolerance:            {}",
        s(v, "FailureTolerance")
    );
    let _ = writeln!(
        o,
        "Optimistic Failure Tolerance: {}",
        s(v, "OptimisticFailureTolerance")
    );
    let _ = writeln!(o, "Leader:                       {}", s(v, "Leader"));
    o.push_str("Voters:\n");
    for id in strings(v, "Voters") {
        let _ = writeln!(o, "   {id}");
    }
    let replicas = strings(v, "ReadReplicas");
    if !replicas.is_empty() {
        o.push_str("Read Replicas:\n");
        for id in replicas {
            let _ = writeln!(o, "   {id}");
        }
    }
    o.push_str("Servers:\n");
    for (id, srv) in sorted_members(v, "Servers") {
        let _ = writeln!(o, "   {id}");
        for (label, key) in [
            ("Name", "Name"),
            ("Address", "Address"),
            ("Version", "Version"),
            ("Status", "Status"),
            ("Node Type", "NodeType"),
            ("Node Status", "NodeStatus"),
            ("Healthy", "Healthy"),
        ] {
            let _ = writeln!(o, "      {:<17}{}", format!("{label}:"), s(srv, key));
        }
        let _ = writeln!(
            o,
            "      Last Contact:    {}",
            duration_field(srv, "LastContact")
        );
        let _ = writeln!(o, "      Last Term:       {}", s(srv, "LastTerm"));
        let _ = writeln!(o, "      Last Index:      {}", s(srv, "LastIndex"));
        for (label, key) in [
            ("Redundancy Zone", "RedundancyZone"),
            ("Upgrade Version", "UpgradeVersion"),
        ] {
            let text = s(srv, key);
            if !text.is_empty() {
                let _ = writeln!(o, "      {label}: {text}");
            }
        }
        if srv.get("ReadReplica").and_then(Value::as_bool) == Some(true) {
            o.push_str("      Read Replica:    true\n");
        }
        let meta = sorted_members(srv, "Meta");
        if !meta.is_empty() {
            o.push_str("      Meta\n");
            for (k, val) in meta {
                let _ = writeln!(
                    o,
                    "         {}: {}",
                    quoted(k),
                    quoted(val.as_str().unwrap_or_default())
                );
            }
        }
    }
    o
}

/// The members of the object `v[k]`, by name (none when it is not an
/// object).
fn sorted_members<'a>(v: &'a Value, k: &str) -> Vec<(&'a String, &'a Value)> {
    let mut m: Vec<(&String, &Value)> = v
        .get(k)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .collect();
    m.sort_by(|a, b| a.0.cmp(b.0));
    m
}

/// Columns padded as Go's `tabwriter` with a minimum width of 0, padding 6.
fn tabulate(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter(|r| i + 1 < r.len())
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i + 1 < r.len() {
                out.push_str(cell);
                out.push_str(&" ".repeat(widths[i] + 6 - cell.chars().count()));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out.trim().to_string()
}

fn count(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// `operator usage instances`: Consul's tables of billable and mesh
/// service instances.
async fn instances(a: InstancesArgs) -> CliResult {
    if a.billable && a.connect {
        return Err(CliError::new(
            "Cannot specify both -billable and -connect flags",
        ));
    }
    let c = Client::new(&a.http)
        .map_err(|e| CliError::new(format!("Error connecting to Consul agent: {}", e.message)))?;
    let q = if a.all_datacenters {
        vec![("global", String::new())]
    } else {
        Vec::new()
    };
    let v: Value = c
        .get("/v1/operator/usage", &q)
        .await
        .and_then(|r| r.json())
        .map_err(|e| CliError::new(format!("Error fetching usage information: {}", e.message)))?;
    let dcs = sorted_members(&v, "Usage");
    let with_dc = a.all_datacenters;
    let total = |rows: &mut Vec<Vec<String>>, cells: Vec<String>| {
        if with_dc {
            rows.push(vec![String::new(); cells.len() + 1]);
            let mut t = vec!["Total".to_string()];
            t.extend(cells);
            rows.push(t);
        }
    };
    if !a.connect {
        let billable: u64 = dcs
            .iter()
            .map(|(_, u)| count(u, "BillableServiceInstances"))
            .sum();
        println!("Billable Service Instances Total: {billable}");
        for (dc, u) in &dcs {
            println!(
                "{dc} Billable Service Instances: {}",
                count(u, "BillableServiceInstances")
            );
        }
        println!("\nBillable Services");
        let mut rows = vec![head(with_dc, "Services")];
        let (mut services, mut instances) = (0, 0);
        for (dc, u) in &dcs {
            let mut r = dc_cell(with_dc, dc);
            r.push(count(u, "Services").to_string());
            r.push(count(u, "BillableServiceInstances").to_string());
            services += count(u, "Services");
            instances += count(u, "BillableServiceInstances");
            rows.push(r);
        }
        total(&mut rows, vec![services.to_string(), instances.to_string()]);
        println!("{}\n", tabulate(&rows));
    }
    if !a.billable {
        println!("Connect Services");
        let mut rows = vec![head(with_dc, "Type")];
        let mut instances = 0;
        for (dc, u) in &dcs {
            for (kind, n) in sorted_members(u, "ConnectServiceInstances") {
                let mut r = dc_cell(with_dc, dc);
                r.push(kind.clone());
                r.push(n.as_u64().unwrap_or(0).to_string());
                instances += n.as_u64().unwrap_or(0);
                rows.push(r);
            }
        }
        total(&mut rows, vec![String::new(), instances.to_string()]);
        println!("{}", tabulate(&rows));
    }
    Ok(())
}

fn head(with_dc: bool, what: &str) -> Vec<String> {
    let mut h = dc_cell(with_dc, "Datacenter");
    h.push(what.to_string());
    h.push("Service instances".to_string());
    h
}

fn dc_cell(with_dc: bool, dc: &str) -> Vec<String> {
    if with_dc {
        vec![dc.to_string()]
    } else {
        Vec::new()
    }
}
