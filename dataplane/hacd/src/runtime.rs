//! The worker loop, independent of the NIC layer: one worker per lcore polls its
//! queue on every port, answers ARP/ND/echo, hands packets owned by another shard
//! over a lock-free queue (crossbeam `ArrayQueue`; the owner is computed from the
//! packet, `hac_core::owner_of`), runs the engine, resolves next hops and transmits
//! in batches. No global lock on the packet path: the shared neighbour table is only
//! read on a local-cache miss and written when a neighbour is learned.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use hac_core::{Action, DropReason, Engine, Instant, PacketBuf, Port};
use hac_wire::ethernet::EthernetAddress;
use hashbrown::HashMap;
use parking_lot::RwLock;

use crate::config::{Config, Role};
use crate::host::{ETH_LEN, Host, Input, next_hop, write_eth};
use crate::metrics::{EngineStats, PortStats, bump};

/// Packets per burst.
pub const BURST: usize = 32;

/// The NIC as one worker sees it: its own queue on every port.
pub trait Nic {
    /// The packet buffer (an mbuf in production).
    type Buf: PacketBuf + Send;
    /// Receives up to [`BURST`] frames from `port` into `out`.
    fn rx(&mut self, port: usize, out: &mut Vec<Self::Buf>);
    /// Sends the frames of `pkts` on `port` (the vector is drained; unsent frames are
    /// freed and counted by the implementation).
    fn tx(&mut self, port: usize, pkts: &mut Vec<Self::Buf>);
    /// A fresh buffer (empty data, default headroom).
    fn alloc(&mut self) -> Option<Self::Buf>;
    /// The port's MAC address.
    fn mac(&self, port: usize) -> EthernetAddress;
}

/// Neighbours learned by any worker, per port.
#[derive(Debug, Default)]
pub struct SharedNeighbours {
    map: RwLock<HashMap<(usize, IpAddr), EthernetAddress>>,
    /// Joined MPTCP subflows (client address, port, our address, port) → the worker
    /// that owns their connection. Written when a join is bound or released, read
    /// only for access packets the local engine has no binding for.
    joins: RwLock<HashMap<(IpAddr, u16, IpAddr, u16), u16>>,
}

/// Counters of one worker, readable from other threads without locks.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Frames received.
    pub rx_packets: AtomicU64,
    /// Bytes received.
    pub rx_bytes: AtomicU64,
    /// Frames sent.
    pub tx_packets: AtomicU64,
    /// Bytes sent.
    pub tx_bytes: AtomicU64,
    /// Packets handed to another worker.
    pub handoffs: AtomicU64,
    /// Handoffs dropped because the peer's queue was full.
    pub handoff_drops: AtomicU64,
    /// Packets dropped for lack of a neighbour (a solicitation was sent).
    pub unresolved: AtomicU64,
    /// Packets without a route.
    pub no_route: AtomicU64,
    /// Engine drops by reason (`DropReason as usize`).
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Nanoseconds spent in polling rounds that handled at least one packet: the
    /// worker's CPU cost of the traffic (its busy-polling of empty queues excluded).
    pub busy_ns: AtomicU64,
    /// Frames and bytes per port (index: configured port order).
    pub ports: Box<[PortStats]>,
    /// The engine's counters, copied between bursts ([`Worker::publish_stats`]).
    pub engine: EngineStats,
}

impl WorkerStats {
    /// Stats with per-port counters for `ports` ports.
    #[must_use]
    pub fn with_ports(ports: usize) -> Self {
        WorkerStats {
            ports: (0..ports).map(|_| PortStats::default()).collect(),
            ..WorkerStats::default()
        }
    }
}

/// A handed-over packet: the port it arrived on and the frame.
pub type Handoff<B> = (usize, B);

/// One worker.
pub struct Worker<N: Nic> {
    id: u16,
    nic: N,
    cfg: Arc<Config>,
    engine: Engine<N::Buf>,
    host: Host,
    shared: Arc<SharedNeighbours>,
    inbox: Arc<ArrayQueue<Handoff<N::Buf>>>,
    peers: Vec<Arc<ArrayQueue<Handoff<N::Buf>>>>,
    stats: Arc<WorkerStats>,
    rx: Vec<N::Buf>,
    tx: Vec<Vec<N::Buf>>,
    scratch: Vec<u8>,
    /// Packets waiting for their next hop to be resolved: (port, next hop, Ethernet
    /// header needed for IPv6, packet, since). Bounded by [`MAX_PENDING`].
    pending: Vec<(usize, IpAddr, bool, N::Buf, Instant)>,
    /// When the static routes' next hops were last solicited.
    last_gateway_probe: Option<Instant>,
    /// The management plane's configuration swaps and queries (control.rs).
    control: Option<Arc<crate::control::Control>>,
    /// The configuration generation this worker runs.
    generation: u64,
}

/// Packets held while their next hop is being resolved (all next hops together).
const MAX_PENDING: usize = 64;
/// How long a packet waits for its neighbour.
const PENDING_US: u64 = 1_000_000;
/// How often worker 0 re-solicits the static routes' next hops that are unknown.
const GATEWAY_PROBE_US: u64 = 2_000_000;

impl<N: Nic> std::fmt::Debug for Worker<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<N: Nic> Worker<N> {
    /// Worker `id` of `inboxes.len()`, with its engine shard.
    pub fn new(
        id: u16,
        nic: N,
        cfg: Arc<Config>,
        engine: Engine<N::Buf>,
        shared: Arc<SharedNeighbours>,
        inboxes: &[Arc<ArrayQueue<Handoff<N::Buf>>>],
        stats: Arc<WorkerStats>,
    ) -> Self {
        let ports = cfg.ports.len();
        Worker {
            id,
            nic,
            engine,
            host: Host::new(ports),
            shared,
            inbox: Arc::clone(&inboxes[usize::from(id)]),
            peers: inboxes.to_vec(),
            stats,
            rx: Vec::with_capacity(BURST),
            tx: (0..ports).map(|_| Vec::with_capacity(BURST * 2)).collect(),
            scratch: vec![0; 2048],
            pending: Vec::new(),
            last_gateway_probe: None,
            control: None,
            generation: 0,
            cfg,
        }
    }

    /// Connects the worker to the management plane: from the next round on it takes
    /// published configurations and answers queries between bursts.
    pub fn attach_control(&mut self, control: Arc<crate::control::Control>) {
        // Generation 0 is never published: the first round takes the current one.
        self.generation = 0;
        self.control = Some(control);
    }

    /// The configuration generation this worker runs.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The NIC (tests feed it).
    pub fn nic_mut(&mut self) -> &mut N {
        &mut self.nic
    }

    /// Between bursts: a newer configuration (one atomic load when there is none),
    /// then a few queued management requests.
    fn serve_control(&mut self, now: Instant) {
        let Some(ctl) = self.control.as_deref() else {
            return;
        };
        if let Some(p) = ctl.newer_than(self.generation) {
            crate::control::apply(&mut self.engine, &p);
            self.cfg = Arc::clone(&p.host);
            self.generation = p.generation;
        }
        let w = usize::from(self.id);
        let mut answered = false;
        for _ in 0..crate::control::QUERIES_PER_ROUND {
            let Some(q) = ctl.next_query(w) else { break };
            crate::control::answer(&mut self.engine, self.generation, q, now);
            answered = true;
        }
        if answered {
            // RSTs of an aborted session go out in this round.
            self.drain_engine(now);
        }
    }

    /// The engine (counters, connections).
    pub fn engine(&self) -> &Engine<N::Buf> {
        &self.engine
    }

    fn role(&self, port: usize) -> Port {
        match self.cfg.ports[port].role {
            Role::Access => Port::Access,
            Role::Core => Port::Core,
        }
    }

    /// One polling round: every port's queue, the handoff inbox, timers, engine
    /// output, then the batched transmissions.
    /// Returns the number of frames received (from the NIC and the handoff inbox).
    ///
    /// `clock` is read again after every non-empty receive burst: a time read
    /// before `rx` would be older than the packets it returns whenever the
    /// worker was preempted in between, and every RTT sample taken from those
    /// ACKs would read short (a shared core in the lab: 8–16 ms on a 20 ms path,
    /// which shrinks the subflow budgets below the path's BDP).
    pub fn poll(&mut self, clock: impl Fn() -> Instant) -> usize {
        let mut now = clock();
        if self.control.is_some() {
            self.serve_control(now);
        }
        let shards = self.peers.len() as u16;
        let mut work = 0;
        for port in 0..self.cfg.ports.len() {
            let mut rx = std::mem::take(&mut self.rx);
            self.nic.rx(port, &mut rx);
            work += rx.len();
            if !rx.is_empty() {
                now = clock();
                // Per burst, by this worker only: plain stores, no bus lock.
                let (n, bytes) = (
                    rx.len() as u64,
                    rx.iter().map(|b| b.data().len() as u64).sum(),
                );
                bump(&self.stats.rx_packets, n);
                bump(&self.stats.rx_bytes, bytes);
                if let Some(p) = self.stats.ports.get(port) {
                    bump(&p.rx_packets, n);
                    bump(&p.rx_bytes, bytes);
                }
            }
            for mut buf in rx.drain(..) {
                let mac = self.nic.mac(port);
                match self.host.input(&self.cfg, port, mac, buf.data_mut(), now) {
                    Input::Reply(n) => {
                        if buf.set_len(n) {
                            self.tx[port].push(buf);
                        }
                    }
                    Input::Done => {}
                    Input::Ip => {
                        // One worker owns everything: skip the extra parse.
                        let owner = if shards == 1 {
                            None
                        } else {
                            hac_core::owner_of(
                                &self.cfg.engine,
                                shards,
                                self.role(port),
                                &buf.data()[ETH_LEN..],
                            )
                        };
                        match owner {
                            Some(o) if o != self.id && usize::from(o) < self.peers.len() => {
                                if self.peers[usize::from(o)].push((port, buf)).is_ok() {
                                    self.stats.handoffs.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    self.stats.handoff_drops.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            _ => self.ip_input(now, port, buf),
                        }
                    }
                }
            }
            self.rx = rx;
        }
        while let Some((port, buf)) = self.inbox.pop() {
            work += 1;
            self.ip_input(now, port, buf);
        }
        if !self.pending.is_empty() {
            self.flush_pending(now);
        }
        if self.id == 0
            && self
                .last_gateway_probe
                .is_none_or(|t| now.0.saturating_sub(t.0) > GATEWAY_PROBE_US)
        {
            self.last_gateway_probe = Some(now);
            self.probe_gateways(now);
        }
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        self.drain_engine(now);
        if self.peers.len() > 1 {
            self.publish_joins();
        }
        for port in 0..self.tx.len() {
            if !self.tx[port].is_empty() {
                let n = self.tx[port].len() as u64;
                let bytes: u64 = self.tx[port].iter().map(|b| b.data().len() as u64).sum();
                bump(&self.stats.tx_packets, n);
                bump(&self.stats.tx_bytes, bytes);
                if let Some(p) = self.stats.ports.get(port) {
                    bump(&p.tx_packets, n);
                    bump(&p.tx_bytes, bytes);
                }
                self.nic.tx(port, &mut self.tx[port]);
            }
        }
        work
    }

    fn ip_input(&mut self, now: Instant, port: usize, mut buf: N::Buf) {
        if !buf.adj(ETH_LEN) {
            return;
        }
        match self.engine.handle_packet(now, self.role(port), &mut buf) {
            Action::Forward(to) => self.output(now, to, buf),
            Action::Consumed => {}
            Action::Drop(DropReason::NoBinding)
                if self.peers.len() > 1 && self.role(port) == Port::Access =>
            {
                // A joined subflow whose connection another worker owns: its SYN
                // went there by token; the rest follows by the join table.
                match self.join_owner(buf.data()) {
                    Some(o) if o != self.id && usize::from(o) < self.peers.len() => {
                        if buf.prepend(ETH_LEN)
                            && self.peers[usize::from(o)].push((port, buf)).is_ok()
                        {
                            self.stats.handoffs.fetch_add(1, Ordering::Relaxed);
                        } else {
                            self.stats.handoff_drops.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        self.stats.drops[DropReason::NoBinding as usize]
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Action::Drop(r) => {
                self.stats.drops[r as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.drain_engine(now);
    }

    /// The worker owning the joined subflow of an (IP-first) access packet.
    fn join_owner(&self, pkt: &[u8]) -> Option<u16> {
        let (src, dst, l4) = match pkt.first()? >> 4 {
            4 => {
                let ip = hac_wire::ipv4::Packet::new_checked(pkt).ok()?;
                (
                    IpAddr::V4(ip.src_addr()),
                    IpAddr::V4(ip.dst_addr()),
                    pkt.get(ip.header_len()..)?,
                )
            }
            6 => {
                let ip = hac_wire::ipv6::Packet::new_checked(pkt).ok()?;
                let ul = ip.upper_layer().ok()?;
                (
                    IpAddr::V6(ip.src_addr()),
                    IpAddr::V6(ip.dst_addr()),
                    pkt.get(ul.offset..)?,
                )
            }
            _ => return None,
        };
        let sport = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
        let dport = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
        self.shared
            .joins
            .read()
            .get(&(src, sport, dst, dport))
            .copied()
    }

    /// Publishes this worker's join bindings (multi-worker runtimes).
    fn publish_joins(&mut self) {
        let id = self.id;
        let shared = Arc::clone(&self.shared);
        self.engine.drain_join_events(|e| {
            let key = (
                e.client.ip(),
                e.client.port(),
                e.service.ip(),
                e.service.port(),
            );
            let mut m = shared.joins.write();
            if e.bound {
                m.insert(key, id);
            } else if m.get(&key) == Some(&id) {
                m.remove(&key);
            }
        });
    }

    fn drain_engine(&mut self, now: Instant) {
        while let Some(t) = self.engine.poll_transmit(now, &mut self.scratch) {
            let Some(mut buf) = self.nic.alloc() else {
                break;
            };
            if !buf.set_len(t.len) {
                continue;
            }
            buf.data_mut().copy_from_slice(&self.scratch[..t.len]);
            self.output(now, t.port, buf);
        }
    }

    /// Sends an IP packet out of a port of the given side: route, neighbour, L2.
    fn output(&mut self, now: Instant, side: Port, mut buf: N::Buf) {
        let d = buf.data();
        let (dst, v6): (IpAddr, bool) = match d.first().map(|b| b >> 4) {
            Some(4) if d.len() >= 20 => (IpAddr::from([d[16], d[17], d[18], d[19]]), false),
            Some(6) if d.len() >= 40 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&d[24..40]);
                (IpAddr::from(a), true)
            }
            _ => return,
        };
        let role = match side {
            Port::Access => Role::Access,
            Port::Core => Role::Core,
        };
        let Some((port, nh)) = next_hop(&self.cfg, dst, Some(role)) else {
            self.stats.no_route.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mac = self.nic.mac(port);
        let neighbour = self.host.neighbour(port, nh, now).or_else(|| {
            let m = self.shared.map.read().get(&(port, nh)).copied();
            if let Some(m) = m {
                self.host.learn(port, nh, m, now);
            }
            m
        });
        let Some(nmac) = neighbour else {
            self.stats.unresolved.fetch_add(1, Ordering::Relaxed);
            let asked = self.pending.iter().any(|p| p.0 == port && p.1 == nh);
            if self.pending.len() < MAX_PENDING {
                // Held, not dropped: a lost first SYN costs the client a 1 s timeout.
                self.pending.push((port, nh, v6, buf, now));
            }
            if !asked {
                self.solicit(port, nh);
            }
            return;
        };
        if buf.prepend(ETH_LEN) && write_eth(buf.data_mut(), mac, nmac, v6) {
            self.tx[port].push(buf);
        }
    }

    fn solicit(&mut self, port: usize, nh: IpAddr) {
        let mac = self.nic.mac(port);
        if let Some(mut s) = self.nic.alloc()
            && s.set_len(128)
            && let Some(n) = Host::solicit(&self.cfg, port, mac, nh, s.data_mut())
            && s.set_len(n)
        {
            self.tx[port].push(s);
        }
    }

    /// Sends held packets whose neighbour is now known; drops the stale ones.
    fn flush_pending(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.len() {
            let (port, nh, v6) = (self.pending[i].0, self.pending[i].1, self.pending[i].2);
            let known = self
                .host
                .neighbour(port, nh, now)
                .or_else(|| self.shared.map.read().get(&(port, nh)).copied());
            if let Some(nmac) = known {
                let (_, _, _, mut buf, _) = self.pending.swap_remove(i);
                let mac = self.nic.mac(port);
                if buf.prepend(ETH_LEN) && write_eth(buf.data_mut(), mac, nmac, v6) {
                    self.tx[port].push(buf);
                }
            } else if now.0.saturating_sub(self.pending[i].4.0) > PENDING_US {
                self.pending.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Solicits the static routes' next hops not yet known, so the first packet of a
    /// connection does not wait for address resolution.
    fn probe_gateways(&mut self, now: Instant) {
        let hops: Vec<IpAddr> = self.cfg.routes.iter().map(|r| r.via).collect();
        for nh in hops {
            if let Some((port, _)) = next_hop(&self.cfg, nh, None)
                && self.host.neighbour(port, nh, now).is_none()
                && !self.shared.map.read().contains_key(&(port, nh))
            {
                self.solicit(port, nh);
            }
        }
    }

    /// Copies the engine's counters into the shared stats and passes the port-block
    /// allocations and releases to `sink` (between bursts, at a low rate).
    pub fn publish_stats(&mut self, sink: impl FnMut(hac_core::pool::BlockEvent)) {
        self.stats.engine.publish(&self.engine);
        self.engine.drain_block_events(sink);
    }

    /// The runtime is stopping: releases every port block still assigned (closing
    /// their allocation records), then publishes as [`Worker::publish_stats`].
    pub fn release_blocks(&mut self, now: Instant, sink: impl FnMut(hac_core::pool::BlockEvent)) {
        self.engine.release_all_blocks(now);
        self.publish_stats(sink);
    }

    /// Publishes neighbours this worker learned to the shared table (called between
    /// bursts, not per packet).
    pub fn publish_neighbours(&mut self) {
        let learned = self.host.drain_learned();
        if !learned.is_empty() {
            let mut m = self.shared.map.write();
            for (k, v) in learned {
                m.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::LAB;
    use hac_core::VecPacket;
    use hac_wire::arp::{self, ArpRepr, Operation};
    use hac_wire::ethernet::{EtherType, EthernetRepr, Frame};
    use std::collections::VecDeque;

    /// An in-memory NIC: frames pushed into `rxq[port]` are received; sent frames are
    /// collected in `sent`.
    #[derive(Default)]
    struct FakeNic {
        rxq: Vec<VecDeque<Vec<u8>>>,
        sent: Vec<(usize, Vec<u8>)>,
    }

    impl Nic for FakeNic {
        type Buf = VecPacket;
        fn rx(&mut self, port: usize, out: &mut Vec<VecPacket>) {
            while out.len() < BURST {
                let Some(f) = self.rxq[port].pop_front() else {
                    break;
                };
                out.push(VecPacket::from_bytes(&f));
            }
        }
        fn tx(&mut self, port: usize, pkts: &mut Vec<VecPacket>) {
            for p in pkts.drain(..) {
                self.sent.push((port, p.to_vec()));
            }
        }
        fn alloc(&mut self) -> Option<VecPacket> {
            Some(VecPacket::empty())
        }
        fn mac(&self, port: usize) -> EthernetAddress {
            EthernetAddress([2, 0, 0, 0, 0, port as u8 + 1])
        }
    }

    fn worker() -> Worker<FakeNic> {
        let cfg = Arc::new(Config::parse(LAB).unwrap());
        let engine = Engine::new(cfg.engine.clone(), 0, 1, 1, Instant(0)).unwrap();
        let inboxes = vec![Arc::new(ArrayQueue::new(64))];
        let nic = FakeNic {
            rxq: vec![VecDeque::new(), VecDeque::new()],
            sent: Vec::new(),
        };
        Worker::new(
            0,
            nic,
            cfg,
            engine,
            Arc::default(),
            &inboxes,
            Arc::default(),
        )
    }

    #[test]
    fn arp_reply_and_learning_are_shared() {
        let mut w = worker();
        let peer = EthernetAddress([2, 0, 0, 0, 0, 0x99]);
        let mut f = vec![0u8; 60];
        EthernetRepr {
            dst_addr: EthernetAddress::BROADCAST,
            src_addr: peer,
            vlan: None,
            inner_vlan: None,
            ethertype: EtherType::ARP,
        }
        .emit(&mut f)
        .unwrap();
        ArpRepr {
            operation: Operation::Request,
            sender_hardware_addr: peer,
            sender_protocol_addr: "198.51.100.2".parse().unwrap(),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: "203.0.113.5".parse().unwrap(),
        }
        .emit(&mut f[ETH_LEN..])
        .unwrap();
        w.nic.rxq[1].push_back(f);
        w.poll(|| Instant(1));
        assert_eq!(
            w.nic.sent.len(),
            1,
            "ARP for a pool address answered on the core port"
        );
        let (port, reply) = &w.nic.sent[0];
        assert_eq!(*port, 1);
        let eth = Frame::new_checked(&reply[..]).unwrap();
        assert_eq!(eth.dst_addr(), peer);
        let a = ArpRepr::parse(&arp::Packet::new_checked(eth.payload()).unwrap()).unwrap();
        assert_eq!(a.operation, Operation::Reply);
        w.publish_neighbours();
        assert_eq!(
            w.shared
                .map
                .read()
                .get(&(1, "198.51.100.2".parse().unwrap())),
            Some(&peer)
        );
    }

    #[test]
    fn unresolved_next_hop_solicits() {
        let mut w = worker();
        // An engine-originated packet toward the server: build one via output().
        let mut p = VecPacket::from_bytes(&[
            0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 6, 0, 0, 203, 0, 113, 1, 198, 51, 100, 2,
        ]);
        let _ = &mut p;
        w.output(Instant(0), Port::Core, p);
        assert_eq!(w.stats.unresolved.load(Ordering::Relaxed), 1);
        assert_eq!(
            w.tx[1].len(),
            1,
            "an ARP request is queued on the core port"
        );
        let eth = Frame::new_checked(w.tx[1][0].data()).unwrap();
        assert_eq!(eth.payload_ethertype(), EtherType::ARP);
        assert!(eth.dst_addr().is_broadcast());
    }
}
