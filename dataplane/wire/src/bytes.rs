//! Big-endian field access on already-length-checked slices.
//!
//! These index the slice directly: callers guarantee the range through a prior
//! `check_len`/`new_checked`, which is what makes accessors panic-free. Each takes the
//! offset of the first byte.

#[inline(always)]
pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[inline(always)]
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[inline(always)]
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

#[inline(always)]
pub(crate) fn set_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_be_bytes());
}

/// Length check: `Ok(())` when `b` holds at least `n` bytes.
#[inline(always)]
pub(crate) fn need(b: &[u8], n: usize) -> crate::Result<()> {
    if b.len() >= n {
        Ok(())
    } else {
        Err(crate::Error::Truncated)
    }
}
