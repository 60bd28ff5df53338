//! One route's delivery task: read what follows the position, send it,
//! and advance the position once the peer acknowledged it.
//!
//! The loop works in chunks of at most [`CHUNK_ROWS`] entries and
//! [`CHUNK_BYTES`] bytes (the memory bound and the unit of a write):
//!
//! 1. read the entries after the position, keep those the filter takes,
//!    render and frame them into one buffer;
//! 2. record in the `routes` row that this chunk is about to be written
//!    (`unconfirmed`), unless the previous save already did;
//! 3. write and flush it; while the peer acknowledges, read the next chunk;
//! 4. wait for the acknowledgement, then save the new position, the
//!    counters and the next chunk's `unconfirmed` mark in one statement.
//!
//! A failed connect, write or acknowledgement drops the connection and
//! retries the same chunk after a jittered backoff, so nothing is lost and
//! at most one chunk is sent twice; those lines are counted as repeated,
//! as are the lines of an unconfirmed chunk resent after a restart. The
//! task only reads entries, so a route that is down slows neither ingest
//! nor other routes; it just falls behind.

use super::config::{FilterConfig, Start};
use super::sink::{Sink, SinkError};
use super::store::{self, Progress, Range, Row};
use super::template::Template;
use jr_backoff::Backoff;
use sqlx::SqlitePool;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Most entries read for one write.
pub const CHUNK_ROWS: i64 = 4096;
/// A chunk closes once its buffer reaches this many bytes.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// A position advanced over entries the filter does not take is saved at
/// most this often (losing it only means reading them again).
const SKIP_SAVE_INTERVAL: Duration = Duration::from_secs(5);
/// Re-read the store this often even without a commit notification.
const IDLE_POLL: Duration = Duration::from_secs(10);
/// How long a stop waits for the acknowledgement of a chunk already
/// written (well inside the server's drain deadline).
const STOP_CONFIRM_GRACE: Duration = Duration::from_secs(2);

/// What the route shows while it runs (the rest is in its `routes` row).
#[derive(Debug, Default)]
pub struct RouteState {
    pub connected: AtomicBool,
    /// Delivered position as the task knows it.
    pub position: AtomicI64,
    /// Latest error and its time (microseconds since the epoch).
    pub last_error: Mutex<Option<(String, i64)>>,
    /// Failed connects, writes and acknowledgements since the route
    /// started (exported as a metric).
    pub errors: std::sync::atomic::AtomicU64,
}

impl RouteState {
    pub(crate) fn set_error(&self, e: &str) {
        let now = jiff::Timestamp::now().as_microsecond();
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some((e.to_owned(), now));
        }
    }
}

/// The parts of a route that render and send lines.
pub struct Deliverer<S: Sink> {
    pub name: String,
    pub filter: FilterConfig,
    pub template: Template,
    pub sink: S,
    pub read: SqlitePool,
    pub db: SqlitePool,
    pub backoff: Backoff,
    pub state: Arc<RouteState>,
}

/// One write's worth of lines.
#[derive(Debug, Default)]
pub struct Chunk {
    pub buf: Vec<u8>,
    pub entries: i64,
    pub lines: i64,
    /// Id of the last entry read (sent or passed over).
    pub last_id: i64,
    /// Lines of entries sent before an unconfirmed write (restart).
    pub repeat_lines: i64,
}

/// The task was asked to stop.
pub struct Cancelled;

impl<S: Sink> Deliverer<S> {
    /// Reads and renders the next chunk of `range`; `None` when the range
    /// holds no more entries.
    pub async fn build(
        &self,
        range: Range,
        repeat_upto: i64,
    ) -> Result<Option<Chunk>, sqlx::Error> {
        let mut chunk = Chunk::default();
        let mut line = String::new();
        let last = store::read(&self.read, range, CHUNK_ROWS, |row: Row| {
            if self.filter.matches(&row) {
                self.template.render(&row, &mut line);
                let n = self.sink.encode(&line, &mut chunk.buf) as i64;
                chunk.entries += 1;
                chunk.lines += n;
                if row.id <= repeat_upto {
                    chunk.repeat_lines += n;
                }
            }
            chunk.buf.len() < CHUNK_BYTES
        })
        .await?;
        Ok(last.map(|last_id| {
            chunk.last_id = last_id;
            chunk
        }))
    }

    async fn failed(
        &mut self,
        e: &SinkError,
        attempt: u32,
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let text = e.to_string();
        let delay = self.backoff.delay(attempt);
        self.state.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(route = %self.name, error = %text, attempt, retry_in = ?delay, "route cannot deliver; nothing is lost, it will resend");
        self.sink.disconnect();
        self.state.connected.store(false, Ordering::Relaxed);
        self.state.set_error(&text);
        if let Err(e) = store::save_error(&self.db, &self.name, &text).await {
            tracing::debug!(route = %self.name, error = %e, "cannot record the route's error");
        }
        tokio::select! {
            _ = cancel.cancelled() => Err(Cancelled),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// Sends `chunk` until the peer acknowledged it; returns how many of
    /// its lines were sent twice.
    pub async fn deliver(
        &mut self,
        chunk: &Chunk,
        cancel: &CancellationToken,
    ) -> Result<i64, Cancelled> {
        let mut attempt = 0u32;
        let mut wrote_before = false;
        loop {
            let written = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(Cancelled),
                r = async {
                    self.sink.connect().await?;
                    self.state.connected.store(true, Ordering::Relaxed);
                    self.sink.write(&chunk.buf).await
                } => r,
            };
            if let Err(e) = written {
                // Only the check before writing reports `Closed`: then not
                // a byte of this attempt went out.
                wrote_before |= !matches!(e, SinkError::Closed | SinkError::NotConnected)
                    && self.sink.is_connected();
                self.failed(&e, attempt, cancel).await?;
                attempt = attempt.saturating_add(1);
                continue;
            }
            let confirmed = {
                let confirm = self.sink.confirm();
                tokio::pin!(confirm);
                tokio::select! {
                    biased;
                    r = &mut confirm => r,
                    _ = cancel.cancelled() => {
                        // The chunk is written: a short wait for the peer's
                        // acknowledgement lets the stop save the position
                        // instead of sending the chunk again after a restart.
                        match tokio::time::timeout(STOP_CONFIRM_GRACE, &mut confirm).await {
                            Ok(Ok(())) => Ok(()),
                            _ => return Err(Cancelled),
                        }
                    }
                }
            };
            match confirmed {
                Ok(()) => {
                    return Ok(if wrote_before {
                        chunk.lines
                    } else {
                        chunk.repeat_lines
                    })
                }
                Err(e) => {
                    wrote_before = true;
                    self.failed(&e, attempt, cancel).await?;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}

/// A route's delivery task.
pub struct RouteTask<S: Sink> {
    pub d: Deliverer<S>,
    pub start: Start,
    pub commits: watch::Receiver<i64>,
    pub cancel: CancellationToken,
}

impl<S: Sink> RouteTask<S> {
    async fn init(&self) -> Result<store::Saved, sqlx::Error> {
        let start = match &self.start {
            Start::Now => store::head(&self.d.read).await?,
            Start::Since(t) => match store::before_time(&self.d.read, t.as_microsecond()).await? {
                Some(p) => p,
                None => store::head(&self.d.read).await?,
            },
        };
        store::init_route(&self.d.db, &self.d.name, start).await
    }

    /// Saves until it works or the task is cancelled (then once more, so
    /// a graceful stop keeps the position).
    async fn save(&mut self, p: Progress) {
        let mut attempt = 0;
        loop {
            match store::save(&self.d.db, &self.d.name, p).await {
                Ok(()) => {
                    self.d.state.position.store(p.position, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    tracing::error!(route = %self.d.name, error = %e, "cannot save the route's position; retrying");
                    if self.cancel.is_cancelled() {
                        return;
                    }
                    let delay = self.d.backoff.delay(attempt);
                    attempt += 1;
                    tokio::select! {
                        _ = self.cancel.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Runs until cancelled.
    pub async fn run(mut self) {
        let mut attempt = 0;
        let saved = loop {
            match self.init().await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::error!(route = %self.d.name, error = %e, "cannot read the route's position");
                    let delay = self.d.backoff.delay(attempt);
                    attempt += 1;
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        };
        tracing::info!(route = %self.d.name, position = saved.position, "route started");
        let mut position = saved.position;
        self.d.state.position.store(position, Ordering::Relaxed);
        let repeat_upto = saved.unconfirmed;
        let mut marked = saved.unconfirmed.max(position);
        let mut next: Option<Chunk> = None;
        // Entries passed over since the last save.
        let mut skipped_to: Option<i64> = None;
        let mut last_save = tokio::time::Instant::now();
        loop {
            let chunk = match next.take() {
                Some(c) => c,
                None => match self.d.build(Range::after(position), repeat_upto).await {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        if let Some(p) = skipped_to.take() {
                            self.save(skip(p, marked)).await;
                            last_save = tokio::time::Instant::now();
                        }
                        let woken = tokio::select! {
                            _ = self.cancel.cancelled() => return,
                            r = self.commits.changed() => r.is_ok(),
                            _ = tokio::time::sleep(IDLE_POLL) => true,
                        };
                        if !woken {
                            // The writer is gone (shutdown): poll until cancelled.
                            tokio::select! {
                                _ = self.cancel.cancelled() => return,
                                _ = tokio::time::sleep(IDLE_POLL) => {}
                            }
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(route = %self.d.name, error = %e, "cannot read entries; retrying");
                        tokio::select! {
                            _ = self.cancel.cancelled() => return,
                            _ = tokio::time::sleep(self.d.backoff.delay(0)) => {}
                        }
                        continue;
                    }
                },
            };
            if chunk.lines == 0 {
                position = chunk.last_id;
                skipped_to = Some(position);
                if last_save.elapsed() >= SKIP_SAVE_INTERVAL {
                    self.save(skip(position, marked)).await;
                    skipped_to = None;
                    last_save = tokio::time::Instant::now();
                }
                continue;
            }
            if chunk.last_id > marked {
                // Mark before writing, so a crash during the write is
                // counted as repeats after the restart.
                self.save(Progress {
                    position,
                    unconfirmed: chunk.last_id,
                    ..Progress::default()
                })
                .await;
                marked = chunk.last_id;
            }
            let repeated = match self.d.deliver(&chunk, &self.cancel).await {
                Ok(r) => r,
                Err(Cancelled) => {
                    if let Some(p) = skipped_to.take() {
                        self.save(skip(p, marked)).await;
                    }
                    return;
                }
            };
            // The next chunk is read before saving so that one statement
            // both advances the position and marks the next write; a
            // stop only saves.
            let stopping = self.cancel.is_cancelled();
            next = if stopping {
                None
            } else {
                match self.d.build(Range::after(chunk.last_id), repeat_upto).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(route = %self.d.name, error = %e, "cannot read ahead");
                        None
                    }
                }
            };
            let unconfirmed = next.as_ref().map_or(chunk.last_id, |c| {
                if c.lines > 0 {
                    c.last_id
                } else {
                    chunk.last_id
                }
            });
            self.save(Progress {
                position: chunk.last_id,
                unconfirmed,
                entries: chunk.entries,
                lines: chunk.lines,
                bytes: chunk.buf.len() as i64,
                repeated,
            })
            .await;
            if stopping {
                return;
            }
            last_save = tokio::time::Instant::now();
            skipped_to = None;
            marked = unconfirmed;
            position = chunk.last_id;
        }
    }
}

fn skip(position: i64, marked: i64) -> Progress {
    Progress {
        position,
        unconfirmed: marked,
        ..Progress::default()
    }
}
