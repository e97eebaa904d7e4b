//! The packet buffer the engine works on: an IP packet (IPv4 or IPv6 header first) in
//! a buffer with headroom, like a DPDK mbuf whose data offset points at the IP header.
//!
//! The engine rewrites packets in place. When a translated header grows (MPTCP options
//! added toward the client) it moves the *headers* into the headroom rather than the
//! payload, so the cost does not depend on the payload size. A handle may be kept after
//! forwarding (the repair cache of the multipath issue holds segments in flight):
//! [`PacketBuf::share`] returns another handle to the same bytes (a reference-count
//! increment on an mbuf; a copy for the test implementation).

/// A packet buffer handle.
pub trait PacketBuf {
    /// The packet bytes, starting at the IP header.
    fn data(&self) -> &[u8];
    /// The packet bytes, mutable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Bytes available in front of the data.
    fn headroom(&self) -> usize;
    /// Bytes available behind the data.
    fn tailroom(&self) -> usize;
    /// Moves the start of the data `n` bytes earlier (into the headroom). Returns false,
    /// changing nothing, when the headroom is short.
    fn prepend(&mut self, n: usize) -> bool;
    /// Moves the start of the data `n` bytes later (drops `n` leading bytes). Returns
    /// false, changing nothing, when the packet is shorter.
    fn adj(&mut self, n: usize) -> bool;
    /// Sets the data length (growing into the tailroom, or trimming). Returns false,
    /// changing nothing, when the tailroom is short.
    fn set_len(&mut self, len: usize) -> bool;
    /// Another handle to the same packet.
    #[must_use]
    fn share(&self) -> Self
    where
        Self: Sized;
}

/// A plain heap buffer with headroom: the packet type of tests, the simulator and the
/// TUN harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecPacket {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecPacket {
    /// Default headroom, as an mbuf's (`RTE_PKTMBUF_HEADROOM`).
    pub const HEADROOM: usize = 128;
    /// Default capacity behind the headroom.
    pub const CAPACITY: usize = 2048;

    /// A packet holding a copy of `bytes` with the default headroom and capacity.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let cap = Self::HEADROOM + bytes.len().max(Self::CAPACITY);
        let mut buf = vec![0; cap];
        buf[Self::HEADROOM..Self::HEADROOM + bytes.len()].copy_from_slice(bytes);
        VecPacket {
            buf,
            start: Self::HEADROOM,
            end: Self::HEADROOM + bytes.len(),
        }
    }

    /// An empty packet with the default headroom and capacity.
    #[must_use]
    pub fn empty() -> Self {
        Self::from_bytes(&[])
    }

    /// The packet bytes as a vector.
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl PacketBuf for VecPacket {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    fn headroom(&self) -> usize {
        self.start
    }
    fn tailroom(&self) -> usize {
        self.buf.len() - self.end
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn set_len(&mut self, len: usize) -> bool {
        if self.start + len > self.buf.len() {
            return false;
        }
        self.end = self.start + len;
        true
    }
    fn share(&self) -> Self {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_adj_set_len() {
        let mut p = VecPacket::from_bytes(&[1, 2, 3]);
        assert!(p.prepend(2));
        assert_eq!(p.data().len(), 5);
        assert!(p.adj(2));
        assert_eq!(p.data(), &[1, 2, 3]);
        assert!(!p.prepend(VecPacket::HEADROOM + 1));
        assert!(p.set_len(1));
        assert_eq!(p.data(), &[1]);
        assert!(!p.set_len(1 << 20));
    }
}
