//! Graceful shutdown: SIGTERM to the server during heavy ingest from
//! several agents, and SIGTERM to an agent in the middle of shipping.
//!
//! Either process must exit 0 within its drain deadline, leave the stored
//! entries and the committed cursor in agreement (the stored entries of a
//! host are exactly the journal up to its cursor, in order), and after a
//! restart every entry must be stored exactly once.

use jr_tests::journalctl;
use jr_tests::{eventually, workdir, Agent, Db, Fixture, Host, JournalWriter, Layout, Server};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The agent's drain deadline (`jr_agent::session::DRAIN_TIMEOUT`) plus
/// room for a loaded machine: SIGTERM must end the process within this.
const AGENT_STOP_DEADLINE: Duration = Duration::from_secs(13);
/// The server drains connections, sessions and the writer, each bounded by
/// ten seconds; in practice it stops in well under one of them.
const SERVER_STOP_DEADLINE: Duration = Duration::from_secs(12);

/// Writes `entries` entries for `host` into `work/<hostname>/system.journal`
/// and returns the directory and the cursors journalctl lists for it.
fn journal_of(work: &Path, host: &Host, entries: u64) -> (PathBuf, Vec<String>) {
    let dir = work.join(&host.hostname);
    std::fs::create_dir(&dir).expect("journal directory");
    let mut fx = Fixture::new();
    let mut writer = JournalWriter::create(&dir.join("system.journal"), Layout::Default);
    for i in 0..entries {
        let mut entry = fx.make(host);
        entry
            .unit(if i % 3 == 0 {
                "web.service"
            } else {
                "db.service"
            })
            .priority((i % 8) as u8)
            .message(format!(
                "{} entry {i} {}",
                host.hostname,
                "y".repeat((i % 48) as usize)
            ));
        writer.append(&entry);
    }
    writer.finish();
    let cursors = journalctl::cursors_of_directory(&dir);
    assert_eq!(
        cursors.len() as u64,
        entries,
        "journalctl lists every entry"
    );
    (dir, cursors)
}

/// The host's stored cursors in commit order must be a prefix of its
/// journal ending exactly at the host's committed cursor; returns the
/// prefix length.
async fn committed_prefix(db: &Db, host: &Host, expected: &[String]) -> usize {
    let stored: Vec<String> = db
        .rows()
        .await
        .into_iter()
        .filter(|r| r.machine_id == host.machine_id)
        .map(|r| r.cursor)
        .collect();
    let n = stored.len();
    assert!(
        n <= expected.len(),
        "{}: {n} stored, more than the journal",
        host.hostname
    );
    if let Some(i) = (0..n).find(|&i| stored[i] != expected[i]) {
        panic!(
            "{}: stored entry {i} is {:?}, the journal has {:?} there",
            host.hostname, stored[i], expected[i]
        );
    }
    let cursor = db.host(&host.machine_id).await.map(|h| h.cursor);
    let want = n.checked_sub(1).map(|i| expected[i].clone());
    assert_eq!(
        cursor.filter(|c| !c.is_empty()),
        want,
        "{}: the committed cursor is the last stored entry",
        host.hostname
    );
    n
}

/// The cursor in an agent's state file (written after each acknowledgement).
fn acknowledged_cursor(state_file: &Path) -> Option<String> {
    let text = std::fs::read(state_file).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v.get("cursor")?.as_str().map(str::to_owned)
}

/// The number in the agent's exit line `jr-agent: shipped N entries (...)`.
fn shipped_on_exit(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        let rest = l.strip_prefix("jr-agent: shipped ")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_server_during_heavy_ingest_loses_and_repeats_nothing() {
    const PER_HOST: u64 = 70_000;
    let work = workdir();
    let hosts: Vec<Host> = ["term-a", "term-b", "term-c"]
        .into_iter()
        .map(Host::new)
        .collect();
    let journals: Vec<(PathBuf, Vec<String>)> = hosts
        .iter()
        .map(|h| journal_of(work.path(), h, PER_HOST))
        .collect();
    let total = PER_HOST * hosts.len() as u64;

    let mut server = Server::start(work.path()).await;
    let mut agents: Vec<(Agent, PathBuf)> = hosts
        .iter()
        .zip(&journals)
        .map(|(h, (dir, _))| {
            let state = work.path().join(format!("{}.state", h.hostname));
            let agent = Agent::command(&server, work.path(), &h.hostname)
                .directory(dir)
                .state_file(&state)
                .flag("--batch-entries", "500")
                .spawn();
            (agent, state)
        })
        .collect();
    let db = Db::open(server.db_path()).await;

    // SIGTERM while every agent has batches in flight.
    eventually(
        "ingest is under way",
        1200,
        Duration::from_millis(25),
        || async {
            let n = db.count().await as u64;
            if n >= total / 10 {
                Ok(n)
            } else {
                Err(format!("{n}/{total} stored"))
            }
        },
    )
    .await;
    let asked = Instant::now();
    let status = server.stop().await;
    let took = asked.elapsed();
    eprintln!(
        "shutdown: server stopped {took:?} after SIGTERM with {}/{total} stored",
        db.count().await
    );
    assert!(status.success(), "jr-server exited with {status}");
    assert!(
        took < SERVER_STOP_DEADLINE,
        "jr-server took {took:?} to stop"
    );
    assert!(
        server.log().contains("jr-server stopped"),
        "the server logs its orderly stop"
    );
    assert!(
        (db.count().await as u64) < total,
        "the stop landed before ingest finished"
    );

    // Every batch committed during the drain was acknowledged to its agent,
    // and no agent holds an acknowledgement for a batch that was not
    // committed: its last acknowledged cursor is the last committed entry.
    for (host, ((_, state), (_, expected))) in hosts.iter().zip(agents.iter().zip(&journals)) {
        let n = committed_prefix(&db, host, expected).await;
        let acked = acknowledged_cursor(state)
            .map(|c| match expected[..n].iter().position(|e| *e == c) {
                Some(i) => i + 1,
                None => panic!(
                    "{}: acknowledged {c:?}, which is not committed",
                    host.hostname
                ),
            })
            .unwrap_or(0);
        eprintln!(
            "shutdown: {}: {n} entries committed, {acked} acknowledged to the agent",
            host.hostname
        );
        assert_eq!(
            acked, n,
            "{}: every committed batch is acknowledged before the server stops",
            host.hostname
        );
    }

    server.restart().await;
    eventually(
        "every agent catches up after the restart",
        1800,
        Duration::from_millis(100),
        || async {
            let hosts_rows = db.hosts().await;
            let done = journals
                .iter()
                .filter(|(_, exp)| hosts_rows.iter().any(|h| Some(&h.cursor) == exp.last()))
                .count();
            if done == journals.len() {
                Ok(())
            } else {
                Err(format!("{done} hosts done, {} stored", db.count().await))
            }
        },
    )
    .await;
    let all: Vec<String> = journals.iter().flat_map(|(_, c)| c.clone()).collect();
    db.holds_exactly(&all).await.unwrap();

    for (agent, _) in &mut agents {
        let status = agent.stop().await;
        assert!(status.success(), "jr-agent exited with {status}");
    }
    let status = server.stop().await;
    assert!(status.success(), "jr-server exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_agent_mid_shipping_exits_zero_with_its_acks_stored() {
    const ENTRIES: u64 = 200_000;
    let work = workdir();
    let host = Host::new("term-agent");
    let (dir, expected) = journal_of(work.path(), &host, ENTRIES);
    let state = work.path().join("agent.state");

    let server = Server::start(work.path()).await;
    let command = Agent::command(&server, work.path(), "term-agent")
        .directory(&dir)
        .state_file(&state)
        .flag("--batch-entries", "1000");
    let mut agent = command.spawn();
    let db = Db::open(server.db_path()).await;
    eventually(
        "shipping is under way",
        1200,
        Duration::from_millis(25),
        || async {
            let n = db.count().await as u64;
            if n >= ENTRIES / 10 {
                Ok(())
            } else {
                Err(format!("{n}/{ENTRIES} stored"))
            }
        },
    )
    .await;

    let asked = Instant::now();
    let status = agent.stop().await;
    let took = asked.elapsed();
    let stored = db.count().await as u64;
    eprintln!("shutdown: agent stopped {took:?} after SIGTERM with {stored}/{ENTRIES} stored");
    assert!(status.success(), "jr-agent exited with {status}");
    assert!(took < AGENT_STOP_DEADLINE, "jr-agent took {took:?} to stop");
    assert!(stored < ENTRIES, "the stop landed before shipping finished");

    // Every acknowledged batch is stored, nothing else is, and the agent's
    // last acknowledged cursor is the server's committed one.
    let n = committed_prefix(&db, &host, &expected).await;
    assert_eq!(n as u64, stored);
    assert_eq!(
        acknowledged_cursor(&state).as_deref(),
        Some(expected[n - 1].as_str()),
        "the agent's last acknowledged cursor is the committed one"
    );
    assert_eq!(
        shipped_on_exit(&agent.log()),
        Some(stored),
        "the agent reports as acknowledged exactly what is stored"
    );

    agent.restart();
    eventually(
        "the restarted agent catches up",
        1800,
        Duration::from_millis(100),
        || async {
            match db.host(&host.machine_id).await {
                Some(h) if Some(&h.cursor) == expected.last() => Ok(()),
                other => Err(format!("{} stored, host {other:?}", db.count().await)),
            }
        },
    )
    .await;
    db.holds_exactly(&expected).await.unwrap();
    let status = agent.stop().await;
    assert!(status.success(), "jr-agent exited with {status}");
}
