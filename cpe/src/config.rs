//! hac-cpe's configuration file (TOML): where the concentrator is, which LAN
//! connections to convert, the uplinks, relay sizing, metrics.
//!
//! Parsing is two steps: serde reads the file into `raw` structs, then
//! [`Config::from_toml`] validates it whole and returns typed values, or an error
//! naming the field and why it is invalid.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

/// An IP prefix (`198.18.100.0/24`, `2001:db8::/32`, or a bare address = host
/// prefix), without host bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// Parses `ADDR[/LEN]`; host bits must be zero.
    pub fn parse(s: &str) -> Result<Prefix, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
        };
        let p = Prefix { addr, len };
        if p.network() != addr {
            return Err(format!(
                "`{s}` has host bits set (did you mean {}/{len}?)",
                p.network()
            ));
        }
        Ok(p)
    }

    fn mask_bits(&self) -> u128 {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.len == 0 {
            0
        } else {
            (u128::MAX << (128 - u32::from(self.len))) >> (128 - max)
        }
    }

    fn network(&self) -> IpAddr {
        let m = self.mask_bits();
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & m as u32).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & m).into()),
        }
    }

    /// True if `ip` is inside the prefix (IPv4-mapped IPv6 addresses match IPv4
    /// prefixes).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let m = self.mask_bits();
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => u32::from(p) == u32::from(a) & m as u32,
            (IpAddr::V6(p), IpAddr::V6(a)) => u128::from(p) == u128::from(a) & m,
            _ => false,
        }
    }

    /// The network address.
    #[must_use]
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    #[must_use]
    pub const fn prefix_len(&self) -> u8 {
        self.len
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// An inclusive TCP port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    fn parse(s: &str) -> Result<PortRange, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("`{s}`: ports are 1..=65535"))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(s)?;
                (p, p)
            }
        };
        if first > last {
            return Err(format!("`{s}`: range is reversed"));
        }
        Ok(PortRange { first, last })
    }

    /// True if `port` is in the range.
    #[must_use]
    pub const fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One uplink (access link) of the gateway: an MPTCP subflow endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    /// Name in logs and metrics (`dsl`, `lte`).
    pub name: String,
    /// The interface (`dsl0`).
    pub interface: String,
    /// The gateway's addresses on it (one per family at most is useful).
    pub addresses: Vec<IpAddr>,
}

/// What to do with servers that speak MPTCP themselves (RFC 8803 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MptcpServers {
    /// Plain Connect TLVs; nothing learned.
    Off,
    /// Ask (Extended Connect listing MPTCP, kind 30) and remember the servers whose
    /// SYN-ACK carried MP_CAPABLE; keep converting.
    Learn,
    /// As `Learn`, and later connections to a remembered server go direct
    /// (MPTCP from the gateway to the server, no concentrator).
    Direct,
}

/// How bytes are relayed between the LAN and the concentrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// splice(2) through a pipe per direction: no copy into user space.
    Splice,
    /// read/write through a fixed buffer per direction.
    Copy,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the redirected LAN connections arrive.
    pub listen: Vec<SocketAddr>,
    /// Concentrator service addresses (IPv4 and/or IPv6) and port.
    pub concentrator: Vec<IpAddr>,
    /// The Convert port.
    pub concentrator_port: u16,
    /// Time for one attempt: SYN sent → Convert reply read.
    pub connect_timeout: Duration,
    /// How long an attempt may wait for the concentrator's SYN-ACK before the
    /// next uplink's attempt starts alongside it (hedging). A lost TFO SYN is
    /// retransmitted by Linux *without* its data (the Convert request), which a
    /// converter ignores (RFC 8803 §6), so such an attempt cannot succeed.
    pub syn_timeout: Duration,
    /// Convert attempts waiting for their SYN-ACK at once (a concentrator limits
    /// pending requests per client address, RFC 8803 §9.3; hacd's default is 64).
    pub max_pending: usize,
    /// LAN source prefixes whose connections are converted.
    pub lan_prefixes: Vec<Prefix>,
    /// Destination ports converted (empty: all).
    pub ports: Vec<PortRange>,
    /// Destinations never converted (never redirected, and refused if they arrive).
    pub bypass_destinations: Vec<Prefix>,
    /// Destination ports never converted.
    pub bypass_ports: Vec<PortRange>,
    /// Install (and remove at exit) the nftables REDIRECT rules.
    pub install_rules: bool,
    /// LAN interface the rules match (`iifname`), if any.
    pub lan_interface: Option<String>,
    /// The uplinks, in order of preference for the initial subflow.
    pub uplinks: Vec<Uplink>,
    /// Manage `ip mptcp endpoint` / `limits` from the uplinks.
    pub manage_endpoints: bool,
    /// `ip mptcp limits set subflow N`.
    pub max_subflows: u8,
    /// `ip mptcp limits set add_addr_accepted N`.
    pub add_addr_accepted: u8,
    /// Set `net.ipv4.tcp_fastopen` bits 0x1|0x4 (TFO client, data in SYN without a
    /// cookie) at start.
    pub set_tfo_sysctl: bool,
    /// How long an uplink whose SYN went unanswered is skipped for new connections.
    pub uplink_holddown: Duration,
    /// Period of the endpoint reconciliation and uplink state check.
    pub reconcile_interval: Duration,
    /// MPTCP-capable servers.
    pub mptcp_servers: MptcpServers,
    /// Entries kept in the MPTCP server cache.
    pub mptcp_cache_entries: usize,
    /// How long a learned server is remembered.
    pub mptcp_cache_ttl: Duration,
    /// Relay mechanism.
    pub relay: RelayMode,
    /// Bytes in flight per direction (pipe size or buffer size).
    pub relay_buffer: usize,
    /// Simultaneous LAN connections (more wait in the listen backlog).
    pub max_connections: usize,
    /// How long to wait for the LAN host's first bytes (they go in the SYN).
    pub first_data_wait: Duration,
    /// Most LAN bytes carried in the SYN after the Convert request.
    pub first_data_max: usize,
    /// Runtime worker threads.
    pub threads: usize,
    /// Prometheus text metrics (`/metrics`) address.
    pub metrics: Option<SocketAddr>,
}

mod raw {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub listen: Option<Listen>,
        pub threads: Option<usize>,
        pub concentrator: Concentrator,
        #[serde(default)]
        pub intercept: Intercept,
        #[serde(default, rename = "uplink")]
        pub uplinks: Vec<Uplink>,
        #[serde(default)]
        pub mptcp: Mptcp,
        #[serde(default)]
        pub relay: Relay,
        #[serde(default)]
        pub metrics: Metrics,
    }

    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    pub enum Listen {
        One(String),
        Many(Vec<String>),
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Concentrator {
        pub addresses: Vec<String>,
        pub port: Option<u16>,
        pub connect_timeout_ms: Option<u64>,
        pub syn_timeout_ms: Option<u64>,
        pub max_pending: Option<usize>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Intercept {
        #[serde(default)]
        pub lan_prefixes: Vec<String>,
        #[serde(default)]
        pub ports: Vec<super::PortSpec>,
        #[serde(default)]
        pub bypass_destinations: Vec<String>,
        #[serde(default)]
        pub bypass_ports: Vec<super::PortSpec>,
        pub install_rules: Option<bool>,
        pub lan_interface: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Uplink {
        pub name: String,
        pub interface: String,
        #[serde(default)]
        pub addresses: Vec<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Mptcp {
        pub manage_endpoints: Option<bool>,
        pub max_subflows: Option<u8>,
        pub add_addr_accepted: Option<u8>,
        pub set_tfo_sysctl: Option<bool>,
        pub uplink_holddown_ms: Option<u64>,
        pub reconcile_interval_ms: Option<u64>,
        pub servers: Option<String>,
        pub server_cache_entries: Option<usize>,
        pub server_cache_ttl_s: Option<u64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Relay {
        pub mode: Option<String>,
        pub buffer_bytes: Option<usize>,
        pub max_connections: Option<usize>,
        pub first_data_wait_ms: Option<u64>,
        pub first_data_max: Option<usize>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Metrics {
        pub listen: Option<String>,
    }
}

/// A port or range as written in the file: `443` or `"1024-65535"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    Port(i64),
    /// `"A-B"` or `"A"`.
    Text(String),
}

impl PortSpec {
    fn resolve(&self) -> Result<PortRange, String> {
        match self {
            PortSpec::Port(p) => u16::try_from(*p)
                .ok()
                .filter(|&p| p > 0)
                .map(|p| PortRange { first: p, last: p })
                .ok_or_else(|| format!("{p}: ports are 1..=65535")),
            PortSpec::Text(s) => PortRange::parse(s),
        }
    }
}

/// Largest relay buffer / pipe (bounded memory per connection).
const MAX_RELAY_BUFFER: usize = 1 << 20;

fn field<T>(name: &str, r: Result<T, String>) -> Result<T, String> {
    r.map_err(|e| format!("{name}: {e}"))
}

fn prefixes(name: &str, v: &[String]) -> Result<Vec<Prefix>, String> {
    v.iter()
        .enumerate()
        .map(|(i, s)| field(&format!("{name}[{i}]"), Prefix::parse(s)))
        .collect()
}

fn ports(name: &str, v: &[PortSpec]) -> Result<Vec<PortRange>, String> {
    v.iter()
        .enumerate()
        .map(|(i, s)| field(&format!("{name}[{i}]"), s.resolve()))
        .collect()
}

fn sockaddr(name: &str, s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{name}: `{s}` is not ADDRESS:PORT (IPv6 as [ADDR]:PORT)"))
}

fn ms(name: &str, v: Option<u64>, default: u64, min: u64, max: u64) -> Result<Duration, String> {
    let v = v.unwrap_or(default);
    if !(min..=max).contains(&v) {
        return Err(format!("{name}: {v} ms is outside {min}..={max}"));
    }
    Ok(Duration::from_millis(v))
}

impl Config {
    /// Parses and validates a configuration file's text.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let f: raw::File = toml::from_str(text).map_err(|e| e.to_string())?;
        let listen = match &f.listen {
            None => vec![SocketAddr::from(([0, 0, 0, 0], 5125))],
            Some(raw::Listen::One(s)) => vec![sockaddr("listen", s)?],
            Some(raw::Listen::Many(v)) => v
                .iter()
                .enumerate()
                .map(|(i, s)| sockaddr(&format!("listen[{i}]"), s))
                .collect::<Result<_, _>>()?,
        };
        if listen.is_empty() {
            return Err("listen: at least one address".into());
        }
        let c = &f.concentrator;
        if c.addresses.is_empty() {
            return Err("concentrator.addresses: at least one address".into());
        }
        let concentrator = c
            .addresses
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<IpAddr>()
                    .map_err(|_| format!("concentrator.addresses[{i}]: `{s}` is not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let concentrator_port = c.port.unwrap_or(5124);
        if concentrator_port == 0 {
            return Err("concentrator.port: must not be 0".into());
        }
        let connect_timeout = ms(
            "concentrator.connect_timeout_ms",
            c.connect_timeout_ms,
            5000,
            100,
            120_000,
        )?;

        let syn_timeout = ms(
            "concentrator.syn_timeout_ms",
            c.syn_timeout_ms,
            1500,
            100,
            120_000,
        )?;
        if syn_timeout > connect_timeout {
            return Err(format!(
                "concentrator.syn_timeout_ms: {} ms is above connect_timeout_ms ({} ms)",
                syn_timeout.as_millis(),
                connect_timeout.as_millis()
            ));
        }
        let max_pending = c.max_pending.unwrap_or(48);
        if !(1..=65_536).contains(&max_pending) {
            return Err(format!(
                "concentrator.max_pending: {max_pending} is outside 1..=65536"
            ));
        }

        let i = &f.intercept;
        let lan_prefixes = prefixes("intercept.lan_prefixes", &i.lan_prefixes)?;
        if lan_prefixes.is_empty() {
            return Err(
                "intercept.lan_prefixes: at least one LAN prefix (whose connections are converted)"
                    .into(),
            );
        }
        let bypass_destinations =
            prefixes("intercept.bypass_destinations", &i.bypass_destinations)?;
        if let Some(ifn) = &i.lan_interface
            && !valid_ifname(ifn)
        {
            return Err(format!(
                "intercept.lan_interface: `{ifn}` is not an interface name"
            ));
        }

        let mut uplinks = Vec::with_capacity(f.uplinks.len());
        for (n, u) in f.uplinks.iter().enumerate() {
            if !valid_name(&u.name) {
                return Err(format!(
                    "uplink[{n}].name: `{}` must be 1-32 of [A-Za-z0-9._-]",
                    u.name
                ));
            }
            if uplinks.iter().any(|x: &Uplink| x.name == u.name) {
                return Err(format!("uplink[{n}].name: `{}` is used twice", u.name));
            }
            if !valid_ifname(&u.interface) {
                return Err(format!(
                    "uplink[{n}].interface: `{}` is not an interface name",
                    u.interface
                ));
            }
            let addresses = u
                .addresses
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    s.parse::<IpAddr>().map_err(|_| {
                        format!("uplink[{n}].addresses[{k}]: `{s}` is not an IP address")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            uplinks.push(Uplink {
                name: u.name.clone(),
                interface: u.interface.clone(),
                addresses,
            });
        }

        let m = &f.mptcp;
        let mptcp_servers = match m.servers.as_deref().unwrap_or("learn") {
            "off" => MptcpServers::Off,
            "learn" => MptcpServers::Learn,
            "direct" => MptcpServers::Direct,
            other => {
                return Err(format!(
                    "mptcp.servers: `{other}` is not one of off, learn, direct"
                ));
            }
        };
        let max_subflows = m.max_subflows.unwrap_or(2);
        if max_subflows > 8 {
            return Err(format!(
                "mptcp.max_subflows: {max_subflows} is above the kernel's maximum of 8"
            ));
        }
        let add_addr_accepted = m.add_addr_accepted.unwrap_or(0);
        if add_addr_accepted > 8 {
            return Err(format!(
                "mptcp.add_addr_accepted: {add_addr_accepted} is above the kernel's maximum of 8"
            ));
        }

        let r = &f.relay;
        let relay = match r.mode.as_deref().unwrap_or("splice") {
            "splice" => RelayMode::Splice,
            "copy" => RelayMode::Copy,
            other => return Err(format!("relay.mode: `{other}` is not splice or copy")),
        };
        let relay_buffer = r.buffer_bytes.unwrap_or(64 * 1024);
        if !(4096..=MAX_RELAY_BUFFER).contains(&relay_buffer) {
            return Err(format!(
                "relay.buffer_bytes: {relay_buffer} is outside 4096..={MAX_RELAY_BUFFER}"
            ));
        }
        let max_connections = r.max_connections.unwrap_or(8192);
        if !(1..=1_000_000).contains(&max_connections) {
            return Err(format!(
                "relay.max_connections: {max_connections} is outside 1..=1000000"
            ));
        }
        let first_data_max = r.first_data_max.unwrap_or(1000);
        if first_data_max > 1200 {
            return Err(format!(
                "relay.first_data_max: {first_data_max} is above 1200 (what fits a SYN with the Convert request)"
            ));
        }
        let threads = f.threads.unwrap_or(1);
        if !(1..=64).contains(&threads) {
            return Err(format!("threads: {threads} is outside 1..=64"));
        }
        let metrics = match &f.metrics.listen {
            None => None,
            Some(s) => Some(sockaddr("metrics.listen", s)?),
        };
        Ok(Config {
            listen,
            concentrator,
            concentrator_port,
            connect_timeout,
            syn_timeout,
            max_pending,
            lan_prefixes,
            ports: ports("intercept.ports", &i.ports)?,
            bypass_destinations,
            bypass_ports: ports("intercept.bypass_ports", &i.bypass_ports)?,
            install_rules: i.install_rules.unwrap_or(true),
            lan_interface: i.lan_interface.clone(),
            uplinks,
            manage_endpoints: m.manage_endpoints.unwrap_or(true),
            max_subflows,
            add_addr_accepted,
            set_tfo_sysctl: m.set_tfo_sysctl.unwrap_or(true),
            uplink_holddown: ms(
                "mptcp.uplink_holddown_ms",
                m.uplink_holddown_ms,
                10_000,
                0,
                3_600_000,
            )?,
            reconcile_interval: ms(
                "mptcp.reconcile_interval_ms",
                m.reconcile_interval_ms,
                2_000,
                100,
                3_600_000,
            )?,
            mptcp_servers,
            mptcp_cache_entries: m.server_cache_entries.unwrap_or(4096).clamp(1, 1 << 20),
            mptcp_cache_ttl: Duration::from_secs(m.server_cache_ttl_s.unwrap_or(3600)),
            relay,
            relay_buffer,
            max_connections,
            first_data_wait: ms("relay.first_data_wait_ms", r.first_data_wait_ms, 3, 0, 1000)?,
            first_data_max,
            threads,
            metrics,
        })
    }

    /// The concentrator address of the same family as `dst` (IPv4-mapped IPv6
    /// counts as IPv4), else the first one: the Convert request carries any family.
    #[must_use]
    pub fn concentrator_for(&self, dst: IpAddr) -> SocketAddr {
        let v4 = match dst {
            IpAddr::V4(_) => true,
            IpAddr::V6(a) => a.to_ipv4_mapped().is_some(),
        };
        let ip = self
            .concentrator
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == v4)
            .unwrap_or(self.concentrator[0]);
        SocketAddr::new(ip, self.concentrator_port)
    }

    /// Why a redirected connection must not be converted, if it must not: its source
    /// is not a LAN prefix, or its destination or port is bypassed or not listed.
    #[must_use]
    pub fn refuse_reason(&self, src: IpAddr, dst: SocketAddr) -> Option<&'static str> {
        if !self.lan_prefixes.iter().any(|p| p.contains(src)) {
            return Some("source outside the LAN prefixes");
        }
        if self
            .bypass_destinations
            .iter()
            .any(|p| p.contains(dst.ip()))
        {
            return Some("destination bypassed");
        }
        if self.bypass_ports.iter().any(|r| r.contains(dst.port())) {
            return Some("port bypassed");
        }
        if !self.ports.is_empty() && !self.ports.iter().any(|r| r.contains(dst.port())) {
            return Some("port not converted");
        }
        if self.concentrator.contains(&dst.ip()) {
            return Some("destination is the concentrator (loop)");
        }
        None
    }
}

fn valid_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn valid_ifname(s: &str) -> bool {
    // IFNAMSIZ 16 including the NUL; no '/' or whitespace.
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'"' && b != b'\'')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const LAB: &str = r#"
listen = "0.0.0.0:5125"

[concentrator]
addresses = ["192.0.2.1", "2001:db8:ffff::1"]
port = 5124

[intercept]
lan_prefixes = ["198.18.100.0/24", "2001:db8:64::/64"]
ports = [80, "1024-65535"]
bypass_destinations = ["203.0.113.0/24"]
bypass_ports = [22]
lan_interface = "lan0"

[[uplink]]
name = "dsl"
interface = "dsl0"
addresses = ["198.18.1.2", "2001:db8:1::2"]

[[uplink]]
name = "lte"
interface = "lte0"
addresses = ["198.18.2.2"]

[mptcp]
max_subflows = 2
servers = "direct"

[relay]
mode = "copy"
buffer_bytes = 16384

[metrics]
listen = "127.0.0.1:9470"
"#;

    #[test]
    fn parses_the_lab_file() {
        let c = Config::from_toml(LAB).unwrap();
        assert_eq!(c.listen, vec!["0.0.0.0:5125".parse().unwrap()]);
        assert_eq!(c.concentrator.len(), 2);
        assert_eq!(c.concentrator_port, 5124);
        assert_eq!(c.uplinks.len(), 2);
        assert_eq!(c.uplinks[1].name, "lte");
        assert_eq!(c.uplinks[0].addresses.len(), 2);
        assert_eq!(
            c.ports[1],
            PortRange {
                first: 1024,
                last: 65535
            }
        );
        assert_eq!(c.mptcp_servers, MptcpServers::Direct);
        assert_eq!(c.relay, RelayMode::Copy);
        assert_eq!(c.relay_buffer, 16384);
        assert_eq!(c.metrics, Some("127.0.0.1:9470".parse().unwrap()));
        assert_eq!(c.lan_interface.as_deref(), Some("lan0"));
        // Family-matched concentrator address.
        assert_eq!(
            c.concentrator_for("198.51.100.2".parse().unwrap()),
            "192.0.2.1:5124".parse().unwrap()
        );
        assert_eq!(
            c.concentrator_for("2001:db8:100::2".parse().unwrap()),
            "[2001:db8:ffff::1]:5124".parse().unwrap()
        );
        assert_eq!(
            c.concentrator_for("::ffff:198.51.100.2".parse().unwrap()),
            "192.0.2.1:5124".parse().unwrap()
        );
    }

    #[test]
    fn defaults_for_a_minimal_file() {
        let c = Config::from_toml(
            "[concentrator]\naddresses = [\"192.0.2.1\"]\n[intercept]\nlan_prefixes = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        assert_eq!(c.listen, vec!["0.0.0.0:5125".parse().unwrap()]);
        assert_eq!(c.concentrator_port, 5124);
        assert!(c.ports.is_empty());
        assert_eq!(c.relay, RelayMode::Splice);
        assert_eq!(c.mptcp_servers, MptcpServers::Learn);
        assert!(c.install_rules && c.manage_endpoints && c.set_tfo_sysctl);
        assert_eq!(c.metrics, None);
        assert_eq!(c.max_subflows, 2);
        assert_eq!(c.syn_timeout, Duration::from_millis(1500));
        assert_eq!(c.max_pending, 48);
    }

    #[test]
    fn decides_what_is_converted() {
        let c = Config::from_toml(LAB).unwrap();
        let lan: IpAddr = "198.18.100.2".parse().unwrap();
        let to = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(c.refuse_reason(lan, to("198.51.100.2:80")), None);
        assert_eq!(c.refuse_reason(lan, to("198.51.100.2:8080")), None);
        assert_eq!(
            c.refuse_reason(lan, to("198.51.100.2:443")),
            Some("port not converted")
        );
        assert_eq!(
            c.refuse_reason(lan, to("198.51.100.2:22")),
            Some("port bypassed")
        );
        assert_eq!(
            c.refuse_reason(lan, to("203.0.113.9:80")),
            Some("destination bypassed")
        );
        assert_eq!(
            c.refuse_reason("198.18.99.2".parse().unwrap(), to("198.51.100.2:80")),
            Some("source outside the LAN prefixes")
        );
        assert_eq!(
            c.refuse_reason(lan, to("192.0.2.1:5124")),
            Some("destination is the concentrator (loop)")
        );
        // v4-mapped source matches the v4 prefix.
        assert_eq!(
            c.refuse_reason(
                "::ffff:198.18.100.7".parse().unwrap(),
                to("198.51.100.2:80")
            ),
            None
        );
    }

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err()
    }

    #[test]
    fn errors_name_the_field_and_the_reason() {
        let base = "[concentrator]\naddresses = [\"192.0.2.1\"]\n[intercept]\nlan_prefixes = [\"10.0.0.0/8\"]\n";
        let e = err("[concentrator]\naddresses = [\"192.0.2.300\"]\n");
        assert!(
            e.contains("concentrator.addresses[0]") && e.contains("not an IP"),
            "{e}"
        );
        let e = err("[concentrator]\naddresses = [\"192.0.2.1\"]\n");
        assert!(e.contains("intercept.lan_prefixes"), "{e}");
        let e = err(&base.replace("10.0.0.0/8", "10.0.0.1/8"));
        assert!(
            e.contains("intercept.lan_prefixes[0]") && e.contains("host bits"),
            "{e}"
        );
        let e = err(&base.replace("10.0.0.0/8", "10.0.0.0/33"));
        assert!(e.contains("prefix length"), "{e}");
        let e = err(&format!("{base}ports = [0]\n"));
        assert!(e.contains("intercept.ports[0]"), "{e}");
        let e = err(&format!("{base}ports = [\"90-80\"]\n"));
        assert!(e.contains("reversed"), "{e}");
        let e = err(&format!("{base}[relay]\nmode = \"zerocopy\"\n"));
        assert!(e.contains("relay.mode"), "{e}");
        let e = err(&format!("{base}[relay]\nbuffer_bytes = 100000000\n"));
        assert!(e.contains("relay.buffer_bytes"), "{e}");
        let e = err(&format!("{base}[mptcp]\nservers = \"maybe\"\n"));
        assert!(e.contains("mptcp.servers"), "{e}");
        let e = err(&format!("{base}[mptcp]\nmax_subflows = 9\n"));
        assert!(e.contains("mptcp.max_subflows"), "{e}");
        let e = err(&format!(
            "{base}[[uplink]]\nname = \"a\"\ninterface = \"x\"\n[[uplink]]\nname = \"a\"\ninterface = \"y\"\n"
        ));
        assert!(e.contains("uplink[1].name") && e.contains("twice"), "{e}");
        let e = err(&format!(
            "{base}[[uplink]]\nname = \"a\"\ninterface = \"averyveryverylongname\"\n"
        ));
        assert!(e.contains("uplink[0].interface"), "{e}");
        let e = err(
            "[concentrator]\naddresses = [\"192.0.2.1\"]\nconnect_timeout_ms = 1000\nsyn_timeout_ms = 2000\n",
        );
        assert!(e.contains("concentrator.syn_timeout_ms"), "{e}");
        let e = err(&format!("{base}[metrics]\nlisten = \"9470\"\n"));
        assert!(e.contains("metrics.listen"), "{e}");
        // Unknown keys are refused (typos do not silently fall back to defaults).
        let e = err(&format!("{base}[relay]\nbufer_bytes = 4096\n"));
        assert!(e.contains("bufer_bytes"), "{e}");
    }

    #[test]
    fn prefixes_match_by_family() {
        let p = Prefix::parse("198.18.100.0/24").unwrap();
        assert!(p.contains("198.18.100.255".parse().unwrap()));
        assert!(!p.contains("198.18.101.0".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        let all = Prefix::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6 = Prefix::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert_eq!(Prefix::parse("192.0.2.7").unwrap().prefix_len(), 32);
    }
}
