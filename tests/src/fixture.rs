//! Fixture journals: entries the tests make up, written into real journal
//! files by `systemd-journal-remote`.
//!
//! The export encoding here is written independently of jr-journal's on
//! purpose: fixtures are the input the pipeline is judged against, so they
//! must not share the code under test.
//!
//! `systemd-journal-remote` assigns seqnums and the seqnum id itself (one id
//! per file it creates, carried over when it rotates a full file), so an
//! entry's cursor is only known after the file is written; read it back with
//! [`crate::journalctl`]. Every fixture entry carries [`TAG`], its serial
//! number, to find it again.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// Where Debian's systemd-journal-remote package installs the writer.
pub const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// Field carrying each fixture entry's serial number.
pub const TAG: &str = "JR_TEST_ID";

/// 2024-01-01T00:00:00Z: fixtures live in the past, away from real logs.
pub const EPOCH_USEC: u64 = 1_704_067_200_000_000;

/// Microseconds between two consecutive fixture entries.
const STEP_USEC: u64 = 1_000;

/// A machine whose journal a fixture holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub hostname: String,
    /// 32 lowercase hex digits, as `_MACHINE_ID` and /etc/machine-id.
    pub machine_id: String,
    /// 32 lowercase hex digits, as `_BOOT_ID`.
    pub boot_id: String,
}

impl Host {
    /// A host with ids derived from its name, so that a test can rebuild
    /// the same host and two names never share a machine id.
    pub fn new(hostname: &str) -> Host {
        Host {
            hostname: hostname.to_owned(),
            machine_id: id128(hostname, "machine"),
            boot_id: id128(hostname, "boot"),
        }
    }

    /// The same machine after a reboot.
    pub fn rebooted(&self, boot: u32) -> Host {
        Host {
            boot_id: id128(&self.hostname, &format!("boot {boot}")),
            ..self.clone()
        }
    }
}

fn id128(name: &str, salt: &str) -> String {
    let half = |part: u8| {
        let mut h = DefaultHasher::new();
        (name, salt, part).hash(&mut h);
        h.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}

/// The on-disk layout `systemd-journal-remote` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Debian 12's default: compact, keyed hash, zstd-compressed.
    Default,
    /// The older layout: regular objects, Jenkins hash, no compression.
    Legacy,
}

impl Layout {
    fn configure(self, cmd: &mut Command) {
        if self == Layout::Legacy {
            cmd.env("SYSTEMD_JOURNAL_COMPACT", "0")
                .env("SYSTEMD_JOURNAL_KEYED_HASH", "0")
                .arg("--compress=no");
        }
    }
}

/// One journal entry as written in the export format.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Serial number, also stored in the entry as [`TAG`].
    pub tag: u64,
    pub realtime_usec: u64,
    pub monotonic_usec: u64,
    pub host: Host,
    /// Every field in order, repeats allowed.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub fn field(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        self.fields.push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    pub fn message(&mut self, message: impl AsRef<[u8]>) -> &mut Self {
        self.field("MESSAGE", message)
    }

    pub fn priority(&mut self, level: u8) -> &mut Self {
        self.field("PRIORITY", level.to_string())
    }

    /// The unit journald attributes the writing process to.
    pub fn unit(&mut self, unit: &str) -> &mut Self {
        self.field("_SYSTEMD_UNIT", unit)
    }

    pub fn identifier(&mut self, identifier: &str) -> &mut Self {
        self.field("SYSLOG_IDENTIFIER", identifier)
    }

    pub fn pid(&mut self, pid: u32) -> &mut Self {
        self.field("_PID", pid.to_string())
    }

    /// The first value of `name`.
    pub fn value(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.value(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Writes the entry in the export format: `NAME=value` for plain text,
    /// `NAME\n<u64 LE length><bytes>\n` for anything else.
    pub fn write_export(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "__REALTIME_TIMESTAMP={}", self.realtime_usec)?;
        writeln!(out, "__MONOTONIC_TIMESTAMP={}", self.monotonic_usec)?;
        for (name, value) in &self.fields {
            if is_plain(value) {
                out.write_all(name.as_bytes())?;
                out.write_all(b"=")?;
                out.write_all(value)?;
                out.write_all(b"\n")?;
            } else {
                out.write_all(name.as_bytes())?;
                out.write_all(b"\n")?;
                out.write_all(&(value.len() as u64).to_le_bytes())?;
                out.write_all(value)?;
                out.write_all(b"\n")?;
            }
        }
        out.write_all(b"\n")
    }
}

fn is_plain(value: &[u8]) -> bool {
    std::str::from_utf8(value).is_ok() && !value.iter().any(|&b| b < 0x20 && b != b'\t')
}

/// Makes up entries on one clock: each entry is [`STEP_USEC`] after the
/// previous one, on every host, so journal order and time order agree.
#[derive(Debug)]
pub struct Fixture {
    next_tag: u64,
    start_usec: u64,
    entries: Vec<Entry>,
    /// How many of `entries` a `write_*` call already put into a file.
    written: usize,
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::starting_at(EPOCH_USEC)
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::default()
    }

    pub fn starting_at(realtime_usec: u64) -> Fixture {
        Fixture {
            next_tag: 1,
            start_usec: realtime_usec,
            entries: Vec::new(),
            written: 0,
        }
    }

    /// An entry for `host` with the fields journald itself adds, kept by
    /// the fixture; chain the builder methods to fill it in.
    pub fn entry(&mut self, host: &Host) -> &mut Entry {
        let entry = self.make(host);
        self.entries.push(entry);
        self.entries.last_mut().expect("just pushed")
    }

    /// An entry for `host` that the fixture does not keep: for generators
    /// that stream many entries straight into a [`JournalWriter`].
    pub fn make(&mut self, host: &Host) -> Entry {
        let tag = self.next_tag;
        self.next_tag += 1;
        let realtime_usec = self.start_usec + tag * STEP_USEC;
        let mut entry = Entry {
            tag,
            realtime_usec,
            // The boot started ten seconds before the fixture's clock.
            monotonic_usec: 10_000_000 + tag * STEP_USEC,
            host: host.clone(),
            fields: Vec::new(),
        };
        entry
            .field("_BOOT_ID", &host.boot_id)
            .field("_MACHINE_ID", &host.machine_id)
            .field("_HOSTNAME", &host.hostname)
            .field("_TRANSPORT", "journal")
            .field(TAG, tag.to_string());
        entry
    }

    /// Every entry the fixture keeps.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The kept entry with serial number `tag`.
    pub fn by_tag(&self, tag: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    /// Writes the entries added since the last write into a new (or
    /// existing, then appended) journal file at `path`.
    pub fn write_new(&mut self, path: &Path, layout: Layout) -> PathBuf {
        let mut writer = JournalWriter::create(path, layout);
        for entry in &self.entries[self.written..] {
            writer.append(entry);
        }
        self.written = self.entries.len();
        writer.finish();
        path.to_owned()
    }
}

/// A running `systemd-journal-remote -o FILE -` fed through its stdin.
///
/// Entries reach the file as soon as they are flushed, so a live writer
/// doubles as a journal that grows while an agent follows it.
pub struct JournalWriter {
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    path: PathBuf,
    appended: u64,
}

impl JournalWriter {
    pub fn create(path: &Path, layout: Layout) -> JournalWriter {
        assert!(
            Path::new(JOURNAL_REMOTE).exists(),
            "{JOURNAL_REMOTE} is missing: install systemd-journal-remote (scripts/test does)"
        );
        let mut cmd = Command::new(JOURNAL_REMOTE);
        cmd.arg(format!("--output={}", path.display()))
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        layout.configure(&mut cmd);
        let mut child = cmd.spawn().expect("start systemd-journal-remote");
        let stdin = child
            .stdin
            .take()
            .map(|s| BufWriter::with_capacity(1 << 20, s));
        JournalWriter {
            child,
            stdin,
            path: path.to_owned(),
            appended: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, entry: &Entry) {
        let stdin = self.stdin.as_mut().expect("writer is open");
        entry
            .write_export(stdin)
            .expect("write to systemd-journal-remote");
        self.appended += 1;
    }

    /// Hands everything appended so far to journal-remote. It writes an
    /// entry as soon as it has read it.
    pub fn flush(&mut self) {
        if let Some(stdin) = self.stdin.as_mut() {
            stdin.flush().expect("flush to systemd-journal-remote");
        }
    }

    /// Closes the input, waits for journal-remote and checks that it wrote
    /// every entry.
    pub fn finish(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            stdin.flush().expect("flush to systemd-journal-remote");
        }
        let status = self.child.wait().expect("wait for systemd-journal-remote");
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        assert!(
            status.success(),
            "systemd-journal-remote failed for {}: {status}\n{stderr}",
            self.path.display()
        );
        let expected = format!("writing {} entries", self.appended);
        assert!(
            stderr.contains(&expected),
            "systemd-journal-remote did not report {expected:?} for {}:\n{stderr}",
            self.path.display()
        );
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            drop(self.stdin.take());
            let _ = self.child.wait();
        }
    }
}
