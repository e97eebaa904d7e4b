//! `hacd --no-dataplane --config FILE.toml`: the workers (as plain threads, with a
//! NIC that receives nothing) and the management API, without DPDK. For tests of
//! the API and for checking a configuration's management side on a machine without
//! hugepages or NICs; it forwards nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use crossbeam_queue::ArrayQueue;
use hac_core::{Engine, Instant, VecPacket};
use hac_wire::ethernet::EthernetAddress;

use crate::config::Config;
use crate::runtime::{Handoff, Nic, SharedNeighbours, Worker, WorkerStats};

/// A NIC with no packets: receives nothing, drops what it is given.
#[derive(Debug, Default)]
pub struct NoNic;

impl Nic for NoNic {
    type Buf = VecPacket;

    fn rx(&mut self, _port: usize, _out: &mut Vec<VecPacket>) {}

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

/// Runs the workers and the management API until `stop` is set.
pub fn run(cfg: Config, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let workers = cfg.lcores.len();
    let mut start = crate::mgmt::prepare(cfg, workers)?;
    let cfg = Arc::new(start.config.clone());
    let stats: Vec<Arc<WorkerStats>> = (0..workers).map(|_| Arc::default()).collect();
    let shared = Arc::new(SharedNeighbours::default());
    let inboxes: Vec<Arc<ArrayQueue<Handoff<VecPacket>>>> = (0..workers)
        .map(|_| Arc::new(ArrayQueue::new(64)))
        .collect();
    let epoch = StdInstant::now();
    let mut handles = Vec::new();
    for (w, st) in stats.iter().enumerate() {
        let engine = Engine::new(
            cfg.engine.clone(),
            w as u16,
            workers as u16,
            w as u64,
            Instant(0),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut worker = Worker::new(
            w as u16,
            NoNic,
            Arc::clone(&cfg),
            engine,
            Arc::clone(&shared),
            &inboxes,
            Arc::clone(st),
        );
        worker.attach_control(Arc::clone(&start.control));
        let stop = Arc::clone(&stop);
        handles.push(
            std::thread::Builder::new()
                .name(format!("hacd-worker{w}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        worker.poll(|| Instant(epoch.elapsed().as_micros() as u64));
                        // No NIC to poll: rest between rounds.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })?,
        );
    }
    let api = start.spawn_api(stats, Arc::clone(&stop))?;
    tracing::info!(
        workers,
        "hacd running without a data plane (--no-dataplane)"
    );
    for h in handles {
        let _ = h.join();
    }
    if let Some(h) = api {
        let _ = h.join();
    }
    Ok(())
}
