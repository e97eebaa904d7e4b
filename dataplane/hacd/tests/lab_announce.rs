//! Our own ADD_ADDR and flag C (RFC 8684 §3.1, §3.4.1) and DSS checksums (§3.3.1)
//! against a real Linux MPTCP client, through real DPDK: `deploy/lab.sh up` with
//! `LAB_ANNOUNCE=1` (hacd also serves 192.0.2.2 / 2001:db8:ffff::2, announces them
//! and sets C) under the prefix `hacq`.
//!
//! - `announce_lab_client_joins_the_announced_address`: the client accepts two
//!   announcements (`ip mptcp limits set subflow 2 add_addr_accepted 2`) and keeps
//!   its `subflow` endpoints on lte0. With C set it opens no subflow to the address
//!   it connected to; the ADD_ADDR (its HMAC checked by Linux: `MPTcpExt AddAddr`
//!   counts only valid ones) makes it join the announced address, seen by `ip mptcp
//!   monitor` (`SF_ESTABLISHED … daddr=announced`) and by hacd (joins accepted, none
//!   refused, every announcement echoed). A 4 MB download stays byte-exact, v4 and v6.
//! - `announce_lab_checksums_end_to_end`: `net.mptcp.checksum_enabled=1` in the
//!   client namespace: checksums negotiated, every client mapping verified by hacd
//!   (none failed), 4 MB up and down byte-exact.
//! - `announce_lab_checksums_with_loss`: the same with 1 % loss each way on both
//!   access links (upload repair per subflow, see the test).
//!
//! Needs root; skipped otherwise. One lab at a time (the tests take turns).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hac_harness::{ClientResult, ClientSpec, ConvertOutcome, Peers, skip_unless_root};

mod common;
use common::{lab_command, wait_for};

const MB: u64 = 1 << 20;
const SERVER_V4: &str = "198.51.100.2";
const SERVER_V6: &str = "2001:db8:100::2";
const SERVER_PORT: u16 = 8080;
const PREFIX: &str = "hacq";
const RUN: &str = "/run/hacq";

static LAB_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Lab;

impl Lab {
    fn up() -> Lab {
        let _ = sh(&["down"], 60);
        let out = sh(&["up"], 150);
        assert!(
            out.status.success(),
            "lab.sh up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = sh(&["down"], 60);
        if !out.status.success() {
            eprintln!("lab.sh down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn ns(which: &str) -> String {
    format!("{PREFIX}-{which}")
}

/// `lab.sh ARGS…` under the `hacq` prefix with LAB_ANNOUNCE=1, bounded by `limit` s.
fn sh(args: &[&str], limit: u64) -> Output {
    let mut cmd = lab_command(PREFIX, Path::new(RUN), args, limit);
    cmd.env("LAB_ANNOUNCE", "1");
    cmd.output().expect("run deploy/lab.sh")
}

fn run_ok(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The client accepts two announcements and opens up to two extra subflows.
fn accept_two_announcements(client: &str) {
    run_ok(&[
        "ip",
        "-n",
        client,
        "mptcp",
        "limits",
        "set",
        "subflow",
        "2",
        "add_addr_accepted",
        "2",
    ]);
}

/// A `/proc/net/netstat` MPTcpExt counter in the client namespace.
fn mib(name: &str) -> u64 {
    netstat("MPTcpExt:", name)
}

/// A `/proc/net/netstat` counter of group `group` (`"TcpExt:"`, `"MPTcpExt:"`) in
/// the client namespace.
fn netstat(group: &str, name: &str) -> u64 {
    common::proc_net_counter(&ns("client"), "netstat", group, name)
}

/// Stops hacd (SIGTERM) and returns the counters its workers log on the way out.
fn stop_hacd_counters() -> Vec<(String, u64)> {
    let run = PathBuf::from(RUN);
    let pid = std::fs::read_to_string(run.join("hacd.pid")).expect("hacd.pid");
    let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
    let mut log = String::new();
    wait_for(Duration::from_secs(8), || {
        log = std::fs::read_to_string(run.join("hacd.log")).unwrap_or_default();
        log.contains("worker stopped")
    });
    log.lines()
        .filter(|l| l.contains("engine counters"))
        .flat_map(str::split_whitespace)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn counter(fields: &[(String, u64)], name: &str) -> u64 {
    fields
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .sum()
}

fn peers(tag: &str) -> Peers {
    let binds = [SERVER_V4.parse().unwrap(), SERVER_V6.parse().unwrap()];
    Peers::new(tag, &ns("client"), &ns("server"), &binds, SERVER_PORT).expect("test server")
}

fn check_transfer(peers: &Peers, res: &ClientResult, up: u64, down: u64) {
    assert_eq!(res.convert, ConvertOutcome::Ok, "{res:?}");
    let srv = peers
        .server()
        .wait_record(&res.id, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no server record: {res:?}\n{:?}", peers.server().log()));
    res.check_transfer(&srv, up, down)
        .unwrap_or_else(|e| panic!("{e}: {res:?}"));
    assert_eq!(res.fallback, Some(false), "fell back to TCP: {res:?}");
}

/// (destination, initial converter address, announced address, its Address ID).
fn dests() -> [(SocketAddr, &'static str, &'static str, u8); 2] {
    [
        (
            SocketAddr::new(SERVER_V4.parse().unwrap(), SERVER_PORT),
            "192.0.2.1",
            "192.0.2.2",
            1,
        ),
        (
            SocketAddr::new(SERVER_V6.parse().unwrap(), SERVER_PORT),
            "2001:db8:ffff::1",
            "2001:db8:ffff::2",
            2,
        ),
    ]
}

#[test]
fn announce_lab_client_joins_the_announced_address() {
    if skip_unless_root("announce_lab_client_joins_the_announced_address") {
        return;
    }
    let _lock = LAB_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _lab = Lab::up();
    let client = ns("client");
    accept_two_announcements(&client);
    // The path manager's events (ANNOUNCED, SF_ESTABLISHED with addresses), all
    // through the test.
    let mon_path = PathBuf::from(RUN).join("mptcp-monitor.log");
    let mon_file = std::fs::File::create(&mon_path).expect("monitor log");
    let mut monitor = Command::new("ip")
        .args(["-n", &client, "mptcp", "monitor"])
        .stdout(Stdio::from(mon_file))
        .stderr(Stdio::null())
        .spawn()
        .expect("ip mptcp monitor");
    std::thread::sleep(Duration::from_millis(300));
    let peers = peers("ann");
    let mut results = Vec::new();
    for (dest, initial, announced, id) in dests() {
        let add0 = mib("AddAddr");
        let size = 4 * MB;
        let spec = ClientSpec::convert(dest)
            .request_in_syn(true)
            .late_shutdown(true)
            .down(size)
            .timeout(Duration::from_secs(60));
        let res = peers.run_client(&spec).expect("client");
        check_transfer(&peers, &res, 0, size);
        let add = mib("AddAddr") - add0;
        results.push((dest, initial, announced, id, add));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = monitor.kill();
    let _ = monitor.wait();
    let mon = std::fs::read_to_string(&mon_path).unwrap_or_default();
    eprintln!("ip mptcp monitor:\n{mon}");
    let fields = stop_hacd_counters();
    eprintln!("hacd: {fields:?}");
    for (dest, initial, announced, id, add) in &results {
        // Linux counts an ADD_ADDR as received only when its HMAC verifies.
        assert!(
            *add >= 1,
            "{dest}: no valid ADD_ADDR reached the client (MPTcpExt AddAddr)"
        );
        let sf = |addr: &str| {
            mon.lines().find(|l| {
                l.contains("SF_ESTABLISHED")
                    && (l.contains(&format!("daddr4={addr} "))
                        || l.contains(&format!("daddr6={addr} ")))
            })
        };
        let joined = sf(announced)
            .unwrap_or_else(|| panic!("{dest}: no subflow to the announced {announced}:\n{mon}"));
        // Our join SYN-ACK names the address by its announced ID (RFC 8684 §3.2).
        assert!(
            joined.contains(&format!("remid={id} ")),
            "{dest}: joined subflow without remote ID {id}: {joined}"
        );
        assert!(
            sf(initial).is_none(),
            "{dest}: a subflow joined the initial {initial} despite flag C:\n{mon}"
        );
    }
    assert!(counter(&fields, "joins_accepted") >= 2, "{fields:?}");
    assert_eq!(counter(&fields, "joins_refused"), 0, "{fields:?}");
    let (sent, echoed) = (
        counter(&fields, "add_addr_sent"),
        counter(&fields, "add_addr_echoed"),
    );
    assert!(
        echoed >= 2 && echoed <= sent,
        "sent {sent}, echoed {echoed}"
    );
}

#[test]
fn announce_lab_checksums_end_to_end() {
    if skip_unless_root("announce_lab_checksums_end_to_end") {
        return;
    }
    let fields = checksum_transfers(None);
    // Mappings of up to 64 KB: 8 MB upstream is well over a hundred of them.
    assert!(counter(&fields, "dss_checksum_ok") >= 100, "{fields:?}");
    // Without loss every mapping is verified (none has a hole in it).
    assert_eq!(counter(&fields, "dss_checksum_unverified"), 0, "{fields:?}");
    assert_eq!(counter(&fields, "dss_checksum_failed"), 0, "{fields:?}");
    assert_eq!(counter(&fields, "mp_fail_sent"), 0, "{fields:?}");
}

/// The same with 1 % loss each way on both access links: uploads lose segments
/// on one subflow while the other carries on, and the hole is repaired by fast
/// retransmission on our per-subflow SACK (an upload used to stall here, in CI).
/// A mapping is left unverified only in rare cases (docs/plan.md item 7).
#[test]
fn announce_lab_checksums_with_loss() {
    if skip_unless_root("announce_lab_checksums_with_loss") {
        return;
    }
    let (fields, retried) = checksum_transfers_counting(Some("1"));
    assert!(counter(&fields, "repairs") > 0, "no loss seen: {fields:?}");
    assert!(counter(&fields, "dss_checksum_ok") >= 10, "{fields:?}");
    // A mapping stays unverified only when its subflow has more unsettled
    // mappings, or it more holes, than are tracked: 0–3 of ~170 in local runs.
    assert!(
        counter(&fields, "dss_checksum_unverified") * 10 <= counter(&fields, "dss_checksum_ok"),
        "{fields:?}"
    );
    assert_eq!(counter(&fields, "dss_checksum_failed"), 0, "{fields:?}");
    // An attempt run again (its TFO SYN was retransmitted, see `checksum_transfers`)
    // once also exchanged MP_FAIL: the client's, answered by ours (docs/plan.md,
    // open). Only those attempts may.
    assert!(
        counter(&fields, "mp_fail_sent") <= retried,
        "{retried} attempt(s) run again: {fields:?}"
    );
}

/// 4 MB up and down, v4 then v6, with DSS checksums on in the client namespace
/// and `loss_pct` loss on both access links; hacd's counters at the end.
fn checksum_transfers(loss_pct: Option<&str>) -> Vec<(String, u64)> {
    checksum_transfers_counting(loss_pct).0
}

/// As [`checksum_transfers`], with the number of attempts run again.
fn checksum_transfers_counting(loss_pct: Option<&str>) -> (Vec<(String, u64)>, u64) {
    let _lock = LAB_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _lab = Lab::up();
    let client = ns("client");
    run_ok(&[
        "ip",
        "netns",
        "exec",
        &client,
        "sysctl",
        "-qw",
        "net.mptcp.checksum_enabled=1",
    ]);
    if let Some(loss) = loss_pct {
        for link in ["dsl", "lte"] {
            let out = sh(&["shape", link, "50", "5", loss], 30);
            assert!(
                out.status.success(),
                "lab.sh shape {link}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    accept_two_announcements(&client);
    let peers = peers("csum");
    let mut retried = 0;
    for (dest, ..) in dests() {
        let size = 4 * MB;
        let spec = ClientSpec::convert(dest)
            .request_in_syn(true)
            .late_shutdown(true)
            .up(size)
            .down(size)
            .timeout(Duration::from_secs(90));
        // Loss may hit the handshake. When Linux (6.18) retransmits its TFO SYN it
        // sends it without the data, and when our SYN-ACK then acknowledges the
        // data of the first SYN it never sends its MP_CAPABLE ACK (it puts it on
        // the segment at its last SYN's end sequence, `subflow->snd_isn`, which
        // the acknowledged data has moved past; seen in captures), so the
        // connection falls back to TCP without the client's key: Linux's
        // behaviour (docs/plan.md), not what this test is about. Such an attempt
        // is run again (at 1 % loss each way, about one in 25 is).
        let mut tries = 0;
        let res = loop {
            tries += 1;
            let syn0 = netstat("TcpExt:", "TCPSynRetrans");
            let res = peers.run_client(&spec).expect("client");
            let syn_lost = netstat("TcpExt:", "TCPSynRetrans") > syn0;
            if syn_lost && res.fallback != Some(false) && tries < 4 {
                eprintln!("{dest}: the client retransmitted its SYN and fell back; again");
                retried += 1;
                continue;
            }
            break res;
        };
        check_transfer(&peers, &res, size, size);
    }
    let fields = stop_hacd_counters();
    eprintln!("hacd: {fields:?}");
    (fields, retried)
}
