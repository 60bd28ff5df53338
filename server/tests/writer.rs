//! The writer task on a real SQLite file, driven without gRPC: fencing by
//! generation, recovery from a failed commit, and the full-text index
//! filled beside it.

mod common;

use common::*;
use jr_proto::v1::{Batch, Entry};
use jr_server::config::Synchronous;
use jr_server::db::hosts::HostHello;
use jr_server::db::open::open;
use jr_server::db::writer::{Bounds, Request, Response, Writer, WriterHandle};
use jr_server::error::Error;
use jr_server::sessions::Sessions;
use sqlx::{ConnectOptions as _, Executor as _, SqlitePool};
use std::sync::Arc;
use std::time::Duration;

const BOUNDS: Bounds = Bounds {
    commit_entries: 8192,
    commit_latency: Duration::from_millis(50),
};

async fn hello(w: &WriterHandle, machine_id: &str) -> String {
    let hello = HostHello {
        machine_id: machine_id.into(),
        hostname: "h".into(),
        boot_id: String::new(),
        agent_version: "test".into(),
    };
    let rx = w
        .submit(|reply| Request::Hello { hello, reply })
        .await
        .unwrap();
    match rx.await.unwrap().unwrap() {
        Response::Position(p) => p.cursor,
        other => panic!("expected a position, got {other:?}"),
    }
}

async fn commit(
    w: &WriterHandle,
    machine_id: &str,
    generation: u64,
    prev: &str,
    entries: Vec<Entry>,
) -> Result<Response, Error> {
    let batch = Batch {
        seq: 1,
        prev_cursor: prev.into(),
        last_cursor: entries.last().map(|e| e.cursor.clone()).unwrap_or_default(),
        entries,
        gap_entries: 0,
        head: None,
        packed_entries: Vec::new(),
    };
    let machine_id: Arc<str> = Arc::from(machine_id);
    let rx = w
        .submit(|reply| Request::Commit {
            machine_id,
            generation,
            batch,
            reply,
        })
        .await
        .unwrap();
    tokio::time::timeout(WAIT, rx).await.unwrap().unwrap()
}

/// A writer task on the write connection of `write`, with fresh sessions.
struct Running {
    handle: WriterHandle,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<jr_server::db::writer::Stats>,
    sessions: Arc<Sessions>,
}

async fn run_writer(write: sqlx::SqliteConnection, bounds: Bounds) -> Running {
    let sessions = Arc::new(Sessions::default());
    let (writer, handle, stats) = Writer::new(write, sessions.clone(), bounds).await.unwrap();
    Running {
        handle,
        task: tokio::spawn(writer.run()),
        stats,
        sessions,
    }
}

/// The full-text indexer on `fts`, following `commits` until [`Indexing::stop`].
struct Indexing {
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start_indexer(
    fts: sqlx::SqliteConnection,
    commits: tokio::sync::watch::Receiver<i64>,
) -> Indexing {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let indexer = jr_server::db::fts::Indexer::new(fts).await.unwrap();
    let task = tokio::spawn(indexer.run(commits, shutdown.clone()));
    Indexing { shutdown, task }
}

impl Indexing {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

#[tokio::test]
async fn a_fenced_generation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let db = open(&path, Synchronous::Normal).await.unwrap();
    let Running {
        handle,
        task,
        sessions,
        ..
    } = run_writer(db.write, BOUNDS).await;
    let m = machine(1);
    let old = sessions.claim(&m);
    hello(&handle, &m).await;
    let new = sessions.claim(&m);
    let r = commit(&handle, &m, old.generation, "", entries(1..3)).await;
    assert!(matches!(r, Err(Error::Superseded { .. })), "{r:?}");
    let r = commit(&handle, &m, new.generation, "", entries(1..3)).await;
    assert!(
        matches!(r, Ok(Response::Ack(ref a)) if a.stored == 2),
        "{r:?}"
    );
    drop(handle);
    task.await.unwrap();
    assert_eq!(count(&read_pool(&path).await).await, 2);
}

#[tokio::test]
async fn a_failed_commit_stores_nothing_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let mut db = open(&path, Synchronous::Normal).await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut db.write)
        .await
        .unwrap();
    // Room for a few small batches, not for a big one: the big one fails
    // the way a full disk does (SQLITE_FULL).
    db.write
        .execute(format!("PRAGMA max_page_count = {}", pages + 40).as_str())
        .await
        .unwrap();
    let Running {
        handle,
        task,
        stats,
        sessions,
    } = run_writer(db.write, BOUNDS).await;
    let indexing = start_indexer(db.fts, stats.committed.subscribe()).await;
    let m = machine(2);
    let claim = sessions.claim(&m);
    hello(&handle, &m).await;

    // The failing batch brings a unit name no other batch had before.
    let mut big = entries(1..400);
    for e in &mut big {
        e.fields.insert(0, field("_SYSTEMD_UNIT", b"fresh.service"));
        e.fields.push(field("PAYLOAD", &[b'p'; 4000]));
    }
    let r = commit(&handle, &m, claim.generation, "", big).await;
    assert!(matches!(r, Err(Error::Storage)), "{r:?}");

    // The same unit again, in a batch that fits: the interned id of the
    // rolled-back insert must not be reused.
    let mut small = entries(1..3);
    small[0]
        .fields
        .insert(0, field("_SYSTEMD_UNIT", b"fresh.service"));
    let r = commit(&handle, &m, claim.generation, "", small.clone()).await;
    assert!(
        matches!(r, Ok(Response::Ack(ref a)) if a.stored == 2),
        "{r:?}"
    );
    assert_eq!(
        stats
            .failed_commits
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    drop(handle);
    task.await.unwrap();

    let pool = read_pool(&path).await;
    assert_eq!(count(&pool).await, 2);
    // The rolled-back group left nothing in the full-text index either.
    assert_eq!(wait_indexed(&pool, 2).await, 2);
    assert_eq!(matching(&pool, "message").await, vec![0]);
    assert_eq!(matching(&pool, "1").await, vec![0]);
    assert_eq!(matching(&pool, "399").await, Vec::<i64>::new());
    indexing.stop().await;
    let unit: Option<String> = sqlx::query_scalar("SELECT unit FROM journal ORDER BY id LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(unit.as_deref(), Some("fresh.service"));
    let cursor: String = sqlx::query_scalar("SELECT cursor FROM hosts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(cursor, small[1].cursor);
}

/// The index's blocks (rowid: entry id >> BLOCK_BITS) whose terms include
/// every one of `words`.
async fn matching(pool: &SqlitePool, words: &str) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT rowid FROM fts.entries_fts WHERE entries_fts MATCH ?1 ORDER BY rowid",
    )
    .bind(words)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn every_block_of_messages_is_indexed_and_its_row_goes_with_its_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let db = open(&path, Synchronous::Normal).await.unwrap();
    // Small groups, so that the batches below span many commits and the
    // newest block is indexed before it is full, then again.
    let bounds = Bounds {
        commit_entries: 7,
        ..BOUNDS
    };
    let Running {
        handle,
        task,
        stats,
        sessions,
    } = run_writer(db.write, bounds).await;
    let indexing = start_indexer(db.fts, stats.committed.subscribe()).await;
    let (a, b) = (machine(3), machine(4));
    let (ca, cb) = (sessions.claim(&a), sessions.claim(&b));
    hello(&handle, &a).await;
    hello(&handle, &b).await;
    let pool = read_pool(&path).await;
    let mut prev_a = String::new();
    let mut prev_b = String::new();
    for k in 0..4u64 {
        let batch = entries(1 + k * 100..101 + k * 100);
        let last = batch[99].cursor.clone();
        let r = commit(&handle, &a, ca.generation, &prev_a, batch).await;
        assert!(matches!(r, Ok(Response::Ack(_))), "{r:?}");
        prev_a = last;
        // One entry without MESSAGE: stored, not indexed.
        let mut batch = entries(1000 + k * 2..1002 + k * 2);
        batch[1].fields.retain(|f| f.name != "MESSAGE");
        let last = batch[1].cursor.clone();
        let r = commit(&handle, &b, cb.generation, &prev_b, batch).await;
        assert!(matches!(r, Ok(Response::Ack(_))), "{r:?}");
        prev_b = last;
        // The newest block, not full yet, is indexed once commits pause.
        let newest = (k as i64 + 1) * 102;
        assert_eq!(wait_indexed(&pool, newest).await, newest);
    }
    drop(handle);
    task.await.unwrap();
    indexing.stop().await;

    assert_eq!(count(&pool).await, 408);
    let id_of = |message: &'static str| {
        let pool = pool.clone();
        async move {
            let id: i64 =
                sqlx::query_scalar("SELECT id FROM entries WHERE message = CAST(?1 AS BLOB)")
                    .bind(message)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            id >> jr_server::db::fts::BLOCK_BITS
        }
    };
    let bits = jr_server::db::fts::BLOCK_BITS;
    let all: Vec<i64> = (0..=408 >> bits).collect();
    assert_eq!(matching(&pool, "message").await, all);
    // Each term in the block of the entry that has it, and nowhere else:
    // the first entry, the last and one written after its block had been
    // indexed partly.
    assert_eq!(matching(&pool, "1").await, vec![id_of("message 1").await]);
    assert_eq!(
        matching(&pool, "400").await,
        vec![id_of("message 400").await]
    );
    assert_eq!(
        matching(&pool, "1006").await,
        vec![id_of("message 1006").await]
    );
    assert_eq!(matching(&pool, "1007").await, Vec::<i64>::new());
    assert_eq!(
        matching(&pool, "201 message").await,
        vec![id_of("message 201").await]
    );

    // Deleting entries as retention does (index attached): a block's row
    // stays while any of its entries does, and goes with the last.
    let mut rw = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let block = jr_server::db::fts::BLOCK;
    for (upto, left) in [
        (10, all.clone()),
        (block - 1, all[1..].to_vec()),
        (block + 5, all[1..].to_vec()),
        (408, vec![]),
    ] {
        jr_server::db::fts::attach_for_delete(&mut rw, &path)
            .await
            .unwrap();
        sqlx::query("DELETE FROM entries WHERE id <= ?1")
            .bind(upto)
            .execute(&mut rw)
            .await
            .unwrap();
        jr_server::db::fts::detach(&mut rw).await.unwrap();
        assert_eq!(
            matching(&pool, "message").await,
            left,
            "after deleting up to {upto}"
        );
    }
    pool.close().await;
}

#[tokio::test]
async fn a_lost_or_foreign_index_is_rebuilt_from_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let db = open(&path, Synchronous::Normal).await.unwrap();
    let Running {
        handle,
        task,
        sessions,
        ..
    } = run_writer(db.write, BOUNDS).await;
    let a = machine(5);
    let claim = sessions.claim(&a);
    hello(&handle, &a).await;
    let r = commit(&handle, &a, claim.generation, "", entries(1..41)).await;
    assert!(matches!(r, Ok(Response::Ack(_))), "{r:?}");
    drop(handle);
    task.await.unwrap();
    // No indexer ran: the index is empty and says so.
    drop(db.fts);
    drop(db.checkpoint);
    db.read.close().await;

    let index_files = || {
        ["-fts", "-fts-wal", "-fts-shm"].map(|s| {
            let mut p = path.clone().into_os_string();
            p.push(s);
            std::path::PathBuf::from(p)
        })
    };
    // Lost: the file is gone; the next start rebuilds it whole.
    for f in index_files() {
        let _ = std::fs::remove_file(f);
    }
    let db = open(&path, Synchronous::Normal).await.unwrap();
    let (_never, commits) = tokio::sync::watch::channel(0);
    let indexing = start_indexer(db.fts, commits).await;
    let pool = read_pool(&path).await;
    assert_eq!(wait_indexed(&pool, 40).await, 40);
    assert_eq!(matching(&pool, "message").await, vec![0]);
    assert_eq!(matching(&pool, "40").await, vec![0]);
    indexing.stop().await;
    pool.close().await;
    db.read.close().await;
    drop(db.write);

    // Foreign: an index ahead of the database (the database was replaced
    // by an older copy) is emptied and rebuilt, never trusted.
    let mut fts = jr_server::db::fts::open(&path, Synchronous::Normal)
        .await
        .unwrap();
    fts.execute("UPDATE fts_position SET upto = 1000")
        .await
        .unwrap();
    let (_never, commits) = tokio::sync::watch::channel(0);
    let indexing = start_indexer(fts, commits).await;
    let pool = read_pool(&path).await;
    assert_eq!(wait_indexed(&pool, 40).await, 40);
    assert_eq!(matching(&pool, "message").await, vec![0]);
    indexing.stop().await;
}

#[tokio::test]
async fn batches_larger_than_the_memory_budget_still_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let db = open(&path, Synchronous::Normal).await.unwrap();
    let Running {
        handle,
        task,
        sessions,
        ..
    } = run_writer(db.write, BOUNDS).await;
    // Three sessions at once, each with a batch over the writer's 16 MiB
    // budget of queued batches: each waits for the whole budget in turn.
    let mut sent = Vec::new();
    // Sessions hold their machines until the end.
    let mut claims = Vec::new();
    for n in 5..8u8 {
        let m = machine(n);
        let claim = sessions.claim(&m);
        let generation = claim.generation;
        claims.push(claim);
        hello(&handle, &m).await;
        let mut big = entries(1..6);
        for e in &mut big {
            e.fields.push(field("PAYLOAD", &vec![b'p'; 7 << 19]));
        }
        let handle = handle.clone();
        sent.push(tokio::spawn(async move {
            commit(&handle, &m, generation, "", big).await
        }));
    }
    for s in sent {
        let r = s.await.unwrap();
        assert!(
            matches!(r, Ok(Response::Ack(ref a)) if a.stored == 5),
            "{r:?}"
        );
    }
    drop(handle);
    task.await.unwrap();
    assert_eq!(count(&read_pool(&path).await).await, 15);
}
