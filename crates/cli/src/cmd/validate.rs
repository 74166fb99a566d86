//! `meshgate validate FILE_OR_DIRECTORY...`: reads configuration files as
//! `meshgate agent` would and says whether the agent would start with them
//! (Consul's `consul validate`, for configuration management to run before
//! installing files or reloading an agent).

use std::path::PathBuf;

use clap::Args;

use crate::client::{CliError, CliResult};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Read files in this format whatever their extension: hcl or json.
    #[arg(long = "config-format")]
    pub config_format: Option<String>,
    /// No output when the configuration is valid.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub quiet: Option<bool>,
    /// Configuration files and directories (every *.hcl and *.json in them).
    pub paths: Vec<PathBuf>,
}

/// Runs `meshgate validate`.
pub fn run(a: ValidateArgs) -> CliResult {
    if a.paths.is_empty() {
        return Err(CliError::new(
            "Must specify at least one config file or directory",
        ));
    }
    if let Some(f) = &a.config_format
        && f != "hcl"
        && f != "json"
    {
        return Err(CliError::new(
            "-config-format must be either 'hcl' or 'json'",
        ));
    }
    let failed = |e: String| CliError::new(format!("Config validation failed: {e}"));
    let sources = meshgate_agent::config::Sources {
        files: a.paths.clone(),
        dirs: Vec::new(),
        flags: serde_json::Map::new(),
        dev: false,
        format: a.config_format.clone(),
    };
    let loaded = meshgate_agent::config::load(&sources).map_err(|e| failed(e.to_string()))?;
    // What the agent checks before it starts, beyond the keys and values.
    meshgate_agent::check_cluster_settings(&loaded.config).map_err(|e| failed(e.to_string()))?;
    super::watch::agent_watches(&loaded.config.watch_list()).map_err(failed)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    if !a.quiet.unwrap_or(false) {
        println!("Configuration is valid!");
    }
    Ok(())
}
