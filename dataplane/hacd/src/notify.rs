//! systemd readiness (`Type=notify`, sd_notify(3)): a datagram with `READY=1` once
//! the ports are up and the workers run, `STOPPING=1` when shutting down, sent to
//! the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract
//! socket). Without the variable nothing is sent.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. `"READY=1"`) to `$NOTIFY_SOCKET`; Ok(false) when the
/// variable is not set (not started by systemd).
pub fn notify(state: &str) -> std::io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(s) if !s.is_empty() => {
            notify_to(&s.to_string_lossy(), state)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Sends `state` to the notification socket `socket`.
pub fn notify_to(socket: &str, state: &str) -> std::io::Result<()> {
    let addr = match socket.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(socket)?,
    };
    let s = UnixDatagram::unbound()?;
    s.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ready_reaches_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("hacd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let sd = UnixDatagram::bind(&path).unwrap();
        sd.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        notify_to(path.to_str().unwrap(), "READY=1").unwrap();
        notify_to(path.to_str().unwrap(), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = sd.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let n = sd.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        let name = format!("hacd-notify-test-{}", std::process::id());
        let sd = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        sd.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        notify_to(&format!("@{name}"), "READY=1").unwrap();
        let n = sd.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(notify_to(dir.join("absent").to_str().unwrap(), "READY=1").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
