//! ICMP errors from the core side about a binding (RFC 8803 §4.2, RFC 5508).
//!
//! A hard error about our downstream SYN answers the client with Convert Error 97
//! (Destination Unreachable) carrying the ICMP code; soft errors leave the SYN
//! pending until the handshake timeout (RFC 5461: soft errors must not abort a
//! connection attempt). Errors about established connections are counted and
//! dropped: the engine does not yet relay them (PMTU handling is future work).

use core::net::IpAddr;

use hac_wire::convert::ErrorCode;
use hac_wire::{icmpv4, icmpv6, ipv4, ipv6};

use crate::conn::State;
use crate::drop::DropReason;
use crate::engine::{Action, Engine};
use crate::packet::PacketBuf;
use crate::time::Instant;

/// ICMPv4 Destination Unreachable codes treated as hard for a connection attempt
/// (RFC 1122 §4.2.3.9: protocol and port unreachable; RFC 5461 §2 and the
/// administratively-prohibited family, which no retransmission will cure).
const HARD_V4: [u8; 6] = [2, 3, 9, 10, 12, 13];
/// ICMPv6 Destination Unreachable codes treated as hard (RFC 4443 §3.1:
/// administratively prohibited, port unreachable, source address failed ingress/egress
/// policy, reject route).
const HARD_V6: [u8; 4] = [1, 4, 5, 6];

/// The offending connection quoted in an ICMP error: (server, pool) as the return
/// traffic would carry them, and whether the error is hard.
struct Quoted {
    key: ((IpAddr, u16), (IpAddr, u16)),
    hard: bool,
    code: u8,
}

fn quoted_v4(pkt: &[u8]) -> Option<Quoted> {
    let ip = ipv4::Packet::new_checked(pkt).ok()?;
    if ip.protocol() != ipv4::PROTO_ICMP || ip.is_fragment() {
        return None;
    }
    let icmp = icmpv4::Packet::new_checked(ip.payload()).ok()?;
    let q = icmp.quoted().ok()?;
    if q.protocol() != ipv4::PROTO_TCP {
        return None;
    }
    let unreachable = icmp.msg_type() == icmpv4::Message::DstUnreachable;
    let code = icmp.msg_code();
    // Our packet went pool → server; the binding is keyed (server, pool).
    let key = (
        (IpAddr::V4(q.dst_addr()), q.dst_port()),
        (IpAddr::V4(q.src_addr()), q.src_port()),
    );
    Some(Quoted {
        key,
        hard: unreachable && HARD_V4.contains(&code),
        code,
    })
}

fn quoted_v6(pkt: &[u8]) -> Option<Quoted> {
    let ip = ipv6::Packet::new_checked(pkt).ok()?;
    let ul = ip.upper_layer().ok()?;
    if ul.protocol != ipv6::next_header::ICMPV6 || ul.fragment.is_some() {
        return None;
    }
    let icmp = icmpv6::Packet::new_checked(pkt.get(ul.offset..ul.offset + ul.len)?).ok()?;
    let q = icmp.quoted().ok()?;
    let unreachable = icmp.msg_type() == icmpv6::Message::DstUnreachable;
    let code = icmp.msg_code();
    let key = (
        (IpAddr::V6(q.dst_addr()), q.dst_port()),
        (IpAddr::V6(q.src_addr()), q.src_port()),
    );
    Some(Quoted {
        key,
        hard: unreachable && HARD_V6.contains(&code),
        code,
    })
}

impl<P: PacketBuf> Engine<P> {
    /// A non-TCP packet from the core side: ICMP errors about bindings.
    pub(crate) fn core_icmp(&mut self, now: Instant, pkt: &P) -> Action {
        let d = pkt.data();
        let q = match d.first().map(|b| b >> 4) {
            Some(4) => quoted_v4(d),
            Some(6) => quoted_v6(d),
            _ => None,
        };
        let Some(q) = q else {
            return Action::Drop(DropReason::NotTcp);
        };
        let ((sip, sport), (pip, pport)) = q.key;
        let Some(id) = self.find_server(sip, sport, pip, pport) else {
            return Action::Drop(DropReason::IcmpNoBinding);
        };
        if q.hard && self.conn(id).is_some_and(|c| c.state == State::SynSent) {
            // RFC 8803 §6.2.8: 97 with the ICMP code; no ICMP payload echoed.
            return self.server_failed(now, id, ErrorCode::DestinationUnreachable, q.code);
        }
        Action::Drop(DropReason::IcmpNoBinding)
    }
}
