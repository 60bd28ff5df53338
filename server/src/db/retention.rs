//! Retention: deleting the oldest entries by age (`--retention`) and by
//! database size (`--max-db-size`), and giving the space back with
//! SQLite's incremental vacuum.
//!
//! # Where the deletes run
//!
//! Every write of a retention pass runs on the writer's own connection,
//! as a [`Job`] the writer task takes between two group commits (see
//! `writer::Writer::maintenance`). A second write connection was the
//! other choice, and it can stall ingest in ways this one cannot:
//! SQLite has one write lock, so the writer would wait for it with the
//! busy handler's growing sleeps, and a writer transaction whose first
//! statement reads fails outright (`SQLITE_BUSY_SNAPSHOT`, not retried)
//! when another connection committed in between, which would turn a
//! retention chunk into a failed group commit and agents resending. On
//! the writer's connection a chunk is just one more short transaction in
//! the queue: the writer picks fairly between its ingest queue and this
//! one, so under load group commits and chunks alternate, and a batch
//! waits for at most one chunk (a few thousand rows).
//!
//! # A pass
//!
//! The [`Retention`] task wakes every `--retention-interval` (with a size
//! limit, also after commits, at most every [`SIZE_CHECK_GAP`], for step 2
//! only) and:
//! 1. by age: deletes entries whose journal timestamp is older than
//!    `--retention`, oldest timestamp first, a chunk per transaction with
//!    a pause between chunks;
//! 2. by size: measures the database as the main file plus the
//!    write-ahead log file (its peak over the last [`WAL_PEAK_MEMORY`]),
//!    and when that is above [`HIGH_WATER`] of the
//!    limit deletes the oldest entries by id (the commit order) until the
//!    pages in use (`page_count - freelist_count`) plus the log are under
//!    [`LOW_WATER`], then gives back what free pages are left;
//! 3. checkpoints the log after deleting (`PASSIVE`: it never waits for
//!    readers or blocks the writer).
//!
//! Each delete chunk ends with `PRAGMA incremental_vacuum(N)` in its own
//! transaction, so the file shrinks chunk by chunk. With a size limit the
//! log is kept small ([`wal_budget`]: `journal_size_limit` and
//! `wal_autocheckpoint`) and so are retention's transactions, since every
//! page they touch passes through the log.
//!
//! Each delete chunk, in its own transaction, also lowers `hosts.entries`
//! of the hosts it deleted from; the per-unit counts follow through their
//! delete trigger (`host_units_delete`), the full-text index through a
//! temporary trigger while its file is attached for the job (see `fts`).
//! Sizes count the index file and its log with the database's. The newest entry is always kept, so that ids
//! never restart (see `delete_in_transaction`). Forwarding
//! routes read `id > position`, so a route whose position lies in the
//! deleted range continues at the oldest surviving entry; the entries it
//! never passed are counted and logged per route.
//!
//! # Space reuse
//!
//! A new database is created with `auto_vacuum = INCREMENTAL` (see
//! `open`). A database created without it cannot give pages back; when
//! `--max-db-size` is set, [`prepare`] converts it once at start-up with a
//! `VACUUM` (which rewrites the file and needs as much free disk space as
//! the database takes), logging what it does.

use sqlx::{Executor as _, Row as _, SqliteConnection, SqlitePool};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Rows deleted per transaction: small enough that a batch queued behind
/// a chunk waits milliseconds, large enough that a pass is not all
/// transaction overhead.
pub const CHUNK_ROWS: i64 = 2000;
/// Pause between two chunks deleted by age, so that ingest and queries
/// get the database between them even when the writer is idle.
const CHUNK_PAUSE: Duration = Duration::from_millis(5);
/// Most bytes given back per `incremental_vacuum` step; with a small size
/// limit, fewer (see [`wal_budget`]).
const VACUUM_BYTES: u64 = 16 << 20;
/// Shortest time between two size checks prompted by commits.
const SIZE_CHECK_GAP: Duration = Duration::from_millis(5);
/// Deleting by size starts above this share of the limit ...
pub const HIGH_WATER: f64 = 0.90;
/// ... and stops once the database is under this share.
pub const LOW_WATER: f64 = 0.85;
/// The largest share of the limit the write-ahead log may take in the
/// size measure when rows are deleted. A log larger than that is a log
/// that cannot be checkpointed yet (a long reader); deleting entries would
/// not shrink it, so it must not make retention delete everything.
const WAL_SHARE: u64 = 4;
/// How long the log's largest size counts in the measure. The log grows
/// for a moment with every large transaction (a group commit that also
/// merges FTS5 segments) and shrinks at the next checkpoint; counting its
/// recent peak keeps room for the next one.
const WAL_PEAK_MEMORY: Duration = Duration::from_secs(60);

/// What to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Entries whose journal timestamp is older than this are deleted.
    pub max_age: Option<Duration>,
    /// The database (main file in use plus write-ahead log) is kept
    /// under this many bytes.
    pub max_db_size: Option<u64>,
    /// Time between two passes.
    pub interval: Duration,
}

impl Policy {
    /// The policy `--retention`, `--max-db-size` and
    /// `--retention-interval` give.
    pub fn from_config(c: &crate::config::ServerConfig) -> Policy {
        Policy {
            max_age: c.retention,
            max_db_size: c.max_db_size,
            interval: c.retention_interval,
        }
    }

    pub fn is_active(&self) -> bool {
        self.max_age.is_some() || self.max_db_size.is_some()
    }
}

/// Counters of everything retention did since start-up, for metrics and
/// progress reports.
#[derive(Debug, Default)]
pub struct RetentionStats {
    /// Passes completed.
    pub passes: AtomicU64,
    /// Entries deleted for being older than `--retention`.
    pub deleted_by_age: AtomicU64,
    /// Entries deleted to keep the database under `--max-db-size`.
    pub deleted_by_size: AtomicU64,
    /// Bytes the incremental vacuum gave back to the file system.
    pub bytes_freed: AtomicU64,
    /// Entries deleted before a forwarding route had passed them
    /// (summed over routes).
    pub route_skipped: AtomicU64,
    /// The database's size at the last measurement: main file plus
    /// write-ahead log, in bytes.
    pub db_bytes: AtomicU64,
}

/// Errors of a retention pass or of [`prepare`].
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("the writer has stopped")]
    WriterGone,
}

/// One unit of retention work for the writer's connection.
pub struct Job {
    step: Step,
    /// The database file, whose full-text index file deletes and vacuums
    /// reach too.
    db: Arc<Path>,
    reply: oneshot::Sender<Result<Outcome, sqlx::Error>>,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Delete up to `limit` entries with `realtime_usec < cutoff_usec`.
    /// Then give back up to `vacuum` free pages (0: all).
    DeleteBefore {
        cutoff_usec: i64,
        limit: i64,
        vacuum: i64,
    },
    /// Delete the `limit` entries with the lowest ids.
    DeleteOldest { limit: i64, vacuum: i64 },
    /// Give up to `pages` free pages back to the file system.
    Vacuum { pages: i64 },
    /// Copy the write-ahead log into the main file without waiting.
    Checkpoint,
}

#[derive(Debug, Default)]
struct Deleted {
    rows: u64,
    /// Pages the chunk's vacuum gave back.
    freed_pages: u64,
    /// Route name and how many deleted entries it had not passed yet.
    routes: Vec<(String, u64)>,
}

#[derive(Debug)]
enum Outcome {
    Deleted(Deleted),
    Vacuumed { pages: u64 },
    Checkpointed,
}

impl Job {
    /// Runs the job on the writer's connection (outside any group
    /// transaction) and answers it.
    pub async fn run(self, conn: &mut SqliteConnection) {
        let result = match self.step {
            Step::DeleteBefore { .. } | Step::DeleteOldest { .. } | Step::Vacuum { .. } => {
                with_index(conn, &self.db, self.step).await
            }
            Step::Checkpoint => conn
                .execute("PRAGMA wal_checkpoint(PASSIVE)")
                .await
                .map(|_| Outcome::Checkpointed),
        };
        let _ = self.reply.send(result);
    }
}

/// The sending side of the writer's retention queue.
#[derive(Clone)]
pub struct Maintenance {
    tx: mpsc::Sender<Job>,
    db: Arc<Path>,
}

impl Maintenance {
    /// A queue of one: retention hands the writer one job at a time and
    /// waits for its answer.
    pub fn channel(db: &Path) -> (Maintenance, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(1);
        let db = Arc::from(db);
        (Maintenance { tx, db }, rx)
    }

    async fn submit(&self, step: Step) -> Result<Outcome, RetentionError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                step,
                db: self.db.clone(),
                reply,
            })
            .await
            .map_err(|_| RetentionError::WriterGone)?;
        Ok(rx.await.map_err(|_| RetentionError::WriterGone)??)
    }

    async fn delete(&self, step: Step) -> Result<Deleted, RetentionError> {
        match self.submit(step).await? {
            Outcome::Deleted(d) => Ok(d),
            _ => Ok(Deleted::default()),
        }
    }
}

/// Runs a delete or vacuum step with the full-text index attached, so
/// that deleted entries leave the index in the same step and its free
/// pages are given back too; detaches it again whatever happened.
async fn with_index(
    conn: &mut SqliteConnection,
    db: &Path,
    step: Step,
) -> Result<Outcome, sqlx::Error> {
    crate::db::fts::attach_for_delete(conn, db).await?;
    let result = match step {
        Step::Vacuum { pages } => vacuum(conn, pages).await,
        _ => delete_chunk(conn, step).await,
    };
    // The index's deletes went to its log through this connection: copy
    // them into the file now, so that the indexer's next transaction can
    // start the log over (and truncate it to its bound).
    if let Err(e) = conn.execute("PRAGMA fts.wal_checkpoint(PASSIVE)").await {
        tracing::debug!(error = %e, "checkpoint of the full-text index after a retention job");
    }
    if let Err(e) = crate::db::fts::detach(conn).await {
        tracing::error!(error = %e, "cannot detach the full-text index from the writer's connection");
    }
    result
}

/// Deletes one chunk in one transaction, with the hosts' entry counts.
async fn delete_chunk(conn: &mut SqliteConnection, step: Step) -> Result<Outcome, sqlx::Error> {
    conn.execute("BEGIN IMMEDIATE").await?;
    match delete_in_transaction(conn, step).await {
        Ok(d) => {
            conn.execute("COMMIT").await?;
            Ok(Outcome::Deleted(d))
        }
        Err(e) => {
            if let Err(rb) = conn.execute("ROLLBACK").await {
                tracing::debug!(error = %rb, "rollback after a failed retention chunk");
            }
            Err(e)
        }
    }
}

async fn delete_in_transaction(
    conn: &mut SqliteConnection,
    step: Step,
) -> Result<Deleted, sqlx::Error> {
    // The full-text index and `host_units` follow through their delete
    // triggers (the index's is temporary, see `with_index`). The newest entry is never deleted: ids are rowids without
    // AUTOINCREMENT, so an emptied table would hand out ids from 1 again,
    // behind every route position and live-tail follower.
    let query = match step {
        Step::DeleteBefore {
            cutoff_usec, limit, ..
        } => sqlx::query(
            "DELETE FROM entries WHERE id IN \
             (SELECT id FROM entries WHERE realtime_usec < ?1 \
                AND id < (SELECT MAX(id) FROM entries) \
              ORDER BY realtime_usec LIMIT ?2) \
             RETURNING id, host_id",
        )
        .bind(cutoff_usec)
        .bind(limit),
        Step::DeleteOldest { limit, .. } => sqlx::query(
            "DELETE FROM entries WHERE id IN \
             (SELECT id FROM entries WHERE id < (SELECT MAX(id) FROM entries) \
              ORDER BY id LIMIT ?1) \
             RETURNING id, host_id",
        )
        .bind(limit),
        Step::Vacuum { .. } | Step::Checkpoint => return Ok(Deleted::default()),
    };
    let rows = query.fetch_all(&mut *conn).await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut per_host: HashMap<i64, i64> = HashMap::new();
    for r in &rows {
        ids.push(r.try_get::<i64, _>(0)?);
        *per_host.entry(r.try_get::<i64, _>(1)?).or_default() += 1;
    }
    for (host, n) in per_host {
        sqlx::query("UPDATE hosts SET entries = MAX(entries - ?2, 0) WHERE id = ?1")
            .bind(host)
            .bind(n)
            .execute(&mut *conn)
            .await?;
    }
    let mut routes = Vec::new();
    if !ids.is_empty() {
        let positions = sqlx::query("SELECT name, position FROM routes")
            .fetch_all(&mut *conn)
            .await?;
        for r in positions {
            let position: i64 = r.try_get(1)?;
            let skipped = ids.iter().filter(|&&id| id > position).count() as u64;
            if skipped > 0 {
                routes.push((r.try_get::<String, _>(0)?, skipped));
            }
        }
    }
    // Give the pages back in the same transaction: one job, one turn of
    // the writer, and the file shrinks as soon as the rows are gone.
    let mut freed_pages = 0;
    if !ids.is_empty() {
        let before = freelist(conn).await?;
        let pages = match step {
            Step::DeleteBefore { vacuum, .. } | Step::DeleteOldest { vacuum, .. } => vacuum,
            Step::Vacuum { .. } | Step::Checkpoint => 0,
        };
        vacuum_both(conn, pages).await?;
        freed_pages = before.saturating_sub(freelist(conn).await?);
    }
    Ok(Deleted {
        rows: ids.len() as u64,
        freed_pages,
        routes,
    })
}

async fn vacuum(conn: &mut SqliteConnection, pages: i64) -> Result<Outcome, sqlx::Error> {
    let before = freelist(conn).await?;
    vacuum_both(conn, pages).await?;
    let after = freelist(conn).await?;
    Ok(Outcome::Vacuumed {
        pages: before.saturating_sub(after),
    })
}

/// Gives back up to `pages` free pages of the database and of its
/// full-text index (attached as `fts`) each.
async fn vacuum_both(conn: &mut SqliteConnection, pages: i64) -> Result<(), sqlx::Error> {
    conn.execute(format!("PRAGMA main.incremental_vacuum({pages})").as_str())
        .await?;
    conn.execute(format!("PRAGMA fts.incremental_vacuum({pages})").as_str())
        .await?;
    Ok(())
}

/// Free pages of the database and its full-text index (attached as
/// `fts`; both use SQLite's default page size unless set otherwise, and
/// the sum only compares counts taken the same way).
async fn freelist(conn: &mut SqliteConnection) -> Result<u64, sqlx::Error> {
    let main: i64 = sqlx::query_scalar("PRAGMA main.freelist_count")
        .fetch_one(&mut *conn)
        .await?;
    let fts: i64 = sqlx::query_scalar("PRAGMA fts.freelist_count")
        .fetch_one(&mut *conn)
        .await?;
    Ok(u64::try_from(main).unwrap_or(0) + u64::try_from(fts).unwrap_or(0))
}

/// Readies the write connection and the full-text index's connection
/// for `policy` before the writer starts: with a size limit, converts a
/// database created without incremental auto-vacuum (one `VACUUM`) and
/// bounds both write-ahead logs so that they are a small part of the limit.
pub async fn prepare(
    conn: &mut SqliteConnection,
    fts: &mut SqliteConnection,
    policy: &Policy,
) -> Result<(), RetentionError> {
    let Some(limit) = policy.max_db_size else {
        return Ok(());
    };
    bound_log(fts, index_log_budget(limit)).await?;
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut *conn)
        .await?;
    // 2 is INCREMENTAL; 0 (NONE) and 1 (FULL) both need the rewrite.
    if mode != 2 {
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut *conn)
            .await?;
        tracing::warn!(
            pages,
            "--max-db-size: this database was created without incremental auto-vacuum; \
             rewriting it once with VACUUM (needs that much free disk space)"
        );
        let started = Instant::now();
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL").await?;
        conn.execute("VACUUM").await?;
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "database converted to incremental auto-vacuum"
        );
    }
    // The log is reused from its start after each checkpoint but keeps
    // its largest size on disk; bound both its size and how much it
    // collects before a checkpoint (at most SQLite's default of 1000
    // pages between checkpoints).
    bound_log(conn, wal_budget(limit)).await?;
    Ok(())
}

/// Keeps the connection's write-ahead log near `budget` bytes: checkpoints
/// after that much (at most SQLite's default of 1000 pages) and truncates
/// the file back to it.
async fn bound_log(conn: &mut SqliteConnection, budget: u64) -> Result<(), sqlx::Error> {
    let pages = (budget as i64 / crate::db::open::page_size(conn).await?).clamp(32, 1000);
    conn.execute(format!("PRAGMA journal_size_limit = {budget}").as_str())
        .await?;
    conn.execute(format!("PRAGMA wal_autocheckpoint = {pages}").as_str())
        .await?;
    Ok(())
}

/// How large the write-ahead log should stay with a size limit of
/// `limit`: a thirty-second of it, between 256 KiB and 64 MiB. A vacuum
/// step moves at most this much, since every page it moves passes
/// through the log; delete chunks are bounded by the hysteresis between
/// [`HIGH_WATER`] and [`LOW_WATER`] and by [`CHUNK_ROWS`].
pub fn wal_budget(limit: u64) -> u64 {
    (limit / 32).clamp(256 << 10, 64 << 20)
}

/// How large the full-text index's write-ahead log should stay with a
/// size limit of `limit`: half the database's, since the indexer bounds
/// its transactions to it (see [`crate::db::fts::Indexer::bounded`]).
pub fn index_log_budget(limit: u64) -> u64 {
    wal_budget(limit) / 2
}

/// The database's size as retention sees it: the database file and its
/// full-text index file as one (see [`Size::read`]), and both logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Size {
    pub page_size: u64,
    /// Pages of the database file plus the index file's, in database pages.
    pub page_count: u64,
    /// Free pages of the database file.
    pub freelist: u64,
    /// Bytes of the two write-ahead log files.
    pub wal: u64,
    /// The log's largest size within the last [`WAL_PEAK_MEMORY`].
    pub wal_peak: u64,
}

impl Size {
    /// The database and its full-text index file together, counted in
    /// the database's pages. The index file counts whole: its free pages
    /// are the old segments of FTS5's last merge, given back by the
    /// indexer right after, and the next merge needs as many again.
    async fn read(conn: &SqlitePool) -> Result<Size, sqlx::Error> {
        let get = |v: i64| u64::try_from(v).unwrap_or(0);
        let pragma = |p: &'static str| async move {
            sqlx::query_scalar::<_, i64>(p)
                .fetch_one(conn)
                .await
                .map(get)
        };
        let page_size = pragma("PRAGMA main.page_size").await?.max(512);
        let fts_page_size = pragma("PRAGMA fts.page_size").await?.max(512);
        let in_pages = |n: u64| (n * fts_page_size).div_ceil(page_size);
        Ok(Size {
            page_size,
            page_count: pragma("PRAGMA main.page_count").await?
                + in_pages(pragma("PRAGMA fts.page_count").await?),
            freelist: pragma("PRAGMA main.freelist_count").await?,
            wal: 0,
            wal_peak: 0,
        })
    }

    /// Bytes of the database and index files.
    pub fn main_file(&self) -> u64 {
        self.page_count * self.page_size
    }

    /// Bytes of those files that hold data (the database's free pages
    /// excluded).
    pub fn main_used(&self) -> u64 {
        self.page_count.saturating_sub(self.freelist) * self.page_size
    }

    /// Files plus logs, as on disk.
    pub fn on_disk(&self) -> u64 {
        self.main_file() + self.wal
    }
}

/// The retention task.
pub struct Retention {
    policy: Policy,
    maintenance: Maintenance,
    /// The server's read pool: measuring and finding what to delete.
    read: SqlitePool,
    /// The database file (its `-wal`, and the index's `-fts-wal`, are
    /// measured beside it).
    db_path: PathBuf,
    stats: Arc<RetentionStats>,
    /// The writer's newest committed id: with a size limit, every commit
    /// is a reason to measure (at most every [`SIZE_CHECK_GAP`]), so the
    /// limit does not wait for the next interval.
    commits: tokio::sync::watch::Receiver<i64>,
    /// The log's recent peak and when it was seen (see [`Size::wal_peak`]).
    wal_peak: std::sync::Mutex<(u64, Instant)>,
}

/// What one pass (or several, for the log) did.
#[derive(Debug, Default)]
struct PassReport {
    by_age: u64,
    by_size: u64,
    freed_pages: u64,
    freed_bytes: u64,
    /// Per route, entries deleted before it had passed them.
    skipped: HashMap<String, u64>,
}

impl PassReport {
    fn add(&mut self, other: PassReport) {
        self.by_age += other.by_age;
        self.by_size += other.by_size;
        self.freed_pages += other.freed_pages;
        self.freed_bytes += other.freed_bytes;
        for (route, n) in other.skipped {
            *self.skipped.entry(route).or_default() += n;
        }
    }

    fn note(&mut self, d: &Deleted) {
        self.freed_pages += d.freed_pages;
        for (route, n) in &d.routes {
            *self.skipped.entry(route.clone()).or_default() += n;
        }
    }
}

impl Retention {
    pub fn new(
        policy: Policy,
        maintenance: Maintenance,
        read: SqlitePool,
        db_path: PathBuf,
        stats: Arc<RetentionStats>,
        commits: tokio::sync::watch::Receiver<i64>,
    ) -> Retention {
        Retention {
            policy,
            maintenance,
            read,
            db_path,
            stats,
            commits,
            wal_peak: std::sync::Mutex::new((0, Instant::now())),
        }
    }

    /// Runs a pass every `policy.interval`, and with a size limit a size
    /// check after commits, until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(
            retention = ?self.policy.max_age,
            max_db_size = ?self.policy.max_db_size,
            interval = ?self.policy.interval,
            "retention active"
        );
        let mut next_pass = tokio::time::Instant::now() + self.policy.interval;
        let mut follow_commits = self.policy.max_db_size.is_some();
        let mut summary = PassReport::default();
        let mut since = Instant::now();
        loop {
            let full = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next_pass) => true,
                changed = self.commits.changed(), if follow_commits => {
                    follow_commits = changed.is_ok();
                    false
                }
            };
            if full {
                next_pass = tokio::time::Instant::now() + self.policy.interval;
            }
            match self.pass(full, &shutdown).await {
                Ok(report) => summary.add(report),
                Err(RetentionError::WriterGone) => break,
                Err(e) => tracing::warn!(error = %e, "retention pass failed; retrying next pass"),
            }
            // Size checks after commits can run many times a second; what
            // they did is logged with the next full pass.
            if full {
                self.log(std::mem::take(&mut summary), since.elapsed());
                since = Instant::now();
            }
        }
        self.log(summary, since.elapsed());
    }

    fn log(&self, report: PassReport, took: Duration) {
        if report.by_age + report.by_size + report.freed_pages > 0 {
            let size = self.stats.db_bytes.load(Ordering::Relaxed);
            tracing::info!(
                deleted_by_age = report.by_age,
                deleted_by_size = report.by_size,
                bytes_freed = report.freed_bytes,
                db_bytes = size,
                over_ms = took.as_millis() as u64,
                "retention"
            );
        }
        for (route, skipped) in report.skipped {
            tracing::warn!(
                route = %route,
                skipped,
                "retention deleted entries this route had not forwarded yet; \
                 it continues at the oldest surviving entry"
            );
        }
    }

    /// A full pass (age and size), or only the size check after a commit.
    async fn pass(
        &self,
        full: bool,
        shutdown: &CancellationToken,
    ) -> Result<PassReport, RetentionError> {
        if !full {
            // Measuring is cheap but not free: a few statements per check.
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(PassReport::default()),
                _ = tokio::time::sleep(SIZE_CHECK_GAP) => {}
            }
        }
        let mut report = PassReport::default();
        if let Some(age) = self.policy.max_age.filter(|_| full) {
            report.by_age = self.delete_by_age(age, &mut report, shutdown).await?;
        }
        if let Some(limit) = self.policy.max_db_size {
            report.by_size = self.delete_by_size(limit, &mut report, shutdown).await?;
        }
        if report.by_age + report.by_size + report.freed_pages > 0 {
            self.maintenance.submit(Step::Checkpoint).await?;
        }
        let size = self.measure().await?;
        self.stats.db_bytes.store(size.on_disk(), Ordering::Relaxed);
        if full {
            self.stats.passes.fetch_add(1, Ordering::Relaxed);
        }
        report.freed_bytes = report.freed_pages * size.page_size;
        self.stats
            .bytes_freed
            .fetch_add(report.freed_bytes, Ordering::Relaxed);
        for skipped in report.skipped.values() {
            self.stats
                .route_skipped
                .fetch_add(*skipped, Ordering::Relaxed);
        }
        Ok(report)
    }

    async fn delete_by_age(
        &self,
        age: Duration,
        report: &mut PassReport,
        shutdown: &CancellationToken,
    ) -> Result<u64, RetentionError> {
        let age = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
        let cutoff_usec = crate::db::hosts::now_usec().saturating_sub(age);
        // A cheap look at the index first: most passes find nothing.
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(realtime_usec) FROM entries")
            .fetch_one(&self.read)
            .await?;
        if oldest.is_none_or(|t| t >= cutoff_usec) {
            return Ok(0);
        }
        let mut total = 0;
        while !shutdown.is_cancelled() {
            let d = self
                .maintenance
                .delete(Step::DeleteBefore {
                    cutoff_usec,
                    limit: CHUNK_ROWS,
                    vacuum: self.vacuum_step().await?,
                })
                .await?;
            total += d.rows;
            self.stats
                .deleted_by_age
                .fetch_add(d.rows, Ordering::Relaxed);
            report.note(&d);
            if d.rows < CHUNK_ROWS as u64 {
                break;
            }
            tokio::time::sleep(CHUNK_PAUSE).await;
        }
        Ok(total)
    }

    async fn delete_by_size(
        &self,
        limit: u64,
        report: &mut PassReport,
        shutdown: &CancellationToken,
    ) -> Result<u64, RetentionError> {
        let high = (limit as f64 * HIGH_WATER) as u64;
        let low = (limit as f64 * LOW_WATER) as u64;
        let wal_cap = limit / WAL_SHARE;
        // On disk, and what is left once free pages are given back.
        let on_disk = |s: &Size| s.main_file() + s.wal_peak.min(wal_cap);
        let counted = |s: &Size| s.main_used() + s.wal_peak.min(wal_cap);
        let mut size = self.measure().await?;
        if on_disk(&size) <= high {
            return Ok(0);
        }
        if size.wal > wal_cap {
            tracing::warn!(
                wal_bytes = size.wal,
                "the write-ahead log is larger than a quarter of --max-db-size; \
                 a long-running reader may be holding back checkpoints"
            );
        }
        let vacuum = self.vacuum_step().await?;
        // Every page a chunk touches passes through the log: chunks stay
        // within the log's budget so that retention does not grow it.
        let chunk_bytes = wal_budget(limit);
        let mut total = 0;
        while !shutdown.is_cancelled() && counted(&size) > low {
            let rows = self
                .rows_for(counted(&size) - low, &size)
                .await?
                .min(self.rows_for(chunk_bytes, &size).await?.max(64));
            if rows == 0 {
                break;
            }
            let d = self
                .maintenance
                .delete(Step::DeleteOldest {
                    limit: rows.min(CHUNK_ROWS),
                    vacuum,
                })
                .await?;
            total += d.rows;
            self.stats
                .deleted_by_size
                .fetch_add(d.rows, Ordering::Relaxed);
            report.note(&d);
            if d.rows == 0 {
                break;
            }
            // No pause here: over the limit, keeping up with ingest comes
            // first, and the writer alternates chunks with group commits.
            size = self.measure().await?;
        }
        // Pages freed by FTS5's segment merges are the cheapest space to
        // give back; deleting gave back its own already.
        if on_disk(&size) > high && size.freelist > 0 {
            report.freed_pages += self.vacuum(shutdown).await?;
        }
        Ok(total)
    }

    /// About how many of the oldest rows hold `excess` bytes: the bytes
    /// in use divided by the rows (ids are dense, the commit order).
    async fn rows_for(&self, excess: u64, size: &Size) -> Result<i64, RetentionError> {
        let span: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(id) - MIN(id) + 1, 0) FROM entries")
                .fetch_one(&self.read)
                .await?;
        if span <= 0 {
            return Ok(0);
        }
        let per_row = (size.main_used() / span as u64).max(1);
        Ok(i64::try_from(excess.div_ceil(per_row))
            .unwrap_or(i64::MAX)
            .max(1))
    }

    /// Pages one vacuum step gives back: bounded by the log's budget
    /// with a size limit.
    async fn vacuum_step(&self) -> Result<i64, RetentionError> {
        let page = self.measure().await?.page_size.max(512);
        let bytes = match self.policy.max_db_size {
            Some(limit) => wal_budget(limit).min(VACUUM_BYTES),
            None => VACUUM_BYTES,
        };
        Ok(i64::try_from(bytes / page).unwrap_or(i64::MAX).max(16))
    }

    async fn vacuum(&self, shutdown: &CancellationToken) -> Result<u64, RetentionError> {
        let step = self.vacuum_step().await?;
        let mut total = 0;
        while !shutdown.is_cancelled() {
            let pages = match self
                .maintenance
                .submit(Step::Vacuum { pages: step })
                .await?
            {
                Outcome::Vacuumed { pages } => pages,
                _ => 0,
            };
            total += pages;
            if pages < step as u64 {
                break;
            }
            tokio::time::sleep(CHUNK_PAUSE).await;
        }
        Ok(total)
    }

    async fn measure(&self) -> Result<Size, RetentionError> {
        let mut size = Size::read(&self.read).await?;
        let len = |p: &std::ffi::OsStr| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.db_path.clone().into_os_string();
        wal.push("-wal");
        let mut fts_wal = crate::db::fts::path(&self.db_path).into_os_string();
        fts_wal.push("-wal");
        size.wal = len(&wal) + len(&fts_wal);
        let mut peak = self
            .wal_peak
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if size.wal >= peak.0 || peak.1.elapsed() > WAL_PEAK_MEMORY {
            *peak = (size.wal, Instant::now());
        }
        size.wal_peak = peak.0;
        Ok(size)
    }
}
