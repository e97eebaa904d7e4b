//! Fuzz invariant (in progress).

/// Checks the invariants on arbitrary input.
pub fn packet(data: &[u8]) {
    let _ = data;
}
