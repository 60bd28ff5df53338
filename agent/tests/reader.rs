//! The journalctl reader over real journal files written by
//! systemd-journal-remote: byte-exact entries, resume and gap rules, follow
//! mode and ownership of the child.

mod common;

use common::*;
use jr_agent::metrics::Metrics;
use jr_agent::reader::{JournalSource, ReadEvent, Reader, ReaderError, ReaderOptions, StartAt};
use jr_journal::cursor::Cursor;
use jr_journal::labels::Labels;
use jr_journal::Entry;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn source_file(path: &Path) -> JournalSource {
    JournalSource {
        journalctl: "journalctl".into(),
        files: vec![path.to_path_buf()],
        ..Default::default()
    }
}

fn source_dir(dir: &Path) -> JournalSource {
    JournalSource {
        journalctl: "journalctl".into(),
        directory: Some(dir.to_path_buf()),
        ..Default::default()
    }
}

fn opts(source: JournalSource, start: StartAt, follow: bool) -> ReaderOptions {
    ReaderOptions {
        source,
        start,
        follow,
        max_field_bytes: 4 << 20,
    }
}

/// Reads until journalctl ends (no follow).
async fn read_all(o: ReaderOptions) -> (Vec<ReadEvent>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let mut reader = Reader::spawn(&o, metrics.clone()).unwrap();
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, reader.events.recv())
            .await
            .expect("reader stalled")
        {
            Some(Ok(e)) => events.push(e),
            Some(Err(e)) => panic!("reader failed: {e}"),
            None => break,
        }
    }
    (events, metrics)
}

fn entries(events: &[ReadEvent]) -> Vec<&Entry> {
    events
        .iter()
        .filter_map(|e| match e {
            ReadEvent::Entry(e) => Some(e),
            ReadEvent::Gap(_) => None,
        })
        .collect()
}

fn messages(events: &[ReadEvent]) -> Vec<Vec<u8>> {
    entries(events)
        .iter()
        .map(|e| Labels::of(&e.fields).message.unwrap_or_default().to_vec())
        .collect()
}

fn values<'a>(e: &'a Entry, name: &str) -> Vec<&'a [u8]> {
    e.fields
        .iter()
        .filter(|f| f.name == name)
        .map(|f| &f.value[..])
        .collect()
}

#[tokio::test]
async fn reads_real_journal_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path(), "fixture");
    let big: Vec<u8> = (0..200 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let specs = vec![
        Spec::new(0, "a.service", b"plain text"),
        Spec::new(1_000, "b.service", b"bin\0ary \xff\xfe not utf-8"),
        Spec::new(2_000, "c.service", &big),
        Spec::new(3_000, "d.service", b"first line\nsecond line")
            .with("TAG", b"one")
            .with("TAG", b"two"),
        Spec::new(4_000, "e.service", b"docker says hi")
            .with("CONTAINER_NAME", b"web")
            .with("CONTAINER_ID", b"abc123"),
    ];
    write_journal(&path, &specs);

    let (events, metrics) = read_all(opts(source_file(&path), StartAt::Head, false)).await;
    let got = entries(&events);
    assert_eq!(got.len(), specs.len());
    assert_eq!(
        messages(&events),
        specs
            .iter()
            .map(|s| s.message().to_vec())
            .collect::<Vec<_>>()
    );
    for (e, s) in got.iter().zip(&specs) {
        assert_eq!(e.realtime_usec, T0 + s.at);
        let c: Cursor = e.cursor.parse().expect("journalctl's cursor parses");
        assert_eq!(c.realtime_usec, e.realtime_usec);
        assert!(
            e.fields.iter().all(|f| !f.name.starts_with(b"__")),
            "address fields stripped"
        );
        assert_eq!(values(e, "_MACHINE_ID"), [MACHINE_ID.as_bytes()]);
    }
    let mut tags = values(got[3], "TAG");
    tags.sort();
    assert_eq!(tags, [&b"one"[..], b"two"], "repeated fields kept");
    let l = Labels::of(&got[4].fields);
    assert_eq!((l.unit, l.container), (Some("e.service"), Some("web")));
    let snap = metrics.snapshot();
    assert_eq!((snap.read, snap.malformed, snap.gaps), (5, 0, 0));
}

#[tokio::test]
async fn field_cap_truncates_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path(), "capped");
    let big = vec![b'z'; 100_000];
    write_journal(
        &path,
        &[
            Spec::new(0, "a.service", &big),
            Spec::new(1, "a.service", b"after"),
        ],
    );
    let mut o = opts(source_file(&path), StartAt::Head, false);
    o.max_field_bytes = 1000;
    let (events, _) = read_all(o).await;
    let m = messages(&events);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0], vec![b'z'; 1000]);
    assert_eq!(m[1], b"after");
}

#[tokio::test]
async fn resume_skips_exactly_the_cursor_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path(), "resume");
    write_journal(&path, &plain(0, 6, "a.service"));
    let (all, _) = read_all(opts(source_file(&path), StartAt::Head, false)).await;
    let all = entries(&all).into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(all.len(), 6);

    let at = |i: usize| StartAt::After(all[i].cursor.parse().unwrap());
    let (events, metrics) = read_all(opts(source_file(&path), at(2), false)).await;
    assert!(
        matches!(events[0], ReadEvent::Entry(_)),
        "no gap when the cursor's entry exists"
    );
    assert_eq!(
        messages(&events),
        [
            b"entry 3".to_vec(),
            b"entry 4".to_vec(),
            b"entry 5".to_vec()
        ]
    );
    assert_eq!(metrics.snapshot().gaps, 0);

    let (events, _) = read_all(opts(source_file(&path), at(5), false)).await;
    assert!(
        events.is_empty(),
        "resuming at the newest entry reads nothing"
    );

    let (events, _) = read_all(opts(source_file(&path), StartAt::Tail, false)).await;
    assert!(events.is_empty());
}

#[tokio::test]
async fn vanished_cursor_entry_is_reported_as_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let old = journal_path(dir.path(), "old");
    let new = journal_path(dir.path(), "new");
    write_journal(&old, &plain(0, 3, "a.service"));
    write_journal(&new, &plain(3, 3, "a.service"));
    let (events, _) = read_all(opts(source_dir(dir.path()), StartAt::Head, false)).await;
    let all = entries(&events).into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(all.len(), 6);
    let cursor: Cursor = all[1].cursor.parse().unwrap();

    // The file holding the cursor's entry is vacuumed.
    std::fs::remove_file(&old).unwrap();
    let (events, metrics) = read_all(opts(
        source_dir(dir.path()),
        StartAt::After(cursor.clone()),
        false,
    ))
    .await;
    let ReadEvent::Gap(gap) = &events[0] else {
        panic!("expected a gap first, got {:?}", events[0]);
    };
    assert_eq!(gap.cursor, cursor.to_string());
    assert_eq!(gap.first, all[3].cursor);
    // The files are separate sequence-number spaces: the count is unknowable.
    assert_eq!((gap.entries, gap.exact), (1, false));
    assert_eq!(
        messages(&events),
        [
            b"entry 3".to_vec(),
            b"entry 4".to_vec(),
            b"entry 5".to_vec()
        ]
    );
    assert_eq!(metrics.snapshot().gaps, 1);
}

#[tokio::test]
async fn journalctl_failures_are_errors() {
    let metrics = Arc::new(Metrics::default());
    let missing = JournalSource {
        journalctl: "/nonexistent/journalctl".into(),
        ..Default::default()
    };
    let err = Reader::spawn(&opts(missing, StartAt::Head, false), metrics.clone()).unwrap_err();
    assert!(matches!(err, ReaderError::Spawn { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let gone = source_file(&dir.path().join("none.journal"));
    let mut reader = Reader::spawn(&opts(gone, StartAt::Head, true), metrics).unwrap();
    let item = tokio::time::timeout(WAIT, reader.events.recv())
        .await
        .unwrap();
    match item {
        Some(Err(ReaderError::Exited { stderr, .. })) => {
            assert!(stderr.contains("No such file"), "{stderr}")
        }
        other => panic!("expected journalctl's exit, got {other:?}"),
    }
}

fn journalctl_pids_reading(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|d| d.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c).contains(&needle)
                        && String::from_utf8_lossy(&c).contains("journalctl")
                })
                .unwrap_or(false)
        })
        .collect()
}

#[tokio::test]
async fn follows_appends_and_kills_journalctl_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = journal_path(dir.path(), "follow");
    write_journal(&path, &plain(0, 2, "a.service"));
    let metrics = Arc::new(Metrics::default());
    let mut reader =
        Reader::spawn(&opts(source_file(&path), StartAt::Head, true), metrics).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(WAIT, reader.events.recv())
            .await
            .unwrap()
        {
            Some(Ok(e)) => got.push(e),
            other => panic!("unexpected {other:?}"),
        }
    }
    write_journal(&path, &plain(2, 2, "a.service"));
    while got.len() < 4 {
        match tokio::time::timeout(WAIT, reader.events.recv())
            .await
            .expect("appended entries arrive")
        {
            Some(Ok(e)) => got.push(e),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(messages(&got)[3], b"entry 3");
    assert_eq!(journalctl_pids_reading(&path).len(), 1);

    drop(reader);
    for _ in 0..200 {
        if journalctl_pids_reading(&path).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("journalctl still running after the reader was dropped");
}
