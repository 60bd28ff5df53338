//! journal-router's server.
//!
//! Agents open one `Ingest.Ship` stream each ([`ingest`]); a new session
//! for a machine fences the older one ([`sessions`]); every batch goes
//! through one queue to the single writer task ([`db::writer`]), which
//! stores batches from all sessions in group transactions together with
//! each host's committed cursor and acknowledges them only after commit.
//! [`server`] ties it together: `Server::bind(config)` then
//! `serve(shutdown)`, or [`run`].

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod forward;
pub mod grpc;
pub mod ingest;
pub mod local_agent;
pub mod metrics;
pub mod packed;
pub mod progress;
pub mod query;
pub mod server;
pub mod sessions;
pub mod signal;
pub mod terms;

pub use config::ServerConfig;
pub use error::Error;
pub use server::{run, Server, ServerError};
