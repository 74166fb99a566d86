//! Wire types of meshgate's Consul-compatible `/v1` HTTP API, shared by the state
//! store, the agent, the CLI and the proxies. JSON uses Consul's PascalCase names.
#![forbid(unsafe_code)]

pub mod acl;
pub mod agent;
pub mod catalog;
pub mod duration;
pub mod kv;
pub mod lenient;
pub mod query;
pub mod sdnotify;
pub mod time;
pub mod tls;
pub mod txn;

pub use duration::GoDuration;
