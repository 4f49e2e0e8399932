#!/usr/bin/env python3
"""Hold every packet routed into a TUN device for a fixed time, then hand it back to the kernel.

The lab's "far away" data centers (scenarios far_genuine, fast_far_away): the censor routes
the client's packets for a data center into this device (policy routing, see
topology.Lab.start_effect), this program writes each one back after --delay seconds, and the
kernel forwards it on as if it had come in on the device.  The connection's round trip grows
by --delay: what `tc qdisc ... netem delay` does, on a kernel without sch_netem (this lab's).

    python tests/lab/link_delay.py --dev c-far --delay 0.13

Bounded: at most --max-queue packets wait at once (more are dropped, as a full queue drops);
it ends on SIGTERM / SIGINT.  Prints READY (flushed) once the device is open.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import signal
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536


def open_tun(name: str) -> int:
    """The TUN device NAME (created if absent), raw IP packets without a packet-info header."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


async def main(args: argparse.Namespace) -> None:
    fd = open_tun(args.dev)
    loop = asyncio.get_running_loop()
    waiting = 0

    def release(packet: bytes) -> None:
        nonlocal waiting
        waiting -= 1
        try:
            os.write(fd, packet)
        except OSError as exc:  # the kernel refused it (e.g. the route went away): as a lost packet
            print(f"write: {exc}", flush=True)

    def readable() -> None:
        nonlocal waiting
        while True:
            try:
                packet = os.read(fd, MAX_PACKET)
            except BlockingIOError:
                return
            if waiting >= args.max_queue:
                continue
            waiting += 1
            loop.call_later(args.delay, release, packet)

    loop.add_reader(fd, readable)
    print("READY", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    loop.remove_reader(fd)
    os.close(fd)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", required=True, help="TUN device name (created if absent)")
    parser.add_argument("--delay", type=float, required=True, help="seconds each packet is held")
    parser.add_argument("--max-queue", type=int, default=4096, help="packets held at once at most")
    args = parser.parse_args(argv)
    if not 0 <= args.delay <= 5:
        parser.error("--delay must be between 0 and 5 seconds")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
    sys.exit(0)
