//! End-to-end checks of the harness itself, with test-only translators (they
//! need root; they skip otherwise).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hac_harness::{
    CLIENT_V4, CLIENT_V6, CLOSED_PORT, CONVERT_PORT, CONVERTER_V4, CONVERTER_V6, ClientSpec,
    ConvertOutcome, Lab, Ns, POOL_V4, POOL_V6, SERVER_PORT, SERVER_V4, SERVER_V6, Side, Translator,
    convert_connect_request, skip_unless_root,
};
use hac_wire::mptcp::{MpCapableForm, MptcpOption};
use hac_wire::tcp_options::{TcpOption, iter as tcp_options};
use hac_wire::{ipv4, ipv6, tcp};

const MB: u64 = 1 << 20;

fn pool_v4() -> Ipv4Addr {
    Ipv4Addr::from(u32::from(POOL_V4) + 1)
}

fn pool_v6() -> Ipv6Addr {
    Ipv6Addr::from(u128::from(POOL_V6) + 1)
}

/// A static NAT that does not speak Convert: client → converter:5124 becomes
/// pool:same-port → server:`server_port`, and back. Checksums are fixed
/// incrementally with `hac_wire`.
#[derive(Debug)]
struct StaticNat {
    server_port: u16,
    translated: u64,
    dropped: u64,
}

impl StaticNat {
    fn new(server_port: u16) -> Self {
        StaticNat {
            server_port,
            translated: 0,
            dropped: 0,
        }
    }

    /// Rewrites ports of the TCP segment in `seg`; returns false if not TCP-ok.
    fn ports(seg: &mut [u8], src: Option<u16>, dst: Option<u16>) -> bool {
        let Ok(mut t) = tcp::Packet::new_checked(seg) else {
            return false;
        };
        if let Some(p) = src {
            t.rewrite_src_port(p);
        }
        if let Some(p) = dst {
            t.rewrite_dst_port(p);
        }
        true
    }

    fn v4(&self, side: Side, pkt: &mut [u8]) -> bool {
        let Ok(mut ip) = ipv4::Packet::new_checked(&mut pkt[..]) else {
            return false;
        };
        if ip.protocol() != ipv4::PROTO_TCP || ip.is_fragment() {
            return false;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let (new_src, new_dst, sport, dport) = match side {
            Side::Access if dst == CONVERTER_V4 && src == CLIENT_V4 => {
                (pool_v4(), SERVER_V4, None, Some(self.server_port))
            }
            Side::Core if src == SERVER_V4 && dst == pool_v4() => {
                (CONVERTER_V4, CLIENT_V4, Some(CONVERT_PORT), None)
            }
            _ => return false,
        };
        {
            let seg = ip.payload_mut();
            if !self.tcp_ports(side, seg, sport, dport) {
                return false;
            }
            let mut t = tcp::Packet::new_unchecked(seg);
            t.update_checksum_for_ipv4_change(src, new_src);
            t.update_checksum_for_ipv4_change(dst, new_dst);
        }
        ip.set_src_addr(new_src);
        ip.set_dst_addr(new_dst);
        true
    }

    /// Checks the segment's ports for `side` and rewrites them (`Self::ports`).
    fn tcp_ports(
        &self,
        side: Side,
        seg: &mut [u8],
        sport: Option<u16>,
        dport: Option<u16>,
    ) -> bool {
        let Ok(t) = tcp::Packet::new_checked(&*seg) else {
            return false;
        };
        let port_ok = match side {
            Side::Access => t.dst_port() == CONVERT_PORT,
            Side::Core => t.src_port() == self.server_port,
        };
        port_ok && Self::ports(seg, sport, dport)
    }

    fn v6(&self, side: Side, pkt: &mut [u8]) -> bool {
        let Ok(mut ip) = ipv6::Packet::new_checked(&mut pkt[..]) else {
            return false;
        };
        if ip.next_header() != ipv4::PROTO_TCP {
            return false;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let (new_src, new_dst, sport, dport) = match side {
            Side::Access if dst == CONVERTER_V6 && src == CLIENT_V6 => {
                (pool_v6(), SERVER_V6, None, Some(self.server_port))
            }
            Side::Core if src == SERVER_V6 && dst == pool_v6() => {
                (CONVERTER_V6, CLIENT_V6, Some(CONVERT_PORT), None)
            }
            _ => return false,
        };
        {
            let seg = ip.payload_mut();
            if !self.tcp_ports(side, seg, sport, dport) {
                return false;
            }
            let mut t = tcp::Packet::new_unchecked(seg);
            t.update_checksum_for_ipv6_change(src, new_src);
            t.update_checksum_for_ipv6_change(dst, new_dst);
        }
        ip.set_src_addr(new_src);
        ip.set_dst_addr(new_dst);
        true
    }
}

impl Translator for StaticNat {
    fn on_packet(
        &mut self,
        _now: u64,
        side: Side,
        mut pkt: Vec<u8>,
        out: &mut Vec<(Side, Vec<u8>)>,
    ) {
        let ok = match pkt.first().map(|b| b >> 4) {
            Some(4) => self.v4(side, &mut pkt),
            Some(6) => self.v6(side, &mut pkt),
            _ => false,
        };
        if ok {
            self.translated += 1;
            let to = match side {
                Side::Access => Side::Core,
                Side::Core => Side::Access,
            };
            out.push((to, pkt));
        } else {
            self.dropped += 1;
        }
    }

    fn on_tick(&mut self, _now: u64, _out: &mut Vec<(Side, Vec<u8>)>) {}
}

/// Verifies IPv4/IPv6 and TCP checksums of every packet it forwards, as a
/// wrapper (a NAT bug would otherwise only show as a stalled transfer).
#[derive(Debug)]
struct Checked<T>(T, u64);

fn checksums_ok(pkt: &[u8]) -> bool {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(ip) = ipv4::Packet::new_checked(pkt) else {
                return false;
            };
            let Ok(t) = tcp::Packet::new_checked(ip.payload()) else {
                return false;
            };
            ip.verify_checksum() && t.verify_checksum_v4(ip.src_addr(), ip.dst_addr())
        }
        Some(6) => {
            let Ok(ip) = ipv6::Packet::new_checked(pkt) else {
                return false;
            };
            let Ok(t) = tcp::Packet::new_checked(ip.payload()) else {
                return false;
            };
            t.verify_checksum_v6(ip.src_addr(), ip.dst_addr())
        }
        _ => false,
    }
}

impl<T: Translator> Translator for Checked<T> {
    fn on_packet(&mut self, now: u64, side: Side, pkt: Vec<u8>, out: &mut Vec<(Side, Vec<u8>)>) {
        let start = out.len();
        self.0.on_packet(now, side, pkt, out);
        self.1 += out[start..]
            .iter()
            .filter(|(_, p)| !checksums_ok(p))
            .count() as u64;
    }
    fn on_tick(&mut self, now: u64, out: &mut Vec<(Side, Vec<u8>)>) {
        self.0.on_tick(now, out);
    }
}

fn nat_transfer(tag: &str, converter: IpAddr, up: u64, down: u64) {
    let lab = Lab::new(tag).expect("lab");
    let target = SocketAddr::new(converter, CONVERT_PORT);
    let spec = ClientSpec::plain_tcp(target)
        .up(up)
        .down(down)
        .timeout(Duration::from_secs(30));
    let (res, nat) = lab.run_with(Checked(StaticNat::new(SERVER_PORT), 0), |lab| {
        lab.run_client(&spec).expect("client")
    });
    let srv = lab
        .wait_server_record(&res.id, Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "no server record; client: {res:?}; log {:?}",
                lab.server_log()
            )
        });
    eprintln!("client {res:?}\nserver {srv:?}\nnat {nat:?}");
    res.check_transfer(&srv, up, down).unwrap();
    assert_eq!(res.convert, ConvertOutcome::NotUsed);
    assert_eq!(res.fallback, None);
    let pool: IpAddr = match converter {
        IpAddr::V4(_) => pool_v4().into(),
        IpAddr::V6(_) => pool_v6().into(),
    };
    assert_eq!(srv.peer.map(|p| p.ip()), Some(pool));
    assert_eq!(srv.peer.map(|p| p.port()), res.local.map(|l| l.port()));
    assert_eq!(nat.1, 0, "translator emitted packets with bad checksums");
    assert!(nat.0.translated > (up + down) / 1500);
}

#[test]
fn nat_v4_1mb_each_way_is_byte_exact() {
    if skip_unless_root("nat_v4_1mb_each_way_is_byte_exact") {
        return;
    }
    nat_transfer("natv4", CONVERTER_V4.into(), MB, MB);
}

#[test]
fn nat_v6_1mb_each_way_is_byte_exact() {
    if skip_unless_root("nat_v6_1mb_each_way_is_byte_exact") {
        return;
    }
    nat_transfer("natv6", CONVERTER_V6.into(), MB, MB);
}

#[test]
fn nat_echo_and_closed_port() {
    if skip_unless_root("nat_echo_and_closed_port") {
        return;
    }
    let lab = Lab::new("natecho").expect("lab");
    let target = SocketAddr::new(CONVERTER_V4.into(), CONVERT_PORT);
    let spec = ClientSpec::plain_tcp(target).up(200_000).echo(true);
    let (res, _) = lab.run_with(StaticNat::new(SERVER_PORT), |lab| {
        lab.run_client(&spec).unwrap()
    });
    let srv = lab
        .wait_server_record(&res.id, Duration::from_secs(10))
        .unwrap();
    res.check_transfer(&srv, 200_000, 200_000).unwrap();
    assert_eq!(res.sent_sha256, res.recv_sha256);

    // Port 9 is closed on the server: the kernel's RST comes back through the NAT.
    let (res, _) = lab.run_with(StaticNat::new(CLOSED_PORT), |lab| {
        lab.run_client(&spec).unwrap()
    });
    let err = res.error.clone().unwrap_or_default();
    assert!(err.contains("ConnectionRefused"), "{res:?}");
    assert!(res.elapsed < Duration::from_secs(5), "{res:?}");
}

/// Keeps the packets from the Access side, answers nothing.
#[derive(Debug, Default)]
struct Capture {
    access: Vec<Vec<u8>>,
}

impl Translator for Capture {
    fn on_packet(&mut self, _now: u64, side: Side, pkt: Vec<u8>, _out: &mut Vec<(Side, Vec<u8>)>) {
        if side == Side::Access && self.access.len() < 64 {
            self.access.push(pkt);
        }
    }
    fn on_tick(&mut self, _now: u64, _out: &mut Vec<(Side, Vec<u8>)>) {}
}

/// Returns (src, dst, tcp segment) of an IPv4/IPv6 TCP packet, checking the
/// TCP checksum.
fn tcp_of(pkt: &[u8]) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
    let (src, dst, seg): (IpAddr, IpAddr, Vec<u8>) = match pkt.first()? >> 4 {
        4 => {
            let ip = ipv4::Packet::new_checked(pkt).ok()?;
            if ip.protocol() != ipv4::PROTO_TCP {
                return None;
            }
            (
                ip.src_addr().into(),
                ip.dst_addr().into(),
                ip.payload().to_vec(),
            )
        }
        6 => {
            let ip = ipv6::Packet::new_checked(pkt).ok()?;
            if ip.next_header() != ipv4::PROTO_TCP {
                return None;
            }
            (
                ip.src_addr().into(),
                ip.dst_addr().into(),
                ip.payload().to_vec(),
            )
        }
        _ => return None,
    };
    let t = tcp::Packet::new_checked(&seg[..]).ok()?;
    let ok = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => t.verify_checksum_v4(s, d),
        (IpAddr::V6(s), IpAddr::V6(d)) => t.verify_checksum_v6(s, d),
        _ => false,
    };
    assert!(ok, "bad TCP checksum from the client");
    let (sp, dp) = (t.src_port(), t.dst_port());
    Some((SocketAddr::new(src, sp), SocketAddr::new(dst, dp), seg))
}

fn mptcp_syn_carries_convert(tag: &str, dest: SocketAddr, request_in_syn: bool) {
    let lab = Lab::new(tag).expect("lab");
    let spec = ClientSpec::convert(dest)
        .request_in_syn(request_in_syn)
        .up(10)
        .timeout(Duration::from_secs(3));
    let (res, cap) = lab.run_with(Capture::default(), |lab| lab.run_client(&spec).unwrap());
    eprintln!("client {res:?}");
    // Nobody answered: the client gives up without a reply.
    assert!(
        matches!(&res.convert, ConvertOutcome::Failed(why) if why.contains("timed out")),
        "{res:?}"
    );
    assert_eq!(res.fallback, None);

    let syns: Vec<_> = cap.access.iter().filter_map(|p| tcp_of(p)).collect();
    let (src, dst, seg) = syns
        .first()
        .cloned()
        .expect("no TCP packet from the client");
    let client_ip: IpAddr = match dest {
        SocketAddr::V4(_) => CLIENT_V4.into(),
        SocketAddr::V6(_) => CLIENT_V6.into(),
    };
    assert_eq!(src.ip(), client_ip);
    assert_eq!(dst, spec.target);
    let t = tcp::Packet::new_checked(&seg[..]).unwrap();
    assert!(t.flags().is_syn_only(), "{:?}", t.flags());

    let mut mp_capable = None;
    let mut tfo = false;
    for opt in tcp_options(t.options()) {
        match opt.unwrap() {
            TcpOption::Mptcp(raw) => mp_capable = Some(MptcpOption::parse(raw).unwrap()),
            TcpOption::FastOpen(_) => tfo = true,
            _ => {}
        }
    }
    let Some(MptcpOption::MpCapable(cap_opt)) = mp_capable else {
        panic!("no MP_CAPABLE in SYN: {mp_capable:?}");
    };
    assert_eq!(cap_opt.version, 1);
    assert_eq!(cap_opt.form, MpCapableForm::Syn);
    assert!(cap_opt.flags.hmac_sha256());
    assert!(!tfo, "TCP_FASTOPEN_NO_COOKIE: no TFO option expected");

    // The payload is the Convert message (+ the command line when in the SYN).
    let payload = t.payload();
    let conv = convert_connect_request(dest);
    assert_eq!(&payload[..conv.len()], &conv[..]);
    let (req, off) = hac_wire::convert::ConnectRequest::parse(payload).unwrap();
    assert_eq!(off, 24);
    assert_eq!(req.connect.unwrap().remote(), dest);
    let rest = std::str::from_utf8(&payload[off..]).unwrap();
    if request_in_syn {
        assert_eq!(
            rest,
            format!("HAC id={} up=10 down=0 seed=1 echo=0\n", res.id)
        );
    } else {
        assert_eq!(rest, "");
    }
    // SYN retransmissions (without data) follow after 1 s.
    let later: Vec<_> = syns[1..].iter().filter(|(s, _, _)| *s == src).collect();
    assert!(
        !later.is_empty(),
        "expected a SYN retransmission within 3 s"
    );
}

#[test]
fn mptcp_client_syn_v4_carries_mp_capable_and_convert() {
    if skip_unless_root("mptcp_client_syn_v4") {
        return;
    }
    mptcp_syn_carries_convert(
        "synv4",
        SocketAddr::new(SERVER_V4.into(), SERVER_PORT),
        false,
    );
}

#[test]
fn mptcp_client_syn_v6_carries_request_in_syn() {
    if skip_unless_root("mptcp_client_syn_v6") {
        return;
    }
    mptcp_syn_carries_convert(
        "synv6",
        SocketAddr::new(SERVER_V6.into(), SERVER_PORT),
        true,
    );
}

#[test]
fn lab_is_cleaned_up_on_drop_and_panic() {
    if skip_unless_root("lab_is_cleaned_up_on_drop_and_panic") {
        return;
    }
    let exists = |name: &str| {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    };
    let lab = Lab::new("cleanup").unwrap();
    let names = [
        lab.ns_name(Ns::Client).to_owned(),
        lab.ns_name(Ns::Server).to_owned(),
    ];
    assert!(names.iter().all(|n| exists(n)));
    let c = lab.mptcp_counters(Ns::Client).unwrap();
    assert!(
        c.iter().any(|(k, _)| k == "MPTcpExtMPCapableSYNTX"),
        "{c:?}"
    );
    drop(lab);
    assert!(names.iter().all(|n| !exists(n)));

    let mut names = Vec::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new("cleanuppanic").unwrap();
        names.push(lab.ns_name(Ns::Client).to_owned());
        names.push(lab.ns_name(Ns::Server).to_owned());
        lab.run_with(Capture::default(), |_| panic!("deliberate"));
    }));
    assert!(r.is_err());
    assert_eq!(names.len(), 2);
    assert!(names.iter().all(|n| !exists(n)));
}
