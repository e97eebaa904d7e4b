use std::ffi::CStr;
use std::fmt;

use crate::sys;

/// A failed DPDK call: what was attempted, the `errno`-style code (from `rte_errno` or a
/// negative return value) and `rte_strerror`'s text for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkError {
    op: String,
    errno: i32,
    message: String,
}

impl DpdkError {
    /// An error with code `errno` (positive), described by `rte_strerror`.
    #[must_use]
    pub fn new(op: impl Into<String>, errno: i32) -> Self {
        let errno = errno.abs();
        DpdkError {
            op: op.into(),
            errno,
            message: strerror(errno),
        }
    }

    /// An error from the current thread's `rte_errno`.
    #[must_use]
    pub fn from_rte_errno(op: impl Into<String>) -> Self {
        // SAFETY: reads the calling thread's rte_errno (a thread-local int); valid on
        // any thread, before or after EAL initialisation.
        let errno = unsafe { sys::hac_rte_errno() };
        Self::new(op, errno)
    }

    /// An error raised by this crate itself (bad argument, wrong state), with an
    /// errno-style code and our own text.
    #[must_use]
    pub fn usage(op: impl Into<String>, errno: i32, message: impl Into<String>) -> Self {
        DpdkError {
            op: op.into(),
            errno,
            message: message.into(),
        }
    }

    /// `ret` as a result: negative values are `-errno`.
    pub(crate) fn check(op: &str, ret: i32) -> Result<i32, DpdkError> {
        if ret < 0 {
            Err(Self::new(op, -ret))
        } else {
            Ok(ret)
        }
    }

    /// The operation that failed.
    #[must_use]
    pub fn op(&self) -> &str {
        &self.op
    }

    /// The errno-style code (positive; `libc` values such as `EINVAL`, or DPDK's own
    /// `E_RTE_*` codes above 1000).
    #[must_use]
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The description (`rte_strerror` for DPDK errors).
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (errno {})", self.op, self.message, self.errno)
    }
}

impl std::error::Error for DpdkError {}

/// `rte_strerror(errno)` as an owned string.
fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror accepts any value and returns a pointer to a static string
    // or to a per-thread buffer, NUL-terminated; we copy it out before returning.
    let p = unsafe { sys::rte_strerror(errno) };
    if p.is_null() {
        return format!("error {errno}");
    }
    // SAFETY: non-null, NUL-terminated, valid until the next rte_strerror call on this
    // thread, which cannot happen before the copy below.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

// errno values used by this crate (Linux).
pub(crate) const EINVAL: i32 = 22;
pub(crate) const EBUSY: i32 = 16;
pub(crate) const EALREADY: i32 = 114;
pub(crate) const ENOMEM: i32 = 12;
pub(crate) const ENODEV: i32 = 19;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_without_eal() {
        let e = DpdkError::new("op", -EINVAL);
        assert_eq!(e.errno(), EINVAL);
        assert!(e.message().contains("Invalid argument"), "{e}");
        assert!(e.to_string().starts_with("op: "));
        // DPDK's own codes (E_RTE_SECONDARY = 1001).
        let e = DpdkError::new("x", 1001);
        assert!(e.message().to_lowercase().contains("secondary"), "{e}");
    }

    #[test]
    fn check_maps_negative_returns() {
        assert_eq!(DpdkError::check("x", 3), Ok(3));
        assert_eq!(DpdkError::check("x", -ENODEV).unwrap_err().errno(), ENODEV);
    }
}
