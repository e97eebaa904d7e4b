//! External address pools with per-shard port blocks (address-sharing mode,
//! RFC 8803 §4.4; RFC 6888 CGN requirements).
//!
//! * **Paired pooling** (RFC 6888 REQ-2, RFC 4787 §4.1): every connection of one
//!   subscriber uses the same external address of a family. The address is a pure
//!   function of the subscriber address (a keyed hash over the pool), so every shard
//!   agrees without coordination (deterministic CGN in the spirit of RFC 7422).
//! * **Port blocks per shard**: the port range is cut into blocks of `block_size`
//!   ports; block `b` belongs to shard `b mod shards`. Return traffic from a server is
//!   owned by the shard that owns its destination port — computable from the packet.
//! * **Hold-down** (RFC 6888 REQ-8): a released port is not handed out again before
//!   `hold_down` has elapsed (default 120 s); released ports queue FIFO.
//! * Existing bindings are never evicted to make room (RFC 6888 REQ-11): when a shard
//!   has no free port on the subscriber's address the allocation fails.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::time::Duration;
use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::time::Instant;

/// A pool prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

impl Prefix {
    /// Number of addresses in the prefix, capped at 2^16 (more is never needed for a
    /// pool and keeps the arithmetic in `u32`).
    #[must_use]
    pub fn size(&self) -> u32 {
        let bits = match self.addr {
            IpAddr::V4(_) => 32u32,
            IpAddr::V6(_) => 128,
        };
        let host = bits.saturating_sub(u32::from(self.len)).min(16);
        1 << host
    }

    /// The `i`-th address of the prefix.
    #[must_use]
    pub fn nth(&self, i: u32) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.len.min(32)))
                };
                IpAddr::V4(Ipv4Addr::from_bits((a.to_bits() & mask) | i))
            }
            IpAddr::V6(a) => {
                let l = u32::from(self.len.min(128));
                let mask = if l == 0 { 0 } else { u128::MAX << (128 - l) };
                IpAddr::V6(Ipv6Addr::from_bits((a.to_bits() & mask) | u128::from(i)))
            }
        }
    }

    /// True when `ip` lies inside the prefix.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let l = u32::from(self.len.min(32));
                let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                a.to_bits() & mask == b.to_bits() & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let l = u32::from(self.len.min(128));
                let mask = if l == 0 { 0 } else { u128::MAX << (128 - l) };
                a.to_bits() & mask == b.to_bits() & mask
            }
            _ => false,
        }
    }
}

/// Pool configuration shared by all shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// IPv4 and IPv6 prefixes (addresses used in order of the list).
    pub prefixes: Vec<Prefix>,
    /// First port of the range (inclusive).
    pub port_lo: u16,
    /// Last port of the range (inclusive).
    pub port_hi: u16,
    /// Ports per block (the unit of shard ownership and of RFC 6888 §4 logging).
    pub block_size: u16,
    /// Minimum time before a released port is reused (RFC 6888 REQ-8: 120 s).
    pub hold_down: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            prefixes: Vec::new(),
            port_lo: 1024,
            port_hi: 65535,
            block_size: 256,
            hold_down: Duration::from_secs(120),
        }
    }
}

impl PoolConfig {
    /// Which shard owns external port `port` (None outside the range).
    #[must_use]
    pub fn port_owner(&self, port: u16, shards: u16) -> Option<u16> {
        if port < self.port_lo || port > self.port_hi || shards == 0 {
            return None;
        }
        let block = u32::from(port - self.port_lo) / u32::from(self.block_size.max(1));
        Some((block % u32::from(shards)) as u16)
    }

    /// True when `ip` is one of the pool's addresses.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.prefixes.iter().any(|p| p.contains(ip))
    }

    /// The paired external address of `subscriber` for the family of `family`
    /// (RFC 6888 REQ-2), or None when the pool has no address of that family.
    #[must_use]
    pub fn paired_address(&self, subscriber: IpAddr, v6: bool) -> Option<IpAddr> {
        let total: u64 = self
            .prefixes
            .iter()
            .filter(|p| p.addr.is_ipv6() == v6)
            .map(|p| u64::from(p.size()))
            .sum();
        if total == 0 {
            return None;
        }
        let mut i = subscriber_hash(subscriber) % total;
        for p in self.prefixes.iter().filter(|p| p.addr.is_ipv6() == v6) {
            let n = u64::from(p.size());
            if i < n {
                return Some(p.nth(i as u32));
            }
            i -= n;
        }
        None
    }
}

/// A stable 64-bit mix of an address (SplitMix64 finaliser over the folded bits).
fn subscriber_hash(ip: IpAddr) -> u64 {
    let x = match ip {
        IpAddr::V4(a) => u64::from(a.to_bits()),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            (b as u64) ^ ((b >> 64) as u64).rotate_left(17)
        }
    };
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Free-port state of one external address within one shard.
#[derive(Debug, Default)]
struct AddressPorts {
    /// Index of the next never-used port in this shard's port sequence.
    next_fresh: u32,
    /// Released ports with their release time, oldest first.
    released: VecDeque<(u16, Instant)>,
    in_use: u32,
}

/// Why an allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// The pool has no address of the needed family.
    NoAddress,
    /// Every port of this shard on the paired address is in use or held down.
    Exhausted,
}

/// One shard's view of the pools: it allocates only ports of its own blocks.
#[derive(Debug)]
pub struct PoolShard {
    cfg: PoolConfig,
    shard: u16,
    shards: u16,
    /// Number of ports this shard owns per address.
    ports_per_address: u32,
    addrs: HashMap<IpAddr, AddressPorts>,
}

impl PoolShard {
    /// The pool as seen by shard `shard` of `shards`.
    #[must_use]
    pub fn new(cfg: PoolConfig, shard: u16, shards: u16) -> Self {
        let shards = shards.max(1);
        let bs = u32::from(cfg.block_size.max(1));
        let range = u32::from(cfg.port_hi.saturating_sub(cfg.port_lo)) + 1;
        let blocks = range.div_ceil(bs);
        let mut ports = 0;
        let mut b = u32::from(shard);
        while b < blocks {
            let start = b * bs;
            ports += bs.min(range - start);
            b += u32::from(shards);
        }
        PoolShard {
            cfg,
            shard,
            shards,
            ports_per_address: ports,
            addrs: HashMap::new(),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// Ports this shard can hand out per external address.
    #[must_use]
    pub fn ports_per_address(&self) -> u32 {
        self.ports_per_address
    }

    /// The `i`-th port of this shard's sequence.
    fn nth_port(&self, i: u32) -> u16 {
        let bs = u32::from(self.cfg.block_size.max(1));
        let block = u32::from(self.shard) + u32::from(self.shards) * (i / bs);
        (u32::from(self.cfg.port_lo) + block * bs + i % bs) as u16
    }

    /// Allocates a port on the subscriber's paired address of the given family.
    pub fn allocate(
        &mut self,
        subscriber: IpAddr,
        v6: bool,
        now: Instant,
    ) -> Result<(IpAddr, u16), PoolError> {
        let addr = self
            .cfg
            .paired_address(subscriber, v6)
            .ok_or(PoolError::NoAddress)?;
        let hold = self.cfg.hold_down;
        let per = self.ports_per_address;
        let entry = self.addrs.entry(addr).or_default();
        let port_index = if entry.next_fresh < per {
            entry.next_fresh += 1;
            Some(entry.next_fresh - 1)
        } else {
            None
        };
        let port = match port_index {
            Some(i) => self.nth_port(i),
            None => match entry.released.front() {
                // RFC 6888 REQ-8: reuse only after the hold-down.
                Some(&(p, at)) if now.saturating_since(at) >= hold => {
                    entry.released.pop_front();
                    p
                }
                _ => return Err(PoolError::Exhausted),
            },
        };
        let entry = self.addrs.entry(addr).or_default();
        entry.in_use += 1;
        Ok((addr, port))
    }

    /// Returns a port; it becomes reusable after the hold-down.
    pub fn release(&mut self, addr: IpAddr, port: u16, now: Instant) {
        if let Some(e) = self.addrs.get_mut(&addr) {
            e.in_use = e.in_use.saturating_sub(1);
            e.released.push_back((port, now));
        }
    }

    /// Ports in use on `addr` by this shard.
    #[must_use]
    pub fn in_use(&self, addr: IpAddr) -> u32 {
        self.addrs.get(&addr).map_or(0, |e| e.in_use)
    }
}

impl PoolShard {
    /// Takes a new pool configuration for the allocations to come (the management
    /// plane's change, `admin.rs`): the per-address state is kept, so ports held by
    /// live connections and ports in hold-down are never handed out twice. The port
    /// range and block size decide which shard owns return traffic, so they cannot
    /// change under live connections: a configuration that changes them is refused
    /// (false, nothing changed).
    #[must_use]
    pub fn reconfigure(&mut self, cfg: PoolConfig) -> bool {
        if cfg.port_lo != self.cfg.port_lo
            || cfg.port_hi != self.cfg.port_hi
            || cfg.block_size != self.cfg.block_size
        {
            return false;
        }
        self.cfg = cfg;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PoolConfig {
        PoolConfig {
            prefixes: vec![
                Prefix {
                    addr: "203.0.113.0".parse().unwrap(),
                    len: 28,
                },
                Prefix {
                    addr: "2001:db8:200::".parse().unwrap(),
                    len: 120,
                },
            ],
            port_lo: 1024,
            port_hi: 1024 + 4 * 16 - 1,
            block_size: 16,
            hold_down: Duration::from_secs(120),
        }
    }

    #[test]
    fn ports_stay_in_own_blocks_and_owner_is_computable() {
        let c = cfg();
        for shard in 0..2 {
            let mut p = PoolShard::new(c.clone(), shard, 2);
            assert_eq!(p.ports_per_address(), 32);
            let sub: IpAddr = "198.18.1.2".parse().unwrap();
            for _ in 0..32 {
                let (a, port) = p.allocate(sub, false, Instant(0)).unwrap();
                assert!(c.contains(a));
                assert_eq!(c.port_owner(port, 2), Some(shard));
            }
            assert_eq!(
                p.allocate(sub, false, Instant(0)),
                Err(PoolError::Exhausted)
            );
        }
    }

    #[test]
    fn paired_address_is_stable_and_family_correct() {
        let c = cfg();
        let sub: IpAddr = "198.18.1.2".parse().unwrap();
        let a = c.paired_address(sub, false).unwrap();
        assert_eq!(a, c.paired_address(sub, false).unwrap());
        assert!(a.is_ipv4());
        assert!(c.paired_address(sub, true).unwrap().is_ipv6());
        let empty = PoolConfig::default();
        assert_eq!(empty.paired_address(sub, false), None);
    }

    #[test]
    fn hold_down_delays_reuse() {
        let mut c = cfg();
        c.port_hi = c.port_lo; // one port only
        c.block_size = 1;
        let mut p = PoolShard::new(c, 0, 1);
        let sub: IpAddr = "198.18.1.2".parse().unwrap();
        let (a, port) = p.allocate(sub, false, Instant(0)).unwrap();
        p.release(a, port, Instant(1_000_000));
        assert_eq!(
            p.allocate(sub, false, Instant(60_000_000)),
            Err(PoolError::Exhausted)
        );
        assert_eq!(p.allocate(sub, false, Instant(121_000_000)), Ok((a, port)));
    }
}
