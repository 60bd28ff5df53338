//! The agent's counters: plain atomics shared by the reader, the batcher and
//! the session, read as a [`Snapshot`] for the exit summary (and, later, an
//! HTTP endpoint).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

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
