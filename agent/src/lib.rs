//! jr-agent: ships a node's systemd journal to jr-server, every entry
//! exactly once.
//!
//! ```text
//! journal files ─────────> native ─┐
//!   (jr-journal-file)      thread  ├─> batcher ──> session ──gRPC──> jr-server
//! journalctl -o export ──> reader ─┘   size/linger   window of
//!   (child process: fallback)          + filters     unacked batches
//! ```
//!
//! Both readers ([`native`], [`reader`]) yield the same entries and
//! cursors with the same resume rules; [`journal_reader`] picks one.
//!
//! The journal is the buffer: the agent keeps no log data, only a
//! position. The server's Welcome says where to resume; a local state file
//! ([`state`]) is a fallback for a server that does not know this machine.
//! Any failure ends the session and a new one resumes from the server's
//! cursor ([`shipper`]).

pub mod batch;
pub mod channel;
pub mod cli;
pub mod config;
pub mod filter;
pub mod head;
pub mod identity;
pub mod journal_reader;
pub mod metrics;
pub mod metrics_http;
pub mod native;
pub mod outage;
pub mod reader;
pub mod session;
pub mod shipper;
pub mod state;
pub mod wire;

pub use config::{AgentConfig, ReaderKind};
pub use shipper::{run, RunSummary};
