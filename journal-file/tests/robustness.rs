//! Damaged, truncated and replaced files: the reader never panics or
//! hangs, reads the entries that are intact and counts what it skipped.

mod common;

use common::*;
use jr_journal::Entry;
use jr_journal_file::{Journal, JournalFile};
use std::collections::HashMap;
use std::path::Path;

fn fixture(dir: &Path, name: &str, layout: Layout, n: usize) -> (std::path::PathBuf, Vec<Entry>) {
    let path = dir.join(name);
    journal_remote(
        &export_for_host(name, n, 1_700_000_000_000_000, 11),
        &path,
        layout,
    );
    let all: Vec<Entry> = JournalFile::open(&path).unwrap().entries().collect();
    assert_eq!(all.len(), n);
    (path, all)
}

/// Every entry read from a damaged copy is one of the original entries,
/// with at most some of its fields left out.
fn assert_from_original(got: &[Entry], by_cursor: &HashMap<&str, &Entry>, what: &str) {
    for e in got {
        let Some(orig) = by_cursor.get(e.cursor.as_str()) else {
            // A flipped byte may change an entry's own header; it must
            // still look like an entry, never like garbage we invented.
            assert!(!e.fields.is_empty(), "{what}: entry without fields");
            continue;
        };
        let mut it = orig.fields.iter();
        for f in &e.fields {
            assert!(
                it.any(|o| o == f),
                "{what}: field {} not in the original entry",
                f.name_str()
            );
        }
    }
}

#[test]
fn truncated_at_many_offsets() {
    let d = tempfile::tempdir().unwrap();
    for layout in [Layout::all()[0], Layout::all()[7]] {
        let (path, all) = fixture(d.path(), "cut.journal", layout, 60);
        let by_cursor: HashMap<&str, &Entry> = all.iter().map(|e| (e.cursor.as_str(), e)).collect();
        let bytes = std::fs::read(&path).unwrap();
        let cut_path = d.path().join("cut-copy.journal");
        let mut cuts: Vec<usize> = (0..300).collect();
        cuts.extend((bytes.len() / 2..bytes.len()).step_by(bytes.len() / 300));
        for cut in cuts {
            std::fs::write(&cut_path, &bytes[..cut]).unwrap();
            let Ok(mut f) = JournalFile::open(&cut_path) else {
                assert!(cut < 272, "a header-complete file opens (cut at {cut})");
                continue;
            };
            let got: Vec<Entry> = f.entries().collect();
            assert_from_original(&got, &by_cursor, &format!("cut at {cut}"));
            if cut > bytes.len() * 3 / 4 {
                assert!(!got.is_empty(), "entries before a cut at {cut} still read");
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn random_byte_flips() {
    let d = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(99);
    for layout in [Layout::all()[2], Layout::all()[5]] {
        let (path, all) = fixture(d.path(), "flip.journal", layout, 40);
        let by_cursor: HashMap<&str, &Entry> = all.iter().map(|e| (e.cursor.as_str(), e)).collect();
        let bytes = std::fs::read(&path).unwrap();
        let bad_path = d.path().join("flipped.journal");
        let (mut damaged_total, mut intact, mut opened) = (0, 0, 0);
        for round in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(b.len() as u64) as usize;
                b[at] ^= 1 << rng.below(8);
            }
            std::fs::write(&bad_path, &b).unwrap();
            if let Ok(mut f) = JournalFile::open(&bad_path) {
                let got: Vec<Entry> = f.entries().collect();
                // Payload bytes carry no checksum the reader verifies, so a
                // flipped value reads as flipped; structure must hold.
                assert!(got.len() <= all.len(), "round {round}");
                intact += got
                    .iter()
                    .filter(|e| by_cursor.get(e.cursor.as_str()) == Some(e))
                    .count();
                damaged_total += f.stats().damaged();
                opened += 1;
            }
        }
        // Flips of the structure itself are counted: an entry offset
        // that points into the middle of an object.
        let first_array = JournalFile::open(&path)
            .unwrap()
            .header()
            .entry_array_offset as usize;
        let mut b = bytes.clone();
        b[first_array + 24] ^= 0x08;
        std::fs::write(&bad_path, &b).unwrap();
        let mut f = JournalFile::open(&bad_path).unwrap();
        assert_eq!(f.entries().count(), all.len() - 1);
        assert_eq!(f.stats().bad_entries, 1);
        damaged_total += f.stats().damaged();
        assert!(damaged_total > 0, "flips were noticed and counted");
        assert!(
            intact * 2 > opened * all.len(),
            "most entries survive a few flips"
        );
        std::fs::remove_file(&path).unwrap();
    }
}

/// A file truncated under an open reader: no SIGBUS, no panic, the rest
/// of the file is skipped and counted.
#[test]
fn file_truncated_while_open() {
    let d = tempfile::tempdir().unwrap();
    let (path, all) = fixture(d.path(), "live.journal", Layout::all()[7], 80);
    let mut f = JournalFile::open(&path).unwrap();
    let first: Vec<Entry> = f.entries().take(10).collect();
    assert_eq!(first[..], all[..10]);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    // The reader notices the new size on refresh and keeps working.
    assert_eq!(f.refresh().unwrap(), 0);
    let rest: Vec<Entry> = f.entries().skip(10).collect();
    assert!(
        rest.len() < all.len() - 10,
        "{} entries after the cut",
        rest.len()
    );
    assert_eq!(
        rest[..],
        all[10..10 + rest.len()],
        "entries before the cut are intact"
    );
    assert!(f.stats().damaged() > 0, "{:?}", f.stats());
}

/// A file replaced under an open journal: the reader keeps the old file's
/// entries (it holds the old inode) and picks up the new file on refresh.
#[test]
fn file_replaced_while_open() {
    let d = tempfile::tempdir().unwrap();
    let (path, all) = fixture(d.path(), "node.journal", Layout::all()[6], 50);
    let mut j = Journal::open_directory(d.path()).unwrap();
    let mut got: Vec<Entry> = j.by_ref().take(20).collect();
    let staged = tempfile::tempdir().unwrap();
    let newer = staged.path().join("node.journal");
    journal_remote(
        &export_for_host("other", 30, 1_800_000_000_000_000, 5),
        &newer,
        Layout::all()[1],
    );
    std::fs::copy(&newer, d.path().join(".tmp-node")).unwrap();
    std::fs::rename(d.path().join(".tmp-node"), &path).unwrap();
    got.extend(j.by_ref());
    assert_eq!(got, all, "the old file reads to its end");
    assert!(j.refresh().unwrap(), "the replacement is found");
    let more: Vec<Entry> = j.by_ref().collect();
    assert_eq!(more.len(), 30);
    assert_eq!(j.stats().damaged(), 0);
}

/// A file deleted (vacuumed) while it is read: its entries still read to
/// the end through the open descriptor, then a refresh lets it go so that
/// its disk space is freed; nothing is counted as damage.
#[test]
fn file_deleted_while_open_reads_to_its_end_then_closes() {
    let d = tempfile::tempdir().unwrap();
    let (old, old_entries) = fixture(d.path(), "old.journal", Layout::all()[7], 40);
    let newer = d.path().join("newer.journal");
    journal_remote(
        &export_for_host("newer", 20, 1_800_000_000_000_000, 6),
        &newer,
        Layout::all()[0],
    );
    let mut j = Journal::open_directory(d.path()).unwrap();
    let mut got: Vec<Entry> = j.by_ref().take(10).collect();
    std::fs::remove_file(&old).unwrap();
    assert!(!j.refresh().unwrap(), "nothing new");
    assert_eq!(j.files().count(), 2, "a half-read deleted file stays open");
    got.extend(j.by_ref());
    assert_eq!(got.len(), 60);
    assert_eq!(
        got[..40],
        old_entries[..],
        "the deleted file read to its end"
    );
    assert!(j.files().any(|f| f.is_deleted()));
    j.refresh().unwrap();
    assert_eq!(j.files().count(), 1, "the deleted file is closed");
    assert!(!j.files().any(|f| f.is_deleted()));
    assert_eq!(j.stats().damaged(), 0, "{:?}", j.stats());
    assert_eq!(j.next_entry(), None, "nothing read twice");
}
