//! `meshgate acl token create|read|update|delete|list|clone`.

use clap::{Args, Subcommand};
use reqwest::Method;

use super::types::{Link, Token, TokenExpanded, TokenListEntry};
use super::{
    Format, emit, format, get, go_quote, node_identities, parse_format, policy_id_from_partial,
    render, role_id_from_partial, send, service_identities, templated_policies,
    token_accessor_from_partial,
};
use crate::client::{CliError, CliResult, Client, HttpFlags};

/// Token commands.
#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token.
    Create(CreateArgs),
    /// Read a token by accessor ID (or unique prefix), or the token in use (-self).
    Read(ReadArgs),
    /// Update a token.
    Update(UpdateArgs),
    /// Delete a token.
    Delete(DeleteArgs),
    /// List the tokens.
    List(ListArgs),
    /// Clone a token: same links and identities, new accessor and secret.
    Clone(CloneArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Create the token with this accessor ID (a UUID).
    #[arg(long)]
    pub accessor: Option<String>,
    /// Create the token with this secret ID (a UUID).
    #[arg(long)]
    pub secret: Option<String>,
    /// A description of the token.
    #[arg(long, allow_hyphen_values = true)]
    pub description: Option<String>,
    /// Create a datacenter-local token.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub local: Option<bool>,
    /// How long the token is valid (a Go duration: 30m, 24h).
    #[arg(long = "expires-ttl", allow_hyphen_values = true)]
    pub expires_ttl: Option<String>,
    /// ID (or unique prefix) of a policy to link (repeatable).
    #[arg(long = "policy-id")]
    pub policy_id: Vec<String>,
    /// Name of a policy to link (repeatable).
    #[arg(long = "policy-name")]
    pub policy_name: Vec<String>,
    /// ID (or unique prefix) of a role to link (repeatable).
    #[arg(long = "role-id")]
    pub role_id: Vec<String>,
    /// Name of a role to link (repeatable).
    #[arg(long = "role-name")]
    pub role_name: Vec<String>,
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
    /// The token's accessor ID; a unique prefix is enough.
    #[arg(long = "accessor-id")]
    pub accessor_id: Option<String>,
    /// Deprecated: use -accessor-id.
    #[arg(long, hide = true)]
    pub id: Option<String>,
    /// Read the token the request is made with.
    #[arg(long = "self", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub self_: Option<bool>,
    /// Also show the policies and roles behind the token.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub expanded: Option<bool>,
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
    /// The token's accessor ID; a unique prefix is enough.
    #[arg(long = "accessor-id")]
    pub accessor_id: Option<String>,
    /// Deprecated: use -accessor-id.
    #[arg(long, hide = true)]
    pub id: Option<String>,
    /// A new description (an empty value keeps the current one).
    #[arg(long, allow_hyphen_values = true)]
    pub description: Option<String>,
    /// Replace the policies with these IDs (repeatable).
    #[arg(long = "policy-id")]
    pub policy_id: Vec<String>,
    /// Replace the policies with these names (repeatable).
    #[arg(long = "policy-name")]
    pub policy_name: Vec<String>,
    /// Add a policy by ID (repeatable).
    #[arg(long = "append-policy-id")]
    pub append_policy_id: Vec<String>,
    /// Add a policy by name (repeatable).
    #[arg(long = "append-policy-name")]
    pub append_policy_name: Vec<String>,
    /// Replace the roles with these IDs (repeatable).
    #[arg(long = "role-id")]
    pub role_id: Vec<String>,
    /// Replace the roles with these names (repeatable).
    #[arg(long = "role-name")]
    pub role_name: Vec<String>,
    /// Add a role by ID (repeatable).
    #[arg(long = "append-role-id")]
    pub append_role_id: Vec<String>,
    /// Add a role by name (repeatable).
    #[arg(long = "append-role-name")]
    pub append_role_name: Vec<String>,
    /// Set the service identities, NAME or NAME:DC1,DC2 (repeatable).
    #[arg(long = "service-identity")]
    pub service_identity: Vec<String>,
    /// Add a service identity (repeatable).
    #[arg(long = "append-service-identity")]
    pub append_service_identity: Vec<String>,
    /// Set the node identities, NAME:DC (repeatable).
    #[arg(long = "node-identity")]
    pub node_identity: Vec<String>,
    /// Add a node identity (repeatable).
    #[arg(long = "append-node-identity")]
    pub append_node_identity: Vec<String>,
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
    /// Deprecated: use -append-policy-id / -append-policy-name.
    #[arg(long = "merge-policies", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub merge_policies: Option<bool>,
    /// Deprecated: use -append-role-id / -append-role-name.
    #[arg(long = "merge-roles", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub merge_roles: Option<bool>,
    /// Deprecated: use -append-service-identity.
    #[arg(long = "merge-service-identities", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub merge_service_identities: Option<bool>,
    /// Deprecated: use -append-node-identity.
    #[arg(long = "merge-node-identities", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub merge_node_identities: Option<bool>,
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
    /// The token's accessor ID; a unique prefix is enough.
    #[arg(long = "accessor-id")]
    pub accessor_id: Option<String>,
    /// Deprecated: use -accessor-id.
    #[arg(long, hide = true)]
    pub id: Option<String>,
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

#[derive(Args, Debug)]
pub struct CloneArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The accessor ID of the token to clone; a unique prefix is enough.
    #[arg(long = "accessor-id")]
    pub accessor_id: Option<String>,
    /// Deprecated: use -accessor-id.
    #[arg(long, hide = true)]
    pub id: Option<String>,
    /// A description for the new token.
    #[arg(long, allow_hyphen_values = true)]
    pub description: Option<String>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

/// Runs a token subcommand.
pub async fn run(cmd: TokenCmd) -> CliResult {
    match cmd {
        TokenCmd::Create(a) => create(a).await,
        TokenCmd::Read(a) => read(a).await,
        TokenCmd::Update(a) => update(a).await,
        TokenCmd::Delete(a) => delete(a).await,
        TokenCmd::List(a) => list(a).await,
        TokenCmd::Clone(a) => clone(a).await,
    }
}

fn show(fmt: Format, t: &Token, meta: bool) {
    emit(&render(fmt, t, || format::token(t, meta)));
}

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// `-accessor-id`, or the deprecated `-id` with a warning.
fn accessor_flag<'a>(
    accessor: &'a Option<String>,
    id: &'a Option<String>,
    missing: &str,
    warning: &str,
) -> Result<&'a str, CliError> {
    if let Some(a) = accessor.as_deref().filter(|a| !a.is_empty()) {
        return Ok(a);
    }
    match id.as_deref().filter(|a| !a.is_empty()) {
        Some(id) => {
            eprintln!("{warning}");
            Ok(id)
        }
        None => Err(CliError::new(missing)),
    }
}

async fn create(a: CreateArgs) -> CliResult {
    let (tp, tp_file) = (s(&a.templated_policy), s(&a.templated_policy_file));
    if a.policy_name.is_empty()
        && a.policy_id.is_empty()
        && a.role_name.is_empty()
        && a.role_id.is_empty()
        && a.service_identity.is_empty()
        && a.node_identity.is_empty()
        && tp.is_empty()
        && tp_file.is_empty()
    {
        return Err(CliError::new(
            "Cannot create a token without specifying -policy-name, -policy-id, -role-name, -role-id, -service-identity, -node-identity, -templated-policy, or -templated-policy-file at least once",
        ));
    }
    if !tp.is_empty() && !tp_file.is_empty() {
        return Err(CliError::new(
            "Cannot combine the use of templated-policy flag with templated-policy-file. To create a token with a single templated policy and simple use case, use -templated-policy. For multiple templated policies and more complicated use cases, use -templated-policy-file",
        ));
    }
    let ttl = match s(&a.expires_ttl) {
        "" => std::time::Duration::ZERO,
        v => meshgate_types::duration::parse(v).map_err(|_| {
            CliError::new(format!(
                "invalid value {} for flag -expires-ttl: parse error",
                go_quote(v)
            ))
        })?,
    };
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let mut t = Token {
        accessor_id: s(&a.accessor).into(),
        secret_id: s(&a.secret).into(),
        description: s(&a.description).into(),
        local: a.local.unwrap_or(false),
        expiration_ttl: ttl.as_nanos().min(u128::from(u64::MAX)) as u64,
        ..Default::default()
    };
    t.service_identities = service_identities(&a.service_identity).map_err(CliError::new)?;
    t.node_identities = node_identities(&a.node_identity).map_err(CliError::new)?;
    t.templated_policies = templated_policies(tp, tp_file, &a.var).map_err(CliError::new)?;
    // Names are resolved by the agent; ID prefixes here.
    for name in &a.policy_name {
        t.policies.push(Link {
            id: String::new(),
            name: name.clone(),
        });
    }
    for p in &a.policy_id {
        let id = policy_id_from_partial(&c, p)
            .await
            // Consul prints the (shadowed, empty) resolved ID here.
            .map_err(|e| CliError::new(format!("Error resolving policy ID : {e}")))?;
        t.policies.push(Link {
            id,
            name: String::new(),
        });
    }
    for name in &a.role_name {
        t.roles.push(Link {
            id: String::new(),
            name: name.clone(),
        });
    }
    for r in &a.role_id {
        let id = role_id_from_partial(&c, r)
            .await
            .map_err(|e| CliError::new(format!("Error resolving role ID : {e}")))?;
        t.roles.push(Link {
            id,
            name: String::new(),
        });
    }
    let created: Token = send(&c, Method::PUT, "/v1/acl/token", &t)
        .await
        .map_err(|e| CliError::new(format!("Failed to create new token: {e}")))?;
    show(fmt, &created, a.meta.unwrap_or(false));
    Ok(())
}

async fn read(a: ReadArgs) -> CliResult {
    let expanded = a.expanded.unwrap_or(false);
    let meta = a.meta.unwrap_or(false);
    if a.self_.unwrap_or(false) {
        if expanded {
            return Err(CliError::new(
                "Cannot use both -expanded and -self. Instead, use -expanded and -accessor-id=<accessor id>.",
            ));
        }
        let fmt = parse_format(&a.format)?;
        let c = Client::new(&a.http)?;
        let t: Token = get(&c, "/v1/acl/token/self", &[])
            .await
            .map_err(|e| CliError::new(format!("Error reading token: {e}")))?;
        show(fmt, &t, meta);
        return Ok(());
    }
    let partial = accessor_flag(
        &a.accessor_id,
        &a.id,
        "Must specify the -accessor-id parameter",
        "Use the -accessor-id parameter to specify token by Accessor ID",
    )?;
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let accessor = token_accessor_from_partial(&c, partial)
        .await
        .map_err(|e| CliError::new(format!("Error determining token ID: {e}")))?;
    let err =
        |e: String| CliError::new(format!("Error reading token {}: {e}", go_quote(&accessor)));
    let path = format!("/v1/acl/token/{accessor}");
    if expanded {
        let x: TokenExpanded = get(&c, &path, &[("expanded", String::new())])
            .await
            .map_err(err)?;
        emit(&render(fmt, &x, || format::token_expanded(&x, meta)));
    } else {
        let t: Token = get(&c, &path, &[]).await.map_err(err)?;
        show(fmt, &t, meta);
    }
    Ok(())
}

/// Adds the links given by name and by ID (prefix) to `links`.
async fn add_links(
    c: &Client,
    links: &mut Vec<Link>,
    names: &[String],
    ids: &[String],
    kind: &str,
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
        let id = if kind == "policy" {
            policy_id_from_partial(c, p).await
        } else {
            role_id_from_partial(c, p).await
        }
        .map_err(|e| CliError::new(format!("Error resolving {kind} ID : {e}")))?;
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

async fn update(a: UpdateArgs) -> CliResult {
    let partial = accessor_flag(
        &a.accessor_id,
        &a.id,
        "Cannot update a token without specifying the -accessor-id parameter",
        "Use the -accessor-id parameter to specify token by Accessor ID",
    )?;
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let accessor = token_accessor_from_partial(&c, partial)
        .await
        .map_err(|e| CliError::new(format!("Error determining token ID: {e}")))?;
    let mut t: Token = get(&c, &format!("/v1/acl/token/{accessor}"), &[])
        .await
        .map_err(|e| CliError::new(format!("Error when retrieving current token: {e}")))?;
    if !s(&a.description).is_empty() {
        t.description = s(&a.description).into();
    }

    let append_svc = !a.append_service_identity.is_empty();
    if append_svc && !a.service_identity.is_empty() {
        return Err(CliError::new(
            "Cannot combine the use of service-identity flag with append-service-identity. To set or overwrite existing service identities, use -service-identity. To append to existing service identities, use -append-service-identity.",
        ));
    }
    let svcs = service_identities(if append_svc {
        &a.append_service_identity
    } else {
        &a.service_identity
    })
    .map_err(CliError::new)?;

    let append_nodes = !a.append_node_identity.is_empty();
    if append_nodes && !a.node_identity.is_empty() {
        return Err(CliError::new(
            "Cannot combine the use of node-identity flag with append-node-identity. To set or overwrite existing node identities, use -node-identity. To append to existing node identities, use -append-node-identity.",
        ));
    }
    let nodes = node_identities(if append_nodes {
        &a.append_node_identity
    } else {
        &a.node_identity
    })
    .map_err(CliError::new)?;

    let append_tp =
        !s(&a.append_templated_policy).is_empty() || !s(&a.append_templated_policy_file).is_empty();
    let replace_tp = !s(&a.replace_templated_policy).is_empty()
        || !s(&a.replace_templated_policy_file).is_empty();
    if append_tp && replace_tp {
        return Err(CliError::new(
            "Cannot combine the use of -append-templated-policy flags with replace-templated-policy. To set or overwrite existing templated policies, use -replace-templated-policy or -replace-templated-policy-file. To append to existing templated policies, use -append-templated-policy or -append-templated-policy-file.",
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

    // Policies: -merge-policies (deprecated) adds what is missing; the plain
    // flags replace; the append- flags add.
    if a.merge_policies.unwrap_or(false) {
        eprintln!(
            "merge-policies is deprecated and will be removed in a future Consul version. Use `append-policy-name` or `append-policy-id` instead."
        );
        add_links(
            &c,
            &mut t.policies,
            &a.policy_name,
            &a.policy_id,
            "policy",
            true,
        )
        .await?;
    } else {
        let set = !a.policy_id.is_empty() || !a.policy_name.is_empty();
        let add = !a.append_policy_id.is_empty() || !a.append_policy_name.is_empty();
        if set && add {
            return Err(CliError::new(
                "Cannot combine the use of policy-id/policy-name flags with append- variants. To set or overwrite existing policies, use -policy-id or -policy-name. To append to existing policies, use -append-policy-id or -append-policy-name.",
            ));
        }
        if set {
            t.policies.clear();
            add_links(
                &c,
                &mut t.policies,
                &a.policy_name,
                &a.policy_id,
                "policy",
                false,
            )
            .await?;
        } else {
            let (names, ids) = (&a.append_policy_name, &a.append_policy_id);
            add_links(&c, &mut t.policies, names, ids, "policy", false).await?;
        }
    }
    if a.merge_roles.unwrap_or(false) {
        eprintln!(
            "merge-roles is deprecated and will be removed in a future Consul version. Use `append-role-name` or `append-role-id` instead."
        );
        add_links(&c, &mut t.roles, &a.role_name, &a.role_id, "role", true).await?;
    } else {
        let set = !a.role_id.is_empty() || !a.role_name.is_empty();
        let add = !a.append_role_id.is_empty() || !a.append_role_name.is_empty();
        if set && add {
            return Err(CliError::new(
                "Cannot combine the use of role-id/role-name flags with append- variants. To set or overwrite existing roles, use -role-id or -role-name. To append to existing roles, use -append-role-id or -append-role-name.",
            ));
        }
        if set {
            t.roles.clear();
            add_links(&c, &mut t.roles, &a.role_name, &a.role_id, "role", false).await?;
        } else {
            let (names, ids) = (&a.append_role_name, &a.append_role_id);
            add_links(&c, &mut t.roles, names, ids, "role", false).await?;
        }
    }

    // Identities: without -service-identity / -append-service-identity the
    // token's service identities are cleared (Consul does the same); the
    // same holds for node identities.
    if a.merge_service_identities.unwrap_or(false) || append_svc {
        for svc in svcs {
            match t
                .service_identities
                .iter_mut()
                .find(|x| x.service_name == svc.service_name)
            {
                Some(x) => *x = svc,
                None => t.service_identities.push(svc),
            }
        }
    } else {
        t.service_identities = svcs;
    }
    if a.merge_node_identities.unwrap_or(false) || append_nodes {
        for n in nodes {
            if !t.node_identities.contains(&n) {
                t.node_identities.push(n);
            }
        }
    } else {
        t.node_identities = nodes;
    }
    if replace_tp {
        t.templated_policies = tps;
    } else {
        t.templated_policies.extend(tps);
    }

    let updated: Token = send(&c, Method::PUT, &format!("/v1/acl/token/{accessor}"), &t)
        .await
        .map_err(|e| CliError::new(format!("Failed to update token {accessor}: {e}")))?;
    show(fmt, &updated, a.meta.unwrap_or(false));
    Ok(())
}

async fn delete(a: DeleteArgs) -> CliResult {
    let partial = accessor_flag(
        &a.accessor_id,
        &a.id,
        "Must specify the -accessor-id parameter",
        "Use the -accessor-id parameter to specify token by Accessor ID.",
    )?;
    let c = Client::new(&a.http)?;
    let accessor = token_accessor_from_partial(&c, partial)
        .await
        .map_err(|e| CliError::new(format!("Error determining token ID: {e}")))?;
    super::delete(&c, &format!("/v1/acl/token/{accessor}"))
        .await
        .map_err(|e| CliError::new(format!("Error deleting token {}: {e}", go_quote(&accessor))))?;
    println!("Token {} deleted successfully", go_quote(&accessor));
    Ok(())
}

async fn list(a: ListArgs) -> CliResult {
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let list: Vec<Token> = get(&c, "/v1/acl/tokens", &[])
        .await
        .map_err(|e| CliError::new(format!("Failed to retrieve the token list: {e}")))?;
    let out = match fmt {
        Format::Pretty => format::token_list(&list, a.meta.unwrap_or(false)),
        Format::Json => {
            let entries: Vec<TokenListEntry> = list.into_iter().map(Into::into).collect();
            super::go_json(&entries)
        }
    };
    emit(&out);
    Ok(())
}

async fn clone(a: CloneArgs) -> CliResult {
    let partial = accessor_flag(
        &a.accessor_id,
        &a.id,
        "Cannot update a token without specifying the -accessor-id parameter",
        "The -id parameter is deprecated. Use the -accessor-id parameter instead.",
    )?;
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let accessor = token_accessor_from_partial(&c, partial)
        .await
        .map_err(|e| CliError::new(format!("Error determining token Accessor ID: {e}")))?;
    let body = serde_json::json!({ "Description": s(&a.description) });
    let t: Token = send(
        &c,
        Method::PUT,
        &format!("/v1/acl/token/{accessor}/clone"),
        &body,
    )
    .await
    .map_err(|e| CliError::new(format!("Error cloning token: {e}")))?;
    show(fmt, &t, false);
    Ok(())
}
