//! The management plane in the lab (issue 6), through real DPDK: `deploy/lab.sh up`
//! with this `hacd` (which the lab starts with `[management]`), `deploy/lab.sh ctl`
//! running the real `hacctl` inside the concentrator's namespace, real Linux MPTCP
//! clients and a plain Linux TCP server.
//!
//! `mgmt_lab_policy_change_during_a_live_transfer`: a 64 MB download (DSL shaped to
//! 20 Mbit/s, LTE to 5) runs from the
//! client's DSL address while the operator (1) lists the session, (2) adds a
//! subscriber covering the client and refuses unlisted clients — a new IPv4
//! connection still works — then (3) moves the subscriber's IPv4 prefix away: a new
//! IPv4 connection gets Convert error 32 (Not Authorized) while a new IPv6 one, still
//! covered, works; a revoke dry run counts the live connection the new policy
//! refuses, and the download (never revoked) completes byte-exact.
//!
//! Needs root (CI runs as root); skipped otherwise. Runs under its own lab prefix
//! `hacm` (`LAB_RUN=/run/hacm-lab`), never the `hac` contract lab.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hac_harness::{ClientSpec, ConvertOutcome, Peers, skip_unless_root};
use serde_json::Value;

mod common;
use common::{lab_command, wait_for};

const MB: u64 = 1 << 20;
const SERVER_V4: &str = "198.51.100.2";
const SERVER_V6: &str = "2001:db8:100::2";
const SERVER_PORT: u16 = 8080;
const PREFIX: &str = "hacm";

fn hacctl_bin() -> PathBuf {
    let hacd = Path::new(env!("CARGO_BIN_EXE_hacd"));
    let p = hacd.with_file_name("hacctl");
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-p", "hacctl"])
            .status()
            .expect("cargo build -p hacctl");
        assert!(st.success(), "building hacctl failed");
    }
    p
}

/// The `hacm` lab; `lab.sh down` on drop.
struct Lab;

impl Lab {
    fn up() -> Lab {
        let lab = Lab;
        let _ = lab.sh(&["down"], 60);
        let out = lab.sh(&["up"], 150);
        assert!(
            out.status.success(),
            "lab.sh up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn sh(&self, args: &[&str], limit: u64) -> Output {
        let run = PathBuf::from(format!("/run/{PREFIX}-lab"));
        let mut cmd = lab_command(PREFIX, &run, args, limit);
        cmd.env("HACCTL", hacctl_bin());
        cmd.output().expect("run deploy/lab.sh")
    }

    /// `lab.sh ctl --json ARGS…`, which must succeed.
    fn ctl(&self, args: &[&str]) -> Value {
        let mut a = vec!["ctl", "--json"];
        a.extend_from_slice(args);
        let out = self.sh(&a, 30);
        assert!(
            out.status.success(),
            "lab.sh ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "lab.sh ctl {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.sh(&["down"], 60);
        if !out.status.success() {
            eprintln!("lab.sh down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn dest(v6: bool) -> SocketAddr {
    let ip: IpAddr = if v6 { SERVER_V6 } else { SERVER_V4 }.parse().unwrap();
    SocketAddr::new(ip, SERVER_PORT)
}

/// A short exchange through the converter: its Convert outcome.
fn short(peers: &Peers, v6: bool) -> ConvertOutcome {
    let spec = ClientSpec::convert(dest(v6))
        .request_in_syn(true)
        .up(1000)
        .down(1000)
        .timeout(Duration::from_secs(20));
    peers.run_client(&spec).expect("client").convert
}

#[test]
fn mgmt_lab_policy_change_during_a_live_transfer() {
    if skip_unless_root("mgmt_lab_policy_change_during_a_live_transfer") {
        return;
    }
    let lab = Lab::up();
    // Both access links shaped: the client's LTE subflow joins the download too.
    for (link, rate, delay) in [("dsl", "20", "10"), ("lte", "5", "40")] {
        let shaped = lab.sh(&["shape", link, rate, delay], 30);
        assert!(shaped.status.success(), "lab.sh shape {link} failed");
    }
    let binds: [IpAddr; 2] = [SERVER_V4.parse().unwrap(), SERVER_V6.parse().unwrap()];
    let peers = Peers::new(
        "mgm",
        &format!("{PREFIX}-client"),
        &format!("{PREFIX}-server"),
        &binds,
        SERVER_PORT,
    )
    .expect("test server");
    assert_eq!(lab.ctl(&["mode", "show"])["mode"], "single-proxy");

    // A download long enough to span the changes (64 MB at 25 Mbit/s: about 21 s;
    // the changes below take a few seconds).
    let size = 64 * MB;
    let spec = ClientSpec::convert(dest(false))
        .request_in_syn(true)
        .late_shutdown(true)
        .down(size)
        .timeout(Duration::from_secs(120));
    let live = peers.spawn_client(&spec).expect("client");
    let t0 = Instant::now();
    let established = wait_for(Duration::from_secs(20), || {
        lab.ctl(&["session", "list"])
            .as_array()
            .is_some_and(|v| v.iter().any(|s| s["state"] == "established"))
    });
    assert!(established, "the download never showed up in session list");
    let sessions = lab.ctl(&["session", "list", "--server", SERVER_V4]);
    let s = &sessions[0];
    assert!(
        s["client"].as_str().unwrap().starts_with("198.18.1.2:"),
        "{s}"
    );
    let id = s["id"].as_str().unwrap().to_string();
    let shown = lab.ctl(&["session", "show", &id]);
    assert_eq!(shown["state"], "established");
    assert!(!shown["subflows"].as_array().unwrap().is_empty());

    // (2) The client becomes a listed subscriber; unlisted clients are refused.
    lab.ctl(&[
        "subscriber",
        "add",
        "home",
        "--prefix",
        "198.18.1.0/24",
        "--prefix",
        "2001:db8:1::/64",
    ]);
    lab.ctl(&["policy", "set", "--unlisted-clients", "deny"]);
    assert_eq!(
        short(&peers, false),
        ConvertOutcome::Ok,
        "authorized v4 client"
    );
    let by_sub = lab.ctl(&["session", "list", "--subscriber", "home"]);
    assert!(!by_sub.as_array().unwrap().is_empty(), "{by_sub}");

    // (3) Its IPv4 prefix moves away: the live download is now refused by the policy
    // but only counted (revocation happens only when the operator asks); a new IPv4
    // connection is refused with 32, a new IPv6 one still works.
    lab.ctl(&[
        "subscriber",
        "update",
        "home",
        "--prefix",
        "198.18.9.0/24",
        "--prefix",
        "2001:db8:1::/64",
    ]);
    let dry = lab.ctl(&["session", "revoke", "--dry-run"]);
    let still = lab.ctl(&["session", "list"]);
    assert!(
        still
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str()),
        "the download ended before the policy change could be checked against it: {still}"
    );
    assert!(dry["revoked"].as_u64().unwrap() >= 1, "{dry}");
    let checked = t0.elapsed();
    assert_eq!(
        short(&peers, false),
        ConvertOutcome::Error(32),
        "unauthorized v4 client"
    );
    assert_eq!(
        short(&peers, true),
        ConvertOutcome::Ok,
        "authorized v6 client"
    );
    let st = lab.ctl(&["stats"]);
    assert!(st["denied_client"].as_u64().unwrap() >= 1, "{st}");

    let res = live.wait().expect("client");
    eprintln!(
        "download: {:.1} s, changes checked {:.1} s after it started",
        res.elapsed.as_secs_f64(),
        checked.as_secs_f64()
    );
    assert_eq!(res.convert, ConvertOutcome::Ok, "{res:?}");
    let srv = peers
        .server()
        .wait_record(&res.id, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no server record: {res:?}"));
    res.check_transfer(&srv, 0, size)
        .unwrap_or_else(|e| panic!("the download did not survive the changes: {e}: {res:?}"));
    assert_eq!(res.fallback, Some(false), "fell back to TCP: {res:?}");
}
