//! ICMP for IPv4 (RFC 792): echo request/reply, and the error messages
//! destination unreachable, time exceeded and parameter problem, whose quoted
//! datagram is read through the lenient [`QuotedIpv4`] view.

use core::net::Ipv4Addr;

use crate::bytes::{need, set_u16, u16_at, u32_at};
use crate::checksum;
use crate::seq::SeqNum;
use crate::{Error, Result};

/// ICMPv4 message types handled here (RFC 792).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    /// Echo Reply (0).
    EchoReply,
    /// Destination Unreachable (3).
    DstUnreachable,
    /// Redirect (5).
    Redirect,
    /// Echo Request (8).
    EchoRequest,
    /// Time Exceeded (11).
    TimeExceeded,
    /// Parameter Problem (12).
    ParamProblem,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Message {
    fn from(v: u8) -> Self {
        match v {
            0 => Message::EchoReply,
            3 => Message::DstUnreachable,
            5 => Message::Redirect,
            8 => Message::EchoRequest,
            11 => Message::TimeExceeded,
            12 => Message::ParamProblem,
            v => Message::Unknown(v),
        }
    }
}

impl From<Message> for u8 {
    fn from(m: Message) -> u8 {
        match m {
            Message::EchoReply => 0,
            Message::DstUnreachable => 3,
            Message::Redirect => 5,
            Message::EchoRequest => 8,
            Message::TimeExceeded => 11,
            Message::ParamProblem => 12,
            Message::Unknown(v) => v,
        }
    }
}

impl Message {
    /// True for the error messages that quote the offending datagram.
    #[must_use]
    pub const fn is_error(self) -> bool {
        matches!(
            self,
            Message::DstUnreachable
                | Message::Redirect
                | Message::TimeExceeded
                | Message::ParamProblem
        )
    }
}

/// Destination Unreachable codes (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1).
pub mod unreachable {
    /// Net unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set (carries the next-hop MTU, RFC 1191).
    pub const FRAG_NEEDED: u8 = 4;
    /// Communication administratively prohibited (RFC 1812).
    pub const ADMIN_PROHIBITED: u8 = 13;
    /// Highest defined code (precedence cutoff in effect).
    pub const MAX: u8 = 15;
}

/// Length of the ICMP header (type, code, checksum, 4 type-specific bytes).
pub const HEADER_LEN: usize = 8;

/// Largest quote an emitted error carries: RFC 1812 §4.3.2.3 limits the whole
/// ICMP error datagram to 576 bytes (20 IP + 8 ICMP + 548 quoted).
pub const MAX_QUOTE: usize = 576 - 20 - HEADER_LEN;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
    pub const POINTER: usize = 4;
    pub const MTU: usize = 6;
}

/// A zero-copy view of an ICMPv4 message (the IPv4 payload).
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

    /// Checks that the 8-byte header is present.
    ///
    /// # Errors
    /// [`Error::Truncated`] below 8 bytes.
    pub fn check_len(&self) -> Result<()> {
        need(self.buffer.as_ref(), HEADER_LEN)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    #[must_use]
    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code.
    #[must_use]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[must_use]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (bytes 4-5).
    #[must_use]
    pub fn echo_ident(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (bytes 6-7).
    #[must_use]
    pub fn echo_seq_no(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Next-hop MTU of a "fragmentation needed" (bytes 6-7, RFC 1191 §4).
    #[must_use]
    pub fn next_hop_mtu(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::MTU)
    }

    /// Parameter Problem pointer (byte 4).
    #[must_use]
    pub fn pointer(&self) -> u8 {
        self.buffer.as_ref()[field::POINTER]
    }

    /// The 4 type-specific header bytes as one word.
    #[must_use]
    pub fn rest_of_header(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Everything after the 8-byte header (echo data or the quoted datagram).
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True when the checksum over the whole message verifies (RFC 792).
    #[must_use]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }

    /// The quoted datagram of an error message.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a non-error message type; otherwise as
    /// [`QuotedIpv4::new`].
    pub fn quoted(&self) -> Result<QuotedIpv4<'_>> {
        if !self.msg_type().is_error() {
            return Err(Error::Unsupported);
        }
        QuotedIpv4::new(self.data())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the type.
    pub fn set_msg_type(&mut self, t: Message) {
        self.buffer.as_mut()[field::TYPE] = t.into();
    }

    /// Sets the code.
    pub fn set_msg_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, v);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQNO, v);
    }

    /// Mutable data after the header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Recomputes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let c = checksum::checksum(self.buffer.as_ref());
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }
}

/// A lenient view of the IPv4 datagram quoted in an ICMP error: the quote is
/// usually truncated, so the total length and header checksum are not checked.
/// It holds the full IPv4 header (options included) and at least the first 8
/// bytes after it (RFC 792: "Internet Header + 64 bits of Data Datagram").
///
/// Those 8 bytes are the transport header's start only when
/// [`frag_offset`](QuotedIpv4::frag_offset) is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedIpv4<'a> {
    data: &'a [u8],
    header_len: usize,
}

impl<'a> QuotedIpv4<'a> {
    /// Views `data` as a quoted IPv4 datagram.
    ///
    /// # Errors
    /// [`Error::Truncated`] when the header or the 8 following bytes are missing;
    /// [`Error::BadVersion`] when the version is not 4; [`Error::BadHeaderLength`]
    /// for IHL < 5.
    pub fn new(data: &'a [u8]) -> Result<Self> {
        need(data, 20)?;
        if data[0] >> 4 != 4 {
            return Err(Error::BadVersion);
        }
        let header_len = usize::from(data[0] & 0x0f) * 4;
        if header_len < 20 {
            return Err(Error::BadHeaderLength);
        }
        // RFC 792: the quote carries the IP header and 64 bits of data.
        need(data, header_len + 8)?;
        Ok(QuotedIpv4 { data, header_len })
    }

    /// The quote as given.
    #[must_use]
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Header length in bytes.
    #[must_use]
    pub const fn header_len(&self) -> usize {
        self.header_len
    }

    /// Total length as claimed by the quoted header (may exceed the quote).
    #[must_use]
    pub fn total_len(&self) -> u16 {
        u16_at(self.data, 2)
    }

    /// Identification.
    #[must_use]
    pub fn ident(&self) -> u16 {
        u16_at(self.data, 4)
    }

    /// Fragment offset in bytes.
    #[must_use]
    pub fn frag_offset(&self) -> u16 {
        (u16_at(self.data, 6) & 0x1fff) << 3
    }

    /// TTL.
    #[must_use]
    pub fn ttl(&self) -> u8 {
        self.data[8]
    }

    /// Protocol.
    #[must_use]
    pub fn protocol(&self) -> u8 {
        self.data[9]
    }

    /// Source address.
    #[must_use]
    pub fn src_addr(&self) -> Ipv4Addr {
        let d = self.data;
        Ipv4Addr::new(d[12], d[13], d[14], d[15])
    }

    /// Destination address.
    #[must_use]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = self.data;
        Ipv4Addr::new(d[16], d[17], d[18], d[19])
    }

    /// The quoted bytes after the IP header (at least 8).
    #[must_use]
    pub fn transport(&self) -> &'a [u8] {
        &self.data[self.header_len..]
    }

    /// Source port (TCP/UDP bytes 0-1).
    #[must_use]
    pub fn src_port(&self) -> u16 {
        u16_at(self.data, self.header_len)
    }

    /// Destination port (TCP/UDP bytes 2-3).
    #[must_use]
    pub fn dst_port(&self) -> u16 {
        u16_at(self.data, self.header_len + 2)
    }

    /// TCP sequence number (TCP bytes 4-7).
    #[must_use]
    pub fn tcp_seq(&self) -> SeqNum {
        SeqNum(u32_at(self.data, self.header_len + 4))
    }
}

/// A validated ICMPv4 message of the kinds this crate handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    /// Echo Request (type 8, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Echo Reply (type 0, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Destination Unreachable (type 3).
    DstUnreachable {
        /// Code (0..=15, see [`mod@unreachable`]).
        code: u8,
        /// Next-hop MTU (bytes 6-7; meaningful for code 4, else 0).
        next_hop_mtu: u16,
        /// Quoted datagram (IP header + at least 8 bytes).
        quoted: &'a [u8],
    },
    /// Time Exceeded (type 11; code 0 TTL, 1 reassembly).
    TimeExceeded {
        /// Code.
        code: u8,
        /// Quoted datagram.
        quoted: &'a [u8],
    },
    /// Parameter Problem (type 12; code 0 pointer, 1 missing option, 2 bad length).
    ParamProblem {
        /// Code.
        code: u8,
        /// Octet of the quoted header where the problem was found.
        pointer: u8,
        /// Quoted datagram.
        quoted: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Parses a checked message (checksum verified).
    ///
    /// # Errors
    /// [`Error::BadChecksum`]; [`Error::Unsupported`] for another type or an
    /// undefined code; [`Error::Malformed`] for a non-zero echo code; for error
    /// messages, a quote that [`QuotedIpv4::new`] rejects.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Self> {
        let t: &'a T = p.buffer;
        let b: &'a [u8] = t.as_ref();
        let p = Packet::new_checked(b)?;
        if !p.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        let code = p.msg_code();
        let data = &b[HEADER_LEN..];
        match p.msg_type() {
            Message::EchoRequest | Message::EchoReply => {
                // RFC 792 (Echo): Code 0.
                if code != 0 {
                    return Err(Error::Malformed);
                }
                let (ident, seq_no) = (p.echo_ident(), p.echo_seq_no());
                Ok(if p.msg_type() == Message::EchoRequest {
                    Icmpv4Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    }
                } else {
                    Icmpv4Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    }
                })
            }
            Message::DstUnreachable if code <= unreachable::MAX => {
                QuotedIpv4::new(data)?;
                Ok(Icmpv4Repr::DstUnreachable {
                    code,
                    next_hop_mtu: p.next_hop_mtu(),
                    quoted: data,
                })
            }
            Message::TimeExceeded if code <= 1 => {
                QuotedIpv4::new(data)?;
                Ok(Icmpv4Repr::TimeExceeded { code, quoted: data })
            }
            Message::ParamProblem if code <= 2 => {
                QuotedIpv4::new(data)?;
                Ok(Icmpv4Repr::ParamProblem {
                    code,
                    pointer: p.pointer(),
                    quoted: data,
                })
            }
            _ => Err(Error::Unsupported),
        }
    }

    /// A Destination Unreachable quoting `offending` (the IPv4 datagram that
    /// caused it), cut to [`MAX_QUOTE`] bytes.
    #[must_use]
    pub fn dst_unreachable(code: u8, next_hop_mtu: u16, offending: &'a [u8]) -> Self {
        let n = offending.len().min(MAX_QUOTE);
        Icmpv4Repr::DstUnreachable {
            code,
            next_hop_mtu,
            quoted: &offending[..n],
        }
    }

    /// The Echo Reply answering an Echo Request (RFC 792: same identifier,
    /// sequence number and data); `None` for other messages.
    #[must_use]
    pub fn echo_reply(&self) -> Option<Self> {
        match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => Some(Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            }),
            _ => None,
        }
    }

    /// Message length: 8 + data/quote.
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                    data.len()
                }
                Icmpv4Repr::DstUnreachable { quoted, .. }
                | Icmpv4Repr::TimeExceeded { quoted, .. }
                | Icmpv4Repr::ParamProblem { quoted, .. } => quoted.len(),
            }
    }

    /// Writes the whole message with its checksum; returns its length.
    ///
    /// # Errors
    /// [`Error::NoSpace`] when `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(Error::NoSpace)?;
        let (ty, code, rest, tail): (Message, u8, [u8; 4], &[u8]) = match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (Message::EchoRequest, 0, word(ident, seq_no), data),
            Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (Message::EchoReply, 0, word(ident, seq_no), data),
            Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu,
                quoted,
            } => (Message::DstUnreachable, code, word(0, next_hop_mtu), quoted),
            Icmpv4Repr::TimeExceeded { code, quoted } => {
                (Message::TimeExceeded, code, [0; 4], quoted)
            }
            Icmpv4Repr::ParamProblem {
                code,
                pointer,
                quoted,
            } => (Message::ParamProblem, code, [pointer, 0, 0, 0], quoted),
        };
        b[field::TYPE] = ty.into();
        b[field::CODE] = code;
        b[4..8].copy_from_slice(&rest);
        b[HEADER_LEN..].copy_from_slice(tail);
        Packet::new_unchecked(b).fill_checksum();
        Ok(len)
    }
}

fn word(hi: u16, lo: u16) -> [u8; 4] {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    [a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// An echo request like `ping -p 41` sends: id 0x1234, seq 1, 8 data bytes.
    /// Checksum computed per RFC 1071 (0xe0c5).
    fn echo_request() -> Vec<u8> {
        let mut v = std::vec![8, 0, 0, 0, 0x12, 0x34, 0x00, 0x01];
        v.extend_from_slice(b"AAAAAAAA");
        let c = checksum::checksum(&v);
        v[2..4].copy_from_slice(&c.to_be_bytes());
        v
    }

    /// The IPv4+TCP SYN of tests/fixtures/v4-path1.pcap, first 28 bytes (header +
    /// ports + sequence number 0x65cce07c).
    const SYN_QUOTE: [u8; 28] = [
        0x45, 0x00, 0x00, 0x58, 0x3d, 0x9b, 0x40, 0x00, 0x40, 0x06, 0x6e, 0xdd, 0xc6, 0x12, 0x01,
        0x02, 0xc6, 0x12, 0x01, 0x01, 0xbb, 0x9c, 0x13, 0x88, 0x65, 0xcc, 0xe0, 0x7c,
    ];

    #[test]
    fn echo() {
        let b = echo_request();
        assert_eq!(&b[2..4], &[0xe0, 0xc5]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), Message::EchoRequest);
        assert!(p.verify_checksum());
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 1));
        assert_eq!(p.quoted(), Err(Error::Unsupported));
        let r = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"AAAAAAAA"
            }
        );
        let reply = r.echo_reply().unwrap();
        assert_eq!(reply.echo_reply(), None);
        let mut out = [0u8; 16];
        assert_eq!(reply.emit(&mut out), Ok(16));
        // Type 8 -> 0 changes the checksum by 0x0800 (RFC 1624).
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 0xe0c5 + 0x0800);
        let q = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&q), Ok(reply));
        assert_eq!(r.emit(&mut out), Ok(16));
        assert_eq!(out[..], b[..]);
    }

    #[test]
    fn frag_needed_quote() {
        let r = Icmpv4Repr::dst_unreachable(unreachable::FRAG_NEEDED, 1400, &SYN_QUOTE);
        let mut out = [0u8; 64];
        let n = r.emit(&mut out).unwrap();
        assert_eq!(n, 36);
        let p = Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(
            (p.msg_type(), p.msg_code(), p.next_hop_mtu()),
            (Message::DstUnreachable, 4, 1400)
        );
        assert!(p.verify_checksum());
        let q = p.quoted().unwrap();
        assert_eq!(q.src_addr(), Ipv4Addr::new(198, 18, 1, 2));
        assert_eq!(q.dst_addr(), Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(
            (q.protocol(), q.ttl(), q.ident(), q.total_len()),
            (6, 64, 0x3d9b, 0x58)
        );
        assert_eq!((q.src_port(), q.dst_port()), (48_028, 5000));
        assert_eq!(q.tcp_seq(), SeqNum(0x65cc_e07c));
        assert_eq!(
            (q.header_len(), q.frag_offset(), q.transport().len()),
            (20, 0, 8)
        );
        assert_eq!(Icmpv4Repr::parse(&p), Ok(r));
        // Quotes are cut to 548 bytes.
        let big = [0x45u8; 1000];
        match Icmpv4Repr::dst_unreachable(1, 0, &big) {
            Icmpv4Repr::DstUnreachable { quoted, .. } => assert_eq!(quoted.len(), MAX_QUOTE),
            _ => unreachable!(),
        }
    }

    #[test]
    fn other_errors_roundtrip() {
        for r in [
            Icmpv4Repr::TimeExceeded {
                code: 0,
                quoted: &SYN_QUOTE,
            },
            Icmpv4Repr::ParamProblem {
                code: 0,
                pointer: 9,
                quoted: &SYN_QUOTE,
            },
        ] {
            let mut out = [0u8; 36];
            r.emit(&mut out).unwrap();
            let p = Packet::new_checked(&out[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&p), Ok(r));
        }
    }

    #[test]
    fn bad_inputs() {
        let b = echo_request();
        assert_eq!(Packet::new_checked(&b[..7]).unwrap_err(), Error::Truncated);
        let mut x = b.clone();
        x[15] ^= 1;
        let p = Packet::new_checked(&x[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Err(Error::BadChecksum));
        let mut x = b.clone();
        x[1] = 1;
        let mut p = Packet::new_checked(&mut x[..]).unwrap();
        p.fill_checksum();
        let p = Packet::new_checked(&x[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Err(Error::Malformed));
        // Unknown type (timestamp, 13).
        let mut x = b.clone();
        x[0] = 13;
        Packet::new_checked(&mut x[..]).unwrap().fill_checksum();
        assert_eq!(
            Icmpv4Repr::parse(&Packet::new_checked(&x[..]).unwrap()),
            Err(Error::Unsupported)
        );
        // Quotes: too short, bad version, bad IHL, IHL past the quote.
        assert_eq!(QuotedIpv4::new(&SYN_QUOTE[..27]), Err(Error::Truncated));
        assert_eq!(QuotedIpv4::new(&SYN_QUOTE[..19]), Err(Error::Truncated));
        let mut q = SYN_QUOTE;
        q[0] = 0x65;
        assert_eq!(QuotedIpv4::new(&q), Err(Error::BadVersion));
        q[0] = 0x44;
        assert_eq!(QuotedIpv4::new(&q), Err(Error::BadHeaderLength));
        q[0] = 0x46;
        assert_eq!(QuotedIpv4::new(&q), Err(Error::Truncated));
        // An error message whose quote is short does not parse.
        let r = Icmpv4Repr::TimeExceeded {
            code: 1,
            quoted: &SYN_QUOTE[..20],
        };
        let mut out = [0u8; 28];
        r.emit(&mut out).unwrap();
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Err(Error::Truncated));
        assert_eq!(p.quoted(), Err(Error::Truncated));
        assert_eq!(r.emit(&mut [0u8; 27]), Err(Error::NoSpace));
    }

    proptest! {
        #[test]
        fn never_panics(data in prop::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.rest_of_header(), p.pointer(), p.verify_checksum());
                if let Ok(q) = p.quoted() {
                    let _ = (q.src_addr(), q.dst_addr(), q.src_port(), q.dst_port(), q.tcp_seq());
                    prop_assert!(q.transport().len() >= 8);
                }
                let _ = Icmpv4Repr::parse(&p);
            }
            let _ = QuotedIpv4::new(&data);
        }

        #[test]
        fn roundtrip(kind in 0u8..5, a in any::<u16>(), b in any::<u16>(), code in 0u8..2,
                     data in prop::collection::vec(any::<u8>(), 0..40)) {
            let mut quoted = SYN_QUOTE.to_vec();
            quoted.extend_from_slice(&data);
            let r = match kind {
                0 => Icmpv4Repr::EchoRequest { ident: a, seq_no: b, data: &data },
                1 => Icmpv4Repr::EchoReply { ident: a, seq_no: b, data: &data },
                2 => Icmpv4Repr::DstUnreachable { code, next_hop_mtu: b, quoted: &quoted },
                3 => Icmpv4Repr::TimeExceeded { code, quoted: &quoted },
                _ => Icmpv4Repr::ParamProblem { code, pointer: a as u8, quoted: &quoted },
            };
            let mut buf = [0u8; 100];
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(n, r.buffer_len());
            let p = Packet::new_checked(&buf[..n]).unwrap();
            prop_assert_eq!(Icmpv4Repr::parse(&p), Ok(r));
        }
    }
}
