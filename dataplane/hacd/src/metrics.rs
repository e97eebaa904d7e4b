//! Prometheus metrics: per-core counters summed at scrape time, served as the text
//! exposition format on `GET /metrics` by a thread of the main lcore.
//!
//! Workers never lock, allocate or format for metrics. Each counter has exactly one
//! writer (its worker), so it is bumped with a relaxed load and store ([`bump`]), no
//! read-modify-write bus lock; the engine's own counters (plain `u64`s in
//! `hac_core::Counters`) are copied into [`EngineStats`] by the worker between
//! bursts at a low rate ([`EngineStats::publish`]). The [`Collector`] reads the
//! atomics when Prometheus scrapes and labels them: `port`, `direction`, `worker`,
//! `reason`, `code`, `policy`, `family` — bounded sets, never a subscriber or a flow.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hac_core::{CONVERT_ERROR_CODES, DropReason, Engine, FailReason, Scheduler};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::runtime::WorkerStats;

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Adds one to a counter several threads write.
#[inline]
pub fn bump_shared(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Frames and bytes of one port as one worker saw them.
#[derive(Debug, Default)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: AtomicU64,
    /// Bytes received (Ethernet frames).
    pub rx_bytes: AtomicU64,
    /// Frames handed to the NIC for sending.
    pub tx_packets: AtomicU64,
    /// Bytes handed to the NIC for sending.
    pub tx_bytes: AtomicU64,
}

/// Slots of the Convert-error counters: the codes of [`CONVERT_ERROR_CODES`], then
/// every other code.
const CODE_SLOTS: usize = CONVERT_ERROR_CODES.len() + 1;

/// The policies in `Scheduler as usize` order.
const POLICIES: [Scheduler; 3] = [
    Scheduler::Aggregate,
    Scheduler::Overflow,
    Scheduler::Failover,
];

/// A worker's copy of its engine's counters and gauges.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Live connections (gauge).
    pub connections: AtomicU64,
    /// Live subflows (gauge).
    pub subflows: AtomicU64,
    /// Repair-cache segments held (packet buffers of the mempool, gauge).
    pub cache_segments: AtomicU64,
    /// Repair-cache payload bytes held (gauge).
    pub cache_bytes: AtomicU64,
    /// Convert requests accepted (downstream SYN sent).
    pub created: AtomicU64,
    /// Connections established end to end.
    pub established: AtomicU64,
    /// Connections whose client leg fell back to plain TCP.
    pub fallbacks: AtomicU64,
    /// Convert requests that failed, by `FailReason`.
    pub failed: [AtomicU64; FailReason::COUNT],
    /// Convert errors sent, by code slot.
    pub convert_errors: [AtomicU64; CODE_SLOTS],
    /// MP_JOIN subflows accepted / refused.
    pub joins_accepted: AtomicU64,
    /// MP_JOIN subflows refused.
    pub joins_refused: AtomicU64,
    /// Scheduler placements by policy.
    pub placements: [AtomicU64; 3],
    /// Our ADD_ADDRs: sent, echoed, unanswered.
    pub add_addr: [AtomicU64; 3],
    /// DSS checksums of client mappings: verified, unverified.
    pub dss_checksum: [AtomicU64; 2],
    /// MP_FAIL sent, received.
    pub mp_fail: [AtomicU64; 2],
    /// Segments repaired from the repair cache.
    pub repairs: AtomicU64,
    /// Segments re-sent on another subflow.
    pub reinjections: AtomicU64,
    /// Server zero-window probes on bonded connections (answered, passed on).
    pub zero_window_probes: AtomicU64,
    /// Subscribers in the path memory; connections started with a learned hold.
    pub path_memory: AtomicU64,
    pub path_memory_seeded: AtomicU64,
    /// Seeded connections that kept the uncapped ACK hold / got the capped one.
    pub ack_hold_growth: [AtomicU64; 2],
    /// SYN-ACKs held for the server's handshake RTT.
    pub handshake_holds: AtomicU64,
    /// Refused Convert requests answered with a RST (Error reply rate limit).
    pub error_replies_limited: AtomicU64,
    /// Packets the engine originated.
    pub generated: AtomicU64,
    /// [IPv4, IPv6] pool ports in use / owned by this shard.
    pub ports_in_use: [AtomicU64; 2],
    /// Ports this shard owns, per family.
    pub ports_total: [AtomicU64; 2],
    /// Blocks assigned to subscribers / owned by this shard, per family.
    pub blocks_in_use: [AtomicU64; 2],
    /// Blocks this shard owns, per family.
    pub blocks_total: [AtomicU64; 2],
    /// Block events the engine could not queue.
    pub block_events_lost: AtomicU64,
}

impl EngineStats {
    /// Copies the engine's counters (called by the owning worker between bursts).
    pub fn publish<P: hac_core::PacketBuf>(&self, e: &Engine<P>) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        let c = e.counters();
        set(&self.connections, e.connections() as u64);
        set(&self.subflows, e.subflow_count() as u64);
        let (segments, bytes) = e.cache_usage();
        set(&self.cache_segments, segments as u64);
        set(&self.cache_bytes, bytes as u64);
        set(&self.created, c.convert_requests);
        set(&self.established, c.established);
        set(&self.fallbacks, c.fallbacks);
        for (a, v) in self.failed.iter().zip(c.failed) {
            set(a, v);
        }
        for (a, v) in self.convert_errors.iter().zip(c.convert_errors_by_code) {
            set(a, v);
        }
        set(&self.joins_accepted, c.joins_accepted);
        set(&self.joins_refused, c.joins_refused);
        for (a, v) in self.placements.iter().zip(c.placements) {
            set(a, v);
        }
        set(&self.add_addr[0], c.add_addr_sent);
        set(&self.add_addr[1], c.add_addr_echoed);
        set(&self.add_addr[2], c.add_addr_unanswered);
        set(&self.dss_checksum[0], c.dss_checksum_ok);
        set(&self.dss_checksum[1], c.dss_checksum_unverified);
        set(&self.mp_fail[0], c.mp_fail_sent);
        set(&self.mp_fail[1], c.mp_fail_received);
        set(&self.repairs, c.repairs);
        set(&self.path_memory, e.path_memory_len() as u64);
        set(&self.path_memory_seeded, c.path_memory_seeded);
        set(&self.ack_hold_growth[0], c.growth_uncapped);
        set(&self.ack_hold_growth[1], c.growth_capped);
        set(&self.handshake_holds, c.handshake_holds);
        set(&self.error_replies_limited, c.error_replies_limited);
        set(&self.reinjections, c.reinjections);
        set(&self.zero_window_probes, c.zero_window_probes);
        set(&self.generated, c.generated);
        for (i, v6) in [false, true].into_iter().enumerate() {
            let u = e.pool_usage(v6);
            set(&self.ports_in_use[i], u.ports_in_use);
            set(&self.ports_total[i], u.ports_total);
            set(&self.blocks_in_use[i], u.blocks_in_use);
            set(&self.blocks_total[i], u.blocks_total);
        }
        set(&self.block_events_lost, e.block_events_lost());
    }
}

/// Counters of the allocation logger (written by the workers and the logger thread).
#[derive(Debug, Default)]
pub struct AllocLogStats {
    /// Records written.
    pub written: AtomicU64,
    /// Records lost: the queue to the logger was full, or the write failed.
    pub dropped: AtomicU64,
}

/// What one metric family is.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

const fn family(
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
) -> Family {
    Family {
        name,
        help,
        kind,
        labels,
    }
}

use MetricType::{COUNTER, GAUGE};

/// Every family this collector exports (docs/operations.md lists them too).
const FAMILIES: &[Family] = &[
    family(
        "hac_build_info",
        "Build of the running hacd (value 1).",
        GAUGE,
        &["version"],
    ),
    family(
        "hac_port_packets_total",
        "Ethernet frames received (rx) and sent (tx) per port.",
        COUNTER,
        &["port", "direction"],
    ),
    family(
        "hac_port_bytes_total",
        "Bytes of Ethernet frames received (rx) and sent (tx) per port.",
        COUNTER,
        &["port", "direction"],
    ),
    family(
        "hac_packet_drops_total",
        "Packets dropped, by reason (engine reasons, and the runtime's handoff_queue_full, no_route, unresolved_neighbour).",
        COUNTER,
        &["reason"],
    ),
    family(
        "hac_connections",
        "Connections held by a worker (every state).",
        GAUGE,
        &["worker"],
    ),
    family(
        "hac_subflows",
        "Subflows held by a worker: each connection's initial subflow plus its joined ones.",
        GAUGE,
        &["worker"],
    ),
    family(
        "hac_repair_cache_segments",
        "Segments in flight held by a worker's repair cache (each one a packet buffer of the mempool, referenced, not copied).",
        GAUGE,
        &["worker"],
    ),
    family(
        "hac_repair_cache_bytes",
        "Payload bytes of the segments held by a worker's repair cache.",
        GAUGE,
        &["worker"],
    ),
    family(
        "hac_connections_created_total",
        "Convert requests accepted: a connection toward the server was opened.",
        COUNTER,
        &[],
    ),
    family(
        "hac_connections_established_total",
        "Connections established with both the client and the server.",
        COUNTER,
        &[],
    ),
    family(
        "hac_connections_fallback_total",
        "Connections whose client leg fell back to plain TCP (no MPTCP).",
        COUNTER,
        &[],
    ),
    family(
        "hac_connections_failed_total",
        "Convert requests that did not become a connection, by reason.",
        COUNTER,
        &["reason"],
    ),
    family(
        "hac_convert_errors_total",
        "RFC 8803 Convert Error TLVs sent to clients, by error code (other: any code not listed).",
        COUNTER,
        &["code"],
    ),
    family(
        "hac_subflow_joins_total",
        "MP_JOIN subflows accepted or refused (RFC 8684 §3.2).",
        COUNTER,
        &["result"],
    ),
    family(
        "hac_add_addr_total",
        "Our ADD_ADDR announcements (RFC 8684 §3.4.1): sent (retransmissions included), echoed by the client, given up unanswered.",
        COUNTER,
        &["result"],
    ),
    family(
        "hac_dss_checksum_total",
        "Client mappings checked against their DSS checksum (RFC 8684 §3.3.1): ok, unverified (a segment arrived after a hole); failures count as drops with reason dss_checksum.",
        COUNTER,
        &["result"],
    ),
    family(
        "hac_mp_fail_total",
        "MP_FAIL options (RFC 8684 §3.7) sent to and received from clients.",
        COUNTER,
        &["direction"],
    ),
    family(
        "hac_scheduler_placements_total",
        "Downstream segments placed on a subflow by the multipath scheduler, by policy.",
        COUNTER,
        &["policy"],
    ),
    family(
        "hac_repairs_total",
        "Segments the converter re-sent to a client from its repair cache.",
        COUNTER,
        &[],
    ),
    family(
        "hac_path_memory_subscribers",
        "Subscribers whose access-path delays the workers remember (path memory).",
        GAUGE,
        &[],
    ),
    family(
        "hac_path_memory_seeded_total",
        "Connections that started with the ACK hold learned from their subscriber's earlier connections.",
        COUNTER,
        &[],
    ),
    family(
        "hac_ack_hold_growth_total",
        "Connections started with a learned ACK hold, by how their server grew its flight under the uncapped hold: kept it (uncapped) or did not (capped).",
        COUNTER,
        &["result"],
    ),
    family(
        "hac_handshake_holds_total",
        "SYN-ACKs held so that the server's handshake RTT is the held round trip of a subscriber with far-apart paths (multipath.handshake_hold).",
        COUNTER,
        &[],
    ),
    family(
        "hac_convert_error_replies_limited_total",
        "Refused Convert requests answered with a RST instead of an Error reply: over converter.error_replies_per_second (RFC 8803 6.2.8).",
        COUNTER,
        &[],
    ),
    family(
        "hac_reinjections_total",
        "Segments re-sent on another subflow after a subflow failed.",
        COUNTER,
        &[],
    ),
    family(
        "hac_zero_window_probes_total",
        "Server zero-window probes on bonded connections, answered with the current window and passed on to the client as a probe of its own (RFC 9293 3.8.6.1).",
        COUNTER,
        &[],
    ),
    family(
        "hac_generated_packets_total",
        "Packets the engine originated (SYN-ACKs, ACKs, retransmissions, resets).",
        COUNTER,
        &[],
    ),
    family(
        "hac_pool_ports_in_use",
        "External pool ports bound to a connection, per address family.",
        GAUGE,
        &["family"],
    ),
    family(
        "hac_pool_ports",
        "External pool ports (every address of the family times the port range).",
        GAUGE,
        &["family"],
    ),
    family(
        "hac_pool_blocks_in_use",
        "Port blocks assigned to a subscriber, per address family.",
        GAUGE,
        &["family"],
    ),
    family(
        "hac_pool_blocks",
        "Port blocks of the pool, per address family.",
        GAUGE,
        &["family"],
    ),
    family(
        "hac_worker_handoffs_total",
        "Packets a worker handed to the worker that owns their connection.",
        COUNTER,
        &["worker"],
    ),
    family(
        "hac_worker_busy_seconds_total",
        "Seconds a worker spent in polling rounds that handled at least one packet (rate = busy ratio).",
        COUNTER,
        &["worker"],
    ),
    family(
        "hac_allocation_log_records_total",
        "Port-block allocation and release records written to the allocation log.",
        COUNTER,
        &[],
    ),
    family(
        "hac_allocation_log_dropped_total",
        "Allocation records lost (logger queue full, engine queue full, or write error).",
        COUNTER,
        &[],
    ),
];

/// Sums the workers' counters at scrape time.
pub struct HacCollector {
    ports: Vec<String>,
    workers: Vec<Arc<WorkerStats>>,
    alloc_log: Arc<AllocLogStats>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for HacCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HacCollector")
            .field("ports", &self.ports)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl HacCollector {
    /// A collector over the workers' stats; `ports` are the configured port names,
    /// in port order.
    pub fn new(
        ports: Vec<String>,
        workers: Vec<Arc<WorkerStats>>,
        alloc_log: Arc<AllocLogStats>,
    ) -> Self {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                Desc::new(
                    f.name.into(),
                    f.help.into(),
                    f.labels.iter().map(|l| (*l).to_string()).collect(),
                    Default::default(),
                )
                .expect("static family descriptions are valid")
            })
            .collect();
        HacCollector {
            ports,
            workers,
            alloc_log,
            descs,
        }
    }

    /// A registry holding only this collector.
    pub fn registry(self) -> prometheus::Result<Registry> {
        let r = Registry::new();
        r.register(Box::new(self))?;
        Ok(r)
    }

    fn sum(&self, f: impl Fn(&WorkerStats) -> u64) -> u64 {
        self.workers.iter().map(|w| f(w)).fold(0, u64::wrapping_add)
    }
}

/// Builds one family's samples.
struct Samples {
    metrics: Vec<Metric>,
    kind: MetricType,
}

impl Samples {
    fn add(&mut self, labels: &[(&str, &str)], v: f64) {
        let mut m = Metric::default();
        m.set_label(
            labels
                .iter()
                .map(|(k, val)| {
                    let mut p = LabelPair::default();
                    p.set_name((*k).to_string());
                    p.set_value((*val).to_string());
                    p
                })
                .collect(),
        );
        match self.kind {
            MetricType::GAUGE => {
                let mut g = Gauge::default();
                g.set_value(v);
                m.set_gauge(g);
            }
            _ => {
                let mut c = Counter::default();
                c.set_value(v);
                m.set_counter(c);
            }
        }
        self.metrics.push(m);
    }
}

impl Collector for HacCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::with_capacity(FAMILIES.len());
        for f in FAMILIES {
            let mut s = Samples {
                metrics: Vec::new(),
                kind: f.kind,
            };
            self.fill(f.name, &mut s);
            let mut mf = MetricFamily::default();
            mf.set_name(f.name.to_string());
            mf.set_help(f.help.to_string());
            mf.set_field_type(f.kind);
            mf.set_metric(s.metrics);
            out.push(mf);
        }
        out
    }
}

impl HacCollector {
    #[allow(clippy::cast_precision_loss)]
    fn fill(&self, name: &str, s: &mut Samples) {
        let e = |f: fn(&EngineStats) -> &AtomicU64| self.sum(|w| get(f(&w.engine))) as f64;
        match name {
            "hac_build_info" => s.add(&[("version", env!("CARGO_PKG_VERSION"))], 1.0),
            "hac_port_packets_total" | "hac_port_bytes_total" => {
                let bytes = name == "hac_port_bytes_total";
                for (i, port) in self.ports.iter().enumerate() {
                    let at = |w: &WorkerStats, rx: bool| {
                        w.ports.get(i).map_or(0, |p| match (rx, bytes) {
                            (true, false) => get(&p.rx_packets),
                            (true, true) => get(&p.rx_bytes),
                            (false, false) => get(&p.tx_packets),
                            (false, true) => get(&p.tx_bytes),
                        })
                    };
                    s.add(
                        &[("port", port), ("direction", "rx")],
                        self.sum(|w| at(w, true)) as f64,
                    );
                    s.add(
                        &[("port", port), ("direction", "tx")],
                        self.sum(|w| at(w, false)) as f64,
                    );
                }
            }
            "hac_packet_drops_total" => {
                for r in DropReason::ALL {
                    let v = self.sum(|w| get(&w.drops[r as usize]));
                    s.add(&[("reason", r.as_str())], v as f64);
                }
                for (reason, v) in [
                    ("handoff_queue_full", self.sum(|w| get(&w.handoff_drops))),
                    ("no_route", self.sum(|w| get(&w.no_route))),
                    ("unresolved_neighbour", self.sum(|w| get(&w.unresolved))),
                ] {
                    s.add(&[("reason", reason)], v as f64);
                }
            }
            "hac_connections"
            | "hac_subflows"
            | "hac_repair_cache_segments"
            | "hac_repair_cache_bytes"
            | "hac_worker_handoffs_total"
            | "hac_worker_busy_seconds_total" => {
                for (i, w) in self.workers.iter().enumerate() {
                    let v = match name {
                        "hac_connections" => get(&w.engine.connections) as f64,
                        "hac_subflows" => get(&w.engine.subflows) as f64,
                        "hac_repair_cache_segments" => get(&w.engine.cache_segments) as f64,
                        "hac_repair_cache_bytes" => get(&w.engine.cache_bytes) as f64,
                        "hac_worker_handoffs_total" => get(&w.handoffs) as f64,
                        _ => get(&w.busy_ns) as f64 / 1e9,
                    };
                    s.add(&[("worker", &i.to_string())], v);
                }
            }
            "hac_connections_created_total" => s.add(&[], e(|x| &x.created)),
            "hac_connections_established_total" => s.add(&[], e(|x| &x.established)),
            "hac_connections_fallback_total" => s.add(&[], e(|x| &x.fallbacks)),
            "hac_connections_failed_total" => {
                for r in FailReason::ALL {
                    let v = self.sum(|w| get(&w.engine.failed[r as usize]));
                    s.add(&[("reason", r.as_str())], v as f64);
                }
            }
            "hac_convert_errors_total" => {
                for slot in 0..CODE_SLOTS {
                    let code = CONVERT_ERROR_CODES
                        .get(slot)
                        .map_or_else(|| "other".to_string(), u8::to_string);
                    let v = self.sum(|w| get(&w.engine.convert_errors[slot]));
                    s.add(&[("code", &code)], v as f64);
                }
            }
            "hac_subflow_joins_total" => {
                s.add(&[("result", "accepted")], e(|x| &x.joins_accepted));
                s.add(&[("result", "refused")], e(|x| &x.joins_refused));
            }
            "hac_add_addr_total" => {
                s.add(&[("result", "sent")], e(|x| &x.add_addr[0]));
                s.add(&[("result", "echoed")], e(|x| &x.add_addr[1]));
                s.add(&[("result", "unanswered")], e(|x| &x.add_addr[2]));
            }
            "hac_dss_checksum_total" => {
                s.add(&[("result", "ok")], e(|x| &x.dss_checksum[0]));
                s.add(&[("result", "unverified")], e(|x| &x.dss_checksum[1]));
            }
            "hac_mp_fail_total" => {
                s.add(&[("direction", "sent")], e(|x| &x.mp_fail[0]));
                s.add(&[("direction", "received")], e(|x| &x.mp_fail[1]));
            }
            "hac_scheduler_placements_total" => {
                for p in POLICIES {
                    let v = self.sum(|w| get(&w.engine.placements[p as usize]));
                    s.add(&[("policy", p.as_str())], v as f64);
                }
            }
            "hac_repairs_total" => s.add(&[], e(|x| &x.repairs)),
            "hac_reinjections_total" => s.add(&[], e(|x| &x.reinjections)),
            "hac_zero_window_probes_total" => s.add(&[], e(|x| &x.zero_window_probes)),
            "hac_path_memory_subscribers" => s.add(&[], e(|x| &x.path_memory)),
            "hac_path_memory_seeded_total" => s.add(&[], e(|x| &x.path_memory_seeded)),
            "hac_ack_hold_growth_total" => {
                s.add(&[("result", "uncapped")], e(|x| &x.ack_hold_growth[0]));
                s.add(&[("result", "capped")], e(|x| &x.ack_hold_growth[1]));
            }
            "hac_handshake_holds_total" => s.add(&[], e(|x| &x.handshake_holds)),
            "hac_convert_error_replies_limited_total" => {
                s.add(&[], e(|x| &x.error_replies_limited))
            }
            "hac_generated_packets_total" => s.add(&[], e(|x| &x.generated)),
            "hac_pool_ports_in_use"
            | "hac_pool_ports"
            | "hac_pool_blocks_in_use"
            | "hac_pool_blocks" => {
                for (i, fam) in ["ipv4", "ipv6"].into_iter().enumerate() {
                    let v = self.sum(|w| {
                        let x = &w.engine;
                        get(match name {
                            "hac_pool_ports_in_use" => &x.ports_in_use[i],
                            "hac_pool_ports" => &x.ports_total[i],
                            "hac_pool_blocks_in_use" => &x.blocks_in_use[i],
                            _ => &x.blocks_total[i],
                        })
                    });
                    s.add(&[("family", fam)], v as f64);
                }
            }
            "hac_allocation_log_records_total" => s.add(&[], get(&self.alloc_log.written) as f64),
            "hac_allocation_log_dropped_total" => s.add(
                &[],
                get(&self.alloc_log.dropped)
                    .wrapping_add(self.sum(|w| get(&w.engine.block_events_lost)))
                    as f64,
            ),
            _ => {}
        }
    }
}

/// The text exposition of everything in `registry`.
#[must_use]
pub fn render(registry: &Registry) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!("metrics encoding failed: {e}");
    }
    buf
}

/// Longest request head accepted (request line and headers).
const MAX_REQUEST: usize = 8192;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listener` until `stop` is set: one connection at a
/// time, the request head bounded to 8 KiB and 5 s, `Connection: close`.
pub fn serve(
    listener: TcpListener,
    registry: Registry,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("hacd-metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if let Err(e) = answer(conn, &registry) {
                            tracing::debug!("metrics client: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        tracing::warn!("metrics accept: {e}");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
}

/// Reads one request head and answers it.
fn answer(mut conn: TcpStream, registry: &Registry) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() >= MAX_REQUEST {
            break false;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    };
    if !complete {
        respond(&mut conn, "431 Request Header Fields Too Large", b"", false)?;
        // Lingering close: read (bounded) what the client still sends, so that
        // closing with unread data does not reset the connection before the
        // client has read the answer.
        conn.shutdown(std::net::Shutdown::Write)?;
        conn.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut left = 16 * MAX_REQUEST;
        while left > 0 {
            match conn.read(&mut chunk) {
                Ok(n) if n > 0 => left = left.saturating_sub(n),
                _ => break,
            }
        }
        return Ok(());
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = render(registry);
            respond(&mut conn, "200 OK", &body, method == "GET")
        }
        ("GET" | "HEAD", _) => respond(&mut conn, "404 Not Found", b"not found\n", true),
        _ => respond(
            &mut conn,
            "405 Method Not Allowed",
            b"only GET and HEAD\n",
            true,
        ),
    }
}

fn respond(
    conn: &mut TcpStream,
    status: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let ctype = if status.starts_with("200") {
        prometheus::TEXT_FORMAT
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    if with_body {
        conn.write_all(body)?;
    }
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, tests::LAB};
    use hac_core::{Instant, VecPacket};
    use std::collections::BTreeMap;

    /// `name{labels}` → value, and `name` → TYPE, parsed back from the exposition.
    fn parse(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
        let (mut samples, mut types) = (BTreeMap::new(), BTreeMap::new());
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (n, k) = t.split_once(' ').unwrap();
                types.insert(n.to_string(), k.to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                let (k, v) = line.rsplit_once(' ').unwrap();
                samples.insert(k.to_string(), v.parse().unwrap());
            }
        }
        (samples, types)
    }

    fn registry(workers: &[Arc<WorkerStats>], log: &Arc<AllocLogStats>) -> Registry {
        HacCollector::new(
            vec!["dsl".into(), "core".into()],
            workers.to_vec(),
            Arc::clone(log),
        )
        .registry()
        .unwrap()
    }

    #[test]
    fn exposition_sums_workers_with_bounded_labels() {
        let cfg = Config::parse(LAB).unwrap();
        let workers: Vec<Arc<WorkerStats>> = (0..2)
            .map(|_| Arc::new(WorkerStats::with_ports(2)))
            .collect();
        let log = Arc::new(AllocLogStats::default());
        bump(&workers[0].ports[0].rx_packets, 3);
        bump(&workers[1].ports[0].rx_packets, 4);
        bump(&workers[1].ports[1].tx_bytes, 1500);
        bump(&workers[0].drops[DropReason::NoBinding as usize], 2);
        bump(&workers[1].handoff_drops, 1);
        bump(&workers[1].busy_ns, 2_500_000_000);
        bump(&workers[0].handoffs, 7);
        bump_shared(&log.written);
        // Engine counters come from a real engine: two shards of the lab pool.
        for (i, w) in workers.iter().enumerate() {
            let e: Engine<VecPacket> =
                Engine::new(cfg.engine.clone(), i as u16, 2, 1, Instant(0)).unwrap();
            w.engine.publish(&e);
        }
        let text = String::from_utf8(render(&registry(&workers, &log))).unwrap();
        let (m, types) = parse(&text);
        let v = |k: &str| *m.get(k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
        assert_eq!(
            v(r#"hac_port_packets_total{port="dsl",direction="rx"}"#),
            7.0
        );
        assert_eq!(
            v(r#"hac_port_packets_total{port="core",direction="rx"}"#),
            0.0
        );
        assert_eq!(
            v(r#"hac_port_bytes_total{port="core",direction="tx"}"#),
            1500.0
        );
        assert_eq!(v(r#"hac_packet_drops_total{reason="no_binding"}"#), 2.0);
        assert_eq!(
            v(r#"hac_packet_drops_total{reason="handoff_queue_full"}"#),
            1.0
        );
        assert_eq!(v(r#"hac_worker_busy_seconds_total{worker="1"}"#), 2.5);
        assert_eq!(v(r#"hac_worker_handoffs_total{worker="0"}"#), 7.0);
        assert_eq!(v(r#"hac_connections{worker="0"}"#), 0.0);
        assert_eq!(v(r#"hac_repair_cache_segments{worker="1"}"#), 0.0);
        assert_eq!(v(r#"hac_repair_cache_bytes{worker="0"}"#), 0.0);
        assert_eq!(v(r#"hac_convert_errors_total{code="32"}"#), 0.0);
        assert_eq!(v(r#"hac_convert_errors_total{code="other"}"#), 0.0);
        assert_eq!(
            v(r#"hac_connections_failed_total{reason="server_reset"}"#),
            0.0
        );
        assert_eq!(
            v(r#"hac_scheduler_placements_total{policy="overflow"}"#),
            0.0
        );
        assert_eq!(v("hac_allocation_log_records_total"), 1.0);
        // The lab pool: 16 IPv4 addresses of 64512 ports in blocks of 256, over both
        // shards together.
        assert_eq!(v(r#"hac_pool_ports{family="ipv4"}"#), 16.0 * 64512.0);
        assert_eq!(v(r#"hac_pool_blocks{family="ipv4"}"#), 16.0 * 252.0);
        assert_eq!(v(r#"hac_pool_ports_in_use{family="ipv6"}"#), 0.0);
        assert_eq!(
            v(&format!(
                "hac_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )),
            1.0
        );
        // Every family is there, typed, named by the conventions.
        let allowed = [
            "port",
            "direction",
            "worker",
            "reason",
            "code",
            "policy",
            "family",
            "result",
            "version",
        ];
        for f in FAMILIES {
            assert!(f.name.starts_with("hac_"), "{}", f.name);
            let t = types
                .get(f.name)
                .unwrap_or_else(|| panic!("{} untyped", f.name));
            assert_eq!(t == "counter", f.name.ends_with("_total"), "{}", f.name);
            assert!(f.labels.iter().all(|l| allowed.contains(l)), "{}", f.name);
        }
    }

    /// Sends `request` to the server and returns (status line, body).
    fn http(addr: std::net::SocketAddr, request: &[u8]) -> (String, String) {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(request).unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.lines().next().unwrap().to_string();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        if !request.starts_with(b"HEAD") {
            assert_eq!(len, body.len(), "Content-Length");
        }
        (status, body.to_string())
    }

    #[test]
    fn http_endpoint_serves_metrics_only() {
        let workers = vec![Arc::new(WorkerStats::with_ports(2))];
        let log = Arc::new(AllocLogStats::default());
        bump(&workers[0].ports[1].rx_bytes, 42);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let h = serve(listener, registry(&workers, &log), Arc::clone(&stop)).unwrap();

        let (status, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 200 OK");
        let (m, _) = parse(&body);
        assert_eq!(
            m[r#"hac_port_bytes_total{port="core",direction="rx"}"#],
            42.0
        );
        // The scrape reads the counters live.
        bump(&workers[0].ports[1].rx_bytes, 8);
        let (_, body) = http(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");
        assert_eq!(
            parse(&body).0[r#"hac_port_bytes_total{port="core",direction="rx"}"#],
            50.0
        );

        let (status, body) = http(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", ""));
        let (status, _) = http(addr, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, _) = http(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 3 * MAX_REQUEST));
        big.extend_from_slice(b"\r\n\r\n");
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = c.write_all(&big);
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        assert!(
            out.starts_with(b"HTTP/1.1 431 "),
            "{}",
            String::from_utf8_lossy(&out)
        );
        // A client that connects and says nothing does not wedge the server for
        // good (the read times out); meanwhile it is closed and the next one served.
        drop(TcpStream::connect(addr).unwrap());
        let (status, _) = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 200 OK");

        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        assert!(TcpStream::connect(addr).is_err(), "listener closed on stop");
    }
}
