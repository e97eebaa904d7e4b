//! The small fixed-length options: MP_PRIO (RFC 8684 §3.3.8), MP_FAIL (§3.7),
//! MP_FASTCLOSE (§3.5) and MP_TCPRST (§3.6).
//!
//! ```text
//! MP_PRIO      len 3 : [30][3][0x5<<4 | rsv(3) B]
//! MP_FAIL      len 12: [30][12][0x6<<4 | rsv][rsv][DSN 8]
//! MP_FASTCLOSE len 12: [30][12][0x7<<4 | rsv][rsv][receiver's key 8]
//! MP_TCPRST    len 4 : [30][4][0x8<<4 | U V W T][reason]
//! ```

use crate::bytes::{set_u64, u64_at};
use crate::seq::DataSeq;
use crate::{Error, Result};

use super::{check_header, emit_header, subtype};

mod field {
    pub const SUBTYPE: usize = 2;
    pub const RESERVED: usize = 3;
    pub const REASON: usize = 3;
    pub const VALUE64: usize = 4;
}

const LEN_PRIO: usize = 3;
const LEN_64: usize = 12;
const LEN_TCPRST: usize = 4;
/// B flag of MP_PRIO, bit 0 of byte 2.
const FLAG_B: u8 = 0x01;

macro_rules! view_common {
    ($name:ident, $sub:expr, $len:expr, $what:literal) => {
        #[doc = concat!("A view over an ", $what, " option. After [`new_checked`](Self::new_checked) succeeds no accessor or setter panics.")]
        #[derive(Debug, Clone)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps `buffer` without checking it.
            pub const fn new_unchecked(buffer: T) -> Self {
                Self { buffer }
            }

            /// Wraps `buffer` and validates it with [`check_len`](Self::check_len).
            pub fn new_checked(buffer: T) -> Result<Self> {
                let v = Self::new_unchecked(buffer);
                v.check_len()?;
                Ok(v)
            }

            #[doc = concat!("Checks kind 30, the ", $what, " subtype, length ", stringify!($len), " and that the buffer holds the option.")]
            pub fn check_len(&self) -> Result<()> {
                if check_header(self.buffer.as_ref(), $sub)? == $len { Ok(()) } else { Err(Error::BadLength) }
            }

            /// Returns the underlying buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}

view_common!(MpPrio, subtype::MP_PRIO, LEN_PRIO, "MP_PRIO");
view_common!(MpFail, subtype::MP_FAIL, LEN_64, "MP_FAIL");
view_common!(MpFastclose, subtype::MP_FASTCLOSE, LEN_64, "MP_FASTCLOSE");
view_common!(MpTcpRst, subtype::MP_TCPRST, LEN_TCPRST, "MP_TCPRST");

// ---------------------------------------------------------------- MP_PRIO

impl<T: AsRef<[u8]>> MpPrio<T> {
    /// B: the sender asks the receiver to treat this subflow as a backup.
    #[must_use]
    pub fn backup(&self) -> bool {
        self.buffer.as_ref()[field::SUBTYPE] & FLAG_B != 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MpPrio<T> {
    /// Sets the B flag.
    pub fn set_backup(&mut self, backup: bool) {
        let b = &mut self.buffer.as_mut()[field::SUBTYPE];
        *b = if backup { *b | FLAG_B } else { *b & !FLAG_B };
    }
}

/// An owned MP_PRIO option (v1: no address ID; the RFC 6824 length-4 form with
/// an address ID is rejected as [`Error::BadLength`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpPrioRepr {
    /// B: backup priority for the subflow the option is sent on.
    pub backup: bool,
}

impl MpPrioRepr {
    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]>>(v: &MpPrio<T>) -> Result<Self> {
        v.check_len()?;
        Ok(Self { backup: v.backup() })
    }

    /// Always 3 (Linux pads it with a NOP; the option writer does that).
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        LEN_PRIO
    }

    /// Writes the option; [`Error::NoSpace`] if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        emit_header(
            buf,
            LEN_PRIO,
            subtype::MP_PRIO,
            if self.backup { FLAG_B } else { 0 },
        )?;
        Ok(LEN_PRIO)
    }
}

// ---------------------------------------------------------------- MP_FAIL

impl<T: AsRef<[u8]>> MpFail<T> {
    /// The DSN of the start of the failed mapping (always 64-bit, §3.7).
    #[must_use]
    pub fn dsn(&self) -> DataSeq {
        DataSeq(u64_at(self.buffer.as_ref(), field::VALUE64))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MpFail<T> {
    /// Sets the DSN.
    pub fn set_dsn(&mut self, dsn: DataSeq) {
        set_u64(self.buffer.as_mut(), field::VALUE64, dsn.0);
    }
}

/// An owned MP_FAIL option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpFailRepr {
    /// DSN of the start of the failed mapping.
    pub dsn: DataSeq,
}

impl MpFailRepr {
    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]>>(v: &MpFail<T>) -> Result<Self> {
        v.check_len()?;
        Ok(Self { dsn: v.dsn() })
    }

    /// Always 12.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        LEN_64
    }

    /// Writes the option; [`Error::NoSpace`] if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let b = emit_header(buf, LEN_64, subtype::MP_FAIL, 0)?;
        b[field::RESERVED] = 0;
        set_u64(b, field::VALUE64, self.dsn.0);
        Ok(LEN_64)
    }
}

// ---------------------------------------------------------------- MP_FASTCLOSE

impl<T: AsRef<[u8]>> MpFastclose<T> {
    /// The option receiver's key (§3.5).
    #[must_use]
    pub fn receiver_key(&self) -> u64 {
        u64_at(self.buffer.as_ref(), field::VALUE64)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MpFastclose<T> {
    /// Sets the receiver's key.
    pub fn set_receiver_key(&mut self, key: u64) {
        set_u64(self.buffer.as_mut(), field::VALUE64, key);
    }
}

/// An owned MP_FASTCLOSE option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpFastcloseRepr {
    /// The key of the host receiving the option.
    pub receiver_key: u64,
}

impl MpFastcloseRepr {
    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]>>(v: &MpFastclose<T>) -> Result<Self> {
        v.check_len()?;
        Ok(Self {
            receiver_key: v.receiver_key(),
        })
    }

    /// Always 12.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        LEN_64
    }

    /// Writes the option; [`Error::NoSpace`] if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let b = emit_header(buf, LEN_64, subtype::MP_FASTCLOSE, 0)?;
        b[field::RESERVED] = 0;
        set_u64(b, field::VALUE64, self.receiver_key);
        Ok(LEN_64)
    }
}

// ---------------------------------------------------------------- MP_TCPRST

/// The MP_TCPRST flags nibble (RFC 8684 §3.6): U, V, W unassigned, T transient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MpTcpRstFlags(pub u8);

impl MpTcpRstFlags {
    /// U (unassigned).
    pub const U: u8 = 0x8;
    /// V (unassigned).
    pub const V: u8 = 0x4;
    /// W (unassigned).
    pub const W: u8 = 0x2;
    /// T: transient error; the peer MAY retry the subflow later.
    pub const T: u8 = 0x1;

    /// T is set.
    #[must_use]
    pub const fn transient(self) -> bool {
        self.0 & Self::T != 0
    }
}

/// MP_TCPRST reason codes (RFC 8684 §3.6, IANA "MPTCP MP_TCPRST Reason Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpRstReason {
    /// 0x00 Unspecified error.
    Unspecified,
    /// 0x01 MPTCP-specific error.
    MptcpError,
    /// 0x02 Lack of resources.
    LackOfResources,
    /// 0x03 Administratively prohibited.
    AdministrativelyProhibited,
    /// 0x04 Too much outstanding data.
    TooMuchOutstandingData,
    /// 0x05 Unacceptable performance.
    UnacceptablePerformance,
    /// 0x06 Middlebox interference.
    MiddleboxInterference,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for TcpRstReason {
    fn from(v: u8) -> Self {
        match v {
            0x00 => Self::Unspecified,
            0x01 => Self::MptcpError,
            0x02 => Self::LackOfResources,
            0x03 => Self::AdministrativelyProhibited,
            0x04 => Self::TooMuchOutstandingData,
            0x05 => Self::UnacceptablePerformance,
            0x06 => Self::MiddleboxInterference,
            v => Self::Unknown(v),
        }
    }
}

impl From<TcpRstReason> for u8 {
    fn from(r: TcpRstReason) -> u8 {
        match r {
            TcpRstReason::Unspecified => 0x00,
            TcpRstReason::MptcpError => 0x01,
            TcpRstReason::LackOfResources => 0x02,
            TcpRstReason::AdministrativelyProhibited => 0x03,
            TcpRstReason::TooMuchOutstandingData => 0x04,
            TcpRstReason::UnacceptablePerformance => 0x05,
            TcpRstReason::MiddleboxInterference => 0x06,
            TcpRstReason::Unknown(v) => v,
        }
    }
}

impl<T: AsRef<[u8]>> MpTcpRst<T> {
    /// The U V W T flags.
    #[must_use]
    pub fn flags(&self) -> MpTcpRstFlags {
        MpTcpRstFlags(self.buffer.as_ref()[field::SUBTYPE] & 0x0f)
    }

    /// The reason code.
    #[must_use]
    pub fn reason(&self) -> TcpRstReason {
        TcpRstReason::from(self.buffer.as_ref()[field::REASON])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MpTcpRst<T> {
    /// Sets the flags nibble (masked to 4 bits).
    pub fn set_flags(&mut self, flags: MpTcpRstFlags) {
        let b = &mut self.buffer.as_mut()[field::SUBTYPE];
        *b = (*b & 0xf0) | (flags.0 & 0x0f);
    }

    /// Sets the reason code.
    pub fn set_reason(&mut self, reason: TcpRstReason) {
        self.buffer.as_mut()[field::REASON] = reason.into();
    }
}

/// An owned MP_TCPRST option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpTcpRstRepr {
    /// U V W T, low nibble.
    pub flags: MpTcpRstFlags,
    /// Why the subflow is reset.
    pub reason: TcpRstReason,
}

impl MpTcpRstRepr {
    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]>>(v: &MpTcpRst<T>) -> Result<Self> {
        v.check_len()?;
        Ok(Self {
            flags: v.flags(),
            reason: v.reason(),
        })
    }

    /// Always 4.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        LEN_TCPRST
    }

    /// Writes the option; [`Error::BadFlags`] if `flags` has bits above the low
    /// nibble, [`Error::NoSpace`] if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if self.flags.0 > 0x0f {
            return Err(Error::BadFlags);
        }
        let b = emit_header(buf, LEN_TCPRST, subtype::MP_TCPRST, self.flags.0)?;
        b[field::REASON] = self.reason.into();
        Ok(LEN_TCPRST)
    }
}

#[cfg(test)]
mod tests {
    use super::super::MptcpOption;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mp_prio() {
        let o = MptcpOption::parse(&[30, 3, 0x51]).unwrap();
        assert_eq!(o, MptcpOption::MpPrio(MpPrioRepr { backup: true }));
        let mut out = [0u8; 3];
        assert_eq!(o.emit(&mut out), Ok(3));
        assert_eq!(out, [30, 3, 0x51]);
        // RFC 6824 v0 form with an address ID.
        assert_eq!(MptcpOption::parse(&[30, 4, 0x51, 1]), Err(Error::BadLength));
        assert_eq!(
            MpPrio::new_checked(&[30u8, 4, 0x51][..]).err(),
            Some(Error::Truncated)
        );
        let mut b = [30u8, 3, 0x51];
        let mut v = MpPrio::new_checked(&mut b[..]).unwrap();
        v.set_backup(false);
        assert!(!v.backup());
        assert_eq!(
            MpPrioRepr { backup: false }.emit(&mut [0u8; 2]),
            Err(Error::NoSpace)
        );
    }

    #[test]
    fn mp_fail_and_fastclose() {
        let b = [
            30u8, 12, 0x60, 0, 0x55, 0x7d, 0xe6, 0, 0xee, 0x66, 0x0d, 0x91,
        ];
        let o = MptcpOption::parse(&b).unwrap();
        assert_eq!(
            o,
            MptcpOption::MpFail(MpFailRepr {
                dsn: DataSeq(0x557d_e600_ee66_0d91)
            })
        );
        let mut out = [0u8; 12];
        assert_eq!(o.emit(&mut out), Ok(12));
        assert_eq!(out, b);
        let mut b = [
            30u8, 12, 0x70, 0, 0x8a, 0x35, 0x12, 0x25, 0x86, 0xd4, 0x62, 0xeb,
        ];
        let o = MptcpOption::parse(&b).unwrap();
        assert_eq!(
            o,
            MptcpOption::MpFastclose(MpFastcloseRepr {
                receiver_key: 0x8a35_1225_86d4_62eb
            })
        );
        assert_eq!(o.emit(&mut out), Ok(12));
        assert_eq!(out, b);
        let mut v = MpFastclose::new_checked(&mut b[..]).unwrap();
        v.set_receiver_key(1);
        assert_eq!(v.receiver_key(), 1);
        // `out` holds an MP_FASTCLOSE: not an MP_FAIL.
        assert_eq!(
            MpFail::new_checked(&out[..]).err(),
            Some(Error::Unsupported)
        );
        out[2] = 0x60;
        let mut v = MpFail::new_checked(&mut out[..]).unwrap();
        v.set_dsn(DataSeq(7));
        assert_eq!(v.dsn(), DataSeq(7));
        for len in [3usize, 4, 8, 11, 13, 16] {
            for sub in [0x60u8, 0x70] {
                let mut b = std::vec![0u8; len];
                b[0] = 30;
                b[1] = len as u8;
                b[2] = sub;
                assert_eq!(
                    MptcpOption::parse(&b),
                    Err(Error::BadLength),
                    "{sub:#x} len {len}"
                );
            }
        }
    }

    #[test]
    fn mp_tcprst() {
        let b = [30u8, 4, 0x81, 0x03];
        let o = MptcpOption::parse(&b).unwrap();
        let MptcpOption::MpTcpRst(r) = o else {
            panic!()
        };
        assert!(r.flags.transient());
        assert_eq!(r.reason, TcpRstReason::AdministrativelyProhibited);
        let mut out = [0u8; 4];
        assert_eq!(o.emit(&mut out), Ok(4));
        assert_eq!(out, b);
        for v in 0..=255u8 {
            assert_eq!(u8::from(TcpRstReason::from(v)), v);
        }
        assert_eq!(TcpRstReason::from(9), TcpRstReason::Unknown(9));
        assert_eq!(MptcpOption::parse(&[30, 3, 0x80]), Err(Error::BadLength));
        assert_eq!(
            MptcpOption::parse(&[30, 5, 0x80, 0, 0]),
            Err(Error::BadLength)
        );
        let bad = MpTcpRstRepr {
            flags: MpTcpRstFlags(0x10),
            reason: TcpRstReason::Unspecified,
        };
        assert_eq!(bad.emit(&mut out), Err(Error::BadFlags));
        let mut b = [30u8, 4, 0x80, 0];
        let mut v = MpTcpRst::new_checked(&mut b[..]).unwrap();
        v.set_flags(MpTcpRstFlags(0xf));
        v.set_reason(TcpRstReason::MiddleboxInterference);
        assert_eq!(b, [30, 4, 0x8f, 6]);
    }

    proptest! {
        #[test]
        fn round_trips(backup: bool, dsn: u64, key: u64, flags in 0u8..16, reason: u8) {
            let mut buf = [0u8; 16];
            let r = MpPrioRepr { backup };
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(MpPrioRepr::parse(&MpPrio::new_checked(&buf[..n]).unwrap()).unwrap(), r);
            let r = MpFailRepr { dsn: DataSeq(dsn) };
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(MpFailRepr::parse(&MpFail::new_checked(&buf[..n]).unwrap()).unwrap(), r);
            let r = MpFastcloseRepr { receiver_key: key };
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(MpFastcloseRepr::parse(&MpFastclose::new_checked(&buf[..n]).unwrap()).unwrap(), r);
            let r = MpTcpRstRepr { flags: MpTcpRstFlags(flags), reason: TcpRstReason::from(reason) };
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(MpTcpRstRepr::parse(&MpTcpRst::new_checked(&buf[..n]).unwrap()).unwrap(), r);
        }
    }
}
