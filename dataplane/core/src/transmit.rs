//! Building engine-originated packets from connection state ([`Tx`]).

use hac_wire::checksum::Checksum;
use hac_wire::mptcp::{
    AddAddrRepr, DataSeqField, DssRepr, Mapping, MpCapableFlags, MpCapableForm, MpCapableRepr,
    MpFastcloseRepr,
};
use hac_wire::seq::SeqNum;
use hac_wire::tcp::Flags;
use hac_wire::tcp_options::{OptionsBuilder, TcpOption};

use crate::conn::State;
use crate::emit::TcpOut;
use crate::engine::{Engine, Port, Transmit, Tx};
use crate::handshake::DSS_ROOM;
use crate::packet::PacketBuf;
use crate::segment::Segment;
use crate::time::Instant;
use crate::translate::rescale;

impl<P: PacketBuf> Engine<P> {
    /// Writes one engine-originated packet into `buf`.
    pub(crate) fn build(
        &mut self,
        now: Instant,
        id: u32,
        tx: Tx,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        match tx {
            Tx::HeldServer => return self.build_held(now, id, buf),
            Tx::Repair(k, s) => return self.build_cached(now, id, usize::from(k), s, false, buf),
            Tx::Reinject(k, s) => return self.build_cached(now, id, usize::from(k), s, true, buf),
            Tx::PathFin(_) | Tx::ClientFin if self.conn(id)?.bonded() => {
                // Our FIN's place on that subflow is fixed by its first transmission.
                let k = if let Tx::PathFin(k) = tx {
                    usize::from(k)
                } else {
                    0
                };
                let c = self.conn_mut(id)?;
                let nxt = c.legk(k).e_snd_nxt;
                let m = c.mp.as_mut()?;
                if m.paths[k].fin_seq.is_none() {
                    m.paths[k].fin_seq = Some(nxt);
                }
            }
            _ => {}
        }
        let kk = match tx {
            Tx::JoinSynAck(k)
            | Tx::PathAck(k)
            | Tx::PathProbe(k)
            | Tx::PathDataFin(k)
            | Tx::PathFin(k)
            | Tx::PathRst(k)
            | Tx::AddAddrEcho(k, ..)
            | Tx::SubflowFail(k) => usize::from(k),
            _ => 0,
        };
        // A bonded connection's ACK and window (the window's right edge is the
        // subflows' free room, not the last window value moved with the ACK).
        let bonded_ack = if matches!(tx, Tx::ServerPureAck) && self.conn(id)?.mp.is_some() {
            let a = self.mp_server_ack(id, now);
            Some((a, self.mp_server_window(id, a)))
        } else {
            None
        };
        let reveal = if matches!(tx, Tx::ServerPureAck) && self.conn(id)?.s_sack {
            self.mp_reveal_blocks(id)
        } else {
            crate::multipath::heapless_blocks::Blocks::default()
        };
        let c = self.conn(id)?;
        let mut ob = [0u8; 40];
        let mut b = OptionsBuilder::new(&mut ob);
        let ts_client = |b: &mut OptionsBuilder<'_>| {
            if c.leg.ts {
                let _ = b.push(&TcpOption::NoOperation);
                let _ = b.push(&TcpOption::NoOperation);
                let _ = b.push(&TcpOption::Timestamps {
                    tsval: c.tsval(now),
                    tsecr: c.leg.c_ts_recent,
                });
            }
        };
        let mptcp = c.mptcp && !c.fallback;
        let dss_ack = |b: &mut OptionsBuilder<'_>, mapping: Option<Mapping>, fin: bool| {
            if mptcp {
                let d = DssRepr {
                    data_ack: Some(DataSeqField::Bits64(c.data_ack_to_client())),
                    mapping,
                    data_fin: fin,
                };
                let mut o = [0u8; 28];
                if let Ok(n) = d.emit(&mut o) {
                    let _ = b.push_raw(&o[..n]);
                }
            }
        };
        let (port, out_src, out_dst, seq, ack, flags, window, payload): (
            Port,
            _,
            _,
            SeqNum,
            SeqNum,
            Flags,
            u16,
            &[u8],
        );
        match tx {
            Tx::ServerSyn => {
                push_syn_options(
                    &mut b,
                    self.server_mss(c),
                    c.leg.c_sack,
                    c.c_offered_ts.then(|| (c.tsval(now), 0)),
                    c.c_offered_ws.then_some(c.leg.c_ws),
                );
                if c.hs.as_ref().is_some_and(|h| h.server_mptcp) {
                    // RFC 8803 §5.1, §6.2.5: the client asked whether the server
                    // speaks MPTCP. Its answer is in its SYN-ACK's options, which
                    // the Extended TCP Header carries back. Our handshake ACK has no
                    // MP_CAPABLE, so the server falls back to TCP (RFC 8684 §3.1:
                    // the third ACK echoes the keys; Linux's listener falls back
                    // without it, `MPTcpExtMPCapableFallbackACK`).
                    let m = MpCapableRepr {
                        version: 1,
                        flags: MpCapableFlags(MpCapableFlags::H),
                        form: MpCapableForm::Syn,
                    };
                    let mut o = [0u8; 4];
                    if let Ok(n) = m.emit(&mut o) {
                        let _ = b.push_raw(&o[..n]);
                    }
                }
                port = Port::Core;
                (out_src, out_dst) = (c.pool, c.server);
                (seq, ack, flags, window, payload) =
                    (c.p_isn, SeqNum(0), Flags::SYN, u16::MAX, &[]);
            }
            Tx::ServerAck => {
                if c.leg.ts {
                    let _ = b.push(&TcpOption::NoOperation);
                    let _ = b.push(&TcpOption::NoOperation);
                    let _ = b.push(&TcpOption::Timestamps {
                        tsval: c.tsval(now),
                        tsecr: c.s_ts_recent,
                    });
                }
                port = Port::Core;
                (out_src, out_dst) = (c.pool, c.server);
                let app: &[u8] = match c.hs.as_deref() {
                    Some(crate::conn::Handshake {
                        held_syn: Some(p),
                        app_off,
                        ..
                    }) => p
                        .data()
                        .get(*app_off..*app_off + c.app_len as usize)
                        .unwrap_or(&[]),
                    _ => &[],
                };
                let f = if app.is_empty() {
                    Flags::ACK
                } else {
                    Flags::ACK | Flags::PSH
                };
                let win = if c.state == State::SynAckSent {
                    u16::MAX
                } else {
                    rescale(c.c_win, c.p_ws)
                };
                let s0 = if app.is_empty() {
                    c.p_isn + 1 + c.app_len
                } else {
                    c.p_isn + 1
                };
                (seq, ack, flags, window, payload) = (s0, c.s_isn + 1, f, win, app);
            }
            Tx::ClientSynAck => {
                let mut mss = c.s_mss.min(self.mss_for(c.leg.client.ip()));
                if c.mptcp && c.csum {
                    // With DSS checksums the client may fall back to TCP after
                    // MP_FAIL (RFC 8684 §3.7). Linux (6.12–6.18) then sizes its
                    // segments without MPTCP options, 28 bytes larger, yet the
                    // segment carrying its infinite mapping still has a DSS: it
                    // exceeds the path MTU, is dropped inside the client and resent
                    // at the same size forever — the client's sending stops. An MSS
                    // with room for the DSS keeps that segment within the MTU.
                    mss = mss.saturating_sub(crate::handshake::DSS_ROOM).max(536);
                }
                let full = c.state != State::ReplyClose;
                push_syn_options(
                    &mut b,
                    mss,
                    c.s_sack && full,
                    c.leg.ts.then(|| (c.tsval(now), c.leg.c_ts_recent)),
                    (c.c_offered_ws && full).then_some(c.leg.e_ws),
                );
                let reply: &[u8] = if c.mptcp {
                    // RFC 8684 §3.1: A = checksums; C = no joins to this address.
                    let flags = MpCapableFlags(
                        MpCapableFlags::H
                            | if c.csum { MpCapableFlags::A } else { 0 }
                            | if self.cfg.no_joins_to_initial_address {
                                MpCapableFlags::C
                            } else {
                                0
                            },
                    );
                    let m = MpCapableRepr {
                        version: 1,
                        flags,
                        form: MpCapableForm::SynAck {
                            sender_key: c.local_key,
                        },
                    };
                    let mut o = [0u8; 12];
                    if let Ok(n) = m.emit(&mut o) {
                        let _ = b.push_raw(&o[..n]);
                    }
                    &[]
                } else {
                    // Plain-TCP client (or an ending reply): the reply rides in the SYN-ACK.
                    c.reply()
                };
                port = Port::Access;
                (out_src, out_dst) = (c.leg.service, c.leg.client);
                // Acknowledge the whole SYN payload (brief §6.7).
                // RFC 7323 §2.2: a SYN-ACK's window is never scaled.
                let win = if c.state == State::ReplyClose {
                    1024
                } else {
                    rescale(c.s_win, 0)
                };
                (seq, ack, flags, window, payload) = (
                    c.leg.e_isn,
                    c.leg.c_isn + 1 + c.leg.syn_len,
                    Flags::SYN | Flags::ACK,
                    win,
                    reply,
                );
            }
            Tx::ConvertReply => {
                ts_client(&mut b);
                let r = c.reply_len();
                let csum = c.csum.then(|| {
                    hac_wire::checksum::dss_checksum(
                        (c.local_idsn + 1).0,
                        1,
                        r as u16,
                        Checksum::new().add_bytes(c.reply()),
                    )
                });
                dss_ack(
                    &mut b,
                    Some(Mapping {
                        dsn: DataSeqField::Bits64(c.local_idsn + 1),
                        ssn: 1,
                        data_len: r as u16,
                        checksum: csum,
                    }),
                    false,
                );
                port = Port::Access;
                (out_src, out_dst) = (c.leg.service, c.leg.client);
                (seq, ack, flags, window, payload) = (
                    c.leg.e_isn + 1,
                    c.subflow_ack_to_client(),
                    Flags::ACK | Flags::PSH,
                    rescale(c.s_win, c.leg.e_ws),
                    c.reply(),
                );
            }
            Tx::AddAddrEcho(_, addr_id, addr, port_no) => {
                // A pure ACK with the echo (E = 1, no HMAC) and the timestamps;
                // no DSS, which may not fit beside an IPv6 echo (Linux sends its
                // own echoes the same way).
                let leg = c.legk(kk);
                if leg.ts {
                    let _ = b.push(&TcpOption::NoOperation);
                    let _ = b.push(&TcpOption::NoOperation);
                    let _ = b.push(&TcpOption::Timestamps {
                        tsval: c.tsval(now),
                        tsecr: leg.c_ts_recent,
                    });
                }
                let mut o = [0u8; 30];
                if let Ok(n) = (AddAddrRepr {
                    addr_id,
                    addr,
                    port: port_no,
                    hmac: None,
                })
                .emit(&mut o)
                {
                    let _ = b.push_raw(&o[..n]);
                }
                port = Port::Access;
                (out_src, out_dst) = (leg.service, leg.client);
                let seq0 = if c.bonded() {
                    leg.e_snd_nxt
                } else {
                    c.leg.e_snd_nxt
                };
                (seq, ack, flags, window, payload) = (
                    seq0,
                    c.subflow_ack(kk),
                    Flags::ACK,
                    rescale(c.s_win, leg.e_ws),
                    &[],
                );
            }
            Tx::AddAddr(_) | Tx::MpFail => {
                // A pure ACK on the initial subflow with the timestamps and the
                // option alone (no DSS: an IPv6 ADD_ADDR fills the rest).
                let leg = c.legk(0);
                if leg.ts {
                    let _ = b.push(&TcpOption::NoOperation);
                    let _ = b.push(&TcpOption::NoOperation);
                    let _ = b.push(&TcpOption::Timestamps {
                        tsval: c.tsval(now),
                        tsecr: leg.c_ts_recent,
                    });
                }
                let mut o = [0u8; 30];
                let n = if let Tx::AddAddr(i) = tx {
                    let a = self.cfg.announce.get(usize::from(i))?;
                    let addr_id = i + 1;
                    // RFC 8684 §3.4.1: HMAC-SHA256 keyed with our key ‖ the client's
                    // over ID ‖ address ‖ port (two zero bytes without a port),
                    // rightmost 64 bits.
                    let hmac = hac_wire::crypto::add_addr_hmac(
                        c.local_key,
                        c.client_key,
                        addr_id,
                        a.addr,
                        a.port,
                    );
                    AddAddrRepr {
                        addr_id,
                        addr: a.addr,
                        port: a.port,
                        hmac: Some(hmac),
                    }
                    .emit(&mut o)
                } else {
                    // RFC 8684 §3.7: the DSN of the start of the failed mapping.
                    let dsn = c.leg.mapping.map_or(c.c_dsn_nxt, |m| m.dsn);
                    hac_wire::mptcp::MpFailRepr { dsn }.emit(&mut o)
                };
                if let Ok(n) = n {
                    b.push_raw(&o[..n]).ok()?;
                }
                port = Port::Access;
                (out_src, out_dst) = (leg.service, leg.client);
                (seq, ack, flags, window, payload) = (
                    leg.e_snd_nxt,
                    c.subflow_ack(0),
                    Flags::ACK,
                    rescale(c.s_win, leg.e_ws),
                    &[],
                );
            }
            Tx::ClientAck
            | Tx::ClientFin
            | Tx::PathAck(_)
            | Tx::PathProbe(_)
            | Tx::PathDataFin(_)
            | Tx::PathFin(_) => {
                let leg = c.legk(kk);
                if leg.ts {
                    let _ = b.push(&TcpOption::NoOperation);
                    let _ = b.push(&TcpOption::NoOperation);
                    let _ = b.push(&TcpOption::Timestamps {
                        tsval: c.tsval(now),
                        tsecr: leg.c_ts_recent,
                    });
                }
                // The client's bytes on this subflow above a hole (SACK on this
                // subflow: the client offered it and our SYN-ACK granted it).
                let sub_ack = c.subflow_ack(kk);
                let sack = c.client_sack(kk, sub_ack);
                let data_fin = match (tx, c.s_fin.get()) {
                    (Tx::PathDataFin(_), Some(f)) if mptcp => Some(c.e_dsn(f)),
                    _ => None,
                };
                if let Some(dsn) = data_fin {
                    // RFC 8684 §3.3.3: SSN 0, data-level length 1; its checksum
                    // over the pseudo-header alone (§3.3.1).
                    let m = Mapping {
                        dsn: DataSeqField::Bits64(dsn),
                        ssn: 0,
                        data_len: 1,
                        checksum: c.csum.then(|| {
                            hac_wire::checksum::dss_checksum(
                                dsn.0,
                                0,
                                1,
                                hac_wire::checksum::Checksum::new(),
                            )
                        }),
                    };
                    dss_ack(&mut b, Some(m), true);
                } else if sack.len() >= 2 && mptcp {
                    // 40 option bytes: timestamps (12), a DSS with a 4-byte DATA_ACK
                    // (8; RFC 8684 §3.3.2 allows either size) and two SACK blocks
                    // (20). With the 8-byte DATA_ACK only one block fits.
                    let d = DssRepr {
                        data_ack: Some(DataSeqField::Bits32(c.data_ack_to_client().0 as u32)),
                        mapping: None,
                        data_fin: false,
                    };
                    let mut o = [0u8; 28];
                    if let Ok(n) = d.emit(&mut o) {
                        let _ = b.push_raw(&o[..n]);
                    }
                } else {
                    dss_ack(&mut b, None, false);
                }
                if data_fin.is_none() {
                    let room = (40 - b.len()).saturating_sub(4) / 8;
                    push_sack(&mut b, &sack.first(room));
                }
                port = Port::Access;
                (out_src, out_dst) = (leg.service, leg.client);
                let fin = matches!(tx, Tx::ClientFin | Tx::PathFin(_));
                let seq0 = match (&c.mp, c.state, c.s_fin.get()) {
                    (Some(m), _, _) if c.bonded() && fin => {
                        m.paths[kk].fin_seq.unwrap_or(leg.e_snd_nxt)
                    }
                    (Some(m), _, _) if c.bonded() && matches!(tx, Tx::PathProbe(_)) => {
                        m.paths[kk].snd_una - 1
                    }
                    (Some(_), _, _) if c.bonded() => leg.e_snd_nxt,
                    (_, State::ReplyClose, _) => c.leg.e_isn + 1 + c.reply_len(),
                    // Our subflow FIN sits right after the data, where the
                    // DATA_FIN was mapped (a retransmission keeps that place).
                    (_, _, Some(f)) if fin => c.e_seq(f),
                    _ => c.leg.e_snd_nxt,
                };
                let f = if fin {
                    Flags::ACK | Flags::FIN
                } else {
                    Flags::ACK
                };
                (seq, ack, flags, window, payload) =
                    (seq0, sub_ack, f, rescale(c.s_win, leg.e_ws), &[]);
            }
            Tx::JoinSynAck(_) => {
                let leg = c.legk(kk);
                let p = &c.mp.as_ref()?.paths[kk];
                let mss = c.s_mss.min(self.mss_for(leg.client.ip()));
                push_syn_options(
                    &mut b,
                    mss,
                    leg.c_sack && c.s_sack,
                    leg.ts.then(|| (c.tsval(now), leg.c_ts_recent)),
                    (leg.e_ws > 0 || leg.c_ws > 0).then_some(leg.e_ws),
                );
                // RFC 8684 §3.2: our Address ID of the address the join came to (an
                // announced one's, §3.4.1; 0: the connection's initial address).
                let sp = self.cfg.service_port;
                let addr_id = if leg.service == c.leg.service {
                    0
                } else {
                    self.cfg
                        .announce
                        .iter()
                        .position(|a| a.addr == leg.service.ip && a.port_or(sp) == leg.service.port)
                        .map_or(0, |i| i as u8 + 1)
                };
                // HMAC(Key-B‖Key-A, R-B‖R-A), leftmost 64 bits.
                let j = hac_wire::mptcp::MpJoinRepr::SynAck {
                    backup: false,
                    addr_id,
                    hmac: hac_wire::crypto::join_hmac_truncated64(
                        c.local_key,
                        c.client_key,
                        p.nonce_local,
                        p.nonce_remote,
                    ),
                    nonce: p.nonce_local,
                };
                let mut o = [0u8; 16];
                if let Ok(n) = j.emit(&mut o) {
                    let _ = b.push_raw(&o[..n]);
                }
                port = Port::Access;
                (out_src, out_dst) = (leg.service, leg.client);
                (seq, ack, flags, window, payload) = (
                    leg.e_isn,
                    leg.c_isn + 1,
                    Flags::SYN | Flags::ACK,
                    // RFC 7323 §2.2: a SYN-ACK's window is never scaled.
                    rescale(c.s_win, 0),
                    &[],
                );
            }
            Tx::ServerPureAck => {
                if c.leg.ts {
                    let _ = b.push(&TcpOption::NoOperation);
                    let _ = b.push(&TcpOption::NoOperation);
                    let _ = b.push(&TcpOption::Timestamps {
                        tsval: c.tsval(now),
                        tsecr: c.s_ts_recent,
                    });
                }
                push_sack(&mut b, &reveal);
                port = Port::Core;
                (out_src, out_dst) = (c.pool, c.server);
                let (a, w) = bonded_ack.unwrap_or_else(|| {
                    let w = if c.p_win_sent == 0 {
                        rescale(c.c_win, c.p_ws)
                    } else {
                        c.p_win_sent
                    };
                    (c.server_ack_from_data_ack(c.c_data_ack), w)
                });
                (seq, ack, flags, window, payload) =
                    (c.p_snd_nxt.max(c.p_seq(0)), a, Flags::ACK, w, &[]);
            }
            Tx::PathRst(_) => {
                let leg = c.legk(kk);
                let mut o = [0u8; 12];
                if let Ok(n) = (MpFastcloseRepr {
                    receiver_key: c.client_key,
                })
                .emit(&mut o)
                {
                    let _ = b.push_raw(&o[..n]);
                }
                port = Port::Access;
                (out_src, out_dst) = (leg.service, leg.client);
                (seq, ack, flags, window, payload) = (
                    leg.e_snd_nxt,
                    leg.c_rcv_nxt,
                    Flags::RST | Flags::ACK,
                    0,
                    &[],
                );
            }
            Tx::ServerRst => {
                port = Port::Core;
                (out_src, out_dst) = (c.pool, c.server);
                (seq, ack, flags, window, payload) =
                    (c.p_snd_nxt.max(c.p_seq(0)), SeqNum(0), Flags::RST, 0, &[]);
            }
            Tx::SubflowFail(_) => {
                // RFC 8684 §3.7: RST with MP_FAIL (the DSN where the failed mapping
                // starts) and MP_TCPRST 0x06, middlebox interference (§3.6).
                let leg = c.legk(kk);
                let dsn = leg.mapping.map_or(c.c_dsn_nxt, |m| m.dsn);
                let mut o = [0u8; 12];
                if let Ok(n) = (hac_wire::mptcp::MpFailRepr { dsn }).emit(&mut o) {
                    let _ = b.push_raw(&o[..n]);
                }
                let mut o = [0u8; 4];
                if let Ok(n) = (hac_wire::mptcp::MpTcpRstRepr {
                    flags: hac_wire::mptcp::MpTcpRstFlags(0),
                    reason: hac_wire::mptcp::TcpRstReason::MiddleboxInterference,
                })
                .emit(&mut o)
                {
                    let _ = b.push_raw(&o[..n]);
                }
                port = Port::Access;
                (out_src, out_dst) = (leg.service, leg.client);
                (seq, ack, flags, window, payload) = (
                    leg.e_snd_nxt,
                    leg.c_rcv_nxt,
                    Flags::RST | Flags::ACK,
                    0,
                    &[],
                );
            }
            Tx::ClientRst => {
                if mptcp {
                    let mut o = [0u8; 12];
                    if let Ok(n) = (MpFastcloseRepr {
                        receiver_key: c.client_key,
                    })
                    .emit(&mut o)
                    {
                        let _ = b.push_raw(&o[..n]);
                    }
                }
                port = Port::Access;
                (out_src, out_dst) = (c.leg.service, c.leg.client);
                (seq, ack, flags, window, payload) = (
                    c.leg.e_snd_nxt,
                    c.leg.c_rcv_nxt,
                    Flags::RST | Flags::ACK,
                    0,
                    &[],
                );
            }
            Tx::HeldServer | Tx::Repair(..) | Tx::Reinject(..) => return None,
        }
        let n = b.finish().ok()?;
        let opts = ob;
        let opts = &opts[..n];
        let (seq_end, is_fin) = (seq + payload.len() as u32, flags.fin());
        let t = self.finish_build(
            port, out_src, out_dst, seq, ack, flags, window, opts, payload, buf,
        )?;
        if let Some(c) = self.conn_mut(id) {
            if port == Port::Access && !flags.rst() {
                // A SYN occupies one sequence number before its payload.
                let end = seq_end + u32::from(is_fin) + u32::from(flags.syn());
                let l = c.legk_mut(kk);
                if end.diff(l.e_snd_nxt) > 0 {
                    l.e_snd_nxt = end;
                }
                if ack.diff(l.c_ack_sent) > 0 {
                    l.c_ack_sent = ack;
                }
            }
            if matches!(tx, Tx::ServerPureAck) {
                // What the server last heard (duplicate suppression, held ACKs).
                c.p_ack_sent = ack;
                c.p_win_sent = window;
            }
            let is_rst = |t: Tx| matches!(t, Tx::ClientRst | Tx::ServerRst | Tx::PathRst(_));
            if is_rst(tx) && !self.txq.iter().any(|&(i, _, t)| i == id && is_rst(t)) {
                // The last RST of an aborted connection is out: the state goes.
                self.remove(id, now);
            }
        }
        Some(t)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_build(
        &self,
        port: Port,
        src: crate::conn::Sock,
        dst: crate::conn::Sock,
        seq: SeqNum,
        ack: SeqNum,
        flags: Flags,
        window: u16,
        opts: &[u8],
        payload: &[u8],
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let out = TcpOut {
            src,
            dst,
            seq,
            ack,
            flags,
            window,
            options: opts,
        };
        let h = out.header_len();
        buf.get_mut(h..h + payload.len())?.copy_from_slice(payload);
        out.write(buf, payload.len(), Checksum::new().add_bytes(payload))?;
        Some(Transmit {
            port,
            len: h + payload.len(),
        })
    }

    /// A held server segment, translated now and copied out.
    fn build_held(&mut self, now: Instant, id: u32, buf: &mut [u8]) -> Option<Transmit> {
        let c = self.conn_mut(id)?;
        let h = c.hs.as_mut()?;
        if h.held_server.is_empty() {
            return None;
        }
        let mut p = h.held_server.remove(0);
        let seg = Segment::parse(p.data()).ok()?;
        let action = self.downstream(now, id, &seg, &mut p);
        if let Some(c) = self.conn_mut(id) {
            c.release_handshake();
        }
        match action {
            crate::engine::Action::Forward(port) => {
                let d = p.data();
                buf.get_mut(..d.len())?.copy_from_slice(d);
                Some(Transmit { port, len: d.len() })
            }
            _ => None,
        }
    }
}

/// MSS, SACK-permitted, timestamps and window scale for a SYN or SYN-ACK, NOP-aligned
/// as Linux lays them out (RFC 9293 §3.2, RFC 2018 §2, RFC 7323 §2–3).
fn push_syn_options(
    b: &mut OptionsBuilder<'_>,
    mss: u16,
    sack: bool,
    ts: Option<(u32, u32)>,
    ws: Option<u8>,
) {
    let _ = b.push(&TcpOption::Mss(mss));
    if sack {
        let _ = b.push(&TcpOption::NoOperation);
        let _ = b.push(&TcpOption::NoOperation);
        let _ = b.push(&TcpOption::SackPermitted);
    }
    if let Some((tsval, tsecr)) = ts {
        let _ = b.push(&TcpOption::NoOperation);
        let _ = b.push(&TcpOption::NoOperation);
        let _ = b.push(&TcpOption::Timestamps { tsval, tsecr });
    }
    if let Some(shift) = ws {
        let _ = b.push(&TcpOption::NoOperation);
        let _ = b.push(&TcpOption::WindowScale(shift));
    }
}

impl<P: PacketBuf> Engine<P> {
    /// The MSS we announce to the server: clamped so that server segments still
    /// fit toward the client once the DSS (and timestamps, on both legs or
    /// neither) are added.
    pub(crate) fn server_mss(&self, c: &crate::conn::Conn<P>) -> u16 {
        c.leg
            .c_mss
            .min(self.mss_for(c.server.ip()))
            .saturating_sub(if c.mptcp { DSS_ROOM } else { 0 })
            .max(536)
    }

    /// The largest payload the server sends us: the smaller MSS, less timestamps.
    pub(crate) fn server_payload_max(&self, c: &crate::conn::Conn<P>) -> u16 {
        let ts = if c.leg.ts { 12 } else { 0 };
        self.server_mss(c).min(c.s_mss.max(536)) - ts
    }
}

/// SACK blocks (up to three, RFC 2018) behind two NOPs, when there are any.
fn push_sack(b: &mut OptionsBuilder<'_>, blocks: &crate::multipath::heapless_blocks::Blocks) {
    if blocks.is_empty() {
        return;
    }
    let mut raw = [0u8; 24];
    let mut n = 0;
    for (l, r) in blocks.iter().take(3) {
        raw[n..n + 4].copy_from_slice(&l.0.to_be_bytes());
        raw[n + 4..n + 8].copy_from_slice(&r.0.to_be_bytes());
        n += 8;
    }
    if let Ok(sack) = hac_wire::tcp_options::SackBlocks::new(&raw[..n]) {
        let _ = b.push(&TcpOption::NoOperation);
        let _ = b.push(&TcpOption::NoOperation);
        let _ = b.push(&TcpOption::Sack(sack));
    }
}
