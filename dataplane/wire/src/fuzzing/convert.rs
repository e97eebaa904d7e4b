//! Fuzz invariant (in progress).

/// Checks the invariants on arbitrary input.
pub fn convert_message(data: &[u8]) {
    let _ = data;
}
