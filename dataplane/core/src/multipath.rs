//! Multipath: joined subflows (RFC 8684 §3.2), per-subflow estimation, the
//! downstream scheduler, the zero-copy repair cache and two-stage failover
//! (docs/multipath.md).
//!
//! A connection becomes bonded when its first MP_JOIN is accepted: the initial
//! subflow's identity arithmetic (`Conn::e_seq`) then gives way to per-subflow send
//! counters, and every server segment is placed on one subflow as it is forwarded
//! (nothing is held back). The engine keeps a *reference* to each placed segment
//! (`PacketBuf::share`, a reference count on an mbuf) until the client's subflow
//! ACK covers it, so that access-link losses are repaired locally at the original
//! subflow sequence number (RFC 8684 §3.3.6) and a dead subflow's data in flight is
//! re-sent at once on a live one under a new mapping. The server sees a clean path:
//! a cumulative ACK from the client's DATA_ACK, no duplicate ACK caused by
//! multipath reordering, and a window clamped to what the subflows can carry.

use std::collections::VecDeque;

use hac_wire::checksum::{self, Checksum};
use hac_wire::crypto::join_hmac160;
use hac_wire::mptcp::{DataSeqField, DssRepr, Mapping, MpJoinRepr, MptcpOption};
use hac_wire::seq::SeqNum;
use hac_wire::tcp::Flags;

use crate::config::Scheduler;
use crate::conn::{Conn, Deadline, Leg, State};
use crate::drop::DropReason;
use crate::emit::{TcpOut, pad_nop, write_ts};
use crate::engine::{Action, Engine, Port, Tx};
use crate::packet::PacketBuf;
use crate::segment::Segment;
use crate::time::Instant;
use crate::translate::rescale;

/// Initial send budget of a subflow without estimates (RFC 6928's IW10).
const IW_BYTES: u64 = 10 * 1448;
/// Floor of the per-subflow retransmission timeout (Linux's TCP_RTO_MIN).
const MIN_RTO_US: u64 = 200_000;
/// Cap of the backed-off timeout while probing a dead subflow.
const MAX_RTO_US: u64 = 1_000_000;
/// Longest interval between probes of a suspect or dead subflow.
const PROBE_DEAD_US: u64 = 400_000;
/// Floor of the silence that makes a subflow suspect (R7).
const MIN_SUSPECT_US: u64 = 30_000;
/// Suspect intervals before a subflow is declared dead.
const DEAD_AFTER: u64 = 3;
/// How often a bonded connection with data in flight checks its subflows.
const TICK_US: u64 = 10_000;
/// Window of the minimum-RTT filter.
const MIN_RTT_WINDOW_US: u64 = 10_000_000;
/// Bandwidth estimates older than this are replaced by the next sample.
const BW_WINDOW_US: u64 = 2_000_000;
/// Send budget while a subflow's rate is still growing = 2 × bandwidth × min RTT
/// (BBR's startup cwnd gain: in-flight data may double every round trip).
const BUDGET_GAIN_STARTUP: u64 = 2;
/// Send budget once the rate has stopped growing: 5/4 × bandwidth × min RTT (BBR's
/// probing gain: a quarter of a round trip of queue, so a faster link shows in the
/// delivery rate while a saturated one keeps a short standing queue).
const BUDGET_GAIN_NUM: u64 = 5;
const BUDGET_GAIN_DEN: u64 = 4;
/// Rounds without 25 % rate growth after which a subflow's pipe is full (BBR).
const FULL_BW_ROUNDS: u8 = 3;
/// Shortest minimum-RTT refresh, and the budget during it (BBR's ProbeRTT: 200 ms,
/// four segments).
const PROBE_RTT_US: u64 = 200_000;
const PROBE_RTT_BUDGET: u64 = 4 * 1448;
/// Segments of slack in every budget (delayed ACKs, the segment being placed).
const BUDGET_SLACK: u64 = 2 * 1448;
/// Repairs queued per received ACK at most.
const MAX_REPAIRS_PER_ACK: usize = 16;

/// Whether a delivered segment's send time may advance RACK's clock (RFC 8985
/// §6.2 step 2): not a re-sent segment acknowledged within a minimum RTT of its
/// latest transmission — the ACK is for an earlier copy, and taking the re-send
/// time would declare everything sent before it lost (a spurious repair then
/// feeds the next one).
fn rack_usable<P>(f: &Sent<P>, now: Instant, min_rtt_us: u64) -> bool {
    f.retx == 0 || now.0.saturating_sub(f.sent_at.0) >= min_rtt_us
}

/// Bytes the server may have on its way to us: the usable subflows' delivery
/// rate over the server's round trip (from the handshake), with BBR's probing
/// gain, at least the initial window.
fn transit_allowance<P>(c: &Conn<P>) -> u64 {
    let Some(m) = c.mp.as_ref() else { return 0 };
    let rate: u64 = m.paths.iter().filter(|p| p.usable()).map(|p| p.bw).sum();
    (rate * u64::from(c.s_rtt_us) / 1_000_000 * BUDGET_GAIN_NUM / BUDGET_GAIN_DEN).max(IW_BYTES)
}

/// A joined subflow's handshake progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathState {
    /// SYN-ACK with our HMAC sent; waiting for the client's third ACK (HMAC-160).
    JoinPending,
    /// Usable.
    Active,
    /// Closed by the client (RST, REMOVE_ADDR): no placements, nothing expected.
    Removed,
}

/// What the estimator says about a subflow (R7: make before break).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Ok,
    /// ACKs stopped while others progress: no new placements.
    Suspect,
    /// Silent for several intervals: its data in flight moved to the survivors.
    Dead,
}

/// One segment placed on a subflow and not yet acknowledged there.
#[derive(Debug)]
pub(crate) struct Sent<P> {
    /// Subflow sequence number of its first payload byte.
    pub seq: SeqNum,
    /// Payload bytes.
    pub len: u16,
    /// The mapping carries the DATA_FIN (one more octet of data sequence space).
    pub fin: bool,
    /// Times re-sent on this subflow.
    pub retx: u8,
    /// Covered by a SACK block of the client.
    pub sacked: bool,
    /// Already re-sent on another subflow.
    pub reinjected: bool,
    /// Counted in the subflow's bytes in flight (not SACKed, not written off as
    /// lost with its subflow; RFC 6675's pipe).
    pub in_pipe: bool,
    /// Downstream index of its first byte.
    pub v: u64,
    /// Last transmission.
    pub sent_at: Instant,
    /// The subflow's delivered-byte count when it was sent (delivery-rate sample).
    pub delivered: u64,
    pub delivered_at: Instant,
    /// Send time of the latest segment delivered when this one was sent (the
    /// send-side interval of a rate sample, as in BBR, guards against ACK bursts).
    pub first_sent: Instant,
    /// The subflow was not full when it was sent: a low rate sample from it says
    /// nothing about the link (BBR's application-limited samples).
    pub app_limited: bool,
    /// The cached packet (None: not cached). The payload is the `len` bytes that
    /// end `tail_skip` bytes before its end (0 but for a segment cached from a
    /// larger server retransmission that covers it).
    pub pkt: Option<P>,
    pub tail_skip: u16,
    /// Declared lost with no copy to repair it from (cache full or off): a hole
    /// only the server can fill, revealed to it by SACK until it does.
    pub unrepaired: bool,
}

impl<P> Sent<P> {
    /// `len` bytes at subflow sequence `seq` (downstream index `v`) sent at `now`
    /// for the first time, not cached, with no delivery-rate context.
    fn first(seq: SeqNum, len: u16, v: u64, now: Instant) -> Self {
        Sent {
            seq,
            len,
            fin: false,
            retx: 0,
            sacked: false,
            reinjected: false,
            in_pipe: true,
            v,
            sent_at: now,
            delivered: 0,
            delivered_at: now,
            first_sent: now,
            app_limited: false,
            pkt: None,
            tail_skip: 0,
            unrepaired: false,
        }
    }
}

/// One subflow of a bonded connection.
#[derive(Debug)]
pub(crate) struct Path<P> {
    /// Addresses and sequence spaces (unused for path 0, which is `Conn::leg`).
    pub leg: Leg,
    pub state: PathState,
    /// The client's address ID (MP_JOIN SYN; 0 for the initial subflow).
    pub addr_id: u8,
    /// The client asked for it to be a backup (MP_JOIN B flag or MP_PRIO).
    pub backup: bool,
    /// On the primary access (configuration).
    pub primary: bool,
    pub nonce_local: u32,
    pub nonce_remote: u32,
    /// Oldest unacknowledged subflow sequence of ours.
    pub snd_una: SeqNum,
    pub inflight: VecDeque<Sent<P>>,
    /// Bytes placed and neither acknowledged nor SACKed (in the network).
    pub inflight_bytes: u64,
    pub dupacks: u8,
    /// RFC 6298 estimator, microseconds (0: no sample yet).
    pub srtt_us: u64,
    pub rttvar_us: u64,
    pub min_rtt_us: u64,
    pub min_rtt_at: Instant,
    /// Latest RTT sample.
    pub last_rtt_us: u64,
    /// Windowed-max delivery rate, bytes per second (0: unknown).
    pub bw: u64,
    pub bw_at: Instant,
    /// Full-pipe detection (BBR): the rate at the last 25 % growth, rounds since,
    /// and when the current round (one min RTT) began.
    pub full_bw: u64,
    pub full_bw_rounds: u8,
    pub round_at: Instant,
    /// Minimum-RTT refresh under way until then; since when the subflow has
    /// drained to [`PROBE_RTT_BUDGET`] in it (None: not yet); the smallest RTT
    /// seen in it of a segment sent since then.
    pub probe_until: Option<Instant>,
    pub probe_from: Option<Instant>,
    pub probe_min_us: u64,
    /// Bytes the client acknowledged on this subflow, in all.
    pub delivered: u64,
    pub delivered_at: Instant,
    /// Send time of the latest segment delivered.
    pub first_sent: Instant,
    /// Last ACK progress (or first placement after idle).
    pub last_progress: Instant,
    pub health: Health,
    /// Timeout retransmissions since the last progress.
    pub backoff: u8,
    pub last_rto: Instant,
    /// Payload bytes placed, and re-sent, on this subflow.
    pub bytes_sent: u64,
    pub bytes_repaired: u64,
    /// Where our subflow FIN sits (bonded connections; fixed at first transmission).
    pub fin_seq: Option<SeqNum>,
    /// The client's latest mappings on this subflow, oldest first: (data index of
    /// the first byte, its subflow sequence, subflow length). The subflow ACK we
    /// owe follows the server's ACK through them.
    pub up_maps: VecDeque<(u64, SeqNum, u32)>,
    /// With DSS checksums: the client's mappings on this subflow replaced before
    /// their checksum settled (a hole in them is repaired after the next mapping
    /// started), oldest first, at most [`CSUM_OLD`]; their repairs are summed here.
    pub csum_old: VecDeque<crate::conn::ClientMapping>,
    /// The client's bytes on this subflow received without a hole up to here
    /// (None until the first byte), and up to [`OOO_RANGES`] received ranges above it.
    pub rcv_contig: Option<SeqNum>,
    pub rcv_ooo: [(SeqNum, SeqNum); OOO_RANGES],
    pub rcv_ooo_n: u8,
}

impl<P> Path<P> {
    fn new(leg: Leg, now: Instant) -> Self {
        Path {
            leg,
            state: PathState::Active,
            addr_id: 0,
            backup: false,
            primary: false,
            nonce_local: 0,
            nonce_remote: 0,
            snd_una: leg.e_snd_nxt,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            dupacks: 0,
            srtt_us: 0,
            rttvar_us: 0,
            min_rtt_us: 0,
            min_rtt_at: now,
            last_rtt_us: 0,
            bw: 0,
            bw_at: now,
            full_bw: 0,
            full_bw_rounds: 0,
            round_at: now,
            probe_until: None,
            probe_from: None,
            probe_min_us: u64::MAX,
            delivered: 0,
            delivered_at: now,
            first_sent: now,
            last_progress: now,
            health: Health::Ok,
            backoff: 0,
            last_rto: now,
            bytes_sent: 0,
            bytes_repaired: 0,
            fin_seq: None,
            up_maps: VecDeque::new(),
            csum_old: VecDeque::new(),
            rcv_contig: Some(leg.c_rcv_nxt),
            rcv_ooo: [(SeqNum(0), SeqNum(0)); OOO_RANGES],
            rcv_ooo_n: 0,
        }
    }

    /// Records a segment placed here now (new data, or a re-send under a new
    /// mapping): in flight, with this subflow's delivery-rate snapshot.
    fn place(&mut self, now: Instant, seq: SeqNum, len: u16, fin: bool, v: u64, pkt: Option<P>) {
        if self.inflight.is_empty() {
            self.last_progress = now;
            self.delivered_at = now;
        }
        self.inflight.push_back(Sent {
            fin,
            delivered: self.delivered,
            delivered_at: self.delivered_at,
            first_sent: self.first_sent,
            app_limited: self.inflight_bytes < self.pipe(),
            pkt,
            ..Sent::first(seq, len, v, now)
        });
        self.inflight_bytes += u64::from(len);
        self.bytes_sent += u64::from(len);
    }

    /// Whether new data may be placed here.
    pub fn usable(&self) -> bool {
        self.state == PathState::Active && self.health == Health::Ok
    }

    /// RFC 6298 RTO with a 200 ms floor, backed off. A suspect or dead subflow is
    /// probed (one segment) at least every [`PROBE_DEAD_US`] without back-off, so
    /// it is taken back within that time of its link returning.
    fn rto_us(&self) -> u64 {
        let base = if self.srtt_us == 0 {
            1_000_000
        } else {
            (self.srtt_us + 4 * self.rttvar_us).max(MIN_RTO_US)
        };
        if self.health != Health::Ok {
            return base.min(PROBE_DEAD_US);
        }
        (base << self.backoff.min(6)).min(MAX_RTO_US.max(base))
    }

    /// ACK silence after which the subflow becomes suspect (R7).
    fn suspect_after_us(&self) -> u64 {
        if self.srtt_us == 0 {
            return 1_000_000;
        }
        (2 * self.srtt_us)
            .max(self.srtt_us + 4 * self.rttvar_us)
            .max(MIN_SUSPECT_US)
    }

    /// Send budget (the subflow's congestion window, uncoupled, R14): gain ×
    /// estimated bandwidth-delay product plus slack, at least IW10. The gain is 2
    /// while the delivery rate still grows (startup), 5/4 once it has stopped.
    pub fn budget(&self) -> u64 {
        if self.probe_until.is_some() {
            return PROBE_RTT_BUDGET;
        }
        if self.bw == 0 || self.min_rtt_us == 0 {
            return IW_BYTES;
        }
        let bdp = self.bw * self.min_rtt_us / 1_000_000;
        let b = if self.full_bw_rounds >= FULL_BW_ROUNDS {
            bdp * BUDGET_GAIN_NUM / BUDGET_GAIN_DEN
        } else {
            bdp * BUDGET_GAIN_STARTUP
        };
        (b + BUDGET_SLACK).max(IW_BYTES)
    }

    /// Budget left for new placements.
    pub fn room(&self) -> u64 {
        self.budget().saturating_sub(self.inflight_bytes)
    }

    /// Predicted delivery time (µs from now) of `len` more bytes placed here:
    /// one-way delay plus the queue ahead at the estimated rate (R1).
    fn predicted_us(&self, len: u64) -> u64 {
        let rtt = if self.min_rtt_us == 0 {
            self.srtt_us.max(1)
        } else {
            self.min_rtt_us
        };
        let owd = rtt / 2;
        if self.bw == 0 {
            // No rate yet: the initial budget drains in one RTT.
            let q = self.inflight_bytes + len;
            return owd + q * rtt / IW_BYTES.max(1);
        }
        let pipe = self.bw * rtt / 1_000_000;
        let queued = self.inflight_bytes.saturating_sub(pipe);
        owd + (queued + len) * 1_000_000 / self.bw
    }

    /// Whether `len` more bytes would queue beyond the target: an eighth of the
    /// minimum RTT, at least 1 ms (before any rate estimate: beyond IW10).
    pub fn saturated(&self, len: u64) -> bool {
        if self.bw == 0 || self.min_rtt_us == 0 {
            return self.inflight_bytes + len > IW_BYTES;
        }
        self.queue_delay_us(len) > (self.min_rtt_us / 16).max(1_000)
    }

    /// Whether the access link is saturated as the client's ACKs show it: the
    /// latest RTT above the minimum by more than the target (a queue is standing).
    /// Unlike [`Path::saturated`] it does not trust a rate measured while the
    /// server sent less than the link carries.
    pub fn queue_standing(&self) -> bool {
        self.min_rtt_us > 0
            && self.last_rtt_us.saturating_sub(self.min_rtt_us) > (self.min_rtt_us / 4).max(2_000)
    }

    /// Queueing delay ahead of `len` more bytes at the estimated rate.
    fn queue_delay_us(&self, len: u64) -> u64 {
        if self.bw == 0 {
            return if self.inflight_bytes + len <= IW_BYTES {
                0
            } else {
                u64::MAX
            };
        }
        // The initial window never counts as a queue: a rate measured while the
        // server's window was small (BBR's 2 × rate × the fast path's RTT, a short
        // flow) is far below the link's, and counting a few segments as queued at
        // that rate sent every other segment of a two-segment window to the slow
        // subflow (simulator: half the bytes over a 50 ms path while a 1 ms one
        // idled).
        if self.inflight_bytes + len <= IW_BYTES {
            return 0;
        }
        let pipe = self.bw * self.min_rtt_us / 1_000_000;
        (self.inflight_bytes + len).saturating_sub(pipe) * 1_000_000 / self.bw
    }

    fn on_rtt(&mut self, rtt_us: u64, now: Instant) {
        let r = rtt_us.max(1);
        self.last_rtt_us = r;
        if self.srtt_us == 0 {
            self.srtt_us = r;
            self.rttvar_us = r / 2;
        } else {
            let d = self.srtt_us.abs_diff(r);
            self.rttvar_us = (3 * self.rttvar_us + d) / 4;
            self.srtt_us = (7 * self.srtt_us + r) / 8;
        }
        if self.min_rtt_us == 0 || r <= self.min_rtt_us {
            self.min_rtt_us = r;
            self.min_rtt_at = now;
        }
        // Only segments sent once the subflow has drained count: when the
        // other subflows cannot take its share (all of them slow, or full),
        // it keeps a queue through the refresh, and that queue is not its
        // minimum (simulator, two 2 Mbit/s paths of 1 and 50 ms: 8 → 48 ms, and
        // the ACK hold, whose rule compares the subflows' minimums, vanished
        // for the next 10 s). Without such a sample the old minimum stays.
        if self.probe_until.is_some() {
            if self.probe_from.is_none() && self.inflight_bytes <= PROBE_RTT_BUDGET {
                self.probe_from = Some(now);
            }
            if self
                .probe_from
                .is_some_and(|f| now.0.saturating_sub(r) >= f.0)
            {
                self.probe_min_us = self.probe_min_us.min(r);
            }
        }
    }

    /// Minimum-RTT refresh (BBR's ProbeRTT): a minimum older than the window is
    /// not simply replaced by the next sample — with the budget's standing queue
    /// every sample includes queueing, and the estimate would ratchet up by a
    /// quarter every window. Instead the subflow takes almost no new data for a
    /// short interval (the other subflows carry it; `others` says one can), and the
    /// smallest RTT seen meanwhile becomes the minimum.
    fn probe_rtt(&mut self, now: Instant, others: bool) {
        match self.probe_until {
            Some(u) if now >= u => {
                if self.probe_min_us != u64::MAX {
                    self.min_rtt_us = self.probe_min_us;
                }
                self.min_rtt_at = now;
                self.probe_until = None;
            }
            None if others
                && self.min_rtt_us > 0
                && now.0.saturating_sub(self.min_rtt_at.0) > MIN_RTT_WINDOW_US =>
            {
                let d = (2 * self.srtt_us).max(PROBE_RTT_US);
                self.probe_until = Some(Instant(now.0 + d));
                self.probe_from = (self.inflight_bytes <= PROBE_RTT_BUDGET).then_some(now);
                self.probe_min_us = u64::MAX;
            }
            _ => {}
        }
    }

    /// Bytes the estimated rate keeps in flight over the minimum RTT.
    pub fn pipe(&self) -> u64 {
        self.bw * self.min_rtt_us / 1_000_000
    }

    fn on_rate(&mut self, bytes: u64, interval_us: u64, app_limited: bool, now: Instant) {
        if interval_us == 0 || bytes == 0 {
            return;
        }
        // Samples over less than a minimum RTT are ACK-compression noise.
        let interval = interval_us.max(self.min_rtt_us);
        let bw = bytes * 1_000_000 / interval.max(1);
        // A lower sample replaces an old maximum only when the subflow was full
        // (an application-limited sample would starve a subflow used for overflow).
        let expired = now.0.saturating_sub(self.bw_at.0) > BW_WINDOW_US;
        if bw >= self.bw || (expired && !app_limited) {
            if bw < self.bw {
                // The link got slower: growth is measured from here.
                self.full_bw = self.full_bw.min(bw);
            }
            self.bw = bw;
            self.bw_at = now;
        }
        // Full-pipe detection, once per round trip (BBR): three rounds without
        // 25 % growth end startup; growth beyond that (the link got faster, or a
        // subflow only used for overflow now carries more) starts it again.
        if now.0.saturating_sub(self.round_at.0) >= self.min_rtt_us.max(1_000) {
            self.round_at = now;
            if self.bw >= self.full_bw + self.full_bw / 4 {
                self.full_bw = self.bw;
                self.full_bw_rounds = 0;
            } else if !app_limited {
                self.full_bw_rounds = self.full_bw_rounds.saturating_add(1);
            }
        }
    }
}

/// Whether two subflows' minimum RTTs are far enough apart for ACK
/// equalisation: the slow one at least three times the fast one and 20 ms more.
/// (Four times until session 6: DSL 10 ms + LTE 40 ms one way sat on that edge,
/// 20.4 vs 80.7 ms in the lab.)
pub(crate) fn delays_far_apart(lo_us: u64, hi_us: u64) -> bool {
    hi_us >= 3 * lo_us && hi_us >= lo_us + 20_000
}

/// The ACK hold for subflows whose minimum RTTs are `lo_us` (fastest) and
/// `hi_us` (slowest): 3/4 of the slow round trip, capped at 1.5 × the fast one
/// while the slow one is under eight times the fast one; 0 (none) unless the
/// delays are far apart ([`delays_far_apart`]). The same rule seeds a
/// subscriber's next connection (`PathProfile::seed_hold_us`).
///
/// Why the cap: the server's minimum RTT is its handshake's, which the fast
/// path carries, and a server that sizes its flight from it (BBR: 2 × rate ×
/// min RTT, for its first 10 s) needs the round trip it sees to stay under
/// about twice that, or its window caps its rate below its estimate and the
/// estimate falls round after round. Measured on DSL/LTE (20 vs 80 ms round
/// trips; a BBR server, no loss, a subscriber's first 8 s): a 60 ms hold (3/4
/// of the slow path) gave 0.48–0.52 of the link sum in five of five runs (the
/// lab failover test then saw LTE nearly unused, CI, session 7); no hold
/// 0.61–0.89 (median 0.78), but over 30 s only 0.64–0.82, as the server's window
/// then never covers LTE's round trip; CUBIC 0.84 either way. Once BBR's
/// min-RTT filter expires (10 s) it takes the held round trip and fills both
/// paths. From eight times on such a server cannot fill the slow path from its
/// handshake RTT anyway (a flight of 2 × rate × f covers a path of RTT s > 8f
/// only if that path carries under a seventh of the rate), so no cap.
pub(crate) fn hold_for(lo_us: u64, hi_us: u64, uncapped: bool) -> u64 {
    if lo_us == 0 || !delays_far_apart(lo_us, hi_us) {
        0
    } else if uncapped || hi_us >= 8 * lo_us {
        hi_us * 3 / 4
    } else {
        (hi_us * 3 / 4).min(3 * lo_us / 2)
    }
}

/// How a server grows its flight under the uncapped hold ([`GrowthProbe`]).
///
/// The cap of [`hold_for`] is for a server that sizes its flight from its
/// handshake RTT (BBR: its window target is 2.89 × delivery rate × min RTT in
/// startup, for its first 10 s). Under a hold three times that RTT it still
/// doubles its window each round while small (Linux `tcp_bbr.c`,
/// `bbr_set_cwnd`: + all acked below the target, plus a quantization budget of
/// a few segments), but stops where 2.89 × min RTT / held RTT × window plus
/// that budget no longer exceeds the window: ~160 segments on DSL/LTE, where
/// the bond needs ~400 (lab, session 9: 0.66–0.72 of the link sum in 30 s
/// with the uncapped hold, against 0.85 capped). A server whose flight is its
/// congestion window in slow start (CUBIC, Reno: most of the Internet's
/// servers) keeps doubling until our window stops it, and wants the uncapped
/// hold: under the capped one the held round trip grows past its minimum as
/// the slow path fills, and HyStart ends its slow start (Linux
/// `tcp_cubic.c`, `HYSTART_DELAY`: 4–16 ms more; seen on DSL/LTE at 76–199
/// segments, session 8; 0.86 of the link sum capped, 0.91 uncapped). Timing
/// the first window does not tell them apart: Linux 6.18 sends a BBR server's
/// ten-segment first window back to back too (captured in the lab).
///
/// So a connection seeded from the path memory starts with the uncapped hold
/// and counts the bytes the server sends per period of the hold plus the
/// server's own round trip (about one of its rounds). The server reaching our
/// window keeps the uncapped hold; a period in which it sent less than
/// [`GROWTH_MIN_X2`]/2 times the period before while below our window (a
/// flight that stopped growing on its own, or a server with little to send)
/// gives the capped hold from then on, the behaviour before the probe; after
/// [`GROWTH_PERIODS`] periods of growth, uncapped.
const GROWTH_PERIODS: u8 = 10;
const GROWTH_MIN_X2: u64 = 3;

/// The growth test of a seeded connection (see [`GROWTH_PERIODS`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GrowthProbe {
    /// When the first period began (µs, low 32 bits) and its length (µs;
    /// 0: not probing).
    start: u32,
    period: u32,
    /// Bytes the server sent in the period before the current one, and in the
    /// current one (saturating).
    prev: u32,
    cur: u32,
    /// The current period.
    k: u8,
    /// The server's sent edge reached our window in the current period.
    at_window: bool,
    /// Decided: the uncapped hold stays (Some(true)) or the capped one applies.
    pub verdict: Option<bool>,
}

impl GrowthProbe {
    /// Probing from `now_us` in periods of `period_us`.
    pub fn start(now_us: u64, period_us: u64) -> Self {
        GrowthProbe {
            start: now_us as u32,
            period: period_us.clamp(1, u64::from(u32::MAX)) as u32,
            ..Self::default()
        }
    }

    /// `len` new bytes from the server at `now_us`, whose sent edge is now
    /// within two segments of our window or not (`at_window`). Returns the
    /// verdict when this call made it.
    pub fn add(&mut self, now_us: u64, len: u64, at_window: bool) -> Option<bool> {
        if self.verdict.is_some() || self.period == 0 {
            return None;
        }
        let k = ((now_us as u32).wrapping_sub(self.start) / self.period).min(255) as u8;
        if k > self.k {
            // The current period ended; a gap after it (a period without
            // data) means the server stopped on its own.
            let stalled = u64::from(self.cur) * 2 < GROWTH_MIN_X2 * u64::from(self.prev);
            let v = if self.at_window {
                Some(true)
            } else if k > self.k + 1 || (self.k >= 1 && stalled) {
                Some(false)
            } else if k >= GROWTH_PERIODS {
                Some(true)
            } else {
                None
            };
            if v.is_some() {
                self.verdict = v;
                return v;
            }
            (self.prev, self.cur, self.k, self.at_window) = (self.cur, 0, k, false);
        }
        self.cur = self.cur.saturating_add(len.min(u64::from(u32::MAX)) as u32);
        self.at_window |= at_window;
        None
    }

    /// No probe: the uncapped hold applies for good (a connection whose
    /// server's handshake RTT already spans it, `EngineConfig::handshake_hold`).
    pub fn settled_uncapped() -> Self {
        GrowthProbe {
            period: 1,
            verdict: Some(true),
            ..Self::default()
        }
    }

    /// Still counting (a seeded connection before its verdict).
    #[inline]
    pub fn probing(&self) -> bool {
        self.period != 0 && self.verdict.is_none()
    }

    /// Whether the uncapped hold applies now: while probing, and after a
    /// verdict of growth.
    pub fn uncapped(&self) -> bool {
        self.period != 0 && self.verdict != Some(false)
    }
}

/// Least time between two releases of held ACKs. A CUBIC server in slow start
/// ends it when the ACKs of one round arrive as a train, each within 2 ms of the
/// one before, for more than half its minimum RTT (Linux `tcp_cubic.c`,
/// HyStart, `hystart_ack_delta_us` = 2000); held ACKs released on a finer grid
/// form exactly such a train and end its slow start at the hold's bandwidth-delay
/// product instead of the bond's.
const HOLD_SPACING_MIN_US: u64 = 2_500;

/// How long a connection started with a learned ACK hold keeps it without a
/// join (`Engine::bond_seeded`).
const SEED_WAIT_US: u64 = 1_000_000;

/// Send-time records of one bonded connection's new data, for ACK equalisation.
const HOLD_RING: usize = 64;

/// ACK equalisation over very unequal delays: the server's ACK for bytes the
/// engine forwarded at `t` is released no earlier than `t + H`, H = 3/4 of the
/// slowest usable subflow's minimum RTT. A server whose window is its rate ×
/// its *minimum* RTT (BBR) otherwise sizes it from the fast subflow's RTT (a
/// fast-path byte is acknowledged in a few ms) and can never fill the slow one.
#[derive(Debug)]
pub(crate) struct AckHold {
    /// (end index of the bytes forwarded so far, when), oldest first.
    ring: [(u64, u64); HOLD_RING],
    head: usize,
    len: usize,
    /// Bytes below this index may be acknowledged now.
    released: u64,
}

impl AckHold {
    fn new(released: u64) -> Box<Self> {
        Box::new(AckHold {
            ring: [(0, 0); HOLD_RING],
            head: 0,
            len: 0,
            released,
        })
    }

    /// Bytes up to `end` forwarded at `now`; records at least `spacing` apart
    /// (a later byte may be released up to `spacing` early).
    fn push(&mut self, end: u64, now: u64, spacing: u64) {
        if self.len > 0 {
            let last = (self.head + self.len - 1) % HOLD_RING;
            if self.len == HOLD_RING || now.saturating_sub(self.ring[last].1) < spacing {
                self.ring[last].0 = self.ring[last].0.max(end);
                return;
            }
        }
        let at = (self.head + self.len) % HOLD_RING;
        self.ring[at] = (end, now);
        self.len += 1;
    }

    /// Releases what was forwarded at least `hold` ago; the next release time.
    fn release(&mut self, now: u64, hold: u64) -> Option<u64> {
        while self.len > 0 {
            let (end, t) = self.ring[self.head];
            if t + hold > now {
                return Some(t + hold);
            }
            self.released = self.released.max(end);
            self.head = (self.head + 1) % HOLD_RING;
            self.len -= 1;
        }
        None
    }
}

/// The multipath state of a bonded connection.
#[derive(Debug)]
pub(crate) struct Multi<P> {
    /// Index 0 is the initial subflow.
    pub paths: Vec<Path<P>>,
    /// Repair-cache bytes held by this connection.
    pub cached: usize,
    /// End (downstream index) of the server data forwarded so far.
    pub fwd_end: u64,
    /// Right edge of the window advertised to the server (never moves left).
    pub right_edge: Option<SeqNum>,
    /// Path of the latest client segment (pure ACKs toward the client go there).
    pub last_up: usize,
    /// Next subflow check.
    pub tick_at: Deadline,
    /// Peak repair-cache bytes of this connection.
    pub cached_peak: usize,
    /// The server's window (bytes) and the DATA_ACK as last sent to the client.
    pub win_sent: u32,
    pub dack_sent: hac_wire::seq::DataSeq,
    /// Sum and count of the cache-size samples taken by the subflow check.
    pub cached_sum: u64,
    pub cached_samples: u64,
    /// Some segment is an unrepaired hole: server-facing ACKs carry SACK.
    pub reveal: bool,
    /// ACK equalisation, once the subflows' delays are far apart.
    pub hold: Option<Box<AckHold>>,
    /// The ACK hold learned from the subscriber's earlier connections, applied
    /// from the first byte until a joined subflow has an RTT sample or
    /// `seed_until` passes without one (`paths.rs`); 0: none.
    pub seed_us: u64,
    /// The same uncapped (`hold_for`), while [`GrowthProbe`] allows it.
    pub seed_uncapped_us: u32,
    pub growth: GrowthProbe,
    pub seed_until: Instant,
    /// This connection's path profile went to the path memory.
    pub learned: bool,
    /// Client data the server holds above its cumulative ACK: the ranges (data
    /// index) of its SACK blocks (RFC 2018) since, in order, disjoint, at most
    /// [`UP_SACKED`] (allocated by the first). A subflow's ACK may pass bytes the
    /// server has, cumulatively or selectively, never bytes it has not seen.
    pub up_sacked: Vec<(u64, u64)>,
}

impl<P> Multi<P> {
    /// The ACK hold for the current subflows ([`hold_for`] of the fastest and
    /// the slowest usable subflow's minimum RTT). Until a joined subflow has
    /// an RTT sample, the hold learned from the subscriber's earlier connections
    /// (`seed_us`, see `paths.rs`), if any.
    pub fn hold_us(&self) -> u64 {
        let uncapped = self.growth.uncapped();
        if self.seed_us > 0 && !self.paths.iter().skip(1).any(|p| p.min_rtt_us > 0) {
            return if uncapped {
                u64::from(self.seed_uncapped_us)
            } else {
                self.seed_us
            };
        }
        // Every usable subflow measured, or none held.
        if self
            .paths
            .iter()
            .any(|p| p.usable() && !p.backup && p.min_rtt_us == 0)
        {
            return 0;
        }
        self.rtt_spread()
            .map_or(0, |(lo, hi)| hold_for(lo, hi, uncapped))
    }

    /// The minimum RTTs of the fastest and the slowest usable subflow, once at
    /// least two have one (what `paths.rs` remembers).
    /// A suspect subflow still counts: suspicion stops placements, but
    /// dropping the hold on it releases every held ACK at once and shows the
    /// server the fast path's round trip, which a BBR server in ProbeRTT
    /// keeps as its minimum for 10 s. Lab, DSL/LTE with LTE loss, BBR, held
    /// handshake: the server's min RTT fell from 58 ms to 20–37 ms in four of
    /// five runs with suspect subflows left out here, in none of three with
    /// them counted.
    pub fn rtt_spread(&self) -> Option<(u64, u64)> {
        let mut lo = u64::MAX;
        let mut hi = 0;
        let mut n = 0;
        for p in self.paths.iter().filter(|p| {
            p.state == PathState::Active
                && p.health != Health::Dead
                && !p.backup
                && p.min_rtt_us > 0
        }) {
            lo = lo.min(p.min_rtt_us);
            hi = hi.max(p.min_rtt_us);
            n += 1;
        }
        (n >= 2).then_some((lo, hi))
    }

    pub fn new(path0: Path<P>, fwd_end: u64) -> Self {
        Multi {
            paths: vec![path0],
            cached: 0,
            fwd_end,
            right_edge: None,
            last_up: 0,
            tick_at: Deadline::NONE,
            cached_peak: 0,
            win_sent: 0,
            dack_sent: hac_wire::seq::DataSeq(0),
            cached_sum: 0,
            cached_samples: 0,
            reveal: false,
            hold: None,
            seed_us: 0,
            seed_uncapped_us: 0,
            growth: GrowthProbe::default(),
            seed_until: Instant(0),
            learned: false,
            up_sacked: Vec::new(),
        }
    }

    /// The server's ACK of `idx` client bytes with its SACK blocks (`blocks`,
    /// data index ranges). An ACK without blocks: it holds nothing above `idx`
    /// (a Linux receiver sends SACK blocks on every ACK while it does; one that
    /// reneged on them sends none).
    pub fn note_server_sack(&mut self, idx: u64, blocks: impl Iterator<Item = (u64, u64)>) {
        let mut any = false;
        for (l, r) in blocks {
            any = true;
            note_sacked(&mut self.up_sacked, l.max(idx), r);
        }
        if !any {
            self.up_sacked.clear();
        }
        let below = self.up_sacked.partition_point(|e| e.1 <= idx);
        self.up_sacked.drain(..below);
    }

    /// Whether any subflow has data in flight.
    pub fn busy(&self) -> bool {
        self.paths.iter().any(|p| !p.inflight.is_empty())
    }
}

/// What `Engine::multipath_stats` reports about one subflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubflowInfo {
    /// Client address and port of the subflow.
    pub client: core::net::SocketAddr,
    /// The client's address ID.
    pub addr_id: u8,
    /// Backup priority requested by the client.
    pub backup: bool,
    /// On the primary access.
    pub primary: bool,
    /// `ok`, `suspect`, `dead` or `removed`.
    pub health: &'static str,
    /// Smoothed and minimum RTT, microseconds.
    pub srtt_us: u64,
    /// Minimum RTT, microseconds.
    pub min_rtt_us: u64,
    /// Estimated delivery rate, bytes per second.
    pub rate: u64,
    /// Bytes in flight.
    pub inflight: u64,
    /// Send budget: twice the estimated bandwidth-delay product (at least IW10).
    pub budget: u64,
    /// Payload bytes placed on it.
    pub bytes_sent: u64,
    /// Payload bytes repaired on it from the cache.
    pub bytes_repaired: u64,
}

/// Received ranges above a hole remembered per subflow (beyond, a range is given up:
/// our subflow ACK then stops at it until the client sends it again).
const OOO_RANGES: usize = 16;

/// Ranges of the server's SACK blocks kept per connection ([`Multi::up_sacked`]):
/// one per hole at the server, which a client interleaving small mappings over
/// two subflows makes many of (64 × 16 bytes at most, only while uploading).
pub(crate) const UP_SACKED: usize = 64;

/// Adds the range `[l, r)` the server holds to `set` (in order, disjoint),
/// merged with those it overlaps or touches; beyond [`UP_SACKED`] the highest
/// range goes (forgetting one only makes a subflow ACK wait for the server's
/// cumulative ACK).
pub(crate) fn note_sacked(set: &mut Vec<(u64, u64)>, mut l: u64, mut r: u64) {
    if l >= r {
        return;
    }
    // The first range that ends at or after l, and the first that starts after r.
    let from = set.partition_point(|e| e.1 < l);
    let to = set.partition_point(|e| e.0 <= r);
    if from < to {
        l = l.min(set[from].0);
        r = r.max(set[to - 1].1);
        set.drain(from..to);
    }
    set.insert(from, (l, r));
    set.truncate(UP_SACKED);
}

/// The end of the client data the server holds from data index `x` on: `idx`
/// (its cumulative ACK) and beyond through `sacked` (in order, disjoint); `x`
/// itself if it lacks `x`.
fn held_to(x: u64, idx: u64, sacked: &[(u64, u64)]) -> u64 {
    let mut c = x.max(idx);
    for &(l, r) in sacked {
        if l > c {
            break;
        }
        c = c.max(r);
    }
    c
}

/// Unsettled earlier mappings kept per subflow for their DSS checksum.
pub(crate) const CSUM_OLD: usize = 16;

/// Client mappings remembered per subflow of a bonded connection (16 bytes
/// each; contiguous ones are merged, so an entry is a run of the client's data
/// sent on this subflow without another subflow's data in between).
const UP_MAPS: usize = 128;

impl<P> Path<P> {
    /// Records a client mapping received on this subflow; `settled`: our subflow
    /// ACK so far (the client awaits nothing below it).
    pub fn note_mapping(&mut self, u: u64, seq: SeqNum, len: u32, settled: SeqNum) {
        note_up_map(&mut self.up_maps, u, seq, len, settled);
    }

    /// The data index of client bytes `[seq, seq + len)` by a remembered mapping.
    pub fn map_of(&self, seq: SeqNum, len: u32) -> Option<u64> {
        self.up_maps.iter().rev().find_map(|&(u, s, l)| {
            let off = seq.diff(s);
            (off >= 0 && off as u64 + u64::from(len) <= u64::from(l)).then(|| u + off as u64)
        })
    }

    /// Records client bytes `[l, r)` received on this subflow. Returns whether
    /// they sit above a hole (the client's segment before them was lost on this
    /// subflow): such a segment is answered at once (RFC 5681 §4.2), with SACK
    /// blocks where negotiated ([`Path::rcv_sack_blocks`]).
    pub fn note_received(&mut self, l: SeqNum, r: SeqNum) -> bool {
        let Some(c) = self.rcv_contig else {
            self.rcv_contig = Some(r);
            return false;
        };
        if r.diff(c) <= 0 {
            return false;
        }
        if l.diff(c) > 0 {
            // Above a hole: remember the range (merged; when more than four are
            // open the new one is given up, which only delays our ACK). The range
            // the segment went into moves to the front: RFC 2018 §4, the first
            // SACK block reports the most recent segment.
            let n = usize::from(self.rcv_ooo_n);
            let at = (0..n).find(|&i| {
                let (a, b) = self.rcv_ooo[i];
                l.diff(b) <= 0 && r.diff(a) >= 0
            });
            let merged = match at {
                Some(i) => {
                    let (a, b) = self.rcv_ooo[i];
                    (
                        if l.diff(a) < 0 { l } else { a },
                        if r.diff(b) > 0 { r } else { b },
                    )
                }
                None if n < OOO_RANGES => {
                    self.rcv_ooo_n += 1;
                    (l, r)
                }
                None => return true,
            };
            let from = at.unwrap_or(n);
            self.rcv_ooo.copy_within(0..from, 1);
            self.rcv_ooo[0] = merged;
            return true;
        }
        let mut c = r;
        // Absorb the ranges the hole-filling bytes reach.
        loop {
            let n = usize::from(self.rcv_ooo_n);
            let Some(i) = (0..n).find(|&i| self.rcv_ooo[i].0.diff(c) <= 0) else {
                break;
            };
            if self.rcv_ooo[i].1.diff(c) > 0 {
                c = self.rcv_ooo[i].1;
            }
            self.rcv_ooo[i] = self.rcv_ooo[n - 1];
            self.rcv_ooo_n -= 1;
        }
        self.rcv_contig = Some(c);
        false
    }

    /// SACK blocks (RFC 2018) for our subflow ACK `ack` on this subflow: the
    /// client's bytes above a hole here, most recent first. Only once `ack` has
    /// reached the hole: a block above bytes that arrived but wait for the
    /// server's ACK would tell the client's RACK (RFC 8985) those bytes were lost,
    /// and a block starting at `ack` would look like reneging (RFC 2018 §8).
    pub fn rcv_sack_blocks(&self, ack: SeqNum) -> heapless_blocks::Blocks {
        let mut blocks = heapless_blocks::Blocks::default();
        let n = usize::from(self.rcv_ooo_n);
        if n == 0 || self.rcv_contig.is_none_or(|c| c.diff(ack) > 0) {
            return blocks;
        }
        for &(l, r) in self.rcv_ooo[..n].iter().filter(|(l, _)| l.diff(ack) > 0) {
            blocks.push(l, r);
        }
        blocks
    }

    /// SACK blocks for our subflow ACK `ack` on this subflow when the server
    /// lacks bytes we received here (lost between us and the server): this
    /// subflow's later bytes the server holds (`idx`, its cumulative ACK, and
    /// `sacked`, its SACK blocks), in subflow space, lowest first. They were
    /// forwarded after the missing ones, so the client's fast retransmission
    /// (RFC 5681 §3.2, RACK, RFC 8985) repairs them on this subflow as a
    /// receiver's SACK would; the server's holes in other subflows' data show
    /// no block here. Empty while `ack` waits at a hole on the access path
    /// ([`Path::rcv_sack_blocks`] covers those).
    pub fn server_sack_blocks(
        &self,
        ack: SeqNum,
        idx: u64,
        sacked: &[(u64, u64)],
    ) -> heapless_blocks::Blocks {
        match self.rcv_contig {
            Some(rcv) => held_blocks(&self.up_maps, rcv, ack, idx, sacked),
            None => heapless_blocks::Blocks::default(),
        }
    }

    /// The subflow ACK the server's cumulative ACK (`idx` client bytes) allows on
    /// this subflow: every mapped byte below it acknowledged by the server, or
    /// held by it above that (`sacked`, its SACK blocks; `settled`: our subflow
    /// ACK so far).
    pub fn ack_through_maps(
        &self,
        idx: u64,
        sacked: &[(u64, u64)],
        settled: SeqNum,
    ) -> Option<SeqNum> {
        ack_through_up_maps(&self.up_maps, idx, sacked, settled)
    }
}

/// Remembers the client's mapping (data index `u` of its first byte, subflow
/// sequence `seq`, `len` subflow bytes) in `maps`, kept in subflow order with
/// each mapping once, contiguous ones merged, at most [`UP_MAPS`]. Mappings wholly
/// below `settled` (our subflow ACK so far) are done with and go first. When
/// full the newest goes (or the new one is not taken, if it is the newest): the
/// walk of [`ack_through_up_maps`] needs the oldest, and it stops at bytes no
/// remembered mapping covers until the client announces their mapping again
/// (Linux repeats it on every retransmission). Two other ways failed in the lab
/// (20 MB each way at once, about one run in ten): dropping the oldest let the
/// walk acknowledge its bytes unseen, and if the server lacked them nobody
/// re-sent them (session 12); summarising the forgotten oldest and passing them
/// only once the server's cumulative ACK covered them all deadlocked when the
/// client retransmitted that head (its mapping, older than all remembered, was
/// not taken back) and the bytes the server lacked were queued behind it on
/// the same subflow (session 13). Appended as it came, a repeat put a later
/// mapping before an earlier one, and the in-order walk then acknowledged bytes
/// of the earlier one the server had not acknowledged (lab, 1 % loss).
pub(crate) fn note_up_map(
    maps: &mut VecDeque<(u64, SeqNum, u32)>,
    u: u64,
    seq: SeqNum,
    len: u32,
    settled: SeqNum,
) {
    if let Some(e) = maps.iter_mut().find(|e| e.1 == seq) {
        if len >= e.2 || u != e.0 {
            *e = (u, seq, len);
        }
        return;
    }
    // Already known inside a merged run.
    if maps.iter().any(|e| {
        let off = seq.diff(e.1);
        off > 0 && off as u64 + u64::from(len) <= u64::from(e.2) && e.0 + off as u64 == u
    }) {
        return;
    }
    while maps.front().is_some_and(|e| (e.1 + e.2).diff(settled) <= 0) {
        maps.pop_front();
    }
    if (seq + len).diff(settled) <= 0 {
        // Already acknowledged: nothing to walk through.
        return;
    }
    let at = maps
        .iter()
        .rposition(|e| e.1.diff(seq) < 0)
        .map_or(0, |i| i + 1);
    // Contiguous with the one before it in both spaces: one run.
    if let Some(p) = at.checked_sub(1).and_then(|i| maps.get_mut(i))
        && p.1 + p.2 == seq
        && p.0 + u64::from(p.2) == u
    {
        p.2 += len;
        // And perhaps with the one after it.
        if let Some(&n) = maps.get(at)
            && let Some(p) = maps.get(at - 1).copied()
            && p.1 + p.2 == n.1
            && p.0 + u64::from(p.2) == n.0
        {
            maps[at - 1].2 += n.2;
            maps.remove(at);
        }
        return;
    }
    if let Some(n) = maps.get_mut(at)
        && seq + len == n.1
        && u + u64::from(len) == n.0
    {
        *n = (u, seq, len + n.2);
        return;
    }
    if maps.len() == UP_MAPS {
        if at == maps.len() {
            // The newest: not taken (a gap the walk stops at until announced again).
            return;
        }
        maps.pop_back();
    }
    maps.insert(at, (u, seq, len));
}

/// [`Path::server_sack_blocks`] over the mappings `maps` of a subflow that
/// received its bytes up to `rcv`, for our ACK `ack` there.
pub(crate) fn held_blocks(
    maps: &VecDeque<(u64, SeqNum, u32)>,
    rcv: SeqNum,
    ack: SeqNum,
    idx: u64,
    sacked: &[(u64, u64)],
) -> heapless_blocks::Blocks {
    let mut blocks = heapless_blocks::Blocks::default();
    if sacked.is_empty() || rcv.diff(ack) <= 0 {
        return blocks;
    }
    let mut cur: Option<(SeqNum, SeqNum)> = None;
    for &(u, seq, len) in maps {
        let end = seq + len;
        if end.diff(ack) <= 0 {
            continue;
        }
        if seq.diff(rcv) >= 0 {
            break;
        }
        // This mapping's bytes from `ack` on and below `rcv`.
        let lo = if seq.diff(ack) < 0 {
            ack.diff(seq) as u64
        } else {
            0
        };
        let hi = if end.diff(rcv) > 0 {
            rcv.diff(seq) as u64
        } else {
            u64::from(len)
        };
        let mut x = u + lo;
        while x < u + hi {
            let h = held_to(x, idx, sacked).min(u + hi);
            if h > x {
                let (l, r) = (seq + (x - u) as u32, seq + (h - u) as u32);
                cur = match cur {
                    Some((cl, cr)) if cr == l => Some((cl, r)),
                    Some(b) => {
                        if b.0.diff(ack) > 0 {
                            blocks.push(b.0, b.1);
                        }
                        Some((l, r))
                    }
                    None => Some((l, r)),
                };
                x = h;
            } else {
                // The next byte the server holds in this mapping, if any.
                match sacked.iter().find(|e| e.1 > x && e.0 < u + hi) {
                    Some(e) => x = e.0.max(x + 1),
                    None => break,
                }
            }
        }
        if blocks.len() == 4 {
            return blocks;
        }
    }
    if let Some((l, r)) = cur
        && l.diff(ack) > 0
    {
        blocks.push(l, r);
    }
    blocks
}

/// The subflow ACK the server's cumulative ACK of `idx` client bytes and its
/// SACKed ranges `sacked` allow through `maps` (in subflow order): up to the
/// first mapped byte the server does not hold, and never across subflow bytes no
/// remembered mapping covers (between `settled`, our subflow ACK so far, and the
/// first mapping, or between two mappings): the server may lack those. Bytes it
/// holds above a hole are acknowledged on their subflow at once, so a fast
/// subflow's ACKs do not wait for a slow one's earlier data (the client's
/// DATA_ACK still does).
pub(crate) fn ack_through_up_maps(
    maps: &VecDeque<(u64, SeqNum, u32)>,
    idx: u64,
    sacked: &[(u64, u64)],
    settled: SeqNum,
) -> Option<SeqNum> {
    if maps.is_empty() {
        return None;
    }
    let mut ack = settled;
    for &(u, seq, len) in maps {
        if seq.diff(ack) > 0 {
            break;
        }
        let done = ack.diff(seq) as u64;
        if done >= u64::from(len) {
            continue;
        }
        let end = u + u64::from(len);
        let held = held_to(u + done, idx, sacked).min(end);
        ack = seq + (held - u) as u32;
        if held < end {
            break;
        }
    }
    Some(ack)
}

impl<P> Conn<P> {
    /// Writes the options of a segment toward the client on `leg`: timestamps when
    /// the subflow uses them, then a DSS with our DATA_ACK and, for data or a
    /// DATA_FIN, the mapping `(downstream index, relative SSN, data-level length)`
    /// (a data-less DATA_FIN has SSN 0 and length 1, RFC 8684 §3.3.3), checksummed
    /// over the payload sum `psum` when DSS checksums are in use. Returns the length
    /// written (at most 12 + 28 bytes; not padded).
    pub(crate) fn write_client_options(
        &self,
        buf: &mut [u8; 40],
        now: Instant,
        leg: &Leg,
        map: Option<(u64, u32, u32)>,
        fin: bool,
        psum: Checksum,
    ) -> usize {
        let mut n = 0;
        if leg.ts {
            n = write_ts(buf, self.tsval(now), leg.c_ts_recent);
        }
        let mapping = map.map(|(v, ssn, len)| {
            let dsn = self.e_dsn(v);
            Mapping {
                dsn: DataSeqField::Bits64(dsn),
                ssn,
                data_len: len as u16,
                checksum: self
                    .csum
                    .then(|| checksum::dss_checksum(dsn.0, ssn, len as u16, psum)),
            }
        });
        let dss = DssRepr {
            data_ack: Some(DataSeqField::Bits64(self.data_ack_to_client())),
            mapping,
            data_fin: fin,
        };
        if let Ok(k) = dss.emit(&mut buf[n..]) {
            n += k;
        }
        n
    }

    /// The subflow leg `k` (0: the initial subflow).
    #[inline]
    pub fn legk(&self, k: usize) -> &Leg {
        match (&self.mp, k) {
            (Some(m), k) if k > 0 => &m.paths[k].leg,
            _ => &self.leg,
        }
    }

    /// The subflow leg `k`, mutable.
    #[inline]
    pub fn legk_mut(&mut self, k: usize) -> &mut Leg {
        match (&mut self.mp, k) {
            (Some(m), k) if k > 0 => &mut m.paths[k].leg,
            _ => &mut self.leg,
        }
    }

    /// Whether the connection is bonded (multipath arithmetic in force).
    #[inline]
    pub fn bonded(&self) -> bool {
        self.mp.is_some() && self.mptcp && !self.fallback
    }
}

impl<P: PacketBuf> Engine<P> {
    // ------------------------------------------------------------------ joins

    /// An MP_JOIN SYN (RFC 8684 §3.2): find the connection by token, check the
    /// limits, answer with SYN-ACK + MP_JOIN (our truncated HMAC). Anything wrong:
    /// RST with MP_TCPRST and no state.
    pub(crate) fn join_syn(
        &mut self,
        now: Instant,
        seg: &Segment,
        pkt: &mut P,
        join: MpJoinRepr,
    ) -> Action {
        let MpJoinRepr::Syn {
            backup,
            addr_id,
            token,
            nonce,
        } = join
        else {
            return Action::Drop(DropReason::BadMptcpOption);
        };
        let refuse = |e: &mut Self, seg: &Segment, pkt: &mut P, reason| {
            e.counters.joins_refused += 1;
            e.reset_syn_reason(seg, pkt, reason)
        };
        use hac_wire::mptcp::TcpRstReason as R;
        if !self.is_join_target(seg.dst, seg.dport) {
            return refuse(self, seg, pkt, R::AdministrativelyProhibited);
        }
        let Some(id) = self.find_token(token) else {
            return refuse(self, seg, pkt, R::MptcpError);
        };
        let c = self.conn(id).expect("bound");
        // RFC 8684 §3.1: with flag C set in our SYN-ACK we accept no subflow to the
        // address and port the connection was opened to.
        if self.cfg.no_joins_to_initial_address
            && seg.dst == c.leg.service.ip
            && seg.dport == c.leg.service.port
        {
            return refuse(self, seg, pkt, R::AdministrativelyProhibited);
        }
        // A half-closed connection (the client's DATA_FIN) still receives: joins
        // are welcome until both directions are done.
        if c.state != State::Established || !c.mptcp || c.fallback {
            return refuse(self, seg, pkt, R::AdministrativelyProhibited);
        }
        let live = c.mp.as_ref().map_or(1, |m| {
            m.paths
                .iter()
                .filter(|p| p.state != PathState::Removed)
                .count()
        });
        if live >= self.cfg.max_subflows {
            return refuse(self, seg, pkt, R::LackOfResources);
        }
        if c.leg.client.ip == seg.src && c.leg.client.port == seg.sport {
            return refuse(self, seg, pkt, R::MptcpError);
        }
        let e_isn = SeqNum(self.random() as u32);
        let nonce_local = self.random() as u32;
        let o = &seg.opts;
        let c = self.conn(id).expect("bound");
        let ts = c.leg.ts && o.timestamps.is_some();
        let e_ws = if o.window_scale.is_some() {
            c.leg.e_ws
        } else {
            0
        };
        let leg = Leg::from_syn(seg, e_isn, ts, e_ws);
        let primary = self.is_primary(seg.src);
        self.bond(id, now);
        let c = self.conn_mut(id).expect("bound");
        let m = c.mp.as_mut().expect("bonded");
        let mut p = Path::new(leg, now);
        p.state = PathState::JoinPending;
        p.addr_id = addr_id;
        p.backup = backup;
        p.primary = primary;
        p.nonce_local = nonce_local;
        p.nonce_remote = nonce;
        // Reuse a removed slot (bounded: at most `max_subflows` live ones).
        let k = match m
            .paths
            .iter()
            .skip(1)
            .position(|p| p.state == PathState::Removed && p.inflight.is_empty())
        {
            Some(i) => {
                m.paths[i + 1] = p;
                i + 1
            }
            None if m.paths.len() < 32 => {
                m.paths.push(p);
                m.paths.len() - 1
            }
            None => return refuse(self, seg, pkt, R::LackOfResources),
        };
        self.bind_join(id, k);
        self.queue(id, Tx::JoinSynAck(k as u8));
        Action::Consumed
    }

    /// The client's third ACK on a joined subflow: the full HMAC (RFC 8684 §3.2).
    pub(crate) fn join_ack(
        &mut self,
        now: Instant,
        id: u32,
        k: usize,
        seg: &Segment,
        pkt: &mut P,
    ) -> Action {
        let c = self.conn(id).expect("present");
        let p = &c.mp.as_ref().expect("bonded").paths[k];
        let expected = join_hmac160(c.client_key, c.local_key, p.nonce_remote, p.nonce_local);
        let hmac = seg.mptcp(pkt.data()).find_map(|o| match o {
            Ok(MptcpOption::MpJoin(MpJoinRepr::Ack { hmac })) => Some(hmac),
            _ => None,
        });
        let acks_syn = seg.flags.ack() && seg.ack == p.leg.e_isn + 1;
        match hmac {
            Some(h) if h == expected && acks_syn => {
                let c = self.conn_mut(id).expect("present");
                let p = &mut c.mp.as_mut().expect("bonded").paths[k];
                p.state = PathState::Active;
                p.leg.c_rcv_nxt = seg.seq;
                p.leg.c_ack_sent = seg.seq;
                p.snd_una = p.leg.e_snd_nxt;
                p.last_progress = now;
                p.delivered_at = now;
                if let Some((tsval, _)) = seg.opts.timestamps {
                    p.leg.c_ts_recent = tsval;
                }
                self.counters.joins_accepted += 1;
                // The fourth ACK makes the third reliable (§3.2).
                self.queue(id, Tx::PathAck(k as u8));
                Action::Consumed
            }
            Some(_) => {
                // Bad HMAC: reset the subflow, keep nothing (§3.2).
                self.counters.joins_refused += 1;
                self.unbind_join(id, k);
                if let Some(m) = self.conn_mut(id).and_then(|c| c.mp.as_mut()) {
                    m.paths[k].state = PathState::Removed;
                }
                self.reset_segment(seg, pkt, hac_wire::mptcp::TcpRstReason::MptcpError)
            }
            // A duplicate SYN-ACK ACK without the option, or data before the
            // handshake finished: not usable yet.
            None => Action::Drop(DropReason::HandshakeIncomplete),
        }
    }

    /// Makes a connection bonded: the initial subflow leaves the identity
    /// arithmetic; everything placed from now on is counted per subflow.
    pub(crate) fn bond(&mut self, id: u32, now: Instant) {
        let Some(c) = self.conn(id) else { return };
        let primary_cfg = !self.primary_access_of(c.leg.client.ip).is_empty();
        if c.mp.is_some() {
            return;
        }
        let primary = if primary_cfg {
            self.is_primary(c.leg.client.ip)
        } else {
            true
        };
        // The server's full-sized segments: the untracked bytes in flight are cut
        // at the same boundaries, so that a repair rarely overlaps a segment the
        // client holds.
        let seg = u64::from(self.server_payload_max(c));
        let c = self.conn_mut(id).expect("present");
        let fwd_end = u64::from(
            c.leg
                .e_snd_nxt
                .0
                .wrapping_sub(c.leg.e_isn.0)
                .wrapping_sub(1)
                .wrapping_sub(c.reply_len()),
        );
        let mut p0 = Path::new(c.leg, now);
        p0.primary = primary;
        // Client bytes that arrived on the initial subflow before the bond and
        // still wait for the server's ACK: one mapping (a lone subflow maps
        // linearly, by `c_ssn_delta`), so that the walk of this subflow's ACK,
        // which stops at bytes no remembered mapping covers, can pass them.
        // It runs to the end of the client's current mapping: the rest of that
        // mapping arrives after the bond under the same DSS, which is not news
        // (`upstream`) and so never noted; the walk stopped there for good (the
        // client's retransmissions repeat the same mapping), seen in the lab
        // when a join completed in the middle of the client's first mapping.
        if c.mptcp && !c.fallback {
            let l = &c.leg;
            let from = l.settled();
            let mut to = l.c_rcv_nxt;
            if let Some(m) = l.mapping {
                let m_end = l.c_isn + l.syn_len + m.ssn + (m.len - u32::from(m.data_fin));
                if m_end.diff(to) > 0 {
                    to = m_end;
                }
            }
            let len = to.diff(from);
            let u = i64::from(from.diff(l.c_isn + 1 + l.syn_len)) - l.c_ssn_delta;
            if len > 0 && u >= 0 {
                p0.up_maps.push_back((u as u64, from, len as u32));
            }
        }
        // Bytes forwarded on the initial subflow before the bond and not yet
        // acknowledged by the client are in flight there too: they are tracked
        // like any segment (no cached copy), so that a loss among them is repaired
        // at its subflow sequence - zero-filled once the client has the data from
        // another subflow, else revealed to the server and its retransmission put
        // back at that place. Untracked, such a hole stayed open on the subflow for
        // good (seen with 1 % loss in the lab: the client's subflow stuck at it).
        let acked = c.c_data_ack.diff(c.e_dsn(0)).max(0) as u64;
        let mut v = acked.min(fwd_end);
        p0.snd_una = c.e_seq(v);
        while v < fwd_end {
            let len = seg.min(fwd_end - v);
            p0.inflight.push_back(Sent {
                // Sent before the bond, at an unknown time: never an RTT or
                // delivery-rate sample (as a retransmission would be).
                retx: 1,
                app_limited: true,
                ..Sent::first(c.e_seq(v), len as u16, v, now)
            });
            p0.inflight_bytes += len;
            v += len;
        }
        c.mp = Some(Box::new(Multi::new(p0, fwd_end)));
    }

    /// Bonds a connection at the server's first data, before any join, with the
    /// ACK hold its subscriber's path profile gave it (`paths.rs`). The hold
    /// lasts until a joined subflow has an RTT sample, or for [`SEED_WAIT_US`]
    /// (at least four times the hold) without a join.
    pub(crate) fn bond_seeded(&mut self, id: u32, now: Instant) {
        let Some(c) = self.conn_mut(id) else { return };
        let seed = core::mem::take(&mut c.seed);
        let (client, s_rtt) = (c.leg.client.ip, u64::from(c.s_rtt_us));
        if !c.mptcp || c.fallback || c.mp.is_some() {
            return;
        }
        let profile = self.path_memory.recall(client, now);
        self.bond(id, now);
        let Some(m) = self.conn_mut(id).and_then(|c| c.mp.as_mut()) else {
            return;
        };
        let h = seed.us();
        m.seed_us = h;
        // The uncapped hold, from the same profile (still there: the handshake
        // that read it completed a server round trip ago).
        let uncapped = profile.map_or(h, |p| p.seed_hold_us(true));
        if seed.settled() {
            // A held handshake: the server measured the uncapped hold's round
            // trip, so the cap has no reason (see `hold_for`).
            m.seed_uncapped_us = h.min(u64::from(u32::MAX)) as u32;
            m.growth = GrowthProbe::settled_uncapped();
        } else if uncapped >= h + 2000 {
            // (Equal but for the 2 ms rounding of `SeedHold`: no probe.)
            m.seed_uncapped_us = uncapped.min(u64::from(u32::MAX)) as u32;
            // A period is about one of the server's rounds: the hold and its
            // own leg's round trip.
            m.growth = GrowthProbe::start(now.0, uncapped + s_rtt);
        }
        m.seed_until = Instant(now.0 + SEED_WAIT_US.max(4 * h));
        self.counters.path_memory_seeded += 1;
    }

    fn is_primary(&self, ip: core::net::IpAddr) -> bool {
        self.primary_access_of(ip).iter().any(|p| p.contains(ip))
    }

    pub(crate) fn is_service(&self, ip: core::net::IpAddr, port: u16) -> bool {
        port == self.cfg.service_port && self.cfg.service_addrs.contains(&ip)
    }

    /// Where joins are accepted: the service addresses and port, and our announced
    /// addresses with their ports (RFC 8684 §3.4.1).
    pub(crate) fn is_join_target(&self, ip: core::net::IpAddr, port: u16) -> bool {
        self.is_service(ip, port)
            || self
                .cfg
                .announce
                .iter()
                .any(|a| a.addr == ip && a.port_or(self.cfg.service_port) == port)
    }

    // -------------------------------------------------------------- scheduler

    /// The subflow for `len` new bytes (R1, R11), or None when no subflow is
    /// active at all.
    pub(crate) fn schedule(&self, c: &Conn<P>, len: u64, exclude: Option<usize>) -> Option<usize> {
        let m = c.mp.as_ref()?;
        let ok = |i: usize, p: &Path<P>| Some(i) != exclude && p.usable();
        let best_of = |f: &dyn Fn(usize, &Path<P>) -> bool| {
            m.paths
                .iter()
                .enumerate()
                .filter(|(i, p)| f(*i, p))
                .min_by_key(|(_, p)| p.predicted_us(len))
                .map(|(i, _)| i)
        };
        let pick = match c.scheduler {
            // Fill every non-backup subflow up to its estimated rate, the one that
            // delivers first preferred (R1); a subflow whose queue grows beyond a
            // small target is saturated and the next one takes the excess. When
            // the server probes for more bandwidth (BBR's gain cycle, CUBIC's
            // growth), the excess lands where capacity is free, so the delivery
            // rate it measures is the sum of the links. When every subflow is
            // saturated: the earliest predicted delivery (never hold back).
            //
            // Saturation is judged against the subflow's budget too (its congestion
            // window): the server's window is the budgets' free room
            // (`mp_server_window`), so normally some subflow has room.
            Scheduler::Aggregate => {
                best_of(&|i, p| ok(i, p) && !p.backup && !p.saturated(len) && p.room() >= len)
                    .or_else(|| best_of(&|i, p| ok(i, p) && !p.backup && p.room() >= len))
                    .or_else(|| best_of(&|i, p| ok(i, p) && !p.backup))
                    .or_else(|| best_of(&|i, p| ok(i, p)))
            }
            Scheduler::Overflow => {
                // The primary while it is not saturated (R11); then the others
                // with room; then whichever delivers first.
                let primary = best_of(&|i, p| ok(i, p) && p.primary && !p.backup);
                match primary {
                    Some(i) if !m.paths[i].queue_standing() => Some(i),
                    _ => best_of(&|i, p| {
                        ok(i, p) && !p.backup && !p.saturated(len) && p.room() >= len
                    })
                    .or_else(|| best_of(&|i, p| ok(i, p) && !p.backup && p.room() >= len))
                    .or_else(|| best_of(&|i, p| ok(i, p) && !p.backup))
                    .or(primary)
                    .or_else(|| best_of(&|i, p| ok(i, p))),
                }
            }
            Scheduler::Failover => best_of(&|i, p| ok(i, p) && p.primary && !p.backup)
                .or_else(|| {
                    // The lowest-latency working subflow stands in.
                    m.paths
                        .iter()
                        .enumerate()
                        .filter(|(i, p)| ok(*i, p) && !p.backup)
                        .min_by_key(|(_, p)| p.srtt_us)
                        .map(|(i, _)| i)
                })
                .or_else(|| best_of(&|i, p| ok(i, p))),
        };
        pick.or_else(|| {
            // Every subflow suspect or dead: the one heard from last.
            m.paths
                .iter()
                .enumerate()
                .filter(|(i, p)| Some(*i) != exclude && p.state == PathState::Active)
                .max_by_key(|(_, p)| p.last_progress)
                .map(|(i, _)| i)
        })
    }

    // -------------------------------------------------------------- downstream

    /// A server segment of a bonded connection (state updates from its ACK are
    /// done): placed on one subflow, rewritten in place, cached.
    pub(crate) fn mp_downstream(
        &mut self,
        now: Instant,
        id: u32,
        seg: &Segment,
        pkt: &mut P,
    ) -> Action {
        let c = self.conn(id).expect("present");
        let payload_len = seg.payload_len() as u32;
        let fin = seg.flags.fin();
        let v = c.s_index(seg.seq);
        let m = c.mp.as_ref().expect("bonded");
        let end = v + u64::from(payload_len);
        if payload_len == 0 && !fin {
            // A pure ACK of the client's data: on a subflow whose ACK it advances
            // (the one the client used last first). One that advances none would
            // be a duplicate ACK there (and three make a fast retransmission,
            // RFC 5681 §2): it goes only if it opens the window.
            let advances = |i: usize| {
                m.paths[i].state == PathState::Active
                    && c.subflow_ack(i).diff(c.legk(i).c_ack_sent) > 0
            };
            // A server ACK with SACK blocks showing a subflow's bytes missing
            // below later ones it holds: a duplicate ACK on that subflow.
            let hole = |i: usize| {
                seg.opts.sack.is_some() && m.paths[i].state == PathState::Active && c.server_hole(i)
            };
            let k = if advances(m.last_up) {
                m.last_up
            } else if let Some(i) = (0..m.paths.len()).find(|&i| advances(i)) {
                i
            } else if let Some(i) = (0..m.paths.len()).find(|&i| hole(i)) {
                i
            } else if c.s_win != m.win_sent {
                if m.paths[m.last_up].state == PathState::Active {
                    m.last_up
                } else {
                    self.schedule(c, 0, None).unwrap_or(0)
                }
            } else {
                if v < m.fwd_end {
                    // An old sequence number: the server's zero-window probe
                    // (RFC 9293 §3.8.6.1; Linux sends SND.UNA - 1). It gets our
                    // ACK and window, and the client a probe of its own: its
                    // answer carries its current window. The client's window
                    // update is a pure ACK nobody retransmits; lost (seen under
                    // load in the lab), the server's window stayed shut for good
                    // while it probed a receiver that never saw its probes.
                    let k = if m.paths[m.last_up].state == PathState::Active {
                        m.last_up
                    } else {
                        self.schedule(c, 0, None).unwrap_or(0)
                    };
                    self.counters.zero_window_probes += 1;
                    self.queue(id, Tx::ServerPureAck);
                    self.queue(id, Tx::PathProbe(k as u8));
                }
                return Action::Consumed;
            };
            let sack = seg.opts.sack.is_some();
            let a = self.mp_emit_in_place(now, id, k, seg, pkt, None, false, None);
            self.ack_other_paths(id, k, sack);
            return a;
        }
        // A retransmission of bytes the client already acknowledged at the data
        // level: spurious. The server gets a fresh ACK instead (R5). Its FIN counts:
        // data acknowledged but a FIN not yet (the DATA_FIN was lost) goes on, or the
        // server would resend that FIN forever and the client never see it.
        let fin_end = end + u64::from(fin);
        if payload_len > 0 && c.c_data_ack.diff(c.e_dsn(fin_end)) >= 0 && end <= m.fwd_end {
            self.counters.spurious_retransmissions += 1;
            self.queue(id, Tx::ServerPureAck);
            return Action::Drop(DropReason::Duplicate);
        }
        // A FIN on bytes already forwarded (the server's retransmission of its last
        // segment): the DATA_FIN is not mapped onto those bytes again. Linux (6.18)
        // records a DATA_FIN whose mapping covers only data it already has, discards
        // the bytes as old and never acts on the DATA_FIN; from then on it ignores
        // every data-less DATA_FIN as already received, and the connection never
        // reaches end of stream (about 1 in 200 connections under loss in the
        // dual-proxy lab). Bytes the client acknowledged: the FIN goes alone,
        // data-less (RFC 8684 §3.3.3: SSN 0, length 1). Bytes not acknowledged yet
        // (they may be a repair): the bytes go alone, and the server's next FIN
        // retransmission, once they are acknowledged, brings the FIN.
        let fin = if fin && payload_len > 0 && end <= m.fwd_end {
            if c.c_data_ack.diff(c.e_dsn(end)) >= 0 {
                let Some(k) = self.schedule(c, 0, None) else {
                    return Action::Drop(DropReason::ClientGone);
                };
                let action = self.mp_emit_in_place_len(
                    now,
                    id,
                    k,
                    seg,
                    pkt,
                    (0, Checksum::new()),
                    Some(end),
                    true,
                    None,
                );
                self.ack_other_paths(id, k, seg.opts.sack.is_some());
                return action;
            }
            false
        } else {
            fin
        };
        // The server's retransmission of a segment lost on a subflow and not in
        // the repair cache (cache off or full): it fills that hole at its original
        // subflow sequence and mapping (RFC 8684 §3.3.6), and is cached now. Only
        // on a subflow that is delivering: on a suspect or dead one it would be
        // lost again and the server back off once more (a stall of seconds); it
        // is placed as new data instead, and kept for the hole below.
        if payload_len > 0
            && !fin
            && let Some((k, seq)) = m.paths.iter().enumerate().find_map(|(k, p)| {
                p.usable()
                    .then(|| {
                        p.inflight
                            .iter()
                            .find(|f| {
                                f.v == v
                                    && u32::from(f.len) == payload_len
                                    && f.pkt.is_none()
                                    && !f.sacked
                                    && !f.fin
                            })
                            .map(|f| (k, f.seq))
                    })
                    .flatten()
            })
        {
            let action = self.mp_emit_in_place(now, id, k, seg, pkt, Some(v), false, Some(seq));
            if let Action::Forward(_) = action {
                self.refill(now, id, k, seq, pkt);
            }
            return action;
        }
        let Some(k) = self.schedule(c, u64::from(payload_len), None) else {
            return Action::Drop(DropReason::ClientGone);
        };
        self.counters.placements[c.scheduler as usize] += 1;
        // The server's last bytes with its FIN: the bytes go under a mapping of
        // their own and the DATA_FIN right after, data-less. On a mapping with
        // data, any second copy of those bytes (a repair, a reinjection, the
        // server's retransmission) that reaches the client after the first
        // carries the DATA_FIN on old data: Linux (6.18) records it, discards
        // the bytes and never acts on it, and ignores every later DATA_FIN (the
        // soak under load, session 15: the client at FIN-WAIT-2 for good, the
        // server retransmitting its FIN).
        let data_fin_apart = fin && payload_len > 0;
        let fin_here = fin && !data_fin_apart;
        let action = self.mp_emit_in_place(now, id, k, seg, pkt, Some(v), fin_here, None);
        if let Action::Forward(_) = action {
            self.record(now, id, k, v, payload_len, fin_here, pkt);
            if payload_len > 0 {
                self.cache_from_retransmission(id, v, v + u64::from(payload_len), pkt);
            }
            if data_fin_apart {
                self.queue(id, Tx::PathDataFin(k as u8));
            }
        }
        self.ack_other_paths(id, k, seg.opts.sack.is_some());
        action
    }

    /// A server retransmission (placed as new data) that covers segments lost on
    /// other subflows and missing from the cache: it is kept for them (one more
    /// reference, no copy), and each is repaired from it at its original subflow
    /// sequence and mapping — else the subflow's hole would have to be filled with
    /// bytes that differ from the data (the client discards them, but a receiver
    /// comparing copies would not).
    fn cache_from_retransmission(&mut self, id: u32, v: u64, end: u64, pkt: &P) {
        // Also with the repair cache off: this is how the server's retransmission
        // is placed into a hole (one reference per hole, within the shard limit).
        let cache_ok = self.cache_segments < self.cfg.cache_limit_segments;
        let Some(c) = self.conn_mut(id) else { return };
        let Some(m) = c.mp.as_mut() else { return };
        let mut added = (0usize, 0usize);
        let mut repairs: [Option<(u8, u32)>; 4] = [None; 4];
        let mut n = 0;
        for (k, p) in m.paths.iter_mut().enumerate() {
            if p.state != PathState::Active {
                continue;
            }
            for f in p.inflight.iter_mut() {
                let f_end = f.v + u64::from(f.len);
                if n == repairs.len() || !cache_ok {
                    break;
                }
                // Declared lost before (a repair was due and found no cache).
                if f.retx > 0 && f.pkt.is_none() && !f.sacked && !f.fin && f.v >= v && f_end <= end
                {
                    f.pkt = Some(pkt.share());
                    f.tail_skip = (end - f_end) as u16;
                    f.unrepaired = false;
                    added.0 += 1;
                    added.1 += usize::from(f.len);
                    repairs[n] = Some((k as u8, f.seq.0));
                    n += 1;
                }
            }
        }
        m.cached += added.1;
        m.cached_peak = m.cached_peak.max(m.cached);
        self.cache_segments += added.0;
        self.cache_bytes += added.1;
        for (k, s) in repairs.iter().flatten() {
            self.queue(id, Tx::Repair(*k, *s));
        }
    }

    /// A server retransmission sent into the hole of the uncached segment at `seq`
    /// on path `k`: the segment is in the network again, and cached if allowed.
    fn refill(&mut self, now: Instant, id: u32, k: usize, seq: SeqNum, pkt: &P) {
        let cache_ok = self.cfg.repair_cache && self.cache_segments < self.cfg.cache_limit_segments;
        let limit = self.cfg.cache_limit_bytes;
        let Some(c) = self.conn_mut(id) else { return };
        let Some(m) = c.mp.as_mut() else { return };
        let room = m.cached;
        let p = &mut m.paths[k];
        let Some(f) = p.inflight.iter_mut().find(|f| f.seq == seq) else {
            return;
        };
        let len = usize::from(f.len);
        f.retx = f.retx.saturating_add(1);
        f.sent_at = now;
        f.unrepaired = false;
        if !f.in_pipe {
            f.in_pipe = true;
            p.inflight_bytes += len as u64;
        }
        p.bytes_repaired += len as u64;
        let cache = cache_ok && room + len <= limit;
        if cache {
            f.pkt = Some(pkt.share());
            m.cached += len;
            m.cached_peak = m.cached_peak.max(m.cached);
            self.cache_segments += 1;
            self.cache_bytes += len;
        }
        self.counters.repairs += 1;
        self.arm_tick(id, now);
    }

    /// Records a segment placed on path `k` (and caches it when allowed).
    #[allow(clippy::too_many_arguments)]
    fn record(&mut self, now: Instant, id: u32, k: usize, v: u64, len: u32, fin: bool, pkt: &P) {
        let cache_ok = self.cfg.repair_cache && self.cache_segments < self.cfg.cache_limit_segments;
        let limit = self.cfg.cache_limit_bytes;
        let c = self.conn_mut(id).expect("present");
        if len == 0 {
            return;
        }
        let seq = c.legk(k).e_snd_nxt - len;
        let (s_next, s_mss) = (c.s_isn + 1, c.s_mss);
        let m = c.mp.as_mut().expect("bonded");
        let cache = cache_ok && m.cached + len as usize <= limit;
        m.paths[k].place(now, seq, len as u16, fin, v, cache.then(|| pkt.share()));
        let m = c.mp.as_mut().expect("bonded");
        let mut grew = None;
        if v + u64::from(len) > m.fwd_end {
            if m.growth.probing() {
                // The server's sent edge against the right edge of our window.
                let sent = s_next + (v + u64::from(len)) as u32;
                let at_window = m
                    .right_edge
                    .is_some_and(|r| r.diff(sent) < 2 * i32::from(s_mss));
                grew = m
                    .growth
                    .add(now.0, v + u64::from(len) - m.fwd_end.max(v), at_window);
            }
            let h = m.hold_us();
            if h > 0 || m.hold.is_some() {
                let fwd = m.fwd_end;
                m.hold.get_or_insert_with(|| AckHold::new(fwd)).push(
                    v + u64::from(len),
                    now.0,
                    (h / 32).max(HOLD_SPACING_MIN_US),
                );
            }
        }
        m.fwd_end = m.fwd_end.max(v + u64::from(len));
        if cache {
            m.cached += len as usize;
            m.cached_peak = m.cached_peak.max(m.cached);
        }
        match grew {
            Some(true) => self.counters.growth_uncapped += 1,
            Some(false) => self.counters.growth_capped += 1,
            None => {}
        }
        if cache {
            self.cache_segments += 1;
            self.cache_bytes += len as usize;
        } else if self.cfg.repair_cache {
            self.counters.cache_full += 1;
        }
        self.arm_tick(id, now);
    }

    /// Rewrites a server segment in place for subflow `k`: our sequence there, its
    /// subflow ACK, a DSS with the DATA_ACK and (for data or a DATA_FIN) the mapping.
    #[allow(clippy::too_many_arguments)]
    fn mp_emit_in_place(
        &mut self,
        now: Instant,
        id: u32,
        k: usize,
        seg: &Segment,
        pkt: &mut P,
        v: Option<u64>,
        fin: bool,
        at: Option<SeqNum>,
    ) -> Action {
        let payload = (seg.payload_len() as u32, self.payload_sum(seg, pkt));
        self.mp_emit_in_place_len(now, id, k, seg, pkt, payload, v, fin, at)
    }

    /// As [`Self::mp_emit_in_place`], keeping only the first `payload.0` bytes of
    /// the payload (whose ones'-complement sum is `payload.1`): 0 sends a bare
    /// ACK / DATA_FIN.
    #[allow(clippy::too_many_arguments)]
    fn mp_emit_in_place_len(
        &mut self,
        now: Instant,
        id: u32,
        k: usize,
        seg: &Segment,
        pkt: &mut P,
        payload: (u32, Checksum),
        v: Option<u64>,
        fin: bool,
        at: Option<SeqNum>,
    ) -> Action {
        let (payload_len, psum) = payload;
        let c = self.conn(id).expect("present");
        let leg = *c.legk(k);
        // New data goes at the subflow's next sequence; a hole being filled, at
        // its original place (`at`).
        let seq = at.unwrap_or(leg.e_snd_nxt);
        let ack = c.subflow_ack(k);
        let mut opt_buf = [0u8; 40];
        let map = v.map(|v| {
            let ssn = if payload_len == 0 {
                0
            } else {
                seq.0.wrapping_sub(leg.e_isn.0)
            };
            (v, ssn, payload_len + u32::from(fin))
        });
        let mut n = c.write_client_options(&mut opt_buf, now, &leg, map, fin, psum);
        if payload_len == 0 && !fin {
            // A pure ACK: the client's bytes above a hole on this subflow.
            let sack = c.client_sack(k, ack);
            n = crate::translate::write_sack(&mut opt_buf, n, 4, sack.iter());
        }
        let opt_len = pad_nop(&mut opt_buf, n);
        let out = TcpOut {
            src: leg.service,
            dst: leg.client,
            seq,
            ack,
            flags: Flags::ACK | (seg.flags & Flags::PSH),
            window: rescale(c.s_win, leg.e_ws),
            options: &opt_buf[..opt_len],
        };
        let c = self.conn_mut(id).expect("present");
        let s_win = c.s_win;
        let dack = c.data_ack_to_client();
        if let Some(m) = c.mp.as_mut() {
            m.win_sent = s_win;
            m.dack_sent = dack;
        }
        let l = c.legk_mut(k);
        if at.is_none() {
            l.e_snd_nxt = seq + payload_len;
        }
        if ack.diff(l.c_ack_sent) > 0 {
            l.c_ack_sent = ack;
        }
        if !self.write_in_place(pkt, seg, &out, payload_len as usize, psum) {
            return Action::Drop(DropReason::NoRoom);
        }
        Action::Forward(Port::Access)
    }

    /// After the server acknowledged client data, the subflows other than `k` that
    /// carried it need their subflow ACK (the client would retransmit otherwise);
    /// with `server_sack` (the server's segment had SACK blocks), so do those whose
    /// bytes it lacks below later ones (`Conn::server_hole`): a duplicate ACK.
    pub(crate) fn ack_other_paths(&mut self, id: u32, k: usize, server_sack: bool) {
        let Some(c) = self.conn(id) else { return };
        let Some(m) = c.mp.as_ref() else { return };
        let mut owed = [false; 32];
        for (i, p) in m.paths.iter().enumerate() {
            if i != k && p.state == PathState::Active {
                let l = c.legk(i);
                owed[i] =
                    c.subflow_ack(i).diff(l.c_ack_sent) > 0 || (server_sack && c.server_hole(i));
            }
        }
        for (i, o) in owed.iter().enumerate() {
            if *o {
                self.queue(id, Tx::PathAck(i as u8));
            }
        }
    }

    // ----------------------------------------------------------- ACK feedback

    /// The client's subflow ACK (and SACK) on path `k` of a bonded connection:
    /// frees acknowledged cache entries, feeds the estimator, detects losses and
    /// queues local repairs.
    pub(crate) fn mp_on_ack(
        &mut self,
        now: Instant,
        id: u32,
        k: usize,
        seg: &Segment,
        data: &[u8],
    ) {
        let payload_len = seg.payload_len();
        let sack: Option<heapless_blocks::Blocks> = if seg.opts.sack.is_some() {
            crate::translate::sack_blocks(seg, data).map(|b| {
                let mut v = heapless_blocks::Blocks::default();
                for (l, r) in b.iter() {
                    v.push(l, r);
                }
                v
            })
        } else {
            None
        };
        let c = self.conn_mut(id).expect("present");
        let snd_nxt = c.legk(k).e_snd_nxt;
        let Some(m) = c.mp.as_mut() else { return };
        // A loss on a slow subflow is also re-sent on a faster one (R6), so the
        // data-level hole closes at the fast path's delay; the original subflow
        // still gets its bytes back at their sequence (subflow integrity).
        let my_rtt = m.paths[k].min_rtt_us;
        let faster = m.paths.iter().enumerate().any(|(i, q)| {
            i != k && q.usable() && q.min_rtt_us > 0 && (my_rtt == 0 || q.min_rtt_us < my_rtt)
        });
        let p = &mut m.paths[k];
        if p.state != PathState::Active || !seg.flags.ack() {
            return;
        }
        let ack = seg.ack;
        let mut freed_bytes = 0usize;
        let mut freed_segments = 0usize;
        let mut revived = false;
        // Send time of the latest segment this ACK shows delivered (RACK, RFC 8985):
        // anything sent well before it and still missing is lost.
        let mut rack_sent: Option<Instant> = None;
        // Delivery-rate and RTT sample (BBR, draft-cheng-iccrg-delivery-rate-
        // estimation): from the most recently sent segment this ACK shows delivered
        // (cumulatively or by SACK) that was sent once. SACKed bytes count as
        // delivered when SACKed, not again when the cumulative ACK passes them
        // (counting them late makes an ACK after a repaired hole look like a burst
        // far above the link rate).
        let mut sample: Option<(Instant, u64, u64, Instant, bool, u64)> = None;
        let mut take = |f: &Sent<P>| {
            if f.retx == 0 && !f.reinjected && sample.is_none_or(|s| f.sent_at >= s.0) {
                sample = Some((
                    f.sent_at,
                    now.0.saturating_sub(f.sent_at.0),
                    f.delivered,
                    f.delivered_at,
                    f.app_limited,
                    f.sent_at.0.saturating_sub(f.first_sent.0),
                ));
            }
        };
        let mut newly_delivered = 0u64;
        if ack.diff(p.snd_una) > 0 && ack.diff(snd_nxt) <= 0 {
            let mut sacked_before = 0u64;
            while let Some(f) = p.inflight.front() {
                if (f.seq + u32::from(f.len)).diff(ack) > 0 {
                    break;
                }
                let f = p.inflight.pop_front().expect("front");
                if rack_usable(&f, now, p.min_rtt_us) {
                    rack_sent = Some(rack_sent.map_or(f.sent_at, |t: Instant| t.max(f.sent_at)));
                }
                if f.in_pipe {
                    p.inflight_bytes = p.inflight_bytes.saturating_sub(u64::from(f.len));
                }
                if f.pkt.is_some() {
                    freed_bytes += usize::from(f.len);
                    freed_segments += 1;
                }
                if f.sacked {
                    sacked_before += u64::from(f.len);
                } else {
                    // Karn: no sample from a segment sent more than once (here or
                    // elsewhere): its ACK may answer any of the copies.
                    take(&f);
                }
            }
            newly_delivered +=
                u64::from(ack.0.wrapping_sub(p.snd_una.0)).saturating_sub(sacked_before);
            p.snd_una = ack;
            p.dupacks = 0;
            p.last_progress = now;
            p.backoff = 0;
            if p.health != Health::Ok {
                p.health = Health::Ok;
                revived = true;
            }
        } else if ack == p.snd_una
            && !p.inflight.is_empty()
            && payload_len == 0
            && !seg.flags.fin()
            && !seg.flags.syn()
        {
            p.dupacks = p.dupacks.saturating_add(1);
        }
        // SACK: mark what the client holds above the hole.
        let mut highest_sacked: Option<SeqNum> = None;
        let min_rtt = p.min_rtt_us;
        if let Some(b) = &sack {
            for f in p.inflight.iter_mut() {
                let e = f.seq + u32::from(f.len);
                if !f.sacked && b.iter().any(|(l, r)| f.seq.diff(l) >= 0 && e.diff(r) <= 0) {
                    f.sacked = true;
                    // Out of the network: no longer in flight (RFC 6675's pipe).
                    if f.in_pipe {
                        f.in_pipe = false;
                        p.inflight_bytes = p.inflight_bytes.saturating_sub(u64::from(f.len));
                    }
                    newly_delivered += u64::from(f.len);
                    if rack_usable(f, now, min_rtt) {
                        rack_sent =
                            Some(rack_sent.map_or(f.sent_at, |t: Instant| t.max(f.sent_at)));
                    }
                    take(f);
                }
                if f.sacked {
                    highest_sacked = Some(e);
                }
            }
        }
        if newly_delivered > 0 {
            p.delivered += newly_delivered;
            if let Some(t) = rack_sent {
                p.first_sent = p.first_sent.max(t);
            }
            if let Some((_, rtt, d0, t0, app_limited, send_elapsed)) = sample {
                p.on_rtt(rtt, now);
                let ack_elapsed = now.0.saturating_sub(t0.0);
                p.on_rate(
                    p.delivered - d0,
                    ack_elapsed.max(send_elapsed),
                    app_limited,
                    now,
                );
            }
            p.delivered_at = now;
        }
        // Loss detection (R4): three duplicate ACKs, or SACKed data above an
        // unacknowledged segment sent more than a reordering window earlier.
        let mut repairs: [Option<(SeqNum, bool)>; MAX_REPAIRS_PER_ACK] =
            [None; MAX_REPAIRS_PER_ACK];
        let mut nr = 0;
        let reo_us = (p.srtt_us / 4).max(2_000);
        let lost_by_dupack = p.dupacks >= 3;
        let mut back_in = 0u64;
        for f in p.inflight.iter_mut() {
            if nr == MAX_REPAIRS_PER_ACK {
                break;
            }
            if f.sacked {
                continue;
            }
            let below_sack =
                highest_sacked.is_some_and(|h| (f.seq + u32::from(f.len)).diff(h) <= 0);
            let first = f.seq == p.snd_una;
            let stale = now.0.saturating_sub(f.sent_at.0) > p.srtt_us.max(reo_us) + reo_us;
            // Sent more than a reordering window before something delivered since.
            let rack_lost = rack_sent.is_some_and(|t| f.sent_at.0 + reo_us < t.0);
            let lost = (below_sack && (f.retx == 0 || stale))
                || (first && lost_by_dupack && (f.retx == 0 || stale))
                || rack_lost;
            if !lost {
                if highest_sacked.is_none() && rack_sent.is_none() {
                    break;
                }
                continue;
            }
            f.retx = f.retx.saturating_add(1);
            f.sent_at = now;
            if !f.in_pipe {
                // Re-sent: in the network again.
                f.in_pipe = true;
                back_in += u64::from(f.len);
            }
            let reinject = faster && !f.reinjected;
            f.reinjected |= reinject;
            repairs[nr] = Some((f.seq, reinject));
            nr += 1;
        }
        if lost_by_dupack {
            p.dupacks = 0;
        }
        p.inflight_bytes += back_in;
        if freed_segments > 0 {
            m.cached = m.cached.saturating_sub(freed_bytes);
        }
        if revived {
            self.counters.subflows_revived += 1;
        }
        self.cache_segments = self.cache_segments.saturating_sub(freed_segments);
        self.cache_bytes = self.cache_bytes.saturating_sub(freed_bytes);
        for &(s, reinject) in repairs.iter().flatten() {
            self.queue(id, Tx::Repair(k as u8, s.0));
            if reinject {
                self.queue(id, Tx::Reinject(k as u8, s.0));
            }
        }
    }

    // ------------------------------------------------------------------ timer

    /// Arms the subflow check of a bonded connection with data in flight.
    pub(crate) fn arm_tick(&mut self, id: u32, now: Instant) {
        let Some(c) = self.conn_mut(id) else { return };
        let Some(m) = c.mp.as_mut() else { return };
        if m.tick_at.is_some() {
            return;
        }
        let at = Instant(now.0 + TICK_US);
        m.tick_at = Deadline::at(at);
        self.arm_at(id, at);
    }

    /// Subflow health and timeouts (R7): suspect after ACK silence while others
    /// progress, dead after a few intervals (its data in flight moves to the live
    /// subflows), timeout repairs with back-off (which also probe a dead subflow
    /// until its ACKs return; it is never reset for going quiet).
    pub(crate) fn mp_tick(&mut self, now: Instant, id: u32) {
        let Some(c) = self.conn_mut(id) else { return };
        // Downstream index the client has acknowledged at the data level.
        let data_acked = c.c_data_ack.diff(c.e_dsn(0)).max(0) as u64;
        let client = c.leg.client.ip;
        let Some(m) = c.mp.as_mut() else { return };
        m.tick_at = Deadline::NONE;
        if m.seed_us > 0 && now >= m.seed_until {
            m.seed_us = 0;
        }
        if !m.learned
            && let Some((lo, hi)) = m.rtt_spread()
        {
            m.learned = true;
            self.path_memory.learn(client, lo, hi, now);
        }
        let c = self.conn_mut(id).expect("present");
        let m = c.mp.as_mut().expect("bonded");
        m.cached_sum += m.cached as u64;
        m.cached_samples += 1;
        let n = m.paths.len();
        let mut to_reinject: Vec<(usize, u32)> = Vec::new();
        let mut to_repair: Vec<(usize, u32)> = Vec::new();
        let mut suspects = 0;
        let mut deaths = 0;
        let freshest = |m: &Multi<P>, k: usize| {
            m.paths.iter().enumerate().any(|(i, q)| {
                i != k
                    && q.state == PathState::Active
                    && q.health == Health::Ok
                    && (q.inflight.is_empty() || q.last_progress > m.paths[k].last_progress)
            })
        };
        let mut drained: Vec<usize> = Vec::new();
        // A suspect or dead subflow keeps its data in flight for subflow
        // integrity, but what the client already has at the data level (delivered
        // by a re-send elsewhere) needs no copy: if the subflow comes back, its
        // hole is filled under the original mapping with any bytes (the client
        // drops data below its DATA_ACK, RFC 8684 §3.3.1). Without this, many
        // quiet subflows pin the shard's repair cache full, and then nothing can
        // be repaired locally on any connection.
        let mut unpinned = (0usize, 0usize);
        for p in m.paths.iter_mut().filter(|p| p.health != Health::Ok) {
            for f in p.inflight.iter_mut() {
                // Not ordered by data index (re-sent segments): look at each.
                if f.v + u64::from(f.len) + u64::from(f.fin) > data_acked {
                    continue;
                }
                if f.pkt.take().is_some() {
                    unpinned.0 += 1;
                    unpinned.1 += usize::from(f.len);
                }
            }
        }
        m.cached = m.cached.saturating_sub(unpinned.1);
        // One subflow at a time refreshes its minimum RTT, while another usable
        // non-backup subflow can take its share.
        for k in 0..n {
            let probing = m.paths.iter().any(|q| q.probe_until.is_some());
            let p = &m.paths[k];
            let others = p.probe_until.is_some()
                || (!probing
                    && !p.backup
                    && m.paths.iter().enumerate().any(|(i, q)| {
                        i != k && q.usable() && !q.backup && q.probe_until.is_none()
                    }));
            m.paths[k].probe_rtt(now, others);
        }
        for k in 0..n {
            let others = freshest(m, k);
            let p = &mut m.paths[k];
            if p.state == PathState::Removed
                && !p.inflight.is_empty()
                && p.inflight.iter().all(|f| f.reinjected)
            {
                drained.push(k);
            }
            if p.state != PathState::Active || p.inflight.is_empty() {
                continue;
            }
            let silence = now.0.saturating_sub(p.last_progress.0);
            let sa = p.suspect_after_us();
            if p.health == Health::Ok && others && silence >= sa {
                // Make before break (R7): no new placements, and what it holds in
                // flight is re-sent on the others now (a false alarm costs
                // duplicates, a real outage costs no further wait).
                p.health = Health::Suspect;
                suspects += 1;
                for f in p.inflight.iter_mut() {
                    if !f.sacked && !f.reinjected {
                        f.reinjected = true;
                        to_reinject.push((k, f.seq.0));
                    }
                    // Written off: when the subflow comes back its budget is free
                    // for new data; repairs count again as they are re-sent.
                    if f.in_pipe {
                        f.in_pipe = false;
                        p.inflight_bytes = p.inflight_bytes.saturating_sub(u64::from(f.len));
                    }
                }
            }
            if p.health == Health::Suspect && others && silence >= DEAD_AFTER * sa {
                p.health = Health::Dead;
                deaths += 1;
            }
            if now.0.saturating_sub(p.last_rto.0.max(p.last_progress.0)) >= p.rto_us() {
                // Timeout: the first unacknowledged segment again, backed off.
                p.backoff = p.backoff.saturating_add(1);
                p.last_rto = now;
                if let Some(f) = p.inflight.front_mut() {
                    f.retx = f.retx.saturating_add(1);
                    f.sent_at = now;
                    if !f.in_pipe {
                        f.in_pipe = true;
                        p.inflight_bytes += u64::from(f.len);
                    }
                    to_repair.push((k, f.seq.0));
                }
            }
        }
        let busy = m.busy();
        self.cache_segments = self.cache_segments.saturating_sub(unpinned.0);
        self.cache_bytes = self.cache_bytes.saturating_sub(unpinned.1);
        for k in drained {
            self.release_path_cache(id, k);
        }
        self.counters.subflows_suspect += suspects;
        self.counters.subflows_dead += deaths;
        for (k, s) in to_repair {
            self.queue(id, Tx::Repair(k as u8, s));
        }
        for (k, s) in to_reinject {
            self.queue(id, Tx::Reinject(k as u8, s));
        }
        if busy {
            self.arm_tick(id, now);
        }
        // ACK equalisation: what has waited long enough goes to the server.
        if self
            .conn(id)
            .and_then(|c| c.mp.as_ref())
            .is_some_and(|m| m.hold.is_some())
        {
            let ack = self.mp_server_ack(id, now);
            if self.conn(id).is_some_and(|c| ack.diff(c.p_ack_sent) > 0) {
                self.queue(id, Tx::ServerPureAck);
            }
        }
    }

    // ----------------------------------------------------------- client side

    /// A client RST on a joined subflow (or on the initial one of a bonded
    /// connection with others alive): that subflow only (RFC 8684 §3.3.6).
    pub(crate) fn remove_path(&mut self, now: Instant, id: u32, k: usize) {
        self.unbind_join(id, k);
        let Some(c) = self.conn_mut(id) else { return };
        let Some(m) = c.mp.as_mut() else { return };
        let p = &mut m.paths[k];
        p.state = PathState::Removed;
        let mut moved = Vec::new();
        for f in p.inflight.iter_mut() {
            if !f.reinjected && !f.sacked {
                f.reinjected = true;
                moved.push(f.seq.0);
            }
        }
        for s in moved {
            self.queue(id, Tx::Reinject(k as u8, s));
        }
        self.arm_tick(id, now);
    }

    /// Frees the cache entries of a path (after its data moved or was dropped).
    pub(crate) fn release_path_cache(&mut self, id: u32, k: usize) {
        let Some(c) = self.conn_mut(id) else { return };
        let Some(m) = c.mp.as_mut() else { return };
        let mut bytes = 0;
        let mut segs = 0;
        for f in m.paths[k].inflight.drain(..) {
            if f.pkt.is_some() {
                bytes += usize::from(f.len);
                segs += 1;
            }
        }
        m.paths[k].inflight_bytes = 0;
        m.cached = m.cached.saturating_sub(bytes);
        self.cache_bytes = self.cache_bytes.saturating_sub(bytes);
        self.cache_segments = self.cache_segments.saturating_sub(segs);
    }

    /// Releases every cache entry of a connection being removed.
    pub(crate) fn release_cache(&mut self, c: &Conn<P>, now: Instant) {
        if let Some(m) = &c.mp {
            if let Some((lo, hi)) = m.rtt_spread() {
                self.path_memory.learn(c.leg.client.ip, lo, hi, now);
            }
            let k = &mut self.counters;
            k.bonded_closed += 1;
            k.cache_peak_sum += m.cached_peak as u64;
            k.cache_peak_max = k.cache_peak_max.max(m.cached_peak as u64);
            k.cache_mean_sum += m.cached_sum / m.cached_samples.max(1);
            let segs: usize = m
                .paths
                .iter()
                .map(|p| p.inflight.iter().filter(|f| f.pkt.is_some()).count())
                .sum();
            self.cache_segments = self.cache_segments.saturating_sub(segs);
            self.cache_bytes = self.cache_bytes.saturating_sub(m.cached);
        }
    }

    /// The cumulative ACK for the server: the client's DATA_ACK, held back while
    /// ACK equalisation applies (see [`AckHold`]); arms the connection's tick for
    /// the next release.
    pub(crate) fn mp_server_ack(&mut self, id: u32, now: Instant) -> SeqNum {
        let Some(c) = self.conn_mut(id) else {
            return SeqNum(0);
        };
        let ack = c.server_ack_from_data_ack(c.c_data_ack);
        let base = c.s_isn + 1;
        let Some(m) = c.mp.as_mut() else { return ack };
        let h = m.hold_us();
        let Some(hold) = m.hold.as_mut() else {
            return ack;
        };
        // No hold (the delays came closer, or a subflow went quiet): all of it.
        let next = hold.release(now.0, h);
        let released = base + hold.released as u32;
        // Nothing left waiting: the ACK goes as it is (a FIN's octet included).
        if next.is_none() || released.diff(ack) >= 0 {
            return ack;
        }
        if let Some(at) = next {
            let at = Instant(at);
            if m.tick_at.get().is_none_or(|t| t > at) {
                m.tick_at = Deadline::at(at);
                self.arm_at(id, at);
            }
        }
        released
    }

    /// SACK blocks for the server (its sequence space, up to three) while some
    /// segment is a hole the engine cannot repair (cache full or off, issue 5
    /// build 3): for each such hole, lowest first, the run of data just above it
    /// that the client holds (forwarded, and not in flight unacknowledged on any
    /// subflow). The multipath reordering of repairable data is never revealed
    /// (R3). Empty, and the flag cleared, once no hole is left.
    pub(crate) fn mp_reveal_blocks(&mut self, id: u32) -> heapless_blocks::Blocks {
        let mut out = heapless_blocks::Blocks::default();
        let Some(c) = self.conn_mut(id) else {
            return out;
        };
        if !c.mp.as_ref().is_some_and(|m| m.reveal) {
            return out;
        }
        let dack = c.c_data_ack.diff(c.e_dsn(0)).max(0) as u64;
        let base = c.s_isn + 1;
        let Some(m) = c.mp.as_mut() else { return out };
        let mut holes: Vec<u64> = Vec::new();
        let mut missing: Vec<(u64, u64)> = Vec::new();
        for p in m.paths.iter().filter(|p| p.state != PathState::JoinPending) {
            for f in p.inflight.iter().filter(|f| !f.sacked) {
                let (a, b) = (f.v, f.v + u64::from(f.len));
                if b <= dack {
                    continue;
                }
                missing.push((a, b));
                if f.unrepaired {
                    holes.push(b);
                }
            }
        }
        if holes.is_empty() {
            m.reveal = false;
            return out;
        }
        holes.sort_unstable();
        missing.sort_unstable();
        let top = m.fwd_end;
        let mut last_end = 0u64;
        for h in holes {
            if h < last_end {
                continue;
            }
            // Skip what is still missing right above the hole.
            let mut s = h;
            for &(a, b) in &missing {
                if a <= s && b > s {
                    s = b;
                }
            }
            let e = missing
                .iter()
                .map(|&(a, _)| a)
                .find(|&a| a > s)
                .unwrap_or(top)
                .min(top);
            if s < e {
                out.push(base + s as u32, base + e as u32);
                last_end = e;
            }
        }
        out
    }

    /// Free budget of the subflows the policy places new data on, negative when
    /// they hold more than their budgets: what the server may send beyond what it
    /// has sent so far (before the allowance for its own leg).
    fn placement_room(&self, c: &Conn<P>) -> i64 {
        let Some(m) = c.mp.as_ref() else { return 0 };
        let free = |p: &Path<P>| p.budget() as i64 - p.inflight_bytes as i64;
        if c.scheduler == Scheduler::Failover {
            return self
                .schedule(c, 0, None)
                .and_then(|k| m.paths.get(k))
                .filter(|p| p.usable())
                .map_or(0, free);
        }
        let room = |backup: bool| -> Option<i64> {
            let mut any = false;
            let mut sum = 0;
            for p in m.paths.iter().filter(|p| p.usable() && p.backup == backup) {
                any = true;
                sum += free(p);
            }
            any.then_some(sum)
        };
        room(false).or_else(|| room(true)).unwrap_or(0)
    }

    /// The window toward the server of a bonded connection (R8): its right edge is
    /// what the server has sent so far plus the free budget of the subflows
    /// (their congestion windows), so a server whose congestion control sees no
    /// access loss (they are repaired locally) cannot overrun the access links;
    /// clamped to the client's data-level window and to what the repair cache can
    /// hold; the right edge never moves left (RFC 9293 §3.8.6). When every subflow
    /// has gone quiet no new room opens (R13: the server stops sending until the
    /// client's ACKs return). Data the client holds above a hole is not counted
    /// against the budgets, so the reordering of unequal paths does not close it.
    pub(crate) fn mp_server_window(&mut self, id: u32, ack: SeqNum) -> u16 {
        let limit = if self.cfg.repair_cache {
            self.cfg.cache_limit_bytes as u64
        } else {
            u64::MAX
        };
        let Some(c) = self.conn(id) else { return 0 };
        // The server's own leg holds data too: what it sends on this window
        // reaches us a server round trip later, so the room includes the rate of
        // the subflows over that round trip (else the window would cap the
        // transfer at budget / (access RTT + server RTT)).
        let room = (self.placement_room(c) + transit_allowance(c) as i64).max(0) as u64;
        let sent_edge = c.s_isn + 1 + (c.mp.as_ref().map_or(0, |m| m.fwd_end) as u32);
        let Some(c) = self.conn_mut(id) else { return 0 };
        let p_ws = c.p_ws;
        // The client's window is relative to its own DATA_ACK, not to the ACK the
        // server gets (held behind it, `mp_server_ack`): its right edge, from the
        // DATA_ACK and window of one segment (`Conn::c_wnd_edge`).
        let client_ack = c.server_ack_from_data_ack(c.c_data_ack);
        let client_edge = c.server_seq_of_edge();
        let Some(m) = c.mp.as_mut() else { return 0 };
        let from = if client_ack.diff(ack) > 0 {
            client_ack
        } else {
            ack
        };
        let cap = limit.min(u64::from(u32::MAX >> 1)) as u32;
        let mut right = if client_edge.diff(from + cap) < 0 {
            client_edge
        } else {
            from + cap
        };
        if right.diff(ack) < 0 {
            right = ack;
        }
        let budget_edge = sent_edge + room.min(u64::from(u32::MAX >> 2)) as u32;
        if budget_edge.diff(right) < 0 {
            right = budget_edge;
        }
        if let Some(r) = m.right_edge
            && r.diff(right) > 0
        {
            right = r;
        }
        m.right_edge = Some(right);
        let w = right.0.wrapping_sub(ack.0);
        rescale(w, p_ws)
    }

    /// One segment of path `k` again, from the cache: at its original subflow
    /// sequence and mapping (`Tx::Repair`), or under a new mapping on another
    /// subflow (`Tx::Reinject`). Written into `buf`; None when nothing is due.
    pub(crate) fn build_cached(
        &mut self,
        now: Instant,
        id: u32,
        k: usize,
        seq: u32,
        reinject: bool,
        buf: &mut [u8],
    ) -> Option<crate::engine::Transmit> {
        let c = self.conn(id)?;
        let m = c.mp.as_ref()?;
        let p = m.paths.get(k)?;
        let i = p.inflight.iter().position(|f| f.seq.0 == seq)?;
        let f = &p.inflight[i];
        let (v, len, fin, skip) = (f.v, u32::from(f.len), f.fin, usize::from(f.tail_skip));
        let data_len = len + u32::from(fin);
        let acked = c.c_data_ack.diff(c.e_dsn(v + u64::from(data_len))) >= 0;
        let (to, at) = if reinject {
            if acked {
                return None;
            }
            let j = self.schedule(c, u64::from(len), Some(k))?;
            if j == k {
                return None;
            }
            (j, c.legk(j).e_snd_nxt)
        } else {
            if p.state == PathState::Removed {
                return None;
            }
            (k, f.seq)
        };
        let zero = [0u8; 0];
        let payload: &[u8] = match (&f.pkt, acked) {
            (Some(pkt), _) => {
                let d = pkt.data();
                let end = d.len().checked_sub(skip)?;
                d.get(end.checked_sub(len as usize)?..end)?
            }
            // Not cached but the client has the data (another subflow delivered
            // it): any bytes fill the subflow's hole under the original mapping
            // (the client drops data below its DATA_ACK, RFC 8684 §3.3.1).
            (None, true) => &zero,
            (None, false) => {
                // Only the server can fill this hole: reveal it (RFC 2018 SACK
                // of what the client holds above it), once per loss.
                self.counters.cache_misses += 1;
                let c = self.conn_mut(id)?;
                let m = c.mp.as_mut()?;
                let f = &mut m.paths[k].inflight[i];
                if !f.unrepaired {
                    f.unrepaired = true;
                    m.reveal = true;
                    self.queue(id, Tx::ServerPureAck);
                }
                return None;
            }
        };
        let leg = *c.legk(to);
        let ssn = at.0.wrapping_sub(leg.e_isn.0);
        let mut zeros = [0u8; 1600];
        let body: &[u8] = if payload.is_empty() {
            zeros.get_mut(..len as usize)?
        } else {
            payload
        };
        let psum = Checksum::new().add_bytes(body);
        let mut opt_buf = [0u8; 40];
        let n =
            c.write_client_options(&mut opt_buf, now, &leg, Some((v, ssn, data_len)), fin, psum);
        let opt_len = pad_nop(&mut opt_buf, n);
        let ack = c.subflow_ack(to);
        let out = TcpOut {
            src: leg.service,
            dst: leg.client,
            seq: at,
            ack,
            flags: Flags::ACK,
            window: rescale(c.s_win, leg.e_ws),
            options: &opt_buf[..opt_len],
        };
        let h = out.header_len();
        buf.get_mut(h..h + body.len())?.copy_from_slice(body);
        out.write(buf, body.len(), psum)?;
        let shared = if reinject {
            f.pkt.as_ref().map(PacketBuf::share)
        } else {
            None
        };
        let source_gone = p.state == PathState::Removed;
        let zero_fill = payload.is_empty();
        let total = h + body.len();
        // Bookkeeping.
        let c = self.conn_mut(id)?;
        if ack.diff(c.legk(to).c_ack_sent) > 0 {
            c.legk_mut(to).c_ack_sent = ack;
        }
        if reinject {
            c.legk_mut(to).e_snd_nxt = at + len;
            let m = c.mp.as_mut()?;
            let cached = shared.is_some();
            m.paths[to].place(now, at, len as u16, fin, v, shared);
            let (mut dseg, mut dbytes) = (0isize, 0isize);
            if cached {
                m.cached += len as usize;
                m.cached_peak = m.cached_peak.max(m.cached);
                dseg += 1;
                dbytes += len as isize;
            }
            if source_gone {
                // Nothing will acknowledge the removed subflow: its entry goes.
                let src = &mut m.paths[k];
                if let Some(i) = src.inflight.iter().position(|f| f.seq.0 == seq) {
                    let f = src.inflight.remove(i).expect("present");
                    if f.in_pipe {
                        src.inflight_bytes = src.inflight_bytes.saturating_sub(u64::from(f.len));
                    }
                    if f.pkt.is_some() {
                        m.cached = m.cached.saturating_sub(usize::from(f.len));
                        dseg -= 1;
                        dbytes -= f.len as isize;
                    }
                }
            }
            self.cache_segments = self.cache_segments.wrapping_add_signed(dseg);
            self.cache_bytes = self.cache_bytes.wrapping_add_signed(dbytes);
            self.counters.reinjections += 1;
        } else {
            let m = c.mp.as_mut()?;
            m.paths[k].bytes_repaired += u64::from(len);
            if zero_fill {
                self.counters.zero_fills += 1;
            } else {
                self.counters.repairs += 1;
            }
        }
        self.arm_tick(id, now);
        Some(crate::engine::Transmit {
            port: Port::Access,
            len: total,
        })
    }

    /// What the engine knows about a bonded connection's subflows, by the client's
    /// initial (address, port); empty for a connection that is not bonded.
    #[must_use]
    pub fn subflows(
        &self,
        client: core::net::SocketAddr,
        service: core::net::SocketAddr,
    ) -> Vec<SubflowInfo> {
        let Some(id) = self.find_client(client.ip(), client.port(), service.ip(), service.port())
        else {
            return Vec::new();
        };
        let Some(c) = self.conn(id) else {
            return Vec::new();
        };
        let Some(m) = c.mp.as_ref() else {
            return Vec::new();
        };
        m.paths
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let l = c.legk(k);
                SubflowInfo {
                    client: core::net::SocketAddr::new(l.client.ip, l.client.port),
                    addr_id: p.addr_id,
                    backup: p.backup,
                    primary: p.primary,
                    health: match (p.state, p.health) {
                        (PathState::Removed, _) => "removed",
                        (PathState::JoinPending, _) => "joining",
                        (_, Health::Ok) => "ok",
                        (_, Health::Suspect) => "suspect",
                        (_, Health::Dead) => "dead",
                    },
                    srtt_us: p.srtt_us,
                    min_rtt_us: p.min_rtt_us,
                    rate: p.bw,
                    inflight: p.inflight_bytes,
                    budget: p.budget(),
                    bytes_sent: p.bytes_sent,
                    bytes_repaired: p.bytes_repaired,
                }
            })
            .collect()
    }

    /// Repair-cache statistics over the bonded connections closed so far and those
    /// still open: (connections, mean of their peaks, mean of their means, largest
    /// peak), bytes.
    #[must_use]
    pub fn cache_report(&self) -> (u64, u64, u64, u64) {
        let k = &self.counters;
        let (mut n, mut peak, mut mean, mut max) = (
            k.bonded_closed,
            k.cache_peak_sum,
            k.cache_mean_sum,
            k.cache_peak_max,
        );
        for m in self.conns.iter().flatten().filter_map(|c| c.mp.as_ref()) {
            n += 1;
            peak += m.cached_peak as u64;
            mean += m.cached_sum / m.cached_samples.max(1);
            max = max.max(m.cached_peak as u64);
        }
        (n, peak / n.max(1), mean / n.max(1), max)
    }

    /// Repair-cache occupancy of this shard: (segments, bytes).
    #[must_use]
    pub fn cache_usage(&self) -> (usize, usize) {
        (self.cache_segments, self.cache_bytes)
    }
}

/// Up to four SACK blocks without allocation.
pub(crate) mod heapless_blocks {
    use hac_wire::seq::SeqNum;

    #[derive(Debug, Default, Clone, Copy)]
    pub struct Blocks {
        b: [(SeqNum, SeqNum); 4],
        n: usize,
    }

    impl Blocks {
        pub fn push(&mut self, l: SeqNum, r: SeqNum) {
            if self.n < 4 {
                self.b[self.n] = (l, r);
                self.n += 1;
            }
        }

        pub fn iter(&self) -> impl Iterator<Item = (SeqNum, SeqNum)> + '_ {
            self.b[..self.n].iter().copied()
        }

        pub fn is_empty(&self) -> bool {
            self.n == 0
        }

        pub fn len(&self) -> usize {
            self.n
        }

        /// The first `n` blocks.
        pub fn first(&self, n: usize) -> Blocks {
            let mut b = *self;
            b.n = b.n.min(n);
            b
        }
    }
}

#[cfg(test)]
mod up_map_tests {
    use super::{UP_MAPS, ack_through_up_maps, held_blocks, note_up_map};
    use hac_wire::seq::SeqNum;
    use std::collections::VecDeque;

    /// Mappings of 1000 subflow bytes each: data index `u`, subflow `s`.
    #[test]
    fn a_repeated_mapping_keeps_the_subflow_order() {
        let mut m = VecDeque::new();
        let s0 = SeqNum(1000);
        // Three mappings in order, with data of other subflows between them.
        note_up_map(&mut m, 0, SeqNum(1000), 1000, s0);
        note_up_map(&mut m, 5000, SeqNum(2000), 1000, s0);
        note_up_map(&mut m, 9000, SeqNum(3000), 1000, s0);
        // The first and second announced again (retransmissions), in turns.
        for _ in 0..10 {
            note_up_map(&mut m, 0, SeqNum(1000), 1000, s0);
            note_up_map(&mut m, 5000, SeqNum(2000), 1000, s0);
        }
        assert_eq!(m.len(), 3);
        // The server has 500 bytes of the first mapping: the subflow ACK stops
        // inside it, never at a later mapping's start.
        assert_eq!(ack_through_up_maps(&m, 500, &[], s0), Some(SeqNum(1500)));
        assert_eq!(ack_through_up_maps(&m, 1000, &[], s0), Some(SeqNum(2000)));
        assert_eq!(ack_through_up_maps(&m, 5400, &[], s0), Some(SeqNum(2400)));
        assert_eq!(ack_through_up_maps(&m, 10_000, &[], s0), Some(SeqNum(4000)));
    }

    #[test]
    fn when_full_the_newest_are_forgotten_and_the_walk_stops_there() {
        let mut m = VecDeque::new();
        let base = SeqNum(u32::MAX - 5000);
        // Data of other subflows between them (data index 5000 apart): no merging.
        for i in 0..UP_MAPS as u32 + 3 {
            note_up_map(&mut m, u64::from(i) * 5000, base + i * 1000, 1000, base);
        }
        assert_eq!(m.len(), UP_MAPS);
        assert_eq!(m.front().map(|e| e.1), Some(base));
        let last = base + (UP_MAPS as u32 - 1) * 1000;
        assert_eq!(m.back().map(|e| e.1), Some(last));
        // The server has everything: the walk stops where the forgotten start.
        assert_eq!(
            ack_through_up_maps(&m, u64::MAX, &[], base),
            Some(last + 1000)
        );
        // The head, announced again (a retransmission) while full, is kept: the
        // walk needs it. (Session 13: a summary of forgotten oldest mappings
        // deadlocked the lab's upload when such a head was not taken back.)
        let mut m2 = m.clone();
        m2.pop_front();
        m2.push_back((1 << 30, last + 1000, 1000));
        note_up_map(&mut m2, 0, base, 1000, base);
        assert_eq!(m2.front().copied(), Some((0, base, 1000)));
        assert_eq!(m2.back().map(|e| e.1), Some(last));
        assert_eq!(ack_through_up_maps(&m2, 1000, &[], base), Some(base + 1000));
        // Once our ACK has passed the first ones there is room again, and a
        // forgotten one announced again is taken.
        note_up_map(
            &mut m,
            u64::from(UP_MAPS as u32) * 5000,
            last + 1000,
            1000,
            base + 3000,
        );
        assert_eq!(m.front().map(|e| e.1), Some(base + 3000));
        assert_eq!(m.back().map(|e| e.1), Some(last + 1000));
        // Out of order, it lands in place.
        let mut m = VecDeque::new();
        note_up_map(&mut m, 10_000, base + 2000, 1000, base);
        note_up_map(&mut m, 0, base, 1000, base);
        note_up_map(&mut m, 5000, base + 1000, 1000, base);
        let seqs: Vec<SeqNum> = m.iter().map(|e| e.1).collect();
        assert_eq!(seqs, vec![base, base + 1000, base + 2000]);
        // Contiguous in both spaces (a burst mapped segment by segment): one run,
        // joined from either side, and a repeat inside it changes nothing.
        let mut m = VecDeque::new();
        note_up_map(&mut m, 0, base, 1000, base);
        note_up_map(&mut m, 2000, base + 2000, 1000, base);
        note_up_map(&mut m, 1000, base + 1000, 1000, base);
        assert_eq!(m.iter().copied().collect::<Vec<_>>(), vec![(0, base, 3000)]);
        note_up_map(&mut m, 1000, base + 1000, 1000, base);
        assert_eq!(m.len(), 1);
        assert_eq!(ack_through_up_maps(&m, 2500, &[], base), Some(base + 2500));
    }

    #[test]
    fn the_walk_stops_where_no_remembered_mapping_covers_the_bytes() {
        let s0 = SeqNum(1000);
        let mut m = VecDeque::new();
        // Subflow bytes 2000..3000 were mapped by a mapping we never took.
        note_up_map(&mut m, 0, SeqNum(1000), 1000, s0);
        note_up_map(&mut m, 9000, SeqNum(3000), 1000, s0);
        assert_eq!(
            ack_through_up_maps(&m, 100_000, &[], s0),
            Some(SeqNum(2000))
        );
        // Nothing remembered from our ACK on: no progress.
        let mut m = VecDeque::new();
        note_up_map(&mut m, 9000, SeqNum(3000), 1000, s0);
        assert_eq!(ack_through_up_maps(&m, 100_000, &[], s0), Some(s0));
        // Our ACK inside the first mapping: the walk goes on from there.
        assert_eq!(
            ack_through_up_maps(&m, 9500, &[], SeqNum(3200)),
            Some(SeqNum(3500))
        );
    }

    /// The server lost subflow bytes 1000..1500 (data 0..500) that we received:
    /// SACK blocks for this subflow's later bytes it holds, none for bytes of
    /// other subflows, none while our ACK waits at an access-path hole.
    #[test]
    fn blocks_show_the_server_s_hole_on_its_own_subflow() {
        let s0 = SeqNum(1000);
        let mut m = VecDeque::new();
        // Data 0..1000 at subflow 1000..2000; data 3000..4000 at 2000..3000.
        note_up_map(&mut m, 0, SeqNum(1000), 1000, s0);
        note_up_map(&mut m, 3000, SeqNum(2000), 1000, s0);
        let rcv = SeqNum(3000);
        // The server holds data 500..1000 and 3000..3600 (and other subflows'
        // 1000..2000): one block, contiguous in this subflow's space.
        let sacked = [(500, 2000), (3000, 3600)];
        let ack = ack_through_up_maps(&m, 0, &sacked, s0).expect("mapped");
        assert_eq!(ack, s0);
        let b: Vec<_> = held_blocks(&m, rcv, ack, 0, &sacked).iter().collect();
        assert_eq!(b, vec![(SeqNum(1500), SeqNum(2600))]);
        // It lacks data 3000..3200 as well: two blocks.
        let b: Vec<_> = held_blocks(&m, rcv, ack, 0, &[(500, 1000), (3200, 3600)])
            .iter()
            .collect();
        assert_eq!(
            b,
            vec![(SeqNum(1500), SeqNum(2000)), (SeqNum(2200), SeqNum(2600))]
        );
        // Only bytes we received count.
        let b: Vec<_> = held_blocks(&m, SeqNum(1800), ack, 0, &[(500, 4000)])
            .iter()
            .collect();
        assert_eq!(b, vec![(SeqNum(1500), SeqNum(1800))]);
        // The server lacks nothing of ours beyond its ACK: no block; nor while
        // our ACK is at the access hole (`rcv`).
        assert!(held_blocks(&m, rcv, ack, 0, &[(1000, 3000)]).is_empty());
        assert!(held_blocks(&m, ack, ack, 0, &sacked).is_empty());
    }

    /// Subflow A carries data 0..1000 and 2000..3000 (subflow 1000..3000), another
    /// subflow 1000..2000. The server SACKs what it holds above its ACK.
    #[test]
    fn sacked_bytes_are_acknowledged_on_their_subflow() {
        let s0 = SeqNum(1000);
        let mut m = VecDeque::new();
        note_up_map(&mut m, 0, SeqNum(1000), 1000, s0);
        note_up_map(&mut m, 2000, SeqNum(2000), 1000, s0);
        // The other subflow's bytes are late: the server holds A's second run.
        let sacked = [(2000, 3000)];
        assert_eq!(
            ack_through_up_maps(&m, 1000, &sacked, s0),
            Some(SeqNum(3000))
        );
        // Only part of it: the ACK stops at the first byte it lacks.
        assert_eq!(
            ack_through_up_maps(&m, 1000, &[(2400, 3000)], s0),
            Some(SeqNum(2000))
        );
        assert_eq!(
            ack_through_up_maps(&m, 500, &[(2000, 2600)], s0),
            Some(SeqNum(1500))
        );
    }
}

#[cfg(test)]
mod server_sack_tests {
    use super::{UP_SACKED, held_to, note_sacked};

    #[test]
    fn sacked_ranges_merge_stay_ordered_and_bounded() {
        let mut s = Vec::new();
        note_sacked(&mut s, 3000, 4000);
        note_sacked(&mut s, 1000, 2000);
        note_sacked(&mut s, 5000, 6000);
        assert_eq!(s, vec![(1000, 2000), (3000, 4000), (5000, 6000)]);
        // Touching one and overlapping the next: all three become one.
        note_sacked(&mut s, 2000, 5500);
        assert_eq!(s, vec![(1000, 6000)]);
        // Inside: nothing changes; empty: ignored.
        note_sacked(&mut s, 1500, 1600);
        note_sacked(&mut s, 7000, 7000);
        assert_eq!(s, vec![(1000, 6000)]);
        // Bounded: the highest go.
        for i in 0..2 * UP_SACKED as u64 {
            note_sacked(&mut s, 10_000 + 2000 * i, 11_000 + 2000 * i);
        }
        assert_eq!(s.len(), UP_SACKED);
        assert_eq!(s[0], (1000, 6000));
        note_sacked(&mut s, 0, 10);
        assert_eq!((s.len(), s[0]), (UP_SACKED, (0, 10)));
    }

    #[test]
    fn held_bytes_run_from_the_cumulative_ack_through_touching_ranges() {
        let s = [(1000, 2000), (2500, 3000)];
        assert_eq!(held_to(0, 1000, &s), 2000);
        assert_eq!(held_to(1500, 0, &s), 2000);
        assert_eq!(held_to(2000, 0, &s), 2000);
        assert_eq!(held_to(2600, 0, &s), 3000);
        assert_eq!(held_to(0, 2500, &s), 3000);
        assert_eq!(held_to(0, 0, &[]), 0);
    }
}

#[cfg(test)]
mod size_tests {
    /// The engine's per-connection state for a bonded connection, as the memory
    /// benchmark (perf/lab-multipath-mem.sh) accounts it. `Box<u8>` stands for
    /// hacd's `Mbuf` (one non-null pointer); `--nocapture` prints the sizes.
    #[test]
    fn bonded_state_sizes() {
        use core::mem::size_of;
        type P = Box<u8>;
        let conn = size_of::<Option<crate::conn::Conn<P>>>();
        let multi = size_of::<super::Multi<P>>();
        let path = size_of::<super::Path<P>>();
        let sent = size_of::<super::Sent<P>>();
        eprintln!(
            "Option<Conn>: {conn} B, Multi: {multi} B, Path: {path} B, Sent: {sent} B; \
             a bonded connection with two subflows: {} B + {sent} B per segment in flight",
            conn + multi + 2 * path
        );
        assert!(
            conn <= 376 && multi <= 176 && path <= 640 && sent <= 96,
            "sizes grew"
        );
    }
}

#[cfg(test)]
mod hold_tests {
    use super::{GrowthProbe, hold_for};

    const MS: u64 = 1_000;

    #[test]
    fn the_hold_is_capped_below_eight_times_apart() {
        // DSL/LTE round trips: 1.5 × the fast one, not 3/4 of the slow one.
        assert_eq!(hold_for(20 * MS, 80 * MS, false), 30 * MS);
        // 2 ms vs 100 ms: 3/4 of the slow one.
        assert_eq!(hold_for(2 * MS, 100 * MS, false), 75 * MS);
        assert_eq!(hold_for(10 * MS, 80 * MS, false), 60 * MS);
        // Close delays, or apart by less than 20 ms: none.
        assert_eq!(hold_for(20 * MS, 50 * MS, false), 0);
        assert_eq!(hold_for(MS, 15 * MS, false), 0);
        // No fast sample: none.
        assert_eq!(hold_for(0, 80 * MS, false), 0);
    }

    #[test]
    fn the_uncapped_hold_is_three_quarters_of_the_slow_path() {
        assert_eq!(hold_for(20 * MS, 80 * MS, true), 60 * MS);
        assert_eq!(hold_for(2 * MS, 100 * MS, true), 75 * MS);
        assert_eq!(hold_for(20 * MS, 50 * MS, true), 0);
    }

    /// Feeds a probe with 60 ms periods, `segs[k]` segments in period k (the
    /// last one reaching our window when `window`); the verdict and the period
    /// that made it.
    fn growth(segs: &[u64], window: bool) -> (Option<bool>, usize) {
        let mut g = GrowthProbe::start(1_000, 60 * MS);
        for (k, &n) in segs.iter().enumerate() {
            let last = window && k + 2 == segs.len();
            for i in 0..n {
                let t = 1_000 + k as u64 * 60 * MS + i * 60 * MS / n;
                if let Some(v) = g.add(t, 1448, last && i + 1 == n) {
                    assert_eq!(g.uncapped(), v);
                    return (Some(v), k);
                }
            }
        }
        assert!(g.uncapped(), "undecided: uncapped");
        (None, segs.len())
    }

    #[test]
    fn the_growth_probe_keeps_the_uncapped_hold_for_a_doubling_server() {
        // CUBIC in slow start until our window stops it: decided when the
        // period after the one that reached it begins.
        assert_eq!(
            growth(&[10, 20, 40, 80, 160, 320, 1], true),
            (Some(true), 6)
        );
        // Still doubling: undecided.
        assert_eq!(growth(&[10, 20, 40, 80, 160], false), (None, 5));
        // BBR under a hold three times its handshake RTT: doubles, then stalls
        // at ~160 segments below our window.
        assert_eq!(
            growth(&[10, 20, 40, 80, 160, 170, 170], false),
            (Some(false), 6)
        );
        // A period without data: stopped on its own.
        assert_eq!(growth(&[10, 20, 0, 80], false), (Some(false), 3));
        // Ten periods of growth without reaching our window: uncapped.
        let many: Vec<u64> = (0..11)
            .map(|k| (10.0 * 1.6f64.powi(k)).ceil() as u64)
            .collect();
        assert_eq!(growth(&many, false).0, Some(true));
        // Not probing: never uncapped.
        assert!(!GrowthProbe::default().uncapped());
    }
}
