//! How the management thread reaches the workers without locks on the packet path.
//!
//! * **Publishing a change** (epoch/RCU style): the management thread builds the
//!   whole new [`Published`] (engine configuration, compiled policy, the host view
//!   for ARP/ND and routing), stores it, then bumps `generation`. A worker compares
//!   one atomic against the generation it runs, between bursts; only when they
//!   differ does it take the (uncontended, management-written) slot's lock once to
//!   clone the `Arc`, and swap it in. Nothing else on the packet path changes.
//! * **Queries** (sessions, one session, abort, revoke, counters): each worker has a
//!   bounded request queue (crossbeam `ArrayQueue`); the worker answers a few per
//!   round between bursts through a oneshot channel. A full queue is an error for
//!   the caller (RESOURCE_EXHAUSTED), never a wait on the worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use hac_core::policy::PolicyCounters;
use hac_core::{
    Counters, Engine, EngineConfig, Instant, PacketBuf, Policy, SessionFilter, SessionId,
    SessionInfo, SubflowInfo,
};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::config::Config;

/// Requests waiting per worker at most.
pub const QUERY_QUEUE: usize = 64;
/// Requests a worker answers per polling round at most.
pub const QUERIES_PER_ROUND: usize = 4;
/// Sessions a worker snapshots per request (callers page).
pub const SESSIONS_PER_PAGE: usize = 256;

/// A configuration generation as the workers take it.
#[derive(Debug)]
pub struct Published {
    /// Bumped by every accepted change.
    pub generation: u64,
    /// The engine configuration for new connections.
    pub engine: EngineConfig,
    /// The policy for new connections.
    pub policy: Arc<Policy>,
    /// Ports, routes, and the addresses the appliance answers for (current plus
    /// those removed since start: live connections may still use them).
    pub host: Arc<Config>,
}

/// What a worker reports about itself.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    /// Engine counters.
    pub counters: Counters,
    /// Policy decisions.
    pub policy: PolicyCounters,
    /// Live connections.
    pub connections: u64,
    /// The generation it runs.
    pub generation: u64,
    /// Connections and ports of the subscriber asked about, if any.
    pub subscriber: (u64, u64),
    /// Ports held per pool prefix asked about.
    pub pool_ports: Vec<u64>,
}

/// A request to a worker.
#[derive(Debug)]
pub enum Query {
    /// A page of sessions from a slot on.
    Sessions {
        /// Filter.
        filter: SessionFilter,
        /// First slot.
        from: u32,
        /// At most this many.
        limit: usize,
        /// Answer: the page, and where to continue.
        reply: oneshot::Sender<(Vec<SessionInfo>, Option<u32>)>,
    },
    /// One session and its subflows.
    Session {
        /// Which.
        id: SessionId,
        /// Answer.
        reply: oneshot::Sender<Option<(SessionInfo, Vec<SubflowInfo>)>>,
    },
    /// Abort one session.
    Abort {
        /// Which.
        id: SessionId,
        /// Whether it existed.
        reply: oneshot::Sender<bool>,
    },
    /// Abort (or count) the sessions the current policy refuses.
    Revoke {
        /// Only count.
        dry_run: bool,
        /// How many.
        reply: oneshot::Sender<usize>,
    },
    /// Counters, and usage of a subscriber / pool prefixes.
    Report {
        /// Subscriber to count (None: none).
        subscriber: Option<String>,
        /// Pool prefixes to count ports in.
        pools: Vec<hac_core::pool::Prefix>,
        /// Answer.
        reply: oneshot::Sender<WorkerReport>,
    },
}

/// The management side's handle on the workers.
#[derive(Debug)]
pub struct Control {
    generation: AtomicU64,
    current: Mutex<Arc<Published>>,
    queues: Vec<ArrayQueue<Query>>,
}

impl Control {
    /// Control of `workers` workers, starting with `first`.
    #[must_use]
    pub fn new(workers: usize, first: Published) -> Control {
        Control {
            generation: AtomicU64::new(first.generation),
            current: Mutex::new(Arc::new(first)),
            queues: (0..workers).map(|_| ArrayQueue::new(QUERY_QUEUE)).collect(),
        }
    }

    /// Number of workers.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.queues.len()
    }

    /// The configuration generation published last.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The configuration published last.
    #[must_use]
    pub fn current(&self) -> Arc<Published> {
        Arc::clone(&self.current.lock())
    }

    /// Publishes a new configuration (its generation must be the next one).
    pub fn publish(&self, p: Published) {
        let g = p.generation;
        *self.current.lock() = Arc::new(p);
        self.generation.store(g, Ordering::Release);
    }

    /// Sends a request to worker `w`; gives it back when the queue is full.
    pub fn send(&self, w: usize, q: Query) -> Result<(), Query> {
        match self.queues.get(w) {
            Some(queue) => queue.push(q),
            None => Err(q),
        }
    }

    /// Worker side: a newer configuration than `running`, if one was published.
    #[inline]
    #[must_use]
    pub fn newer_than(&self, running: u64) -> Option<Arc<Published>> {
        if self.generation.load(Ordering::Acquire) == running {
            return None;
        }
        Some(self.current())
    }

    /// Worker side: the next request for worker `w`.
    #[inline]
    #[must_use]
    pub fn next_query(&self, w: usize) -> Option<Query> {
        self.queues.get(w).and_then(ArrayQueue::pop)
    }
}

/// Worker side: answers one request from the worker's engine (between bursts).
/// A caller that went away is not an error.
pub fn answer<P: PacketBuf>(engine: &mut Engine<P>, generation: u64, q: Query, now: Instant) {
    match q {
        Query::Sessions {
            filter,
            from,
            limit,
            reply,
        } => {
            let mut out = Vec::new();
            let next = engine.sessions(now, &filter, from, limit.min(SESSIONS_PER_PAGE), &mut out);
            let _ = reply.send((out, next));
        }
        Query::Session { id, reply } => {
            let _ = reply.send(engine.session(now, id));
        }
        Query::Abort { id, reply } => {
            let _ = reply.send(engine.abort_session(now, id));
        }
        Query::Revoke { dry_run, reply } => {
            let _ = reply.send(engine.revoke(now, dry_run));
        }
        Query::Report {
            subscriber,
            pools,
            reply,
        } => {
            let _ = reply.send(WorkerReport {
                counters: engine.counters().clone(),
                policy: engine.policy_counters().clone(),
                connections: engine.connections() as u64,
                generation,
                subscriber: subscriber
                    .as_deref()
                    .map_or((0, 0), |s| engine.subscriber_usage(s)),
                pool_ports: pools.iter().map(|p| engine.pool_ports_in_use(p)).collect(),
            });
        }
    }
}

/// Worker side: takes a published configuration into the engine. It was validated
/// whole before it was published, so a refusal here is a bug; the worker then keeps
/// its previous configuration (logged).
pub fn apply<P: PacketBuf>(engine: &mut Engine<P>, p: &Published) {
    if let Err(e) = engine.reconfigure(p.engine.clone()) {
        tracing::error!(
            shard = engine.shard(),
            generation = p.generation,
            "configuration refused: {e}"
        );
    }
    engine.set_policy(Arc::clone(&p.policy));
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::net::{Ipv4Addr, SocketAddr};

    use crossbeam_queue::ArrayQueue;
    use hac_core::policy::PolicySpec;
    use hac_core::{State, VecPacket};
    use hac_wire::ethernet::{EtherType, EthernetAddress, EthernetRepr};
    use hac_wire::ipv4::{self, Ipv4Repr};
    use hac_wire::seq::SeqNum;
    use hac_wire::tcp::{Flags, TcpRepr};

    use super::*;
    use crate::config::tests::LAB;
    use crate::runtime::{BURST, Nic, Worker};

    /// Frames pushed into `rxq[port]` are received; sent frames are dropped.
    #[derive(Default)]
    struct QueueNic {
        rxq: Vec<VecDeque<Vec<u8>>>,
    }

    impl Nic for QueueNic {
        type Buf = VecPacket;
        fn rx(&mut self, port: usize, out: &mut Vec<VecPacket>) {
            while out.len() < BURST {
                let Some(f) = self.rxq[port].pop_front() else {
                    break;
                };
                out.push(VecPacket::from_bytes(&f));
            }
        }
        fn tx(&mut self, _port: usize, pkts: &mut Vec<VecPacket>) {
            pkts.clear();
        }
        fn alloc(&mut self) -> Option<VecPacket> {
            Some(VecPacket::empty())
        }
        fn mac(&self, port: usize) -> EthernetAddress {
            EthernetAddress([2, 0, 0, 0, 0, port as u8 + 1])
        }
    }

    /// An Ethernet frame with a plain-TCP Convert SYN from `client` to the service
    /// 192.0.2.1:5124 asking for `target`.
    fn convert_syn(client: SocketAddr, target: SocketAddr) -> Vec<u8> {
        let payload = hac_harness::convert_connect_request(target);
        let (IpAddr::V4(src), Ok(dst)) = (client.ip(), "192.0.2.1".parse::<Ipv4Addr>()) else {
            panic!("v4 only")
        };
        let tcp_len = 20 + payload.len();
        let mut f = vec![0u8; 14 + 20 + tcp_len];
        EthernetRepr {
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 0x99]),
            vlan: None,
            inner_vlan: None,
            ethertype: EtherType::IPV4,
        }
        .emit(&mut f)
        .unwrap();
        Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: ipv4::PROTO_TCP,
            payload_len: tcp_len,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
        }
        .emit(&mut f[14..])
        .unwrap();
        TcpRepr {
            src_port: client.port(),
            dst_port: 5124,
            seq_number: SeqNum(1000),
            ack_number: SeqNum(0),
            flags: Flags::SYN,
            window_len: 65535,
            urgent_at: 0,
            options: &[],
            payload_len: payload.len(),
        }
        .emit(&mut f[34..])
        .unwrap();
        f[54..].copy_from_slice(&payload);
        let c = hac_wire::checksum::tcp_ipv4(src, dst, &f[34..]);
        f[50..52].copy_from_slice(&c.to_be_bytes());
        f
    }

    use std::net::IpAddr;

    fn published(cfg: &Arc<Config>, generation: u64, spec: PolicySpec) -> Published {
        Published {
            generation,
            engine: cfg.engine.clone(),
            policy: Arc::new(Policy::new(spec).unwrap()),
            host: Arc::clone(cfg),
        }
    }

    /// One request answered by one polling round.
    fn ask<T>(
        w: &mut Worker<QueueNic>,
        ctl: &Control,
        now: u64,
        make: impl FnOnce(oneshot::Sender<T>) -> Query,
    ) -> T {
        let (tx, mut rx) = oneshot::channel();
        assert!(ctl.send(0, make(tx)).is_ok());
        w.poll(|| Instant(now));
        rx.try_recv().expect("answered between bursts")
    }

    #[test]
    fn worker_takes_new_policy_between_bursts_and_answers_session_queries() {
        let cfg = Arc::new(Config::parse(LAB).unwrap());
        let engine = Engine::new(cfg.engine.clone(), 0, 1, 1, Instant(0)).unwrap();
        let inboxes = vec![Arc::new(ArrayQueue::new(64))];
        let nic = QueueNic {
            rxq: vec![VecDeque::new(), VecDeque::new()],
        };
        let mut w = Worker::new(
            0,
            nic,
            Arc::clone(&cfg),
            engine,
            Arc::default(),
            &inboxes,
            Arc::default(),
        );
        let ctl = Arc::new(Control::new(1, published(&cfg, 1, PolicySpec::default())));
        w.attach_control(Arc::clone(&ctl));
        w.poll(|| Instant(1));
        assert_eq!(w.generation(), 1);

        // A connection under the first policy.
        let server: SocketAddr = "198.51.100.2:8080".parse().unwrap();
        let c1: SocketAddr = "198.18.1.2:40000".parse().unwrap();
        w.nic_mut().rxq[0].push_back(convert_syn(c1, server));
        w.poll(|| Instant(10));
        let (page, next) = ask(&mut w, &ctl, 20, |reply| Query::Sessions {
            filter: SessionFilter::default(),
            from: 0,
            limit: 10,
            reply,
        });
        assert_eq!(next, None);
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].client, c1);
        assert_eq!(page[0].state, State::SynSent);
        let id = page[0].id;
        let one = ask(&mut w, &ctl, 30, |reply| Query::Session { id, reply });
        assert_eq!(one.map(|(s, f)| (s.server, f.len())), Some((server, 1)));

        // A policy refusing unlisted clients: published, taken at the next round;
        // the live connection stays, a new one is refused (Convert error 32).
        ctl.publish(published(
            &cfg,
            2,
            PolicySpec {
                allow_unlisted_clients: false,
                ..PolicySpec::default()
            },
        ));
        let c2: SocketAddr = "198.18.1.3:40000".parse().unwrap();
        w.nic_mut().rxq[0].push_back(convert_syn(c2, server));
        w.poll(|| Instant(40));
        assert_eq!(w.generation(), 2);
        let r = ask(&mut w, &ctl, 50, |reply| Query::Report {
            subscriber: None,
            pools: Vec::new(),
            reply,
        });
        assert_eq!(r.policy.denied_client, 1);
        assert_eq!(r.generation, 2);
        let (page, _) = ask(&mut w, &ctl, 60, |reply| Query::Sessions {
            filter: SessionFilter::default(),
            from: 0,
            limit: 10,
            reply,
        });
        assert!(
            page.iter()
                .any(|s| s.client == c1 && s.state == State::SynSent)
        );
        assert!(
            page.iter()
                .any(|s| s.client == c2 && s.state == State::ReplyClose)
        );

        // Revoke on request; abort of one session by id.
        assert_eq!(
            ask(&mut w, &ctl, 70, |reply| Query::Revoke {
                dry_run: true,
                reply
            }),
            1
        );
        assert!(ask(&mut w, &ctl, 80, |reply| Query::Abort { id, reply }));
        assert!(!ask(&mut w, &ctl, 90, |reply| Query::Abort { id, reply }));
    }

    #[test]
    fn a_full_queue_refuses_instead_of_waiting() {
        let cfg = Arc::new(Config::parse(LAB).unwrap());
        let ctl = Control::new(1, published(&cfg, 1, PolicySpec::default()));
        for _ in 0..QUERY_QUEUE {
            let (tx, _rx) = oneshot::channel();
            assert!(
                ctl.send(
                    0,
                    Query::Revoke {
                        dry_run: true,
                        reply: tx
                    }
                )
                .is_ok()
            );
        }
        let (tx, _rx) = oneshot::channel();
        assert!(
            ctl.send(
                0,
                Query::Revoke {
                    dry_run: true,
                    reply: tx
                }
            )
            .is_err()
        );
        let (tx, _rx) = oneshot::channel();
        assert!(
            ctl.send(
                5,
                Query::Revoke {
                    dry_run: true,
                    reply: tx
                }
            )
            .is_err(),
            "no worker 5"
        );
    }
}
