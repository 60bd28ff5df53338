//! End-to-end harness for journal-router.
//!
//! The tests in `tests/` run the real binaries against real parts: journal
//! files written by `systemd-journal-remote`, `jr-server` and `jr-agent` as
//! child processes talking gRPC on loopback, and the SQLite file the server
//! writes. This library keeps those tests short and readable:
//!
//! - [`fixture`] makes up journal entries and writes them into journal files;
//! - [`journalctl`] reads journal files back with journalctl, the oracle for
//!   cursors, timestamps and field bytes;
//! - [`procs`] starts, stops, kills and restarts `jr-server` and `jr-agent`,
//!   and shows their logs when a test fails;
//! - [`db`] reads the server's `journal` view and polls it with a bounded
//!   number of tries.
//!
//! A typical test: write a fixture, start a server, start an agent on the
//! fixture's directory, then `eventually` the database holds exactly the
//! cursors journalctl lists.

pub mod db;
pub mod fixture;
pub mod journalctl;
pub mod pki;
pub mod procs;

pub use db::{eventually, Db, JournalRow};
pub use fixture::{Entry, Fixture, Host, JournalWriter, Layout};
pub use procs::{Agent, Server};

/// A fresh scratch directory for one test, removed when dropped.
pub fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("jr-e2e-")
        .tempdir()
        .expect("create a scratch directory")
}
