//! The ingest benchmark's dataset as real journal files: one directory per
//! host, each written by `systemd-journal-remote` from export-format text
//! streamed into its stdin. Built once per (seed, entries, hosts) and kept
//! in a cache directory, because writing a million entries takes longer
//! than shipping them.

use crate::dataset::{self, Generator};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
pub const JOURNAL_UPLOAD: &str = "/lib/systemd/systemd-journal-upload";
/// Bump when the generator changes, so that old caches are not reused.
const DATASET_VERSION: u32 = 1;
/// 2024-06-01T00:00:00Z: the dataset lives in the past, away from real logs.
const START_USEC: u64 = 1_717_200_000_000_000;
/// Mean distance between two entries of one host.
const STEP_USEC: u64 = 500;

/// The journal files of every host.
pub struct Dataset {
    pub dir: PathBuf,
    pub hosts: Vec<HostDir>,
    pub entries: u64,
}

pub struct HostDir {
    pub hostname: String,
    pub dir: PathBuf,
    pub entries: u64,
}

/// Checks that the systemd tools the benchmark needs are installed.
pub fn check_tools() -> Result<()> {
    for tool in [JOURNAL_REMOTE, JOURNAL_UPLOAD] {
        if !Path::new(tool).exists() {
            bail!("{tool} is missing: apt-get install systemd-journal-remote");
        }
    }
    Ok(())
}

/// The dataset for these parameters: from the cache, or written now.
pub async fn prepare(cache: &Path, seed: u64, entries: u64, hosts: usize) -> Result<Dataset> {
    let dir = cache.join(format!(
        "journals-v{DATASET_VERSION}-seed{seed}-n{entries}-h{hosts}"
    ));
    let per_host =
        |i: usize| entries / hosts as u64 + u64::from((i as u64) < entries % hosts as u64);
    let host_dirs = |root: &Path| -> Vec<HostDir> {
        (0..hosts)
            .map(|i| {
                let hostname = Generator::new(seed, i, 0, STEP_USEC).host.hostname;
                HostDir {
                    dir: root.join(&hostname),
                    hostname,
                    entries: per_host(i),
                }
            })
            .collect()
    };
    if dir.join("complete").exists() {
        eprintln!("dataset: cached in {}", dir.display());
        return Ok(Dataset {
            hosts: host_dirs(&dir),
            dir,
            entries,
        });
    }
    let partial = cache.join(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    eprintln!(
        "dataset: writing {entries} entries across {hosts} hosts with systemd-journal-remote…"
    );
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for (i, host) in host_dirs(&partial).into_iter().enumerate() {
        tasks.push(tokio::task::spawn_blocking(move || {
            write_host(seed, i, &host)
        }));
    }
    for t in tasks {
        t.await??;
    }
    std::fs::write(partial.join("complete"), b"")?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("cannot move the dataset to {}", dir.display()))?;
    eprintln!(
        "dataset: written in {:.1} s, cached in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(Dataset {
        hosts: host_dirs(&dir),
        dir,
        entries,
    })
}

/// Streams one host's entries into `systemd-journal-remote -o FILE -`.
fn write_host(seed: u64, index: usize, host: &HostDir) -> Result<()> {
    std::fs::create_dir_all(&host.dir)?;
    let file = host.dir.join(format!("{}.journal", host.hostname));
    let mut cmd = Command::new(JOURNAL_REMOTE);
    cmd.arg("-o")
        .arg(&file)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {JOURNAL_REMOTE}"))?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let mut gen = Generator::new(seed, index, START_USEC, STEP_USEC);
    let mut buf = Vec::with_capacity(1 << 20);
    for _ in 0..host.entries {
        dataset::write_export(&gen.next_entry(), &mut buf);
        if buf.len() > 1 << 20 {
            stdin.write_all(&buf)?;
            buf.clear();
        }
    }
    stdin.write_all(&buf)?;
    drop(stdin);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{JOURNAL_REMOTE} -o {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Entries in the journal files of `dir`, from their headers.
pub fn count_entries(dir: &Path) -> Result<u64> {
    let out = Command::new("journalctl")
        .arg("--directory")
        .arg(dir)
        .arg("--header")
        .output()
        .context("cannot run journalctl --header")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Entry objects:"))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum())
}

/// Total size of the files directly in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
