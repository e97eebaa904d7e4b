//! `hac-wire`: zero-copy, panic-free views over the packets a hybrid-access
//! concentrator parses and rewrites — Ethernet, ARP, IPv4, IPv6, ICMPv4/v6, TCP and
//! its options, every MPTCP v1 option (RFC 8684 §3) and the RFC 8803 Convert
//! protocol — plus the checksum, sequence-number and MPTCP crypto helpers a
//! per-packet translator needs.
//!
//! # The contract
//! Every view is a thin wrapper `View<T: AsRef<[u8]>>` over a byte buffer, in the
//! style of smoltcp's `wire` module:
//!
//! * `View::new_checked(buf)` validates the buffer once and returns a typed
//!   [`Error`] for anything short, inconsistent or unknown;
//! * after a successful check, **no accessor panics**, whatever the bytes are;
//! * setters live on `View<T: AsMut<[u8]>>` and do not panic either after the check;
//! * nothing here allocates: emitters write into a caller-provided `&mut [u8]` and
//!   return the number of bytes written, or [`Error::NoSpace`].
//!
//! Multi-byte fields are network byte order on the wire and native integers at the
//! accessors. Sequence numbers are [`seq::SeqNum`] and [`seq::DataSeq`], never bare
//! integers.
#![forbid(unsafe_code)]
#![no_std]

#[cfg(test)]
extern crate std;

mod bytes;
mod error;

pub mod checksum;
pub mod seq;

pub mod arp;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;

pub mod rewrite;
pub mod tcp;
pub mod tcp_options;

pub mod crypto;
pub mod mptcp;

pub mod convert;

#[doc(hidden)]
pub mod fuzzing;

pub use error::Error;

/// Result alias used by every parser and emitter in this crate.
pub type Result<T> = core::result::Result<T, Error>;
