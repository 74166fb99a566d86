//! `meshgate operator raft list-peers|remove-peer|transfer-leader`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use crate::client::{CliError, CliResult, Client, HttpFlags, columnize};

/// Operator commands.
#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Inspect and change the raft configuration of the servers.
    #[command(subcommand)]
    Raft(RaftCmd),
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
