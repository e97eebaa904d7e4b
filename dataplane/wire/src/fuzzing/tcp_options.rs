//! Fuzz invariant (in progress).

/// Checks the invariants on arbitrary input.
pub fn tcp_options(data: &[u8]) {
    let _ = data;
}
