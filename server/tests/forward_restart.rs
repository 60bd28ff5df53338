//! The server SIGKILLed while a route forwards 100,000 entries, then
//! started again on the same database: every entry arrives, repeats stay
//! within one write and are reported.

mod common;
mod forward_support;

use common::*;
use forward_support::*;
use jr_tests::procs::Server;

const CHUNK_ROWS: usize = jr_server::forward::route::CHUNK_ROWS as usize;
const TOTAL: u64 = 100_000;
const BATCH: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_forwarding_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::plain().await;
    let path = dir.path().join("server.toml");
    std::fs::write(&path, route("r", TOKEN_A, fake.addr, None, "")).unwrap();
    let mut server = Server::start_with(dir.path(), &["--config", path.to_str().unwrap()]).await;
    eventually("route started", 500, async || {
        !list(server.addr()).await.is_empty()
    })
    .await;

    let m = machine(7);
    let mut a = Agent::connect(server.addr()).await;
    let mut prev = a.hello(&m).await.cursor;
    let mut next = 0;
    let mut seq = 0;
    // Ship until the route is well under way, then kill the server in the
    // middle of forwarding (and of ingest).
    while next < TOTAL {
        seq += 1;
        prev = a.batch(seq, &prev, entries(next..next + BATCH)).await;
        a.ack().await;
        next += BATCH;
        if fake.count() >= 10_000 {
            break;
        }
    }
    drop(a);
    server.kill().await;
    let at_kill = fake.count();
    assert!(
        (at_kill as u64) < next,
        "the kill must come while the route is behind ({at_kill} of {next})"
    );

    server.restart().await;
    // The agent resumes after the committed cursor.
    let mut a = Agent::connect(server.addr()).await;
    let mut prev = a.hello(&m).await.cursor;
    let committed = prev
        .split(';')
        .find_map(|p| p.strip_prefix("i="))
        .and_then(|i| u64::from_str_radix(i, 16).ok())
        .expect("committed cursor");
    let mut next = committed + 1;
    let mut seq = 0;
    while next < TOTAL {
        seq += 1;
        prev = a.batch(seq, &prev, entries(next..next + BATCH)).await;
        a.ack().await;
        next += BATCH;
    }
    fake.wait_for(TOTAL as usize).await;
    eventually("position reaches the head", 1000, async || {
        status(server.addr(), "r").await.lag_entries == 0
    })
    .await;
    let lines = fake.lines();
    let host = format!("host-{}", &m[..4]);
    let dups = check_complete_in_order(&numbers_of(&lines, TOKEN_A, &host), 0..TOTAL);
    let st = status(server.addr(), "r").await;
    eprintln!(
        "killed at {at_kill} lines; {dups} repeated, {} reported",
        st.repeated_lines
    );
    assert!(dups <= CHUNK_ROWS, "{dups} repeated lines");
    assert!(
        dups as u64 <= st.repeated_lines,
        "{dups} repeats arrived but {} reported",
        st.repeated_lines
    );
    assert!(st.repeated_lines as usize <= CHUNK_ROWS);
    server.stop().await;
}
