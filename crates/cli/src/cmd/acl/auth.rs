//! `meshgate acl auth-method ...` and `meshgate acl binding-rule ...`.

use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value};

use super::types::{AuthMethod, AuthMethodListEntry, BindingRule, TemplateVars};
use super::{
    Format, binding_rule_id_from_partial, emit, format, get, get_opt, go_quote, load_data_source,
    missing_flag, parse_format, query_escape, render, send, sort_keys, with_help,
};
use crate::client::{CliError, CliResult, Client, HttpFlags};

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

// === auth methods ===

/// Auth method commands.
#[derive(Subcommand, Debug)]
pub enum AuthMethodCmd {
    /// Create an auth method.
    Create(MethodCreateArgs),
    /// Read an auth method.
    Read(MethodReadArgs),
    /// Update an auth method.
    Update(MethodUpdateArgs),
    /// Delete an auth method (and its binding rules and tokens).
    Delete(MethodDeleteArgs),
    /// List the auth methods.
    List(MethodListArgs),
}

/// The flags create and update share.
#[derive(Args, Debug)]
pub struct MethodFields {
    /// A name to show instead of the name in UIs.
    #[arg(long = "display-name")]
    pub display_name: Option<String>,
    /// A description of the auth method.
    #[arg(long, allow_hyphen_values = true)]
    pub description: Option<String>,
    /// How long the tokens it creates are valid (a Go duration).
    #[arg(long = "max-token-ttl")]
    pub max_token_ttl: Option<String>,
    /// The kind of tokens it creates: local or global.
    #[arg(long = "token-locality")]
    pub token_locality: Option<String>,
    /// The configuration, JSON: literal, @file, or - for stdin.
    #[arg(long, allow_hyphen_values = true)]
    pub config: Option<String>,
    /// Kubernetes API address (type kubernetes only).
    #[arg(long = "kubernetes-host", hide = true)]
    pub kubernetes_host: Option<String>,
    /// Kubernetes CA certificate (type kubernetes only).
    #[arg(long = "kubernetes-ca-cert", hide = true)]
    pub kubernetes_ca_cert: Option<String>,
    /// Kubernetes service account JWT (type kubernetes only).
    #[arg(long = "kubernetes-service-account-jwt", hide = true)]
    pub kubernetes_service_account_jwt: Option<String>,
    /// Show the Raft indices.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub meta: Option<bool>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

impl MethodFields {
    fn has_k8s(&self) -> bool {
        !s(&self.kubernetes_host).is_empty()
            || !s(&self.kubernetes_ca_cert).is_empty()
            || !s(&self.kubernetes_service_account_jwt).is_empty()
    }

    fn ttl(&self) -> Result<Duration, CliError> {
        match s(&self.max_token_ttl) {
            "" => Ok(Duration::ZERO),
            v => meshgate_types::duration::parse(v).map_err(|_| {
                CliError::new(format!(
                    "invalid value {} for flag -max-token-ttl: parse error",
                    go_quote(v)
                ))
            }),
        }
    }
}

#[derive(Args, Debug)]
pub struct MethodCreateArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The auth method's type (jwt). This flag is required.
    #[arg(long = "type")]
    pub method_type: Option<String>,
    /// The auth method's name. This flag is required.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub fields: MethodFields,
}

#[derive(Args, Debug)]
pub struct MethodReadArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The auth method's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Show the Raft indices.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub meta: Option<bool>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct MethodUpdateArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The auth method's name. This flag is required.
    #[arg(long)]
    pub name: Option<String>,
    /// Replace the auth method with exactly the flags given instead of merging.
    #[arg(long = "no-merge", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub no_merge: Option<bool>,
    #[command(flatten)]
    pub fields: MethodFields,
}

#[derive(Args, Debug)]
pub struct MethodDeleteArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The auth method's name.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct MethodListArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Show the Raft indices.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub meta: Option<bool>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

/// Runs an auth-method subcommand.
pub async fn run_method(cmd: AuthMethodCmd) -> CliResult {
    match cmd {
        AuthMethodCmd::Create(a) => method_create(a).await,
        AuthMethodCmd::Read(a) => method_read(a).await,
        AuthMethodCmd::Update(a) => method_update(a).await,
        AuthMethodCmd::Delete(a) => method_delete(a).await,
        AuthMethodCmd::List(a) => method_list(a).await,
    }
}

/// Go writes maps with sorted keys; the agent may keep the order it was given.
fn sorted(mut m: AuthMethod) -> AuthMethod {
    if let Some(cfg) = m.config.take() {
        let mut v = Value::Object(cfg);
        sort_keys(&mut v);
        if let Value::Object(cfg) = v {
            m.config = Some(cfg);
        }
    }
    m
}

fn show_method(fmt: Format, m: &AuthMethod, meta: bool) {
    emit(&render(fmt, m, || format::auth_method(m, meta)));
}

/// The `-config` JSON object.
fn load_config(arg: &str, parse_err: &str) -> Result<Option<Map<String, Value>>, CliError> {
    let data = load_data_source(arg)
        .map_err(|e| CliError::new(format!("Error loading configuration file: {e}")))?;
    let v: Value =
        serde_json::from_str(&data).map_err(|e| CliError::new(format!("{parse_err}: {e}")))?;
    match v {
        Value::Object(m) => Ok(Some(m)),
        Value::Null => Ok(None),
        other => Err(CliError::new(format!(
            "{parse_err}: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                _ => "bool",
            }
        ))),
    }
}

/// The kubernetes flags as a config (only meaningful for that type).
fn k8s_config(f: &MethodFields) -> Result<Map<String, Value>, CliError> {
    if s(&f.kubernetes_host).is_empty() {
        return Err(CliError::new("Missing required '-kubernetes-host' flag"));
    }
    if s(&f.kubernetes_ca_cert).is_empty() {
        return Err(CliError::new("Missing required '-kubernetes-ca-cert' flag"));
    }
    if s(&f.kubernetes_service_account_jwt).is_empty() {
        return Err(CliError::new(
            "Missing required '-kubernetes-service-account-jwt' flag",
        ));
    }
    let ca = load_data_source(s(&f.kubernetes_ca_cert))
        .map_err(|e| CliError::new(format!("Invalid '-kubernetes-ca-cert' value: {e}")))?;
    if ca.is_empty() {
        return Err(CliError::new("Kubernetes CA Cert is empty"));
    }
    let mut m = Map::new();
    m.insert("CACert".into(), Value::String(ca));
    m.insert("Host".into(), Value::String(s(&f.kubernetes_host).into()));
    m.insert(
        "ServiceAccountJWT".into(),
        Value::String(s(&f.kubernetes_service_account_jwt).into()),
    );
    Ok(m)
}

async fn method_create(a: MethodCreateArgs) -> CliResult {
    let path = ["acl", "auth-method", "create"];
    let kind = s(&a.method_type);
    if kind.is_empty() {
        return Err(missing_flag("type", &path));
    }
    let name = s(&a.name);
    if name.is_empty() {
        return Err(missing_flag("name", &path));
    }
    let f = &a.fields;
    let ttl = f.ttl()?;
    let fmt = parse_format(&f.format)?;
    let c = Client::new(&a.http)?;
    let mut m = AuthMethod {
        name: name.into(),
        method_type: kind.into(),
        display_name: s(&f.display_name).into(),
        description: s(&f.description).into(),
        max_token_ttl: ttl,
        token_locality: s(&f.token_locality).into(),
        ..Default::default()
    };
    if !s(&f.config).is_empty() {
        if f.has_k8s() {
            return Err(CliError::new(
                "Cannot use command line arguments with '-config' flags",
            ));
        }
        m.config = load_config(s(&f.config), "Error parsing JSON configuration file")?;
    }
    if kind == "kubernetes" {
        m.config = Some(k8s_config(f)?);
    }
    let created: AuthMethod = send(&c, Method::PUT, "/v1/acl/auth-method", &m)
        .await
        .map_err(|e| CliError::new(format!("Failed to create new auth method: {e}")))?;
    show_method(fmt, &sorted(created), f.meta.unwrap_or(false));
    Ok(())
}

async fn method_read(a: MethodReadArgs) -> CliResult {
    let name = s(&a.name);
    if name.is_empty() {
        return Err(CliError::new("Must specify the -name parameter"));
    }
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let m: AuthMethod = get_opt(&c, &format!("/v1/acl/auth-method/{}", query_escape(name)))
        .await
        .map_err(|e| CliError::new(format!("Error reading auth method {}: {e}", go_quote(name))))?
        .ok_or_else(|| {
            CliError::new(format!(
                "Auth method not found with name {}",
                go_quote(name)
            ))
        })?;
    show_method(fmt, &sorted(m), a.meta.unwrap_or(false));
    Ok(())
}

async fn method_update(a: MethodUpdateArgs) -> CliResult {
    let name = s(&a.name);
    if name.is_empty() {
        return Err(CliError::new(
            "Cannot update an auth method without specifying the -name parameter",
        ));
    }
    let f = &a.fields;
    let ttl = f.ttl()?;
    let fmt = parse_format(&f.format)?;
    let c = Client::new(&a.http)?;
    let path = format!("/v1/acl/auth-method/{}", query_escape(name));
    let current: AuthMethod = get_opt(&c, &path)
        .await
        .map_err(|e| CliError::new(format!("Error when retrieving current auth method: {e}")))?
        .ok_or_else(|| {
            CliError::new(format!(
                "Auth method not found with name {}",
                go_quote(name)
            ))
        })?;
    let parse_err = "Error parsing JSON for auth method config";
    let m = if a.no_merge.unwrap_or(false) {
        let mut m = AuthMethod {
            name: current.name.clone(),
            method_type: current.method_type.clone(),
            display_name: s(&f.display_name).into(),
            description: s(&f.description).into(),
            max_token_ttl: ttl,
            token_locality: s(&f.token_locality).into(),
            ..Default::default()
        };
        if !s(&f.config).is_empty() {
            if f.has_k8s() {
                return Err(CliError::new(
                    "Cannot use command line arguments with '-config' flag",
                ));
            }
            m.config = load_config(s(&f.config), parse_err)?;
        }
        if current.method_type == "kubernetes" {
            m.config = Some(k8s_config(f)?);
        }
        m
    } else {
        let mut m = current.clone();
        if !s(&f.description).is_empty() {
            m.description = s(&f.description).into();
        }
        if !s(&f.display_name).is_empty() {
            m.display_name = s(&f.display_name).into();
        }
        if !ttl.is_zero() {
            m.max_token_ttl = ttl;
        }
        if !s(&f.token_locality).is_empty() {
            m.token_locality = s(&f.token_locality).into();
        }
        if !s(&f.config).is_empty() {
            if f.has_k8s() {
                return Err(CliError::new(
                    "Cannot use command line arguments with '-config' flag",
                ));
            }
            // The config is replaced as a whole, not merged.
            m.config = Some(load_config(s(&f.config), parse_err)?.unwrap_or_default());
        }
        let cfg = m.config.get_or_insert_with(Map::new);
        if current.method_type == "kubernetes" {
            for (key, flag) in [
                ("Host", &f.kubernetes_host),
                ("CACert", &f.kubernetes_ca_cert),
                ("ServiceAccountJWT", &f.kubernetes_service_account_jwt),
            ] {
                if !s(flag).is_empty() {
                    cfg.insert(key.into(), Value::String(s(flag).into()));
                }
            }
        }
        m
    };
    let updated: AuthMethod = send(&c, Method::PUT, &path, &m).await.map_err(|e| {
        CliError::new(format!(
            "Error updating auth method {}: {e}",
            go_quote(name)
        ))
    })?;
    show_method(fmt, &sorted(updated), f.meta.unwrap_or(false));
    Ok(())
}

async fn method_delete(a: MethodDeleteArgs) -> CliResult {
    let name = s(&a.name);
    if name.is_empty() {
        return Err(CliError::new("Must specify the -name parameter"));
    }
    let c = Client::new(&a.http)?;
    super::delete(&c, &format!("/v1/acl/auth-method/{}", query_escape(name)))
        .await
        .map_err(|e| {
            CliError::new(format!(
                "Error deleting auth method {}: {e}",
                go_quote(name)
            ))
        })?;
    println!("Auth method {} deleted successfully", go_quote(name));
    Ok(())
}

async fn method_list(a: MethodListArgs) -> CliResult {
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let list: Vec<AuthMethod> = get(&c, "/v1/acl/auth-methods", &[])
        .await
        .map_err(|e| CliError::new(format!("Failed to retrieve the auth method list: {e}")))?;
    let out = match fmt {
        Format::Pretty => format::auth_method_list(&list, a.meta.unwrap_or(false)),
        Format::Json => {
            let entries: Vec<AuthMethodListEntry> = list.into_iter().map(Into::into).collect();
            super::go_json(&entries)
        }
    };
    emit(&out);
    Ok(())
}

// === binding rules ===

/// Binding rule commands.
#[derive(Subcommand, Debug)]
pub enum BindingRuleCmd {
    /// Create a binding rule.
    Create(RuleCreateArgs),
    /// Read a binding rule by ID (or unique prefix).
    Read(RuleReadArgs),
    /// Update a binding rule.
    Update(RuleUpdateArgs),
    /// Delete a binding rule.
    Delete(RuleDeleteArgs),
    /// List the binding rules (of one auth method with -method).
    List(RuleListArgs),
}

/// The flags create and update share.
#[derive(Args, Debug)]
pub struct RuleFields {
    /// A description of the binding rule.
    #[arg(long, allow_hyphen_values = true)]
    pub description: Option<String>,
    /// An expression over the verified identity's attributes.
    #[arg(long, allow_hyphen_values = true)]
    pub selector: Option<String>,
    /// What to bind: service, node, role, policy or templated-policy.
    #[arg(long = "bind-type", default_value = "service")]
    pub bind_type: String,
    /// The name to bind (may use ${var} interpolation).
    #[arg(long = "bind-name")]
    pub bind_name: Option<String>,
    /// A templated policy variable, NAME=VALUE (repeatable; templated-policy only).
    #[arg(long = "bind-vars")]
    pub bind_vars: Vec<String>,
    /// Show the Raft indices.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub meta: Option<bool>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

impl RuleFields {
    /// `-bind-vars k=v` pairs as template variables (`name` in any case).
    fn vars(&self) -> Result<Option<TemplateVars>, CliError> {
        if self.bind_vars.is_empty() {
            return Ok(None);
        }
        let mut vars = TemplateVars::default();
        for kv in &self.bind_vars {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(CliError::new(format!(
                    "invalid value {} for flag -bind-vars: Missing \"=\" value in argument: {kv}",
                    go_quote(kv)
                )));
            };
            if k.eq_ignore_ascii_case("name") {
                vars.name = v.into();
            }
        }
        Ok(Some(vars))
    }
}

#[derive(Args, Debug)]
pub struct RuleCreateArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The auth method the rule belongs to. This flag is required.
    #[arg(long)]
    pub method: Option<String>,
    #[command(flatten)]
    pub fields: RuleFields,
}

#[derive(Args, Debug)]
pub struct RuleReadArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The rule's ID; a unique prefix is enough.
    #[arg(long)]
    pub id: Option<String>,
    /// Show the Raft indices.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub meta: Option<bool>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct RuleUpdateArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The rule's ID; a unique prefix is enough. This flag is required.
    #[arg(long)]
    pub id: Option<String>,
    /// Replace the rule with exactly the flags given instead of merging.
    #[arg(long = "no-merge", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub no_merge: Option<bool>,
    #[command(flatten)]
    pub fields: RuleFields,
}

#[derive(Args, Debug)]
pub struct RuleDeleteArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The rule's ID; a unique prefix is enough.
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Args, Debug)]
pub struct RuleListArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Only the rules of this auth method.
    #[arg(long)]
    pub method: Option<String>,
    /// Show the Raft indices.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub meta: Option<bool>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

/// Runs a binding-rule subcommand.
pub async fn run_rule(cmd: BindingRuleCmd) -> CliResult {
    match cmd {
        BindingRuleCmd::Create(a) => rule_create(a).await,
        BindingRuleCmd::Read(a) => rule_read(a).await,
        BindingRuleCmd::Update(a) => rule_update(a).await,
        BindingRuleCmd::Delete(a) => rule_delete(a).await,
        BindingRuleCmd::List(a) => rule_list(a).await,
    }
}

fn show_rule(fmt: Format, r: &BindingRule, meta: bool) {
    emit(&render(fmt, r, || format::binding_rule(r, meta)));
}

async fn rule_create(a: RuleCreateArgs) -> CliResult {
    let path = ["acl", "binding-rule", "create"];
    let f = &a.fields;
    if s(&a.method).is_empty() {
        return Err(missing_flag("method", &path));
    }
    if f.bind_type.is_empty() {
        return Err(missing_flag("bind-type", &path));
    }
    if s(&f.bind_name).is_empty() {
        return Err(missing_flag("bind-name", &path));
    }
    if f.bind_type != "templated-policy" && !f.bind_vars.is_empty() {
        return Err(with_help(
            "Cannot specify -bind-vars when -bind-type is not templated-policy",
            &path,
        ));
    }
    let vars = f.vars()?;
    let fmt = parse_format(&f.format)?;
    let r = BindingRule {
        description: s(&f.description).into(),
        auth_method: s(&a.method).into(),
        selector: s(&f.selector).into(),
        bind_type: f.bind_type.clone(),
        bind_name: s(&f.bind_name).into(),
        bind_vars: vars,
        ..Default::default()
    };
    let c = Client::new(&a.http)?;
    let created: BindingRule = send(&c, Method::PUT, "/v1/acl/binding-rule", &r)
        .await
        .map_err(|e| CliError::new(format!("Failed to create new binding rule: {e}")))?;
    show_rule(fmt, &created, f.meta.unwrap_or(false));
    Ok(())
}

async fn rule_read(a: RuleReadArgs) -> CliResult {
    let partial = s(&a.id);
    if partial.is_empty() {
        return Err(CliError::new("Must specify the -id parameter."));
    }
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let id = binding_rule_id_from_partial(&c, partial)
        .await
        .map_err(|e| CliError::new(format!("Error determining binding rule ID: {e}")))?;
    let r: BindingRule = get_opt(&c, &format!("/v1/acl/binding-rule/{id}"))
        .await
        .map_err(|e| CliError::new(format!("Error reading binding rule {}: {e}", go_quote(&id))))?
        .ok_or_else(|| {
            CliError::new(format!("Binding rule not found with ID {}", go_quote(&id)))
        })?;
    show_rule(fmt, &r, a.meta.unwrap_or(false));
    Ok(())
}

async fn rule_update(a: RuleUpdateArgs) -> CliResult {
    let partial = s(&a.id);
    if partial.is_empty() {
        return Err(CliError::new(
            "Cannot update a binding rule without specifying the -id parameter",
        ));
    }
    let f = &a.fields;
    let fmt = parse_format(&f.format)?;
    let c = Client::new(&a.http)?;
    let id = binding_rule_id_from_partial(&c, partial)
        .await
        .map_err(|e| CliError::new(format!("Error determining binding rule ID: {e}")))?;
    let current: BindingRule = get_opt(&c, &format!("/v1/acl/binding-rule/{id}"))
        .await
        .map_err(|e| CliError::new(format!("Error when retrieving current binding rule: {e}")))?
        .ok_or_else(|| {
            CliError::new(format!("Binding rule not found with ID {}", go_quote(&id)))
        })?;
    let vars = f.vars()?;
    let path = ["acl", "binding-rule", "update"];
    let r = if a.no_merge.unwrap_or(false) {
        if f.bind_type.is_empty() {
            return Err(missing_flag("bind-type", &path));
        }
        if s(&f.bind_name).is_empty() {
            return Err(missing_flag("bind-name", &path));
        }
        if !f.bind_vars.is_empty() && f.bind_type != "templated-policy" {
            return Err(with_help(
                "-bind-vars cannot be specified when -bind-type is not templated-policy",
                &path,
            ));
        }
        BindingRule {
            id: id.clone(),
            auth_method: current.auth_method.clone(),
            description: s(&f.description).into(),
            bind_type: f.bind_type.clone(),
            bind_vars: vars,
            bind_name: s(&f.bind_name).into(),
            selector: s(&f.selector).into(),
            ..Default::default()
        }
    } else {
        let mut r = current;
        if !s(&f.description).is_empty() {
            r.description = s(&f.description).into();
        }
        // -bind-type defaults to "service", so a merge without it resets the
        // type (and drops BindVars), as Consul's command does.
        if !f.bind_type.is_empty() {
            r.bind_type = f.bind_type.clone();
        }
        if !s(&f.bind_name).is_empty() {
            r.bind_name = s(&f.bind_name).into();
        }
        if vars.is_some() {
            r.bind_vars = vars;
        }
        if f.bind_type != "templated-policy" {
            r.bind_vars = None;
        }
        // An explicitly empty selector is valid.
        if let Some(sel) = &f.selector {
            r.selector = sel.clone();
        }
        r
    };
    let updated: BindingRule = send(&c, Method::PUT, &format!("/v1/acl/binding-rule/{id}"), &r)
        .await
        .map_err(|e| {
            CliError::new(format!(
                "Error updating binding rule {}: {e}",
                go_quote(&id)
            ))
        })?;
    show_rule(fmt, &updated, f.meta.unwrap_or(false));
    Ok(())
}

async fn rule_delete(a: RuleDeleteArgs) -> CliResult {
    let partial = s(&a.id);
    if partial.is_empty() {
        return Err(CliError::new("Must specify the -id parameter"));
    }
    let c = Client::new(&a.http)?;
    let id = binding_rule_id_from_partial(&c, partial)
        .await
        .map_err(|e| CliError::new(format!("Error determining binding rule ID: {e}")))?;
    super::delete(&c, &format!("/v1/acl/binding-rule/{id}"))
        .await
        .map_err(|e| {
            CliError::new(format!(
                "Error deleting binding rule {}: {e}",
                go_quote(&id)
            ))
        })?;
    println!("Binding rule {} deleted successfully", go_quote(&id));
    Ok(())
}

async fn rule_list(a: RuleListArgs) -> CliResult {
    let fmt = parse_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let q: Vec<(&str, String)> = match s(&a.method) {
        "" => Vec::new(),
        m => vec![("authmethod", m.to_string())],
    };
    let list: Vec<BindingRule> = get(&c, "/v1/acl/binding-rules", &q)
        .await
        .map_err(|e| CliError::new(format!("Failed to retrieve the binding rule list: {e}")))?;
    emit(&render(fmt, &list, || {
        format::binding_rule_list(&list, a.meta.unwrap_or(false))
    }));
    Ok(())
}
