//! hac-cpe: the customer-side converter of dual-proxy mode.
//!
//! A Linux program for the customer gateway. LAN hosts speak plain TCP; nftables
//! redirects their connections to hac-cpe, which opens for each one an MPTCP
//! connection (the kernel's, over every uplink) to the concentrator, with the
//! RFC 8803 Convert request for the original destination in its TFO SYN, and
//! relays the bytes both ways. See docs/dual-proxy.md.
//!
//! Modules: [`config`] (TOML), [`convert`] (the exchange, sans I/O),
//! [`intercept`] (nftables, SO_ORIGINAL_DST), [`upstream`] (MPTCP + TFO sockets),
//! [`relay`] (splice / copy), [`paths`] (uplinks, MPTCP endpoints),
//! [`servers`] (MPTCP-capable servers), [`proxy`] (one LAN connection),
//! [`metrics`] (Prometheus text).

pub mod config;
pub mod convert;
pub mod intercept;
pub mod metrics;
pub mod paths;
pub mod proxy;
pub mod relay;
pub mod servers;
pub mod upstream;
