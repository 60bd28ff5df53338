//! XZ and LZ4 data objects, which the systemd here (252) does not write
//! (it writes ZSTD whatever `SYSTEMD_JOURNAL_COMPRESS` names), read against
//! journalctl, which still reads them.
//!
//! The files are made from an uncompressed file written by
//! `systemd-journal-remote` in the regular layout: every data payload of
//! 512 bytes or more (journald's threshold) is compressed the way systemd
//! compresses it (an XZ stream; a little-endian u64 of the size followed by
//! one LZ4 block), the objects after it move, and every offset that points
//! at an object is rewritten. journalctl reading the result exactly as it
//! reads the original shows that the file is sound.

mod common;

use common::*;
use jr_journal_file::{header, JournalFile};
use std::collections::HashMap;
use std::io::Write;

const DATA: u8 = 1;
const FIELD: u8 = 2;
const ENTRY: u8 = 3;
const DATA_HASH_TABLE: u8 = 4;
const FIELD_HASH_TABLE: u8 = 5;
const ENTRY_ARRAY: u8 = 6;
const COMPRESS_THRESHOLD: usize = 512;

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn align8(v: u64) -> u64 {
    v.div_ceil(8) * 8
}

#[derive(Clone, Copy)]
enum Alg {
    Xz,
    Lz4,
}

impl Alg {
    fn compress(self, payload: &[u8]) -> Vec<u8> {
        match self {
            Alg::Xz => {
                let mut e = xz2::write::XzEncoder::new(Vec::new(), 0);
                e.write_all(payload).unwrap();
                e.finish().unwrap()
            }
            Alg::Lz4 => {
                let mut out = (payload.len() as u64).to_le_bytes().to_vec();
                out.extend(lz4_flex::block::compress(payload));
                out
            }
        }
    }

    /// Object flag and header incompatible flag.
    fn flags(self) -> (u8, u32) {
        match self {
            Alg::Xz => (1 << 0, header::INCOMPATIBLE_COMPRESSED_XZ),
            Alg::Lz4 => (1 << 1, header::INCOMPATIBLE_COMPRESSED_LZ4),
        }
    }
}

/// The regular-layout, uncompressed journal file `src` with its large data
/// payloads compressed by `alg`, and how many were.
fn recompress(src: &[u8], alg: Alg) -> (Vec<u8>, usize) {
    let (object_flag, header_flag) = alg.flags();
    let incompatible = u32::from_le_bytes(src[12..16].try_into().unwrap());
    assert_eq!(
        incompatible & !header::INCOMPATIBLE_KEYED_HASH,
        0,
        "regular layout, uncompressed"
    );
    let header_size = u64_at(src, 88) as usize;
    let tail = u64_at(src, 136);
    // Lay the objects out anew, remembering where each one went.
    let mut out = src[..header_size].to_vec();
    let mut moved: HashMap<u64, u64> = HashMap::new();
    let mut objects = Vec::new();
    let mut compressed = 0;
    let mut at = header_size as u64;
    while at <= tail {
        let o = at as usize;
        let (ty, size) = (src[o], u64_at(src, o + 8) as usize);
        let mut obj = src[o..o + size].to_vec();
        if ty == DATA && size - 64 >= COMPRESS_THRESHOLD {
            let packed = alg.compress(&src[o + 64..o + size]);
            obj.truncate(64);
            obj.extend(packed);
            obj[1] |= object_flag;
            compressed += 1;
            let len = obj.len() as u64;
            put_u64(&mut obj, 8, len);
        }
        moved.insert(at, out.len() as u64);
        objects.push((out.len(), ty));
        let new_len = align8(obj.len() as u64) as usize;
        obj.resize(new_len, 0);
        out.extend(obj);
        at += align8(size as u64);
    }
    let fix = |b: &mut [u8], at: usize| {
        let v = u64_at(b, at);
        if v != 0 {
            put_u64(b, at, moved[&v]);
        }
    };
    for (o, ty) in objects {
        let size = u64_at(&out, o + 8) as usize;
        match ty {
            DATA => [24, 32, 40, 48].iter().for_each(|f| fix(&mut out, o + f)),
            FIELD => [24, 32].iter().for_each(|f| fix(&mut out, o + f)),
            ENTRY => (64..size).step_by(16).for_each(|i| fix(&mut out, o + i)),
            DATA_HASH_TABLE | FIELD_HASH_TABLE => {
                (16..size).step_by(8).for_each(|i| fix(&mut out, o + i))
            }
            ENTRY_ARRAY => {
                fix(&mut out, o + 16);
                (24..size).step_by(8).for_each(|i| fix(&mut out, o + i));
            }
            _ => {}
        }
    }
    // Header: hash tables (they point past their object header), tail
    // object, first entry array, tail entry array and tail entry.
    for f in [104, 120] {
        let v = u64_at(&out, f);
        put_u64(&mut out, f, moved[&(v - 16)] + 16);
    }
    fix(&mut out, 136);
    fix(&mut out, 176);
    if header_size >= 272 {
        let v = u64::from(u32::from_le_bytes(out[256..260].try_into().unwrap()));
        if v != 0 {
            let new = u32::try_from(moved[&v]).unwrap();
            out[256..260].copy_from_slice(&new.to_le_bytes());
        }
        fix(&mut out, 264);
    }
    let arena = (out.len() - header_size) as u64;
    put_u64(&mut out, 96, arena);
    out[12..16].copy_from_slice(&(incompatible | header_flag).to_le_bytes());
    (out, compressed)
}

#[test]
fn xz_and_lz4_data_objects_match_journalctl() {
    let export = export_for_host("packed", 90, 1_700_000_000_000_000, 21);
    for keyed_hash in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join("plain.journal");
        let layout = Layout {
            compact: false,
            keyed_hash,
            compress: false,
        };
        journal_remote(&export, &plain, layout);
        let original = journalctl_files(std::slice::from_ref(&plain));
        let bytes = std::fs::read(&plain).unwrap();
        for (alg, name) in [(Alg::Xz, "xz"), (Alg::Lz4, "lz4")] {
            let what = format!("{name}, keyed hash {keyed_hash}");
            let path = d.path().join(format!("{name}.journal"));
            let (packed, compressed) = recompress(&bytes, alg);
            assert!(compressed > 10, "{what}: {compressed} payloads compressed");
            std::fs::write(&path, &packed).unwrap();
            let oracle = journalctl_files(std::slice::from_ref(&path));
            assert_same(&oracle, &original, &format!("{what}: journalctl reads it"));
            let mut f = JournalFile::open(&path).unwrap();
            assert_ne!(f.header().incompatible_flags & alg.flags().1, 0);
            let native: Vec<_> = f.entries().collect();
            assert_eq!(f.stats().damaged(), 0, "{what}");
            assert_same(&native, &oracle, &what);
        }
    }
}
