//! The Convert fixed header (RFC 8803 §6.1).
//!
//! ```text
//!  byte 0     byte 1          bytes 2-3
//! +---------+---------------+---------------------+
//! | Version | Total Length  | Magic Number 0x2263 |
//! +---------+---------------+---------------------+
//! ```

use super::{ConvertError, HEADER_LEN, MAGIC, VERSION};
use crate::bytes::{set_u16, u16_at};
use crate::{Error, Result};

mod field {
    pub(super) const VERSION: usize = 0;
    pub(super) const TOTAL_LEN: usize = 1;
    pub(super) const MAGIC: usize = 2;
}

/// Zero-copy view of the 4-byte fixed header.
///
/// After [`Header::new_checked`] succeeds no accessor or setter panics. The check
/// only covers the 4 bytes; the semantic checks (magic, version, Total Length) are
/// [`HeaderRepr::parse`] and [`parse_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }

    /// Wraps a buffer after checking it holds the 4-byte header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let h = Header::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// `Err(Error::Truncated)` when the buffer is shorter than 4 bytes.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (RFC 8803 §6.1: 1; 0 reserved).
    #[must_use]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// Total Length in 32-bit words, header included (RFC 8803 §6.1).
    #[must_use]
    pub fn total_len(&self) -> u8 {
        self.buffer.as_ref()[field::TOTAL_LEN]
    }

    /// Total Length in bytes (`total_len() * 4`).
    #[must_use]
    pub fn message_len(&self) -> usize {
        usize::from(self.total_len()) * 4
    }

    /// Magic Number field (RFC 8803 §6.1: 0x2263).
    #[must_use]
    pub fn magic(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::MAGIC)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets the Version field.
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[field::VERSION] = v;
    }

    /// Sets Total Length (32-bit words).
    pub fn set_total_len(&mut self, words: u8) {
        self.buffer.as_mut()[field::TOTAL_LEN] = words;
    }

    /// Sets the Magic Number field.
    pub fn set_magic(&mut self, m: u16) {
        set_u16(self.buffer.as_mut(), field::MAGIC, m);
    }
}

/// A validated fixed header: version 1, magic 0x2263, Total Length ≥ 1 word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderRepr {
    /// Total Length in 32-bit words, including the header (1..=255).
    pub total_words: u8,
}

impl HeaderRepr {
    /// Validates a header view (magic, then version, then Total Length ≠ 0).
    ///
    /// The magic is checked first (a wrong magic means "not Convert at all"), then
    /// the version (a future version may frame the rest differently, so its Total
    /// Length is not interpreted), then Total Length. Does not check that the
    /// buffer holds the whole message; see [`parse_header`].
    pub fn parse<T: AsRef<[u8]>>(h: &Header<T>) -> core::result::Result<Self, ConvertError> {
        h.check_len()
            .map_err(|_| ConvertError::Truncated { needed: HEADER_LEN })?;
        // RFC 8803 §6.1: the Magic Number MUST be 0x2263.
        if h.magic() != MAGIC {
            return Err(ConvertError::BadMagic(h.magic()));
        }
        // RFC 8803 §6.1: version 1; 0 is reserved → Error 0 Unsupported Version.
        if h.version() != VERSION {
            return Err(ConvertError::BadVersion(h.version()));
        }
        // RFC 8803 §6.1: Total Length 0 is invalid → reset the connection.
        if h.total_len() == 0 {
            return Err(ConvertError::TotalLengthZero);
        }
        Ok(HeaderRepr {
            total_words: h.total_len(),
        })
    }

    /// Length of the whole message in bytes.
    #[must_use]
    pub const fn message_len(&self) -> usize {
        self.total_words as usize * 4
    }

    /// Bytes [`HeaderRepr::emit`] writes (4).
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; `Error::NoSpace` if `buf` is shorter than 4 bytes,
    /// `Error::BadLength` if `total_words` is 0.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        emit_header(buf, self.total_words)
    }
}

/// Validates the fixed header at the start of `buf` and that `buf` holds the whole
/// message (`Truncated { needed: total_len * 4 }` otherwise).
pub fn parse_header(buf: &[u8]) -> core::result::Result<HeaderRepr, ConvertError> {
    let repr = HeaderRepr::parse(&Header::new_unchecked(buf))?;
    if buf.len() < repr.message_len() {
        return Err(ConvertError::Truncated {
            needed: repr.message_len(),
        });
    }
    Ok(repr)
}

/// Writes `01 <total_words> 22 63` at the start of `buf` (RFC 8803 §6.1).
///
/// `Error::NoSpace` if `buf` is shorter than 4 bytes; `Error::BadLength` if
/// `total_words` is 0 (invalid on the wire).
pub fn emit_header(buf: &mut [u8], total_words: u8) -> Result<usize> {
    if total_words == 0 {
        return Err(Error::BadLength);
    }
    let Some(b) = buf.get_mut(..HEADER_LEN) else {
        return Err(Error::NoSpace);
    };
    let mut h = Header::new_unchecked(b);
    h.set_version(VERSION);
    h.set_total_len(total_words);
    h.set_magic(MAGIC);
    Ok(HEADER_LEN)
}
