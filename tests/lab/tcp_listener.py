#!/usr/bin/env python3
"""A plain TCP listener: the lab's stand-in for mtproto_server.py, and a generic
"something answers on this port" host.

    python tests/lab/tcp_listener.py --listen 10.77.2.1:443 --listen [fd77:2::1]:443

Prints READY (flushed) once every socket listens.  Accepts connections, reads
whatever arrives and closes when the client does (or after 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys


def parse_listen(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return host, int(port)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(10):
            while await reader.read(4096):
                pass
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", required=True, metavar="ADDR:PORT")
    parser.add_argument("--mode", default="normal", help="accepted for interface compatibility; ignored")
    args = parser.parse_args(argv)
    servers = []
    for spec in args.listen:
        host, port = parse_listen(spec)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        servers.append(await asyncio.start_server(handle, host, port, family=family, reuse_address=True))
    print("READY", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
