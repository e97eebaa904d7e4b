//! `hac-core`: the sans-IO translation engine of the hybrid-access concentrator.
//!
//! It turns a client's MPTCP v1 connection whose SYN carries an RFC 8803 Convert
//! request into a plain TCP connection to the requested server, per packet, without
//! terminating TCP. No sockets, no clock, no DPDK: packets and time go in, packets
//! come out (quinn-proto style). Work in progress — see `docs/plan.md`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
mod conn;
pub mod drop;
mod emit;
pub mod engine;
mod handshake;
mod icmp;
mod multipath;
pub mod packet;
mod paths;
pub mod policy;
pub mod pool;
mod segment;
mod table;
pub mod time;
pub mod timer;
mod translate;
mod transmit;

pub use admin::{SessionFilter, SessionId, SessionInfo};
pub use config::{Announce, EngineConfig, Scheduler};
pub use conn::State;
pub use drop::{CONVERT_ERROR_CODES, Counters, DropReason, FailReason, convert_error_slot};
pub use engine::{Action, Engine, JoinEvent, Port, Transmit, owner_of};
pub use multipath::SubflowInfo;
pub use packet::{PacketBuf, VecPacket};
pub use paths::PathProfile;
pub use policy::{Mode, Policy, PolicySpec};
pub use time::Instant;
