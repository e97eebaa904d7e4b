//! What the appliance does as an IP host on each link, sans-IO: answer ARP and IPv6
//! neighbour solicitation for its own addresses (port addresses, converter service
//! addresses on access ports, pool addresses on core ports), answer ICMP echo to
//! them, learn neighbours, and resolve the next hop of every packet the engine sends
//! (static routes; operators configure addresses and routes, never MAC addresses).
//!
//! Frames are Ethernet frames in a byte buffer; answers are written in place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hac_core::Instant;
use hac_wire::arp::{self, ArpRepr, Operation};
use hac_wire::ethernet::{EtherType, EthernetAddress, EthernetRepr, Frame};
use hac_wire::icmpv4::{self, Icmpv4Repr};
use hac_wire::icmpv6::{self, Icmpv6Repr, NaFlags};
use hac_wire::ipv4::{self, Ipv4Repr};
use hac_wire::ipv6::{self, Ipv6Repr};
use hashbrown::HashMap;

use crate::config::{Config, Role};

/// Ethernet header length (untagged: the appliance's ports are untagged).
pub const ETH_LEN: usize = 14;

/// How long a learned neighbour stays valid (RFC 4861 §6.3.2 REACHABLE_TIME-ish; ARP
/// caches use minutes).
const NEIGHBOUR_TTL_US: u64 = 300_000_000;

/// What to do with a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// An IP packet for the engine, starting at this offset.
    Ip,
    /// The frame was rewritten in place into an answer of this length; send it back
    /// out of the port it came from.
    Reply(usize),
    /// Consumed (learned a neighbour, or nothing to do).
    Done,
}

/// The per-worker host state: neighbour caches per port.
#[derive(Debug, Default)]
pub struct Host {
    neighbours: Vec<HashMap<IpAddr, (EthernetAddress, Instant)>>,
    /// Learned since the last `drain_learned` (for the shared table).
    learned: Vec<((usize, IpAddr), EthernetAddress)>,
}

impl Host {
    /// Host state for `ports` ports.
    #[must_use]
    pub fn new(ports: usize) -> Host {
        Host {
            neighbours: (0..ports).map(|_| HashMap::new()).collect(),
            learned: Vec::new(),
        }
    }

    /// Neighbours learned since the last call.
    pub fn drain_learned(&mut self) -> Vec<((usize, IpAddr), EthernetAddress)> {
        std::mem::take(&mut self.learned)
    }

    /// Records a neighbour.
    pub fn learn(&mut self, port: usize, ip: IpAddr, mac: EthernetAddress, now: Instant) {
        if mac.is_unicast()
            && let Some(n) = self.neighbours.get_mut(port)
            && n.insert(ip, (mac, now)).is_none_or(|(m, _)| m != mac)
            && self.learned.len() < 1024
        {
            self.learned.push(((port, ip), mac));
        }
    }

    /// A cached neighbour, if fresh.
    #[must_use]
    pub fn neighbour(&self, port: usize, ip: IpAddr, now: Instant) -> Option<EthernetAddress> {
        let (mac, at) = self.neighbours.get(port)?.get(&ip)?;
        (now.0.saturating_sub(at.0) < NEIGHBOUR_TTL_US).then_some(*mac)
    }

    /// Handles a received frame on `port` whose own MAC is `mac`.
    pub fn input(
        &mut self,
        cfg: &Config,
        port: usize,
        mac: EthernetAddress,
        frame: &mut [u8],
        now: Instant,
    ) -> Input {
        let Ok(eth) = Frame::new_checked(&*frame) else {
            return Input::Done;
        };
        if eth.tag_count() != 0 {
            return Input::Done;
        }
        let (src_mac, dst_mac) = (eth.src_addr(), eth.dst_addr());
        if !(dst_mac == mac || dst_mac.is_broadcast() || dst_mac.is_multicast()) {
            return Input::Done;
        }
        match eth.payload_ethertype() {
            EtherType::ARP => self.arp(cfg, port, mac, frame, now),
            EtherType::IPV4 => {
                let Ok(ip) = ipv4::Packet::new_checked(&frame[ETH_LEN..]) else {
                    return Input::Done;
                };
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                if ip.protocol() == ipv4::PROTO_ICMP
                    && cfg.owns(port, dst.into())
                    && !ip.is_fragment()
                    && let Some(n) = echo_v4(frame, mac, src_mac, src, dst)
                {
                    self.learn(port, src.into(), src_mac, now);
                    return Input::Reply(n);
                }
                Input::Ip
            }
            EtherType::IPV6 => {
                let Ok(ip) = ipv6::Packet::new_checked(&frame[ETH_LEN..]) else {
                    return Input::Done;
                };
                let (src, dst, hop) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
                let Ok(ul) = ip.upper_layer() else {
                    return Input::Done;
                };
                if ul.protocol == ipv6::next_header::ICMPV6 && ul.fragment.is_none() {
                    let off = ETH_LEN + ul.offset;
                    return self.icmpv6(
                        cfg, port, mac, src_mac, frame, off, ul.len, src, dst, hop, now,
                    );
                }
                Input::Ip
            }
            _ => Input::Done,
        }
    }

    fn arp(
        &mut self,
        cfg: &Config,
        port: usize,
        mac: EthernetAddress,
        frame: &mut [u8],
        now: Instant,
    ) -> Input {
        let Ok(p) = arp::Packet::new_checked(&frame[ETH_LEN..]) else {
            return Input::Done;
        };
        let Ok(r) = ArpRepr::parse(&p) else {
            return Input::Done;
        };
        // RFC 826: merge the sender into the cache if it is for us.
        let for_us = cfg.owns(port, r.target_protocol_addr.into());
        if for_us
            || self
                .neighbour(port, r.sender_protocol_addr.into(), now)
                .is_some()
        {
            self.learn(
                port,
                r.sender_protocol_addr.into(),
                r.sender_hardware_addr,
                now,
            );
        }
        if r.operation != Operation::Request || !for_us {
            return Input::Done;
        }
        let Some(reply) = r.reply(mac) else {
            return Input::Done;
        };
        let eth = EthernetRepr {
            dst_addr: r.sender_hardware_addr,
            src_addr: mac,
            vlan: None,
            inner_vlan: None,
            ethertype: EtherType::ARP,
        };
        match (eth.emit(frame), reply.emit(&mut frame[ETH_LEN..])) {
            (Ok(_), Ok(n)) => Input::Reply(ETH_LEN + n),
            _ => Input::Done,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn icmpv6(
        &mut self,
        cfg: &Config,
        port: usize,
        mac: EthernetAddress,
        src_mac: EthernetAddress,
        frame: &mut [u8],
        off: usize,
        len: usize,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop: u8,
        now: Instant,
    ) -> Input {
        let Some(msg) = frame.get(off..off + len) else {
            return Input::Done;
        };
        let Ok(pkt) = icmpv6::Packet::new_checked(msg) else {
            return Input::Done;
        };
        let Ok(repr) = Icmpv6Repr::parse(src, dst, &pkt) else {
            return Input::Done;
        };
        let mut scratch = [0u8; 1280];
        let (reply, reply_src, reply_dst, reply_mac) = match repr {
            // RFC 4861 §7.1.1: hop limit 255; answer for addresses we own.
            Icmpv6Repr::NeighborSolicit {
                target,
                source_lladdr,
            } if hop == 255 && cfg.owns(port, target.into()) => {
                let to_mac = source_lladdr.unwrap_or(src_mac);
                if !src.is_unspecified() {
                    self.learn(port, src.into(), to_mac, now);
                }
                // RFC 4861 §7.2.4: solicited NA to the source (all-nodes for DAD).
                let (d, dm) = if src.is_unspecified() {
                    let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                    (all, EthernetAddress::from_ipv6_multicast(all))
                } else {
                    (src, to_mac)
                };
                let na = Icmpv6Repr::NeighborAdvert {
                    flags: NaFlags {
                        router: true,
                        solicited: !src.is_unspecified(),
                        override_: true,
                    },
                    target,
                    target_lladdr: Some(mac),
                };
                let Ok(n) = na.emit(target, d, &mut scratch) else {
                    return Input::Done;
                };
                (n, target, d, dm)
            }
            Icmpv6Repr::NeighborAdvert {
                target,
                target_lladdr,
                ..
            } if hop == 255 => {
                if let Some(m) = target_lladdr {
                    self.learn(port, target.into(), m, now);
                }
                return Input::Done;
            }
            Icmpv6Repr::EchoRequest { .. } if cfg.owns(port, dst.into()) => {
                let Some(r) = repr.echo_reply() else {
                    return Input::Done;
                };
                let Ok(n) = r.emit(dst, src, &mut scratch) else {
                    return Input::Done;
                };
                self.learn(port, src.into(), src_mac, now);
                (n, dst, src, src_mac)
            }
            _ => {
                return if cfg.owns(port, dst.into()) {
                    Input::Done
                } else {
                    Input::Ip
                };
            }
        };
        let hop_limit = if matches!(repr, Icmpv6Repr::EchoRequest { .. }) {
            64
        } else {
            255
        };
        let ip = Ipv6Repr {
            src_addr: reply_src,
            dst_addr: reply_dst,
            next_header: ipv6::next_header::ICMPV6,
            payload_len: reply,
            hop_limit,
            traffic_class: 0,
            flow_label: 0,
        };
        let eth = EthernetRepr {
            dst_addr: reply_mac,
            src_addr: mac,
            vlan: None,
            inner_vlan: None,
            ethertype: EtherType::IPV6,
        };
        let total = ETH_LEN + 40 + reply;
        if frame.len() < total {
            return Input::Done;
        }
        if eth.emit(frame).is_err() || ip.emit(&mut frame[ETH_LEN..]).is_err() {
            return Input::Done;
        }
        frame[ETH_LEN + 40..total].copy_from_slice(&scratch[..reply]);
        Input::Reply(total)
    }

    /// Writes an ARP request (IPv4) or a neighbour solicitation (IPv6) for `target`
    /// into `buf`; returns its length.
    #[must_use]
    pub fn solicit(
        cfg: &Config,
        port: usize,
        mac: EthernetAddress,
        target: IpAddr,
        buf: &mut [u8],
    ) -> Option<usize> {
        let p = cfg.ports.get(port)?;
        match target {
            IpAddr::V4(t) => {
                let IpAddr::V4(ours) = p
                    .addresses
                    .iter()
                    .find(|a| a.addr.is_ipv4() && a.on_link(target))?
                    .addr
                else {
                    return None;
                };
                let eth = EthernetRepr {
                    dst_addr: EthernetAddress::BROADCAST,
                    src_addr: mac,
                    vlan: None,
                    inner_vlan: None,
                    ethertype: EtherType::ARP,
                };
                let req = ArpRepr {
                    operation: Operation::Request,
                    sender_hardware_addr: mac,
                    sender_protocol_addr: ours,
                    target_hardware_addr: EthernetAddress([0; 6]),
                    target_protocol_addr: t,
                };
                eth.emit(buf).ok()?;
                Some(ETH_LEN + req.emit(buf.get_mut(ETH_LEN..)?).ok()?)
            }
            IpAddr::V6(t) => {
                let IpAddr::V6(ours) = p
                    .addresses
                    .iter()
                    .find(|a| a.addr.is_ipv6() && a.on_link(target))?
                    .addr
                else {
                    return None;
                };
                let dst = icmpv6::solicited_node(t);
                let ns = Icmpv6Repr::NeighborSolicit {
                    target: t,
                    source_lladdr: Some(mac),
                };
                let mut scratch = [0u8; 64];
                let n = ns.emit(ours, dst, &mut scratch).ok()?;
                let eth = EthernetRepr {
                    dst_addr: EthernetAddress::from_ipv6_multicast(dst),
                    src_addr: mac,
                    vlan: None,
                    inner_vlan: None,
                    ethertype: EtherType::IPV6,
                };
                let ip = Ipv6Repr {
                    src_addr: ours,
                    dst_addr: dst,
                    next_header: ipv6::next_header::ICMPV6,
                    payload_len: n,
                    hop_limit: 255,
                    traffic_class: 0,
                    flow_label: 0,
                };
                eth.emit(buf).ok()?;
                ip.emit(buf.get_mut(ETH_LEN..)?).ok()?;
                buf.get_mut(ETH_LEN + 40..ETH_LEN + 40 + n)?
                    .copy_from_slice(&scratch[..n]);
                Some(ETH_LEN + 40 + n)
            }
        }
    }
}

/// Answers an ICMPv4 echo request in place; returns the frame length.
fn echo_v4(
    frame: &mut [u8],
    mac: EthernetAddress,
    src_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> Option<usize> {
    let ip = ipv4::Packet::new_checked(&frame[ETH_LEN..]).ok()?;
    let ihl = ip.header_len();
    let icmp = icmpv4::Packet::new_checked(ip.payload()).ok()?;
    let r = Icmpv4Repr::parse(&icmp).ok()?;
    let reply = r.echo_reply()?;
    let mut scratch = vec![0u8; reply.buffer_len()];
    let n = reply.emit(&mut scratch).ok()?;
    let ipr = Ipv4Repr {
        src_addr: dst,
        dst_addr: src,
        protocol: ipv4::PROTO_ICMP,
        payload_len: n,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: false,
    };
    let _ = ihl;
    let eth = EthernetRepr {
        dst_addr: src_mac,
        src_addr: mac,
        vlan: None,
        inner_vlan: None,
        ethertype: EtherType::IPV4,
    };
    let total = ETH_LEN + 20 + n;
    if frame.len() < total {
        return None;
    }
    eth.emit(frame).ok()?;
    ipr.emit(&mut frame[ETH_LEN..]).ok()?;
    frame[ETH_LEN + 20..total].copy_from_slice(&scratch[..n]);
    Some(total)
}

/// Where a packet to `dst` leaves: (port index, next-hop address). On-link
/// destinations go direct; otherwise the longest matching static route whose next
/// hop is on a port's link (of the wanted role when given).
#[must_use]
pub fn next_hop(cfg: &Config, dst: IpAddr, role: Option<Role>) -> Option<(usize, IpAddr)> {
    let role_ok = |i: usize| role.is_none_or(|r| cfg.ports[i].role == r);
    for (i, p) in cfg.ports.iter().enumerate() {
        if role_ok(i) && p.addresses.iter().any(|a| a.on_link(dst)) {
            return Some((i, dst));
        }
    }
    let mut best: Option<(u8, usize, IpAddr)> = None;
    for r in &cfg.routes {
        if !r.prefix.contains(dst) || best.is_some_and(|(l, _, _)| l >= r.prefix.len) {
            continue;
        }
        if let Some(i) = (0..cfg.ports.len())
            .find(|&i| role_ok(i) && cfg.ports[i].addresses.iter().any(|a| a.on_link(r.via)))
        {
            best = Some((r.prefix.len, i, r.via));
        }
    }
    best.map(|(_, i, via)| (i, via))
}

/// Writes the Ethernet header for an IP packet of family `v6` at `frame[..14]`.
pub fn write_eth(frame: &mut [u8], src: EthernetAddress, dst: EthernetAddress, v6: bool) -> bool {
    EthernetRepr {
        dst_addr: dst,
        src_addr: src,
        vlan: None,
        inner_vlan: None,
        ethertype: if v6 { EtherType::IPV6 } else { EtherType::IPV4 },
    }
    .emit(frame)
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::LAB;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    #[test]
    fn arp_for_service_address_on_access_port() {
        let cfg = Config::parse(LAB).unwrap();
        let mut host = Host::new(2);
        let mut f = [0u8; 64];
        let eth = EthernetRepr {
            dst_addr: EthernetAddress::BROADCAST,
            src_addr: PEER,
            vlan: None,
            inner_vlan: None,
            ethertype: EtherType::ARP,
        };
        eth.emit(&mut f).unwrap();
        ArpRepr {
            operation: Operation::Request,
            sender_hardware_addr: PEER,
            sender_protocol_addr: "198.18.1.2".parse().unwrap(),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: "192.0.2.1".parse().unwrap(),
        }
        .emit(&mut f[ETH_LEN..])
        .unwrap();
        let r = host.input(&cfg, 0, MAC, &mut f, Instant(0));
        assert_eq!(r, Input::Reply(42));
        let reply = ArpRepr::parse(&arp::Packet::new_checked(&f[ETH_LEN..42]).unwrap()).unwrap();
        assert_eq!(reply.operation, Operation::Reply);
        assert_eq!(reply.sender_hardware_addr, MAC);
        assert_eq!(
            host.neighbour(0, "198.18.1.2".parse().unwrap(), Instant(1)),
            Some(PEER)
        );
        // Pool addresses are not answered on the access port.
        let mut g = [0u8; 64];
        eth.emit(&mut g).unwrap();
        ArpRepr {
            operation: Operation::Request,
            sender_hardware_addr: PEER,
            sender_protocol_addr: "198.18.1.2".parse().unwrap(),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: "203.0.113.1".parse().unwrap(),
        }
        .emit(&mut g[ETH_LEN..])
        .unwrap();
        assert_eq!(host.input(&cfg, 0, MAC, &mut g, Instant(0)), Input::Done);
    }

    #[test]
    fn neighbour_solicitation_answered_and_routes_resolved() {
        let cfg = Config::parse(LAB).unwrap();
        let mut buf = [0u8; 128];
        // Our own NS for the server, parsed back by a second host on the other side.
        let n = Host::solicit(&cfg, 1, PEER, "2001:db8:100::2".parse().unwrap(), &mut buf).unwrap();
        // Pretend it targets our address instead: build an NS for 2001:db8:100::1.
        let m = Host::solicit(&cfg, 1, PEER, "2001:db8:100::1".parse().unwrap(), &mut buf).unwrap();
        assert!(n > 0 && m > 0);
        let mut host = Host::new(2);
        let r = host.input(&cfg, 1, MAC, &mut buf[..m], Instant(0));
        assert!(matches!(r, Input::Reply(_)), "{r:?}");
        assert_eq!(
            next_hop(&cfg, "8.8.8.8".parse().unwrap(), None),
            Some((1, "198.51.100.2".parse().unwrap()))
        );
        assert_eq!(
            next_hop(&cfg, "198.18.1.2".parse().unwrap(), None),
            Some((0, "198.18.1.2".parse().unwrap()))
        );
        assert_eq!(
            next_hop(&cfg, "2001:db8:99::1".parse().unwrap(), None),
            None
        );
    }
}
