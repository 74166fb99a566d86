//! The `jwt` auth method: verifying bearer tokens against static public keys
//! or a JWKS document, checking audience and issuer, and turning claims into
//! the identity binding rules select on and interpolate from.
//!
//! The identity has two halves, as in the compatible API: `value.<name>` for
//! each `ClaimMappings` entry (a string) and `list.<name>` for each
//! `ListClaimMappings` entry (a list of strings). Binding rule selectors are
//! go-bexpr expressions over them; bind names interpolate `${value.<name>}`.

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use meshgate_filter::{FieldSpec, Filter, Schema};
use meshgate_types::lenient;
use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// Why an auth method's configuration or a login was refused.
#[derive(Debug, Error, PartialEq)]
pub enum JwtError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Token(String),
}

/// The auth method's `Config`, as accepted by the compatible API: keys in
/// any case (Consul's mapstructure decoder matches them so; Ansible's
/// `consul_auth_method` sends `JWTValidationPubkeys`), unknown ones refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawConfig {
    #[serde(rename = "JWTValidationPubKeys")]
    jwt_validation_pub_keys: Vec<String>,
    #[serde(rename = "JWKSURL")]
    jwks_url: String,
    #[serde(rename = "JWKSCACert")]
    jwks_ca_cert: String,
    #[serde(rename = "OIDCDiscoveryURL")]
    oidc_discovery_url: String,
    #[serde(rename = "OIDCDiscoveryCACert")]
    oidc_discovery_ca_cert: String,
    bound_audiences: Vec<String>,
    bound_issuer: String,
    claim_mappings: BTreeMap<String, String>,
    list_claim_mappings: BTreeMap<String, String>,
    #[serde(rename = "JWTSupportedAlgs")]
    jwt_supported_algs: Vec<String>,
    expiration_leeway: Value,
    not_before_leeway: Value,
    clock_skew_leeway: Value,
}

/// A verification key: its key ID (from a JWKS), the key, and the algorithms
/// it may verify.
type VerifyKey = (Option<String>, DecodingKey, Vec<Algorithm>);

/// A validated `jwt` auth method configuration.
pub struct JwtConfig {
    keys: Vec<VerifyKey>,
    algs: Vec<Algorithm>,
    audiences: Vec<String>,
    issuer: String,
    claims: BTreeMap<String, String>,
    list_claims: BTreeMap<String, String>,
    leeway_secs: u64,
    schema: Schema,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("keys", &self.keys.len())
            .field("algs", &self.algs)
            .field("audiences", &self.audiences)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoginIdentity {
    pub values: BTreeMap<String, String>,
    pub lists: BTreeMap<String, Vec<String>>,
}

impl LoginIdentity {
    /// The JSON a selector is evaluated against.
    fn selectable(&self) -> Value {
        let values: Map<String, Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let lists: Map<String, Value> = self
            .lists
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        serde_json::json!({ "value": values, "list": lists })
    }
}

fn parse_alg(s: &str) -> Result<Algorithm, JwtError> {
    Ok(match s {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => {
            return Err(JwtError::Config(format!(
                "Invalid supported algorithm: {other}"
            )));
        }
    })
}

/// The algorithms a PEM public key can verify.
fn pem_key(pem: &str) -> Result<(DecodingKey, Vec<Algorithm>), JwtError> {
    use Algorithm::*;
    if let Ok(k) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((k, vec![RS256, RS384, RS512, PS256, PS384, PS512]));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        return Ok((k, vec![ES256, ES384]));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(pem.as_bytes()) {
        return Ok((k, vec![EdDSA]));
    }
    Err(JwtError::Config(
        "error parsing public key: data does not contain any valid RSA, ECDSA, or ED25519 public keys"
            .into(),
    ))
}

/// Read a JWKS document from a `file://` URL or a bare path.
fn read_jwks(url: &str) -> Result<Vec<VerifyKey>, JwtError> {
    let path = if let Some(p) = url.strip_prefix("file://") {
        p
    } else if url.starts_with("http://") || url.starts_with("https://") {
        return Err(JwtError::Config(format!(
            "error checking JWKSURL: fetching keys over the network is not supported yet; \
             save the key set to a file and use file://<path> ({url})"
        )));
    } else {
        url
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| JwtError::Config(format!("error checking JWKSURL: reading {path}: {e}")))?;
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|e| JwtError::Config(format!("error checking JWKSURL: parsing {path}: {e}")))?;
    let mut out = Vec::new();
    for jwk in &set.keys {
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| JwtError::Config(format!("error checking JWKSURL: {e}")))?;
        let algs = match jwk.common.key_algorithm {
            Some(a) => vec![
                a.to_string()
                    .parse::<Algorithm>()
                    .map_err(|e| JwtError::Config(format!("error checking JWKSURL: {e}")))?,
            ],
            None => {
                use Algorithm::*;
                use jsonwebtoken::jwk::AlgorithmParameters as P;
                match &jwk.algorithm {
                    P::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
                    P::EllipticCurve(_) => vec![ES256, ES384],
                    P::OctetKeyPair(_) => vec![EdDSA],
                    P::OctetKey(_) => Vec::new(),
                }
            }
        };
        out.push((jwk.common.key_id.clone(), key, algs));
    }
    if out.is_empty() {
        return Err(JwtError::Config(format!(
            "error checking JWKSURL: {path} holds no keys"
        )));
    }
    Ok(out)
}

fn leeway(v: &Value, name: &str) -> Result<u64, JwtError> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => Ok(n.as_u64().map(|ns| ns / 1_000_000_000).unwrap_or(0)),
        Value::String(s) if s.is_empty() => Ok(0),
        Value::String(s) => meshgate_types::duration::parse(s)
            .map(|d| d.as_secs())
            .map_err(|e| JwtError::Config(format!("invalid {name}: {e}"))),
        _ => Err(JwtError::Config(format!("invalid {name}"))),
    }
}

impl JwtConfig {
    /// Validate an auth method's `Config` map.
    pub fn from_config(cfg: &BTreeMap<String, Value>) -> Result<JwtConfig, JwtError> {
        let v = Value::Object(cfg.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        let raw: RawConfig = lenient::from_value(v, lenient::Options { deny_unknown: true })
            .map_err(|e| {
                JwtError::Config(match e {
                    // mapstructure's words for `ErrorUnused`.
                    lenient::LenientError::UnknownKey(k) => format!(
                        "error decoding config: 1 error(s) decoding:\n\n* '' has invalid keys: {k}"
                    ),
                    other => format!("error decoding config: {other}"),
                })
            })?;
        let sources = [
            !raw.jwt_validation_pub_keys.is_empty(),
            !raw.jwks_url.is_empty(),
            !raw.oidc_discovery_url.is_empty(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            return Err(JwtError::Config(
                "exactly one of 'JWTValidationPubKeys', 'JWKSURL', or 'OIDCDiscoveryURL' must be set"
                    .into(),
            ));
        }
        if !raw.oidc_discovery_url.is_empty() || !raw.oidc_discovery_ca_cert.is_empty() {
            return Err(JwtError::Config(
                "OIDCDiscoveryURL is not supported yet; use JWTValidationPubKeys or JWKSURL".into(),
            ));
        }
        if !raw.jwks_ca_cert.is_empty() && raw.jwks_url.is_empty() {
            return Err(JwtError::Config(
                "JWKSCACert should not be set unless JWKSURL is set".into(),
            ));
        }
        let keys = if raw.jwks_url.is_empty() {
            let mut keys = Vec::new();
            for pem in &raw.jwt_validation_pub_keys {
                let (k, algs) = pem_key(pem)?;
                keys.push((None, k, algs));
            }
            keys
        } else {
            read_jwks(&raw.jwks_url)?
        };
        let algs = if raw.jwt_supported_algs.is_empty() {
            vec![Algorithm::RS256]
        } else {
            raw.jwt_supported_algs
                .iter()
                .map(|a| parse_alg(a))
                .collect::<Result<_, _>>()?
        };
        let mut seen = std::collections::BTreeSet::new();
        for name in raw
            .claim_mappings
            .values()
            .chain(raw.list_claim_mappings.values())
        {
            if !seen.insert(name) {
                return Err(JwtError::Config(format!(
                    "ClaimMappings and ListClaimMappings contain the same target name {name:?}"
                )));
            }
        }
        let schema = Schema::new(&[
            FieldSpec::object(
                "value",
                raw.claim_mappings.values().map(FieldSpec::string).collect(),
            ),
            FieldSpec::object(
                "list",
                raw.list_claim_mappings
                    .values()
                    .map(FieldSpec::string_list)
                    .collect(),
            ),
        ]);
        let leeway_secs = leeway(&raw.clock_skew_leeway, "ClockSkewLeeway")?
            + leeway(&raw.expiration_leeway, "ExpirationLeeway")?
                .max(leeway(&raw.not_before_leeway, "NotBeforeLeeway")?);
        Ok(JwtConfig {
            keys,
            algs,
            audiences: raw.bound_audiences,
            issuer: raw.bound_issuer,
            claims: raw.claim_mappings,
            list_claims: raw.list_claim_mappings,
            leeway_secs,
            schema,
        })
    }

    /// Check a binding rule selector against this method's identity fields.
    pub fn compile_selector(&self, selector: &str) -> Result<Filter, String> {
        Filter::parse(selector, &self.schema).map_err(|e| e.consul_message())
    }

    /// Whether the identity matches the selector (an invalid one never does).
    pub fn selector_matches(&self, selector: &str, id: &LoginIdentity) -> bool {
        self.compile_selector(selector)
            .is_ok_and(|f| f.matches(&id.selectable()))
    }

    /// Check that every `${...}` in a bind name refers to a known value.
    pub fn check_bind_name(&self, name: &str) -> Result<(), String> {
        let probe = LoginIdentity {
            values: self
                .claims
                .values()
                .map(|v| (v.clone(), "x".to_string()))
                .collect(),
            lists: BTreeMap::new(),
        };
        interpolate(name, &probe).map(|_| ())
    }

    /// Fill `${value.<name>}` from the identity.
    pub fn interpolate(&self, name: &str, id: &LoginIdentity) -> Result<String, String> {
        interpolate(name, id)
    }

    /// Interpolate every string inside a JSON value (templated policy
    /// variables); a string that cannot be interpolated is kept as given.
    pub fn interpolate_value(&self, v: &Value, id: &LoginIdentity) -> Value {
        match v {
            Value::String(s) => Value::String(interpolate(s, id).unwrap_or_else(|_| s.clone())),
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| self.interpolate_value(x, id)).collect())
            }
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), self.interpolate_value(x, id)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Verify a bearer token's signature, times, audience and issuer, and
    /// map its claims. `now_ms` is the wall clock in milliseconds.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<LoginIdentity, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("failed to parse token: {e}"))?;
        if !self.algs.contains(&header.alg) {
            return Err(format!(
                "failed to verify token: algorithm {:?} is not allowed",
                header.alg
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_secs;
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut claims = None;
        let mut last = String::from("no key matches the token");
        for (kid, key, algs) in &self.keys {
            if header.kid.is_some() && kid.is_some() && &header.kid != kid {
                continue;
            }
            if !algs.contains(&header.alg) {
                continue;
            }
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
                Ok(d) => {
                    claims = Some(d.claims);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let Some(claims) = claims else {
            return Err(format!("failed to verify signature: {last}"));
        };
        self.check_times(&claims, now_ms / 1000)?;
        if !self.issuer.is_empty()
            && claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str())
        {
            return Err("failed to validate JWT: invalid issuer (iss) claim".into());
        }
        if !self.audiences.is_empty() {
            let auds: Vec<&str> = match claims.get("aud") {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !auds.iter().any(|a| self.audiences.iter().any(|b| b == a)) {
                return Err("failed to validate JWT: invalid audience (aud) claim".into());
            }
        }
        let claims = Value::Object(claims);
        let mut id = LoginIdentity::default();
        for (claim, name) in &self.claims {
            let Some(v) = lookup(&claims, claim) else {
                continue;
            };
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return Err(format!("error converting claim '{claim}' to string")),
            };
            id.values.insert(name.clone(), s);
        }
        for (claim, name) in &self.list_claims {
            let Some(v) = lookup(&claims, claim) else {
                continue;
            };
            let items = match v {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            let mut list = Vec::new();
            for item in items {
                list.push(match item {
                    Value::String(s) => s,
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(format!("error converting claim '{claim}' to string list")),
                });
            }
            id.lists.insert(name.clone(), list);
        }
        Ok(id)
    }

    fn check_times(&self, claims: &Map<String, Value>, now: u64) -> Result<(), String> {
        let num = |k: &str| claims.get(k).and_then(Value::as_f64).map(|f| f as u64);
        if let Some(exp) = num("exp")
            && now > exp + self.leeway_secs
        {
            return Err("failed to validate JWT: token is expired (exp)".into());
        }
        if let Some(nbf) = num("nbf")
            && now + self.leeway_secs < nbf
        {
            return Err("failed to validate JWT: token not valid yet (nbf)".into());
        }
        Ok(())
    }
}

/// A claim by top-level name or JSON pointer (`/a/b`).
fn lookup<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if name.starts_with('/') {
        claims.pointer(name)
    } else {
        claims.get(name)
    }
}

/// Replace `${value.<name>}` (and `${<name>}`) in `s`.
fn interpolate(s: &str, id: &LoginIdentity) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated variable in {s:?}"))?;
        let var = after[..end].trim();
        let key = var.strip_prefix("value.").unwrap_or(var);
        let v = id
            .values
            .get(key)
            .ok_or_else(|| format!("unknown variable accessed: {var}"))?;
        out.push_str(v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> LoginIdentity {
        LoginIdentity {
            values: [("svc".to_string(), "web".to_string())].into(),
            lists: [("groups".to_string(), vec!["a".to_string(), "b".to_string()])].into(),
        }
    }

    #[test]
    fn interpolation() {
        let id = identity();
        assert_eq!(interpolate("${value.svc}-x", &id).as_deref(), Ok("web-x"));
        assert_eq!(interpolate("plain", &id).as_deref(), Ok("plain"));
        assert!(interpolate("${value.nope}", &id).is_err());
        assert!(interpolate("${value.svc", &id).is_err());
    }

    #[test]
    fn config_needs_exactly_one_key_source() {
        let e = JwtConfig::from_config(&BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("exactly one of"), "{e}");
        let mut m = BTreeMap::new();
        m.insert("Bogus".to_string(), Value::Bool(true));
        assert_eq!(
            JwtConfig::from_config(&m).unwrap_err().to_string(),
            "error decoding config: 1 error(s) decoding:\n\n* '' has invalid keys: Bogus"
        );
    }

    #[test]
    fn config_keys_in_any_case() {
        // As Ansible's `consul_auth_method` spells them.
        let mut m = BTreeMap::new();
        m.insert(
            "JWTValidationPubkeys".to_string(),
            serde_json::json!(["not a key"]),
        );
        m.insert("boundaudiences".to_string(), serde_json::json!(["api"]));
        let e = JwtConfig::from_config(&m).unwrap_err();
        assert!(e.to_string().contains("error parsing public key"), "{e}");
    }

    #[test]
    fn bad_pem_is_refused() {
        let mut m = BTreeMap::new();
        m.insert(
            "JWTValidationPubKeys".to_string(),
            serde_json::json!(["not a key"]),
        );
        let e = JwtConfig::from_config(&m).unwrap_err();
        assert!(e.to_string().contains("error parsing public key"), "{e}");
    }
}
