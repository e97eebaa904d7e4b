//! IPv6 headers (RFC 8200 §3) and a bounded walk over the extension-header chain
//! (RFC 8200 §4) to the upper-layer header. [`Packet`] is the zero-copy view,
//! [`Ipv6Repr`] the emitter for the fixed header.

use core::net::Ipv6Addr;

use crate::bytes::{need, set_u16, set_u32, u16_at, u32_at};
use crate::{Error, Result};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Most extension headers [`upper_layer`](Packet::upper_layer) walks before giving
/// up with [`Error::Unsupported`].
pub const MAX_EXT_HEADERS: usize = 8;

/// Next Header values used here (IANA "Assigned Internet Protocol Numbers").
pub mod next_header {
    /// Hop-by-Hop Options (RFC 8200 §4.3).
    pub const HOP_BY_HOP: u8 = 0;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// Routing (RFC 8200 §4.4).
    pub const ROUTING: u8 = 43;
    /// Fragment (RFC 8200 §4.5).
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating Security Payload (RFC 4303).
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302).
    pub const AH: u8 = 51;
    /// ICMPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// No Next Header (RFC 8200 §4.7).
    pub const NO_NEXT_HEADER: u8 = 59;
    /// Destination Options (RFC 8200 §4.6).
    pub const DEST_OPTS: u8 = 60;
    /// Mobility Header (RFC 6275).
    pub const MOBILITY: u8 = 135;
    /// Host Identity Protocol (RFC 7401).
    pub const HIP: u8 = 139;
    /// Shim6 (RFC 5533).
    pub const SHIM6: u8 = 140;
}

mod field {
    pub const VER_TC_FL: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: core::ops::Range<usize> = 8..24;
    pub const DST: core::ops::Range<usize> = 24..40;
}

/// What the Fragment header of a packet says (RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentInfo {
    /// Fragment offset in bytes (the 13-bit field × 8).
    pub offset: u16,
    /// M flag: more fragments follow.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

impl FragmentInfo {
    /// True for a real fragment; false for an atomic fragment (offset 0, M = 0,
    /// RFC 6946), which is processed as a whole packet.
    #[must_use]
    pub const fn is_fragment(&self) -> bool {
        self.more || self.offset != 0
    }
}

/// Where the upper-layer header starts, as found by the extension-header walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpperLayer {
    /// Protocol number of the upper layer (or 50 ESP / 59 No Next Header, where the
    /// walk stops).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the walked buffer (for
    /// [`Packet::upper_layer`]: from the start of the IPv6 header).
    pub offset: usize,
    /// Bytes from `offset` to the end of the walked data (payload length bound).
    pub len: usize,
    /// Number of extension headers walked.
    pub ext_headers: usize,
    /// The Fragment header, when present. With a non-zero offset the walk stops
    /// right after it: `protocol` is its Next Header and the data at `offset` is a
    /// fragment, not an upper-layer header.
    pub fragment: Option<FragmentInfo>,
}

/// Walks the extension headers in `data` (the bytes after the fixed header, up to
/// the payload length) starting with `first`. Offsets in the result are relative
/// to `data` plus `base`.
///
/// # Errors
/// [`Error::Truncated`] when an extension header's fixed part is cut short;
/// [`Error::BadLength`] when its length overruns `data`; [`Error::Malformed`] for
/// Hop-by-Hop not first or a second Fragment header; [`Error::Unsupported`] past
/// [`MAX_EXT_HEADERS`] extension headers.
pub fn walk_extension_headers(first: u8, data: &[u8], base: usize) -> Result<UpperLayer> {
    use next_header::*;
    let mut nh = first;
    let mut off = 0usize;
    let mut fragment = None;
    let mut count = 0usize;
    loop {
        let len = match nh {
            HOP_BY_HOP | ROUTING | DEST_OPTS | MOBILITY | HIP | SHIM6 | FRAGMENT | AH => {
                if count == MAX_EXT_HEADERS {
                    return Err(Error::Unsupported);
                }
                // RFC 8200 §4.1: Hop-by-Hop is restricted to appear immediately
                // after the IPv6 header.
                if nh == HOP_BY_HOP && count != 0 {
                    return Err(Error::Malformed);
                }
                let h = data.get(off..).ok_or(Error::Truncated)?;
                need(h, 2)?;
                let len = match nh {
                    // RFC 8200 §4.5: the Fragment header is 8 bytes, no length field.
                    FRAGMENT => 8,
                    // RFC 4302 §2.2: AH Payload Len is in 4-octet units, minus 2.
                    AH => (usize::from(h[1]) + 2) * 4,
                    // RFC 8200 §4.3-4.6: Hdr Ext Len in 8-octet units, not
                    // including the first 8 octets.
                    _ => (usize::from(h[1]) + 1) * 8,
                };
                if h.len() < len {
                    return Err(if h.len() < 8 {
                        Error::Truncated
                    } else {
                        Error::BadLength
                    });
                }
                if nh == FRAGMENT {
                    if fragment.is_some() {
                        // RFC 8200 §4.1: each extension header occurs at most once
                        // (Destination Options excepted).
                        return Err(Error::Malformed);
                    }
                    let f = FragmentInfo {
                        offset: u16_at(h, 2) & 0xfff8,
                        more: h[3] & 1 != 0,
                        ident: u32_at(h, 4),
                    };
                    fragment = Some(f);
                    if f.offset != 0 {
                        // RFC 8200 §4.5: non-first fragments carry only fragment
                        // data after the Fragment header.
                        count += 1;
                        let off = off + len;
                        return Ok(UpperLayer {
                            protocol: h[0],
                            offset: base + off,
                            len: data.len() - off,
                            ext_headers: count,
                            fragment,
                        });
                    }
                }
                nh = h[0];
                len
            }
            // ESP (RFC 4303), No Next Header (RFC 8200 §4.7) and anything else end
            // the walk.
            _ => {
                return Ok(UpperLayer {
                    protocol: nh,
                    offset: base + off,
                    len: data.len() - off,
                    ext_headers: count,
                    fragment,
                });
            }
        };
        off += len;
        count += 1;
    }
}

/// A zero-copy view of an IPv6 packet.
///
/// After [`Packet::new_checked`] succeeds no accessor or setter panics.
#[derive(Debug, Clone)]
pub struct Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` and runs [`Packet::check_len`].
    ///
    /// # Errors
    /// See [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validates version and payload length. Bytes past `40 + payload_len`
    /// (Ethernet padding) are allowed and ignored.
    ///
    /// # Errors
    /// [`Error::Truncated`] below 40 bytes; [`Error::BadVersion`] when the version
    /// is not 6; [`Error::Unsupported`] for a jumbogram (payload length 0 with a
    /// Hop-by-Hop header, RFC 2675); [`Error::BadHeaderLength`] when the payload
    /// length overruns the buffer.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(b, HEADER_LEN)?;
        // RFC 8200 §3: Version = 6.
        if b[field::VER_TC_FL] >> 4 != 6 {
            return Err(Error::BadVersion);
        }
        let pl = usize::from(u16_at(b, field::LENGTH));
        // RFC 2675 §3: a jumbogram has Payload Length 0 and a Jumbo Payload option
        // in Hop-by-Hop; not supported.
        if pl == 0 && b[field::NXT_HDR] == next_header::HOP_BY_HOP {
            return Err(Error::Unsupported);
        }
        // RFC 8200 §3: Payload Length counts everything after the fixed header.
        if HEADER_LEN + pl > b.len() {
            return Err(Error::BadHeaderLength);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (6 after a successful check).
    #[must_use]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class (DSCP << 2 | ECN).
    #[must_use]
    pub fn traffic_class(&self) -> u8 {
        (u16_at(self.buffer.as_ref(), 0) >> 4) as u8
    }

    /// ECN bits of the traffic class.
    #[must_use]
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// Flow label (20 bits).
    #[must_use]
    pub fn flow_label(&self) -> u32 {
        u32_at(self.buffer.as_ref(), 0) & 0x000f_ffff
    }

    /// Payload length field.
    #[must_use]
    pub fn payload_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Next Header of the fixed header.
    #[must_use]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop limit.
    #[must_use]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[must_use]
    pub fn src_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::SRC])
    }

    /// Destination address.
    #[must_use]
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::DST])
    }

    fn payload_range(&self) -> core::ops::Range<usize> {
        let len = self.buffer.as_ref().len();
        let end = (HEADER_LEN + usize::from(self.payload_len())).clamp(HEADER_LEN, len);
        HEADER_LEN..end
    }

    /// Everything after the fixed header, bounded by the payload length
    /// (extension headers included, trailing padding excluded).
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        let r = self.payload_range();
        &self.buffer.as_ref()[r]
    }

    /// Walks the extension headers (see [`walk_extension_headers`]); offsets are
    /// from the start of the IPv6 header.
    ///
    /// # Errors
    /// As [`walk_extension_headers`].
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        walk_extension_headers(self.next_header(), self.payload(), HEADER_LEN)
    }

    /// The upper-layer bytes located by `ul` (from [`Packet::upper_layer`]).
    #[must_use]
    pub fn upper_layer_payload(&self, ul: &UpperLayer) -> &[u8] {
        let r = self.payload_range();
        let start = ul.offset.clamp(r.start, r.end);
        &self.buffer.as_ref()[start..r.end]
    }

    /// True when a Fragment header marks this as a fragment (not atomic).
    /// A malformed chain counts as not a fragment; callers that care call
    /// [`Packet::upper_layer`].
    #[must_use]
    pub fn is_fragment(&self) -> bool {
        matches!(self.upper_layer(), Ok(UpperLayer { fragment: Some(f), .. }) if f.is_fragment())
    }
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    Ipv6Addr::from(a)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source address (no IPv6 header checksum; upper-layer checksums are
    /// the caller's business).
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let b = self.buffer.as_mut();
        let w = (u16_at(b, 0) & 0xf00f) | (u16::from(tc) << 4);
        set_u16(b, 0, w);
    }

    /// Sets the payload length.
    ///
    /// # Errors
    /// [`Error::BadHeaderLength`] when `40 + len` exceeds the buffer, or `len` is
    /// 0 with a Hop-by-Hop header (a jumbogram marker).
    pub fn set_payload_len(&mut self, len: u16) -> Result<()> {
        if HEADER_LEN + usize::from(len) > self.buffer.as_ref().len()
            || (len == 0 && self.next_header() == next_header::HOP_BY_HOP)
        {
            return Err(Error::BadHeaderLength);
        }
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
        Ok(())
    }

    /// Mutable payload (bounded by the payload length).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }
}

/// The fixed IPv6 header, for emitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next Header of the fixed header.
    pub next_header: u8,
    /// Payload length in bytes (extension headers included).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Reads the fixed header of a checked packet.
    ///
    /// # Errors
    /// None today; `Result` for symmetry with the other Reprs.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self> {
        Ok(Ipv6Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    /// Always 40.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte fixed header; the caller writes `payload_len` bytes after
    /// it. Returns 40.
    ///
    /// # Errors
    /// [`Error::NoSpace`] when `buf` is short; [`Error::BadLength`] for a payload
    /// length above 65535 (no jumbograms), or 0 with Next Header Hop-by-Hop;
    /// [`Error::Malformed`] for a flow label above 20 bits.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let pl = u16::try_from(self.payload_len).map_err(|_| Error::BadLength)?;
        if pl == 0 && self.next_header == next_header::HOP_BY_HOP {
            return Err(Error::BadLength);
        }
        if self.flow_label > 0x000f_ffff {
            return Err(Error::Malformed);
        }
        let b = buf.get_mut(..HEADER_LEN).ok_or(Error::NoSpace)?;
        set_u32(
            b,
            field::VER_TC_FL,
            (6 << 28) | (u32::from(self.traffic_class) << 20) | self.flow_label,
        );
        set_u16(b, field::LENGTH, pl);
        b[field::NXT_HDR] = self.next_header;
        b[field::HOP_LIMIT] = self.hop_limit;
        b[field::SRC].copy_from_slice(&self.src_addr.octets());
        b[field::DST].copy_from_slice(&self.dst_addr.octets());
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// Fixed header of the SYN in tests/fixtures/v6-path1.pcap (frame 1):
    /// flow label 0x0099b, payload 0x44, TCP, hop limit 64, 2001:db8:1::2 -> ::1.
    const SYN_HDR: [u8; 40] = [
        0x60, 0x00, 0x09, 0x9b, 0x00, 0x44, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0x02, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x01,
    ];

    fn with_payload(hdr: &[u8; 40], nh: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = hdr.to_vec();
        v[6] = nh;
        v[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn parse_real_header() {
        let mut b = SYN_HDR.to_vec();
        b.resize(40 + 0x44 + 3, 0); // 3 bytes of padding
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!((p.traffic_class(), p.flow_label()), (0, 0x0099b));
        assert_eq!(p.payload_len(), 0x44);
        assert_eq!((p.next_header(), p.hop_limit()), (6, 64));
        assert_eq!(p.src_addr(), "2001:db8:1::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8:1::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 0x44);
        let ul = p.upper_layer().unwrap();
        assert_eq!(
            ul,
            UpperLayer {
                protocol: 6,
                offset: 40,
                len: 0x44,
                ext_headers: 0,
                fragment: None
            }
        );
        assert!(!p.is_fragment());
        let r = Ipv6Repr::parse(&p).unwrap();
        let mut out = [0u8; 40];
        assert_eq!(r.emit(&mut out), Ok(40));
        assert_eq!(out, SYN_HDR);
    }

    #[test]
    fn extension_chain() {
        // HBH (8, PadN) -> DestOpts (16) -> Routing type 4 (8) -> AH (12+4=16,
        // payload len 2) -> Fragment (8, offset 0, M=1) -> TCP (4 bytes).
        let mut pl = Vec::new();
        pl.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        pl.extend_from_slice(&[43, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        pl.extend_from_slice(&[51, 0, 4, 0, 0, 0, 0, 0]);
        pl.extend_from_slice(&[44, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
        pl.extend_from_slice(&[6, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        pl.extend_from_slice(&[0x13, 0x88, 0xd4, 0x1a]);
        let b = with_payload(&SYN_HDR, 0, &pl);
        let p = Packet::new_checked(&b[..]).unwrap();
        let ul = p.upper_layer().unwrap();
        assert_eq!(ul.protocol, 6);
        assert_eq!(ul.offset, 40 + 8 + 16 + 8 + 16 + 8);
        assert_eq!(ul.len, 4);
        assert_eq!(ul.ext_headers, 5);
        assert_eq!(
            ul.fragment,
            Some(FragmentInfo {
                offset: 0,
                more: true,
                ident: 0xdeadbeef
            })
        );
        assert!(p.is_fragment());
        assert_eq!(p.upper_layer_payload(&ul), &[0x13, 0x88, 0xd4, 0x1a]);

        // Non-first fragment: the walk stops after the Fragment header.
        let frag = [6u8, 0, 0x05, 0x68, 0, 0, 0, 7, 1, 2, 3];
        let b = with_payload(&SYN_HDR, 44, &frag);
        let ul = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
        assert_eq!(
            ul.fragment,
            Some(FragmentInfo {
                offset: 0x568,
                more: false,
                ident: 7
            })
        );
        assert_eq!((ul.protocol, ul.offset, ul.len), (6, 48, 3));

        // Atomic fragment (RFC 6946): not a fragment.
        let atomic = [58u8, 0, 0, 0, 0, 0, 0, 9, 128, 0, 0, 0];
        let b = with_payload(&SYN_HDR, 44, &atomic);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.is_fragment());
        assert_eq!(p.upper_layer().unwrap().protocol, 58);

        // ESP and No Next Header stop the walk.
        for nh in [50u8, 59] {
            let b = with_payload(&SYN_HDR, 60, &[nh, 0, 1, 4, 0, 0, 0, 0, 0xaa]);
            let ul = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
            assert_eq!((ul.protocol, ul.offset, ul.len), (nh, 48, 1));
        }
    }

    #[test]
    fn bad_chains() {
        let opts8 = |nh: u8| [nh, 0, 1, 4, 0, 0, 0, 0];
        // Nine Destination Options headers: over the bound.
        let mut pl = Vec::new();
        for _ in 0..9 {
            pl.extend_from_slice(&opts8(60));
        }
        let b = with_payload(&SYN_HDR, 60, &pl);
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Unsupported)
        );
        // Eight is fine (last one's next header is 60 again, overruns: fix to 59).
        let n = pl.len();
        pl[n - 16] = 59;
        let b = with_payload(&SYN_HDR, 60, &pl[..n - 8]);
        assert_eq!(
            Packet::new_checked(&b[..])
                .unwrap()
                .upper_layer()
                .unwrap()
                .ext_headers,
            8
        );
        // Hop-by-Hop not first.
        let mut pl = opts8(0).to_vec();
        pl.extend_from_slice(&opts8(6));
        let b = with_payload(&SYN_HDR, 60, &pl);
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Malformed)
        );
        // Two fragment headers.
        let pl = [44u8, 0, 0, 0, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0, 1];
        let b = with_payload(&SYN_HDR, 44, &pl);
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Malformed)
        );
        // Length overruns the payload; header cut short.
        let b = with_payload(&SYN_HDR, 43, &[6, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::BadLength)
        );
        let b = with_payload(&SYN_HDR, 43, &[6, 0, 0, 0]);
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Truncated)
        );
        let b = with_payload(&SYN_HDR, 51, &[6]);
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn bad_headers() {
        let mut b = SYN_HDR.to_vec();
        b.resize(40 + 0x44, 0);
        assert_eq!(Packet::new_checked(&b[..39]).unwrap_err(), Error::Truncated);
        assert_eq!(
            Packet::new_checked(&b[..40 + 0x43]).unwrap_err(),
            Error::BadHeaderLength
        );
        let mut x = b.clone();
        x[0] = 0x40;
        assert_eq!(Packet::new_checked(&x[..]).unwrap_err(), Error::BadVersion);
        let x = with_payload(&SYN_HDR, 0, &[]);
        assert_eq!(Packet::new_checked(&x[..]).unwrap_err(), Error::Unsupported);
        let r = Ipv6Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.emit(&mut [0u8; 39]), Err(Error::NoSpace));
        assert_eq!(
            Ipv6Repr {
                payload_len: 65536,
                ..r
            }
            .emit(&mut [0u8; 40]),
            Err(Error::BadLength)
        );
        assert_eq!(
            Ipv6Repr {
                flow_label: 1 << 20,
                ..r
            }
            .emit(&mut [0u8; 40]),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn setters() {
        let mut b = SYN_HDR.to_vec();
        b.resize(40 + 0x44, 0);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_hop_limit(1);
        p.set_traffic_class(0xb9);
        let a: Ipv6Addr = "2001:db8:ffff::7".parse().unwrap();
        p.set_src_addr(a);
        p.set_dst_addr(Ipv6Addr::LOCALHOST);
        assert_eq!(p.set_payload_len(0x45), Err(Error::BadHeaderLength));
        p.set_payload_len(0x10).unwrap();
        assert_eq!(p.payload().len(), 0x10);
        assert_eq!((p.hop_limit(), p.traffic_class(), p.ecn()), (1, 0xb9, 1));
        assert_eq!(p.flow_label(), 0x0099b);
        assert_eq!((p.src_addr(), p.dst_addr()), (a, Ipv6Addr::LOCALHOST));
    }

    proptest! {
        #[test]
        fn never_panics(data in prop::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                prop_assert_eq!(p.payload().len(), usize::from(p.payload_len()));
                if let Ok(ul) = p.upper_layer() {
                    prop_assert_eq!(ul.offset + ul.len, 40 + usize::from(p.payload_len()));
                    prop_assert_eq!(p.upper_layer_payload(&ul).len(), ul.len);
                }
                let _ = (p.is_fragment(), Ipv6Repr::parse(&p));
            }
            // The walk on its own never panics on arbitrary bytes.
            if let Some((&nh, rest)) = data.split_first()
                && let Ok(ul) = walk_extension_headers(nh, rest, 0)
            {
                prop_assert_eq!(ul.offset + ul.len, rest.len());
            }
        }

        #[test]
        fn roundtrip(src in any::<u128>(), dst in any::<u128>(), nh in 1u8.., payload_len in 0usize..100,
                     hop_limit in any::<u8>(), traffic_class in any::<u8>(), flow_label in 0u32..(1 << 20)) {
            let r = Ipv6Repr { src_addr: Ipv6Addr::from_bits(src), dst_addr: Ipv6Addr::from_bits(dst),
                               next_header: nh, payload_len, hop_limit, traffic_class, flow_label };
            let mut buf = [0u8; 140];
            prop_assert_eq!(r.emit(&mut buf), Ok(40));
            let p = Packet::new_checked(&buf[..40 + payload_len]).unwrap();
            prop_assert_eq!(Ipv6Repr::parse(&p), Ok(r));
        }
    }
}
