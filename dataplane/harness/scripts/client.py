#!/usr/bin/env python3
"""Linux MPTCP / TCP test client for the hac harness (run with `ip netns exec`).

Modes:
  * --convert-hex HEX (needs --mptcp for the real recipe): RFC 8803 client per
    the Linux recipe: socket(..., IPPROTO_MPTCP=262), TCP_FASTOPEN_NO_COOKIE=34,
    sendto(convert_msg [+ command line with --request-in-syn], MSG_FASTOPEN,
    (target, port)), then read the Convert reply (header 01 LL 22 63 + TLVs).
  * without --convert-hex: plain connect() (TCP, or MPTCP with --mptcp).

Then, unless --no-transfer, it sends the command line understood by server.py
(`HAC id=.. up=.. down=.. seed=.. echo=..`), concurrently sends --up
pseudo-random bytes (then half-closes) and reads until EOF, and checks
getsockopt(SOL_MPTCP=284, MPTCP_INFO=1) (EOPNOTSUPP, or ENOPROTOOPT over IPv6 =
fallen back to TCP).

Prints exactly one JSON line on stdout:
  {"id", "convert": null | "ok" | {"error": code} | {"failed": text},
   "tlvs": [[type, hex_value], ...], "fallback": null | bool,
   "sent_sha256", "recv_sha256", "bytes_sent", "bytes_recv", "eof": bool,
   "local": [ip, port] | null, "error": null | text, "elapsed": seconds,
   "down_done": seconds to the server's EOF (when it came)}
With --late-shutdown the client half-closes only once it has sent its --up bytes AND
read the server's EOF, as a download client (HTTP) would; by default it half-closes
as soon as its --up bytes are out. Linux opens no further subflow on an MPTCP
connection once it has sent its DATA_FIN, so a download-only client that half-closes
at once (with a command line in the SYN, before the connection is fully established)
never joins its second path: multipath tests use --late-shutdown.

With --gaps it also reports how long the download went without receiving anything:
  "max_gap": longest time (s) between two consecutive receives from the first
  received byte to EOF, "max_gap_at": when it began (s since the start),
  "max_gap_after_bytes": bytes received before it, "gaps": [[at, length], ...] every
  gap of at least --gap-min seconds (at most 1000, in time order). With --gap-from S,
  max_gap only considers gaps that end S seconds or more after the start (e.g. to
  skip slow start and look at a link cut at S + 1).
With --pause-at N --pause S the client stops reading for S seconds once it has
received N bytes (its receive window closes: with a small --rcvbuf, at once); with
--server-pause-at N --server-pause S the command line asks the server to do the
same with the upload; with --server-waits the server sends its bytes (and its EOF)
only once the whole upload is in. Everything is bounded by --timeout (socket timeouts plus a SIGALRM backstop).
"""

import argparse
import errno
import hashlib
import json
import random
import signal
import socket
import struct
import sys
import threading
import time

IPPROTO_MPTCP = 262
TCP_FASTOPEN_NO_COOKIE = 34
MSG_FASTOPEN = 0x20000000
SOL_MPTCP = 284
MPTCP_INFO = 1
MAX_BYTES = 256 << 20
CHUNK = 65536


class Timeout(Exception):
    pass


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += d
    return buf


def parse_tlvs(body):
    tlvs = []
    i = 0
    while i + 2 <= len(body):
        t, ln = body[i], body[i + 1]
        if ln == 0 or i + ln * 4 > len(body):
            tlvs.append([t, body[i + 2 :].hex(), "bad_length"])
            break
        tlvs.append([t, body[i + 2 : i + ln * 4].hex()])
        i += ln * 4
    return tlvs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mptcp", action="store_true")
    ap.add_argument("--convert-hex", default=None)
    ap.add_argument("--request-in-syn", action="store_true")
    ap.add_argument("--no-transfer", action="store_true")
    ap.add_argument("--id", default="0")
    ap.add_argument("--up", type=int, default=0)
    ap.add_argument("--down", type=int, default=0)
    ap.add_argument("--echo", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--late-shutdown", action="store_true",
                    help="half-close only after the server's EOF (see above)")
    ap.add_argument("--gaps", action="store_true", help="report receive gaps")
    ap.add_argument("--gap-min", type=float, default=0.1)
    ap.add_argument("--gap-from", type=float, default=0.0,
                    help="max_gap only counts gaps ending this many s after the start")
    ap.add_argument("--pause-at", type=int, default=-1,
                    help="stop reading for --pause s after this many bytes")
    ap.add_argument("--pause", type=float, default=0.0)
    ap.add_argument("--server-pause-at", type=int, default=-1,
                    help="the server stops reading the upload after this many bytes")
    ap.add_argument("--server-pause", type=float, default=0.0)
    ap.add_argument("--rcvbuf", type=int, default=0, help="SO_RCVBUF before connecting")
    ap.add_argument("--server-waits", action="store_true",
                    help="the server answers (and closes) only once the upload is in")
    a = ap.parse_args()
    if not (0 <= a.up <= MAX_BYTES and 0 <= a.down <= MAX_BYTES):
        sys.exit("up/down out of range")
    if a.echo and a.late_shutdown:
        sys.exit("--late-shutdown with --echo would wait forever")

    t0 = time.monotonic()
    res = {
        "id": a.id,
        "convert": None,
        "tlvs": [],
        "fallback": None,
        "sent_sha256": hashlib.sha256().hexdigest(),
        "recv_sha256": hashlib.sha256().hexdigest(),
        "bytes_sent": 0,
        "bytes_recv": 0,
        "eof": False,
        "local": None,
        "error": None,
        "elapsed": 0.0,
    }
    tx = hashlib.sha256()
    rx = hashlib.sha256()
    st = {"sent": 0, "err": None}

    def on_alarm(_sig, _frm):
        raise Timeout("overall timeout %.1fs" % a.timeout)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, a.timeout + 2.0)

    fam = socket.AF_INET6 if ":" in a.target else socket.AF_INET
    proto = IPPROTO_MPTCP if a.mptcp else 0
    cmd = "HAC id=%s up=%d down=%d seed=%d echo=%d" % (
        a.id, a.up, 0 if a.echo else a.down, a.seed, 1 if a.echo else 0)
    if a.server_pause_at >= 0 and a.server_pause > 0:
        cmd += " pause_at=%d pause_ms=%d" % (a.server_pause_at, int(a.server_pause * 1000))
    if a.server_waits:
        cmd += " wait_up=1"
    cmd = (cmd + "\n").encode()
    s = None
    try:
        s = socket.socket(fam, socket.SOCK_STREAM, proto)
        s.settimeout(a.timeout)
        if a.rcvbuf > 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
        cmd_sent = False
        if a.convert_hex is not None:
            s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1)
            syn = bytes.fromhex(a.convert_hex)
            if a.request_in_syn and not a.no_transfer:
                syn += cmd
                cmd_sent = True
            res["convert"] = {"failed": "no reply yet"}
            t_syn = time.monotonic()
            n = s.sendto(syn, MSG_FASTOPEN, (a.target, a.port))
            res["syn_data_queued"] = n
            if n < len(syn):
                s.sendall(syn[n:])
            res["local"] = list(s.getsockname()[:2])
            try:
                hdr = recv_exact(s, 4)
                if hdr[0] != 1 or hdr[2:4] != b"\x22\x63" or hdr[1] == 0:
                    raise ValueError("bad Convert header %s" % hdr.hex())
                body = recv_exact(s, hdr[1] * 4 - 4)
                # Seconds from the SYN to the complete Convert reply.
                res["reply_after"] = round(time.monotonic() - t_syn, 6)
                res["tlvs"] = parse_tlvs(body)
                errs = [t for t in res["tlvs"] if t[0] == 0x1E]
                if errs:
                    v = bytes.fromhex(errs[0][1])
                    res["convert"] = {"error": v[0] if v else -1}
                else:
                    res["convert"] = "ok"
            except (EOFError, ValueError, OSError) as e:
                res["convert"] = {"failed": "%s: %s" % (type(e).__name__, e)}
            if res["convert"] != "ok":
                # RFC 8803 §6.2.8: the client resets the connection.
                try:
                    s.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                except OSError:
                    pass
                a.no_transfer = True
        else:
            s.connect((a.target, a.port))
            res["local"] = list(s.getsockname()[:2])

        if not a.no_transfer:
            if not cmd_sent:
                s.sendall(cmd)

            def sender():
                try:
                    rng = random.Random(a.seed)
                    left = a.up
                    while left > 0:
                        c = rng.randbytes(min(CHUNK, left))
                        s.sendall(c)
                        tx.update(c)
                        st["sent"] += len(c)
                        left -= len(c)
                    if a.late_shutdown:
                        sent_all.set()
                        return
                    s.shutdown(socket.SHUT_WR)
                except Exception as e:  # noqa: BLE001
                    st["err"] = "send: %s: %s" % (type(e).__name__, e)

            sent_all = threading.Event()
            th = threading.Thread(target=sender, daemon=True)
            th.start()
            recv = 0
            last = None
            if a.gaps:
                res.update(max_gap=0.0, max_gap_at=None, max_gap_after_bytes=0, gaps=[])
            while True:
                d = s.recv(CHUNK)
                if a.gaps and d:
                    now = time.monotonic()
                    if last is not None:
                        gap = now - last
                        if gap > res["max_gap"] and now - t0 >= a.gap_from:
                            res["max_gap"] = round(gap, 6)
                            res["max_gap_at"] = round(last - t0, 6)
                            res["max_gap_after_bytes"] = recv
                        if gap >= a.gap_min and len(res["gaps"]) < 1000:
                            res["gaps"].append([round(last - t0, 6), round(gap, 6)])
                    last = now
                if not d:
                    res["eof"] = True
                    # Seconds from the start to the server's EOF (download done).
                    res["down_done"] = round(time.monotonic() - t0, 6)
                    if a.late_shutdown:
                        th.join(a.timeout)
                        if sent_all.is_set():
                            s.shutdown(socket.SHUT_WR)
                    break
                if recv == 0 and a.convert_hex is not None:
                    # Seconds from the SYN to the first byte of the server's response.
                    res["first_byte_after"] = round(time.monotonic() - t_syn, 6)
                if 0 <= a.pause_at <= recv and a.pause > 0 and "paused_at" not in res:
                    res["paused_at"] = round(time.monotonic() - t0, 6)
                    time.sleep(a.pause)
                recv += len(d)
                rx.update(d)
                res["bytes_recv"] = recv
                if recv > MAX_BYTES:
                    raise ValueError("server sent too much")
            th.join(a.timeout)
            if st["err"]:
                res["error"] = st["err"]
        if s is not None and a.mptcp and res["convert"] in (None, "ok"):
            try:
                s.getsockopt(SOL_MPTCP, MPTCP_INFO, 256)
                res["fallback"] = False
            except OSError as e:
                # A fallen-back socket passes the call to its TCP subflow, whose
                # IPv4 code answers EOPNOTSUPP and IPv6 code ENOPROTOOPT.
                if e.errno in (errno.EOPNOTSUPP, errno.ENOPROTOOPT):
                    res["fallback"] = True
                else:
                    res["error"] = res["error"] or "MPTCP_INFO: %s" % e
    except Timeout as e:
        res["error"] = "timeout: %s" % e
    except Exception as e:  # noqa: BLE001
        res["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
    res["bytes_sent"] = st["sent"]
    res["sent_sha256"] = tx.hexdigest()
    res["recv_sha256"] = rx.hexdigest()
    res["elapsed"] = round(time.monotonic() - t0, 6)
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
