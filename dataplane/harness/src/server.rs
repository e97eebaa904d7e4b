//! The test server process (`scripts/server.py`) in a network namespace, and a
//! view of externally built namespaces (e.g. `deploy/lab.sh`'s) for running the same
//! clients and server against the DPDK appliance.

use std::io::{self, BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crate::client::{ClientHandle, ClientResult, ClientSpec, ServerRecord};

/// How long the server may take to say it is ready.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
struct ServerState {
    ready: bool,
    exited: bool,
    records: Vec<ServerRecord>,
    log: Vec<String>,
}

type Shared = Arc<(Mutex<ServerState>, Condvar)>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running `server.py`; dropping it kills the process (it also exits when its
/// stdin closes, so it cannot outlive a killed test).
#[derive(Debug)]
pub struct TestServer {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    state: Shared,
}

impl TestServer {
    /// Starts `script` with `python` inside namespace `ns`, listening on `binds`
    /// (addresses) at `port`, and waits until it is ready.
    ///
    /// # Errors
    /// The process could not be started or did not become ready.
    pub fn start(
        ns: &str,
        python: &str,
        script: &Path,
        binds: &[String],
        port: u16,
    ) -> io::Result<TestServer> {
        Self::start_with(ns, python, script, binds, port, &[])
    }

    /// [`TestServer::start`] with further arguments for the script (e.g.
    /// `--cc cubic`: the accepted connections' congestion control).
    ///
    /// # Errors
    /// The process could not be started or did not become ready.
    pub fn start_with(
        ns: &str,
        python: &str,
        script: &Path,
        binds: &[String],
        port: u16,
        extra: &[&str],
    ) -> io::Result<TestServer> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, python, "-u"]).arg(script);
        for b in binds {
            cmd.args(["--bind", b]);
        }
        let mut child = cmd
            .args(["--port", &port.to_string()])
            .args(["--io-timeout", "30", "--lifetime", "3600"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let state: Shared = Arc::default();
        let st = Arc::clone(&state);
        if let Some(out) = stdout {
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let (m, cv) = &*st;
                    let mut g = lock(m);
                    if let Some(r) = ServerRecord::parse(&line) {
                        g.records.push(r);
                    } else if line.contains("\"ready\"") {
                        g.ready = true;
                    } else {
                        g.log.push(line);
                    }
                    cv.notify_all();
                }
                let (m, cv) = &*st;
                lock(m).exited = true;
                cv.notify_all();
            });
        }
        let st = Arc::clone(&state);
        if let Some(err) = stderr {
            thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    lock(&st.0).log.push(format!("stderr: {line}"));
                }
            });
        }
        let server = TestServer {
            child: Some(child),
            stdin,
            state,
        };
        let (m, cv) = &*server.state;
        let g = lock(m);
        let (g, _) = cv
            .wait_timeout_while(g, SERVER_READY_TIMEOUT, |s| !s.ready && !s.exited)
            .unwrap_or_else(PoisonError::into_inner);
        if g.ready {
            drop(g);
            return Ok(server);
        }
        drop(g);
        // Give stderr a moment to arrive for the message.
        thread::sleep(Duration::from_millis(100));
        Err(io::Error::other(format!(
            "test server did not start: {}",
            server.log().join("\n")
        )))
    }

    /// All connection records printed so far.
    #[must_use]
    pub fn records(&self) -> Vec<ServerRecord> {
        lock(&self.state.0).records.clone()
    }

    /// Waits up to `timeout` for the record of the connection whose command line
    /// carried `id`.
    #[must_use]
    pub fn wait_record(&self, id: &str, timeout: Duration) -> Option<ServerRecord> {
        let (m, cv) = &*self.state;
        let find = |s: &ServerState| {
            s.records
                .iter()
                .find(|r| r.id.as_deref() == Some(id))
                .cloned()
        };
        let g = lock(m);
        let (g, _) = cv
            .wait_timeout_while(g, timeout, |s| find(s).is_none() && !s.exited)
            .unwrap_or_else(PoisonError::into_inner);
        find(&g)
    }

    /// Lines that are not connection records (stderr too).
    #[must_use]
    pub fn log(&self) -> Vec<String> {
        lock(&self.state.0).log.clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Clients and a test server in namespaces someone else built (`deploy/lab.sh`).
#[derive(Debug)]
pub struct Peers {
    client_ns: String,
    server: TestServer,
    python: String,
    scripts: PathBuf,
    next: AtomicU64,
    tag: String,
}

impl Peers {
    /// Starts the test server in `server_ns` on `binds` at `port`; clients will run
    /// in `client_ns`.
    ///
    /// # Errors
    /// The server could not be started.
    pub fn new(
        tag: &str,
        client_ns: &str,
        server_ns: &str,
        binds: &[IpAddr],
        port: u16,
    ) -> io::Result<Peers> {
        Self::new_with(tag, client_ns, server_ns, binds, port, &[])
    }

    /// [`Peers::new`] with further arguments for the test server (`server.py`).
    ///
    /// # Errors
    /// The server could not be started.
    pub fn new_with(
        tag: &str,
        client_ns: &str,
        server_ns: &str,
        binds: &[IpAddr],
        port: u16,
        server_args: &[&str],
    ) -> io::Result<Peers> {
        let python = std::env::var("HAC_HARNESS_PYTHON").unwrap_or_else(|_| "python3".into());
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
        let binds: Vec<String> = binds.iter().map(IpAddr::to_string).collect();
        let server = TestServer::start_with(
            server_ns,
            &python,
            &scripts.join("server.py"),
            &binds,
            port,
            server_args,
        )?;
        Ok(Peers {
            client_ns: client_ns.to_string(),
            server,
            python,
            scripts,
            next: AtomicU64::new(0),
            tag: format!("{tag}-{}", std::process::id()),
        })
    }

    /// Starts a client.
    ///
    /// # Errors
    /// The process could not be started.
    pub fn spawn_client(&self, spec: &ClientSpec) -> io::Result<ClientHandle> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        ClientHandle::spawn(
            &self.client_ns,
            &self.python,
            &self.scripts.join("client.py"),
            spec,
            format!("{}-c{n}", self.tag),
        )
    }

    /// [`Peers::spawn_client`] then wait for it.
    ///
    /// # Errors
    /// The process could not be started or waited for.
    pub fn run_client(&self, spec: &ClientSpec) -> io::Result<ClientResult> {
        self.spawn_client(spec)?.wait()
    }

    /// The test server.
    #[must_use]
    pub fn server(&self) -> &TestServer {
        &self.server
    }
}
