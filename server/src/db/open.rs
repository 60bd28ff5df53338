//! Opening the SQLite database: the single write connection (owned by the
//! writer task), the checkpoint and full-text index connections, the read
//! pool (for everything else, with the index attached) and the migrations
//! applied at start-up.

use crate::config::Synchronous;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// How long a connection waits on a lock before failing. Only checkpoints
/// and the writer take write locks, so waits are short.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers for the query service and statistics.
const READ_POOL_SIZE: u32 = 4;
/// Prepared statements kept per connection: the writer uses a handful of
/// insert shapes, the query service more.
const STATEMENT_CACHE: usize = 256;
/// Page size of a database (and index file) created by this server; an
/// existing one keeps the size it was created with. Rows are about a KiB,
/// so a 4 KiB page held three or four and the table split a page every few
/// inserts. With 16 KiB pages `jr-bench ingest` measured 7% less server CPU
/// and 6% fewer bytes per entry; 64 KiB pages did worse than 16 again (each
/// index page touched by a commit is written whole to the log).
pub const PAGE_SIZE: u32 = 16 << 10;

#[derive(Debug, Error)]
pub enum OpenError {
    #[error("cannot open database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot migrate database {path}: {source}")]
    Migrate {
        path: String,
        source: sqlx::migrate::MigrateError,
    },
}

/// The database as the server uses it.
pub struct Database {
    /// The only connection that writes; moved into the writer task.
    pub write: SqliteConnection,
    /// Read-only connections for everything that is not the writer.
    pub read: SqlitePool,
    /// The connection that copies the write-ahead log into the main file
    /// beside the writer (see `checkpoint`).
    pub checkpoint: SqliteConnection,
    /// The full-text index's connection (see `fts`).
    pub fts: SqliteConnection,
}

/// How every connection to the database (or its index file) is opened.
pub(crate) fn options(path: &Path, synchronous: Synchronous) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .page_size(PAGE_SIZE)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match synchronous {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        })
        .busy_timeout(BUSY_TIMEOUT)
        // Integrity of references is the writer's job; checking them on
        // every insert costs ingest speed for nothing.
        .foreign_keys(false)
        .statement_cache_capacity(STATEMENT_CACHE)
        // 16 MiB of page cache per connection: ingest appends at the right
        // edge of each index, so its hot pages are few; a larger cache
        // only grew the server's memory (64 MiB measured no faster).
        .pragma("cache_size", "-16384")
        .pragma("temp_store", "memory")
        // Ingest runs thousands of statements a second; logging each costs
        // more than it tells.
        .disable_statement_logging()
}

/// The page size of the database `conn` has open (at least 512, SQLite's
/// smallest): a database keeps the page size it was created with, so
/// sizes given in bytes are turned into pages with this.
pub(crate) async fn page_size(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    let size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(conn)
        .await?;
    Ok(size.max(512))
}

/// Opens (creating if needed) and migrates the database at `path`.
pub async fn open(path: &Path, synchronous: Synchronous) -> Result<Database, OpenError> {
    let shown = path.display().to_string();
    let open_err = |source| OpenError::Open {
        path: shown.clone(),
        source,
    };
    // Set before the migrations create the first table, so that a new
    // database can give deleted pages back (`retention`); on an existing
    // database created without it this changes nothing.
    let mut write = options(path, synchronous)
        .auto_vacuum(SqliteAutoVacuum::Incremental)
        .connect()
        .await
        .map_err(open_err)?;
    crate::db::checkpoint::bound_writer_log(&mut write)
        .await
        .map_err(open_err)?;
    sqlx::migrate!("../migrations")
        .run(&mut write)
        .await
        .map_err(|source| OpenError::Migrate {
            path: shown.clone(),
            source,
        })?;
    // Before the readers, which attach it.
    let fts = crate::db::fts::open(path, synchronous)
        .await
        .map_err(open_err)?;
    let read = read_pool(path, synchronous, READ_POOL_SIZE)
        .await
        .map_err(open_err)?;
    let checkpoint = options(path, synchronous)
        .connect()
        .await
        .map_err(open_err)?;
    Ok(Database {
        write,
        read,
        checkpoint,
        fts,
    })
}

/// `connections` read-only connections to the database at `path`, each
/// with the full-text index attached as `fts`: the server's read pool, and
/// the same view for tools and tests.
pub async fn read_pool(
    path: &Path,
    synchronous: Synchronous,
    connections: u32,
) -> Result<SqlitePool, sqlx::Error> {
    let db = path.to_owned();
    SqlitePoolOptions::new()
        .max_connections(connections)
        .after_connect(move |conn, _| {
            let db = db.clone();
            Box::pin(async move { crate::db::fts::attach(conn, &db).await })
        })
        .connect_with(options(path, synchronous).read_only(true))
        .await
}
