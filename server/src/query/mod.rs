//! The query service: what operators (through `jrctl`) ask the store.
//!
//! - [`request`] checks a `LogsRequest` and compiles it (globs, regex,
//!   field matches, resume token);
//! - [`sql`] turns it into index-friendly SQL with bound parameters and
//!   reads pages of rows;
//! - [`logs`] runs a logs query: stored entries, paging, `-n`, follow;
//! - [`info`] answers hosts, units and stats;
//! - [`service`] is the thin tonic adapter over all of these.
//!
//! Queries read through the read-only pool and never touch the writer; a
//! follower learns about commits from the writer's `watch` of the last
//! committed entry id and reads the new entries from the store.

pub mod error;
pub mod info;
pub mod logs;
pub mod request;
pub mod service;
pub mod sql;

pub use error::QueryError;
pub use service::QueryService;
