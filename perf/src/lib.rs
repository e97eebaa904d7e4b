//! Shared helpers for the benchmarks in `benches/` (figures go to `docs/perf.md`).
#![forbid(unsafe_code)]

pub mod engine;

use std::path::PathBuf;

/// The Ethernet frames of a capture in `dataplane/wire/tests/fixtures/`.
///
/// # Panics
/// When the fixture is missing or is not a little-endian classic pcap.
#[must_use]
pub fn fixture_frames(name: &str) -> Vec<Vec<u8>> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "dataplane",
        "wire",
        "tests",
        "fixtures",
        name,
    ]
    .iter()
    .collect();
    let d = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &d[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "not a little-endian pcap"
    );
    let mut off = 24;
    let mut out = Vec::new();
    while off + 16 <= d.len() {
        let incl = u32::from_le_bytes([d[off + 8], d[off + 9], d[off + 10], d[off + 11]]) as usize;
        out.push(d[off + 16..off + 16 + incl].to_vec());
        off += 16 + incl;
    }
    out
}

use hac_wire::ethernet::{EtherType, Frame};
use hac_wire::mptcp::{Dss, DssRepr, Mapping};
use hac_wire::seq::SeqNum;
use hac_wire::{ipv4, tcp, tcp_options};

/// What the translator needs from a data segment: 4-tuple ports, seq/ack, window,
/// payload length and the DSS (mapping + DATA_ACK).
#[derive(Debug, Clone, Copy)]
pub struct DataSegment {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: SeqNum,
    /// Acknowledgement number.
    pub ack: SeqNum,
    /// Window field.
    pub window: u16,
    /// Payload bytes.
    pub payload_len: usize,
    /// Relative subflow sequence number of the mapping (0 without one).
    pub ssn: u32,
    /// The DSS option.
    pub dss: DssRepr,
}

/// Parses an Ethernet/IPv4/TCP frame down to its DSS fields (`None` on any error).
#[inline(never)]
#[must_use]
pub fn parse_to_dss(frame: &[u8]) -> Option<DataSegment> {
    let eth = Frame::new_checked(frame).ok()?;
    if eth.payload_ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    if ip.is_fragment() || ip.protocol() != ipv4::PROTO_TCP {
        return None;
    }
    let t = tcp::Packet::new_checked(ip.payload()).ok()?;
    let opts = t.options();
    let summary = tcp_options::summarize(opts).ok()?;
    let span = summary.mptcp().first()?;
    let dss = Dss::new_checked(span.slice(opts)?).ok()?;
    let dss = DssRepr::parse(&dss).ok()?;
    Some(DataSegment {
        src_port: t.src_port(),
        dst_port: t.dst_port(),
        seq: t.seq_number(),
        ack: t.ack_number(),
        window: t.window_len(),
        payload_len: t.payload().len(),
        ssn: dss.mapping.map_or(0, |m: Mapping| m.ssn),
        dss,
    })
}

/// Baseline: the same headers without looking at the options.
#[inline(never)]
#[must_use]
pub fn parse_headers_only(frame: &[u8]) -> Option<(u16, u16, SeqNum, SeqNum, u16, usize)> {
    let eth = Frame::new_checked(frame).ok()?;
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    let t = tcp::Packet::new_checked(ip.payload()).ok()?;
    Some((
        t.src_port(),
        t.dst_port(),
        t.seq_number(),
        t.ack_number(),
        t.window_len(),
        t.payload().len(),
    ))
}
