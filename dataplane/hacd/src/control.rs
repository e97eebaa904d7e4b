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
