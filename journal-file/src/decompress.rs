//! Decompression of data object payloads (XZ, LZ4, ZSTD), each bounded by a
//! caller-given maximum so that a corrupt length cannot exhaust memory.
//!
//! systemd's LZ4 payloads are a little-endian u64 of the decompressed size
//! followed by one raw LZ4 block; XZ and ZSTD payloads are ordinary frames.

use std::io::Read;

/// Object flags naming the compression of a data payload.
pub const OBJECT_COMPRESSED_XZ: u8 = 1 << 0;
pub const OBJECT_COMPRESSED_LZ4: u8 = 1 << 1;
pub const OBJECT_COMPRESSED_ZSTD: u8 = 1 << 2;
pub const OBJECT_COMPRESSED_MASK: u8 =
    OBJECT_COMPRESSED_XZ | OBJECT_COMPRESSED_LZ4 | OBJECT_COMPRESSED_ZSTD;

/// LZ4 cannot expand input by more than about 255 times.
const LZ4_MAX_RATIO: u64 = 255;

/// Holds decompression state that is worth keeping between payloads.
pub(crate) struct Decompressor {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    zstd_stream: Option<zstd::stream::raw::Decoder<'static>>,
}

/// The longest prefix [`Decompressor::peek`] produces.
pub(crate) const PEEK_MAX: usize = 80;

impl Decompressor {
    pub(crate) fn new() -> Decompressor {
        Decompressor {
            zstd: None,
            zstd_stream: None,
        }
    }

    /// Up to `out.len()` (at most [`PEEK_MAX`]) first bytes of the
    /// decompressed payload, without decompressing the rest where the
    /// format allows it; how many were written, `None` when they cannot be
    /// had cheaply (the caller then decompresses the whole payload).
    pub(crate) fn peek(&mut self, flags: u8, src: &[u8], out: &mut [u8]) -> Option<usize> {
        match flags & OBJECT_COMPRESSED_MASK {
            OBJECT_COMPRESSED_ZSTD => self.zstd_peek(src, out),
            OBJECT_COMPRESSED_LZ4 => lz4_peek(src, out),
            _ => None,
        }
    }

    fn zstd_peek(&mut self, src: &[u8], out: &mut [u8]) -> Option<usize> {
        use zstd::stream::raw::Operation;
        if self.zstd_stream.is_none() {
            self.zstd_stream = zstd::stream::raw::Decoder::new().ok();
        }
        let d = self.zstd_stream.as_mut()?;
        d.reinit().ok()?;
        let (mut read, mut written) = (0, 0);
        // Each step decodes at least one block; the first block holds the
        // prefix, so this ends after one or two steps.
        for _ in 0..4 {
            let st = d.run_on_buffers(&src[read..], &mut out[written..]).ok()?;
            read += st.bytes_read;
            written += st.bytes_written;
            if written == out.len() || st.remaining == 0 || st.bytes_read + st.bytes_written == 0 {
                break;
            }
        }
        Some(written)
    }

    /// Decompresses `src` per the object `flags` into a new buffer of at
    /// most `max` bytes; `None` when the payload is damaged or too large.
    pub(crate) fn decompress(&mut self, flags: u8, src: &[u8], max: usize) -> Option<Vec<u8>> {
        match flags & OBJECT_COMPRESSED_MASK {
            OBJECT_COMPRESSED_ZSTD => self.zstd(src, max),
            OBJECT_COMPRESSED_LZ4 => lz4(src, max),
            OBJECT_COMPRESSED_XZ => bounded_read(xz2::read::XzDecoder::new(src), max),
            _ => None,
        }
    }

    fn zstd(&mut self, src: &[u8], max: usize) -> Option<Vec<u8>> {
        if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(src) {
            if size > max as u64 {
                return None;
            }
            if self.zstd.is_none() {
                self.zstd = zstd::bulk::Decompressor::new().ok();
            }
            let d = self.zstd.as_mut()?;
            let mut out = Vec::with_capacity(size as usize);
            match d.decompress_to_buffer(src, &mut out) {
                Ok(n) if n as u64 == size => return Some(out),
                _ => return None,
            }
        }
        // No size in the frame header: stream it under the bound.
        bounded_read(zstd::stream::read::Decoder::new(src).ok()?, max)
    }
}

fn lz4(src: &[u8], max: usize) -> Option<Vec<u8>> {
    if src.len() <= 8 {
        return None;
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&src[..8]);
    let size = u64::from_le_bytes(size);
    let block = &src[8..];
    if size > max as u64 || size > (block.len() as u64).saturating_mul(LZ4_MAX_RATIO) + 16 {
        return None;
    }
    let mut out = vec![0u8; size as usize];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if n == out.len() => Some(out),
        _ => None,
    }
}

/// The literals of an LZ4 block's first sequence: the block's first bytes,
/// stored as they are.
fn lz4_peek(src: &[u8], out: &mut [u8]) -> Option<usize> {
    let block = src.get(8..)?;
    let token = *block.first()?;
    let mut lit = usize::from(token >> 4);
    let mut at = 1;
    if lit == 15 {
        loop {
            let b = *block.get(at)?;
            at += 1;
            lit = lit.saturating_add(usize::from(b));
            if b != 255 {
                break;
            }
        }
    }
    let n = lit.min(out.len());
    out[..n].copy_from_slice(block.get(at..at + n)?);
    Some(n)
}

fn bounded_read(r: impl Read, max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    r.take(max as u64 + 1).read_to_end(&mut out).ok()?;
    (out.len() <= max).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_round_trip_and_bound() {
        let data = b"MESSAGE=".repeat(1000);
        let c = zstd::bulk::compress(&data, 3).unwrap();
        let mut d = Decompressor::new();
        assert_eq!(
            d.decompress(OBJECT_COMPRESSED_ZSTD, &c, 1 << 20),
            Some(data.clone())
        );
        assert_eq!(d.decompress(OBJECT_COMPRESSED_ZSTD, &c, 100), None);
        assert_eq!(
            d.decompress(OBJECT_COMPRESSED_ZSTD, &c[..c.len() / 2], 1 << 20),
            None
        );
    }

    #[test]
    fn lz4_with_size_prefix() {
        let data = b"FOO=bar bar bar bar".repeat(50);
        let mut c = (data.len() as u64).to_le_bytes().to_vec();
        c.extend(lz4_flex::block::compress(&data));
        let mut d = Decompressor::new();
        assert_eq!(
            d.decompress(OBJECT_COMPRESSED_LZ4, &c, 1 << 20),
            Some(data.clone())
        );
        c[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(d.decompress(OBJECT_COMPRESSED_LZ4, &c, 1 << 20), None);
        assert_eq!(d.decompress(OBJECT_COMPRESSED_LZ4, &c[..5], 1 << 20), None);
    }

    #[test]
    fn peeks_give_the_payload_prefix() {
        let data = b"MESSAGE="
            .iter()
            .chain(&[b'q'; 5000])
            .copied()
            .collect::<Vec<_>>();
        let mut d = Decompressor::new();
        let mut out = [0u8; PEEK_MAX];
        let z = zstd::bulk::compress(&data, 3).unwrap();
        for _ in 0..2 {
            let n = d.peek(OBJECT_COMPRESSED_ZSTD, &z, &mut out).unwrap();
            assert_eq!(out[..n], data[..n]);
            assert!(n >= 9, "{n}");
        }
        let mut l = (data.len() as u64).to_le_bytes().to_vec();
        l.extend(lz4_flex::block::compress(&data));
        let n = d.peek(OBJECT_COMPRESSED_LZ4, &l, &mut out).unwrap();
        assert_eq!(out[..n], data[..n]);
        assert!(n >= 9, "{n}");
        assert!(
            d.peek(OBJECT_COMPRESSED_ZSTD, &z[..3], &mut out)
                .unwrap_or(0)
                < 9
        );
        assert_eq!(d.peek(OBJECT_COMPRESSED_LZ4, &l[..9], &mut out), None);
        assert_eq!(d.peek(OBJECT_COMPRESSED_XZ, &z, &mut out), None);
    }

    #[test]
    fn xz_round_trip() {
        use std::io::Write;
        let data = b"X=".repeat(3000);
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(&data).unwrap();
        let c = e.finish().unwrap();
        let mut d = Decompressor::new();
        assert_eq!(d.decompress(OBJECT_COMPRESSED_XZ, &c, 1 << 20), Some(data));
        assert_eq!(d.decompress(OBJECT_COMPRESSED_XZ, &c[..10], 1 << 20), None);
    }
}
