#!/usr/bin/env python3
"""Misbehaving web host for the censorship lab: silent after the handshake, or an endless drip.

    python tests/lab/slow_server.py --mode silent --listen 10.77.3.1:443 --listen 10.77.3.1:80
    python tests/lab/slow_server.py --mode drip --interval 0.5 --cert lab.pem --key lab.key \
        --tls-listen 10.77.3.2:443 --listen 10.77.3.2:80

silent  accepts the TCP connection and never sends a byte (what it receives is read
        and dropped); it closes after --idle-timeout seconds without data, or at EOF.
drip    (plain --listen, or --tls-listen: the TLS handshake completes first, with the
        given certificate) reads the request, then sends an HTTP response one byte
        every --interval seconds, forever: a status line, then header lines that
        never end.  Each connection lives at most --max-lifetime seconds.

Prints READY (flushed) once every socket listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import socket
import ssl
import sys

READ_CHUNK = 4096
MAX_REQUEST = 16 * 1024


def parse_listen(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return host, int(port)


def endless_response():
    """The bytes of an HTTP response that never finishes its header section."""
    yield from b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
    for n in itertools.count():
        yield from f"X-Drip-{n}: one byte at a time\r\n".encode()


async def read_request(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Read up to the end of the request head; False if the client went away first."""
    data = b""
    try:
        async with asyncio.timeout(timeout):
            while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    return False
                data += chunk
    except TimeoutError:
        return False
    return True


async def silent(reader: asyncio.StreamReader, idle_timeout: float) -> None:
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                if not await reader.read(READ_CHUNK):
                    return
        except TimeoutError:
            return


async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, interval: float,
               idle_timeout: float) -> None:
    if not await read_request(reader, idle_timeout):
        return
    for byte in endless_response():
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(interval)


async def main(args: argparse.Namespace) -> None:
    context = None
    if args.tls_listen:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(args.max_lifetime):
                if args.mode == "silent":
                    await silent(reader, args.idle_timeout)
                else:
                    await drip(reader, writer, args.interval, args.idle_timeout)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    servers = []
    for specs, tls in ((args.listen, None), (args.tls_listen, context)):
        for spec in specs:
            host, port = parse_listen(spec)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            # In silent mode a TLS listener would be pointless: the server must not even answer a ClientHello.
            servers.append(await asyncio.start_server(handle, host, port, family=family, reuse_address=True,
                                                      ssl=tls if args.mode == "drip" else None))
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("silent", "drip"), required=True)
    parser.add_argument("--listen", action="append", default=[], metavar="ADDR:PORT", help="plain TCP; repeatable")
    parser.add_argument("--tls-listen", action="append", default=[], metavar="ADDR:PORT",
                        help="TLS (drip mode; needs --cert/--key); repeatable")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between two dripped bytes")
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    parser.add_argument("--max-lifetime", type=float, default=300.0, help="seconds a connection may live")
    args = parser.parse_args(argv)
    if args.tls_listen and args.mode == "drip" and not (args.cert and args.key):
        parser.error("--tls-listen needs --cert and --key")
    if not args.listen and not args.tls_listen:
        parser.error("nothing to listen on")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
    sys.exit(0)
