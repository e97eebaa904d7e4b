//! The one error type of the wire layer. Small, `Copy`, allocation-free: a parser
//! on the packet path returns it by value and the caller maps it to a drop reason.

use core::fmt;

/// Why a buffer could not be viewed, parsed or emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before the header, option or field does.
    Truncated,
    /// A header-length field (IPv4 IHL, TCP data offset, IPv6 payload length,
    /// IPv4 total length) is below its minimum or points past the buffer.
    BadHeaderLength,
    /// An option / TLV length field is impossible: 0 or 1 for a TCP option,
    /// overrunning its container, or not the length its flags/kind demand.
    BadLength,
    /// A version field holds a value this crate does not speak.
    BadVersion,
    /// A fixed magic value is wrong (RFC 8803 §6.1 magic 0x2263).
    BadMagic,
    /// Flags that the specification forbids or that contradict each other.
    BadFlags,
    /// An MPTCP option subtype that RFC 8684 does not define (carries the subtype).
    UnknownSubtype(u8),
    /// A type / kind / code not supported where the caller asked for a specific one.
    Unsupported,
    /// A checksum does not verify.
    BadChecksum,
    /// A value that is syntactically well-framed but semantically invalid
    /// (e.g. reserved value used).
    Malformed,
    /// The destination buffer (or the TCP option space, 40 bytes) is too small.
    NoSpace,
}

impl Error {
    /// A short, stable, human-readable name (used in counters and logs).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::BadHeaderLength => "bad header length",
            Error::BadLength => "bad length",
            Error::BadVersion => "bad version",
            Error::BadMagic => "bad magic",
            Error::BadFlags => "bad flags",
            Error::UnknownSubtype(_) => "unknown subtype",
            Error::Unsupported => "unsupported",
            Error::BadChecksum => "bad checksum",
            Error::Malformed => "malformed",
            Error::NoSpace => "no space",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownSubtype(s) => write!(f, "unknown MPTCP subtype {s:#x}"),
            e => f.write_str(e.as_str()),
        }
    }
}

impl core::error::Error for Error {}
