"""TCP connect probe, also used for control endpoints and as the first stage of
the stream probes (HTTPS, MTProto).

connect() is driven by hand on a non-blocking socket rather than through
asyncio's sock_connect: an error raised by connect() itself, before any packet
left, means this machine has no route — a different verdict from an ICMP
unreachable that came back from the network.

Two drivers give the same records: `probe_tcp`, a coroutine, and
`ConnectPool`, which the engine uses to keep thousands of connects in flight
without a coroutine, a future or a timer per probe (one epoll set, one timer,
and a first-in-first-out deadline queue, since every probe of a run has the
same timeout).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from _socket import socket as _raw_socket  # socket.socket's C base: no Python __init__ or close per probe
from collections import OrderedDict
from socket import inet_ntoa
from typing import Callable

from netprobe.addresses import Endpoint
from netprobe.classify import stream_reason
from netprobe.records import Result

try:  # Linux; elsewhere the engine drives every probe through probe_tcp
    from select import EPOLLONESHOT, EPOLLOUT, epoll
except ImportError:  # pragma: no cover - not Linux
    epoll = None


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
    import asyncio
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


def tcp_result(target: str, kind: str, context, failure: ConnectFailed | None, reason: str | None,
               elapsed_ms: float, timeout: float) -> Result:
    """The record of one connect; `context` is a dict or a tuple of (key, value) pairs."""
    evidence = dict(context) if context else {}
    if failure is None:  # connect_evidence's, without its call: most records of a sweep
        evidence["connect"] = "ok"
        evidence["connect_ms"] = round(elapsed_ms, 3)
    else:
        evidence.update(connect_evidence(failure, elapsed_ms))
    evidence["timeout_s"] = timeout
    return Result(kind, target, target, reason, elapsed_ms, evidence)


async def probe_tcp(endpoint: Endpoint, timeout: float, kind: str = "tcp",
                    context: dict | None = None) -> Result:
    import asyncio
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
    return tcp_result(str(endpoint), kind, context, failure, reason, elapsed, timeout)


# --- many connects at once ------------------------------------------------------

# connect() on a non-blocking socket: these mean "under way", as BlockingIOError
# and InterruptedError do for probe_tcp; any other errno failed before sending.
_UNDER_WAY = frozenset({errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})
_NONBLOCKING_STREAM = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)  # Linux, as epoll
_EVENTS_PER_WAKEUP = 1024


class _Connect:
    __slots__ = ("sock", "target", "kind", "context", "started", "deadline", "tag")

    def __init__(self, sock, target, kind, context, started, deadline, tag):
        self.sock = sock
        self.target = target
        self.kind = kind
        self.context = context
        self.started = started
        self.deadline = deadline
        self.tag = tag


class ConnectPool:
    """TCP connects driven by callbacks on one epoll set registered with the loop (asyncio's,
    or netprobe.sweep_loop's: it needs add_reader, remove_reader, call_later, is_closed).

    `start()` opens a socket and calls connect(); `on_result(tag, result)` is
    called exactly once per started connect (synchronously from `start()` when
    connect() fails at once), unless `abort()` ends it first.  Records are those
    of probe_tcp.  Connects are expired first in, first out: every one has the
    same timeout, so the oldest is always the next to expire.
    """

    available = epoll is not None

    def __init__(self, loop, timeout: float,
                 on_result: Callable[[object, Result], None]):
        self.loop = loop
        self.timeout = timeout
        self.on_result = on_result
        self.epoll = epoll()
        self.pending: OrderedDict[int, _Connect] = OrderedDict()
        self.timer = None  # the loop's timer handle
        loop.add_reader(self.epoll.fileno(), self._ready)

    def __len__(self) -> int:
        return len(self.pending)

    def start(self, endpoint: Endpoint, target: str, kind: str, context, tag: object) -> None:
        started = time.monotonic()
        try:
            sock = _raw_socket(socket.AF_INET6 if endpoint.family == 6 else socket.AF_INET, _NONBLOCKING_STREAM)
        except OSError as exc:
            self._failed(target, kind, context, started, tag, exc, immediate=True)
            return
        ip = endpoint.ip
        try:
            err = sock.connect_ex((inet_ntoa(ip.packed) if ip.version == 4 else ip.compressed, endpoint.port))
        except OSError as exc:  # connect_ex reports most failures as its value, a few by raising
            sock.close()
            self._failed(target, kind, context, started, tag, exc, immediate=True)
            return
        if err in _UNDER_WAY:
            fd = sock.fileno()
            try:
                self.epoll.register(fd, EPOLLOUT | EPOLLONESHOT)
            except OSError as exc:  # out of memory or epoll watches: the SYN is out, the answer unseen
                sock.close()
                self._failed(target, kind, context, started, tag, exc, immediate=False)
                return
            self.pending[fd] = _Connect(sock, target, kind, context, started, started + self.timeout, tag)
            if self.timer is None:
                self._arm(started + self.timeout)
            return
        sock.close()
        if err == 0:  # connected at once
            elapsed = (time.monotonic() - started) * 1000
            self.on_result(tag, tcp_result(target, kind, context, None, None, elapsed, self.timeout))
        else:
            self._failed(target, kind, context, started, tag, OSError(err, os.strerror(err)), immediate=True)

    def _failed(self, target, kind, context, started, tag, exc: BaseException, immediate: bool) -> None:
        failure = ConnectFailed(exc, immediate=immediate)
        reason = stream_reason(kind, exc, immediate=immediate)
        elapsed = (time.monotonic() - started) * 1000
        self.on_result(tag, tcp_result(target, kind, context, failure, reason, elapsed, self.timeout))

    def _ready(self) -> None:
        events = self.epoll.poll(0, _EVENTS_PER_WAKEUP)
        now = time.monotonic()  # when these connects were seen done: before starting any more
        pending = self.pending
        finished = []
        for fd, _ in events:
            probe = pending.pop(fd, None)
            if probe is None:
                continue
            sock = probe.sock
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            sock.close()
            elapsed = (now - probe.started) * 1000
            if err:
                exc = OSError(err, errno.errorcode.get(err, str(err)))
                failure = ConnectFailed(exc, immediate=False)
                result = tcp_result(probe.target, probe.kind, probe.context, failure,
                                    stream_reason(probe.kind, exc), elapsed, self.timeout)
            else:
                result = tcp_result(probe.target, probe.kind, probe.context, None, None, elapsed, self.timeout)
            finished.append((probe.tag, result))
        on_result = self.on_result
        for tag, result in finished:
            on_result(tag, result)

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(max(0.0, when - time.monotonic()), self._expire)

    def _expire(self) -> None:
        self.timer = None
        self._ready()  # a connect that completed in time is not a timeout
        pending = self.pending
        now = time.monotonic()
        expired = []
        while pending:
            fd, probe = next(iter(pending.items()))
            if probe.deadline > now:
                break
            del pending[fd]
            probe.sock.close()
            failure = ConnectFailed(TimeoutError(), immediate=False)
            expired.append((probe.tag, tcp_result(probe.target, probe.kind, probe.context, failure,
                                                  f"{probe.kind}.timeout", (now - probe.started) * 1000,
                                                  self.timeout)))
        for tag, result in expired:
            self.on_result(tag, result)
        # Re-armed for the oldest: the connects started above armed it for themselves.
        if pending:
            self._arm(next(iter(pending.values())).deadline)
        elif self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def abort(self) -> None:
        """End every connect under way without a result (run deadline, interrupt)."""
        for probe in self.pending.values():
            probe.sock.close()
        self.pending.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        self.abort()
        if not self.loop.is_closed():
            self.loop.remove_reader(self.epoll.fileno())
        self.epoll.close()
