//! Ethernet II frames (IEEE 802.3 §3.1.1) with up to two IEEE 802.1Q tags:
//! one C-tag (TPID 0x8100), or an S-tag (TPID 0x88a8, 802.1ad) or C-tag followed by
//! an inner C-tag. [`Frame`] is the zero-copy view, [`EthernetRepr`] the emitter.

use core::fmt;

use crate::bytes::{need, set_u16, u16_at};
use crate::{Error, Result};

/// A 48-bit IEEE 802 MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Builds an address from the first 6 bytes of `data`.
    ///
    /// # Errors
    /// [`Error::Truncated`] when `data` holds fewer than 6 bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Self> {
        let b: &[u8; 6] = data
            .get(..6)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Truncated)?;
        Ok(EthernetAddress(*b))
    }

    /// The address bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// True for ff:ff:ff:ff:ff:ff.
    #[must_use]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True when the I/G bit (LSB of the first octet) is set (includes broadcast).
    #[must_use]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for an individual (unicast) address.
    #[must_use]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// True when the U/L bit (second LSB of the first octet) marks a locally
    /// administered address.
    #[must_use]
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The IPv6 multicast MAC address 33:33:xx:xx:xx:xx for `addr` (RFC 2464 §7).
    #[must_use]
    pub fn from_ipv6_multicast(addr: core::net::Ipv6Addr) -> Self {
        let o = addr.octets();
        EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// An EtherType (or TPID) value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP (RFC 826).
    pub const ARP: EtherType = EtherType(0x0806);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.1Q customer VLAN tag (C-tag) TPID.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IEEE 802.1ad service VLAN tag (S-tag, "QinQ") TPID.
    pub const QINQ: EtherType = EtherType(0x88a8);

    /// True for a TPID this crate recognises as a VLAN tag.
    #[must_use]
    pub const fn is_vlan_tpid(self) -> bool {
        self.0 == Self::VLAN.0 || self.0 == Self::QINQ.0
    }
}

/// One decoded 802.1Q tag (TPID + TCI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// The tag protocol identifier: [`EtherType::VLAN`] or [`EtherType::QINQ`].
    pub tpid: EtherType,
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (12 bits).
    pub vid: u16,
}

impl VlanTag {
    /// A C-tag (TPID 0x8100) with priority 0.
    #[must_use]
    pub const fn new(vid: u16) -> Self {
        VlanTag {
            tpid: EtherType::VLAN,
            pcp: 0,
            dei: false,
            vid,
        }
    }

    fn from_wire(tpid: u16, tci: u16) -> Self {
        VlanTag {
            tpid: EtherType(tpid),
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    fn tci(&self) -> u16 {
        (u16::from(self.pcp) << 13) | (u16::from(self.dei) << 12) | self.vid
    }

    fn is_valid(&self) -> bool {
        self.pcp <= 7 && self.vid <= 0x0fff
    }
}

mod field {
    pub const DST: core::ops::Range<usize> = 0..6;
    pub const SRC: core::ops::Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    /// Untagged header length.
    pub const HEADER_LEN: usize = 14;
    /// Length of one 802.1Q tag.
    pub const TAG_LEN: usize = 4;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::HEADER_LEN;

/// A zero-copy view of an Ethernet II frame (without FCS).
///
/// After [`Frame::new_checked`] succeeds no accessor or setter panics.
#[derive(Debug, Clone)]
pub struct Frame<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wraps `buffer` and runs [`Frame::check_len`].
    ///
    /// # Errors
    /// See [`Frame::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks that the buffer holds the header and every VLAN tag it announces.
    ///
    /// # Errors
    /// [`Error::Truncated`] when the header or a tag is cut short;
    /// [`Error::Unsupported`] for a third stacked tag, or an inner tag that is not
    /// a C-tag (IEEE 802.1ad: S-tag outside, C-tag inside).
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(b, field::HEADER_LEN)?;
        let outer = EtherType(u16_at(b, field::ETHERTYPE));
        if !outer.is_vlan_tpid() {
            return Ok(());
        }
        need(b, field::HEADER_LEN + field::TAG_LEN)?;
        let inner = EtherType(u16_at(b, field::ETHERTYPE + field::TAG_LEN));
        if !inner.is_vlan_tpid() {
            return Ok(());
        }
        if inner != EtherType::VLAN {
            return Err(Error::Unsupported);
        }
        need(b, field::HEADER_LEN + 2 * field::TAG_LEN)?;
        let third = EtherType(u16_at(b, field::ETHERTYPE + 2 * field::TAG_LEN));
        if third.is_vlan_tpid() {
            return Err(Error::Unsupported);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    #[must_use]
    pub fn dst_addr(&self) -> EthernetAddress {
        let b = self.buffer.as_ref();
        let mut a = [0u8; 6];
        a.copy_from_slice(&b[field::DST]);
        EthernetAddress(a)
    }

    /// Source MAC address.
    #[must_use]
    pub fn src_addr(&self) -> EthernetAddress {
        let b = self.buffer.as_ref();
        let mut a = [0u8; 6];
        a.copy_from_slice(&b[field::SRC]);
        EthernetAddress(a)
    }

    /// The EtherType field right after the source address (a TPID for tagged frames).
    #[must_use]
    pub fn ethertype(&self) -> EtherType {
        EtherType(u16_at(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Number of VLAN tags (0, 1 or 2).
    #[must_use]
    pub fn tag_count(&self) -> usize {
        let b = self.buffer.as_ref();
        if !self.ethertype().is_vlan_tpid() {
            return 0;
        }
        match b.get(field::ETHERTYPE + field::TAG_LEN..field::ETHERTYPE + field::TAG_LEN + 2) {
            Some(&[h, l]) if EtherType(u16::from_be_bytes([h, l])).is_vlan_tpid() => 2,
            _ => 1,
        }
    }

    /// The outer VLAN tag, if any.
    #[must_use]
    pub fn vlan(&self) -> Option<VlanTag> {
        self.tag(0)
    }

    /// The inner VLAN tag of a double-tagged frame, if any.
    #[must_use]
    pub fn inner_vlan(&self) -> Option<VlanTag> {
        self.tag(1)
    }

    fn tag(&self, i: usize) -> Option<VlanTag> {
        if self.tag_count() <= i {
            return None;
        }
        let b = self.buffer.as_ref();
        let off = field::ETHERTYPE + i * field::TAG_LEN;
        Some(VlanTag::from_wire(u16_at(b, off), u16_at(b, off + 2)))
    }

    /// The EtherType of the payload, after all VLAN tags.
    #[must_use]
    pub fn payload_ethertype(&self) -> EtherType {
        EtherType(u16_at(self.buffer.as_ref(), self.header_len() - 2))
    }

    /// Length of the header including VLAN tags: the payload offset (14, 18 or 22).
    #[must_use]
    pub fn header_len(&self) -> usize {
        field::HEADER_LEN + self.tag_count() * field::TAG_LEN
    }

    /// The payload (everything after the header and tags; may include Ethernet
    /// padding that the upper layer bounds by its own length field).
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        let hl = self.header_len();
        &self.buffer.as_ref()[hl..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC address.
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the payload EtherType (the field after the last VLAN tag).
    ///
    /// # Errors
    /// [`Error::Unsupported`] when `ty` is a VLAN TPID (it would change the tag
    /// layout the view was checked against).
    pub fn set_payload_ethertype(&mut self, ty: EtherType) -> Result<()> {
        if ty.is_vlan_tpid() {
            return Err(Error::Unsupported);
        }
        let off = self.header_len() - 2;
        set_u16(self.buffer.as_mut(), off, ty.0);
        Ok(())
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

/// The header of an Ethernet II frame, for emitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Outer VLAN tag (TPID 0x8100 or 0x88a8).
    pub vlan: Option<VlanTag>,
    /// Inner VLAN tag (TPID 0x8100); only valid together with `vlan`.
    pub inner_vlan: Option<VlanTag>,
    /// EtherType of the payload.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    ///
    /// # Errors
    /// None today; `Result` for symmetry with the other Reprs.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Self> {
        Ok(EthernetRepr {
            dst_addr: frame.dst_addr(),
            src_addr: frame.src_addr(),
            vlan: frame.vlan(),
            inner_vlan: frame.inner_vlan(),
            ethertype: frame.payload_ethertype(),
        })
    }

    /// Header length including tags.
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        field::HEADER_LEN
            + field::TAG_LEN
                * (usize::from(self.vlan.is_some()) + usize::from(self.inner_vlan.is_some()))
    }

    /// Writes the header (and tags) to the start of `buf`; returns its length (the
    /// payload offset).
    ///
    /// # Errors
    /// [`Error::NoSpace`] when `buf` is short; [`Error::Malformed`] for an inner tag
    /// without an outer one, a TPID that is not 0x8100/0x88a8 (0x8100 for the inner
    /// tag), an out-of-range PCP/VID, or a payload EtherType that is a TPID.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let mut ty_off = field::ETHERTYPE;
        let tags = [self.vlan, self.inner_vlan];
        if self.inner_vlan.is_some() && self.vlan.is_none() {
            return Err(Error::Malformed);
        }
        for (i, t) in tags.iter().enumerate() {
            if let Some(t) = t {
                let tpid_ok = if i == 0 {
                    t.tpid.is_vlan_tpid()
                } else {
                    t.tpid == EtherType::VLAN
                };
                if !tpid_ok || !t.is_valid() {
                    return Err(Error::Malformed);
                }
            }
        }
        if self.ethertype.is_vlan_tpid() {
            return Err(Error::Malformed);
        }
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(Error::NoSpace)?;
        b[field::DST].copy_from_slice(&self.dst_addr.0);
        b[field::SRC].copy_from_slice(&self.src_addr.0);
        for t in tags.iter().flatten() {
            set_u16(b, ty_off, t.tpid.0);
            set_u16(b, ty_off + 2, t.tci());
            ty_off += field::TAG_LEN;
        }
        set_u16(b, ty_off, self.ethertype.0);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// First frame of tests/fixtures/v4-path1.pcap (SYN): dst, src, 0x0800.
    const UNTAGGED: [u8; 16] = [
        0x1e, 0x36, 0x86, 0xd7, 0xc3, 0xf0, 0x12, 0xba, 0x6e, 0x6f, 0x7e, 0x1c, 0x08, 0x00, 0x45,
        0x00,
    ];

    #[test]
    fn untagged() {
        let f = Frame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(
            f.dst_addr(),
            EthernetAddress([0x1e, 0x36, 0x86, 0xd7, 0xc3, 0xf0])
        );
        assert_eq!(
            f.src_addr(),
            EthernetAddress([0x12, 0xba, 0x6e, 0x6f, 0x7e, 0x1c])
        );
        assert!(f.dst_addr().is_unicast() && f.dst_addr().is_local());
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.payload_ethertype(), EtherType::IPV4);
        assert_eq!(f.tag_count(), 0);
        assert_eq!(f.vlan(), None);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn single_and_double_tag() {
        // 802.1Q example: TPID 8100, TCI a064 = PCP 5, DEI 0, VID 100, then IPv6.
        let mut one = [0u8; 19];
        one[12..18].copy_from_slice(&[0x81, 0x00, 0xa0, 0x64, 0x86, 0xdd]);
        let f = Frame::new_checked(&one[..]).unwrap();
        assert_eq!(
            f.vlan(),
            Some(VlanTag {
                tpid: EtherType::VLAN,
                pcp: 5,
                dei: false,
                vid: 100
            })
        );
        assert_eq!(f.payload_ethertype(), EtherType::IPV6);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload().len(), 1);

        let mut two = [0u8; 22];
        two[12..22].copy_from_slice(&[0x88, 0xa8, 0x10, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x08, 0x06]);
        let f = Frame::new_checked(&two[..]).unwrap();
        assert_eq!(
            f.vlan(),
            Some(VlanTag {
                tpid: EtherType::QINQ,
                pcp: 0,
                dei: true,
                vid: 10
            })
        );
        assert_eq!(f.inner_vlan(), Some(VlanTag::new(20)));
        assert_eq!(f.payload_ethertype(), EtherType::ARP);
        assert_eq!(f.payload(), &[] as &[u8]);
        let r = EthernetRepr::parse(&f).unwrap();
        let mut out = [0u8; 22];
        assert_eq!(r.emit(&mut out), Ok(22));
        assert_eq!(out, two);
    }

    #[test]
    fn bad_inputs() {
        assert_eq!(
            Frame::new_checked(&UNTAGGED[..13]).unwrap_err(),
            Error::Truncated
        );
        let mut t = [0u8; 17];
        t[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(Frame::new_checked(&t[..]).unwrap_err(), Error::Truncated);
        let mut t = [0u8; 30];
        t[12..14].copy_from_slice(&[0x81, 0x00]);
        t[16..18].copy_from_slice(&[0x88, 0xa8]); // S-tag inside a C-tag
        assert_eq!(Frame::new_checked(&t[..]).unwrap_err(), Error::Unsupported);
        t[16..18].copy_from_slice(&[0x81, 0x00]);
        t[20..22].copy_from_slice(&[0x81, 0x00]); // third tag
        assert_eq!(Frame::new_checked(&t[..]).unwrap_err(), Error::Unsupported);
        t[20..22].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(Frame::new_checked(&t[..21]).unwrap_err(), Error::Truncated);
        let r = EthernetRepr {
            dst_addr: EthernetAddress::BROADCAST,
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            vlan: None,
            inner_vlan: Some(VlanTag::new(1)),
            ethertype: EtherType::IPV4,
        };
        assert_eq!(r.emit(&mut [0u8; 64]), Err(Error::Malformed));
        let r = EthernetRepr {
            inner_vlan: None,
            ..r
        };
        assert_eq!(r.emit(&mut [0u8; 13]), Err(Error::NoSpace));
        let r = EthernetRepr {
            vlan: Some(VlanTag::new(0x1000)),
            ..r
        };
        assert_eq!(r.emit(&mut [0u8; 64]), Err(Error::Malformed));
    }

    #[test]
    fn address_helpers() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        let m = EthernetAddress::from_ipv6_multicast("ff02::1:ff00:1".parse().unwrap());
        assert_eq!(m, EthernetAddress([0x33, 0x33, 0xff, 0, 0, 1]));
        assert!(m.is_multicast() && !m.is_broadcast());
        let u = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
        assert!(u.is_unicast() && u.is_local());
        assert_eq!(std::format!("{u}"), "02:00:00:00:00:01");
        assert_eq!(
            EthernetAddress::from_bytes(&[1, 2, 3]),
            Err(Error::Truncated)
        );
    }

    fn tag() -> impl Strategy<Value = VlanTag> {
        (0u8..8, any::<bool>(), 0u16..0x1000).prop_map(|(pcp, dei, vid)| VlanTag {
            tpid: EtherType::VLAN,
            pcp,
            dei,
            vid,
        })
    }

    proptest! {
        #[test]
        fn never_panics(data in prop::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(f) = Frame::new_checked(&data[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.vlan(), f.inner_vlan(), f.payload_ethertype());
                prop_assert_eq!(f.header_len() + f.payload().len(), data.len());
                let mut v = data.clone();
                let mut g = Frame::new_checked(&mut v[..]).unwrap();
                let _ = g.set_payload_ethertype(EtherType::IPV6);
                g.set_src_addr(EthernetAddress::BROADCAST);
                let _ = g.payload_mut();
            }
        }

        #[test]
        fn roundtrip(d in any::<[u8; 6]>(), s in any::<[u8; 6]>(), outer in prop::option::of(tag()),
                     qinq in any::<bool>(), inner in prop::option::of(tag()), ty in 0u16..0x8100) {
            let outer = outer.map(|t| if qinq { VlanTag { tpid: EtherType::QINQ, ..t } } else { t });
            let inner = if outer.is_some() { inner } else { None };
            let r = EthernetRepr { dst_addr: EthernetAddress(d), src_addr: EthernetAddress(s),
                                   vlan: outer, inner_vlan: inner, ethertype: EtherType(ty) };
            let mut buf = [0u8; 30];
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(n, r.buffer_len());
            let f = Frame::new_checked(&buf[..n]).unwrap();
            prop_assert_eq!(f.header_len(), n);
            prop_assert_eq!(EthernetRepr::parse(&f).unwrap(), r);
        }
    }
}
