//! Filtering before decoding: an entry's fields that a filter looks at are
//! decoded first, and the others only when the filter keeps the entry, so
//! an excluded entry costs a few small reads instead of a full decode.
//!
//! A data object's field name is read without its value: from the cache of
//! shared data objects, from the start of an uncompressed payload, or from
//! the first decompressed bytes (a zstd stream or an LZ4 block yields its
//! start without the rest). Only when none of these works is the object
//! decoded whole, with exactly the rules of a full decode, so a filtered
//! read keeps and drops the same entries as a full read filtered after.

use crate::decompress::{OBJECT_COMPRESSED_MASK, PEEK_MAX};
use crate::error::{Bad, Error};
use crate::file::JournalFile;
use crate::object::{self, EntryMeta};
use bytes::Bytes;
use jr_journal::{Entry, Field};

/// A decision about an entry that depends on a few of its fields.
pub trait FieldFilter {
    /// Whether the decision looks at field `name`.
    fn needs(&self, name: &str) -> bool;
    /// The decision, given every occurrence of the needed fields in the
    /// entry's order (and only those).
    fn accepts(&self, fields: &[Field]) -> bool;
}

/// An entry read through a [`FieldFilter`].
#[derive(Debug, Clone, PartialEq)]
pub struct Filtered {
    /// Every field when `accepted`; otherwise only the fields the filter
    /// needed (cursor and timestamps are always complete).
    pub entry: Entry,
    pub accepted: bool,
}

impl JournalFile {
    /// The field name of the data object at `offset`, read without
    /// decoding its value where possible: from the cache, from the start of
    /// an uncompressed payload, or from the first decompressed bytes.
    fn field_name<'b>(
        &mut self,
        offset: u64,
        buf: &'b mut [u8; PEEK_MAX],
    ) -> Result<NameAt<'b>, Bad> {
        if let Some((name, _)) = self.cache.get(&offset) {
            let n = name.len().min(PEEK_MAX);
            buf[..n].copy_from_slice(&name[..n]);
            return Ok(NameAt::Name(&buf[..n]));
        }
        let hs = self.header.header_size;
        let dh = object::data_header(&mut self.src, hs, self.header.compact(), offset)?;
        let len = usize::try_from(dh.payload_len)
            .map_err(|_| Bad::corrupt(offset, "data object too large"))?;
        let n = if dh.flags & OBJECT_COMPRESSED_MASK != 0 {
            let raw = self.src.get(dh.payload_offset, len)?;
            match self.decompressor.peek(dh.flags, raw, buf) {
                Some(n) => n,
                None => return Ok(NameAt::Unknown),
            }
        } else {
            let n = len.min(PEEK_MAX);
            buf[..n].copy_from_slice(self.src.get(dh.payload_offset, n)?);
            n
        };
        let prefix = &buf[..n];
        // Anything odd is left to a full decode, which decides exactly as
        // it does for an unfiltered read.
        Ok(match memchr::memchr(b'=', prefix) {
            Some(eq) if jr_journal::fields::is_valid_name(&prefix[..eq]) => {
                NameAt::Name(&prefix[..eq])
            }
            _ => NameAt::Unknown,
        })
    }

    /// Decodes entry `meta` as far as `filter` needs, and completely when
    /// it accepts the entry.
    pub fn decode_filtered(
        &mut self,
        meta: &EntryMeta,
        filter: &dyn FieldFilter,
    ) -> Result<Filtered, Error> {
        self.decode_filtered_inner(meta, filter)
            .map_err(|b| b.into_error(self.path()))
    }

    fn decode_filtered_inner(
        &mut self,
        meta: &EntryMeta,
        filter: &dyn FieldFilter,
    ) -> Result<Filtered, Bad> {
        let items = self.take_items(meta)?;
        let mut known: Vec<Option<Field>> = vec![None; items.len()];
        let mut needed = Vec::new();
        let mut bad = 0;
        if filter.needs(jr_journal::fields::BOOT_ID) {
            needed.push(Field::new(
                Bytes::from_static(jr_journal::fields::BOOT_ID.as_bytes()),
                self.boot_value(&meta.boot_id),
            ));
        }
        let mut name = [0u8; PEEK_MAX];
        for (i, &off) in items.iter().enumerate() {
            let wanted = match self.field_name(off, &mut name) {
                Ok(NameAt::Name(n)) => std::str::from_utf8(n).is_ok_and(|n| filter.needs(n)),
                Ok(NameAt::Unknown) => true,
                // Left for the full decode to count, as it would.
                Err(_) => {
                    bad += 1;
                    continue;
                }
            };
            if !wanted {
                continue;
            }
            match self.data_field(off) {
                Ok(Some(f)) => {
                    if f.name != jr_journal::fields::BOOT_ID && filter.needs(f.name_str()) {
                        needed.push(f.clone());
                    }
                    known[i] = Some(f);
                }
                // journalctl stops an entry at a malformed field.
                Ok(None) => break,
                Err(_) => bad += 1,
            }
        }
        let accepted = filter.accepts(&needed);
        let fields = if accepted {
            self.decode_items(meta, &items, &mut known)
        } else {
            self.count_bad_items(bad);
            needed
        };
        self.return_items(items);
        self.count_entry();
        Ok(Filtered {
            entry: self.entry_of(meta, fields),
            accepted,
        })
    }
}

/// What [`JournalFile::field_name`] found.
enum NameAt<'b> {
    Name(&'b [u8]),
    /// Only a full decode can tell.
    Unknown,
}
