//! The engine: one shard of the binding table and everything that acts on it.
//!
//! API in the quinn-proto style (`docs/translation.md`): [`Engine::handle_packet`]
//! feeds a packet and returns what to do with it (it is rewritten in place),
//! [`Engine::poll_transmit`] drains packets the engine originates (downstream SYNs,
//! Convert replies, ACKs it owes, retransmissions of its own bytes),
//! [`Engine::poll_timeout`] / [`Engine::handle_timeout`] drive its timers. Time is an
//! argument; nothing here reads a clock, allocates per packet, logs or locks.

use core::net::IpAddr;
use std::collections::VecDeque;

use hashbrown::{HashMap, HashTable};

use crate::config::{ConfigError, EngineConfig};
use crate::conn::{Conn, Deadline, State};
use crate::drop::{Counters, DropReason};
use crate::packet::PacketBuf;
use crate::pool::PoolShard;
use crate::segment::Segment;
use crate::table::HashKeys;
use crate::time::Instant;
use crate::timer::TimerWheel;

/// Which side of the appliance a packet arrived on or leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// Toward the clients (access networks).
    Access,
    /// Toward the servers (the Internet).
    Core,
}

/// What the caller does with a packet after [`Engine::handle_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// The packet was rewritten in place: send it out of this port.
    Forward(Port),
    /// The engine took what it needed (state, or a handle to the buffer); the caller
    /// frees its handle. Not an error.
    Consumed,
    /// Dropped, for a counted reason.
    Drop(DropReason),
}

/// A packet produced by [`Engine::poll_transmit`]: `len` bytes written at the start
/// of the caller's buffer, to be sent out of `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub port: Port,
    /// Bytes written (an IP packet).
    pub len: usize,
}

/// A joined subflow bound to (or released from) this shard: the packets of its
/// 4-tuple must reach this shard, wherever the NIC's hash delivers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinEvent {
    /// The client's address and port of the subflow.
    pub client: core::net::SocketAddr,
    /// Our address and port of the subflow.
    pub service: core::net::SocketAddr,
    /// Bound (true) or released (false).
    pub bound: bool,
}

/// Join events kept for the runtime at most (older ones are dropped).
const MAX_JOIN_EVENTS: usize = 4096;

/// Engine-originated packets, built from connection state when polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tx {
    /// The downstream SYN (first or retransmitted on a client SYN retransmission).
    ServerSyn,
    /// ACK of the server's SYN-ACK with the application bytes of the client's SYN.
    ServerAck,
    /// Our SYN-ACK to the client (MP_CAPABLE, or the reply in its payload).
    ClientSynAck,
    /// The Convert reply as the first DSS-mapped bytes (MPTCP client).
    ConvertReply,
    /// A held server segment, translated now that the client's key is known.
    HeldServer,
    /// A pure ACK to the client (e.g. of its subflow FIN).
    ClientAck,
    /// Our FIN to the client.
    ClientFin,
    /// RST to the server (connection torn down from the client side or by timeout).
    ServerRst,
    /// RST (+ MP_FASTCLOSE) to the client.
    ClientRst,
    /// SYN-ACK + MP_JOIN on a joined subflow (RFC 8684 §3.2).
    JoinSynAck(u8),
    /// A pure ACK (subflow ACK + DATA_ACK) on subflow k: the fourth ACK of a join,
    /// or a subflow ACK the server's acknowledgement made due.
    PathAck(u8),
    /// A pure ACK on subflow k one below its oldest unacknowledged byte: an old
    /// sequence number, which the client answers with an ACK of its own (RFC 9293
    /// §3.10.7.4) carrying its DATA_ACK and current window — the server's
    /// zero-window probe passed on (RFC 9293 §3.8.6.1).
    PathProbe(u8),
    /// A data-less DATA_FIN (SSN 0, length 1, RFC 8684 §3.3.3) with our
    /// DATA_ACK on subflow k, right after the server's last bytes: a bonded
    /// connection never puts the DATA_FIN on a mapping with data (see
    /// `mp_downstream`).
    PathDataFin(u8),
    /// Local repair of the segment at this subflow sequence, from the cache.
    Repair(u8, u32),
    /// The segment at this sequence of subflow k, re-sent on another subflow.
    Reinject(u8, u32),
    /// A pure ACK to the server (after a spurious retransmission).
    ServerPureAck,
    /// Our subflow FIN on a joined subflow.
    PathFin(u8),
    /// RST + MP_FASTCLOSE on a joined subflow.
    PathRst(u8),
    /// A pure ACK on subflow k echoing the client's ADD_ADDR (RFC 8684 §3.4.1:
    /// without the echo the client retransmits the announcement).
    AddAddrEcho(u8, u8, core::net::IpAddr, Option<u16>),
    /// Our ADD_ADDR of `EngineConfig::announce[i]` on the initial subflow, with the
    /// truncated HMAC (RFC 8684 §3.4.1), on a pure ACK.
    AddAddr(u8),
    /// A pure ACK with MP_FAIL (RFC 8684 §3.7) on the initial subflow.
    MpFail,
    /// RST + MP_FAIL + MP_TCPRST "middlebox interference" on subflow k: a checksum
    /// failure with other subflows (RFC 8684 §3.7).
    SubflowFail(u8),
}

/// One shard of the translation engine, generic over the packet buffer.
#[derive(Debug)]
pub struct Engine<P> {
    pub(crate) cfg: EngineConfig,
    pub(crate) shard: u16,
    pub(crate) shards: u16,
    rng: u64,
    pub(crate) conns: Vec<Option<Conn<P>>>,
    free: Vec<u32>,
    next_generation: u32,
    /// (client, service) → connection (slab indices, hashed from the connection's
    /// own fields: see `table.rs`).
    by_client: HashTable<u32>,
    /// (server, pool) as seen on return traffic → connection.
    by_server: HashTable<u32>,
    /// Our MPTCP token → connection (MP_JOIN demultiplexing, RFC 8684 §3.2).
    by_token: HashTable<u32>,
    /// (client, service) of joined subflows → `id | k << 24`.
    by_join: HashTable<u32>,
    /// Joined subflows bound or unbound since the runtime last asked (multi-shard
    /// runtimes route a joined subflow's packets to its owner by them).
    join_events: VecDeque<JoinEvent>,
    /// Repair-cache segments and bytes held by this shard.
    pub(crate) cache_segments: usize,
    pub(crate) cache_bytes: usize,
    keys: HashKeys,
    pub(crate) pending_per_client: HashMap<IpAddr, u32>,
    /// Convert Error replies allowed (`EngineConfig::error_replies_per_second`).
    pub(crate) error_replies: crate::time::TokenBucket,
    pub(crate) pool: PoolShard,
    wheel: TimerWheel,
    pub(crate) txq: VecDeque<(u32, u32, Tx)>,
    /// Timers fired by the last `handle_timeout`, kept to reuse its allocation.
    fired: Vec<crate::timer::Fired>,
    pub(crate) counters: Counters,
    /// Per-subscriber path profiles (`paths.rs`).
    pub(crate) path_memory: crate::paths::PathMemory,
    /// Authorization and limits for new connections (`policy.rs`), shared
    /// read-only by every shard and replaced whole by `Engine::set_policy`.
    pub(crate) policy: std::sync::Arc<crate::policy::Policy>,
    pub(crate) policy_state: crate::policy::PolicyState,
}

/// Packs a connection id and a subflow index for the join table.
const fn pack(id: u32, k: usize) -> u32 {
    id | ((k as u32) << 24)
}

const fn unpack(v: u32) -> (u32, usize) {
    (v & 0x00ff_ffff, (v >> 24) as usize)
}

/// Timer-wheel granularity. Held ACKs (`multipath::AckHold`) and a held SYN-ACK
/// are released by the wheel when no client segment comes first: a release is
/// late by up to a tick, and the server takes that lateness as round-trip time.
/// At 10 ms (until session 11) a 60 ms hold gave the server samples of 60–70 ms
/// (lab capture, docs/plan.md); 1 ms keeps them within a millisecond, under
/// the 4 ms of delay growth that ends a CUBIC server's slow start (HyStart).
/// Goodput in the lab was the same either way (docs/perf.md, session 11).
pub(crate) const TICK_US: u64 = 1_000;

/// Timer-wheel slots: `TICK_US` × `WHEEL_SLOTS` (16 s) is the horizon within
/// which a deadline is visited once; later ones are passed over once per turn.
const WHEEL_SLOTS: usize = 16_384;

impl<P: PacketBuf> Engine<P> {
    /// Shard `shard` of `shards`, with randomness seeded by `seed` (ISNs and keys:
    /// pass a secret random value in production, a fixed one in tests).
    pub fn new(
        cfg: EngineConfig,
        shard: u16,
        shards: u16,
        seed: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        if shards == 0 || shard >= shards {
            return Err(ConfigError {
                field: "shards",
                reason: "shard index out of range",
            });
        }
        let pool = PoolShard::new(cfg.pool.clone(), shard, shards);
        let rng = seed ^ 0x9e37_79b9_7f4a_7c15 ^ u64::from(shard).rotate_left(32);
        // Table keys from the seed, apart from the ISN/key stream (which stays as it
        // was: the same seed gives the same connections).
        let mut k = rng ^ 0x5851_f42d_4c95_7f2d;
        let mut next = || {
            k = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = k;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let keys = HashKeys {
            k0: next(),
            k1: next() | (1 << 63),
        };
        // Pre-sized so that growth (a rehash of the whole table) does not land on the
        // packet path until the initial capacity is exceeded.
        let cap = cfg.initial_capacity.min(cfg.max_connections);
        let path_memory = crate::paths::PathMemory::new(
            cfg.path_memory_entries,
            cfg.path_memory_ttl.as_micros() as u64,
        );
        Ok(Engine {
            cfg,
            shard,
            shards,
            rng,
            conns: Vec::with_capacity(cap),
            free: Vec::new(),
            next_generation: 1,
            by_client: HashTable::with_capacity(cap),
            by_server: HashTable::with_capacity(cap),
            by_token: HashTable::with_capacity(cap),
            by_join: HashTable::new(),
            join_events: VecDeque::new(),
            cache_segments: 0,
            cache_bytes: 0,
            keys,
            pending_per_client: HashMap::new(),
            error_replies: crate::time::TokenBucket::default(),
            path_memory,
            pool,
            wheel: TimerWheel::new(WHEEL_SLOTS, TICK_US, now),
            txq: VecDeque::new(),
            fired: Vec::new(),
            counters: Counters::default(),
            policy: std::sync::Arc::default(),
            policy_state: crate::policy::PolicyState::default(),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Counters of this shard.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Live connections in this shard (every state).
    #[must_use]
    pub fn connections(&self) -> usize {
        self.by_client.len()
    }

    /// Live subflows in this shard: every connection's initial subflow plus its
    /// joined ones (RFC 8684 §3.2).
    #[must_use]
    pub fn subflow_count(&self) -> usize {
        self.by_client.len() + self.by_join.len()
    }

    /// Subscribers whose path profile this shard remembers (`paths.rs`).
    pub fn path_memory_len(&self) -> usize {
        self.path_memory.len()
    }

    /// The path profile this shard remembers for `client`'s subscriber, if fresh.
    pub fn path_profile(&self, client: IpAddr, now: Instant) -> Option<crate::PathProfile> {
        self.path_memory.recall(client, now)
    }

    /// Remembers a subscriber's path delays (minimum round trips of its fastest
    /// and slowest access, µs), as the engine does by itself from each bonded
    /// connection; for a control plane that knows them beforehand, and tests.
    pub fn learn_paths(&mut self, client: IpAddr, fast_us: u64, slow_us: u64, now: Instant) {
        self.path_memory.learn(client, fast_us, slow_us, now);
    }

    /// This shard's external ports and blocks of one family (`v6`).
    #[must_use]
    pub fn pool_usage(&self, v6: bool) -> crate::pool::PoolUsage {
        self.pool.usage(v6)
    }

    /// Port-block allocations and releases since the last call (RFC 6888 §4
    /// logging), oldest first; [`crate::pool::PoolShard::events_lost`] counts those
    /// that did not fit while nobody drained them.
    pub fn drain_block_events(&mut self, f: impl FnMut(crate::pool::BlockEvent)) {
        self.pool.drain_events(f);
    }

    /// The runtime is stopping: every port block still assigned is released (one
    /// release event each), so the allocation log has no open record.
    pub fn release_all_blocks(&mut self, now: Instant) {
        self.pool.release_all(now);
    }

    /// Block events lost because the queue was full.
    #[must_use]
    pub fn block_events_lost(&self) -> u64 {
        self.pool.events_lost()
    }

    /// This shard's index.
    #[must_use]
    pub fn shard(&self) -> u16 {
        self.shard
    }

    /// xorshift64* — ISNs, keys, timestamp offsets. Not for secrets beyond that.
    pub(crate) fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Handles one packet (IP header first) that arrived on `port`. The packet is
    /// rewritten in place when the answer is [`Action::Forward`].
    pub fn handle_packet(&mut self, now: Instant, port: Port, pkt: &mut P) -> Action {
        self.counters.packets_in[port as usize] += 1;
        let action = match Segment::parse(pkt.data()) {
            Err(DropReason::NotTcp) if port == Port::Core => self.core_icmp(now, pkt),
            Err(r) => Action::Drop(r),
            Ok(seg) => match port {
                Port::Access => self.handle_access(now, &seg, pkt),
                Port::Core => self.handle_core(now, &seg, pkt),
            },
        };
        match action {
            Action::Drop(r) => self.counters.drop(r),
            Action::Forward(p) => self.counters.packets_out[p as usize] += 1,
            Action::Consumed => {}
        }
        action
    }

    fn handle_access(&mut self, now: Instant, seg: &Segment, pkt: &mut P) -> Action {
        let found = self.find_leg(seg.src, seg.sport, seg.dst, seg.dport);
        if seg.flags.syn() && !seg.flags.ack() {
            return self.client_syn(now, seg, pkt, found);
        }
        let Some((id, k)) = found else {
            return Action::Drop(DropReason::NoBinding);
        };
        self.touch(id, now);
        self.upstream(now, id, k, seg, pkt)
    }

    fn handle_core(&mut self, now: Instant, seg: &Segment, pkt: &mut P) -> Action {
        let Some(id) = self.find_server(seg.src, seg.sport, seg.dst, seg.dport) else {
            return Action::Drop(DropReason::NoBindingCore);
        };
        self.touch(id, now);
        let state = self.conn(id).map(|c| c.state);
        match state {
            Some(State::SynSent) => self.server_syn_answer(now, id, seg, pkt),
            Some(_) => self.downstream(now, id, seg, pkt),
            None => Action::Drop(DropReason::NoBindingCore),
        }
    }

    // ---------------------------------------------------------------- table

    /// The connection of (client, service).
    #[inline]
    pub(crate) fn find_client(
        &self,
        ip: IpAddr,
        port: u16,
        sip: IpAddr,
        sport: u16,
    ) -> Option<u32> {
        let h = self.keys.pair(ip, port, sip, sport);
        let conns = &self.conns;
        self.by_client
            .find(h, |&i| {
                conns
                    .get(i as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|c| {
                        c.leg.client.port == port
                            && c.leg.service.port == sport
                            && c.leg.client.ip == ip
                            && c.leg.service.ip == sip
                    })
            })
            .copied()
    }

    /// The connection and subflow of (client, service): the initial subflow's
    /// table first, then joined subflows'.
    #[inline]
    pub(crate) fn find_leg(
        &self,
        ip: IpAddr,
        port: u16,
        sip: IpAddr,
        sport: u16,
    ) -> Option<(u32, usize)> {
        if let Some(id) = self.find_client(ip, port, sip, sport) {
            return Some((id, 0));
        }
        if self.by_join.is_empty() {
            return None;
        }
        let h = self.keys.pair(ip, port, sip, sport);
        let conns = &self.conns;
        self.by_join
            .find(h, |&v| {
                let (i, k) = unpack(v);
                conns
                    .get(i as usize)
                    .and_then(Option::as_ref)
                    .and_then(|c| c.mp.as_ref())
                    .and_then(|m| m.paths.get(k))
                    .is_some_and(|p| {
                        let l = &p.leg;
                        l.client.port == port
                            && l.service.port == sport
                            && l.client.ip == ip
                            && l.service.ip == sip
                    })
            })
            .map(|&v| {
                let (i, k) = unpack(v);
                (i, k)
            })
    }

    /// Binds joined subflow `k` of `id` by its (client, service).
    pub(crate) fn bind_join(&mut self, id: u32, k: usize) {
        let Some(l) = self.conn(id).map(|c| *c.legk(k)) else {
            return;
        };
        self.join_event(&l, true);
        let keys = self.keys;
        let conns = &self.conns;
        let h = keys.pair(l.client.ip, l.client.port, l.service.ip, l.service.port);
        self.by_join.insert_unique(h, pack(id, k), |&v| {
            let (i, k) = unpack(v);
            let l = conns[i as usize]
                .as_ref()
                .expect("bound slots are live")
                .legk(k);
            keys.pair(l.client.ip, l.client.port, l.service.ip, l.service.port)
        });
    }

    /// Unbinds joined subflow `k` of `id`.
    pub(crate) fn unbind_join(&mut self, id: u32, k: usize) {
        let Some(l) = self.conn(id).map(|c| *c.legk(k)) else {
            return;
        };
        let h = self
            .keys
            .pair(l.client.ip, l.client.port, l.service.ip, l.service.port);
        if let Ok(e) = self.by_join.find_entry(h, |&v| v == pack(id, k)) {
            e.remove();
            self.join_event(&l, false);
        }
    }

    /// Join events since the last call (only kept when there are several shards).
    pub fn drain_join_events(&mut self, mut f: impl FnMut(JoinEvent)) {
        while let Some(e) = self.join_events.pop_front() {
            f(e);
        }
    }

    fn join_event(&mut self, l: &crate::conn::Leg, bound: bool) {
        if self.shards < 2 {
            return;
        }
        if self.join_events.len() >= MAX_JOIN_EVENTS {
            self.join_events.pop_front();
        }
        self.join_events.push_back(JoinEvent {
            client: core::net::SocketAddr::new(l.client.ip, l.client.port),
            service: core::net::SocketAddr::new(l.service.ip, l.service.port),
            bound,
        });
    }

    /// The connection that owns `token`.
    pub(crate) fn find_token(&self, token: u32) -> Option<u32> {
        let conns = &self.conns;
        self.by_token
            .find(self.keys.token(token), |&i| {
                conns
                    .get(i as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|c| c.token == token)
            })
            .copied()
    }

    /// The connection of (server, pool), as return traffic carries them.
    #[inline]
    pub(crate) fn find_server(
        &self,
        ip: IpAddr,
        port: u16,
        pip: IpAddr,
        pport: u16,
    ) -> Option<u32> {
        let h = self.keys.pair(ip, port, pip, pport);
        let conns = &self.conns;
        self.by_server
            .find(h, |&i| {
                conns
                    .get(i as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|c| {
                        c.pool.port == pport
                            && c.server.port == port
                            && c.server.ip == ip
                            && c.pool.ip == pip
                    })
            })
            .copied()
    }

    /// Whether an MPTCP token is bound in this shard.
    pub(crate) fn token_in_use(&self, token: u32) -> bool {
        self.find_token(token).is_some()
    }

    /// Takes a connection out of the (server, pool) table (its return traffic is
    /// no longer accepted). Returns whether it was there.
    pub(crate) fn unbind_server(&mut self, id: u32) -> bool {
        let Some(c) = self.conn(id) else { return false };
        let h = self
            .keys
            .pair(c.server.ip, c.server.port, c.pool.ip, c.pool.port);
        match self.by_server.find_entry(h, |&i| i == id) {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn conn(&self, id: u32) -> Option<&Conn<P>> {
        self.conns.get(id as usize).and_then(Option::as_ref)
    }

    pub(crate) fn conn_mut(&mut self, id: u32) -> Option<&mut Conn<P>> {
        self.conns.get_mut(id as usize).and_then(Option::as_mut)
    }

    /// Inserts a connection; returns its id and arms its timer.
    pub(crate) fn insert(&mut self, mut c: Conn<P>, now: Instant) -> Option<u32> {
        if self.by_client.len() >= self.cfg.max_connections {
            return None;
        }
        c.generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.conns.push(None);
                (self.conns.len() - 1) as u32
            }
        };
        let generation = c.generation;
        let deadline = self.deadline_of(&c);
        let (client, service, server, pool, token) =
            (c.leg.client, c.leg.service, c.server, c.pool, c.token);
        let (bind_server, bind_token) = (c.state != State::ReplyClose, c.mptcp);
        self.conns[id as usize] = Some(c);
        // A key already bound is rebound to the new connection (map semantics).
        let keys = self.keys;
        let conns = &self.conns;
        let of = |i: &u32| conns[*i as usize].as_ref().expect("bound slots are live");
        let h = keys.pair(client.ip, client.port, service.ip, service.port);
        match self.by_client.find_mut(h, |i| {
            *i != id && {
                let c = of(i);
                c.leg.client == client && c.leg.service == service
            }
        }) {
            Some(slot) => *slot = id,
            None => {
                self.by_client.insert_unique(h, id, |i| {
                    let c = of(i);
                    keys.pair(
                        c.leg.client.ip,
                        c.leg.client.port,
                        c.leg.service.ip,
                        c.leg.service.port,
                    )
                });
            }
        }
        if bind_server {
            let h = keys.pair(server.ip, server.port, pool.ip, pool.port);
            match self.by_server.find_mut(h, |i| {
                *i != id && {
                    let c = of(i);
                    c.server == server && c.pool == pool
                }
            }) {
                Some(slot) => *slot = id,
                None => {
                    self.by_server.insert_unique(h, id, |i| {
                        let c = of(i);
                        keys.pair(c.server.ip, c.server.port, c.pool.ip, c.pool.port)
                    });
                }
            }
        }
        if bind_token {
            let h = keys.token(token);
            match self
                .by_token
                .find_mut(h, |i| *i != id && of(i).token == token)
            {
                Some(slot) => *slot = id,
                None => {
                    self.by_token
                        .insert_unique(h, id, |i| keys.token(of(i).token));
                }
            }
        }
        let _ = generation;
        self.arm_at(id, deadline.max(now));
        Some(id)
    }

    /// Removes a connection and releases what it holds (RFC 6888 REQ-8 hold-down
    /// starts now for its pool port).
    pub(crate) fn remove(&mut self, id: u32, now: Instant) {
        if self.conn(id).is_none() {
            return;
        }
        let server_bound = self.unbind_server(id);
        let joins = self
            .conn(id)
            .and_then(|c| c.mp.as_ref())
            .map_or(0, |m| m.paths.len());
        for k in 1..joins {
            self.unbind_join(id, k);
        }
        let Some(c) = self.conns.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        self.release_cache(&c, now);
        let h = self.keys.pair(
            c.leg.client.ip,
            c.leg.client.port,
            c.leg.service.ip,
            c.leg.service.port,
        );
        if let Ok(e) = self.by_client.find_entry(h, |&i| i == id) {
            e.remove();
        }
        if server_bound {
            self.pool.release(c.pool.ip(), c.pool.port(), now);
        }
        // Whatever `mptcp` says now (a failed handshake clears it), the token goes.
        if let Ok(e) = self
            .by_token
            .find_entry(self.keys.token(c.token), |&i| i == id)
        {
            e.remove();
        }
        if matches!(c.state, State::SynSent | State::SynAckSent) {
            self.pending_done(c.leg.client.ip());
        }
        self.policy_state.release(id, now);
        self.free.push(id);
    }

    pub(crate) fn pending_done(&mut self, client: IpAddr) {
        if let Some(n) = self.pending_per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.pending_per_client.remove(&client);
            }
        }
    }

    fn touch(&mut self, id: u32, now: Instant) {
        if let Some(c) = self.conn_mut(id) {
            c.last_activity = now;
        }
    }

    /// When the connection's idle/handshake timer expires.
    fn deadline_of(&self, c: &Conn<P>) -> Instant {
        let idle = match c.state {
            // RFC 8803 §4.2 + brief §6.8: bounded wait for the server.
            State::SynSent => {
                let created = c.hs.as_ref().map_or(c.last_activity, |h| h.created);
                return created + self.cfg.syn_timeout;
            }
            State::Established => self.cfg.established_idle,
            // RFC 5382 REQ-5 / RFC 7857 §2.1: transitory.
            _ => self.cfg.transitory_idle,
        };
        let mut t = c.last_activity + idle;
        if let Some(r) = c.rto_at.get() {
            t = t.min(r);
        }
        if let Some(r) = c.mp.as_ref().and_then(|m| m.tick_at.get()) {
            t = t.min(r);
        }
        if let Some(r) = c.hs.as_ref().and_then(|h| h.synack_due) {
            t = t.min(r);
        }
        t
    }

    pub(crate) fn queue(&mut self, id: u32, tx: Tx) {
        if let Some(c) = self.conn(id) {
            let g = c.generation;
            self.txq.push_back((id, g, tx));
        }
    }

    /// Arms the retransmission timer for engine-originated bytes.
    pub(crate) fn arm_rto(&mut self, id: u32, now: Instant) {
        let Some(c) = self.conn(id) else { return };
        if c.rto_at.is_some() {
            return;
        }
        // Our SYN-ACK goes again before the client's SYN timer fires (see
        // `EngineConfig::synack_rto`).
        let initial = if c.state == State::SynAckSent {
            self.cfg.synack_rto
        } else {
            self.cfg.initial_rto
        };
        let Some(c) = self.conn_mut(id) else { return };
        let at = now + c.rto(initial);
        c.rto_at = Deadline::at(at);
        self.arm_at(id, at);
    }

    /// Makes sure the connection's timer fires by `at`: one live wheel entry per
    /// connection (`wheel_at`), replaced only by an earlier one; a superseded
    /// entry fires and is ignored.
    pub(crate) fn arm_at(&mut self, id: u32, at: Instant) {
        let Some(c) = self.conn_mut(id) else { return };
        if c.wheel_at.get().is_some_and(|t| t <= at) {
            return;
        }
        c.wheel_at = Deadline::at(at);
        let g = c.generation;
        self.wheel.arm(id, g, at);
    }

    // ---------------------------------------------------------------- timers

    /// The next time [`Engine::handle_timeout`] has work, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wheel.next_tick()
    }

    /// Runs expired timers: handshake timeouts (SYN-ACK + Error 65), retransmissions
    /// of engine-originated bytes, idle expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut fired = std::mem::take(&mut self.fired);
        fired.clear();
        self.wheel.advance(now, |f| fired.push(f));
        for &f in &fired {
            let Some(c) = self.conn_mut(f.key) else {
                continue;
            };
            if c.generation != f.generation {
                continue;
            }
            // A superseded entry (an earlier one was armed since): ignored.
            if c.wheel_at.get().is_some_and(|t| t > now) {
                continue;
            }
            c.wheel_at = Deadline::NONE;
            self.on_timer(f.key, now);
        }
        self.fired = fired;
    }

    fn on_timer(&mut self, id: u32, now: Instant) {
        if self
            .conn(id)
            .and_then(|c| c.mp.as_ref())
            .and_then(|m| m.tick_at.get())
            .is_some_and(|t| t <= now)
        {
            self.mp_tick(now, id);
        }
        if self
            .conn(id)
            .and_then(|c| c.hs.as_ref())
            .and_then(|h| h.synack_due)
            .is_some_and(|t| t <= now)
        {
            self.release_synack(id, now);
        }
        let Some(c) = self.conn_mut(id) else { return };
        // Retransmission of our own bytes first.
        if let Some(at) = c.rto_at.get()
            && at <= now
        {
            c.rto_at = Deadline::NONE;
            c.retries += 1;
            c.rto_shift = c.rto_shift.saturating_add(1);
            let retries = c.retries;
            let pending = self.unacked_tx(id);
            if retries > 8 {
                // RFC 8803 §4.2: downstream failure tears the connection down.
                self.abort(id, now);
                return;
            }
            // Our ADD_ADDRs count their own tries: unanswered, they are given up
            // (the client may ignore announcements, RFC 8684 §3.4.1), never the
            // connection.
            if pending.iter().any(|t| matches!(t, Tx::AddAddr(_)))
                && let Some(h) = self.conn_mut(id).and_then(|c| c.hs.as_mut())
            {
                h.adv_tries += 1;
                if h.adv_tries >= crate::conn::ADD_ADDR_TRIES {
                    h.adv_pending = 0;
                    self.counters.add_addr_unanswered += 1;
                }
            }
            for &tx in &pending {
                if matches!(tx, Tx::AddAddr(_)) {
                    self.counters.add_addr_sent += 1;
                }
                self.queue(id, tx);
            }
            if let Some(c) = self.conn_mut(id) {
                c.release_handshake();
            }
            if !pending.is_empty() {
                self.arm_rto(id, now);
            }
        }
        let Some(c) = self.conn(id) else { return };
        let deadline = self.deadline_of(c);
        if deadline <= now {
            match c.state {
                State::SynSent => self.syn_timeout(id, now),
                State::ClientGone => self.abort(id, now),
                _ => {
                    if c.state == State::Established {
                        self.queue(id, Tx::ServerRst);
                        self.queue(id, Tx::ClientRst);
                    }
                    self.remove(id, now);
                }
            }
            return;
        }
        self.arm_at(id, deadline);
    }

    /// Engine-originated items still unacknowledged.
    fn unacked_tx(&self, id: u32) -> Vec<Tx> {
        let mut v = Vec::new();
        let Some(c) = self.conn(id) else { return v };
        match c.state {
            State::SynAckSent => v.push(Tx::ClientSynAck),
            State::ReplyClose => {
                if !c.reply_acked {
                    v.push(Tx::ClientSynAck);
                } else if c.leg.e_fin_sent {
                    v.push(Tx::ClientFin);
                }
            }
            // Our subflow FIN is retransmitted until the client acknowledges it.
            State::TimeWait => {
                if c.leg.e_fin_sent && !c.leg.e_fin_acked {
                    v.push(Tx::ClientFin);
                }
                if let Some(m) = &c.mp {
                    for (k, p) in m.paths.iter().enumerate().skip(1) {
                        if p.state == crate::multipath::PathState::Active
                            && p.leg.e_fin_sent
                            && !p.leg.e_fin_acked
                        {
                            v.push(Tx::PathFin(k as u8));
                        }
                    }
                }
            }
            _ => {}
        }
        if matches!(
            c.state,
            State::SynAckSent | State::Established | State::TimeWait
        ) {
            // Before the client's handshake ACK the server is not acknowledged yet
            // (see `server_syn_answer`).
            if c.state != State::SynAckSent && c.app_len > 0 && c.has_held_syn() {
                v.push(Tx::ServerAck);
            }
            if c.state != State::SynAckSent && c.mptcp && !c.reply_acked {
                v.push(Tx::ConvertReply);
            }
        }
        let adv = c.adv_pending();
        if adv != 0 && c.state == State::Established && !c.fallback {
            for i in 0..8u8 {
                if adv & 1 << i != 0 {
                    v.push(Tx::AddAddr(i));
                }
            }
        }
        v
    }

    /// Tears a connection down on both legs.
    pub(crate) fn abort(&mut self, id: u32, now: Instant) {
        let state = self.conn(id).map(|c| c.state);
        if let Some(st) = state
            && st != State::ReplyClose
            && st != State::SynSent
        {
            self.queue(id, Tx::ServerRst);
            if st != State::ClientGone {
                self.queue(id, Tx::ClientRst);
                self.rst_joins(id);
            }
            // Build the RSTs before the state goes: poll_transmit needs it, so keep
            // the entry until transmitted (TimeWait with no timers but the idle one).
            if let Some(c) = self.conn_mut(id) {
                c.state = State::TimeWait;
                c.rto_at = Deadline::NONE;
            }
            return;
        }
        self.remove(id, now);
    }

    // ---------------------------------------------------------------- output

    /// Writes the next engine-originated packet into `buf` (which should hold at
    /// least 1500 bytes plus room for headers: 2048 is safe).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        while let Some((id, generation, tx)) = self.txq.pop_front() {
            let Some(c) = self.conn(id) else { continue };
            if c.generation != generation {
                continue;
            }
            if let Some(t) = self.build(now, id, tx, buf) {
                self.counters.generated += 1;
                return Some(t);
            }
        }
        None
    }
}

/// Which shard owns a packet, computable from the packet alone (no shared state):
/// return traffic by the pool port block of its destination port, MP_JOIN SYNs by
/// the token (the converter grinds its key until `token mod shards` is the owner).
/// `None` means "the shard that received it" (client-side packets of an existing
/// subflow arrive where RSS put its SYN).
#[must_use]
pub fn owner_of(cfg: &EngineConfig, shards: u16, port: Port, pkt: &[u8]) -> Option<u16> {
    let seg = Segment::parse(pkt).ok()?;
    match port {
        Port::Core => {
            if cfg.pool.contains(seg.dst) {
                cfg.pool.port_owner(seg.dport, shards)
            } else {
                None
            }
        }
        Port::Access => {
            if !seg.flags.syn() || seg.flags.ack() {
                return None;
            }
            seg.mptcp(pkt).find_map(|o| match o {
                Ok(hac_wire::mptcp::MptcpOption::MpJoin(hac_wire::mptcp::MpJoinRepr::Syn {
                    token,
                    ..
                })) => Some((token % u32::from(shards.max(1))) as u16),
                _ => None,
            })
        }
    }
}
