//! Smaller tables: user events and network coordinates.

use std::collections::VecDeque;

use meshgate_types::kv::b64_opt;
use serde::{Deserialize, Serialize};

use crate::{State, Table, fold};

/// How many user events are kept (Consul keeps the last 256 per agent).
pub const EVENT_BUFFER: usize = 256;

/// A user event (`/v1/event/fire`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UserEvent {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(with = "b64_opt")]
    pub payload: Option<Vec<u8>>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub version: i64,
    #[serde(rename = "LTime")]
    pub ltime: u64,
}

/// A network coordinate (Vivaldi).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coord {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

impl Default for Coord {
    fn default() -> Self {
        Coord {
            vec: vec![0.0; 8],
            error: 1.5,
            adjustment: 0.0,
            height: 1e-5,
        }
    }
}

impl Coord {
    /// The estimated round trip time to `other` (Vivaldi with height and
    /// adjustment, as Serf computes it); `None` when their dimensions
    /// differ.
    pub fn distance_to(&self, other: &Coord) -> Option<std::time::Duration> {
        if self.vec.len() != other.vec.len() {
            return None;
        }
        let magnitude = self
            .vec
            .iter()
            .zip(&other.vec)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        let raw = magnitude + self.height + other.height;
        let adjusted = raw + self.adjustment + other.adjustment;
        let secs = if adjusted > 0.0 { adjusted } else { raw };
        Some(std::time::Duration::from_secs_f64(secs.max(0.0)))
    }
}

/// One node's coordinate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CoordinateEntry {
    pub node: String,
    pub segment: String,
    pub coord: Coord,
}

impl State {
    pub(crate) fn fire_event(&mut self, idx: u64, mut e: UserEvent) {
        e.ltime = self.events.back().map_or(1, |l| l.ltime + 1);
        self.events.push_back(e);
        while self.events.len() > EVENT_BUFFER {
            self.events.pop_front();
        }
        self.touch(Table::Events, idx);
    }

    pub(crate) fn update_coordinates(&mut self, idx: u64, updates: &[CoordinateEntry]) {
        let mut changed = false;
        for u in updates {
            let key = (fold(&u.node), u.segment.clone());
            // Coordinates of nodes that are not registered are dropped, as in Consul.
            if !self.nodes.contains_key(&key.0) {
                continue;
            }
            if self.coordinates.get(&key) != Some(u) {
                self.coordinates.insert(key, u.clone());
                changed = true;
            }
        }
        if changed {
            self.touch(Table::Coordinates, idx);
        }
    }

    pub(crate) fn delete_node_coordinates(&mut self, idx: u64, node_key: &str) {
        let before = self.coordinates.len();
        self.coordinates.retain(|(n, _), _| n != node_key);
        if self.coordinates.len() != before {
            self.touch(Table::Coordinates, idx);
        }
    }

    // === queries ===

    /// The buffered user events, oldest first.
    pub fn events(&self) -> (u64, &VecDeque<UserEvent>) {
        (self.tables.events, &self.events)
    }

    /// Every coordinate.
    pub fn coordinates(&self) -> (u64, Vec<&CoordinateEntry>) {
        (self.tables.coordinates, self.coordinates.values().collect())
    }

    /// The coordinates of one node (one per segment).
    pub fn node_coordinates(&self, node: &str) -> (u64, Vec<&CoordinateEntry>) {
        let f = fold(node);
        (
            self.tables.coordinates,
            self.coordinates
                .iter()
                .filter(|((n, _), _)| *n == f)
                .map(|(_, c)| c)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Coord;

    fn c(vec: &[f64], height: f64, adjustment: f64) -> Coord {
        Coord {
            vec: vec.to_vec(),
            error: 1.5,
            adjustment,
            height,
        }
    }

    #[test]
    fn distance_is_serfs() {
        // |(3,4)| = 5 s, plus both heights.
        let a = c(&[0.0, 0.0], 0.001, 0.0);
        let b = c(&[3.0, 4.0], 0.002, 0.0);
        let d = a.distance_to(&b).unwrap().as_secs_f64();
        assert!((d - 5.003).abs() < 1e-9, "{d}");
        // Adjustments count unless they would make it negative.
        let b = c(&[3.0, 4.0], 0.002, -0.5);
        assert!((a.distance_to(&b).unwrap().as_secs_f64() - 4.503).abs() < 1e-9);
        let b = c(&[3.0, 4.0], 0.002, -10.0);
        assert!((a.distance_to(&b).unwrap().as_secs_f64() - 5.003).abs() < 1e-9);
        // Different dimensions cannot be compared.
        assert!(a.distance_to(&c(&[0.0; 8], 0.0, 0.0)).is_none());
    }
}
