#!/usr/bin/env python3
"""N concurrent HTTP/1.0 GETs of /barrier/N/SIZE (run in the LAN namespace).

Prints one JSON line: {"ok": k, "failed": m, "reasons": {reason: count},
"failures": [first --show failures]}. Each failure records why the connection
failed and when:

- `connect`: the TCP connect to the server's address failed (refused, reset,
  timeout: the gateway's listener or its SYN handling);
- `send`: writing the request failed;
- `reset` / `eof_short` / `bad_head`: the answer ended with a reset, with a
  clean close before SIZE body bytes, or did not start with `HTTP/1.0 200`;
- `timeout`: no complete answer when the overall --timeout ran out.

Each failure also carries the local port (to find the connection in hac-cpe's
debug log), the seconds since start at which it connected and failed, and the
bytes received. Bounded by --timeout seconds overall.
"""

import argparse
import asyncio
import collections
import errno
import json
import resource
import time

T0 = time.monotonic()


def now():
    return round(time.monotonic() - T0, 3)


class Conn:
    def __init__(self):
        self.phase = "connect"
        self.port = None
        self.connected = None
        self.received = 0
        self.head = b""
        self.failed = None
        self.reason = None
        self.error = None


async def one(c, host, port, n, size):
    try:
        r, w = await asyncio.open_connection(host, port)
    except OSError as e:
        c.reason, c.error, c.failed = "connect", errname(e), now()
        return False
    c.connected = now()
    try:
        c.port = w.get_extra_info("sockname")[1]
        c.phase = "send"
        w.write(b"GET /barrier/%d/%d HTTP/1.0\r\nHost: lab\r\n\r\n" % (n, size))
        await w.drain()
        c.phase = "recv"
        data = b""
        while True:
            b = await r.read(65536)
            if not b:
                break
            data += b
            c.received = len(data)
    except OSError as e:
        c.failed = now()
        c.error = errname(e)
        c.reason = "reset" if isinstance(e, ConnectionResetError) else c.phase
        w.close()
        return False
    w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    c.head = head[:40]
    if not head.startswith(b"HTTP/1.0 200"):
        c.reason, c.failed = "bad_head", now()
        return False
    if len(body) != size:
        c.reason, c.failed = "eof_short", now()
        c.error = "%d of %d body bytes" % (len(body), size)
        return False
    return True


def errname(e):
    if e.errno:
        return "%s (%s)" % (errno.errorcode.get(e.errno, e.errno), e.strerror)
    return repr(e)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=65536)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--show", type=int, default=20, help="failures listed in full")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, a.n + 256)), hard))
    conns = [Conn() for _ in range(a.n)]
    tasks = [asyncio.create_task(one(c, a.host, a.port, a.n, a.size)) for c in conns]
    done, pending = await asyncio.wait(tasks, timeout=a.timeout)
    for t in pending:
        t.cancel()
    for c, t in zip(conns, tasks):
        if t in pending:
            c.reason, c.failed = "timeout", now()
            c.error = "still in %s" % c.phase
        elif t.exception() is not None:
            c.reason, c.failed, c.error = "exception", now(), repr(t.exception())
    ok = sum(1 for t in done if t.exception() is None and t.result())
    bad = [c for c in conns if c.reason]
    reasons = collections.Counter(c.reason for c in bad)
    print(
        json.dumps(
            {
                "ok": ok,
                "failed": a.n - ok,
                "reasons": dict(reasons),
                "failures": [
                    {
                        "reason": c.reason,
                        "error": c.error,
                        "port": c.port,
                        "connected_s": c.connected,
                        "failed_s": c.failed,
                        "received": c.received,
                        "head": c.head.decode("ascii", "replace"),
                    }
                    for c in bad[: a.show]
                ],
                "seconds": now(),
            }
        )
    )


asyncio.run(main())
