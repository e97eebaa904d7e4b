//! DSS, the Data Sequence Signal (RFC 8684 §3.3).
//!
//! ```text
//! [30][len][0x2<<4 | rsv][rsv(3) F m M a A]
//! [Data ACK 4|8]                      if A   (8 if a)
//! [DSN 4|8][SSN 4][data-level len 2]  if M   (DSN 8 if m)
//! [checksum 2]                        if M and negotiated (inferred from length)
//! ```
//! `len = 4 + {0,4,8} + {0,10,14} + {0,2}`, at most 28. Every combination of the
//! five flags parses and round-trips, with two documented restrictions:
//! * `a` / `m` without `A` / `M` are ignored (§3.3: "the flags 'a' and 'm' only
//!   have meaning if the corresponding 'A' or 'M' flags are set; otherwise, they
//!   will be ignored") and not re-emitted;
//! * `F` without `M` is [`Error::BadFlags`]: the DATA_FIN occupies a byte of the
//!   data sequence space and is signalled through a mapping (§3.3.3; a data-less
//!   DATA_FIN is a mapping with SSN 0 and length 1). Linux never sends it (and
//!   ignores `F` when it has no mapping).
//!
//! The width of every 32/64-bit field is preserved ([`DataSeqField`]), so a
//! translator that rewrites DSNs in place keeps the option length.

use crate::bytes::{set_u16, set_u32, set_u64, u16_at, u32_at, u64_at};
use crate::seq::DataSeq;
use crate::{Error, Result};

use super::{check_header, emit_header, subtype};

mod field {
    pub const FLAGS: usize = 3;
    pub const BODY: usize = 4;
}

/// The DSS flags byte (byte 3), RFC 8684 §3.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DssFlags(pub u8);

impl DssFlags {
    /// A: Data ACK present.
    pub const A: u8 = 0x01;
    /// a: Data ACK is 8 octets (else 4).
    pub const A8: u8 = 0x02;
    /// M: DSN, SSN, data-level length (and checksum if negotiated) present.
    pub const M: u8 = 0x04;
    /// m: DSN is 8 octets (else 4).
    pub const M8: u8 = 0x08;
    /// F: DATA_FIN.
    pub const F: u8 = 0x10;

    /// `A` is set.
    #[must_use]
    #[inline]
    pub const fn data_ack(self) -> bool {
        self.0 & Self::A != 0
    }

    /// `A` and `a` are set.
    #[must_use]
    #[inline]
    pub const fn data_ack64(self) -> bool {
        self.data_ack() && self.0 & Self::A8 != 0
    }

    /// `M` is set.
    #[must_use]
    #[inline]
    pub const fn mapping(self) -> bool {
        self.0 & Self::M != 0
    }

    /// `M` and `m` are set.
    #[must_use]
    #[inline]
    pub const fn dsn64(self) -> bool {
        self.mapping() && self.0 & Self::M8 != 0
    }

    /// `F` is set.
    #[must_use]
    #[inline]
    pub const fn data_fin(self) -> bool {
        self.0 & Self::F != 0
    }

    /// Length of the Data ACK field (0, 4 or 8).
    #[must_use]
    #[inline]
    pub const fn ack_len(self) -> usize {
        if !self.data_ack() {
            0
        } else if self.data_ack64() {
            8
        } else {
            4
        }
    }

    /// Length of the DSN field (0, 4 or 8).
    #[must_use]
    #[inline]
    pub const fn dsn_len(self) -> usize {
        if !self.mapping() {
            0
        } else if self.dsn64() {
            8
        } else {
            4
        }
    }

    /// Option length these flags demand without a checksum.
    #[must_use]
    #[inline]
    pub const fn base_len(self) -> usize {
        4 + self.ack_len()
            + if self.mapping() {
                self.dsn_len() + 6
            } else {
                0
            }
    }
}

/// `DssFlags::base_len` for every value of the four length-bearing flags (A a M m):
/// one table load instead of four branches on the per-packet path.
const BASE_LEN: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = DssFlags(i as u8).base_len() as u8;
        i += 1;
    }
    t
};

/// A 32- or 64-bit data sequence number or Data ACK, as it was on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataSeqField {
    /// A 4-octet value: the low 32 bits, to be expanded by the receiver.
    Bits32(u32),
    /// An 8-octet value.
    Bits64(DataSeq),
}

/// A Data ACK (RFC 8684 §3.3.2), with its wire width.
pub type DataAck = DataSeqField;
/// A mapping's data sequence number (RFC 8684 §3.3.1), with its wire width.
pub type Dsn = DataSeqField;

impl DataSeqField {
    /// Builds a field of the requested width from a full value (the 32-bit form
    /// keeps the low 32 bits).
    #[must_use]
    #[inline]
    pub const fn new(value: DataSeq, wide: bool) -> Self {
        if wide {
            Self::Bits64(value)
        } else {
            Self::Bits32(value.low32())
        }
    }

    /// `true` for the 8-octet form.
    #[must_use]
    #[inline]
    pub const fn is_64(self) -> bool {
        matches!(self, Self::Bits64(_))
    }

    /// 4 or 8.
    #[must_use]
    #[inline]
    pub const fn wire_len(self) -> usize {
        if self.is_64() { 8 } else { 4 }
    }

    /// The value as carried (a 32-bit value zero-extended).
    #[must_use]
    #[inline]
    pub const fn raw(self) -> u64 {
        match self {
            Self::Bits32(v) => v as u64,
            Self::Bits64(v) => v.0,
        }
    }

    /// The full 64-bit value: a 64-bit field as is, a 32-bit one expanded around
    /// `reference` with [`DataSeq::expand32`] (RFC 8684 §3.3.1; the reference is
    /// the expected DSN for mappings, SND.UNA for Data ACKs).
    #[must_use]
    #[inline]
    pub const fn expand(self, reference: DataSeq) -> DataSeq {
        match self {
            Self::Bits32(v) => reference.expand32(v),
            Self::Bits64(v) => v,
        }
    }

    /// The same width holding `value` (truncated to 32 bits for the short form).
    #[must_use]
    #[inline]
    pub const fn with_value(self, value: DataSeq) -> Self {
        Self::new(value, self.is_64())
    }

    #[inline]
    fn write(self, b: &mut [u8], off: usize) {
        match self {
            Self::Bits32(v) => set_u32(b, off, v),
            Self::Bits64(v) => set_u64(b, off, v.0),
        }
    }

    #[inline]
    fn read(b: &[u8], off: usize, wide: bool) -> Self {
        if wide {
            Self::Bits64(DataSeq(u64_at(b, off)))
        } else {
            Self::Bits32(u32_at(b, off))
        }
    }
}

/// A data sequence mapping (RFC 8684 §3.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// Data sequence number of the first mapped byte.
    pub dsn: Dsn,
    /// Subflow sequence number of the first mapped byte, **relative** to the
    /// subflow's initial sequence number (SYN = 0, first data byte = 1).
    pub ssn: u32,
    /// Data-level length; 0 is the infinite mapping (§3.3.1); a DATA_FIN counts
    /// one byte (§3.3.3).
    pub data_len: u16,
    /// DSS checksum, present iff checksums were negotiated (inferred from the
    /// option length).
    pub checksum: Option<u16>,
}

impl Mapping {
    /// Option bytes this mapping takes (DSN + SSN 4 + length 2 + checksum).
    #[must_use]
    #[inline]
    pub const fn wire_len(&self) -> usize {
        self.dsn.wire_len() + 6 + if self.checksum.is_some() { 2 } else { 0 }
    }
}

/// A view over a DSS option. After [`new_checked`](Self::new_checked) succeeds no
/// accessor or setter panics.
#[derive(Debug, Clone)]
pub struct Dss<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Dss<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` and validates it with [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let v = Self::new_unchecked(buffer);
        v.check_len()?;
        Ok(v)
    }

    /// Checks kind 30, subtype 2, that the length byte is what the flags demand
    /// (plus 2 for a checksum, only with a mapping), that the buffer holds the
    /// whole option, and that `F` comes with `M`.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        self.checked().map(|_| ())
    }

    /// The check, returning the flags and the option length it validated.
    #[inline]
    fn checked(&self) -> Result<(DssFlags, usize)> {
        let b = self.buffer.as_ref();
        let len = check_header(b, subtype::DSS)?;
        if len < 4 {
            return Err(Error::BadLength);
        }
        let f = DssFlags(b[field::FLAGS]);
        let base = usize::from(BASE_LEN[usize::from(f.0 & 0x0f)]);
        // RFC 8684 §3.3: the checksum is only present with a mapping.
        if len != base && !(f.mapping() && len == base + 2) {
            return Err(Error::BadLength);
        }
        // RFC 8684 §3.3.3: DATA_FIN is signalled through a mapping.
        if f.data_fin() && !f.mapping() {
            return Err(Error::BadFlags);
        }
        Ok((f, len))
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.buffer.as_ref()[1])
    }

    /// The flags byte.
    #[must_use]
    #[inline]
    pub fn flags(&self) -> DssFlags {
        DssFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// The DATA_FIN flag.
    #[must_use]
    #[inline]
    pub fn data_fin(&self) -> bool {
        self.flags().data_fin()
    }

    /// Whether a checksum is present (length = flags' base length + 2).
    #[must_use]
    #[inline]
    pub fn has_checksum(&self) -> bool {
        self.flags().mapping() && self.len() == self.flags().base_len() + 2
    }

    #[inline]
    fn dsn_off(&self) -> usize {
        field::BODY + self.flags().ack_len()
    }

    /// The Data ACK, if `A` is set.
    #[must_use]
    #[inline]
    pub fn data_ack(&self) -> Option<DataAck> {
        let f = self.flags();
        f.data_ack()
            .then(|| DataSeqField::read(self.buffer.as_ref(), field::BODY, f.data_ack64()))
    }

    /// The mapping, if `M` is set.
    #[must_use]
    #[inline]
    pub fn mapping(&self) -> Option<Mapping> {
        let f = self.flags();
        if !f.mapping() {
            return None;
        }
        let b = self.buffer.as_ref();
        let off = self.dsn_off();
        let dsn = DataSeqField::read(b, off, f.dsn64());
        let off = off + f.dsn_len();
        Some(Mapping {
            dsn,
            ssn: u32_at(b, off),
            data_len: u16_at(b, off + 4),
            checksum: self.has_checksum().then(|| u16_at(b, off + 6)),
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Dss<T> {
    /// Rewrites the Data ACK in place, keeping its width (a 32-bit field gets the
    /// low 32 bits); [`Error::Unsupported`] without `A`.
    #[inline]
    pub fn set_data_ack(&mut self, ack: DataSeq) -> Result<()> {
        let f = self.flags();
        if !f.data_ack() {
            return Err(Error::Unsupported);
        }
        DataSeqField::new(ack, f.data_ack64()).write(self.buffer.as_mut(), field::BODY);
        Ok(())
    }

    /// Rewrites the mapping's DSN in place, keeping its width;
    /// [`Error::Unsupported`] without `M`.
    #[inline]
    pub fn set_dsn(&mut self, dsn: DataSeq) -> Result<()> {
        let f = self.flags();
        if !f.mapping() {
            return Err(Error::Unsupported);
        }
        let off = self.dsn_off();
        DataSeqField::new(dsn, f.dsn64()).write(self.buffer.as_mut(), off);
        Ok(())
    }

    /// Rewrites the relative subflow sequence number; [`Error::Unsupported`]
    /// without `M`.
    #[inline]
    pub fn set_ssn(&mut self, ssn: u32) -> Result<()> {
        let f = self.flags();
        if !f.mapping() {
            return Err(Error::Unsupported);
        }
        let off = self.dsn_off() + f.dsn_len();
        set_u32(self.buffer.as_mut(), off, ssn);
        Ok(())
    }

    /// Rewrites the data-level length; [`Error::Unsupported`] without `M`.
    #[inline]
    pub fn set_data_len(&mut self, len: u16) -> Result<()> {
        let f = self.flags();
        if !f.mapping() {
            return Err(Error::Unsupported);
        }
        let off = self.dsn_off() + f.dsn_len() + 4;
        set_u16(self.buffer.as_mut(), off, len);
        Ok(())
    }

    /// Rewrites the checksum; [`Error::Unsupported`] if the option has none.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) -> Result<()> {
        if !self.has_checksum() {
            return Err(Error::Unsupported);
        }
        let f = self.flags();
        let off = self.dsn_off() + f.dsn_len() + 6;
        set_u16(self.buffer.as_mut(), off, csum);
        Ok(())
    }
}

/// An owned DSS option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DssRepr {
    /// The Data ACK (flag `A`, width flag `a`).
    pub data_ack: Option<DataAck>,
    /// The mapping (flag `M`, width flag `m`, checksum by length).
    pub mapping: Option<Mapping>,
    /// DATA_FIN (flag `F`); requires a mapping.
    pub data_fin: bool,
}

impl DssRepr {
    /// Parses a checked view.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(v: &Dss<T>) -> Result<Self> {
        let (f, len) = v.checked()?;
        // One pass over the checked option (this runs on every data segment): the
        // fields follow in order (RFC 8684 §3.3); `b` is exactly the option.
        let b = &v.buffer.as_ref()[..len];
        let mut off = field::BODY;
        let data_ack = if f.data_ack() {
            let a = DataSeqField::read(b, off, f.data_ack64());
            off += a.wire_len();
            Some(a)
        } else {
            None
        };
        let mapping = if f.mapping() {
            let dsn = DataSeqField::read(b, off, f.dsn64());
            off += dsn.wire_len();
            // checked() admitted exactly base_len or base_len + 2 (checksum).
            let checksum = (len == off + 8).then(|| u16_at(b, off + 6));
            Some(Mapping {
                dsn,
                ssn: u32_at(b, off),
                data_len: u16_at(b, off + 4),
                checksum,
            })
        } else {
            None
        };
        Ok(Self {
            data_ack,
            mapping,
            data_fin: f.data_fin(),
        })
    }

    /// The canonical flags byte for this repr.
    #[must_use]
    #[inline]
    pub const fn flags(&self) -> DssFlags {
        let mut f = 0;
        if let Some(a) = self.data_ack {
            f |= DssFlags::A | if a.is_64() { DssFlags::A8 } else { 0 };
        }
        if let Some(m) = self.mapping {
            f |= DssFlags::M | if m.dsn.is_64() { DssFlags::M8 } else { 0 };
        }
        if self.data_fin {
            f |= DssFlags::F;
        }
        DssFlags(f)
    }

    /// The option length (4 to 28).
    #[must_use]
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        4 + match self.data_ack {
            Some(a) => a.wire_len(),
            None => 0,
        } + match self.mapping {
            Some(m) => m.wire_len(),
            None => 0,
        }
    }

    /// The mapping is the infinite mapping (data-level length 0, §3.3.1): the rest
    /// of the connection is plain TCP on this subflow.
    #[must_use]
    #[inline]
    pub const fn is_infinite_mapping(&self) -> bool {
        matches!(self.mapping, Some(Mapping { data_len: 0, .. }))
    }

    /// Writes the option; [`Error::BadFlags`] for a DATA_FIN without a mapping,
    /// [`Error::NoSpace`] if `buf` is short. Cheap enough to call per packet: it
    /// writes `buffer_len()` bytes and nothing else.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if self.data_fin && self.mapping.is_none() {
            return Err(Error::BadFlags);
        }
        let len = self.buffer_len();
        let b = emit_header(buf, len, subtype::DSS, 0)?;
        b[field::FLAGS] = self.flags().0;
        let mut off = field::BODY;
        if let Some(a) = self.data_ack {
            a.write(b, off);
            off += a.wire_len();
        }
        if let Some(m) = self.mapping {
            m.dsn.write(b, off);
            off += m.dsn.wire_len();
            set_u32(b, off, m.ssn);
            set_u16(b, off + 4, m.data_len);
            if let Some(c) = m.checksum {
                set_u16(b, off + 6, c);
            }
        }
        Ok(len)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::hex;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn captured_dss() {
        // v4-path1.pcap packet 4: server data, 32-bit DATA_ACK + 64-bit mapping
        // (A|M|m, len 22), mapping IDSN_B+1, SSN 1, 3072 bytes over 3 segments.
        let b = hex("1e16200d92671776557de600ee660d91000000010c00");
        let v = Dss::new_checked(&b[..]).unwrap();
        let r = DssRepr::parse(&v).unwrap();
        assert_eq!(r.data_ack, Some(DataSeqField::Bits32(0x9267_1776)));
        assert_eq!(
            r.mapping,
            Some(Mapping {
                dsn: DataSeqField::Bits64(DataSeq(0x557d_e600_ee66_0d91)),
                ssn: 1,
                data_len: 0x0c00,
                checksum: None
            })
        );
        assert!(!r.data_fin && !r.is_infinite_mapping());
        // The 32-bit ACK expands around the client's IDSN + 1.
        assert_eq!(
            r.data_ack.unwrap().expand(DataSeq(0xa23d_5f11_9267_1700)),
            DataSeq(0xa23d_5f11_9267_1776)
        );
        // v4-path1.pcap packet 7: DATA_ACK only, 64-bit (A|a, len 12).
        let b = hex("1e0c2003557de600ee661321");
        let r = DssRepr::parse(&Dss::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            r.data_ack,
            Some(DataSeqField::Bits64(DataSeq(0x557d_e600_ee66_1321)))
        );
        assert_eq!(r.mapping, None);
        // v4-path2.pcap packet 4: DATA_ACK only, 32-bit (A, len 8).
        let b = hex("1e08200192671776");
        let r = DssRepr::parse(&Dss::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.data_ack, Some(DataSeqField::Bits32(0x9267_1776)));
        // v4-path1.pcap packet 12: data-less DATA_FIN (A|a|M|m|F, len 26),
        // SSN 0, length 1.
        let b = hex("1e1a201f557de600ee661991a23d5f119267196a000000000001");
        let r = DssRepr::parse(&Dss::new_checked(&b[..]).unwrap()).unwrap();
        assert!(r.data_fin);
        let m = r.mapping.unwrap();
        assert_eq!((m.ssn, m.data_len, m.checksum), (0, 1, None));
        assert_eq!(r.buffer_len(), 26);
        let mut out = [0u8; 26];
        assert_eq!(r.emit(&mut out), Ok(26));
        assert_eq!(&out[..], &b[..]);
    }

    #[test]
    fn every_flag_combination() {
        // All 32 values of F m M a A, with and without a checksum.
        for flags in 0u8..32 {
            let f = DssFlags(flags);
            for csum in [false, true] {
                let len = f.base_len() + if csum { 2 } else { 0 };
                let mut b = std::vec![0u8; len];
                b[0] = 30;
                b[1] = len as u8;
                b[2] = 0x20;
                b[3] = flags;
                let got = Dss::new_checked(&b[..]).and_then(|v| DssRepr::parse(&v));
                if csum && !f.mapping() {
                    assert_eq!(got, Err(Error::BadLength), "flags {flags:#x} csum");
                } else if f.data_fin() && !f.mapping() {
                    assert_eq!(got, Err(Error::BadFlags), "flags {flags:#x}");
                } else {
                    let r = got.unwrap();
                    assert_eq!(r.buffer_len(), len);
                    let mut out = [0u8; 28];
                    assert_eq!(r.emit(&mut out), Ok(len));
                    // a/m without A/M are dropped on emit; everything else is kept.
                    let mut want = b.clone();
                    if !f.data_ack() {
                        want[3] &= !DssFlags::A8;
                    }
                    if !f.mapping() {
                        want[3] &= !DssFlags::M8;
                    }
                    assert_eq!(&out[..len], &want[..], "flags {flags:#x}");
                    assert_eq!(r.mapping.is_some_and(|m| m.checksum.is_some()), csum);
                }
            }
        }
    }

    #[test]
    fn bad_lengths() {
        // A|a|M|m needs 26 or 28.
        for len in [4usize, 8, 12, 18, 22, 24, 25, 27, 29, 30] {
            let mut b = std::vec![0u8; len];
            b[0] = 30;
            b[1] = len as u8;
            b[2] = 0x20;
            b[3] = 0x0f;
            assert_eq!(
                Dss::new_checked(&b[..]).err(),
                Some(Error::BadLength),
                "len {len}"
            );
        }
        assert_eq!(
            Dss::new_checked(&[30u8, 3, 0x20][..]).err(),
            Some(Error::BadLength)
        );
        assert_eq!(
            Dss::new_checked(&[30u8, 8, 0x20, 1, 0, 0][..]).err(),
            Some(Error::Truncated)
        );
        // No flags: exactly 4.
        assert!(Dss::new_checked(&[30u8, 4, 0x20, 0][..]).is_ok());
        assert_eq!(
            Dss::new_checked(&[30u8, 6, 0x20, 0, 0, 0][..]).err(),
            Some(Error::BadLength)
        );
        // F alone.
        assert_eq!(
            Dss::new_checked(&[30u8, 4, 0x20, 0x10][..]).err(),
            Some(Error::BadFlags)
        );
        let r = DssRepr {
            data_fin: true,
            ..DssRepr::default()
        };
        assert_eq!(r.emit(&mut [0u8; 8]), Err(Error::BadFlags));
        let r = DssRepr {
            data_ack: Some(DataSeqField::Bits32(1)),
            ..DssRepr::default()
        };
        assert_eq!(r.emit(&mut [0u8; 7]), Err(Error::NoSpace));
    }

    #[test]
    fn setters_and_infinite_mapping() {
        let mut b = hex("1e1a200f557de600ee661991a23d5f11926717760000000101f4");
        let mut v = Dss::new_checked(&mut b[..]).unwrap();
        v.set_data_ack(DataSeq(1)).unwrap();
        v.set_dsn(DataSeq(2)).unwrap();
        v.set_ssn(3).unwrap();
        v.set_data_len(0).unwrap();
        assert_eq!(v.set_checksum(9), Err(Error::Unsupported));
        let r = DssRepr::parse(&v).unwrap();
        assert_eq!(r.data_ack, Some(DataSeqField::Bits64(DataSeq(1))));
        assert!(r.is_infinite_mapping());
        let m = r.mapping.unwrap();
        assert_eq!((m.dsn, m.ssn), (DataSeqField::Bits64(DataSeq(2)), 3));

        // 32-bit fields and a checksum (A|M, len 20).
        let r = DssRepr {
            data_ack: Some(DataSeqField::Bits32(10)),
            mapping: Some(Mapping {
                dsn: DataSeqField::Bits32(20),
                ssn: 1,
                data_len: 5,
                checksum: Some(7),
            }),
            data_fin: false,
        };
        let mut buf = [0u8; 20];
        assert_eq!(r.emit(&mut buf), Ok(20));
        let mut v = Dss::new_checked(&mut buf[..]).unwrap();
        v.set_data_ack(DataSeq(0x1_0000_0005)).unwrap();
        v.set_dsn(DataSeq(0x2_0000_0006)).unwrap();
        v.set_checksum(0xabcd).unwrap();
        let r = DssRepr::parse(&v).unwrap();
        assert_eq!(r.data_ack, Some(DataSeqField::Bits32(5)));
        assert_eq!(r.mapping.unwrap().dsn, DataSeqField::Bits32(6));
        assert_eq!(r.mapping.unwrap().checksum, Some(0xabcd));

        let mut b = [30u8, 4, 0x20, 0];
        let mut v = Dss::new_checked(&mut b[..]).unwrap();
        assert_eq!(v.set_data_ack(DataSeq(1)), Err(Error::Unsupported));
        assert_eq!(v.set_dsn(DataSeq(1)), Err(Error::Unsupported));
        assert_eq!(v.set_ssn(1), Err(Error::Unsupported));
        assert_eq!(v.set_data_len(1), Err(Error::Unsupported));
    }

    #[test]
    fn data_seq_field_helpers() {
        let f = DataSeqField::new(DataSeq(0x1_2345_6789), false);
        assert_eq!(f, DataSeqField::Bits32(0x2345_6789));
        assert_eq!(f.raw(), 0x2345_6789);
        assert_eq!(f.expand(DataSeq(0x1_2345_0000)), DataSeq(0x1_2345_6789));
        assert_eq!(f.with_value(DataSeq(7)), DataSeqField::Bits32(7));
        let w = DataSeqField::new(DataSeq(0x1_2345_6789), true);
        assert_eq!(w.expand(DataSeq(0)), DataSeq(0x1_2345_6789));
        assert_eq!(w.wire_len(), 8);
    }

    #[inline]
    fn arb_field() -> impl Strategy<Value = DataSeqField> {
        prop_oneof![
            any::<u32>().prop_map(DataSeqField::Bits32),
            any::<u64>().prop_map(|v| DataSeqField::Bits64(DataSeq(v))),
        ]
    }

    #[inline]
    pub(crate) fn arb_repr() -> impl Strategy<Value = DssRepr> {
        let mapping = (
            arb_field(),
            any::<u32>(),
            any::<u16>(),
            any::<Option<u16>>(),
        )
            .prop_map(|(dsn, ssn, data_len, checksum)| Mapping {
                dsn,
                ssn,
                data_len,
                checksum,
            });
        (
            prop::option::of(arb_field()),
            prop::option::of(mapping),
            any::<bool>(),
        )
            .prop_map(|(data_ack, mapping, fin)| DssRepr {
                data_ack,
                mapping,
                data_fin: fin && mapping.is_some(),
            })
    }

    proptest! {
        #[test]
        fn round_trip(r in arb_repr()) {
            let mut buf = [0u8; 40];
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(n, r.buffer_len());
            prop_assert!(n <= 28);
            prop_assert_eq!(DssRepr::parse(&Dss::new_checked(&buf[..n]).unwrap()).unwrap(), r);
        }

        #[test]
        fn view_never_panics(data in prop::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(v) = Dss::new_checked(&data[..]) {
                let _ = (v.flags(), v.data_ack(), v.mapping(), v.has_checksum());
                let _ = DssRepr::parse(&v);
            }
        }

        #[test]
        fn setters_never_panic(mut data in prop::collection::vec(any::<u8>(), 0..32), x: u64) {
            if let Ok(mut v) = Dss::new_checked(&mut data[..]) {
                let _ = v.set_data_ack(DataSeq(x));
                let _ = v.set_dsn(DataSeq(x));
                let _ = v.set_ssn(x as u32);
                let _ = v.set_data_len(x as u16);
                let _ = v.set_checksum(x as u16);
            }
        }
    }
}
