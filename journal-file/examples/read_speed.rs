//! Reads every entry of a journal directory (or files) with every field
//! decoded, and prints the rate on one core:
//! `cargo run --release -p jr-journal-file --example read_speed -- DIR|FILE...`

use jr_journal_file::{Journal, Options};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let start = Instant::now();
    let mut j = match args.as_slice() {
        [dir] if dir.is_dir() => Journal::open_directory(dir)?,
        files => Journal::open_files(files.to_vec(), Options::default())?,
    };
    let (mut n, mut fields, mut bytes) = (0u64, 0u64, 0u64);
    for e in &mut j {
        n += 1;
        fields += e.fields.len() as u64;
        bytes += e.fields.iter().map(|f| f.value.len() as u64).sum::<u64>();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} entries, {fields} fields, {bytes} value bytes in {secs:.3} s: {:.0} entries/s; {:?}",
        n as f64 / secs,
        j.stats()
    );
    Ok(())
}
