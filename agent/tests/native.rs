//! The native reader through the agent's reader interface, with the
//! journalctl reader as its oracle: identical entries and cursors, resume
//! across readers, follow mode latency, the fallback to journalctl, and
//! filters decided before an entry is decoded.

mod common;

use common::*;
use jr_agent::batch::{Batcher, Limits, PendingBatch};
use jr_agent::filter::Filter;
use jr_agent::journal_reader::{self, JournalReader};
use jr_agent::metrics::Metrics;
use jr_agent::native;
use jr_agent::reader::{JournalSource, ReadEvent, ReaderOptions, StartAt};
use jr_agent::ReaderKind;
use jr_journal::cursor::Cursor;
use jr_journal::labels::Labels;
use jr_journal::Entry;
use jr_journal_file::FieldFilter;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const WAIT: Duration = Duration::from_secs(20);
const ALPHA: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const BETA: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";

fn dir_source(dir: &Path) -> JournalSource {
    JournalSource {
        journalctl: "journalctl".into(),
        directory: Some(dir.to_path_buf()),
        ..Default::default()
    }
}

fn file_source(files: &[&Path]) -> JournalSource {
    JournalSource {
        journalctl: "journalctl".into(),
        files: files.iter().map(|p| p.to_path_buf()).collect(),
        ..Default::default()
    }
}

fn opts(source: &JournalSource, start: StartAt, follow: bool) -> ReaderOptions {
    ReaderOptions {
        source: source.clone(),
        start,
        follow,
        max_field_bytes: 4 << 20,
    }
}

async fn start(kind: ReaderKind, o: &ReaderOptions) -> (JournalReader, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let r = journal_reader::start(kind, o, &Filter::default(), metrics.clone())
        .await
        .expect("reader starts");
    (r, metrics)
}

/// Reads to the end with reader `kind`, which must be the one used.
async fn read_all(kind: ReaderKind, o: &ReaderOptions) -> (Vec<ReadEvent>, Arc<Metrics>) {
    let (mut r, metrics) = start(kind, o).await;
    assert_eq!((r.kind, &r.fallback), (kind, &None), "no fallback");
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, r.events.recv())
            .await
            .expect("reader stalled")
        {
            Some(Ok(e)) => events.push(e),
            Some(Err(e)) => panic!("{kind} reader failed: {e}"),
            None => break,
        }
    }
    (events, metrics)
}

/// Both readers, which must agree; returns what they read.
async fn both(o: &ReaderOptions) -> Vec<ReadEvent> {
    let (native, nm) = read_all(ReaderKind::Native, o).await;
    let (oracle, om) = read_all(ReaderKind::Journalctl, o).await;
    assert_eq!(native.len(), oracle.len(), "event count, start {}", o.start);
    for (i, (n, j)) in native.iter().zip(&oracle).enumerate() {
        assert_eq!(n, j, "event {i}, start {}", o.start);
    }
    let (n, j) = (nm.snapshot(), om.snapshot());
    assert_eq!((n.read, n.gaps), (j.read, j.gaps), "counters");
    assert_eq!(n.corrupt, 0);
    native
}

fn entries(events: &[ReadEvent]) -> Vec<Entry> {
    events
        .iter()
        .filter_map(|e| match e {
            ReadEvent::Entry(e) => Some(e.clone()),
            ReadEvent::Gap(_) => None,
        })
        .collect()
}

fn message(e: &Entry) -> Vec<u8> {
    Labels::of(&e.fields).message.unwrap_or_default().to_vec()
}

/// `spec` as written by host `host` with machine id `id`.
fn on_host(mut spec: Spec, host: &str, id: &str) -> Spec {
    for (name, value) in &mut spec.fields {
        match name.as_str() {
            "_HOSTNAME" => *value = host.as_bytes().to_vec(),
            "_MACHINE_ID" => *value = id.as_bytes().to_vec(),
            _ => {}
        }
    }
    spec
}

/// Two hosts' entries, interleaved in time, with binary, large, multi-line
/// and repeated values.
fn fixture(dir: &Path) {
    let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let mut alpha = Vec::new();
    let mut beta = Vec::new();
    for i in 0..40u64 {
        let at = i * 1_000_000;
        let msg = format!("alpha {i}");
        let mut s = Spec::new(at, "a.service", msg.as_bytes());
        match i % 5 {
            1 => s = Spec::new(at, "a.service", b"bin\0ary \xff\xfe\x01 not utf-8"),
            2 => s = s.with("TRACE", b"line one\nline two\n\nline four"),
            3 => s = s.with("TAG", b"x").with("TAG", b"y"),
            _ => {}
        }
        if i == 7 {
            s = Spec::new(at, "big.service", &big);
        }
        alpha.push(on_host(s, "alpha", ALPHA));
        let msg = format!("beta {i}\nsecond line");
        let b = Spec::new(at + 500_000, "b.service", msg.as_bytes())
            .with("CONTAINER_NAME", b"web")
            .with("BLOB", &[0u8, 1, 2, 255, b'\n', b'=']);
        beta.push(on_host(b, "beta", BETA));
    }
    // Default layout (compact, keyed hash, zstd) and the older one.
    write_journal_as(&journal_path(dir, "alpha"), &alpha, &[], &[]);
    write_journal_as(
        &journal_path(dir, "beta"),
        &beta,
        &[
            ("SYSTEMD_JOURNAL_COMPACT", "0"),
            ("SYSTEMD_JOURNAL_KEYED_HASH", "0"),
        ],
        &["--compress=no"],
    );
}

#[tokio::test]
async fn native_and_journalctl_readers_agree_and_resume_from_each_others_cursors() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let src = dir_source(dir.path());

    let all = entries(&both(&opts(&src, StartAt::Head, false)).await);
    assert_eq!(all.len(), 80);
    assert!(all.iter().any(|e| message(e).len() == 200 * 1024));
    assert!(all.iter().any(|e| message(e).contains(&0xff)));
    let hosts: std::collections::BTreeSet<_> = all
        .iter()
        .filter_map(|e| Labels::of(&e.fields).hostname.map(str::to_owned))
        .collect();
    assert_eq!(hosts.len(), 2);

    // A cursor taken with either reader resumes with the other: both
    // continue right after it (the readers agreed on every cursor above).
    for k in [0, 13, 40, 78, 79] {
        let cursor: Cursor = all[k].cursor.parse().unwrap();
        let after = entries(&both(&opts(&src, StartAt::After(cursor), false)).await);
        assert_eq!(after, all[k + 1..], "resume after entry {k}");
    }

    // Files listed one by one, tail and a start time.
    let files = file_source(&[
        &journal_path(dir.path(), "beta"),
        &journal_path(dir.path(), "alpha"),
    ]);
    assert_eq!(
        entries(&both(&opts(&files, StartAt::Head, false)).await),
        all
    );
    assert!(both(&opts(&src, StartAt::Tail, false)).await.is_empty());
    let since = SystemTime::UNIX_EPOCH + Duration::from_micros(T0 + 25_000_000);
    let later = entries(&both(&opts(&src, StartAt::Since(since), false)).await);
    assert_eq!(later, all[50..], "entries from 25 s after the first on");

    // The cursor's entry is vacuumed: both report the same gap.
    let beta_cursor: Cursor = all[21].cursor.parse().unwrap();
    assert!(all[21].cursor.contains(&format!("b={BOOT_ID}")));
    std::fs::remove_file(journal_path(dir.path(), "beta")).unwrap();
    let events = both(&opts(&src, StartAt::After(beta_cursor), false)).await;
    let ReadEvent::Gap(gap) = &events[0] else {
        panic!("expected a gap first, got {:?}", events[0]);
    };
    assert_eq!(
        gap.first, all[22].cursor,
        "continues at the next alpha entry"
    );
}

#[tokio::test]
async fn native_follow_sees_a_new_file_within_a_second_and_stops_with_its_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let specs = |from, n, host, id| {
        plain(from, n, "a.service")
            .into_iter()
            .map(|s| on_host(s, host, id))
            .collect::<Vec<_>>()
    };
    write_journal(
        &journal_path(dir.path(), "alpha"),
        &specs(0, 5, "alpha", ALPHA),
    );
    let (r, _) = start(
        ReaderKind::Native,
        &opts(&dir_source(dir.path()), StartAt::Head, true),
    )
    .await;
    assert_eq!(r.kind, ReaderKind::Native);
    let (mut events, guard) = r.into_parts();
    let mut got = Vec::new();
    while got.len() < 5 {
        match tokio::time::timeout(WAIT, events.recv()).await.unwrap() {
            Some(Ok(ReadEvent::Entry(e))) => got.push(e),
            other => panic!("unexpected {other:?}"),
        }
    }

    // Poll for `n` more entries every 50 ms for up to 3 s.
    async fn arrive(
        events: &mut tokio::sync::mpsc::Receiver<jr_agent::reader::ReaderItem>,
        got: &mut Vec<Entry>,
        n: usize,
        what: &str,
    ) -> Duration {
        let t = Instant::now();
        let want = got.len() + n;
        for _ in 0..60 {
            while let Ok(item) = events.try_recv() {
                match item {
                    Ok(ReadEvent::Entry(e)) => got.push(e),
                    other => panic!("unexpected {other:?}"),
                }
            }
            if got.len() >= want {
                let took = t.elapsed();
                println!("{what}: {n} entries arrived after {took:?}");
                return took;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: {} of {n} entries within 3 s", got.len() + n - want);
    }

    write_journal(
        &journal_path(dir.path(), "beta"),
        &specs(5, 3, "beta", BETA),
    );
    let took = arrive(&mut events, &mut got, 3, "new file").await;
    assert!(took < Duration::from_secs(1), "new file took {took:?}");
    write_journal(
        &journal_path(dir.path(), "alpha"),
        &specs(8, 2, "alpha", ALPHA),
    );
    let took = arrive(&mut events, &mut got, 2, "appended").await;
    assert!(took < Duration::from_secs(1), "append took {took:?}");
    let messages: Vec<Vec<u8>> = got.iter().map(message).collect();
    let expected: Vec<Vec<u8>> = (0..10).map(|i| format!("entry {i}").into_bytes()).collect();
    assert_eq!(messages, expected, "each entry once, in order");

    // The native reader's result is what journalctl reads now.
    let oracle = entries(
        &read_all(
            ReaderKind::Journalctl,
            &opts(&dir_source(dir.path()), StartAt::Head, false),
        )
        .await
        .0,
    );
    assert_eq!(got, oracle);
    assert!(events.try_recv().is_err(), "nothing read twice");

    assert!(guard.is_running());
    drop(events);
    for _ in 0..100 {
        if !guard.is_running() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the native reader kept running after its receiver was dropped");
}

/// Sets an incompatible-flags bit (header offset 12, little-endian u32)
/// that no journal reader knows.
fn flip_unknown_incompatible_flag(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mut flags = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    flags |= 1 << 30;
    bytes[12..16].copy_from_slice(&flags.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn unknown_incompatible_flags_fall_back_to_journalctl_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = journal_path(dir.path(), "good");
    write_journal(&good, &plain(0, 5, "a.service"));
    let odd_dir = dir.path().join("odd");
    std::fs::create_dir(&odd_dir).unwrap();
    let odd = journal_path(&odd_dir, "odd");
    std::fs::copy(&good, &odd).unwrap();
    flip_unknown_incompatible_flag(&odd);

    for src in [file_source(&[&odd]), dir_source(&odd_dir)] {
        let (mut r, metrics) = start(ReaderKind::Native, &opts(&src, StartAt::Head, false)).await;
        assert_eq!(r.kind, ReaderKind::Journalctl, "fell back");
        let why = r.fallback.clone().expect("a reason");
        assert!(why.contains("does not know"), "{why}");
        assert!(why.contains("odd.journal"), "{why}");
        assert_eq!(metrics.snapshot().reader_fallbacks, 1);
        // journalctl refuses the file too: nothing is read from it.
        while let Some(item) = tokio::time::timeout(WAIT, r.events.recv()).await.unwrap() {
            if let Ok(ReadEvent::Entry(e)) = item {
                panic!("journalctl read an entry of an unreadable file: {e:?}");
            }
        }
    }

    // The untouched file is read natively.
    let (r, metrics) = start(
        ReaderKind::Native,
        &opts(&file_source(&[&good]), StartAt::Head, false),
    )
    .await;
    assert_eq!(
        (r.kind, metrics.snapshot().reader_fallbacks),
        (ReaderKind::Native, 0)
    );
}

#[tokio::test]
async fn damaged_regions_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path(), "whole");
    write_journal(&path, &plain(0, 300, "a.service"));
    let cut = journal_path(dir.path(), "cut");
    let bytes = std::fs::read(&path).unwrap();
    // The file is allocated ahead and starts with its hash tables; cut
    // between the first entry array (header offset 176) and the end of
    // what was written.
    let used = bytes.iter().rposition(|b| *b != 0).unwrap();
    let first_array = u64::from_le_bytes(bytes[176..184].try_into().unwrap()) as usize;
    assert!(first_array > 0 && first_array < used);
    std::fs::write(&cut, &bytes[..first_array + (used - first_array) * 6 / 10]).unwrap();

    let (events, metrics) = read_all(
        ReaderKind::Native,
        &opts(&file_source(&[&cut]), StartAt::Head, false),
    )
    .await;
    let got = entries(&events);
    let snap = metrics.snapshot();
    assert!(snap.corrupt > 0, "{snap}");
    assert!(!got.is_empty() && got.len() < 300, "{} entries", got.len());
    for (i, e) in got.iter().enumerate() {
        assert_eq!(
            message(e),
            format!("entry {i}").into_bytes(),
            "good entries in order"
        );
    }
}

/// Reads `o` natively with `filter` decided before decoding, to the end.
async fn read_filtered(o: &ReaderOptions, filter: &Filter) -> (Vec<ReadEvent>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let (mut rx, _guard) = native::spawn_filtered(o, filter.clone(), metrics.clone())
        .await
        .expect("reader starts");
    let mut events = Vec::new();
    while let Some(item) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("reader stalled")
    {
        events.push(item.expect("read"));
    }
    (events, metrics)
}

/// Everything the batcher makes of `events` with `filter`.
fn batches(events: &[ReadEvent], filter: &Filter) -> (Vec<PendingBatch>, u64) {
    let metrics = Arc::new(Metrics::default());
    let limits = Limits {
        entries: 7,
        bytes: 1 << 30,
        linger: Duration::from_secs(3600),
    };
    let mut b = Batcher::new(limits, filter.clone(), String::new(), metrics.clone());
    let mut out = Vec::new();
    for e in events {
        b.push(e.clone(), &mut out);
    }
    out.extend(b.take());
    (out, metrics.snapshot().filtered)
}

#[tokio::test]
async fn filters_decided_before_decoding_give_the_same_batches() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let o = opts(&dir_source(dir.path()), StartAt::Head, false);
    let (full, _) = read_all(ReaderKind::Native, &o).await;
    assert_eq!(full.len(), 80);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let filters = [
        Filter::new(&s(&["a.service"]), &[], None, &[]).unwrap(),
        Filter::new(&[], &s(&["b*"]), None, &[]).unwrap(),
        Filter::new(&[], &[], Some("err"), &[]).unwrap(),
        Filter::new(&[], &[], None, &s(&["CONTAINER_NAME=web", "TAG=y"])).unwrap(),
        Filter::new(&[], &[], None, &s(&["TAG=y"])).unwrap(),
    ];
    for (n, filter) in filters.iter().enumerate() {
        let (early, metrics) = read_filtered(&o, filter).await;
        assert_eq!(early.len(), full.len(), "filter {n}: one event per entry");
        let (want, want_filtered) = batches(&full, filter);
        let (got, got_filtered) = batches(&early, filter);
        assert_eq!(got, want, "filter {n}: batches");
        assert_eq!(got_filtered, want_filtered, "filter {n}: filtered count");
        assert_eq!(metrics.snapshot().read, 80);
        let kept = full
            .iter()
            .filter(|e| matches!(e, ReadEvent::Entry(e) if filter.accepts(e)))
            .count();
        assert!(kept < 80, "filter {n} drops something");
        // Dropped entries arrive with only the fields the filter needs.
        for (a, b) in early.iter().zip(&full) {
            let (ReadEvent::Entry(a), ReadEvent::Entry(b)) = (a, b) else {
                panic!("entries only");
            };
            assert_eq!(a.cursor, b.cursor);
            if !filter.accepts(b) {
                assert!(a.fields.len() < b.fields.len(), "filter {n}: {a:?}");
                assert!(a.fields.iter().all(|f| filter.needs(f.name_str())));
            }
        }
    }
}
