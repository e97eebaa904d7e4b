//! `hacd --config FILE.toml`: the bootstrap configuration, validated as a whole.
//! Every error names the key it is about (`port[1].addresses[0]: ...`).
//!
//! ```toml
//! [eal]
//! args = ["--no-huge", "--no-shconf", "-m", "512", "--no-pci"]
//!
//! [[port]]
//! name = "dsl"
//! device = "net_af_packet0,iface=conc-dsl"   # a vdev string, or a PCI address
//! role = "access"                             # access | core
//! addresses = ["198.18.1.1/24", "2001:db8:1::1/64"]
//!
//! [[route]]
//! prefix = "0.0.0.0/0"
//! via = "198.51.100.2"
//!
//! [converter]
//! addresses = ["192.0.2.1", "2001:db8:ffff::1"]
//! port = 5124
//!
//! [pool]
//! prefixes = ["203.0.113.0/28", "2001:db8:200::/120"]
//! ports = "1024-65535"
//! block_size = 256
//!
//! [workers]
//! lcores = [1]
//!
//! [metrics]                                   # optional: off when absent
//! listen = "127.0.0.1:9469"                   # GET /metrics (Prometheus text)
//!
//! [allocation_log]                            # optional: off when absent
//! file = "/var/log/hacd/allocations.log"      # or: syslog = true
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use hac_core::EngineConfig;
use hac_core::pool::{PoolConfig, Prefix};
use serde::Deserialize;

/// A configuration error naming the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key (`port[0].addresses[1]`).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(key: impl Into<String>, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        key: key.into(),
        reason: reason.into(),
    })
}

/// The file as written (before validation).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    eal: RawEal,
    #[serde(rename = "port")]
    ports: Vec<RawPort>,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    converter: RawConverter,
    pool: RawPool,
    workers: RawWorkers,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    multipath: RawMultipath,
    metrics: Option<RawMetrics>,
    allocation_log: Option<RawAllocationLog>,
    management: Option<RawManagement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllocationLog {
    file: Option<String>,
    #[serde(default)]
    syslog: bool,
    syslog_socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManagement {
    socket: Option<String>,
    listen: Option<String>,
    state_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMultipath {
    scheduler: Option<String>,
    #[serde(default)]
    primary_access: Vec<String>,
    max_subflows: Option<usize>,
    repair_cache: Option<bool>,
    cache_limit_bytes: Option<usize>,
    cache_limit_segments: Option<usize>,
    no_joins_to_initial_address: Option<bool>,
    #[serde(default)]
    announce: Vec<String>,
    path_memory_entries: Option<usize>,
    path_memory_ttl_s: Option<u64>,
    handshake_hold: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEal {
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: String,
    device: String,
    role: String,
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    via: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConverter {
    addresses: Vec<String>,
    port: u16,
    /// Convert Error replies per second per worker (0: no limit).
    error_replies_per_second: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    prefixes: Vec<String>,
    #[serde(default = "default_ports")]
    ports: String,
    #[serde(default = "default_block")]
    block_size: u16,
}

fn default_ports() -> String {
    "1024-65535".into()
}

fn default_block() -> u16 {
    256
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkers {
    lcores: Vec<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    syn_ms: Option<u64>,
    established_s: Option<u64>,
    transitory_s: Option<u64>,
}

/// Which side of the appliance a port faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Toward the clients' access networks.
    Access,
    /// Toward the Internet (servers).
    Core,
}

/// An interface address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// The on-link prefix length.
    pub len: u8,
}

impl IfAddr {
    /// True when `ip` is on this address's link.
    #[must_use]
    pub fn on_link(&self, ip: IpAddr) -> bool {
        Prefix {
            addr: self.addr,
            len: self.len,
        }
        .contains(ip)
    }
}

/// A validated port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Operator's name for it.
    pub name: String,
    /// `net_af_packet0,iface=...`-style vdev string, or a PCI address.
    pub device: String,
    /// Which side it faces.
    pub role: Role,
    /// The appliance's addresses on this link.
    pub addresses: Vec<IfAddr>,
}

impl PortConfig {
    /// True when `device` names a virtual device rather than a PCI address.
    #[must_use]
    pub fn is_vdev(&self) -> bool {
        self.device.starts_with("net_")
    }
}

/// A static route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub prefix: Prefix,
    /// Next hop (must be on a port's link).
    pub via: IpAddr,
}

/// Where port-block allocation records go (RFC 6888 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationLog {
    /// Appended to a file, one line per record.
    File(PathBuf),
    /// Sent to the local syslog daemon's datagram socket (`/dev/log` by default).
    Syslog(PathBuf),
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// EAL arguments (the program name is prepended; vdevs of the ports are added).
    pub eal_args: Vec<String>,
    /// Ports, in DPDK port order (vdevs are created in this order).
    pub ports: Vec<PortConfig>,
    /// Static routes.
    pub routes: Vec<Route>,
    /// Worker lcores (the main lcore does no packet work).
    pub lcores: Vec<u32>,
    /// The engine configuration (converter addresses, port, pools, timeouts).
    pub engine: EngineConfig,
    /// Where `/metrics` is served (None: no metrics endpoint).
    pub metrics_listen: Option<SocketAddr>,
    /// Where port-block allocations are logged (None: not logged).
    pub allocation_log: Option<AllocationLog>,
    /// The management API (`[management]`; None: off).
    pub management: Option<Management>,
}

/// `[management]`: where hacd serves the `hac.v1` API and keeps its running
/// configuration (docs/management.md).
///
/// ```toml
/// [management]
/// socket = "/run/hacd/hacd.sock"         # default
/// listen = "127.0.0.1:50051"             # optional TCP listener
/// state_file = "/var/lib/hacd/state.json" # default
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Management {
    /// Unix socket path.
    pub socket: std::path::PathBuf,
    /// Optional TCP listen address.
    pub listen: Option<std::net::SocketAddr>,
    /// The running configuration's state file.
    pub state_file: std::path::PathBuf,
}

/// Default unix socket of the management API.
pub const DEFAULT_SOCKET: &str = "/run/hacd/hacd.sock";
/// Default state file.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/hacd/state.json";

fn parse_prefix(key: &str, s: &str) -> Result<Prefix, ConfigError> {
    let Some((a, l)) = s.split_once('/') else {
        return err(key, format!("`{s}` is not a prefix (expected ADDR/LEN)"));
    };
    let addr: IpAddr = a
        .parse()
        .or_else(|_| err(key, format!("`{a}` is not an IP address")))?;
    let len: u8 = l
        .parse()
        .or_else(|_| err(key, format!("`{l}` is not a prefix length")))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return err(key, format!("prefix length {len} exceeds {max}"));
    }
    Ok(Prefix { addr, len })
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .or_else(|e| err(path.display().to_string(), format!("cannot read: {e}")))?;
        Self::parse(&text)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).or_else(|e| {
            let key = e
                .span()
                .map_or_else(|| "config".to_string(), |s| locate(text, s.start));
            err(key, e.message().to_string())
        })?;
        let mut ports = Vec::new();
        if raw.ports.is_empty() {
            return err("port", "at least one access and one core port are required");
        }
        for (i, p) in raw.ports.iter().enumerate() {
            let k = format!("port[{i}]");
            if p.name.is_empty() || ports.iter().any(|q: &PortConfig| q.name == p.name) {
                return err(format!("{k}.name"), "must be non-empty and unique");
            }
            let role = match p.role.as_str() {
                "access" => Role::Access,
                "core" => Role::Core,
                other => {
                    return err(
                        format!("{k}.role"),
                        format!("`{other}`: expected access or core"),
                    );
                }
            };
            if p.device.is_empty() {
                return err(
                    format!("{k}.device"),
                    "a vdev string (net_...) or a PCI address is required",
                );
            }
            let mut addresses = Vec::new();
            for (j, a) in p.addresses.iter().enumerate() {
                let pf = parse_prefix(&format!("{k}.addresses[{j}]"), a)?;
                addresses.push(IfAddr {
                    addr: pf.addr,
                    len: pf.len,
                });
            }
            if addresses.is_empty() {
                return err(format!("{k}.addresses"), "at least one address is required");
            }
            ports.push(PortConfig {
                name: p.name.clone(),
                device: p.device.clone(),
                role,
                addresses,
            });
        }
        if !ports.iter().any(|p| p.role == Role::Access) {
            return err("port", "no port has role = \"access\"");
        }
        if !ports.iter().any(|p| p.role == Role::Core) {
            return err("port", "no port has role = \"core\"");
        }
        let mut routes = Vec::new();
        for (i, r) in raw.routes.iter().enumerate() {
            let k = format!("route[{i}]");
            let prefix = parse_prefix(&format!("{k}.prefix"), &r.prefix)?;
            let via: IpAddr = r.via.parse().or_else(|_| {
                err(
                    format!("{k}.via"),
                    format!("`{}` is not an IP address", r.via),
                )
            })?;
            if via.is_ipv4() != prefix.addr.is_ipv4() {
                return err(
                    format!("{k}.via"),
                    "next hop and prefix are of different families",
                );
            }
            if !ports
                .iter()
                .any(|p| p.addresses.iter().any(|a| a.on_link(via)))
            {
                return err(format!("{k}.via"), format!("{via} is on no port's link"));
            }
            routes.push(Route { prefix, via });
        }
        let mut service_addrs = Vec::new();
        for (i, a) in raw.converter.addresses.iter().enumerate() {
            let ip: IpAddr = a.parse().or_else(|_| {
                err(
                    format!("converter.addresses[{i}]"),
                    format!("`{a}` is not an IP address"),
                )
            })?;
            service_addrs.push(ip);
        }
        let mut prefixes = Vec::new();
        for (i, p) in raw.pool.prefixes.iter().enumerate() {
            prefixes.push(parse_prefix(&format!("pool.prefixes[{i}]"), p)?);
        }
        let Some((lo, hi)) = raw.pool.ports.split_once('-') else {
            return err("pool.ports", "expected LOW-HIGH");
        };
        let (Ok(port_lo), Ok(port_hi)) = (lo.trim().parse::<u16>(), hi.trim().parse::<u16>())
        else {
            return err("pool.ports", "expected LOW-HIGH with ports 1..=65535");
        };
        if raw.workers.lcores.is_empty() {
            return err("workers.lcores", "at least one worker lcore is required");
        }
        if raw.workers.lcores.contains(&0) {
            return err(
                "workers.lcores",
                "lcore 0 is the main lcore (management only)",
            );
        }
        let mut engine = EngineConfig {
            service_addrs,
            service_port: raw.converter.port,
            pool: PoolConfig {
                prefixes,
                port_lo,
                port_hi,
                block_size: raw.pool.block_size,
                ..PoolConfig::default()
            },
            ..EngineConfig::default()
        };
        if let Some(ms) = raw.timeouts.syn_ms {
            engine.syn_timeout = std::time::Duration::from_millis(ms);
        }
        if let Some(s) = raw.timeouts.established_s {
            engine.established_idle = std::time::Duration::from_secs(s);
        }
        if let Some(s) = raw.timeouts.transitory_s {
            engine.transitory_idle = std::time::Duration::from_secs(s);
        }
        let mp = &raw.multipath;
        if let Some(s) = &mp.scheduler {
            engine.scheduler = s.parse().or_else(|_| {
                err(
                    "multipath.scheduler",
                    format!("`{s}`: expected aggregate, overflow or failover"),
                )
            })?;
        }
        for (i, p) in mp.primary_access.iter().enumerate() {
            engine
                .primary_access
                .push(parse_prefix(&format!("multipath.primary_access[{i}]"), p)?);
        }
        if let Some(n) = mp.max_subflows {
            engine.max_subflows = n;
        }
        if let Some(b) = mp.repair_cache {
            engine.repair_cache = b;
        }
        if let Some(n) = mp.cache_limit_bytes {
            engine.cache_limit_bytes = n;
        }
        if let Some(n) = mp.cache_limit_segments {
            engine.cache_limit_segments = n;
        }
        if let Some(b) = mp.no_joins_to_initial_address {
            engine.no_joins_to_initial_address = b;
        }
        if let Some(n) = mp.path_memory_entries {
            engine.path_memory_entries = n;
        }
        if let Some(s) = mp.path_memory_ttl_s {
            engine.path_memory_ttl = std::time::Duration::from_secs(s);
        }
        if let Some(n) = raw.converter.error_replies_per_second {
            engine.error_replies_per_second = n;
        }
        if let Some(b) = mp.handshake_hold {
            engine.handshake_hold = b;
        }
        for (i, a) in mp.announce.iter().enumerate() {
            let key = format!("multipath.announce[{i}]");
            let ann = parse_announce(&key, a)?;
            if !engine.service_addrs.contains(&ann.addr) {
                return err(
                    key,
                    format!(
                        "{} is not one of converter.addresses: only addresses this converter serves can be announced",
                        ann.addr
                    ),
                );
            }
            engine.announce.push(ann);
        }
        engine.validate().or_else(|e| {
            let key = match e.field {
                "service_addrs" => "converter.addresses",
                "service_port" => "converter.port",
                "pool.prefixes" => "pool.prefixes",
                "pool.port_lo" => "pool.ports",
                "pool.block_size" => "pool.block_size",
                "established_idle" => "timeouts.established_s",
                "transitory_idle" => "timeouts.transitory_s",
                "syn_timeout" => "timeouts.syn_ms",
                "max_subflows" => "multipath.max_subflows",
                "cache_limit_segments" => "multipath.cache_limit_segments",
                "announce" => "multipath.announce",
                other => other,
            };
            err(key, e.reason)
        })?;
        let metrics_listen = match &raw.metrics {
            None => None,
            Some(m) => Some(m.listen.parse::<SocketAddr>().or_else(|_| {
                err(
                    "metrics.listen",
                    format!("`{}` is not an ADDRESS:PORT socket address", m.listen),
                )
            })?),
        };
        let allocation_log = match &raw.allocation_log {
            None => None,
            Some(a) => match (&a.file, a.syslog) {
                (Some(_), true) => {
                    return err(
                        "allocation_log",
                        "set either `file` or `syslog = true`, not both",
                    );
                }
                (Some(f), false) if f.is_empty() => {
                    return err("allocation_log.file", "must be a path");
                }
                (Some(f), false) => Some(AllocationLog::File(PathBuf::from(f))),
                (None, true) => Some(AllocationLog::Syslog(PathBuf::from(
                    a.syslog_socket.as_deref().unwrap_or("/dev/log"),
                ))),
                (None, false) => {
                    return err(
                        "allocation_log",
                        "set `file = \"PATH\"` or `syslog = true` (or remove the section)",
                    );
                }
            },
        };
        if a_syslog_socket_without_syslog(&raw) {
            return err(
                "allocation_log.syslog_socket",
                "only meaningful with `syslog = true`",
            );
        }
        let management = match raw.management {
            None => None,
            Some(m) => {
                let listen = match m.listen {
                    None => None,
                    Some(a) => Some(a.parse().or_else(|_| {
                        err(
                            "management.listen",
                            format!("`{a}` is not ADDRESS:PORT (e.g. 127.0.0.1:50051)"),
                        )
                    })?),
                };
                let socket = m.socket.unwrap_or_else(|| DEFAULT_SOCKET.into());
                let state_file = m.state_file.unwrap_or_else(|| DEFAULT_STATE_FILE.into());
                if socket.is_empty() || state_file.is_empty() {
                    return err("management", "socket and state_file must not be empty");
                }
                Some(Management {
                    socket: socket.into(),
                    listen,
                    state_file: state_file.into(),
                })
            }
        };
        Ok(Config {
            eal_args: raw.eal.args,
            ports,
            routes,
            lcores: raw.workers.lcores,
            engine,
            metrics_listen,
            allocation_log,
            management,
        })
    }

    /// The addresses the appliance answers ARP/ND and ICMP echo for on `port`:
    /// the port's own addresses, plus the converter service addresses and pool
    /// addresses on the matching side (access: service; core: pools).
    #[must_use]
    pub fn owns(&self, port: usize, ip: IpAddr) -> bool {
        let Some(p) = self.ports.get(port) else {
            return false;
        };
        if p.addresses.iter().any(|a| a.addr == ip) {
            return true;
        }
        match p.role {
            Role::Access => self.engine.service_addrs.contains(&ip),
            Role::Core => self.engine.pool.contains(ip),
        }
    }
}

/// An announced address: `ADDR`, `V4:PORT` or `[V6]:PORT`.
fn parse_announce(key: &str, s: &str) -> Result<hac_core::Announce, ConfigError> {
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok(hac_core::Announce { addr, port: None });
    }
    match s.parse::<SocketAddr>() {
        Ok(sa) if sa.port() != 0 => Ok(hac_core::Announce {
            addr: sa.ip(),
            port: Some(sa.port()),
        }),
        Ok(_) => err(key, "the port must not be 0"),
        Err(_) => err(
            key,
            format!("`{s}` is not ADDRESS, IPV4:PORT or [IPV6]:PORT"),
        ),
    }
}

fn a_syslog_socket_without_syslog(raw: &RawConfig) -> bool {
    raw.allocation_log
        .as_ref()
        .is_some_and(|a| a.syslog_socket.is_some() && !a.syslog)
}

/// "line L, column C" for a byte offset.
fn locate(text: &str, at: usize) -> String {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, str::len) + 1;
    format!("line {line}, column {col}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const LAB: &str = r#"
[eal]
args = ["--no-huge", "--no-shconf"]

[[port]]
name = "dsl"
device = "net_af_packet0,iface=conc-dsl"
role = "access"
addresses = ["198.18.1.1/24", "2001:db8:1::1/64"]

[[port]]
name = "core"
device = "net_af_packet1,iface=conc-core"
role = "core"
addresses = ["198.51.100.1/24", "2001:db8:100::1/64"]

[[route]]
prefix = "0.0.0.0/0"
via = "198.51.100.2"

[converter]
addresses = ["192.0.2.1", "2001:db8:ffff::1"]
port = 5124

[pool]
prefixes = ["203.0.113.0/28", "2001:db8:200::/120"]

[workers]
lcores = [1]
"#;

    #[test]
    fn lab_config_validates() {
        let c = Config::parse(LAB).unwrap();
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.ports[0].role, Role::Access);
        assert!(c.owns(0, "192.0.2.1".parse().unwrap()));
        assert!(!c.owns(0, "203.0.113.1".parse().unwrap()));
        assert!(c.owns(1, "203.0.113.1".parse().unwrap()));
        assert_eq!(c.routes[0].via, "198.51.100.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn error_replies_per_second_is_read() {
        let c = Config::parse(LAB).unwrap();
        assert_eq!(c.engine.error_replies_per_second, 10_000);
        let c =
            Config::parse(&LAB.replace("port = 5124", "port = 5124\nerror_replies_per_second = 0"))
                .unwrap();
        assert_eq!(c.engine.error_replies_per_second, 0);
    }

    #[test]
    fn errors_name_the_key() {
        let bad = LAB.replace("198.18.1.1/24", "198.18.1.1/33");
        assert_eq!(Config::parse(&bad).unwrap_err().key, "port[0].addresses[0]");
        let bad = LAB.replace("role = \"core\"", "role = \"inside\"");
        assert_eq!(Config::parse(&bad).unwrap_err().key, "port[1].role");
        let bad = LAB.replace("via = \"198.51.100.2\"", "via = \"192.0.2.200\"");
        assert_eq!(Config::parse(&bad).unwrap_err().key, "route[0].via");
        let bad = LAB.replace("lcores = [1]", "lcores = [0]");
        assert_eq!(Config::parse(&bad).unwrap_err().key, "workers.lcores");
        let bad = LAB.replace("port = 5124", "port = 0");
        assert_eq!(Config::parse(&bad).unwrap_err().key, "converter.port");
        let bad = LAB.replace("[workers]", "[workerz]");
        assert!(Config::parse(&bad).unwrap_err().key.starts_with("line "));
        let bad = format!("{LAB}\n[management]\nlisten = \"localhost\"\n");
        assert_eq!(Config::parse(&bad).unwrap_err().key, "management.listen");
        let ok = format!("{LAB}\n[management]\n");
        let m = Config::parse(&ok).unwrap().management.unwrap();
        assert_eq!(m.socket, std::path::Path::new(DEFAULT_SOCKET));
        assert!(m.listen.is_none());
        let bad = LAB.replace(
            "prefixes = [\"203.0.113.0/28\", \"2001:db8:200::/120\"]",
            "prefixes = [\"203.0.113.0/x\"]",
        );
        assert_eq!(Config::parse(&bad).unwrap_err().key, "pool.prefixes[0]");
    }

    #[test]
    fn metrics_and_allocation_log_are_optional_and_checked() {
        let c = Config::parse(LAB).unwrap();
        assert_eq!((c.metrics_listen, c.allocation_log), (None, None));
        let with = format!(
            "{LAB}\n[metrics]\nlisten = \"127.0.0.1:9469\"\n[allocation_log]\nfile = \"/tmp/a.log\"\n"
        );
        let c = Config::parse(&with).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9469".parse().unwrap()));
        assert_eq!(
            c.allocation_log,
            Some(AllocationLog::File("/tmp/a.log".into()))
        );
        let c = Config::parse(&format!("{LAB}\n[allocation_log]\nsyslog = true\n")).unwrap();
        assert_eq!(
            c.allocation_log,
            Some(AllocationLog::Syslog("/dev/log".into()))
        );
        let key = |extra: &str| Config::parse(&format!("{LAB}\n{extra}")).unwrap_err().key;
        assert_eq!(key("[metrics]\nlisten = \"9469\""), "metrics.listen");
        assert_eq!(key("[metrics]\nlisten = \"[::1]:x\""), "metrics.listen");
        assert!(key("[metrics]\n").starts_with("line "));
        assert_eq!(key("[allocation_log]\n"), "allocation_log");
        assert_eq!(
            key("[allocation_log]\nfile = \"/a\"\nsyslog = true"),
            "allocation_log"
        );
        assert_eq!(key("[allocation_log]\nfile = \"\""), "allocation_log.file");
        assert_eq!(
            key("[allocation_log]\nfile = \"/a\"\nsyslog_socket = \"/b\""),
            "allocation_log.syslog_socket"
        );
    }

    #[test]
    fn multipath_path_memory() {
        let parse = |mp: &str| Config::parse(&format!("{LAB}\n[multipath]\n{mp}\n"));
        let d = Config::parse(LAB).unwrap();
        assert_eq!(d.engine.path_memory_entries, 16_384);
        assert_eq!(d.engine.path_memory_ttl.as_secs(), 600);
        assert!(!d.engine.handshake_hold);
        let c = parse("path_memory_entries = 0\npath_memory_ttl_s = 60\nhandshake_hold = true")
            .unwrap();
        assert_eq!(c.engine.path_memory_entries, 0);
        assert_eq!(c.engine.path_memory_ttl.as_secs(), 60);
        assert!(c.engine.handshake_hold);
        let e = parse("path_memory_entries = -1").unwrap_err();
        assert!(e.to_string().contains("expected usize"), "{e}");
    }

    #[test]
    fn multipath_announce_and_c_flag() {
        let parse = |mp: &str| Config::parse(&format!("{LAB}\n[multipath]\n{mp}\n"));
        let c = parse(
            "no_joins_to_initial_address = true\nannounce = [\"192.0.2.1\", \"192.0.2.1:6000\", \"2001:db8:ffff::1\"]",
        )
        .unwrap();
        assert!(c.engine.no_joins_to_initial_address);
        let want = |a: &str, port| hac_core::Announce {
            addr: a.parse().unwrap(),
            port,
        };
        assert_eq!(
            c.engine.announce,
            vec![
                want("192.0.2.1", None),
                want("192.0.2.1", Some(6000)),
                want("2001:db8:ffff::1", None)
            ]
        );
        assert!(
            !Config::parse(LAB)
                .unwrap()
                .engine
                .no_joins_to_initial_address
        );
        // Only addresses this converter serves.
        let e = parse("announce = [\"192.0.2.9\"]").unwrap_err();
        assert_eq!(e.key, "multipath.announce[0]");
        assert!(e.reason.contains("converter.addresses"), "{e}");
        let e = parse("announce = [\"192.0.2.1\", \"pizza\"]").unwrap_err();
        assert_eq!(e.key, "multipath.announce[1]");
        let e = parse("announce = [\"192.0.2.1:0\"]").unwrap_err();
        assert_eq!(e.key, "multipath.announce[0]");
        let e = parse("announce = [\"[2001:db8:ffff::1]:6000\"]").unwrap_err();
        assert_eq!(e.key, "multipath.announce");
        let e = parse("announce = [\"192.0.2.1\", \"192.0.2.1\"]").unwrap_err();
        assert_eq!(e.key, "multipath.announce");
    }
}
