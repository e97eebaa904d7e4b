#!/usr/bin/env python3
"""Many concurrent downloads from one process (run with `ip netns exec`): the
client and server of the memory benchmark (perf/lab-multipath-mem.sh), where
client.py / server.py (a process or two threads per connection) do not scale to
a thousand connections on a 2-core machine.

  multi.py server --bind ADDR [--bind ADDR] --port P [--mptcp] [--tick S]
      asyncio server. Per connection it reads one command line, the one server.py
      understands plus an optional rate:
          HAC id=<token> up=0 down=<bytes> seed=<int> echo=0 [rate=<bytes/s>]
      and sends <down> pseudo-random bytes, paced at <rate> bytes per second
      (one write every --tick seconds; rate=0 or absent: as fast as the socket
      takes them), then half-closes and waits for the client's EOF. One JSON line
      per connection on stdout, as server.py's:
          {"event": "conn", "id", "peer", "bytes_sent", "sent_sha256",
           "bytes_recv", "error", "elapsed"}
      Bounded: --io-timeout s without progress per connection, --lifetime s for
      the process, and it exits when its stdin reaches EOF.

  multi.py client --target ADDR --port P --count N [--stages K] --down BYTES
                  [--rate B/s] [--mptcp] [--convert-hex HEX] [--open-rate C/s]
      selector client, one thread. Opens N connections at --open-rate per second:
      with --convert-hex the RFC 8803 recipe of client.py (IPPROTO_MPTCP=262 with
      --mptcp, TCP_FASTOPEN_NO_COOKIE, sendto(convert + command line, MSG_FASTOPEN):
      the request rides in the SYN), else a plain non-blocking connect() and the
      command line. Reads everything, hashes it, and half-closes only after the
      server's EOF (a download client; Linux opens no subflow after its DATA_FIN).
      In K stages: after opening stage k's share of the N connections it waits
      until each has received data and the MPTCP joins settle (MPTCP_INFO:
      mptcpi_subflows), prints a "stage" line, and waits for "next" on stdin (at
      most --hold s) while every connection keeps downloading. After the last
      stage it runs the downloads to their end, prints one "conn" line per
      connection and a "done" summary. Bounded by --timeout (whole run) and
      --io-timeout (per connection without progress).

Lines on stdout (JSON): {"event": "stage", "stage", "opened", "established",
"receiving" (received within the last 2 s), "failed", "joined" (MPTCP connections
with at least one additional subflow), "fallback", "subflows" ({count: conns}),
"bytes"}; {"event": "conn", "id", "bytes_recv", "recv_sha256", "eof", "error",
"subflows"}; {"event": "done", "count", "ok" (EOF and no error), "failed",
"errors" ({text: n}), "bytes", "elapsed"}.
"""

import argparse
import asyncio
import errno
import hashlib
import json
import os
import random
import resource
import selectors
import socket
import sys
import threading
import time

IPPROTO_MPTCP = 262
TCP_FASTOPEN_NO_COOKIE = 34
MSG_FASTOPEN = 0x20000000
SOL_MPTCP = 284
MPTCP_INFO = 1
MAX_BYTES = 256 << 20
MAX_CONNS = 20000
LINE_MAX = 256
CHUNK = 65536


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------
# server


def parse_cmd(line):
    parts = line.decode("ascii", "replace").strip().split()
    if not parts or parts[0] != "HAC":
        raise ValueError("bad command line %r" % line[:64])
    cmd = {"id": "", "up": 0, "down": 0, "seed": 0, "echo": 0, "rate": 0}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k not in cmd:
            raise ValueError("unknown key %r" % k)
        cmd[k] = v if k == "id" else int(v)
    if not 0 <= cmd["down"] <= MAX_BYTES:
        raise ValueError("down out of range")
    if cmd["up"] or cmd["echo"]:
        raise ValueError("multi.py serves downloads only (up=0 echo=0)")
    if not 0 <= cmd["rate"] <= 1 << 30:
        raise ValueError("rate out of range")
    return cmd


async def serve_conn(reader, writer, a):
    t0 = time.monotonic()
    peer = writer.get_extra_info("peername") or ("?", 0)
    rec = {"event": "conn", "id": None, "peer": [peer[0], peer[1]], "bytes_sent": 0,
           "sent_sha256": hashlib.sha256().hexdigest(), "bytes_recv": 0, "error": None}
    tx = hashlib.sha256()
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\n"), a.io_timeout)
        if len(line) > LINE_MAX:
            raise ValueError("command line too long")
        cmd = parse_cmd(line[:-1])
        rec["id"] = cmd["id"]
        rng = random.Random(cmd["seed"] + 1)
        left = cmd["down"]
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        credit = 0.0
        while left > 0:
            if cmd["rate"]:
                credit += cmd["rate"] * a.tick
                n = min(left, int(credit))
                credit -= n
            else:
                n = min(left, CHUNK)
            if n:
                d = rng.randbytes(n)
                writer.write(d)
                tx.update(d)
                rec["bytes_sent"] += n
                left -= n
                await asyncio.wait_for(writer.drain(), a.io_timeout)
            if cmd["rate"] and left:
                nxt += a.tick
                await asyncio.sleep(max(0.0, nxt - loop.time()))
        if writer.can_write_eof():
            writer.write_eof()
        await asyncio.wait_for(writer.drain(), a.io_timeout)
        # The client half-closes after our EOF: anything it sends is counted.
        while True:
            d = await asyncio.wait_for(reader.read(CHUNK), a.io_timeout)
            if not d:
                break
            rec["bytes_recv"] += len(d)
            if rec["bytes_recv"] > MAX_BYTES:
                raise ValueError("client sent too much")
    except asyncio.IncompleteReadError:
        rec["error"] = "EOF before command line"
    except asyncio.TimeoutError:
        rec["error"] = "timeout (%gs without progress)" % a.io_timeout
    except Exception as e:  # noqa: BLE001
        rec["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        writer.close()
    rec["sent_sha256"] = tx.hexdigest()
    rec["elapsed"] = round(time.monotonic() - t0, 6)
    out(rec)


async def server_main(a):
    servers = []
    for addr in a.bind:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM, IPPROTO_MPTCP if a.mptcp else 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, a.port))
        s.listen(4096)
        s.setblocking(False)
        servers.append(await asyncio.start_server(
            lambda r, w: serve_conn(r, w, a), sock=s, limit=LINE_MAX * 2))
    out({"event": "ready", "pid": os.getpid()})
    await asyncio.sleep(a.lifetime)
    out({"event": "lifetime_exceeded"})
    os._exit(3)


def cmd_server(a):
    raise_nofile(2 * MAX_CONNS + 64)

    def stdin_eof():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except Exception:  # noqa: BLE001
            pass
        sys.stdout.flush()
        os._exit(0)

    threading.Thread(target=stdin_eof, daemon=True).start()
    asyncio.run(server_main(a))


# ---------------------------------------------------------------------------------
# client


class Conn:
    __slots__ = ("cid", "sock", "phase", "buf", "need", "rx", "bytes", "eof", "error",
                 "last", "syn", "subflows", "done")

    def __init__(self, cid):
        self.cid = cid
        self.sock = None
        self.phase = "connecting"
        self.buf = b""
        self.need = 4
        self.rx = hashlib.sha256()
        self.bytes = 0
        self.eof = False
        self.error = None
        self.last = time.monotonic()
        self.syn = b""
        self.subflows = None
        self.done = False


class Client:
    def __init__(self, a):
        self.a = a
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self.open = 0  # sockets not yet finished
        fam = socket.AF_INET6 if ":" in a.target else socket.AF_INET
        self.fam = fam
        self.addr = (a.target, a.port)
        self.convert = bytes.fromhex(a.convert_hex) if a.convert_hex is not None else None
        self.stdin_buf = b""
        self.lines = []
        self.stdin_eof = False
        os.set_blocking(sys.stdin.fileno(), False)
        self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, None)

    def cmd_line(self, c):
        return ("HAC id=%s up=0 down=%d seed=%d echo=0 rate=%d\n"
                % (c.cid, self.a.down, self.a.seed, self.a.rate)).encode()

    def start(self, i):
        c = Conn("%s%05d" % (self.a.id_prefix, i))
        self.conns.append(c)
        try:
            s = socket.socket(self.fam, socket.SOCK_STREAM, IPPROTO_MPTCP if self.a.mptcp else 0)
        except OSError as e:
            c.error = "socket: %s" % e
            c.done = True
            return
        c.sock = s
        s.setblocking(False)
        self.open += 1
        try:
            if self.convert is not None:
                s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1)
                syn = self.convert + self.cmd_line(c)
                n = s.sendto(syn, MSG_FASTOPEN, self.addr)
                c.syn = syn[n:]  # the rest (none: the request fits in the SYN)
                c.phase = "convert"
                ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.syn else 0)
            else:
                rc = s.connect_ex(self.addr)
                if rc not in (0, errno.EINPROGRESS):
                    raise OSError(rc, os.strerror(rc))
                c.syn = self.cmd_line(c)
                c.phase = "data"
                ev = selectors.EVENT_READ | selectors.EVENT_WRITE
            self.sel.register(s, ev, c)
        except OSError as e:
            self.finish(c, "open: %s" % e, register=False)

    def finish(self, c, error=None, register=True):
        if c.done:
            return
        c.done = True
        if error and not c.error:
            c.error = error
        if c.sock is not None:
            if register:
                try:
                    self.sel.unregister(c.sock)
                except (KeyError, ValueError):
                    pass
            try:
                c.sock.close()
            except OSError:
                pass
            self.open -= 1
        c.sock = None

    def on_write(self, c):
        try:
            if self.convert is None and c.phase == "data" and c.syn and c.bytes == 0:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
            n = c.sock.send(c.syn)
            c.syn = c.syn[n:]
        except BlockingIOError:
            return
        except OSError as e:
            self.finish(c, "send: %s" % e)
            return
        if not c.syn:
            self.sel.modify(c.sock, selectors.EVENT_READ, c)

    def on_read(self, c):
        try:
            d = c.sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            self.finish(c, "recv: %s" % e)
            return
        c.last = time.monotonic()
        if not d:
            if c.phase != "data":
                self.finish(c, "EOF before the Convert reply")
                return
            c.eof = True
            self.query_subflows(c)
            if c.bytes != self.a.down:
                c.error = "short download: %d of %d bytes" % (c.bytes, self.a.down)
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.finish(c)
            return
        if c.phase == "convert":
            c.buf += d
            if len(c.buf) >= 4 and c.need == 4:
                h = c.buf[:4]
                if h[0] != 1 or h[2:4] != b"\x22\x63" or h[1] == 0:
                    self.finish(c, "bad Convert header %s" % h.hex())
                    return
                c.need = h[1] * 4  # the whole message, header included
            if len(c.buf) >= max(4, c.need):
                body = c.buf[4:c.need]
                i = 0
                while i + 2 <= len(body):
                    t, ln = body[i], body[i + 1]
                    if t == 0x1E:
                        self.finish(c, "Convert error TLV %s" % body[i + 2:i + 3].hex())
                        return
                    if ln == 0:
                        break
                    i += ln * 4
                d = c.buf[c.need:]
                c.buf = b""
                c.phase = "data"
            if c.phase == "convert" or not d:
                return
        c.bytes += len(d)
        c.rx.update(d)
        if c.bytes > MAX_BYTES:
            self.finish(c, "server sent too much")

    def query_subflows(self, c):
        if not self.a.mptcp or c.sock is None:
            return
        try:
            info = c.sock.getsockopt(SOL_MPTCP, MPTCP_INFO, 256)
            c.subflows = info[0] if info else 0  # mptcpi_subflows: additional subflows
        except OSError as e:
            # -1: fallback (IPv4 subflow: EOPNOTSUPP; IPv6: ENOPROTOOPT)
            c.subflows = -1 if e.errno in (errno.EOPNOTSUPP, errno.ENOPROTOOPT) else None

    def poll(self, timeout):
        for key, ev in self.sel.select(timeout):
            c = key.data
            if c is None:
                self.read_stdin()
                continue
            if c.done:
                continue
            if ev & selectors.EVENT_WRITE:
                self.on_write(c)
            if ev & selectors.EVENT_READ and not c.done:
                self.on_read(c)

    def read_stdin(self):
        try:
            d = os.read(sys.stdin.fileno(), 4096)
        except BlockingIOError:
            return
        if not d:
            self.stdin_eof = True
            self.sel.unregister(sys.stdin.fileno())
            return
        self.stdin_buf += d
        while b"\n" in self.stdin_buf:
            line, _, self.stdin_buf = self.stdin_buf.partition(b"\n")
            self.lines.append(line.decode("ascii", "replace").strip())

    def reap(self):
        now = time.monotonic()
        for c in self.conns:
            if not c.done and now - c.last > self.a.io_timeout:
                self.finish(c, "timeout (%gs without data)" % self.a.io_timeout)

    def stage_report(self, k, opened):
        now = time.monotonic()
        live = [c for c in self.conns if not c.done]
        for c in live:
            self.query_subflows(c)
        hist = {}
        for c in live:
            key = "fallback" if c.subflows == -1 else str(c.subflows)
            hist[key] = hist.get(key, 0) + 1
        return {
            "event": "stage", "stage": k, "opened": opened,
            "established": sum(1 for c in self.conns if c.bytes > 0),
            "live": len(live),
            "receiving": sum(1 for c in live if c.bytes > 0 and now - c.last < 2.0),
            "failed": sum(1 for c in self.conns if c.error),
            "finished": sum(1 for c in self.conns if c.done and not c.error),
            "joined": sum(1 for c in live if c.subflows and c.subflows > 0),
            "fallback": sum(1 for c in live if c.subflows == -1),
            "subflows": hist,
            "bytes": sum(c.bytes for c in self.conns),
            "elapsed": round(now - self.t0, 3),
        }

    def run(self):
        a = self.a
        self.t0 = time.monotonic()
        deadline = self.t0 + a.timeout
        opened = 0
        gap = 1.0 / a.open_rate
        for k in range(1, a.stages + 1):
            target = a.count * k // a.stages
            nxt = time.monotonic()
            while opened < target and time.monotonic() < deadline:
                now = time.monotonic()
                while opened < target and nxt <= now:
                    self.start(opened)
                    opened += 1
                    nxt += gap
                self.poll(max(0.0, min(nxt - time.monotonic(), 0.05)))
                self.reap()
            # Every connection of this stage receiving (or failed), then the joins
            # settle: no new join for --settle s (both bounded by --stage-wait).
            stage_end = min(deadline, time.monotonic() + a.stage_wait)
            joined, since, asked = -1, time.monotonic(), 0.0
            while time.monotonic() < stage_end:
                self.poll(0.1)
                self.reap()
                pending = [c for c in self.conns[:opened] if not c.done and c.bytes == 0]
                if pending:
                    continue
                if a.mptcp:
                    if time.monotonic() - asked < 0.5:
                        continue
                    asked = time.monotonic()
                    live = [c for c in self.conns if not c.done]
                    for c in live:
                        self.query_subflows(c)
                    j = sum(1 for c in live if c.subflows and c.subflows > 0)
                    if j != joined:
                        joined, since = j, time.monotonic()
                    if j < len(live) and time.monotonic() - since < a.settle:
                        continue
                break
            out(self.stage_report(k, opened))
            hold_end = min(deadline, time.monotonic() + a.hold)
            while time.monotonic() < hold_end and not self.stdin_eof:
                if "next" in self.lines:
                    self.lines.remove("next")
                    break
                if "stop" in self.lines:
                    deadline = time.monotonic()
                    break
                self.poll(0.1)
                self.reap()
        while self.open > 0 and time.monotonic() < deadline:
            self.poll(0.2)
            self.reap()
            if "stop" in self.lines:
                break
        for c in self.conns:
            if not c.done:
                self.finish(c, "timeout: overall limit %gs" % a.timeout)
        errors = {}
        for c in self.conns:
            out({"event": "conn", "id": c.cid, "bytes_recv": c.bytes,
                 "recv_sha256": c.rx.hexdigest(), "eof": c.eof, "error": c.error,
                 "subflows": c.subflows})
            if c.error:
                key = c.error.split(":")[0][:60]
                errors[key] = errors.get(key, 0) + 1
        out({"event": "done", "count": len(self.conns),
             "ok": sum(1 for c in self.conns if c.eof and not c.error),
             "failed": sum(1 for c in self.conns if c.error), "errors": errors,
             "bytes": sum(c.bytes for c in self.conns),
             "elapsed": round(time.monotonic() - self.t0, 3)})


def cmd_client(a):
    if not 1 <= a.count <= MAX_CONNS:
        sys.exit("--count must be 1..%d" % MAX_CONNS)
    if not 1 <= a.stages <= a.count:
        sys.exit("--stages must be 1..count")
    if not 0 <= a.down <= MAX_BYTES:
        sys.exit("--down out of range")
    if a.open_rate <= 0:
        sys.exit("--open-rate must be > 0")
    raise_nofile(a.count + 64)
    Client(a).run()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--bind", action="append", required=True)
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--mptcp", action="store_true")
    s.add_argument("--tick", type=float, default=0.25, help="pacing interval (s)")
    s.add_argument("--io-timeout", type=float, default=30.0)
    s.add_argument("--lifetime", type=float, default=1800.0)
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--mptcp", action="store_true")
    c.add_argument("--convert-hex", default=None)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--stages", type=int, default=1)
    c.add_argument("--down", type=int, required=True, help="bytes per connection")
    c.add_argument("--rate", type=int, default=0, help="server pacing, bytes/s per connection")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--id-prefix", default="m")
    c.add_argument("--open-rate", type=float, default=100.0, help="connections opened per s")
    c.add_argument("--stage-wait", type=float, default=30.0,
                   help="at most this long for a stage's connections to receive and join")
    c.add_argument("--settle", type=float, default=3.0,
                   help="joins settled: no new one for this long")
    c.add_argument("--hold", type=float, default=120.0, help="at most this long per stage for 'next'")
    c.add_argument("--io-timeout", type=float, default=30.0)
    c.add_argument("--timeout", type=float, default=600.0)
    a = ap.parse_args()
    if a.cmd == "server":
        cmd_server(a)
    else:
        cmd_client(a)


if __name__ == "__main__":
    main()
