//! Authorization and per-subscriber limits, consulted once per Convert SYN that
//! would create a connection (never for packets of an established one).
//!
//! * **Who may use the converter**: a client whose source address lies in a
//!   subscriber's prefixes, or any client when unlisted clients are allowed
//!   (RFC 8803 §9.2: the converter must not be an open relay to whoever reaches it).
//! * **Where to**: the appliance's own addresses (loops), loopback, multicast,
//!   unspecified/broadcast are always Not Authorized; operator rules (the most
//!   specific matching prefix decides, a tie denies) and, when enabled, private
//!   ranges (RFC 1918, RFC 6598, link-local, ULA) as implicit deny rules an ALLOW rule
//!   may override (RFC 8803 §6.2.8: error 32).
//! * **How much**: ports held (RFC 6888 REQ-4), live connections and new connections
//!   per second (RFC 6888 REQ-5) per subscriber, answered with Resource Exceeded (64).
//!   Each shard enforces its share of a limit (divided by the shard count, rounded
//!   up): shards never talk to each other on the packet path.
//!
//! The mode decides what a subscriber is: in single-proxy mode every client address
//! is its own subscriber (a subscriber entry's limits apply per address within its
//! prefixes); in dual-proxy mode a subscriber entry is one customer-side converter
//! whose DSL and LTE addresses share one set of limits and one paired pool address.

use core::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::config::Scheduler;
use crate::pool::Prefix;
use crate::time::Instant;

/// What clients are (docs/management.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Clients are MPTCP-capable hosts, each its own subscriber.
    #[default]
    SingleProxy,
    /// Clients are customer-side converters relaying a household; one subscriber
    /// spans the CPE's access addresses.
    DualProxy,
}

impl Mode {
    /// The mode's configuration name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::SingleProxy => "single-proxy",
            Mode::DualProxy => "dual-proxy",
        }
    }
}

/// Per-subscriber limits; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Pool ports held at once (RFC 6888 REQ-4).
    pub max_ports: u32,
    /// Live connections (RFC 6888 REQ-5).
    pub max_connections: u32,
    /// New connections per second (token bucket, burst one second's worth).
    pub max_new_per_second: u32,
}

/// A subscriber of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberSpec {
    /// Unique name.
    pub name: String,
    /// Client source prefixes (no two subscribers overlap).
    pub prefixes: Vec<Prefix>,
    /// None: the policy's default limits.
    pub limits: Option<Limits>,
    /// None: the converter-wide scheduler.
    pub scheduler: Option<Scheduler>,
    /// Client prefixes of this subscriber's primary access.
    pub primary_access: Vec<Prefix>,
}

/// A destination rule's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Allowed (overrides a broader deny, or the private-range denial).
    Allow,
    /// Not Authorized (32).
    Deny,
}

/// An operator's destination rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRule {
    /// The destinations it covers.
    pub prefix: Prefix,
    /// What it decides.
    pub action: RuleAction,
}

/// The policy as configured: plain data, validated by [`Policy::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// What clients are.
    pub mode: Mode,
    /// Clients in no subscriber's prefixes may use the converter.
    pub allow_unlisted_clients: bool,
    /// Refuse private destinations (overridable per prefix by an ALLOW rule).
    pub deny_private_destinations: bool,
    /// Limits of unlisted clients and of subscribers without their own.
    pub default_limits: Limits,
    /// Subscribers.
    pub subscribers: Vec<SubscriberSpec>,
    /// Destination rules.
    pub destination_rules: Vec<DestinationRule>,
}

impl Default for PolicySpec {
    /// Everyone may connect anywhere except the built-in denials, no limits: the
    /// behaviour of a converter before any policy is configured.
    fn default() -> Self {
        PolicySpec {
            mode: Mode::SingleProxy,
            allow_unlisted_clients: true,
            deny_private_destinations: false,
            default_limits: Limits::default(),
            subscribers: Vec::new(),
            destination_rules: Vec::new(),
        }
    }
}

/// A policy error: the field (a dotted path into [`PolicySpec`]) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The offending field, e.g. `subscribers[2].prefixes[0]`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl core::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for PolicyError {}

fn perr<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError {
        field: field.into(),
        reason: reason.into(),
    })
}

/// The prefix's bits in a u128 (IPv4 in the low 32 bits) with the host bits cleared.
fn masked(p: &Prefix) -> (bool, u8, u128) {
    match p.addr {
        IpAddr::V4(a) => {
            let l = u32::from(p.len.min(32));
            let m = if l == 0 { 0 } else { u32::MAX << (32 - l) };
            (false, l as u8, u128::from(a.to_bits() & m))
        }
        IpAddr::V6(a) => {
            let l = u32::from(p.len.min(128));
            let m = if l == 0 { 0 } else { u128::MAX << (128 - l) };
            (true, l as u8, a.to_bits() & m)
        }
    }
}

/// Checks a prefix: length within the family, no host bits set.
pub fn check_prefix(field: &str, p: &Prefix) -> Result<(), PolicyError> {
    let max = if p.addr.is_ipv4() { 32 } else { 128 };
    if p.len > max {
        return perr(field, format!("prefix length {} exceeds {max}", p.len));
    }
    let (_, _, bits) = masked(p);
    let raw = match p.addr {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    };
    if bits != raw {
        return perr(
            field,
            format!(
                "{}/{} has host bits set (did you mean {}/{}?)",
                p.addr,
                p.len,
                Prefix {
                    addr: p.nth(0),
                    len: p.len
                }
                .addr,
                p.len
            ),
        );
    }
    Ok(())
}

/// True when two prefixes share an address.
#[must_use]
pub fn overlaps(a: &Prefix, b: &Prefix) -> bool {
    a.addr.is_ipv4() == b.addr.is_ipv4() && (a.contains(b.addr) || b.contains(a.addr))
}

/// Longest-prefix match over a set of prefixes: one hash map per (family, length),
/// probed from the longest length down.
#[derive(Debug, Clone)]
struct PrefixMap<T> {
    /// (v6, len) in decreasing length order.
    lens: Vec<(bool, u8)>,
    maps: HashMap<(bool, u8, u128), T>,
}

impl<T> Default for PrefixMap<T> {
    fn default() -> Self {
        PrefixMap {
            lens: Vec::new(),
            maps: HashMap::new(),
        }
    }
}

impl<T> PrefixMap<T> {
    fn insert(&mut self, p: &Prefix, v: T) {
        let k = masked(p);
        if !self.lens.contains(&(k.0, k.1)) {
            self.lens.push((k.0, k.1));
            self.lens.sort_by_key(|k| core::cmp::Reverse(k.1));
        }
        self.maps.insert(k, v);
    }

    /// The value of the longest prefix containing `ip`, and that prefix's length.
    fn lookup(&self, ip: IpAddr) -> Option<(&T, u8)> {
        let v6 = ip.is_ipv6();
        for &(fam, len) in &self.lens {
            if fam != v6 {
                continue;
            }
            let (_, _, bits) = masked(&Prefix { addr: ip, len });
            if let Some(v) = self.maps.get(&(fam, len, bits)) {
                return Some((v, len));
            }
        }
        None
    }
}

/// RFC 1918, RFC 6598 (shared CGN space), link-local, ULA.
const PRIVATE: [(&str, u8); 7] = [
    ("10.0.0.0", 8),
    ("172.16.0.0", 12),
    ("192.168.0.0", 16),
    ("100.64.0.0", 10),
    ("169.254.0.0", 16),
    ("fc00::", 7),
    ("fe80::", 10),
];

/// The private ranges denied when `deny_private_destinations` is on.
#[must_use]
pub fn private_ranges() -> Vec<Prefix> {
    PRIVATE
        .iter()
        .filter_map(|(a, l)| a.parse().ok().map(|addr| Prefix { addr, len: *l }))
        .collect()
}

/// Destinations never authorized whatever the rules say, besides the appliance's own
/// addresses: loopback, multicast, unspecified, IPv4 broadcast and "this network".
#[must_use]
pub fn fixed_denials() -> Vec<Prefix> {
    [
        ("127.0.0.0", 8),
        ("0.0.0.0", 8),
        ("224.0.0.0", 4),
        ("255.255.255.255", 32),
        ("::1", 128),
        ("::", 128),
        ("ff00::", 8),
    ]
    .iter()
    .filter_map(|(a, l)| {
        a.parse().ok().map(|addr| Prefix {
            addr,
            len: *l as u8,
        })
    })
    .collect()
}

fn always_denied(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_unspecified()
                || a.octets()[0] == 0
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_multicast()
                || a.is_unspecified()
                // IPv4-mapped loopback/multicast would reach the same places.
                || a.to_ipv4_mapped().is_some_and(|m| always_denied(IpAddr::V4(m)))
        }
    }
}

/// One subscriber, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    pub name: Arc<str>,
    pub limits: Limits,
    pub scheduler: Option<Scheduler>,
    pub primary_access: Vec<Prefix>,
    /// The address the subscriber's paired pool address is derived from in
    /// dual-proxy mode (its first prefix's network address).
    pub anchor: IpAddr,
}

/// Whom a connection is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SubscriberKey {
    /// A client address (single-proxy mode, or an unlisted client).
    Addr(IpAddr),
    /// A named subscriber (dual-proxy mode).
    Named(Arc<str>),
}

/// Why a Convert request is refused by the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The client's address is in no subscriber and unlisted clients are refused (32).
    Client,
    /// The destination is refused (32).
    Destination,
    /// The subscriber holds its maximum of pool ports (64).
    Ports,
    /// The subscriber holds its maximum of connections (64).
    Connections,
    /// The subscriber exceeded its new-connection rate (64).
    Rate,
}

/// Counters of policy decisions (per shard).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyCounters {
    /// Refused: client not authorized.
    pub denied_client: u64,
    /// Refused: destination not authorized.
    pub denied_destination: u64,
    /// Refused: port limit.
    pub limit_ports: u64,
    /// Refused: connection limit.
    pub limit_connections: u64,
    /// Refused: rate limit.
    pub limit_rate: u64,
}

impl PolicyCounters {
    pub(crate) fn count(&mut self, d: Denial) {
        match d {
            Denial::Client => self.denied_client += 1,
            Denial::Destination => self.denied_destination += 1,
            Denial::Ports => self.limit_ports += 1,
            Denial::Connections => self.limit_connections += 1,
            Denial::Rate => self.limit_rate += 1,
        }
    }
}

/// What the policy decided for an admitted Convert request.
#[derive(Debug)]
pub(crate) struct Decision {
    /// Whom to count the connection against, and the limits (None: unlimited).
    pub limited: Option<(SubscriberKey, Limits)>,
    /// The address the paired pool address derives from.
    pub pairing: IpAddr,
    /// The subscriber's own scheduler.
    pub scheduler: Option<Scheduler>,
}

/// A validated, compiled policy (shared read-only by every shard).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Nothing configured beyond the built-in denials (the common case of a
    /// converter without subscribers): admission is the fixed checks alone.
    open: bool,
    spec: PolicySpec,
    subscribers: Vec<Subscriber>,
    by_client: PrefixMap<u32>,
    /// Operator rules plus, when enabled, the private ranges as deny rules; the
    /// private ranges are inserted first so that an operator rule of the same
    /// prefix replaces them.
    rules: PrefixMap<RuleAction>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(PolicySpec::default()).expect("the default policy is valid")
    }
}

/// Longest subscriber name.
pub const MAX_NAME: usize = 64;

/// Checks a subscriber or pool name: 1..=64 of `[A-Za-z0-9._-]`.
pub fn check_name(field: &str, name: &str) -> Result<(), PolicyError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return perr(field, format!("must be 1..={MAX_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return perr(
            field,
            format!("`{name}`: character {c:?} not allowed (use A-Z a-z 0-9 . _ -)"),
        );
    }
    Ok(())
}

impl Policy {
    /// Validates and compiles a policy.
    pub fn new(spec: PolicySpec) -> Result<Policy, PolicyError> {
        let mut subscribers = Vec::new();
        let mut by_client = PrefixMap::default();
        let mut seen: Vec<(usize, &Prefix)> = Vec::new();
        for (i, s) in spec.subscribers.iter().enumerate() {
            let f = format!("subscribers[{i}]");
            check_name(&format!("{f}.name"), &s.name)?;
            if spec.subscribers[..i].iter().any(|o| o.name == s.name) {
                return perr(
                    format!("{f}.name"),
                    format!("`{}` is defined twice", s.name),
                );
            }
            if s.prefixes.is_empty() {
                return perr(format!("{f}.prefixes"), "at least one prefix is required");
            }
            for (j, p) in s.prefixes.iter().enumerate() {
                let pf = format!("{f}.prefixes[{j}]");
                check_prefix(&pf, p)?;
                if let Some((o, q)) = seen.iter().find(|(_, q)| overlaps(p, q)) {
                    return perr(
                        pf,
                        format!(
                            "{}/{} overlaps {}/{} of subscriber `{}`",
                            p.addr, p.len, q.addr, q.len, spec.subscribers[*o].name
                        ),
                    );
                }
                seen.push((i, p));
                by_client.insert(p, i as u32);
            }
            for (j, p) in s.primary_access.iter().enumerate() {
                check_prefix(&format!("{f}.primary_access[{j}]"), p)?;
            }
            subscribers.push(Subscriber {
                name: Arc::from(s.name.as_str()),
                limits: s.limits.unwrap_or(spec.default_limits),
                scheduler: s.scheduler,
                primary_access: s.primary_access.clone(),
                anchor: s.prefixes[0].nth(0),
            });
        }
        let mut rules = PrefixMap::default();
        if spec.deny_private_destinations {
            for p in private_ranges() {
                rules.insert(&p, RuleAction::Deny);
            }
        }
        for (i, r) in spec.destination_rules.iter().enumerate() {
            let f = format!("destination_rules[{i}].prefix");
            check_prefix(&f, &r.prefix)?;
            if spec.destination_rules[..i]
                .iter()
                .any(|o| masked(&o.prefix) == masked(&r.prefix))
            {
                return perr(
                    f,
                    format!("{}/{} has two rules", r.prefix.addr, r.prefix.len),
                );
            }
            rules.insert(&r.prefix, r.action);
        }
        let open = spec.subscribers.is_empty()
            && spec.destination_rules.is_empty()
            && !spec.deny_private_destinations
            && spec.allow_unlisted_clients
            && spec.default_limits == Limits::default();
        Ok(Policy {
            open,
            spec,
            subscribers,
            by_client,
            rules,
        })
    }

    /// The policy as configured.
    #[must_use]
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// The mode.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.spec.mode
    }

    pub(crate) fn subscriber_of(&self, client: IpAddr) -> Option<&Subscriber> {
        self.by_client
            .lookup(client)
            .and_then(|(&i, _)| self.subscribers.get(i as usize))
    }

    /// The name of the subscriber whose prefixes hold `client`.
    #[must_use]
    pub fn subscriber_name(&self, client: IpAddr) -> Option<&str> {
        self.subscriber_of(client).map(|s| &*s.name)
    }

    /// Whether operator rules and the private-range denial let `ip` through (the
    /// appliance's own addresses are checked by the engine, which knows them).
    #[must_use]
    pub fn destination_allowed(&self, ip: IpAddr) -> bool {
        if always_denied(ip) {
            return false;
        }
        let ip = match ip {
            // An IPv4-mapped destination is judged as the IPv4 address it reaches.
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        !matches!(self.rules.lookup(ip), Some((RuleAction::Deny, _)))
    }

    /// Authorization of a client → destination (not the limits).
    pub(crate) fn authorize(&self, client: IpAddr, dest: IpAddr) -> Result<(), Denial> {
        if !self.spec.allow_unlisted_clients && self.subscriber_of(client).is_none() {
            return Err(Denial::Client);
        }
        if !self.destination_allowed(dest) {
            return Err(Denial::Destination);
        }
        Ok(())
    }

    /// The whole decision for a Convert request from `client` to `dest`: one
    /// subscriber lookup, and none at all for an open policy.
    pub(crate) fn decide(&self, client: IpAddr, dest: IpAddr) -> Result<Decision, Denial> {
        if self.open {
            if always_denied(dest) {
                return Err(Denial::Destination);
            }
            return Ok(Decision {
                limited: None,
                pairing: client,
                scheduler: None,
            });
        }
        let sub = self.subscriber_of(client);
        if !self.spec.allow_unlisted_clients && sub.is_none() {
            return Err(Denial::Client);
        }
        if !self.destination_allowed(dest) {
            return Err(Denial::Destination);
        }
        let limits = sub.map_or(self.spec.default_limits, |s| s.limits);
        let dual = self.spec.mode == Mode::DualProxy;
        let limited = (limits != Limits::default()).then(|| {
            let key = match sub {
                Some(s) if dual => SubscriberKey::Named(s.name.clone()),
                _ => SubscriberKey::Addr(client),
            };
            (key, limits)
        });
        Ok(Decision {
            limited,
            pairing: match sub {
                Some(s) if dual => s.anchor,
                _ => client,
            },
            scheduler: sub.and_then(|s| s.scheduler),
        })
    }

    /// Whom a connection from `client` counts against, its limits, and the address
    /// its paired pool address derives from.
    #[cfg(test)]
    pub(crate) fn account(&self, client: IpAddr) -> (SubscriberKey, Limits, IpAddr) {
        match (self.spec.mode, self.subscriber_of(client)) {
            (Mode::DualProxy, Some(s)) => {
                (SubscriberKey::Named(s.name.clone()), s.limits, s.anchor)
            }
            (_, Some(s)) => (SubscriberKey::Addr(client), s.limits, client),
            (_, None) => (
                SubscriberKey::Addr(client),
                self.spec.default_limits,
                client,
            ),
        }
    }
}

/// Per-subscriber usage in one shard.
#[derive(Debug, Clone, Default)]
pub(crate) struct Usage {
    pub conns: u32,
    pub ports: u32,
    /// New connections allowed (`Limits::max_new_per_second`).
    bucket: crate::time::TokenBucket,
}

/// Entries beyond which idle usage records are swept on the next admission.
const USAGE_SWEEP: usize = 1 << 16;

/// A shard's limit share: the limit divided by the shard count, rounded up (0 stays
/// unlimited).
fn share(limit: u32, shards: u16) -> u64 {
    if limit == 0 {
        0
    } else {
        u64::from(limit).div_ceil(u64::from(shards.max(1)))
    }
}

/// The policy state of one shard: usage per subscriber and the subscriber of each
/// admitted connection.
#[derive(Debug, Default)]
pub(crate) struct PolicyState {
    pub usage: HashMap<SubscriberKey, Usage>,
    pub of_conn: HashMap<u32, SubscriberKey>,
    /// Ports released by subscribers, oldest first: a port in its hold-down
    /// (RFC 6888 REQ-8) still counts against the subscriber that held it, since
    /// nobody else can have it either.
    held: std::collections::VecDeque<(Instant, SubscriberKey)>,
    pub counters: PolicyCounters,
}

impl PolicyState {
    /// Checks the limits for a new connection and takes a rate token. `Ok(Some)`
    /// carries the key to charge with [`PolicyState::charge`] once the connection
    /// exists; `Ok(None)`: unlimited, nothing to count.
    pub(crate) fn admit(
        &mut self,
        key: SubscriberKey,
        limits: Limits,
        shards: u16,
        hold_down: core::time::Duration,
        now: Instant,
    ) -> Result<Option<SubscriberKey>, Denial> {
        if !self.held.is_empty() {
            self.expire_held(now, hold_down);
        }
        if limits == Limits::default() {
            return Ok(None);
        }
        if self.usage.len() >= USAGE_SWEEP && !self.usage.contains_key(&key) {
            self.sweep(now);
        }
        let u = self.usage.entry(key.clone()).or_default();
        let max_conns = share(limits.max_connections, shards);
        if max_conns > 0 && u64::from(u.conns) >= max_conns {
            return Err(Denial::Connections);
        }
        let max_ports = share(limits.max_ports, shards);
        if max_ports > 0 && u64::from(u.ports) >= max_ports {
            return Err(Denial::Ports);
        }
        let rate = share(limits.max_new_per_second, shards);
        if rate > 0 && !u.bucket.take(now, rate) {
            return Err(Denial::Rate);
        }
        Ok(Some(key))
    }

    /// Counts connection `id` (holding a pool port) against `key`.
    pub(crate) fn charge(&mut self, id: u32, key: SubscriberKey) {
        let u = self.usage.entry(key.clone()).or_default();
        u.conns += 1;
        u.ports += 1;
        self.of_conn.insert(id, key);
    }

    /// Connection `id` is gone; its port stays counted until its hold-down ends.
    pub(crate) fn release(&mut self, id: u32, now: Instant) {
        if self.of_conn.is_empty() {
            return;
        }
        if let Some(key) = self.of_conn.remove(&id)
            && let Some(u) = self.usage.get_mut(&key)
        {
            u.conns = u.conns.saturating_sub(1);
            self.held.push_back((now, key));
        }
    }

    /// Ports whose hold-down ended are no longer counted.
    fn expire_held(&mut self, now: Instant, hold_down: core::time::Duration) {
        while let Some((at, _)) = self.held.front()
            && now.saturating_since(*at) >= hold_down
        {
            let Some((_, key)) = self.held.pop_front() else {
                break;
            };
            if let Some(u) = self.usage.get_mut(&key) {
                u.ports = u.ports.saturating_sub(1);
                if u.conns == 0 && u.ports == 0 && u.bucket.last_use().is_none() {
                    self.usage.remove(&key);
                }
            }
        }
    }

    /// Drops the records of subscribers without connections whose bucket has been
    /// full for a while (more than 10 s untouched).
    fn sweep(&mut self, now: Instant) {
        self.usage.retain(|_, u| {
            u.conns > 0
                || u.ports > 0
                || u.bucket
                    .last_use()
                    .is_some_and(|t| now.saturating_since(t) < core::time::Duration::from_secs(10))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        let (a, l) = s.split_once('/').unwrap();
        Prefix {
            addr: a.parse().unwrap(),
            len: l.parse().unwrap(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const HOLD: core::time::Duration = core::time::Duration::from_secs(120);

    fn sub(name: &str, prefixes: &[&str]) -> SubscriberSpec {
        SubscriberSpec {
            name: name.into(),
            prefixes: prefixes.iter().map(|s| p(s)).collect(),
            limits: None,
            scheduler: None,
            primary_access: Vec::new(),
        }
    }

    #[test]
    fn default_policy_allows_everyone_but_fixed_denials() {
        let pol = Policy::default();
        assert_eq!(pol.authorize(ip("198.18.1.2"), ip("198.51.100.2")), Ok(()));
        assert_eq!(pol.authorize(ip("198.18.1.2"), ip("10.1.1.1")), Ok(()));
        for d in [
            "127.0.0.1",
            "224.0.0.5",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "ff02::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(
                pol.authorize(ip("198.18.1.2"), ip(d)),
                Err(Denial::Destination),
                "{d}"
            );
        }
    }

    #[test]
    fn unlisted_clients_are_refused_when_configured() {
        let pol = Policy::new(PolicySpec {
            allow_unlisted_clients: false,
            subscribers: vec![sub("home", &["198.18.1.0/24"])],
            ..PolicySpec::default()
        })
        .unwrap();
        assert_eq!(pol.authorize(ip("198.18.1.2"), ip("198.51.100.2")), Ok(()));
        assert_eq!(
            pol.authorize(ip("198.18.2.2"), ip("198.51.100.2")),
            Err(Denial::Client)
        );
        assert_eq!(pol.subscriber_name(ip("198.18.1.9")), Some("home"));
    }

    #[test]
    fn most_specific_destination_rule_decides() {
        let pol = Policy::new(PolicySpec {
            deny_private_destinations: true,
            destination_rules: vec![
                DestinationRule {
                    prefix: p("10.1.0.0/16"),
                    action: RuleAction::Allow,
                },
                DestinationRule {
                    prefix: p("10.1.2.0/24"),
                    action: RuleAction::Deny,
                },
                DestinationRule {
                    prefix: p("198.51.100.0/24"),
                    action: RuleAction::Deny,
                },
                DestinationRule {
                    prefix: p("198.51.100.7/32"),
                    action: RuleAction::Allow,
                },
            ],
            ..PolicySpec::default()
        })
        .unwrap();
        let c = ip("198.18.1.2");
        assert_eq!(pol.authorize(c, ip("10.9.9.9")), Err(Denial::Destination));
        assert_eq!(pol.authorize(c, ip("10.1.9.9")), Ok(()));
        assert_eq!(pol.authorize(c, ip("10.1.2.3")), Err(Denial::Destination));
        assert_eq!(
            pol.authorize(c, ip("198.51.100.2")),
            Err(Denial::Destination)
        );
        assert_eq!(pol.authorize(c, ip("198.51.100.7")), Ok(()));
        assert_eq!(pol.authorize(c, ip("fd00::1")), Err(Denial::Destination));
        assert_eq!(
            pol.authorize(c, ip("::ffff:10.9.9.9")),
            Err(Denial::Destination)
        );
        // Loopback stays denied whatever an operator allows.
        let pol = Policy::new(PolicySpec {
            destination_rules: vec![DestinationRule {
                prefix: p("127.0.0.0/8"),
                action: RuleAction::Allow,
            }],
            ..PolicySpec::default()
        })
        .unwrap();
        assert_eq!(pol.authorize(c, ip("127.0.0.1")), Err(Denial::Destination));
    }

    #[test]
    fn invalid_policies_name_the_field() {
        let e = Policy::new(PolicySpec {
            subscribers: vec![sub("a", &["198.18.0.0/16"]), sub("b", &["198.18.1.0/24"])],
            ..PolicySpec::default()
        })
        .unwrap_err();
        assert_eq!(e.field, "subscribers[1].prefixes[0]");
        assert!(
            e.reason
                .contains("overlaps 198.18.0.0/16 of subscriber `a`"),
            "{e}"
        );
        let e = Policy::new(PolicySpec {
            subscribers: vec![sub("a", &["198.18.1.1/24"])],
            ..PolicySpec::default()
        })
        .unwrap_err();
        assert!(e.reason.contains("host bits"), "{e}");
        let e = Policy::new(PolicySpec {
            subscribers: vec![sub("a b", &["198.18.1.0/24"])],
            ..PolicySpec::default()
        })
        .unwrap_err();
        assert_eq!(e.field, "subscribers[0].name");
        let e = Policy::new(PolicySpec {
            subscribers: vec![sub("a", &["198.18.1.0/24"]), sub("a", &["198.18.2.0/24"])],
            ..PolicySpec::default()
        })
        .unwrap_err();
        assert_eq!(e.field, "subscribers[1].name");
    }

    #[test]
    fn dual_proxy_counts_a_household_once() {
        let mut home = sub("home", &["198.18.1.2/32", "198.18.2.2/32"]);
        home.limits = Some(Limits {
            max_connections: 2,
            ..Limits::default()
        });
        let spec = PolicySpec {
            mode: Mode::DualProxy,
            subscribers: vec![home],
            ..PolicySpec::default()
        };
        let pol = Policy::new(spec.clone()).unwrap();
        let (k1, l, a1) = pol.account(ip("198.18.1.2"));
        let (k2, _, a2) = pol.account(ip("198.18.2.2"));
        assert_eq!(k1, k2);
        assert_eq!(a1, a2, "one paired pool address for the household");
        let mut st = PolicyState::default();
        let k = st.admit(k1.clone(), l, 1, HOLD, Instant(0)).unwrap();
        st.charge(1, k.unwrap());
        let k = st.admit(k2.clone(), l, 1, HOLD, Instant(0)).unwrap();
        st.charge(2, k.unwrap());
        assert_eq!(
            st.admit(k1.clone(), l, 1, HOLD, Instant(0)),
            Err(Denial::Connections)
        );
        st.release(1, Instant(0));
        assert!(st.admit(k1, l, 1, HOLD, Instant(0)).is_ok());
        // Single-proxy: each address its own subscriber.
        let pol = Policy::new(PolicySpec {
            mode: Mode::SingleProxy,
            ..spec
        })
        .unwrap();
        assert_ne!(
            pol.account(ip("198.18.1.2")).0,
            pol.account(ip("198.18.2.2")).0
        );
    }

    #[test]
    fn a_released_port_counts_until_its_hold_down_ends() {
        let l = Limits {
            max_ports: 1,
            ..Limits::default()
        };
        let mut st = PolicyState::default();
        let key = SubscriberKey::Addr(ip("198.18.1.2"));
        let k = st.admit(key.clone(), l, 1, HOLD, Instant(0)).unwrap();
        st.charge(7, k.unwrap());
        assert_eq!(
            st.admit(key.clone(), l, 1, HOLD, Instant(0)),
            Err(Denial::Ports)
        );
        st.release(7, Instant(1_000_000));
        assert_eq!(
            st.admit(key.clone(), l, 1, HOLD, Instant(60_000_000)),
            Err(Denial::Ports),
            "in hold-down"
        );
        assert!(st.admit(key, l, 1, HOLD, Instant(121_000_000)).is_ok());
        assert!(st.held.is_empty());
    }

    #[test]
    fn rate_limit_refills_over_time_and_limits_are_shared_by_shards() {
        let l = Limits {
            max_new_per_second: 4,
            ..Limits::default()
        };
        let mut st = PolicyState::default();
        let key = SubscriberKey::Addr(ip("198.18.1.2"));
        // Two shards: 2 per second each.
        assert!(st.admit(key.clone(), l, 2, HOLD, Instant(0)).is_ok());
        assert!(st.admit(key.clone(), l, 2, HOLD, Instant(0)).is_ok());
        assert_eq!(
            st.admit(key.clone(), l, 2, HOLD, Instant(1000)),
            Err(Denial::Rate)
        );
        assert!(st.admit(key.clone(), l, 2, HOLD, Instant(501_000)).is_ok());
        assert_eq!(
            st.admit(key, l, 2, HOLD, Instant(502_000)),
            Err(Denial::Rate)
        );
        assert_eq!(share(5, 2), 3);
        assert_eq!(share(0, 4), 0);
    }
}
