"""The event loop of a run whose probes are all TCP connects: timers, readers and signals.

A TCP sweep (`--probes tcp`: endpoints, range addresses, their controls) needs no
coroutine: the ConnectPool drives every connect by callbacks on one epoll set
(probes/tcp.py).  Run here instead of under asyncio, it does not pay asyncio's
import (about a quarter of a small sweep's start-up) nor a callback hop per
wakeup (measured: benchmarks/README.md, "The sweep loop").

`EventLoop` is what the engine and the ConnectPool may ask of a loop; asyncio's
loop and SweepLoop both implement it, so one Runner body drives either
(engine.Runner.run / run_connects).  Coroutines, tasks and writers are asyncio's
alone: only runs with a probe other than a TCP connect use them.
"""

from __future__ import annotations

import heapq
import itertools
import os
import select
import signal
import time
from typing import Callable, Protocol


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Waitable(Protocol):
    """A future as the Runner uses it: done once, with a result or an exception."""

    def done(self) -> bool: ...

    def set_result(self, result: object, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class EventLoop(Protocol):
    """The methods of a loop the Runner and the ConnectPool call, implemented by asyncio's
    loop and by SweepLoop (tests/test_engine.py checks both against this list)."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable: ...

    def create_future(self) -> Waitable: ...

    def add_reader(self, fd: int, callback: Callable[[], object]) -> None: ...

    def remove_reader(self, fd: int) -> object: ...

    def is_closed(self) -> bool: ...


class Interrupted(Exception):
    """The run was asked to stop: a signal, or an output that can no longer be written."""


class Timer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]):
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Future:
    """What the Runner waits for: done once, with a result or an exception."""

    __slots__ = ("_done", "_exception")

    def __init__(self) -> None:
        self._done = False
        self._exception: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, _result: object) -> None:
        self._done = True

    def set_exception(self, exception: BaseException) -> None:
        self._done = True
        self._exception = exception


class SweepLoop:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], object]] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._signalled: list[int] = []
        self._on_signal: Callable[[int], object] | None = None
        self._previous: dict[int, object] = {}
        self._wakeup: tuple[int, int] | None = None
        self._previous_wakeup = -1
        self._stopping = False

    @staticmethod
    def time() -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        timer = Timer(callback)
        heapq.heappush(self._timers, (time.monotonic() + max(0.0, delay), next(self._order), timer))
        return timer

    def add_reader(self, fd: int, callback: Callable[[], object]) -> None:
        self._readers[fd] = callback
        self._epoll.register(fd, select.EPOLLIN)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def create_future(self) -> Future:
        return Future()

    def is_closed(self) -> bool:
        return self._epoll.closed

    def stop(self) -> None:
        """Make run_until raise Interrupted at its next turn."""
        self._stopping = True

    def catch_signals(self, signals: tuple[int, ...], on_signal: Callable[[int], object]) -> None:
        """Each of `signals` calls on_signal(signum) from the loop, between two callbacks (never
        in the middle of one, so no record is left half-written); close() restores the handlers."""
        self._on_signal = on_signal
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        self._wakeup = (read_end, write_end)
        self._previous_wakeup = signal.set_wakeup_fd(write_end)  # wakes the epoll wait at once
        self.add_reader(read_end, self._drain)
        for signum in signals:
            self._previous[signum] = signal.signal(signum, lambda signum, _frame: self._signalled.append(signum))

    def _drain(self) -> None:
        try:
            while os.read(self._wakeup[0], 512):
                pass
        except OSError:
            pass

    def run_until(self, future: Future, deadline: float | None = None) -> None:
        """Run callbacks until `future` is done (raising its exception); TimeoutError at the
        monotonic `deadline`, Interrupted when stopped or signalled."""
        timers, readers, poll = self._timers, self._readers, self._epoll.poll
        while not future._done:
            if self._signalled:
                for signum in self._signalled:
                    if self._on_signal is not None:
                        self._on_signal(signum)
                self._signalled.clear()
            if self._stopping:
                self._stopping = False
                raise Interrupted()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError()
            if timers and timers[0][0] <= now:
                while timers and timers[0][0] <= now:
                    timer = heapq.heappop(timers)[2]
                    if not timer.cancelled:
                        timer.callback()
                continue  # a timer may have ended the run or started probes: look again
            wait = timers[0][0] - now if timers else 3600.0
            if deadline is not None:
                wait = min(wait, deadline - now)
            for fd, _ in poll(wait, 64):
                callback = readers.get(fd)
                if callback is not None:
                    callback()
        if future._exception is not None:
            raise future._exception

    def close(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            for fd in self._wakeup:
                os.close(fd)
            self._wakeup = None
        self._epoll.close()
