//! What the management plane asks of a shard, between bursts: swap in a new
//! configuration or policy for new connections, admit a Convert request under the
//! policy, snapshot sessions, abort one, revoke those a new policy refuses. Nothing
//! here runs per packet of an established connection.

use core::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hac_wire::convert::ErrorCode;

use crate::config::{ConfigError, EngineConfig};
use crate::conn::State;
use crate::engine::Engine;
use crate::multipath::SubflowInfo;
use crate::packet::PacketBuf;
use crate::policy::{Denial, Policy, PolicyCounters, SubscriberKey};
use crate::pool::Prefix;
use crate::time::Instant;

/// A connection of one shard: its slot and the slot's generation (a slot reused
/// by a later connection has another generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    /// Slot in the shard's connection table.
    pub slot: u32,
    /// Generation of the slot.
    pub generation: u32,
}

/// A snapshot of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Which connection.
    pub id: SessionId,
    /// Its state.
    pub state: State,
    /// Client address and port of the initial subflow.
    pub client: SocketAddr,
    /// The converter address and port it reached.
    pub service: SocketAddr,
    /// The server.
    pub server: SocketAddr,
    /// The external (pool) address and port toward the server.
    pub pool: SocketAddr,
    /// The client leg speaks MPTCP.
    pub mptcp: bool,
    /// The client leg fell back to plain TCP.
    pub fallback: bool,
    /// Subflows (1 unless joined subflows exist).
    pub subflows: u32,
    /// Microseconds since the last packet.
    pub idle_us: u64,
    /// Client bytes the server acknowledged.
    pub bytes_up: u64,
    /// Server bytes the client acknowledged.
    pub bytes_down: u64,
    /// The subscriber by the current policy (None: an unlisted client).
    pub subscriber: Option<Arc<str>>,
}

/// Which sessions to list (every field optional, combined with AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Subscriber name (by the current policy).
    pub subscriber: Option<String>,
    /// Client address within this prefix.
    pub client: Option<Prefix>,
    /// Server address within this prefix.
    pub server: Option<Prefix>,
    /// Server port.
    pub server_port: Option<u16>,
}

/// What the policy decided for a Convert request: whom to charge (when limits
/// apply) and the address its paired pool address derives from.
#[derive(Debug)]
pub(crate) struct Admission {
    pub charge: Option<SubscriberKey>,
    pub pairing: IpAddr,
    /// The subscriber's own scheduler, if its policy names one.
    pub scheduler: Option<crate::config::Scheduler>,
}

impl Denial {
    /// The Convert error code (RFC 8803 §6.2.8).
    #[must_use]
    pub const fn error_code(self) -> ErrorCode {
        match self {
            Denial::Client | Denial::Destination => ErrorCode::NotAuthorized,
            Denial::Ports | Denial::Connections | Denial::Rate => ErrorCode::ResourceExceeded,
        }
    }
}

fn sock(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

impl<P: PacketBuf> Engine<P> {
    // ------------------------------------------------------------ admission

    /// The policy's verdict on a Convert request from `client` to `dest`, called
    /// once per connection-creating SYN (handshake.rs). RFC 8803 §6.2.8: 32 Not
    /// Authorized for a refused client or destination, 64 Resource Exceeded for a
    /// subscriber over its limits.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        client: IpAddr,
        dest: IpAddr,
    ) -> Result<Admission, ErrorCode> {
        let verdict = self.policy.decide(client, dest).and_then(|d| {
            let charge = match d.limited {
                None => None,
                Some((key, limits)) => self.policy_state.admit(
                    key,
                    limits,
                    self.shards,
                    self.cfg.pool.hold_down,
                    now,
                )?,
            };
            Ok(Admission {
                charge,
                pairing: d.pairing,
                scheduler: d.scheduler,
            })
        });
        verdict.map_err(|d| {
            self.policy_state.counters.count(d);
            d.error_code()
        })
    }

    /// The primary access prefixes for a client address: its subscriber's when the
    /// policy names some, else the converter-wide ones (called when a subflow is
    /// bonded or joins, never per packet).
    pub(crate) fn primary_access_of(&self, client: IpAddr) -> &[Prefix] {
        match self.policy.subscriber_of(client) {
            Some(s) if !s.primary_access.is_empty() => &s.primary_access,
            _ => &self.cfg.primary_access,
        }
    }

    // ------------------------------------------------------------ changes

    /// The policy in force for new connections.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Policy decisions of this shard.
    #[must_use]
    pub fn policy_counters(&self) -> &PolicyCounters {
        &self.policy_state.counters
    }

    /// Replaces the policy for new connections; live connections keep running
    /// (see [`Engine::revoke`]). Usage counts carry over.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.policy = policy;
    }

    /// Replaces the configuration for new connections: service addresses and port,
    /// pool prefixes and hold-down, timeouts (which also apply to live connections
    /// from their next timer), scheduler defaults, limits. Refused whole, changing
    /// nothing, when invalid or when it changes the pool's port range or block size
    /// (they decide which shard owns return traffic; they change at restart).
    pub fn reconfigure(&mut self, cfg: EngineConfig) -> Result<(), ConfigError> {
        cfg.validate()?;
        if cfg.pool.port_lo != self.cfg.pool.port_lo
            || cfg.pool.port_hi != self.cfg.pool.port_hi
            || cfg.pool.block_size != self.cfg.pool.block_size
        {
            return Err(ConfigError {
                field: "pool.ports",
                reason: "the port range and block size change only at restart",
            });
        }
        if !self.pool.reconfigure(cfg.pool.clone()) {
            return Err(ConfigError {
                field: "pool.ports",
                reason: "the port range and block size change only at restart",
            });
        }
        self.cfg = cfg;
        Ok(())
    }

    // ------------------------------------------------------------ sessions

    fn session_info(&self, now: Instant, slot: u32) -> Option<SessionInfo> {
        let c = self.conn(slot)?;
        let first_down = c.local_idsn + 1 + u64::from(c.reply_len());
        let bytes_down = if c.mptcp && !c.fallback {
            c.c_data_ack.diff(first_down).max(0) as u64
        } else {
            // Plain TCP client leg: the server's view of what the client took.
            u64::from(
                c.server_ack_from_data_ack(c.c_data_ack)
                    .0
                    .wrapping_sub(c.s_isn.0.wrapping_add(1)),
            )
            .min(c.c_data_ack.diff(first_down).max(0) as u64)
        };
        Some(SessionInfo {
            id: SessionId {
                slot,
                generation: c.generation,
            },
            state: c.state,
            client: sock(c.leg.client.ip, c.leg.client.port),
            service: sock(c.leg.service.ip, c.leg.service.port),
            server: sock(c.server.ip, c.server.port),
            pool: sock(c.pool.ip, c.pool.port),
            mptcp: c.mptcp,
            fallback: c.fallback,
            subflows: c.mp.as_ref().map_or(1, |m| m.paths.len() as u32),
            idle_us: now.saturating_since(c.last_activity).as_micros() as u64,
            bytes_up: if c.state == State::SynSent {
                0
            } else {
                c.server_acked_index()
            },
            bytes_down: if matches!(c.state, State::SynSent | State::ReplyClose) {
                0
            } else {
                bytes_down
            },
            subscriber: self
                .policy
                .subscriber_of(c.leg.client.ip)
                .map(|s| s.name.clone()),
        })
    }

    fn matches(&self, c: &SessionInfo, f: &SessionFilter) -> bool {
        f.client.is_none_or(|p| p.contains(c.client.ip()))
            && f.server.is_none_or(|p| p.contains(c.server.ip()))
            && f.server_port.is_none_or(|p| p == c.server.port())
            && f.subscriber
                .as_deref()
                .is_none_or(|s| c.subscriber.as_deref() == Some(s))
    }

    /// Up to `limit` sessions matching `filter`, from slot `from` on in slot
    /// order, appended to `out`. Returns the slot to continue from when the table
    /// holds more (callers page through a large table between bursts).
    pub fn sessions(
        &self,
        now: Instant,
        filter: &SessionFilter,
        from: u32,
        limit: usize,
        out: &mut Vec<SessionInfo>,
    ) -> Option<u32> {
        let mut n = 0;
        for slot in from..self.conns.len() as u32 {
            if n >= limit {
                return Some(slot);
            }
            if let Some(s) = self.session_info(now, slot)
                && self.matches(&s, filter)
            {
                out.push(s);
                n += 1;
            }
        }
        None
    }

    /// One session and its subflows (the initial subflow alone for a connection
    /// without joins).
    #[must_use]
    pub fn session(&self, now: Instant, id: SessionId) -> Option<(SessionInfo, Vec<SubflowInfo>)> {
        let info = self.session_info(now, id.slot)?;
        if info.id.generation != id.generation {
            return None;
        }
        let mut subflows = self.subflows(info.client, info.service);
        if subflows.is_empty() {
            subflows.push(SubflowInfo {
                client: info.client,
                addr_id: 0,
                backup: false,
                primary: true,
                health: "ok",
                srtt_us: 0,
                min_rtt_us: 0,
                rate: 0,
                inflight: 0,
                budget: 0,
                bytes_sent: info.bytes_down,
                bytes_repaired: 0,
            });
        }
        Some((info, subflows))
    }

    /// Aborts one connection: RST to the server, RST to the client (with
    /// MP_FASTCLOSE on an MPTCP leg, RFC 8684 §3.5) on every subflow. Returns
    /// whether it existed. The RSTs come out of [`Engine::poll_transmit`].
    pub fn abort_session(&mut self, now: Instant, id: SessionId) -> bool {
        let live = self
            .conn(id.slot)
            .is_some_and(|c| c.generation == id.generation && c.state != State::TimeWait);
        if live {
            self.abort(id.slot, now);
        }
        live
    }

    /// Aborts the live connections the current policy's authorization refuses
    /// (client or destination; limits are not re-applied to what already runs).
    /// With `dry_run`, only counts them.
    pub fn revoke(&mut self, now: Instant, dry_run: bool) -> usize {
        let mut refused = Vec::new();
        for (slot, c) in self.conns.iter().enumerate() {
            let Some(c) = c else { continue };
            if matches!(
                c.state,
                State::SynSent | State::SynAckSent | State::Established
            ) && self.policy.authorize(c.leg.client.ip, c.server.ip).is_err()
            {
                refused.push(slot as u32);
            }
        }
        if !dry_run {
            for &slot in &refused {
                self.abort(slot, now);
            }
        }
        refused.len()
    }

    /// Live connections and pool ports of a subscriber in this shard (by the
    /// current policy's prefixes).
    #[must_use]
    pub fn subscriber_usage(&self, name: &str) -> (u64, u64) {
        let (mut conns, mut ports) = (0, 0);
        for c in self.conns.iter().flatten() {
            if c.state != State::ReplyClose
                && self.policy.subscriber_name(c.leg.client.ip) == Some(name)
            {
                conns += 1;
                ports += 1;
            }
        }
        (conns, ports)
    }

    /// Pool ports held by live connections in `prefix` in this shard.
    #[must_use]
    pub fn pool_ports_in_use(&self, prefix: &Prefix) -> u64 {
        self.conns
            .iter()
            .flatten()
            .filter(|c| c.state != State::ReplyClose && prefix.contains(c.pool.ip))
            .count() as u64
    }
}
