#!/usr/bin/env python3
"""The benchmarks' TCP listener: accepts every connection, and resets it once the client closes.

    python benchmarks/sink.py --port 443 [--port 80 ...]

Listens on 0.0.0.0 and [::] (IPV6_V6ONLY) with the largest backlog the kernel
allows, so that every address an AnyIP route makes local answers; prints READY
once listening.  A connection is held until the client closes it (or for
--idle seconds), then closed with a reset: the client has closed first, so the
server keeps no TIME_WAIT that would slow down the next repetition, and the
client sees a connection that stayed up as long as it wanted.  Runs until killed
(the benchmark ends it by pid), or after --lifetime seconds at the latest.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import struct
import sys
import time

ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


def listeners(ports: list[int]) -> list[socket.socket]:
    out = []
    for port in ports:
        for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(65535)
            sock.setblocking(False)
            out.append(sock)
    return out


def reset(selector: selectors.BaseSelector, conn: socket.socket) -> None:
    selector.unregister(conn)
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, ABORT)
    except OSError:
        pass
    conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--lifetime", type=float, default=1800.0)
    args = parser.parse_args(argv)
    selector = selectors.DefaultSelector()
    servers = set(listeners(args.port))
    for sock in servers:
        selector.register(sock, selectors.EVENT_READ)
    opened: dict[socket.socket, float] = {}
    print("READY", flush=True)
    end = time.monotonic() + args.lifetime
    next_sweep = time.monotonic() + args.idle
    while time.monotonic() < end:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            if sock in servers:
                for _ in range(4096):  # drain the accept queue, bounded per wakeup
                    try:
                        conn, _ = sock.accept()
                    except OSError:  # BlockingIOError: drained; others: try again next time
                        break
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ)
                    opened[conn] = time.monotonic()
                continue
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                opened.pop(sock, None)
                reset(selector, sock)
        now = time.monotonic()
        if now >= next_sweep:
            for conn in [c for c, since in opened.items() if now - since > args.idle]:
                del opened[conn]
                reset(selector, conn)
            next_sweep = now + args.idle
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
