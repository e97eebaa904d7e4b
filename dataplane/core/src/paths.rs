//! Path memory: what a subscriber's recent bonded connections learned about its
//! access paths, so that its next connection starts with the ACK hold on.
//!
//! Why (docs/multipath.md, "Path memory"): a CUBIC server ends its slow start by
//! HyStart on the first path's bandwidth-delay product, before the client's second
//! subflow has joined, and then needs seconds of cubic growth to reach the sum of
//! the links. Measured on a server (`nstat TcpExtTCPHystartTrainDetect`): the
//! ACK-train detector fired at 77 segments on DSL 40 Mbit/s 10 ms + LTE 20 Mbit/s
//! 40 ms, where the bond needs ~300. A connection whose server sees the bonded
//! round trip from its first byte keeps growing until the engine's window
//! (`mp_server_window`) limits it. The engine knows that round trip only once the
//! slow subflow has joined; a subscriber's earlier connections know it already.
//! Linux keeps per-destination metrics for the same reason (`tcp_metrics`).
//!
//! Bounded: two generations of at most `capacity / 2` entries each; a full
//! current generation becomes the previous one (the oldest forgotten), so memory
//! is fixed and an insert is O(1).

use core::net::IpAddr;

use hashbrown::HashMap;

use crate::time::Instant;

/// The smallest learned hold worth starting a connection with (below it, the
/// server's own timers dwarf it).
const MIN_SEED_US: u64 = 10_000;

/// What one subscriber's paths looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathProfile {
    /// Minimum RTT of the fastest usable subflow, microseconds.
    pub fast_us: u32,
    /// Minimum RTT of the slowest usable subflow, microseconds.
    pub slow_us: u32,
    /// When it was learned.
    pub at: Instant,
}

impl PathProfile {
    /// The ACK hold for a new connection of this subscriber, from its first byte:
    /// the rule of `Multi::hold_us` (`multipath::hold_for`: 3/4 of the slow
    /// path's round trip, capped at 1.5 × the fast path's while the slow one is
    /// under eight times the fast one, none on close delays); 0 under 10 ms.
    /// Measured on DSL/LTE (20 vs 80 ms round trips, 20 s, warm, session 6): a
    /// 40 ms seed (2 ×) gave CUBIC 0.865 but BBR fell to 0.56–0.68 in three of
    /// seven runs; 30 ms (1.5 ×): BBR 0.828–0.852 in five of five, CUBIC
    /// 0.829–0.846 (0.811–0.817 without a seed). 1 ms vs 50 ms gets 75 ms (CUBIC
    /// 0.90 vs 0.875, BBR unchanged).
    /// `uncapped`: 3/4 of the slow path whatever the fast one, the hold a
    /// seeded connection starts with while its server's growth is tested
    /// (`multipath::GrowthProbe`).
    pub fn seed_hold_us(&self, uncapped: bool) -> u64 {
        let h =
            crate::multipath::hold_for(u64::from(self.fast_us), u64::from(self.slow_us), uncapped);
        if h < MIN_SEED_US { 0 } else { h }
    }
}

impl PathProfile {
    /// How long the SYN-ACK of a new connection of this subscriber is held
    /// when the handshake hold is configured (`EngineConfig::handshake_hold`):
    /// the uncapped ACK hold the connection starts with, so that its server's
    /// handshake RTT is the held round trip its first data will see. Linux
    /// BBR starts its min RTT from the handshake (`bbr_init`: `tcp_min_rtt`)
    /// and keeps it for 10 s; its flight is then 2–2.89 × rate × that RTT,
    /// far under the bond's held flight when the fast path answered the
    /// handshake (docs/multipath.md, "Handshake hold"). Only for paths eight
    /// times apart or more, where the capped hold cannot help such a server
    /// (see `multipath::hold_for`): lab, 30 s, 1 ms vs 50 ms: BBR 0.70 → 0.90
    /// of the link sum, CUBIC 0.912 → 0.905 (medians of three); DSL/LTE (4 ×): BBR
    /// 0.85 → 0.886 but CUBIC 0.90 → 0.82–0.83 in three of four runs (its
    /// HyStart left slow start at ~48 segments on LTE's first RTT samples).
    /// At most 200 ms, well inside the client's SYN timer (1 s) and the
    /// server's SYN-ACK timer.
    pub fn handshake_hold_us(&self) -> u64 {
        if u64::from(self.slow_us) < 8 * u64::from(self.fast_us) {
            return 0;
        }
        self.seed_hold_us(true).min(200_000)
    }
}

/// Per-subscriber path profiles of one shard.
#[derive(Debug)]
pub(crate) struct PathMemory {
    current: HashMap<[u8; 16], PathProfile>,
    previous: HashMap<[u8; 16], PathProfile>,
    /// Entries per generation (0: the memory is off).
    generation: usize,
    ttl_us: u64,
}

/// The subscriber key of a client address: the IPv4 address, or the IPv6 /64
/// (a home gateway's delegated prefix; its address within may change).
fn key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => {
            let mut o = a.octets();
            o[8..].fill(0);
            o
        }
    }
}

impl PathMemory {
    /// At most `capacity` subscribers, each remembered for `ttl_us`.
    pub fn new(capacity: usize, ttl_us: u64) -> Self {
        PathMemory {
            current: HashMap::new(),
            previous: HashMap::new(),
            generation: capacity / 2,
            ttl_us,
        }
    }

    /// Remembers the profile of `client`'s paths.
    pub fn learn(&mut self, client: IpAddr, fast_us: u64, slow_us: u64, now: Instant) {
        if self.generation == 0 || fast_us == 0 || slow_us < fast_us {
            return;
        }
        let k = key(client);
        let p = PathProfile {
            fast_us: fast_us.min(u64::from(u32::MAX)) as u32,
            slow_us: slow_us.min(u64::from(u32::MAX)) as u32,
            at: now,
        };
        if let Some(e) = self.current.get_mut(&k) {
            *e = p;
            return;
        }
        if self.current.len() >= self.generation {
            self.previous = core::mem::take(&mut self.current);
        }
        self.previous.remove(&k);
        self.current.insert(k, p);
    }

    /// The fresh profile of `client`'s paths, if any.
    pub fn recall(&self, client: IpAddr, now: Instant) -> Option<PathProfile> {
        if self.generation == 0 {
            return None;
        }
        let k = key(client);
        self.current
            .get(&k)
            .or_else(|| self.previous.get(&k))
            .filter(|p| now.0.saturating_sub(p.at.0) < self.ttl_us)
            .copied()
    }

    /// Subscribers remembered (both generations).
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_learned_profile_is_recalled_until_it_expires() {
        let mut m = PathMemory::new(8, 600 * SEC);
        m.learn(ip("198.18.1.2"), 20_000, 80_000, Instant(SEC));
        let p = m.recall(ip("198.18.1.2"), Instant(2 * SEC)).unwrap();
        assert_eq!((p.fast_us, p.slow_us), (20_000, 80_000));
        assert_eq!(m.recall(ip("198.18.1.3"), Instant(2 * SEC)), None);
        assert_eq!(m.recall(ip("198.18.1.2"), Instant(601 * SEC)), None);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let mut m = PathMemory::new(8, 600 * SEC);
        m.learn(ip("2001:db8:1:2::5"), 20_000, 80_000, Instant(0));
        assert!(m.recall(ip("2001:db8:1:2:aa::1"), Instant(0)).is_some());
        assert!(m.recall(ip("2001:db8:1:3::5"), Instant(0)).is_none());
    }

    #[test]
    fn memory_is_bounded_and_forgets_the_oldest_generation() {
        let mut m = PathMemory::new(4, 600 * SEC);
        for i in 0..100u8 {
            m.learn(IpAddr::from([198, 18, 0, i]), 20_000, 80_000, Instant(0));
            assert!(m.len() <= 4, "{} entries", m.len());
        }
        // The latest ones are there, the first ones forgotten.
        assert!(
            m.recall(IpAddr::from([198, 18, 0, 99]), Instant(0))
                .is_some()
        );
        assert!(
            m.recall(IpAddr::from([198, 18, 0, 0]), Instant(0))
                .is_none()
        );
        // An update of a known subscriber does not evict anyone.
        let before = m.len();
        m.learn(IpAddr::from([198, 18, 0, 99]), 10_000, 90_000, Instant(1));
        assert_eq!(m.len(), before);
    }

    #[test]
    fn capacity_zero_turns_it_off() {
        let mut m = PathMemory::new(0, 600 * SEC);
        m.learn(ip("198.18.1.2"), 20_000, 80_000, Instant(0));
        assert_eq!(m.recall(ip("198.18.1.2"), Instant(0)), None);
    }

    #[test]
    fn the_seed_is_capped_unless_the_paths_are_eight_times_apart() {
        let p = |fast_us, slow_us| PathProfile {
            fast_us,
            slow_us,
            at: Instant(0),
        };
        // 2 ms vs 100 ms: 3/4 of 100 ms.
        assert_eq!(p(2_000, 100_000).seed_hold_us(false), 75_000);
        assert_eq!(p(10_000, 80_000).seed_hold_us(false), 60_000);
        // DSL 20 ms + LTE 80 ms round trips: 1.5 × 20 ms.
        assert_eq!(p(20_000, 80_000).seed_hold_us(false), 30_000);
        assert_eq!(p(12_000, 95_000).seed_hold_us(false), 18_000);
        // Close delays: none.
        assert_eq!(p(20_000, 40_000).seed_hold_us(false), 0);
        // Under 10 ms: not worth it.
        assert_eq!(p(4_000, 30_000).seed_hold_us(false), 0);
        // Uncapped.
        assert_eq!(p(20_000, 80_000).seed_hold_us(true), 60_000);
        assert_eq!(p(2_000, 100_000).seed_hold_us(true), 75_000);
        assert_eq!(p(20_000, 40_000).seed_hold_us(true), 0);
    }
}
