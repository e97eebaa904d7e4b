//! `hacd`, the appliance: configuration, the per-link host logic (ARP, neighbour
//! discovery, ICMP echo, static routes) and, with the DPDK runtime, the pinned
//! polling workers that run `hac-core`.
#![forbid(unsafe_code)]

pub mod alloclog;
pub mod config;
pub mod control;
pub mod dpdk;
pub mod host;
pub mod metrics;
pub mod mgmt;
pub mod nonic;
pub mod notify;
pub mod runtime;
pub mod state;
