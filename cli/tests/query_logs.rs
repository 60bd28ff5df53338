//! `jrctl logs` against a store filled through the real ingest path,
//! compared with what journalctl prints for the same fixture journals.

mod common;

use common::{journalctl, parse_export, Cluster, Fixture, Host, JournalWriter, Layout};
use std::path::PathBuf;
use tokio::sync::OnceCell;

/// Two hosts' journals and a server that stored them.
struct Shipped {
    cluster: Cluster,
    files: Vec<PathBuf>,
    alpha: Host,
    alpha_rebooted: Host,
    beta: Host,
}

/// The entries: two hosts interleaved on one clock, alpha rebooting half
/// way; units, pid-1 messages about a unit, priorities, multi-line, binary
/// and large messages, repeated fields, a Docker container, a source
/// timestamp.
async fn ship() -> Shipped {
    let cluster = Cluster::start().await;
    let alpha = Host::new("alpha");
    let alpha_rebooted = alpha.rebooted(2);
    let beta = Host::new("beta");
    let dirs = [cluster.path("journal-alpha"), cluster.path("journal-beta")];
    for d in &dirs {
        std::fs::create_dir_all(d).expect("journal directory");
    }
    let files = vec![dirs[0].join("alpha.journal"), dirs[1].join("beta.journal")];
    let mut writers = [
        JournalWriter::create(&files[0], Layout::Default),
        JournalWriter::create(&files[1], Layout::Legacy),
    ];
    let mut fx = Fixture::new();
    let units = ["web.service", "db.service", "cron.service"];
    let words = [
        "request served",
        "connection timeout",
        "Error: disk full",
        "error reading config",
        "all good",
    ];
    for i in 0..90usize {
        let (host, w) = match i % 3 {
            0 => (&beta, 1),
            _ if i < 45 => (&alpha, 0),
            _ => (&alpha_rebooted, 0),
        };
        let mut e = fx.make(host);
        let unit = units[i % units.len()];
        match i % 10 {
            3 => {
                // systemd writing about a unit.
                e.unit("init.scope")
                    .identifier("systemd")
                    .field("_COMM", "systemd")
                    .pid(1)
                    .field("UNIT", unit)
                    .priority(6)
                    .message(format!("Started {unit}."));
            }
            5 => {
                e.unit("docker.service")
                    .identifier("redis")
                    .pid(900)
                    .field(
                        "CONTAINER_NAME",
                        if i % 20 == 5 { "redis" } else { "nginx" },
                    )
                    .field("CONTAINER_ID", "0123456789ab")
                    .priority((i % 8) as u8)
                    .message(format!("container line {i}"));
            }
            7 => {
                e.unit(unit)
                    .identifier("app")
                    .pid(100 + i as u32)
                    .priority(3)
                    .message(format!("first line {i}\nsecond line\n\tthird, indented"));
            }
            _ => {
                e.unit(unit)
                    .identifier(unit.trim_end_matches(".service"))
                    .pid(100 + (i % 4) as u32)
                    .priority((i % 8) as u8)
                    .message(format!("{} #{i}", words[i % words.len()]));
            }
        }
        match i {
            11 => {
                e.fields.retain(|(n, _)| n != "MESSAGE");
                e.message(b"bin\0ary \xff\xfe data");
            }
            22 => {
                e.fields.retain(|(n, _)| n != "MESSAGE");
                e.message("x".repeat(5000));
            }
            33 => {
                e.field("TAG_LIST", "one").field("TAG_LIST", "two");
            }
            44 => {
                let src = e.realtime_usec - 2_000_000;
                e.field("_SOURCE_REALTIME_TIMESTAMP", src.to_string());
            }
            55 => {
                e.fields.retain(|(n, _)| n != "MESSAGE");
            }
            66 => {
                e.fields.retain(|(n, _)| n != "MESSAGE");
                e.message("coloured \x1b[1;31mred\x1b[0m text\r\nnext");
            }
            _ => {}
        }
        writers[w].append(&e);
    }
    for w in writers {
        w.finish();
    }
    for d in &dirs {
        cluster.ship(d).await;
    }
    Shipped {
        cluster,
        files,
        alpha,
        alpha_rebooted,
        beta,
    }
}

static SHIPPED: OnceCell<Shipped> = OnceCell::const_new();

/// The fixture is shipped once per test binary; the tests only read it.
async fn shipped() -> &'static Shipped {
    SHIPPED.get_or_init(ship).await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `jrctl logs ARGS` prints exactly what `journalctl ORACLE` prints.
async fn same(s: &Shipped, args: &[&str], oracle: &[&str]) {
    let mut jr = vec!["logs", "-q"];
    jr.extend_from_slice(args);
    let ours = s.cluster.ok(&jr).await;
    let theirs = journalctl(&s.files, oracle);
    assert!(!theirs.is_empty(), "oracle {oracle:?} prints something");
    assert_eq!(
        text(&ours),
        text(&theirs),
        "jrctl {args:?} vs journalctl {oracle:?}"
    );
}

// One runtime for every test: the shared server lives on it.
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

macro_rules! same_as_journalctl {
    ($name:ident, [$($a:expr),*], [$($o:expr),*]) => {
        #[test]
        fn $name() {
            rt().block_on(async {
                let s = shipped().await;
                same(s, &[$($a),*], &[$($o),*]).await;
            });
        }
    };
}

same_as_journalctl!(short_everything, [], []);
same_as_journalctl!(short_iso, ["-o", "short-iso"], ["-o", "short-iso"]);
same_as_journalctl!(
    short_precise,
    ["-o", "short-precise"],
    ["-o", "short-precise"]
);
same_as_journalctl!(cat, ["-o", "cat"], ["-o", "cat"]);
same_as_journalctl!(unit, ["-u", "web.service"], ["-u", "web.service"]);
same_as_journalctl!(unit_without_suffix, ["-u", "db"], ["-u", "db"]);
same_as_journalctl!(unit_glob, ["-u", "c*.service"], ["-u", "c*.service"]);
same_as_journalctl!(
    two_units,
    ["-u", "web.service", "-u", "cron.service"],
    ["-u", "web.service", "-u", "cron.service"]
);
same_as_journalctl!(priority, ["-p", "err"], ["-p", "err"]);
same_as_journalctl!(
    priority_range,
    ["-p", "err..warning"],
    ["-p", "err..warning"]
);
same_as_journalctl!(priority_number, ["-p", "2"], ["-p", "2"]);
same_as_journalctl!(grep_smart_case, ["-g", "error"], ["-g", "error"]);
same_as_journalctl!(grep_with_capitals, ["-g", "Error"], ["-g", "Error"]);
same_as_journalctl!(
    grep_regex,
    ["-g", "^(first|request) .*[0-9]$"],
    ["-g", "^(first|request) .*[0-9]$"]
);
same_as_journalctl!(
    since,
    ["--since", "2024-01-01 00:00:00.040"],
    ["--since", "2024-01-01 00:00:00.040"]
);
same_as_journalctl!(
    until,
    ["-U", "2024-01-01 00:00:00.020"],
    ["-U", "2024-01-01 00:00:00.020"]
);
same_as_journalctl!(
    since_until_unit,
    [
        "-S",
        "2024-01-01 00:00:00.010",
        "-U",
        "2024-01-01 00:00:00.070",
        "-u",
        "web.service"
    ],
    [
        "-S",
        "2024-01-01 00:00:00.010",
        "-U",
        "2024-01-01 00:00:00.070",
        "-u",
        "web.service"
    ]
);
same_as_journalctl!(lines, ["-n", "7"], ["-n", "7"]);
same_as_journalctl!(
    lines_of_a_unit,
    ["-n", "4", "-u", "db.service"],
    ["-n", "4", "-u", "db.service"]
);
same_as_journalctl!(reverse, ["-r"], ["-r"]);
same_as_journalctl!(reverse_lines, ["-r", "-n", "5"], ["-r", "-n", "5"]);
same_as_journalctl!(identifier, ["-t", "app"], ["-t", "app"]);
same_as_journalctl!(field_match, ["_PID=1"], ["_PID=1"]);
same_as_journalctl!(
    field_matches_or_and,
    ["_PID=102", "_PID=103", "PRIORITY=6"],
    ["_PID=102", "_PID=103", "PRIORITY=6"]
);
same_as_journalctl!(
    container,
    ["--container", "redis"],
    ["CONTAINER_NAME=redis"]
);
same_as_journalctl!(host, ["-H", "beta"], ["_HOSTNAME=beta"]);
same_as_journalctl!(host_glob, ["-H", "al*"], ["_HOSTNAME=alpha"]);
same_as_journalctl!(
    search_words,
    ["--search", "connection timeout"],
    ["-g", "connection timeout"]
);
// A word of several terms matches them in a row, whatever separates
// them, in any case; the index alone would also take "full ... disk".
same_as_journalctl!(
    search_a_word_of_several_terms,
    ["--search", "DISK-full"],
    ["-g", "disk full"]
);

#[test]
fn search_terms_out_of_order() {
    rt().block_on(async {
        let s = shipped().await;
        let found = s.cluster.ok(&["logs", "-q", "--search", "full.disk"]).await;
        assert_eq!(text(&found), "", "\"full disk\" is in no message");
        // As two words, each may be anywhere.
        let found = s
            .cluster
            .ok(&["logs", "-q", "-o", "cat", "--search", "full disk"])
            .await;
        assert_eq!(text(&found).lines().count(), 8, "{}", text(&found));
    });
}

#[test]
fn boots() {
    rt().block_on(async {
        let s = shipped().await;
        let first = s.alpha.boot_id.as_str();
        let second = s.alpha_rebooted.boot_id.as_str();
        let beta = s.beta.boot_id.as_str();
        let boot_match = |b: &str| format!("_BOOT_ID={b}");
        // The current boot of each host.
        same(s, &["-b"], &[&boot_match(second), &boot_match(beta)]).await;
        // The one before: only alpha has one.
        same(s, &["-b", "-1"], &[&boot_match(first)]).await;
        same(s, &["-b", "1", "-H", "alpha"], &[&boot_match(first)]).await;
        same(s, &["-b", first], &[&boot_match(first)]).await;
    });
}

#[test]
fn json_matches_journalctl() {
    rt().block_on(async {
        let s = shipped().await;
        let parse = |b: &[u8]| -> Vec<serde_json::Value> {
            b.split(|c| *c == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).expect("one JSON object per line"))
                .collect()
        };
        for args in [&[][..], &["-u", "web.service"][..], &["-p", "err"][..]] {
            let mut jr = vec!["logs", "-o", "json"];
            jr.extend_from_slice(args);
            let mut oracle = vec!["-o", "json"];
            oracle.extend_from_slice(args);
            let ours = parse(&s.cluster.ok(&jr).await);
            let theirs = parse(&journalctl(&s.files, &oracle));
            assert!(!theirs.is_empty());
            assert_eq!(ours, theirs, "jrctl {jr:?}");
        }
    });
}

#[test]
fn export_round_trips_through_journal_remote() {
    rt().block_on(async {
        let s = shipped().await;
        let ours = s.cluster.ok(&["logs", "-o", "export"]).await;
        let original = journalctl(&s.files, &["-o", "export"]);
        // Cursors survive the trip through the store unchanged.
        let (a, b) = (parse_export(&ours), parse_export(&original));
        assert_eq!(a.len(), b.len());
        assert_eq!(a, b, "jrctl's export equals journalctl's");

        // And journal-remote turns it into a journal that reads back the
        // same (apart from the cursors, which belong to the new file).
        let out = s.cluster.path("reimported.journal");
        let mut child = std::process::Command::new(jr_tests::fixture::JOURNAL_REMOTE)
            .arg("-o")
            .arg(&out)
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start systemd-journal-remote");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(&ours).expect("feed journal-remote");
        }
        let status = child.wait_with_output().expect("journal-remote finishes");
        assert!(status.status.success(), "{}", text(&status.stderr));
        let back = parse_export(&journalctl(&[out], &["-o", "export"]));
        // A journal file keeps an entry's fields in its own order (by data
        // object), so the order may change when the entries move to a new
        // file; names, values and repeats may not.
        let strip = |v: Vec<jr_proto::v1::Entry>| -> Vec<jr_proto::v1::Entry> {
            v.into_iter()
                .map(|mut e| {
                    e.cursor.clear();
                    e.fields
                        .sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
                    e
                })
                .collect()
        };
        assert_eq!(strip(back), strip(b));
    });
}

#[test]
fn paging_and_filters_agree_on_counts() {
    rt().block_on(async {
        let s = shipped().await;
        // Every filter with no match prints nothing but the quiet marker.
        let out = s.cluster.ok(&["logs", "-u", "nonexistent.service"]).await;
        assert_eq!(text(&out), "-- No entries --\n");
        let out = s.cluster.ok(&["logs", "-q", "-H", "gamma"]).await;
        assert!(out.is_empty());
    });
}
