//! Heartbeat heads, written in bulk.
//!
//! Every agent reports its journal head every few seconds, whether batches
//! flow or not. A transaction per report would cost 200 agents 40
//! transactions a second for no new entry; instead sessions drop reports
//! into [`Heartbeats`] (the newest per machine wins), and one task hands
//! whatever accumulated to the writer once per [`FLUSH_EVERY`] as a single
//! request. Heads that come with batches do not pass through here: the
//! writer records them in the batch's own transaction.

use crate::db::hosts::HeadReport;
use crate::db::writer::{Request, WriterHandle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often accumulated heads are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Reported heads not yet written, newest per machine.
#[derive(Default)]
pub struct Heartbeats {
    pending: Mutex<HashMap<Arc<str>, HeadReport>>,
}

impl Heartbeats {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, HeadReport>> {
        // Each change is one insert or one take: a poisoned map is whole.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `report` for the next flush, replacing an older one of the
    /// same machine.
    pub fn report(&self, report: HeadReport) {
        self.lock().insert(report.machine_id.clone(), report);
    }

    fn take(&self) -> Vec<HeadReport> {
        std::mem::take(&mut *self.lock()).into_values().collect()
    }

    /// Hands accumulated heads to the writer, one request at a time.
    async fn flush(&self, writer: &WriterHandle) {
        let heads = self.take();
        if heads.is_empty() {
            return;
        }
        let n = heads.len();
        match writer.submit(|reply| Request::Heads { heads, reply }).await {
            Ok(rx) => match rx.await {
                Ok(Ok(_)) => tracing::trace!(hosts = n, "heads recorded"),
                Ok(Err(e)) => tracing::debug!(error = %e, hosts = n, "heads not recorded"),
                Err(_) => tracing::debug!("writer stopped before recording heads"),
            },
            Err(e) => tracing::debug!(error = %e, "writer gone; heads not recorded"),
        }
    }

    /// Runs the flusher on `tasks` until `shutdown`, with a last flush.
    pub fn spawn_flusher(
        self: &Arc<Self>,
        writer: WriterHandle,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) {
        let me = self.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(FLUSH_EVERY) => me.flush(&writer).await,
                }
            }
            me.flush(&writer).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(machine: &str, at: i64) -> HeadReport {
        HeadReport {
            machine_id: Arc::from(machine),
            generation: 1,
            cursor: String::new(),
            realtime_usec: at,
            reported_usec: at,
        }
    }

    #[test]
    fn newest_report_per_machine() {
        let h = Heartbeats::default();
        h.report(report("a", 1));
        h.report(report("b", 2));
        h.report(report("a", 3));
        let mut taken = h.take();
        taken.sort_by_key(|r| r.reported_usec);
        let got: Vec<(&str, i64)> = taken
            .iter()
            .map(|r| (&*r.machine_id, r.reported_usec))
            .collect();
        assert_eq!(got, [("b", 2), ("a", 3)]);
        assert!(h.take().is_empty());
    }
}
