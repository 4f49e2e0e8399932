#!/usr/bin/env python3
"""A slow path to the lab's honest resolver: relays UDP DNS queries and answers DELAY seconds late.

Runs in the server namespace, where udp 53 to the resolver is DNATed to it for
the scenarios that need the genuine answer to arrive late (an on-path injector
must win the race every time).  Each query goes to the real resolver from a
socket of its own; the answer is sent back DELAY seconds after the query came in,
from the relay's listening socket (conntrack turns its port back into 53).

    python tests/lab/dns_delay.py --delay 0.15 --relay 10.53.0.53:5353=10.53.0.53:53 \
        --relay [fd53::53]:5353=[fd53::53]:53

Prints READY (flushed) once every relay socket is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys

UPSTREAM_TIMEOUT = 5.0


def parse_endpoint(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return host, int(port)


class _Once(asyncio.DatagramProtocol):
    def __init__(self, answer: asyncio.Future):
        self.answer = answer

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class Relay(asyncio.DatagramProtocol):
    def __init__(self, upstream: tuple[str, int], delay: float):
        self.upstream = upstream
        self.delay = delay
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task] = set()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(self.relay(data, addr, loop.time()))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def relay(self, query: bytes, client, arrived: float) -> None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future = loop.create_future()
        family = socket.AF_INET6 if ":" in self.upstream[0] else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(lambda: _Once(answer), remote_addr=self.upstream,
                                                           family=family)
        try:
            transport.sendto(query)
            data = await asyncio.wait_for(answer, UPSTREAM_TIMEOUT)
        except (OSError, TimeoutError):
            return
        finally:
            transport.close()
        await asyncio.sleep(max(0.0, arrived + self.delay - loop.time()))
        self.transport.sendto(data, client)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    for spec in args.relay:
        listen, _, upstream = spec.partition("=")
        host, port = parse_endpoint(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        target = parse_endpoint(upstream)
        await loop.create_datagram_endpoint(lambda u=target: Relay(u, args.delay),
                                            local_addr=(host, port), family=family)
    print("READY", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relay", action="append", required=True, metavar="LISTEN=UPSTREAM",
                        help="ADDR:PORT=ADDR:PORT (IPv6 in brackets); repeatable")
    parser.add_argument("--delay", type=float, required=True, help="seconds from query to answer")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
