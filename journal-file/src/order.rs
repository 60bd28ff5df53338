//! sd-journal's order of entries from different files.
//!
//! Two rules from sd-journal decide the merged order and which entries are
//! dropped: [`compare`] picks the earliest of the files' next entries
//! (`journal_file_compare_locations`), and [`compare_with_location`] tells
//! whether a file's next entry lies beyond the last entry yielded
//! (`compare_with_location`); an entry that does not is skipped, which is
//! how an entry present in several files is yielded once.
//!
//! Both follow the systemd release this project ships against (252): two
//! entries are the same entry when boot id, timestamps and xor hash agree,
//! whatever their sequence numbers; later releases also compare sequence
//! numbers there and order boots by their last entry.

use crate::object::EntryMeta;
use std::cmp::Ordering;

/// An entry's place: what sd-journal compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub seqnum_id: [u8; 16],
    pub seqnum: u64,
    pub boot_id: [u8; 16],
    pub monotonic: u64,
    pub realtime: u64,
    pub xor_hash: u64,
}

impl Loc {
    pub(crate) fn of(seqnum_id: &[u8; 16], m: &EntryMeta) -> Loc {
        Loc {
            seqnum_id: *seqnum_id,
            seqnum: m.seqnum,
            boot_id: m.boot_id,
            monotonic: m.monotonic,
            realtime: m.realtime,
            xor_hash: m.xor_hash,
        }
    }
}

/// Orders two files' current entries.
pub(crate) fn compare(a: &Loc, b: &Loc) -> Ordering {
    if a.boot_id == b.boot_id
        && a.monotonic == b.monotonic
        && a.realtime == b.realtime
        && a.xor_hash == b.xor_hash
    {
        return Ordering::Equal;
    }
    if a.seqnum_id == b.seqnum_id {
        let o = a.seqnum.cmp(&b.seqnum);
        if o != Ordering::Equal {
            return o;
        }
    }
    if a.boot_id == b.boot_id {
        let o = a.monotonic.cmp(&b.monotonic);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.realtime
        .cmp(&b.realtime)
        .then(a.xor_hash.cmp(&b.xor_hash))
}

/// Whether entry `f` lies beyond the last yielded entry `l` (`Greater`).
pub(crate) fn compare_with_location(f: &Loc, l: &Loc) -> Ordering {
    if f.boot_id == l.boot_id && f.realtime == l.realtime && f.xor_hash == l.xor_hash {
        return Ordering::Equal;
    }
    if f.seqnum_id == l.seqnum_id {
        let o = f.seqnum.cmp(&l.seqnum);
        if o != Ordering::Equal {
            return o;
        }
    }
    if f.boot_id == l.boot_id {
        let o = f.monotonic.cmp(&l.monotonic);
        if o != Ordering::Equal {
            return o;
        }
    }
    let o = f
        .realtime
        .cmp(&l.realtime)
        .then(f.xor_hash.cmp(&l.xor_hash));
    if o != Ordering::Equal {
        return o;
    }
    Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(sid: u8, seq: u64, boot: u8, mono: u64, rt: u64, x: u64) -> Loc {
        Loc {
            seqnum_id: [sid; 16],
            seqnum: seq,
            boot_id: [boot; 16],
            monotonic: mono,
            realtime: rt,
            xor_hash: x,
        }
    }

    #[test]
    fn seqnum_first_within_one_seqnum_space() {
        // Same space: seqnum wins even against time.
        let a = loc(1, 1, 1, 900, 900, 0);
        let b = loc(1, 2, 1, 100, 100, 0);
        assert_eq!(compare(&a, &b), Ordering::Less);
    }

    #[test]
    fn monotonic_within_a_boot_then_realtime() {
        let a = loc(1, 5, 7, 100, 900, 0);
        let b = loc(2, 1, 7, 200, 100, 0);
        assert_eq!(compare(&a, &b), Ordering::Less);
        let c = loc(2, 1, 8, 1, 100, 0);
        assert_eq!(compare(&a, &c), Ordering::Greater);
        let d = loc(3, 1, 9, 1, 900, 1);
        assert_eq!(compare(&a, &d), Ordering::Less);
    }

    #[test]
    fn same_entry_in_another_seqnum_space_is_not_beyond() {
        let a = loc(1, 5, 7, 100, 900, 3);
        let copy = loc(2, 1, 7, 100, 900, 3);
        assert_eq!(compare_with_location(&copy, &a), Ordering::Equal);
        assert_eq!(compare(&a, &copy), Ordering::Equal);
        let later = loc(2, 1, 7, 100, 901, 3);
        assert_eq!(compare_with_location(&later, &a), Ordering::Greater);
    }
}
