//! Measures the server's ingest rate: a real server on loopback with a
//! temporary SQLite file, and raw gRPC clients shipping synthetic entries
//! shaped like a typical journal (about 15 fields, a 60-byte message).
//!
//! `cargo run --release -p jr-server --example ingest_rate -- [ENTRIES] [AGENTS]`

use bytes::Bytes;
use jr_proto::v1::ingest_client::IngestClient;
use jr_proto::v1::ship_request::Kind as In;
use jr_proto::v1::ship_response::Kind as Out;
use jr_proto::v1::{Batch, Entry, Field, Hello, ShipRequest};
use jr_server::{Server, ServerConfig};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

const BATCH: u64 = 2048;
const IN_FLIGHT: usize = 4;

fn field(name: &str, value: impl Into<Bytes>) -> Field {
    Field {
        name: name.to_owned().into(),
        value: value.into(),
    }
}

fn entry(agent: u64, i: u64) -> Entry {
    let realtime = 1_700_000_000_000_000 + i * 100;
    let monotonic = 1_000_000 + i * 100;
    let unit = format!("service-{}.service", i % 40);
    Entry {
        cursor: format!(
            "s=4f30609c77d9406e86aba8a29393cad{agent};i={i:x};b=0123456789abcdef0123456789abcdef;m={monotonic:x};t={realtime:x};x={:x}",
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ),
        realtime_usec: realtime,
        monotonic_usec: monotonic,
        fields: vec![
            field("_TRANSPORT", "journal"),
            field("_UID", "0"),
            field("_GID", "0"),
            field("_CAP_EFFECTIVE", "1ffffffffff"),
            field("_SELINUX_CONTEXT", "unconfined"),
            field("_BOOT_ID", "0123456789abcdef0123456789abcdef"),
            field("_MACHINE_ID", "fedcba9876543210fedcba9876543210"),
            field("_HOSTNAME", "node-1"),
            field("PRIORITY", "6"),
            field("SYSLOG_FACILITY", "3"),
            field("SYSLOG_IDENTIFIER", format!("daemon{}", i % 40)),
            field("_PID", format!("{}", 1000 + i % 40)),
            field("_COMM", format!("daemon{}", i % 40)),
            field("_SYSTEMD_UNIT", unit),
            field(
                "MESSAGE",
                format!("request {i} handled in 12ms by worker 3, status 200 OK, bytes 5120"),
            ),
        ],
    }
}

async fn ship(addr: std::net::SocketAddr, agent: u64, n: u64) -> anyhow::Result<()> {
    let mut client = IngestClient::connect(format!("http://{addr}")).await?;
    let (tx, rx) = mpsc::channel(IN_FLIGHT + 1);
    let mut answers = client.ship(ReceiverStream::new(rx)).await?.into_inner();
    let hello = Hello {
        machine_id: format!("{agent:032x}"),
        hostname: format!("node-{agent}"),
        boot_id: String::new(),
        agent_version: "bench".into(),
    };
    tx.send(ShipRequest {
        kind: Some(In::Hello(hello)),
    })
    .await?;
    let Some(Out::Welcome(w)) = answers.message().await?.and_then(|m| m.kind) else {
        anyhow::bail!("no welcome");
    };
    let mut prev = w.cursor;
    let batches = n.div_ceil(BATCH);
    let sender = tokio::spawn(async move {
        for seq in 1..=batches {
            let entries: Vec<Entry> = (((seq - 1) * BATCH)..(seq * BATCH).min(n))
                .map(|i| entry(agent, i + 1))
                .collect();
            let last = entries.last().map(|e| e.cursor.clone()).unwrap_or_default();
            let batch = Batch {
                seq,
                prev_cursor: std::mem::replace(&mut prev, last.clone()),
                last_cursor: last,
                entries,
                gap_entries: 0,
                head: None,
                packed_entries: Vec::new(),
            };
            if tx
                .send(ShipRequest {
                    kind: Some(In::Batch(batch)),
                })
                .await
                .is_err()
            {
                break;
            }
        }
        // Keep the stream open until every ack arrived.
        tx
    });
    for _ in 0..batches {
        match answers.message().await?.and_then(|m| m.kind) {
            Some(Out::Ack(_)) => {}
            other => anyhow::bail!("expected an ack, got {other:?}"),
        }
    }
    drop(sender.await?);
    Ok(())
}

/// CPU seconds of this process and of its SQLite worker threads, from
/// /proc (clients and server share the process, so this is an upper
/// bound of the server's cost).
fn cpu_seconds() -> (f64, f64) {
    // Fields 14 and 15 of /proc/*/stat (after the parenthesised name) are
    // user and system time in clock ticks; Linux uses 100 ticks a second.
    fn ticks(stat: &str) -> f64 {
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (n(11) + n(12)) / 100.0
    }
    let all = std::fs::read_to_string("/proc/self/stat")
        .map(|s| ticks(&s))
        .unwrap_or(0.0);
    let mut sqlite = 0.0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.starts_with("sqlx-sqlite") {
                sqlite += std::fs::read_to_string(t.path().join("stat"))
                    .map(|s| ticks(&s))
                    .unwrap_or(0.0);
            }
        }
    }
    (all, sqlite)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(500_000);
    let agents: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let dir = tempfile::tempdir()?;
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        db: dir.path().join("bench.db"),
        ..ServerConfig::default()
    };
    let db = config.db.clone();
    let server = Server::bind(config).await?;
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(server.serve(shutdown.clone()));

    let start = Instant::now();
    let per_agent = n / agents;
    let mut shippers = Vec::new();
    for a in 1..=agents {
        shippers.push(tokio::spawn(ship(addr, a, per_agent)));
    }
    for s in shippers {
        s.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let (cpu, writer_cpu) = cpu_seconds();
    let total = per_agent * agents;
    shutdown.cancel();
    serving.await??;
    let size = jr_server::metrics::scrape::database_bytes(&db);
    println!(
        "{total} entries from {agents} agents in {secs:.2}s: {:.0} entries/s; \
         CPU {cpu:.2}s in all ({:.0} entries per CPU-second), SQLite's thread {writer_cpu:.2}s; \
         database {:.1} MiB ({:.0} bytes/entry)",
        total as f64 / secs,
        total as f64 / cpu,
        size as f64 / 1048576.0,
        size as f64 / total as f64
    );
    Ok(())
}
