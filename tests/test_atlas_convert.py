"""RIPE Atlas results -> records: each kind of real result reads as a careful reader reads it,
and each probe is judged against the controls measured from that probe.

The results are real (tests/data/atlas/SOURCES.md says where each comes from).  Where a test
regroups results under one probe id, to have controls and targets from "the same probe" and
run, it says so, and says every other change (a control measurement's name and id, a time);
nothing else about a result is changed here.  Beside each case is the conclusion a careful
reader draws from it.  No test touches the network.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from netprobe.interop import atlas
from netprobe.interop.chaincheck import load_store
from netprobe.classify import REASONS
from netprobe.targets import load_builtin, load_target_file

DATA = Path(__file__).parent / "data" / "atlas"


def load(name: str) -> list[dict]:
    return json.loads((DATA / name).read_text())


@pytest.fixture(scope="module")
def targets():
    return load_target_file(DATA / "targets.toml")


@pytest.fixture(scope="module")
def store():
    """The tests' own trust store (roots.pem, SOURCES.md), not the machine's."""
    return load_store(str(DATA / "roots.pem"))


def convert(results, targets, store, **context):
    return atlas.convert(results, atlas.Context(targets, store=store, **context))


def records_of(conversion, probe=None, kind=None):
    return [r for r, _, label in conversion.records
            if (probe is None or label == f"atlas:{probe}") and (kind is None or r.probe == kind)]


def one(conversion, probe, kind):
    found = records_of(conversion, probe, kind)
    assert len(found) == 1, found
    return found[0]


def pick(name: str, prb: int) -> list[dict]:
    """The result of probe `prb` in a file."""
    return [r for r in load(name) if r["prb_id"] == prb]


def as_probe(results: list[dict], prb: int) -> list[dict]:
    """Copies of real results, regrouped under probe id `prb` (the only change)."""
    regrouped = copy.deepcopy(results)
    for result in regrouped:
        result["prb_id"] = prb
    return regrouped


def www_control(prb: int, source_prb: int = 1003, name: str = "sslcert-torproject-1443369.json") -> dict:
    """A genuine torproject.org sslcert result (probe 1003's in msm 1443369 by default: DigiCert's
    *.torproject.org chain, 2014-02-18) presented as the control measurement of www.torproject.org
    (which that wildcard certificate covers) from probe `prb`: prb_id, dst_name and msm_id (99906,
    made up) are changed, the time and everything else are not."""
    result = copy.deepcopy(pick(name, source_prb)[0])
    result.update(prb_id=prb, dst_name="www.torproject.org", msm_id=99906)
    return result


def observed(record) -> str | None:
    """The reason the result itself showed, before it was weighed against the controls."""
    return record.evidence.get("observed_reason", record.reason)


def summaries(conversion, probe):
    return records_of(conversion, probe, "summary")


# --- what is asked --------------------------------------------------------------------------

def test_definitions_cover_names_controls_and_endpoints_with_the_probe_resolver_and_sni():
    telegram = load_builtin()
    defs = atlas.definitions(telegram)
    dns = [d for d in defs if d["type"] == "dns"]
    tls = [d for d in defs if d["type"] == "sslcert"]
    tcp = [d for d in defs if d["type"] == "traceroute"]
    names = {d.name for d in (*telegram.domains, *telegram.control_domains)}
    assert {(d["query_argument"], d["query_type"]) for d in dns} == {(n, q) for n in names for q in ("A", "AAAA")}
    assert all(d["use_probe_resolver"] and d["include_abuf"] for d in dns)
    assert {d["target"] for d in tls} == names
    assert all(d["hostname"] == d["target"] and d["resolve_on_probe"] and d["port"] == 443 for d in tls)
    endpoints = {str(e) for e in telegram.controls} | {str(t.endpoint) for t in telegram.endpoints}
    assert {f"[{d['target']}]:{d['port']}" if d["af"] == 6 else f"{d['target']}:{d['port']}" for d in tcp} == endpoints
    assert all(d["protocol"] == "TCP" and d["size"] == 0 and d["packets"] == 3 for d in tcp)
    # Controls come first, so that a partial submission still has them.
    assert defs[0]["query_argument"] == telegram.control_domains[0].name


def test_measure_selects_kinds():
    defs = atlas.definitions(load_builtin(), ["tls"])
    assert {d["type"] for d in defs} == {"sslcert"}


def test_credit_estimate_follows_the_documented_table():
    defs = [{"type": "dns", "protocol": "UDP"}, {"type": "dns", "protocol": "TCP"}, {"type": "sslcert"},
            {"type": "traceroute", "packets": 3, "size": 0}, {"type": "traceroute", "packets": 1, "size": 2000}]
    cost = atlas.estimate_credits(defs, probes=5)
    # one-off: twice the periodic price per result
    assert cost["per_probe"] == 2 * (10 + 20 + 10 + 30 + 20)
    assert cost["total"] == cost["per_probe"] * 5


def test_probe_sources():
    sources = atlas.probe_sources(["vn"], [45899, 7552], [1, 2, 2], 4)
    assert sources == [{"type": "country", "value": "VN", "requested": 4},
                       {"type": "asn", "value": 45899, "requested": 4},
                       {"type": "asn", "value": 7552, "requested": 4},
                       {"type": "probes", "value": "1,2", "requested": 2}]


# --- each kind of result, read as observed (no controls in the batch) ------------------------

def test_dns_results_as_observed(targets, store):
    """What each DNS result showed; how it is judged without controls is tested below."""
    results = load("dns-1xbet-9211416.json") + load("dns-www.ripe.net-1421267.json") + \
        load("dns-ipv4only-arpa-9386425.json") + load("sagan-dns-nxdomain-2815716.json")
    out = convert(results, targets, store)
    by_resolver = {r.address: r for r in records_of(out, 4062)}
    assert by_resolver["195.113.83.55:53"].reason is None               # genuine answers
    assert by_resolver["[2001:718:1e06::55]:53"].reason is None
    assert observed(by_resolver["147.231.12.1:53"]) == "dns.refused"
    assert observed(one(out, 30410, "dns")) == "dns.timeout"               # resultset with only a timeout
    assert observed(one(out, 10024, "dns")) == "dns.timeout"               # top-level error, no result
    assert one(out, 10024, "dns").address == "172.18.8.1:53"
    assert one(out, 11891, "dns").reason is None                        # the probe's own resolver
    assert observed(one(out, 6068, "dns")) == "dns.no_answer"              # NOERROR, no AAAA
    assert observed(one(out, 11879, "dns")) == "dns.timeout"
    assert one(out, 11879, "dns").target == "ipv4only.arpa"             # named from its measurement
    nx = one(out, 11602, "dns")
    assert (observed(nx), nx.evidence["observed_verdict"]) == ("dns.nxdomain", "blocked")
    assert nx.evidence["queries"][0]["rcode"] == "NXDOMAIN"
    record = by_resolver["195.113.83.55:53"]
    assert record.evidence["queries"][0]["addresses"] == ["190.105.194.58", "190.121.210.133"]
    raw = results[0]
    assert record.evidence["atlas"] == {"probe_id": 4062, "msm_id": 9211416, "timestamp": raw["timestamp"],
                                        "firmware": raw["fw"]}
    assert record.measured_at == atlas.rfc3339(raw["timestamp"]) and record.measured_at.startswith("2017-08-28T")


def test_a_and_aaaa_of_one_probe_and_resolver_become_one_record(targets, store):
    """The A result of msm 1421267 (probe 10080, resolver 8.8.8.8), and the same result presented as
    the AAAA measurement's (msm id and query type changed in the definition only): one dns record."""
    a = load("dns-www.ripe.net-1421267.json")[0]
    aaaa = copy.deepcopy(a)
    aaaa["msm_id"] = 1421268
    definitions = {1421267: {"type": "dns", "query_argument": "www.ripe.net", "query_type": "A"},
                   1421268: {"type": "dns", "query_argument": "www.ripe.net", "query_type": "AAAA"}}
    out = convert([a, aaaa], targets, store, definitions=definitions)
    record = one(out, 10080, "dns")
    assert [q["qtype"] for q in record.evidence["queries"]] == ["A", "AAAA"]
    assert record.evidence["atlas"]["msm_ids"] == [1421267, 1421268]


def test_sslcert_results_as_observed(targets, store):
    """What each sslcert result showed; how it is judged without controls is tested below."""
    out = convert(load("sslcert-torproject-1443369.json") + load("sslcert-torproject-opendns-1443162.json") +
                  load("sagan-sslcert-alert-3322890.json") + load("sagan-sslcert-dnserr-1006864.json"),
                  targets, store)
    genuine = one(out, 1003, "https")
    assert genuine.reason is None and genuine.address == "86.59.30.40:443"
    assert genuine.evidence["tls"]["verified"] is True
    assert genuine.evidence["tls"]["certificates"][0]["subject"].startswith("CN=*.torproject.org")
    # China, 2014: DNS sent the probe to an address that is not torproject's; the timeout there is
    # only a symptom.
    injected = one(out, 1008, "https")
    assert observed(injected) == "dns.outside_networks"
    assert injected.evidence["observed_after_dns"] == "tcp.timeout"
    # The probe's own resolver failed.
    assert observed(one(out, 483, "https")) == "dns.servfail"
    assert one(out, 483, "https").address is None
    assert observed(one(out, 517, "https")) == "dns.servfail"
    # A corporate TLS proxy (DSV): the name matches, and the chain the proxy sent stops at an
    # issuer it did not send (DSV Enterprise CA 1), as a public chain with a left-out intermediate
    # does too: a root today's store lacks cannot be checked, so it is no failure (issue 18).
    dsv = one(out, 2844, "https")
    assert (dsv.verdict, dsv.reason) == ("inconclusive", "tls.unknown_issuer")
    assert dsv.evidence["tls"]["verify_error"] == "unknown_issuer"
    assert "DSV Enterprise CA 1" in dsv.evidence["tls"]["verify_message"]
    # OpenDNS answered with its own address (a filtering resolver): DNS, not TLS.
    opendns = one(out, 12318, "https")
    assert observed(opendns) == "dns.outside_networks"
    assert opendns.evidence["observed_after_dns"] == "tls.bad_certificate"
    assert one(out, 12318, "https").evidence["tls"]["verify_error"] == "name_mismatch"
    alert = one(out, 10008, "https")
    assert observed(alert) == "tls.alert"
    assert alert.evidence["tls"]["alert"] == {"level": 2, "description": 40, "name": "handshake_failure"}


def test_an_alert_protocol_version_is_atlas_speaking_tls_1_2_not_a_block(targets, store):
    """The real alert result of msm 3322890 with its description changed from 40 to 70."""
    result = load("sagan-sslcert-alert-3322890.json")[0]
    result["alert"]["decription"] = 70
    record = one(convert([result], targets, store), 10008, "https")
    assert (record.reason, record.verdict) == ("tls.old_version", "inconclusive")


def test_tcp_traceroutes_as_observed(targets, store):
    files = ["firmware-traceroute-tcp-4T.json", "firmware-traceroute-tcp-6T.json",
             "firmware-traceroute-tcp-p443.json", "adapted-traceroute-tcp-rst.json",
             "adapted-traceroute-tcp-silence.json", "adapted-traceroute-tcp-icmp-err-H.json",
             "adapted-traceroute-tcp-neterror.json"]
    out = convert([r for f in files for r in load(f)], targets, store)
    syn_ack = one(out, 99001, "tcp")
    # A SYN-ACK is what a box accepting every connection sends too, and Atlas tries no connection that
    # must fail: not shown to be the service's (the observation kept).
    assert (syn_ack.target, syn_ack.reason, syn_ack.verdict) == ("193.0.0.164:80", "tcp.unproven", "inconclusive")
    assert syn_ack.evidence["observed_verdict"] == "reachable"
    assert syn_ack.evidence["traceroute"]["deciding_hop"]["replies"][0]["flags"] == "SA"
    assert one(out, 99002, "tcp").target == "[2001:67c:2e8:3::c100:a4]:80"
    assert one(out, 99003, "tcp").reason == "tcp.unproven"
    assert observed(one(out, 99004, "tcp")) == "tcp.refused"
    silence = one(out, 11106, "tcp")
    assert (silence.target, observed(silence)) == ("91.198.174.225:443", "tcp.timeout")
    assert silence.evidence["traceroute"]["replied_hops"] > 0
    reasons = sorted(observed(r) for r in records_of(out, 82, "tcp"))
    assert reasons == ["tcp.no_route", "tcp.unreachable"]
    assert REASONS["tcp.no_route"][0] == "inconclusive"


def test_what_netprobe_does_not_judge_is_skipped_and_counted(targets, store):
    results = load("traceroute-udp-facebook-3082698.json") + load("sagan-traceroute-icmp-err-H-1019825.json")
    results += [{"type": "ping", "prb_id": 1, "msm_id": 1, "timestamp": 1500000000, "fw": 4790},
                "not an object", {"type": "dns"}, {"type": "sslcert", "prb_id": "x", "msm_id": 2}]
    out = convert(results, targets, store)
    assert out.records == []
    assert out.unparseable == 3
    assert out.skipped["traceroutes over UDP (netprobe judges TCP traceroutes: a port's reachability)"] == 8
    assert sum(out.skipped.values()) + out.unparseable == len(results)


def test_results_for_other_targets_are_skipped(store):
    out = convert(load("dns-1xbet-9211416.json"), load_builtin(), store)
    assert out.records == []
    assert out.skipped["results for targets not in the target set telegram"] == 2


def test_hostile_results_never_crash_and_stay_capped(targets, store):
    base = load("sagan-sslcert-alert-3322890.json")[0]
    hostile = []
    for key, value in [("dst_name", "x" * 100000), ("err", "\x1b[2J" * 5000), ("cert", ["junk"] * 10000),
                       ("alert", "not a dict"), ("dst_addr", ["list"]), ("fw", "99999999999"),
                       ("timestamp", 10**15), ("dst_port", -5), ("cert", [{"a": 1}])]:
        result = copy.deepcopy(base)
        result[key] = value
        hostile.append(result)
    dns = load("sagan-dns-nxdomain-2815716.json")[0]
    for abuf in ("!!!", "A" * 100000, ""):
        result = copy.deepcopy(dns)
        result["result"]["abuf"] = abuf
        hostile.append(result)
    out = convert(hostile, targets, store)
    for record, _, _ in out.records:
        text = json.dumps(record.evidence)
        assert len(text) < 20000
        assert "\x1b" not in text


# --- judged against the controls of the same probe and run ------------------------------------

# Real results with no control measured from their probe: every failure is inconclusive, with
# a reason that says so and the observed reason kept.  (file, probe, record address, observed
# reason, judged reason) and, beside each, what a careful reader concludes.
NO_CONTROL_CASES = [
    # 147.231.12.1 REFUSED 1xbet.com while the probe's two other resolvers answered it: nothing shows
    # that resolver answers any name for this probe (many refuse clients outside their network).
    ("dns-1xbet-9211416.json", 4062, "147.231.12.1:53", "dns.refused", "dns.resolver_no_control"),
    # The probe's resolver 80.92.240.6 never answered: a silent resolver says nothing of 1xbet.com.
    ("dns-1xbet-9211416.json", 30410, "80.92.240.6:53", "dns.timeout", "dns.resolver_no_control"),
    # Google's DNS64 gave NOERROR and no AAAA for ipv4only.arpa (NODATA): the resolver's answer about
    # the name, with nothing to compare it with.
    ("dns-ipv4only-arpa-9386425.json", 6068, "[2001:4860:4860::6464]:53", "dns.no_answer",
     "dns.resolver_no_control"),
    # The same resolver did not answer another probe at all: that probe's path or the resolver.
    ("dns-ipv4only-arpa-9386425.json", 11879, "[2001:4860:4860::6464]:53", "dns.timeout",
     "dns.resolver_no_control"),
    # Probe 10024's own local resolver (172.18.8.1, a private address) was dead: a home network's
    # broken resolver, not a block of www.ripe.net.
    ("dns-www.ripe.net-1421267.json", 10024, "172.18.8.1:53", "dns.timeout", "dns.resolver_no_control"),
    # NXDOMAIN for aardvark.nlnet.nl (a name in NLnet Labs' DNSSEC test zone, which does not exist):
    # an answer about the name, but no control name shows this resolver tells the truth.
    ("sagan-dns-nxdomain-2815716.json", 11602, "[2a04:b900::1:0:0:12]:53", "dns.nxdomain", "dns.no_control"),
    # sslcert's dnserr: the probe's own resolver failed ("non-recoverable failure"), on a CERNET
    # probe and others; no control name's lookup from those probes shows the resolver works.
    ("sslcert-torproject-1443369.json", 483, None, "dns.servfail", "dns.resolver_no_control"),
    ("sslcert-torproject-1443369.json", 12214, None, "dns.servfail", "dns.resolver_no_control"),
    ("sagan-sslcert-dnserr-1006864.json", 517, None, "dns.servfail", "dns.resolver_no_control"),
    # China 2014: the probe's resolver gave one of the GFW's published fake addresses for
    # torproject.org. Very likely injection — but with no control name resolved by that probe,
    # netprobe's rule does not call it blocked; the evidence keeps what was seen.
    ("sslcert-torproject-1443369.json", 1008, "216.234.179.13:443", "dns.outside_networks", "dns.no_control"),
    # OpenDNS sent a US probe to its own address (*.opendns.com certificate): a filtering resolver,
    # but no control shows how it answers other names from that probe.
    ("sslcert-torproject-opendns-1443162.json", 12318, "204.194.238.143:443", "dns.outside_networks",
     "dns.no_control"),
    # aus5.mozilla.org answered handshake_failure: the server's choice or a middlebox, unknowable
    # without a control name's handshake from the same probe.
    ("sagan-sslcert-alert-3322890.json", 10008, "63.245.213.47:443", "tls.alert", "tls.no_control"),
    # TCP traceroutes (adapted: see SOURCES.md) ending in a reset, silence, an ICMP unreachable, with
    # no TCP control from the probe: the path's state is unknown.
    ("adapted-traceroute-tcp-rst.json", 99004, "193.0.0.164:80", "tcp.refused", "tcp.no_control"),
    ("adapted-traceroute-tcp-silence.json", 11106, "91.198.174.225:443", "tcp.timeout", "tcp.no_control"),
    ("adapted-traceroute-tcp-icmp-err-H.json", 82, "[2001:6b0:e:3::1]:443", "tcp.unreachable", "tcp.no_control"),
]


@pytest.mark.parametrize("name, prb, address, seen, reason", NO_CONTROL_CASES)
def test_a_failure_with_no_control_from_the_same_probe_is_inconclusive(targets, store, name, prb, address, seen,
                                                                        reason):
    out = convert(load(name), targets, store)
    [record] = [r for r in records_of(out, prb) if r.probe != "summary" and r.address == address]
    assert (record.verdict, record.reason) == ("inconclusive", reason)
    assert REASONS[reason][0] == "inconclusive"
    assert record.evidence["observed_reason"] == seen
    assert record.evidence["observed_verdict"] in ("blocked", "reset")
    assert record.evidence["controls"] == {"stage": seen.partition(".")[0], "state": "none",
                                           "scope": "same probe, same run"}
    [summary] = summaries(out, prb)
    assert summary.reason in (None, "summary.nothing_concluded")  # never "blocking observed"
    assert summary.evidence["findings"][0].startswith("Not judged: 1 failure (")
    assert summary.evidence["no_control"] == {reason: {record.probe: 1}}


def test_none_of_the_shared_files_reads_blocked_without_a_control(targets, store):
    """All the real results, each probe alone: no record and no summary says blocked."""
    files = sorted(p.name for p in DATA.glob("*.json"))
    out = convert([r for f in files for r in load(f)], targets, store)
    assert out.records
    assert [(r.probe, r.target, r.reason) for r, _, _ in out.records if r.verdict in ("blocked", "reset")
            and r.probe != "control"] == []
    assert not any(r.reason == "summary.blocking_observed" for r, _, _ in out.records)


def test_a_failure_is_blocked_only_with_a_control_of_its_stage_from_the_same_probe_and_run(targets, store):
    """Each failure above, from probe 1008, 483 or 2844, regrouped with a genuine torproject.org
    result presented as www.torproject.org's control measured from the same probe seconds apart
    (www_control)."""
    results = [*pick("sslcert-torproject-1443369.json", 1008), www_control(1008),
               *pick("sslcert-torproject-1443369.json", 483), www_control(483),
               *pick("sslcert-torproject-1443369.json", 2844), www_control(2844)]
    out = convert(results, targets, store)
    # The probe's resolver gave www.torproject.org its genuine address and torproject.org a GFW fake
    # one: the same resolver, a different answer: DNS blocking.
    china = one(out, 1008, "https")
    assert (china.verdict, china.reason) == ("blocked", "dns.outside_networks")
    assert china.evidence["controls"]["state"] == "passed"
    assert china.evidence["controls"]["resolver"] == atlas.PROBE_RESOLVER
    # The probe's resolver answered the control name but failed on torproject.org.
    cernet = one(out, 483, "https")
    assert (cernet.verdict, cernet.reason) == ("blocked", "dns.servfail")
    # The same probe verified DigiCert's chain for www.torproject.org, and got DSV's for
    # torproject.org, whose issuer the proxy did not send: a chain to a root today's store lacks
    # cannot be checked, a control or not, so it is no block (a careful reader notes the proxy).
    dsv = one(out, 2844, "https")
    assert (dsv.verdict, dsv.reason) == ("inconclusive", "tls.unknown_issuer")
    for prb in (1008, 483):
        [summary] = summaries(out, prb)
        assert summary.reason == "summary.blocking_observed"
        assert one(out, prb, "control").verdict == "reachable"
    [summary] = summaries(out, 2844)
    assert summary.reason != "summary.blocking_observed"


def test_a_control_from_another_run_of_the_same_probe_does_not_count(targets, store):
    """Probe 2844's DSV result, and probe 1000's genuine torproject.org result of msm 1443162 as
    www.torproject.org's control from probe 2844 (prb_id and dst_name changed): measured 1 h 43 min
    earlier, another run, whose network need not be this one's."""
    control = copy.deepcopy(pick("sslcert-torproject-opendns-1443162.json", 1000)[0])
    control.update(prb_id=2844, dst_name="www.torproject.org")
    out = convert([*pick("sslcert-torproject-1443369.json", 2844), control], targets, store)
    dsv = one(out, 2844, "https")
    assert (dsv.verdict, dsv.reason) == ("inconclusive", "tls.unknown_issuer")
    runs = summaries(out, 2844)
    assert len(runs) == 2
    assert [s.evidence["atlas"]["run"]["from"] for s in runs] == ["2014-02-18T10:57:56.000Z",
                                                                   "2014-02-18T12:41:36.000Z"]
    assert all(s.reason != "summary.blocking_observed" for s in runs)


def test_a_resolver_that_failed_the_control_name_too_is_failing(targets, store):
    """Probe 4062's real 1xbet.com result, and the same result presented as the answer to the
    control name reviwiki.info (another msm id, 99907, whose definition names it): 147.231.12.1
    refused the control name too, so its REFUSED for 1xbet.com is the resolver's; the two
    resolvers that answered both stay genuine."""
    service = load("dns-1xbet-9211416.json")[0]
    control = copy.deepcopy(service)
    control["msm_id"] = 99907
    definitions = {99907: {"type": "dns", "query_argument": "reviwiki.info", "query_type": "A"}}
    out = convert([service, control], targets, store, definitions=definitions)
    refused = next(r for r in records_of(out, 4062, "dns") if r.address == "147.231.12.1:53")
    assert (refused.verdict, refused.reason) == ("inconclusive", "dns.resolver_failing")
    assert refused.evidence["observed_reason"] == "dns.refused"
    assert refused.evidence["controls"]["state"] == "failed"
    assert [r.reason for r in records_of(out, 4062, "dns") if r.address != "147.231.12.1:53"] == [None, None]
    [summary] = summaries(out, 4062)
    assert summary.reason is None  # no blocking observed: the only failure was the resolver's


def test_a_probe_whose_controls_failed_is_inconclusive_not_blocked(store):
    """Probe 1008's real torproject.org result read as a control (a connect that timed out) and the
    real TCP traceroute made silent (adapted file), both regrouped as probe 8, the traceroute's
    timestamp set to the sslcert's (the run they share): the TCP control of the same family and
    port failed too, so the target's silence says nothing."""
    from netprobe.targets import parse_target_text
    toml = b'''name = "t"
networks = ["91.198.174.0/24"]
control_domains = ["torproject.org"]
endpoints = ["91.198.174.225:443"]
negative_controls = []
'''
    targets = parse_target_text(toml, "test")
    control = pick("sslcert-torproject-1443369.json", 1008)
    trace = load("adapted-traceroute-tcp-silence.json")
    trace[0]["timestamp"] = control[0]["timestamp"]
    out = convert(as_probe(control + trace, 8), targets, store)
    record = one(out, 8, "tcp")
    assert record.verdict == "inconclusive"
    assert record.reason in ("tcp.path_failing", "vantage.ipv4_offline")
    assert record.evidence["observed_reason"] == "tcp.timeout"


def test_a_probe_without_controls_in_a_batch_that_has_them_has_no_control(targets, store):
    """Other probes' controls are not this probe's."""
    results = pick("sslcert-reviwiki-15418551.json", 2754) + pick("sslcert-torproject-1443369.json", 1008)
    out = convert(results, targets, store)
    record = one(out, 1008, "https")
    assert (record.verdict, record.reason) == ("inconclusive", "dns.no_control")


# --- certificates, as of the measurement ----------------------------------------------------------

def test_a_controls_chain_valid_when_measured_is_a_passed_control(targets, store):
    """www.google.com, 2018-07-19: Google Internet Authority G3 under GlobalSign Root CA - R2, a
    root Mozilla's store held then and dropped on 2022-05-18 (certifi's history). Valid then: the
    control passed, whatever today's store says."""
    out = convert(load("sslcert-google-15285836.json"), targets, store)
    control = one(out, 34704, "control")
    assert (control.verdict, control.reason) == ("reachable", None)
    assert control.evidence["tls"]["verified"] is True
    assert control.evidence["tls"]["root_removed"] == "2022-05-18"


def test_a_chain_that_cannot_be_checked_is_inconclusive_even_with_a_verified_control(targets, store):
    """Probe 1003's genuine torproject.org result with its chain cut to the leaf (adapted: "cert"
    keeps only its first certificate, as a server that leaves out its intermediate sends it), and
    a genuine www.torproject.org control (probe 1386's result, www_control) from the same probe and
    run that verified.  The leaf's issuer, DigiCert High Assurance CA-3, is in no store: whether
    the chain was good cannot be checked, so it is inconclusive, never blocked, controls or not."""
    result = copy.deepcopy(pick("sslcert-torproject-1443369.json", 1003)[0])
    result["cert"] = result["cert"][:1]
    out = convert([result, www_control(1003, source_prb=1386)], targets, store)
    record = one(out, 1003, "https")
    assert (record.verdict, record.reason) == ("inconclusive", "tls.unknown_issuer")
    assert record.evidence["tls"]["verify_error"] == "unknown_issuer"
    assert "cannot be checked" in record.evidence["tls"]["verify_message"]
    assert one(out, 1003, "control").verdict == "reachable"
    assert one(out, 1003, "summary").reason != "summary.blocking_observed"


def test_a_chain_to_a_root_dropped_since_verifies_with_a_store_that_lacks_it(targets, store):
    """Probe 1003's genuine torproject.org chain, judged with a store without DigiCert's roots (as
    a store of today, or a trimmed --ca-bundle): its root, DigiCert High Assurance EV Root CA, was
    in Mozilla's store in 2014 and was dropped on 2026-04-22: valid when measured, so reachable."""
    trimmed = tuple(c for c in store if "DigiCert" not in c.subject.rfc4514_string())
    assert len(trimmed) < len(store)
    out = convert(pick("sslcert-torproject-1443369.json", 1003), targets, trimmed)
    record = one(out, 1003, "https")
    assert (record.verdict, record.evidence["tls"]["root_removed"]) == ("reachable", "2026-04-22")


def chain_of(name: str, prb: int):
    result = pick(name, prb)[0]
    from datetime import datetime, timezone
    return result["cert"], result["dst_name"], datetime.fromtimestamp(result["timestamp"], timezone.utc)


@pytest.mark.parametrize("name, prb, asked, shift_days, verified, error", [
    # DigiCert's genuine torproject.org chain, 2014: the name's (its intermediate signed with SHA-1).
    ("sslcert-torproject-1443369.json", 1003, None, 0, True, None),
    # The same chain for another name: not that name's.
    ("sslcert-torproject-1443369.json", 1003, "example.org", 0, False, "name_mismatch"),
    # The same chain judged a day after its leaf expired (2016-05-03 + 1 day, an adapted time):
    # expired then, whatever it was earlier.
    ("sslcert-torproject-1443369.json", 1003, None, 806, False, "expired"),
    # DSV's proxy chain: up to a CA no public store ever held.
    # DSV's proxy: its chain stops at an issuer it did not send, as a left-out intermediate's does.
    ("sslcert-torproject-1443369.json", 2844, None, 0, False, "unknown_issuer"),
    # OpenDNS's *.opendns.com chain asked as torproject.org.
    ("sslcert-torproject-opendns-1443162.json", 12318, None, 0, False, "name_mismatch"),
    # Google 2018: valid then through a root dropped since.
    ("sslcert-google-15285836.json", 34704, None, 0, True, None),
    # COMODO 2018: valid then, and its root is still in the store.
    ("sslcert-reviwiki-15418551.json", 2754, None, 0, True, None),
])
def test_chains_are_judged_as_of_their_measurement(store, name, prb, asked, shift_days, verified, error):
    from datetime import timedelta

    from netprobe.interop.chaincheck import check_chain
    pems, dst_name, when = chain_of(name, prb)
    check = check_chain(pems, asked or dst_name, when + timedelta(days=shift_days), store)
    assert (check.verified, check.error) == (verified, error), check.detail


def test_a_dropped_root_counts_only_while_it_was_in_the_store():
    from datetime import datetime, timezone

    from netprobe.interop.chaincheck import retired_roots
    r2 = next(r for r in retired_roots() if "GlobalSign Root CA - R2" in r.cert.subject.rfc4514_string())
    assert r2.removed == datetime(2022, 5, 18, tzinfo=timezone.utc) and r2.since is None
    assert r2.trusted_at(datetime(2018, 7, 19, tzinfo=timezone.utc))
    assert not r2.trusted_at(datetime(2022, 6, 1, tzinfo=timezone.utc))
    dst = next(r for r in retired_roots() if "DST Root CA X3" in r.cert.subject.rfc4514_string())
    assert dst.trusted_at(datetime(2020, 1, 1, tzinfo=timezone.utc))


# --- runs and summaries -----------------------------------------------------------------------------

@pytest.mark.parametrize("pieces, runs", [
    # one submission: everything within minutes, each measurement once
    ([(1, 1000), (2, 1100), (3, 1500)], [[1, 2, 3]]),
    # a periodic measurement's next result starts the next run
    ([(1, 1000), (2, 1010), (1, 1240), (2, 1250)], [[1, 2], [1, 2]]),
    # more than RUN_WINDOW after the run's first result: another run
    ([(1, 1000), (2, 1000 + atlas.RUN_WINDOW + 1)], [[1], [2]]),
    ([(1, 1000), (2, 1000 + atlas.RUN_WINDOW)], [[1, 2]]),
])
def test_runs_of_a_probe(pieces, runs):
    made = [atlas.Piece("dns", 5, msm, ts, None) for msm, ts in pieces]
    assert [[p.msm for p in run] for run in atlas.runs_of(made)] == runs


def test_every_run_of_every_probe_gets_a_summary(targets, store):
    out = convert(load("sslcert-torproject-1443369.json"), targets, store)
    found = records_of(out, kind="summary")
    assert len(found) == len({label for _, _, label in out.records})
    assert all(s.target == "atlas-test" for s in found)
    # Genuine chains with no control: no blocking observed, and nothing claimed beyond that.
    assert one(out, 1003, "summary").reason is None
    assert one(out, 1003, "summary").evidence["atlas"]["run"] == {"from": "2014-02-18T12:41:34.000Z",
                                                                  "to": "2014-02-18T12:41:34.000Z"}


def test_results_given_twice_are_judged_once(targets, store):
    results = load("dns-1xbet-9211416.json")
    out = convert(results + copy.deepcopy(results), targets, store)
    assert len(summaries(out, 4062)) == 1 and len(records_of(out, 4062, "dns")) == 3
    assert out.skipped["results given twice (same probe, measurement and time)"] == 2


def test_run_ids_are_deterministic_and_differ_by_result(targets, store):
    results = load("sslcert-torproject-1443369.json")
    first = [(r.probe, r.target, run) for r, run, _ in convert(results, targets, store).records]
    again = [(r.probe, r.target, run) for r, run, _ in convert(results, targets, store).records]
    assert first == again
    assert len({run for _, _, run in first}) == len(first)


def test_running_measurements_hold_back_probes_that_have_not_reported(targets, store):
    results = load("sslcert-torproject-1443369.json")
    out = convert(results, targets, store, running=frozenset({1443369, 555}))
    assert out.records == [] and len(out.held) == len({r["prb_id"] for r in results})
    out = convert(results, targets, store, running=frozenset({1443369}))
    assert out.held == set() and out.records


def test_probe_metadata_is_stated_only_when_known(targets, store):
    results = load("sagan-dns-nxdomain-2815716.json")
    out = convert(results, targets, store, probes={11602: {"id": 11602, "asn_v4": 3333, "asn_v6": None,
                                                            "country_code": "NL"}})
    assert one(out, 11602, "dns").evidence["atlas"] == {"probe_id": 11602, "msm_id": 2815716,
                                                        "timestamp": results[0]["timestamp"], "firmware": 4700,
                                                        "asn_v4": 3333, "country": "NL"}
    out = convert(results, targets, store)
    assert "country" not in one(out, 11602, "dns").evidence["atlas"]
    # The probe's own addresses are never kept.
    text = json.dumps([r.evidence for r, _, _ in out.records])
    assert results[0]["from"] not in text and results[0]["src_addr"] not in text


def test_a_leaf_never_signs_a_leaf(store):
    """The genuine 2014 torproject.org leaf of probe 1003 put behind itself: no CA issued it in
    the chain sent, so it cannot be checked, whatever the signatures say."""
    from datetime import datetime, timezone

    from netprobe.interop.chaincheck import check_chain
    result = pick("sslcert-torproject-1443369.json", 1003)[0]
    when = datetime.fromtimestamp(result["timestamp"], timezone.utc)
    assert check_chain(result["cert"], "torproject.org", when, store).verified
    leaf_only = check_chain([result["cert"][0], result["cert"][0]], "torproject.org", when, store)
    assert (leaf_only.verified, leaf_only.error) == (False, "unknown_issuer")
    assert not check_chain(result["cert"], "example.org", when, store).verified
