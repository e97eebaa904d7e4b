//! Minimal pcap writer (LINKTYPE_RAW: each record starts at the IP header).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

const LINKTYPE_RAW: u32 = 101;
const SNAPLEN: u32 = 65_535;

#[derive(Debug)]
pub(crate) struct PcapWriter {
    w: BufWriter<File>,
}

impl PcapWriter {
    pub(crate) fn create(path: &Path) -> io::Result<PcapWriter> {
        let mut w = BufWriter::new(File::create(path)?);
        w.write_all(&0xa1b2_c3d4_u32.to_le_bytes())?; // microsecond timestamps
        w.write_all(&2u16.to_le_bytes())?;
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&0i32.to_le_bytes())?;
        w.write_all(&0u32.to_le_bytes())?;
        w.write_all(&SNAPLEN.to_le_bytes())?;
        w.write_all(&LINKTYPE_RAW.to_le_bytes())?;
        Ok(PcapWriter { w })
    }

    /// Appends `pkt` stamped `now_us` microseconds after the lab's epoch.
    pub(crate) fn record(&mut self, now_us: u64, pkt: &[u8]) -> io::Result<()> {
        let secs = u32::try_from(now_us / 1_000_000).unwrap_or(u32::MAX);
        let usecs = u32::try_from(now_us % 1_000_000).unwrap_or(0);
        let len = u32::try_from(pkt.len()).unwrap_or(u32::MAX);
        let cap = len.min(SNAPLEN);
        self.w.write_all(&secs.to_le_bytes())?;
        self.w.write_all(&usecs.to_le_bytes())?;
        self.w.write_all(&cap.to_le_bytes())?;
        self.w.write_all(&len.to_le_bytes())?;
        self.w.write_all(&pkt[..cap as usize])
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}
