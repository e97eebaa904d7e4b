//! Test harness for the `hac` translation engine: real Linux peers in network
//! namespaces, connected to a user-space [`Translator`] through two TUN devices.
//!
//! ```text
//!  netns hact-…-cli                  this process                 netns hact-…-srv
//!  Linux MPTCP/TCP client   TUN   ┌───────────────┐   TUN   plain TCP server (python3)
//!  198.18.1.2 2001:db8:1::2 ────► │  Translator   │ ◄────  198.51.100.2 2001:db8:100::2
//!  routes 192.0.2.1/32,    Access │ (packet pump) │ Core   routes 203.0.113.0/28,
//!         2001:db8:ffff::1/128    └───────────────┘        2001:db8:200::/120 via TUN
//! ```
//!
//! [`Lab::new`] builds both namespaces, creates the TUN devices in the root
//! namespace (their file descriptors stay with this process), moves them into
//! the namespaces and starts the server script. [`Lab::run_with`] runs a
//! [`Translator`] on a packet-pump thread for the duration of a closure in which
//! clients are run with [`Lab::run_client`] / [`Lab::spawn_client`]. Dropping the
//! [`Lab`] (also while unwinding from a panic) kills the helper processes,
//! closes the TUN devices and deletes the namespaces.
//!
//! Tests need root (namespaces, TUN); use [`skip_unless_root`] to skip otherwise.
//! Helper processes: `ip` (iproute2), `python3` (≥ 3.9) and `sh`.
//!
//! Set `HAC_HARNESS_PCAP_DIR=/some/dir` to get one pcap (LINKTYPE_RAW) per TUN
//! and per [`Lab::run_with`] call: `<lab>-<n>-access.pcap`, `<lab>-<n>-core.pcap`.

#![forbid(unsafe_code)]

mod client;
mod convert;
mod lab;
mod pcap;
mod pump;
mod server;
mod util;

pub use client::{ClientHandle, ClientResult, ClientSpec, ConvertOutcome, ServerRecord};
pub use convert::{convert_connect_request, convert_extended_connect_request};
pub use lab::{Lab, Ns, skip_unless_root};
pub use pump::{BATCH, PumpStats, QUEUE, Side, TICK, Translator};
pub use server::{Peers, TestServer};

use std::net::{Ipv4Addr, Ipv6Addr};

/// Client address (IPv4) in the client namespace.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// Client address (IPv6) in the client namespace.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// Converter service address (IPv4), routed from the client namespace into the
/// Access TUN.
pub const CONVERTER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Converter service address (IPv6), routed into the Access TUN.
pub const CONVERTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// The RFC 8803 Convert port.
pub const CONVERT_PORT: u16 = 5124;
/// Server address (IPv4) in the server namespace.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// Server address (IPv6) in the server namespace.
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);
/// Port the test server listens on (both addresses).
pub const SERVER_PORT: u16 = 8080;
/// A port nothing listens on in the server namespace (the kernel answers RST).
pub const CLOSED_PORT: u16 = 9;
/// First address of the IPv4 source pool 203.0.113.0/28, routed from the server
/// namespace into the Core TUN.
pub const POOL_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 0);
/// Prefix length of [`POOL_V4`].
pub const POOL_V4_PREFIX: u8 = 28;
/// First address of the IPv6 source pool 2001:db8:200::/120.
pub const POOL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0);
/// Prefix length of [`POOL_V6`].
pub const POOL_V6_PREFIX: u8 = 120;
/// MTU of both TUN devices.
pub const TUN_MTU: u16 = 1500;
