//! A real journald: a line written with `systemd-cat` reaches the database
//! through an agent reading this machine's journal (no source flags).
//!
//! Needs a running systemd-journald; scripts/test starts one when it runs as
//! root and none is running. Without one the test says why and returns.

use jr_tests::{eventually, workdir, Agent, Db, Server};
use rand::Rng;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_cat_lines_reach_the_database() {
    if !Path::new(JOURNALD_SOCKET).exists() {
        eprintln!("skipped: no systemd-journald ({JOURNALD_SOCKET} is missing); scripts/test starts one as root");
        return;
    }
    let work = workdir();
    let server = Server::start(work.path()).await;
    let _agent = Agent::command(&server, work.path(), "local").spawn();
    let db = Db::open(server.db_path()).await;

    let token: u64 = rand::rng().random();
    let identifier = format!("jr-e2e-{token:x}");
    let message = format!("hello-{token:x}");
    let status = Command::new("systemd-cat")
        .args(["-t", &identifier, "echo", &message])
        .status()
        .expect("run systemd-cat");
    assert!(status.success(), "systemd-cat failed: {status}");

    let row = eventually(
        "the systemd-cat line is stored",
        150,
        Duration::from_millis(100),
        || async {
            match db.rows_with_message(message.as_bytes()).await.as_slice() {
                [] => Err(format!("not yet; {} entries stored", db.count().await)),
                [row] => Ok(row.clone()),
                rows => Err(format!("stored {} times", rows.len())),
            }
        },
    )
    .await;
    assert_eq!(row.identifier.as_deref(), Some(identifier.as_str()));
    assert_eq!(
        row.priority,
        Some(6),
        "systemd-cat's default priority is info"
    );
    assert!(!row.host.is_empty(), "the entry has a host");
}
