use super::*;
use proptest::prelude::*;

const CUR1: &str = "s=4f30609c77d9406e86aba8a29393cad7;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=60a24181e4000;x=782928888f5f5546";

fn sample() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(format!("__CURSOR={CUR1}\n__REALTIME_TIMESTAMP=1700000000000000\n__MONOTONIC_TIMESTAMP=1000\n__SEQNUM=1\n__SEQNUM_ID=4f30609c77d9406e86aba8a29393cad7\n").as_bytes());
    v.extend_from_slice(
        b"_BOOT_ID=0123456789abcdef0123456789abcdef\nMESSAGE=hello = world\nTAG=a\nTAG=b\n",
    );
    v.extend_from_slice(b"BIN\n");
    v.extend_from_slice(&5u64.to_le_bytes());
    v.extend_from_slice(b"a\0b\n\xff\n\n");
    v.extend_from_slice(b"__CURSOR=c2\n__REALTIME_TIMESTAMP=2\nMESSAGE=second\n\n");
    v
}

fn decode_all(input: &[u8], chunk: usize, cap: usize) -> (Vec<Entry>, DecodeStats) {
    let mut d = ExportDecoder::new(cap);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(e) = d.decode(&mut buf).unwrap() {
            out.push(e);
        }
    }
    while let Some(e) = d.decode_eof(&mut buf).unwrap() {
        out.push(e);
    }
    (out, d.stats())
}

fn value<'a>(e: &'a Entry, name: &str) -> Vec<&'a [u8]> {
    e.fields
        .iter()
        .filter(|f| f.name == name)
        .map(|f| &f.value[..])
        .collect()
}

#[test]
fn decodes_text_binary_and_repeated_fields() {
    let (entries, stats) = decode_all(&sample(), 1 << 20, 1 << 20);
    assert_eq!(entries.len(), 2);
    let e = &entries[0];
    assert_eq!(e.cursor, CUR1);
    assert_eq!(e.realtime_usec, 1_700_000_000_000_000);
    assert_eq!(e.monotonic_usec, 1000);
    assert_eq!(value(e, "MESSAGE"), vec![&b"hello = world"[..]]);
    assert_eq!(value(e, "TAG"), vec![&b"a"[..], &b"b"[..]]);
    assert_eq!(value(e, "BIN"), vec![&b"a\0b\n\xff"[..]]);
    assert!(e.fields.iter().all(|f| !f.name.starts_with(b"__")));
    assert_eq!(entries[1].monotonic_usec, 0);
    assert_eq!(
        stats,
        DecodeStats {
            entries: 2,
            malformed: 0,
            truncated_fields: 0
        }
    );
}

#[test]
fn any_read_size_gives_the_same_entries() {
    let (whole, _) = decode_all(&sample(), 1 << 20, 1 << 20);
    for chunk in [1, 2, 3, 7, 200] {
        let (parts, stats) = decode_all(&sample(), chunk, 1 << 20);
        assert_eq!(parts, whole, "read size {chunk}");
        assert_eq!(stats.malformed, 0);
    }
}

#[test]
fn over_long_fields_are_truncated_and_counted() {
    let mut v = b"__CURSOR=c\n__REALTIME_TIMESTAMP=1\nMESSAGE=".to_vec();
    v.extend(std::iter::repeat_n(b'x', 100));
    v.extend_from_slice(b"\nBIG\n");
    v.extend_from_slice(&50u64.to_le_bytes());
    v.extend(std::iter::repeat_n(b'y', 50));
    v.extend_from_slice(b"\nAFTER=1\n\n");
    for chunk in [1, 3, 1000] {
        let (entries, stats) = decode_all(&v, chunk, 10);
        assert_eq!(entries.len(), 1);
        assert_eq!(value(&entries[0], "MESSAGE"), vec![&[b'x'; 10][..]]);
        assert_eq!(value(&entries[0], "BIG"), vec![&[b'y'; 10][..]]);
        assert_eq!(value(&entries[0], "AFTER"), vec![&b"1"[..]]);
        assert_eq!(stats.truncated_fields, 2);
    }
}

#[test]
fn malformed_entries_are_skipped_and_counted() {
    let mut v = b"__CURSOR=a\n__REALTIME_TIMESTAMP=1\nbad name=1\nMORE=2\n\n".to_vec();
    v.extend_from_slice(b"MESSAGE=no cursor\n\n");
    v.extend_from_slice(b"__CURSOR=b\n__REALTIME_TIMESTAMP=1\nBIN\n");
    v.extend_from_slice(&3u64.to_le_bytes());
    v.extend_from_slice(b"abcX\n\n");
    v.extend_from_slice(b"__CURSOR=c\n__REALTIME_TIMESTAMP=3\nMESSAGE=ok\n\n");
    let (entries, stats) = decode_all(&v, 4, 1024);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].cursor, "c");
    assert_eq!(stats.malformed, 3);
}

#[test]
fn cut_off_entry_at_eof_is_dropped() {
    let mut v = sample();
    v.extend_from_slice(b"__CURSOR=c3\n__REALTIME_TIMESTAMP=3\nMESSA");
    let (entries, stats) = decode_all(&v, 5, 1024);
    assert_eq!(entries.len(), 2);
    assert_eq!(stats.malformed, 0);
}

#[test]
fn writer_round_trips() {
    let (entries, _) = decode_all(&sample(), 1 << 20, 1 << 20);
    let mut out = Vec::new();
    for e in &entries {
        write_entry(e, &mut out);
    }
    let (again, _) = decode_all(&out, 3, 1 << 20);
    assert_eq!(again, entries);
}

#[test]
fn printable_rules() {
    assert!(is_printable(b"plain\ttext", false));
    assert!(!is_printable(b"two\nlines", false));
    assert!(is_printable(b"two\nlines", true));
    assert!(!is_printable(b"nul\0", true));
    assert!(!is_printable(b"\xff", true));
    assert!(!is_printable("c1 \u{85}".as_bytes(), true));
}

proptest! {
    #[test]
    fn garbage_never_panics(input in proptest::collection::vec(any::<u8>(), 0..2000), chunk in 1usize..64) {
        let _ = decode_all(&input, chunk, 64);
    }

    #[test]
    fn entries_round_trip(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 1..10), chunk in 1usize..50) {
        let entries: Vec<Entry> = msgs.iter().enumerate().map(|(i, m)| Entry {
            cursor: format!("c{i}"),
            realtime_usec: i as u64,
            monotonic_usec: 7,
            fields: vec![Field { name: "MESSAGE".into(), value: Bytes::copy_from_slice(m) }],
        }).collect();
        let mut out = Vec::new();
        for e in &entries {
            write_entry(e, &mut out);
        }
        let (again, stats) = decode_all(&out, chunk, 1 << 20);
        prop_assert_eq!(again, entries);
        prop_assert_eq!(stats.malformed, 0);
    }
}
