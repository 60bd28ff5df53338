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

use sqlx::{Executor as _, SqliteConnection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Bytes of log after which the writer's commit checkpoints itself.
/// `--max-db-size` lowers it (see `retention`).
pub const WRITER_AUTOCHECKPOINT: i64 = 64 << 20;

/// Sets the writer's automatic checkpoint to [`WRITER_AUTOCHECKPOINT`]
/// bytes, in pages of this database's size (SQLite counts in pages, and
/// a database keeps the page size it was created with).
pub async fn bound_writer_log(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await?;
    let pages = WRITER_AUTOCHECKPOINT / page_size.max(512);
    conn.execute(format!("PRAGMA wal_autocheckpoint = {pages}").as_str())
        .await?;
    Ok(())
}

/// Runs a `PASSIVE` checkpoint after every commit announced on `commits`
/// (several commits that happen during one checkpoint are served by the
/// next), until `shutdown`. Closing the last connection checkpoints what
/// is left.
pub async fn run(
    mut conn: SqliteConnection,
    mut commits: watch::Receiver<i64>,
    shutdown: CancellationToken,
) {
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
        // (busy, frames in the log, frames copied); busy means another
        // checkpoint (the writer's own) holds the lock: nothing to do.
        let done = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await;
        match done {
            Ok((busy, log, copied)) => tracing::trace!(busy, log, copied, "checkpoint"),
            // A failed checkpoint loses nothing (the log keeps the pages);
            // the writer's own checkpoint still bounds the log.
            Err(e) => {
                tracing::warn!(error = %e, "background checkpoint failed; will retry after the next commit")
            }
        }
    }
}
