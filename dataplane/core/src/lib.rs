//! `hac-core`: the sans-IO translation engine of the hybrid-access concentrator.
//!
//! It turns a client's MPTCP v1 connection whose SYN carries an RFC 8803 Convert
//! request into a plain TCP connection to the requested server, per packet, without
//! terminating TCP. No sockets, no clock, no DPDK: packets and time go in, packets
//! come out (quinn-proto style). Work in progress — see `docs/plan.md`.
#![forbid(unsafe_code)]

pub mod config;
pub mod drop;
pub mod packet;
pub mod pool;
pub mod time;
pub mod timer;

pub use config::EngineConfig;
pub use drop::{Counters, DropReason};
pub use packet::{PacketBuf, VecPacket};
pub use time::Instant;
