//! Fuzz invariant (in progress).

/// Checks the invariants on arbitrary input.
pub fn mptcp_option(data: &[u8]) {
    let _ = data;
}
