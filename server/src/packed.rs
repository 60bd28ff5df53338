//! `Batch.packed_entries`: a batch's entries as one zstd frame, unpacked
//! before the batch is checked.
//!
//! gRPC's own compression sets up a compression context for every message
//! on the agent (megabytes, at a level that cannot be chosen) and a
//! decompression context for every message here. Packed batches come on an
//! uncompressed stream; each worker thread keeps one decompression context
//! for every session it serves.

use crate::error::Error;
use bytes::Bytes;
use jr_proto::v1::{Batch, PackedEntries};
use prost::Message as _;
use std::cell::RefCell;

thread_local! {
    // Created on a thread's first packed batch; a few hundred KiB.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Moves the entries of a packed batch into `batch.entries`. The content
/// may not be larger than `limit` bytes, the bound of an unpacked batch.
pub fn unpack(batch: &mut Batch, limit: usize) -> Result<(), Error> {
    if batch.packed_entries.is_empty() {
        return Ok(());
    }
    if !batch.entries.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "batch {} has both entries and packed_entries",
            batch.seq
        )));
    }
    let packed = std::mem::take(&mut batch.packed_entries);
    let size = match zstd::zstd_safe::get_frame_content_size(&packed) {
        Ok(Some(size)) => size,
        Ok(None) => {
            return Err(Error::InvalidArgument(format!(
                "batch {}: packed_entries is a zstd frame without its content size",
                batch.seq
            )))
        }
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "batch {}: packed_entries is not a zstd frame",
                batch.seq
            )))
        }
    };
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size > limit {
        return Err(Error::TooLarge(format!(
            "batch {}: packed entries of {size} bytes; the server accepts at most {limit} \
             (--max-message-bytes)",
            batch.seq
        )));
    }
    let mut content = Vec::with_capacity(size);
    DECOMPRESSOR
        .with_borrow_mut(|d| {
            let d = match d {
                Some(d) => d,
                None => d.insert(zstd::bulk::Decompressor::new()?),
            };
            // The buffer's capacity bounds the output, whatever the frame
            // header claimed.
            d.decompress_to_buffer(&packed[..], &mut content)
        })
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "batch {}: packed_entries does not decompress: {e}",
                batch.seq
            ))
        })?;
    // Decoded from `Bytes`, names and values are slices of `content`
    // rather than copies.
    let entries = PackedEntries::decode(Bytes::from(content)).map_err(|e| {
        Error::InvalidArgument(format!(
            "batch {}: packed_entries does not decode: {e}",
            batch.seq
        ))
    })?;
    batch.entries = entries.entries;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jr_proto::v1::{Entry, Field};

    fn packed(entries: &[Entry], size_in_header: bool) -> Vec<u8> {
        let content = PackedEntries {
            entries: entries.to_vec(),
        }
        .encode_to_vec();
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        c.include_contentsize(size_in_header).unwrap();
        c.compress(&content).unwrap()
    }

    fn entry(i: u64) -> Entry {
        Entry {
            cursor: format!("c{i}"),
            realtime_usec: i,
            monotonic_usec: i,
            fields: vec![Field::new("MESSAGE", format!("message {i}").into_bytes())],
        }
    }

    #[test]
    fn unpacks_what_was_packed() {
        let entries: Vec<Entry> = (0..100).map(entry).collect();
        let mut b = Batch {
            seq: 3,
            packed_entries: packed(&entries, true),
            ..Batch::default()
        };
        unpack(&mut b, 1 << 20).unwrap();
        assert_eq!(b.entries, entries);
        assert!(b.packed_entries.is_empty());
        // Nothing packed: nothing to do.
        let mut plain = Batch {
            entries: entries.clone(),
            ..Batch::default()
        };
        unpack(&mut plain, 1 << 20).unwrap();
        assert_eq!(plain.entries, entries);
    }

    #[test]
    fn bad_packed_entries_are_refused() {
        let entries: Vec<Entry> = (0..100).map(entry).collect();
        let good = packed(&entries, true);
        let content = PackedEntries {
            entries: entries.clone(),
        }
        .encoded_len();
        let refused = |b: Batch, limit: usize| {
            let mut b = b;
            unpack(&mut b, limit).unwrap_err().to_string()
        };
        let with = |p: Vec<u8>| Batch {
            seq: 1,
            packed_entries: p,
            ..Batch::default()
        };
        assert!(refused(with(b"not zstd".to_vec()), 1 << 20).contains("not a zstd frame"));
        assert!(refused(with(packed(&entries, false)), 1 << 20).contains("content size"));
        assert!(refused(with(good.clone()), content - 1).contains("at most"));
        // A frame cut short, and one whose header claims less than it holds.
        assert!(refused(with(good[..good.len() - 8].to_vec()), 1 << 20).contains("decompress"));
        let mut lying = packed(&entries, true);
        // The content size follows the 4-byte magic and the descriptor
        // (a single-segment frame has no window byte): make it smaller.
        lying[5] = 0;
        lying[6] = 0;
        let claimed = zstd::zstd_safe::get_frame_content_size(&lying)
            .unwrap()
            .unwrap();
        assert!(claimed < content as u64, "{claimed}");
        assert!(refused(with(lying), 1 << 20).contains("decompress"));
        // Not an encoding of entries.
        let garbage = zstd::bulk::compress(&[0xff; 64], 1).unwrap();
        assert!(refused(with(garbage), 1 << 20).contains("decode"));
        let both = Batch {
            entries: entries.clone(),
            ..with(good)
        };
        assert!(refused(both, 1 << 20).contains("both"));
    }
}
