//! Object layouts of a journal file: the common object header, entry
//! objects, data objects and entry arrays, each read with its offset and
//! size checked against the file before anything is trusted.

use crate::error::Bad;
use crate::source::Source;

pub const OBJECT_DATA: u8 = 1;
pub const OBJECT_ENTRY: u8 = 3;
pub const OBJECT_ENTRY_ARRAY: u8 = 6;

pub const OBJECT_HEADER_SIZE: u64 = 16;
/// Fixed part of an entry object, before its items.
pub const ENTRY_HEADER_SIZE: u64 = 64;
/// Fixed part of a data object in regular and in compact files.
pub const DATA_HEADER_SIZE: u64 = 64;
pub const DATA_HEADER_SIZE_COMPACT: u64 = 72;
/// Fixed part of an entry array object, before its items.
pub const ENTRY_ARRAY_HEADER_SIZE: u64 = 24;

/// Realtime and monotonic timestamps beyond this are invalid (sd-journal's
/// `VALID_REALTIME`/`VALID_MONOTONIC`).
const TIMESTAMP_LIMIT: u64 = 1 << 55;

pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The common header of every object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ObjectHeader {
    pub flags: u8,
    pub size: u64,
}

/// Reads and checks the object header at `offset`: aligned, past the file
/// header, of type `ty`, at least `min_size` long and inside the file.
pub(crate) fn object_header(
    src: &mut Source,
    header_size: u64,
    offset: u64,
    ty: u8,
    min_size: u64,
) -> Result<ObjectHeader, Bad> {
    if !offset.is_multiple_of(8) || offset < header_size {
        return Err(Bad::corrupt(offset, "object offset is invalid"));
    }
    let b = src.get(offset, OBJECT_HEADER_SIZE as usize)?;
    if b[0] != ty {
        return Err(Bad::corrupt(offset, "object has an unexpected type"));
    }
    let hdr = ObjectHeader {
        flags: b[1],
        size: le64(b, 8),
    };
    if hdr.size < min_size {
        return Err(Bad::corrupt(offset, "object is too small"));
    }
    match offset.checked_add(hdr.size) {
        Some(end) if end <= src.size() => Ok(hdr),
        _ => Err(Bad::corrupt(
            offset,
            "object extends beyond the end of the file",
        )),
    }
}

/// The fixed part of an entry object: what orders and names an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    pub offset: u64,
    pub seqnum: u64,
    pub realtime: u64,
    pub monotonic: u64,
    pub boot_id: [u8; 16],
    pub xor_hash: u64,
    /// Number of data items.
    pub n_items: u64,
}

/// Reads an entry object's fixed part, checked as sd-journal checks it.
pub(crate) fn entry_meta(
    src: &mut Source,
    header_size: u64,
    compact: bool,
    offset: u64,
) -> Result<EntryMeta, Bad> {
    let hdr = object_header(
        src,
        header_size,
        offset,
        OBJECT_ENTRY,
        ENTRY_HEADER_SIZE + 1,
    )?;
    let item = if compact { 4 } else { 16 };
    let items_len = hdr.size - ENTRY_HEADER_SIZE;
    if !items_len.is_multiple_of(item) {
        return Err(Bad::corrupt(
            offset,
            "entry size is not a whole number of items",
        ));
    }
    let b = src.get(offset, ENTRY_HEADER_SIZE as usize)?;
    let mut boot_id = [0u8; 16];
    boot_id.copy_from_slice(&b[40..56]);
    let meta = EntryMeta {
        offset,
        seqnum: le64(b, 16),
        realtime: le64(b, 24),
        monotonic: le64(b, 32),
        boot_id,
        xor_hash: le64(b, 56),
        n_items: items_len / item,
    };
    if meta.seqnum == 0
        || meta.realtime == 0
        || meta.realtime >= TIMESTAMP_LIMIT
        || meta.monotonic >= TIMESTAMP_LIMIT
    {
        return Err(Bad::corrupt(
            offset,
            "entry has an invalid seqnum or timestamp",
        ));
    }
    Ok(meta)
}

/// Appends the data object offsets of the entry at `meta` to `out`, in item
/// order.
pub(crate) fn entry_items(
    src: &mut Source,
    compact: bool,
    meta: &EntryMeta,
    out: &mut Vec<u64>,
) -> Result<(), Bad> {
    let item = if compact { 4 } else { 16 };
    let len = (meta.n_items * item) as usize;
    let b = src.get(meta.offset + ENTRY_HEADER_SIZE, len)?;
    out.reserve(meta.n_items as usize);
    if compact {
        out.extend(b.chunks_exact(4).map(|c| u64::from(le32(c, 0))));
    } else {
        out.extend(b.chunks_exact(16).map(|c| le64(c, 0)));
    }
    Ok(())
}

/// A data object's header fields the reader needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DataHeader {
    pub flags: u8,
    pub n_entries: u64,
    pub payload_offset: u64,
    pub payload_len: u64,
}

pub(crate) fn data_header(
    src: &mut Source,
    header_size: u64,
    compact: bool,
    offset: u64,
) -> Result<DataHeader, Bad> {
    let fixed = if compact {
        DATA_HEADER_SIZE_COMPACT
    } else {
        DATA_HEADER_SIZE
    };
    let hdr = object_header(src, header_size, offset, OBJECT_DATA, fixed + 1)?;
    if (hdr.flags & crate::decompress::OBJECT_COMPRESSED_MASK).count_ones() > 1 {
        return Err(Bad::corrupt(
            offset,
            "data object claims several compressions",
        ));
    }
    let b = src.get(offset, DATA_HEADER_SIZE as usize)?;
    Ok(DataHeader {
        flags: hdr.flags,
        n_entries: le64(b, 56),
        payload_offset: offset + fixed,
        payload_len: hdr.size - fixed,
    })
}

/// An entry array object: where its items are and which array follows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryArray {
    pub next: u64,
    pub items_offset: u64,
    pub n_items: u64,
}

pub(crate) fn entry_array(
    src: &mut Source,
    header_size: u64,
    compact: bool,
    offset: u64,
) -> Result<EntryArray, Bad> {
    let item = if compact { 4 } else { 8 };
    let hdr = object_header(
        src,
        header_size,
        offset,
        OBJECT_ENTRY_ARRAY,
        ENTRY_ARRAY_HEADER_SIZE + item,
    )?;
    let b = src.get(offset, ENTRY_ARRAY_HEADER_SIZE as usize)?;
    Ok(EntryArray {
        next: le64(b, 16),
        items_offset: offset + ENTRY_ARRAY_HEADER_SIZE,
        n_items: (hdr.size - ENTRY_ARRAY_HEADER_SIZE) / item,
    })
}
