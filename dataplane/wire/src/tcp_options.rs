//! TCP options (RFC 9293 §3.2): a single-pass, allocation-free walker over an
//! option area, typed options with emitters, an [`OptionsBuilder`] and a one-pass
//! [`summarize`] for the per-packet path.
//!
//! Walking rules (RFC 9293 §3.2, §3.1 "Options"):
//! * kind 0 (EOL) ends the list; everything after it is padding and is not parsed;
//! * kind 1 (NOP) is a single byte;
//! * every other kind has a length byte counting kind and length: 0 or 1 is
//!   `BadLength`, a missing length byte is `Truncated`, a length running past the
//!   area is `BadLength`; after an error the walker yields nothing more;
//! * unknown kinds are skipped by their length and reported as
//!   [`TcpOption::Unknown`] (RFC 9293 §3.2: "must be prepared to handle an illegal
//!   option length", and to ignore options it does not implement).

use crate::bytes::{set_u16, set_u32, u16_at, u32_at};
use crate::seq::SeqNum;
use crate::tcp::MAX_OPTIONS_LEN;
use crate::{Error, Result};

/// Option kinds this module types (IANA "TCP Option Kind Numbers").
pub mod kind {
    /// End of option list (RFC 9293).
    pub const EOL: u8 = 0;
    /// No-operation (RFC 9293).
    pub const NOP: u8 = 1;
    /// Maximum segment size (RFC 9293 §3.7.1).
    pub const MSS: u8 = 2;
    /// Window scale (RFC 7323 §2).
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted (RFC 2018 §2).
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK (RFC 2018 §3).
    pub const SACK: u8 = 5;
    /// Timestamps (RFC 7323 §3).
    pub const TIMESTAMPS: u8 = 8;
    /// TCP-AO (RFC 5925).
    pub const TCP_AO: u8 = 29;
    /// Multipath TCP (RFC 8684 §3).
    pub const MPTCP: u8 = 30;
    /// TCP Fast Open cookie (RFC 7413 §4.1.1).
    pub const FAST_OPEN: u8 = 34;
}

/// Fixed option lengths (kind + length + value).
mod len {
    pub(super) const MSS: usize = 4;
    pub(super) const WINDOW_SCALE: usize = 3;
    pub(super) const SACK_PERMITTED: usize = 2;
    pub(super) const TIMESTAMPS: usize = 10;
    pub(super) const SACK_BLOCK: usize = 8;
    pub(super) const SACK_MAX_BLOCKS: usize = 4;
    pub(super) const TFO_COOKIE_MIN: usize = 4;
    pub(super) const TFO_COOKIE_MAX: usize = 16;
}

/// The SACK blocks of a SACK option (RFC 2018 §3): 1 to 4 pairs of
/// (left edge, right edge) sequence numbers, as a view over the option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SackBlocks<'a> {
    bytes: &'a [u8],
}

impl<'a> SackBlocks<'a> {
    /// Wraps the value bytes of a SACK option: `BadLength` unless the length is
    /// 8·n with n in 1..=4.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Result<SackBlocks<'a>> {
        let n = bytes.len() / len::SACK_BLOCK;
        if !bytes.len().is_multiple_of(len::SACK_BLOCK) || n == 0 || n > len::SACK_MAX_BLOCKS {
            return Err(Error::BadLength);
        }
        Ok(SackBlocks { bytes })
    }

    /// Number of blocks (1..=4).
    #[must_use]
    #[inline]
    pub fn len(&self) -> usize {
        self.bytes.len() / len::SACK_BLOCK
    }

    /// Never true for a constructed value (kept for the `len`/`is_empty` pair).
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Block `i` as (left edge, right edge), if present.
    #[must_use]
    #[inline]
    pub fn get(&self, i: usize) -> Option<(SeqNum, SeqNum)> {
        let off = i.checked_mul(len::SACK_BLOCK)?;
        let b = self.bytes.get(off..off.checked_add(len::SACK_BLOCK)?)?;
        Some((SeqNum(u32_at(b, 0)), SeqNum(u32_at(b, 4))))
    }

    /// Iterates over the blocks.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (SeqNum, SeqNum)> + 'a {
        self.bytes
            .chunks_exact(len::SACK_BLOCK)
            .map(|b| (SeqNum(u32_at(b, 0)), SeqNum(u32_at(b, 4))))
    }

    /// The raw value bytes (8 per block).
    #[must_use]
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Writes `blocks` as a complete SACK option (kind, length, blocks) into `buf`,
    /// returning its length. `BadLength` for 0 or more than 4 blocks, `NoSpace` if
    /// `buf` is short.
    pub fn emit_blocks(blocks: &[(SeqNum, SeqNum)], buf: &mut [u8]) -> Result<usize> {
        if blocks.is_empty() || blocks.len() > len::SACK_MAX_BLOCKS {
            return Err(Error::BadLength);
        }
        let n = 2 + blocks.len() * len::SACK_BLOCK;
        if buf.len() < n {
            return Err(Error::NoSpace);
        }
        buf[0] = kind::SACK;
        buf[1] = n as u8;
        for (i, (l, r)) in blocks.iter().enumerate() {
            set_u32(buf, 2 + i * 8, l.0);
            set_u32(buf, 6 + i * 8, r.0);
        }
        Ok(n)
    }
}

/// One TCP option, borrowing variable-length parts from the option area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// Kind 0: end of the option list; what follows is padding.
    EndOfList,
    /// Kind 1: a one-byte filler.
    NoOperation,
    /// Kind 2, length 4: maximum segment size.
    Mss(u16),
    /// Kind 3, length 3: window scale shift count (RFC 7323 §2.3: a receiver
    /// treats values above 14 as 14; the raw value is kept here).
    WindowScale(u8),
    /// Kind 4, length 2.
    SackPermitted,
    /// Kind 5, length 2 + 8n (n = 1..=4).
    Sack(SackBlocks<'a>),
    /// Kind 8, length 10 (RFC 7323 §3.2).
    Timestamps {
        /// TSval.
        tsval: u32,
        /// TSecr.
        tsecr: u32,
    },
    /// Kind 34 (RFC 7413 §4.1.1): the cookie, empty for a cookie request
    /// (length 2), otherwise 4 to 16 bytes.
    FastOpen(&'a [u8]),
    /// Kind 30: the whole MPTCP option, kind and length bytes included (typed by
    /// `crate::mptcp`).
    Mptcp(&'a [u8]),
    /// Any other kind: its value bytes (after kind and length).
    Unknown {
        /// Option kind.
        kind: u8,
        /// Value bytes.
        data: &'a [u8],
    },
}

impl<'a> TcpOption<'a> {
    /// Parses exactly one option from `bytes`, which must be the option's complete
    /// bytes (as yielded by [`RawOptions`]): 1 byte for EOL/NOP, otherwise
    /// `bytes[1] == bytes.len()`. A known kind with a wrong length is `BadLength`.
    pub fn parse(bytes: &'a [u8]) -> Result<TcpOption<'a>> {
        let Some(&k) = bytes.first() else {
            return Err(Error::Truncated);
        };
        match k {
            kind::EOL | kind::NOP => {
                if bytes.len() != 1 {
                    return Err(Error::BadLength);
                }
                return Ok(if k == kind::EOL {
                    TcpOption::EndOfList
                } else {
                    TcpOption::NoOperation
                });
            }
            _ => {}
        }
        let Some(&l) = bytes.get(1) else {
            return Err(Error::Truncated);
        };
        if usize::from(l) != bytes.len() || l < 2 {
            return Err(Error::BadLength);
        }
        let value = &bytes[2..];
        Ok(match k {
            // RFC 9293 §3.2: MSS has length 4.
            kind::MSS if bytes.len() == len::MSS => TcpOption::Mss(u16_at(bytes, 2)),
            // RFC 7323 §2.2: Window Scale has length 3.
            kind::WINDOW_SCALE if bytes.len() == len::WINDOW_SCALE => {
                TcpOption::WindowScale(bytes[2])
            }
            // RFC 2018 §2: SACK-Permitted has length 2.
            kind::SACK_PERMITTED if bytes.len() == len::SACK_PERMITTED => TcpOption::SackPermitted,
            // RFC 2018 §3: SACK has length 2 + 8n.
            kind::SACK => TcpOption::Sack(SackBlocks::new(value)?),
            // RFC 7323 §3.2: Timestamps has length 10.
            kind::TIMESTAMPS if bytes.len() == len::TIMESTAMPS => TcpOption::Timestamps {
                tsval: u32_at(bytes, 2),
                tsecr: u32_at(bytes, 6),
            },
            // RFC 7413 §4.1.1: cookie request (len 2) or cookie of 4..=16 bytes.
            kind::FAST_OPEN
                if value.is_empty()
                    || (len::TFO_COOKIE_MIN..=len::TFO_COOKIE_MAX).contains(&value.len()) =>
            {
                TcpOption::FastOpen(value)
            }
            // RFC 8684 §3: typed by the mptcp module.
            kind::MPTCP => TcpOption::Mptcp(bytes),
            kind::MSS
            | kind::WINDOW_SCALE
            | kind::SACK_PERMITTED
            | kind::TIMESTAMPS
            | kind::FAST_OPEN => return Err(Error::BadLength),
            _ => TcpOption::Unknown {
                kind: k,
                data: value,
            },
        })
    }

    /// The option kind byte.
    #[must_use]
    #[inline]
    pub fn kind(&self) -> u8 {
        match self {
            TcpOption::EndOfList => kind::EOL,
            TcpOption::NoOperation => kind::NOP,
            TcpOption::Mss(_) => kind::MSS,
            TcpOption::WindowScale(_) => kind::WINDOW_SCALE,
            TcpOption::SackPermitted => kind::SACK_PERMITTED,
            TcpOption::Sack(_) => kind::SACK,
            TcpOption::Timestamps { .. } => kind::TIMESTAMPS,
            TcpOption::FastOpen(_) => kind::FAST_OPEN,
            TcpOption::Mptcp(_) => kind::MPTCP,
            TcpOption::Unknown { kind, .. } => *kind,
        }
    }

    /// Encoded length in bytes (kind and length included).
    #[must_use]
    #[inline]
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::Mss(_) => len::MSS,
            TcpOption::WindowScale(_) => len::WINDOW_SCALE,
            TcpOption::SackPermitted => len::SACK_PERMITTED,
            TcpOption::Sack(b) => 2 + b.as_bytes().len(),
            TcpOption::Timestamps { .. } => len::TIMESTAMPS,
            TcpOption::FastOpen(c) => 2 + c.len(),
            TcpOption::Mptcp(raw) => raw.len(),
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option into `buf`, returning [`TcpOption::buffer_len`].
    /// `NoSpace` when `buf` is short; `BadLength` for a TFO cookie of a bad size or
    /// a value longer than 253 bytes; `Malformed` for an `Mptcp` slice whose kind or
    /// length byte is inconsistent, or an `Unknown` carrying kind 0/1 or a kind this
    /// module types (use the typed variant: it would not parse back as `Unknown`).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        if n > usize::from(u8::MAX) {
            return Err(Error::BadLength);
        }
        // Validate before writing anything.
        match self {
            TcpOption::FastOpen(c)
                if !c.is_empty()
                    && !(len::TFO_COOKIE_MIN..=len::TFO_COOKIE_MAX).contains(&c.len()) =>
            {
                return Err(Error::BadLength);
            }
            TcpOption::Mptcp(raw)
                if raw.len() < 2 || raw[0] != kind::MPTCP || usize::from(raw[1]) != raw.len() =>
            {
                return Err(Error::Malformed);
            }
            TcpOption::Unknown { kind, .. } if is_typed_kind(*kind) => {
                return Err(Error::Malformed);
            }
            _ => {}
        }
        if buf.len() < n {
            return Err(Error::NoSpace);
        }
        buf[0] = self.kind();
        if n >= 2 {
            buf[1] = n as u8;
        }
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::SackPermitted => {}
            TcpOption::Mss(v) => set_u16(buf, 2, *v),
            TcpOption::WindowScale(s) => buf[2] = *s,
            TcpOption::Sack(b) => buf[2..n].copy_from_slice(b.as_bytes()),
            TcpOption::Timestamps { tsval, tsecr } => {
                set_u32(buf, 2, *tsval);
                set_u32(buf, 6, *tsecr);
            }
            TcpOption::FastOpen(c) => buf[2..n].copy_from_slice(c),
            TcpOption::Mptcp(raw) => buf[..n].copy_from_slice(raw),
            TcpOption::Unknown { data, .. } => buf[2..n].copy_from_slice(data),
        }
        Ok(n)
    }
}

/// Kinds that [`TcpOption::parse`] never reports as `Unknown`.
#[inline]
const fn is_typed_kind(k: u8) -> bool {
    matches!(
        k,
        kind::EOL
            | kind::NOP
            | kind::MSS
            | kind::WINDOW_SCALE
            | kind::SACK_PERMITTED
            | kind::SACK
            | kind::TIMESTAMPS
            | kind::MPTCP
            | kind::FAST_OPEN
    )
}

/// One framed option as found in an option area: where it starts and its bytes
/// (kind and length included; 1 byte for EOL/NOP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawOption<'a> {
    /// Offset of the kind byte within the option area.
    pub offset: usize,
    /// The option's bytes.
    pub bytes: &'a [u8],
}

impl<'a> RawOption<'a> {
    /// The kind byte.
    #[must_use]
    #[inline]
    pub fn kind(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(kind::EOL)
    }

    /// Offset one past the option's last byte.
    #[must_use]
    #[inline]
    pub fn end(&self) -> usize {
        self.offset + self.bytes.len()
    }

    /// Types the option ([`TcpOption::parse`]).
    #[inline]
    pub fn parse(&self) -> Result<TcpOption<'a>> {
        TcpOption::parse(self.bytes)
    }
}

/// Framing-only walker: yields each option's offset and bytes without typing it.
/// Yields an EOL and then stops; stops for good after the first error.
#[derive(Debug, Clone)]
pub struct RawOptions<'a> {
    area: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> RawOptions<'a> {
    /// Walks `area` (an option area of any length; a TCP header holds at most 40).
    #[must_use]
    #[inline]
    pub fn new(area: &'a [u8]) -> RawOptions<'a> {
        RawOptions {
            area,
            pos: 0,
            done: false,
        }
    }

    /// Offset just past the last option yielded (after an EOL, the start of the
    /// padding).
    #[must_use]
    #[inline]
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not walked: the padding after an EOL, or the bytes from an error on.
    #[must_use]
    #[inline]
    pub fn remainder(&self) -> &'a [u8] {
        &self.area[self.pos..]
    }
}

impl<'a> Iterator for RawOptions<'a> {
    type Item = Result<RawOption<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = &self.area[self.pos..];
        let &k = rest.first()?;
        let n = match k {
            kind::EOL => {
                // RFC 9293 §3.2: EOL ends the list; the rest is padding.
                self.done = true;
                1
            }
            kind::NOP => 1,
            _ => match rest.get(1) {
                None => {
                    self.done = true;
                    return Some(Err(Error::Truncated));
                }
                Some(&l) if l < 2 || usize::from(l) > rest.len() => {
                    // Length 0/1 would loop or underflow; overrun leaves the area.
                    self.done = true;
                    return Some(Err(Error::BadLength));
                }
                Some(&l) => usize::from(l),
            },
        };
        let opt = RawOption {
            offset: self.pos,
            bytes: &rest[..n],
        };
        self.pos += n;
        Some(Ok(opt))
    }
}

/// Typed walker: yields `Result<TcpOption>`, ending after EOL or the first error.
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    raw: RawOptions<'a>,
}

impl<'a> TcpOptions<'a> {
    /// Walks `area`.
    #[must_use]
    #[inline]
    pub fn new(area: &'a [u8]) -> TcpOptions<'a> {
        TcpOptions {
            raw: RawOptions::new(area),
        }
    }

    /// See [`RawOptions::offset`].
    #[must_use]
    #[inline]
    pub fn offset(&self) -> usize {
        self.raw.offset()
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let r = match self.raw.next()? {
            Ok(raw) => raw.parse(),
            Err(e) => Err(e),
        };
        if r.is_err() {
            self.raw.done = true;
        }
        Some(r)
    }
}

/// Walks an option area: shorthand for [`TcpOptions::new`].
#[must_use]
#[inline]
pub fn iter(area: &[u8]) -> TcpOptions<'_> {
    TcpOptions::new(area)
}

/// Where an option sits in the option area (offset and length fit in a byte since
/// an area is at most 40 bytes; wider areas are rejected by [`summarize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptionSpan {
    /// Offset of the kind byte within the option area.
    pub offset: u8,
    /// Length of the option in bytes.
    pub len: u8,
}

impl OptionSpan {
    /// The byte range within the option area.
    #[must_use]
    #[inline]
    pub fn range(&self) -> core::ops::Range<usize> {
        usize::from(self.offset)..usize::from(self.offset) + usize::from(self.len)
    }

    /// The option's bytes in `area`, if in range.
    #[must_use]
    #[inline]
    pub fn slice<'a>(&self, area: &'a [u8]) -> Option<&'a [u8]> {
        area.get(self.range())
    }
}

/// How many MPTCP option spans an [`OptionSummary`] records.
pub const MAX_MPTCP_SPANS: usize = 4;

/// Everything the translator needs from an option area, collected in one pass.
/// For a kind that appears more than once, the first occurrence is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptionSummary {
    /// MSS value.
    pub mss: Option<u16>,
    /// Window-scale shift.
    pub window_scale: Option<u8>,
    /// SACK-Permitted present.
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// Where the SACK option is.
    pub sack: Option<OptionSpan>,
    /// Where the TFO option is (length 2 = cookie request).
    pub fast_open: Option<OptionSpan>,
    /// TCP-AO (kind 29) present (RFC 8803 §7.7 rejects it).
    pub tcp_ao: bool,
    /// Some unknown kind present.
    pub unknown: bool,
    mptcp: [OptionSpan; MAX_MPTCP_SPANS],
    mptcp_count: u8,
    /// MPTCP options seen in total (may exceed [`MAX_MPTCP_SPANS`]).
    pub mptcp_total: u8,
    /// Offset where the options end: the EOL offset, or the area length.
    pub end: u8,
}

impl OptionSummary {
    /// Spans of the first (up to [`MAX_MPTCP_SPANS`]) MPTCP options, in order.
    #[must_use]
    #[inline]
    pub fn mptcp(&self) -> &[OptionSpan] {
        &self.mptcp[..usize::from(self.mptcp_count)]
    }

    /// True when more MPTCP options were present than recorded.
    #[must_use]
    #[inline]
    pub fn mptcp_overflow(&self) -> bool {
        self.mptcp_total > self.mptcp_count
    }
}

/// One pass over `area`: MSS, WS, SACK-Permitted, TS, SACK/TFO positions and the
/// offset+length of each MPTCP option. Any framing error or wrong length for a
/// typed kind is returned. `BadLength` if `area` is longer than 255 bytes.
#[inline]
pub fn summarize(area: &[u8]) -> Result<OptionSummary> {
    if area.len() > usize::from(u8::MAX) {
        return Err(Error::BadLength);
    }
    let mut s = OptionSummary {
        end: area.len() as u8,
        ..OptionSummary::default()
    };
    // Hand-rolled walk (same rules as `RawOptions` + `TcpOption::parse`): this
    // runs on every packet, so no per-option enum construction.
    let mut pos = 0usize;
    // Fast path for the layout of nearly every data segment (Linux, and this
    // project's own output): NOP NOP TS(10) first (RFC 7323 Appendix A).
    if let Some(&[1, 1, kind::TIMESTAMPS, 10, a0, a1, a2, a3, b0, b1, b2, b3]) = area.get(..12) {
        s.timestamps = Some((
            u32::from_be_bytes([a0, a1, a2, a3]),
            u32::from_be_bytes([b0, b1, b2, b3]),
        ));
        pos = 12;
    }
    while pos < area.len() {
        let k = area[pos];
        if k == kind::EOL {
            // RFC 9293 §3.2: the rest is padding.
            s.end = pos as u8;
            break;
        }
        if k == kind::NOP {
            pos += 1;
            continue;
        }
        let Some(&l) = area.get(pos + 1) else {
            return Err(Error::Truncated);
        };
        let n = usize::from(l);
        if n < 2 || n > area.len() - pos {
            return Err(Error::BadLength);
        }
        let o = &area[pos..pos + n];
        // area.len() <= 255 so offsets and lengths fit.
        let span = OptionSpan {
            offset: pos as u8,
            len: l,
        };
        match k {
            kind::MSS if n == len::MSS => {
                s.mss.get_or_insert(u16_at(o, 2));
            }
            kind::WINDOW_SCALE if n == len::WINDOW_SCALE => {
                s.window_scale.get_or_insert(o[2]);
            }
            kind::SACK_PERMITTED if n == len::SACK_PERMITTED => s.sack_permitted = true,
            kind::TIMESTAMPS if n == len::TIMESTAMPS => {
                s.timestamps.get_or_insert((u32_at(o, 2), u32_at(o, 6)));
            }
            kind::MPTCP => {
                if usize::from(s.mptcp_count) < MAX_MPTCP_SPANS {
                    s.mptcp[usize::from(s.mptcp_count)] = span;
                    s.mptcp_count += 1;
                }
                s.mptcp_total = s.mptcp_total.saturating_add(1);
            }
            kind::TCP_AO => s.tcp_ao = true,
            kind::SACK | kind::FAST_OPEN => {
                // Variable lengths: validate as the typed parser does.
                TcpOption::parse(o)?;
                let slot = if k == kind::SACK {
                    &mut s.sack
                } else {
                    &mut s.fast_open
                };
                slot.get_or_insert(span);
            }
            kind::MSS | kind::WINDOW_SCALE | kind::SACK_PERMITTED | kind::TIMESTAMPS => {
                return Err(Error::BadLength);
            }
            _ => s.unknown = true,
        }
        pos += n;
    }
    Ok(s)
}

/// Finds the first option of kind `k` (framing errors before it are returned).
#[inline]
pub fn find_raw(area: &[u8], k: u8) -> Result<Option<RawOption<'_>>> {
    for raw in RawOptions::new(area) {
        let raw = raw?;
        if raw.kind() == k && k != kind::EOL && k != kind::NOP {
            return Ok(Some(raw));
        }
    }
    Ok(None)
}

/// First MSS value.
#[inline]
pub fn find_mss(area: &[u8]) -> Result<Option<u16>> {
    match find_raw(area, kind::MSS)? {
        Some(r) => match r.parse()? {
            TcpOption::Mss(v) => Ok(Some(v)),
            _ => Err(Error::BadLength),
        },
        None => Ok(None),
    }
}

/// First window-scale shift.
#[inline]
pub fn find_window_scale(area: &[u8]) -> Result<Option<u8>> {
    match find_raw(area, kind::WINDOW_SCALE)? {
        Some(r) => match r.parse()? {
            TcpOption::WindowScale(v) => Ok(Some(v)),
            _ => Err(Error::BadLength),
        },
        None => Ok(None),
    }
}

/// First timestamps option as (TSval, TSecr).
#[inline]
pub fn find_timestamps(area: &[u8]) -> Result<Option<(u32, u32)>> {
    match find_raw(area, kind::TIMESTAMPS)? {
        Some(r) => match r.parse()? {
            TcpOption::Timestamps { tsval, tsecr } => Ok(Some((tsval, tsecr))),
            _ => Err(Error::BadLength),
        },
        None => Ok(None),
    }
}

/// True when SACK-Permitted is present (and well-formed).
#[inline]
pub fn find_sack_permitted(area: &[u8]) -> Result<bool> {
    match find_raw(area, kind::SACK_PERMITTED)? {
        Some(r) => r.parse().map(|_| true),
        None => Ok(false),
    }
}

/// First SACK option's blocks.
#[inline]
pub fn find_sack(area: &[u8]) -> Result<Option<SackBlocks<'_>>> {
    match find_raw(area, kind::SACK)? {
        Some(r) => match r.parse()? {
            TcpOption::Sack(b) => Ok(Some(b)),
            _ => Err(Error::BadLength),
        },
        None => Ok(None),
    }
}

/// First TFO option's cookie (empty slice = cookie request).
#[inline]
pub fn find_fast_open(area: &[u8]) -> Result<Option<&[u8]>> {
    match find_raw(area, kind::FAST_OPEN)? {
        Some(r) => match r.parse()? {
            TcpOption::FastOpen(c) => Ok(Some(c)),
            _ => Err(Error::BadLength),
        },
        None => Ok(None),
    }
}

/// Appends options into a caller buffer, never past 40 bytes (RFC 9293 §3.1) nor
/// past the buffer, then pads to a multiple of 4.
#[derive(Debug)]
pub struct OptionsBuilder<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> OptionsBuilder<'a> {
    /// Builds into `buf` (capacity is `min(buf.len(), 40)`).
    #[must_use]
    #[inline]
    pub fn new(buf: &'a mut [u8]) -> OptionsBuilder<'a> {
        OptionsBuilder { buf, len: 0 }
    }

    #[inline]
    fn cap(&self) -> usize {
        self.buf.len().min(MAX_OPTIONS_LEN)
    }

    /// Bytes written so far.
    #[must_use]
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing written yet.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes still available.
    #[must_use]
    #[inline]
    pub fn remaining(&self) -> usize {
        self.cap() - self.len
    }

    /// The bytes written so far.
    #[must_use]
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends one option (`NoSpace` if it does not fit; nothing written then).
    #[inline]
    pub fn push(&mut self, opt: &TcpOption<'_>) -> Result<&mut Self> {
        let cap = self.cap();
        let n = opt.emit(&mut self.buf[self.len..cap])?;
        self.len += n;
        Ok(self)
    }

    /// Appends already-encoded option bytes verbatim (e.g. an option emitted by
    /// the mptcp module). The bytes are not validated.
    #[inline]
    pub fn push_raw(&mut self, bytes: &[u8]) -> Result<&mut Self> {
        if bytes.len() > self.remaining() {
            return Err(Error::NoSpace);
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(self)
    }

    /// Appends NOPs until the length is a multiple of `align` (1..=4), e.g. so the
    /// next option is 32-bit aligned as RFC 7323 App. A suggests for timestamps.
    #[inline]
    pub fn align(&mut self, align: usize) -> Result<&mut Self> {
        let target = self.len.next_multiple_of(align.clamp(1, 4));
        if target > self.cap() {
            return Err(Error::NoSpace);
        }
        self.buf[self.len..target].fill(kind::NOP);
        self.len = target;
        Ok(self)
    }

    /// Pads with NOPs to a multiple of 4 and returns the final length.
    #[inline]
    pub fn finish(mut self) -> Result<usize> {
        self.align(4)?;
        Ok(self.len)
    }

    /// Pads with EOL/zeros (RFC 9293 §3.1) to a multiple of 4 and returns the final
    /// length.
    #[inline]
    pub fn finish_eol(self) -> Result<usize> {
        let target = self.len.next_multiple_of(4);
        if target > self.cap() {
            return Err(Error::NoSpace);
        }
        self.buf[self.len..target].fill(kind::EOL);
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// Option area of a Linux 6.x SYN (tcpdump -X on loopback):
    /// MSS 65495, SACK_PERM, TS val 0x8ad2ea3f ecr 0, NOP, WS 7.
    const LINUX_SYN: [u8; 20] = [
        0x02, 0x04, 0xff, 0xd7, 0x04, 0x02, 0x08, 0x0a, 0x8a, 0xd2, 0xea, 0x3f, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    fn collect(area: &[u8]) -> Vec<Result<TcpOption<'_>>> {
        iter(area).collect()
    }

    #[test]
    fn linux_syn() {
        let v = collect(&LINUX_SYN);
        assert_eq!(
            v,
            [
                Ok(TcpOption::Mss(65495)),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::Timestamps {
                    tsval: 0x8ad2_ea3f,
                    tsecr: 0
                }),
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::WindowScale(7)),
            ]
        );
        let s = summarize(&LINUX_SYN).unwrap();
        assert_eq!(s.mss, Some(65495));
        assert_eq!(s.window_scale, Some(7));
        assert!(s.sack_permitted);
        assert_eq!(s.timestamps, Some((0x8ad2_ea3f, 0)));
        assert_eq!(s.end, 20);
        assert!(s.mptcp().is_empty());
        assert_eq!(find_mss(&LINUX_SYN), Ok(Some(65495)));
        assert_eq!(find_window_scale(&LINUX_SYN), Ok(Some(7)));
        assert_eq!(find_timestamps(&LINUX_SYN), Ok(Some((0x8ad2_ea3f, 0))));
        assert_eq!(find_sack_permitted(&LINUX_SYN), Ok(true));
        assert_eq!(find_sack(&LINUX_SYN), Ok(None));
        assert_eq!(find_fast_open(&LINUX_SYN), Ok(None));
    }

    /// MPTCP SYN (Linux 6.x, `mptcpize run`): MSS, SACK_PERM, TS, NOP, WS, then
    /// MP_CAPABLE v1 without key (RFC 8684 §3.1: `1e 04 81 01`).
    #[test]
    fn mptcp_syn_summary() {
        let mut a = [0u8; 24];
        a[..20].copy_from_slice(&LINUX_SYN);
        a[20..].copy_from_slice(&[0x1e, 0x04, 0x81, 0x01]);
        let s = summarize(&a).unwrap();
        assert_eq!(s.mptcp(), &[OptionSpan { offset: 20, len: 4 }]);
        assert_eq!(s.mptcp()[0].slice(&a), Some(&[0x1e, 0x04, 0x81, 0x01][..]));
        assert!(!s.mptcp_overflow());
        let last = iter(&a).last().unwrap();
        assert_eq!(last, Ok(TcpOption::Mptcp(&[0x1e, 0x04, 0x81, 0x01])));
        // Five DSS-sized MPTCP options: only four recorded.
        let mut b = [0u8; 40];
        for i in 0..10 {
            b[i * 4..i * 4 + 4].copy_from_slice(&[0x1e, 0x04, 0x20, 0x00]);
        }
        let s = summarize(&b).unwrap();
        assert_eq!(s.mptcp().len(), 4);
        assert_eq!(s.mptcp_total, 10);
        assert!(s.mptcp_overflow());
    }

    #[test]
    fn sack_and_tfo() {
        // NOP NOP SACK with two blocks (RFC 2018 §3 layout).
        let a = [
            1, 1, 5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 5,
        ];
        let b = find_sack(&a).unwrap().unwrap();
        assert_eq!(b.len(), 2);
        let v: Vec<_> = b.iter().collect();
        assert_eq!(
            v,
            [(SeqNum(10), SeqNum(20)), (SeqNum(0xffff_fff0), SeqNum(5))]
        );
        assert_eq!(b.get(1), Some((SeqNum(0xffff_fff0), SeqNum(5))));
        assert_eq!(b.get(2), None);
        let mut out = [0u8; 18];
        assert_eq!(SackBlocks::emit_blocks(&v, &mut out), Ok(18));
        assert_eq!(out, a[2..]);
        assert_eq!(
            SackBlocks::emit_blocks(&[], &mut out),
            Err(Error::BadLength)
        );
        assert_eq!(
            SackBlocks::emit_blocks(&v, &mut out[..17]),
            Err(Error::NoSpace)
        );
        let s = summarize(&a).unwrap();
        assert_eq!(s.sack, Some(OptionSpan { offset: 2, len: 18 }));
        // TFO cookie request (RFC 7413 §4.1.1, length 2) and an 8-byte cookie.
        assert_eq!(collect(&[34, 2]), [Ok(TcpOption::FastOpen(&[]))]);
        let c = [34, 10, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(collect(&c), [Ok(TcpOption::FastOpen(&c[2..]))]);
        assert_eq!(find_fast_open(&c), Ok(Some(&c[2..])));
        assert_eq!(
            summarize(&c).unwrap().fast_open,
            Some(OptionSpan { offset: 0, len: 10 })
        );
        // Cookies of 1..=3 and 17 bytes are invalid.
        assert_eq!(collect(&[34, 3, 0]), [Err(Error::BadLength)]);
        assert_eq!(collect(&[34, 5, 0, 0, 0]), [Err(Error::BadLength)]);
        let mut long = [0u8; 19];
        long[0] = 34;
        long[1] = 19;
        assert_eq!(collect(&long), [Err(Error::BadLength)]);
        assert_eq!(
            TcpOption::FastOpen(&[1, 2]).emit(&mut [0; 8]),
            Err(Error::BadLength)
        );
    }

    #[test]
    fn bad_inputs() {
        // Length 0 and 1.
        assert_eq!(
            collect(&[1, 2, 0, 1, 1]),
            [Ok(TcpOption::NoOperation), Err(Error::BadLength)]
        );
        assert_eq!(collect(&[99, 1, 1, 1]), [Err(Error::BadLength)]);
        // Missing length byte.
        assert_eq!(
            collect(&[1, 2]),
            [Ok(TcpOption::NoOperation), Err(Error::Truncated)]
        );
        // Overrun.
        assert_eq!(collect(&[8, 10, 0, 0]), [Err(Error::BadLength)]);
        // Wrong fixed lengths.
        assert_eq!(collect(&[2, 3, 0, 1, 1, 1]), [Err(Error::BadLength)]);
        assert_eq!(collect(&[3, 4, 0, 0]), [Err(Error::BadLength)]);
        assert_eq!(collect(&[4, 3, 0]), [Err(Error::BadLength)]);
        assert_eq!(collect(&[8, 8, 0, 0, 0, 0, 0, 0]), [Err(Error::BadLength)]);
        assert_eq!(collect(&[5, 2]), [Err(Error::BadLength)]);
        assert_eq!(
            collect(&[5, 9, 0, 0, 0, 0, 0, 0, 0]),
            [Err(Error::BadLength)]
        );
        let mut five = [0u8; 42];
        five[0] = 5;
        five[1] = 42;
        assert_eq!(collect(&five), [Err(Error::BadLength)]);
        assert_eq!(summarize(&[2, 3, 0, 1]), Err(Error::BadLength));
        assert_eq!(find_mss(&[1, 0xfe, 1]), Err(Error::BadLength));
        // Unknown kinds are skipped; EOL ends the walk; junk after EOL is ignored.
        assert_eq!(
            collect(&[0xfd, 4, 0xaa, 0xbb, 0, 0xff, 0, 3]),
            [
                Ok(TcpOption::Unknown {
                    kind: 0xfd,
                    data: &[0xaa, 0xbb]
                }),
                Ok(TcpOption::EndOfList)
            ]
        );
        let mut w = RawOptions::new(&[0xfd, 4, 0xaa, 0xbb, 0, 0xff, 0, 3]);
        assert_eq!(w.by_ref().count(), 2);
        assert_eq!(w.offset(), 5);
        assert_eq!(w.remainder(), &[0xff, 0, 3]);
        let s = summarize(&[0xfd, 2, 0, 0xff]).unwrap();
        assert!(s.unknown);
        assert_eq!(s.end, 2);
        assert_eq!(TcpOption::parse(&[]), Err(Error::Truncated));
        assert_eq!(TcpOption::parse(&[1, 1]), Err(Error::BadLength));
        assert_eq!(TcpOption::parse(&[2, 5, 0, 0]), Err(Error::BadLength));
        assert_eq!(summarize(&[1u8; 256]), Err(Error::BadLength));
    }

    #[test]
    fn emit_validation() {
        let mut buf = [0u8; 40];
        assert_eq!(
            TcpOption::Mptcp(&[30, 3]).emit(&mut buf),
            Err(Error::Malformed)
        );
        assert_eq!(
            TcpOption::Mptcp(&[29, 2]).emit(&mut buf),
            Err(Error::Malformed)
        );
        assert_eq!(
            TcpOption::Unknown {
                kind: kind::MSS,
                data: &[1, 2]
            }
            .emit(&mut buf),
            Err(Error::Malformed)
        );
        assert_eq!(
            TcpOption::Timestamps { tsval: 1, tsecr: 2 }.emit(&mut buf[..9]),
            Err(Error::NoSpace)
        );
        let big = [0u8; 254];
        assert_eq!(
            TcpOption::Unknown {
                kind: 200,
                data: &big
            }
            .emit(&mut [0; 300]),
            Err(Error::BadLength)
        );
    }

    #[test]
    fn builder() {
        let mut buf = [0xeeu8; 64];
        let mut b = OptionsBuilder::new(&mut buf);
        b.push(&TcpOption::Mss(1460)).unwrap();
        b.push(&TcpOption::SackPermitted).unwrap();
        b.push(&TcpOption::Timestamps {
            tsval: 0x8ad2_ea3f,
            tsecr: 0,
        })
        .unwrap();
        b.push(&TcpOption::NoOperation)
            .unwrap()
            .push(&TcpOption::WindowScale(7))
            .unwrap();
        assert_eq!(b.len(), 20);
        b.push_raw(&[0x1e, 0x04, 0x81, 0x01]).unwrap();
        // 24 used: a 12-byte SYN/ACK MP_CAPABLE does not fit into the last 16 with SACK(34).
        assert_eq!(
            b.push(&TcpOption::Unknown {
                kind: 200,
                data: &[0; 15]
            })
            .err(),
            Some(Error::NoSpace)
        );
        assert_eq!(b.len(), 24);
        b.push(&TcpOption::WindowScale(1)).unwrap();
        assert_eq!(b.finish(), Ok(28));
        assert_eq!(buf[27], kind::NOP);
        let mut expected = [0u8; 20];
        expected.copy_from_slice(&buf[..20]);
        let mut lin = LINUX_SYN;
        lin[2..4].copy_from_slice(&1460u16.to_be_bytes());
        assert_eq!(expected, lin);
        assert_eq!(buf[40], 0xee);
        // finish_eol pads with zeros; tiny buffers report NoSpace.
        let mut small = [0xeeu8; 4];
        let mut b = OptionsBuilder::new(&mut small);
        b.push(&TcpOption::WindowScale(3)).unwrap();
        assert_eq!(b.finish_eol(), Ok(4));
        assert_eq!(small, [3, 3, 3, 0]);
        let mut tiny = [0u8; 3];
        let mut b = OptionsBuilder::new(&mut tiny);
        b.push(&TcpOption::WindowScale(3)).unwrap();
        assert_eq!(b.finish(), Err(Error::NoSpace));
    }

    fn arb_option() -> impl Strategy<Value = (u8, Vec<u8>)> {
        // (kind, value) pairs valid for each typed kind.
        prop_oneof![
            Just((1u8, Vec::new())),
            any::<u16>().prop_map(|v| (2u8, v.to_be_bytes().to_vec())),
            any::<u8>().prop_map(|v| (3u8, std::vec![v])),
            Just((4u8, Vec::new())),
            (1usize..=4)
                .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n * 8))
                .prop_map(|v| (5u8, v)),
            prop::collection::vec(any::<u8>(), 8).prop_map(|v| (8u8, v)),
            prop_oneof![Just(0usize), 4usize..=16]
                .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
                .prop_map(|v| (34u8, v)),
            prop::collection::vec(any::<u8>(), 1..20).prop_map(|v| (30u8, v)),
            (
                prop::sample::select(std::vec![6u8, 7, 19, 27, 28, 29, 200, 253, 254]),
                prop::collection::vec(any::<u8>(), 0..20)
            ),
        ]
    }

    proptest! {
        #[test]
        fn walker_never_panics(data in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut consumed = 0;
            let mut w = RawOptions::new(&data);
            for r in w.by_ref() {
                match r {
                    Ok(raw) => {
                        prop_assert_eq!(raw.offset, consumed);
                        consumed += raw.bytes.len();
                        let _ = raw.parse();
                    }
                    Err(_) => break,
                }
            }
            prop_assert_eq!(w.offset(), consumed);
            prop_assert!(consumed <= data.len());
            let _ = collect(&data);
            let _ = summarize(&data);
            let _ = find_sack(&data);
        }

        #[test]
        fn summarize_agrees_with_walker(data in prop::collection::vec(any::<u8>(), 0..48)) {
            let clean = iter(&data).all(|r| r.is_ok());
            let s = summarize(&data);
            prop_assert_eq!(s.is_ok(), clean);
            if let Ok(s) = s {
                prop_assert_eq!(s.mss, find_mss(&data).unwrap());
                prop_assert_eq!(s.timestamps, find_timestamps(&data).unwrap());
                prop_assert_eq!(s.window_scale, find_window_scale(&data).unwrap());
                prop_assert_eq!(s.sack_permitted, find_sack_permitted(&data).unwrap());
            }
        }

        #[test]
        fn emitted_options_parse_back(opts in prop::collection::vec(arb_option(), 0..6)) {
            let mut area = [0u8; 256];
            let mut n = 0;
            let mut raw_bytes = [0u8; 32];
            for (k, v) in &opts {
                let opt = if *k == 30 {
                    raw_bytes[0] = 30;
                    raw_bytes[1] = (v.len() + 2) as u8;
                    raw_bytes[2..2 + v.len()].copy_from_slice(v);
                    TcpOption::Mptcp(&raw_bytes[..v.len() + 2])
                } else {
                    let mut b = [0u8; 40];
                    b[0] = *k;
                    b[1] = (v.len() + 2) as u8;
                    b[2..2 + v.len()].copy_from_slice(v);
                    let l = if *k == 1 { 1 } else { v.len() + 2 };
                    let parsed = TcpOption::parse(&b[..l]).unwrap();
                    let m = parsed.emit(&mut area[n..]).unwrap();
                    prop_assert_eq!(&area[n..n + m], &b[..l]);
                    n += m;
                    continue;
                };
                let m = opt.emit(&mut area[n..]).unwrap();
                n += m;
            }
            let mut count = 0;
            for r in iter(&area[..n]) {
                let o = r.unwrap();
                let mut again = [0u8; 64];
                let m = o.emit(&mut again).unwrap();
                prop_assert_eq!(TcpOption::parse(&again[..m]).unwrap(), o);
                count += 1;
            }
            prop_assert_eq!(count, opts.len());
        }
    }
}
