//! Copying the write-ahead log into the database file beside the writer.
//!
//! SQLite's automatic checkpoint runs in the connection that commits, after
//! the commit: with group commits of several MiB of log, nearly every
//! commit copied the log into the main file and waited for its two fsyncs
//! before the writer could take the next group (in `jr-bench ingest` about
//! a third of each group's time, with the CPU idle). This task does that
//! copy on a connection of its own after each commit, while the writer
//! goes on: a `PASSIVE` checkpoint never takes the write lock.
//!
//! The log only starts over from its beginning when a checkpoint has
//! copied all of it before the writer's next transaction begins, which
//! under steady load a checkpoint running beside the writer rarely
//! manages. So the writer keeps SQLite's automatic checkpoint as the bound
//! on the log's size, with a higher threshold ([`WRITER_AUTOCHECKPOINT`]):
//! when the log passes it, the writer's own checkpoint copies the little
//! this task has not yet copied, finishes, and the log starts over.
//!
//! Neither kind of checkpoint waits for readers, and the log only starts
//! over when no reader still reads an older snapshot from it. Readers
//! (the indexer, live tails, routes, retention) start right after each
//! commit, so under steady ingest one of them is nearly always reading,
//! and the log could grow without end (a 5 MiB log beside an 8 MiB
//! `--max-db-size` was seen). When the log passes [`log_bound`], this task
//! therefore checkpoints with `TRUNCATE`: it waits a moment for the
//! readers of the moment to finish, holding back new writes meanwhile,
//! and empties the file. A reader that holds on longer makes it give up;
//! it tries again when the log has doubled or after a few seconds, so one
//! long query cannot stall the writer at every commit.

use sqlx::{Executor as _, SqliteConnection};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Bytes of log after which the writer's commit checkpoints itself.
/// `--max-db-size` lowers it (see `retention`).
pub const WRITER_AUTOCHECKPOINT: i64 = 64 << 20;

/// Sets the writer's automatic checkpoint to [`WRITER_AUTOCHECKPOINT`]
/// bytes, in pages of this database's size (SQLite counts in pages, and
/// a database keeps the page size it was created with).
pub async fn bound_writer_log(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let pages = WRITER_AUTOCHECKPOINT / crate::db::open::page_size(conn).await?;
    conn.execute(format!("PRAGMA wal_autocheckpoint = {pages}").as_str())
        .await?;
    Ok(())
}

/// How long a `TRUNCATE` checkpoint waits for readers (and new writes
/// wait for it) before it gives up.
const TRUNCATE_WAIT: Duration = Duration::from_millis(500);
/// After giving up, how long until the next `TRUNCATE` (unless the log
/// doubles first): a long query then holds back at most a tenth of the
/// writer's time.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The size of log past which the checkpoint task waits for readers and
/// empties it: the writer's own threshold, or with `--max-db-size` an
/// eighth of it (retention counts the log in the database's size), at
/// least 1 MiB and never more than without a limit.
pub fn log_bound(max_db_size: Option<u64>) -> u64 {
    let unlimited = WRITER_AUTOCHECKPOINT as u64;
    match max_db_size {
        Some(limit) => (limit / 8).clamp(1 << 20, unlimited),
        None => unlimited,
    }
}

/// Runs a `PASSIVE` checkpoint after every commit announced on `commits`
/// (several commits that happen during one checkpoint are served by the
/// next), and a `TRUNCATE` one when the log passes `bound` bytes, until
/// `shutdown`. Closing the last connection checkpoints what is left.
pub async fn run(
    mut conn: SqliteConnection,
    mut commits: watch::Receiver<i64>,
    bound: u64,
    shutdown: CancellationToken,
) {
    // Set up at the first commit, and again at the next one if that
    // failed (a lock at start-up): the task never stops checkpointing
    // over a passing error.
    let mut page_size: Option<u64> = None;
    let mut gave_up: Option<GaveUp> = None;
    loop {
        tokio::select! {
            changed = commits.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = shutdown.cancelled() => break,
        }
        commits.borrow_and_update();
        let page_size = match page_size {
            Some(p) => p,
            None => match prepare(&mut conn).await {
                Ok(p) => *page_size.insert(p),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set up the checkpoint connection; will retry after the next commit");
                    continue;
                }
            },
        };
        // (busy, frames in the log, frames copied); busy means another
        // checkpoint (the writer's own) holds the lock: nothing to do.
        let done = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await;
        let log_bytes = match done {
            Ok((busy, log, copied)) => {
                tracing::trace!(busy, log, copied, "checkpoint");
                u64::try_from(log).unwrap_or(0) * page_size
            }
            // A failed checkpoint loses nothing (the log keeps the pages);
            // the writer's own checkpoint still bounds the log.
            Err(e) => {
                tracing::warn!(error = %e, "background checkpoint failed; will retry after the next commit");
                continue;
            }
        };
        if log_bytes <= bound || gave_up.is_some_and(|g| g.holds(log_bytes)) {
            continue;
        }
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut conn)
            .await
        {
            Ok((0, _, _)) => {
                tracing::debug!(log_bytes, "log emptied");
                gave_up = None;
            }
            Ok(_) => {
                tracing::debug!(log_bytes, "a reader holds the log; trying again later");
                gave_up = Some(GaveUp::now(log_bytes));
            }
            Err(e) => {
                tracing::warn!(error = %e, "emptying the write-ahead log failed; will try again later");
                gave_up = Some(GaveUp::now(log_bytes));
            }
        }
    }
}

/// A `TRUNCATE` checkpoint that gave up: the next waits until the log has
/// doubled or [`RETRY_AFTER`] has passed.
#[derive(Debug, Clone, Copy)]
struct GaveUp {
    log_bytes: u64,
    at: Instant,
}

impl GaveUp {
    fn now(log_bytes: u64) -> GaveUp {
        GaveUp {
            log_bytes,
            at: Instant::now(),
        }
    }

    fn holds(&self, log_bytes: u64) -> bool {
        log_bytes < self.log_bytes.saturating_mul(2) && self.at.elapsed() < RETRY_AFTER
    }
}

/// Shortens the connection's wait for locks to [`TRUNCATE_WAIT`] and
/// returns the database's page size.
async fn prepare(conn: &mut SqliteConnection) -> Result<u64, sqlx::Error> {
    conn.execute(format!("PRAGMA busy_timeout = {}", TRUNCATE_WAIT.as_millis()).as_str())
        .await?;
    Ok(crate::db::open::page_size(conn).await?.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;
    use crate::db::open::options;
    use sqlx::{ConnectOptions as _, Connection as _};
    use std::path::Path;

    async fn connect(db: &Path) -> SqliteConnection {
        options(db, Synchronous::Normal).connect().await.unwrap()
    }

    fn log_len(db: &Path) -> u64 {
        let mut p = db.as_os_str().to_owned();
        p.push("-wal");
        std::fs::metadata(Path::new(&p)).map_or(0, |m| m.len())
    }

    /// A database with one table, a writer whose own checkpoints are off
    /// (only the task under test checkpoints) and the task running.
    struct Fixture {
        _dir: tempfile::TempDir,
        db: std::path::PathBuf,
        writer: SqliteConnection,
        commits: watch::Sender<i64>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Fixture {
        async fn start(bound: u64) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("t.db");
            let mut writer = connect(&db).await;
            writer
                .execute("PRAGMA wal_autocheckpoint = 0")
                .await
                .unwrap();
            writer.execute("CREATE TABLE t (x BLOB)").await.unwrap();
            let (commits, rx) = watch::channel(0);
            let stop = CancellationToken::new();
            let task = tokio::spawn(run(connect(&db).await, rx, bound, stop.clone()));
            Fixture {
                _dir: dir,
                db,
                writer,
                commits,
                stop,
                task,
            }
        }
    }

    /// Two readers that each read for a few milliseconds after every
    /// commit, as the indexer, tails and routes do: the writer's next
    /// commit nearly always begins while one of them still reads, so the
    /// log does not start over by itself.
    async fn reading_after_commits(
        db: &Path,
        commits: &watch::Sender<i64>,
        stop: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut readers = Vec::new();
        for hold in [8u64, 12] {
            let mut conn = connect(db).await;
            let mut commits = commits.subscribe();
            let stop = stop.clone();
            readers.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = commits.changed() => {}
                        () = stop.cancelled() => break,
                    }
                    let mut tx = conn.begin().await.unwrap();
                    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
                        .fetch_one(&mut *tx)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                    tx.commit().await.unwrap();
                }
            }));
        }
        readers
    }

    /// Commits `n` rows of 16 KiB, announcing each on `commits`; returns
    /// the log file's largest size seen after a commit.
    async fn write(
        db: &Path,
        conn: &mut SqliteConnection,
        commits: &watch::Sender<i64>,
        n: i64,
    ) -> u64 {
        let mut largest = 0;
        for i in 0..n {
            sqlx::query("INSERT INTO t (x) VALUES (zeroblob(16384))")
                .execute(&mut *conn)
                .await
                .unwrap();
            commits.send_replace(i);
            tokio::time::sleep(Duration::from_millis(5)).await;
            largest = largest.max(log_len(db));
        }
        largest
    }

    #[test]
    fn a_size_limit_lowers_the_bound_and_never_raises_it() {
        assert_eq!(log_bound(None), 64 << 20);
        assert_eq!(log_bound(Some(8 << 20)), 1 << 20);
        assert_eq!(log_bound(Some(100 << 20)), (100 << 20) / 8);
        assert_eq!(log_bound(Some(1 << 40)), 64 << 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_emptied_though_readers_follow_every_commit() {
        const BOUND: u64 = 512 << 10;
        let mut fx = Fixture::start(BOUND).await;
        let readers = reading_after_commits(&fx.db, &fx.commits, fx.stop.clone()).await;

        let largest = write(&fx.db, &mut fx.writer, &fx.commits, 300).await;
        fx.stop.cancel();
        fx.task.await.unwrap();
        for r in readers {
            r.await.unwrap();
        }
        // Without the TRUNCATE the log grows past 10 MiB. The checkpoint
        // runs a little behind the commits, so the log passes the bound
        // by what the writer commits meanwhile.
        assert!(
            largest <= 6 * BOUND,
            "log grew to {largest} bytes, bound {BOUND}"
        );
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut fx.writer)
            .await
            .unwrap();
        assert_eq!(rows, 300);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_that_holds_on_does_not_stall_every_commit() {
        let mut fx = Fixture::start(64 << 10).await;
        // A long query: a read transaction open over every commit below.
        let mut reader = connect(&fx.db).await;
        sqlx::query("INSERT INTO t (x) VALUES (zeroblob(16384))")
            .execute(&mut fx.writer)
            .await
            .unwrap();
        let mut held = reader.begin().await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *held)
            .await
            .unwrap();

        let started = std::time::Instant::now();
        write(&fx.db, &mut fx.writer, &fx.commits, 100).await;
        let took = started.elapsed();
        // Giving up at 64 KiB, then at 128, 256, … 1.6 MiB: about 6 waits
        // of TRUNCATE_WAIT, not one per commit (100).
        assert!(
            took < TRUNCATE_WAIT * 20,
            "100 commits took {took:?} beside a long reader"
        );
        assert!(log_len(&fx.db) > 1 << 20, "the held reader kept the log");
        held.commit().await.unwrap();
        // Once the reader let go, the log is emptied at the first commit
        // after RETRY_AFTER.
        tokio::time::sleep(RETRY_AFTER).await;
        write(&fx.db, &mut fx.writer, &fx.commits, 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        fx.stop.cancel();
        fx.task.await.unwrap();
        assert!(
            log_len(&fx.db) < 1 << 20,
            "log {} bytes after the reader let go",
            log_len(&fx.db)
        );
    }
}
