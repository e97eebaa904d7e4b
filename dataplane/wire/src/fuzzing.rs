//! Invariant checks shared by the cargo-fuzz targets (`dataplane/wire/fuzz`) and the
//! seed-corpus replay in `cargo test` (`tests/fuzz_seeds.rs`). Each function takes
//! arbitrary bytes, must never panic on them, and panics only when an invariant of
//! this crate is violated (a round-trip mismatch or a length-accounting error).

mod convert;
mod mptcp;
mod packet;
mod tcp_options;

pub use convert::convert_message;
pub use mptcp::mptcp_option;
pub use packet::packet;
pub use tcp_options::tcp_options;
