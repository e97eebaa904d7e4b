//! Upstream connections: MPTCP sockets (IPPROTO_MPTCP, kernel multipath), the
//! Convert request in a TFO SYN without cookie (RFC 8803 §4.2), and reading the
//! reply.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::TcpStream;

use crate::convert::{self, Refusal, Reply, ReplyError};

/// `MSG_FASTOPEN` (linux/socket.h): connect and send data in the SYN.
const MSG_FASTOPEN: i32 = 0x2000_0000;
/// Largest Convert reply (255 words, RFC 8803 §6.1).
const MAX_REPLY: usize = 1020;

/// Why an attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// No SYN-ACK within the attempt's time: try another uplink.
    SynTimeout,
    /// SYN-ACK, but no complete reply within the attempt's time.
    Timeout,
    /// The path or the concentrator refused the connection itself (RST, ICMP,
    /// address gone): try another uplink.
    Unreachable(io::Error),
    /// The concentrator answered with an Error TLV: final.
    Refused(Refusal),
    /// The reply was not a valid Convert message: final (the client resets,
    /// RFC 8803 §6.1).
    BadReply(ReplyError),
    /// The concentrator closed or reset before a complete reply: final.
    Closed(Option<io::Error>),
}

impl AttemptError {
    /// True when another uplink may do better.
    #[must_use]
    pub const fn retryable(&self) -> bool {
        matches!(
            self,
            AttemptError::SynTimeout | AttemptError::Timeout | AttemptError::Unreachable(_)
        )
    }

    /// Short label (metrics, logs).
    #[must_use]
    pub const fn label(&self) -> &'static str {
        match self {
            AttemptError::SynTimeout => "syn_timeout",
            AttemptError::Timeout => "timeout",
            AttemptError::Unreachable(_) => "unreachable",
            AttemptError::Refused(_) => "refused",
            AttemptError::BadReply(_) => "bad_reply",
            AttemptError::Closed(_) => "closed",
        }
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::SynTimeout => f.write_str("no SYN-ACK in time"),
            AttemptError::Timeout => f.write_str("no Convert reply in time"),
            AttemptError::Unreachable(e) => write!(f, "unreachable: {e}"),
            AttemptError::Refused(r) => write!(f, "refused: {r}"),
            AttemptError::BadReply(e) => write!(f, "{e}"),
            AttemptError::Closed(None) => f.write_str("closed before a complete Convert reply"),
            AttemptError::Closed(Some(e)) => {
                write!(f, "closed before a complete Convert reply: {e}")
            }
        }
    }
}

/// An established upstream connection.
#[derive(Debug)]
pub struct Established {
    /// The connection.
    pub stream: TcpStream,
    /// Server bytes that arrived with the Convert reply (to the LAN first).
    pub early: Vec<u8>,
    /// The server's SYN-ACK carried MP_CAPABLE (Extended TCP Header).
    pub server_mptcp: bool,
    /// The socket is IPPROTO_MPTCP (not a TCP fallback at creation).
    pub mptcp: bool,
}

/// Opens a stream socket to `peer`, MPTCP when the kernel has it (else TCP),
/// non-blocking, bound to `src` when given.
fn open(peer: SocketAddr, src: Option<IpAddr>) -> io::Result<(Socket, bool)> {
    let domain = Domain::for_address(peer);
    let ty = Type::STREAM.nonblocking().cloexec();
    let (sock, mptcp) = match Socket::new(domain, ty, Some(Protocol::MPTCP)) {
        Ok(s) => (s, true),
        // MPTCP disabled (net.mptcp.enabled=0) or absent: plain TCP, one path.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::ENOPROTOOPT | nix::libc::EPROTONOSUPPORT | nix::libc::EINVAL)
            ) =>
        {
            (Socket::new(domain, ty, Some(Protocol::TCP))?, false)
        }
        Err(e) => return Err(e),
    };
    sock.set_tcp_nodelay(true)?;
    if let Some(a) = src {
        sock.bind(&SockAddr::from(SocketAddr::new(a, 0)))?;
    }
    Ok((sock, mptcp))
}

fn retryable_io(e: &io::Error) -> bool {
    use nix::libc::{EADDRNOTAVAIL, ECONNREFUSED, EHOSTUNREACH, ENETDOWN, ENETUNREACH, ETIMEDOUT};
    matches!(
        e.raw_os_error(),
        Some(ECONNREFUSED | EHOSTUNREACH | ENETUNREACH | ENETDOWN | EADDRNOTAVAIL | ETIMEDOUT)
    )
}

/// Sends `payload` in a TFO SYN to `peer` (or connects and writes it when TFO is
/// unavailable). Returns the stream and how much of `payload` went.
fn connect_tfo(
    peer: SocketAddr,
    src: Option<IpAddr>,
    payload: &[u8],
) -> io::Result<(TcpStream, usize, bool)> {
    let (sock, mptcp) = open(peer, src)?;
    let sent = if payload.is_empty() {
        connect_nb(&sock, peer)?;
        0
    } else {
        match sock.send_to_with_flags(payload, &SockAddr::from(peer), MSG_FASTOPEN) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => 0,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            // TFO off for clients (net.ipv4.tcp_fastopen bit 0x1): plain connect,
            // the request follows the handshake (one more round trip).
            Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => {
                connect_nb(&sock, peer)?;
                0
            }
            Err(e) => return Err(e),
        }
    };
    let std: std::net::TcpStream = sock.into();
    Ok((TcpStream::from_std(std)?, sent, mptcp))
}

fn connect_nb(sock: &Socket, peer: SocketAddr) -> io::Result<()> {
    match sock.connect(&SockAddr::from(peer)) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

/// One Convert attempt: `request` (Convert message + first LAN bytes) to the
/// concentrator `peer` from `src`, SYN-ACK and reply within `timeout`. `pending`
/// bounds the attempts waiting for a SYN-ACK (RFC 8803 §9.3 on the converter side).
pub async fn convert_attempt(
    peer: SocketAddr,
    src: Option<IpAddr>,
    request: &[u8],
    timeout: Duration,
    pending: &tokio::sync::Semaphore,
) -> Result<Established, AttemptError> {
    // The attempt's clock starts once it may send its SYN, not while it queues.
    let permit = pending.acquire().await;
    let start = tokio::time::Instant::now();
    let (stream, sent, mptcp) = connect_tfo(peer, src, request).map_err(classify_io)?;
    // Established (SYN-ACK in) or failed: both make the socket writable.
    match tokio::time::timeout(timeout, stream.writable()).await {
        Err(_) => return Err(AttemptError::SynTimeout),
        Ok(Err(e)) => return Err(classify_io(e)),
        Ok(Ok(())) => {}
    }
    drop(permit);
    if let Some(e) = stream.take_error().map_err(classify_io)? {
        return Err(classify_io(e));
    }
    let exchange = async {
        crate::relay::write_all(&stream, &request[sent..])
            .await
            .map_err(classify_io)?;
        let mut buf = vec![0u8; MAX_REPLY + 4096];
        let mut have = 0usize;
        loop {
            match convert::parse_reply(&buf[..have]) {
                Ok(Reply::Accepted { len, server_mptcp }) => {
                    // Only the server's early bytes are kept (not the 5 KiB buffer).
                    return Ok((buf[len..have].to_vec(), server_mptcp));
                }
                Ok(Reply::Refused(r)) => return Err(AttemptError::Refused(r)),
                Err(ReplyError::Incomplete { .. }) => {}
                Err(e) => return Err(AttemptError::BadReply(e)),
            }
            if have == buf.len() {
                return Err(AttemptError::BadReply(ReplyError::Incomplete {
                    needed: have + 1,
                }));
            }
            stream.readable().await.map_err(classify_io)?;
            match stream.try_read(&mut buf[have..]) {
                Ok(0) => return Err(AttemptError::Closed(None)),
                Ok(n) => have += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if have == 0 && retryable_io(&e) => {
                    return Err(AttemptError::Unreachable(e));
                }
                Err(e) => return Err(AttemptError::Closed(Some(e))),
            }
        }
    };
    match tokio::time::timeout_at(start + timeout, exchange).await {
        Err(_) => Err(AttemptError::Timeout),
        Ok(Err(e)) => Err(e),
        Ok(Ok((early, server_mptcp))) => Ok(Established {
            stream,
            early,
            server_mptcp,
            mptcp,
        }),
    }
}

/// A direct MPTCP connection to a server known to speak MPTCP (RFC 8803 §5.1),
/// carrying `first` in its SYN when TFO allows (without a cookie a server drops
/// SYN data and it is sent after the handshake).
pub async fn direct_attempt(
    server: SocketAddr,
    src: Option<IpAddr>,
    first: &[u8],
    timeout: Duration,
) -> Result<Established, AttemptError> {
    let (stream, sent, mptcp) = connect_tfo(server, src, first).map_err(classify_io)?;
    let r = tokio::time::timeout(timeout, async {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        crate::relay::write_all(&stream, &first[sent..]).await
    })
    .await;
    match r {
        Err(_) => Err(AttemptError::Timeout),
        Ok(Err(e)) => Err(classify_io(e)),
        Ok(Ok(())) => Ok(Established {
            stream,
            early: Vec::new(),
            server_mptcp: true,
            mptcp,
        }),
    }
}

fn classify_io(e: io::Error) -> AttemptError {
    if retryable_io(&e) {
        AttemptError::Unreachable(e)
    } else {
        AttemptError::Closed(Some(e))
    }
}
