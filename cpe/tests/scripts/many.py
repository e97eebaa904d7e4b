#!/usr/bin/env python3
"""N concurrent HTTP/1.0 GETs of /barrier/N/SIZE (run in the LAN namespace).

Prints one JSON line: {"ok": k, "failed": m, "errors": [first few]}. Bounded by
--timeout seconds overall.
"""

import argparse
import asyncio
import json
import resource


async def one(host, port, n, size):
    r, w = await asyncio.open_connection(host, port)
    try:
        w.write(b"GET /barrier/%d/%d HTTP/1.0\r\nHost: lab\r\n\r\n" % (n, size))
        await w.drain()
        data = await r.read()
    finally:
        w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200") or len(body) != size:
        raise RuntimeError("bad answer: %r, %d body bytes" % (head[:40], len(body)))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=65536)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, a.n + 256)), hard))
    tasks = [asyncio.create_task(one(a.host, a.port, a.n, a.size)) for _ in range(a.n)]
    done, pending = await asyncio.wait(tasks, timeout=a.timeout)
    for t in pending:
        t.cancel()
    errors = [repr(t.exception()) for t in done if t.exception()]
    ok = sum(1 for t in done if not t.exception())
    print(json.dumps({"ok": ok, "failed": a.n - ok, "errors": errors[:5]}))


asyncio.run(main())
