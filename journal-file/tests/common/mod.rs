//! Fixture journals written by systemd's own tools, and journalctl's view
//! of them as the oracle.

#![allow(dead_code)]

use bytes::BytesMut;
use jr_journal::export::ExportDecoder;
use jr_journal::Entry;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tokio_util::codec::Decoder;

pub const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// How systemd-journal-remote lays out the file it writes.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub compact: bool,
    pub keyed_hash: bool,
    pub compress: bool,
}

impl Layout {
    pub fn all() -> Vec<Layout> {
        let mut v = Vec::new();
        for compact in [false, true] {
            for keyed_hash in [false, true] {
                for compress in [false, true] {
                    v.push(Layout {
                        compact,
                        keyed_hash,
                        compress,
                    });
                }
            }
        }
        v
    }
}

/// Appends one export-format field, binary-safe.
pub fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    let text = value.iter().all(|&b| b >= 0x20 && b != 0x7f) && std::str::from_utf8(value).is_ok();
    out.extend_from_slice(name.as_bytes());
    if text {
        out.push(b'=');
        out.extend_from_slice(value);
    } else {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.push(b'\n');
}

/// A small deterministic generator, so fixtures are the same every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Export text of `n` entries of host `host`: two boots, binary values
/// with NUL and invalid UTF-8, a 200 KiB value, repeated fields and
/// multi-line messages. `t0` offsets the realtime clock so that hosts
/// interleave.
pub fn export_for_host(host: &str, n: usize, t0: u64, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let machine = format!("{:0<32}", hex(host.as_bytes()));
    let machine = &machine[..32];
    for i in 0..n {
        let boot = if i < n / 2 { 1 } else { 2 };
        let boot_id = format!("{:0>30}{:02x}", hex(&host.as_bytes()[..1]), boot);
        let rt = t0 + i as u64 * 1000 + rng.below(500);
        let mono = if boot == 1 {
            10_000 + i as u64 * 900
        } else {
            500 + i as u64 * 900
        };
        field(&mut out, "__REALTIME_TIMESTAMP", rt.to_string().as_bytes());
        field(
            &mut out,
            "__MONOTONIC_TIMESTAMP",
            mono.to_string().as_bytes(),
        );
        field(&mut out, "_BOOT_ID", boot_id.as_bytes());
        field(&mut out, "_MACHINE_ID", machine.as_bytes());
        field(&mut out, "_HOSTNAME", host.as_bytes());
        field(
            &mut out,
            "_SYSTEMD_UNIT",
            format!("svc-{}.service", rng.below(4)).as_bytes(),
        );
        field(&mut out, "PRIORITY", rng.below(8).to_string().as_bytes());
        match i % 9 {
            0 => field(
                &mut out,
                "MESSAGE",
                format!("line one {i}\nline two\nthree").as_bytes(),
            ),
            1 => field(&mut out, "MESSAGE", &[b'a', 0, b'b', 0xff, 0xfe, b'\n', 0]),
            2 => field(&mut out, "MESSAGE", &vec![b'z'; 200 * 1024 + i]),
            3 => {
                field(&mut out, "MESSAGE", format!("repeated {i}").as_bytes());
                field(&mut out, "TAG", b"one");
                field(&mut out, "TAG", b"two");
            }
            4 => field(&mut out, "MESSAGE", &[0xc3, 0x28, b' ', b'b', b'a', b'd']),
            5 => {
                let len = 600 + rng.below(3000) as usize;
                let body: Vec<u8> = (0..len).map(|k| b"abcdefgh "[(k * 7 + i) % 9]).collect();
                field(&mut out, "MESSAGE", &body);
            }
            _ => field(
                &mut out,
                "MESSAGE",
                format!("message {i} from {host}").as_bytes(),
            ),
        }
        field(&mut out, "SYSLOG_IDENTIFIER", b"svc");
        out.push(b'\n');
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `export` into the journal file `out` with systemd-journal-remote.
pub fn journal_remote(export: &[u8], out: &Path, layout: Layout) {
    journal_remote_env(export, out, layout, &[]);
}

/// [`journal_remote`] with extra environment variables.
pub fn journal_remote_env(export: &[u8], out: &Path, layout: Layout, env: &[(&str, &str)]) {
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg("-o")
        .arg(out)
        .arg(format!(
            "--compress={}",
            if layout.compress { "yes" } else { "no" }
        ))
        .arg("-")
        .env(
            "SYSTEMD_JOURNAL_COMPACT",
            if layout.compact { "1" } else { "0" },
        )
        .env(
            "SYSTEMD_JOURNAL_KEYED_HASH",
            if layout.keyed_hash { "1" } else { "0" },
        )
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-journal-remote runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(export)
        .expect("export written");
    let status = child.wait().expect("journal-remote exits");
    assert!(status.success(), "systemd-journal-remote failed: {status}");
}

/// journalctl's entries for `args` (`--file F` or `--directory D`), decoded
/// from `-o export --all`.
pub fn journalctl(args: &[&std::ffi::OsStr]) -> Vec<Entry> {
    let out = Command::new("journalctl")
        .args(args)
        .args(["-o", "export", "--all", "--no-pager"])
        .output()
        .expect("journalctl runs");
    assert!(
        out.status.success(),
        "journalctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut dec = ExportDecoder::new(usize::MAX >> 1);
    let mut buf = BytesMut::from(&out.stdout[..]);
    let mut v = Vec::new();
    while let Some(e) = dec.decode_eof(&mut buf).expect("export decodes") {
        v.push(e);
    }
    assert_eq!(dec.stats().malformed, 0);
    v
}

pub fn journalctl_dir(dir: &Path) -> Vec<Entry> {
    journalctl(&["--directory".as_ref(), dir.as_os_str()])
}

pub fn journalctl_files(files: &[PathBuf]) -> Vec<Entry> {
    let mut args: Vec<&std::ffi::OsStr> = Vec::new();
    for f in files {
        args.push("--file".as_ref());
        args.push(f.as_os_str());
    }
    journalctl(&args)
}

/// Asserts two entry lists are equal, naming the first difference.
pub fn assert_same(native: &[Entry], oracle: &[Entry], what: &str) {
    for (i, (a, b)) in native.iter().zip(oracle).enumerate() {
        assert_eq!(a.cursor, b.cursor, "{what}: cursor of entry {i}");
        assert_eq!(
            a.realtime_usec, b.realtime_usec,
            "{what}: realtime of entry {i}"
        );
        assert_eq!(
            a.monotonic_usec, b.monotonic_usec,
            "{what}: monotonic of entry {i}"
        );
        let names = |e: &Entry| e.fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(a), names(b), "{what}: field names of entry {i}");
        assert!(a == b, "{what}: field values of entry {i} differ");
    }
    assert_eq!(native.len(), oracle.len(), "{what}: number of entries");
}
