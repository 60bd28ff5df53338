//! The batcher: groups what the reader yields into protocol batches.
//!
//! A batch closes when it holds `entries` entries, when one more entry
//! would take it past `bytes` encoded bytes, or `linger` after the first
//! thing read into it — the timer starts with the first entry, so an idle
//! journal sends nothing. Filtered entries are not shipped but still move
//! the batch's `last_cursor`; when everything read within a linger was
//! filtered out, a batch without entries carries the new position, so a
//! restart does not read it all again.
//!
//! Batches chain: each carries `seq` (1, 2, …), `prev_cursor` (the
//! previous batch's `last_cursor`, the session's start cursor for the
//! first) and `last_cursor`, and the `gap_entries` the reader reported
//! since the previous batch.
//!
//! Entries are encoded into the batch as they come and not kept decoded
//! (see `wire`). To a server that takes packed batches, a closed batch's
//! entries are compressed right away (`Batch.packed_entries`, zstd with one
//! context for the session), so a batch waiting to be sent takes its
//! compressed size.

use crate::filter::Filter;
use crate::metrics::Metrics;
use crate::reader::{ReadEvent, ReaderError, ReaderItem};
use crate::wire::{Frame, BATCH_ENTRIES};
use jr_proto::v1::Batch;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// When a batch closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub entries: usize,
    pub bytes: usize,
    pub linger: Duration,
}

impl Limits {
    /// Tightens these limits by the server's (0 means "no limit").
    pub fn within(self, server_entries: u32, server_bytes: u64) -> Limits {
        let cap = |ours: usize, theirs: u64| match usize::try_from(theirs) {
            Ok(0) | Err(_) => ours,
            Ok(t) => ours.min(t),
        };
        Limits {
            entries: cap(self.entries, u64::from(server_entries)),
            bytes: cap(self.bytes, server_bytes),
            linger: self.linger,
        }
    }
}

/// A closed batch: its own fields, its entries encoded, and its encoded
/// size.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingBatch {
    /// Everything but `entries`, which are in `encoded`.
    pub batch: Batch,
    /// The entries as `Batch.entries` fields.
    pub encoded: Vec<u8>,
    /// How many entries `encoded` holds.
    pub entries: u64,
    pub bytes: usize,
}

impl PendingBatch {
    /// The request that sends this batch, with `head` (the journal's head
    /// when it is sent).
    pub fn into_frame(self, head: Option<jr_proto::v1::Head>) -> Frame {
        let mut batch = self.batch;
        batch.head = head;
        Frame::batch(&batch, self.encoded)
    }

    /// The whole batch, entries decoded (and unpacked).
    pub fn decode(&self) -> Batch {
        let unpacked;
        let encoded = if self.batch.packed_entries.is_empty() {
            self.encoded.as_slice()
        } else {
            unpacked = zstd::bulk::decompress(&self.batch.packed_entries, self.bytes)
                .expect("the batcher's own packing decompresses");
            unpacked.as_slice()
        };
        let mut batch = Batch::decode(encoded).expect("the batcher's own encoding decodes");
        batch.seq = self.batch.seq;
        batch.prev_cursor.clone_from(&self.batch.prev_cursor);
        batch.last_cursor.clone_from(&self.batch.last_cursor);
        batch.gap_entries = self.batch.gap_entries;
        batch.head.clone_from(&self.batch.head);
        batch
    }
}

/// What the batcher sends: batches, then the reader's error if it failed.
/// A closed channel means the reader reached the end and all was flushed.
pub type BatcherItem = Result<PendingBatch, ReaderError>;

/// The batching state, free of I/O so it can be tested directly.
#[derive(Debug)]
pub struct Batcher {
    limits: Limits,
    filter: Filter,
    metrics: Arc<Metrics>,
    seq: u64,
    prev_cursor: String,
    /// The open batch's own fields; its entries are in `encoded`.
    current: Batch,
    encoded: Vec<u8>,
    entries: u64,
    bytes: usize,
    /// Something (shipped or filtered) was read since the last batch.
    dirty: bool,
    opened_at: Option<Instant>,
    /// Set when batches are sent packed.
    packer: Option<Packer>,
}

/// The compression context of packed batches and its output buffer, both
/// reused for every batch of the session.
struct Packer {
    compressor: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Packer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packer").finish_non_exhaustive()
    }
}

impl Batcher {
    /// `start_cursor` is the position the session resumes from; the first
    /// batch's `prev_cursor`.
    pub fn new(
        limits: Limits,
        filter: Filter,
        start_cursor: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        Batcher {
            limits,
            filter,
            metrics,
            seq: 0,
            prev_cursor: start_cursor,
            current: Batch::default(),
            encoded: Vec::new(),
            entries: 0,
            bytes: 0,
            dirty: false,
            opened_at: None,
            packer: None,
        }
    }

    /// Sends batches packed (`Batch.packed_entries`).
    pub fn packing(mut self) -> std::io::Result<Self> {
        self.packer = Some(Packer {
            compressor: jr_proto::packed::compressor()?,
            out: Vec::new(),
        });
        Ok(self)
    }

    /// When the open batch must close, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.limits.linger)
    }

    /// Adds one event; closed batches are appended to `out`.
    pub fn push(&mut self, event: ReadEvent, out: &mut Vec<PendingBatch>) {
        match event {
            ReadEvent::Gap(gap) => self.current.gap_entries += gap.entries,
            ReadEvent::Entry(entry) => {
                self.opened_at.get_or_insert_with(Instant::now);
                if !self.filter.accepts(&entry) {
                    Metrics::add(&self.metrics.filtered, 1);
                    self.current.last_cursor = entry.cursor;
                    self.dirty = true;
                    return;
                }
                let len = entry.encoded_len();
                let size = 1 + prost::encoding::encoded_len_varint(len as u64) + len;
                if self.entries > 0 && self.bytes + size > self.limits.bytes {
                    out.extend(self.take());
                    self.opened_at = Some(Instant::now());
                }
                if self.encoded.capacity() == 0 {
                    // A batch never grows past the limit (but for one
                    // entry larger than it): no reallocation on the way.
                    self.encoded.reserve(self.limits.bytes.max(size));
                }
                prost::encoding::encode_key(
                    BATCH_ENTRIES,
                    prost::encoding::WireType::LengthDelimited,
                    &mut self.encoded,
                );
                prost::encoding::encode_varint(len as u64, &mut self.encoded);
                entry
                    .encode(&mut self.encoded)
                    .expect("a Vec grows to fit the entry");
                self.current.last_cursor = entry.cursor;
                self.entries += 1;
                self.bytes += size;
                self.dirty = true;
                if self.entries >= self.limits.entries as u64 || self.bytes >= self.limits.bytes {
                    out.extend(self.take());
                }
            }
        }
    }

    /// Closes the open batch, if anything was read into it.
    pub fn take(&mut self) -> Option<PendingBatch> {
        self.opened_at = None;
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.seq += 1;
        let mut batch = std::mem::take(&mut self.current);
        batch.seq = self.seq;
        batch.prev_cursor = std::mem::replace(&mut self.prev_cursor, batch.last_cursor.clone());
        // Protobuf fields encode independently: the batch's size is its own
        // fields' plus what `push` summed for the entries.
        let bytes = batch.encoded_len() + std::mem::take(&mut self.bytes);
        let encoded = match &mut self.packer {
            Some(p) if !self.encoded.is_empty() => match p.pack(&self.encoded) {
                Ok(packed) => {
                    batch.packed_entries = packed;
                    // The batch buffer is reused: the next batch fills it.
                    self.encoded.clear();
                    Vec::new()
                }
                Err(e) => {
                    // The server takes either form.
                    tracing::warn!(error = %e, "cannot compress a batch; sending it uncompressed");
                    std::mem::take(&mut self.encoded)
                }
            },
            _ => {
                let mut encoded = std::mem::take(&mut self.encoded);
                if encoded.len() < encoded.capacity() / 2 {
                    // A batch closed early (linger) keeps only what it holds.
                    encoded.shrink_to_fit();
                }
                encoded
            }
        };
        Some(PendingBatch {
            batch,
            encoded,
            entries: std::mem::take(&mut self.entries),
            bytes,
        })
    }
}

impl Packer {
    /// One zstd frame of `content`, in a buffer of its own size.
    fn pack(&mut self, content: &[u8]) -> std::io::Result<Vec<u8>> {
        self.out.clear();
        self.out
            .reserve(zstd::zstd_safe::compress_bound(content.len()));
        self.compressor.compress_to_buffer(content, &mut self.out)?;
        Ok(self.out.clone())
    }
}

/// Runs a batcher between the reader's channel and the session's. Ends
/// when the reader ends (after flushing) or the session is gone.
pub async fn run(
    mut input: mpsc::Receiver<ReaderItem>,
    output: mpsc::Sender<BatcherItem>,
    mut batcher: Batcher,
) {
    let mut closed = Vec::new();
    loop {
        let deadline = batcher.deadline();
        tokio::select! {
            biased;
            item = input.recv() => match item {
                Some(Ok(event)) => batcher.push(event, &mut closed),
                Some(Err(e)) => {
                    closed.extend(batcher.take());
                    for b in closed.drain(..) {
                        if output.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                    let _ = output.send(Err(e)).await;
                    return;
                }
                None => {
                    closed.extend(batcher.take());
                    for b in closed.drain(..) {
                        if output.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
            },
            () = sleep_until_opt(deadline) => closed.extend(batcher.take()),
        }
        for b in closed.drain(..) {
            if output.send(Ok(b)).await.is_err() {
                return;
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
