//! Databases filled through the ingest protocol and cached by parameters,
//! shared by the benchmarks that need stored entries rather than journals
//! (`query`, `forward`).

use crate::load::{self, LoadPlan};
use crate::procs::{free_port, wait_listening, Proc};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Simulated agents used to fill a database when N divides evenly.
const FILL_AGENTS: u64 = 10;

/// What to fill and where.
pub struct Fill<'a> {
    /// Names the cache file and prefixes progress lines.
    pub kind: &'static str,
    /// Bumped when the contents a benchmark expects change.
    pub version: u32,
    pub bin_dir: &'a Path,
    pub cache: &'a Path,
    pub work: &'a Path,
    pub entries: u64,
    pub seed: u64,
    /// Realtime span the entries of one agent cover.
    pub span_usec: u64,
}

/// The cached database for these parameters, filled now if missing.
pub async fn cached_database(f: &Fill<'_>) -> Result<PathBuf> {
    let db = f.cache.join(format!(
        "{}-v{}-seed{}-n{}.db",
        f.kind, f.version, f.seed, f.entries
    ));
    let marker = db.with_extension("complete");
    if marker.exists() {
        eprintln!("{}: database cached in {}", f.kind, db.display());
        return Ok(db);
    }
    remove_db(&db);
    // Every agent ships the same number of entries, so that exactly N
    // are stored.
    let agents = if f.entries.is_multiple_of(FILL_AGENTS) {
        FILL_AGENTS
    } else {
        1
    };
    eprintln!(
        "{}: filling {} entries from {agents} simulated agents into {}…",
        f.kind,
        f.entries,
        db.display()
    );
    let addr = free_port()?;
    let mut cmd = Command::new(f.bin_dir.join("jr-server"));
    cmd.arg("--db")
        .arg(&db)
        .arg("--listen")
        .arg(addr.to_string());
    let mut server = Proc::spawn("jr-server", cmd, &f.work.join("jr-server-fill.log"))?;
    wait_listening("jr-server", addr).await?;
    let per_agent = f.entries / agents;
    let load_plan = LoadPlan {
        server: format!("http://{addr}"),
        agents: agents as usize,
        entries_per_agent: per_agent,
        batch_entries: 2048,
        max_inflight: 4,
        rate: None,
        seed: f.seed,
        step_usec: (f.span_usec / per_agent.max(1)).max(2),
    };
    let started = Instant::now();
    load::run(&load_plan).await?;
    let wall = started.elapsed();
    eprintln!(
        "{}: filled in {:.1} s ({:.0} entries/s)",
        f.kind,
        wall.as_secs_f64(),
        f.entries as f64 / wall.as_secs_f64().max(1e-9)
    );
    let exit = server.stop(Duration::from_secs(60)).await?;
    if exit.code != Some(0) {
        bail!("jr-server (fill) ended with {:?}", exit.code);
    }
    std::fs::write(&marker, b"")?;
    Ok(db)
}

/// Removes a database with its WAL and shared-memory files.
pub fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-fts", "-fts-wal", "-fts-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}
