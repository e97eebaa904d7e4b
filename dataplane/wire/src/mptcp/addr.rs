//! ADD_ADDR (RFC 8684 §3.4.1) and REMOVE_ADDR (§3.4.2).
//!
//! ```text
//! ADD_ADDR:    [30][len][0x3<<4 | rsv(3) E][AddrID][address 4|16][port 2]?[truncated HMAC 8 if E=0]
//!              E=0: IPv4 16 / 18 (port), IPv6 28 / 30;  E=1 (echo): 8 / 10, 20 / 22
//! REMOVE_ADDR: [30][3+n][0x4<<4 | rsv][AddrID_1]…[AddrID_n], n ≥ 1
//! ```
//! The family and the port's presence follow from the length; the HMAC is
//! [`crate::crypto::add_addr_hmac`].

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bytes::{set_u16, set_u64, u16_at, u64_at};
use crate::{Error, Result};

use super::{check_header, emit_header, subtype};

mod field {
    pub const SUBTYPE: usize = 2;
    pub const ADDR_ID: usize = 3;
    pub const ADDR: usize = 4;
}

/// The echo flag E, bit 0 of byte 2.
const FLAG_E: u8 = 0x01;

/// `(is_ipv6, has_port)` for a valid ADD_ADDR length given the E flag.
const fn add_addr_layout(len: usize, echo: bool) -> Option<(bool, bool)> {
    match (echo, len) {
        (false, 16) | (true, 8) => Some((false, false)),
        (false, 18) | (true, 10) => Some((false, true)),
        (false, 28) | (true, 20) => Some((true, false)),
        (false, 30) | (true, 22) => Some((true, true)),
        _ => None,
    }
}

/// A view over an ADD_ADDR option. After [`new_checked`](Self::new_checked)
/// succeeds no accessor or setter panics.
#[derive(Debug, Clone)]
pub struct AddAddr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AddAddr<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` and validates it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let v = Self::new_unchecked(buffer);
        v.check_len()?;
        Ok(v)
    }

    /// Checks kind 30, subtype 3, a length valid for the E flag (16/18/28/30
    /// without echo, 8/10/20/22 with), and that the buffer holds the option.
    pub fn check_len(&self) -> Result<()> {
        let len = check_header(self.buffer.as_ref(), subtype::ADD_ADDR)?;
        if len < 4 {
            return Err(Error::BadLength);
        }
        add_addr_layout(len, self.echo())
            .map(|_| ())
            .ok_or(Error::BadLength)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn layout(&self) -> (bool, bool) {
        add_addr_layout(usize::from(self.buffer.as_ref()[1]), self.echo()).unwrap_or((false, false))
    }

    /// E: this is an echo (receipt confirmation) and carries no HMAC.
    #[must_use]
    pub fn echo(&self) -> bool {
        self.buffer.as_ref()[field::SUBTYPE] & FLAG_E != 0
    }

    /// The sender's address ID.
    #[must_use]
    pub fn addr_id(&self) -> u8 {
        self.buffer.as_ref()[field::ADDR_ID]
    }

    /// The announced address (family from the length).
    #[must_use]
    pub fn addr(&self) -> IpAddr {
        let b = self.buffer.as_ref();
        if self.layout().0 {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[field::ADDR..field::ADDR + 16]);
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[field::ADDR..field::ADDR + 4]);
            IpAddr::V4(Ipv4Addr::from(a))
        }
    }

    fn port_off(&self) -> usize {
        field::ADDR + if self.layout().0 { 16 } else { 4 }
    }

    /// The port, if present.
    #[must_use]
    pub fn port(&self) -> Option<u16> {
        self.layout()
            .1
            .then(|| u16_at(self.buffer.as_ref(), self.port_off()))
    }

    /// The truncated (rightmost 64 bits) HMAC, absent in an echo.
    #[must_use]
    pub fn hmac(&self) -> Option<u64> {
        let off = self.port_off() + if self.layout().1 { 2 } else { 0 };
        (!self.echo()).then(|| u64_at(self.buffer.as_ref(), off))
    }
}

/// An owned ADD_ADDR option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddAddrRepr {
    /// The sender's address ID.
    pub addr_id: u8,
    /// The announced address.
    pub addr: IpAddr,
    /// The port, if announced (else the peer uses the port of the subflow the
    /// option arrived on, §3.4.1).
    pub port: Option<u16>,
    /// The truncated HMAC; `None` means this is an echo (E = 1).
    pub hmac: Option<u64>,
}

impl AddAddrRepr {
    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]>>(v: &AddAddr<T>) -> Result<Self> {
        v.check_len()?;
        Ok(Self {
            addr_id: v.addr_id(),
            addr: v.addr(),
            port: v.port(),
            hmac: v.hmac(),
        })
    }

    /// E flag: an echo carries no HMAC.
    #[must_use]
    pub const fn is_echo(&self) -> bool {
        self.hmac.is_none()
    }

    /// The option length (8 to 30).
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        4 + match self.addr {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 16,
        } + if self.port.is_some() { 2 } else { 0 }
            + if self.hmac.is_some() { 8 } else { 0 }
    }

    /// Writes the option; [`Error::NoSpace`] if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let b = emit_header(
            buf,
            len,
            subtype::ADD_ADDR,
            if self.is_echo() { FLAG_E } else { 0 },
        )?;
        b[field::ADDR_ID] = self.addr_id;
        let mut off = field::ADDR;
        match self.addr {
            IpAddr::V4(a) => {
                b[off..off + 4].copy_from_slice(&a.octets());
                off += 4;
            }
            IpAddr::V6(a) => {
                b[off..off + 16].copy_from_slice(&a.octets());
                off += 16;
            }
        }
        if let Some(p) = self.port {
            set_u16(b, off, p);
            off += 2;
        }
        if let Some(h) = self.hmac {
            set_u64(b, off, h);
        }
        Ok(len)
    }
}

/// A view over a REMOVE_ADDR option. After [`new_checked`](Self::new_checked)
/// succeeds no accessor panics.
#[derive(Debug, Clone)]
pub struct RemoveAddr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RemoveAddr<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` and validates it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let v = Self::new_unchecked(buffer);
        v.check_len()?;
        Ok(v)
    }

    /// Checks kind 30, subtype 4, length ≥ 4 (at least one address ID), and that
    /// the buffer holds the option.
    pub fn check_len(&self) -> Result<()> {
        match check_header(self.buffer.as_ref(), subtype::REMOVE_ADDR)? {
            0..=3 => Err(Error::BadLength),
            _ => Ok(()),
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The removed address IDs (one byte each).
    #[must_use]
    pub fn addr_ids(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[3..usize::from(b[1])]
    }
}

impl<'a> RemoveAddr<&'a [u8]> {
    /// The removed address IDs, borrowing from the packet.
    #[must_use]
    pub fn addr_ids_ref(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer;
        &b[3..usize::from(b[1])]
    }
}

/// An owned-reference REMOVE_ADDR option: the list of address IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoveAddrRepr<'a> {
    /// The address IDs, one byte each; 1 to 252 of them.
    pub addr_ids: &'a [u8],
}

impl<'a> RemoveAddrRepr<'a> {
    /// Parses a checked view over a borrowed slice.
    pub fn parse(v: RemoveAddr<&'a [u8]>) -> Result<Self> {
        v.check_len()?;
        Ok(Self {
            addr_ids: v.addr_ids_ref(),
        })
    }

    /// Iterates the address IDs.
    pub fn iter(&self) -> impl Iterator<Item = u8> + 'a {
        self.addr_ids.iter().copied()
    }

    /// The option length, `3 + n`.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        3 + self.addr_ids.len()
    }

    /// Writes the option; [`Error::BadLength`] for an empty list or more than 252
    /// IDs, [`Error::NoSpace`] if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if self.addr_ids.is_empty() || self.buffer_len() > usize::from(u8::MAX) {
            return Err(Error::BadLength);
        }
        let len = self.buffer_len();
        let b = emit_header(buf, len, subtype::REMOVE_ADDR, 0)?;
        b[3..].copy_from_slice(self.addr_ids);
        Ok(len)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::MptcpOption;
    use super::super::tests::hex;
    use super::*;
    use crate::crypto::add_addr_hmac;
    use proptest::prelude::*;

    #[test]
    fn add_addr_v4_with_hmac() {
        // Hand-built (the fixtures contain no ADD_ADDR; Linux's default PM does not
        // announce): ID 5, 198.18.2.1, port 5000, HMAC keyed with the keys of
        // v4-path1.pcap packet 3, sender = listener (B).
        let (ka, kb) = (0xf385_ef39_ed38_c079u64, 0x8a35_1225_86d4_62ebu64);
        let ip = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 1));
        let h = add_addr_hmac(kb, ka, 5, ip, Some(5000));
        let r = AddAddrRepr {
            addr_id: 5,
            addr: ip,
            port: Some(5000),
            hmac: Some(h),
        };
        let mut buf = [0u8; 18];
        assert_eq!(r.emit(&mut buf), Ok(18));
        assert_eq!(&buf[..10], &hex("1e123005c61202011388")[..]);
        assert_eq!(buf[10..], h.to_be_bytes());
        let v = AddAddr::new_checked(&buf[..]).unwrap();
        assert!(!v.echo());
        assert_eq!(v.addr(), ip);
        assert_eq!(v.port(), Some(5000));
        assert_eq!(v.hmac(), Some(h));
        assert_eq!(AddAddrRepr::parse(&v).unwrap(), r);
    }

    #[test]
    fn add_addr_echo_v6() {
        // Echo, ID 2, 2001:db8:2::2, no port: len 20.
        let b = hex("1e14310220010db8000200000000000000000002");
        let v = AddAddr::new_checked(&b[..]).unwrap();
        assert!(v.echo());
        assert_eq!(
            v.addr(),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2))
        );
        assert_eq!(v.port(), None);
        assert_eq!(v.hmac(), None);
        let r = AddAddrRepr::parse(&v).unwrap();
        assert!(r.is_echo());
        assert_eq!(r.buffer_len(), 20);
    }

    #[test]
    fn add_addr_bad_lengths() {
        for (e, len) in [
            (0u8, 8usize),
            (0, 10),
            (0, 20),
            (0, 22),
            (1, 16),
            (1, 18),
            (1, 28),
            (1, 30),
            (0, 3),
            (0, 4),
            (0, 17),
            (1, 9),
            (0, 31),
            (1, 23),
        ] {
            let mut b = std::vec![0u8; len.max(3)];
            b[0] = 30;
            b[1] = len as u8;
            b[2] = 0x30 | e;
            assert_eq!(
                AddAddr::new_checked(&b[..]).err(),
                Some(Error::BadLength),
                "E={e} len {len}"
            );
        }
        assert_eq!(
            AddAddr::new_checked(&[30u8, 16, 0x30, 1, 2][..]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn remove_addr() {
        let b = [30u8, 6, 0x40, 1, 2, 3];
        let o = MptcpOption::parse(&b).unwrap();
        let MptcpOption::RemoveAddr(r) = o else {
            panic!("{o:?}")
        };
        assert_eq!(r.addr_ids, &[1, 2, 3]);
        assert_eq!(r.iter().collect::<std::vec::Vec<_>>(), [1, 2, 3]);
        let mut out = [0u8; 6];
        assert_eq!(o.emit(&mut out), Ok(6));
        assert_eq!(out, b);
        assert_eq!(
            RemoveAddr::new_checked(&[30u8, 3, 0x40][..]).err(),
            Some(Error::BadLength)
        );
        assert_eq!(
            RemoveAddr::new_checked(&[30u8, 5, 0x40, 1][..]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            RemoveAddrRepr { addr_ids: &[] }.emit(&mut out),
            Err(Error::BadLength)
        );
        assert_eq!(
            RemoveAddrRepr {
                addr_ids: &[0; 253]
            }
            .emit(&mut [0u8; 300]),
            Err(Error::BadLength)
        );
        assert_eq!(
            RemoveAddrRepr {
                addr_ids: &[1, 2, 3, 4]
            }
            .emit(&mut out),
            Err(Error::NoSpace)
        );
        let v = RemoveAddr::new_checked(&b[..]).unwrap();
        assert_eq!(v.addr_ids(), &[1, 2, 3]);
    }

    pub(crate) fn arb_repr() -> impl Strategy<Value = AddAddrRepr> {
        let addr = prop_oneof![
            any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ];
        (
            any::<u8>(),
            addr,
            any::<Option<u16>>(),
            any::<Option<u64>>(),
        )
            .prop_map(|(addr_id, addr, port, hmac)| AddAddrRepr {
                addr_id,
                addr,
                port,
                hmac,
            })
    }

    proptest! {
        #[test]
        fn add_addr_round_trip(r in arb_repr()) {
            let mut buf = [0u8; 40];
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(n, r.buffer_len());
            prop_assert_eq!(AddAddrRepr::parse(&AddAddr::new_checked(&buf[..n]).unwrap()).unwrap(), r);
        }

        #[test]
        fn remove_addr_round_trip(ids in prop::collection::vec(any::<u8>(), 1..37)) {
            let r = RemoveAddrRepr { addr_ids: &ids };
            let mut buf = [0u8; 40];
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(n, 3 + ids.len());
            prop_assert_eq!(RemoveAddrRepr::parse(RemoveAddr::new_checked(&buf[..n]).unwrap()).unwrap(), r);
        }

        #[test]
        fn views_never_panic(data in prop::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(v) = AddAddr::new_checked(&data[..]) {
                let _ = (v.echo(), v.addr_id(), v.addr(), v.port(), v.hmac());
            }
            if let Ok(v) = RemoveAddr::new_checked(&data[..]) {
                let _ = v.addr_ids();
            }
        }
    }
}
