//! The gateway's MPTCP paths: one subflow endpoint per uplink (`ip mptcp endpoint
//! … subflow`), the limits, the TFO sysctl, and which uplink new connections
//! start on.
//!
//! An uplink is *usable* when its interface is up, carries the configured
//! address, and no SYN sent from it went unanswered in the last hold-down. New
//! connections start their initial subflow on the first usable uplink (in
//! configuration order) and the kernel's path manager adds subflows on the
//! others; when an uplink disappears, running connections go on over the
//! remaining subflows (kernel MPTCP) and new ones start elsewhere; when it comes
//! back, its endpoint is re-added if the kernel dropped it.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::{Config, Uplink};
use crate::metrics::Metrics;

/// Uplinks with their run-time state.
#[derive(Debug)]
pub struct Uplinks {
    list: Vec<UplinkState>,
    holddown: Duration,
}

#[derive(Debug)]
struct UplinkState {
    cfg: Uplink,
    /// Interface up and address present (last reconciliation).
    present: Mutex<bool>,
    /// Skipped for new connections until then.
    held_until: Mutex<Option<Instant>>,
    /// Last attempt from this uplink that the concentrator answered.
    last_ok: Mutex<Option<Instant>>,
}

/// One candidate source for an upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Index of the uplink (None: no uplinks configured, the kernel chooses).
    pub uplink: Option<usize>,
    /// Address to bind.
    pub addr: Option<IpAddr>,
}

impl Uplinks {
    /// From the configuration; every uplink starts usable.
    #[must_use]
    pub fn new(cfg: &Config) -> Uplinks {
        Uplinks {
            list: cfg
                .uplinks
                .iter()
                .map(|u| UplinkState {
                    cfg: u.clone(),
                    present: Mutex::new(true),
                    held_until: Mutex::new(None),
                    last_ok: Mutex::new(None),
                })
                .collect(),
            holddown: cfg.uplink_holddown,
        }
    }

    /// The uplink's name (for logs and metrics).
    #[must_use]
    pub fn name(&self, i: Option<usize>) -> &str {
        i.and_then(|i| self.list.get(i))
            .map_or("default", |u| u.cfg.name.as_str())
    }

    fn usable(&self, u: &UplinkState, now: Instant) -> bool {
        *u.present.lock() && u.held_until.lock().is_none_or(|t| now >= t)
    }

    /// Sources to try for a connection to a peer of family `v6`, best first:
    /// usable uplinks in configuration order, then the others (a last resort
    /// beats failing the LAN connection). Uplinks without an address of that
    /// family are left out; with none at all, one unbound attempt.
    #[must_use]
    pub fn candidates(&self, v6: bool, now: Instant) -> Vec<Source> {
        let mut good = Vec::new();
        let mut rest = Vec::new();
        for (i, u) in self.list.iter().enumerate() {
            let Some(addr) = u.cfg.addresses.iter().copied().find(|a| a.is_ipv6() == v6) else {
                continue;
            };
            let s = Source {
                uplink: Some(i),
                addr: Some(addr),
            };
            if self.usable(u, now) {
                good.push(s);
            } else {
                rest.push(s);
            }
        }
        good.extend(rest);
        if good.is_empty() {
            good.push(Source {
                uplink: None,
                addr: None,
            });
        }
        good
    }

    /// A SYN sent from this uplink at `since` went unanswered: skip the uplink
    /// for the hold-down — unless another attempt from it was answered since then
    /// (a slow answer under load is not a dead uplink). Returns true if held down.
    pub fn hold_down(&self, i: Option<usize>, since: Instant, now: Instant) -> bool {
        let Some(u) = i.and_then(|i| self.list.get(i)) else {
            return false;
        };
        if u.last_ok.lock().is_some_and(|t| t >= since) {
            return false;
        }
        *u.held_until.lock() = Some(now + self.holddown);
        true
    }

    /// An attempt from this uplink was answered: usable again at once.
    pub fn mark_ok(&self, i: Option<usize>, now: Instant) {
        if let Some(u) = i.and_then(|i| self.list.get(i)) {
            *u.held_until.lock() = None;
            *u.last_ok.lock() = Some(now);
        }
    }

    /// Re-reads interface state and addresses; with `manage`, re-adds missing
    /// endpoints. Returns the log lines of what changed.
    pub fn reconcile(&self, manage: bool, metrics: &Metrics) {
        let endpoints = if manage {
            match run("ip", &["mptcp", "endpoint", "show"]) {
                Ok(out) => Some(parse_endpoints(&out)),
                Err(e) => {
                    tracing::warn!("ip mptcp endpoint show: {e}");
                    None
                }
            }
        } else {
            None
        };
        let now = Instant::now();
        for u in &self.list {
            let up = interface_up(&u.cfg.interface);
            let addrs = interface_addresses(&u.cfg.interface);
            let present = up && u.cfg.addresses.iter().all(|a| addrs.contains(a));
            {
                let mut p = u.present.lock();
                if *p != present {
                    tracing::info!(
                        uplink = %u.cfg.name,
                        interface = %u.cfg.interface,
                        "uplink {}",
                        if present { "back" } else { "gone (down or address missing)" }
                    );
                }
                *p = present;
            }
            if let Some(eps) = &endpoints {
                for a in &u.cfg.addresses {
                    if addrs.contains(a) && !eps.contains(a) {
                        match add_endpoint(*a, &u.cfg.interface) {
                            Ok(()) => tracing::info!(
                                uplink = %u.cfg.name,
                                address = %a,
                                "MPTCP subflow endpoint added"
                            ),
                            Err(e) => tracing::warn!(
                                uplink = %u.cfg.name,
                                address = %a,
                                "adding the MPTCP endpoint failed: {e}"
                            ),
                        }
                    }
                }
            }
            metrics
                .uplink_usable
                .with_label_values(&[u.cfg.name.as_str()])
                .set(i64::from(self.usable(u, now)));
        }
    }
}

fn add_endpoint(a: IpAddr, dev: &str) -> Result<(), String> {
    run(
        "ip",
        &[
            "mptcp",
            "endpoint",
            "add",
            &a.to_string(),
            "dev",
            dev,
            "subflow",
        ],
    )
    .map(|_| ())
}

/// Addresses in `ip mptcp endpoint show` output (`ADDR id N subflow dev IF`).
#[must_use]
pub fn parse_endpoints(out: &str) -> Vec<IpAddr> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|a| a.parse().ok())
        .collect()
}

fn interface_up(ifname: &str) -> bool {
    // "unknown" is what veths and tunnels without carrier detection report.
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/operstate"))
        .is_ok_and(|s| matches!(s.trim(), "up" | "unknown"))
}

fn interface_addresses(ifname: &str) -> Vec<IpAddr> {
    run("ip", &["-o", "addr", "show", "dev", ifname])
        .map(|out| parse_addr_show(&out))
        .unwrap_or_default()
}

/// Addresses in `ip -o addr show` output (`2: dsl0    inet 198.18.1.2/24 …`).
#[must_use]
pub fn parse_addr_show(out: &str) -> Vec<IpAddr> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|t| *t == "inet" || *t == "inet6")?;
            w.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

/// Runs a command, returning its stdout or an error with its stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One-time set-up of the gateway's network namespace: MPTCP on, the limits,
/// TFO client without cookie (net.ipv4.tcp_fastopen bits 0x1 and 0x4, RFC 8803
/// §4.2: the Convert request rides in the SYN without a TFO cookie).
pub fn setup(cfg: &Config) -> Result<(), String> {
    if cfg.set_tfo_sysctl {
        let p = "/proc/sys/net/ipv4/tcp_fastopen";
        let cur: u32 = std::fs::read_to_string(p)
            .map_err(|e| format!("{p}: {e}"))?
            .trim()
            .parse()
            .map_err(|_| format!("{p}: not a number"))?;
        let want = cur | 0x1 | 0x4;
        if want != cur {
            std::fs::write(p, format!("{want}\n")).map_err(|e| format!("{p}: {e}"))?;
            tracing::info!("net.ipv4.tcp_fastopen {cur} -> {want} (TFO client, no cookie)");
        }
    }
    if cfg.manage_endpoints {
        let p = "/proc/sys/net/mptcp/enabled";
        if std::fs::read_to_string(p)
            .map(|s| s.trim() != "1")
            .unwrap_or(true)
        {
            std::fs::write(p, "1\n").map_err(|e| format!("{p}: {e}"))?;
        }
        run(
            "ip",
            &[
                "mptcp",
                "limits",
                "set",
                "subflow",
                &cfg.max_subflows.to_string(),
                "add_addr_accepted",
                &cfg.add_addr_accepted.to_string(),
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_output() {
        let eps = parse_endpoints(
            "198.18.2.2 id 1 subflow dev lte0 \n2001:db8:2::2 id 2 subflow dev lte0 \n",
        );
        assert_eq!(
            eps,
            vec![
                "198.18.2.2".parse::<IpAddr>().unwrap(),
                "2001:db8:2::2".parse().unwrap()
            ]
        );
        let a = parse_addr_show(
            "2: dsl0    inet 198.18.1.2/24 scope global dsl0\\       valid_lft forever preferred_lft forever\n2: dsl0    inet6 2001:db8:1::2/64 scope global \\       valid_lft forever preferred_lft forever\n",
        );
        assert_eq!(
            a,
            vec![
                "198.18.1.2".parse::<IpAddr>().unwrap(),
                "2001:db8:1::2".parse().unwrap()
            ]
        );
    }

    #[test]
    fn candidates_prefer_usable_uplinks_in_order() {
        let cfg = Config::from_toml(crate::config::tests::LAB).unwrap();
        let u = Uplinks::new(&cfg);
        let now = Instant::now();
        let c = u.candidates(false, now);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].uplink, Some(0));
        assert_eq!(c[0].addr, Some("198.18.1.2".parse().unwrap()));
        // dsl held down: lte first, dsl as the last resort.
        assert!(u.hold_down(Some(0), now, now));
        let c = u.candidates(false, now);
        assert_eq!((c[0].uplink, c[1].uplink), (Some(1), Some(0)));
        // After the hold-down (10 s), or a success, dsl is first again.
        let c = u.candidates(false, now + Duration::from_secs(11));
        assert_eq!(c[0].uplink, Some(0));
        u.mark_ok(Some(0), now);
        assert_eq!(u.candidates(false, now)[0].uplink, Some(0));
        // An answer after the unanswered SYN was sent: not held down.
        assert!(!u.hold_down(Some(0), now - Duration::from_secs(1), now));
        assert_eq!(u.candidates(false, now)[0].uplink, Some(0));
        // IPv6: only dsl has an IPv6 address.
        let c = u.candidates(true, now);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].addr, Some("2001:db8:1::2".parse().unwrap()));
        assert_eq!(u.name(Some(1)), "lte");
        assert_eq!(u.name(None), "default");
    }

    #[test]
    fn no_uplinks_means_one_unbound_attempt() {
        let cfg = Config::from_toml(
            "[concentrator]\naddresses = [\"192.0.2.1\"]\n[intercept]\nlan_prefixes = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let u = Uplinks::new(&cfg);
        assert_eq!(
            u.candidates(false, Instant::now()),
            vec![Source {
                uplink: None,
                addr: None
            }]
        );
    }
}
