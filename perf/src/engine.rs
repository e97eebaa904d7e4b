//! Fixtures for the `hac-core` engine benchmarks: an IPv4 MPTCP client and a TCP
//! server simulated at the packet level, enough to drive real Convert handshakes
//! through the engine and to build valid established data segments.
//!
//! Everything the peers need (ISNs, pool address and port, the converter's key) is
//! learned by parsing the engine's own outputs, as a real peer would.
//!
//! Addresses (documentation / benchmarking ranges): clients in 198.18.0.0/15,
//! converter service 192.0.2.1:5124, server 203.0.113.80:443, pool 198.19.0.0/16
//! on the server side.

use std::net::{Ipv4Addr, SocketAddrV4};

use hac_core::pool::{PoolConfig, Prefix};
use hac_core::{Action, Engine, EngineConfig, Instant, PacketBuf, Port, VecPacket};
use hac_wire::convert::MessageBuilder;
use hac_wire::crypto::key_material;
use hac_wire::mptcp::{
    DataSeqField, DssRepr, Mapping, MpCapableFlags, MpCapableForm, MpCapableRepr, MptcpOption,
};
use hac_wire::seq::{DataSeq, SeqNum};
use hac_wire::tcp::{self, Flags, TcpRepr};
use hac_wire::tcp_options::{self, OptionsBuilder, TcpOption};
use hac_wire::{checksum, ipv4};

/// The converter's service address.
pub const SERVICE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 5124);
/// The server every client asks for.
pub const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 80), 443);
/// The pool prefix (a /16: the largest prefix the pool counts, 65,536 addresses).
pub const POOL: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
/// Client connections per client address (so that paired pooling spreads them).
pub const PORTS_PER_CLIENT: u32 = 1000;
/// The engine's seed (deterministic: two engines fed the same packets agree).
pub const SEED: u64 = 0x5eed_beef;

/// Scheme of the client leg: window scale and timestamps as Linux sends them.
const CLIENT_WS: u8 = 7;
const SERVER_WS: u8 = 7;

/// Engine configuration for the benchmarks: one IPv4 /16 pool, `max_connections`.
#[must_use]
pub fn config(max_connections: usize) -> EngineConfig {
    EngineConfig {
        service_addrs: vec![(*SERVICE.ip()).into()],
        service_port: SERVICE.port(),
        pool: PoolConfig {
            prefixes: vec![Prefix {
                addr: POOL.into(),
                len: 16,
            }],
            ..PoolConfig::default()
        },
        max_connections,
        ..EngineConfig::default()
    }
}

/// A fresh single-shard engine.
///
/// # Panics
/// When the configuration does not validate.
#[must_use]
pub fn engine(max_connections: usize, now: Instant) -> Engine<VecPacket> {
    Engine::new(config(max_connections), 0, 1, SEED, now).expect("valid engine config")
}

/// The `i`-th client socket: `PORTS_PER_CLIENT` ports on each address of
/// 198.18.0.0/15, starting at 198.18.0.1.
#[must_use]
pub fn client_sock(i: u32) -> SocketAddrV4 {
    let host = 1 + i / PORTS_PER_CLIENT;
    let ip = Ipv4Addr::from_bits(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + host);
    SocketAddrV4::new(ip, 10_000 + (i % PORTS_PER_CLIENT) as u16)
}

/// A client MPTCP key for connection `i` (any value works).
#[must_use]
pub fn client_key(i: u32) -> u64 {
    0x0123_4567_89ab_cdef ^ u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Options built with an [`OptionsBuilder`], padded to a multiple of 4.
fn options(f: impl FnOnce(&mut OptionsBuilder<'_>)) -> ([u8; 40], usize) {
    let mut buf = [0u8; 40];
    let n = {
        let mut b = OptionsBuilder::new(&mut buf);
        f(&mut b);
        b.finish().expect("options fit in 40 bytes")
    };
    (buf, n)
}

fn push(b: &mut OptionsBuilder<'_>, o: &TcpOption<'_>) {
    b.push(o).expect("option fits");
}

fn push_ts(b: &mut OptionsBuilder<'_>, tsval: u32, tsecr: u32) {
    push(b, &TcpOption::NoOperation);
    push(b, &TcpOption::NoOperation);
    push(b, &TcpOption::Timestamps { tsval, tsecr });
}

fn push_mptcp(b: &mut OptionsBuilder<'_>, o: &MptcpOption<'_>) {
    let mut raw = [0u8; 40];
    let n = o.emit(&mut raw).expect("MPTCP option");
    b.push_raw(&raw[..n]).expect("MPTCP option fits");
}

/// One IPv4/TCP packet with valid IP and TCP checksums.
///
/// # Panics
/// When the options exceed 40 bytes.
#[allow(clippy::too_many_arguments)]
#[must_use]
pub fn tcp4(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: SeqNum,
    ack: SeqNum,
    flags: Flags,
    window: u16,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let t = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        seq_number: seq,
        ack_number: ack,
        flags,
        window_len: window,
        urgent_at: 0,
        options: opts,
        payload_len: payload.len(),
    };
    let tl = t.buffer_len();
    let mut v = vec![0u8; ipv4::HEADER_LEN + tl];
    ipv4::Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        protocol: ipv4::PROTO_TCP,
        payload_len: tl,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: true,
    }
    .emit(&mut v)
    .expect("IPv4 header");
    let h = t.emit(&mut v[ipv4::HEADER_LEN..]).expect("TCP header fits");
    v[ipv4::HEADER_LEN + h..].copy_from_slice(payload);
    tcp::Packet::new_unchecked(&mut v[ipv4::HEADER_LEN..]).fill_checksum_v4(*src.ip(), *dst.ip());
    v
}

/// What a peer reads from a packet the engine sent.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Source socket.
    pub src: SocketAddrV4,
    /// Destination socket.
    pub dst: SocketAddrV4,
    /// Sequence number.
    pub seq: SeqNum,
    /// Acknowledgement number.
    pub ack: SeqNum,
    /// Flags.
    pub flags: Flags,
    /// Window field.
    pub window: u16,
    /// Timestamps option.
    pub ts: Option<(u32, u32)>,
    /// MP_CAPABLE option.
    pub mp_capable: Option<MpCapableRepr>,
    /// DSS option.
    pub dss: Option<DssRepr>,
    /// Any other MPTCP option present.
    pub other_mptcp: bool,
    /// TCP payload.
    pub payload: Vec<u8>,
    /// The TCP checksum verifies.
    pub checksum_ok: bool,
}

/// Parses an IPv4/TCP packet the engine produced.
///
/// # Panics
/// When it is not a well-formed IPv4/TCP packet.
#[must_use]
pub fn inspect(pkt: &[u8]) -> Seen {
    let ip = ipv4::Packet::new_checked(pkt).expect("IPv4 packet");
    assert_eq!(ip.protocol(), ipv4::PROTO_TCP, "not TCP");
    let (s, d) = (ip.src_addr(), ip.dst_addr());
    let seg = ip.payload();
    let t = tcp::Packet::new_checked(seg).expect("TCP segment");
    let mut seen = Seen {
        src: SocketAddrV4::new(s, t.src_port()),
        dst: SocketAddrV4::new(d, t.dst_port()),
        seq: t.seq_number(),
        ack: t.ack_number(),
        flags: t.flags(),
        window: t.window_len(),
        ts: None,
        mp_capable: None,
        dss: None,
        other_mptcp: false,
        payload: t.payload().to_vec(),
        checksum_ok: checksum::tcp_ipv4(s, d, seg) == 0,
    };
    for o in tcp_options::iter(t.options()) {
        match o.expect("options parse") {
            TcpOption::Timestamps { tsval, tsecr } => seen.ts = Some((tsval, tsecr)),
            TcpOption::Mptcp(raw) => match MptcpOption::parse(raw).expect("MPTCP option") {
                MptcpOption::MpCapable(m) => seen.mp_capable = Some(m),
                MptcpOption::Dss(d) => seen.dss = Some(d),
                _ => seen.other_mptcp = true,
            },
            _ => {}
        }
    }
    seen
}

/// Everything both peers know about one established connection.
#[derive(Debug, Clone, Copy)]
pub struct Established {
    /// Client socket.
    pub client: SocketAddrV4,
    /// The engine's pool socket toward the server.
    pub pool: SocketAddrV4,
    /// Client ISN.
    pub c_isn: SeqNum,
    /// Bytes of the client SYN payload (the Convert message).
    pub syn_len: u32,
    /// The converter's ISN toward the client.
    pub e_isn: SeqNum,
    /// The converter's ISN toward the server.
    pub p_isn: SeqNum,
    /// The server's ISN.
    pub s_isn: SeqNum,
    /// Client MPTCP key.
    pub client_key: u64,
    /// The converter's MPTCP key (from its SYN-ACK).
    pub local_key: u64,
    /// Client IDSN.
    pub client_idsn: DataSeq,
    /// The converter's IDSN.
    pub local_idsn: DataSeq,
    /// Length of the Convert reply (first DSS-mapped bytes toward the client).
    pub reply_len: u32,
    /// Last TSval the engine sent the client / the server.
    pub ts_to_client: u32,
    /// Last TSval the engine sent the server.
    pub ts_to_server: u32,
}

/// Client TSval of the benchmark (constant: the engine maps it, it need not grow).
pub const CLIENT_TSVAL: u32 = 0x1000_0000;
/// Server TSval.
pub const SERVER_TSVAL: u32 = 0x2000_0000;

/// The three packets of a handshake as fed to the engine, and what followed.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Client SYN (MP_CAPABLE, Convert Connect in the payload).
    pub syn: Vec<u8>,
    /// Server SYN-ACK.
    pub syn_ack: Vec<u8>,
    /// Client third ACK (MP_CAPABLE with both keys).
    pub ack: Vec<u8>,
    /// The resulting connection.
    pub conn: Established,
}

/// The client's SYN for connection `i`.
#[must_use]
pub fn client_syn(i: u32) -> (Vec<u8>, SeqNum, u32) {
    let client = client_sock(i);
    let c_isn = SeqNum(0x1111_0000 ^ i.wrapping_mul(2_654_435_761));
    let (o, n) = options(|b| {
        push(b, &TcpOption::Mss(1460));
        push(b, &TcpOption::SackPermitted);
        push(
            b,
            &TcpOption::Timestamps {
                tsval: CLIENT_TSVAL,
                tsecr: 0,
            },
        );
        push(b, &TcpOption::NoOperation);
        push(b, &TcpOption::WindowScale(CLIENT_WS));
        push_mptcp(
            b,
            &MptcpOption::MpCapable(MpCapableRepr {
                version: 1,
                flags: MpCapableFlags(MpCapableFlags::H),
                form: MpCapableForm::Syn,
            }),
        );
    });
    let mut msg = [0u8; 64];
    let m = {
        let mut b = MessageBuilder::new(&mut msg).expect("convert builder");
        b.connect(std::net::SocketAddr::V4(SERVER))
            .expect("connect TLV");
        b.finish().expect("convert message")
    };
    let syn = tcp4(
        client,
        SERVICE,
        c_isn,
        SeqNum(0),
        Flags::SYN,
        64_240,
        &o[..n],
        &msg[..m],
    );
    (syn, c_isn, m as u32)
}

fn expect_consumed(e: &Engine<VecPacket>, what: &str, a: Action) {
    assert!(
        matches!(a, Action::Consumed),
        "{what}: expected Consumed, got {a:?}; counters {:?}",
        e.counters()
    );
}

/// Drains the engine's outputs.
pub fn drain(
    e: &mut Engine<VecPacket>,
    now: Instant,
    buf: &mut [u8],
    out: &mut Vec<(Port, Vec<u8>)>,
) {
    while let Some(t) = e.poll_transmit(now, buf) {
        out.push((t.port, buf[..t.len].to_vec()));
    }
}

/// Runs connection `i`'s Convert handshake through `e` at `now`: client SYN →
/// downstream SYN, server SYN-ACK → our ACK + SYN-ACK to the client, client third
/// ACK → Convert reply. Checks every output and returns the packets fed in.
///
/// # Panics
/// When the engine does not answer as RFC 8803 / RFC 8684 say it should.
pub fn handshake(e: &mut Engine<VecPacket>, now: Instant, i: u32) -> Handshake {
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::new();
    let client = client_sock(i);
    let client_key = client_key(i);
    // 1. Client SYN.
    let (syn, c_isn, syn_len) = client_syn(i);
    let mut p = VecPacket::from_bytes(&syn);
    let a = e.handle_packet(now, Port::Access, &mut p);
    expect_consumed(e, "client SYN", a);
    drain(e, now, &mut buf, &mut out);
    assert_eq!(out.len(), 1, "one downstream SYN");
    let (port, ref s) = out[0];
    assert_eq!(port, Port::Core);
    let s = inspect(s);
    assert!(s.flags.syn() && !s.flags.ack() && s.checksum_ok);
    assert_eq!(s.dst, SERVER);
    let (pool, p_isn) = (s.src, s.seq);
    let ts_srv = s.ts.expect("timestamps toward the server").0;
    // 2. Server SYN-ACK.
    let s_isn = SeqNum(0x2222_0000 ^ i.wrapping_mul(40_503));
    let (o, n) = options(|b| {
        push(b, &TcpOption::Mss(1460));
        push(b, &TcpOption::SackPermitted);
        push(
            b,
            &TcpOption::Timestamps {
                tsval: SERVER_TSVAL,
                tsecr: ts_srv,
            },
        );
        push(b, &TcpOption::NoOperation);
        push(b, &TcpOption::WindowScale(SERVER_WS));
    });
    let syn_ack = tcp4(
        SERVER,
        pool,
        s_isn,
        p_isn + 1,
        Flags::SYN | Flags::ACK,
        65_160,
        &o[..n],
        &[],
    );
    let mut p = VecPacket::from_bytes(&syn_ack);
    let a = e.handle_packet(now, Port::Core, &mut p);
    expect_consumed(e, "server SYN-ACK", a);
    out.clear();
    drain(e, now, &mut buf, &mut out);
    let mut client_synack = None;
    for (port, pkt) in &out {
        let s = inspect(pkt);
        assert!(s.checksum_ok);
        // The ACK of the server's SYN-ACK waits for the client's handshake ACK
        // (docs/translation.md: the deferred server ACK).
        assert_eq!(*port, Port::Access, "only the SYN-ACK leaves now");
        client_synack = Some(s);
    }
    let sa = client_synack.expect("SYN-ACK to the client");
    assert!(sa.flags.syn() && sa.flags.ack());
    assert_eq!(
        sa.ack,
        c_isn + 1 + syn_len,
        "whole SYN payload acknowledged"
    );
    assert!(sa.payload.is_empty(), "no data in the MPTCP SYN-ACK");
    let local_key = match sa.mp_capable.expect("MP_CAPABLE in the SYN-ACK").form {
        MpCapableForm::SynAck { sender_key } => sender_key,
        f => panic!("unexpected MP_CAPABLE form {f:?}"),
    };
    let e_isn = sa.seq;
    let ts_cli = sa.ts.expect("timestamps toward the client").0;
    // 3. Client third ACK with both keys.
    let (o, n) = options(|b| {
        push_ts(b, CLIENT_TSVAL, ts_cli);
        push_mptcp(
            b,
            &MptcpOption::MpCapable(MpCapableRepr {
                version: 1,
                flags: MpCapableFlags(MpCapableFlags::H),
                form: MpCapableForm::Ack {
                    sender_key: client_key,
                    receiver_key: local_key,
                },
            }),
        );
    });
    let ack = tcp4(
        client,
        SERVICE,
        c_isn + 1 + syn_len,
        e_isn + 1,
        Flags::ACK,
        502,
        &o[..n],
        &[],
    );
    let mut p = VecPacket::from_bytes(&ack);
    let a = e.handle_packet(now, Port::Access, &mut p);
    assert!(
        !matches!(a, Action::Drop(_)),
        "third ACK dropped: {a:?}; counters {:?}",
        e.counters()
    );
    out.clear();
    drain(e, now, &mut buf, &mut out);
    let server_ack = out
        .iter()
        .filter(|(p, _)| *p == Port::Core)
        .map(|(_, b)| inspect(b))
        .find(|s| s.flags.ack() && !s.flags.syn())
        .expect("ACK of the server's SYN-ACK after the client's handshake ACK");
    assert!(server_ack.checksum_ok);
    assert_eq!(server_ack.ack, s_isn + 1);
    let reply = out
        .iter()
        .filter(|(p, _)| *p == Port::Access)
        .map(|(_, b)| inspect(b))
        .find(|s| !s.payload.is_empty())
        .expect("Convert reply toward the client");
    assert!(reply.checksum_ok);
    let local_idsn = key_material(local_key).idsn;
    let client_idsn = key_material(client_key).idsn;
    let dss = reply.dss.expect("DSS on the Convert reply");
    let m = dss.mapping.expect("mapping on the Convert reply");
    assert_eq!(
        m.dsn.expand(local_idsn),
        local_idsn + 1,
        "reply DSN = IDSN+1"
    );
    assert_eq!(m.ssn, 1, "reply SSN = 1");
    assert_eq!(
        dss.data_ack.map(|a| a.expand(client_idsn)),
        Some(client_idsn + 1),
        "reply DATA_ACK = client IDSN + 1"
    );
    Handshake {
        syn,
        syn_ack,
        ack,
        conn: Established {
            client,
            pool,
            c_isn,
            syn_len,
            e_isn,
            p_isn,
            s_isn,
            client_key,
            local_key,
            client_idsn,
            local_idsn,
            reply_len: reply.payload.len() as u32,
            ts_to_client: reply.ts.map_or(ts_cli, |t| t.0),
            ts_to_server: ts_srv,
        },
    }
}

/// A deterministic payload.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

impl Established {
    /// A client → server data segment at the start of the client's stream: DSS with
    /// a 64-bit DATA_ACK (acknowledging the Convert reply) and a 64-bit mapping
    /// (DSN = IDSN+1, SSN 1), timestamps. 40 option bytes, as Linux sends them.
    #[must_use]
    pub fn client_data(&self, len: usize) -> Vec<u8> {
        let (o, n) = options(|b| {
            push_ts(b, CLIENT_TSVAL, self.ts_to_client);
            push_mptcp(
                b,
                &MptcpOption::Dss(DssRepr {
                    data_ack: Some(DataSeqField::Bits64(
                        self.local_idsn + 1 + u64::from(self.reply_len),
                    )),
                    mapping: Some(Mapping {
                        dsn: DataSeqField::Bits64(self.client_idsn + 1),
                        ssn: 1,
                        data_len: len as u16,
                        checksum: None,
                    }),
                    data_fin: false,
                }),
            );
        });
        tcp4(
            self.client,
            SERVICE,
            self.c_isn + 1 + self.syn_len,
            self.e_isn + 1 + self.reply_len,
            Flags::ACK | Flags::PSH,
            502,
            &o[..n],
            &payload(len),
        )
    }

    /// A client pure ACK of the Convert reply (DSS with only a 64-bit DATA_ACK).
    #[must_use]
    pub fn client_reply_ack(&self) -> Vec<u8> {
        let (o, n) = options(|b| {
            push_ts(b, CLIENT_TSVAL, self.ts_to_client);
            push_mptcp(
                b,
                &MptcpOption::Dss(DssRepr {
                    data_ack: Some(DataSeqField::Bits64(
                        self.local_idsn + 1 + u64::from(self.reply_len),
                    )),
                    mapping: None,
                    data_fin: false,
                }),
            );
        });
        tcp4(
            self.client,
            SERVICE,
            self.c_isn + 1 + self.syn_len,
            self.e_isn + 1 + self.reply_len,
            Flags::ACK,
            502,
            &o[..n],
            &[],
        )
    }

    /// A server → client data segment at the start of the server's stream, with
    /// timestamps, acknowledging nothing new.
    #[must_use]
    pub fn server_data(&self, len: usize) -> Vec<u8> {
        let (o, n) = options(|b| push_ts(b, SERVER_TSVAL, self.ts_to_server));
        tcp4(
            SERVER,
            self.pool,
            self.s_isn + 1,
            self.p_isn + 1,
            Flags::ACK | Flags::PSH,
            509,
            &o[..n],
            &payload(len),
        )
    }
}

/// Feeds the client's ACK of the Convert reply, so that the connection is
/// established with nothing outstanding (what an idle connection looks like).
///
/// # Panics
/// When the engine drops it.
pub fn ack_reply(e: &mut Engine<VecPacket>, now: Instant, c: &Established) {
    let mut p = VecPacket::from_bytes(&c.client_reply_ack());
    let a = e.handle_packet(now, Port::Access, &mut p);
    assert!(
        !matches!(a, Action::Drop(_)),
        "ACK of the reply dropped: {a:?}; counters {:?}",
        e.counters()
    );
}

/// An engine with one established connection (reply acknowledged) and the
/// connection's numbers; `background` other connections are opened first so the
/// binding tables are not trivially small.
///
/// # Panics
/// When a handshake fails.
#[must_use]
pub fn established(background: u32) -> (Engine<VecPacket>, Established) {
    let now = Instant(1_000_000);
    let mut e = engine(1 << 22, now);
    for i in 0..background {
        let h = handshake(&mut e, now, i);
        ack_reply(&mut e, now, &h.conn);
    }
    let h = handshake(&mut e, now, background);
    ack_reply(&mut e, now, &h.conn);
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::new();
    drain(&mut e, now, &mut buf, &mut out);
    (e, h.conn)
}

/// Checks that `e` translates the client data segment of `len` bytes into a
/// server segment with the right numbers, and the server segment into a client
/// segment with a DSS mapping, each a valid packet. Returns the two outputs.
///
/// # Panics
/// When a translation is wrong.
pub fn check_data_path(
    e: &mut Engine<VecPacket>,
    now: Instant,
    c: &Established,
    len: usize,
) -> (Seen, Seen) {
    let mut p = VecPacket::from_bytes(&c.client_data(len));
    let a = e.handle_packet(now, Port::Access, &mut p);
    assert_eq!(
        a,
        Action::Forward(Port::Core),
        "upstream: counters {:?}",
        e.counters()
    );
    let up = inspect(p.data());
    assert!(up.checksum_ok, "upstream checksum");
    assert_eq!((up.src, up.dst), (c.pool, SERVER));
    assert_eq!(up.seq, c.p_isn + 1, "upstream seq");
    assert_eq!(up.ack, c.s_isn + 1, "upstream ack");
    assert_eq!(up.payload, payload(len));
    assert!(up.dss.is_none() && up.mp_capable.is_none() && !up.other_mptcp);
    assert!(up.ts.is_some(), "timestamps toward the server");
    let mut p = VecPacket::from_bytes(&c.server_data(len));
    let a = e.handle_packet(now, Port::Core, &mut p);
    assert_eq!(
        a,
        Action::Forward(Port::Access),
        "downstream: counters {:?}",
        e.counters()
    );
    let down = inspect(p.data());
    assert!(down.checksum_ok, "downstream checksum");
    assert_eq!((down.src, down.dst), (SERVICE, c.client));
    assert_eq!(down.seq, c.e_isn + 1 + c.reply_len, "downstream seq");
    assert_eq!(down.payload, payload(len));
    let dss = down.dss.expect("DSS toward the client");
    let m = dss.mapping.expect("mapping toward the client");
    assert_eq!(
        m.dsn.expand(c.local_idsn),
        c.local_idsn + 1 + u64::from(c.reply_len),
        "downstream DSN"
    );
    assert_eq!(m.ssn, 1 + c.reply_len, "downstream SSN");
    assert_eq!(usize::from(m.data_len), len);
    let dack = dss.data_ack.expect("DATA_ACK toward the client");
    assert!(dack.is_64(), "64-bit DATA_ACK");
    (up, down)
}

/// Replays a recorded handshake's packets through `e` (as a timed benchmark
/// would), draining every output into `buf`. Returns the number of packets the
/// engine forwarded or generated.
pub fn replay_handshake(
    e: &mut Engine<VecPacket>,
    now: Instant,
    h: &mut [VecPacket; 3],
    buf: &mut [u8],
) -> u32 {
    let mut n = 0;
    for (p, port) in h.iter_mut().zip([Port::Access, Port::Core, Port::Access]) {
        if let Action::Forward(_) = e.handle_packet(now, port, p) {
            n += 1;
        }
        while e.poll_transmit(now, buf).is_some() {
            n += 1;
        }
    }
    n
}

/// Handshakes replayed per chunk before both engines are rebuilt (bounds the table).
pub const CHUNK: u32 = 100_000;

/// Two engines with the same seed: `recorder` runs each handshake first (outside a
/// timed part) with peers that learn the engine's numbers from its outputs; `engine`
/// then gets the very same packets (in the timed part) and, being deterministic,
/// answers identically. Both are rebuilt every [`CHUNK`] handshakes, so the table
/// holds 0..100k connections.
#[derive(Debug)]
pub struct Handshakes {
    recorder: Engine<VecPacket>,
    engine: Engine<VecPacket>,
    next: u32,
    now: Instant,
    buf: Vec<u8>,
}

impl Handshakes {
    /// A fresh pair, with the premise checked once: replayed handshakes leave the
    /// engine in the recorder's state, and a replayed connection translates data.
    ///
    /// # Panics
    /// When the premise does not hold.
    #[must_use]
    pub fn new(now: Instant) -> Self {
        let mut h = Handshakes {
            recorder: engine(1 << 20, now),
            engine: engine(1 << 20, now),
            next: 0,
            now,
            buf: vec![0u8; 2048],
        };
        let mut last = None;
        for _ in 0..100 {
            let (mut pkts, c) = h.inputs();
            // Downstream SYN; ACK + SYN-ACK; Convert reply (+ the third ACK if the
            // engine forwards it).
            let n = h.replay(&mut pkts);
            assert!((4..=5).contains(&n), "{n} packets out of a handshake");
            last = Some(c);
        }
        assert_eq!(h.engine.connections(), h.recorder.connections());
        assert_eq!(
            h.engine.counters().established,
            h.recorder.counters().established
        );
        let c = last.expect("handshakes ran");
        ack_reply(&mut h.engine, now, &c);
        let _ = check_data_path(&mut h.engine, now, &c, 100);
        h.reset();
        h
    }

    fn reset(&mut self) {
        self.recorder = engine(1 << 20, self.now);
        self.engine = engine(1 << 20, self.now);
        self.next = 0;
    }

    /// The next handshake's three input packets (SYN, SYN-ACK, third ACK).
    pub fn inputs(&mut self) -> ([VecPacket; 3], Established) {
        if self.next == CHUNK {
            self.reset();
        }
        let h = handshake(&mut self.recorder, self.now, self.next);
        self.next += 1;
        (
            [
                VecPacket::from_bytes(&h.syn),
                VecPacket::from_bytes(&h.syn_ack),
                VecPacket::from_bytes(&h.ack),
            ],
            h.conn,
        )
    }

    /// The three packets through the engine, every output polled into a buffer.
    /// Returns the number of packets out.
    pub fn replay(&mut self, pkts: &mut [VecPacket; 3]) -> u32 {
        replay_handshake(&mut self.engine, self.now, pkts, &mut self.buf)
    }
}

/// Reads a field of `/proc/self/status` in kB (`VmRSS`, `VmHWM`, …).
#[must_use]
pub fn proc_status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
