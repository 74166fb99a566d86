//! The objects the ACL commands read from the agent and print with
//! `-format json`. Field order and empty-field rules follow the Go API
//! client's structs (what `consul acl ... -format json` marshals), not the
//! server's JSON: tokens start with the indices, template variables are keyed
//! `Name`, hashes are base64 of raw bytes, times are RFC 3339 with nanoseconds.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// === times ===

/// A `time.Time` as the Go client holds it after parsing the agent's RFC 3339
/// text: the wall-clock fields and the offset they were written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    /// `None` for `Z` (UTC), else the offset in seconds east of UTC.
    offset: Option<i32>,
}

impl Default for GoTime {
    /// Go's zero time, `0001-01-01 00:00:00 +0000 UTC`.
    fn default() -> Self {
        GoTime {
            year: 1,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            nanos: 0,
            offset: None,
        }
    }
}

impl GoTime {
    /// Parses RFC 3339 text (`2020-05-22T18:52:31.5Z`, `...+02:00`).
    pub fn parse(s: &str) -> Option<GoTime> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let t = s.get(r)?;
            if t.bytes().all(|c| c.is_ascii_digit()) {
                t.parse().ok()
            } else {
                None
            }
        };
        let mut t = GoTime {
            year: i64::from(num(0..4)?),
            month: num(5..7)?,
            day: num(8..10)?,
            hour: num(11..13)?,
            minute: num(14..16)?,
            second: num(17..19)?,
            nanos: 0,
            offset: None,
        };
        if !(1..=12).contains(&t.month) || !(1..=31).contains(&t.day) || t.hour > 23 {
            return None;
        }
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &s[start..i];
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            t.nanos = format!("{digits:0<9}").parse().ok()?;
        }
        match b.get(i)? {
            b'Z' | b'z' if i + 1 == b.len() => {}
            b'+' | b'-' if i + 6 == b.len() && b[i + 3] == b':' => {
                let sign = if b[i] == b'-' { -1 } else { 1 };
                let h = num(i + 1..i + 3)? as i32;
                let m = num(i + 4..i + 6)? as i32;
                t.offset = Some(sign * (h * 3600 + m * 60));
            }
            _ => return None,
        }
        Some(t)
    }

    /// Whether this is Go's zero time.
    pub fn is_zero(&self) -> bool {
        *self == GoTime::default()
    }

    fn frac(&self) -> String {
        if self.nanos == 0 {
            String::new()
        } else {
            let f = format!("{:09}", self.nanos);
            format!(".{}", f.trim_end_matches('0'))
        }
    }

    fn clock(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.frac()
        )
    }

    /// RFC 3339 with nanoseconds, trailing zeros trimmed (Go's JSON form).
    pub fn rfc3339(&self) -> String {
        match self.offset {
            None => format!("{}Z", self.clock()),
            Some(o) => {
                let (sign, a) = if o < 0 { ('-', -o) } else { ('+', o) };
                format!(
                    "{}{sign}{:02}:{:02}",
                    self.clock(),
                    a / 3600,
                    (a % 3600) / 60
                )
            }
        }
    }
}

/// Go's `%v` of a `time.Time`: `2006-01-02 15:04:05.999999999 -0700 MST`.
/// A time written with `Z` is in UTC; one written with a numeric offset is in
/// a zone named after that offset (`+0200 +0200`).
impl fmt::Display for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clock = self.clock().replacen('T', " ", 1);
        match self.offset {
            None => write!(f, "{clock} +0000 UTC"),
            Some(o) => {
                let (sign, a) = if o < 0 { ('-', -o) } else { ('+', o) };
                let zone = format!("{sign}{:02}{:02}", a / 3600, (a % 3600) / 60);
                write!(f, "{clock} {zone} {zone}")
            }
        }
    }
}

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Option::<String>::deserialize(d)?;
        match v {
            None => Ok(GoTime::default()),
            Some(s) => GoTime::parse(&s).ok_or_else(|| {
                de::Error::custom(format!("parsing time {s:?}: invalid RFC 3339 time"))
            }),
        }
    }
}

// === byte strings (hashes) ===

/// A Go `[]byte`: base64 in JSON, `null` when nil; printed as hex by `%x`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoBytes(pub Option<Vec<u8>>);

impl GoBytes {
    /// Whether the slice is nil or empty (`omitempty`).
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(Vec::is_empty)
    }

    /// Lower-case hex of the bytes (`%x`).
    pub fn hex(&self) -> String {
        self.0
            .iter()
            .flatten()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Serialize for GoBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            None => s.serialize_none(),
            Some(b) => s.serialize_str(&STANDARD.encode(b)),
        }
    }
}

impl<'de> Deserialize<'de> for GoBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Option::<String>::deserialize(d)?;
        match v {
            None => Ok(GoBytes(None)),
            Some(s) => STANDARD
                .decode(s.as_bytes())
                .map(|b| GoBytes(Some(b)))
                .map_err(|e| de::Error::custom(format!("illegal base64 data: {e}"))),
        }
    }
}

// === durations ===

/// `MaxTokenTTL`: read from the agent's Go duration string, written the same
/// way (omitted when zero).
pub mod ttl_string {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&meshgate_types::duration::format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None => Ok(Duration::ZERO),
            Some(Value::String(s)) if s.is_empty() => Ok(Duration::ZERO),
            Some(Value::String(s)) => {
                meshgate_types::duration::parse(&s).map_err(de::Error::custom)
            }
            Some(Value::Number(n)) => Ok(Duration::from_nanos(n.as_u64().unwrap_or(0))),
            Some(other) => Err(de::Error::custom(format!("invalid MaxTokenTTL: {other}"))),
        }
    }
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_duration(d: &Duration) -> bool {
    d.is_zero()
}

// === shared pieces ===

/// A link from a token or role to a policy or role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Link {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
}

/// `-service-identity NAME[:DC1,DC2]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceIdentity {
    pub service_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// `-node-identity NAME:DC`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeIdentity {
    pub node_name: String,
    pub datacenter: String,
}

/// Template variables (`{"Name": ...}`; the agent writes `name`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemplateVars {
    #[serde(rename = "Name", alias = "name")]
    pub name: String,
}

/// A templated policy on a token or role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TemplatedPolicy {
    pub template_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_variables: Option<TemplateVars>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

// === tokens ===

/// `api.ACLToken`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Token {
    pub create_index: u64,
    pub modify_index: u64,
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<TemplatedPolicy>,
    pub local: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_method: String,
    /// Nanoseconds (a Go `time.Duration`), only in requests.
    #[serde(rename = "ExpirationTTL", skip_serializing_if = "is_zero_u64")]
    pub expiration_ttl: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<GoTime>,
    pub create_time: GoTime,
    #[serde(skip_serializing_if = "GoBytes::is_empty")]
    pub hash: GoBytes,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_method_namespace: String,
}

/// `api.ACLTokenListEntry`: a token without `ExpirationTTL`, whose `Hash` is
/// always written.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TokenListEntry {
    pub create_index: u64,
    pub modify_index: u64,
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<TemplatedPolicy>,
    pub local: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<GoTime>,
    pub create_time: GoTime,
    pub hash: GoBytes,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_method_namespace: String,
}

impl From<Token> for TokenListEntry {
    fn from(t: Token) -> Self {
        TokenListEntry {
            create_index: t.create_index,
            modify_index: t.modify_index,
            accessor_id: t.accessor_id,
            secret_id: t.secret_id,
            description: t.description,
            policies: t.policies,
            roles: t.roles,
            service_identities: t.service_identities,
            node_identities: t.node_identities,
            templated_policies: t.templated_policies,
            local: t.local,
            auth_method: t.auth_method,
            expiration_time: t.expiration_time,
            create_time: t.create_time,
            hash: t.hash,
            namespace: t.namespace,
            partition: t.partition,
            auth_method_namespace: t.auth_method_namespace,
        }
    }
}

/// `api.ACLTokenExpanded`: the expansion first, then the token's own fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TokenExpanded {
    pub expanded_policies: Option<Vec<Policy>>,
    pub expanded_roles: Option<Vec<Role>>,
    #[serde(rename = "NamespaceDefaultPolicyIDs")]
    pub namespace_default_policy_ids: Option<Vec<String>>,
    #[serde(rename = "NamespaceDefaultRoleIDs")]
    pub namespace_default_role_ids: Option<Vec<String>>,
    #[serde(rename = "AgentACLDefaultPolicy")]
    pub agent_acl_default_policy: String,
    #[serde(rename = "AgentACLDownPolicy")]
    pub agent_acl_down_policy: String,
    pub resolved_by_agent: String,
    #[serde(flatten)]
    pub token: Token,
}

// === policies ===

/// `api.ACLPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Policy {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: String,
    pub datacenters: Option<Vec<String>>,
    pub hash: GoBytes,
    pub create_index: u64,
    pub modify_index: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
}

/// `api.ACLPolicyListEntry`: a policy without its rules.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyListEntry {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub description: String,
    pub datacenters: Option<Vec<String>>,
    pub hash: GoBytes,
    pub create_index: u64,
    pub modify_index: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
}

impl From<Policy> for PolicyListEntry {
    fn from(p: Policy) -> Self {
        PolicyListEntry {
            id: p.id,
            name: p.name,
            description: p.description,
            datacenters: p.datacenters,
            hash: p.hash,
            create_index: p.create_index,
            modify_index: p.modify_index,
            namespace: p.namespace,
            partition: p.partition,
        }
    }
}

// === roles ===

/// `api.ACLRole`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Role {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<TemplatedPolicy>,
    pub hash: GoBytes,
    pub create_index: u64,
    pub modify_index: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
}

// === templated policies ===

/// `api.ACLTemplatedPolicyResponse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TemplatedPolicyResponse {
    pub template_name: String,
    pub schema: String,
    pub template: String,
    pub description: String,
}

// === auth methods ===

/// `api.ACLAuthMethod`. Its JSON puts `MaxTokenTTL` (a duration string) first,
/// as the Go client's custom marshaller does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AuthMethod {
    #[serde(
        rename = "MaxTokenTTL",
        with = "ttl_string",
        skip_serializing_if = "is_zero_duration"
    )]
    pub max_token_ttl: Duration,
    pub name: String,
    #[serde(rename = "Type")]
    pub method_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token_locality: String,
    pub config: Option<Map<String, Value>>,
    pub create_index: u64,
    pub modify_index: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
}

/// `api.ACLAuthMethodListEntry`: an auth method without its config.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthMethodListEntry {
    #[serde(
        rename = "MaxTokenTTL",
        with = "ttl_string",
        skip_serializing_if = "is_zero_duration"
    )]
    pub max_token_ttl: Duration,
    pub name: String,
    #[serde(rename = "Type")]
    pub method_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token_locality: String,
    pub create_index: u64,
    pub modify_index: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
}

impl From<AuthMethod> for AuthMethodListEntry {
    fn from(m: AuthMethod) -> Self {
        AuthMethodListEntry {
            max_token_ttl: m.max_token_ttl,
            name: m.name,
            method_type: m.method_type,
            display_name: m.display_name,
            description: m.description,
            token_locality: m.token_locality,
            create_index: m.create_index,
            modify_index: m.modify_index,
            namespace: m.namespace,
            partition: m.partition,
        }
    }
}

// === binding rules ===

/// `api.ACLBindingRule`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindingRule {
    #[serde(rename = "ID")]
    pub id: String,
    pub description: String,
    pub auth_method: String,
    pub selector: String,
    pub bind_type: String,
    pub bind_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_vars: Option<TemplateVars>,
    pub create_index: u64,
    pub modify_index: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_forms() {
        let t = GoTime::parse("2020-05-22T18:52:31Z").unwrap();
        assert_eq!(t.to_string(), "2020-05-22 18:52:31 +0000 UTC");
        assert_eq!(t.rfc3339(), "2020-05-22T18:52:31Z");
        let t = GoTime::parse("2024-03-01T10:00:00.123456789Z").unwrap();
        assert_eq!(t.to_string(), "2024-03-01 10:00:00.123456789 +0000 UTC");
        let t = GoTime::parse("2026-11-25T19:39:08.50Z").unwrap();
        assert_eq!(t.rfc3339(), "2026-11-25T19:39:08.5Z");
        assert_eq!(t.to_string(), "2026-11-25 19:39:08.5 +0000 UTC");
        let t = GoTime::parse("2024-03-01T10:00:00+02:00").unwrap();
        assert_eq!(t.to_string(), "2024-03-01 10:00:00 +0200 +0200");
        assert_eq!(t.rfc3339(), "2024-03-01T10:00:00+02:00");
        assert!(GoTime::parse("0001-01-01T00:00:00Z").unwrap().is_zero());
        assert_eq!(GoTime::parse("yesterday"), None);
    }

    #[test]
    fn token_json_order_and_omissions() {
        let t: Token = serde_json::from_str(
            r#"{"AccessorID":"a","SecretID":"s","Description":"d","Local":false,
                "TemplatedPolicies":[{"TemplateID":"x","TemplateName":"builtin/service","TemplateVariables":{"name":"web"}}],
                "CreateTime":"2020-05-22T18:52:31Z","Hash":"YWJj","CreateIndex":5,"ModifyIndex":6}"#,
        )
        .unwrap();
        assert_eq!(t.hash.hex(), "616263");
        let out = serde_json::to_string(&t).unwrap();
        assert_eq!(
            out,
            r#"{"CreateIndex":5,"ModifyIndex":6,"AccessorID":"a","SecretID":"s","Description":"d","TemplatedPolicies":[{"TemplateName":"builtin/service","TemplateVariables":{"Name":"web"}}],"Local":false,"CreateTime":"2020-05-22T18:52:31Z","Hash":"YWJj"}"#
        );
    }

    #[test]
    fn auth_method_ttl_first() {
        let m: AuthMethod = serde_json::from_str(
            r#"{"MaxTokenTTL":"1h0m0s","Name":"m","Type":"jwt","Config":{"B":1,"A":2},"CreateIndex":1,"ModifyIndex":2}"#,
        )
        .unwrap();
        let out = serde_json::to_string(&m).unwrap();
        assert!(out.starts_with(r#"{"MaxTokenTTL":"1h0m0s","Name":"m","Type":"jwt","Config""#));
    }
}
