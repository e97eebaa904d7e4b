//! In-place TCP option rewriting for a translator: replace, insert and remove
//! options in a segment held in a buffer with spare capacity, keeping the option
//! area a multiple of 4 (RFC 9293 §3.1), the data offset right, the payload moved
//! behind the header, and the TCP checksum right.
//!
//! # Checksum
//! Every operation here updates the TCP checksum **incrementally** (RFC 1624
//! eqn. 3): it accounts for (a) the option bytes that changed, (b) the data-offset
//! word, and (c) the segment length in the pseudo-header (RFC 9293 §3.1; RFC 8200
//! §8.1 for IPv6). The payload moves by a multiple of 4 bytes and so keeps its
//! 16-bit alignment: its contribution to the sum is unchanged. The result equals a
//! full recomputation when the checksum was right before; a wrong checksum stays
//! wrong by the same amount (the rewrite does not launder corrupt segments). Use
//! [`crate::tcp::Packet::fill_checksum_v4`]/`_v6` if a full recomputation is wanted.
//!
//! # Layout
//! The option area is re-laid as: the options up to the last one that is not a
//! NOP (the *content*), then NOP padding to a multiple of 4. Trailing NOPs, an EOL
//! and anything after it are treated as padding and regenerated. Option areas
//! that do not walk cleanly (see [`crate::tcp_options::RawOptions`]) are refused
//! with the walker's error: a translator should not rewrite what it cannot parse.
//!
//! Two levels: [`Segment`] works on a bare TCP segment and returns the byte delta
//! so the caller fixes the IP length; [`IpPacket`] wraps a whole IPv4/IPv6 packet
//! and fixes the IPv4 total length and header checksum (incrementally) or the IPv6
//! payload length itself.

use core::ops::Range;

use crate::bytes::{set_u16, u16_at};
use crate::checksum;
use crate::tcp::{self, HEADER_LEN, MAX_OPTIONS_LEN, Packet};
use crate::tcp_options::{self, OptionsBuilder, RawOption, RawOptions, TcpOption, kind};
use crate::{Error, Result};

/// Where the option area's content ends, and which offsets start an option.
#[derive(Clone, Copy)]
struct Layout {
    /// End of the last option that is not a NOP (everything after is padding).
    content_end: usize,
}

/// Walks `area` and finds the content end. Walker errors are returned.
#[inline]
fn layout(area: &[u8]) -> Result<Layout> {
    let mut content_end = 0;
    for raw in RawOptions::new(area) {
        let raw = raw?;
        match raw.kind() {
            kind::EOL => break,
            kind::NOP => {}
            _ => content_end = raw.end(),
        }
    }
    Ok(Layout { content_end })
}

/// Finds the option starting exactly at `offset` (before the content end).
/// `Malformed` if no option starts there.
#[inline]
fn option_at(area: &[u8], offset: usize) -> Result<RawOption<'_>> {
    for raw in RawOptions::new(area) {
        let raw = raw?;
        if raw.kind() == kind::EOL || raw.offset > offset {
            break;
        }
        if raw.offset == offset {
            return Ok(raw);
        }
    }
    Err(Error::Malformed)
}

/// True when `off` is where an option starts, or is the content end.
#[inline]
fn is_boundary(area: &[u8], off: usize, content_end: usize) -> bool {
    off == content_end || option_at(area, off).is_ok()
}

/// `new` must walk cleanly and hold no EOL (which would hide what follows).
#[inline]
fn check_framed(new: &[u8]) -> Result<()> {
    for raw in RawOptions::new(new) {
        if raw?.kind() == kind::EOL {
            return Err(Error::Malformed);
        }
    }
    Ok(())
}

/// A TCP segment in `buf[..len]`, with `buf[len..]` usable as spare room for
/// growing the header.
///
/// Construction validates the TCP header (as [`Packet::new_checked`]); every
/// operation keeps it valid, so no method panics.
#[derive(Debug)]
pub struct Segment<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Segment<'a> {
    /// Wraps the segment `buf[..len]`. `NoSpace` if `len > buf.len()`; otherwise
    /// the errors of [`Packet::new_checked`].
    pub fn new(buf: &'a mut [u8], len: usize) -> Result<Segment<'a>> {
        if len > buf.len() {
            return Err(Error::NoSpace);
        }
        Packet::new_checked(&buf[..len])?;
        Ok(Segment { buf, len })
    }

    /// Current segment length.
    #[must_use]
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true (a segment has at least a 20-byte header).
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Largest length the segment may grow to.
    #[must_use]
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The segment bytes.
    #[must_use]
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Read view of the segment.
    #[must_use]
    #[inline]
    pub fn packet(&self) -> Packet<&[u8]> {
        Packet::new_unchecked(&self.buf[..self.len])
    }

    /// Write view of the segment (for the checksum-maintaining `rewrite_*`
    /// setters of [`Packet`]).
    #[inline]
    pub fn packet_mut(&mut self) -> Packet<&mut [u8]> {
        Packet::new_unchecked(&mut self.buf[..self.len])
    }

    /// The option area.
    #[must_use]
    #[inline]
    pub fn options(&self) -> &[u8] {
        let hl = self.packet().header_len();
        &self.buf[HEADER_LEN..hl]
    }

    /// Overwrites `bytes` at segment offset `off` (inside the header) and updates
    /// the checksum over the 16-bit-aligned window (works at odd offsets).
    #[inline]
    fn overwrite(&mut self, off: usize, bytes: &[u8]) {
        let start = off & !1;
        let end = off + bytes.len();
        let mut old = [0u8; tcp::MAX_HEADER_LEN];
        old[..end - start].copy_from_slice(&self.buf[start..end]);
        self.buf[off..end].copy_from_slice(bytes);
        let c = u16_at(self.buf, tcp::CHECKSUM_OFFSET);
        let c = checksum::update_region(c, &old[..end - start], &self.buf[start..end]);
        set_u16(self.buf, tcp::CHECKSUM_OFFSET, c);
    }

    /// Installs `content` as the new option area (NOP-padded to a multiple of 4),
    /// moving the payload and fixing data offset and checksum. Returns the delta.
    fn install(&mut self, content: &[u8]) -> Result<isize> {
        let new_area = content.len().next_multiple_of(4);
        if new_area > MAX_OPTIONS_LEN {
            return Err(Error::NoSpace);
        }
        let old_hl = self.packet().header_len();
        let old_area = old_hl - HEADER_LEN;
        let new_hl = HEADER_LEN + new_area;
        let new_len = self.len - old_hl + new_hl;
        if new_len > self.buf.len() {
            return Err(Error::NoSpace);
        }
        let mut old = [0u8; MAX_OPTIONS_LEN];
        old[..old_area].copy_from_slice(&self.buf[HEADER_LEN..old_hl]);
        let old_word = u16_at(self.buf, tcp::OFF_FLAGS_OFFSET);
        if new_hl != old_hl {
            // Payload keeps its 16-bit alignment: the shift is a multiple of 4.
            self.buf.copy_within(old_hl..self.len, new_hl);
        }
        self.buf[HEADER_LEN..HEADER_LEN + content.len()].copy_from_slice(content);
        // RFC 9293 §3.1: header ends on a 32-bit boundary; pad with NOPs.
        self.buf[HEADER_LEN + content.len()..new_hl].fill(kind::NOP);
        let off = tcp::OFF_FLAGS_OFFSET;
        self.buf[off] = (((new_hl / 4) as u8) << 4) | (self.buf[off] & 0x0f);
        let new_word = u16_at(self.buf, off);
        let mut c = u16_at(self.buf, tcp::CHECKSUM_OFFSET);
        c = checksum::update_region(c, &old[..old_area], &self.buf[HEADER_LEN..new_hl]);
        c = checksum::update_u16(c, old_word, new_word);
        // Pseudo-header segment length (16-bit for IPv4, 32-bit for IPv6; same sum).
        c = checksum::update_u32(c, self.len as u32, new_len as u32);
        set_u16(self.buf, tcp::CHECKSUM_OFFSET, c);
        let delta = new_len as isize - self.len as isize;
        self.len = new_len;
        Ok(delta)
    }

    /// Replaces option-area bytes `range` with `new`, then re-pads. Positions at
    /// or beyond the content end are clamped to it (so `len..len` appends); both
    /// ends must otherwise be option boundaries (`Malformed`), and `new` must be a
    /// well-framed option sequence without EOL (the walker's error, or
    /// `Malformed` for an EOL), so the result always walks cleanly. `BadLength` if
    /// the range is reversed or beyond the area; `NoSpace` beyond 40 option bytes
    /// or the buffer capacity. Returns the segment-length delta.
    pub fn splice_options(&mut self, range: Range<usize>, new: &[u8]) -> Result<isize> {
        check_framed(new)?;
        let area = self.options();
        if range.start > range.end || range.end > area.len() {
            return Err(Error::BadLength);
        }
        let end_c = layout(area)?.content_end;
        let start = range.start.min(end_c);
        let end = range.end.min(end_c);
        if !is_boundary(area, start, end_c) || !is_boundary(area, end, end_c) {
            return Err(Error::Malformed);
        }
        self.splice_unchecked(start, end, end_c, new)
    }

    /// Splice with `start <= end <= end_c` already validated as boundaries.
    fn splice_unchecked(
        &mut self,
        start: usize,
        end: usize,
        end_c: usize,
        new: &[u8],
    ) -> Result<isize> {
        let area = self.options();
        let total = start + new.len() + (end_c - end);
        if total > MAX_OPTIONS_LEN {
            return Err(Error::NoSpace);
        }
        let mut content = [0u8; MAX_OPTIONS_LEN];
        content[..start].copy_from_slice(&area[..start]);
        content[start..start + new.len()].copy_from_slice(new);
        content[start + new.len()..total].copy_from_slice(&area[end..end_c]);
        self.install(&content[..total])
    }

    /// Rebuilds the whole option area: `f` gets the current content (options up to
    /// the last non-NOP option) and an empty [`OptionsBuilder`] of 40 bytes; what it
    /// pushes becomes the new area (NOP-padded). Returns the delta.
    pub fn rebuild_options<F>(&mut self, f: F) -> Result<isize>
    where
        F: FnOnce(&[u8], &mut OptionsBuilder<'_>) -> Result<()>,
    {
        let area = self.options();
        let end_c = layout(area)?.content_end;
        let mut old = [0u8; MAX_OPTIONS_LEN];
        old[..end_c].copy_from_slice(&area[..end_c]);
        let mut content = [0u8; MAX_OPTIONS_LEN];
        let mut b = OptionsBuilder::new(&mut content);
        f(&old[..end_c], &mut b)?;
        let n = b.len();
        self.install(&content[..n])
    }

    /// Inserts raw option bytes (well-framed, no EOL) at option-area offset
    /// `offset`, which must be an option boundary or at/after the content end
    /// (= append). `Malformed` if it falls inside an option.
    pub fn insert_raw(&mut self, offset: usize, bytes: &[u8]) -> Result<isize> {
        let end_c = layout(self.options())?.content_end;
        let at = offset.min(end_c);
        self.splice_options(at..at, bytes)
    }

    /// Inserts a typed option (see [`Segment::insert_raw`]).
    pub fn insert_option(&mut self, offset: usize, opt: &TcpOption<'_>) -> Result<isize> {
        // An option that does not fit 40 bytes cannot fit the area: NoSpace.
        let mut tmp = [0u8; MAX_OPTIONS_LEN];
        let n = opt.emit(&mut tmp)?;
        self.insert_raw(offset, &tmp[..n])
    }

    /// Appends raw option bytes after the last option.
    pub fn append_raw(&mut self, bytes: &[u8]) -> Result<isize> {
        self.insert_raw(MAX_OPTIONS_LEN, bytes)
    }

    /// Appends a typed option after the last option.
    pub fn append_option(&mut self, opt: &TcpOption<'_>) -> Result<isize> {
        self.insert_option(MAX_OPTIONS_LEN, opt)
    }

    /// Replaces the option starting at `offset` by raw bytes (any length). Same
    /// length is done in place without moving anything. `Malformed` if no option
    /// starts at `offset`.
    pub fn replace_raw(&mut self, offset: usize, bytes: &[u8]) -> Result<isize> {
        check_framed(bytes)?;
        let area = self.options();
        let old = option_at(area, offset)?;
        let range = old.offset..old.end();
        if range.len() == bytes.len() {
            self.overwrite(HEADER_LEN + range.start, bytes);
            return Ok(0);
        }
        let end_c = layout(area)?.content_end;
        let end = range.end.min(end_c);
        self.splice_unchecked(range.start.min(end), end, end_c, bytes)
    }

    /// Replaces the option starting at `offset` by a typed option.
    pub fn replace_option(&mut self, offset: usize, opt: &TcpOption<'_>) -> Result<isize> {
        // An option that does not fit 40 bytes cannot fit the area: NoSpace.
        let mut tmp = [0u8; MAX_OPTIONS_LEN];
        let n = opt.emit(&mut tmp)?;
        self.replace_raw(offset, &tmp[..n])
    }

    /// Removes the option starting at `offset` (`Malformed` if none starts there).
    pub fn remove_option_at(&mut self, offset: usize) -> Result<isize> {
        let area = self.options();
        let old = option_at(area, offset)?;
        let end_c = layout(area)?.content_end;
        let end = old.end().min(end_c);
        self.splice_unchecked(old.offset.min(end), end, end_c, &[])
    }

    /// Removes every option for which `pred` is true (NOPs and EOL are never
    /// offered to `pred`), in one pass. Returns the delta (0 if nothing matched;
    /// the segment is then untouched).
    pub fn remove_options_where<P>(&mut self, mut pred: P) -> Result<isize>
    where
        P: FnMut(&RawOption<'_>) -> bool,
    {
        let area = self.options();
        let end_c = layout(area)?.content_end;
        let mut content = [0u8; MAX_OPTIONS_LEN];
        let mut n = 0;
        let mut removed = false;
        for raw in RawOptions::new(&area[..end_c]) {
            let raw = raw?;
            if raw.kind() != kind::NOP && pred(&raw) {
                removed = true;
                continue;
            }
            content[n..n + raw.bytes.len()].copy_from_slice(raw.bytes);
            n += raw.bytes.len();
        }
        if !removed {
            return Ok(0);
        }
        self.install(&content[..n])
    }

    /// Removes every option of kind `k`.
    pub fn remove_kind(&mut self, k: u8) -> Result<isize> {
        self.remove_options_where(|o| o.kind() == k)
    }

    /// Removes every MPTCP option (kind 30, RFC 8684 §3).
    pub fn remove_mptcp(&mut self) -> Result<isize> {
        self.remove_kind(kind::MPTCP)
    }

    /// MSS clamping (RFC 9293 §3.7.1; RFC 4459 §3.2): if an MSS option carries a
    /// value above `clamp`, rewrite it to `clamp` (checksum fixed incrementally,
    /// length unchanged). Returns the MSS now in the segment, `None` if the
    /// segment has no MSS option.
    pub fn clamp_mss(&mut self, clamp: u16) -> Result<Option<u16>> {
        let Some(raw) = tcp_options::find_raw(self.options(), kind::MSS)? else {
            return Ok(None);
        };
        let TcpOption::Mss(v) = raw.parse()? else {
            return Err(Error::BadLength);
        };
        if v <= clamp {
            return Ok(Some(v));
        }
        let off = HEADER_LEN + raw.offset + 2;
        self.overwrite(off, &clamp.to_be_bytes());
        Ok(Some(clamp))
    }
}

/// IP version of an [`IpPacket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4: total length at offset 2, header checksum at offset 10.
    V4,
    /// IPv6: payload length at offset 4 (extension headers may precede TCP).
    V6,
}

/// IPv6 fixed header length.
const IPV6_HEADER_LEN: usize = 40;
/// IPv4 minimum header length.
const IPV4_MIN_HEADER_LEN: usize = 20;

/// A whole IP packet in `buf[..len]` whose TCP header starts at `tcp_offset`
/// (after the IPv4 options or IPv6 extension headers), with `buf[len..]` spare.
/// Every option operation of [`Segment`] is offered, and additionally fixes the
/// IPv4 total length + header checksum (RFC 1624, incremental) or the IPv6
/// payload length. The packet never grows past 65535 bytes of IPv4 total length
/// or IPv6 payload length (`NoSpace`).
#[derive(Debug)]
pub struct IpPacket<'a> {
    buf: &'a mut [u8],
    len: usize,
    version: IpVersion,
    tcp_offset: usize,
}

impl<'a> IpPacket<'a> {
    /// Wraps `buf[..len]`. Validates: `len <= buf.len()` (`NoSpace`), the version
    /// nibble (`BadVersion`), `tcp_offset` at least the fixed IP header and within
    /// `len`, and the IP length field consistent with `len`
    /// (`BadHeaderLength`), and the TCP header ([`Packet::new_checked`]).
    pub fn new(
        buf: &'a mut [u8],
        len: usize,
        version: IpVersion,
        tcp_offset: usize,
    ) -> Result<IpPacket<'a>> {
        if len > buf.len() {
            return Err(Error::NoSpace);
        }
        let (min, want_ver) = match version {
            IpVersion::V4 => (IPV4_MIN_HEADER_LEN, 4),
            IpVersion::V6 => (IPV6_HEADER_LEN, 6),
        };
        if len < min {
            return Err(Error::Truncated);
        }
        if buf[0] >> 4 != want_ver {
            return Err(Error::BadVersion);
        }
        if tcp_offset < min || tcp_offset > len {
            return Err(Error::BadHeaderLength);
        }
        let consistent = match version {
            IpVersion::V4 => usize::from(u16_at(buf, 2)) == len,
            IpVersion::V6 => usize::from(u16_at(buf, 4)) + IPV6_HEADER_LEN == len,
        };
        if !consistent {
            return Err(Error::BadHeaderLength);
        }
        Packet::new_checked(&buf[tcp_offset..len])?;
        Ok(IpPacket {
            buf,
            len,
            version,
            tcp_offset,
        })
    }

    /// Current packet length.
    #[must_use]
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packet bytes.
    #[must_use]
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Offset of the TCP header.
    #[must_use]
    #[inline]
    pub fn tcp_offset(&self) -> usize {
        self.tcp_offset
    }

    /// Read view of the TCP segment.
    #[must_use]
    #[inline]
    pub fn tcp(&self) -> Packet<&[u8]> {
        Packet::new_unchecked(&self.buf[self.tcp_offset..self.len])
    }

    /// Runs [`Segment`] operations on the TCP segment, then fixes the IP length
    /// fields by the resulting delta (also when `f` returns an error after an
    /// earlier step of it succeeded). The segment may grow only as far as the IP
    /// length field allows.
    pub fn with_segment<R, F>(&mut self, f: F) -> Result<R>
    where
        F: FnOnce(&mut Segment<'_>) -> Result<R>,
    {
        let max_total = match self.version {
            IpVersion::V4 => usize::from(u16::MAX),
            IpVersion::V6 => usize::from(u16::MAX) + IPV6_HEADER_LEN,
        };
        let cap = self.buf.len().min(max_total);
        let old_seg = self.len - self.tcp_offset;
        let (r, new_seg) = {
            let mut seg = Segment {
                buf: &mut self.buf[self.tcp_offset..cap],
                len: old_seg,
            };
            // Fix the IP length even if `f` fails after an earlier successful step.
            let r = f(&mut seg);
            (r, seg.len)
        };
        if new_seg != old_seg {
            let new_len = self.tcp_offset + new_seg;
            match self.version {
                IpVersion::V4 => {
                    let old_tl = u16_at(self.buf, 2);
                    // new_len <= 65535 by the capacity limit above.
                    let new_tl = new_len as u16;
                    set_u16(self.buf, 2, new_tl);
                    let c = checksum::update_u16(u16_at(self.buf, 10), old_tl, new_tl);
                    set_u16(self.buf, 10, c);
                }
                IpVersion::V6 => {
                    set_u16(self.buf, 4, (new_len - IPV6_HEADER_LEN) as u16);
                }
            }
            self.len = new_len;
        }
        r
    }

    /// [`Segment::splice_options`] + IP length fix.
    pub fn splice_options(&mut self, range: Range<usize>, new: &[u8]) -> Result<isize> {
        self.with_segment(|s| s.splice_options(range, new))
    }

    /// [`Segment::rebuild_options`] + IP length fix.
    pub fn rebuild_options<F>(&mut self, f: F) -> Result<isize>
    where
        F: FnOnce(&[u8], &mut OptionsBuilder<'_>) -> Result<()>,
    {
        self.with_segment(|s| s.rebuild_options(f))
    }

    /// [`Segment::insert_option`] + IP length fix.
    pub fn insert_option(&mut self, offset: usize, opt: &TcpOption<'_>) -> Result<isize> {
        self.with_segment(|s| s.insert_option(offset, opt))
    }

    /// [`Segment::insert_raw`] + IP length fix.
    pub fn insert_raw(&mut self, offset: usize, bytes: &[u8]) -> Result<isize> {
        self.with_segment(|s| s.insert_raw(offset, bytes))
    }

    /// [`Segment::append_option`] + IP length fix.
    pub fn append_option(&mut self, opt: &TcpOption<'_>) -> Result<isize> {
        self.with_segment(|s| s.append_option(opt))
    }

    /// [`Segment::append_raw`] + IP length fix.
    pub fn append_raw(&mut self, bytes: &[u8]) -> Result<isize> {
        self.with_segment(|s| s.append_raw(bytes))
    }

    /// [`Segment::replace_option`] + IP length fix.
    pub fn replace_option(&mut self, offset: usize, opt: &TcpOption<'_>) -> Result<isize> {
        self.with_segment(|s| s.replace_option(offset, opt))
    }

    /// [`Segment::replace_raw`] + IP length fix.
    pub fn replace_raw(&mut self, offset: usize, bytes: &[u8]) -> Result<isize> {
        self.with_segment(|s| s.replace_raw(offset, bytes))
    }

    /// [`Segment::remove_option_at`] + IP length fix.
    pub fn remove_option_at(&mut self, offset: usize) -> Result<isize> {
        self.with_segment(|s| s.remove_option_at(offset))
    }

    /// [`Segment::remove_options_where`] + IP length fix.
    pub fn remove_options_where<P>(&mut self, pred: P) -> Result<isize>
    where
        P: FnMut(&RawOption<'_>) -> bool,
    {
        self.with_segment(|s| s.remove_options_where(pred))
    }

    /// [`Segment::remove_kind`] + IP length fix.
    pub fn remove_kind(&mut self, k: u8) -> Result<isize> {
        self.with_segment(|s| s.remove_kind(k))
    }

    /// [`Segment::remove_mptcp`] + IP length fix.
    pub fn remove_mptcp(&mut self) -> Result<isize> {
        self.with_segment(|s| s.remove_mptcp())
    }

    /// [`Segment::clamp_mss`] (no length change).
    pub fn clamp_mss(&mut self, clamp: u16) -> Result<Option<u16>> {
        self.with_segment(|s| s.clamp_mss(clamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seq::SeqNum;
    use crate::tcp::{Flags, TcpRepr};
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;
    use std::vec::Vec;

    const A4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    /// Linux SYN options (MSS 1460, SACK_PERM, TS, NOP, WS 7) + MP_CAPABLE v1
    /// (RFC 8684 §3.1, `1e 04 81 01`).
    const MPTCP_SYN_OPTS: [u8; 24] = [
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x8a, 0xd2, 0xea, 0x3f, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x03, 0x03, 0x07, 0x1e, 0x04, 0x81, 0x01,
    ];

    /// Builds an IPv4 packet (20-byte header) carrying a TCP segment with `opts`
    /// and `payload`, into a buffer with `spare` extra bytes; checksums filled.
    fn v4_packet(opts: &[u8], payload: &[u8], spare: usize) -> (Vec<u8>, usize) {
        let r = TcpRepr {
            src_port: 40000,
            dst_port: 443,
            seq_number: SeqNum(0x1234_5678),
            ack_number: SeqNum(0),
            flags: Flags::SYN,
            window_len: 64240,
            urgent_at: 0,
            options: opts,
            payload_len: payload.len(),
        };
        let len = 20 + r.buffer_len();
        let mut buf = std::vec![0u8; len + spare];
        buf[0] = 0x45;
        set_u16(&mut buf, 2, len as u16);
        buf[8] = 64;
        buf[9] = 6;
        buf[12..16].copy_from_slice(&A4.octets());
        buf[16..20].copy_from_slice(&B4.octets());
        let c = checksum::checksum(&buf[..20]);
        set_u16(&mut buf, 10, c);
        let hl = r.emit(&mut buf[20..]).unwrap();
        buf[20 + hl..len].copy_from_slice(payload);
        Packet::new_unchecked(&mut buf[20..len]).fill_checksum_v4(A4, B4);
        (buf, len)
    }

    fn check_v4(p: &[u8]) {
        assert_eq!(checksum::checksum(&p[..20]), 0, "ip checksum");
        assert_eq!(usize::from(u16_at(p, 2)), p.len());
        let t = Packet::new_checked(&p[20..]).unwrap();
        assert!(t.verify_checksum_v4(A4, B4), "tcp checksum");
        assert_eq!(t.options().len() % 4, 0);
        for o in RawOptions::new(t.options()) {
            o.unwrap();
        }
    }

    #[test]
    fn strip_mptcp_from_syn() {
        let payload = b"hello, odd payload";
        let (mut buf, len) = v4_packet(&MPTCP_SYN_OPTS, &payload[..17], 0);
        let mut p = IpPacket::new(&mut buf, len, IpVersion::V4, 20).unwrap();
        assert_eq!(p.remove_mptcp(), Ok(-4));
        let n = p.len();
        check_v4(&buf[..n]);
        let t = Packet::new_checked(&buf[20..n]).unwrap();
        assert_eq!(t.options(), &MPTCP_SYN_OPTS[..20]);
        assert_eq!(t.payload(), &payload[..17]);
        // Nothing left to remove: untouched.
        let mut p = IpPacket::new(&mut buf, n, IpVersion::V4, 20).unwrap();
        assert_eq!(p.remove_mptcp(), Ok(0));
    }

    #[test]
    fn with_segment_partial_failure_keeps_ip_length() {
        let (mut buf, len) = v4_packet(&MPTCP_SYN_OPTS, b"abc", 0);
        let mut p = IpPacket::new(&mut buf, len, IpVersion::V4, 20).unwrap();
        let r = p.with_segment(|s| {
            s.remove_mptcp()?;
            s.append_option(&TcpOption::Unknown {
                kind: 200,
                data: &[0; 30],
            })?;
            Ok(())
        });
        assert_eq!(r, Err(Error::NoSpace));
        assert_eq!(p.len(), len - 4);
        check_v4(&buf[..len - 4]);
    }

    #[test]
    fn insert_replace_clamp() {
        let (mut buf, len) = v4_packet(&MPTCP_SYN_OPTS[..20], b"xyz", 16);
        let mut p = IpPacket::new(&mut buf, len, IpVersion::V4, 20).unwrap();
        // Append MP_CAPABLE: 20 + 4 bytes.
        assert_eq!(p.append_raw(&[0x1e, 0x04, 0x81, 0x01]), Ok(4));
        // Replace the timestamps (offset 6) by a cookie request: 10 -> 2 bytes.
        assert_eq!(p.replace_option(6, &TcpOption::FastOpen(&[])), Ok(-8));
        // Same-length replace at an even offset, in place.
        assert_eq!(p.replace_option(0, &TcpOption::Mss(1400)), Ok(0));
        // MSS clamp.
        assert_eq!(p.clamp_mss(1380), Ok(Some(1380)));
        assert_eq!(p.clamp_mss(9000), Ok(Some(1380)));
        let n = p.len();
        check_v4(&buf[..n]);
        let t = Packet::new_checked(&buf[20..n]).unwrap();
        assert_eq!(t.payload(), b"xyz");
        assert_eq!(
            t.options(),
            &[2, 4, 0x05, 0x64, 4, 2, 34, 2, 1, 3, 3, 7, 0x1e, 4, 0x81, 1]
        );
        // Not an option boundary.
        let mut p = IpPacket::new(&mut buf, n, IpVersion::V4, 20).unwrap();
        assert_eq!(p.remove_option_at(1), Err(Error::Malformed));
        assert_eq!(
            p.insert_option(3, &TcpOption::SackPermitted),
            Err(Error::Malformed)
        );
        // Insert at the front.
        assert_eq!(
            p.insert_option(0, &TcpOption::Timestamps { tsval: 1, tsecr: 2 }),
            Ok(12)
        );
        let n = p.len();
        check_v4(&buf[..n]);
    }

    #[test]
    fn mss_clamp_at_odd_offset() {
        // NOP, MSS at option offset 1 (segment offset 21: odd), then padding.
        let opts = [1, 2, 4, 0x23, 0x28, 1, 1, 1];
        let (mut buf, len) = v4_packet(&opts, b"abcde", 0);
        let mut p = IpPacket::new(&mut buf, len, IpVersion::V4, 20).unwrap();
        assert_eq!(p.clamp_mss(1200), Ok(Some(1200)));
        check_v4(&buf[..len]);
        assert_eq!(tcp_options::find_mss(&buf[40..48]), Ok(Some(1200)));
        // No MSS at all.
        let (mut buf, len) = v4_packet(&[1, 1, 1, 1], b"", 0);
        let mut p = IpPacket::new(&mut buf, len, IpVersion::V4, 20).unwrap();
        assert_eq!(p.clamp_mss(1200), Ok(None));
    }

    #[test]
    fn no_space() {
        // 40 bytes of options already: anything more is NoSpace, nothing changes.
        let mut opts = [1u8; 40];
        opts[..10].copy_from_slice(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        opts[36..40].copy_from_slice(&[3, 3, 7, 1]);
        let (mut buf, len) = v4_packet(&opts, b"p", 64);
        let before = buf.clone();
        let mut p = IpPacket::new(&mut buf, len, IpVersion::V4, 20).unwrap();
        // The trailing NOP is padding, the content ends at 39: 39 + 4 > 40.
        assert_eq!(p.append_option(&TcpOption::Mss(1)), Err(Error::NoSpace));
        assert_eq!(buf, before);
        // No spare capacity.
        let (mut buf, len) = v4_packet(&[2, 4, 5, 0xb4], b"p", 3);
        let mut p = IpPacket::new(&mut buf, len, IpVersion::V4, 20).unwrap();
        assert_eq!(
            p.append_option(&TcpOption::SackPermitted),
            Err(Error::NoSpace)
        );
        // Shrinking needs no spare room.
        assert_eq!(p.remove_kind(kind::MSS), Ok(-4));
        let n = p.len();
        check_v4(&buf[..n]);
        // Malformed areas are refused.
        let (mut buf, len) = v4_packet(&[2, 4, 5, 0xb4, 0xfe, 0, 0, 0], b"", 8);
        let mut p = IpPacket::new(&mut buf, len, IpVersion::V4, 20).unwrap();
        assert_eq!(p.remove_mptcp(), Err(Error::BadLength));
        // Bad packet framing.
        let (mut buf, len) = v4_packet(&[], b"", 0);
        assert_eq!(
            IpPacket::new(&mut buf, len, IpVersion::V6, 40).err(),
            Some(Error::BadVersion)
        );
        assert_eq!(
            IpPacket::new(&mut buf, len, IpVersion::V4, 16).err(),
            Some(Error::BadHeaderLength)
        );
        assert_eq!(
            IpPacket::new(&mut buf, len + 1, IpVersion::V4, 20).err(),
            Some(Error::NoSpace)
        );
        assert_eq!(
            IpPacket::new(&mut buf, len - 1, IpVersion::V4, 20).err(),
            Some(Error::BadHeaderLength)
        );
        assert_eq!(
            IpPacket::new(&mut buf[..10], 10, IpVersion::V4, 20).err(),
            Some(Error::Truncated)
        );
        buf[0] = 0x65;
        assert_eq!(
            IpPacket::new(&mut buf, len, IpVersion::V4, 20).err(),
            Some(Error::BadVersion)
        );
    }

    #[test]
    fn v6_with_rebuild() {
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let seg_len = 20 + 24 + 5;
        let mut buf = std::vec![0u8; 40 + seg_len + 40];
        buf[0] = 0x60;
        set_u16(&mut buf, 4, seg_len as u16);
        buf[6] = 6;
        let r = TcpRepr {
            src_port: 1,
            dst_port: 2,
            seq_number: SeqNum(3),
            ack_number: SeqNum(4),
            flags: Flags::SYN,
            window_len: 5,
            urgent_at: 0,
            options: &MPTCP_SYN_OPTS,
            payload_len: 5,
        };
        r.emit(&mut buf[40..]).unwrap();
        buf[84..89].copy_from_slice(b"12345");
        Packet::new_unchecked(&mut buf[40..40 + seg_len]).fill_checksum_v6(a, b);
        let mut p = IpPacket::new(&mut buf, 40 + seg_len, IpVersion::V6, 40).unwrap();
        let d = p
            .rebuild_options(|old, out| {
                for o in tcp_options::iter(old) {
                    match o? {
                        TcpOption::Mptcp(_) | TcpOption::Timestamps { .. } => {}
                        o => {
                            out.push(&o)?;
                        }
                    }
                }
                out.push(&TcpOption::FastOpen(&[]))?;
                Ok(())
            })
            .unwrap();
        assert_eq!(d, -12);
        let n = p.len();
        assert_eq!(usize::from(u16_at(&buf, 4)), n - 40);
        let t = Packet::new_checked(&buf[40..n]).unwrap();
        assert!(t.verify_checksum_v6(a, b));
        assert_eq!(t.options(), &[2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 7, 34, 2]);
        assert_eq!(t.payload(), b"12345");
    }

    fn arb_opt() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(std::vec![1u8]),
            any::<u16>().prop_map(|v| std::vec![2, 4, (v >> 8) as u8, v as u8]),
            any::<u8>().prop_map(|v| std::vec![3, 3, v]),
            Just(std::vec![4u8, 2]),
            prop::collection::vec(any::<u8>(), 8).prop_map(|v| {
                let mut o = std::vec![8u8, 10];
                o.extend(v);
                o
            }),
            prop::collection::vec(any::<u8>(), 1..10).prop_map(|v| {
                let mut o = std::vec![30u8, (v.len() + 2) as u8];
                o.extend(v);
                o
            }),
            Just(std::vec![34u8, 2]),
        ]
    }

    fn arb_area() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(arb_opt(), 0..6).prop_map(|os| {
            let mut a: Vec<u8> = Vec::new();
            for o in os {
                if a.len() + o.len() <= 40 {
                    a.extend(o);
                }
            }
            while !a.len().is_multiple_of(4) {
                a.push(0);
            }
            a
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn rewrites_match_full_checksum(
            area in arb_area(),
            payload in prop::collection::vec(any::<u8>(), 0..40),
            op in 0u8..6, which in 0usize..8, new in arb_opt(), clamp: u16,
        ) {
            let (mut buf, len) = v4_packet(&area, &payload, 48);
            let mut p = IpPacket::new(&mut buf, len, IpVersion::V4, 20).unwrap();
            let offs: Vec<usize> = tcp_options::RawOptions::new(&area)
                .filter_map(|r| r.ok())
                .filter(|r| r.kind() != 0)
                .map(|r| r.offset)
                .collect();
            let off = offs.get(which).copied().unwrap_or(area.len());
            let r = match op {
                0 => p.remove_mptcp(),
                1 => p.insert_raw(off, &new),
                2 => p.replace_raw(off, &new),
                3 => p.remove_option_at(off),
                4 => p.clamp_mss(clamp).map(|_| 0),
                _ => p.append_raw(&new),
            };
            let n = p.len();
            match r {
                Ok(d) => prop_assert_eq!(n as isize, len as isize + d),
                Err(Error::NoSpace) | Err(Error::Malformed) => prop_assert_eq!(n, len),
                Err(e) => prop_assert!(false, "unexpected {:?}", e),
            }
            check_v4(&buf[..n]);
            let t = Packet::new_checked(&buf[20..n]).unwrap();
            prop_assert_eq!(t.payload(), &payload[..]);
            let inc = t.checksum();
            let mut copy = buf[20..n].to_vec();
            Packet::new_unchecked(&mut copy[..]).fill_checksum_v4(A4, B4);
            prop_assert_eq!(inc, Packet::new_unchecked(&copy[..]).checksum());
        }

        #[test]
        fn never_panics_on_arbitrary_areas(
            area in prop::collection::vec(any::<u8>(), 0..=40), spare in 0usize..50,
            op in 0u8..4, off in 0usize..44,
        ) {
            let mut area = area;
            area.truncate(area.len() / 4 * 4);
            let (mut buf, len) = v4_packet(&area, b"data", spare);
            let mut p = IpPacket::new(&mut buf, len, IpVersion::V4, 20).unwrap();
            let r = match op {
                0 => p.remove_mptcp(),
                1 => p.insert_option(off, &TcpOption::WindowScale(3)),
                2 => p.remove_option_at(off),
                _ => p.splice_options(off.min(area.len())..area.len(), &[4, 2]),
            };
            let n = p.len();
            if r.is_ok() {
                check_v4(&buf[..n]);
            } else {
                prop_assert_eq!(n, len);
            }
        }
    }
}
