//! `hac-linkemu --a IF --b IF [options]`: bridges two interfaces over AF_PACKET,
//! shaping each direction (rate, one-way delay, random loss, time-capped drop-tail
//! queue, link up/down). See `--help` and the library docs for the control file.

#![forbid(unsafe_code)]

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hac_linkemu::{Drop, Key, LinkParams, Rng, Shaper, apply, parse_control};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType, bind,
    recvmsg, send, setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeSpec, TimeVal};
use std::io::IoSliceMut;

/// Largest frame accepted (a GSO super-frame is at most 64 KiB); one byte more is
/// read to detect truncation.
const MAX_FRAME: usize = 65_536;
/// Frames in flight per direction, at most.
const MAX_FRAMES: usize = 65_536;
/// How much earlier than a frame's time the sender wakes from sleep, then yields
/// and spins (precision against CPU: each frame costs up to this much busy time).
const SLEEP_MARGIN: Duration = Duration::from_micros(40);
/// `sll_pkttype` of frames this host sent (seen by ETH_P_ALL sockets): skipped.
const PACKET_OUTGOING: u8 = 4;

const USAGE: &str = "\
usage: hac-linkemu --a IFACE --b IFACE [options]

Bridges IFACE a and IFACE b (raw AF_PACKET sockets bound to each), shaping each
direction: `ab` = frames read on a, written to b; `ba` = the reverse.

options (initial values for both directions; the control file overrides them):
  --rate MBIT        rate in Mbit/s, 0 = unlimited (default 0)
  --delay MS         one-way delay in ms (default 0)
  --loss PCT         random loss in percent (default 0)
  --queue MS         queue cap in ms worth of bytes at the rate (default 100)
  --link up|down     link state (default up)
  --control FILE     control file, re-read when it changes (polled every 50 ms)
                     and on SIGHUP; `key = value` lines, keys rate, delay, loss,
                     queue, link, optionally prefixed `ab.` or `ba.`
  --stats FILE       write counters to FILE every second (and at exit)
  --max-mbytes N     memory cap for frames in flight per direction (default 64)
  --name NAME        name used in log lines (default a<->b)

signals: SIGHUP re-reads the control file, SIGUSR1 prints counters,
SIGTERM/SIGINT stop cleanly.";

#[derive(Debug)]
struct Args {
    a: String,
    b: String,
    base: LinkParams,
    control: Option<PathBuf>,
    stats: Option<PathBuf>,
    max_bytes: usize,
    name: String,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut it = std::env::args().skip(1);
    let (mut a, mut b, mut control, mut stats, mut name) = (None, None, None, None, None);
    let mut max_mbytes = 64usize;
    let mut base = LinkParams::default();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let key = match flag.as_str() {
            "--a" => {
                a = Some(value);
                continue;
            }
            "--b" => {
                b = Some(value);
                continue;
            }
            "--control" => {
                control = Some(PathBuf::from(value));
                continue;
            }
            "--stats" => {
                stats = Some(PathBuf::from(value));
                continue;
            }
            "--name" => {
                name = Some(value);
                continue;
            }
            "--max-mbytes" => {
                max_mbytes = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=4096).contains(n))
                    .ok_or_else(|| format!("--max-mbytes: `{value}` is not in 1..=4096"))?;
                continue;
            }
            f => f.strip_prefix("--").and_then(Key::parse),
        };
        let key = key.ok_or_else(|| format!("unknown option {flag}"))?;
        apply(&mut base.ab, key, &value).map_err(|e| format!("{flag}: {e}"))?;
        base.ba = base.ab;
    }
    let a = a.ok_or("--a IFACE is required")?;
    let b = b.ok_or("--b IFACE is required")?;
    if a == b {
        return Err("--a and --b must differ".into());
    }
    let name = name.unwrap_or_else(|| format!("{a}<->{b}"));
    Ok(Some(Args {
        a,
        b,
        base,
        control,
        stats,
        max_bytes: max_mbytes << 20,
        name,
    }))
}

/// Counters of one direction.
#[derive(Debug, Default)]
struct DirStats {
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    /// Serialization time of the frames taken, in ns: the link's busy time.
    busy_ns: AtomicU64,
    /// Frames written more than 1 ms after their time (sender wake-up latency).
    late_1ms: AtomicU64,
    /// Largest such lateness, in µs.
    late_max_us: AtomicU64,
    drop_loss: AtomicU64,
    drop_queue: AtomicU64,
    drop_down: AtomicU64,
    drop_mem: AtomicU64,
    drop_oversize: AtomicU64,
    tx_errors: AtomicU64,
    rx_errors: AtomicU64,
    /// Bytes currently held between rx and tx (memory cap).
    in_flight: AtomicUsize,
}

impl DirStats {
    fn line(&self, dir: &str) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{dir} rx_frames={} rx_bytes={} tx_frames={} tx_bytes={} busy_us={} late_1ms={} late_max_us={} drop_loss={} drop_queue={} \
             drop_down={} drop_mem={} drop_oversize={} tx_errors={} rx_errors={} in_flight_bytes={}",
            g(&self.rx_frames),
            g(&self.rx_bytes),
            g(&self.tx_frames),
            g(&self.tx_bytes),
            g(&self.busy_ns) / 1000,
            g(&self.late_1ms),
            g(&self.late_max_us),
            g(&self.drop_loss),
            g(&self.drop_queue),
            g(&self.drop_down),
            g(&self.drop_mem),
            g(&self.drop_oversize),
            g(&self.tx_errors),
            g(&self.rx_errors),
            self.in_flight.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug)]
struct Shared {
    name: String,
    params: Mutex<LinkParams>,
    stop: AtomicBool,
    stats: [DirStats; 2],
    max_bytes: usize,
}

impl Shared {
    fn params(&self) -> MutexGuard<'_, LinkParams> {
        self.params
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn report(&self) -> String {
        let p = *self.params();
        format!(
            "link {}\nab {}\nba {}\n{}\n{}\n",
            self.name,
            p.ab,
            p.ba,
            self.stats[0].line("ab"),
            self.stats[1].line("ba")
        )
    }
}

/// A frame on its way from one interface to the other.
#[derive(Debug)]
struct Frame {
    at: Instant,
    data: Vec<u8>,
}

/// An AF_PACKET raw socket receiving every protocol, bound to `ifname`.
fn packet_socket(ifname: &str) -> Result<OwnedFd, String> {
    let addr = nix::ifaddrs::getifaddrs()
        .map_err(|e| format!("getifaddrs: {e}"))?
        .filter(|ia| ia.interface_name == ifname)
        .find_map(|ia| ia.address.and_then(|s| s.as_link_addr().copied()))
        .ok_or_else(|| format!("interface {ifname} not found in this network namespace"))?;
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )
    .map_err(|e| format!("socket(AF_PACKET) for {ifname}: {e} (root or CAP_NET_RAW needed)"))?;
    // The interface's own link address: its ifindex, protocol 0 = the socket's (ETH_P_ALL).
    bind(fd.as_raw_fd(), &addr).map_err(|e| format!("bind to {ifname}: {e}"))?;
    let big = 4 << 20;
    if setsockopt(&fd, sockopt::RcvBufForce, &big).is_err() {
        let _ = setsockopt(&fd, sockopt::RcvBuf, &big);
    }
    if setsockopt(&fd, sockopt::SndBufForce, &big).is_err() {
        let _ = setsockopt(&fd, sockopt::SndBuf, &big);
    }
    // The kernel stamps each frame when it arrives, so the link model runs on arrival
    // times even when this process is scheduled late (see `arrival`).
    setsockopt(&fd, sockopt::ReceiveTimestampns, &true)
        .map_err(|e| format!("SO_TIMESTAMPNS on {ifname}: {e}"))?;
    // Receive calls return every 100 ms so the thread sees a stop request.
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000))
        .map_err(|e| format!("SO_RCVTIMEO on {ifname}: {e}"))?;
    Ok(fd)
}

fn seed(dir: usize) -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32) ^ (dir as u64).wrapping_mul(0x9E37_79B9)
}

/// When a frame stamped `stamp` (the kernel's receive time, `CLOCK_REALTIME`)
/// arrived, on the monotonic clock: the frame waited `SystemTime::now() - stamp` in
/// the socket. A link emulator read late (a busy or preempted CPU, hypervisor steal)
/// would otherwise shift the whole schedule later and lose that link time for good.
/// Falls back to `now` when there is no stamp or it is implausible (in the future,
/// or older than a second: the real-time clock was stepped).
fn arrival(stamp: Option<TimeSpec>) -> Instant {
    let now = Instant::now();
    let Some(ts) = stamp else { return now };
    let (Ok(sec), Ok(nsec)) = (u64::try_from(ts.tv_sec()), u32::try_from(ts.tv_nsec())) else {
        return now;
    };
    let stamped = UNIX_EPOCH + Duration::new(sec, nsec);
    match SystemTime::now().duration_since(stamped) {
        Ok(waited) if waited <= Duration::from_secs(1) => now.checked_sub(waited).unwrap_or(now),
        _ => now,
    }
}

/// Reads one frame into `buf`: its length, sender address and kernel arrival time.
fn recv_frame(fd: &OwnedFd, buf: &mut [u8]) -> nix::Result<(usize, Option<LinkAddr>, Instant)> {
    let mut cmsg = nix::cmsg_space!(TimeSpec);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<LinkAddr>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    let stamp = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
            _ => None,
        })
    });
    Ok((msg.bytes, msg.address, arrival(stamp)))
}

/// Reads frames on `fd`, decides their fate and hands the survivors to the sender.
fn rx_loop(shared: &Shared, dir: usize, fd: &OwnedFd, tx: &SyncSender<Frame>) {
    let stats = &shared.stats[dir];
    let mut buf = vec![0u8; MAX_FRAME + 1];
    let mut shaper = Shaper::new();
    let mut rng = Rng::new(seed(dir));
    while !shared.stopping() {
        let (len, from, arrived) = match recv_frame(fd, &mut buf) {
            Ok(r) => r,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(_) => {
                // The interface may be going away (lab teardown): back off, keep going.
                stats.rx_errors.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if from.is_some_and(|a| a.pkttype() == PACKET_OUTGOING) || len == 0 {
            continue;
        }
        stats.rx_frames.fetch_add(1, Ordering::Relaxed);
        stats.rx_bytes.fetch_add(len as u64, Ordering::Relaxed);
        if len > MAX_FRAME {
            stats.drop_oversize.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let p = {
            let all = shared.params();
            if dir == 0 { all.ab } else { all.ba }
        };
        let at = match shaper.admit(arrived, len, &p, rng.next_f64()) {
            Ok(at) => at,
            Err(why) => {
                let c = match why {
                    Drop::Down => &stats.drop_down,
                    Drop::Loss => &stats.drop_loss,
                    Drop::Queue => &stats.drop_queue,
                };
                c.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let ser = Shaper::serialization(len, p.rate_bps);
        stats
            .busy_ns
            .fetch_add(ser.as_nanos() as u64, Ordering::Relaxed);
        if stats.in_flight.load(Ordering::Relaxed) + len > shared.max_bytes {
            stats.drop_mem.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.in_flight.fetch_add(len, Ordering::Relaxed);
        let frame = Frame {
            at,
            data: buf[..len].to_vec(),
        };
        match tx.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                stats.in_flight.fetch_sub(len, Ordering::Relaxed);
                stats.drop_mem.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Waits until `at`: sleeps while far away, then yields, then spins the last few µs.
/// Returns false when asked to stop meanwhile.
fn wait_until(shared: &Shared, at: Instant) -> bool {
    loop {
        let now = Instant::now();
        if now >= at {
            return true;
        }
        let left = at - now;
        if left > Duration::from_millis(50) {
            thread::sleep(Duration::from_millis(50));
            if shared.stopping() {
                return false;
            }
        } else if left > SLEEP_MARGIN + Duration::from_micros(20) {
            // With 1 µs timer slack a sleep overshoots by tens of µs: wake early.
            thread::sleep(left - SLEEP_MARGIN);
        } else if left > Duration::from_micros(10) {
            thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Writes frames to `fd` when their time has come.
fn tx_loop(shared: &Shared, dir: usize, fd: &OwnedFd, rx: &Receiver<Frame>) {
    // Fine-grained sleeps for this thread (the default timer slack is 50 µs).
    let _ = nix::sys::prctl::set_timerslack(1_000);
    let stats = &shared.stats[dir];
    loop {
        let frame = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => {
                if shared.stopping() {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if shared.stopping() || !wait_until(shared, frame.at) {
            return;
        }
        let late = frame.at.elapsed();
        if late > Duration::from_millis(1) {
            stats.late_1ms.fetch_add(1, Ordering::Relaxed);
        }
        stats
            .late_max_us
            .fetch_max(late.as_micros() as u64, Ordering::Relaxed);
        let len = frame.data.len();
        stats.in_flight.fetch_sub(len, Ordering::Relaxed);
        let up = {
            let all = shared.params();
            if dir == 0 { all.ab.up } else { all.ba.up }
        };
        if !up {
            stats.drop_down.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut sent = send(fd.as_raw_fd(), &frame.data, MsgFlags::empty());
        if sent == Err(Errno::ENOBUFS) || sent == Err(Errno::EAGAIN) {
            thread::sleep(Duration::from_micros(50));
            sent = send(fd.as_raw_fd(), &frame.data, MsgFlags::empty());
        }
        match sent {
            Ok(_) => {
                stats.tx_frames.fetch_add(1, Ordering::Relaxed);
                stats.tx_bytes.fetch_add(len as u64, Ordering::Relaxed);
            }
            Err(_) => {
                stats.tx_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Re-reads the control file; a bad file is reported and ignored (the link keeps its
/// current parameters).
fn reload(shared: &Shared, base: LinkParams, path: &Path) {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            eprintln!(
                "hac-linkemu[{}]: {}: {e}; keeping parameters",
                shared.name,
                path.display()
            );
            return;
        }
    };
    match parse_control(&text, base) {
        Ok(p) => {
            let mut cur = shared.params();
            if *cur != p {
                *cur = p;
                eprintln!("hac-linkemu[{}]: ab {} | ba {}", shared.name, p.ab, p.ba);
            }
        }
        Err(e) => eprintln!(
            "hac-linkemu[{}]: {}: {e}; keeping parameters",
            shared.name,
            path.display()
        ),
    }
}

fn write_stats(shared: &Shared, path: &Path) {
    let tmp = path.with_extension("tmp");
    if fs::write(&tmp, shared.report()).is_ok() {
        let _ = fs::rename(&tmp, path);
    }
}

/// Polls the control file for changes and writes the stats file.
fn watch_loop(shared: &Shared, args: &Args) {
    let mut stamp = args.control.as_deref().and_then(file_stamp);
    let mut last_stats = Instant::now();
    while !shared.stopping() {
        thread::sleep(Duration::from_millis(50));
        if let Some(path) = &args.control {
            let s = file_stamp(path);
            if s != stamp {
                stamp = s;
                reload(shared, args.base, path);
            }
        }
        if let Some(path) = &args.stats
            && last_stats.elapsed() >= Duration::from_secs(1)
        {
            last_stats = Instant::now();
            write_stats(shared, path);
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let fd_a = Arc::new(packet_socket(&args.a)?);
    let fd_b = Arc::new(packet_socket(&args.b)?);

    let shared = Arc::new(Shared {
        name: args.name.clone(),
        params: Mutex::new(args.base),
        stop: AtomicBool::new(false),
        stats: [DirStats::default(), DirStats::default()],
        max_bytes: args.max_bytes,
    });
    if let Some(path) = &args.control {
        reload(&shared, args.base, path);
    }

    // Signals are taken synchronously by this thread; block them before spawning so
    // every worker inherits the mask.
    let mut sigs = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        sigs.add(s);
    }
    sigs.thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;

    let args = Arc::new(args);
    let mut handles = Vec::new();
    // Direction 0 (ab): read a, write b. Direction 1 (ba): read b, write a.
    for (dir, (rfd, wfd)) in [(fd_a.clone(), fd_b.clone()), (fd_b, fd_a)]
        .into_iter()
        .enumerate()
    {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Frame>(MAX_FRAMES);
        let sh = shared.clone();
        let name = if dir == 0 { "ab" } else { "ba" };
        handles.push(
            thread::Builder::new()
                .name(format!("rx-{name}"))
                .spawn(move || rx_loop(&sh, dir, &rfd, &tx))
                .map_err(|e| format!("spawn: {e}"))?,
        );
        let sh = shared.clone();
        handles.push(
            thread::Builder::new()
                .name(format!("tx-{name}"))
                .spawn(move || tx_loop(&sh, dir, &wfd, &rx))
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    {
        let sh = shared.clone();
        let a = args.clone();
        handles.push(
            thread::Builder::new()
                .name("watch".into())
                .spawn(move || watch_loop(&sh, &a))
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    {
        let p = *shared.params();
        eprintln!(
            "hac-linkemu[{}]: bridging {} <-> {}; ab {} | ba {}",
            shared.name, args.a, args.b, p.ab, p.ba
        );
    }

    loop {
        match sigs.wait() {
            Ok(Signal::SIGHUP) => {
                if let Some(path) = &args.control {
                    reload(&shared, args.base, path);
                }
            }
            Ok(Signal::SIGUSR1) => eprint!("{}", shared.report()),
            Ok(_) => break,
            Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("hac-linkemu[{}]: sigwait: {e}; stopping", shared.name);
                break;
            }
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    if let Some(path) = &args.stats {
        write_stats(&shared, path);
    }
    eprint!("hac-linkemu[{}]: stopped\n{}", shared.name, shared.report());
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("hac-linkemu: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hac-linkemu: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod arrival_tests {
    use super::*;

    fn stamp(t: SystemTime) -> TimeSpec {
        let d = t.duration_since(UNIX_EPOCH).expect("after 1970");
        TimeSpec::new(
            i64::try_from(d.as_secs()).expect("seconds"),
            i64::from(d.subsec_nanos()),
        )
    }

    #[test]
    fn a_frame_read_late_keeps_its_kernel_arrival_time() {
        let before = Instant::now();
        let at = arrival(Some(stamp(SystemTime::now() - Duration::from_millis(30))));
        let waited = before.saturating_duration_since(at);
        assert!(
            (Duration::from_millis(25)..Duration::from_millis(35)).contains(&waited),
            "{waited:?}"
        );
    }

    #[test]
    fn implausible_stamps_fall_back_to_now() {
        for s in [
            None,
            Some(stamp(SystemTime::now() + Duration::from_secs(5))),
            Some(stamp(SystemTime::now() - Duration::from_secs(5))),
            Some(TimeSpec::new(-1, 0)),
        ] {
            let before = Instant::now();
            let at = arrival(s);
            assert!(at >= before, "{s:?}");
        }
    }
}
