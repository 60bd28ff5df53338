//! Hosts as the server sees them: the journal head each agent reports, the
//! lag behind it, stalled and silent hosts, gaps recorded from journald's
//! "Suppressed N messages", and the per-host unit counters and store
//! statistics, all asked through the query service (and `jrctl`) of a real
//! server fed by real agents.

use jr_proto::v1::query_client::QueryClient;
use jr_proto::v1::{GapsRequest, HostInfo, HostState, HostsRequest, StatsRequest, UnitsRequest};
use jr_tests::journalctl;
use jr_tests::procs::{binary, processes_mentioning};
use jr_tests::{eventually, workdir, Agent, Db, Fixture, Host, JournalWriter, Layout, Server};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;

const POLL: Duration = Duration::from_millis(100);

async fn query(server: &Server) -> QueryClient<Channel> {
    QueryClient::connect(server.url())
        .await
        .expect("connect to the query service")
}

async fn host(server: &Server, machine_id: &str) -> Option<HostInfo> {
    query(server)
        .await
        .hosts(HostsRequest {})
        .await
        .ok()?
        .into_inner()
        .hosts
        .into_iter()
        .find(|h| h.machine_id == machine_id)
}

fn state(h: &HostInfo) -> HostState {
    HostState::try_from(h.state).unwrap_or(HostState::Unspecified)
}

fn now_usec() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).expect("signal a process of the test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_reported_and_a_caught_up_host_is_ok() {
    let work = workdir();
    let dir = work.path().join("journal");
    std::fs::create_dir(&dir).expect("journal directory");
    let h = Host::new("headed");
    let mut fx = Fixture::new();
    for i in 0..20 {
        fx.entry(&h).unit("a.service").message(format!("entry {i}"));
    }
    fx.write_new(&dir.join("system.journal"), Layout::Default);
    let newest = journalctl::read_directory(&dir)
        .pop()
        .expect("the fixture has entries");

    let server = Server::start(work.path()).await;
    let mut agent = Agent::command(&server, work.path(), "headed")
        .directory(&dir)
        .flag("--head-interval", "200ms")
        .spawn();
    let info = eventually("the head is reported and caught up", 100, POLL, || async {
        let Some(i) = host(&server, &h.machine_id).await else {
            return Err("host not known yet".to_owned());
        };
        if i.head_cursor != newest.cursor || i.cursor != newest.cursor {
            return Err(format!(
                "head {:?}, committed {:?}",
                i.head_cursor, i.cursor
            ));
        }
        Ok(i)
    })
    .await;
    assert_eq!(info.head_realtime_usec, newest.realtime_usec);
    assert_eq!(info.committed_realtime_usec, newest.realtime_usec);
    assert_eq!((info.lag_usec, info.entries_behind), (0, 0));
    assert!(info.connected);
    assert_eq!(state(&info), HostState::Ok);
    assert!(info.head_reported_usec > 0);

    // `jrctl hosts -o json` prints the same.
    let out = tokio::process::Command::new(binary("jrctl"))
        .args(["--server", &server.url(), "hosts", "-o", "json"])
        .output()
        .await
        .expect("run jrctl hosts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object for one host");
    assert_eq!(line["state"], "ok");
    assert_eq!(line["head_cursor"], newest.cursor.as_str());
    assert_eq!(line["lag_usec"], 0);

    agent.stop().await;
    let gone = eventually("the host shows disconnected", 100, POLL, || async {
        match host(&server, &h.machine_id).await {
            Some(i) if state(&i) == HostState::Disconnected && !i.connected => Ok(i),
            other => Err(format!("{:?}", other.map(|i| state(&i)))),
        }
    })
    .await;
    assert_eq!(gone.head_cursor, newest.cursor, "the last head is kept");
}

/// A `journalctl` wrapper that logs its pid and arguments, so the test can
/// find the following child and stop it.
fn journalctl_wrapper(work: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let log = work.join("journalctl-calls");
    let script = work.join("journalctl-wrapper");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$$ $*\" >> '{}'\nexec journalctl \"$@\"\n",
            log.display()
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("make the wrapper executable");
    (script, log)
}

fn following_journalctl(log: &Path) -> Option<u32> {
    let calls = std::fs::read_to_string(log).ok()?;
    calls
        .lines()
        .filter(|l| l.contains("--follow"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .next_back()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_reader_with_a_growing_journal_is_stalled() {
    let work = workdir();
    let dir = work.path().join("journal");
    std::fs::create_dir(&dir).expect("journal directory");
    let h = Host::new("stalling");
    let mut fx = Fixture::new();
    let path = dir.join("system.journal");
    let mut live = JournalWriter::create(&path, Layout::Default);
    for i in 0..10 {
        live.append(fx.make(&h).unit("a.service").message(format!("before {i}")));
    }
    live.flush();
    let (wrapper, calls) = journalctl_wrapper(work.path());

    let server = Server::start_with(work.path(), &["--stall-after", "2s"]).await;
    let db = Db::open(server.db_path()).await;
    let _agent = Agent::command(&server, work.path(), "stalling")
        .directory(&dir)
        .flag("--reader", "journalctl")
        .flag("--journalctl", &wrapper)
        .flag("--head-interval", "200ms")
        .spawn();
    eventually("the first entries are stored", 300, POLL, || async {
        match db.count().await {
            10 => Ok(()),
            n => Err(format!("{n} stored")),
        }
    })
    .await;
    let follower = eventually("journalctl follows", 100, POLL, || async {
        following_journalctl(&calls).ok_or_else(|| "no journalctl --follow yet".to_owned())
    })
    .await;

    // Stop the reader, then let the journal grow by five entries.
    signal(follower, Signal::SIGSTOP);
    let grown_at = now_usec();
    for i in 0..5 {
        live.append(fx.make(&h).unit("a.service").message(format!("after {i}")));
    }
    live.flush();
    let all = journalctl::read_file(&path);
    assert_eq!(all.len(), 15, "journal-remote wrote every entry");
    let (committed, newest) = (&all[9], &all[14]);

    let stalled = eventually("the host is stalled", 150, POLL, || async {
        match host(&server, &h.machine_id).await {
            Some(i) if state(&i) == HostState::Stalled => Ok(i),
            other => Err(format!(
                "{:?}",
                other.map(|i| (state(&i), i.head_cursor, i.lag_usec))
            )),
        }
    })
    .await;
    assert_eq!(stalled.head_cursor, newest.cursor);
    assert_eq!(stalled.cursor, committed.cursor);
    assert_eq!(
        stalled.lag_usec,
        newest.realtime_usec - committed.realtime_usec
    );
    assert_eq!(stalled.entries_behind, 5);
    assert!(stalled.connected);
    eprintln!(
        "hosts: stalled reported {} ms after the journal grew (--stall-after 2s)",
        (now_usec() - grown_at) / 1000
    );
    assert!(
        stalled.behind_since_usec >= grown_at,
        "behind only once it grew"
    );
    let behind_for = now_usec() - stalled.behind_since_usec;
    assert!(
        behind_for >= 2_000_000,
        "stalled after {behind_for} µs behind, before --stall-after"
    );
    assert_eq!(db.count().await, 10, "nothing was committed meanwhile");

    // Let the reader go on: the host catches up and is ok again.
    signal(follower, Signal::SIGCONT);
    let ok = eventually("the host catches up", 150, POLL, || async {
        match host(&server, &h.machine_id).await {
            Some(i) if state(&i) == HostState::Ok && i.lag_usec == 0 => Ok(i),
            other => Err(format!("{:?}", other.map(|i| (state(&i), i.lag_usec)))),
        }
    })
    .await;
    assert_eq!(ok.cursor, newest.cursor);
    assert_eq!(ok.behind_since_usec, 0);
    live.finish();
    assert!(
        processes_mentioning(&wrapper.display().to_string()).len() <= 1,
        "no stray wrapper processes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_stops_talking_is_silent() {
    let work = workdir();
    let dir = work.path().join("journal");
    std::fs::create_dir(&dir).expect("journal directory");
    let h = Host::new("quiet");
    let mut fx = Fixture::new();
    fx.entry(&h).unit("a.service").message("hello");
    fx.write_new(&dir.join("system.journal"), Layout::Default);

    let server = Server::start_with(work.path(), &["--silent-after", "3s"]).await;
    let agent = Agent::command(&server, work.path(), "quiet")
        .directory(&dir)
        .flag("--head-interval", "200ms")
        .spawn();
    eventually("the host is ok", 100, POLL, || async {
        match host(&server, &h.machine_id).await {
            Some(i) if state(&i) == HostState::Ok && i.head_reported_usec > 0 => Ok(()),
            other => Err(format!("{:?}", other.map(|i| state(&i)))),
        }
    })
    .await;
    // Heartbeats keep an idle host ok past --silent-after.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let idle = host(&server, &h.machine_id).await.expect("host known");
    assert_eq!(
        state(&idle),
        HostState::Ok,
        "an idle agent still heartbeats"
    );

    // A frozen agent keeps its connection but says nothing.
    let pid = agent.pid().expect("agent runs");
    signal(pid, Signal::SIGSTOP);
    let stopped_at = now_usec();
    let silent = eventually("the host is silent", 100, POLL, || async {
        match host(&server, &h.machine_id).await {
            Some(i) if state(&i) == HostState::Silent => Ok(i),
            other => Err(format!("{:?}", other.map(|i| state(&i)))),
        }
    })
    .await;
    eprintln!(
        "hosts: silent reported {} ms after the agent stopped (--silent-after 3s)",
        (now_usec() - stopped_at) / 1000
    );
    assert!(silent.connected, "the session is still open");
    signal(pid, Signal::SIGCONT);
    eventually("the host is ok again", 100, POLL, || async {
        match host(&server, &h.machine_id).await {
            Some(i) if state(&i) == HostState::Ok => Ok(()),
            other => Err(format!("{:?}", other.map(|i| state(&i)))),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppressed_messages_are_recorded_once_per_unit() {
    let work = workdir();
    let dir = work.path().join("journal");
    std::fs::create_dir(&dir).expect("journal directory");
    let h = Host::new("flooded");
    let mut fx = Fixture::new();
    fx.entry(&h).unit("flood.service").message("one of many");
    // What journald writes when its rate limit dropped a unit's messages.
    fx.entry(&h)
        .field("_TRANSPORT", "driver")
        .field("MESSAGE_ID", "a596d6fe7bfa4994828e72309e95d61e")
        .unit("systemd-journald.service")
        .identifier("systemd-journald")
        .priority(6)
        .field("N_DROPPED", "1234")
        .field("OBJECT_SYSTEMD_UNIT", "flood.service")
        .message("Suppressed 1234 messages from flood.service");
    // An older journald's wording: a cgroup path and no N_DROPPED.
    fx.entry(&h)
        .field("_TRANSPORT", "driver")
        .field("MESSAGE_ID", "a596d6fe7bfa4994828e72309e95d61e")
        .unit("systemd-journald.service")
        .message("Suppressed 7 messages from /system.slice/old.service");
    // Same words, not from journald: not a gap.
    fx.entry(&h)
        .unit("echo.service")
        .message("Suppressed 99 messages from echo.service");
    fx.write_new(&dir.join("system.journal"), Layout::Default);
    let logged = journalctl::read_directory(&dir);

    let server = Server::start(work.path()).await;
    for run in 0..2 {
        Agent::command(&server, work.path(), &format!("flooded-{run}"))
            .directory(&dir)
            .no_follow()
            .spawn()
            .wait_success(Duration::from_secs(60))
            .await;
    }
    let gaps = query(&server)
        .await
        .gaps(GapsRequest::default())
        .await
        .expect("gaps")
        .into_inner()
        .gaps;
    let got: Vec<(&str, u64, u64, &str)> = gaps
        .iter()
        .map(|g| (g.unit.as_str(), g.entries, g.realtime_usec, g.kind.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("flood.service", 1234, logged[1].realtime_usec, "suppressed"),
            ("old.service", 7, logged[2].realtime_usec, "suppressed"),
        ],
        "each notice once, shipped twice"
    );
    assert!(gaps.iter().all(|g| g.hostname == "flooded"));
    let info = host(&server, &h.machine_id).await.expect("host known");
    assert_eq!((info.suppressed_entries, info.gap_entries), (1241, 0));

    let out = tokio::process::Command::new(binary("jrctl"))
        .args(["--server", &server.url(), "gaps", "-H", "flooded"])
        .output()
        .await
        .expect("run jrctl gaps");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines()
            .any(|l| l.contains("flood.service") && l.ends_with("1234")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_per_host_and_stats_come_from_counters() {
    let work = workdir();
    let server = Server::start(work.path()).await;
    let mut fx = Fixture::new();
    let (one, two) = (Host::new("unit-one"), Host::new("unit-two"));
    let mut last_a = 0;
    for (h, a, b) in [(&one, 3, 2), (&two, 4, 0)] {
        let dir = work.path().join(&h.hostname);
        std::fs::create_dir(&dir).expect("journal directory");
        for _ in 0..a {
            last_a = fx.entry(h).unit("a.service").message("a").realtime_usec;
        }
        for _ in 0..b {
            fx.entry(h).unit("b.service").message("b");
        }
        fx.write_new(&dir.join("system.journal"), Layout::Default);
        Agent::command(&server, work.path(), &h.hostname)
            .directory(&dir)
            .no_follow()
            .spawn()
            .wait_success(Duration::from_secs(60))
            .await;
    }
    let mut q = query(&server).await;
    let units = |hosts: &[&str]| UnitsRequest {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
    };
    let listed = |r: Vec<jr_proto::v1::UnitInfo>| {
        r.into_iter()
            .map(|u| (u.name, u.entries))
            .collect::<Vec<_>>()
    };
    let first = q
        .units(units(&["unit-one"]))
        .await
        .expect("units")
        .into_inner();
    assert_eq!(
        listed(first.units),
        [("a.service".to_owned(), 3), ("b.service".to_owned(), 2)]
    );
    let second = q
        .units(units(&["unit-two"]))
        .await
        .expect("units")
        .into_inner();
    assert_eq!(listed(second.units), [("a.service".to_owned(), 4)]);
    let all = q.units(units(&[])).await.expect("units").into_inner().units;
    assert_eq!(all[0].last_entry_usec, last_a);
    assert_eq!(
        listed(all),
        [("a.service".to_owned(), 7), ("b.service".to_owned(), 2)]
    );
    let none = q
        .units(units(&["nobody"]))
        .await
        .expect("units")
        .into_inner();
    assert!(none.units.is_empty());

    let stats = q.stats(StatsRequest {}).await.expect("stats").into_inner();
    assert_eq!((stats.entries, stats.hosts, stats.units), (9, 2, 2));
    let fixture_times: Vec<u64> = fx.entries().iter().map(|e| e.realtime_usec).collect();
    assert_eq!(stats.first_entry_usec, fixture_times[0]);
    assert_eq!(
        stats.last_entry_usec,
        *fixture_times.last().expect("entries")
    );
    assert!(stats.database_bytes > 0);
}
