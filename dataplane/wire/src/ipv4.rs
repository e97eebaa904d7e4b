//! IPv4 headers (RFC 791 §3.1). [`Packet`] is the zero-copy view (options exposed
//! as raw bytes); [`Ipv4Repr`] emits option-less headers. Address, TTL and length
//! setters keep the header checksum valid incrementally (RFC 1624).

use core::net::Ipv4Addr;

use crate::bytes::{need, set_u16, u16_at};
use crate::checksum::{self, update_ipv4, update_u16};
use crate::{Error, Result};

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Length of an option-less IPv4 header.
pub const HEADER_LEN: usize = 20;

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet.
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

    /// Validates version and length fields against the buffer. Bytes past the
    /// total length (Ethernet padding) are allowed and ignored.
    ///
    /// # Errors
    /// [`Error::Truncated`] below 20 bytes; [`Error::BadVersion`] when the version
    /// is not 4; [`Error::BadHeaderLength`] when IHL < 5, the header overruns the
    /// buffer, or total length < header length or > buffer length.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(b, HEADER_LEN)?;
        // RFC 791 §3.1: Version = 4.
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(Error::BadVersion);
        }
        // RFC 791 §3.1: "the minimum value for a correct header is 5" (IHL, 32-bit words).
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if hl < HEADER_LEN || hl > b.len() {
            return Err(Error::BadHeaderLength);
        }
        // RFC 791 §3.1: Total Length counts header and data.
        let tl = usize::from(u16_at(b, field::LENGTH));
        if tl < hl || tl > b.len() {
            return Err(Error::BadHeaderLength);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 after a successful check).
    #[must_use]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[must_use]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated Services code point (RFC 2474).
    #[must_use]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// ECN field (RFC 3168).
    #[must_use]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length field (header + payload).
    #[must_use]
    pub fn total_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[must_use]
    pub fn ident(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't Fragment flag.
    #[must_use]
    pub fn dont_frag(&self) -> bool {
        u16_at(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[must_use]
    pub fn more_frags(&self) -> bool {
        u16_at(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field × 8).
    #[must_use]
    pub fn frag_offset(&self) -> u16 {
        (u16_at(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// True when this is a fragment: MF set or a non-zero offset (RFC 791 §3.2).
    #[must_use]
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// True for the first fragment of a fragmented datagram (MF set, offset 0):
    /// it carries the transport header, the later ones do not.
    #[must_use]
    pub fn is_first_fragment(&self) -> bool {
        self.more_frags() && self.frag_offset() == 0
    }

    /// Time to live.
    #[must_use]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    #[must_use]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    #[must_use]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// True when the header checksum verifies (RFC 791 §3.1).
    #[must_use]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }

    /// Source address.
    #[must_use]
    pub fn src_addr(&self) -> Ipv4Addr {
        addr_at(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    #[must_use]
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr_at(self.buffer.as_ref(), field::DST)
    }

    /// Range of the header: `0..header_len`, clamped to the buffer.
    fn header_end(&self) -> usize {
        self.header_len()
            .clamp(HEADER_LEN, self.buffer.as_ref().len())
    }

    /// Range of the payload, clamped so that it never panics.
    fn payload_range(&self) -> core::ops::Range<usize> {
        let len = self.buffer.as_ref().len();
        let start = self.header_end();
        let end = usize::from(self.total_len()).clamp(start, len);
        start..end
    }

    /// The whole header, options included.
    #[must_use]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_end()]
    }

    /// The raw option bytes (`20..header_len`).
    #[must_use]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_end()]
    }

    /// The payload, bounded by the total length (trailing padding excluded).
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        let r = self.payload_range();
        &self.buffer.as_ref()[r]
    }
}

fn addr_at(b: &[u8], off: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[off], b[off + 1], b[off + 2], b[off + 3])
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_word_fixup(&mut self, off: usize, new: u16) {
        let b = self.buffer.as_mut();
        let old = u16_at(b, off);
        let c = update_u16(u16_at(b, field::CHECKSUM), old, new);
        set_u16(b, off, new);
        set_u16(b, field::CHECKSUM, c);
    }

    /// Sets the source address, updating the header checksum (RFC 1624).
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        let old = self.src_addr();
        let b = self.buffer.as_mut();
        let c = update_ipv4(u16_at(b, field::CHECKSUM), old, addr);
        b[field::SRC..field::SRC + 4].copy_from_slice(&addr.octets());
        set_u16(b, field::CHECKSUM, c);
    }

    /// Sets the destination address, updating the header checksum (RFC 1624).
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        let old = self.dst_addr();
        let b = self.buffer.as_mut();
        let c = update_ipv4(u16_at(b, field::CHECKSUM), old, addr);
        b[field::DST..field::DST + 4].copy_from_slice(&addr.octets());
        set_u16(b, field::CHECKSUM, c);
    }

    /// Sets the TTL, updating the header checksum (RFC 1624).
    pub fn set_ttl(&mut self, ttl: u8) {
        let new = u16::from_be_bytes([ttl, self.protocol()]);
        self.set_word_fixup(field::TTL, new);
    }

    /// Sets the total length, updating the header checksum (RFC 1624).
    ///
    /// # Errors
    /// [`Error::BadHeaderLength`] when `len` is below the header length or above
    /// the buffer length (the view would no longer be consistent).
    pub fn set_total_len(&mut self, len: u16) -> Result<()> {
        let l = usize::from(len);
        if l < self.header_len() || l > self.buffer.as_ref().len() {
            return Err(Error::BadHeaderLength);
        }
        self.set_word_fixup(field::LENGTH, len);
        Ok(())
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let c = checksum::checksum(self.header());
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Mutable payload (bounded by the total length).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }
}

/// An option-less, unfragmented IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: u8,
    /// Payload length in bytes (total length − 20).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Parses a checked packet.
    ///
    /// # Errors
    /// [`Error::BadChecksum`] when the header checksum fails; [`Error::Unsupported`]
    /// for a header with options or a fragment (not representable here).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self> {
        if !p.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        if p.header_len() != HEADER_LEN || p.is_fragment() {
            return Err(Error::Unsupported);
        }
        Ok(Ipv4Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: p.payload().len(),
            ttl: p.ttl(),
            dscp: p.dscp(),
            ecn: p.ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }

    /// Header length: always 20.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 20-byte header (checksum filled) to the start of `buf`; the
    /// caller writes `payload_len` bytes of payload after it. Returns 20.
    ///
    /// # Errors
    /// [`Error::NoSpace`] when `buf` is shorter than 20 bytes; [`Error::BadLength`]
    /// when 20 + `payload_len` exceeds 65535; [`Error::Malformed`] for DSCP > 63 or
    /// ECN > 3.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let total = u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| Error::BadLength)?;
        if self.dscp > 0x3f || self.ecn > 3 {
            return Err(Error::Malformed);
        }
        let b = buf.get_mut(..HEADER_LEN).ok_or(Error::NoSpace)?;
        b[field::VER_IHL] = 0x45;
        b[field::DSCP_ECN] = (self.dscp << 2) | self.ecn;
        set_u16(b, field::LENGTH, total);
        set_u16(b, field::IDENT, self.ident);
        set_u16(b, field::FLG_OFF, if self.dont_frag { FLAG_DF } else { 0 });
        b[field::TTL] = self.ttl;
        b[field::PROTOCOL] = self.protocol;
        b[field::SRC..field::SRC + 4].copy_from_slice(&self.src_addr.octets());
        b[field::DST..field::DST + 4].copy_from_slice(&self.dst_addr.octets());
        set_u16(b, field::CHECKSUM, 0);
        let c = checksum::checksum(b);
        set_u16(b, field::CHECKSUM, c);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// IPv4 header of the SYN in tests/fixtures/v4-path1.pcap (frame 1), followed
    /// by the first 4 TCP bytes and 2 bytes of padding beyond total length 0x58.
    fn syn() -> std::vec::Vec<u8> {
        let mut v = std::vec![
            0x45, 0x00, 0x00, 0x58, 0x3d, 0x9b, 0x40, 0x00, 0x40, 0x06, 0x6e, 0xdd, 0xc6, 0x12,
            0x01, 0x02, 0xc6, 0x12, 0x01, 0x01,
        ];
        v.resize(0x58 + 2, 0xee);
        v
    }

    #[test]
    fn parse_real_header() {
        let b = syn();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp(), p.ecn()), (0, 0));
        assert_eq!(p.total_len(), 0x58);
        assert_eq!(p.ident(), 0x3d9b);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment() && !p.is_first_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), PROTO_TCP);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 18, 1, 2));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload().len(), 0x58 - 20); // padding excluded
        let r = Ipv4Repr::parse(&p).unwrap();
        let mut out = [0u8; 20];
        assert_eq!(r.emit(&mut out), Ok(20));
        assert_eq!(out[..], b[..20]);
    }

    #[test]
    fn incremental_setters_keep_checksum() {
        let mut b = syn();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_ttl(63);
        assert!(p.verify_checksum());
        p.set_src_addr(Ipv4Addr::new(100, 64, 7, 9));
        assert!(p.verify_checksum());
        p.set_dst_addr(Ipv4Addr::new(192, 0, 2, 10));
        assert!(p.verify_checksum());
        p.set_total_len(0x40).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 0x40 - 20);
        assert_eq!(p.set_total_len(19), Err(Error::BadHeaderLength));
        assert_eq!(p.set_total_len(0x5b), Err(Error::BadHeaderLength));
        let c = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), c);
        assert_eq!((p.ttl(), p.src_addr()), (63, Ipv4Addr::new(100, 64, 7, 9)));
    }

    #[test]
    fn fragments_and_options() {
        let mut b = syn();
        b[6] = 0x20; // MF, offset 0
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_fragment() && p.is_first_fragment());
        b[6] = 0x00;
        b[7] = 0x03; // offset 24 bytes, last fragment
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.frag_offset(), 24);
        assert!(p.is_fragment() && !p.is_first_fragment());
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::Unsupported));
        // IHL 6 with a 4-byte Router Alert option (RFC 2113: 94 04 00 00).
        let mut b = syn();
        b[0] = 0x46;
        b[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.options(), &[0x94, 0x04, 0, 0]);
        assert_eq!(p.payload().len(), 0x58 - 24);
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::Unsupported));
    }

    #[test]
    fn bad_inputs() {
        let b = syn();
        assert_eq!(Packet::new_checked(&b[..19]).unwrap_err(), Error::Truncated);
        let mut x = b.clone();
        x[0] = 0x65;
        assert_eq!(Packet::new_checked(&x[..]).unwrap_err(), Error::BadVersion);
        x[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&x[..]).unwrap_err(),
            Error::BadHeaderLength
        );
        x[0] = 0x4f; // 60-byte header in a 30-byte buffer
        assert_eq!(
            Packet::new_checked(&x[..30]).unwrap_err(),
            Error::BadHeaderLength
        );
        // total length past the buffer
        assert_eq!(
            Packet::new_checked(&b[..0x57]).unwrap_err(),
            Error::BadHeaderLength
        );
        let mut x = b.clone();
        x[2..4].copy_from_slice(&[0, 19]);
        assert_eq!(
            Packet::new_checked(&x[..]).unwrap_err(),
            Error::BadHeaderLength
        );
        let mut x = b.clone();
        x[11] ^= 1;
        let p = Packet::new_checked(&x[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::BadChecksum));
        let r = Ipv4Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.emit(&mut [0u8; 19]), Err(Error::NoSpace));
        assert_eq!(
            Ipv4Repr {
                payload_len: 65516,
                ..r
            }
            .emit(&mut [0u8; 20]),
            Err(Error::BadLength)
        );
        assert_eq!(
            Ipv4Repr { ecn: 4, ..r }.emit(&mut [0u8; 20]),
            Err(Error::Malformed)
        );
    }

    proptest! {
        #[test]
        fn never_panics(data in prop::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                prop_assert_eq!(p.header_len() + p.payload().len(), usize::from(p.total_len()));
                prop_assert_eq!(p.options().len() + 20, p.header_len());
                let ok = p.verify_checksum();
                let _ = Ipv4Repr::parse(&p);
                let mut v = data.clone();
                let mut q = Packet::new_checked(&mut v[..]).unwrap();
                q.set_ttl(q.ttl().wrapping_sub(1));
                q.set_src_addr(Ipv4Addr::new(10, 1, 2, 3));
                q.set_dst_addr(Ipv4Addr::new(10, 4, 5, 6));
                let _ = q.set_total_len(q.total_len());
                prop_assert_eq!(q.verify_checksum(), ok);
                let _ = q.payload_mut();
            }
        }

        #[test]
        fn roundtrip(src in any::<u32>(), dst in any::<u32>(), protocol in any::<u8>(),
                     payload_len in 0usize..200, ttl in any::<u8>(), dscp in 0u8..64, ecn in 0u8..4,
                     ident in any::<u16>(), dont_frag in any::<bool>()) {
            let r = Ipv4Repr { src_addr: Ipv4Addr::from_bits(src), dst_addr: Ipv4Addr::from_bits(dst),
                               protocol, payload_len, ttl, dscp, ecn, ident, dont_frag };
            let mut buf = [0u8; 220];
            prop_assert_eq!(r.emit(&mut buf), Ok(r.buffer_len()));
            let p = Packet::new_checked(&buf[..20 + payload_len]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&p), Ok(r));
        }
    }
}
