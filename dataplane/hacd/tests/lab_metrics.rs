//! Observability end to end (issue 6) through real DPDK: `deploy/lab.sh up` with this
//! `hacd` (metrics on the loopback of the conc namespace, allocation log in the lab's
//! state directory), started with `$NOTIFY_SOCKET` as systemd would.
//!
//! `metrics_lab_prometheus`: hacd says READY=1 on the notification socket;
//! `lab.sh metrics` prints a scrape; a real Prometheus server (Debian's `prometheus`)
//! runs in the conc namespace and scrapes hacd every second; after three converted
//! transfers of known size through the lab and one Convert request refused by policy,
//! the counters read back through Prometheus' HTTP API (`/api/v1/query`) match: the
//! connections created and established, the refusal and its Convert error code, and
//! the bytes and frames of the core port equal, within a few background frames, what
//! the server namespace's interface counted. The allocation log has an allocation
//! record for the block of the port the server saw; on SIGTERM hacd says STOPPING=1
//! and closes every record with a release.
//!
//! Needs root (CI runs as root) and `prometheus` (deploy/setup.sh installs it);
//! skipped otherwise. The lab runs under its own `LAB_PREFIX` (`hacp…`) / `LAB_RUN`.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hac_harness::{ClientSpec, ConvertOutcome, Peers, skip_unless_root};
use serde_json::Value;

mod common;
use common::lab_command;

const SERVER_V4: &str = "198.51.100.2";
const SERVER_PORT: u16 = 8080;
const METRICS: &str = "127.0.0.1:9469";
const PROMETHEUS: &str = "127.0.0.1:19090";

/// One lab instance under a prefix of its own; `lab.sh down` on drop.
struct Lab {
    prefix: String,
    notify: PathBuf,
}

impl Lab {
    fn sh(&self, args: &[&str], limit: u64, notify: bool) -> Output {
        let mut cmd = lab_command(&self.prefix, &self.run_dir(), args, limit);
        cmd.env("LAB_METRICS", METRICS);
        if notify {
            // hacd inherits it from lab.sh, as from systemd.
            cmd.env("NOTIFY_SOCKET", &self.notify);
        }
        cmd.output().expect("run deploy/lab.sh")
    }

    fn ns(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }

    fn run_dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/{}-lab", self.prefix))
    }

    /// Interface counters of `dev` in namespace `ns`: (rx bytes, rx packets, tx
    /// bytes, tx packets).
    fn link_stats(&self, ns: &str, dev: &str) -> [u64; 4] {
        let out = Command::new("ip")
            .args(["-n", &self.ns(ns), "-s", "-j", "link", "show", "dev", dev])
            .output()
            .expect("ip -s link");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let s = if v[0]["stats64"].is_object() {
            &v[0]["stats64"]
        } else {
            &v[0]["stats"]
        };
        let n = |dir: &str, k: &str| {
            s[dir][k]
                .as_u64()
                .unwrap_or_else(|| panic!("no {dir}.{k} for {dev}: {v}"))
        };
        [
            n("rx", "bytes"),
            n("rx", "packets"),
            n("tx", "bytes"),
            n("tx", "packets"),
        ]
    }

    /// `GET url` from inside the conc namespace (where hacd and Prometheus listen).
    fn get(&self, url: &str) -> Option<String> {
        let out = Command::new("timeout")
            .args([
                "-k",
                "2",
                "15",
                "ip",
                "netns",
                "exec",
                &self.ns("conc"),
                "python3",
                "-c",
            ])
            .arg(
                "import sys, urllib.request\n\
                 with urllib.request.urlopen(sys.argv[1], timeout=10) as r:\n    \
                 sys.stdout.write(r.read().decode())\n",
            )
            .arg(url)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.sh(&["down"], 60, false);
        if !out.status.success() {
            eprintln!("lab.sh down: {}", String::from_utf8_lossy(&out.stderr));
        }
        let _ = std::fs::remove_file(&self.notify);
    }
}

/// The Prometheus server in the conc namespace; killed on drop.
struct Prometheus {
    child: Child,
}

impl Prometheus {
    fn start(lab: &Lab) -> Prometheus {
        let dir = lab.run_dir().join("prometheus");
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: hacd\n    static_configs:\n      \
                 - targets: ['{METRICS}']\n"
            ),
        )
        .expect("prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        // Bounded in time even if this test dies before its drop runs.
        let child = Command::new("timeout")
            .args([
                "-k",
                "5",
                "300",
                "ip",
                "netns",
                "exec",
                &lab.ns("conc"),
                "prometheus",
            ])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .args(["--storage.tsdb.retention.time=1h", "--log.level=warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus { child }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // `timeout` forwards SIGTERM to prometheus.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One instant-query result: (sample time, value), None when the query has no
/// result (yet).
fn query(lab: &Lab, promql: &str) -> Option<(f64, f64)> {
    let mut url = format!("http://{PROMETHEUS}/api/v1/query?query=");
    for b in promql.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    let body = lab.get(&url)?;
    let v: Value = serde_json::from_str(&body).ok()?;
    assert_eq!(v["status"], "success", "{promql}: {v}");
    let r = v["data"]["result"].as_array()?.first()?;
    let t = r["value"][0].as_f64()?;
    let x = r["value"][1].as_str()?.parse().ok()?;
    Some((t, x))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The value of `promql` in a scrape taken after now (so it covers everything that
/// happened before this call). The query's `timestamp()` is the scrape time.
fn scraped_after_now(lab: &Lab, promql: &str) -> f64 {
    let asked = unix_now();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let scraped = query(lab, &format!("timestamp({promql})")).map(|(_, t)| t);
        if scraped.is_some_and(|t| t > asked + 0.05)
            && let Some((_, v)) = query(lab, promql)
        {
            return v;
        }
        assert!(
            Instant::now() < end,
            "Prometheus has no scrape of `{promql}` newer than {asked}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The counters this test compares, read through Prometheus.
#[derive(Debug, Clone, Copy)]
struct Reading {
    core_rx_bytes: f64,
    core_rx_packets: f64,
    core_tx_bytes: f64,
    core_tx_packets: f64,
    created: f64,
    established: f64,
    refused: f64,
    error_32: f64,
    /// The server namespace's core0: rx bytes, rx packets, tx bytes, tx packets.
    kernel: [u64; 4],
}

fn read(lab: &Lab) -> Reading {
    let kernel = lab.link_stats("server", "core0");
    let q = |s: &str| scraped_after_now(lab, s);
    Reading {
        core_rx_bytes: q(r#"hac_port_bytes_total{port="core",direction="rx"}"#),
        core_rx_packets: q(r#"hac_port_packets_total{port="core",direction="rx"}"#),
        core_tx_bytes: q(r#"hac_port_bytes_total{port="core",direction="tx"}"#),
        core_tx_packets: q(r#"hac_port_packets_total{port="core",direction="tx"}"#),
        created: q("hac_connections_created_total"),
        established: q("hac_connections_established_total"),
        refused: q(r#"hac_connections_failed_total{reason="refused"}"#),
        error_32: q(r#"hac_convert_errors_total{code="32"}"#),
        kernel,
    }
}

/// Receives one notification datagram (bounded wait).
fn notification(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a notification from hacd");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn metrics_lab_prometheus() {
    if skip_unless_root("metrics_lab_prometheus") {
        return;
    }
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED metrics_lab_prometheus: `prometheus` is not installed (deploy/setup.sh)"
        );
        return;
    }
    let prefix = format!("hacp{}", std::process::id() % 1_000_000);
    let lab = Lab {
        notify: std::env::temp_dir().join(format!("{prefix}-notify.sock")),
        prefix,
    };
    let _ = lab.sh(&["down"], 60, false);
    let _ = std::fs::remove_file(&lab.notify);
    let sd = UnixDatagram::bind(&lab.notify).expect("notification socket");
    sd.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let out = lab.sh(&["up"], 150, true);
    assert!(
        out.status.success(),
        "lab.sh up failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // systemd readiness: sent once the ports are up and the workers run.
    assert_eq!(notification(&sd), "READY=1");

    // `lab.sh metrics`: one scrape, every port there.
    let out = lab.sh(&["metrics"], 30, false);
    let scrape = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lab.sh metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(scrape.contains("hac_build_info{version="), "{scrape}");
    for port in ["dsl", "lte", "core"] {
        assert!(
            scrape.contains(&format!(
                "hac_port_packets_total{{port=\"{port}\",direction=\"rx\"}}"
            )),
            "{port} missing:\n{scrape}"
        );
    }

    let prom = Prometheus::start(&lab);
    let end = Instant::now() + Duration::from_secs(60);
    while query(&lab, r#"up{job="hacd"}"#).map(|(_, v)| v) != Some(1.0) {
        assert!(
            Instant::now() < end,
            "Prometheus never scraped hacd: {}",
            std::fs::read_to_string(lab.run_dir().join("prometheus/prometheus.log"))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let binds: [IpAddr; 1] = [SERVER_V4.parse().unwrap()];
    let peers = Peers::new(
        "met",
        &lab.ns("client"),
        &lab.ns("server"),
        &binds,
        SERVER_PORT,
    )
    .expect("test server");
    let dest = SocketAddr::new(SERVER_V4.parse().unwrap(), SERVER_PORT);
    let before = read(&lab);

    // Three transfers of known size, one after the other.
    let (up, down) = (256 * 1024, 2 * 1024 * 1024);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let spec = ClientSpec::convert(dest)
            .up(up)
            .down(down)
            .timeout(Duration::from_secs(60));
        let res = peers.run_client(&spec).expect("client");
        assert_eq!(res.convert, ConvertOutcome::Ok, "{res:?}");
        let srv = peers
            .server()
            .wait_record(&res.id, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no server record: {res:?}"));
        res.check_transfer(&srv, up, down)
            .unwrap_or_else(|e| panic!("{e}"));
        seen.push((
            res.local.expect("client address"),
            srv.peer.expect("pool address"),
        ));
    }
    // One Convert request toward the converter's own service address: refused by
    // policy with error 32 (RFC 8803 §6.2.8, Not Authorized).
    let refused = peers
        .run_client(
            &ClientSpec::convert(SocketAddr::new("192.0.2.1".parse().unwrap(), 80))
                .timeout(Duration::from_secs(20)),
        )
        .expect("client");
    assert_eq!(refused.convert, ConvertOutcome::Error(32), "{refused:?}");
    // Let the connections finish closing on every side before the last reading.
    std::thread::sleep(Duration::from_secs(2));
    let after = read(&lab);
    eprintln!("metrics_lab_prometheus: before {before:?}\n after {after:?}");

    assert_eq!(after.created - before.created, 3.0, "connections created");
    assert_eq!(
        after.established - before.established,
        3.0,
        "connections established"
    );
    assert_eq!(after.refused - before.refused, 1.0, "refused requests");
    assert_eq!(after.error_32 - before.error_32, 1.0, "Convert errors 32");
    // The core port's frames are the server namespace's, seen from the other end of
    // the veth: hacd's rx is core0's tx and the other way round, up to a few
    // background frames (ARP/ND) between the two readings of each.
    let k = |i: usize| (after.kernel[i] - before.kernel[i]) as f64;
    let close = |what: &str, hacd: f64, kernel: f64, slack: f64| {
        assert!(
            (hacd - kernel).abs() <= slack,
            "{what}: hacd counted {hacd}, the server's interface {kernel}"
        );
    };
    let rx_bytes = after.core_rx_bytes - before.core_rx_bytes;
    let tx_bytes = after.core_tx_bytes - before.core_tx_bytes;
    close("core rx bytes", rx_bytes, k(2), 2048.0);
    close(
        "core rx frames",
        after.core_rx_packets - before.core_rx_packets,
        k(3),
        16.0,
    );
    close("core tx bytes", tx_bytes, k(0), 2048.0);
    close(
        "core tx frames",
        after.core_tx_packets - before.core_tx_packets,
        k(1),
        16.0,
    );
    // And they carried the payload: the downloads came in on core, the uploads
    // went out on it (plus headers: at most a tenth more).
    let (down_all, up_all) = (3.0 * down as f64, 3.0 * up as f64);
    assert!(
        rx_bytes >= down_all && rx_bytes <= down_all * 1.1 + 65536.0,
        "core rx {rx_bytes}"
    );
    assert!(
        tx_bytes >= up_all && tx_bytes <= up_all * 1.1 + 65536.0 + 0.05 * down_all,
        "core tx {tx_bytes}"
    );
    let busy = scraped_after_now(&lab, "sum(hac_worker_busy_seconds_total)");
    assert!(busy > 0.0, "busy seconds {busy}");
    let pool = scraped_after_now(&lab, r#"hac_pool_ports{family="ipv4"}"#);
    assert_eq!(
        pool,
        16.0 * 64512.0,
        "pool ports (lab: 203.0.113.0/28, 1024-65535)"
    );
    let logged = scraped_after_now(&lab, "hac_allocation_log_records_total");
    assert!(logged >= 1.0, "allocation records {logged}");
    drop(prom);

    // The allocation log: the block of every port the server saw, allocated to the
    // client's address.
    let log_path = lab.run_dir().join("allocations.log");
    let text = std::fs::read_to_string(&log_path).expect("allocation log");
    let covers = |line: &str, sub: IpAddr, ext: SocketAddr| -> bool {
        let field = |k: &str| line.split(' ').find_map(|f| f.strip_prefix(k));
        let Some((lo, hi)) = field("ports=").and_then(|p| p.split_once('-')) else {
            return false;
        };
        let (lo, hi): (u16, u16) = (lo.parse().unwrap_or(1), hi.parse().unwrap_or(0));
        field("subscriber=") == Some(&sub.to_string())
            && field("external=") == Some(&ext.ip().to_string())
            && (lo..=hi).contains(&ext.port())
    };
    for (client, pool) in &seen {
        assert!(
            text.lines()
                .any(|l| l.contains(" allocate ") && covers(l, client.ip(), *pool)),
            "no allocation record for {client} -> {pool}:\n{text}"
        );
    }
    assert!(
        !text.contains("198.51.100.2"),
        "a destination address in the log:\n{text}"
    );

    // SIGTERM (what systemd sends): STOPPING=1, and every block released in the log.
    let pid = std::fs::read_to_string(lab.run_dir().join("hacd.pid")).expect("hacd.pid");
    let pid = pid.trim().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(notification(&sd), "STOPPING=1");
    let end = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < end, "hacd did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&log_path).expect("allocation log");
    let count = |kind: &str| text.lines().filter(|l| l.contains(kind)).count();
    assert!(count(" allocate ") >= 1, "{text}");
    assert_eq!(
        count(" allocate "),
        count(" release "),
        "open records after stop:\n{text}"
    );
}
