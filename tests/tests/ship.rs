//! Shipping fixture journals: every entry stored once, with the right host,
//! labels, timestamp, cursor and message bytes, in both journal layouts.
//!
//! Each host's journal is in its own directory with its own `jr-agent
//! --no-follow --directory`, as several agents on one machine reading
//! different journals would be; one of them overrides its identity with
//! `--hostname` and `--machine-id`.

use jr_tests::fixture::TAG;
use jr_tests::journalctl::{self, Logged};
use jr_tests::{workdir, Agent, Db, Fixture, Host, JournalRow, Layout, Server};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

const SHIP_TIMEOUT: Duration = Duration::from_secs(60);

/// 200 KiB, well past journald's line length and gRPC's default 4 MiB cap
/// only once batched: it must survive as one field.
const BIG_MESSAGE_BYTES: usize = 200 * 1024;

/// The entries every host gets: each label rule, each priority, and the
/// messages that break naive handling.
fn add_variety(fx: &mut Fixture, host: &Host) {
    let name = &host.hostname;
    fx.entry(host)
        .unit("init.scope")
        .identifier("systemd")
        .pid(1)
        .field("UNIT", "foo.service")
        .field("JOB_TYPE", "start")
        .priority(6)
        .message("Started foo.service - Foo.");
    for level in 0..=7u8 {
        fx.entry(host)
            .unit("nginx.service")
            .identifier("nginx")
            .pid(4242)
            .priority(level)
            .message(format!("nginx on {name} at level {level}"));
    }
    fx.entry(host)
        .unit("app.service")
        .identifier("app")
        .pid(777)
        .priority(3)
        .message(format!("panic on {name}:\n  at main.rs:1\n\tat lib.rs:2\n"));
    fx.entry(host)
        .unit("app.service")
        .identifier("app")
        .pid(777)
        .priority(4)
        .message(
            b"binary\x00message \xff\xfe\xc3\x28 end"
                .iter()
                .chain(name.as_bytes())
                .copied()
                .collect::<Vec<u8>>(),
        );
    let mut big = format!("big message from {name}: ").into_bytes();
    big.extend(
        (0..)
            .map(|i: usize| b'a' + (i % 26) as u8)
            .take(BIG_MESSAGE_BYTES - big.len()),
    );
    fx.entry(host)
        .unit("app.service")
        .identifier("app")
        .pid(777)
        .priority(6)
        .message(big);
    fx.entry(host)
        .unit("docker.service")
        .identifier("0123456789ab")
        .pid(3100)
        .priority(6)
        .field("CONTAINER_NAME", format!("web-{name}"))
        .field("CONTAINER_ID", "0123456789ab")
        .field("CONTAINER_ID_FULL", "0123456789ab".repeat(5) + "0123")
        .field("CONTAINER_TAG", "0123456789ab")
        .field("IMAGE_NAME", "nginx:1.25")
        .message("GET / HTTP/1.1 200");
    fx.entry(host)
        .field("_SYSTEMD_USER_UNIT", "sync.service")
        .field("_COMM", "sync-daemon")
        .pid(9000)
        .priority(5)
        .message("user unit, no system unit, no identifier");
    fx.entry(host)
        .identifier("kernel")
        .priority(4)
        .message("kernel: no unit at all");
    fx.entry(host)
        .unit("systemd-coredump@0-1-0.service")
        .identifier("systemd-coredump")
        .pid(1234)
        .priority(2)
        .field("COREDUMP_UNIT", "crashy.service")
        .field("LABEL", "first")
        .field("LABEL", "second")
        .message("Process 99 (crashy) dumped core.");
}

/// What the `journal` view must say about a fixture entry, by the rules in
/// ARCHITECTURE.md ("Labels").
struct Expected {
    unit: Option<String>,
    about_unit: Option<String>,
    container: Option<String>,
    identifier: Option<String>,
    priority: Option<i64>,
    pid: Option<i64>,
}

fn expected_labels(entry: &jr_tests::Entry) -> Expected {
    let first = |names: &[&str]| names.iter().find_map(|n| entry.text(n)).map(str::to_owned);
    Expected {
        unit: first(&["_SYSTEMD_UNIT", "_SYSTEMD_USER_UNIT", "SYSLOG_IDENTIFIER"]),
        about_unit: first(&["UNIT", "USER_UNIT", "OBJECT_SYSTEMD_UNIT", "COREDUMP_UNIT"]),
        container: first(&["CONTAINER_NAME"]),
        identifier: first(&["SYSLOG_IDENTIFIER", "_COMM"]),
        priority: entry.text("PRIORITY").and_then(|p| p.parse().ok()),
        pid: entry.text("_PID").and_then(|p| p.parse().ok()),
    }
}

/// A host's journal directory and the identity its agent ships under.
struct Shipped {
    dir: PathBuf,
    hostname: String,
    machine_id: String,
    boot_id: String,
}

async fn ships_every_entry_once(layout: Layout) {
    let work = workdir();
    let mut fx = Fixture::new();
    let hosts = [Host::new("web-1"), Host::new("db-1"), Host::new("build-1")];
    let mut shipped = Vec::new();
    for host in &hosts {
        add_variety(&mut fx, host);
        let dir = work.path().join(&host.hostname);
        std::fs::create_dir(&dir).expect("host directory");
        fx.write_new(&dir.join("system.journal"), layout);
        shipped.push(Shipped {
            dir,
            hostname: host.hostname.clone(),
            machine_id: host.machine_id.clone(),
            boot_id: host.boot_id.clone(),
        });
    }
    // The third agent ships under an identity of its own choosing.
    shipped[2].hostname = "ci-builder".to_owned();
    shipped[2].machine_id = "5eed5eed5eed5eed5eed5eed5eed5eed".to_owned();

    let server = Server::start(work.path()).await;
    let mut agents = Vec::new();
    for (i, s) in shipped.iter().enumerate() {
        let mut cmd = Agent::command(&server, work.path(), &hosts[i].hostname)
            .directory(&s.dir)
            .no_follow();
        if i == 2 {
            cmd = cmd.hostname(&s.hostname).machine_id(&s.machine_id);
        }
        agents.push(cmd.spawn());
    }
    for agent in &mut agents {
        agent.wait_success(SHIP_TIMEOUT).await;
    }

    let db = Db::open(server.db_path()).await;
    let mut expected_cursors = Vec::new();
    let mut logged: Vec<(&Shipped, Logged)> = Vec::new();
    for s in &shipped {
        for entry in journalctl::read_directory(&s.dir) {
            expected_cursors.push(entry.cursor.clone());
            logged.push((s, entry));
        }
    }
    assert_eq!(
        logged.len(),
        fx.entries().len(),
        "journalctl lists every fixture entry"
    );
    if let Err(e) = db.holds_exactly(&expected_cursors).await {
        panic!("{e}");
    }

    let rows: HashMap<String, JournalRow> = db
        .rows()
        .await
        .into_iter()
        .map(|r| (r.cursor.clone(), r))
        .collect();
    let mut wrong = Vec::new();
    for (s, entry) in &logged {
        let tag = entry.tag().expect("fixture entries carry their tag");
        let made = fx
            .by_tag(tag)
            .expect("journalctl's entry is one of the fixture's");
        let row = &rows[&entry.cursor];
        let want = expected_labels(made);
        let mut check = |what: &str, ok: bool, detail: String| {
            if !ok {
                wrong.push(format!("{TAG}={tag} {what}: {detail}"));
            }
        };
        check(
            "host",
            row.host == s.hostname,
            format!("{:?} != {:?}", row.host, s.hostname),
        );
        check(
            "machine_id",
            row.machine_id == s.machine_id,
            format!("{:?} != {:?}", row.machine_id, s.machine_id),
        );
        check(
            "boot_id",
            row.boot_id.as_deref() == Some(s.boot_id.as_str()),
            format!("{:?} != {:?}", row.boot_id, s.boot_id),
        );
        check(
            "realtime_usec",
            row.realtime_usec as u64 == entry.realtime_usec
                && entry.realtime_usec == made.realtime_usec,
            format!(
                "stored {} journal {} made {}",
                row.realtime_usec, entry.realtime_usec, made.realtime_usec
            ),
        );
        check(
            "message bytes",
            row.message.as_deref() == entry.value("MESSAGE")
                && entry.value("MESSAGE") == made.value("MESSAGE"),
            format!(
                "stored {} bytes, journal {} bytes, made {} bytes",
                row.message.as_ref().map_or(0, Vec::len),
                entry.value("MESSAGE").map_or(0, <[u8]>::len),
                made.value("MESSAGE").map_or(0, <[u8]>::len)
            ),
        );
        check(
            "unit",
            row.unit == want.unit,
            format!("{:?} != {:?}", row.unit, want.unit),
        );
        check(
            "about_unit",
            row.about_unit == want.about_unit,
            format!("{:?} != {:?}", row.about_unit, want.about_unit),
        );
        check(
            "container",
            row.container == want.container,
            format!("{:?} != {:?}", row.container, want.container),
        );
        check(
            "identifier",
            row.identifier == want.identifier,
            format!("{:?} != {:?}", row.identifier, want.identifier),
        );
        check(
            "priority",
            row.priority == want.priority,
            format!("{:?} != {:?}", row.priority, want.priority),
        );
        check(
            "pid",
            row.pid == want.pid,
            format!("{:?} != {:?}", row.pid, want.pid),
        );
    }
    assert!(
        wrong.is_empty(),
        "{} wrong values in the journal view:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    let hosts_table = db.hosts().await;
    for s in &shipped {
        let host = hosts_table
            .iter()
            .find(|h| h.machine_id == s.machine_id)
            .unwrap_or_else(|| panic!("no hosts row for {}: {hosts_table:?}", s.machine_id));
        let last = journalctl::read_directory(&s.dir)
            .pop()
            .expect("non-empty journal");
        assert_eq!(host.hostname, s.hostname);
        assert_eq!(
            host.cursor, last.cursor,
            "{}'s committed cursor is its last entry",
            s.hostname
        );
    }
    assert_eq!(
        hosts_table.len(),
        shipped.len(),
        "one hosts row per agent identity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_is_stored_once_with_its_labels_and_bytes() {
    ships_every_entry_once(Layout::Default).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_uncompressed_layout_ships_the_same() {
    ships_every_entry_once(Layout::Legacy).await;
}
