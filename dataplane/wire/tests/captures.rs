//! Replays real Linux 6.18 MPTCP v1 captures (`tests/fixtures/*.pcap`, see the README
//! there) through the wire layer: every frame parses down to its MPTCP options, every
//! TCP checksum verifies, and the MPTCP fields agree with each other and with what
//! the crypto module recomputes from the keys Linux put on the wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hac_wire::convert::ConnectRequest;
use hac_wire::crypto::{join_hmac_truncated64, join_hmac160, key_material};
use hac_wire::ethernet::{EtherType, Frame};
use hac_wire::mptcp::{DssRepr, MpCapableForm, MpCapableRepr, MpJoinRepr, MptcpOption};
use hac_wire::seq::{DataSeq, SeqNum};
use hac_wire::tcp::{self, Flags};
use hac_wire::tcp_options::{self, TcpOption};
use hac_wire::{ipv4, ipv6};

/// One TCP segment of a capture, decoded.
#[derive(Debug)]
struct Seg {
    src: SocketAddr,
    dst: SocketAddr,
    seq: SeqNum,
    ack: SeqNum,
    flags: Flags,
    payload: Vec<u8>,
    mptcp: Vec<MptcpOption<'static>>,
    ts: Option<(u32, u32)>,
}

/// Minimal classic-pcap reader (little-endian, microsecond, LINKTYPE_ETHERNET).
fn frames(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let d = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&d[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "{name}: not a LE pcap");
    assert_eq!(
        u32::from_le_bytes(d[20..24].try_into().unwrap()),
        1,
        "linktype"
    );
    let mut off = 24;
    let mut out = Vec::new();
    while off + 16 <= d.len() {
        let incl = u32::from_le_bytes(d[off + 8..off + 12].try_into().unwrap()) as usize;
        out.push(d[off + 16..off + 16 + incl].to_vec());
        off += 16 + incl;
    }
    assert_eq!(off, d.len(), "{name}: trailing bytes");
    out
}

fn decode(frame: &[u8]) -> Seg {
    let eth = Frame::new_checked(frame).expect("ethernet");
    let (src_ip, dst_ip, l4): (IpAddr, IpAddr, &[u8]) = match eth.payload_ethertype() {
        EtherType::IPV4 => {
            let ip = ipv4::Packet::new_checked(eth.payload()).expect("ipv4");
            assert!(ip.verify_checksum(), "IPv4 header checksum");
            assert!(!ip.is_fragment());
            assert_eq!(ip.protocol(), ipv4::PROTO_TCP);
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            let t = tcp::Packet::new_checked(ip.payload()).expect("tcp");
            assert!(t.verify_checksum_v4(s, d), "TCP/IPv4 checksum");
            (
                s.into(),
                d.into(),
                &eth.payload()[ip.header_len()..ip.total_len() as usize],
            )
        }
        EtherType::IPV6 => {
            let ip = ipv6::Packet::new_checked(eth.payload()).expect("ipv6");
            let ul = ip.upper_layer().expect("upper layer");
            assert_eq!(ul.protocol, 6);
            assert!(ul.fragment.is_none());
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            let seg = &eth.payload()[ul.offset..ul.offset + ul.len];
            let t = tcp::Packet::new_checked(seg).expect("tcp");
            assert!(t.verify_checksum_v6(s, d), "TCP/IPv6 checksum");
            (s.into(), d.into(), seg)
        }
        other => panic!("unexpected ethertype {other:?}"),
    };
    let t = tcp::Packet::new_checked(l4).unwrap();
    let mut mptcp = Vec::new();
    let mut ts = None;
    for opt in tcp_options::iter(t.options()) {
        match opt.expect("every option in a Linux capture parses") {
            TcpOption::Mptcp(raw) => {
                // Leak to 'static: test-only convenience, a few hundred bytes per run.
                let raw: &'static [u8] = Box::leak(raw.to_vec().into_boxed_slice());
                let o = MptcpOption::parse(raw).expect("MPTCP option parses");
                // Canonical round trip: Linux sets no reserved bits.
                let mut buf = [0u8; 40];
                let n = o.emit(&mut buf).unwrap();
                assert_eq!(&buf[..n], raw, "MPTCP option re-emits byte for byte");
                mptcp.push(o);
            }
            TcpOption::Timestamps { tsval, tsecr } => ts = Some((tsval, tsecr)),
            _ => {}
        }
    }
    Seg {
        src: SocketAddr::new(src_ip, t.src_port()),
        dst: SocketAddr::new(dst_ip, t.dst_port()),
        seq: t.seq_number(),
        ack: t.ack_number(),
        flags: t.flags(),
        payload: t.payload().to_vec(),
        mptcp,
        ts,
    }
}

fn load(name: &str) -> Vec<Seg> {
    frames(name).iter().map(|f| decode(f)).collect()
}

fn capable(s: &Seg) -> MpCapableRepr {
    match s.mptcp.as_slice() {
        [MptcpOption::MpCapable(c)] => *c,
        other => panic!("expected one MP_CAPABLE, got {other:?}"),
    }
}

fn join(s: &Seg) -> MpJoinRepr {
    match s.mptcp.as_slice() {
        [MptcpOption::MpJoin(j)] => *j,
        other => panic!("expected one MP_JOIN, got {other:?}"),
    }
}

fn dss(s: &Seg) -> Option<DssRepr> {
    s.mptcp.iter().find_map(|o| match o {
        MptcpOption::Dss(d) => Some(*d),
        _ => None,
    })
}

struct Keys {
    client: u64,
    server: u64,
}

/// The initial subflow: Convert-in-SYN, MP_CAPABLE handshake, mappings spanning
/// several segments, 32- and 64-bit DATA_ACKs, DATA_FIN both ways.
fn check_path1(name: &str, client: IpAddr, converter: IpAddr, mss: u16) -> Keys {
    let segs = load(name);
    assert_eq!(segs.len(), 18);
    let from_client = |s: &Seg| s.src.ip() == client;

    // 1: SYN, MP_CAPABLE v1 (len 4, flags = H only), TFO data without a TFO option:
    // the 24-byte Convert request to 192.0.2.10:443.
    let syn = &segs[0];
    assert_eq!(syn.flags, Flags::SYN);
    assert_eq!(syn.dst, SocketAddr::new(converter, 5000));
    let c = capable(syn);
    assert_eq!((c.version, c.form), (1, MpCapableForm::Syn));
    assert!(c.flags.is_supported() && c.flags.hmac_sha256() && !c.flags.checksum_required());
    assert_eq!(syn.payload.len(), 24);
    let (req, app_off) = ConnectRequest::parse(&syn.payload).expect("Convert request");
    assert_eq!(app_off, 24, "no application data after the Convert TLVs");
    let connect = req.connect.expect("Connect TLV");
    assert_eq!(
        connect.remote(),
        "192.0.2.10:443".parse::<SocketAddr>().unwrap()
    );
    assert!(!connect.is_extended() && !req.info && req.cookie.is_none());
    assert_eq!(
        tcp_options::find_mss(&syn_options(name)).unwrap(),
        Some(mss),
        "MSS in the SYN"
    );

    // 2: SYN-ACK with the listener's key; it acknowledges the SYN *and* its 24 bytes.
    let synack = &segs[1];
    assert_eq!(synack.flags, Flags::SYN | Flags::ACK);
    assert_eq!(synack.ack, syn.seq + 1 + 24);
    let MpCapableForm::SynAck {
        sender_key: server_key,
    } = capable(synack).form
    else {
        panic!("SYN-ACK form")
    };

    // 3: third ACK echoes both keys.
    let ack3 = &segs[2];
    let MpCapableForm::Ack {
        sender_key: client_key,
        receiver_key,
    } = capable(ack3).form
    else {
        panic!("third-ACK form")
    };
    assert_eq!(receiver_key, server_key);
    let client_km = key_material(client_key);
    let server_km = key_material(server_key);

    // Server data: one mapping (DSN = server IDSN + 1, SSN 1, 3072 bytes) spanning
    // three segments, with a 32-bit DATA_ACK = client IDSN + 1.
    let mut mapped = 0usize;
    for s in &segs[3..6] {
        let d = dss(s).expect("DSS on server data");
        let m = d.mapping.expect("mapping");
        assert_eq!(m.dsn.expand(server_km.idsn), server_km.idsn + 1);
        assert_eq!(m.ssn, 1);
        assert_eq!(usize::from(m.data_len), 3072);
        let ack = d.data_ack.expect("DATA_ACK");
        assert!(!ack.is_64());
        assert_eq!(ack.expand(client_km.idsn), client_km.idsn + 1);
        // Relative SSN of this segment = seq − ISN (the SYN-ACK carried no data).
        let rel = (s.seq - synack.seq) as usize;
        assert_eq!(rel, 1 + mapped);
        mapped += s.payload.len();
    }
    assert_eq!(mapped, 3072, "mapping spans exactly the three segments");

    // Client ACKs of server data: 64-bit DATA_ACK advancing with the subflow ACK.
    for s in &segs[6..9] {
        let d = dss(s).unwrap();
        let ack = d.data_ack.unwrap().expand(server_km.idsn);
        assert_eq!(ack - server_km.idsn, (s.ack - synack.seq) as i64);
    }

    // Client data: 64-bit DSN = client IDSN + 1 with SSN 1 although its subflow
    // sequence is ISN + 1 + 24 (SYN data lies outside the DSN space, RFC 8684 App. B).
    let cdata = segs
        .iter()
        .find(|s| from_client(s) && !s.flags.contains(Flags::SYN) && !s.payload.is_empty())
        .unwrap();
    let m = dss(cdata).unwrap().mapping.unwrap();
    assert!(m.dsn.is_64());
    assert_eq!(m.dsn.expand(DataSeq(0)), client_km.idsn + 1);
    assert_eq!(m.ssn, 1);
    assert_eq!(cdata.seq, syn.seq + 1 + 24);
    assert_eq!(usize::from(m.data_len), cdata.payload.len());

    // DATA_FIN both ways: data-less DATA_FIN = SSN 0, length 1, DSN = its own DSN,
    // acknowledged by DATA_ACK DSN + 1.
    let mut fins = Vec::new();
    for s in &segs {
        if let Some(d) = dss(s)
            && d.data_fin
        {
            let m = d.mapping.unwrap();
            assert_eq!((m.ssn, m.data_len), (0, 1));
            let own = if from_client(s) {
                client_km.idsn
            } else {
                server_km.idsn
            };
            fins.push((from_client(s), m.dsn.expand(own)));
        }
    }
    let client_fin = fins.iter().find(|f| f.0).expect("client DATA_FIN").1;
    let server_fin = fins.iter().find(|f| !f.0).expect("server DATA_FIN").1;
    assert_eq!(client_fin, client_km.idsn + 1 + 500);
    assert_eq!(server_fin, server_km.idsn + 1 + 3072);
    let acked = |from_cli: bool, v: DataSeq, reference: DataSeq| {
        segs.iter().any(|s| {
            from_client(s) == from_cli
                && dss(s).and_then(|d| d.data_ack).map(|a| a.expand(reference)) == Some(v)
        })
    };
    assert!(
        acked(false, client_fin + 1, client_km.idsn),
        "server acks client DATA_FIN"
    );
    assert!(
        acked(true, server_fin + 1, server_km.idsn),
        "client acks server DATA_FIN"
    );

    // Subflow FINs close the subflow; timestamps present on every segment.
    assert!(segs.iter().filter(|s| s.flags.contains(Flags::FIN)).count() == 2);
    assert!(segs.iter().all(|s| s.ts.is_some()));
    Keys {
        client: client_key,
        server: server_key,
    }
}

fn syn_options(name: &str) -> Vec<u8> {
    let f = &frames(name)[0];
    let eth = Frame::new_checked(&f[..]).unwrap();
    let l4 = match eth.payload_ethertype() {
        EtherType::IPV4 => {
            let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
            eth.payload()[ip.header_len()..].to_vec()
        }
        _ => eth.payload()[40..].to_vec(),
    };
    tcp::Packet::new_checked(&l4[..])
        .unwrap()
        .options()
        .to_vec()
}

/// The join subflow: token, nonces, both HMACs recomputed from the keys of path 1.
fn check_path2(name: &str, keys: &Keys, joiner: IpAddr, endpoint_id: u8) {
    let segs = load(name);
    assert_eq!(segs.len(), 12);
    let (
        MpJoinRepr::Syn {
            backup,
            addr_id,
            token,
            nonce: nonce_a,
        },
        syn,
    ) = (join(&segs[0]), &segs[0])
    else {
        panic!("join SYN")
    };
    assert_eq!(syn.src.ip(), joiner);
    assert!(!backup);
    // The client's `ip mptcp endpoint` id for the joining address.
    assert_eq!(addr_id, endpoint_id);
    // The SYN carries the *receiver's* token (RFC 8684 §3.2).
    assert_eq!(token, key_material(keys.server).token);
    let MpJoinRepr::SynAck {
        hmac,
        nonce: nonce_b,
        ..
    } = join(&segs[1])
    else {
        panic!("join SYN-ACK")
    };
    // SYN-ACK: leftmost 64 bits of HMAC(KeyB‖KeyA, RB‖RA).
    assert_eq!(
        hmac,
        join_hmac_truncated64(keys.server, keys.client, nonce_b, nonce_a)
    );
    let MpJoinRepr::Ack { hmac } = join(&segs[2]) else {
        panic!("join third ACK")
    };
    // Third ACK: leftmost 160 bits of HMAC(KeyA‖KeyB, RA‖RB).
    assert_eq!(
        hmac,
        join_hmac160(keys.client, keys.server, nonce_a, nonce_b)
    );
    // Fourth ACK: the listener's DSS-only ACK makes the third ACK reliable.
    let d = dss(&segs[3]).expect("fourth ACK carries a DSS");
    assert!(d.data_ack.is_some() && d.mapping.is_none());
    // The DATA_FIN also travels over the join subflow.
    assert!(segs.iter().filter_map(dss).any(|d| d.data_fin));
}

#[test]
fn ipv4_capture() {
    let keys = check_path1(
        "v4-path1.pcap",
        IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)),
        IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)),
        1460,
    );
    check_path2(
        "v4-path2.pcap",
        &keys,
        IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2)),
        1,
    );
}

#[test]
fn ipv6_capture() {
    let keys = check_path1(
        "v6-path1.pcap",
        "2001:db8:1::2".parse::<Ipv6Addr>().unwrap().into(),
        "2001:db8:1::1".parse::<Ipv6Addr>().unwrap().into(),
        1440,
    );
    check_path2(
        "v6-path2.pcap",
        &keys,
        "2001:db8:2::2".parse::<Ipv6Addr>().unwrap().into(),
        2,
    );
}

/// The README's worked example (an earlier capture of the same kind).
#[test]
fn readme_key_vector() {
    let km = key_material(0xaa1e_b96f_5b6d_833d);
    assert_eq!(km.token, 0x6fa8_c82b);
    assert_eq!(km.idsn, DataSeq(8_282_521_017_285_119_594));
}
