//! `meshgate intention create|get|delete|list|check|match`, with the flags,
//! messages, output and exit codes of Consul's `consul intention` commands.
//!
//! Intentions live in `service-intentions` config entries; these commands
//! use the `/v1/connect/intentions/exact` API (by source and destination
//! name). Consul's `intention create` goes through the deprecated
//! ID-based API, which refuses to create a pair that already exists; the
//! exact API upserts, so `create` looks for the pair first and answers as
//! Consul does when it is there and `-replace` is not given.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use meshgate_config_entries::intentions::{self, DEFAULT_NAMESPACE, Intention};
use meshgate_config_entries::{self as ce, ConfigEntry};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::acl::{go_io_error, go_json_indent, go_quote};
use crate::client::{CliError, CliResult, Client, HttpFlags, columnize};

/// Intention commands.
#[derive(Subcommand, Debug)]
pub enum IntentionCmd {
    /// Create an intention (allow by default) from SRC to DST, or from JSON files with -file.
    Create(CreateArgs),
    /// Show an intention.
    Get(PairArgs),
    /// Delete an intention.
    Delete(PairArgs),
    /// List every intention.
    List(ListArgs),
    /// Check whether a connection from SRC to DST is allowed (exit 0) or denied (exit 1).
    Check(PairArgs),
    /// Show the intentions that apply to a destination (or a source with -source), in evaluation order.
    Match(MatchArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Create an intention that allows when matched (the default).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow: Option<bool>,
    /// Create an intention that denies when matched.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub deny: Option<bool>,
    /// Read the intentions from the JSON files given as arguments (- for stdin).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub file: Option<bool>,
    /// Replace an intention that exists for the same source and destination.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub replace: Option<bool>,
    /// Metadata `key=value` (repeatable).
    #[arg(long)]
    pub meta: Vec<String>,
    /// SRC DST, or the files with -file.
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PairArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// SRC DST.
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub http: HttpFlags,
}

#[derive(Args, Debug)]
pub struct MatchArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Match intentions by their source.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub source: Option<bool>,
    /// Match intentions by their destination (the default).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub destination: Option<bool>,
    /// The service name.
    pub args: Vec<String>,
}

/// Runs an `intention` subcommand.
pub async fn run(cmd: IntentionCmd) -> CliResult {
    match cmd {
        IntentionCmd::Create(a) => create(a).await,
        IntentionCmd::Get(a) => get(a).await,
        IntentionCmd::Delete(a) => delete(a).await,
        IntentionCmd::List(a) => list(a).await,
        IntentionCmd::Check(a) => check(a).await,
        IntentionCmd::Match(a) => matches(a).await,
    }
}

fn on(b: Option<bool>) -> bool {
    b.unwrap_or(false)
}

// === names and text ===

/// `name`, `ns/name` or `partition/ns/name` (Consul's
/// `ParseIntentionTarget`): (partition, namespace, name).
fn parse_target(input: &str) -> Result<(String, String, String), String> {
    let parts: Vec<&str> = input.split('/').collect();
    match parts.as_slice() {
        [name] => Ok((String::new(), String::new(), (*name).into())),
        [ns, name] => Ok((String::new(), (*ns).into(), (*name).into())),
        [ap, ns, name] => Ok(((*ap).into(), (*ns).into(), (*name).into())),
        _ => Err("input can contain at most two '/'".into()),
    }
}

/// A name as Consul's `api` package shows it, and as the exact API's
/// `source`/`destination` parameters take it: `ns/name`, the `default`
/// namespace left out.
fn shown(ns: &str, name: &str) -> String {
    if ns.is_empty() || ns == DEFAULT_NAMESPACE {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

/// Consul's `api.Intention.String()`: `web => db (allow)`, or the number
/// of L7 permissions instead of the action.
fn describe(i: &Intention) -> String {
    let detail = match i.permissions.len() {
        0 => i.action.clone(),
        1 => "1 permission".to_string(),
        n => format!("{n} permissions"),
    };
    format!(
        "{} => {} ({detail})",
        shown(&i.source_ns, &i.source_name),
        shown(&i.destination_ns, &i.destination_name)
    )
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Seconds since the Unix epoch of an RFC 3339 time.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.chars().take_while(char::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Go's `time.RFC850` layout (`Monday, 02-Jan-06 15:04:05 MST`) in UTC;
/// an absent or unreadable time is Go's zero time.
fn rfc850_utc(t: Option<&str>) -> String {
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .and_then(parse_rfc3339)
        .unwrap_or_else(|| days_from_civil(1, 1, 1) * 86_400);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02}-{}-{:02} {:02}:{:02}:{:02} UTC",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y.rem_euclid(100),
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

// === calls ===

/// `GET .../exact`: `None` on 404; other failures worded as the Go
/// client's `IntentionGetExact` words them.
async fn get_exact(
    c: &Client,
    source: &str,
    destination: &str,
) -> Result<Option<Intention>, String> {
    let q = [
        ("source", source.to_string()),
        ("destination", destination.to_string()),
    ];
    let r = c
        .send(Method::GET, "/v1/connect/intentions/exact", &q, None)
        .await
        .map_err(|e| e.message)?;
    match r.status {
        200 => serde_json::from_slice(&r.body)
            .map(Some)
            .map_err(|e| format!("Failed to decode response: {e}")),
        404 => Ok(None),
        s => Err(format!("Unexpected response {s}: {}", r.text().trim_end())),
    }
}

/// `PUT .../exact` with the intention's action, description and meta.
async fn put_exact(
    c: &Client,
    source: &str,
    destination: &str,
    i: &Intention,
) -> Result<(), String> {
    let mut body = Map::new();
    body.insert("SourceName".into(), json!(i.source_name));
    body.insert("DestinationName".into(), json!(i.destination_name));
    let st = if i.source_type.is_empty() {
        "consul"
    } else {
        &i.source_type
    };
    body.insert("SourceType".into(), json!(st));
    body.insert("Action".into(), json!(i.action));
    if !i.description.is_empty() {
        body.insert("Description".into(), json!(i.description));
    }
    if !i.meta.is_empty() {
        body.insert("Meta".into(), json!(i.meta));
    }
    let q = [
        ("source", source.to_string()),
        ("destination", destination.to_string()),
    ];
    let body = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
    c.put("/v1/connect/intentions/exact", &q, Some(body))
        .await
        .map(|_| ())
        .map_err(|e| e.message)
}

async fn list_all(c: &Client) -> Result<Vec<Intention>, String> {
    let r = c
        .get("/v1/connect/intentions", &[])
        .await
        .map_err(|e| e.message)?;
    r.json().map_err(|e| e.message)
}

/// The service-intentions entry of a destination, if any.
async fn destination_entry(
    c: &Client,
    destination: &str,
) -> Result<Option<ce::ServiceIntentions>, String> {
    let path = format!(
        "/v1/config/{}/{}",
        ce::SERVICE_INTENTIONS,
        crate::client::escape_path(destination).replace('/', "%2F")
    );
    let r = c
        .send(Method::GET, &path, &[], None)
        .await
        .map_err(|e| e.message)?;
    match r.status {
        200 => {
            let v: Value = serde_json::from_slice(&r.body)
                .map_err(|e| format!("Failed to decode response: {e}"))?;
            match ce::decode(v) {
                Ok(ConfigEntry::ServiceIntentions(si)) => Ok(Some(si)),
                Ok(_) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        }
        404 => Ok(None),
        _ => Err(r.error_text()),
    }
}

// === create ===

fn parse_meta(raw: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for kv in raw {
        match kv.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => {
                return Err(CliError::new(format!(
                    "invalid value {} for flag -meta: Missing \"=\" value in argument: {kv}",
                    go_quote(kv)
                )));
            }
        }
    }
    Ok(out)
}

/// An intention from a JSON file (`-` for stdin), as `consul intention
/// create -file` reads it.
fn intention_from_file(path: &str) -> Result<Intention, String> {
    let text = if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| e.to_string())?;
        buf
    } else {
        std::fs::read(path).map_err(|e| go_io_error("open", path, &e))?
    };
    let v: Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let i = Intention::from_json(v)?;
    if i.has_permissions() {
        return Err(format!(
            "cannot create L7 intention from file {} using this CLI; use 'meshgate config write' instead",
            go_quote(path)
        ));
    }
    Ok(i)
}

fn intentions_from_args(
    a: &CreateArgs,
    action: &str,
    meta: BTreeMap<String, String>,
) -> Result<Vec<Intention>, String> {
    if on(a.file) {
        return a.args.iter().map(|p| intention_from_file(p)).collect();
    }
    let [src, dst] = a.args.as_slice() else {
        return Err("Must specify two arguments: source and destination".into());
    };
    let (src_ap, src_ns, src_name) =
        parse_target(src).map_err(|e| format!("Invalid intention source: {e}"))?;
    let (dst_ap, dst_ns, dst_name) =
        parse_target(dst).map_err(|e| format!("Invalid intention destination: {e}"))?;
    // meshgate, like Consul CE, has no partitions; the exact API takes ns/name.
    let _ = (src_ap, dst_ap);
    Ok(vec![Intention {
        source_ns: src_ns,
        source_name: src_name,
        destination_ns: dst_ns,
        destination_name: dst_name,
        source_type: "consul".into(),
        action: action.into(),
        meta,
        ..Intention::default()
    }])
}

/// What Consul's server answers when a create would add a second source
/// of the same name to the destination's entry: the source is appended,
/// the sources sorted by precedence (stably), and validation names the
/// position of the second one.
async fn duplicate_error(c: &Client, i: &Intention, destination: &str) -> String {
    let p = i64::from(intentions::precedence(&i.source_name, &i.destination_name));
    let at = match destination_entry(c, destination).await {
        Ok(Some(e)) => e.sources().iter().filter(|s| s.precedence >= p).count(),
        _ => 1,
    };
    format!(
        "Unexpected response code: 500 (Sources[{at}] defines {} more than once)",
        go_quote(&i.source_name)
    )
}

async fn create(a: CreateArgs) -> CliResult {
    // A malformed -meta is a flag error, reported before anything else.
    let meta = parse_meta(&a.meta)?;
    let deny = on(a.deny);
    let allow = on(a.allow) || !deny;
    if allow && deny {
        return Err(CliError::new(
            "Only one of -allow or -deny may be specified.",
        ));
    }
    let action = if allow { "allow" } else { "deny" };
    let ixns =
        intentions_from_args(&a, action, meta).map_err(|e| CliError::new(format!("Error: {e}")))?;
    let c = Client::new(&a.http)?;
    for ixn in ixns {
        let src = shown(&ixn.source_ns, &ixn.source_name);
        let dst = shown(&ixn.destination_ns, &ixn.destination_name);
        let mut existing = get_exact(&c, &src, &dst).await;
        if on(a.replace) {
            let found = existing.map_err(|e| {
                CliError::new(format!(
                    "Error looking up intention for replacement with source {} and destination {}: {e}",
                    go_quote(&src),
                    go_quote(&dst)
                ))
            })?;
            if found.is_some() {
                put_exact(&c, &src, &dst, &ixn).await.map_err(|e| {
                    CliError::new(format!(
                        "Error replacing intention with source {} and destination {}: {e}",
                        go_quote(&src),
                        go_quote(&dst)
                    ))
                })?;
                // Consul prints nothing for a replaced intention.
                continue;
            }
            existing = Ok(None);
        }
        let failed = |e: String| {
            CliError::new(format!(
                "Error creating intention {}: {e}",
                go_quote(&describe(&ixn))
            ))
        };
        match existing {
            Ok(Some(_)) => return Err(failed(duplicate_error(&c, &ixn, &dst).await)),
            Ok(None) => {}
            Err(e) => return Err(failed(e)),
        }
        put_exact(&c, &src, &dst, &ixn).await.map_err(failed)?;
        println!("Created: {}", describe(&ixn));
    }
    Ok(())
}

// === get, delete ===

/// The intention of a legacy ID (found in the list).
async fn by_id(c: &Client, id: &str) -> Result<Option<Intention>, String> {
    Ok(list_all(c).await?.into_iter().find(|i| i.id == id))
}

async fn get(a: PairArgs) -> CliResult {
    let c = Client::new(&a.http)?;
    let ixn = match a.args.as_slice() {
        [id] => by_id(&c, id)
            .await
            .map_err(|e| CliError::new(format!("Error reading the intention: {e}")))?
            .ok_or_else(|| {
                CliError::new(format!("Intention not found with ID {}", go_quote(id)))
            })?,
        [src, dst] => get_exact(&c, src, dst)
            .await
            .map_err(|e| CliError::new(format!("Error reading the intention: {e}")))?
            .ok_or_else(|| {
                CliError::new(format!(
                    "Intention not found with source {} and destination {}",
                    go_quote(src),
                    go_quote(dst)
                ))
            })?,
        _ => return Err(CliError::new("command requires exactly 1 or 2 arguments")),
    };
    let row = |k: &str, v: &str| vec![k.to_string(), v.to_string()];
    let mut rows = vec![
        row("Source:", &shown(&ixn.source_ns, &ixn.source_name)),
        row(
            "Destination:",
            &shown(&ixn.destination_ns, &ixn.destination_name),
        ),
    ];
    if !ixn.action.is_empty() {
        rows.push(row("Action:", &ixn.action));
    }
    if !ixn.id.is_empty() {
        rows.push(row("ID:", &ixn.id));
    }
    if !ixn.description.is_empty() {
        rows.push(row("Description:", &ixn.description));
    }
    for (k, v) in &ixn.meta {
        rows.push(row(&format!("Meta[{k}]:"), v));
    }
    rows.push(row("Created At:", &rfc850_utc(ixn.created_at.as_deref())));
    println!("{}", columnize(&rows));
    if !ixn.permissions.is_empty() {
        let perms = serde_json::to_value(&ixn.permissions).unwrap_or(Value::Null);
        println!("Permissions:\n{}", go_json_indent(&perms, b"  "));
    }
    Ok(())
}

async fn delete(a: PairArgs) -> CliResult {
    let failed = |e: String| CliError::new(format!("Error deleting the intention: {e}"));
    let c = Client::new(&a.http)?;
    let (src, dst) = match a.args.as_slice() {
        [id] => {
            let ixn = by_id(&c, id)
                .await
                .map_err(failed)?
                .ok_or_else(|| failed(format!("Cannot delete non-existent intention: '{id}'")))?;
            (
                shown(&ixn.source_ns, &ixn.source_name),
                shown(&ixn.destination_ns, &ixn.destination_name),
            )
        }
        [src, dst] => (src.clone(), dst.clone()),
        _ => return Err(CliError::new("command requires exactly 1 or 2 arguments")),
    };
    let q = [("source", src), ("destination", dst)];
    c.delete("/v1/connect/intentions/exact", &q)
        .await
        .map_err(|e| failed(e.message))?;
    println!("Intention deleted.");
    Ok(())
}

// === list, check, match ===

async fn list(a: ListArgs) -> CliResult {
    let c = Client::new(&a.http)?;
    let all = list_all(&c)
        .await
        .map_err(|e| CliError::new(format!("Failed to retrieve the intentions list: {e}")))?;
    if all.is_empty() {
        return Err(CliError {
            message: "There are no intentions.".into(),
            code: 2,
        });
    }
    let mut rows = vec![
        ["ID", "Source", "Action", "Destination", "Precedence"]
            .map(String::from)
            .to_vec(),
    ];
    for i in &all {
        rows.push(vec![
            i.id.clone(),
            i.source_name.clone(),
            i.action.clone(),
            i.destination_name.clone(),
            i.precedence.to_string(),
        ]);
    }
    println!("{}", columnize(&rows));
    Ok(())
}

async fn check(a: PairArgs) -> CliResult {
    let fail2 = |m: String| CliError {
        message: m,
        code: 2,
    };
    let [src, dst] = a.args.as_slice() else {
        return Err(fail2(
            "Error: command requires exactly two arguments: src and dst".into(),
        ));
    };
    let c = Client::new(&a.http).map_err(|e| fail2(e.message))?;
    let q = [
        ("source", src.clone()),
        ("destination", dst.clone()),
        ("source-type", "consul".to_string()),
    ];
    let allowed = async {
        let r = c.get("/v1/connect/intentions/check", &q).await?;
        let v: Value = r.json()?;
        Ok::<bool, CliError>(v.get("Allowed").and_then(Value::as_bool).unwrap_or(false))
    }
    .await
    .map_err(|e| fail2(format!("Error checking the connection: {}", e.message)))?;
    if allowed {
        println!("Allowed");
        Ok(())
    } else {
        println!("Denied");
        Err(CliError {
            message: String::new(),
            code: 1,
        })
    }
}

async fn matches(a: MatchArgs) -> CliResult {
    let [name] = a.args.as_slice() else {
        return Err(CliError::new(
            "Error: command requires exactly one argument: src or dst",
        ));
    };
    if on(a.source) && on(a.destination) {
        return Err(CliError::new(
            "Error: only one of -source or -destination may be specified",
        ));
    }
    let by = if on(a.source) {
        "source"
    } else {
        "destination"
    };
    let c = Client::new(&a.http)?;
    let q = [("by", by.to_string()), ("name", name.clone())];
    let found = async {
        let r = c.get("/v1/connect/intentions/match", &q).await?;
        r.json::<BTreeMap<String, Vec<Intention>>>()
    }
    .await
    .map_err(|e| CliError::new(format!("Error matching the connection: {}", e.message)))?;
    for i in found.get(name).into_iter().flatten() {
        println!("{}", describe(i));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_rfc850() {
        assert_eq!(rfc850_utc(None), "Monday, 01-Jan-01 00:00:00 UTC");
        assert_eq!(
            rfc850_utc(Some("2024-02-29T13:05:09.123456Z")),
            "Thursday, 29-Feb-24 13:05:09 UTC"
        );
        assert_eq!(
            rfc850_utc(Some("2021-01-01T01:00:00+02:00")),
            "Thursday, 31-Dec-20 23:00:00 UTC"
        );
        assert_eq!(
            rfc850_utc(Some("garbage")),
            "Monday, 01-Jan-01 00:00:00 UTC"
        );
    }

    #[test]
    fn targets_and_strings() {
        assert_eq!(
            parse_target("a/b/c/d").unwrap_err(),
            "input can contain at most two '/'"
        );
        assert_eq!(
            parse_target("ns/web").unwrap(),
            (String::new(), "ns".to_string(), "web".to_string())
        );
        let mut i = Intention {
            source_ns: "default".into(),
            source_name: "web".into(),
            destination_ns: "other".into(),
            destination_name: "db".into(),
            action: "deny".into(),
            ..Intention::default()
        };
        assert_eq!(describe(&i), "web => other/db (deny)");
        i.permissions = vec![Default::default(), Default::default()];
        assert_eq!(describe(&i), "web => other/db (2 permissions)");
    }

    #[test]
    fn meta_flags() {
        assert_eq!(
            parse_meta(&["a=b=c".into()]).unwrap().get("a").unwrap(),
            "b=c"
        );
        assert_eq!(
            parse_meta(&["x".into()]).unwrap_err().message,
            "invalid value \"x\" for flag -meta: Missing \"=\" value in argument: x"
        );
    }
}
