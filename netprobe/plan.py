"""From a target set to the probes a run performs, expanded lazily.

A /16 range is 65,536 probes: the plan is a generator so that memory does not
grow with its size, and its length is computed, not counted.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from ipaddress import ip_address
from socket import inet_ntoa
from typing import Iterator

from netprobe.addresses import Endpoint, IPAddress
from netprobe.errors import NetprobeError
from netprobe.probes.kinds import (
    KINDS,
    MTPROTO,
    PER_CANARY,
    PER_DOMAIN,
    PER_ENDPOINT,
    PER_RANGE_ADDRESS,
    PER_RESOLVER,
    WEB,
    Kind,
)
from netprobe.targets import Domain, EndpointTarget, Range, TargetSet


# Addresses that accept no connection on any port a plan uses, so that one that connects
# was accepted by something on the path.  Several kinds of place, not one: a real
# interceptor exempts some special-purpose ranges (one seen here refused 192.0.2.0/24 and
# accepted everything else), so one address is one guess about its configuration.
#   - the three IPv4 documentation ranges (RFC 5737 TEST-NET-1/2/3) and IPv6's (RFC 3849);
#   - a host that answers elsewhere but not here: a.root-servers.net (198.41.0.4 and
#     2001:503:ba3e::2:30, IANA's root hints file named.root) serves DNS on port 53 only.
DEFAULT_NEGATIVE_CONTROLS = tuple(ip_address(a) for a in (
    "192.0.2.1", "198.51.100.1", "203.0.113.1", "198.41.0.4",
    "2001:db8::1", "2001:503:ba3e::2:30"))


class PlanError(NetprobeError, ValueError):
    """A plan that cannot be run as asked (e.g. an unknown probe kind)."""


@dataclass(slots=True)
class Task:
    """One probe of the plan.  Not frozen: a sweep makes one per address, and a frozen
    dataclass's __init__ costs twice as much; nothing changes a task once made."""

    kind: str
    target: str
    endpoint: Endpoint | None = None
    domain: Domain | None = None
    resolver: Endpoint | None = None
    context: tuple[tuple[str, object], ...] = ()


def parse_probe_kinds(text: str | None) -> tuple[str, ...]:
    """The kinds asked for, in run order (netprobe/probes/kinds.py); None: every kind."""
    if text is None:
        return tuple(KINDS)
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds:
        raise PlanError("--probes: no probe kind given")
    for kind in kinds:
        if kind not in KINDS:
            raise PlanError(f"--probes: unknown probe kind {kind!r} (known: {', '.join(KINDS)})")
    return tuple(k for k in KINDS if k in kinds)


@dataclass(frozen=True)
class Plan:
    targets: TargetSet
    kinds: tuple[str, ...]
    resolvers: tuple[Endpoint, ...]
    seed: int
    probe_controls: bool = True

    def controls(self) -> list[Task]:
        """Every control, stage by stage: what the service's probes are weighed against
        (netprobe/vantage.py).  Records say which connections were used."""
        if not self.probe_controls:
            return []
        tasks = [Task("control", str(ep), endpoint=ep, context=(("stage", "tcp"),)) for ep in self.targets.controls]
        for address in self.negative_controls():
            for port in self.ports():
                endpoint = Endpoint(address, port)
                tasks.append(Task("control", str(endpoint), endpoint=endpoint, context=(("stage", "interception"),)))
        names = self.targets.control_domains
        # The control names, asked as each domain-planned kind asks (its resolvers, its
        # canaries, or directly), once per stage the kinds are weighed against.
        stages: set[str] = set()
        for kind in self.planned_kinds():
            if kind.board_stage in stages:
                continue
            stages.add(kind.board_stage)
            stage = (("stage", kind.board_stage),)
            if PER_RESOLVER in kind.planned:
                tasks += [Task("control", d.name, domain=d, resolver=r, context=stage)
                          for d in names for r in self.resolvers]
            elif PER_CANARY in kind.planned:
                tasks += [Task("control", d.name, domain=d, resolver=c, context=stage)
                          for d in names for c in self.canaries()]
            elif PER_DOMAIN in kind.planned:
                tasks += [Task("control", d.name, domain=d, context=stage) for d in names]
        tasks += self.path_checks()
        return tasks

    def path_checks(self) -> list[Task]:
        """Who answers on the ports MTProto uses, before any verdict is given.

        `path`: our MTProto request to each control endpoint's address on each such
        port: none of them speaks MTProto, so bytes they all answer alike, and that a
        data center answers too, are the path's own.  `identity`: the same request to
        one endpoint per data center, family and port; its connect time is weighed
        against the data centers' published locations, and an answer that is not a
        resPQ where the controls' answers differ shows something answering for the
        service alone (netprobe/vantage.py)."""
        if not any(kind.family == MTPROTO for kind in self.planned_kinds()):
            return []
        endpoints = [t for t in self.targets.endpoints if not t.endpoint.ip.is_loopback]
        ports = sorted({(t.endpoint.family, t.endpoint.port) for t in endpoints})
        if not ports:
            return []
        tasks: list[Task] = []
        hosts = list(dict.fromkeys(ep.ip for ep in self.targets.controls))
        for family, port in ports:
            for ip in hosts:
                if ip.version == family and not ip.is_loopback:
                    endpoint = Endpoint(ip, port)
                    tasks.append(Task("control", str(endpoint), endpoint=endpoint, context=(("stage", "path"),)))
        places = {d.dc: (("city", d.city), ("lat", d.lat), ("lon", d.lon)) for d in self.targets.datacenters}
        seen: set[tuple] = set()
        for target in endpoints:
            key = (target.dc, target.endpoint.family, target.endpoint.port)
            if target.dc is None or key in seen:
                continue
            seen.add(key)
            tasks.append(Task("control", str(target.endpoint), endpoint=target.endpoint,
                              context=(("stage", "identity"), ("dc", target.dc), *places.get(target.dc, ()))))
        return tasks

    def ports(self) -> list[int]:
        """Every TCP port the plan connects to: one negative control each."""
        ports: set[int] = {ep.port for ep in self.targets.controls}
        planned = self.planned_units()
        if PER_ENDPOINT in planned:
            ports.update(t.endpoint.port for t in self.targets.endpoints)
        if PER_RANGE_ADDRESS in planned:
            ports.update(p for r in self.targets.ranges for p in r.ports)
        if self.targets.domains:
            ports.update(kind.port for kind in self.planned_kinds() if kind.port is not None)
        return sorted(ports)

    def negative_controls(self) -> tuple[IPAddress, ...]:
        """The file's negative_controls, else DEFAULT_NEGATIVE_CONTROLS of each address family the
        plan connects to.  Loopback has no path to intercept, so a plan that only
        touches loopback gets none (and sends nothing off this machine)."""
        if self.targets.negative_controls is not None:
            return self.targets.negative_controls
        return tuple(ip for ip in DEFAULT_NEGATIVE_CONTROLS if ip.version in self.path_families())

    def path_families(self) -> set[int]:
        """The address families the plan reaches beyond loopback (which has no path to intercept)."""
        destinations = [ep.ip for ep in self.targets.controls]
        destinations += [t.endpoint.ip for t in self.targets.endpoints]
        destinations += [r.cidr.network_address for r in self.targets.ranges]
        destinations += [a for d in (*self.targets.domains, *self.targets.control_domains) for a in d.addresses]
        return {ip.version for ip in destinations if not ip.is_loopback}

    def planned_kinds(self) -> list[Kind]:
        """The plan's kinds, in run order."""
        return [kind for name, kind in KINDS.items() if name in self.kinds]

    def planned_units(self) -> set[str]:
        """What the plan's kinds are planned per (PER_ENDPOINT, PER_DOMAIN, ...)."""
        return {unit for kind in self.planned_kinds() for unit in kind.planned}

    def tasks(self) -> Iterator[Task]:
        for kind in self.planned_kinds():
            yield from self.tasks_of(kind)

    def tasks_of(self, kind: Kind) -> Iterator[Task]:
        """One kind's tasks, made as the registry says it is planned."""
        name = kind.name
        if PER_RESOLVER in kind.planned:
            for domain in self.targets.domains:
                for resolver in self.resolvers:
                    yield Task(name, domain.name, domain=domain, resolver=resolver,
                               context=self.domain_context(domain))
        if PER_CANARY in kind.planned:
            for domain in self.targets.domains:
                for canary in self.canaries():
                    yield Task(name, domain.name, domain=domain, resolver=canary,
                               context=self.domain_context(domain))
        if PER_ENDPOINT in kind.planned:
            for target in self.targets.endpoints:
                yield Task(name, str(target.endpoint), endpoint=target.endpoint,
                           context=self.endpoint_context(target))
        if PER_RANGE_ADDRESS in kind.planned:
            for index, rng in enumerate(self.targets.ranges):
                context = (("range", str(rng.cidr)), ("seed", self.seed))
                for endpoint, target in self.range_targets(index, rng):
                    yield Task(name, target, endpoint=endpoint, context=context)
        if PER_DOMAIN in kind.planned:
            for domain in self.targets.domains:
                yield Task(name, domain.name, domain=domain, context=self.domain_context(domain))

    def canaries(self) -> tuple[Endpoint, ...]:
        """Addresses that run no DNS server: the file's dns_canary, else one data center."""
        if self.targets.dns_canary:
            return tuple(Endpoint(ip, 53) for ip in self.targets.dns_canary)
        endpoints = sorted((t.endpoint for t in self.targets.endpoints), key=lambda e: e.family)
        return (Endpoint(endpoints[0].ip, 53),) if endpoints else ()

    @staticmethod
    def endpoint_context(target: EndpointTarget) -> tuple[tuple[str, object], ...]:
        """What the endpoint's records carry in their evidence: its DC and the file's group."""
        context: tuple[tuple[str, object], ...] = (("dc", target.dc),) if target.dc is not None else ()
        return context + ((("group", target.group),) if target.group else ())

    @staticmethod
    def domain_context(domain: Domain) -> tuple[tuple[str, object], ...]:
        """What a domain's records carry in their evidence (engine.run_task): the file's group."""
        return (("group", domain.group),) if domain.group else ()

    def range_targets(self, index: int, rng: Range) -> Iterator[tuple[Endpoint, str]]:
        """Each endpoint of a range with its `IP:PORT` text, made without the per-address
        overhead of indexing an ipaddress network (a /16 is 65,536 of them)."""
        first = int(rng.cidr.network_address)
        make = type(rng.cidr.network_address)
        ipv4 = rng.cidr.version == 4
        for offset in self.range_offsets(index, rng):
            address = make(first + offset)
            text = inet_ntoa((first + offset).to_bytes(4, "big")) if ipv4 else f"[{address}]"
            for port in rng.ports:
                yield Endpoint(address, port), f"{text}:{port}"

    def range_offsets(self, index: int, rng: Range) -> Iterator[int]:
        if rng.sample == 0:
            return iter(range(rng.cidr.num_addresses))
        # One generator per range, seeded from the run seed and the range's place,
        # so that the same seed picks the same addresses whatever else changed.
        chooser = random.Random(f"{self.seed}:{index}:{rng.cidr}")
        size = rng.cidr.num_addresses
        if size <= sys.maxsize:
            return iter(sorted(chooser.sample(range(size), rng.sample)))
        # IPv6 ranges outgrow random.sample; with a few draws from 2**64+ addresses
        # a repeat is all but impossible, and the set rules it out anyway.
        picked: set[int] = set()
        while len(picked) < rng.sample:
            picked.add(chooser.randrange(size))
        return iter(sorted(picked))

    @property
    def stages(self) -> int:
        """Probes that wait on another probe: web probes wait on DNS."""
        return 2 if any(kind.family == WEB for kind in self.planned_kinds()) else 1

    def __len__(self) -> int:
        count = len(self.controls())
        per = {PER_RESOLVER: len(self.targets.domains) * len(self.resolvers),
               PER_CANARY: len(self.targets.domains) * len(self.canaries()),
               PER_DOMAIN: len(self.targets.domains),
               PER_ENDPOINT: len(self.targets.endpoints),
               PER_RANGE_ADDRESS: sum(r.size * len(r.ports) for r in self.targets.ranges)}
        return count + sum(per[unit] for kind in self.planned_kinds() for unit in kind.planned)
