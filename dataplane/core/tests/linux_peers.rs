//! The engine against real Linux peers (issue 3's TAP harness): a Linux 6.x MPTCP
//! client (TFO without cookie, Convert request in the SYN) in one network namespace,
//! a plain Linux TCP server in another, and the engine moving packets between their
//! TUN devices. Needs root (CI runs as root); skipped with a message otherwise.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hac_core::pool::{PoolConfig, Prefix};
use hac_core::{Action, Engine, EngineConfig, Instant, Port, VecPacket};
use hac_harness::{
    CLOSED_PORT, CONVERT_PORT, CONVERTER_V4, CONVERTER_V6, ClientSpec, ConvertOutcome, Lab, Ns,
    POOL_V4, POOL_V4_PREFIX, POOL_V6, POOL_V6_PREFIX, SERVER_PORT, SERVER_V4, SERVER_V6, Side,
    Translator, skip_unless_root,
};

/// The engine as a harness translator (one shard).
struct EngineTranslator {
    engine: Engine<VecPacket>,
    buf: Vec<u8>,
}

impl EngineTranslator {
    fn new() -> Self {
        let cfg = EngineConfig {
            service_addrs: vec![CONVERTER_V4.into(), CONVERTER_V6.into()],
            service_port: CONVERT_PORT,
            pool: PoolConfig {
                prefixes: vec![
                    Prefix {
                        addr: POOL_V4.into(),
                        len: POOL_V4_PREFIX,
                    },
                    Prefix {
                        addr: POOL_V6.into(),
                        len: POOL_V6_PREFIX,
                    },
                ],
                ..PoolConfig::default()
            },
            ..EngineConfig::default()
        };
        EngineTranslator {
            engine: Engine::new(cfg, 0, 1, 0x5eed, Instant(0)).expect("valid config"),
            buf: vec![0; 2048],
        }
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<(Side, Vec<u8>)>) {
        while let Some(t) = self.engine.poll_transmit(now, &mut self.buf) {
            out.push((side(t.port), self.buf[..t.len].to_vec()));
        }
    }
}

fn side(p: Port) -> Side {
    match p {
        Port::Access => Side::Access,
        Port::Core => Side::Core,
    }
}

impl Translator for EngineTranslator {
    fn on_packet(&mut self, now_us: u64, s: Side, pkt: Vec<u8>, out: &mut Vec<(Side, Vec<u8>)>) {
        let now = Instant(now_us);
        let port = match s {
            Side::Access => Port::Access,
            Side::Core => Port::Core,
        };
        let mut p = VecPacket::from_bytes(&pkt);
        if let Action::Forward(to) = self.engine.handle_packet(now, port, &mut p) {
            out.push((side(to), p.to_vec()));
        }
        self.drain(now, out);
    }

    fn on_tick(&mut self, now_us: u64, out: &mut Vec<(Side, Vec<u8>)>) {
        let now = Instant(now_us);
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        self.drain(now, out);
    }
}

const MB: u64 = 1 << 20;

fn transfer(tag: &str, dest: SocketAddr, up: u64, down: u64, v6_client: bool) {
    let _ = transfer_with(tag, dest, up, down, v6_client, false);
}

/// A transfer; `csum`: the client asks for DSS checksums (`net.mptcp.checksum_enabled`
/// in its namespace). Returns the engine's counters (None: skipped, not root).
fn transfer_with(
    tag: &str,
    dest: SocketAddr,
    up: u64,
    down: u64,
    v6_client: bool,
    csum: bool,
) -> Option<hac_core::Counters> {
    if skip_unless_root(tag) {
        return None;
    }
    let lab = Lab::new(tag).expect("lab");
    if csum {
        lab.sysctl(Ns::Client, "net.mptcp.checksum_enabled", "1")
            .expect("net.mptcp.checksum_enabled");
    }
    let mut spec = ClientSpec::convert(dest)
        .up(up)
        .down(down)
        .timeout(Duration::from_secs(60));
    if v6_client {
        spec.target = SocketAddr::new(CONVERTER_V6.into(), CONVERT_PORT);
    }
    // The engine must keep pumping until the server has everything: the client is
    // done as soon as its last bytes are in its socket buffer.
    let ((res, srv), t) = lab.run_with(EngineTranslator::new(), |lab| {
        let res = lab.run_client(&spec).expect("client");
        let srv = lab.wait_server_record(&res.id, Duration::from_secs(20));
        (res, srv)
    });
    assert_eq!(
        res.convert,
        ConvertOutcome::Ok,
        "convert failed: {res:?}\ncounters: {:?}",
        t.engine.counters()
    );
    let Some(srv) = srv else {
        panic!(
            "no server record: {res:?}\nserver log: {:?}\ncounters: {:?}",
            lab.server_log(),
            t.engine.counters()
        );
    };
    res.check_transfer(&srv, up, down)
        .unwrap_or_else(|e| panic!("{e}: {res:?}"));
    // MPTCP_INFO fails with EOPNOTSUPP once a connection has fallen back (field notes §4).
    assert_eq!(res.fallback, Some(false), "the client fell back to TCP");
    // The server saw the pool address, not the client's.
    let peer = srv.peer.expect("server saw a peer");
    let pool_ok = match peer.ip() {
        IpAddr::V4(a) => a.octets()[..3] == [203, 0, 113],
        IpAddr::V6(a) => a.segments()[..3] == [0x2001, 0xdb8, 0x200],
    };
    assert!(pool_ok, "server peer {peer} is not a pool address");
    Some(t.engine.counters().clone())
}

/// RFC 8684 §3.3.1 with a real Linux client that asks for DSS checksums: every
/// mapping either way carries one, the engine verifies each of the client's (none
/// fails) and Linux verifies ours (a failure would be MP_FAIL or a reset, and the
/// transfer would not be byte-exact without fallback).
fn checksummed_transfer(tag: &str, dest: SocketAddr, v6_client: bool) {
    let Some(c) = transfer_with(tag, dest, 8 * MB, 8 * MB, v6_client, true) else {
        return;
    };
    eprintln!(
        "{tag}: {} mappings verified, {} unverified",
        c.dss_checksum_ok, c.dss_checksum_unverified
    );
    assert!(c.dss_checksum_ok >= 100, "{c:?}");
    assert_eq!(
        (c.dss_checksum_failed, c.mp_fail_sent, c.mp_fail_received),
        (0, 0, 0),
        "{c:?}"
    );
    assert_eq!(c.drops[hac_core::DropReason::TcpChecksum as usize], 0);
}

#[test]
fn mptcp_v4_with_dss_checksums() {
    checksummed_transfer(
        "csum-v4",
        SocketAddr::new(SERVER_V4.into(), SERVER_PORT),
        false,
    );
}

#[test]
fn mptcp_v6_with_dss_checksums() {
    checksummed_transfer(
        "csum-v6",
        SocketAddr::new(SERVER_V6.into(), SERVER_PORT),
        true,
    );
}

#[test]
fn mptcp_v4_20mb_each_way() {
    transfer(
        "e2e-v4",
        SocketAddr::new(SERVER_V4.into(), SERVER_PORT),
        20 * MB,
        20 * MB,
        false,
    );
}

#[test]
fn mptcp_v6_20mb_each_way() {
    transfer(
        "e2e-v6",
        SocketAddr::new(SERVER_V6.into(), SERVER_PORT),
        20 * MB,
        20 * MB,
        true,
    );
}

#[test]
fn mptcp_v6_client_to_v4_server() {
    // Connect carries ::ffff:198.51.100.2; the pool of the server's family is used.
    transfer(
        "e2e-v6v4",
        SocketAddr::new(SERVER_V4.into(), SERVER_PORT),
        20 * MB,
        20 * MB,
        true,
    );
}

/// The Convert error code a real client gets for `dest` (None when not root).
fn convert_error(tag: &str, dest: SocketAddr) -> Option<u8> {
    if skip_unless_root(tag) {
        return None;
    }
    let lab = Lab::new(tag).expect("lab");
    let spec = ClientSpec::convert(dest)
        .transfer(false)
        .timeout(Duration::from_secs(15));
    let (res, _) = lab.run_with(EngineTranslator::new(), |lab| {
        lab.run_client(&spec).expect("client")
    });
    match res.convert {
        ConvertOutcome::Error(code) => Some(code),
        ref other => panic!("expected a Convert error, got {other:?}: {res:?}"),
    }
}

#[test]
fn closed_port_answers_connection_reset_96() {
    // The server answers the downstream SYN with RST → 96 (RFC 8803 §6.2.8).
    let code = convert_error("e2e-rst", SocketAddr::new(SERVER_V4.into(), CLOSED_PORT));
    assert!(code.is_none_or(|c| c == 96), "code {code:?}");
}

#[test]
fn own_address_is_not_authorized_32() {
    // A destination that is one of the converter's own addresses (a loop) → 32.
    let code = convert_error("e2e-own", SocketAddr::new(CONVERTER_V4.into(), 80));
    assert!(code.is_none_or(|c| c == 32), "code {code:?}");
}

#[test]
fn loopback_is_malformed_1() {
    // RFC 8803 §6.2.5: loopback destinations are Malformed (1).
    let code = convert_error("e2e-lo", "127.0.0.1:80".parse().unwrap());
    assert!(code.is_none_or(|c| c == 1), "code {code:?}");
}

/// A hard ICMP error about the downstream SYN → Error 97 carrying the ICMP code
/// (RFC 8803 §6.2.8). The server namespace routes the destination to a `prohibit`
/// route, so its kernel answers with "administratively prohibited".
fn icmp_error(tag: &str, dest: SocketAddr, ip: &str, fwd: &str, expect_code: u8) {
    if skip_unless_root(tag) {
        return;
    }
    let lab = Lab::new(tag).expect("lab");
    lab.sysctl(Ns::Server, fwd, "1").expect("forwarding");
    let prefix = if dest.is_ipv4() { "/32" } else { "/128" };
    let route = format!("{}{prefix}", dest.ip());
    let out = lab
        .exec(Ns::Server, &["ip", ip, "route", "add", "prohibit", &route])
        .expect("ip route");
    assert!(out.status.success(), "{out:?}");
    let spec = ClientSpec::convert(dest)
        .transfer(false)
        .timeout(Duration::from_secs(15));
    let (res, _) = lab.run_with(EngineTranslator::new(), |lab| {
        lab.run_client(&spec).expect("client")
    });
    assert_eq!(res.convert, ConvertOutcome::Error(97), "{res:?}");
    let err = res
        .tlvs
        .iter()
        .find(|(t, _)| *t == 0x1e)
        .expect("Error TLV");
    assert_eq!(err.1.first(), Some(&97));
    assert_eq!(
        err.1.get(1),
        Some(&expect_code),
        "ICMP code in the Error value: {err:?}"
    );
}

#[test]
fn icmp_admin_prohibited_v4_answers_97() {
    icmp_error(
        "e2e-icmp4",
        "198.51.100.99:80".parse().unwrap(),
        "-4",
        "net.ipv4.ip_forward",
        13,
    );
}

#[test]
fn icmp_admin_prohibited_v6_answers_97() {
    icmp_error(
        "e2e-icmp6",
        "[2001:db8:100::99]:80".parse().unwrap(),
        "-6",
        "net.ipv6.conf.all.forwarding",
        1,
    );
}

#[test]
fn mptcp_v4_client_to_v6_server() {
    // Connect carries a native IPv6 address from an IPv4 client; the IPv6 pool is used.
    if skip_unless_root("e2e-v4v6") {
        return;
    }
    let lab = Lab::new("e2e-v4v6").expect("lab");
    let mut spec = ClientSpec::convert(SocketAddr::new(SERVER_V6.into(), SERVER_PORT))
        .up(2 * MB)
        .down(2 * MB);
    spec.target = SocketAddr::new(CONVERTER_V4.into(), CONVERT_PORT);
    check_run(&lab, &spec, 2 * MB, 2 * MB, Some(false));
}

#[test]
fn request_in_syn_reaches_server_first() {
    // The client's command line follows the Convert TLVs in the SYN (RFC 8803 §4.3):
    // the engine holds it and delivers it right after the server's SYN-ACK.
    if skip_unless_root("e2e-syn-data") {
        return;
    }
    let lab = Lab::new("e2e-syn-data").expect("lab");
    let spec = ClientSpec::convert(SocketAddr::new(SERVER_V4.into(), SERVER_PORT))
        .request_in_syn(true)
        .up(MB)
        .down(MB);
    check_run(&lab, &spec, MB, MB, Some(false));
}

#[test]
fn plain_tcp_convert_client() {
    // RFC 8803 without MPTCP: the reply rides in the SYN-ACK.
    if skip_unless_root("e2e-plain") {
        return;
    }
    let lab = Lab::new("e2e-plain").expect("lab");
    let spec = ClientSpec::convert(SocketAddr::new(SERVER_V4.into(), SERVER_PORT))
        .mptcp(false)
        .up(4 * MB)
        .down(4 * MB);
    check_run(&lab, &spec, 4 * MB, 4 * MB, None);
}

/// Runs one client through the engine and checks the transfer and the fallback state
/// (`None`: not an MPTCP socket, so not checked).
fn check_run(
    lab: &Lab,
    spec: &ClientSpec,
    up: u64,
    down: u64,
    fallback: Option<bool>,
) -> hac_harness::ClientResult {
    let ((res, srv), t) = lab.run_with(EngineTranslator::new(), |lab| {
        let res = lab.run_client(spec).expect("client");
        let srv = lab.wait_server_record(&res.id, Duration::from_secs(20));
        (res, srv)
    });
    assert_eq!(
        res.convert,
        ConvertOutcome::Ok,
        "{res:?}\ncounters: {:?}",
        t.engine.counters()
    );
    let srv = srv.unwrap_or_else(|| {
        panic!(
            "no server record: {res:?}\ncounters: {:?}",
            t.engine.counters()
        )
    });
    res.check_transfer(&srv, up, down)
        .unwrap_or_else(|e| panic!("{e}: {res:?}"));
    if fallback.is_some() {
        assert_eq!(res.fallback, fallback, "{res:?}");
    }
    res
}

/// Drops the first `n` packets the engine sends toward the server.
struct DropFirstCore {
    inner: EngineTranslator,
    n: usize,
}

impl Translator for DropFirstCore {
    fn on_packet(&mut self, now_us: u64, s: Side, pkt: Vec<u8>, out: &mut Vec<(Side, Vec<u8>)>) {
        let start = out.len();
        self.inner.on_packet(now_us, s, pkt, out);
        self.filter(start, out);
    }

    fn on_tick(&mut self, now_us: u64, out: &mut Vec<(Side, Vec<u8>)>) {
        let start = out.len();
        self.inner.on_tick(now_us, out);
        self.filter(start, out);
    }
}

impl DropFirstCore {
    fn filter(&mut self, start: usize, out: &mut Vec<(Side, Vec<u8>)>) {
        let mut i = start;
        while i < out.len() {
            if self.n > 0 && out[i].0 == Side::Core {
                self.n -= 1;
                out.remove(i);
            } else {
                i += 1;
            }
        }
    }
}

#[test]
fn lost_downstream_syn_still_delivers() {
    // The downstream SYN is lost: the client's SYN times out (1 s) and Linux resends
    // it without the data; the engine then resends the downstream SYN (RFC 8803 §9.3)
    // and the connection comes up. Observed on Linux 6.18: after a retransmitted TFO
    // SYN whose data our SYN-ACK acknowledges, the client's third ACK carries a
    // DATA_ACK-only DSS instead of MP_CAPABLE with its key, so the engine cannot learn
    // the client's IDSN and falls back to TCP (RFC 8684 §3.1) — the bytes must still
    // arrive exactly (docs/translation.md, "Known client behaviours").
    if skip_unless_root("e2e-syn-lost") {
        return;
    }
    let lab = Lab::new("e2e-syn-lost").expect("lab");
    let spec = ClientSpec::convert(SocketAddr::new(SERVER_V4.into(), SERVER_PORT))
        .up(MB)
        .down(MB);
    let t = DropFirstCore {
        inner: EngineTranslator::new(),
        n: 1,
    };
    let ((res, srv), _) = lab.run_with(t, |lab| {
        let res = lab.run_client(&spec).expect("client");
        let srv = lab.wait_server_record(&res.id, Duration::from_secs(20));
        (res, srv)
    });
    assert_eq!(res.convert, ConvertOutcome::Ok, "{res:?}");
    let srv = srv.expect("server record");
    res.check_transfer(&srv, MB, MB)
        .unwrap_or_else(|e| panic!("{e}: {res:?}"));
    assert!(
        res.fallback.is_some(),
        "MPTCP_INFO must be readable or report the fallback: {res:?}"
    );
}

#[test]
fn download_only_with_request_in_syn() {
    // The most common shape of a real transfer: the request rides in the SYN after the
    // Convert TLVs, then only the server sends.
    if skip_unless_root("e2e-down-only") {
        return;
    }
    let lab = Lab::new("e2e-down-only").expect("lab");
    let spec = ClientSpec::convert(SocketAddr::new(SERVER_V4.into(), SERVER_PORT))
        .request_in_syn(true)
        .down(20 * MB)
        .timeout(Duration::from_secs(20));
    check_run(&lab, &spec, 0, 20 * MB, Some(false));
}

/// A middlebox on the access side that rewrites one payload byte of the `nth`
/// client data segment (≥ 200 bytes; IPv4 or IPv6 without extension headers) and
/// fixes the TCP checksum: only the DSS checksum can see it.
struct RewriteOne {
    inner: EngineTranslator,
    nth: usize,
    seen: usize,
}

impl Translator for RewriteOne {
    fn on_packet(
        &mut self,
        now_us: u64,
        s: Side,
        mut pkt: Vec<u8>,
        out: &mut Vec<(Side, Vec<u8>)>,
    ) {
        let ihl = match pkt.first().map(|b| b >> 4) {
            Some(4) if pkt.len() > 20 => usize::from(pkt[0] & 0xf) * 4,
            Some(6) if pkt.len() > 60 && pkt[6] == 6 => 40,
            _ => 0,
        };
        if s == Side::Access && ihl > 0 && pkt.len() > ihl + 20 {
            let doff = usize::from(pkt[ihl + 12] >> 4) * 4;
            if pkt.len() >= ihl + doff + 200 {
                self.seen += 1;
                if self.seen == self.nth {
                    pkt[ihl + doff + 99] ^= 0x20;
                    pkt[ihl + 16] = 0;
                    pkt[ihl + 17] = 0;
                    let c = if ihl == 40 {
                        let a = |o: usize| {
                            let b: [u8; 16] = pkt[o..o + 16].try_into().expect("16 bytes");
                            std::net::Ipv6Addr::from(b)
                        };
                        hac_wire::checksum::tcp_ipv6(a(8), a(24), &pkt[ihl..])
                    } else {
                        let src = std::net::Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
                        let dst = std::net::Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
                        hac_wire::checksum::tcp_ipv4(src, dst, &pkt[ihl..])
                    };
                    pkt[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
                }
            }
        }
        self.inner.on_packet(now_us, s, pkt, out);
    }

    fn on_tick(&mut self, now_us: u64, out: &mut Vec<(Side, Vec<u8>)>) {
        self.inner.on_tick(now_us, out);
    }
}

/// RFC 8684 §3.7 with a real Linux client on one subflow: a payload rewrite on the
/// access side fails the mapping's DSS checksum; the engine sends MP_FAIL, Linux
/// answers with MP_FAIL and falls back, so does the engine, and the connection
/// completes: every byte arrives (the rewritten one as rewritten, as over plain
/// TCP), the download unchanged.
///
/// Linux (6.12–6.18) sizes its segments without MPTCP options once it has fallen
/// back, yet still puts a DSS (the infinite mapping) on one of them: with the MSS we
/// used to advertise that segment exceeded the MTU, was dropped inside the client
/// and resent at the same size forever — the client's upload stalled ~160 KB after
/// the fallback (`IpFragFails` rising in its namespace) and its application never
/// got to read the EOF. A checksum-enabled connection's SYN-ACK now advertises an MSS
/// with room for the DSS (docs/plan.md, MP_FAIL).
#[test]
fn dss_checksum_failure_falls_back_with_linux() {
    checksum_failure_falls_back("csum-fail", false);
}

/// The same over IPv6 (client and server).
#[test]
fn dss_checksum_failure_falls_back_with_linux_v6() {
    checksum_failure_falls_back("csum-fail6", true);
}

fn checksum_failure_falls_back(tag: &str, v6: bool) {
    if skip_unless_root(tag) {
        return;
    }
    let lab = Lab::new(tag).expect("lab");
    lab.sysctl(Ns::Client, "net.mptcp.checksum_enabled", "1")
        .expect("net.mptcp.checksum_enabled");
    let (up, down) = (2 * MB, 2 * MB);
    let server = if v6 {
        SocketAddr::new(SERVER_V6.into(), SERVER_PORT)
    } else {
        SocketAddr::new(SERVER_V4.into(), SERVER_PORT)
    };
    let mut spec = ClientSpec::convert(server)
        .up(up)
        .down(down)
        .timeout(Duration::from_secs(60));
    if v6 {
        spec.target = SocketAddr::new(CONVERTER_V6.into(), CONVERT_PORT);
    }
    let t = RewriteOne {
        inner: EngineTranslator::new(),
        nth: 40,
        seen: 0,
    };
    let ((res, srv), t) = lab.run_with(t, |lab| {
        let res = lab.run_client(&spec).expect("client");
        let srv = lab.wait_server_record(&res.id, Duration::from_secs(20));
        (res, srv)
    });
    let c = t.inner.engine.counters().clone();
    eprintln!("{c:?}\n{res:?}");
    assert_eq!(res.convert, ConvertOutcome::Ok, "{res:?}");
    let srv = srv.expect("server record");
    eprintln!("{srv:?}");
    eprintln!("client MPTcpExt: {:?}", lab.mptcp_counters(Ns::Client));
    assert_eq!(c.dss_checksum_failed, 1, "{c:?}");
    assert_eq!(c.mp_fail_sent, 1, "{c:?}");
    assert!(
        c.mp_fail_received >= 1,
        "Linux did not answer MP_FAIL: {c:?}"
    );
    assert!(c.fallbacks >= 1, "no fallback: {c:?}");
    assert_eq!(res.fallback, Some(true), "Linux did not fall back: {res:?}");
    assert!(
        res.error.is_none() && srv.error.is_none(),
        "{res:?}\n{srv:?}"
    );
    assert_eq!((res.bytes_sent, srv.bytes_recv), (up, up));
    assert_ne!(
        res.sent_sha256, srv.recv_sha256,
        "the rewrite reached the server"
    );
    assert_eq!((res.bytes_recv, srv.bytes_sent), (down, down));
    assert_eq!(res.recv_sha256, srv.sent_sha256, "download changed");
}

/// RFC 8803 §5.1 (fig. 11) with a Linux MPTCP server: the client's Extended Connect
/// lists MPTCP, so the engine offers MP_CAPABLE in its SYN; the server's SYN-ACK
/// options (its MP_CAPABLE with its key) come back in the Extended TCP Header; our
/// handshake ACK carries no MP_CAPABLE and Linux falls back to TCP
/// (`MPCapableFallbackACK`); the transfer is converted as usual.
fn mptcp_server_is_reported(tag: &str, dest: SocketAddr, v6_client: bool) {
    if skip_unless_root(tag) {
        return;
    }
    let mut lab = Lab::new(tag).expect("lab");
    lab.restart_server(&["--mptcp"]).expect("MPTCP server");
    let mut spec = ClientSpec::convert(dest)
        .request_in_syn(true)
        .up(MB)
        .down(MB);
    spec.convert = Some(hac_harness::convert_extended_connect_request(dest, &[30]));
    if v6_client {
        spec.target = SocketAddr::new(CONVERTER_V6.into(), CONVERT_PORT);
    }
    let res = check_run(&lab, &spec, MB, MB, Some(false));
    // Extended TCP Header (type 20): two unassigned bytes, then the server's
    // SYN-ACK options; an MP_CAPABLE is kind 30 with subtype 0.
    let ext = res
        .tlvs
        .iter()
        .find(|(ty, _)| *ty == 20)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no Extended TCP Header: {res:?}"));
    let opts = &ext[2..];
    // The raw MPTCP option includes its kind and length bytes.
    let mpc = hac_wire::tcp_options::TcpOptions::new(opts).any(|o| {
        matches!(o, Ok(hac_wire::tcp_options::TcpOption::Mptcp(m)) if m.get(2).is_some_and(|b| b >> 4 == 0))
    });
    assert!(mpc, "no MP_CAPABLE in the server's options: {opts:02x?}");
    let counters = lab.mptcp_counters(Ns::Server).expect("nstat");
    let get = |k: &str| counters.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
    assert!(get("MPTcpExtMPCapableSYNRX") >= 1, "{counters:?}");
    assert!(get("MPTcpExtMPCapableFallbackACK") >= 1, "{counters:?}");
}

#[test]
fn mptcp_server_is_reported_in_the_extended_tcp_header_v4() {
    mptcp_server_is_reported(
        "e2e-mpsrv4",
        SocketAddr::new(SERVER_V4.into(), SERVER_PORT),
        false,
    );
}

#[test]
fn mptcp_server_is_reported_in_the_extended_tcp_header_v6() {
    mptcp_server_is_reported(
        "e2e-mpsrv6",
        SocketAddr::new(SERVER_V6.into(), SERVER_PORT),
        true,
    );
}

/// Zero windows both ways with real Linux peers: an application that stops
/// reading closes its receive window, the other end's TCP probes it (Linux MPTCP's
/// probe is one old byte, DSN snd_una − 1, at a new SSN: `simulator.rs::
/// a_zero_window_probe_before_the_infinite_mapping_is_not_data`), and the
/// transfer resumes byte-exact when it reads again.
fn stops_reading(tag: &str, client_pauses: bool) {
    if skip_unless_root(tag) {
        return;
    }
    let lab = Lab::new(tag).expect("lab");
    let pause = Duration::from_millis(1500);
    let server = SocketAddr::new(SERVER_V4.into(), SERVER_PORT);
    let spec = if client_pauses {
        ClientSpec::convert(server)
            .down(8 * MB)
            .rcvbuf(64 << 10)
            .pause(MB, pause)
    } else {
        // The server's receive buffer, small: its window closes at once.
        lab.sysctl(Ns::Server, "net.ipv4.tcp_rmem", "4096 32768 65536")
            .expect("tcp_rmem");
        ClientSpec::convert(server)
            .up(8 * MB)
            .server_pause(MB, pause)
    }
    .late_shutdown(client_pauses)
    .timeout(Duration::from_secs(40));
    let (up, down) = (spec.up, spec.down);
    let res = check_run(&lab, &spec, up, down, Some(false));
    assert!(res.elapsed >= pause, "no pause happened: {res:?}");
}

#[test]
fn a_client_that_stops_reading_gets_every_byte() {
    stops_reading("e2e-rdpause", true);
}

#[test]
fn a_server_that_stops_reading_gets_every_byte() {
    stops_reading("e2e-srvpause", false);
}
