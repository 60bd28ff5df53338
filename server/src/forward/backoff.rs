//! Reconnection delays: exponential with full jitter, capped.
//!
//! Attempt `n` (from 0) waits a uniformly random time in
//! `[base·2ⁿ / 2, base·2ⁿ]`, capped at `max`: never zero (no busy loop on a
//! dead endpoint) and spread so that many routes to one endpoint do not
//! reconnect in lockstep.

use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("backoff: base ({base:?}) must be positive and at most max ({max:?})")]
pub struct BackoffError {
    base: Duration,
    max: Duration,
}

/// Exponential backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Result<Backoff, BackoffError> {
        if base.is_zero() || base > max {
            return Err(BackoffError { base, max });
        }
        Ok(Backoff { base, max })
    }

    /// The delay before retry `attempt`; `unit` in `[0, 1)` is the jitter
    /// draw (a parameter so the arithmetic is testable).
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        ceiling.mul_f64(0.5 + unit / 2.0)
    }

    /// The delay before retry `attempt` with a random jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn refuses_bad_bounds() {
        assert!(Backoff::new(Duration::ZERO, MS).is_err());
        assert!(Backoff::new(2 * MS, MS).is_err());
    }

    #[test]
    fn grows_then_caps_and_stays_in_jitter_band() {
        let b = Backoff::new(100 * MS, 30_000 * MS).unwrap();
        let mut last_ceiling = Duration::ZERO;
        for attempt in 0..100 {
            let lo = b.delay_with(attempt, 0.0);
            let hi = b.delay_with(attempt, 1.0);
            assert!(
                lo > Duration::ZERO && lo <= hi && hi <= 30_000 * MS,
                "{attempt}"
            );
            assert_eq!(lo * 2, hi);
            assert!(hi >= last_ceiling);
            last_ceiling = hi;
            for _ in 0..20 {
                let d = b.delay(attempt);
                assert!(d >= lo && d <= hi, "{attempt}: {d:?}");
            }
        }
        assert_eq!(b.delay_with(0, 1.0), 100 * MS);
        assert_eq!(b.delay_with(3, 1.0), 800 * MS);
        assert_eq!(b.delay_with(99, 1.0), 30_000 * MS);
        assert_eq!(b.delay_with(2, f64::NAN), 200 * MS);
    }
}
