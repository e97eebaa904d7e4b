//! The running configuration: everything the management API can change (converter,
//! pools, policy, subscribers, mode), kept in the state file as JSON and restored on
//! restart. The bootstrap TOML keeps what cannot change at run time (EAL, ports,
//! routes, lcores) and seeds the running configuration on the first start.
//!
//! Saved atomically: written to a temporary file in the same directory, fsync'd,
//! renamed over the state file, and the directory fsync'd, so a crash leaves either
//! the old or the new file, never a torn one.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use hac_core::policy::{
    DestinationRule, Limits, Mode, PolicySpec, RuleAction, SubscriberSpec, check_name,
    check_prefix, overlaps,
};
use hac_core::pool::Prefix;
use hac_core::{EngineConfig, Scheduler};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Bounds on what one running configuration may hold (requests are bounded too).
pub const MAX_POOLS: usize = 64;
/// Prefixes per pool, per subscriber, and primary-access prefixes.
pub const MAX_PREFIXES: usize = 256;
/// Subscribers.
pub const MAX_SUBSCRIBERS: usize = 100_000;
/// Destination rules.
pub const MAX_RULES: usize = 10_000;
/// Converter service addresses.
pub const MAX_SERVICE_ADDRS: usize = 16;

/// An invalid change: the field (as the API names it) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field, e.g. `pool.prefixes[1]`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for Invalid {}

/// An [`Invalid`] error.
pub fn invalid<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        field: field.into(),
        reason: reason.into(),
    })
}

/// A named address pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolEntry {
    /// Unique name.
    pub name: String,
    /// Prefixes ("203.0.113.0/28").
    pub prefixes: Vec<String>,
}

/// Settings shared by every pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSettings {
    /// First port.
    pub port_low: u16,
    /// Last port.
    pub port_high: u16,
    /// Ports per block.
    pub block_size: u16,
    /// RFC 6888 REQ-8 hold-down, seconds.
    pub hold_down_seconds: u32,
}

/// Per-subscriber limits (0: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LimitsEntry {
    /// Pool ports.
    pub max_ports: u32,
    /// Live connections.
    pub max_connections: u32,
    /// New connections per second.
    pub max_new_connections_per_second: u32,
}

impl From<LimitsEntry> for Limits {
    fn from(l: LimitsEntry) -> Limits {
        Limits {
            max_ports: l.max_ports,
            max_connections: l.max_connections,
            max_new_per_second: l.max_new_connections_per_second,
        }
    }
}

/// A subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberEntry {
    /// Unique name.
    pub name: String,
    /// Client source prefixes.
    pub prefixes: Vec<String>,
    /// Own limits (None: the policy's default limits).
    #[serde(default)]
    pub limits: Option<LimitsEntry>,
    /// Own scheduler: aggregate | overflow | failover (None: the default).
    #[serde(default)]
    pub scheduler: Option<String>,
    /// Primary-access prefixes.
    #[serde(default)]
    pub primary_access: Vec<String>,
}

/// A destination rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleEntry {
    /// Prefix.
    pub prefix: String,
    /// `allow` or `deny`.
    pub action: String,
    /// Operator's note.
    #[serde(default)]
    pub comment: String,
}

/// Converter-wide policy settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEntry {
    /// Clients in no subscriber may use the converter.
    pub allow_unlisted_clients: bool,
    /// Refuse private destinations.
    pub deny_private_destinations: bool,
    /// Default limits.
    pub default_limits: LimitsEntry,
    /// Converter-wide scheduler.
    pub default_scheduler: String,
    /// Converter-wide primary access prefixes.
    pub primary_access: Vec<String>,
}

/// Timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutsEntry {
    /// Server SYN-ACK wait, ms.
    pub syn_ms: u32,
    /// Established idle, s.
    pub established_seconds: u32,
    /// Transitory idle, s.
    pub transitory_seconds: u32,
}

/// The converter service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConverterEntry {
    /// Service addresses.
    pub addresses: Vec<String>,
    /// Service port.
    pub port: u16,
    /// Timeouts.
    pub timeouts: TimeoutsEntry,
}

/// The whole running configuration (the state file's content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningConfig {
    /// Format version of the state file.
    pub version: u32,
    /// `single-proxy` or `dual-proxy`.
    pub mode: String,
    /// Converter service.
    pub converter: ConverterEntry,
    /// Settings shared by the pools.
    pub pool_settings: PoolSettings,
    /// Pools.
    pub pools: Vec<PoolEntry>,
    /// Policy settings.
    pub policy: PolicyEntry,
    /// Subscribers.
    pub subscribers: Vec<SubscriberEntry>,
    /// Destination rules.
    pub destination_rules: Vec<RuleEntry>,
}

/// The current state-file format.
pub const VERSION: u32 = 1;

/// Parses "ADDR/LEN" (or a bare address, a host prefix) with no host bits set.
pub fn parse_prefix(field: &str, s: &str) -> Result<Prefix, Invalid> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let Ok(addr) = a.trim().parse::<IpAddr>() else {
        return invalid(field, format!("`{s}` is not a prefix (expected ADDR/LEN)"));
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match l {
        None => max,
        Some(l) => match l.trim().parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => {
                return invalid(field, format!("`{s}`: prefix length must be 0..={max}"));
            }
        },
    };
    let p = Prefix { addr, len };
    check_prefix(field, &p).map_err(|e| Invalid {
        field: e.field,
        reason: e.reason,
    })?;
    Ok(p)
}

/// Parses a scheduler name.
pub fn parse_scheduler(field: &str, s: &str) -> Result<Scheduler, Invalid> {
    s.parse().or_else(|_| {
        invalid(
            field,
            format!("`{s}`: expected aggregate, overflow or failover"),
        )
    })
}

/// Parses a mode name.
pub fn parse_mode(field: &str, s: &str) -> Result<Mode, Invalid> {
    match s {
        "single-proxy" => Ok(Mode::SingleProxy),
        "dual-proxy" => Ok(Mode::DualProxy),
        _ => invalid(field, format!("`{s}`: expected single-proxy or dual-proxy")),
    }
}

fn name_check(field: &str, name: &str) -> Result<(), Invalid> {
    check_name(field, name).map_err(|e| Invalid {
        field: e.field,
        reason: e.reason,
    })
}

/// Checks a subscriber name (the request's `subscriber.name`).
pub fn check_subscriber_name(name: &str) -> Result<(), Invalid> {
    name_check("subscriber.name", name)
}

/// Checks a pool name (the request's `pool.name`).
pub fn check_pool_name(name: &str) -> Result<(), Invalid> {
    name_check("pool.name", name)
}

fn prefixes(field: &str, v: &[String]) -> Result<Vec<Prefix>, Invalid> {
    if v.len() > MAX_PREFIXES {
        return invalid(field, format!("at most {MAX_PREFIXES} prefixes"));
    }
    v.iter()
        .enumerate()
        .map(|(i, s)| parse_prefix(&format!("{field}[{i}]"), s))
        .collect()
}

impl RunningConfig {
    /// The running configuration a bootstrap file implies (first start).
    #[must_use]
    pub fn from_bootstrap(cfg: &Config) -> RunningConfig {
        let e = &cfg.engine;
        let pfx = |p: &Prefix| format!("{}/{}", p.addr, p.len);
        RunningConfig {
            version: VERSION,
            mode: Mode::SingleProxy.as_str().into(),
            converter: ConverterEntry {
                addresses: e.service_addrs.iter().map(ToString::to_string).collect(),
                port: e.service_port,
                timeouts: TimeoutsEntry {
                    syn_ms: e.syn_timeout.as_millis() as u32,
                    established_seconds: e.established_idle.as_secs() as u32,
                    transitory_seconds: e.transitory_idle.as_secs() as u32,
                },
            },
            pool_settings: PoolSettings {
                port_low: e.pool.port_lo,
                port_high: e.pool.port_hi,
                block_size: e.pool.block_size,
                hold_down_seconds: e.pool.hold_down.as_secs() as u32,
            },
            pools: vec![PoolEntry {
                name: "default".into(),
                prefixes: e.pool.prefixes.iter().map(pfx).collect(),
            }],
            policy: PolicyEntry {
                allow_unlisted_clients: true,
                deny_private_destinations: e.deny_private_destinations,
                default_limits: LimitsEntry::default(),
                default_scheduler: e.scheduler.as_str().into(),
                primary_access: e.primary_access.iter().map(pfx).collect(),
            },
            subscribers: Vec::new(),
            destination_rules: Vec::new(),
        }
    }

    /// Validates the whole configuration and builds what the engines take: the
    /// engine configuration (on top of the bootstrap's, with the port range and
    /// block size of `active` — they change only at restart) and the policy.
    pub fn compile(
        &self,
        boot: &EngineConfig,
        active: PoolSettings,
    ) -> Result<(EngineConfig, PolicySpec), Invalid> {
        if self.version != VERSION {
            return invalid(
                "version",
                format!(
                    "state file format {} (this hacd reads {VERSION})",
                    self.version
                ),
            );
        }
        let mode = parse_mode("mode", &self.mode)?;
        let c = &self.converter;
        if c.addresses.is_empty() || c.addresses.len() > MAX_SERVICE_ADDRS {
            return invalid(
                "converter.addresses",
                format!("1..={MAX_SERVICE_ADDRS} service addresses are required"),
            );
        }
        let mut service_addrs = Vec::new();
        for (i, a) in c.addresses.iter().enumerate() {
            let f = format!("converter.addresses[{i}]");
            let Ok(ip) = a.parse::<IpAddr>() else {
                return invalid(f, format!("`{a}` is not an IP address"));
            };
            if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                return invalid(f, format!("{ip} cannot be a service address"));
            }
            if service_addrs.contains(&ip) {
                return invalid(f, format!("{ip} is listed twice"));
            }
            service_addrs.push(ip);
        }
        let ps = &self.pool_settings;
        if ps.port_low == 0 || ps.port_low > ps.port_high {
            return invalid(
                "pool_settings.port_low",
                "the port range must be non-empty and exclude 0",
            );
        }
        if ps.block_size == 0 {
            return invalid("pool_settings.block_size", "must be at least 1");
        }
        if ps.hold_down_seconds < 120 {
            return invalid(
                "pool_settings.hold_down_seconds",
                "RFC 6888 REQ-8 asks for at least 120 s",
            );
        }
        if self.pools.len() > MAX_POOLS {
            return invalid("pools", format!("at most {MAX_POOLS} pools"));
        }
        let mut pool_prefixes: Vec<Prefix> = Vec::new();
        let mut owner: Vec<&str> = Vec::new();
        for (i, p) in self.pools.iter().enumerate() {
            let f = format!("pools[{i}]");
            check_name(&format!("{f}.name"), &p.name).map_err(|e| Invalid {
                field: e.field,
                reason: e.reason,
            })?;
            if self.pools[..i].iter().any(|o| o.name == p.name) {
                return invalid(format!("{f}.name"), format!("pool `{}` exists", p.name));
            }
            if p.prefixes.is_empty() {
                return invalid(format!("{f}.prefixes"), "at least one prefix is required");
            }
            for (j, q) in prefixes(&format!("{f}.prefixes"), &p.prefixes)?
                .into_iter()
                .enumerate()
            {
                let ff = format!("{f}.prefixes[{j}]");
                if let Some(k) = pool_prefixes.iter().position(|o| overlaps(o, &q)) {
                    let o = pool_prefixes[k];
                    return invalid(
                        ff,
                        format!(
                            "{}/{} overlaps {}/{} of pool `{}`",
                            q.addr, q.len, o.addr, o.len, owner[k]
                        ),
                    );
                }
                if let Some(ip) = service_addrs.iter().find(|ip| q.contains(**ip)) {
                    return invalid(ff, format!("contains the service address {ip}"));
                }
                pool_prefixes.push(q);
                owner.push(&p.name);
            }
        }
        if pool_prefixes.is_empty() {
            return invalid("pools", "at least one pool is required");
        }
        let t = &c.timeouts;
        let pol = &self.policy;
        let scheduler = parse_scheduler("policy.default_scheduler", &pol.default_scheduler)?;
        let primary_access = prefixes("policy.primary_access", &pol.primary_access)?;
        let mut engine = EngineConfig {
            service_addrs,
            service_port: c.port,
            syn_timeout: Duration::from_millis(u64::from(t.syn_ms)),
            established_idle: Duration::from_secs(u64::from(t.established_seconds)),
            transitory_idle: Duration::from_secs(u64::from(t.transitory_seconds)),
            scheduler,
            primary_access,
            deny_private_destinations: false,
            ..boot.clone()
        };
        engine.pool.prefixes = pool_prefixes;
        engine.pool.port_lo = active.port_low;
        engine.pool.port_hi = active.port_high;
        engine.pool.block_size = active.block_size;
        engine.pool.hold_down = Duration::from_secs(u64::from(ps.hold_down_seconds));
        engine.validate().or_else(|e| {
            let field = match e.field {
                "service_port" => "converter.port",
                "syn_timeout" => "converter.timeouts.syn_ms",
                "established_idle" => "converter.timeouts.established_seconds",
                "transitory_idle" => "converter.timeouts.transitory_seconds",
                other => other,
            };
            invalid(field, e.reason)
        })?;
        if self.subscribers.len() > MAX_SUBSCRIBERS {
            return invalid("subscribers", format!("at most {MAX_SUBSCRIBERS}"));
        }
        let mut subscribers = Vec::with_capacity(self.subscribers.len());
        for (i, s) in self.subscribers.iter().enumerate() {
            let f = format!("subscribers[{i}]");
            subscribers.push(SubscriberSpec {
                name: s.name.clone(),
                prefixes: prefixes(&format!("{f}.prefixes"), &s.prefixes)?,
                limits: s.limits.map(Limits::from),
                scheduler: s
                    .scheduler
                    .as_deref()
                    .map(|x| parse_scheduler(&format!("{f}.scheduler"), x))
                    .transpose()?,
                primary_access: prefixes(&format!("{f}.primary_access"), &s.primary_access)?,
            });
        }
        if self.destination_rules.len() > MAX_RULES {
            return invalid("destination_rules", format!("at most {MAX_RULES}"));
        }
        let mut rules = Vec::with_capacity(self.destination_rules.len());
        for (i, r) in self.destination_rules.iter().enumerate() {
            let f = format!("destination_rules[{i}]");
            let action = match r.action.as_str() {
                "allow" => RuleAction::Allow,
                "deny" => RuleAction::Deny,
                other => {
                    return invalid(
                        format!("{f}.action"),
                        format!("`{other}`: expected allow or deny"),
                    );
                }
            };
            rules.push(DestinationRule {
                prefix: parse_prefix(&format!("{f}.prefix"), &r.prefix)?,
                action,
            });
        }
        let spec = PolicySpec {
            mode,
            allow_unlisted_clients: pol.allow_unlisted_clients,
            deny_private_destinations: pol.deny_private_destinations,
            default_limits: pol.default_limits.into(),
            subscribers,
            destination_rules: rules,
        };
        // The policy's own checks (overlapping subscribers, duplicate rules, names).
        hac_core::Policy::new(spec.clone()).map_err(|e| Invalid {
            field: e.field,
            reason: e.reason,
        })?;
        Ok((engine, spec))
    }

    /// Reads a state file; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<RunningConfig>, Invalid> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return invalid(path.display().to_string(), format!("cannot read: {e}")),
        };
        serde_json::from_str(&text)
            .map(Some)
            .or_else(|e| invalid(path.display().to_string(), format!("not a state file: {e}")))
    }

    /// The JSON text of the state file.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Saves atomically: temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_json().as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::LAB;

    fn boot() -> Config {
        Config::parse(LAB).unwrap()
    }

    fn active(rc: &RunningConfig) -> PoolSettings {
        rc.pool_settings
    }

    #[test]
    fn bootstrap_seeds_a_valid_running_config() {
        let b = boot();
        let rc = RunningConfig::from_bootstrap(&b);
        let (e, p) = rc.compile(&b.engine, active(&rc)).unwrap();
        assert_eq!(e.service_addrs, b.engine.service_addrs);
        assert_eq!(e.pool, b.engine.pool);
        assert!(p.allow_unlisted_clients);
    }

    #[test]
    fn errors_name_the_field() {
        let b = boot();
        let mut rc = RunningConfig::from_bootstrap(&b);
        rc.pools.push(PoolEntry {
            name: "more".into(),
            prefixes: vec!["203.0.113.8/29".into()],
        });
        let e = rc.compile(&b.engine, active(&rc)).unwrap_err();
        assert_eq!(e.field, "pools[1].prefixes[0]");
        assert!(
            e.reason
                .contains("overlaps 203.0.113.0/28 of pool `default`"),
            "{e}"
        );
        rc.pools[1].prefixes[0] = "203.0.113.300/29".into();
        let e = rc.compile(&b.engine, active(&rc)).unwrap_err();
        assert!(e.reason.contains("not a prefix"), "{e}");
        let mut rc = RunningConfig::from_bootstrap(&b);
        rc.converter.timeouts.established_seconds = 60;
        let e = rc.compile(&b.engine, active(&rc)).unwrap_err();
        assert_eq!(e.field, "converter.timeouts.established_seconds");
    }

    #[test]
    fn save_is_atomic_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("hacd-state-{}", std::process::id()));
        let path = dir.join("state.json");
        let b = boot();
        let mut rc = RunningConfig::from_bootstrap(&b);
        rc.mode = "dual-proxy".into();
        rc.save(&path).unwrap();
        rc.save(&path).unwrap();
        assert_eq!(RunningConfig::load(&path).unwrap(), Some(rc));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != "state.json")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert_eq!(RunningConfig::load(&dir.join("none.json")).unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
