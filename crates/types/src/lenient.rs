//! Decoding JSON the way Consul's Go decoders do.
//!
//! Consul accepts request bodies and configuration with field names in any case
//! (Go's `encoding/json` matches case-insensitively) and, for agent service
//! definitions, config files and config entries, in snake_case as well
//! (`deregister_critical_service_after` for `DeregisterCriticalServiceAfter`).
//! Its mapstructure decoders are also "weakly typed": `"80"` decodes into a number,
//! `"true"` into a bool, and a single object into a one-element list (HCL produces
//! those).
//!
//! [`from_value`] decodes a [`serde_json::Value`] into any `Deserialize` type with
//! those rules. Struct field names are matched after removing `_`/`-` and
//! lower-casing; keys of maps (`Meta`, `NodeMeta`, ...) are left untouched. With
//! [`Options::deny_unknown`] a key that matches no field is an error naming it.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::{Map, Value};

/// How strictly [`from_value`] decodes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Reject keys that match no field of the target struct.
    pub deny_unknown: bool,
}

/// A decoding failure, with the dotted path of the offending key when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LenientError {
    /// A key that the target type does not have.
    #[error("invalid config key \"{0}\"")]
    UnknownKey(String),
    /// Any other mismatch between the input and the target type.
    #[error("{0}")]
    Message(String),
}

impl de::Error for LenientError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        LenientError::Message(msg.to_string())
    }
}

/// Normalises a field name for comparison: lower case, without `_` and `-`.
pub fn normalize_key(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(|c| c.to_lowercase())
        .collect()
}

/// Decodes `value` into `T` with Consul's lenient rules.
pub fn from_value<T: DeserializeOwned>(value: Value, opts: Options) -> Result<T, LenientError> {
    T::deserialize(Lenient {
        value,
        opts,
        path: String::new(),
    })
}

/// Decodes JSON text into `T` with Consul's lenient rules.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8], opts: Options) -> Result<T, LenientError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| LenientError::Message(e.to_string()))?;
    from_value(value, opts)
}

struct Lenient {
    value: Value,
    opts: Options,
    path: String,
}

impl Lenient {
    fn type_error(&self, want: &str) -> LenientError {
        let got = match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "list",
            Value::Object(_) => "object",
        };
        if self.path.is_empty() {
            LenientError::Message(format!("expected {want}, got {got}"))
        } else {
            LenientError::Message(format!("{}: expected {want}, got {got}", self.path))
        }
    }

    /// HCL turns a block into a one-element list in some forms; a struct or map
    /// target takes the single element.
    fn unwrap_single(value: Value) -> Value {
        match value {
            Value::Array(mut a) if a.len() == 1 && a[0].is_object() => a.remove(0),
            other => other,
        }
    }
}

macro_rules! weak_number {
    ($name:ident, $visit:ident, $ty:ty) => {
        fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
            match &self.value {
                Value::String(s) => {
                    let t = s.trim();
                    let n: $ty = if t.is_empty() {
                        <$ty>::default()
                    } else {
                        t.parse().map_err(|_| self.type_error("number"))?
                    };
                    visitor.$visit(n)
                }
                Value::Bool(b) => visitor.$visit(if *b { 1 as $ty } else { 0 as $ty }),
                Value::Null => visitor.$visit(<$ty>::default()),
                Value::Number(_) => self
                    .value
                    .$name(visitor)
                    .map_err(|e| LenientError::Message(with_path(&self.path, e))),
                _ => Err(self.type_error("number")),
            }
        }
    };
}

fn with_path(path: &str, e: impl fmt::Display) -> String {
    if path.is_empty() {
        e.to_string()
    } else {
        format!("{path}: {e}")
    }
}

impl<'de> Deserializer<'de> for Lenient {
    type Error = LenientError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or_default())
                }
            }
            Value::String(s) => visitor.visit_string(s),
            Value::Array(a) => visitor.visit_seq(SeqDe {
                iter: a.into_iter(),
                opts: self.opts,
                path: self.path,
                idx: 0,
            }),
            Value::Object(m) => visitor.visit_map(MapDe::new(m, self.opts, self.path, None)?),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        match &self.value {
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Null => visitor.visit_bool(false),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "t" => visitor.visit_bool(true),
                "false" | "0" | "f" | "" => visitor.visit_bool(false),
                _ => Err(self.type_error("bool")),
            },
            Value::Number(n) => visitor.visit_bool(n.as_f64().unwrap_or(0.0) != 0.0),
            _ => Err(self.type_error("bool")),
        }
    }

    weak_number!(deserialize_u8, visit_u8, u8);
    weak_number!(deserialize_u16, visit_u16, u16);
    weak_number!(deserialize_u32, visit_u32, u32);
    weak_number!(deserialize_u64, visit_u64, u64);
    weak_number!(deserialize_i8, visit_i8, i8);
    weak_number!(deserialize_i16, visit_i16, i16);
    weak_number!(deserialize_i32, visit_i32, i32);
    weak_number!(deserialize_i64, visit_i64, i64);
    weak_number!(deserialize_f32, visit_f32, f32);
    weak_number!(deserialize_f64, visit_f64, f64);

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        match self.value {
            Value::String(s) => visitor.visit_string(s),
            Value::Null => visitor.visit_string(String::new()),
            Value::Number(n) => visitor.visit_string(n.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            _ => Err(self.type_error("string")),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, LenientError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, LenientError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        let items = match self.value {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            // A single value where a list is expected: a list of one (mapstructure's
            // WeaklyTypedInput, and HCL's single block).
            other => vec![other],
        };
        visitor.visit_seq(SeqDe {
            iter: items.into_iter(),
            opts: self.opts,
            path: self.path,
            idx: 0,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, LenientError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, LenientError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        match Lenient::unwrap_single(self.value) {
            Value::Object(m) => visitor.visit_map(MapDe::new(m, self.opts, self.path, None)?),
            Value::Null => visitor.visit_map(MapDe::new(Map::new(), self.opts, self.path, None)?),
            // HCL lists of single-key objects: [{"a": "b"}, {"c": "d"}] as a map.
            Value::Array(a) if a.iter().all(|v| v.is_object()) => {
                let mut merged = Map::new();
                for v in a {
                    if let Value::Object(m) = v {
                        merged.extend(m);
                    }
                }
                visitor.visit_map(MapDe::new(merged, self.opts, self.path, None)?)
            }
            value => Err(Lenient {
                value,
                opts: self.opts,
                path: self.path,
            }
            .type_error("object")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, LenientError> {
        match Lenient::unwrap_single(self.value) {
            Value::Object(m) => {
                visitor.visit_map(MapDe::new(m, self.opts, self.path, Some(fields))?)
            }
            Value::Null => {
                visitor.visit_map(MapDe::new(Map::new(), self.opts, self.path, Some(fields))?)
            }
            value => Err(Lenient {
                value,
                opts: self.opts,
                path: self.path,
            }
            .type_error("object")),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, LenientError> {
        self.value
            .deserialize_enum(name, variants, visitor)
            .map_err(|e| LenientError::Message(e.to_string()))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LenientError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, LenientError> {
        visitor.visit_unit()
    }
}

struct SeqDe {
    iter: std::vec::IntoIter<Value>,
    opts: Options,
    path: String,
    idx: usize,
}

impl<'de> SeqAccess<'de> for SeqDe {
    type Error = LenientError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, LenientError> {
        match self.iter.next() {
            Some(value) => {
                let path = format!("{}[{}]", self.path, self.idx);
                self.idx += 1;
                seed.deserialize(Lenient {
                    value,
                    opts: self.opts,
                    path,
                })
                .map(Some)
            }
            None => Ok(None),
        }
    }
}

struct MapDe {
    entries: std::vec::IntoIter<(String, Value)>,
    pending: Option<(String, Value)>,
    opts: Options,
    path: String,
}

impl MapDe {
    fn new(
        m: Map<String, Value>,
        opts: Options,
        path: String,
        fields: Option<&'static [&'static str]>,
    ) -> Result<MapDe, LenientError> {
        let mut entries = Vec::with_capacity(m.len());
        for (k, v) in m {
            let key = match fields {
                None => k,
                Some(fields) => {
                    if fields.contains(&k.as_str()) {
                        k
                    } else {
                        let norm = normalize_key(&k);
                        match fields.iter().find(|f| normalize_key(f) == norm) {
                            Some(f) => (*f).to_string(),
                            None if opts.deny_unknown => {
                                let full = if path.is_empty() {
                                    k
                                } else {
                                    format!("{path}.{k}")
                                };
                                return Err(LenientError::UnknownKey(full));
                            }
                            None => continue,
                        }
                    }
                }
            };
            // Two spellings of one field: the later one wins, as in Go.
            if let (Some(_), Some(pos)) = (
                fields,
                entries
                    .iter()
                    .position(|(ek, _): &(String, Value)| *ek == key),
            ) {
                entries.remove(pos);
            }
            entries.push((key, v));
        }
        Ok(MapDe {
            entries: entries.into_iter(),
            pending: None,
            opts,
            path,
        })
    }
}

impl<'de> MapAccess<'de> for MapDe {
    type Error = LenientError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, LenientError> {
        match self.entries.next() {
            Some((k, v)) => {
                let de: de::value::StringDeserializer<LenientError> = k.clone().into_deserializer();
                let key = seed.deserialize(de)?;
                self.pending = Some((k, v));
                Ok(Some(key))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, LenientError> {
        let (k, value) = self
            .pending
            .take()
            .ok_or_else(|| LenientError::Message("value without key".into()))?;
        let path = if self.path.is_empty() {
            k
        } else {
            format!("{}.{}", self.path, k)
        };
        seed.deserialize(Lenient {
            value,
            opts: self.opts,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Check {
        #[serde(rename = "TCP")]
        tcp: String,
        interval: String,
        deregister_critical_service_after: String,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Svc {
        name: String,
        port: u16,
        tags: Vec<String>,
        meta: BTreeMap<String, String>,
        check: Option<Check>,
        checks: Vec<Check>,
        enable_tag_override: bool,
    }

    #[test]
    fn snake_and_case_insensitive_keys() {
        let v = json!({"name": "web", "PORT": "80", "tags": "primary",
            "meta": {"Some_Key": "x"}, "enable_tag_override": "true",
            "check": [{"tcp": "localhost:80", "interval": "10s",
                       "deregister_critical_service_after": "1m"}],
            "Checks": {"TCP": "a"}});
        let s: Svc = from_value(v, Options::default()).unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.port, 80);
        assert_eq!(s.tags, vec!["primary"]);
        assert_eq!(s.meta.get("Some_Key").map(String::as_str), Some("x"));
        assert!(s.enable_tag_override);
        let c = s.check.unwrap();
        assert_eq!(c.tcp, "localhost:80");
        assert_eq!(c.deregister_critical_service_after, "1m");
        assert_eq!(s.checks.len(), 1);
    }

    #[test]
    fn unknown_keys() {
        let v = json!({"Name": "web", "Bogus": 1});
        let s: Svc = from_value(v.clone(), Options::default()).unwrap();
        assert_eq!(s.name, "web");
        let e = from_value::<Svc>(v, Options { deny_unknown: true }).unwrap_err();
        assert_eq!(e.to_string(), "invalid config key \"Bogus\"");
        let v = json!({"Check": {"Nope": 1}});
        let e = from_value::<Svc>(v, Options { deny_unknown: true }).unwrap_err();
        assert_eq!(e.to_string(), "invalid config key \"Check.Nope\"");
    }

    #[test]
    fn type_errors_name_the_path() {
        let v = json!({"Port": "eighty"});
        let e = from_value::<Svc>(v, Options::default()).unwrap_err();
        assert_eq!(e.to_string(), "Port: expected number, got string");
        let v = json!({"Port": 70000});
        assert!(from_value::<Svc>(v, Options::default()).is_err());
    }
}
