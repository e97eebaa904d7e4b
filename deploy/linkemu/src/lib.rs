//! `hac-linkemu`: the lab's access-link emulator (the kernel here has no netem).
//!
//! A link joins two interfaces, `a` and `b`; each direction (`ab`: frames read on
//! `a` and written to `b`, `ba`: the reverse) has its own [`DirParams`]: a rate
//! (serialization time per byte), a one-way propagation delay, random loss, a
//! drop-tail queue capped in time (about 100 ms of bytes at the rate by default, like
//! an access link's buffer), and a link state (down drops everything).
//!
//! This library holds the parts that need no sockets: the control-file format
//! ([`parse_control`]) and the per-direction scheduler ([`Shaper`]). The binary wires
//! them to AF_PACKET sockets and threads.

#![forbid(unsafe_code)]

use std::fmt;
use std::time::{Duration, Instant};

/// Upper bound for a rate, in Mbit/s (100 Gbit/s).
pub const MAX_RATE_MBIT: f64 = 100_000.0;
/// Upper bound for a one-way delay, in ms.
pub const MAX_DELAY_MS: f64 = 10_000.0;
/// Upper bound for a queue cap, in ms.
pub const MAX_QUEUE_MS: f64 = 10_000.0;
/// Default queue cap, in ms.
pub const DEFAULT_QUEUE_MS: f64 = 100.0;

/// One direction's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirParams {
    /// Rate in bit/s; 0 means unlimited (no serialization delay, no queue).
    pub rate_bps: u64,
    /// One-way propagation delay added after serialization.
    pub delay: Duration,
    /// Random loss probability, 0.0..=1.0.
    pub loss: f64,
    /// Most time a frame may wait for the link (drop-tail beyond it).
    pub queue: Duration,
    /// Link state: false drops every frame, including those already queued.
    pub up: bool,
}

impl Default for DirParams {
    fn default() -> Self {
        Self {
            rate_bps: 0,
            delay: Duration::ZERO,
            loss: 0.0,
            queue: Duration::from_secs_f64(DEFAULT_QUEUE_MS / 1000.0),
            up: true,
        }
    }
}

impl fmt::Display for DirParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = if self.rate_bps == 0 {
            "unlimited".to_string()
        } else {
            format!("{} Mbit/s", self.rate_bps as f64 / 1e6)
        };
        write!(
            f,
            "{} rate={} delay={}ms loss={}% queue={}ms",
            if self.up { "up" } else { "DOWN" },
            rate,
            self.delay.as_secs_f64() * 1000.0,
            self.loss * 100.0,
            self.queue.as_secs_f64() * 1000.0
        )
    }
}

/// Both directions of a link.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkParams {
    /// Frames read on `a`, written to `b`.
    pub ab: DirParams,
    /// Frames read on `b`, written to `a`.
    pub ba: DirParams,
}

/// A control-file or command-line error, with the line it is about (0: command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// 1-based line number in the control file; 0 for a command-line value.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "line {}: {}", self.line, self.reason)
        }
    }
}

impl std::error::Error for ParamError {}

/// Which parameter a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `rate`, Mbit/s (0 = unlimited).
    Rate,
    /// `delay`, ms.
    Delay,
    /// `loss`, percent.
    Loss,
    /// `queue`, ms.
    Queue,
    /// `link`, `up` or `down`.
    Link,
}

impl Key {
    /// Parses a bare key name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "rate" | "rate_mbit" => Self::Rate,
            "delay" | "delay_ms" => Self::Delay,
            "loss" | "loss_pct" => Self::Loss,
            "queue" | "queue_ms" => Self::Queue,
            "link" | "state" => Self::Link,
            _ => return None,
        })
    }
}

fn parse_num(v: &str, what: &str, max: f64) -> Result<f64, String> {
    let x: f64 = v
        .parse()
        .map_err(|_| format!("{what}: `{v}` is not a number"))?;
    if !x.is_finite() || x < 0.0 || x > max {
        return Err(format!("{what}: {v} is outside 0..={max}"));
    }
    Ok(x)
}

/// Applies one `key = value` to `p`.
///
/// # Errors
/// When the value does not parse or is out of range.
pub fn apply(p: &mut DirParams, key: Key, value: &str) -> Result<(), String> {
    match key {
        Key::Rate => {
            let mbit = parse_num(value, "rate (Mbit/s)", MAX_RATE_MBIT)?;
            p.rate_bps = (mbit * 1e6).round() as u64;
        }
        Key::Delay => {
            p.delay = Duration::from_secs_f64(parse_num(value, "delay (ms)", MAX_DELAY_MS)? / 1e3);
        }
        Key::Loss => p.loss = parse_num(value, "loss (%)", 100.0)? / 100.0,
        Key::Queue => {
            let ms = parse_num(value, "queue (ms)", MAX_QUEUE_MS)?;
            if ms < 0.1 {
                return Err(format!("queue (ms): {value} is below 0.1"));
            }
            p.queue = Duration::from_secs_f64(ms / 1e3);
        }
        Key::Link => {
            p.up = match value {
                "up" | "1" | "on" | "true" => true,
                "down" | "0" | "off" | "false" => false,
                _ => return Err(format!("link: `{value}` is neither up nor down")),
            }
        }
    }
    Ok(())
}

/// Parses a control file on top of `base` (usually the command-line settings).
///
/// One setting a line, `key = value` (or `key value`); `#` starts a comment. A bare
/// key applies to both directions; `ab.key` only to frames read on `a` and written
/// to `b`, `ba.key` to the reverse. Keys: `rate` (Mbit/s, 0 = unlimited), `delay`
/// (ms, one way), `loss` (%), `queue` (ms of bytes at the rate), `link` (`up` or
/// `down`). Later lines override earlier ones. The whole file is checked before any
/// of it applies.
///
/// # Errors
/// The first bad line, with its number.
pub fn parse_control(text: &str, base: LinkParams) -> Result<LinkParams, ParamError> {
    let mut out = base;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason: String| ParamError {
            line: i + 1,
            reason,
        };
        let (k, v) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => match line.split_once(char::is_whitespace) {
                Some((k, v)) => (k.trim(), v.trim()),
                None => return Err(err(format!("`{line}` has no value"))),
            },
        };
        let (dirs, name): (&[bool], &str) = match k.split_once('.') {
            Some(("ab", n)) => (&[true], n),
            Some(("ba", n)) => (&[false], n),
            Some((d, _)) => return Err(err(format!("unknown direction `{d}` (ab or ba)"))),
            None => (&[true, false], k),
        };
        let key = Key::parse(name).ok_or_else(|| {
            err(format!(
                "unknown key `{name}` (rate, delay, loss, queue, link)"
            ))
        })?;
        for &ab in dirs {
            let p = if ab { &mut out.ab } else { &mut out.ba };
            apply(p, key, v).map_err(err)?;
        }
    }
    Ok(out)
}

/// Why a frame was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The link is down.
    Down,
    /// Random loss.
    Loss,
    /// The queue already holds its cap.
    Queue,
}

/// Per-direction scheduler: a serializer at the rate, behind a drop-tail queue capped
/// in time, followed by a fixed propagation delay.
///
/// Departure times follow the ideal schedule (the next frame starts when the previous
/// one has finished serializing), so a late wake-up of the sender never lowers the
/// long-run rate; the program admits each frame at the kernel's receive time for the
/// same reason on the receiving side. Delivery times never go backwards (a delay lowered at run time does
/// not reorder frames).
#[derive(Debug, Clone, Copy)]
pub struct Shaper {
    busy_until: Option<Instant>,
    last_delivery: Option<Instant>,
}

impl Default for Shaper {
    fn default() -> Self {
        Self::new()
    }
}

impl Shaper {
    /// An idle link.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            busy_until: None,
            last_delivery: None,
        }
    }

    /// Time needed to serialize `len` bytes at `rate_bps` (zero when unlimited).
    #[must_use]
    pub fn serialization(len: usize, rate_bps: u64) -> Duration {
        if rate_bps == 0 {
            return Duration::ZERO;
        }
        let ns = (len as u128 * 8 * 1_000_000_000).div_ceil(u128::from(rate_bps));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// How long a frame arriving at `now` would wait before its serialization starts.
    #[must_use]
    pub fn backlog(&self, now: Instant) -> Duration {
        self.busy_until
            .map_or(Duration::ZERO, |b| b.saturating_duration_since(now))
    }

    /// Admits a frame of `len` bytes arriving at `now`; `roll` is a uniform random
    /// number in [0, 1) for the loss decision. Returns when the frame must be written
    /// out on the far interface.
    ///
    /// # Errors
    /// Why the frame is dropped.
    pub fn admit(
        &mut self,
        now: Instant,
        len: usize,
        p: &DirParams,
        roll: f64,
    ) -> Result<Instant, Drop> {
        if !p.up {
            return Err(Drop::Down);
        }
        if p.loss > 0.0 && roll < p.loss {
            return Err(Drop::Loss);
        }
        let mut at = if p.rate_bps == 0 {
            now
        } else {
            let wait = self.backlog(now);
            // Drop-tail: the queue holds at most `p.queue` worth of bytes; a frame
            // that finds the link idle is always taken.
            if wait > p.queue {
                return Err(Drop::Queue);
            }
            let done = now + wait + Self::serialization(len, p.rate_bps);
            self.busy_until = Some(done);
            done
        };
        at += p.delay;
        if let Some(last) = self.last_delivery
            && at < last
        {
            at = last;
        }
        self.last_delivery = Some(at);
        Ok(at)
    }
}

/// A small, fast pseudo-random generator (xorshift64*) for loss decisions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (a zero seed is replaced).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next uniform number in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ten_mbit() -> DirParams {
        DirParams {
            rate_bps: 10_000_000,
            ..DirParams::default()
        }
    }

    #[test]
    fn parses_both_and_one_direction() {
        let text = "# shaping\nrate = 10\ndelay 5\nba.delay = 20.5\nloss=1 # one percent\nab.link = down\n";
        let p = parse_control(text, LinkParams::default()).unwrap();
        assert_eq!(p.ab.rate_bps, 10_000_000);
        assert_eq!(p.ba.rate_bps, 10_000_000);
        assert_eq!(p.ab.delay, Duration::from_millis(5));
        assert_eq!(p.ba.delay, Duration::from_micros(20_500));
        assert!((p.ab.loss - 0.01).abs() < 1e-12);
        assert!(!p.ab.up);
        assert!(p.ba.up);
        assert_eq!(p.ab.queue, Duration::from_millis(100));
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        let base = LinkParams::default();
        for (text, line) in [
            ("rate = 10\nfoo = 1", 2),
            ("rate = -1", 1),
            ("loss = 101", 1),
            ("\n\nlink = sideways", 3),
            ("xy.rate = 1", 1),
            ("rate", 1),
            ("delay = nan", 1),
            ("queue = 0", 1),
        ] {
            let e = parse_control(text, base).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn rate_is_exact_over_many_frames() {
        let mut s = Shaper::new();
        let p = DirParams {
            queue: Duration::from_secs(10),
            ..ten_mbit()
        };
        let t0 = Instant::now();
        let mut last = t0;
        // 1000 frames of 1250 bytes = 10 Mbit: one second at 10 Mbit/s.
        for _ in 0..1000 {
            last = s.admit(t0, 1250, &p, 0.5).unwrap();
        }
        assert_eq!(last - t0, Duration::from_secs(1));
    }

    #[test]
    fn queue_is_capped_in_time() {
        let mut s = Shaper::new();
        let p = ten_mbit(); // 100 ms of queue = 125,000 bytes
        let t0 = Instant::now();
        let taken = (0..1000)
            .filter(|_| s.admit(t0, 1500, &p, 0.5).is_ok())
            .count();
        // 1.2 ms per frame: frames are taken while the wait is <= 100 ms.
        assert_eq!(taken, 84);
        assert_eq!(s.admit(t0, 1500, &p, 0.5), Err(Drop::Queue));
        // Once the queue drains, frames are taken again.
        let later = t0 + Duration::from_millis(60);
        assert!(s.admit(later, 1500, &p, 0.5).is_ok());
    }

    #[test]
    fn delay_and_order() {
        let mut s = Shaper::new();
        let mut p = DirParams {
            delay: Duration::from_millis(50),
            ..DirParams::default()
        };
        let t0 = Instant::now();
        assert_eq!(
            s.admit(t0, 100, &p, 0.5).unwrap(),
            t0 + Duration::from_millis(50)
        );
        p.delay = Duration::from_millis(1);
        // A lowered delay never overtakes frames already in flight.
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(
            s.admit(t1, 100, &p, 0.5).unwrap(),
            t0 + Duration::from_millis(50)
        );
    }

    #[test]
    fn loss_and_down() {
        let mut s = Shaper::new();
        let p = DirParams {
            loss: 0.1,
            ..DirParams::default()
        };
        let now = Instant::now();
        assert_eq!(s.admit(now, 60, &p, 0.05), Err(Drop::Loss));
        assert!(s.admit(now, 60, &p, 0.2).is_ok());
        let down = DirParams {
            up: false,
            ..DirParams::default()
        };
        assert_eq!(s.admit(now, 60, &down, 0.9), Err(Drop::Down));
    }

    #[test]
    fn rng_is_uniform_enough() {
        let mut r = Rng::new(42);
        let n = 100_000;
        let hits = (0..n).filter(|_| r.next_f64() < 0.05).count();
        assert!((4_500..5_500).contains(&hits), "{hits}");
        assert!(
            (0..1000)
                .map(|_| r.next_f64())
                .all(|x| (0.0..1.0).contains(&x))
        );
    }
}
