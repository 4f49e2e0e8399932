"""Minimal MTProto server for the test lab: answers req_pq_multi with resPQ, nothing more.

It stands in for a Telegram DC inside a network namespace so the probe can be tested
against "reachable", "silent after the handshake", "transport error" and "drips its
answer one byte at a time" servers.

    python tests/lab/mtproto_server.py --listen 10.0.0.1:443 --listen [fd00::1]:443 \
        [--mode normal|silent|error429|drip] [--idle-timeout 10] [--drip-interval 0.5]

In drip mode the genuine answer (a resPQ, framed in the client's transport) is sent one
byte every --drip-interval seconds, again and again, until the client goes away.

The transport is detected from the first bytes, as a real DC does: 0xef abridged,
ee ee ee ee intermediate, dd dd dd dd padded intermediate, otherwise the first 64 bytes
are an obfuscated2 init. A request it cannot parse gets transport error -404 in the
same transport, then the connection is closed. Prints "LISTENING host:port" per bound
socket (useful with port 0) and then "READY" once every listener is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from netprobe import mtproto_wire as wire

LAB_PQ = bytes.fromhex("17ED48941A08F981")
LAB_FINGERPRINT = 0xC3B42B026CE86B21
READ_CHUNK = 16 * 1024
MAX_BYTES_PER_CONNECTION = 1024 * 1024
MODES = ("normal", "silent", "error429", "drip")
MAX_DRIP_SECONDS = 300.0  # a dripping connection lives at most this long


class ConnectionClosed(Exception):
    """The peer went away, sent too much, or stayed idle too long."""


class Connection:
    """One client connection: bounded, idle-limited reads and the chosen transport."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle_timeout: float) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_timeout = idle_timeout
        self.bytes_read = 0

    async def read_exactly(self, size: int) -> bytes:
        try:
            data = await asyncio.wait_for(self.reader.readexactly(size), self.idle_timeout)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError) as exc:
            raise ConnectionClosed from exc
        return self._count(data)

    async def read_some(self) -> bytes:
        try:
            data = await asyncio.wait_for(self.reader.read(READ_CHUNK), self.idle_timeout)
        except (TimeoutError, ConnectionError) as exc:
            raise ConnectionClosed from exc
        if not data:
            raise ConnectionClosed
        return self._count(data)

    def _count(self, data: bytes) -> bytes:
        self.bytes_read += len(data)
        if self.bytes_read > MAX_BYTES_PER_CONNECTION:
            raise ConnectionClosed
        return data

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


async def detect_transport(connection: Connection) -> tuple[object, str]:
    """Read just the transport header and return (decoder/encoder, transport name)."""
    first = await connection.read_exactly(1)
    if first == wire.Abridged.MARKER:
        return wire.Abridged(), "abridged"
    first += await connection.read_exactly(3)
    if first == wire.Intermediate.MARKER:
        return wire.Intermediate(), "intermediate"
    if first == wire.PaddedIntermediate.MARKER:
        return wire.PaddedIntermediate(), "padded_intermediate"
    init = first + await connection.read_exactly(wire.OBFUSCATED_INIT_SIZE - 4)
    transport, inner = wire.Obfuscated2.server_from_init(init)
    return transport, f"obfuscated2/{inner}"


def answer_for(payload: bytes, mode: str) -> tuple[bytes | None, bool]:
    """The payload to send back (None: stay silent) and whether to close afterwards.
    (drip: the normal answer; serve_connection sends it byte by byte.)"""
    if mode == "silent":
        return None, False
    if mode == "error429":
        return wire.transport_error(-429), True
    nonce = wire.parse_req_pq_multi(payload)
    if nonce is None:
        return wire.transport_error(-404), True
    message_id = wire.new_message_id(time.time()) | 1  # server responses are 1 mod 4
    return wire.res_pq(nonce, os.urandom(16), LAB_PQ, [LAB_FINGERPRINT], message_id), False


async def drip(connection: Connection, data: bytes, interval: float) -> None:
    """Send `data` one byte every `interval` seconds, over and over, until the peer goes away."""
    deadline = time.monotonic() + MAX_DRIP_SECONDS
    while time.monotonic() < deadline:
        for byte in data:
            await connection.send(bytes([byte]))
            await asyncio.sleep(interval)


async def serve_connection(connection: Connection, mode: str, log, drip_interval: float = 0.5) -> None:
    peer = connection.writer.get_extra_info("peername")
    try:
        transport, name = await detect_transport(connection)
        log(f"{peer}: transport {name}")
        while True:
            try:
                payloads = transport.feed(await connection.read_some())
            except wire.MTProtoFramingError:
                log(f"{peer}: framing error, answering -404")
                await connection.send(transport.frame(wire.transport_error(-404)))
                return
            for payload in payloads:
                answer, close = answer_for(payload, mode)
                if answer is not None and mode == "drip":
                    log(f"{peer}: dripping the answer, one byte every {drip_interval:g}s")
                    await drip(connection, transport.frame(answer), drip_interval)
                    return
                if answer is not None:
                    await connection.send(transport.frame(answer))
                if close:
                    log(f"{peer}: closing after error answer")
                    return
    except wire.MTProtoFramingError as exc:  # unknown obfuscated2 tag: no transport to answer in
        log(f"{peer}: unrecognised transport ({exc}), closing")
    except ConnectionClosed:
        log(f"{peer}: closed (eof, idle or over read cap)")
    except ConnectionError:
        pass
    finally:
        connection.writer.close()
        with contextlib.suppress(ConnectionError):
            await connection.writer.wait_closed()


def parse_listen(value: str) -> tuple[str, int]:
    """'10.0.0.1:443', '[fd00::1]:443' or '0.0.0.0:443' -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or [IPV6]:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"IPv6 addresses need brackets: {value!r}")
    if not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value!r}")
    return host, int(port)


def format_address(sockname: tuple) -> str:
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def main(args: argparse.Namespace) -> None:
    log = (lambda message: print(message, file=sys.stderr, flush=True)) if args.verbose else (lambda message: None)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(Connection(reader, writer, args.idle_timeout), args.mode, log, args.drip_interval)

    servers = []
    for host, port in args.listen:
        server = await asyncio.start_server(on_connect, host, port, backlog=1024, reuse_address=True)
        servers.append(server)
        for sock in server.sockets:
            print(f"LISTENING {format_address(sock.getsockname())}", flush=True)
    print("READY", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()  # open connections are cancelled when asyncio.run() returns


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", type=parse_listen, required=True, help="HOST:PORT, repeatable")
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--idle-timeout", type=float, default=10.0, help="seconds before an idle connection is closed")
    parser.add_argument("--drip-interval", type=float, default=0.5,
                        help="drip mode: seconds between two bytes of the answer")
    parser.add_argument("--verbose", action="store_true", help="log connections to stderr")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
