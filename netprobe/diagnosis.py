"""How the block is built: one summary over a run's results, per technique.

It folds results as they stream past (memory bounded by the number of
domains and endpoints, not by range sizes) and states, with counts, what each
technique showed.  Partial blocking is reported as partial: "3/5", never
rounded to "reachable" or "blocked".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable

from netprobe.classify import BLOCKED, INCONCLUSIVE, REACHABLE, RESET
from netprobe.probes.kinds import (
    CONNECT,
    CONTROL,
    DNS,
    INJECTION,
    MTPROTO,
    WEB,
    board_stage,
    board_stage_of,
    family_of,
)
from netprobe.records import Result
from netprobe.vantage import NO_OPEN_ACCESS, OFFLINE, UNDECIDED, ControlBoard, address_family, address_port

FAILED = (BLOCKED, RESET)
MAX_EXAMPLES = 3

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
# Inconclusive reasons that say a whole stage or port is answered by the path for every name or address.
# (TCP and MTProto are named by the ports the ControlBoard found intercepted, less those that carried
# the service's own answers: a relay that completes handshakes for it is not in its place.)
INTERCEPTED_FOR_ALL = ("mtproto.intercepted", "http.intercepted", "tls.untrusted_for_all", "tls.intercepted_trusted",
                       "dns.intercepted_all", "dns.same_for_all")
# What each signal of a port's interception (ControlBoard.port_state) shows, in words.
_SIGNALS = {
    "negative_controls_accepted": "connections that must fail were accepted",
    "answered_as_controls": "the data centers answered MTProto byte for byte as hosts that do not speak it",
    "faster_than_light": "connect times faster than light allows to the data centers' published locations",
    "answered_as_not_the_service": "the data centers answered MTProto with bytes no MTProto server sends",
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
STAGE_NAMES = {"tcp": "TCP", "dns": "DNS", "dns_injection": "DNS at the canary", "tls": "TLS", "http": "HTTP",
               "interception": "interception", "mtproto": "MTProto"}

_PHRASES = {
    "dns.nxdomain": "answered NXDOMAIN",
    "dns.servfail": "answered SERVFAIL",
    "dns.refused": "answered REFUSED",
    "dns.no_answer": "returned no address",
    "dns.timeout": "did not answer",
    "dns.bogon": "answered a private/reserved address outside the service's networks",
    "dns.teredo": "answered a forged-looking Teredo AAAA",
    "dns.outside_networks": "answered outside the service's networks",
    "dns.known_blockpage": "answered a known blockpage address",
    "genuine": "genuine answers",
    "tcp.timeout": "timeout",
    "tcp.refused": "reset",
    "tcp.reset": "reset",
    "tcp.unreachable": "ICMP unreachable",
}


def describe_stage(key: str) -> str:
    """A ControlBoard state key ("tcp 4 443", "dns 10.0.0.1:53", "tls 6") in words."""
    stage, _, rest = key.partition(" ")
    parts = rest.split()
    if stage == "tcp" and len(parts) == 2:
        family = f" over IPv{parts[0]}" if parts[0] in ("4", "6") else ""
        return f"TCP to port {parts[1]}{family}"
    if stage == "dns":
        return f"DNS at {rest}"
    family = f" over IPv{rest}" if rest in ("4", "6") else ""
    return f"{STAGE_NAMES.get(stage, stage)}{family}"


def phrase(reason: str) -> str:
    return _PHRASES.get(reason, reason)


def counted(counter: Counter) -> str:
    return ", ".join(f"{n} {phrase(reason)}" for reason, n in counter.most_common())


@dataclass
class _Tally:
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


class Diagnosis:
    def __init__(self, service: str):
        self.service = service
        self.vantage = "unknown"
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
        self.offline_families: set[int] = set()
        self.board: ControlBoard | None = None          # what the controls showed (netprobe/vantage.py)
        self.second_board: ControlBoard | None = None   # ... measured again at the end of a long run
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

    # --- folding ---------------------------------------------------------------

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

    # --- stating ---------------------------------------------------------------

    def techniques(self) -> list[dict]:
        """Each technique observed, as data: kind, stage, how many targets failed of how many,
        the reasons counted, a few targets, and the finding sentence.  Empty when nothing
        failed.  `netprobe report` reads these, not the sentences."""
        found: list[dict] = []

        def add(kind: str, stage: str, finding: str, failed: int, tested: int | None,
                reasons: Counter | dict, targets=()) -> None:
            found.append({"kind": kind, "stage": stage, "failed": failed, "tested": tested,
                          "reasons": dict(reasons), "targets": sorted(targets)[:MAX_EXAMPLES],
                          "finding": finding})

        for resolver, tally in sorted(self.dns_by_resolver.items()):
            if tally.failed:
                line = f"DNS: {tally.ratio()} domains failed at {resolver} ({counted(tally.reasons())})"
                if self.bogus_addresses:
                    shown = ", ".join(a for a, _ in self.bogus_addresses.most_common(MAX_EXAMPLES))
                    line += f"; bogus addresses {shown}"
                add("dns", "dns", line, len(tally.failed), len(tally.tested), tally.reasons(), tally.failed)
        if self.web_lookup_failed and not self.dns_by_resolver:
            add("dns", "dns", f"DNS: {len(self.web_lookup_failed)} web probes found no genuine address "
                f"({counted(Counter(self.web_lookup_failed.values()))})", len(self.web_lookup_failed), None,
                Counter(self.web_lookup_failed.values()), self.web_lookup_failed)
        disagreements = self.resolver_disagreements()
        if disagreements:
            domain, outcomes = disagreements[0]
            example = " vs ".join(f"{phrase(reason)} at {resolver}" for resolver, reason in sorted(outcomes.items()))
            add("dns", "dns", f"DNS: resolvers disagree on {len(disagreements)}/{len(self.dns_outcomes)} domains "
                f"(e.g. {domain}: {example})", len(disagreements), len(self.dns_outcomes), {},
                [d for d, _ in disagreements])
        if self.racing:
            add("dns_injection", "dns", f"DNS injection: {len(self.racing)} domains got a second, different "
                "answer racing the first (on-path injection)", len(self.racing), None, {}, self.racing)
        if self.injection.failed:
            add("dns_injection", "dns", f"DNS injection: {self.injection.ratio()} domains were answered by an "
                "address that runs no DNS server (something on the path answers DNS)",
                len(self.injection.failed), len(self.injection.tested), self.injection.reasons(),
                self.injection.failed)
        if self.endpoints.failed:
            add("ip", "tcp", f"IP: {self.endpoints.ratio()} data-center endpoints failed "
                f"({counted(self.endpoints.reasons())})", len(self.endpoints.failed), len(self.endpoints.tested),
                self.endpoints.reasons(), self.endpoints.failed)
        for cidr, tally in sorted(self.ranges.items()):
            if tally.failed:
                add("ip", "tcp", f"IP: {tally.ratio()} probed addresses of {cidr} failed ({counted(tally.reasons())})",
                    tally.failed, tally.tested, tally.reasons(), [cidr])
        if self.web_connect_failed:
            add("ip", "tcp", f"IP: {len(self.web_connect_failed)}/{len(self.web.tested)} web probes could not "
                f"connect ({counted(Counter(self.web_connect_failed.values()))}): "
                f"{', '.join(sorted(self.web_connect_failed)[:MAX_EXAMPLES])}", len(self.web_connect_failed),
                len(self.web.tested), Counter(self.web_connect_failed.values()), self.web_connect_failed)
        if self.handshake_failed:
            domains = sorted(self.handshake_failed)
            https_tested = sum(1 for key in self.web.tested if key.startswith("https "))
            add("sni", "tls", f"SNI: {len(domains)}/{https_tested} domains failed during the TLS handshake while "
                f"TCP to the same address connects ({counted(Counter(self.handshake_failed.values()))}): "
                f"{', '.join(domains[:MAX_EXAMPLES])}", len(domains), https_tested,
                Counter(self.handshake_failed.values()), domains)
        if self.bad_certificates:
            domain, message = sorted(self.bad_certificates.items())[0]
            add("tls_interception", "tls", f"TLS interception: {len(self.bad_certificates)} domains presented a "
                f"certificate that does not verify (e.g. {domain}: {message})", len(self.bad_certificates), None,
                {"tls.bad_certificate": len(self.bad_certificates)}, self.bad_certificates)
        if self.blockpages:
            add("http", "http", f"HTTP: {len(self.blockpages)} web probes were answered with a blockpage: "
                f"{', '.join(sorted(self.blockpages)[:MAX_EXAMPLES])}", len(self.blockpages), None,
                Counter(self.blockpages.values()), self.blockpages)
        if self.http_failed:
            add("http", "http", f"HTTP: {len(self.http_failed)} web probes failed after connecting "
                f"({counted(Counter(self.http_failed.values()))}): "
                f"{', '.join(sorted(self.http_failed)[:MAX_EXAMPLES])}", len(self.http_failed), None,
                Counter(self.http_failed.values()), self.http_failed)
        if self.board is not None and self.board.service_intercepted_ports():
            ports = self.board.service_intercepted_ports()
            targets = self.interception.get("tcp.service_intercepted", set())
            add("service_interception", "tcp",
                f"Interception of the service: on port {self._ports_with_signals(ports)}, while control names got "
                "through that port genuinely and connections that must fail were refused: the path answers for "
                f"the service's addresses alone ({len(targets)} completed connections not taken as reachable)",
                len(ports), None, {"tcp.service_intercepted": len(targets)}, [f"{p} (IPv{f})" for f, p in ports])
        mtproto_line = self._mtproto_line()
        if mtproto_line:
            failed = {t for tally in self.mtproto.values() for t in tally.failed}
            reasons = Counter()
            for tally in self.mtproto.values():
                reasons.update(tally.reasons())
            add("mtproto", "mtproto", mtproto_line, len(failed), len(self.mtproto_verdicts), reasons, failed)
        return found

    def technique_lines(self) -> list[str]:
        """One sentence per technique observed; empty when nothing failed."""
        return [t["finding"] for t in self.techniques()]

    def control_lines(self, reason: str | None) -> list[str]:
        """What the controls said that a reader must know: interception, stages not judged,
        stages without a control of their own, a network that changed during the run."""
        lines = []
        board = self.board
        if self.vantage == NO_OPEN_ACCESS:
            lines.append("No open access: no control got through at any stage while something on the path "
                         "answers: this network gives no open access to the Internet (log in to a captive portal "
                         "first, or there is no way out); no verdict here is evidence of blocking.")
        if board is not None and board.intercepted_ports():
            lines.append(f"Interception: on port {self._ports_with_signals(board.intercepted_ports())}: something "
                         "on the path answers for every address there, so completed connections and the answers "
                         "on them prove nothing.")
        for why in ("tls.untrusted_for_all", "tls.intercepted_trusted", "dns.intercepted_all", "dns.same_for_all",
                    "dns.resolver_untrusted"):
            if self.interception.get(why):
                lines.append(f"Interception: {INTERCEPTION_REASONS[why]}; {len(self.interception[why])} targets "
                             "not judged.")
        if self.vantage in (NO_OPEN_ACCESS, OFFLINE, UNDECIDED):
            return lines
        for why, kinds in sorted(self.not_judged.items()):
            stage = NOT_JUDGED_REASONS[why]
            lines.append(f"Not judged: {sum(kinds.values())} {stage} failures ({', '.join(sorted(kinds))}) — the "
                         f"control names failed there too ({why}), so they say nothing about the service.")
        missing = self.stages_without_control()
        if missing:
            lines.append(f"Controls: no control for {', '.join(STAGE_NAMES.get(s, s) for s in missing)} (the target "
                         "file names no control_domains or controls for it): failures there are inconclusive.")
        lines.extend(self.uncontrolled_lines())
        if board is not None and board.http_weak_only():
            lines.append("Controls: plain HTTP passed only on control names whose genuine answer the target file does "
                         "not state (weak controls: any HTTP answer, an interceptor's included, passes them).")
        if board is not None and reason is None:
            failed = [describe_stage(key) for key, state in board.states().items()
                      if state == "failed" and key.split()[0] in self.reached_stages
                      and key.split()[0] not in self.judged_stages
                      and not (key.startswith("tcp ") and key.split()[1] in {str(f) for f in self.offline_families})]
            if failed:
                lines.append(f"Controls: every control of {', '.join(sorted(failed))} failed while the service's "
                             "own probes got through: the control hosts, not the service, are unreachable there.")
        if board is not None and self.second_board is not None:
            before, after = board.states(), self.second_board.states()
            changed = sorted(key for key in before if key in after and before[key] != after[key])
            if changed:
                lines.append(f"Controls: the network changed during the run: {'; '.join(f'{k} {before[k]} -> {after[k]}' for k in changed[:MAX_EXAMPLES])}"
                             " — verdicts of those stages may mix two networks.")
        return lines

    def _ports_with_signals(self, ports: list[tuple]) -> str:
        """'443 (IPv4: why), 80 (IPv4: why)' for ports the board found intercepted."""
        by_why: dict[str, list[str]] = defaultdict(list)
        for family, port in ports:
            _, signals = self.board.port_state(family, port)
            by_why["; ".join(_SIGNALS[key] for key in _SIGNALS if key in signals)].append(f"{port} (IPv{family})")
        return "; and on port ".join(f"{', '.join(where)}: {why}" for why, where in by_why.items())

    def intercepted_line(self) -> str | None:
        """The verdict block's first line when a stage is intercepted for every name or address and
        none of the service's answers was genuine (else the "Interception:" lines say where)."""
        stages = sorted({STAGE_NAMES.get(why.partition(".")[0], why) for why in INTERCEPTED_FOR_ALL
                         if self.interception.get(why)})
        if self.board is not None and set(self.board.intercepted_ports()) - self.genuine_ports:
            stages = sorted({*stages, "TCP"})
        if not stages:
            return None
        return (f"This vantage point is intercepted ({', '.join(stages)}): at those stages something on this "
                "network answers in the service's place, not only for the service, so what it answers there says "
                "nothing about whether the service itself is blocked, and those results are marked "
                "inconclusive. To measure the service, run from another network (another ISP, mobile data, a "
                "VPS) or from RIPE Atlas probes (`netprobe atlas submit`).")

    def uncontrolled_lines(self) -> list[str]:
        """Failures judged `*.no_control`: a stage with no control at all in this run."""
        return [f"Not judged: {n} {STAGE_NAMES.get(stage, stage)} failures had no control of their own stage "
                "(the target file names none, or --no-default-controls): they are inconclusive, with what was "
                "observed kept in their evidence." for stage, n in sorted(self.uncontrolled.items())]

    def changed_stages(self) -> set[str]:
        """Stages whose controls, measured again at the end of a long run, changed state."""
        if self.board is None or self.second_board is None:
            return set()
        before, after = self.board.states(), self.second_board.states()
        return {key.split()[0] for key in before if key in after and before[key] != after[key]}

    def stages_without_control(self) -> list[str]:
        """Stages the service's probes measured that no control of their own was measured at."""
        board = self.board
        if board is None:
            return []
        controlled = {"tcp": bool(board.tcp), "dns": bool(board.dns), "dns_injection": bool(board.canary),
                      "tls": bool(board.tls), "http": bool(board.http)}
        return sorted(stage for stage in self.stages_used if not controlled.get(stage, True))

    def findings(self) -> list[str]:
        return self._findings(self._reason())

    def _findings(self, reason: str | None) -> list[str]:
        lines = []
        intercepted = self.intercepted_line()
        if intercepted:
            lines.append(intercepted)
        if self.vantage == "offline":
            lines.append("This vantage point looks offline: no control endpoint was reachable, so no "
                         "failure is evidence of blocking (verdicts marked inconclusive).")
        if self.vantage == "undecided":
            lines.append("The run ended before any control endpoint answered: whether this vantage point is "
                         "online is unknown, so no failure is evidence of blocking (verdicts marked inconclusive).")
        for family in sorted(self.offline_families):
            lines.append(f"IPv{family} looks offline from this vantage point: no IPv{family} control endpoint "
                         f"was reachable, so IPv{family} failures are no evidence of blocking "
                         "(marked inconclusive).")
        lines.extend(self.technique_lines())
        if reason is None:
            lines.append("No blocking observed: every probe that could conclude got through.")
        elif reason == "summary.network_changed":
            lines.append("Not judged: every technique above was seen at a stage whose controls changed during the "
                         "run: the network changed under it, so none is backed by its controls.")
        elif reason == "summary.nothing_concluded":
            lines.append("Nothing concluded: no probe got a genuine answer, and none showed a block.")
        lines.extend(self.control_lines(reason))
        return lines

    def _reason(self) -> str | None:
        """The summary's reason: blocking only when a failure was backed by its stage's controls."""
        techniques = self.techniques()
        if techniques:
            changed = self.changed_stages()
            if any(board_stage_of(t["stage"]) not in changed for t in techniques):
                return "summary.blocking_observed"
            return "summary.network_changed"
        if self.vantage in ("offline", "undecided", NO_OPEN_ACCESS):
            return f"summary.{self.vantage}"
        if self.intercepted_line():
            return "summary.intercepted"
        if not self.reachable_seen:
            return "summary.nothing_concluded"
        return None

    def resolver_disagreements(self) -> list[tuple[str, dict[str, str]]]:
        """Domains whose answers were judged differently at different resolvers."""
        return sorted((domain, outcomes) for domain, outcomes in self.dns_outcomes.items()
                      if len(outcomes) > 1 and len(set(outcomes.values())) > 1)

    def _mtproto_line(self) -> str | None:
        if not any(t.failed for t in self.mtproto.values()):
            return None
        parts = []
        for transport, tally in sorted(self.mtproto.items()):
            if tally.failed:
                parts.append(f"{transport} {tally.ratio()} failed ({counted(tally.reasons())})")
            else:
                parts.append(f"{transport} reachable")
        line = "MTProto: " + "; ".join(parts)
        fingerprinted = [target for target, verdicts in self.mtproto_verdicts.items()
                         if REACHABLE in verdicts.values() and any(v in FAILED for v in verdicts.values())]
        if fingerprinted:
            line += (f" — on {len(fingerprinted)} endpoints one transport gets through while another fails: "
                     "protocol fingerprinting")
        return line

    def result(self) -> Result:
        """The summary record: its reason follows from the findings, never contradicts them."""
        reason = self._reason()
        evidence = {"findings": self._findings(reason), "vantage": self.vantage,
                    "techniques": [{k: v for k, v in t.items() if k != "finding"} for t in self.techniques()],
                    "resolver_disagreements": dict(self.resolver_disagreements()[:50]),
                    "inconclusive": dict(self.inconclusive)}
        if self.board is not None:
            evidence["controls"] = self.board.states()
            evidence["intercepted_ports"] = [port for _, port in self.board.intercepted_ports()]
        if self.board is not None:
            evidence["stages_without_control"] = self.stages_without_control()
        if self.not_judged:
            evidence["not_judged"] = {why: dict(kinds) for why, kinds in self.not_judged.items()}
        return Result("summary", self.service, None, reason, 0.0, evidence)
