//! Writing translated and engine-originated headers. A translated segment keeps its
//! payload where it is; the engine writes a fresh IP + TCP header (with its own
//! options) right in front of it, so the cost does not depend on the payload size.
//! The TCP checksum is completed from the payload's ones'-complement sum, which the
//! engine recovers from the received checksum without reading the payload
//! (RFC 1624 arithmetic): `payload = ~csum − pseudo − header`.

use core::net::{IpAddr, SocketAddr};

use hac_wire::checksum::{self, Checksum};
use hac_wire::ipv4::Ipv4Repr;
use hac_wire::ipv6::Ipv6Repr;
use hac_wire::seq::SeqNum;
use hac_wire::tcp::{Flags, TcpRepr};

/// TTL / hop limit of packets the converter sends (it is an endpoint at the IP level).
pub(crate) const TTL: u8 = 64;

/// One outgoing TCP header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpOut<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: SeqNum,
    pub ack: SeqNum,
    pub flags: Flags,
    pub window: u16,
    /// Options, already padded to a multiple of 4 bytes.
    pub options: &'a [u8],
}

/// IP header length for a family.
pub(crate) fn ip_header_len(ip: IpAddr) -> usize {
    if ip.is_ipv6() { 40 } else { 20 }
}

impl TcpOut<'_> {
    /// IP + TCP header length.
    pub fn header_len(&self) -> usize {
        ip_header_len(self.src.ip()) + 20 + self.options.len()
    }

    /// Pseudo-header partial sum for a segment of `tcp_len` bytes.
    fn pseudo(&self, tcp_len: usize) -> Checksum {
        pseudo_header(self.src.ip(), self.dst.ip(), tcp_len)
    }

    /// Writes the headers into `buf[..header_len()]`, for `payload_len` payload bytes
    /// whose ones'-complement sum is `payload`. Returns the header length, or None if
    /// `buf` is short or the addresses mix families.
    pub fn write(&self, buf: &mut [u8], payload_len: usize, payload: Checksum) -> Option<usize> {
        let hlen = self.header_len();
        let ip_len = ip_header_len(self.src.ip());
        let tcp_len = hlen - ip_len + payload_len;
        let b = buf.get_mut(..hlen)?;
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                Ipv4Repr {
                    src_addr: s,
                    dst_addr: d,
                    protocol: checksum::PROTO_TCP,
                    payload_len: tcp_len,
                    ttl: TTL,
                    dscp: 0,
                    ecn: 0,
                    ident: 0,
                    dont_frag: true,
                }
                .emit(b)
                .ok()?;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                Ipv6Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: checksum::PROTO_TCP,
                    payload_len: tcp_len,
                    hop_limit: TTL,
                    traffic_class: 0,
                    flow_label: 0,
                }
                .emit(b)
                .ok()?;
            }
            _ => return None,
        }
        let t = &mut b[ip_len..];
        TcpRepr {
            src_port: self.src.port(),
            dst_port: self.dst.port(),
            seq_number: self.seq,
            ack_number: self.ack,
            flags: self.flags,
            window_len: self.window,
            urgent_at: 0,
            options: self.options,
            payload_len,
        }
        .emit(t)
        .ok()?;
        let sum = self.pseudo(tcp_len).add_bytes(t).combine(payload).finish();
        t[16..18].copy_from_slice(&sum.to_be_bytes());
        Some(hlen)
    }
}

/// Pseudo-header partial sum (RFC 9293 §3.1, RFC 8200 §8.1).
pub(crate) fn pseudo_header(src: IpAddr, dst: IpAddr, tcp_len: usize) -> Checksum {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::ipv4_pseudo_header(
            s,
            d,
            checksum::PROTO_TCP,
            u16::try_from(tcp_len).unwrap_or(u16::MAX),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::ipv6_pseudo_header(
            s,
            d,
            checksum::PROTO_TCP,
            u32::try_from(tcp_len).unwrap_or(u32::MAX),
        ),
        _ => Checksum::new(),
    }
}

/// The ones'-complement sum of a received segment's payload, recovered from its TCP
/// checksum: `~csum = pseudo + header(csum = 0) + payload`, so
/// `payload = ~csum + ~pseudo + ~header` in ones'-complement arithmetic. Exact for a
/// segment whose checksum verifies; for a corrupt one the error carries over into the
/// translated checksum, which then fails at the receiver as it should.
pub(crate) fn payload_sum_from_checksum(
    src: IpAddr,
    dst: IpAddr,
    tcp_header: &[u8],
    payload_len: usize,
    csum: u16,
) -> Checksum {
    let pseudo = pseudo_header(src, dst, tcp_header.len() + payload_len).fold();
    let hdr = Checksum::new().add_bytes(tcp_header).add_u16(!csum).fold();
    Checksum::new()
        .add_u16(!csum)
        .add_u16(!pseudo)
        .add_u16(!hdr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_sum_recovery_matches_direct_sum() {
        let payload: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3) as u8).collect();
        let out = TcpOut {
            src: "198.18.1.2:40000".parse().unwrap(),
            dst: "192.0.2.1:5124".parse().unwrap(),
            seq: SeqNum(1),
            ack: SeqNum(2),
            flags: Flags::ACK,
            window: 100,
            options: &[1, 1, 1, 1],
        };
        let mut buf = vec![0u8; 2000];
        let h = out
            .write(&mut buf, payload.len(), Checksum::new().add_bytes(&payload))
            .unwrap();
        buf[h..h + payload.len()].copy_from_slice(&payload);
        let pkt = &buf[..h + payload.len()];
        let tcp = &pkt[20..];
        assert_eq!(
            checksum::tcp_ipv4(
                "198.18.1.2".parse().unwrap(),
                "192.0.2.1".parse().unwrap(),
                tcp
            ),
            0
        );
        let csum = u16::from_be_bytes([tcp[16], tcp[17]]);
        let rec =
            payload_sum_from_checksum(out.src.ip(), out.dst.ip(), &tcp[..24], payload.len(), csum);
        // Both are sums of the same bytes; compare folded values modulo ±0.
        let direct = Checksum::new().add_bytes(&payload).fold();
        let r = rec.fold();
        assert!(r == direct || (r == 0xffff && direct == 0) || (r == 0 && direct == 0xffff));
        // And a v6 rewrite of the same payload using the recovered sum verifies.
        let out6 = TcpOut {
            src: "[2001:db8:1::2]:40000".parse().unwrap(),
            dst: "[2001:db8:ffff::1]:5124".parse().unwrap(),
            ..out
        };
        let mut b6 = vec![0u8; 2000];
        let h6 = out6.write(&mut b6, payload.len(), rec).unwrap();
        b6[h6..h6 + payload.len()].copy_from_slice(&payload);
        assert_eq!(
            checksum::tcp_ipv6(
                "2001:db8:1::2".parse().unwrap(),
                "2001:db8:ffff::1".parse().unwrap(),
                &b6[40..h6 + payload.len()]
            ),
            0
        );
    }
}
