//! The native reader against journalctl on journals written by a running
//! `systemd-journald`, through several rotations and a vacuum.
//!
//! Each run starts a private journald instance for a journal namespace of
//! its own (`systemd-journald NAMESPACE`; it stores into
//! `/var/log/journal/<machine-id>.<namespace>` or the `/run` twin), writes
//! entries to its native socket (binary, multi-line, large and repeated
//! fields) and through `logger` to its syslog socket, also as another uid
//! so that a user journal file appears, rotates it with `journalctl
//! --rotate`, vacuums the oldest archived files and compares the whole
//! directory, merged, and every file alone with `journalctl -o export
//! --all`; once in journald's default layout (compact, keyed hash, zstd)
//! and once in the older one (`Compress=no` in the namespace's
//! `/etc/systemd/journald@NAMESPACE.conf`, written for the run and
//! removed after it). Needs root (journald must own its sockets); without root or
//! journald the test prints why and returns.

mod common;

use common::*;
use jr_journal_file::{header, Journal, JournalFile};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const JOURNALD: &str = "/lib/systemd/systemd-journald";
/// Tries of 50 ms for the instance to open its socket.
const START_TRIES: usize = 200;
const ROUNDS: usize = 5;
const PER_ROUND: usize = 60;

/// A private journald for one namespace; killed and cleaned up on drop.
struct Journald {
    namespace: String,
    child: Child,
    dirs: Vec<PathBuf>,
}

impl Journald {
    /// Starts an instance with `env` (journal file layout variables) and
    /// `config` (its journald.conf, removed again on drop), or says why it
    /// cannot.
    fn start(env: &[(&str, &str)], config: &str) -> Result<Journald, String> {
        if !Path::new(JOURNALD).exists() {
            return Err(format!("{JOURNALD} is missing"));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: journald must create its sockets".into());
        }
        let machine_id = std::fs::read_to_string("/etc/machine-id")
            .map_err(|e| format!("/etc/machine-id: {e}"))?
            .trim()
            .to_owned();
        let namespace = format!(
            "jrtest{}x{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let dirs = ["/var/log/journal", "/run/log/journal"]
            .iter()
            .map(|r| Path::new(r).join(format!("{machine_id}.{namespace}")))
            .collect();
        std::fs::write(config_path(&namespace), config)
            .map_err(|e| format!("cannot write the namespace's journald.conf: {e}"))?;
        let child = Command::new(JOURNALD)
            .arg(&namespace)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {JOURNALD}: {e}"))?;
        let mut j = Journald {
            namespace,
            child,
            dirs,
        };
        for _ in 0..START_TRIES {
            if j.socket("socket").exists() && j.dir().is_some() {
                return Ok(j);
            }
            if let Ok(Some(status)) = j.child.try_wait() {
                return Err(format!("journald exited at start: {status}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("journald opened no socket or directory in time".into())
    }

    fn socket(&self, name: &str) -> PathBuf {
        Path::new(&format!("/run/systemd/journal.{}", self.namespace)).join(name)
    }

    fn dir(&self) -> Option<&Path> {
        self.dirs.iter().find(|d| d.is_dir()).map(PathBuf::as_path)
    }

    fn journalctl(&self, args: &[&str]) {
        let out = Command::new("journalctl")
            .arg(format!("--namespace={}", self.namespace))
            .args(args)
            .output()
            .expect("journalctl runs");
        assert!(
            out.status.success(),
            "journalctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until journald has written everything sent so far.
    fn sync(&self) {
        self.journalctl(&["--sync"]);
    }

    fn rotate(&self) {
        self.journalctl(&["--rotate"]);
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = std::fs::remove_dir_all(self.socket(""));
        let _ = std::fs::remove_file(config_path(&self.namespace));
    }
}

/// journald reads a namespace's settings from here.
fn config_path(namespace: &str) -> PathBuf {
    PathBuf::from(format!("/etc/systemd/journald@{namespace}.conf"))
}

/// One native-protocol datagram; values with a newline go binary-safe.
fn native_datagram(fields: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        if value.contains(&b'\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

fn write_round(j: &Journald, sock: &UnixDatagram, round: usize) {
    let path = j.socket("socket");
    for i in 0..PER_ROUND {
        let mut fields = vec![
            ("SYSLOG_IDENTIFIER", b"jr-journald-test".to_vec()),
            ("PRIORITY", (i % 8).to_string().into_bytes()),
            ("JR_ROUND", round.to_string().into_bytes()),
            ("JR_SEQ", i.to_string().into_bytes()),
        ];
        let message = match i % 6 {
            0 => format!("round {round} line {i}\nsecond line\n").into_bytes(),
            1 => vec![b'b', 0, b'i', b'n', 0xff, 0xfe, b'\n', 0],
            // Above journald's compression threshold (512 bytes).
            2 => (0..700 + i * 37).map(|k| b"abcdefgh "[k % 9]).collect(),
            3 => {
                fields.push(("TAG", b"one".to_vec()));
                fields.push(("TAG", b"two".to_vec()));
                format!("repeated fields {round}/{i}").into_bytes()
            }
            4 if i == 4 => vec![b'z'; 64 * 1024],
            _ => format!("plain message {round}/{i}").into_bytes(),
        };
        fields.push(("MESSAGE", message));
        sock.send_to(&native_datagram(&fields), &path)
            .expect("datagram sent to journald");
    }
    // Syslog transport, as root and as an unprivileged uid (its own
    // user journal file).
    let dev_log = j.socket("dev-log");
    let status = Command::new("logger")
        .arg(format!("--socket={}", dev_log.display()))
        .args(["-t", "jr-logger", &format!("logger round {round}")])
        .status()
        .expect("logger runs");
    assert!(status.success());
    let status = Command::new("setpriv")
        .args(["--reuid=4242", "--regid=4242", "--clear-groups", "logger"])
        .arg(format!("--socket={}", dev_log.display()))
        .args(["-t", "jr-user", &format!("user round {round}")])
        .status()
        .expect("setpriv runs");
    assert!(status.success());
}

fn journal_files_of(dir: &Path) -> Vec<PathBuf> {
    let mut v = jr_journal_file::journal_files(dir).unwrap();
    v.sort();
    v
}

/// Runs the whole scenario under `env`; `None` when journald cannot run
/// here (the reason is printed).
fn scenario(what: &str, env: &[(&str, &str)], config: &str) -> Option<u32> {
    let j = match Journald::start(env, config) {
        Ok(j) => j,
        Err(why) => {
            eprintln!("skipped ({what}): {why}");
            return None;
        }
    };
    let sock = UnixDatagram::unbound().unwrap();
    for round in 0..ROUNDS {
        write_round(&j, &sock, round);
        j.sync();
        j.rotate();
    }
    let dir = j.dir().expect("journal directory").to_owned();
    let archived = |d: &Path| {
        journal_files_of(d)
            .iter()
            .filter(|p| p.to_string_lossy().contains('@'))
            .count()
    };
    let before = archived(&dir);
    assert!(before >= ROUNDS, "{what}: {before} archived files");
    // Vacuum the oldest archived files away, then write into the new
    // online files, which stay open in journald while they are read.
    let out = Command::new("journalctl")
        .arg("--directory")
        .arg(&dir)
        .arg("--vacuum-files=4")
        .output()
        .unwrap();
    assert!(out.status.success(), "{what}: vacuum failed");
    let after = archived(&dir);
    assert!(after < before, "{what}: vacuum removed nothing ({before})");
    write_round(&j, &sock, ROUNDS);
    j.sync();

    let files = journal_files_of(&dir);
    assert!(
        files
            .iter()
            .any(|p| p.to_string_lossy().contains("user-4242")),
        "{what}: a user journal file: {files:?}"
    );
    let flags = JournalFile::open(&files[0])
        .unwrap()
        .header()
        .incompatible_flags;

    let mut native = Journal::open_directory(&dir).unwrap();
    let merged: Vec<_> = native.by_ref().collect();
    assert_eq!(native.stats().damaged(), 0, "{what}: {:?}", native.stats());
    let oracle = journalctl_dir(&dir);
    assert!(oracle.len() > 2 * PER_ROUND, "{what}: {}", oracle.len());
    assert_same(&merged, &oracle, &format!("{what}: merged directory"));
    // The oldest rounds were vacuumed away: the journal starts later.
    let first_round = merged
        .iter()
        .find_map(|e| e.fields.iter().find(|f| f.name == "JR_ROUND"))
        .map(|f| f.value.clone());
    assert_ne!(first_round.as_deref(), Some(&b"0"[..]), "{what}: vacuumed");

    for f in &files {
        let mut jf = JournalFile::open(f).unwrap();
        let got: Vec<_> = jf.entries().collect();
        assert_eq!(jf.stats().damaged(), 0, "{what}: {}", f.display());
        assert_same(
            &got,
            &journalctl_files(std::slice::from_ref(f)),
            &format!("{what}: {}", f.display()),
        );
    }
    println!(
        "{what}: {} entries in {} files ({before} archived before the vacuum, {after} after), incompatible flags {flags:#x}",
        merged.len(),
        files.len()
    );
    Some(flags)
}

#[test]
fn journald_rotations_and_vacuum_match_journalctl() {
    let Some(flags) = scenario("default layout", &[], "[Journal]\n") else {
        return;
    };
    let default = header::INCOMPATIBLE_COMPACT
        | header::INCOMPATIBLE_KEYED_HASH
        | header::INCOMPATIBLE_COMPRESSED_ZSTD;
    assert_eq!(flags, default, "{flags:#x}");
    let flags = scenario(
        "regular layout, no compression",
        &[
            ("SYSTEMD_JOURNAL_COMPACT", "0"),
            ("SYSTEMD_JOURNAL_KEYED_HASH", "0"),
        ],
        "[Journal]\nCompress=no\n",
    )
    .expect("journald ran once, so it runs again");
    assert_eq!(flags, 0, "{flags:#x}");
}
