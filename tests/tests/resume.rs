//! Resuming: the agent stopped and restarted, the server stopped and
//! restarted, the agent's state file deleted. Each time more entries are
//! written while something is down, and afterwards the database holds every
//! entry of the journal exactly once.

use jr_tests::journalctl;
use jr_tests::{eventually, workdir, Agent, Db, Fixture, Host, Layout, Server};
use std::path::Path;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(100);
const TRIES: u32 = 300;

fn write_batch(fx: &mut Fixture, host: &Host, dir: &Path, file: &str, label: &str) {
    for i in 0..50 {
        fx.entry(host)
            .unit("resume.service")
            .priority((i % 8) as u8)
            .message(format!("{label} {i}"));
    }
    fx.write_new(&dir.join(file), Layout::Default);
}

async fn assert_all_shipped_once(db: &Db, dir: &Path, when: &str) {
    let expected = journalctl::cursors_of_directory(dir);
    eventually(
        &format!("{when}: every entry stored once"),
        TRIES,
        POLL,
        || db.holds_exactly(&expected),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_and_a_lost_state_file_neither_lose_nor_repeat() {
    let work = workdir();
    let dir = work.path().join("journal");
    std::fs::create_dir(&dir).expect("journal directory");
    let state = work.path().join("agent.state");
    let host = Host::new("resumer");
    let mut fx = Fixture::new();

    write_batch(&mut fx, &host, &dir, "system@0001.journal", "first");
    let mut server = Server::start(work.path()).await;
    let mut agent = Agent::command(&server, work.path(), "resumer")
        .directory(&dir)
        .state_file(&state)
        .spawn();
    let db = Db::open(server.db_path()).await;
    assert_all_shipped_once(&db, &dir, "first start").await;

    // Agent down while the journal grows.
    let status = agent.stop().await;
    assert!(
        status.success(),
        "jr-agent exits 0 on SIGTERM, got {status}"
    );
    write_batch(
        &mut fx,
        &host,
        &dir,
        "system@0002.journal",
        "while the agent was stopped",
    );
    agent.restart();
    assert_all_shipped_once(&db, &dir, "agent restarted").await;

    // Server down while the journal grows; the agent keeps running and
    // reconnects on its own.
    let status = server.stop().await;
    assert!(
        status.success(),
        "jr-server exits 0 on SIGTERM, got {status}"
    );
    write_batch(
        &mut fx,
        &host,
        &dir,
        "system@0003.journal",
        "while the server was stopped",
    );
    server.restart().await;
    assert_all_shipped_once(&db, &dir, "server restarted").await;

    // The state file lost: the server's committed cursor is the position.
    agent.stop().await;
    if state.exists() {
        std::fs::remove_file(&state).expect("delete the agent state file");
    }
    write_batch(
        &mut fx,
        &host,
        &dir,
        "system@0004.journal",
        "after the state file was lost",
    );
    agent.restart();
    assert_all_shipped_once(&db, &dir, "state file deleted").await;

    // Both down at once, then both back.
    agent.stop().await;
    server.stop().await;
    write_batch(
        &mut fx,
        &host,
        &dir,
        "system.journal",
        "while everything was stopped",
    );
    server.restart().await;
    agent.restart();
    assert_all_shipped_once(&db, &dir, "both restarted").await;

    let hosts = db.hosts().await;
    assert_eq!(hosts.len(), 1, "one machine, one hosts row: {hosts:?}");
    let last = journalctl::read_directory(&dir)
        .pop()
        .expect("journal has entries");
    assert_eq!(
        hosts[0].cursor, last.cursor,
        "committed cursor is the journal's last entry"
    );
    assert_eq!(hosts[0].gap_entries, 0, "no gap was reported");
}
