//! The native reader: reads the journal files themselves with
//! `jr-journal-file`, on a thread of its own, and yields what the
//! journalctl reader yields — the same entries, cursors, resume rules and
//! gaps — without a child process or an export-format round trip.
//!
//! The thread hands entries to the batcher through a bounded channel and
//! blocks when it is full: the journal is the buffer. It stops when the
//! receiver is dropped or its [`NativeGuard`] is.
//!
//! Following: the journal directories are watched with inotify (`notify`)
//! and [`Journal::refresh`] lists what was appended, new files and
//! rotation, so nothing is read twice. The reader refreshes at least every
//! [`SAFETY_REFRESH`] anyway, in case an event was lost, and every
//! [`POLL_INTERVAL`] when inotify cannot be used.
//!
//! Start positions: a cursor is sought with `seek_cursor` and the resume
//! rules of [`crate::reader::resume_gap`] apply to the first entry; a start
//! time has no seek in the crate, so entries are skipped until the first
//! one at or after it (whole seconds, as the journalctl reader passes
//! `--since=@SECONDS`).
//!
//! Filters: given one ([`spawn_filtered`]), the reader decodes only the
//! fields the filter looks at (unit, priority, matched fields) and the
//! rest of an entry only when the filter keeps it. A dropped entry is still
//! sent, with just those fields, so that the batcher counts it and moves
//! the position past it; its own filter decides the same on those fields.

use crate::filter::Filter;
use crate::metrics::Metrics;
use crate::reader::{
    report_gap, resume_gap, JournalSource, ReadEvent, ReaderError, ReaderItem, ReaderOptions,
    StartAt,
};
use jr_journal::cursor::Cursor;
use jr_journal::Entry;
use jr_journal_file::{Journal, JournalFile, Options};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Entries the reader may decode ahead of the batcher.
const CHANNEL_ENTRIES: usize = 256;
/// Refresh interval when inotify is unavailable.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Refresh interval with inotify, in case an event was lost.
pub const SAFETY_REFRESH: Duration = Duration::from_secs(1);
/// How often an idle follower checks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(250);
/// Entries between updates of the corrupt-region counter.
const STATS_EVERY: u32 = 4096;
const MACHINE_ID_FILE: &str = "/etc/machine-id";

/// Why the native reader cannot read a source; the caller reads it with
/// journalctl instead.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    File(#[from] jr_journal_file::Error),
    #[error("namespace pattern {0:?} is expanded by journalctl only")]
    NamespacePattern(String),
    #[error("namespace {0:?} needs this machine's id, and {MACHINE_ID_FILE} is unreadable")]
    NoMachineId(String),
    #[error("cannot start the reader thread: {0}")]
    Thread(std::io::Error),
    #[error("the reader thread ended while opening the journal")]
    ThreadDied,
}

impl OpenError {
    /// The files use features this reader does not know.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, OpenError::File(e) if e.is_unsupported())
    }
}

/// How a source is opened natively.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// Directories and their machine-id subdirectories.
    Directories(Vec<PathBuf>),
    Files(Vec<PathBuf>),
}

fn machine_id() -> Option<String> {
    let id = std::fs::read_to_string(MACHINE_ID_FILE).ok()?;
    let id = id.trim();
    crate::config::is_id128(id).then(|| id.to_ascii_lowercase())
}

fn layout(source: &JournalSource) -> Result<Layout, OpenError> {
    if !source.files.is_empty() {
        return Ok(Layout::Files(source.files.clone()));
    }
    if let Some(d) = &source.directory {
        return Ok(Layout::Directories(vec![d.clone()]));
    }
    if let Some(ns) = &source.namespace {
        // journald keeps a namespace in `<machine-id>.<namespace>`.
        if ns.contains('*') {
            return Err(OpenError::NamespacePattern(ns.clone()));
        }
        let id = machine_id().ok_or_else(|| OpenError::NoMachineId(ns.clone()))?;
        let dirs = jr_journal_file::SYSTEM_JOURNAL_ROOTS
            .iter()
            .map(|root| Path::new(root).join(format!("{id}.{ns}")))
            .filter(|p| p.is_dir())
            .collect();
        return Ok(Layout::Directories(dirs));
    }
    Ok(Layout::Directories(jr_journal_file::system_journal_dirs()))
}

/// Opens `source` as journalctl would read it.
pub fn open(source: &JournalSource) -> Result<Journal, OpenError> {
    Ok(match layout(source)? {
        Layout::Directories(dirs) => Journal::open_directories(dirs, Options::default())?,
        Layout::Files(files) => Journal::open_files(files, Options::default())?,
    })
}

/// The newest entry of `source` (greatest realtime among the files' last
/// entries), found without reading the rest; `Ok(None)` for an empty journal.
pub fn newest_entry(source: &JournalSource) -> Result<Option<Entry>, OpenError> {
    let paths: Vec<PathBuf> = open(source)?.files().map(|f| f.path().to_owned()).collect();
    let mut best: Option<(JournalFile, jr_journal_file::EntryMeta)> = None;
    for p in paths {
        let Ok(mut f) = JournalFile::open(&p) else {
            continue;
        };
        let last = (0..f.len()).rev().find_map(|k| f.meta(k)?.ok());
        if let Some(m) = last {
            if best.as_ref().is_none_or(|(_, b)| m.realtime > b.realtime) {
                best = Some((f, m));
            }
        }
    }
    match best {
        Some((mut f, m)) => Ok(Some(f.decode(&m)?)),
        None => Ok(None),
    }
}

/// Stops the reader thread when dropped.
#[derive(Debug)]
pub struct NativeGuard {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl NativeGuard {
    /// Whether the reader thread is still running.
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }
}

impl Drop for NativeGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Opens the source on a new thread and, once it is open, reads it there.
/// Fails (without reading anything) when the source cannot be opened
/// natively.
pub async fn spawn(
    opts: &ReaderOptions,
    metrics: Arc<Metrics>,
) -> Result<(mpsc::Receiver<ReaderItem>, NativeGuard), OpenError> {
    spawn_filtered(opts, Filter::default(), metrics).await
}

/// [`spawn`], deciding `filter` before an entry is decoded whole: entries
/// it drops arrive with only the fields it looks at.
pub async fn spawn_filtered(
    opts: &ReaderOptions,
    filter: Filter,
    metrics: Arc<Metrics>,
) -> Result<(mpsc::Receiver<ReaderItem>, NativeGuard), OpenError> {
    let (tx, rx) = mpsc::channel(CHANNEL_ENTRIES);
    let (opened_tx, opened) = oneshot::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = opts.clone();
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("jr-journal-read".into())
        .spawn(move || {
            let journal = match open(&opts.source) {
                Ok(j) => j,
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            if opened_tx.send(Ok(())).is_err() {
                return;
            }
            let watch = match layout(&opts.source) {
                Ok(l) => l,
                Err(_) => Layout::Directories(Vec::new()),
            };
            let filter = (!filter.is_empty()).then_some(filter);
            Worker::new(journal, &opts, watch, tx, thread_stop, metrics, filter).run();
        })
        .map_err(OpenError::Thread)?;
    let guard = NativeGuard { stop, thread };
    match opened.await {
        Ok(Ok(())) => Ok((rx, guard)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(OpenError::ThreadDied),
    }
}

struct Worker {
    journal: Journal,
    tx: mpsc::Sender<ReaderItem>,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    resume: Option<Cursor>,
    /// Entries before this realtime (µs) are skipped, until the first one
    /// that is not.
    since: Option<u64>,
    follow: bool,
    max_field_bytes: usize,
    layout: Layout,
    /// Damaged regions already added to the metrics.
    damaged: u64,
    filter: Option<Filter>,
}

impl Worker {
    fn new(
        mut journal: Journal,
        opts: &ReaderOptions,
        layout: Layout,
        tx: mpsc::Sender<ReaderItem>,
        stop: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
        filter: Option<Filter>,
    ) -> Worker {
        let mut resume = None;
        let mut since = None;
        match &opts.start {
            StartAt::Head => journal.seek_head(),
            StartAt::Tail => journal.seek_tail(),
            StartAt::Since(t) => {
                let secs = t
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                since = Some(secs.saturating_mul(1_000_000));
            }
            StartAt::After(c) => {
                journal.seek_cursor(c);
                resume = Some(c.clone());
            }
        }
        Worker {
            journal,
            tx,
            stop,
            metrics,
            resume,
            since,
            follow: opts.follow,
            max_field_bytes: opts.max_field_bytes,
            layout,
            damaged: 0,
            filter,
        }
    }

    fn run(mut self) {
        if let Err(e) = self.read() {
            let _ = self.tx.blocking_send(Err(e));
        }
        self.note_damage();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.tx.is_closed()
    }

    fn read(&mut self) -> Result<(), ReaderError> {
        let mut waker = if self.follow {
            Some(Waker::new(&self.layout))
        } else {
            None
        };
        loop {
            let mut n = 0u32;
            while let Some(entry) = self.next_entry() {
                if !self.entry(entry) {
                    return Ok(());
                }
                n += 1;
                if n == STATS_EVERY {
                    n = 0;
                    self.note_damage();
                }
            }
            self.note_damage();
            let Some(w) = waker.as_mut() else {
                return Ok(());
            };
            if !w.wait(|| self.stopped()) {
                return Ok(());
            }
            self.journal.refresh().map_err(ReaderError::Native)?;
            w.watch_new_subdirs(&self.layout);
        }
    }

    fn next_entry(&mut self) -> Option<Entry> {
        match &self.filter {
            Some(f) => self.journal.next_filtered(f).map(|x| x.entry),
            None => self.journal.next_entry(),
        }
    }

    fn note_damage(&mut self) {
        let now = self.journal.stats().damaged();
        Metrics::add(&self.metrics.corrupt, now.saturating_sub(self.damaged));
        self.damaged = self.damaged.max(now);
    }

    /// Handles one entry; false when the reader should stop.
    fn entry(&mut self, mut entry: Entry) -> bool {
        if let Some(t) = self.since {
            if entry.realtime_usec < t {
                return !self.stopped();
            }
            self.since = None;
        }
        Metrics::add(&self.metrics.read, 1);
        for f in &mut entry.fields {
            if f.value.len() > self.max_field_bytes {
                f.value.truncate(self.max_field_bytes);
            }
        }
        if let Some(cursor) = self.resume.take() {
            let Some(gap) = resume_gap(&cursor, &entry.cursor) else {
                return !self.stopped();
            };
            report_gap(&gap, &self.metrics);
            if self.tx.blocking_send(Ok(ReadEvent::Gap(gap))).is_err() {
                return false;
            }
        }
        self.tx.blocking_send(Ok(ReadEvent::Entry(entry))).is_ok()
            && !self.stop.load(Ordering::Relaxed)
    }
}

fn is_machine_id_dir(name: &str) -> bool {
    // `<machine-id>` or a namespace's `<machine-id>.<namespace>`.
    name.get(..32).is_some_and(crate::config::is_id128)
        && (name.len() == 32 || name.as_bytes().get(32) == Some(&b'.'))
}

/// Whether a change to `path` may concern the journal.
fn relevant(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n.ends_with(".journal") || n.ends_with(".journal~") || is_machine_id_dir(n)
    })
}

/// Directories whose changes matter for `layout`.
fn watch_dirs(layout: &Layout) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    match layout {
        Layout::Directories(dirs) => {
            for d in dirs {
                out.push(d.clone());
                let Ok(rd) = std::fs::read_dir(d) else {
                    continue;
                };
                for de in rd.flatten() {
                    let is_dir = de.file_type().is_ok_and(|t| t.is_dir());
                    if is_dir && de.file_name().to_str().is_some_and(is_machine_id_dir) {
                        out.push(de.path());
                    }
                }
            }
        }
        Layout::Files(files) => {
            for f in files {
                let parent = match f.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                if !out.contains(&parent) {
                    out.push(parent);
                }
            }
        }
    }
    out
}

/// Wakes the follower when the journal may have changed: on an inotify
/// event, else on a timer.
struct Waker {
    watcher: Option<RecommendedWatcher>,
    events: std::sync::mpsc::Receiver<notify::Result<notify::Event>>,
    watching: HashSet<PathBuf>,
    last_refresh: Instant,
}

impl Waker {
    fn new(layout: &Layout) -> Waker {
        let (tx, events) = std::sync::mpsc::channel();
        let watcher = match notify::recommended_watcher(tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, interval = ?POLL_INTERVAL, "cannot watch the journal with inotify; polling it");
                None
            }
        };
        let mut w = Waker {
            watcher,
            events,
            watching: HashSet::new(),
            last_refresh: Instant::now(),
        };
        w.watch_new_subdirs(layout);
        w
    }

    /// Watches directories of `layout` not watched yet (a machine-id
    /// subdirectory may appear later).
    fn watch_new_subdirs(&mut self, layout: &Layout) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for d in watch_dirs(layout) {
            if self.watching.contains(&d) {
                continue;
            }
            match watcher.watch(&d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watching.insert(d);
                }
                Err(e) => {
                    tracing::debug!(dir = %d.display(), error = %e, "cannot watch journal directory; relying on periodic refresh");
                }
            }
        }
    }

    /// Blocks until the journal may have changed (true) or `stopped` says
    /// so (false).
    fn wait(&mut self, stopped: impl Fn() -> bool) -> bool {
        loop {
            if stopped() {
                return false;
            }
            let interval = if self.watcher.is_some() {
                SAFETY_REFRESH
            } else {
                POLL_INTERVAL
            };
            let now = Instant::now();
            let due = self.last_refresh + interval;
            if now >= due {
                self.last_refresh = now;
                return true;
            }
            let timeout = (due - now).min(STOP_CHECK);
            match self.events.recv_timeout(timeout) {
                Ok(Ok(ev)) if matters(&ev) => {
                    // Coalesce a burst of events into one refresh.
                    while self.events.try_recv().is_ok() {}
                    self.last_refresh = Instant::now();
                    return true;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "inotify error; refreshing the journal");
                    self.last_refresh = Instant::now();
                    return true;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    tracing::warn!(interval = ?POLL_INTERVAL, "inotify watcher stopped; polling the journal");
                    self.watcher = None;
                }
            }
        }
    }
}

/// Whether an inotify event may mean new entries: reads and opens (our
/// own, too) do not; a write, a close after writing, a new, renamed or
/// deleted file do.
fn matters(ev: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode};
    let kind = match ev.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    kind && (ev.paths.is_empty() || ev.paths.iter().any(|p| relevant(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_dirs_and_relevant_paths() {
        let id = "0123456789abcdef0123456789abcdef";
        assert!(is_machine_id_dir(id));
        assert!(is_machine_id_dir(&format!("{id}.audit")));
        assert!(!is_machine_id_dir(&format!("{id}x")));
        assert!(!is_machine_id_dir("tmp"));
        assert!(relevant(Path::new("/var/log/journal/x/system.journal")));
        assert!(relevant(Path::new("/x/user-1000@a-b.journal~")));
        assert!(!relevant(Path::new("/tmp/notes.txt")));
    }

    #[test]
    fn sources_map_to_layouts() {
        let files = JournalSource {
            files: vec![
                "/a/x.journal".into(),
                "/a/y.journal".into(),
                "z.journal".into(),
            ],
            ..Default::default()
        };
        let l = layout(&files).unwrap();
        assert_eq!(watch_dirs(&l), [PathBuf::from("/a"), PathBuf::from(".")]);
        let dir = JournalSource {
            directory: Some("/d".into()),
            ..Default::default()
        };
        assert_eq!(
            layout(&dir).unwrap(),
            Layout::Directories(vec!["/d".into()])
        );
        let pattern = JournalSource {
            namespace: Some("*".into()),
            ..Default::default()
        };
        assert!(matches!(
            layout(&pattern),
            Err(OpenError::NamespacePattern(_))
        ));
    }
}
