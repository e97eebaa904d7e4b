//! hac-core engine benchmarks (issue 3, Performance): established translation per
//! packet in each direction (64 B and 1448 B payloads) and full Convert handshakes
//! through one engine shard.
//!
//! Run: `cargo bench -p hac-perf --bench engine`. Every timed iteration translates a
//! fresh copy of a valid packet (the copy is made by `with_inputs`, outside the timed
//! part); the engine translates a retransmission exactly like the original, so the
//! same sequence numbers are reused. Baselines in the same run: the timing harness
//! with the input copy alone, a hac-wire parse of the same client segment down to its
//! DSS, and the engine dropping a segment of an unknown connection (parse + lookup).
//! Sample sizes are fixed (64 packets, 16 handshakes per sample) so that divan's
//! calibration cannot pick one-iteration samples on a busy machine.

use std::cell::RefCell;
use std::hint::black_box;

use divan::Bencher;
use divan::counter::ItemsCount;
use hac_core::{Engine, Instant, Port, VecPacket};
use hac_perf::engine as fx;
use hac_wire::mptcp::{Dss, DssRepr};
use hac_wire::{ipv4, tcp, tcp_options};

fn main() {
    divan::main();
}

const LENS: [usize; 2] = [64, 1448];
const NOW: Instant = Instant(1_000_000);

/// An engine with one established connection, checked once end to end.
fn setup(len: usize) -> (Engine<VecPacket>, fx::Established) {
    let (mut e, c) = fx::established(0);
    let _ = fx::check_data_path(&mut e, NOW, &c, len);
    (e, c)
}

/// Client → server: DSS (64-bit DATA_ACK + 64-bit mapping) and timestamps in,
/// plain TCP with the engine's timestamps out.
#[divan::bench(args = LENS, sample_size = 64, sample_count = 1000)]
fn upstream(b: Bencher<'_, '_>, len: usize) {
    let (mut e, c) = setup(len);
    let pkt = VecPacket::from_bytes(&c.client_data(len));
    b.counter(ItemsCount::new(1usize))
        .with_inputs(|| pkt.clone())
        .bench_local_refs(|p| e.handle_packet(NOW, Port::Access, p));
}

/// Server → client: timestamps in, DSS (64-bit DATA_ACK + 64-bit mapping) added.
#[divan::bench(args = LENS, sample_size = 64, sample_count = 1000)]
fn downstream(b: Bencher<'_, '_>, len: usize) {
    let (mut e, c) = setup(len);
    let pkt = VecPacket::from_bytes(&c.server_data(len));
    b.counter(ItemsCount::new(1usize))
        .with_inputs(|| pkt.clone())
        .bench_local_refs(|p| e.handle_packet(NOW, Port::Core, p));
}

/// Baseline: the harness and the input copy alone (touching the packet once).
#[divan::bench(args = LENS, sample_size = 64, sample_count = 1000)]
fn baseline_input_only(b: Bencher<'_, '_>, len: usize) {
    let (_, c) = fx::established(0);
    let pkt = VecPacket::from_bytes(&c.client_data(len));
    b.with_inputs(|| pkt.clone())
        .bench_local_refs(|p| black_box(hac_core::PacketBuf::data(p).len()));
}

/// Baseline: hac-wire parse of the client segment (IPv4, TCP, option summary, DSS).
#[divan::bench(args = LENS, sample_size = 64, sample_count = 1000)]
fn baseline_wire_parse_to_dss(b: Bencher<'_, '_>, len: usize) {
    let (_, c) = fx::established(0);
    let pkt = VecPacket::from_bytes(&c.client_data(len));
    assert!(parse_dss(hac_core::PacketBuf::data(&pkt)).is_some());
    b.with_inputs(|| pkt.clone())
        .bench_local_refs(|p| parse_dss(hac_core::PacketBuf::data(p)));
}

#[inline(never)]
fn parse_dss(pkt: &[u8]) -> Option<(u32, DssRepr)> {
    let ip = ipv4::Packet::new_checked(pkt).ok()?;
    let t = tcp::Packet::new_checked(ip.payload()).ok()?;
    let opts = t.options();
    let s = tcp_options::summarize(opts).ok()?;
    let span = s.mptcp().first()?;
    let d = DssRepr::parse(&Dss::new_checked(span.slice(opts)?).ok()?).ok()?;
    Some((t.seq_number().0, d))
}

/// Baseline: the engine's cheapest full path, a segment for no binding (parse,
/// one table lookup, a drop counter).
#[divan::bench(args = LENS, sample_size = 64, sample_count = 1000)]
fn baseline_engine_drop_no_binding(b: Bencher<'_, '_>, len: usize) {
    let (mut e, c) = fx::established(0);
    let stranger = fx::Established {
        client: fx::client_sock(999_999),
        ..c
    };
    let pkt = VecPacket::from_bytes(&stranger.client_data(len));
    b.with_inputs(|| pkt.clone())
        .bench_local_refs(|p| e.handle_packet(NOW, Port::Access, p));
}

/// A full Convert handshake (client SYN with MP_CAPABLE + Connect → downstream SYN;
/// server SYN-ACK → ACK + MP_CAPABLE SYN-ACK; third ACK with both keys → Convert
/// reply with DSS), outputs polled into a buffer. Distinct client ports; the table
/// holds 0..100k connections (rebuilt every 100k handshakes, untimed).
#[divan::bench(sample_size = 16, sample_count = 2000)]
fn handshake(b: Bencher<'_, '_>) {
    let st = RefCell::new(fx::Handshakes::new(NOW));
    b.counter(ItemsCount::new(1usize))
        .with_inputs(|| st.borrow_mut().inputs().0)
        .bench_local_refs(|pkts| st.borrow_mut().replay(pkts));
}

/// Baseline for the handshake: the harness with the three input copies alone.
#[divan::bench(sample_size = 16, sample_count = 2000)]
fn baseline_handshake_inputs_only(b: Bencher<'_, '_>) {
    let st = RefCell::new(fx::Handshakes::new(NOW));
    b.counter(ItemsCount::new(1usize))
        .with_inputs(|| st.borrow_mut().inputs().0)
        .bench_local_refs(|pkts| black_box(pkts.len()));
}
