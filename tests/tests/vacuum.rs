//! A committed cursor whose entry no longer exists: the journal file that
//! held it was removed (as journald's vacuuming does) and a later file took
//! its place. The agent must continue with the next surviving entry, not
//! skip it, and report the gap in its log and in `hosts.gap_entries`.
//!
//! journalctl's own `--after-cursor` gets this wrong: when the cursor's
//! entry is gone it still skips one entry, the first survivor.

use jr_tests::journalctl;
use jr_tests::{workdir, Agent, Db, Fixture, Host, Layout, Server};
use std::time::Duration;

const SHIP_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vacuumed_cursor_resumes_at_the_next_survivor_and_reports_the_gap() {
    let work = workdir();
    let dir = work.path().join("journal");
    std::fs::create_dir(&dir).expect("journal directory");
    let host = Host::new("vacuumed");
    let mut fx = Fixture::new();
    for i in 0..30 {
        fx.entry(&host)
            .unit("old.service")
            .priority(6)
            .message(format!("old {i}"));
    }
    let old_file = fx.write_new(&dir.join("system@old.journal"), Layout::Default);
    let old = journalctl::cursors_of_directory(&dir);

    let server = Server::start(work.path()).await;
    let db = Db::open(server.db_path()).await;
    let mut agent = Agent::command(&server, work.path(), "vacuumed")
        .directory(&dir)
        .no_follow()
        .spawn();
    agent.wait_success(SHIP_TIMEOUT).await;
    if let Err(e) = db.holds_exactly(&old).await {
        panic!("before the vacuum: {e}");
    }
    let host_row = db.host(&host.machine_id).await.expect("hosts row");
    assert_eq!(
        &host_row.cursor,
        old.last().expect("entries"),
        "committed cursor is the old file's last entry"
    );

    // The file holding the committed cursor goes; entries written after it
    // survive in a file of their own.
    std::fs::remove_file(&old_file).expect("vacuum the old file");
    for i in 0..20 {
        fx.entry(&host)
            .unit("new.service")
            .priority(5)
            .message(format!("new {i}"));
    }
    fx.write_new(&dir.join("system.journal"), Layout::Default);
    let new = journalctl::cursors_of_directory(&dir);
    assert_eq!(new.len(), 20);

    agent.restart();
    agent.wait_success(SHIP_TIMEOUT).await;

    let everything: Vec<String> = old.iter().chain(&new).cloned().collect();
    if let Err(e) = db.holds_exactly(&everything).await {
        panic!(
            "after the vacuum (the first survivor is {:?}): {e}",
            new.first()
        );
    }
    let first_new = db.rows_with_message(b"new 0").await;
    assert_eq!(
        first_new.len(),
        1,
        "the first surviving entry is stored once"
    );

    // The report names the cursor that is gone, at a level an operator sees.
    let vacuumed = old.last().expect("entries");
    let log = agent.log();
    let reports: Vec<&str> = log
        .lines()
        .filter(|l| (l.contains("WARN") || l.contains("ERROR")) && l.contains(vacuumed.as_str()))
        .collect();
    for line in &reports {
        eprintln!("vacuum: {line}");
    }
    assert!(
        !reports.is_empty(),
        "no WARN or ERROR line of the agent names the vacuumed cursor {vacuumed}:\n{log}"
    );
    let host_row = db.host(&host.machine_id).await.expect("hosts row");
    assert!(
        host_row.gap_entries >= 1,
        "hosts.gap_entries counts the gap, got {host_row:?}"
    );
    assert_eq!(&host_row.cursor, new.last().expect("entries"));
}
