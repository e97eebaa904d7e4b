//! MPTCP v1 options (RFC 8684 §3): a zero-copy view and an owned, `Copy` repr with
//! an emitter for every subtype, plus [`MptcpOption`], which dispatches on the
//! subtype of one raw option.
//!
//! Input is always the raw option bytes **starting at the kind byte** (30), as the
//! TCP options walker yields them: `[30][len][subtype<<4 | …][…]`. Emitters write
//! the same thing (kind and length included) and return the number of bytes
//! written; they never pad — NOP alignment is the option writer's business (Linux
//! pads a 26-byte DSS and a 3-byte MP_PRIO with NOPs).
//!
//! # Strictness
//! * The length byte must be exactly what the subtype and its flags demand (§3.1 –
//!   §3.7); anything else is [`Error::BadLength`]. [`MptcpOption::parse`] also
//!   requires the slice to be exactly `len` bytes long. The views accept a longer
//!   buffer and only look at the first `len` bytes.
//! * Reserved bits are ignored on receipt and written as zero (RFC 8684 §3: "MUST
//!   be set to zero by the sender and ignored by the receiver"); so are the DSS
//!   `a`/`m` flags when `A`/`M` is clear (§3.3). Parsing then emitting therefore
//!   yields the input with exactly those bits cleared (the fuzz invariant in
//!   `crate::fuzzing::mptcp_option`).
//! * Semantics that are not framing (MP_CAPABLE version and crypto flags, whether
//!   checksums were negotiated, HMAC validity) are left to the caller: the repr
//!   records them and offers helpers.
//!
//! Decisions where RFC 8684 leaves room (documented at the type):
//! * DSS with `F` but no mapping (`M` clear) is rejected with [`Error::BadFlags`]
//!   (§3.3.3: the DATA_FIN is signalled with a mapping; Linux never sends it).
//! * DSS with `a`/`m` set while `A`/`M` is clear: accepted, the flag ignored (§3.3:
//!   "the flags 'a' and 'm' only have meaning if the corresponding 'A' or 'M'
//!   flags are set; otherwise, they will be ignored"). Linux does the same.
//! * DSS checksum presence is inferred from the length and only allowed with a
//!   mapping (§3.3).
//! * MP_PRIO is v1 only: length 3. The RFC 6824 (v0) form with an address ID
//!   (length 4) is [`Error::BadLength`].
//! * MP_EXPERIMENTAL (0xF) is yielded raw ([`MptcpOption::Experimental`]).

use crate::{Error, Result};

mod addr;
mod capable;
mod dss;
mod join;
mod misc;

pub use addr::{AddAddr, AddAddrRepr, RemoveAddr, RemoveAddrRepr};
pub use capable::{MpCapable, MpCapableFlags, MpCapableForm, MpCapableRepr};
pub use dss::{DataAck, DataSeqField, Dsn, Dss, DssFlags, DssRepr, Mapping};
pub use join::{MpJoin, MpJoinRepr};
pub use misc::{
    MpFail, MpFailRepr, MpFastclose, MpFastcloseRepr, MpPrio, MpPrioRepr, MpTcpRst, MpTcpRstFlags,
    MpTcpRstRepr, TcpRstReason,
};

/// TCP option kind of every MPTCP option (RFC 8684 §7.1).
pub const KIND: u8 = 30;

/// MPTCP option subtypes (RFC 8684 §7.2), the high nibble of byte 2.
pub mod subtype {
    /// Multipath Capable (§3.1).
    pub const MP_CAPABLE: u8 = 0x0;
    /// Join Connection (§3.2).
    pub const MP_JOIN: u8 = 0x1;
    /// Data Sequence Signal (§3.3).
    pub const DSS: u8 = 0x2;
    /// Add Address (§3.4.1).
    pub const ADD_ADDR: u8 = 0x3;
    /// Remove Address (§3.4.2).
    pub const REMOVE_ADDR: u8 = 0x4;
    /// Change Subflow Priority (§3.3.8).
    pub const MP_PRIO: u8 = 0x5;
    /// Fallback (§3.7).
    pub const MP_FAIL: u8 = 0x6;
    /// Fast Close (§3.5).
    pub const MP_FASTCLOSE: u8 = 0x7;
    /// Subflow Reset (§3.6).
    pub const MP_TCPRST: u8 = 0x8;
    /// Reserved for private experiments (§7.2).
    pub const MP_EXPERIMENTAL: u8 = 0xf;
}

/// Offsets shared by every MPTCP option.
mod field {
    pub const KIND: usize = 0;
    pub const LENGTH: usize = 1;
    pub const SUBTYPE: usize = 2;
}

/// Validates the common header of a view over `b` for `subtype` and returns the
/// declared option length. `b` must hold at least 3 bytes and the declared length.
#[inline]
pub(crate) fn check_header(b: &[u8], subtype: u8) -> Result<usize> {
    if b.len() < 3 {
        return Err(Error::Truncated);
    }
    if b[field::KIND] != KIND || b[field::SUBTYPE] >> 4 != subtype {
        return Err(Error::Unsupported);
    }
    let len = usize::from(b[field::LENGTH]);
    if len > b.len() {
        return Err(Error::Truncated);
    }
    Ok(len)
}

/// Writes kind, length and `subtype << 4 | low` into `buf` after checking room for
/// `len` bytes; returns the option slice `buf[..len]`.
#[inline]
pub(crate) fn emit_header(buf: &mut [u8], len: usize, subtype: u8, low: u8) -> Result<&mut [u8]> {
    if buf.len() < len {
        return Err(Error::NoSpace);
    }
    let len8 = u8::try_from(len).map_err(|_| Error::BadLength)?;
    let b = &mut buf[..len];
    b[field::KIND] = KIND;
    b[field::LENGTH] = len8;
    b[field::SUBTYPE] = subtype << 4 | (low & 0x0f);
    Ok(b)
}

/// The subtype of raw MPTCP option bytes (`opt[0]` must be kind 30), or `None`
/// when they are too short to say.
#[must_use]
#[inline]
pub fn option_subtype(opt: &[u8]) -> Option<u8> {
    match opt {
        [KIND, _, s, ..] => Some(s >> 4),
        _ => None,
    }
}

/// One parsed MPTCP option, borrowing from the packet only where the option is
/// variable-length (REMOVE_ADDR, MP_EXPERIMENTAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MptcpOption<'a> {
    /// MP_CAPABLE (§3.1).
    MpCapable(MpCapableRepr),
    /// MP_JOIN (§3.2).
    MpJoin(MpJoinRepr),
    /// DSS (§3.3).
    Dss(DssRepr),
    /// ADD_ADDR (§3.4.1).
    AddAddr(AddAddrRepr),
    /// REMOVE_ADDR (§3.4.2).
    RemoveAddr(RemoveAddrRepr<'a>),
    /// MP_PRIO (§3.3.8).
    MpPrio(MpPrioRepr),
    /// MP_FAIL (§3.7).
    MpFail(MpFailRepr),
    /// MP_FASTCLOSE (§3.5).
    MpFastclose(MpFastcloseRepr),
    /// MP_TCPRST (§3.6).
    MpTcpRst(MpTcpRstRepr),
    /// MP_EXPERIMENTAL (0xF): the whole option, kind and length included.
    Experimental(&'a [u8]),
}

impl<'a> MptcpOption<'a> {
    /// Parses one MPTCP option; `opt` is the whole option (kind 30, length, …) and
    /// must be exactly as long as its length byte says.
    ///
    /// Errors: [`Error::Truncated`] (fewer than 2 bytes), [`Error::Unsupported`]
    /// (kind ≠ 30), [`Error::BadLength`] (length byte ≠ slice length, or not what
    /// the subtype/flags demand), [`Error::UnknownSubtype`] (subtype 0x9–0xE),
    /// [`Error::BadFlags`] (DSS DATA_FIN without a mapping).
    #[inline]
    pub fn parse(opt: &'a [u8]) -> Result<Self> {
        if opt.len() < 2 {
            return Err(Error::Truncated);
        }
        if opt[field::KIND] != KIND {
            return Err(Error::Unsupported);
        }
        if usize::from(opt[field::LENGTH]) != opt.len() || opt.len() < 3 {
            return Err(Error::BadLength);
        }
        Ok(match opt[field::SUBTYPE] >> 4 {
            subtype::MP_CAPABLE => {
                Self::MpCapable(MpCapableRepr::parse(&MpCapable::new_checked(opt)?)?)
            }
            subtype::MP_JOIN => Self::MpJoin(MpJoinRepr::parse(&MpJoin::new_checked(opt)?)?),
            subtype::DSS => Self::Dss(DssRepr::parse(&Dss::new_checked(opt)?)?),
            subtype::ADD_ADDR => Self::AddAddr(AddAddrRepr::parse(&AddAddr::new_checked(opt)?)?),
            subtype::REMOVE_ADDR => {
                Self::RemoveAddr(RemoveAddrRepr::parse(RemoveAddr::new_checked(opt)?)?)
            }
            subtype::MP_PRIO => Self::MpPrio(MpPrioRepr::parse(&MpPrio::new_checked(opt)?)?),
            subtype::MP_FAIL => Self::MpFail(MpFailRepr::parse(&MpFail::new_checked(opt)?)?),
            subtype::MP_FASTCLOSE => {
                Self::MpFastclose(MpFastcloseRepr::parse(&MpFastclose::new_checked(opt)?)?)
            }
            subtype::MP_TCPRST => {
                Self::MpTcpRst(MpTcpRstRepr::parse(&MpTcpRst::new_checked(opt)?)?)
            }
            subtype::MP_EXPERIMENTAL => Self::Experimental(opt),
            s => return Err(Error::UnknownSubtype(s)),
        })
    }

    /// The subtype (RFC 8684 §7.2) of this option.
    #[must_use]
    #[inline]
    pub fn subtype(&self) -> u8 {
        match self {
            Self::MpCapable(_) => subtype::MP_CAPABLE,
            Self::MpJoin(_) => subtype::MP_JOIN,
            Self::Dss(_) => subtype::DSS,
            Self::AddAddr(_) => subtype::ADD_ADDR,
            Self::RemoveAddr(_) => subtype::REMOVE_ADDR,
            Self::MpPrio(_) => subtype::MP_PRIO,
            Self::MpFail(_) => subtype::MP_FAIL,
            Self::MpFastclose(_) => subtype::MP_FASTCLOSE,
            Self::MpTcpRst(_) => subtype::MP_TCPRST,
            Self::Experimental(_) => subtype::MP_EXPERIMENTAL,
        }
    }

    /// The number of bytes [`emit`](Self::emit) writes (the option length byte).
    #[must_use]
    #[inline]
    pub fn buffer_len(&self) -> usize {
        match self {
            Self::MpCapable(r) => r.buffer_len(),
            Self::MpJoin(r) => r.buffer_len(),
            Self::Dss(r) => r.buffer_len(),
            Self::AddAddr(r) => r.buffer_len(),
            Self::RemoveAddr(r) => r.buffer_len(),
            Self::MpPrio(r) => r.buffer_len(),
            Self::MpFail(r) => r.buffer_len(),
            Self::MpFastclose(r) => r.buffer_len(),
            Self::MpTcpRst(r) => r.buffer_len(),
            Self::Experimental(raw) => raw.len(),
        }
    }

    /// Writes the option (kind and length included) to the front of `buf`;
    /// returns the bytes written. [`Error::NoSpace`] if `buf` is short; an
    /// invalid repr yields the error its own `emit` documents. An
    /// `Experimental` payload is copied verbatim after checking it still frames
    /// as an MPTCP option (kind 30, length byte = its length, subtype 0xF).
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        match self {
            Self::MpCapable(r) => r.emit(buf),
            Self::MpJoin(r) => r.emit(buf),
            Self::Dss(r) => r.emit(buf),
            Self::AddAddr(r) => r.emit(buf),
            Self::RemoveAddr(r) => r.emit(buf),
            Self::MpPrio(r) => r.emit(buf),
            Self::MpFail(r) => r.emit(buf),
            Self::MpFastclose(r) => r.emit(buf),
            Self::MpTcpRst(r) => r.emit(buf),
            Self::Experimental(raw) => {
                match raw {
                    [KIND, l, s, ..]
                        if usize::from(*l) == raw.len() && s >> 4 == subtype::MP_EXPERIMENTAL => {}
                    _ => return Err(Error::Malformed),
                }
                let dst = buf.get_mut(..raw.len()).ok_or(Error::NoSpace)?;
                dst.copy_from_slice(raw);
                Ok(raw.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// Every MPTCP option of every packet in the four fixture captures
    /// (tests/fixtures/*.pcap, Linux 6.18), deduplicated, hex.
    const CAPTURED: &[&str] = &[
        "1e040101",
        "1e0c01018a35122586d462eb",
        "1e140101f385ef39ed38c0798a35122586d462eb",
        "1e16200d92671776557de600ee660d91000000010c00",
        "1e0c2003557de600ee661321",
        "1e1a200f557de600ee661991a23d5f11926717760000000101f4",
        "1e1a201f557de600ee661991a23d5f119267196a000000000001",
        "1e0c10018df0e6700064629e",
        "1e1010003e9d9af027cd1da7b0eac887",
        "1e1810004c2701bf2775f8b0dc2d2b79b25d71b399246de0",
        "1e08200192671776",
        "1e0c1002b0dc866e0c756656",
        "1e101000f6b62b2fdb062e7fe8d146bc",
        "1e1810001f6ca37babbdf36e8f4903d032f9a07a3aff9057",
        "1e0820010b98ec01",
        "1e1a201f3e8a90cf0b98edf674bb21743db09dab000000000001",
    ];

    #[inline]
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn captured_options_round_trip_exactly() {
        for h in CAPTURED {
            let b = hex(h);
            let opt = MptcpOption::parse(&b).unwrap_or_else(|e| panic!("{h}: {e}"));
            assert_eq!(opt.buffer_len(), b.len(), "{h}");
            let mut out = [0u8; 64];
            let n = opt.emit(&mut out).unwrap();
            assert_eq!(&out[..n], &b[..], "{h}");
            // Short buffer.
            assert_eq!(opt.emit(&mut out[..n - 1]), Err(Error::NoSpace));
        }
    }

    #[test]
    fn framing_errors() {
        assert_eq!(MptcpOption::parse(&[]), Err(Error::Truncated));
        assert_eq!(MptcpOption::parse(&[30]), Err(Error::Truncated));
        assert_eq!(MptcpOption::parse(&[30, 2]), Err(Error::BadLength));
        assert_eq!(MptcpOption::parse(&[8, 4, 1, 1]), Err(Error::Unsupported));
        assert_eq!(MptcpOption::parse(&[30, 5, 1, 1]), Err(Error::BadLength));
        assert_eq!(MptcpOption::parse(&[30, 4, 1, 1, 0]), Err(Error::BadLength));
        assert_eq!(
            MptcpOption::parse(&[30, 3, 0x90]),
            Err(Error::UnknownSubtype(9))
        );
        assert_eq!(
            MptcpOption::parse(&[30, 4, 0xe0, 0]),
            Err(Error::UnknownSubtype(0xe))
        );
        assert_eq!(option_subtype(&[30, 4, 0x21, 0]), Some(2));
        assert_eq!(option_subtype(&[30, 4]), None);
        assert_eq!(option_subtype(&[2, 4, 0x21]), None);
    }

    #[test]
    fn experimental_is_raw() {
        let b = [30, 5, 0xf3, 0xaa, 0xbb];
        let o = MptcpOption::parse(&b).unwrap();
        assert_eq!(o, MptcpOption::Experimental(&b));
        assert_eq!(o.subtype(), subtype::MP_EXPERIMENTAL);
        let mut out = [0u8; 5];
        assert_eq!(o.emit(&mut out), Ok(5));
        assert_eq!(out, b);
        assert_eq!(
            MptcpOption::Experimental(&[30, 4, 0xf0]).emit(&mut out),
            Err(Error::Malformed)
        );
        assert_eq!(
            MptcpOption::Experimental(&[30, 3, 0x20]).emit(&mut out),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn fuzz_invariant_on_captured() {
        for h in CAPTURED {
            let b = hex(h);
            crate::fuzzing::mptcp_option(&b);
            // Body-only form (framed by the fuzz function).
            crate::fuzzing::mptcp_option(&b[2..]);
        }
    }

    /// The checked-in seeds (fuzz/corpus/mptcp_option): `bad_*` must be rejected,
    /// every other seed must parse (`body_only_*` after framing as the fuzz
    /// function does).
    #[test]
    fn corpus_seeds_classified() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mptcp_option");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let name = std::string::String::from(path.file_name().unwrap().to_str().unwrap());
            let mut data = std::fs::read(&path).unwrap();
            if name.starts_with("body_only_") {
                let mut framed = std::vec![KIND, (data.len() + 2) as u8];
                framed.extend_from_slice(&data);
                data = framed;
            }
            let got = MptcpOption::parse(&data);
            assert_eq!(got.is_err(), name.starts_with("bad_"), "{name}: {got:?}");
            n += 1;
        }
        assert!(n >= 16);
    }

    #[inline]
    fn arb_option() -> impl Strategy<Value = MptcpOption<'static>> {
        prop_oneof![
            capable::tests::arb_repr().prop_map(MptcpOption::MpCapable),
            join::tests::arb_repr().prop_map(MptcpOption::MpJoin),
            dss::tests::arb_repr().prop_map(MptcpOption::Dss),
            addr::tests::arb_repr().prop_map(MptcpOption::AddAddr),
            any::<bool>().prop_map(|backup| MptcpOption::MpPrio(MpPrioRepr { backup })),
            any::<u64>().prop_map(|d| MptcpOption::MpFail(MpFailRepr {
                dsn: crate::seq::DataSeq(d)
            })),
            any::<u64>()
                .prop_map(|k| MptcpOption::MpFastclose(MpFastcloseRepr { receiver_key: k })),
            (0u8..16, any::<u8>()).prop_map(|(f, r)| MptcpOption::MpTcpRst(MpTcpRstRepr {
                flags: MpTcpRstFlags(f),
                reason: TcpRstReason::from(r)
            })),
        ]
    }

    proptest! {
        /// Every generated option emits, re-parses equal, and satisfies the fuzz
        /// invariant; then the same with random reserved bits set in bytes 2/3.
        #[test]
        fn generated_options_round_trip(o in arb_option(), noise: u8) {
            let mut buf = [0u8; 40];
            let n = o.emit(&mut buf).unwrap();
            prop_assert_eq!(n, o.buffer_len());
            prop_assert_eq!(MptcpOption::parse(&buf[..n]).unwrap(), o);
            crate::fuzzing::mptcp_option(&buf[..n]);
            buf[2] |= noise & 0x0e;
            crate::fuzzing::mptcp_option(&buf[..n]);
        }

        #[test]
        fn fuzz_invariant_holds(data in prop::collection::vec(any::<u8>(), 0..40)) {
            crate::fuzzing::mptcp_option(&data);
        }

        #[test]
        fn parse_never_panics(data in prop::collection::vec(any::<u8>(), 0..48)) {
            let _ = MptcpOption::parse(&data);
        }

        /// Arbitrary bytes framed as an MPTCP option: whenever parsing succeeds,
        /// the emitted option has the input's length and re-parses to the same repr.
        #[test]
        fn framed_parse_emit_reparse(sub in 0u8..16, low in 0u8..16,
                                     rest in prop::collection::vec(any::<u8>(), 0..30)) {
            let mut b = std::vec![KIND, 0, sub << 4 | low];
            b.extend_from_slice(&rest);
            b[1] = b.len() as u8;
            if let Ok(o) = MptcpOption::parse(&b) {
                prop_assert_eq!(o.buffer_len(), b.len());
                let mut out = [0u8; 64];
                let n = o.emit(&mut out).unwrap();
                prop_assert_eq!(n, b.len());
                prop_assert_eq!(MptcpOption::parse(&out[..n]).unwrap(), o);
            }
        }
    }
}
