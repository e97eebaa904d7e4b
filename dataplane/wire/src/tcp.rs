//! TCP header (RFC 9293 §3.1): a zero-copy [`Packet`] view over a whole segment
//! (header, options and payload), checksum-maintaining rewrite setters (RFC 1624),
//! full checksum verification/filling over the IPv4 and IPv6 pseudo-headers, and a
//! [`TcpRepr`] header emitter.
//!
//! The buffer a [`Packet`] wraps is exactly one TCP segment: its length is the
//! segment length the pseudo-header covers (the IP payload, after any IPv6
//! extension headers).

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use core::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

use crate::bytes::{set_u16, set_u32, u16_at, u32_at};
use crate::checksum;
use crate::seq::SeqNum;
use crate::{Error, Result};

/// Length of the fixed TCP header (data offset 5).
pub const HEADER_LEN: usize = 20;
/// Largest TCP header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;
/// Largest TCP option area (RFC 9293 §3.1: data offset is 4 bits of 32-bit words).
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ_NUM: usize = 4;
    pub(super) const ACK_NUM: usize = 8;
    /// Data offset (high nibble), reserved (low nibble).
    pub(super) const DATA_OFF: usize = 12;
    /// The 16-bit word holding data offset, reserved bits and flags.
    pub(super) const OFF_FLAGS: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WIN_SIZE: usize = 14;
    pub(super) const CHECKSUM: usize = 16;
    pub(super) const URGENT: usize = 18;
    pub(super) const OPTIONS_START: usize = 20;
}

/// Offset of the checksum field inside the TCP header (used by `rewrite`).
pub(crate) const CHECKSUM_OFFSET: usize = field::CHECKSUM;
/// Offset of the data-offset/flags word (used by `rewrite`).
pub(crate) const OFF_FLAGS_OFFSET: usize = field::OFF_FLAGS;

/// The eight TCP control bits (RFC 9293 §3.1, RFC 3168 §6.1 for ECE/CWR).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No more data from sender.
    pub const FIN: Flags = Flags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: Flags = Flags(0x02);
    /// Reset the connection.
    pub const RST: Flags = Flags(0x04);
    /// Push function.
    pub const PSH: Flags = Flags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: Flags = Flags(0x10);
    /// Urgent pointer field is significant.
    pub const URG: Flags = Flags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: Flags = Flags(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: Flags = Flags(0x80);

    /// No flag set.
    #[must_use]
    #[inline]
    pub const fn empty() -> Flags {
        Flags(0)
    }

    /// From the raw flags byte (header byte 13).
    #[must_use]
    #[inline]
    pub const fn from_bits(bits: u8) -> Flags {
        Flags(bits)
    }

    /// The raw flags byte.
    #[must_use]
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True when no flag is set.
    #[must_use]
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every flag of `other` is set in `self`.
    #[must_use]
    #[inline]
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when at least one flag of `other` is set in `self`.
    #[must_use]
    #[inline]
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// Both sets together.
    #[must_use]
    #[inline]
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` without the flags of `other`.
    #[must_use]
    #[inline]
    pub const fn difference(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// Sets the flags of `other`.
    #[inline]
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    /// Clears the flags of `other`.
    #[inline]
    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }

    /// Sets or clears the flags of `other`.
    #[inline]
    pub fn set(&mut self, other: Flags, on: bool) {
        if on {
            self.insert(other)
        } else {
            self.remove(other)
        }
    }

    /// SYN set.
    #[must_use]
    #[inline]
    pub const fn syn(self) -> bool {
        self.contains(Flags::SYN)
    }
    /// FIN set.
    #[must_use]
    #[inline]
    pub const fn fin(self) -> bool {
        self.contains(Flags::FIN)
    }
    /// RST set.
    #[must_use]
    #[inline]
    pub const fn rst(self) -> bool {
        self.contains(Flags::RST)
    }
    /// PSH set.
    #[must_use]
    #[inline]
    pub const fn psh(self) -> bool {
        self.contains(Flags::PSH)
    }
    /// ACK set.
    #[must_use]
    #[inline]
    pub const fn ack(self) -> bool {
        self.contains(Flags::ACK)
    }
    /// URG set.
    #[must_use]
    #[inline]
    pub const fn urg(self) -> bool {
        self.contains(Flags::URG)
    }
    /// ECE set.
    #[must_use]
    #[inline]
    pub const fn ece(self) -> bool {
        self.contains(Flags::ECE)
    }
    /// CWR set.
    #[must_use]
    #[inline]
    pub const fn cwr(self) -> bool {
        self.contains(Flags::CWR)
    }
    /// SYN without ACK: an active open.
    #[must_use]
    #[inline]
    pub const fn is_syn_only(self) -> bool {
        self.0 & (Flags::SYN.0 | Flags::ACK.0) == Flags::SYN.0
    }
    /// SYN with ACK.
    #[must_use]
    #[inline]
    pub const fn is_syn_ack(self) -> bool {
        self.contains(Flags(Flags::SYN.0 | Flags::ACK.0))
    }
}

impl BitOr for Flags {
    type Output = Flags;
    #[inline]
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}
impl BitOrAssign for Flags {
    #[inline]
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}
impl BitAnd for Flags {
    type Output = Flags;
    #[inline]
    fn bitand(self, rhs: Flags) -> Flags {
        Flags(self.0 & rhs.0)
    }
}
impl BitAndAssign for Flags {
    #[inline]
    fn bitand_assign(&mut self, rhs: Flags) {
        self.0 &= rhs.0;
    }
}
impl Not for Flags {
    type Output = Flags;
    #[inline]
    fn not(self) -> Flags {
        Flags(!self.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        f.write_str("Flags(")?;
        let mut first = true;
        for (i, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

/// A read/write view of one TCP segment (header, options, payload).
///
/// After `new_checked` succeeds no accessor or setter panics: the check covers
/// the fixed header and the data offset (`20 ≤ 4·offset ≤ buffer length`), and the
/// only setter that changes the data offset ([`Packet::set_header_len`]) re-checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it (accessors may panic on a short buffer).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer and validates it with [`Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if the buffer is shorter than 20 bytes; `BadHeaderLength` if the
    /// data offset is below 5 words or points past the buffer (RFC 9293 §3.1).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = usize::from(b[field::DATA_OFF] >> 4) * 4;
        if hl < HEADER_LEN || hl > b.len() {
            return Err(Error::BadHeaderLength);
        }
        Ok(())
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[must_use]
    #[inline]
    pub fn src_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[must_use]
    #[inline]
    pub fn dst_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number.
    #[must_use]
    #[inline]
    pub fn seq_number(&self) -> SeqNum {
        SeqNum(u32_at(self.buffer.as_ref(), field::SEQ_NUM))
    }

    /// Acknowledgment number (meaningful only with ACK set).
    #[must_use]
    #[inline]
    pub fn ack_number(&self) -> SeqNum {
        SeqNum(u32_at(self.buffer.as_ref(), field::ACK_NUM))
    }

    /// Data offset in 32-bit words.
    #[must_use]
    #[inline]
    pub fn data_offset(&self) -> u8 {
        self.buffer.as_ref()[field::DATA_OFF] >> 4
    }

    /// Header length in bytes (data offset × 4), options included.
    #[must_use]
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    /// The four reserved bits (RFC 9293 §3.1: must be zero; formerly NS/AE).
    #[must_use]
    #[inline]
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::DATA_OFF] & 0x0f
    }

    /// The control bits.
    #[must_use]
    #[inline]
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Receive window (unscaled).
    #[must_use]
    #[inline]
    pub fn window_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum field.
    #[must_use]
    #[inline]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[must_use]
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::URGENT)
    }

    /// The option area (header bytes 20..data offset × 4), padding included.
    #[must_use]
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS_START..self.header_len()]
    }

    /// The payload (everything after the header).
    #[must_use]
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whole segment length (header + payload) = the buffer length.
    #[must_use]
    #[inline]
    pub fn total_len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Sequence space the segment occupies: payload length + SYN + FIN
    /// (RFC 9293 §3.3.1 "SEG.LEN").
    #[must_use]
    #[inline]
    pub fn segment_len(&self) -> u32 {
        let f = self.flags();
        let data = u32::try_from(self.payload().len()).unwrap_or(u32::MAX);
        data.wrapping_add(u32::from(f.syn()))
            .wrapping_add(u32::from(f.fin()))
    }

    /// True when the checksum verifies over the IPv4 pseudo-header.
    #[must_use]
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::tcp_ipv4(src, dst, self.buffer.as_ref()) == 0
    }

    /// True when the checksum verifies over the IPv6 pseudo-header.
    #[must_use]
    #[inline]
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::tcp_ipv6(src, dst, self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port (checksum untouched; see [`Packet::rewrite_src_port`]).
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, v: SeqNum) {
        set_u32(self.buffer.as_mut(), field::SEQ_NUM, v.0);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, v: SeqNum) {
        set_u32(self.buffer.as_mut(), field::ACK_NUM, v.0);
    }

    /// Sets the header length in bytes: must be a multiple of 4 in `20..=60` and
    /// not beyond the buffer (`BadHeaderLength` otherwise, nothing written).
    /// Reserved bits are preserved.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) -> Result<()> {
        let b = self.buffer.as_mut();
        if !(HEADER_LEN..=MAX_HEADER_LEN).contains(&len) || !len.is_multiple_of(4) || len > b.len()
        {
            return Err(Error::BadHeaderLength);
        }
        // Fits in 4 bits: 5..=15.
        let words = (len / 4) as u8;
        b[field::DATA_OFF] = (words << 4) | (b[field::DATA_OFF] & 0x0f);
        Ok(())
    }

    /// Sets the control bits (reserved bits and data offset untouched).
    #[inline]
    pub fn set_flags(&mut self, f: Flags) {
        self.buffer.as_mut()[field::FLAGS] = f.0;
    }

    /// Sets the window.
    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::WIN_SIZE, v);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, v);
    }

    /// The option area, writable (length is fixed by the data offset).
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS_START..hl]
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }

    /// Writes a 16-bit field at an even offset and fixes the checksum (RFC 1624).
    #[inline]
    fn rewrite_u16(&mut self, off: usize, v: u16) {
        let old = u16_at(self.buffer.as_ref(), off);
        let c = checksum::update_u16(self.checksum(), old, v);
        set_u16(self.buffer.as_mut(), off, v);
        self.set_checksum(c);
    }

    /// Writes a 32-bit field at an even offset and fixes the checksum (RFC 1624).
    #[inline]
    fn rewrite_u32(&mut self, off: usize, v: u32) {
        let old = u32_at(self.buffer.as_ref(), off);
        let c = checksum::update_u32(self.checksum(), old, v);
        set_u32(self.buffer.as_mut(), off, v);
        self.set_checksum(c);
    }

    /// Sets the source port, updating the checksum incrementally.
    #[inline]
    pub fn rewrite_src_port(&mut self, v: u16) {
        self.rewrite_u16(field::SRC_PORT, v);
    }

    /// Sets the destination port, updating the checksum incrementally.
    #[inline]
    pub fn rewrite_dst_port(&mut self, v: u16) {
        self.rewrite_u16(field::DST_PORT, v);
    }

    /// Sets the sequence number, updating the checksum incrementally.
    #[inline]
    pub fn rewrite_seq(&mut self, v: SeqNum) {
        self.rewrite_u32(field::SEQ_NUM, v.0);
    }

    /// Sets the acknowledgment number, updating the checksum incrementally.
    #[inline]
    pub fn rewrite_ack(&mut self, v: SeqNum) {
        self.rewrite_u32(field::ACK_NUM, v.0);
    }

    /// Sets the window, updating the checksum incrementally.
    #[inline]
    pub fn rewrite_window(&mut self, v: u16) {
        self.rewrite_u16(field::WIN_SIZE, v);
    }

    /// Sets the control bits, updating the checksum incrementally.
    #[inline]
    pub fn rewrite_flags(&mut self, f: Flags) {
        let b = self.buffer.as_ref();
        let word = (u16::from(b[field::DATA_OFF]) << 8) | u16::from(f.0);
        self.rewrite_u16(field::OFF_FLAGS, word);
    }

    /// Sets the urgent pointer, updating the checksum incrementally.
    #[inline]
    pub fn rewrite_urgent_at(&mut self, v: u16) {
        self.rewrite_u16(field::URGENT, v);
    }

    /// The IPv4 pseudo-header (RFC 9293 §3.1) covers the addresses: call this after
    /// NAT-ing `old` to `new` (source or destination) in the IP header.
    #[inline]
    pub fn update_checksum_for_ipv4_change(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let c = checksum::update_ipv4(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// IPv6 counterpart of [`Packet::update_checksum_for_ipv4_change`]
    /// (RFC 8200 §8.1 pseudo-header).
    #[inline]
    pub fn update_checksum_for_ipv6_change(&mut self, old: Ipv6Addr, new: Ipv6Addr) {
        let c = checksum::update_ipv6(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// The pseudo-header carries the segment length: call this when the segment
    /// length changed from `old_len` to `new_len` by other means than the
    /// `rewrite` module (which does it itself). Valid for IPv4 (16-bit length) and
    /// IPv6 (32-bit length) alike: for IPv4 lengths the upper word is zero.
    #[inline]
    pub fn update_checksum_for_len_change(&mut self, old_len: u32, new_len: u32) {
        let c = checksum::update_u32(self.checksum(), old_len, new_len);
        self.set_checksum(c);
    }

    /// Computes and stores the checksum over the IPv4 pseudo-header.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::tcp_ipv4(src, dst, self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Computes and stores the checksum over the IPv6 pseudo-header.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum::tcp_ipv6(src, dst, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// An owned TCP header description for emitting (options are borrowed bytes).
///
/// `emit` writes the 20-byte header plus `options` padded with zeros (EOL, RFC
/// 9293 §3.1 "the padding is composed of zeros") to a multiple of 4, leaves the
/// checksum field zero and does not touch the payload: copy the payload after
/// the header, then call [`Packet::fill_checksum_v4`]/[`Packet::fill_checksum_v6`]
/// on the `buffer_len()`-byte segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: SeqNum,
    /// Acknowledgment number.
    pub ack_number: SeqNum,
    /// Control bits.
    pub flags: Flags,
    /// Window (unscaled).
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
    /// Option bytes (at most 40 once padded).
    pub options: &'a [u8],
    /// Payload length that follows the header.
    pub payload_len: usize,
}

impl<'a> TcpRepr<'a> {
    /// Parses a whole segment (validated like [`Packet::new_checked`]); `options`
    /// is the full option area, padding included.
    pub fn parse(segment: &'a [u8]) -> Result<TcpRepr<'a>> {
        let p = Packet::new_checked(segment)?;
        let hl = p.header_len();
        Ok(TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
            urgent_at: p.urgent_at(),
            options: &segment[HEADER_LEN..hl],
            payload_len: segment.len() - hl,
        })
    }

    /// Header length in bytes: 20 + options rounded up to 4.
    #[must_use]
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len().next_multiple_of(4)
    }

    /// Header + payload length.
    #[must_use]
    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header into `buf[..header_len()]`, returning `header_len()`.
    /// `NoSpace` when the options exceed 40 bytes or `buf` is shorter than the
    /// header. Checksum field is written as zero.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let hl = self.header_len();
        if hl > MAX_HEADER_LEN || buf.len() < hl {
            return Err(Error::NoSpace);
        }
        set_u16(buf, field::SRC_PORT, self.src_port);
        set_u16(buf, field::DST_PORT, self.dst_port);
        set_u32(buf, field::SEQ_NUM, self.seq_number.0);
        set_u32(buf, field::ACK_NUM, self.ack_number.0);
        buf[field::DATA_OFF] = ((hl / 4) as u8) << 4;
        buf[field::FLAGS] = self.flags.0;
        set_u16(buf, field::WIN_SIZE, self.window_len);
        set_u16(buf, field::CHECKSUM, 0);
        set_u16(buf, field::URGENT, self.urgent_at);
        let o = field::OPTIONS_START;
        buf[o..o + self.options.len()].copy_from_slice(self.options);
        // RFC 9293 §3.1: padding is zeros.
        buf[o + self.options.len()..hl].fill(0);
        Ok(hl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// A Linux 6.x SYN (captured with tcpdump on loopback, `nc 127.0.0.1 5201`):
    /// 45810 → 5201, MSS 65495, SACK_PERM, TS val 0x8ad2ea3f ecr 0, NOP, WS 7.
    const SYN: [u8; 40] = [
        0xb2, 0xf2, 0x14, 0x51, 0x6a, 0x1c, 0x4e, 0x5d, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xff,
        0xd7, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0xff, 0xd7, 0x04, 0x02, 0x08, 0x0a, 0x8a, 0xd2,
        0xea, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];
    const LO: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

    fn syn() -> [u8; 40] {
        let mut s = SYN;
        Packet::new_unchecked(&mut s[..]).fill_checksum_v4(LO, LO);
        s
    }

    #[test]
    fn parse_linux_syn() {
        let s = syn();
        let p = Packet::new_checked(&s[..]).unwrap();
        assert_eq!(p.src_port(), 45810);
        assert_eq!(p.dst_port(), 5201);
        assert_eq!(p.seq_number(), SeqNum(0x6a1c_4e5d));
        assert_eq!(p.ack_number(), SeqNum(0));
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), Flags::SYN);
        assert!(p.flags().is_syn_only());
        assert_eq!(p.window_len(), 65495);
        assert_eq!(p.options().len(), 20);
        assert_eq!(p.options()[..4], [2, 4, 0xff, 0xd7]);
        assert!(p.payload().is_empty());
        assert_eq!(p.segment_len(), 1);
        assert!(p.verify_checksum_v4(LO, LO));
        assert!(!p.verify_checksum_v4(LO, Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(
            std::format!("{:?}", Flags::SYN | Flags::ACK),
            "Flags(SYN|ACK)"
        );
    }

    #[test]
    fn bad_lengths() {
        assert_eq!(
            Packet::new_checked(&SYN[..19]).unwrap_err(),
            Error::Truncated
        );
        // Data offset 10 words but only 39 bytes.
        assert_eq!(
            Packet::new_checked(&SYN[..39]).unwrap_err(),
            Error::BadHeaderLength
        );
        let mut s = SYN;
        s[12] = 0x40; // data offset 4
        assert_eq!(
            Packet::new_checked(&s[..]).unwrap_err(),
            Error::BadHeaderLength
        );
        assert_eq!(
            Packet::new_checked(&SYN[..20]).unwrap_err(),
            Error::BadHeaderLength
        );
        let mut s = SYN;
        let mut p = Packet::new_checked(&mut s[..]).unwrap();
        assert_eq!(p.set_header_len(44), Err(Error::BadHeaderLength));
        assert_eq!(p.set_header_len(22), Err(Error::BadHeaderLength));
        assert_eq!(p.set_header_len(16), Err(Error::BadHeaderLength));
        p.set_header_len(24).unwrap();
        assert_eq!(p.options().len(), 4);
        assert_eq!(p.payload().len(), 16);
    }

    #[test]
    fn rewrites_keep_checksum() {
        let mut s = syn();
        let mut p = Packet::new_checked(&mut s[..]).unwrap();
        p.rewrite_src_port(1);
        p.rewrite_dst_port(0xffff);
        p.rewrite_seq(SeqNum(0xdead_beef));
        p.rewrite_ack(SeqNum(7));
        p.rewrite_window(0);
        p.rewrite_flags(Flags::SYN | Flags::ACK | Flags::ECE);
        p.rewrite_urgent_at(3);
        assert!(p.verify_checksum_v4(LO, LO));
        let new = Ipv4Addr::new(10, 1, 2, 3);
        p.update_checksum_for_ipv4_change(LO, new);
        assert!(p.verify_checksum_v4(new, LO));
        let a = Ipv6Addr::LOCALHOST;
        let b: Ipv6Addr = "2001:db8::1".parse().unwrap();
        p.fill_checksum_v6(a, a);
        assert!(p.verify_checksum_v6(a, a));
        p.update_checksum_for_ipv6_change(a, b);
        assert!(p.verify_checksum_v6(a, b));
        assert_eq!(p.flags(), Flags::SYN | Flags::ACK | Flags::ECE);
        assert_eq!(p.header_len(), 40);
    }

    #[test]
    fn repr_roundtrip() {
        let s = syn();
        let r = TcpRepr::parse(&s).unwrap();
        assert_eq!(r.buffer_len(), 40);
        let mut out = [0u8; 40];
        assert_eq!(r.emit(&mut out), Ok(40));
        Packet::new_unchecked(&mut out[..]).fill_checksum_v4(LO, LO);
        assert_eq!(out, s);
        assert_eq!(r.emit(&mut out[..39]), Err(Error::NoSpace));
        let big = [1u8; 41];
        let r = TcpRepr { options: &big, ..r };
        assert_eq!(r.emit(&mut [0u8; 80]), Err(Error::NoSpace));
        // Padding with zeros.
        let r = TcpRepr {
            options: &[1, 3, 3, 7, 1],
            ..r
        };
        let mut out = [0xaau8; 28];
        assert_eq!(r.emit(&mut out), Ok(28));
        assert_eq!(out[20..], [1, 3, 3, 7, 1, 0, 0, 0]);
    }

    proptest! {
        #[test]
        fn view_never_panics(data in prop::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(),
                    p.flags(), p.window_len(), p.checksum(), p.urgent_at(), p.reserved());
                prop_assert_eq!(p.options().len() + p.payload().len() + 20, data.len());
                let _ = p.segment_len();
                let _ = p.verify_checksum_v4(LO, LO);
            }
        }

        #[test]
        fn repr_emit_parses_back(
            sp: u16, dp: u16, seq: u32, ack: u32, flags: u8, win: u16, urg: u16,
            words in 0usize..=10, payload in prop::collection::vec(any::<u8>(), 0..64),
            optbytes in prop::collection::vec(any::<u8>(), 40),
        ) {
            let opts = &optbytes[..words * 4];
            let r = TcpRepr {
                src_port: sp, dst_port: dp, seq_number: SeqNum(seq), ack_number: SeqNum(ack),
                flags: Flags::from_bits(flags), window_len: win, urgent_at: urg,
                options: opts, payload_len: payload.len(),
            };
            let mut buf: Vec<u8> = std::vec![0; r.buffer_len()];
            let hl = r.emit(&mut buf).unwrap();
            buf[hl..].copy_from_slice(&payload);
            Packet::new_unchecked(&mut buf[..]).fill_checksum_v4(LO, LO);
            prop_assert!(Packet::new_checked(&buf[..]).unwrap().verify_checksum_v4(LO, LO));
            prop_assert_eq!(TcpRepr::parse(&buf).unwrap(), r);
        }

        #[test]
        fn incremental_equals_full(
            seg in prop::collection::vec(any::<u8>(), 20..80),
            sp: u16, seq: u32, ack: u32, win: u16, a: [u8; 4], b: [u8; 4],
        ) {
            let mut seg = seg;
            seg[12] = 0x50;
            let (a, b) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            let mut p = Packet::new_checked(&mut seg[..]).unwrap();
            p.fill_checksum_v4(a, a);
            p.rewrite_src_port(sp);
            p.rewrite_seq(SeqNum(seq));
            p.rewrite_ack(SeqNum(ack));
            p.rewrite_window(win);
            p.update_checksum_for_ipv4_change(a, b);
            let inc = p.checksum();
            prop_assert!(p.verify_checksum_v4(b, a));
            p.fill_checksum_v4(b, a);
            prop_assert_eq!(inc, p.checksum());
        }
    }
}
