//! A native reader of systemd journal files.
//!
//! It reads journal files directly, per systemd's description of the
//! journal file format, and yields exactly what `journalctl -o export --all`
//! yields for the same files: the same entries in the same order, the same
//! fields byte for byte in the same order, and the same cursors. It never
//! maps a file into memory: every read is a positioned read into an owned
//! buffer, checked against the file's size, so a file that is truncated,
//! replaced or damaged while it is read costs a counted skip, not the
//! process.
//!
//! - [`JournalFile`] reads one file in file order.
//! - [`Journal`] merges the files of a directory (or a list of files) in
//!   sd-journal's order, drops entries that several files share, seeks to a
//!   cursor and picks up appended entries, new files and rotation on
//!   [`Journal::refresh`].
//! - [`Journal::next_filtered`] decodes only the fields a [`FieldFilter`]
//!   looks at, and the rest only for the entries it keeps.
//! - [`Error::Unsupported`] tells a caller that a file uses incompatible
//!   features this reader does not know, so it can read it through
//!   journalctl instead.
//!
//! Hash tables and field objects are not read: iteration follows the entry
//! array chain, and seeking bisects it, which needs no hashing.

mod decompress;
mod discover;
mod early;
mod error;
mod file;
pub mod header;
mod journal;
mod object;
mod order;
mod source;

pub use discover::{journal_files, system_journal_dirs, SYSTEM_JOURNAL_ROOTS};
pub use early::{FieldFilter, Filtered};
pub use error::Error;
pub use file::{FileEntries, JournalFile};
pub use header::{FileState, Header};
pub use journal::Journal;
pub use jr_journal::{Entry, Field};
pub use object::EntryMeta;

/// Limits applied while reading.
#[derive(Debug, Clone)]
pub struct Options {
    /// The largest data payload (after decompression) accepted; larger ones
    /// are treated as damage. journald itself stores nothing above 768 MiB.
    pub max_payload: usize,
    /// Bytes each of a file's read windows reads at least: large for
    /// reading entries in order, small for a reader that only looks at
    /// the newest entry.
    pub window_bytes: usize,
    /// Keep the offsets of only the newest this many entries of a file
    /// (older ones read as absent): for a reader of the newest entry,
    /// whose memory then does not grow with the file.
    pub tail: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_payload: 768 << 20,
            window_bytes: source::WINDOW,
            tail: None,
        }
    }
}

/// Counts of what was read and what was skipped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    /// Entries decoded.
    pub entries: u64,
    /// Entry objects skipped as damaged.
    pub bad_entries: u64,
    /// Data items left out of their entry as damaged.
    pub bad_items: u64,
    /// Entry array chains that ended early because they were damaged.
    pub bad_arrays: u64,
    /// Entries not yielded because another file already yielded them, or
    /// because they sort before what was already yielded.
    pub skipped_duplicates: u64,
    /// Files that could not be opened or stopped being readable.
    pub bad_files: u64,
}

impl ReadStats {
    pub(crate) fn add(&mut self, o: &ReadStats) {
        self.entries += o.entries;
        self.bad_entries += o.bad_entries;
        self.bad_items += o.bad_items;
        self.bad_arrays += o.bad_arrays;
        self.skipped_duplicates += o.skipped_duplicates;
        self.bad_files += o.bad_files;
    }

    /// Everything that was damaged, in one number.
    pub fn damaged(&self) -> u64 {
        self.bad_entries + self.bad_items + self.bad_arrays + self.bad_files
    }
}
