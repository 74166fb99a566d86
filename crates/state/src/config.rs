//! Config entries (terminating gateways, service defaults, intentions, ...),
//! the services linked to terminating gateways, and the mesh CA.

use std::collections::BTreeMap;

use meshgate_ca::{CaRoot, CaSigner};
use meshgate_config_entries::{ConfigEntry, TERMINATING_GATEWAY};
use meshgate_types::catalog::{Node, NodeService};
use serde::{Deserialize, Serialize};

use crate::{ApplyError, State, Table};

/// The mesh CA as replicated: its roots (one active), the active signing key
/// and certificate, and the provider configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaState {
    /// The cluster ID; the trust domain is `<cluster_id>.consul`.
    pub cluster_id: String,
    pub roots: Vec<CaRoot>,
    /// The key and certificate that sign leaves (the active root's).
    pub signer: CaSigner,
    /// `/v1/connect/ca/configuration` (`Provider`, `Config`, ...).
    pub config: serde_json::Value,
    /// Index of the last change (set by the store).
    #[serde(default)]
    pub modify_index: u64,
}

/// A service linked to a gateway (`/v1/catalog/gateway-services/:gateway`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GatewayService {
    pub gateway: ServiceName,
    pub service: ServiceName,
    pub gateway_kind: String,
    #[serde(rename = "CAFile", skip_serializing_if = "String::is_empty")]
    pub ca_file: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cert_file: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key_file: String,
    #[serde(rename = "SNI", skip_serializing_if = "String::is_empty")]
    pub sni: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_wildcard: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

/// `{"Name": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceName {
    pub name: String,
}

/// Config entries by (kind, name).
pub(crate) type ConfigTable = BTreeMap<(String, String), ConfigEntry>;

fn decode_stored(value: &serde_json::Value) -> Result<ConfigEntry, ApplyError> {
    meshgate_config_entries::decode(value.clone())
        .map_err(|e| ApplyError::Invalid(format!("invalid config entry: {e}")))
}

impl State {
    /// Writes an entry (the JSON of [`ConfigEntry::to_json`], already
    /// normalized and validated by the proposer). With `cas`, only when the
    /// stored entry's `ModifyIndex` equals it (0: only when absent).
    pub(crate) fn config_set(
        &mut self,
        idx: u64,
        value: &serde_json::Value,
        cas: Option<u64>,
    ) -> Result<bool, ApplyError> {
        let mut entry = decode_stored(value)?;
        let key = (entry.kind().to_string(), entry.name().to_string());
        let existing = self.config.get(&key);
        if let Some(c) = cas {
            let current = existing.map(ConfigEntry::modify_index).unwrap_or(0);
            if current != c {
                return Ok(false);
            }
        }
        let create = existing.map(ConfigEntry::create_index).unwrap_or(idx);
        entry.set_indexes(create, idx);
        self.config.insert(key, entry);
        self.touch(Table::Config, idx);
        Ok(true)
    }

    /// Deletes an entry; with `cas`, only when its `ModifyIndex` matches.
    /// Deleting a missing entry succeeds (without `cas`).
    pub(crate) fn config_delete(
        &mut self,
        idx: u64,
        kind: &str,
        name: &str,
        cas: Option<u64>,
    ) -> bool {
        let key = (kind.to_string(), name.to_string());
        match (self.config.get(&key), cas) {
            (None, Some(_)) => false,
            (None, None) => true,
            (Some(e), Some(c)) if e.modify_index() != c => false,
            (Some(_), _) => {
                self.config.remove(&key);
                self.touch(Table::Config, idx);
                true
            }
        }
    }

    /// One entry.
    pub fn config_entry(&self, kind: &str, name: &str) -> (u64, Option<&ConfigEntry>) {
        (
            self.tables.config,
            self.config.get(&(kind.to_string(), name.to_string())),
        )
    }

    /// Every entry of a kind, by name.
    pub fn config_entries(&self, kind: &str) -> (u64, Vec<&ConfigEntry>) {
        (
            self.tables.config,
            self.config
                .range((kind.to_string(), String::new())..)
                .take_while(|((k, _), _)| k == kind)
                .map(|(_, e)| e)
                .collect(),
        )
    }

    /// Every entry of every kind.
    pub fn all_config_entries(&self) -> (u64, Vec<&ConfigEntry>) {
        (self.tables.config, self.config.values().collect())
    }

    /// Names of the typical (non-proxy, non-gateway) services that have an
    /// instance not in the mesh, except `consul`: what a `*` link covers.
    fn wildcard_services(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for s in self.services.values() {
            if s.kind.is_empty() && !s.connect.native && s.service != "consul" {
                names.push(s.service.clone());
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// The services linked to a terminating gateway, `*` expanded to the
    /// services that exist (an explicit link wins over the wildcard).
    pub fn gateway_services(&self, gateway: &str) -> (u64, Vec<GatewayService>) {
        let idx = self.tables.config.max(self.tables.services);
        let Some(ConfigEntry::TerminatingGateway(gw)) = self
            .config
            .get(&(TERMINATING_GATEWAY.to_string(), gateway.to_string()))
        else {
            return (idx, Vec::new());
        };
        let mut out: BTreeMap<String, GatewayService> = BTreeMap::new();
        let make = |name: &str, l: &meshgate_config_entries::LinkedService, wildcard: bool| {
            GatewayService {
                gateway: ServiceName {
                    name: gw.name.clone(),
                },
                service: ServiceName {
                    name: name.to_string(),
                },
                gateway_kind: TERMINATING_GATEWAY.to_string(),
                ca_file: l.ca_file.clone(),
                cert_file: l.cert_file.clone(),
                key_file: l.key_file.clone(),
                sni: l.sni.clone(),
                from_wildcard: wildcard,
                create_index: gw.create_index,
                modify_index: gw.modify_index,
            }
        };
        for l in gw.services() {
            if l.name != "*" {
                out.insert(l.name.clone(), make(&l.name, l, false));
            }
        }
        if let Some(w) = gw.services().iter().find(|l| l.name == "*") {
            for name in self.wildcard_services() {
                out.entry(name.clone())
                    .or_insert_with(|| make(&name, w, true));
            }
        }
        (idx, out.into_values().collect())
    }

    /// The terminating gateways a service is linked to (by name or `*`).
    pub fn gateways_for_service(&self, service: &str) -> Vec<String> {
        let wildcard_ok = self.wildcard_services().iter().any(|s| s == service);
        self.config
            .values()
            .filter_map(|e| match e {
                ConfigEntry::TerminatingGateway(gw) => Some(gw),
                _ => None,
            })
            .filter(|gw| {
                gw.services()
                    .iter()
                    .any(|l| l.name == service || (l.name == "*" && wildcard_ok))
            })
            .map(|gw| gw.name.clone())
            .collect()
    }

    /// The instances of the terminating gateways a service is linked to.
    pub fn linked_gateway_instances(&self, service: &str) -> Vec<(&Node, &NodeService)> {
        let gateways = self.gateways_for_service(service);
        let mut out = Vec::new();
        for g in gateways {
            for (n, s) in self.service_instances(&g) {
                if s.kind == TERMINATING_GATEWAY {
                    out.push((n, s));
                }
            }
        }
        out
    }

    // === CA ===

    /// Replaces the CA state when its index is still `cas` (0: only when
    /// there is no CA yet).
    pub(crate) fn ca_set(&mut self, idx: u64, ca: &CaState, cas: u64) -> Result<bool, ApplyError> {
        let current = self.ca.as_ref().map(|c| c.modify_index).unwrap_or(0);
        if current != cas {
            return Ok(false);
        }
        if ca.roots.iter().filter(|r| r.active).count() != 1 {
            return Err(ApplyError::Invalid(
                "CA state must have exactly one active root".into(),
            ));
        }
        let mut ca = ca.clone();
        ca.modify_index = idx;
        self.ca = Some(ca);
        self.touch(Table::Ca, idx);
        Ok(true)
    }

    /// The CA, once initialized.
    pub fn ca(&self) -> (u64, Option<&CaState>) {
        (self.tables.ca, self.ca.as_ref())
    }
}
