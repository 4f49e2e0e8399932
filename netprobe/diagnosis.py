"""How the block is built: one summary over a run's results, per technique.

It states, with counts, what each technique showed.  Partial blocking is
reported as partial: "3/5", never rounded to "reachable" or "blocked".

In four steps, each its own piece: `Tallies` (netprobe/tallies.py) folds the
judged records as they stream past;
`techniques` reads them as data (what `netprobe report` reads); `findings`
says them in sentences, with the interception headline and what the controls
said; `summary_reason` names the summary.  The run's context (vantage point,
control board, offline families, the controls measured again) comes in as a
`RunContext`, and `summarize` makes the summary record from the two.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from netprobe.classify import REACHABLE
from netprobe.probes.kinds import board_stage_of
from netprobe.records import Result
from netprobe.tallies import FAILED, INTERCEPTION_REASONS, NOT_JUDGED_REASONS, Tallies
from netprobe.vantage import NO_OPEN_ACCESS, OFFLINE, UNDECIDED, UNKNOWN, ControlBoard

MAX_EXAMPLES = 3

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


# --- the run's context ---------------------------------------------------------------

@dataclass(frozen=True)
class RunContext:
    """What the run knew besides its service records: the summary is stated against it.

    Handed in by whoever ran the probes (the engine, an Atlas run, an OONI import) once
    the controls decided, so that no part of the summary reads state set from outside.
    `scoped_no_control`: the caller says itself which failures had no control (Atlas,
    per probe and run), so the per-stage "no control" lines stay out of the findings.
    """

    vantage: str = UNKNOWN                              # online | offline | no_open_access | undecided | unknown
    board: ControlBoard | None = None                   # what the controls showed (netprobe/vantage.py)
    offline_families: frozenset[int] = frozenset()      # address families none of whose controls got through
    second_board: ControlBoard | None = None            # the controls measured again at the end of a long run
    scoped_no_control: bool = False

    def changed(self) -> list[str]:
        """Control states ("tcp 4 443") that changed between the two measurements of the controls."""
        if self.board is None or self.second_board is None:
            return []
        before, after = self.board.states(), self.second_board.states()
        return sorted(key for key in before if key in after and before[key] != after[key])

    def changed_stages(self) -> set[str]:
        """Stages whose controls, measured again at the end of a long run, changed state."""
        return {key.split()[0] for key in self.changed()}

    def ports_with_signals(self, ports: list[tuple]) -> str:
        """'443 (IPv4: why), 80 (IPv4: why)' for ports the board found intercepted."""
        by_why: dict[str, list[str]] = defaultdict(list)
        for family, port in ports:
            _, signals = self.board.port_state(family, port)
            by_why["; ".join(_SIGNALS[key] for key in _SIGNALS if key in signals)].append(f"{port} (IPv{family})")
        return "; and on port ".join(f"{', '.join(where)}: {why}" for why, where in by_why.items())


# --- the techniques ----------------------------------------------------------------------

@dataclass(frozen=True)
class Technique:
    """One technique observed, as data: what `netprobe report` reads (kind, stage, how many
    targets failed of how many, the reasons counted, a few targets), not the sentence."""

    kind: str
    stage: str
    finding: str  # the sentence said in the findings
    failed: int
    tested: int | None
    reasons: dict
    targets: list

    def evidence(self) -> dict:
        """The summary's evidence.techniques[] entry (its keys in this order are the contract)."""
        return {"kind": self.kind, "stage": self.stage, "failed": self.failed, "tested": self.tested,
                "reasons": self.reasons, "targets": self.targets}


def _technique(kind: str, stage: str, finding: str, failed: int, tested: int | None, reasons: Counter | dict,
               targets=()) -> Technique:
    return Technique(kind, stage, finding, failed, tested, dict(reasons), sorted(targets)[:MAX_EXAMPLES])


def techniques(tallies: Tallies, board: ControlBoard | None) -> list[Technique]:
    """Each technique observed, in the order the findings say them; empty when nothing failed."""
    return [*_dns_techniques(tallies), *_ip_techniques(tallies), *_web_techniques(tallies),
            *_service_interception(tallies, board), *_mtproto_technique(tallies)]


def _dns_techniques(t: Tallies) -> list[Technique]:
    """Failures per resolver, web probes that found no genuine address, resolvers that disagree,
    answers that race the first or come from where no DNS server runs."""
    found = []
    for resolver, tally in sorted(t.dns_by_resolver.items()):
        if tally.failed:
            line = f"DNS: {tally.ratio()} domains failed at {resolver} ({counted(tally.reasons())})"
            if t.bogus_addresses:
                shown = ", ".join(a for a, _ in t.bogus_addresses.most_common(MAX_EXAMPLES))
                line += f"; bogus addresses {shown}"
            found.append(_technique("dns", "dns", line, len(tally.failed), len(tally.tested), tally.reasons(),
                                    tally.failed))
    if t.web_lookup_failed and not t.dns_by_resolver:
        found.append(_technique("dns", "dns", f"DNS: {len(t.web_lookup_failed)} web probes found no genuine address "
                                f"({counted(Counter(t.web_lookup_failed.values()))})", len(t.web_lookup_failed), None,
                                Counter(t.web_lookup_failed.values()), t.web_lookup_failed))
    disagreements = t.resolver_disagreements()
    if disagreements:
        domain, outcomes = disagreements[0]
        example = " vs ".join(f"{phrase(reason)} at {resolver}" for resolver, reason in sorted(outcomes.items()))
        found.append(_technique("dns", "dns", f"DNS: resolvers disagree on {len(disagreements)}/{len(t.dns_outcomes)} "
                                f"domains (e.g. {domain}: {example})", len(disagreements), len(t.dns_outcomes), {},
                                [d for d, _ in disagreements]))
    if t.racing:
        found.append(_technique("dns_injection", "dns", f"DNS injection: {len(t.racing)} domains got a second, "
                                "different answer racing the first (on-path injection)", len(t.racing), None, {},
                                t.racing))
    if t.injection.failed:
        found.append(_technique("dns_injection", "dns", f"DNS injection: {t.injection.ratio()} domains were answered "
                                "by an address that runs no DNS server (something on the path answers DNS)",
                                len(t.injection.failed), len(t.injection.tested), t.injection.reasons(),
                                t.injection.failed))
    return found


def _ip_techniques(t: Tallies) -> list[Technique]:
    """Endpoints, ranges and web probes whose TCP connect failed."""
    found = []
    if t.endpoints.failed:
        found.append(_technique("ip", "tcp", f"IP: {t.endpoints.ratio()} data-center endpoints failed "
                                f"({counted(t.endpoints.reasons())})", len(t.endpoints.failed),
                                len(t.endpoints.tested), t.endpoints.reasons(), t.endpoints.failed))
    for cidr, tally in sorted(t.ranges.items()):
        if tally.failed:
            found.append(_technique("ip", "tcp", f"IP: {tally.ratio()} probed addresses of {cidr} failed "
                                    f"({counted(tally.reasons())})", tally.failed, tally.tested, tally.reasons(),
                                    [cidr]))
    if t.web_connect_failed:
        reasons = Counter(t.web_connect_failed.values())
        found.append(_technique("ip", "tcp", f"IP: {len(t.web_connect_failed)}/{len(t.web.tested)} web probes could "
                                f"not connect ({counted(reasons)}): "
                                f"{', '.join(sorted(t.web_connect_failed)[:MAX_EXAMPLES])}",
                                len(t.web_connect_failed), len(t.web.tested), reasons, t.web_connect_failed))
    return found


def _web_techniques(t: Tallies) -> list[Technique]:
    """Web probes that connected and then failed: in the TLS handshake (SNI), on the
    certificate, with a blockpage, or otherwise in HTTP."""
    found = []
    if t.handshake_failed:
        domains = sorted(t.handshake_failed)
        https_tested = sum(1 for key in t.web.tested if key.startswith("https "))
        reasons = Counter(t.handshake_failed.values())
        found.append(_technique("sni", "tls", f"SNI: {len(domains)}/{https_tested} domains failed during the TLS "
                                f"handshake while TCP to the same address connects ({counted(reasons)}): "
                                f"{', '.join(domains[:MAX_EXAMPLES])}", len(domains), https_tested, reasons, domains))
    if t.bad_certificates:
        domain, message = sorted(t.bad_certificates.items())[0]
        found.append(_technique("tls_interception", "tls", f"TLS interception: {len(t.bad_certificates)} domains "
                                f"presented a certificate that does not verify (e.g. {domain}: {message})",
                                len(t.bad_certificates), None, {"tls.bad_certificate": len(t.bad_certificates)},
                                t.bad_certificates))
    if t.blockpages:
        found.append(_technique("http", "http", f"HTTP: {len(t.blockpages)} web probes were answered with a "
                                f"blockpage: {', '.join(sorted(t.blockpages)[:MAX_EXAMPLES])}", len(t.blockpages),
                                None, Counter(t.blockpages.values()), t.blockpages))
    if t.http_failed:
        reasons = Counter(t.http_failed.values())
        found.append(_technique("http", "http", f"HTTP: {len(t.http_failed)} web probes failed after connecting "
                                f"({counted(reasons)}): {', '.join(sorted(t.http_failed)[:MAX_EXAMPLES])}",
                                len(t.http_failed), None, reasons, t.http_failed))
    return found


def _service_interception(t: Tallies, board: ControlBoard | None) -> list[Technique]:
    """Ports where the path answers for the service's addresses alone: the board says where."""
    if board is None or not board.service_intercepted_ports():
        return []
    ports = board.service_intercepted_ports()
    targets = t.interception.get("tcp.service_intercepted", set())
    where = RunContext(board=board).ports_with_signals(ports)
    return [_technique("service_interception", "tcp", f"Interception of the service: on port {where}, while control "
                       "names got through that port genuinely and connections that must fail were refused: the path "
                       f"answers for the service's addresses alone ({len(targets)} completed connections not taken "
                       "as reachable)", len(ports), None, {"tcp.service_intercepted": len(targets)},
                       [f"{p} (IPv{f})" for f, p in ports])]


def _mtproto_technique(t: Tallies) -> list[Technique]:
    """Per transport, failed or reachable; one transport through while another fails on the same
    endpoint is protocol fingerprinting."""
    if not any(tally.failed for tally in t.mtproto.values()):
        return []
    parts = []
    for transport, tally in sorted(t.mtproto.items()):
        if tally.failed:
            parts.append(f"{transport} {tally.ratio()} failed ({counted(tally.reasons())})")
        else:
            parts.append(f"{transport} reachable")
    line = "MTProto: " + "; ".join(parts)
    fingerprinted = [target for target, verdicts in t.mtproto_verdicts.items()
                     if REACHABLE in verdicts.values() and any(v in FAILED for v in verdicts.values())]
    if fingerprinted:
        line += (f" — on {len(fingerprinted)} endpoints one transport gets through while another fails: "
                 "protocol fingerprinting")
    failed = {target for tally in t.mtproto.values() for target in tally.failed}
    reasons = Counter()
    for tally in t.mtproto.values():
        reasons.update(tally.reasons())
    return [_technique("mtproto", "mtproto", line, len(failed), len(t.mtproto_verdicts), reasons, failed)]


# --- the findings ----------------------------------------------------------------------

def intercepted_line(tallies: Tallies, board: ControlBoard | None) -> str | None:
    """The verdict block's first line when a stage is intercepted for every name or address and
    none of the service's answers was genuine (else the "Interception:" lines say where)."""
    stages = sorted({STAGE_NAMES.get(why.partition(".")[0], why) for why in INTERCEPTED_FOR_ALL
                     if tallies.interception.get(why)})
    if board is not None and set(board.intercepted_ports()) - tallies.genuine_ports:
        stages = sorted({*stages, "TCP"})
    if not stages:
        return None
    return (f"This vantage point is intercepted ({', '.join(stages)}): at those stages something on this "
            "network answers in the service's place, not only for the service, so what it answers there says "
            "nothing about whether the service itself is blocked, and those results are marked "
            "inconclusive. To measure the service, run from another network (another ISP, mobile data, a "
            "VPS) or from RIPE Atlas probes (`netprobe atlas submit`).")


def findings(tallies: Tallies, context: RunContext, found: list[Technique], reason: str | None) -> list[str]:
    """The summary's sentences, in the order a reader needs them: what makes every verdict here
    weak (interception, an offline vantage point or family), the techniques, the conclusion
    that follows from `reason`, then what the controls said."""
    lines = []
    intercepted = intercepted_line(tallies, context.board)
    if intercepted:
        lines.append(intercepted)
    if context.vantage == OFFLINE:
        lines.append("This vantage point looks offline: no control endpoint was reachable, so no "
                     "failure is evidence of blocking (verdicts marked inconclusive).")
    if context.vantage == UNDECIDED:
        lines.append("The run ended before any control endpoint answered: whether this vantage point is "
                     "online is unknown, so no failure is evidence of blocking (verdicts marked inconclusive).")
    for family in sorted(context.offline_families):
        lines.append(f"IPv{family} looks offline from this vantage point: no IPv{family} control endpoint "
                     f"was reachable, so IPv{family} failures are no evidence of blocking "
                     "(marked inconclusive).")
    lines.extend(t.finding for t in found)
    if reason is None:
        lines.append("No blocking observed: every probe that could conclude got through.")
    elif reason == "summary.network_changed":
        lines.append("Not judged: every technique above was seen at a stage whose controls changed during the "
                     "run: the network changed under it, so none is backed by its controls.")
    elif reason == "summary.nothing_concluded":
        lines.append("Nothing concluded: no probe got a genuine answer, and none showed a block.")
    lines.extend(control_lines(tallies, context, reason))
    return lines


def control_lines(tallies: Tallies, context: RunContext, reason: str | None) -> list[str]:
    """What the controls said that a reader must know: interception, stages not judged,
    stages without a control of their own, a network that changed during the run."""
    lines = _interception_lines(tallies, context)
    if context.vantage in (NO_OPEN_ACCESS, OFFLINE, UNDECIDED):
        return lines
    for why, kinds in sorted(tallies.not_judged.items()):
        stage = NOT_JUDGED_REASONS[why]
        lines.append(f"Not judged: {sum(kinds.values())} {stage} failures ({', '.join(sorted(kinds))}) — the "
                     f"control names failed there too ({why}), so they say nothing about the service.")
    lines.extend(_uncontrolled_lines(tallies, context))
    board = context.board
    if board is not None and board.http_weak_only():
        lines.append("Controls: plain HTTP passed only on control names whose genuine answer the target file does "
                     "not state (weak controls: any HTTP answer, an interceptor's included, passes them).")
    if board is not None and reason is None:
        offline = {str(f) for f in context.offline_families}
        failed = [describe_stage(key) for key, state in board.states().items()
                  if state == "failed" and key.split()[0] in tallies.reached_stages
                  and key.split()[0] not in tallies.judged_stages
                  and not (key.startswith("tcp ") and key.split()[1] in offline)]
        if failed:
            lines.append(f"Controls: every control of {', '.join(sorted(failed))} failed while the service's "
                         "own probes got through: the control hosts, not the service, are unreachable there.")
    changed = context.changed()
    if changed:
        before, after = context.board.states(), context.second_board.states()
        lines.append(f"Controls: the network changed during the run: "
                     f"{'; '.join(f'{k} {before[k]} -> {after[k]}' for k in changed[:MAX_EXAMPLES])}"
                     " — verdicts of those stages may mix two networks.")
    return lines


def _interception_lines(tallies: Tallies, context: RunContext) -> list[str]:
    """No open access, ports the board found intercepted, stages intercepted for every name."""
    lines = []
    if context.vantage == NO_OPEN_ACCESS:
        lines.append("No open access: no control got through at any stage while something on the path "
                     "answers: this network gives no open access to the Internet (log in to a captive portal "
                     "first, or there is no way out); no verdict here is evidence of blocking.")
    if context.board is not None and context.board.intercepted_ports():
        lines.append(f"Interception: on port {context.ports_with_signals(context.board.intercepted_ports())}: "
                     "something on the path answers for every address there, so completed connections and the "
                     "answers on them prove nothing.")
    for why in ("tls.untrusted_for_all", "tls.intercepted_trusted", "dns.intercepted_all", "dns.same_for_all",
                "dns.resolver_untrusted"):
        if tallies.interception.get(why):
            lines.append(f"Interception: {INTERCEPTION_REASONS[why]}; {len(tallies.interception[why])} targets "
                         "not judged.")
    return lines


def _uncontrolled_lines(tallies: Tallies, context: RunContext) -> list[str]:
    """Stages measured with no control of their own, and failures judged `*.no_control`
    (unless the caller says those itself, with its own scope)."""
    if context.scoped_no_control:
        return []
    lines = []
    missing = tallies.stages_without_control(context.board)
    if missing:
        lines.append(f"Controls: no control for {', '.join(STAGE_NAMES.get(s, s) for s in missing)} (the target "
                     "file names no control_domains or controls for it): failures there are inconclusive.")
    lines.extend(f"Not judged: {n} {STAGE_NAMES.get(stage, stage)} failures had no control of their own stage "
                 "(the target file names none, or --no-default-controls): they are inconclusive, with what was "
                 "observed kept in their evidence." for stage, n in sorted(tallies.uncontrolled.items()))
    return lines


# --- the summary -----------------------------------------------------------------------

def summary_reason(tallies: Tallies, context: RunContext, found: list[Technique]) -> str | None:
    """The summary's reason: blocking only when a failure was backed by its stage's controls
    (a technique seen only at stages whose controls changed during the run is not)."""
    if found:
        changed = context.changed_stages()
        if any(board_stage_of(t.stage) not in changed for t in found):
            return "summary.blocking_observed"
        return "summary.network_changed"
    if context.vantage in (OFFLINE, UNDECIDED, NO_OPEN_ACCESS):
        return f"summary.{context.vantage}"
    if intercepted_line(tallies, context.board):
        return "summary.intercepted"
    if not tallies.reachable_seen:
        return "summary.nothing_concluded"
    return None


def summarize(service: str, tallies: Tallies, context: RunContext) -> Result:
    """The summary record: its reason follows from the findings, never contradicts them."""
    found = techniques(tallies, context.board)
    reason = summary_reason(tallies, context, found)
    evidence = {"findings": findings(tallies, context, found, reason), "vantage": context.vantage,
                "techniques": [t.evidence() for t in found],
                "resolver_disagreements": dict(tallies.resolver_disagreements()[:50]),
                "inconclusive": dict(tallies.inconclusive)}
    if context.board is not None:
        evidence["controls"] = context.board.states()
        evidence["intercepted_ports"] = [port for _, port in context.board.intercepted_ports()]
        evidence["stages_without_control"] = ([] if context.scoped_no_control
                                              else tallies.stages_without_control(context.board))
    if tallies.not_judged:
        evidence["not_judged"] = {why: dict(kinds) for why, kinds in tallies.not_judged.items()}
    return Result("summary", service, None, reason, 0.0, evidence)


class Diagnosis:
    """A run's Tallies and the context the engine sets on it as the controls come in.

    Compatibility for netprobe/engine.py, which assigns `board`, `offline_families`,
    `vantage` and `second_board` as it goes; new callers fold into `Tallies` and call
    `summarize` with a `RunContext`."""

    def __init__(self, service: str):
        self.service = service
        self.tallies = Tallies()
        self.vantage = UNKNOWN
        self.board: ControlBoard | None = None
        self.offline_families: set[int] = set()
        self.second_board: ControlBoard | None = None

    def add(self, result: Result) -> None:
        self.tallies.add(result)

    def context(self) -> RunContext:
        return RunContext(self.vantage, self.board, frozenset(self.offline_families), self.second_board)

    def result(self) -> Result:
        return summarize(self.service, self.tallies, self.context())
