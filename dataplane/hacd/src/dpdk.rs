//! The runtime on DPDK: EAL, one mempool, every configured port with one rx/tx queue
//! pair per worker, and one worker per worker lcore, pinned (EAL launches it there),
//! polling its queues. The main lcore does no packet work.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use anyhow::bail;
use crossbeam_queue::ArrayQueue;
use hac_core::{Engine, Instant};
use hac_dpdk::{Eal, Mbuf, Mempool, Port, PortConfig as DpdkPortConfig, RxQueue, TxQueue};
use hac_wire::ethernet::EthernetAddress;

use crate::alloclog::{self, Clock};
use crate::config::Config;
use crate::metrics::{self, AllocLogStats, HacCollector};
use crate::notify;
use crate::runtime::{BURST, Handoff, Nic, SharedNeighbours, Worker, WorkerStats};

/// One worker's queues.
#[allow(missing_debug_implementations)]
pub struct DpdkNic {
    rx: Vec<RxQueue>,
    tx: Vec<TxQueue>,
    pool: Mempool,
    macs: Vec<EthernetAddress>,
}

impl Nic for DpdkNic {
    type Buf = Mbuf;

    fn rx(&mut self, port: usize, out: &mut Vec<Mbuf>) {
        if let Some(q) = self.rx.get_mut(port) {
            q.rx_burst(out, BURST);
        }
    }

    fn tx(&mut self, port: usize, pkts: &mut Vec<Mbuf>) {
        match self.tx.get_mut(port) {
            Some(q) => {
                q.tx_burst_or_free(pkts);
            }
            None => pkts.clear(),
        }
    }

    fn alloc(&mut self) -> Option<Mbuf> {
        self.pool.alloc()
    }

    fn mac(&self, port: usize) -> EthernetAddress {
        self.macs
            .get(port)
            .copied()
            .unwrap_or(EthernetAddress([0; 6]))
    }
}

/// The EAL argument list: the configured arguments, the lcore list (main lcore 0 plus
/// the workers) unless given, and one `--vdev` per virtual-device port (with
/// `qpairs` = workers for `net_af_packet`) or `-a` per PCI port.
#[must_use]
pub fn eal_args(cfg: &Config) -> Vec<String> {
    let mut args = cfg.eal_args.clone();
    if !args
        .iter()
        .any(|a| a == "-l" || a.starts_with("--lcores") || a.starts_with("-l"))
    {
        // Main lcore 0 on CPU 0; worker lcores on CPUs 1.. (round robin when there are
        // more workers than CPUs, e.g. two workers on a 2-CPU lab machine: `2@1`).
        let cpus =
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) as u32;
        let mut l = vec!["0@0".to_string()];
        for &lc in &cfg.lcores {
            let cpu = if cpus > 1 {
                1 + lc.saturating_sub(1) % (cpus - 1)
            } else {
                0
            };
            l.push(format!("{lc}@{cpu}"));
        }
        args.push(format!("--lcores={}", l.join(",")));
    }
    for p in &cfg.ports {
        if p.is_vdev() {
            let mut dev = p.device.clone();
            if dev.starts_with("net_af_packet") && !dev.contains("qpairs=") && cfg.lcores.len() > 1
            {
                dev.push_str(&format!(",qpairs={}", cfg.lcores.len()));
            }
            args.push(format!("--vdev={dev}"));
        } else {
            args.push("-a".into());
            args.push(p.device.clone());
        }
    }
    args
}

/// Runs the appliance until `stop` is set.
pub fn run(cfg: Config, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    // The running configuration (state file, else bootstrap) before anything starts.
    let lcores = cfg.lcores.len();
    let mut start = crate::mgmt::prepare(cfg, lcores)?;
    let cfg = start.config.clone();
    let args = eal_args(&cfg);
    tracing::info!(?args, "starting EAL");
    let eal = Eal::init(&args).map_err(|e| anyhow::anyhow!("EAL init failed: {e}"))?;
    // Threads started from here on inherit the main lcore's CPU set: the metrics
    // server and the allocation logger never run on a worker's core.
    let clock = Clock::now();
    let alloc_stats = Arc::new(AllocLogStats::default());
    let logger_stop = Arc::new(AtomicBool::new(false));
    let (alloc_queue, logger) = match &cfg.allocation_log {
        Some(target) => {
            let q = Arc::new(alloclog::Queue::new(alloclog::QUEUE_CAPACITY));
            let h = alloclog::spawn(
                target,
                Arc::clone(&q),
                clock,
                Arc::clone(&alloc_stats),
                Arc::clone(&logger_stop),
            )
            .map_err(|e| anyhow::anyhow!("allocation_log: cannot open {target:?}: {e}"))?;
            tracing::info!(?target, "allocation log");
            (Some(q), Some(h))
        }
        None => (None, None),
    };
    let metrics_listener = match cfg.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!("metrics.listen: cannot bind {addr}: {e}"))?,
        ),
        None => None,
    };
    let workers = cfg.lcores.len();
    let pool = Mempool::new(
        "hacd_pool",
        (32768 * workers.max(1) as u32).max(32768),
        256,
        hac_dpdk::default_data_room(),
        hac_dpdk::SOCKET_ID_ANY,
    )
    .map_err(|e| anyhow::anyhow!("mempool: {e}"))?;
    let mut ports = Vec::new();
    let mut macs = Vec::new();
    for p in &cfg.ports {
        let name = p.device.split(',').next().unwrap_or(&p.device);
        let id = eal
            .port_by_name(name)
            .map_err(|e| anyhow::anyhow!("port `{}` ({name}): {e}", p.name))?;
        let conf = DpdkPortConfig {
            rx_queues: workers as u16,
            tx_queues: workers as u16,
            rss: workers > 1,
            promiscuous: true,
            ..DpdkPortConfig::default()
        };
        let mut port = Port::configure(id, &conf, &pool)
            .map_err(|e| anyhow::anyhow!("port `{}`: {e}", p.name))?;
        port.start()
            .map_err(|e| anyhow::anyhow!("port `{}` start: {e}", p.name))?;
        let mac = port
            .mac_addr()
            .map_err(|e| anyhow::anyhow!("port `{}` mac: {e}", p.name))?;
        tracing::info!(port = %p.name, id, mac = %EthernetAddress(mac), "port up");
        macs.push(EthernetAddress(mac));
        ports.push(port);
    }
    let cfg = Arc::new(cfg);
    let shared = Arc::new(SharedNeighbours::default());
    let inboxes: Vec<Arc<ArrayQueue<Handoff<Mbuf>>>> = (0..workers)
        .map(|_| Arc::new(ArrayQueue::new(4096)))
        .collect();
    let epoch = clock.epoch;
    let mut seed = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut seed);
    }
    let seed = u64::from_le_bytes(seed);
    let mut handles = Vec::new();
    let all_stats: Vec<Arc<WorkerStats>> = (0..workers)
        .map(|_| Arc::new(WorkerStats::with_ports(cfg.ports.len())))
        .collect();
    for (w, &lcore) in cfg.lcores.iter().enumerate() {
        let mut rx = Vec::new();
        let mut tx = Vec::new();
        for p in &ports {
            rx.push(
                p.rx_queue(w as u16)
                    .map_err(|e| anyhow::anyhow!("rx queue {w}: {e}"))?,
            );
            tx.push(
                p.tx_queue(w as u16)
                    .map_err(|e| anyhow::anyhow!("tx queue {w}: {e}"))?,
            );
        }
        let nic = DpdkNic {
            rx,
            tx,
            pool: pool.clone(),
            macs: macs.clone(),
        };
        let (cfg, shared, inboxes, stop, control) = (
            Arc::clone(&cfg),
            Arc::clone(&shared),
            inboxes.clone(),
            Arc::clone(&stop),
            Arc::clone(&start.control),
        );
        let stats = Arc::clone(&all_stats[w]);
        let busy = Arc::clone(&stats);
        let (alloc_queue, alloc_stats) = (alloc_queue.clone(), Arc::clone(&alloc_stats));
        let handle = eal
            .launch(lcore, move || -> Result<Vec<()>, String> {
                let now = || Instant(epoch.elapsed().as_micros() as u64);
                let engine = Engine::new(
                    cfg.engine.clone(),
                    w as u16,
                    workers as u16,
                    seed ^ (w as u64),
                    now(),
                )
                .map_err(|e| e.to_string())?;
                let mut worker = Worker::new(w as u16, nic, cfg, engine, shared, &inboxes, stats);
                worker.attach_control(control);
                let mut last_publish = now();
                while !stop.load(Ordering::Relaxed) {
                    let t = now();
                    let started = StdInstant::now();
                    if worker.poll(now) > 0 {
                        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        busy.busy_ns.fetch_add(ns, Ordering::Relaxed);
                    }
                    if t.0.saturating_sub(last_publish.0) > 50_000 {
                        worker.publish_neighbours();
                        worker.publish_stats(|e| {
                            alloclog::forward(alloc_queue.as_deref(), &alloc_stats, e);
                        });
                        last_publish = t;
                    }
                }
                worker.release_blocks(now(), |e| {
                    alloclog::forward(alloc_queue.as_deref(), &alloc_stats, e);
                });
                let c = worker.engine().counters();
                let cache = worker.engine().cache_report();
                tracing::info!(
                    worker = w,
                    established = c.established,
                    joins_accepted = c.joins_accepted,
                    joins_refused = c.joins_refused,
                    repairs = c.repairs,
                    zero_fills = c.zero_fills,
                    reinjections = c.reinjections,
                    cache_misses = c.cache_misses,
                    cache_full = c.cache_full,
                    spurious = c.spurious_retransmissions,
                    zero_window_probes = c.zero_window_probes,
                    suspect = c.subflows_suspect,
                    dead = c.subflows_dead,
                    revived = c.subflows_revived,
                    bonded = cache.0,
                    cache_peak_mean = cache.1,
                    cache_mean_mean = cache.2,
                    cache_peak_max = cache.3,
                    generated = c.generated,
                    add_addr_sent = c.add_addr_sent,
                    add_addr_echoed = c.add_addr_echoed,
                    dss_checksum_ok = c.dss_checksum_ok,
                    dss_checksum_unverified = c.dss_checksum_unverified,
                    dss_checksum_failed = c.dss_checksum_failed,
                    mp_fail_sent = c.mp_fail_sent,
                    "engine counters"
                );
                Ok(Vec::new())
            })
            .map_err(|e| anyhow::anyhow!("launching worker on lcore {lcore}: {e}"))?;
        tracing::info!(worker = w, lcore, "worker started");
        handles.push(handle);
    }
    let metrics = match metrics_listener {
        Some(l) => {
            let addr = l.local_addr()?;
            let registry = HacCollector::new(
                cfg.ports.iter().map(|p| p.name.clone()).collect(),
                all_stats.clone(),
                Arc::clone(&alloc_stats),
            )
            .registry()
            .map_err(|e| anyhow::anyhow!("metrics registry: {e}"))?;
            let h = metrics::serve(l, registry, Arc::clone(&stop))
                .map_err(|e| anyhow::anyhow!("metrics.listen: {e}"))?;
            tracing::info!(%addr, "metrics on http://{addr}/metrics");
            Some(h)
        }
        None => None,
    };
    tracing::info!("hacd forwarding");
    // The management API: a thread of the main lcore, never a worker lcore.
    let api = start.spawn_api(all_stats.clone(), Arc::clone(&stop))?;
    if let Err(e) = notify::notify("READY=1") {
        tracing::warn!("NOTIFY_SOCKET: {e}");
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(h) = api {
        let _ = h.join();
    }
    tracing::info!("stopping");
    let _ = notify::notify("STOPPING=1");
    for h in handles {
        match h.wait() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("worker failed: {e}"),
            Err(_) => tracing::error!("worker panicked"),
        }
    }
    for (w, s) in all_stats.iter().enumerate() {
        tracing::info!(
            worker = w,
            rx = s.rx_packets.load(Ordering::Relaxed),
            tx = s.tx_packets.load(Ordering::Relaxed),
            handoffs = s.handoffs.load(Ordering::Relaxed),
            rx_bytes = s.rx_bytes.load(Ordering::Relaxed),
            busy_ms = s.busy_ns.load(Ordering::Relaxed) / 1_000_000,
            "worker stopped"
        );
    }
    // The workers have queued their last records (block releases included).
    logger_stop.store(true, Ordering::Release);
    if let Some(h) = logger
        && h.join().is_err()
    {
        tracing::error!("allocation logger panicked");
    }
    if let Some(h) = metrics
        && h.join().is_err()
    {
        tracing::error!("metrics server panicked");
    }
    for (mut p, c) in ports.into_iter().zip(cfg.ports.iter()) {
        if let Err(e) = p.stop() {
            tracing::warn!(port = %c.name, "stop: {e}");
        }
        if let Err(e) = p.close() {
            tracing::warn!(port = %c.name, "close: {e}");
        }
    }
    if workers == 0 {
        bail!("no workers");
    }
    Ok(())
}
