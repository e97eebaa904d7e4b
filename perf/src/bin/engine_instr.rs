//! Instruction counts for the hac-core engine, for `valgrind --tool=callgrind`
//! (repeatable on a noisy machine, unlike wall-clock time).
//!
//! `engine_instr <op> <iterations>` runs one operation `iterations` times. The cost
//! per operation is (Ir(n) − Ir(0)) / n; `perf/callgrind-engine.sh` does the
//! arithmetic and subtracts the matching input-preparation baseline:
//!
//! * `up64`, `up1448`, `down64`, `down1448`, `nobinding`: a fresh copy of the packet
//!   (`VecPacket::clone`), then `handle_packet`. Baseline: `copy`.
//! * `parse`: hac-wire parse of the 64-byte client segment down to its DSS (no copy).
//! * `handshake`: the recorder engine produces the next handshake's three packets,
//!   then the measured engine handles them and every output is polled. Baseline:
//!   `hs-inputs` (the recorder alone).

use std::hint::black_box;

use hac_core::{Instant, PacketBuf, Port, VecPacket};
use hac_perf::engine as fx;
use hac_wire::mptcp::{Dss, DssRepr};
use hac_wire::{ipv4, tcp, tcp_options};

const NOW: Instant = Instant(1_000_000);

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

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut sink = 0u64;
    let data = |op: &str| -> Option<(Port, usize)> {
        Some(match op {
            "up64" => (Port::Access, 64),
            "up1448" => (Port::Access, 1448),
            "down64" | "copy" | "nobinding" => (Port::Core, 64),
            "down1448" => (Port::Core, 1448),
            _ => return None,
        })
    };
    match op.as_str() {
        "up64" | "up1448" | "down64" | "down1448" | "copy" | "nobinding" => {
            let (port, len) = data(&op).expect("data op");
            let (mut e, c) = fx::established(0);
            let _ = fx::check_data_path(&mut e, NOW, &c, len);
            let bytes = match (op.as_str(), port) {
                ("nobinding", _) => fx::Established {
                    client: fx::client_sock(999_999),
                    ..c
                }
                .client_data(len),
                (_, Port::Access) => c.client_data(len),
                (_, Port::Core) => c.server_data(len),
            };
            let port = if op == "nobinding" {
                Port::Access
            } else {
                port
            };
            let tmpl = VecPacket::from_bytes(&bytes);
            let engine_too = op != "copy";
            for _ in 0..n {
                let mut p = black_box(&tmpl).clone();
                if engine_too {
                    let a = e.handle_packet(NOW, port, &mut p);
                    let _ = black_box(a);
                }
                sink = sink.wrapping_add(p.data().len() as u64);
            }
        }
        "parse" => {
            let (_, c) = fx::established(0);
            let bytes = c.client_data(64);
            for _ in 0..n {
                if let Some((s, _)) = parse_dss(black_box(&bytes)) {
                    sink = sink.wrapping_add(u64::from(s));
                }
            }
        }
        "handshake" | "hs-inputs" => {
            let mut h = fx::Handshakes::new(NOW);
            let replay = op == "handshake";
            for _ in 0..n {
                let (mut pkts, _) = h.inputs();
                if replay {
                    sink = sink.wrapping_add(u64::from(h.replay(&mut pkts)));
                }
                black_box(&pkts);
            }
        }
        _ => {
            eprintln!(
                "usage: engine_instr up64|up1448|down64|down1448|copy|nobinding|parse|handshake|hs-inputs ITERATIONS"
            );
            std::process::exit(2);
        }
    }
    black_box(sink);
}
