//! MPTCP v1 key-derived values (RFC 8684 §3.1, §3.2, §3.4.1): the connection token
//! and initial data sequence number (IDSN) derived from a 64-bit key, the MP_JOIN
//! HMACs and the ADD_ADDR truncated HMAC. Only HMAC-SHA256 (MP_CAPABLE flag H) is
//! defined by RFC 8684, so that is all there is.
//!
//! Everything here is allocation-free and infallible; keys and nonces are hashed in
//! network byte order, exactly as they appear on the wire.

use core::net::IpAddr;

use hmac::digest::KeyInit;
use hmac::digest::generic_array::GenericArray;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::seq::DataSeq;

type HmacSha256 = Hmac<Sha256>;

/// SHA-256 block size: HMAC zero-pads shorter keys to this length (RFC 2104 §2).
const BLOCK: usize = 64;

/// Token and IDSN of one 64-bit key, computed from a single SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyMaterial {
    /// The connection token: the most significant 32 bits of SHA-256(key)
    /// (RFC 8684 §3.2). A host's token is what the peer puts in an MP_JOIN SYN.
    pub token: u32,
    /// The initial data sequence number: the least significant 64 bits of
    /// SHA-256(key) (RFC 8684 §3.1). The MP_CAPABLE SYN occupies this DSN; the
    /// first data byte is `idsn + 1`.
    pub idsn: DataSeq,
}

impl KeyMaterial {
    /// Derives token and IDSN from `key` with one hash.
    #[must_use]
    pub fn from_key(key: u64) -> Self {
        key_material(key)
    }
}

/// Token and IDSN of `key` (one SHA-256 over the big-endian key).
///
/// RFC 8684 §3.1: "the truncated (least significant 64 bits) SHA-256 hash of the
/// key"; §3.2: "the token ... is a cryptographic hash of the key ... truncated to
/// the most significant 32 bits".
#[must_use]
pub fn key_material(key: u64) -> KeyMaterial {
    let digest = Sha256::digest(key.to_be_bytes());
    let d: &[u8] = digest.as_slice();
    let token = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    let mut low = [0u8; 8];
    low.copy_from_slice(&d[24..32]);
    KeyMaterial {
        token,
        idsn: DataSeq(u64::from_be_bytes(low)),
    }
}

/// The token of `key`: first 4 bytes of SHA-256(key as 8 big-endian bytes),
/// RFC 8684 §3.2.
#[must_use]
pub fn key_token(key: u64) -> u32 {
    key_material(key).token
}

/// The IDSN of `key`: last 8 bytes of SHA-256(key as 8 big-endian bytes),
/// RFC 8684 §3.1.
#[must_use]
pub fn key_idsn(key: u64) -> DataSeq {
    key_material(key).idsn
}

/// HMAC-SHA256 keyed with `k1 ‖ k2` (8 bytes each, big-endian) over `msg`.
fn hmac_keys(k1: u64, k2: u64, msg: &[u8]) -> [u8; 32] {
    // RFC 2104 §2: a key shorter than the block size is zero-padded to B bytes, so
    // HMAC over the 64-byte padded key equals HMAC over the 16-byte key. Using the
    // block-sized key makes construction infallible (no `new_from_slice` Result).
    let mut key = [0u8; BLOCK];
    key[..8].copy_from_slice(&k1.to_be_bytes());
    key[8..16].copy_from_slice(&k2.to_be_bytes());
    let mut mac = <HmacSha256 as KeyInit>::new(GenericArray::from_slice(&key));
    mac.update(msg);
    let out = mac.finalize().into_bytes();
    let mut r = [0u8; 32];
    r.copy_from_slice(out.as_slice());
    r
}

/// The full MP_JOIN HMAC (RFC 8684 §3.2): HMAC-SHA256 with
/// key = `key_local ‖ key_remote` and message = `nonce_local ‖ nonce_remote`
/// (keys 8 bytes, nonces 4 bytes, all big-endian).
///
/// "Local" is the host that *sends* the HMAC:
/// * host A (the subflow initiator, sends the third ACK):
///   `join_hmac(KeyA, KeyB, R_A, R_B)`; its leftmost 160 bits go in the ACK;
/// * host B (the listener, sends the SYN-ACK):
///   `join_hmac(KeyB, KeyA, R_B, R_A)`; its leftmost 64 bits go in the SYN-ACK.
///
/// Here `R_A` is the nonce of A's MP_JOIN SYN and `R_B` that of B's SYN-ACK.
#[must_use]
pub fn join_hmac(key_local: u64, key_remote: u64, nonce_local: u32, nonce_remote: u32) -> [u8; 32] {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&nonce_local.to_be_bytes());
    msg[4..].copy_from_slice(&nonce_remote.to_be_bytes());
    hmac_keys(key_local, key_remote, &msg)
}

/// The leftmost 64 bits of [`join_hmac`], as carried in the MP_JOIN SYN-ACK
/// (RFC 8684 §3.2), big-endian.
#[must_use]
pub fn join_hmac_truncated64(
    key_local: u64,
    key_remote: u64,
    nonce_local: u32,
    nonce_remote: u32,
) -> u64 {
    let h = join_hmac(key_local, key_remote, nonce_local, nonce_remote);
    let mut a = [0u8; 8];
    a.copy_from_slice(&h[..8]);
    u64::from_be_bytes(a)
}

/// The leftmost 160 bits of [`join_hmac`], as carried in the MP_JOIN third ACK
/// (RFC 8684 §3.2).
#[must_use]
pub fn join_hmac160(
    key_local: u64,
    key_remote: u64,
    nonce_local: u32,
    nonce_remote: u32,
) -> [u8; 20] {
    let h = join_hmac(key_local, key_remote, nonce_local, nonce_remote);
    let mut a = [0u8; 20];
    a.copy_from_slice(&h[..20]);
    a
}

/// The ADD_ADDR truncated HMAC (RFC 8684 §3.4.1): the **rightmost** 64 bits of
/// HMAC-SHA256 with key = `sender_key ‖ receiver_key` and message =
/// `Address ID (1) ‖ address (4 or 16) ‖ port (2)`, where the port is two zero
/// bytes when the option carries no port.
#[must_use]
pub fn add_addr_hmac(
    sender_key: u64,
    receiver_key: u64,
    addr_id: u8,
    addr: IpAddr,
    port: Option<u16>,
) -> u64 {
    let mut msg = [0u8; 1 + 16 + 2];
    msg[0] = addr_id;
    let n = match addr {
        IpAddr::V4(a) => {
            msg[1..5].copy_from_slice(&a.octets());
            5
        }
        IpAddr::V6(a) => {
            msg[1..17].copy_from_slice(&a.octets());
            17
        }
    };
    msg[n..n + 2].copy_from_slice(&port.unwrap_or(0).to_be_bytes());
    let h = hmac_keys(sender_key, receiver_key, &msg[..n + 2]);
    let mut a = [0u8; 8];
    a.copy_from_slice(&h[24..32]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    /// tests/fixtures/README.md: key 0xaa1eb96f5b6d833d → token 0x6fa8c82b,
    /// IDSN 8282521017285119594.
    #[test]
    fn readme_vector() {
        let m = key_material(0xaa1e_b96f_5b6d_833d);
        assert_eq!(m.token, 0x6fa8_c82b);
        assert_eq!(m.idsn, DataSeq(8_282_521_017_285_119_594));
        assert_eq!(key_token(0xaa1e_b96f_5b6d_833d), 0x6fa8_c82b);
        assert_eq!(
            key_idsn(0xaa1e_b96f_5b6d_833d),
            DataSeq(8_282_521_017_285_119_594)
        );
        assert_eq!(KeyMaterial::from_key(0xaa1e_b96f_5b6d_833d), m);
    }

    /// The zero-padded 64-byte key used by `hmac_keys` gives the same HMAC as the
    /// plain 16-byte key (RFC 2104 §2).
    #[test]
    fn padded_key_equals_short_key() {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&[
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ])
        .unwrap();
        mac.update(b"abc");
        let want = mac.finalize().into_bytes();
        let got = hmac_keys(0x0102_0304_0506_0708, 0x090a_0b0c_0d0e_0f10, b"abc");
        assert_eq!(&got[..], want.as_slice());
    }

    // v4-path1.pcap packet 3 (third ACK, MP_CAPABLE len 20):
    //   1e 14 01 01 | f385ef39ed38c079 (KeyA, client) | 8a35122586d462eb (KeyB, server)
    // v4-path2.pcap packet 1 (MP_JOIN SYN): 1e 0c 10 01 | token 8df0e670 | R_A 0064629e
    // v4-path2.pcap packet 2 (MP_JOIN SYN-ACK): 1e 10 10 00 | 3e9d9af027cd1da7 | R_B b0eac887
    // v4-path2.pcap packet 3 (MP_JOIN ACK): 1e 18 10 00 | 4c2701bf2775f8b0dc2d2b79b25d71b399246de0
    const V4_KEY_A: u64 = 0xf385_ef39_ed38_c079;
    const V4_KEY_B: u64 = 0x8a35_1225_86d4_62eb;
    const V4_R_A: u32 = 0x0064_629e;
    const V4_R_B: u32 = 0xb0ea_c887;

    #[test]
    fn v4_capture_join() {
        // The join SYN carries the listener's (B's) token.
        assert_eq!(key_token(V4_KEY_B), 0x8df0_e670);
        // Server's first DSS mapping (v4-path1.pcap packet 4) starts at IDSN_B + 1:
        // DSN 0x557de600ee660d91.
        assert_eq!(key_idsn(V4_KEY_B) + 1, DataSeq(0x557d_e600_ee66_0d91));
        // Client's first DSN (v4-path1.pcap packet 10) is IDSN_A + 1: a23d5f1192671776.
        assert_eq!(key_idsn(V4_KEY_A) + 1, DataSeq(0xa23d_5f11_9267_1776));
        // SYN-ACK: B is local.
        assert_eq!(
            join_hmac_truncated64(V4_KEY_B, V4_KEY_A, V4_R_B, V4_R_A),
            0x3e9d_9af0_27cd_1da7
        );
        // Third ACK: A is local.
        let want: [u8; 20] = [
            0x4c, 0x27, 0x01, 0xbf, 0x27, 0x75, 0xf8, 0xb0, 0xdc, 0x2d, 0x2b, 0x79, 0xb2, 0x5d,
            0x71, 0xb3, 0x99, 0x24, 0x6d, 0xe0,
        ];
        assert_eq!(join_hmac160(V4_KEY_A, V4_KEY_B, V4_R_A, V4_R_B), want);
        assert_eq!(join_hmac(V4_KEY_A, V4_KEY_B, V4_R_A, V4_R_B)[..20], want);
    }

    // v6-path1.pcap packet 3: keys b1d91fa211cd432a (A) / 1148dc2c8465c75f (B)
    // v6-path2.pcap packet 1: token b0dc866e, R_A 0c756656 (address id 2)
    // v6-path2.pcap packet 2: HMAC f6b62b2fdb062e7f, R_B e8d146bc
    // v6-path2.pcap packet 3: HMAC 1f6ca37babbdf36e8f4903d032f9a07a3aff9057
    #[test]
    fn v6_capture_join() {
        let (ka, kb, ra, rb) = (
            0xb1d9_1fa2_11cd_432a,
            0x1148_dc2c_8465_c75f,
            0x0c75_6656,
            0xe8d1_46bc,
        );
        assert_eq!(key_token(kb), 0xb0dc_866e);
        assert_eq!(join_hmac_truncated64(kb, ka, rb, ra), 0xf6b6_2b2f_db06_2e7f);
        let want: [u8; 20] = [
            0x1f, 0x6c, 0xa3, 0x7b, 0xab, 0xbd, 0xf3, 0x6e, 0x8f, 0x49, 0x03, 0xd0, 0x32, 0xf9,
            0xa0, 0x7a, 0x3a, 0xff, 0x90, 0x57,
        ];
        assert_eq!(join_hmac160(ka, kb, ra, rb), want);
    }

    /// ADD_ADDR HMAC against an independent computation of the RFC 8684 §3.4.1
    /// construction (python3 hmac/hashlib, recorded here): rightmost 64 bits.
    #[test]
    fn add_addr_hmac_construction() {
        // Equivalent manual construction through the shared helper.
        let v4 = Ipv4Addr::new(198, 18, 2, 1);
        let mut msg = [0u8; 7];
        msg[0] = 5;
        msg[1..5].copy_from_slice(&v4.octets());
        let full = hmac_keys(V4_KEY_B, V4_KEY_A, &msg);
        let mut tail = [0u8; 8];
        tail.copy_from_slice(&full[24..]);
        assert_eq!(
            add_addr_hmac(V4_KEY_B, V4_KEY_A, 5, IpAddr::V4(v4), None),
            u64::from_be_bytes(tail)
        );
        // With a port the message grows by the port, not by two extra bytes.
        assert_ne!(
            add_addr_hmac(V4_KEY_B, V4_KEY_A, 5, IpAddr::V4(v4), Some(0)),
            add_addr_hmac(V4_KEY_B, V4_KEY_A, 5, IpAddr::V4(v4), Some(5000))
        );
        // Port absent == port 0 by construction (two zero bytes).
        assert_eq!(
            add_addr_hmac(V4_KEY_B, V4_KEY_A, 5, IpAddr::V4(v4), Some(0)),
            add_addr_hmac(V4_KEY_B, V4_KEY_A, 5, IpAddr::V4(v4), None)
        );
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
        let _ = add_addr_hmac(V4_KEY_A, V4_KEY_B, 1, IpAddr::V6(v6), Some(443));
        assert_eq!(
            add_addr_hmac(V4_KEY_B, V4_KEY_A, 5, IpAddr::V4(v4), Some(5000)),
            ADD_ADDR_V4_PORT
        );
        assert_eq!(
            add_addr_hmac(V4_KEY_A, V4_KEY_B, 1, IpAddr::V6(v6), Some(443)),
            ADD_ADDR_V6_PORT
        );
    }

    // Independent values: python3 -c 'hmac.new(struct.pack("!QQ",k1,k2), msg,
    // hashlib.sha256).digest()[-8:]' for the two cases above.
    const ADD_ADDR_V4_PORT: u64 = 0xa204_4dd6_f8a1_3e2a;
    const ADD_ADDR_V6_PORT: u64 = 0x9567_3e68_b038_a323;
}
