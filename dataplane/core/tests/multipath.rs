//! Multipath (MP_JOIN) behaviour of the engine in the deterministic simulator
//! (`sim/mpclient.rs`): a client that joins subflows from other addresses over
//! access paths of their own (rate, delay, loss, outages), the engine, and the plain
//! TCP server model. Scenarios by state: fixtures bring a connection to "every
//! subflow joined", then one behaviour is checked — aggregation, loss on one path, a
//! path that dies and comes back, backup subflows, the subflow limit, forged joins.
//!
//! Every transfer checks byte-exact delivery to both applications, that neither
//! model saw an anomaly (see `sim/mpclient.rs` for what the client checks), and at
//! the end that no subflow kept a hole (RFC 8684 §3.3.6, subflow integrity).
//!
//! The reference paths are the lab's (docs: multipath-scheduling.md): DSL 40 Mbit/s
//! 10 ms one way, LTE 20 Mbit/s 40 ms one way; the server is 10 ms behind the
//! converter. The server model has no congestion control: a fixed window (1.5 × the
//! sum of the rates × the largest RTT) and RTO-only recovery, so in a run without
//! loss every server retransmission is an ACK stall of 200 ms or more.
//!
//! The engine also sees checks that need the whole world: an ACK on a subflow may
//! only cover client bytes that reached the engine (RFC 9293 §3.4), no data goes on
//! a join before its third ACK arrived (RFC 8684 §3.2), and no correctly mapped
//! client segment is dropped.
//!
//! Knobs: `SIM_DUMP=1` keeps the engine's packet log (a failing scenario prints its
//! tail); with `SIM_DUMP_FILE=path` as well, the whole log of the last transfer is
//! written there.

mod sim;

use hac_core::{EngineConfig, Instant, Scheduler};
use hac_wire::mptcp::{MpCapableForm, MpJoinRepr, MptcpOption};
use hac_wire::tcp_options::{self, TcpOption};
use sim::mpclient::*;
use sim::*;

// ------------------------------------------------------------------ configuration

fn dsl() -> PathSpec {
    PathSpec::symmetric(40, 10)
}

fn lte() -> PathSpec {
    PathSpec::symmetric(20, 40)
}

fn even() -> PathSpec {
    PathSpec::symmetric(20, 20)
}

/// MULTIPATH ENGINE CONFIGURATION — the `EngineConfig` fields of the multipath
/// issue, set in this one place: `max_subflows` (the initial subflow included),
/// `scheduler`, `primary_access` (empty: the initial subflow is primary),
/// `repair_cache`, `cache_limit_bytes`.
fn mp_engine(max_subflows: usize, scheduler: Scheduler) -> EngineConfig {
    EngineConfig {
        max_subflows,
        scheduler,
        primary_access: Vec::new(),
        repair_cache: true,
        cache_limit_bytes: 4 << 20,
        ..engine_config()
    }
}

/// Client and server of one family, one subflow per path, default engine policy.
fn setup(v6: bool, paths: Vec<PathSpec>) -> MpSetup {
    let mut s = MpSetup::new(v6, v6, paths);
    s.engine = mp_engine(8, Scheduler::Aggregate);
    s
}

fn pattern(n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8 ^ (i >> 16) as u8)
        .collect()
}

fn sum_rate(s: &MpSim, down: bool) -> u64 {
    s.up.iter()
        .zip(&s.down)
        .map(|(u, d)| if down { d.cfg.rate_bps } else { u.cfg.rate_bps })
        .sum()
}

fn max_rtt(s: &MpSim) -> u64 {
    s.up.iter()
        .zip(&s.down)
        .map(|(u, d)| u.cfg.delay_us + d.cfg.delay_us)
        .max()
        .unwrap_or(0)
        + 2 * s.s2e.cfg.delay_us
}

/// The time `bytes` take at `frac` of `rate_bps`, plus one round trip of the
/// slowest path (server included) for the first byte to arrive.
fn bound_us(s: &MpSim, bytes: usize, rate_bps: u64, frac: f64) -> u64 {
    (bytes as f64 * 8.0 * SEC as f64 / (frac * rate_bps as f64)) as u64 + max_rtt(s)
}

fn mbit(bytes: usize, us: u64) -> f64 {
    bytes as f64 * 8.0 / us.max(1) as f64
}

fn tail(s: &MpSim) -> String {
    let mut a = s.all_anomalies();
    a.extend(s.client.final_anomalies());
    // Kinds: the message with its numbers blanked, counted.
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for m in &a {
        let k: String = m
            .split(':')
            .skip(1)
            .collect::<Vec<_>>()
            .join(":")
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(90)
            .collect();
        *kinds.entry(k).or_default() += 1;
    }
    format!(
        "{} anomalies, by kind: {kinds:#?}\nfirst: {:#?}\n{}\n{}",
        a.len(),
        &a[..a.len().min(6)],
        s.summary(),
        s.dump_tail(60)
    )
}

/// With `SIM_DUMP_FILE=path`, writes the whole packet log there (exploration).
fn save_log(s: &MpSim) {
    if let Some(p) = std::env::var_os("SIM_DUMP_FILE") {
        std::fs::write(p, s.dump()).expect("write the packet log");
    }
}

// ------------------------------------------------------------------ fixtures

/// Every planned subflow joined (the fourth ACK in) or refused as planned, the
/// Convert reply delivered, the server leg established; no anomaly so far.
fn conn_joined(setup: MpSetup) -> MpSim {
    let mut s = setup.build();
    let ok = s.run_until(5 * SEC, |s| {
        s.client.reply().is_some()
            && s.client.joins_settled()
            && s.server.state == SState::Established
    });
    let a = s.all_anomalies();
    if !ok || !a.is_empty() {
        save_log(&s);
    }
    assert!(ok, "subflows not joined:\n{}", tail(&s));
    assert!(
        a.is_empty(),
        "anomalies while joining: {a:#?}\n{}",
        tail(&s)
    );
    s
}

/// When each direction of a transfer completed.
#[derive(Debug, Clone, Copy)]
struct Done {
    start: u64,
    down: u64,
    up: u64,
}

impl Done {
    fn down_us(&self) -> u64 {
        self.down - self.start
    }
    fn up_us(&self) -> u64 {
        self.up - self.start
    }
}

#[track_caller]
fn assert_same(what: &str, got: &[u8], want: &[u8], s: &MpSim) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes delivered of {}, first difference at {first:?}\n{}",
            got.len(),
            want.len(),
            tail(s)
        );
    }
}

/// `up` bytes client → server and `down` bytes server → client (after whatever the
/// applications wrote before), both sides closing; runs until both applications
/// have every byte and every subflow is closed (RFC 8684 §3.3.3), within
/// `limit_us`. Checks every byte and the models.
fn transfer(s: &mut MpSim, up: &[u8], down: &[u8], limit_us: u64) -> Done {
    let start = s.now;
    s.client.write(up);
    s.client.close();
    s.server.write(down);
    s.server.close();
    let syn_app = s.client.cfg.syn_app.len();
    let (want_up, want_down) = (s.client.app.len(), s.server.app.len());
    let (mut t_down, mut t_up) = (None, None);
    let closed = s.run_until(limit_us, |s| {
        if t_down.is_none() && s.client.server_bytes().len() >= want_down {
            t_down = Some(s.now);
        }
        if t_up.is_none() && s.server.rx.nxt() as usize >= syn_app + want_up {
            t_up = Some(s.now);
        }
        s.client.closed() && s.server.closed()
    });
    save_log(s);
    assert_same("downstream", s.client.server_bytes(), &s.server.app, s);
    assert_same("upstream", &s.server.rx.data[syn_app..], &s.client.app, s);
    s.assert_clean();
    assert!(
        s.client.data_closed() && s.server.closed(),
        "both DATA_FINs not acknowledged within {limit_us} us:\n{}",
        tail(s)
    );
    assert!(
        closed,
        "a subflow was not closed with FIN after the DATA_FINs (RFC 8684 §3.3.3):\n{}",
        tail(s)
    );
    Done {
        start,
        down: t_down.expect("downstream complete"),
        up: t_up.expect("upstream complete"),
    }
}

/// The longest time in `[from, to)` during which no new byte reached the
/// client application in order (a goodput gap).
fn longest_gap(s: &MpSim, from: u64, to: u64) -> u64 {
    let mut last = from;
    let mut gap = 0;
    for &(t, _) in s
        .client
        .delivery_log
        .iter()
        .filter(|d| d.0 >= from && d.0 < to)
    {
        gap = gap.max(t - last);
        last = t;
    }
    gap.max(to.saturating_sub(last))
}

/// Payload bytes the converter sent on subflow `i` (duplicates included).
fn down_share(s: &MpSim, i: usize) -> f64 {
    let total: u64 = s.client.subs.iter().map(Subflow::rx_bytes).sum();
    s.client.subs[i].rx_bytes() as f64 / total.max(1) as f64
}

/// Bytes of ours first sent on subflow `i`.
fn up_share(s: &MpSim, i: usize) -> f64 {
    let total: u64 = s.client.subs.iter().map(Subflow::tx_bytes).sum();
    s.client.subs[i].tx_bytes() as f64 / total.max(1) as f64
}

#[track_caller]
fn assert_no_server_retransmissions(s: &MpSim) {
    assert_eq!(
        s.server.retransmits,
        0,
        "the server retransmitted in a run without loss (an ACK stall of an RTO)\n{}",
        tail(s)
    );
}

// ------------------------------------------------------------------ model self-checks

/// Classic little-endian Ethernet pcap frames, IP header first.
fn capture(name: &str) -> Vec<Pkt> {
    let path = format!(
        "{}/../wire/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let d = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&d[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut off = 24;
    let mut v = Vec::new();
    while off + 16 <= d.len() {
        let incl = u32::from_le_bytes(d[off + 8..off + 12].try_into().unwrap()) as usize;
        let frame = &d[off + 16..off + 16 + incl];
        v.push(parse(&frame[14..]).expect("capture frame parses"));
        off += 16 + incl;
    }
    v
}

/// The raw MPTCP option of a captured frame (the model re-emits it byte for byte).
fn raw_mptcp(name: &str, index: usize) -> Vec<u8> {
    let path = format!(
        "{}/../wire/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let d = std::fs::read(&path).unwrap();
    let mut off = 24;
    for _ in 0..index {
        let incl = u32::from_le_bytes(d[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16 + incl;
    }
    let incl = u32::from_le_bytes(d[off + 8..off + 12].try_into().unwrap()) as usize;
    let ip = &d[off + 16 + 14..off + 16 + incl];
    let ip_len = if ip[0] >> 4 == 4 {
        usize::from(ip[0] & 15) * 4
    } else {
        40
    };
    let tcp = &ip[ip_len..];
    let opts = &tcp[20..usize::from(tcp[12] >> 4) * 4];
    tcp_options::iter(opts)
        .find_map(|o| match o {
            Ok(TcpOption::Mptcp(raw)) => Some(raw.to_vec()),
            _ => None,
        })
        .expect("an MPTCP option")
}

fn emit_join(j: MpJoinRepr) -> Vec<u8> {
    let mut b = [0u8; 40];
    let n = MptcpOption::MpJoin(j).emit(&mut b).unwrap();
    b[..n].to_vec()
}

/// The model's MP_JOIN options against a real Linux 6.18 join (fixtures README):
/// with the keys of the initial subflow's third ACK and the captured nonces, the
/// model's SYN, its check of the listener's SYN-ACK HMAC and its third ACK are the
/// captured bytes (RFC 8684 §3.2).
fn join_matches_capture(family: &str) {
    let path1 = capture(&format!("{family}-path1.pcap"));
    let (client_key, server_key) = path1
        .iter()
        .find_map(|p| match p.capable()?.form {
            MpCapableForm::Ack {
                sender_key,
                receiver_key,
            } => Some((sender_key, receiver_key)),
            _ => None,
        })
        .expect("third ACK with both keys");
    let path2_name = format!("{family}-path2.pcap");
    let path2 = capture(&path2_name);
    let Some(MpJoinRepr::Syn {
        backup,
        addr_id,
        nonce: nonce_a,
        ..
    }) = path2[0].join()
    else {
        panic!("join SYN first");
    };
    let crypto = JoinCrypto {
        local_key: client_key,
        remote_key: server_key,
    };
    assert_eq!(
        emit_join(crypto.syn(backup, addr_id, nonce_a)),
        raw_mptcp(&path2_name, 0),
        "join SYN option"
    );
    let synack = path2[1].join().expect("join SYN-ACK");
    let nonce_b = crypto
        .check_synack(nonce_a, synack)
        .expect("the model accepts Linux's SYN-ACK HMAC");
    assert_eq!(
        emit_join(crypto.third_ack(nonce_a, nonce_b)),
        raw_mptcp(&path2_name, 2),
        "third ACK option (160-bit HMAC)"
    );
    // And refuses a SYN-ACK whose HMAC is off by one bit.
    let MpJoinRepr::SynAck {
        backup,
        addr_id,
        hmac,
        nonce,
    } = synack
    else {
        panic!("SYN-ACK form")
    };
    let bad = MpJoinRepr::SynAck {
        backup,
        addr_id,
        hmac: hmac ^ 1,
        nonce,
    };
    assert!(crypto.check_synack(nonce_a, bad).is_err());
}

#[test]
fn model_join_options_match_the_linux_capture_v4() {
    join_matches_capture("v4");
}

#[test]
fn model_join_options_match_the_linux_capture_v6() {
    join_matches_capture("v6");
}

/// The multipath client on its initial subflow alone, against the single-subflow
/// engine: the model itself is clean (no anomaly, every byte, no server stall).
fn model_alone_on_one_subflow(v6: bool) {
    let mut s = conn_joined(setup(v6, vec![dsl()]));
    let (up, down) = (pattern(1 << 20, 1), pattern(2 << 20, 2));
    let limit = 30 * SEC;
    let d = transfer(&mut s, &up, &down, limit);
    eprintln!(
        "one subflow: down {:.1} up {:.1} Mbit/s",
        mbit(down.len(), d.down_us()),
        mbit(up.len(), d.up_us())
    );
    assert_no_server_retransmissions(&s);
    let rate = 40_000_000;
    assert!(
        d.down_us() <= bound_us(&s, down.len(), rate, 0.8),
        "download {:.1} Mbit/s on a 40 Mbit/s path\n{}",
        mbit(down.len(), d.down_us()),
        s.summary()
    );
    assert!(d.up_us() <= bound_us(&s, up.len(), rate, 0.8));
}

#[test]
fn model_alone_on_one_subflow_is_clean_v4() {
    model_alone_on_one_subflow(false);
}

#[test]
fn model_alone_on_one_subflow_is_clean_v6() {
    model_alone_on_one_subflow(true);
}

/// The access link model: rate, delay, queue limit and outages.
#[test]
fn model_access_link_serialises_delays_and_cuts() {
    let mut l = AccessLink::new(
        PathCfg {
            queue_us: 3_000,
            ..PathCfg::new(10, 5)
        },
        1,
    );
    // 1250 bytes at 10 Mbit/s: 1 ms each.
    for _ in 0..5 {
        l.send(0, vec![0u8; 1250]);
    }
    assert_eq!(l.queue_drops, 1, "the 5th packet would wait 4 ms > 3 ms");
    assert_eq!(l.next_at(), Some(MS + 5 * MS));
    // Cut from 6.5 ms to 8 ms: what is queued or on the wire then is lost.
    l.outages.push((6_500, 8_000));
    assert!(l.pop_due(6 * MS).is_some(), "delivered at 6 ms");
    assert!(l.pop_due(9 * MS).is_none(), "queued during the outage");
    assert_eq!(l.cut_drops, 3);
    assert!(l.is_empty());
    l.send(7 * MS, vec![0u8; 1250]);
    assert_eq!(l.cut_drops, 4, "sent during the outage");
    l.send(8 * MS, vec![0u8; 1250]);
    assert_eq!(l.pop_due(14 * MS).map(|p| p.len()), Some(1250));
}

// ------------------------------------------------------------------ refused joins

/// The engine keeps nothing for subflow `i`'s 4-tuple: a segment on it (an ACK as
/// after a completed handshake) is dropped and answered by nothing.
#[track_caller]
fn assert_no_state_for(s: &mut MpSim, i: usize) {
    let sub = &s.client.subs[i];
    let p = build(
        sub.addr,
        s.client.cfg.service,
        sub.isn + 1,
        sub.remote_isn + 1,
        hac_wire::tcp::Flags::ACK,
        1000,
        &[],
        &[],
    );
    let before = s.engine_out;
    let a = s.engine_in(hac_core::Port::Access, &p);
    assert!(
        matches!(a, hac_core::Action::Drop(_)),
        "a segment on the refused 4-tuple got {a:?}"
    );
    assert_eq!(
        s.engine_out, before,
        "the engine answered the refused 4-tuple"
    );
    s.drops.pop();
}

/// RFC 8684 §3.2: a join SYN for a token the converter never issued is answered by
/// a RST carrying MP_TCPRST, and nothing is kept for it.
fn unknown_token_refused(v6: bool) {
    let mut st = setup(v6, vec![dsl(), lte()]);
    st.client.subflows[1].forge = Forge::WrongToken;
    let mut s = conn_joined(st);
    assert_eq!(s.engine.connections(), 1);
    let sub = &s.client.subs[1];
    assert_eq!(sub.state, SubState::Refused, "{}", tail(&s));
    let rst = sub.rsts.first().expect("a RST");
    assert!(
        rst.tcprst().is_some(),
        "RST without MP_TCPRST: {}",
        describe(rst)
    );
    assert!(sub.synack.is_none(), "no SYN-ACK for an unknown token");
    assert_no_state_for(&mut s, 1);
    // Nothing else goes to that address, and the connection works on.
    let answers = s.down[1].sent;
    let d = transfer(&mut s, &pattern(50_000, 3), &pattern(200_000, 4), 20 * SEC);
    assert!(d.down > d.start);
    assert_eq!(
        s.down[1].sent, answers,
        "the engine kept talking to a refused join"
    );
    assert_eq!(s.client.subs[0].state, SubState::Established);
}

#[test]
fn join_with_an_unknown_token_is_refused_with_mp_tcprst_and_no_state_v4() {
    unknown_token_refused(false);
}

#[test]
fn join_with_an_unknown_token_is_refused_with_mp_tcprst_and_no_state_v6() {
    unknown_token_refused(true);
}

/// RFC 8684 §3.2: the join SYN is valid (SYN-ACK with the converter's HMAC), but
/// the third ACK's HMAC is wrong: the subflow is reset, never used, and nothing of
/// it stays; the connection goes on over its other subflow.
#[test]
fn join_with_a_bad_third_ack_hmac_is_reset_and_leaves_no_state() {
    let mut st = setup(false, vec![dsl(), lte()]);
    st.client.subflows[1].forge = Forge::BadThirdAckHmac;
    let mut s = conn_joined(st);
    assert_eq!(s.engine.connections(), 1);
    let sub = &s.client.subs[1];
    assert!(
        sub.synack.as_ref().and_then(Pkt::join).is_some(),
        "a valid join SYN gets a SYN-ACK with MP_JOIN (the model checked its HMAC)\n{}",
        tail(&s)
    );
    assert_eq!(sub.third_acks_sent, 1, "answered at the first third ACK");
    assert!(
        !sub.rsts.is_empty(),
        "the bad third ACK is answered by a RST"
    );
    assert!(sub.established_at.is_none());
    let answers = s.down[1].sent;
    transfer(&mut s, &pattern(50_000, 5), &pattern(300_000, 6), 20 * SEC);
    assert_eq!(s.client.subs[1].rx_bytes(), 0);
    assert_eq!(s.down[1].sent, answers, "the engine used a reset join");
    assert_no_state_for(&mut s, 1);
}

/// `max_subflows` = 8 counts the initial subflow: seven joins are accepted, the
/// eighth (the ninth subflow) is refused with RST + MP_TCPRST and leaves no state.
#[test]
fn ninth_subflow_is_refused_when_the_limit_is_eight() {
    let mut st = setup(false, vec![PathSpec::symmetric(10, 10); 9]);
    // The ninth joins after the others are up.
    st.client.subflows[8].after_us = 200 * MS;
    st.client.subflows[8].expect_refusal = true;
    let mut s = conn_joined(st);
    assert_eq!(s.client.established(), 8, "{}", tail(&s));
    let ninth = &s.client.subs[8];
    assert_eq!(ninth.state, SubState::Refused);
    assert!(ninth.rsts[0].tcprst().is_some(), "RST without MP_TCPRST");
    assert_eq!(s.engine.connections(), 1);
    transfer(&mut s, &pattern(100_000, 7), &pattern(1 << 20, 8), 20 * SEC);
    assert_eq!(s.client.subs[8].rx_bytes(), 0);
}

// ------------------------------------------------------------------ join handshake

/// RFC 8684 §3.2: the third ACK is retransmitted until the converter acknowledges
/// it, and neither side sends data on the subflow before: the server writes at once,
/// the join's first third ACK is lost; the engine places nothing on the join before
/// the retransmitted third ACK arrives (checked on every engine packet), then uses it.
#[test]
fn lost_third_ack_of_a_join_is_retransmitted_until_acknowledged() {
    let mut s = setup(false, vec![even(), even()]).build();
    let mut dropped = false;
    s.up[1].drop_rule = Some(Box::new(move |p: &Pkt| {
        let third = matches!(p.join(), Some(MpJoinRepr::Ack { .. }));
        if third && !dropped {
            dropped = true;
            return true;
        }
        false
    }));
    let down = pattern(4 << 20, 10);
    s.server.write(&down);
    s.server.close();
    s.client.close();
    let ok = s.run_until(30 * SEC, |s| s.client.closed() && s.server.closed());
    assert_same("downstream", s.client.server_bytes(), &down, &s);
    s.assert_clean();
    assert!(ok, "{}", tail(&s));
    let sub = &s.client.subs[1];
    assert_eq!(sub.third_acks_sent, 2);
    let up = sub.established_at.expect("joined");
    assert!(
        sub.rx_bytes_between(up, u64::MAX) > 1 << 20,
        "the join (up at {} ms) carried little\n{}{}",
        up / MS,
        s.summary(),
        s.timeline(0, s.now, 50 * MS)
    );
}

/// A subflow that joins during a download takes its share within a second: two
/// equal paths, the join opened 500 ms into an 8 MB download; from 0.5 s to 1 s
/// after its fourth ACK it carries at least 0.6 of its link's rate, and the
/// download as a whole is not slower than on one path.
#[test]
fn late_join_takes_its_share_within_a_second() {
    let mut st = setup(false, vec![even(), even()]);
    st.client.subflows[1].after_us = 500 * MS;
    let mut s = st.build();
    let ok = s.run_until(5 * SEC, |s| {
        s.client.reply().is_some() && s.server.state == SState::Established
    });
    assert!(ok);
    let n = 8 << 20;
    let d = transfer(&mut s, &pattern(10_000, 38), &pattern(n, 39), 60 * SEC);
    let sub = &s.client.subs[1];
    let up = sub.established_at.expect("joined");
    let rate = sub.rx_bytes_between(up + 500 * MS, up + SEC) as f64 * 8.0 / 0.5e6;
    eprintln!(
        "late join up at {} ms: {rate:.1} Mbit/s from +0.5 s to +1 s, download {:.1} Mbit/s",
        (up - d.start) / MS,
        mbit(n, d.down_us())
    );
    assert!(
        up + SEC <= d.down,
        "the download ended before the measurement"
    );
    assert!(
        rate >= 0.6 * 20.0,
        "the late join carried {rate:.1} Mbit/s of 20\n{}{}",
        s.summary(),
        s.timeline(d.start, d.down, 100 * MS)
    );
}

/// A join that completes while the client's first mapping is half-way across its
/// initial subflow (the lab's two-worker stall, seen under load: Linux sent one
/// 32 KB mapping on DSL, the join came up after two of its segments, and the rest
/// of the upload went over LTE while DSL sat in timeouts). The segments after the
/// bond repeat the mapping already known, so the walk that makes the subflow's
/// ACK must have their bytes from the bond itself; each join time of the sweep
/// lands the bond at another point of that mapping (1 ms apart at 4 segments per
/// 20 ms round trip). The initial subflow never times out.
#[test]
fn a_join_completing_inside_the_clients_first_mapping_does_not_stall_its_subflow() {
    let mut straddled = 0;
    for after in (0..=70).step_by(5) {
        let mut st = setup(false, vec![dsl(), lte()]);
        st.client.mapping_segments = 24;
        st.client.subflows[0].window_segments = 4;
        st.client.subflows[1].after_us = after * MS;
        let mut s = st.build();
        let n = 256 << 10;
        s.client.write(&pattern(n, 40));
        let ok = s.run_until(5 * SEC, |s| {
            s.client.reply().is_some() && s.server.state == SState::Established
        });
        assert!(ok, "{}", tail(&s));
        transfer(&mut s, &[], &pattern(n, 41), 20 * SEC);
        let dsl = &s.client.subs[0];
        assert_eq!(
            dsl.rtos,
            0,
            "join after {after} ms: the initial subflow timed out\n{}",
            s.summary()
        );
        // The join came up between first transmissions of the initial
        // subflow's one mapping.
        let up = s.client.subs[1].established_at.expect("joined");
        let before = dsl.tx_log.iter().filter(|t| t.0 < up).count();
        if before > 0 && before < dsl.tx_log.len() && dsl.tx_bytes() <= 24 * 1420 {
            straddled += 1;
        }
    }
    assert!(
        straddled > 0,
        "no join time of the sweep landed inside the first mapping"
    );
}

/// A lost join SYN-ACK: the client's retransmitted SYN (same token and nonce) gets
/// an answer, and the join completes.
#[test]
fn lost_join_synack_is_answered_on_the_retransmitted_syn() {
    let mut s = setup(false, vec![even(), even()]).build();
    let mut dropped = false;
    s.down[1].drop_rule = Some(Box::new(move |p: &Pkt| {
        if p.is_syn_ack() && !dropped {
            dropped = true;
            return true;
        }
        false
    }));
    let ok = s.run_until(5 * SEC, |s| s.client.joins_settled());
    assert!(ok, "{}", tail(&s));
    assert_eq!(s.client.subs[1].syns_sent, 2);
    let a = s.all_anomalies();
    assert!(a.is_empty(), "{a:#?}");
    transfer(
        &mut s,
        &pattern(20_000, 11),
        &pattern(1 << 20, 12),
        20 * SEC,
    );
    assert!(down_share(&s, 1) > 0.1, "{}", s.summary());
}

/// A lost SYN-ACK on the initial subflow is repaired by our own retransmission
/// before the client's 1 s SYN timer: Linux (6.18) re-sends a TFO SYN without the
/// Convert request and, once our SYN-ACK acknowledges the request, never sends its
/// MP_CAPABLE ACK, which would make the connection fall back to TCP.
#[test]
fn lost_synack_is_retransmitted_before_the_clients_syn_timer() {
    let mut s = setup(false, vec![even(), even()]).build();
    let mut dropped = false;
    s.down[0].drop_rule = Some(Box::new(move |p: &Pkt| {
        if p.is_syn_ack() && !dropped {
            dropped = true;
            return true;
        }
        false
    }));
    let ok = s.run_until(5 * SEC, |s| s.client.joins_settled());
    assert!(ok, "{}", tail(&s));
    assert_eq!(
        s.client.subs[0].syns_sent, 1,
        "the client had to retransmit its SYN"
    );
    assert!(s.client.mptcp, "fell back: {}", tail(&s));
    let a = s.all_anomalies();
    assert!(a.is_empty(), "{a:#?}");
    transfer(
        &mut s,
        &pattern(20_000, 13),
        &pattern(1 << 20, 14),
        20 * SEC,
    );
    assert!(down_share(&s, 1) > 0.1, "{}", s.summary());
}

/// A segment lost on the initial subflow before the connection bonds (before
/// the join completes) is repaired at its subflow sequence once bonded: the
/// client's subflow has no hole left at the end and keeps carrying data.
#[test]
fn loss_before_the_bond_is_repaired_on_the_initial_subflow() {
    let mut s = setup(false, vec![dsl(), lte()]).build();
    let dropped = std::rc::Rc::new(std::cell::Cell::new(false));
    let seen = dropped.clone();
    let mut data_segments = 0;
    s.down[0].drop_rule = Some(Box::new(move |p: &Pkt| {
        if p.payload.len() > 100 {
            data_segments += 1;
            // The server's second segment: sent in its first burst, long
            // before the join's handshake ends.
            if data_segments == 2 {
                seen.set(true);
                return true;
            }
        }
        false
    }));
    transfer(
        &mut s,
        &pattern(10_000, 15),
        &pattern(2 << 20, 16),
        30 * SEC,
    );
    assert!(dropped.get());
    assert!(s.engine.counters().joins_accepted >= 1, "{}", tail(&s));
    assert!(down_share(&s, 0) > 0.1, "{}", s.summary());
}

// ------------------------------------------------------------------ aggregation

/// Downloads `n` bytes (and a small upload) and checks aggregation: goodput ≥ `frac`
/// of the sum of the downstream rates, every subflow ≥ `min_share` of the bytes.
fn aggregated_download(mut s: MpSim, n: usize, frac: f64, min_share: f64) -> MpSim {
    let (up, down) = (pattern(20_000, 13), pattern(n, 14));
    let d = transfer(&mut s, &up, &down, 60 * SEC);
    let rate = sum_rate(&s, true);
    let shares: Vec<f64> = (0..s.client.subs.len())
        .map(|i| down_share(&s, i))
        .collect();
    eprintln!(
        "download {n} B: {:.1} Mbit/s of {} Mbit/s, shares {shares:.2?}",
        mbit(n, d.down_us()),
        rate / 1_000_000
    );
    for (i, sh) in shares.iter().enumerate() {
        assert!(
            *sh >= min_share,
            "subflow {i} carried {sh:.3} of the bytes\n{}",
            s.summary()
        );
    }
    assert!(
        d.down_us() <= bound_us(&s, n, rate, frac),
        "download {:.1} Mbit/s, below {frac} of {} Mbit/s\n{}{}",
        mbit(n, d.down_us()),
        rate / 1_000_000,
        s.summary(),
        s.timeline(d.start, d.down, 100 * MS)
    );
    s
}

#[test]
fn two_equal_paths_download_aggregates_v4() {
    let s = conn_joined(setup(false, vec![even(), even()]));
    let s = aggregated_download(s, 8 << 20, 0.8, 0.3);
    assert_no_server_retransmissions(&s);
}

#[test]
fn two_equal_paths_download_aggregates_v6() {
    let s = conn_joined(setup(true, vec![even(), even()]));
    let s = aggregated_download(s, 4 << 20, 0.8, 0.3);
    assert_no_server_retransmissions(&s);
}

#[test]
fn v6_client_v4_server_over_two_paths() {
    let mut st = MpSetup::new(true, false, vec![even(), even()]);
    st.engine = mp_engine(8, Scheduler::Aggregate);
    let s = conn_joined(st);
    let s = aggregated_download(s, 2 << 20, 0.7, 0.2);
    assert_no_server_retransmissions(&s);
}

/// DSL 40 Mbit/s 10 ms + LTE 20 Mbit/s 40 ms (RTT 20 vs 80 ms): the long download
/// reaches 0.8 of the 60 Mbit/s sum, LTE carries its part, the server never stalls.
#[test]
fn dsl_and_lte_download_aggregates() {
    let s = conn_joined(setup(false, vec![dsl(), lte()]));
    let s = aggregated_download(s, 8 << 20, 0.8, 0.15);
    assert_no_server_retransmissions(&s);
}

/// The server's first RTT samples of a 1 ms vs 50 ms download that starts before
/// the join: (with and without a learned path profile).
fn first_server_rtts(learned: bool) -> (MpSim, Vec<u64>) {
    let mut s = setup(
        false,
        vec![PathSpec::symmetric(10, 1), PathSpec::symmetric(10, 50)],
    )
    .build();
    if learned {
        let client = client_addr(false, 0).ip();
        s.engine.learn_paths(client, 2_000, 100_000, Instant(0));
    }
    let (up, down) = (pattern(2_000, 31), pattern(4 << 20, 32));
    transfer(&mut s, &up, &down, 60 * SEC);
    let rtts: Vec<u64> = s
        .server
        .rtt_samples
        .iter()
        .take(40)
        .map(|&(_, r)| r)
        .collect();
    (s, rtts)
}

/// Path memory (`paths.rs`): a subscriber whose earlier connections bonded paths
/// of 2 ms and 100 ms round trip gets the ACK hold from the server's first byte,
/// before its slow subflow joins: the server's first round trips are the held
/// ones (3/4 of 100 ms), so its slow start is not ended on the fast path alone.
/// Without the memory they are the fast path's.
#[test]
fn learned_paths_hold_the_servers_acks_from_the_first_byte() {
    let (s, rtts) = first_server_rtts(true);
    assert_eq!(s.engine.counters().path_memory_seeded, 1);
    // Held 75 ms from when the engine forwarded a byte (a byte recorded with
    // an earlier one up to 2.5 ms early), plus the server's leg.
    let leg = s.s2e.cfg.delay_us + s.e2s.cfg.delay_us;
    assert!(
        rtts.iter().all(|&r| r + 2_500 >= 75 * MS + leg),
        "first server RTT samples {rtts:?} (server leg {leg} us)"
    );
    assert_no_server_retransmissions(&s);
    let (s, plain) = first_server_rtts(false);
    assert_eq!(s.engine.counters().path_memory_seeded, 0);
    assert!(
        plain[0] + 15 * MS <= rtts[0],
        "first server RTT samples {plain:?} without the memory, {rtts:?} with it"
    );
}

/// A simulation over `paths`, the handshake hold configured or not, and the
/// client's subscriber learned with these (fast, slow) round trips, if any.
fn hold_sim(paths: Vec<PathSpec>, configured: bool, learned: Option<(u64, u64)>) -> MpSim {
    let mut st = setup(false, paths);
    st.engine.handshake_hold = configured;
    let mut s = st.build();
    if let Some((fast, slow)) = learned {
        s.engine
            .learn_paths(client_addr(false, 0).ip(), fast, slow, Instant(0));
    }
    s
}

/// 1 ms vs 50 ms paths (2 vs 100 ms round trips) of `mbit` each.
fn one_vs_fifty(mbit: u64) -> Vec<PathSpec> {
    vec![PathSpec::symmetric(mbit, 1), PathSpec::symmetric(mbit, 50)]
}

/// A 1 MB download over 1 ms vs 50 ms paths (2 vs 100 ms round trips) by a
/// subscriber whose paths may have been learned, with the handshake hold
/// configured or not: the engine's counters and the server's handshake RTT.
fn handshake_hold_download(configured: bool, learned: bool) -> (MpSim, u64) {
    let mut s = hold_sim(
        one_vs_fifty(10),
        configured,
        learned.then_some((2 * MS, 100 * MS)),
    );
    let (up, down) = (pattern(2_000, 51), pattern(1 << 20, 52));
    transfer(&mut s, &up, &down, 120 * SEC);
    let rtt = s.server.handshake_rtt.expect("a handshake RTT sample");
    (s, rtt)
}

/// The handshake hold (`EngineConfig::handshake_hold`, docs/multipath.md):
/// configured, a subscriber whose paths are known to be 2 ms and 100 ms round
/// trips gets its SYN-ACK 75 ms late (the uncapped ACK hold, 3/4 of 100 ms),
/// so the server's handshake RTT — BBR's min RTT for its first 10 s — is the
/// held round trip (2 ms + 75 ms ± the engine's timer rounding + the
/// server leg), and the transfer is whole. The connection then keeps the
/// uncapped hold without the growth probe (whose capped hold is for a server
/// that measured the fast path in its handshake). Not configured, or no
/// profile learned: the SYN-ACK leaves at once.
#[test]
fn the_handshake_hold_gives_the_server_the_held_round_trip() {
    let (s, held) = handshake_hold_download(true, true);
    let leg = s.s2e.cfg.delay_us + s.e2s.cfg.delay_us;
    let c = s.engine.counters();
    assert_eq!(
        (
            c.handshake_holds,
            c.path_memory_seeded,
            c.growth_uncapped,
            c.growth_capped
        ),
        (1, 1, 0, 0),
        "held, seeded with the uncapped hold, no growth probe: {c:?}"
    );
    // The uncapped hold for the whole transfer, the join included: every
    // RTT sample the server takes is at least the held round trip (less the
    // 2.5 ms record spacing and the seed's rounding to 2 ms), never the fast
    // path's.
    let samples: Vec<u64> = s.server.rtt_samples.iter().map(|&(_, r)| r).collect();
    let least = samples.iter().copied().min().unwrap_or(0);
    assert!(
        !samples.is_empty() && least + 4_500 >= 75 * MS + leg,
        "least server RTT sample {least} us of {}",
        samples.len()
    );
    assert!(
        held + 5 * MS >= 77 * MS + leg && held < 83 * MS + leg,
        "handshake RTT {held} us with the hold (server leg {leg} us)"
    );
    assert_no_server_retransmissions(&s);
    for (configured, learned) in [(false, true), (true, false)] {
        let (s, rtt) = handshake_hold_download(configured, learned);
        assert_eq!(s.engine.counters().handshake_holds, 0);
        assert!(
            rtt < 10 * MS + leg,
            "handshake RTT {rtt} us (configured {configured}, learned {learned})"
        );
    }
}

/// The subflows' own minimum-RTT refresh (every 10 s, `Path::probe_rtt`) on
/// slow links: a 25 s download over 2 Mbit/s paths of 1 ms and 50 ms with the
/// handshake held. The fast subflow could not drain during its refresh (the
/// slow one cannot take its share), the refresh took its queue as its new
/// minimum (8 → 48 ms), the minimums were no longer three times apart and the
/// ACK hold vanished at 10 s. Every RTT sample the server takes stays at
/// least the held round trip (less the record spacing and the seed's 2 ms
/// rounding).
#[test]
fn the_subflows_rtt_refresh_keeps_the_hold_on_slow_links() {
    let mut s = hold_sim(one_vs_fifty(2), true, Some((2 * MS, 100 * MS)));
    let (up, down) = (pattern(2_000, 57), pattern(12 << 20, 58));
    transfer(&mut s, &up, &down, 120 * SEC);
    assert_eq!(s.engine.counters().handshake_holds, 1);
    let leg = s.s2e.cfg.delay_us + s.e2s.cfg.delay_us;
    let samples = &s.server.rtt_samples;
    let (start, end) = (samples[0].0, samples[samples.len() - 1].0);
    assert!(
        end - start > 20 * SEC,
        "{} s of samples",
        (end - start) / SEC
    );
    let low = samples.iter().find(|&&(_, r)| r + 4_500 < 75 * MS + leg);
    assert!(
        low.is_none(),
        "an RTT sample under the held round trip (time, us): {low:?}"
    );
}

/// Paths under eight times apart (DSL/LTE, 20 vs 80 ms) are not held: there
/// the capped hold serves a BBR server, and a held handshake cost a CUBIC one
/// its slow start in the lab (`PathProfile::handshake_hold_us`).
#[test]
fn the_handshake_hold_skips_paths_under_eight_times_apart() {
    let mut s = hold_sim(vec![dsl(), lte()], true, Some((20 * MS, 80 * MS)));
    transfer(
        &mut s,
        &pattern(2_000, 55),
        &pattern(256 << 10, 56),
        60 * SEC,
    );
    let c = s.engine.counters();
    assert_eq!((c.handshake_holds, c.path_memory_seeded), (0, 1), "{c:?}");
    let leg = s.s2e.cfg.delay_us + s.e2s.cfg.delay_us;
    let rtt = s.server.handshake_rtt.expect("a handshake RTT sample");
    assert!(rtt < 25 * MS + leg, "handshake RTT {rtt} us");
}

/// A client SYN retransmission during the handshake hold (its SYN timer set
/// to 30 ms here; Linux's is 1 s, above the hold's 200 ms bound) releases the
/// held SYN-ACK at once: the client is not kept waiting past its own timer.
#[test]
fn a_retransmitted_client_syn_releases_the_held_synack() {
    let mut s = hold_sim(one_vs_fifty(10), true, Some((2 * MS, 100 * MS)));
    s.client.subs[0].syn_rto = 30 * MS;
    transfer(
        &mut s,
        &pattern(2_000, 53),
        &pattern(256 << 10, 54),
        60 * SEC,
    );
    assert_eq!(s.engine.counters().handshake_holds, 1);
    assert_eq!(
        s.client.subs[0].syns_sent, 2,
        "the client resent its SYN once"
    );
    // Released when the second SYN arrived (31 ms), not at the hold's end
    // (~96 ms): the server's handshake RTT is about 32 ms, not about 97 ms.
    let rtt = s.server.handshake_rtt.expect("a handshake RTT sample");
    assert!(rtt < 50 * MS, "handshake RTT {rtt} us");
}

/// A 2 MB download by a subscriber whose paths were learned as DSL/LTE (20 vs
/// 80 ms round trips), from a slow-starting server whose congestion window
/// stops at `window_segments`; its first 40 RTT samples.
fn seeded_dsl_lte_download(window_segments: u64) -> (MpSim, Vec<u64>) {
    let mut st = setup(false, vec![dsl(), lte()]);
    st.server.initial_window = 10;
    st.server.window_segments = window_segments;
    let mut s = st.build();
    s.engine
        .learn_paths(client_addr(false, 0).ip(), 20 * MS, 80 * MS, Instant(0));
    let (up, down) = (pattern(2_000, 41), pattern(2 << 20, 42));
    transfer(&mut s, &up, &down, 120 * SEC);
    let rtts = s.server.rtt_samples.iter().map(|&(_, r)| r).collect();
    (s, rtts)
}

/// The growth test of a seeded connection (`multipath::GrowthProbe`): on
/// DSL/LTE a subscriber's next connection starts with the uncapped ACK hold
/// (3/4 of LTE's 80 ms); a server that doubles its flight every round (CUBIC in
/// slow start) keeps it, so its HyStart sees one held round trip throughout;
/// one whose flight stays flat (as a BBR server's does under a hold three
/// times its handshake RTT) gets the capped hold (1.5 × DSL's 20 ms) after
/// three of its rounds.
#[test]
fn a_seeded_connection_keeps_the_uncapped_hold_only_for_a_growing_server() {
    let leg = 20 * MS;
    let (s, rtts) = seeded_dsl_lte_download(2_000);
    let c = s.engine.counters();
    assert_eq!(
        (c.path_memory_seeded, c.growth_uncapped, c.growth_capped),
        (1, 1, 0),
        "{c:?}"
    );
    let early = &rtts[..rtts.len().min(40)];
    assert!(
        early.iter().all(|&r| r + 2_500 >= 60 * MS + leg),
        "first server RTT samples {early:?}"
    );
    let (s, rtts) = seeded_dsl_lte_download(12);
    let c = s.engine.counters();
    assert_eq!(
        (c.path_memory_seeded, c.growth_uncapped, c.growth_capped),
        (1, 0, 1),
        "{c:?}"
    );
    // Held 60 ms while probing, then 30 ms: the late samples are the capped
    // hold's (or the paths' own, when longer), well under the uncapped one.
    let late = &rtts[rtts.len() / 2..];
    let median = {
        let mut v = late.to_vec();
        v.sort_unstable();
        v[v.len() / 2]
    };
    assert!(
        median < 60 * MS + leg,
        "late server RTT samples (median {median} us) {late:?}"
    );
}

/// The path profile a bonded download over `paths` leaves in the path memory.
fn learned_profile(paths: Vec<PathSpec>) -> hac_core::PathProfile {
    let s = conn_joined(setup(false, paths));
    let mut s = aggregated_download(s, 1 << 20, 0.3, 0.05);
    s.run_for(SEC);
    s.engine
        .path_profile(client_addr(false, 0).ip(), Instant(s.now))
        .expect("learned")
}

/// What a bonded connection teaches the path memory: its subflows' minimum RTTs
/// under the initial subflow's address, and the hold the next connection gets
/// from them (`PathProfile::seed_hold_us`): none on close delays, capped at 1.5 ×
/// the fast round trip on paths three to eight times apart (DSL/LTE), 3/4 of the
/// slow round trip beyond.
#[test]
fn bonded_connections_teach_the_path_memory() {
    let p = learned_profile(vec![dsl(), lte()]);
    assert!(
        (20 * MS..24 * MS).contains(&u64::from(p.fast_us))
            && (80 * MS..90 * MS).contains(&u64::from(p.slow_us)),
        "{p:?}"
    );
    assert_eq!(p.seed_hold_us(false), 3 * u64::from(p.fast_us) / 2, "{p:?}");
    let p = learned_profile(vec![
        PathSpec::symmetric(40, 7),
        PathSpec::symmetric(20, 45),
    ]);
    assert_eq!(p.seed_hold_us(false), 3 * u64::from(p.fast_us) / 2, "{p:?}");
    let p = learned_profile(vec![
        PathSpec::symmetric(10, 1),
        PathSpec::symmetric(10, 50),
    ]);
    assert!(
        (70 * MS..80 * MS).contains(&p.seed_hold_us(false)),
        "{p:?}: hold {} us",
        p.seed_hold_us(false)
    );
    let p = learned_profile(vec![even(), even()]);
    assert_eq!(p.seed_hold_us(false), 0, "{p:?}");
}

#[test]
fn three_paths_download_aggregates() {
    let paths = vec![
        PathSpec::symmetric(30, 10),
        PathSpec::symmetric(20, 20),
        PathSpec::symmetric(10, 30),
    ];
    let s = conn_joined(setup(false, paths));
    let s = aggregated_download(s, 8 << 20, 0.8, 0.05);
    assert_no_server_retransmissions(&s);
}

/// A 256 KiB data-level window (`ofo`: minus the data the client holds out of
/// order, as Linux's free buffer space) over DSL + LTE; the client checks every
/// segment against the right edge it advertised.
fn small_window(ofo: bool, n: usize, seed: u8) {
    let mut st = setup(false, vec![dsl(), lte()]);
    st.client.rcv_buf = 256 << 10;
    st.client.ofo_takes_room = ofo;
    let mut s = conn_joined(st);
    let up = pattern(10_000, seed);
    let d = transfer(&mut s, &up, &pattern(n, seed + 1), 60 * SEC);
    eprintln!(
        "256 KiB window (varying: {ofo}): {:.1} Mbit/s, shares {:.2} {:.2}",
        mbit(n, d.down_us()),
        down_share(&s, 0),
        down_share(&s, 1)
    );
}

/// RFC 8684 §3.3.4–3.3.5: one data-level receive window, relative to the DATA_ACK,
/// shared by all subflows. With a 256 KiB window (less than the paths' 750 KB of
/// bandwidth-delay product) the engine never puts a byte beyond the right edge the
/// client advertised (the client checks every segment), and the download completes.
#[test]
fn small_data_level_window_is_respected_across_subflows() {
    small_window(false, 2 << 20, 34);
}

/// The same with a window that varies from segment to segment, each relative to
/// its own segment's DATA_ACK (data held out of order takes room, as in Linux).
#[test]
fn a_varying_data_level_window_is_respected_across_subflows() {
    small_window(true, 4 << 20, 38);
}

/// A client whose application stops reading for a second mid-download: its
/// window closes (its right edge stays) and reopens with a window update. The
/// engine never sends beyond the right edge — a DATA_ACK of one subflow with the
/// window of an older segment of the other would overstate it (Linux drops such
/// bytes at the data level after acknowledging them on the subflow, and the
/// download then waits for the server's timeout: `lab_multipath.rs::
/// multipath_lab_zero_windows`) — and the download completes.
#[test]
fn a_paused_reader_closes_and_reopens_the_window() {
    let mut st = setup(false, vec![dsl(), lte()]);
    st.client.rcv_buf = 1 << 20;
    st.client.read_pause = Some((SEC, 2 * SEC));
    let mut s = conn_joined(st);
    let n = 12 << 20;
    let d = transfer(&mut s, &[], &pattern(n, 40), 60 * SEC);
    eprintln!(
        "paused 1 s: {:.1} s for {} MB, shares {:.2} {:.2}",
        d.down_us() as f64 / 1e6,
        n >> 20,
        down_share(&s, 0),
        down_share(&s, 1)
    );
}

/// The server's zero-window probe on a bonded connection (its persist timer:
/// Linux sends a pure ACK at SND.UNA - 1 while our window is shut and nothing
/// is in flight). The client's window update is a pure ACK nobody retransmits;
/// lost (seen under load in the lab), the server probed a shut window for good
/// while the engine swallowed its probes as duplicate ACKs. Now the probe gets
/// our ACK and window at once, and the client a probe of its own (an old
/// sequence number on a subflow), whose answer carries its current window.
#[test]
fn the_servers_zero_window_probe_is_answered_and_passed_on_to_the_client() {
    let mut s = conn_joined(setup(false, vec![dsl(), lte()]));
    s.server.write(&pattern(256 << 10, 43));
    let ok = s.run_until(10 * SEC, |s| s.client.server_bytes().len() == 256 << 10);
    assert!(ok, "{}", tail(&s));
    s.run_for(500 * MS);
    let (acks_before, client_tx_before) = (s.server.received.len(), s.up[0].sent + s.up[1].sent);
    let now = s.now;
    s.server.send_zero_window_probe(now);
    s.run_for(500 * MS);
    assert_eq!(s.engine.counters().zero_window_probes, 1);
    assert!(
        s.server.received.len() > acks_before,
        "the server's probe was not answered\n{}",
        s.summary()
    );
    assert_eq!(s.client.probes_answered, 1, "{}", s.summary());
    assert!(s.up[0].sent + s.up[1].sent > client_tx_before);
    // Nothing else changed: the rest of the transfer is clean.
    let d = transfer(&mut s, &[], &pattern(1 << 20, 44), 30 * SEC);
    assert!(d.down_us() < 2 * SEC, "{}", s.summary());
    assert_no_server_retransmissions(&s);
}

/// DSS checksums (RFC 8684 §3.3.1) asked for by the client: every mapping the
/// engine makes on either subflow carries a checksum the client verifies, and the
/// engine accepts the client's.
#[test]
fn dss_checksums_on_two_paths() {
    let mut st = setup(false, vec![dsl(), lte()]);
    st.client.csum = true;
    let mut s = conn_joined(st);
    assert!(s.client.csum, "checksums negotiated");
    transfer(
        &mut s,
        &pattern(1 << 20, 36),
        &pattern(2 << 20, 37),
        60 * SEC,
    );
    assert!(
        down_share(&s, 1) > 0.1 && up_share(&s, 1) > 0.1,
        "{}",
        s.summary()
    );
    // The client's mappings (three segments each) were verified as they passed.
    let c = s.engine.counters();
    assert!(c.dss_checksum_ok > 100, "{}", c.dss_checksum_ok);
    assert_eq!((c.dss_checksum_failed, c.mp_fail_sent), (0, 0));
}

/// DSS checksums with 2 % loss on the LTE uplink: a mapping whose segment is lost
/// is summed in any order (the repair arrives after the segments above the hole)
/// and still verified; none is left unverified.
#[test]
fn dss_checksums_verified_across_upload_holes() {
    let mut st = setup(false, vec![dsl(), lte()]);
    st.client.csum = true;
    st.paths[1].up = st.paths[1].up.lossy(0.02);
    st.seed = 5;
    let mut s = conn_joined(st);
    assert!(s.client.csum, "checksums negotiated");
    transfer(
        &mut s,
        &pattern(2 << 20, 38),
        &pattern(10_000, 39),
        60 * SEC,
    );
    assert!(s.up[1].lost > 0, "no loss");
    let c = s.engine.counters();
    eprintln!(
        "LTE uplink loss 2%: {} lost; checksums ok {} unverified {}",
        s.up[1].lost, c.dss_checksum_ok, c.dss_checksum_unverified
    );
    assert!(c.dss_checksum_ok > 100, "{}", c.dss_checksum_ok);
    assert_eq!(c.dss_checksum_unverified, 0);
    assert_eq!((c.dss_checksum_failed, c.mp_fail_sent), (0, 0));
}

/// The upload direction: the client spreads its data over DSL and LTE under its own
/// mappings; the engine puts the data-level stream in order for the server.
#[test]
fn dsl_and_lte_upload_aggregates() {
    let mut s = conn_joined(setup(false, vec![dsl(), lte()]));
    let n = 8 << 20;
    let (up, down) = (pattern(n, 15), pattern(10_000, 16));
    let d = transfer(&mut s, &up, &down, 60 * SEC);
    let rate = sum_rate(&s, false);
    eprintln!(
        "upload {n} B: {:.1} Mbit/s, shares {:.2} {:.2}",
        mbit(n, d.up_us()),
        up_share(&s, 0),
        up_share(&s, 1)
    );
    assert!(
        up_share(&s, 0) > 0.15 && up_share(&s, 1) > 0.15,
        "{}",
        s.summary()
    );
    assert_no_server_retransmissions(&s);
    assert!(
        d.up_us() <= bound_us(&s, n, rate, 0.8),
        "upload {:.1} Mbit/s\n{}",
        mbit(n, d.up_us()),
        s.summary()
    );
}

/// Both directions at once over DSL and LTE (independent link directions; the ACKs
/// of one direction queue behind the data of the other): 0.6 of the sum up, 0.5
/// down. Until session 12 this asked 0.6 down too, and passed only because our
/// SYN-ACK's window was wrongly scaled (RFC 7323 §2.2): the client took a 64 MB
/// data-level window, and its upload then left LTE's uplink to our download's
/// ACKs. With the window right, this model's client (no congestion control, a
/// fixed window per subflow) keeps LTE's uplink full and the download's ACKs on
/// LTE wait behind it: 0.50 down, 0.70 up. In the lab with real Linux the same
/// fix made both directions at once faster (20 MB each way: median 4.3 s
/// against 6.8 s; the kernel proxy 4.9 s, 0.57 of the sum each way).
#[test]
fn dsl_and_lte_both_directions_at_once() {
    let mut s = conn_joined(setup(false, vec![dsl(), lte()]));
    let n = 4 << 20;
    let (up, down) = (pattern(n, 17), pattern(n, 18));
    let d = transfer(&mut s, &up, &down, 60 * SEC);
    save_log(&s);
    let (rd, ru) = (sum_rate(&s, true), sum_rate(&s, false));
    eprintln!(
        "both ways {n} B: down {:.1} up {:.1} Mbit/s",
        mbit(n, d.down_us()),
        mbit(n, d.up_us())
    );
    for i in 0..2 {
        assert!(
            down_share(&s, i) > 0.1 && up_share(&s, i) > 0.1,
            "{}",
            s.summary()
        );
    }
    assert!(d.down_us() <= bound_us(&s, n, rd, 0.5), "{}", s.summary());
    assert!(d.up_us() <= bound_us(&s, n, ru, 0.6), "{}", s.summary());
    assert_no_server_retransmissions(&s);
}

// ------------------------------------------------------------------ loss on one path

/// Random loss on LTE (both directions): every byte arrives once and in order, no
/// subflow keeps a hole, and the bond is not slower than DSL alone would be.
fn lte_loss_download(loss: f64, seed: u64) {
    let lossy = PathSpec {
        up: lte().up.lossy(loss),
        down: lte().down.lossy(loss),
    };
    let mut st = setup(false, vec![dsl(), lossy]);
    st.seed = seed;
    let mut s = conn_joined(st);
    let n = 8 << 20;
    let (up, down) = (pattern(100_000, 19), pattern(n, 20));
    let d = transfer(&mut s, &up, &down, 120 * SEC);
    eprintln!(
        "LTE loss {loss}: download {:.1} Mbit/s, shares {:.2} {:.2}, lost {} on LTE, server retransmits {}",
        mbit(n, d.down_us()),
        down_share(&s, 0),
        down_share(&s, 1),
        s.down[1].lost,
        s.server.retransmits
    );
    assert!(s.down[1].lost > 0, "the path lost nothing: no test");
    // Not slower than DSL alone (multipath-scheduling.md R10).
    let dsl_alone = 40_000_000;
    assert!(
        d.down_us() <= bound_us(&s, n, dsl_alone, 0.9),
        "download {:.1} Mbit/s: slower than 0.9 x DSL alone\n{}",
        mbit(n, d.down_us()),
        s.summary()
    );
}

/// The server's FIN on a bonded connection becomes a data-less DATA_FIN (SSN 0,
/// length 1) sent after its last bytes, never a DATA_FIN on a mapping with data:
/// a second copy of those bytes (a repair, a reinjection, the server's
/// retransmission) reaching Linux after the first would carry it on old data,
/// which Linux 6.18 records without acting on it, ignoring every DATA_FIN after
/// (the lab soak under load, session 15: the client at FIN-WAIT-2 for good).
/// Loss on LTE both ways makes repairs of the last segments likely; every seed
/// closes cleanly.
#[test]
fn the_data_fin_never_rides_on_data_and_every_connection_closes() {
    for seed in 31..35 {
        let lossy = PathSpec {
            up: lte().up.lossy(0.005),
            down: lte().down.lossy(0.005),
        };
        let mut st = setup(false, vec![dsl(), lossy]);
        st.seed = seed;
        st.server.fin_with_data = true;
        let mut s = conn_joined(st);
        let on_data = std::rc::Rc::new(std::cell::Cell::new(0u32));
        for i in 0..2 {
            let seen = on_data.clone();
            s.down[i].drop_rule = Some(Box::new(move |p: &Pkt| {
                let with_data = p.dss().is_some_and(|d| {
                    d.data_fin
                        && d.mapping
                            .is_some_and(|m| m.data_len > 1 || !p.payload.is_empty())
                });
                if with_data {
                    seen.set(seen.get() + 1);
                }
                false
            }));
        }
        transfer(
            &mut s,
            &pattern(50_000, 45),
            &pattern(1 << 20, 46),
            60 * SEC,
        );
        assert_eq!(
            on_data.get(),
            0,
            "seed {seed}: a DATA_FIN on data\n{}",
            s.summary()
        );
    }
}

#[test]
fn lte_loss_half_percent_download() {
    lte_loss_download(0.005, 11);
}

#[test]
fn lte_loss_one_percent_download() {
    lte_loss_download(0.01, 12);
}

/// Loss on the LTE uplink while the client uploads over both paths. A lost
/// segment is a hole on its subflow: the converter answers the segments above it
/// with duplicate ACKs carrying SACK blocks, so the client repairs it by fast
/// retransmission, not by a timeout. The lossless DSL subflow's ACKs do not wait
/// for LTE's repair (the server SACKs DSL's bytes above the hole, and our ACK
/// on DSL passes them): no DSL timeout (before session 13: one, and LTE 18
/// retransmissions for 6 losses with a spurious timeout; now 5 for 5, none).
#[test]
fn lte_loss_one_percent_upload() {
    let lossy = PathSpec {
        up: lte().up.lossy(0.01),
        down: lte().down,
    };
    let mut st = setup(false, vec![dsl(), lossy]);
    st.seed = 13;
    let mut s = conn_joined(st);
    let n = 4 << 20;
    let d = transfer(&mut s, &pattern(n, 21), &pattern(10_000, 22), 120 * SEC);
    let lte_sub = &s.client.subs[1];
    eprintln!(
        "LTE uplink loss 1%: upload {:.1} Mbit/s, shares {:.2} {:.2}; LTE subflow: \
         {} lost, {} retransmissions, {} duplicate ACKs, {} timeouts; DSL timeouts {}",
        mbit(n, d.up_us()),
        up_share(&s, 0),
        up_share(&s, 1),
        s.up[1].lost,
        lte_sub.tx_retransmits,
        lte_sub.dupacks_rx,
        lte_sub.rtos,
        s.client.subs[0].rtos
    );
    assert!(s.up[1].lost > 0);
    // No repair by timeout. A spurious one (the model's fixed window queues
    // up to 217 ms on LTE's uplink, past its RTO; the segment was not lost) is
    // not one: it appeared with the corrected SYN-ACK window (session 12), the
    // queue the same as before.
    assert_eq!(
        lte_sub.rtos - lte_sub.spurious_rtos,
        0,
        "LTE timed out: {}",
        s.summary()
    );
    assert_eq!(s.client.subs[0].rtos, 0, "DSL timed out: {}", s.summary());
    assert!(
        lte_sub.tx_retransmits <= 4 * s.up[1].lost,
        "{} retransmissions for {} losses: {}",
        lte_sub.tx_retransmits,
        s.up[1].lost,
        s.summary()
    );
    assert!(
        d.up_us() <= bound_us(&s, n, 40_000_000, 0.6),
        "{}",
        s.summary()
    );
}

/// A client segment the server never got is never acknowledged on its subflow,
/// however many mappings are in flight there: the engine's subflow ACKs pass only
/// bytes the server has acknowledged or SACKed. One segment is lost between the
/// converter and the server while both subflows carry about a hundred mappings
/// (three segments each); the client repairs it on its subflow by fast
/// retransmission, with no data-level timeout and no reinjection. Until session
/// 13 the engine remembered 16 mappings per subflow and, once they overflowed,
/// acknowledged everything below the oldest one remembered: such a hole was
/// acknowledged unseen and only the client's data-level timeout could repair it
/// (the lab's permanent upload stall, docs/perf.md).
#[test]
fn a_segment_the_server_lacks_is_never_acknowledged_on_its_subflow() {
    let mut s = conn_joined(setup(false, vec![dsl(), lte()]));
    let mut seen = 0;
    let mut lost = None;
    s.e2s.drop_rule = Some(Box::new(move |p: &Pkt| {
        if !p.payload.is_empty() {
            seen += 1;
            if seen == 1500 && lost.is_none() {
                lost = Some(p.seq);
                return true;
            }
        }
        false
    }));
    let n = 8 << 20;
    let d = transfer(&mut s, &pattern(n, 61), &pattern(10_000, 62), 60 * SEC);
    eprintln!(
        "one segment lost toward the server: upload {:.1} Mbit/s, reinjected {} B, \
         retransmissions DSL {} LTE {}, server retransmits {}",
        mbit(n, d.up_us()),
        s.client.reinjected_bytes,
        s.client.subs[0].tx_retransmits,
        s.client.subs[1].tx_retransmits,
        s.server.retransmits,
    );
    assert_eq!(s.e2s.lost, 1, "no loss: no test");
    assert_eq!(s.client.reinjected_bytes, 0, "{}", s.summary());
    let (c0, c1) = (&s.client.subs[0], &s.client.subs[1]);
    assert!(
        c0.tx_retransmits + c1.tx_retransmits >= 1,
        "repaired how?\n{}",
        s.summary()
    );
    assert_eq!(c0.rtos + c1.rtos, c0.spurious_rtos + c1.spurious_rtos);
    assert!(
        d.up_us() <= bound_us(&s, n, sum_rate(&s, false), 0.7),
        "upload {:.1} Mbit/s\n{}",
        mbit(n, d.up_us()),
        s.summary()
    );
}

/// Random loss (1 %) between the converter and the server while the client
/// uploads over both paths: every byte arrives once and in order, at a useful
/// rate. Before session 13 this stalled for good (20 kB of 4 MB in 120 s, 120
/// DSL timeouts): the engine acknowledged on a subflow with more mappings in
/// flight than it remembered bytes the server had lost, which the client then
/// never re-sent (the lab's permanent upload stall). Now a hole the server
/// shows in a subflow's own bytes is repaired on that subflow by fast
/// retransmission; a repair lost again costs a timeout (the model's client
/// then reinjects the stale subflow's data on the other one). Seeds 21–28:
/// 17–27 Mbit/s, all complete.
#[test]
fn loss_toward_the_server_is_repaired_on_each_subflow() {
    upload_with_loss_toward_the_server(21, 3, 0.3);
}

/// The same loss toward the server with a mapping per segment, so that each
/// subflow has more mappings in flight (DSL ~290) than the engine remembers
/// (128): the oldest are kept, the newest forgotten until announced again, and
/// every byte still arrives. (The lab's deadlock with the first version of
/// session 13, a summary of forgotten oldest mappings, needs a real client's
/// collapsed window behind a retransmitted head; this model does not show it:
/// it passes with that version too. The lab test
/// `multipath_lab_both_directions_at_once` is where it shows.)
#[test]
fn more_mappings_in_flight_than_remembered_with_loss_toward_the_server() {
    upload_with_loss_toward_the_server(22, 1, 0.2);
}

/// 4 MB up over DSL and LTE (seed `seed`, client mappings of `mapping_segments`
/// segments) with 1 % loss from the converter to the server: complete and
/// byte-exact ([`transfer`]), repaired by the client's retransmissions, at
/// least `frac` of the uplinks' sum.
fn upload_with_loss_toward_the_server(seed: u64, mapping_segments: usize, frac: f64) {
    let mut st = setup(false, vec![dsl(), lte()]);
    st.seed = seed;
    st.client.mapping_segments = mapping_segments;
    let mut s = conn_joined(st);
    s.e2s.cfg.loss = 0.01;
    let n = 4 << 20;
    let d = transfer(&mut s, &pattern(n, 63), &pattern(10_000, 64), 120 * SEC);
    let (c0, c1) = (&s.client.subs[0], &s.client.subs[1]);
    eprintln!(
        "mappings of {mapping_segments} segment(s), 1% loss toward the server: {} lost, \
         upload {:.1} Mbit/s, retransmissions DSL {} LTE {}, timeouts DSL {}/{} LTE {}/{} \
         (spurious), reinjected {} B",
        s.e2s.lost,
        mbit(n, d.up_us()),
        c0.tx_retransmits,
        c1.tx_retransmits,
        c0.rtos,
        c0.spurious_rtos,
        c1.rtos,
        c1.spurious_rtos,
        s.client.reinjected_bytes
    );
    assert!(s.e2s.lost > 10, "no loss: no test");
    assert!(
        c0.tx_retransmits + c1.tx_retransmits >= s.e2s.lost / 2,
        "{}",
        s.summary()
    );
    assert!(
        d.up_us() <= bound_us(&s, n, sum_rate(&s, false), frac),
        "upload {:.1} Mbit/s\n{}",
        mbit(n, d.up_us()),
        s.summary()
    );
}

/// RFC 8684 §3.3.1: a mapping may be given once for all the segments it covers
/// (Linux repeats it on each; the RFC does not require it). With such a client and
/// loss on its DSL uplink, fast retransmissions (which carry their mapping)
/// interleave with new segments whose mapping came earlier: each segment is mapped
/// by a mapping the converter has received, so none may be dropped as unmapped.
#[test]
fn sparse_mappings_survive_interleaved_retransmissions() {
    let lossy = PathSpec {
        up: dsl().up.lossy(0.01),
        down: dsl().down,
    };
    let mut st = setup(false, vec![lossy, lte()]);
    st.client.repeat_mapping = 0.0;
    st.client.mapping_segments = 4;
    st.seed = 14;
    let mut s = conn_joined(st);
    let n = 2 << 20;
    let d = transfer(&mut s, &pattern(n, 31), &pattern(10_000, 32), 120 * SEC);
    eprintln!(
        "sparse mappings, DSL uplink loss 1%: upload {:.1} Mbit/s, lost {}",
        mbit(n, d.up_us()),
        s.up[0].lost
    );
    assert!(s.up[0].lost > 0);
}

// ------------------------------------------------------------------ a path dies

/// One path (DSL or LTE) is cut both ways with data in flight and comes back a
/// second later: the connection never resets, every byte arrives once and in
/// order, the other path carries the data meanwhile, the revived subflow carries
/// data again, and no subflow keeps a hole (the engine retransmits the original
/// data on the original subflow, RFC 8684 §3.3.6).
fn path_dies_mid_download(v6: bool, dead: usize) {
    path_dies_mid_download_with(v6, dead, Scheduler::Aggregate);
}

fn path_dies_mid_download_with(v6: bool, dead: usize, scheduler: Scheduler) {
    let mut st = setup(v6, vec![dsl(), lte()]);
    // No primary_access prefixes: the initial subflow (DSL) is the primary.
    st.engine.scheduler = scheduler;
    let mut s = conn_joined(st);
    let live = 1 - dead;
    let name = ["DSL", "LTE"];
    let t0 = s.now;
    let (cut, back) = (t0 + 300 * MS, t0 + 1_300 * MS);
    s.cut_path(dead, cut, back);
    let n = 8 << 20;
    let d = transfer(&mut s, &pattern(30_000, 23), &pattern(n, 24), 60 * SEC);
    let c = &s.client;
    let gap = longest_gap(&s, cut, back);
    eprintln!(
        "{} cut {}..{} ms: download {:.1} Mbit/s in {} ms, longest gap {} ms; it carried {} B after revival, {} {} B during the cut",
        name[dead],
        (cut - t0) / MS,
        (back - t0) / MS,
        mbit(n, d.down_us()),
        d.down_us() / MS,
        gap / MS,
        c.subs[dead].rx_bytes_between(back, u64::MAX),
        name[live],
        c.subs[live].rx_bytes_between(cut, back)
    );
    assert!(
        s.down[dead].cut_drops > 0,
        "nothing was in flight on the cut path"
    );
    // multipath-scheduling.md R7: at most 300 ms (DSL cut) or 500 ms (LTE cut) is
    // the goal; 500 ms here for both.
    assert!(
        gap <= 500 * MS,
        "no progress for {} ms after the cut\n{}{}",
        gap / MS,
        s.summary(),
        s.timeline(cut - 100 * MS, back + 100 * MS, 50 * MS)
    );
    assert!(!c.conn_reset);
    assert!(c.subs.iter().all(|x| x.state == SubState::Established));
    assert!(
        c.subs[live].rx_bytes_between(cut, back) > 1 << 20,
        "the live path idled during the cut\n{}",
        s.summary()
    );
    assert!(
        c.subs[dead].rx_bytes_between(back, d.down) > 0,
        "the revived subflow carried no data\n{}",
        s.summary()
    );
    // At most the outage on top of a run at half the sum (a stall longer than the
    // server's 200 ms RTO makes it resend what the client may already have).
    let bound = bound_us(&s, n, sum_rate(&s, true), 0.5) + (back - cut);
    assert!(
        d.down_us() <= bound,
        "{} ms\n{}",
        d.down_us() / MS,
        s.summary()
    );
}

#[test]
fn dsl_dies_mid_download_and_comes_back_v4() {
    path_dies_mid_download(false, 0);
}

/// The same under the overflow policy, whose primary (DSL) carries everything while
/// it is not saturated: the spill subflow must take over just as fast.
#[test]
fn dsl_dies_mid_download_and_comes_back_overflow() {
    path_dies_mid_download_with(false, 0, Scheduler::Overflow);
}

#[test]
fn dsl_dies_mid_download_and_comes_back_v6() {
    path_dies_mid_download(true, 0);
}

#[test]
fn lte_dies_mid_download_and_comes_back() {
    path_dies_mid_download(false, 1);
}

/// The same outage during an upload: the client reinjects DSL's data on LTE, the
/// engine delivers each byte once to the server although DSL's copies arrive after
/// the revival too.
#[test]
fn dsl_dies_mid_upload_and_comes_back() {
    let mut s = conn_joined(setup(false, vec![dsl(), lte()]));
    let t0 = s.now;
    let (cut, back) = (t0 + 300 * MS, t0 + 1_300 * MS);
    s.cut_path(0, cut, back);
    let n = 8 << 20;
    let d = transfer(&mut s, &pattern(n, 25), &pattern(30_000, 26), 60 * SEC);
    let c = &s.client;
    eprintln!(
        "DSL cut during upload: {:.1} Mbit/s in {} ms, reinjected {} B, DSL after revival {} B",
        mbit(n, d.up_us()),
        d.up_us() / MS,
        c.reinjected_bytes,
        c.subs[0].tx_bytes_between(back, d.up)
    );
    assert!(s.up[0].cut_drops > 0);
    assert!(c.reinjected_bytes > 0);
    assert!(
        c.subs[0].tx_bytes_between(back, d.up) > 0,
        "{}",
        s.summary()
    );
}

// ------------------------------------------------------------------ backup subflows

/// A backup LTE subflow carries no data while DSL works, carries the download while
/// DSL is cut, and the download completes (RFC 8684 §3.2 B flag, §3.3.8).
fn backup_idles_until_the_primary_dies(mut s: MpSim) {
    let t0 = s.now;
    let (cut, back) = (t0 + 600 * MS, t0 + 1_600 * MS);
    s.cut_path(0, cut, back);
    let n = 6 << 20;
    let d = transfer(&mut s, &pattern(10_000, 27), &pattern(n, 28), 60 * SEC);
    let lte = &s.client.subs[1];
    let gap = longest_gap(&s, cut, back);
    eprintln!(
        "backup: LTE before the cut {} B, during {} B; done in {} ms, longest gap {} ms",
        lte.rx_bytes_between(0, cut),
        lte.rx_bytes_between(cut, back),
        d.down_us() / MS,
        gap / MS
    );
    assert_eq!(
        lte.rx_bytes_between(0, cut),
        0,
        "data on the backup subflow while the primary works\n{}",
        s.summary()
    );
    assert!(
        lte.rx_bytes_between(cut, back) > 0,
        "the backup carried nothing while the primary was dead\n{}",
        s.summary()
    );
    // The kernel MPTCP proxy stalled 0.88 s when DSL was cut (field-notes §7).
    assert!(
        gap <= SEC,
        "no progress for {} ms after the primary died\n{}{}",
        gap / MS,
        s.summary(),
        s.timeline(cut - 100 * MS, back + 100 * MS, 50 * MS)
    );
    assert!(
        s.client.subs[0].rx_bytes_between(back, d.down) > 0,
        "{}",
        s.summary()
    );
}

#[test]
fn backup_join_idles_until_the_primary_dies() {
    let mut st = setup(false, vec![dsl(), lte()]);
    st.client.subflows[1].backup = true;
    let s = conn_joined(st);
    let syn_b = s.client.subs[1].backup;
    assert!(syn_b);
    backup_idles_until_the_primary_dies(s);
}

#[test]
fn mp_prio_backup_idles_until_the_primary_dies() {
    let mut s = conn_joined(setup(false, vec![dsl(), lte()]));
    let now = s.now;
    s.client.set_backup(now, 1, true);
    s.run_for(200 * MS);
    backup_idles_until_the_primary_dies(s);
}

// ------------------------------------------------------------------ scheduler policies

/// `Scheduler::Failover`: one active subflow, the primary (the initial subflow)
/// while it works; LTE carries the download only while DSL is cut.
#[test]
fn failover_scheduler_uses_lte_only_while_dsl_is_dead() {
    let mut st = setup(false, vec![dsl(), lte()]);
    st.engine = mp_engine(8, Scheduler::Failover);
    backup_idles_until_the_primary_dies(conn_joined(st));
}

/// `Scheduler::Overflow`: an application-limited download of 8 Mbit/s (a fifth of
/// DSL) stays on DSL; LTE carries at most a few percent of it (multipath-scheduling
/// R11: "offered load below the primary's capacity → LTE ≤ 1 %").
#[test]
fn overflow_scheduler_keeps_a_light_download_on_the_primary() {
    let mut st = setup(false, vec![dsl(), lte()]);
    st.engine = mp_engine(8, Scheduler::Overflow);
    let mut s = conn_joined(st);
    // 20 kB (14 segments, one server burst) every 20 ms for 2 s.
    let chunk = pattern(20_000, 33);
    let mut want = Vec::new();
    for _ in 0..100 {
        s.server.write(&chunk);
        want.extend_from_slice(&chunk);
        s.run_for(20 * MS);
    }
    transfer(&mut s, &[], &[], 20 * SEC);
    assert_eq!(s.server.app, want);
    // Every server data segment was one placement, counted under its policy.
    let placed = s.engine.counters().placements;
    assert!(
        placed[Scheduler::Overflow as usize] >= (want.len() / 1460) as u64,
        "{placed:?}"
    );
    assert_eq!(
        placed[Scheduler::Aggregate as usize] + placed[Scheduler::Failover as usize],
        0
    );
    let lte = down_share(&s, 1);
    eprintln!("overflow, 8 Mbit/s offered: LTE share {lte:.3}");
    assert!(
        lte <= 0.05,
        "LTE carried {lte:.3} of a light download\n{}",
        s.summary()
    );
    assert_no_server_retransmissions(&s);
}

// ------------------------------------------------------------------ address removal

/// RFC 8684 §3.4.2: the client announces REMOVE_ADDR for LTE's address on DSL and
/// resets the LTE subflow mid-download; what was in flight there is delivered over
/// DSL, and the transfer completes on DSL alone.
#[test]
fn remove_addr_moves_the_download_to_the_remaining_path() {
    let mut s = conn_joined(setup(false, vec![dsl(), lte()]));
    let n = 4 << 20;
    let down = pattern(n, 29);
    s.server.write(&down);
    s.server.close();
    s.client.close();
    let ok = s.run_until(10 * SEC, |s| s.client.subs[1].rx_bytes() > 500_000);
    assert!(ok, "{}", s.summary());
    let now = s.now;
    s.client.remove_addr(now, 1, 0);
    // The engine may send on LTE until the REMOVE_ADDR and the RST reach it (the
    // client drops those); after one LTE round trip, nothing more.
    s.run_for(100 * MS);
    let lte_sent = s.down[1].sent;
    let ok = s.run_until(60 * SEC, |s| s.client.closed() && s.server.closed());
    assert_same("downstream", s.client.server_bytes(), &down, &s);
    s.assert_clean();
    assert!(ok, "{}", tail(&s));
    assert_eq!(
        s.down[1].sent, lte_sent,
        "the engine kept sending on a removed subflow"
    );
    assert_eq!(s.client.subs[1].state, SubState::Removed);
}

// ------------------------------------------------------- a loss-blind server

/// A server whose congestion window grows without bound (slow start from IW10 and
/// no loss response: a loss-based congestion control that sees no loss — the
/// engine repairs access losses locally, so CUBIC on a real server grows until
/// the receive window stops it) over DSL and LTE with 100 ms
/// tail-drop queues. The window toward the server is the subflows' free budget
/// (R8), so the server cannot overrun the access links: almost no queue drops,
/// few repairs, and the download still aggregates. (Before the budget window a
/// CUBIC server filled the repair-cache window of 4 MiB, every access queue
/// overflowed, and repairs of repairs stalled the download for seconds.)
#[test]
fn loss_blind_server_does_not_overrun_the_access_queues() {
    let mut dsl = dsl();
    let mut lte = lte();
    dsl.down.queue_us = 100 * MS;
    lte.down.queue_us = 100 * MS;
    let mut st = setup(false, vec![dsl, lte]);
    st.server.window_segments = 4096;
    st.server.initial_window = 10;
    let s = conn_joined(st);
    // Long enough for the slow start of both the server and the subflows' budgets
    // to be a small part of it.
    let n = 24 << 20;
    let s = aggregated_download(s, n, 0.8, 0.15);
    let segments = (n / 1400) as u64;
    let drops = s.down[0].queue_drops + s.down[1].queue_drops;
    let k = s.engine.counters();
    eprintln!(
        "queue drops {drops}, repairs {}, reinjections {}, longest queue {} / {} ms",
        k.repairs,
        k.reinjections,
        s.down[0].max_queue_us / MS,
        s.down[1].max_queue_us / MS
    );
    assert!(
        drops <= segments / 200,
        "{drops} queue drops for {segments} segments\n{}",
        s.summary()
    );
    assert!(
        k.repairs <= segments / 100,
        "{} repairs for {segments} segments\n{}",
        k.repairs,
        s.summary()
    );
    assert_no_server_retransmissions(&s);
}

// ----------------------------------------------------------- cache full / off

/// LTE loses 1 % while the repair cache is too small to hold anything useful
/// (`cache_limit_bytes` of two segments): losses the engine cannot repair from the
/// cache fall back to the server's retransmission, which fills the hole at its
/// original subflow sequence and mapping, and every byte still arrives once, in
/// order (no data-level copy differs). (With the cache off, a server retransmission
/// whose segments straddle the lost one's boundaries still ends in a zero fill:
/// docs/plan.md.)
fn lossy_download_without_cache(repair_cache: bool, limit: usize, seed: u64) -> MpSim {
    lossy_download_with(repair_cache, limit, seed, false)
}

fn lossy_download_with(repair_cache: bool, limit: usize, seed: u64, sack_recovery: bool) -> MpSim {
    let lossy = PathSpec {
        up: lte().up.lossy(0.01),
        down: lte().down.lossy(0.01),
    };
    let mut st = setup(false, vec![dsl(), lossy]);
    st.engine.repair_cache = repair_cache;
    st.engine.cache_limit_bytes = limit;
    st.server.sack_recovery = sack_recovery;
    st.seed = seed;
    let mut s = conn_joined(st);
    let n = 4 << 20;
    let d = transfer(&mut s, &pattern(50_000, 31), &pattern(n, 32), 120 * SEC);
    let k = s.engine.counters();
    eprintln!(
        "cache {repair_cache} limit {limit}: {:.1} Mbit/s, lost on LTE {}, repairs {}, zero fills {}, cache misses {}, cache full {}, server retransmits {}",
        mbit(n, d.down_us()),
        s.down[1].lost,
        k.repairs,
        k.zero_fills,
        k.cache_misses,
        k.cache_full,
        s.server.retransmits
    );
    assert!(s.down[1].lost > 0, "the path lost nothing: no test");
    s
}

/// With the repair cache off, a loss the engine cannot repair is revealed to the
/// server by SACK (issue 5 build 3, R2/R4): blocks only over data the client
/// holds (the simulator checks every block), and a server that recovers on SACK
/// resends at once instead of waiting for its RTO.
#[test]
fn unrepairable_loss_is_revealed_to_the_server_by_sack() {
    let rto_only = lossy_download_with(false, 4 << 20, 47, false);
    let with_sack = lossy_download_with(false, 4 << 20, 47, true);
    let (a, b) = (&rto_only.server, &with_sack.server);
    eprintln!(
        "cache off: server retransmits {} (RTO only) vs {} ({} on SACK); rounds of RTO back-off avoided",
        a.retransmits, b.retransmits, b.sack_retransmits
    );
    assert!(
        with_sack.engine.counters().cache_misses > 0,
        "nothing needed the server"
    );
    assert!(
        b.sack_retransmits > 0,
        "the server never saw a SACK above an unrepairable hole\n{}",
        with_sack.summary()
    );
    // The RTO-only run resends the whole window after each timeout (the model's
    // go-back-N); recovering on SACK resends little more than what was lost.
    assert!(
        b.retransmits < a.retransmits,
        "{} retransmissions with SACK vs {} without",
        b.retransmits,
        a.retransmits
    );
}

#[test]
fn repair_cache_full_falls_back_to_the_server() {
    let s = lossy_download_without_cache(true, 2 * 1448, 43);
    assert!(s.engine.counters().cache_full > 0, "the cache never filled");
}

/// A subflow that goes dead keeps its data in flight for subflow integrity, but
/// not the repair-cache copies of what the client already has at the data level
/// (re-sent on the live subflow and acknowledged): those holes are zero-filled
/// under their original mappings if the subflow comes back. Otherwise quiet
/// subflows pin the shard's cache and nothing can be repaired on any connection.
#[test]
fn dead_subflow_releases_cache_the_client_acknowledged_elsewhere() {
    let mut s = conn_joined(setup(false, vec![dsl(), lte()]));
    let t0 = s.now;
    let (cut, back) = (t0 + 300 * MS, t0 + 3_300 * MS);
    s.cut_path(0, cut, back);
    let down = pattern(16 << 20, 51);
    s.server.write(&down);
    s.run_until(cut + 2 * SEC, |_| false);
    let cfg = &s.client.cfg;
    let subs = s.engine.subflows(s.client.subs[0].addr, cfg.service);
    assert_eq!(subs.len(), 2, "{subs:?}");
    assert_eq!(subs[0].health, "dead", "{subs:?}");
    assert!(
        s.down[0].cut_drops > 0,
        "nothing was in flight on the cut path"
    );
    let (_, cached) = s.engine.cache_usage();
    // Only what LTE holds in flight (each segment once), plus a few segments.
    let live = subs[1].inflight as usize;
    assert!(
        cached <= live + 4 * 1448,
        "{cached} B cached with {live} B in flight on the live subflow\n{}",
        s.summary()
    );
    // The rest of the download, DSL's revival and the zero-filled holes included.
    s.client.close();
    s.server.close();
    s.run_until(120 * SEC, |s| s.client.closed() && s.server.closed());
    assert_same("downstream", s.client.server_bytes(), &s.server.app, &s);
    s.assert_clean();
    assert!(
        s.engine.counters().zero_fills > 0,
        "no hole was zero-filled"
    );
}

/// With the repair cache too small to help, the server's own retransmission of a
/// segment lost on a subflow that has since gone quiet is placed on a live
/// subflow, not into the dead one's hole (where it would be lost again and the
/// server back off once more, for seconds).
#[test]
fn server_retransmission_avoids_a_dead_subflow_when_the_cache_is_full() {
    let mut st = setup(false, vec![dsl(), lte()]);
    // The shard's limit (the state many connections share), not this
    // connection's byte limit (which also caps the server's window).
    st.engine.cache_limit_segments = 4;
    let mut s = conn_joined(st);
    let t0 = s.now;
    let (cut, back) = (t0 + 300 * MS, t0 + 3_300 * MS);
    s.cut_path(0, cut, back);
    let n = 8 << 20;
    let d = transfer(&mut s, &pattern(1_000, 52), &pattern(n, 53), 120 * SEC);
    let gap = longest_gap(&s, cut, back);
    eprintln!(
        "cache full, DSL cut: {:.1} Mbit/s, longest gap {} ms, server retransmits {}",
        mbit(n, d.down_us()),
        gap / MS,
        s.server.retransmits
    );
    assert!(s.engine.counters().cache_full > 0, "the cache never filled");
    assert!(
        s.down[0].cut_drops > 0,
        "nothing was in flight on the cut path"
    );
    // The server's RTO (200 ms floor) finds each unrepairable hole; one back-off
    // at most, not a series of them into the dead subflow.
    assert!(
        gap <= 1_000 * MS,
        "no progress for {} ms during the cut\n{}",
        gap / MS,
        s.summary()
    );
}

/// ACK equalisation: over subflows of very unequal delay (1 ms vs 50 ms one way)
/// the server never measures a round trip much below the slow subflow's once
/// both are known, so a server that sizes its window from its minimum RTT (BBR)
/// keeps enough in flight for the slow one; over equal delays nothing is held.
/// The server's window is two segments, which the fast subflow carries alone
/// (without the hold the server measures 22 ms here). Paths under eight times
/// apart (DSL/LTE) are held to 1.5 × the fast round trip only.
#[test]
fn ack_hold_equalises_the_servers_rtt_over_unequal_delays() {
    let min_rtt_after = |paths: Vec<PathSpec>| {
        let mut st = setup(false, paths);
        // A small window, as BBR's 2 × rate × minimum RTT of the fast path: all
        // of it fits on the fast subflow unless the server is told otherwise.
        st.server.window_segments = 2;
        let mut s = conn_joined(st);
        let t0 = s.now;
        let n = 1 << 20;
        transfer(&mut s, &pattern(1_000, 61), &pattern(n, 62), 60 * SEC);
        // From a second in: both subflows measured by then.
        let v: Vec<u64> = s
            .server
            .rtt_samples
            .iter()
            .filter(|&&(t, _)| t > t0 + SEC)
            .map(|&(_, r)| r)
            .collect();
        eprintln!(
            "downstream shares {:.2} / {:.2}",
            down_share(&s, 0),
            down_share(&s, 1)
        );
        assert!(v.len() > 100, "{} samples", v.len());
        *v.iter().min().expect("samples")
    };
    let unequal = min_rtt_after(vec![
        PathSpec::symmetric(10, 1),
        PathSpec::symmetric(10, 50),
    ]);
    let equal = min_rtt_after(vec![
        PathSpec::symmetric(10, 20),
        PathSpec::symmetric(10, 20),
    ]);
    let dsl_lte = min_rtt_after(vec![dsl(), lte()]);
    eprintln!(
        "server's minimum RTT sample: {} ms (1 vs 50 ms), {} ms (20 vs 20 ms), {} ms (DSL/LTE)",
        unequal / MS,
        equal / MS,
        dsl_lte / MS
    );
    // DSL/LTE (20 vs 80 ms round trips, under eight times apart): held to 1.5 ×
    // the DSL round trip, not 3/4 of LTE's (a BBR server sizing its window from
    // its 20 ms handshake could not use a 60 ms round trip), plus the server leg
    // and a release up to 2.5 ms early.
    assert!(
        (47 * MS..70 * MS).contains(&dsl_lte),
        "DSL/LTE: {dsl_lte} us"
    );
    // 3/4 of the slow subflow's 102 ms, plus the 20 ms server leg (without the
    // hold: the fast subflow's 2 ms plus the server leg).
    assert!(unequal >= 90 * MS, "{} us", unequal);
    // Equal delays: no hold; a path's 40 ms plus the server leg and queueing.
    assert!(equal < 100 * MS, "{} us", equal);
}

// ------------------------------------------------------------------ our ADD_ADDR, flag C

/// A second converter address of each family, announced with ADD_ADDR.
const SECOND_V4: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 9, 1));
const SECOND_V6: std::net::IpAddr =
    std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1));

/// The engine with the second addresses as service addresses, announced (v4 as
/// address ID 1, v6 as ID 2), and flag C as asked.
fn announcing(v6: bool, paths: Vec<PathSpec>, c_flag: bool, v4_port: Option<u16>) -> MpSetup {
    let mut st = setup(v6, paths);
    st.engine.service_addrs.extend([SECOND_V4, SECOND_V6]);
    st.engine.announce = vec![
        hac_core::Announce {
            addr: SECOND_V4,
            port: v4_port,
        },
        hac_core::Announce {
            addr: SECOND_V6,
            port: None,
        },
    ];
    st.engine.no_joins_to_initial_address = c_flag;
    st
}

/// HMAC-SHA256 (RFC 2104) written out here from SHA-256 alone, so that the ADD_ADDR
/// check does not share code with the engine's `hac_wire::crypto`.
fn hmac_sha256_rfc2104(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// RFC 8684 §3.4.1, from the text: key = sender's key ‖ receiver's key; message =
/// Address ID ‖ address ‖ port (two zero bytes when the option has no port);
/// truncated to the rightmost 64 bits.
fn rfc_add_addr_hmac(
    sender_key: u64,
    receiver_key: u64,
    id: u8,
    addr: std::net::IpAddr,
    port: Option<u16>,
) -> u64 {
    let mut key = sender_key.to_be_bytes().to_vec();
    key.extend_from_slice(&receiver_key.to_be_bytes());
    let mut msg = vec![id];
    match addr {
        std::net::IpAddr::V4(a) => msg.extend_from_slice(&a.octets()),
        std::net::IpAddr::V6(a) => msg.extend_from_slice(&a.octets()),
    }
    msg.extend_from_slice(&port.unwrap_or(0).to_be_bytes());
    let h = hmac_sha256_rfc2104(&key, &msg);
    u64::from_be_bytes(h[24..].try_into().unwrap())
}

/// RFC 8684 §3.1: flag C in our MP_CAPABLE SYN-ACK exactly when configured.
#[test]
fn c_flag_is_set_only_when_configured() {
    for c in [false, true] {
        let s = conn_joined(announcing(false, vec![dsl()], c, None));
        let flags = s.client.synack_flags.expect("MP_CAPABLE SYN-ACK");
        assert_eq!(
            flags.0 & hac_wire::mptcp::MpCapableFlags::C != 0,
            c,
            "C flag with no_joins_to_initial_address = {c}: {flags:?}"
        );
        assert!(flags.0 & hac_wire::mptcp::MpCapableFlags::H != 0);
    }
}

/// RFC 8684 §3.4.1: once established, the engine announces its other address of
/// the connection's family (not the one the client connected to, not the other
/// family), once, with the truncated HMAC of the RFC; the client's echo ends it.
fn add_addr_announced_once_and_echoed(v6: bool) {
    let mut s = conn_joined(announcing(v6, vec![dsl()], false, None));
    transfer(&mut s, &pattern(50_000, 1), &pattern(200_000, 2), 20 * SEC);
    s.run_for(30 * SEC);
    let (id, addr) = if v6 { (2, SECOND_V6) } else { (1, SECOND_V4) };
    let got = &s.client.add_addrs;
    assert_eq!(got.len(), 1, "one ADD_ADDR, echoed at once: {got:?}");
    let (at, sub, a) = got[0];
    assert_eq!(sub, 0, "on the initial subflow");
    assert!(
        s.client.subs[0].established_at.is_some_and(|e| at >= e),
        "ADD_ADDR before the connection was established"
    );
    assert_eq!((a.addr_id, a.addr, a.port), (id, addr, None));
    let want = rfc_add_addr_hmac(s.client.remote_key, s.client.key, id, addr, None);
    assert_eq!(a.hmac, Some(want), "truncated HMAC (RFC 8684 §3.4.1)");
    let c = s.engine.counters();
    assert_eq!(
        (c.add_addr_sent, c.add_addr_echoed, c.add_addr_unanswered),
        (1, 1, 0)
    );
}

#[test]
fn add_addr_is_announced_once_with_the_rfc_hmac_and_echoed_v4() {
    add_addr_announced_once_and_echoed(false);
}

#[test]
fn add_addr_is_announced_once_with_the_rfc_hmac_and_echoed_v6() {
    add_addr_announced_once_and_echoed(true);
}

/// A port in the announcement is in the HMAC's message.
#[test]
fn add_addr_with_a_port_carries_it_in_the_hmac() {
    let mut s = conn_joined(announcing(false, vec![dsl()], false, Some(6000)));
    s.run_for(2 * SEC);
    let (_, _, a) = s.client.add_addrs[0];
    assert_eq!(a.port, Some(6000));
    let want = rfc_add_addr_hmac(s.client.remote_key, s.client.key, 1, SECOND_V4, Some(6000));
    assert_eq!(a.hmac, Some(want));
}

/// Without the echo the announcement is re-sent at the retransmission timeout, four
/// transmissions in all, then given up; the connection is unaffected.
#[test]
fn add_addr_is_resent_until_echoed_and_bounded() {
    let mut st = announcing(false, vec![dsl()], false, None);
    st.client.echo_add_addr = false;
    let mut s = conn_joined(st);
    s.run_for(60 * SEC);
    let got = &s.client.add_addrs;
    assert_eq!(got.len(), 4, "first + 3 retransmissions: {got:?}");
    assert!(got.windows(2).all(|w| w[1].0 > w[0].0 && w[1].2 == w[0].2));
    let c = s.engine.counters();
    assert_eq!((c.add_addr_sent, c.add_addr_unanswered), (4, 1));
    transfer(&mut s, &pattern(50_000, 3), &pattern(300_000, 4), 20 * SEC);
    assert_eq!(s.client.add_addrs.len(), 4, "nothing re-sent later");
}

/// Joins to an announced address (and port) are accepted; with flag C a join to
/// the initial address is refused with MP_TCPRST "administratively prohibited";
/// data flows over the joined subflow.
#[test]
fn joins_go_to_the_announced_address_and_not_the_initial_one_with_c() {
    let mut st = announcing(false, vec![dsl(), lte(), lte()], true, Some(6000));
    st.client.subflows[1].service = Some(std::net::SocketAddr::new(SECOND_V4, 6000));
    st.client.subflows[2].addr = Some(client_addr(false, 2));
    st.client.subflows[2].expect_refusal = true;
    let mut s = conn_joined(st);
    assert_eq!(
        s.client.subs[1].state,
        SubState::Established,
        "{}",
        tail(&s)
    );
    // The SYN-ACK names the address by its announced ID (RFC 8684 §3.2).
    assert_eq!(s.client.subs[1].remote_addr_id, Some(1));
    assert_eq!(s.client.subs[2].state, SubState::Refused);
    let r = s.client.subs[2].rsts[0].tcprst().expect("MP_TCPRST");
    assert_eq!(
        r.reason,
        hac_wire::mptcp::TcpRstReason::AdministrativelyProhibited
    );
    assert_eq!(s.engine.counters().joins_accepted, 1);
    transfer(&mut s, &pattern(300_000, 5), &pattern(2 << 20, 6), 30 * SEC);
    assert!(down_share(&s, 1) > 0.1, "{}", s.summary());
}

/// Without flag C, the same join to the initial address is accepted.
#[test]
fn joins_to_the_initial_address_are_accepted_without_c() {
    let st = announcing(false, vec![dsl(), lte()], false, None);
    let s = conn_joined(st);
    assert_eq!(s.client.subs[1].state, SubState::Established);
    assert_eq!(s.client.subs[1].remote_addr_id, Some(0));
}

// ------------------------------------------------------------------ DSS checksum, MP_FAIL

/// A middlebox on an access path: from the `skip + 1`-th IPv4 client data segment of
/// at least 200 payload bytes on, `count` of them get one payload byte changed;
/// with `fix_tcp` the TCP checksum is recomputed (the change is invisible to TCP,
/// only the DSS checksum sees it), without it the segment is simply corrupt.
fn corrupt(skip: usize, count: usize, fix_tcp: bool) -> Mangle {
    let mut seen = 0;
    Box::new(move |p: &mut Vec<u8>| {
        if p.len() < 20 || p[0] >> 4 != 4 {
            return;
        }
        let ihl = usize::from(p[0] & 0xf) * 4;
        let doff = usize::from(p[ihl + 12] >> 4) * 4;
        if p.len() < ihl + doff + 200 {
            return;
        }
        seen += 1;
        if seen <= skip || seen > skip + count {
            return;
        }
        p[ihl + doff + 101] ^= 0x5a;
        if fix_tcp {
            p[ihl + 16] = 0;
            p[ihl + 17] = 0;
            let src = std::net::Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let dst = std::net::Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            let c = hac_wire::checksum::tcp_ipv4(src, dst, &p[ihl..]);
            p[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
        }
    })
}

fn csum_setup(paths: Vec<PathSpec>, mapping_segments: usize) -> MpSetup {
    let mut st = setup(false, paths);
    st.client.csum = true;
    st.client.mapping_segments = mapping_segments;
    st
}

/// A segment corrupted on the access link (its TCP checksum wrong) is dropped as
/// such while checksums are in use, never counted against its mapping: the client
/// retransmits it and the transfer is byte-exact, without MP_FAIL.
#[test]
fn corrupt_segment_is_dropped_not_counted_against_its_mapping() {
    let mut s = conn_joined(csum_setup(vec![dsl()], 3));
    s.up[0].mangle = Some(corrupt(5, 3, false));
    transfer(
        &mut s,
        &pattern(300_000, 9),
        &pattern(100_000, 10),
        30 * SEC,
    );
    let c = s.engine.counters();
    assert_eq!(c.drops[hac_core::DropReason::TcpChecksum as usize], 3);
    assert_eq!((c.dss_checksum_failed, c.mp_fail_sent), (0, 0));
    assert!(c.dss_checksum_ok > 50);
}

/// RFC 8684 §3.7, one subflow: a mapping whose payload a middlebox changed (TCP
/// checksum fixed up) fails its DSS checksum; the engine sends MP_FAIL with the
/// DSN where that mapping starts, once (no further checks until the client falls
/// back), and does not fall back before the client's infinite mapping.
#[test]
fn dss_checksum_failure_on_a_lone_subflow_sends_mp_fail() {
    let mut s = conn_joined(csum_setup(vec![dsl()], 3));
    s.up[0].mangle = Some(corrupt(5, 2, true));
    s.client.write(&pattern(200_000, 11));
    s.run_for(5 * SEC);
    let c = s.engine.counters();
    assert_eq!((c.dss_checksum_failed, c.mp_fail_sent), (1, 1), "{c:?}");
    assert_eq!(c.fallbacks, 0);
    let fails = &s.client.mp_fail_received;
    assert_eq!(fails.len(), 1, "{fails:?}");
    let (_, sub, dsn) = fails[0];
    assert_eq!(sub, 0);
    // Mappings of three segments from the first data byte: the failed one starts
    // at a multiple of three segments' worth of data.
    let off = dsn.0.wrapping_sub(s.client.idsn.0 + 1);
    assert!(off < 200_000, "MP_FAIL DSN {off} bytes past the IDSN");
    // The client's infinite mapping (RFC 8684 §3.3.1, length 0) ends MPTCP.
    assert!(s.engine.counters().drops[hac_core::DropReason::DssChecksum as usize] == 0);
}

/// RFC 8684 §3.7, several subflows: the subflow whose mapping failed is reset with
/// MP_FAIL and MP_TCPRST 0x06 (middlebox interference), the failed segment is not
/// delivered, and the client's data goes on over the other subflow byte-exact.
#[test]
fn dss_checksum_failure_with_two_subflows_resets_that_subflow() {
    let mut s = conn_joined(csum_setup(vec![dsl(), lte()], 1));
    // The client model sends its data on the faster subflow while it has room.
    s.up[0].mangle = Some(corrupt(3, 1, true));
    s.client.write(&pattern(400_000, 12));
    s.client.close();
    s.server.close();
    s.run_until(30 * SEC, |s| s.client.closed() && s.server.closed());
    let c = s.engine.counters();
    assert_eq!(c.dss_checksum_failed, 1, "{c:?}");
    assert_eq!(c.drops[hac_core::DropReason::DssChecksum as usize], 1);
    let rst = s.client.subs[0]
        .rsts
        .iter()
        .find(|r| r.tcprst().is_some())
        .expect("RST with MP_TCPRST on the DSL subflow");
    assert_eq!(
        rst.tcprst().unwrap().reason,
        hac_wire::mptcp::TcpRstReason::MiddleboxInterference
    );
    assert!(rst.mp_fail().is_some(), "RST without MP_FAIL");
    assert_eq!(s.client.subs[1].state, SubState::Established);
    let syn_app = s.client.cfg.syn_app.len();
    assert_eq!(
        &s.server.rx.data[syn_app..],
        &s.client.app[..],
        "upstream bytes differ"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// Fuzz-ish: with checksums in use on two subflows, a middlebox changes random
    /// bytes (payload, options or headers, TCP checksum fixed up or not) of random
    /// client packets; the engine never panics, whatever it makes of them.
    #[test]
    fn corrupted_client_packets_never_panic(
        seed in proptest::prelude::any::<u64>(),
        rate in 1u64..20,
        fix in proptest::prelude::any::<bool>(),
    ) {
        let mut s = conn_joined(csum_setup(vec![dsl(), lte()], 3));
        for i in 0..2 {
            let mut x = seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            s.up[i].mangle = Some(Box::new(move |p: &mut Vec<u8>| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x % 100 >= rate || p.len() < 41 || p[0] >> 4 != 4 {
                    return;
                }
                let at = 20 + (x >> 32) as usize % (p.len() - 20);
                p[at] ^= (x >> 8) as u8 | 1;
                if fix {
                    p[36] = 0;
                    p[37] = 0;
                    let src = std::net::Ipv4Addr::new(p[12], p[13], p[14], p[15]);
                    let dst = std::net::Ipv4Addr::new(p[16], p[17], p[18], p[19]);
                    let c = hac_wire::checksum::tcp_ipv4(src, dst, &p[20..]);
                    p[36..38].copy_from_slice(&c.to_be_bytes());
                }
            }));
        }
        s.client.write(&pattern(200_000, 13));
        s.server.write(&pattern(200_000, 14));
        s.run_for(3 * SEC);
    }
}

/// The server's FIN riding on a retransmission of its last bytes, which already
/// went to the client: the DATA_FIN is never mapped onto those bytes again (Linux
/// discards such a mapping's bytes as old and never acts on its DATA_FIN, then
/// ignores every data-less DATA_FIN: the client model flags it as an anomaly).
/// With the bytes acknowledged by the client the FIN goes alone, data-less; with
/// them not acknowledged yet the bytes go alone and the server's FIN
/// retransmission brings the DATA_FIN. Found by the dual-proxy lab's 1,000
/// connections (issue 7).
fn fin_on_a_retransmission_of_forwarded_bytes(acked_first: bool) {
    let mut s = conn_joined(setup(false, vec![dsl(), lte()]));
    let down = pattern(40_000, 11);
    s.server.write(&down);
    let ok = s.run_until(10 * SEC, |s| s.client.server_bytes().len() >= down.len());
    assert!(ok, "download incomplete:\n{}", tail(&s));
    if acked_first {
        // The client's DATA_ACKs reach the converter (LTE: 40 ms one way).
        s.run_for(200_000);
    }
    let now = s.now;
    s.server.close_on_retransmission(now, 1000);
    s.client.close();
    let closed = s.run_until(20 * SEC, |s| s.client.closed() && s.server.closed());
    save_log(&s);
    assert_same("downstream", s.client.server_bytes(), &s.server.app, &s);
    s.assert_clean();
    assert!(
        closed && s.client.data_closed(),
        "the connection did not end:\n{}",
        tail(&s)
    );
}

#[test]
fn server_fin_on_a_retransmission_of_acknowledged_bytes_goes_data_less() {
    fin_on_a_retransmission_of_forwarded_bytes(true);
}

#[test]
fn server_fin_on_a_retransmission_of_unacknowledged_bytes_waits_for_its_own() {
    fin_on_a_retransmission_of_forwarded_bytes(false);
}

/// Not a check: prints a time series (every 100 ms) of a long DSL/LTE download —
/// the server's cumulative ACK, flight and window, and the engine's view of each
/// subflow — to see where a scenario loses goodput (docs/plan.md item 1).
/// `DIAG_LOSS` (LTE loss, default 0.005), `DIAG_MB` (download, default 32),
/// `DIAG_WSEG` (the server's window in segments, default 2000), `DIAG_QUEUE_MS`
/// (the access queues, default unlimited; the lab's are 100 ms):
/// `cargo test --release -p hac-core --test multipath diag_loss_series -- --ignored --nocapture`
#[test]
#[ignore = "diagnostic: prints a time series, asserts nothing"]
fn diag_loss_series() {
    let env = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let loss = env("DIAG_LOSS", 0.005);
    let n = (env("DIAG_MB", 32.0) * f64::from(1u32 << 20)) as usize;
    let lossy = PathSpec {
        up: lte().up.lossy(loss),
        down: lte().down.lossy(loss),
    };
    let mut paths = vec![dsl(), lossy];
    // `DIAG_QUEUE_MS`: the lab's access queues (100 ms), 0 = unlimited.
    let queue_us = env("DIAG_QUEUE_MS", 0.0) as u64 * MS;
    for p in &mut paths {
        p.up.queue_us = queue_us;
        p.down.queue_us = queue_us;
    }
    let mut st = setup(false, paths);
    st.seed = 11;
    st.server.window_segments = env("DIAG_WSEG", 2000.0) as u64;
    let mut s = conn_joined(st);
    let start = s.now;
    s.client.close();
    s.server.write(&pattern(n, 20));
    s.server.close();
    let want = s.server.app.len();
    let (ca, sv) = (s.client.subs[0].addr, s.client.subs[0].service);
    let (mut next, mut last_rx) = (s.now, 0usize);
    let mut rows = Vec::new();
    s.run_until(200 * SEC, |s| {
        if s.now >= next {
            next += 100 * MS;
            let (una, nxt, wnd) = s.server.send_view();
            let rx = s.client.server_bytes().len();
            let mut line = format!(
                "{:6.2}s rx {:5.1} Mbit/s una {una:9} flight {:8} wnd {wnd:8}",
                (s.now - start) as f64 / 1e6,
                (rx - last_rx) as f64 * 8.0 / 0.1 / 1e6,
                nxt - una,
            );
            for p in s.engine.subflows(ca, sv) {
                line += &format!(
                    " | rtt {:3}/{:3} ms bw {:4.1} in {:7} budget {:7}",
                    p.min_rtt_us / 1000,
                    p.srtt_us / 1000,
                    p.rate as f64 * 8.0 / 1e6,
                    p.inflight,
                    p.budget
                );
            }
            rows.push(line);
            last_rx = rx;
        }
        s.client.server_bytes().len() >= want
    });
    for r in &rows {
        eprintln!("{r}");
    }
    eprintln!(
        "LTE loss {loss}: {:.2} Mbit/s, {} lost on LTE; queue drops DSL {} LTE {}, longest queue DSL {} LTE {} ms",
        mbit(n, s.now - start),
        s.down[1].lost,
        s.down[0].queue_drops,
        s.down[1].queue_drops,
        s.down[0].max_queue_us / 1000,
        s.down[1].max_queue_us / 1000,
    );
}
