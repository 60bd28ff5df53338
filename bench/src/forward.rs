//! The forwarding benchmark: a database of N entries (filled once through
//! the load generator and cached), copied into the run directory, then a
//! jr-server with one plain-TCP route that starts at the oldest entry and
//! sends to a local listener. The listener counts the lines and bytes it
//! receives; the run ends when it has N lines.

use crate::fill::{self, Fill};
use crate::procs::{cpu_now, Proc};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Bump when the generator or the schema changes.
const FORWARD_DB_VERSION: u32 = 2;
/// Realtime span of each host's entries.
const SPAN_USEC: u64 = 24 * 3600 * 1_000_000;
/// The route fails the run when no line arrives for this long.
const STALL: Duration = Duration::from_secs(60);
/// Any well-formed token will do: the listener does not check it.
const TOKEN: &str = "2bfbea1e-10c3-4419-bdad-7e6435882e1f";

pub struct ForwardPlan {
    pub bin_dir: PathBuf,
    pub cache: PathBuf,
    pub work: PathBuf,
    pub entries: u64,
    pub seed: u64,
}

/// The cached database for these parameters, filled now if missing.
async fn database(plan: &ForwardPlan) -> Result<PathBuf> {
    fill::cached_database(&Fill {
        kind: "forward",
        version: FORWARD_DB_VERSION,
        bin_dir: &plan.bin_dir,
        cache: &plan.cache,
        work: &plan.work,
        entries: plan.entries,
        seed: plan.seed,
        span_usec: SPAN_USEC,
    })
    .await
}

/// Lines and bytes received by the fake Logentries endpoint.
#[derive(Default)]
struct Counts {
    lines: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
}

/// Accepts connections and counts what arrives on each, until aborted.
async fn listen(listener: tokio::net::TcpListener, counts: Arc<Counts>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        counts.connections.fetch_add(1, Ordering::Relaxed);
        let counts = counts.clone();
        conns.spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = sock.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let lines = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
                counts.lines.fetch_add(lines, Ordering::Relaxed);
            }
        });
    }
}

struct Figures {
    lines: u64,
    bytes: u64,
    connections: u64,
    wall: Duration,
    first_line: Duration,
    cpu: Duration,
}

pub async fn run(plan: &ForwardPlan) -> Result<()> {
    if plan.entries == 0 {
        bail!("--entries must be positive");
    }
    let cached = database(plan).await?;
    // The route's position is saved in the database: forward from a copy
    // (with its full-text index, which the server would rebuild otherwise).
    let db = plan.work.join("forward.db");
    for suffix in ["", "-wal", "-fts", "-fts-wal"] {
        let from = PathBuf::from(format!("{}{suffix}", cached.display()));
        if from.exists() {
            std::fs::copy(&from, format!("{}{suffix}", db.display()))
                .with_context(|| format!("cannot copy {}", from.display()))?;
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = listener.local_addr()?;
    let counts = Arc::new(Counts::default());
    let listening = tokio::spawn(listen(listener, counts.clone()));
    let config = plan.work.join("routes.toml");
    std::fs::write(
        &config,
        format!(
            "[[routes]]\nname = \"bench\"\n\
             destination = {{ token = \"{TOKEN}\", endpoint = \"{sink_addr}\", tls = false }}\n\
             start = \"1970-01-01T00:00:00Z\"\n"
        ),
    )?;
    eprintln!(
        "forward: {} entries → one plain-TCP route to {sink_addr}…",
        plan.entries
    );
    let mut cmd = Command::new(plan.bin_dir.join("jr-server"));
    cmd.arg("--db")
        .arg(&db)
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg("127.0.0.1:0");
    let started = Instant::now();
    let mut server = Proc::spawn("jr-server", cmd, &plan.work.join("jr-server-forward.log"))?;
    let result = measure(plan, &server, &counts, started).await;
    listening.abort();
    let exit = server.stop(Duration::from_secs(20)).await;
    let f = match result {
        Ok(f) => f,
        Err(e) => {
            let log = std::fs::read_to_string(plan.work.join("jr-server-forward.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            bail!(
                "{e:#}\njr-server log (last lines):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    };
    exit?;
    print(plan, &f);
    Ok(())
}

/// Polls the counters until N lines have arrived; the server's CPU is
/// read from /proc at that moment.
async fn measure(
    plan: &ForwardPlan,
    server: &Proc,
    counts: &Counts,
    started: Instant,
) -> Result<Figures> {
    let mut first_line = None;
    let mut last = (0, Instant::now());
    loop {
        let lines = counts.lines.load(Ordering::Relaxed);
        if lines > 0 && first_line.is_none() {
            first_line = Some(started.elapsed());
        }
        if lines >= plan.entries {
            let wall = started.elapsed();
            let cpu = cpu_now(server.pid()).context("jr-server is gone")?;
            return Ok(Figures {
                lines,
                bytes: counts.bytes.load(Ordering::Relaxed),
                connections: counts.connections.load(Ordering::Relaxed),
                wall,
                first_line: first_line.unwrap_or(wall),
                cpu,
            });
        }
        if lines != last.0 {
            last = (lines, Instant::now());
        } else if last.1.elapsed() > STALL {
            bail!(
                "no line for {} s after {lines} of {} lines",
                STALL.as_secs(),
                plan.entries
            );
        }
        if cpu_now(server.pid()).is_none() {
            bail!("jr-server ended after {lines} of {} lines", plan.entries);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn print(plan: &ForwardPlan, f: &Figures) {
    let secs = f.wall.as_secs_f64().max(1e-9);
    println!(
        "\nforward: {} entries, one plain-TCP route, {} logical CPUs\n",
        plan.entries,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let rows: Vec<(&str, String)> = vec![
        ("lines received", f.lines.to_string()),
        ("bytes received", f.bytes.to_string()),
        ("connections", f.connections.to_string()),
        (
            "wall s (server start → last line)",
            format!("{:.2}", f.wall.as_secs_f64()),
        ),
        (
            "  of which before the first line",
            format!("{:.2}", f.first_line.as_secs_f64()),
        ),
        ("lines per second", format!("{:.0}", f.lines as f64 / secs)),
        (
            "MB per second (10^6 bytes)",
            format!("{:.2}", f.bytes as f64 / 1e6 / secs),
        ),
        (
            "bytes per line",
            format!("{:.1}", f.bytes as f64 / f.lines.max(1) as f64),
        ),
        (
            "server CPU s (user+sys, whole run)",
            format!("{:.2}", f.cpu.as_secs_f64()),
        ),
        (
            "server CPU µs per line",
            format!("{:.2}", f.cpu.as_secs_f64() * 1e6 / f.lines.max(1) as f64),
        ),
    ];
    println!("| {:<36} | {:>12} |", "", "jr-server");
    println!("|{:-<38}|{:->14}|", "", ":");
    for (label, value) in rows {
        println!("| {label:<36} | {value:>12} |");
    }
}
