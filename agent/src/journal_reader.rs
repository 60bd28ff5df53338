//! The one interface over both readers: [`start`] picks the native reader
//! or journalctl per `--reader`, and falls back from native to journalctl
//! (with a warning saying why) when the journal cannot be read natively:
//! files with incompatible features the native reader does not know,
//! files it cannot open, or a namespace pattern only journalctl expands.
//!
//! Either way the session gets the same thing: a bounded channel of
//! [`ReaderItem`]s in journal order, with the same resume and gap rules,
//! and a guard that stops the reader when dropped.

use crate::config::ReaderKind;
use crate::filter::Filter;
use crate::metrics::Metrics;
use crate::native::{self, NativeGuard};
use crate::reader::{Reader, ReaderError, ReaderItem, ReaderOptions};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

/// Keeps a reader running; dropping it stops the reader.
#[derive(Debug)]
pub enum ReaderGuard {
    /// The task decoding journalctl's output (it owns the child).
    Journalctl(AbortOnDropHandle<()>),
    Native(NativeGuard),
}

impl ReaderGuard {
    /// Whether the reader is still running.
    pub fn is_running(&self) -> bool {
        match self {
            ReaderGuard::Journalctl(h) => !h.is_finished(),
            ReaderGuard::Native(g) => g.is_running(),
        }
    }
}

/// A started reader.
#[derive(Debug)]
pub struct JournalReader {
    pub events: mpsc::Receiver<ReaderItem>,
    pub guard: ReaderGuard,
    /// The reader actually used.
    pub kind: ReaderKind,
    /// Why the native reader was not used, when it was asked for.
    pub fallback: Option<String>,
}

impl JournalReader {
    /// The event channel and the guard that keeps the reader running.
    pub fn into_parts(self) -> (mpsc::Receiver<ReaderItem>, ReaderGuard) {
        (self.events, self.guard)
    }
}

/// Starts the reader `kind` asks for, or journalctl when the native reader
/// cannot read the source. The native reader decides `filter` before it
/// decodes an entry whole; the batcher applies it again either way.
pub async fn start(
    kind: ReaderKind,
    opts: &ReaderOptions,
    filter: &Filter,
    metrics: Arc<Metrics>,
) -> Result<JournalReader, ReaderError> {
    let mut fallback = None;
    if kind == ReaderKind::Native {
        match native::spawn_filtered(opts, filter.clone(), metrics.clone()).await {
            Ok((events, guard)) => {
                return Ok(JournalReader {
                    events,
                    guard: ReaderGuard::Native(guard),
                    kind: ReaderKind::Native,
                    fallback: None,
                })
            }
            Err(e) => {
                let why = if e.is_unsupported() {
                    "the journal uses features the native reader does not know"
                } else {
                    "the journal cannot be read natively"
                };
                tracing::warn!(error = %e, "{why}; reading it with journalctl instead");
                Metrics::add(&metrics.reader_fallbacks, 1);
                fallback = Some(format!("{why}: {e}"));
            }
        }
    }
    let (events, task) = Reader::spawn(opts, metrics)?.into_parts();
    Ok(JournalReader {
        events,
        guard: ReaderGuard::Journalctl(task),
        kind: ReaderKind::Journalctl,
        fallback,
    })
}
