"""How the block is built: one summary over a run's results, per technique.

It folds results as they stream past (memory bounded by the number of
domains and endpoints, not by range sizes) and states, with counts, what each
technique showed.  Partial blocking is reported as partial: "3/5", never
rounded to "reachable" or "blocked".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from netprobe.classify import BLOCKED, INCONCLUSIVE, REACHABLE, RESET
from netprobe.records import Result

FAILED = (BLOCKED, RESET)
MAX_EXAMPLES = 3

_PHRASES = {
    "dns.nxdomain": "answered NXDOMAIN",
    "dns.servfail": "answered SERVFAIL",
    "dns.refused": "answered REFUSED",
    "dns.no_answer": "returned no address",
    "dns.timeout": "did not answer",
    "dns.bogon": "answered a private/reserved address outside the service's networks",
    "dns.teredo": "answered a forged-looking Teredo AAAA",
    "dns.outside_networks": "answered outside the service's networks",
    "genuine": "genuine answers",
    "tcp.timeout": "timeout",
    "tcp.refused": "reset",
    "tcp.reset": "reset",
    "tcp.unreachable": "ICMP unreachable",
}


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
        self.inconclusive = Counter()
        self.reachable_seen = False
        self.offline_families: set[int] = set()

    # --- folding ---------------------------------------------------------------

    def add(self, result: Result) -> None:
        if result.verdict == INCONCLUSIVE and result.probe != "control":
            self.inconclusive[result.probe] += 1
        if result.verdict == REACHABLE and result.probe != "control":
            self.reachable_seen = True
        handler = getattr(self, f"_add_{result.probe}", None)
        if handler is not None:
            handler(result)

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

    def _add_https(self, result: Result) -> None:
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
        elif result.reason == "http.blockpage":
            self.blockpages[key] = str((result.evidence.get("http") or {}).get("status", ""))
        else:
            self.http_failed[key] = result.reason

    _add_http = _add_https

    def _add_mtproto(self, result: Result) -> None:
        if (result.reason or "").startswith("tcp."):
            # The connect failed: that is IP blocking of the endpoint, not of the protocol.
            self.endpoints.add(result.target, result)
            return
        transport = result.evidence.get("transport", result.probe)
        self.mtproto[transport].add(result.target, result)
        self.mtproto_verdicts[result.target][transport] = result.verdict

    _add_mtproto_abridged = _add_mtproto
    _add_mtproto_obfuscated2 = _add_mtproto

    # --- stating ---------------------------------------------------------------

    def technique_lines(self) -> list[str]:
        """One sentence per technique observed; empty when nothing failed."""
        lines = []
        for resolver, tally in sorted(self.dns_by_resolver.items()):
            if tally.failed:
                line = f"DNS: {tally.ratio()} domains failed at {resolver} ({counted(tally.reasons())})"
                if self.bogus_addresses:
                    shown = ", ".join(a for a, _ in self.bogus_addresses.most_common(MAX_EXAMPLES))
                    line += f"; bogus addresses {shown}"
                lines.append(line)
        if self.web_lookup_failed and not self.dns_by_resolver:
            lines.append(f"DNS: {len(self.web_lookup_failed)} web probes found no genuine address "
                         f"({counted(Counter(self.web_lookup_failed.values()))})")
        disagreements = self.resolver_disagreements()
        if disagreements:
            domain, outcomes = disagreements[0]
            example = " vs ".join(f"{phrase(reason)} at {resolver}" for resolver, reason in sorted(outcomes.items()))
            lines.append(f"DNS: resolvers disagree on {len(disagreements)}/{len(self.dns_outcomes)} domains "
                         f"(e.g. {domain}: {example})")
        if self.racing:
            lines.append(f"DNS injection: {len(self.racing)} domains got a second, different answer "
                         "racing the first (on-path injection)")
        if self.injection.failed:
            lines.append(f"DNS injection: {self.injection.ratio()} domains were answered by an address "
                         "that runs no DNS server (something on the path answers DNS)")
        if self.endpoints.failed:
            lines.append(f"IP: {self.endpoints.ratio()} data-center endpoints failed "
                         f"({counted(self.endpoints.reasons())})")
        for cidr, tally in sorted(self.ranges.items()):
            if tally.failed:
                lines.append(f"IP: {tally.ratio()} probed addresses of {cidr} failed ({counted(tally.reasons())})")
        if self.web_connect_failed:
            lines.append(f"IP: {len(self.web_connect_failed)}/{len(self.web.tested)} web probes could not connect "
                         f"({counted(Counter(self.web_connect_failed.values()))}): "
                         f"{', '.join(sorted(self.web_connect_failed)[:MAX_EXAMPLES])}")
        if self.handshake_failed:
            domains = sorted(self.handshake_failed)
            https_tested = sum(1 for key in self.web.tested if key.startswith("https "))
            lines.append(f"SNI: {len(domains)}/{https_tested} domains failed during the TLS handshake while TCP to the same "
                         f"address connects ({counted(Counter(self.handshake_failed.values()))}): "
                         f"{', '.join(domains[:MAX_EXAMPLES])}")
        if self.bad_certificates:
            domain, message = sorted(self.bad_certificates.items())[0]
            lines.append(f"TLS interception: {len(self.bad_certificates)} domains presented a certificate that "
                         f"does not verify (e.g. {domain}: {message})")
        if self.blockpages:
            lines.append(f"HTTP: {len(self.blockpages)} web probes were answered with a blockpage: "
                         f"{', '.join(sorted(self.blockpages)[:MAX_EXAMPLES])}")
        if self.http_failed:
            lines.append(f"HTTP: {len(self.http_failed)} web probes failed after connecting "
                         f"({counted(Counter(self.http_failed.values()))}): "
                         f"{', '.join(sorted(self.http_failed)[:MAX_EXAMPLES])}")
        mtproto_line = self._mtproto_line()
        if mtproto_line:
            lines.append(mtproto_line)
        return lines

    def findings(self) -> list[str]:
        lines = []
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
        techniques = self.technique_lines()
        lines.extend(techniques)
        if not lines and not self.reachable_seen:
            lines.append("Nothing concluded: no probe got a genuine answer, and none showed a block.")
        if not lines:
            lines.append("No blocking observed: every probe that could conclude got through.")
        return lines

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
        findings = self.findings()
        if self.vantage in ("offline", "undecided"):
            reason = f"summary.{self.vantage}"
        elif self.technique_lines():
            reason = "summary.blocking_observed"
        elif not self.reachable_seen:
            reason = "summary.nothing_concluded"
        else:
            reason = None
        evidence = {"findings": findings, "vantage": self.vantage,
                    "resolver_disagreements": dict(self.resolver_disagreements()[:50]),
                    "inconclusive": dict(self.inconclusive)}
        return Result("summary", self.service, None, reason, 0.0, evidence)
