//! Helpers shared by hacd's lab tests (`mod common;` in each test crate; a test
//! crate uses only some of them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The link emulator: `LINKEMU`, else the release build beside this target dir.
pub fn linkemu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LINKEMU") {
        return Some(PathBuf::from(p));
    }
    let hacd = Path::new(env!("CARGO_BIN_EXE_hacd"));
    let p = hacd.parent()?.parent()?.join("release/hac-linkemu");
    p.exists().then_some(p)
}

/// Polls `f` every 20 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// `deploy/lab.sh ARGS…` for a lab under `prefix` with its state in `run`, bounded by
/// `limit` seconds (`timeout -k 5`): one worker, this build's hacd, the link emulator
/// when built, and none of the caller's own `LAB_*` / `NOTIFY_SOCKET` settings (a
/// test's lab is what the test says). Callers add their own variables and run it.
pub fn lab_command(prefix: &str, run: &Path, args: &[&str], limit: u64) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &limit.to_string(), "bash"])
        .arg(repo().join("deploy/lab.sh"))
        .args(args)
        .current_dir(repo())
        .env("LAB_PREFIX", prefix)
        .env("LAB_RUN", run)
        .env("LAB_WORKERS", "1")
        .env("HACD", env!("CARGO_BIN_EXE_hacd"));
    for k in [
        "LAB_SCHEDULER",
        "LAB_MULTIPATH",
        "LAB_KERNEL_ROUTER",
        "LAB_KERNEL_PROXY",
        "LAB_KERNEL_E2E",
        "NOTIFY_SOCKET",
    ] {
        cmd.env_remove(k);
    }
    if let Some(l) = linkemu() {
        cmd.env("LINKEMU", l);
    }
    cmd
}

/// A counter of `/proc/net/<file>` (`snmp`, `netstat`) in network namespace `ns`,
/// e.g. ("snmp", "Tcp:", "InSegs") or ("netstat", "MPTcpExt:", "MPJoinSynAckRx");
/// 0 when absent.
pub fn proc_net_counter(ns: &str, file: &str, group: &str, name: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", &format!("/proc/net/{file}")])
        .output()
        .expect("read /proc/net counters");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [keys, vals] = pair else { continue };
        if !keys.starts_with(group) {
            continue;
        }
        for (k, v) in keys.split_whitespace().zip(vals.split_whitespace()) {
            if k == name {
                return v.parse().unwrap_or(0);
            }
        }
    }
    0
}
