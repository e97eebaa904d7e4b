//! ICMPv6 (RFC 4443): echo request/reply, the error messages destination
//! unreachable, packet too big, time exceeded and parameter problem (quoted packet
//! read through [`QuotedIpv6`]), and Neighbor Solicitation / Advertisement
//! (RFC 4861 §4.3, §4.4) with their options (§4.6). The checksum covers the IPv6
//! pseudo-header (RFC 8200 §8.1, RFC 4443 §2.3).

use core::net::Ipv6Addr;

use crate::bytes::{need, set_u16, set_u32, u16_at, u32_at};
use crate::checksum::ipv6_pseudo_header;
use crate::ethernet::EthernetAddress;
use crate::ipv6::{self, UpperLayer, next_header::ICMPV6};
use crate::seq::SeqNum;
use crate::{Error, Result};

/// ICMPv6 message types handled or recognised here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    /// Destination Unreachable (1).
    DstUnreachable,
    /// Packet Too Big (2).
    PacketTooBig,
    /// Time Exceeded (3).
    TimeExceeded,
    /// Parameter Problem (4).
    ParamProblem,
    /// Echo Request (128).
    EchoRequest,
    /// Echo Reply (129).
    EchoReply,
    /// Router Solicitation (133).
    RouterSolicit,
    /// Router Advertisement (134).
    RouterAdvert,
    /// Neighbor Solicitation (135).
    NeighborSolicit,
    /// Neighbor Advertisement (136).
    NeighborAdvert,
    /// Redirect (137).
    Redirect,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Message {
    fn from(v: u8) -> Self {
        match v {
            1 => Message::DstUnreachable,
            2 => Message::PacketTooBig,
            3 => Message::TimeExceeded,
            4 => Message::ParamProblem,
            128 => Message::EchoRequest,
            129 => Message::EchoReply,
            133 => Message::RouterSolicit,
            134 => Message::RouterAdvert,
            135 => Message::NeighborSolicit,
            136 => Message::NeighborAdvert,
            137 => Message::Redirect,
            v => Message::Unknown(v),
        }
    }
}

impl From<Message> for u8 {
    fn from(m: Message) -> u8 {
        match m {
            Message::DstUnreachable => 1,
            Message::PacketTooBig => 2,
            Message::TimeExceeded => 3,
            Message::ParamProblem => 4,
            Message::EchoRequest => 128,
            Message::EchoReply => 129,
            Message::RouterSolicit => 133,
            Message::RouterAdvert => 134,
            Message::NeighborSolicit => 135,
            Message::NeighborAdvert => 136,
            Message::Redirect => 137,
            Message::Unknown(v) => v,
        }
    }
}

impl Message {
    /// True for error messages (RFC 4443 §2.1: types 0-127).
    #[must_use]
    pub fn is_error(self) -> bool {
        u8::from(self) < 128
    }
}

/// Destination Unreachable codes (RFC 4443 §3.1).
pub mod unreachable {
    /// No route to destination.
    pub const NO_ROUTE: u8 = 0;
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 1;
    /// Address unreachable.
    pub const ADDRESS: u8 = 3;
    /// Port unreachable.
    pub const PORT: u8 = 4;
    /// Reject route to destination.
    pub const REJECT_ROUTE: u8 = 6;
}

/// Length of the ICMPv6 header (type, code, checksum, 4 message bytes).
pub const HEADER_LEN: usize = 8;
/// Length of an NS/NA without options (RFC 4861 §4.3, §4.4).
pub const NDISC_LEN: usize = 24;
/// Largest quote an emitted error carries: RFC 4443 §2.4 (c) keeps the error
/// within the IPv6 minimum MTU, 1280 = 40 + 8 + 1232.
pub const MAX_QUOTE: usize = 1280 - ipv6::HEADER_LEN - HEADER_LEN;

/// NDISC option types (RFC 4861 §4.6).
pub mod option {
    /// Source Link-Layer Address.
    pub const SOURCE_LLADDR: u8 = 1;
    /// Target Link-Layer Address.
    pub const TARGET_LLADDR: u8 = 2;
}

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const WORD: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
    pub const NA_FLAGS: usize = 4;
    pub const TARGET: core::ops::Range<usize> = 8..24;
}

const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

/// The multicast group a Neighbor Solicitation for `addr` goes to: the
/// solicited-node address ff02::1:ffXX:XXXX (RFC 4291 §2.7.1).
#[must_use]
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// A zero-copy view of an ICMPv6 message (the upper-layer bytes of an IPv6
/// packet).
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

    /// Checks the 8-byte header, and the 24-byte fixed part of NS/NA.
    ///
    /// # Errors
    /// [`Error::Truncated`] when short.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(b, HEADER_LEN)?;
        if matches!(
            self.msg_type(),
            Message::NeighborSolicit | Message::NeighborAdvert
        ) {
            // RFC 4861 §7.1.1/§7.1.2: ICMP length is 24 or more octets.
            need(b, NDISC_LEN)?;
        }
        Ok(())
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

    /// Echo identifier.
    #[must_use]
    pub fn echo_ident(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number.
    #[must_use]
    pub fn echo_seq_no(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Packet Too Big MTU (RFC 4443 §3.2).
    #[must_use]
    pub fn mtu(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::WORD)
    }

    /// Parameter Problem pointer (RFC 4443 §3.4).
    #[must_use]
    pub fn pointer(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::WORD)
    }

    /// NA Router flag (RFC 4861 §4.4).
    #[must_use]
    pub fn router_flag(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & NA_ROUTER != 0
    }

    /// NA Solicited flag.
    #[must_use]
    pub fn solicited_flag(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & NA_SOLICITED != 0
    }

    /// NA Override flag.
    #[must_use]
    pub fn override_flag(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & NA_OVERRIDE != 0
    }

    /// NS/NA target address; `::` when the message is shorter than 24 bytes
    /// (impossible for a checked NS/NA).
    #[must_use]
    pub fn target_addr(&self) -> Ipv6Addr {
        self.buffer
            .as_ref()
            .get(field::TARGET)
            .and_then(|s| <[u8; 16]>::try_from(s).ok())
            .map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
    }

    /// The NS/NA options (empty when shorter than 24 bytes).
    #[must_use]
    pub fn ndisc_options(&self) -> NdiscOptions<'_> {
        NdiscOptions::new(self.buffer.as_ref().get(NDISC_LEN..).unwrap_or(&[]))
    }

    /// Everything after the 8-byte header (echo data or the quoted packet).
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True when the checksum over pseudo-header + message verifies
    /// (RFC 4443 §2.3, next header 58).
    #[must_use]
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        ipv6_pseudo_header(src, dst, ICMPV6, len)
            .add_bytes(b)
            .finish()
            == 0
    }

    /// The quoted packet of an error message.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for an informational message; otherwise as
    /// [`QuotedIpv6::new`].
    pub fn quoted(&self) -> Result<QuotedIpv6<'_>> {
        if !self.msg_type().is_error() {
            return Err(Error::Unsupported);
        }
        QuotedIpv6::new(self.data())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the type. Changing to NS/NA on a buffer shorter than 24 bytes is
    /// refused (the checked invariant would break).
    ///
    /// # Errors
    /// [`Error::Truncated`] in that case.
    pub fn set_msg_type(&mut self, t: Message) -> Result<()> {
        if matches!(t, Message::NeighborSolicit | Message::NeighborAdvert) {
            need(self.buffer.as_ref(), NDISC_LEN)?;
        }
        self.buffer.as_mut()[field::TYPE] = t.into();
        Ok(())
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

    /// Computes and stores the checksum (RFC 4443 §2.3).
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let c = ipv6_pseudo_header(src, dst, ICMPV6, len)
            .add_bytes(b)
            .finish();
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }
}

/// One Neighbor Discovery option (RFC 4861 §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdiscOption<'a> {
    /// Source Link-Layer Address (type 1) of an Ethernet link (length 1,
    /// RFC 2464 §6).
    SourceLinkLayerAddr(EthernetAddress),
    /// Target Link-Layer Address (type 2) of an Ethernet link.
    TargetLinkLayerAddr(EthernetAddress),
    /// Any other option (or a link-layer address option of another size).
    Other {
        /// Option type.
        kind: u8,
        /// Option bytes after type and length.
        data: &'a [u8],
    },
}

/// Iterator over NDISC options; yields an error (then stops) at the first
/// malformed option.
#[derive(Debug, Clone)]
pub struct NdiscOptions<'a> {
    data: &'a [u8],
}

impl<'a> NdiscOptions<'a> {
    /// Iterates over the options in `data`.
    #[must_use]
    pub const fn new(data: &'a [u8]) -> Self {
        NdiscOptions { data }
    }

    /// Validates every option.
    ///
    /// # Errors
    /// The first option error.
    pub fn validate(&self) -> Result<()> {
        self.clone().try_for_each(|o| o.map(|_| ()))
    }
}

impl<'a> Iterator for NdiscOptions<'a> {
    type Item = Result<NdiscOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let d = self.data;
        if d.is_empty() {
            return None;
        }
        let fail = |this: &mut Self, e| {
            this.data = &[];
            Some(Err(e))
        };
        let [kind, units, ..] = *d else {
            return fail(self, Error::Truncated);
        };
        // RFC 4861 §4.6: "The value 0 is invalid. Nodes MUST silently discard an
        // ND packet that contains an option with length zero."
        if units == 0 {
            return fail(self, Error::BadLength);
        }
        // RFC 4861 §4.6: Length in units of 8 octets, type and length included.
        let len = usize::from(units) * 8;
        let Some(opt) = d.get(..len) else {
            return fail(self, Error::BadLength);
        };
        self.data = &d[len..];
        let body = &opt[2..];
        Some(Ok(match (kind, body) {
            (option::SOURCE_LLADDR, &[a, b, c, e, f, g]) => {
                NdiscOption::SourceLinkLayerAddr(EthernetAddress([a, b, c, e, f, g]))
            }
            (option::TARGET_LLADDR, &[a, b, c, e, f, g]) => {
                NdiscOption::TargetLinkLayerAddr(EthernetAddress([a, b, c, e, f, g]))
            }
            _ => NdiscOption::Other { kind, data: body },
        }))
    }
}

/// A lenient view of the IPv6 packet quoted in an ICMPv6 error: usually
/// truncated, so the payload length is only an upper bound for the extension
/// header walk. Holds the 40-byte header and at least 8 bytes at the upper-layer
/// offset (for TCP/UDP: ports, and for TCP the sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedIpv6<'a> {
    data: &'a [u8],
    upper: UpperLayer,
}

impl<'a> QuotedIpv6<'a> {
    /// Views `data` as a quoted IPv6 packet.
    ///
    /// # Errors
    /// [`Error::Truncated`] when the header or the 8 upper-layer bytes are
    /// missing; [`Error::BadVersion`] when the version is not 6; extension-header
    /// errors as [`ipv6::walk_extension_headers`].
    pub fn new(data: &'a [u8]) -> Result<Self> {
        need(data, ipv6::HEADER_LEN)?;
        if data[0] >> 4 != 6 {
            return Err(Error::BadVersion);
        }
        let end = (ipv6::HEADER_LEN + usize::from(u16_at(data, 4))).min(data.len());
        let upper =
            ipv6::walk_extension_headers(data[6], &data[ipv6::HEADER_LEN..end], ipv6::HEADER_LEN)?;
        // RFC 4443 §2.4 (c): as much of the invoking packet as fits; we need the
        // first 8 upper-layer bytes.
        if upper.len < 8 {
            return Err(Error::Truncated);
        }
        Ok(QuotedIpv6 { data, upper })
    }

    /// The quote as given.
    #[must_use]
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Source address.
    #[must_use]
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.data[8..24]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    #[must_use]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.data[24..40]);
        Ipv6Addr::from(a)
    }

    /// Payload length as claimed by the quoted header.
    #[must_use]
    pub fn payload_len(&self) -> u16 {
        u16_at(self.data, 4)
    }

    /// Hop limit.
    #[must_use]
    pub fn hop_limit(&self) -> u8 {
        self.data[7]
    }

    /// Where the extension-header walk ended (offsets from the quote's start).
    #[must_use]
    pub const fn upper_layer(&self) -> UpperLayer {
        self.upper
    }

    /// Upper-layer protocol.
    #[must_use]
    pub const fn protocol(&self) -> u8 {
        self.upper.protocol
    }

    /// Quoted upper-layer bytes (at least 8).
    #[must_use]
    pub fn transport(&self) -> &'a [u8] {
        &self.data[self.upper.offset..self.upper.offset + self.upper.len]
    }

    /// Source port (TCP/UDP bytes 0-1).
    #[must_use]
    pub fn src_port(&self) -> u16 {
        u16_at(self.data, self.upper.offset)
    }

    /// Destination port (TCP/UDP bytes 2-3).
    #[must_use]
    pub fn dst_port(&self) -> u16 {
        u16_at(self.data, self.upper.offset + 2)
    }

    /// TCP sequence number (TCP bytes 4-7).
    #[must_use]
    pub fn tcp_seq(&self) -> SeqNum {
        SeqNum(u32_at(self.data, self.upper.offset + 4))
    }
}

/// Flags of a Neighbor Advertisement (RFC 4861 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NaFlags {
    /// R: the sender is a router.
    pub router: bool,
    /// S: sent in response to a Neighbor Solicitation.
    pub solicited: bool,
    /// O: override an existing cache entry.
    pub override_: bool,
}

/// A validated ICMPv6 message of the kinds this crate handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
    /// Destination Unreachable (type 1).
    DstUnreachable {
        /// Code (see [`mod@unreachable`]).
        code: u8,
        /// Quoted packet.
        quoted: &'a [u8],
    },
    /// Packet Too Big (type 2, code 0).
    PacketTooBig {
        /// Next-hop MTU.
        mtu: u32,
        /// Quoted packet.
        quoted: &'a [u8],
    },
    /// Time Exceeded (type 3; code 0 hop limit, 1 reassembly).
    TimeExceeded {
        /// Code.
        code: u8,
        /// Quoted packet.
        quoted: &'a [u8],
    },
    /// Parameter Problem (type 4).
    ParamProblem {
        /// Code.
        code: u8,
        /// Offset of the problem in the quoted packet.
        pointer: u32,
        /// Quoted packet.
        quoted: &'a [u8],
    },
    /// Echo Request (type 128, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Echo Reply (type 129, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Neighbor Solicitation (type 135).
    NeighborSolicit {
        /// Target address.
        target: Ipv6Addr,
        /// Source Link-Layer Address option.
        source_lladdr: Option<EthernetAddress>,
    },
    /// Neighbor Advertisement (type 136).
    NeighborAdvert {
        /// R/S/O flags.
        flags: NaFlags,
        /// Target address.
        target: Ipv6Addr,
        /// Target Link-Layer Address option.
        target_lladdr: Option<EthernetAddress>,
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Parses a checked message sent from `src` to `dst`, verifying the checksum.
    /// Unknown NDISC options are skipped (RFC 4861 §4.6); the IP-level check
    /// "hop limit is 255" (RFC 4861 §7.1) is the caller's.
    ///
    /// # Errors
    /// [`Error::BadChecksum`]; [`Error::Unsupported`] for other types (RS, RA,
    /// Redirect, MLD, ...); [`Error::Malformed`] for a non-zero code where 0 is
    /// required or an NS/NA that fails RFC 4861 §7.1 validation;
    /// [`Error::BadLength`]/[`Error::Truncated`] for bad NDISC options; for error
    /// messages, [`Error::Truncated`]/[`Error::BadVersion`] when the quote does not
    /// start with an IPv6 header.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        p: &Packet<&'a T>,
    ) -> Result<Self> {
        let t: &'a T = p.buffer;
        let b: &'a [u8] = t.as_ref();
        let p = Packet::new_checked(b)?;
        if !p.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        let code = p.msg_code();
        let data = &b[HEADER_LEN..];
        let quote = || -> Result<&'a [u8]> {
            need(data, ipv6::HEADER_LEN)?;
            if data[0] >> 4 != 6 {
                return Err(Error::BadVersion);
            }
            Ok(data)
        };
        match p.msg_type() {
            Message::DstUnreachable => Ok(Icmpv6Repr::DstUnreachable {
                code,
                quoted: quote()?,
            }),
            // RFC 4443 §3.2: Code "set to 0 by the originator and ignored by the receiver".
            Message::PacketTooBig => Ok(Icmpv6Repr::PacketTooBig {
                mtu: p.mtu(),
                quoted: quote()?,
            }),
            Message::TimeExceeded if code <= 1 => Ok(Icmpv6Repr::TimeExceeded {
                code,
                quoted: quote()?,
            }),
            Message::ParamProblem => Ok(Icmpv6Repr::ParamProblem {
                code,
                pointer: p.pointer(),
                quoted: quote()?,
            }),
            Message::EchoRequest | Message::EchoReply => {
                // RFC 4443 §4.1, §4.2: Code 0.
                if code != 0 {
                    return Err(Error::Malformed);
                }
                let (ident, seq_no) = (p.echo_ident(), p.echo_seq_no());
                Ok(if p.msg_type() == Message::EchoRequest {
                    Icmpv6Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    }
                } else {
                    Icmpv6Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    }
                })
            }
            Message::NeighborSolicit | Message::NeighborAdvert => {
                // RFC 4861 §7.1.1/§7.1.2: ICMP Code is 0; Target Address is not a
                // multicast address.
                let target = p.target_addr();
                if code != 0 || target.is_multicast() {
                    return Err(Error::Malformed);
                }
                let opts = p.ndisc_options();
                // RFC 4861 §7.1: all included options have a length greater than zero.
                opts.validate()?;
                if p.msg_type() == Message::NeighborSolicit {
                    let source_lladdr = opts.flatten().find_map(|o| match o {
                        NdiscOption::SourceLinkLayerAddr(a) => Some(a),
                        _ => None,
                    });
                    // RFC 4861 §7.1.1: with an unspecified source, the destination
                    // is a solicited-node multicast address and there is no Source
                    // Link-Layer Address option.
                    if src.is_unspecified() && (source_lladdr.is_some() || !is_solicited_node(dst))
                    {
                        return Err(Error::Malformed);
                    }
                    Ok(Icmpv6Repr::NeighborSolicit {
                        target,
                        source_lladdr,
                    })
                } else {
                    let flags = NaFlags {
                        router: p.router_flag(),
                        solicited: p.solicited_flag(),
                        override_: p.override_flag(),
                    };
                    // RFC 4861 §7.1.2: if the destination is multicast, the
                    // Solicited flag is zero.
                    if dst.is_multicast() && flags.solicited {
                        return Err(Error::Malformed);
                    }
                    let target_lladdr = opts.flatten().find_map(|o| match o {
                        NdiscOption::TargetLinkLayerAddr(a) => Some(a),
                        _ => None,
                    });
                    Ok(Icmpv6Repr::NeighborAdvert {
                        flags,
                        target,
                        target_lladdr,
                    })
                }
            }
            _ => Err(Error::Unsupported),
        }
    }

    /// Cuts `offending` to [`MAX_QUOTE`] bytes.
    #[must_use]
    pub fn quote(offending: &'a [u8]) -> &'a [u8] {
        &offending[..offending.len().min(MAX_QUOTE)]
    }

    /// A Destination Unreachable quoting `offending` (cut to [`MAX_QUOTE`]).
    #[must_use]
    pub fn dst_unreachable(code: u8, offending: &'a [u8]) -> Self {
        Icmpv6Repr::DstUnreachable {
            code,
            quoted: Self::quote(offending),
        }
    }

    /// A Packet Too Big quoting `offending` (cut to [`MAX_QUOTE`]).
    #[must_use]
    pub fn packet_too_big(mtu: u32, offending: &'a [u8]) -> Self {
        Icmpv6Repr::PacketTooBig {
            mtu,
            quoted: Self::quote(offending),
        }
    }

    /// The Echo Reply answering an Echo Request (RFC 4443 §4.2: same identifier,
    /// sequence number and data); `None` for other messages.
    #[must_use]
    pub fn echo_reply(&self) -> Option<Self> {
        match *self {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => Some(Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            }),
            _ => None,
        }
    }

    /// Message length.
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        match self {
            Icmpv6Repr::DstUnreachable { quoted, .. }
            | Icmpv6Repr::PacketTooBig { quoted, .. }
            | Icmpv6Repr::TimeExceeded { quoted, .. }
            | Icmpv6Repr::ParamProblem { quoted, .. } => HEADER_LEN + quoted.len(),
            Icmpv6Repr::EchoRequest { data, .. } | Icmpv6Repr::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
            Icmpv6Repr::NeighborSolicit {
                source_lladdr: l, ..
            }
            | Icmpv6Repr::NeighborAdvert {
                target_lladdr: l, ..
            } => NDISC_LEN + if l.is_some() { 8 } else { 0 },
        }
    }

    /// Writes the message from `src` to `dst` with its checksum; returns its length.
    ///
    /// # Errors
    /// [`Error::NoSpace`] when `buf` is short; [`Error::Malformed`] for an NS/NA
    /// that [`Icmpv6Repr::parse`] would reject (multicast target, unspecified
    /// source with a link-layer option or a non-solicited-node destination,
    /// solicited NA to multicast).
    pub fn emit(&self, src: Ipv6Addr, dst: Ipv6Addr, buf: &mut [u8]) -> Result<usize> {
        let invalid = match *self {
            // RFC 4861 §7.1.1 (mirrors `parse`).
            Icmpv6Repr::NeighborSolicit {
                target,
                source_lladdr,
            } => {
                target.is_multicast()
                    || (src.is_unspecified()
                        && (source_lladdr.is_some() || !is_solicited_node(dst)))
            }
            // RFC 4861 §7.1.2 (mirrors `parse`).
            Icmpv6Repr::NeighborAdvert { flags, target, .. } => {
                target.is_multicast() || (dst.is_multicast() && flags.solicited)
            }
            _ => false,
        };
        if invalid {
            return Err(Error::Malformed);
        }
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(Error::NoSpace)?;
        b[..HEADER_LEN].fill(0);
        let (ty, code, tail): (Message, u8, &[u8]) = match *self {
            Icmpv6Repr::DstUnreachable { code, quoted } => (Message::DstUnreachable, code, quoted),
            Icmpv6Repr::PacketTooBig { mtu, quoted } => {
                set_u32(b, field::WORD, mtu);
                (Message::PacketTooBig, 0, quoted)
            }
            Icmpv6Repr::TimeExceeded { code, quoted } => (Message::TimeExceeded, code, quoted),
            Icmpv6Repr::ParamProblem {
                code,
                pointer,
                quoted,
            } => {
                set_u32(b, field::WORD, pointer);
                (Message::ParamProblem, code, quoted)
            }
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                set_u16(b, field::ECHO_IDENT, ident);
                set_u16(b, field::ECHO_SEQNO, seq_no);
                let ty = if matches!(self, Icmpv6Repr::EchoRequest { .. }) {
                    Message::EchoRequest
                } else {
                    Message::EchoReply
                };
                (ty, 0, data)
            }
            Icmpv6Repr::NeighborSolicit {
                target,
                source_lladdr,
            } => {
                b[field::TARGET].copy_from_slice(&target.octets());
                emit_lladdr(&mut b[NDISC_LEN..], option::SOURCE_LLADDR, source_lladdr);
                (Message::NeighborSolicit, 0, &[])
            }
            Icmpv6Repr::NeighborAdvert {
                flags,
                target,
                target_lladdr,
            } => {
                b[field::NA_FLAGS] = (if flags.router { NA_ROUTER } else { 0 })
                    | (if flags.solicited { NA_SOLICITED } else { 0 })
                    | (if flags.override_ { NA_OVERRIDE } else { 0 });
                b[field::TARGET].copy_from_slice(&target.octets());
                emit_lladdr(&mut b[NDISC_LEN..], option::TARGET_LLADDR, target_lladdr);
                (Message::NeighborAdvert, 0, &[])
            }
        };
        b[field::TYPE] = ty.into();
        b[field::CODE] = code;
        if !tail.is_empty() {
            b[HEADER_LEN..].copy_from_slice(tail);
        }
        Packet::new_unchecked(b).fill_checksum(src, dst);
        Ok(len)
    }
}

/// Writes an Ethernet link-layer address option (8 bytes) when `addr` is set;
/// `b` has exactly the room `buffer_len` reserved.
fn emit_lladdr(b: &mut [u8], kind: u8, addr: Option<EthernetAddress>) {
    if let (Some(a), Some(o)) = (addr, b.get_mut(..8)) {
        o[0] = kind;
        // RFC 4861 §4.6.1 / RFC 2464 §6: length 1 (8 octets) for Ethernet.
        o[1] = 1;
        o[2..8].copy_from_slice(&a.0);
    }
}

/// True for ff02::1:ffXX:XXXX (RFC 4291 §2.7.1).
fn is_solicited_node(a: Ipv6Addr) -> bool {
    let o = a.octets();
    o[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// IPv6 header + first 8 TCP bytes of the SYN in tests/fixtures/v6-path1.pcap:
    /// 2001:db8:1::2 port 54298 -> 2001:db8:1::1 port 5000, seq 0xc6307fdd.
    const SYN_QUOTE: [u8; 48] = [
        0x60, 0x00, 0x09, 0x9b, 0x00, 0x44, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0x02, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x01, 0xd4, 0x1a, 0x13, 0x88, 0xc6, 0x30, 0x7f, 0xdd,
    ];

    /// A Neighbor Solicitation as Linux sends it: fe80::1 asks ff02::1:ff00:2 for
    /// 2001:db8:1::2 with SLLA 12:ba:6e:6f:7e:1c (RFC 4861 §4.3 layout).
    fn ns_bytes() -> (Ipv6Addr, Ipv6Addr, Vec<u8>) {
        let (src, dst) = (a("fe80::1"), solicited_node(a("2001:db8:1::2")));
        let mut v = std::vec![135, 0, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(&a("2001:db8:1::2").octets());
        v.extend_from_slice(&[1, 1, 0x12, 0xba, 0x6e, 0x6f, 0x7e, 0x1c]);
        Packet::new_unchecked(&mut v[..]).fill_checksum(src, dst);
        (src, dst, v)
    }

    #[test]
    fn neighbor_solicit() {
        let (src, dst, v) = ns_bytes();
        assert_eq!(dst, a("ff02::1:ff00:2"));
        let p = Packet::new_checked(&v[..]).unwrap();
        assert!(p.verify_checksum(src, dst));
        assert!(!p.verify_checksum(a("fe80::2"), dst));
        assert_eq!(p.target_addr(), a("2001:db8:1::2"));
        let opts: Vec<_> = p.ndisc_options().collect();
        let mac = EthernetAddress([0x12, 0xba, 0x6e, 0x6f, 0x7e, 0x1c]);
        assert_eq!(opts, [Ok(NdiscOption::SourceLinkLayerAddr(mac))]);
        let r = Icmpv6Repr::parse(src, dst, &p).unwrap();
        assert_eq!(
            r,
            Icmpv6Repr::NeighborSolicit {
                target: a("2001:db8:1::2"),
                source_lladdr: Some(mac)
            }
        );
        let mut out = [0u8; 32];
        assert_eq!(r.emit(src, dst, &mut out), Ok(32));
        assert_eq!(out[..], v[..]);
        // DAD probe: unspecified source, no SLLA.
        let dad = Icmpv6Repr::NeighborSolicit {
            target: a("2001:db8:1::2"),
            source_lladdr: None,
        };
        let n = dad.emit(Ipv6Addr::UNSPECIFIED, dst, &mut out).unwrap();
        let p = Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(Icmpv6Repr::parse(Ipv6Addr::UNSPECIFIED, dst, &p), Ok(dad));
        assert_eq!(
            r.emit(Ipv6Addr::UNSPECIFIED, dst, &mut out),
            Err(Error::Malformed)
        );
        assert_eq!(
            dad.emit(Ipv6Addr::UNSPECIFIED, a("ff02::1"), &mut out),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn neighbor_advert() {
        let (src, dst) = (a("2001:db8:1::1"), a("2001:db8:1::2"));
        let mac = EthernetAddress([0x1e, 0x36, 0x86, 0xd7, 0xc3, 0xf0]);
        let flags = NaFlags {
            router: false,
            solicited: true,
            override_: true,
        };
        let r = Icmpv6Repr::NeighborAdvert {
            flags,
            target: src,
            target_lladdr: Some(mac),
        };
        let mut out = [0u8; 40];
        let n = r.emit(src, dst, &mut out).unwrap();
        assert_eq!(n, 32);
        assert_eq!(&out[..8], &[136, 0, out[2], out[3], 0x60, 0, 0, 0]);
        assert_eq!(&out[24..32], &[2, 1, 0x1e, 0x36, 0x86, 0xd7, 0xc3, 0xf0]);
        let p = Packet::new_checked(&out[..n]).unwrap();
        assert!(p.solicited_flag() && p.override_flag() && !p.router_flag());
        assert_eq!(Icmpv6Repr::parse(src, dst, &p), Ok(r));
        // Solicited NA to a multicast destination is invalid.
        assert_eq!(r.emit(src, a("ff02::1"), &mut out), Err(Error::Malformed));
        assert_eq!(r.emit(src, dst, &mut out[..31]), Err(Error::NoSpace));
    }

    #[test]
    fn ndisc_bad_options_and_fields() {
        let (src, dst, v) = ns_bytes();
        let reparse = |mut v: Vec<u8>| {
            Packet::new_unchecked(&mut v[..]).fill_checksum(src, dst);
            let p = Packet::new_checked(&v[..])?;
            Icmpv6Repr::parse(src, dst, &p).map(|_| ())
        };
        let mut x = v.clone();
        x[25] = 0; // option length 0
        assert_eq!(reparse(x), Err(Error::BadLength));
        let mut x = v.clone();
        x[25] = 2; // overruns
        assert_eq!(reparse(x), Err(Error::BadLength));
        let mut x = v.clone();
        x.push(1); // one stray byte
        assert_eq!(reparse(x), Err(Error::Truncated));
        let mut x = v.clone();
        x[1] = 1; // code
        assert_eq!(reparse(x), Err(Error::Malformed));
        let mut x = v.clone();
        x[8] = 0xff; // multicast target
        assert_eq!(reparse(x), Err(Error::Malformed));
        assert_eq!(Packet::new_checked(&v[..23]).unwrap_err(), Error::Truncated);
        // An unknown option is skipped; a non-Ethernet-sized SLLA is "Other".
        let mut x = v[..24].to_vec();
        x.extend_from_slice(&[
            14, 1, 1, 2, 3, 4, 5, 6, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        let p = Packet::new_checked(&x[..]).unwrap();
        assert_eq!(p.ndisc_options().count(), 2);
        assert!(matches!(
            p.ndisc_options().nth(1),
            Some(Ok(NdiscOption::Other { kind: 1, .. }))
        ));
        assert_eq!(reparse(x), Ok(()));
        let mut x = v.clone();
        x[30] ^= 1;
        let p = Packet::new_checked(&x[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(src, dst, &p), Err(Error::BadChecksum));
    }

    #[test]
    fn echo() {
        let (src, dst) = (a("2001:db8:1::2"), a("2001:db8:1::1"));
        let r = Icmpv6Repr::EchoRequest {
            ident: 7,
            seq_no: 3,
            data: b"hac",
        };
        let mut out = [0u8; 11];
        assert_eq!(r.emit(src, dst, &mut out), Ok(11));
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.echo_ident(), p.echo_seq_no()),
            (Message::EchoRequest, 7, 3)
        );
        assert_eq!(p.quoted(), Err(Error::Unsupported));
        assert_eq!(Icmpv6Repr::parse(src, dst, &p), Ok(r));
        let rep = r.echo_reply().unwrap();
        assert_eq!(rep.echo_reply(), None);
        let mut out2 = [0u8; 11];
        rep.emit(dst, src, &mut out2).unwrap();
        let p = Packet::new_checked(&out2[..]).unwrap();
        assert!(p.verify_checksum(dst, src));
        assert_eq!(Icmpv6Repr::parse(dst, src, &p), Ok(rep));
        let mut x = out;
        x[1] = 1;
        let mut q = Packet::new_checked(&mut x[..]).unwrap();
        q.fill_checksum(src, dst);
        let q = Packet::new_checked(&x[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(src, dst, &q), Err(Error::Malformed));
    }

    #[test]
    fn errors_and_quotes() {
        let (src, dst) = (a("2001:db8::ffff"), a("2001:db8:1::2"));
        let r = Icmpv6Repr::packet_too_big(1280, &SYN_QUOTE);
        let mut out = [0u8; 56];
        assert_eq!(r.emit(src, dst, &mut out), Ok(56));
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!((p.msg_type(), p.mtu()), (Message::PacketTooBig, 1280));
        assert_eq!(Icmpv6Repr::parse(src, dst, &p), Ok(r));
        let q = p.quoted().unwrap();
        assert_eq!(
            (q.src_addr(), q.dst_addr()),
            (a("2001:db8:1::2"), a("2001:db8:1::1"))
        );
        assert_eq!(
            (q.protocol(), q.hop_limit(), q.payload_len()),
            (6, 64, 0x44)
        );
        assert_eq!(
            (q.src_port(), q.dst_port(), q.tcp_seq()),
            (54298, 5000, SeqNum(0xc630_7fdd))
        );
        assert_eq!(q.transport().len(), 8);
        for r in [
            Icmpv6Repr::dst_unreachable(unreachable::PORT, &SYN_QUOTE),
            Icmpv6Repr::TimeExceeded {
                code: 1,
                quoted: &SYN_QUOTE,
            },
            Icmpv6Repr::ParamProblem {
                code: 0,
                pointer: 6,
                quoted: &SYN_QUOTE,
            },
        ] {
            r.emit(src, dst, &mut out).unwrap();
            let p = Packet::new_checked(&out[..]).unwrap();
            assert_eq!(Icmpv6Repr::parse(src, dst, &p), Ok(r));
        }
        // Quoted packet with a Fragment header (first fragment) before TCP.
        let mut fq = SYN_QUOTE[..40].to_vec();
        fq[6] = 44;
        fq.extend_from_slice(&[6, 0, 0, 1, 0, 0, 0, 5]);
        fq.extend_from_slice(&SYN_QUOTE[40..]);
        let q = QuotedIpv6::new(&fq).unwrap();
        assert_eq!(q.upper_layer().offset, 48);
        assert!(q.upper_layer().fragment.unwrap().more);
        assert_eq!(q.dst_port(), 5000);
        // Truncated quotes.
        assert_eq!(QuotedIpv6::new(&SYN_QUOTE[..47]), Err(Error::Truncated));
        assert_eq!(QuotedIpv6::new(&SYN_QUOTE[..39]), Err(Error::Truncated));
        assert_eq!(QuotedIpv6::new(&fq[..47]), Err(Error::Truncated));
        let mut bad = SYN_QUOTE;
        bad[0] = 0x45;
        assert_eq!(QuotedIpv6::new(&bad), Err(Error::BadVersion));
        let r = Icmpv6Repr::TimeExceeded {
            code: 0,
            quoted: &bad,
        };
        r.emit(src, dst, &mut out).unwrap();
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(src, dst, &p), Err(Error::BadVersion));
        let r = Icmpv6Repr::TimeExceeded {
            code: 0,
            quoted: &SYN_QUOTE[..30],
        };
        r.emit(src, dst, &mut out[..38]).unwrap();
        let p = Packet::new_checked(&out[..38]).unwrap();
        assert_eq!(Icmpv6Repr::parse(src, dst, &p), Err(Error::Truncated));
        let big = [0x60u8; 2000];
        assert_eq!(Icmpv6Repr::dst_unreachable(0, &big).buffer_len(), 1280 - 40);
        // Router Solicitation is recognised but not handled.
        let mut rs = [133u8, 0, 0, 0, 0, 0, 0, 0];
        Packet::new_unchecked(&mut rs[..]).fill_checksum(src, dst);
        let p = Packet::new_checked(&rs[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(src, dst, &p), Err(Error::Unsupported));
    }

    fn arb_repr<'a>(kind: u8, x: u32, data: &'a [u8], quoted: &'a [u8]) -> Icmpv6Repr<'a> {
        let mac = EthernetAddress([2, 0, 0, 0, 0, (x & 0xff) as u8]);
        let target = Ipv6Addr::from_bits(0x2001_0db8 << 96 | u128::from(x));
        match kind {
            0 => Icmpv6Repr::EchoRequest {
                ident: x as u16,
                seq_no: (x >> 16) as u16,
                data,
            },
            1 => Icmpv6Repr::EchoReply {
                ident: x as u16,
                seq_no: (x >> 16) as u16,
                data,
            },
            2 => Icmpv6Repr::DstUnreachable {
                code: x as u8,
                quoted,
            },
            3 => Icmpv6Repr::PacketTooBig { mtu: x, quoted },
            4 => Icmpv6Repr::TimeExceeded {
                code: (x & 1) as u8,
                quoted,
            },
            5 => Icmpv6Repr::ParamProblem {
                code: x as u8,
                pointer: x,
                quoted,
            },
            6 => Icmpv6Repr::NeighborSolicit {
                target,
                source_lladdr: (x & 1 == 0).then_some(mac),
            },
            _ => Icmpv6Repr::NeighborAdvert {
                flags: NaFlags {
                    router: x & 2 != 0,
                    solicited: x & 4 != 0,
                    override_: x & 8 != 0,
                },
                target,
                target_lladdr: (x & 1 == 0).then_some(mac),
            },
        }
    }

    proptest! {
        #[test]
        fn never_panics(data in prop::collection::vec(any::<u8>(), 0..100)) {
            let (s, d) = (a("fe80::1"), a("ff02::1:ff00:1"));
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.mtu(), p.target_addr(), p.verify_checksum(s, d));
                let _ = (p.router_flag(), p.solicited_flag(), p.override_flag());
                for o in p.ndisc_options() { let _ = o; }
                if let Ok(q) = p.quoted() {
                    let _ = (q.src_addr(), q.dst_addr(), q.src_port(), q.dst_port(), q.tcp_seq());
                    prop_assert!(q.transport().len() >= 8);
                }
                let _ = Icmpv6Repr::parse(s, d, &p);
                let mut v = data.clone();
                let mut m = Packet::new_checked(&mut v[..]).unwrap();
                m.fill_checksum(s, d);
                prop_assert!(m.verify_checksum(s, d));
                let _ = m.set_msg_type(Message::NeighborAdvert);
                let _ = m.target_addr();
            }
            let _ = QuotedIpv6::new(&data);
        }

        #[test]
        fn roundtrip(kind in 0u8..8, x in any::<u32>(), data in prop::collection::vec(any::<u8>(), 0..40)) {
            let (src, dst) = (a("2001:db8:1::1"), a("2001:db8:1::2"));
            let r = arb_repr(kind, x, &data, &SYN_QUOTE);
            let mut buf = [0u8; 100];
            let n = r.emit(src, dst, &mut buf).unwrap();
            prop_assert_eq!(n, r.buffer_len());
            let p = Packet::new_checked(&buf[..n]).unwrap();
            prop_assert_eq!(Icmpv6Repr::parse(src, dst, &p), Ok(r));
        }
    }
}
