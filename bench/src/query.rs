//! The query benchmark: a database of many entries (filled once through
//! the load generator and cached), then the queries operators run most,
//! timed as gRPC calls of the Query service on loopback. The time covers
//! the whole call, streaming the answer included, so it bounds the server's
//! time from above.

use crate::dataset::{COMMON_UNIT, RARE_WORD};
use crate::fill::{self, Fill};
use crate::procs::{free_port, wait_listening, Proc};
use crate::report::{ms, percentile};
use anyhow::{Context, Result};
use jr_proto::v1::query_client::QueryClient;
use jr_proto::v1::{LogsRequest, StatsRequest};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bump when the generator or the schema changes.
const QUERY_DB_VERSION: u32 = 2;
/// Realtime span of each host's entries.
const SPAN_USEC: u64 = 30 * 24 * 3600 * 1_000_000;
/// Timed runs of each query, after one untimed run.
const RUNS: usize = 20;

pub struct QueryPlan {
    pub bin_dir: PathBuf,
    pub cache: PathBuf,
    pub work: PathBuf,
    pub entries: u64,
    pub seed: u64,
}

/// The cached database for these parameters, filled now if missing.
async fn database(plan: &QueryPlan) -> Result<PathBuf> {
    fill::cached_database(&Fill {
        kind: "query",
        version: QUERY_DB_VERSION,
        bin_dir: &plan.bin_dir,
        cache: &plan.cache,
        work: &plan.work,
        entries: plan.entries,
        seed: plan.seed,
        span_usec: SPAN_USEC,
    })
    .await
}

async fn start_server(
    plan: &QueryPlan,
    db: &Path,
    tag: &str,
) -> Result<(Proc, std::net::SocketAddr)> {
    let addr = free_port()?;
    let mut cmd = Command::new(plan.bin_dir.join("jr-server"));
    cmd.arg("--db")
        .arg(db)
        .arg("--listen")
        .arg(addr.to_string());
    let server = Proc::spawn(
        "jr-server",
        cmd,
        &plan.work.join(format!("jr-server-{tag}.log")),
    )?;
    wait_listening("jr-server", addr).await?;
    Ok((server, addr))
}

pub async fn run(plan: &QueryPlan) -> Result<()> {
    let db = database(plan).await?;
    let (mut server, addr) = start_server(plan, &db, "query").await?;
    let mut client = QueryClient::connect(format!("http://{addr}"))
        .await?
        .max_decoding_message_size(256 << 20);
    let stats = client
        .stats(StatsRequest {})
        .await
        .context("the server has no Query service")?
        .into_inner();
    println!(
        "database: {} entries, {} hosts, {} units, {:.0} MiB ({})",
        stats.entries,
        stats.hosts,
        stats.units,
        stats.database_bytes as f64 / (1 << 20) as f64,
        db.display()
    );
    // Relative to the newest entry, so that a cached database still has
    // an hour of entries to find.
    let last_hour = stats.last_entry_usec.saturating_sub(3_600_000_000);
    let queries: Vec<(String, LogsRequest)> = vec![
        (
            format!("-u {COMMON_UNIT} -n 100"),
            LogsRequest {
                units: vec![COMMON_UNIT.into()],
                limit: 100,
                ..Default::default()
            },
        ),
        (
            format!("-H node-000 -u {COMMON_UNIT} --since -1h"),
            LogsRequest {
                hosts: vec!["node-000".into()],
                units: vec![COMMON_UNIT.into()],
                since_usec: Some(last_hour),
                ..Default::default()
            },
        ),
        (
            "-p err -n 100".into(),
            LogsRequest {
                priority_max: Some(3),
                limit: 100,
                ..Default::default()
            },
        ),
        (
            "-p crit --since -1h".into(),
            LogsRequest {
                priority_max: Some(2),
                since_usec: Some(last_hour),
                ..Default::default()
            },
        ),
        (
            format!("--search {RARE_WORD}"),
            LogsRequest {
                search: RARE_WORD.into(),
                ..Default::default()
            },
        ),
    ];
    // Words of the dataset's vocabulary by how often they occur, so that
    // full-text search is measured from rare to common: "redis" in about
    // 1 message in 14,000, "schedule" 1 in 1,300, "service" 1 in 110,
    // "dropped" 1 in 9.
    let mut queries = queries;
    for (word, limit) in [
        ("redis", 0),
        ("schedule", 100),
        ("service", 100),
        ("dropped", 100),
    ] {
        let label = if limit == 0 {
            format!("--search {word}")
        } else {
            format!("--search {word} -n {limit}")
        };
        queries.push((
            label,
            LogsRequest {
                search: word.into(),
                limit,
                ..Default::default()
            },
        ));
    }
    println!("| query (jrctl logs …) | entries returned | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (label, request) in queries {
        let mut times = Vec::with_capacity(RUNS);
        let mut returned = 0;
        for run in 0..=RUNS {
            let started = Instant::now();
            let mut stream = client
                .logs(request.clone())
                .await
                .with_context(|| format!("query {label}"))?
                .into_inner();
            let mut n = 0;
            while let Some(resp) = stream.message().await? {
                n += resp.entries.len();
            }
            if run > 0 {
                times.push(started.elapsed());
            }
            returned = n;
        }
        times.sort_unstable();
        println!(
            "| `{label}` | {returned} | {} | {} | {} |",
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 99.0)),
            ms(percentile(&times, 100.0))
        );
    }
    server.stop(Duration::from_secs(20)).await?;
    Ok(())
}
