//! Transparent interception of LAN TCP connections: an nftables REDIRECT to
//! hac-cpe's listener, and the original destination read back with
//! `SO_ORIGINAL_DST` / `IP6T_SO_ORIGINAL_DST` (conntrack's pre-NAT tuple).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use socket2::SockRef;
use tokio::net::TcpStream;

use crate::config::{Config, Prefix};

/// The nftables table hac-cpe owns.
pub const TABLE: &str = "hac_cpe";

/// The original destination of a redirected connection.
pub fn original_dst(s: &TcpStream) -> std::io::Result<SocketAddr> {
    let sock = SockRef::from(s);
    let local = s.local_addr()?;
    let v4 = match local.ip() {
        IpAddr::V4(_) => true,
        IpAddr::V6(a) => a.to_ipv4_mapped().is_some(),
    };
    let a = if v4 {
        sock.original_dst_v4()?
    } else {
        sock.original_dst_v6()?
    };
    a.as_socket().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "original destination is not an IP address",
        )
    })
}

fn set(items: impl Iterator<Item = String>) -> Option<String> {
    let v: Vec<String> = items.collect();
    (!v.is_empty()).then(|| format!("{{ {} }}", v.join(", ")))
}

fn family(p: &[Prefix], v6: bool) -> impl Iterator<Item = String> + '_ {
    p.iter()
        .filter(move |p| p.addr().is_ipv6() == v6)
        .map(ToString::to_string)
}

/// The nftables script that (re)creates the table: LAN TCP connections from the
/// LAN prefixes to the converted ports are redirected to the listener, except
/// traffic to the gateway itself, to bypassed destinations and ports, and to the
/// concentrator (a loop).
#[must_use]
pub fn ruleset(cfg: &Config) -> String {
    let mut s = String::new();
    // Creating then deleting makes the script idempotent (no error if absent).
    s.push_str(&format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
    ));
    s.push_str(&format!("table inet {TABLE} {{\n  chain prerouting {{\n"));
    s.push_str("    type nat hook prerouting priority dstnat; policy accept;\n");
    s.push_str("    fib daddr type local return\n");
    let conc: Vec<Prefix> = cfg
        .concentrator
        .iter()
        .filter_map(|a| Prefix::parse(&a.to_string()).ok())
        .collect();
    for v6 in [false, true] {
        let ip = if v6 { "ip6" } else { "ip" };
        if let Some(d) = set(family(&cfg.bypass_destinations, v6).chain(family(&conc, v6))) {
            s.push_str(&format!("    {ip} daddr {d} return\n"));
        }
    }
    if let Some(p) = set(cfg.bypass_ports.iter().map(ToString::to_string)) {
        s.push_str(&format!("    tcp dport {p} return\n"));
    }
    let iif = cfg
        .lan_interface
        .as_ref()
        .map(|i| format!("iifname \"{i}\" "))
        .unwrap_or_default();
    let ports = set(cfg.ports.iter().map(ToString::to_string)).map_or_else(
        || "meta l4proto tcp".to_string(),
        |p| format!("tcp dport {p}"),
    );
    for v6 in [false, true] {
        let ip = if v6 { "ip6" } else { "ip" };
        let Some(src) = set(family(&cfg.lan_prefixes, v6)) else {
            continue;
        };
        // Same-family listener first, else any (a [::] listener takes both).
        let port = cfg
            .listen
            .iter()
            .find(|l| l.is_ipv6() == v6)
            .or(cfg.listen.first())
            .map_or(5125, SocketAddr::port);
        s.push_str(&format!(
            "    {iif}{ip} saddr {src} {ports} redirect to :{port}\n"
        ));
    }
    s.push_str("  }\n}\n");
    s
}

/// Installs the rules (`nft -f -`).
pub fn install(cfg: &Config) -> Result<(), String> {
    nft(&ruleset(cfg))
}

/// Removes the table (at exit).
pub fn remove() -> Result<(), String> {
    nft(&format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
    ))
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e} (Debian: apt-get install nftables)"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes())
            .map_err(|e| format!("nft stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f: {}\nscript:\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// True if `dst` is one of hac-cpe's own listeners reached without a redirect
/// (SO_ORIGINAL_DST then returns the listener itself): serving it would loop.
#[must_use]
pub fn is_self(dst: SocketAddr, local: SocketAddr, listen: &[SocketAddr]) -> bool {
    dst == local
        || listen.iter().any(|l| {
            l.port() == dst.port()
                && (l.ip() == dst.ip() || l.ip().is_unspecified())
                && dst.ip() == local.ip()
        })
        || matches!(dst.ip(), IpAddr::V4(a) if a.is_loopback()) && dst.port() == local.port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_ruleset() {
        let cfg = Config::from_toml(crate::config::tests::LAB).unwrap();
        let r = ruleset(&cfg);
        assert!(r.starts_with("table inet hac_cpe {}\ndelete table inet hac_cpe\n"));
        assert!(r.contains("fib daddr type local return"));
        assert!(
            r.contains("ip daddr { 203.0.113.0/24, 192.0.2.1/32 } return"),
            "{r}"
        );
        assert!(
            r.contains("ip6 daddr { 2001:db8:ffff::1/128 } return"),
            "{r}"
        );
        assert!(r.contains("tcp dport { 22 } return"), "{r}");
        assert!(
            r.contains(
                "iifname \"lan0\" ip saddr { 198.18.100.0/24 } tcp dport { 80, 1024-65535 } redirect to :5125"
            ),
            "{r}"
        );
        assert!(
            r.contains("iifname \"lan0\" ip6 saddr { 2001:db8:64::/64 } tcp dport { 80, 1024-65535 } redirect to :5125"),
            "{r}"
        );
    }

    #[test]
    fn all_ports_without_a_port_list() {
        let cfg = Config::from_toml(
            "[concentrator]\naddresses = [\"192.0.2.1\"]\n[intercept]\nlan_prefixes = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let r = ruleset(&cfg);
        assert!(
            r.contains("    ip saddr { 10.0.0.0/8 } meta l4proto tcp redirect to :5125\n"),
            "{r}"
        );
        assert!(!r.contains("ip6 saddr"));
    }

    #[test]
    fn self_connections_are_detected() {
        let l: SocketAddr = "0.0.0.0:5125".parse().unwrap();
        let local: SocketAddr = "198.18.100.1:5125".parse().unwrap();
        assert!(is_self(local, local, &[l]));
        assert!(!is_self("198.51.100.2:80".parse().unwrap(), local, &[l]));
    }
}
