//! jr-agent: ships a node's systemd journal to jr-server, every entry
//! exactly once.
//!
//! ```text
//! journalctl -o export ──> reader ──> batcher ──> session ──gRPC──> jr-server
//!   (child process)        decode,     size/linger   window of
//!                          resume      + filters     unacked batches
//! ```
//!
//! The journal is the buffer: the agent keeps no log data, only a
//! position. The server's Welcome says where to resume; a local state file
//! ([`state`]) is a fallback for a server that does not know this machine.
//! Any failure ends the session and a new one resumes from the server's
//! cursor ([`shipper`]).

pub mod backoff;
pub mod batch;
pub mod config;
pub mod filter;
pub mod identity;
pub mod metrics;
pub mod reader;
pub mod session;
pub mod shipper;
pub mod state;

pub use config::AgentConfig;
pub use shipper::{run, RunSummary};
