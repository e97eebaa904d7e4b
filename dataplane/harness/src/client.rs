//! The client script (scripts/client.py) and the server's per-connection records.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{self, hex, unhex};
use crate::{CONVERT_PORT, CONVERTER_V4, CONVERTER_V6};

/// What one client run should do. Build with [`ClientSpec::convert`] or
/// [`ClientSpec::plain_tcp`] and the builder methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    /// Address the client connects to (converter service address, or anything
    /// routed into the Access TUN).
    pub target: SocketAddr,
    /// `socket(…, IPPROTO_MPTCP)` instead of TCP.
    pub mptcp: bool,
    /// Convert message sent as TFO data in the SYN (`TCP_FASTOPEN_NO_COOKIE` +
    /// `sendto(MSG_FASTOPEN)`); the client then reads the Convert reply. `None`:
    /// plain `connect()`.
    pub convert: Option<Vec<u8>>,
    /// Put the server command line right after the Convert message in the SYN
    /// (request-in-SYN client) instead of sending it after the reply.
    pub request_in_syn: bool,
    /// Run the transfer with the test server (command line, up/down bytes,
    /// read until EOF). Without it the client stops after the Convert reply.
    pub transfer: bool,
    /// Bytes the client sends (client → server), at most 256 MiB.
    pub up: u64,
    /// Bytes the server sends (server → client), at most 256 MiB. Ignored
    /// with `echo`.
    pub down: u64,
    /// The server echoes the `up` bytes instead of sending `down` bytes.
    pub echo: bool,
    /// Seed of the pseudo-random payloads.
    pub seed: u64,
    /// Overall bound of the client run (the process is killed 5 s later).
    pub timeout: Duration,
    /// Half-close only after the server's EOF (`--late-shutdown`), as a download
    /// client would. Linux adds no subflow to an MPTCP connection once it has sent
    /// its DATA_FIN, so multipath tests need this; not with `echo`.
    pub late_shutdown: bool,
    /// Report receive gaps (`--gaps`): `max_gap`, `max_gap_at`, `gaps` in the
    /// result's raw JSON.
    pub gaps: bool,
    /// Stop reading the download for a while once this many bytes arrived
    /// (`--pause-at`, `--pause`): the client's receive window closes.
    pub pause: Option<(u64, Duration)>,
    /// Ask the server to stop reading the upload likewise (`pause_at`,
    /// `pause_ms` on the command line).
    pub server_pause: Option<(u64, Duration)>,
    /// `SO_RCVBUF` of the client socket, set before it connects.
    pub rcvbuf: Option<u32>,
    /// The server answers (sends its bytes and its EOF) only once the whole
    /// upload is in, as an HTTP server answers a POST (`wait_up=1`). Linux joins
    /// no subflow once its peer's DATA_FIN came: an upload-only test needs this.
    pub server_waits: bool,
}

impl ClientSpec {
    /// A stock-Linux RFC 8803 client: MPTCP socket, Convert request with a
    /// Connect TLV to `dest` in the SYN, sent to the converter service address of
    /// `dest`'s family ([`CONVERTER_V4`] / [`CONVERTER_V6`], port 5124).
    /// Transfer enabled, 0 bytes each way, 20 s timeout.
    #[must_use]
    pub fn convert(dest: SocketAddr) -> ClientSpec {
        let conv: IpAddr = match dest {
            SocketAddr::V4(_) => CONVERTER_V4.into(),
            SocketAddr::V6(_) => CONVERTER_V6.into(),
        };
        ClientSpec {
            target: SocketAddr::new(conv, CONVERT_PORT),
            mptcp: true,
            convert: Some(crate::convert_connect_request(dest)),
            ..ClientSpec::plain_tcp(SocketAddr::new(conv, CONVERT_PORT))
        }
    }

    /// A plain TCP client connecting to `target` (no Convert), transfer enabled,
    /// 0 bytes each way, 20 s timeout.
    #[must_use]
    pub fn plain_tcp(target: SocketAddr) -> ClientSpec {
        ClientSpec {
            target,
            mptcp: false,
            convert: None,
            request_in_syn: false,
            transfer: true,
            up: 0,
            down: 0,
            echo: false,
            seed: 1,
            timeout: Duration::from_secs(20),
            late_shutdown: false,
            gaps: false,
            pause: None,
            server_pause: None,
            rcvbuf: None,
            server_waits: false,
        }
    }

    /// Sets the client → server byte count.
    #[must_use]
    pub fn up(mut self, n: u64) -> Self {
        self.up = n;
        self
    }

    /// Sets the server → client byte count.
    #[must_use]
    pub fn down(mut self, n: u64) -> Self {
        self.down = n;
        self
    }

    /// Echo mode: the server returns the `up` bytes.
    #[must_use]
    pub fn echo(mut self, on: bool) -> Self {
        self.echo = on;
        self
    }

    /// Sets the overall timeout.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Sends the server command line in the SYN after the Convert message.
    #[must_use]
    pub fn request_in_syn(mut self, on: bool) -> Self {
        self.request_in_syn = on;
        self
    }

    /// Enables or disables the transfer after the Convert reply.
    #[must_use]
    pub fn transfer(mut self, on: bool) -> Self {
        self.transfer = on;
        self
    }

    /// Replaces the Convert message (e.g. with a malformed one).
    #[must_use]
    pub fn convert_message(mut self, msg: Vec<u8>) -> Self {
        self.convert = Some(msg);
        self
    }

    /// Uses an MPTCP (`true`) or TCP socket.
    #[must_use]
    pub fn mptcp(mut self, on: bool) -> Self {
        self.mptcp = on;
        self
    }

    /// Sets the payload seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Half-close only after the server's EOF (see the `late_shutdown` field).
    #[must_use]
    pub fn late_shutdown(mut self, on: bool) -> Self {
        self.late_shutdown = on;
        self
    }

    /// Report receive gaps (see the `gaps` field).
    #[must_use]
    pub fn gaps(mut self, on: bool) -> Self {
        self.gaps = on;
        self
    }

    /// The client stops reading for `d` after `at` bytes (see the `pause` field).
    #[must_use]
    pub fn pause(mut self, at: u64, d: Duration) -> Self {
        self.pause = Some((at, d));
        self
    }

    /// The server stops reading for `d` after `at` bytes (`server_pause`).
    #[must_use]
    pub fn server_pause(mut self, at: u64, d: Duration) -> Self {
        self.server_pause = Some((at, d));
        self
    }

    /// Sets the client socket's `SO_RCVBUF` (see the `rcvbuf` field).
    #[must_use]
    pub fn rcvbuf(mut self, bytes: u32) -> Self {
        self.rcvbuf = Some(bytes);
        self
    }

    /// The server answers only once the upload is in (see `server_waits`).
    #[must_use]
    pub fn server_waits(mut self, on: bool) -> Self {
        self.server_waits = on;
        self
    }

    fn args(&self, id: &str) -> Vec<String> {
        let mut a = vec![
            "--target".to_owned(),
            self.target.ip().to_string(),
            "--port".to_owned(),
            self.target.port().to_string(),
            "--id".to_owned(),
            id.to_owned(),
            "--up".to_owned(),
            self.up.to_string(),
            "--down".to_owned(),
            self.down.to_string(),
            "--seed".to_owned(),
            self.seed.to_string(),
            "--timeout".to_owned(),
            format!("{:.3}", self.timeout.as_secs_f64()),
        ];
        if self.mptcp {
            a.push("--mptcp".to_owned());
        }
        if let Some(m) = &self.convert {
            a.push("--convert-hex".to_owned());
            a.push(hex(m));
        }
        if self.request_in_syn {
            a.push("--request-in-syn".to_owned());
        }
        if !self.transfer {
            a.push("--no-transfer".to_owned());
        }
        if self.echo {
            a.push("--echo".to_owned());
        }
        if self.late_shutdown {
            a.push("--late-shutdown".to_owned());
        }
        if self.gaps {
            a.push("--gaps".to_owned());
        }
        if let Some((at, d)) = self.pause {
            a.extend(["--pause-at".to_owned(), at.to_string()]);
            a.extend(["--pause".to_owned(), format!("{:.3}", d.as_secs_f64())]);
        }
        if let Some((at, d)) = self.server_pause {
            a.extend(["--server-pause-at".to_owned(), at.to_string()]);
            a.extend([
                "--server-pause".to_owned(),
                format!("{:.3}", d.as_secs_f64()),
            ]);
        }
        if let Some(n) = self.rcvbuf {
            a.extend(["--rcvbuf".to_owned(), n.to_string()]);
        }
        if self.server_waits {
            a.push("--server-waits".to_owned());
        }
        a
    }
}

/// How the Convert exchange went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertOutcome {
    /// No Convert message was sent (plain client).
    NotUsed,
    /// A well-formed reply without an Error TLV.
    Ok,
    /// A reply with an Error TLV (RFC 8803 §6.2.8): its code. The client then
    /// resets the connection.
    Error(u8),
    /// No valid reply (EOF, reset, bad header, timeout): the reason.
    Failed(String),
}

/// The JSON line printed by the client script, parsed.
#[derive(Debug, Clone)]
pub struct ClientResult {
    /// The id sent to the server in the command line (matches
    /// [`ServerRecord::id`]).
    pub id: String,
    /// Convert exchange.
    pub convert: ConvertOutcome,
    /// TLVs of the Convert reply after the header: `(type, value bytes after
    /// Type and Length)`.
    pub tlvs: Vec<(u8, Vec<u8>)>,
    /// `None` for TCP sockets; for MPTCP `Some(true)` when `MPTCP_INFO` failed
    /// with EOPNOTSUPP (IPv4) or ENOPROTOOPT (IPv6) after the transfer (fell back
    /// to TCP).
    pub fallback: Option<bool>,
    /// Bytes the client sent in the transfer (command line excluded).
    pub bytes_sent: u64,
    /// Bytes the client received in the transfer.
    pub bytes_recv: u64,
    /// SHA-256 (hex) of the bytes sent.
    pub sent_sha256: String,
    /// SHA-256 (hex) of the bytes received.
    pub recv_sha256: String,
    /// The server's FIN was seen.
    pub eof: bool,
    /// The client's local address, once connected.
    pub local: Option<SocketAddr>,
    /// An exception, timeout or send error, if any.
    pub error: Option<String>,
    /// Run time measured by the script.
    pub elapsed: Duration,
    /// Exit status of the script.
    pub status: Option<ExitStatus>,
    /// The script's stderr (tracebacks).
    pub stderr: String,
    /// The raw JSON line.
    pub raw: String,
}

impl ClientResult {
    /// Checks a transfer against the server's record: byte counts and SHA-256 in
    /// both directions, no error on either side, EOF seen.
    ///
    /// # Errors
    /// A description of the first mismatch.
    pub fn check_transfer(&self, srv: &ServerRecord, up: u64, down: u64) -> Result<(), String> {
        let mismatch = |what: &str| Err(format!("{what}\n client: {self:?}\n server: {srv:?}"));
        if self.error.is_some() || srv.error.is_some() {
            return mismatch("error reported");
        }
        if !self.eof {
            return mismatch("client saw no EOF");
        }
        if self.bytes_sent != up || srv.bytes_recv != up || self.sent_sha256 != srv.recv_sha256 {
            return mismatch("client -> server bytes differ");
        }
        if self.bytes_recv != down || srv.bytes_sent != down || self.recv_sha256 != srv.sent_sha256
        {
            return mismatch("server -> client bytes differ");
        }
        Ok(())
    }
}

/// One connection as seen by the test server (a JSON line of scripts/server.py).
#[derive(Debug, Clone)]
pub struct ServerRecord {
    /// The id from the client's command line (`None` if no command line came).
    pub id: Option<String>,
    /// The connection's source as the server saw it (pool address after
    /// translation).
    pub peer: Option<SocketAddr>,
    /// The server's local address.
    pub local: Option<SocketAddr>,
    /// Bytes received from the client (after the command line).
    pub bytes_recv: u64,
    /// SHA-256 (hex) of those bytes.
    pub recv_sha256: String,
    /// Bytes sent to the client.
    pub bytes_sent: u64,
    /// SHA-256 (hex) of those bytes.
    pub sent_sha256: String,
    /// An exception or timeout, if any.
    pub error: Option<String>,
    /// Connection duration as the server saw it.
    pub elapsed: Duration,
    /// The raw JSON line.
    pub raw: String,
}

fn addr_of(v: &Value) -> Option<SocketAddr> {
    let ip: IpAddr = v.get(0)?.as_str()?.parse().ok()?;
    let port = u16::try_from(v.get(1)?.as_u64()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

fn str_of(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn u64_of(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or_default()
}

fn secs_of(v: &Value, k: &str) -> Duration {
    Duration::try_from_secs_f64(v.get(k).and_then(Value::as_f64).unwrap_or(0.0)).unwrap_or_default()
}

fn opt_str(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

impl ServerRecord {
    pub(crate) fn parse(line: &str) -> Option<ServerRecord> {
        let v: Value = serde_json::from_str(line).ok()?;
        if v.get("event")?.as_str()? != "conn" {
            return None;
        }
        Some(ServerRecord {
            id: opt_str(&v, "id"),
            peer: v.get("peer").and_then(addr_of),
            local: v.get("local").and_then(addr_of),
            bytes_recv: u64_of(&v, "bytes_recv"),
            recv_sha256: str_of(&v, "recv_sha256"),
            bytes_sent: u64_of(&v, "bytes_sent"),
            sent_sha256: str_of(&v, "sent_sha256"),
            error: opt_str(&v, "error"),
            elapsed: secs_of(&v, "elapsed"),
            raw: line.to_owned(),
        })
    }
}

fn parse_client(line: &str) -> Option<ClientResult> {
    let v: Value = serde_json::from_str(line).ok()?;
    let convert = match v.get("convert")? {
        Value::Null => ConvertOutcome::NotUsed,
        Value::String(s) if s == "ok" => ConvertOutcome::Ok,
        Value::Object(o) => {
            if let Some(c) = o.get("error") {
                ConvertOutcome::Error(
                    c.as_u64()
                        .and_then(|c| u8::try_from(c).ok())
                        .unwrap_or(0xff),
                )
            } else {
                ConvertOutcome::Failed(
                    o.get("failed")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned(),
                )
            }
        }
        other => ConvertOutcome::Failed(format!("unexpected {other}")),
    };
    let tlvs = v
        .get("tlvs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    let ty = u8::try_from(t.get(0)?.as_u64()?).ok()?;
                    let val = unhex(t.get(1)?.as_str()?)?;
                    Some((ty, val))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ClientResult {
        id: str_of(&v, "id"),
        convert,
        tlvs,
        fallback: v.get("fallback").and_then(Value::as_bool),
        bytes_sent: u64_of(&v, "bytes_sent"),
        bytes_recv: u64_of(&v, "bytes_recv"),
        sent_sha256: str_of(&v, "sent_sha256"),
        recv_sha256: str_of(&v, "recv_sha256"),
        eof: v.get("eof").and_then(Value::as_bool).unwrap_or(false),
        local: v.get("local").and_then(addr_of),
        error: opt_str(&v, "error"),
        elapsed: secs_of(&v, "elapsed"),
        status: None,
        stderr: String::new(),
        raw: line.to_owned(),
    })
}

/// A running client script; [`ClientHandle::wait`] collects its result.
/// Dropping it kills the process.
#[derive(Debug)]
pub struct ClientHandle {
    child: Option<Child>,
    id: String,
    timeout: Duration,
}

impl ClientHandle {
    pub(crate) fn spawn(
        ns: &str,
        python: &str,
        script: &Path,
        spec: &ClientSpec,
        id: String,
    ) -> io::Result<ClientHandle> {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, python, "-u"])
            .arg(script)
            .args(spec.args(&id))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(ClientHandle {
            child: Some(child),
            id,
            timeout: spec.timeout + Duration::from_secs(5),
        })
    }

    /// The id this client sends to the server.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for the script (killing it after its timeout + 5 s) and parses its
    /// JSON line. A script that printed none gives a result with `error` set and
    /// [`ConvertOutcome::Failed`].
    ///
    /// # Errors
    /// Only if waiting for the process failed.
    pub fn wait(mut self) -> io::Result<ClientResult> {
        let Some(child) = self.child.take() else {
            return Err(io::Error::other("client already waited for"));
        };
        let out = util::wait_output(child, self.timeout)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let line = stdout.lines().rev().find(|l| l.starts_with('{'));
        let mut r = line.and_then(parse_client).unwrap_or_else(|| ClientResult {
            id: self.id.clone(),
            convert: ConvertOutcome::Failed("no result line".into()),
            tlvs: Vec::new(),
            fallback: None,
            bytes_sent: 0,
            bytes_recv: 0,
            sent_sha256: String::new(),
            recv_sha256: String::new(),
            eof: false,
            local: None,
            error: Some(format!(
                "client printed no result ({}): {stderr}",
                out.status
            )),
            elapsed: Duration::ZERO,
            status: None,
            stderr: String::new(),
            raw: stdout.into_owned(),
        });
        r.status = Some(out.status);
        r.stderr = stderr;
        Ok(r)
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
