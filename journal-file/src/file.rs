//! One journal file: its header, the chain of entry arrays that lists every
//! entry in file order, and the decoding of an entry into the shared entry
//! model, exactly as `journalctl -o export` prints it.
//!
//! Damage inside the file is never fatal: an entry array chain that breaks
//! ends the file's list there, an entry that does not check out is skipped,
//! and a data item that does not check out is left out of its entry. Each
//! of these is counted in [`ReadStats`].

use crate::decompress::{Decompressor, OBJECT_COMPRESSED_MASK};
use crate::error::{Bad, Error};
use crate::header::{id128_hex, Header, HEADER_MAX};
use crate::object::{self, EntryMeta};
use crate::source::Source;
use crate::{Options, ReadStats};
use bytes::Bytes;
use jr_journal::fields::BOOT_ID;
use jr_journal::{Entry, Field};
use rustc_hash::FxHashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Entry array items read per positioned read.
const ARRAY_CHUNK_ITEMS: u64 = 8192;
/// Decoded data objects kept for reuse are at most this large each...
const CACHE_VALUE_MAX: usize = 16 << 10;
/// ...and at most this large together; the cache starts over beyond it.
/// The values worth keeping (host, unit, identifier, boot, a few repeated
/// messages) are few and refill within a handful of entries after a reset,
/// so a small cache keeps nearly all of the speed and bounds the reader's
/// memory on a long journal.
const CACHE_BYTES_MAX: usize = 4 << 20;

/// Where loading of entry offsets continues along the entry array chain.
#[derive(Debug, Default)]
struct Chain {
    /// The array being consumed; 0 before the first.
    array: u64,
    /// Items of `array` already taken.
    consumed: u64,
    /// The chain was found broken; nothing more is loaded from it.
    broken: bool,
}

/// A journal file open for reading.
pub struct JournalFile {
    path: PathBuf,
    pub(crate) src: Source,
    pub(crate) header: Header,
    seqnum_id_hex: String,
    identity: (u64, u64),
    offsets: Vec<u64>,
    /// Leading entries whose offsets were let go (see [`Options::tail`]);
    /// `offsets[0]` is entry `dropped`.
    dropped: usize,
    /// How many of the newest entries' offsets are kept; `None`: all.
    tail: Option<usize>,
    chain: Chain,
    pub(crate) cache: FxHashMap<u64, (Bytes, Bytes)>,
    cache_bytes: usize,
    items: Vec<u64>,
    boot: Option<([u8; 16], Bytes)>,
    pub(crate) decompressor: Decompressor,
    max_payload: usize,
    stats: ReadStats,
}

impl std::fmt::Debug for JournalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalFile")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

impl JournalFile {
    /// Opens a journal file and lists its entries. Fails for a file that is
    /// not a journal, cannot be read, or uses unknown incompatible features
    /// ([`Error::Unsupported`]).
    pub fn open(path: impl AsRef<Path>) -> Result<JournalFile, Error> {
        Self::open_with(path, &Options::default())
    }

    pub fn open_with(path: impl AsRef<Path>, opts: &Options) -> Result<JournalFile, Error> {
        let path = path.as_ref();
        let file = File::open(path).map_err(io_err(path))?;
        let meta = file.metadata().map_err(io_err(path))?;
        let src = Source::new(file, opts.window_bytes).map_err(io_err(path))?;
        let header = read_header(path, &src)?;
        let mut f = JournalFile {
            path: path.to_owned(),
            seqnum_id_hex: id128_hex(&header.seqnum_id),
            identity: (meta.dev(), meta.ino()),
            src,
            header,
            offsets: Vec::new(),
            dropped: 0,
            tail: opts.tail.map(|n| n.max(1)),
            chain: Chain::default(),
            cache: FxHashMap::default(),
            cache_bytes: 0,
            items: Vec::new(),
            boot: None,
            decompressor: Decompressor::new(),
            max_payload: opts.max_payload,
            stats: ReadStats::default(),
        };
        f.load_offsets();
        // Walking the entry arrays filled windows all over the file;
        // reading entries starts elsewhere.
        f.src.release();
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives back the read windows and the cache of repeated values, for
    /// a file read to its end that will not grow (an archived one) while
    /// the journal goes on reading others. Reading it again refills them.
    pub fn release_buffers(&mut self) {
        self.src.release();
        self.cache = FxHashMap::default();
        self.cache_bytes = 0;
        self.items = Vec::new();
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Device and inode of the open file: a renamed file keeps them.
    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// Whether the file was deleted (vacuumed) since it was opened; what
    /// was listed stays readable until it is dropped.
    pub fn is_deleted(&self) -> bool {
        self.src.is_deleted()
    }

    /// Entries listed so far (grows with [`JournalFile::refresh`]).
    pub fn len(&self) -> usize {
        self.dropped + self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// Re-reads the header and lists entries appended since. Returns how
    /// many new entries were listed.
    pub fn refresh(&mut self) -> Result<usize, Error> {
        self.src.refresh().map_err(io_err(&self.path))?;
        let header = read_header(&self.path, &self.src)?;
        if header.seqnum_id != self.header.seqnum_id || header.file_id != self.header.file_id {
            return Err(Error::Corrupt {
                path: self.path.clone(),
                offset: 0,
                what: "file identity changed under the reader",
            });
        }
        self.header = header;
        let before = self.len();
        self.load_offsets();
        Ok(self.len() - before)
    }

    fn load_offsets(&mut self) {
        if let Err(bad) = self.walk_chain() {
            self.chain.broken = true;
            self.stats.bad_arrays += 1;
            tracing::warn!(path = %self.path.display(), error = %bad.into_error(&self.path), "entry array chain ends early");
        }
    }

    fn walk_chain(&mut self) -> Result<(), Bad> {
        let compact = self.header.compact();
        let item = if compact { 4u64 } else { 8 };
        let limit = self.header.n_entries;
        let hs = self.header.header_size;
        // The header says how many entries there are: no doubling slack
        // (8 bytes per entry is most of a long archived file's share of
        // the reader's memory). Bounded, since the header may lie.
        if self.tail.is_none() {
            let expected = limit.saturating_sub(self.len() as u64);
            self.offsets
                .reserve_exact(usize::try_from(expected.min(1 << 24)).unwrap_or(0));
        }
        while !self.chain.broken && (self.len() as u64) < limit {
            if self.chain.array == 0 {
                if self.header.entry_array_offset == 0 {
                    return Ok(());
                }
                self.chain.array = self.header.entry_array_offset;
                self.chain.consumed = 0;
            }
            let arr = object::entry_array(&mut self.src, hs, compact, self.chain.array)?;
            while self.chain.consumed < arr.n_items && (self.len() as u64) < limit {
                let n = (arr.n_items - self.chain.consumed)
                    .min(ARRAY_CHUNK_ITEMS)
                    .min(limit - self.len() as u64);
                let at = arr.items_offset + self.chain.consumed * item;
                let b = self.src.get(at, (n * item) as usize)?;
                let mut taken = 0;
                for c in b.chunks_exact(item as usize) {
                    let off = if compact {
                        u64::from(object::le32(c, 0))
                    } else {
                        object::le64(c, 0)
                    };
                    // A zero slot is not written yet.
                    if off == 0 {
                        break;
                    }
                    self.offsets.push(off);
                    taken += 1;
                }
                self.chain.consumed += taken;
                if let Some(keep) = self.tail {
                    if self.offsets.len() > 2 * keep {
                        let gone = self.offsets.len() - keep;
                        self.offsets.drain(..gone);
                        self.dropped += gone;
                    }
                }
                if taken < n {
                    return Ok(());
                }
            }
            if self.chain.consumed < arr.n_items || arr.next == 0 {
                return Ok(());
            }
            if arr.next <= self.chain.array {
                return Err(Bad::corrupt(
                    self.chain.array,
                    "entry array chain loops back",
                ));
            }
            self.chain.array = arr.next;
            self.chain.consumed = 0;
        }
        Ok(())
    }

    /// The fixed part of the entry at `index` in file order.
    pub fn meta(&mut self, index: usize) -> Option<Result<EntryMeta, Error>> {
        let off = *self.offsets.get(index.checked_sub(self.dropped)?)?;
        Some(
            object::entry_meta(
                &mut self.src,
                self.header.header_size,
                self.header.compact(),
                off,
            )
            .map_err(|b| b.into_error(&self.path)),
        )
    }

    pub(crate) fn meta_counted(&mut self, index: usize) -> Option<EntryMeta> {
        match self.meta(index)? {
            Ok(m) => Some(m),
            Err(e) => {
                self.stats.bad_entries += 1;
                tracing::warn!(error = %e, "skipping a damaged entry");
                None
            }
        }
    }

    pub(crate) fn seqnum_id(&self) -> &[u8; 16] {
        &self.header.seqnum_id
    }

    /// Decodes the entry `meta` into the shared model: cursor, timestamps
    /// and fields in item order, `_BOOT_ID` first as journalctl prints it.
    pub fn decode(&mut self, meta: &EntryMeta) -> Result<Entry, Error> {
        self.decode_inner(meta)
            .map_err(|b| b.into_error(&self.path))
    }

    fn decode_inner(&mut self, meta: &EntryMeta) -> Result<Entry, Bad> {
        let items = self.take_items(meta)?;
        let fields = self.decode_items(meta, &items, &mut []);
        self.items = items;
        self.count_entry();
        Ok(self.entry_of(meta, fields))
    }

    /// The data object offsets of entry `meta`, in a reused buffer the
    /// caller gives back through `self.items`.
    pub(crate) fn take_items(&mut self, meta: &EntryMeta) -> Result<Vec<u64>, Bad> {
        let compact = self.header.compact();
        let mut items = std::mem::take(&mut self.items);
        items.clear();
        match object::entry_items(&mut self.src, compact, meta, &mut items) {
            Ok(()) => Ok(items),
            Err(b) => {
                self.items = items;
                Err(b)
            }
        }
    }

    /// Every field of an entry, `_BOOT_ID` first as journalctl prints it;
    /// `known[i]`, when set, is item `i` already decoded.
    pub(crate) fn decode_items(
        &mut self,
        meta: &EntryMeta,
        items: &[u64],
        known: &mut [Option<Field>],
    ) -> Vec<Field> {
        let mut fields = Vec::with_capacity(items.len() + 1);
        fields.push(Field::new(
            Bytes::from_static(BOOT_ID.as_bytes()),
            self.boot_value(&meta.boot_id),
        ));
        for (i, &off) in items.iter().enumerate() {
            let decoded = match known.get_mut(i).and_then(Option::take) {
                Some(f) => Ok(Some(f)),
                None => self.data_field(off),
            };
            match decoded {
                Ok(Some(f)) => {
                    if f.name != BOOT_ID {
                        fields.push(f);
                    }
                }
                // journalctl stops printing an entry at a malformed field.
                Ok(None) => break,
                Err(b) => {
                    self.stats.bad_items += 1;
                    tracing::warn!(error = %b.into_error(&self.path), "leaving a damaged field out of its entry");
                }
            }
        }
        fields
    }

    /// The entry `meta` with `fields`, and its cursor as sd-journal
    /// formats it.
    pub(crate) fn entry_of(&self, meta: &EntryMeta, fields: Vec<Field>) -> Entry {
        let mut cursor = String::with_capacity(144);
        cursor.push_str("s=");
        cursor.push_str(&self.seqnum_id_hex);
        cursor.push_str(";i=");
        push_hex_u64(&mut cursor, meta.seqnum);
        cursor.push_str(";b=");
        push_hex(&mut cursor, &meta.boot_id);
        cursor.push_str(";m=");
        push_hex_u64(&mut cursor, meta.monotonic);
        cursor.push_str(";t=");
        push_hex_u64(&mut cursor, meta.realtime);
        cursor.push_str(";x=");
        push_hex_u64(&mut cursor, meta.xor_hash);
        Entry {
            cursor,
            realtime_usec: meta.realtime,
            monotonic_usec: meta.monotonic,
            fields,
        }
    }

    /// Gives back the buffer [`JournalFile::take_items`] lent.
    pub(crate) fn return_items(&mut self, items: Vec<u64>) {
        self.items = items;
    }

    pub(crate) fn count_bad_items(&mut self, n: u64) {
        self.stats.bad_items += n;
    }

    pub(crate) fn count_entry(&mut self) {
        self.stats.entries += 1;
    }

    pub(crate) fn boot_value(&mut self, id: &[u8; 16]) -> Bytes {
        match &self.boot {
            Some((b, v)) if b == id => v.clone(),
            _ => {
                let v = Bytes::from(id128_hex(id));
                self.boot = Some((*id, v.clone()));
                v
            }
        }
    }

    /// The field of the data object at `offset`; `None` when its payload is
    /// not `NAME=value` with a valid name.
    pub(crate) fn data_field(&mut self, offset: u64) -> Result<Option<Field>, Bad> {
        if let Some((name, value)) = self.cache.get(&offset) {
            return Ok(Some(Field::new(name.clone(), value.clone())));
        }
        let hs = self.header.header_size;
        let dh = object::data_header(&mut self.src, hs, self.header.compact(), offset)?;
        let len = usize::try_from(dh.payload_len)
            .map_err(|_| Bad::corrupt(offset, "data object too large"))?;
        let payload = if dh.flags & OBJECT_COMPRESSED_MASK != 0 {
            let raw = self.src.get(dh.payload_offset, len)?;
            let out = self
                .decompressor
                .decompress(dh.flags, raw, self.max_payload)
                .ok_or_else(|| Bad::corrupt(offset, "compressed payload does not decompress"))?;
            Bytes::from(out)
        } else {
            if len > self.max_payload {
                return Err(Bad::corrupt(
                    offset,
                    "data object larger than the payload limit",
                ));
            }
            Bytes::copy_from_slice(self.src.get(dh.payload_offset, len)?)
        };
        let Some(eq) = memchr::memchr(b'=', &payload) else {
            return Ok(None);
        };
        // Valid names are ASCII, so UTF-8 as Field requires.
        if !jr_journal::fields::is_valid_name(&payload[..eq]) {
            return Ok(None);
        }
        let field = Field::new(payload.slice(..eq), payload.slice(eq + 1..));
        if dh.n_entries > 1 && payload.len() <= CACHE_VALUE_MAX {
            if self.cache_bytes + payload.len() > CACHE_BYTES_MAX {
                self.cache.clear();
                self.cache_bytes = 0;
            }
            self.cache_bytes += payload.len() + 64;
            self.cache
                .insert(offset, (field.name.clone(), field.value.clone()));
        }
        Ok(Some(field))
    }

    /// Every entry in file order; damaged entries are skipped and counted.
    pub fn entries(&mut self) -> FileEntries<'_> {
        FileEntries {
            file: self,
            index: 0,
        }
    }

    /// First index whose entry satisfies `!before(meta)`, by bisection
    /// (entries are ordered within a file). Damaged entries count as
    /// "before" so the search moves past them.
    pub(crate) fn partition(&mut self, mut before: impl FnMut(&EntryMeta) -> bool) -> usize {
        let (mut lo, mut hi) = (self.dropped, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let is_before = match self.meta(mid) {
                Some(Ok(m)) => before(&m),
                _ => true,
            };
            if is_before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(s: &mut String, id: &[u8; 16]) {
    for b in id {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
}

/// `{:x}` of `v`, without the formatting machinery.
fn push_hex_u64(s: &mut String, v: u64) {
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1);
    for k in (0..digits).rev() {
        s.push(char::from(HEX[((v >> (k * 4)) & 15) as usize]));
    }
}

fn read_header(path: &Path, src: &Source) -> Result<Header, Error> {
    let len = (src.size().min(HEADER_MAX as u64)) as usize;
    let mut buf = vec![0u8; len];
    src.read_exact_at(0, &mut buf)
        .map_err(|b| b.into_error(path))?;
    Header::parse(path, &buf)
}

/// Iterator over a file's entries in file order.
pub struct FileEntries<'a> {
    file: &'a mut JournalFile,
    index: usize,
}

impl Iterator for FileEntries<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let i = self.index;
            if i >= self.file.len() {
                return None;
            }
            self.index += 1;
            let Some(meta) = self.file.meta_counted(i) else {
                continue;
            };
            match self.file.decode(&meta) {
                Ok(e) => return Some(e),
                Err(e) => {
                    self.file.stats.bad_entries += 1;
                    tracing::warn!(error = %e, "skipping a damaged entry");
                }
            }
        }
    }
}
