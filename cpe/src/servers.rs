//! Servers known to speak MPTCP themselves (RFC 8803 §5.1: the Extended TCP
//! Header TLV shows MP_CAPABLE in the server's SYN-ACK, "so the client can bypass
//! the converter for later connections"). Bounded, with a time to live.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::Mutex;

/// The cache, keyed by server address and port.
#[derive(Debug)]
pub struct MptcpServers {
    map: Mutex<HashMap<SocketAddr, Instant>>,
    max: usize,
    ttl: Duration,
}

impl MptcpServers {
    /// An empty cache of at most `max` entries, each kept `ttl`.
    #[must_use]
    pub fn new(max: usize, ttl: Duration) -> MptcpServers {
        MptcpServers {
            map: Mutex::new(HashMap::new()),
            max: max.max(1),
            ttl,
        }
    }

    /// Remembers `server` as MPTCP-capable (refreshing its time).
    pub fn learn(&self, server: SocketAddr, now: Instant) {
        let mut m = self.map.lock();
        if !m.contains_key(&server) && m.len() >= self.max {
            let ttl = self.ttl;
            m.retain(|_, t| now.duration_since(*t) < ttl);
            if m.len() >= self.max {
                // Still full: drop the oldest entry.
                if let Some(old) = m.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                    m.remove(&old);
                }
            }
        }
        m.insert(server, now);
    }

    /// True if `server` was learned within the time to live.
    #[must_use]
    pub fn is_mptcp(&self, server: SocketAddr, now: Instant) -> bool {
        let mut m = self.map.lock();
        match m.get(&server) {
            Some(t) if now.duration_since(*t) < self.ttl => true,
            Some(_) => {
                m.remove(&server);
                false
            }
            None => false,
        }
    }

    /// Forgets `server` (a direct connection to it failed).
    pub fn forget(&self, server: SocketAddr) {
        self.map.lock().remove(&server);
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// True when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_expires_and_stays_bounded() {
        let c = MptcpServers::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        let a: SocketAddr = "198.51.100.2:80".parse().unwrap();
        let b: SocketAddr = "198.51.100.3:80".parse().unwrap();
        let d: SocketAddr = "198.51.100.4:80".parse().unwrap();
        assert!(!c.is_mptcp(a, t0));
        c.learn(a, t0);
        assert!(c.is_mptcp(a, t0 + Duration::from_secs(5)));
        assert!(!c.is_mptcp("198.51.100.2:443".parse().unwrap(), t0));
        c.learn(b, t0 + Duration::from_secs(1));
        c.learn(d, t0 + Duration::from_secs(2));
        assert_eq!(c.len(), 2);
        assert!(
            !c.is_mptcp(a, t0 + Duration::from_secs(2)),
            "oldest evicted"
        );
        assert!(c.is_mptcp(d, t0 + Duration::from_secs(2)));
        assert!(!c.is_mptcp(d, t0 + Duration::from_secs(13)), "expired");
        c.forget(b);
        assert!(c.is_empty());
    }
}
