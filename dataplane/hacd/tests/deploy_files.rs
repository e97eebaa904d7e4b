//! The files of `deploy/` an operator installs: the example configuration parses
//! with hacd's own parser (and through `hacd --check`), the systemd unit says what
//! the appliance needs, and the host set-up helper validates its arguments and, in
//! `--dry-run`, prints the `dpdk-hugepages.py` / `dpdk-devbind.py` commands it would
//! run. Nothing here touches the machine (no root, no NIC).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hac_hacd::config::{AllocationLog, Config, Role};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

#[test]
fn example_config_is_valid() {
    let path = deploy("hacd.example.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(c.ports.len(), 3);
    assert!(
        c.ports.iter().all(|p| !p.is_vdev()),
        "production ports are PCI devices"
    );
    assert_eq!(c.ports.iter().filter(|p| p.role == Role::Access).count(), 2);
    assert_eq!(c.lcores, [1, 2, 3, 4]);
    assert_eq!(
        c.metrics_listen,
        Some("[2001:db8:ff00::10]:9469".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(
        c.allocation_log,
        Some(AllocationLog::File("/var/log/hacd/allocations.log".into()))
    );
    assert_eq!(c.engine.pool.block_size, 512);
    let out = Command::new(env!("CARGO_BIN_EXE_hacd"))
        .args(["--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_unit_is_type_notify_with_memlock() {
    let text = std::fs::read_to_string(deploy("systemd/hacd.service")).unwrap();
    let keys: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let has = |k: &str, v: &str| keys.contains(&(k, v));
    assert!(has("Type", "notify"));
    assert!(has("Restart", "on-failure"));
    assert!(has("LimitMEMLOCK", "infinity"));
    assert!(has(
        "ExecStart",
        "/usr/local/sbin/hacd --config /etc/hacd/hacd.toml"
    ));
    // The unit lets hacd open the sockets it needs (af_packet ports, metrics, notify).
    let families = keys
        .iter()
        .find(|(k, _)| *k == "RestrictAddressFamilies")
        .map(|(_, v)| *v)
        .unwrap();
    for f in ["AF_UNIX", "AF_INET", "AF_INET6", "AF_PACKET"] {
        assert!(families.split(' ').any(|x| x == f), "{f} missing");
    }
    if let Ok(out) = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(deploy("systemd/hacd.service"))
        .output()
    {
        // Only the unit's own syntax matters here (the binary is not installed).
        let err = String::from_utf8_lossy(&out.stderr);
        for line in err.lines() {
            assert!(
                !line.contains("Unknown key") && !line.contains("Failed to parse"),
                "systemd-analyze: {line}"
            );
        }
    }
}

fn host_setup(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(deploy("host-setup.sh"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn host_setup_dry_run_prints_the_dpdk_commands() {
    let out = host_setup(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--hugepages") && help.contains("--bind") && help.contains("--dry-run"));

    let out = host_setup(&[
        "--dry-run",
        "--hugepages",
        "4G",
        "--pagesize",
        "1G",
        "--node",
        "0",
        "--bind",
        "3b:00.0,0000:3b:00.1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].ends_with("dpdk-hugepages.py --node 0 --pagesize 1G --reserve 4G"),
        "{stdout}"
    );
    assert!(lines.contains(&"+ modprobe vfio-pci"), "{stdout}");
    for d in ["0000:3b:00.0", "0000:3b:00.1"] {
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with(&format!("dpdk-devbind.py --bind=vfio-pci {d}"))),
            "{d}: {stdout}"
        );
    }
    assert!(
        lines.iter().all(|l| l.starts_with("+ ")),
        "dry run ran something: {stdout}"
    );

    // Bad input is refused with a message naming it, before anything runs.
    for (args, says) in [
        (
            &["--dry-run", "--bind", "eth0"][..],
            "'eth0' is not a PCI address",
        ),
        (&["--dry-run", "--hugepages", "lots"], "--hugepages 'lots'"),
        (
            &["--dry-run", "--bind", "3b:00.0", "--driver", "e1000"],
            "--driver 'e1000'",
        ),
        (&["--dry-run"], "nothing to do"),
        (&["--frobnicate"], "unknown argument '--frobnicate'"),
    ] {
        let out = host_setup(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
