//! One module per command group.

pub mod agent;
pub mod catalog;
pub mod kv;
pub mod ops;
pub mod snapshot;
pub mod watch;
