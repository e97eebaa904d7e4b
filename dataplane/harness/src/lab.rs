//! Network namespaces, TUN devices and the test server.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{ClientHandle, ClientResult, ClientSpec, ServerRecord};
use crate::pcap::PcapWriter;
use crate::pump::{self, Pcaps, PumpStats, Translator};
use crate::server::TestServer;
use crate::util::{run_checked, run_output};
use crate::{
    CLIENT_V4, CLIENT_V6, CONVERTER_V4, CONVERTER_V6, POOL_V4, POOL_V4_PREFIX, POOL_V6,
    POOL_V6_PREFIX, SERVER_PORT, SERVER_V4, SERVER_V6, TUN_MTU,
};

/// Prefix of every namespace (and TUN device) the harness creates.
const PREFIX: &str = "hact";
/// Name of the TUN device inside each namespace.
pub(crate) const TUN_IN_NS: &str = "hact0";
/// Bound for each `ip`/`sh` helper command.
const CMD_TIMEOUT: Duration = Duration::from_secs(15);

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// One of the two namespaces of a [`Lab`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ns {
    /// The client namespace (Access side).
    Client,
    /// The server namespace (Core side).
    Server,
}

/// Returns `true` (after printing why) when the lab cannot run here: not root,
/// no `/dev/net/tun`, or no `ip` binary. Use at the top of a test:
///
/// ```no_run
/// if hac_harness::skip_unless_root("my_test") { return; }
/// ```
#[must_use]
pub fn skip_unless_root(test: &str) -> bool {
    let why = if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        Some("not running as root (namespaces and TUN devices need CAP_NET_ADMIN)")
    } else if !Path::new("/dev/net/tun").exists() {
        Some("/dev/net/tun is missing")
    } else if run_output(Command::new("ip").arg("-V"), CMD_TIMEOUT).is_err() {
        Some("`ip` (iproute2) is not installed")
    } else {
        None
    };
    match why {
        Some(w) => {
            eprintln!("SKIPPED {test}: {w}");
            true
        }
        None => false,
    }
}

/// A client namespace and a server namespace joined by two TUN devices held by
/// this process, plus the test server. See the crate docs for the topology.
///
/// Dropping it (also during a panic) kills the server, closes the TUN devices
/// and deletes both namespaces.
#[derive(Debug)]
pub struct Lab {
    id: String,
    client_ns: String,
    server_ns: String,
    created_ns: Vec<String>,
    access: Option<Tun>,
    core: Option<Tun>,
    server: Option<TestServer>,
    epoch: Instant,
    python: String,
    scripts: PathBuf,
    next_client: AtomicU64,
    runs: AtomicU64,
    last_stats: Mutex<Option<PumpStats>>,
    pcap_dir: Option<PathBuf>,
}

/// A TUN device (packet information header off) whose descriptor this process
/// holds.
pub(crate) struct Tun(pub(crate) tun::Device);

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tun")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ip(args: &[&str]) -> io::Result<()> {
    run_checked("ip", args, CMD_TIMEOUT).map(|_| ())
}

fn sanitize(tag: &str) -> String {
    let s: String = tag
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    if s.is_empty() { "lab".into() } else { s }
}

/// Deletes namespaces left behind by harness processes that no longer exist
/// (e.g. killed with SIGKILL, so no `Drop` ran). Names are
/// `hact-<tag>-<pid>-<n>-<role>`.
fn cleanup_stale() {
    let Ok(out) = run_checked("ip", &["netns", "list"], CMD_TIMEOUT) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let parts: Vec<&str> = name.split('-').collect();
        if parts.len() != 5 || parts[0] != PREFIX {
            continue;
        }
        let Ok(pid) = parts[2].parse::<u32>() else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn tun_error(e: tun::Error) -> io::Error {
    match e {
        tun::Error::Io(e) => e,
        e => io::Error::other(e.to_string()),
    }
}

impl Lab {
    /// Builds the lab: namespaces `hact-<tag>-<pid>-<n>-cli` / `-srv`, one TUN
    /// each (named `hact0` inside), addresses, routes, sysctls, and the server
    /// script listening on [`SERVER_V4`] and [`SERVER_V6`] port [`SERVER_PORT`].
    /// Takes ~100 ms plus the Python start-up.
    ///
    /// # Errors
    /// Not root, a missing tool, or any setup step failing (everything created
    /// so far is removed again).
    pub fn new(tag: &str) -> io::Result<Lab> {
        if std::fs::metadata("/proc/self")?.uid() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "hac-harness needs root",
            ));
        }
        cleanup_stale();
        let pid = std::process::id();
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{PREFIX}-{}-{pid}-{n}", sanitize(tag));
        let mut lab = Lab {
            client_ns: format!("{id}-cli"),
            server_ns: format!("{id}-srv"),
            id,
            created_ns: Vec::new(),
            access: None,
            core: None,
            server: None,
            epoch: Instant::now(),
            python: std::env::var("HAC_HARNESS_PYTHON").unwrap_or_else(|_| "python3".into()),
            scripts: Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts"),
            next_client: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            last_stats: Mutex::new(None),
            pcap_dir: std::env::var_os("HAC_HARNESS_PCAP_DIR").map(PathBuf::from),
        };
        // On error `lab` is dropped here, which removes what was created.
        lab.setup(pid, n)?;
        Ok(lab)
    }

    fn setup(&mut self, pid: u32, n: u32) -> io::Result<()> {
        for ns in [self.client_ns.clone(), self.server_ns.clone()] {
            ip(&["netns", "add", &ns])?;
            self.created_ns.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        // Root-namespace names must be unique host-wide: pid (≤ 7 hex digits) and
        // a counter; at most 15 characters.
        let a_name = format!("{PREFIX}{pid:x}{:03x}a", n & 0xfff);
        let c_name = format!("{PREFIX}{pid:x}{:03x}c", n & 0xfff);
        let access = self.make_tun(&a_name, &self.client_ns.clone())?;
        self.access = Some(access);
        let core = self.make_tun(&c_name, &self.server_ns.clone())?;
        self.core = Some(core);

        let cns = self.client_ns.clone();
        let sns = self.server_ns.clone();
        ip(&[
            "-n",
            &cns,
            "addr",
            "add",
            &format!("{CLIENT_V4}/24"),
            "dev",
            TUN_IN_NS,
        ])?;
        ip(&[
            "-n",
            &cns,
            "addr",
            "add",
            &format!("{CLIENT_V6}/64"),
            "dev",
            TUN_IN_NS,
            "nodad",
        ])?;
        ip(&[
            "-n",
            &cns,
            "route",
            "add",
            &format!("{CONVERTER_V4}/32"),
            "dev",
            TUN_IN_NS,
        ])?;
        ip(&[
            "-n",
            &cns,
            "-6",
            "route",
            "add",
            &format!("{CONVERTER_V6}/128"),
            "dev",
            TUN_IN_NS,
        ])?;
        self.sysctl(Ns::Client, "net/mptcp/enabled", "1")?;

        ip(&[
            "-n",
            &sns,
            "addr",
            "add",
            &format!("{SERVER_V4}/24"),
            "dev",
            TUN_IN_NS,
        ])?;
        ip(&[
            "-n",
            &sns,
            "addr",
            "add",
            &format!("{SERVER_V6}/64"),
            "dev",
            TUN_IN_NS,
            "nodad",
        ])?;
        ip(&[
            "-n",
            &sns,
            "route",
            "add",
            &format!("{POOL_V4}/{POOL_V4_PREFIX}"),
            "dev",
            TUN_IN_NS,
        ])?;
        ip(&[
            "-n",
            &sns,
            "-6",
            "route",
            "add",
            &format!("{POOL_V6}/{POOL_V6_PREFIX}"),
            "dev",
            TUN_IN_NS,
        ])?;
        self.start_server()
    }

    /// Creates a TUN device in the root namespace (this process keeps its file
    /// descriptor), moves it into `ns`, renames it to `hact0`, brings it up.
    fn make_tun(&self, name: &str, ns: &str) -> io::Result<Tun> {
        let mut cfg = tun::Configuration::default();
        cfg.tun_name(name).mtu(TUN_MTU).platform_config(|p| {
            // Configure nothing in the root namespace: all addressing is done
            // inside the target namespace with `ip`.
            p.ensure_root_privileges(false);
        });
        let dev = tun::create(&cfg).map_err(tun_error)?;
        // From here on, dropping `dev` on error deletes the device.
        ip(&["link", "set", "dev", name, "netns", ns])?;
        ip(&["-n", ns, "link", "set", "dev", name, "name", TUN_IN_NS])?;
        // No link-local address: keeps router solicitations and MLD off the TUN.
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            "dev",
            TUN_IN_NS,
            "addrgenmode",
            "none",
        ])?;
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            "dev",
            TUN_IN_NS,
            "mtu",
            &TUN_MTU.to_string(),
            "up",
        ])?;
        Ok(Tun(dev))
    }

    fn start_server(&mut self) -> io::Result<()> {
        self.restart_server(&[])
    }

    /// Replaces the test server with one started with further script
    /// arguments, e.g. `--mptcp` (an `IPPROTO_MPTCP` listener).
    ///
    /// # Errors
    /// The new server could not be started.
    pub fn restart_server(&mut self, extra: &[&str]) -> io::Result<()> {
        // The old one goes first: the new one binds the same port.
        self.server = None;
        let script = self.scripts.join("server.py");
        let binds = [SERVER_V4.to_string(), SERVER_V6.to_string()];
        self.server = Some(TestServer::start_with(
            &self.server_ns,
            &self.python,
            &script,
            &binds,
            SERVER_PORT,
            extra,
        )?);
        Ok(())
    }

    /// Unique id of this lab (`hact-<tag>-<pid>-<n>`).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Name of a namespace, e.g. for `ip netns exec`.
    #[must_use]
    pub fn ns_name(&self, ns: Ns) -> &str {
        match ns {
            Ns::Client => &self.client_ns,
            Ns::Server => &self.server_ns,
        }
    }

    /// Microseconds since the lab was created: the clock given to the
    /// [`Translator`].
    #[must_use]
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Writes `/proc/sys/<key>` (slashes, e.g. `net/ipv4/tcp_fastopen`) inside
    /// namespace `ns`.
    ///
    /// # Errors
    /// The write failed.
    pub fn sysctl(&self, ns: Ns, key: &str, value: &str) -> io::Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.exec(
            ns,
            &[
                "sh",
                "-c",
                "printf '%s\\n' \"$2\" > \"$1\"",
                "sh",
                &path,
                value,
            ],
        )
        .and_then(|o| {
            if o.status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "sysctl {key}={value}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )))
            }
        })
    }

    /// Runs `args` inside namespace `ns` (`ip netns exec`), at most 15 s.
    ///
    /// # Errors
    /// The command could not be started.
    pub fn exec(&self, ns: Ns, args: &[&str]) -> io::Result<Output> {
        run_output(
            Command::new("ip")
                .args(["netns", "exec", self.ns_name(ns)])
                .args(args),
            CMD_TIMEOUT,
        )
    }

    /// The `MPTcpExt*` counters of namespace `ns` (`nstat -asz`), e.g. to see
    /// why a connection fell back (`MPCapableFallbackACK`, `NoDSSInWindow`, …).
    ///
    /// # Errors
    /// `nstat` failed.
    pub fn mptcp_counters(&self, ns: Ns) -> io::Result<Vec<(String, u64)>> {
        let o = self.exec(ns, &["nstat", "-asz"])?;
        if !o.status.success() {
            return Err(io::Error::other(
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let k = it.next()?;
                let v = it.next()?.parse().ok()?;
                k.starts_with("MPTcpExt").then(|| (k.to_owned(), v))
            })
            .collect())
    }

    /// Starts the client script in the client namespace. Runs without a
    /// translator only if one is pumping ([`Lab::run_with`]).
    ///
    /// # Errors
    /// The process could not be started.
    pub fn spawn_client(&self, spec: &ClientSpec) -> io::Result<ClientHandle> {
        let n = self.next_client.fetch_add(1, Ordering::Relaxed);
        ClientHandle::spawn(
            &self.client_ns,
            &self.python,
            &self.scripts.join("client.py"),
            spec,
            format!("{}-c{n}", self.id),
        )
    }

    /// [`Lab::spawn_client`] then [`ClientHandle::wait`].
    ///
    /// # Errors
    /// The process could not be started or waited for.
    pub fn run_client(&self, spec: &ClientSpec) -> io::Result<ClientResult> {
        self.spawn_client(spec)?.wait()
    }

    /// All connection records the server printed so far.
    #[must_use]
    pub fn server_records(&self) -> Vec<ServerRecord> {
        self.server
            .as_ref()
            .map(TestServer::records)
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for the server's record of the connection whose
    /// command line carried `id` (see [`ClientResult::id`]).
    #[must_use]
    pub fn wait_server_record(&self, id: &str, timeout: Duration) -> Option<ServerRecord> {
        self.server.as_ref()?.wait_record(id, timeout)
    }

    /// Lines the server printed that are not connection records (stderr too).
    #[must_use]
    pub fn server_log(&self) -> Vec<String> {
        self.server
            .as_ref()
            .map(TestServer::log)
            .unwrap_or_default()
    }

    /// Counters of the last finished [`Lab::run_with`].
    #[must_use]
    pub fn last_pump_stats(&self) -> Option<PumpStats> {
        *lock(&self.last_stats)
    }

    /// Runs `translator` on the packet pump (one reader thread per TUN, one
    /// pump thread calling the translator) while `f` runs on this thread;
    /// then stops the pump and returns `f`'s result and the translator.
    /// Packets arriving when no pump runs wait in the kernel's TUN queue
    /// (up to 500) and are then dropped.
    ///
    /// # Panics
    /// Propagates a panic of `f` or of the translator (after stopping the
    /// pump).
    pub fn run_with<T, R>(&self, translator: T, f: impl FnOnce(&Lab) -> R) -> (R, T)
    where
        T: Translator + Send,
    {
        let (Some(access), Some(core)) = (self.access.as_ref(), self.core.as_ref()) else {
            unreachable!("a constructed Lab has both TUN devices");
        };
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let pcaps = self.pcap_dir.as_ref().and_then(|dir| {
            let mk = |side: &str| {
                PcapWriter::create(&dir.join(format!("{}-{run}-{side}.pcap", self.id)))
            };
            match (mk("access"), mk("core")) {
                (Ok(access), Ok(core)) => Some(Pcaps { access, core }),
                (a, c) => {
                    eprintln!(
                        "hac-harness: cannot write pcaps in {}: {:?} {:?}",
                        dir.display(),
                        a.err(),
                        c.err()
                    );
                    None
                }
            }
        });
        let (r, t, stats) = pump::run(&access.0, &core.0, self.epoch, translator, pcaps, || {
            f(self)
        });
        eprintln!("hac-harness {} run {run}: {stats:?}", self.id);
        *lock(&self.last_stats) = Some(stats);
        (r, t)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = self.server_log();
            if !log.is_empty() {
                eprintln!("hac-harness {}: server log:\n{}", self.id, log.join("\n"));
            }
        }
        drop(self.server.take());
        // Closing the descriptors deletes the (non-persistent) TUN devices.
        drop(self.access.take());
        drop(self.core.take());
        for ns in self.created_ns.drain(..) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("hac-harness: cannot delete netns {ns}: {e}");
            }
        }
    }
}
