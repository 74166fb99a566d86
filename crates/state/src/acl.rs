//! ACL tables: tokens, policies, roles, auth methods, binding rules, and the
//! bootstrap marker.
//!
//! Rules text is validated before a command is proposed (the rule language lives
//! in `meshgate-acl`); here only referential integrity and uniqueness are
//! checked, so that `apply` stays cheap and deterministic.

use std::collections::{BTreeMap, HashMap};

use meshgate_types::acl::{
    AclAuthMethod, AclBindingRule, AclPolicy, AclRole, AclToken, GLOBAL_MANAGEMENT_ID, Link,
};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ApplyError, State, Table};

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The ACL part of the state.
#[derive(Debug, Clone, Default)]
pub struct AclTables {
    pub(crate) tokens: BTreeMap<String, AclToken>,
    /// SHA-256 of the secret → accessor. Looking a secret up by its digest,
    /// then comparing the secret in constant time, leaks nothing through timing.
    pub(crate) by_secret: HashMap<[u8; 32], String>,
    pub(crate) policies: BTreeMap<String, AclPolicy>,
    pub(crate) roles: BTreeMap<String, AclRole>,
    pub(crate) auth_methods: BTreeMap<String, AclAuthMethod>,
    pub(crate) binding_rules: BTreeMap<String, AclBindingRule>,
    /// The index at which ACLs were bootstrapped, if they were.
    pub(crate) bootstrap_index: Option<u64>,
}

impl AclTables {
    /// Inserts a token as it is (snapshot restore).
    pub(crate) fn insert_token_unchecked(&mut self, t: AclToken) {
        self.by_secret
            .insert(digest(&t.secret_id), t.accessor_id.clone());
        self.tokens.insert(t.accessor_id.clone(), t);
    }
}

impl State {
    /// Installs built-in policies and tokens (idempotent; run at first leadership).
    pub(crate) fn acl_init(
        &mut self,
        idx: u64,
        policies: &[AclPolicy],
        tokens: &[AclToken],
    ) -> Result<(), ApplyError> {
        let mut changed = false;
        for p in policies {
            if !self.acl.policies.contains_key(&p.id) {
                let mut p = p.clone();
                p.create_index = idx;
                p.modify_index = idx;
                self.acl.policies.insert(p.id.clone(), p);
                changed = true;
            }
        }
        for t in tokens {
            if !self.acl.tokens.contains_key(&t.accessor_id)
                && !self.acl.by_secret.contains_key(&digest(&t.secret_id))
            {
                let mut t = t.clone();
                t.create_index = idx;
                t.modify_index = idx;
                self.acl
                    .by_secret
                    .insert(digest(&t.secret_id), t.accessor_id.clone());
                self.acl.tokens.insert(t.accessor_id.clone(), t);
                changed = true;
            }
        }
        if changed {
            self.touch(Table::Acl, idx);
        }
        Ok(())
    }

    /// Bootstraps ACLs with a management token. `reset_index` must equal the
    /// recorded bootstrap index to bootstrap a second time.
    pub(crate) fn acl_bootstrap(
        &mut self,
        idx: u64,
        token: &AclToken,
        reset_index: Option<u64>,
    ) -> Result<(), ApplyError> {
        if let Some(done) = self.acl.bootstrap_index
            && reset_index != Some(done)
        {
            return Err(ApplyError::Invalid(format!(
                "Permission denied: ACL bootstrap no longer allowed (reset index: {done})"
            )));
        }
        if !self.acl.policies.contains_key(GLOBAL_MANAGEMENT_ID) {
            return Err(ApplyError::Invalid(
                "ACL system is not initialized: missing the global-management policy".into(),
            ));
        }
        self.acl_token_set(idx, token)?;
        self.acl.bootstrap_index = Some(idx);
        Ok(())
    }

    pub(crate) fn acl_token_set(&mut self, idx: u64, token: &AclToken) -> Result<(), ApplyError> {
        if token.accessor_id.is_empty() || token.secret_id.is_empty() {
            return Err(ApplyError::Invalid(
                "Invalid Token: AccessorID and SecretID must be set".into(),
            ));
        }
        if let Some(owner) = self.acl.by_secret.get(&digest(&token.secret_id))
            && *owner != token.accessor_id
        {
            return Err(ApplyError::Invalid(
                "Invalid Token: SecretID is already in use".into(),
            ));
        }
        for l in &token.policies {
            if !self.acl.policies.contains_key(&l.id) {
                return Err(ApplyError::Invalid(format!(
                    "No such ACL policy with ID \"{}\"",
                    l.id
                )));
            }
        }
        for l in &token.roles {
            if !self.acl.roles.contains_key(&l.id) {
                return Err(ApplyError::Invalid(format!(
                    "No such ACL role with ID \"{}\"",
                    l.id
                )));
            }
        }
        let mut t = token.clone();
        t.expiration_ttl.clear();
        match self.acl.tokens.get(&t.accessor_id) {
            Some(existing) => {
                if existing.secret_id != t.secret_id {
                    return Err(ApplyError::Invalid(
                        "Changing a token's SecretID is not permitted".into(),
                    ));
                }
                t.create_index = existing.create_index;
            }
            None => t.create_index = idx,
        }
        t.modify_index = idx;
        self.acl
            .by_secret
            .insert(digest(&t.secret_id), t.accessor_id.clone());
        self.acl.tokens.insert(t.accessor_id.clone(), t);
        self.touch(Table::Acl, idx);
        Ok(())
    }

    pub(crate) fn acl_token_delete(&mut self, idx: u64, accessor: &str) {
        if let Some(t) = self.acl.tokens.remove(accessor) {
            self.acl.by_secret.remove(&digest(&t.secret_id));
            self.touch(Table::Acl, idx);
        }
    }

    pub(crate) fn acl_policy_set(&mut self, idx: u64, p: &AclPolicy) -> Result<(), ApplyError> {
        if p.id.is_empty() || p.name.is_empty() {
            return Err(ApplyError::Invalid("Invalid Policy: no Name is set".into()));
        }
        if let Some(other) = self
            .acl
            .policies
            .values()
            .find(|o| o.name == p.name && o.id != p.id)
        {
            let _ = other;
            return Err(ApplyError::Invalid(format!(
                "Invalid Policy: A Policy with Name \"{}\" already exists",
                p.name
            )));
        }
        let mut p = p.clone();
        match self.acl.policies.get(&p.id) {
            Some(existing) => p.create_index = existing.create_index,
            None => p.create_index = idx,
        }
        p.modify_index = idx;
        self.acl.policies.insert(p.id.clone(), p);
        self.touch(Table::Acl, idx);
        Ok(())
    }

    pub(crate) fn acl_policy_delete(&mut self, idx: u64, id: &str) {
        if self.acl.policies.remove(id).is_some() {
            // Links to a deleted policy disappear from tokens and roles.
            for t in self.acl.tokens.values_mut() {
                t.policies.retain(|l| l.id != id);
            }
            for r in self.acl.roles.values_mut() {
                r.policies.retain(|l| l.id != id);
            }
            self.touch(Table::Acl, idx);
        }
    }

    pub(crate) fn acl_role_set(&mut self, idx: u64, r: &AclRole) -> Result<(), ApplyError> {
        if r.id.is_empty() || r.name.is_empty() {
            return Err(ApplyError::Invalid("Invalid Role: no Name is set".into()));
        }
        if self
            .acl
            .roles
            .values()
            .any(|o| o.name == r.name && o.id != r.id)
        {
            return Err(ApplyError::Invalid(format!(
                "Invalid Role: A Role with Name \"{}\" already exists",
                r.name
            )));
        }
        for l in &r.policies {
            if !self.acl.policies.contains_key(&l.id) {
                return Err(ApplyError::Invalid(format!(
                    "No such ACL policy with ID \"{}\"",
                    l.id
                )));
            }
        }
        let mut r = r.clone();
        match self.acl.roles.get(&r.id) {
            Some(existing) => r.create_index = existing.create_index,
            None => r.create_index = idx,
        }
        r.modify_index = idx;
        self.acl.roles.insert(r.id.clone(), r);
        self.touch(Table::Acl, idx);
        Ok(())
    }

    pub(crate) fn acl_role_delete(&mut self, idx: u64, id: &str) {
        if self.acl.roles.remove(id).is_some() {
            for t in self.acl.tokens.values_mut() {
                t.roles.retain(|l| l.id != id);
            }
            self.touch(Table::Acl, idx);
        }
    }

    pub(crate) fn acl_auth_method_set(
        &mut self,
        idx: u64,
        m: &AclAuthMethod,
    ) -> Result<(), ApplyError> {
        if m.name.is_empty() {
            return Err(ApplyError::Invalid(
                "Invalid Auth Method: no Name is set".into(),
            ));
        }
        let mut m = m.clone();
        match self.acl.auth_methods.get(&m.name) {
            Some(existing) => m.create_index = existing.create_index,
            None => m.create_index = idx,
        }
        m.modify_index = idx;
        self.acl.auth_methods.insert(m.name.clone(), m);
        self.touch(Table::Acl, idx);
        Ok(())
    }

    pub(crate) fn acl_auth_method_delete(&mut self, idx: u64, name: &str) {
        if self.acl.auth_methods.remove(name).is_none() {
            return;
        }
        // Its binding rules and the tokens it issued go with it.
        self.acl.binding_rules.retain(|_, r| r.auth_method != name);
        let issued: Vec<String> = self
            .acl
            .tokens
            .values()
            .filter(|t| t.auth_method == name)
            .map(|t| t.accessor_id.clone())
            .collect();
        for a in issued {
            self.acl_token_delete(idx, &a);
        }
        self.touch(Table::Acl, idx);
    }

    pub(crate) fn acl_binding_rule_set(
        &mut self,
        idx: u64,
        r: &AclBindingRule,
    ) -> Result<(), ApplyError> {
        if !self.acl.auth_methods.contains_key(&r.auth_method) {
            return Err(ApplyError::Invalid(format!(
                "Invalid Binding Rule: unknown auth method \"{}\"",
                r.auth_method
            )));
        }
        let mut r = r.clone();
        match self.acl.binding_rules.get(&r.id) {
            Some(existing) => r.create_index = existing.create_index,
            None => r.create_index = idx,
        }
        r.modify_index = idx;
        self.acl.binding_rules.insert(r.id.clone(), r);
        self.touch(Table::Acl, idx);
        Ok(())
    }

    pub(crate) fn acl_binding_rule_delete(&mut self, idx: u64, id: &str) {
        if self.acl.binding_rules.remove(id).is_some() {
            self.touch(Table::Acl, idx);
        }
    }

    // === queries ===

    /// The ACL table index.
    pub fn acl_index(&self) -> u64 {
        self.tables.acl
    }

    /// Whether ACLs were bootstrapped (and at which index).
    pub fn acl_bootstrap_index(&self) -> Option<u64> {
        self.acl.bootstrap_index
    }

    /// A token by accessor, with its links' names brought up to date.
    pub fn acl_token(&self, accessor: &str) -> Option<AclToken> {
        self.acl.tokens.get(accessor).map(|t| self.fresh_links(t))
    }

    /// A token by secret (found by digest, confirmed in constant time).
    pub fn acl_token_by_secret(&self, secret: &str) -> Option<AclToken> {
        let accessor = self.acl.by_secret.get(&digest(secret))?;
        let t = self.acl.tokens.get(accessor)?;
        if bool::from(t.secret_id.as_bytes().ct_eq(secret.as_bytes())) {
            Some(self.fresh_links(t))
        } else {
            None
        }
    }

    /// Every token.
    pub fn acl_tokens(&self) -> Vec<AclToken> {
        self.acl
            .tokens
            .values()
            .map(|t| self.fresh_links(t))
            .collect()
    }

    fn fresh_links(&self, t: &AclToken) -> AclToken {
        let mut t = t.clone();
        for l in &mut t.policies {
            if let Some(p) = self.acl.policies.get(&l.id) {
                l.name = p.name.clone();
            }
        }
        for l in &mut t.roles {
            if let Some(r) = self.acl.roles.get(&l.id) {
                l.name = r.name.clone();
            }
        }
        t
    }

    /// A policy by id.
    pub fn acl_policy(&self, id: &str) -> Option<&AclPolicy> {
        self.acl.policies.get(id)
    }

    /// A policy by name.
    pub fn acl_policy_by_name(&self, name: &str) -> Option<&AclPolicy> {
        self.acl.policies.values().find(|p| p.name == name)
    }

    /// Every policy.
    pub fn acl_policies(&self) -> Vec<&AclPolicy> {
        self.acl.policies.values().collect()
    }

    /// A role by id, with fresh policy names.
    pub fn acl_role(&self, id: &str) -> Option<AclRole> {
        let mut r = self.acl.roles.get(id)?.clone();
        for l in &mut r.policies {
            if let Some(p) = self.acl.policies.get(&l.id) {
                l.name = p.name.clone();
            }
        }
        Some(r)
    }

    /// A role by name.
    pub fn acl_role_by_name(&self, name: &str) -> Option<AclRole> {
        let id = self.acl.roles.values().find(|r| r.name == name)?.id.clone();
        self.acl_role(&id)
    }

    /// Every role.
    pub fn acl_roles(&self) -> Vec<AclRole> {
        self.acl
            .roles
            .keys()
            .filter_map(|id| self.acl_role(id))
            .collect()
    }

    /// An auth method.
    pub fn acl_auth_method(&self, name: &str) -> Option<&AclAuthMethod> {
        self.acl.auth_methods.get(name)
    }

    /// Every auth method.
    pub fn acl_auth_methods(&self) -> Vec<&AclAuthMethod> {
        self.acl.auth_methods.values().collect()
    }

    /// A binding rule.
    pub fn acl_binding_rule(&self, id: &str) -> Option<&AclBindingRule> {
        self.acl.binding_rules.get(id)
    }

    /// Every binding rule (of one auth method, when given).
    pub fn acl_binding_rules(&self, method: Option<&str>) -> Vec<&AclBindingRule> {
        self.acl
            .binding_rules
            .values()
            .filter(|r| method.is_none_or(|m| r.auth_method == m))
            .collect()
    }

    /// Resolves policy links given by id or name into (id, current name) links.
    pub fn acl_resolve_policy_links(&self, links: &[Link]) -> Result<Vec<Link>, String> {
        let mut out: Vec<Link> = Vec::new();
        for l in links {
            let p = if !l.id.is_empty() {
                self.acl.policies.get(&l.id)
            } else {
                self.acl_policy_by_name(&l.name)
            };
            let Some(p) = p else {
                return Err(if l.id.is_empty() {
                    format!("cannot find policy {:?}", l.name)
                } else {
                    format!("cannot find policy {:?}", l.id)
                });
            };
            if !out.iter().any(|o| o.id == p.id) {
                out.push(Link {
                    id: p.id.clone(),
                    name: p.name.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Resolves role links given by id or name.
    pub fn acl_resolve_role_links(&self, links: &[Link]) -> Result<Vec<Link>, String> {
        let mut out: Vec<Link> = Vec::new();
        for l in links {
            let r = if !l.id.is_empty() {
                self.acl.roles.get(&l.id)
            } else {
                self.acl.roles.values().find(|r| r.name == l.name)
            };
            let Some(r) = r else {
                return Err(if l.id.is_empty() {
                    format!("cannot find role {:?}", l.name)
                } else {
                    format!("cannot find role {:?}", l.id)
                });
            };
            if !out.iter().any(|o| o.id == r.id) {
                out.push(Link {
                    id: r.id.clone(),
                    name: r.name.clone(),
                });
            }
        }
        Ok(out)
    }
}
