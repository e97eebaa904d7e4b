//! Internet checksums: full computation (RFC 1071), incremental update
//! (RFC 1624), the TCP pseudo-headers for IPv4 (RFC 9293 §3.1) and IPv6
//! (RFC 8200 §8.1), and the MPTCP DSS checksum (RFC 8684 §3.3.1, Figure 10).
//!
//! [`Checksum`] is a ones'-complement accumulator. It folds lazily, so summing a
//! 1500-byte payload is a tight loop over 32-bit words; the result is only folded
//! and complemented in [`Checksum::finish`].

use core::net::{Ipv4Addr, Ipv6Addr};

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;

/// A ones'-complement sum in progress. `Copy`, so partial sums (e.g. of a payload)
/// can be cached and combined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    /// Unfolded sum of 16-bit big-endian words.
    acc: u64,
    /// True when an odd number of bytes has been added so far (the next byte is
    /// the low half of a word).
    odd: bool,
}

impl Checksum {
    /// An empty sum.
    #[must_use]
    pub const fn new() -> Self {
        Checksum { acc: 0, odd: false }
    }

    /// Adds bytes as if they continued the stream summed so far (odd lengths are
    /// handled: the next call continues mid-word).
    #[must_use]
    pub fn add_bytes(mut self, mut data: &[u8]) -> Self {
        if self.odd {
            if let Some((&first, rest)) = data.split_first() {
                self.acc += u64::from(first);
                self.odd = false;
                data = rest;
            } else {
                return self;
            }
        }
        let mut chunks = data.chunks_exact(8);
        let mut acc = self.acc;
        for c in &mut chunks {
            let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            // Sum the two 32-bit halves: each half is a sum of two 16-bit words
            // shifted, which folds correctly because 2^16 ≡ 1 (mod 2^16 - 1).
            acc += (w >> 32) + (w & 0xffff_ffff);
        }
        let mut rest = chunks.remainder();
        while rest.len() >= 2 {
            acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
            rest = &rest[2..];
        }
        if let [last] = rest {
            acc += u64::from(*last) << 8;
            self.odd = true;
        }
        self.acc = acc;
        self
    }

    /// Adds one 16-bit word (must be at an even position of the stream).
    #[must_use]
    pub const fn add_u16(mut self, v: u16) -> Self {
        self.acc += v as u64;
        self
    }

    /// Adds a 32-bit value as two 16-bit words.
    #[must_use]
    pub const fn add_u32(mut self, v: u32) -> Self {
        self.acc += (v >> 16) as u64 + (v & 0xffff) as u64;
        self
    }

    /// Adds a 64-bit value as four 16-bit words.
    #[must_use]
    pub const fn add_u64(self, v: u64) -> Self {
        self.add_u32((v >> 32) as u32).add_u32(v as u32)
    }

    /// Adds another (even-length) partial sum.
    #[must_use]
    pub const fn combine(mut self, other: Checksum) -> Self {
        self.acc += other.fold() as u64;
        self
    }

    /// The folded 16-bit ones'-complement sum (not complemented).
    #[must_use]
    pub const fn fold(self) -> u16 {
        let mut s = self.acc;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// The checksum field value: complement of the folded sum.
    #[must_use]
    pub const fn finish(self) -> u16 {
        !self.fold()
    }
}

/// Checksum of `data` alone (e.g. an IPv4 header with its checksum field zeroed).
#[must_use]
pub fn checksum(data: &[u8]) -> u16 {
    Checksum::new().add_bytes(data).finish()
}

/// Partial sum of the IPv4 pseudo-header for an upper-layer segment of `len` bytes.
#[must_use]
pub fn ipv4_pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> Checksum {
    Checksum::new()
        .add_u32(src.to_bits())
        .add_u32(dst.to_bits())
        .add_u16(u16::from(proto))
        .add_u16(len)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1).
#[must_use]
pub fn ipv6_pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> Checksum {
    let s = src.to_bits();
    let d = dst.to_bits();
    Checksum::new()
        .add_u64((s >> 64) as u64)
        .add_u64(s as u64)
        .add_u64((d >> 64) as u64)
        .add_u64(d as u64)
        .add_u32(len)
        .add_u16(u16::from(next_header))
}

/// Full TCP checksum over IPv4: `segment` is the TCP header and payload with the
/// checksum field holding zero (or the value to verify: then the result is 0).
#[must_use]
pub fn tcp_ipv4(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    ipv4_pseudo_header(src, dst, PROTO_TCP, len)
        .add_bytes(segment)
        .finish()
}

/// Full TCP checksum over IPv6 (same conventions as [`tcp_ipv4`]).
#[must_use]
pub fn tcp_ipv6(src: Ipv6Addr, dst: Ipv6Addr, segment: &[u8]) -> u16 {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    ipv6_pseudo_header(src, dst, PROTO_TCP, len)
        .add_bytes(segment)
        .finish()
}

/// RFC 1624 eqn. 3: the new checksum field after a 16-bit word of the covered data
/// changed from `old` to `new`. `HC' = ~(~HC + ~m + m')`.
#[must_use]
#[inline]
pub const fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    let s = (!csum) as u32 + (!old) as u32 + new as u32;
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Incremental update for a 32-bit field (sequence/ack numbers, IPv4 addresses).
#[must_use]
#[inline]
pub const fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let c = update_u16(csum, (old >> 16) as u16, (new >> 16) as u16);
    update_u16(c, old as u16, new as u16)
}

/// Incremental update for a 128-bit field (IPv6 addresses).
#[must_use]
pub const fn update_u128(csum: u16, old: u128, new: u128) -> u16 {
    let mut c = csum;
    let mut i = 0;
    while i < 8 {
        let sh = 112 - 16 * i;
        c = update_u16(c, (old >> sh) as u16, (new >> sh) as u16);
        i += 1;
    }
    c
}

/// Incremental update for an IPv4 address change.
#[must_use]
pub const fn update_ipv4(csum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(csum, old.to_bits(), new.to_bits())
}

/// Incremental update for an IPv6 address change.
#[must_use]
pub const fn update_ipv6(csum: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    update_u128(csum, old.to_bits(), new.to_bits())
}

/// Incremental update when a covered region that starts at an **even** offset
/// changed from `old` to `new` (possibly of different length; the extra tail of the
/// longer one counts against zeros). Used for TCP option rewrites, where the option
/// area starts at offset 20.
#[must_use]
pub fn update_region(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let old_sum = Checksum::new().add_bytes(old).fold();
    let new_sum = Checksum::new().add_bytes(new).fold();
    update_u16(csum, old_sum, new_sum)
}

/// The MPTCP DSS checksum (RFC 8684 §3.3.1, Figure 10): ones'-complement sum of the
/// pseudo-header {DSN as 64 bits, relative subflow sequence number, data-level
/// length, 16 zero bits} and the mapped payload. `payload` is the partial sum of the
/// payload bytes covered by the mapping (sum segment by segment with
/// [`Checksum::add_bytes`]); for a data-less DATA_FIN pass `Checksum::new()`.
#[must_use]
pub fn dss_checksum(dsn: u64, ssn: u32, data_len: u16, payload: Checksum) -> u16 {
    Checksum::new()
        .add_u64(dsn)
        .add_u32(ssn)
        .add_u16(data_len)
        .add_u16(0)
        .combine(payload)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 §3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Checksum::new().add_bytes(&data).fold(), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_split_equals_whole() {
        let data: [u8; 13] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
        for split in 0..data.len() {
            let a = Checksum::new()
                .add_bytes(&data[..split])
                .add_bytes(&data[split..]);
            assert_eq!(
                a.fold(),
                Checksum::new().add_bytes(&data).fold(),
                "split {split}"
            );
        }
    }

    /// A real IPv4 header (from Wikipedia's worked example): checksum b861.
    #[test]
    fn ipv4_header_example() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn incremental_matches_full() {
        let mut data = [0u8; 40];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let before = checksum(&data);
        let old = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let new = 0xdead_beef;
        data[4..8].copy_from_slice(&u32::to_be_bytes(new));
        assert_eq!(update_u32(before, old, new), checksum(&data));
        // Region update with a length change (zero-extended).
        let old_region = [1u8, 2, 3, 4];
        let new_region = [9u8, 8, 7, 6, 5, 4, 0, 0];
        let mut a = [0u8; 12];
        a[..4].copy_from_slice(&old_region);
        let c0 = checksum(&a);
        a[..8].copy_from_slice(&new_region);
        assert_eq!(update_region(c0, &old_region, &new_region), checksum(&a));
    }

    #[test]
    fn incremental_never_yields_negative_zero_from_nonzero() {
        // RFC 1624 §3: eqn 3 avoids the -0 problem of eqn 2.
        let c = update_u16(0x0000, 0x0000, 0x0000);
        assert_eq!(c, 0x0000);
    }
}
