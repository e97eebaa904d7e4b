//! Instruction counts for the hac-wire hot paths, for `valgrind --tool=callgrind`
//! (repeatable on a noisy machine, unlike wall-clock time).
//!
//! `wire_instr <op> <iterations>` runs one operation `iterations` times. The cost per
//! operation is (Ir(n) − Ir(0)) / n; `perf/callgrind.sh` does the arithmetic.

use std::hint::black_box;
use std::net::Ipv4Addr;

use hac_wire::seq::SeqNum;
use hac_wire::tcp;

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let frame = hac_perf::fixture_frames("v4-path1.pcap").swap_remove(3);
    let mut seg = frame[34..].to_vec();
    let mut sink = 0u64;
    match op.as_str() {
        "parse" => {
            for _ in 0..n {
                if let Some(d) = hac_perf::parse_to_dss(black_box(&frame)) {
                    sink = sink.wrapping_add(u64::from(d.ssn));
                }
            }
        }
        "headers" => {
            for _ in 0..n {
                if let Some(h) = hac_perf::parse_headers_only(black_box(&frame)) {
                    sink = sink.wrapping_add(u64::from(h.0));
                }
            }
        }
        "rewrite" => {
            for i in 0..n {
                let mut t = tcp::Packet::new_unchecked(&mut seg[..]);
                t.update_checksum_for_ipv4_change(
                    black_box(Ipv4Addr::new(198, 18, 1, 1)),
                    black_box(Ipv4Addr::new(203, 0, 113, 1)),
                );
                t.rewrite_src_port(black_box(40000));
                t.rewrite_seq(black_box(SeqNum(i as u32)));
                t.rewrite_ack(black_box(SeqNum(67890)));
                t.rewrite_window(black_box(501));
            }
        }
        "full-checksum" => {
            let (s, d) = (Ipv4Addr::new(198, 18, 1, 1), Ipv4Addr::new(198, 18, 1, 2));
            for _ in 0..n {
                sink = sink.wrapping_add(u64::from(hac_wire::checksum::tcp_ipv4(
                    black_box(s),
                    black_box(d),
                    black_box(&seg),
                )));
            }
        }
        _ => {
            eprintln!("usage: wire_instr parse|headers|rewrite|full-checksum ITERATIONS");
            std::process::exit(2);
        }
    }
    black_box(sink);
}
