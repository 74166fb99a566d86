//! The mesh CA on this server: creating the root on first start, rotating
//! it when the configuration asks, pruning old roots, and issuing leaf
//! certificates to services (cached, renewed before they expire, reissued
//! when the root changes).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use meshgate_ca::{CaRoot, CaSigner, Leaf, ServiceId};
use meshgate_state::{Applied, CaState, Command};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::Agent;

/// A leaf issued by this agent, with when to renew it.
#[derive(Clone)]
pub struct CachedLeaf {
    pub leaf: Leaf,
    /// The active root that signed it.
    pub root_id: String,
    /// `CreateIndex`/`ModifyIndex` of the leaf (grows with every issue).
    pub index: u64,
    pub renew_at: SystemTime,
}

/// Leaf certificates this agent holds, by service name.
#[derive(Default)]
pub struct LeafCache {
    leaves: Mutex<HashMap<String, CachedLeaf>>,
    /// Wakes blocking leaf queries when a leaf is reissued.
    changed: tokio::sync::Notify,
}

/// Why the CA could not do something.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("CA is not initialized yet")]
    NotReady,
    #[error("{0}")]
    Ca(#[from] meshgate_ca::CaError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Store(String),
}

/// The CA configuration a new cluster starts with (Consul's defaults).
pub fn default_ca_config() -> Value {
    json!({
        "Provider": "consul",
        "Config": {
            "LeafCertTTL": "72h",
            "RotationPeriod": "2160h",
            "IntermediateCertTTL": "8760h",
            "PrivateKeyType": "ec",
            "PrivateKeyBits": 256,
            "RootCertTTL": "87600h",
        },
        "State": null,
        "ForceWithoutCrossSigning": false,
    })
}

fn config_duration(cfg: &Value, key: &str, default: Duration) -> Duration {
    match cfg.get("Config").and_then(|c| c.get(key)) {
        Some(Value::String(s)) => meshgate_types::duration::parse(s).unwrap_or(default),
        Some(Value::Number(n)) => n.as_u64().map(Duration::from_nanos).unwrap_or(default),
        _ => default,
    }
}

/// The leaf lifetime a CA configuration asks for.
pub fn leaf_ttl(cfg: &Value) -> Duration {
    config_duration(cfg, "LeafCertTTL", meshgate_ca::DEFAULT_LEAF_TTL)
}

/// The CA configuration a new cluster starts with: Consul's defaults, with
/// the agent configuration's `connect { ca_provider, ca_config }` over them
/// (`ca_config` keys in snake_case as in agent files, or as the API spells
/// them). Only used when the CA is first created, as in Consul; later
/// changes go through `PUT /v1/connect/ca/configuration`.
pub fn initial_ca_config(c: &crate::config::ConnectConfig) -> Result<Value, ConnectError> {
    if !c.ca_provider.is_empty() && c.ca_provider != "consul" {
        return Err(ConnectError::Invalid(format!(
            "connect.ca_provider: unsupported CA provider {:?}: meshgate has the built-in provider \"consul\" only",
            c.ca_provider
        )));
    }
    let mut config = default_ca_config();
    if let Some(fields) = config.get_mut("Config").and_then(Value::as_object_mut) {
        for (k, v) in &c.ca_config {
            let key = match k.as_str() {
                "leaf_cert_ttl" => "LeafCertTTL",
                "root_cert_ttl" => "RootCertTTL",
                "intermediate_cert_ttl" => "IntermediateCertTTL",
                "rotation_period" => "RotationPeriod",
                "private_key_type" => "PrivateKeyType",
                "private_key_bits" => "PrivateKeyBits",
                "csr_max_per_second" => "CSRMaxPerSecond",
                "csr_max_concurrent" => "CSRMaxConcurrent",
                "private_key" | "root_cert" | "PrivateKey" | "RootCert" => {
                    return Err(ConnectError::Invalid(format!(
                        "connect.ca_config.{k}: bring your own root with `meshgate connect ca \
                         set-config` (PUT /v1/connect/ca/configuration), not in the agent \
                         configuration"
                    )));
                }
                other => other,
            };
            fields.insert(key.to_string(), v.clone());
        }
    }
    if let Some(fields) = config.get("Config") {
        check_config_values(fields)
            .map_err(|e| ConnectError::Invalid(format!("connect.ca_config: {e}")))?;
    }
    Ok(config)
}

/// Creates the CA on first start (a no-op when one exists).
pub async fn init_ca(agent: &Agent) -> Result<(), ConnectError> {
    if agent.store.read().ca().1.is_some() {
        return Ok(());
    }
    let cluster_id = uuid::Uuid::new_v4().to_string();
    let config = initial_ca_config(&agent.config.connect)?;
    let ttl = config_duration(&config, "RootCertTTL", meshgate_ca::DEFAULT_ROOT_TTL);
    let (root, signer) = meshgate_ca::new_root(&cluster_id, ttl)?;
    let ca = CaState {
        cluster_id,
        roots: vec![root],
        signer,
        config,
        modify_index: 0,
    };
    let r = agent
        .store
        .write(Command::CaSet {
            ca: Box::new(ca),
            cas: 0,
        })
        .await
        .map_err(|e| ConnectError::Store(e.to_string()))?;
    if r == Applied::Bool(true) {
        info!("created the mesh CA root");
    }
    Ok(())
}

/// Checks the values of a CA `Config` meshgate acts on: the lifetimes
/// (at least an hour) and the key type (ECDSA P-256, the only one).
fn check_config_values(cfg: &Value) -> Result<(), ConnectError> {
    for (k, min) in [
        ("LeafCertTTL", 3600u64),
        ("RootCertTTL", 3600),
        ("IntermediateCertTTL", 3600),
    ] {
        if let Some(v) = cfg.get(k) {
            let d = match v {
                Value::String(s) => meshgate_types::duration::parse(s)
                    .map_err(|e| ConnectError::Invalid(format!("error parsing {k}: {e}")))?,
                Value::Number(n) => Duration::from_nanos(n.as_u64().unwrap_or(0)),
                _ => {
                    return Err(ConnectError::Invalid(format!(
                        "error parsing {k}: not a duration"
                    )));
                }
            };
            if d < Duration::from_secs(min) {
                return Err(ConnectError::Invalid(format!(
                    "{k} must be at least {}",
                    meshgate_types::duration::format(Duration::from_secs(min))
                )));
            }
        }
    }
    let key_type = cfg
        .get("PrivateKeyType")
        .and_then(Value::as_str)
        .unwrap_or("ec")
        .to_string();
    let key_bits = cfg
        .get("PrivateKeyBits")
        .and_then(Value::as_u64)
        .unwrap_or(256);
    if key_type != "ec" || key_bits != 256 {
        return Err(ConnectError::Invalid(format!(
            "unsupported key: {key_type} {key_bits}: meshgate's CA uses ECDSA P-256 (\"ec\", 256)"
        )));
    }
    Ok(())
}

/// Applies a new CA configuration (`PUT /v1/connect/ca/configuration`).
/// With `Config.PrivateKey` and `Config.RootCert`, that root becomes active
/// (cross-signed by the old one unless `ForceWithoutCrossSigning`); with a
/// different `PrivateKeyType`/`PrivateKeyBits`, a new root is generated.
/// Otherwise only the configuration changes.
pub async fn set_config(agent: &Agent, mut body: Value) -> Result<(), ConnectError> {
    let provider = body
        .get("Provider")
        .and_then(Value::as_str)
        .unwrap_or("consul")
        .to_string();
    if provider != "consul" {
        return Err(ConnectError::Invalid(format!(
            "unsupported CA provider {provider:?}: meshgate has the built-in provider \"consul\" only"
        )));
    }
    let obj = body
        .as_object_mut()
        .ok_or_else(|| ConnectError::Invalid("configuration must be an object".into()))?;
    obj.insert("Provider".into(), json!("consul"));
    let force = obj
        .get("ForceWithoutCrossSigning")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut cfg = obj.get("Config").cloned().unwrap_or_else(|| json!({}));
    if !cfg.is_object() {
        return Err(ConnectError::Invalid("Config must be an object".into()));
    }
    check_config_values(&cfg)?;
    let private_key = cfg
        .get("PrivateKey")
        .and_then(Value::as_str)
        .map(str::to_string);
    let root_cert = cfg
        .get("RootCert")
        .and_then(Value::as_str)
        .map(str::to_string);
    // Secrets are kept in the signer, never in the readable configuration.
    if let Some(m) = cfg.as_object_mut() {
        m.remove("PrivateKey");
        m.remove("RootCert");
    }
    obj.insert("Config".into(), cfg);
    obj.remove("CreateIndex");
    obj.remove("ModifyIndex");
    obj.entry("State").or_insert(Value::Null);
    obj.insert("ForceWithoutCrossSigning".into(), json!(force));

    for _ in 0..5 {
        let Some(current) = agent.store.read().ca().1.cloned() else {
            return Err(ConnectError::NotReady);
        };
        let mut next = current.clone();
        next.config = body.clone();
        match (&private_key, &root_cert) {
            (Some(key), Some(cert)) => {
                let root = CaRoot::from_cert_pem(cert, &current.cluster_id)?;
                if current.roots.iter().any(|r| r.id == root.id) {
                    // Already the root set: only the configuration changes.
                } else {
                    let signer = CaSigner {
                        key_pem: key.clone(),
                        cert_pem: root.root_cert_pem.clone(),
                    };
                    // Prove the key signs for this certificate before using it.
                    let probe = ServiceId::new(
                        &meshgate_ca::trust_domain(&current.cluster_id),
                        "default",
                        &agent.config.datacenter,
                        "ca-probe",
                    );
                    meshgate_ca::sign_leaf(
                        &signer,
                        &root,
                        &probe,
                        Duration::from_secs(3600),
                        None,
                    )?;
                    let old = (!force).then_some(&current.signer);
                    next.roots = meshgate_ca::rotation::rotate(
                        &current.roots,
                        old,
                        root,
                        SystemTime::now(),
                    )?;
                    next.signer = signer;
                }
            }
            (None, None) => {}
            _ => {
                return Err(ConnectError::Invalid(
                    "PrivateKey and RootCert must be given together".into(),
                ));
            }
        }
        let r = agent
            .store
            .write(Command::CaSet {
                ca: Box::new(next),
                cas: current.modify_index,
            })
            .await
            .map_err(|e| ConnectError::Store(e.to_string()))?;
        if r == Applied::Bool(true) {
            return Ok(());
        }
    }
    Err(ConnectError::Store(
        "the CA changed concurrently; try again".into(),
    ))
}

/// Rotates to a freshly generated root (cross-signed by the current one).
pub async fn rotate_new_root(agent: &Agent) -> Result<(), ConnectError> {
    let Some(current) = agent.store.read().ca().1.cloned() else {
        return Err(ConnectError::NotReady);
    };
    let ttl = config_duration(
        &current.config,
        "RootCertTTL",
        meshgate_ca::DEFAULT_ROOT_TTL,
    );
    let (root, signer) = meshgate_ca::new_root(&current.cluster_id, ttl)?;
    let mut next = current.clone();
    next.roots = meshgate_ca::rotation::rotate(
        &current.roots,
        Some(&current.signer),
        root,
        SystemTime::now(),
    )?;
    next.signer = signer;
    agent
        .store
        .write(Command::CaSet {
            ca: Box::new(next),
            cas: current.modify_index,
        })
        .await
        .map_err(|e| ConnectError::Store(e.to_string()))?;
    Ok(())
}

/// Drops roots rotated out more than twice the leaf lifetime ago; runs
/// every minute.
pub async fn prune_loop(agent: std::sync::Arc<Agent>) {
    let mut stop = agent.shutdown_signal();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = crate::stopped(&mut stop) => return,
        }
        let Some(current) = agent.store.read().ca().1.cloned() else {
            continue;
        };
        let ttl = leaf_ttl(&current.config);
        match meshgate_ca::rotation::prune_roots(&current.roots, ttl, SystemTime::now()) {
            Ok(kept) if kept.len() != current.roots.len() => {
                let mut next = current.clone();
                next.roots = kept;
                if let Err(e) = agent
                    .store
                    .write(Command::CaSet {
                        ca: Box::new(next),
                        cas: current.modify_index,
                    })
                    .await
                {
                    warn!("pruning old CA roots: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => warn!("pruning old CA roots: {e}"),
        }
    }
}

fn renew_at(leaf: &Leaf) -> SystemTime {
    let parse = |s: &str| {
        meshgate_ca::parse_rfc3339(s)
            .ok()
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.unix_timestamp().max(0) as u64))
    };
    let (Some(a), Some(b)) = (parse(&leaf.valid_after), parse(&leaf.valid_before)) else {
        return SystemTime::now();
    };
    let life = b.duration_since(a).unwrap_or_default();
    // Renew at a random point between 60% and 90% of the lifetime, so that
    // a fleet does not renew all at once.
    let frac = rand::random_range(0.6..0.9);
    a + life.mul_f64(frac)
}

impl LeafCache {
    /// The current leaf of `service`, issuing one when there is none, when
    /// the active root changed or when renewal is due.
    pub fn get(&self, agent: &Agent, service: &str) -> Result<CachedLeaf, ConnectError> {
        let (state_index, ca) = {
            let st = agent.store.read();
            (st.index, st.ca().1.cloned())
        };
        let ca = ca.ok_or(ConnectError::NotReady)?;
        let active = meshgate_ca::rotation::active_root(&ca.roots).ok_or(ConnectError::NotReady)?;
        let mut leaves = self.leaves.lock();
        let previous = leaves.get(service).cloned();
        if let Some(c) = &previous
            && c.root_id == active.id
            && SystemTime::now() < c.renew_at
        {
            return Ok(c.clone());
        }
        let id = ServiceId::new(
            &meshgate_ca::trust_domain(&ca.cluster_id),
            "default",
            &agent.config.datacenter,
            service,
        );
        let leaf = meshgate_ca::sign_leaf(&ca.signer, active, &id, leaf_ttl(&ca.config), None)?;
        let index = previous.map(|p| p.index + 1).unwrap_or(0).max(state_index);
        let cached = CachedLeaf {
            renew_at: renew_at(&leaf),
            leaf,
            root_id: active.id.clone(),
            index,
        };
        leaves.insert(service.to_string(), cached.clone());
        drop(leaves);
        self.changed.notify_waiters();
        Ok(cached)
    }

    /// When the cached leaf of `service` is due for renewal.
    pub fn renew_time(&self, service: &str) -> Option<SystemTime> {
        self.leaves.lock().get(service).map(|c| c.renew_at)
    }

    /// Resolves when any leaf is reissued.
    pub async fn wait_changed(&self) {
        self.changed.notified().await;
    }
}
