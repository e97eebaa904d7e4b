//! MP_JOIN (RFC 8684 §3.2).
//!
//! ```text
//! SYN     len 12: [30][12][0x1<<4 | rsv(3) B][AddrID][receiver's token 4][sender's nonce 4]
//! SYN-ACK len 16: [30][16][0x1<<4 | rsv(3) B][AddrID][truncated HMAC 8][sender's nonce 4]
//! ACK     len 24: [30][24][0x1<<4 | rsv(12 bits)    ][HMAC 20]
//! ```
//! The HMACs are computed with [`crate::crypto::join_hmac_truncated64`] (SYN-ACK)
//! and [`crate::crypto::join_hmac160`] (ACK).

use crate::bytes::{set_u32, set_u64, u32_at, u64_at};
use crate::{Error, Result};

use super::{check_header, emit_header, subtype};

mod field {
    pub const SUBTYPE: usize = 2;
    pub const ADDR_ID: usize = 3;
    pub const TOKEN: usize = 4;
    pub const SYN_NONCE: usize = 8;
    pub const TRUNC_HMAC: usize = 4;
    pub const SYNACK_NONCE: usize = 12;
    pub const HMAC: usize = 4;
}

const LEN_SYN: usize = 12;
const LEN_SYNACK: usize = 16;
const LEN_ACK: usize = 24;
/// The backup flag, bit 0 of byte 2.
const FLAG_B: u8 = 0x01;

/// A view over an MP_JOIN option. After [`new_checked`](Self::new_checked) succeeds
/// no accessor or setter panics.
#[derive(Debug, Clone)]
pub struct MpJoin<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MpJoin<T> {
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

    /// Checks kind 30, subtype 1, length 12, 16 or 24, and that the buffer holds
    /// the whole option.
    pub fn check_len(&self) -> Result<()> {
        match check_header(self.buffer.as_ref(), subtype::MP_JOIN)? {
            LEN_SYN | LEN_SYNACK | LEN_ACK => Ok(()),
            _ => Err(Error::BadLength),
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn len(&self) -> usize {
        usize::from(self.buffer.as_ref()[1])
    }

    /// The backup flag B (SYN and SYN-ACK; always `false` for the ACK form, where
    /// the bit is reserved).
    #[must_use]
    pub fn backup(&self) -> bool {
        self.len() != LEN_ACK && self.buffer.as_ref()[field::SUBTYPE] & FLAG_B != 0
    }

    /// The sender's address ID (SYN and SYN-ACK).
    #[must_use]
    pub fn addr_id(&self) -> Option<u8> {
        (self.len() != LEN_ACK).then(|| self.buffer.as_ref()[field::ADDR_ID])
    }

    /// The receiver's token (SYN).
    #[must_use]
    pub fn token(&self) -> Option<u32> {
        (self.len() == LEN_SYN).then(|| u32_at(self.buffer.as_ref(), field::TOKEN))
    }

    /// The sender's random nonce (SYN and SYN-ACK).
    #[must_use]
    pub fn nonce(&self) -> Option<u32> {
        match self.len() {
            LEN_SYN => Some(u32_at(self.buffer.as_ref(), field::SYN_NONCE)),
            LEN_SYNACK => Some(u32_at(self.buffer.as_ref(), field::SYNACK_NONCE)),
            _ => None,
        }
    }

    /// The leftmost 64 bits of the sender's HMAC (SYN-ACK).
    #[must_use]
    pub fn truncated_hmac(&self) -> Option<u64> {
        (self.len() == LEN_SYNACK).then(|| u64_at(self.buffer.as_ref(), field::TRUNC_HMAC))
    }

    /// The leftmost 160 bits of the sender's HMAC (ACK).
    #[must_use]
    pub fn hmac160(&self) -> Option<[u8; 20]> {
        (self.len() == LEN_ACK).then(|| {
            let mut a = [0u8; 20];
            a.copy_from_slice(&self.buffer.as_ref()[field::HMAC..field::HMAC + 20]);
            a
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MpJoin<T> {
    /// Sets the backup flag; [`Error::Unsupported`] on the ACK form.
    pub fn set_backup(&mut self, backup: bool) -> Result<()> {
        if self.len() == LEN_ACK {
            return Err(Error::Unsupported);
        }
        let b = &mut self.buffer.as_mut()[field::SUBTYPE];
        *b = if backup { *b | FLAG_B } else { *b & !FLAG_B };
        Ok(())
    }

    /// Sets the address ID; [`Error::Unsupported`] on the ACK form.
    pub fn set_addr_id(&mut self, id: u8) -> Result<()> {
        if self.len() == LEN_ACK {
            return Err(Error::Unsupported);
        }
        self.buffer.as_mut()[field::ADDR_ID] = id;
        Ok(())
    }
}

/// An owned MP_JOIN option, one variant per handshake packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MpJoinRepr {
    /// Length 12, in the subflow SYN.
    Syn {
        /// B: the initiator asks for this subflow to be a backup.
        backup: bool,
        /// The initiator's ID for the source address.
        addr_id: u8,
        /// The **receiver's** token (RFC 8684 §3.2).
        token: u32,
        /// The initiator's nonce R_A.
        nonce: u32,
    },
    /// Length 16, in the SYN-ACK.
    SynAck {
        /// B: the listener asks for this subflow to be a backup.
        backup: bool,
        /// The listener's ID for the source address.
        addr_id: u8,
        /// Leftmost 64 bits of HMAC(KeyB‖KeyA, R_B‖R_A), big-endian.
        hmac: u64,
        /// The listener's nonce R_B.
        nonce: u32,
    },
    /// Length 24, in the third ACK.
    Ack {
        /// Leftmost 160 bits of HMAC(KeyA‖KeyB, R_A‖R_B).
        hmac: [u8; 20],
    },
}

impl MpJoinRepr {
    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]>>(v: &MpJoin<T>) -> Result<Self> {
        v.check_len()?;
        let b = v.buffer.as_ref();
        Ok(match v.len() {
            LEN_SYN => Self::Syn {
                backup: v.backup(),
                addr_id: b[field::ADDR_ID],
                token: u32_at(b, field::TOKEN),
                nonce: u32_at(b, field::SYN_NONCE),
            },
            LEN_SYNACK => Self::SynAck {
                backup: v.backup(),
                addr_id: b[field::ADDR_ID],
                hmac: u64_at(b, field::TRUNC_HMAC),
                nonce: u32_at(b, field::SYNACK_NONCE),
            },
            _ => {
                let mut hmac = [0u8; 20];
                hmac.copy_from_slice(&b[field::HMAC..field::HMAC + 20]);
                Self::Ack { hmac }
            }
        })
    }

    /// The option length of this form.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        match self {
            Self::Syn { .. } => LEN_SYN,
            Self::SynAck { .. } => LEN_SYNACK,
            Self::Ack { .. } => LEN_ACK,
        }
    }

    /// Writes the option; [`Error::NoSpace`] if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        match *self {
            Self::Syn {
                backup,
                addr_id,
                token,
                nonce,
            } => {
                let b = emit_header(buf, len, subtype::MP_JOIN, u8::from(backup))?;
                b[field::ADDR_ID] = addr_id;
                set_u32(b, field::TOKEN, token);
                set_u32(b, field::SYN_NONCE, nonce);
            }
            Self::SynAck {
                backup,
                addr_id,
                hmac,
                nonce,
            } => {
                let b = emit_header(buf, len, subtype::MP_JOIN, u8::from(backup))?;
                b[field::ADDR_ID] = addr_id;
                set_u64(b, field::TRUNC_HMAC, hmac);
                set_u32(b, field::SYNACK_NONCE, nonce);
            }
            Self::Ack { hmac } => {
                let b = emit_header(buf, len, subtype::MP_JOIN, 0)?;
                b[3] = 0;
                b[field::HMAC..field::HMAC + 20].copy_from_slice(&hmac);
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
    fn captured_join_handshake() {
        // v4-path2.pcap packet 1: MP_JOIN SYN, address ID 1, token of the listener.
        let b = hex("1e0c10018df0e6700064629e");
        let v = MpJoin::new_checked(&b[..]).unwrap();
        assert_eq!(v.token(), Some(0x8df0_e670));
        assert_eq!(v.nonce(), Some(0x0064_629e));
        assert_eq!(v.addr_id(), Some(1));
        assert!(!v.backup());
        assert_eq!(v.truncated_hmac(), None);
        assert_eq!(
            MpJoinRepr::parse(&v).unwrap(),
            MpJoinRepr::Syn {
                backup: false,
                addr_id: 1,
                token: 0x8df0_e670,
                nonce: 0x0064_629e
            }
        );
        // v4-path2.pcap packet 2: SYN-ACK, address ID 0.
        let b = hex("1e1010003e9d9af027cd1da7b0eac887");
        let r = MpJoinRepr::parse(&MpJoin::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            MpJoinRepr::SynAck {
                backup: false,
                addr_id: 0,
                hmac: 0x3e9d_9af0_27cd_1da7,
                nonce: 0xb0ea_c887
            }
        );
        // v4-path2.pcap packet 3: third ACK with the 160-bit HMAC.
        let b = hex("1e1810004c2701bf2775f8b0dc2d2b79b25d71b399246de0");
        let v = MpJoin::new_checked(&b[..]).unwrap();
        assert_eq!(v.hmac160().unwrap()[..], b[4..24]);
        assert_eq!(v.addr_id(), None);
        assert_eq!(v.nonce(), None);
        let r = MpJoinRepr::parse(&v).unwrap();
        let mut out = [0u8; 24];
        assert_eq!(r.emit(&mut out), Ok(24));
        assert_eq!(&out[..], &b[..]);
    }

    #[test]
    fn bad_lengths() {
        for len in [3usize, 4, 8, 11, 13, 15, 17, 20, 23, 25, 28] {
            let mut b = std::vec![0u8; len];
            b[0] = 30;
            b[1] = len as u8;
            b[2] = 0x10;
            assert_eq!(
                MpJoin::new_checked(&b[..]).err(),
                Some(Error::BadLength),
                "len {len}"
            );
        }
        assert_eq!(
            MpJoin::new_checked(&[30u8, 12, 0x10, 0][..]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            MpJoinRepr::Ack { hmac: [0; 20] }.emit(&mut [0u8; 23]),
            Err(Error::NoSpace)
        );
    }

    #[test]
    fn setters() {
        let mut b = hex("1e0c10018df0e6700064629e");
        let mut v = MpJoin::new_checked(&mut b[..]).unwrap();
        v.set_backup(true).unwrap();
        v.set_addr_id(7).unwrap();
        assert!(v.backup());
        assert_eq!(v.addr_id(), Some(7));
        let mut b = hex("1e1810004c2701bf2775f8b0dc2d2b79b25d71b399246de0");
        let mut v = MpJoin::new_checked(&mut b[..]).unwrap();
        assert_eq!(v.set_backup(true), Err(Error::Unsupported));
        assert_eq!(v.set_addr_id(1), Err(Error::Unsupported));
    }

    pub(crate) fn arb_repr() -> impl Strategy<Value = MpJoinRepr> {
        prop_oneof![
            (any::<bool>(), any::<u8>(), any::<u32>(), any::<u32>()).prop_map(
                |(backup, addr_id, token, nonce)| MpJoinRepr::Syn {
                    backup,
                    addr_id,
                    token,
                    nonce
                }
            ),
            (any::<bool>(), any::<u8>(), any::<u64>(), any::<u32>()).prop_map(
                |(backup, addr_id, hmac, nonce)| MpJoinRepr::SynAck {
                    backup,
                    addr_id,
                    hmac,
                    nonce
                }
            ),
            any::<[u8; 20]>().prop_map(|hmac| MpJoinRepr::Ack { hmac }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(r in arb_repr()) {
            let mut buf = [0u8; 40];
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(n, r.buffer_len());
            prop_assert_eq!(MpJoinRepr::parse(&MpJoin::new_checked(&buf[..n]).unwrap()).unwrap(), r);
        }

        #[test]
        fn view_never_panics(data in prop::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(v) = MpJoin::new_checked(&data[..]) {
                let _ = (v.backup(), v.addr_id(), v.token(), v.nonce(), v.truncated_hmac(), v.hmac160());
                let _ = MpJoinRepr::parse(&v);
            }
        }
    }
}
