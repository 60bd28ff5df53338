//! The decoder against real journal files: export text is written into a
//! journal with systemd-journal-remote (both file layouts), read back with
//! `journalctl -o export`, and every field must come back byte for byte.

use bytes::BytesMut;
use jr_journal::export::{write_field, ExportDecoder};
use jr_journal::Entry;
use std::io::Write;
use std::process::{Command, Stdio};
use tokio_util::codec::Decoder;

const REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const BOOT: &str = "0123456789abcdef0123456789abcdef";
const MACHINE: &str = "fedcba9876543210fedcba9876543210";

/// Export text of `n` entries; entry i's MESSAGE is `message(i)`.
fn export_text(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let ts = 1_700_000_000_000_000u64 + i as u64 * 1000;
        write!(
            out,
            "__REALTIME_TIMESTAMP={ts}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={BOOT}\n_MACHINE_ID={MACHINE}\n_HOSTNAME=node-a\nPRIORITY={}\n_SYSTEMD_UNIT=unit-{}.service\nTAG=one\nTAG=two\n",
            1000 + i,
            i % 8,
            i % 3
        )
        .unwrap();
        write_field(b"MESSAGE", m, &mut out);
        out.push(b'\n');
    }
    out
}

fn messages() -> Vec<Vec<u8>> {
    let mut m: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("plain message {i}").into_bytes())
        .collect();
    m.push(b"binary \0 nul and \xff\xfe invalid utf-8".to_vec());
    m.push(b"line one\nline two\nline three".to_vec());
    m.push(vec![b'z'; 200 * 1024]);
    m.push(Vec::new());
    m
}

fn write_journal(dir: &std::path::Path, export: &[u8], old_layout: bool) -> std::path::PathBuf {
    let out = dir.join("test.journal");
    let mut cmd = Command::new(REMOTE);
    cmd.arg("-o").arg(&out).arg("-");
    if old_layout {
        cmd.env("SYSTEMD_JOURNAL_COMPACT", "0")
            .env("SYSTEMD_JOURNAL_KEYED_HASH", "0")
            .arg("--compress=no");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{REMOTE} must be installed (scripts/test installs it): {e}"));
    child.stdin.take().unwrap().write_all(export).unwrap();
    assert!(child.wait().unwrap().success());
    out
}

fn read_back(file: &std::path::Path, chunk: usize) -> Vec<Entry> {
    let out = Command::new("journalctl")
        .arg("--file")
        .arg(file)
        .args(["-o", "export", "--all", "--no-pager"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut d = ExportDecoder::new(1 << 20);
    let mut buf = BytesMut::new();
    let mut entries = Vec::new();
    for piece in out.stdout.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(e) = d.decode(&mut buf).unwrap() {
            entries.push(e);
        }
    }
    while let Some(e) = d.decode_eof(&mut buf).unwrap() {
        entries.push(e);
    }
    assert_eq!(d.stats().malformed, 0);
    entries
}

fn check(old_layout: bool) {
    let dir = tempfile::tempdir().unwrap();
    let msgs = messages();
    let file = write_journal(dir.path(), &export_text(&msgs), old_layout);
    for chunk in [7, 4096, 1 << 20] {
        let entries = read_back(&file, chunk);
        assert_eq!(entries.len(), msgs.len());
        for (i, (e, m)) in entries.iter().zip(&msgs).enumerate() {
            let got: Vec<&[u8]> = e
                .fields
                .iter()
                .filter(|f| f.name == "MESSAGE")
                .map(|f| &f.value[..])
                .collect();
            assert_eq!(got, vec![&m[..]], "entry {i}");
            let tags: Vec<&[u8]> = e
                .fields
                .iter()
                .filter(|f| f.name == "TAG")
                .map(|f| &f.value[..])
                .collect();
            assert_eq!(tags, vec![&b"one"[..], &b"two"[..]]);
            assert_eq!(e.realtime_usec, 1_700_000_000_000_000 + i as u64 * 1000);
            assert_eq!(e.monotonic_usec, 1000 + i as u64);
            let c = jr_journal::cursor::validate(&e.cursor).unwrap();
            assert_eq!(c.boot_id, BOOT);
            assert_eq!(c.realtime_usec, e.realtime_usec);
        }
    }
}

#[test]
fn default_layout_round_trips() {
    check(false);
}

#[test]
fn old_layout_round_trips() {
    check(true);
}
