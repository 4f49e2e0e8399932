"""The run: controls first, then every planned probe, concurrently and on deadlines.

A fixed pool of workers pulls tasks from the lazily expanded plan, so memory
does not grow with the plan and at most `concurrency` probes are in flight.
Every result is handed to `emit` the moment it exists, so an interrupted run
keeps everything it measured.
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from netprobe.classify import REACHABLE, choose_addresses, offline_adjusted
from netprobe.diagnosis import Diagnosis
from netprobe.plan import Plan, Task
from netprobe.targets import Domain
from netprobe.records import Result

# Grace beyond --timeout before the engine itself ends a probe that overran.
PROBE_MARGIN_S = 0.5
# File descriptors kept free for stdout, the output file, the event loop, ...
RESERVED_FDS = 32
# Sockets one probe may hold at once (DNS asks A and AAAA in parallel).
FDS_PER_PROBE = 2


# Probe kinds that contact a domain at the addresses DNS (or the target file) gave.
WEB_KINDS = ("https", "http")
# The stage a probe kind's overrun is charged to (its reasons' prefix).
STAGE_OF_KIND = {"mtproto_abridged": "mtproto", "mtproto_obfuscated2": "mtproto", "https": "tls",
                 "dns_injection": "dns"}


@dataclass(frozen=True)
class Settings:
    timeout: float
    concurrency: int
    deadline: float | None = None
    ca_bundle: str | None = None


@dataclass
class RunOutcome:
    counts: Counter = field(default_factory=Counter)  # (probe, verdict) -> n
    vantage: str = "unknown"  # online | offline | unknown (no controls)
    not_started: int = 0
    cut_by_deadline: int = 0
    interrupted: bool = False
    concurrency: int = 0
    concurrency_note: str | None = None
    elapsed_s: float = 0.0
    findings: list[str] = field(default_factory=list)


def default_deadline(plan_size: int, settings: Settings, stages: int = 1) -> float:
    """Enough for every probe to time out at the given concurrency, plus slack."""
    waves = math.ceil(max(plan_size, 1) / max(settings.concurrency, 1))
    return (waves + 1) * stages * (settings.timeout + PROBE_MARGIN_S) + 5.0


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


async def execute(task: Task, plan: Plan, settings: Settings, prepared: dict) -> Result:
    """Run one task's probe; the kinds' modules are imported only when used."""
    if task.kind in WEB_KINDS:
        from netprobe.probes.https import probe_http, probe_https
        service_domains = tuple(d.name for d in plan.targets.domains)
        if task.kind == "https":
            return await probe_https(task.domain.name, networks=plan.targets.networks, timeout=settings.timeout,
                                     ca_bundle=settings.ca_bundle, service_domains=service_domains, **prepared)
        return await probe_http(task.domain.name, networks=plan.targets.networks, timeout=settings.timeout,
                                service_domains=service_domains, **prepared)
    if task.kind in ("tcp", "control"):
        from netprobe.probes.tcp import probe_tcp
        return await probe_tcp(task.endpoint, settings.timeout, kind=task.kind, context=dict(task.context))
    if task.kind.startswith("mtproto"):
        from netprobe.probes.mtproto import MTPROTO_KINDS, probe_mtproto
        return await probe_mtproto(task.endpoint, MTPROTO_KINDS[task.kind], settings.timeout,
                                   context=dict(task.context))
    if task.kind == "dns_injection":
        from netprobe.probes.dns import probe_dns_injection
        return await probe_dns_injection(task.domain.name, task.resolver, settings.timeout)
    if task.kind == "dns":
        from netprobe.probes.dns import probe_dns
        return await probe_dns(task.domain.name, task.resolver, plan.targets.networks, settings.timeout,
                               ca_bundle=settings.ca_bundle)
    raise ValueError(f"no probe for kind {task.kind!r}")


def overrun_result(task: Task, reason: str, started: float, note: str) -> Result:
    address = str(task.endpoint) if task.endpoint else (str(task.resolver) if task.resolver else None)
    elapsed = (time.monotonic() - started) * 1000
    return Result(task.kind, task.target, address, reason, elapsed, {"ended_by": note, **dict(task.context)})


async def guarded(task: Task, plan: Plan, settings: Settings, prepared: dict | None = None) -> Result:
    """A probe that cannot outlive --timeout by more than PROBE_MARGIN_S."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.timeout + PROBE_MARGIN_S):
            return await execute(task, plan, settings, prepared or {})
    except TimeoutError:
        stage = STAGE_OF_KIND.get(task.kind, task.kind)
        return overrun_result(task, f"{stage}.timeout", started, "probe deadline")


class Runner:
    def __init__(self, plan: Plan, settings: Settings, emit: Callable[[Result], None]):
        self.plan = plan
        self.settings = settings
        self.emit_to_sink = emit
        self.outcome = RunOutcome()
        self.diagnosis = Diagnosis(plan.targets.name)
        self.in_flight: dict[int, tuple[Task, float]] = {}
        # The first resolver's DNS result per domain, shared with the web probes.
        self.dns_answers: dict[str, asyncio.Future] = {}
        self.dns_planned = "dns" in plan.kinds and bool(plan.resolvers)

    async def run_task(self, task: Task) -> Result:
        """One probe; a web probe first waits for its domain's DNS result, which is
        bounded by that probe's own deadline, so each stage keeps its --timeout."""
        prepared = await self.address_choice(task.domain) if task.kind in WEB_KINDS else None
        result = await guarded(task, self.plan, self.settings, prepared)
        if task.kind == "dns" and task.resolver == self.plan.resolvers[0]:
            future = self.dns_answer(task.domain)
            if not future.done():
                future.set_result(result)
        return result

    def dns_answer(self, domain: Domain) -> asyncio.Future:
        future = self.dns_answers.get(domain.name)
        if future is None:
            future = self.dns_answers[domain.name] = asyncio.get_running_loop().create_future()
            if not self.dns_planned:
                # No DNS probe will measure this domain: look it up here, unrecorded.
                task = Task("dns", domain.name, domain=domain, resolver=self.plan.resolvers[0])
                lookup = asyncio.ensure_future(guarded(task, self.plan, self.settings))
                lookup.add_done_callback(lambda done: future.done() or future.set_result(done.result()))
        return future

    async def address_choice(self, domain: Domain) -> dict:
        if not self.plan.resolvers:
            addresses, source, reason = choose_addresses((), None, domain.addresses, self.plan.targets.networks)
            return {"addresses": addresses, "address_source": source, "dns_reason": reason}
        answer = await self.dns_answer(domain)
        answered = [a for query in answer.evidence.get("queries", []) for a in query.get("addresses", [])]
        addresses, source, reason = choose_addresses(answered, answer.reason, domain.addresses,
                                                     self.plan.targets.networks)
        return {"addresses": addresses, "address_source": source, "dns_reason": reason}

    def emit(self, result: Result) -> None:
        if self.outcome.vantage == "offline":
            adjusted = offline_adjusted(result.verdict, result.probe)
            if adjusted != result.verdict:
                result.evidence["vantage"] = "offline"
                result.evidence["verdict_if_online"] = result.verdict
                result.verdict = adjusted
        self.outcome.counts[(result.probe, result.verdict)] += 1
        self.diagnosis.add(result)
        self.emit_to_sink(result)

    async def run(self) -> RunOutcome:
        started = time.monotonic()
        concurrency, note = usable_concurrency(self.settings.concurrency)
        self.outcome.concurrency, self.outcome.concurrency_note = concurrency, note
        deadline = self.settings.deadline
        try:
            async with asyncio.timeout(deadline):
                await self.run_controls(concurrency)
                await self.run_tasks(concurrency)
        except TimeoutError:
            self.cut_in_flight("run.deadline")
        except asyncio.CancelledError:
            self.outcome.interrupted = True
            raise
        finally:
            self.outcome.elapsed_s = time.monotonic() - started
        self.finish()
        return self.outcome

    async def run_controls(self, concurrency: int) -> None:
        controls = self.plan.controls()
        if not controls:
            return
        semaphore = asyncio.Semaphore(concurrency)

        async def one(task: Task) -> Result:
            async with semaphore:
                return await guarded(task, self.plan, self.settings)

        results = await asyncio.gather(*(one(t) for t in controls))
        online = any(r.verdict == REACHABLE for r in results)
        self.outcome.vantage = "online" if online else "offline"
        for result in results:
            self.emit(result)

    async def run_tasks(self, concurrency: int) -> None:
        tasks = self.plan.tasks()

        async def worker(slot: int) -> None:
            for task in tasks:
                self.in_flight[slot] = (task, time.monotonic())
                result = await self.run_task(task)
                del self.in_flight[slot]
                self.emit(result)

        workers = [asyncio.create_task(worker(i)) for i in range(concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.outcome.not_started = sum(1 for _ in tasks)

    def finish(self) -> None:
        """The diagnosis of how the block is built, as the run's last record."""
        self.diagnosis.vantage = self.outcome.vantage
        summary = self.diagnosis.result()
        self.outcome.findings = summary.evidence["findings"]
        self.emit_to_sink(summary)

    def cut_in_flight(self, reason: str) -> None:
        """Record the probes the run deadline ended, so no planned target goes missing silently."""
        for task, started in list(self.in_flight.values()):
            self.emit(overrun_result(task, reason, started, "run deadline"))
            self.outcome.cut_by_deadline += 1
        self.in_flight.clear()

