//! hac-wire micro-benchmarks (issue 2): the per-packet parse of an Ethernet/IPv4/TCP
//! data segment down to its DSS fields, and incremental checksum updates.
//!
//! Run: `cargo bench -p hac-perf --bench wire`. Baselines measured in the same run:
//! a full TCP checksum recomputation over the same 1448-byte segment (what the
//! incremental update avoids) and a bare Ethernet+IPv4+TCP parse without options
//! (what the MPTCP option parse adds).

use std::hint::black_box;
use std::net::Ipv4Addr;

use divan::Bencher;
use hac_wire::seq::SeqNum;
use hac_wire::{checksum, tcp};

fn main() {
    divan::main();
}

/// Server data segment with a DSS (v4-path1 frame 4: 1514 bytes, 1424 payload,
/// DSS A + M|m, timestamps).
fn data_frame() -> Vec<u8> {
    hac_perf::fixture_frames("v4-path1.pcap").swap_remove(3)
}

#[divan::bench]
fn parse_eth_ipv4_tcp_to_dss(b: Bencher<'_, '_>) {
    let f = data_frame();
    assert!(hac_perf::parse_to_dss(&f).is_some());
    b.bench(|| hac_perf::parse_to_dss(black_box(&f)));
}

#[divan::bench]
fn baseline_parse_headers_only(b: Bencher<'_, '_>) {
    let f = data_frame();
    b.bench(|| hac_perf::parse_headers_only(black_box(&f)));
}

/// Incremental (RFC 1624) update of the TCP checksum for a NAT-style rewrite:
/// source address, source port, sequence and ack numbers and window.
#[divan::bench]
fn checksum_incremental_rewrite(b: Bencher<'_, '_>) {
    let f = data_frame();
    let seg = f[34..].to_vec();
    let old = Ipv4Addr::new(198, 18, 1, 1);
    let new = Ipv4Addr::new(203, 0, 113, 1);
    b.with_inputs(|| seg.clone()).bench_local_refs(|s| {
        let mut t = tcp::Packet::new_unchecked(&mut s[..]);
        t.update_checksum_for_ipv4_change(black_box(old), black_box(new));
        t.rewrite_src_port(black_box(40000));
        t.rewrite_seq(black_box(SeqNum(12345)));
        t.rewrite_ack(black_box(SeqNum(67890)));
        t.rewrite_window(black_box(501));
    });
}

/// One 32-bit field (RFC 1624 eqn. 3), the primitive.
#[divan::bench]
fn checksum_update_u32(b: Bencher<'_, '_>) {
    b.bench(|| checksum::update_u32(black_box(0x1234), black_box(0xdead_beef), black_box(7)));
}

/// Baseline: full TCP checksum over the same 1456-byte segment (header + payload).
#[divan::bench]
fn baseline_checksum_full_1448(b: Bencher<'_, '_>) {
    let f = data_frame();
    let seg = f[34..].to_vec();
    let (s, d) = (Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 1, 2));
    b.bench(|| checksum::tcp_ipv4(black_box(s), black_box(d), black_box(&seg)));
}
