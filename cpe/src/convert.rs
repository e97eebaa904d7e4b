//! The client side of the RFC 8803 Convert exchange, without I/O: the request
//! that goes in the SYN and the reading of the concentrator's reply.
//!
//! The request is a Connect TLV for the LAN connection's original destination
//! (IPv4 as `::ffff:a.b.c.d`, RFC 8803 §6.2.5), optionally an Extended Connect
//! listing MPTCP without a value ("is the server MPTCP-capable?", RFC 8803 §5.1,
//! §7.5), followed by the LAN host's first bytes (RFC 8803 §6: application data
//! goes right after the TLVs).

use std::net::SocketAddr;

use hac_wire::convert::{
    ConvertError, ErrorCode, HEADER_LEN, Header, HeaderRepr, Message, MessageBuilder, TcpOpt, Tlv,
};
use hac_wire::tcp_options::RawOptions;

/// TCP option kind of MPTCP (RFC 8684 §3).
const KIND_MPTCP: u8 = 30;
/// Largest request message: header + Extended Connect with one option.
pub const MAX_REQUEST_MESSAGE: usize = HEADER_LEN + 24;

/// Builds the Convert request for `dst` into `out` (cleared first), then appends
/// `first_data`. With `ask_mptcp` the Connect is Extended and lists MPTCP
/// (kind 30, no value): the concentrator's reply then carries the server's SYN-ACK
/// options in an Extended TCP Header TLV (RFC 8803 §6.2.6).
pub fn request(dst: SocketAddr, ask_mptcp: bool, first_data: &[u8], out: &mut Vec<u8>) {
    let mut msg = [0u8; MAX_REQUEST_MESSAGE];
    let n = {
        // A 28-byte buffer always holds header + Connect (+ one empty option):
        // these cannot fail.
        let mut b = MessageBuilder::new(&mut msg).unwrap_or_else(|_| unreachable!());
        let r = if ask_mptcp {
            b.connect_with_options(
                dst,
                &[TcpOpt {
                    kind: KIND_MPTCP,
                    value: &[],
                }],
            )
        } else {
            b.connect(dst)
        };
        debug_assert!(r.is_ok());
        b.finish().unwrap_or(0)
    };
    out.clear();
    out.extend_from_slice(&msg[..n]);
    out.extend_from_slice(first_data);
}

/// A Convert Error TLV received from the concentrator (RFC 8803 §6.2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The error code.
    pub code: ErrorCode,
    /// First value byte: retry delay (64, 65), ICMP code (97), else 0.
    pub detail: u8,
}

impl Refusal {
    /// A short label for metrics (bounded: one per code class).
    #[must_use]
    pub const fn label(&self) -> &'static str {
        match self.code {
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::MalformedMessage => "malformed_message",
            ErrorCode::UnsupportedMessage => "unsupported_message",
            ErrorCode::MissingCookie => "missing_cookie",
            ErrorCode::NotAuthorized => "not_authorized",
            ErrorCode::UnsupportedTcpOption => "unsupported_tcp_option",
            ErrorCode::ResourceExceeded => "resource_exceeded",
            ErrorCode::NetworkFailure => "network_failure",
            ErrorCode::ConnectionReset => "connection_reset",
            ErrorCode::DestinationUnreachable => "destination_unreachable",
            ErrorCode::Other(_) => "other",
        }
    }

    /// What the LAN host is told. Every refusal ends the LAN connection with a
    /// reset: the client MUST reset on an Error TLV (RFC 8803 §6.2.8) and the LAN
    /// host gets the closest plain-TCP equivalent of a refused or unreachable
    /// server — never a clean close, which would read as an empty answer.
    #[must_use]
    pub const fn lan_action(&self) -> LanAction {
        LanAction::Reset
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code)?;
        match self.code {
            ErrorCode::ResourceExceeded | ErrorCode::NetworkFailure => {
                write!(f, ", retry after {} s", self.detail)
            }
            ErrorCode::DestinationUnreachable => write!(f, ", ICMP code {}", self.detail),
            _ => Ok(()),
        }
    }
}

/// What happens to the LAN connection after a failed exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanAction {
    /// Close with SO_LINGER 0: the LAN host gets a RST.
    Reset,
}

/// The concentrator's reply, once complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The server accepted; `len` bytes of reply precede the server's data.
    Accepted {
        /// Length of the Convert message (Total Length × 4).
        len: usize,
        /// The Extended TCP Header TLV showed MP_CAPABLE in the server's SYN-ACK.
        server_mptcp: bool,
    },
    /// The concentrator refused (Error TLV).
    Refused(Refusal),
}

/// Why a reply cannot be used (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// More bytes are needed: at least `needed` in total.
    Incomplete {
        /// Bytes the reply needs in all.
        needed: usize,
    },
    /// The reply is not a valid Convert message: the client resets (RFC 8803
    /// §6.1, §6.2.1).
    Invalid(ConvertError),
    /// A TLV that only a client sends (Connect outside the incoming case, Info,
    /// Cookie) arrived from the concentrator.
    Unexpected(u8),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Incomplete { needed } => {
                write!(f, "reply incomplete (need {needed} bytes)")
            }
            ReplyError::Invalid(e) => write!(f, "invalid Convert reply: {e}"),
            ReplyError::Unexpected(t) => {
                write!(f, "invalid Convert reply: TLV type {t} from the converter")
            }
        }
    }
}

/// Parses the start of the concentrator's bytestream.
pub fn parse_reply(buf: &[u8]) -> Result<Reply, ReplyError> {
    if buf.len() < HEADER_LEN {
        return Err(ReplyError::Incomplete { needed: HEADER_LEN });
    }
    let h = HeaderRepr::parse(&Header::new_unchecked(&buf[..HEADER_LEN]))
        .map_err(ReplyError::Invalid)?;
    let len = h.message_len();
    if buf.len() < len {
        return Err(ReplyError::Incomplete { needed: len });
    }
    let msg = Message::parse(&buf[..len]).map_err(ReplyError::Invalid)?;
    let mut server_mptcp = false;
    for t in msg.tlvs() {
        match t.map_err(ReplyError::Invalid)? {
            // RFC 8803 §6.2.8: the client resets on an Error TLV.
            Tlv::Error(e) => {
                return Ok(Reply::Refused(Refusal {
                    code: e.code(),
                    detail: e.raw_value().first().copied().unwrap_or(0),
                }));
            }
            Tlv::ExtendedTcpHeader { options } => server_mptcp = has_mp_capable(options),
            Tlv::SupportedTcpExtensions(_) => {}
            Tlv::Info => return Err(ReplyError::Unexpected(hac_wire::convert::tlv_type::INFO)),
            Tlv::Connect(_) => {
                return Err(ReplyError::Unexpected(hac_wire::convert::tlv_type::CONNECT));
            }
            Tlv::Cookie(_) => {
                return Err(ReplyError::Unexpected(hac_wire::convert::tlv_type::COOKIE));
            }
            // Types from later specifications: ignored (the exchange still means
            // what the RFC says it means).
            Tlv::Unknown { .. } => {}
        }
    }
    Ok(Reply::Accepted { len, server_mptcp })
}

/// True if the option area has an MP_CAPABLE (kind 30, subtype 0, RFC 8684 §3.1).
fn has_mp_capable(options: &[u8]) -> bool {
    RawOptions::new(options)
        .map_while(Result::ok)
        .any(|o| o.kind() == KIND_MPTCP && o.bytes.get(2).is_some_and(|b| b >> 4 == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_the_rfc_example_then_the_data() {
        let mut out = Vec::new();
        request(
            "198.51.100.2:8080".parse().unwrap(),
            false,
            b"GET /",
            &mut out,
        );
        // RFC 8803 §6.2.5 layout, as in lab.sh's demo request.
        let hex: String = out[..24].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "010622630a051f9000000000000000000000ffffc6336402");
        assert_eq!(&out[24..], b"GET /");
    }

    #[test]
    fn request_v6_and_extended() {
        let mut out = Vec::new();
        request(
            "[2001:db8:100::2]:443".parse().unwrap(),
            true,
            b"",
            &mut out,
        );
        assert_eq!(out.len(), 28);
        assert_eq!(&out[..4], &[1, 7, 0x22, 0x63]);
        assert_eq!(&out[4..8], &[10, 6, 0x01, 0xbb]);
        assert_eq!(out[8], 0x20);
        // MPTCP, no value, zero padding.
        assert_eq!(&out[24..28], &[30, 2, 0, 0]);
        // The concentrator's parser reads it back.
        let (req, off) = hac_wire::convert::ConnectRequest::parse(&out).unwrap();
        assert_eq!(off, 28);
        let c = req.connect.unwrap();
        assert!(c.is_extended());
        assert_eq!(c.remote(), "[2001:db8:100::2]:443".parse().unwrap());
    }

    #[test]
    fn bare_header_accepts() {
        let r = parse_reply(&[1, 1, 0x22, 0x63, b'H', b'T']).unwrap();
        assert_eq!(
            r,
            Reply::Accepted {
                len: 4,
                server_mptcp: false
            }
        );
    }

    #[test]
    fn incomplete_replies_ask_for_more() {
        assert_eq!(
            parse_reply(&[1, 1]),
            Err(ReplyError::Incomplete { needed: 4 })
        );
        assert_eq!(
            parse_reply(&[1, 2, 0x22, 0x63, 0x1e]),
            Err(ReplyError::Incomplete { needed: 8 })
        );
    }

    fn error_reply(code: u8, v: u8) -> [u8; 8] {
        [1, 2, 0x22, 0x63, 0x1e, 1, code, v]
    }

    #[test]
    fn every_error_code_refuses_with_a_reset() {
        for (code, label) in [
            (32, "not_authorized"),
            (64, "resource_exceeded"),
            (65, "network_failure"),
            (96, "connection_reset"),
            (97, "destination_unreachable"),
            (1, "malformed_message"),
            (200, "other"),
        ] {
            let Reply::Refused(r) = parse_reply(&error_reply(code, 3)).unwrap() else {
                panic!("code {code} accepted");
            };
            assert_eq!(r.code.to_u8(), code);
            assert_eq!(r.label(), label);
            assert_eq!(r.lan_action(), LanAction::Reset);
            assert_eq!(r.detail, 3);
        }
        let Reply::Refused(r) = parse_reply(&error_reply(97, 3)).unwrap() else {
            unreachable!()
        };
        assert_eq!(r.to_string(), "Destination Unreachable (97), ICMP code 3");
    }

    #[test]
    fn extended_tcp_header_reports_mp_capable() {
        // Server SYN-ACK options: MSS, SACK-permitted, MP_CAPABLE v1 (12 bytes with
        // key), padded.
        let mut m = vec![1, 0, 0x22, 0x63, 0x14, 0, 0, 0];
        m.extend_from_slice(&[2, 4, 5, 0xb4, 4, 2]);
        m.extend_from_slice(&[30, 12, 0x01, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m[5] = ((m.len() - 4) / 4) as u8;
        m[1] = (m.len() / 4) as u8;
        assert_eq!(
            parse_reply(&m).unwrap(),
            Reply::Accepted {
                len: m.len(),
                server_mptcp: true
            }
        );
        // Same without MPTCP; and an MP_JOIN (subtype 1) is not MP_CAPABLE.
        let plain = [1, 3, 0x22, 0x63, 0x14, 2, 0, 0, 2, 4, 5, 0xb4];
        assert_eq!(
            parse_reply(&plain).unwrap(),
            Reply::Accepted {
                len: 12,
                server_mptcp: false
            }
        );
        let join = [1, 3, 0x22, 0x63, 0x14, 2, 0, 0, 30, 4, 0x10, 0];
        assert_eq!(
            parse_reply(&join).unwrap(),
            Reply::Accepted {
                len: 12,
                server_mptcp: false
            }
        );
    }

    #[test]
    fn invalid_replies_are_errors() {
        // Bad magic, version 0, total length 0.
        assert!(matches!(
            parse_reply(&[1, 1, 0x22, 0x64]),
            Err(ReplyError::Invalid(_))
        ));
        assert!(matches!(
            parse_reply(&[0, 1, 0x22, 0x63]),
            Err(ReplyError::Invalid(_))
        ));
        assert!(matches!(
            parse_reply(&[1, 0, 0x22, 0x63]),
            Err(ReplyError::Invalid(_))
        ));
        // Duplicate TLV (RFC 8803 §6.2.1: the client resets).
        assert!(matches!(
            parse_reply(&[1, 3, 0x22, 0x63, 0x15, 1, 0, 0, 0x15, 1, 0, 0]),
            Err(ReplyError::Invalid(_))
        ));
        // TLV overrunning the message.
        assert!(matches!(
            parse_reply(&[1, 2, 0x22, 0x63, 0x15, 2, 0, 0]),
            Err(ReplyError::Invalid(_))
        ));
        // Client-only TLVs from the converter.
        assert_eq!(
            parse_reply(&[1, 2, 0x22, 0x63, 1, 1, 0, 0]),
            Err(ReplyError::Unexpected(1))
        );
        // Unknown future TLV types are ignored.
        assert_eq!(
            parse_reply(&[1, 2, 0x22, 0x63, 0xc0, 1, 0, 0]).unwrap(),
            Reply::Accepted {
                len: 8,
                server_mptcp: false
            }
        );
    }
}
