//! One module per command group.

pub mod acl;
pub mod agent;
pub mod catalog;
pub mod config;
pub mod connect;
pub mod debug;
pub mod gateway;
pub mod intention;
pub mod keyring;
pub mod kv;
pub mod lock;
pub mod login;
pub mod operator;
pub mod ops;
pub mod proxy;
pub mod setup;
pub mod snapshot;
pub mod tls;
pub mod validate;
pub mod watch;
