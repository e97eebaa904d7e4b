//! The Convert domain error and the RFC 8803 Error codes it maps to.

use core::fmt;

/// An RFC 8803 Error TLV code (RFC 8803 §6.2.8, IANA "Convert Errors").
///
/// Ranges: 0-31 message validation and processing, 32-63 client-side, 64-95
/// converter-side, 96-127 caused by the destination server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0 — the version in the fixed header is not supported; the value lists the
    /// supported versions.
    UnsupportedVersion,
    /// 1 — the message is malformed; the value echoes it.
    MalformedMessage,
    /// 2 — a TLV is not supported (unknown type, type 0); the value echoes the message.
    UnsupportedMessage,
    /// 3 — a required Cookie TLV is missing; the value carries a computed cookie.
    MissingCookie,
    /// 32 — administratively prohibited, authentication failure, invalid cookie.
    NotAuthorized,
    /// 33 — an option listed in an Extended Connect is not supported; the value
    /// lists the offending kinds.
    UnsupportedTcpOption,
    /// 64 — converter out of resources; the value is a retry delay in seconds.
    ResourceExceeded,
    /// 65 — network failure on the converter side; the value is a retry delay.
    NetworkFailure,
    /// 96 — the server answered the downstream SYN with RST.
    ConnectionReset,
    /// 97 — hard ICMP error downstream; the value is the ICMP code.
    DestinationUnreachable,
    /// Any other code (unassigned or private use). Holds only values that are not
    /// one of the codes above when built by [`ErrorCode::from_u8`].
    Other(u8),
}

impl ErrorCode {
    /// Decodes a code byte (RFC 8803 §6.2.8).
    #[must_use]
    pub const fn from_u8(v: u8) -> Self {
        match v {
            0 => ErrorCode::UnsupportedVersion,
            1 => ErrorCode::MalformedMessage,
            2 => ErrorCode::UnsupportedMessage,
            3 => ErrorCode::MissingCookie,
            32 => ErrorCode::NotAuthorized,
            33 => ErrorCode::UnsupportedTcpOption,
            64 => ErrorCode::ResourceExceeded,
            65 => ErrorCode::NetworkFailure,
            96 => ErrorCode::ConnectionReset,
            97 => ErrorCode::DestinationUnreachable,
            other => ErrorCode::Other(other),
        }
    }

    /// The code byte on the wire.
    #[must_use]
    pub const fn to_u8(self) -> u8 {
        match self {
            ErrorCode::UnsupportedVersion => 0,
            ErrorCode::MalformedMessage => 1,
            ErrorCode::UnsupportedMessage => 2,
            ErrorCode::MissingCookie => 3,
            ErrorCode::NotAuthorized => 32,
            ErrorCode::UnsupportedTcpOption => 33,
            ErrorCode::ResourceExceeded => 64,
            ErrorCode::NetworkFailure => 65,
            ErrorCode::ConnectionReset => 96,
            ErrorCode::DestinationUnreachable => 97,
            ErrorCode::Other(v) => v,
        }
    }

    /// The RFC name of the code ("unassigned" for [`ErrorCode::Other`]).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnsupportedVersion => "Unsupported Version",
            ErrorCode::MalformedMessage => "Malformed Message",
            ErrorCode::UnsupportedMessage => "Unsupported Message",
            ErrorCode::MissingCookie => "Missing Cookie",
            ErrorCode::NotAuthorized => "Not Authorized",
            ErrorCode::UnsupportedTcpOption => "Unsupported TCP Option",
            ErrorCode::ResourceExceeded => "Resource Exceeded",
            ErrorCode::NetworkFailure => "Network Failure",
            ErrorCode::ConnectionReset => "Connection Reset",
            ErrorCode::DestinationUnreachable => "Destination Unreachable",
            ErrorCode::Other(_) => "unassigned",
        }
    }
}

impl From<u8> for ErrorCode {
    fn from(v: u8) -> Self {
        ErrorCode::from_u8(v)
    }
}

impl From<ErrorCode> for u8 {
    fn from(c: ErrorCode) -> u8 {
        c.to_u8()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.to_u8())
    }
}

/// Why a Convert message was refused. `Copy`, allocation-free.
///
/// [`ConvertError::error_code`] is the single place that decides what a Transport
/// Converter answers for each fault:
///
/// | variant | answer | RFC 8803 |
/// |---|---|---|
/// | [`TotalLengthZero`](Self::TotalLengthZero) | reset, no Error TLV | §6.1 "MUST reset" |
/// | [`BadVersion`](Self::BadVersion) | 0 Unsupported Version | §6.1, §6.2.8 |
/// | [`Truncated`](Self::Truncated), [`BadMagic`](Self::BadMagic) | 1 Malformed | §6.1, §9 |
/// | [`TlvLengthZero`](Self::TlvLengthZero), [`TlvOverrun`](Self::TlvOverrun), [`BadTlvLength`](Self::BadTlvLength) | 1 Malformed | §6.2, §9 framing |
/// | [`DuplicateTlv`](Self::DuplicateTlv) | 1 Malformed | §6.2.1 |
/// | [`BadTcpOption`](Self::BadTcpOption) | 1 Malformed | §6.2.5 option list |
/// | [`ForbiddenDestination`](Self::ForbiddenDestination) | 1 Malformed | §6.2.5 |
/// | [`ReservedTlvType0`](Self::ReservedTlvType0), [`UnknownTlv`](Self::UnknownTlv), [`UnexpectedTlv`](Self::UnexpectedTlv) | 2 Unsupported Message | §6.2.1, §6.2.8 |
/// | [`UnsupportedTcpOption`](Self::UnsupportedTcpOption) | 33 Unsupported TCP Option | §6.2.5 |
///
/// Decisions beyond the RFC text: a buffer shorter than Total Length is only
/// "Malformed" once the caller knows no more bytes will come
/// ([`ConvertError::is_incomplete`]); a wrong magic is answered as Malformed (a
/// caller may prefer to ignore the SYN as "no Convert TLVs", §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvertError {
    /// The buffer ends before the fixed header (`needed` = 4) or before Total
    /// Length × 4 bytes (`needed` = the message length). A caller reading a stream
    /// may wait for `needed` bytes.
    Truncated {
        /// Bytes the buffer must hold for the parse to proceed.
        needed: usize,
    },
    /// Total Length is 0 (RFC 8803 §6.1: invalid, the connection MUST be reset).
    TotalLengthZero,
    /// Version is not 1 (0 is reserved, others unknown) — RFC 8803 §6.1.
    BadVersion(u8),
    /// Magic Number is not 0x2263 (carries the value found) — RFC 8803 §6.1.
    BadMagic(u16),
    /// A TLV Length of 0 words (RFC 8803 §6.2: Length covers Type+Length+Value).
    TlvLengthZero {
        /// Type of the offending TLV.
        ty: u8,
    },
    /// A TLV extends past Total Length (RFC 8803 §9: TLVs MUST be framed within it).
    TlvOverrun {
        /// Type of the offending TLV.
        ty: u8,
        /// Its Length field (32-bit words).
        len: u8,
    },
    /// A TLV Length the type does not allow (Info ≠ 1 word, Connect < 5 words).
    BadTlvLength {
        /// Type of the offending TLV.
        ty: u8,
        /// Its Length field (32-bit words).
        len: u8,
    },
    /// A TLV type seen twice in one message (RFC 8803 §6.2.1).
    DuplicateTlv(u8),
    /// The Connect TLV's option list is malformed: an option length below 2,
    /// an option overrunning the TLV, or non-zero bytes after the zero padding
    /// (RFC 8803 §6.2.5).
    BadTcpOption,
    /// The Connect destination is multicast, broadcast, loopback or unspecified
    /// (RFC 8803 §6.2.5 → Malformed Message).
    ForbiddenDestination,
    /// TLV type 0 (reserved, RFC 8803 §6.2.1 → Unsupported Message).
    ReservedTlvType0,
    /// A TLV type this implementation does not know (carries the type).
    UnknownTlv(u8),
    /// A known TLV type the peer must not send in this direction, e.g. an Error or
    /// Supported TCP Extensions TLV inside a client request (carries the type).
    UnexpectedTlv(u8),
    /// An Extended Connect lists an option the converter does not support
    /// (carries the first offending kind) — RFC 8803 §6.2.5, §7.7.
    UnsupportedTcpOption(u8),
}

impl ConvertError {
    /// The RFC 8803 Error code the Transport Converter must answer with, or `None`
    /// when the connection must be reset without an Error TLV (Total Length 0,
    /// RFC 8803 §6.1). See the table on [`ConvertError`].
    #[must_use]
    pub const fn error_code(&self) -> Option<ErrorCode> {
        match self {
            ConvertError::TotalLengthZero => None,
            ConvertError::BadVersion(_) => Some(ErrorCode::UnsupportedVersion),
            ConvertError::Truncated { .. }
            | ConvertError::BadMagic(_)
            | ConvertError::TlvLengthZero { .. }
            | ConvertError::TlvOverrun { .. }
            | ConvertError::BadTlvLength { .. }
            | ConvertError::DuplicateTlv(_)
            | ConvertError::BadTcpOption
            | ConvertError::ForbiddenDestination => Some(ErrorCode::MalformedMessage),
            ConvertError::ReservedTlvType0
            | ConvertError::UnknownTlv(_)
            | ConvertError::UnexpectedTlv(_) => Some(ErrorCode::UnsupportedMessage),
            ConvertError::UnsupportedTcpOption(_) => Some(ErrorCode::UnsupportedTcpOption),
        }
    }

    /// True when more bytes of the stream could make the message parse
    /// ([`ConvertError::Truncated`]).
    #[must_use]
    pub const fn is_incomplete(&self) -> bool {
        matches!(self, ConvertError::Truncated { .. })
    }

    /// True for faults that stop TLV iteration (the framing of later TLVs is
    /// unknown): Total Length / TLV length faults and truncation.
    #[must_use]
    pub const fn is_framing(&self) -> bool {
        matches!(
            self,
            ConvertError::Truncated { .. }
                | ConvertError::TotalLengthZero
                | ConvertError::BadVersion(_)
                | ConvertError::BadMagic(_)
                | ConvertError::TlvLengthZero { .. }
                | ConvertError::TlvOverrun { .. }
        )
    }

    /// A short, stable name (counters, logs).
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            ConvertError::Truncated { .. } => "truncated",
            ConvertError::TotalLengthZero => "total length zero",
            ConvertError::BadVersion(_) => "bad version",
            ConvertError::BadMagic(_) => "bad magic",
            ConvertError::TlvLengthZero { .. } => "tlv length zero",
            ConvertError::TlvOverrun { .. } => "tlv overrun",
            ConvertError::BadTlvLength { .. } => "bad tlv length",
            ConvertError::DuplicateTlv(_) => "duplicate tlv",
            ConvertError::BadTcpOption => "bad tcp option in connect",
            ConvertError::ForbiddenDestination => "forbidden destination",
            ConvertError::ReservedTlvType0 => "reserved tlv type 0",
            ConvertError::UnknownTlv(_) => "unknown tlv",
            ConvertError::UnexpectedTlv(_) => "unexpected tlv",
            ConvertError::UnsupportedTcpOption(_) => "unsupported tcp option",
        }
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Truncated { needed } => write!(f, "truncated (need {needed} bytes)"),
            ConvertError::BadVersion(v) => write!(f, "bad version {v}"),
            ConvertError::BadMagic(m) => write!(f, "bad magic {m:#06x}"),
            ConvertError::TlvLengthZero { ty } => write!(f, "tlv type {ty}: length zero"),
            ConvertError::TlvOverrun { ty, len } => {
                write!(f, "tlv type {ty}: length {len} overruns the message")
            }
            ConvertError::BadTlvLength { ty, len } => write!(f, "tlv type {ty}: bad length {len}"),
            ConvertError::DuplicateTlv(t) => write!(f, "duplicate tlv type {t}"),
            ConvertError::UnknownTlv(t) => write!(f, "unknown tlv type {t}"),
            ConvertError::UnexpectedTlv(t) => write!(f, "unexpected tlv type {t}"),
            ConvertError::UnsupportedTcpOption(k) => write!(f, "unsupported tcp option {k}"),
            e => f.write_str(e.as_str()),
        }
    }
}

impl core::error::Error for ConvertError {}

impl From<ConvertError> for crate::Error {
    /// Collapses the domain error into the crate-wide one (for callers that only
    /// count drop reasons).
    fn from(e: ConvertError) -> Self {
        match e {
            ConvertError::Truncated { .. } => crate::Error::Truncated,
            ConvertError::TotalLengthZero => crate::Error::BadHeaderLength,
            ConvertError::BadVersion(_) => crate::Error::BadVersion,
            ConvertError::BadMagic(_) => crate::Error::BadMagic,
            ConvertError::TlvLengthZero { .. }
            | ConvertError::TlvOverrun { .. }
            | ConvertError::BadTlvLength { .. }
            | ConvertError::BadTcpOption => crate::Error::BadLength,
            ConvertError::DuplicateTlv(_) | ConvertError::ForbiddenDestination => {
                crate::Error::Malformed
            }
            ConvertError::ReservedTlvType0
            | ConvertError::UnknownTlv(_)
            | ConvertError::UnexpectedTlv(_)
            | ConvertError::UnsupportedTcpOption(_) => crate::Error::Unsupported,
        }
    }
}
