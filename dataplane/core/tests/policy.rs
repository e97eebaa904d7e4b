//! The management plane's hold on the engine (issue 6), by state: authorization and
//! limits at connection creation (RFC 8803 §6.2.8 codes 32 and 64), policy and
//! configuration swaps that leave live connections running, revocation on request,
//! session snapshots and aborting one connection.

mod sim;

use std::net::SocketAddr;
use std::sync::Arc;

use hac_core::PacketBuf as _;
use hac_core::policy::{DestinationRule, Limits, RuleAction, SubscriberSpec};
use hac_core::pool::Prefix;
use hac_core::{
    Action, Engine, Instant, Mode, Policy, PolicySpec, Port, SessionFilter, State, VecPacket,
};
use hac_wire::seq::SeqNum;
use hac_wire::tcp::Flags;
use sim::*;

fn pfx(s: &str) -> Prefix {
    let (a, l) = s.split_once('/').unwrap();
    Prefix {
        addr: a.parse().unwrap(),
        len: l.parse().unwrap(),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn subscriber(name: &str, prefixes: &[&str], limits: Option<Limits>) -> SubscriberSpec {
    SubscriberSpec {
        name: name.into(),
        prefixes: prefixes.iter().map(|p| pfx(p)).collect(),
        limits,
        scheduler: None,
        primary_access: Vec::new(),
    }
}

fn policy(spec: PolicySpec) -> Arc<Policy> {
    Arc::new(Policy::new(spec).expect("valid policy"))
}

fn engine() -> Engine<VecPacket> {
    Engine::new(engine_config(), 0, 1, 9, Instant(0)).unwrap()
}

/// What the engine answered a plain-TCP Convert SYN with.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// A downstream SYN from this pool address.
    ServerSyn(SocketAddr),
    /// A SYN-ACK carrying this Convert error.
    Error(u8),
    /// Nothing (dropped).
    Nothing,
}

/// A plain-TCP Convert SYN from `client` (sequence number 1000) asking for `target`.
fn convert_syn_packet(client: SocketAddr, target: SocketAddr) -> VecPacket {
    let service = if client.is_ipv6() {
        SERVICE_V6
    } else {
        SERVICE_V4
    };
    let b = build(
        client,
        service,
        SeqNum(1000),
        SeqNum(0),
        Flags::SYN,
        65535,
        &[],
        &convert_request(target),
    );
    VecPacket::from_bytes(&b)
}

fn convert_syn(
    e: &mut Engine<VecPacket>,
    now: u64,
    client: SocketAddr,
    target: SocketAddr,
) -> Answer {
    let mut p = convert_syn_packet(client, target);
    let action = e.handle_packet(Instant(now), Port::Access, &mut p);
    let mut buf = vec![0u8; 2048];
    let mut answer = Answer::Nothing;
    while let Some(t) = e.poll_transmit(Instant(now), &mut buf) {
        let pkt = parse(&buf[..t.len]).unwrap();
        match t.port {
            Port::Core if pkt.is_syn() => answer = Answer::ServerSyn(pkt.src),
            Port::Access => {
                if let Some(code) = convert_error(&pkt.payload) {
                    answer = Answer::Error(code);
                }
            }
            Port::Core => {}
        }
    }
    if answer == Answer::Nothing {
        assert!(matches!(action, Action::Drop(_)), "{action:?}");
    }
    answer
}

const SERVER: &str = "192.0.2.10:443";

#[test]
fn unlisted_client_gets_32_after_a_policy_change_and_a_listed_one_still_works() {
    let mut e = engine();
    assert!(matches!(
        convert_syn(&mut e, 0, sa("198.18.2.2:1000"), sa(SERVER)),
        Answer::ServerSyn(_)
    ));
    e.set_policy(policy(PolicySpec {
        allow_unlisted_clients: false,
        subscribers: vec![subscriber("home", &["198.18.1.0/24"], None)],
        ..PolicySpec::default()
    }));
    assert_eq!(
        convert_syn(&mut e, 10, sa("198.18.2.2:1001"), sa(SERVER)),
        Answer::Error(32)
    );
    assert!(matches!(
        convert_syn(&mut e, 20, sa("198.18.1.2:1000"), sa(SERVER)),
        Answer::ServerSyn(_)
    ));
    assert_eq!(e.policy_counters().denied_client, 1);
    // The first connection, made before the change, is still there.
    let mut all = Vec::new();
    e.sessions(Instant(30), &SessionFilter::default(), 0, 100, &mut all);
    let pending: Vec<_> = all.iter().filter(|s| s.state == State::SynSent).collect();
    let clients: Vec<_> = pending.iter().map(|s| s.client).collect();
    assert_eq!(clients, [sa("198.18.2.2:1000"), sa("198.18.1.2:1000")]);
    assert_eq!(pending[1].subscriber.as_deref(), Some("home"));
    assert_eq!(pending[0].subscriber, None);
    // The refused request is closing with its error reply.
    assert!(
        all.iter()
            .any(|s| s.state == State::ReplyClose && s.client == sa("198.18.2.2:1001"))
    );
}

#[test]
fn destination_rules_and_private_ranges_answer_32() {
    let mut e = engine();
    e.set_policy(policy(PolicySpec {
        deny_private_destinations: true,
        destination_rules: vec![
            DestinationRule {
                prefix: pfx("192.0.2.0/24"),
                action: RuleAction::Deny,
            },
            DestinationRule {
                prefix: pfx("10.20.0.0/16"),
                action: RuleAction::Allow,
            },
        ],
        ..PolicySpec::default()
    }));
    let c = sa("198.18.1.2:1000");
    assert_eq!(convert_syn(&mut e, 0, c, sa(SERVER)), Answer::Error(32));
    assert_eq!(
        convert_syn(&mut e, 1, sa("198.18.1.2:1001"), sa("10.1.1.1:80")),
        Answer::Error(32)
    );
    assert!(matches!(
        convert_syn(&mut e, 2, sa("198.18.1.2:1002"), sa("10.20.1.1:80")),
        Answer::ServerSyn(_)
    ));
    // The appliance's own pool address: a loop, refused whatever the rules.
    assert_eq!(
        convert_syn(&mut e, 3, sa("198.18.1.2:1003"), sa("203.0.113.1:80")),
        Answer::Error(32)
    );
    assert_eq!(e.policy_counters().denied_destination, 2);
}

#[test]
fn connection_and_rate_limits_answer_64() {
    let mut e = engine();
    e.set_policy(policy(PolicySpec {
        default_limits: Limits {
            max_connections: 2,
            ..Limits::default()
        },
        ..PolicySpec::default()
    }));
    let c = |p: u16| SocketAddr::new("198.18.1.2".parse().unwrap(), p);
    assert!(matches!(
        convert_syn(&mut e, 0, c(1), sa(SERVER)),
        Answer::ServerSyn(_)
    ));
    assert!(matches!(
        convert_syn(&mut e, 0, c(2), sa(SERVER)),
        Answer::ServerSyn(_)
    ));
    assert_eq!(convert_syn(&mut e, 0, c(3), sa(SERVER)), Answer::Error(64));
    // Another client is another subscriber (single-proxy mode).
    assert!(matches!(
        convert_syn(&mut e, 0, sa("198.18.1.3:1"), sa(SERVER)),
        Answer::ServerSyn(_)
    ));
    assert_eq!(e.policy_counters().limit_connections, 1);
    // A pending connection that times out (no server answer) frees its slot.
    e.handle_timeout(Instant(5_000_000));
    let mut out = Vec::new();
    e.sessions(
        Instant(5_000_000),
        &SessionFilter::default(),
        0,
        100,
        &mut out,
    );
    assert!(out.iter().all(|s| s.state != State::SynSent), "{out:?}");
    e.handle_timeout(Instant(600_000_000));
    assert!(matches!(
        convert_syn(&mut e, 600_000_000, c(4), sa(SERVER)),
        Answer::ServerSyn(_)
    ));

    let mut e = engine();
    e.set_policy(policy(PolicySpec {
        default_limits: Limits {
            max_new_per_second: 2,
            ..Limits::default()
        },
        ..PolicySpec::default()
    }));
    assert!(matches!(
        convert_syn(&mut e, 0, c(1), sa(SERVER)),
        Answer::ServerSyn(_)
    ));
    assert!(matches!(
        convert_syn(&mut e, 1, c(2), sa(SERVER)),
        Answer::ServerSyn(_)
    ));
    assert_eq!(convert_syn(&mut e, 2, c(3), sa(SERVER)), Answer::Error(64));
    assert!(matches!(
        convert_syn(&mut e, 600_000, c(4), sa(SERVER)),
        Answer::ServerSyn(_)
    ));
    assert_eq!(e.policy_counters().limit_rate, 1);
}

#[test]
fn dual_proxy_pairs_and_limits_a_household_across_its_access_addresses() {
    let mut e = engine();
    let home = subscriber(
        "cpe-1",
        &["198.18.1.2/32", "198.18.2.2/32"],
        Some(Limits {
            max_connections: 2,
            ..Limits::default()
        }),
    );
    e.set_policy(policy(PolicySpec {
        mode: Mode::DualProxy,
        subscribers: vec![home],
        ..PolicySpec::default()
    }));
    let Answer::ServerSyn(a) = convert_syn(&mut e, 0, sa("198.18.1.2:1"), sa(SERVER)) else {
        panic!("DSL address refused")
    };
    let Answer::ServerSyn(b) = convert_syn(&mut e, 0, sa("198.18.2.2:1"), sa(SERVER)) else {
        panic!("LTE address refused")
    };
    assert_eq!(a.ip(), b.ip(), "one external address for the household");
    assert_eq!(
        convert_syn(&mut e, 0, sa("198.18.1.2:2"), sa(SERVER)),
        Answer::Error(64),
        "the household's limit covers both access addresses"
    );
    assert_eq!(e.subscriber_usage("cpe-1"), (2, 2));
}

#[test]
fn live_connection_survives_policy_and_config_changes_then_revoke_aborts_it() {
    let mut s = Setup::v4().build();
    let done = s.run_until(5 * SEC, |s| {
        s.client.reply().is_some()
            && s.client.fully_established
            && s.server.state == SState::Established
    });
    assert!(done);
    // A policy that refuses this client, and a new service port: new connections
    // only.
    s.engine.set_policy(policy(PolicySpec {
        allow_unlisted_clients: false,
        ..PolicySpec::default()
    }));
    let mut cfg = s.engine.config().clone();
    cfg.service_port = 6000;
    cfg.established_idle = std::time::Duration::from_secs(3 * 3600);
    s.engine.reconfigure(cfg).unwrap();
    let up = vec![7u8; 40_000];
    let down = vec![9u8; 60_000];
    s.client.write(&up);
    s.server.write(&down);
    let done = s.run_until(30 * SEC, |s| {
        s.server.rx.data.len() >= up.len() && s.client.server_bytes().len() >= down.len()
    });
    assert!(done, "transfer stalled after the change");
    s.run_for(SEC);
    s.assert_clean();
    assert_eq!(s.client.server_bytes(), &down[..]);

    let mut out = Vec::new();
    s.engine
        .sessions(Instant(s.now), &SessionFilter::default(), 0, 10, &mut out);
    assert_eq!(out.len(), 1);
    let sess = &out[0];
    assert_eq!(sess.state, State::Established);
    assert!(sess.mptcp);
    assert_eq!(sess.bytes_up, up.len() as u64);
    assert_eq!(sess.bytes_down, down.len() as u64);
    let (info, subflows) = s.engine.session(Instant(s.now), sess.id).unwrap();
    assert_eq!(info.client, CLIENT_V4);
    assert_eq!(subflows.len(), 1);
    let none = SessionFilter {
        server_port: Some(80),
        ..SessionFilter::default()
    };
    let mut filtered = Vec::new();
    s.engine
        .sessions(Instant(s.now), &none, 0, 10, &mut filtered);
    assert!(filtered.is_empty());

    // Only when the operator asks: the connection the policy refuses is aborted.
    assert_eq!(s.engine.revoke(Instant(s.now), true), 1);
    assert_eq!(s.engine.connections(), 1, "a dry run aborts nothing");
    assert_eq!(s.engine.revoke(Instant(s.now), false), 1);
    s.run_for(SEC);
    let rst = s.client.rst.as_ref().expect("client got a RST");
    assert!(rst.fastclose().is_some(), "MP_FASTCLOSE on the MPTCP leg");
    assert!(s.server.rst.is_some(), "server got a RST");
}

#[test]
fn abort_one_session_resets_both_sides() {
    let mut s = Setup::v4().build();
    let done = s.run_until(5 * SEC, |s| {
        s.client.fully_established && s.server.state == SState::Established
    });
    assert!(done);
    let mut out = Vec::new();
    s.engine
        .sessions(Instant(s.now), &SessionFilter::default(), 0, 10, &mut out);
    let id = out[0].id;
    let stale = hac_core::SessionId {
        generation: id.generation + 1,
        ..id
    };
    assert!(
        !s.engine.abort_session(Instant(s.now), stale),
        "wrong generation"
    );
    assert!(s.engine.abort_session(Instant(s.now), id));
    s.run_for(SEC);
    assert!(
        s.client
            .rst
            .as_ref()
            .is_some_and(|r| r.fastclose().is_some())
    );
    assert!(s.server.rst.is_some());
    assert!(
        !s.engine.abort_session(Instant(s.now), id),
        "already aborted"
    );
}

#[test]
fn pool_range_change_is_refused_and_changes_nothing() {
    let mut e = engine();
    let mut cfg = e.config().clone();
    cfg.pool.port_lo = 2000;
    cfg.service_port = 7000;
    let err = e.reconfigure(cfg).unwrap_err();
    assert_eq!(err.field, "pool.ports");
    assert_eq!(e.config().service_port, 5000);
    // New pool prefixes apply to the next allocation.
    let mut cfg = e.config().clone();
    cfg.pool.prefixes = vec![pfx("198.51.100.0/30")];
    e.reconfigure(cfg).unwrap();
    let Answer::ServerSyn(a) = convert_syn(&mut e, 0, sa("198.18.1.2:1"), sa(SERVER)) else {
        panic!()
    };
    assert!(pfx("198.51.100.0/30").contains(a.ip()), "{a}");
}

/// RFC 8803 §6.2.8: Error replies to clients are rate-limited
/// (`EngineConfig::error_replies_per_second`, per shard, a burst of one
/// second's worth). Over the rate a refused request gets a RST, which leaves no
/// connection state behind, where an Error reply holds a slot until its close.
#[test]
fn error_replies_over_the_rate_are_resets_without_state() {
    let mut cfg = engine_config();
    cfg.error_replies_per_second = 2;
    let mut e = Engine::new(cfg, 0, 1, 9, Instant(0)).unwrap();
    // Our own pool address as the destination: a loop, refused with 32.
    let target = sa("203.0.113.1:80");
    let rst = |e: &mut Engine<VecPacket>, now: u64, port: u16| {
        let mut p = convert_syn_packet(sa(&format!("198.18.1.2:{port}")), target);
        let action = e.handle_packet(Instant(now), Port::Access, &mut p);
        assert_eq!(action, Action::Forward(Port::Access), "a RST in place");
        let pkt = parse(p.data()).unwrap();
        assert!(pkt.flags.contains(Flags::RST), "{pkt:?}");
        assert_eq!(pkt.ack, SeqNum(1001 + convert_request(target).len() as u32));
    };
    let c = |p: u16| sa(&format!("198.18.1.2:{p}"));
    assert_eq!(convert_syn(&mut e, 0, c(1000), target), Answer::Error(32));
    assert_eq!(convert_syn(&mut e, 1, c(1001), target), Answer::Error(32));
    rst(&mut e, 2, 1002);
    rst(&mut e, 3, 1003);
    assert_eq!(e.connections(), 2, "the resets left no state");
    // Half a second later, one more reply's worth of credit.
    assert_eq!(
        convert_syn(&mut e, 500_010, c(1004), target),
        Answer::Error(32)
    );
    rst(&mut e, 500_020, 1005);
    assert_eq!(e.counters().error_replies_limited, 3);
    // A request that is not refused is not limited.
    assert!(matches!(
        convert_syn(&mut e, 500_030, c(1006), sa(SERVER)),
        Answer::ServerSyn(_)
    ));
}
