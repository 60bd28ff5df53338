//! A load generator that speaks the ingest protocol as many agents at
//! once: each opens its own connection, says Hello with its own machine id,
//! and ships generated entries in batches whose cursors chain
//! (`prev_cursor` = the previous batch's `last_cursor`), with a bounded
//! number of batches in flight, packed as jr-agent packs them. It times
//! every batch from send to Ack, which is the server's commit latency as
//! an agent sees it.

use crate::dataset::Generator;
use crate::report::{ms, percentile};
use anyhow::{bail, Context, Result};
use jr_proto::v1::ingest_client::IngestClient;
use jr_proto::v1::{ship_request, ship_response, Batch, Hello, PackedEntries, ShipRequest};
use prost::Message as _;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub server: String,
    pub agents: usize,
    pub entries_per_agent: u64,
    pub batch_entries: usize,
    pub max_inflight: usize,
    /// Entries per second each agent sends at most; `None`: as fast as
    /// acknowledgements allow (a saturation test, where latency is mostly
    /// queueing).
    pub rate: Option<f64>,
    pub seed: u64,
    /// Realtime distance between two entries of one agent; the last entry
    /// of each agent is about now.
    pub step_usec: u64,
}

/// What the agents saw.
pub struct LoadResult {
    pub agents_acknowledged: usize,
    pub entries: u64,
    pub wall: Duration,
    /// Send → Ack of every batch, sorted.
    pub latencies: Vec<Duration>,
}

impl LoadResult {
    pub fn print(&self, plan: &LoadPlan) {
        let l = &self.latencies;
        println!(
            "| agents acknowledged | entries | wall s | entries/s | batches | commit latency p50 ms | p90 ms | p99 ms | max ms |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {}/{} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {} |",
            self.agents_acknowledged,
            plan.agents,
            self.entries,
            self.wall.as_secs_f64(),
            self.entries as f64 / self.wall.as_secs_f64().max(1e-9),
            l.len(),
            ms(percentile(l, 50.0)),
            ms(percentile(l, 90.0)),
            ms(percentile(l, 99.0)),
            ms(percentile(l, 100.0)),
        );
    }
}

/// Runs every agent to the end; fails if any agent is not acknowledged.
pub async fn run(plan: &LoadPlan) -> Result<LoadResult> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as u64;
    let start_usec = now.saturating_sub(plan.entries_per_agent * plan.step_usec);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..plan.agents {
        let plan = plan.clone();
        tasks.spawn(async move {
            let r = agent(&plan, index, start_usec).await;
            (index, r)
        });
    }
    let mut latencies = Vec::new();
    let mut ok = 0;
    let mut entries = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (index, r) = joined?;
        match r {
            Ok((n, mut l)) => {
                ok += 1;
                entries += n;
                latencies.append(&mut l);
            }
            Err(e) => {
                first_error.get_or_insert(format!("agent {index}: {e:#}"));
            }
        }
    }
    let wall = started.elapsed();
    if let Some(e) = first_error {
        bail!(
            "{} of {} agents failed; first: {e}",
            plan.agents - ok,
            plan.agents
        );
    }
    latencies.sort_unstable();
    Ok(LoadResult {
        agents_acknowledged: ok,
        entries,
        wall,
        latencies,
    })
}

/// One simulated agent: returns entries acknowledged and batch latencies.
async fn agent(plan: &LoadPlan, index: usize, start_usec: u64) -> Result<(u64, Vec<Duration>)> {
    let mut gen = Generator::new(plan.seed, index, start_usec, plan.step_usec);
    let mut client = IngestClient::connect(plan.server.clone())
        .await
        .with_context(|| format!("cannot connect to {}", plan.server))?
        .max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(plan.max_inflight + 1);
    let send = |kind| ShipRequest { kind: Some(kind) };
    tx.send(send(ship_request::Kind::Hello(Hello {
        machine_id: gen.host.machine_id.clone(),
        hostname: gen.host.hostname.clone(),
        boot_id: gen.host.boot_id.clone(),
        agent_version: concat!("jr-bench ", env!("CARGO_PKG_VERSION")).to_owned(),
    })))
    .await?;
    let mut responses = client.ship(ReceiverStream::new(rx)).await?.into_inner();
    let welcome = match responses.message().await?.and_then(|r| r.kind) {
        Some(ship_response::Kind::Welcome(w)) => w,
        other => bail!("expected Welcome, got {other:?}"),
    };
    // As jr-agent does: batches packed with one zstd context per session
    // on an uncompressed stream (plain to a server that does not take
    // them).
    let mut packer = if welcome.packed_entries {
        Some(jr_proto::packed::compressor()?)
    } else {
        None
    };
    let mut batch_entries = plan.batch_entries;
    if welcome.max_batch_entries > 0 {
        batch_entries = batch_entries.min(welcome.max_batch_entries as usize);
    }
    // Paced agents send a batch every `pace`; others as fast as the
    // in-flight bound lets them.
    let pace = plan.rate.map(|r| {
        batch_entries = batch_entries.min(((r / 5.0) as usize).max(1));
        Duration::from_secs_f64(batch_entries as f64 / r)
    });
    let mut next_send = tokio::time::Instant::now();
    let mut prev_cursor = welcome.cursor;
    let mut produced = 0u64;
    let mut acked = 0u64;
    let mut seq = 0u64;
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut latencies = Vec::new();
    loop {
        let can_send = in_flight.len() < plan.max_inflight && produced < plan.entries_per_agent;
        if !can_send && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            response = responses.message(), if !in_flight.is_empty() => {
                let ack = match response? {
                    Some(r) => match r.kind {
                        Some(ship_response::Kind::Ack(a)) => a,
                        other => bail!("expected Ack, got {other:?}"),
                    },
                    None => bail!("the server ended the stream with batches unacknowledged"),
                };
                let Some((sent_seq, sent_at)) = in_flight.pop_front() else {
                    bail!("Ack {} for no batch in flight", ack.seq);
                };
                if ack.seq != sent_seq {
                    bail!("Ack {} out of order (expected {sent_seq})", ack.seq);
                }
                latencies.push(sent_at.elapsed());
                acked += ack.stored;
            }
            _ = tokio::time::sleep_until(next_send), if can_send => {
                if let Some(pace) = pace {
                    next_send += pace;
                }
                let n = batch_entries.min((plan.entries_per_agent - produced) as usize);
                let entries: Vec<_> = (0..n).map(|_| gen.next_entry()).collect();
                produced += n as u64;
                seq += 1;
                let last_cursor = entries.last().map(|e| e.cursor.clone()).unwrap_or_default();
                let mut batch = Batch {
                    seq,
                    prev_cursor: std::mem::replace(&mut prev_cursor, last_cursor.clone()),
                    last_cursor,
                    entries,
                    gap_entries: 0,
                    head: None,
                    packed_entries: Vec::new(),
                };
                if let Some(c) = &mut packer {
                    let content = PackedEntries { entries: std::mem::take(&mut batch.entries) };
                    batch.packed_entries = c.compress(&content.encode_to_vec())?;
                }
                in_flight.push_back((seq, Instant::now()));
                tx.send(send(ship_request::Kind::Batch(batch)))
                    .await
                    .context("the server closed the stream")?;
            }
        }
    }
    drop(tx);
    if acked != plan.entries_per_agent {
        bail!("{acked} entries stored of {}", plan.entries_per_agent);
    }
    Ok((acked, latencies))
}
