"""OONI interop, the pure part: failure strings <-> reasons, real OONI measurements ->
records whose verdicts agree with OONI's own conclusions, netprobe runs -> measurements
a strict reader of OONI's base data format accepts, and back.

The measurements are real (tests/data/ooni/SOURCES.md says where each comes from);
no test here touches the network.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from netprobe.classify import (
    BLOCKED, INCONCLUSIVE, OONI_FAILURES, REACHABLE, REASONS, RESET, VERDICTS, ooni_failure, ooni_reason,
)
from netprobe.interop.ooni import (
    Meta, Skip, measurement_from_run, measurements_in, records_from_measurement, run_id_of,
)
from netprobe.records import RECORD_FIELDS, Result, RunInfo, encode, to_json_line
from netprobe.report import reading as history

DATA = Path(__file__).resolve().parent / "data" / "ooni"
FILES = sorted(p.name for p in DATA.glob("*.json"))
BAD = (BLOCKED, RESET)  # what netprobe calls a block


def load(name: str) -> tuple[dict, Meta]:
    """The one measurement in a data file (bare or an API answer), with what the API said."""
    [(measurement, meta, kind)] = list(measurements_in(json.loads((DATA / name).read_text())))
    assert kind is None, kind
    return measurement, meta


def imported(name: str) -> list[dict]:
    return records_from_measurement(*load(name))


def by_key(records: list[dict]) -> dict[tuple[str, str], dict]:
    keyed = {}
    for record in records:
        if record["probe"] == "summary":
            continue
        key = (record["probe"], record["target"])
        assert key not in keyed, f"two records for {key}"
        keyed[key] = record
    return keyed


# --- failure strings <-> reasons -------------------------------------------------------------

# df-007-errors, every string it lists, and the reason each must become at each stage.
DF007 = {
    "android_dns_cache_no_data": "dns.no_answer", "connection_aborted": "STAGE.reset",
    "connection_refused": "tcp.refused", "connection_reset": "STAGE.reset", "dns_bogon_error": "dns.bogon",
    "dns_no_answer": "dns.no_answer", "dns_non_recoverable_failure": "dns.bad_rcode",
    "dns_nxdomain_error": "dns.nxdomain", "dns_reply_with_wrong_query_id": "dns.malformed",
    "dns_refused_error": "dns.refused", "dns_server_misbehaving": "dns.bad_rcode",
    "dns_servfail_error": "dns.servfail", "dns_temporary_failure": "dns.servfail", "eof_error": "STAGE.eof",
    "host_unreachable": "STAGE.unreachable", "generic_timeout_error": "STAGE.timeout",
    "network_unreachable": "STAGE.no_route", "network_down": "STAGE.no_route", "network_reset": "STAGE.reset",
    "ssl_failed_handshake": "tls.alert", "ssl_invalid_hostname": "tls.bad_certificate",
    "ssl_unknown_authority": "tls.bad_certificate", "ssl_invalid_certificate": "tls.bad_certificate",
    "http_unexpected_status_code": "http.blockpage", "http_unexpected_redirect_url": "http.blockpage",
    "unknown_failure: read tcp 10.0.0.1:443: something new": "STAGE.unknown",
    "connection_already_closed": "STAGE.unknown", "interrupted": "STAGE.unknown",
    # ooniprobe-legacy
    "connection_refused_error": "tcp.refused", "tcp_timed_out_error": "STAGE.timeout",
    "deferred_timeout_error": "STAGE.timeout", "connection_lost_error": "STAGE.reset",
    "response_never_received": "STAGE.eof", "dns_name_error": "dns.nxdomain", "dns_lookup_error": "dns.unknown",
    "a string OONI never wrote": "STAGE.unknown",
}


@pytest.mark.parametrize("stage", ["tcp", "tls", "http"])
@pytest.mark.parametrize("failure", sorted(DF007))
def test_every_ooni_failure_string_has_its_reason(failure, stage):
    expected = DF007[failure].replace("STAGE", stage)
    assert ooni_reason(failure, stage) == expected
    assert expected in REASONS


@pytest.mark.parametrize("failure, reason", [
    ("generic_timeout_error", "dns.timeout"), ("connection_refused", "dns.port_unreachable"),
    ("connection_reset", "dns.reset"), ("eof_error", "dns.eof"), ("network_unreachable", "dns.no_route"),
    ("ssl_unknown_authority", "tls.bad_certificate"), ("bogus", "dns.unknown"),
])
def test_stream_failures_at_the_dns_stage(failure, reason):
    assert ooni_reason(failure, "dns") == reason


def test_the_table_names_only_declared_reasons():
    for failure, mapped in OONI_FAILURES.items():
        for stage in ("tcp", "tls", "http", "dns"):
            assert ooni_reason(failure, stage) in REASONS, failure


@pytest.mark.parametrize("reason", sorted(r for r in REASONS if r.split(".")[0] in ("tcp", "tls", "http", "dns")))
def test_every_reason_survives_ooni_and_back(reason):
    """What netprobe writes into an OONI measurement reads back as the same reason
    (a refused connection is always tcp.refused: that is where a refusal happens)."""
    stage = reason.split(".")[0]
    back = ooni_reason(ooni_failure(reason), stage)
    assert back == ("tcp.refused" if reason in ("tls.refused", "http.refused") else reason)


@pytest.mark.parametrize("reason, failure", [
    ("tcp.timeout", "generic_timeout_error"), ("tcp.refused", "connection_refused"),
    ("tls.reset", "connection_reset"), ("http.eof", "eof_error"), ("tcp.unreachable", "host_unreachable"),
    ("tcp.no_route", "network_unreachable"), ("dns.nxdomain", "dns_nxdomain_error"),
    ("dns.refused", "dns_refused_error"), ("dns.port_unreachable", "connection_refused"),
    ("dns.no_answer", "dns_no_answer"), ("dns.bogon", "dns_bogon_error"), ("tls.bad_certificate", "ssl_invalid_certificate"),
    ("dns.teredo", "unknown_failure: dns.teredo"), ("tcp.local_firewall", "unknown_failure: tcp.local_firewall"),
])
def test_netprobe_writes_ooni_words_where_ooni_has_them(reason, failure):
    assert ooni_failure(reason) == failure


# --- real measurements: OONI's conclusions are kept ---------------------------------------------

def test_every_data_file_is_listed_in_sources():
    sources = (DATA / "SOURCES.md").read_text()
    for name in FILES:
        stem = name.removesuffix(".json")
        family = stem.split("-web_connectivity-")[-1] if stem.startswith("netem-") else stem
        assert name in sources or family in sources, name


@pytest.mark.parametrize("name", FILES)
def test_records_of_real_measurements_are_valid_netprobe_records(name):
    measurement, meta = load(name)
    uid = meta.uid
    try:
        records = records_from_measurement(measurement, meta)
    except Skip as skip:
        assert measurement["test_name"] not in ("telegram", "web_connectivity"), skip
        return
    assert records
    cc, asn = measurement["probe_cc"], measurement["probe_asn"]
    for record in records:
        assert tuple(record) == RECORD_FIELDS
        assert record["schema"] == "netprobe/1"
        assert record["label"] == f"ooni:{cc}:{asn}"
        assert record["run_id"] == run_id_of(measurement)
        assert record["verdict"] in VERDICTS
        assert record["reason"] is None or record["reason"] in REASONS
        assert (record["reason"] is None) == (record["verdict"] == REACHABLE)
        assert record["probe"] in ("dns", "tcp", "http", "https", "summary")
        assert record["evidence"]["ooni"]["report_id"] == measurement["report_id"]
        if uid:
            assert record["evidence"]["ooni"]["measurement_uid"] == uid
        # `netprobe report` reads it.
        line = to_json_line(record).decode("ascii")
        assert history.parse_line(line)
        start = datetime.strptime(measurement["measurement_start_time"], "%Y-%m-%d %H:%M:%S")
        at = datetime.fromisoformat(record["measured_at"]).replace(tzinfo=None)
        assert start <= at <= start + timedelta(seconds=max(measurement.get("test_runtime") or 0, 0) + 120)
    # One summary per measurement, last, no earlier than any record: `report` leads with it.
    assert [r["probe"] for r in records].count("summary") == 1 and records[-1]["probe"] == "summary"
    assert records[-1]["measured_at"] == max(r["measured_at"] for r in records)


def web_record(records: list[dict], measurement: dict) -> dict:
    url = measurement["input"]
    scheme, host = url.split("://")[0], url.split("/")[2]
    return by_key(records)[(scheme, host)]


def of_test(test_name: str) -> list[str]:
    return [n for n in FILES if load(n)[0].get("test_name") == test_name]


@pytest.mark.parametrize("name", of_test("telegram"))
def test_no_telegram_measurement_holds_a_block_without_a_known_blockpage(name):
    """OONI's telegram test measures no control: every address and name it contacts is
    Telegram's.  So no failure in it is blocked or reset; each is STAGE.no_control, with
    what was observed (and OONI's flag) in the evidence."""
    records = records_from_measurement(*load(name))
    for record in records[:-1]:
        assert record["verdict"] not in BAD or "confirmed_by" in record["evidence"], record
        if record["verdict"] == INCONCLUSIVE and record["reason"].endswith("no_control"):
            assert record["evidence"]["observed_verdict"] in BAD
            assert record["evidence"]["observed_reason"] in REASONS
            assert "no control" in record["evidence"]["why"]
    assert records[-1]["reason"] != "summary.blocking_observed"


@pytest.mark.parametrize("name", of_test("web_connectivity"))
def test_web_connectivity_blocks_only_what_is_confirmed(name):
    """blocked only with a confirmation (a known blockpage: a DNS answer, a page or a
    redirect of the chain; or OONI's pipeline's `confirmed`); every other failure keeps
    what was observed and OONI's flags, inconclusive."""
    measurement, meta = load(name)
    records = records_from_measurement(measurement, meta)
    for record in records[:-1]:
        evidence = record["evidence"]
        if record["verdict"] in BAD:
            assert evidence["confirmed_by"], record
        if record["reason"] and record["reason"].endswith((".unconfirmed", "no_control")):
            assert evidence["observed_verdict"] in BAD and evidence["observed_reason"] in REASONS
            assert evidence["ooni_flags"]["blocking"] == measurement["test_keys"].get("blocking")
    blocked = any(r["verdict"] in BAD for r in records[:-1])
    assert (records[-1]["reason"] == "summary.blocking_observed") == blocked


# What each real file says, record by record where it matters: (reason, verdict, observed reason),
# the observed reason being what the probe saw before the judgment (None when it stands as seen).
# Beside each, the conclusion a careful reader draws.
EXPECTED = {
    "telegram-RU-20221109.json": {
        # One GET got a 200 from web.telegram.org, the other timed out: the page came, no block.
        ("https", "web.telegram.org"): (None, REACHABLE, None),
        ("http", "web.telegram.org"): (None, REACHABLE, None),  # 301 to https://web.telegram.org/, on the service
        ("dns", "web.telegram.org"): (None, REACHABLE, None),  # 149.154.167.99 lies in Telegram's networks
        # A completed handshake, or a 501 to a POST, is what a box accepting every connection gives too, and
        # OONI tries no connection that must fail: not shown to be Telegram's (the page above is).
        ("tcp", "149.154.175.50:443"): ("tcp.unproven", INCONCLUSIVE, None),
        ("http", "149.154.167.91:443"): ("http.unproven", INCONCLUSIVE, None),
    },
    "telegram-DE-20170407.json": {
        # One DC silent while the others connect: an outage, a lost route or a block of one address;
        # the test has nothing but Telegram to compare with, so nothing tells them apart.
        ("tcp", "149.154.175.50:443"): ("tcp.no_control", INCONCLUSIVE, "tcp.timeout"),
        ("tcp", "149.154.175.50:80"): ("tcp.no_control", INCONCLUSIVE, "tcp.timeout"),
        ("tcp", "149.154.167.51:443"): ("tcp.unproven", INCONCLUSIVE, None),
        ("http", "149.154.175.50:80"): ("tcp.no_control", INCONCLUSIVE, "tcp.timeout"),
        # web.telegram.org refused: no other site was tried through the same path, so a refusal of
        # Telegram's web server and one of the path cannot be told apart (it was a reset before).
        ("https", "web.telegram.org"): ("tcp.no_control", INCONCLUSIVE, "tcp.refused"),
        ("http", "web.telegram.org"): ("tcp.no_control", INCONCLUSIVE, "tcp.refused"),
    },
    "telegram-IT-20191203.json": {  # early engine: requests without URLs; OONI's "ok" is all there is,
        # and a flag shows nothing of whose answer it was: not shown to be Telegram's.
        ("https", "web.telegram.org"): ("http.unproven", INCONCLUSIVE, None),
        ("tcp", "149.154.171.5:443"): ("tcp.unproven", INCONCLUSIVE, None),
    },
    "web_connectivity-IR-20220815-facebook-nontelegram.json": {
        # 10.10.34.36 is Iran's blockpage address (OONI's DNS fingerprint ooni.ir_10dot10_ipv4_1): blocked.
        ("dns", "www.facebook.com"): ("dns.bogon", BLOCKED, None),
        ("tcp", "10.10.34.36:443"): ("tcp.unconfirmed", INCONCLUSIVE, "tcp.timeout"),  # a consequence, not IP blocking
        ("https", "www.facebook.com"): ("dns.bogon", BLOCKED, None),
    },
    "web_connectivity-IR-20200302-fawikipedia-dns-fingerprint.json": {  # the same address, two years earlier
        ("dns", "fa.wikipedia.org"): ("dns.bogon", BLOCKED, None),
        ("https", "fa.wikipedia.org"): ("dns.bogon", BLOCKED, None),
        ("tcp", "10.10.34.36:443"): ("tcp.unconfirmed", INCONCLUSIVE, "tcp.timeout"),
    },
    "web_connectivity-RU-20200303-rutor-nontelegram.json": {
        # The chain ends on http://89.223.47.135/index.html, a page OONI's fingerprint ooni.ru_5 names.
        ("dns", "rutor.org"): (None, REACHABLE, None),
        ("tcp", "5.61.49.61:80"): (None, REACHABLE, None),
        ("http", "rutor.org"): ("http.known_blockpage", BLOCKED, "http.blockpage"),
    },
    "web_connectivity-ID-20250527-archive-302-blockpage.json": {
        # A 302 to http://lamanlabuh.aduankonten.id/, Indonesia's national blockpage: blocked, though
        # OONI's flags said accessible (blocking false).
        ("dns", "archive.org"): (None, REACHABLE, None),
        ("http", "archive.org"): ("http.known_blockpage", BLOCKED, None),
    },
    "web_connectivity-SK-20210120-wikispaces-dead-nxdomain.json": {
        # NXDOMAIN, and OONI's helper could not fetch the site either: a dead domain, not a block.
        ("dns", "www.wikispaces.com"): ("dns.unconfirmed", INCONCLUSIVE, "dns.nxdomain"),
    },
    "web_connectivity-CN-20170516-efindlove-search-rewrite.json": {
        # The ISP's resolver answers a name that does not exist (OONI's helper: no such name) with
        # its search page: a rewrite of unknown names, not a block.
        ("dns", "www.efindlove.com"): ("dns.unconfirmed", INCONCLUSIVE, "dns.outside_networks"),
        ("http", "www.efindlove.com"): ("dns.unconfirmed", INCONCLUSIVE, "dns.outside_networks"),
        ("tcp", "61.183.1.186:80"): (None, REACHABLE, None),
    },
    "web_connectivity-NL-20200229-fawikipedia-decode-bug.json": {
        # The probe could not decode the Persian page it got: its own bug, not the path's.
        ("https", "fa.wikipedia.org"): ("http.unknown", INCONCLUSIVE, None),
        ("tcp", "91.198.174.192:443"): (None, REACHABLE, None),
    },
    "web_connectivity-AU-20170725-feminist-private-portal.json": {
        # A Check Point portal at 192.168.22.1: the office's own firewall, which may stand between
        # every user and every site; not shown to block this one.
        ("http", "www.feminist.org"): ("http.unknown", INCONCLUSIVE, None),
        ("tcp", "192.124.249.6:80"): (None, REACHABLE, None),
    },
    "api-web_connectivity-IE-20200303-efindlove-httpdiff.json": {
        # A parked domain's page, different from the one OONI's helper got, matching no blockpage
        # (OONI's API: confirmed false): not a block.
        ("http", "www.efindlove.com"): ("http.unconfirmed", INCONCLUSIVE, "http.blockpage"),
    },
    "api-web_connectivity-AE-20191118-thepiratebay-reset.json": {
        # OONI's helper failed: no control of any kind, the reset kept as what was seen.
        ("http", "thepiratebay.org"): ("http.no_control", INCONCLUSIVE, "http.reset"),
        ("tcp", "162.159.137.79:80"): (None, REACHABLE, None),
    },
    "api-web_connectivity-RU-20201029-pokerroom-down.json": {
        ("http", "www.pokerroom.com"): ("http.unconfirmed", INCONCLUSIVE, "http.eof"),  # down for OONI's helper too
    },
    "api-web_connectivity-US-20230307-instagram-ok.json": {
        ("https", "www.instagram.com"): (None, REACHABLE, None),
        ("tcp", "[2a03:2880:f201:e5:face:b00c:0:4420]:443"): ("tcp.unconfirmed", INCONCLUSIVE, "tcp.timeout"),
    },
    # OONI's own simulated censors: what the simulation did is known, but the measurement alone
    # shows only an anomaly, unless a known blockpage address shows (dnsBlockingBOGON: 10.10.34.35).
    "netem-web_connectivity-tlsBlockingConnectionResetWithConsistentDNS.json": {
        ("https", "www.example.com"): ("tls.unconfirmed", INCONCLUSIVE, "tls.reset"),
        ("tcp", "93.184.216.34:443"): (None, REACHABLE, None),
    },
    "netem-web_connectivity-httpBlockingConnectionReset.json": {
        ("http", "www.example.com"): ("http.unconfirmed", INCONCLUSIVE, "http.reset"),
    },
    "netem-web_connectivity-tcpBlockingConnectTimeout.json": {
        ("tcp", "93.184.216.34:443"): ("tcp.unconfirmed", INCONCLUSIVE, "tcp.timeout"),
        ("https", "www.example.com"): ("tcp.unconfirmed", INCONCLUSIVE, "tcp.timeout"),
    },
    "netem-web_connectivity-dnsBlockingNXDOMAIN.json": {
        ("dns", "www.example.com"): ("dns.unconfirmed", INCONCLUSIVE, "dns.nxdomain"),
    },
    "netem-web_connectivity-dnsBlockingBOGON.json": {
        ("dns", "www.example.com"): ("dns.bogon", BLOCKED, None),
    },
    "netem-web_connectivity-dnsBlockingAndroidDNSCacheNoData.json": {
        ("dns", "www.example.com"): ("dns.unconfirmed", INCONCLUSIVE, "dns.no_answer"),
    },
    "netem-web_connectivity-badSSLWithUnknownAuthorityWithInconsistentDNS.json": {
        ("dns", "www.example.com"): ("dns.unconfirmed", INCONCLUSIVE, "dns.outside_networks"),
    },
    "netem-web_connectivity-websiteDownNXDOMAIN.json": {
        ("dns", "www.example.xyz"): ("dns.unconfirmed", INCONCLUSIVE, "dns.nxdomain"),  # no such site, for anyone
        ("http", "www.example.xyz"): ("dns.unconfirmed", INCONCLUSIVE, "dns.nxdomain"),
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_measurements_record_by_record(name):
    keyed = by_key(imported(name))
    for key, (reason, verdict, observed) in EXPECTED[name].items():
        record = keyed[key]
        assert (record["reason"], record["verdict"], record["evidence"].get("observed_reason")) == \
            (reason, verdict, observed), key


def test_a_single_data_center_failing_is_not_ip_blocking_and_says_why():
    record = by_key(imported("telegram-DE-20170407.json"))[("tcp", "149.154.175.50:443")]
    evidence = record["evidence"]
    assert (evidence["observed_reason"], evidence["observed_verdict"]) == ("tcp.timeout", BLOCKED)
    assert evidence["ooni_conclusion"] == {"telegram_tcp_blocking": False}
    assert evidence["ooni_failures"] == ["generic_timeout_error"]
    assert evidence["dc"] == 1  # netprobe's own target set knows which DC this is
    assert "telegram test measures no control" in evidence["why"]


def test_record_time_is_the_measurement_start_plus_the_operation_offset():
    keyed = by_key(imported("telegram-RU-20221109.json"))
    # measurement_start_time 2022-11-09 22:57:59; the GET that got its 200 has t = 4.068...
    assert keyed[("https", "web.telegram.org")]["measured_at"] == "2022-11-09T22:58:03.068Z"
    assert keyed[("tcp", "149.154.167.51:80")]["measured_at"] == "2022-11-09T22:57:59.047Z"
    # the DE measurement (ooniprobe 2.2.0) records no offsets: the start time
    assert by_key(imported("telegram-DE-20170407.json"))[("tcp", "149.154.167.51:443")]["measured_at"] == \
        "2017-04-07T01:33:25.000Z"


def test_an_api_answer_and_the_bare_measurement_are_the_same_run():
    bare = imported("telegram-RU-20221109.json")
    wrapped = imported("api-telegram-RU-20221109.json")
    strip = lambda records: [{k: v for k, v in r.items() if k != "evidence"} for r in records]  # noqa: E731
    assert strip(bare) == strip(wrapped)
    assert wrapped[0]["evidence"]["ooni"]["measurement_uid"] == "20221109225810.435617_RU_telegram_ecbc73cacd8ea566"
    assert "measurement_uid" not in bare[0]["evidence"]["ooni"]


def test_evidence_keeps_oonis_words_and_ids():
    record = by_key(imported("api-telegram-RU-20221109.json"))[("https", "web.telegram.org")]
    ooni = record["evidence"]["ooni"]
    assert ooni["report_id"] == "20221109T225726Z_telegram_RU_8402_n1_qnYloXASGMUg2G9O"
    assert ooni["test_name"] == "telegram" and "input" not in ooni  # the telegram test takes none
    assert record["evidence"]["ooni_failures"] == ["generic_timeout_error"]
    assert record["evidence"]["ooni_conclusion"]["telegram_web_status"] == "blocked"
    assert {r["url"] for r in record["evidence"]["requests"]} == {"https://web.telegram.org/"}


# --- what is not imported ------------------------------------------------------------------------

def skip_kind(measurement) -> str:
    with pytest.raises(Skip) as info:
        records_from_measurement(measurement)
    return str(info.value)


def test_unsupported_tests_and_formats_are_skipped_by_kind():
    assert skip_kind(load("api-ndt-AE-20191109-unsupported.json")[0]) == "unsupported test ndt"
    measurement = load("telegram-US-20221110.json")[0]
    assert skip_kind({**measurement, "data_format_version": "0.1.0"}) == "old data format 0.1.0"
    assert skip_kind({**measurement, "data_format_version": "0.5.0"}) == "newer data format 0.5.0"
    assert skip_kind({**measurement, "data_format_version": None}) == "unknown data format version"
    assert skip_kind({**measurement, "measurement_start_time": "yesterday"}) == "no measurement_start_time"
    assert skip_kind({**measurement, "test_keys": []}) == "no test_keys"
    assert skip_kind({"test_name": 5}) == "not a measurement"
    # 0.3.4 was an experimental version with the same keys: read (telegram-IT-20200111.json)
    assert imported("telegram-IT-20200111.json")


def test_json_values_that_hold_no_measurement():
    found = list(measurements_in([{"measurement_uid": "x", "measurement_url": "https://api.ooni.io/..."}, 3,
                                  {"raw_measurement": "{broken"}, {"hello": 1}]))
    assert [kind for _, _, kind in found] == ["API metadata without raw_measurement", "not a measurement",
                                              "broken raw_measurement", "not a measurement"]
    results = {"metadata": {}, "results": [json.loads((DATA / "api-telegram-RU-20221109.json").read_text())]}
    [(measurement, meta, kind)] = list(measurements_in(results))
    assert kind is None and meta.uid.endswith("_RU_telegram_ecbc73cacd8ea566")
    assert (meta.confirmed, meta.anomaly) == (False, True)  # OONI's pipeline: an anomaly, not confirmed


HOSTILE_VALUES = [None, True, -1, 1e308, "", "\x1b[2J\x1b]0;x\x07", "x" * 5000, [], {}, [1, "a", None],
                  {"failure": 7}, {"ip": "::1", "port": 70000}, "999.1.1.1", "[::1]:0", 10 ** 30]


def mutations(value, rng: random.Random, depth: int = 0):
    """`value` with one node replaced by something hostile, many times over."""
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        copied = dict(value)
        copied[key] = mutations(value[key], rng, depth + 1) if rng.random() < 0.7 else rng.choice(HOSTILE_VALUES)
        return copied
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        copied = list(value)
        copied[i] = mutations(value[i], rng, depth + 1) if rng.random() < 0.7 else rng.choice(HOSTILE_VALUES)
        return copied
    return rng.choice(HOSTILE_VALUES)


@pytest.mark.parametrize("name", ["telegram-RU-20221109.json", "telegram-DE-20170407.json",
                                  "web_connectivity-IR-20220815-facebook-nontelegram.json",
                                  "probecli-web_connectivity-IT-20231130-nexa-ok.json",
                                  "web_connectivity-ID-20250527-archive-302-blockpage.json",
                                  "web_connectivity-AU-20170725-feminist-private-portal.json"])
def test_hostile_values_anywhere_give_valid_records_or_a_skip(name):
    """A measurement is data from strangers: any node of it replaced by junk (wrong types,
    escapes, huge numbers, bad addresses) yields valid records or a counted skip, never
    an exception."""
    original = load(name)[0]
    rng = random.Random(1313)
    for _ in range(400):
        measurement = copy.deepcopy(original)
        for _ in range(rng.randint(1, 4)):
            measurement = mutations(measurement, rng)
        try:
            records = records_from_measurement(measurement)
        except Skip:
            continue
        for record in records:
            assert record["verdict"] in VERDICTS and (record["reason"] is None or record["reason"] in REASONS)
            line = to_json_line(record)
            assert line.isascii() and line.count(b"\n") == 1
            assert history.parse_line(line.decode("ascii"))


def test_a_label_is_never_taken_from_odd_text():
    measurement = dict(load("telegram-US-20221110.json")[0], probe_cc="\x1b[31", probe_asn="AS1;rm")
    assert records_from_measurement(measurement)[0]["label"] == "ooni:ZZ:AS0"


# --- netprobe runs -> OONI measurements ----------------------------------------------------------

START = datetime(2025, 5, 26, 3, 10, tzinfo=timezone.utc)


def result(probe, target, reason, ms, evidence, address=None, verdict=""):
    at = (START + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Result(probe, target, address if address is not None else target, reason, 40.0, evidence,
                  verdict=verdict, measured_at=at)


def run_records(tcp=("tcp.refused", None), web_reason=None, label="home") -> list[dict]:
    """A run shaped like a real one (the evidence keys the probes write), built from Results."""
    cert = {"subject": "CN=*.web.telegram.org", "sha256": "ab" * 32}
    http = {"request": "GET / HTTP/1.1 Host: web.telegram.org", "user_agent": "netprobe/0.1.0", "status": 200,
            "status_line": "HTTP/1.1 200 OK", "headers": {"server": "nginx", "content-type": "text/html"},
            "headers_complete": True, "body_prefix": {"hex": b"<html>hi".hex(), "length": 8, "truncated": False},
            "response_ms": 30.0}
    web_evidence = {"domain": "web.telegram.org", "port": 443, "addresses": ["149.154.167.99"],
                    "address_source": "dns", "address": "149.154.167.99", "connect": "ok", "connect_ms": 12.0,
                    "tls": {"sni": "web.telegram.org", "handshake_ms": 20.0, "version": "TLSv1.3",
                            "cipher": "TLS_AES_256_GCM_SHA384", "alpn": "http/1.1", "certificate": cert}}
    if web_reason is None:
        web_evidence["http"] = http
    elif web_reason.startswith("tls."):
        web_evidence["tls"] = {"sni": "web.telegram.org", "handshake_ms": 3000.0, "error": "TimeoutError"}
    run = RunInfo(label=label)
    results = [
        result("control", "1.1.1.1:443", None, 10, {"connect": "ok", "connect_ms": 9.0}),
        result("dns", "web.telegram.org", None, 60, {"resolver": "10.0.0.1:53", "queries": [
            {"qtype": "A", "transport": "udp", "rcode": "NOERROR", "addresses": ["149.154.167.99"],
             "answers": [{"name": "web.telegram.org.", "type": "A", "ttl": 300, "data": "149.154.167.99"}],
             "answers_dropped": 0, "duration_ms": 20.0},
            {"qtype": "AAAA", "transport": "udp", "rcode": "NOERROR", "addresses": [], "answers": [],
             "answers_dropped": 0, "duration_ms": 21.0}]}, address="10.0.0.1:53"),
    ]
    for i, reason in enumerate(tcp):
        evidence = {"dc": i + 1, "connect": "failed" if reason else "ok", "connect_ms": 30.0, "timeout_s": 3.0}
        results.append(result("tcp", f"149.154.175.{50 + i}:443", reason, 100 + i, evidence))
    results.append(result("tcp", "91.108.56.7:443", "tcp.timeout", 150, {"range": "91.108.56.0/22",
                                                                          "connect": "failed"}))
    for i, reason in enumerate(tcp):
        results.append(result("mtproto", f"149.154.175.{50 + i}:443",
                              reason.replace("tcp.", "mtproto.") if reason else None, 200 + i,
                              {"dc": i + 1, "transport": "intermediate"}))
    results.append(result("https", "web.telegram.org", web_reason, 300, web_evidence,
                          address="149.154.167.99:443"))
    results.append(result("summary", "telegram", "summary.blocking_observed" if web_reason else
                          "summary.nothing_concluded", 400, {"findings": ["SNI: ..."], "vantage": "online"},
                          address=""))
    records = [encode(r, run) for r in results]
    records[-1]["address"] = None
    return records


DF000_REQUIRED = {  # ooni/spec df-000, and ooni/data's BaseMeasurement (its strict reader)
    "annotations": dict, "data_format_version": str, "input": type(None), "measurement_start_time": str,
    "probe_asn": str, "probe_cc": str, "probe_ip": str, "report_id": str, "software_name": str,
    "software_version": str, "test_keys": dict, "test_name": str, "test_runtime": float,
    "test_start_time": str, "test_version": str,
}


def check_df000(measurement: dict) -> None:
    """A strict reader of OONI's base data format, as far as this test can be one."""
    for key, kind in DF000_REQUIRED.items():
        assert isinstance(measurement[key], kind), (key, measurement.get(key))
    assert measurement["data_format_version"] == "0.2.0"
    for key in ("measurement_start_time", "test_start_time"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", measurement[key])
    assert re.fullmatch(r"AS\d+", measurement["probe_asn"]) and re.fullmatch(r"[A-Z]{2}", measurement["probe_cc"])
    assert all(isinstance(v, str) for v in measurement["annotations"].values())
    tk = measurement["test_keys"]
    for entry in tk["tcp_connect"]:  # df-005
        assert isinstance(entry["ip"], str) and isinstance(entry["port"], int)
        assert isinstance(entry["status"]["success"], bool)
        assert entry["status"]["success"] == (entry["status"]["failure"] is None)
        assert isinstance(entry["t"], float) and isinstance(entry["t0"], float) and entry["t0"] <= entry["t"]
    for entry in tk["queries"]:  # df-002
        assert isinstance(entry["hostname"], str) and isinstance(entry["query_type"], str)
        assert entry["failure"] is None or isinstance(entry["failure"], str)
        for answer in entry["answers"]:
            assert answer["answer_type"] in ("A", "AAAA")
    for entry in tk["requests"]:  # df-001
        assert isinstance(entry["request"]["url"], str) and entry["request"]["method"] == "GET"
        assert isinstance(entry["response"]["code"], int)
        assert isinstance(entry["response"]["body"], (str, dict))
    for entry in tk["tls_handshakes"]:  # df-006
        assert isinstance(entry["server_name"], str) and entry["no_tls_verify"] is False
    for key in ("telegram_tcp_blocking", "telegram_http_blocking"):
        assert tk[key] in (True, False, None)
    assert tk["telegram_web_status"] in ("ok", "blocked", None)
    json.dumps(measurement, allow_nan=False)


def test_a_run_becomes_one_df000_measurement_in_the_telegram_shape():
    records = run_records(tcp=("tcp.refused", None))
    measurement = measurement_from_run(records)
    check_df000(measurement)
    assert measurement["test_name"] == "telegram" and measurement["software_name"] == "netprobe"
    assert (measurement["probe_cc"], measurement["probe_asn"]) == ("ZZ", "AS0")  # never looked up
    assert measurement["measurement_start_time"] == "2025-05-26 03:09:59"  # first probe started 40 ms early
    tk = measurement["test_keys"]
    assert [(e["ip"], e["status"]["failure"], e.get("tags")) for e in tk["tcp_connect"]][:3] == [
        ("149.154.175.50", "connection_refused", ["dc=1"]), ("149.154.175.51", None, ["dc=2"]),
        ("91.108.56.7", "generic_timeout_error", ["range=91.108.56.0/22"])]
    assert "1.1.1.1" not in {e["ip"] for e in tk["tcp_connect"]}  # controls are netprobe's, not the test's
    assert tk["telegram_tcp_blocking"] is False  # one DC connected
    assert tk["telegram_http_blocking"] is False  # one MTProto exchange got through
    assert (tk["telegram_web_status"], tk["telegram_web_failure"]) == ("ok", None)
    [request] = tk["requests"]
    assert request["request"]["url"] == "https://web.telegram.org/" and request["response"]["code"] == 200
    assert request["response"]["body"] == "<html>hi"
    [query_a, query_aaaa] = tk["queries"]
    assert query_a["answers"] == [{"answer_type": "A", "ipv4": "149.154.167.99", "ttl": 300}]
    assert query_aaaa["failure"] == "dns_no_answer"
    assert tk["tls_handshakes"][0]["tls_version"] == "TLSv1.3"
    assert tk["netprobe"]["records"] == sorted(records, key=lambda r: r["measured_at"])
    assert tk["netprobe"]["findings"] == ["SNI: ..."]


def test_given_country_and_network_are_written_as_given():
    measurement = measurement_from_run(run_records(), probe_cc="VN", probe_asn="AS45899")
    assert (measurement["probe_cc"], measurement["probe_asn"]) == ("VN", "AS45899")


@pytest.mark.parametrize("tcp, web_reason, flags", [
    (("tcp.timeout", "tcp.refused"), "tls.timeout",
     (True, True, "blocked", "generic_timeout_error")),  # every DC failed
    ((None, "tcp.timeout"), None, (False, False, "ok", None)),
    (("tcp.timeout",), "tls.reset", (True, True, "blocked", "connection_reset")),
])
def test_oonis_flags_follow_oonis_rules(tcp, web_reason, flags):
    tk = measurement_from_run(run_records(tcp=tcp, web_reason=web_reason))["test_keys"]
    assert (tk["telegram_tcp_blocking"], tk["telegram_http_blocking"], tk["telegram_web_status"],
            tk["telegram_web_failure"]) == flags


def test_an_offline_vantage_point_gives_no_blocking_flag():
    """ooniprobe would say telegram_tcp_blocking=true; netprobe's controls say the machine
    was offline, so the flag is null, not true."""
    records = run_records(tcp=("tcp.timeout", "tcp.timeout"))
    for record in records:
        if record["probe"] in ("tcp", "mtproto") and record["verdict"] in BAD:
            record["evidence"].update(vantage="offline", verdict_if_online=record["verdict"])
            record["verdict"] = INCONCLUSIVE
    tk = measurement_from_run(records)["test_keys"]
    assert tk["telegram_tcp_blocking"] is None and tk["telegram_http_blocking"] is None
    assert [e["status"]["failure"] for e in tk["tcp_connect"][:2]] == ["generic_timeout_error"] * 2


@pytest.mark.parametrize("tcp, web_reason", [(("tcp.refused", None), None), (("tcp.timeout",), "tls.timeout")])
def test_round_trip_keeps_every_record(tcp, web_reason):
    records = run_records(tcp=tcp, web_reason=web_reason)
    measurement = json.loads(json.dumps(measurement_from_run(records, "IT", "AS30722")))
    back = records_from_measurement(measurement)
    assert back == sorted(records, key=lambda r: r["measured_at"])


def test_the_telegram_shape_alone_reads_back_as_any_ooni_measurement():
    """An OONI pipeline sees only the telegram keys: import them without netprobe's own
    records (and so without its controls).  Every data center failed and OONI's flags say
    TCP blocking, but nothing else went through the path: inconclusive, observed kept."""
    measurement = measurement_from_run(run_records(tcp=("tcp.timeout", "tcp.refused"), web_reason="tls.reset"))
    assert measurement["test_keys"]["telegram_tcp_blocking"] is True
    del measurement["test_keys"]["netprobe"]
    measurement["software_name"] = "someone-else"
    keyed = by_key(records_from_measurement(measurement))
    observed = lambda r: (r["reason"], r["verdict"], r["evidence"]["observed_reason"])  # noqa: E731
    assert observed(keyed[("tcp", "149.154.175.50:443")]) == ("tcp.no_control", INCONCLUSIVE, "tcp.timeout")
    assert observed(keyed[("tcp", "149.154.175.51:443")]) == ("tcp.no_control", INCONCLUSIVE, "tcp.refused")
    assert keyed[("tcp", "149.154.175.51:443")]["evidence"]["dc"] == 2
    assert observed(keyed[("https", "web.telegram.org")]) == ("tls.no_control", INCONCLUSIVE, "tls.reset")
    assert keyed[("dns", "web.telegram.org")]["verdict"] == REACHABLE
    assert observed(keyed[("tcp", "91.108.56.7:443")]) == ("tcp.no_control", INCONCLUSIVE, "tcp.timeout")


def test_a_dns_answer_outside_telegrams_networks_is_judged_by_oonis_as_annotation():
    """An edited copy of a real measurement (not test data of its own): web.telegram.org
    answering an address outside the built-in networks is genuine when OONI annotated it
    with Telegram's AS, and DNS tampering when not."""
    measurement = copy.deepcopy(load("telegram-RU-20221109.json")[0])
    for query in measurement["test_keys"]["queries"]:
        for answer in query["answers"]:
            if answer["answer_type"] == "A":
                answer["ipv4"] = "93.184.216.34"  # example.com's, outside Telegram's networks
    assert by_key(records_from_measurement(measurement))[("dns", "web.telegram.org")]["verdict"] == REACHABLE
    for query in measurement["test_keys"]["queries"]:
        for answer in query["answers"]:
            answer["asn"] = 64496
    dns = by_key(records_from_measurement(measurement))[("dns", "web.telegram.org")]
    # an answer outside Telegram's networks, but no control name asked of the same resolver:
    # a resolver that answers every name alike (a portal) would look the same
    assert (dns["reason"], dns["verdict"], dns["evidence"]["observed_reason"]) == (
        "dns.no_control", INCONCLUSIVE, "dns.outside_networks")


def test_a_web_request_sent_where_a_forged_dns_answer_pointed_is_a_dns_block():
    """An edited copy of a real measurement (not test data of its own), shaped like
    Iran's: web.telegram.org answered with 10.10.34.35, every GET timing out there.  That
    address is a known blockpage's (OONI's DNS fingerprint ooni.ir_5): the DNS answer is
    blocked on its own, and it decided the GETs."""
    measurement = copy.deepcopy(load("telegram-RU-20221109.json")[0])
    for query in measurement["test_keys"]["queries"]:
        query["answers"] = [a for a in query["answers"] if a["answer_type"] == "A"]
        for answer in query["answers"]:
            answer.update(ipv4="10.10.34.35", asn=0)
    measurement["test_keys"]["requests"] = [r for r in measurement["test_keys"]["requests"]
                                            if r["failure"] or "web.telegram.org" not in r["request"]["url"]]
    keyed = by_key(records_from_measurement(measurement))
    dns = keyed[("dns", "web.telegram.org")]
    assert (dns["reason"], dns["verdict"]) == ("dns.bogon", BLOCKED)
    assert dns["evidence"]["confirmed_by"]["dns_fingerprint"]["name"] == "ooni.ir_5"
    web = keyed[("https", "web.telegram.org")]
    assert (web["reason"], web["verdict"], web["evidence"]["stage"]) == ("dns.bogon", BLOCKED, "dns")
    assert web["evidence"]["ooni_failures"] == ["generic_timeout_error"]


def test_the_same_answer_without_the_known_address_is_no_block():
    """The edit above with 10.77.0.1, a private address no fingerprint names (a home
    router's, a portal's): the answer is odd, but nothing confirms a block."""
    measurement = copy.deepcopy(load("telegram-RU-20221109.json")[0])
    for query in measurement["test_keys"]["queries"]:
        query["answers"] = [a for a in query["answers"] if a["answer_type"] == "A"]
        for answer in query["answers"]:
            answer.update(ipv4="10.77.0.1", asn=0)
    measurement["test_keys"]["requests"] = [r for r in measurement["test_keys"]["requests"]
                                            if r["failure"] or "web.telegram.org" not in r["request"]["url"]]
    keyed = by_key(records_from_measurement(measurement))
    for key in (("dns", "web.telegram.org"), ("https", "web.telegram.org")):
        record = keyed[key]
        assert (record["reason"], record["verdict"], record["evidence"]["observed_reason"]) == (
            "dns.no_control", INCONCLUSIVE, "dns.bogon"), key


# --- confirmations, and what stands in for a control ---------------------------------------------

def test_oonis_pipeline_confirming_a_block_is_a_confirmation():
    """The API answer of the rutor.org measurement says `confirmed: true` (OONI matched a
    blockpage fingerprint); netprobe's own fingerprints find the same page.  Either alone
    confirms: the edited copy of the parked-page answer below, flipped to `confirmed: true`
    (not test data of its own), shows the pipeline's word counting by itself."""
    measurement, meta = load("api-web_connectivity-RU-20200303-rutor-confirmed.json")
    assert meta.confirmed is True
    web = by_key(records_from_measurement(measurement, meta))[("http", "rutor.org")]
    assert (web["reason"], web["verdict"]) == ("http.known_blockpage", BLOCKED)
    assert web["evidence"]["ooni"]["confirmed"] is True

    answer = json.loads((DATA / "api-web_connectivity-IE-20200303-efindlove-httpdiff.json").read_text())
    [(measurement, meta, _)] = list(measurements_in(answer))
    web = by_key(records_from_measurement(measurement, meta))[("http", "www.efindlove.com")]
    assert (web["reason"], web["verdict"]) == ("http.unconfirmed", INCONCLUSIVE)  # confirmed: false
    [(measurement, meta, _)] = list(measurements_in({**answer, "confirmed": True}))
    web = by_key(records_from_measurement(measurement, meta))[("http", "www.efindlove.com")]
    assert (web["reason"], web["verdict"], web["evidence"]["confirmed_by"]) == (
        "http.blockpage", BLOCKED, {"ooni_confirmed": True})


def test_a_blockpage_reached_through_a_302_is_named_with_the_hop():
    web = by_key(imported("web_connectivity-ID-20250527-archive-302-blockpage.json"))[("http", "archive.org")]
    found = web["evidence"]["confirmed_by"]["blockpage"]
    assert (found["name"], found["location"], found["scope"]) == ("ooni.id_lamanlabuh_kominfo", "header.location",
                                                                  "nat")
    assert found["url"] == "http://lamanlabuh.aduankonten.id/"  # the hop the 302 led to
    assert web["evidence"]["ooni_flags"]["blocking"] is False  # OONI's flags missed it


def test_an_office_firewalls_portal_on_a_private_address_is_named_not_signed():
    web = by_key(imported("web_connectivity-AU-20170725-feminist-private-portal.json"))[("http", "www.feminist.org")]
    portal = web["evidence"]["local_portal"]
    assert portal["name"] == "cl.prod_checkpoint_urlfilter_forward" and portal["scope"] == "prod"
    assert portal["served_from"].startswith("http://192.168.22.1/UserCheck/PortalMain")
    assert "confirmed_by" not in web["evidence"] and web["verdict"] == INCONCLUSIVE


@pytest.mark.parametrize("address, reason, verdict, portal", [
    ("10.10.34.36", "dns.bogon", BLOCKED, None),  # Iran's national blockpage address (nat)
    ("10.10.30.76", "dns.unconfirmed", INCONCLUSIVE, "ooni.id_dns_112"),  # a school's filter (inst), private
    ("146.112.61.106", "dns.known_blockpage", BLOCKED, None),  # Cisco OpenDNS's block address (prod), public
    ("10.77.0.1", "dns.unconfirmed", INCONCLUSIVE, None),  # a private address no fingerprint names
])
def test_a_known_blockpage_address_confirms_unless_it_is_the_probes_own_network(address, reason, verdict, portal):
    """An edited copy of the real IR measurement (not test data of its own): its resolver's
    answer replaced.  A product's or an institution's address in a private range is an
    appliance on the probe's own network, which may answer every name alike."""
    measurement = copy.deepcopy(load("web_connectivity-IR-20220815-facebook-nontelegram.json")[0])
    for query in measurement["test_keys"]["queries"]:
        for answer in query["answers"] or []:
            if answer.get("answer_type") == "A":
                answer["ipv4"] = address
    dns = by_key(records_from_measurement(measurement))[("dns", "www.facebook.com")]
    assert (dns["reason"], dns["verdict"]) == (reason, verdict)
    assert dns["evidence"].get("local_portal", {}).get("name") == portal


@pytest.mark.parametrize("name, site_up", [
    ("web_connectivity-IR-20220815-facebook-nontelegram.json", True),  # the helper fetched facebook
    ("web_connectivity-SK-20210120-wikispaces-dead-nxdomain.json", False),  # nor could the helper
    ("web_connectivity-CN-20170516-efindlove-search-rewrite.json", False),  # no such name, for the helper
    ("api-web_connectivity-AE-20191118-thepiratebay-reset.json", None),  # the helper failed: no control at all
])
def test_oonis_test_helper_says_whether_the_site_is_up_and_no_more(name, site_up):
    records = imported(name)
    helper = records[0]["evidence"]["ooni_helper"]
    assert (helper and helper["site_up"]) == site_up if site_up is not None else helper is None
    why = ".no_control" if site_up is None else ".unconfirmed"
    judged_here = [r for r in records[:-1] if r["evidence"].get("observed_verdict") in BAD]
    assert judged_here and all(r["reason"].endswith(why) or "confirmed_by" in r["evidence"] for r in judged_here)


# --- one summary per measurement -----------------------------------------------------------------

# The summary's reason, and the first finding after the measurement's own line: the diagnosis a
# careful reader signs.  "Blocking observed" only where a block is confirmed.
SUMMARIES = {
    "telegram-RU-20221109.json": (None, "No control: OONI's telegram test"),  # all answered, the web page too
    # 6 failures, none signed; the connects that completed are not shown to be Telegram's: nothing concluded.
    "telegram-DE-20170407.json": ("summary.nothing_concluded", "No control: OONI's telegram test"),
    "ts020-spec-example.json": (None, "No control: OONI's telegram test"),
    "web_connectivity-ID-20250527-archive-302-blockpage.json": ("summary.blocking_observed",
                                                                 "Confirmed: http archive.org http.known_blockpage"),
    "web_connectivity-IR-20220815-facebook-nontelegram.json": ("summary.blocking_observed",
                                                                "Confirmed: dns www.facebook.com dns.bogon"),
    "web_connectivity-SK-20210120-wikispaces-dead-nxdomain.json": ("summary.nothing_concluded", "Not confirmed:"),
    "web_connectivity-CN-20170516-efindlove-search-rewrite.json": ("summary.unjudged", "Not confirmed:"),
    "web_connectivity-AU-20170725-feminist-private-portal.json": ("summary.unjudged",
                                                                  "Local portal: http www.feminist.org"),
    "web_connectivity-NL-20200229-fawikipedia-decode-bug.json": ("summary.unjudged", "Not read: https fa.wikipedia.org "
                                                                 "failed with \"unknown_failure 'ascii' codec can't decode"),
    "api-web_connectivity-IE-20200303-efindlove-httpdiff.json": ("summary.unjudged", "Not confirmed:"),
    "netem-web_connectivity-websiteDownNXDOMAIN.json": ("summary.nothing_concluded", "Not confirmed:"),
    "probecli-web_connectivity-IT-20231130-nexa-ok.json": (None, "No blocking observed"),
}


@pytest.mark.parametrize("name", sorted(SUMMARIES))
def test_every_measurement_ends_with_the_diagnosis_a_careful_reader_signs(name):
    measurement, _ = load(name)
    summary = imported(name)[-1]
    reason, finding = SUMMARIES[name]
    assert summary["probe"] == "summary" and summary["reason"] == reason
    findings = summary["evidence"]["findings"]
    assert findings[0].startswith(f"OONI {measurement['test_name']} measurement {measurement['report_id']}")
    assert findings[1].startswith(finding), findings
    assert summary["evidence"]["ooni"]["report_id"] == measurement["report_id"]


@pytest.mark.parametrize("failure, reason, observed", [
    ("generic_timeout_error", "dns.resolver_no_control", "dns.timeout"),  # the resolver's, as Atlas reads it
    ("dns_server_misbehaving", "dns.resolver_no_control", "dns.bad_rcode"),
    ("dns_nxdomain_error", "dns.no_control", "dns.nxdomain"),  # an answer about the name, still uncontrolled
])
def test_a_telegram_lookup_that_failed_has_no_control_name_to_clear_the_resolver(failure, reason, observed):
    """An edited copy of the real RU measurement (not test data of its own): every lookup of
    web.telegram.org failed.  The test asks its resolver no other name, so the failure is the
    resolver's as much as a block."""
    measurement = copy.deepcopy(load("telegram-RU-20221109.json")[0])
    for query in measurement["test_keys"]["queries"]:
        query.update(answers=[], failure=failure)
    dns = by_key(records_from_measurement(measurement))[("dns", "web.telegram.org")]
    assert (dns["reason"], dns["verdict"], dns["evidence"]["observed_reason"]) == (reason, INCONCLUSIVE, observed)
