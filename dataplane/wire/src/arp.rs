//! ARP for IPv4 over Ethernet (RFC 826). Only hardware type 1 (Ethernet, 6-byte
//! addresses) and protocol type 0x0800 (IPv4, 4-byte addresses) are accepted.

use core::net::Ipv4Addr;

use crate::bytes::{need, set_u16, u16_at};
use crate::ethernet::{EtherType, EthernetAddress};
use crate::{Error, Result};

/// ARP opcode (RFC 826 `ar$op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `ares_op$REQUEST` (1).
    Request,
    /// `ares_op$REPLY` (2).
    Reply,
    /// Any other opcode (e.g. RARP).
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Self {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            v => Operation::Unknown(v),
        }
    }
}

impl From<Operation> for u16 {
    fn from(op: Operation) -> u16 {
        match op {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(v) => v,
        }
    }
}

/// `ar$hrd` of Ethernet (RFC 826 "ares_hrd$Ethernet").
pub const HTYPE_ETHERNET: u16 = 1;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: core::ops::Range<usize> = 8..14;
    pub const SPA: core::ops::Range<usize> = 14..18;
    pub const THA: core::ops::Range<usize> = 18..24;
    pub const TPA: core::ops::Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// A zero-copy view of an Ethernet/IPv4 ARP packet.
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

    /// Checks the fixed part and that this is Ethernet/IPv4 ARP. Trailing bytes
    /// (Ethernet padding) are allowed and ignored.
    ///
    /// # Errors
    /// [`Error::Truncated`] when shorter than 8 bytes, or than 28 bytes for
    /// Ethernet/IPv4; [`Error::Unsupported`] for any other hardware/protocol type
    /// or address length.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(b, field::OPER + 2)?;
        // RFC 826: ar$hrd, ar$pro, ar$hln, ar$pln select the address formats; we
        // only translate Ethernet (1, 6 bytes) / IPv4 (0x0800, 4 bytes).
        if u16_at(b, field::HTYPE) != HTYPE_ETHERNET
            || u16_at(b, field::PTYPE) != EtherType::IPV4.0
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(Error::Unsupported);
        }
        need(b, PACKET_LEN)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// `ar$hrd`.
    #[must_use]
    pub fn hardware_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::HTYPE)
    }

    /// `ar$pro`.
    #[must_use]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(u16_at(self.buffer.as_ref(), field::PTYPE))
    }

    /// `ar$hln`.
    #[must_use]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// `ar$pln`.
    #[must_use]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// `ar$op`.
    #[must_use]
    pub fn operation(&self) -> Operation {
        Operation::from(u16_at(self.buffer.as_ref(), field::OPER))
    }

    /// `ar$sha`.
    #[must_use]
    pub fn sender_hardware_addr(&self) -> EthernetAddress {
        mac(&self.buffer.as_ref()[field::SHA])
    }

    /// `ar$spa`.
    #[must_use]
    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::SPA])
    }

    /// `ar$tha`.
    #[must_use]
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        mac(&self.buffer.as_ref()[field::THA])
    }

    /// `ar$tpa`.
    #[must_use]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::TPA])
    }
}

fn mac(b: &[u8]) -> EthernetAddress {
    let mut a = [0u8; 6];
    a.copy_from_slice(b);
    EthernetAddress(a)
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets `ar$op`.
    pub fn set_operation(&mut self, op: Operation) {
        set_u16(self.buffer.as_mut(), field::OPER, op.into());
    }

    /// Sets `ar$sha`.
    pub fn set_sender_hardware_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&a.0);
    }

    /// Sets `ar$spa`.
    pub fn set_sender_protocol_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a.octets());
    }

    /// Sets `ar$tha`.
    pub fn set_target_hardware_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&a.0);
    }

    /// Sets `ar$tpa`.
    pub fn set_target_protocol_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a.octets());
    }
}

/// A validated Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// [`Operation::Request`] or [`Operation::Reply`].
    pub operation: Operation,
    /// Sender MAC.
    pub sender_hardware_addr: EthernetAddress,
    /// Sender IPv4 address.
    pub sender_protocol_addr: Ipv4Addr,
    /// Target MAC (ignored, usually zero, in requests).
    pub target_hardware_addr: EthernetAddress,
    /// Target IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses a checked packet.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for an opcode other than request (1) or reply (2).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self> {
        let operation = p.operation();
        if let Operation::Unknown(_) = operation {
            return Err(Error::Unsupported);
        }
        Ok(ArpRepr {
            operation,
            sender_hardware_addr: p.sender_hardware_addr(),
            sender_protocol_addr: p.sender_protocol_addr(),
            target_hardware_addr: p.target_hardware_addr(),
            target_protocol_addr: p.target_protocol_addr(),
        })
    }

    /// The reply that answers this request on behalf of `our_mac` (RFC 826
    /// "swap hardware and protocol fields ... set ar$op to ares_op$REPLY").
    /// `None` when `self` is not a request.
    #[must_use]
    pub fn reply(&self, our_mac: EthernetAddress) -> Option<ArpRepr> {
        (self.operation == Operation::Request).then_some(ArpRepr {
            operation: Operation::Reply,
            sender_hardware_addr: our_mac,
            sender_protocol_addr: self.target_protocol_addr,
            target_hardware_addr: self.sender_hardware_addr,
            target_protocol_addr: self.sender_protocol_addr,
        })
    }

    /// Always [`PACKET_LEN`] (28).
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the 28-byte packet; returns 28.
    ///
    /// # Errors
    /// [`Error::NoSpace`] when `buf` is short; [`Error::Unsupported`] for an
    /// [`Operation::Unknown`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if let Operation::Unknown(_) = self.operation {
            return Err(Error::Unsupported);
        }
        let b = buf.get_mut(..PACKET_LEN).ok_or(Error::NoSpace)?;
        set_u16(b, field::HTYPE, HTYPE_ETHERNET);
        set_u16(b, field::PTYPE, EtherType::IPV4.0);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        let mut p = Packet::new_unchecked(b);
        p.set_operation(self.operation);
        p.set_sender_hardware_addr(self.sender_hardware_addr);
        p.set_sender_protocol_addr(self.sender_protocol_addr);
        p.set_target_hardware_addr(self.target_hardware_addr);
        p.set_target_protocol_addr(self.target_protocol_addr);
        Ok(PACKET_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A who-has request laid out per RFC 826 as Linux sends it on Ethernet:
    /// who-has 192.168.1.1 tell 192.168.1.10, plus 18 bytes of Ethernet padding.
    const REQUEST: [u8; 46] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x00, 0x07, 0x0d, 0xaf, 0xf4, 0x54, 0xc0,
        0xa8, 0x01, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn parse_request_and_reply() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), EtherType::IPV4);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        let r = ArpRepr::parse(&p).unwrap();
        assert_eq!(r.operation, Operation::Request);
        assert_eq!(
            r.sender_hardware_addr,
            EthernetAddress([0, 7, 0x0d, 0xaf, 0xf4, 0x54])
        );
        assert_eq!(r.sender_protocol_addr, Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(192, 168, 1, 1));
        let me = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let rep = r.reply(me).unwrap();
        assert_eq!(rep.reply(me), None);
        let mut buf = [0u8; 28];
        assert_eq!(rep.emit(&mut buf), Ok(28));
        let q = ArpRepr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(q, rep);
        assert_eq!(q.target_hardware_addr, r.sender_hardware_addr);
        assert_eq!(q.sender_protocol_addr, Ipv4Addr::new(192, 168, 1, 1));
        // Emitting the request reproduces the first 28 bytes exactly.
        assert_eq!(r.emit(&mut buf), Ok(28));
        assert_eq!(buf[..], REQUEST[..28]);
    }

    #[test]
    fn bad_inputs() {
        assert_eq!(
            Packet::new_checked(&REQUEST[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&REQUEST[..27]).unwrap_err(),
            Error::Truncated
        );
        for (i, v) in [(1, 6u8), (3, 0xdd), (4, 8), (5, 16)] {
            let mut b = REQUEST;
            b[i] = v;
            assert_eq!(
                Packet::new_checked(&b[..]).unwrap_err(),
                Error::Unsupported,
                "byte {i}"
            );
        }
        let mut b = REQUEST;
        b[7] = 3; // RARP request
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.operation(), Operation::Unknown(3));
        assert_eq!(ArpRepr::parse(&p), Err(Error::Unsupported));
        let r = ArpRepr::parse(&Packet::new_checked(&REQUEST[..]).unwrap()).unwrap();
        assert_eq!(r.emit(&mut [0u8; 27]), Err(Error::NoSpace));
        let bad = ArpRepr {
            operation: Operation::Unknown(9),
            ..r
        };
        assert_eq!(bad.emit(&mut [0u8; 28]), Err(Error::Unsupported));
    }

    proptest! {
        #[test]
        fn never_panics(data in prop::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.operation(), p.sender_hardware_addr(), p.target_protocol_addr());
                let _ = ArpRepr::parse(&p);
            }
        }

        #[test]
        fn roundtrip(req in any::<bool>(), sha in any::<[u8; 6]>(), spa in any::<u32>(),
                     tha in any::<[u8; 6]>(), tpa in any::<u32>()) {
            let r = ArpRepr {
                operation: if req { Operation::Request } else { Operation::Reply },
                sender_hardware_addr: EthernetAddress(sha),
                sender_protocol_addr: Ipv4Addr::from_bits(spa),
                target_hardware_addr: EthernetAddress(tha),
                target_protocol_addr: Ipv4Addr::from_bits(tpa),
            };
            let mut buf = [0u8; 28];
            prop_assert_eq!(r.emit(&mut buf), Ok(r.buffer_len()));
            prop_assert_eq!(ArpRepr::parse(&Packet::new_checked(&buf[..]).unwrap()), Ok(r));
        }
    }
}
