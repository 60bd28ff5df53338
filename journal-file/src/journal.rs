//! Several journal files read as one journal, in sd-journal's order.
//!
//! Each file keeps one candidate: its next entry. The next entry of the
//! journal is the earliest candidate (see [`crate::order`]); a candidate
//! that does not lie beyond the entry yielded last is skipped, which drops
//! entries that several files hold. Seeking to a cursor places each file at
//! its first entry at or after the cursor, found the way sd-journal finds
//! it (by seqnum in the cursor's seqnum space, else by monotonic time in
//! the cursor's boot, else by realtime); the first entry yielded after a
//! seek is the cursor's own entry when it still exists, and the caller
//! skips it when `Cursor::same_entry` says so.

use crate::discover::journal_files;
use crate::early::{FieldFilter, Filtered};
use crate::error::Error;
use crate::file::JournalFile;
use crate::object::EntryMeta;
use crate::order::{compare, compare_with_location, Loc};
use crate::{Options, ReadStats};
use jr_journal::cursor::Cursor;
use jr_journal::Entry;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// Where the journal stands.
#[derive(Debug, Clone)]
enum Location {
    /// Before the first entry of every file.
    Head,
    /// At a cursor; files have not been placed yet.
    Seek(Cursor),
    /// Just after the entry `Loc`, yielded from file `usize`.
    Discrete(Loc, usize),
}

struct Slot {
    file: JournalFile,
    /// Next index of the file to consider.
    pos: usize,
    /// The file's candidate and its index.
    cand: Option<(usize, EntryMeta)>,
    /// The file has to be placed at the journal's location first.
    place: bool,
    /// Its buffers were given back after it was read to its end.
    released: bool,
}

impl Slot {
    fn new(file: JournalFile) -> Slot {
        Slot {
            file,
            pos: 0,
            cand: None,
            place: false,
            released: false,
        }
    }

    /// Makes the next readable entry from `pos` the candidate.
    fn advance(&mut self) {
        while self.cand.is_none() && self.pos < self.file.len() {
            let i = self.pos;
            self.pos += 1;
            if let Some(m) = self.file.meta_counted(i) {
                self.cand = Some((i, m));
            }
        }
        // An archived file read to its end gets no more entries: its read
        // windows and value cache would only sit there while the journal
        // reads the files after it.
        if self.cand.is_none()
            && !self.released
            && self.file.header().state == crate::header::FileState::Archived
        {
            self.file.release_buffers();
            self.released = true;
        }
    }

    fn place_at(&mut self, c: &Cursor) {
        self.cand = None;
        self.released = false;
        let sid = parse_id(&c.seqnum_id);
        let boot = parse_id(&c.boot_id);
        self.pos = if sid.as_ref() == Some(self.file.seqnum_id()) {
            self.file.partition(|m| m.seqnum < c.seqnum)
        } else {
            match boot.and_then(|b| self.find_monotonic(&b, c.monotonic_usec)) {
                Some(pos) => pos,
                None => self.file.partition(|m| m.realtime < c.realtime_usec),
            }
        };
    }

    /// First entry of boot `boot` at or after `monotonic`; `None` when the
    /// file has no entry of that boot. A boot whose entries all lie before
    /// `monotonic` places the file at its end, as sd-journal does.
    fn find_monotonic(&mut self, boot: &[u8; 16], monotonic: u64) -> Option<usize> {
        let mut seen = false;
        for i in 0..self.file.len() {
            let Some(Ok(m)) = self.file.meta(i) else {
                continue;
            };
            if &m.boot_id == boot {
                seen = true;
                if m.monotonic >= monotonic {
                    return Some(i);
                }
            }
        }
        seen.then_some(self.file.len())
    }
}

fn parse_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

/// What the journal reads from.
#[derive(Debug, Clone)]
enum Sources {
    Directories(Vec<PathBuf>),
    Files,
}

/// A merged view of several journal files.
pub struct Journal {
    sources: Sources,
    opts: Options,
    slots: Vec<Slot>,
    location: Location,
    /// Counts of files closed since, and of the journal's own skips.
    stats: ReadStats,
}

impl Journal {
    /// All journal files of `dir` (and of its machine-id subdirectories).
    pub fn open_directory(dir: impl AsRef<Path>) -> Result<Journal, Error> {
        Self::open_directories(vec![dir.as_ref().to_owned()], Options::default())
    }

    /// All journal files of each directory in `dirs`.
    pub fn open_directories(dirs: Vec<PathBuf>, opts: Options) -> Result<Journal, Error> {
        let mut j = Journal::empty(Sources::Directories(dirs), opts);
        j.scan_dirs(true)?;
        Ok(j)
    }

    /// The local system journal (see [`crate::system_journal_dirs`]).
    pub fn open_system(opts: Options) -> Result<Journal, Error> {
        Self::open_directories(crate::discover::system_journal_dirs(), opts)
    }

    /// Exactly these files. Each must open; a file with unknown
    /// incompatible features gives [`Error::Unsupported`].
    pub fn open_files(files: Vec<PathBuf>, opts: Options) -> Result<Journal, Error> {
        let mut j = Journal::empty(Sources::Files, opts);
        for f in files {
            let file = JournalFile::open_with(&f, &j.opts)?;
            j.slots.push(Slot::new(file));
        }
        Ok(j)
    }

    fn empty(sources: Sources, opts: Options) -> Journal {
        Journal {
            sources,
            opts,
            slots: Vec::new(),
            location: Location::Head,
            stats: ReadStats::default(),
        }
    }

    /// Opens files of the source directories not open yet. A file that uses
    /// unknown features fails the whole journal, so the caller can read it
    /// another way; other unreadable files are skipped and counted (a file
    /// may be half-created or vacuumed while it is listed).
    fn scan_dirs(&mut self, first: bool) -> Result<usize, Error> {
        let Sources::Directories(dirs) = &self.sources else {
            return Ok(0);
        };
        let mut added = 0;
        for dir in dirs.clone() {
            let paths = match journal_files(&dir) {
                Ok(p) => p,
                Err(source) if first => return Err(Error::Io { path: dir, source }),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot list journal directory");
                    continue;
                }
            };
            for p in paths {
                let known = std::fs::metadata(&p).ok().is_some_and(|m| {
                    use std::os::unix::fs::MetadataExt;
                    let id = (m.dev(), m.ino());
                    self.slots.iter().any(|s| s.file.identity() == id)
                });
                if known {
                    continue;
                }
                match JournalFile::open_with(&p, &self.opts) {
                    Ok(f) => {
                        self.slots.push(Slot::new(f));
                        added += 1;
                    }
                    Err(e @ Error::Unsupported { .. }) => return Err(e),
                    Err(e) => {
                        self.stats.bad_files += 1;
                        tracing::warn!(error = %e, "skipping journal file");
                    }
                }
            }
        }
        Ok(added)
    }

    /// The files being read.
    pub fn files(&self) -> impl Iterator<Item = &JournalFile> {
        self.slots.iter().map(|s| &s.file)
    }

    /// Counts over every file read and the journal's own skips.
    pub fn stats(&self) -> ReadStats {
        let mut s = self.stats;
        for slot in &self.slots {
            s.add(&slot.file.stats());
        }
        s
    }

    /// Back to before the first entry.
    pub fn seek_head(&mut self) {
        self.location = Location::Head;
        for s in &mut self.slots {
            s.pos = 0;
            s.cand = None;
            s.place = false;
        }
    }

    /// After the last entry: only entries appended from now on are yielded.
    pub fn seek_tail(&mut self) {
        let mut last: Option<(Loc, usize)> = None;
        for (i, s) in self.slots.iter_mut().enumerate() {
            s.place = false;
            s.cand = None;
            s.pos = s.file.len();
            let mut k = s.file.len();
            while k > 0 {
                k -= 1;
                if let Some(Ok(m)) = s.file.meta(k) {
                    let l = Loc::of(s.file.seqnum_id(), &m);
                    if last.is_none_or(|(b, _)| compare(&l, &b) == Ordering::Greater) {
                        last = Some((l, i));
                    }
                    break;
                }
            }
        }
        self.location = match last {
            Some((l, i)) => Location::Discrete(l, i),
            None => Location::Head,
        };
    }

    /// Positions the journal at `cursor`: the next entry yielded is the
    /// cursor's entry if it still exists, else the first one after it.
    pub fn seek_cursor(&mut self, cursor: &Cursor) {
        self.location = Location::Seek(cursor.clone());
        for s in &mut self.slots {
            s.place = true;
            s.cand = None;
        }
    }

    /// Lists entries appended to open files and opens new files of the
    /// source directories (rotation creates one). Returns whether anything
    /// new was found.
    pub fn refresh(&mut self) -> Result<bool, Error> {
        let mut grew = false;
        let mut i = 0;
        while i < self.slots.len() {
            // A vacuumed file is read to its end, then let go, so that its
            // disk space is freed.
            let s = &self.slots[i];
            if s.file.is_deleted() && !s.place && s.cand.is_none() && s.pos >= s.file.len() {
                tracing::debug!(path = %s.file.path().display(), "closing deleted journal file");
                self.close(i, false);
                continue;
            }
            match self.slots[i].file.refresh() {
                Ok(n) => {
                    grew |= n > 0;
                    i += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "closing journal file that is no longer readable");
                    self.close(i, true);
                }
            }
        }
        grew |= self.scan_dirs(false)? > 0;
        Ok(grew)
    }

    fn close(&mut self, i: usize, damaged: bool) {
        let slot = self.slots.remove(i);
        self.stats.add(&slot.file.stats());
        self.stats.bad_files += u64::from(damaged);
        if let Location::Discrete(l, f) = self.location {
            let f = match f.cmp(&i) {
                Ordering::Greater => f - 1,
                Ordering::Equal => usize::MAX,
                Ordering::Less => f,
            };
            self.location = Location::Discrete(l, f);
        }
    }

    /// The next entry in journal order, or `None` at the end for now (more
    /// may appear after [`Journal::refresh`]).
    pub fn next_entry(&mut self) -> Option<Entry> {
        self.next_with(|file, meta| file.decode(meta))
    }

    /// The next entry in journal order, decoded only as far as `filter`
    /// needs unless it accepts the entry (see [`FieldFilter`]).
    pub fn next_filtered(&mut self, filter: &dyn FieldFilter) -> Option<Filtered> {
        self.next_with(|file, meta| file.decode_filtered(meta, filter))
    }

    fn next_with<T>(
        &mut self,
        mut decode: impl FnMut(&mut JournalFile, &EntryMeta) -> Result<T, Error>,
    ) -> Option<T> {
        loop {
            let (idx, meta) = self.pick()?;
            let slot = &mut self.slots[idx];
            slot.cand = None;
            self.location = Location::Discrete(Loc::of(slot.file.seqnum_id(), &meta), idx);
            match decode(&mut slot.file, &meta) {
                Ok(e) => return Some(e),
                Err(e) => {
                    self.stats.bad_entries += 1;
                    tracing::warn!(error = %e, "skipping a damaged entry");
                }
            }
        }
    }

    /// Chooses the file whose candidate comes next.
    fn pick(&mut self) -> Option<(usize, EntryMeta)> {
        let mut best: Option<(usize, Loc, EntryMeta)> = None;
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.place {
                s.place = false;
                if let Location::Seek(c) = &self.location {
                    s.place_at(c);
                }
            }
            s.advance();
            if let Location::Discrete(l, _) = &self.location {
                while let Some((_, m)) = s.cand {
                    let here = Loc::of(s.file.seqnum_id(), &m);
                    if compare_with_location(&here, l) == Ordering::Greater {
                        break;
                    }
                    self.stats.skipped_duplicates += 1;
                    s.cand = None;
                    s.advance();
                }
            }
            let Some((_, m)) = s.cand else { continue };
            let here = Loc::of(s.file.seqnum_id(), &m);
            if best
                .as_ref()
                .is_none_or(|(_, b, _)| compare(&here, b) == Ordering::Less)
            {
                best = Some((i, here, m));
            }
        }
        best.map(|(i, _, m)| (i, m))
    }
}

impl Iterator for Journal {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        self.next_entry()
    }
}
