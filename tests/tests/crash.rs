//! Crash: a large journal shipped while the agent and the server are each
//! killed with SIGKILL at random moments; afterwards every entry is stored
//! exactly once.
//!
//! The kill schedule comes from a seeded RNG. The seed is printed; set
//! `JR_E2E_SEED` to replay a schedule.

use jr_tests::journalctl;
use jr_tests::procs::processes_mentioning;
use jr_tests::{eventually, workdir, Agent, Db, Fixture, Host, JournalWriter, Layout, Server};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant, SystemTime};

const ENTRIES: u64 = 200_000;
const KILLS_EACH: usize = 6;
const UNITS: [&str; 6] = [
    "nginx.service",
    "postgresql.service",
    "cron.service",
    "sshd.service",
    "app.service",
    "init.scope",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    Agent,
    Server,
}

fn seed() -> u64 {
    std::env::var("JR_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_agent_and_server_loses_and_repeats_nothing() {
    let seed = seed();
    eprintln!("crash: seed {seed} (JR_E2E_SEED={seed} replays this schedule)");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let work = workdir();
    let dir = work.path().join("journal");
    std::fs::create_dir(&dir).expect("journal directory");
    let host = Host::new("crasher");
    let mut fx = Fixture::new();
    let mut writer = JournalWriter::create(&dir.join("system.journal"), Layout::Default);
    for i in 0..ENTRIES {
        let mut entry = fx.make(&host);
        let unit = UNITS[(i % UNITS.len() as u64) as usize];
        entry
            .unit(unit)
            .identifier(unit.trim_end_matches(".service"))
            .pid(1000 + (i % 97) as u32)
            .priority((i % 8) as u8)
            .message(format!(
                "entry {i} of the crash test, {}",
                "x".repeat((i % 64) as usize)
            ));
        writer.append(&entry);
    }
    writer.finish();
    let expected = journalctl::cursors_of_directory(&dir);
    assert_eq!(
        expected.len() as u64,
        ENTRIES,
        "journalctl lists every entry"
    );
    eprintln!("crash: wrote {ENTRIES} entries in {:?}", started.elapsed());

    let mut server = Server::start(work.path()).await;
    let mut agent = Agent::command(&server, work.path(), "crasher")
        .directory(&dir)
        .state_file(&work.path().join("agent.state"))
        // Small batches: more commits for the kills to land between.
        .flag("--batch-entries", "1000")
        .spawn();
    let db = Db::open(server.db_path()).await;

    let mut schedule = [Victim::Agent; KILLS_EACH].to_vec();
    schedule.extend([Victim::Server; KILLS_EACH]);
    schedule.shuffle(&mut rng);
    let last = expected.last().expect("journal has entries");
    let mut mid_transfer = 0;
    let mut stored_at_last_kill = -1;
    for victim in schedule {
        // Each kill waits for the restarted processes to store something
        // (or to have caught up with the journal), so that kills land while entries flow rather than
        // all during start-up.
        eventually(
            "shipping progresses between kills",
            600,
            Duration::from_millis(50),
            || async {
                let stored = db.count().await;
                let caught_up = db.hosts().await.first().is_some_and(|h| h.cursor == *last);
                if stored > stored_at_last_kill || caught_up {
                    Ok(())
                } else {
                    Err(format!("{stored}/{ENTRIES} stored, as at the last kill"))
                }
            },
        )
        .await;
        // The randomness is the point here: kills land at arbitrary moments.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        let stored = db.count().await;
        stored_at_last_kill = stored;
        if (stored as u64) < ENTRIES {
            mid_transfer += 1;
        }
        eprintln!("crash: SIGKILL {victim:?} with {stored}/{ENTRIES} stored");
        match victim {
            Victim::Agent => {
                agent.kill().await;
                agent.restart();
            }
            Victim::Server => {
                server.kill().await;
                server.restart().await;
            }
        }
    }
    eprintln!(
        "crash: {} kills ({mid_transfer} before the transfer finished), {} agent and {} server starts",
        2 * KILLS_EACH,
        agent.starts(),
        server.starts()
    );

    eventually(
        "the agent catches up with the journal",
        1800,
        Duration::from_millis(100),
        || async {
            let hosts = db.hosts().await;
            match hosts.first() {
                Some(h) if h.cursor == *last => Ok(()),
                other => Err(format!("{} stored, host {other:?}", db.count().await)),
            }
        },
    )
    .await;
    if let Err(e) = db.holds_exactly(&expected).await {
        panic!("after {} kills: {e}", 2 * KILLS_EACH);
    }
    eprintln!(
        "crash: every entry stored exactly once after {:?}",
        started.elapsed()
    );

    // A killed agent must not leave its journalctl behind.
    agent.kill().await;
    let needle = dir.to_string_lossy().into_owned();
    eventually(
        "no journalctl outlives a killed agent",
        50,
        Duration::from_millis(100),
        || async {
            let left: Vec<_> = processes_mentioning(&needle)
                .into_iter()
                .filter(|(_, cmd)| cmd.contains("journalctl"))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} still running: {left:?}", left.len()))
            }
        },
    )
    .await;
}
