//! Why the engine dropped a packet: a small `#[repr(u8)]` enum that indexes the
//! per-shard counters (no allocation, no logging on the packet path).

/// A drop reason. The discriminant indexes [`Counters::drops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// The IP or TCP header did not parse (truncated, bad lengths).
    Malformed = 0,
    /// Not IPv4/IPv6 TCP (or ICMP for a binding): nothing for the engine.
    NotTcp,
    /// An IP fragment: the converter does not reassemble (RFC 8803 clients never
    /// fragment TCP; RFC 6888 REQ-14 concerns only UDP/ICMP).
    Fragment,
    /// A TCP option list that does not parse (RFC 9293 §3.1 option framing).
    BadOptions,
    /// An MPTCP option that does not parse (wrong length for its flags, unknown subtype).
    BadMptcpOption,
    /// Access-side packet for no binding and not a SYN to the converter service.
    NoBinding,
    /// Core-side packet for no binding (address-sharing mode drops these, RFC 8803 §4.4).
    NoBindingCore,
    /// A SYN to the converter port without any Convert TLV: ignored (RFC 8803 §6).
    NoConvertMessage,
    /// Too many pending Convert requests from this client (RFC 8803 §9.3).
    PendingLimit,
    /// The binding table of this shard is full.
    TableFull,
    /// A retransmitted SYN for a pending request: absorbed (the downstream SYN is
    /// retransmitted by the engine, RFC 8803 §9.3).
    SynRetransmit,
    /// A client segment before the handshake finished that the engine cannot use yet.
    HandshakeIncomplete,
    /// Client data not covered by any DSS mapping (RFC 8684 §3.3.1).
    UnmappedData,
    /// A client segment outside the data-level window (RFC 8684 §3.3.4/§3.8).
    OutOfWindow,
    /// The DSS checksum did not verify (RFC 8684 §3.3.1; the subflow is reset).
    DssChecksum,
    /// The packet is not for this shard (the runtime must hand it over).
    WrongShard,
    /// Server segment for a connection whose client side is gone.
    ClientGone,
    /// An ICMP error that does not concern a binding.
    IcmpNoBinding,
    /// A packet for a connection already closed (late segment).
    Closed,
    /// The packet buffer lacked headroom/tailroom for the rewrite.
    NoRoom,
    /// A packet type the engine does not translate.
    Unsupported,
    /// A server retransmission of data the client already acknowledged (answered
    /// with an ACK instead).
    Duplicate,
    /// A client segment whose TCP checksum is wrong, seen while DSS checksums are
    /// in use (the payload is read to sum it: a corrupt segment must not count
    /// against its mapping; the client retransmits it).
    TcpChecksum,
}

impl DropReason {
    /// Number of reasons (size of the counter array).
    pub const COUNT: usize = DropReason::TcpChecksum as usize + 1;

    /// Every reason, in discriminant order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::NotTcp,
        DropReason::Fragment,
        DropReason::BadOptions,
        DropReason::BadMptcpOption,
        DropReason::NoBinding,
        DropReason::NoBindingCore,
        DropReason::NoConvertMessage,
        DropReason::PendingLimit,
        DropReason::TableFull,
        DropReason::SynRetransmit,
        DropReason::HandshakeIncomplete,
        DropReason::UnmappedData,
        DropReason::OutOfWindow,
        DropReason::DssChecksum,
        DropReason::WrongShard,
        DropReason::ClientGone,
        DropReason::IcmpNoBinding,
        DropReason::Closed,
        DropReason::NoRoom,
        DropReason::Unsupported,
        DropReason::Duplicate,
        DropReason::TcpChecksum,
    ];

    /// A stable label for metrics (`reason="..."`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotTcp => "not_tcp",
            DropReason::Fragment => "fragment",
            DropReason::BadOptions => "bad_options",
            DropReason::BadMptcpOption => "bad_mptcp_option",
            DropReason::NoBinding => "no_binding",
            DropReason::NoBindingCore => "no_binding_core",
            DropReason::NoConvertMessage => "no_convert_message",
            DropReason::PendingLimit => "pending_limit",
            DropReason::TableFull => "table_full",
            DropReason::SynRetransmit => "syn_retransmit",
            DropReason::HandshakeIncomplete => "handshake_incomplete",
            DropReason::UnmappedData => "unmapped_data",
            DropReason::OutOfWindow => "out_of_window",
            DropReason::DssChecksum => "dss_checksum",
            DropReason::WrongShard => "wrong_shard",
            DropReason::ClientGone => "client_gone",
            DropReason::IcmpNoBinding => "icmp_no_binding",
            DropReason::Closed => "closed",
            DropReason::NoRoom => "no_room",
            DropReason::Unsupported => "unsupported",
            DropReason::Duplicate => "duplicate",
            DropReason::TcpChecksum => "tcp_checksum",
        }
    }
}

/// The RFC 8803 §6.2.8 error codes the converter sends, in counter order; every
/// other code counts in the last slot of [`Counters::convert_errors_by_code`].
pub const CONVERT_ERROR_CODES: [u8; 10] = [0, 1, 2, 3, 32, 33, 64, 65, 96, 97];

/// The counter slot of Convert error `code`.
#[must_use]
pub fn convert_error_slot(code: u8) -> usize {
    CONVERT_ERROR_CODES
        .iter()
        .position(|&c| c == code)
        .unwrap_or(CONVERT_ERROR_CODES.len())
}

/// Why a Convert request did not become a connection. The discriminant indexes
/// [`Counters::failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FailReason {
    /// Refused by the converter before contacting the server (malformed request,
    /// policy, resources: the Convert error code tells which).
    Refused = 0,
    /// The server answered the downstream SYN with a RST (Convert error 96).
    ServerReset,
    /// A hard ICMP error downstream (Convert error 97).
    ServerUnreachable,
    /// The server never answered the downstream SYN (Convert error 65).
    ServerTimeout,
}

impl FailReason {
    /// Number of reasons.
    pub const COUNT: usize = FailReason::ServerTimeout as usize + 1;
    /// Every reason, in discriminant order.
    pub const ALL: [FailReason; Self::COUNT] = [
        FailReason::Refused,
        FailReason::ServerReset,
        FailReason::ServerUnreachable,
        FailReason::ServerTimeout,
    ];

    /// A stable label for metrics (`reason="..."`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            FailReason::Refused => "refused",
            FailReason::ServerReset => "server_reset",
            FailReason::ServerUnreachable => "server_unreachable",
            FailReason::ServerTimeout => "server_timeout",
        }
    }
}

/// Per-shard counters, plain integers owned by the shard's worker (the runtime
/// publishes them without locks).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Packets handled, by ingress side: [access, core].
    pub packets_in: [u64; 2],
    /// Packets forwarded (translated) out of each side.
    pub packets_out: [u64; 2],
    /// Packets the engine originated (`poll_transmit`).
    pub generated: u64,
    /// Drops by reason.
    pub drops: [u64; DropReason::COUNT],
    /// Convert requests accepted (downstream SYN sent).
    pub convert_requests: u64,
    /// Convert errors sent (all codes).
    pub convert_errors: u64,
    /// Convert errors sent by code (slots: [`convert_error_slot`]).
    pub convert_errors_by_code: [u64; CONVERT_ERROR_CODES.len() + 1],
    /// Convert requests that did not become a connection, by reason.
    pub failed: [u64; FailReason::COUNT],
    /// Downstream segments placed on a subflow by the scheduler, by policy
    /// (`Scheduler as usize`: aggregate, overflow, failover).
    pub placements: [u64; 3],
    /// Connections that reached the established state.
    pub established: u64,
    /// Connections that fell back to plain TCP on the client leg.
    pub fallbacks: u64,
    /// MP_JOIN subflows established (RFC 8684 §3.2).
    pub joins_accepted: u64,
    /// MP_JOIN SYNs or third ACKs refused (unknown token, bad HMAC, limit).
    pub joins_refused: u64,
    /// Segments repaired locally from the repair cache.
    pub repairs: u64,
    /// Subflow holes filled under their original mapping after another subflow
    /// delivered the data (no cache entry needed).
    pub zero_fills: u64,
    /// Segments re-sent on another subflow (dead or removed subflow).
    pub reinjections: u64,
    /// Losses the cache could not repair (not cached, not yet delivered elsewhere).
    pub cache_misses: u64,
    /// Segments not cached because a cache limit was reached.
    pub cache_full: u64,
    /// Server retransmissions of data the client already had.
    pub spurious_retransmissions: u64,
    /// Server zero-window probes on bonded connections, each answered and
    /// passed on to the client as a probe of its own (`Tx::PathProbe`).
    pub zero_window_probes: u64,
    /// Subflows that became suspect / dead / came back.
    pub subflows_suspect: u64,
    pub subflows_dead: u64,
    pub subflows_revived: u64,
    /// Bonded connections closed, and the sums of their repair-cache peak and mean
    /// (sampled every 10 ms while data was in flight) sizes in bytes; the largest peak.
    pub bonded_closed: u64,
    /// Connections bonded at their first byte with an ACK hold learned from
    /// their subscriber's earlier connections (`paths.rs`).
    pub path_memory_seeded: u64,
    /// Seeded connections whose server doubled its flight under the uncapped
    /// ACK hold (kept it) / did not (capped), `multipath::GrowthProbe`.
    pub growth_uncapped: u64,
    pub growth_capped: u64,
    /// SYN-ACKs held for the server's handshake RTT
    /// (`EngineConfig::handshake_hold`).
    pub handshake_holds: u64,
    /// Refused Convert requests answered with a RST instead of an Error reply:
    /// over `EngineConfig::error_replies_per_second` (RFC 8803 §6.2.8).
    pub error_replies_limited: u64,
    pub cache_peak_sum: u64,
    pub cache_mean_sum: u64,
    pub cache_peak_max: u64,
    /// Our ADD_ADDR announcements sent (retransmissions included), echoed by the
    /// client, and given up on unanswered (RFC 8684 §3.4.1).
    pub add_addr_sent: u64,
    pub add_addr_echoed: u64,
    pub add_addr_unanswered: u64,
    /// Client mappings whose DSS checksum verified (RFC 8684 §3.3.1), and mappings
    /// that could not be verified because a segment of theirs arrived after a hole
    /// (the running sum is kept in order only). Failures count as
    /// [`DropReason::DssChecksum`] drops.
    pub dss_checksum_ok: u64,
    pub dss_checksum_unverified: u64,
    /// Client mappings whose DSS checksum was wrong (MP_FAIL on a lone subflow,
    /// otherwise the subflow is reset and the segment dropped as
    /// [`DropReason::DssChecksum`]).
    pub dss_checksum_failed: u64,
    /// MP_FAIL sent (checksum failure on a lone subflow: fallback, RFC 8684 §3.7)
    /// and received from clients.
    pub mp_fail_sent: u64,
    pub mp_fail_received: u64,
}

impl Counters {
    /// Counts one drop.
    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }

    /// Counts one Convert error sent with `code`, and the failed request behind it.
    pub fn convert_error(&mut self, code: u8, why: FailReason) {
        self.convert_errors += 1;
        self.convert_errors_by_code[convert_error_slot(code)] += 1;
        self.failed[why as usize] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        for (i, r) in FailReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }

    #[test]
    fn convert_errors_count_by_code() {
        let mut c = Counters::default();
        c.convert_error(32, FailReason::Refused);
        c.convert_error(96, FailReason::ServerReset);
        c.convert_error(200, FailReason::Refused);
        assert_eq!(c.convert_errors, 3);
        assert_eq!(c.convert_errors_by_code[convert_error_slot(32)], 1);
        assert_eq!(c.convert_errors_by_code[8], 1);
        assert_eq!(c.convert_errors_by_code[CONVERT_ERROR_CODES.len()], 1);
        assert_eq!(c.failed, [2, 1, 0, 0]);
    }
}
