//! `hac.v1`: the management API of `hacd`, generated from `proto/hac/v1/hac.proto`.
//! Servers and clients (`hacctl`) use only this crate's types.
#![forbid(unsafe_code)]
#![allow(missing_debug_implementations, clippy::all, rust_2018_idioms)]

/// The `hac.v1` package.
pub mod v1 {
    tonic::include_proto!("hac.v1");

    /// The file descriptor set of `hac.v1` (for gRPC reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("hac_v1_descriptor");
}
