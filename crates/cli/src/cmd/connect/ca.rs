//! `meshgate connect ca get-config|set-config`, with the output and
//! messages of `consul connect ca`.

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::client::{CliError, CliResult, Client, HttpFlags};
use crate::cmd::acl::{go_io_error, go_json_indent, sort_keys};

/// CA commands.
#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Print the CA configuration as JSON.
    GetConfig(GetConfigArgs),
    /// Change the CA configuration from a JSON file.
    SetConfig(SetConfigArgs),
}

#[derive(Args, Debug)]
pub struct GetConfigArgs {
    #[command(flatten)]
    pub http: HttpFlags,
}

#[derive(Args, Debug)]
pub struct SetConfigArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The JSON file with the new configuration (Provider, Config).
    #[arg(long = "config-file", default_value = "")]
    pub config_file: String,
    /// Go ahead even when the current CA cannot cross-sign the new root.
    #[arg(
        long = "force-without-cross-signing",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub force_without_cross_signing: Option<bool>,
}

/// Runs a `connect ca` subcommand.
pub async fn run(cmd: CaCmd) -> CliResult {
    match cmd {
        CaCmd::GetConfig(a) => get_config(a).await,
        CaCmd::SetConfig(a) => set_config(a).await,
    }
}

/// The value of `key` in `obj`, matched as Go's `encoding/json` matches
/// struct fields (exact name first, then case-insensitively).
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A configuration in the shape of Consul's `api.CAConfig` (its fields, in
/// its order, `Config` and `State` with sorted keys as Go writes maps).
fn ca_config(v: &Value) -> Result<Value, String> {
    let Value::Object(obj) = v else {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type api.CAConfig",
            json_kind(v)
        ));
    };
    let typed = |key: &str, want: &str, ok: fn(&Value) -> bool| -> Result<Value, String> {
        match field(obj, key) {
            None | Some(Value::Null) => Ok(Value::Null),
            Some(x) if ok(x) => Ok(x.clone()),
            Some(x) => Err(format!(
                "json: cannot unmarshal {} into Go struct field CAConfig.{key} of type {want}",
                json_kind(x)
            )),
        }
    };
    let provider = typed("Provider", "string", Value::is_string)?;
    let mut config = typed("Config", "map[string]interface {}", Value::is_object)?;
    let mut state = typed("State", "map[string]string", |x| {
        x.as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
    })?;
    let force = typed("ForceWithoutCrossSigning", "bool", Value::is_boolean)?;
    let index = |key: &str| typed(key, "uint64", |x| x.is_u64());
    let (create, modify) = (index("CreateIndex")?, index("ModifyIndex")?);
    sort_keys(&mut config);
    sort_keys(&mut state);
    Ok(json!({
        "Provider": if provider.is_null() { json!("") } else { provider },
        "Config": config,
        "State": state,
        "ForceWithoutCrossSigning": force.as_bool().unwrap_or(false),
        "CreateIndex": if create.is_null() { json!(0) } else { create },
        "ModifyIndex": if modify.is_null() { json!(0) } else { modify },
    }))
}

async fn get_config(a: GetConfigArgs) -> CliResult {
    let c = Client::new(&a.http)
        .map_err(|e| CliError::new(format!("Error initializing client: {}", e.message)))?;
    let failed = |e: String| CliError::new(format!("Error querying CA configuration: {e}"));
    let r = c
        .get("/v1/connect/ca/configuration", &[])
        .await
        .map_err(|e| failed(e.message))?;
    let v: Value = r.json().map_err(|e| failed(e.message))?;
    let cfg = ca_config(&v).map_err(failed)?;
    println!("{}", go_json_indent(&cfg, b"\t"));
    Ok(())
}

async fn set_config(a: SetConfigArgs) -> CliResult {
    let c = Client::new(&a.http)
        .map_err(|e| CliError::new(format!("Error initializing client: {}", e.message)))?;
    if a.config_file.is_empty() {
        return Err(CliError::new("The -config-file flag is required"));
    }
    let bytes = std::fs::read(&a.config_file).map_err(|e| {
        CliError::new(format!(
            "Error reading config file: {}",
            go_io_error("open", &a.config_file, &e)
        ))
    })?;
    let parse_failed = |e: String| CliError::new(format!("Error parsing config file: {e}"));
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| parse_failed(e.to_string()))?;
    let mut cfg = ca_config(&v).map_err(parse_failed)?;
    cfg["ForceWithoutCrossSigning"] = json!(a.force_without_cross_signing.unwrap_or(false));
    let body = serde_json::to_vec(&cfg).unwrap_or_default();
    c.put("/v1/connect/ca/configuration", &[], Some(body))
        .await
        .map_err(|e| CliError::new(format!("Error setting CA configuration: {}", e.message)))?;
    println!("Configuration updated!");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_shape() {
        let v = json!({
            "provider": "consul",
            "Config": {"RotationPeriod": "2160h", "LeafCertTTL": "72h"},
            "Extra": 1,
        });
        let cfg = ca_config(&v).unwrap();
        assert_eq!(
            serde_json::to_string(&cfg).unwrap(),
            r#"{"Provider":"consul","Config":{"LeafCertTTL":"72h","RotationPeriod":"2160h"},"State":null,"ForceWithoutCrossSigning":false,"CreateIndex":0,"ModifyIndex":0}"#
        );
        assert_eq!(
            ca_config(&json!({"Config": "x"})).unwrap_err(),
            "json: cannot unmarshal string into Go struct field CAConfig.Config of type map[string]interface {}"
        );
        assert_eq!(
            ca_config(&json!([])).unwrap_err(),
            "json: cannot unmarshal array into Go value of type api.CAConfig"
        );
    }
}
