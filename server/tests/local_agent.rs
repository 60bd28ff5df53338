//! `--local-agent`: the in-process agent ships a real journal file
//! (written by systemd-journal-remote) into the server's database.

mod common;

use common::*;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// Writes `n` entries in export format through systemd-journal-remote.
fn write_journal(out: &std::path::Path, n: usize) {
    let mut export = Vec::new();
    for i in 0..n {
        write!(
            export,
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={BOOT}\n\
             _MACHINE_ID=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n_HOSTNAME=fixture\n\
             _SYSTEMD_UNIT=fixture.service\nPRIORITY=5\nMESSAGE=fixture entry {i}\n\n",
            1_700_000_000_000_000u64 + i as u64,
            1_000_000 + i,
        )
        .unwrap();
    }
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg("-o")
        .arg(out)
        .arg("-")
        .stdin(Stdio::piped())
        .spawn()
        .expect("systemd-journal-remote runs");
    child.stdin.take().unwrap().write_all(&export).unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn local_agent_ships_a_journal_directory() {
    let dir = tempfile::tempdir().unwrap();
    let journals = dir.path().join("journal");
    std::fs::create_dir(&journals).unwrap();
    write_journal(&journals.join("fixture.journal"), 25);
    let mut cfg = config(&dir.path().join("j.db"));
    cfg.local_agent = true;
    cfg.local_agent_directory = Some(journals);
    let server = TestServer::start(cfg).await;
    let pool = server.read().await;
    let mut stored = 0;
    for _ in 0..200 {
        stored = count(&pool).await;
        if stored == 25 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored, 25);
    let (host, unit, message): (String, String, Vec<u8>) =
        sqlx::query_as("SELECT host, unit, message FROM journal ORDER BY realtime_usec LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (host.as_str(), unit.as_str(), message.as_slice()),
        ("fixture", "fixture.service", &b"fixture entry 0"[..])
    );
    server.stop().await;
}

#[tokio::test]
async fn without_a_journal_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("j.db"));
    cfg.local_agent = true;
    cfg.local_agent_directory = Some(dir.path().join("no-such-journal"));
    let server = TestServer::start(cfg).await;
    let mut a = server.connect().await;
    a.hello(&machine(1)).await;
    a.batch(1, "", entries(1..3)).await;
    assert_eq!(a.ack().await.stored, 2);
    server.stop().await;
}

#[test]
fn the_binary_says_where_it_listens_and_that_there_is_no_journal() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_jr-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--local-agent",
            "--local-agent-directory",
        ])
        .arg(dir.path().join("nothing-here"))
        .arg("--db")
        .arg(&db)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(WAIT) {
        let done = line.contains("--local-agent-directory DIR");
        seen.push(line);
        if done || seen.len() >= 20 {
            break;
        }
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    // Bounded wait: a server that ignores SIGTERM fails the test instead
    // of hanging it.
    let mut status = None;
    for _ in 0..300 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("jr-server did not exit within 15 s of SIGTERM");
    };
    let text = seen.join("\n");
    assert!(text.contains("jr-server listening on 127.0.0.1:"), "{text}");
    assert!(text.contains("0 entries stored"), "{text}");
    assert!(text.contains("no journal to ship"), "{text}");
    assert!(text.contains("jr-agent --directory DIR"), "{text}");
    assert!(status.success(), "graceful exit on SIGTERM: {status:?}");
}
