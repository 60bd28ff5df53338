//! Feeds arbitrary bytes to the journal file reader as a file on disk and
//! reads every entry, alone and merged with itself.
#![no_main]

use jr_journal_file::{Journal, JournalFile, Options};
use libfuzzer_sys::fuzz_target;
use std::io::Write;

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
    let opts = Options {
        max_payload: 1 << 20,
    };
    if let Ok(mut j) = Journal::open_files(vec![path.clone(), path.clone()], opts) {
        for _ in j.by_ref() {}
    }
});
