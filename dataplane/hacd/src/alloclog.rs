//! The allocation log (RFC 6888 §4: the operator must be able to tell which
//! subscriber used an external address and port at a given time): one record per
//! port-block allocation and release, never a destination address.
//!
//! Workers pass `hac_core` block events over a bounded lock-free queue
//! ([`QUEUE_CAPACITY`]) and never wait: a full queue counts the record in
//! `hac_allocation_log_dropped_total`. A thread of the main lcore formats and writes
//! them to a file (flushed and synced after every batch) or to the local syslog
//! daemon's datagram socket.
//!
//! A record is one line (the syslog message is the same text):
//!
//! ```text
//! 2026-11-27T09:16:46.123456Z allocate subscriber=198.18.1.2 external=203.0.113.5 ports=1024-1279
//! 2026-11-27T09:31:02.000817Z release subscriber=198.18.1.2 external=203.0.113.5 ports=1024-1279
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;
use hac_core::pool::BlockEvent;

use crate::config::AllocationLog;
use crate::metrics::AllocLogStats;

/// Records the workers may queue before the logger catches up.
pub const QUEUE_CAPACITY: usize = 65536;

/// The queue from the workers to the logger.
pub type Queue = ArrayQueue<BlockEvent>;

/// Engine time (µs since `epoch`) to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The monotonic instant engine time counts from.
    pub epoch: StdInstant,
    /// The wall-clock time at `epoch`.
    pub wall: SystemTime,
}

impl Clock {
    /// The clock of a runtime whose engine time starts now.
    #[must_use]
    pub fn now() -> Self {
        Clock {
            epoch: StdInstant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The wall-clock time of engine instant `at`.
    #[must_use]
    pub fn wall(&self, at: hac_core::Instant) -> SystemTime {
        self.wall + Duration::from_micros(at.0)
    }
}

/// RFC 3339 UTC with microseconds (`2026-11-27T09:16:46.123456Z`).
#[must_use]
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// One record's text (no trailing newline).
#[must_use]
pub fn format_record(e: &BlockEvent, clock: &Clock) -> String {
    format!(
        "{} {} subscriber={} external={} ports={}-{}",
        rfc3339(clock.wall(e.at)),
        if e.allocated { "allocate" } else { "release" },
        e.subscriber,
        e.external,
        e.port_lo,
        e.port_hi
    )
}

/// Syslog priority: facility daemon (3), severity info (6) — RFC 5424 §6.2.1.
const SYSLOG_PRI: u8 = 3 * 8 + 6;

enum Sink {
    File(File),
    Syslog(UnixDatagram, PathBuf),
}

impl Sink {
    fn open(target: &AllocationLog) -> std::io::Result<Sink> {
        Ok(match target {
            AllocationLog::File(p) => {
                Sink::File(OpenOptions::new().create(true).append(true).open(p)?)
            }
            AllocationLog::Syslog(p) => Sink::Syslog(UnixDatagram::unbound()?, p.clone()),
        })
    }

    fn write(&mut self, line: &str) -> std::io::Result<()> {
        match self {
            Sink::File(f) => writeln!(f, "{line}"),
            Sink::Syslog(s, path) => {
                let msg = format!("<{SYSLOG_PRI}>hacd[{}]: {line}", std::process::id());
                s.send_to(msg.as_bytes(), &*path).map(|_| ())
            }
        }
    }

    fn sync(&mut self) {
        if let Sink::File(f) = self {
            let _ = f.flush();
            let _ = f.sync_data();
        }
    }
}

/// Starts the logger thread: it writes what the workers queue until `stop` is set,
/// then what is left. Fails when the file cannot be opened.
pub fn spawn(
    target: &AllocationLog,
    queue: Arc<Queue>,
    clock: Clock,
    stats: Arc<AllocLogStats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let mut sink = Sink::open(target)?;
    let what = format!("{target:?}");
    std::thread::Builder::new()
        .name("hacd-alloclog".into())
        .spawn(move || {
            let mut warned = false;
            loop {
                // Read the flag first: whatever was queued before it was set is
                // written by this last round.
                let last = stop.load(Ordering::Acquire);
                let mut wrote = false;
                while let Some(e) = queue.pop() {
                    match sink.write(&format_record(&e, &clock)) {
                        Ok(()) => crate::metrics::bump_shared(&stats.written),
                        Err(err) => {
                            crate::metrics::bump_shared(&stats.dropped);
                            if !warned {
                                tracing::warn!("allocation log {what}: {err}");
                                warned = true;
                            }
                        }
                    }
                    wrote = true;
                }
                if wrote {
                    sink.sync();
                }
                if last {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
}

/// Hands a worker's block events to the logger without waiting; a full queue (or
/// no logger) counts the record as dropped.
pub fn forward(queue: Option<&Queue>, stats: &AllocLogStats, e: BlockEvent) {
    if let Some(q) = queue
        && q.push(e).is_err()
    {
        crate::metrics::bump_shared(&stats.dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hac_core::Instant;

    fn event(allocated: bool, at: u64) -> BlockEvent {
        BlockEvent {
            allocated,
            subscriber: "198.18.1.2".parse().unwrap(),
            external: "203.0.113.5".parse().unwrap(),
            port_lo: 1024,
            port_hi: 1279,
            at: Instant(at),
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_795_778_206_123_456);
        assert_eq!(rfc3339(t), "2026-11-27T11:16:46.123456Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn records_go_to_the_file_in_order() {
        let dir = std::env::temp_dir().join(format!("hacd-alloclog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alloc.log");
        let _ = std::fs::remove_file(&path);
        let queue = Arc::new(Queue::new(4));
        let stats = Arc::new(AllocLogStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let clock = Clock {
            epoch: StdInstant::now(),
            wall: UNIX_EPOCH + Duration::from_secs(1_795_778_206),
        };
        let h = spawn(
            &AllocationLog::File(path.clone()),
            Arc::clone(&queue),
            clock,
            Arc::clone(&stats),
            Arc::clone(&stop),
        )
        .unwrap();
        forward(Some(&queue), &stats, event(true, 1_500_000));
        forward(Some(&queue), &stats, event(false, 61_000_000));
        stop.store(true, Ordering::Release);
        h.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "2026-11-27T11:16:47.500000Z allocate subscriber=198.18.1.2 external=203.0.113.5 ports=1024-1279\n\
             2026-11-27T11:17:47.000000Z release subscriber=198.18.1.2 external=203.0.113.5 ports=1024-1279\n"
        );
        assert_eq!(stats.written.load(Ordering::Relaxed), 2);
        // A full queue never blocks the worker: the record is counted lost.
        let full = Queue::new(1);
        forward(Some(&full), &stats, event(true, 0));
        forward(Some(&full), &stats, event(true, 0));
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_go_to_syslog_as_datagrams() {
        let dir = std::env::temp_dir().join(format!("hacd-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let daemon = UnixDatagram::bind(&path).unwrap();
        daemon
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let queue = Arc::new(Queue::new(4));
        let stats = Arc::new(AllocLogStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let clock = Clock {
            epoch: StdInstant::now(),
            wall: UNIX_EPOCH,
        };
        let h = spawn(
            &AllocationLog::Syslog(path.clone()),
            Arc::clone(&queue),
            clock,
            Arc::clone(&stats),
            Arc::clone(&stop),
        )
        .unwrap();
        forward(Some(&queue), &stats, event(true, 0));
        let mut buf = [0u8; 512];
        let n = daemon.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            msg,
            format!(
                "<30>hacd[{}]: 1970-01-01T00:00:00.000000Z allocate subscriber=198.18.1.2 external=203.0.113.5 ports=1024-1279",
                std::process::id()
            )
        );
        stop.store(true, Ordering::Release);
        h.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
