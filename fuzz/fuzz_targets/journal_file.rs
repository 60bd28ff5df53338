//! Feeds arbitrary bytes to the journal file reader as a file on disk and
//! reads every entry: in file order, merged with itself, and through a
//! filter decided before decoding.
#![no_main]

use jr_journal_file::{Field, FieldFilter, Journal, JournalFile, Options};
use libfuzzer_sys::fuzz_target;
use std::io::Write;

/// Keeps entries whose PRIORITY is at most 4 or that have a long MESSAGE.
struct SomeEntries;

impl FieldFilter for SomeEntries {
    fn needs(&self, name: &str) -> bool {
        matches!(name, "PRIORITY" | "MESSAGE" | "_BOOT_ID")
    }
    fn accepts(&self, fields: &[Field]) -> bool {
        fields.iter().any(|f| {
            (f.name == "PRIORITY" && f.value[..] <= b"4"[..])
                || (f.name == "MESSAGE" && f.value.len() > 100)
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("jr-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input.journal");
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    drop(f);
    if let Ok(mut jf) = JournalFile::open(&path) {
        for _ in jf.entries() {}
        let _ = jf.refresh();
    }
    // Small windows too, so that reads across window edges are exercised.
    let opts = Options {
        max_payload: 1 << 20,
        window_bytes: 4 << 10,
        tail: None,
    };
    if let Ok(mut j) = Journal::open_files(vec![path.clone(), path.clone()], opts.clone()) {
        for _ in j.by_ref() {}
    }
    if let Ok(mut j) = Journal::open_files(vec![path.clone()], opts) {
        while j.next_filtered(&SomeEntries).is_some() {}
    }
});
