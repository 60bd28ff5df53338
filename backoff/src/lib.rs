//! Reconnection delays: exponential, capped, with jitter.
//!
//! Retry `n` (from 0) waits a uniformly random time in
//! `[c / 2, c]` with `c = min(max, base·2ⁿ)`. The delay is never zero, so
//! a dead endpoint is not retried in a busy loop, and it is spread over
//! half its window, so a fleet of agents that lost one server, or many
//! routes to one Logentries endpoint, do not come back in lockstep.
//!
//! The type holds only the bounds; each retry loop keeps its own count of
//! failures and resets it when it made progress.

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
    /// `base` is the ceiling of the first delay, `max` the ceiling of every
    /// delay.
    pub fn new(base: Duration, max: Duration) -> Result<Backoff, BackoffError> {
        if base.is_zero() || base > max {
            return Err(BackoffError { base, max });
        }
        Ok(Backoff { base, max })
    }

    /// The longest delay before retry `attempt`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // 2^31 · base is past any sane max long before; saturate instead.
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry `attempt`; `unit` in `[0, 1]` is the jitter
    /// draw (a parameter so the arithmetic is testable).
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.ceiling(attempt).mul_f64(0.5 + unit / 2.0)
    }

    /// The delay before retry `attempt`, with a random jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn refuses_bad_bounds() {
        assert!(Backoff::new(Duration::ZERO, MS).is_err());
        assert!(Backoff::new(2 * MS, MS).is_err());
        assert!(Backoff::new(MS, MS).is_ok());
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::new(100 * MS, 1_000 * MS).unwrap();
        assert_eq!(b.ceiling(0), 100 * MS);
        assert_eq!(b.ceiling(1), 200 * MS);
        assert_eq!(b.ceiling(3), 800 * MS);
        assert_eq!(b.ceiling(4), 1_000 * MS);
        assert_eq!(b.ceiling(u32::MAX), 1_000 * MS);
    }

    #[test]
    fn jitter_spans_the_upper_half_of_the_window() {
        let b = Backoff::new(100 * MS, 30_000 * MS).unwrap();
        assert_eq!(b.delay_with(3, 0.0), 400 * MS);
        assert_eq!(b.delay_with(3, 1.0), 800 * MS);
        assert_eq!(b.delay_with(99, 1.0), 30_000 * MS);
        assert_eq!(b.delay_with(2, f64::NAN), 200 * MS);
        assert_eq!(b.delay_with(2, -3.0), 200 * MS);
        let delays: Vec<_> = (0..200).map(|_| b.delay(3)).collect();
        assert!(delays.iter().all(|d| (400 * MS..=800 * MS).contains(d)));
        assert!(delays.iter().any(|d| *d < 500 * MS));
        assert!(delays.iter().any(|d| *d > 700 * MS));
    }

    proptest! {
        #[test]
        fn delay_is_positive_and_within_bounds(
            base_ms in 1u64..10_000,
            extra_ms in 0u64..600_000,
            attempt in 0u32..200,
            unit in 0.0f64..=1.0,
        ) {
            let base = Duration::from_millis(base_ms);
            let max = base + Duration::from_millis(extra_ms);
            let b = Backoff::new(base, max).unwrap();
            let d = b.delay_with(attempt, unit);
            prop_assert!(d > Duration::ZERO);
            prop_assert!(d <= b.ceiling(attempt));
            prop_assert!(d >= b.ceiling(attempt) / 2);
            prop_assert!(b.ceiling(attempt) <= max);
            prop_assert!(b.ceiling(attempt) >= b.ceiling(attempt.saturating_sub(1)));
        }
    }
}
