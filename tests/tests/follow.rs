//! Follow mode: entries written to a journal while the agent runs reach the
//! database within a second.
//!
//! Arrival is polled every 100 ms, so the reported time is accurate to
//! that; the test fails only past three seconds, which leaves room for a
//! loaded machine, and prints every measured time.

use jr_tests::journalctl;
use jr_tests::{eventually, workdir, Agent, Db, Fixture, Host, JournalWriter, Layout, Server};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);
/// 30 polls of 100 ms: three seconds.
const POLLS: u32 = 30;

async fn time_to_arrive(db: &Db, message: &str) -> Duration {
    let started = Instant::now();
    eventually(&format!("{message:?} is stored"), POLLS, POLL, || async {
        match db.rows_with_message(message.as_bytes()).await.len() {
            0 => Err("not stored yet".to_owned()),
            1 => Ok(()),
            n => Err(format!("stored {n} times")),
        }
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_entries_arrive_within_a_second() {
    let work = workdir();
    let dir = work.path().join("journal");
    std::fs::create_dir(&dir).expect("journal directory");
    let host = Host::new("follower");
    let mut fx = Fixture::new();
    // More than the ten entries `journalctl --follow` shows by default.
    for i in 0..25 {
        fx.entry(&host)
            .unit("early.service")
            .priority(6)
            .message(format!("before the agent {i}"));
    }
    fx.write_new(&dir.join("system@0001.journal"), Layout::Default);

    let server = Server::start(work.path()).await;
    let _agent = Agent::command(&server, work.path(), "follower")
        .directory(&dir)
        .spawn();
    let db = Db::open(server.db_path()).await;
    let before = journalctl::cursors_of_directory(&dir);
    eventually("the existing journal is shipped", 300, POLL, || {
        db.holds_exactly(&before)
    })
    .await;

    let mut times = Vec::new();
    // A journal file that grows while the agent follows it.
    let mut live = JournalWriter::create(&dir.join("system.journal"), Layout::Default);
    for round in 0..5 {
        let message = format!("live entry {round}");
        let mut entry = fx.make(&host);
        entry.unit("live.service").priority(5).message(&message);
        live.append(&entry);
        live.flush();
        times.push((message.clone(), time_to_arrive(&db, &message).await));
    }
    live.finish();

    // A new journal file appearing in the directory, as after a rotation.
    let message = "entry in a file created while following";
    fx.entry(&host)
        .unit("late.service")
        .priority(4)
        .message(message);
    fx.write_new(&dir.join("system@0002.journal"), Layout::Legacy);
    times.push((message.to_owned(), time_to_arrive(&db, message).await));

    for (message, took) in &times {
        eprintln!(
            "follow: {message:?} stored {} ms after it was written",
            took.as_millis()
        );
    }
    let slow: Vec<_> = times
        .iter()
        .filter(|(_, t)| *t > Duration::from_secs(1))
        .collect();
    eprintln!(
        "follow: {} of {} arrivals took over a second",
        slow.len(),
        times.len()
    );

    let all = journalctl::cursors_of_directory(&dir);
    eventually("every entry is stored exactly once", 30, POLL, || {
        db.holds_exactly(&all)
    })
    .await;
}
