//! Engine time: a monotonic microsecond count supplied by the caller. The engine
//! never reads a clock (sans-IO); the DPDK runtime passes TSC-derived time and the
//! simulator passes simulated time.

use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time, in microseconds since an arbitrary epoch chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(0);

    /// Microseconds since the epoch.
    #[must_use]
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Milliseconds since the epoch (the engine's TCP timestamp clock, RFC 7323 §5.4).
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0 / 1000
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    #[must_use]
    pub const fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

/// A token bucket of events per second with a burst of one second's worth,
/// in thousandths of an event; full when first used.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokenBucket {
    tokens_milli: u64,
    filled_at: Instant,
    init: bool,
}

impl TokenBucket {
    /// When it was last used, if ever.
    pub(crate) fn last_use(&self) -> Option<Instant> {
        self.init.then_some(self.filled_at)
    }

    /// One event at `now` under `per_second` (> 0): allowed (and counted) or not.
    pub(crate) fn take(&mut self, now: Instant, per_second: u64) -> bool {
        let cap = per_second * 1000;
        if self.init {
            let us = now.saturating_since(self.filled_at).as_micros() as u64;
            self.tokens_milli = cap.min(
                self.tokens_milli
                    .saturating_add(us.saturating_mul(per_second) / 1000),
            );
        } else {
            self.init = true;
            self.tokens_milli = cap;
        }
        self.filled_at = now;
        if self.tokens_milli < 1000 {
            return false;
        }
        self.tokens_milli -= 1000;
        true
    }
}
