"""TCP connect probe, also used for control endpoints and as the first stage of
the stream probes (HTTPS, MTProto).

connect() is driven by hand on a non-blocking socket rather than through
asyncio's sock_connect: an error raised by connect() itself, before any packet
left, means this machine has no route — a different verdict from an ICMP
unreachable that came back from the network.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time

from netprobe.addresses import Endpoint
from netprobe.classify import stream_reason
from netprobe.records import Result


class ConnectFailed(Exception):
    """connect() failed; `immediate` says whether it failed before sending anything."""

    def __init__(self, cause: BaseException, immediate: bool):
        super().__init__(str(cause))
        self.cause = cause
        self.immediate = immediate


async def open_socket(endpoint: Endpoint) -> socket.socket:
    """A connected non-blocking socket, or ConnectFailed; the caller bounds the time."""
    family = socket.AF_INET6 if endpoint.family == 6 else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise ConnectFailed(exc, immediate=True) from None
    try:
        sock.setblocking(False)
        try:
            sock.connect((str(endpoint.ip), endpoint.port))
        except (BlockingIOError, InterruptedError):
            await _wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise ConnectFailed(OSError(err, errno.errorcode.get(err, str(err))), immediate=False)
        except OSError as exc:
            raise ConnectFailed(exc, immediate=True) from None
        return sock
    except BaseException:
        sock.close()
        raise


async def _wait_writable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = sock.fileno()
    loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_writer(fd)


def connect_evidence(exc: ConnectFailed | None, elapsed_ms: float) -> dict:
    if exc is None:
        return {"connect": "ok", "connect_ms": round(elapsed_ms, 3)}
    cause = exc.cause
    return {
        "connect": "failed",
        "connect_ms": round(elapsed_ms, 3),
        "error": type(cause).__name__,
        "errno": errno.errorcode.get(getattr(cause, "errno", None) or 0),
        "before_sending": exc.immediate,
    }


async def probe_tcp(endpoint: Endpoint, timeout: float, kind: str = "tcp",
                    context: dict | None = None) -> Result:
    started = time.monotonic()
    reason = None
    failure: ConnectFailed | None = None
    try:
        async with asyncio.timeout(timeout):
            sock = await open_socket(endpoint)
        sock.close()
    except TimeoutError as exc:
        failure = ConnectFailed(exc, immediate=False)
        reason = f"{kind}.timeout"
    except ConnectFailed as exc:
        failure = exc
        reason = stream_reason(kind, exc.cause, immediate=exc.immediate)
    elapsed = (time.monotonic() - started) * 1000
    evidence = {**(context or {}), **connect_evidence(failure, elapsed), "timeout_s": timeout}
    return Result(kind, str(endpoint), str(endpoint), reason, elapsed, evidence)
