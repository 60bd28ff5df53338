//! Prometheus metrics and health over HTTP (`--metrics-listen`, default
//! `127.0.0.1:7071`): `/metrics` in the Prometheus text format (0.0.4) and
//! `/healthz`.
//!
//! Two kinds of series:
//!
//! - **counted where things happen** ([`Counters`]): entries and batches
//!   received and rejected (by reason) in `ingest`, commit latency and
//!   group sizes in the writer, sessions, query requests by kind. They are
//!   prometheus-client metrics (an `Arc` of atomics each), cloned into the
//!   code that updates them;
//! - **read at scrape time** ([`scrape`]): what already has a home
//!   elsewhere is not counted twice. The writer's `Stats` (entries
//!   committed, group commits), retention's counters, each host's lag,
//!   state and gaps (`db::hosts::lag_and_gaps`), each forwarding route's
//!   position and counters, and the size of the database files are read
//!   when Prometheus asks, bounded by a timeout.
//!
//! Why prometheus-client and not `metrics` + `metrics-exporter-prometheus`:
//! it is the Prometheus project's own client, has four small dependencies
//! (no HTTP stack of its own: axum serves it, as the design wants), keeps
//! metrics in a [`Registry`] value instead of a process-wide recorder (so
//! several servers in one test process do not mix their numbers), and has
//! collectors for values computed on scrape.

pub mod grpc;
pub mod health;
pub mod http;
pub mod scrape;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use http::{MetricsListener, MetricsServer};

/// Why entries or a batch were not stored. Every rejection ends the
/// agent's session; the agent resends after reconnecting, so a rejection
/// loses nothing by itself, but a steady rate of them means a broken agent
/// or a sick server.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Reason {
    /// Malformed input (bad cursor, seq out of order).
    invalid_argument,
    /// Over the server's limits.
    too_large,
    /// Does not continue from the committed cursor.
    failed_precondition,
    /// A newer session of the machine took over.
    superseded,
    /// The group commit failed and was rolled back.
    storage,
    /// The credential may not write as this machine.
    permission_denied,
}

impl Reason {
    /// The reason of an ingest error that refuses a batch; `None` for
    /// errors that are not a refusal (the agent went away, shutdown).
    pub fn of(e: &crate::error::Error) -> Option<Reason> {
        use crate::error::Error as E;
        Some(match e {
            E::InvalidArgument(_) => Reason::invalid_argument,
            E::TooLarge(_) => Reason::too_large,
            E::FailedPrecondition(_) => Reason::failed_precondition,
            E::PermissionDenied(_) => Reason::permission_denied,
            E::Superseded { .. } => Reason::superseded,
            E::Storage => Reason::storage,
            E::ClientGone | E::ShuttingDown => return None,
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: Reason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// Series updated where things happen. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Counters {
    pub entries_received: Counter,
    pub batches_received: Counter,
    pub entries_rejected: Family<ReasonLabels, Counter>,
    pub batches_rejected: Family<ReasonLabels, Counter>,
    /// Ingest sessions running now.
    pub sessions: Gauge,
    /// Ingest sessions started since start-up.
    pub sessions_started: Counter,
    /// Seconds from a group's first request to its commit.
    pub commit_seconds: Histogram,
    /// Entries per committed group.
    pub commit_entries: Histogram,
    /// Batches per committed group.
    pub commit_batches: Histogram,
    /// Query and route requests by method.
    pub queries: Family<KindLabels, Counter>,
    /// The writer's latest group commit failed (cleared by the next good
    /// one); `/healthz` reports it.
    last_commit_failed: Arc<AtomicBool>,
    /// The writer task is running; `/healthz` reports when it is not.
    writer_running: Arc<AtomicBool>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            entries_received: Counter::default(),
            batches_received: Counter::default(),
            entries_rejected: Family::default(),
            batches_rejected: Family::default(),
            sessions: Gauge::default(),
            sessions_started: Counter::default(),
            // 1 ms .. ~33 s
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            // 1 .. 65536 entries
            commit_entries: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            // 1 .. 256 batches
            commit_batches: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            queries: Family::default(),
            last_commit_failed: Arc::default(),
            writer_running: Arc::default(),
        }
    }
}

/// Decrements the live-session gauge when the session ends, however it
/// ends.
pub struct SessionGuard(Gauge);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Marks the writer stopped when dropped (the writer task returned or
/// panicked).
pub struct WriterGuard(Arc<AtomicBool>);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl Counters {
    /// A batch arrived from an agent.
    pub fn received(&self, entries: usize) {
        self.batches_received.inc();
        self.entries_received.inc_by(entries as u64);
    }

    /// A batch of `entries` was refused for `reason`.
    pub fn rejected(&self, reason: Reason, entries: u64) {
        let labels = ReasonLabels { reason };
        self.batches_rejected.get_or_create(&labels).inc();
        self.entries_rejected.get_or_create(&labels).inc_by(entries);
    }

    /// A group commit succeeded.
    pub fn committed(&self, took: Duration, entries: u64, batches: u64) {
        self.last_commit_failed.store(false, Ordering::Relaxed);
        self.commit_seconds.observe(took.as_secs_f64());
        if batches > 0 {
            self.commit_entries.observe(entries as f64);
            self.commit_batches.observe(batches as f64);
        }
    }

    /// A group commit failed and was rolled back.
    pub fn commit_failed(&self) {
        self.last_commit_failed.store(true, Ordering::Relaxed);
    }

    /// Counts a session until the guard is dropped.
    pub fn session(&self) -> SessionGuard {
        self.sessions_started.inc();
        self.sessions.inc();
        SessionGuard(self.sessions.clone())
    }

    /// Marks the writer running until the guard is dropped.
    pub fn writer(&self) -> WriterGuard {
        self.writer_running.store(true, Ordering::Relaxed);
        WriterGuard(self.writer_running.clone())
    }

    pub fn writer_running(&self) -> bool {
        self.writer_running.load(Ordering::Relaxed)
    }

    pub fn last_commit_failed(&self) -> bool {
        self.last_commit_failed.load(Ordering::Relaxed)
    }

    /// Registers every series under its `jr_server_` name.
    fn register(&self, r: &mut Registry) {
        r.register(
            "jr_server_entries_received",
            "Entries received in batches from agents",
            self.entries_received.clone(),
        );
        r.register(
            "jr_server_batches_received",
            "Batches received from agents",
            self.batches_received.clone(),
        );
        r.register(
            "jr_server_entries_rejected",
            "Entries in batches refused, by reason (the agent resends them after reconnecting; \
             a packed batch that does not unpack counts no entries)",
            self.entries_rejected.clone(),
        );
        r.register(
            "jr_server_batches_rejected",
            "Batches refused, by reason",
            self.batches_rejected.clone(),
        );
        r.register(
            "jr_server_sessions",
            "Ingest sessions (connected agents) now",
            self.sessions.clone(),
        );
        r.register(
            "jr_server_sessions_started",
            "Ingest sessions started",
            self.sessions_started.clone(),
        );
        r.register(
            "jr_server_commit_duration_seconds",
            "Time from a group's first request to its commit",
            self.commit_seconds.clone(),
        );
        r.register(
            "jr_server_commit_group_entries",
            "Entries per group commit",
            self.commit_entries.clone(),
        );
        r.register(
            "jr_server_commit_group_batches",
            "Batches per group commit",
            self.commit_batches.clone(),
        );
        r.register(
            "jr_server_query_requests",
            "Query and route requests, by method",
            self.queries.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_undo_what_they_counted() {
        let c = Counters::default();
        {
            let _a = c.session();
            let _b = c.session();
            assert_eq!(c.sessions.get(), 2);
        }
        assert_eq!(c.sessions.get(), 0);
        assert_eq!(c.sessions_started.get(), 2);
        let w = c.writer();
        assert!(c.writer_running());
        drop(w);
        assert!(!c.writer_running());
        c.commit_failed();
        assert!(c.last_commit_failed());
        c.committed(Duration::from_millis(3), 10, 1);
        assert!(!c.last_commit_failed());
    }
}
