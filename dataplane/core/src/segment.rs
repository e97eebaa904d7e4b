//! Parsing an IP packet down to what the translator needs, once per packet: the
//! addresses, the TCP header fields and a one-pass summary of the TCP options with
//! the position of every MPTCP option (RFC 9293 §3.1, RFC 8684 §3).

use core::net::IpAddr;

use hac_wire::mptcp::MptcpOption;
use hac_wire::seq::SeqNum;
use hac_wire::tcp::{self, Flags};
use hac_wire::tcp_options::{self, OptionSummary};
use hac_wire::{ipv4, ipv6};

use crate::conn::Sock;
use crate::drop::DropReason;

/// A parsed TCP segment: offsets into the packet plus the header fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Offset of the TCP header (= IP header length, extension headers included).
    pub tcp_off: usize,
    /// TCP header length (options included).
    pub tcp_len: usize,
    /// End of the TCP payload (IP total length; link-layer padding excluded).
    pub end: usize,
    pub sport: u16,
    pub dport: u16,
    pub seq: SeqNum,
    pub ack: SeqNum,
    pub flags: Flags,
    pub window: u16,
    /// The TCP checksum as received.
    pub checksum: u16,
    pub opts: OptionSummary,
}

impl Segment {
    /// Parses `pkt` (IP header first).
    pub fn parse(pkt: &[u8]) -> Result<Segment, DropReason> {
        let (src, dst, tcp_off, end) = match pkt.first().map(|b| b >> 4) {
            Some(4) => {
                let ip = ipv4::Packet::new_checked(pkt).map_err(|_| DropReason::Malformed)?;
                if ip.is_fragment() {
                    return Err(DropReason::Fragment);
                }
                if ip.protocol() != ipv4::PROTO_TCP {
                    return Err(DropReason::NotTcp);
                }
                (
                    IpAddr::V4(ip.src_addr()),
                    IpAddr::V4(ip.dst_addr()),
                    ip.header_len(),
                    usize::from(ip.total_len()),
                )
            }
            Some(6) => {
                let ip = ipv6::Packet::new_checked(pkt).map_err(|_| DropReason::Malformed)?;
                let ul = ip.upper_layer().map_err(|_| DropReason::Malformed)?;
                if ul.fragment.is_some() {
                    return Err(DropReason::Fragment);
                }
                if ul.protocol != ipv4::PROTO_TCP {
                    return Err(DropReason::NotTcp);
                }
                (
                    IpAddr::V6(ip.src_addr()),
                    IpAddr::V6(ip.dst_addr()),
                    ul.offset,
                    ul.offset + ul.len,
                )
            }
            _ => return Err(DropReason::Malformed),
        };
        let seg = pkt.get(tcp_off..end).ok_or(DropReason::Malformed)?;
        let t = tcp::Packet::new_checked(seg).map_err(|_| DropReason::Malformed)?;
        let opts = tcp_options::summarize(t.options()).map_err(|_| DropReason::BadOptions)?;
        Ok(Segment {
            src,
            dst,
            tcp_off,
            tcp_len: t.header_len(),
            end,
            sport: t.src_port(),
            dport: t.dst_port(),
            seq: t.seq_number(),
            ack: t.ack_number(),
            flags: t.flags(),
            window: t.window_len(),
            checksum: t.checksum(),
            opts,
        })
    }

    pub fn src_sock(&self) -> Sock {
        Sock::new(self.src, self.sport)
    }

    pub fn dst_sock(&self) -> Sock {
        Sock::new(self.dst, self.dport)
    }

    /// Offset of the payload.
    pub fn payload_off(&self) -> usize {
        self.tcp_off + self.tcp_len
    }

    /// Payload length.
    pub fn payload_len(&self) -> usize {
        self.end - self.payload_off()
    }

    /// The options area.
    pub fn options<'a>(&self, pkt: &'a [u8]) -> &'a [u8] {
        &pkt[self.tcp_off + tcp::HEADER_LEN..self.payload_off()]
    }

    /// The payload.
    pub fn payload<'a>(&self, pkt: &'a [u8]) -> &'a [u8] {
        &pkt[self.payload_off()..self.end]
    }

    /// The parsed MPTCP options (at most four are looked at). An option that does
    /// not parse is an error: RFC 8684 §3 lengths are exact.
    pub fn mptcp<'a>(
        &self,
        pkt: &'a [u8],
    ) -> impl Iterator<Item = Result<MptcpOption<'a>, DropReason>> + 'a {
        let opts = self.options(pkt);
        let spans = self.opts;
        (0..spans.mptcp().len()).map(move |i| {
            let s = spans.mptcp()[i];
            let raw = s.slice(opts).ok_or(DropReason::BadMptcpOption)?;
            MptcpOption::parse(raw).map_err(|_| DropReason::BadMptcpOption)
        })
    }
}
