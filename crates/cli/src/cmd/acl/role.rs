//! `meshgate acl role create|read|update|delete|list`.

use clap::{Args, Subcommand};
use reqwest::Method;

use super::types::{Link, Role};
use super::{
    Format, emit, format, get, get_opt, go_quote, missing_flag, node_identities, parse_format,
    policy_id_from_partial, query_escape, render, role_id_by_name, role_id_from_partial, send,
    service_identities, templated_policies,
};
use crate::client::{CliError, CliResult, Client, HttpFlags};

/// Role commands.
#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    /// Create a role.
    Create(CreateArgs),
    /// Read a role by ID (or unique prefix) or name.
    Read(ReadArgs),
    /// Update a role.
    Update(UpdateArgs),
    /// Delete a role.
    Delete(DeleteArgs),
    /// List the roles.
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The new role's name. This flag is required.
    #[arg(long)]
    pub name: Option<String>,
    /// A description of the role.
    #[arg(long, allow_hyphen_values = true)]
    pub description: Option<String>,
    /// ID (or unique prefix) of a policy to link (repeatable).
    #[arg(long = "policy-id")]
    pub policy_id: Vec<String>,
    /// Name of a policy to link (repeatable).
    #[arg(long = "policy-name")]
    pub policy_name: Vec<String>,
    /// A service identity, NAME or NAME:DC1,DC2 (repeatable).
    #[arg(long = "service-identity")]
    pub service_identity: Vec<String>,
    /// A node identity, NAME:DC (repeatable).
    #[arg(long = "node-identity")]
    pub node_identity: Vec<String>,
    /// A templated policy's name; give its variables with -var.
    #[arg(long = "templated-policy")]
    pub templated_policy: Option<String>,
    /// A file of templated policies and their variables (HCL).
    #[arg(long = "templated-policy-file")]
    pub templated_policy_file: Option<String>,
    /// A templated policy variable, NAME:VALUE (repeatable).
    #[arg(long = "var")]
    pub var: Vec<String>,
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
    /// The role's ID; a unique prefix is enough.
    #[arg(long)]
    pub id: Option<String>,
    /// The role's name.
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
    /// The role's ID; a unique prefix is enough. This flag is required.
    #[arg(long)]
    pub id: Option<String>,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new description.
    #[arg(long, allow_hyphen_values = true)]
    pub description: Option<String>,
    /// ID (or unique prefix) of a policy to link (repeatable).
    #[arg(long = "policy-id")]
    pub policy_id: Vec<String>,
    /// Name of a policy to link (repeatable).
    #[arg(long = "policy-name")]
    pub policy_name: Vec<String>,
    /// A service identity, NAME or NAME:DC1,DC2 (repeatable).
    #[arg(long = "service-identity")]
    pub service_identity: Vec<String>,
    /// A node identity, NAME:DC (repeatable).
    #[arg(long = "node-identity")]
    pub node_identity: Vec<String>,
    /// Replace the templated policies with this one.
    #[arg(long = "replace-templated-policy")]
    pub replace_templated_policy: Option<String>,
    /// Add this templated policy.
    #[arg(long = "append-templated-policy")]
    pub append_templated_policy: Option<String>,
    /// Replace the templated policies with those of this file.
    #[arg(long = "replace-templated-policy-file")]
    pub replace_templated_policy_file: Option<String>,
    /// Add the templated policies of this file.
    #[arg(long = "append-templated-policy-file")]
    pub append_templated_policy_file: Option<String>,
    /// A templated policy variable, NAME:VALUE (repeatable).
    #[arg(long = "var")]
    pub var: Vec<String>,
    /// Replace the role with exactly the flags given instead of merging.
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
    /// The role's ID; a unique prefix is enough.
    #[arg(long)]
    pub id: Option<String>,
    /// The role's name.
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

/// Runs a role subcommand.
pub async fn run(cmd: RoleCmd) -> CliResult {
    match cmd {
        RoleCmd::Create(a) => create(a).await,
        RoleCmd::Read(a) => read(a).await,
        RoleCmd::Update(a) => update(a).await,
        RoleCmd::Delete(a) => delete(a).await,
        RoleCmd::List(a) => list(a).await,
    }
}

fn show(fmt: Format, r: &Role, meta: bool) {
    emit(&render(fmt, r, || format::role(r, meta)));
}

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// The policy links of `-policy-name` and `-policy-id` (prefixes resolved);
/// with `merge`, only those not linked yet are added.
async fn policy_links(
    c: &Client,
    links: &mut Vec<Link>,
    names: &[String],
    ids: &[String],
    merge: bool,
) -> Result<(), CliError> {
    for name in names {
        if merge && links.iter().any(|l| &l.name == name) {
            continue;
        }
        links.push(Link {
            id: String::new(),
            name: name.clone(),
        });
    }
    for p in ids {
        let id = policy_id_from_partial(c, p)
            .await
            // Consul prints the (shadowed, empty) resolved ID here.
            .map_err(|e| CliError::new(format!("Error resolving policy ID : {e}")))?;
        if merge && links.iter().any(|l| l.id == id) {
            continue;
        }
        links.push(Link {
            id,
            name: String::new(),
        });
    }
    Ok(())
}

async fn create(a: CreateArgs) -> CliResult {
    let name = s(&a.name);
    if name.is_empty() {
        return Err(missing_flag("name", &["acl", "role", "create"]));
    }
    let (tp, tp_file) = (s(&a.templated_policy), s(&a.templated_policy_file));
    if a.policy_name.is_empty()
        && a.policy_id.is_empty()
        && a.service_identity.is_empty()
        && a.node_identity.is_empty()
        && tp.is_empty()
        && tp_file.is_empty()
    {
        return Err(CliError::new(
            "Cannot create a role without specifying -policy-name, -policy-id, -service-identity, -node-identity, -templated-policy-file or -templated-policy at least once",
        ));
    }
    if !tp.is_empty() && !tp_file.is_empty() {
        return Err(CliError::new(
            "Cannot combine the use of templated-policy flag with templated-policy-file. To create a role with a single templated policy and simple use case, use -templated-policy. For multiple templated policies and more complicated use cases, use -templated-policy-file",
        ));
    }
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let mut r = Role {
        name: name.into(),
        description: s(&a.description).into(),
        ..Default::default()
    };
    policy_links(&c, &mut r.policies, &a.policy_name, &a.policy_id, false).await?;
    r.service_identities = service_identities(&a.service_identity).map_err(CliError::new)?;
    r.node_identities = node_identities(&a.node_identity).map_err(CliError::new)?;
    r.templated_policies = templated_policies(tp, tp_file, &a.var).map_err(CliError::new)?;
    let created: Role = send(&c, Method::PUT, "/v1/acl/role", &r)
        .await
        .map_err(|e| CliError::new(format!("Failed to create new role: {e}")))?;
    show(fmt, &created, a.meta.unwrap_or(false));
    Ok(())
}

async fn read(a: ReadArgs) -> CliResult {
    let (id, name) = (s(&a.id), s(&a.name));
    if id.is_empty() && name.is_empty() {
        return Err(CliError::new(
            "Must specify either the -id or -name parameters",
        ));
    }
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let r = if !id.is_empty() {
        let id = role_id_from_partial(&c, id)
            .await
            .map_err(|e| CliError::new(format!("Error determining role ID: {e}")))?;
        get_opt::<Role>(&c, &format!("/v1/acl/role/{id}"))
            .await
            .map_err(|e| CliError::new(format!("Error reading role {}: {e}", go_quote(&id))))?
            .ok_or_else(|| CliError::new(format!("Role not found with ID {}", go_quote(&id))))?
    } else {
        get_opt::<Role>(&c, &format!("/v1/acl/role/name/{}", query_escape(name)))
            .await
            .map_err(|e| CliError::new(format!("Error reading role {}: {e}", go_quote(name))))?
            .ok_or_else(|| CliError::new(format!("Role not found with name {}", go_quote(name))))?
    };
    show(fmt, &r, a.meta.unwrap_or(false));
    Ok(())
}

async fn update(a: UpdateArgs) -> CliResult {
    let partial = s(&a.id);
    if partial.is_empty() {
        return Err(CliError::new(
            "Cannot update a role without specifying the -id parameter",
        ));
    }
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let id = role_id_from_partial(&c, partial)
        .await
        .map_err(|e| CliError::new(format!("Error determining role ID: {e}")))?;
    let svcs = service_identities(&a.service_identity).map_err(CliError::new)?;
    let nodes = node_identities(&a.node_identity).map_err(CliError::new)?;
    let append_tp =
        !s(&a.append_templated_policy).is_empty() || !s(&a.append_templated_policy_file).is_empty();
    let replace_tp = !s(&a.replace_templated_policy).is_empty()
        || !s(&a.replace_templated_policy_file).is_empty();
    if append_tp && replace_tp {
        return Err(CliError::new(
            "Cannot combine the use of append-templated-policy flags with replace-templated-policy. To set or overwrite existing templated policies, use -replace-templated-policy or -replace-templated-policy-file. To append to existing templated policies, use -append-templated-policy or -append-templated-policy-file.",
        ));
    }
    let tps = if append_tp {
        templated_policies(
            s(&a.append_templated_policy),
            s(&a.append_templated_policy_file),
            &a.var,
        )
    } else {
        templated_policies(
            s(&a.replace_templated_policy),
            s(&a.replace_templated_policy_file),
            &a.var,
        )
    }
    .map_err(CliError::new)?;
    let current: Role = get_opt(&c, &format!("/v1/acl/role/{id}"))
        .await
        .map_err(|e| CliError::new(format!("Error when retrieving current role: {e}")))?
        .ok_or_else(|| CliError::new(format!("Role not found with ID {}", go_quote(&id))))?;
    let r = if a.no_merge.unwrap_or(false) {
        let mut r = Role {
            id: id.clone(),
            name: s(&a.name).into(),
            description: s(&a.description).into(),
            service_identities: svcs,
            node_identities: nodes,
            templated_policies: tps,
            ..Default::default()
        };
        policy_links(&c, &mut r.policies, &a.policy_name, &a.policy_id, false).await?;
        r
    } else {
        // Merge: add the given policies and identities to the current ones.
        let mut r = current;
        if !s(&a.name).is_empty() {
            r.name = s(&a.name).into();
        }
        if !s(&a.description).is_empty() {
            r.description = s(&a.description).into();
        }
        policy_links(&c, &mut r.policies, &a.policy_name, &a.policy_id, true).await?;
        for svc in svcs {
            match r
                .service_identities
                .iter_mut()
                .find(|x| x.service_name == svc.service_name)
            {
                Some(x) => *x = svc,
                None => r.service_identities.push(svc),
            }
        }
        for n in nodes {
            if !r.node_identities.contains(&n) {
                r.node_identities.push(n);
            }
        }
        if replace_tp {
            r.templated_policies = tps;
        } else {
            r.templated_policies.extend(tps);
        }
        r
    };
    let updated: Role = send(&c, Method::PUT, &format!("/v1/acl/role/{id}"), &r)
        .await
        .map_err(|e| CliError::new(format!("Error updating role {}: {e}", go_quote(&id))))?;
    show(fmt, &updated, a.meta.unwrap_or(false));
    Ok(())
}

async fn delete(a: DeleteArgs) -> CliResult {
    let (id, name) = (s(&a.id), s(&a.name));
    if id.is_empty() && name.is_empty() {
        return Err(CliError::new("Must specify the -id or -name parameters"));
    }
    let c = Client::new(&a.http)?;
    let id = if !id.is_empty() {
        role_id_from_partial(&c, id).await
    } else {
        role_id_by_name(&c, name).await
    }
    .map_err(|e| CliError::new(format!("Error determining role ID: {e}")))?;
    super::delete(&c, &format!("/v1/acl/role/{id}"))
        .await
        .map_err(|e| CliError::new(format!("Error deleting role {}: {e}", go_quote(&id))))?;
    println!("Role {} deleted successfully", go_quote(&id));
    Ok(())
}

async fn list(a: ListArgs) -> CliResult {
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let list: Vec<Role> = get(&c, "/v1/acl/roles", &[])
        .await
        .map_err(|e| CliError::new(format!("Failed to retrieve the role list: {e}")))?;
    emit(&render(fmt, &list, || {
        format::role_list(&list, a.meta.unwrap_or(false))
    }));
    Ok(())
}
