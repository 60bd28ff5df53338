//! The full-text index: a database file of its own, filled beside the
//! writer.
//!
//! SQLite lets one connection at a time write a database file, and
//! indexing messages (FTS5's tokenising, term hashing and segment merges)
//! took about a third of the writer's time when it ran inside each group
//! commit. The index therefore lives in `<db>-fts` (schema in
//! migrations/fts), and the [`Indexer`] fills it on a connection of its
//! own after every commit, while the writer already stores the next group.
//!
//! What it holds: one row per block of [`BLOCK`] consecutive entry ids
//! (rowid = id >> [`BLOCK_BITS`]), each distinct term of the block's
//! messages once ([`crate::terms`]), without positions.
//!
//! Consistency: `fts_position.upto` is the entry id up to which the index
//! is complete, committed together with the index rows. A search reads
//! the blocks matching its terms and every id past `upto` (committed, not
//! yet indexed), and checks each candidate's message, so it never waits
//! for the index and never misses a commit.
//! Retention's deletes leave the index through a trigger on the writer's
//! connection, which attaches this file for the job ([`attach_for_delete`]):
//! a block's row goes with its last entry. A row indexed from a snapshot
//! taken just before its entries were deleted stays, harmless: searches
//! join `entries`.
//!
//! At start-up the indexer catches up from `upto`: the whole table for a
//! database whose index was just created (an older database, or a lost
//! `-fts` file), with progress in the log.

use crate::config::Synchronous;
use crate::db::rows;
use crate::terms;
use sqlx::sqlite::{SqliteAutoVacuum, SqliteConnection, SqlitePool};
use sqlx::{ConnectOptions as _, Executor as _};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Entries are indexed in blocks of `BLOCK` consecutive ids, one index
/// row per block holding each of its terms once: FTS5's work grows with
/// the term occurrences it is given, and a block's messages repeat most
/// of their words. A search expands the matching blocks into their ids
/// and checks each candidate's message ([`crate::terms::Search`]).
pub const BLOCK_BITS: i64 = 6;
pub const BLOCK: i64 = 1 << BLOCK_BITS;

/// The index row (block) that entry `id` belongs to.
pub fn block_of(id: i64) -> i64 {
    id >> BLOCK_BITS
}

/// The first entry id of `block`.
fn first_id(block: i64) -> i64 {
    block << BLOCK_BITS
}

/// The newest id that ends a block, at most `id`: where indexing whole
/// blocks stops.
fn whole_blocks(id: i64) -> i64 {
    first_id(block_of(id + 1)) - 1
}

/// SQL for "is one of the entry ids of block `block`" (an SQL expression),
/// to follow an id column.
pub fn in_block_sql(block: &str) -> String {
    format!("BETWEEN ({block}) << {BLOCK_BITS} AND ((({block}) + 1) << {BLOCK_BITS}) - 1")
}

/// How long the indexer waits for another commit before indexing a block
/// that is not yet full.
const IDLE: Duration = Duration::from_millis(100);

/// Entry ids per indexing transaction: bounds how long the index's write
/// lock is held (retention's deletes wait for it) and the memory of FTS5's
/// pending terms.
const CHUNK: i64 = 8192;
/// FTS5 merges segments of one level once this many exist (its default is
/// 4): less merge work per indexed entry for a few more segments to read
/// per search.
const AUTOMERGE: i64 = 8;
/// FTS5's page size (its `pgsz` option's default), to turn a log budget
/// into pages of merge work.
const FTS_PAGE: u64 = 4050;
/// A catch-up longer than this many entries logs its progress.
const CATCH_UP_REPORT: i64 = 100_000;

/// `<db>-fts`: the index file that belongs to the database at `db`.
pub fn path(db: &Path) -> PathBuf {
    let mut p = OsString::from(db.as_os_str());
    p.push("-fts");
    PathBuf::from(p)
}

fn path_text(db: &Path) -> Result<String, sqlx::Error> {
    path(db)
        .into_os_string()
        .into_string()
        .map_err(|p| sqlx::Error::Configuration(format!("database path {p:?} is not UTF-8").into()))
}

/// Makes the index's tables visible to `conn` as `fts.*` (the read pool
/// does this for each connection it opens).
pub async fn attach(conn: &mut SqliteConnection, db: &Path) -> Result<(), sqlx::Error> {
    sqlx::query("ATTACH DATABASE ?1 AS fts")
        .bind(path_text(db)?)
        .execute(conn)
        .await
        .map(drop)
}

/// Attaches the index to the writer's connection for a retention job and
/// makes deletes of entries delete their index rows. Never left attached
/// during group commits: their `BEGIN IMMEDIATE` would take the index's
/// write lock too and wait for the indexer.
pub async fn attach_for_delete(conn: &mut SqliteConnection, db: &Path) -> Result<(), sqlx::Error> {
    attach(conn, db).await?;
    // Trigger bodies may not qualify table names; `entries_fts` is only in
    // the attached file.
    // A block's row goes with the last of its entries; until then it
    // stays whole (a candidate whose entry is gone is simply not found).
    let block = format!("old.id >> {BLOCK_BITS}");
    let trigger = format!(
        "CREATE TEMP TRIGGER IF NOT EXISTS entries_fts_delete AFTER DELETE ON main.entries \
         BEGIN DELETE FROM entries_fts WHERE rowid = {block} \
         AND NOT EXISTS (SELECT 1 FROM entries WHERE id {in_block}); END",
        in_block = in_block_sql(&block),
    );
    let made = conn.execute(trigger.as_str()).await;
    if let Err(e) = made {
        // Never leave the file attached to the writer's connection.
        let _ = detach(conn).await;
        return Err(e);
    }
    Ok(())
}

/// Undoes [`attach_for_delete`].
pub async fn detach(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let dropped = conn
        .execute("DROP TRIGGER IF EXISTS temp.entries_fts_delete")
        .await;
    conn.execute("DETACH DATABASE fts").await?;
    dropped.map(drop)
}

/// Opens (creating and migrating if needed) the index file of the
/// database at `db`, with the database attached as `store`: the
/// indexer's connection.
pub async fn open(db: &Path, synchronous: Synchronous) -> Result<SqliteConnection, sqlx::Error> {
    let mut conn = crate::db::open::options(&path(db), synchronous)
        .auto_vacuum(SqliteAutoVacuum::Incremental)
        // Half the database's: FTS5 keeps its pending terms in memory.
        .pragma("cache_size", "-8192")
        .connect()
        .await?;
    sqlx::migrate!("../migrations/fts")
        .run(&mut conn)
        .await
        .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
    command(&mut conn, "automerge", AUTOMERGE).await?;
    let store = db
        .to_str()
        .ok_or_else(|| sqlx::Error::Configuration("database path is not UTF-8".into()))?;
    sqlx::query("ATTACH DATABASE ?1 AS store")
        .bind(store)
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// The entry id up to which the index is complete.
pub async fn indexed(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT upto FROM fts.fts_position")
        .fetch_one(pool)
        .await
}

/// The task that keeps the index up with the committed entries.
pub struct Indexer {
    conn: SqliteConnection,
    upto: i64,
    /// The newest entry id when the indexer was made; later commits are
    /// announced on the watch [`Indexer::run`] gets.
    newest: i64,
    /// With `--max-db-size`: the pages of merge work per transaction (see
    /// [`Indexer::bounded`]).
    merge_pages: Option<i64>,
}

impl Indexer {
    /// Reads where the index stands. An index ahead of the database's
    /// newest entry belongs to another database (the file was replaced):
    /// it is emptied and rebuilt.
    pub async fn new(mut conn: SqliteConnection) -> Result<Indexer, sqlx::Error> {
        let mut upto: i64 = sqlx::query_scalar("SELECT upto FROM fts_position")
            .fetch_one(&mut conn)
            .await?;
        let newest = newest(&mut conn).await?;
        if upto > newest {
            tracing::warn!(
                indexed_upto = upto,
                newest_entry = newest,
                "the full-text index is ahead of the database (was the database replaced?); rebuilding it"
            );
            conn.execute("BEGIN IMMEDIATE").await?;
            conn.execute("INSERT INTO entries_fts(entries_fts) VALUES ('delete-all')")
                .await?;
            conn.execute("UPDATE fts_position SET upto = 0").await?;
            conn.execute("COMMIT").await?;
            upto = 0;
        }
        Ok(Indexer {
            conn,
            upto,
            newest,
            merge_pages: None,
        })
    }

    /// Keeps the index's transactions within `log_budget` bytes of
    /// write-ahead log and its file free of free pages, for a server with
    /// `--max-db-size`, where both count on disk.
    ///
    /// FTS5's automatic merging does merge work in the transaction that
    /// added the rows, in proportion to the rows and to the number of
    /// segment levels: a transaction could write several times its own
    /// size to the log. Here automatic merging is off and the same merges
    /// run afterwards, in steps of at most `log_budget` bytes, each its own
    /// transaction; freed pages go back to the file system after each.
    pub async fn bounded(mut self, log_budget: Option<u64>) -> Result<Indexer, sqlx::Error> {
        let Some(budget) = log_budget else {
            return Ok(self);
        };
        // Half the budget: a step also rewrites the index's structure
        // record and b-tree interior pages.
        let pages = i64::try_from(budget / FTS_PAGE / 2)
            .unwrap_or(i64::MAX)
            .max(8);
        // Both are stored in the index file; [`open`] sets automerge again
        // for a server without the limit.
        command(&mut self.conn, "automerge", 0).await?;
        command(&mut self.conn, "usermerge", AUTOMERGE).await?;
        self.merge_pages = Some(pages);
        Ok(self)
    }

    /// Indexes what is committed and then every commit announced on
    /// `commits`, until `shutdown`. What is left at shutdown is indexed
    /// at the next start.
    ///
    /// Whole blocks are indexed as soon as they are committed; the newest,
    /// still filling, once no commit has come for [`IDLE`]. Under load a
    /// block's row is so written once instead of at every commit, and
    /// searches lose nothing meanwhile: they check the ids past the
    /// index's position directly.
    pub async fn run(mut self, mut commits: watch::Receiver<i64>, shutdown: CancellationToken) {
        let mut target = self.newest;
        loop {
            target = target.max(*commits.borrow_and_update());
            self.catch_up(whole_blocks(target), &shutdown).await;
            let partial = self.upto < target;
            tokio::select! {
                changed = commits.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep(IDLE), if partial => {
                    self.catch_up(target, &shutdown).await;
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }

    async fn catch_up(&mut self, target: i64, shutdown: &CancellationToken) {
        let behind = target - self.upto;
        let report = behind > CATCH_UP_REPORT;
        if report {
            tracing::info!(
                from = self.upto,
                to = target,
                "full-text index: indexing {behind} entry ids"
            );
        }
        let started = Instant::now();
        let mut last_report = Instant::now();
        while self.upto < target && !shutdown.is_cancelled() {
            // Chunks end at block ends, so that no block is written twice.
            let end = whole_blocks(self.upto + CHUNK).min(target);
            if let Err(e) = self.index(end).await {
                // Nothing is lost: the next commit (or start) retries from
                // the same position; searches check the ids past it
                // directly meanwhile.
                tracing::warn!(error = %e, upto = self.upto, "full-text index: indexing failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => {}
                }
                return;
            }
            self.upto = end;
            if report && last_report.elapsed() >= Duration::from_secs(10) {
                last_report = Instant::now();
                tracing::info!(
                    upto = self.upto,
                    to = target,
                    "full-text index: catching up"
                );
            }
        }
        if report && self.upto >= target {
            tracing::info!(
                took_ms = started.elapsed().as_millis() as u64,
                "full-text index: caught up"
            );
        }
    }

    /// Indexes the entries after the position up to `end` and moves the
    /// position, in one transaction.
    ///
    /// The block holding the first new id may already have a row (the
    /// previous pass ended inside it): its row is written again from all
    /// of its entries, at most [`BLOCK`] - 1 of them read a second time.
    async fn index(&mut self, end: i64) -> Result<(), sqlx::Error> {
        let from = first_id(block_of(self.upto + 1));
        self.conn.execute("BEGIN").await?;
        let done = async {
            // One row per block: its messages joined by a newline, which
            // separates terms like any other punctuation.
            let blocks: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT id >> ?3, CAST(group_concat(message, X'0a') AS BLOB) \
                 FROM store.entries \
                 WHERE id >= ?1 AND id <= ?2 AND message IS NOT NULL \
                 GROUP BY id >> ?3",
            )
            .bind(from)
            .bind(end)
            .bind(BLOCK_BITS)
            .fetch_all(&mut self.conn)
            .await?;
            let mut rows = Vec::with_capacity(blocks.len());
            for (block, mut messages) in blocks {
                let mut text = Vec::new();
                terms::block_text(&mut messages, &mut text);
                // Terms are whole UTF-8 runs joined by spaces.
                let text = String::from_utf8(text).map_err(|e| sqlx::Error::Decode(e.into()))?;
                rows.push((block, text));
            }
            for (k, chunk) in rows::chunks(&rows, LOG2_MAX_ROWS) {
                let mut q = sqlx::query(&insert_statements()[k]);
                for (block, text) in chunk {
                    q = q.bind(block).bind(text.as_str());
                }
                q.execute(&mut self.conn).await?;
            }
            sqlx::query("UPDATE fts_position SET upto = ?1")
                .bind(end)
                .execute(&mut self.conn)
                .await?;
            self.conn.execute("COMMIT").await
        }
        .await;
        if let Err(e) = done {
            if let Err(rb) = self.conn.execute("ROLLBACK").await {
                tracing::debug!(error = %rb, "rollback after failed indexing");
            }
            return Err(e);
        }
        if let Some(pages) = self.merge_pages {
            self.merge(pages).await?;
        }
        Ok(())
    }

    /// Runs the merges that are due (levels with `usermerge` segments, or
    /// a merge under way) in steps of `pages`, each step a transaction of
    /// its own, giving freed pages back after each.
    async fn merge(&mut self, pages: i64) -> Result<(), sqlx::Error> {
        loop {
            // FTS5's documented way to tell whether a merge step did work:
            // total_changes() grows by at least 2.
            let before: i64 = sqlx::query_scalar("SELECT total_changes()")
                .fetch_one(&mut self.conn)
                .await?;
            command(&mut self.conn, "merge", pages).await?;
            let after: i64 = sqlx::query_scalar("SELECT total_changes()")
                .fetch_one(&mut self.conn)
                .await?;
            self.conn.execute("PRAGMA incremental_vacuum").await?;
            if after - before < 2 {
                return Ok(());
            }
        }
    }
}

/// Index rows per statement for the largest shape (see `rows`).
const LOG2_MAX_ROWS: usize = 6;

/// `INSERT OR REPLACE` statements for 1, 2, 4, … 2^[`LOG2_MAX_ROWS`] index
/// rows.
fn insert_statements() -> &'static [String] {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    SQL.get_or_init(|| {
        rows::statements(
            "INSERT OR REPLACE INTO entries_fts(rowid, terms)",
            2,
            LOG2_MAX_ROWS,
        )
    })
}

/// One of FTS5's special commands with its value (`automerge`, `merge`,
/// …): an insert into the table's own hidden column.
async fn command(conn: &mut SqliteConnection, name: &str, value: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO entries_fts(entries_fts, rank) VALUES (?1, ?2)")
        .bind(name)
        .bind(value)
        .execute(conn)
        .await
        .map(drop)
}

async fn newest(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM store.entries")
        .fetch_one(conn)
        .await
}
