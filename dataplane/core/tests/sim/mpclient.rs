//! Multipath in the simulator: an MPTCP v1 client that opens its connection like
//! [`Client`](super::Client) (Convert request in a TFO-style SYN with MP_CAPABLE) and
//! then joins further subflows from other addresses (RFC 8684 §3.2), one access path
//! per subflow with its own delay, rate, loss and outages, the engine, and the plain
//! TCP [`Server`](super::Server) behind it.
//!
//! The client is written from RFC 8684, not from the engine: it verifies the
//! converter's MP_JOIN HMAC, retransmits its third ACK until the converter
//! acknowledges it (and sends nothing before), receives each subflow as a TCP
//! receiver (cumulative ACK, SACK blocks, duplicate ACKs, timestamp echo), passes
//! subflow data to the data level only in subflow order (as a Linux receiver does)
//! through the DSS mappings, reassembles one data stream from all subflows, and
//! sends its own data on any subflow under mappings of its own, with per-subflow
//! retransmission (same mapping, same SSN: §3.3.6) and reinjection of the data of a
//! subflow that stops answering on the others.
//!
//! Everything it finds wrong with what it receives goes to `anomalies` (a scenario
//! asserts the list is empty): data outside any mapping, two mappings that disagree
//! about a subflow byte, DATA_ACK going backwards on a subflow, data beyond the
//! data-level window, timestamps that were never ours, a RST on a subflow that was
//! not expected, a connection reset, bytes that differ from an earlier copy; and, at
//! the end, subflow holes never filled (subflow integrity, §3.3.6).
//!
//! Offsets: subflow offset `o` is SSN `o + 1`, subflow sequence `ISN + 1 + syn_len +
//! o` (`syn_len` is the SYN payload on the initial subflow, RFC 8684 App. B; 0 on a
//! join); data offset `d` is DSN `IDSN + 1 + d` in either direction.
//!
//! What the model leaves out (keep it in mind when reading a failure): no
//! congestion control (a fixed send window per subflow, twice its path's
//! bandwidth-delay product), NewReno fast retransmit on three duplicate ACKs and
//! go-back-N on RTO (SACK blocks are sent, not used), an immediate ACK for every
//! segment (no delayed ACK), an application that reads at once (the advertised
//! data-level window is constant), joins only after full establishment, a stale
//! subflow (RTO without progress) probes with one segment per RTO and its data is
//! reinjected only on a subflow that is not stale (as Linux, which reinjects only
//! on subflows with nothing outstanding), no ADD_ADDR, no MP_FAIL. Access links are
//! FIFO without reordering or duplication, which is what makes the per-subflow
//! monotonicity checks (DATA_ACK, TSval) sound.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hac_core::{Action, DropReason, Engine, EngineConfig, Instant, Port, VecPacket};
use hac_wire::checksum::{self, Checksum};
use hac_wire::crypto::{join_hmac_truncated64, join_hmac160, key_material};
use hac_wire::mptcp::{
    AddAddrRepr, DataSeqField, DssRepr, Mapping, MpCapableFlags, MpCapableForm, MpCapableRepr,
    MpJoinRepr, MpPrioRepr, MpTcpRstFlags, MpTcpRstRepr, MptcpOption, RemoveAddrRepr, TcpRstReason,
};
use hac_wire::seq::{DataSeq, SeqNum};
use hac_wire::tcp::Flags;
use hac_wire::tcp_options::{OptionsBuilder, TcpOption};

use super::{
    DropRule, Link, LinkCfg, MS, Pkt, Reasm, Rng, SEC, SERVER_V4, SERVER_V6, SERVICE_V4,
    SERVICE_V6, Server, ServerCfg, build, convert_len, convert_request, describe, engine_config,
    options, parse, push, push_dss, push_mpc, push_sack, push_ts,
};

// ------------------------------------------------------------------ addresses

/// The client's address for subflow `i`: 198.18.{i+1}.2 or 2001:db8:{i+1}::2, port
/// 40000 + i (subflow 0 is the existing models' `CLIENT_V4` / `CLIENT_V6`).
pub fn client_addr(v6: bool, i: usize) -> SocketAddr {
    let n = i as u16 + 1;
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 2))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 18, n as u8, 2))
    };
    SocketAddr::new(ip, 40000 + i as u16)
}

// ------------------------------------------------------------------ join crypto

/// The MP_JOIN handshake as the subflow initiator computes it (RFC 8684 §3.2): host A
/// is the client, host B the converter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinCrypto {
    /// Key A (ours, sent in our MP_CAPABLE third ACK).
    pub local_key: u64,
    /// Key B (the converter's, from its MP_CAPABLE SYN-ACK).
    pub remote_key: u64,
}

impl JoinCrypto {
    /// The join SYN's option: the *receiver's* token (token of key B) and our nonce.
    pub fn syn(&self, backup: bool, addr_id: u8, nonce_a: u32) -> MpJoinRepr {
        MpJoinRepr::Syn {
            backup,
            addr_id,
            token: key_material(self.remote_key).token,
            nonce: nonce_a,
        }
    }

    /// Checks the SYN-ACK's truncated HMAC: leftmost 64 bits of
    /// HMAC(Key-B ‖ Key-A, R-B ‖ R-A). Returns R-B.
    pub fn check_synack(&self, nonce_a: u32, synack: MpJoinRepr) -> Result<u32, String> {
        let MpJoinRepr::SynAck { hmac, nonce, .. } = synack else {
            return Err(format!("not the SYN-ACK form of MP_JOIN: {synack:?}"));
        };
        let want = join_hmac_truncated64(self.remote_key, self.local_key, nonce, nonce_a);
        if hmac != want {
            return Err(format!("SYN-ACK HMAC {hmac:016x}, expected {want:016x}"));
        }
        Ok(nonce)
    }

    /// The third ACK's option: leftmost 160 bits of HMAC(Key-A ‖ Key-B, R-A ‖ R-B).
    pub fn third_ack(&self, nonce_a: u32, nonce_b: u32) -> MpJoinRepr {
        MpJoinRepr::Ack {
            hmac: join_hmac160(self.local_key, self.remote_key, nonce_a, nonce_b),
        }
    }
}

// ------------------------------------------------------------------ access paths

/// One direction of an access path.
#[derive(Debug, Clone, Copy)]
pub struct PathCfg {
    /// One-way propagation delay.
    pub delay_us: u64,
    /// Bottleneck rate in bit/s (IP bytes); 0 is unlimited.
    pub rate_bps: u64,
    /// Random loss probability per packet.
    pub loss: f64,
    /// Longest queueing delay accepted before tail drop; 0 is unlimited.
    pub queue_us: u64,
    /// SYNs are never lost at random (targeted loss still applies).
    pub spare_syn: bool,
}

impl PathCfg {
    /// `rate_mbit` Mbit/s, `delay_ms` one way, no loss, unlimited queue.
    pub fn new(rate_mbit: u64, delay_ms: u64) -> Self {
        PathCfg {
            delay_us: delay_ms * MS,
            rate_bps: rate_mbit * 1_000_000,
            loss: 0.0,
            queue_us: 0,
            spare_syn: true,
        }
    }

    pub fn lossy(self, loss: f64) -> Self {
        PathCfg { loss, ..self }
    }
}

/// An access path: one link per direction.
#[derive(Debug, Clone, Copy)]
pub struct PathSpec {
    /// Client → converter.
    pub up: PathCfg,
    /// Converter → client.
    pub down: PathCfg,
}

impl PathSpec {
    /// The same rate and delay both ways.
    pub fn symmetric(rate_mbit: u64, delay_ms: u64) -> Self {
        PathSpec {
            up: PathCfg::new(rate_mbit, delay_ms),
            down: PathCfg::new(rate_mbit, delay_ms),
        }
    }

    /// Round-trip propagation time.
    pub fn rtt_us(&self) -> u64 {
        self.up.delay_us + self.down.delay_us
    }
}

/// Rewrites a packet in place (a middlebox on an access path).
pub type Mangle = Box<dyn FnMut(&mut Vec<u8>)>;

/// A one-way access link: FIFO, serialisation at `rate_bps`, then `delay_us`;
/// random loss on entry, tail drop beyond `queue_us`, and outages during which
/// everything on the link is lost.
pub struct AccessLink {
    pub cfg: PathCfg,
    rng: Rng,
    /// (sent, arrives, packet), arrival times non-decreasing.
    q: VecDeque<(u64, u64, Vec<u8>)>,
    busy_until: u64,
    /// Intervals `[from, until)` during which the link is cut.
    pub outages: Vec<(u64, u64)>,
    /// Drops packets for which it returns true (targeted loss in scenarios).
    pub drop_rule: Option<DropRule>,
    /// Rewrites packets on entry (a middlebox in scenarios).
    pub mangle: Option<Mangle>,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub cut_drops: u64,
    pub queue_drops: u64,
    /// Longest queueing delay a packet saw (µs), and the sum over packets.
    pub max_queue_us: u64,
    pub sum_queue_us: u64,
}

impl fmt::Debug for AccessLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLink")
            .field("cfg", &self.cfg)
            .field("queued", &self.q.len())
            .field("sent", &self.sent)
            .field("delivered", &self.delivered)
            .field("lost", &self.lost)
            .field("cut_drops", &self.cut_drops)
            .field("queue_drops", &self.queue_drops)
            .finish()
    }
}

impl AccessLink {
    pub fn new(cfg: PathCfg, seed: u64) -> Self {
        AccessLink {
            cfg,
            rng: Rng::new(seed),
            q: VecDeque::new(),
            busy_until: 0,
            outages: Vec::new(),
            drop_rule: None,
            mangle: None,
            sent: 0,
            delivered: 0,
            lost: 0,
            cut_drops: 0,
            queue_drops: 0,
            max_queue_us: 0,
            sum_queue_us: 0,
        }
    }

    fn cut_during(&self, from: u64, to: u64) -> bool {
        self.outages.iter().any(|&(a, b)| from < b && to >= a)
    }

    pub fn is_cut(&self, at: u64) -> bool {
        self.cut_during(at, at)
    }

    pub fn send(&mut self, now: u64, mut p: Vec<u8>) {
        self.sent += 1;
        if let Some(m) = &mut self.mangle {
            m(&mut p);
        }
        let pk = parse(&p).ok();
        if let (Some(rule), Some(pk)) = (&mut self.drop_rule, &pk)
            && rule(pk)
        {
            self.lost += 1;
            return;
        }
        if self.is_cut(now) {
            self.cut_drops += 1;
            return;
        }
        let syn = pk.as_ref().is_some_and(|k| k.flags.syn());
        if !(self.cfg.spare_syn && syn) && self.rng.chance(self.cfg.loss) {
            self.lost += 1;
            return;
        }
        let start = self.busy_until.max(now);
        if self.cfg.queue_us > 0 && start - now > self.cfg.queue_us {
            self.queue_drops += 1;
            return;
        }
        let tx = if self.cfg.rate_bps == 0 {
            0
        } else {
            (p.len() as u64 * 8 * SEC).div_ceil(self.cfg.rate_bps)
        };
        self.max_queue_us = self.max_queue_us.max(start - now);
        self.sum_queue_us += start - now;
        self.busy_until = start + tx;
        self.q
            .push_back((now, self.busy_until + self.cfg.delay_us, p));
    }

    pub fn next_at(&self) -> Option<u64> {
        self.q.front().map(|e| e.1)
    }

    /// The next packet due by `now`, if any (packets caught by an outage are
    /// dropped on the way).
    pub fn pop_due(&mut self, now: u64) -> Option<Vec<u8>> {
        while self.next_at()? <= now {
            let (sent, at, p) = self.q.pop_front()?;
            if self.cut_during(sent, at) {
                self.cut_drops += 1;
                continue;
            }
            self.delivered += 1;
            return Some(p);
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Queueing delay a packet sent now would see.
    pub fn backlog_us(&self, now: u64) -> u64 {
        self.busy_until.saturating_sub(now)
    }
}

// ------------------------------------------------------------------ client config

/// How a planned subflow misbehaves on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// A correct join.
    None,
    /// The join SYN carries a token the converter never issued.
    WrongToken,
    /// The third ACK carries a wrong HMAC.
    BadThirdAckHmac,
}

/// One subflow of the client (index 0 is the initial subflow; its plan's `after_us`,
/// `backup` and `forge` are ignored).
#[derive(Debug, Clone)]
pub struct SubflowPlan {
    /// Ask for a backup subflow (B flag of the join SYN, RFC 8684 §3.2).
    pub backup: bool,
    /// Join this long after the connection is fully established.
    pub after_us: u64,
    pub forge: Forge,
    /// A RST (with MP_TCPRST) is the expected answer: not an anomaly.
    pub expect_refusal: bool,
    /// Our send window on this subflow, in segments (the model's fixed cwnd).
    pub window_segments: u64,
    /// Source address (default [`client_addr`]).
    pub addr: Option<SocketAddr>,
    /// Address ID (default: the subflow index).
    pub addr_id: Option<u8>,
    /// Converter address and port this subflow is opened to (default: the service
    /// address of the configuration, e.g. one the converter announced).
    pub service: Option<SocketAddr>,
}

impl SubflowPlan {
    pub fn join() -> Self {
        SubflowPlan {
            backup: false,
            after_us: 0,
            forge: Forge::None,
            expect_refusal: false,
            window_segments: 64,
            addr: None,
            addr_id: None,
            service: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MpClientCfg {
    pub v6: bool,
    pub service: SocketAddr,
    /// Where the Connect TLV points.
    pub target: SocketAddr,
    /// Ask for DSS checksums (flag A in the SYN).
    pub csum: bool,
    pub mss: u16,
    pub ws: Option<u8>,
    pub ts: bool,
    pub sack: bool,
    /// Application bytes after the Convert TLVs in the SYN.
    pub syn_app: Vec<u8>,
    /// Segments per DSS mapping of our data.
    pub mapping_segments: usize,
    /// Probability that a later segment of a mapping repeats it. Linux repeats the
    /// mapping of a TSO skb on every segment (v4-path1.pcap: one mapping, three
    /// segments, three DSS options): 1.0. RFC 8684 §3.3.1 lets a sender give it
    /// once; lower values test a receiver that remembers it.
    pub repeat_mapping: f64,
    pub min_rto_us: u64,
    pub max_rto_us: u64,
    /// Data-level receive buffer: the window we advertise relative to DATA_ACK
    /// (RFC 8684 §3.3.4), the application reading at once.
    pub rcv_buf: u64,
    /// Advertise the buffer's free space, as Linux does: data held out of order
    /// above the DATA_ACK takes room, so the window (relative to the DATA_ACK of
    /// the same segment) varies from segment to segment; its right edge never
    /// moves left (RFC 8684 §3.3.5). Default false: always `rcv_buf`.
    pub ofo_takes_room: bool,
    /// The application reads nothing from `.0` to `.1` (µs): what arrives
    /// meanwhile stays in the buffer and closes the window (relative to the
    /// DATA_ACK, right edge kept); at `.1` it reads everything and a window update
    /// goes out on every subflow, as Linux's does.
    pub read_pause: Option<(u64, u64)>,
    /// The subflows, the initial one first.
    pub subflows: Vec<SubflowPlan>,
    /// Fixed MPTCP key (default: random).
    pub key: Option<u64>,
    /// Echo the converter's ADD_ADDRs (RFC 8684 §3.4.1; default true).
    pub echo_add_addr: bool,
    pub seed: u64,
}

impl MpClientCfg {
    pub fn new(v6: bool, target: SocketAddr, subflows: usize) -> Self {
        MpClientCfg {
            v6,
            service: if v6 { SERVICE_V6 } else { SERVICE_V4 },
            target,
            csum: false,
            mss: if v6 { 1440 } else { 1460 },
            ws: Some(7),
            ts: true,
            sack: true,
            syn_app: Vec::new(),
            mapping_segments: 3,
            repeat_mapping: 1.0,
            min_rto_us: 200 * MS,
            max_rto_us: SEC,
            rcv_buf: 4 << 20,
            ofo_takes_room: false,
            read_pause: None,
            subflows: (0..subflows.max(1)).map(|_| SubflowPlan::join()).collect(),
            key: None,
            echo_add_addr: true,
            seed: 1,
        }
    }
}

// ------------------------------------------------------------------ subflow state

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    /// Not opened yet.
    Planned,
    /// SYN sent, waiting for the SYN-ACK.
    SynSent,
    /// Join: third ACK sent, waiting for the converter's ACK of it (RFC 8684 §3.2:
    /// no data before).
    PreEstablished,
    Established,
    /// RST in answer to the SYN or the third ACK.
    Refused,
    /// RST after establishment (or our own RST).
    Reset,
    /// Closed by us after REMOVE_ADDR.
    Removed,
}

/// A mapping of our data: subflow offset `off` carries data offset `data` for `len`.
#[derive(Debug, Clone, Copy)]
struct TxMap {
    off: u64,
    data: u64,
    len: u64,
    reinjected: bool,
}

/// One subflow of the multipath client.
#[derive(Debug)]
pub struct Subflow {
    pub idx: usize,
    pub plan: SubflowPlan,
    pub addr: SocketAddr,
    /// The converter's end of this subflow.
    pub service: SocketAddr,
    /// The converter's Address ID in its join SYN-ACK.
    pub remote_addr_id: Option<u8>,
    pub addr_id: u8,
    /// Backup priority we asked for (join B flag or MP_PRIO).
    pub backup: bool,
    pub state: SubState,
    pub isn: SeqNum,
    /// SYN payload bytes (initial subflow) — outside the SSN space.
    pub syn_len: u32,
    pub nonce: u32,
    pub remote_nonce: u32,
    pub remote_isn: SeqNum,
    pub syns_sent: u32,
    syn_at: Option<u64>,
    pub syn_rto: u64,
    pub join_at: Option<u64>,
    third_ack_at: Option<u64>,
    pub third_acks_sent: u32,
    pub synack: Option<Pkt>,
    pub opened_at: Option<u64>,
    pub established_at: Option<u64>,
    // options
    pub ts_on: bool,
    ts_off: u32,
    ts_first: u32,
    ts_last_sent: u32,
    ts_recent: u32,
    last_peer_tsval: Option<u32>,
    pub sack_on: bool,
    pub ws_on: bool,
    pub peer_ws: u8,
    pub peer_mss: u16,
    // receive side
    /// Subflow-level reassembly (offset 0 = SSN 1): checks that every copy of a
    /// subflow byte is the same.
    pub rx: Reasm,
    /// Mappings received: SSN → (DSN of that SSN, length without DATA_FIN).
    maps: BTreeMap<u32, (DataSeq, u32)>,
    pub peer_fin: Option<u64>,
    last_data_ack: Option<DataSeq>,
    last_seg_window: u16,
    /// Offset of the most recently received out-of-order segment (SACK order).
    last_ooo: Option<u64>,
    // send side
    pub snd_una: u64,
    pub snd_nxt: u64,
    pub snd_max: u64,
    txmaps: Vec<TxMap>,
    pub fin_sent: bool,
    fin_off: u64,
    pub fin_acked: bool,
    rto_at: Option<u64>,
    rto_us: u64,
    dupacks: u32,
    recover: Option<u64>,
    pub srtt_us: Option<u64>,
    rttvar_us: u64,
    rtt_probe: Option<(u64, u64)>,
    /// No ACK progress within an RTO: not used for new data, its data reinjected.
    pub stale: bool,
    /// Send window in segments: the plan's fixed window, one segment after an RTO
    /// growing by the segments acknowledged (RFC 5681 §3.1 loss window, slow start).
    pub cwnd: u64,
    // records
    /// Every RST received on this subflow.
    pub rsts: Vec<Pkt>,
    /// Payload arrivals (time, bytes), duplicates included.
    pub rx_log: Vec<(u64, u32)>,
    /// First transmissions of our data (time, bytes).
    pub tx_log: Vec<(u64, u32)>,
    pub rx_segments: u64,
    pub tx_retransmits: u64,
    /// Duplicate ACKs received (RFC 5681 §2 definition) for our data.
    pub dupacks_rx: u64,
    /// Retransmission timeouts with data outstanding.
    pub rtos: u64,
    /// After an RTO: (end of the retransmitted segment, SND.MAX then, the TSval of
    /// the retransmission). The first ACK after it shows the timeout spurious when
    /// it acknowledges beyond that segment (F-RTO, RFC 5682) or echoes an older
    /// TSval, i.e. answers the original transmission (Eifel, RFC 3522; Linux does
    /// both: `tcp_process_loss`, `tcp_packet_delayed`).
    frto: Option<(u64, u64, Option<u32>)>,
    /// RTOs found spurious.
    pub spurious_rtos: u64,
    /// MP_PRIO options the converter sent on this subflow.
    pub prio_received: Vec<bool>,
}

impl Subflow {
    fn new(
        idx: usize,
        plan: SubflowPlan,
        addr: SocketAddr,
        service: SocketAddr,
        rng: &mut Rng,
        min_rto: u64,
    ) -> Self {
        let cwnd = plan.window_segments;
        Subflow {
            cwnd,
            idx,
            service,
            remote_addr_id: None,
            addr_id: plan.addr_id.unwrap_or(idx as u8),
            backup: idx > 0 && plan.backup,
            plan,
            addr,
            state: SubState::Planned,
            isn: SeqNum(rng.next_u64() as u32),
            syn_len: 0,
            nonce: rng.next_u64() as u32,
            remote_nonce: 0,
            remote_isn: SeqNum(0),
            syns_sent: 0,
            syn_at: None,
            syn_rto: SEC,
            join_at: None,
            third_ack_at: None,
            third_acks_sent: 0,
            synack: None,
            opened_at: None,
            established_at: None,
            ts_on: false,
            ts_off: rng.next_u64() as u32,
            ts_first: 0,
            ts_last_sent: 0,
            ts_recent: 0,
            last_peer_tsval: None,
            sack_on: false,
            ws_on: false,
            peer_ws: 0,
            peer_mss: 536,
            rx: Reasm::default(),
            maps: BTreeMap::new(),
            peer_fin: None,
            last_data_ack: None,
            last_seg_window: 0,
            last_ooo: None,
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            txmaps: Vec::new(),
            fin_sent: false,
            fin_off: 0,
            fin_acked: false,
            rto_at: None,
            rto_us: min_rto,
            dupacks: 0,
            recover: None,
            srtt_us: None,
            rttvar_us: 0,
            rtt_probe: None,
            stale: false,
            rsts: Vec::new(),
            rx_log: Vec::new(),
            tx_log: Vec::new(),
            rx_segments: 0,
            tx_retransmits: 0,
            dupacks_rx: 0,
            rtos: 0,
            frto: None,
            spurious_rtos: 0,
            prio_received: Vec::new(),
        }
    }

    /// Subflow sequence of subflow offset `o`.
    fn seq_of(&self, o: u64) -> SeqNum {
        self.isn + 1 + self.syn_len + o as u32
    }

    /// Our next sequence number for a segment without data.
    fn ctl_seq(&self) -> SeqNum {
        if self.fin_sent {
            self.seq_of(self.fin_off) + 1
        } else {
            self.seq_of(self.snd_max)
        }
    }

    /// Cumulative ACK of the converter's bytes on this subflow.
    fn ack(&self) -> SeqNum {
        let fin = self.peer_fin.is_some_and(|f| self.rx.nxt() >= f);
        self.remote_isn + 1 + self.rx.nxt() as u32 + u32::from(fin)
    }

    fn committed(&self) -> u64 {
        self.txmaps.last().map_or(0, |m| m.off + m.len)
    }

    fn map_at(&self, o: u64) -> Option<TxMap> {
        let i = self.txmaps.partition_point(|m| m.off + m.len <= o);
        self.txmaps.get(i).copied().filter(|m| m.off <= o)
    }

    fn outstanding(&self) -> bool {
        self.snd_una < self.snd_max || (self.fin_sent && !self.fin_acked)
    }

    /// The subflow can carry our data (RFC 8684 §3.2: not before the fourth ACK).
    fn open(&self) -> bool {
        self.state == SubState::Established && !self.fin_sent
    }

    /// Holes: received bytes beyond a gap in the subflow sequence.
    pub fn holes(&self) -> Vec<(u64, u64)> {
        ooo_ranges(&self.rx)
    }

    /// Payload bytes received in `[from, to)`.
    pub fn rx_bytes_between(&self, from: u64, to: u64) -> u64 {
        self.rx_log
            .iter()
            .filter(|e| e.0 >= from && e.0 < to)
            .map(|e| u64::from(e.1))
            .sum()
    }

    pub fn rx_bytes(&self) -> u64 {
        self.rx_log.iter().map(|e| u64::from(e.1)).sum()
    }

    /// First transmissions of our data in `[from, to)`.
    pub fn tx_bytes_between(&self, from: u64, to: u64) -> u64 {
        self.tx_log
            .iter()
            .filter(|e| e.0 >= from && e.0 < to)
            .map(|e| u64::from(e.1))
            .sum()
    }

    pub fn tx_bytes(&self) -> u64 {
        self.tx_log.iter().map(|e| u64::from(e.1)).sum()
    }

    fn rto(&self, min: u64, max: u64) -> u64 {
        match self.srtt_us {
            Some(s) => (s + 4 * self.rttvar_us).clamp(min, max),
            None => min.max(SEC).min(max.max(min)),
        }
    }
}

/// Received out-of-order ranges of a reassembly, merged, as stream offsets.
fn ooo_ranges(r: &Reasm) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = Vec::new();
    for (&k, b) in &r.ooo {
        let e = k + b.len() as u64;
        match v.last_mut() {
            Some(last) if k <= last.1 => last.1 = last.1.max(e),
            _ => v.push((k, e)),
        }
    }
    v
}

// ------------------------------------------------------------------ the client

/// A Linux-like MPTCP v1 client with several subflows.
#[derive(Debug)]
pub struct MpClient {
    pub cfg: MpClientCfg,
    rng: Rng,
    pub key: u64,
    pub idsn: DataSeq,
    pub token: u32,
    pub remote_key: u64,
    pub remote_idsn: DataSeq,
    pub remote_token: u32,
    pub syn_payload: Vec<u8>,
    /// MP_CAPABLE negotiated on the initial subflow.
    pub mptcp: bool,
    pub csum: bool,
    /// The flags of the converter's MP_CAPABLE SYN-ACK.
    pub synack_flags: Option<MpCapableFlags>,
    /// ADD_ADDR options the converter sent: (time, subflow, option).
    pub add_addrs: Vec<(u64, usize, AddAddrRepr)>,
    /// MP_FAIL options the converter sent: (time, subflow, DSN).
    pub mp_fail_received: Vec<(u64, usize, DataSeq)>,
    /// A DSS with a DATA_ACK arrived (Linux: the connection is fully established;
    /// joins may start).
    pub fully_established: bool,
    pub fully_established_at: Option<u64>,
    /// Segments below RCV.NXT without data answered with an ACK (probes).
    pub probes_answered: u64,
    pub subs: Vec<Subflow>,
    // upload
    pub app: Vec<u8>,
    pub data_una: u64,
    /// Next new data offset to map.
    pub data_nxt: u64,
    /// Right edge of the converter's data-level window (data offset).
    peer_right: u64,
    reinject: VecDeque<(u64, u64)>,
    pub want_close: bool,
    pub data_fin_sent: bool,
    pub data_fin_acked: bool,
    data_rto_at: Option<u64>,
    data_rto_us: u64,
    pub reinjected_bytes: u64,
    // download
    /// The data stream received: the Convert reply, then the server's bytes.
    pub rx: Reasm,
    pub peer_data_fin: Option<u64>,
    /// Highest right edge (data offset) we advertised.
    max_right: u64,
    /// `read_pause`: in it (the application read up to `read_upto`), over.
    paused: bool,
    pause_over: bool,
    read_upto: u64,
    /// A MP_FASTCLOSE or a RST on every subflow ended the connection.
    pub conn_reset: bool,
    /// Packets to send: (subflow index, bytes).
    pub out: Vec<(usize, Vec<u8>)>,
    pub anomalies: Vec<String>,
    /// Each advance of the in-order data stream: (time, `rx.nxt()` after it).
    pub delivery_log: Vec<(u64, u64)>,
}

impl MpClient {
    pub fn new(cfg: MpClientCfg) -> Self {
        let mut rng = Rng::new(cfg.seed ^ 0x3a17);
        let key = cfg.key.unwrap_or_else(|| rng.next_u64());
        let km = key_material(key);
        let mut syn_payload = convert_request(cfg.target);
        syn_payload.extend_from_slice(&cfg.syn_app);
        let subs: Vec<Subflow> = cfg
            .subflows
            .iter()
            .enumerate()
            .map(|(i, plan)| {
                let addr = plan.addr.unwrap_or_else(|| client_addr(cfg.v6, i));
                let service = plan.service.unwrap_or(cfg.service);
                Subflow::new(i, plan.clone(), addr, service, &mut rng, cfg.min_rto_us)
            })
            .collect();
        MpClient {
            rng,
            key,
            idsn: km.idsn,
            token: km.token,
            remote_key: 0,
            remote_idsn: DataSeq(0),
            remote_token: 0,
            syn_payload,
            mptcp: false,
            csum: false,
            synack_flags: None,
            add_addrs: Vec::new(),
            mp_fail_received: Vec::new(),
            fully_established: false,
            fully_established_at: None,
            probes_answered: 0,
            subs,
            app: Vec::new(),
            data_una: 0,
            data_nxt: 0,
            peer_right: 65535,
            reinject: VecDeque::new(),
            want_close: false,
            data_fin_sent: false,
            data_fin_acked: false,
            data_rto_at: None,
            data_rto_us: SEC,
            reinjected_bytes: 0,
            rx: Reasm::default(),
            peer_data_fin: None,
            max_right: cfg.rcv_buf,
            paused: false,
            pause_over: false,
            read_upto: 0,
            conn_reset: false,
            out: Vec::new(),
            anomalies: Vec::new(),
            delivery_log: Vec::new(),
            cfg,
        }
    }

    fn anomaly(&mut self, now: u64, what: impl Into<String>) {
        self.anomalies
            .push(format!("mpclient @{}us: {}", now, what.into()));
    }

    fn crypto(&self) -> JoinCrypto {
        JoinCrypto {
            local_key: self.key,
            remote_key: self.remote_key,
        }
    }

    // ---- application interface

    pub fn write(&mut self, bytes: &[u8]) {
        self.app.extend_from_slice(bytes);
    }

    pub fn close(&mut self) {
        self.want_close = true;
    }

    /// Whether the client holds every byte of data offsets `[l, r)`: at the data
    /// level (in order or above a hole), or queued on a subflow above a subflow
    /// hole under a mapping that covers it (what a SACK may report, RFC 2018).
    pub fn holds_data(&self, l: u64, r: u64) -> bool {
        let mut covered: Vec<(u64, u64)> = vec![(0, self.rx.nxt())];
        for sub in &self.subs {
            for (&ssn, &(dsn, len)) in &sub.maps {
                let o = u64::from(ssn.wrapping_sub(1));
                let d = dsn.diff(self.remote_idsn + 1);
                if d >= 0 && sub.rx.holds(o, o + u64::from(len)) {
                    covered.push((d as u64, d as u64 + u64::from(len)));
                }
            }
        }
        covered.sort_unstable();
        let mut at = l;
        for (a, b) in covered {
            if a <= at && b > at {
                at = b;
            }
        }
        at >= r || self.rx.holds(at, r)
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

    /// Subflows in the established state (joins: the fourth ACK arrived).
    pub fn established(&self) -> usize {
        self.subs
            .iter()
            .filter(|s| s.state == SubState::Established)
            .count()
    }

    /// Every planned subflow has left its handshake: established (the fourth ACK
    /// arrived), refused or reset. Scenarios check which.
    pub fn joins_settled(&self) -> bool {
        self.fully_established
            && self.subs.iter().all(|s| {
                matches!(
                    s.state,
                    SubState::Established | SubState::Refused | SubState::Reset
                )
            })
    }

    /// Both data-level directions finished and acknowledged.
    pub fn data_closed(&self) -> bool {
        self.data_fin_acked && self.peer_data_fin.is_some_and(|f| self.rx.nxt() >= f)
    }

    /// `data_closed`, and every subflow that was established is closed both ways
    /// (RFC 8684 §3.3.3: once the DATA_FINs are acknowledged all subflows are closed
    /// with FIN) or was reset / removed.
    pub fn closed(&self) -> bool {
        self.data_closed()
            && self.subs.iter().all(|s| match s.state {
                SubState::Established => s.fin_acked && s.peer_fin.is_some_and(|f| s.rx.nxt() >= f),
                _ => true,
            })
    }

    /// The application's reading (`MpClientCfg::read_pause`) at `now`.
    fn app_read(&mut self, now: u64) {
        let Some((from, to)) = self.cfg.read_pause else {
            return;
        };
        if !self.paused && !self.pause_over && now >= from {
            self.paused = true;
            self.read_upto = self.rx.nxt();
        }
        if self.paused && now >= to {
            self.paused = false;
            self.pause_over = true;
            for i in 0..self.subs.len() {
                if self.subs[i].state == SubState::Established {
                    self.send_ack(now, i, None);
                }
            }
        }
    }

    pub fn next_timer(&self) -> Option<u64> {
        let mut t = self.data_rto_at;
        if let Some((from, to)) = self.cfg.read_pause
            && !self.pause_over
        {
            let x = if self.paused { to } else { from };
            t = Some(t.map_or(x, |y: u64| y.min(x)));
        }
        for s in &self.subs {
            for x in [s.syn_at, s.join_at, s.third_ack_at, s.rto_at]
                .into_iter()
                .flatten()
            {
                t = Some(t.map_or(x, |y: u64| y.min(x)));
            }
        }
        t
    }

    // ---- output helpers

    fn tsval(&mut self, i: usize, now: u64) -> u32 {
        let s = &mut self.subs[i];
        let v = s.ts_off.wrapping_add((now / MS) as u32);
        s.ts_last_sent = v;
        v
    }

    fn window_field(&self, i: usize) -> u16 {
        let s = &self.subs[i];
        let shift = if s.ws_on { self.cfg.ws.unwrap_or(0) } else { 0 };
        let bytes = if self.cfg.ofo_takes_room || self.paused {
            let mut ofo: u64 = self.rx.ooo_ranges().iter().map(|(a, b)| b - a).sum();
            if !self.cfg.ofo_takes_room {
                ofo = 0;
            }
            if self.paused {
                ofo += self.rx.nxt() - self.read_upto;
            }
            let kept = self.max_right.saturating_sub(self.rx.nxt());
            // Rounded up to the scale unit: the right edge never moves left.
            let k = (kept + (1 << shift) - 1) >> shift << shift;
            self.cfg.rcv_buf.saturating_sub(ofo).max(k)
        } else {
            self.cfg.rcv_buf
        };
        (bytes >> shift).min(65535) as u16
    }

    /// Data-level ACK: the next data offset expected (+1 once the DATA_FIN is in).
    fn data_ack(&self) -> DataSeq {
        let fin = self.peer_data_fin.is_some_and(|f| self.rx.nxt() >= f) as u64;
        self.remote_idsn + 1 + self.rx.nxt() + fin
    }

    fn emit(
        &mut self,
        i: usize,
        seq: SeqNum,
        ack: SeqNum,
        flags: Flags,
        opts: &[u8],
        payload: &[u8],
    ) {
        let window = if flags.rst() { 0 } else { self.window_field(i) };
        let s = &self.subs[i];
        let p = build(s.addr, s.service, seq, ack, flags, window, opts, payload);
        self.out.push((i, p));
    }

    /// A pure ACK on subflow `i` with DATA_ACK, SACK blocks as room allows, and an
    /// optional extra MPTCP option.
    fn send_ack(&mut self, now: u64, i: usize, extra: Option<MptcpOption<'_>>) {
        let tsval = self.tsval(i, now);
        let data_ack = self.data_ack();
        let s = &self.subs[i];
        let mut blocks: Vec<(SeqNum, SeqNum)> = Vec::new();
        if s.sack_on {
            let ranges = ooo_ranges(&s.rx);
            // RFC 2018 §4: the block holding the most recent segment first.
            let first = s
                .last_ooo
                .and_then(|o| ranges.iter().position(|r| o >= r.0 && o < r.1));
            let mut order: Vec<usize> = first.into_iter().collect();
            order.extend((0..ranges.len()).rev().filter(|k| Some(*k) != first));
            for k in order {
                let (a, b) = ranges[k];
                blocks.push((s.remote_isn + 1 + a as u32, s.remote_isn + 1 + b as u32));
            }
        }
        let fully = self.fully_established;
        let mpc = MpCapableRepr {
            version: 1,
            flags: MpCapableFlags(
                MpCapableFlags::H | if self.csum { MpCapableFlags::A } else { 0 },
            ),
            form: MpCapableForm::Ack {
                sender_key: self.key,
                receiver_key: self.remote_key,
            },
        };
        let ts = (s.ts_on, s.ts_recent);
        let opts = options(|b| {
            if ts.0 {
                push_ts(b, tsval, ts.1);
            }
            // An ADD_ADDR echo goes on a pure ACK of its own, without the DSS
            // (Linux: an IPv6 echo leaves no room for it).
            let echo = matches!(extra, Some(MptcpOption::AddAddr(_)));
            if echo {
            } else if i == 0 && !fully {
                // Linux repeats the third ACK's MP_CAPABLE until fully established.
                push_mpc(b, mpc);
            } else {
                push_dss(
                    b,
                    DssRepr {
                        data_ack: Some(DataSeqField::Bits64(data_ack)),
                        mapping: None,
                        data_fin: false,
                    },
                );
            }
            if let Some(o) = extra {
                push_mp(b, &o);
            }
            push_sack(b, &blocks);
        });
        let (seq, ack) = (s.ctl_seq(), s.ack());
        self.note_window(i, data_ack);
        self.emit(i, seq, ack, Flags::ACK, &opts, &[]);
    }

    /// Records the right edge a DATA_ACK + window on subflow `i` advertises.
    fn note_window(&mut self, i: usize, data_ack: DataSeq) {
        let s = &self.subs[i];
        let shift = if s.ws_on { self.cfg.ws.unwrap_or(0) } else { 0 };
        let wnd = u64::from(self.window_field(i)) << shift;
        let edge = data_ack.diff(self.remote_idsn + 1).max(0) as u64 + wnd;
        self.max_right = self.max_right.max(edge);
    }

    fn send_rst(&mut self, i: usize, reason: Option<TcpRstReason>) {
        let opts = options(|b| {
            if let Some(reason) = reason {
                push_mp(
                    b,
                    &MptcpOption::MpTcpRst(MpTcpRstRepr {
                        flags: MpTcpRstFlags(0),
                        reason,
                    }),
                );
            }
        });
        let s = &self.subs[i];
        let (seq, ack) = (s.ctl_seq(), s.ack());
        self.emit(i, seq, ack, Flags::RST | Flags::ACK, &opts, &[]);
    }

    // ---- handshakes

    /// Sends the initial subflow's SYN (Convert request as SYN data, MP_CAPABLE).
    pub fn start(&mut self, now: u64) {
        if self.subs[0].state == SubState::Planned {
            self.subs[0].syn_len = self.syn_payload.len() as u32;
            self.subs[0].state = SubState::SynSent;
            self.subs[0].opened_at = Some(now);
            self.send_syn(now, 0);
        }
    }

    fn send_syn(&mut self, now: u64, i: usize) {
        let tsval = self.tsval(i, now);
        let c = &self.cfg;
        let s = &self.subs[i];
        let join = (i > 0).then(|| {
            let mut j = self.crypto().syn(s.backup, s.addr_id, s.nonce);
            if s.plan.forge == Forge::WrongToken
                && let MpJoinRepr::Syn { token, .. } = &mut j
            {
                *token = !*token;
            }
            j
        });
        let opts = options(|b| {
            push(b, &TcpOption::Mss(c.mss));
            if c.sack {
                push(b, &TcpOption::SackPermitted);
            }
            if c.ts {
                push(b, &TcpOption::Timestamps { tsval, tsecr: 0 });
            }
            if let Some(ws) = c.ws {
                push(b, &TcpOption::NoOperation);
                push(b, &TcpOption::WindowScale(ws));
            }
            match join {
                Some(j) => push_mp(b, &MptcpOption::MpJoin(j)),
                None => {
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
            }
        });
        // Linux resends a TFO SYN without its data.
        let payload = if i == 0 && self.subs[0].syns_sent == 0 {
            self.syn_payload.clone()
        } else {
            Vec::new()
        };
        let s = &mut self.subs[i];
        if s.syns_sent == 0 {
            s.ts_first = tsval;
        }
        s.syns_sent += 1;
        s.syn_at = Some(now + s.syn_rto);
        s.syn_rto *= 2;
        let p = build(
            s.addr,
            s.service,
            s.isn,
            SeqNum(0),
            Flags::SYN,
            65535,
            &opts,
            &payload,
        );
        self.out.push((i, p));
    }

    fn open_join(&mut self, now: u64, i: usize) {
        let s = &mut self.subs[i];
        s.join_at = None;
        if s.state != SubState::Planned || self.conn_reset {
            return;
        }
        s.state = SubState::SynSent;
        s.opened_at = Some(now);
        self.send_syn(now, i);
    }

    fn send_third_ack(&mut self, now: u64, i: usize) {
        let tsval = self.tsval(i, now);
        let s = &self.subs[i];
        let mut j = self.crypto().third_ack(s.nonce, s.remote_nonce);
        if s.plan.forge == Forge::BadThirdAckHmac
            && let MpJoinRepr::Ack { hmac } = &mut j
        {
            hmac[0] ^= 0x80;
        }
        let ts = (s.ts_on, s.ts_recent);
        let opts = options(|b| {
            if ts.0 {
                push_ts(b, tsval, ts.1);
            }
            push_mp(b, &MptcpOption::MpJoin(j));
        });
        let (seq, ack) = (s.seq_of(0), s.ack());
        self.emit(i, seq, ack, Flags::ACK, &opts, &[]);
        let min = self.cfg.min_rto_us;
        let s = &mut self.subs[i];
        s.third_acks_sent += 1;
        // RFC 8684 §3.2: retransmitted until the converter's ACK arrives.
        s.third_ack_at = Some(now + (min << (s.third_acks_sent - 1).min(5)));
    }

    fn on_synack(&mut self, now: u64, i: usize, p: &Pkt) {
        let s = &mut self.subs[i];
        let want = s.isn + 1 + s.syn_len;
        if p.ack != want {
            let (got, n) = (p.ack.diff(s.isn + 1), s.syn_len);
            self.anomaly(
                now,
                format!("subflow {i}: SYN-ACK acknowledges {got} of {n} SYN payload bytes"),
            );
        }
        let s = &mut self.subs[i];
        s.syn_at = None;
        s.synack = Some(p.clone());
        s.remote_isn = p.seq;
        s.peer_mss = p.mss.unwrap_or(536);
        s.ts_on = self.cfg.ts && p.ts.is_some();
        s.sack_on = self.cfg.sack && p.sack_perm;
        s.ws_on = self.cfg.ws.is_some() && p.ws.is_some();
        s.peer_ws = if s.ws_on {
            p.ws.unwrap_or(0).min(14)
        } else {
            0
        };
        s.last_seg_window = p.window;
        if !p.payload.is_empty() {
            self.anomaly(now, format!("subflow {i}: data in an MPTCP SYN-ACK"));
        }
        if self.subs[i].ts_on
            && let Some((_, tsecr)) = p.ts
            && tsecr != self.subs[i].ts_first
        {
            self.anomaly(
                now,
                format!("subflow {i}: SYN-ACK TSecr {tsecr} is not our SYN's"),
            );
        }
        self.on_ts(now, i, p);
        if i == 0 {
            match p.capable() {
                Some(c) => {
                    let MpCapableForm::SynAck { sender_key } = c.form else {
                        return self.anomaly(now, "SYN-ACK MP_CAPABLE is not the 12-byte form");
                    };
                    if c.version != 1 || !c.flags.is_supported() {
                        self.anomaly(now, format!("bad MP_CAPABLE in SYN-ACK: {c:?}"));
                    }
                    self.mptcp = true;
                    self.synack_flags = Some(c.flags);
                    self.csum = self.cfg.csum || c.flags.checksum_required();
                    self.remote_key = sender_key;
                    let km = key_material(sender_key);
                    self.remote_idsn = km.idsn;
                    self.remote_token = km.token;
                }
                None => self.anomaly(now, "no MP_CAPABLE in the SYN-ACK: not multipath"),
            }
            self.subs[0].state = SubState::Established;
            self.subs[0].established_at = Some(now);
            self.send_ack(now, 0, None);
            return;
        }
        // A join: RFC 8684 §3.2, the SYN-ACK carries MP_JOIN with the converter's
        // truncated HMAC, which the initiator MUST check.
        if p.capable().is_some() || p.dss().is_some() {
            self.anomaly(
                now,
                format!("subflow {i}: MP_CAPABLE or DSS in a join SYN-ACK"),
            );
        }
        let nonce_a = self.subs[i].nonce;
        let verdict = match p.join() {
            Some(j) => self.crypto().check_synack(nonce_a, j),
            None => Err("join SYN-ACK without MP_JOIN".into()),
        };
        match verdict {
            Ok(nonce_b) => {
                self.subs[i].remote_nonce = nonce_b;
                if let Some(MpJoinRepr::SynAck { addr_id, .. }) = p.join() {
                    self.subs[i].remote_addr_id = Some(addr_id);
                }
                self.subs[i].state = SubState::PreEstablished;
                self.send_third_ack(now, i);
            }
            Err(e) => {
                self.anomaly(now, format!("subflow {i}: {e}"));
                self.send_rst(i, Some(TcpRstReason::MptcpError));
                self.subs[i].state = SubState::Reset;
            }
        }
    }

    // ---- input

    /// A packet from the converter on the access path of subflow `i`.
    pub fn on_packet(&mut self, now: u64, i: usize, bytes: &[u8]) {
        self.app_read(now);
        let p = match parse(bytes) {
            Ok(p) => p,
            Err(e) => return self.anomaly(now, format!("subflow {i}: unparsable packet: {e}")),
        };
        if !p.checksum_ok {
            return self.anomaly(now, format!("subflow {i}: bad TCP checksum"));
        }
        if p.src != self.subs[i].service || p.dst != self.subs[i].addr {
            return self.anomaly(
                now,
                format!("subflow {i}: unexpected {} -> {}", p.src, p.dst),
            );
        }
        let mtu = usize::from(self.cfg.mss) + 20 + p.ip_len;
        if p.total_len > mtu {
            self.anomaly(
                now,
                format!("subflow {i}: {} bytes exceed the MTU {mtu}", p.total_len),
            );
        }
        if p.flags.rst() {
            return self.on_rst(now, i, p);
        }
        match self.subs[i].state {
            SubState::Planned => self.anomaly(now, format!("subflow {i}: packet before our SYN")),
            SubState::SynSent => {
                if p.is_syn_ack() {
                    self.on_synack(now, i, &p);
                } else {
                    self.anomaly(now, format!("subflow {i}: non-SYN-ACK answer to the SYN"));
                }
            }
            SubState::PreEstablished => {
                if p.is_syn_ack() {
                    // Our third ACK was lost: send it again (same HMAC).
                    return self.send_third_ack(now, i);
                }
                if p.flags.ack() && p.ack == self.subs[i].seq_of(0) {
                    // The fourth ACK (RFC 8684 §3.2): the subflow may carry data now.
                    let s = &mut self.subs[i];
                    s.state = SubState::Established;
                    s.established_at = Some(now);
                    s.third_ack_at = None;
                    self.on_segment(now, i, &p);
                } else {
                    self.anomaly(
                        now,
                        format!(
                            "subflow {i}: {} while waiting for the fourth ACK",
                            describe(&p)
                        ),
                    );
                }
            }
            SubState::Established => {
                if p.is_syn_ack() {
                    if p.seq != self.subs[i].remote_isn {
                        self.anomaly(now, format!("subflow {i}: SYN-ACK with a different ISN"));
                    }
                    if i == 0 {
                        self.send_ack(now, 0, None);
                    } else {
                        self.send_third_ack(now, i);
                    }
                    return;
                }
                self.on_segment(now, i, &p);
            }
            SubState::Refused | SubState::Reset | SubState::Removed => {}
        }
    }

    fn on_rst(&mut self, now: u64, i: usize, p: Pkt) {
        let s = &self.subs[i];
        let (state, isn, syn_len, rcv_nxt) = (s.state, s.isn, s.syn_len, s.ack());
        let expected = s.plan.expect_refusal || s.plan.forge != Forge::None;
        match state {
            SubState::SynSent => {
                // RFC 9293 §3.10.7.3: in SYN-SENT a RST counts only if its ACK
                // acknowledges the SYN (a real client drops it otherwise).
                let acceptable =
                    p.flags.ack() && p.ack.diff(isn + 1) >= 0 && p.ack.diff(isn + 1 + syn_len) <= 0;
                if !acceptable {
                    self.anomaly(
                        now,
                        format!(
                            "subflow {i}: RST to our SYN does not acknowledge it (ack {} flags {:?}, SYN {isn})",
                            p.ack, p.flags
                        ),
                    );
                }
            }
            SubState::Planned | SubState::Refused | SubState::Reset | SubState::Removed => {
                self.subs[i].rsts.push(p);
                return;
            }
            SubState::PreEstablished | SubState::Established => {
                // RFC 5961 §3.2: only a RST at RCV.NXT resets at once.
                if p.seq != rcv_nxt {
                    self.anomaly(
                        now,
                        format!(
                            "subflow {i}: RST at {} but RCV.NXT is {rcv_nxt} (RFC 5961 §3.2: a challenge ACK, no reset)",
                            p.seq
                        ),
                    );
                }
            }
        }
        let fastclose = p.fastclose();
        if let Some(k) = fastclose {
            if k != self.key {
                self.anomaly(now, "MP_FASTCLOSE with a wrong key");
            }
            self.conn_reset = true;
            self.anomaly(
                now,
                format!("connection reset (MP_FASTCLOSE on subflow {i})"),
            );
        } else if !expected {
            let reason = p.tcprst().map(|r| r.reason);
            self.anomaly(
                now,
                format!("subflow {i}: RST ({reason:?}) in state {state:?}"),
            );
        }
        let s = &mut self.subs[i];
        s.rsts.push(p);
        s.state = match state {
            SubState::SynSent | SubState::PreEstablished => SubState::Refused,
            _ => SubState::Reset,
        };
        s.syn_at = None;
        s.third_ack_at = None;
        s.rto_at = None;
        if fastclose.is_some() {
            for s in &mut self.subs {
                s.rto_at = None;
            }
            self.data_rto_at = None;
            return;
        }
        // What it carried and the converter did not acknowledge goes elsewhere.
        self.reinject_subflow(i);
        self.pump(now);
    }

    fn on_ts(&mut self, now: u64, i: usize, p: &Pkt) {
        let s = &self.subs[i];
        if !s.ts_on {
            return;
        }
        let Some((tsval, tsecr)) = p.ts else {
            // RFC 7323 §3.2: once negotiated, every non-RST segment carries it.
            return self.anomaly(now, format!("subflow {i}: segment without timestamps"));
        };
        let last_tsval = s.last_peer_tsval;
        if !p.is_syn_ack() {
            // The converter echoes a TSval we sent on this subflow.
            let ours = tsecr.wrapping_sub(s.ts_first) <= s.ts_last_sent.wrapping_sub(s.ts_first);
            if !ours {
                self.anomaly(
                    now,
                    format!("subflow {i}: TSecr {tsecr} was never sent on this subflow"),
                );
            }
        }
        if let Some(last) = last_tsval
            && (tsval.wrapping_sub(last) as i32) < 0
        {
            self.anomaly(
                now,
                format!("subflow {i}: TSval went backwards {last} -> {tsval} (RFC 7323 §5.4)"),
            );
        }
        let s = &mut self.subs[i];
        s.last_peer_tsval = Some(tsval);
        // RFC 7323 §4.3: TS.Recent from segments that do not start beyond RCV.NXT.
        if p.seq.diff(s.remote_isn + 1 + s.rx.nxt() as u32) <= 0 {
            s.ts_recent = tsval;
        }
    }

    /// An established subflow's segment.
    fn on_segment(&mut self, now: u64, i: usize, p: &Pkt) {
        self.on_ts(now, i, p);
        if p.capable().is_some() {
            self.anomaly(now, format!("subflow {i}: MP_CAPABLE after the SYN-ACK"));
        }
        if p.join().is_some() {
            self.anomaly(now, format!("subflow {i}: MP_JOIN after the handshake"));
        }
        if let Some(pr) = p.prio() {
            self.subs[i].prio_received.push(pr.backup);
        }
        if let Some(a) = p.add_addr() {
            self.add_addrs.push((now, i, a));
            if !a.is_echo() && self.cfg.echo_add_addr {
                // RFC 8684 §3.4.1: the echo, E = 1 without the HMAC.
                let echo = AddAddrRepr { hmac: None, ..a };
                self.send_ack(now, i, Some(MptcpOption::AddAddr(echo)));
            }
        }
        if let Some(d) = p.mp_fail() {
            self.mp_fail_received.push((now, i, d));
        }
        let dss = p.dss();
        let data_ack_moved = match dss.and_then(|d| d.data_ack) {
            Some(a) => self.on_data_ack(now, i, a.expand(self.idsn + 1 + self.data_una), p.window),
            None => false,
        };
        if p.flags.ack() {
            self.on_sub_ack(now, i, p, data_ack_moved);
        }
        self.subs[i].last_seg_window = p.window;
        if let Some(d) = dss
            && let Some(m) = d.mapping
        {
            self.on_mapping(now, i, m, d.data_fin, p);
        }
        let data_fin = dss.is_some_and(|d| d.data_fin);
        if !p.payload.is_empty() || p.flags.fin() {
            self.on_sub_data(now, i, p);
        }
        // RFC 9293 §3.10.7.4: an unacceptable segment (a zero-length one below
        // RCV.NXT, e.g. a zero-window or keepalive probe at SND.UNA - 1) is
        // answered with an ACK, as Linux does (`tcp_send_dupack`).
        let old_probe = p.payload.is_empty()
            && !p.flags.fin()
            && !data_fin
            && p.seq
                .diff(self.subs[i].remote_isn + 1 + self.subs[i].rx.nxt() as u32)
                < 0;
        if old_probe {
            self.probes_answered += 1;
        }
        if !p.payload.is_empty() || p.flags.fin() || data_fin || old_probe {
            self.send_ack(now, i, None);
        }
        self.pump(now);
    }

    /// DATA_ACK `a` (64-bit) with the segment's window; true if it moved.
    fn on_data_ack(&mut self, now: u64, i: usize, a: DataSeq, window: u16) -> bool {
        if !self.fully_established {
            self.fully_established = true;
            self.fully_established_at = Some(now);
            // Joins start once the connection is fully established (Linux's PM).
            for s in self.subs.iter_mut().skip(1) {
                if s.state == SubState::Planned {
                    s.join_at = Some(now + s.plan.after_us);
                }
            }
        }
        if let Some(last) = self.subs[i].last_data_ack
            && a.diff(last) < 0
        {
            self.anomaly(
                now,
                format!("subflow {i}: DATA_ACK went backwards {} -> {}", last.0, a.0),
            );
        }
        self.subs[i].last_data_ack = Some(a);
        let mut off = a.diff(self.idsn + 1);
        let end = self.app.len() as i64;
        let mut moved = false;
        if self.data_fin_sent && off == end + 1 {
            if !self.data_fin_acked {
                moved = true;
            }
            self.data_fin_acked = true;
            off = end;
        }
        if off < 0 || off as u64 > self.data_nxt.max(self.data_una) {
            self.anomaly(
                now,
                format!(
                    "subflow {i}: DATA_ACK offset {off} beyond {}",
                    self.data_nxt
                ),
            );
            return false;
        }
        if off as u64 > self.data_una {
            self.data_una = off as u64;
            moved = true;
        }
        // RFC 8684 §3.3.4: the window is relative to the DATA_ACK, scaled by this
        // subflow's own shift; only segments with a DATA_ACK count (§3.3.5).
        let wnd = u64::from(window) << self.subs[i].peer_ws;
        self.peer_right = self.peer_right.max(off as u64 + wnd);
        if moved {
            self.data_rto_us = self.data_rto_base();
            self.data_rto_at = self.data_outstanding().then_some(now + self.data_rto_us);
        }
        moved
    }

    fn data_rto_base(&self) -> u64 {
        let srtt = self
            .subs
            .iter()
            .filter_map(|s| s.srtt_us)
            .max()
            .unwrap_or(SEC / 2);
        (4 * srtt).max(SEC)
    }

    fn data_outstanding(&self) -> bool {
        self.data_una < self.data_nxt || (self.data_fin_sent && !self.data_fin_acked)
    }

    fn on_sub_ack(&mut self, now: u64, i: usize, p: &Pkt, data_ack_moved: bool) {
        let (min, max) = (self.cfg.min_rto_us, self.cfg.max_rto_us);
        let seg = self.seg_size(i);
        let s = &mut self.subs[i];
        let mut off = i64::from(p.ack.diff(s.seq_of(0)));
        let mut progress = false;
        if s.fin_sent && off == s.fin_off as i64 + 1 {
            if !s.fin_acked {
                progress = true;
            }
            s.fin_acked = true;
            off = s.fin_off as i64;
        }
        if off > s.snd_max as i64 || off < 0 {
            let m = s.snd_max;
            return self.anomaly(now, format!("subflow {i}: ACK offset {off} beyond {m}"));
        }
        let off = off as u64;
        let mut fast = None;
        if off > s.snd_una {
            if s.cwnd < s.plan.window_segments {
                let segs = (off - s.snd_una).div_ceil(seg).max(1);
                s.cwnd = (s.cwnd + segs).min(s.plan.window_segments);
            }
            let tsecr = p.ts.map(|(_, e)| e);
            if let Some((probe_end, max, rto_ts)) = s.frto.take()
                && (off > probe_end
                    || rto_ts
                        .zip(tsecr)
                        .is_some_and(|(r, e)| (e.wrapping_sub(r) as i32) < 0))
            {
                // Spurious timeout: carry on where we were.
                s.snd_nxt = s.snd_nxt.max(max);
                s.cwnd = s.plan.window_segments;
                s.spurious_rtos += 1;
            }
            s.snd_una = off;
            s.snd_nxt = s.snd_nxt.max(off);
            s.dupacks = 0;
            progress = true;
            if let Some((end, at)) = s.rtt_probe
                && off >= end
            {
                s.rtt_probe = None;
                let r = now - at;
                match s.srtt_us {
                    None => {
                        s.srtt_us = Some(r);
                        s.rttvar_us = r / 2;
                    }
                    Some(srtt) => {
                        s.rttvar_us = (3 * s.rttvar_us + srtt.abs_diff(r)) / 4;
                        s.srtt_us = Some((7 * srtt + r) / 8);
                    }
                }
            }
            match s.recover {
                // NewReno partial ACK (RFC 6582): the next hole goes at once.
                Some(r) if off < r => fast = Some(off),
                Some(_) => s.recover = None,
                None => {}
            }
        } else if off == s.snd_una
            && s.snd_max > s.snd_una
            && p.payload.is_empty()
            && !p.flags.fin()
            && p.window == s.last_seg_window
            && !data_ack_moved
        {
            s.dupacks += 1;
            s.dupacks_rx += 1;
            if s.dupacks == 3 && s.recover.is_none() {
                // Fast retransmit (RFC 5681 §3.2) of the first unacknowledged segment.
                s.recover = Some(s.snd_max);
                fast = Some(s.snd_una);
            }
        }
        if progress {
            s.stale = false;
            s.rto_us = s.rto(min, max);
            s.rto_at = s.outstanding().then_some(now + s.rto_us);
        }
        if let Some(o) = fast
            && o < self.subs[i].snd_max
        {
            self.subs[i].tx_retransmits += 1;
            self.send_segment(now, i, o, true);
        }
    }

    /// Checks and records a mapping received on subflow `i`.
    fn on_mapping(&mut self, now: u64, i: usize, m: Mapping, data_fin: bool, p: &Pkt) {
        let dsn = m.dsn.expand(self.remote_idsn + 1 + self.rx.nxt());
        let fin = u32::from(data_fin);
        if m.data_len == 0 {
            self.anomaly(
                now,
                format!("subflow {i}: infinite mapping from the converter"),
            );
            return;
        }
        let mlen = u32::from(m.data_len);
        if data_fin {
            let f = (dsn + u64::from(mlen) - 1).diff(self.remote_idsn + 1);
            if mlen > 1 && self.peer_data_fin.is_none() && f <= self.rx.nxt() as i64 {
                // Linux (6.18) records this DATA_FIN but discards the mapping's bytes
                // as old and never acts on it, then ignores every later (data-less)
                // DATA_FIN as already received: the connection never ends.
                self.anomaly(
                    now,
                    format!(
                        "subflow {i}: DATA_FIN mapped onto bytes the client already has ({m:?})"
                    ),
                );
            }
            if self.peer_data_fin.is_some_and(|g| g as i64 != f) {
                self.anomaly(now, "DATA_FIN moved");
            }
            self.peer_data_fin = Some(f as u64);
        }
        if m.ssn == 0 {
            // Data-less DATA_FIN (RFC 8684 §3.3.3): SSN 0, length 1.
            if mlen != 1 || !data_fin || !p.payload.is_empty() {
                self.anomaly(
                    now,
                    format!("subflow {i}: SSN 0 mapping that is not a data-less DATA_FIN: {m:?}"),
                );
            }
            return;
        }
        let rel = p.seq.0.wrapping_sub(self.subs[i].remote_isn.0);
        let len = p.payload.len() as u32;
        match m.checksum {
            Some(c) => {
                if !self.csum {
                    self.anomaly(
                        now,
                        format!("subflow {i}: DSS checksum without negotiation"),
                    );
                }
                if m.ssn == rel && mlen - fin == len {
                    let want = checksum::dss_checksum(
                        dsn.0,
                        m.ssn,
                        m.data_len,
                        Checksum::new().add_bytes(&p.payload),
                    );
                    if want != c {
                        self.anomaly(now, format!("subflow {i}: bad DSS checksum"));
                    }
                }
            }
            None if self.csum => {
                self.anomaly(
                    now,
                    format!("subflow {i}: DSS mapping without the negotiated checksum"),
                );
            }
            None => {}
        }
        let dlen = mlen - fin;
        if dlen == 0 {
            return;
        }
        // RFC 8684 §3.3.1: a mapping must cover (part of) the segment that carries it.
        if len > 0 && !(m.ssn < rel + len && rel < m.ssn + dlen) {
            self.anomaly(
                now,
                format!(
                    "subflow {i}: mapping {}+{dlen} does not cover segment {rel}+{len}",
                    m.ssn
                ),
            );
        }
        // Once sent a mapping must not change (§3.3.1): every subflow byte has one DSN.
        let maps = &self.subs[i].maps;
        let mut conflict = None;
        let lo = m.ssn.saturating_sub(1 << 20);
        for (&s0, &(d0, l0)) in maps.range(lo..m.ssn + dlen) {
            let (a, b) = (s0.max(m.ssn), (s0 + l0).min(m.ssn + dlen));
            if a >= b {
                continue;
            }
            let theirs = d0 + u64::from(a - s0);
            let mine = dsn + u64::from(a - m.ssn);
            if theirs != mine || (s0 == m.ssn && l0 != dlen && d0 != dsn) {
                conflict = Some((s0, d0, l0));
                break;
            }
        }
        if let Some((s0, d0, l0)) = conflict {
            self.anomaly(
                now,
                format!(
                    "subflow {i}: mapping SSN {}+{dlen} -> DSN {} disagrees with SSN {s0}+{l0} -> DSN {}",
                    m.ssn, dsn.0, d0.0
                ),
            );
        }
        let e = self.subs[i].maps.entry(m.ssn).or_insert((dsn, dlen));
        if dlen > e.1 {
            *e = (dsn, dlen);
        }
    }

    /// The mapping covering SSN `ssn` on subflow `i`.
    fn mapping_of(&self, i: usize, ssn: u32) -> Option<(u32, DataSeq, u32)> {
        let maps = &self.subs[i].maps;
        maps.range(..=ssn)
            .rev()
            .take(64)
            .find(|(s, (_, l))| ssn.wrapping_sub(**s) < *l)
            .map(|(s, (d, l))| (*s, *d, *l))
    }

    fn on_sub_data(&mut self, now: u64, i: usize, p: &Pkt) {
        let s = &self.subs[i];
        let rel = p.seq.0.wrapping_sub(s.remote_isn.0);
        let len = p.payload.len() as u32;
        // Every byte needs a mapping (RFC 8684 §3.3.1; the converter maps every
        // segment it sends).
        let mut o = rel;
        while o < rel + len {
            match self.mapping_of(i, o) {
                Some((s0, _, l0)) => o = s0 + l0,
                None => {
                    self.anomaly(
                        now,
                        format!("subflow {i}: unmapped data at SSN {o} (segment {rel}+{len})"),
                    );
                    break;
                }
            }
        }
        let s = &mut self.subs[i];
        let off = i64::from(rel) - 1;
        let before = s.rx.nxt();
        if len > 0 {
            s.rx_log.push((now, len));
            s.rx_segments += 1;
            s.rx.insert(off, &p.payload);
            if off > before as i64 {
                s.last_ooo = Some(off as u64);
            }
        }
        if p.flags.fin() {
            let f = (off + i64::from(len)) as u64;
            let moved = s.peer_fin.is_some_and(|g| g != f);
            s.peer_fin = Some(f);
            if moved {
                self.anomaly(now, format!("subflow {i}: FIN moved"));
            }
        }
        let after = self.subs[i].rx.nxt();
        if after > before {
            self.deliver(now, i, before, after);
        }
    }

    /// Subflow bytes `[a, b)` became in order: hand them to the data level through
    /// their mappings.
    fn deliver(&mut self, now: u64, i: usize, a: u64, b: u64) {
        let mut o = a;
        while o < b {
            let ssn = o as u32 + 1;
            let Some((s0, dsn0, l0)) = self.mapping_of(i, ssn) else {
                // Reported on arrival; skip to the next mapped byte.
                let next = self.subs[i]
                    .maps
                    .range(ssn..)
                    .next()
                    .map_or(b, |(s, _)| u64::from(*s) - 1);
                o = next.max(o + 1);
                continue;
            };
            let n = u64::from(s0 + l0 - ssn).min(b - o);
            let dsn = dsn0 + u64::from(ssn - s0);
            let d = dsn.diff(self.remote_idsn + 1);
            if d + n as i64 > self.max_right as i64 {
                self.anomaly(
                    now,
                    format!(
                        "subflow {i}: data offset {d}+{n} beyond the advertised right edge {} (RFC 8684 §3.3.5)",
                        self.max_right
                    ),
                );
            }
            let (subs, rx) = (&self.subs, &mut self.rx);
            let bytes = &subs[i].rx.data[o as usize..(o + n) as usize];
            let before = rx.nxt();
            rx.insert(d, bytes);
            if rx.nxt() > before {
                self.delivery_log.push((now, self.rx.nxt()));
            }
            o += n;
        }
    }

    // ---- sending our data

    fn seg_size(&self, i: usize) -> u64 {
        let s = &self.subs[i];
        let opt = if s.ts_on { 12 } else { 0 } + 28;
        u64::from(self.cfg.mss.min(s.peer_mss)) - opt
    }

    fn map_csum(&self, data: u64, ssn: u32, len: u64) -> Option<u16> {
        self.csum.then(|| {
            let d = data as usize;
            checksum::dss_checksum(
                (self.idsn + 1 + data).0,
                ssn,
                len as u16,
                Checksum::new().add_bytes(&self.app[d..d + len as usize]),
            )
        })
    }

    /// Sends the segment at subflow offset `o` of subflow `i`; returns its length.
    fn send_segment(&mut self, now: u64, i: usize, o: u64, retrans: bool) -> u64 {
        let Some(m) = self.subs[i].map_at(o) else {
            return 0;
        };
        let l = self.seg_size(i).min(m.off + m.len - o);
        let repeat = self.rng.chance(self.cfg.repeat_mapping);
        let tsval = self.tsval(i, now);
        let data_ack = self.data_ack();
        let mapping = (o == m.off || retrans || repeat).then(|| Mapping {
            dsn: DataSeqField::Bits64(self.idsn + 1 + m.data),
            ssn: m.off as u32 + 1,
            data_len: m.len as u16,
            checksum: self.map_csum(m.data, m.off as u32 + 1, m.len),
        });
        let s = &self.subs[i];
        let ts = (s.ts_on, s.ts_recent);
        let opts = options(|b| {
            if ts.0 {
                push_ts(b, tsval, ts.1);
            }
            push_dss(
                b,
                DssRepr {
                    data_ack: Some(DataSeqField::Bits64(data_ack)),
                    mapping,
                    data_fin: false,
                },
            );
        });
        let d = (m.data + (o - m.off)) as usize;
        let payload = self.app[d..d + l as usize].to_vec();
        let (seq, ack) = (s.seq_of(o), s.ack());
        self.note_window(i, data_ack);
        self.emit(i, seq, ack, Flags::ACK | Flags::PSH, &opts, &payload);
        let s = &mut self.subs[i];
        if o + l > s.snd_max {
            s.tx_log.push((now, (o + l - s.snd_max) as u32));
            s.snd_max = o + l;
            if s.rtt_probe.is_none() {
                s.rtt_probe = Some((o + l, now));
            }
        } else if s.rtt_probe.is_some_and(|(e, _)| e > o) {
            // Karn: no sample from retransmitted data.
            s.rtt_probe = None;
        }
        if s.rto_at.is_none() {
            s.rto_at = Some(now + s.rto_us);
        }
        l
    }

    /// The subflow for new work: an open, non-stale subflow with window room;
    /// backups only when no regular subflow is usable (RFC 8684 §3.2 B flag,
    /// §3.3.8); lowest smoothed RTT first.
    fn pick_subflow(&self) -> Option<usize> {
        let usable = |s: &Subflow| s.open() && !s.stale;
        let regular = self.subs.iter().any(|s| usable(s) && !s.backup);
        self.subs
            .iter()
            .filter(|s| usable(s) && (!regular || !s.backup))
            .filter(|s| {
                s.snd_nxt >= s.committed() && s.snd_nxt - s.snd_una < s.cwnd * self.seg_size(s.idx)
            })
            .min_by_key(|s| (s.srtt_us.unwrap_or(0), s.idx))
            .map(|s| s.idx)
    }

    /// Next data range to map on subflow `i`: reinjections first, then new data
    /// within the converter's data-level window.
    fn next_chunk(&mut self, i: usize) -> Option<(u64, u64)> {
        let max = (self.cfg.mapping_segments as u64 * self.seg_size(i)).min(60_000);
        while let Some(&(a, b)) = self.reinject.front() {
            let a = a.max(self.data_una);
            if a >= b {
                self.reinject.pop_front();
                continue;
            }
            let n = (b - a).min(max);
            if a + n >= b {
                self.reinject.pop_front();
            } else if let Some(f) = self.reinject.front_mut() {
                f.0 = a + n;
            }
            self.reinjected_bytes += n;
            return Some((a, n));
        }
        let limit = (self.app.len() as u64).min(self.peer_right);
        if self.data_nxt >= limit {
            return None;
        }
        let n = (limit - self.data_nxt).min(max);
        let a = self.data_nxt;
        self.data_nxt += n;
        Some((a, n))
    }

    /// Queues the data of subflow `i`'s mappings that the converter has not
    /// DATA_ACKed for another subflow (it stays on `i` too: §3.3.6).
    fn reinject_subflow(&mut self, i: usize) {
        let una = self.data_una;
        let s = &mut self.subs[i];
        let from = s.snd_una;
        let mut v = Vec::new();
        for m in s
            .txmaps
            .iter_mut()
            .filter(|m| m.off + m.len > from && !m.reinjected)
        {
            m.reinjected = true;
            let skip = from.saturating_sub(m.off);
            let (a, b) = ((m.data + skip).max(una), m.data + m.len);
            if a < b {
                v.push((a, b));
            }
        }
        self.reinject.extend(v);
    }

    /// Sends what the windows allow, then DATA_FIN and subflow FINs.
    pub fn pump(&mut self, now: u64) {
        if !self.fully_established || self.conn_reset {
            return;
        }
        loop {
            let mut progress = false;
            for i in 0..self.subs.len() {
                let s = &self.subs[i];
                if !s.open() || s.stale {
                    continue;
                }
                let cwnd = s.cwnd * self.seg_size(i);
                while self.subs[i].snd_nxt < self.subs[i].committed()
                    && self.subs[i].snd_nxt - self.subs[i].snd_una < cwnd
                {
                    let o = self.subs[i].snd_nxt;
                    let retrans = o < self.subs[i].snd_max;
                    if retrans {
                        self.subs[i].tx_retransmits += 1;
                    }
                    let l = self.send_segment(now, i, o, retrans);
                    if l == 0 {
                        break;
                    }
                    self.subs[i].snd_nxt = o + l;
                    progress = true;
                }
            }
            if let Some(i) = self.pick_subflow()
                && let Some((data, len)) = self.next_chunk(i)
            {
                let s = &mut self.subs[i];
                let off = s.committed();
                s.txmaps.push(TxMap {
                    off,
                    data,
                    len,
                    reinjected: false,
                });
                if self.data_rto_at.is_none() {
                    self.data_rto_at = Some(now + self.data_rto_us);
                }
                progress = true;
            }
            if !progress {
                break;
            }
        }
        let all_mapped = self.data_nxt == self.app.len() as u64 && self.reinject.is_empty();
        if self.want_close
            && all_mapped
            && !self.data_fin_sent
            && let Some(i) = self.best_open()
        {
            self.data_fin_sent = true;
            self.send_data_fin(now, i);
            self.data_rto_at.get_or_insert(now + self.data_rto_us);
        }
        if self.data_fin_acked && self.data_una == self.app.len() as u64 {
            // RFC 8684 §3.3.3: once the DATA_FIN is acknowledged, every subflow is
            // closed with a FIN.
            for i in 0..self.subs.len() {
                let s = &self.subs[i];
                if s.state == SubState::Established && !s.fin_sent && s.snd_nxt >= s.snd_max {
                    self.send_fin(now, i);
                }
            }
        }
    }

    fn best_open(&self) -> Option<usize> {
        let usable = |s: &Subflow| s.open() && !s.stale;
        let regular = self.subs.iter().any(|s| usable(s) && !s.backup);
        self.subs
            .iter()
            .filter(|s| usable(s) && (!regular || !s.backup))
            .min_by_key(|s| (s.srtt_us.unwrap_or(0), s.idx))
            .or_else(|| self.subs.iter().find(|s| s.open()))
            .map(|s| s.idx)
    }

    /// A data-less DATA_FIN (SSN 0, length 1: RFC 8684 §3.3.3).
    fn send_data_fin(&mut self, now: u64, i: usize) {
        let tsval = self.tsval(i, now);
        let data_ack = self.data_ack();
        let dsn = self.idsn + 1 + self.app.len() as u64;
        let mapping = Mapping {
            dsn: DataSeqField::Bits64(dsn),
            ssn: 0,
            data_len: 1,
            checksum: self
                .csum
                .then(|| checksum::dss_checksum(dsn.0, 0, 1, Checksum::new())),
        };
        let s = &self.subs[i];
        let ts = (s.ts_on, s.ts_recent);
        let opts = options(|b| {
            if ts.0 {
                push_ts(b, tsval, ts.1);
            }
            push_dss(
                b,
                DssRepr {
                    data_ack: Some(DataSeqField::Bits64(data_ack)),
                    mapping: Some(mapping),
                    data_fin: true,
                },
            );
        });
        let (seq, ack) = (s.ctl_seq(), s.ack());
        self.note_window(i, data_ack);
        self.emit(i, seq, ack, Flags::ACK, &opts, &[]);
    }

    fn send_fin(&mut self, now: u64, i: usize) {
        let tsval = self.tsval(i, now);
        let data_ack = self.data_ack();
        let s = &mut self.subs[i];
        if !s.fin_sent {
            s.fin_sent = true;
            s.fin_off = s.snd_max;
        }
        let ts = (s.ts_on, s.ts_recent);
        let opts = options(|b| {
            if ts.0 {
                push_ts(b, tsval, ts.1);
            }
            push_dss(
                b,
                DssRepr {
                    data_ack: Some(DataSeqField::Bits64(data_ack)),
                    mapping: None,
                    data_fin: false,
                },
            );
        });
        let (seq, ack) = (s.seq_of(s.fin_off), s.ack());
        if s.rto_at.is_none() {
            s.rto_at = Some(now + s.rto_us);
        }
        self.emit(i, seq, ack, Flags::ACK | Flags::FIN, &opts, &[]);
    }

    // ---- timers

    pub fn on_timer(&mut self, now: u64) {
        self.app_read(now);
        for i in 0..self.subs.len() {
            if self.subs[i].join_at.is_some_and(|t| t <= now) {
                self.open_join(now, i);
            }
            if self.subs[i].syn_at.is_some_and(|t| t <= now) {
                self.subs[i].syn_at = None;
                if self.subs[i].state == SubState::SynSent && self.subs[i].syns_sent < 5 {
                    self.send_syn(now, i);
                }
            }
            if self.subs[i].third_ack_at.is_some_and(|t| t <= now) {
                self.subs[i].third_ack_at = None;
                if self.subs[i].state == SubState::PreEstablished
                    && self.subs[i].third_acks_sent < 8
                {
                    self.send_third_ack(now, i);
                }
            }
            if self.subs[i].rto_at.is_some_and(|t| t <= now) {
                self.subflow_rto(now, i);
            }
        }
        if self.data_rto_at.is_some_and(|t| t <= now) {
            self.data_rto(now);
        }
        self.pump(now);
    }

    fn subflow_rto(&mut self, now: u64, i: usize) {
        let max = self.cfg.max_rto_us;
        let others = self
            .subs
            .iter()
            .any(|s| s.idx != i && s.state == SubState::Established);
        let s = &mut self.subs[i];
        s.rto_at = None;
        if s.state != SubState::Established || !s.outstanding() {
            return;
        }
        // Back to the first unacknowledged byte, same mappings (RFC 8684 §3.3.6:
        // the original data on the original subflow); while it does not answer its
        // data is also reinjected on the others.
        s.snd_nxt = s.snd_una;
        s.recover = None;
        s.dupacks = 0;
        s.rtt_probe = None;
        s.cwnd = 1;
        s.rtos += 1;
        s.rto_us = (s.rto_us * 2).min(max);
        s.rto_at = Some(now + s.rto_us);
        if others {
            s.stale = true;
            self.reinject_subflow(i);
        }
        let s = &self.subs[i];
        if s.snd_una < s.snd_max {
            let o = s.snd_una;
            self.subs[i].tx_retransmits += 1;
            let l = self.send_segment(now, i, o, true);
            let s = &mut self.subs[i];
            if !s.stale {
                s.snd_nxt = o + l;
            }
            let rto_ts = s.ts_on.then_some(s.ts_last_sent);
            s.frto = Some((o + l, s.snd_max, rto_ts));
        } else if s.fin_sent && !s.fin_acked {
            self.send_fin(now, i);
        }
    }

    fn data_rto(&mut self, now: u64) {
        self.data_rto_at = None;
        if !self.data_outstanding() {
            return;
        }
        self.data_rto_us = (self.data_rto_us * 2).min(10 * SEC);
        self.data_rto_at = Some(now + self.data_rto_us);
        // MPTCP-level retransmission: the first unacknowledged data again, on the
        // best subflow under a new mapping.
        if self.data_una < self.data_nxt {
            let n = (self.data_nxt - self.data_una).min(16 * 1400);
            self.reinject.push_front((self.data_una, self.data_una + n));
        } else if self.data_fin_sent
            && !self.data_fin_acked
            && let Some(i) = self.best_open()
        {
            self.send_data_fin(now, i);
        }
    }

    // ---- path management

    /// Sends MP_PRIO on subflow `i` (RFC 8684 §3.3.8: it changes the priority of the
    /// subflow it is sent on); our own scheduler follows it too.
    pub fn set_backup(&mut self, now: u64, i: usize, backup: bool) {
        self.subs[i].backup = backup;
        self.send_ack(now, i, Some(MptcpOption::MpPrio(MpPrioRepr { backup })));
    }

    /// Announces the removal of subflow `i`'s address on subflow `via` (RFC 8684
    /// §3.4.2) and closes subflow `i` with a RST; its unacknowledged data moves.
    pub fn remove_addr(&mut self, now: u64, i: usize, via: usize) {
        let ids = [self.subs[i].addr_id];
        self.send_ack(
            now,
            via,
            Some(MptcpOption::RemoveAddr(RemoveAddrRepr { addr_ids: &ids })),
        );
        self.send_rst(i, None);
        let s = &mut self.subs[i];
        s.state = SubState::Removed;
        s.rto_at = None;
        self.reinject_subflow(i);
        self.pump(now);
    }

    /// End-of-run checks: subflow integrity (no byte beyond a hole that was never
    /// filled, RFC 8684 §3.3.6) on every subflow that is still up.
    pub fn final_anomalies(&self) -> Vec<String> {
        let mut v = Vec::new();
        for s in &self.subs {
            if matches!(s.state, SubState::Established | SubState::PreEstablished) {
                let h = s.holes();
                if !h.is_empty() {
                    v.push(format!(
                        "mpclient: subflow {} has bytes beyond a hole never filled: rcv at {} , ranges {:?}",
                        s.idx,
                        s.rx.nxt(),
                        h
                    ));
                }
            }
            if s.rx.conflicts > 0 {
                v.push(format!(
                    "mpclient: subflow {}: {} retransmissions differ from the first copy",
                    s.idx, s.rx.conflicts
                ));
            }
        }
        if self.rx.conflicts > 0 {
            v.push(format!(
                "mpclient: {} data-level copies differ from the bytes delivered first",
                self.rx.conflicts
            ));
        }
        v
    }
}

fn push_mp(b: &mut OptionsBuilder<'_>, o: &MptcpOption<'_>) {
    let mut buf = [0u8; 40];
    let n = o.emit(&mut buf).expect("MPTCP option");
    b.push_raw(&buf[..n]).expect("MPTCP option fits");
}

// ------------------------------------------------------------------ the world

/// What a multipath simulation is built from.
#[derive(Debug, Clone)]
pub struct MpSetup {
    pub client: MpClientCfg,
    pub server: ServerCfg,
    /// One access path per planned subflow.
    pub paths: Vec<PathSpec>,
    pub core: LinkCfg,
    pub engine: EngineConfig,
    pub seed: u64,
}

impl MpSetup {
    /// A client of the given family with one subflow per path (all joins right after
    /// full establishment), the server of the given family 10 ms away, send windows
    /// sized from the paths.
    pub fn new(v6_client: bool, v6_server: bool, paths: Vec<PathSpec>) -> Self {
        let server = if v6_server { SERVER_V6 } else { SERVER_V4 };
        let core = LinkCfg::ideal(10 * MS);
        let mut client = MpClientCfg::new(v6_client, server, paths.len());
        let seg = 1400u64 * 8;
        let mut max_rtt = 0;
        for (plan, p) in client.subflows.iter_mut().zip(&paths) {
            let rtt = p.rtt_us() + 2 * core.delay_us;
            let rate = p.up.rate_bps.max(1);
            // Twice the bandwidth-delay product of the path and the server leg (the
            // model has no congestion control: a fixed window per subflow, which
            // must also cover the queueing its ACKs meet behind the other
            // direction's data).
            plan.window_segments = (2 * rate * rtt / SEC).div_ceil(seg) + 8;
            max_rtt = max_rtt.max(rtt);
        }
        let mut srv = ServerCfg::new(server);
        // A loss window after an RTO, then slow start (RFC 5681 §3.1), as a real
        // server does: a resent whole window would bury any stall under duplicates.
        srv.slow_start_after_rto = true;
        let sum_rate: u64 = paths.iter().map(|p| p.down.rate_bps).sum();
        // 1.5 × (sum of rates × largest RTT): enough for every path to be busy.
        srv.window_segments = (3 * sum_rate * max_rtt / SEC / 2).div_ceil(seg).max(16) + 8;
        MpSetup {
            client,
            server: srv,
            paths,
            core,
            engine: engine_config(),
            seed: 7,
        }
    }

    pub fn build(self) -> MpSim {
        let s = self.seed;
        let mut up = Vec::new();
        let mut down = Vec::new();
        for (i, p) in self.paths.iter().enumerate() {
            up.push(AccessLink::new(p.up, s ^ (0x100 + i as u64)));
            down.push(AccessLink::new(p.down, s ^ (0x200 + i as u64)));
        }
        assert_eq!(
            self.paths.len(),
            self.client.subflows.len(),
            "one access path per planned subflow"
        );
        MpSim {
            now: 0,
            engine: Engine::new(self.engine, 0, 1, s ^ 0xe6e, Instant(0)).expect("config"),
            client: MpClient::new(MpClientCfg {
                seed: self.client.seed ^ s,
                ..self.client
            }),
            server: Server::new(ServerCfg {
                seed: self.server.seed ^ s,
                ..self.server
            }),
            up,
            down,
            s2e: Link::new(self.core, s ^ 3),
            e2s: Link::new(self.core, s ^ 4),
            drops: Vec::new(),
            anomalies: Vec::new(),
            log: std::env::var_os("SIM_DUMP").map(|_| Vec::new()),
            buf: vec![0; 2048],
            started: false,
            engine_out: [0; 2],
            arrived: Vec::new(),
            third_ack_in: Vec::new(),
            maps_in: Vec::new(),
        }
    }
}

/// Client — one access path per subflow — engine — core link — server.
#[derive(Debug)]
pub struct MpSim {
    pub now: u64,
    pub engine: Engine<VecPacket>,
    pub client: MpClient,
    pub server: Server,
    /// Client → converter, per subflow.
    pub up: Vec<AccessLink>,
    /// Converter → client, per subflow.
    pub down: Vec<AccessLink>,
    pub s2e: Link,
    pub e2s: Link,
    /// Every drop the engine reported, with its time and ingress port.
    pub drops: Vec<(u64, Port, DropReason)>,
    /// Problems with engine output seen at the engine (before any link).
    pub anomalies: Vec<String>,
    /// Engine inputs and outputs, one line each (with `SIM_DUMP`).
    pub log: Option<Vec<String>>,
    buf: Vec<u8>,
    started: bool,
    /// Packets the engine sent, per port (access, core).
    pub engine_out: [u64; 2],
    /// Per subflow, the client bytes that reached the engine (subflow offsets),
    /// and whether the client's FIN did: what a subflow ACK may cover.
    arrived: Vec<(Reasm, Option<u64>)>,
    /// Per subflow, when its third ACK (MP_JOIN with the HMAC) first reached the
    /// engine.
    pub third_ack_in: Vec<Option<u64>>,
    /// Per subflow, the mappings (SSN, length) that reached the engine.
    maps_in: Vec<Vec<(u32, u32)>>,
}

impl MpSim {
    pub fn start(&mut self) {
        if !self.started {
            self.started = true;
            self.client.start(self.now);
        }
    }

    /// Cuts path `i` both ways during `[from, until)` (absolute times).
    pub fn cut_path(&mut self, i: usize, from: u64, until: u64) {
        self.up[i].outages.push((from, until));
        self.down[i].outages.push((from, until));
    }

    fn flush(&mut self) {
        for (i, p) in std::mem::take(&mut self.client.out) {
            let before = self.up[i].lost + self.up[i].cut_drops + self.up[i].queue_drops;
            let d = self
                .log
                .is_some()
                .then(|| parse(&p).map_or_else(|e| e, |p| describe(&p)));
            self.up[i].send(self.now, p);
            if self.up[i].lost + self.up[i].cut_drops + self.up[i].queue_drops > before
                && let Some(d) = d
            {
                self.note(|| format!("LOST up[{i}] {d}"));
            }
        }
        for p in std::mem::take(&mut self.server.out) {
            self.s2e.send(self.now, p);
        }
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if let Some(l) = &mut self.log {
            l.push(format!("{:>10} {}", self.now, what()));
        }
    }

    fn emit(&mut self, port: Port, bytes: Vec<u8>, originated: bool) {
        let now = self.now;
        self.engine_out[port as usize] += 1;
        let p = match parse(&bytes) {
            Ok(p) => p,
            Err(e) => {
                self.anomalies
                    .push(format!("engine @{now}: unparsable output: {e}"));
                return;
            }
        };
        if !p.checksum_ok {
            self.anomalies
                .push(format!("engine @{now}: bad checksum {}", describe(&p)));
        }
        let o = if originated { "gen" } else { "fwd" };
        self.note(|| format!("{o} {port:?} {}", describe(&p)));
        match port {
            Port::Access => {
                let i = self.client.subs.iter().position(|s| s.addr == p.dst);
                match i {
                    Some(i) if p.src == self.client.subs[i].service => {
                        self.check_ack(i, &p);
                        if i > 0
                            && !p.payload.is_empty()
                            && self.third_ack_in.get(i).copied().flatten().is_none()
                        {
                            // RFC 8684 §3.2: the listener's subflow exists once the
                            // third ACK (with the initiator's HMAC) is in.
                            self.anomalies.push(format!(
                                "engine @{now}: data on join subflow {i} before its third ACK arrived"
                            ));
                        }
                        let l = &self.down[i];
                        let before = l.lost + l.cut_drops + l.queue_drops;
                        self.down[i].send(now, bytes);
                        let l = &self.down[i];
                        if l.lost + l.cut_drops + l.queue_drops > before {
                            self.note(|| format!("LOST down[{i}] (above)"));
                        }
                    }
                    _ => self.anomalies.push(format!(
                        "engine @{now}: access packet {} -> {} for no subflow",
                        p.src, p.dst
                    )),
                }
            }
            Port::Core => {
                if p.dst != self.server.cfg.addr || !self.engine.config().pool.contains(p.src.ip())
                {
                    self.anomalies
                        .push(format!("engine @{now}: core packet {} -> {}", p.src, p.dst));
                }
                // R2: a SACK block toward the server covers only bytes the client
                // holds at the data level.
                let base = self.server.isn + 1;
                let n = convert_len(&self.client.rx.data).unwrap_or(0) as u64;
                for &(l, r) in &p.sack_blocks {
                    let (ol, or) = (
                        u64::from(l.0.wrapping_sub(base.0)),
                        u64::from(r.0.wrapping_sub(base.0)),
                    );
                    if or <= ol || !self.client.holds_data(ol + n, or + n) {
                        self.anomalies.push(format!(
                            "engine @{now}: SACK {ol}..{or} of server bytes the client does not hold"
                        ));
                    }
                }
                self.e2s.send(now, bytes);
            }
        }
    }

    /// Records which client bytes of subflow `i` reached the engine.
    fn note_arrival(&mut self, i: usize, bytes: &[u8]) {
        let Ok(p) = parse(bytes) else { return };
        if self.third_ack_in.len() <= i {
            self.third_ack_in.resize(i + 1, None);
        }
        if matches!(p.join(), Some(MpJoinRepr::Ack { .. })) && self.third_ack_in[i].is_none() {
            self.third_ack_in[i] = Some(self.now);
        }
        if self.maps_in.len() <= i {
            self.maps_in.resize(i + 1, Vec::new());
        }
        if let Some(m) = p.dss().and_then(|d| d.mapping)
            && m.ssn != 0
        {
            self.maps_in[i].push((m.ssn, u32::from(m.data_len)));
        }
        let s = &self.client.subs[i];
        if p.flags.syn() || p.flags.rst() {
            return;
        }
        if self.arrived.len() <= i {
            self.arrived.resize_with(i + 1, || (Reasm::default(), None));
        }
        let off = i64::from(p.seq.diff(s.seq_of(0)));
        let a = &mut self.arrived[i];
        if !p.payload.is_empty() {
            // Offsets only: the bytes are checked elsewhere.
            a.0.insert(off, &vec![0; p.payload.len()]);
        }
        if p.flags.fin() {
            a.1 = Some((off + p.payload.len() as i64) as u64);
        }
    }

    /// RFC 8684 §3.3.1: data is mapped by a mapping that came in the same or an
    /// earlier segment; the receiver MAY hold or drop data whose mapping has not
    /// arrived, but data whose mapping did arrive is mapped. A segment dropped as
    /// unmapped although its mappings reached the engine is an anomaly.
    fn check_unmapped_drop(&mut self, bytes: &[u8]) {
        let Ok(p) = parse(bytes) else { return };
        let Some(i) = self.client.subs.iter().position(|s| s.addr == p.src) else {
            return;
        };
        let s = &self.client.subs[i];
        let ssn = p.seq.diff(s.seq_of(0)) as u32 + 1;
        let end = ssn + p.payload.len() as u32;
        let maps = self.maps_in.get(i).map_or(&[][..], Vec::as_slice);
        let mut o = ssn;
        while o < end {
            match maps.iter().find(|&&(a, l)| o >= a && o < a + l) {
                Some(&(a, l)) => o = a + l,
                None => return,
            }
        }
        self.anomalies.push(format!(
            "engine @{}: dropped subflow {i} data SSN {ssn}+{} as unmapped although its mapping had arrived",
            self.now,
            p.payload.len()
        ));
    }

    /// RFC 9293 §3.4: an acknowledgement says the bytes before it were received.
    /// Checks an engine packet for subflow `i` against what reached the engine.
    fn check_ack(&mut self, i: usize, p: &Pkt) {
        let s = &self.client.subs[i];
        if !p.flags.ack() || p.flags.syn() || p.flags.rst() || s.state == SubState::SynSent {
            return;
        }
        let (got, fin) = self.arrived.get(i).map_or((0, None), |a| (a.0.nxt(), a.1));
        let limit = i64::from(got as u32) + i64::from(fin.is_some_and(|f| got >= f));
        let acked = i64::from(p.ack.diff(s.seq_of(0)));
        if acked > limit {
            self.anomalies.push(format!(
                "engine @{}: subflow {i} ACK covers {acked} bytes, only {limit} reached the engine: {}",
                self.now,
                describe(p)
            ));
        }
        // RFC 2018 §4: a SACK block reports bytes the receiver holds above its
        // cumulative ACK: above the ACK, and all of them arrived on this subflow.
        for &(l, r) in &p.sack_blocks {
            let (lo, hi) = (
                i64::from(l.diff(s.seq_of(0))),
                i64::from(r.diff(s.seq_of(0))),
            );
            let held = lo >= 0
                && hi > lo
                && self
                    .arrived
                    .get(i)
                    .is_some_and(|a| a.0.holds(lo as u64, hi as u64));
            if lo <= acked || !held {
                self.anomalies.push(format!(
                    "engine @{}: subflow {i} SACK block [{lo}, {hi}) (ACK {acked}) not held above the ACK: {}",
                    self.now,
                    describe(p)
                ));
            }
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
        if self.log.is_some() {
            let d = parse(bytes).map_or_else(|e| e, |p| describe(&p));
            self.note(|| format!("in  {port:?} {d}"));
        }
        let mut p = VecPacket::from_bytes(bytes);
        let a = self.engine.handle_packet(Instant(self.now), port, &mut p);
        match a {
            Action::Forward(to) => self.emit(to, p.to_vec(), false),
            Action::Drop(r) => {
                self.drops.push((self.now, port, r));
                self.note(|| format!("drop {r:?}"));
                if r == DropReason::UnmappedData && port == Port::Access {
                    self.check_unmapped_drop(bytes);
                }
            }
            Action::Consumed => {}
        }
        self.drain();
        a
    }

    fn next_event(&self) -> Option<u64> {
        let links = self
            .up
            .iter()
            .chain(&self.down)
            .filter_map(AccessLink::next_at);
        [
            self.engine.poll_timeout().map(|i| i.0),
            self.s2e.next_at(),
            self.e2s.next_at(),
            self.client.next_timer(),
            self.server.next_timer(),
        ]
        .into_iter()
        .flatten()
        .chain(links)
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
        } else if let Some((i, p)) = self
            .up
            .iter_mut()
            .enumerate()
            .find_map(|(i, l)| l.pop_due(now).map(|p| (i, p)))
        {
            self.note_arrival(i, &p);
            let _ = self.engine_in(Port::Access, &p);
        } else if let Some(p) = self.s2e.pop_due(now) {
            let _ = self.engine_in(Port::Core, &p);
        } else if let Some((i, p)) = self
            .down
            .iter_mut()
            .enumerate()
            .find_map(|(i, l)| l.pop_due(now).map(|p| (i, p)))
        {
            self.client.on_packet(now, i, &p);
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
    pub fn run_until(&mut self, limit_us: u64, mut done: impl FnMut(&MpSim) -> bool) -> bool {
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

    pub fn run_for(&mut self, us: u64) {
        self.run_until(us, |_| false);
    }

    /// Every anomaly of the models and at the engine so far.
    pub fn all_anomalies(&self) -> Vec<String> {
        let mut v = self.anomalies.clone();
        // The client's options and checksums are well formed: none of its segments
        // may be dropped for them (unmapped data: see `check_unmapped_drop`).
        for (t, port, r) in &self.drops {
            if *port == Port::Access
                && matches!(
                    r,
                    DropReason::Malformed
                        | DropReason::BadOptions
                        | DropReason::BadMptcpOption
                        | DropReason::DssChecksum
                )
            {
                v.push(format!("engine @{t}: dropped a client segment as {r:?}"));
            }
        }
        v.extend(self.client.anomalies.iter().cloned());
        v.extend(self.server.anomalies.iter().cloned());
        if self.server.rx.conflicts > 0 {
            v.push(format!(
                "server: {} conflicting retransmissions",
                self.server.rx.conflicts
            ));
        }
        v
    }

    /// No anomaly so far, and the end-of-run checks (subflow integrity) hold.
    #[track_caller]
    pub fn assert_clean(&self) {
        let mut a = self.all_anomalies();
        a.extend(self.client.final_anomalies());
        assert!(
            a.is_empty(),
            "anomalies ({}): {:#?}\n{}",
            a.len(),
            &a[..a.len().min(40)],
            self.summary()
        );
    }

    /// One paragraph about the run: subflows, links, counters.
    pub fn summary(&self) -> String {
        let mut s = format!("t={}us engine {:?}\n", self.now, self.engine.counters());
        for (i, sub) in self.client.subs.iter().enumerate() {
            let l = |l: &AccessLink| {
                format!(
                    "{}M/{}ms sent {} lost {} cut {} qdrop {} queue avg/max {}/{} ms",
                    l.cfg.rate_bps / 1_000_000,
                    l.cfg.delay_us / MS,
                    l.sent,
                    l.lost,
                    l.cut_drops,
                    l.queue_drops,
                    l.sum_queue_us / l.sent.max(1) / MS,
                    l.max_queue_us / MS
                )
            };
            s += &format!(
                "  subflow {i} {:?}{} rx {} B ({} segs) tx {} B (rexmit {}, dupacks in {}, RTOs {} spurious {}) srtt {:?} holes {:?} rsts {}\n    up {} / down {}\n",
                sub.state,
                if sub.backup { " backup" } else { "" },
                sub.rx_bytes(),
                sub.rx_segments,
                sub.tx_bytes(),
                sub.tx_retransmits,
                sub.dupacks_rx,
                sub.rtos,
                sub.spurious_rtos,
                sub.srtt_us,
                sub.holes(),
                sub.rsts.len(),
                l(&self.up[i]),
                l(&self.down[i]),
            );
        }
        s += &format!(
            "  client rx {} data_una {} / {} reinjected {}; server rx {} una/snd {:?} retransmits {}\n",
            self.client.rx.nxt(),
            self.client.data_una,
            self.client.app.len(),
            self.client.reinjected_bytes,
            self.server.rx.nxt(),
            self.server.state,
            self.server.retransmits
        );
        s
    }

    /// Payload Mbit/s the client received per subflow in bins of `bin_us` from
    /// `from`, one line per bin, with the in-order data offset at the bin's end.
    pub fn timeline(&self, from: u64, to: u64, bin_us: u64) -> String {
        let mut out = String::new();
        let mut t = from;
        while t < to {
            let e = (t + bin_us).min(to);
            let rates: Vec<String> = self
                .client
                .subs
                .iter()
                .map(|s| {
                    format!(
                        "{:5.1}",
                        s.rx_bytes_between(t, e) as f64 * 8.0 / (e - t) as f64
                    )
                })
                .collect();
            let upto = self
                .client
                .delivery_log
                .iter()
                .take_while(|d| d.0 < e)
                .last()
                .map_or(0, |d| d.1);
            out += &format!(
                "  {:>6} ms  sub Mbit/s [{}]  in order {:>9}\n",
                (t - from) / MS,
                rates.join(" "),
                upto
            );
            t = e;
        }
        out
    }

    /// The engine's inputs and outputs (needs `SIM_DUMP=1`).
    pub fn dump(&self) -> String {
        match &self.log {
            Some(l) => l.join("\n"),
            None => "(set SIM_DUMP=1 for the packet log)".into(),
        }
    }

    /// The last `n` lines of the packet log.
    pub fn dump_tail(&self, n: usize) -> String {
        match &self.log {
            Some(l) => l[l.len().saturating_sub(n)..].join("\n"),
            None => "(set SIM_DUMP=1 for the packet log)".into(),
        }
    }
}
