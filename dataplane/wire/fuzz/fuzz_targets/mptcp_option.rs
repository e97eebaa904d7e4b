#![no_main]
//! Fuzz target: see `hac_wire::fuzzing::mptcp_option` for the invariant it asserts.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hac_wire::fuzzing::mptcp_option(data));
