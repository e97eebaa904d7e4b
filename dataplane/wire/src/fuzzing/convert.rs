//! Fuzz invariants of the RFC 8803 Convert parser and builder
//! (`crate::convert`).

use crate::convert::{
    ConnectRequest, ConvertError, ErrorValue, HEADER_LEN, Header, MAX_MESSAGE_LEN, Message,
    MessageBuilder, TcpOpt, Tlv, parse_header, tlv_type,
};

/// Largest number of options a Connect TLV can list (1016 - 20 bytes, ≥ 2 each).
const MAX_OPTS: usize = (MAX_MESSAGE_LEN - HEADER_LEN - 20) / 2;

/// Checks the Convert invariants on arbitrary input (panics only on a violation):
///
/// * no parser panics; `Truncated { needed }` always asks for more than was given;
/// * the header view agrees with [`parse_header`];
/// * when the framing of every TLV is accepted, the TLV lengths add up:
///   Σ Length × 4 + 4 == Total Length × 4, and [`ConnectRequest::parse`]'s
///   application-data offset is Total Length × 4;
/// * every TLV that parses re-emits to the identical bytes (the unassigned 16 bits
///   of Info / Extended TCP Header / Supported TCP Extensions / Cookie excepted:
///   receivers ignore them, emitters write zero);
/// * a message rebuilt from its parsed TLVs with [`MessageBuilder::push`] is the
///   same message, and one rebuilt with the typed builder methods parses back to
///   the same contents (padding aside);
/// * [`ConnectRequest::parse`] accepts exactly the error-free messages made of
///   client TLVs, and every refusal maps to an RFC 8803 answer.
pub fn convert_message(data: &[u8]) {
    // A lone TLV parse on the raw bytes must not panic and must re-emit exactly.
    if let Ok(t) = Tlv::parse(data) {
        check_tlv_reemit(&t, &data[..t.buffer_len()]);
    }

    let hv = Header::new_checked(data);
    assert_eq!(hv.is_ok(), data.len() >= HEADER_LEN);

    let req = ConnectRequest::parse(data);
    let msg = match Message::parse(data) {
        Ok(m) => m,
        Err(e) => {
            if let ConvertError::Truncated { needed } = e {
                assert!(needed > data.len());
            }
            assert_eq!(parse_header(data).err(), Some(e));
            assert_eq!(
                req.err(),
                Some(e),
                "ConnectRequest must fail like the header"
            );
            let _ = (e.error_code(), crate::Error::from(e));
            return;
        }
    };
    let total = msg.len();
    assert!(total >= HEADER_LEN && total <= data.len() && total <= MAX_MESSAGE_LEN);
    if let Ok(h) = hv {
        assert_eq!(h.message_len(), total);
    }

    // Pass 1: framing, per-TLV re-emission, length accounting.
    let area = msg.tlv_bytes();
    let mut it = msg.tlvs();
    let mut framed = 0usize;
    let mut framing_ok = true;
    let mut all_ok = true;
    let mut client_only = true;
    let mut forbidden = false;
    loop {
        let before = it.offset();
        let Some(item) = it.next() else { break };
        let after = it.offset();
        match item {
            Ok(t) => {
                let raw = &area[before..after];
                assert_eq!(t.buffer_len(), raw.len(), "buffer_len must be Length*4");
                check_tlv_reemit(&t, raw);
                framed += raw.len();
                match t {
                    Tlv::Info | Tlv::Cookie(_) => {}
                    Tlv::Connect(c) => forbidden = c.is_forbidden_destination(),
                    _ => client_only = false,
                }
            }
            Err(e) => {
                all_ok = false;
                let _ = (e.error_code(), crate::Error::from(e));
                if e.is_framing() {
                    assert_eq!(after, before, "a framing error consumes nothing");
                    framing_ok = false;
                } else {
                    assert!(after > before);
                    framed += after - before;
                }
            }
        }
    }
    if framing_ok {
        assert_eq!(
            framed + HEADER_LEN,
            total,
            "TLV lengths must add up to Total Length"
        );
    }

    // ConnectRequest agrees with the iteration.
    match req {
        Ok((_, off)) => {
            assert_eq!(off, total, "application data starts at Total Length * 4");
            assert!(all_ok && client_only && !forbidden);
        }
        Err(e) => {
            assert!(
                !(all_ok && client_only && !forbidden),
                "refused a valid request: {e:?}"
            );
            assert!(
                e.error_code().is_some(),
                "only Total Length 0 resets silently"
            );
        }
    }

    if !all_ok {
        return;
    }

    // Pass 2: rebuild with push() — identical message (reserved bits aside).
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let mut b = MessageBuilder::new(&mut buf).expect("1020-byte buffer");
    for t in msg.tlvs().flatten() {
        b.push(&t).expect("a parsed TLV fits its own message size");
    }
    let n = b.finish().expect("finish");
    assert_eq!(n, total);
    let mut orig = [0u8; MAX_MESSAGE_LEN];
    orig[..total].copy_from_slice(&data[..total]);
    canonicalize_message(&mut orig[..total]);
    assert_eq!(
        &buf[..n],
        &orig[..total],
        "push() rebuild must be byte-identical"
    );
    let back = Message::parse(&buf[..n]).expect("rebuilt message parses");
    assert!(
        back.tlvs().eq(msg.tlvs()),
        "rebuilt TLVs must parse back equal"
    );

    // Pass 3: rebuild with the typed methods — same contents.
    let mut buf2 = [0u8; MAX_MESSAGE_LEN];
    let mut b = MessageBuilder::new(&mut buf2).expect("1020-byte buffer");
    for t in msg.tlvs().flatten() {
        let r = match t {
            Tlv::Info => b.info(),
            Tlv::Connect(c) => {
                let mut opts = [TcpOpt {
                    kind: 0,
                    value: &[],
                }; MAX_OPTS];
                let mut k = 0;
                for o in c.options() {
                    opts[k] = o;
                    k += 1;
                }
                let remote = core::net::SocketAddr::new(c.remote_ipv6().into(), c.remote_port());
                b.connect_with_options(remote, &opts[..k])
            }
            Tlv::ExtendedTcpHeader { options } => b.extended_tcp_header(options),
            Tlv::SupportedTcpExtensions(l) => b.supported_tcp_extensions(l.values()),
            Tlv::Cookie(c) => b.cookie(c),
            Tlv::Error(e) => b.error(&e.value()).map(|_| ()),
            Tlv::Unknown { ty, value } => b.raw(ty, value),
        };
        r.expect("typed rebuild is never larger than the original");
    }
    let n2 = b.finish().expect("finish");
    assert!(n2 <= total);
    let typed = Message::parse(&buf2[..n2]).expect("typed rebuild parses");
    let mut a = msg.tlvs().flatten();
    let mut t2 = typed.tlvs();
    for x in &mut a {
        let y = t2
            .next()
            .expect("same TLV count")
            .expect("typed rebuild TLV parses");
        assert!(
            same_contents(&x, &y),
            "typed rebuild differs: {x:?} vs {y:?}"
        );
    }
    assert!(t2.next().is_none());
}

/// A TLV re-emits to `raw` (its wire bytes), unassigned bits aside, and parses back.
fn check_tlv_reemit(t: &Tlv<'_>, raw: &[u8]) {
    let mut out = [0u8; MAX_MESSAGE_LEN];
    let n = t.emit(&mut out).expect("a parsed TLV re-emits");
    assert_eq!(n, raw.len());
    let mut want = [0u8; MAX_MESSAGE_LEN];
    want[..n].copy_from_slice(raw);
    canonicalize_tlv(&mut want[..n]);
    assert_eq!(&out[..n], &want[..n], "TLV re-emission differs");
    assert_eq!(Tlv::parse(&out[..n]).as_ref(), Ok(t));
}

/// Zeroes the unassigned 16 bits that receivers ignore and emitters zero
/// (RFC 8803 §6.2.3, §6.2.4, §6.2.6, §6.2.7).
fn canonicalize_tlv(raw: &mut [u8]) {
    let ty = raw.first().copied().unwrap_or(0);
    if matches!(
        ty,
        tlv_type::INFO
            | tlv_type::EXTENDED_TCP_HEADER
            | tlv_type::SUPPORTED_TCP_EXTENSIONS
            | tlv_type::COOKIE
    ) && let Some(r) = raw.get_mut(2..4)
    {
        r.fill(0);
    }
}

/// Canonicalizes every TLV of a well-framed message in place.
fn canonicalize_message(msg: &mut [u8]) {
    let mut i = HEADER_LEN;
    while i + 1 < msg.len() {
        let n = usize::from(msg[i + 1]) * 4;
        if n == 0 || i + n > msg.len() {
            return;
        }
        canonicalize_tlv(&mut msg[i..i + n]);
        i += n;
    }
}

/// Equality of contents, ignoring zero padding (lists, Connect options, single
/// byte error values).
fn same_contents(a: &Tlv<'_>, b: &Tlv<'_>) -> bool {
    match (a, b) {
        (Tlv::Connect(x), Tlv::Connect(y)) => {
            x.remote() == y.remote() && x.options().eq(y.options())
        }
        (Tlv::SupportedTcpExtensions(x), Tlv::SupportedTcpExtensions(y)) => {
            x.values() == y.values()
        }
        (Tlv::Error(x), Tlv::Error(y)) => {
            x.code() == y.code()
                && match (x.value(), y.value()) {
                    (
                        ErrorValue::UnsupportedVersion { versions: p },
                        ErrorValue::UnsupportedVersion { versions: q },
                    )
                    | (
                        ErrorValue::UnsupportedTcpOption { kinds: p },
                        ErrorValue::UnsupportedTcpOption { kinds: q },
                    ) => p.values() == q.values(),
                    (p, q) => p == q,
                }
        }
        (x, y) => x == y,
    }
}
