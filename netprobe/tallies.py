"""The fold of a run's judged records, the first step of its diagnosis (netprobe/diagnosis.py).

`Tallies` keeps, per technique, which targets were tested and which failed,
and what the judgment against the controls left inconclusive and why, as the
records stream past; it states nothing.  Memory is bounded by the number of
domains and endpoints, not by range sizes (a /16 is counted, not listed).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable

from netprobe.classify import BLOCKED, INCONCLUSIVE, REACHABLE, RESET
from netprobe.probes.kinds import CONNECT, CONTROL, DNS, INJECTION, MTPROTO, WEB, board_stage, family_of
from netprobe.records import Result
from netprobe.vantage import ControlBoard, address_family, address_port

FAILED = (BLOCKED, RESET)

# Inconclusive reasons that say the network intercepts everything, not only the service.
INTERCEPTION_REASONS = {
    "tcp.intercepted": "connections that must fail were accepted",
    "http.intercepted": "plain HTTP goes to whatever accepts every connection",
    "mtproto.intercepted": "MTProto was answered by whatever accepts every connection",
    "tls.intercepted_trusted": "every name's certificate, the control names' included, has one issuer: a "
                               "TLS-intercepting proxy whose root this machine trusts (a company's)",
    "tls.untrusted_for_all": "TLS fails verification for every name, the control names included "
                             "(a TLS-intercepting proxy, or a wrong clock or trust store)",
    "dns.intercepted_all": "an address that runs no DNS server answers every name alike (all DNS is "
                           "intercepted)",
    "dns.same_for_all": "the resolver answers every name alike (captive portal, walled garden)",
    "dns.resolver_untrusted": "the resolver's answers lead to servers whose TLS does not verify (captive portal)",
    "tcp.service_intercepted": "connections to the service's addresses were answered by something that is "
                               "not the service",
}
# Inconclusive reasons that say a stage's controls failed too: those failures are not judged.
NOT_JUDGED_REASONS = {
    "dns.resolver_failing": "DNS",
    "tcp.path_failing": "TCP",
    "mtproto.path_failing": "MTProto",
    "tls.path_failing": "TLS",
    "http.path_failing": "HTTP",
    "http.not_service": "HTTP",
}


@dataclass
class _Tally:
    """The targets of a technique tested, and those that failed with their first reason: a target
    measured again (another resolver's answer, another transport) counts once."""

    tested: set = field(default_factory=set)
    failed: dict = field(default_factory=dict)  # target -> reason

    def add(self, target: str, result: Result) -> None:
        self.tested.add(target)
        if result.verdict in FAILED:
            self.failed.setdefault(target, result.reason)

    def ratio(self) -> str:
        return f"{len(self.failed)}/{len(self.tested)}"

    def reasons(self) -> Counter:
        return Counter(self.failed.values())


@dataclass
class _CountTally:
    """A _Tally that keeps counts, not targets: for ranges, where every address is a target
    of its own (a /16 is 65,536) and each is probed once."""

    tested: int = 0
    failed: int = 0
    failures: Counter = field(default_factory=Counter)  # reason -> n

    def add(self, target: str, result: Result) -> None:
        self.tested += 1
        if result.verdict in FAILED:
            self.failed += 1
            self.failures[result.reason] += 1

    def ratio(self) -> str:
        return f"{self.failed}/{self.tested}"

    def reasons(self) -> Counter:
        return self.failures


class Tallies:
    """The service's records folded as they stream past: per technique, which targets were
    tested and which failed (with the first reason), what the judgment left inconclusive
    and why (interception, controls that failed too, no control), and the stages measured
    and got through.  It states nothing: the techniques and findings are read from it.
    Memory is bounded by the number of domains and endpoints, not by range sizes."""

    def __init__(self) -> None:
        self.dns_by_resolver: dict[str, _Tally] = defaultdict(_Tally)
        self.bogus_addresses: Counter = Counter()
        self.racing: set[str] = set()
        self.dns_outcomes: dict[str, dict[str, str]] = defaultdict(dict)  # domain -> resolver -> reason
        self.injection = _Tally()
        self.endpoints = _Tally()
        self.ranges: dict[str, _CountTally] = defaultdict(_CountTally)
        # Web probes (https, http), keyed "kind domain", split by the stage that failed.
        self.web = _Tally()
        self.web_lookup_failed: dict[str, str] = {}
        self.web_connect_failed: dict[str, str] = {}
        self.handshake_failed: dict[str, str] = {}  # after a connect that succeeded
        self.bad_certificates: dict[str, str] = {}
        self.blockpages: dict[str, str] = {}
        self.http_failed: dict[str, str] = {}
        self.mtproto: dict[str, _Tally] = defaultdict(_Tally)
        self.mtproto_verdicts: dict[str, dict[str, str]] = defaultdict(dict)
        # (family, port) where the service itself answered (a resPQ with our nonce): a relay that
        # completes handshakes there still carries the service's own bytes.
        self.genuine_ports: set[tuple] = set()
        self.inconclusive = Counter()
        self.reachable_seen = False
        self.not_judged: dict[str, Counter] = defaultdict(Counter)  # reason -> probe kind -> n
        self.interception: dict[str, set] = defaultdict(set)        # reason -> targets
        self.uncontrolled: Counter = Counter()                      # stage -> failures judged without control
        self.judged_stages: set[str] = set()                         # stages with failures the controls judged
        self.reached_stages: set[str] = set()                        # stages the service's probes got through
        self.stages_used: set[str] = set()                           # stages the service's probes measured
        # Every family of probe kinds (netprobe/probes/kinds.py) has a handler: a new kind
        # cannot silently count for nothing.
        self.handlers: dict[str, Callable[[Result], None]] = {
            CONTROL: self._add_control, DNS: self._add_dns, INJECTION: self._add_dns_injection,
            CONNECT: self._add_tcp, WEB: self._add_web, MTPROTO: self._add_mtproto,
        }

    def add(self, result: Result) -> None:
        handler = self.handlers.get(CONTROL if result.probe == CONTROL else family_of(result.probe))
        if handler is None:
            raise ValueError(f"the diagnosis has no rule for probe kind {result.probe!r}")
        if result.probe != "control":
            self._weighed(result)
            self.stages_used.add(board_stage(result.probe))
        handler(result)

    def _weighed(self, result: Result) -> None:
        """What the judgment against the controls made of a service record."""
        if result.verdict == INCONCLUSIVE:
            self.inconclusive[result.probe] += 1
            if result.reason in INTERCEPTION_REASONS:
                self.interception[result.reason].add(result.target)
            elif result.reason in NOT_JUDGED_REASONS:
                self.not_judged[result.reason][result.probe] += 1
                self.judged_stages.add(str(result.evidence.get("controls", {}).get("stage", "")))
        if result.verdict == REACHABLE:
            self.reachable_seen = True
            self.reached_stages.add(board_stage(result.probe))
        if (result.reason or "").endswith(".no_control"):
            self.uncontrolled[result.reason.partition(".")[0]] += 1  # dns, tcp, tls, http, mtproto

    def _add_control(self, result: Result) -> None:
        """Controls are folded by the ControlBoard; the summary reads it."""

    def _add_dns(self, result: Result) -> None:
        self.dns_by_resolver[result.address or "?"].add(result.target, result)
        if result.verdict != INCONCLUSIVE:  # "no route to that resolver" is no disagreement
            self.dns_outcomes[result.target][result.address or "?"] = result.reason or "genuine"
        for query in result.evidence.get("queries", []):
            if result.reason in ("dns.bogon", "dns.outside_networks", "dns.teredo"):
                self.bogus_addresses.update(query.get("addresses", []))
            if query.get("late_answers"):
                self.racing.add(result.target)

    def _add_dns_injection(self, result: Result) -> None:
        self.injection.add(result.target, result)

    def _add_tcp(self, result: Result) -> None:
        cidr = result.evidence.get("range")
        (self.ranges[cidr] if cidr else self.endpoints).add(result.target, result)

    def _add_web(self, result: Result) -> None:
        key = f"{result.probe} {result.target}"
        self.web.add(key, result)
        if result.verdict not in FAILED:
            return
        stage = result.reason.partition(".")[0]
        if stage == "dns":
            self.web_lookup_failed[key] = result.reason
        elif stage == "tcp":
            self.web_connect_failed[key] = result.reason
        elif result.reason == "tls.bad_certificate":
            tls = result.evidence.get("tls") or {}
            self.bad_certificates[result.target] = str(tls.get("verify_message", ""))[:120]
        elif stage == "tls":
            self.handshake_failed[result.target] = result.reason
        elif result.reason in ("http.blockpage", "http.known_blockpage"):
            self.blockpages[key] = str((result.evidence.get("http") or {}).get("status") or result.reason)
        else:
            self.http_failed[key] = result.reason

    def _add_mtproto(self, result: Result) -> None:
        if (result.reason or "").startswith("tcp."):
            # The connect failed: that is IP blocking of the endpoint, not of the protocol.
            self.endpoints.add(result.target, result)
            return
        transport = result.evidence.get("transport", result.probe)
        if result.verdict == REACHABLE:
            self.genuine_ports.add((address_family(result.address), address_port(result.address)))
        self.mtproto[transport].add(result.target, result)
        self.mtproto_verdicts[result.target][transport] = result.verdict

    def resolver_disagreements(self) -> list[tuple[str, dict[str, str]]]:
        """Domains whose answers were judged differently at different resolvers."""
        return sorted((domain, outcomes) for domain, outcomes in self.dns_outcomes.items()
                      if len(outcomes) > 1 and len(set(outcomes.values())) > 1)

    def stages_without_control(self, board: ControlBoard | None) -> list[str]:
        """Stages the service's probes measured that no control of their own was measured at."""
        if board is None:
            return []
        controlled = {"tcp": bool(board.tcp), "dns": bool(board.dns), "dns_injection": bool(board.canary),
                      "tls": bool(board.tls), "http": bool(board.http)}
        return sorted(stage for stage in self.stages_used if not controlled.get(stage, True))
