//! Established translation, single subflow, both directions (docs/translation.md):
//!
//! * upstream (client → server): the DSS mapping places the segment in the client's
//!   data stream; the server-leg sequence is `p_isn + 1 + A + (DSN − IDSN_c − 1)`;
//!   the DATA_ACK becomes the server-leg ACK; MPTCP options are removed.
//! * downstream (server → client): server byte `y` is downstream index
//!   `v = y − s_isn − 1`, subflow sequence `e_isn + 1 + R + v`, DSN
//!   `IDSN_e + 1 + R + v`; each segment gets a DSS with its mapping and the DATA_ACK.
//!
//! Headers are rebuilt (never the payload moved); timestamps are owned per leg.

use crate::conn::{ClientMapping, Conn, CsumStep, Deadline, INFINITE_WAIT, MAX_HELD_SERVER, State};
use crate::drop::DropReason;
use crate::emit::{TcpOut, pad_nop, payload_sum_from_checksum, write_ts};
use crate::engine::{Action, Engine, Port, Tx};
use crate::multipath::PathState;
use crate::packet::PacketBuf;
use crate::segment::Segment;
use crate::time::Instant;
use hac_wire::checksum::Checksum;
use hac_wire::mptcp::{DssRepr, MpCapableForm, MpFastcloseRepr, MptcpOption};
use hac_wire::seq::{DataSeq, SeqNum};
use hac_wire::tcp::Flags;

/// Scales a window field from one leg's shift to another's, saturating.
pub(crate) fn rescale(bytes: u32, shift: u8) -> u16 {
    u16::try_from(bytes >> shift.min(14)).unwrap_or(u16::MAX)
}

impl<P: PacketBuf> Engine<P> {
    /// Client → server.
    pub(crate) fn upstream(
        &mut self,
        now: Instant,
        id: u32,
        k: usize,
        seg: &Segment,
        pkt: &mut P,
    ) -> Action {
        let Some(state) = self.conn(id).map(|c| c.state) else {
            return Action::Drop(DropReason::NoBinding);
        };
        let path_state = self
            .conn(id)
            .and_then(|c| c.mp.as_ref())
            .map(|m| m.paths[k].state);
        if k > 0 || path_state == Some(PathState::Removed) {
            match path_state {
                Some(PathState::JoinPending) => {
                    if seg.flags.rst() {
                        self.remove_path(now, id, k);
                        return Action::Consumed;
                    }
                    return self.join_ack(now, id, k, seg, pkt);
                }
                Some(PathState::Removed) => return Action::Drop(DropReason::Closed),
                _ => {}
            }
        }
        if seg.flags.rst() {
            let fastclose = self.is_fastclose(id, seg, pkt);
            let others = self.conn(id).and_then(|c| c.mp.as_ref()).is_some_and(|m| {
                m.paths
                    .iter()
                    .enumerate()
                    .any(|(i, p)| i != k && p.state == PathState::Active)
            });
            if !fastclose && state == State::Established && (k > 0 || others) {
                // One subflow closed (RFC 8684 §3.3.6): its data moves to the others.
                self.remove_path(now, id, k);
                return Action::Consumed;
            }
            return self.client_rst(now, id, seg, pkt);
        }
        let handshake_ack = state == State::SynAckSent;
        match state {
            State::SynSent => return Action::Drop(DropReason::HandshakeIncomplete),
            State::SynAckSent => {
                if let Err(r) = self.client_handshake_ack(now, id, seg, pkt) {
                    return Action::Drop(r);
                }
            }
            State::ReplyClose => return self.reply_close_input(now, id, seg),
            State::ClientGone => return Action::Drop(DropReason::ClientGone),
            State::Established | State::TimeWait => {}
        }
        let data = pkt.data();
        let c = self.conn(id).expect("present");
        let mptcp = c.mptcp && !c.fallback;
        let bonded = c.bonded();
        let leg = *c.legk(k);
        let payload_len = seg.payload_len() as u32;
        let mut prio: Option<bool> = None;
        let mut removed: [Option<u8>; 8] = [None; 8];
        let mut add_addr: Option<(u8, core::net::IpAddr, Option<u16>)> = None;
        let mut echo: Option<(u8, core::net::IpAddr, Option<u16>)> = None;
        let mut mp_fail: Option<DataSeq> = None;
        // ---- MPTCP options (RFC 8684 §3.3) ----
        let mut dss: Option<DssRepr> = None;
        let mut implicit: Option<(u16, Option<u16>)> = None;
        if c.mptcp {
            for o in seg.mptcp(data) {
                match o {
                    Ok(MptcpOption::Dss(d)) => dss = Some(d),
                    Ok(MptcpOption::MpCapable(m)) => {
                        if let MpCapableForm::AckData {
                            data_len, checksum, ..
                        } = m.form
                        {
                            implicit = Some((data_len, checksum));
                        }
                    }
                    Ok(MptcpOption::MpPrio(p)) => prio = Some(p.backup),
                    // RFC 8684 §3.4.1: an announcement (not an echo) is echoed.
                    // Joins to the announced address are the client's to open; we
                    // open no subflows ourselves.
                    Ok(MptcpOption::AddAddr(a)) if !a.is_echo() => {
                        add_addr = Some((a.addr_id, a.addr, a.port));
                    }
                    // The echo of one of our announcements (§3.4.1): it arrived.
                    Ok(MptcpOption::AddAddr(a)) => echo = Some((a.addr_id, a.addr, a.port)),
                    Ok(MptcpOption::MpFail(f)) => mp_fail = Some(f.dsn),
                    Ok(MptcpOption::RemoveAddr(r)) => {
                        for (slot, id) in removed.iter_mut().zip(r.addr_ids.iter()) {
                            *slot = Some(*id);
                        }
                    }
                    Ok(_) => {}
                    Err(r) => return Action::Drop(r),
                }
            }
        }
        let base = leg.c_isn + 1 + leg.syn_len;
        let rel = seg.seq.0.wrapping_sub(base.0).wrapping_add(1); // relative SSN
        // Where this segment's payload sits in the client's data stream (index 0 =
        // first byte after the SYN data).
        let mut u: u64 = u64::from(seg.seq.0.wrapping_sub(base.0));
        let mut fin_out = false;
        let mut c_fin: Option<u64> = None;
        let mut data_ack: Option<DataSeq> = None;
        let mut new_mapping = None;
        let mut csum_step = CsumStep::Pending;
        let mut csum_map: Option<ClientMapping> = None;
        let mut csum_old: Option<(usize, ClientMapping)> = None;
        let mut revived: Option<usize> = None;
        // A mapping seen after our fallback: its `c_ssn_delta`, and the mapping
        // itself (None: the infinite mapping).
        let mut after_fallback: Option<(i64, Option<ClientMapping>)> = None;
        if mptcp {
            // MP_CAPABLE with data: implicit mapping DSN = IDSN + 1, SSN 1 (§3.1).
            if let Some((len, csum)) = implicit {
                new_mapping = Some(ClientMapping::new(
                    c.client_idsn + 1,
                    1,
                    u32::from(len),
                    false,
                    csum.filter(|_| c.csum),
                ));
                data_ack = Some(c.local_idsn + 1);
            }
            if let Some(d) = dss {
                if let Some(a) = d.data_ack {
                    data_ack = Some(a.expand(c.c_data_ack));
                }
                if let Some(m) = d.mapping {
                    if m.data_len == 0 {
                        // Infinite mapping (§3.3.1): the rest is plain TCP, its
                        // bytes where this mapping's DSN ↔ SSN pair puts them.
                        let delta = c.fb_delta(&m, rel);
                        let c = self.conn_mut(id).expect("present");
                        c.fallback = true;
                        c.leg.c_ssn_delta = delta;
                        self.counters.fallbacks += 1;
                        return self.upstream(now, id, k, seg, pkt);
                    }
                    let dsn = m.dsn.expand(c.c_dsn_nxt);
                    if d.data_fin && m.ssn == 0 && m.data_len == 1 {
                        // Data-less DATA_FIN (§3.3.3): SSN 0, length 1. It maps no
                        // subflow bytes, so it counts on this segment only and does
                        // not replace the subflow's current mapping (segments of
                        // that one may still arrive, reordered or retransmitted).
                        c_fin = Some(dsn.diff(c.client_idsn + 1) as u64);
                    } else if !leg
                        .mapping
                        .is_some_and(|o| o.is(dsn, m.ssn, u32::from(m.data_len), d.data_fin))
                    {
                        // A new mapping (the same one again is the common case:
                        // see below).
                        new_mapping = Some(ClientMapping::new(
                            dsn,
                            m.ssn,
                            u32::from(m.data_len),
                            d.data_fin,
                            m.checksum.filter(|_| c.csum),
                        ));
                    }
                }
            }
            // The client repeats a mapping on each segment it covers: the one we
            // have goes on, with its running checksum, and nothing of the state
            // derived from it changes (the common case: no update below).
            if let (Some(nm), Some(old)) = (new_mapping, leg.mapping)
                && nm.same(&old)
            {
                new_mapping = None;
            } else if let Some(nm) = new_mapping
                && let Some(mp) = c.mp.as_ref()
                && let Some(i) = mp.paths[k].csum_old.iter().position(|o| o.same(&nm))
            {
                // An earlier mapping announced again (Linux repeats the mapping
                // on a retransmission): its running checksum resumes.
                new_mapping = Some(mp.paths[k].csum_old[i]);
                revived = Some(i);
            }
            let map = new_mapping.or(leg.mapping);
            if let Some(m) = map {
                let fin_len = u32::from(m.data_fin);
                if payload_len > 0 {
                    let off = rel.wrapping_sub(m.ssn);
                    if off >= m.len - fin_len && !(off == 0 && m.len == fin_len) {
                        // An earlier mapping of this subflow (a retransmission
                        // interleaved with segments of a later one; RFC 8684
                        // §3.3.1 lets a mapping be sent once for many segments).
                        let earlier =
                            c.mp.as_ref()
                                .and_then(|mp| mp.paths[k].map_of(seg.seq, payload_len));
                        let Some(eu) = earlier else {
                            return Action::Drop(DropReason::UnmappedData);
                        };
                        u = eu;
                        // Its checksum, if that mapping is still unsettled.
                        let old = c.mp.as_ref().and_then(|mp| {
                            mp.paths[k].csum_old.iter().position(|o| {
                                let o_off = rel.wrapping_sub(o.ssn);
                                o_off < o.len - u32::from(o.data_fin)
                            })
                        });
                        if let Some(i) = old
                            && c.csum
                            && !c.mp_fail_sent()
                        {
                            let payload = seg.payload(data);
                            let direct = Checksum::new().add_bytes(payload);
                            let norm = |v: u16| if v == 0xffff { 0 } else { v };
                            if norm(direct.fold()) != norm(self.payload_sum(seg, pkt).fold()) {
                                return Action::Drop(DropReason::TcpChecksum);
                            }
                            let mp = c.mp.as_ref().expect("found in it");
                            let mut om = mp.paths[k].csum_old[i];
                            csum_step = om.add_checksum(rel.wrapping_sub(om.ssn), payload, direct);
                            csum_old = Some((i, om));
                        }
                    } else {
                        let dsn = m.dsn + u64::from(off);
                        u = dsn.diff(c.client_idsn + 1) as u64;
                        // RFC 8684 §3.3.1: DSS checksums, when negotiated, are
                        // verified per mapping as its segments pass (one running
                        // sum per subflow, in the mapping itself). Nothing of this
                        // runs without checksums.
                        if c.csum && !m.checked && !c.mp_fail_sent() {
                            let payload = seg.payload(data);
                            let direct = Checksum::new().add_bytes(payload);
                            // A segment whose TCP checksum is wrong is corrupt on
                            // the access link: it must not count against the
                            // mapping (the client retransmits it).
                            let norm = |v: u16| if v == 0xffff { 0 } else { v };
                            if norm(direct.fold()) != norm(self.payload_sum(seg, pkt).fold()) {
                                return Action::Drop(DropReason::TcpChecksum);
                            }
                            let mut mm = m;
                            csum_step = mm.add_checksum(off, payload, direct);
                            csum_map = Some(mm);
                        }
                    }
                    if m.data_fin && off < m.len && off + payload_len == m.len - 1 {
                        c_fin = Some(u + u64::from(payload_len));
                    }
                } else if m.data_fin && rel == m.ssn.wrapping_add(m.len - 1) {
                    c_fin = Some(m.dsn.diff(c.client_idsn + 1) as u64 + u64::from(m.len) - 1);
                }
            } else if payload_len > 0 {
                return Action::Drop(DropReason::UnmappedData);
            }
            if let Some(f) = c_fin {
                fin_out = true;
                if payload_len == 0 {
                    u = f;
                }
            }
        } else {
            // A fallen-back client's bytes (RFC 8684 §3.7) keep the DSN ↔ SSN
            // relation of its last mapping (`c_ssn_delta`), until a mapping it
            // still sends says otherwise: its infinite mapping, or one built
            // before it fell back (a zero-window probe: an old byte at a new SSN).
            // (A fallback at the handshake knows no client key: no DSN to place.)
            let mut delta = leg.c_ssn_delta;
            if c.fallback
                && c.client_key != 0
                && let Some(d) = dss
                && let Some(m) = d.mapping.filter(|m| m.ssn != 0 || m.data_len == 0)
            {
                delta = c.fb_delta(&m, rel);
                let later = (m.data_len > 0).then(|| {
                    let dsn = m.dsn.expand(c.c_dsn_nxt);
                    ClientMapping::new(dsn, m.ssn, u32::from(m.data_len), d.data_fin, None)
                });
                after_fallback = Some((delta, later));
            } else if c.fallback
                && payload_len > 0
                && c.infinite_wait(payload_len)
                && leg.mapping.is_none_or(|m| {
                    rel.wrapping_add(payload_len).wrapping_sub(m.ssn)
                        > m.len - u32::from(m.data_fin)
                })
            {
                // Beyond the last mapping, the infinite one awaited, after what may
                // have been a zero-window probe (one old byte at a new SSN): where
                // these bytes belong is not known. Refused: the client resends
                // them, and its infinite mapping places them.
                let c = self.conn_mut(id).expect("present");
                if let Some(h) = c.hs.as_mut() {
                    h.infinite_wait -= 1;
                    h.infinite_probe = true;
                }
                return Action::Drop(DropReason::UnmappedData);
            }
            u = u64::from(seg.seq.0.wrapping_sub(base.0).wrapping_sub(delta as u32));
            fin_out = seg.flags.fin();
            if fin_out {
                c_fin = Some(u + u64::from(payload_len));
            }
            // Plain leg: the subflow ACK is the data-level ACK of our bytes.
            data_ack = Some(c.local_idsn + u64::from(seg.ack.0.wrapping_sub(leg.e_isn.0)));
        }
        // A client subflow FIN that is not a DATA_FIN closes the subflow only: the
        // engine acknowledges it (RFC 8684 §3.3.3).
        let subflow_fin = mptcp && seg.flags.fin();
        // ---- state updates ----
        // A DATA_ACK may only acknowledge what we sent (+1 for a DATA_FIN).
        let sent_max = match &c.mp {
            Some(m) if bonded => c.e_dsn(m.fwd_end) + 1,
            _ => c.local_idsn + u64::from(c.leg.e_snd_nxt.0.wrapping_sub(c.leg.e_isn.0)) + 1,
        };
        let client_idsn = c.client_idsn;
        let c = self.conn_mut(id).expect("present");
        if let Some((delta, later)) = after_fallback {
            c.legk_mut(k).c_ssn_delta = delta;
            match later {
                // A later mapping (sent before the client fell back): the bytes
                // it covers are placed even where their segments carry no DSS.
                Some(m) => {
                    let end = m.dsn + u64::from(m.len);
                    if end.diff(c.c_dsn_nxt) > 0 {
                        c.c_dsn_nxt = end;
                        c.legk_mut(k).mapping = Some(m);
                    }
                }
                None => {
                    if let Some(h) = c.hs.as_mut() {
                        h.infinite_wait = 0;
                    }
                }
            }
        }
        let mut replaced_unsettled = false;
        if let Some((i, om)) = csum_old
            && let Some(mp) = c.mp.as_mut()
        {
            let q = &mut mp.paths[k].csum_old;
            if om.checked {
                q.remove(i);
            } else {
                q[i] = om;
            }
        }
        if let Some(i) = revived
            && let Some(mp) = c.mp.as_mut()
        {
            mp.paths[k].csum_old.remove(i);
        }
        if let Some(m) = new_mapping {
            let l = c.legk_mut(k);
            // A mapping replaced before its checksum settled (a hole in it still
            // open when the next one starts): its repair will come as a segment
            // of an earlier mapping, summed in `csum_old`. The oldest kept there
            // is given up when more wait; without the bonded state, this one.
            let unsettled = l.mapping.filter(|old| !old.checked && !old.same(&m));
            l.mapping = Some(m);
            if let Some(old) = unsettled {
                match c.mp.as_mut() {
                    Some(mp) => {
                        let q = &mut mp.paths[k].csum_old;
                        if q.len() >= crate::multipath::CSUM_OLD {
                            q.pop_front();
                            replaced_unsettled = true;
                        }
                        q.push_back(old);
                    }
                    None => replaced_unsettled = true,
                }
            }
            let l = c.legk_mut(k);
            l.c_ssn_delta = i64::from(m.ssn) - m.dsn.diff(client_idsn);
            let seq0 = l.c_isn + l.syn_len + m.ssn;
            let settled = l.settled();
            if let Some(mp) = c.mp.as_mut() {
                let u0 = m.dsn.diff(client_idsn + 1);
                if u0 >= 0 {
                    mp.paths[k].note_mapping(
                        u0 as u64,
                        seq0,
                        m.len - u32::from(m.data_fin),
                        settled,
                    );
                }
            }
            let end = m.dsn + u64::from(m.len);
            if end.diff(c.c_dsn_nxt) > 0 {
                c.c_dsn_nxt = end;
            }
        } else if payload_len > 0 && seg.seq.diff(leg.c_rcv_nxt) < 0 && c.mp.is_some() {
            renote_current_mapping(c, k);
        }
        if let Some(m) = csum_map {
            let l = c.legk_mut(k);
            if l.mapping.is_some_and(|x| x.same(&m)) {
                l.mapping = Some(m);
            }
        }
        // On a plain (or fallen-back) leg the FIN is the client's stream end and
        // takes a sequence number the server's ACK of it must reach (RFC 9293
        // §3.4); on an MPTCP leg the subflow FIN is acked via `c_subflow_fin`.
        let end = seg.seq + payload_len + u32::from(!mptcp && seg.flags.fin());
        let mut above_hole = false;
        if payload_len > 0
            && let Some(mp) = c.mp.as_mut()
        {
            above_hole = mp.paths[k].note_received(seg.seq, seg.seq + payload_len);
        }
        let l = c.legk_mut(k);
        if end.diff(l.c_rcv_nxt) > 0 {
            l.c_rcv_nxt = end;
        }
        if subflow_fin {
            l.c_subflow_fin = Some(seg.seq + payload_len);
        }
        if let Some(a) = data_ack
            && a.diff(c.c_data_ack) > 0
            && a.diff(sent_max) <= 0
        {
            c.c_data_ack = a;
            if a.diff(c.local_idsn + 1 + u64::from(c.reply_len())) >= 0 && !c.reply_acked {
                c.reply_acked = true;
                // The application bytes of the SYN may still be unacknowledged
                // by the server: their retransmission timer stays armed.
                if !c.has_held_syn() {
                    c.retries = 0;
                    // Our ADD_ADDRs still waiting for their echo keep it armed.
                    if c.adv_pending() == 0 {
                        c.rto_at = Deadline::NONE;
                    }
                }
            }
        }
        if let Some(f) = c_fin {
            c.c_fin = crate::conn::FinAt::at(f);
        }
        let fin_acked = if bonded {
            let l = c.legk(k);
            l.e_fin_sent && !l.e_fin_acked && seg.ack.diff(l.e_snd_nxt) >= 0
        } else {
            c.leg.e_fin_sent
                && !c.leg.e_fin_acked
                && c.s_fin
                    .get()
                    .is_some_and(|f| seg.ack.diff(c.e_seq(f) + 1) >= 0)
        };
        if fin_acked {
            c.legk_mut(k).e_fin_acked = true;
            if c.reply_acked && !c.has_held_syn() {
                c.rto_at = Deadline::NONE;
            }
        }
        if let Some((tsval, _)) = seg.opts.timestamps {
            c.legk_mut(k).c_ts_recent = tsval;
        }
        c.c_win = u32::from(seg.window) << leg.c_ws.min(14);
        // RFC 8684 §3.3.5: this segment's window is relative to its own DATA_ACK.
        if mptcp
            && let Some(a) = data_ack
            && a.diff(sent_max) <= 0
        {
            let edge = SeqNum((a + u64::from(c.c_win)).0 as u32);
            if edge.diff(c.c_wnd_edge) > 0 {
                c.c_wnd_edge = edge;
            }
        }
        if let Some(m) = c.mp.as_mut() {
            if payload_len > 0 || data_ack.is_some() {
                m.last_up = k;
            }
            if let Some(b) = prio {
                m.paths[k].backup = b;
            }
        }
        c.release_handshake();
        let closed = c.data_closed();
        // An old duplicate on a bonded subflow (the client retransmits data it
        // already had acknowledged, e.g. after its path came back and our ACK was
        // lost): it is answered with an ACK (RFC 9293 §3.10.7.4), or the client
        // keeps the subflow marked as failed.
        let old_dup = bonded
            && payload_len > 0
            && (seg.seq + payload_len).diff(self.conn(id).expect("present").legk(k).c_ack_sent)
                <= 0;
        // A bonded subflow's segment above a hole on that subflow: an immediate
        // (duplicate) ACK with SACK blocks, so that the client repairs the hole by
        // fast retransmission (RFC 5681 §4.2, RFC 2018). The server's own ACKs do
        // not serve: they follow its cumulative ACK, which the hole holds back.
        // While bytes below the hole still wait for the server's ACK the blocks
        // wait too (`Path::rcv_sack_blocks`): the server's ACK of them brings them.
        let sack_now = bonded
            && above_hole
            && self
                .conn(id)
                .is_some_and(|c| !c.client_sack(k, c.subflow_ack(k)).is_empty());
        if (old_dup || sack_now) && !subflow_fin {
            self.queue(id, Tx::PathAck(k as u8));
        }
        if subflow_fin {
            self.queue(
                id,
                if k == 0 {
                    Tx::ClientAck
                } else {
                    Tx::PathAck(k as u8)
                },
            );
        }
        if replaced_unsettled {
            self.counters.dss_checksum_unverified += 1;
        }
        match csum_step {
            CsumStep::Pending => {}
            CsumStep::Verified => self.counters.dss_checksum_ok += 1,
            CsumStep::Unverifiable => self.counters.dss_checksum_unverified += 1,
            CsumStep::Failed => {
                self.counters.dss_checksum_failed += 1;
                if !bonded && k == 0 {
                    // RFC 8684 §3.7, a lone subflow: MP_FAIL; the client answers
                    // with an infinite mapping and both fall back to TCP. The data
                    // is delivered (it is what reached us, as Linux does).
                    self.queue(id, Tx::MpFail);
                    self.counters.mp_fail_sent += 1;
                    self.conn_mut(id).expect("present").hs_mut(now).mp_fail_sent = true;
                } else {
                    // Other subflows: this one is reset (RST + MP_FAIL, MP_TCPRST
                    // 0x06); the client re-sends the unacknowledged data elsewhere.
                    self.queue(id, Tx::SubflowFail(k as u8));
                    let others = self.conn(id).and_then(|c| c.mp.as_ref()).is_some_and(|m| {
                        m.paths
                            .iter()
                            .enumerate()
                            .any(|(i, p)| i != k && p.state == PathState::Active)
                    });
                    if others {
                        self.remove_path(now, id, k);
                    } else {
                        self.abort(id, now);
                    }
                    return Action::Drop(DropReason::DssChecksum);
                }
            }
        }
        if mp_fail.is_some() && mptcp {
            self.counters.mp_fail_received += 1;
            let c = self.conn_mut(id).expect("present");
            // RFC 8684 §3.7 on the lone subflow: the client found one of our
            // checksums wrong (it has fallen back): we answer with MP_FAIL and fall
            // back too. Or it answers our MP_FAIL: it has fallen back as it sent
            // this (Linux 6.18 sends no infinite mapping then, its next segments
            // simply carry no DSS: tests/linux_peers.rs), so do we.
            if !bonded && k == 0 && !c.fallback {
                c.fallback = true;
                let answer = !c.mp_fail_sent();
                if !answer {
                    // It answers ours: its infinite mapping comes with its next
                    // new data (`Handshake::infinite_wait`).
                    c.hs_mut(now).infinite_wait = INFINITE_WAIT;
                }
                c.release_handshake();
                self.counters.fallbacks += 1;
                if answer {
                    self.queue(id, Tx::MpFail);
                    self.counters.mp_fail_sent += 1;
                }
            }
        }
        if let Some((addr_id, addr, port)) = add_addr {
            self.queue(id, Tx::AddAddrEcho(k as u8, addr_id, addr, port));
        }
        if let Some((addr_id, addr, _)) = echo {
            self.add_addr_echoed(id, addr_id, addr);
        }
        if closed {
            self.finish(id, now);
        }
        if bonded {
            self.mp_on_ack(now, id, k, seg, pkt.data());
            for r in removed.iter().flatten() {
                let hit = self.conn(id).and_then(|c| c.mp.as_ref()).and_then(|m| {
                    m.paths
                        .iter()
                        .position(|p| p.addr_id == *r && p.state == PathState::Active)
                });
                if let Some(j) = hit {
                    self.remove_path(now, id, j);
                }
            }
        }
        // Nothing for the server: a pure subflow FIN, or a duplicate ACK carrying
        // only MPTCP signalling.
        let (ack, window) = if bonded {
            let ack = self.mp_server_ack(id, now);
            (ack, self.mp_server_window(id, ack))
        } else {
            let c = self.conn(id).expect("present");
            (
                c.server_ack_from_data_ack(c.c_data_ack),
                rescale(c.c_win, c.p_ws),
            )
        };
        // Holes the engine cannot repair, revealed to the server (build 3).
        let reveal = if bonded && self.conn(id).is_some_and(|c| c.s_sack) {
            self.mp_reveal_blocks(id)
        } else {
            crate::multipath::heapless_blocks::Blocks::default()
        };
        let c = self.conn(id).expect("present");
        // Duplicate ACKs are forwarded on a single subflow (the server's fast
        // retransmit needs them); a bonded connection repairs access losses itself,
        // so its duplicates (mostly multipath reordering) stop here (R3). The
        // handshake ACK and subflow-only signals stop here too.
        let dup = ack == c.p_ack_sent && window == c.p_win_sent && reveal.is_empty();
        if payload_len == 0 && !fin_out && (subflow_fin || ((handshake_ack || bonded) && dup)) {
            return Action::Consumed;
        }
        // ---- rewrite toward the server ----
        // A segment without data or FIN is a pure ACK: it carries the server leg's
        // SND.NXT. After our FIN that is one past it — a pure ACK at the FIN's sequence
        // is outside the server's window and its ACK would be ignored (RFC 9293
        // §3.10.7.4).
        let seq = if payload_len == 0 && !fin_out {
            c.p_snd_nxt.max(c.p_seq(0))
        } else {
            c.p_seq(u)
        };
        let mut flags = Flags::ACK | (seg.flags & Flags::PSH);
        if fin_out {
            flags |= Flags::FIN;
        }
        let mut opt_buf = [0u8; 40];
        let mut n = if c.leg.ts {
            write_ts(&mut opt_buf, c.tsval(now), c.s_ts_recent)
        } else {
            0
        };
        // SACK translated where both legs negotiated it: the client's blocks are in
        // our subflow space toward it, the server wants its own space (up to 3 blocks
        // fit behind the timestamps).
        if !reveal.is_empty() {
            n = write_sack(&mut opt_buf, n, 3, reveal.iter());
        } else if c.s_sack
            && !bonded
            && let Some(blocks) = sack_blocks(seg, pkt.data())
        {
            n = write_sack(
                &mut opt_buf,
                n,
                3,
                blocks
                    .iter()
                    .filter_map(|(l, r)| Some((c.sack_to_server(l)?, c.sack_to_server(r)?))),
            );
        }
        let opt_len = pad_nop(&mut opt_buf, n);
        let out = TcpOut {
            src: c.pool,
            dst: c.server,
            seq,
            ack,
            flags,
            window,
            options: &opt_buf[..opt_len],
        };
        let c = self.conn_mut(id).expect("present");
        c.p_ack_sent = ack;
        c.p_win_sent = window;
        let end = seq + payload_len + u32::from(fin_out);
        if end.diff(c.p_snd_nxt) > 0 {
            c.p_snd_nxt = end;
        }
        let psum = self.payload_sum(seg, pkt);
        if !self.write_in_place(pkt, seg, &out, payload_len as usize, psum) {
            return Action::Drop(DropReason::NoRoom);
        }
        Action::Forward(Port::Core)
    }

    /// Server → client (established and later states).
    pub(crate) fn downstream(
        &mut self,
        now: Instant,
        id: u32,
        seg: &Segment,
        pkt: &mut P,
    ) -> Action {
        let Some(c) = self.conn(id) else {
            return Action::Drop(DropReason::NoBindingCore);
        };
        if c.state == State::ClientGone {
            return Action::Drop(DropReason::ClientGone);
        }
        if seg.flags.syn() {
            // Our ACK of its SYN-ACK was lost: resend it.
            self.queue(id, Tx::ServerAck);
            return Action::Consumed;
        }
        if seg.flags.rst() {
            return self.server_rst(now, id, seg, pkt);
        }
        let payload_len = seg.payload_len() as u32;
        // ---- state updates from the server's ACK ----
        {
            let c = self.conn_mut(id).expect("present");
            if seg.flags.ack() && seg.ack.diff(c.s_ack) > 0 && seg.ack.diff(c.p_isn) > 0 {
                c.s_ack = seg.ack;
                if c.has_held_syn() && seg.ack.diff(c.p_isn + 1 + c.app_len) >= 0 {
                    c.drop_held_syn();
                    if (c.reply_acked || !c.mptcp) && c.adv_pending() == 0 {
                        c.rto_at = Deadline::NONE;
                    }
                    c.release_handshake();
                }
            }
            if let Some((tsval, _)) = seg.opts.timestamps {
                c.s_ts_recent = tsval;
            }
            c.s_win = u32::from(seg.window) << c.s_ws.min(14);
            // What the server holds of the client's data above its cumulative
            // ACK: a subflow's ACK may pass those bytes (`Conn::subflow_ack`).
            if seg.flags.ack() && c.s_sack && c.mp.is_some() {
                let idx = c.server_acked_index();
                let base = c.p_isn + 1 + c.app_len;
                let blocks = sack_blocks(seg, pkt.data());
                let index = |e: SeqNum| u64::try_from(e.diff(base)).ok();
                if let Some(m) = c.mp.as_mut() {
                    m.note_server_sack(
                        idx,
                        blocks
                            .iter()
                            .flat_map(|b| b.iter())
                            .filter_map(|(l, r)| Some((index(l)?, index(r)?))),
                    );
                }
            }
        }
        let c = self.conn(id).expect("present");
        if c.state == State::SynAckSent {
            // The client's key is unknown: no DATA_ACK can be built yet (field notes
            // §2). Hold a few data segments; pure ACKs only updated the state.
            if payload_len == 0 && !seg.flags.fin() {
                return Action::Consumed;
            }
            if c.held_server_len() >= MAX_HELD_SERVER {
                return Action::Drop(DropReason::HandshakeIncomplete);
            }
            let held = pkt.share();
            self.conn_mut(id)
                .expect("present")
                .hs_mut(now)
                .held_server
                .push(held);
            return Action::Consumed;
        }
        let v = c.s_index(seg.seq);
        let fin = seg.flags.fin();
        if fin {
            let f = v + u64::from(payload_len);
            self.conn_mut(id).expect("present").s_fin = crate::conn::FinAt::at(f);
        }
        let closed = self.conn(id).expect("present").data_closed();
        if closed {
            self.finish(id, now);
        }
        if self.conn(id).is_some_and(|c| c.seed.is_some()) {
            self.bond_seeded(id, now);
        }
        if self.conn(id).is_some_and(Conn::bonded) {
            return self.mp_downstream(now, id, seg, pkt);
        }
        let c = self.conn(id).expect("present");
        let mptcp = c.mptcp && !c.fallback;
        // The server's FIN becomes a DATA_FIN: one octet of data sequence space but
        // none of the subflow's (RFC 8684 §3.3.3). Its later segments (pure ACKs)
        // stay at the FIN's subflow position.
        let v_sub = match c.s_fin.get() {
            Some(f) if mptcp && v > f => f,
            _ => v,
        };
        let seq = c.e_seq(v_sub);
        let ack = c.subflow_ack_to_client();
        let mut flags = Flags::ACK | (seg.flags & Flags::PSH);
        if fin && !mptcp {
            flags |= Flags::FIN;
        }
        let psum = self.payload_sum(seg, pkt);
        let mut opt_buf = [0u8; 40];
        let opt_len = {
            let mut n = if mptcp {
                let map = (payload_len > 0 || fin).then(|| {
                    // Data-less DATA_FIN: SSN 0, length 1 (§3.3.3).
                    let ssn = if payload_len == 0 {
                        0
                    } else {
                        seq.0.wrapping_sub(c.leg.e_isn.0)
                    };
                    (v, ssn, payload_len + u32::from(fin))
                });
                c.write_client_options(&mut opt_buf, now, &c.leg, map, fin, psum)
            } else if c.leg.ts {
                write_ts(&mut opt_buf, c.tsval(now), c.leg.c_ts_recent)
            } else {
                0
            };
            // The server's SACK blocks, in the client's subflow space, on pure ACKs
            // (data segments have no room left behind the DSS).
            if c.s_sack
                && payload_len == 0
                && !fin
                && let Some(blocks) = sack_blocks(seg, pkt.data())
            {
                let room = (40usize
                    .saturating_sub(n.next_multiple_of(4))
                    .saturating_sub(4))
                    / 8;
                let pad = n.next_multiple_of(4);
                opt_buf[n..pad].fill(1);
                n = write_sack(
                    &mut opt_buf,
                    pad,
                    room,
                    blocks
                        .iter()
                        .filter_map(|(l, r)| Some((c.sack_to_client(l)?, c.sack_to_client(r)?))),
                );
            }
            pad_nop(&mut opt_buf, n)
        };
        let out = TcpOut {
            src: c.leg.service,
            dst: c.leg.client,
            seq,
            ack,
            flags,
            window: rescale(c.s_win, c.leg.e_ws),
            options: &opt_buf[..opt_len],
        };
        // Only what occupies subflow sequence space moves our send edge: payload,
        // and a FIN on a plain leg. A pure ACK may be ahead of data still in flight
        // (reordering), and a DATA_FIN takes no subflow octet (RFC 8684 §3.3.3).
        let plain_fin = fin && !mptcp;
        let end = seq + payload_len + u32::from(plain_fin);
        let c = self.conn_mut(id).expect("present");
        if (payload_len > 0 || plain_fin) && end.diff(c.leg.e_snd_nxt) > 0 {
            c.leg.e_snd_nxt = end;
        }
        if ack.diff(c.leg.c_ack_sent) > 0 {
            c.leg.c_ack_sent = ack;
        }
        if !self.write_in_place(pkt, seg, &out, payload_len as usize, psum) {
            return Action::Drop(DropReason::NoRoom);
        }
        Action::Forward(Port::Access)
    }

    /// Whether a client RST carries MP_FASTCLOSE with our key (RFC 8684 §3.5).
    fn is_fastclose(&self, id: u32, seg: &Segment, pkt: &P) -> bool {
        let Some(c) = self.conn(id) else { return false };
        seg.mptcp(pkt.data()).any(|o| {
            matches!(o, Ok(MptcpOption::MpFastclose(MpFastcloseRepr { receiver_key })) if receiver_key == c.local_key)
        })
    }

    /// Client RST: MP_FASTCLOSE (our key) resets the connection (RFC 8684 §3.5); a
    /// plain RST on the MPTCP leg only closes that subflow (RFC 8803 §5.1).
    fn client_rst(&mut self, now: Instant, id: u32, seg: &Segment, pkt: &mut P) -> Action {
        let c = self.conn(id).expect("present");
        let fastclose = seg.mptcp(pkt.data()).any(|o| {
            matches!(o, Ok(MptcpOption::MpFastclose(MpFastcloseRepr { receiver_key })) if receiver_key == c.local_key)
        });
        match c.state {
            State::ReplyClose | State::SynAckSent | State::TimeWait => {
                self.remove(id, now);
                return Action::Consumed;
            }
            _ => {}
        }
        if c.mptcp && !c.fallback && !fastclose {
            let c = self.conn_mut(id).expect("present");
            c.state = State::ClientGone;
            return Action::Consumed;
        }
        // Connection reset: RST to the server, written in place.
        let out = TcpOut {
            src: c.pool,
            dst: c.server,
            seq: c.p_snd_nxt.max(c.p_seq(0)),
            ack: SeqNum(0),
            flags: Flags::RST,
            window: 0,
            options: &[],
        };
        let ok = self.write_in_place(pkt, seg, &out, 0, Checksum::new());
        self.remove(id, now);
        if ok {
            Action::Forward(Port::Core)
        } else {
            Action::Drop(DropReason::NoRoom)
        }
    }

    /// Server RST: MP_FASTCLOSE to the client (RFC 8803 §5.1, RFC 8684 §3.5 option R).
    fn server_rst(&mut self, now: Instant, id: u32, seg: &Segment, pkt: &mut P) -> Action {
        let c = self.conn(id).expect("present");
        let mut opt = [0u8; 12];
        let opt_len = if c.mptcp && !c.fallback {
            MpFastcloseRepr {
                receiver_key: c.client_key,
            }
            .emit(&mut opt)
            .unwrap_or(0)
        } else {
            0
        };
        let out = TcpOut {
            src: c.leg.service,
            dst: c.leg.client,
            seq: c.leg.e_snd_nxt,
            ack: c.leg.c_rcv_nxt,
            flags: Flags::RST | Flags::ACK,
            window: 0,
            options: &opt[..opt_len],
        };
        let ok = self.write_in_place(pkt, seg, &out, 0, Checksum::new());
        if self.rst_joins(id) {
            // The joins' RSTs are built from the state: it goes once they are out.
            self.abort_after_rsts(id);
        } else {
            self.remove(id, now);
        }
        if ok {
            Action::Forward(Port::Access)
        } else {
            Action::Drop(DropReason::NoRoom)
        }
    }

    /// Queues RST + MP_FASTCLOSE on every active joined subflow (RFC 8684 §3.5,
    /// option R). Returns whether any was queued.
    pub(crate) fn rst_joins(&mut self, id: u32) -> bool {
        let Some(c) = self.conn(id) else { return false };
        let Some(m) = c.mp.as_ref() else { return false };
        let ks: Vec<usize> = (1..m.paths.len())
            .filter(|&k| m.paths[k].state == PathState::Active)
            .collect();
        for &k in &ks {
            self.queue(id, Tx::PathRst(k as u8));
        }
        !ks.is_empty()
    }

    /// Keeps a connection only until its queued RSTs are built (no timers but idle).
    fn abort_after_rsts(&mut self, id: u32) {
        if let Some(c) = self.conn_mut(id) {
            c.state = State::TimeWait;
            c.rto_at = Deadline::NONE;
            c.leg.e_fin_sent = true;
            c.leg.e_fin_acked = true;
            if let Some(m) = c.mp.as_mut() {
                m.paths[0].state = PathState::Removed;
            }
        }
        self.unbind_server(id);
    }

    /// Client input after an ending reply: once it is acknowledged, FIN; the
    /// client resets (RFC 8803 §6.2.8) or closes.
    fn reply_close_input(&mut self, now: Instant, id: u32, seg: &Segment) -> Action {
        let c = self.conn_mut(id).expect("present");
        let end = c.leg.e_isn + 1 + c.reply_len();
        if seg.flags.ack() && seg.ack.diff(end) >= 0 && !c.reply_acked {
            c.reply_acked = true;
            c.rto_at = Deadline::NONE;
            c.leg.e_fin_sent = true;
            self.queue(id, Tx::ClientFin);
            self.arm_rto(id, now);
        }
        let c = self.conn(id).expect("present");
        if seg.flags.ack() && c.leg.e_fin_sent && seg.ack.diff(end + 1) >= 0 {
            if seg.flags.fin() {
                let c = self.conn_mut(id).expect("present");
                c.leg.c_subflow_fin = Some(seg.seq + seg.payload_len() as u32);
                c.leg.c_rcv_nxt = seg.seq + seg.payload_len() as u32 + 1;
                self.queue(id, Tx::ClientAck);
            }
            if let Some(c) = self.conn_mut(id) {
                c.rto_at = Deadline::NONE;
            }
        }
        Action::Consumed
    }

    /// Both data-level FINs are acknowledged: close the subflow with our FIN and
    /// linger (RFC 8684 §3.3.3, RFC 7857 §2.2).
    fn finish(&mut self, id: u32, now: Instant) {
        let Some(c) = self.conn_mut(id) else { return };
        if c.state == State::TimeWait {
            return;
        }
        c.state = State::TimeWait;
        if c.mptcp && !c.fallback && !c.leg.e_fin_sent {
            let path0_open =
                c.mp.as_ref()
                    .is_none_or(|m| m.paths[0].state == PathState::Active);
            if path0_open {
                c.leg.e_fin_sent = true;
                self.queue(id, Tx::ClientFin);
            }
            // Every joined subflow is closed too (RFC 8684 §3.3.3).
            let n = self
                .conn(id)
                .and_then(|c| c.mp.as_ref())
                .map_or(0, |m| m.paths.len());
            for k in 1..n {
                let c = self.conn_mut(id).expect("present");
                let active =
                    c.mp.as_ref()
                        .is_some_and(|m| m.paths[k].state == PathState::Active);
                let l = c.legk_mut(k);
                if active && !l.e_fin_sent {
                    l.e_fin_sent = true;
                    self.queue(id, Tx::PathFin(k as u8));
                }
            }
            // Our subflow FIN is ours to deliver: retransmitted until acked
            // (RFC 9293 §3.10.4, RFC 8684 §3.3.3).
            self.arm_rto(id, now);
        }
    }

    /// The client echoed an ADD_ADDR (RFC 8684 §3.4.1): if it is one of ours (same
    /// address ID and address), it is no longer re-sent.
    fn add_addr_echoed(&mut self, id: u32, addr_id: u8, addr: core::net::IpAddr) {
        let Some(i) = addr_id.checked_sub(1).map(usize::from) else {
            return;
        };
        if i >= 8 || self.cfg.announce.get(i).is_none_or(|a| a.addr != addr) {
            return;
        }
        let Some(c) = self.conn_mut(id) else { return };
        if let Some(h) = c.hs.as_mut()
            && h.adv_pending & 1 << i != 0
        {
            h.adv_pending &= !(1 << i);
            c.release_handshake();
            self.counters.add_addr_echoed += 1;
        }
    }

    /// The payload's ones'-complement sum, from the received checksum.
    pub(crate) fn payload_sum(&self, seg: &Segment, pkt: &P) -> Checksum {
        let d = pkt.data();
        payload_sum_from_checksum(
            seg.src,
            seg.dst,
            &d[seg.tcp_off..seg.payload_off()],
            seg.payload_len(),
            seg.checksum,
        )
    }

    /// Replaces the packet's IP + TCP headers with `out`, keeping the payload where
    /// it is (headers move into the headroom or give bytes back), and trims
    /// anything behind the payload.
    pub(crate) fn write_in_place(
        &self,
        pkt: &mut P,
        seg: &Segment,
        out: &TcpOut<'_>,
        payload_len: usize,
        psum: Checksum,
    ) -> bool {
        let old = seg.payload_off();
        let new = out.header_len();
        if new > old {
            if !pkt.prepend(new - old) {
                return false;
            }
        } else if !pkt.adj(old - new) {
            return false;
        }
        if !pkt.set_len(new + payload_len) {
            return false;
        }
        out.write(pkt.data_mut(), payload_len, psum).is_some()
    }
}

#[allow(dead_code)]
/// A retransmission under subflow `k`'s current mapping (bonded): the walk of
/// the subflow's ACK may be stopped at it, the mapping not remembered (forgotten
/// when the list was full), and the client repeating it is the announcement the
/// walk waits for (`multipath::note_up_map`). Off the per-packet path.
#[cold]
#[inline(never)]
fn renote_current_mapping<P>(c: &mut Conn<P>, k: usize) {
    let idsn = c.client_idsn;
    let leg = *c.legk(k);
    let (Some(m), Some(mp)) = (leg.mapping, c.mp.as_mut()) else {
        return;
    };
    let u0 = m.dsn.diff(idsn + 1);
    if u0 >= 0 {
        let seq0 = leg.c_isn + leg.syn_len + m.ssn;
        mp.paths[k].note_mapping(
            u0 as u64,
            seq0,
            m.len - u32::from(m.data_fin),
            leg.settled(),
        );
    }
}

fn _assert_conn_is_send<P: Send>(c: Conn<P>) -> impl Send {
    c
}

/// The SACK blocks of a segment, if it carries a well-formed SACK option.
pub(crate) fn sack_blocks<'a>(
    seg: &Segment,
    pkt: &'a [u8],
) -> Option<hac_wire::tcp_options::SackBlocks<'a>> {
    let raw = seg.opts.sack?.slice(seg.options(pkt))?;
    match hac_wire::tcp_options::TcpOption::parse(raw) {
        Ok(hac_wire::tcp_options::TcpOption::Sack(b)) if !b.is_empty() => Some(b),
        _ => None,
    }
}

/// Appends `NOP NOP SACK(blocks)` at `n` (at most `max` blocks, and only what fits in
/// 40 bytes); returns the new length (unchanged when no block survives).
pub(crate) fn write_sack(
    b: &mut [u8; 40],
    n: usize,
    max: usize,
    blocks: impl Iterator<Item = (SeqNum, SeqNum)>,
) -> usize {
    let mut k = 0;
    let start = n + 4;
    for (l, r) in blocks.take(max) {
        let at = start + 8 * k;
        if at + 8 > b.len() {
            break;
        }
        b[at..at + 4].copy_from_slice(&l.0.to_be_bytes());
        b[at + 4..at + 8].copy_from_slice(&r.0.to_be_bytes());
        k += 1;
    }
    if k == 0 {
        return n;
    }
    // RFC 2018 §3: kind 5, length 2 + 8n.
    b[n..n + 4].copy_from_slice(&[1, 1, 5, (2 + 8 * k) as u8]);
    start + 8 * k
}
