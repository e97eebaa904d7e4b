//! Hashing for the binding tables. The tables (`hashbrown::HashTable<u32>`) store
//! only slab indices; a lookup hashes the key taken from the packet and compares
//! candidates against the connection's own fields, so the hash of a key computed
//! from a packet must equal the hash computed from the stored connection: both go
//! through the functions here. The hash is a folded 64×64→128 multiply (as in
//! foldhash) over compact key material, keyed by a per-engine secret seed.

use core::net::IpAddr;

/// Per-engine hash keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HashKeys {
    pub k0: u64,
    pub k1: u64,
}

const C0: u64 = 0x243f_6a88_85a3_08d3;
const C1: u64 = 0x1319_8a2e_0370_7344;
const C2: u64 = 0xa409_3822_299f_31d0;

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

impl HashKeys {
    /// Hash of an address pair `(a, b)` with ports.
    #[inline]
    pub fn pair(&self, a: IpAddr, ap: u16, b: IpAddr, bp: u16) -> u64 {
        let ports = (u64::from(ap) << 16) | u64::from(bp);
        match (a, b) {
            (IpAddr::V4(x), IpAddr::V4(y)) => {
                let ips = (u64::from(x.to_bits()) << 32) | u64::from(y.to_bits());
                fold_mul(ips ^ self.k0, ports ^ self.k1)
            }
            _ => {
                let (a1, a0) = words(a);
                let (b1, b0) = words(b);
                let h = fold_mul(a1 ^ self.k0, a0 ^ C0);
                let h = fold_mul(h ^ b1, b0 ^ C1);
                fold_mul(h ^ ports ^ (1 << 40), self.k1 ^ C2)
            }
        }
    }

    /// Hash of an MPTCP token.
    #[inline]
    pub fn token(&self, t: u32) -> u64 {
        fold_mul(u64::from(t) ^ self.k0, self.k1 ^ C2)
    }
}

#[inline]
fn words(ip: IpAddr) -> (u64, u64) {
    match ip {
        IpAddr::V4(a) => (u64::from(a.to_bits()), 0),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            ((b >> 64) as u64, b as u64)
        }
    }
}
