"""RIPE Atlas results -> records: each kind of real result reads as a careful reader reads it,
and each probe is judged against the controls measured from that probe.

The results are real (tests/data/atlas/SOURCES.md says where each comes from).  Where a test
regroups results under one probe id, to have controls and targets from "the same probe",
it says so; nothing else about a result is changed here.  No test touches the network.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from netprobe import atlas
from netprobe.chaincheck import load_store
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
    return load_store(None)


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

def test_dns_results(targets, store):
    results = load("dns-1xbet-9211416.json") + load("dns-www.ripe.net-1421267.json") + \
        load("dns-ipv4only-arpa-9386425.json") + load("sagan-dns-nxdomain-2815716.json")
    out = convert(results, targets, store)
    by_resolver = {r.address: r for r in records_of(out, 4062)}
    assert by_resolver["195.113.83.55:53"].reason is None               # genuine answers
    assert by_resolver["[2001:718:1e06::55]:53"].reason is None
    assert by_resolver["147.231.12.1:53"].reason == "dns.refused"
    assert one(out, 30410, "dns").reason == "dns.timeout"               # resultset with only a timeout
    assert one(out, 10024, "dns").reason == "dns.timeout"               # top-level error, no result
    assert one(out, 10024, "dns").address == "172.18.8.1:53"
    assert one(out, 11891, "dns").reason is None                        # the probe's own resolver
    assert one(out, 6068, "dns").reason == "dns.no_answer"              # NOERROR, no AAAA
    assert one(out, 11879, "dns").reason == "dns.timeout"
    assert one(out, 11879, "dns").target == "ipv4only.arpa"             # named from its measurement
    nx = one(out, 11602, "dns")
    assert (nx.reason, nx.verdict) == ("dns.nxdomain", "blocked")
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


def test_sslcert_results(targets, store):
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
    assert injected.reason == "dns.outside_networks"
    assert injected.evidence["observed_after_dns"] == "tcp.timeout"
    # The probe's own resolver failed.
    assert one(out, 483, "https").reason == "dns.servfail"
    assert one(out, 483, "https").address is None
    assert one(out, 517, "https").reason == "dns.servfail"
    # A corporate TLS proxy (DSV): the name matches, the chain leads to no public CA, and no control
    # from that probe tells an intercepting CA from a removed one: not called a block.
    dsv = one(out, 2844, "https")
    assert (dsv.reason, dsv.verdict) == ("tls.unknown_issuer", "inconclusive")
    assert dsv.evidence["observed_reason"] == "tls.bad_certificate"
    assert "DSV Enterprise CA 1" in dsv.evidence["tls"]["verify_message"]
    # OpenDNS answered with its own address (a filtering resolver): DNS, not TLS.
    opendns = one(out, 12318, "https")
    assert opendns.reason == "dns.outside_networks"
    assert opendns.evidence["observed_after_dns"] == "tls.bad_certificate"
    assert one(out, 12318, "https").evidence["tls"]["verify_error"] == "name_mismatch"
    alert = one(out, 10008, "https")
    assert alert.reason == "tls.alert"
    assert alert.evidence["tls"]["alert"] == {"level": 2, "description": 40, "name": "handshake_failure"}


def test_an_alert_protocol_version_is_atlas_speaking_tls_1_2_not_a_block(targets, store):
    """The real alert result of msm 3322890 with its description changed from 40 to 70."""
    result = load("sagan-sslcert-alert-3322890.json")[0]
    result["alert"]["decription"] = 70
    record = one(convert([result], targets, store), 10008, "https")
    assert (record.reason, record.verdict) == ("tls.old_version", "inconclusive")


def test_tcp_traceroutes(targets, store):
    files = ["firmware-traceroute-tcp-4T.json", "firmware-traceroute-tcp-6T.json",
             "firmware-traceroute-tcp-p443.json", "adapted-traceroute-tcp-rst.json",
             "adapted-traceroute-tcp-silence.json", "adapted-traceroute-tcp-icmp-err-H.json",
             "adapted-traceroute-tcp-neterror.json"]
    out = convert([r for f in files for r in load(f)], targets, store)
    syn_ack = one(out, 99001, "tcp")
    assert (syn_ack.target, syn_ack.reason) == ("193.0.0.164:80", None)
    assert syn_ack.evidence["traceroute"]["deciding_hop"]["replies"][0]["flags"] == "SA"
    assert one(out, 99002, "tcp").target == "[2001:67c:2e8:3::c100:a4]:80"
    assert one(out, 99003, "tcp").reason is None
    assert one(out, 99004, "tcp").reason == "tcp.refused"
    silence = one(out, 11106, "tcp")
    assert (silence.target, silence.reason) == ("91.198.174.225:443", "tcp.timeout")
    assert silence.evidence["traceroute"]["replied_hops"] > 0
    reasons = sorted(r.reason for r in records_of(out, 82, "tcp"))
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


# --- judged against the controls of the same probe ----------------------------------------------

def test_a_failure_backed_by_passing_controls_of_the_same_probe_stays_blocked(targets, store):
    """Probe 2754's real reviwiki.info result (a verified control) and probe 1008's real
    torproject.org result (a Chinese fake address, connect timeout), both regrouped as probe 7."""
    results = as_probe(pick("sslcert-reviwiki-15418551.json", 2754) + pick("sslcert-torproject-1443369.json", 1008), 7)
    assert results[1]["dst_addr"] == "216.234.179.13"
    out = convert(results, targets, store)
    record = one(out, 7, "https")
    assert (record.verdict, record.reason) == ("blocked", "dns.outside_networks")
    assert record.evidence["controls"]["state"] == "passed"
    assert record.evidence["controls"]["resolver"] == atlas.PROBE_RESOLVER


def test_a_probe_whose_controls_failed_is_inconclusive_not_blocked(store):
    """Probe 1008's real torproject.org result read as a control (a connect that timed out) and the
    firmware's real TCP traceroute made silent (adapted file), both regrouped as probe 8: the TCP
    control of the same family and port failed too, so the target's silence says nothing."""
    from netprobe.targets import parse_target_text
    toml = b'''name = "t"
networks = ["91.198.174.0/24"]
control_domains = ["torproject.org"]
endpoints = ["91.198.174.225:443"]
negative_controls = []
'''
    targets = parse_target_text(toml, "test")
    results = as_probe(pick("sslcert-torproject-1443369.json", 1008) + load("adapted-traceroute-tcp-silence.json"), 8)
    out = convert(results, targets, store)
    record = one(out, 8, "tcp")
    assert record.verdict == "inconclusive"
    assert record.reason in ("tcp.path_failing", "vantage.ipv4_offline")
    assert record.evidence["observed_reason"] == "tcp.timeout"


def test_a_probe_without_controls_in_a_batch_that_has_them_is_undecided(targets, store):
    results = pick("sslcert-reviwiki-15418551.json", 2754) + pick("sslcert-torproject-1443369.json", 1008)
    out = convert(results, targets, store)
    record = one(out, 1008, "https")
    assert (record.verdict, record.reason) == ("inconclusive", "vantage.undecided")


def test_every_probe_gets_a_summary(targets, store):
    out = convert(load("sslcert-torproject-1443369.json"), targets, store)
    summaries = records_of(out, kind="summary")
    assert len(summaries) == len({label for _, _, label in out.records})
    assert all(s.target == "atlas-test" for s in summaries)


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


def test_a_chain_walk_never_lets_a_leaf_sign_a_leaf(store):
    """The genuine 2014 torproject.org leaf of probe 1003 put behind itself: its issuer in the chain
    is no CA, so the walk finds none, whatever the signatures say."""
    from datetime import datetime, timezone

    from netprobe.chaincheck import check_chain
    result = pick("sslcert-torproject-1443369.json", 1003)[0]
    when = datetime.fromtimestamp(result["timestamp"], timezone.utc)
    assert check_chain(result["cert"], "torproject.org", when, store).verified
    leaf_only = check_chain([result["cert"][0], result["cert"][0]], "torproject.org", when, store)
    assert not leaf_only.verified and leaf_only.error in ("unknown_issuer", "bad_signature")
    assert not check_chain(result["cert"], "example.org", when, store).verified
