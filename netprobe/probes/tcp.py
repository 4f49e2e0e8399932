"""TCP connect probe, also used for control endpoints and as the first stage of
the stream probes (HTTPS, MTProto).

connect() is driven by hand on a non-blocking socket rather than through
asyncio's sock_connect: an error raised by connect() itself, before any packet
left, means this machine has no route — a different verdict from an ICMP
unreachable that came back from the network.

One connect driver: `start_connect` (socket and non-blocking connect, or the
failure before sending) and `connect_outcome` (the answer once writable), with
`connect_result` (reason and evidence) for the record.  Two schedulers use it:
`open_socket`, a coroutine for the stream probes and `probe_tcp`, and
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
from netprobe.sweep_loop import EventLoop

try:  # Linux; elsewhere the engine drives every probe through probe_tcp
    from select import EPOLLONESHOT, EPOLLOUT, epoll
except ImportError:  # pragma: no cover - not Linux
    epoll = None


# connect() on a non-blocking socket: these errnos mean "under way"; any other failed before sending.
_UNDER_WAY = frozenset({errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})
_NONBLOCKING_STREAM = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)  # Linux, as epoll
_SET_NONBLOCKING = not hasattr(socket, "SOCK_NONBLOCK")  # elsewhere: setblocking(False) after socket()


class ConnectFailed(Exception):
    """connect() failed; `immediate` says whether it failed before sending anything."""

    def __init__(self, cause: BaseException, immediate: bool):
        super().__init__(str(cause))
        self.cause = cause
        self.immediate = immediate


def start_connect(endpoint: Endpoint, socket_type=_raw_socket) -> tuple[object, bool, ConnectFailed | None]:
    """socket() and a non-blocking connect(): (sock, under_way, None), under_way False when it
    connected at once, or (None, False, ConnectFailed(immediate)) when it failed before sending
    (returned, not raised: a sweep of unroutable addresses would pay a raise per probe)."""
    try:
        sock = socket_type(socket.AF_INET6 if endpoint.family == 6 else socket.AF_INET, _NONBLOCKING_STREAM)
    except OSError as exc:
        return None, False, ConnectFailed(exc, immediate=True)
    if _SET_NONBLOCKING:
        sock.setblocking(False)
    ip = endpoint.ip
    try:
        err = sock.connect_ex((inet_ntoa(ip.packed) if ip.version == 4 else ip.compressed, endpoint.port))
    except OSError as exc:  # connect_ex reports most failures as its value, a few by raising
        sock.close()
        return None, False, ConnectFailed(exc, immediate=True)
    if err == 0:
        return sock, False, None
    if err in _UNDER_WAY:
        return sock, True, None
    sock.close()
    return None, False, ConnectFailed(OSError(err, os.strerror(err)), immediate=True)  # OSError picks the subclass


def connect_outcome(sock) -> ConnectFailed | None:
    """How a connect under way ended, once its socket is writable: None when connected."""
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return ConnectFailed(OSError(err, errno.errorcode.get(err, str(err))), immediate=False) if err else None


async def open_socket(endpoint: Endpoint) -> socket.socket:
    """A connected non-blocking socket, or ConnectFailed; the caller bounds the time."""
    sock, under_way, failure = start_connect(endpoint, socket.socket)
    if failure is not None:
        raise failure
    if under_way:
        try:
            await _wait_writable(sock)
            failure = connect_outcome(sock)
        except BaseException:
            sock.close()
            raise
        if failure is not None:
            sock.close()
            raise failure
    return sock


async def _wait_writable(sock: socket.socket) -> None:
    # lazy: asyncio 29 ms; TCP-only sweep (test_startup)
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


def connect_result(target: str, kind: str, context, failure: ConnectFailed | None,
                   elapsed_ms: float, timeout: float) -> Result:
    """The record of one connect; `context` is a dict or a tuple of (key, value) pairs."""
    evidence = dict(context) if context else {}
    if failure is None:  # connect_evidence's, without its call: most records of a sweep
        evidence["connect"] = "ok"
        evidence["connect_ms"] = round(elapsed_ms, 3)
        reason = None
    else:
        evidence.update(connect_evidence(failure, elapsed_ms))
        reason = stream_reason(kind, failure.cause, immediate=failure.immediate)  # a TimeoutError: .timeout
    evidence["timeout_s"] = timeout
    return Result(kind, target, target, reason, elapsed_ms, evidence)


async def probe_tcp(endpoint: Endpoint, timeout: float, kind: str = "tcp",
                    context: dict | None = None) -> Result:
    # lazy: asyncio 29 ms; TCP-only sweep (test_startup)
    import asyncio
    started = time.monotonic()
    failure: ConnectFailed | None = None
    try:
        async with asyncio.timeout(timeout):
            sock = await open_socket(endpoint)
        sock.close()
    except TimeoutError as exc:
        failure = ConnectFailed(exc, immediate=False)
    except ConnectFailed as exc:
        failure = exc
    elapsed = (time.monotonic() - started) * 1000
    return connect_result(str(endpoint), kind, context, failure, elapsed, timeout)


# --- many connects at once ------------------------------------------------------

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
    or netprobe.sweep_loop's: what netprobe.sweep_loop.EventLoop declares).

    `start()` opens a socket and calls connect(); `on_result(tag, result)` is
    called exactly once per started connect (synchronously from `start()` when
    connect() fails at once), unless `abort()` ends it first.  Records are those
    of probe_tcp.  Connects are expired first in, first out: every one has the
    same timeout, so the oldest is always the next to expire.
    """

    available = epoll is not None

    def __init__(self, loop: EventLoop, timeout: float,
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
        sock, under_way, failure = start_connect(endpoint)
        if under_way:
            fd = sock.fileno()
            try:
                self.epoll.register(fd, EPOLLOUT | EPOLLONESHOT)
            except OSError as exc:  # out of memory or epoll watches: the SYN is out, the answer unseen
                sock.close()
                failure = ConnectFailed(exc, immediate=False)
            else:
                self.pending[fd] = _Connect(sock, target, kind, context, started, started + self.timeout, tag)
                if self.timer is None:
                    self._arm(started + self.timeout)
                return
        elif sock is not None:
            sock.close()  # connected at once
        elapsed = (time.monotonic() - started) * 1000
        self.on_result(tag, connect_result(target, kind, context, failure, elapsed, self.timeout))

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
            failure = connect_outcome(sock)
            sock.close()
            finished.append((probe.tag, connect_result(probe.target, probe.kind, probe.context, failure,
                                                       (now - probe.started) * 1000, self.timeout)))
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
            expired.append((probe.tag, connect_result(probe.target, probe.kind, probe.context, failure,
                                                      (now - probe.started) * 1000, self.timeout)))
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
