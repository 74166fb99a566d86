//! `meshgate acl policy create|read|update|delete|list`.

use clap::{Args, Subcommand};
use reqwest::Method;

use super::types::{Policy, PolicyListEntry};
use super::{
    Format, emit, format, get, go_quote, load_data_source, missing_flag, parse_format,
    policy_by_name, policy_id_by_name, policy_id_from_partial, render, send,
};
use crate::client::{CliError, CliResult, Client, HttpFlags};

/// Policy commands.
#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Create a policy.
    Create(CreateArgs),
    /// Read a policy by ID (or unique ID prefix) or name.
    Read(ReadArgs),
    /// Update a policy.
    Update(UpdateArgs),
    /// Delete a policy.
    Delete(DeleteArgs),
    /// List the policies.
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The new policy's name. This flag is required.
    #[arg(long)]
    pub name: Option<String>,
    /// A description of the policy.
    #[arg(long, allow_hyphen_values = true)]
    pub description: Option<String>,
    /// Datacenter the policy is valid within (repeatable).
    #[arg(long = "valid-datacenter")]
    pub valid_datacenter: Vec<String>,
    /// The rules: literal, @file, or - for stdin.
    #[arg(long, allow_hyphen_values = true)]
    pub rules: Option<String>,
    /// Show the hash and the Raft indices.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub meta: Option<bool>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The policy's ID; a unique prefix is enough.
    #[arg(long)]
    pub id: Option<String>,
    /// The policy's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Show the hash and the Raft indices.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub meta: Option<bool>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The policy's ID; a unique prefix is enough.
    #[arg(long)]
    pub id: Option<String>,
    /// The policy's (new) name; selects the policy when -id is absent.
    #[arg(long)]
    pub name: Option<String>,
    /// A description of the policy.
    #[arg(long, allow_hyphen_values = true)]
    pub description: Option<String>,
    /// Datacenter the policy is valid within (repeatable).
    #[arg(long = "valid-datacenter")]
    pub valid_datacenter: Vec<String>,
    /// The rules: literal, @file, or - for stdin.
    #[arg(long, allow_hyphen_values = true)]
    pub rules: Option<String>,
    /// Replace the policy with exactly the flags given instead of merging.
    #[arg(long = "no-merge", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub no_merge: Option<bool>,
    /// Show the hash and the Raft indices.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub meta: Option<bool>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The policy's ID; a unique prefix is enough.
    #[arg(long)]
    pub id: Option<String>,
    /// The policy's name.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Show the hash and the Raft indices.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub meta: Option<bool>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

/// Runs a policy subcommand.
pub async fn run(cmd: PolicyCmd) -> CliResult {
    match cmd {
        PolicyCmd::Create(a) => create(a).await,
        PolicyCmd::Read(a) => read(a).await,
        PolicyCmd::Update(a) => update(a).await,
        PolicyCmd::Delete(a) => delete(a).await,
        PolicyCmd::List(a) => list(a).await,
    }
}

fn show(fmt: Format, p: &Policy, meta: bool) {
    emit(&render(fmt, p, || format::policy(p, meta)));
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

async fn create(a: CreateArgs) -> CliResult {
    let Some(name) = nonempty(&a.name) else {
        return Err(missing_flag("name", &["acl", "policy", "create"]));
    };
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let rules = load_data_source(a.rules.as_deref().unwrap_or(""))
        .map_err(|e| CliError::new(format!("Error loading rules: {e}")))?;
    let new = Policy {
        name: name.into(),
        description: a.description.clone().unwrap_or_default(),
        rules,
        datacenters: (!a.valid_datacenter.is_empty()).then(|| a.valid_datacenter.clone()),
        ..Default::default()
    };
    let p: Policy = send(&c, Method::PUT, "/v1/acl/policy", &new)
        .await
        .map_err(|e| CliError::new(format!("Failed to create new policy: {e}")))?;
    show(fmt, &p, a.meta.unwrap_or(false));
    Ok(())
}

async fn read(a: ReadArgs) -> CliResult {
    let (id, name) = (nonempty(&a.id), nonempty(&a.name));
    if id.is_none() && name.is_none() {
        return Err(CliError::new(
            "Must specify either the -id or -name parameters",
        ));
    }
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let found = if let Some(partial) = id {
        let id = policy_id_from_partial(&c, partial)
            .await
            .map_err(|e| CliError::new(format!("Error determining policy ID: {e}")))?;
        get::<Policy>(&c, &format!("/v1/acl/policy/{id}"), &[])
            .await
            .map_err(|e| {
                CliError::new(format!(
                    "Error reading policy {}: {e}",
                    go_quote(&format!("id:{id}"))
                ))
            })?
    } else {
        let name = name.unwrap_or_default();
        policy_by_name(&c, name)
            .await
            .map_err(|e| {
                CliError::new(format!(
                    "Error reading policy {}: {e}",
                    go_quote(&format!("name:{name}"))
                ))
            })?
            .ok_or_else(|| CliError::new(format!("Error policy not found: {name}")))?
    };
    show(fmt, &found, a.meta.unwrap_or(false));
    Ok(())
}

async fn update(a: UpdateArgs) -> CliResult {
    let (id_flag, name_flag) = (nonempty(&a.id), nonempty(&a.name));
    if id_flag.is_none() && name_flag.is_none() {
        return Err(CliError::new(
            "Must specify either the -id or -name parameters",
        ));
    }
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let id = match id_flag {
        Some(p) => policy_id_from_partial(&c, p).await,
        None => policy_id_by_name(&c, name_flag.unwrap_or_default()).await,
    }
    .map_err(|e| CliError::new(format!("Error determining policy ID: {e}")))?;
    let rules = load_data_source(a.rules.as_deref().unwrap_or(""))
        .map_err(|e| CliError::new(format!("Error loading data source: {e}")))?;
    let dcs = (!a.valid_datacenter.is_empty()).then(|| a.valid_datacenter.clone());
    let updated = if a.no_merge.unwrap_or(false) {
        Policy {
            id: id.clone(),
            name: a.name.clone().unwrap_or_default(),
            description: a.description.clone().unwrap_or_default(),
            rules,
            datacenters: dcs,
            ..Default::default()
        }
    } else {
        let cur: Policy = get(&c, &format!("/v1/acl/policy/{id}"), &[])
            .await
            .map_err(|e| CliError::new(format!("Error reading policy {}: {e}", go_quote(&id))))?;
        Policy {
            id: id.clone(),
            // A flag that is present counts, even with an empty value.
            name: a.name.clone().unwrap_or(cur.name),
            description: a.description.clone().unwrap_or(cur.description),
            rules: if a.rules.is_some() { rules } else { cur.rules },
            datacenters: dcs.or(cur.datacenters),
            ..Default::default()
        }
    };
    let p: Policy = send(&c, Method::PUT, &format!("/v1/acl/policy/{id}"), &updated)
        .await
        .map_err(|e| CliError::new(format!("Error updating policy {}: {e}", go_quote(&id))))?;
    show(fmt, &p, a.meta.unwrap_or(false));
    Ok(())
}

async fn delete(a: DeleteArgs) -> CliResult {
    let (id_flag, name_flag) = (nonempty(&a.id), nonempty(&a.name));
    if id_flag.is_none() && name_flag.is_none() {
        return Err(CliError::new(
            "Must specify either the -id or -name parameters",
        ));
    }
    let c = Client::new(&a.http)?;
    let id = match id_flag {
        Some(p) => policy_id_from_partial(&c, p).await,
        None => policy_id_by_name(&c, name_flag.unwrap_or_default()).await,
    }
    .map_err(|e| CliError::new(format!("Error determining policy ID: {e}")))?;
    super::delete(&c, &format!("/v1/acl/policy/{id}"))
        .await
        .map_err(|e| CliError::new(format!("Error deleting policy {}: {e}", go_quote(&id))))?;
    println!("Policy {} deleted successfully", go_quote(&id));
    Ok(())
}

async fn list(a: ListArgs) -> CliResult {
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let list: Vec<Policy> = get(&c, "/v1/acl/policies", &[])
        .await
        .map_err(|e| CliError::new(format!("Failed to retrieve the policy list: {e}")))?;
    let meta = a.meta.unwrap_or(false);
    let out = match fmt {
        Format::Pretty => format::policy_list(&list, meta),
        Format::Json => {
            let entries: Vec<PolicyListEntry> = list.into_iter().map(Into::into).collect();
            super::go_json(&entries)
        }
    };
    emit(&out);
    Ok(())
}
