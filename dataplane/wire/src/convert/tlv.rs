//! Convert TLVs (RFC 8803 §6.2) and the framing-checked TLV iterator.
//!
//! ```text
//!  byte 0   byte 1     bytes 2..
//! +--------+---------+--------------------------------------+
//! | Type   | Length  | Value (zero-padded to a 4-byte mult.) |
//! +--------+---------+--------------------------------------+
//! ```
//! Length counts 32-bit words and covers Type, Length and Value (RFC 8803 §6.2).
//!
//! The typed TLVs keep their variable parts as the raw wire slices (padding
//! included), so a parsed [`Tlv`] re-emits to the same bytes; only the 16-bit
//! unassigned fields of Info, Extended TCP Header, Supported TCP Extensions and
//! Cookie are dropped on parse (receivers ignore them) and emitted as zero.

use core::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::error::{ConvertError, ErrorCode};
use super::{MAX_MESSAGE_LEN, pad4, tlv_type};
use crate::bytes::{set_u16, u16_at};
use crate::{Error, Result};

type CResult<T> = core::result::Result<T, ConvertError>;

mod field {
    /// Type and Length bytes.
    pub(super) const TYPE: usize = 0;
    pub(super) const LEN: usize = 1;
    /// Start of the value after the 16-bit unassigned field (Info, Extended TCP
    /// Header, Supported TCP Extensions, Cookie).
    pub(super) const AFTER_RESERVED: usize = 4;
    /// Connect TLV (RFC 8803 §6.2.5).
    pub(super) const CONNECT_PORT: usize = 2;
    pub(super) const CONNECT_ADDR: core::ops::Range<usize> = 4..20;
    pub(super) const CONNECT_OPTIONS: usize = 20;
    /// Error TLV (RFC 8803 §6.2.8).
    pub(super) const ERROR_CODE: usize = 2;
    pub(super) const ERROR_VALUE: usize = 3;
}

/// Length of a base Connect TLV in 32-bit words (RFC 8803 §6.2.5).
pub const CONNECT_BASE_WORDS: u8 = 5;
/// Largest TLV in bytes: a message of 255 words minus the fixed header.
const MAX_TLV_LEN: usize = MAX_MESSAGE_LEN - super::HEADER_LEN;

/// A set of TLV types (256 bits, no allocation) used to detect duplicates
/// (RFC 8803 §6.2.1: a TLV type MUST appear at most once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TypeSet([u64; 4]);

impl TypeSet {
    /// The empty set.
    #[must_use]
    pub const fn new() -> Self {
        TypeSet([0; 4])
    }

    /// True if `ty` is in the set.
    #[must_use]
    pub const fn contains(&self, ty: u8) -> bool {
        self.0[(ty >> 6) as usize] & (1u64 << (ty & 63)) != 0
    }

    /// Adds `ty`; returns `false` if it was already present.
    pub fn insert(&mut self, ty: u8) -> bool {
        let had = self.contains(ty);
        self.0[usize::from(ty >> 6)] |= 1u64 << (ty & 63);
        !had
    }
}

/// One TCP option of a Connect TLV option list (RFC 8803 §6.2.5): `kind`, a length
/// byte (= 2 + value length, ≥ 2) and the value. A length-2 option carries no value
/// ("please use this option", the converter generates the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpOpt<'a> {
    /// Option kind (never 0: a zero byte starts the padding).
    pub kind: u8,
    /// Option value (may be empty).
    pub value: &'a [u8],
}

impl TcpOpt<'_> {
    /// Bytes the option takes in the list (2 + value length).
    #[must_use]
    pub const fn wire_len(&self) -> usize {
        2 + self.value.len()
    }
}

/// Checks a Connect TLV option list (RFC 8803 §6.2.5): a sequence of
/// kind/length(≥ 2)/value entries; a zero byte where a kind is expected starts the
/// zero padding, and everything after it must be zero.
fn check_connect_options(raw: &[u8]) -> CResult<()> {
    let mut i = 0;
    while i < raw.len() {
        let kind = raw[i];
        if kind == 0 {
            // RFC 8803 §6.2.5: the list is zero-padded; padding is all zeros.
            return if raw[i..].iter().all(|&b| b == 0) {
                Ok(())
            } else {
                Err(ConvertError::BadTcpOption)
            };
        }
        // Every listed option has a length byte ≥ 2 (no single-byte NOP form here).
        let Some(&len) = raw.get(i + 1) else {
            return Err(ConvertError::BadTcpOption);
        };
        let len = usize::from(len);
        if len < 2 || i + len > raw.len() {
            return Err(ConvertError::BadTcpOption);
        }
        i += len;
    }
    Ok(())
}

/// Iterator over the options of a [`Connect`] TLV (padding skipped).
#[derive(Debug, Clone)]
pub struct ConnectOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ConnectOptions<'a> {
    type Item = TcpOpt<'a>;

    fn next(&mut self) -> Option<TcpOpt<'a>> {
        // The list was validated by `check_connect_options`; stay defensive anyway.
        let (&kind, tail) = self.rest.split_first()?;
        if kind == 0 {
            self.rest = &[];
            return None;
        }
        let len = usize::from(*tail.first()?);
        if len < 2 || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let opt = TcpOpt {
            kind,
            value: &self.rest[2..len],
        };
        self.rest = &self.rest[len..];
        Some(opt)
    }
}

/// TCP option kinds that RFC 8803 §7.1–7.3 says a converter ignores when a
/// client lists them in a Connect TLV: EOL, NOP, MSS, Window Scale, SACK.
const IGNORED_CONNECT_KINDS: [u8; 5] = [0, 1, 2, 3, 5];

/// Connect TLV (type 10, RFC 8803 §6.2.5): remote port, remote address (IPv6; IPv4
/// as `::ffff:a.b.c.d`), and for an Extended Connect (Length > 5) a list of TCP
/// options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connect<'a> {
    port: u16,
    addr: Ipv6Addr,
    /// Raw option list including its zero padding; validated.
    options: &'a [u8],
}

impl<'a> Connect<'a> {
    /// A base Connect (no options) to `remote`; an IPv4 address is carried as
    /// `::ffff:a.b.c.d`.
    #[must_use]
    pub const fn base(remote: SocketAddr) -> Connect<'static> {
        let addr = match remote.ip() {
            IpAddr::V4(a) => a.to_ipv6_mapped(),
            IpAddr::V6(a) => a,
        };
        Connect {
            port: remote.port(),
            addr,
            options: &[],
        }
    }

    /// A Connect with a raw, already encoded option list (kind/len/value entries,
    /// optionally followed by zero padding). Fails with
    /// [`ConvertError::BadTcpOption`] if the list is malformed or longer than a TLV
    /// can carry.
    pub fn new(port: u16, addr: Ipv6Addr, options: &'a [u8]) -> CResult<Self> {
        check_connect_options(options)?;
        if field::CONNECT_OPTIONS + pad4(options.len()) > MAX_TLV_LEN {
            return Err(ConvertError::BadTcpOption);
        }
        Ok(Connect {
            port,
            addr,
            options,
        })
    }

    /// Remote peer port.
    #[must_use]
    pub const fn remote_port(&self) -> u16 {
        self.port
    }

    /// Remote peer address as carried on the wire (IPv6 / v4-mapped).
    #[must_use]
    pub const fn remote_ipv6(&self) -> Ipv6Addr {
        self.addr
    }

    /// Remote peer address; a v4-mapped address (`::ffff:a.b.c.d`) is returned as
    /// IPv4.
    #[must_use]
    pub const fn remote_addr(&self) -> IpAddr {
        match self.addr.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(self.addr),
        }
    }

    /// Remote address and port.
    #[must_use]
    pub const fn remote(&self) -> SocketAddr {
        SocketAddr::new(self.remote_addr(), self.port)
    }

    /// True for an Extended Connect (Length > 5 words, carries TCP options).
    #[must_use]
    pub const fn is_extended(&self) -> bool {
        !self.options.is_empty()
    }

    /// The raw option list, zero padding included.
    #[must_use]
    pub const fn options_raw(&self) -> &'a [u8] {
        self.options
    }

    /// Iterates the listed TCP options (padding skipped).
    #[must_use]
    pub const fn options(&self) -> ConnectOptions<'a> {
        ConnectOptions { rest: self.options }
    }

    /// Kinds listed in the Connect that `supported` rejects, skipping the kinds
    /// RFC 8803 §7.1–7.3 says to ignore (0, 1, 2, 3, 5). These are the value of an
    /// Unsupported TCP Option (33) error.
    pub fn unsupported_options<F: Fn(u8) -> bool>(
        &self,
        supported: F,
    ) -> impl Iterator<Item = u8> + use<'a, F> {
        self.options()
            .map(|o| o.kind)
            .filter(move |k| !IGNORED_CONNECT_KINDS.contains(k) && !supported(*k))
    }

    /// `Err(ConvertError::UnsupportedTcpOption(kind))` for the first listed kind
    /// that `supported` rejects (RFC 8803 §6.2.5: checked before connecting).
    pub fn check_options<F: Fn(u8) -> bool>(&self, supported: F) -> CResult<()> {
        match self.unsupported_options(supported).next() {
            Some(k) => Err(ConvertError::UnsupportedTcpOption(k)),
            None => Ok(()),
        }
    }

    /// True if the destination is one RFC 8803 §6.2.5 forbids (→ Malformed).
    #[must_use]
    pub fn is_forbidden_destination(&self) -> bool {
        is_forbidden_destination(self.remote_addr())
    }

    /// Bytes the TLV takes on the wire.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        field::CONNECT_OPTIONS + pad4(self.options.len())
    }
}

/// RFC 8803 §6.2.5: the Connect address MUST NOT be multicast, broadcast or host
/// loopback (RFC 6890). This also refuses the unspecified address and IPv4
/// 0.0.0.0/8 ("this network", source-only per RFC 6890), which cannot be
/// connected to either.
#[must_use]
pub fn is_forbidden_destination(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            a.is_multicast() || a.is_broadcast() || a.is_loopback() || a.octets()[0] == 0
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_forbidden_destination(IpAddr::V4(v4)),
            None => a.is_multicast() || a.is_loopback() || a.is_unspecified(),
        },
    }
}

/// A zero-padded list of one-byte values — TCP option kinds (Supported TCP
/// Extensions, Unsupported TCP Option) or versions (Unsupported Version). Kind 0
/// and version 0 cannot be listed, so the first zero byte starts the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteList<'a>(&'a [u8]);

impl<'a> ByteList<'a> {
    /// Wraps raw list bytes (trailing zero padding allowed).
    #[must_use]
    pub const fn new(raw: &'a [u8]) -> Self {
        ByteList(raw)
    }

    /// The raw bytes, padding included.
    #[must_use]
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The listed values (up to the first zero byte).
    #[must_use]
    pub fn values(&self) -> &'a [u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        &self.0[..end]
    }

    /// Iterates the listed values.
    pub fn iter(&self) -> core::iter::Copied<core::slice::Iter<'a, u8>> {
        self.values().iter().copied()
    }

    /// True if `v` is listed.
    #[must_use]
    pub fn contains(&self, v: u8) -> bool {
        v != 0 && self.values().contains(&v)
    }
}

impl<'a> IntoIterator for ByteList<'a> {
    type Item = u8;
    type IntoIter = core::iter::Copied<core::slice::Iter<'a, u8>>;

    fn into_iter(self) -> Self::IntoIter {
        self.values().iter().copied()
    }
}

/// The typed value of an Error TLV (RFC 8803 §6.2.8), one variant per code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorValue<'a> {
    /// 0: the versions the sender supports, one byte each, zero-padded.
    UnsupportedVersion {
        /// Supported versions.
        versions: ByteList<'a>,
    },
    /// 1: byte 3 is zero (32-bit alignment), then the echo of the offending message
    /// (possibly truncated to fit 1020 bytes).
    MalformedMessage {
        /// Echoed message bytes.
        echo: &'a [u8],
    },
    /// 2: byte 3 is zero, then the echo of the message with the unsupported TLV.
    UnsupportedMessage {
        /// Echoed message bytes.
        echo: &'a [u8],
    },
    /// 3: byte 3 is zero, then the cookie the converter computed (zero-padded).
    MissingCookie {
        /// Cookie bytes (padding included when parsed).
        cookie: &'a [u8],
    },
    /// 32: value 0.
    NotAuthorized,
    /// 33: the offending option kinds, one byte each, zero-padded.
    UnsupportedTcpOption {
        /// Offending kinds.
        kinds: ByteList<'a>,
    },
    /// 64: suggested retry delay in seconds (0 = client default, ≥ 30 s).
    ResourceExceeded {
        /// Retry delay, seconds.
        retry_delay: u8,
    },
    /// 65: same delay semantics as 64.
    NetworkFailure {
        /// Retry delay, seconds.
        retry_delay: u8,
    },
    /// 96: value 0 (the server reset the downstream SYN).
    ConnectionReset,
    /// 97: the ICMP code of the hard ICMP error received downstream.
    DestinationUnreachable {
        /// ICMP / ICMPv6 code.
        icmp_code: u8,
    },
    /// Any other code, with its raw value (from byte 3).
    Other {
        /// The code byte.
        code: u8,
        /// Raw value bytes.
        value: &'a [u8],
    },
}

impl ErrorValue<'_> {
    /// The code this value belongs to.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            ErrorValue::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            ErrorValue::MalformedMessage { .. } => ErrorCode::MalformedMessage,
            ErrorValue::UnsupportedMessage { .. } => ErrorCode::UnsupportedMessage,
            ErrorValue::MissingCookie { .. } => ErrorCode::MissingCookie,
            ErrorValue::NotAuthorized => ErrorCode::NotAuthorized,
            ErrorValue::UnsupportedTcpOption { .. } => ErrorCode::UnsupportedTcpOption,
            ErrorValue::ResourceExceeded { .. } => ErrorCode::ResourceExceeded,
            ErrorValue::NetworkFailure { .. } => ErrorCode::NetworkFailure,
            ErrorValue::ConnectionReset => ErrorCode::ConnectionReset,
            ErrorValue::DestinationUnreachable { .. } => ErrorCode::DestinationUnreachable,
            ErrorValue::Other { code, .. } => ErrorCode::from_u8(*code),
        }
    }
}

/// Error TLV (type 30, RFC 8803 §6.2.8): code at byte 2, value from byte 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorTlv<'a> {
    code: u8,
    /// Bytes from byte 3 to the end of the TLV (padding included).
    value: &'a [u8],
}

impl<'a> ErrorTlv<'a> {
    /// An Error TLV with a raw code and value (value starts at byte 3). Fails with
    /// `BadTlvLength` if it would exceed the largest TLV (1016 bytes).
    pub fn new(code: u8, value: &'a [u8]) -> CResult<Self> {
        let len = pad4(field::ERROR_VALUE + value.len());
        if len > MAX_TLV_LEN {
            return Err(ConvertError::BadTlvLength {
                ty: tlv_type::ERROR,
                len: u8::MAX,
            });
        }
        Ok(ErrorTlv { code, value })
    }

    /// The error code.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::from_u8(self.code)
    }

    /// The raw value from byte 3 to the end of the TLV (padding included).
    #[must_use]
    pub const fn raw_value(&self) -> &'a [u8] {
        self.value
    }

    /// Bytes after byte 3: the value of the codes that keep 32-bit alignment with a
    /// zero byte 3 (1, 2, 3).
    fn after_zero_byte(&self) -> &'a [u8] {
        self.value.get(1..).unwrap_or(&[])
    }

    /// The first value byte (0 if the value is empty).
    fn first(&self) -> u8 {
        self.value.first().copied().unwrap_or(0)
    }

    /// Typed interpretation of the value according to the code.
    #[must_use]
    pub fn value(&self) -> ErrorValue<'a> {
        match self.code() {
            ErrorCode::UnsupportedVersion => ErrorValue::UnsupportedVersion {
                versions: ByteList(self.value),
            },
            ErrorCode::MalformedMessage => ErrorValue::MalformedMessage {
                echo: self.after_zero_byte(),
            },
            ErrorCode::UnsupportedMessage => ErrorValue::UnsupportedMessage {
                echo: self.after_zero_byte(),
            },
            ErrorCode::MissingCookie => ErrorValue::MissingCookie {
                cookie: self.after_zero_byte(),
            },
            ErrorCode::NotAuthorized => ErrorValue::NotAuthorized,
            ErrorCode::UnsupportedTcpOption => ErrorValue::UnsupportedTcpOption {
                kinds: ByteList(self.value),
            },
            ErrorCode::ResourceExceeded => ErrorValue::ResourceExceeded {
                retry_delay: self.first(),
            },
            ErrorCode::NetworkFailure => ErrorValue::NetworkFailure {
                retry_delay: self.first(),
            },
            ErrorCode::ConnectionReset => ErrorValue::ConnectionReset,
            ErrorCode::DestinationUnreachable => ErrorValue::DestinationUnreachable {
                icmp_code: self.first(),
            },
            ErrorCode::Other(code) => ErrorValue::Other {
                code,
                value: self.value,
            },
        }
    }

    /// Code 0: the supported versions.
    #[must_use]
    pub fn supported_versions(&self) -> Option<ByteList<'a>> {
        match self.value() {
            ErrorValue::UnsupportedVersion { versions } => Some(versions),
            _ => None,
        }
    }

    /// Codes 1 and 2: the echoed message.
    #[must_use]
    pub fn echo(&self) -> Option<&'a [u8]> {
        match self.value() {
            ErrorValue::MalformedMessage { echo } | ErrorValue::UnsupportedMessage { echo } => {
                Some(echo)
            }
            _ => None,
        }
    }

    /// Code 3: the cookie computed by the converter (zero padding included).
    #[must_use]
    pub fn cookie(&self) -> Option<&'a [u8]> {
        match self.value() {
            ErrorValue::MissingCookie { cookie } => Some(cookie),
            _ => None,
        }
    }

    /// Code 33: the offending option kinds.
    #[must_use]
    pub fn unsupported_kinds(&self) -> Option<ByteList<'a>> {
        match self.value() {
            ErrorValue::UnsupportedTcpOption { kinds } => Some(kinds),
            _ => None,
        }
    }

    /// Codes 64 and 65: the retry delay in seconds (0 = client default ≥ 30 s).
    #[must_use]
    pub fn retry_delay(&self) -> Option<u8> {
        match self.value() {
            ErrorValue::ResourceExceeded { retry_delay }
            | ErrorValue::NetworkFailure { retry_delay } => Some(retry_delay),
            _ => None,
        }
    }

    /// Code 97: the ICMP code.
    #[must_use]
    pub fn icmp_code(&self) -> Option<u8> {
        match self.value() {
            ErrorValue::DestinationUnreachable { icmp_code } => Some(icmp_code),
            _ => None,
        }
    }

    /// Bytes the TLV takes on the wire.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        pad4(field::ERROR_VALUE + self.value.len())
    }
}

/// One parsed Convert TLV (RFC 8803 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tlv<'a> {
    /// Info (type 1, Length 1, RFC 8803 §6.2.3).
    Info,
    /// Connect (type 10, RFC 8803 §6.2.5).
    Connect(Connect<'a>),
    /// Extended TCP Header (type 20, RFC 8803 §6.2.6): copy of the TCP options of
    /// the server's SYN+ACK, as raw TCP option bytes (NOP/EOL in their TCP form)
    /// followed by zero padding. Parse them with the TCP option parser.
    ExtendedTcpHeader {
        /// Raw bytes after the unassigned 16 bits, padding included.
        options: &'a [u8],
    },
    /// Supported TCP Extensions (type 21, RFC 8803 §6.2.4): option kinds.
    SupportedTcpExtensions(ByteList<'a>),
    /// Cookie (type 22, RFC 8803 §6.2.7): opaque bytes after the unassigned 16 bits,
    /// zero padding included (make cookies self-delimiting).
    Cookie(&'a [u8]),
    /// Error (type 30, RFC 8803 §6.2.8).
    Error(ErrorTlv<'a>),
    /// Any other non-zero type, with the bytes after Type and Length.
    Unknown {
        /// TLV type.
        ty: u8,
        /// Raw bytes after Type and Length (padding included).
        value: &'a [u8],
    },
}

impl<'a> Tlv<'a> {
    /// Parses the TLV at the start of `buf` (trailing bytes beyond its Length are
    /// ignored).
    ///
    /// Errors: `Truncated` (< 2 bytes), `TlvLengthZero`, `TlvOverrun` (Length × 4 >
    /// `buf.len()`), `ReservedTlvType0`, and the per-type checks: `BadTlvLength`
    /// (Info ≠ 1 word, Connect < 5 words), `BadTcpOption` (Connect option list).
    pub fn parse(buf: &'a [u8]) -> CResult<Self> {
        let (Some(&ty), Some(&len)) = (buf.get(field::TYPE), buf.get(field::LEN)) else {
            return Err(ConvertError::Truncated { needed: 2 });
        };
        if len == 0 {
            return Err(ConvertError::TlvLengthZero { ty });
        }
        let Some(raw) = buf.get(..usize::from(len) * 4) else {
            return Err(ConvertError::TlvOverrun { ty, len });
        };
        if ty == tlv_type::RESERVED {
            return Err(ConvertError::ReservedTlvType0);
        }
        Self::parse_exact(raw)
    }

    /// Per-type checks on a TLV whose framing is known good: `raw` is exactly
    /// Length × 4 bytes, Length ≥ 1, type ≠ 0.
    ///
    /// Errors: `BadTlvLength` (Info ≠ 1 word, Connect < 5 words), `BadTcpOption`
    /// (Connect option list).
    fn parse_exact(raw: &'a [u8]) -> CResult<Self> {
        debug_assert!(raw.len() >= 4 && raw.len().is_multiple_of(4));
        let ty = raw[field::TYPE];
        let len = raw[field::LEN];
        let after_reserved = raw.get(field::AFTER_RESERVED..).unwrap_or(&[]);
        match ty {
            tlv_type::INFO => {
                // RFC 8803 §6.2.3: Info has Length 1.
                if len != 1 {
                    return Err(ConvertError::BadTlvLength { ty, len });
                }
                Ok(Tlv::Info)
            }
            tlv_type::CONNECT => {
                // RFC 8803 §6.2.5: base length 5 words, extended > 5.
                if len < CONNECT_BASE_WORDS {
                    return Err(ConvertError::BadTlvLength { ty, len });
                }
                let port = u16_at(raw, field::CONNECT_PORT);
                let mut a = [0u8; 16];
                a.copy_from_slice(&raw[field::CONNECT_ADDR]);
                let options = &raw[field::CONNECT_OPTIONS..];
                check_connect_options(options)?;
                Ok(Tlv::Connect(Connect {
                    port,
                    addr: Ipv6Addr::from(a),
                    options,
                }))
            }
            tlv_type::EXTENDED_TCP_HEADER => Ok(Tlv::ExtendedTcpHeader {
                options: after_reserved,
            }),
            tlv_type::SUPPORTED_TCP_EXTENSIONS => {
                Ok(Tlv::SupportedTcpExtensions(ByteList(after_reserved)))
            }
            tlv_type::COOKIE => Ok(Tlv::Cookie(after_reserved)),
            tlv_type::ERROR => Ok(Tlv::Error(ErrorTlv {
                code: raw[field::ERROR_CODE],
                value: &raw[field::ERROR_VALUE..],
            })),
            _ => Ok(Tlv::Unknown {
                ty,
                value: &raw[2..],
            }),
        }
    }

    /// The TLV type byte.
    #[must_use]
    pub const fn ty(&self) -> u8 {
        match self {
            Tlv::Info => tlv_type::INFO,
            Tlv::Connect(_) => tlv_type::CONNECT,
            Tlv::ExtendedTcpHeader { .. } => tlv_type::EXTENDED_TCP_HEADER,
            Tlv::SupportedTcpExtensions(_) => tlv_type::SUPPORTED_TCP_EXTENSIONS,
            Tlv::Cookie(_) => tlv_type::COOKIE,
            Tlv::Error(_) => tlv_type::ERROR,
            Tlv::Unknown { ty, .. } => *ty,
        }
    }

    /// Bytes the TLV takes on the wire (a multiple of 4). For a parsed TLV this is
    /// exactly its Length × 4.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        match self {
            Tlv::Info => 4,
            Tlv::Connect(c) => c.buffer_len(),
            Tlv::ExtendedTcpHeader { options: v } | Tlv::SupportedTcpExtensions(ByteList(v)) => {
                pad4(field::AFTER_RESERVED + v.len())
            }
            Tlv::Cookie(v) => pad4(field::AFTER_RESERVED + v.len()),
            Tlv::Error(e) => e.buffer_len(),
            Tlv::Unknown { value, .. } => pad4(2 + value.len()),
        }
    }

    /// Writes the TLV (zero padding, unassigned fields zero) at the start of `buf`
    /// and returns its length.
    ///
    /// `Error::BadLength` if it exceeds the largest TLV (1016 bytes) or is an
    /// `Unknown` with type 0; `Error::NoSpace` if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        if n > MAX_TLV_LEN || self.ty() == tlv_type::RESERVED {
            return Err(Error::BadLength);
        }
        let Some(out) = buf.get_mut(..n) else {
            return Err(Error::NoSpace);
        };
        out.fill(0);
        out[field::TYPE] = self.ty();
        // n ≤ 1016, so n / 4 ≤ 254 fits the Length byte.
        out[field::LEN] = (n / 4) as u8;
        match self {
            Tlv::Info => {}
            Tlv::Connect(c) => {
                set_u16(out, field::CONNECT_PORT, c.port);
                out[field::CONNECT_ADDR].copy_from_slice(&c.addr.octets());
                let end = field::CONNECT_OPTIONS + c.options.len();
                out[field::CONNECT_OPTIONS..end].copy_from_slice(c.options);
            }
            Tlv::ExtendedTcpHeader { options: v }
            | Tlv::SupportedTcpExtensions(ByteList(v))
            | Tlv::Cookie(v) => {
                let end = field::AFTER_RESERVED + v.len();
                out[field::AFTER_RESERVED..end].copy_from_slice(v);
            }
            Tlv::Error(e) => {
                out[field::ERROR_CODE] = e.code;
                let end = field::ERROR_VALUE + e.value.len();
                out[field::ERROR_VALUE..end].copy_from_slice(e.value);
            }
            Tlv::Unknown { value, .. } => out[2..2 + value.len()].copy_from_slice(value),
        }
        Ok(n)
    }
}

/// Framing-checked iterator over the TLV area of a Convert message (the bytes
/// after the fixed header, up to Total Length).
///
/// Yields `Ok(Tlv)` or `Err(ConvertError)`:
/// * `TlvLengthZero` / `TlvOverrun` are fatal: iteration ends after them (the
///   framing of what follows is unknown) — RFC 8803 §9;
/// * `ReservedTlvType0`, `DuplicateTlv`, `BadTlvLength`, `BadTcpOption` concern one
///   well-framed TLV: iteration continues with the next one.
///
/// Duplicates are detected with a 256-bit [`TypeSet`] (RFC 8803 §6.2.1).
#[derive(Debug, Clone)]
pub struct TlvIter<'a> {
    rest: &'a [u8],
    consumed: usize,
    seen: TypeSet,
}

impl<'a> TlvIter<'a> {
    /// Iterates a TLV area (the message bytes after the 4-byte header).
    #[must_use]
    pub const fn new(area: &'a [u8]) -> Self {
        TlvIter {
            rest: area,
            consumed: 0,
            seen: TypeSet::new(),
        }
    }

    /// Bytes of the TLV area consumed so far: the offset (from the end of the fixed
    /// header) of the next TLV.
    #[must_use]
    pub const fn offset(&self) -> usize {
        self.consumed
    }

    /// Types seen so far.
    #[must_use]
    pub const fn seen(&self) -> TypeSet {
        self.seen
    }
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = CResult<Tlv<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&ty, tail) = self.rest.split_first()?;
        let Some(&len) = tail.first() else {
            // Only reachable for an area whose length is not a multiple of 4.
            self.rest = &[];
            return Some(Err(ConvertError::TlvOverrun { ty, len: 0 }));
        };
        // RFC 8803 §6.2: Length covers Type+Length+Value; 0 cannot frame anything.
        if len == 0 {
            self.rest = &[];
            return Some(Err(ConvertError::TlvLengthZero { ty }));
        }
        let n = usize::from(len) * 4;
        // RFC 8803 §9: every TLV must lie within Total Length.
        let Some(raw) = self.rest.get(..n) else {
            self.rest = &[];
            return Some(Err(ConvertError::TlvOverrun { ty, len }));
        };
        self.rest = &self.rest[n..];
        self.consumed += n;
        // RFC 8803 §6.2.1: type 0 is reserved.
        if ty == tlv_type::RESERVED {
            return Some(Err(ConvertError::ReservedTlvType0));
        }
        // RFC 8803 §6.2.1: a TLV type MUST appear at most once.
        if !self.seen.insert(ty) {
            return Some(Err(ConvertError::DuplicateTlv(ty)));
        }
        Some(Tlv::parse_exact(raw))
    }
}
