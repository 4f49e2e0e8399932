"""What a probe kind is, in one place: the registry every other module asks.

A kind is one `Kind`: its name (the records' `probe`), its family, its stages,
how the plan makes its tasks and how the engine measures it.  Nothing else in
the package spells a table of kind names (tests/test_kinds.py fails if one
does): the planner, the engine, the diagnosis, the reports and the OONI and
Atlas code read these objects.

The module is data only and imports no probe: judgment, report and interop
read it without importing asyncio or a probe module (a TCP sweep imports
neither; tests/test_startup.py), and the engine imports the probe function a
kind names when it first measures one (`measure`).

Adding a kind is one module plus one registration.  A QUIC handshake, say:

    # netprobe/probes/quic.py: observe, return a records.Result named after the kind
    async def probe_quic(domain: str, timeout: float, networks=()) -> Result: ...

    # here, in KINDS, at its place in a run's order:
    Kind("quic", WEB, stage="quic", board_stage="tls", planned=(PER_DOMAIN,), port=443,
         measure=Measure("netprobe.probes.quic", "probe_quic", args=("name", "timeout"),
                         keywords=("networks",))),

The plan then makes its tasks (one per service domain) and its controls (the
control names at its board stage, once per stage), `--probes quic` accepts it,
the engine measures it, reports order it, and the diagnosis folds it with its
family.  What is new about it goes where new things of that sort go
(ARCHITECTURE.md): its reasons (`quic.*`) in classify.REASONS; a new family's
rule in tallies.Tallies.handlers (which refuses a kind it has no rule
for); a new board stage's control in engine.execute_control and
vantage.ControlBoard.  tests/test_kinds.py registers a kind this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

# Families: kinds measured alike, folded alike by the diagnosis and exported alike.
DNS = "dns"              # a lookup at a resolver
INJECTION = "injection"  # a query to an address that runs no DNS server: any answer is the path's
CONNECT = "connect"      # one TCP connect (the ConnectPool drives these without a coroutine)
WEB = "web"              # a domain contacted at the addresses DNS (or the target file) gave
MTPROTO = "mtproto"      # MTProto's first request over one transport

# How the plan makes a kind's tasks (plan.Plan.tasks), one task per ...
PER_RESOLVER = "domain x resolver"  # ... service domain and resolver of the run
PER_CANARY = "domain x canary"      # ... service domain and DNS canary (Plan.canaries)
PER_DOMAIN = "domain"               # ... service domain
PER_ENDPOINT = "endpoint"           # ... endpoint of the target file
PER_RANGE_ADDRESS = "range address"  # ... address and port of each range (sampled with the run's seed)


@dataclass(frozen=True)
class Measure:
    """The probe coroutine `<module>.<function>` and its arguments, each
    named from INPUTS; `prepared` adds what the engine prepared for it (web probes: the
    addresses DNS gave) as keywords."""

    module: str
    function: str
    args: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    prepared: bool = False

    def arguments(self, kind: Kind, task: Any, plan: Any, settings: Any,
                  prepared: dict) -> tuple[list, dict]:
        args = [INPUTS[name](kind, task, plan, settings) for name in self.args]
        keywords = {name: INPUTS[name](kind, task, plan, settings) for name in self.keywords}
        return args, {**keywords, **prepared} if self.prepared else keywords


# What a probe may be given, from the kind, the plan's task, the plan and the run's settings.
INPUTS: dict[str, Callable[[Any, Any, Any, Any], Any]] = {
    "name": lambda kind, task, plan, settings: task.domain.name,
    "endpoint": lambda kind, task, plan, settings: task.endpoint,
    "resolver": lambda kind, task, plan, settings: task.resolver,
    "timeout": lambda kind, task, plan, settings: settings.timeout,
    "ca_bundle": lambda kind, task, plan, settings: settings.ca_bundle,
    "networks": lambda kind, task, plan, settings: plan.targets.networks,
    "service_domains": lambda kind, task, plan, settings: tuple(d.name for d in plan.targets.domains),
    "context": lambda kind, task, plan, settings: dict(task.context),
    "kind": lambda kind, task, plan, settings: kind.name,
    "transport": lambda kind, task, plan, settings: kind.transport,
}


@dataclass(frozen=True)
class Kind:
    """One probe kind.

    `stage`: the stage its own failures' reasons start with (dns_injection's are `dns.*`;
    a web probe's may also fail at `tcp`).  `board_stage`: the ControlBoard stage whose
    controls it is weighed against, which is also the stage its success shows open
    (MTProto's is TCP: its control is the same endpoint's connect).  `bare_success`: its
    success is a handshake or an answer any box could give, so it counts only where the
    negative controls showed the port is not intercepted.  `by_silence`: its success is
    that nothing answered, which proves nothing where the path is not known to be open."""

    name: str
    family: str
    stage: str
    board_stage: str
    planned: tuple[str, ...]
    measure: Measure
    transport: str | None = None  # MTProto: the transport on the wire (the kind names the record)
    port: int | None = None       # web: the port a domain is contacted on
    bare_success: bool = False
    by_silence: bool = False


def _mtproto(name: str, transport: str) -> Kind:
    # Each transport is a kind of its own, so that each keeps its own history: one that
    # gets through while another is reset is evidence of fingerprinting.
    return Kind(name, MTPROTO, stage="mtproto", board_stage="tcp", planned=(PER_ENDPOINT,), transport=transport,
                measure=Measure(f"{_PROBES}.mtproto", "probe_mtproto", args=("endpoint", "transport", "timeout"),
                                keywords=("context",)))


_PROBES = "netprobe.probes"

# Every kind, in the order a run performs them (and reports show them).
KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("dns", DNS, stage="dns", board_stage="dns", planned=(PER_RESOLVER,),
         measure=Measure(f"{_PROBES}.dns", "probe_dns", args=("name", "resolver", "networks", "timeout"),
                         keywords=("ca_bundle",))),
    Kind("dns_injection", INJECTION, stage="dns", board_stage="dns_injection", planned=(PER_CANARY,),
         by_silence=True,
         measure=Measure(f"{_PROBES}.dns", "probe_dns_injection", args=("name", "resolver", "timeout", "networks"))),
    Kind("tcp", CONNECT, stage="tcp", board_stage="tcp", planned=(PER_ENDPOINT, PER_RANGE_ADDRESS),
         bare_success=True,
         measure=Measure(f"{_PROBES}.tcp", "probe_tcp", args=("endpoint", "timeout"), keywords=("kind", "context"))),
    Kind("https", WEB, stage="tls", board_stage="tls", planned=(PER_DOMAIN,), port=443,
         measure=Measure(f"{_PROBES}.https", "probe_https", args=("name",),
                         keywords=("networks", "timeout", "ca_bundle", "service_domains"), prepared=True)),
    Kind("http", WEB, stage="http", board_stage="http", planned=(PER_DOMAIN,), port=80, bare_success=True,
         measure=Measure(f"{_PROBES}.https", "probe_http", args=("name",),
                         keywords=("networks", "timeout", "service_domains"), prepared=True)),
    _mtproto("mtproto", "intermediate"),
    _mtproto("mtproto_abridged", "abridged"),
    _mtproto("mtproto_obfuscated2", "obfuscated2"),
)}
NAMES = tuple(KINDS)

# Records that are not a probe kind's: the controls (first) and the run's summary (last).
CONTROL, SUMMARY = "control", "summary"
RECORD_ORDER = (CONTROL, *NAMES, SUMMARY)


def family_of(probe: str) -> str | None:
    """The family of a record's probe kind; None for a control, the summary or an unknown kind."""
    kind = KINDS.get(probe)
    return kind.family if kind else None


def of_family(family: str, among: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The kinds of a family, in run order (only those `among`, when given)."""
    return tuple(name for name, kind in KINDS.items()
                 if kind.family == family and (among is None or name in among))


def board_stage(probe: str) -> str:
    """The ControlBoard stage a kind is weighed against and its success shows open (else the name itself)."""
    kind = KINDS.get(probe)
    return kind.board_stage if kind else probe


def board_stage_of(stage: str) -> str:
    """The ControlBoard stage that backs failures at a reason stage: the one every kind whose
    reasons start there is weighed against (MTProto's: TCP), else the stage itself."""
    stages = {kind.board_stage for kind in KINDS.values() if kind.stage == stage}
    return stages.pop() if len(stages) == 1 else stage


def bare_success(probe: str) -> bool:
    """Whether a kind's success is a bare handshake or an answer any box could give (Kind.bare_success)."""
    kind = KINDS.get(probe)
    return kind is not None and kind.bare_success


def by_silence(probe: str) -> bool:
    """Whether a kind's success is that nothing answered (Kind.by_silence)."""
    kind = KINDS.get(probe)
    return kind is not None and kind.by_silence


def by_transport(transport: str) -> str | None:
    """The MTProto kind that uses a transport."""
    return next((name for name, kind in KINDS.items() if kind.transport == transport), None)


def transports() -> tuple[str, ...]:
    return tuple(kind.transport for kind in KINDS.values() if kind.transport)


def record_order(probe: str) -> int:
    """A record's place in run order: controls, the kinds, the summary; unknown kinds last."""
    return RECORD_ORDER.index(probe) if probe in RECORD_ORDER else len(RECORD_ORDER)
