use super::*;
use crate::reader::Gap;
use jr_journal::{Entry, Field};

fn entry(i: u64, unit: &str, msg_len: usize) -> Entry {
    Entry {
        cursor: format!("c{i}"),
        realtime_usec: i,
        monotonic_usec: i,
        fields: vec![
            Field {
                name: "_SYSTEMD_UNIT".into(),
                value: unit.as_bytes().to_vec().into(),
            },
            Field {
                name: "MESSAGE".into(),
                value: vec![b'x'; msg_len].into(),
            },
        ],
    }
}

fn limits(entries: usize, bytes: usize) -> Limits {
    Limits {
        entries,
        bytes,
        linger: Duration::from_millis(200),
    }
}

fn batcher(l: Limits, filter: Filter) -> Batcher {
    Batcher::new(l, filter, "start".into(), Arc::new(Metrics::default()))
}

fn cursors(b: &PendingBatch) -> Vec<String> {
    let decoded = b.decode();
    assert_eq!(decoded.entries.len() as u64, b.entries);
    decoded.entries.into_iter().map(|e| e.cursor).collect()
}

#[tokio::test(start_paused = true)]
async fn closes_on_entry_count_and_chains() {
    let mut b = batcher(limits(2, 1 << 20), Filter::default());
    let mut out = Vec::new();
    for i in 1..=5 {
        b.push(ReadEvent::Entry(entry(i, "a.service", 10)), &mut out);
    }
    assert_eq!(out.len(), 2);
    assert_eq!(cursors(&out[0]), ["c1", "c2"]);
    assert_eq!(
        (
            out[0].batch.seq,
            out[0].batch.prev_cursor.as_str(),
            out[0].batch.last_cursor.as_str()
        ),
        (1, "start", "c2")
    );
    assert_eq!(
        (
            out[1].batch.seq,
            out[1].batch.prev_cursor.as_str(),
            out[1].batch.last_cursor.as_str()
        ),
        (2, "c2", "c4")
    );
    let last = b.take().unwrap();
    assert_eq!((last.batch.seq, last.batch.prev_cursor.as_str()), (3, "c4"));
    assert_eq!(cursors(&last), ["c5"]);
    assert!(b.take().is_none(), "nothing read, no batch");
    assert!(out.iter().all(|p| p.bytes == p.decode().encoded_len()));
    // What is sent is that batch, in a ShipRequest.
    let frame = out[0].clone().into_frame(None);
    let sent = frame.decode().unwrap();
    assert_eq!(
        sent.kind,
        Some(jr_proto::v1::ship_request::Kind::Batch(out[0].decode()))
    );
}

#[tokio::test(start_paused = true)]
async fn packed_batches_hold_the_same_entries_compressed() {
    let l = limits(50, 1 << 20);
    let mut plain = batcher(l, Filter::default());
    let mut packed = batcher(l, Filter::default()).packing().unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 1..=120 {
        plain.push(ReadEvent::Entry(entry(i, "a.service", 200)), &mut a);
        packed.push(ReadEvent::Entry(entry(i, "a.service", 200)), &mut b);
    }
    a.extend(plain.take());
    b.extend(packed.take());
    assert_eq!(b.len(), 3);
    for (p, q) in a.iter().zip(&b) {
        assert!(q.encoded.is_empty());
        assert!(q.batch.packed_entries.len() * 10 < p.encoded.len());
        assert_eq!((q.entries, q.bytes), (p.entries, p.bytes));
        // What the server decodes from the frame, unpacked, is the batch.
        let Some(jr_proto::v1::ship_request::Kind::Batch(mut sent)) =
            q.clone().into_frame(None).decode().unwrap().kind
        else {
            panic!("a batch frame");
        };
        let content = zstd::bulk::decompress(&sent.packed_entries, q.bytes).unwrap();
        sent.entries = jr_proto::v1::PackedEntries::decode(content.as_slice())
            .unwrap()
            .entries;
        sent.packed_entries.clear();
        assert_eq!(sent, p.decode());
        assert_eq!(q.decode(), p.decode());
    }
}

#[tokio::test(start_paused = true)]
async fn closes_before_exceeding_the_byte_limit() {
    let mut b = batcher(limits(1000, 3000), Filter::default());
    let mut out = Vec::new();
    for i in 1..=3 {
        b.push(ReadEvent::Entry(entry(i, "a.service", 1000)), &mut out);
    }
    assert_eq!(out.len(), 1);
    assert_eq!(cursors(&out[0]), ["c1", "c2"]);
    assert!(out[0].bytes <= 3000);
    // An entry larger than the limit travels alone.
    b.push(ReadEvent::Entry(entry(4, "a.service", 10_000)), &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(cursors(&out[1]), ["c3"]);
    assert_eq!(cursors(&out[2]), ["c4"]);
}

#[tokio::test(start_paused = true)]
async fn filtered_entries_move_the_cursor() {
    let filter = Filter::new(&["keep.service".to_string()], &[], None, &[]).unwrap();
    let metrics = Arc::new(Metrics::default());
    let mut b = Batcher::new(limits(10, 1 << 20), filter, String::new(), metrics.clone());
    let mut out = Vec::new();
    b.push(ReadEvent::Entry(entry(1, "keep.service", 1)), &mut out);
    b.push(ReadEvent::Entry(entry(2, "drop.service", 1)), &mut out);
    let p = b.take().unwrap();
    assert_eq!(cursors(&p), ["c1"]);
    assert_eq!(p.batch.last_cursor, "c2", "filtered entry still advances");
    b.push(ReadEvent::Entry(entry(3, "drop.service", 1)), &mut out);
    let p = b.take().unwrap();
    assert_eq!(p.entries, 0);
    assert!(p.decode().entries.is_empty());
    assert_eq!(
        (p.batch.prev_cursor.as_str(), p.batch.last_cursor.as_str()),
        ("c2", "c3")
    );
    assert_eq!(metrics.snapshot().filtered, 2);
}

#[tokio::test(start_paused = true)]
async fn gap_is_reported_once_in_the_next_batch() {
    let mut b = batcher(limits(10, 1 << 20), Filter::default());
    let mut out = Vec::new();
    b.push(
        ReadEvent::Gap(Gap {
            cursor: "old".into(),
            first: "c7".into(),
            entries: 5,
            exact: true,
        }),
        &mut out,
    );
    b.push(ReadEvent::Entry(entry(7, "a.service", 1)), &mut out);
    assert_eq!(b.take().unwrap().batch.gap_entries, 5);
    b.push(ReadEvent::Entry(entry(8, "a.service", 1)), &mut out);
    assert_eq!(b.take().unwrap().batch.gap_entries, 0);
}

#[test]
fn server_limits_tighten_ours() {
    let l = limits(2048, 2 << 20);
    assert_eq!(l.within(0, 0), l);
    assert_eq!(l.within(100, 1000).entries, 100);
    assert_eq!(l.within(100, 1000).bytes, 1000);
    assert_eq!(l.within(5000, u64::MAX).entries, 2048);
}

struct Pipe {
    input: mpsc::Sender<ReaderItem>,
    output: mpsc::Receiver<BatcherItem>,
}

fn pipe(l: Limits, filter: Filter) -> Pipe {
    let (itx, irx) = mpsc::channel(16);
    let (otx, orx) = mpsc::channel(16);
    tokio::spawn(run(irx, otx, batcher(l, filter)));
    Pipe {
        input: itx,
        output: orx,
    }
}

/// Lets every ready task run without moving the paused clock.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn linger_starts_with_the_first_entry() {
    let mut p = pipe(limits(100, 1 << 20), Filter::default());
    // Idle: no batch however long we wait.
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert!(p.output.try_recv().is_err());

    p.input
        .send(Ok(ReadEvent::Entry(entry(1, "a.service", 1))))
        .await
        .unwrap();
    settle().await;
    tokio::time::advance(Duration::from_millis(150)).await;
    p.input
        .send(Ok(ReadEvent::Entry(entry(2, "a.service", 1))))
        .await
        .unwrap();
    settle().await;
    tokio::time::advance(Duration::from_millis(49)).await;
    settle().await;
    assert!(p.output.try_recv().is_err(), "closed before the linger");
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    let b = p.output.try_recv().unwrap().unwrap();
    assert_eq!(cursors(&b), ["c1", "c2"]);

    // Idle again: nothing more, not even an empty batch.
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert!(p.output.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn end_of_input_flushes_and_error_follows_the_flush() {
    let mut p = pipe(limits(100, 1 << 20), Filter::default());
    p.input
        .send(Ok(ReadEvent::Entry(entry(1, "a.service", 1))))
        .await
        .unwrap();
    p.input
        .send(Err(ReaderError::StoppedFollowing))
        .await
        .unwrap();
    let b = p.output.recv().await.unwrap().unwrap();
    assert_eq!(cursors(&b), ["c1"]);
    assert!(matches!(
        p.output.recv().await,
        Some(Err(ReaderError::StoppedFollowing))
    ));
    assert!(p.output.recv().await.is_none());

    let mut p = pipe(limits(100, 1 << 20), Filter::default());
    p.input
        .send(Ok(ReadEvent::Entry(entry(1, "a.service", 1))))
        .await
        .unwrap();
    drop(p.input);
    assert_eq!(cursors(&p.output.recv().await.unwrap().unwrap()), ["c1"]);
    assert!(
        p.output.recv().await.is_none(),
        "clean end closes the channel"
    );
}
