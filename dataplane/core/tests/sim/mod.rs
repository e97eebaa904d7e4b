//! A deterministic simulator for the engine (issue 3, "Tests inside the crate"):
//! a client model (an MPTCP v1 initiator on one subflow that behaves like Linux 6.x,
//! or a plain TCP Convert client), the engine, and a plain TCP server model, joined
//! by links with one-way delay, loss, duplication and reordering. Time is simulated
//! (microseconds) and every random choice comes from seeded generators, so a run is a
//! pure function of its setup.
//!
//! The models check what they receive (TCP and IPv4 header checksums, addresses,
//! MTU, DSS mappings and checksums, the Linux constraints of `field-notes.md` §1–2)
//! and record every violation in `anomalies`: a scenario asserts that list is empty.
//!
//! Sequence bookkeeping in the models uses *stream offsets*: offset 0 is the first
//! byte after the SYN data. For the MPTCP client that byte is DSN `IDSN + 1`, SSN 1
//! and subflow sequence `ISN + 1 + syn_len` (RFC 8684 App. B: SYN data lies outside
//! the data sequence space).
#![allow(dead_code)]

pub mod mpclient;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hac_core::pool::{PoolConfig, Prefix};
use hac_core::{Action, DropReason, Engine, EngineConfig, Instant, Port, VecPacket};
use hac_wire::checksum::{self, Checksum};
use hac_wire::convert::MessageBuilder;
use hac_wire::crypto::key_material;
use hac_wire::ipv4::Ipv4Repr;
use hac_wire::ipv6::Ipv6Repr;
use hac_wire::mptcp::{
    AddAddrRepr, DataSeqField, DssRepr, Mapping, MpCapableFlags, MpCapableForm, MpCapableRepr,
    MpJoinRepr, MpPrioRepr, MpTcpRstRepr, MptcpOption,
};
use hac_wire::seq::{DataSeq, SeqNum};
use hac_wire::tcp::{self, Flags, TcpRepr};
use hac_wire::tcp_options::{self, OptionsBuilder, TcpOption};
use hac_wire::{ipv4, ipv6};

// ------------------------------------------------------------------ addresses

pub const CLIENT_V4: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)), 40000);
pub const SERVICE_V4: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)), 5000);
pub const SERVER_V4: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 443);
pub const CLIENT_V6: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2)),
    40000,
);
pub const SERVICE_V6: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)),
    5000,
);
pub const SERVER_V6: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0x10)),
    443,
);
pub const POOL_V4: Prefix = Prefix {
    addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 0)),
    len: 24,
};
pub const POOL_V6: Prefix = Prefix {
    addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0)),
    len: 64,
};

/// The engine configuration of every simulation: service 198.18.1.1 /
/// 2001:db8:1::1 port 5000, pools 203.0.113.0/24 and 2001:db8:200::/64.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        service_addrs: vec![SERVICE_V4.ip(), SERVICE_V6.ip()],
        service_port: 5000,
        pool: PoolConfig {
            prefixes: vec![POOL_V4, POOL_V6],
            ..PoolConfig::default()
        },
        ..EngineConfig::default()
    }
}

pub const MS: u64 = 1_000;
pub const SEC: u64 = 1_000_000;

// ------------------------------------------------------------------ randomness

/// splitmix64: small, seedable, good enough for loss decisions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6a09_e667_f3bc_c908)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

// ------------------------------------------------------------------ packets

/// An MPTCP option as the models use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mp {
    Capable(MpCapableRepr),
    Dss(DssRepr),
    Fastclose(u64),
    Join(MpJoinRepr),
    TcpRst(MpTcpRstRepr),
    Prio(MpPrioRepr),
    AddAddr(AddAddrRepr),
    Fail(DataSeq),
    Other(u8),
}

/// A decoded IP/TCP packet.
#[derive(Debug, Clone)]
pub struct Pkt {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ip_len: usize,
    pub total_len: usize,
    pub seq: SeqNum,
    pub ack: SeqNum,
    pub flags: Flags,
    pub window: u16,
    pub mss: Option<u16>,
    pub ws: Option<u8>,
    pub sack_perm: bool,
    pub sack: bool,
    /// The SACK option's blocks (left, right).
    pub sack_blocks: Vec<(SeqNum, SeqNum)>,
    pub ts: Option<(u32, u32)>,
    pub fast_open: bool,
    pub other_kinds: Vec<u8>,
    pub mptcp: Vec<Mp>,
    pub payload: Vec<u8>,
    /// TCP checksum verifies.
    pub checksum_ok: bool,
}

impl Pkt {
    pub fn capable(&self) -> Option<MpCapableRepr> {
        self.mptcp.iter().find_map(|o| match o {
            Mp::Capable(c) => Some(*c),
            _ => None,
        })
    }

    pub fn dss(&self) -> Option<DssRepr> {
        self.mptcp.iter().find_map(|o| match o {
            Mp::Dss(d) => Some(*d),
            _ => None,
        })
    }

    pub fn fastclose(&self) -> Option<u64> {
        self.mptcp.iter().find_map(|o| match o {
            Mp::Fastclose(k) => Some(*k),
            _ => None,
        })
    }

    pub fn join(&self) -> Option<MpJoinRepr> {
        self.mptcp.iter().find_map(|o| match o {
            Mp::Join(j) => Some(*j),
            _ => None,
        })
    }

    pub fn tcprst(&self) -> Option<MpTcpRstRepr> {
        self.mptcp.iter().find_map(|o| match o {
            Mp::TcpRst(r) => Some(*r),
            _ => None,
        })
    }

    pub fn add_addr(&self) -> Option<AddAddrRepr> {
        self.mptcp.iter().find_map(|o| match o {
            Mp::AddAddr(a) => Some(*a),
            _ => None,
        })
    }

    pub fn mp_fail(&self) -> Option<DataSeq> {
        self.mptcp.iter().find_map(|o| match o {
            Mp::Fail(d) => Some(*d),
            _ => None,
        })
    }

    pub fn prio(&self) -> Option<MpPrioRepr> {
        self.mptcp.iter().find_map(|o| match o {
            Mp::Prio(p) => Some(*p),
            _ => None,
        })
    }

    pub fn is_syn(&self) -> bool {
        self.flags.syn() && !self.flags.ack()
    }

    pub fn is_syn_ack(&self) -> bool {
        self.flags.syn() && self.flags.ack()
    }
}

/// Decodes an IP packet; checksum failures are reported in the result, framing
/// failures as an error.
pub fn parse(b: &[u8]) -> Result<Pkt, String> {
    let (src, dst, ip_len, seg, ok) = match b.first().map(|x| x >> 4) {
        Some(4) => {
            let ip = ipv4::Packet::new_checked(b).map_err(|e| format!("ipv4: {e:?}"))?;
            if !ip.verify_checksum() {
                return Err("bad IPv4 header checksum".into());
            }
            if ip.protocol() != ipv4::PROTO_TCP || ip.is_fragment() {
                return Err("not an unfragmented TCP packet".into());
            }
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            let seg = b
                .get(ip.header_len()..usize::from(ip.total_len()))
                .ok_or("ipv4 length")?;
            let ok = checksum::tcp_ipv4(s, d, seg) == 0;
            (IpAddr::V4(s), IpAddr::V4(d), ip.header_len(), seg, ok)
        }
        Some(6) => {
            let ip = ipv6::Packet::new_checked(b).map_err(|e| format!("ipv6: {e:?}"))?;
            let ul = ip.upper_layer().map_err(|e| format!("ipv6 ext: {e:?}"))?;
            if ul.protocol != ipv4::PROTO_TCP || ul.fragment.is_some() {
                return Err("not an unfragmented TCP packet".into());
            }
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            let seg = b.get(ul.offset..ul.offset + ul.len).ok_or("ipv6 length")?;
            let ok = checksum::tcp_ipv6(s, d, seg) == 0;
            (IpAddr::V6(s), IpAddr::V6(d), ul.offset, seg, ok)
        }
        _ => return Err("not IP".into()),
    };
    let t = tcp::Packet::new_checked(seg).map_err(|e| format!("tcp: {e:?}"))?;
    let mut p = Pkt {
        src: SocketAddr::new(src, t.src_port()),
        dst: SocketAddr::new(dst, t.dst_port()),
        ip_len,
        total_len: ip_len + seg.len(),
        seq: t.seq_number(),
        ack: t.ack_number(),
        flags: t.flags(),
        window: t.window_len(),
        mss: None,
        ws: None,
        sack_perm: false,
        sack: false,
        sack_blocks: Vec::new(),
        ts: None,
        fast_open: false,
        other_kinds: Vec::new(),
        mptcp: Vec::new(),
        payload: t.payload().to_vec(),
        checksum_ok: ok,
    };
    for o in tcp_options::iter(t.options()) {
        match o.map_err(|e| format!("tcp option: {e:?}"))? {
            TcpOption::Mss(m) => p.mss = Some(m),
            TcpOption::WindowScale(w) => p.ws = Some(w),
            TcpOption::SackPermitted => p.sack_perm = true,
            TcpOption::Sack(b) => {
                p.sack = true;
                p.sack_blocks = (0..b.len()).filter_map(|i| b.get(i)).collect();
            }
            TcpOption::Timestamps { tsval, tsecr } => p.ts = Some((tsval, tsecr)),
            TcpOption::FastOpen(_) => p.fast_open = true,
            TcpOption::Mptcp(raw) => {
                let o = MptcpOption::parse(raw).map_err(|e| format!("mptcp option: {e:?}"))?;
                p.mptcp.push(match o {
                    MptcpOption::MpCapable(c) => Mp::Capable(c),
                    MptcpOption::Dss(d) => Mp::Dss(d),
                    MptcpOption::MpFastclose(f) => Mp::Fastclose(f.receiver_key),
                    MptcpOption::MpJoin(j) => Mp::Join(j),
                    MptcpOption::MpTcpRst(r) => Mp::TcpRst(r),
                    MptcpOption::MpPrio(r) => Mp::Prio(r),
                    MptcpOption::AddAddr(a) => Mp::AddAddr(a),
                    MptcpOption::MpFail(f) => Mp::Fail(f.dsn),
                    other => Mp::Other(other.subtype()),
                });
            }
            TcpOption::NoOperation | TcpOption::EndOfList => {}
            other => p.other_kinds.push(other.kind()),
        }
    }
    Ok(p)
}

/// Builds an IP/TCP packet with a correct checksum.
#[allow(clippy::too_many_arguments)]
pub fn build(
    src: SocketAddr,
    dst: SocketAddr,
    seq: SeqNum,
    ack: SeqNum,
    flags: Flags,
    window: u16,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let ip_len = if src.is_ipv6() { 40 } else { 20 };
    let tcp_len = 20 + opts.len() + payload.len();
    let mut b = vec![0u8; ip_len + tcp_len];
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                protocol: ipv4::PROTO_TCP,
                payload_len: tcp_len,
                ttl: 64,
                dscp: 0,
                ecn: 0,
                ident: 0,
                dont_frag: true,
            }
            .emit(&mut b)
            .expect("ipv4 header");
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: ipv4::PROTO_TCP,
                payload_len: tcp_len,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut b)
            .expect("ipv6 header");
        }
        _ => panic!("mixed families {src} -> {dst}"),
    }
    TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        seq_number: seq,
        ack_number: ack,
        flags,
        window_len: window,
        urgent_at: 0,
        options: opts,
        payload_len: payload.len(),
    }
    .emit(&mut b[ip_len..])
    .expect("tcp header");
    b[ip_len + 20 + opts.len()..].copy_from_slice(payload);
    b[ip_len + 16..ip_len + 18].copy_from_slice(&[0, 0]);
    let c = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::tcp_ipv4(s, d, &b[ip_len..]),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::tcp_ipv6(s, d, &b[ip_len..]),
        _ => unreachable!(),
    };
    b[ip_len + 16..ip_len + 18].copy_from_slice(&c.to_be_bytes());
    b
}

/// An option area built with the wire layer's builder (padded to 4 bytes).
pub fn options(f: impl FnOnce(&mut OptionsBuilder<'_>)) -> Vec<u8> {
    let mut buf = [0u8; 40];
    let mut b = OptionsBuilder::new(&mut buf);
    f(&mut b);
    let n = b.finish().expect("options fit in 40 bytes");
    buf[..n].to_vec()
}

fn push(b: &mut OptionsBuilder<'_>, o: &TcpOption<'_>) {
    b.push(o).expect("option fits");
}

fn push_ts(b: &mut OptionsBuilder<'_>, tsval: u32, tsecr: u32) {
    push(b, &TcpOption::NoOperation);
    push(b, &TcpOption::NoOperation);
    push(b, &TcpOption::Timestamps { tsval, tsecr });
}

fn push_mpc(b: &mut OptionsBuilder<'_>, m: MpCapableRepr) {
    let mut o = [0u8; 24];
    let n = m.emit(&mut o).expect("MP_CAPABLE");
    b.push_raw(&o[..n]).expect("MP_CAPABLE fits");
}

fn push_dss(b: &mut OptionsBuilder<'_>, d: DssRepr) {
    let mut o = [0u8; 28];
    let n = d.emit(&mut o).expect("DSS");
    b.push_raw(&o[..n]).expect("DSS fits");
}

/// A Convert request: header + Connect TLV to `target`.
pub fn convert_request(target: SocketAddr) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let mut b = MessageBuilder::new(&mut buf).expect("builder");
    b.connect(target).expect("connect");
    let n = b.finish().expect("finish");
    buf[..n].to_vec()
}

/// Length of the Convert message at the start of `stream`, once its header is there.
pub fn convert_len(stream: &[u8]) -> Option<usize> {
    (stream.len() >= 4).then(|| usize::from(stream[1]) * 4)
}

/// The Error TLV code of a complete Convert message, if it carries one.
pub fn convert_error(msg: &[u8]) -> Option<u8> {
    let mut i = 4;
    while i + 2 <= msg.len() {
        let (ty, len) = (msg[i], usize::from(msg[i + 1]) * 4);
        if ty == 30 {
            return msg.get(i + 2).copied();
        }
        if len == 0 {
            return None;
        }
        i += len;
    }
    None
}

// ------------------------------------------------------------------ reassembly

/// In-order reassembly by stream offset that checks every retransmitted or
/// duplicated byte against what arrived first.
#[derive(Debug, Default, Clone)]
pub struct Reasm {
    pub data: Vec<u8>,
    ooo: BTreeMap<u64, Vec<u8>>,
    /// Overlapping bytes that differ from the first copy.
    pub conflicts: u32,
    /// Copies of bytes already delivered in order that arrived as zeros (the
    /// engine's fill of a subflow hole whose data the receiver already holds: a
    /// receiver discards anything below its cumulative point, RFC 9293 §3.10.7.4,
    /// RFC 8684 §3.3.1). Zeros arriving above that point are conflicts.
    pub zero_copies: u32,
}

impl Reasm {
    pub fn nxt(&self) -> u64 {
        self.data.len() as u64
    }

    /// Whether every byte of `[l, r)` has arrived (in order or above a hole).
    pub fn holds(&self, l: u64, r: u64) -> bool {
        let mut at = l;
        if at < self.nxt() {
            at = self.nxt();
        }
        while at < r {
            let covering = self
                .ooo
                .range(..=at)
                .map(|(&k, v)| k + v.len() as u64)
                .filter(|&e| e > at)
                .max();
            match covering {
                Some(e) => at = e,
                None => return false,
            }
        }
        true
    }

    /// The ranges held above the cumulative point, merged, in offset order.
    pub fn ooo_ranges(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = Vec::new();
        for (&k, b) in &self.ooo {
            let e = k + b.len() as u64;
            match v.last_mut() {
                Some(last) if k <= last.1 => last.1 = last.1.max(e),
                _ => v.push((k, e)),
            }
        }
        v
    }

    fn check(&mut self, off: u64, bytes: &[u8], late: bool) {
        let o = off as usize;
        let n = bytes.len().min(self.data.len().saturating_sub(o));
        if self.data[o..o + n] != bytes[..n] {
            if late && bytes[..n].iter().all(|&b| b == 0) {
                self.zero_copies += 1;
            } else {
                self.conflicts += 1;
            }
        }
    }

    pub fn insert(&mut self, off: i64, bytes: &[u8]) {
        let mut bytes = bytes;
        let mut off = off;
        if off < 0 {
            let cut = off.unsigned_abs() as usize;
            if cut >= bytes.len() {
                return;
            }
            bytes = &bytes[cut..];
            off = 0;
        }
        let mut off = off as u64;
        let nxt = self.nxt();
        if off < nxt {
            let n = ((nxt - off) as usize).min(bytes.len());
            self.check(off, &bytes[..n], true);
            bytes = &bytes[n..];
            off += n as u64;
        }
        if bytes.is_empty() {
            return;
        }
        if off > self.nxt() {
            match self.ooo.get_mut(&off) {
                Some(e) => {
                    let n = e.len().min(bytes.len());
                    if e[..n] != bytes[..n] {
                        self.conflicts += 1;
                    }
                    if bytes.len() > e.len() {
                        *e = bytes.to_vec();
                    }
                }
                None => {
                    self.ooo.insert(off, bytes.to_vec());
                }
            }
            return;
        }
        self.data.extend_from_slice(bytes);
        while let Some((&k, _)) = self.ooo.first_key_value() {
            if k > self.nxt() {
                break;
            }
            let v = self.ooo.remove(&k).expect("present");
            let overlap = ((self.nxt() - k) as usize).min(v.len());
            self.check(k, &v[..overlap], false);
            self.data.extend_from_slice(&v[overlap..]);
        }
    }
}

// ------------------------------------------------------------------ links

/// One direction of a link.
#[derive(Debug, Clone, Copy)]
pub struct LinkCfg {
    pub delay_us: u64,
    pub loss: f64,
    pub dup: f64,
    /// Probability that a packet is held back by up to `reorder_us` more.
    pub reorder: f64,
    pub reorder_us: u64,
    /// Packets with SYN are never lost: a lost Convert SYN cannot be recovered by
    /// design (Linux resends it without the data), and the converter waits at most
    /// 2 s for the server, which one client SYN retransmission covers; property
    /// runs spare them and the handshake-loss paths have scenarios of their own.
    pub spare_syn: bool,
}

impl LinkCfg {
    pub fn ideal(delay_us: u64) -> Self {
        LinkCfg {
            delay_us,
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            reorder_us: 0,
            spare_syn: false,
        }
    }
}

type DropRule = Box<dyn FnMut(&Pkt) -> bool>;

/// A one-way link: a time-ordered queue.
pub struct Link {
    pub cfg: LinkCfg,
    rng: Rng,
    q: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>>,
    n: u64,
    pub sent: u64,
    pub lost: u64,
    /// Drops packets for which it returns true (targeted loss in scenarios).
    pub drop_rule: Option<DropRule>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("cfg", &self.cfg)
            .field("queued", &self.q.len())
            .field("sent", &self.sent)
            .field("lost", &self.lost)
            .finish()
    }
}

impl Link {
    pub fn new(cfg: LinkCfg, seed: u64) -> Self {
        Link {
            cfg,
            rng: Rng::new(seed),
            q: BinaryHeap::new(),
            n: 0,
            sent: 0,
            lost: 0,
            drop_rule: None,
        }
    }

    pub fn send(&mut self, now: u64, p: Vec<u8>) {
        self.sent += 1;
        if let Some(rule) = &mut self.drop_rule
            && let Ok(pk) = parse(&p)
            && rule(&pk)
        {
            self.lost += 1;
            return;
        }
        let syn = parse(&p).is_ok_and(|pk| pk.flags.syn());
        if !(self.cfg.spare_syn && syn) && self.rng.chance(self.cfg.loss) {
            self.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.cfg.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let extra = if self.rng.chance(self.cfg.reorder) {
                self.rng.below(self.cfg.reorder_us + 1)
            } else {
                0
            };
            self.n += 1;
            self.q.push(Reverse((
                now + self.cfg.delay_us + extra,
                self.n,
                p.clone(),
            )));
        }
    }

    pub fn next_at(&self) -> Option<u64> {
        self.q.peek().map(|Reverse((t, _, _))| *t)
    }

    pub fn pop_due(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.next_at()? <= now {
            self.q.pop().map(|Reverse((_, _, p))| p)
        } else {
            None
        }
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

// ------------------------------------------------------------------ client model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CState {
    SynSent,
    Established,
    Reset,
}

#[derive(Debug, Clone)]
pub struct ClientCfg {
    pub addr: SocketAddr,
    pub service: SocketAddr,
    /// Where the Connect TLV points.
    pub target: SocketAddr,
    /// MPTCP v1 (MP_CAPABLE in the SYN) or a plain TCP Convert client.
    pub mptcp: bool,
    /// Ask for DSS checksums (flag A in the SYN).
    pub csum: bool,
    pub mss: u16,
    pub ws: Option<u8>,
    pub ts: bool,
    pub sack: bool,
    /// The Convert message of the SYN (default: a Connect to `target`).
    pub convert: Option<Vec<u8>>,
    /// Application bytes after the Convert TLVs in the SYN.
    pub syn_app: Vec<u8>,
    /// Send nothing before the Convert reply is complete (libconvert).
    pub wait_reply: bool,
    /// Segments per DSS mapping (Linux maps whole TSO skbs).
    pub mapping_segments: usize,
    /// Probability that a later segment of a mapping repeats it.
    pub repeat_mapping: f64,
    /// RFC 8803 §6.2.8: the client resets on an Error TLV.
    pub reset_on_error: bool,
    /// A fallback to TCP is legitimate here (the third ACK and the first data were
    /// both lost: RFC 8684 §3.1 makes the converter fall back); otherwise it is an
    /// anomaly.
    pub allow_fallback: bool,
    pub min_rto_us: u64,
    /// In-flight limit in segments.
    pub window_segments: u64,
    pub seed: u64,
}

impl ClientCfg {
    pub fn new(addr: SocketAddr, service: SocketAddr, target: SocketAddr) -> Self {
        ClientCfg {
            addr,
            service,
            target,
            mptcp: true,
            csum: false,
            mss: if addr.is_ipv6() { 1440 } else { 1460 },
            ws: Some(7),
            ts: true,
            sack: true,
            convert: None,
            syn_app: Vec::new(),
            wait_reply: false,
            mapping_segments: 3,
            repeat_mapping: 0.3,
            reset_on_error: true,
            allow_fallback: false,
            min_rto_us: 200 * MS,
            window_segments: 16,
            seed: 1,
        }
    }
}

/// A Linux-like MPTCP v1 initiator on one subflow (or a plain TCP client).
#[derive(Debug)]
pub struct Client {
    pub cfg: ClientCfg,
    rng: Rng,
    pub state: CState,
    pub isn: SeqNum,
    pub key: u64,
    pub idsn: DataSeq,
    pub syn_payload: Vec<u8>,
    pub syns_sent: u32,
    syn_timer: Option<u64>,
    syn_rto: u64,
    pub synack: Option<Pkt>,
    /// MPTCP negotiated (SYN-ACK carried MP_CAPABLE).
    pub mptcp: bool,
    pub csum: bool,
    /// Linux: a DSS with a DATA_ACK arrived.
    pub fully_established: bool,
    /// Fell back to TCP after negotiating MPTCP (`MPCapableDataFallback`).
    pub fell_back: bool,
    pub remote_isn: SeqNum,
    pub remote_key: u64,
    pub remote_idsn: DataSeq,
    ts_on: bool,
    ts_recent: u32,
    last_peer_tsval: Option<u32>,
    pub ts_regressions: u32,
    peer_ws: u8,
    peer_mss: u16,
    pub app: Vec<u8>,
    snd_nxt: u64,
    snd_max: u64,
    sub_una: u64,
    data_una: u64,
    peer_wnd: u64,
    /// Mappings as (stream offset, length), contiguous.
    maps: Vec<(u64, u32)>,
    pub want_close: bool,
    pub data_fin_sent: bool,
    pub data_fin_acked: bool,
    pub sub_fin_sent: bool,
    pub sub_fin_acked: bool,
    rto_at: Option<u64>,
    rto_us: u64,
    rx_sub: Reasm,
    pub peer_fin: Option<u64>,
    rx_maps: Vec<(u32, DataSeq, u32)>,
    /// The data stream received: the Convert reply, then the server's bytes.
    pub rx: Reasm,
    pub peer_data_fin: Option<u64>,
    pub out: Vec<Vec<u8>>,
    pub anomalies: Vec<String>,
    pub rst: Option<Pkt>,
    pub error_code: Option<u8>,
    /// Every packet received, in order (for scenario assertions).
    pub received: Vec<Pkt>,
}

impl Client {
    pub fn new(cfg: ClientCfg) -> Self {
        let mut rng = Rng::new(cfg.seed ^ 0xc11e);
        let key = rng.next_u64();
        let isn = SeqNum(rng.next_u64() as u32);
        let mut syn_payload = cfg
            .convert
            .clone()
            .unwrap_or_else(|| convert_request(cfg.target));
        syn_payload.extend_from_slice(&cfg.syn_app);
        Client {
            rng,
            state: CState::SynSent,
            isn,
            key,
            idsn: key_material(key).idsn,
            syn_payload,
            syns_sent: 0,
            syn_timer: None,
            syn_rto: SEC,
            synack: None,
            mptcp: false,
            csum: false,
            fully_established: false,
            fell_back: false,
            remote_isn: SeqNum(0),
            remote_key: 0,
            remote_idsn: DataSeq(0),
            ts_on: false,
            ts_recent: 0,
            last_peer_tsval: None,
            ts_regressions: 0,
            peer_ws: 0,
            peer_mss: 536,
            app: Vec::new(),
            snd_nxt: 0,
            snd_max: 0,
            sub_una: 0,
            data_una: 0,
            peer_wnd: 65535,
            maps: Vec::new(),
            want_close: false,
            data_fin_sent: false,
            data_fin_acked: false,
            sub_fin_sent: false,
            sub_fin_acked: false,
            rto_at: None,
            rto_us: cfg.min_rto_us,
            rx_sub: Reasm::default(),
            peer_fin: None,
            rx_maps: Vec::new(),
            rx: Reasm::default(),
            peer_data_fin: None,
            out: Vec::new(),
            anomalies: Vec::new(),
            rst: None,
            error_code: None,
            received: Vec::new(),
            cfg,
        }
    }

    fn anomaly(&mut self, now: u64, what: impl Into<String>) {
        self.anomalies
            .push(format!("client @{}us: {}", now, what.into()));
    }

    fn tsval(&self, now: u64) -> u32 {
        ((now / MS) as u32).wrapping_add(0x1000_0000)
    }

    /// Subflow sequence of stream offset `o`.
    fn seq_of(&self, o: u64) -> SeqNum {
        self.isn + 1 + self.syn_payload.len() as u32 + o as u32
    }

    /// The Convert reply, once complete.
    pub fn reply(&self) -> Option<&[u8]> {
        let n = convert_len(&self.rx.data)?;
        self.rx.data.get(..n)
    }

    /// What the server sent (the stream after the Convert reply).
    pub fn server_bytes(&self) -> &[u8] {
        match convert_len(&self.rx.data) {
            Some(n) if self.rx.data.len() >= n => &self.rx.data[n..],
            _ => &[],
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.app.extend_from_slice(bytes);
    }

    pub fn close(&mut self) {
        self.want_close = true;
    }

    /// Resets the connection: RST with MP_FASTCLOSE (the converter's key, RFC 8684
    /// §3.5), or a plain subflow RST.
    pub fn reset(&mut self, fastclose: bool) {
        let opts = options(|b| {
            if fastclose {
                let mut o = [0u8; 12];
                let n = hac_wire::mptcp::MpFastcloseRepr {
                    receiver_key: self.remote_key,
                }
                .emit(&mut o)
                .expect("MP_FASTCLOSE");
                b.push_raw(&o[..n]).expect("fits");
            }
        });
        let p = build(
            self.cfg.addr,
            self.cfg.service,
            self.seq_of(self.snd_max),
            self.sub_ack(),
            Flags::RST | Flags::ACK,
            0,
            &opts,
            &[],
        );
        self.out.push(p);
        self.state = CState::Reset;
        self.rto_at = None;
    }

    /// Both directions finished and acknowledged, subflow closed both ways.
    pub fn closed(&self) -> bool {
        let peer_done = |fin: Option<u64>, nxt: u64| fin.is_some_and(|f| nxt >= f);
        if self.mptcp {
            self.data_fin_acked
                && peer_done(self.peer_data_fin, self.rx.nxt())
                && self.sub_fin_acked
                && peer_done(self.peer_fin, self.rx_sub.nxt())
        } else {
            self.state == CState::Established
                && self.sub_fin_acked
                && peer_done(self.peer_fin, self.rx.nxt())
        }
    }

    pub fn next_timer(&self) -> Option<u64> {
        match (self.syn_timer, self.rto_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- output

    pub fn start(&mut self, now: u64) {
        self.send_syn(now, true);
    }

    fn send_syn(&mut self, now: u64, with_data: bool) {
        let c = &self.cfg;
        let opts = options(|b| {
            push(b, &TcpOption::Mss(c.mss));
            if c.sack {
                push(b, &TcpOption::SackPermitted);
            }
            if c.ts {
                push(
                    b,
                    &TcpOption::Timestamps {
                        tsval: ((now / MS) as u32).wrapping_add(0x1000_0000),
                        tsecr: 0,
                    },
                );
            }
            if let Some(ws) = c.ws {
                push(b, &TcpOption::NoOperation);
                push(b, &TcpOption::WindowScale(ws));
            }
            if c.mptcp {
                let flags = MpCapableFlags::H | if c.csum { MpCapableFlags::A } else { 0 };
                push_mpc(
                    b,
                    MpCapableRepr {
                        version: 1,
                        flags: MpCapableFlags(flags),
                        form: MpCapableForm::Syn,
                    },
                );
            }
        });
        let payload: &[u8] = if with_data { &self.syn_payload } else { &[] };
        let p = build(
            c.addr,
            c.service,
            self.isn,
            SeqNum(0),
            Flags::SYN,
            65535,
            &opts,
            payload,
        );
        self.out.push(p);
        self.syns_sent += 1;
        self.syn_timer = Some(now + self.syn_rto);
        self.syn_rto *= 2;
    }

    fn data_ack(&self) -> DataSeq {
        let fin = self.peer_data_fin.is_some_and(|f| self.rx.nxt() >= f) as u64;
        self.remote_idsn + 1 + self.rx.nxt() + fin
    }

    fn sub_ack(&self) -> SeqNum {
        let (nxt, fin) = if self.mptcp {
            (
                self.rx_sub.nxt(),
                self.peer_fin.is_some_and(|f| self.rx_sub.nxt() >= f),
            )
        } else {
            (
                self.rx.nxt(),
                self.peer_fin.is_some_and(|f| self.rx.nxt() >= f),
            )
        };
        self.remote_isn + 1 + nxt as u32 + u32::from(fin)
    }

    fn window(&self) -> u16 {
        // 64 KiB << ws: the models never run short of receive buffer.
        if self.cfg.ws.is_some() && self.peer_ws_on() {
            u16::MAX >> 1
        } else {
            u16::MAX
        }
    }

    fn peer_ws_on(&self) -> bool {
        self.synack.as_ref().is_some_and(|s| s.ws.is_some())
    }

    fn common_opts(&self, b: &mut OptionsBuilder<'_>, now: u64) {
        if self.ts_on {
            push_ts(b, self.tsval(now), self.ts_recent);
        }
    }

    fn mapping_of(&self, o: u64) -> (u64, u32) {
        *self
            .maps
            .iter()
            .find(|&&(s, l)| o >= s && o < s + u64::from(l))
            .expect("offset is mapped")
    }

    fn map_csum(&self, start: u64, len: u32) -> Option<u16> {
        self.csum.then(|| {
            let s = start as usize;
            checksum::dss_checksum(
                (self.idsn + 1 + start).0,
                1 + start as u32,
                len as u16,
                Checksum::new().add_bytes(&self.app[s..s + len as usize]),
            )
        })
    }

    fn send_segment(&mut self, now: u64, o: u64, l: u64, retrans: bool) {
        let (ms, ml) = self.mapping_of(o);
        let repeat = self.rng.chance(self.cfg.repeat_mapping);
        let opts = options(|b| {
            self.common_opts(b, now);
            if self.mptcp {
                let flags = MpCapableFlags::H | if self.csum { MpCapableFlags::A } else { 0 };
                if !self.fully_established && o == 0 {
                    // RFC 8684 §3.1: the first data repeats MP_CAPABLE with the
                    // data-level length (implicit mapping at IDSN + 1, SSN 1).
                    push_mpc(
                        b,
                        MpCapableRepr {
                            version: 1,
                            flags: MpCapableFlags(flags),
                            form: MpCapableForm::AckData {
                                sender_key: self.key,
                                receiver_key: self.remote_key,
                                data_len: ml as u16,
                                checksum: self.map_csum(ms, ml),
                            },
                        },
                    );
                } else {
                    let mapping = (o == ms || retrans || repeat).then(|| Mapping {
                        dsn: DataSeqField::Bits64(self.idsn + 1 + ms),
                        ssn: 1 + ms as u32,
                        data_len: ml as u16,
                        checksum: self.map_csum(ms, ml),
                    });
                    push_dss(
                        b,
                        DssRepr {
                            data_ack: Some(DataSeqField::Bits64(self.data_ack())),
                            mapping,
                            data_fin: false,
                        },
                    );
                }
            }
        });
        let payload = &self.app[o as usize..(o + l) as usize];
        let p = build(
            self.cfg.addr,
            self.cfg.service,
            self.seq_of(o),
            self.sub_ack(),
            Flags::ACK | Flags::PSH,
            self.window(),
            &opts,
            payload,
        );
        self.out.push(p);
    }

    /// A pure ACK (or FIN / data-less DATA_FIN).
    fn send_ctl(&mut self, now: u64, fin: bool, data_fin: bool) {
        let opts = options(|b| {
            self.common_opts(b, now);
            if self.mptcp {
                if !self.fully_established {
                    // Linux repeats the third ACK's MP_CAPABLE until fully
                    // established; it takes precedence over a DSS (and its DATA_FIN).
                    push_mpc(
                        b,
                        MpCapableRepr {
                            version: 1,
                            flags: MpCapableFlags(
                                MpCapableFlags::H | if self.csum { MpCapableFlags::A } else { 0 },
                            ),
                            form: MpCapableForm::Ack {
                                sender_key: self.key,
                                receiver_key: self.remote_key,
                            },
                        },
                    );
                } else {
                    let mapping = data_fin.then(|| {
                        // Data-less DATA_FIN: SSN 0, length 1 (RFC 8684 §3.3.3).
                        let dsn = self.idsn + 1 + self.app.len() as u64;
                        Mapping {
                            dsn: DataSeqField::Bits64(dsn),
                            ssn: 0,
                            data_len: 1,
                            checksum: self
                                .csum
                                .then(|| checksum::dss_checksum(dsn.0, 0, 1, Checksum::new())),
                        }
                    });
                    push_dss(
                        b,
                        DssRepr {
                            data_ack: Some(DataSeqField::Bits64(self.data_ack())),
                            mapping,
                            data_fin,
                        },
                    );
                }
            }
        });
        let mut flags = Flags::ACK;
        let seq = if fin {
            flags |= Flags::FIN;
            self.seq_of(self.app.len() as u64)
        } else {
            self.seq_of(self.snd_max) + u32::from(self.sub_fin_sent)
        };
        let p = build(
            self.cfg.addr,
            self.cfg.service,
            seq,
            self.sub_ack(),
            flags,
            self.window(),
            &opts,
            &[],
        );
        self.out.push(p);
    }

    fn una(&self) -> u64 {
        self.sub_una.min(self.data_una)
    }

    fn outstanding(&self) -> bool {
        self.una() < self.snd_max
            || (self.data_fin_sent && !self.data_fin_acked)
            || (self.sub_fin_sent && !self.sub_fin_acked)
    }

    fn seg_size(&self) -> u64 {
        let mss = self.cfg.mss.min(self.peer_mss);
        let opt = if self.mptcp {
            40
        } else if self.ts_on {
            12
        } else {
            0
        };
        u64::from(mss) - opt
    }

    pub fn pump(&mut self, now: u64) {
        if self.state != CState::Established {
            return;
        }
        if self.cfg.wait_reply && self.reply().is_none() {
            return;
        }
        let una = self.una();
        let wnd = self
            .peer_wnd
            .min(self.cfg.window_segments * self.seg_size());
        let total = self.app.len() as u64;
        while self.snd_nxt < total {
            let inflight = self.snd_nxt - una;
            if inflight >= wnd {
                break;
            }
            if self
                .maps
                .last()
                .is_none_or(|&(s, l)| s + u64::from(l) <= self.snd_nxt)
            {
                let len = (self.cfg.mapping_segments as u64 * self.seg_size())
                    .min(total - self.snd_nxt)
                    .min(60_000);
                self.maps.push((self.snd_nxt, len as u32));
            }
            let (ms, ml) = self.mapping_of(self.snd_nxt);
            let l = self
                .seg_size()
                .min(ms + u64::from(ml) - self.snd_nxt)
                .min(wnd - inflight);
            let retrans = self.snd_nxt < self.snd_max;
            self.send_segment(now, self.snd_nxt, l, retrans);
            self.snd_nxt += l;
            self.snd_max = self.snd_max.max(self.snd_nxt);
            self.rto_at.get_or_insert(now + self.rto_us);
        }
        if self.want_close && self.snd_max == total {
            if self.mptcp {
                if !self.data_fin_sent {
                    self.data_fin_sent = true;
                    self.send_ctl(now, false, true);
                    self.rto_at.get_or_insert(now + self.rto_us);
                }
                if self.data_fin_acked && !self.sub_fin_sent {
                    // RFC 8684 §3.3.3: subflows close once the DATA_FIN is acked.
                    self.sub_fin_sent = true;
                    self.send_ctl(now, true, false);
                    self.rto_at.get_or_insert(now + self.rto_us);
                }
            } else if !self.sub_fin_sent {
                self.sub_fin_sent = true;
                self.send_ctl(now, true, false);
                self.rto_at.get_or_insert(now + self.rto_us);
            }
        }
    }

    pub fn on_timer(&mut self, now: u64) {
        if self.syn_timer.is_some_and(|t| t <= now) {
            if self.state == CState::SynSent && self.syns_sent < 6 {
                // Linux resends a TFO SYN without its data.
                self.send_syn(now, false);
            } else {
                self.syn_timer = None;
            }
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            self.rto_at = None;
            if self.state != CState::Established || !self.outstanding() {
                return;
            }
            // Go back to the first unacknowledged byte; same mappings.
            self.snd_nxt = self.una();
            self.rto_us = (self.rto_us * 2).min(10 * SEC);
            if self.data_fin_sent && !self.data_fin_acked {
                self.send_ctl(now, false, true);
            }
            if self.sub_fin_sent && !self.sub_fin_acked {
                self.send_ctl(now, true, false);
            }
            self.rto_at = Some(now + self.rto_us);
            self.pump(now);
        }
    }

    // ---- input

    pub fn on_packet(&mut self, now: u64, bytes: &[u8]) {
        let p = match parse(bytes) {
            Ok(p) => p,
            Err(e) => return self.anomaly(now, format!("unparsable packet: {e}")),
        };
        self.received.push(p.clone());
        if !p.checksum_ok {
            return self.anomaly(now, "bad TCP checksum");
        }
        if p.src != self.cfg.service || p.dst != self.cfg.addr {
            return self.anomaly(now, format!("unexpected {} -> {}", p.src, p.dst));
        }
        let mtu = usize::from(self.cfg.mss) + 20 + p.ip_len;
        if p.total_len > mtu {
            self.anomaly(now, format!("{} bytes exceed the MTU {mtu}", p.total_len));
        }
        if p.flags.rst() {
            if let Some(k) = p.fastclose()
                && k != self.key
            {
                self.anomaly(now, "MP_FASTCLOSE with a wrong key");
            }
            self.rst = Some(p);
            self.state = CState::Reset;
            self.rto_at = None;
            self.syn_timer = None;
            return;
        }
        match self.state {
            CState::SynSent => {
                if p.is_syn_ack() {
                    self.on_synack(now, &p);
                } else {
                    self.anomaly(now, "non-SYN-ACK before the handshake");
                }
            }
            CState::Established => {
                if p.is_syn_ack() {
                    // Our third ACK was lost: acknowledge again.
                    if p.seq != self.remote_isn {
                        self.anomaly(now, "SYN-ACK with a different ISN");
                    }
                    self.send_ctl(now, false, false);
                    return;
                }
                self.on_established(now, &p);
            }
            CState::Reset => {}
        }
    }

    fn on_ts(&mut self, p: &Pkt) {
        if let Some((tsval, _)) = p.ts {
            if let Some(last) = self.last_peer_tsval
                && (tsval.wrapping_sub(last) as i32) < 0
            {
                self.ts_regressions += 1;
            }
            self.last_peer_tsval = Some(tsval);
            self.ts_recent = tsval;
        }
    }

    fn on_synack(&mut self, now: u64, p: &Pkt) {
        let want = self.isn + 1 + self.syn_payload.len() as u32;
        if p.ack != want {
            self.anomaly(
                now,
                format!(
                    "SYN-ACK acknowledges {} of {} SYN payload bytes",
                    p.ack.diff(self.isn + 1),
                    self.syn_payload.len()
                ),
            );
        }
        self.syn_timer = None;
        self.synack = Some(p.clone());
        self.remote_isn = p.seq;
        self.peer_mss = p.mss.unwrap_or(536);
        self.ts_on = self.cfg.ts && p.ts.is_some();
        self.peer_ws = match (self.cfg.ws, p.ws) {
            (Some(_), Some(w)) => w.min(14),
            _ => 0,
        };
        self.peer_wnd = u64::from(p.window);
        self.on_ts(p);
        match p.capable() {
            Some(c) if self.cfg.mptcp => {
                let MpCapableForm::SynAck { sender_key } = c.form else {
                    return self.anomaly(now, "SYN-ACK MP_CAPABLE is not the 12-byte form");
                };
                if c.version != 1 || !c.flags.is_supported() {
                    self.anomaly(now, format!("bad MP_CAPABLE in SYN-ACK: {c:?}"));
                }
                self.mptcp = true;
                self.csum = self.cfg.csum || c.flags.checksum_required();
                self.remote_key = sender_key;
                self.remote_idsn = key_material(sender_key).idsn;
                if !p.payload.is_empty() {
                    self.anomaly(now, "data in an MPTCP SYN-ACK");
                }
            }
            Some(_) => self.anomaly(now, "MP_CAPABLE in the SYN-ACK of a plain SYN"),
            None => {
                self.mptcp = false;
                self.rx.insert(0, &p.payload);
            }
        }
        self.state = CState::Established;
        self.send_ctl(now, false, false);
        self.after_input(now);
    }

    fn on_established(&mut self, now: u64, p: &Pkt) {
        self.on_ts(p);
        let base = self.seq_of(0);
        let mut progress = false;
        if p.flags.ack() {
            let mut off = i64::from(p.ack.diff(base));
            let end = self.app.len() as i64;
            if self.sub_fin_sent && off == end + 1 {
                if !self.sub_fin_acked {
                    progress = true;
                }
                self.sub_fin_acked = true;
                off = end;
            }
            if off > self.snd_max as i64 {
                self.anomaly(now, format!("subflow ACK {off} beyond {}", self.snd_max));
            } else if off > self.sub_una as i64 {
                self.sub_una = off as u64;
                progress = true;
            }
            if !self.mptcp {
                self.data_una = self.sub_una;
                self.peer_wnd = u64::from(p.window) << self.peer_ws;
            }
        }
        let dss = p.dss();
        if self.mptcp {
            if p.capable().is_some() {
                self.anomaly(now, "MP_CAPABLE from the converter after the SYN-ACK");
            }
            if let Some(a) = dss.and_then(|d| d.data_ack) {
                let a = a.expand(self.idsn + 1 + self.data_una);
                let mut off = a.diff(self.idsn + 1);
                let end = self.app.len() as i64;
                if self.data_fin_sent && off == end + 1 {
                    if !self.data_fin_acked {
                        progress = true;
                    }
                    self.data_fin_acked = true;
                    off = end;
                }
                if off > self.snd_max as i64 || off < 0 {
                    self.anomaly(
                        now,
                        format!("DATA_ACK offset {off} beyond {}", self.snd_max),
                    );
                } else if off as u64 > self.data_una {
                    self.data_una = off as u64;
                    progress = true;
                }
                self.fully_established = true;
                self.peer_wnd = u64::from(p.window) << self.peer_ws;
            } else if !p.payload.is_empty() && !self.fully_established {
                // field-notes §2: Linux falls back to TCP here.
                if !self.cfg.allow_fallback {
                    self.anomaly(now, "first data without a DSS DATA_ACK (Linux falls back)");
                }
                self.fell_back = true;
                self.mptcp = false;
                self.rx = self.rx_sub.clone();
                self.data_una = self.sub_una;
                if self.want_close && self.data_fin_sent && !self.data_fin_acked {
                    // The DATA_FIN was never seen as such: close with a FIN.
                    self.data_fin_sent = false;
                }
            }
        }
        if progress {
            self.rto_us = self.cfg.min_rto_us;
            self.rto_at = self.outstanding().then_some(now + self.rto_us);
        }
        let data_fin = dss.is_some_and(|d| d.data_fin);
        if !p.payload.is_empty() || p.flags.fin() || data_fin {
            if self.mptcp {
                self.receive_mapped(now, p, dss);
            } else {
                let off = i64::from(p.seq.diff(self.remote_isn + 1));
                self.rx.insert(off, &p.payload);
                if p.flags.fin() {
                    self.set_peer_fin(now, off + p.payload.len() as i64);
                }
            }
            self.send_ctl(now, false, false);
        }
        self.after_input(now);
    }

    fn set_peer_fin(&mut self, now: u64, f: i64) {
        let f = f as u64;
        if self.peer_fin.is_some_and(|g| g != f) {
            self.anomaly(now, "subflow FIN moved");
        }
        self.peer_fin = Some(f);
    }

    fn receive_mapped(&mut self, now: u64, p: &Pkt, dss: Option<DssRepr>) {
        let rel = p.seq.0.wrapping_sub(self.remote_isn.0);
        let len = p.payload.len() as u32;
        let mut mapping = None;
        if let Some(m) = dss.and_then(|d| d.mapping) {
            let dsn = m.dsn.expand(self.remote_idsn + 1 + self.rx.nxt());
            let fin = u32::from(dss.is_some_and(|d| d.data_fin));
            if m.data_len == 0 {
                self.anomaly(now, "infinite mapping from the converter");
            }
            let (ssn, mlen) = (m.ssn, u32::from(m.data_len));
            if fin == 1 {
                let fin_dsn = dsn + u64::from(mlen) - 1;
                let f = fin_dsn.diff(self.remote_idsn + 1);
                if self.peer_data_fin.is_some_and(|g| g as i64 != f) {
                    self.anomaly(now, "DATA_FIN moved");
                }
                self.peer_data_fin = Some(f as u64);
            }
            if ssn == 0 {
                if mlen != 1 || fin == 0 || len > 0 {
                    self.anomaly(
                        now,
                        format!("SSN 0 mapping that is not a data-less DATA_FIN: {m:?}"),
                    );
                }
            } else {
                // Verify the DSS checksum when the mapping is all in this segment.
                if let Some(c) = m.checksum {
                    if !self.csum {
                        self.anomaly(now, "DSS checksum without negotiation");
                    }
                    if ssn == rel && mlen - fin == len {
                        let want = checksum::dss_checksum(
                            dsn.0,
                            ssn,
                            m.data_len,
                            Checksum::new().add_bytes(&p.payload),
                        );
                        if want != c {
                            self.anomaly(now, "bad DSS checksum");
                        }
                    }
                } else if self.csum {
                    self.anomaly(now, "DSS mapping without the negotiated checksum");
                }
                if let Some(&(s, d, l)) = self.rx_maps.iter().find(|&&(s, _, _)| s == ssn)
                    && (d != dsn || l != mlen)
                {
                    self.anomaly(
                        now,
                        format!("mapping at SSN {s} changed ({d:?},{l}) -> ({dsn:?},{mlen})"),
                    );
                }
                self.rx_maps.push((ssn, dsn, mlen));
                if self.rx_maps.len() > 64 {
                    self.rx_maps.remove(0);
                }
                mapping = Some((ssn, dsn, mlen - fin));
            }
        }
        if len > 0 {
            let m = mapping.or_else(|| {
                self.rx_maps
                    .iter()
                    .rev()
                    .find(|&&(s, _, l)| rel.wrapping_sub(s) < l)
                    .copied()
            });
            match m {
                None => self.anomaly(now, format!("unmapped data at SSN {rel}")),
                Some((s, dsn, l)) => {
                    let o = rel.wrapping_sub(s);
                    if o >= l || o + len > l {
                        self.anomaly(
                            now,
                            format!("segment SSN {rel}+{len} outside mapping {s}+{l}"),
                        );
                    }
                    let d = (dsn + u64::from(o)).diff(self.remote_idsn + 1);
                    self.rx.insert(d, &p.payload);
                }
            }
            self.rx_sub.insert(i64::from(rel) - 1, &p.payload);
        }
        if p.flags.fin() {
            self.set_peer_fin(now, i64::from(rel) - 1 + i64::from(len));
        }
    }

    fn after_input(&mut self, now: u64) {
        if self.error_code.is_none()
            && let Some(r) = self.reply()
            && let Some(code) = convert_error(r)
        {
            self.error_code = Some(code);
            if self.cfg.reset_on_error {
                // RFC 8803 §6.2.8: the client resets on an Error TLV.
                let p = build(
                    self.cfg.addr,
                    self.cfg.service,
                    self.seq_of(self.snd_max),
                    SeqNum(0),
                    Flags::RST,
                    0,
                    &[],
                    &[],
                );
                self.out.push(p);
                self.state = CState::Reset;
                self.rto_at = None;
                return;
            }
        }
        self.pump(now);
    }
}

// ------------------------------------------------------------------ server model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSyn {
    Accept,
    Reset,
    Ignore,
}

#[derive(Debug, Clone)]
pub struct ServerCfg {
    pub addr: SocketAddr,
    pub mss: u16,
    pub ts: bool,
    pub ws: Option<u8>,
    pub sack: bool,
    pub on_syn: OnSyn,
    pub min_rto_us: u64,
    pub window_segments: u64,
    /// After an RTO, send one segment and grow by one per segment acknowledged
    /// (RFC 5681 §3.1 loss window, then slow start) instead of resending the whole
    /// window at once.
    pub slow_start_after_rto: bool,
    /// The FIN rides on the last data segment when the application closed
    /// before it left (Linux's `tcp_send_fin` on an unsent tail), instead of a
    /// FIN segment of its own.
    pub fin_with_data: bool,
    /// Segments of the initial congestion window, growing by one per segment
    /// acknowledged (slow start) up to `window_segments` and never reduced by
    /// loss; 0: the whole window at once.
    pub initial_window: u64,
    /// Retransmit the first hole when a SACK block shows data above it (once per
    /// cumulative ACK, RFC 6675's first loss; the RTO remains the backstop).
    pub sack_recovery: bool,
    /// An MPTCP listener (as Linux's): an MP_CAPABLE SYN gets MP_CAPABLE with its
    /// key in the SYN-ACK, and a handshake ACK without MP_CAPABLE makes it fall
    /// back to TCP (RFC 8684 §3.1; Linux `MPTcpExtMPCapableFallbackACK`).
    pub mptcp: bool,
    pub seed: u64,
}

impl ServerCfg {
    pub fn new(addr: SocketAddr) -> Self {
        ServerCfg {
            addr,
            mss: if addr.is_ipv6() { 1440 } else { 1460 },
            ts: true,
            ws: Some(7),
            sack: true,
            on_syn: OnSyn::Accept,
            min_rto_us: 200 * MS,
            window_segments: 16,
            slow_start_after_rto: false,
            fin_with_data: false,
            initial_window: 0,
            sack_recovery: false,
            mptcp: false,
            seed: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SState {
    Listen,
    SynRcvd,
    Established,
    Reset,
}

/// A plain TCP server.
#[derive(Debug)]
pub struct Server {
    pub cfg: ServerCfg,
    pub state: SState,
    /// Every SYN received.
    pub syns: Vec<Pkt>,
    pub peer: Option<SocketAddr>,
    pub peer_isn: SeqNum,
    pub isn: SeqNum,
    ts_on: bool,
    ts_recent: u32,
    last_peer_tsval: Option<u32>,
    pub ts_regressions: u32,
    peer_ws: u8,
    own_ws: u8,
    peer_mss: u16,
    pub app: Vec<u8>,
    snd_nxt: u64,
    snd_max: u64,
    una: u64,
    peer_wnd: u64,
    pub want_close: bool,
    pub fin_sent: bool,
    pub fin_acked: bool,
    rto_at: Option<u64>,
    rto_us: u64,
    synack_at: Option<u64>,
    /// When the first SYN-ACK left, and the handshake's RTT as the server
    /// measured it (first SYN-ACK to the ACK completing the handshake; Linux
    /// takes none after a SYN-ACK retransmission).
    synack_first: Option<u64>,
    pub handshake_rtt: Option<u64>,
    /// Our SYN-ACK carried MP_CAPABLE (`ServerCfg::mptcp` and an MP_CAPABLE SYN).
    pub mpc_offered: bool,
    /// The handshake ACK came without MP_CAPABLE after `mpc_offered`: plain TCP.
    pub fell_back: bool,
    pub rx: Reasm,
    pub peer_fin: Option<u64>,
    pub out: Vec<Vec<u8>>,
    pub anomalies: Vec<String>,
    pub rst: Option<Pkt>,
    pub received: Vec<Pkt>,
    /// Data segments and FINs sent again (by the RTO, or by SACK recovery when
    /// enabled: also counted in `sack_retransmits`).
    pub retransmits: u64,
    pub sack_retransmits: u64,
    /// The cumulative ACK at which SACK recovery last resent.
    sack_rexmit_at: Option<u64>,
    /// Offset of the most recent segment that arrived above a hole (the first
    /// SACK block reports it, RFC 2018 §4).
    last_ooo: Option<u64>,
    /// End offset of each data segment → when it was sent, and whether more
    /// than once (Karn: no RTT sample from those).
    sent: BTreeMap<u64, (u64, bool)>,
    /// RTT samples as a Linux sender takes them for its congestion control
    /// (time, RTT): from the most recently sent segment an ACK newly covers.
    pub rtt_samples: Vec<(u64, u64)>,
    /// Congestion window in segments (only below `window_segments` after an RTO
    /// with `slow_start_after_rto`).
    cwnd: u64,
    /// The persist timer (RFC 9293 §3.8.6.1): data waits, nothing is in flight
    /// and the peer's window is zero. It sends a zero-window probe (Linux's: a
    /// pure ACK at SND.UNA - 1), backing off as the RTO does.
    persist_at: Option<u64>,
    persist_us: u64,
    pub zero_window_probes: u64,
}

impl Server {
    pub fn new(cfg: ServerCfg) -> Self {
        let mut rng = Rng::new(cfg.seed ^ 0x5e4e);
        Server {
            state: SState::Listen,
            syns: Vec::new(),
            peer: None,
            peer_isn: SeqNum(0),
            isn: SeqNum(rng.next_u64() as u32),
            ts_on: false,
            ts_recent: 0,
            last_peer_tsval: None,
            ts_regressions: 0,
            peer_ws: 0,
            own_ws: 0,
            peer_mss: 536,
            app: Vec::new(),
            snd_nxt: 0,
            snd_max: 0,
            una: 0,
            peer_wnd: 65535,
            want_close: false,
            fin_sent: false,
            fin_acked: false,
            rto_at: None,
            rto_us: cfg.min_rto_us,
            synack_at: None,
            synack_first: None,
            handshake_rtt: None,
            mpc_offered: false,
            fell_back: false,
            rx: Reasm::default(),
            peer_fin: None,
            out: Vec::new(),
            anomalies: Vec::new(),
            rst: None,
            received: Vec::new(),
            retransmits: 0,
            sack_retransmits: 0,
            sack_rexmit_at: None,
            last_ooo: None,
            sent: BTreeMap::new(),
            rtt_samples: Vec::new(),
            cwnd: if cfg.initial_window == 0 {
                cfg.window_segments
            } else {
                cfg.initial_window
            },
            persist_at: None,
            persist_us: cfg.min_rto_us,
            zero_window_probes: 0,
            cfg,
        }
    }

    fn anomaly(&mut self, now: u64, what: impl Into<String>) {
        self.anomalies
            .push(format!("server @{}us: {}", now, what.into()));
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.app.extend_from_slice(bytes);
    }

    /// The sender's view (offsets in the data it sends): cumulatively acknowledged,
    /// next to send, and the peer's window.
    pub fn send_view(&self) -> (u64, u64, u64) {
        (self.una, self.snd_nxt, self.peer_wnd)
    }

    pub fn close(&mut self) {
        self.want_close = true;
    }

    pub fn closed(&self) -> bool {
        self.fin_acked && self.peer_fin.is_some_and(|f| self.rx.nxt() >= f)
    }

    /// Closes after everything was sent, its FIN riding on a retransmission of
    /// the last `len` bytes (as Linux sends it when the FIN joins the unacknowledged
    /// last segment in its retransmission queue).
    pub fn close_on_retransmission(&mut self, now: u64, len: u64) {
        let total = self.app.len() as u64;
        assert!(
            self.snd_max == total && !self.fin_sent && len <= total,
            "everything sent, no FIN yet"
        );
        self.want_close = true;
        self.fin_sent = true;
        self.retransmits += 1;
        let seq = self.seq_of(total - len);
        self.send(
            now,
            seq,
            Flags::ACK | Flags::PSH | Flags::FIN,
            Some((total - len, len)),
        );
        self.rto_at.get_or_insert(now + self.rto_us);
    }

    pub fn next_timer(&self) -> Option<u64> {
        [self.synack_at, self.rto_at, self.persist_at]
            .into_iter()
            .flatten()
            .min()
    }

    fn tsval(&self, now: u64) -> u32 {
        ((now / MS) as u32).wrapping_add(0x7000_0000)
    }

    fn seq_of(&self, o: u64) -> SeqNum {
        self.isn + 1 + o as u32
    }

    fn ack(&self) -> SeqNum {
        let fin = self.peer_fin.is_some_and(|f| self.rx.nxt() >= f);
        self.peer_isn + 1 + self.rx.nxt() as u32 + u32::from(fin)
    }

    fn window(&self) -> u16 {
        if self.own_ws > 0 {
            u16::MAX >> 1
        } else {
            u16::MAX
        }
    }

    fn seg_size(&self) -> u64 {
        u64::from(self.cfg.mss.min(self.peer_mss)) - if self.ts_on { 12 } else { 0 }
    }

    fn send(&mut self, now: u64, seq: SeqNum, flags: Flags, payload_range: Option<(u64, u64)>) {
        // As a receiver: SACK blocks for what is held above a hole (RFC 2018),
        // the one with the most recent segment first, as Linux sends them.
        let sack_on = self.cfg.sack && self.syns.first().is_some_and(|s| s.sack_perm);
        let mut blocks: Vec<(SeqNum, SeqNum)> = Vec::new();
        if sack_on {
            let mut ranges = self.rx.ooo_ranges();
            if let Some(o) = self.last_ooo
                && let Some(i) = ranges.iter().position(|&(l, r)| l <= o && o < r)
            {
                let r = ranges.remove(i);
                ranges.insert(0, r);
            }
            let base = self.peer_isn + 1;
            blocks = ranges
                .iter()
                .map(|&(l, r)| (base + l as u32, base + r as u32))
                .collect();
        }
        let opts = options(|b| {
            if self.ts_on {
                push_ts(b, self.tsval(now), self.ts_recent);
            }
            push_sack(b, &blocks);
        });
        let payload: &[u8] = match payload_range {
            Some((o, l)) => &self.app[o as usize..(o + l) as usize],
            None => &[],
        };
        let p = build(
            self.cfg.addr,
            self.peer.expect("peer"),
            seq,
            self.ack(),
            flags,
            self.window(),
            &opts,
            payload,
        );
        self.out.push(p);
    }

    fn send_synack(&mut self, now: u64) {
        let syn = self.syns.first().expect("a SYN").clone();
        let opts = options(|b| {
            push(b, &TcpOption::Mss(self.cfg.mss));
            if self.cfg.sack && syn.sack_perm {
                push(b, &TcpOption::SackPermitted);
            }
            if self.ts_on {
                push(
                    b,
                    &TcpOption::Timestamps {
                        tsval: self.tsval(now),
                        tsecr: self.ts_recent,
                    },
                );
            }
            if let (Some(w), Some(_)) = (self.cfg.ws, syn.ws) {
                push(b, &TcpOption::NoOperation);
                push(b, &TcpOption::WindowScale(w));
            }
            if self.cfg.mptcp && syn.capable().is_some() {
                push_mpc(
                    b,
                    MpCapableRepr {
                        version: 1,
                        flags: MpCapableFlags(MpCapableFlags::H),
                        form: MpCapableForm::SynAck {
                            sender_key: 0x5e4e_0000_0000_0001,
                        },
                    },
                );
            }
        });
        self.mpc_offered = self.cfg.mptcp && syn.capable().is_some();
        let p = build(
            self.cfg.addr,
            syn.src,
            self.isn,
            self.peer_isn + 1,
            Flags::SYN | Flags::ACK,
            u16::MAX,
            &opts,
            &[],
        );
        self.out.push(p);
        self.synack_at = Some(now + SEC);
        self.synack_first = match self.synack_first {
            None if self.syns.len() == 1 => Some(now),
            _ => Some(u64::MAX),
        };
    }

    /// Resets the connection (an application abort).
    pub fn abort(&mut self, _now: u64) {
        let p = build(
            self.cfg.addr,
            self.peer.expect("peer"),
            self.seq_of(self.snd_max) + u32::from(self.fin_sent),
            self.ack(),
            Flags::RST | Flags::ACK,
            0,
            &[],
            &[],
        );
        self.out.push(p);
        self.state = SState::Reset;
        self.rto_at = None;
        self.synack_at = None;
    }

    fn outstanding(&self) -> bool {
        self.una < self.snd_max || (self.fin_sent && !self.fin_acked)
    }

    pub fn pump(&mut self, now: u64) {
        if self.state != SState::Established {
            return;
        }
        let wnd = self
            .peer_wnd
            .min(self.cfg.window_segments.min(self.cwnd) * self.seg_size());
        let total = self.app.len() as u64;
        while self.snd_nxt < total {
            let inflight = self.snd_nxt - self.una;
            if inflight >= wnd {
                break;
            }
            let l = self
                .seg_size()
                .min(total - self.snd_nxt)
                .min(wnd - inflight);
            let seq = self.seq_of(self.snd_nxt);
            let again = self.snd_nxt < self.snd_max;
            if again {
                self.retransmits += 1;
            }
            self.sent.insert(self.snd_nxt + l, (now, again));
            let last = self.snd_nxt + l == total && self.want_close && self.cfg.fin_with_data;
            let flags = if last {
                self.fin_sent = true;
                Flags::ACK | Flags::PSH | Flags::FIN
            } else {
                Flags::ACK | Flags::PSH
            };
            self.send(now, seq, flags, Some((self.snd_nxt, l)));
            self.snd_nxt += l;
            self.snd_max = self.snd_max.max(self.snd_nxt);
            self.rto_at.get_or_insert(now + self.rto_us);
        }
        if self.want_close && self.snd_max == total && !self.fin_sent {
            self.fin_sent = true;
            let seq = self.seq_of(total);
            self.send(now, seq, Flags::ACK | Flags::FIN, None);
            self.rto_at.get_or_insert(now + self.rto_us);
        }
        if self.window_shut() {
            self.persist_at.get_or_insert(now + self.persist_us);
        } else {
            self.persist_at = None;
            self.persist_us = self.cfg.min_rto_us;
        }
    }

    /// A zero-window probe now, as the persist timer sends it (Linux's
    /// `tcp_xmit_probe_skb`: a pure ACK at SND.UNA - 1).
    pub fn send_zero_window_probe(&mut self, now: u64) {
        self.zero_window_probes += 1;
        let seq = self.seq_of(self.una) - 1;
        self.send(now, seq, Flags::ACK, None);
    }

    /// Data waits, nothing is in flight, and the peer's window is zero.
    fn window_shut(&self) -> bool {
        self.state == SState::Established
            && self.snd_nxt < self.app.len() as u64
            && self.una == self.snd_max
            && self.peer_wnd == 0
    }

    pub fn on_timer(&mut self, now: u64) {
        if self.synack_at.is_some_and(|t| t <= now) {
            self.synack_at = None;
            if self.state == SState::SynRcvd {
                self.send_synack(now);
            }
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            self.persist_at = None;
            if self.window_shut() {
                self.send_zero_window_probe(now);
                self.persist_us = (self.persist_us * 2).min(10 * SEC);
                self.persist_at = Some(now + self.persist_us);
            }
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            self.rto_at = None;
            if self.state != SState::Established || !self.outstanding() {
                return;
            }
            self.snd_nxt = self.una;
            if self.cfg.slow_start_after_rto {
                self.cwnd = 1;
            }
            self.rto_us = (self.rto_us * 2).min(10 * SEC);
            if self.fin_sent && !self.fin_acked {
                let seq = self.seq_of(self.app.len() as u64);
                self.retransmits += 1;
                self.send(now, seq, Flags::ACK | Flags::FIN, None);
            }
            self.rto_at = Some(now + self.rto_us);
            self.pump(now);
        }
    }

    fn on_ts(&mut self, p: &Pkt) {
        if let Some((tsval, _)) = p.ts {
            if let Some(last) = self.last_peer_tsval
                && (tsval.wrapping_sub(last) as i32) < 0
            {
                self.ts_regressions += 1;
            }
            self.last_peer_tsval = Some(tsval);
            self.ts_recent = tsval;
        }
    }

    pub fn on_packet(&mut self, now: u64, bytes: &[u8]) {
        let p = match parse(bytes) {
            Ok(p) => p,
            Err(e) => return self.anomaly(now, format!("unparsable packet: {e}")),
        };
        self.received.push(p.clone());
        if !p.checksum_ok {
            return self.anomaly(now, "bad TCP checksum");
        }
        if p.dst != self.cfg.addr {
            return self.anomaly(now, format!("packet for {}", p.dst));
        }
        // An MP_CAPABLE SYN is the converter asking whether the server speaks
        // MPTCP (RFC 8803 §5.1: the client listed kind 30); every other MPTCP
        // option toward a server is an anomaly, as is TFO.
        let mpc_syn = p.is_syn()
            && matches!(p.mptcp.as_slice(), [Mp::Capable(c)] if c.form == MpCapableForm::Syn);
        if (!p.mptcp.is_empty() && !mpc_syn) || p.fast_open {
            self.anomaly(now, "MPTCP or TFO option toward the server");
        }
        let mtu = usize::from(self.cfg.mss) + 20 + p.ip_len;
        if p.total_len > mtu {
            self.anomaly(now, format!("{} bytes exceed the MTU {mtu}", p.total_len));
        }
        if let Some(peer) = self.peer
            && p.src != peer
        {
            return self.anomaly(now, format!("packet from {} (peer {peer})", p.src));
        }
        if p.flags.rst() {
            self.rst = Some(p);
            self.state = SState::Reset;
            self.rto_at = None;
            self.synack_at = None;
            return;
        }
        if p.is_syn() {
            if !p.payload.is_empty() {
                self.anomaly(now, "data in the downstream SYN");
            }
            self.syns.push(p.clone());
            match (self.state, self.cfg.on_syn) {
                (_, OnSyn::Ignore) => {}
                (SState::Listen, OnSyn::Reset) => {
                    let r = build(
                        self.cfg.addr,
                        p.src,
                        SeqNum(0),
                        p.seq + 1,
                        Flags::RST | Flags::ACK,
                        0,
                        &[],
                        &[],
                    );
                    self.out.push(r);
                }
                (SState::Listen, OnSyn::Accept) => {
                    self.peer = Some(p.src);
                    self.peer_isn = p.seq;
                    self.peer_mss = p.mss.unwrap_or(536);
                    self.ts_on = self.cfg.ts && p.ts.is_some();
                    self.on_ts(&p);
                    (self.peer_ws, self.own_ws) = match (self.cfg.ws, p.ws) {
                        (Some(o), Some(w)) => (w.min(14), o),
                        _ => (0, 0),
                    };
                    self.state = SState::SynRcvd;
                    self.send_synack(now);
                }
                (SState::SynRcvd, _) if p.seq == self.peer_isn => self.send_synack(now),
                // A duplicated or late retransmitted SYN: challenge ACK (RFC 5961 §4).
                (SState::Established, _) if p.seq == self.peer_isn => {
                    let seq = self.seq_of(self.snd_max) + u32::from(self.fin_sent);
                    self.send(now, seq, Flags::ACK, None);
                }
                _ => self.anomaly(now, "unexpected SYN"),
            }
            return;
        }
        if self.state == SState::SynRcvd {
            if p.flags.ack() && p.ack == self.isn + 1 {
                self.state = SState::Established;
                self.synack_at = None;
                // Any MPTCP option here was an anomaly above.
                self.fell_back = self.mpc_offered;
                self.handshake_rtt = self
                    .synack_first
                    .filter(|&t| t != u64::MAX)
                    .map(|t| now - t);
            } else {
                return self.anomaly(now, "bad handshake ACK");
            }
        }
        if self.state != SState::Established {
            return;
        }
        self.on_ts(&p);
        let mut progress = false;
        if p.flags.ack() {
            let mut off = i64::from(p.ack.diff(self.isn + 1));
            let end = self.app.len() as i64;
            if self.fin_sent && off == end + 1 {
                if !self.fin_acked {
                    progress = true;
                }
                self.fin_acked = true;
                off = end;
            }
            if off > self.snd_max as i64 {
                self.anomaly(now, format!("ACK {off} beyond {}", self.snd_max));
            } else if off > self.una as i64 {
                let acked = off as u64 - self.una;
                let newest = self.sent.range(..=off as u64).next_back().map(|(_, &v)| v);
                if let Some((t, false)) = newest {
                    self.rtt_samples.push((now, now - t));
                }
                self.sent = self.sent.split_off(&(off as u64 + 1));
                self.una = off as u64;
                // An ACK for data sent before an RTO rewound `snd_nxt`.
                self.snd_nxt = self.snd_nxt.max(self.una);
                if self.cwnd < self.cfg.window_segments {
                    self.cwnd += acked.div_ceil(self.seg_size()).max(1);
                }
                progress = true;
            }
            self.peer_wnd = u64::from(p.window) << self.peer_ws;
            if self.cfg.sack_recovery
                && self.sack_rexmit_at != Some(self.una)
                && let Some(left) = p
                    .sack_blocks
                    .iter()
                    .map(|&(l, _)| i64::from(l.diff(self.isn + 1)))
                    .filter(|&l| l > self.una as i64)
                    .min()
            {
                let end = (left as u64)
                    .min(self.snd_max)
                    .min(self.una + self.seg_size());
                if end > self.una {
                    self.sack_rexmit_at = Some(self.una);
                    self.retransmits += 1;
                    self.sack_retransmits += 1;
                    let seq = self.seq_of(self.una);
                    self.send(now, seq, Flags::ACK, Some((self.una, end - self.una)));
                }
            }
        }
        if progress {
            self.rto_us = self.cfg.min_rto_us;
            self.rto_at = self.outstanding().then_some(now + self.rto_us);
        }
        if !p.payload.is_empty() || p.flags.fin() {
            let off = i64::from(p.seq.diff(self.peer_isn + 1));
            if off > self.rx.nxt() as i64 && !p.payload.is_empty() {
                self.last_ooo = Some(off as u64);
            }
            self.rx.insert(off, &p.payload);
            if p.flags.fin() {
                let f = (off + p.payload.len() as i64) as u64;
                if self.peer_fin.is_some_and(|g| g != f) {
                    self.anomaly(now, "FIN moved");
                }
                self.peer_fin = Some(f);
            }
            let seq = self.seq_of(self.snd_max) + u32::from(self.fin_sent);
            self.send(now, seq, Flags::ACK, None);
        }
        self.pump(now);
    }
}

/// SACK blocks (RFC 2018), as many as the option room allows, NOP-aligned.
pub(crate) fn push_sack(b: &mut OptionsBuilder<'_>, blocks: &[(SeqNum, SeqNum)]) {
    let room = b.remaining();
    if blocks.is_empty() || room < 12 {
        return;
    }
    let n = ((room - 4) / 8).min(blocks.len()).min(4);
    let mut buf = [0u8; 34];
    let len = tcp_options::SackBlocks::emit_blocks(&blocks[..n], &mut buf).expect("SACK");
    push(b, &TcpOption::NoOperation);
    push(b, &TcpOption::NoOperation);
    b.push_raw(&buf[..len]).expect("SACK fits");
}

// ------------------------------------------------------------------ the simulation

/// A packet the engine sent (forwarded or originated).
#[derive(Debug, Clone)]
pub struct Traced {
    pub at: u64,
    pub port: Port,
    pub originated: bool,
    pub bytes: Vec<u8>,
}

impl Traced {
    pub fn pkt(&self) -> Pkt {
        parse(&self.bytes).expect("engine output parses")
    }
}

/// What a simulation is built from.
#[derive(Debug, Clone)]
pub struct Setup {
    pub client: ClientCfg,
    pub server: ServerCfg,
    pub access: LinkCfg,
    pub core: LinkCfg,
    pub engine: EngineConfig,
    pub seed: u64,
    /// The engine's shard index and the shard count (0 of 1 unless a test shards).
    pub shard: (u16, u16),
}

impl Setup {
    /// MPTCP client → server of the given families, ideal links (5 ms access,
    /// 10 ms core one way).
    pub fn new(v6_client: bool, v6_server: bool) -> Self {
        let (caddr, service) = if v6_client {
            (CLIENT_V6, SERVICE_V6)
        } else {
            (CLIENT_V4, SERVICE_V4)
        };
        let server = if v6_server { SERVER_V6 } else { SERVER_V4 };
        Setup {
            client: ClientCfg::new(caddr, service, server),
            server: ServerCfg::new(server),
            access: LinkCfg::ideal(5 * MS),
            core: LinkCfg::ideal(10 * MS),
            engine: engine_config(),
            seed: 7,
            shard: (0, 1),
        }
    }

    pub fn v4() -> Self {
        Self::new(false, false)
    }

    pub fn build(self) -> Sim {
        let s = self.seed;
        Sim {
            now: 0,
            engine: Engine::new(
                self.engine,
                self.shard.0,
                self.shard.1,
                s ^ 0xe6e,
                Instant(0),
            )
            .expect("config"),
            client: Client::new(ClientCfg {
                seed: self.client.seed ^ s,
                ..self.client
            }),
            server: Server::new(ServerCfg {
                seed: self.server.seed ^ s,
                ..self.server
            }),
            c2e: Link::new(self.access, s ^ 1),
            e2c: Link::new(self.access, s ^ 2),
            s2e: Link::new(self.core, s ^ 3),
            e2s: Link::new(self.core, s ^ 4),
            trace: Vec::new(),
            inputs: Vec::new(),
            drops: Vec::new(),
            anomalies: Vec::new(),
            buf: vec![0; 2048],
            started: false,
        }
    }
}

/// Client — access links — engine — core links — server.
#[derive(Debug)]
pub struct Sim {
    pub now: u64,
    pub engine: Engine<VecPacket>,
    pub client: Client,
    pub server: Server,
    pub c2e: Link,
    pub e2c: Link,
    pub s2e: Link,
    pub e2s: Link,
    /// Everything the engine sent.
    pub trace: Vec<Traced>,
    /// Everything handed to the engine (`originated` is false), with its port.
    pub inputs: Vec<Traced>,
    /// Every drop the engine reported, with its time and ingress port.
    pub drops: Vec<(u64, Port, DropReason)>,
    /// Problems with engine output seen at the engine (before any link).
    pub anomalies: Vec<String>,
    buf: Vec<u8>,
    started: bool,
}

impl Sim {
    /// The client sends its SYN now.
    pub fn start(&mut self) {
        if !self.started {
            self.started = true;
            self.client.start(self.now);
        }
    }

    fn flush(&mut self) {
        for p in std::mem::take(&mut self.client.out) {
            self.c2e.send(self.now, p);
        }
        for p in std::mem::take(&mut self.server.out) {
            self.s2e.send(self.now, p);
        }
    }

    fn emit(&mut self, port: Port, bytes: Vec<u8>, originated: bool) {
        match parse(&bytes) {
            Ok(p) => {
                if !p.checksum_ok {
                    self.anomalies
                        .push(format!("engine @{}: bad checksum {p:?}", self.now));
                }
                let ok = match port {
                    Port::Access => {
                        p.src == self.client.cfg.service && p.dst == self.client.cfg.addr
                    }
                    Port::Core => {
                        p.dst == self.server.cfg.addr
                            && self.engine.config().pool.contains(p.src.ip())
                    }
                };
                if !ok {
                    self.anomalies.push(format!(
                        "engine @{}: {:?} packet {} -> {}",
                        self.now, port, p.src, p.dst
                    ));
                }
            }
            Err(e) => self
                .anomalies
                .push(format!("engine @{}: unparsable output: {e}", self.now)),
        }
        self.trace.push(Traced {
            at: self.now,
            port,
            originated,
            bytes: bytes.clone(),
        });
        match port {
            Port::Access => self.e2c.send(self.now, bytes),
            Port::Core => self.e2s.send(self.now, bytes),
        }
    }

    fn drain(&mut self) {
        let now = Instant(self.now);
        while let Some(t) = self.engine.poll_transmit(now, &mut self.buf) {
            let b = self.buf[..t.len].to_vec();
            self.emit(t.port, b, true);
        }
    }

    /// Hands a packet to the engine as if it arrived on `port` now.
    pub fn engine_in(&mut self, port: Port, bytes: &[u8]) -> Action {
        self.inputs.push(Traced {
            at: self.now,
            port,
            originated: false,
            bytes: bytes.to_vec(),
        });
        let mut p = VecPacket::from_bytes(bytes);
        let a = self.engine.handle_packet(Instant(self.now), port, &mut p);
        match a {
            Action::Forward(to) => self.emit(to, p.to_vec(), false),
            Action::Drop(r) => self.drops.push((self.now, port, r)),
            Action::Consumed => {}
        }
        self.drain();
        a
    }

    fn next_event(&self) -> Option<u64> {
        [
            self.engine.poll_timeout().map(|i| i.0),
            self.c2e.next_at(),
            self.s2e.next_at(),
            self.e2c.next_at(),
            self.e2s.next_at(),
            self.client.next_timer(),
            self.server.next_timer(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Processes the next event; false when nothing is left to do.
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(t) = self.next_event() else {
            return false;
        };
        self.now = self.now.max(t);
        let now = self.now;
        if self.engine.poll_timeout().is_some_and(|t| t.0 <= now) {
            self.engine.handle_timeout(Instant(now));
            self.drain();
        } else if let Some(p) = self.c2e.pop_due(now) {
            let _ = self.engine_in(Port::Access, &p);
        } else if let Some(p) = self.s2e.pop_due(now) {
            let _ = self.engine_in(Port::Core, &p);
        } else if let Some(p) = self.e2c.pop_due(now) {
            self.client.on_packet(now, &p);
        } else if let Some(p) = self.e2s.pop_due(now) {
            self.server.on_packet(now, &p);
        } else if self.client.next_timer().is_some_and(|t| t <= now) {
            self.client.on_timer(now);
        } else if self.server.next_timer().is_some_and(|t| t <= now) {
            self.server.on_timer(now);
        }
        self.flush();
        true
    }

    /// Runs until `done` holds (true) or `limit_us` of simulated time passed (false).
    pub fn run_until(&mut self, limit_us: u64, mut done: impl FnMut(&Sim) -> bool) -> bool {
        self.start();
        // Applications may have written or closed since the last event.
        self.client.pump(self.now);
        self.server.pump(self.now);
        let deadline = self.now + limit_us;
        loop {
            self.flush();
            if done(self) {
                return true;
            }
            match self.next_event() {
                Some(t) if t <= deadline => {
                    self.step();
                }
                _ => {
                    self.now = deadline;
                    return done(self);
                }
            }
        }
    }

    /// Runs for `us` of simulated time.
    pub fn run_for(&mut self, us: u64) {
        self.run_until(us, |_| false);
    }

    /// Every anomaly of the models and at the engine.
    pub fn all_anomalies(&self) -> Vec<String> {
        let mut v = self.anomalies.clone();
        v.extend(self.client.anomalies.iter().cloned());
        v.extend(self.server.anomalies.iter().cloned());
        if self.client.rx.conflicts > 0 {
            v.push(format!(
                "client: {} conflicting retransmissions",
                self.client.rx.conflicts
            ));
        }
        if self.server.rx.conflicts > 0 {
            v.push(format!(
                "server: {} conflicting retransmissions",
                self.server.rx.conflicts
            ));
        }
        v
    }

    #[track_caller]
    pub fn assert_clean(&self) {
        let a = self.all_anomalies();
        assert!(
            a.is_empty(),
            "anomalies: {a:#?}\ncounters: {:?}",
            self.engine.counters()
        );
    }

    /// Engine output on `port`, decoded.
    pub fn sent_on(&self, port: Port) -> Vec<Pkt> {
        self.trace
            .iter()
            .filter(|t| t.port == port)
            .map(Traced::pkt)
            .collect()
    }
}

/// One line per packet.
pub fn describe(p: &Pkt) -> String {
    let mut s = format!(
        "{} > {} {:?} seq {} ack {} win {} len {}",
        p.src,
        p.dst,
        p.flags,
        p.seq,
        p.ack,
        p.window,
        p.payload.len()
    );
    for o in &p.mptcp {
        match o {
            Mp::Capable(c) => s += &format!(" MPC{:?}", c.form),
            Mp::Dss(d) => {
                s += " DSS";
                if let Some(a) = d.data_ack {
                    s += &format!(" ack {}", a.raw());
                }
                if let Some(m) = d.mapping {
                    s += &format!(" map {}/{}/{}", m.dsn.raw(), m.ssn, m.data_len);
                }
                if d.data_fin {
                    s += " F";
                }
            }
            Mp::Fastclose(k) => s += &format!(" FASTCLOSE {k:x}"),
            Mp::Join(j) => s += &format!(" JOIN{j:?}"),
            Mp::TcpRst(r) => s += &format!(" TCPRST {:?}", r.reason),
            Mp::Prio(p) => s += &format!(" PRIO b={}", p.backup),
            Mp::AddAddr(a) => {
                s += &format!(" ADD_ADDR id={} {} e={}", a.addr_id, a.addr, a.is_echo());
            }
            Mp::Fail(d) => s += &format!(" MP_FAIL {}", d.0),
            Mp::Other(t) => s += &format!(" mptcp-{t}"),
        }
    }
    s
}

impl Sim {
    /// The engine's inputs and outputs in time order, one line each.
    pub fn dump(&self) -> String {
        let mut v: Vec<(u64, usize, String)> = Vec::new();
        for (i, t) in self.inputs.iter().enumerate() {
            let d = parse(&t.bytes).map_or_else(|e| e, |p| describe(&p));
            v.push((t.at, 2 * i, format!("in  {:?} {d}", t.port)));
        }
        for (i, t) in self.trace.iter().enumerate() {
            let d = parse(&t.bytes).map_or_else(|e| e, |p| describe(&p));
            let o = if t.originated { "gen" } else { "fwd" };
            v.push((t.at, 2 * i + 1, format!("{o} {:?} {d}", t.port)));
        }
        v.sort_by_key(|e| (e.0, e.1));
        let mut s = String::new();
        for (t, _, l) in v {
            s += &format!("{:>10} {l}\n", t);
        }
        s += &format!("drops: {:?}\n", self.drops);
        s
    }
}
