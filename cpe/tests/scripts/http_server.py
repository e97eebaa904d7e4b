#!/usr/bin/env python3
"""Minimal HTTP/1.0 server for hac-cpe's dual-proxy lab test (run with `ip netns exec`).

GET /FILE            the file from --dir (Content-Length, then close)
GET /barrier/N/SIZE  waits until N barrier requests are open at once (or
                     --barrier-timeout seconds), holds them --barrier-hold seconds,
                     then sends SIZE bytes: proves N connections were open through
                     the gateway at the same time

Listens on --bind:--port with a 4096 backlog; with --mptcp an IPPROTO_MPTCP
listener on IPv4 (a server that speaks MPTCP itself, RFC 8803 §5.1). Bounded: --lifetime seconds, and it
exits when its stdin reaches EOF (the test died). One JSON line per event on stdout.
"""

import argparse
import asyncio
import json
import os
import socket
import sys

CHUNK = 256 << 10


def emit(**kv):
    sys.stdout.write(json.dumps(kv) + "\n")
    sys.stdout.flush()


class Barrier:
    def __init__(self):
        self.waiting = 0
        self.event = asyncio.Event()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="any", help="address, or `any` (every IPv4 and IPv6 address)")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--lifetime", type=float, default=600)
    ap.add_argument("--barrier-timeout", type=float, default=60)
    ap.add_argument("--barrier-hold", type=float, default=3,
                    help="seconds all N stay open after the last arrived, before answers")
    ap.add_argument("--mptcp", action="store_true",
                    help="IPPROTO_MPTCP listener (IPv4 only)")
    a = ap.parse_args()
    barrier = Barrier()

    async def handle(reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            line = head.split(b"\r\n", 1)[0].decode("ascii", "replace").split()
            path = line[1] if len(line) > 1 else "/"
            if path.startswith("/barrier/"):
                _, _, n, size = path.split("/")
                n, size = int(n), int(size)
                barrier.waiting += 1
                if barrier.waiting >= n and not barrier.event.is_set():
                    emit(event="barrier", open=barrier.waiting)
                    await asyncio.sleep(a.barrier_hold)
                    barrier.event.set()
                try:
                    await asyncio.wait_for(barrier.event.wait(), a.barrier_timeout)
                except asyncio.TimeoutError:
                    pass
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                writer.write(bytes(size))
                await writer.drain()
                return
            name = os.path.basename(path)
            fn = os.path.join(a.dir, name)
            if not name or not os.path.isfile(fn):
                writer.write(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            size = os.path.getsize(fn)
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            with open(fn, "rb") as f:
                while True:
                    b = f.read(CHUNK)
                    if not b:
                        break
                    writer.write(b)
                    await writer.drain()
            emit(event="sent", path=path, bytes=size)
        except Exception as e:  # a reset or timeout ends that connection only
            emit(event="error", error=repr(e))
        finally:
            try:
                writer.close()
            except Exception:
                pass

    if a.mptcp:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)  # IPPROTO_MPTCP
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0" if a.bind == "any" else a.bind, a.port))
        s.listen(4096)
        server = await asyncio.start_server(handle, sock=s)
    else:
        server = await asyncio.start_server(
            handle, None if a.bind == "any" else a.bind, a.port, backlog=4096
        )
    emit(event="ready", port=a.port)
    loop = asyncio.get_running_loop()
    stdin_eof = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stdin_eof], timeout=a.lifetime)
    server.close()
    os._exit(0)


asyncio.run(main())
