"""Run a scenario (apply the censor's rules, run netprobe, run the peers) and judge it.

Shared by tests/lab/test_lab.py and tests/lab/report.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

import peers as P
import scenarios as S
import topology as T

IGNORED_PROBES = ("summary",)


@dataclass
class ScenarioResult:
    scenario: S.Scenario
    netprobe: T.NetprobeRun
    observations: list[P.Observation]
    seconds: float
    rules: str = ""
    _records: list[dict] | None = field(default=None, repr=False)

    @property
    def records(self) -> list[dict]:
        if self._records is None:
            self._records = [r for r in self.netprobe.records if r.get("probe") not in IGNORED_PROBES]
        return self._records

    def matching(self, probe: str, target: str, family: int | None = None, stage: str | None = None) -> list[dict]:
        return [r for r in self.records
                if r.get("probe") == probe and r.get("target") == target
                and (family is None or record_family(r) == family)
                and (stage is None or record_stage(r) == stage)]

    def matching_probe(self, probe: str) -> list[dict]:
        return [r for r in self.records if r.get("probe") == probe]

    def observations_of(self, peer: str) -> list[P.Observation]:
        return [o for o in self.observations if o.peer == peer]


def record_family(record: dict) -> int | None:
    """Address family of the address a record was measured at (address is IP, IP:PORT or [IPv6]:PORT)."""
    address = record.get("address")
    if not address:
        return None
    if address.startswith("["):
        return 6
    return 6 if address.count(":") > 1 else 4


def record_stage(record: dict) -> str | None:
    """The stage a control record measured (evidence.stage: dns, dns_injection, tcp, tls, http,
    interception), or None."""
    evidence = record.get("evidence")
    stage = evidence.get("stage") if isinstance(evidence, dict) else None
    return stage if stage is not None else record.get("stage")


def run_scenario(lab: T.Lab, scenario: S.Scenario) -> ScenarioResult:
    """Apply the scenario (rules and effects), run netprobe and the peers, undo the effects."""
    started = time.monotonic()
    targets = T.TARGET_SETS[scenario.targets]
    rules = "\n".join([str(r) for r in scenario.rules] + [f"effect: {e}" for e in scenario.effects])
    try:
        lab.apply(scenario)
        run = lab.run_netprobe(probe_timeout=scenario.timeout, targets=targets)
        observations = P.observe(lab, scenario, targets, list(T.CONTROLS))
    finally:
        lab.clear_effects()
    return ScenarioResult(scenario, run, observations, time.monotonic() - started, rules)


def describe(record: dict | None) -> str:
    if record is None:
        return "-"
    reason = record.get("reason")
    return record.get("verdict", "?") + (f" ({reason})" if reason else "")


def check_expectation(result: ScenarioResult, expect: S.Expect) -> tuple[str, list[str]]:
    """('ok' | 'missing' | 'mismatch', problems) for one expectation."""
    found = result.matching(expect.probe, expect.target, expect.family, expect.stage)
    if not found:
        return "missing", [f"netprobe emitted no {expect.probe!r} record for {expect.target!r}"
                           + (f" over IPv{expect.family}" if expect.family else "")
                           + (f" at stage {expect.stage!r}" if expect.stage else "")]
    problems = []
    for rec in found:
        if rec.get("verdict") != expect.verdict or (expect.reason is not S.ANY and rec.get("reason") != expect.reason):
            want = expect.verdict + ("" if expect.reason is S.ANY else f" ({expect.reason})")
            stage = f" (stage {expect.stage})" if expect.stage else ""
            problems.append(f"{expect.probe} {expect.target}{stage} at {rec.get('address')}: expected {want}, "
                            f"netprobe said {describe(rec)}; evidence {rec.get('evidence')}")
    return ("mismatch" if problems else "ok"), problems


def expectation_for(scenario: S.Scenario, key: tuple) -> S.Expect | None:
    """The expectation for a peer's (probe, target, family), falling back to the any-family one (peers
    observe no control stages: only the any-stage expectations apply)."""
    table = {e.key: e for e in scenario.expect}
    probe, target, family = key
    return (table.get((probe, target, family, None)) or table.get((probe, target, None, None))
            or (table.get((probe, target, None, "tcp")) if probe == "control" else None))


def peer_vs_expected(result: ScenarioResult, peer: str) -> tuple[int, list[str]]:
    """Does the peer see what the scenario is supposed to do?  (Validates the lab itself.)"""
    compared, problems = 0, []
    for obs in result.observations_of(peer):
        expect = expectation_for(result.scenario, obs.key)
        if expect is None:
            continue
        want = expect.peer or P.reason_class(expect.probe, expect.observed)
        if want is None:
            continue
        compared += 1
        if obs.klass != want:
            problems.append(f"{peer} on {obs.target}{_fam(obs)}: expected {want} "
                            f"(for {expect.observed or 'reachable'}), saw {obs.raw}  [{obs.command}]")
    return compared, problems


def netprobe_vs_peer(result: ScenarioResult, peer: str) -> tuple[int, list[str]]:
    """Does netprobe agree with the peer wherever the peer can observe the case?"""
    compared, problems = 0, []
    for obs in result.observations_of(peer):
        records = result.matching(obs.probe, obs.target, obs.family)
        if not records and obs.family and result.matching(obs.probe, obs.target):
            continue  # netprobe measured this name over the other family only: nothing to compare
        if obs.probe == "https" and records and all(r.get("address") is None for r in records):
            continue  # DNS lied and no address is pinned: netprobe contacted none, curl pinned a genuine one
        if not records:
            compared += 1
            problems.append(f"{peer} observed {obs.target}{_fam(obs)} ({obs.raw}) but netprobe emitted "
                            f"no {obs.probe!r} record for it")
            continue
        for rec in records:
            mine = P.reason_class(obs.probe, rec.get("reason"))
            compared += 1
            if mine is None and rec.get("verdict") == "inconclusive":
                continue  # netprobe declined to judge (controls failed, interception): no claim to contradict
            if not P.agrees(mine, obs.klass):
                problems.append(f"{obs.target}{_fam(obs)}: netprobe {describe(rec)} "
                                f"(= {mine or 'nothing a peer can see'}) but {peer} saw {obs.raw}")
    return compared, problems


def _fam(obs: P.Observation) -> str:
    return f" over IPv{obs.family}" if obs.family else ""


def record_problems(result: ScenarioResult) -> list[str]:
    """Contract checks on the run itself: exit code, JSON lines, fields, schema."""
    run = result.netprobe
    problems = []
    if run.returncode != 0:
        problems.append(f"netprobe exited {run.returncode}; stderr:\n{run.stderr[-2000:]}")
    bad = run.invalid_lines()
    if bad:
        problems.append(f"{len(bad)} stdout lines are not JSON objects, e.g. {bad[0][:200]!r}")
    fields = ("schema", "run_id", "measured_at", "probe", "target", "address", "verdict", "reason",
              "duration_ms", "evidence", "label", "netprobe_version")
    for rec in run.records:
        missing = [f for f in fields if f not in rec]
        if missing and rec.get("probe") not in IGNORED_PROBES:
            problems.append(f"record lacks {missing}: {rec}")
            break
        if rec.get("schema") != "netprobe/1":
            problems.append(f"schema is {rec.get('schema')!r}, not 'netprobe/1'")
            break
        if rec.get("probe") not in IGNORED_PROBES and rec.get("verdict") not in (
                "reachable", "blocked", "reset", "inconclusive"):
            problems.append(f"unknown verdict {rec.get('verdict')!r}")
            break
        if rec.get("verdict") == "reachable" and rec.get("reason") is not None:
            problems.append(f"reachable with a reason: {rec}")
            break
    if len({r.get("run_id") for r in run.records}) > 1:
        problems.append("records of one run carry different run_ids")
    if not [r for r in result.records]:
        problems.append("netprobe emitted no records")
    return problems


def inconclusive_problems(result: ScenarioResult) -> list[str]:
    """Every record but the controls' is inconclusive.  Control records are what the others are
    weighed against (a negative control that fails is reachable, "no interception", even offline);
    a scenario asserts them in its expectations."""
    return [f"{r.get('probe')} {r.get('target')}: {describe(r)}"
            for r in result.records if r.get("probe") != "control" and r.get("verdict") != "inconclusive"]


# --- the run's summary record ----------------------------------------------------------

# Every finding sentence starts with one of these (netprobe/diagnosis.py); longest first, so that a
# prefix that begins another ("DNS:" / "DNS injection:") never takes the longer one's sentences.
FINDING_PREFIXES = tuple(sorted((
    "DNS injection:", "DNS:", "IP:", "SNI:", "TLS interception:", "HTTP:", "MTProto:",
    "This vantage point looks offline", "No blocking observed",
    "This vantage point is intercepted",   # a stage intercepted for every name or address: the verdict block's first line
    "No open access:",   # no control got through at any stage, but something on the path answers
    "Not judged:",       # a stage whose Telegram failures could not be judged: its controls failed
    "Interception:",     # network-wide: a port accepting everything, TLS or DNS intercepted for every name
    "Interception of the service:",   # the path answers for the service's addresses alone (a block)
    "Controls:",         # control states worth reporting (all failed while Telegram got through, ...)
    "IPv4 looks offline", "IPv6 looks offline",   # no control of that family got through
), key=len, reverse=True))

# The summary's reason goes with one of these findings; any other summary (techniques named) has a reason
# other than these (summary.blocking_observed).
SUMMARY_REASONS = {"This vantage point looks offline": "summary.offline",
                   "No open access:": "summary.no_open_access",
                   "This vantage point is intercepted": "summary.intercepted",
                   "No blocking observed": None}
# Techniques of blocking: when one is named, the summary's reason is blocking (whatever else it says).
TECHNIQUE_PREFIXES = ("DNS injection:", "DNS:", "IP:", "SNI:", "TLS interception:", "HTTP:", "MTProto:")


def finding_prefix(sentence: str) -> str | None:
    return next((p for p in FINDING_PREFIXES if sentence.startswith(p)), None)


def summary_record(result: ScenarioResult) -> dict | None:
    found = [r for r in result.netprobe.records if r.get("probe") == "summary"]
    return found[0] if len(found) == 1 else None


def findings(result: ScenarioResult) -> list[str]:
    record = summary_record(result)
    return list((record or {}).get("evidence", {}).get("findings", []))


def summary_problems(result: ScenarioResult) -> list[str]:
    """The summary names exactly the techniques the scenario applies (finding prefixes), says the
    sentences the scenario expects, and its reason agrees with its findings."""
    scenario = result.scenario
    count = sum(1 for r in result.netprobe.records if r.get("probe") == "summary")
    if count != 1:
        return [f"expected one summary record, netprobe emitted {count}"]
    record = summary_record(result)
    sentences = findings(result)
    problems = []
    got: dict[str, list[str]] = {}
    for sentence in sentences:
        prefix = finding_prefix(sentence)
        if prefix is None:
            problems.append(f"finding with no known technique prefix: {sentence!r}")
        else:
            got.setdefault(prefix, []).append(sentence)
    for prefix in sorted(set(scenario.findings) - set(got)):
        problems.append(f"missing a {prefix!r} finding (the scenario applies it)")
    for prefix in sorted(set(got) - set(scenario.findings)):
        problems.append(f"unexpected {prefix!r} finding: {got[prefix]}")
    for phrase in scenario.finding_phrases:
        if not any(phrase in s for s in sentences):
            problems.append(f"no finding says {phrase!r}")
    reason = record.get("reason")
    # Offline, then no open access, then intercepted, then no blocking: the first such finding decides the reason.
    decisive = next((p for p in SUMMARY_REASONS if p in got), None)
    if decisive == "This vantage point is intercepted" and any(p in got for p in TECHNIQUE_PREFIXES):
        decisive = None   # interception named first, and blocking elsewhere, backed by its controls
    if decisive is not None and reason != SUMMARY_REASONS[decisive]:
        problems.append(f"summary reason {reason!r} but findings say {decisive!r} "
                        f"(reason {SUMMARY_REASONS[decisive]!r})")
    elif decisive is None and reason in SUMMARY_REASONS.values():
        wanted = next(p for p, r in SUMMARY_REASONS.items() if r == reason)
        problems.append(f"summary reason {reason!r} but no finding says {wanted!r}")
    if problems:
        problems.append(f"findings were: {sentences}")
    return problems


def duration_problems(result: ScenarioResult, slack: float = 0.5) -> list[str]:
    """Every probe ended within its deadline (+ slack), whatever the server did."""
    limit_ms = (result.scenario.timeout + slack) * 1000
    return [f"{r.get('probe')} {r.get('target')} took {r.get('duration_ms'):.0f} ms "
            f"(> --timeout {result.scenario.timeout:g} s + {slack:g} s); {describe(r)}"
            for r in result.records if float(r.get("duration_ms") or 0) > limit_ms]


# --- interceptors: nothing they answer is Telegram's, nothing they do is a block --------------------

INTERCEPTABLE_PROBES = ("tcp", "https", "http", "mtproto", "mtproto_abridged", "mtproto_obfuscated2")
INTERCEPTION_WORDS = ("Interception", "intercepted")


def record_endpoint(record: dict) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int] | None:
    """(ip, port) of the address a record was measured at, or None (no address was contacted)."""
    address = record.get("address")
    if not address:
        return None
    if address.startswith("["):
        host, _, port = address[1:].partition("]:")
    else:
        host, _, port = address.rpartition(":")
    try:
        return ipaddress.ip_address(host), int(port)
    except ValueError:
        return None


def interception_problems(result: ScenarioResult) -> list[str]:
    """Scenario.intercepted: no tcp / https / http / mtproto* record measured where the path answers
    is reachable.  Scenario.interception_only: moreover no service record is blocked or reset, the
    summary's reason is not summary.blocking_observed and its first finding names the interception."""
    scenario = result.scenario
    spots = [(ipaddress.ip_network(cidr), port) for cidr, port in scenario.intercepted]
    problems = []
    for rec in result.records:
        where = record_endpoint(rec)
        if rec.get("probe") in INTERCEPTABLE_PROBES and rec.get("verdict") == "reachable" and where is not None \
                and any(where[0].version == net.version and where[0] in net and where[1] == port
                        for net, port in spots):
            problems.append(f"{rec['probe']} {rec.get('target')} at {rec.get('address')}: reachable, but the path "
                            f"answers there; evidence {rec.get('evidence')}")
    if not scenario.interception_only:
        return problems
    for rec in result.records:
        if rec.get("probe") != "control" and rec.get("verdict") in ("blocked", "reset"):
            problems.append(f"{rec['probe']} {rec.get('target')} at {rec.get('address')}: {describe(rec)} on an "
                            "intercepted path (no control went through it and differed)")
    record = summary_record(result)
    if record is None:
        problems.append("no summary record")
        return problems
    if record.get("reason") == "summary.blocking_observed":
        problems.append("summary reason is summary.blocking_observed on a path that is only intercepted")
    sentences = findings(result)
    if not sentences or not any(w in sentences[0] for w in INTERCEPTION_WORDS):
        problems.append(f"the summary's first finding does not name the interception: {sentences[:1]}")
    if problems:
        problems.append(f"findings were: {sentences}")
    return problems
