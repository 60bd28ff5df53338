//! The agent's counters: plain atomics shared by the reader, the batcher and
//! the session, read as a [`Snapshot`] for the exit summary and exported
//! as Prometheus series by [`Metrics`]' collector (served by
//! `metrics_http`). The series names are in [`SERIES`].

use crate::head::HeadGauge;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one agent process, across every session.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Entries read from the journal (either reader).
    pub read: AtomicU64,
    /// Entries put into a batch that was sent to the server.
    pub shipped: AtomicU64,
    /// Entries in batches the server acknowledged (committed).
    pub acknowledged: AtomicU64,
    /// Entries read but left out by the filters.
    pub filtered: AtomicU64,
    /// Malformed export entries skipped by the decoder.
    pub malformed: AtomicU64,
    /// Damaged regions the native reader skipped: entries, data items,
    /// broken entry array chains and unreadable files.
    pub corrupt: AtomicU64,
    /// Sessions that wanted the native reader and used journalctl instead.
    pub reader_fallbacks: AtomicU64,
    /// Entries known (or assumed) lost because a resume cursor's entry was vacuumed.
    pub gaps: AtomicU64,
    /// Readers started after the first one.
    pub reader_restarts: AtomicU64,
    /// Sessions started after the first one.
    pub reconnects: AtomicU64,
    /// Encoded bytes of the batches sent (before compression).
    pub bytes_sent: AtomicU64,
    /// A session with the server is established (Welcome received).
    pub connected: AtomicBool,
    /// Why the latest session failed (for `/healthz`); empty when none
    /// failed since the last acknowledged batch.
    pub last_error: Mutex<String>,
}

/// Clears [`Metrics::connected`] when the session ends, however it ends.
pub struct ConnectedGuard<'a>(&'a Metrics);

impl Drop for ConnectedGuard<'_> {
    fn drop(&mut self) {
        self.0.connected.store(false, Ordering::Relaxed);
    }
}

/// A consistent-enough copy of [`Metrics`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub read: u64,
    pub shipped: u64,
    pub acknowledged: u64,
    pub filtered: u64,
    pub malformed: u64,
    pub corrupt: u64,
    pub reader_fallbacks: u64,
    pub gaps: u64,
    pub reader_restarts: u64,
    pub reconnects: u64,
    pub bytes_sent: u64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Marks the session connected until the guard is dropped.
    pub fn connected(&self) -> ConnectedGuard<'_> {
        self.connected.store(true, Ordering::Relaxed);
        ConnectedGuard(self)
    }

    /// Records why the latest session failed.
    pub fn set_error(&self, e: impl fmt::Display) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = e.to_string();
        }
    }

    /// The failure recorded by [`Metrics::set_error`], if any.
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            read: g(&self.read),
            shipped: g(&self.shipped),
            acknowledged: g(&self.acknowledged),
            filtered: g(&self.filtered),
            malformed: g(&self.malformed),
            corrupt: g(&self.corrupt),
            reader_fallbacks: g(&self.reader_fallbacks),
            gaps: g(&self.gaps),
            reader_restarts: g(&self.reader_restarts),
            reconnects: g(&self.reconnects),
            bytes_sent: g(&self.bytes_sent),
        }
    }
}

/// Every series the agent exports: (name, type, help). Counters get
/// `_total` appended in the output.
pub const SERIES: &[(&str, MetricType, &str)] = &[
    (
        "jr_agent_entries_read",
        MetricType::Counter,
        "Entries read from the journal",
    ),
    (
        "jr_agent_entries_shipped",
        MetricType::Counter,
        "Entries sent to the server in batches",
    ),
    (
        "jr_agent_entries_acknowledged",
        MetricType::Counter,
        "Entries in batches the server committed",
    ),
    (
        "jr_agent_entries_filtered",
        MetricType::Counter,
        "Entries read but left out by the filters",
    ),
    (
        "jr_agent_entries_malformed",
        MetricType::Counter,
        "Malformed export entries skipped",
    ),
    (
        "jr_agent_corrupt_regions",
        MetricType::Counter,
        "Damaged journal regions the native reader skipped",
    ),
    (
        "jr_agent_gap_entries",
        MetricType::Counter,
        "Entries lost because the resume cursor's entry was vacuumed",
    ),
    (
        "jr_agent_reader_restarts",
        MetricType::Counter,
        "Journal readers started after the first",
    ),
    (
        "jr_agent_reader_fallbacks",
        MetricType::Counter,
        "Sessions that used journalctl instead of the native reader",
    ),
    (
        "jr_agent_reconnects",
        MetricType::Counter,
        "Sessions started after the first",
    ),
    (
        "jr_agent_sent_bytes",
        MetricType::Counter,
        "Encoded bytes of the batches sent (before compression)",
    ),
    (
        "jr_agent_connected",
        MetricType::Gauge,
        "1 while a session with the server is established",
    ),
    (
        "jr_agent_lag_seconds",
        MetricType::Gauge,
        "How far the acknowledged position is behind the journal head, in seconds of \
         journal time (absent until the head is known)",
    ),
];

/// The counters of [`Metrics`] and the lag of [`HeadGauge`], as one
/// prometheus-client collector.
#[derive(Debug)]
pub struct Exported {
    pub metrics: Arc<Metrics>,
    pub head: Arc<HeadGauge>,
}

impl Collector for Exported {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = self.metrics.snapshot();
        let counters = [
            s.read,
            s.shipped,
            s.acknowledged,
            s.filtered,
            s.malformed,
            s.corrupt,
            s.gaps,
            s.reader_restarts,
            s.reader_fallbacks,
            s.reconnects,
            s.bytes_sent,
        ];
        for ((name, kind, help), v) in SERIES.iter().zip(counters) {
            let c = ConstCounter::new(v);
            c.encode(e.encode_descriptor(name, help, None, *kind)?)?;
        }
        let gauges = &SERIES[counters.len()..];
        let connected = i64::from(self.metrics.connected.load(Ordering::Relaxed));
        let (name, kind, help) = gauges[0];
        ConstGauge::new(connected).encode(e.encode_descriptor(name, help, None, kind)?)?;
        if self.head.head_realtime_usec() > 0 {
            let (name, kind, help) = gauges[1];
            let g = ConstGauge::new(self.head.lag_seconds());
            g.encode(e.encode_descriptor(name, help, None, kind)?)?;
        }
        Ok(())
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read {} entries, shipped {}, acknowledged {}, filtered {}, malformed {}, \
             corrupt {}, gap {}, reader restarts {}, reader fallbacks {}, reconnects {}, \
             {} bytes sent",
            self.read,
            self.shipped,
            self.acknowledged,
            self.filtered,
            self.malformed,
            self.corrupt,
            self.gaps,
            self.reader_restarts,
            self.reader_fallbacks,
            self.reconnects,
            self.bytes_sent
        )
    }
}
