#!/usr/bin/env python3
"""Plain TCP test server for the hac harness (run with `ip netns exec`).

Listens on every --bind address at --port. Per connection it reads one command
line (ASCII, at most 256 bytes, ending in "\\n"):

    HAC id=<token> up=<bytes> down=<bytes> seed=<int> echo=<0|1>

then, concurrently, receives until EOF (the client's "up" bytes) and sends
<down> pseudo-random bytes (seeded, deterministic) or, with echo=1, echoes every
received byte back. It half-closes after sending and closes once the client
half-closed too. One JSON line per connection goes to stdout:

    {"event": "conn", "id": ..., "peer": [ip, port], "local": [ip, port],
     "bytes_recv": n, "recv_sha256": hex, "bytes_sent": n, "sent_sha256": hex,
     "error": null | "text", "elapsed": seconds,
     "up_done": seconds to the last of the command's up= bytes (when they came)}

With --mptcp it listens with IPPROTO_MPTCP (the kernel MPTCP end-to-end baseline;
net.mptcp.enabled=1 in the namespace); plain TCP clients still connect (fallback).

Everything is bounded: at most 256 MiB per direction, --io-timeout seconds of
inactivity per connection, --lifetime seconds for the whole process, and the
process exits as soon as its stdin reaches EOF (the harness died).
"""

import argparse
import hashlib
import json
import os
import random
import socket
import sys
import threading
import time

MAX_BYTES = 256 << 20
CHUNK = 65536
LINE_MAX = 256

_out_lock = threading.Lock()


def emit(obj):
    with _out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def parse_cmd(line):
    parts = line.decode("ascii", "replace").strip().split()
    if not parts or parts[0] != "HAC":
        raise ValueError("bad command line %r" % line[:64])
    cmd = {"id": "", "up": 0, "down": 0, "seed": 0, "echo": 0, "pause_at": -1, "pause_ms": 0,
           "wait_up": 0}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k not in cmd:
            raise ValueError("unknown key %r" % k)
        cmd[k] = v if k == "id" else int(v)
    for k in ("up", "down"):
        if not 0 <= cmd[k] <= MAX_BYTES:
            raise ValueError("%s out of range" % k)
    if not 0 <= cmd["pause_ms"] <= 60000:
        raise ValueError("pause_ms out of range")
    return cmd


def payload_chunks(seed, n):
    rng = random.Random(seed)
    while n > 0:
        k = min(CHUNK, n)
        yield rng.randbytes(k)
        n -= k


def handle(conn, peer, local, io_timeout):
    t0 = time.monotonic()
    rec = {
        "event": "conn",
        "id": None,
        "peer": [peer[0], peer[1]],
        "local": [local[0], local[1]],
        "bytes_recv": 0,
        "recv_sha256": hashlib.sha256().hexdigest(),
        "bytes_sent": 0,
        "sent_sha256": hashlib.sha256().hexdigest(),
        "error": None,
        "elapsed": 0.0,
    }
    rx = hashlib.sha256()
    tx = hashlib.sha256()
    state = {"sent": 0, "recv": 0, "err": None, "eof": False}
    try:
        conn.settimeout(io_timeout)
        buf = b""
        while b"\n" not in buf:
            d = conn.recv(LINE_MAX)
            if not d:
                raise ValueError("EOF before command line")
            buf += d
            if len(buf) > LINE_MAX and b"\n" not in buf[:LINE_MAX]:
                raise ValueError("command line too long")
        line, _, rest = buf.partition(b"\n")
        cmd = parse_cmd(line)
        rec["id"] = cmd["id"]
        rec["cmd"] = cmd

        def on_recv(data):
            state["recv"] += len(data)
            if state["recv"] > MAX_BYTES:
                raise ValueError("client sent too much")
            if cmd["up"] and "up_done" not in rec and state["recv"] >= cmd["up"]:
                # Seconds from the connection's accept to the upload's last byte.
                rec["up_done"] = round(time.monotonic() - t0, 6)
            rx.update(data)

        if cmd["echo"]:
            data = rest
            while True:
                if data:
                    on_recv(data)
                    conn.sendall(data)
                    tx.update(data)
                    state["sent"] += len(data)
                data = conn.recv(CHUNK)
                if not data:
                    break
            conn.shutdown(socket.SHUT_WR)
        else:

            def sender():
                try:
                    # wait_up: answer only once the whole upload is in (as an HTTP
                    # server answers a POST), the connection open until then.
                    deadline = time.monotonic() + io_timeout
                    while cmd["wait_up"] and state["recv"] < cmd["up"] and not state["eof"]:
                        if time.monotonic() > deadline:
                            raise TimeoutError("upload incomplete")
                        time.sleep(0.01)
                    for c in payload_chunks(cmd["seed"] + 1, cmd["down"]):
                        conn.sendall(c)
                        tx.update(c)
                        state["sent"] += len(c)
                    conn.shutdown(socket.SHUT_WR)
                except Exception as e:  # noqa: BLE001
                    state["err"] = "send: %s: %s" % (type(e).__name__, e)

            th = threading.Thread(target=sender, daemon=True)
            th.start()
            if rest:
                on_recv(rest)
            # Inactivity means neither direction moved: while the download makes
            # progress, a client with nothing to send (it half-closes only at the end
            # of a long download) is not idle.
            seen_sent = -1
            while True:
                try:
                    d = conn.recv(CHUNK)
                except socket.timeout:
                    if state["sent"] != seen_sent:
                        seen_sent = state["sent"]
                        continue
                    raise
                if not d:
                    state["eof"] = True
                    break
                on_recv(d)
                # pause_at / pause_ms: stop reading the upload for a while once
                # that much arrived (the receive window closes).
                if 0 <= cmd["pause_at"] <= state["recv"] and cmd["pause_ms"] > 0:
                    rec["paused_at"] = round(time.monotonic() - t0, 6)
                    time.sleep(cmd["pause_ms"] / 1000.0)
                    cmd["pause_ms"] = 0
            th.join(io_timeout + 5)
            if th.is_alive():
                state["err"] = state["err"] or "send: still running"
    except Exception as e:  # noqa: BLE001
        rec["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        try:
            conn.close()
        except OSError:
            pass
    if rec["error"] is None and state["err"] is not None:
        rec["error"] = state["err"]
    rec["bytes_recv"] = state["recv"]
    rec["recv_sha256"] = rx.hexdigest()
    rec["bytes_sent"] = state["sent"]
    rec["sent_sha256"] = tx.hexdigest()
    rec["elapsed"] = round(time.monotonic() - t0, 6)
    emit(rec)


def serve(lsock, io_timeout):
    while True:
        try:
            conn, peer = lsock.accept()
        except OSError as e:
            emit({"event": "accept_error", "error": str(e)})
            time.sleep(0.05)
            continue
        local = conn.getsockname()
        threading.Thread(
            target=handle, args=(conn, peer, local, io_timeout), daemon=True
        ).start()


def watchdog(lifetime):
    deadline = time.monotonic() + lifetime

    def stdin_eof():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except Exception:  # noqa: BLE001
            pass
        os._exit(0)

    threading.Thread(target=stdin_eof, daemon=True).start()
    while time.monotonic() < deadline:
        time.sleep(0.5)
    emit({"event": "lifetime_exceeded"})
    os._exit(3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", action="append", required=True)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--io-timeout", type=float, default=30.0)
    ap.add_argument("--lifetime", type=float, default=1800.0)
    ap.add_argument("--mptcp", action="store_true", help="IPPROTO_MPTCP listener")
    ap.add_argument("--cc", help="congestion control of the accepted connections (TCP_CONGESTION;"
                    " any loaded algorithm, e.g. cubic or bbr: needs CAP_NET_ADMIN outside the"
                    " allowed list)")
    a = ap.parse_args()
    socks = []
    for addr in a.bind:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM, 262 if a.mptcp else 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if a.cc:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, a.cc.encode())
        s.bind((addr, a.port))
        s.listen(128)
        socks.append(s)
    for s in socks:
        threading.Thread(target=serve, args=(s, a.io_timeout), daemon=True).start()
    emit({"event": "ready", "pid": os.getpid()})
    watchdog(a.lifetime)


if __name__ == "__main__":
    main()
