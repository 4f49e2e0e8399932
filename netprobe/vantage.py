"""Whether an observation says anything about the service: the judgment.

A failure counts against the service only when a non-service control, measured
the same way at the same stage through the same path (resolver, address
family, port) in the same run, got through; a success counts only when it is
the service's (a verified certificate, a resPQ with our nonce, an answer inside
its networks) or when the path does not accept connections that must fail.

Probes observe and classify.py names what they saw (the observed reason).
Here the controls' records are folded into a ControlBoard, and `judged`
weighs each record against it: a failure whose stage's controls failed too, or
a success on a port that accepts everything, gets an inconclusive reason that
names the stage and the cause; the observed reason stays in the evidence.
Everything is a pure function of records, so every judgment is tested by
tables without a network (tests/test_vantage.py).  The engine only schedules:
it feeds every record to a Judgment, which holds them until the controls are
in and judges each one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from netprobe.classify import (BLOCKED, REACHABLE, RESET, failure_of, http_answer_difference, negative_control_reason,
                               verdict_for)
from netprobe.probes.kinds import bare_success, by_silence
from netprobe.records import Result

PASSED, FAILED, NONE = "passed", "failed", "none"
FAILED_VERDICTS = (BLOCKED, RESET)

# Vantage points: what the controls say about the network as a whole.
ONLINE = "online"
OFFLINE = "offline"              # nothing answered any control
NO_OPEN_ACCESS = "no_open_access"  # something answers, but no control got through (portal, walled garden)
UNDECIDED = "undecided"          # the run ended before the controls were in
UNKNOWN = "unknown"              # no controls at all
NOT_ONLINE = (OFFLINE, NO_OPEN_ACCESS, UNDECIDED)

# An HTTP control's answer against the one its genuine server gives (evidence.answer_check).
GENUINE, DIFFERS, NO_ANSWER, WEAK = "genuine", "differs", "no answer", "weak"
CHECKED = (GENUINE, DIFFERS, NO_ANSWER)
# Verified control names needed before one issuer for all of them means an interceptor.
MIN_NAMES_FOR_ONE_ISSUER = 3

# Control stages that check who answers (Plan.path_checks), not whether the way out is open.
PATH_CHECK_STAGES = frozenset({"path", "identity"})
# A data center's answers to our MTProto request that no MTProto server gives.
_NOT_THE_SERVICE = frozenset({"mtproto.bad_response", "mtproto.nonce_mismatch"})

# Failures in which nothing answered: a network that gives only these is offline,
# not intercepted.
_SILENT = frozenset({"timeout", "unreachable", "no_route", "local_firewall", "local_resources", "unknown",
                     "port_unreachable", "overrun", "deadline"})


# --- physical plausibility -------------------------------------------------------------
# A TCP handshake takes at least one round trip, and no signal travels faster than light
# in vacuum (299,792.458 km/s, exact by the SI definition of the metre): a connect to a
# place d km away takes at least 2·d / c.  By the triangle inequality, the connect times
# to two places A and B from anywhere add up to at least 2·dist(A, B) / c.  Connect
# times that add up to less were not measured to both places: something nearer answered.
# The bound is the laws of physics, not a guess about routes (light in fibre is a third
# slower, and routes are longer still), so it can miss a box but never accuse a path.
LIGHT_KM_PER_MS = 299.792458
# Mean Earth radius (IUGG), for great-circle distances on a sphere (error < 0.5 %).
EARTH_RADIUS_KM = 6371.0088


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance between two (latitude, longitude) points in degrees (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def fastest_pair_ms(a: tuple[float, float], b: tuple[float, float]) -> float:
    """The least two connect times, to a and to b, can add up to from anywhere."""
    return 2 * great_circle_km(a, b) / LIGHT_KM_PER_MS


@dataclass(frozen=True)
class Place:
    """A data center's fastest connect on one port, and where it is published to stand."""

    dc: int
    city: str
    at: tuple[float, float]
    connect_ms: float


def faster_than_light(places: Iterable[Place]) -> list[dict[str, Any]]:
    """Every pair of places whose connect times add up to less than light allows."""
    found = []
    places = sorted(places, key=lambda p: p.dc)
    for i, a in enumerate(places):
        for b in places[i + 1:]:
            bound = fastest_pair_ms(a.at, b.at)
            if a.connect_ms + b.connect_ms < bound:
                found.append({"dcs": [a.dc, b.dc], "cities": [a.city, b.city],
                              "connect_ms": [a.connect_ms, b.connect_ms], "light_allows_ms": round(bound, 1)})
    return found


# --- who answers on a port --------------------------------------------------------------
ALL = "all"          # the path answers for every address on this port: nothing on it is evidence
SERVICE = "service"  # something answers for the service's addresses alone, while controls get through


def _answer_bytes(record: Result) -> str | None:
    """What an MTProto exchange got back, as compared across hosts, or None when nothing came:
    an HTTP answer by its status line (its headers may carry a Date that differs from one
    second to the next), any other answer by its first bytes (hex)."""
    first = record.evidence.get("first_bytes")
    if not isinstance(first, dict) or not first.get("length") or not isinstance(first.get("hex"), str):
        return None
    try:
        raw = bytes.fromhex(first["hex"])
    except ValueError:
        return None
    if raw.startswith(b"HTTP/"):
        return raw.split(b"\r\n", 1)[0].decode("ascii", "replace")
    return first["hex"]


def _http_signature(evidence: dict[str, Any]) -> tuple | None:
    """What tells one HTTP answer from another without its body: status, server, length."""
    http = evidence.get("http")
    if not isinstance(http, dict) or http.get("status") is None:
        return None
    headers = http.get("headers") or {}
    body = http.get("body_prefix") or {}
    return (http.get("status"), headers.get("server"), headers.get("content-length", body.get("length")))


def _loopback(address: str | None) -> bool:
    host = (address or "").rpartition(":")[0].strip("[]")
    return host.startswith("127.") or host == "::1"


def address_family(address: str | None) -> int | None:
    """4 or 6 for a record's `IP:PORT` / `[IPv6]:PORT` address; None for none (or a URL)."""
    if not address or "/" in address:
        return None
    return 6 if address.startswith("[") else 4


def address_port(address: str | None) -> int | None:
    if not address or "/" in address:
        return None
    port = address.rpartition(":")[2]
    return int(port) if port.isdigit() else None


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0

    def add(self, ok: bool) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    @property
    def state(self) -> str:
        return PASSED if self.passed else FAILED if self.failed else NONE

    def evidence(self, stage: str, **extra: Any) -> dict[str, Any]:
        return {"stage": stage, "state": self.state, "passed": self.passed, "failed": self.failed, **extra}


_NO_TALLY = Tally()


def _merged(tallies: Iterable[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total.passed += tally.passed
        total.failed += tally.failed
    return total


def _dns_addresses(record: Result) -> frozenset[str]:
    return frozenset(a for q in record.evidence.get("queries", ()) for a in q.get("addresses", ()))


def _canary_answer(record: Result) -> tuple | None:
    """What the address that runs no DNS server answered, or None for silence."""
    if record.reason not in ("dns.injected", "dns.intercepted"):
        return None
    evidence = record.evidence
    return (record.reason, evidence.get("rcode"), frozenset(evidence.get("addresses", ())))


def _answered_alike(ours: tuple, theirs: tuple) -> bool:
    """Two canary answers alike: the same rcode, and the same addresses or the same kind."""
    return ours[1] == theirs[1] and (ours[2] == theirs[2] or ours[0] == theirs[0])


class ControlBoard:
    """What the controls showed, per stage and path; folded from control records."""

    def __init__(self, records: Iterable[Result] = ()) -> None:
        self.tcp: dict[tuple, Tally] = defaultdict(Tally)          # (family, port)
        self.tcp_family: dict[int | None, Tally] = defaultdict(Tally)
        self.negative: dict[tuple, Tally] = defaultdict(Tally)     # (family, port); passed = accepted
        self.dns: dict[str, Tally] = defaultdict(Tally)            # resolver
        self.dns_answers: dict[str, set[str]] = defaultdict(set)   # resolver -> control addresses
        self.aaaa: dict[str, Tally] = defaultdict(Tally)           # resolver -> AAAA answered
        self.canary: dict[str, list[tuple | None]] = defaultdict(list)
        self.tls: dict[int | None, Tally] = defaultdict(Tally)     # family; passed = verified
        self.tls_bad_certificate = 0
        self.tls_issuers: dict[int | None, dict[str, str]] = defaultdict(dict)  # family -> name -> issuer
        self.tls_via: dict[str, Tally] = defaultdict(Tally)        # resolver that gave the address
        # Plain HTTP, per family: controls whose genuine answer the target file states (passed = that
        # answer), and the weak ones that pass on any answer; `http` reads the first where there are any.
        self.http_checked: dict[int | None, Tally] = defaultdict(Tally)
        self.http_weak: dict[int | None, Tally] = defaultdict(Tally)
        self.http_other: dict[int | None, int] = defaultdict(int)  # checked controls answered by someone else
        self.http_answers: dict[int | None, set[tuple]] = defaultdict(set)  # family -> the controls' answers
        # Path checks (Plan.path_checks), per (family, port): what non-MTProto control hosts
        # answered our MTProto request, and how each data center answered it.
        self.path_answers: dict[tuple, set[str]] = defaultdict(set)
        self.path_ends: dict[tuple, list[str | None]] = defaultdict(list)  # how each path check ended
        self.identity: dict[tuple, list[Result]] = defaultdict(list)
        self.answered = False  # something on the path answered a control (not only silence)
        self.count = 0
        self.positive = 0  # controls that should get through (all but the negative ones and path checks)
        self._ports: dict[tuple, tuple[str | None, dict]] | None = None  # port_state's cache
        self._fold = {"tcp": self._tcp, "interception": self._interception, "dns": self._dns,
                      "dns_injection": self._canary, "tls": self._web, "http": self._web,
                      "path": self._path_answer, "identity": self._identity}
        for record in records:
            self.add(record)

    def add(self, record: Result) -> None:
        self.count += 1
        self._ports = None
        stage = record.evidence.get("stage", "tcp")
        self._fold[stage](record)
        if stage in PATH_CHECK_STAGES:
            return  # a path check says who answers, not whether the way out is open
        self.positive += stage != "interception"
        if record.reason and failure_of(record.reason) not in _SILENT and record.reason != "interception.accepted":
            self.answered = True

    # --- folding ----------------------------------------------------------------------

    def _connect(self, address: str | None, ok: bool) -> None:
        family = address_family(address)
        self.tcp[(family, address_port(address))].add(ok)
        self.tcp_family[family].add(ok)

    def _tcp(self, record: Result) -> None:
        self._connect(record.address, record.reason is None)

    def _interception(self, record: Result) -> None:
        accepted = record.reason == "interception.accepted"
        self.negative[(address_family(record.address), address_port(record.address))].add(accepted)
        if accepted:
            self.answered = True

    def _path_answer(self, record: Result) -> None:
        key = (address_family(record.address), address_port(record.address))
        answer = _answer_bytes(record)
        if answer is not None:
            self.path_answers[key].add(answer)
        self.path_ends[key].append(None if answer is not None else record.evidence.get("observed_reason"))

    def path_ended_alike(self, family: int | None, port: int | None, reason: str | None) -> bool:
        """Whether every path check on this port ended as `reason` (a reset, a timeout, the
        stream closed) with nothing answered: the path ends MTProto's request that way, for
        every host, whoever it is addressed to."""
        ends = self.path_ends.get((family, port))
        return bool(ends) and reason is not None and all(end == reason for end in ends)

    def _identity(self, record: Result) -> None:
        self.identity[(address_family(record.address), address_port(record.address))].append(record)

    def _dns(self, record: Result) -> None:
        resolver = record.address or "?"
        self.dns[resolver].add(record.reason is None)
        self.dns_answers[resolver].update(_dns_addresses(record))
        for query in record.evidence.get("queries", ()):
            if query.get("qtype") == "AAAA":
                self.aaaa[resolver].add(not query.get("error_reason"))

    def _canary(self, record: Result) -> None:
        self.canary[record.address or "?"].append(_canary_answer(record))

    def _web(self, record: Result) -> None:
        reason = record.reason or ""
        stage = reason.partition(".")[0]
        family = address_family(record.address)
        evidence = record.evidence
        seen = evidence.get("dns") or {}
        address_is_genuine = evidence.get("address_source") == "pinned" or not seen.get("reason")
        if stage == "dns" or record.address is None:
            return  # no address to try: the DNS controls speak for that
        if stage == "tcp":
            if address_is_genuine:
                self._connect(record.address, False)
            return
        if address_is_genuine:
            self._connect(record.address, True)
        if evidence.get("stage") == "tls":
            verified = stage != "tls"
            self.tls[family].add(verified)
            issuer = ((evidence.get("tls") or {}).get("certificate") or {}).get("issuer")
            if verified and issuer:
                self.tls_issuers[family][record.target] = issuer
            if reason == "tls.bad_certificate":
                self.tls_bad_certificate += 1
            if evidence.get("address_source") == "dns" and seen.get("resolver"):
                self.tls_via[seen["resolver"]].add(verified)
        else:
            check = evidence.get("answer_check")
            if check in CHECKED:
                self.http_checked[family].add(check == GENUINE)
                self.http_other[family] += check == DIFFERS
            else:
                self.http_weak[family].add(not reason)
            signature = _http_signature(evidence)
            if signature is not None:
                self.http_answers[family].add(signature)

    # --- reading ----------------------------------------------------------------------

    @property
    def http(self) -> dict[int | None, Tally]:
        """Plain HTTP's controls per family: the checked ones where a family has any, else the weak."""
        return {family: self.http_checked.get(family) or tally
                for family, tally in {**self.http_weak, **self.http_checked}.items()}

    def http_answered_by_other(self, family: int | None) -> bool:
        """No checked HTTP control of this family (of any, without one of its own) got its genuine
        server's answer, and some got another: something on the path answers plain HTTP."""
        checked = self.http_checked.get(family) or _merged(self.http_checked.values())
        others = self.http_other.get(family) if family in self.http_checked else sum(self.http_other.values())
        return bool(others) and not checked.passed

    def http_weak_only(self) -> bool:
        """Plain HTTP passed, in some family, only on controls that accept any answer (no checked one)."""
        return any(t.passed for family, t in self.http_weak.items() if family not in self.http_checked)

    def intercepted(self, family: int | None, port: int | None) -> bool:
        """Whether the path answers for every address on this port."""
        return self.port_state(family, port)[0] == ALL

    def intercepted_ports(self) -> list[tuple]:
        return self._ports_in(ALL)

    def service_intercepted_ports(self) -> list[tuple]:
        """Ports on which something answers for the service's addresses alone."""
        return self._ports_in(SERVICE)

    @property
    def accepting(self) -> bool:
        """Some port is intercepted, for all or for the service: handshakes need judging."""
        return bool(self._states())

    def _ports_in(self, state: str) -> list[tuple]:
        return sorted((key for key, (found, _) in self._states().items() if found == state),
                      key=lambda key: (key[0] or 0, key[1] or 0))

    def _states(self) -> dict[tuple, tuple[str | None, dict]]:
        if self._ports is None:
            keys = {*self.negative, *self.identity, *self.path_answers}
            states = {key: self._port_state(*key) for key in keys}
            self._ports = {key: state for key, state in states.items() if state[0]}
        return self._ports

    def port_state(self, family: int | None, port: int | None) -> tuple[str | None, dict]:
        """(ALL, SERVICE or None, the signals that decided it) for one family and port."""
        return self._states().get((family, port), (None, {}))

    def _port_state(self, family: int | None, port: int | None) -> tuple[str | None, dict]:
        key = (family, port)
        signals: dict[str, Any] = {}
        negative = self.negative.get(key, _NO_TALLY)
        if negative.passed:
            signals["negative_controls_accepted"] = negative.passed
        controls_answer = self.path_answers.get(key, set())
        echoed = sorted({r.evidence.get("dc") for r in self.identity.get(key, ()) if _answer_bytes(r) in controls_answer})
        if echoed:
            signals["answered_as_controls"] = echoed  # data centers that answered byte for byte as non-MTProto hosts
        fast = faster_than_light(self._places(key))
        if fast:
            signals["faster_than_light"] = fast
        impostors = sorted({r.evidence.get("dc") for r in self.identity.get(key, ())
                            if r.evidence.get("observed_reason", r.reason) in _NOT_THE_SERVICE
                            and _answer_bytes(r) not in controls_answer})
        if impostors:
            signals["answered_as_not_the_service"] = impostors
        if not signals:
            return None, {}
        if negative.passed or echoed:
            return ALL, signals
        genuine = self.controls_genuine(family, port)
        if impostors and genuine and negative.failed:
            # Bytes no MTProto server sends, from the service's addresses alone: that is blocking.
            # Impossible connect times alone never are: a published location can be wrong.
            return SERVICE, {**signals, "controls": genuine}
        if fast:
            return ALL, signals
        return None, {}  # answers that are not MTProto, with no genuine control to set them against

    def _places(self, key: tuple) -> list[Place]:
        fastest: dict[int, Place] = {}
        for record in self.identity.get(key, ()):
            evidence = record.evidence
            ms, lat, lon = evidence.get("connect_ms"), evidence.get("lat"), evidence.get("lon")
            if evidence.get("connect") != "ok" or not isinstance(ms, (int, float)) or lat is None or lon is None:
                continue
            dc = evidence.get("dc")
            if dc not in fastest or ms < fastest[dc].connect_ms:
                fastest[dc] = Place(dc, str(evidence.get("city", dc)), (lat, lon), float(ms))
        return list(fastest.values())

    def http_alike(self, record: Result) -> dict[str, Any] | None:
        """The HTTP answer, when a control name got the same one (status, server, length):
        an answer the path gives to everyone is not the service's."""
        signature = _http_signature(record.evidence)
        if signature is None or signature not in self.http_answers.get(address_family(record.address), ()):
            return None
        return dict(zip(("status", "server", "length"), signature))

    def trusted_interceptor(self, family: int | None) -> str | None:
        """The one issuer of every verified control name's certificate, when there are enough of
        them to tell: operators on different CDNs buy from different CAs, a TLS-intercepting proxy
        whose root this machine trusts (a company's) signs every name itself."""
        issuers = self.tls_issuers.get(family, {})
        if len(issuers) >= MIN_NAMES_FOR_ONE_ISSUER and len(set(issuers.values())) == 1:
            return next(iter(issuers.values()))
        return None

    def controls_genuine(self, family: int | None, port: int | None) -> str | None:
        """Which control got through this port in a way no interceptor fakes, if any."""
        if (port == 443 and self.tls.get(family, _NO_TALLY).passed and not self.tls_bad_certificate
                and not self.trusted_interceptor(family)):
            return "tls verified"
        if port == 80 and self.http_checked.get(family, _NO_TALLY).passed:
            return "http genuine"  # a control name's stated genuine answer: weak ones take any answer
        return None

    def tcp_tally(self, family: int | None, port: int | None) -> tuple[Tally, str]:
        """The TCP controls of this family and port; else of the family, said so."""
        tally = self.tcp.get((family, port))
        if tally is not None:
            return tally, "port"
        return self.tcp_family.get(family, _NO_TALLY), "family"

    def dns_state(self, resolver: str | None) -> str:
        tally = self.dns.get(resolver or "?", _NO_TALLY)
        if tally.state == PASSED and not any(self.intercepted(family, 443) for family in (4, 6)):
            # TLS that fails at the addresses this resolver gave, on a port that is not
            # intercepted, says the answers lead elsewhere (a portal on a public address).
            via = self.tls_via.get(resolver or "?")
            if via is not None and via.failed and not via.passed:
                return "untrusted"
        return tally.state

    def web_tally(self, tallies: dict[int | None, Tally], family: int | None) -> Tally:
        return tallies.get(family) or _merged(tallies.values())

    def genuine_pass(self) -> bool:
        """Some control got through in a way no interceptor fakes."""
        if any(t.passed for family, t in self.tls.items() if not self.trusted_interceptor(family)):
            return True
        if any(t.passed for (family, port), t in self.tcp.items() if not self.intercepted(family, port)):
            return True
        if any(t.passed for family, t in self.http.items() if not self.intercepted(family, 80)):
            return True
        return any(self.dns_state(resolver) == PASSED for resolver in self.dns)

    def vantage(self) -> str:
        if not self.positive:
            return UNKNOWN  # negative controls alone tell interception, not whether the way out is open
        if self.genuine_pass():
            return ONLINE
        return NO_OPEN_ACCESS if self.answered else OFFLINE

    def offline_families(self) -> set[int]:
        """Families none of whose connections to controls got through, while another's did."""
        return {family for family, tally in self.tcp_family.items()
                if family and tally.state == FAILED and not self.tls.get(family, _NO_TALLY).passed}

    def states(self) -> dict[str, str]:
        """Each stage's state, to tell whether the network changed under a long run."""
        out = {f"tcp {family} {port}": t.state for (family, port), t in self.tcp.items()}
        out.update({f"interception {family} {port}": "none" for (family, port) in self.negative})
        out.update({f"interception {family} {port}": "intercepted" if found == ALL else "service only"
                    for (family, port), (found, _) in self._states().items()})
        out.update({f"dns {resolver}": self.dns_state(resolver) for resolver in self.dns})
        out.update({f"tls {family}": t.state for family, t in self.tls.items()})
        out.update({f"http {family}": t.state for family, t in self.http.items()})
        return out


def as_control(record: Result, stage: str) -> Result:
    """A probe's record as the control record of `stage` (probe "control", evidence.stage);
    the probe kind's own stage marker, if any, is kept as `probe_stage`."""
    evidence = dict(record.evidence)
    if evidence.get("stage", stage) != stage:
        evidence["probe_stage"] = evidence.pop("stage")
    evidence = {"stage": stage, **evidence}
    reason = record.reason
    if stage == "interception":
        evidence["expected"] = "no connection"
        evidence["connect_reason"] = reason
        reason = negative_control_reason(reason)
    elif stage in PATH_CHECK_STAGES:
        evidence["observed_reason"] = reason  # what answered is the finding, not a pass or a fail
        reason = "control.path_check"
    return Result("control", record.target, record.address, reason, record.duration_ms, evidence,
                  measured_at=record.measured_at)


def checked_http_control(record: Result, expected: dict[str, Any] | None) -> Result:
    """A plain-HTTP control's record weighed against its genuine server's answer (the target
    file's `http`): an answer that differs fails the control (`http.not_genuine`, unless the probe
    already named a blockpage); one that matches passes it whatever its status (a known redirect
    off the name is the genuine answer).  Without an expectation the control is weak: any answer
    passes, and the record says so."""
    evidence = dict(record.evidence)
    http = evidence.get("http") or {}
    reason = record.reason
    if expected is None:
        evidence["answer_check"] = WEAK
        return _copy(record, reason, evidence)
    evidence["expected_answer"] = expected
    if http.get("status") is None:
        evidence["answer_check"] = NO_ANSWER
        return _copy(record, reason, evidence)
    difference = http_answer_difference(http, expected)
    if difference is None:
        evidence["answer_check"] = GENUINE
        reason = None
    else:
        evidence.update(answer_check=DIFFERS, answer_difference=difference)
        reason = reason or "http.not_genuine"
    if reason != record.reason:
        evidence.setdefault("observed_reason", record.reason)
        evidence.setdefault("observed_verdict", record.verdict)
    return _copy(record, reason, evidence)


def genuine_success(record: Result, board: ControlBoard) -> bool:
    """A success that only the service gives: the vantage point is online even when
    every control failed (the control hosts may be the ones blocked)."""
    if record.verdict != REACHABLE or by_silence(record.probe) or record.probe in ("control", "summary"):
        return False
    if bare_success(record.probe):
        # A bare handshake counts only where negative controls showed the port is not intercepted.
        family, port = address_family(record.address), address_port(record.address)
        tested = board.negative.get((family, port))
        return tested is not None and not tested.passed and board.port_state(family, port)[0] is None
    return True


def decide_vantage(board: ControlBoard, held: Iterable[Result] = ()) -> str:
    vantage = board.vantage()
    if vantage in (OFFLINE, NO_OPEN_ACCESS) and any(genuine_success(r, board) for r in held):
        return ONLINE
    return vantage


def decide_offline_families(board: ControlBoard, held: Iterable[Result] = ()) -> set[int]:
    """Families whose controls all failed, unless the service itself answered over them."""
    answered = {address_family(r.address) for r in held if genuine_success(r, board)}
    return board.offline_families() - answered



class Judgment:
    """A run's records, held until every control is in, then judged against the controls.

    No verdict may be reported before the controls say whether this vantage point is
    online and which address families are, so until the last control arrives (or the
    run ends) every record waits here.  The scheduler asks `may_start` so that what
    waits stays bounded by one concurrency's worth.  Each method returns the records to
    report now, in order; after `decide` they are the controls, then what was held.
    """

    def __init__(self, controls: int) -> None:
        self.controls_left = controls
        self.control_results: list[Result] = []
        self.deciding = controls > 0
        self.held: list[Result] = []
        self.started_while_deciding = 0
        self.board = ControlBoard()
        self.vantage = UNKNOWN  # stays unknown with no controls at all
        self.offline_families: set[int] = set()  # address families none of whose controls got through

    def may_start(self, limit: int) -> bool:
        """Whether another probe may start: while deciding, at most `limit` non-control ones."""
        return not (self.deciding and self.started_while_deciding >= limit)

    def starting(self, control: bool) -> None:
        if self.deciding and not control:
            self.started_while_deciding += 1

    def control(self, record: Result) -> list[Result]:
        """A control's record (already `as_control`): held until the last, which decides."""
        if not self.deciding:
            return [record]
        self.controls_left -= 1
        self.control_results.append(record)
        if self.controls_left == 0:
            self.board = ControlBoard(self.control_results)
            return self.decide(decide_vantage(self.board, self.held))
        return []

    def cut_control(self, record: Result) -> list[Result]:
        """A control the run deadline cut: while deciding it decides nothing (the run stays undecided)."""
        if not self.deciding:
            return [record]
        self.control_results.append(record)
        return []

    def hold(self, record: Result) -> list[Result]:
        """Any other record: held while deciding."""
        if self.deciding:
            self.held.append(record)
            return []
        return [record]

    def decide(self, vantage: str) -> list[Result]:
        """The controls are in: report them, then what was held back."""
        self.vantage = vantage
        if vantage == ONLINE:
            self.offline_families = decide_offline_families(self.board, self.held)
        self.deciding = False
        held, self.held = self.held, []
        controls, self.control_results = self.control_results, []
        return [*controls, *held]

    def release(self) -> list[Result]:
        """The run ends before the controls decided: whether this vantage point is
        online is unknown, so failures are reported as inconclusive, like offline."""
        if not self.deciding:
            return []
        self.board = ControlBoard(self.control_results)
        return self.decide(UNDECIDED)

    def judged(self, record: Result) -> Result:
        """The record as it should be reported (judged even with no control at all: a failure
        nothing else went through the same way for is inconclusive, not blocked)."""
        return judged(record, self.board, self.vantage, self.offline_families)

# --- judging one record ---------------------------------------------------------------

def _copy(record: Result, reason: str | None, evidence: dict[str, Any]) -> Result:
    """The record with another reason and evidence (dataclasses.replace, without its cost per field)."""
    return Result(record.probe, record.target, record.address, reason, record.duration_ms, evidence,
                  verdict_for(reason), record.measured_at)


def _changed(record: Result, reason: str | None, **evidence: Any) -> Result:
    extra = dict(evidence)
    if reason != record.reason:
        extra.setdefault("observed_reason", record.reason)
        extra.setdefault("observed_verdict", record.verdict)
    return _copy(record, reason, {**record.evidence, **extra})


# The reason for a failure whose stage had no control at all, by the stage of its controls.
_NO_CONTROL = {"dns": "dns.no_control", "dns_injection": "dns.no_control", "tcp": "tcp.no_control",
               "tls": "tls.no_control", "http": "http.no_control"}


def _with_controls(record: Result, controls: dict[str, Any]) -> Result:
    """The failure with what its stage's controls showed; inconclusive when there were none:
    nothing that is not the service went the same way, so nothing shows the failure is its."""
    if controls.get("state") == NONE:
        return _changed(record, _NO_CONTROL[controls["stage"]], controls=controls)
    return _copy(record, record.reason, {**record.evidence, "controls": controls})


def judged(record: Result, board: ControlBoard, vantage: str = ONLINE,
           offline_families: frozenset[int] | set[int] = frozenset()) -> Result:
    """The record as it should be reported, given the controls (a new Result when changed)."""
    verdict = record.verdict
    if verdict == REACHABLE and record.probe == "tcp" and not board.accepting:
        return record  # a connect that succeeded where nothing intercepts: most of a sweep
    if record.probe == "summary":
        return record
    family = address_family(record.address)
    gate = vantage if vantage in NOT_ONLINE else None
    if gate is None and family in offline_families and record.probe != "control":
        gate = f"ipv{family}_offline"
    silent_success = verdict == REACHABLE and by_silence(record.probe)
    if verdict == REACHABLE and record.probe == "control" and record.evidence.get("stage") == "interception":
        silent_success = True
    if gate is not None and gate != NO_OPEN_ACCESS and (verdict in FAILED_VERDICTS or silent_success):
        return _changed(record, f"vantage.{gate}", vantage=gate, verdict_if_online=verdict)
    if verdict == REACHABLE:
        result = _judged_success(record, board)
    elif verdict in FAILED_VERDICTS:
        result = _judged_failure(record, board)
    else:
        result = record
    if gate == NO_OPEN_ACCESS and (result.verdict in FAILED_VERDICTS or silent_success):
        return _changed(result, "vantage.no_open_access", vantage=gate, verdict_if_online=verdict)
    return result


def _judged_success(record: Result, board: ControlBoard) -> Result:
    family, port = address_family(record.address), address_port(record.address)
    kind = record.probe
    stage = record.evidence.get("stage") if kind == "control" else None
    if kind == "https" or stage == "tls":
        issuer = ((record.evidence.get("tls") or {}).get("certificate") or {}).get("issuer")
        one = board.trusted_interceptor(family)
        if one is not None and issuer == one:
            return _changed(record, "tls.intercepted_trusted", interception={"one_issuer_for_all": one})
        return record
    if kind == "tcp" or stage == "tcp":
        found, signals = board.port_state(family, port)
        if found == ALL:
            return _changed(record, "tcp.intercepted", interception=signals)
        if found == SERVICE and kind == "tcp":
            return _changed(record, "tcp.service_intercepted", interception=signals)
    elif kind == "http" or stage == "http":
        found, signals = board.port_state(family, port)
        if found is not None:
            return _changed(record, "http.intercepted", interception=signals)
        if kind == "http":
            alike = board.http_alike(record)
            if alike:
                return _changed(record, "http.intercepted", interception={"answered_as_controls": alike})
            if board.http_answered_by_other(family):
                # The control names got someone else's answer on this path: so may the service's.
                return _changed(record, "http.intercepted", controls={"stage": "http", "state": FAILED,
                                                                      "answered_by_other": True})
        if kind == "http" and record.evidence.get("address_in_networks") is False:
            return _changed(record, "http.not_service")
    elif kind == "control" and stage == "dns" and board.dns_state(record.address) == "untrusted":
        return _changed(record, "dns.resolver_untrusted")
    return record


def _judged_failure(record: Result, board: ControlBoard) -> Result:
    if record.probe == "control":
        return record  # a control's failure is what the others are weighed against
    stage = (record.reason or "").partition(".")[0]
    family, port = address_family(record.address), address_port(record.address)
    if stage == "dns":
        return _judged_dns(record, board)
    if stage == "tcp":
        tally, scope = board.tcp_tally(family, port)
        if scope != "port" and not _loopback(record.address):
            # Controls on other ports say nothing of this one: a hotel network that allows only 80
            # and 443 fails every connection to 5222, Telegram's or not.  (Loopback has no path
            # that filters by port, as it has none to intercept: Plan.path_families.)
            return _with_controls(record, {"stage": "tcp", "state": NONE, "scope": f"no control on port {port}"})
        if tally.state == FAILED:
            return _changed(record, "tcp.path_failing", controls=tally.evidence("tcp", scope=scope))
        return _with_controls(record, tally.evidence("tcp", scope=scope))
    if stage == "mtproto":
        # MTProto's control is the TCP stage of the same endpoint, which connected, unless
        # that handshake, or the answer, was the path's own.
        found, signals = board.port_state(family, port)
        if found == ALL:
            return _changed(record, "mtproto.intercepted", controls={"stage": "interception", "state": "intercepted"},
                            interception=signals)
        if _answer_bytes(record) in board.path_answers.get((family, port), ()):
            return _changed(record, "mtproto.intercepted", controls={"stage": "path", "state": "answered alike"},
                            interception={"answered_as_controls": True})
        if _answer_bytes(record) is None and board.path_ended_alike(family, port, record.reason):
            return _changed(record, "mtproto.path_failing",
                            controls={"stage": "path", "state": FAILED, "ended": record.reason})
        if found == SERVICE:
            return _with_controls(record, {"stage": "interception", "state": "service only", **signals})
        if board.tcp_tally(family, port)[0].state == NONE and not board.path_answers.get((family, port)):
            # No control connection of this family, no path check on this port: nothing that is not
            # the service went this way (a file without controls, --no-default-controls).
            return _changed(record, "mtproto.no_control", controls={"stage": "tcp", "state": NONE})
        return _with_controls(record, {"stage": "tcp", "state": PASSED, "scope": "same endpoint"})
    if stage == "tls" or (stage == "http" and record.probe == "https"):
        tally = board.web_tally(board.tls, family)
        if tally.state == FAILED:
            untrusted = record.reason == "tls.bad_certificate" and board.tls_bad_certificate == tally.failed
            reason = "tls.untrusted_for_all" if untrusted else "tls.path_failing"
            return _changed(record, reason, controls=tally.evidence("tls"))
        if record.reason == "tls.bad_certificate" and board.tls_bad_certificate:
            # Some control names' certificates did not verify either: a proxy that intercepts
            # all but a few exempted hosts (update servers often are) is not a Telegram block.
            return _changed(record, "tls.untrusted_for_all",
                            controls=tally.evidence("tls", bad_certificates=board.tls_bad_certificate))
        return _with_controls(record, tally.evidence("tls"))
    if stage == "http":
        alike = board.http_alike(record)
        if alike:  # a control name got the same answer: the path's, not a block of the service
            return _changed(record, "http.intercepted", interception={"answered_as_controls": alike})
        tally = board.web_tally(board.http, family)
        if tally.state == FAILED:
            return _changed(record, "http.path_failing", controls=tally.evidence("http"))
        return _with_controls(record, tally.evidence("http", intercepted=board.intercepted(family, port)))
    return record


def _judged_dns(record: Result, board: ControlBoard) -> Result:
    if record.probe == "dns_injection":
        answers = board.canary.get(record.address or "?")
        if not answers:
            return _with_controls(record, {"stage": "dns_injection", "state": NONE})
        ours = _canary_answer(record)
        alike = ours is not None and any(a is not None and _answered_alike(ours, a) for a in answers)
        controls = {"stage": "dns_injection", "state": PASSED, "control_answers": sum(a is not None for a in answers)}
        if alike:
            return _changed(record, "dns.intercepted_all", controls=controls)
        return _with_controls(record, controls)
    seen = record.evidence if record.probe == "dns" else (record.evidence.get("dns") or {})
    resolver = record.address if record.probe == "dns" else seen.get("resolver")
    state = board.dns_state(resolver)
    tally = board.dns.get(resolver or "?", _NO_TALLY)
    controls = tally.evidence("dns", resolver=resolver)
    if state == FAILED:
        return _changed(record, "dns.resolver_failing", controls=controls)
    if state == "untrusted":
        return _changed(record, "dns.resolver_untrusted", controls={**controls, "state": "untrusted"})
    if state == PASSED:
        ours = _dns_addresses(record) if record.probe == "dns" else frozenset()
        if ours and ours <= board.dns_answers.get(resolver or "?", set()):
            return _changed(record, "dns.same_for_all", controls=controls)
        if seen.get("aaaa_only") and not board.aaaa.get(resolver or "?", _NO_TALLY).passed:
            # AAAA goes unanswered for the control names too: the network's doing.
            if seen.get("a_genuine") and record.probe == "dns":
                return _changed(record, None, controls=controls, aaaa_unanswered_for_all=True)
            return _changed(record, "dns.resolver_failing", controls={**controls, "aaaa": "unanswered for all"})
    return _with_controls(record, controls)
