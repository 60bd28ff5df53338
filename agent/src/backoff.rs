//! Reconnect delays: exponential backoff with full jitter.
//!
//! Attempt `n` (0-based) waits a uniformly random time in
//! `[0, min(max, base * 2^n)]`. Full jitter spreads a fleet of agents that
//! lost the same server over the whole window instead of letting them
//! return in lock-step.

use rand::Rng;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BackoffError {
    #[error("backoff base delay must be greater than zero")]
    ZeroBase,
    #[error("backoff maximum {max:?} is below its base {base:?}")]
    MaxBelowBase { base: Duration, max: Duration },
}

/// Backoff state for one reconnecting client.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// `base` is the ceiling of the first delay, `max` the ceiling of every delay.
    pub fn new(base: Duration, max: Duration) -> Result<Self, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if max < base {
            return Err(BackoffError::MaxBelowBase { base, max });
        }
        Ok(Backoff {
            base,
            max,
            attempt: 0,
        })
    }

    /// The upper bound of the delay for attempt `attempt`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // 2^31 * base overflows any sane max long before; saturate instead.
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay for attempt `attempt`, drawn from `rng`.
    pub fn delay_with<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// The next delay; each call doubles the ceiling until `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delay_with(self.attempt, &mut rand::rng());
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Failures since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over after progress was made.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn rejects_bad_bounds() {
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::from_secs(1)).unwrap_err(),
            BackoffError::ZeroBase
        );
        assert!(matches!(
            Backoff::new(Duration::from_secs(2), Duration::from_secs(1)),
            Err(BackoffError::MaxBelowBase { .. })
        ));
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_secs(1));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(60)).unwrap();
        for _ in 0..5 {
            b.next_delay();
        }
        assert_eq!(b.attempts(), 5);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= Duration::from_millis(10));
    }

    #[test]
    fn jitter_spreads_over_the_window() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let delays: Vec<_> = (0..200).map(|_| b.delay_with(3, &mut rng)).collect();
        let ceiling = Duration::from_millis(800);
        assert!(delays.iter().all(|d| *d <= ceiling));
        assert!(delays.iter().any(|d| *d < ceiling / 4));
        assert!(delays.iter().any(|d| *d > ceiling * 3 / 4));
    }

    proptest! {
        #[test]
        fn delay_never_exceeds_ceiling_or_max(
            base_ms in 1u64..10_000,
            extra_ms in 0u64..600_000,
            attempt in 0u32..200,
            seed in any::<u64>(),
        ) {
            let base = Duration::from_millis(base_ms);
            let max = base + Duration::from_millis(extra_ms);
            let b = Backoff::new(base, max).unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = b.delay_with(attempt, &mut rng);
            prop_assert!(d <= b.ceiling(attempt));
            prop_assert!(d <= max);
            prop_assert!(b.ceiling(attempt) >= b.ceiling(attempt.saturating_sub(1)));
        }
    }
}
