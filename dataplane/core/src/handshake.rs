//! The 0-RTT Convert handshake (RFC 8803 §4.2, §6) on the converter:
//!
//! client SYN (+MP_CAPABLE) carrying a Convert request → checks → downstream SYN at
//! once → server SYN-ACK → our SYN-ACK to the client (acknowledging the whole SYN
//! payload, brief §6.7) → client third ACK (its key) → the Convert reply as the
//! first DSS-mapped bytes with the client's DATA_ACK (field notes §2).
//!
//! Failures answer with SYN-ACK + Error TLV in its payload, then a graceful close
//! (RFC 8803 §6.2.8: never an immediate RST). That SYN-ACK carries no MP_CAPABLE:
//! the connection ends anyway, and a plain SYN-ACK may carry data (brief §2.10).

use core::net::IpAddr;

use hac_wire::convert::{ConnectRequest, ConvertError, ErrorCode, ErrorValue, MessageBuilder};
use hac_wire::crypto::key_material;
use hac_wire::mptcp::{MpCapableForm, MptcpOption};
use hac_wire::seq::{DataSeq, SeqNum};
use hac_wire::tcp::Flags;

use crate::conn::{Conn, Deadline, Handshake, Leg, REPLY_INLINE, Sock, State};
use crate::drop::DropReason;
use crate::drop::FailReason;
use crate::engine::{Action, Engine, Port, TICK_US, Tx};
use crate::packet::PacketBuf;
use crate::pool::PoolError;
use crate::segment::Segment;
use crate::time::Instant;

/// TCP option kinds we accept in an Extended Connect (RFC 8803 §6.2.5 / §7):
/// SACK-permitted, timestamps, MPTCP. Kinds 0, 1, 2, 3, 5 are ignored by the parser.
const SUPPORTED_CONNECT_KINDS: [u8; 3] = [4, 8, 30];

/// What the Supported TCP Extensions TLV announces (RFC 8803 §6.2.4, §7.5: a
/// converter offering MPTCP conversion MUST list 30).
const SUPPORTED_EXTENSIONS: [u8; 3] = [4, 8, 30];

/// Bytes of MPTCP options the engine adds to a server segment toward the client: a
/// DSS with 64-bit DATA_ACK and DSN, SSN, length (26, NOP-padded to 28).
pub(crate) const DSS_ROOM: u16 = 28;

/// A success reply built on the stack.
pub(crate) struct ReplyBuf {
    buf: [u8; 128],
    len: usize,
}

impl ReplyBuf {
    fn bare() -> Self {
        let mut buf = [0u8; 128];
        buf[..4].copy_from_slice(&[1, 1, 0x22, 0x63]);
        ReplyBuf { buf, len: 4 }
    }
}

impl core::ops::Deref for ReplyBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A Convert reply that ends the connection.
enum Refusal {
    /// An Error TLV (RFC 8803 §6.2.8).
    Error(ErrorCode, u8),
    /// Malformed / Unsupported Message with the echo of the offending message.
    Echo(ErrorCode),
    /// Unsupported TCP Option with the offending kinds.
    Options([u8; 8], usize),
    /// Info-only request: Supported TCP Extensions, then close (RFC 8803 §6.2.2).
    InfoOnly,
}

impl<P: PacketBuf> Engine<P> {
    /// A SYN from the access side.
    pub(crate) fn client_syn(
        &mut self,
        now: Instant,
        seg: &Segment,
        pkt: &mut P,
        existing: Option<(u32, usize)>,
    ) -> Action {
        if let Some((id, k)) = existing
            && k > 0
        {
            // A retransmitted MP_JOIN SYN: our SYN-ACK again (RFC 8684 §3.2).
            let pending = self.conn(id).and_then(|c| c.mp.as_ref()).is_some_and(|m| {
                m.paths[k].state == crate::multipath::PathState::JoinPending
                    && m.paths[k].leg.c_isn == seg.seq
            });
            if pending {
                self.queue(id, Tx::JoinSynAck(k as u8));
                self.counters.drop(DropReason::SynRetransmit);
                return Action::Consumed;
            }
            return Action::Drop(DropReason::NoBinding);
        }
        let existing = existing.map(|(id, _)| id);
        if let Some(id) = existing {
            let Some(c) = self.conn(id) else {
                return Action::Drop(DropReason::NoBinding);
            };
            if c.leg.c_isn == seg.seq {
                // A retransmitted SYN (Linux resends it without the data): only now
                // is the downstream SYN retransmitted (RFC 8803 §9.3, no amplification).
                let held = c.hs.as_ref().is_some_and(|h| h.synack_due.is_some());
                let tx = match c.state {
                    State::SynSent => Some(Tx::ServerSyn),
                    State::SynAckSent | State::ReplyClose => Some(Tx::ClientSynAck),
                    _ => None,
                };
                if held {
                    // A held SYN-ACK goes now (the client's SYN timer is ahead of
                    // the hold only if the first SYN-ACK would have been lost).
                    self.release_synack(id, now);
                } else if let Some(tx) = tx {
                    self.queue(id, tx);
                }
                self.counters.drop(DropReason::SynRetransmit);
                return Action::Consumed;
            }
            if matches!(
                c.state,
                State::TimeWait | State::ClientGone | State::ReplyClose
            ) {
                // A new connection reusing the 4-tuple (RFC 5382 REQ-5: closing state).
                self.remove(id, now);
            } else {
                return Action::Drop(DropReason::NoBinding);
            }
        }
        if !self.is_join_target(seg.dst, seg.dport) {
            return Action::Drop(DropReason::NoBinding);
        }
        let mut mp_capable = None;
        let mut join = None;
        for o in seg.mptcp(pkt.data()) {
            match o {
                Ok(MptcpOption::MpCapable(c)) if c.form == MpCapableForm::Syn => {
                    mp_capable = Some(c);
                }
                // An additional subflow (RFC 8684 §3.2).
                Ok(MptcpOption::MpJoin(j)) => join = Some(j),
                Ok(_) => {}
                Err(r) => return Action::Drop(r),
            }
        }
        if let Some(j) = join {
            return self.join_syn(now, seg, pkt, j);
        }
        // An announced port takes joins only.
        if seg.dport != self.cfg.service_port {
            return Action::Drop(DropReason::NoBinding);
        }
        let data = pkt.data();
        // RFC 8684 §3.1: version 1 with a crypto proposal we support (H); otherwise
        // answer without MP_CAPABLE (plain TCP).
        let mptcp = mp_capable.filter(|c| c.version >= 1 && c.flags.is_supported());
        let payload = seg.payload(data);
        if payload.is_empty() {
            // RFC 8803 §6: SYNs to the converter port without Convert TLVs are ignored.
            return Action::Drop(DropReason::NoConvertMessage);
        }
        if self.pending_per_client.get(&seg.src).copied().unwrap_or(0)
            >= self.cfg.max_pending_per_client
        {
            // RFC 8803 §9.3: limit pending requests per client.
            return Action::Drop(DropReason::PendingLimit);
        }
        let mut conn = self.new_conn(
            now,
            seg,
            mptcp.is_some(),
            mptcp.is_some_and(|c| c.flags.checksum_required()),
        );
        let syn_len = payload.len() as u32;
        conn.leg.syn_len = syn_len;
        let req = match ConnectRequest::parse(payload) {
            Ok(r) => r,
            Err(ConvertError::TotalLengthZero) => {
                // RFC 8803 §6.1: Total Length 0 resets the connection.
                return self.reset_syn(seg, pkt);
            }
            Err(e) => {
                let r = match e.error_code() {
                    Some(c @ (ErrorCode::MalformedMessage | ErrorCode::UnsupportedMessage)) => {
                        Refusal::Echo(c)
                    }
                    Some(ErrorCode::UnsupportedVersion) => {
                        Refusal::Error(ErrorCode::UnsupportedVersion, 1)
                    }
                    Some(c) => Refusal::Error(c, 0),
                    None => return self.reset_syn(seg, pkt),
                };
                return self.refuse(now, conn, r, pkt, seg);
            }
        };
        let (req, app_off) = req;
        let Some(connect) = req.connect else {
            let r = if req.info {
                Refusal::InfoOnly
            } else {
                Refusal::Echo(ErrorCode::MalformedMessage)
            };
            return self.refuse(now, conn, r, pkt, seg);
        };
        // RFC 8803 §6.2.5: every listed option must be supported, else 33.
        let mut kinds = [0u8; 8];
        let mut nk = 0;
        for o in connect.options() {
            let k = o.kind;
            if matches!(k, 0 | 1 | 2 | 3 | 5) || SUPPORTED_CONNECT_KINDS.contains(&k) {
                continue;
            }
            if nk < kinds.len() && !kinds[..nk].contains(&k) {
                kinds[nk] = k;
                nk += 1;
            }
        }
        if nk > 0 {
            return self.refuse(now, conn, Refusal::Options(kinds, nk), pkt, seg);
        }
        let server = connect.remote();
        if server.port() == 0 || server.ip().is_unspecified() {
            return self.refuse(
                now,
                conn,
                Refusal::Echo(ErrorCode::MalformedMessage),
                pkt,
                seg,
            );
        }
        if let Some(code) = self.destination_policy(server.ip()) {
            return self.refuse(now, conn, Refusal::Error(code, 0), pkt, seg);
        }
        // The operator's policy: who, where to, how much (policy.rs).
        let admission = match self.admit(now, seg.src, server.ip()) {
            Ok(a) => a,
            Err(code) => return self.refuse(now, conn, Refusal::Error(code, 0), pkt, seg),
        };
        let app_len = payload.len() - app_off;
        if app_len > self.cfg.max_syn_app_data {
            return self.refuse(
                now,
                conn,
                Refusal::Error(ErrorCode::ResourceExceeded, 0),
                pkt,
                seg,
            );
        }
        // Paired pooling (RFC 6888 REQ-2), ports from this shard's blocks.
        let pool = match self.pool.allocate(admission.pairing, server.is_ipv6(), now) {
            Ok((a, p)) => Sock::new(a, p),
            // RFC 8803 §6.2.8: 64 Resource Exceeded; existing bindings are never
            // evicted (RFC 6888 REQ-11).
            Err(PoolError::Exhausted) => {
                return self.refuse(
                    now,
                    conn,
                    Refusal::Error(ErrorCode::ResourceExceeded, 0),
                    pkt,
                    seg,
                );
            }
            Err(PoolError::NoAddress) => {
                return self.refuse(
                    now,
                    conn,
                    Refusal::Error(ErrorCode::NetworkFailure, 0),
                    pkt,
                    seg,
                );
            }
        };
        conn.server = Sock::from(server);
        conn.pool = pool;
        conn.scheduler = admission.scheduler.unwrap_or(self.cfg.scheduler);
        conn.app_len = app_len as u32;
        {
            let hs = conn.hs_mut(now);
            hs.app_off = seg.payload_off() + app_off;
            if app_len > 0 {
                hs.held_syn = Some(pkt.share());
            }
            // Reply: a bare header, or Extended TCP Header for an Extended Connect
            // (filled in when the server answers), plus Supported TCP Extensions if
            // asked.
            hs.reply_info = req.info;
            hs.reply_extended = connect.is_extended();
            // RFC 8803 §6.2.5: an option listed without value is put in our SYN
            // with a value of our own; for MPTCP that is an MP_CAPABLE SYN.
            hs.server_mptcp = connect.options().any(|o| o.kind == 30);
        }
        let reply = self.ok_reply(req.info, false, &[]);
        conn.set_reply(&reply, now);
        let Some(id) = self.insert(conn, now) else {
            self.pool.release(pool.ip(), pool.port(), now);
            return Action::Drop(DropReason::TableFull);
        };
        *self.pending_per_client.entry(seg.src).or_insert(0) += 1;
        if let Some(key) = admission.charge {
            self.policy_state.charge(id, key);
        }
        self.counters.convert_requests += 1;
        self.queue(id, Tx::ServerSyn);
        Action::Consumed
    }

    /// A fresh connection from a client SYN (client-leg fields only).
    fn new_conn(&mut self, now: Instant, seg: &Segment, mptcp: bool, csum: bool) -> Conn<P> {
        let (local_key, km) = if mptcp {
            self.grind_key()
        } else {
            (0, key_material(0))
        };
        let e_isn = SeqNum(self.random() as u32);
        let p_isn = SeqNum(self.random() as u32);
        let ts_offset = self.random() as u32;
        let o = &seg.opts;
        Conn {
            generation: 0,
            state: State::SynSent,
            mptcp,
            fallback: false,
            scheduler: self.cfg.scheduler,
            leg: Leg::from_syn(seg, e_isn, false, 0),
            c_offered_ts: o.timestamps.is_some(),
            c_offered_ws: o.window_scale.is_some(),
            local_key,
            local_idsn: if mptcp {
                km.idsn
            } else {
                DataSeq(u64::from(e_isn.0))
            },
            token: km.token,
            client_key: 0,
            client_idsn: DataSeq(0),
            csum: mptcp && (csum || self.cfg.dss_checksum),
            c_dsn_nxt: DataSeq(0),
            c_data_ack: DataSeq(0),
            c_win: 65535,
            c_wnd_edge: SeqNum(0),
            mp: None,
            pool: Sock::UNSPECIFIED,
            server: Sock::UNSPECIFIED,
            p_isn,
            s_isn: SeqNum(0),
            s_ws: 0,
            p_ws: 0,
            s_mss: 536,
            s_sack: false,
            s_ts_recent: 0,
            s_ack: p_isn + 1,
            s_win: 65535,
            p_ack_sent: SeqNum(0),
            p_snd_nxt: p_isn + 1,
            p_win_sent: 0,
            s_rtt_us: 0,
            app_len: 0,
            hs: Some(Box::new(Handshake::new(now))),
            reply_len: 0,
            reply_inline: [0; REPLY_INLINE],
            reply_acked: false,
            c_fin: crate::conn::FinAt::NONE,
            s_fin: crate::conn::FinAt::NONE,
            last_activity: now,
            wheel_at: Deadline::NONE,
            rto_at: Deadline::NONE,
            rto_shift: 0,
            retries: 0,
            ts_offset,
            seed: crate::conn::SeedHold::default(),
        }
    }

    /// Draws MPTCP keys until the token maps to this shard and is unique here
    /// (RFC 8684 §3.1 SHOULD; `owner_of` relies on `token mod shards`).
    fn grind_key(&mut self) -> (u64, hac_wire::crypto::KeyMaterial) {
        loop {
            let key = self.random();
            let km = key_material(key);
            if (km.token % u32::from(self.shards)) as u16 == self.shard
                && !self.token_in_use(km.token)
            {
                return (key, km);
            }
        }
    }

    /// Destination policy (RFC 8803 §6.2.5, §9.2; brief §1.7): our own addresses
    /// (loops) and, if configured, private ranges are Not Authorized.
    fn destination_policy(&self, ip: IpAddr) -> Option<ErrorCode> {
        if self.cfg.service_addrs.contains(&ip) || self.cfg.pool.contains(ip) {
            return Some(ErrorCode::NotAuthorized);
        }
        if self.cfg.deny_private_destinations {
            let private = match ip {
                IpAddr::V4(a) => {
                    a.is_private()
                        || a.is_link_local()
                        || (a.octets()[0] == 100 && a.octets()[1] & 0xc0 == 64)
                }
                IpAddr::V6(a) => a.is_unique_local() || a.is_unicast_link_local(),
            };
            if private {
                return Some(ErrorCode::NotAuthorized);
            }
        }
        None
    }

    /// The success reply: bare header, plus Supported TCP Extensions when the
    /// client sent Info, plus Extended TCP Header (server's SYN-ACK options) for an
    /// Extended Connect (RFC 8803 §6.2.2, §6.2.6).
    pub(crate) fn ok_reply(&self, info: bool, extended: bool, server_opts: &[u8]) -> ReplyBuf {
        let mut buf = [0u8; 128];
        let n = {
            let Ok(mut b) = MessageBuilder::new(&mut buf) else {
                return ReplyBuf::bare();
            };
            if info {
                let _ = b.supported_tcp_extensions(&SUPPORTED_EXTENSIONS);
            }
            if extended {
                let _ = b.extended_tcp_header(server_opts);
            }
            b.finish().unwrap_or(0)
        };
        if n == 0 {
            return ReplyBuf::bare();
        }
        ReplyBuf { buf, len: n }
    }

    /// Answers a Convert request with a reply that ends the connection; an Error
    /// reply over `EngineConfig::error_replies_per_second` is a RST instead (RFC
    /// 8803 §6.2.8: errors SHOULD be rate-limited; the RST leaves no state).
    fn refuse(
        &mut self,
        now: Instant,
        mut conn: Conn<P>,
        r: Refusal,
        pkt: &mut P,
        seg: &Segment,
    ) -> Action {
        let rate = u64::from(self.cfg.error_replies_per_second);
        if !matches!(r, Refusal::InfoOnly) && rate > 0 && !self.error_replies.take(now, rate) {
            self.counters.error_replies_limited += 1;
            return self.reset_syn(seg, pkt);
        }
        let payload = seg.payload(pkt.data());
        let mut buf = [0u8; 1020];
        let n = {
            let Ok(mut b) = MessageBuilder::new(&mut buf) else {
                return Action::Drop(DropReason::Malformed);
            };
            let res = match r {
                Refusal::Error(code, v) => match code {
                    ErrorCode::UnsupportedVersion => b.error_raw(code.to_u8(), &[1]).map(|_| 0),
                    ErrorCode::ResourceExceeded => {
                        b.error(&ErrorValue::ResourceExceeded { retry_delay: v })
                    }
                    ErrorCode::NetworkFailure => {
                        b.error(&ErrorValue::NetworkFailure { retry_delay: v })
                    }
                    _ => b.error_raw(code.to_u8(), &[0]).map(|_| 0),
                },
                Refusal::Echo(code) => {
                    let echo = &payload[..payload.len().min(1000)];
                    if code == ErrorCode::UnsupportedMessage {
                        b.error(&ErrorValue::UnsupportedMessage { echo })
                    } else {
                        b.error(&ErrorValue::MalformedMessage { echo })
                    }
                }
                Refusal::Options(k, n) => b
                    .error_raw(ErrorCode::UnsupportedTcpOption.to_u8(), &k[..n])
                    .map(|_| 0),
                Refusal::InfoOnly => b
                    .supported_tcp_extensions(&SUPPORTED_EXTENSIONS)
                    .map(|()| 0),
            };
            if res.is_err() {
                return Action::Drop(DropReason::Malformed);
            }
            b.finish().unwrap_or(4)
        };
        let code = match r {
            Refusal::Error(c, _) | Refusal::Echo(c) => Some(c),
            Refusal::Options(..) => Some(ErrorCode::UnsupportedTcpOption),
            Refusal::InfoOnly => None,
        };
        if let Some(c) = code {
            self.counters.convert_error(c.to_u8(), FailReason::Refused);
        }
        conn.set_reply(&buf[..n], now);
        conn.state = State::ReplyClose;
        conn.mptcp = false;
        conn.csum = false;
        // A plain SYN-ACK: the client leg's options need no server.
        conn.leg.ts = conn.c_offered_ts;
        conn.s_mss = self.mss_for(conn.leg.client.ip());
        conn.local_idsn = DataSeq(u64::from(conn.leg.e_isn.0));
        conn.c_data_ack = conn.local_idsn;
        match self.insert(conn, now) {
            Some(id) => {
                self.queue(id, Tx::ClientSynAck);
                self.arm_rto(id, now);
                Action::Consumed
            }
            None => Action::Drop(DropReason::TableFull),
        }
    }

    /// RST in answer to a SYN, written in place (RFC 9293 §3.10.7.1 form).
    fn reset_syn(&mut self, seg: &Segment, pkt: &mut P) -> Action {
        self.reset_syn_with(seg, pkt, false)
    }

    /// RST in answer to a SYN, optionally carrying MP_TCPRST "administratively
    /// prohibited" (RFC 8684 §3.6).
    fn reset_syn_with(&mut self, seg: &Segment, pkt: &mut P, tcprst: bool) -> Action {
        let reason = tcprst.then_some(hac_wire::mptcp::TcpRstReason::AdministrativelyProhibited);
        self.reset_with(seg, pkt, reason)
    }

    /// RST + MP_TCPRST with `reason` in answer to a (join) SYN (RFC 8684 §3.2, §3.6;
    /// T = 0: the client should not retry).
    pub(crate) fn reset_syn_reason(
        &mut self,
        seg: &Segment,
        pkt: &mut P,
        reason: hac_wire::mptcp::TcpRstReason,
    ) -> Action {
        self.reset_with(seg, pkt, Some(reason))
    }

    /// RST + MP_TCPRST answering a non-SYN segment (a join's bad third ACK): at the
    /// sequence it acknowledges (RFC 9293 §3.10.7.1).
    pub(crate) fn reset_segment(
        &mut self,
        seg: &Segment,
        pkt: &mut P,
        reason: hac_wire::mptcp::TcpRstReason,
    ) -> Action {
        let mut opt = [0u8; 4];
        let n = hac_wire::mptcp::MpTcpRstRepr {
            flags: hac_wire::mptcp::MpTcpRstFlags(0),
            reason,
        }
        .emit(&mut opt)
        .unwrap_or(0);
        let out = crate::emit::TcpOut {
            src: seg.dst_sock(),
            dst: seg.src_sock(),
            seq: seg.ack,
            ack: SeqNum(0),
            flags: Flags::RST,
            window: 0,
            options: &opt[..n],
        };
        if self.write_in_place(pkt, seg, &out, 0, hac_wire::checksum::Checksum::new()) {
            Action::Forward(Port::Access)
        } else {
            Action::Drop(DropReason::NoRoom)
        }
    }

    fn reset_with(
        &mut self,
        seg: &Segment,
        pkt: &mut P,
        reason: Option<hac_wire::mptcp::TcpRstReason>,
    ) -> Action {
        let ack = seg.seq + 1 + seg.payload_len() as u32;
        let mut opt = [0u8; 4];
        let n = match reason {
            Some(reason) => hac_wire::mptcp::MpTcpRstRepr {
                flags: hac_wire::mptcp::MpTcpRstFlags(0),
                reason,
            }
            .emit(&mut opt)
            .unwrap_or(0),
            None => 0,
        };
        let out = crate::emit::TcpOut {
            src: seg.dst_sock(),
            dst: seg.src_sock(),
            seq: SeqNum(0),
            ack,
            flags: Flags::RST | Flags::ACK,
            window: 0,
            options: &opt[..n],
        };
        if self.write_in_place(pkt, seg, &out, 0, hac_wire::checksum::Checksum::new()) {
            Action::Forward(Port::Access)
        } else {
            Action::Drop(DropReason::NoRoom)
        }
    }

    /// The server's answer to our SYN.
    pub(crate) fn server_syn_answer(
        &mut self,
        now: Instant,
        id: u32,
        seg: &Segment,
        pkt: &mut P,
    ) -> Action {
        let Some(c) = self.conn(id) else {
            return Action::Drop(DropReason::NoBindingCore);
        };
        if !seg.flags.ack() || seg.ack != c.p_isn + 1 {
            return Action::Drop(DropReason::OutOfWindow);
        }
        if seg.flags.rst() {
            // RFC 8803 §6.2.8: 96 Connection Reset.
            return self.server_failed(now, id, ErrorCode::ConnectionReset, 0);
        }
        if !seg.flags.syn() {
            return Action::Drop(DropReason::HandshakeIncomplete);
        }
        let o = seg.opts;
        let (info, extended);
        {
            let c = self.conn_mut(id).expect("checked above");
            c.s_isn = seg.seq;
            // Our SYN left when the client's Convert SYN arrived (0-RTT).
            if let Some(h) = c.hs.as_ref() {
                c.s_rtt_us = now
                    .0
                    .saturating_sub(h.created.0)
                    .clamp(1, u64::from(u32::MAX)) as u32;
            }
            c.s_mss = o.mss.unwrap_or(536);
            c.s_sack = o.sack_permitted && c.leg.c_sack;
            // RFC 7323: timestamps on both legs or neither (the engine owns both).
            c.leg.ts = o.timestamps.is_some() && c.c_offered_ts;
            if let Some((tsval, _)) = o.timestamps {
                c.s_ts_recent = tsval;
            }
            // Window scale: scaling on the server leg iff both SYNs carried it.
            if let (Some(ws), true) = (o.window_scale, c.c_offered_ws) {
                c.s_ws = ws.min(14);
                c.p_ws = c.leg.c_ws;
                c.leg.e_ws = c.s_ws;
            } else {
                c.s_ws = 0;
                c.p_ws = 0;
                c.leg.e_ws = 0;
                if !c.c_offered_ws {
                    c.leg.c_ws = 0;
                }
            }
            // RFC 7323 §2.2: the window of a segment with SYN set is never
            // scaled. (Scaled, the SYN-ACK's 65,160 read as 64 MB toward a
            // client with shift 10: Linux MPTCP keeps the right edge of the
            // largest window it saw, `msk->wnd_end`, and then sent far beyond
            // what the server could take.)
            c.s_win = u32::from(seg.window);
            c.s_ack = seg.ack;
            c.state = State::SynAckSent;
            (info, extended) =
                c.hs.as_ref()
                    .map_or((false, false), |h| (h.reply_info, h.reply_extended));
        }
        if extended {
            // RFC 8803 §6.2.6: the server's SYN-ACK options, for an Extended Connect.
            let reply = self.ok_reply(info, true, seg.options(pkt.data()));
            if let Some(c) = self.conn_mut(id) {
                c.set_reply(&reply, now);
            }
        }
        let client_ip = self.conn(id).map(|c| c.leg.client.ip());
        if let Some(ip) = client_ip {
            self.pending_done(ip);
        }
        // Our ACK of the server's SYN-ACK (with the SYN's application bytes) waits for
        // the client's handshake ACK: the server's handshake RTT sample then spans the
        // access path, as on a direct connection. Acknowledging at once would show the
        // server a sub-millisecond RTT — BBR keeps it as min_rtt and caps its window
        // far below the access path's bandwidth-delay product. The request still
        // reaches the server half a round trip before the Convert reply reaches the
        // client, so 0-RTT holds (first response byte within 2 RTT of the SYN).
        // The handshake hold (`EngineConfig::handshake_hold`): for a subscriber
        // whose paths are far apart, the SYN-ACK leaves after the ACK hold its
        // connection starts with, so the server's handshake RTT is the held
        // round trip (docs/multipath.md, "Handshake hold").
        let hold = self.handshake_hold_us(id, now);
        if hold > 0 {
            // The engine's timers fire on 1 ms ticks, rounded up: aimed half a
            // tick early, the SYN-ACK leaves within 0.5 ms of the hold.
            let due = now + core::time::Duration::from_micros(hold - hold.min(TICK_US / 2));
            if let Some(h) = self.conn_mut(id).and_then(|c| c.hs.as_mut()) {
                h.synack_due = Some(due);
                h.synack_held = true;
                self.counters.handshake_holds += 1;
                self.arm_at(id, due);
                return Action::Consumed;
            }
        }
        self.queue(id, Tx::ClientSynAck);
        self.arm_rto(id, now);
        Action::Consumed
    }

    /// How long the SYN-ACK of connection `id` is held (0: not held): the
    /// uncapped ACK hold of its subscriber's remembered paths, for an MPTCP
    /// client, with the handshake hold configured.
    fn handshake_hold_us(&self, id: u32, now: Instant) -> u64 {
        if !self.cfg.handshake_hold {
            return 0;
        }
        let Some(c) = self.conn(id).filter(|c| c.mptcp) else {
            return 0;
        };
        self.path_memory
            .recall(c.leg.client.ip, now)
            .map_or(0, |p| p.handshake_hold_us())
    }

    /// The held SYN-ACK of connection `id` leaves now (its time came, or the
    /// client's SYN came again).
    pub(crate) fn release_synack(&mut self, id: u32, now: Instant) {
        let Some(c) = self.conn_mut(id) else { return };
        let waiting = c.state == State::SynAckSent;
        let Some(h) = c.hs.as_mut() else { return };
        if h.synack_due.take().is_some() && waiting {
            self.queue(id, Tx::ClientSynAck);
            self.arm_rto(id, now);
        }
    }

    /// The server refused or never answered: answer the client with an Error.
    pub(crate) fn server_failed(
        &mut self,
        now: Instant,
        id: u32,
        code: ErrorCode,
        value: u8,
    ) -> Action {
        let Some((pool, client, ts)) = self
            .conn(id)
            .map(|c| (c.pool, c.leg.client, c.c_offered_ts))
        else {
            return Action::Consumed;
        };
        let mut buf = [0u8; 16];
        let n = {
            let Ok(mut b) = MessageBuilder::new(&mut buf) else {
                return Action::Consumed;
            };
            let _ = b.error_raw(code.to_u8(), &[value]);
            b.finish().unwrap_or(4)
        };
        self.unbind_server(id);
        self.pool.release(pool.ip(), pool.port(), now);
        self.pending_done(client.ip());
        let why = match code {
            ErrorCode::ConnectionReset => FailReason::ServerReset,
            ErrorCode::DestinationUnreachable => FailReason::ServerUnreachable,
            _ => FailReason::ServerTimeout,
        };
        self.counters.convert_error(code.to_u8(), why);
        let mss = self.mss_for(client.ip());
        let c = self.conn_mut(id).expect("present");
        c.set_reply(&buf[..n], now);
        c.state = State::ReplyClose;
        c.mptcp = false;
        c.csum = false;
        c.leg.ts = ts;
        c.s_mss = mss;
        c.leg.e_ws = 0;
        c.drop_held_syn();
        c.local_idsn = DataSeq(u64::from(c.leg.e_isn.0));
        c.c_data_ack = c.local_idsn;
        self.queue(id, Tx::ClientSynAck);
        self.arm_rto(id, now);
        Action::Consumed
    }

    /// No server answer within `syn_timeout`: SYN-ACK + Error 65 (brief §6.8). The
    /// binding's server side is gone, so a late SYN-ACK is dropped like any unsolicited
    /// inbound packet in address-sharing mode (RFC 8803 §4.4); the server gives up on
    /// its own.
    pub(crate) fn syn_timeout(&mut self, id: u32, now: Instant) {
        let _ = self.server_failed(now, id, ErrorCode::NetworkFailure, 0);
    }

    /// The MSS for a client leg of this family.
    pub(crate) fn mss_for(&self, ip: IpAddr) -> u16 {
        if ip.is_ipv6() {
            self.cfg.mss_v6
        } else {
            self.cfg.mss_v4
        }
    }

    /// The client's third ACK (MPTCP) or first ACK (plain): completes the handshake.
    /// Returns whether the segment should go on to upstream translation.
    pub(crate) fn client_handshake_ack(
        &mut self,
        now: Instant,
        id: u32,
        seg: &Segment,
        pkt: &P,
    ) -> Result<(), DropReason> {
        let data = pkt.data();
        let Some(c) = self.conn(id) else {
            return Err(DropReason::NoBinding);
        };
        if !seg.flags.ack()
            || seg.ack.diff(c.leg.e_isn + 1) < 0
            || seg.ack.diff(c.leg.e_snd_nxt) > 0
        {
            return Err(DropReason::OutOfWindow);
        }
        let mut key = None;
        if c.mptcp {
            for o in seg.mptcp(data) {
                if let Ok(MptcpOption::MpCapable(m)) = o {
                    match m.form {
                        MpCapableForm::Ack {
                            sender_key,
                            receiver_key,
                        }
                        | MpCapableForm::AckData {
                            sender_key,
                            receiver_key,
                            ..
                        } => {
                            if receiver_key != c.local_key {
                                return Err(DropReason::BadMptcpOption);
                            }
                            key = Some(sender_key);
                        }
                        _ => {}
                    }
                }
            }
        }
        let c = self.conn_mut(id).expect("present");
        if c.mptcp {
            match key {
                Some(k) => {
                    let km = key_material(k);
                    c.client_key = k;
                    c.client_idsn = km.idsn;
                    c.c_dsn_nxt = km.idsn + 1;
                }
                None => {
                    // RFC 8684 §3.1: a third packet without MP_CAPABLE falls back.
                    c.fallback = true;
                }
            }
        }
        c.state = State::Established;
        c.c_data_ack = c.local_idsn + 1;
        c.c_wnd_edge = SeqNum((c.c_data_ack + u64::from(c.c_win)).0 as u32);
        self.counters.established += 1;
        if self.conn(id).is_some_and(|c| c.fallback) {
            self.counters.fallbacks += 1;
        }
        let (mptcp, fallback, held) = {
            let c = self.conn(id).expect("present");
            (c.mptcp, c.fallback, c.held_server_len())
        };
        if mptcp && !fallback {
            // Field notes §2: the reply leaves now, with the client's DATA_ACK.
            self.queue(id, Tx::ConvertReply);
            self.arm_rto(id, now);
            self.announce_addresses(id, now);
            // A subscriber whose paths are known to be far apart: the ACK hold
            // starts with the server's first byte (`paths.rs`).
            // After a held SYN-ACK the server's handshake RTT already spans
            // the uncapped hold: no reason left for the capped one (nor for
            // the growth probe that chooses between them).
            let c = self.conn(id).expect("present");
            let (client, held) = (
                c.leg.client.ip,
                c.hs.as_ref().is_some_and(|h| h.synack_held),
            );
            if let Some(p) = self.path_memory.recall(client, now) {
                self.conn_mut(id).expect("present").seed =
                    crate::conn::SeedHold::new(p.seed_hold_us(held), held);
            }
        } else if mptcp && fallback {
            // The reply was not sent yet: send it as plain data.
            self.queue(id, Tx::ConvertReply);
            self.arm_rto(id, now);
        }
        // The deferred ACK of the server's SYN-ACK, with the SYN's application bytes.
        self.queue(id, Tx::ServerAck);
        for _ in 0..held {
            self.queue(id, Tx::HeldServer);
        }
        Ok(())
    }
}

impl<P: PacketBuf> Engine<P> {
    /// The configured announcements that apply to connection `id`: same family as
    /// the connection, not the address and port it was opened to (bit i: entry i).
    pub(crate) fn announcements_for(&self, id: u32) -> u8 {
        let Some(c) = self.conn(id) else { return 0 };
        let svc = c.leg.service;
        let port = self.cfg.service_port;
        self.cfg
            .announce
            .iter()
            .take(crate::config::MAX_ANNOUNCE)
            .enumerate()
            .filter(|(_, a)| {
                a.addr.is_ipv4() == svc.ip.is_ipv4()
                    && !(a.addr == svc.ip && a.port_or(port) == svc.port)
            })
            .fold(0u8, |m, (i, _)| m | 1 << i)
    }

    /// Announces our other addresses once the connection is established (RFC 8684
    /// §3.4.1): one ADD_ADDR each, re-sent at the retransmission timeout until the
    /// client echoes it (at most [`crate::conn::ADD_ADDR_TRIES`] times).
    pub(crate) fn announce_addresses(&mut self, id: u32, now: Instant) {
        if self.cfg.announce.is_empty() {
            return;
        }
        let mask = self.announcements_for(id);
        if mask == 0 {
            return;
        }
        let Some(c) = self.conn_mut(id) else { return };
        let h = c.hs_mut(now);
        h.adv_pending = mask;
        h.adv_tries = 1;
        for i in 0..8u8 {
            if mask & 1 << i != 0 {
                self.queue(id, Tx::AddAddr(i));
                self.counters.add_addr_sent += 1;
            }
        }
        self.arm_rto(id, now);
    }
}
