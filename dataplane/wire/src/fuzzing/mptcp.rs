//! Fuzz invariant for [`crate::mptcp::MptcpOption`].
//!
//! Input: one raw MPTCP option (kind 30, length, …). If the first byte is not 30
//! the input is taken as the option body and framed as `[30][2 + len][body]`
//! (when that fits a length byte), so the fuzzer does not waste effort on the
//! kind and length bytes.
//!
//! Whenever [`MptcpOption::parse`] succeeds:
//! 1. `buffer_len()` equals the declared option length (= input length);
//! 2. `emit` writes exactly `buffer_len()` bytes and fails with `NoSpace` on a
//!    buffer one byte shorter;
//! 3. the emitted bytes equal the input except that bits the parser ignores may
//!    be cleared — the low nibble of byte 2 and byte 3 hold all reserved bits
//!    and the DSS `a`/`m` flags, so: bytes other than 2 and 3 are identical, the
//!    subtype nibble is identical, and in bytes 2 and 3 the emitted bits are a
//!    subset of the input bits (canonicalisation only ever clears bits);
//! 4. the emitted bytes parse back to an equal value and re-emit identically
//!    (the emitted form is canonical).

use crate::Error;
use crate::mptcp::{KIND, MptcpOption};

/// Checks the invariants on arbitrary input.
pub fn mptcp_option(data: &[u8]) {
    let mut framed = [0u8; 256];
    let input: &[u8] = if data.first() == Some(&KIND) {
        data
    } else if data.len() <= 253 {
        framed[0] = KIND;
        framed[1] = (data.len() + 2) as u8;
        framed[2..data.len() + 2].copy_from_slice(data);
        &framed[..data.len() + 2]
    } else {
        data
    };
    let Ok(opt) = MptcpOption::parse(input) else {
        return;
    };
    let n = opt.buffer_len();
    assert_eq!(n, input.len(), "buffer_len != declared length");
    assert_eq!(n, usize::from(input[1]), "buffer_len != length byte");

    let mut out = [0u8; 256];
    assert_eq!(
        opt.emit(&mut out[..n - 1]),
        Err(Error::NoSpace),
        "short buffer accepted"
    );
    let written = opt.emit(&mut out).expect("emit of a parsed option");
    assert_eq!(written, n, "emit wrote a different length");
    let out = &out[..n];

    for (i, (&a, &b)) in input.iter().zip(out).enumerate() {
        match i {
            2 => {
                assert_eq!(a >> 4, b >> 4, "subtype changed");
                assert_eq!(b & !a, 0, "byte 2 gained bits");
            }
            3 => assert_eq!(b & !a, 0, "byte 3 gained bits"),
            _ => assert_eq!(a, b, "byte {i} differs"),
        }
    }

    let again = MptcpOption::parse(out).expect("emitted option re-parses");
    assert_eq!(again, opt, "re-parse differs");
    let mut out2 = [0u8; 256];
    let n2 = again.emit(&mut out2).expect("re-emit");
    assert_eq!(&out2[..n2], out, "emit is not canonical");
}
