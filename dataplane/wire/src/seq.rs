//! Serial-number arithmetic: 32-bit TCP sequence numbers (RFC 1982 style, as TCP
//! uses them) and 64-bit MPTCP data sequence numbers, plus the expansion of a
//! received 32-bit DSN / DATA_ACK to 64 bits (RFC 8684 §3.3.1: "the receiver MUST
//! be able to handle a 32-bit DSN, expanding it relative to its current DSN").

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A 32-bit TCP sequence (or acknowledgement) number. Comparisons are modular:
/// `a < b` iff `b - a` (wrapping) is in `1..2^31`. Not `Ord`: the relation is not
/// transitive over the whole circle.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// The raw value.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Signed distance `self - other`, valid when the two are within 2^31.
    #[must_use]
    pub const fn diff(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// `self` is in the half-open interval `[lo, hi)` (modular).
    #[must_use]
    pub const fn in_range(self, lo: SeqNum, hi: SeqNum) -> bool {
        self.0.wrapping_sub(lo.0) < hi.0.wrapping_sub(lo.0)
    }

    /// The later of two sequence numbers.
    #[must_use]
    pub fn max(self, other: SeqNum) -> SeqNum {
        if self.diff(other) >= 0 { self } else { other }
    }

    /// The earlier of two sequence numbers.
    #[must_use]
    pub fn min(self, other: SeqNum) -> SeqNum {
        if self.diff(other) <= 0 { self } else { other }
    }
}

impl PartialOrd for SeqNum {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl Add<u32> for SeqNum {
    type Output = SeqNum;
    fn add(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_add(rhs))
    }
}

impl AddAssign<u32> for SeqNum {
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl Sub<u32> for SeqNum {
    type Output = SeqNum;
    fn sub(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_sub(rhs))
    }
}

impl Sub<SeqNum> for SeqNum {
    type Output = i32;
    fn sub(self, rhs: SeqNum) -> i32 {
        self.diff(rhs)
    }
}

impl fmt::Debug for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeqNum({})", self.0)
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A 64-bit MPTCP data sequence number (DSN) or DATA_ACK. Comparisons are modular
/// over 2^64 like [`SeqNum`]; in practice a connection never wraps.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DataSeq(pub u64);

impl DataSeq {
    /// The raw value.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The low 32 bits, as sent in a 32-bit DSN / DATA_ACK.
    #[must_use]
    pub const fn low32(self) -> u32 {
        self.0 as u32
    }

    /// Signed distance `self - other`, valid when the two are within 2^63.
    #[must_use]
    pub const fn diff(self, other: DataSeq) -> i64 {
        self.0.wrapping_sub(other.0) as i64
    }

    /// `self` is in `[lo, hi)` (modular).
    #[must_use]
    pub const fn in_range(self, lo: DataSeq, hi: DataSeq) -> bool {
        self.0.wrapping_sub(lo.0) < hi.0.wrapping_sub(lo.0)
    }

    /// Expands a received 32-bit DSN or DATA_ACK to the 64-bit value nearest to
    /// `self` (the receiver's current reference point: expected DSN for mappings,
    /// SND.UNA for DATA_ACKs) — RFC 8684 §3.3.1. The result is the unique value
    /// with those low 32 bits within `[-2^31, 2^31)` of the reference, so it
    /// survives a wrap of the low half in either direction.
    #[must_use]
    pub const fn expand32(self, low: u32) -> DataSeq {
        let delta = low.wrapping_sub(self.0 as u32) as i32;
        DataSeq(self.0.wrapping_add(delta as i64 as u64))
    }

    /// The later of two data sequence numbers.
    #[must_use]
    pub fn max(self, other: DataSeq) -> DataSeq {
        if self.diff(other) >= 0 { self } else { other }
    }
}

impl PartialOrd for DataSeq {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl Add<u64> for DataSeq {
    type Output = DataSeq;
    fn add(self, rhs: u64) -> DataSeq {
        DataSeq(self.0.wrapping_add(rhs))
    }
}

impl AddAssign<u64> for DataSeq {
    fn add_assign(&mut self, rhs: u64) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl Sub<u64> for DataSeq {
    type Output = DataSeq;
    fn sub(self, rhs: u64) -> DataSeq {
        DataSeq(self.0.wrapping_sub(rhs))
    }
}

impl Sub<DataSeq> for DataSeq {
    type Output = i64;
    fn sub(self, rhs: DataSeq) -> i64 {
        self.diff(rhs)
    }
}

impl fmt::Debug for DataSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataSeq({})", self.0)
    }
}

impl fmt::Display for DataSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seq_wraps() {
        let a = SeqNum(u32::MAX - 5);
        let b = a + 10;
        assert_eq!(b, SeqNum(4));
        assert!(a < b);
        assert!(b > a);
        assert_eq!(b - a, 10);
        assert!(SeqNum(2).in_range(a, b));
        assert!(!b.in_range(a, b));
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
    }

    #[test]
    fn expand_across_wrap() {
        let r = DataSeq(0x1_ffff_fff0);
        assert_eq!(r.expand32(0x0000_0010), DataSeq(0x2_0000_0010));
        assert_eq!(r.expand32(0xffff_ff00), DataSeq(0x1_ffff_ff00));
        let r = DataSeq(0x2_0000_0010);
        assert_eq!(r.expand32(0xffff_fff0), DataSeq(0x1_ffff_fff0));
        // Near zero the expansion wraps modulo 2^64 rather than panicking.
        assert_eq!(DataSeq(5).expand32(0xffff_fffe), DataSeq(u64::MAX - 1));
    }

    proptest! {
        #[test]
        fn expand_recovers_any_nearby_value(reference: u64, delta in -(1i64 << 31)..(1i64 << 31)) {
            let v = DataSeq(reference.wrapping_add(delta as u64));
            prop_assert_eq!(DataSeq(reference).expand32(v.low32()), v);
        }

        #[test]
        fn seq_order_is_antisymmetric(a: u32, d in 1u32..(1 << 31)) {
            let a = SeqNum(a);
            let b = a + d;
            prop_assert!(a < b);
            prop_assert!(b > a);
            prop_assert_eq!(b.partial_cmp(&a), Some(Ordering::Greater));
        }
    }
}
