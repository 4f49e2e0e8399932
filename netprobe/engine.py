"""The run: every planned probe, concurrently and on deadlines.

The lazily expanded plan is pulled one task at a time whenever fewer than
`concurrency` probes are in flight (and, with --rate, when the next start is
due), so memory does not grow with the plan.  TCP connects — the bulk of a
range sweep — are driven by callbacks on one epoll set (probes/tcp.py,
ConnectPool): no coroutine, future or timer per probe.  Every other kind runs
as a coroutine under its own deadline.  Every result is handed to `emit` the
moment it exists, so an interrupted run keeps everything it measured.

A plan of TCP connects only (`connects_only`) runs on netprobe/sweep_loop.py's
loop (`Runner.run_connects`), without asyncio; every other plan under asyncio
(`Runner.run`).  Both loops implement sweep_loop.EventLoop, and `drive` picks
one for the session and the tests alike; the two methods differ only in how
they wait and in what interrupts them.

Controls are started first and the other probes right behind them; until
every control is in, results wait in a buffer that holds at most one
`concurrency`'s worth, so that no verdict is reported before it can be
adjusted for an offline vantage point, or for an address family none of whose
controls got through.  A dropped control costs at most one --timeout.  The holding
and the judging are vantage.Judgment's; the runner only schedules.
"""

from __future__ import annotations

import importlib
import math
import os
import resource
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from netprobe.classify import choose_addresses, choose_control_addresses
from netprobe.diagnosis import Diagnosis
from netprobe.plan import Plan, Task
from netprobe.probes.kinds import CONNECT, DNS, KINDS, WEB, family_of
from netprobe.probes.tcp import ConnectPool, probe_tcp
from netprobe.records import Result
from netprobe.sweep_loop import Cancellable, EventLoop, Interrupted, SweepLoop, Waitable
from netprobe.vantage import (
    PATH_CHECK_STAGES,
    ONLINE,
    ControlBoard,
    Judgment,
    as_control,
    checked_http_control,
)

if TYPE_CHECKING:  # asyncio is imported only by the runs that use it (Runner.run)
    import asyncio

# Grace beyond --timeout before the engine itself ends a probe that overran.
PROBE_MARGIN_S = 0.5
# File descriptors kept free for stdout, the output file, the event loop, ...
RESERVED_FDS = 32
# Sockets one probe may hold at once (DNS asks A and AAAA in parallel).
FDS_PER_PROBE = 2


# Probes started in one go before the loop gets to look at what has finished: a fill of
# thousands of slots would otherwise delay (and inflate the measured time of) the first ones.
START_BURST = 256

# Controls that are one TCP connect, driven by the ConnectPool as the CONNECT kinds are.
CONNECT_STAGES = frozenset({"tcp", "interception"})
# A run longer than this measures its controls again at the end (the network may change under it).
REMEASURE_AFTER_S = 60.0


@dataclass(frozen=True)
class Settings:
    timeout: float
    concurrency: int
    deadline: float | None = None
    ca_bundle: str | None = None
    rate: float | None = None  # probes started per second; None: as fast as concurrency allows
    remeasure_after: float = REMEASURE_AFTER_S


@dataclass
class RunOutcome:
    counts: Counter = field(default_factory=Counter)  # (probe, verdict) -> n
    vantage: str = "unknown"  # online | offline | no_open_access | undecided | unknown (no controls)
    not_started: int = 0
    cut_by_deadline: int = 0
    interrupted: bool = False
    concurrency: int = 0
    concurrency_note: str | None = None
    findings: list[str] = field(default_factory=list)
    offline_families: list[int] = field(default_factory=list)


def default_deadline(plan_size: int, settings: Settings, stages: int = 1) -> float:
    """Enough for every probe to time out at the given concurrency (and rate), plus slack."""
    waves = math.ceil(max(plan_size, 1) / max(settings.concurrency, 1))
    pacing = plan_size / settings.rate if settings.rate else 0.0
    return (waves + 1) * stages * (settings.timeout + PROBE_MARGIN_S) + pacing + 5.0


def usable_concurrency(requested: int) -> tuple[int, str | None]:
    """Concurrency the file-descriptor limit allows, raising the soft limit if it can."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = requested * FDS_PER_PROBE + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return requested, None
    allowed = max(1, (soft - RESERVED_FDS) // FDS_PER_PROBE)
    if allowed < requested:
        return allowed, (f"concurrency lowered from {requested} to {allowed}: "
                         f"the open-file limit is {soft} (ulimit -n)")
    return requested, None


def connects_only(plan: Plan) -> bool:
    """Whether every probe of the plan, controls included, is one TCP connect (a sweep):
    such a run needs no coroutine, so it runs without asyncio (Runner.run_connects)."""
    return ConnectPool.available and all(family_of(kind) == CONNECT for kind in plan.kinds) and all(
        stage_of(task) in CONNECT_STAGES for task in plan.controls())


# NETPROBE_LOOP=asyncio runs a plan that connects_only under asyncio too: what the sweep loop
# buys is measured with it (benchmarks/run.py --loop asyncio, benchmarks/README.md).
LOOP_VARIABLE = "NETPROBE_LOOP"


def on_sweep_loop(plan: Plan) -> bool:
    """Whether the run goes on netprobe/sweep_loop.py's loop rather than asyncio's."""
    return connects_only(plan) and os.environ.get(LOOP_VARIABLE) != "asyncio"


def drive(runner: Runner, sweep: bool, signals: tuple[int, ...] = (),
          on_signal: Callable[[int], object] = lambda signum: None,
          on_start: Callable[[EventLoop, Callable[[], object]], object] = lambda loop, stop: None,
          make_executor: Callable[[], object] | None = None) -> RunOutcome:
    """The run on a SweepLoop (`sweep`, a plan that connects_only) or under asyncio.

    Each of `signals` calls on_signal(signum) and interrupts the run; on_start(loop, stop) gets
    the loop and what interrupts the run (for an output that fails) before the first probe;
    make_executor() makes asyncio's default executor (not imported for a sweep).  An interrupted
    run returns its outcome too (`outcome.interrupted`), every result it measured emitted."""
    if sweep:
        loop = SweepLoop()
        try:
            if signals:
                loop.catch_signals(signals, lambda signum: (on_signal(signum), loop.stop()))
            on_start(loop, loop.stop)
            runner.run_connects(loop)
        except Interrupted:
            pass
        finally:
            loop.close()
        return runner.outcome
    # lazy: asyncio 29 ms; TCP-only sweep (test_startup)
    import asyncio

    async def main() -> RunOutcome:
        loop = asyncio.get_running_loop()
        stop = asyncio.current_task().cancel
        if make_executor is not None:
            loop.set_default_executor(make_executor())
        for signum in signals:
            loop.add_signal_handler(signum, lambda signum=signum: (on_signal(signum), stop()))
        on_start(loop, stop)
        return await runner.run()

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        pass
    return runner.outcome


def stage_of(task: Task) -> str | None:
    """The stage a control task measures (its context's "stage")."""
    return dict(task.context).get("stage") if task.kind == "control" else None


def is_web(task: Task) -> bool:
    return family_of(task.kind) == WEB or stage_of(task) in ("tls", "http")


def is_dns_lookup(task: Task) -> bool:
    return family_of(task.kind) == DNS or stage_of(task) == "dns"


def is_connect(task: Task) -> bool:
    """One TCP connect, which the ConnectPool can drive: a CONNECT kind, or a control of its stages."""
    return family_of(task.kind) == CONNECT or stage_of(task) in CONNECT_STAGES


async def execute_control(task: Task, plan: Plan, settings: Settings, prepared: dict) -> Result:
    """A control measured exactly as the service's probes of its stage are."""
    stage = stage_of(task)
    if stage in CONNECT_STAGES:
        return await probe_tcp(task.endpoint, settings.timeout, kind="control", context=dict(task.context))
    if stage in PATH_CHECK_STAGES:
        # lazy: probes.mtproto 91 ms; TCP-only sweep (test_startup)
        from netprobe.probes.mtproto import probe_mtproto
        return await probe_mtproto(task.endpoint, "intermediate", settings.timeout, context=dict(task.context))
    name, pinned = task.domain.name, task.domain.addresses
    if stage == "dns":
        # lazy: probes.dns 102 ms; TCP-only sweep (test_startup)
        from netprobe.probes.dns import probe_dns
        return await probe_dns(name, task.resolver, plan.targets.networks, settings.timeout,
                               ca_bundle=settings.ca_bundle, control_addresses=pinned)
    if stage == "dns_injection":
        # lazy: probes.dns 102 ms; TCP-only sweep (test_startup)
        from netprobe.probes.dns import probe_dns_injection
        return await probe_dns_injection(name, task.resolver, settings.timeout, plan.targets.networks,
                                         control_addresses=pinned)
    # lazy: probes.https 56 ms; TCP-only sweep (test_startup)
    from netprobe.probes.https import probe_http, probe_https
    if stage == "tls":
        return await probe_https(name, networks=(), timeout=settings.timeout, ca_bundle=settings.ca_bundle,
                                 service_domains=(name,), **prepared)
    if stage == "http":
        result = await probe_http(name, networks=(), timeout=settings.timeout, service_domains=(name,), **prepared)
        expected = task.domain.http
        return checked_http_control(result, None if expected is None else expected.evidence())
    raise ValueError(f"no control for stage {stage!r}")


async def execute(task: Task, plan: Plan, settings: Settings, prepared: dict) -> Result:
    """Run one task's probe as its kind's registration says (netprobe/probes/kinds.py);
    the kinds' modules are imported only when used."""
    if task.kind == "control":
        return await execute_control(task, plan, settings, prepared)
    kind = KINDS.get(task.kind)
    if kind is None:
        raise ValueError(f"no probe for kind {task.kind!r}")
    measure = kind.measure
    probe = getattr(importlib.import_module(measure.module), measure.function)
    args, keywords = measure.arguments(kind, task, plan, settings, prepared)
    return await probe(*args, **keywords)


def overrun_result(task: Task, reason: str, started: float, note: str) -> Result:
    address = str(task.endpoint) if task.endpoint else (str(task.resolver) if task.resolver else None)
    elapsed = (time.monotonic() - started) * 1000
    return Result(task.kind, task.target, address, reason, elapsed, {"ended_by": note, **dict(task.context)})


async def guarded(task: Task, plan: Plan, settings: Settings, prepared: dict | None = None) -> Result:
    """A probe that cannot outlive --timeout by more than PROBE_MARGIN_S."""
    # lazy: asyncio 29 ms; TCP-only sweep (test_startup)
    import asyncio
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.timeout + PROBE_MARGIN_S):
            return await execute(task, plan, settings, prepared or {})
    except TimeoutError:
        # The probe's own deadline should have fired first: this machine stalled
        # (a blocked event loop), so the missing answer is no evidence of a block.
        return overrun_result(task, "probe.overrun", started, "probe deadline")


class Runner:
    """One run of a plan.  `run()` returns the outcome; `emit` gets every record.

    The runner schedules and hands records on; what a record means given the
    controls, and how long it waits for them, is its vantage.Judgment's to say.
    """

    def __init__(self, plan: Plan, settings: Settings, emit: Callable[[Result], None]):
        self.plan = plan
        self.settings = settings
        self.emit_to_sink = emit
        self.outcome = RunOutcome()
        self.diagnosis = Diagnosis(plan.targets.name)
        # Probes under way: token -> (task, monotonic start); coroutine probes also in `coroutines`.
        self.in_flight: dict[int, tuple[Task, float]] = {}
        self.coroutines: dict[int, asyncio.Task] = {}
        # The first resolver's DNS result per name (service and control), shared with the web probes.
        self.dns_answers: dict[str, asyncio.Future] = {}
        self.dns_planned = any(family_of(k) == DNS for k in plan.kinds) and bool(plan.resolvers)
        self.pool = None
        self.loop: EventLoop | None = None  # asyncio's (run), or a SweepLoop (run_connects)
        self.controls: list[Task] = []
        self.limit = 1
        self.tokens = 0
        self.pumping = False
        self.pump_timer: Cancellable | None = None
        self.exhausted = False
        self.finished: Waitable | None = None
        self.tasks: Iterator[Task] = iter(())
        # Pacing (--rate): the earliest monotonic time the next probe may start.
        self.interval = 1.0 / settings.rate if settings.rate else 0.0
        self.next_start = 0.0
        # Controls: until every one is in, the other results are held back (begin() counts them).
        self.judgment = Judgment(0)
        self.second_round: list[Result] | None = None  # controls measured again at the end of a long run

    # --- the run -------------------------------------------------------------------

    async def run(self) -> RunOutcome:
        """The run under asyncio's running loop; cancelled, it keeps what it measured and re-raises."""
        # lazy: asyncio 29 ms; TCP-only sweep (test_startup)
        import asyncio
        started = self.begin(asyncio.get_running_loop())
        with self.ending(asyncio.CancelledError):
            async with asyncio.timeout_at(self.deadline_at(started)):
                for future in self.rounds(started):
                    await future
        return self.outcome

    def run_connects(self, loop: SweepLoop) -> RunOutcome:
        """The same run on a SweepLoop, for a plan that `connects_only`; SweepLoop's Interrupted
        (a signal, a failed output) ends it as cancellation ends run()."""
        started = self.begin(loop)
        with self.ending(Interrupted):
            for future in self.rounds(started):
                loop.run_until(future, self.deadline_at(started))
        return self.outcome

    # run and run_connects differ only in how they wait and in what interrupts them: the rest is here.

    def deadline_at(self, started: float) -> float | None:
        """The run deadline on the loops' clock (monotonic)."""
        return None if self.settings.deadline is None else started + self.settings.deadline

    def rounds(self, started: float) -> Iterator[Waitable]:
        """What the run waits for, in turn: every probe, then (a long run) the controls again."""
        self.pump()
        yield self.finished
        if self.remeasure_due(started):
            self.measure_again()
            yield self.finished

    @contextmanager
    def ending(self, interrupted: type[BaseException]) -> Iterator[None]:
        """The run deadline cuts the probes under way; `interrupted` (the loop's own stop) marks
        the outcome and goes on; either way nothing keeps running, and the summary closes a run
        that was not interrupted."""
        try:
            yield
        except TimeoutError:
            self.cut_in_flight("run.deadline")
        except interrupted:
            self.outcome.interrupted = True
            raise
        finally:
            self.stop()
        self.finish()

    def begin(self, loop: EventLoop) -> float:
        """Everything a run needs before its first probe; the start on the loop's (monotonic) clock."""
        started = loop.time()
        self.loop = loop
        concurrency, note = usable_concurrency(self.settings.concurrency)
        self.outcome.concurrency, self.outcome.concurrency_note = concurrency, note
        self.limit = concurrency
        self.finished = loop.create_future()
        self.controls = controls = self.plan.controls()
        self.judgment = Judgment(len(controls))
        self.tasks = _chain(controls, self.plan.tasks())
        if any(family_of(k) == CONNECT for k in self.plan.kinds) or controls:
            if ConnectPool.available:
                self.pool = ConnectPool(loop, self.settings.timeout, self.done)
        return started

    def remeasure_due(self, started: float) -> bool:
        return bool(self.controls) and time.monotonic() - started > self.settings.remeasure_after

    def measure_again(self) -> None:
        """A long run: the controls once more, so that a network that changed under the
        run is seen (the summary says which stages changed); `finished` says when."""
        self.second_round = []
        again = [Task(t.kind, t.target, t.endpoint, t.domain, t.resolver, (*t.context, ("round", 2)))
                 for t in self.controls]
        self.finished = self.loop.create_future()
        self.exhausted = False
        self.tasks = iter(again)
        self.pump()

    def pump(self) -> None:
        """Start probes while a slot is free (and, with --rate, one is due)."""
        if self.pumping or self.exhausted:
            return
        self.pumping = True
        burst = START_BURST
        try:
            while len(self.in_flight) < self.limit:
                if burst == 0:
                    self.pump_later(0.0)
                    break
                burst -= 1
                if not self.judgment.may_start(self.limit):
                    break  # the held-back results are bounded by one concurrency's worth
                if self.interval:
                    now = time.monotonic()
                    if now < self.next_start:
                        self.pump_later(self.next_start - now)
                        break
                task = next(self.tasks, None)
                if task is None:
                    self.exhausted = True
                    self.check_finished()
                    break
                if self.interval:
                    self.next_start = max(self.next_start, now) + self.interval
                self.judgment.starting(task.kind == "control")
                self.start(task)
        except Exception as exc:  # a bug: end the run with it, as an uncaught error would
            self.fail(exc)
        finally:
            self.pumping = False

    def fail(self, exc: BaseException) -> None:
        self.exhausted = True
        if self.finished is not None and not self.finished.done():
            self.finished.set_exception(exc)

    def pump_later(self, delay: float) -> None:
        if self.pump_timer is None:
            self.pump_timer = self.loop.call_later(delay, self._paced_pump)

    def _paced_pump(self) -> None:
        self.pump_timer = None
        self.pump()

    def start(self, task: Task) -> None:
        token = self.tokens = self.tokens + 1
        self.in_flight[token] = (task, time.monotonic())
        if self.pool is not None and task.endpoint is not None and is_connect(task):
            self.pool.start(task.endpoint, task.target, task.kind, task.context, token)
            return
        coroutine = self.loop.create_task(self.run_task(task))
        self.coroutines[token] = coroutine
        coroutine.add_done_callback(lambda done, token=token: self.coroutine_done(token, done))

    def coroutine_done(self, token: int, done: asyncio.Task) -> None:
        self.coroutines.pop(token, None)
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:  # a bug in a probe: end the run with it, as an uncaught error would
            self.in_flight.pop(token, None)
            self.fail(error)
            return
        self.done(token, done.result())

    def done(self, token: int, result: Result) -> None:
        """A probe's result: count it, report (or hold) it, start the next."""
        entry = self.in_flight.pop(token, None)
        if entry is None:
            return  # already recorded as cut by the run deadline
        task = entry[0]
        try:
            self.take(task, result)
        except Exception as exc:  # the sink failed: end the run with its error
            self.fail(exc)
            return
        if self.exhausted:
            self.check_finished()
        else:
            self.pump()

    def take(self, task: Task, result: Result) -> None:
        if task.kind == "control":
            result = as_control(result, stage_of(task) or "tcp")
            if self.second_round is not None:
                self.second_round.append(result)
                self.emit_control_again(result)
            else:
                self.report(self.judgment.control, result)
        else:
            self.report(self.judgment.hold, result)

    def check_finished(self) -> None:
        if not self.in_flight and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    # --- controls and the vantage point --------------------------------------

    def report(self, step: Callable[..., list[Result]], *args: Result) -> None:
        """Emit what a step of the judgment releases; when that step decided, note the
        decision in the outcome and the diagnosis first."""
        judgment = self.judgment
        deciding = judgment.deciding
        released = step(*args)
        if deciding and not judgment.deciding:
            self.outcome.vantage = judgment.vantage
            if judgment.vantage == ONLINE:
                self.outcome.offline_families = sorted(judgment.offline_families)
                self.diagnosis.offline_families = set(judgment.offline_families)
            self.diagnosis.board = judgment.board
        for result in released:
            self.emit(result)

    # --- one probe ---------------------------------------------------------------

    async def run_task(self, task: Task) -> Result:
        """One probe; a web probe first waits for its domain's DNS result, which is
        bounded by that probe's own deadline, so each stage keeps its --timeout."""
        prepared = dns_seen = None
        if is_web(task):
            prepared, dns_seen = await self.address_choice(task)
        result = await guarded(task, self.plan, self.settings, prepared)
        if task.kind != "control" and task.domain is not None:
            result.evidence.update(task.context)  # the target file's group (Plan.domain_context)
        if dns_seen is not None:
            result.evidence["dns"] = dns_seen  # what the address choice was decided from
        if is_dns_lookup(task) and self.plan.resolvers and task.resolver == self.plan.resolvers[0]:
            future = self.dns_answer(task)
            if not future.done():
                future.set_result(result)
        return result

    def dns_answer(self, task: Task) -> asyncio.Future:
        domain = task.domain
        future = self.dns_answers.get(domain.name)
        if future is None:
            future = self.dns_answers[domain.name] = self.loop.create_future()
            if not self.dns_planned:
                # No DNS probe will measure this name: look it up here, unrecorded.
                if task.kind == "control":
                    lookup_task = Task("control", domain.name, domain=domain, resolver=self.plan.resolvers[0],
                                       context=(("stage", "dns"),))
                else:
                    lookup_task = Task("dns", domain.name, domain=domain, resolver=self.plan.resolvers[0])
                lookup = self.loop.create_task(guarded(lookup_task, self.plan, self.settings))
                lookup.add_done_callback(lambda done: future.done() or done.cancelled()
                                         or future.set_result(done.result()))
        return future

    async def address_choice(self, task: Task) -> tuple[dict, dict]:
        """The web probe's arguments, and the DNS observation they were chosen from."""
        domain = task.domain
        answer, answered = None, []
        if self.plan.resolvers:
            answer = await self.dns_answer(task)
            answered = [a for query in answer.evidence.get("queries", []) for a in query.get("addresses", [])]
        reason = answer.reason if answer else None
        if task.kind == "control":
            addresses, source, reason = choose_control_addresses(answered, reason, domain.addresses)
        else:
            addresses, source, reason = choose_addresses(answered, reason, domain.addresses,
                                                         self.plan.targets.networks)
        seen = {"resolver": answer.address if answer else None, "addresses": answered,
                "reason": answer.reason if answer else None}
        if answer is not None and answer.evidence.get("aaaa_only"):
            seen.update(aaaa_only=True, a_genuine=answer.evidence.get("a_genuine", False))
        return {"addresses": addresses, "address_source": source, "dns_reason": reason}, seen

    # --- records -----------------------------------------------------------------

    def emit(self, result: Result) -> None:
        result = self.judgment.judged(result)
        self.outcome.counts[(result.probe, result.verdict)] += 1
        self.diagnosis.add(result)
        self.emit_to_sink(result)

    def emit_control_again(self, result: Result) -> None:
        result.evidence["round"] = 2
        self.outcome.counts[(result.probe, result.verdict)] += 1
        self.emit_to_sink(result)

    def finish(self) -> None:
        """The diagnosis of how the block is built, as the run's last record."""
        self.diagnosis.vantage = self.outcome.vantage
        if self.second_round is not None:
            self.diagnosis.second_board = ControlBoard(self.second_round)
        summary = self.diagnosis.result()
        self.outcome.findings = summary.evidence["findings"]
        self.emit_to_sink(summary)

    def cut_in_flight(self, reason: str) -> None:
        """Record the probes the run deadline ended, so no planned target goes missing silently."""
        cut = [(task, overrun_result(task, reason, started, "run deadline"))
               for task, started in self.in_flight.values()]
        self.in_flight.clear()
        self.stop_probes()
        for task, result in cut:
            if task.kind == "control" and self.judgment.deciding:
                # A control the deadline cut decided nothing: the run stays undecided.
                self.report(self.judgment.cut_control, as_control(result, stage_of(task) or "tcp"))
            else:
                self.take(task, result)
            self.outcome.cut_by_deadline += 1
        self.report(self.judgment.release)

    def stop_probes(self) -> None:
        for coroutine in self.coroutines.values():
            coroutine.cancel()
        self.coroutines.clear()
        for future in self.dns_answers.values():
            future.cancel()
        if self.pool is not None:
            self.pool.abort()

    def stop(self) -> None:
        """The run is over (done, deadline or interrupt): nothing may keep running."""
        self.exhausted = True
        if self.pump_timer is not None:
            self.pump_timer.cancel()
            self.pump_timer = None
        self.in_flight.clear()
        self.stop_probes()
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        self.report(self.judgment.release)
        self.outcome.not_started = sum(1 for _ in self.tasks)


def _chain(first: list[Task], rest: Iterator[Task]) -> Iterator[Task]:
    yield from first
    yield from rest
