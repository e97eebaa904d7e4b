//! A hashed timing wheel with lazy cancellation: O(1) to arm, O(1) to cancel (bump a
//! generation), O(expired + stale) to advance. Connections never re-arm per packet:
//! they record their last activity and the wheel entry, when it fires, checks whether
//! the deadline really passed and re-arms otherwise (RFC 7857 §2.1/§3.1 idle timers at
//! no per-packet cost).

use crate::time::Instant;

/// What the wheel hands back when an entry fires: the key and the generation it was
/// armed with (compare with the owner's current generation to drop stale entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Owner key (a connection slot).
    pub key: u32,
    /// Generation recorded when armed.
    pub generation: u32,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u32,
    generation: u32,
    deadline: u64,
}

/// The wheel. `tick_us` is the granularity; deadlines are rounded up to a tick.
#[derive(Debug)]
pub struct TimerWheel {
    slots: Vec<Vec<Entry>>,
    tick_us: u64,
    /// The tick index that `advance` has processed up to (exclusive).
    current: u64,
    len: usize,
}

impl TimerWheel {
    /// A wheel of `slots` slots (a power of two) of `tick_us` microseconds each.
    #[must_use]
    pub fn new(slots: usize, tick_us: u64, now: Instant) -> Self {
        let slots = slots.next_power_of_two().max(1);
        TimerWheel {
            slots: (0..slots).map(|_| Vec::new()).collect(),
            tick_us: tick_us.max(1),
            current: now.0 / tick_us.max(1),
            len: 0,
        }
    }

    /// Entries armed and not yet fired (stale ones included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is armed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Arms `key` to fire at `deadline` (never earlier than the next tick).
    pub fn arm(&mut self, key: u32, generation: u32, deadline: Instant) {
        let tick = deadline.0.div_ceil(self.tick_us).max(self.current);
        let mask = self.slots.len() as u64 - 1;
        self.slots[(tick & mask) as usize].push(Entry {
            key,
            generation,
            deadline: tick,
        });
        self.len += 1;
    }

    /// The earliest time at which `advance` may have something to do, if anything is
    /// armed: the next tick boundary (cheap upper bound for `poll_timeout`).
    #[must_use]
    pub fn next_tick(&self) -> Option<Instant> {
        if self.len == 0 {
            None
        } else {
            Some(Instant(self.current * self.tick_us))
        }
    }

    /// Fires every entry whose deadline is ≤ `now`, calling `f` for each. Entries of
    /// later rounds that share a slot stay where they are.
    pub fn advance(&mut self, now: Instant, mut f: impl FnMut(Fired)) {
        let target = now.0 / self.tick_us;
        let mask = self.slots.len() as u64 - 1;
        // Never walk more than one full rotation per call: after that every slot has
        // been visited once and all due entries seen.
        let last = target.min(self.current + mask);
        while self.current <= last {
            let slot = &mut self.slots[(self.current & mask) as usize];
            let mut i = 0;
            while i < slot.len() {
                if slot[i].deadline <= target {
                    let e = slot.swap_remove(i);
                    self.len -= 1;
                    f(Fired {
                        key: e.key,
                        generation: e.generation,
                    });
                } else {
                    i += 1;
                }
            }
            self.current += 1;
        }
        self.current = self.current.max(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_order_of_ticks_and_not_early() {
        let mut w = TimerWheel::new(8, 1000, Instant(0));
        w.arm(1, 0, Instant(2_500));
        w.arm(2, 0, Instant(20_000)); // several rotations away
        let mut got = Vec::new();
        w.advance(Instant(2_000), |f| got.push(f.key));
        assert!(got.is_empty());
        w.advance(Instant(3_000), |f| got.push(f.key));
        assert_eq!(got, vec![1]);
        w.advance(Instant(19_999), |f| got.push(f.key));
        assert_eq!(got, vec![1]);
        w.advance(Instant(20_000), |f| got.push(f.key));
        assert_eq!(got, vec![1, 2]);
        assert!(w.is_empty());
    }

    #[test]
    fn long_jump_fires_everything_due() {
        let mut w = TimerWheel::new(4, 10, Instant(0));
        for k in 0..100 {
            w.arm(k, 7, Instant(u64::from(k) * 13));
        }
        let mut n = 0;
        w.advance(Instant(1_000_000), |f| {
            assert_eq!(f.generation, 7);
            n += 1;
        });
        assert_eq!(n, 100);
    }
}
