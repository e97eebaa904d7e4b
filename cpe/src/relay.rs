//! Relaying one LAN connection and its upstream connection, both directions,
//! with backpressure and bounded memory.
//!
//! Each direction moves at most `cap` bytes at a time and writes them all out
//! before reading more, so a slow receiver stops the reading side (TCP flow
//! control then reaches the sender). `splice` moves the bytes socket → pipe →
//! socket inside the kernel (pages, no copy into user space); `copy` uses one
//! buffer per direction. A direction that reaches end of stream shuts down the
//! other side's write half (half-close) and the other direction goes on; an
//! error on either side ends both (the caller resets).

use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use prometheus::IntCounter;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::config::RelayMode;

/// Bytes moved each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// LAN → upstream.
    pub up: u64,
    /// Upstream → LAN.
    pub down: u64,
}

/// Relays until both directions ended (Ok) or one failed (Err).
pub async fn relay(
    lan: &TcpStream,
    upstream: &TcpStream,
    mode: RelayMode,
    cap: usize,
    up_bytes: &IntCounter,
    down_bytes: &IntCounter,
) -> io::Result<Moved> {
    let (up, down) = match mode {
        RelayMode::Splice => {
            let p_up = Pipe::new(cap)?;
            let p_down = Pipe::new(cap)?;
            tokio::try_join!(
                splice_pump(lan, upstream, &p_up, cap, up_bytes),
                splice_pump(upstream, lan, &p_down, cap, down_bytes)
            )?
        }
        RelayMode::Copy => tokio::try_join!(
            copy_pump(lan, upstream, cap, up_bytes),
            copy_pump(upstream, lan, cap, down_bytes)
        )?,
    };
    Ok(Moved { up, down })
}

/// A non-blocking pipe sized to `cap` (best effort: the kernel rounds up to
/// pages and caps at `/proc/sys/fs/pipe-max-size`).
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new(cap: usize) -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let _ = fcntl(
            &write,
            FcntlArg::F_SETPIPE_SZ(cap.try_into().unwrap_or(i32::MAX)),
        );
        Ok(Pipe { read, write })
    }
}

fn shutdown_write(s: &TcpStream) {
    // ENOTCONN when the peer already reset: nothing left to tell it.
    let _ = SockRef::from(s).shutdown(Shutdown::Write);
}

/// One direction through a pipe. The pipe is always drained before the next
/// read, so EAGAIN from `src → pipe` means `src` has nothing to read (never a
/// full pipe), and EAGAIN from `pipe → dst` means `dst` cannot take more.
async fn splice_pump(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: &Pipe,
    cap: usize,
    counter: &IntCounter,
) -> io::Result<u64> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut total = 0u64;
    loop {
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                splice(src, None, &pipe.write, None, cap, flags).map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            shutdown_write(dst);
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(&pipe.read, None, dst, None, left, flags).map_err(io::Error::from)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
        counter.inc_by(n as u64);
    }
}

/// One direction through a buffer of `cap` bytes.
async fn copy_pump(
    src: &TcpStream,
    dst: &TcpStream,
    cap: usize,
    counter: &IntCounter,
) -> io::Result<u64> {
    let mut buf = vec![0u8; cap];
    let mut total = 0u64;
    loop {
        let n = loop {
            src.readable().await?;
            match src.try_read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            shutdown_write(dst);
            return Ok(total);
        }
        let mut off = 0;
        while off < n {
            dst.writable().await?;
            match dst.try_write(&buf[off..n]) {
                Ok(m) => off += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
        counter.inc_by(n as u64);
    }
}

/// Writes all of `data` to `s` (used for the bytes that arrived with the Convert
/// reply, and the LAN bytes that did not fit the SYN).
pub async fn write_all(s: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        s.writable().await?;
        match s.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
