//! Per-connection state: one client leg (the initial subflow, MPTCP v1 or plain TCP)
//! and one server leg, tied together by the sequence-space constants of
//! `docs/translation.md`. No payload is kept, except the bounded items the engine
//! must be able to (re)send itself: the Convert reply, the application bytes that
//! followed the Convert TLVs in the SYN, and a few server segments that arrive before
//! the client's key is known.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;

use hac_wire::seq::{DataSeq, SeqNum};

use crate::time::Instant;

/// Server segments held while the client's key (hence its IDSN) is unknown.
pub(crate) const MAX_HELD_SERVER: usize = 8;

/// Segments without a mapping beyond the client's last one that may be refused
/// while its infinite mapping is awaited (`Handshake::infinite_wait`): a bound,
/// so that a client that never sends one is only delayed.
pub(crate) const INFINITE_WAIT: u8 = 16;

/// Connection state (client side × server side, see the state diagram in docs/).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Client SYN accepted, downstream SYN sent; waiting for the server.
    SynSent,
    /// Server answered; SYN-ACK sent to the client; waiting for its (third) ACK.
    SynAckSent,
    /// Both legs established.
    Established,
    /// A Convert reply that ends the connection (an Error TLV, or Supported TCP
    /// Extensions for an Info-only request) was sent in the SYN-ACK; the engine
    /// closes the client leg gracefully and never opens a server leg.
    ReplyClose,
    /// The client's only subflow was reset without MP_FASTCLOSE: the server leg
    /// is kept for the transitory timeout (RFC 8803 §5.1: subflow scope only).
    ClientGone,
    /// Both data-level FINs exchanged and acknowledged; lingering (RFC 7857 §2.2).
    TimeWait,
}

/// The client's current DSS mapping on the subflow (RFC 8684 §3.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientMapping {
    pub dsn: DataSeq,
    /// Relative subflow sequence number of the first mapped byte.
    pub ssn: u32,
    /// Data-level length (a DATA_FIN counts one).
    pub len: u32,
    pub data_fin: bool,
    /// DSS checksum of the mapping as the client sent it (RFC 8684 §3.3.1; used
    /// only when checksums were negotiated).
    pub csum: u16,
    /// Ones'-complement sum (folded) of the mapped bytes received so far, and the
    /// offset ranges those are (disjoint, in order): the checksum is computed as
    /// segments pass, in any order, without keeping any of them. Ones'-complement
    /// addition commutes; a part at an odd offset enters byte-swapped (RFC 1071
    /// §2(B)), so each byte counts once wherever it arrives.
    pub sum: u16,
    pub summed: [(u16, u16); SUM_RANGES],
    pub summed_n: u8,
    /// The checksum is settled (verified, failed, or not verifiable: more holes
    /// than `SUM_RANGES` ranges can describe).
    pub checked: bool,
}

/// Received ranges a mapping's running checksum tracks: a segment that would need
/// more leaves the mapping unverified.
pub(crate) const SUM_RANGES: usize = 4;

/// What one segment did to its mapping's DSS checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CsumStep {
    /// Nothing settled yet (or already settled before).
    Pending,
    /// The mapping is complete and its checksum verified.
    Verified,
    /// The mapping is complete and its checksum is wrong.
    Failed,
    /// More holes than the running sum can track: this mapping cannot be verified.
    Unverifiable,
}

impl ClientMapping {
    /// A new mapping as announced (with its DSS checksum, if any).
    pub fn new(dsn: DataSeq, ssn: u32, len: u32, data_fin: bool, csum: Option<u16>) -> Self {
        ClientMapping {
            dsn,
            ssn,
            len,
            data_fin,
            csum: csum.unwrap_or(0),
            sum: 0,
            summed: [(0, 0); SUM_RANGES],
            summed_n: 0,
            // No checksum to check (not negotiated, or a mapping of no subflow
            // bytes): settled from the start.
            checked: csum.is_none() || len <= u32::from(data_fin),
        }
    }

    /// The same mapping (the client repeats it on every segment it covers).
    pub fn same(&self, o: &ClientMapping) -> bool {
        self.is(o.dsn, o.ssn, o.len, o.data_fin)
    }

    /// This mapping is (DSN, SSN, data-level length, DATA_FIN).
    pub fn is(&self, dsn: DataSeq, ssn: u32, len: u32, data_fin: bool) -> bool {
        self.dsn == dsn && self.ssn == ssn && self.len == len && self.data_fin == data_fin
    }

    /// Adds `payload`, at offset `off` of the mapping's subflow bytes, with
    /// ones'-complement sum `psum`, to the running checksum (RFC 8684 §3.3.1: the
    /// pseudo-header of DSN (64 bits), SSN, data-level length and zero, then the
    /// mapped bytes). Bytes already summed are skipped, whatever order segments
    /// come in; a segment that would leave more than [`SUM_RANGES`] separate
    /// ranges makes the mapping unverifiable.
    pub fn add_checksum(
        &mut self,
        off: u32,
        payload: &[u8],
        psum: hac_wire::checksum::Checksum,
    ) -> CsumStep {
        use hac_wire::checksum::Checksum;
        if self.checked {
            return CsumStep::Pending;
        }
        let mapped = self.len - u32::from(self.data_fin);
        let end = off.saturating_add(payload.len() as u32).min(mapped);
        if off >= end {
            return CsumStep::Pending;
        }
        let n = usize::from(self.summed_n);
        let have = &self.summed[..n];
        // The new ranges: the union of what was summed and [off, end), and the
        // pieces of [off, end) not summed before.
        let mut union = [(0u32, 0u32); SUM_RANGES + 1];
        let mut un = 0;
        let mut pieces = [(0u32, 0u32); SUM_RANGES + 1];
        let mut pn = 0;
        let (mut lo, mut hi) = (off, end);
        let mut at = off;
        let mut placed = false;
        for &(a, b) in have {
            let (a, b) = (u32::from(a), u32::from(b));
            if b < lo {
                union[un] = (a, b);
                un += 1;
                continue;
            }
            if a > hi {
                if !placed {
                    if at < end {
                        pieces[pn] = (at, end);
                        pn += 1;
                        at = end;
                    }
                    union[un] = (lo, hi);
                    un += 1;
                    placed = true;
                }
                if un == union.len() {
                    self.checked = true;
                    return CsumStep::Unverifiable;
                }
                union[un] = (a, b);
                un += 1;
                continue;
            }
            // Overlapping or touching [lo, hi): merge; what it covers of the
            // segment is not summed again.
            if a > at && at < end {
                pieces[pn] = (at, a.min(end));
                pn += 1;
            }
            at = at.max(b);
            lo = lo.min(a);
            hi = hi.max(b);
        }
        if !placed {
            if at < end {
                pieces[pn] = (at, end);
                pn += 1;
            }
            union[un] = (lo, hi);
            un += 1;
        }
        if un > SUM_RANGES {
            self.checked = true;
            return CsumStep::Unverifiable;
        }
        let mut sum = Checksum::new().add_u16(self.sum);
        for &(a, b) in &pieces[..pn] {
            let part = if a == off && b - a == payload.len() as u32 {
                psum
            } else {
                Checksum::new().add_bytes(&payload[(a - off) as usize..(b - off) as usize])
            };
            // A part starting at an odd offset has its bytes in the other halves
            // of the 16-bit words: its sum is byte-swapped (RFC 1071 §2(B)).
            let p = if a % 2 == 1 {
                part.fold().swap_bytes()
            } else {
                part.fold()
            };
            sum = sum.add_u16(p);
        }
        self.sum = sum.fold();
        for (i, &(a, b)) in union[..un].iter().enumerate() {
            self.summed[i] = (a as u16, b as u16);
        }
        self.summed_n = un as u8;
        if !(un == 1 && union[0] == (0, mapped)) {
            return CsumStep::Pending;
        }
        self.checked = true;
        let want = hac_wire::checksum::dss_checksum(
            self.dsn.0,
            self.ssn,
            self.len as u16,
            Checksum::new().add_u16(self.sum),
        );
        // 0x0000 and 0xffff are the same ones'-complement zero.
        let norm = |v: u16| if v == 0xffff { 0 } else { v };
        if norm(want) == norm(self.csum) {
            CsumStep::Verified
        } else {
            CsumStep::Failed
        }
    }
}

/// A transport address without the IPv6 flow label and scope id: 20 bytes instead
/// of `SocketAddr`'s 32 (four per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sock {
    pub ip: IpAddr,
    pub port: u16,
}

impl Sock {
    /// The unspecified IPv4 address, port 0.
    pub const UNSPECIFIED: Sock = Sock {
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
    };

    pub const fn new(ip: IpAddr, port: u16) -> Sock {
        Sock { ip, port }
    }

    pub const fn ip(&self) -> IpAddr {
        self.ip
    }

    pub const fn port(&self) -> u16 {
        self.port
    }
}

impl From<SocketAddr> for Sock {
    fn from(a: SocketAddr) -> Sock {
        Sock::new(a.ip(), a.port())
    }
}

/// A deadline that may be unset, in 8 bytes (`Option<Instant>` takes 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(u64);

impl Deadline {
    pub const NONE: Deadline = Deadline(u64::MAX);

    pub const fn at(t: Instant) -> Deadline {
        Deadline(t.0)
    }

    pub const fn get(self) -> Option<Instant> {
        if self.0 == u64::MAX {
            None
        } else {
            Some(Instant(self.0))
        }
    }

    pub const fn is_some(self) -> bool {
        self.0 != u64::MAX
    }
}

/// Transmissions of an ADD_ADDR before it is given up unanswered (the first and
/// three retransmissions, at the connection's retransmission timeout, RFC 8684
/// §3.4.1: "retransmit ... if the echo is not received").
pub(crate) const ADD_ADDR_TRIES: u8 = 4;

/// Convert replies up to this length are stored in the connection itself (a bare
/// reply is 4 bytes); longer ones live in the [`Handshake`] box until acknowledged.
pub(crate) const REPLY_INLINE: usize = 8;

/// Handshake-only state, out of line and freed once the handshake's items are done
/// (server acknowledged the SYN's application bytes, held server segments sent,
/// Convert reply acknowledged).
#[derive(Debug)]
pub(crate) struct Handshake<P> {
    /// When the client SYN arrived (the SynSent deadline).
    pub created: Instant,
    /// The client SYN holding the application bytes, until the server acknowledges them.
    pub held_syn: Option<P>,
    /// Offset of the app bytes in the held SYN.
    pub app_off: usize,
    /// Server segments waiting for the client's key.
    pub held_server: Vec<P>,
    /// A Convert reply longer than [`REPLY_INLINE`].
    pub reply: Box<[u8]>,
    /// The client sent Info: the reply carries Supported TCP Extensions.
    pub reply_info: bool,
    /// Extended Connect: the reply carries the server's SYN-ACK options.
    pub reply_extended: bool,
    /// The Extended Connect listed MPTCP (kind 30): our SYN to the server offers
    /// MP_CAPABLE, so the server's SYN-ACK options (the Extended TCP Header) show
    /// whether it speaks MPTCP (RFC 8803 §5.1, §6.2.5).
    pub server_mptcp: bool,
    /// Our ADD_ADDR announcements (RFC 8684 §3.4.1) not yet echoed by the client:
    /// bit i is `EngineConfig::announce[i]` (address ID i + 1). Kept here, out of
    /// line, for the few round trips the exchange takes (the box stays until then).
    pub adv_pending: u8,
    /// ADD_ADDR transmissions so far (bounded by [`ADD_ADDR_TRIES`]).
    pub adv_tries: u8,
    /// We sent MP_FAIL after a checksum failure on the lone subflow (RFC 8684
    /// §3.7) and wait for the client's infinite mapping; no more checks until then.
    pub mp_fail_sent: bool,
    /// The client answered our MP_FAIL: its infinite mapping (RFC 8684 §3.7) comes
    /// with the first data it builds after that and fixes where its bytes go from
    /// then on. Until it does, segments built before (their mappings not sent: it
    /// fell back before they left) follow its last mapping's relation — unless
    /// one was a zero-window probe (`infinite_probe`). This many more segments may
    /// still be refused for that (`INFINITE_WAIT`); 0: not waiting.
    pub infinite_wait: u8,
    /// A one-byte segment without a mapping came beyond the client's last one
    /// while its infinite mapping was awaited: Linux's zero-window probe (an old
    /// byte, DSN snd_una − 1, at a new SSN) as likely as new data. It and every
    /// unmapped byte after it wait for the infinite mapping (refused, resent).
    pub infinite_probe: bool,
    /// Our first SYN-ACK to the client is due then (the handshake hold,
    /// `EngineConfig::handshake_hold`); None once sent.
    pub synack_due: Option<Instant>,
    /// The SYN-ACK was held: the server's handshake RTT is the uncapped ACK
    /// hold's round trip, so the connection keeps that hold from its first byte.
    pub synack_held: bool,
}

impl<P> Handshake<P> {
    pub fn new(created: Instant) -> Self {
        Handshake {
            created,
            held_syn: None,
            app_off: 0,
            held_server: Vec::new(),
            reply: Box::default(),
            reply_info: false,
            reply_extended: false,
            server_mptcp: false,
            adv_pending: 0,
            adv_tries: 0,
            mp_fail_sent: false,
            infinite_wait: 0,
            infinite_probe: false,
            synack_due: None,
            synack_held: false,
        }
    }
}

/// The ACK hold a connection starts with (`Conn::seed`), in one byte: the
/// hold in units of 2 ms (7 bits, up to 254 ms; 0: none) and whether the
/// server's handshake RTT already spans it (a held SYN-ACK,
/// `EngineConfig::handshake_hold`: the uncapped hold then stays for the
/// connection's life, with no growth probe).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedHold(u8);

impl SeedHold {
    const SETTLED: u8 = 0x80;

    /// A hold of `us` microseconds (rounded down to 2 ms, at most 254 ms).
    #[must_use]
    pub fn new(us: u64, settled: bool) -> Self {
        let units = (us / 2000).min(u64::from(!Self::SETTLED)) as u8;
        if units == 0 {
            return SeedHold(0);
        }
        SeedHold(units | if settled { Self::SETTLED } else { 0 })
    }

    /// The hold, microseconds (0: none).
    #[must_use]
    pub fn us(self) -> u64 {
        u64::from(self.0 & !Self::SETTLED) * 2000
    }

    /// The server's handshake RTT spans the hold.
    #[must_use]
    pub fn settled(self) -> bool {
        self.0 & Self::SETTLED != 0
    }

    #[must_use]
    pub fn is_some(self) -> bool {
        self.0 != 0
    }
}

/// One client subflow as the engine sees it: addresses, the client's and our
/// sequence spaces, negotiated options, and the client's current DSS mapping
/// (RFC 8684 §3.3.1). The initial subflow's is `Conn::leg`; joined subflows keep
/// theirs in [`crate::multipath::Path`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leg {
    pub client: Sock,
    pub service: Sock,
    pub c_isn: SeqNum,
    /// SYN payload bytes acknowledged in our SYN-ACK (Convert message + app data):
    /// the client's relative SSN 1 is at `c_isn + 1 + syn_len` (RFC 8684 App. B).
    pub syn_len: u32,
    pub e_isn: SeqNum,
    /// Client's window shift when scaling is on for this subflow.
    pub c_ws: u8,
    /// Our window shift toward the client.
    pub e_ws: u8,
    pub c_mss: u16,
    pub c_sack: bool,
    /// Timestamps on this subflow (RFC 7323), owned by the engine; the initial
    /// subflow's flag also says whether the server leg uses them.
    pub ts: bool,
    pub c_ts_recent: u32,
    pub mapping: Option<ClientMapping>,
    /// Highest client subflow sequence received (end of data).
    pub c_rcv_nxt: SeqNum,
    /// Highest subflow ACK sent to the client.
    pub c_ack_sent: SeqNum,
    /// `ssn − (dsn − client IDSN)` of the latest mapping (0 for Linux's initial
    /// subflow until it sends a zero-window probe, a byte already sent at a new
    /// SSN); lets the server's ACK be mapped straight to a subflow ACK. After a
    /// fallback it places the client's bytes (RFC 8684 §3.7, `Conn::fb_delta`).
    pub c_ssn_delta: i64,
    /// Our next subflow sequence toward the client.
    pub e_snd_nxt: SeqNum,
    /// Client subflow FIN seen at this sequence (acked by the engine).
    pub c_subflow_fin: Option<SeqNum>,
    /// Subflow FIN sent to the client.
    pub e_fin_sent: bool,
    /// The client acknowledged our subflow FIN.
    pub e_fin_acked: bool,
}

impl Leg {
    /// The client's bytes on this subflow we have acknowledged: our highest
    /// subflow ACK, or the start of its data (after the SYN and the SYN's payload)
    /// before we sent one.
    pub fn settled(&self) -> SeqNum {
        let start = self.c_isn + 1 + self.syn_len;
        if self.c_ack_sent.diff(start) < 0 {
            start
        } else {
            self.c_ack_sent
        }
    }

    /// The leg a client SYN opens: its addresses, sequence numbers and options;
    /// our ISN `e_isn`, timestamps `ts` on the leg, our window shift `e_ws`.
    pub fn from_syn(seg: &crate::segment::Segment, e_isn: SeqNum, ts: bool, e_ws: u8) -> Leg {
        let o = &seg.opts;
        Leg {
            client: Sock::new(seg.src, seg.sport),
            service: Sock::new(seg.dst, seg.dport),
            c_isn: seg.seq,
            syn_len: 0,
            e_isn,
            c_ws: o.window_scale.map_or(0, |w| w.min(14)),
            e_ws,
            c_mss: o.mss.unwrap_or(536),
            c_sack: o.sack_permitted,
            ts,
            c_ts_recent: o.timestamps.map_or(0, |t| t.0),
            mapping: None,
            c_rcv_nxt: seg.seq + 1,
            c_ack_sent: seg.seq,
            c_ssn_delta: 0,
            e_snd_nxt: e_isn + 1,
            c_subflow_fin: None,
            e_fin_sent: false,
            e_fin_acked: false,
        }
    }
}

/// One translated connection.
/// A stream index where a FIN sits, or none: an `Option<u64>` in 8 bytes
/// instead of 16 (the connection table's size per entry, `conn_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FinAt(u64);

impl FinAt {
    pub const NONE: FinAt = FinAt(u64::MAX);

    /// A FIN at index `v` (indices stay far below 2^64 - 1).
    pub fn at(v: u64) -> FinAt {
        FinAt(v.min(u64::MAX - 1))
    }

    #[inline]
    pub fn get(self) -> Option<u64> {
        (self.0 != u64::MAX).then_some(self.0)
    }
}

#[derive(Debug)]
pub(crate) struct Conn<P> {
    pub generation: u32,
    pub state: State,
    /// The client leg speaks MPTCP (false: plain-TCP Convert client or fallback).
    pub mptcp: bool,
    /// The client leg fell back to TCP after starting as MPTCP (RFC 8684 §3.7).
    pub fallback: bool,
    /// Downstream placement on a bonded connection: the subscriber's scheduler
    /// when its policy names one, else the converter-wide default (policy.rs).
    pub scheduler: crate::config::Scheduler,

    // ---- client leg (initial subflow) ----
    /// The initial subflow (joined subflows live in `mp`).
    pub leg: Leg,
    pub c_offered_ts: bool,
    pub c_offered_ws: bool,
    pub local_key: u64,
    pub local_idsn: DataSeq,
    pub token: u32,
    pub client_key: u64,
    pub client_idsn: DataSeq,
    /// DSS checksums in use (RFC 8684 §3.3.1: either SYN asked).
    pub csum: bool,
    /// Next expected client DSN (reference for 32-bit expansion).
    pub c_dsn_nxt: DataSeq,
    /// Last DATA_ACK from the client (our data level).
    pub c_data_ack: DataSeq,
    /// Client receive window in bytes (from its last segment).
    pub c_win: u32,
    /// The client's data-level right edge (RFC 8684 §3.3.5): the highest sum of
    /// one segment's DATA_ACK and window (the window is relative to that
    /// segment's own DATA_ACK; a later DATA_ACK from a faster subflow with it would
    /// overstate the edge). Its low 32 bits (a window is under 2³⁰); set when
    /// the connection is established.
    pub c_wnd_edge: SeqNum,

    // ---- server leg ----
    pub pool: Sock,
    pub server: Sock,
    pub p_isn: SeqNum,
    pub s_isn: SeqNum,
    pub s_ws: u8,
    /// Our window shift toward the server.
    pub p_ws: u8,
    pub s_mss: u16,
    pub s_sack: bool,
    pub s_ts_recent: u32,
    /// Round trip to the server, from our SYN to its SYN-ACK (µs; 0: unknown).
    pub s_rtt_us: u32,
    /// Last ACK from the server (our p space).
    pub s_ack: SeqNum,
    /// Server receive window in bytes.
    pub s_win: u32,
    /// Last ACK and window field sent to the server (duplicate suppression).
    pub p_ack_sent: SeqNum,
    /// Our next sequence number toward the server (SND.NXT of the server leg): the
    /// sequence of pure ACKs, and of RSTs.
    pub p_snd_nxt: SeqNum,
    pub p_win_sent: u16,
    /// Application bytes that followed the Convert TLVs in the SYN (`A`).
    pub app_len: u32,
    /// Handshake-only state (None once done).
    pub hs: Option<Box<Handshake<P>>>,
    /// Multipath state, created when the first MP_JOIN is accepted (None: the
    /// initial subflow alone, translated by the identity arithmetic).
    pub mp: Option<Box<crate::multipath::Multi<P>>>,

    // ---- Convert reply (engine-originated bytes, `R`) ----
    /// `R`.
    pub reply_len: u16,
    /// The reply when it is at most [`REPLY_INLINE`] bytes.
    pub reply_inline: [u8; REPLY_INLINE],
    pub reply_acked: bool,

    // ---- close ----
    /// Upstream index of the client's DATA_FIN (forwarded as the server FIN).
    pub c_fin: FinAt,
    /// Downstream index of the server's FIN (sent as DATA_FIN).
    pub s_fin: FinAt,

    // ---- timers ----
    pub last_activity: Instant,
    /// The connection's live timer-wheel entry.
    pub wheel_at: Deadline,
    /// Retransmission deadline for engine-originated bytes, if any are unacked.
    pub rto_at: Deadline,
    /// Doublings of the initial RTO so far (RFC 6298 §5.5 back-off).
    pub rto_shift: u8,
    pub retries: u8,
    /// Timestamp offset of this connection (RFC 7323 §5.4, randomised per connection).
    pub ts_offset: u32,
    /// The ACK hold this connection starts with, learned from the subscriber's
    /// earlier connections (`paths.rs`): set when the handshake completes,
    /// taken by the bond made at the server's first data.
    pub seed: SeedHold,
}

/// Upper bound of the retransmission timeout (RFC 6298 §2.5 allows a maximum ≥ 60 s).
const MAX_RTO: Duration = Duration::from_secs(60);

impl<P> Conn<P> {
    /// Length of the Convert reply.
    #[inline]
    pub fn reply_len(&self) -> u32 {
        u32::from(self.reply_len)
    }

    /// The Convert reply's bytes (empty once a long reply was acknowledged and freed).
    pub fn reply(&self) -> &[u8] {
        let n = usize::from(self.reply_len);
        if n <= REPLY_INLINE {
            &self.reply_inline[..n]
        } else {
            self.hs.as_ref().map_or(&[], |h| &h.reply)
        }
    }

    /// Sets the Convert reply (≤ 1020 bytes).
    pub fn set_reply(&mut self, r: &[u8], now: Instant) {
        self.reply_len = r.len() as u16;
        if r.len() <= REPLY_INLINE {
            self.reply_inline[..r.len()].copy_from_slice(r);
            if let Some(h) = self.hs.as_mut() {
                h.reply = Box::default();
            }
        } else {
            self.hs_mut(now).reply = Box::from(r);
        }
    }

    /// The handshake state, created if it was freed.
    pub fn hs_mut(&mut self, now: Instant) -> &mut Handshake<P> {
        self.hs.get_or_insert_with(|| Box::new(Handshake::new(now)))
    }

    /// The held client SYN (application bytes not yet acknowledged by the server).
    pub fn has_held_syn(&self) -> bool {
        self.hs.as_ref().is_some_and(|h| h.held_syn.is_some())
    }

    /// Our ADD_ADDR announcements still waiting for their echo (bit per entry).
    pub fn adv_pending(&self) -> u8 {
        self.hs.as_ref().map_or(0, |h| h.adv_pending)
    }

    /// We sent MP_FAIL and the client has not fallen back yet.
    pub fn mp_fail_sent(&self) -> bool {
        self.hs.as_ref().is_some_and(|h| h.mp_fail_sent)
    }

    /// The `c_ssn_delta` a mapping seen on the fallen-back initial subflow gives
    /// (RFC 8684 §3.7): its DSN ↔ SSN pair. An infinite mapping with SSN 0 is
    /// taken to start at its own segment (`rel`, the segment's relative SSN);
    /// Linux puts the segment's SSN there.
    pub fn fb_delta(&self, m: &hac_wire::mptcp::Mapping, rel: u32) -> i64 {
        let dsn = m.dsn.expand(self.c_dsn_nxt);
        let ssn = if m.data_len == 0 && m.ssn == 0 {
            rel
        } else {
            m.ssn
        };
        i64::from(ssn) - dsn.diff(self.client_idsn)
    }

    /// Fallen back after our MP_FAIL, the client's infinite mapping not seen yet
    /// (`Handshake::infinite_wait`, `infinite_probe`): whether its unmapped
    /// segment of `len` bytes beyond its last mapping cannot be placed yet.
    pub fn infinite_wait(&self, len: u32) -> bool {
        self.hs
            .as_ref()
            .is_some_and(|h| h.infinite_wait > 0 && (len == 1 || h.infinite_probe))
    }

    /// Drops the held client SYN.
    pub fn drop_held_syn(&mut self) {
        if let Some(h) = self.hs.as_mut() {
            h.held_syn = None;
        }
    }

    /// Held server segments.
    pub fn held_server_len(&self) -> usize {
        self.hs.as_ref().map_or(0, |h| h.held_server.len())
    }

    /// Frees the handshake state once nothing in it can be needed again.
    #[inline]
    pub fn release_handshake(&mut self) {
        if let Some(h) = &self.hs
            && matches!(
                self.state,
                State::Established | State::TimeWait | State::ClientGone
            )
            && h.held_syn.is_none()
            && h.held_server.is_empty()
            && (self.reply_acked || usize::from(self.reply_len) <= REPLY_INLINE)
            && h.adv_pending == 0
            && (!h.mp_fail_sent || self.fallback)
            && h.infinite_wait == 0
        {
            self.hs = None;
        }
    }

    /// The current retransmission timeout.
    pub fn rto(&self, initial: Duration) -> Duration {
        if self.rto_shift == 0 {
            initial
        } else {
            initial
                .saturating_mul(1u32 << self.rto_shift.min(31))
                .min(MAX_RTO)
        }
    }

    /// Our TSval at `now`.
    pub fn tsval(&self, now: Instant) -> u32 {
        (now.as_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// Upstream stream index → server-leg sequence number.
    pub fn p_seq(&self, u: u64) -> SeqNum {
        self.p_isn + 1 + self.app_len + (u as u32)
    }

    /// Downstream stream index of a server sequence number.
    pub fn s_index(&self, y: SeqNum) -> u64 {
        u64::from(y.0.wrapping_sub(self.s_isn.0).wrapping_sub(1))
    }

    /// Subflow sequence toward the client of downstream index `v`.
    pub fn e_seq(&self, v: u64) -> SeqNum {
        self.leg.e_isn + 1 + self.reply_len() + (v as u32)
    }

    /// Our DSN of downstream index `v`.
    pub fn e_dsn(&self, v: u64) -> DataSeq {
        self.local_idsn + 1 + u64::from(self.reply_len()) + v
    }

    /// Upstream bytes the server has acknowledged (its ACK minus the held app data).
    pub fn server_acked_index(&self) -> u64 {
        let base = self.p_isn + 1 + self.app_len;
        let d = self.s_ack.diff(base);
        if d > 0 { d as u64 } else { 0 }
    }

    /// The DATA_ACK we send the client: the client's data the server acknowledged.
    pub fn data_ack_to_client(&self) -> DataSeq {
        self.client_idsn + 1 + self.server_acked_index()
    }

    /// The subflow ACK we send the client on the initial subflow.
    pub fn subflow_ack_to_client(&self) -> SeqNum {
        self.subflow_ack(0)
    }

    /// SACK blocks for our ACK `ack` (= `subflow_ack(k)`) on bonded subflow `k`
    /// (SACK negotiated there: the client offered it and our SYN-ACK granted it):
    /// its bytes above a hole on the access path (`Path::rcv_sack_blocks`), else
    /// above bytes the server lacks (`Path::server_sack_blocks`).
    pub(crate) fn client_sack(
        &self,
        k: usize,
        ack: SeqNum,
    ) -> crate::multipath::heapless_blocks::Blocks {
        match &self.mp {
            Some(m) if self.bonded() && self.legk(k).c_sack && self.s_sack => {
                let b = m.paths[k].rcv_sack_blocks(ack);
                if b.is_empty() {
                    m.paths[k].server_sack_blocks(ack, self.server_acked_index(), &m.up_sacked)
                } else {
                    b
                }
            }
            _ => crate::multipath::heapless_blocks::Blocks::default(),
        }
    }

    /// Whether bonded subflow `k` carried client bytes the server lacks while it
    /// holds later ones of the same subflow (`Path::server_sack_blocks`): each
    /// server ACK that shows it becomes a duplicate ACK with SACK there.
    pub(crate) fn server_hole(&self, k: usize) -> bool {
        match &self.mp {
            Some(m) if self.bonded() && self.legk(k).c_sack && self.s_sack => {
                let p = &m.paths[k];
                let ack = self.subflow_ack(k);
                p.rcv_sack_blocks(ack).is_empty()
                    && !p
                        .server_sack_blocks(ack, self.server_acked_index(), &m.up_sacked)
                        .is_empty()
            }
            _ => false,
        }
    }

    /// The subflow ACK we send the client on subflow `k`: the client's bytes the
    /// server acknowledged, through that subflow's latest mapping, never past what
    /// arrived there and never backwards.
    pub fn subflow_ack(&self, k: usize) -> SeqNum {
        let leg = self.legk(k);
        let base = leg.c_isn + 1 + leg.syn_len;
        let idx = self.server_acked_index();
        let through_maps = match &self.mp {
            Some(m) if self.bonded() => m
                .paths
                .get(k)
                .and_then(|p| p.ack_through_maps(idx, &m.up_sacked, leg.settled())),
            _ => None,
        };
        let mut ack = if let Some(a) = through_maps {
            a
        } else {
            // DSN idsn+1+idx ↔ SSN 1+idx+delta ↔ seq base+idx+delta (delta 0 on
            // a plain leg; after a fallback, the last mapping's or the infinite
            // mapping's).
            base + (idx as u32).wrapping_add(leg.c_ssn_delta as u32)
        };
        // Never acknowledge subflow bytes not received (on a bonded connection the
        // server may have the bytes through another subflow: the hole on this one
        // still bounds its ACK), never go backwards.
        let rcv = match &self.mp {
            Some(m) if self.bonded() => m
                .paths
                .get(k)
                .and_then(|p| p.rcv_contig)
                .filter(|c| c.diff(leg.c_rcv_nxt) <= 0)
                .unwrap_or(leg.c_rcv_nxt),
            _ => leg.c_rcv_nxt,
        };
        if ack.diff(rcv) > 0 {
            ack = rcv;
        }
        // The FIN is acknowledged once everything before it has arrived (RFC 9293
        // §3.10.7.4: a FIN is processed in sequence).
        if let Some(f) = leg.c_subflow_fin
            && rcv.diff(f) >= 0
        {
            ack = ack.max(f + 1);
        }
        ack.max(leg.c_ack_sent)
    }

    /// Server-leg ACK from the client's acknowledgement of our data: `dack` is a
    /// DATA_ACK (MPTCP) or the subflow ACK mapped to the data level (plain TCP).
    pub fn server_ack_from_data_ack(&self, dack: DataSeq) -> SeqNum {
        let first = self.local_idsn + 1 + u64::from(self.reply_len());
        let d = dack.diff(first);
        self.s_isn + 1 + if d > 0 { d as u32 } else { 0 }
    }

    /// The client's data-level right edge (`c_wnd_edge`) in the server's space.
    pub fn server_seq_of_edge(&self) -> SeqNum {
        let first = self.local_idsn + 1 + u64::from(self.reply_len());
        let d = self.c_wnd_edge.diff(SeqNum(first.0 as u32));
        self.s_isn + 1 + if d > 0 { d as u32 } else { 0 }
    }

    /// A client SACK edge (our subflow space toward the client) in the server's
    /// space; None for an edge inside the Convert reply.
    pub fn sack_to_server(&self, e: SeqNum) -> Option<SeqNum> {
        let d = e.diff(self.leg.e_isn + 1 + self.reply_len());
        (d >= 0).then(|| self.s_isn + 1 + d as u32)
    }

    /// A server SACK edge (our space toward the server) in the client's subflow space;
    /// None for an edge inside the SYN's application bytes.
    pub fn sack_to_client(&self, p: SeqNum) -> Option<SeqNum> {
        let d = p.diff(self.p_isn + 1 + self.app_len);
        if d < 0 {
            return None;
        }
        let base = self.leg.c_isn + 1 + self.leg.syn_len;
        Some(base + (d as u32).wrapping_add(self.leg.c_ssn_delta as u32))
    }

    /// Data-level FINs of both directions acknowledged.
    pub fn data_closed(&self) -> bool {
        // Checked per segment: both FINs absent is the common case, and is
        // decided by the first test.
        self.s_fin
            .get()
            .is_some_and(|v| self.c_data_ack.diff(self.e_dsn(v)) >= 1)
            && self
                .c_fin
                .get()
                .is_some_and(|u| self.s_ack.diff(self.p_seq(u)) >= 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use hac_wire::checksum::{Checksum, dss_checksum};

    const DSN: u64 = 0x1234_5678_9abc_def0;

    /// A mapping of `data` at SSN 7 with the checksum RFC 8684 §3.3.1 gives it
    /// (`data_fin`: its data-level length counts one more).
    fn mapping(data: &[u8], data_fin: bool) -> ClientMapping {
        let len = data.len() as u32 + u32::from(data_fin);
        let c = dss_checksum(DSN, 7, len as u16, Checksum::new().add_bytes(data));
        ClientMapping::new(DataSeq(DSN), 7, len, data_fin, Some(c))
    }

    fn feed(m: &mut ClientMapping, data: &[u8], from: usize, to: usize) -> CsumStep {
        let p = &data[from..to];
        m.add_checksum(from as u32, p, Checksum::new().add_bytes(p))
    }

    #[test]
    fn checksum_verified_across_segments_split_at_odd_offsets() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3) as u8).collect();
        for fin in [false, true] {
            let mut m = mapping(&data, fin);
            assert_eq!(feed(&mut m, &data, 0, 333), CsumStep::Pending);
            // A retransmission of bytes already summed changes nothing.
            assert_eq!(feed(&mut m, &data, 0, 100), CsumStep::Pending);
            // Overlapping the summed part: only the new bytes count.
            assert_eq!(feed(&mut m, &data, 200, 777), CsumStep::Pending);
            assert_eq!(feed(&mut m, &data, 777, 1001), CsumStep::Verified);
            assert!(m.checked);
            assert_eq!(feed(&mut m, &data, 777, 1001), CsumStep::Pending);
        }
    }

    #[test]
    fn checksum_failure_and_hole() {
        let data = vec![0x42u8; 600];
        let mut bad = data.clone();
        bad[301] ^= 1;
        let mut m = mapping(&data, false);
        assert_eq!(feed(&mut m, &bad, 0, 300), CsumStep::Pending);
        assert_eq!(feed(&mut m, &bad, 300, 600), CsumStep::Failed);
        // A segment beyond a hole is summed; the hole's repair completes the sum.
        let mut m = mapping(&data, false);
        assert_eq!(feed(&mut m, &data, 300, 600), CsumStep::Pending);
        assert_eq!(feed(&mut m, &data, 0, 300), CsumStep::Verified);
        // Corruption beyond a hole is found too.
        let mut m = mapping(&data, false);
        assert_eq!(feed(&mut m, &bad, 301, 600), CsumStep::Pending);
        assert_eq!(feed(&mut m, &bad, 0, 301), CsumStep::Failed);
        // More separate ranges than tracked: not verifiable.
        let mut m = mapping(&data, false);
        for i in 0..SUM_RANGES {
            assert_eq!(
                feed(&mut m, &data, 100 * i + 50, 100 * i + 60),
                CsumStep::Pending
            );
        }
        assert_eq!(feed(&mut m, &data, 590, 600), CsumStep::Unverifiable);
        assert_eq!(feed(&mut m, &data, 0, 600), CsumStep::Pending);
        // No checksum (not negotiated): settled from the start.
        let m = ClientMapping::new(DataSeq(DSN), 7, 600, false, None);
        assert!(m.checked);
    }

    proptest::proptest! {
        /// Any split of a mapping into segments verifies; one changed byte anywhere
        /// fails; garbage offsets and lengths never panic.
        #[test]
        fn checksum_by_segments(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..3000),
            cuts in proptest::collection::vec(0usize..3000, 0..8),
            flip in 0usize..3000,
            rot in 0usize..8,
            junk in proptest::collection::vec(
                (0u32..70_000, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)),
                0..6,
            ),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % data.len()).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            cuts.dedup();
            for corrupt in [false, true] {
                let mut d = data.clone();
                if corrupt {
                    d[flip % data.len()] ^= 0x80;
                }
                let mut m = mapping(&data, false);
                let mut last = CsumStep::Pending;
                for w in cuts.windows(2) {
                    last = feed(&mut m, &d, w[0], w[1]);
                }
                let want = if corrupt { CsumStep::Failed } else { CsumStep::Verified };
                proptest::prop_assert_eq!(last, want);
                // The same segments in another order, with repeats (reordering
                // and retransmission): settled once, the same way, or left
                // unverified when the holes outnumber the tracked ranges.
                let segs: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
                let mut order: Vec<usize> = (0..segs.len()).collect();
                order.reverse();
                order.rotate_left(rot % segs.len().max(1));
                order.extend(0..segs.len().min(2));
                let mut m = mapping(&data, false);
                let mut settled = Vec::new();
                for &i in &order {
                    let (a, b) = segs[i];
                    let r = feed(&mut m, &d, a, b);
                    if r != CsumStep::Pending {
                        settled.push(r);
                    }
                }
                proptest::prop_assert_eq!(settled.len(), 1);
                proptest::prop_assert!(
                    settled[0] == want || settled[0] == CsumStep::Unverifiable,
                    "{:?}", settled
                );
            }
            let mut m = mapping(&data, true);
            for (off, p) in &junk {
                let _ = m.add_checksum(*off, p, Checksum::new().add_bytes(p));
            }
        }
    }

    #[test]
    fn seed_hold_packs_the_hold_and_the_settled_flag_in_a_byte() {
        let s = SeedHold::new(60_000, true);
        assert_eq!((s.us(), s.settled(), s.is_some()), (60_000, true, true));
        let s = SeedHold::new(30_999, false);
        assert_eq!((s.us(), s.settled()), (30_000, false));
        // At most 127 units of 2 ms; under one unit is no hold at all.
        assert_eq!(SeedHold::new(1_000_000, true).us(), 254_000);
        assert!(!SeedHold::new(1_999, true).is_some());
        assert!(!SeedHold::new(1_999, true).settled());
    }

    #[test]
    fn conn_size() {
        let n = core::mem::size_of::<Option<Conn<crate::packet::VecPacket>>>();
        eprintln!("Option<Conn<VecPacket>>: {n} B");
        // 360 B until session 5; +16 B for the DSS-checksum ranges of the
        // mapping (`ClientMapping::summed`); -16 B in session 9 (`FinAt`); +8 B
        // in session 14 (`c_wnd_edge`: the client's data-level right edge). The
        // idle-connection target is 512 B per connection with the table's
        // overhead (docs/perf.md).
        assert!(n <= 368, "{n}");
    }
}
