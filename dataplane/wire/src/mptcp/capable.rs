//! MP_CAPABLE (RFC 8684 §3.1).
//!
//! ```text
//! [30][len][0x0<<4 | version][A B C D E F G H]
//! [sender key 8]        len ≥ 12
//! [receiver key 8]      len ≥ 20
//! [data-level len 2]    len 22 / 24
//! [checksum 2]          len 24
//! ```
//! The form is given by the length alone: 4 = SYN (no key in v1), 12 = SYN-ACK
//! (the listener's key; also what a v0 SYN looks like), 20 = third ACK (both keys),
//! 22/24 = first data packet after the handshake (both keys, data-level length,
//! checksum iff 24).

use crate::bytes::{set_u16, set_u64, u16_at, u64_at};
use crate::{Error, Result};

use super::{check_header, emit_header, subtype};

mod field {
    pub const SUBTYPE: usize = 2;
    pub const FLAGS: usize = 3;
    pub const SENDER_KEY: usize = 4;
    pub const RECEIVER_KEY: usize = 12;
    pub const DATA_LEN: usize = 20;
    pub const CHECKSUM: usize = 22;
}

/// Option lengths of the MP_CAPABLE forms (RFC 8684 §3.1).
const LEN_SYN: usize = 4;
const LEN_SYNACK: usize = 12;
const LEN_ACK: usize = 20;
const LEN_DATA: usize = 22;
const LEN_DATA_CSUM: usize = 24;

/// The MP_CAPABLE flags byte (RFC 8684 §3.1), `A` in the most significant bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MpCapableFlags(pub u8);

impl MpCapableFlags {
    /// A: checksum required.
    pub const A: u8 = 0x80;
    /// B: extensibility; MUST be 0 in v1.
    pub const B: u8 = 0x40;
    /// C: do not attempt to establish new subflows to this source address/port.
    pub const C: u8 = 0x20;
    /// D: crypto negotiation, unassigned.
    pub const D: u8 = 0x10;
    /// E: crypto negotiation, unassigned.
    pub const E: u8 = 0x08;
    /// F: crypto negotiation, unassigned.
    pub const F: u8 = 0x04;
    /// G: crypto negotiation, unassigned.
    pub const G: u8 = 0x02;
    /// H: HMAC-SHA256, the only defined crypto algorithm.
    pub const H: u8 = 0x01;
    /// The crypto-negotiation bits D–H.
    pub const CRYPTO: u8 = 0x1f;

    /// `A`: the sender requires DSS checksums.
    #[must_use]
    pub const fn checksum_required(self) -> bool {
        self.0 & Self::A != 0
    }

    /// `B`: extensibility bit (MUST be 0; if set and not understood the option is
    /// ignored, i.e. fallback to TCP — §3.1).
    #[must_use]
    pub const fn extensibility(self) -> bool {
        self.0 & Self::B != 0
    }

    /// `C`: the sender will not accept new subflows to its source address/port.
    #[must_use]
    pub const fn no_join_to_source(self) -> bool {
        self.0 & Self::C != 0
    }

    /// `H`: HMAC-SHA256.
    #[must_use]
    pub const fn hmac_sha256(self) -> bool {
        self.0 & Self::H != 0
    }

    /// Whether this stack (HMAC-SHA256 only, no extensions) can use the option:
    /// `B` clear and `H` the only crypto bit set — the test Linux applies
    /// (`(flags & 0x1f) == 0x01`, B = 0). All of D–H clear is invalid (§3.1).
    #[must_use]
    pub const fn is_supported(self) -> bool {
        !self.extensibility() && self.0 & Self::CRYPTO == Self::H
    }
}

/// The shape of an MP_CAPABLE option, determined by its length (RFC 8684 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MpCapableForm {
    /// Length 4: the SYN (no key in v1).
    Syn,
    /// Length 12: the SYN-ACK, carrying the listener's key.
    SynAck {
        /// The sender's key.
        sender_key: u64,
    },
    /// Length 20: the third ACK, echoing both keys.
    Ack {
        /// The sender's (initiator's) key.
        sender_key: u64,
        /// The receiver's (listener's) key.
        receiver_key: u64,
    },
    /// Length 22 (no checksum) or 24 (checksum): the initiator's first data
    /// packet, which repeats the keys and carries an implicit mapping starting at
    /// IDSN + 1 (§3.1).
    AckData {
        /// The sender's (initiator's) key.
        sender_key: u64,
        /// The receiver's (listener's) key.
        receiver_key: u64,
        /// Data-level length of the implicit mapping.
        data_len: u16,
        /// DSS checksum, present iff the option is 24 bytes.
        checksum: Option<u16>,
    },
}

/// A view over an MP_CAPABLE option. After [`new_checked`](Self::new_checked)
/// succeeds no accessor or setter panics.
#[derive(Debug, Clone)]
pub struct MpCapable<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MpCapable<T> {
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

    /// Checks kind 30, subtype 0, the length byte (4, 12, 20, 22 or 24) and that
    /// the buffer holds the whole option.
    pub fn check_len(&self) -> Result<()> {
        let len = check_header(self.buffer.as_ref(), subtype::MP_CAPABLE)?;
        match len {
            LEN_SYN | LEN_SYNACK | LEN_ACK | LEN_DATA | LEN_DATA_CSUM => Ok(()),
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

    /// The version (low nibble of byte 2): 1 for RFC 8684.
    #[must_use]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::SUBTYPE] & 0x0f
    }

    /// The flags byte.
    #[must_use]
    pub fn flags(&self) -> MpCapableFlags {
        MpCapableFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// The sender's key (lengths ≥ 12).
    #[must_use]
    pub fn sender_key(&self) -> Option<u64> {
        (self.len() >= LEN_SYNACK).then(|| u64_at(self.buffer.as_ref(), field::SENDER_KEY))
    }

    /// The receiver's key (lengths ≥ 20).
    #[must_use]
    pub fn receiver_key(&self) -> Option<u64> {
        (self.len() >= LEN_ACK).then(|| u64_at(self.buffer.as_ref(), field::RECEIVER_KEY))
    }

    /// The data-level length (lengths 22 and 24).
    #[must_use]
    pub fn data_len(&self) -> Option<u16> {
        (self.len() >= LEN_DATA).then(|| u16_at(self.buffer.as_ref(), field::DATA_LEN))
    }

    /// The DSS checksum (length 24 only).
    #[must_use]
    pub fn checksum(&self) -> Option<u16> {
        (self.len() >= LEN_DATA_CSUM).then(|| u16_at(self.buffer.as_ref(), field::CHECKSUM))
    }

    /// The form of this option.
    #[must_use]
    pub fn form(&self) -> MpCapableForm {
        match (self.sender_key(), self.receiver_key()) {
            (Some(s), Some(r)) => match self.data_len() {
                Some(data_len) => MpCapableForm::AckData {
                    sender_key: s,
                    receiver_key: r,
                    data_len,
                    checksum: self.checksum(),
                },
                None => MpCapableForm::Ack {
                    sender_key: s,
                    receiver_key: r,
                },
            },
            (Some(s), None) => MpCapableForm::SynAck { sender_key: s },
            _ => MpCapableForm::Syn,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MpCapable<T> {
    /// Sets the flags byte.
    pub fn set_flags(&mut self, flags: MpCapableFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the version nibble (the value is masked to 4 bits).
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::SUBTYPE];
        *b = (*b & 0xf0) | (version & 0x0f);
    }

    /// Sets the sender's key; [`Error::Unsupported`] on a 4-byte option.
    pub fn set_sender_key(&mut self, key: u64) -> Result<()> {
        if self.len() < LEN_SYNACK {
            return Err(Error::Unsupported);
        }
        set_u64(self.buffer.as_mut(), field::SENDER_KEY, key);
        Ok(())
    }

    /// Sets the receiver's key; [`Error::Unsupported`] below length 20.
    pub fn set_receiver_key(&mut self, key: u64) -> Result<()> {
        if self.len() < LEN_ACK {
            return Err(Error::Unsupported);
        }
        set_u64(self.buffer.as_mut(), field::RECEIVER_KEY, key);
        Ok(())
    }

    /// Sets the data-level length; [`Error::Unsupported`] below length 22.
    pub fn set_data_len(&mut self, len: u16) -> Result<()> {
        if self.len() < LEN_DATA {
            return Err(Error::Unsupported);
        }
        set_u16(self.buffer.as_mut(), field::DATA_LEN, len);
        Ok(())
    }

    /// Sets the checksum; [`Error::Unsupported`] unless the option is 24 bytes.
    pub fn set_checksum(&mut self, csum: u16) -> Result<()> {
        if self.len() < LEN_DATA_CSUM {
            return Err(Error::Unsupported);
        }
        set_u16(self.buffer.as_mut(), field::CHECKSUM, csum);
        Ok(())
    }
}

/// An owned MP_CAPABLE option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpCapableRepr {
    /// MPTCP version, 0..=15 (1 = RFC 8684). Not validated on parse: §3.1 leaves
    /// version negotiation to the endpoints.
    pub version: u8,
    /// The flags byte, kept whole.
    pub flags: MpCapableFlags,
    /// Keys and data-level fields, by form.
    pub form: MpCapableForm,
}

impl MpCapableRepr {
    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]>>(v: &MpCapable<T>) -> Result<Self> {
        v.check_len()?;
        Ok(Self {
            version: v.version(),
            flags: v.flags(),
            form: v.form(),
        })
    }

    /// The option length of this form.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        match self.form {
            MpCapableForm::Syn => LEN_SYN,
            MpCapableForm::SynAck { .. } => LEN_SYNACK,
            MpCapableForm::Ack { .. } => LEN_ACK,
            MpCapableForm::AckData { checksum: None, .. } => LEN_DATA,
            MpCapableForm::AckData {
                checksum: Some(_), ..
            } => LEN_DATA_CSUM,
        }
    }

    /// The sender's key, if this form carries one.
    #[must_use]
    pub const fn sender_key(&self) -> Option<u64> {
        match self.form {
            MpCapableForm::Syn => None,
            MpCapableForm::SynAck { sender_key }
            | MpCapableForm::Ack { sender_key, .. }
            | MpCapableForm::AckData { sender_key, .. } => Some(sender_key),
        }
    }

    /// The receiver's key, if this form carries one.
    #[must_use]
    pub const fn receiver_key(&self) -> Option<u64> {
        match self.form {
            MpCapableForm::Ack { receiver_key, .. }
            | MpCapableForm::AckData { receiver_key, .. } => Some(receiver_key),
            _ => None,
        }
    }

    /// Writes the option; [`Error::BadVersion`] if `version > 15`,
    /// [`Error::NoSpace`] if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if self.version > 0x0f {
            return Err(Error::BadVersion);
        }
        let len = self.buffer_len();
        let b = emit_header(buf, len, subtype::MP_CAPABLE, self.version)?;
        b[field::FLAGS] = self.flags.0;
        match self.form {
            MpCapableForm::Syn => {}
            MpCapableForm::SynAck { sender_key } => set_u64(b, field::SENDER_KEY, sender_key),
            MpCapableForm::Ack {
                sender_key,
                receiver_key,
            } => {
                set_u64(b, field::SENDER_KEY, sender_key);
                set_u64(b, field::RECEIVER_KEY, receiver_key);
            }
            MpCapableForm::AckData {
                sender_key,
                receiver_key,
                data_len,
                checksum,
            } => {
                set_u64(b, field::SENDER_KEY, sender_key);
                set_u64(b, field::RECEIVER_KEY, receiver_key);
                set_u16(b, field::DATA_LEN, data_len);
                if let Some(c) = checksum {
                    set_u16(b, field::CHECKSUM, c);
                }
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
    fn captured_syn_synack_ack() {
        // v4-path1.pcap packet 1: SYN, MP_CAPABLE v1, flags H.
        let b = hex("1e040101");
        let v = MpCapable::new_checked(&b[..]).unwrap();
        assert_eq!(v.version(), 1);
        assert!(v.flags().hmac_sha256() && v.flags().is_supported());
        assert!(!v.flags().checksum_required());
        assert_eq!(v.form(), MpCapableForm::Syn);
        assert_eq!(v.sender_key(), None);
        // v4-path1.pcap packet 2: SYN-ACK with the listener's key.
        let b = hex("1e0c01018a35122586d462eb");
        let r = MpCapableRepr::parse(&MpCapable::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            r.form,
            MpCapableForm::SynAck {
                sender_key: 0x8a35_1225_86d4_62eb
            }
        );
        // v4-path1.pcap packet 3: third ACK with both keys.
        let b = hex("1e140101f385ef39ed38c0798a35122586d462eb");
        let r = MpCapableRepr::parse(&MpCapable::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            r.form,
            MpCapableForm::Ack {
                sender_key: 0xf385_ef39_ed38_c079,
                receiver_key: 0x8a35_1225_86d4_62eb
            }
        );
        assert_eq!(r.sender_key(), Some(0xf385_ef39_ed38_c079));
        assert_eq!(r.receiver_key(), Some(0x8a35_1225_86d4_62eb));
        let mut out = [0u8; 20];
        assert_eq!(r.emit(&mut out), Ok(20));
        assert_eq!(&out[..], &b[..]);
    }

    #[test]
    fn ack_with_data_forms() {
        let mut b = hex("1e160181f385ef39ed38c0798a35122586d462eb0064");
        let mut v = MpCapable::new_checked(&mut b[..]).unwrap();
        assert_eq!(v.data_len(), Some(100));
        assert_eq!(v.checksum(), None);
        assert_eq!(v.set_checksum(1), Err(Error::Unsupported));
        v.set_data_len(7).unwrap();
        assert!(v.flags().checksum_required());
        let mut b24 = hex("1e180181f385ef39ed38c0798a35122586d462eb0064beef");
        let r = MpCapableRepr::parse(&MpCapable::new_checked(&b24[..]).unwrap()).unwrap();
        assert_eq!(
            r.form,
            MpCapableForm::AckData {
                sender_key: 0xf385_ef39_ed38_c079,
                receiver_key: 0x8a35_1225_86d4_62eb,
                data_len: 100,
                checksum: Some(0xbeef)
            }
        );
        let mut v = MpCapable::new_checked(&mut b24[..]).unwrap();
        v.set_checksum(0x1234).unwrap();
        v.set_version(0);
        v.set_flags(MpCapableFlags(0x01));
        assert_eq!(v.version(), 0);
        assert_eq!(v.checksum(), Some(0x1234));
    }

    #[test]
    fn bad_lengths_and_headers() {
        for len in [0usize, 1, 2, 3, 5, 8, 11, 13, 16, 19, 21, 23, 25, 28, 40] {
            let mut b = std::vec![0u8; len.max(3)];
            b[0] = 30;
            b[1] = len as u8;
            b[2] = 0x01;
            assert_eq!(
                MpCapable::new_checked(&b[..]).err(),
                Some(Error::BadLength),
                "len {len}"
            );
        }
        // Declared length past the buffer.
        assert_eq!(
            MpCapable::new_checked(&[30u8, 12, 1, 1][..]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            MpCapable::new_checked(&[30u8, 4][..]).err(),
            Some(Error::Truncated)
        );
        // Wrong kind / subtype.
        assert_eq!(
            MpCapable::new_checked(&[31u8, 4, 1, 1][..]).err(),
            Some(Error::Unsupported)
        );
        assert_eq!(
            MpCapable::new_checked(&[30u8, 4, 0x11, 1][..]).err(),
            Some(Error::Unsupported)
        );
        // Setters on a SYN form.
        let mut b = [30u8, 4, 1, 1];
        let mut v = MpCapable::new_checked(&mut b[..]).unwrap();
        assert_eq!(v.set_sender_key(1), Err(Error::Unsupported));
        assert_eq!(v.set_receiver_key(1), Err(Error::Unsupported));
        assert_eq!(v.set_data_len(1), Err(Error::Unsupported));
        // Emit errors.
        let r = MpCapableRepr {
            version: 16,
            flags: MpCapableFlags(1),
            form: MpCapableForm::Syn,
        };
        assert_eq!(r.emit(&mut [0u8; 4]), Err(Error::BadVersion));
        let r = MpCapableRepr { version: 1, ..r };
        assert_eq!(r.emit(&mut [0u8; 3]), Err(Error::NoSpace));
    }

    #[test]
    fn flag_helpers() {
        assert!(!MpCapableFlags(0x00).is_supported());
        assert!(!MpCapableFlags(0x41).is_supported());
        assert!(!MpCapableFlags(0x03).is_supported());
        assert!(MpCapableFlags(0xa1).is_supported());
        assert!(MpCapableFlags(0x20).no_join_to_source());
        assert!(MpCapableFlags(0x40).extensibility());
    }

    pub(crate) fn arb_repr() -> impl Strategy<Value = MpCapableRepr> {
        let form = prop_oneof![
            Just(MpCapableForm::Syn),
            any::<u64>().prop_map(|sender_key| MpCapableForm::SynAck { sender_key }),
            (any::<u64>(), any::<u64>()).prop_map(|(sender_key, receiver_key)| {
                MpCapableForm::Ack {
                    sender_key,
                    receiver_key,
                }
            }),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u16>(),
                any::<Option<u16>>()
            )
                .prop_map(|(sender_key, receiver_key, data_len, checksum)| {
                    MpCapableForm::AckData {
                        sender_key,
                        receiver_key,
                        data_len,
                        checksum,
                    }
                }),
        ];
        (0u8..16, any::<u8>(), form).prop_map(|(version, f, form)| MpCapableRepr {
            version,
            flags: MpCapableFlags(f),
            form,
        })
    }

    proptest! {
        #[test]
        fn round_trip(r in arb_repr()) {
            let mut buf = [0u8; 40];
            let n = r.emit(&mut buf).unwrap();
            prop_assert_eq!(n, r.buffer_len());
            prop_assert_eq!(usize::from(buf[1]), n);
            let v = MpCapable::new_checked(&buf[..n]).unwrap();
            prop_assert_eq!(MpCapableRepr::parse(&v).unwrap(), r);
        }

        #[test]
        fn view_never_panics(data in prop::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(v) = MpCapable::new_checked(&data[..]) {
                let _ = (v.version(), v.flags(), v.form(), v.checksum());
                let _ = MpCapableRepr::parse(&v);
            }
        }
    }
}
