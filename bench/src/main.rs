//! `jr-bench`: journal-router's benchmarks.
//!
//! - `ingest`: one dataset of real journal files shipped by jr-agent →
//!   jr-server and by systemd-journal-upload → systemd-journal-remote in
//!   the same run, with a table of both and their ratios.
//! - `load`: many simulated agents speaking the ingest protocol at once;
//!   commit latency percentiles and throughput.
//! - `query`: latency of common queries on a large database.
//! - `forward`: throughput and server CPU of one route sending a stored
//!   database to a local plain-TCP Logentries stand-in.
//! - `read`: the native journal reader against `journalctl -o export` on
//!   the ingest dataset, on one core.
//!
//! Temporary files go to one directory that is removed at the end unless
//! `--keep`; generated datasets and the query database stay cached in
//! `$TMPDIR/jr-bench-cache` because they take longest to make.

mod dataset;
mod fill;
mod forward;
mod ingest;
mod journals;
mod load;
mod procs;
mod proxy;
mod query;
mod read;
mod report;
mod vocabulary;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "jr-bench", about = "journal-router benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Ship a journal dataset with journal-router and with
    /// systemd-journal-upload → systemd-journal-remote; compare.
    Ingest(IngestArgs),
    /// Many simulated agents at once against a fresh jr-server.
    Load(LoadArgs),
    /// Latency of common queries on a large database.
    Query(QueryArgs),
    /// Throughput of one route forwarding a filled database to a local
    /// plain-TCP listener.
    Forward(ForwardArgs),
    /// The native journal reader against `journalctl -o export` on the
    /// ingest dataset, every field decoded, on one core.
    Read(ReadArgs),
}

#[derive(Args)]
struct Common {
    /// Keep the run directory (databases, journal files, logs).
    #[arg(long)]
    keep: bool,
    /// Do not build jr-server, jr-agent and jrctl first.
    #[arg(long)]
    no_build: bool,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where generated datasets are cached.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Args)]
struct IngestArgs {
    /// Entries in the dataset.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Hosts (one journal directory and one client each).
    #[arg(long, default_value_t = 4)]
    hosts: usize,
    /// 100,000 entries.
    #[arg(long)]
    quick: bool,
    /// Run only one side.
    #[arg(long, value_enum, default_value_t = Only::Both)]
    only: Only,
    /// Extra argument for every jr-agent, e.g. `--agent-arg=--reader=journalctl`
    /// (repeatable).
    #[arg(long = "agent-arg", value_name = "ARG", allow_hyphen_values = true)]
    agent_args: Vec<String>,
    /// Record `perf record -g` profiles of jr-server and each jr-agent
    /// into the run directory (implies --keep; the figures then include
    /// perf's own overhead).
    #[arg(long)]
    perf: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    Both,
    Ours,
    Peer,
}

#[derive(Args)]
struct LoadArgs {
    /// Simulated agents, each with its own machine id and connection.
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// Entries each agent ships.
    #[arg(long, default_value_t = 5_000)]
    entries_per_agent: u64,
    /// Entries per batch.
    #[arg(long, default_value_t = 512)]
    batch_entries: usize,
    /// Batches each agent keeps unacknowledged at most.
    #[arg(long, default_value_t = 4)]
    max_inflight: usize,
    /// Entries per second each agent sends (paced, like a node logging at
    /// that rate); without it agents send as fast as acknowledgements
    /// allow.
    #[arg(long, value_name = "N")]
    rate: Option<f64>,
    /// Use this running server instead of starting a fresh one.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct QueryArgs {
    /// Entries in the query database.
    #[arg(long, default_value_t = 10_000_000)]
    entries: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct ForwardArgs {
    /// Entries in the database, all forwarded.
    #[arg(long, default_value_t = 200_000)]
    entries: u64,
    /// 50,000 entries.
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct ReadArgs {
    /// Entries in the dataset (the ingest benchmark's).
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Hosts (one journal directory each).
    #[arg(long, default_value_t = 4)]
    hosts: usize,
    /// The CPU both readers run on.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    #[command(flatten)]
    common: Common,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jr-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Ingest(a) => ingest(a).await,
        Cmd::Load(a) => load(a).await,
        Cmd::Query(a) => query(a).await,
        Cmd::Forward(a) => forward(a).await,
        Cmd::Read(a) => read(a).await,
    }
}

/// The run directory: removed on drop unless kept.
struct Work {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Work {
    fn new(keep: bool) -> Result<Work> {
        let dir = tempfile::Builder::new().prefix("jr-bench-").tempdir()?;
        let path = dir.path().to_owned();
        if keep {
            eprintln!("run directory (kept): {}", path.display());
            Ok(Work {
                dir: None,
                path: dir.keep(),
            })
        } else {
            Ok(Work {
                dir: Some(dir),
                path,
            })
        }
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = d.close();
        }
    }
}

fn cache_dir(common: &Common) -> Result<PathBuf> {
    let dir = common
        .cache_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("jr-bench-cache"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Builds the binaries under test with the profile jr-bench was built
/// with, and returns the directory that holds them.
fn binaries(no_build: bool) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin_dir = exe
        .parent()
        .context("no directory for jr-bench")?
        .to_owned();
    if !no_build {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("no workspace")?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.current_dir(workspace).args([
            "build",
            "-q",
            "-p",
            "jr-server",
            "-p",
            "jr-agent",
            "-p",
            "jrctl",
        ]);
        if bin_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().context("cannot run cargo build")?;
        if !status.success() {
            bail!("cargo build of jr-server, jr-agent and jrctl failed");
        }
    }
    for bin in ["jr-server", "jr-agent"] {
        if !bin_dir.join(bin).exists() {
            bail!("{} is missing", bin_dir.join(bin).display());
        }
    }
    Ok(bin_dir)
}

async fn ingest(a: IngestArgs) -> Result<()> {
    let entries = if a.quick { 100_000 } else { a.entries };
    if entries == 0 || a.hosts == 0 {
        bail!("--entries and --hosts must be positive");
    }
    journals::check_tools()?;
    let bin_dir = binaries(a.common.no_build)?;
    let cache = cache_dir(&a.common)?;
    let data = journals::prepare(&cache, a.common.seed, entries, a.hosts).await?;
    let work = Work::new(a.common.keep || a.perf)?;
    let ours_cfg = ingest::Ours {
        bin_dir,
        perf: a.perf.then(|| work.path.clone()),
        agent_args: a.agent_args.clone(),
    };
    let ours = if a.only != Only::Peer {
        eprintln!("ours: {} × jr-agent → jr-server…", a.hosts);
        Some(ingest::run_ours(&ours_cfg, &data, &work.path).await?)
    } else {
        None
    };
    let peer = if a.only != Only::Ours {
        eprintln!(
            "peer: {} × systemd-journal-upload → systemd-journal-remote…",
            a.hosts
        );
        Some(ingest::run_peer(&data, &work.path).await?)
    } else {
        None
    };
    println!(
        "\ningest: {entries} entries, {} hosts, {} logical CPUs (dataset {})\n",
        a.hosts,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        data.dir.display()
    );
    match (&ours, &peer) {
        (Some(o), p) => println!("{}", report::table(o, p.as_ref())),
        (None, Some(p)) => println!("{}", report::table(p, None)),
        (None, None) => {}
    }
    if a.perf {
        println!(
            "profiles: perf report -i {}/perf-jr-server.data (and perf-jr-agent-*.data)",
            work.path.display()
        );
    }
    Ok(())
}

async fn load(a: LoadArgs) -> Result<()> {
    let work = Work::new(a.common.keep)?;
    let mut server = None;
    let url = match a.server {
        Some(url) => url,
        None => {
            let bin_dir = binaries(a.common.no_build)?;
            let addr = procs::free_port()?;
            let mut cmd = std::process::Command::new(bin_dir.join("jr-server"));
            cmd.arg("--db")
                .arg(work.path.join("journal-router.db"))
                .arg("--listen")
                .arg(addr.to_string());
            let p = procs::Proc::spawn("jr-server", cmd, &work.path.join("jr-server.log"))?;
            procs::wait_listening("jr-server", addr).await?;
            server = Some(p);
            format!("http://{addr}")
        }
    };
    let plan = load::LoadPlan {
        server: url,
        agents: a.agents,
        entries_per_agent: a.entries_per_agent,
        batch_entries: a.batch_entries.max(1),
        max_inflight: a.max_inflight.max(1),
        rate: a.rate.filter(|r| *r > 0.0),
        seed: a.common.seed,
        step_usec: 1_000,
    };
    eprintln!(
        "load: {} agents × {} entries, batches of at most {}, {} in flight, {}…",
        plan.agents,
        plan.entries_per_agent,
        plan.batch_entries,
        plan.max_inflight,
        plan.rate
            .map_or("unpaced".to_owned(), |r| format!("{r} entries/s each"))
    );
    let result = load::run(&plan).await?;
    println!();
    result.print(&plan);
    if let Some(mut s) = server {
        s.stop(std::time::Duration::from_secs(20)).await?;
    }
    Ok(())
}

async fn query(a: QueryArgs) -> Result<()> {
    let work = Work::new(a.common.keep)?;
    let plan = query::QueryPlan {
        bin_dir: binaries(a.common.no_build)?,
        cache: cache_dir(&a.common)?,
        work: work.path.clone(),
        entries: a.entries,
        seed: a.common.seed,
    };
    query::run(&plan).await
}

async fn read(a: ReadArgs) -> Result<()> {
    if a.entries == 0 || a.hosts == 0 {
        bail!("--entries and --hosts must be positive");
    }
    journals::check_tools()?;
    let cache = cache_dir(&a.common)?;
    let data = journals::prepare(&cache, a.common.seed, a.entries, a.hosts).await?;
    read::run(data, a.cpu).await
}

async fn forward(a: ForwardArgs) -> Result<()> {
    let work = Work::new(a.common.keep)?;
    let plan = forward::ForwardPlan {
        bin_dir: binaries(a.common.no_build)?,
        cache: cache_dir(&a.common)?,
        work: work.path.clone(),
        entries: if a.quick { 50_000 } else { a.entries },
        seed: a.common.seed,
    };
    forward::run(&plan).await
}
