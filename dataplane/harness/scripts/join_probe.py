#!/usr/bin/env python3
"""Forged MPTCP MP_JOIN prober for the hac lab (run as root with `ip netns exec`).

Sends one TCP SYN carrying MP_JOIN (RFC 8684 §3.2: kind 30, length 12, subtype 1,
B flag + address id, the receiver's token, a random nonce) from --src to
--dst:--dport over a raw socket (the checksums are computed here), and waits for the
answer to that exact SYN (addresses, ports; ack = seq + 1 for a RST). Standard
library only.

    join_probe.py --src 198.18.2.2 --dst 192.0.2.1 [--dport 5124] [--token HEX8]
                  [--nonce HEX8] [--sport N] [--seq N] [--addr-id N] [--backup]

IPv4 builds the whole packet (IPPROTO_RAW, header included); IPv6 lets the kernel
write the IPv6 header (raw IPPROTO_TCP socket bound to --src) and builds the TCP
segment. The answer is read from a raw IPPROTO_TCP socket opened before sending.
The SYN is sent again (same segment) every --retry seconds until an answer or
--timeout.

Prints one JSON line:
  {"src", "dst", "sport", "dport", "seq", "token", "nonce", "sent": n,
   "answer": null | {"flags": "RA"..., "seq", "ack", "ack_ok", "window",
                     "checksum_ok", "options": [[kind, hex], ...],
                     "mptcp": [[subtype, hex], ...], "payload_len"},
   "rst": bool, "synack": bool,
   "mp_tcprst": null | {"reason": n, "flags": n},
   "rtt_ms": float | null, "error": null | text}
Exit status 0 when an answer came, 1 when none did, 2 on an error.
"""

import argparse
import ipaddress
import json
import os
import random
import select
import socket
import struct
import sys
import time

IPPROTO_TCP = 6
MPTCP_KIND = 30
SUB_MP_JOIN = 1
SUB_MP_TCPRST = 8
FLAG_NAMES = "FSRPAUEC"  # bit 0 .. bit 7


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def pseudo(src, dst, length):
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, IPPROTO_TCP, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, IPPROTO_TCP)


def flag_str(f):
    return "".join(FLAG_NAMES[i] for i in range(8) if f & (1 << i))


def syn_segment(src, dst, sport, dport, seq, token, nonce, addr_id, backup):
    opts = b""
    opts += struct.pack("!BBH", 2, 4, 1460 if src.version == 4 else 1440)  # MSS
    opts += b"\x04\x02"  # SACK permitted
    opts += struct.pack("!BBII", 8, 10, int(time.monotonic() * 1000) & 0xFFFFFFFF, 0)
    opts += b"\x01\x03\x03\x07"  # NOP, window scale 7
    # MP_JOIN SYN: kind, length 12, subtype 1 << 4 | B, address id, token, nonce.
    opts += struct.pack(
        "!BBBB4sI",
        MPTCP_KIND,
        12,
        (SUB_MP_JOIN << 4) | (1 if backup else 0),
        addr_id,
        token,
        nonce,
    )
    assert len(opts) % 4 == 0 and len(opts) <= 40
    off = (20 + len(opts)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, off << 4, 0x02, 64240, 0, 0)
    seg = hdr + opts
    c = csum(pseudo(src, dst, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def ipv4_packet(src, dst, seg):
    ident = random.getrandbits(16)
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), ident, 0x4000, 64, IPPROTO_TCP, 0,
        src.packed, dst.packed,
    )
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + seg


def parse_options(opts):
    out, mptcp = [], []
    i = 0
    while i < len(opts):
        k = opts[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2 or i + opts[i + 1] > len(opts):
            out.append([k, opts[i:].hex()])
            break
        ln = opts[i + 1]
        body = opts[i : i + ln]
        out.append([k, body.hex()])
        if k == MPTCP_KIND and ln >= 3:
            mptcp.append([body[2] >> 4, body.hex()])
        i += ln
    return out, mptcp


def parse_answer(seg, src, dst, seq):
    (sp, dp, aseq, aack, off, flags, win, _c, _u) = struct.unpack("!HHIIBBHHH", seg[:20])
    hl = (off >> 4) * 4
    opts, mptcp = parse_options(seg[20:hl])
    ans = {
        "flags": flag_str(flags),
        "seq": aseq,
        "ack": aack,
        "ack_ok": bool(flags & 0x10) and aack == (seq + 1) & 0xFFFFFFFF,
        "window": win,
        "checksum_ok": csum(pseudo(dst, src, len(seg)) + seg) == 0,
        "options": opts,
        "mptcp": mptcp,
        "payload_len": len(seg) - hl,
    }
    tcprst = None
    for sub, hx in mptcp:
        b = bytes.fromhex(hx)
        if sub == SUB_MP_TCPRST and len(b) >= 4:
            tcprst = {"reason": b[3], "flags": b[2] & 0x0F}
    return ans, flags, tcprst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="source address (the client's lte0)")
    ap.add_argument("--dst", required=True, help="converter address")
    ap.add_argument("--dport", type=int, default=5124)
    ap.add_argument("--sport", type=int, default=0, help="0: random")
    ap.add_argument("--token", default=None, help="8 hex digits; default random")
    ap.add_argument("--nonce", default=None, help="8 hex digits; default random")
    ap.add_argument("--seq", type=int, default=None, help="sequence number; default random")
    ap.add_argument("--addr-id", type=int, default=2)
    ap.add_argument("--backup", action="store_true")
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--retry", type=float, default=1.0)
    a = ap.parse_args()

    src = ipaddress.ip_address(a.src)
    dst = ipaddress.ip_address(a.dst)
    rng = random.SystemRandom()
    token = bytes.fromhex(a.token) if a.token else os.urandom(4)
    nonce = int(a.nonce, 16) if a.nonce else rng.getrandbits(32)
    sport = a.sport or rng.randrange(20000, 60000)
    seq = a.seq if a.seq is not None else rng.getrandbits(32)
    res = {
        "src": str(src),
        "dst": str(dst),
        "sport": sport,
        "dport": a.dport,
        "seq": seq,
        "token": token.hex(),
        "nonce": "%08x" % nonce,
        "sent": 0,
        "answer": None,
        "rst": False,
        "synack": False,
        "mp_tcprst": None,
        "rtt_ms": None,
        "error": None,
    }
    rc = 1
    try:
        if src.version != dst.version or len(token) != 4:
            raise ValueError("address families differ or token is not 4 bytes")
        seg = syn_segment(src, dst, sport, a.dport, seq, token, nonce, a.addr_id, a.backup)
        if src.version == 4:
            rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_TCP)
            tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            pkt, to = ipv4_packet(src, dst, seg), (str(dst), 0)
        else:
            rx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_TCP)
            rx.bind((str(src), 0))
            tx = rx
            pkt, to = seg, (str(dst), 0)
        deadline = time.monotonic() + a.timeout
        t_sent = next_send = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_send:
                tx.sendto(pkt, to)
                res["sent"] += 1
                t_sent = now
                next_send = now + a.retry
            r, _, _ = select.select([rx], [], [], max(0.0, min(deadline, next_send) - now))
            if not r:
                continue
            data, peer = rx.recvfrom(65535)
            if src.version == 4:
                if len(data) < 20 or data[9] != IPPROTO_TCP:
                    continue
                ihl = (data[0] & 0x0F) * 4
                if data[12:16] != dst.packed or data[16:20] != src.packed:
                    continue
                tcp = data[ihl:]
            else:
                if ipaddress.ip_address(peer[0].split("%")[0]) != dst:
                    continue
                tcp = data
            if len(tcp) < 20:
                continue
            sp, dp = struct.unpack("!HH", tcp[:4])
            if sp != a.dport or dp != sport:
                continue
            ans, flags, tcprst = parse_answer(tcp, src, dst, seq)
            res["answer"] = ans
            res["rst"] = bool(flags & 0x04)
            res["synack"] = (flags & 0x12) == 0x12
            res["mp_tcprst"] = tcprst
            res["rtt_ms"] = round((time.monotonic() - t_sent) * 1000, 3)
            rc = 0
            break
    except Exception as e:  # noqa: BLE001
        res["error"] = "%s: %s" % (type(e).__name__, e)
        rc = 2
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()
    sys.exit(rc)


if __name__ == "__main__":
    main()
