//! Fixture journals for the agent's tests: export text written here,
//! turned into real journal files by `systemd-journal-remote`.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
pub const MACHINE_ID: &str = "fedcba9876543210fedcba9876543210";
pub const BOOT_ID: &str = "0123456789abcdef0123456789abcdef";
/// 2023-11-14T22:13:20Z, in microseconds.
pub const T0: u64 = 1_700_000_000_000_000;

/// One fixture entry: realtime offset (µs after [`T0`]) and its fields.
#[derive(Debug, Clone)]
pub struct Spec {
    pub at: u64,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Spec {
    /// An entry of `unit` on host `fixture-host` with `message`.
    pub fn new(at: u64, unit: &str, message: &[u8]) -> Spec {
        Spec {
            at,
            fields: vec![
                ("_MACHINE_ID".into(), MACHINE_ID.into()),
                ("_HOSTNAME".into(), b"fixture-host".to_vec()),
                ("_SYSTEMD_UNIT".into(), unit.into()),
                ("PRIORITY".into(), b"6".to_vec()),
                ("MESSAGE".into(), message.to_vec()),
            ],
        }
    }

    pub fn with(mut self, name: &str, value: &[u8]) -> Spec {
        self.fields.push((name.into(), value.to_vec()));
        self
    }

    pub fn message(&self) -> &[u8] {
        self.fields
            .iter()
            .find(|(n, _)| n == "MESSAGE")
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default()
    }
}

/// Export-format text of `specs` (no cursor: journal-remote assigns one).
pub fn export(specs: &[Spec]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in specs {
        let t = T0 + s.at;
        write!(
            out,
            "__REALTIME_TIMESTAMP={t}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={BOOT_ID}\n",
            1_000 + s.at
        )
        .unwrap();
        for (name, value) in &s.fields {
            jr_journal::export::write_field(name.as_bytes(), value, &mut out);
        }
        out.push(b'\n');
    }
    out
}

/// Writes (or appends to) the journal file `path` from `specs`.
pub fn write_journal(path: &Path, specs: &[Spec]) {
    write_journal_as(path, specs, &[], &[]);
}

/// Like [`write_journal`], with environment variables (e.g.
/// `SYSTEMD_JOURNAL_COMPACT=0`) and extra arguments (e.g. `--compress=no`)
/// for systemd-journal-remote, to get other file layouts.
pub fn write_journal_as(path: &Path, specs: &[Spec], env: &[(&str, &str)], args: &[&str]) {
    assert!(
        Path::new(JOURNAL_REMOTE).exists(),
        "{JOURNAL_REMOTE} is needed to write fixture journals (apt-get install systemd-journal-remote)"
    );
    let mut child = Command::new(JOURNAL_REMOTE)
        .envs(env.iter().copied())
        .args(args)
        .arg("-o")
        .arg(path)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn systemd-journal-remote");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&export(specs))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "systemd-journal-remote failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `n` plain entries starting at offset `from` (seconds apart).
pub fn plain(from: u64, n: u64, unit: &str) -> Vec<Spec> {
    (from..from + n)
        .map(|i| Spec::new(i * 1_000_000, unit, format!("entry {i}").as_bytes()))
        .collect()
}

pub fn journal_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.journal"))
}
