//! Writing translated and engine-originated headers. A translated segment keeps its
//! payload where it is; the engine writes a fresh IP + TCP header (with its own
//! options) right in front of it, so the cost does not depend on the payload size.
//! The TCP checksum is completed from the payload's ones'-complement sum, which the
//! engine recovers from the received checksum without reading the payload
//! (RFC 1624 arithmetic): `payload = ~csum − pseudo − header`.

use core::net::IpAddr;

use hac_wire::checksum::{self, Checksum};
use hac_wire::ipv6::Ipv6Repr;
use hac_wire::seq::SeqNum;
use hac_wire::tcp::Flags;

use crate::conn::Sock;

/// TTL / hop limit of packets the converter sends (it is an endpoint at the IP level).
pub(crate) const TTL: u8 = 64;

/// One outgoing TCP header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpOut<'a> {
    pub src: Sock,
    pub dst: Sock,
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

/// Folds an unfolded sum of 16-bit words to 16 bits (ones' complement), without
/// a loop. Zero only for a zero sum, as `Checksum::fold`.
#[inline(always)]
pub(crate) fn fold(acc: u64) -> u16 {
    let s = (acc & 0xffff_ffff) + (acc >> 32); // < 2^33
    let s = (s & 0xffff) + (s >> 16); // < 2^17 + 2^16
    let s = (s & 0xffff) + (s >> 16); // ≤ 0x1_0001
    let s = (s & 0xffff) + (s >> 16); // ≤ 0xffff
    s as u16
}

/// Unfolded sum (congruent modulo 2^16 − 1) of the 16-bit words of `b`, whose
/// length is a multiple of 4.
#[inline(always)]
fn sum_words4(b: &[u8]) -> u64 {
    // 8 bytes at a time: each 32-bit half is a sum of two 16-bit words shifted by
    // 16, which folds correctly because 2^16 ≡ 1 (mod 2^16 − 1).
    let mut acc = 0u64;
    let mut chunks = b.chunks_exact(8);
    for w in &mut chunks {
        let v = u64::from_be_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        acc += (v >> 32) + (v & 0xffff_ffff);
    }
    if let [a, b, c, d] = *chunks.remainder() {
        acc += u64::from(u32::from_be_bytes([a, b, c, d]));
    }
    acc
}

#[inline(always)]
fn sum32(v: u32) -> u64 {
    u64::from(v >> 16) + u64::from(v & 0xffff)
}

#[inline(always)]
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

impl TcpOut<'_> {
    /// IP + TCP header length.
    #[inline]
    pub fn header_len(&self) -> usize {
        ip_header_len(self.src.ip()) + 20 + self.options.len()
    }

    /// Writes the headers into `buf[..header_len()]`, for `payload_len` payload bytes
    /// whose ones'-complement sum is `payload`. Returns the header length, or None if
    /// `buf` is short, the options are not a padded ≤ 40-byte area, or the addresses
    /// mix families.
    ///
    /// The fields are written directly (IPv4: version/IHL 0x45, DSCP/ECN 0, ident 0,
    /// DF, TTL 64) and the checksums summed from the values, not re-read from the
    /// buffer.
    #[inline]
    pub fn write(&self, buf: &mut [u8], payload_len: usize, payload: Checksum) -> Option<usize> {
        let olen = self.options.len();
        if olen > 40 || !olen.is_multiple_of(4) {
            return None;
        }
        let tcp_hlen = 20 + olen;
        let tcp_len = tcp_hlen + payload_len;
        let (ip_len, pseudo) = match (self.src.ip, self.dst.ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = u16::try_from(20 + tcp_len).ok()?;
                let b = buf.get_mut(..20)?;
                let (s, d) = (s.to_bits(), d.to_bits());
                b[0] = 0x45;
                b[1] = 0;
                put16(b, 2, total);
                put32(b, 4, 0x0000_4000); // ident 0, DF, offset 0
                b[8] = TTL;
                b[9] = checksum::PROTO_TCP;
                put32(b, 12, s);
                put32(b, 16, d);
                let addrs = sum32(s) + sum32(d);
                let ip_sum = !fold(
                    0x4500
                        + u64::from(total)
                        + 0x4000
                        + ((u64::from(TTL) << 8) | u64::from(checksum::PROTO_TCP))
                        + addrs,
                );
                put16(b, 10, ip_sum);
                let pseudo = addrs
                    + u64::from(checksum::PROTO_TCP)
                    + u64::from(u16::try_from(tcp_len).unwrap_or(u16::MAX));
                (20, pseudo)
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
                .emit(buf.get_mut(..40)?)
                .ok()?;
                let pseudo = checksum::ipv6_pseudo_header(
                    s,
                    d,
                    checksum::PROTO_TCP,
                    u32::try_from(tcp_len).unwrap_or(u32::MAX),
                )
                .fold();
                (40, u64::from(pseudo))
            }
            _ => return None,
        };
        let t = buf.get_mut(ip_len..ip_len + tcp_hlen)?;
        let (sport, dport) = (self.src.port, self.dst.port);
        let off_flags = ((tcp_hlen as u16 / 4) << 12) | u16::from(self.flags.bits());
        put16(t, 0, sport);
        put16(t, 2, dport);
        put32(t, 4, self.seq.0);
        put32(t, 8, self.ack.0);
        put16(t, 12, off_flags);
        put16(t, 14, self.window);
        put32(t, 16, 0); // checksum (below), urgent pointer 0
        t[20..].copy_from_slice(self.options);
        let sum = !fold(
            pseudo
                + u64::from(sport)
                + u64::from(dport)
                + sum32(self.seq.0)
                + sum32(self.ack.0)
                + u64::from(off_flags)
                + u64::from(self.window)
                + sum_words4(self.options)
                + u64::from(payload.fold()),
        );
        put16(t, 16, sum);
        Some(ip_len + tcp_hlen)
    }
}

/// Writes NOP, NOP, Timestamps (RFC 7323 App. A layout) into `b[..12]`: the
/// bytes `OptionsBuilder` produced for the same pushes.
#[inline]
pub(crate) fn write_ts(b: &mut [u8], tsval: u32, tsecr: u32) -> usize {
    b[..4].copy_from_slice(&[1, 1, 8, 10]);
    put32(b, 4, tsval);
    put32(b, 8, tsecr);
    12
}

/// NOP-pads `b` from `n` to the next multiple of 4; returns the padded length.
#[inline]
pub(crate) fn pad_nop(b: &mut [u8], n: usize) -> usize {
    let m = n.next_multiple_of(4);
    b[n..m].fill(1);
    m
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
    let tcp_len = tcp_header.len() + payload_len;
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum32(s.to_bits())
                + sum32(d.to_bits())
                + u64::from(checksum::PROTO_TCP)
                + u64::from(u16::try_from(tcp_len).unwrap_or(u16::MAX))
        }
        _ => u64::from(pseudo_header(src, dst, tcp_len).fold()),
    };
    // The header with its checksum field zeroed (a TCP header is whole 32-bit words).
    let hdr = if tcp_header.len().is_multiple_of(4) {
        sum_words4(tcp_header) + u64::from(!csum)
    } else {
        u64::from(Checksum::new().add_bytes(tcp_header).add_u16(!csum).fold())
    };
    // ~csum − (pseudo + header) in ones'-complement arithmetic.
    Checksum::new().add_u16(!csum).add_u16(!fold(pseudo + hdr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_sum_recovery_matches_direct_sum() {
        let payload: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3) as u8).collect();
        let out = TcpOut {
            src: Sock::from("198.18.1.2:40000".parse::<core::net::SocketAddr>().unwrap()),
            dst: Sock::from("192.0.2.1:5124".parse::<core::net::SocketAddr>().unwrap()),
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
            src: Sock::from(
                "[2001:db8:1::2]:40000"
                    .parse::<core::net::SocketAddr>()
                    .unwrap(),
            ),
            dst: Sock::from(
                "[2001:db8:ffff::1]:5124"
                    .parse::<core::net::SocketAddr>()
                    .unwrap(),
            ),
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
