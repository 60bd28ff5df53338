//! The lines `jr-server` prints for a person watching it: where it
//! listens at start, and every 10 s how many entries it has stored when
//! that number changed.

use crate::db::writer::Stats;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Time between progress lines.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Writes one line for the operator to stderr. Unlike `eprintln!` it
/// never panics: a closed stderr must not take a task down with it.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The start-up line.
pub fn listening(addr: SocketAddr, db: &Path, stats: &Stats) {
    say(format_args!(
        "jr-server listening on {addr} (database {}, {} entries stored)",
        db.display(),
        stats.stored.load(Ordering::Relaxed)
    ));
}

/// Prints a progress line every [`INTERVAL`] in which entries arrived,
/// until `shutdown`.
pub async fn report(stats: Arc<Stats>, shutdown: CancellationToken) {
    let mut last = stats.stored.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = stats.stored.load(Ordering::Relaxed);
        if now != last {
            say(format_args!(
                "stored {now} entries (+{} in the last {}s)",
                now - last,
                INTERVAL.as_secs()
            ));
            last = now;
        }
    }
}
