//! Fuzz invariant for the packet path: Ethernet (optionally VLAN-tagged) →
//! IPv4 / IPv6 / ARP → ICMPv4 / ICMPv6. The raw input is also fed straight to the
//! IP parsers so the fuzzer reaches them without an Ethernet header.
//!
//! Asserted: every slice a view returns lies within the input; header + payload
//! lengths add up to the length fields; incremental checksum updates keep a valid
//! checksum valid; every Repr that parses emits and reparses to itself.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::arp::{self, ArpRepr};
use crate::ethernet::{EtherType, EthernetRepr, Frame};
use crate::icmpv4::{self, Icmpv4Repr};
use crate::icmpv6::{self, Icmpv6Repr, NdiscOption};
use crate::ipv4::{self, Ipv4Repr};
use crate::ipv6::{self, Ipv6Repr};

/// Inputs are cut to this many bytes (stack scratch buffers have this size).
const MAX: usize = 4096;

/// True when `inner` is a sub-slice of `outer`.
fn within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    i >= o && i + inner.len() <= o + outer.len()
}

/// Checks the invariants on arbitrary input.
pub fn packet(data: &[u8]) {
    let data = &data[..data.len().min(MAX)];
    if let Ok(frame) = Frame::new_checked(data) {
        let payload = frame.payload();
        assert!(within(data, payload));
        assert_eq!(frame.header_len() + payload.len(), data.len());
        assert_eq!(frame.header_len(), 14 + 4 * frame.tag_count());
        if let Ok(r) = EthernetRepr::parse(&frame) {
            // The Repr holds every header bit: emitting reproduces the header.
            let mut hdr = [0u8; 22];
            let n = r.emit(&mut hdr).expect("parsed Ethernet header must emit");
            assert_eq!(n, frame.header_len());
            assert_eq!(hdr[..n], data[..n]);
            let f2 = Frame::new_checked(&hdr[..n]).expect("emitted header must check");
            assert_eq!(EthernetRepr::parse(&f2), Ok(r));
        }
        match frame.payload_ethertype() {
            EtherType::IPV4 => ipv4_layer(data, payload),
            EtherType::IPV6 => ipv6_layer(data, payload),
            EtherType::ARP => arp_layer(data, payload),
            _ => {}
        }
    }
    match data.first().map(|b| b >> 4) {
        Some(4) => ipv4_layer(data, data),
        Some(6) => ipv6_layer(data, data),
        _ => arp_layer(data, data),
    }
}

fn arp_layer(input: &[u8], bytes: &[u8]) {
    let Ok(p) = arp::Packet::new_checked(bytes) else {
        return;
    };
    let _ = (
        p.hardware_type(),
        p.protocol_type(),
        p.hardware_len(),
        p.protocol_len(),
    );
    assert!(within(input, bytes));
    if let Ok(r) = ArpRepr::parse(&p) {
        let mut out = [0u8; arp::PACKET_LEN];
        assert_eq!(r.emit(&mut out), Ok(arp::PACKET_LEN));
        // Every field of the 28 bytes is represented.
        assert_eq!(out[..], bytes[..arp::PACKET_LEN]);
        let q = arp::Packet::new_checked(&out[..]).expect("emitted ARP must check");
        assert_eq!(ArpRepr::parse(&q), Ok(r));
    }
}

fn ipv4_layer(input: &[u8], bytes: &[u8]) {
    let Ok(p) = ipv4::Packet::new_checked(bytes) else {
        return;
    };
    let (payload, options) = (p.payload(), p.options());
    assert!(within(input, payload) && within(input, options) && within(input, p.header()));
    assert_eq!(p.header_len() + payload.len(), usize::from(p.total_len()));
    assert_eq!(ipv4::HEADER_LEN + options.len(), p.header_len());
    assert!(!p.is_first_fragment() || p.is_fragment());

    let mut scratch = [0u8; MAX];
    let s = &mut scratch[..bytes.len()];
    s.copy_from_slice(bytes);
    {
        let mut q = ipv4::Packet::new_checked(&mut *s).expect("copy must check");
        let valid = q.verify_checksum();
        // RFC 1624 updates keep a valid checksum valid (and an invalid one invalid).
        q.set_ttl(q.ttl().wrapping_sub(1));
        q.set_src_addr(Ipv4Addr::new(100, 64, 0, 1));
        q.set_dst_addr(Ipv4Addr::new(192, 0, 2, 1));
        let tl = q.total_len();
        assert_eq!(q.set_total_len(tl), Ok(()));
        assert_eq!(q.verify_checksum(), valid);
        q.fill_checksum();
        assert!(q.verify_checksum());
    }
    if let Ok(r) = Ipv4Repr::parse(&p) {
        let tl = usize::from(p.total_len());
        s.copy_from_slice(bytes);
        assert_eq!(r.emit(s), Ok(ipv4::HEADER_LEN));
        let q = ipv4::Packet::new_checked(&s[..tl]).expect("emitted IPv4 must check");
        assert_eq!(Ipv4Repr::parse(&q), Ok(r));
    }

    if p.frag_offset() != 0 {
        return; // a later fragment: no transport header
    }
    match p.protocol() {
        ipv4::PROTO_ICMP if !p.is_fragment() => icmpv4_layer(input, payload),
        ipv4::PROTO_TCP => tcp_layer(input, payload, |seg| {
            crate::checksum::tcp_ipv4(p.src_addr(), p.dst_addr(), seg)
        }),
        _ => {}
    }
}

fn icmpv4_layer(input: &[u8], bytes: &[u8]) {
    let Ok(p) = icmpv4::Packet::new_checked(bytes) else {
        return;
    };
    assert!(within(input, p.data()));
    assert_eq!(icmpv4::HEADER_LEN + p.data().len(), bytes.len());
    let _ = (
        p.msg_type(),
        p.msg_code(),
        p.rest_of_header(),
        p.next_hop_mtu(),
        p.pointer(),
    );
    if let Ok(q) = p.quoted() {
        assert!(within(input, q.transport()) && within(input, q.as_bytes()));
        assert!(q.transport().len() >= 8);
        assert_eq!(q.header_len() + q.transport().len(), p.data().len());
        let _ = (
            q.src_addr(),
            q.dst_addr(),
            q.protocol(),
            q.src_port(),
            q.dst_port(),
            q.tcp_seq(),
        );
        let _ = (q.total_len(), q.ident(), q.ttl(), q.frag_offset());
    }
    let mut scratch = [0u8; MAX];
    let s = &mut scratch[..bytes.len()];
    s.copy_from_slice(bytes);
    let mut m = icmpv4::Packet::new_checked(&mut *s).expect("copy must check");
    m.fill_checksum();
    assert!(m.verify_checksum());
    if let Ok(r) = Icmpv4Repr::parse(&p) {
        assert_eq!(r.buffer_len(), bytes.len());
        assert_eq!(r.emit(s), Ok(bytes.len()));
        let q = icmpv4::Packet::new_checked(&*s).expect("emitted ICMPv4 must check");
        assert_eq!(Icmpv4Repr::parse(&q), Ok(r));
    }
}

fn ipv6_layer(input: &[u8], bytes: &[u8]) {
    let Ok(p) = ipv6::Packet::new_checked(bytes) else {
        return;
    };
    let payload = p.payload();
    assert!(within(input, payload));
    assert_eq!(payload.len(), usize::from(p.payload_len()));
    let _ = (
        p.traffic_class(),
        p.flow_label(),
        p.hop_limit(),
        p.is_fragment(),
    );

    if let Ok(r) = Ipv6Repr::parse(&p) {
        let mut scratch = [0u8; MAX];
        let s = &mut scratch[..bytes.len()];
        s.copy_from_slice(bytes);
        assert_eq!(r.emit(s), Ok(ipv6::HEADER_LEN));
        assert_eq!(s[..], bytes[..]); // every fixed-header bit is represented
        let q = ipv6::Packet::new_checked(&*s).expect("emitted IPv6 must check");
        assert_eq!(Ipv6Repr::parse(&q), Ok(r));
    }

    let Ok(ul) = p.upper_layer() else { return };
    assert!(ul.offset >= ipv6::HEADER_LEN && ul.ext_headers <= ipv6::MAX_EXT_HEADERS);
    assert_eq!(ul.offset + ul.len, ipv6::HEADER_LEN + payload.len());
    let upper = p.upper_layer_payload(&ul);
    assert!(within(input, upper) && within(payload, upper));
    assert_eq!(upper.len(), ul.len);
    if ul.fragment.is_some_and(|f| f.offset != 0) {
        return; // a later fragment: no upper-layer header
    }
    match ul.protocol {
        ipv6::next_header::ICMPV6 => icmpv6_layer(input, p.src_addr(), p.dst_addr(), upper),
        ipv6::next_header::TCP => tcp_layer(input, upper, |seg| {
            crate::checksum::tcp_ipv6(p.src_addr(), p.dst_addr(), seg)
        }),
        _ => {}
    }
}

fn icmpv6_layer(input: &[u8], src: Ipv6Addr, dst: Ipv6Addr, bytes: &[u8]) {
    let Ok(p) = icmpv6::Packet::new_checked(bytes) else {
        return;
    };
    assert!(within(input, p.data()));
    let _ = (
        p.msg_type(),
        p.msg_code(),
        p.mtu(),
        p.target_addr(),
        p.echo_ident(),
        p.echo_seq_no(),
    );
    let _ = (p.router_flag(), p.solicited_flag(), p.override_flag());
    if bytes.len() >= icmpv6::NDISC_LEN {
        // Option lengths add up to the option area when every option is valid.
        let mut total = 0usize;
        let mut ok = true;
        for o in p.ndisc_options() {
            match o {
                Ok(NdiscOption::SourceLinkLayerAddr(_) | NdiscOption::TargetLinkLayerAddr(_)) => {
                    total += 8
                }
                Ok(NdiscOption::Other { data, .. }) => {
                    assert!(within(input, data));
                    total += data.len() + 2;
                }
                Err(_) => ok = false,
            }
        }
        if ok {
            assert_eq!(total, bytes.len() - icmpv6::NDISC_LEN);
        }
    }
    if let Ok(q) = p.quoted() {
        assert!(within(input, q.transport()) && within(input, q.as_bytes()));
        assert!(q.transport().len() >= 8);
        let ul = q.upper_layer();
        assert!(ul.offset + ul.len <= q.as_bytes().len());
        let _ = (
            q.src_addr(),
            q.dst_addr(),
            q.protocol(),
            q.src_port(),
            q.dst_port(),
            q.tcp_seq(),
        );
        let _ = (q.payload_len(), q.hop_limit());
    }
    let mut scratch = [0u8; MAX];
    {
        let s = &mut scratch[..bytes.len()];
        s.copy_from_slice(bytes);
        let mut m = icmpv6::Packet::new_checked(&mut *s).expect("copy must check");
        m.fill_checksum(src, dst);
        assert!(m.verify_checksum(src, dst));
    }
    if let Ok(r) = Icmpv6Repr::parse(src, dst, &p) {
        let n = r
            .emit(src, dst, &mut scratch)
            .expect("parsed ICMPv6 must emit");
        assert_eq!(n, r.buffer_len());
        assert!(n <= bytes.len()); // unknown NDISC options are dropped, nothing added
        let q = icmpv6::Packet::new_checked(&scratch[..n]).expect("emitted ICMPv6 must check");
        assert_eq!(Icmpv6Repr::parse(src, dst, &q), Ok(r));
    }
}

/// TCP: header/payload accounting, the option walk down to every MPTCP option, the
/// Convert message of a SYN, and that incremental rewrites keep a valid checksum
/// valid (`full` computes the checksum of a segment with the right pseudo-header;
/// it is 0 for a segment whose checksum verifies).
fn tcp_layer(input: &[u8], bytes: &[u8], full: impl Fn(&[u8]) -> u16) {
    let Ok(t) = crate::tcp::Packet::new_checked(bytes) else {
        return;
    };
    assert!(within(input, t.options()) && within(input, t.payload()));
    assert_eq!(t.header_len() + t.payload().len(), bytes.len());
    if let Ok(summary) = crate::tcp_options::summarize(t.options()) {
        for span in summary.mptcp() {
            let opt = span
                .slice(t.options())
                .expect("summary span inside the options");
            let _ = crate::mptcp::MptcpOption::parse(opt);
        }
    }
    if t.flags().contains(crate::tcp::Flags::SYN)
        && !t.payload().is_empty()
        && let Ok((_, app)) = crate::convert::ConnectRequest::parse(t.payload())
    {
        assert!(app <= t.payload().len());
    }
    // Incremental update (RFC 1624) versus full recomputation.
    if bytes.len() > MAX {
        return;
    }
    let mut buf = [0u8; MAX];
    let seg = &mut buf[..bytes.len()];
    seg.copy_from_slice(bytes);
    let valid = full(seg) == 0;
    let mut t = crate::tcp::Packet::new_unchecked(&mut *seg);
    t.rewrite_seq(t.seq_number() + 0x0101_0101);
    t.rewrite_ack(t.ack_number() + 7);
    t.rewrite_window(t.window_len() ^ 0x5a5a);
    t.rewrite_src_port(t.src_port().rotate_left(3));
    assert_eq!(
        full(seg) == 0,
        valid,
        "incremental TCP rewrite changed checksum validity"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn invariants_hold(data in prop::collection::vec(any::<u8>(), 0..200)) {
            packet(&data);
        }
    }
}
