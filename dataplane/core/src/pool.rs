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
//! * **Port blocks per subscriber** (port-block allocation, RFC 6888 §4, RFC 7422
//!   §1): a shard assigns one of its blocks to a subscriber at a time and hands the
//!   block's ports only to that subscriber's connections; the block returns to the
//!   pool when its last port is released. Each assignment and return is one
//!   [`BlockEvent`], which the runtime logs (the operator's record of who used which
//!   external address and ports when).
//! * **Hold-down** (RFC 6888 REQ-8): a released port is not handed out again before
//!   `hold_down` has elapsed (default 120 s); released ports queue FIFO, and a
//!   returned block goes to no one before its hold-down has elapsed.
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

/// A port-block allocation or release (RFC 6888 §4: the operator logs one record
/// per block, not per connection). Never carries a destination address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEvent {
    /// True for an allocation, false for a release.
    pub allocated: bool,
    /// The subscriber (client source address) the block is, or was, assigned to.
    pub subscriber: IpAddr,
    /// The external (pool) address.
    pub external: IpAddr,
    /// First port of the block.
    pub port_lo: u16,
    /// Last port of the block (inclusive).
    pub port_hi: u16,
    /// When it happened (engine time).
    pub at: Instant,
}

/// Block events kept until the runtime drains them; beyond, they are counted lost.
pub const MAX_BLOCK_EVENTS: usize = 4096;

/// One of this shard's blocks on one external address.
#[derive(Debug, Default)]
struct Block {
    /// The subscriber holding the block (None: free).
    owner: Option<IpAddr>,
    /// Ports of the block handed out at least once since it was assigned.
    next_fresh: u16,
    /// Released ports with their release time, oldest first.
    released: VecDeque<(u16, Instant)>,
    in_use: u16,
    /// Which ports of the block are bound (bit `port - first port`).
    held: Vec<u64>,
}

impl Block {
    /// Marks port `i` of the block held (true) or free; returns whether it changed.
    fn set_held(&mut self, i: u16, on: bool) -> bool {
        let (w, bit) = (usize::from(i / 64), 1u64 << (i % 64));
        if self.held.len() <= w {
            self.held.resize(w + 1, 0);
        }
        let was = self.held[w] & bit != 0;
        if on {
            self.held[w] |= bit;
        } else {
            self.held[w] &= !bit;
        }
        was != on
    }
}

/// The blocks of this shard on one external address.
#[derive(Debug, Default)]
struct AddressBlocks {
    /// By shard-local block index, grown on demand.
    blocks: Vec<Block>,
    /// Released blocks with their release time, oldest first (RFC 6888 REQ-8:
    /// no port of a released block goes to anyone before the hold-down).
    free: VecDeque<(u32, Instant)>,
    ports_in_use: u32,
}

/// Why an allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// The pool has no address of the needed family.
    NoAddress,
    /// The subscriber's blocks are full or held down, and this shard has no block
    /// left on the paired address.
    Exhausted,
}

/// Ports and blocks of one family, as the metrics report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Ports bound to a connection.
    pub ports_in_use: u64,
    /// Ports this shard can hand out (its blocks on every address of the family).
    pub ports_total: u64,
    /// Blocks assigned to a subscriber.
    pub blocks_in_use: u64,
    /// Blocks of this shard on every address of the family.
    pub blocks_total: u64,
}

/// One shard's view of the pools: it hands out only its own blocks, one block at a
/// time to a subscriber (port-block allocation: RFC 6888 §4 logs one record per
/// block; RFC 7422 §1 on the cost of per-connection logging), and the ports of a
/// block only to the connections of that subscriber.
#[derive(Debug)]
pub struct PoolShard {
    cfg: PoolConfig,
    shard: u16,
    shards: u16,
    /// Number of blocks this shard owns per address.
    blocks_per_address: u32,
    /// Number of ports this shard owns per address.
    ports_per_address: u32,
    addrs: HashMap<IpAddr, AddressBlocks>,
    /// (subscriber, IPv6?) → shard-local indices of its blocks on its paired address.
    subscribers: HashMap<(IpAddr, bool), Vec<u32>>,
    events: VecDeque<BlockEvent>,
    events_lost: u64,
    /// [IPv4, IPv6] blocks assigned.
    blocks_in_use: [u64; 2],
    /// [IPv4, IPv6] ports bound.
    ports_in_use: [u64; 2],
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
        let mut own = 0;
        let mut b = u32::from(shard);
        while b < blocks {
            let start = b * bs;
            ports += bs.min(range - start);
            own += 1;
            b += u32::from(shards);
        }
        PoolShard {
            cfg,
            shard,
            shards,
            blocks_per_address: own,
            ports_per_address: ports,
            addrs: HashMap::new(),
            subscribers: HashMap::new(),
            events: VecDeque::new(),
            events_lost: 0,
            blocks_in_use: [0; 2],
            ports_in_use: [0; 2],
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

    /// First and last port of shard-local block `j`.
    fn block_range(&self, j: u32) -> (u16, u16) {
        let bs = u32::from(self.cfg.block_size.max(1));
        let block = u32::from(self.shard) + u32::from(self.shards) * j;
        let lo = u32::from(self.cfg.port_lo) + block * bs;
        let hi = (lo + bs - 1).min(u32::from(self.cfg.port_hi));
        (lo as u16, hi as u16)
    }

    /// The shard-local block index of `port` (None: not one of this shard's ports).
    fn block_of(&self, port: u16) -> Option<u32> {
        if self.cfg.port_owner(port, self.shards)? != self.shard {
            return None;
        }
        let bs = u32::from(self.cfg.block_size.max(1));
        Some(u32::from(port - self.cfg.port_lo) / bs / u32::from(self.shards))
    }

    fn event(&mut self, e: BlockEvent) {
        if self.events.len() >= MAX_BLOCK_EVENTS {
            self.events_lost += 1;
        } else {
            self.events.push_back(e);
        }
    }

    /// Block events since the last call, oldest first.
    pub fn drain_events(&mut self, mut f: impl FnMut(BlockEvent)) {
        while let Some(e) = self.events.pop_front() {
            f(e);
        }
    }

    /// Block events that did not fit the queue (the runtime did not drain it).
    #[must_use]
    pub fn events_lost(&self) -> u64 {
        self.events_lost
    }

    /// Usage of the family (`v6`) over every address of the pool.
    #[must_use]
    pub fn usage(&self, v6: bool) -> PoolUsage {
        let addresses: u64 = self
            .cfg
            .prefixes
            .iter()
            .filter(|p| p.addr.is_ipv6() == v6)
            .map(|p| u64::from(p.size()))
            .sum();
        PoolUsage {
            ports_in_use: self.ports_in_use[usize::from(v6)],
            ports_total: addresses * u64::from(self.ports_per_address),
            blocks_in_use: self.blocks_in_use[usize::from(v6)],
            blocks_total: addresses * u64::from(self.blocks_per_address),
        }
    }

    /// Allocates a port on the subscriber's paired address of the given family: from
    /// one of its blocks, else from a block assigned to it now.
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
        let mine: &[u32] = self
            .subscribers
            .get(&(subscriber, v6))
            .map_or(&[], Vec::as_slice);
        if let Some(entry) = self.addrs.get(&addr) {
            // Newest block first: it is the one most likely to have a fresh port.
            for &j in mine.iter().rev() {
                let b = &entry.blocks[j as usize];
                let (lo, hi) = self.block_range(j);
                let size = hi - lo + 1;
                let port = if b.next_fresh < size {
                    Some(lo + b.next_fresh)
                } else {
                    // RFC 6888 REQ-8: reuse only after the hold-down.
                    b.released
                        .front()
                        .filter(|&&(_, at)| now.saturating_since(at) >= hold)
                        .map(|&(p, _)| p)
                };
                if let Some(p) = port {
                    let entry = self.addrs.get_mut(&addr).expect("present");
                    let b = &mut entry.blocks[j as usize];
                    if b.next_fresh < size {
                        b.next_fresh += 1;
                    } else {
                        b.released.pop_front();
                    }
                    b.set_held(p - lo, true);
                    b.in_use += 1;
                    entry.ports_in_use += 1;
                    self.ports_in_use[usize::from(v6)] += 1;
                    return Ok((addr, p));
                }
            }
        }
        // A new block: a never-used one, else the oldest released one past its
        // hold-down.
        let per = self.blocks_per_address;
        let entry = self.addrs.entry(addr).or_default();
        let j = if (entry.blocks.len() as u32) < per {
            entry.blocks.push(Block::default());
            entry.blocks.len() as u32 - 1
        } else {
            match entry.free.front() {
                Some(&(j, at)) if now.saturating_since(at) >= hold => {
                    entry.free.pop_front();
                    j
                }
                _ => return Err(PoolError::Exhausted),
            }
        };
        let b = &mut entry.blocks[j as usize];
        b.owner = Some(subscriber);
        b.next_fresh = 1;
        b.released.clear();
        b.held.clear();
        b.set_held(0, true);
        b.in_use = 1;
        entry.ports_in_use += 1;
        self.ports_in_use[usize::from(v6)] += 1;
        self.subscribers
            .entry((subscriber, v6))
            .or_default()
            .push(j);
        self.blocks_in_use[usize::from(v6)] += 1;
        let (lo, hi) = self.block_range(j);
        self.event(BlockEvent {
            allocated: true,
            subscriber,
            external: addr,
            port_lo: lo,
            port_hi: hi,
            at: now,
        });
        Ok((addr, lo))
    }

    /// Returns a port; it becomes reusable after the hold-down. The block goes back
    /// to the pool when its last port is released.
    pub fn release(&mut self, addr: IpAddr, port: u16, now: Instant) {
        let Some(j) = self.block_of(port) else {
            return;
        };
        let first = self.block_range(j).0;
        let Some(entry) = self.addrs.get_mut(&addr) else {
            return;
        };
        let Some(b) = entry.blocks.get_mut(j as usize) else {
            return;
        };
        let Some(owner) = b.owner else {
            return;
        };
        if !b.set_held(port - first, false) {
            return; // not bound: nothing to release
        }
        b.in_use = b.in_use.saturating_sub(1);
        entry.ports_in_use = entry.ports_in_use.saturating_sub(1);
        let fam = usize::from(addr.is_ipv6());
        self.ports_in_use[fam] = self.ports_in_use[fam].saturating_sub(1);
        if b.in_use > 0 {
            b.released.push_back((port, now));
            return;
        }
        // The block's last port: the whole block is held down from now (the
        // other ports were released earlier, so their hold-down ends sooner).
        b.owner = None;
        b.released.clear();
        entry.free.push_back((j, now));
        let v6 = addr.is_ipv6();
        if let Some(list) = self.subscribers.get_mut(&(owner, v6)) {
            list.retain(|&k| k != j);
            if list.is_empty() {
                self.subscribers.remove(&(owner, v6));
            }
        }
        self.blocks_in_use[usize::from(v6)] = self.blocks_in_use[usize::from(v6)].saturating_sub(1);
        let (lo, hi) = self.block_range(j);
        self.event(BlockEvent {
            allocated: false,
            subscriber: owner,
            external: addr,
            port_lo: lo,
            port_hi: hi,
            at: now,
        });
    }

    /// Returns every block still assigned (the runtime is stopping: no port stays
    /// bound), so that the allocation log closes each record.
    pub fn release_all(&mut self, now: Instant) {
        let mut held = Vec::new();
        for (&addr, e) in &self.addrs {
            for (j, b) in e.blocks.iter().enumerate() {
                if let Some(owner) = b.owner {
                    held.push((addr, j as u32, owner));
                }
            }
        }
        for (addr, j, owner) in held {
            let (lo, hi) = self.block_range(j);
            let e = self.addrs.get_mut(&addr).expect("present");
            let b = &mut e.blocks[j as usize];
            e.ports_in_use = e.ports_in_use.saturating_sub(u32::from(b.in_use));
            let fam = usize::from(addr.is_ipv6());
            self.ports_in_use[fam] = self.ports_in_use[fam].saturating_sub(u64::from(b.in_use));
            b.owner = None;
            b.in_use = 0;
            b.held.clear();
            b.released.clear();
            e.free.push_back((j, now));
            let v6 = addr.is_ipv6();
            self.blocks_in_use[usize::from(v6)] =
                self.blocks_in_use[usize::from(v6)].saturating_sub(1);
            self.event(BlockEvent {
                allocated: false,
                subscriber: owner,
                external: addr,
                port_lo: lo,
                port_hi: hi,
                at: now,
            });
        }
        self.subscribers.clear();
    }

    /// Ports in use on `addr` by this shard.
    #[must_use]
    pub fn in_use(&self, addr: IpAddr) -> u32 {
        self.addrs.get(&addr).map_or(0, |e| e.ports_in_use)
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

    fn events(p: &mut PoolShard) -> Vec<BlockEvent> {
        let mut v = Vec::new();
        p.drain_events(|e| v.push(e));
        v
    }

    #[test]
    fn one_record_per_block_not_per_port() {
        let c = cfg();
        let mut p = PoolShard::new(c.clone(), 1, 2);
        let sub: IpAddr = "198.18.1.2".parse().unwrap();
        let mut ports = Vec::new();
        for _ in 0..20 {
            ports.push(p.allocate(sub, false, Instant(5)).unwrap());
        }
        let ev = events(&mut p);
        // 20 ports of 16-port blocks: two blocks, both of shard 1 (blocks 1 and 3).
        assert_eq!(ev.len(), 2);
        let ext = c.paired_address(sub, false).unwrap();
        for (e, (lo, hi)) in ev.iter().zip([(1040, 1055), (1072, 1087)]) {
            assert!(e.allocated);
            assert_eq!((e.subscriber, e.external), (sub, ext));
            assert_eq!((e.port_lo, e.port_hi, e.at), (lo, hi, Instant(5)));
        }
        assert!(ports.iter().all(|&(a, _)| a == ext));
        let u = p.usage(false);
        assert_eq!((u.ports_in_use, u.blocks_in_use), (20, 2));
        assert_eq!((u.ports_total, u.blocks_total), (16 * 32, 16 * 2));
        // Releasing all but one port of the first block logs nothing; its last port
        // logs the release of that block only.
        for &(a, port) in &ports[..15] {
            p.release(a, port, Instant(7));
        }
        assert!(events(&mut p).is_empty());
        p.release(ports[15].0, ports[15].1, Instant(9));
        let ev = events(&mut p);
        assert_eq!(ev.len(), 1);
        assert!(!ev[0].allocated);
        assert_eq!(
            (ev[0].port_lo, ev[0].port_hi, ev[0].at),
            (1040, 1055, Instant(9))
        );
        assert_eq!(p.usage(false).blocks_in_use, 1);
        assert_eq!(p.usage(false).ports_in_use, 4);
    }

    #[test]
    fn subscribers_never_share_a_block() {
        let mut c = cfg();
        c.prefixes.truncate(1);
        c.prefixes[0].len = 32; // one address: every subscriber pairs with it
        let mut p = PoolShard::new(c, 0, 1);
        let a: IpAddr = "198.18.1.2".parse().unwrap();
        let b: IpAddr = "198.18.2.2".parse().unwrap();
        let (_, pa) = p.allocate(a, false, Instant(0)).unwrap();
        let (_, pb) = p.allocate(b, false, Instant(0)).unwrap();
        let (_, pa2) = p.allocate(a, false, Instant(0)).unwrap();
        assert_eq!((pa, pb, pa2), (1024, 1040, 1025));
        let ev = events(&mut p);
        assert_eq!(ev.len(), 2);
        assert_eq!((ev[0].subscriber, ev[1].subscriber), (a, b));
    }

    #[test]
    fn a_released_block_is_held_down_for_everyone() {
        let mut c = cfg();
        c.prefixes.truncate(1);
        c.prefixes[0].len = 32;
        c.port_hi = c.port_lo + 15; // one block
        let mut p = PoolShard::new(c, 0, 1);
        let a: IpAddr = "198.18.1.2".parse().unwrap();
        let b: IpAddr = "198.18.2.2".parse().unwrap();
        let (ext, port) = p.allocate(a, false, Instant(0)).unwrap();
        assert_eq!(p.allocate(b, false, Instant(0)), Err(PoolError::Exhausted));
        p.release(ext, port, Instant(1_000_000));
        assert_eq!(
            p.allocate(b, false, Instant(100_000_000)),
            Err(PoolError::Exhausted)
        );
        assert_eq!(p.allocate(b, false, Instant(121_000_000)), Ok((ext, 1024)));
        let ev = events(&mut p);
        assert_eq!(ev.iter().filter(|e| e.allocated).count(), 2);
        assert_eq!(ev.iter().filter(|e| !e.allocated).count(), 1);
        // Releases of ports that are not held do nothing.
        p.release(ext, 1030, Instant(122_000_000));
        p.release(ext, 9999, Instant(122_000_000));
        assert!(events(&mut p).is_empty());
        assert_eq!(p.in_use(ext), 1);
        // Stopping closes the open record.
        p.release_all(Instant(130_000_000));
        let ev = events(&mut p);
        assert_eq!(ev.len(), 1);
        assert!(!ev[0].allocated && ev[0].subscriber == b && ev[0].at == Instant(130_000_000));
        assert_eq!(p.usage(false).blocks_in_use, 0);
        assert_eq!(p.in_use(ext), 0);
    }
}
