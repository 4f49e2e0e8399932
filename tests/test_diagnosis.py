"""The diagnosis states each technique with counts, and partial blocking as partial."""

from __future__ import annotations

from netprobe.diagnosis import RunContext, summarize
from netprobe.records import Result
from netprobe.tallies import Tallies


def dns(domain, reason, resolver="10.0.0.1:53", addresses=()):
    evidence = {"queries": [{"qtype": "A", "addresses": list(addresses)}]}
    return Result("dns", domain, resolver, reason, 1.0, evidence)


def tcp(target, reason, **evidence):
    return Result("tcp", target, target, reason, 1.0, evidence)


def https(domain, reason, kind="https", **evidence):
    return Result(kind, domain, "10.77.1.10:443", reason, 1.0, evidence)


def mtproto(kind, transport, target, reason):
    return Result(kind, target, target, reason, 1.0, {"transport": transport})


def fold(*results):
    tallies = Tallies()
    for result in results:
        tallies.add(result)
    return tallies


def diagnose(*results, vantage="online", **context):
    """The summary record of `results`, stated against the run's context."""
    return summarize("telegram", fold(*results), RunContext(vantage, **context))


def findings(*results, **context):
    return diagnose(*results, **context).evidence["findings"]


def test_nothing_failed_says_no_blocking_and_reason_is_null():
    summary = diagnose(dns("a.org", None), tcp("1.2.3.4:443", None))
    assert summary.evidence["findings"] == ["No blocking observed: every probe that could conclude got through."]
    assert (summary.probe, summary.verdict, summary.reason) == ("summary", "reachable", None)


def test_partial_dns_blocking_is_counted_with_the_bogus_address():
    d = diagnose(dns("a.org", "dns.outside_networks", addresses=["10.0.0.80"]),
                 dns("b.org", "dns.outside_networks", addresses=["10.0.0.80"]),
                 dns("c.org", None, addresses=["149.154.167.99"]))
    [line] = d.evidence["findings"]
    assert line.startswith("DNS: 2/3 domains failed at 10.0.0.1:53 (2 answered outside the service's networks)")
    assert "bogus addresses 10.0.0.80" in line
    assert d.verdict == "blocked"


def test_ip_blocking_of_some_data_centers_and_a_range():
    lines = findings(tcp("1.1.1.1:443", "tcp.timeout"), tcp("1.1.1.2:443", "tcp.refused"), tcp("1.1.1.3:443", None),
                     tcp("10.77.64.1:443", "tcp.timeout", range="10.77.64.0/28"),
                     tcp("10.77.64.2:443", None, range="10.77.64.0/28"))
    assert "IP: 2/3 data-center endpoints failed (1 timeout, 1 reset)" in lines
    assert "IP: 1/2 probed addresses of 10.77.64.0/28 failed (1 timeout)" in lines


def test_each_web_stage_has_its_own_technique():
    d = diagnose(https("web.telegram.lab", "tls.reset"), https("t.lab", "tcp.timeout"),
                 https("telegram.lab", None), https("mitm.lab", "tls.bad_certificate",
                                                   tls={"verify_message": "self-signed certificate"}),
                 https("drip.lab", "http.timeout"), https("t.lab", "http.blockpage", kind="http"))
    lines = d.evidence["findings"]
    assert lines[0] == ("IP: 1/6 web probes could not connect (1 timeout): https t.lab")
    assert lines[1].startswith("SNI: 1/5 domains failed during the TLS handshake while TCP to the same address "
                               "connects (1 tls.reset): web.telegram.lab")
    assert lines[2] == ("TLS interception: 1 domains presented a certificate that does not verify "
                        "(e.g. mitm.lab: self-signed certificate)")
    assert lines[3] == "HTTP: 1 web probes were answered with a blockpage: http t.lab"
    assert lines[4] == "HTTP: 1 web probes failed after connecting (1 http.timeout): https drip.lab"
    assert len(lines) == 5
    assert d.reason == "summary.blocking_observed"


def test_mtproto_connect_failures_are_ip_blocking_not_fingerprinting():
    target = "10.77.2.1:443"
    assert findings(mtproto("mtproto", "intermediate", target, "tcp.timeout"),
                    mtproto("mtproto_obfuscated2", "obfuscated2", target, "tcp.timeout")) == ["IP: 1/1 data-center endpoints failed (1 timeout)"]


def test_every_failure_shows_in_a_finding():
    # Whatever failed, the summary never says "No blocking observed" while calling it blocking.
    for result in (https("a.lab", "http.eof"), https("a.lab", "dns.nxdomain"),
                   tcp("1.2.3.4:443", "tcp.refused"), mtproto("mtproto", "intermediate", "x", "mtproto.eof")):
        summary = diagnose(result)
        assert summary.reason == "summary.blocking_observed", result
        assert not summary.evidence["findings"][0].startswith("No blocking"), result


def test_mtproto_fingerprinting_is_named():
    target = "10.77.2.1:443"
    [line] = findings(mtproto("mtproto", "intermediate", target, "mtproto.reset"),
                      mtproto("mtproto_abridged", "abridged", target, "mtproto.reset"),
                      mtproto("mtproto_obfuscated2", "obfuscated2", target, None))
    assert "intermediate 1/1 failed (1 mtproto.reset)" in line
    assert "obfuscated2 reachable" in line
    assert "protocol fingerprinting" in line


def test_resolvers_that_disagree_are_reported():
    d = diagnose(dns("a.org", "dns.nxdomain", resolver="10.0.0.1:53"),
                 dns("a.org", None, resolver="https://doh.example/dns-query"),
                 dns("b.org", None, resolver="10.0.0.1:53"),
                 dns("b.org", None, resolver="https://doh.example/dns-query"))
    lines = d.evidence["findings"]
    assert any(line.startswith("DNS: resolvers disagree on 1/2 domains (e.g. a.org:") for line in lines), lines
    assert d.evidence["resolver_disagreements"] == {
        "a.org": {"10.0.0.1:53": "dns.nxdomain", "https://doh.example/dns-query": "genuine"}}


def test_offline_vantage_makes_the_summary_inconclusive():
    summary = diagnose(vantage="offline")
    assert summary.evidence["findings"][0].startswith("This vantage point looks offline")
    assert (summary.verdict, summary.reason) == ("inconclusive", "summary.offline")


def test_injection_and_racing_answers():
    racing = Result("dns", "a.org", "10.0.0.1:53", "dns.outside_networks", 1.0,
                    {"queries": [{"qtype": "A", "addresses": ["8.8.4.4"],
                                  "late_answers": [{"addresses": ["149.154.167.99"]}]}]})
    injected = Result("dns_injection", "a.org", "149.154.167.51:53", "dns.injected", 1.0, {})
    lines = findings(racing, injected)
    assert any("racing the first" in line for line in lines)
    assert any(line.startswith("DNS injection: 1/1 domains were answered by an address that runs no DNS")
               for line in lines)


# --- dispatch, controls and structured techniques ----------------------------------------------

def test_every_probe_kind_has_a_rule_and_an_unknown_kind_is_an_error():
    import pytest

    from netprobe.probes.kinds import KINDS
    d = Tallies()
    assert {kind.family for kind in KINDS.values()} | {"control"} <= set(d.handlers)
    for probe in ("web", "connect"):  # a family's name is no probe kind
        with pytest.raises(ValueError, match="no rule for probe kind"):
            d.add(Result(probe, "t.me", None, None, 1.0, {}))
    with pytest.raises(ValueError, match="no rule for probe kind 'quic'"):
        d.add(Result("quic", "t.me", None, None, 1.0, {}))


def test_techniques_are_data_with_counts_and_the_finding():
    summary = diagnose(tcp("1.1.1.1:443", "tcp.timeout"), tcp("1.1.1.2:443", None),
                       mtproto("mtproto", "intermediate", "1.1.1.2:443", "mtproto.reset"),
                       mtproto("mtproto_obfuscated2", "obfuscated2", "1.1.1.2:443", None))
    kinds = {t["kind"]: t for t in summary.evidence["techniques"]}
    assert set(kinds) == {"ip", "mtproto"}
    assert (kinds["ip"]["failed"], kinds["ip"]["tested"], kinds["ip"]["reasons"]) == (1, 2, {"tcp.timeout": 1})
    assert kinds["mtproto"]["targets"] == ["1.1.1.2:443"]
    assert "finding" not in kinds["ip"]
    assert summary.reason == "summary.blocking_observed"


def test_no_open_access_is_said_plainly_and_is_no_blocking():
    from netprobe.vantage import ControlBoard
    summary = diagnose(Result("tcp", "1.1.1.2:443", "1.1.1.2:443", "tcp.intercepted", 1.0, {}),
                       Result("https", "t.me", "1.1.1.2:443", "tls.untrusted_for_all", 1.0, {}),
                       vantage="no_open_access", board=ControlBoard())
    assert (summary.verdict, summary.reason) == ("inconclusive", "summary.no_open_access")
    findings = summary.evidence["findings"]
    # The interception is said first, with what the researcher can do; then that there is no way out.
    assert findings[0].startswith("This vantage point is intercepted (TLS)")
    assert "another network" in findings[0] and "atlas submit" in findings[0]
    assert findings[1].startswith("No open access:")
    assert any(f.startswith("Interception: TLS fails verification for every name") for f in findings)
    assert not any(f.startswith(("No blocking observed", "SNI:", "IP:")) for f in findings)


def test_failures_whose_controls_failed_are_named_as_not_judged():
    from netprobe.vantage import ControlBoard
    tallies = fold(dns("a.org", "dns.resolver_failing"), dns("b.org", "dns.resolver_failing"),
                   https("web.telegram.org", None))
    tallies.judged_stages.add("dns")
    summary = summarize("telegram", tallies, RunContext("online", ControlBoard()))
    assert summary.reason is None  # the service's own probe got through
    assert summary.evidence["findings"][0].startswith("No blocking observed")
    assert any(f.startswith("Not judged: 2 DNS failures") for f in summary.evidence["findings"])


def test_blocking_seen_only_where_the_controls_changed_is_not_backed():
    from netprobe.vantage import ControlBoard, as_control
    def control(reason):
        return as_control(Result("control", "1.1.1.1:443", "1.1.1.1:443", reason, 1.0, {"stage": "tcp"}), "tcp")
    records = tcp("149.154.167.51:443", "tcp.timeout"), tcp("149.154.167.52:443", None)
    summary = diagnose(*records, board=ControlBoard([control(None)]),
                       second_board=ControlBoard([control("control.timeout")]))
    assert (summary.verdict, summary.reason) == ("inconclusive", "summary.network_changed")
    assert any(f.startswith("Controls: the network changed during the run") for f in summary.evidence["findings"])
    summary = diagnose(*records, board=ControlBoard([control(None)]), second_board=ControlBoard([control(None)]))
    assert summary.reason == "summary.blocking_observed"


def test_failures_with_no_control_of_their_stage_are_not_blocking():
    from netprobe.vantage import ControlBoard, judged
    # A file with no controls (or --no-default-controls): every failure is judged against nothing.
    records = [judged(tcp("149.154.167.51:443", "tcp.timeout"), ControlBoard(), "unknown"),
               judged(tcp("149.154.167.52:443", "tcp.refused"), ControlBoard(), "unknown"),
               judged(dns("t.me", "dns.nxdomain"), ControlBoard(), "unknown"),
               judged(mtproto("mtproto", "intermediate", "149.154.167.51:443", "mtproto.reset"), ControlBoard(),
                      "unknown")]
    summary = diagnose(*records, vantage="unknown")
    assert summary.reason != "summary.blocking_observed" and summary.verdict == "inconclusive"
    findings = summary.evidence["findings"]
    assert "Not judged: 1 DNS failures had no control of their own stage" in " ".join(findings)
    assert any(f.startswith("Not judged: 2 TCP failures had no control") for f in findings)
    assert any(f.startswith("Not judged: 1 MTProto failures had no control") for f in findings)
    assert not any(f.startswith(("IP:", "DNS:", "MTProto:")) for f in findings)


def test_http_controls_that_accept_any_answer_are_called_weak():
    from netprobe.vantage import ControlBoard, as_control, checked_http_control
    raw = Result("http", "www.apple.com", "17.253.144.10:80", None, 1.0,
                 {"address_source": "dns", "stage": "http", "http": {"status": 404, "headers": {}}})
    weak = as_control(checked_http_control(raw, None), "http")
    service = https("t.me", None, kind="http")
    assert any(f.startswith("Controls: plain HTTP passed only on control names whose genuine answer")
               for f in findings(service, board=ControlBoard([weak])))
    checked = as_control(checked_http_control(raw, {"status": 301, "location": "https://www.apple.com/",
                                                    "source": "s"}), "http")
    assert not any("weak controls" in f for f in findings(service, board=ControlBoard([weak, checked])))


def _judged_run(controls, *records, vantage="online"):
    """A run as the engine makes it: the controls on a board, every record judged against it."""
    from netprobe.vantage import ControlBoard, judged
    board = ControlBoard(controls)
    return diagnose(*(judged(record, board, vantage) for record in records), vantage=vantage, board=board)


def test_a_vantage_point_intercepted_for_all_is_said_first_and_is_no_blocking():
    # The real network of issue 18: the proxy's 400 from every data center, handshakes everywhere,
    # while one control's TCP connects and the DNS controls answer.
    from tests.test_vantage import A_SPARED_ADDRESS_IS_NOT_ENOUGH, PROXY_400, control_dns, control_tcp, mtproto_answered
    summary = _judged_run([control_tcp("1.1.1.1:443"), control_dns("example.com"), *A_SPARED_ADDRESS_IS_NOT_ENOUGH],
                          mtproto_answered("149.154.175.50:443", "mtproto.bad_response", PROXY_400),
                          tcp("91.108.8.17:443", None), dns("telegram.org", None))
    assert (summary.verdict, summary.reason) == ("inconclusive", "summary.intercepted")
    findings = summary.evidence["findings"]
    assert findings[0].startswith("This vantage point is intercepted (MTProto, TCP)")
    assert not any(f.startswith(("MTProto:", "IP:")) for f in findings)
    assert any("connections that must fail were accepted" in f for f in findings)


def test_an_impostor_for_telegram_alone_is_named_as_blocking():
    from tests.test_vantage import PORT_CASES, control_tcp, mtproto_answered
    controls = [control_tcp("1.1.1.1:443"), *PORT_CASES[4][1]]  # a DC answers 400, controls verify, negatives refused
    summary = _judged_run(controls, mtproto_answered("149.154.167.51:443", "mtproto.bad_response", "deadbeef"),
                          tcp("91.108.8.17:443", None))
    assert (summary.verdict, summary.reason) == ("blocked", "summary.blocking_observed")
    kinds = {t["kind"] for t in summary.evidence["techniques"]}
    assert "service_interception" in kinds
    assert any(f.startswith("Interception of the service: on port 443 (IPv4)") for f in summary.evidence["findings"])


def test_a_relay_that_answers_some_data_centers_itself_is_no_all_clear():
    # Found by a second review: DC1's resPQ is genuine, but DC2 got the path's own 400: the summary
    # must not say "No blocking observed: every probe that could conclude got through".
    from tests.test_vantage import (A_SPARED_ADDRESS_IS_NOT_ENOUGH, PROXY_400, RES_PQ, control_dns, control_tcp,
                                    mtproto_answered)
    summary = _judged_run([control_tcp("1.1.1.1:443"), control_dns("example.com"), *A_SPARED_ADDRESS_IS_NOT_ENOUGH],
                          mtproto_answered("149.154.175.50:443", None, RES_PQ),
                          mtproto_answered("149.154.167.51:443", "mtproto.bad_response", PROXY_400))
    assert summary.reason == "summary.intercepted"
    assert summary.evidence["findings"][0].startswith("This vantage point is intercepted (MTProto)")


def test_the_engines_diagnosis_states_what_its_context_says():
    # netprobe/engine.py sets the context on a Diagnosis as the controls come in; every field must reach the summary.
    from netprobe.diagnosis import Diagnosis
    from netprobe.vantage import ControlBoard, as_control
    def control(reason):
        return as_control(Result("control", "1.1.1.1:443", "1.1.1.1:443", reason, 1.0, {"stage": "tcp"}), "tcp")
    records = tcp("149.154.167.51:443", "tcp.timeout"), tcp("[2001:db8::1]:443", "tcp.timeout")
    context = RunContext("online", ControlBoard([control(None)]), frozenset({6}), ControlBoard([control("control.timeout")]))
    d = Diagnosis("telegram")
    d.vantage, d.board, d.offline_families, d.second_board = "online", context.board, {6}, context.second_board
    for record in records:
        d.add(record)
    expected = diagnose(*records, **{k: getattr(context, k) for k in ("vantage", "board", "offline_families",
                                                                       "second_board")})
    assert d.result().evidence == expected.evidence and d.result().reason == expected.reason == "summary.network_changed"
    assert any(f.startswith("IPv6 looks offline") for f in expected.evidence["findings"])
