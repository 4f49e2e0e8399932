#!/usr/bin/env python3
"""Reference loops for the sweep benchmark: what a Python TCP sweep costs with no records.

    python benchmarks/bare_sweep.py epoll   CIDR PORT CONCURRENCY TIMEOUT
    python benchmarks/bare_sweep.py asyncio CIDR PORT CONCURRENCY TIMEOUT

`epoll`: non-blocking connects on one epoll set, nothing else — the least any
Python implementation pays (interpreter start-up plus the kernel's work).
`asyncio`: the plain way, a coroutine per address under a semaphore,
loop.sock_connect and asyncio.timeout.  Both print "<reachable> <total>" and
write no records; run them only against the benchmark's own namespaces.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
import time


def epoll_sweep(net: ipaddress.IPv4Network, port: int, concurrency: int, timeout: float) -> int:
    import select

    poller = select.epoll()
    pending: dict[int, tuple[socket.socket, float]] = {}
    addresses = iter(net)
    reachable = exhausted = 0
    next_check = time.monotonic() + 0.05
    while True:
        while not exhausted and len(pending) < concurrency:
            address = next(addresses, None)
            if address is None:
                exhausted = 1
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            if sock.connect_ex((str(address), port)) == errno.EINPROGRESS:
                poller.register(sock.fileno(), select.EPOLLOUT | select.EPOLLONESHOT)
                pending[sock.fileno()] = (sock, time.monotonic() + timeout)
            else:
                sock.close()
        if not pending:
            return reachable
        for fd, _ in poller.poll(0.05, 1024):
            sock, _ = pending.pop(fd)
            reachable += sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            sock.close()
        now = time.monotonic()
        if now >= next_check:  # deadlines, looked at every 50 ms: the answering sweep has none due
            for fd in [fd for fd, (_, deadline) in pending.items() if deadline <= now]:
                pending.pop(fd)[0].close()
            next_check = now + 0.05


def asyncio_sweep(net: ipaddress.IPv4Network, port: int, concurrency: int, timeout: float) -> int:
    import asyncio

    async def one(address: str, limit: asyncio.Semaphore) -> bool:
        async with limit:
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(timeout):
                    await loop.sock_connect(sock, (address, port))
                return True
            except (OSError, TimeoutError):
                return False
            finally:
                sock.close()

    async def main() -> int:
        limit = asyncio.Semaphore(concurrency)
        results = await asyncio.gather(*(one(str(a), limit) for a in net))
        return sum(results)

    return asyncio.run(main())


if __name__ == "__main__":
    mode, cidr, port, concurrency, timeout = sys.argv[1:6]
    network = ipaddress.ip_network(cidr)
    sweep = {"epoll": epoll_sweep, "asyncio": asyncio_sweep}[mode]
    print(sweep(network, int(port), int(concurrency), float(timeout)), network.num_addresses)
