//! The forwarder's SQL: reading entries after a route's position, and the
//! `routes` table (migrations/0003_routes.sql) of positions and counters.
//!
//! Entries are read through the server's read-only pool. Route rows are
//! written through a connection of the forwarder's own rather than the
//! writer's queue: each write is one single-row statement in autocommit,
//! holding SQLite's write lock for microseconds, and it waits for the
//! writer's group commits with `busy_timeout` instead of queueing behind
//! ingest batches. The writer starts every transaction with a write, so
//! it, too, only ever waits on the lock, never fails on a stale snapshot.
//! This keeps the ingest path free of forwarding code: a route that
//! cannot save its position stalls itself, never ingest.

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::ConnectOptions as _;
use sqlx::Row as _;
use std::path::Path;
use std::time::Duration;

/// How long a route's write waits for the writer's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// One entry as a route sees it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub host: String,
    pub machine_id: String,
    /// `None` for an entry stored without a boot id.
    pub boot_id: Option<String>,
    pub unit: Option<String>,
    pub about_unit: Option<String>,
    pub container: Option<String>,
    pub identifier: Option<String>,
    pub priority: Option<u8>,
    pub realtime_usec: i64,
    pub message: Option<Vec<u8>>,
    /// `entries.fields`, decoded on demand.
    pub fields: Vec<u8>,
}

impl Row {
    /// Every field of the entry; empty (and logged) when the stored blob
    /// does not decode.
    pub fn fields(&self) -> Vec<jr_proto::v1::Field> {
        let values = jr_journal::stored::RowValues {
            message: self.message.as_deref(),
            boot_id: self.boot_id.as_deref().map(str::as_bytes),
            machine_id: Some(self.machine_id.as_bytes()),
        };
        match jr_journal::stored::decode_fields(&self.fields, &values) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(entry = self.id, error = %e, "stored fields do not decode");
                Vec::new()
            }
        }
    }

    pub fn timestamp(&self) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_microsecond(self.realtime_usec).ok()
    }
}

/// Which entries to read.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// Entries with an id above this.
    pub after: i64,
    /// Up to this id (inclusive).
    pub upto: i64,
    /// Realtime bounds (inclusive), for replays.
    pub since_usec: i64,
    pub until_usec: i64,
}

impl Range {
    pub fn after(after: i64) -> Range {
        Range {
            after,
            upto: i64::MAX,
            since_usec: i64::MIN,
            until_usec: i64::MAX,
        }
    }
}

const READ: &str = "SELECT e.id, h.hostname, h.machine_id, u.name AS unit, au.name AS about_unit, \
     c.value AS container, i.value AS identifier, e.priority, e.realtime_usec, e.message, e.fields, \
     b.value AS boot_id \
     FROM entries e \
     JOIN hosts h ON h.id = e.host_id \
     LEFT JOIN strings b ON b.id = e.boot_id \
     LEFT JOIN units u ON u.id = e.unit_id \
     LEFT JOIN units au ON au.id = e.about_unit_id \
     LEFT JOIN strings c ON c.id = e.container_id \
     LEFT JOIN strings i ON i.id = e.identifier_id \
     WHERE e.id > ?1 AND e.id <= ?2 AND e.realtime_usec >= ?3 AND e.realtime_usec <= ?4 \
     ORDER BY e.id LIMIT ?5";

/// Reads up to `limit` entries of `range` in id order, handing each to
/// `take` until it returns false (so memory stays bounded by what `take`
/// keeps). Returns the id of the last row handed over.
pub async fn read(
    pool: &SqlitePool,
    range: Range,
    limit: i64,
    mut take: impl FnMut(Row) -> bool,
) -> Result<Option<i64>, sqlx::Error> {
    use futures::TryStreamExt as _;
    let mut rows = sqlx::query(READ)
        .bind(range.after)
        .bind(range.upto)
        .bind(range.since_usec)
        .bind(range.until_usec)
        .bind(limit)
        .fetch(pool);
    let mut last = None;
    while let Some(r) = rows.try_next().await? {
        let row = Row {
            id: r.try_get(0)?,
            host: r.try_get(1)?,
            machine_id: r.try_get(2)?,
            boot_id: r.try_get(11)?,
            unit: r.try_get(3)?,
            about_unit: r.try_get(4)?,
            container: r.try_get(5)?,
            identifier: r.try_get(6)?,
            priority: r
                .try_get::<Option<i64>, _>(7)?
                .and_then(|p| u8::try_from(p).ok()),
            realtime_usec: r.try_get(8)?,
            message: r.try_get(9)?,
            fields: r.try_get(10)?,
        };
        last = Some(row.id);
        if !take(row) {
            break;
        }
    }
    Ok(last)
}

/// Id of the newest entry (0 when the store is empty).
pub async fn head(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM entries")
        .fetch_one(pool)
        .await
}

/// The last id before the first entry with a time of `since_usec` or
/// later; `None` when there is no such entry.
pub async fn before_time(pool: &SqlitePool, since_usec: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT MIN(id) - 1 FROM entries WHERE realtime_usec >= ?1")
        .bind(since_usec)
        .fetch_one(pool)
        .await
}

/// Time of the first entry after `position`, if any.
pub async fn time_after(pool: &SqlitePool, position: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT realtime_usec FROM entries WHERE id > ?1 ORDER BY id LIMIT 1")
        .bind(position)
        .fetch_optional(pool)
        .await
}

/// Opens the forwarder's connection for route rows.
pub async fn open_routes_db(db: &Path) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(db)
                .busy_timeout(BUSY_TIMEOUT)
                .disable_statement_logging(),
        )
        .await
}

/// A route's saved state.
#[derive(Debug, Clone, Default)]
pub struct Saved {
    pub position: i64,
    pub unconfirmed: i64,
    pub entries_sent: i64,
    pub lines_sent: i64,
    pub bytes_sent: i64,
    pub repeated_lines: i64,
    pub last_error: String,
    pub last_error_usec: i64,
}

fn now_usec() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// The route's row, created at `start_position` if it has none.
pub async fn init_route(
    db: &SqlitePool,
    name: &str,
    start_position: i64,
) -> Result<Saved, sqlx::Error> {
    let now = now_usec();
    sqlx::query(
        "INSERT OR IGNORE INTO routes (name, position, created_usec, updated_usec) \
         VALUES (?1, ?2, ?3, ?3)",
    )
    .bind(name)
    .bind(start_position)
    .bind(now)
    .execute(db)
    .await?;
    Ok(load(db, name).await?.unwrap_or_default())
}

/// The route's row, if it has one.
pub async fn load(db: &SqlitePool, name: &str) -> Result<Option<Saved>, sqlx::Error> {
    let r = sqlx::query(
        "SELECT position, unconfirmed, entries_sent, lines_sent, bytes_sent, repeated_lines, \
         last_error, last_error_usec FROM routes WHERE name = ?1",
    )
    .bind(name)
    .fetch_optional(db)
    .await?;
    r.map(|r| {
        Ok(Saved {
            position: r.try_get(0)?,
            unconfirmed: r.try_get(1)?,
            entries_sent: r.try_get(2)?,
            lines_sent: r.try_get(3)?,
            bytes_sent: r.try_get(4)?,
            repeated_lines: r.try_get(5)?,
            last_error: r.try_get(6)?,
            last_error_usec: r.try_get(7)?,
        })
    })
    .transpose()
}

/// What one confirmed write (or a run of entries passed over) adds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub position: i64,
    /// The next write's last id (written before that write starts).
    pub unconfirmed: i64,
    pub entries: i64,
    pub lines: i64,
    pub bytes: i64,
    pub repeated: i64,
}

/// Advances the route's position and counters in one statement.
pub async fn save(db: &SqlitePool, name: &str, p: Progress) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE routes SET position = MAX(position, ?2), unconfirmed = ?3, \
         entries_sent = entries_sent + ?4, lines_sent = lines_sent + ?5, \
         bytes_sent = bytes_sent + ?6, repeated_lines = repeated_lines + ?7, \
         updated_usec = ?8 WHERE name = ?1",
    )
    .bind(name)
    .bind(p.position)
    .bind(p.unconfirmed)
    .bind(p.entries)
    .bind(p.lines)
    .bind(p.bytes)
    .bind(p.repeated)
    .bind(now_usec())
    .execute(db)
    .await?;
    Ok(())
}

/// Adds to the counters without moving the position (replays).
pub async fn add_counts(db: &SqlitePool, name: &str, p: Progress) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE routes SET entries_sent = entries_sent + ?2, lines_sent = lines_sent + ?3, \
         bytes_sent = bytes_sent + ?4, updated_usec = ?5 WHERE name = ?1",
    )
    .bind(name)
    .bind(p.entries)
    .bind(p.lines)
    .bind(p.bytes)
    .bind(now_usec())
    .execute(db)
    .await?;
    Ok(())
}

/// Records the route's latest error (empty: it works again).
pub async fn save_error(db: &SqlitePool, name: &str, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE routes SET last_error = ?2, last_error_usec = ?3 WHERE name = ?1")
        .bind(name)
        .bind(error)
        .bind(now_usec())
        .execute(db)
        .await?;
    Ok(())
}
