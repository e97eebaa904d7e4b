//! Bytes per idle connection in one engine shard (issue 3, Performance): opens
//! `N` (default 1,000,000) MPTCP Convert connections through packets (client SYN,
//! server SYN-ACK, third ACK, the client's ACK of the Convert reply), lets them go
//! idle (timers run, nothing outstanding), and reports the growth of the process's
//! resident set (`VmRSS` of `/proc/self/status`) per connection.
//!
//! Usage: `cargo run --release -p hac-perf --bin engine_mem [N]`
//!
//! Connections arrive at 10,000 per simulated second (the engine runs its timers
//! every simulated second, as a runtime would), from 198.18.0.0/15 clients with
//! 1,000 ports each, to one server through a /16 pool.

use std::mem::size_of;
use std::time::Instant as Wall;

use hac_core::{Instant, Port, VecPacket};
use hac_perf::engine as fx;

/// Simulated arrival rate.
const PER_SECOND: u32 = 10_000;

fn rss() -> u64 {
    fx::proc_status_kb("VmRSS").expect("VmRSS in /proc/self/status") * 1024
}

/// Buckets of a hashbrown table holding `n` items (load factor 7/8, power of two).
fn buckets(n: u64) -> u64 {
    (n * 8).div_ceil(7).next_power_of_two()
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let start = Instant(1_000_000);
    let mut e = fx::engine((n as usize).max(1 << 20) + 1024, start);
    let mut buf = vec![0u8; 2048];
    let mut out: Vec<(Port, Vec<u8>)> = Vec::new();
    // Touch the allocator's arena once so the baseline includes its start-up.
    drop(VecPacket::from_bytes(&fx::client_syn(0).0));
    let rss0 = rss();
    let wall = Wall::now();
    let mut now = start;
    let mut generated_later = 0usize;
    for i in 0..n {
        now = Instant(start.0 + u64::from(i) * 1_000_000 / u64::from(PER_SECOND));
        let h = fx::handshake(&mut e, now, i);
        fx::ack_reply(&mut e, now, &h.conn);
        out.clear();
        fx::drain(&mut e, now, &mut buf, &mut out);
        generated_later += out.len();
        if i % PER_SECOND == PER_SECOND - 1 {
            e.handle_timeout(now);
            out.clear();
            fx::drain(&mut e, now, &mut buf, &mut out);
            generated_later += out.len();
        }
    }
    let open_secs = wall.elapsed().as_secs_f64();
    // Idle: ten more seconds of timers (stale handshake / retransmission entries
    // fire and each connection is re-armed once for its idle deadline).
    for s in 1..=10u64 {
        let t = Instant(now.0 + s * 1_000_000);
        e.handle_timeout(t);
        out.clear();
        fx::drain(&mut e, t, &mut buf, &mut out);
        generated_later += out.len();
    }
    let rss1 = rss();
    let hwm = fx::proc_status_kb("VmHWM").unwrap_or(0) * 1024;
    let c = e.counters();
    assert_eq!(e.connections(), n as usize, "every connection still open");
    assert_eq!(c.established, u64::from(n), "every connection established");
    let drops: u64 = c.drops.iter().sum();
    let grown = rss1.saturating_sub(rss0);
    println!("connections            {n}");
    println!(
        "opened in              {open_secs:.1} s wall ({:.0} handshakes/s incl. peer simulation)",
        f64::from(n) / open_secs
    );
    println!("drops                  {drops}");
    println!("packets after setup    {generated_later} (engine-originated, expected 0)");
    println!("VmRSS before           {:.1} MiB", rss0 as f64 / 1048576.0);
    println!("VmRSS after (idle)     {:.1} MiB", rss1 as f64 / 1048576.0);
    println!("VmHWM (peak)           {:.1} MiB", hwm as f64 / 1048576.0);
    println!(
        "bytes per connection   {:.1} (RSS growth / connections)",
        grown as f64 / f64::from(n)
    );
    // What the binding tables alone must take (hashbrown `HashTable<u32>`: one
    // control byte and one 4-byte slab index per slot, 7/8 load, power-of-two slots).
    let n64 = u64::from(n);
    let slot = size_of::<u32>() as u64 + 1;
    let t = buckets(n64) * slot;
    println!(
        "  of which tables      by_client {:.1} + by_server {:.1} + by_token {:.1} B/conn ({} B per slot, {} buckets)",
        t as f64 / n as f64,
        t as f64 / n as f64,
        t as f64 / n as f64,
        slot,
        buckets(n64)
    );
}
