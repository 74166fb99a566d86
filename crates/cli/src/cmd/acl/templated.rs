//! `meshgate acl templated-policy list|read|preview`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use reqwest::Method;

use super::types::{Policy, TemplatedPolicyResponse};
use super::{
    Format, emit, format, get, get_opt, go_quote, parse_format, render, send, templated_policies,
};
use crate::client::{CliError, CliResult, Client, HttpFlags};

/// Templated policy commands.
#[derive(Subcommand, Debug)]
pub enum TemplatedCmd {
    /// List the templated policies.
    List(ListArgs),
    /// Show a templated policy's variables (and with -meta its template).
    Read(ReadArgs),
    /// Show the policy a templated policy renders to.
    Preview(PreviewArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The templated policy's name (builtin/service, ...).
    #[arg(long)]
    pub name: Option<String>,
    /// Also show the schema and the raw template.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub meta: Option<bool>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The templated policy's name.
    #[arg(long)]
    pub name: Option<String>,
    /// A templated policy variable, NAME:VALUE (repeatable).
    #[arg(long = "var")]
    pub var: Vec<String>,
    /// A file with one templated policy and its variables (HCL).
    #[arg(long)]
    pub file: Option<String>,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

/// Runs a templated-policy subcommand.
pub async fn run(cmd: TemplatedCmd) -> CliResult {
    match cmd {
        TemplatedCmd::List(a) => list(a).await,
        TemplatedCmd::Read(a) => read(a).await,
        TemplatedCmd::Preview(a) => preview(a).await,
    }
}

/// This command group words an unknown format its own way.
fn templated_format(f: &str) -> Result<Format, CliError> {
    parse_format(f).map_err(|_| CliError::new(format!("unknown format: {}", go_quote(f))))
}

async fn list(a: ListArgs) -> CliResult {
    let fmt = templated_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let map: BTreeMap<String, TemplatedPolicyResponse> = get(&c, "/v1/acl/templated-policies", &[])
        .await
        .map_err(|e| {
            CliError::new(format!(
                "Failed to retrieve the templated policies list: {e}"
            ))
        })?;
    emit(&render(fmt, &map, || {
        format::templated_policy_list(map.values().map(|t| t.template_name.as_str()))
    }));
    Ok(())
}

async fn read(a: ReadArgs) -> CliResult {
    let name = a.name.as_deref().unwrap_or("");
    if name.is_empty() {
        return Err(CliError::new("Must specify the -name parameter"));
    }
    let fmt = templated_format(&a.format)?;
    let c = Client::new(&a.http)?;
    let t: TemplatedPolicyResponse = get_opt(&c, &format!("/v1/acl/templated-policy/name/{name}"))
        .await
        .map_err(|e| {
            CliError::new(format!(
                "Error reading templated policy {}: {e}",
                go_quote(name)
            ))
        })?
        .ok_or_else(|| {
            CliError::new(format!(
                "Templated policy not found with name {}",
                go_quote(name)
            ))
        })?;
    emit(&render(fmt, &t, || {
        format::templated_policy(&t, a.meta.unwrap_or(false))
    }));
    Ok(())
}

async fn preview(a: PreviewArgs) -> CliResult {
    let (name, file) = (
        a.name.as_deref().unwrap_or(""),
        a.file.as_deref().unwrap_or(""),
    );
    if name.is_empty() && file.is_empty() {
        return Err(CliError::new(
            "Cannot preview a templated policy without specifying -name or -file",
        ));
    }
    let c = Client::new(&a.http)?;
    let tps = templated_policies(name, file, &a.var).map_err(CliError::new)?;
    let [tp] = tps.as_slice() else {
        return Err(CliError::new(
            "Can only preview a single templated policy at a time.",
        ));
    };
    let fmt = parse_format(&a.format)?;
    let p: Policy = send(
        &c,
        Method::POST,
        &format!("/v1/acl/templated-policy/preview/{}", tp.template_name),
        &tp.template_variables,
    )
    .await
    .map_err(|e| {
        CliError::new(format!(
            "Failed to generate the templated policy preview: {e}"
        ))
    })?;
    emit(&render(fmt, &p, || format::policy(&p, false)));
    Ok(())
}
