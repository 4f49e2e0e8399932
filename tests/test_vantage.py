"""The judgment, by tables: each observation weighed against the controls of its stage.

No network: records are built by hand as the probes write them, the controls
folded into a ControlBoard, and `judged` must give the verdict a careful
researcher would (netprobe/vantage.py).
"""

from __future__ import annotations

import pytest

from netprobe.classify import REASONS
from netprobe.records import Result
from netprobe.vantage import (
    NO_OPEN_ACCESS,
    OFFLINE,
    ONLINE,
    UNDECIDED,
    UNKNOWN,
    ControlBoard,
    Judgment,
    as_control,
    checked_http_control,
    decide_vantage,
    judged,
)

RESOLVER = "10.0.0.53:53"
CANARY = "149.154.175.50:53"


# --- control records, as the engine makes them ----------------------------------------------

def control_tcp(address: str, reason: str | None = None) -> Result:
    return as_control(Result("control", address, address, reason, 1.0, {"stage": "tcp"}), "tcp")


def negative(address: str, accepted: bool) -> Result:
    raw = Result("control", address, address, None if accepted else "control.timeout", 1.0,
                 {"stage": "interception"})
    return as_control(raw, "interception")


def control_dns(name: str, reason: str | None = None, addresses=("93.184.216.34",), aaaa_error=None,
                resolver: str = RESOLVER) -> Result:
    queries = [{"qtype": "A", "rcode": "NOERROR", "addresses": list(addresses)},
               {"qtype": "AAAA", "rcode": "NOERROR", "addresses": []}]
    if aaaa_error:
        queries[1] = {"qtype": "AAAA", "error_reason": aaaa_error}
    return as_control(Result("dns", name, resolver, reason, 1.0, {"queries": queries}), "dns")


def control_canary(name: str, reason: str | None, rcode=None, addresses=()) -> Result:
    evidence = {"canary": CANARY}
    if reason:
        evidence.update(rcode=rcode, addresses=list(addresses))
    return as_control(Result("dns_injection", name, CANARY, reason, 1.0, evidence), "dns_injection")


def control_web(stage: str, name: str, reason: str | None, address: str = "93.184.216.34:443",
                source: str = "dns", dns_reason: str | None = None) -> Result:
    evidence = {"address_source": source, "stage": "http" if reason is None else (reason or "").partition(".")[0],
                "dns": {"resolver": RESOLVER, "reason": dns_reason}}
    kind = "https" if stage == "tls" else "http"
    return as_control(Result(kind, name, address, reason, 1.0, evidence), stage)


def board(*records: Result) -> ControlBoard:
    return ControlBoard(records)


OPEN = (control_tcp("1.1.1.1:443"), negative("192.0.2.1:443", False), negative("192.0.2.1:80", False),
        control_dns("example.com"), control_canary("example.com", None),
        control_web("tls", "example.com", None), control_web("http", "example.com", None, "93.184.216.34:80"))


# --- service records ---------------------------------------------------------------------

def tcp(address: str, reason: str | None) -> Result:
    return Result("tcp", address, address, reason, 1.0, {})


def dns(name: str, reason: str | None, addresses=(), **evidence) -> Result:
    queries = [{"qtype": "A", "addresses": list(addresses)}]
    return Result("dns", name, RESOLVER, reason, 1.0, {"queries": queries, **evidence})


def web(kind: str, name: str, reason: str | None, address: str | None = "149.154.167.99:443", **evidence) -> Result:
    return Result(kind, name, address, reason, 1.0, {"dns": {"resolver": RESOLVER}, **evidence})


def mtproto(address: str, reason: str | None) -> Result:
    return Result("mtproto", address, address, reason, 1.0, {})


def canary(name: str, reason: str | None, rcode=None, addresses=()) -> Result:
    evidence = {"rcode": rcode, "addresses": list(addresses)} if reason else {}
    return Result("dns_injection", name, CANARY, reason, 1.0, evidence)


def verdict_reason(record: Result, controls: ControlBoard, vantage: str = ONLINE) -> tuple:
    out = judged(record, controls, vantage)
    return out.verdict, out.reason


# --- failures: counted only when the stage's controls passed ------------------------------

@pytest.mark.parametrize("record, controls, expected", [
    # TCP: the same family and port's controls decide.
    (tcp("149.154.167.51:443", "tcp.timeout"), OPEN, ("blocked", "tcp.timeout")),
    (tcp("149.154.167.51:443", "tcp.refused"), OPEN, ("reset", "tcp.refused")),
    (tcp("149.154.167.51:443", "tcp.timeout"), (control_tcp("1.1.1.1:443", "control.timeout"),
                                                  control_dns("example.com")), ("inconclusive", "tcp.path_failing")),
    # ... a port with no control of its own has none: controls on 443 say nothing of 5222, which a hotel
    # network that allows only 80 and 443 closes for everyone.
    (tcp("149.154.167.51:5222", "tcp.timeout"), OPEN, ("inconclusive", "tcp.no_control")),
    # ... loopback has no path that filters by port: the family's control speaks for it.
    (tcp("127.0.0.1:5222", "tcp.refused"), (control_tcp("127.0.0.2:443"),), ("reset", "tcp.refused")),
    # DNS: the controls at the same resolver.
    (dns("web.telegram.org", "dns.nxdomain"), OPEN, ("blocked", "dns.nxdomain")),
    (dns("web.telegram.org", "dns.timeout"), (control_dns("example.com", "dns.timeout", ()), *OPEN[:3]),
     ("inconclusive", "dns.resolver_failing")),
    # ... a resolver that answers every name with the same address (a captive portal).
    (dns("web.telegram.org", "dns.outside_networks", ["203.0.113.7"]),
     (control_dns("example.com", None, ["203.0.113.7"]), control_tcp("1.1.1.1:443")),
     ("inconclusive", "dns.same_for_all")),
    # ... whose control answers lead to TLS that does not verify (a captive portal on a public address).
    (dns("web.telegram.org", "dns.outside_networks", ["198.18.0.9"]),
     (control_dns("example.com", None, ["203.0.113.7"]),
      control_web("tls", "example.com", "tls.bad_certificate", "203.0.113.7:443")),
     ("inconclusive", "dns.resolver_untrusted")),
    # AAAA unanswered next to a genuine A: blocked only if the controls' AAAA were answered.
    (dns("web.telegram.org", "dns.timeout", ["149.154.167.99"], aaaa_only=True, a_genuine=True), OPEN,
     ("blocked", "dns.timeout")),
    (dns("web.telegram.org", "dns.timeout", ["149.154.167.99"], aaaa_only=True, a_genuine=True),
     (control_dns("example.com", None, aaaa_error="dns.timeout"), control_tcp("1.1.1.1:443")),
     ("reachable", None)),
    (dns("ipv6.telegram.org", "dns.timeout", [], aaaa_only=True, a_genuine=False),
     (control_dns("example.com", None, aaaa_error="dns.timeout"), control_tcp("1.1.1.1:443")),
     ("inconclusive", "dns.resolver_failing")),
    # The canary (an address that runs no DNS server): injection only if the controls are answered differently.
    (canary("t.me", "dns.injected", "NOERROR", ["10.10.34.34"]), OPEN, ("blocked", "dns.injected")),
    (canary("t.me", "dns.injected", "NXDOMAIN"),
     (control_canary("example.com", "dns.injected", "NXDOMAIN"), control_tcp("1.1.1.1:443")),
     ("inconclusive", "dns.intercepted_all")),
    (canary("t.me", "dns.injected", "NOERROR", ["10.10.34.34"]),
     (control_canary("example.com", "dns.intercepted", "NOERROR", ["93.184.216.34"]), control_tcp("1.1.1.1:443")),
     ("blocked", "dns.injected")),
    # TLS: a handshake failure counts only when the control names' TLS verified.
    (web("https", "web.telegram.org", "tls.reset"), OPEN, ("reset", "tls.reset")),
    (web("https", "web.telegram.org", "tls.bad_certificate"),
     (control_web("tls", "example.com", "tls.bad_certificate"), control_tcp("1.1.1.1:443")),
     ("inconclusive", "tls.untrusted_for_all")),
    # ... and a proxy that intercepts every name but a few exempted hosts is no Telegram block either.
    (web("https", "web.telegram.org", "tls.bad_certificate"),
     (control_web("tls", "example.com", "tls.bad_certificate"), control_web("tls", "www.apple.com", None),
      control_tcp("1.1.1.1:443")),
     ("inconclusive", "tls.untrusted_for_all")),
    (web("https", "web.telegram.org", "tls.bad_certificate"), OPEN, ("blocked", "tls.bad_certificate")),
    (web("https", "web.telegram.org", "tls.timeout"),
     (control_web("tls", "example.com", "tls.timeout"), control_tcp("1.1.1.1:443")),
     ("inconclusive", "tls.path_failing")),
    # A web probe with no address to try is judged like its DNS lookup.
    (web("https", "t.me", "dns.timeout", None), (control_dns("example.com", "dns.timeout", ()), *OPEN[:2]),
     ("inconclusive", "dns.resolver_failing")),
    # HTTP: a blockpage counts when the control names' HTTP got through.
    (web("http", "t.me", "http.blockpage", "149.154.167.99:80"), OPEN, ("blocked", "http.blockpage")),
    (web("http", "t.me", "http.blockpage", "149.154.167.99:80"),
     (control_web("http", "example.com", "http.blockpage", "93.184.216.34:80"), control_tcp("1.1.1.1:443")),
     ("inconclusive", "http.path_failing")),
    # MTProto: its control is the TCP stage of the same endpoint, unless the port accepts everything.
    (mtproto("149.154.167.51:443", "mtproto.reset"), OPEN, ("reset", "mtproto.reset")),
    (mtproto("149.154.167.51:443", "mtproto.bad_response"), (negative("192.0.2.1:443", True), *OPEN[3:]),
     ("inconclusive", "mtproto.intercepted")),
])
def test_a_failure_counts_only_when_its_stage_controls_passed(record, controls, expected):
    assert verdict_reason(record, board(*controls)) == expected


def test_the_observed_reason_and_the_controls_stay_in_the_evidence():
    out = judged(tcp("149.154.167.51:443", "tcp.timeout"), board(control_tcp("1.1.1.1:443", "control.timeout"),
                                                                   control_dns("example.com")))
    assert out.evidence["observed_reason"] == "tcp.timeout" and out.evidence["observed_verdict"] == "blocked"
    assert out.evidence["controls"] == {"stage": "tcp", "state": "failed", "passed": 0, "failed": 1, "scope": "port"}
    backed = judged(tcp("149.154.167.51:443", "tcp.timeout"), board(*OPEN))
    assert backed.evidence["controls"]["state"] == "passed" and "observed_reason" not in backed.evidence


@pytest.mark.parametrize("record, controls, vantage, reason", [
    # Only a TCP control was measured: nothing else went through TLS, plain HTTP or that resolver.
    (web("https", "web.telegram.org", "tls.reset"), (control_tcp("1.1.1.1:443"),), ONLINE, "tls.no_control"),
    (web("http", "t.me", "http.blockpage", "149.154.167.99:80"), (control_tcp("1.1.1.1:443"),), ONLINE,
     "http.no_control"),
    (dns("web.telegram.org", "dns.nxdomain"), (control_tcp("1.1.1.1:443"),), ONLINE, "dns.no_control"),
    (canary("t.me", "dns.injected", "NOERROR", ["10.10.34.34"]), (control_tcp("1.1.1.1:443"),), ONLINE,
     "dns.no_control"),
    # Only control names: no connection of that family was a control's.
    (tcp("[2001:67c:4e8:f004::a]:443", "tcp.timeout"), (control_dns("example.com"), control_tcp("1.1.1.1:443")),
     ONLINE, "tcp.no_control"),
    # No control at all (a file that names none, --no-default-controls): the run's vantage is unknown.
    (tcp("149.154.167.51:443", "tcp.refused"), (), UNKNOWN, "tcp.no_control"),
    (dns("web.telegram.org", "dns.nxdomain"), (), UNKNOWN, "dns.no_control"),
    (mtproto("149.154.167.51:443", "mtproto.reset"), (), UNKNOWN, "mtproto.no_control"),
    (mtproto("[2001:67c:4e8:f002::a]:443", "mtproto.timeout"), (control_tcp("1.1.1.1:443"),), ONLINE,
     "mtproto.no_control"),
])
def test_a_failure_with_no_control_of_its_stage_is_inconclusive(record, controls, vantage, reason):
    # The rule of issue 18: blocked and reset need a non-service control of the same stage and path.
    out = judged(record, board(*controls), vantage)
    assert (out.verdict, out.reason) == ("inconclusive", reason)
    assert (out.evidence["observed_reason"], out.evidence["observed_verdict"]) == (record.reason, record.verdict)
    assert out.evidence["controls"]["state"] == "none"


# --- successes: counted only when they are the service's ------------------------------------

@pytest.mark.parametrize("record, expected", [
    (tcp("149.154.167.51:443", None), ("inconclusive", "tcp.intercepted")),
    (web("http", "t.me", None, "149.154.167.99:80"), ("inconclusive", "http.intercepted")),
    # A verified certificate and a resPQ with our nonce are the service's whatever the port does.
    (web("https", "t.me", None), ("reachable", None)),
    (mtproto("149.154.167.51:443", None), ("reachable", None)),
])
def test_on_an_intercepted_port_only_proof_of_the_service_counts(record, expected):
    intercepted = board(negative("192.0.2.1:443", True), negative("192.0.2.1:80", True), *OPEN[3:])
    assert verdict_reason(record, intercepted) == expected


def test_an_http_answer_from_outside_the_service_is_not_the_service():
    record = web("http", "t.me", None, "203.0.113.7:80", address_in_networks=False)
    assert verdict_reason(record, board(*OPEN)) == ("inconclusive", "http.not_service")


def test_a_tcp_success_on_an_honest_port_stands():
    record = tcp("149.154.167.51:443", None)
    assert judged(record, board(*OPEN)) is record


# --- the vantage point --------------------------------------------------------------------

def test_vantage_from_the_controls():
    assert board().vantage() == UNKNOWN
    assert board(negative("192.0.2.1:443", False)).vantage() == UNKNOWN  # negatives alone decide nothing
    assert board(*OPEN).vantage() == ONLINE
    dropped = board(control_tcp("1.1.1.1:443", "control.timeout"), control_dns("example.com", "dns.timeout", ()),
                    negative("192.0.2.1:443", False))
    assert dropped.vantage() == OFFLINE
    walled = board(control_tcp("1.1.1.1:443"), negative("192.0.2.1:443", True),
                   control_dns("example.com", "dns.nxdomain", ()),
                   control_web("tls", "example.com", "tls.bad_certificate"))
    assert walled.vantage() == NO_OPEN_ACCESS  # the TCP control was only accepted by the interceptor


def test_the_service_answering_makes_the_vantage_online_when_every_control_failed():
    controls = board(control_tcp("1.1.1.1:443", "control.timeout"), negative("192.0.2.1:443", False),
                     control_web("tls", "example.com", "tcp.timeout"))
    assert decide_vantage(controls, [web("https", "web.telegram.org", None)]) == ONLINE
    # A bare handshake is not the service's proof unless the port was shown honest.
    assert decide_vantage(controls, [tcp("149.154.167.51:80", None)]) == OFFLINE
    assert decide_vantage(controls, [tcp("149.154.167.51:443", None)]) == ONLINE


@pytest.mark.parametrize("vantage, reason", [(OFFLINE, "vantage.offline"), (UNDECIDED, "vantage.undecided"),
                                             (NO_OPEN_ACCESS, "vantage.no_open_access")])
def test_without_open_access_no_failure_and_no_silence_counts(vantage, reason):
    # The TCP control got through (an interceptor accepted it), so only the vantage decides.
    controls = board(control_tcp("1.1.1.1:443"), negative("192.0.2.1:443", True))
    for record in (tcp("149.154.167.51:443", "tcp.timeout"), canary("t.me", None)):
        out = judged(record, controls, vantage)
        assert (out.verdict, out.reason) == ("inconclusive", reason)
        assert out.evidence["vantage"] == vantage and out.evidence["verdict_if_online"] in ("blocked", "reachable")


def test_a_family_whose_controls_all_failed():
    controls = board(control_tcp("1.1.1.1:443"), control_tcp("[2606:4700:4700::1111]:443", "control.timeout"))
    assert controls.offline_families() == {6}
    out = judged(tcp("[2001:67c:4e8:f004::9]:443", "tcp.timeout"), controls, ONLINE, {6})
    assert (out.verdict, out.reason) == ("inconclusive", "vantage.ipv6_offline")


def test_negative_controls_read_the_other_way_round():
    assert negative("192.0.2.1:443", True).reason == "interception.accepted"
    assert negative("192.0.2.1:443", True).verdict == "inconclusive"
    honest = negative("192.0.2.1:443", False)
    assert (honest.reason, honest.verdict, honest.evidence["connect_reason"]) == (None, "reachable", "control.timeout")


def test_every_reason_the_judgment_gives_is_listed():
    given = {"dns.resolver_failing", "dns.same_for_all", "dns.resolver_untrusted", "dns.intercepted_all",
             "tcp.path_failing", "tcp.intercepted", "tls.untrusted_for_all", "tls.path_failing", "http.path_failing",
             "http.intercepted", "http.not_service", "mtproto.intercepted", "interception.accepted",
             "vantage.offline", "vantage.undecided", "vantage.ipv4_offline", "vantage.ipv6_offline",
             "vantage.no_open_access", "dns.no_control", "tcp.no_control", "tls.no_control", "http.no_control",
             "mtproto.no_control"}
    assert given <= set(REASONS)
    assert all(REASONS[r][0] == "inconclusive" for r in given)


# --- plain HTTP controls: passed only on the answer their genuine server gives -------------------

EXAMPLE = {"status": 200, "body_contains": "Example Domain", "source": "a recorded fetch"}
APPLE = {"status": 301, "location": "https://www.apple.com/", "source": "a recorded fetch"}
CLOUDFLARE = {"headers": {"server": "cloudflare"}, "source": "a recorded fetch"}


def http_probe(name: str, status: int | None, location: str | None = None, body: bytes = b"",
               server: str | None = None, reason: str | None = None, address: str = "93.184.216.34:80") -> Result:
    """A plain-HTTP probe's record as probes/https.py writes it (reason as http_reason names it)."""
    headers = {k: v for k, v in (("location", location), ("server", server)) if v is not None}
    http = {"status": status, "headers": headers, "headers_complete": status is not None,
            "body_prefix": {"hex": body.hex(), "length": len(body), "truncated": False}}
    if status is None:
        http = {"error": "TimeoutError"}
    evidence = {"address_source": "dns", "stage": "http", "dns": {"resolver": RESOLVER, "reason": None}, "http": http}
    return Result("http", name, address, reason, 1.0, evidence)


EXAMPLE_PAGE = b"<!doctype html>\n<html>\n<head>\n    <title>Example Domain</title>"


@pytest.mark.parametrize("record, expected, outcome", [
    # The genuine answers: example.com's page, Apple's redirect to https (a known redirect is an answer).
    (http_probe("example.com", 200, body=EXAMPLE_PAGE), EXAMPLE, ("genuine", None)),
    (http_probe("www.apple.com", 301, "https://www.apple.com/"), APPLE, ("genuine", None)),
    (http_probe("one.one.one.one", 301, "https://one.one.one.one/", server="cloudflare"), CLOUDFLARE,
     ("genuine", None)),
    # A genuine redirect to another host is still the genuine answer, not a blockpage.
    (http_probe("www.apple.com", 301, "https://apple.com/", reason="http.blockpage"),
     {**APPLE, "location": "https://apple.com/"}, ("genuine", None)),
    # An interceptor's 404, a portal's 302, a parked 200 without the page's marker: someone else answered.
    (http_probe("example.com", 404, body=b"<html>Not Found</html>"), EXAMPLE, ("differs", "http.not_genuine")),
    (http_probe("www.apple.com", 302, "http://portal.example.net/login", reason="http.blockpage"), APPLE,
     ("differs", "http.blockpage")),
    (http_probe("example.com", 200, body=b"<html><title>Parked</title>"), EXAMPLE, ("differs", "http.not_genuine")),
    (http_probe("www.apple.com", 301, "https://www.apple.com.evil/"), APPLE, ("differs", "http.not_genuine")),
    (http_probe("one.one.one.one", 301, "https://one.one.one.one/", server="nginx"), CLOUDFLARE,
     ("differs", "http.not_genuine")),
    # No HTTP answer at all: the failure speaks for itself.
    (http_probe("example.com", None, reason="http.timeout"), EXAMPLE, ("no answer", "http.timeout")),
    # No expectation in the target file: a weak control, any answer passes it (the rule before).
    (http_probe("www.microsoft.com", 404), None, ("weak", None)),
])
def test_an_http_control_passes_only_on_its_genuine_answer(record, expected, outcome):
    out = as_control(checked_http_control(record, expected), "http")
    assert (out.evidence["answer_check"], out.reason) == outcome
    if expected is not None:
        assert out.evidence["expected_answer"] == expected  # the target file's fact and its source, in the record
    if outcome[0] == "differs":
        assert out.evidence["answer_difference"] and out.verdict == "blocked"
    if out.reason != record.reason:
        assert out.evidence["observed_reason"] == record.reason


def checked(name, expected, *args, **kwargs) -> Result:
    return as_control(checked_http_control(http_probe(name, *args, **kwargs), expected), "http")


GENUINE_HTTP = checked("example.com", EXAMPLE, 200, body=EXAMPLE_PAGE)
# The issue-18 network: a proxy answers every plain-HTTP GET with its own 404.
PROXY_404 = (checked("example.com", EXAMPLE, 404), checked("one.one.one.one", None, 404),
             checked("www.microsoft.com", None, 404), control_tcp("1.1.1.1:443"), control_dns("example.com"),
             negative("192.0.2.1:80", False))


@pytest.mark.parametrize("record, controls, expected", [
    # example.com got its genuine page: the path is open, a blockpage for Telegram is Telegram's block.
    (web("http", "t.me", "http.blockpage", "149.154.167.99:80"), (GENUINE_HTTP, *OPEN[:4]),
     ("blocked", "http.blockpage")),
    (web("http", "t.me", None, "149.154.167.99:80"), (GENUINE_HTTP, *OPEN[:4]), ("reachable", None)),
    # Someone else answered the checked control: weak controls that took the same 404 do not outvote it.
    (web("http", "web.telegram.org", None, "149.154.167.99:80"), PROXY_404, ("inconclusive", "http.intercepted")),
    (web("http", "t.me", "http.blockpage", "149.154.167.99:80"), PROXY_404, ("inconclusive", "http.path_failing")),
])
def test_an_http_path_answered_by_someone_else_judges_nothing(record, controls, expected):
    assert verdict_reason(record, board(*controls)) == expected


def test_http_controls_on_the_board():
    proxy = board(*PROXY_404)
    assert proxy.http_answered_by_other(4) and proxy.http[4].state == "failed"
    assert proxy.states()["http 4"] == "failed"
    assert not proxy.http_weak_only()
    weak = board(checked("www.microsoft.com", None, 404), control_tcp("1.1.1.1:443"))
    assert weak.http_weak_only() and weak.http[4].state == "passed" and not weak.http_answered_by_other(4)
    honest = board(GENUINE_HTTP, checked("www.microsoft.com", None, 200))
    assert not honest.http_answered_by_other(4) and not honest.http_weak_only()
    assert honest.http[4].passed == 1  # the checked control decides; the weak one is not counted beside it


# --- who answers on a port: interception that does not rest on one guess ----------------------
# Modelled on a real network: a transparent proxy that refuses 192.0.2.0/24, accepts everything
# else, and answers any bytes that are not TLS or HTTP with its own "HTTP/1.1 400 Bad Request".

PROXY_400 = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".hex()
RES_PQ = "00000000000000000000000001" + "63241605"  # any other bytes: the DC's own answer
MIAMI, AMSTERDAM, SINGAPORE = ("Miami", 25.77, -80.19), ("Amsterdam", 52.37, 4.90), ("Singapore", 1.29, 103.85)


def answer(hex_bytes: str | None) -> dict:
    return {"first_bytes": {"hex": hex_bytes, "length": len(hex_bytes) // 2}} if hex_bytes else {}


def path_check(address: str, reason: str | None, hex_bytes: str | None = None) -> Result:
    """Our MTProto request to a control host that does not speak MTProto (stage "path")."""
    raw = Result("control", address, address, reason, 1.0, {"stage": "receive", **answer(hex_bytes)})
    return as_control(raw, "path")


def identity(address: str, dc: int, place, reason: str | None, hex_bytes: str | None = None,
             connect_ms: float = 80.0) -> Result:
    """Our MTProto request to one data center (stage "identity"), with its published place."""
    city, lat, lon = place
    evidence = {"stage": "receive", "dc": dc, "city": city, "lat": lat, "lon": lon, "connect": "ok",
                "connect_ms": connect_ms, **answer(hex_bytes)}
    return as_control(Result("control", address, address, reason, 1.0, evidence), "identity")


def mtproto_answered(address: str, reason: str | None, hex_bytes: str | None) -> Result:
    return Result("mtproto", address, address, reason, 1.0, {"connect": "ok", **answer(hex_bytes)})


def http_answer(address: str, status: int, server: str, length: str, reason=None, kind="http") -> Result:
    evidence = {"http": {"status": status, "headers": {"server": server, "content-length": length}},
                "address_in_networks": True}
    return Result(kind, "web.telegram.org", address, reason, 1.0, evidence)


def test_light_bounds_two_connect_times():
    from netprobe.vantage import Place, faster_than_light, fastest_pair_ms
    # Miami-Singapore is ~16,970 km: connects to both add up to at least 113 ms from anywhere.
    assert 112 < fastest_pair_ms(MIAMI[1:], SINGAPORE[1:]) < 114
    assert fastest_pair_ms(MIAMI[1:], MIAMI[1:]) == 0  # one city: no bound, never a finding
    near = [Place(1, "Miami", MIAMI[1:], 3.0), Place(5, "Singapore", SINGAPORE[1:], 3.0)]
    far = [Place(1, "Miami", MIAMI[1:], 40.0), Place(5, "Singapore", SINGAPORE[1:], 80.0)]
    assert [f["dcs"] for f in faster_than_light(near)] == [[1, 5]]
    assert faster_than_light(far) == []  # 120 ms: a real path could give it


A_SPARED_ADDRESS_IS_NOT_ENOUGH = (
    negative("192.0.2.1:443", False),      # the interceptor spares TEST-NET-1 ...
    negative("198.51.100.1:443", True),    # ... but not TEST-NET-2
    negative("198.41.0.4:443", True),      # ... nor a host that serves DNS only
)

# (case, extra controls, the port's state, the signal that decided it)
PORT_CASES = [
    ("one negative control spared, another accepted", A_SPARED_ADDRESS_IS_NOT_ENOUGH, "all",
     "negative_controls_accepted"),
    ("every negative control spared, but the DCs answer byte for byte as the control hosts",
     (negative("192.0.2.1:443", False), path_check("1.1.1.1:443", "mtproto.bad_response", PROXY_400),
      identity("149.154.175.50:443", 1, MIAMI, "mtproto.bad_response", PROXY_400)), "all", "answered_as_controls"),
    ("Miami and Singapore both answer in 3 ms, no control genuine", (
        negative("192.0.2.1:443", False), identity("149.154.175.50:443", 1, MIAMI, None, RES_PQ, 3.0),
        identity("91.108.56.130:443", 5, SINGAPORE, None, RES_PQ, 3.0)), "all", "faster_than_light"),
    # Impossible connect times alone never make blocking, even with genuine controls: a published
    # location can be wrong (or a SYN proxy answers handshakes): the handshakes prove nothing, that is all.
    ("Miami and Singapore in 3 ms, then silence, while a control name's TLS verifies", (
        negative("192.0.2.1:443", False), control_web("tls", "example.com", None),
        identity("149.154.175.50:443", 1, MIAMI, "mtproto.timeout", None, 3.0),
        identity("91.108.56.130:443", 5, SINGAPORE, "mtproto.timeout", None, 3.0)), "all", "faster_than_light"),
    ("a DC answers with bytes no MTProto server sends, controls genuine, negatives refused", (
        negative("192.0.2.1:443", False), control_web("tls", "example.com", None),
        path_check("1.1.1.1:443", "mtproto.timeout"),
        identity("149.154.175.50:443", 1, MIAMI, "mtproto.bad_response", PROXY_400)), "service",
     "answered_as_not_the_service"),
    ("the same answer with no genuine control: nothing to set it against", (
        negative("192.0.2.1:443", False), path_check("1.1.1.1:443", "mtproto.timeout"),
        identity("149.154.175.50:443", 1, MIAMI, "mtproto.bad_response", PROXY_400)), None, None),
    ("genuine resPQs at distances light allows", (
        negative("192.0.2.1:443", False), identity("149.154.175.50:443", 1, MIAMI, None, RES_PQ, 40.0),
        identity("91.108.56.130:443", 5, SINGAPORE, None, RES_PQ, 90.0)), None, None),
]


@pytest.mark.parametrize("case, controls, state, signal", PORT_CASES, ids=[c[0] for c in PORT_CASES])
def test_who_answers_on_a_port(case, controls, state, signal):
    found, signals = board(*controls).port_state(4, 443)
    assert found == state
    if signal:
        assert signal in signals


# (case, controls, record, verdict, reason) — what a careful reader concludes, beside each
INTERCEPTED_RECORDS = [
    # The real network: the proxy's 400 from every DC, port and transport is the proxy's, not a block.
    ("the proxy's 400 read as MTProto's failure", A_SPARED_ADDRESS_IS_NOT_ENOUGH,
     mtproto_answered("149.154.175.50:443", "mtproto.bad_response", PROXY_400), "inconclusive",
     "mtproto.intercepted"),
    ("a handshake on a port whose negative controls connect", A_SPARED_ADDRESS_IS_NOT_ENOUGH,
     tcp("91.108.8.17:443", None), "inconclusive", "tcp.intercepted"),
    # No negative control was accepted, but a control host got byte for byte the same answer.
    ("a DC's answer equal to a non-MTProto host's", (negative("192.0.2.1:443", False),
     path_check("8.8.8.8:443", "mtproto.bad_response", PROXY_400)),
     mtproto_answered("149.154.167.51:443", "mtproto.bad_response", PROXY_400), "inconclusive",
     "mtproto.intercepted"),
    # A different, non-MTProto answer from the DC while controls on the port are genuine: Telegram-only.
    ("an impostor for Telegram alone", PORT_CASES[4][1],
     mtproto_answered("149.154.167.51:443", "mtproto.bad_response", "deadbeef"), "blocked", "mtproto.bad_response"),
    ("a range handshake where an impostor answers for Telegram", PORT_CASES[4][1],
     tcp("91.108.8.17:443", None), "inconclusive", "tcp.service_intercepted"),
    # An uncensored network: a genuine resPQ stays reachable, a reset stays a reset.
    ("a genuine resPQ", PORT_CASES[-1][1], mtproto_answered("149.154.175.50:443", None, RES_PQ), "reachable", None),
    ("a reset after the handshake on an honest path", PORT_CASES[-1][1],
     mtproto_answered("149.154.175.50:443", "mtproto.reset", None), "reset", "mtproto.reset"),
]


@pytest.mark.parametrize("case, controls, record, verdict, reason", INTERCEPTED_RECORDS,
                         ids=[c[0] for c in INTERCEPTED_RECORDS])
def test_answers_that_are_the_paths(case, controls, record, verdict, reason):
    out = judged(record, board(control_tcp("1.1.1.1:443"), *controls))
    assert (out.verdict, out.reason) == (verdict, reason)
    if reason != record.reason:
        assert out.evidence["observed_reason"] == record.reason  # what was seen stays in the evidence


def test_an_http_answer_the_controls_also_got_is_not_the_services():
    control = as_control(http_answer("1.1.1.1:80", 404, "keryx", "0", kind="control"), "http")
    controls = board(control_tcp("1.1.1.1:443"), negative("192.0.2.1:80", False), control)
    out = judged(http_answer("149.154.167.99:80", 404, "keryx", "0"), controls)
    assert (out.verdict, out.reason) == ("inconclusive", "http.intercepted")
    assert out.evidence["interception"]["answered_as_controls"] == {"status": 404, "server": "keryx", "length": "0"}
    # Telegram's own answer, which no control got, stands.
    own = judged(http_answer("149.154.167.99:80", 301, "nginx", "162"), controls)
    assert (own.verdict, own.reason) == ("reachable", None)


def test_path_checks_are_neither_pass_nor_fail():
    check = path_check("1.1.1.1:443", "mtproto.timeout")
    assert (check.verdict, check.reason, check.evidence["observed_reason"]) == (
        "inconclusive", "control.path_check", "mtproto.timeout")
    # ... and do not make an offline vantage point look online, nor count as a control of the way out.
    assert board(path_check("1.1.1.1:443", "mtproto.bad_response", PROXY_400)).vantage() == UNKNOWN


def test_new_reasons_are_listed():
    assert {"tcp.service_intercepted", "control.path_check", "summary.intercepted"} <= set(REASONS)


# Found by a second review: failures that the path gives every host alike are not Telegram's.
PATH_ALIKE = [
    # A firewall that resets anything not TLS on 443, whoever it goes to: our MTProto request to
    # Cloudflare and Google was reset too, so a data center's reset is no block of Telegram.
    ("MTProto reset at the controls too", (negative("192.0.2.1:443", False), path_check("1.1.1.1:443", "mtproto.reset"),
                                            path_check("8.8.8.8:443", "mtproto.reset")),
     mtproto("149.154.175.50:443", "mtproto.reset"), ("inconclusive", "mtproto.path_failing")),
    # ... but where the controls' requests ended otherwise (the server closed), Telegram's reset stands.
    ("MTProto reset where the controls closed", (negative("192.0.2.1:443", False),
                                                  path_check("1.1.1.1:443", "mtproto.eof")),
     mtproto("149.154.175.50:443", "mtproto.reset"), ("reset", "mtproto.reset")),
    # An inline box answering non-HTTP with a 400 whose Date differs a second later: the status line decides.
    ("the same 400 with another Date", (negative("192.0.2.1:80", False), path_check(
        "1.1.1.1:80", "mtproto.bad_response", b"HTTP/1.1 400 Bad Request\r\nDate: Tue, 08 Dec 2026 01:00:00 GMT\r\n".hex())),
     mtproto_answered("149.154.175.50:80", "mtproto.bad_response",
                      b"HTTP/1.1 400 Bad Request\r\nDate: Tue, 08 Dec 2026 01:00:01 GMT\r\n".hex()),
     ("inconclusive", "mtproto.intercepted")),
]


@pytest.mark.parametrize("case, controls, record, expected", PATH_ALIKE, ids=[c[0] for c in PATH_ALIKE])
def test_a_failure_the_path_gives_everyone(case, controls, record, expected):
    assert verdict_reason(record, board(control_tcp("1.1.1.1:443"), control_tcp("1.1.1.1:80"), *controls)) == expected


def test_an_http_failure_a_control_also_got_is_the_paths():
    # A walled garden's 302 for a control name and for web.telegram.org alike: not a blockpage of Telegram.
    control = as_control(http_answer("1.1.1.1:80", 302, "portal", "0", kind="control"), "http")
    out = judged(http_answer("149.154.167.99:80", 302, "portal", "0", reason="http.blockpage"),
                 board(control_tcp("1.1.1.1:443"), negative("192.0.2.1:80", False), control))
    assert (out.verdict, out.reason, out.evidence["observed_reason"]) == ("inconclusive", "http.intercepted",
                                                                          "http.blockpage")


def _verified(kind: str, name: str, issuer: str, address: str = "93.184.216.34:443") -> Result:
    evidence = {"address_source": "dns", "stage": "http", "tls": {"certificate": {"issuer": issuer}}}
    record = Result(kind, name, address, None, 1.0, evidence)
    return as_control(record, "tls") if kind == "control" else record


@pytest.mark.parametrize("issuers, telegram_issuer, expected", [
    # A company's TLS proxy whose root this machine trusts signs every name itself: one issuer for all.
    (["CN=Corp Inspection CA"] * 3, "CN=Corp Inspection CA", ("inconclusive", "tls.intercepted_trusted")),
    # Operators on different CDNs buy from different CAs: Telegram's verified certificate is its own.
    (["CN=DigiCert Global G2", "CN=Microsoft Azure RSA TLS Issuing CA 03", "CN=Apple Public EV Server RSA CA 1"],
     "CN=Go Daddy Secure Certificate Authority - G2", ("reachable", None)),
    # Two names are too few to tell a shared CA from an interceptor.
    (["CN=DigiCert Global G2"] * 2, "CN=DigiCert Global G2", ("reachable", None)),
])
def test_one_issuer_for_every_name_is_a_trusted_interceptor(issuers, telegram_issuer, expected):
    names = ("example.com", "www.microsoft.com", "www.apple.com")
    controls = board(control_tcp("1.1.1.1:443"), *(_verified("control", n, i) for n, i in zip(names, issuers)))
    record = _verified("https", "web.telegram.org", telegram_issuer, "149.154.167.99:443")
    assert verdict_reason(record, controls) == expected
    assert (controls.controls_genuine(4, 443) is None) == (expected[1] is not None)


# --- holding until the controls are in (Judgment) -------------------------------------------

def _through(judgment: Judgment, steps) -> list[list[str]]:
    """What each step released, by target."""
    return [[r.target for r in getattr(judgment, step)(record)] if record else
            [r.target for r in getattr(judgment, step)()] for step, record in steps]


@pytest.mark.parametrize("controls, steps, released, vantage", [
    # No controls: nothing is held, and the vantage point stays unknown.
    (0, [("hold", tcp("1.1.1.1:80", None))], [["1.1.1.1:80"]], UNKNOWN),
    # Held until the last control, then the controls first and what was held after.
    (2, [("hold", tcp("1.1.1.1:80", "tcp.timeout")), ("control", control_tcp("9.9.9.9:443")),
         ("control", control_tcp("8.8.8.8:443")), ("hold", tcp("2.2.2.2:80", None))],
     [[], [], ["9.9.9.9:443", "8.8.8.8:443", "1.1.1.1:80"], ["2.2.2.2:80"]], ONLINE),
    # A control the deadline cut decides nothing: the run ends undecided, everything released then.
    (2, [("control", control_tcp("9.9.9.9:443")), ("cut_control", control_tcp("8.8.8.8:443", "tcp.timeout")),
         ("hold", tcp("1.1.1.1:80", None)), ("release", None)],
     [[], [], [], ["9.9.9.9:443", "8.8.8.8:443", "1.1.1.1:80"]], UNDECIDED),
    # Every control failed silently: offline.
    (1, [("control", control_tcp("9.9.9.9:443", "tcp.timeout")), ("release", None)],
     [["9.9.9.9:443"], []], OFFLINE),
])
def test_judgment_holds_until_the_controls_decide(controls, steps, released, vantage):
    judgment = Judgment(controls)
    assert _through(judgment, steps) == released
    assert judgment.vantage == vantage and not judgment.deciding


def test_judgment_bounds_what_starts_while_deciding():
    judgment = Judgment(1)
    for _ in range(3):
        assert judgment.may_start(3)
        judgment.starting(control=False)
    judgment.starting(control=True)
    assert not judgment.may_start(3)
    judgment.control(control_tcp("9.9.9.9:443"))
    assert judgment.may_start(3)
