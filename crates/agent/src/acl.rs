//! Token resolution: which token a request carries, and what it may do.
//!
//! A request's secret is looked up in the state; its policies, roles, service
//! and node identities and templated policies are compiled into one
//! [`Authorizer`], cached per token until the ACL table changes. With ACLs
//! disabled every request is allowed everything.

use std::collections::HashMap;
use std::sync::Arc;

use meshgate_acl::{Access, Authorizer, Denied, Policy, Resource};
use meshgate_types::acl::{
    ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET, AclRole, AclToken, NodeIdentity, ServiceIdentity,
    TemplatedPolicyRef, token_expired,
};
use parking_lot::{Mutex, RwLock};
use tracing::warn;

use crate::Agent;
use crate::http::ApiError;
use crate::store::now_ms;

/// Who is asking, and what they may do.
#[derive(Clone)]
pub struct Identity {
    /// The token (None when ACLs are disabled).
    pub token: Option<AclToken>,
    pub authz: Arc<Authorizer>,
}

impl Identity {
    /// The accessor of the token, if any.
    pub fn accessor(&self) -> Option<&str> {
        self.token.as_ref().map(|t| t.accessor_id.as_str())
    }

    /// Whether this is the anonymous token.
    pub fn is_anonymous(&self) -> bool {
        self.accessor() == Some(ANONYMOUS_ACCESSOR)
    }

    /// `Ok` when allowed, else the 403 naming the missing permission.
    pub fn require(
        &self,
        resource: Resource,
        access: Access,
        segment: &str,
    ) -> Result<(), ApiError> {
        self.authz
            .check(resource, access, segment)
            .map_err(|d| self.denied(&d))
    }

    /// The 403 for a refusal.
    pub fn denied(&self, d: &Denied) -> ApiError {
        ApiError::forbidden(d.message(self.accessor()))
    }

    /// Whether allowed (no error).
    pub fn allows(&self, resource: Resource, access: Access, segment: &str) -> bool {
        self.authz.decide(resource, access, segment)
    }
}

/// The agent's own tokens (`acl.tokens.*`, changeable with `/v1/agent/token`).
#[derive(Debug, Clone, Default)]
pub struct AgentTokens {
    pub default: String,
    pub agent: String,
    pub agent_recovery: String,
    pub replication: String,
    pub config_file_service_registration: String,
    pub dns: String,
}

/// ACL settings and caches of one agent.
pub struct AclResolver {
    pub enabled: bool,
    pub default_allow: bool,
    pub key_list_policy: bool,
    pub tokens: RwLock<AgentTokens>,
    cache: Mutex<HashMap<String, (u64, Arc<Authorizer>)>>,
    policies: Mutex<HashMap<String, (u64, Arc<Policy>)>>,
}

pub(crate) fn token_value(cfg: &crate::config::AclConfig, key: &str) -> String {
    cfg.tokens
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string()
}

impl AclResolver {
    /// From the agent configuration.
    pub fn new(cfg: &crate::config::AclConfig) -> AclResolver {
        let mut recovery = token_value(cfg, "agent_recovery");
        if recovery.is_empty() {
            recovery = token_value(cfg, "agent_master");
        }
        AclResolver {
            enabled: cfg.enabled,
            default_allow: cfg.default_policy != "deny",
            key_list_policy: cfg.enable_key_list_policy,
            tokens: RwLock::new(AgentTokens {
                default: token_value(cfg, "default"),
                agent: token_value(cfg, "agent"),
                agent_recovery: recovery,
                replication: token_value(cfg, "replication"),
                config_file_service_registration: token_value(
                    cfg,
                    "config_file_service_registration",
                ),
                dns: token_value(cfg, "dns"),
            }),
            cache: Mutex::new(HashMap::new()),
            policies: Mutex::new(HashMap::new()),
        }
    }
}

/// The file persisted agent tokens live in.
const TOKENS_FILE: &str = "acl-tokens.json";

impl AclResolver {
    fn slots(t: &mut AgentTokens) -> [(&'static str, &mut String); 6] {
        [
            ("default", &mut t.default),
            ("agent", &mut t.agent),
            ("agent_recovery", &mut t.agent_recovery),
            ("replication", &mut t.replication),
            (
                "config_file_service_registration",
                &mut t.config_file_service_registration,
            ),
            ("dns", &mut t.dns),
        ]
    }

    /// Overrides the configured tokens with those set through the API and
    /// persisted in `<data_dir>/acl-tokens.json`.
    pub fn load_persisted(&self, data_dir: &str) -> std::io::Result<()> {
        if data_dir.is_empty() {
            return Ok(());
        }
        let path = std::path::Path::new(data_dir).join(TOKENS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let saved: HashMap<String, String> = serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        let mut tokens = self.tokens.write();
        for (name, slot) in Self::slots(&mut tokens) {
            if let Some(v) = saved.get(name) {
                *slot = v.clone();
            }
        }
        Ok(())
    }

    /// Writes every agent token to `<data_dir>/acl-tokens.json`, readable
    /// only by the agent's user, replacing the file atomically.
    pub fn persist(&self, data_dir: &str) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut tokens = self.tokens.read().clone();
        let saved: std::collections::BTreeMap<&str, String> = Self::slots(&mut tokens)
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k, v.clone()))
            .collect();
        let dir = std::path::Path::new(data_dir);
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{TOKENS_FILE}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(&saved).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(TOKENS_FILE))
    }
}

fn applies_here(dcs: &[String], dc: &str) -> bool {
    dcs.is_empty() || dcs.iter().any(|d| d == dc)
}

impl Agent {
    /// The identity of a request's secret (empty: the agent's default token,
    /// else anonymous). Unknown or expired secrets are `403 ACL not found`.
    pub fn resolve_token(&self, secret: &str) -> Result<Identity, ApiError> {
        let acl = &self.acl;
        if !acl.enabled {
            return Ok(Identity {
                token: None,
                authz: Arc::new(Authorizer::management()),
            });
        }
        let secret = if secret.is_empty() {
            let d = acl.tokens.read().default.clone();
            if d.is_empty() {
                ANONYMOUS_SECRET.to_string()
            } else {
                d
            }
        } else {
            secret.to_string()
        };
        // The agent recovery token works even without the servers.
        let recovery = acl.tokens.read().agent_recovery.clone();
        if !recovery.is_empty() && subtle_eq(recovery.as_bytes(), secret.as_bytes()) {
            let mut p = Policy::new();
            if let Ok(rules) = meshgate_acl::parse_rules(&format!(
                "agent \"{}\" {{ policy = \"write\" }}\nnode_prefix \"\" {{ policy = \"read\" }}",
                self.node_name
            )) {
                p = rules;
            }
            return Ok(Identity {
                token: Some(AclToken {
                    accessor_id: "agent-recovery-token".into(),
                    description: "Agent Recovery Token".into(),
                    ..Default::default()
                }),
                authz: Arc::new(Authorizer::new(&[&p], false)),
            });
        }
        let (index, token) = {
            let st = self.store.read();
            (st.acl_index(), st.acl_token_by_secret(&secret))
        };
        let Some(token) = token else {
            return Err(ApiError::forbidden(meshgate_acl::ERR_NOT_FOUND));
        };
        if token_expired(&token, now_ms()) {
            return Err(ApiError::forbidden(meshgate_acl::ERR_NOT_FOUND));
        }
        if let Some((idx, authz)) = acl.cache.lock().get(&token.accessor_id)
            && *idx == index
        {
            return Ok(Identity {
                token: Some(token),
                authz: authz.clone(),
            });
        }
        let authz = Arc::new(self.build_authorizer(&token));
        acl.cache
            .lock()
            .insert(token.accessor_id.clone(), (index, authz.clone()));
        Ok(Identity {
            token: Some(token),
            authz,
        })
    }

    fn policy_by_id(&self, id: &str) -> Option<Arc<Policy>> {
        let (modify, rules) = {
            let st = self.store.read();
            let p = st.acl_policy(id)?;
            (p.modify_index, p.rules.clone())
        };
        if let Some((m, p)) = self.acl.policies.lock().get(id)
            && *m == modify
        {
            return Some(p.clone());
        }
        let p = match meshgate_acl::parse_rules(&rules) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                // Rules are validated when written; a policy that no longer
                // parses grants nothing.
                warn!(policy = %id, "stored ACL policy does not parse: {}", e.message());
                return None;
            }
        };
        self.acl
            .policies
            .lock()
            .insert(id.to_string(), (modify, p.clone()));
        Some(p)
    }

    fn identity_policies(
        &self,
        services: &[ServiceIdentity],
        nodes: &[NodeIdentity],
        templated: &[TemplatedPolicyRef],
        out: &mut Vec<Arc<Policy>>,
    ) {
        let dc = &self.config.datacenter;
        for s in services {
            if applies_here(&s.datacenters, dc) {
                out.push(Arc::new(meshgate_acl::service_identity_policy(
                    &s.service_name,
                )));
            }
        }
        for n in nodes {
            if n.datacenter.is_empty() || n.datacenter == *dc {
                out.push(Arc::new(meshgate_acl::node_identity_policy(&n.node_name)));
            }
        }
        for t in templated {
            if !applies_here(&t.datacenters, dc) {
                continue;
            }
            let vars = t
                .template_variables
                .clone()
                .unwrap_or(serde_json::Value::Null);
            match meshgate_acl::templated_policy(&t.template_name, &vars) {
                Ok(p) => out.push(Arc::new(p)),
                Err(e) => warn!(
                    template = %t.template_name,
                    "templated policy does not render: {}",
                    e.message()
                ),
            }
        }
    }

    fn build_authorizer(&self, token: &AclToken) -> Authorizer {
        let mut policies: Vec<Arc<Policy>> = Vec::new();
        for l in &token.policies {
            if let Some(p) = self.policy_by_id(&l.id) {
                policies.push(p);
            }
        }
        let roles: Vec<AclRole> = {
            let st = self.store.read();
            token
                .roles
                .iter()
                .filter_map(|l| st.acl_role(&l.id))
                .collect()
        };
        for r in &roles {
            for l in &r.policies {
                if let Some(p) = self.policy_by_id(&l.id) {
                    policies.push(p);
                }
            }
            self.identity_policies(
                &r.service_identities,
                &r.node_identities,
                &r.templated_policies,
                &mut policies,
            );
        }
        self.identity_policies(
            &token.service_identities,
            &token.node_identities,
            &token.templated_policies,
            &mut policies,
        );
        let refs: Vec<&Policy> = policies.iter().map(|p| p.as_ref()).collect();
        Authorizer::new(&refs, self.acl.default_allow)
            .with_key_list_policy(self.acl.key_list_policy)
    }
}

/// Constant-time equality of two secrets.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
