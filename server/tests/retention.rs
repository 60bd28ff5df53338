//! Retention against a real server and a real SQLite file: deleting by
//! age and by size while an agent keeps shipping, with queries, full-text
//! search and host counts checked on what survives, and across a restart.

mod common;

use common::*;
use jr_proto::v1::{Entry, HostsRequest};
use jr_server::ServerConfig;
use sqlx::SqlitePool;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const DAY_USEC: u64 = 86_400_000_000;
/// Polls of a condition, `POLL` apart, before a test gives up.
const TRIES: usize = 400;
const POLL: Duration = Duration::from_millis(50);

/// Waits until the next retention pass of `server` has completed.
async fn next_pass(server: &TestServer) {
    let seen = server.retention.passes.load(Ordering::Relaxed);
    poll("a retention pass", || async {
        server.retention.passes.load(Ordering::Relaxed) > seen
    })
    .await;
}

async fn poll<F, Fut>(what: &str, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..TRIES {
        if ok().await {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("gave up waiting for {what}");
}

fn now_usec() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Entry `seqnum` of the test journal, stamped `realtime`.
fn entry_at(seqnum: u64, realtime: u64, unit: &str, message: &str) -> Entry {
    entry_with(
        seqnum,
        realtime,
        vec![
            field("_SYSTEMD_UNIT", unit.as_bytes()),
            field("PRIORITY", b"6"),
            field("SYSLOG_IDENTIFIER", b"test"),
            field("MESSAGE", message.as_bytes()),
        ],
    )
}

/// Main file, write-ahead log and the full-text index's files, as on disk.
fn on_disk(db: &Path) -> u64 {
    jr_server::metrics::scrape::database_bytes(db)
}

async fn scalar(pool: &SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `hosts.entries` (what `jrctl hosts` shows) and the per-unit counts
/// agree with the rows that are left.
async fn assert_counts_agree(server: &TestServer, pool: &SqlitePool) {
    let rows = scalar(pool, "SELECT COUNT(*) FROM entries").await;
    let hosts = server
        .query()
        .await
        .hosts(HostsRequest::default())
        .await
        .expect("hosts")
        .into_inner()
        .hosts;
    let listed: u64 = hosts.iter().map(|h| h.entries).sum();
    assert_eq!(listed, rows as u64, "hosts' entry counts follow deletes");
    let per_unit = scalar(pool, "SELECT COALESCE(SUM(entries), 0) FROM host_units").await;
    let with_unit = scalar(
        pool,
        "SELECT COUNT(*) FROM entries WHERE unit_id IS NOT NULL",
    )
    .await;
    assert_eq!(per_unit, with_unit, "unit counts follow deletes");
}

fn retention_config(db: &Path) -> ServerConfig {
    ServerConfig {
        retention_interval: Duration::from_millis(100),
        ..config(db)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_entries_are_deleted_while_ingest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let server = TestServer::start(ServerConfig {
        retention: Some(Duration::from_secs(30 * 86_400)),
        ..retention_config(&db)
    })
    .await;
    let mut agent = Agent::connect(server.addr).await;
    agent.hello(&machine(1)).await;

    // Every batch mixes entries from 40 days ago with current ones, the
    // last of each batch current, until retention has deleted while
    // batches kept coming, and a few batches past that.
    let old_stamp = now_usec() - 40 * DAY_USEC;
    let (mut prev, mut seq, mut old, mut new) = (String::new(), 0u64, 0u64, 0u64);
    let mut batches_after_first_delete = 0;
    for batch in 1..=400u64 {
        let mut entries = Vec::new();
        for i in 0..200u64 {
            seq += 1;
            let (stamp, word) = if i % 2 == 0 {
                old += 1;
                (old_stamp + seq, "stalemark")
            } else {
                new += 1;
                (now_usec(), "freshmark")
            };
            let message = format!("{word} entry{seq} of batch {batch}");
            entries.push(entry_at(seq, stamp, "svc.service", &message));
        }
        let sent = entries.len() as u64;
        prev = agent.batch(batch, &prev, entries).await;
        assert_eq!(agent.ack().await.stored, sent, "every batch is stored");
        if server.retention.deleted_by_age.load(Ordering::Relaxed) > 0 {
            batches_after_first_delete += 1;
            if batches_after_first_delete == 5 {
                break;
            }
        }
    }
    assert_eq!(
        batches_after_first_delete, 5,
        "retention deleted while ingest ran"
    );

    let pool = read_pool(&db).await;
    poll("every old entry deleted", || async {
        server.retention.deleted_by_age.load(Ordering::Relaxed) == old
    })
    .await;
    let cutoff = (now_usec() - 30 * DAY_USEC) as i64;
    let left_old: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM entries WHERE realtime_usec < ?")
        .bind(cutoff)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left_old, 0, "nothing older than --retention is left");
    assert_eq!(
        count(&pool).await as u64,
        new,
        "every current entry is kept"
    );
    assert_counts_agree(&server, &pool).await;

    // Full-text search finds what is left and nothing that was deleted.
    assert_eq!(server.search("freshmark").await as u64, new);
    assert_eq!(server.search("stalemark").await, 0);
    assert_eq!(server.search(&format!("entry{seq}")).await, 1);
    assert_eq!(server.search("entry1").await, 0, "entry 1 was old");
    // A block's row stays while any of its entries does (a fresh entry
    // can share a block with old ones), and goes with the last.
    let fts_old: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM fts.entries_fts f WHERE entries_fts MATCH 'stalemark' \
         AND NOT EXISTS (SELECT 1 FROM entries WHERE id {})",
        jr_server::db::fts::in_block_sql("f.rowid")
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        fts_old, 0,
        "the index holds no block whose entries are all gone"
    );
    server.stop().await;
}

/// Words for messages, so that the full-text index has real work.
const WORDS: [&str; 16] = [
    "kernel",
    "eth0",
    "link",
    "up",
    "timeout",
    "connection",
    "refused",
    "disk",
    "sda",
    "mounted",
    "session",
    "opened",
    "user",
    "root",
    "cron",
    "started",
];

/// An agent that ships ~800-byte messages as fast as they are acked.
struct Shipper {
    agent: Agent,
    prev: String,
    seq: u64,
    batch: u64,
    /// Longest wait for one ack.
    slowest_ack: Duration,
}

impl Shipper {
    async fn connect(addr: SocketAddr) -> Shipper {
        let mut agent = Agent::connect(addr).await;
        let welcome = agent.hello(&machine(2)).await;
        let seq = if welcome.cursor.is_empty() {
            0
        } else {
            welcome
                .cursor
                .split(';')
                .find_map(|p| p.strip_prefix("i="))
                .map(|i| u64::from_str_radix(i, 16).expect("seqnum"))
                .expect("cursor has a seqnum")
        };
        Shipper {
            agent,
            prev: welcome.cursor,
            seq,
            batch: 0,
            slowest_ack: Duration::ZERO,
        }
    }

    fn message(seq: u64) -> String {
        let mut m = format!("u{seq}x");
        let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        while m.len() < 800 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.push(' ');
            m.push_str(WORDS[(x % 16) as usize]);
            m.push_str(&(x % 1000).to_string());
        }
        m
    }

    /// Ships one batch of 100 entries and waits for its ack.
    async fn ship(&mut self) {
        let entries: Vec<Entry> = (0..100)
            .map(|_| {
                self.seq += 1;
                let unit = format!("unit-{}.service", self.seq % 7);
                entry_at(self.seq, now_usec(), &unit, &Self::message(self.seq))
            })
            .collect();
        self.batch += 1;
        let started = Instant::now();
        self.prev = self.agent.batch(self.batch, &self.prev, entries).await;
        let ack = self.agent.ack().await;
        self.slowest_ack = self.slowest_ack.max(started.elapsed());
        assert_eq!(ack.stored, 100, "every batch is stored");
    }
}

/// Ships at full speed until retention has deleted by size (the
/// database reached the limit), then `batches` more batches, one every
/// `pace` (about 1 MiB/s stored with 100 entries every 100 ms), sampling
/// the database's size on disk after each ack; returns the largest sample.
async fn ship_and_sample(
    server: &TestServer,
    shipper: &mut Shipper,
    db: &Path,
    batches: usize,
    pace: Duration,
) -> u64 {
    let deleted = server.retention.deleted_by_size.load(Ordering::Relaxed);
    for _ in 0..2000 {
        if server.retention.deleted_by_size.load(Ordering::Relaxed) > deleted {
            break;
        }
        shipper.ship().await;
    }
    assert!(
        server.retention.deleted_by_size.load(Ordering::Relaxed) > deleted,
        "retention deleted by size"
    );
    // Sizes count once retention has caught up with the burst.
    next_pass(server).await;
    let mut largest = 0;
    let mut tick = tokio::time::interval(pace);
    for _ in 0..batches {
        tick.tick().await;
        shipper.ship().await;
        let size = on_disk(db);
        if size > largest {
            let len = |suffix: &str| {
                let mut p = db.as_os_str().to_owned();
                p.push(suffix);
                std::fs::metadata(Path::new(&p)).map_or(0, |m| m.len())
            };
            println!(
                "largest so far: {size} bytes: main file {}, log {}, index {}, index log {}",
                len(""),
                len("-wal"),
                len("-fts"),
                len("-fts-wal")
            );
            largest = size;
        }
    }
    largest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limit_holds_while_ingest_runs_and_after_restart() {
    const LIMIT: u64 = 8 << 20;
    // Within a few percent of the limit at every sample, each taken right
    // after a commit, when the log is at its largest.
    const ALLOWED: u64 = LIMIT + LIMIT / 20;
    const PACE: Duration = Duration::from_millis(50);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let config = ServerConfig {
        max_db_size: Some(LIMIT),
        // Group commits of about 250 KiB: the log holds a few of them,
        // a small part of the limit.
        commit_entries: 128,
        ..retention_config(&db)
    };
    let server = TestServer::start(config.clone()).await;
    let mut shipper = Shipper::connect(server.addr).await;
    let started = Instant::now();
    let largest = ship_and_sample(&server, &mut shipper, &db, 100, PACE).await;
    let took = started.elapsed();
    let deleted = server.retention.deleted_by_size.load(Ordering::Relaxed);
    println!(
        "shipped {} entries in {took:?}; deleted {deleted}; largest size on disk {largest} \
         ({:.1}% of the limit); slowest ack {:?}; freed {} bytes",
        shipper.seq,
        largest as f64 * 100.0 / LIMIT as f64,
        shipper.slowest_ack,
        server.retention.bytes_freed.load(Ordering::Relaxed),
    );
    assert!(deleted > 0, "retention deleted by size");
    assert!(largest <= ALLOWED, "{largest} bytes on disk, limit {LIMIT}");
    assert!(
        server.retention.bytes_freed.load(Ordering::Relaxed) > 0,
        "the incremental vacuum gave pages back"
    );

    next_pass(&server).await;
    next_pass(&server).await;
    let after = on_disk(&db);
    assert!(after <= LIMIT, "{after} bytes after a pass, limit {LIMIT}");
    assert!(
        after >= LIMIT / 2,
        "{after} bytes: retention deleted far too much"
    );

    let pool = read_pool(&db).await;
    let kept = count(&pool).await as u64;
    assert!(kept > 0 && kept < shipper.seq);
    assert_counts_agree(&server, &pool).await;
    // The newest entries are found, the deleted oldest ones are not.
    assert_eq!(server.search(&format!("u{}x", shipper.seq)).await, 1);
    assert_eq!(server.search("u1x").await, 0);
    let oldest: i64 = scalar(&pool, "SELECT MIN(id) FROM entries").await;
    // Blocks wholly below the oldest entry left.
    let fts_below: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM fts.entries_fts WHERE rowid < ?")
        .bind(oldest >> jr_server::db::fts::BLOCK_BITS)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fts_below, 0, "the index holds no deleted rows");
    pool.close().await;
    drop(shipper);
    server.stop().await;

    // After a restart the limit still holds and the agent goes on where
    // it was.
    let server = TestServer::start(config).await;
    let mut shipper = Shipper::connect(server.addr).await;
    let before = shipper.seq;
    assert!(before > 0, "the server remembers the cursor");
    let largest = ship_and_sample(&server, &mut shipper, &db, 50, PACE).await;
    println!(
        "after restart: largest size on disk {largest} ({:.1}% of the limit)",
        largest as f64 * 100.0 / LIMIT as f64
    );
    assert!(largest <= ALLOWED, "{largest} bytes on disk, limit {LIMIT}");
    assert_eq!(server.search(&format!("u{}x", shipper.seq)).await, 1);
    server.stop().await;
}

#[tokio::test]
async fn database_without_incremental_vacuum_is_converted_for_a_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    {
        // A database made the way journal-router made them before: the
        // first table exists before anything asks for auto-vacuum.
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&db)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        sqlx::query("CREATE TABLE early (x)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let mode = |db: PathBuf| async move {
        let pool = read_pool(&db).await;
        let mode = scalar(&pool, "PRAGMA auto_vacuum").await;
        pool.close().await;
        mode
    };
    // Without a size limit the database is left as it is.
    let server = TestServer::start(retention_config(&db)).await;
    server.stop().await;
    assert_eq!(mode(db.clone()).await, 0);
    let server = TestServer::start(ServerConfig {
        max_db_size: Some(64 << 20),
        ..retention_config(&db)
    })
    .await;
    next_pass(&server).await;
    server.stop().await;
    assert_eq!(mode(db.clone()).await, 2, "INCREMENTAL after conversion");
}

#[tokio::test]
async fn a_new_database_uses_incremental_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let server = TestServer::start(config(&db)).await;
    let pool = read_pool(&db).await;
    assert_eq!(scalar(&pool, "PRAGMA auto_vacuum").await, 2);
    pool.close().await;
    server.stop().await;
}
