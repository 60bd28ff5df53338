//! Rate-limited reporting of failed sessions, so that an agent whose
//! server is down does not flood the journal it reads with its own
//! retries.
//!
//! The first failure is logged at WARN; after that at most one WARN line
//! per [`WARN_EVERY`], carrying the number of failures since the outage
//! began and how many were not logged since the previous line (those go to
//! DEBUG). When a session is established again after a warning, one INFO
//! line says so. A flapping server therefore costs at most two lines a
//! minute, however short the backoff.

use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// Repeated failures are logged at WARN at most this often.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// What to do with one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log at WARN; `suppressed` failures were not logged since the last
    /// warning.
    Warn { failures: u64, suppressed: u64 },
    /// Log at DEBUG only.
    Quiet { failures: u64 },
}

/// The state of an outage, across sessions.
#[derive(Debug, Default)]
pub struct OutageLog {
    /// Failed sessions since a batch was last acknowledged.
    failures: u64,
    /// Failures logged at DEBUG only since the last WARN line.
    suppressed: u64,
    /// Kept across recoveries, so that a flapping server still gets one
    /// WARN line a minute at most.
    last_warn: Option<Instant>,
    /// A WARN line was logged that no "connected again" line answered yet.
    warned: bool,
}

impl OutageLog {
    /// Failed sessions since a batch was last acknowledged.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Whether the next established session deserves an INFO line.
    pub fn announce_connect(&self) -> bool {
        self.warned
    }

    /// Counts one failure at `now` and decides how loudly to report it.
    pub fn verdict(&mut self, now: Instant) -> Verdict {
        self.failures += 1;
        let due = self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY);
        if due {
            self.last_warn = Some(now);
            self.warned = true;
            let suppressed = std::mem::take(&mut self.suppressed);
            Verdict::Warn {
                failures: self.failures,
                suppressed,
            }
        } else {
            self.suppressed += 1;
            Verdict::Quiet {
                failures: self.failures,
            }
        }
    }

    /// Reports a failed session whose successor starts in `retry_in`.
    pub fn failed(&mut self, server: &str, err: &dyn fmt::Display, retry_in: Duration) {
        match self.verdict(Instant::now()) {
            Verdict::Warn {
                failures,
                suppressed,
            } => tracing::warn!(
                %server,
                error = %err,
                failures,
                not_logged = suppressed,
                retry_in = ?retry_in,
                "cannot ship to the server; retrying (nothing is lost: the journal keeps the \
                 entries; repeats are logged at most once a minute)"
            ),
            Verdict::Quiet { failures } => {
                tracing::debug!(%server, error = %err, failures, retry_in = ?retry_in, "session failed")
            }
        }
    }

    /// A session was established; the INFO line was logged if
    /// [`OutageLog::announce_connect`] asked for it.
    pub fn connected(&mut self) {
        self.warned = false;
    }

    /// A batch was acknowledged: the outage is over.
    pub fn progressed(&mut self) {
        self.failures = 0;
        self.suppressed = 0;
        self.warned = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_a_minute_with_the_count_of_the_rest() {
        let t0 = Instant::now();
        let mut o = OutageLog::default();
        assert_eq!(
            o.verdict(t0),
            Verdict::Warn {
                failures: 1,
                suppressed: 0
            }
        );
        assert!(o.announce_connect());
        for i in 1..=10u64 {
            let v = o.verdict(t0 + Duration::from_secs(5 * i));
            assert_eq!(v, Verdict::Quiet { failures: 1 + i });
        }
        assert_eq!(
            o.verdict(t0 + WARN_EVERY),
            Verdict::Warn {
                failures: 12,
                suppressed: 10
            }
        );
    }

    #[test]
    fn reconnects_are_announced_once_per_warning() {
        let t0 = Instant::now();
        let mut o = OutageLog::default();
        o.verdict(t0);
        assert!(o.announce_connect());
        o.connected();
        assert!(!o.announce_connect());
        // The server accepts and fails again at once: quiet, no new line.
        assert!(matches!(
            o.verdict(t0 + Duration::from_secs(1)),
            Verdict::Quiet { .. }
        ));
        assert!(!o.announce_connect());
        o.progressed();
        assert_eq!(o.failures(), 0);
        // A new outage within the minute stays quiet: flapping is bounded.
        assert!(matches!(
            o.verdict(t0 + Duration::from_secs(2)),
            Verdict::Quiet { failures: 1 }
        ));
        assert!(matches!(
            o.verdict(t0 + WARN_EVERY + Duration::from_secs(1)),
            Verdict::Warn { failures: 2, .. }
        ));
    }
}
