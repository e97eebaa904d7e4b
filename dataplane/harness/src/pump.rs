//! The packet pump: moves IP packets between the two TUN devices and a
//! [`Translator`].

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use crate::pcap::PcapWriter;

/// Which TUN device a packet came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client-side TUN (client namespace: MPTCP clients, converter address).
    Access,
    /// The server-side TUN (server namespace: TCP server, source pools).
    Core,
}

/// The system under test, driven by the packet pump (one thread, so no `Sync`
/// needed).
///
/// All packets are raw IP packets starting at the IP header (IPv4 or IPv6,
/// no packet-information prefix). The TUN devices have no link-local IPv6
/// address (so no router solicitations or MLD), but the translator should still
/// ignore what it does not understand.
pub trait Translator {
    /// One IP packet arrived on `side`. Push the packets to emit onto `out`
    /// as `(side, bytes)`; they are written to the TUN devices in order.
    fn on_packet(&mut self, now_us: u64, side: Side, pkt: Vec<u8>, out: &mut Vec<(Side, Vec<u8>)>);

    /// Time passes: called every [`TICK`] or so (more rarely under load:
    /// packets are handled first, but a tick is never skipped for more than
    /// one batch of [`BATCH`] packets). May emit packets.
    fn on_tick(&mut self, now_us: u64, out: &mut Vec<(Side, Vec<u8>)>);
}

/// Nominal interval between [`Translator::on_tick`] calls.
pub const TICK: Duration = Duration::from_millis(1);
/// Packets handled between two checks of the tick clock.
pub const BATCH: usize = 64;
/// Capacity of the queue from the TUN readers to the pump thread (packets, both
/// sides together). When full, readers stop reading and the kernel's TUN queue
/// (txqueuelen 500) drops.
pub const QUEUE: usize = 4096;
/// How often TUN readers wake up to check for shutdown.
const READ_POLL: Duration = Duration::from_millis(5);

/// Counters of one [`crate::Lab::run_with`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PumpStats {
    /// Packets read from the Access TUN.
    pub from_access: u64,
    /// Packets read from the Core TUN.
    pub from_core: u64,
    /// Packets written to the Access TUN.
    pub to_access: u64,
    /// Packets written to the Core TUN.
    pub to_core: u64,
    /// Writes that failed (e.g. a malformed packet the kernel refused: EINVAL).
    pub write_errors: u64,
    /// Read errors other than timeouts.
    pub read_errors: u64,
    /// `on_tick` calls.
    pub ticks: u64,
}

/// Both pcap writers of one run.
#[derive(Debug)]
pub(crate) struct Pcaps {
    pub(crate) access: PcapWriter,
    pub(crate) core: PcapWriter,
}

/// Anything that can carry packets: the TUN device (or a test double).
pub(crate) trait PacketIo: Sync {
    fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;
    fn send(&self, pkt: &[u8]) -> io::Result<usize>;
}

impl PacketIo for tun::Device {
    fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        tun::Device::recv_timeout(self, buf, timeout)
    }
    fn send(&self, pkt: &[u8]) -> io::Result<usize> {
        tun::Device::send(self, pkt)
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn now_us(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Runs `t` between `access` and `core` while `f` runs on the calling thread.
/// Returns `f`'s result, the translator and the counters. A panic in `f` or in
/// the translator stops the pump and is propagated.
pub(crate) fn run<T, R>(
    access: &dyn PacketIo,
    core: &dyn PacketIo,
    epoch: Instant,
    mut t: T,
    mut pcaps: Option<Pcaps>,
    f: impl FnOnce() -> R,
) -> (R, T, PumpStats)
where
    T: Translator + Send,
{
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::sync_channel::<(Side, Vec<u8>)>(QUEUE);
    thread::scope(|s| {
        let stop = &stop;
        let mut read_errors = Vec::new();
        for (side, dev) in [(Side::Access, access), (Side::Core, core)] {
            let tx = tx.clone();
            read_errors.push(
                thread::Builder::new()
                    .name(format!("hac-harness-rx-{side:?}"))
                    .spawn_scoped(s, move || reader(side, dev, &tx, stop))
                    .expect("spawn TUN reader thread"),
            );
        }
        drop(tx);
        let pump = thread::Builder::new()
            .name("hac-harness-pump".into())
            .spawn_scoped(s, move || {
                let mut stats = PumpStats::default();
                let mut out = Vec::new();
                let mut next_tick = Instant::now();
                let emit = |out: &mut Vec<(Side, Vec<u8>)>,
                            stats: &mut PumpStats,
                            pcaps: &mut Option<Pcaps>,
                            now: u64| {
                    for (side, pkt) in out.drain(..) {
                        let dev = match side {
                            Side::Access => access,
                            Side::Core => core,
                        };
                        if let Some(p) = pcaps.as_mut() {
                            let w = match side {
                                Side::Access => &mut p.access,
                                Side::Core => &mut p.core,
                            };
                            let _ = w.record(now, &pkt);
                        }
                        match dev.send(&pkt) {
                            Ok(_) => match side {
                                Side::Access => stats.to_access += 1,
                                Side::Core => stats.to_core += 1,
                            },
                            Err(_) => stats.write_errors += 1,
                        }
                    }
                };
                while !stop.load(Ordering::SeqCst) {
                    let wait = next_tick.saturating_duration_since(Instant::now());
                    let first = match rx.recv_timeout(wait) {
                        Ok(p) => Some(p),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    let mut next = first;
                    let mut n = 0;
                    while let Some((side, pkt)) = next.take() {
                        let now = now_us(epoch);
                        match side {
                            Side::Access => stats.from_access += 1,
                            Side::Core => stats.from_core += 1,
                        }
                        if let Some(p) = pcaps.as_mut() {
                            let w = match side {
                                Side::Access => &mut p.access,
                                Side::Core => &mut p.core,
                            };
                            let _ = w.record(now, &pkt);
                        }
                        t.on_packet(now, side, pkt, &mut out);
                        emit(&mut out, &mut stats, &mut pcaps, now);
                        n += 1;
                        if n < BATCH {
                            next = rx.try_recv().ok();
                        }
                    }
                    if Instant::now() >= next_tick {
                        let now = now_us(epoch);
                        t.on_tick(now, &mut out);
                        stats.ticks += 1;
                        emit(&mut out, &mut stats, &mut pcaps, now);
                        next_tick = Instant::now() + TICK;
                    }
                }
                // Let blocked readers see the closed channel.
                drop(rx);
                if let Some(p) = pcaps.as_mut() {
                    let _ = p.access.flush();
                    let _ = p.core.flush();
                }
                (t, stats)
            })
            .expect("spawn pump thread");
        let r = {
            let _guard = StopOnDrop(stop);
            f()
        };
        let (t, mut stats) = match pump.join() {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e),
        };
        for h in read_errors {
            stats.read_errors += h.join().unwrap_or(0);
        }
        (r, t, stats)
    })
}

/// Reads packets from `dev` into `tx` until `stop`; returns the number of read
/// errors (other than timeouts).
fn reader(
    side: Side,
    dev: &dyn PacketIo,
    tx: &mpsc::SyncSender<(Side, Vec<u8>)>,
    stop: &AtomicBool,
) -> u64 {
    let mut buf = vec![0u8; 65_536];
    let mut errors = 0;
    while !stop.load(Ordering::SeqCst) {
        match dev.recv_timeout(&mut buf, READ_POLL) {
            Ok(0) => {}
            Ok(n) => {
                let mut item = (side, buf[..n].to_vec());
                // Blocking send, but keep checking `stop` (the pump may be gone).
                loop {
                    match tx.try_send(item) {
                        Ok(()) => break,
                        Err(TrySendError::Disconnected(_)) => return errors,
                        Err(TrySendError::Full(back)) => {
                            if stop.load(Ordering::SeqCst) {
                                return errors;
                            }
                            item = back;
                            thread::sleep(Duration::from_micros(200));
                        }
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                ) => {}
            Err(_) => {
                errors += 1;
                thread::sleep(READ_POLL);
            }
        }
    }
    errors
}
