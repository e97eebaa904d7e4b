//! Whole Convert messages: parsing ([`Message`], [`ConnectRequest`]) and building
//! ([`MessageBuilder`]).

use core::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::error::{ConvertError, ErrorCode};
use super::header::{HeaderRepr, emit_header, parse_header};
use super::tlv::{ByteList, Connect, ErrorTlv, ErrorValue, TcpOpt, Tlv, TlvIter, TypeSet};
use super::{HEADER_LEN, MAX_MESSAGE_LEN, pad4, tlv_type};
use crate::bytes::set_u16;
use crate::{Error, Result};

type CResult<T> = core::result::Result<T, ConvertError>;

/// A Convert message whose fixed header is valid (RFC 8803 §6.1) and whose
/// Total Length fits the buffer. TLVs are checked lazily by [`Message::tlvs`] or
/// all at once by [`Message::check_tlvs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    header: HeaderRepr,
    /// The TLV area: bytes 4 .. Total Length × 4.
    tlvs: &'a [u8],
}

impl<'a> Message<'a> {
    /// Validates the fixed header at the start of `buf` (see [`parse_header`]).
    /// Bytes after Total Length × 4 are application data and are not looked at.
    pub fn parse(buf: &'a [u8]) -> CResult<Self> {
        let header = parse_header(buf)?;
        let tlvs = &buf[HEADER_LEN..header.message_len()];
        Ok(Message { header, tlvs })
    }

    /// The validated header.
    #[must_use]
    pub const fn header(&self) -> HeaderRepr {
        self.header
    }

    /// Length of the Convert message (Total Length × 4): the offset of the
    /// application data that follows it in the bytestream.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.header.message_len()
    }

    /// True when the message is a bare header (no TLVs).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.tlvs.is_empty()
    }

    /// The raw TLV area.
    #[must_use]
    pub const fn tlv_bytes(&self) -> &'a [u8] {
        self.tlvs
    }

    /// Iterates the TLVs (framing-checked; see [`TlvIter`]).
    #[must_use]
    pub const fn tlvs(&self) -> TlvIter<'a> {
        TlvIter::new(self.tlvs)
    }

    /// Walks every TLV; returns the first error (framing or per-TLV) if any.
    pub fn check_tlvs(&self) -> CResult<()> {
        for t in self.tlvs() {
            t?;
        }
        Ok(())
    }
}

/// What a Transport Converter needs from a client's SYN payload (RFC 8803 §6):
/// the TLVs a client may send — Connect, Info, Cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRequest<'a> {
    /// The Connect TLV, if present (absent e.g. in an Info-only request).
    pub connect: Option<Connect<'a>>,
    /// True if an Info TLV is present (answer with Supported TCP Extensions,
    /// RFC 8803 §6.2.2).
    pub info: bool,
    /// The Cookie TLV's opaque bytes (zero padding included), if present.
    pub cookie: Option<&'a [u8]>,
}

impl<'a> ConnectRequest<'a> {
    /// Parses the Convert request at the start of a SYN payload and returns it with
    /// the offset where the application data starts (Total Length × 4).
    ///
    /// Checks, in this order of precedence for the returned error:
    /// 1. the fixed header ([`parse_header`]: magic, version, Total Length ≠ 0,
    ///    buffer long enough);
    /// 2. framing and per-TLV validity of every TLV (length zero, overrun,
    ///    duplicates, Info/Connect lengths, Connect option list) → Malformed;
    /// 3. TLV types a client must not send: type 0, unknown types, and Extended TCP
    ///    Header / Supported TCP Extensions / Error → Unsupported Message;
    /// 4. the Connect destination (no multicast/broadcast/loopback, RFC 8803
    ///    §6.2.5) → Malformed.
    ///
    /// Malformed outranks Unsupported so that a message is only judged on its
    /// contents once all of it is known to be well framed (RFC 8803 §9).
    /// Whether a Connect is present, Extended Connect options and the cookie are
    /// left to the caller's policy ([`Connect::check_options`]).
    pub fn parse(payload: &'a [u8]) -> CResult<(Self, usize)> {
        let msg = Message::parse(payload)?;
        let mut req = ConnectRequest {
            connect: None,
            info: false,
            cookie: None,
        };
        let mut unsupported: Option<ConvertError> = None;
        for t in msg.tlvs() {
            match t {
                Ok(Tlv::Info) => req.info = true,
                Ok(Tlv::Connect(c)) => req.connect = Some(c),
                Ok(Tlv::Cookie(c)) => req.cookie = Some(c),
                // RFC 8803 §6.2: these flow converter → client only.
                Ok(
                    other @ (Tlv::ExtendedTcpHeader { .. }
                    | Tlv::SupportedTcpExtensions(_)
                    | Tlv::Error(_)),
                ) => {
                    unsupported.get_or_insert(ConvertError::UnexpectedTlv(other.ty()));
                }
                Ok(Tlv::Unknown { ty, .. }) => {
                    unsupported.get_or_insert(ConvertError::UnknownTlv(ty));
                }
                Err(e) if e.error_code() == Some(ErrorCode::UnsupportedMessage) => {
                    unsupported.get_or_insert(e);
                }
                // Malformed (framing or per-TLV): nothing later can change the answer.
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = unsupported {
            return Err(e);
        }
        if let Some(c) = req.connect
            && c.is_forbidden_destination()
        {
            return Err(ConvertError::ForbiddenDestination);
        }
        Ok((req, msg.len()))
    }
}

/// Appends TLVs to a caller buffer and finalizes the fixed header.
///
/// Every TLV is zero-padded to 4 bytes; unassigned fields are zero. The message
/// may not exceed 255 words (1020 bytes, RFC 8803 §6.1) nor the buffer: a TLV that
/// does not fit returns `Error::NoSpace` and leaves the builder unchanged — except
/// the echo of Malformed / Unsupported Message errors, which is truncated to fit
/// (RFC 8803 §6.2.8). A TLV type can be added once (RFC 8803 §6.2.1); a second one
/// returns `Error::Malformed`.
///
/// ```
/// # use hac_wire::convert::MessageBuilder;
/// let mut buf = [0u8; 64];
/// let mut b = MessageBuilder::new(&mut buf).unwrap();
/// b.connect("192.0.2.10:443".parse().unwrap()).unwrap();
/// let n = b.finish().unwrap();
/// assert_eq!(&buf[..4], &[0x01, 0x06, 0x22, 0x63]);
/// assert_eq!(n, 24);
/// ```
#[derive(Debug)]
pub struct MessageBuilder<'a> {
    buf: &'a mut [u8],
    len: usize,
    seen: TypeSet,
}

impl<'a> MessageBuilder<'a> {
    /// Starts a message in `buf` (`Error::NoSpace` if shorter than the 4-byte
    /// header).
    pub fn new(buf: &'a mut [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(Error::NoSpace);
        }
        Ok(MessageBuilder {
            buf,
            len: HEADER_LEN,
            seen: TypeSet::new(),
        })
    }

    /// Bytes written so far (header included).
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True while no TLV was added.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }

    /// Bytes still available for TLVs (bounded by the buffer and by 1020 bytes).
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.capacity() - self.len
    }

    fn capacity(&self) -> usize {
        self.buf.len().min(MAX_MESSAGE_LEN)
    }

    /// Checks the type is new and `n` bytes fit; returns the zeroed region with
    /// Type and Length written, and commits it.
    fn reserve(&mut self, ty: u8, n: usize) -> Result<&mut [u8]> {
        debug_assert!(n.is_multiple_of(4) && n >= 4);
        if ty == tlv_type::RESERVED || self.seen.contains(ty) {
            return Err(Error::Malformed);
        }
        if n > self.remaining() {
            return Err(Error::NoSpace);
        }
        let start = self.len;
        self.len += n;
        self.seen.insert(ty);
        let out = &mut self.buf[start..start + n];
        out.fill(0);
        out[0] = ty;
        // n ≤ remaining ≤ 1016, so n / 4 ≤ 254.
        out[1] = (n / 4) as u8;
        Ok(out)
    }

    /// Appends an already built [`Tlv`] (e.g. one returned by the parser); the bytes
    /// are those of [`Tlv::emit`].
    pub fn push(&mut self, tlv: &Tlv<'_>) -> Result<()> {
        let n = tlv.buffer_len();
        if n > MAX_MESSAGE_LEN - HEADER_LEN {
            return Err(Error::NoSpace);
        }
        let out = self.reserve(tlv.ty(), n)?;
        tlv.emit(out).map(|_| ())
    }

    /// Info TLV `01 01 00 00` (RFC 8803 §6.2.3).
    pub fn info(&mut self) -> Result<()> {
        self.push(&Tlv::Info)
    }

    /// Base Connect TLV to `remote` (IPv4 as `::ffff:a.b.c.d`, RFC 8803 §6.2.5).
    pub fn connect(&mut self, remote: SocketAddr) -> Result<()> {
        self.push(&Tlv::Connect(Connect::base(remote)))
    }

    /// Extended Connect TLV listing `options` (each `kind, 2 + len, value`;
    /// length-2 entries ask the converter to generate the value), zero-padded
    /// (RFC 8803 §6.2.5). Kind 0 or a value over 253 bytes → `Error::BadLength`.
    pub fn connect_with_options(
        &mut self,
        remote: SocketAddr,
        options: &[TcpOpt<'_>],
    ) -> Result<()> {
        let mut opt_len = 0usize;
        for o in options {
            if o.kind == 0 || o.wire_len() > usize::from(u8::MAX) {
                return Err(Error::BadLength);
            }
            opt_len += o.wire_len();
        }
        let n = 20 + pad4(opt_len);
        if n > MAX_MESSAGE_LEN - HEADER_LEN {
            return Err(Error::NoSpace);
        }
        let addr = match remote.ip() {
            IpAddr::V4(a) => a.to_ipv6_mapped(),
            IpAddr::V6(a) => a,
        };
        let out = self.reserve(tlv_type::CONNECT, n)?;
        set_u16(out, 2, remote.port());
        out[4..20].copy_from_slice(&addr.octets());
        let mut i = 20;
        for o in options {
            out[i] = o.kind;
            // Checked above: wire_len ≤ 255.
            out[i + 1] = o.wire_len() as u8;
            out[i + 2..i + o.wire_len()].copy_from_slice(o.value);
            i += o.wire_len();
        }
        Ok(())
    }

    /// Connect TLV with a raw port, address and pre-encoded option list (validated
    /// like a received one; `Error::BadLength` if malformed).
    pub fn connect_raw(&mut self, port: u16, addr: Ipv6Addr, options: &[u8]) -> Result<()> {
        let c = Connect::new(port, addr, options).map_err(|_| Error::BadLength)?;
        self.push(&Tlv::Connect(c))
    }

    /// Extended TCP Header TLV: 2 zero bytes, then a copy of the server SYN+ACK's
    /// TCP options, zero-padded (RFC 8803 §6.2.6).
    pub fn extended_tcp_header(&mut self, tcp_options: &[u8]) -> Result<()> {
        self.push(&Tlv::ExtendedTcpHeader {
            options: tcp_options,
        })
    }

    /// Supported TCP Extensions TLV: 2 zero bytes, then one kind per byte,
    /// zero-padded (RFC 8803 §6.2.4). A zero kind followed by a non-zero one →
    /// `Error::Malformed` (it would not parse back).
    pub fn supported_tcp_extensions(&mut self, kinds: &[u8]) -> Result<()> {
        check_list(kinds)?;
        self.push(&Tlv::SupportedTcpExtensions(ByteList::new(kinds)))
    }

    /// Cookie TLV: 2 zero bytes, then the opaque cookie, zero-padded
    /// (RFC 8803 §6.2.7).
    pub fn cookie(&mut self, cookie: &[u8]) -> Result<()> {
        self.push(&Tlv::Cookie(cookie))
    }

    /// A TLV of any non-zero type with a raw value (after Type and Length).
    pub fn raw(&mut self, ty: u8, value: &[u8]) -> Result<()> {
        self.push(&Tlv::Unknown { ty, value })
    }

    /// Error TLV with a raw code and value (value from byte 3); `Error::NoSpace` if
    /// it does not fit.
    pub fn error_raw(&mut self, code: u8, value: &[u8]) -> Result<()> {
        let e = ErrorTlv::new(code, value).map_err(|_| Error::NoSpace)?;
        self.push(&Tlv::Error(e))
    }

    /// Error TLV for a typed value (RFC 8803 §6.2.8). Returns the TLV length.
    ///
    /// Codes 1 and 2 write byte 3 = 0 then the echo, keeping 32-bit alignment; an
    /// echo that does not fit the remaining space (at most 1020 bytes in all) is
    /// truncated to a multiple of 4 bytes. Code 3 writes byte 3 = 0 then the
    /// cookie (never truncated). Lists (codes 0, 33) start at byte 3 (their
    /// [`ByteList::values`], i.e. up to the first zero byte). Codes 32
    /// and 96 carry a single zero byte; 64, 65 and 97 their one-byte value.
    pub fn error(&mut self, value: &ErrorValue<'_>) -> Result<usize> {
        let code = value.code().to_u8();
        match *value {
            ErrorValue::MalformedMessage { echo } | ErrorValue::UnsupportedMessage { echo } => {
                self.error_echo(code, echo)
            }
            ErrorValue::MissingCookie { cookie } => self.error_prefixed(code, cookie),
            ErrorValue::UnsupportedVersion { versions: l }
            | ErrorValue::UnsupportedTcpOption { kinds: l } => self.error_bytes(code, l.values()),
            ErrorValue::NotAuthorized | ErrorValue::ConnectionReset => self.error_bytes(code, &[0]),
            ErrorValue::ResourceExceeded { retry_delay: b }
            | ErrorValue::NetworkFailure { retry_delay: b }
            | ErrorValue::DestinationUnreachable { icmp_code: b } => self.error_bytes(code, &[b]),
            ErrorValue::Other { code, value } => self.error_bytes(code, value),
        }
    }

    fn error_bytes(&mut self, code: u8, value: &[u8]) -> Result<usize> {
        let n = pad4(3 + value.len());
        if n > MAX_MESSAGE_LEN - HEADER_LEN {
            return Err(Error::NoSpace);
        }
        let out = self.reserve(tlv_type::ERROR, n)?;
        out[2] = code;
        out[3..3 + value.len()].copy_from_slice(value);
        Ok(n)
    }

    /// Byte 3 = 0, then `data` from byte 4 (codes 1, 2, 3).
    fn error_prefixed(&mut self, code: u8, data: &[u8]) -> Result<usize> {
        let n = 4 + pad4(data.len());
        if n > MAX_MESSAGE_LEN - HEADER_LEN {
            return Err(Error::NoSpace);
        }
        let out = self.reserve(tlv_type::ERROR, n)?;
        out[2] = code;
        out[4..4 + data.len()].copy_from_slice(data);
        Ok(n)
    }

    /// Codes 1 and 2: echo truncated to what fits.
    fn error_echo(&mut self, code: u8, echo: &[u8]) -> Result<usize> {
        let room = self.remaining();
        if room < 4 {
            return Err(Error::NoSpace);
        }
        // RFC 8803 §6.2.8: the echo keeps 32-bit alignment; truncate it to fit the
        // maximum message size.
        let echo = if 4 + pad4(echo.len()) <= room {
            echo
        } else {
            &echo[..(room - 4) & !3]
        };
        self.error_prefixed(code, echo)
    }

    /// Writes the fixed header with the final Total Length and returns the message
    /// length in bytes.
    pub fn finish(self) -> Result<usize> {
        // len ≤ 1020 and a multiple of 4, so len / 4 ≤ 255.
        let words = u8::try_from(self.len / 4).map_err(|_| Error::NoSpace)?;
        emit_header(self.buf, words)?;
        Ok(self.len)
    }
}

/// A one-byte-per-entry list must not have a non-zero byte after a zero one (the
/// first zero starts the padding, RFC 8803 §6.2.4 / §6.2.8).
fn check_list(l: &[u8]) -> Result<()> {
    match l.iter().position(|&b| b == 0) {
        Some(p) if l[p..].iter().any(|&b| b != 0) => Err(Error::Malformed),
        _ => Ok(()),
    }
}
