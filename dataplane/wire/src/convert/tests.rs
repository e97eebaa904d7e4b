//! Tests of the RFC 8803 Convert module.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::Error;

/// Protocol brief §1.5 (Connect TLV byte example) — identical to the SYN payload
/// captured in tests/fixtures/v4-path1.pcap (frame 1, see `pcap_syn_payload`).
const REQ_V4: [u8; 24] = [
    0x01, 0x06, 0x22, 0x63, 0x0A, 0x05, 0x01, 0xBB, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xFF, 0xFF, 0xC0, 0x00, 0x02, 0x0A,
];
/// Protocol brief §1.5: OK reply with no TLVs.
const REPLY_OK: [u8; 4] = [0x01, 0x01, 0x22, 0x63];
/// Protocol brief §1.5: Not Authorized reply.
const REPLY_NOT_AUTH: [u8; 8] = [0x01, 0x02, 0x22, 0x63, 0x1E, 0x01, 0x20, 0x00];

fn dest() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 443)
}

/// Builds a message from closures over a builder.
fn build(f: impl FnOnce(&mut MessageBuilder<'_>)) -> Vec<u8> {
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let mut b = MessageBuilder::new(&mut buf).unwrap();
    f(&mut b);
    let n = b.finish().unwrap();
    buf[..n].to_vec()
}

/// Walks a little-endian Ethernet pcap and returns the payload of the first TCP
/// SYN (without ACK) that carries data.
fn pcap_syn_payload(pcap: &[u8]) -> Option<Vec<u8>> {
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut off = 24;
    while off + 16 <= pcap.len() {
        let incl = u32::from_le_bytes(pcap[off + 8..off + 12].try_into().unwrap()) as usize;
        let pkt = &pcap[off + 16..off + 16 + incl];
        off += 16 + incl;
        let ip = &pkt[14..];
        if ip[0] >> 4 != 4 || ip[9] != 6 {
            continue;
        }
        let ihl = usize::from(ip[0] & 15) * 4;
        let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let tcp = &ip[ihl..tot];
        let doff = usize::from(tcp[12] >> 4) * 4;
        if tcp[13] & 0x12 == 0x02 && tcp.len() > doff {
            return Some(tcp[doff..].to_vec());
        }
    }
    None
}

// ---------------------------------------------------------------- byte examples

#[test]
fn brief_client_request_parses() {
    let (req, off) = ConnectRequest::parse(&REQ_V4).unwrap();
    assert_eq!(off, 24);
    let c = req.connect.unwrap();
    assert_eq!(c.remote_port(), 443);
    assert_eq!(c.remote_addr(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    assert_eq!(
        c.remote_ipv6(),
        Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped()
    );
    assert_eq!(c.remote(), dest());
    assert!(!c.is_extended());
    assert_eq!(c.options().count(), 0);
    assert!(!req.info);
    assert_eq!(req.cookie, None);
}

#[test]
fn brief_client_request_emits() {
    assert_eq!(build(|b| b.connect(dest()).unwrap()), REQ_V4);
}

#[test]
fn pcap_syn_payload_is_the_request() {
    let pcap = include_bytes!("../../tests/fixtures/v4-path1.pcap");
    let payload = pcap_syn_payload(pcap).expect("SYN with data in v4-path1.pcap");
    assert_eq!(payload.len(), 24);
    assert_eq!(payload, REQ_V4);
    let (req, off) = ConnectRequest::parse(&payload).unwrap();
    assert_eq!(off, payload.len());
    assert_eq!(req.connect.unwrap().remote(), dest());
}

#[test]
fn brief_ok_reply() {
    let m = Message::parse(&REPLY_OK).unwrap();
    assert_eq!(m.len(), 4);
    assert!(m.is_empty());
    assert_eq!(m.tlvs().count(), 0);
    assert_eq!(build(|_| {}), REPLY_OK);
    let mut b = [0u8; 4];
    assert_eq!(emit_header(&mut b, 1), Ok(4));
    assert_eq!(b, REPLY_OK);
}

#[test]
fn brief_not_authorized_reply() {
    let m = Message::parse(&REPLY_NOT_AUTH).unwrap();
    let tlvs: Vec<_> = m.tlvs().collect();
    assert_eq!(tlvs.len(), 1);
    let Ok(Tlv::Error(e)) = tlvs[0] else {
        panic!("{tlvs:?}")
    };
    assert_eq!(e.code(), ErrorCode::NotAuthorized);
    assert_eq!(e.value(), ErrorValue::NotAuthorized);
    assert_eq!(
        build(|b| assert_eq!(b.error(&ErrorValue::NotAuthorized), Ok(4))),
        REPLY_NOT_AUTH
    );
}

#[test]
fn app_data_offset_after_message() {
    let mut p = REQ_V4.to_vec();
    p.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    let (_, off) = ConnectRequest::parse(&p).unwrap();
    assert_eq!(off, 24);
    assert_eq!(&p[off..], b"GET / HTTP/1.1\r\n\r\n");
}

// ---------------------------------------------------------------- header

#[test]
fn header_view_accessors_and_setters() {
    let h = Header::new_checked(&REQ_V4[..]).unwrap();
    assert_eq!(
        (h.version(), h.total_len(), h.magic(), h.message_len()),
        (1, 6, 0x2263, 24)
    );
    let mut b = [0u8; 4];
    let mut h = Header::new_checked(&mut b[..]).unwrap();
    h.set_version(1);
    h.set_total_len(2);
    h.set_magic(MAGIC);
    assert_eq!(b, [1, 2, 0x22, 0x63]);
    assert_eq!(Header::new_checked(&[1u8, 2, 3][..]), Err(Error::Truncated));
    let r = HeaderRepr::parse(&Header::new_unchecked(&REQ_V4[..])).unwrap();
    assert_eq!((r.total_words, r.message_len(), r.buffer_len()), (6, 24, 4));
    let mut out = [0u8; 4];
    assert_eq!(r.emit(&mut out), Ok(4));
    assert_eq!(out, REQ_V4[..4]);
}

#[test]
fn emit_header_errors() {
    let mut b = [0u8; 3];
    assert_eq!(emit_header(&mut b, 1), Err(Error::NoSpace));
    let mut b = [0u8; 4];
    assert_eq!(emit_header(&mut b, 0), Err(Error::BadLength));
}

/// Each bad input, its typed error, and the RFC 8803 answer.
#[test]
fn bad_inputs_map_to_rfc_codes() {
    let mut connect_tlv = REQ_V4[4..].to_vec();
    let cases: Vec<(&str, Vec<u8>, ConvertError, Option<ErrorCode>)> = vec![
        (
            "short header",
            vec![1, 6, 0x22],
            ConvertError::Truncated { needed: 4 },
            Some(ErrorCode::MalformedMessage),
        ),
        (
            "truncated message",
            REQ_V4[..20].to_vec(),
            ConvertError::Truncated { needed: 24 },
            Some(ErrorCode::MalformedMessage),
        ),
        (
            "total length 0",
            vec![1, 0, 0x22, 0x63],
            ConvertError::TotalLengthZero,
            None,
        ),
        (
            "version 0",
            [&[0u8, 6, 0x22, 0x63][..], &REQ_V4[4..]].concat(),
            ConvertError::BadVersion(0),
            Some(ErrorCode::UnsupportedVersion),
        ),
        (
            "version 2",
            [&[2u8, 6, 0x22, 0x63][..], &REQ_V4[4..]].concat(),
            ConvertError::BadVersion(2),
            Some(ErrorCode::UnsupportedVersion),
        ),
        (
            "bad magic",
            [&[1u8, 6, 0x22, 0x64][..], &REQ_V4[4..]].concat(),
            ConvertError::BadMagic(0x2264),
            Some(ErrorCode::MalformedMessage),
        ),
        (
            "tlv length 0",
            vec![1, 2, 0x22, 0x63, 10, 0, 0, 0],
            ConvertError::TlvLengthZero { ty: 10 },
            Some(ErrorCode::MalformedMessage),
        ),
        (
            "tlv overrun",
            vec![1, 2, 0x22, 0x63, 10, 5, 1, 0xbb],
            ConvertError::TlvOverrun { ty: 10, len: 5 },
            Some(ErrorCode::MalformedMessage),
        ),
        (
            "info length 2",
            vec![1, 3, 0x22, 0x63, 1, 2, 0, 0, 0, 0, 0, 0],
            ConvertError::BadTlvLength { ty: 1, len: 2 },
            Some(ErrorCode::MalformedMessage),
        ),
        (
            "connect length 4",
            [&[1u8, 5, 0x22, 0x63, 10, 4][..], &[0u8; 14][..]].concat(),
            ConvertError::BadTlvLength { ty: 10, len: 4 },
            Some(ErrorCode::MalformedMessage),
        ),
        (
            "duplicate info",
            vec![1, 3, 0x22, 0x63, 1, 1, 0, 0, 1, 1, 0, 0],
            ConvertError::DuplicateTlv(1),
            Some(ErrorCode::MalformedMessage),
        ),
        (
            "type 0",
            vec![1, 2, 0x22, 0x63, 0, 1, 0, 0],
            ConvertError::ReservedTlvType0,
            Some(ErrorCode::UnsupportedMessage),
        ),
        (
            "unknown type",
            vec![1, 2, 0x22, 0x63, 200, 1, 0, 0],
            ConvertError::UnknownTlv(200),
            Some(ErrorCode::UnsupportedMessage),
        ),
        (
            "error tlv from client",
            vec![1, 2, 0x22, 0x63, 30, 1, 32, 0],
            ConvertError::UnexpectedTlv(30),
            Some(ErrorCode::UnsupportedMessage),
        ),
        (
            "supported tlv from client",
            vec![1, 2, 0x22, 0x63, 21, 1, 0, 0],
            ConvertError::UnexpectedTlv(21),
            Some(ErrorCode::UnsupportedMessage),
        ),
        (
            "ext tcp header from client",
            vec![1, 2, 0x22, 0x63, 20, 1, 0, 0],
            ConvertError::UnexpectedTlv(20),
            Some(ErrorCode::UnsupportedMessage),
        ),
    ];
    // Connect option faults (RFC 8803 §6.2.5).
    connect_tlv[1] = 6;
    let mut opt_cases = Vec::new();
    for (name, opts) in [
        ("option length 1", [30u8, 1, 0, 0]),
        ("option overrun", [34, 10, 0, 0]),
        ("non-zero after padding", [0, 30, 2, 0]),
        ("length byte missing", [30, 2, 8, 0]),
    ] {
        let mut m = vec![1, 7, 0x22, 0x63];
        m.extend_from_slice(&connect_tlv);
        m.extend_from_slice(&opts);
        opt_cases.push((name, m));
    }
    for (name, bytes, err, code) in cases {
        assert_eq!(
            ConnectRequest::parse(&bytes).map(|_| ()),
            Err(err),
            "{name}"
        );
        assert_eq!(err.error_code(), code, "{name}");
    }
    for (name, bytes) in opt_cases {
        // ("length byte missing": `08 00` reads as kind 8 with length 0.)
        let r = ConnectRequest::parse(&bytes).map(|_| ());
        assert_eq!(r, Err(ConvertError::BadTcpOption), "{name}");
        assert_eq!(
            ConvertError::BadTcpOption.error_code(),
            Some(ErrorCode::MalformedMessage)
        );
    }
}

#[test]
fn forbidden_destinations() {
    for (ip, bad) in [
        ("127.0.0.1", true),
        ("224.0.0.1", true),
        ("255.255.255.255", true),
        ("0.0.0.0", true),
        ("::1", true),
        ("ff02::1", true),
        ("::", true),
        ("192.0.2.10", false),
        ("2001:db8::1", false),
        ("::ffff:127.0.0.1", true),
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(is_forbidden_destination(ip), bad, "{ip}");
        let m = build(|b| b.connect(SocketAddr::new(ip, 80)).unwrap());
        let r = ConnectRequest::parse(&m).map(|_| ());
        assert_eq!(r.is_err(), bad, "{ip}");
        if bad {
            assert_eq!(r, Err(ConvertError::ForbiddenDestination));
            assert_eq!(
                ConvertError::ForbiddenDestination.error_code(),
                Some(ErrorCode::MalformedMessage)
            );
        }
    }
}

#[test]
fn malformed_outranks_unsupported() {
    // Unknown type first, then a duplicate Connect: the answer is Malformed.
    let m = build(|b| {
        b.raw(200, &[1, 2]).unwrap();
        b.connect(dest()).unwrap();
    });
    let mut m2 = m.clone();
    m2.extend_from_slice(&REQ_V4[4..]);
    m2[1] += 5;
    assert_eq!(
        ConnectRequest::parse(&m2).map(|_| ()),
        Err(ConvertError::DuplicateTlv(10))
    );
    assert_eq!(
        ConnectRequest::parse(&m).map(|_| ()),
        Err(ConvertError::UnknownTlv(200))
    );
}

#[test]
fn iterator_continues_after_non_fatal_errors() {
    // type 0, dup info, then a valid connect: three items, offsets advance.
    let mut m = vec![1, 9, 0x22, 0x63, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0];
    m.extend_from_slice(&REQ_V4[4..]);
    let msg = Message::parse(&m).unwrap();
    let items: Vec<_> = msg.tlvs().collect();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0], Err(ConvertError::ReservedTlvType0));
    assert_eq!(items[1], Ok(Tlv::Info));
    assert_eq!(items[2], Err(ConvertError::DuplicateTlv(1)));
    assert!(matches!(items[3], Ok(Tlv::Connect(_))));
    assert_eq!(msg.check_tlvs(), Err(ConvertError::ReservedTlvType0));
    // A fatal error stops iteration.
    let m = [1u8, 3, 0x22, 0x63, 1, 0, 0, 0, 1, 1, 0, 0];
    let items: Vec<_> = Message::parse(&m).unwrap().tlvs().collect();
    assert_eq!(items, vec![Err(ConvertError::TlvLengthZero { ty: 1 })]);
}

// ---------------------------------------------------------------- TLVs

#[test]
fn extended_connect_options() {
    let cookie = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let opts = [
        TcpOpt {
            kind: 30,
            value: &[],
        },
        TcpOpt {
            kind: 8,
            value: &[],
        },
        TcpOpt {
            kind: 34,
            value: &cookie,
        },
    ];
    let m = build(|b| b.connect_with_options(dest(), &opts).unwrap());
    // 4 + 20 + (2 + 2 + 10 = 14 → 16) = 40 bytes = 10 words.
    assert_eq!(m.len(), 40);
    assert_eq!(&m[..6], &[1, 10, 0x22, 0x63, 10, 9]);
    assert_eq!(
        &m[24..40],
        &[30, 2, 8, 2, 34, 10, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0]
    );
    let (req, _) = ConnectRequest::parse(&m).unwrap();
    let c = req.connect.unwrap();
    assert!(c.is_extended());
    assert!(c.options().eq(opts.iter().copied()));
    // Option policy: 30 and 8 supported, 34 not → Unsupported TCP Option (33).
    let supported = |k: u8| k == 30 || k == 8;
    assert_eq!(
        c.check_options(supported),
        Err(ConvertError::UnsupportedTcpOption(34))
    );
    assert_eq!(
        ConvertError::UnsupportedTcpOption(34).error_code(),
        Some(ErrorCode::UnsupportedTcpOption)
    );
    assert_eq!(c.check_options(|_| true), Ok(()));
    // Kinds 0,1,2,3,5 are ignored (RFC 8803 §7.1–7.3).
    let m = build(|b| {
        b.connect_with_options(
            dest(),
            &[
                TcpOpt {
                    kind: 2,
                    value: &[5, 0xb4],
                },
                TcpOpt {
                    kind: 29,
                    value: &[],
                },
            ],
        )
        .unwrap();
    });
    let c = ConnectRequest::parse(&m).unwrap().0.connect.unwrap();
    assert!(c.unsupported_options(|_| false).eq([29u8]));
}

#[test]
fn connect_v6_and_raw() {
    let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let m = build(|b| b.connect(SocketAddr::new(IpAddr::V6(a), 80)).unwrap());
    let c = ConnectRequest::parse(&m).unwrap().0.connect.unwrap();
    assert_eq!(c.remote_addr(), IpAddr::V6(a));
    assert_eq!(c.remote_ipv6(), a);
    let m2 = build(|b| b.connect_raw(80, a, &[]).unwrap());
    assert_eq!(m, m2);
    let mut buf = [0u8; 64];
    let mut b = MessageBuilder::new(&mut buf).unwrap();
    assert_eq!(b.connect_raw(80, a, &[30, 1]), Err(Error::BadLength));
    assert!(b.is_empty());
}

#[test]
fn info_supported_ext_header_cookie() {
    let server_opts = [2u8, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7];
    let m = build(|b| {
        b.info().unwrap();
        b.supported_tcp_extensions(&[30, 4, 8, 34, 2]).unwrap();
        b.extended_tcp_header(&server_opts).unwrap();
        b.cookie(b"abcdef").unwrap();
    });
    let expect: Vec<u8> = [
        &[1u8, 12, 0x22, 0x63][..],
        &[1, 1, 0, 0],
        &[21, 3, 0, 0, 30, 4, 8, 34, 2, 0, 0, 0],
        &[20, 4, 0, 0, 2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7],
        &[22, 3, 0, 0, b'a', b'b', b'c', b'd', b'e', b'f', 0, 0],
    ]
    .concat();
    assert_eq!(m, expect);
    let tlvs: Vec<_> = Message::parse(&m)
        .unwrap()
        .tlvs()
        .map(Result::unwrap)
        .collect();
    assert_eq!(tlvs[0], Tlv::Info);
    let Tlv::SupportedTcpExtensions(l) = tlvs[1] else {
        panic!()
    };
    assert_eq!(l.values(), &[30, 4, 8, 34, 2]);
    assert!(l.contains(30) && !l.contains(0) && !l.contains(5));
    assert!(l.into_iter().eq([30u8, 4, 8, 34, 2]));
    let Tlv::ExtendedTcpHeader { options } = tlvs[2] else {
        panic!()
    };
    assert_eq!(options, &server_opts);
    assert_eq!(tlvs[3], Tlv::Cookie(b"abcdef\0\0"));
    // A request with Info + Cookie is accepted (no Connect).
    let req = build(|b| {
        b.info().unwrap();
        b.cookie(b"abcdef").unwrap();
    });
    let (r, off) = ConnectRequest::parse(&req).unwrap();
    assert!(r.info && r.connect.is_none() && r.cookie == Some(&b"abcdef\0\0"[..]));
    assert_eq!(off, req.len());
}

#[test]
fn reserved_bits_ignored_on_receive() {
    // RFC 8803 §6.2.4: unassigned bits are ignored by the receiver.
    let m = [1u8, 3, 0x22, 0x63, 1, 1, 0xff, 0xff, 21, 1, 0xab, 0xcd];
    let tlvs: Vec<_> = Message::parse(&m).unwrap().tlvs().collect();
    assert_eq!(
        tlvs,
        vec![
            Ok(Tlv::Info),
            Ok(Tlv::SupportedTcpExtensions(ByteList::new(&[])))
        ]
    );
}

#[test]
fn every_error_code_round_trips() {
    let echo = REQ_V4;
    let values = [
        (
            ErrorValue::UnsupportedVersion {
                versions: ByteList::new(&[1]),
            },
            vec![30, 1, 0, 1],
        ),
        (
            ErrorValue::MalformedMessage { echo: &echo },
            [&[30u8, 7, 1, 0][..], &echo].concat(),
        ),
        (
            ErrorValue::UnsupportedMessage { echo: &REPLY_OK },
            vec![30, 2, 2, 0, 1, 1, 0x22, 0x63],
        ),
        (
            ErrorValue::MissingCookie { cookie: b"cook" },
            vec![30, 2, 3, 0, b'c', b'o', b'o', b'k'],
        ),
        (ErrorValue::NotAuthorized, vec![30, 1, 32, 0]),
        (
            ErrorValue::UnsupportedTcpOption {
                kinds: ByteList::new(&[29, 99]),
            },
            vec![30, 2, 33, 29, 99, 0, 0, 0],
        ),
        (
            ErrorValue::ResourceExceeded { retry_delay: 30 },
            vec![30, 1, 64, 30],
        ),
        (
            ErrorValue::NetworkFailure { retry_delay: 0 },
            vec![30, 1, 65, 0],
        ),
        (ErrorValue::ConnectionReset, vec![30, 1, 96, 0]),
        (
            ErrorValue::DestinationUnreachable { icmp_code: 1 },
            vec![30, 1, 97, 1],
        ),
        (
            ErrorValue::Other {
                code: 200,
                value: &[7],
            },
            vec![30, 1, 200, 7],
        ),
    ];
    for (v, tlv_bytes) in values {
        let m = build(|b| assert_eq!(b.error(&v), Ok(tlv_bytes.len())));
        assert_eq!(&m[4..], &tlv_bytes[..], "{v:?}");
        let Ok(Tlv::Error(e)) = Message::parse(&m).unwrap().tlvs().next().unwrap() else {
            panic!()
        };
        assert_eq!(e.code(), v.code());
        assert_eq!(ErrorCode::from_u8(e.code().to_u8()), e.code());
        match (e.value(), v) {
            (
                ErrorValue::UnsupportedVersion { versions: a },
                ErrorValue::UnsupportedVersion { versions: b },
            ) => {
                assert_eq!(a.values(), b.values());
                assert_eq!(e.supported_versions().unwrap().values(), &[1]);
            }
            (
                ErrorValue::UnsupportedTcpOption { kinds: a },
                ErrorValue::UnsupportedTcpOption { kinds: b },
            ) => {
                assert_eq!(a.values(), b.values());
                assert_eq!(e.unsupported_kinds().unwrap().values(), &[29, 99]);
            }
            (a, b) => assert_eq!(a, b),
        }
    }
    // Typed accessors.
    let e = ErrorTlv::new(64, &[30]).unwrap();
    assert_eq!(
        (e.retry_delay(), e.icmp_code(), e.echo()),
        (Some(30), None, None)
    );
    assert_eq!(ErrorTlv::new(97, &[3]).unwrap().icmp_code(), Some(3));
    assert_eq!(
        ErrorTlv::new(3, &[0, 9, 9, 9, 9]).unwrap().cookie(),
        Some(&[9u8, 9, 9, 9][..])
    );
    assert_eq!(
        ErrorTlv::new(1, &[0, 1, 1, 0x22, 0x63]).unwrap().echo(),
        Some(&REPLY_OK[..])
    );
    assert_eq!(ErrorCode::from(33u8), ErrorCode::UnsupportedTcpOption);
    assert_eq!(u8::from(ErrorCode::Other(150)), 150);
}

#[test]
fn malformed_echo_is_truncated_to_max_message() {
    let big = [0xAAu8; 2000];
    let mut buf = [0u8; 2048];
    let mut b = MessageBuilder::new(&mut buf).unwrap();
    let n = b
        .error(&ErrorValue::MalformedMessage { echo: &big })
        .unwrap();
    assert_eq!(n, 1016);
    let len = b.finish().unwrap();
    assert_eq!(len, MAX_MESSAGE_LEN);
    assert_eq!(&buf[..8], &[1, 255, 0x22, 0x63, 30, 254, 1, 0]);
    let e = Message::parse(&buf[..len])
        .unwrap()
        .tlvs()
        .next()
        .unwrap()
        .unwrap();
    let Tlv::Error(e) = e else { panic!() };
    assert_eq!(e.echo().unwrap().len(), 1012);
    // Unaligned echo that fits: padded, byte 3 zero.
    let m = build(|b| {
        b.error(&ErrorValue::UnsupportedMessage { echo: &[1, 2, 3] })
            .unwrap();
    });
    assert_eq!(&m[4..], &[30, 2, 2, 0, 1, 2, 3, 0]);
    // With a small buffer the echo is truncated to what fits (multiple of 4).
    let mut small = [0u8; 17];
    let mut b = MessageBuilder::new(&mut small).unwrap();
    assert_eq!(
        b.error(&ErrorValue::MalformedMessage { echo: &REQ_V4 }),
        Ok(12)
    );
    assert_eq!(b.finish(), Ok(16));
    assert_eq!(&small[8..16], &REQ_V4[..8]);
}

#[test]
fn builder_limits() {
    let mut buf = [0u8; 3];
    assert!(MessageBuilder::new(&mut buf).is_err());
    // Duplicate and type 0 refused (RFC 8803 §6.2.1).
    let mut buf = [0u8; 64];
    let mut b = MessageBuilder::new(&mut buf).unwrap();
    b.info().unwrap();
    assert_eq!(b.info(), Err(Error::Malformed));
    assert_eq!(b.raw(0, &[0, 0]), Err(Error::Malformed));
    assert_eq!(
        b.supported_tcp_extensions(&[30, 0, 8]),
        Err(Error::Malformed)
    );
    // NoSpace leaves the builder unchanged.
    assert_eq!(b.cookie(&[1u8; 100]), Err(Error::NoSpace));
    assert_eq!(b.len(), 8);
    assert_eq!(b.remaining(), 56);
    assert_eq!(b.finish(), Ok(8));
    // The message cap is 1020 bytes even with a larger buffer.
    let mut buf = [0u8; 4096];
    let mut b = MessageBuilder::new(&mut buf).unwrap();
    assert_eq!(b.cookie(&[7u8; 1013]), Err(Error::NoSpace));
    assert_eq!(b.cookie(&[7u8; 1012]), Ok(()));
    assert_eq!(b.finish(), Ok(1020));
    assert_eq!(buf[1], 255);
    // A missing cookie is never truncated.
    let mut buf = [0u8; 16];
    let mut b = MessageBuilder::new(&mut buf).unwrap();
    assert_eq!(
        b.error(&ErrorValue::MissingCookie { cookie: &[1; 16] }),
        Err(Error::NoSpace)
    );
    // Connect options: kind 0 or oversized value rejected.
    let mut buf = [0u8; 1024];
    let mut b = MessageBuilder::new(&mut buf).unwrap();
    assert_eq!(
        b.connect_with_options(
            dest(),
            &[TcpOpt {
                kind: 0,
                value: &[]
            }]
        ),
        Err(Error::BadLength)
    );
    assert_eq!(
        b.connect_with_options(
            dest(),
            &[TcpOpt {
                kind: 9,
                value: &[0; 254]
            }]
        ),
        Err(Error::BadLength)
    );
}

#[test]
fn tlv_parse_and_emit_errors() {
    assert_eq!(Tlv::parse(&[1]), Err(ConvertError::Truncated { needed: 2 }));
    assert_eq!(
        Tlv::parse(&[1, 0, 0, 0]),
        Err(ConvertError::TlvLengthZero { ty: 1 })
    );
    assert_eq!(
        Tlv::parse(&[1, 2, 0, 0]),
        Err(ConvertError::TlvOverrun { ty: 1, len: 2 })
    );
    assert_eq!(
        Tlv::parse(&[0, 1, 0, 0]),
        Err(ConvertError::ReservedTlvType0)
    );
    assert_eq!(Tlv::parse(&[1, 1, 0, 0, 9, 9]), Ok(Tlv::Info));
    let mut out = [0u8; 3];
    assert_eq!(Tlv::Info.emit(&mut out), Err(Error::NoSpace));
    let mut out = [0u8; 8];
    assert_eq!(
        Tlv::Unknown { ty: 0, value: &[] }.emit(&mut out),
        Err(Error::BadLength)
    );
    assert_eq!(
        Tlv::Unknown {
            ty: 99,
            value: &[1, 2, 3]
        }
        .emit(&mut out),
        Ok(8)
    );
    assert_eq!(out, [99, 2, 1, 2, 3, 0, 0, 0]);
}

#[test]
fn type_set() {
    let mut s = TypeSet::new();
    for t in [0u8, 63, 64, 127, 128, 255] {
        assert!(!s.contains(t));
        assert!(s.insert(t));
        assert!(s.contains(t));
        assert!(!s.insert(t));
    }
    assert!(!s.contains(1));
}

#[test]
fn error_mapping_and_display() {
    assert_eq!(
        crate::Error::from(ConvertError::BadMagic(1)),
        Error::BadMagic
    );
    assert_eq!(
        crate::Error::from(ConvertError::Truncated { needed: 4 }),
        Error::Truncated
    );
    assert!(ConvertError::Truncated { needed: 4 }.is_incomplete());
    assert!(!ConvertError::TotalLengthZero.is_incomplete());
    assert_eq!(
        std::format!("{}", ConvertError::BadMagic(0x2264)),
        "bad magic 0x2264"
    );
    assert_eq!(
        std::format!("{}", ErrorCode::NotAuthorized),
        "Not Authorized (32)"
    );
}

// ---------------------------------------------------------------- proptests

/// A random valid set of TLVs (distinct types) as builder operations.
#[derive(Debug, Clone)]
enum Op {
    Info,
    Connect(SocketAddr, Vec<(u8, Vec<u8>)>),
    Ext(Vec<u8>),
    Supported(Vec<u8>),
    Cookie(Vec<u8>),
    Error(u8, Vec<u8>),
    Raw(u8, Vec<u8>),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let addr = prop_oneof![
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ];
    let opt = (1u8..=255, prop::collection::vec(any::<u8>(), 0..12));
    prop_oneof![
        Just(Op::Info),
        (addr, any::<u16>(), prop::collection::vec(opt, 0..5))
            .prop_map(|(a, p, o)| Op::Connect(SocketAddr::new(a, p), o)),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Op::Ext),
        prop::collection::vec(1u8..=255, 0..12).prop_map(Op::Supported),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Op::Cookie),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(c, v)| Op::Error(c, v)),
        (31u8..=255, prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(t, v)| Op::Raw(t, v)),
    ]
}

fn apply(b: &mut MessageBuilder<'_>, op: &Op) -> crate::Result<()> {
    match op {
        Op::Info => b.info(),
        Op::Connect(a, o) => {
            let opts: Vec<_> = o
                .iter()
                .map(|(k, v)| TcpOpt { kind: *k, value: v })
                .collect();
            b.connect_with_options(*a, &opts)
        }
        Op::Ext(v) => b.extended_tcp_header(v),
        Op::Supported(v) => b.supported_tcp_extensions(v),
        Op::Cookie(v) => b.cookie(v),
        Op::Error(c, v) => b.error_raw(*c, v),
        Op::Raw(t, v) if *t == tlv_type::ERROR => b.error_raw(1, v),
        Op::Raw(t, v) => b.raw(*t, v),
    }
}

fn check_op(op: &Op, t: &Tlv<'_>) {
    match (op, t) {
        (Op::Info, Tlv::Info) => {}
        (Op::Connect(a, o), Tlv::Connect(c)) => {
            let want = match a.ip() {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a.ip(), IpAddr::V4),
                v4 => v4,
            };
            assert_eq!(c.remote(), SocketAddr::new(want, a.port()));
            assert!(
                c.options()
                    .map(|x| (x.kind, x.value.to_vec()))
                    .eq(o.iter().cloned())
            );
        }
        (Op::Ext(v), Tlv::ExtendedTcpHeader { options }) => assert_eq!(&options[..v.len()], &v[..]),
        (Op::Supported(v), Tlv::SupportedTcpExtensions(l)) => assert_eq!(l.values(), &v[..]),
        (Op::Cookie(v), Tlv::Cookie(c)) => assert_eq!(&c[..v.len()], &v[..]),
        (Op::Error(code, v), Tlv::Error(e)) => {
            assert_eq!(e.code().to_u8(), *code);
            assert_eq!(&e.raw_value()[..v.len()], &v[..]);
        }
        (Op::Raw(_, v), Tlv::Error(e)) => assert_eq!(&e.raw_value()[..v.len()], &v[..]),
        (Op::Raw(ty, v), Tlv::Unknown { ty: t2, value }) => {
            assert_eq!(ty, t2);
            assert_eq!(&value[..v.len()], &v[..]);
        }
        (op, t) => panic!("{op:?} parsed as {t:?}"),
    }
}

proptest! {
    #[test]
    fn random_valid_messages_round_trip(
        ops in prop::collection::vec(op_strategy(), 0..6),
        app in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let mut b = MessageBuilder::new(&mut buf).unwrap();
        let mut applied = Vec::new();
        for op in &ops {
            if apply(&mut b, op).is_ok() {
                applied.push(op.clone());
            }
        }
        let n = b.finish().unwrap();
        let mut wire = buf[..n].to_vec();
        wire.extend_from_slice(&app);
        let msg = Message::parse(&wire).unwrap();
        prop_assert_eq!(msg.len(), n);
        let tlvs: Vec<_> = msg.tlvs().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(tlvs.len(), applied.len());
        for (op, t) in applied.iter().zip(&tlvs) {
            check_op(op, t);
        }
        crate::fuzzing::convert_message(&wire);
    }

    #[test]
    fn parser_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = ConnectRequest::parse(&data);
        if let Ok(m) = Message::parse(&data) {
            for t in m.tlvs() {
                let _ = t.map(|t| t.buffer_len());
            }
        }
        crate::fuzzing::convert_message(&data);
    }

    #[test]
    fn mutated_requests_hold_invariants(
        data in prop::collection::vec(any::<u8>(), 0..120),
        pos in 0usize..64,
    ) {
        // A valid header + Connect prefix followed by random TLV bytes, so the fuzz
        // invariants see mostly well-framed messages.
        let mut m = REQ_V4.to_vec();
        m.extend_from_slice(&data);
        let words = (m.len() / 4).min(255) as u8;
        m[1] = words;
        if pos < m.len() && pos >= 4 {
            m[pos] ^= 0x5a;
        }
        crate::fuzzing::convert_message(&m);
    }
}

/// The checked-in fuzz seeds are what their names say: `req_*` are accepted
/// requests, `bad_*` are refused, `reply_*` / `err_*` are well-formed replies.
#[test]
fn fuzz_seeds_classified() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/convert_message");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let name = std::string::String::from(path.file_name().unwrap().to_str().unwrap());
        let data = std::fs::read(&path).unwrap();
        let req = ConnectRequest::parse(&data);
        if name.starts_with("req_") {
            assert!(req.is_ok(), "{name}: {req:?}");
        } else if name.starts_with("bad_") {
            assert!(req.is_err(), "{name}");
        } else if name.starts_with("reply_") || name.starts_with("err_") {
            let m = Message::parse(&data).unwrap();
            assert_eq!(m.check_tlvs(), Ok(()), "{name}");
        }
        n += 1;
    }
    assert!(n >= 14);
}
