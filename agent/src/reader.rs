//! The journalctl reader: runs `journalctl -o export` as a child process and
//! turns its output into entries, applying sd-journal's resume rules. It
//! also owns what both readers share: [`ReadEvent`], [`StartAt`],
//! [`ReaderError`] and the resume rules ([`resume_gap`]); the native reader
//! is in [`crate::native`], the choice between them in
//! [`crate::journal_reader`].
//!
//! The child contains any crash of libsystemd and always matches the host's
//! journal version. It is owned: killed when the reader is dropped
//! (`kill_on_drop`) and when the agent process dies (`PR_SET_PDEATHSIG`).
//!
//! Resuming uses `--cursor` (inclusive) rather than `--after-cursor`, so
//! the reader sees where journalctl actually landed: if the first entry is
//! the cursor's own entry it is skipped (it is already stored); if it is
//! another entry, the cursor's entry was vacuumed, and the entries between
//! it and the first survivor are lost. That gap is logged, counted and
//! sent down as a [`ReadEvent::Gap`] before the first surviving entry.
//!
//! Gap size: within one sequence-number space (`s=` equal) it is exact,
//! `first.seqnum - cursor.seqnum - 1` (zero when only the cursor's own,
//! already stored, entry went). Across spaces (the journal was recreated,
//! or files from another writer) it cannot be known; it is reported as 1,
//! meaning "at least one entry may be lost".

use crate::metrics::Metrics;
use futures::StreamExt;
use jr_journal::cursor::Cursor;
use jr_journal::export::ExportDecoder;
use jr_journal::Entry;
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::SystemTime;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::task::AbortOnDropHandle;

/// Read buffer of journalctl's stdout: large reads keep the decoder busy
/// and the syscall count low.
const READ_BUFFER: usize = 256 * 1024;
/// Entries the reader may decode ahead of the batcher.
const CHANNEL_ENTRIES: usize = 256;
/// Lines of journalctl's stderr kept to explain an exit.
const STDERR_LINES: usize = 8;

/// Which journal journalctl reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalSource {
    pub journalctl: PathBuf,
    pub directory: Option<PathBuf>,
    pub files: Vec<PathBuf>,
    pub namespace: Option<String>,
}

impl JournalSource {
    /// A journalctl command printing export format for this source, owned
    /// by the agent (see [`own_child`]).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.journalctl);
        cmd.args(["-o", "export", "--all", "--no-pager"]);
        if let Some(d) = &self.directory {
            cmd.arg("--directory").arg(d);
        }
        for f in &self.files {
            cmd.arg("--file").arg(f);
        }
        if let Some(ns) = &self.namespace {
            cmd.arg(format!("--namespace={ns}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        own_child(&mut cmd);
        cmd
    }
}

/// Makes the kernel kill the child when the agent dies.
///
/// `kill_on_drop` covers every orderly exit, but not SIGKILL or a crash of
/// the agent: journalctl would then follow the journal forever with nobody
/// reading. `PR_SET_PDEATHSIG` fires when the thread that forked the child
/// exits; children are spawned from runtime worker threads, which live as
/// long as the agent. The `getppid` check closes the race where the agent
/// died between fork and prctl.
fn own_child(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls
    // only prctl and getppid, both async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other("parent exited before journalctl started"));
            }
            Ok(())
        });
    }
}

/// Where journalctl starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest entry on disk.
    Head,
    /// Only entries written after start.
    Tail,
    /// Entries from this time on.
    Since(SystemTime),
    /// Right after this entry (see the module doc for the rules).
    After(Cursor),
}

impl std::fmt::Display for StartAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartAt::Head => f.write_str("head"),
            StartAt::Tail => f.write_str("tail"),
            StartAt::Since(t) => match jiff::Timestamp::try_from(*t) {
                Ok(ts) => write!(f, "since {ts}"),
                Err(_) => write!(f, "since {t:?}"),
            },
            StartAt::After(c) => write!(f, "after {c}"),
        }
    }
}

/// What the reader found where it resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The resume cursor whose entry is gone.
    pub cursor: String,
    /// The first surviving entry's cursor.
    pub first: String,
    /// Entries lost (exact when `exact`, else "at least one" as 1).
    pub entries: u64,
    pub exact: bool,
}

/// What the reader yields, in journal order.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadEvent {
    Entry(Entry),
    /// Entries were lost just before the next entry.
    Gap(Gap),
}

#[derive(Debug, Error)]
pub enum ReaderError {
    #[error("cannot start {journalctl:?}: {source}")]
    Spawn {
        journalctl: PathBuf,
        source: io::Error,
    },
    #[error("reading journalctl's output: {0}")]
    Io(#[from] io::Error),
    #[error("journalctl could not resume at cursor {cursor:?}: {stderr}")]
    Cursor { cursor: String, stderr: String },
    #[error("journalctl exited with {status}: {stderr}")]
    Exited { status: ExitStatus, stderr: String },
    #[error("journalctl stopped following the journal (exited with success)")]
    StoppedFollowing,
    #[error("reading the journal files: {0}")]
    Native(#[source] jr_journal_file::Error),
    #[error("the native journal reader stopped unexpectedly")]
    NativeStopped,
}

/// What the reader sends: events, then an error if it failed. A channel
/// closed without an error means journalctl reached the end and exited 0
/// (only without `--follow`).
pub type ReaderItem = Result<ReadEvent, ReaderError>;

/// How to read.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    pub source: JournalSource,
    pub start: StartAt,
    pub follow: bool,
    pub max_field_bytes: usize,
}

/// A running journalctl child and the task decoding its output. Dropping it
/// stops the task, which kills the child.
#[derive(Debug)]
pub struct Reader {
    pub events: mpsc::Receiver<ReaderItem>,
    task: AbortOnDropHandle<()>,
}

impl Reader {
    /// Starts journalctl; fails at once when it cannot be spawned.
    pub fn spawn(opts: &ReaderOptions, metrics: Arc<Metrics>) -> Result<Reader, ReaderError> {
        let mut cmd = opts.source.command();
        if opts.follow {
            cmd.arg("--follow");
        }
        // journalctl --follow alone starts at the last 10 entries; every
        // start except the tail wants the whole journal after the position.
        if !matches!(opts.start, StartAt::Tail) {
            cmd.arg("--lines=all");
        }
        let mut resume = None;
        match &opts.start {
            StartAt::Head => {}
            StartAt::Tail => {
                cmd.arg("--lines=0");
            }
            StartAt::Since(t) => {
                let secs = t
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                cmd.arg(format!("--since=@{secs}"));
            }
            StartAt::After(c) => {
                cmd.arg(format!("--cursor={c}"));
                resume = Some(c.clone());
            }
        }
        let mut child = cmd.spawn().map_err(|source| ReaderError::Spawn {
            journalctl: opts.source.journalctl.clone(),
            source,
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(ReaderError::Io(io::Error::other(
                "journalctl pipes missing",
            )));
        };
        let (tx, rx) = mpsc::channel(CHANNEL_ENTRIES);
        let task = ReaderTask {
            child,
            resume,
            follow: opts.follow,
            max_field_bytes: opts.max_field_bytes,
            metrics,
            tx,
        };
        let handle = tokio::spawn(task.run(stdout, stderr));
        Ok(Reader {
            events: rx,
            task: AbortOnDropHandle::new(handle),
        })
    }

    /// The event channel and the guard that keeps journalctl running.
    pub fn into_parts(self) -> (mpsc::Receiver<ReaderItem>, AbortOnDropHandle<()>) {
        (self.events, self.task)
    }
}

struct ReaderTask {
    child: Child,
    resume: Option<Cursor>,
    follow: bool,
    max_field_bytes: usize,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<ReaderItem>,
}

/// Whether the receiver is still there.
type Open = bool;

impl ReaderTask {
    async fn run(mut self, stdout: ChildStdout, stderr: ChildStderr) {
        let tx = self.tx.clone();
        if let Err(e) = self.read(stdout, stderr).await {
            // Nobody listening means the reader was stopped on purpose.
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn read(&mut self, stdout: ChildStdout, stderr: ChildStderr) -> Result<(), ReaderError> {
        let decoder = ExportDecoder::new(self.max_field_bytes);
        let mut frames = FramedRead::with_capacity(stdout, decoder, READ_BUFFER);
        let mut errors = BufReader::new(stderr).lines();
        let mut stderr_open = true;
        let mut last_errors: VecDeque<String> = VecDeque::new();
        let mut malformed = 0;
        loop {
            tokio::select! {
                frame = frames.next() => {
                    let Some(entry) = frame.transpose()? else { break };
                    let now_malformed = frames.decoder().stats().malformed;
                    Metrics::add(&self.metrics.malformed, now_malformed - malformed);
                    malformed = now_malformed;
                    if !self.entry(entry).await {
                        return Ok(());
                    }
                }
                line = errors.next_line(), if stderr_open => match line {
                    Ok(Some(line)) => note_stderr(&mut last_errors, line),
                    _ => stderr_open = false,
                },
            }
        }
        // stdout is closed: journalctl is exiting; collect its last words.
        while stderr_open {
            match errors.next_line().await {
                Ok(Some(line)) => note_stderr(&mut last_errors, line),
                _ => stderr_open = false,
            }
        }
        let now_malformed = frames.decoder().stats().malformed;
        Metrics::add(&self.metrics.malformed, now_malformed - malformed);
        let status = self.child.wait().await?;
        let stderr = Vec::from(last_errors).join("; ");
        if !status.success() {
            if let Some(cursor) = &self.resume {
                if stderr.contains("cursor") {
                    return Err(ReaderError::Cursor {
                        cursor: cursor.to_string(),
                        stderr,
                    });
                }
            }
            return Err(ReaderError::Exited { status, stderr });
        }
        if self.follow {
            return Err(ReaderError::StoppedFollowing);
        }
        Ok(())
    }

    /// Handles one decoded entry; false when the receiver is gone.
    async fn entry(&mut self, entry: Entry) -> Open {
        Metrics::add(&self.metrics.read, 1);
        if let Some(cursor) = self.resume.take() {
            let Some(gap) = resume_gap(&cursor, &entry.cursor) else {
                return true;
            };
            report_gap(&gap, &self.metrics);
            if self.tx.send(Ok(ReadEvent::Gap(gap))).await.is_err() {
                return false;
            }
        }
        self.tx.send(Ok(ReadEvent::Entry(entry))).await.is_ok()
    }
}

/// What resuming at `cursor` and finding `first` as the first entry
/// means: `None` when `first` is the cursor's own entry (skip it), else
/// the gap (see the module doc for how it is counted).
pub fn resume_gap(cursor: &Cursor, first: &str) -> Option<Gap> {
    let parsed = first.parse::<Cursor>();
    if parsed.as_ref().is_ok_and(|f| f.same_entry(cursor)) {
        return None;
    }
    let exact = parsed.ok().and_then(|f| cursor.entries_between(&f));
    Some(Gap {
        cursor: cursor.to_string(),
        first: first.to_owned(),
        entries: exact.unwrap_or(1),
        exact: exact.is_some(),
    })
}

/// Logs and counts a gap found on resuming; both readers call it before
/// sending the [`ReadEvent::Gap`].
pub fn report_gap(gap: &Gap, metrics: &Metrics) {
    tracing::warn!(
        cursor = %gap.cursor,
        first = %gap.first,
        lost = gap.entries,
        exact = gap.exact,
        "the resume cursor's entry is no longer in the journal (vacuumed?); \
         continuing at the first surviving entry"
    );
    Metrics::add(&metrics.gaps, gap.entries);
}

fn note_stderr(last: &mut VecDeque<String>, line: String) {
    tracing::warn!(target: "journalctl", "{line}");
    if last.len() == STDERR_LINES {
        last.pop_front();
    }
    last.push_back(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "s=4f30609c77d9406e86aba8a29393cad7;i=10;b=0123456789abcdef0123456789abcdef;m=3e8;t=60a24181e4000;x=782928888f5f5546";

    #[test]
    fn resume_gap_rules() {
        let c: Cursor = C.parse().unwrap();
        assert_eq!(resume_gap(&c, C), None, "the cursor's own entry is skipped");
        let next = C.replace("i=10", "i=11").replace("x=7", "x=8");
        let g = resume_gap(&c, &next).unwrap();
        assert_eq!(
            (g.entries, g.exact),
            (0, true),
            "only the stored entry went"
        );
        let later = C.replace("i=10", "i=15").replace("x=7", "x=8");
        let g = resume_gap(&c, &later).unwrap();
        assert_eq!((g.entries, g.exact), (4, true));
        assert_eq!((g.cursor.as_str(), g.first.as_str()), (C, later.as_str()));
        let other_space = later.replace("s=4f", "s=5f");
        let g = resume_gap(&c, &other_space).unwrap();
        assert_eq!((g.entries, g.exact), (1, false), "unknowable: at least one");
        let g = resume_gap(&c, "not a cursor").unwrap();
        assert_eq!((g.entries, g.exact), (1, false));
    }

    #[test]
    fn command_carries_the_source() {
        let src = JournalSource {
            journalctl: "journalctl".into(),
            directory: Some("/var/log/journal".into()),
            files: vec![],
            namespace: Some("ns".into()),
        };
        let cmd = src.command();
        let args: Vec<_> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-o",
                "export",
                "--all",
                "--no-pager",
                "--directory",
                "/var/log/journal",
                "--namespace=ns"
            ]
        );
    }
}
