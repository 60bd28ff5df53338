//! Running a logs query: the stored entries first, then, when following,
//! every new matching entry as it is committed.
//!
//! Stored entries are read in pages of [`PAGE_ROWS`] by keyset pagination
//! on (realtime, id), so no read transaction stays open while the client
//! is slow. Every result is bounded by a snapshot: the highest entry id at
//! its start. A follower then reads `snapshot < id <= head` in commit order
//! each time the head moves, so an entry is sent exactly once however far
//! behind the client falls. `-n N` (without `--reverse`) first walks back
//! to the N-th newest match, then streams forward from it, so memory does
//! not grow with N.
//!
//! Entries go to the client through a bounded channel; a full channel
//! makes the scan wait, a closed one ends it.

use super::error::QueryError;
use super::request::{Direction, Key, LogQuery, Resume};
use super::sql::{self, StoredRow, Where};
use jr_proto::v1::{LogEntry, LogsResponse};
use sqlx::SqlitePool;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// Rows read per SQL statement.
pub const PAGE_ROWS: i64 = 512;
/// Entries one call returns without `follow`; the rest is one resume
/// token away.
pub const MAX_RESULT_ENTRIES: u64 = 10_000;
/// Responses queued toward one client.
pub const CHANNEL: usize = 4;
/// A response closes at this many entries or bytes of messages and fields.
const CHUNK_ENTRIES: usize = 256;
const CHUNK_BYTES: usize = 1 << 20;
/// A follower also looks at the store this often, in case a commit
/// notification was missed or the writer provides none.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

pub type Tx = mpsc::Sender<Result<LogsResponse, Status>>;

/// Why a query stopped early.
enum Stop {
    /// The client went away or the server is shutting down.
    Gone,
    Failed(QueryError),
}

impl From<QueryError> for Stop {
    fn from(e: QueryError) -> Self {
        Stop::Failed(e)
    }
}

/// Entries on their way to the client, grouped into responses.
struct Out<'a> {
    tx: &'a Tx,
    buf: Vec<LogEntry>,
    bytes: usize,
}

impl Out<'_> {
    async fn push(&mut self, e: LogEntry) -> Result<(), Stop> {
        self.bytes += e
            .fields
            .iter()
            .map(|f| f.name.len() + f.value.len())
            .sum::<usize>();
        self.buf.push(e);
        if self.buf.len() >= CHUNK_ENTRIES || self.bytes >= CHUNK_BYTES {
            self.flush(String::new()).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, resume_token: String) -> Result<(), Stop> {
        if self.buf.is_empty() && resume_token.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.buf);
        self.bytes = 0;
        self.tx
            .send(Ok(LogsResponse {
                entries,
                resume_token,
                following_after: None,
            }))
            .await
            .map_err(|_| Stop::Gone)
    }
}

/// Runs `q` and sends its results (or its error) to `tx`.
pub async fn run(
    pool: SqlitePool,
    q: LogQuery,
    commits: Option<watch::Receiver<i64>>,
    shutdown: CancellationToken,
    tx: Tx,
) {
    let mut out = Out {
        tx: &tx,
        buf: Vec::new(),
        bytes: 0,
    };
    if let Err(Stop::Failed(e)) = stream(&pool, &q, commits, &shutdown, &mut out).await {
        let _ = tx.send(Err(e.into())).await;
    }
}

async fn stream(
    pool: &SqlitePool,
    q: &LogQuery,
    commits: Option<watch::Receiver<i64>>,
    shutdown: &CancellationToken,
    out: &mut Out<'_>,
) -> Result<(), Stop> {
    if let Some(after) = q.follow_after {
        return follow(pool, q, after, commits, shutdown, out).await;
    }
    let snapshot = match q.resume {
        Some(r) => r.snapshot,
        None => sql::last_id(pool).await?,
    };
    let mut token = None;
    if let Some(w) = sql::conditions(pool, q, 0).await? {
        let start = start(pool, q, &w, snapshot).await?;
        token = history(pool, q, &w, start, out).await?;
    }
    out.flush(token.map(|t| t.encode()).unwrap_or_default())
        .await?;
    if q.follow {
        follow(pool, q, snapshot, commits, shutdown, out).await?;
    }
    Ok(())
}

/// Where the stored part of the result starts: a resume token's position,
/// or for `-n N` the N-th newest match.
async fn start(pool: &SqlitePool, q: &LogQuery, w: &Where, snapshot: i64) -> Result<Resume, Stop> {
    if let Some(r) = q.resume {
        return Ok(r);
    }
    let mut r = Resume {
        direction: if q.reverse {
            Direction::Backward
        } else {
            Direction::Forward
        },
        after: Key { realtime: 0, id: 0 },
        snapshot,
        remaining: q.limit,
    };
    if q.reverse || q.limit == 0 {
        r.after = Key {
            realtime: if q.reverse { i64::MAX } else { i64::MIN },
            id: 0,
        };
        return Ok(r);
    }
    let mut after = None;
    let mut found = 0;
    loop {
        let rows =
            sql::page_by_time(pool, w, Direction::Backward, after, snapshot, PAGE_ROWS).await?;
        let n = rows.len();
        for row in rows {
            after = Some(row.key());
            if accept(q, row).is_some() {
                found += 1;
                if found == q.limit {
                    let k = after.unwrap_or(Key { realtime: 0, id: 0 });
                    // Just before the N-th newest match, so it is included.
                    r.after = Key {
                        realtime: k.realtime,
                        id: k.id - 1,
                    };
                    return Ok(r);
                }
            }
        }
        if n < PAGE_ROWS as usize {
            r.after = Key {
                realtime: i64::MIN,
                id: 0,
            };
            return Ok(r);
        }
    }
}

/// Streams stored matches from `start`; returns a resume token when the
/// result was cut at [`MAX_RESULT_ENTRIES`].
async fn history(
    pool: &SqlitePool,
    q: &LogQuery,
    w: &Where,
    start: Resume,
    out: &mut Out<'_>,
) -> Result<Option<Resume>, Stop> {
    let mut after = start.after;
    let mut sent = 0u64;
    loop {
        if out.tx.is_closed() {
            return Err(Stop::Gone);
        }
        let rows = sql::page_by_time(
            pool,
            w,
            start.direction,
            Some(after),
            start.snapshot,
            PAGE_ROWS,
        )
        .await?;
        let n = rows.len();
        for row in rows {
            after = row.key();
            let Some(entry) = accept(q, row) else {
                continue;
            };
            out.push(entry).await?;
            sent += 1;
            if start.remaining > 0 && sent == start.remaining {
                return Ok(None);
            }
            if !q.follow && sent == MAX_RESULT_ENTRIES {
                return Ok(Some(Resume {
                    after,
                    remaining: start.remaining.saturating_sub(sent),
                    ..start
                }));
            }
        }
        if n < PAGE_ROWS as usize {
            return Ok(None);
        }
    }
}

/// Sends every matching entry committed after `snapshot`, in commit order,
/// until the client goes away or the server shuts down.
async fn follow(
    pool: &SqlitePool,
    q: &LogQuery,
    snapshot: i64,
    mut commits: Option<watch::Receiver<i64>>,
    shutdown: &CancellationToken,
    out: &mut Out<'_>,
) -> Result<(), Stop> {
    out.tx
        .send(Ok(LogsResponse {
            following_after: Some(snapshot),
            ..Default::default()
        }))
        .await
        .map_err(|_| Stop::Gone)?;
    let mut last = snapshot;
    loop {
        let head = sql::last_id(pool).await?;
        if head > last {
            // Re-resolved each time: hosts, units and boots that appear
            // while following must be found.
            match sql::conditions(pool, q, last).await? {
                None => last = head,
                Some(w) => {
                    while last < head {
                        let rows = sql::page_by_id(pool, &w, last, head, PAGE_ROWS).await?;
                        let full = rows.len() == PAGE_ROWS as usize;
                        let page_end = rows.last().map(|r| r.entry.id);
                        for row in rows {
                            if let Some(entry) = accept(q, row) {
                                out.push(entry).await?;
                            }
                        }
                        last = match (full, page_end) {
                            (true, Some(id)) => id,
                            _ => head,
                        };
                    }
                }
            }
            out.flush(String::new()).await?;
        }
        let notified = async {
            match commits.as_mut() {
                Some(rx) => {
                    if rx.changed().await.is_err() {
                        // The writer is gone; polling is all that is left.
                        commits = None;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = out.tx.closed() => return Err(Stop::Gone),
            _ = shutdown.cancelled() => return Err(Stop::Failed(QueryError::ShuttingDown)),
            _ = notified => {}
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
        }
    }
}

/// The entry to send for `row`, or `None` when the checks that need the
/// message or the fields reject it. A row whose fields cannot be decoded
/// is skipped with a warning rather than failing the whole query.
fn accept(q: &LogQuery, row: StoredRow) -> Option<LogEntry> {
    let StoredRow {
        mut entry,
        message,
        blob,
    } = row;
    if let Some(re) = &q.grep {
        if !message.as_deref().is_some_and(|m| re.is_match(m)) {
            return None;
        }
    }
    if let Some(s) = &q.search {
        if !message.as_deref().is_some_and(|m| s.matches(m)) {
            return None;
        }
    }
    let values = jr_journal::stored::RowValues {
        message: message.as_deref(),
        boot_id: Some(entry.boot_id.as_bytes()),
        machine_id: Some(entry.machine_id.as_bytes()),
    };
    match jr_journal::stored::decode_fields(&blob, &values) {
        Ok(fields) => entry.fields = fields,
        Err(e) => {
            tracing::warn!(id = entry.id, error = %e, "skipping stored entry whose fields cannot be decoded");
            return None;
        }
    }
    if q.needs_fields() && !q.fields_match(&entry.fields) {
        return None;
    }
    Some(entry)
}
