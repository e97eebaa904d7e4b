//! The Convert exchange and its error mapping, through real sockets on loopback:
//! a LAN client (std TcpStream) → hac-cpe's per-connection code (`serve_lan`,
//! as after a redirect) → a scripted concentrator (a TCP listener that reads the
//! Convert request and answers what the test says). No root needed.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use hac_cpe::config::Config;
use hac_cpe::proxy::{Ctx, serve_lan};
use hac_wire::convert::ConnectRequest;

const SERVER: &str = "198.51.100.2:80";

fn config(conc_port: u16, extra: &str) -> Config {
    Config::from_toml(&format!(
        r#"
[concentrator]
addresses = ["127.0.0.1"]
port = {conc_port}
connect_timeout_ms = 400
syn_timeout_ms = 300
[intercept]
lan_prefixes = ["127.0.0.0/8"]
install_rules = false
[mptcp]
manage_endpoints = false
set_tfo_sysctl = false
{extra}
"#
    ))
    .unwrap()
}

/// What the scripted concentrator saw: the Connect destination and the
/// application bytes that followed the request (in the SYN or after).
#[derive(Debug)]
struct Seen {
    dst: SocketAddr,
    extended: bool,
    first: Vec<u8>,
}

/// Reads a whole Convert request (24 or 28 bytes) plus whatever follows at once.
fn read_request(c: &mut TcpStream) -> Seen {
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    loop {
        let n = c.read(&mut buf[have..]).unwrap();
        assert!(n > 0, "EOF before a Convert request");
        have += n;
        match ConnectRequest::parse(&buf[..have]) {
            Ok((req, off)) => {
                let conn = req.connect.expect("Connect TLV");
                let (dst, extended) = (conn.remote(), conn.is_extended());
                // Give the first LAN bytes time to arrive if they were not in the SYN.
                c.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                if have == off
                    && let Ok(n) = c.read(&mut buf[have..])
                {
                    have += n;
                }
                c.set_read_timeout(None).unwrap();
                return Seen {
                    dst,
                    extended,
                    first: buf[off..have].to_vec(),
                };
            }
            Err(e) if e.is_incomplete() => {}
            Err(e) => panic!("bad Convert request: {e}"),
        }
    }
}

/// Starts the scripted concentrator: `script` runs on the first connection.
fn concentrator<F>(script: F) -> (u16, mpsc::Receiver<Seen>)
where
    F: FnOnce(TcpStream, mpsc::Sender<Seen>) + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (c, _) = l.accept().unwrap();
        script(c, tx);
    });
    (port, rx)
}

/// Runs hac-cpe's connection code for one LAN connection to `SERVER` and
/// returns the LAN client's socket.
fn lan_client(ctx: Arc<Ctx>) -> TcpStream {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let (s, peer) = l.accept().await.unwrap();
            serve_lan(ctx, s, peer, SERVER.parse().unwrap()).await;
        });
    });
    let addr = rx.recv().unwrap();
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// Reads until EOF or error; returns the bytes and how it ended.
fn read_all(c: &mut TcpStream) -> (Vec<u8>, Result<(), ErrorKind>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(e.kind())),
        }
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn accepted_transfer(relay: &str) {
    let up = pattern(2 << 20, 7);
    let down = pattern(3 << 20, 3);
    let (down2, up_len) = (down.clone(), up.len());
    let (port, seen) = concentrator(move |mut c, tx| {
        let s = read_request(&mut c);
        let first_len = s.first.len();
        tx.send(s).unwrap();
        // Bare header, then the server's first bytes in the same segment.
        c.write_all(&[1, 1, 0x22, 0x63]).unwrap();
        c.write_all(b"HELLO").unwrap();
        // The rest of the LAN upload, until the LAN half-closes.
        let mut got = 0usize;
        let mut buf = [0u8; 65536];
        loop {
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        assert_eq!(first_len + got, 6 + up_len, "upload bytes");
        c.write_all(&down2).unwrap();
    });
    let ctx = Ctx::new(config(
        port,
        &format!("[relay]\nmode = \"{relay}\"\nfirst_data_wait_ms = 200\n"),
    ));
    let mut c = lan_client(ctx.clone());
    c.write_all(b"GET /x").unwrap();
    let s = seen.recv().unwrap();
    assert_eq!(s.dst, SERVER.parse().unwrap());
    assert!(s.extended, "learn mode asks for the server's options");
    assert_eq!(
        &s.first[..],
        b"GET /x",
        "the first LAN bytes follow the request"
    );
    c.write_all(&up).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    // Half-closed upstream: the download still arrives, byte-exact.
    let (got, end) = read_all(&mut c);
    assert_eq!(end, Ok(()));
    assert_eq!(&got[..5], b"HELLO", "no Convert reply bytes reach the LAN");
    assert!(got[5..] == down[..], "download differs");
    let text = String::from_utf8(ctx.metrics.render()).unwrap();
    assert!(
        text.contains("hac_cpe_connections_total{result=\"converted\"} 1"),
        "{text}"
    );
}

#[test]
fn accepted_connection_relays_both_ways_with_splice() {
    accepted_transfer("splice");
}

#[test]
fn accepted_connection_relays_both_ways_with_copy() {
    accepted_transfer("copy");
}

/// A refusal: the LAN host gets a reset and not a byte.
fn refused_with(reply: &'static [u8], label: &str) {
    let (port, _seen) = concentrator(move |mut c, _tx| {
        let _ = read_request(&mut c);
        c.write_all(reply).unwrap();
        // Server bytes after an Error must never reach the LAN.
        let _ = c.write_all(b"LEAK");
        // RFC 8803 §6.2.8: the converter closes (gracefully) after the Error.
        let _ = c.shutdown(Shutdown::Write);
        thread::sleep(Duration::from_millis(300));
    });
    let ctx = Ctx::new(config(port, ""));
    let mut c = lan_client(ctx.clone());
    c.write_all(b"GET /").unwrap();
    let (got, end) = read_all(&mut c);
    assert!(got.is_empty(), "{label}: LAN saw {got:?}");
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "{label}");
    let text = String::from_utf8(ctx.metrics.render()).unwrap();
    if let Some(code) = label.strip_prefix("code_") {
        assert!(
            text.contains(&format!(
                "hac_cpe_convert_errors_total{{code=\"{code}\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains("hac_cpe_connections_total{result=\"refused\"} 1"),
            "{text}"
        );
    } else {
        assert!(
            text.contains("hac_cpe_connections_total{result=\"failed\"} 1"),
            "{text}"
        );
    }
    assert!(text.contains("hac_cpe_lan_resets_total 1"), "{text}");
}

#[test]
fn not_authorized_resets_the_lan_connection() {
    refused_with(&[1, 2, 0x22, 0x63, 0x1e, 1, 32, 0], "code_not_authorized");
}

#[test]
fn server_reset_resets_the_lan_connection() {
    refused_with(&[1, 2, 0x22, 0x63, 0x1e, 1, 96, 0], "code_connection_reset");
}

#[test]
fn unreachable_server_resets_the_lan_connection() {
    refused_with(
        &[1, 2, 0x22, 0x63, 0x1e, 1, 97, 3],
        "code_destination_unreachable",
    );
}

#[test]
fn resource_exceeded_resets_the_lan_connection() {
    refused_with(
        &[1, 2, 0x22, 0x63, 0x1e, 1, 64, 30],
        "code_resource_exceeded",
    );
}

#[test]
fn invalid_reply_resets_the_lan_connection() {
    refused_with(&[1, 1, 0x22, 0x64], "bad magic");
}

#[test]
fn close_without_reply_resets_the_lan_connection() {
    refused_with(&[], "no reply");
}

#[test]
fn silent_concentrator_times_out_into_a_reset() {
    let (port, _seen) = concentrator(|mut c, _tx| {
        let _ = read_request(&mut c);
        thread::sleep(Duration::from_secs(2));
    });
    let ctx = Ctx::new(config(port, ""));
    let mut c = lan_client(ctx);
    c.write_all(b"GET /").unwrap();
    let (got, end) = read_all(&mut c);
    assert!(got.is_empty());
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
}

#[test]
fn closed_concentrator_port_resets_the_lan_connection() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ctx = Ctx::new(config(port, ""));
    let mut c = lan_client(ctx);
    let _ = c.write_all(b"GET /");
    let (got, end) = read_all(&mut c);
    assert!(got.is_empty());
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
}

#[test]
fn connections_outside_the_configuration_are_reset_without_upstream() {
    let (port, seen) = concentrator(|mut c, tx| tx.send(read_request(&mut c)).unwrap());
    let cfg = config(port, "").clone();
    let cfg = Config {
        lan_prefixes: vec![hac_cpe::config::Prefix::parse("10.0.0.0/8").unwrap()],
        ..cfg
    };
    let ctx = Ctx::new(cfg);
    let mut c = lan_client(ctx);
    let (got, end) = read_all(&mut c);
    assert!(got.is_empty());
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
    assert!(
        seen.recv_timeout(Duration::from_millis(300)).is_err(),
        "no upstream"
    );
}

#[test]
fn mptcp_capable_servers_are_remembered() {
    let (port, seen) = concentrator(|mut c, tx| {
        tx.send(read_request(&mut c)).unwrap();
        // Extended TCP Header: MSS, SACK-permitted, MP_CAPABLE (v1, key), padded.
        let mut m = vec![1, 0, 0x22, 0x63, 0x14, 0, 0, 0, 2, 4, 5, 0xb4, 4, 2];
        m.extend_from_slice(&[30, 12, 0x01, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m[5] = ((m.len() - 4) / 4) as u8;
        m[1] = (m.len() / 4) as u8;
        c.write_all(&m).unwrap();
        c.write_all(b"OK").unwrap();
    });
    let ctx = Ctx::new(config(port, ""));
    let mut c = lan_client(ctx.clone());
    c.write_all(b"GET /").unwrap();
    let (got, _) = read_all(&mut c);
    assert_eq!(got, b"OK");
    assert!(seen.recv().unwrap().extended);
    assert!(
        ctx.servers
            .is_mptcp(SERVER.parse().unwrap(), std::time::Instant::now())
    );
    let text = String::from_utf8(ctx.metrics.render()).unwrap();
    assert!(text.contains("hac_cpe_mptcp_servers 1"), "{text}");
}

#[test]
fn off_mode_sends_a_base_connect() {
    let (port, seen) = concentrator(|mut c, tx| {
        tx.send(read_request(&mut c)).unwrap();
        c.write_all(&[1, 1, 0x22, 0x63]).unwrap();
    });
    let ctx = Ctx::new(config(port, "servers = \"off\""));
    let mut c = lan_client(ctx);
    c.write_all(b"x").unwrap();
    let s = seen.recv().unwrap();
    assert!(!s.extended);
    let (got, end) = read_all(&mut c);
    assert!(got.is_empty());
    assert_eq!(end, Ok(()), "accepted then closed: a clean close");
}

#[test]
fn a_lan_reset_resets_the_upstream_connection() {
    let (port, seen) = concentrator(|mut c, tx| {
        let _ = read_request(&mut c);
        c.write_all(&[1, 1, 0x22, 0x63]).unwrap();
        c.write_all(b"DATA").unwrap();
        let (_, end) = read_all(&mut c);
        tx.send(Seen {
            dst: SERVER.parse().unwrap(),
            extended: false,
            first: format!("{end:?}").into_bytes(),
        })
        .unwrap();
    });
    let ctx = Ctx::new(config(port, ""));
    let mut c = lan_client(ctx);
    c.write_all(b"GET /").unwrap();
    let mut four = [0u8; 4];
    c.read_exact(&mut four).unwrap();
    assert_eq!(&four, b"DATA");
    socket_linger_zero(&c);
    drop(c);
    let s = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        String::from_utf8(s.first).unwrap(),
        "Err(ConnectionReset)",
        "the concentrator side must see a reset, not a clean close"
    );
}

#[test]
fn an_upstream_reset_resets_the_lan_connection() {
    let (port, _seen) = concentrator(|mut c, _tx| {
        let _ = read_request(&mut c);
        c.write_all(&[1, 1, 0x22, 0x63]).unwrap();
        c.write_all(b"PARTIAL").unwrap();
        thread::sleep(Duration::from_millis(100));
        socket_linger_zero(&c);
    });
    let ctx = Ctx::new(config(port, ""));
    let mut c = lan_client(ctx);
    c.write_all(b"GET /").unwrap();
    let (got, end) = read_all(&mut c);
    assert_eq!(got, b"PARTIAL");
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
}

/// SO_LINGER 0: closing sends a RST.
fn socket_linger_zero(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}
