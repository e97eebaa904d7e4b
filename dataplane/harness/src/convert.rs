//! Building Convert requests for the client script (independently of
//! `hac_wire`'s emitter, so that tests cross-check it).

use std::net::{IpAddr, SocketAddr};

/// An RFC 8803 §6 Convert message with one base Connect TLV (§6.2.5) to
/// `dest`: header `01 06 22 63`, then `0A 05 <port BE> <16-byte IPv6 address>`,
/// an IPv4 address being carried as `::ffff:a.b.c.d`. 24 bytes.
#[must_use]
pub fn convert_connect_request(dest: SocketAddr) -> Vec<u8> {
    let addr = match dest.ip() {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    let mut m = vec![0x01, 0x06, 0x22, 0x63, 0x0A, 0x05];
    m.extend_from_slice(&dest.port().to_be_bytes());
    m.extend_from_slice(&addr.octets());
    m
}

/// As [`convert_connect_request`], with an Extended Connect (RFC 8803 §6.2.5)
/// listing each of `kinds` without a value (`kind, 2`), zero-padded to 4 bytes:
/// e.g. `[30]` asks the converter to try MPTCP toward the server.
#[must_use]
pub fn convert_extended_connect_request(dest: SocketAddr, kinds: &[u8]) -> Vec<u8> {
    let mut m = convert_connect_request(dest);
    for &k in kinds {
        m.extend_from_slice(&[k, 2]);
    }
    while !m.len().is_multiple_of(4) {
        m.push(0);
    }
    let words = u8::try_from(m.len() / 4).expect("a short message");
    m[1] = words;
    m[5] = words - 1;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_request_matches_rfc_layout() {
        let m = convert_connect_request("192.0.2.10:443".parse().unwrap());
        let mut want = vec![0x01, 0x06, 0x22, 0x63, 0x0A, 0x05, 0x01, 0xBB];
        want.extend_from_slice(&[0; 10]);
        want.extend_from_slice(&[0xFF, 0xFF, 0xC0, 0x00, 0x02, 0x0A]);
        assert_eq!(m, want);
        let v6 = convert_connect_request("[2001:db8::1]:80".parse().unwrap());
        assert_eq!(v6.len(), 24);
        assert_eq!(&v6[8..12], &[0x20, 0x01, 0x0d, 0xb8]);
    }

    #[test]
    fn connect_request_parses_with_hac_wire() {
        let dest: SocketAddr = "[2001:db8:100::2]:8080".parse().unwrap();
        let m = convert_connect_request(dest);
        let (req, off) = hac_wire::convert::ConnectRequest::parse(&m).unwrap();
        assert_eq!(off, 24);
        assert_eq!(req.connect.unwrap().remote(), dest);
    }

    #[test]
    fn extended_connect_request_lists_kinds_without_value() {
        let dest: SocketAddr = "192.0.2.10:443".parse().unwrap();
        let m = convert_extended_connect_request(dest, &[30]);
        assert_eq!(m.len(), 28);
        assert_eq!(&m[..6], &[0x01, 0x07, 0x22, 0x63, 0x0A, 0x06]);
        assert_eq!(&m[24..], &[30, 2, 0, 0]);
        let (req, off) = hac_wire::convert::ConnectRequest::parse(&m).unwrap();
        assert_eq!(off, 28);
        let c = req.connect.unwrap();
        assert!(c.is_extended());
        assert_eq!(c.options().map(|o| o.kind).collect::<Vec<_>>(), [30]);
    }
}
