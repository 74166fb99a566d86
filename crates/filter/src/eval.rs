//! Validation of a parsed expression against a [`Schema`](crate::Schema)
//! (go-bexpr's `validate.go`) and its evaluation against JSON elements
//! (go-bexpr's `evaluate.go`, with JSON taking the place of Go reflection).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::FilterError;
use crate::parser::{Bytes, MatchOp, PExpr};
use crate::schema::{Fields, Shape};
use crate::strconv;

/// A validated expression.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Match(Box<MatchNode>),
}

#[derive(Debug, Clone)]
pub(crate) struct MatchNode {
    segs: Vec<Seg>,
    leaf: Leaf,
    op: MatchOp,
    operand: Operand,
}

/// One step from a value towards the selected leaf.
#[derive(Debug, Clone)]
enum Seg {
    /// The value is an object: continue with one of its fields.
    Field(String),
    /// The value is a list of objects: continue with each element and
    /// succeed when any of them does.
    Each,
    /// The value is a map: continue with the entry under this key (`None`
    /// for a key that is not valid UTF-8 and so can never be present).
    MapKey(Option<String>),
}

/// Shape of the selected value.
#[derive(Debug, Clone, Copy)]
enum Leaf {
    String,
    Bool,
    Int,
    Uint,
    Float,
    StringList,
    Map,
    ObjectList,
}

/// The coerced match value.
#[derive(Debug, Clone)]
enum Operand {
    None,
    Bytes(Bytes),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    Regex(regex::Regex),
}

fn join_lossy(parts: &[Bytes]) -> String {
    String::from_utf8_lossy(&parts.join(&b'.')).into_owned()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Validate `expr` against the schema rooted at `root`, in go-bexpr's order
/// (depth first, left to right; per match: selector, operator, value
/// coercion, regular expression).
pub(crate) fn compile(expr: &PExpr, root: &Arc<Fields>) -> Result<Node, FilterError> {
    Ok(match expr {
        PExpr::Or(items) => Node::Or(
            items
                .iter()
                .map(|e| compile(e, root))
                .collect::<Result<_, _>>()?,
        ),
        PExpr::And(items) => Node::And(
            items
                .iter()
                .map(|e| compile(e, root))
                .collect::<Result<_, _>>()?,
        ),
        PExpr::Not(inner) => Node::Not(Box::new(compile(inner, root)?)),
        PExpr::Match {
            selector,
            op,
            value,
        } => Node::Match(Box::new(compile_match(
            selector,
            *op,
            value.as_deref(),
            root,
        )?)),
    })
}

fn lookup<'f>(fields: &'f Fields, part: &[u8]) -> Option<&'f crate::schema::FieldCfg> {
    std::str::from_utf8(part)
        .ok()
        .and_then(|name| fields.by_name.get(name))
}

fn compile_match(
    selector: &[Bytes],
    op: MatchOp,
    value: Option<&Bytes>,
    root: &Arc<Fields>,
) -> Result<MatchNode, FilterError> {
    let mut shape = Shape::Object(root.clone());
    let mut segs = Vec::with_capacity(selector.len());
    for (idx, part) in selector.iter().enumerate() {
        let invalid = || FilterError::InvalidSelector {
            selector: join_lossy(&selector[..=idx]),
        };
        shape = match &shape {
            Shape::Object(fields) => {
                let cfg = lookup(fields, part).ok_or_else(invalid)?;
                segs.push(Seg::Field(cfg.json_key.clone()));
                cfg.shape.clone()
            }
            Shape::ObjectList(fields) => {
                let cfg = lookup(fields, part).ok_or_else(invalid)?;
                segs.push(Seg::Each);
                segs.push(Seg::Field(cfg.json_key.clone()));
                cfg.shape.clone()
            }
            Shape::StringMap => {
                segs.push(Seg::MapKey(String::from_utf8(part.clone()).ok()));
                Shape::String
            }
            Shape::ObjectMap(fields) => {
                segs.push(Seg::MapKey(String::from_utf8(part.clone()).ok()));
                Shape::Object(fields.clone())
            }
            _ => return Err(invalid()),
        };
    }

    if !shape.supports(op) {
        return Err(FilterError::InvalidOperator {
            operator: op.go_name(),
            selector: join_lossy(selector),
        });
    }
    let leaf = match shape {
        Shape::String => Leaf::String,
        Shape::Bool => Leaf::Bool,
        Shape::Int => Leaf::Int,
        Shape::Uint => Leaf::Uint,
        Shape::Float => Leaf::Float,
        Shape::StringList => Leaf::StringList,
        Shape::StringMap | Shape::ObjectMap(_) => Leaf::Map,
        Shape::ObjectList(_) => Leaf::ObjectList,
        // Objects support no operator at all.
        Shape::Object(_) => {
            return Err(FilterError::InvalidOperator {
                operator: op.go_name(),
                selector: join_lossy(selector),
            });
        }
    };

    let operand = match value {
        None => Operand::None,
        Some(raw) => {
            let coerce_err = |reason: String| FilterError::Coerce {
                value: lossy(raw),
                selector: join_lossy(selector),
                reason,
            };
            let coerced = match leaf {
                Leaf::Int => Operand::Int(strconv::parse_int(raw).map_err(coerce_err)?),
                Leaf::Uint => Operand::Uint(strconv::parse_uint(raw).map_err(coerce_err)?),
                Leaf::Float => Operand::Float(strconv::parse_float(raw).map_err(coerce_err)?),
                Leaf::Bool => Operand::Bool(strconv::parse_bool(raw).map_err(coerce_err)?),
                Leaf::String | Leaf::StringList | Leaf::Map | Leaf::ObjectList => {
                    Operand::Bytes(raw.clone())
                }
            };
            if matches!(op, MatchOp::Matches | MatchOp::NotMatches) {
                Operand::Regex(compile_regex(raw)?)
            } else {
                coerced
            }
        }
    };

    Ok(MatchNode {
        segs,
        leaf,
        op,
        operand,
    })
}

/// Compile a `matches` pattern with Go's regular expression semantics.
fn compile_regex(pattern: &[u8]) -> Result<regex::Regex, FilterError> {
    let err = |reason: String| FilterError::Regex {
        pattern: lossy(pattern),
        reason,
    };
    let Ok(text) = std::str::from_utf8(pattern) else {
        return Err(err(format!(
            "error parsing regexp: invalid UTF-8: `{}`",
            lossy(pattern)
        )));
    };
    crate::regex_go::compile(text).map_err(err)
}

impl Node {
    pub(crate) fn eval(&self, item: &Value) -> bool {
        match self {
            Node::Or(items) => items.iter().any(|n| n.eval(item)),
            Node::And(items) => items.iter().all(|n| n.eval(item)),
            Node::Not(inner) => !inner.eval(item),
            Node::Match(m) => m.eval_at(&m.segs, Some(item)),
        }
    }
}

fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn as_object(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

impl MatchNode {
    /// go-bexpr's `evaluateMatchExpressionRecurse`. Absent or `null` fields
    /// read as their type's zero value (as an unset Go struct field would),
    /// a list of objects succeeds when any element does, and a missing map
    /// key yields the operator's "not present" answer.
    fn eval_at(&self, segs: &[Seg], value: Option<&Value>) -> bool {
        let value = non_null(value);
        match segs.split_first() {
            None => self.leaf_match(value),
            Some((Seg::Field(key), rest)) => {
                self.eval_at(rest, as_object(value).and_then(|o| o.get(key)))
            }
            Some((Seg::Each, rest)) => match value.and_then(Value::as_array) {
                Some(items) => items.iter().any(|item| self.eval_at(rest, Some(item))),
                None => false,
            },
            Some((Seg::MapKey(key), rest)) => {
                // A present key whose value is `null` holds the zero value,
                // as it would in a decoded Go map of non-pointer values.
                let entry = key
                    .as_deref()
                    .and_then(|k| as_object(value).and_then(|o| o.get(k)));
                match entry {
                    Some(entry) => self.eval_at(rest, Some(entry)),
                    None => self.not_present(),
                }
            }
        }
    }

    /// go-bexpr v0.1.2's answer for a map key that does not exist: `==`,
    /// `is not empty` and `in` are false, every other operator is true
    /// (including `matches`, a quirk of that version).
    fn not_present(&self) -> bool {
        !matches!(self.op, MatchOp::Equal | MatchOp::IsNotEmpty | MatchOp::In)
    }

    fn leaf_match(&self, value: Option<&Value>) -> bool {
        let positive = match self.op {
            MatchOp::Equal | MatchOp::NotEqual => self.equal(value),
            MatchOp::In | MatchOp::NotIn => self.contains(value),
            MatchOp::IsEmpty | MatchOp::IsNotEmpty => self.is_empty(value),
            MatchOp::Matches | MatchOp::NotMatches => match &self.operand {
                Operand::Regex(re) => re.is_match(value.and_then(Value::as_str).unwrap_or("")),
                _ => false,
            },
        };
        match self.op {
            MatchOp::Equal | MatchOp::In | MatchOp::IsEmpty | MatchOp::Matches => positive,
            MatchOp::NotEqual | MatchOp::NotIn | MatchOp::IsNotEmpty | MatchOp::NotMatches => {
                !positive
            }
        }
    }

    fn equal(&self, value: Option<&Value>) -> bool {
        match (&self.operand, self.leaf) {
            (Operand::Bytes(b), Leaf::String) => {
                value.and_then(Value::as_str).unwrap_or("").as_bytes() == b.as_slice()
            }
            (Operand::Bool(b), Leaf::Bool) => value.and_then(Value::as_bool).unwrap_or(false) == *b,
            (Operand::Int(n), Leaf::Int) => json_i64(value) == *n,
            (Operand::Uint(n), Leaf::Uint) => json_u64(value) == *n,
            (Operand::Float(f), Leaf::Float) => json_f64(value) == *f,
            _ => false,
        }
    }

    fn contains(&self, value: Option<&Value>) -> bool {
        let Operand::Bytes(needle) = &self.operand else {
            return false;
        };
        match self.leaf {
            Leaf::String => contains_bytes(
                value.and_then(Value::as_str).unwrap_or("").as_bytes(),
                needle,
            ),
            Leaf::StringList => value.and_then(Value::as_array).is_some_and(|items| {
                items.iter().any(|i| {
                    i.as_str()
                        .is_some_and(|s| s.as_bytes() == needle.as_slice())
                })
            }),
            Leaf::Map => match std::str::from_utf8(needle) {
                Ok(key) => as_object(value).is_some_and(|o| o.contains_key(key)),
                Err(_) => false,
            },
            _ => false,
        }
    }

    fn is_empty(&self, value: Option<&Value>) -> bool {
        match self.leaf {
            Leaf::StringList | Leaf::ObjectList => {
                value.and_then(Value::as_array).is_none_or(Vec::is_empty)
            }
            Leaf::Map => as_object(value).is_none_or(Map::is_empty),
            Leaf::String => value.and_then(Value::as_str).is_none_or(str::is_empty),
            _ => true,
        }
    }
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if let (Ok(h), Ok(n)) = (std::str::from_utf8(haystack), std::str::from_utf8(needle)) {
        return h.contains(n);
    }
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn json_i64(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f < i64::MAX as f64)
                    .map(|f| f as i64)
            })
            .unwrap_or(0),
        _ => 0,
    }
}

fn json_u64(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
                    .map(|f| f as u64)
            })
            .unwrap_or(0),
        _ => 0,
    }
}

fn json_f64(value: Option<&Value>) -> f64 {
    value.and_then(Value::as_f64).unwrap_or(0.0)
}
