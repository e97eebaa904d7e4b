//! Engine configuration: what the control plane hands to every shard. Validated whole
//! by [`EngineConfig::validate`] before an engine is built from it.

use core::net::IpAddr;
use core::time::Duration;

use crate::pool::PoolConfig;

/// Configuration of the translation engine (one copy per shard).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The converter's service addresses (RFC 8803 §4.1: the address the client is
    /// configured with). Convert SYNs must be addressed to one of them.
    pub service_addrs: Vec<IpAddr>,
    /// The converter's TCP port (RFC 8803 §10: no IANA port; configurable).
    pub service_port: u16,
    /// External address pools (address-sharing mode, RFC 8803 §4.4).
    pub pool: PoolConfig,
    /// How long a pending Convert request waits for the server's SYN-ACK before the
    /// client gets SYN-ACK + Error 65 (Linux drops MP_CAPABLE after two SYN timeouts,
    /// so keep this ≤ ~2.5 s; field-notes §8 of the brief).
    pub syn_timeout: Duration,
    /// Established idle timeout (RFC 5382 REQ-5: ≥ 2 h 4 min).
    pub established_idle: Duration,
    /// Transitory timeout (half-open, closing; RFC 5382 REQ-5 / RFC 7857 §2.1: 4 min).
    pub transitory_idle: Duration,
    /// Pending Convert requests allowed per client address per shard (RFC 8803 §9.3).
    pub max_pending_per_client: u32,
    /// Convert Error replies per second per shard (token bucket, burst one second's
    /// worth; 0: no limit). RFC 8803 §6.2.8: error messages to a client SHOULD be
    /// rate-limited. Each reply holds a connection slot until its close (SYN-ACK +
    /// Error, FIN after the client's ACK); over the rate a refused request gets a
    /// RST instead, which leaves no state.
    pub error_replies_per_second: u32,
    /// Connections per shard (binding-table capacity).
    pub max_connections: usize,
    /// Connections the binding tables and the connection slab are sized for at
    /// start (capped by `max_connections`): growing past it rehashes a whole table
    /// on the packet path, so size it for the expected load.
    pub initial_capacity: usize,
    /// Bytes of application data after the Convert TLVs that the engine holds per
    /// pending connection until the server has answered (RFC 8803 §4.3). A SYN with
    /// more is refused (Error 64) rather than acknowledged without delivery.
    pub max_syn_app_data: usize,
    /// Ask for DSS checksums (flag A in our SYN-ACK, RFC 8684 §3.1). Checksums are used
    /// when either side asks.
    pub dss_checksum: bool,
    /// Refuse destinations in private ranges (RFC 1918, ULA) with Not Authorized (32).
    pub deny_private_destinations: bool,
    /// Largest MSS announced to servers (before the clamp for MPTCP option room).
    pub mss_v4: u16,
    /// Largest MSS announced to servers over IPv6.
    pub mss_v6: u16,
    /// Initial retransmission timeout for bytes the engine originates (RFC 6298).
    pub initial_rto: Duration,
    /// First retransmission of our SYN-ACK to the client (then doubling). Shorter
    /// than the client's 1 s SYN timeout on purpose: a Linux client (6.18) that
    /// retransmits its TFO SYN sends it without the Convert request, and once our
    /// SYN-ACK acknowledges the request it never sends its MP_CAPABLE ACK (it ties
    /// it to its last SYN's end sequence), so the connection falls back to TCP. A
    /// lost SYN-ACK must therefore be repaired before the client's timer fires.
    pub synack_rto: Duration,
    /// Subflows per connection, the initial one included (RFC 8684 §3.2: a join
    /// beyond it is refused with RST + MP_TCPRST "lack of resources").
    pub max_subflows: usize,
    /// How server data is placed on the subflows (the per-subscriber default).
    pub scheduler: Scheduler,
    /// Client source prefixes of the primary access (e.g. the DSL side). Empty: the
    /// subflow that opened the connection is primary.
    pub primary_access: Vec<crate::pool::Prefix>,
    /// Keep a reference to each segment in flight on a subflow of a bonded
    /// connection until the client acknowledges it, to repair access-link losses
    /// locally (no copy: the packet buffer's reference count).
    pub repair_cache: bool,
    /// Repair-cache bytes per connection; beyond, losses are revealed to the server.
    pub cache_limit_bytes: usize,
    /// Repair-cache segments per shard (bounded by the packet-buffer pool: size it
    /// well below the mempool).
    pub cache_limit_segments: usize,
    /// Flag C in our MP_CAPABLE SYN-ACK (RFC 8684 §3.1): the client must not open
    /// subflows to the address and port it opened the connection to; joins there are
    /// refused (MP_TCPRST "administratively prohibited"). Pair it with `announce`,
    /// or the client has nowhere to join.
    pub no_joins_to_initial_address: bool,
    /// Addresses of this converter announced to every MPTCP client with ADD_ADDR
    /// (RFC 8684 §3.4.1) once its connection is established; entry i has address
    /// ID i + 1 (0 is the initial subflow's). Each must be a service address; joins
    /// to them are accepted. Only addresses of the connection's family are announced,
    /// and not the one the connection was opened to.
    pub announce: Vec<Announce>,
    /// Subscribers (client IPv4 address or IPv6 /64) whose path profile a shard
    /// remembers (`paths.rs`): a new connection of a subscriber whose recent
    /// bonded connections saw very unequal path delays starts with the ACK hold
    /// on, so that its server's slow start is not ended on the first path alone.
    /// 0 turns the memory off.
    pub path_memory_entries: usize,
    /// How long a learned path profile is used.
    pub path_memory_ttl: Duration,
    /// Hold our SYN-ACK to a subscriber whose remembered paths are eight times
    /// apart or more (`paths.rs`) by the ACK hold its connection will start with, so that the
    /// server's handshake RTT (which BBR keeps as its min RTT for 10 s and sizes
    /// its flight from) is the held round trip its data will see. Costs those
    /// connections' first byte the hold (docs/multipath.md, "Handshake hold").
    /// Off by default.
    pub handshake_hold: bool,
}

/// An address announced with ADD_ADDR (RFC 8684 §3.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce {
    /// One of the service addresses.
    pub addr: IpAddr,
    /// The port joins should use; None: the port of the subflow the announcement
    /// arrives on (the service port).
    pub port: Option<u16>,
}

impl Announce {
    /// The port joins to this address are accepted on.
    #[must_use]
    pub fn port_or(&self, service_port: u16) -> u16 {
        self.port.unwrap_or(service_port)
    }
}

/// Announcements per connection at most (one bit each in the connection's state).
pub const MAX_ANNOUNCE: usize = 8;

/// Downstream placement policy (docs/multipath.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheduler {
    /// Every non-backup subflow, by earliest predicted delivery.
    #[default]
    Aggregate,
    /// The primary access first; others only while it is saturated.
    Overflow,
    /// One active subflow (the primary while it works); the others stand by.
    Failover,
}

impl Scheduler {
    /// The policy's configuration name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheduler::Aggregate => "aggregate",
            Scheduler::Overflow => "overflow",
            Scheduler::Failover => "failover",
        }
    }
}

impl core::str::FromStr for Scheduler {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "aggregate" => Ok(Scheduler::Aggregate),
            "overflow" => Ok(Scheduler::Overflow),
            "failover" => Ok(Scheduler::Failover),
            _ => Err(ConfigError {
                field: "scheduler",
                reason: "expected aggregate, overflow or failover",
            }),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            service_addrs: Vec::new(),
            service_port: 5124,
            pool: PoolConfig::default(),
            syn_timeout: Duration::from_secs(2),
            established_idle: Duration::from_secs(2 * 3600 + 4 * 60),
            transitory_idle: Duration::from_secs(240),
            max_pending_per_client: 64,
            error_replies_per_second: 10_000,
            max_connections: 1 << 20,
            initial_capacity: 1 << 16,
            max_syn_app_data: 1460,
            dss_checksum: false,
            deny_private_destinations: false,
            mss_v4: 1460,
            mss_v6: 1440,
            initial_rto: Duration::from_secs(1),
            synack_rto: Duration::from_millis(250),
            max_subflows: 8,
            scheduler: Scheduler::Aggregate,
            primary_access: Vec::new(),
            repair_cache: true,
            cache_limit_bytes: 4 << 20,
            cache_limit_segments: 8192,
            no_joins_to_initial_address: false,
            announce: Vec::new(),
            path_memory_entries: 16_384,
            path_memory_ttl: Duration::from_secs(600),
            handshake_hold: false,
        }
    }
}

/// A configuration error, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl EngineConfig {
    /// Checks the configuration as a whole.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason| Err(ConfigError { field, reason });
        if self.service_addrs.is_empty() {
            return err(
                "service_addrs",
                "at least one converter service address is required",
            );
        }
        if self.service_port == 0 {
            return err("service_port", "must not be 0");
        }
        if self.pool.prefixes.is_empty() {
            return err("pool.prefixes", "at least one pool prefix is required");
        }
        if self.pool.port_lo == 0 || self.pool.port_lo > self.pool.port_hi {
            return err("pool.port_lo", "port range must be non-empty and exclude 0");
        }
        if self.pool.block_size == 0 {
            return err("pool.block_size", "must be at least 1");
        }
        if self.established_idle < Duration::from_secs(2 * 3600 + 4 * 60) {
            return err(
                "established_idle",
                "RFC 5382 REQ-5 requires at least 2 h 4 min",
            );
        }
        if self.transitory_idle < Duration::from_secs(240) {
            return err("transitory_idle", "RFC 5382 REQ-5 requires at least 4 min");
        }
        if self.syn_timeout.is_zero() || self.syn_timeout > Duration::from_secs(30) {
            return err("syn_timeout", "must be between 1 ms and 30 s");
        }
        if !(536..=9000).contains(&self.mss_v4) || !(1220..=9000).contains(&self.mss_v6) {
            return err("mss", "mss_v4 must be 536..=9000 and mss_v6 1220..=9000");
        }
        if self.max_syn_app_data > 4096 {
            return err("max_syn_app_data", "at most 4096 bytes");
        }
        if self.max_connections > 1 << 24 {
            return err("max_connections", "at most 16777216 per shard");
        }
        if !(1..=32).contains(&self.max_subflows) {
            return err("max_subflows", "must be 1..=32");
        }
        if self.cache_limit_segments > 1 << 22 {
            return err("cache_limit_segments", "at most 4194304");
        }
        if self.announce.len() > MAX_ANNOUNCE {
            return err("announce", "at most 8 announced addresses");
        }
        for (i, a) in self.announce.iter().enumerate() {
            if !self.service_addrs.contains(&a.addr) {
                return err(
                    "announce",
                    "every announced address must be one of the converter's service addresses",
                );
            }
            if a.port == Some(0) {
                return err("announce", "an announced port must not be 0");
            }
            if a.addr.is_ipv6() && a.port.is_some() {
                // 30 bytes of ADD_ADDR + 12 of timestamps exceed the 40 option bytes.
                return err(
                    "announce",
                    "an IPv6 announcement cannot carry a port (it would not fit beside TCP timestamps)",
                );
            }
            if self.announce[..i].iter().any(|b| b == a) {
                return err("announce", "an address is announced twice");
            }
        }
        Ok(())
    }
}
