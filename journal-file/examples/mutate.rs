//! A fuzzer that needs no libFuzzer: mutates fixture journal files (bit
//! flips, truncation, interesting values written over aligned words) and
//! reads each mutant completely, for a given number of seconds. A panic
//! aborts with the mutant left at `$TMPDIR/jr-mutate-<pid>/mutant.journal`.
//!
//! `cargo run --release -p jr-journal-file --example mutate -- SECONDS FIXTURE.journal...`

use jr_journal_file::{Journal, JournalFile, Options};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u64; 8] = [0, 1, 7, 8, 0xffff_ffff, u64::MAX, 1 << 40, 272];

fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(6) {
        match rng.below(4) {
            0 => {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(b.len() / 8) * 8;
                let v = INTERESTING[rng.below(INTERESTING.len())];
                if at + 8 <= b.len() {
                    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            2 => {
                let at = rng.below(b.len() / 8) * 8;
                let v = rng.below(b.len()) as u64;
                if at + 8 <= b.len() {
                    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            _ => {
                let keep = rng.below(b.len());
                b.truncate(keep.max(1));
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().ok_or("SECONDS missing")?.parse()?;
    let fixtures: Vec<Vec<u8>> = args.map(std::fs::read).collect::<Result<_, _>>()?;
    if fixtures.is_empty() {
        return Err("no fixture files given".into());
    }
    let dir = std::env::temp_dir().join(format!("jr-mutate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path: PathBuf = dir.join("mutant.journal");
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ u64::from(std::process::id()));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut runs, mut entries, mut damaged) = (0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        let mut b = fixtures[rng.below(fixtures.len())].clone();
        mutate(&mut rng, &mut b);
        std::fs::write(&path, &b)?;
        if let Ok(mut f) = JournalFile::open(&path) {
            entries += f.entries().count() as u64;
            damaged += f.stats().damaged();
        }
        let opts = Options {
            max_payload: 16 << 20,
            ..Options::default()
        };
        if let Ok(mut j) = Journal::open_files(vec![path.clone(), path.clone()], opts) {
            entries += j.by_ref().count() as u64;
        }
        runs += 1;
    }
    std::fs::remove_dir_all(&dir)?;
    println!("{runs} mutants read, {entries} entries, {damaged} damaged objects counted, no panic");
    Ok(())
}
