//! Normalization of a [`Body`] to JSON (see the crate documentation for the
//! rules), and the depth the normalized JSON will have.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::{Body, Item, Pos, Value};

/// What an item contributes at the end of its label path.
enum Leaf<'a> {
    Value(&'a Value),
    Body(&'a Body),
}

/// One entry of a node, in source order.
enum Part<'a> {
    /// An item that ends at this node.
    Leaf(Leaf<'a>, Pos),
    /// All the labelled continuations, at the place of the first one.
    Children,
}

/// A node of the label tree of one key.
#[derive(Default)]
struct Node<'a> {
    parts: Vec<Part<'a>>,
    children: Vec<(&'a str, Node<'a>)>,
    index: HashMap<&'a str, usize>,
}

impl<'a> Node<'a> {
    fn child(&mut self, label: &'a str) -> &mut Node<'a> {
        let i = match self.index.get(label) {
            Some(&i) => i,
            None => {
                if self.children.is_empty() {
                    self.parts.push(Part::Children);
                }
                self.children.push((label, Node::default()));
                self.index.insert(label, self.children.len() - 1);
                self.children.len() - 1
            }
        };
        &mut self.children[i].1
    }
}

/// The items of a body grouped by key, in order of first appearance, each
/// key with its label tree.
fn group(body: &Body) -> Vec<(&str, Node<'_>)> {
    let mut keys: Vec<(&str, Node<'_>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for item in &body.items {
        let (key, labels, leaf, pos) = match item {
            Item::Attribute { key, value, pos } => (key, &[][..], Leaf::Value(value), *pos),
            Item::Block {
                kind,
                labels,
                body,
                pos,
            } => (kind, labels.as_slice(), Leaf::Body(body), *pos),
        };
        let i = *index.entry(key.as_str()).or_insert_with(|| {
            keys.push((key.as_str(), Node::default()));
            keys.len() - 1
        });
        let mut node = &mut keys[i].1;
        for label in labels {
            node = node.child(label);
        }
        node.parts.push(Part::Leaf(leaf, pos));
    }
    keys
}

/// Normalizes a body to a JSON object.
///
/// Attributes and blocks become members; a labelled block nests one object
/// per label; labelled blocks of one kind merge by label; items that end at
/// the same place (repeated attributes, repeated unlabelled blocks, blocks
/// with the same labels) become an array in source order. The crate
/// documentation gives the complete rules.
pub fn to_json(body: &Body) -> Json {
    let mut map = Map::new();
    for (key, node) in group(body) {
        map.insert(key.to_owned(), node_json(&node));
    }
    Json::Object(map)
}

pub(crate) fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => Json::Number(n.clone()),
        Value::String(s) => Json::String(s.clone()),
        Value::List(list) => Json::Array(list.iter().map(value_to_json).collect()),
        Value::Object(body) => to_json(body),
    }
}

fn leaf_json(leaf: &Leaf<'_>) -> Json {
    match leaf {
        Leaf::Value(value) => value_to_json(value),
        Leaf::Body(body) => to_json(body),
    }
}

fn children_json(node: &Node<'_>) -> Json {
    let mut map = Map::new();
    for (label, child) in &node.children {
        map.insert((*label).to_owned(), node_json(child));
    }
    Json::Object(map)
}

fn node_json(node: &Node<'_>) -> Json {
    if let [only] = node.parts.as_slice() {
        return match only {
            Part::Leaf(leaf, _) => leaf_json(leaf),
            Part::Children => children_json(node),
        };
    }
    Json::Array(
        node.parts
            .iter()
            .map(|part| match part {
                Part::Leaf(leaf, _) => leaf_json(leaf),
                Part::Children => children_json(node),
            })
            .collect(),
    )
}

/// The depth of the normalized JSON of `body` and the position of the item
/// that reaches it, when that depth is over `limit`.
pub(crate) fn too_deep(body: &Body, limit: usize) -> Option<(usize, Pos)> {
    let (depth, pos) = body_depth(body);
    (depth > limit).then(|| (depth, pos.unwrap_or(Pos::START)))
}

/// A depth and the position of the innermost item on the deepest path.
type Depth = (usize, Option<Pos>);

fn deeper(a: Depth, b: Depth) -> Depth {
    if b.0 > a.0 { b } else { a }
}

fn body_depth(body: &Body) -> Depth {
    group(body)
        .iter()
        .map(|(_, node)| {
            let (depth, pos) = node_depth(node);
            (depth + 1, pos)
        })
        .fold((1, None), deeper)
}

fn node_depth(node: &Node<'_>) -> Depth {
    let children = || {
        let (depth, pos) = node
            .children
            .iter()
            .map(|(_, child)| node_depth(child))
            .fold((0, None), deeper);
        (depth + 1, pos)
    };
    let leaves = || {
        node.parts
            .iter()
            .filter_map(|part| match part {
                Part::Leaf(leaf, pos) => Some(leaf_depth(leaf, *pos)),
                Part::Children => None,
            })
            .fold((0, None), deeper)
    };
    let inner = match (node.parts.len(), node.children.is_empty()) {
        (1, true) => return leaves(),
        (1, false) => return children(),
        (_, true) => leaves(),
        (_, false) => deeper(leaves(), children()),
    };
    // The array of the parts.
    (inner.0 + 1, inner.1)
}

fn leaf_depth(leaf: &Leaf<'_>, pos: Pos) -> Depth {
    let (depth, inner) = match leaf {
        Leaf::Value(value) => value_depth(value),
        Leaf::Body(body) => body_depth(body),
    };
    (depth, inner.or(Some(pos)))
}

fn value_depth(value: &Value) -> Depth {
    match value {
        Value::List(list) => {
            let (depth, pos) = list.iter().map(value_depth).fold((0, None), deeper);
            (depth + 1, pos)
        }
        Value::Object(body) => body_depth(body),
        _ => (0, None),
    }
}
