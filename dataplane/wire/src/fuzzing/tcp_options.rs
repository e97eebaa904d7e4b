//! Fuzz invariant for the TCP option walker, emitters and in-place rewriter.
//!
//! 1. The input, taken as an option area of any length, is walked: every option
//!    starts where the previous one ended, lies within the input, and (options +
//!    EOL/NOP bytes + padding after EOL) account for exactly the input when the
//!    walk is clean. Typed and raw walkers agree. Every parsed option re-emits to
//!    its exact input bytes and parses back equal. [`summarize`] agrees with the
//!    walk.
//! 2. The first `4·⌊min(len, 40)/4⌋` input bytes become the option area of a
//!    synthesized IPv4 and IPv6 TCP segment (the rest, up to 64 bytes, is payload),
//!    and a series of rewrites runs on it: after each success the TCP checksum
//!    equals a full recomputation, the IP length fields and IPv4 header checksum
//!    are right, the payload is intact and (for a cleanly walking area) the new
//!    area walks cleanly; after each failure the packet is byte-for-byte unchanged.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::rewrite::{IpPacket, IpVersion};
use crate::seq::SeqNum;
use crate::tcp::{Flags, MAX_OPTIONS_LEN, Packet, TcpRepr};
use crate::tcp_options::{
    MAX_MPTCP_SPANS, OptionSpan, RawOptions, TcpOption, TcpOptions, kind, summarize,
};

const PAYLOAD_MAX: usize = 64;
const SPARE: usize = 40;
/// IPv6 header + max TCP header + payload + spare.
const BUF: usize = 40 + 60 + PAYLOAD_MAX + SPARE;

const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);

/// Checks the invariants on arbitrary input.
pub fn tcp_options(data: &[u8]) {
    walk(data);
    let area_len = data.len().min(MAX_OPTIONS_LEN) / 4 * 4;
    let (area, rest) = data.split_at(area_len);
    let payload = &rest[..rest.len().min(PAYLOAD_MAX)];
    rewrite(area, payload, IpVersion::V4);
    rewrite(area, payload, IpVersion::V6);
}

fn walk(area: &[u8]) {
    let mut raw_walk = RawOptions::new(area);
    let mut typed = TcpOptions::new(area);
    let mut consumed = 0usize;
    let mut clean = true;
    let mut saw_eol = false;
    let mut first_mss = None;
    let mut first_ts = None;
    let mut first_ws = None;
    let mut sack_perm = false;
    let mut mptcp = [OptionSpan::default(); MAX_MPTCP_SPANS];
    let mut n_mptcp = 0usize;
    for raw in raw_walk.by_ref() {
        let t = typed
            .next()
            .expect("typed walker ended before the raw walker");
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                assert_eq!(t, Err(e), "walkers disagree on a framing error");
                clean = false;
                break;
            }
        };
        assert_eq!(
            raw.offset, consumed,
            "option does not start where the last ended"
        );
        assert!(raw.end() <= area.len(), "option runs past the input");
        assert_eq!(
            &area[raw.offset..raw.end()],
            raw.bytes,
            "option bytes not from input"
        );
        consumed += raw.bytes.len();
        let opt = match raw.parse() {
            Ok(o) => o,
            Err(e) => {
                assert_eq!(t, Err(e), "walkers disagree on a typed error");
                clean = false;
                break;
            }
        };
        assert_eq!(t, Ok(opt));
        // Re-emit: exact bytes, parses back equal.
        assert_eq!(opt.buffer_len(), raw.bytes.len(), "buffer_len mismatch");
        let mut out = [0u8; 256];
        let n = opt.emit(&mut out).expect("a parsed option must re-emit");
        assert_eq!(&out[..n], raw.bytes, "re-emitted bytes differ");
        assert_eq!(
            TcpOption::parse(&out[..n]),
            Ok(opt),
            "re-emitted option parses differently"
        );
        assert_eq!(opt.emit(&mut out[..n - 1]), Err(crate::Error::NoSpace));
        match opt {
            TcpOption::EndOfList => saw_eol = true,
            TcpOption::Mss(v) => {
                first_mss.get_or_insert(v);
            }
            TcpOption::Timestamps { tsval, tsecr } => {
                first_ts.get_or_insert((tsval, tsecr));
            }
            TcpOption::WindowScale(v) => {
                first_ws.get_or_insert(v);
            }
            TcpOption::SackPermitted => sack_perm = true,
            TcpOption::Mptcp(b) => {
                assert_eq!(b, raw.bytes);
                if n_mptcp < MAX_MPTCP_SPANS && area.len() <= 255 {
                    mptcp[n_mptcp] = OptionSpan {
                        offset: raw.offset as u8,
                        len: raw.bytes.len() as u8,
                    };
                    n_mptcp += 1;
                }
            }
            _ => {}
        }
    }
    if clean {
        assert!(
            typed.next().is_none(),
            "typed walker outlived the raw walker"
        );
        // Length accounting: options + EOL/NOP bytes + padding after EOL == input.
        assert_eq!(raw_walk.offset(), consumed);
        assert_eq!(consumed + raw_walk.remainder().len(), area.len());
        if !saw_eol {
            assert_eq!(
                consumed,
                area.len(),
                "walk stopped early without EOL or error"
            );
        }
    }
    if area.len() <= 255 {
        match summarize(area) {
            Ok(s) => {
                assert!(clean, "summarize accepted what the walker rejects");
                assert_eq!(s.mss, first_mss);
                assert_eq!(s.timestamps, first_ts);
                assert_eq!(s.window_scale, first_ws);
                assert_eq!(s.sack_permitted, sack_perm);
                assert_eq!(s.mptcp(), &mptcp[..n_mptcp]);
            }
            Err(_) => assert!(!clean, "summarize rejected a clean area"),
        }
    }
}

/// Builds IPv4/IPv6 + TCP(SYN, `area`) + `payload` into `buf`; returns the length
/// and the TCP offset.
fn build(buf: &mut [u8; BUF], area: &[u8], payload: &[u8], v: IpVersion) -> (usize, usize) {
    let r = TcpRepr {
        src_port: 49152,
        dst_port: 80,
        seq_number: SeqNum(0x0102_0304),
        ack_number: SeqNum(0),
        flags: Flags::SYN,
        window_len: 65535,
        urgent_at: 0,
        options: area,
        payload_len: payload.len(),
    };
    let ip = match v {
        IpVersion::V4 => 20,
        IpVersion::V6 => 40,
    };
    let len = ip + r.buffer_len();
    let hl = r.emit(&mut buf[ip..]).expect("area is at most 40 bytes");
    buf[ip + hl..len].copy_from_slice(payload);
    match v {
        IpVersion::V4 => {
            buf[0] = 0x45;
            buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            buf[8] = 64;
            buf[9] = checksum::PROTO_TCP;
            buf[12..16].copy_from_slice(&SRC4.octets());
            buf[16..20].copy_from_slice(&DST4.octets());
            let c = checksum::checksum(&buf[..20]);
            buf[10..12].copy_from_slice(&c.to_be_bytes());
            Packet::new_unchecked(&mut buf[ip..len]).fill_checksum_v4(SRC4, DST4);
        }
        IpVersion::V6 => {
            buf[0] = 0x60;
            buf[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            buf[6] = checksum::PROTO_TCP;
            buf[7] = 64;
            buf[8..24].copy_from_slice(&SRC6.octets());
            buf[24..40].copy_from_slice(&DST6.octets());
            Packet::new_unchecked(&mut buf[ip..len]).fill_checksum_v6(SRC6, DST6);
        }
    }
    (len, ip)
}

fn check_packet(pkt: &[u8], ip: usize, v: IpVersion, payload: &[u8], must_walk: bool) {
    let tcp = Packet::new_checked(&pkt[ip..]).expect("rewrite broke the TCP header");
    match v {
        IpVersion::V4 => {
            assert_eq!(checksum::checksum(&pkt[..20]), 0, "IPv4 header checksum");
            assert_eq!(usize::from(u16::from_be_bytes([pkt[2], pkt[3]])), pkt.len());
            assert!(tcp.verify_checksum_v4(SRC4, DST4), "TCP checksum (v4)");
        }
        IpVersion::V6 => {
            assert_eq!(
                usize::from(u16::from_be_bytes([pkt[4], pkt[5]])) + 40,
                pkt.len()
            );
            assert!(tcp.verify_checksum_v6(SRC6, DST6), "TCP checksum (v6)");
        }
    }
    // Incremental result equals a full recomputation.
    let mut copy = [0u8; BUF];
    let seg = &pkt[ip..];
    copy[..seg.len()].copy_from_slice(seg);
    let mut p = Packet::new_unchecked(&mut copy[..seg.len()]);
    match v {
        IpVersion::V4 => p.fill_checksum_v4(SRC4, DST4),
        IpVersion::V6 => p.fill_checksum_v6(SRC6, DST6),
    }
    assert_eq!(p.checksum(), tcp.checksum(), "incremental != full checksum");
    assert_eq!(tcp.payload(), payload, "payload moved wrongly");
    assert!(tcp.options().len() <= MAX_OPTIONS_LEN && tcp.options().len().is_multiple_of(4));
    if must_walk {
        for o in RawOptions::new(tcp.options()) {
            assert!(o.is_ok(), "rewritten option area does not walk");
        }
    }
}

fn rewrite(area: &[u8], payload: &[u8], v: IpVersion) {
    let mut buf = [0u8; BUF];
    let (mut len, ip) = build(&mut buf, area, payload, v);
    let clean = RawOptions::new(area).all(|r| r.is_ok());
    check_packet(&buf[..len], ip, v, payload, clean);
    let first_off = RawOptions::new(area)
        .find_map(|r| {
            r.ok()
                .filter(|r| r.kind() != kind::NOP && r.kind() != kind::EOL)
        })
        .map_or(0, |r| r.offset);
    let ts = TcpOption::Timestamps {
        tsval: 0xdead_beef,
        tsecr: 1,
    };
    for step in 0u8..8 {
        let before = buf;
        let mut p = IpPacket::new(&mut buf, len, v, ip).expect("synthesized packet is valid");
        let r = match step {
            0 => p.clamp_mss(536).map(|_| 0),
            1 => p.remove_mptcp(),
            2 => p.insert_option(0, &TcpOption::SackPermitted),
            3 => p.append_option(&ts),
            4 => p.replace_option(first_off, &TcpOption::WindowScale(14)),
            5 => p.append_raw(&[kind::MPTCP, 4, 0x81, 0x01]),
            6 => p.remove_option_at(first_off),
            _ => p.remove_kind(kind::TIMESTAMPS),
        };
        let new_len = p.len();
        match r {
            Ok(delta) => {
                assert_eq!(new_len as isize, len as isize + delta, "delta mismatch");
                check_packet(&buf[..new_len], ip, v, payload, clean);
                len = new_len;
            }
            Err(_) => {
                assert_eq!(new_len, len, "failed rewrite changed the length");
                assert!(buf == before, "failed rewrite modified the packet");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_inputs() {
        tcp_options(&[]);
        tcp_options(&[
            2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7, 0x1e, 4,
        ]);
        tcp_options(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        tcp_options(&[2, 0]);
        tcp_options(&[5, 34]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn invariant_holds(data in prop::collection::vec(any::<u8>(), 0..120)) {
            tcp_options(&data);
        }
    }
}
