//! The writer task on a real SQLite file, driven without gRPC: fencing by
//! generation and recovery from a failed commit.

mod common;

use common::*;
use jr_proto::v1::{Batch, Entry};
use jr_server::config::Synchronous;
use jr_server::db::hosts::HostHello;
use jr_server::db::open::open;
use jr_server::db::writer::{Bounds, Request, Response, Writer, WriterHandle};
use jr_server::error::Error;
use jr_server::sessions::Sessions;
use sqlx::{Executor as _, SqlitePool};
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

async fn read(path: &std::path::Path) -> SqlitePool {
    SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_fenced_generation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let db = open(&path, Synchronous::Normal).await.unwrap();
    let sessions = Arc::new(Sessions::default());
    let (writer, handle, _) = Writer::new(db.write, sessions.clone(), BOUNDS)
        .await
        .unwrap();
    let task = tokio::spawn(writer.run());
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
    assert_eq!(count(&read(&path).await).await, 2);
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
    let sessions = Arc::new(Sessions::default());
    let (writer, handle, stats) = Writer::new(db.write, sessions.clone(), BOUNDS)
        .await
        .unwrap();
    let task = tokio::spawn(writer.run());
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

    let pool = read(&path).await;
    assert_eq!(count(&pool).await, 2);
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
