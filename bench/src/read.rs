//! `jr-bench read`: the native journal reader's speed on the ingest
//! dataset, with every field of every entry decoded, against
//! `journalctl -o export --all` on the same files in the same run.
//!
//! Both run on one core: the reader on a thread pinned to the CPU given
//! (default 0), journalctl under `taskset` on the same CPU. Each side is
//! measured twice: per host directory (what one agent per host reads) and
//! as one journal merged from every host. Besides wall time the table shows
//! the CPU time each side used, which does not depend on what else the
//! machine is doing.

use crate::journals::Dataset;
use anyhow::{bail, Context, Result};
use jr_journal_file::{Journal, Options};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Wall and CPU time of one read.
#[derive(Debug, Clone, Copy, Default)]
struct Timing {
    entries: u64,
    wall: Duration,
    cpu: Duration,
}

impl Timing {
    fn add(&mut self, o: Timing) {
        self.entries += o.entries;
        self.wall += o.wall;
        self.cpu += o.cpu;
    }

    fn per_s(n: u64, d: Duration) -> f64 {
        n as f64 / d.as_secs_f64().max(1e-9)
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is valid for getrusage to fill in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid for writes.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn pin_to(cpu: usize) -> Result<()> {
    // SAFETY: an all-zero cpu_set_t is an empty set; CPU_SET writes in it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is valid for the size given.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if r != 0 {
        bail!(
            "cannot pin to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Reads every entry of `dirs` as one journal, decoding every field.
fn native(dirs: Vec<PathBuf>) -> Result<(Timing, u64)> {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let mut j = Journal::open_directories(dirs, Options::default())?;
    let (mut n, mut bytes) = (0u64, 0u64);
    for e in &mut j {
        n += 1;
        bytes += e.fields.iter().map(|f| f.value.len() as u64).sum::<u64>();
    }
    let t = Timing {
        entries: n,
        wall: wall.elapsed(),
        cpu: thread_cpu() - cpu,
    };
    if j.stats().damaged() != 0 {
        bail!("damage found in the dataset: {:?}", j.stats());
    }
    Ok((t, bytes))
}

/// `journalctl -o export --all` over the files of `dirs` into /dev/null
/// (journalctl takes one `--directory` only, but many `--file`s).
fn journalctl(dirs: &[PathBuf], cpu: usize, entries: u64) -> Result<Timing> {
    let mut cmd = Command::new("taskset");
    cmd.args([
        "-c",
        &cpu.to_string(),
        "journalctl",
        "-o",
        "export",
        "--all",
    ]);
    for d in dirs {
        for f in jr_journal_file::journal_files(d)? {
            cmd.arg("--file").arg(f);
        }
    }
    let (wall, before) = (Instant::now(), children_cpu());
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .context("cannot run taskset journalctl")?;
    if !status.success() {
        bail!("journalctl failed: {status}");
    }
    Ok(Timing {
        entries,
        wall: wall.elapsed(),
        cpu: children_cpu() - before,
    })
}

/// Runs the comparison on a blocking thread pinned to `cpu`.
pub async fn run(data: Dataset, cpu: usize) -> Result<()> {
    tokio::task::spawn_blocking(move || compare(&data, cpu)).await?
}

fn compare(data: &Dataset, cpu: usize) -> Result<()> {
    pin_to(cpu)?;
    let dirs: Vec<PathBuf> = data.hosts.iter().map(|h| h.dir.clone()).collect();
    let (mut ours_hosts, mut theirs_hosts) = (Timing::default(), Timing::default());
    let mut value_bytes = 0;
    for d in &dirs {
        let (t, bytes) = native(vec![d.clone()])?;
        value_bytes += bytes;
        ours_hosts.add(t);
        theirs_hosts.add(journalctl(std::slice::from_ref(d), cpu, t.entries)?);
    }
    let (ours_merged, _) = native(dirs.clone())?;
    let theirs_merged = journalctl(&dirs, cpu, ours_merged.entries)?;
    if ours_hosts.entries != data.entries || ours_merged.entries != data.entries {
        bail!(
            "read {} (per host) and {} (merged) of {} entries",
            ours_hosts.entries,
            ours_merged.entries,
            data.entries
        );
    }
    println!(
        "{} entries ({} hosts, {:.0} MB of field values), every field decoded, one core (CPU {cpu})\n",
        data.entries,
        dirs.len(),
        value_bytes as f64 / 1e6
    );
    println!(
        "| | native entries/s | native entries/CPU-s | journalctl -o export entries/s | journalctl entries/CPU-s | native/journalctl (CPU) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (what, o, t) in [
        ("per host directory", ours_hosts, theirs_hosts),
        ("all hosts merged", ours_merged, theirs_merged),
    ] {
        let ours_cpu = Timing::per_s(o.entries, o.cpu);
        let theirs_cpu = Timing::per_s(t.entries, t.cpu);
        println!(
            "| {what} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
            Timing::per_s(o.entries, o.wall),
            ours_cpu,
            Timing::per_s(t.entries, t.wall),
            theirs_cpu,
            ours_cpu / theirs_cpu
        );
    }
    Ok(())
}
