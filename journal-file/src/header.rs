//! The journal file header: signature, feature flags and the offsets a
//! reader starts from (layout per systemd's `journal-def.h`).

use crate::error::Error;
use std::path::Path;

pub const SIGNATURE: &[u8; 8] = b"LPKSHHRH";

/// Incompatible flag: data objects may be XZ-compressed.
pub const INCOMPATIBLE_COMPRESSED_XZ: u32 = 1 << 0;
/// Incompatible flag: data objects may be LZ4-compressed.
pub const INCOMPATIBLE_COMPRESSED_LZ4: u32 = 1 << 1;
/// Incompatible flag: hash tables use SipHash keyed by the file id.
pub const INCOMPATIBLE_KEYED_HASH: u32 = 1 << 2;
/// Incompatible flag: data objects may be ZSTD-compressed.
pub const INCOMPATIBLE_COMPRESSED_ZSTD: u32 = 1 << 3;
/// Incompatible flag: 32-bit offsets in entries and entry arrays.
pub const INCOMPATIBLE_COMPACT: u32 = 1 << 4;
/// Every incompatible flag this reader understands.
pub const INCOMPATIBLE_SUPPORTED: u32 = INCOMPATIBLE_COMPRESSED_XZ
    | INCOMPATIBLE_COMPRESSED_LZ4
    | INCOMPATIBLE_KEYED_HASH
    | INCOMPATIBLE_COMPRESSED_ZSTD
    | INCOMPATIBLE_COMPACT;

/// Compatible flag: the file carries Forward Secure Sealing tags (ignored
/// when reading, as compatible flags may be).
pub const COMPATIBLE_SEALED: u32 = 1 << 0;
pub const COMPATIBLE_TAIL_ENTRY_BOOT_ID: u32 = 1 << 1;
pub const COMPATIBLE_SEALED_CONTINUOUS: u32 = 1 << 2;

/// Bytes of the header read at open: the full header of current systemd.
pub const HEADER_MAX: usize = 272;
/// The smallest header systemd accepts (everything up to `n_data`).
pub const HEADER_MIN: u64 = 208;

/// The header's `state` byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Offline,
    /// A writer has the file open: its tail may still change.
    Online,
    Archived,
    Unknown(u8),
}

/// The parts of the header the reader uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub compatible_flags: u32,
    pub incompatible_flags: u32,
    pub state: FileState,
    pub file_id: [u8; 16],
    pub machine_id: [u8; 16],
    pub seqnum_id: [u8; 16],
    pub header_size: u64,
    pub arena_size: u64,
    pub n_entries: u64,
    pub head_entry_seqnum: u64,
    pub tail_entry_seqnum: u64,
    pub entry_array_offset: u64,
    pub head_entry_realtime: u64,
    pub tail_entry_realtime: u64,
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn id128(b: &[u8], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    a
}

impl Header {
    /// Parses the first bytes of a file (`buf` may be shorter than
    /// [`HEADER_MAX`] for a short file).
    pub fn parse(path: &Path, buf: &[u8]) -> Result<Header, Error> {
        let not = |why| Error::NotJournal {
            path: path.to_owned(),
            why,
        };
        if buf.len() < HEADER_MIN as usize {
            return Err(not("shorter than a journal header"));
        }
        if &buf[..8] != SIGNATURE {
            return Err(not("bad signature"));
        }
        let incompatible_flags = le32(buf, 12);
        let unknown = incompatible_flags & !INCOMPATIBLE_SUPPORTED;
        if unknown != 0 {
            return Err(Error::Unsupported {
                path: path.to_owned(),
                flags: incompatible_flags,
                unknown,
            });
        }
        let header_size = le64(buf, 88);
        if header_size < HEADER_MIN || !header_size.is_multiple_of(8) {
            return Err(not("implausible header size"));
        }
        let state = match buf[16] {
            0 => FileState::Offline,
            1 => FileState::Online,
            2 => FileState::Archived,
            s => FileState::Unknown(s),
        };
        Ok(Header {
            compatible_flags: le32(buf, 8),
            incompatible_flags,
            state,
            file_id: id128(buf, 24),
            machine_id: id128(buf, 40),
            seqnum_id: id128(buf, 72),
            header_size,
            arena_size: le64(buf, 96),
            n_entries: le64(buf, 152),
            tail_entry_seqnum: le64(buf, 160),
            head_entry_seqnum: le64(buf, 168),
            entry_array_offset: le64(buf, 176),
            head_entry_realtime: le64(buf, 184),
            tail_entry_realtime: le64(buf, 192),
        })
    }

    pub fn compact(&self) -> bool {
        self.incompatible_flags & INCOMPATIBLE_COMPACT != 0
    }

    pub fn keyed_hash(&self) -> bool {
        self.incompatible_flags & INCOMPATIBLE_KEYED_HASH != 0
    }
}

/// Lowercase hex of a 128-bit id, as sd-journal prints ids in cursors.
pub fn id128_hex(id: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(32);
    for b in id {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes() -> Vec<u8> {
        let mut b = vec![0u8; HEADER_MAX];
        b[..8].copy_from_slice(SIGNATURE);
        b[88..96].copy_from_slice(&(HEADER_MAX as u64).to_le_bytes());
        b
    }

    #[test]
    fn unknown_incompatible_flag_is_refused() {
        let mut b = header_bytes();
        b[12..16].copy_from_slice(&(INCOMPATIBLE_COMPACT | 1 << 9).to_le_bytes());
        let e = Header::parse(Path::new("x"), &b).unwrap_err();
        assert!(e.is_unsupported(), "{e}");
        assert!(matches!(e, Error::Unsupported { unknown, .. } if unknown == 1 << 9));
    }

    #[test]
    fn known_flags_and_bad_signature() {
        let mut b = header_bytes();
        b[12..16].copy_from_slice(&INCOMPATIBLE_SUPPORTED.to_le_bytes());
        let h = Header::parse(Path::new("x"), &b).unwrap();
        assert!(h.compact() && h.keyed_hash());
        b[0] = b'X';
        assert!(matches!(
            Header::parse(Path::new("x"), &b),
            Err(Error::NotJournal { .. })
        ));
        assert!(Header::parse(Path::new("x"), &b[..100]).is_err());
    }

    #[test]
    fn hex_of_id() {
        let mut id = [0u8; 16];
        id[0] = 0xab;
        id[15] = 0x01;
        assert_eq!(id128_hex(&id), "ab000000000000000000000000000001");
    }
}
