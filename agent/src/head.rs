//! The journal's head: the newest entry of the journal the agent reads,
//! whatever its filters, found apart from reading so that a reader that is
//! blocked (or slow) still lets the server see the journal grow.
//!
//! A task recomputes the head every `--head-interval` and publishes it on
//! a `watch` channel; the session puts the latest value on every batch and
//! sends it as a heartbeat on the same interval. Computing it is cheap:
//!
//! - natively, the tracker keeps every journal file open between ticks
//!   (`jr-journal-file`), refreshes each (a header read and the entry
//!   array items appended since), and decodes only the newest last entry
//!   among the files; files that appear are opened, files that go are
//!   dropped;
//! - with `journalctl -n 1 -o export` when the files cannot be read
//!   natively (unknown incompatible features, a namespace pattern), only
//!   the cursor and realtime of its output are read.
//!
//! The work runs on the blocking pool (native) or in a child process
//! (journalctl), never on the reader's thread.

use crate::reader::JournalSource;
use jr_journal_file::{EntryMeta, JournalFile};
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

/// Files are only looked at for their newest entry: small read windows,
/// and the offsets of the newest entries only (the newest readable one is
/// among them unless that many in a row are damaged).
const TAIL_OPTIONS: jr_journal_file::Options = jr_journal_file::Options {
    max_payload: 768 << 20,
    window_bytes: 16 << 10,
    tail: Some(256),
};

/// Default of `--head-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a `journalctl -n 1` may take.
const JOURNALCTL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest output of `journalctl -n 1` read (one entry).
const JOURNALCTL_MAX_OUTPUT: usize = 64 * 1024 * 1024;

/// The newest entry of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalHead {
    pub cursor: String,
    pub realtime_usec: u64,
}

impl JournalHead {
    pub fn to_proto(&self) -> jr_proto::v1::Head {
        jr_proto::v1::Head {
            cursor: self.cursor.clone(),
            realtime_usec: self.realtime_usec,
        }
    }
}

/// Head and acknowledged position in journal time, for the agent's "lag
/// behind the journal head" metric.
#[derive(Debug, Default)]
pub struct HeadGauge {
    head_realtime_usec: AtomicU64,
    acked_realtime_usec: AtomicU64,
}

impl HeadGauge {
    pub fn set_head(&self, realtime_usec: u64) {
        self.head_realtime_usec
            .store(realtime_usec, Ordering::Relaxed);
    }

    /// Records the realtime of the entry the server last acknowledged.
    pub fn set_acked(&self, realtime_usec: u64) {
        self.acked_realtime_usec
            .store(realtime_usec, Ordering::Relaxed);
    }

    /// Realtime of the journal's newest entry (0 until known).
    pub fn head_realtime_usec(&self) -> u64 {
        self.head_realtime_usec.load(Ordering::Relaxed)
    }

    /// How far the acknowledged position is behind the head, in seconds of
    /// journal time; 0 while either is unknown.
    pub fn lag_seconds(&self) -> f64 {
        let head = self.head_realtime_usec.load(Ordering::Relaxed);
        let acked = self.acked_realtime_usec.load(Ordering::Relaxed);
        if head == 0 || acked == 0 {
            return 0.0;
        }
        head.saturating_sub(acked) as f64 / 1e6
    }
}

/// Which files make up the source, when it can be read natively.
fn native_files(source: &JournalSource) -> Option<io::Result<Vec<PathBuf>>> {
    if source.namespace.is_some() {
        return None;
    }
    if !source.files.is_empty() {
        return Some(Ok(source.files.clone()));
    }
    let dirs = match &source.directory {
        Some(d) => vec![d.clone()],
        None => jr_journal_file::system_journal_dirs(),
    };
    let mut out = Vec::new();
    for d in dirs {
        match jr_journal_file::journal_files(&d) {
            Ok(f) => out.extend(f),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(out))
}

/// Journal files kept open between ticks.
#[derive(Default)]
struct NativeTail {
    files: HashMap<PathBuf, JournalFile>,
}

/// Why the native tail cannot be used; the tracker then asks journalctl.
#[derive(Debug, thiserror::Error)]
enum NativeError {
    #[error("a journal namespace is found by journalctl only")]
    NotNative,
    #[error(transparent)]
    Io(io::Error),
    #[error(transparent)]
    File(jr_journal_file::Error),
}

fn last_meta(f: &mut JournalFile) -> Option<EntryMeta> {
    (0..f.len()).rev().find_map(|k| f.meta(k)?.ok())
}

impl NativeTail {
    fn newest(&mut self, source: &JournalSource) -> Result<Option<JournalHead>, NativeError> {
        let paths = native_files(source)
            .ok_or(NativeError::NotNative)?
            .map_err(NativeError::Io)?;
        self.files.retain(|p, _| paths.contains(p));
        let mut best: Option<(PathBuf, EntryMeta)> = None;
        for p in paths {
            let f = match self.files.get_mut(&p) {
                Some(f) => {
                    if f.refresh().is_err() {
                        // Replaced under the same name (rotation): reopen.
                        self.files.remove(&p);
                        continue;
                    }
                    f
                }
                None => match JournalFile::open_with(&p, &TAIL_OPTIONS) {
                    Ok(f) => self.files.entry(p.clone()).or_insert(f),
                    Err(e) if e.is_unsupported() => return Err(NativeError::File(e)),
                    // Vanished or unreadable: the next tick lists again.
                    Err(_) => continue,
                },
            };
            if let Some(m) = last_meta(f) {
                if best.as_ref().is_none_or(|(_, b)| m.realtime > b.realtime) {
                    best = Some((p, m));
                }
            }
        }
        let Some((path, meta)) = best else {
            return Ok(None);
        };
        let Some(f) = self.files.get_mut(&path) else {
            return Ok(None);
        };
        let e = f.decode(&meta).map_err(NativeError::File)?;
        Ok(Some(JournalHead {
            cursor: e.cursor,
            realtime_usec: e.realtime_usec,
        }))
    }
}

/// The newest entry per `journalctl -n 1 -o export`.
async fn journalctl_head(source: &JournalSource) -> io::Result<Option<JournalHead>> {
    let mut cmd = source.command();
    cmd.arg("--lines=1");
    let out = tokio::time::timeout(JOURNALCTL_TIMEOUT, cmd.output())
        .await
        .map_err(|_| io::Error::other("journalctl -n 1 timed out"))??;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "journalctl -n 1 exited with {}",
            out.status
        )));
    }
    let stdout = &out.stdout[..out.stdout.len().min(JOURNALCTL_MAX_OUTPUT)];
    Ok(parse_export_head(stdout))
}

/// Cursor and realtime of the first entry of export-format output: its
/// address fields are text lines that come first.
fn parse_export_head(out: &[u8]) -> Option<JournalHead> {
    let mut cursor = None;
    let mut realtime = None;
    for line in out.split(|&b| b == b'\n') {
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix(b"__CURSOR=") {
            cursor = std::str::from_utf8(v).ok().map(str::to_owned);
        } else if let Some(v) = line.strip_prefix(b"__REALTIME_TIMESTAMP=") {
            realtime = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        }
        if cursor.is_some() && realtime.is_some() {
            break;
        }
    }
    Some(JournalHead {
        cursor: cursor?,
        realtime_usec: realtime?,
    })
}

/// Computes the head every `interval` and publishes it (None until the
/// journal has an entry). Dropping the handle stops the task.
pub fn spawn(
    source: JournalSource,
    interval: Duration,
    gauge: Arc<HeadGauge>,
) -> (watch::Receiver<Option<JournalHead>>, AbortOnDropHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut tail = Some(NativeTail::default());
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let head = match tail.take() {
                Some(mut t) => {
                    let src = source.clone();
                    let joined = tokio::task::spawn_blocking(move || {
                        let r = t.newest(&src);
                        (t, r)
                    })
                    .await;
                    match joined {
                        Ok((t, Ok(h))) => {
                            tail = Some(t);
                            h
                        }
                        Ok((t, Err(NativeError::Io(e)))) => {
                            tracing::debug!(error = %e, "cannot list the journal for its head");
                            tail = Some(t);
                            continue;
                        }
                        Ok((_, Err(e))) => {
                            tracing::info!(reason = %e, "finding the journal head with journalctl -n 1");
                            match journalctl_head(&source).await {
                                Ok(h) => h,
                                Err(e) => {
                                    tracing::debug!(error = %e, "cannot find the journal head");
                                    continue;
                                }
                            }
                        }
                        Err(_) => return,
                    }
                }
                None => match journalctl_head(&source).await {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot find the journal head");
                        continue;
                    }
                },
            };
            if let Some(h) = &head {
                gauge.set_head(h.realtime_usec);
            }
            if tx.send(head).is_err() {
                return;
            }
        }
    });
    (rx, AbortOnDropHandle::new(task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_head_reads_the_address_fields() {
        let out = b"__CURSOR=s=1;i=2\n__REALTIME_TIMESTAMP=1700000000000000\n\
                    __MONOTONIC_TIMESTAMP=5\nMESSAGE=x\n\n";
        assert_eq!(
            parse_export_head(out),
            Some(JournalHead {
                cursor: "s=1;i=2".into(),
                realtime_usec: 1_700_000_000_000_000
            })
        );
        assert_eq!(parse_export_head(b""), None);
        assert_eq!(
            parse_export_head(b"__CURSOR=x\n\n__REALTIME_TIMESTAMP=1\n"),
            None
        );
    }

    #[test]
    fn gauge_lag() {
        let g = HeadGauge::default();
        assert_eq!(g.lag_seconds(), 0.0);
        g.set_head(10_000_000);
        g.set_acked(4_000_000);
        assert_eq!(g.lag_seconds(), 6.0);
    }

    #[test]
    fn missing_directory_is_an_io_error_and_namespace_not_native() {
        let src = JournalSource {
            directory: Some("/nonexistent/journal".into()),
            ..Default::default()
        };
        assert!(matches!(
            NativeTail::default().newest(&src),
            Err(NativeError::Io(_))
        ));
        let ns = JournalSource {
            namespace: Some("x".into()),
            ..Default::default()
        };
        assert!(matches!(
            NativeTail::default().newest(&ns),
            Err(NativeError::NotNative)
        ));
    }
}
