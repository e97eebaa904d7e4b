//! RFC 8803 — 0-RTT TCP Convert Protocol ("Convert"), §6 message format.
//!
//! A Convert message is the first bytes of the bytestream in each direction
//! (RFC 8803 §6): a 4-byte fixed header ([`Header`], §6.1) followed by TLVs
//! ([`Tlv`], §6.2). A client puts its request (Connect, optionally Info and Cookie)
//! in the SYN payload, followed by any application data; the Transport Converter
//! answers with at least a bare header (`01 01 22 63`), possibly followed by
//! Extended TCP Header, Supported TCP Extensions or Error TLVs.
//!
//! What this module offers:
//!
//! * [`Header`] — zero-copy view of the fixed header, [`HeaderRepr`] and
//!   [`parse_header`] / [`emit_header`];
//! * [`Message`] — a header-validated message with its TLV area, and [`TlvIter`], a
//!   framing-checked iterator yielding typed [`Tlv`]s (duplicates reported with a
//!   256-bit seen-set, no allocation);
//! * [`ConnectRequest::parse`] — everything a converter needs from a SYN payload,
//!   plus the offset where the application data starts;
//! * [`MessageBuilder`] — appends TLVs into a caller buffer, zero-pads them and
//!   finalizes the Total Length (max 255 words = 1020 bytes);
//! * [`ConvertError`] — the domain error, mapped in one place
//!   ([`ConvertError::error_code`]) to the [`ErrorCode`] the converter answers with.
//!
//! Nothing here allocates and nothing panics on untrusted input.

mod error;
mod header;
mod message;
mod tlv;

#[cfg(test)]
mod tests;

pub use error::{ConvertError, ErrorCode};
pub use header::{Header, HeaderRepr, emit_header, parse_header};
pub use message::{ConnectRequest, Message, MessageBuilder};
pub use tlv::{
    ByteList, Connect, ConnectOptions, ErrorTlv, ErrorValue, TcpOpt, Tlv, TlvIter, TypeSet,
    is_forbidden_destination,
};

/// The only Convert version defined (RFC 8803 §6.1); version 0 is reserved.
pub const VERSION: u8 = 1;
/// Magic Number of the fixed header, 0x2263 = 8803 (RFC 8803 §6.1).
pub const MAGIC: u16 = 0x2263;
/// Length of the fixed header in bytes (RFC 8803 §6.1).
pub const HEADER_LEN: usize = 4;
/// Largest Convert message: Total Length is a u8 count of 32-bit words
/// (RFC 8803 §6.1), so 255 * 4 = 1020 bytes.
pub const MAX_MESSAGE_LEN: usize = 255 * 4;

/// TLV type numbers (RFC 8803 §6.2.1, IANA "Convert TLVs").
pub mod tlv_type {
    /// Reserved; a converter answers Unsupported Message (RFC 8803 §6.2.1).
    pub const RESERVED: u8 = 0;
    /// Info TLV (RFC 8803 §6.2.3).
    pub const INFO: u8 = 1;
    /// Connect TLV (RFC 8803 §6.2.5).
    pub const CONNECT: u8 = 10;
    /// Extended TCP Header TLV (RFC 8803 §6.2.6).
    pub const EXTENDED_TCP_HEADER: u8 = 20;
    /// Supported TCP Extensions TLV (RFC 8803 §6.2.4).
    pub const SUPPORTED_TCP_EXTENSIONS: u8 = 21;
    /// Cookie TLV (RFC 8803 §6.2.7).
    pub const COOKIE: u8 = 22;
    /// Error TLV (RFC 8803 §6.2.8).
    pub const ERROR: u8 = 30;
}

/// Rounds `n` up to the next multiple of 4 (TLVs are 32-bit aligned, RFC 8803 §6.2).
#[must_use]
pub(crate) const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}
