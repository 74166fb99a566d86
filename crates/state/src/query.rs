//! Prepared queries.

use meshgate_types::query::PreparedQuery;

use crate::{ApplyError, State, Table};

impl State {
    pub(crate) fn query_set(&mut self, idx: u64, q: &PreparedQuery) -> Result<(), ApplyError> {
        if q.id.is_empty() {
            return Err(ApplyError::Invalid("Missing query ID".into()));
        }
        if !q.session.is_empty() && !self.sessions.contains_key(&q.session) {
            return Err(ApplyError::Invalid(format!(
                "Invalid session {:?}",
                q.session
            )));
        }
        if !q.name.is_empty() {
            if self.queries.contains_key(&q.name) && q.name != q.id {
                return Err(ApplyError::Invalid(format!(
                    "Name '{}' aliases an existing query ID",
                    q.name
                )));
            }
            if self
                .queries
                .values()
                .any(|o| o.id != q.id && o.name == q.name)
            {
                return Err(ApplyError::Invalid(format!(
                    "Name '{}' aliases an existing query name",
                    q.name
                )));
            }
        }
        let mut q = q.clone();
        match self.queries.get(&q.id) {
            Some(existing) => q.create_index = existing.create_index,
            None => q.create_index = idx,
        }
        q.modify_index = idx;
        self.queries.insert(q.id.clone(), q);
        self.touch(Table::Queries, idx);
        Ok(())
    }

    pub(crate) fn query_delete(&mut self, idx: u64, id: &str) {
        if self.queries.remove(id).is_some() {
            self.touch(Table::Queries, idx);
        }
    }

    /// Deletes the queries bound to a session (when it is invalidated).
    pub(crate) fn delete_session_queries(&mut self, idx: u64, session: &str) {
        let before = self.queries.len();
        self.queries.retain(|_, q| q.session != session);
        if self.queries.len() != before {
            self.touch(Table::Queries, idx);
        }
    }

    // === queries ===

    /// Every prepared query.
    pub fn prepared_queries(&self) -> (u64, Vec<&PreparedQuery>) {
        (self.tables.queries, self.queries.values().collect())
    }

    /// A query by ID.
    pub fn prepared_query(&self, id: &str) -> (u64, Option<&PreparedQuery>) {
        (self.tables.queries, self.queries.get(id))
    }

    /// Resolves an ID or a name: an ID, else an exact name, else the template
    /// with the longest name that prefixes `name`.
    pub fn prepared_query_resolve(&self, id_or_name: &str) -> Option<&PreparedQuery> {
        if let Some(q) = self.queries.get(id_or_name) {
            return Some(q);
        }
        if id_or_name.is_empty() {
            return None;
        }
        if let Some(q) = self
            .queries
            .values()
            .find(|q| q.name == id_or_name && q.template.template_type.is_empty())
        {
            return Some(q);
        }
        self.queries
            .values()
            .filter(|q| !q.template.template_type.is_empty() && id_or_name.starts_with(&q.name))
            .max_by_key(|q| q.name.len())
    }
}
