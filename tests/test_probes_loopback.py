"""DNS and TCP probes against real servers on loopback that the tests start."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from netprobe.addresses import Endpoint, parse_endpoint
from netprobe.probes.dns import probe_dns
from netprobe.probes.tcp import probe_tcp
from tests.support import netns
from tests.support.fake_dns import FakeDNS

NETWORKS = (ipaddress.ip_network("149.154.160.0/20"), ipaddress.ip_network("2001:67c:4e8::/48"),
            ipaddress.ip_network("10.77.0.0/16"))
TIMEOUT = 0.5

BEHAVIOUR = {
    "genuine.test": ["149.154.167.99", "2001:67c:4e8:f004::9"],
    "v4only.test": ["149.154.167.99"],
    "private-inside.test": ["10.77.1.1"],
    "nxdomain.test": "NXDOMAIN",
    "servfail.test": "SERVFAIL",
    "refused.test": "REFUSED",
    "empty.test": [],
    "bogon.test": ["10.10.34.34"],
    "loopback.test": ["127.0.0.1"],
    "teredo.test": ["149.154.167.99", "2001:0:53aa:64c:0:0:0:1"],
    "outside.test": ["8.8.4.4"],
    "mixed.test": ["149.154.167.99", "8.8.4.4"],
    "silent.test": "silent",
    "truncate.test": "truncate",
    "truncate.test/tcp": ["149.154.167.51"],
    "tcpreset.test": "tcp_reset",
    "race.test": ("race", ["8.8.4.4"], ["149.154.167.99"]),
}


@pytest.fixture(scope="module")
def resolver():
    with FakeDNS(BEHAVIOUR) as server:
        yield server


@pytest.mark.parametrize("name, verdict, reason", [
    ("genuine.test", "reachable", None),
    ("v4only.test", "reachable", None),
    ("private-inside.test", "reachable", None),
    ("nxdomain.test", "blocked", "dns.nxdomain"),
    ("servfail.test", "blocked", "dns.servfail"),
    ("refused.test", "blocked", "dns.refused"),
    ("empty.test", "blocked", "dns.no_answer"),
    ("bogon.test", "blocked", "dns.bogon"),
    ("loopback.test", "blocked", "dns.bogon"),
    ("teredo.test", "blocked", "dns.teredo"),
    ("outside.test", "blocked", "dns.outside_networks"),
    ("mixed.test", "blocked", "dns.outside_networks"),
    ("silent.test", "blocked", "dns.timeout"),
    ("truncate.test", "reachable", None),
    ("tcpreset.test", "reset", "dns.reset"),
])
def test_dns_probe_verdicts(resolver, name, verdict, reason):
    started = time.monotonic()
    result = asyncio.run(probe_dns(name, parse_endpoint(resolver.address), NETWORKS, TIMEOUT))
    assert (result.verdict, result.reason) == (verdict, reason), result.evidence
    assert time.monotonic() - started < TIMEOUT + 0.3
    assert result.address == resolver.address
    assert {q["qtype"] for q in result.evidence["queries"]} == {"A", "AAAA"}


def test_dns_evidence_records_answers_with_ttls(resolver):
    result = asyncio.run(probe_dns("genuine.test", parse_endpoint(resolver.address), NETWORKS, TIMEOUT))
    by_type = {q["qtype"]: q for q in result.evidence["queries"]}
    assert by_type["A"]["rcode"] == "NOERROR"
    assert by_type["A"]["answers"] == [{"name": "genuine.test.", "type": "A", "ttl": 300,
                                        "data": "149.154.167.99"}]
    assert by_type["AAAA"]["addresses"] == ["2001:67c:4e8:f004::9"]
    assert result.evidence["resolver"] == resolver.address


def test_dns_truncation_falls_back_to_tcp(resolver):
    result = asyncio.run(probe_dns("truncate.test", parse_endpoint(resolver.address), NETWORKS, TIMEOUT))
    assert {q["transport"] for q in result.evidence["queries"]} == {"tcp"}
    assert ("truncate.test", "A", "tcp") in resolver.queries


def test_dns_records_a_racing_second_answer(resolver):
    # The forged answer arrives first and decides the verdict, as it would for
    # the user's system; the genuine late answer is kept as evidence of injection.
    result = asyncio.run(probe_dns("race.test", parse_endpoint(resolver.address), NETWORKS, TIMEOUT))
    assert (result.verdict, result.reason) == ("blocked", "dns.outside_networks")
    a_query = next(q for q in result.evidence["queries"] if q["qtype"] == "A")
    assert a_query["addresses"] == ["8.8.4.4"]
    assert [late["addresses"] for late in a_query["late_answers"]] == [["149.154.167.99"]]


def test_dns_resolver_port_closed_is_port_unreachable():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = asyncio.run(probe_dns("genuine.test", Endpoint(ipaddress.ip_address("127.0.0.1"), port),
                                   NETWORKS, TIMEOUT))
    assert (result.verdict, result.reason) == ("blocked", "dns.port_unreachable")


# --- TCP ---------------------------------------------------------------------

@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield Endpoint(ipaddress.ip_address("127.0.0.1"), server.getsockname()[1])
    server.close()


def closed_port() -> Endpoint:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return Endpoint(ipaddress.ip_address("127.0.0.1"), s.getsockname()[1])


def test_tcp_connect_is_reachable(listener):
    result = asyncio.run(probe_tcp(listener, TIMEOUT))
    assert (result.verdict, result.reason) == ("reachable", None)
    assert result.evidence["connect"] == "ok"
    assert result.target == result.address == str(listener)


def test_tcp_closed_port_is_reset():
    endpoint = closed_port()
    result = asyncio.run(probe_tcp(endpoint, TIMEOUT))
    assert (result.verdict, result.reason) == ("reset", "tcp.refused")
    assert result.evidence["errno"] == "ECONNREFUSED"


def test_tcp_full_backlog_times_out_within_deadline():
    # A listener that never accepts and has a full backlog drops SYNs: the
    # same observation as a censor that drops packets.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    endpoint = Endpoint(ipaddress.ip_address("127.0.0.1"), server.getsockname()[1])
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex((str(endpoint.ip), endpoint.port))
            fillers.append(filler)
        time.sleep(0.1)
        started = time.monotonic()
        result = asyncio.run(probe_tcp(endpoint, TIMEOUT))
        assert time.monotonic() - started < TIMEOUT + 0.3
        assert (result.verdict, result.reason) == ("blocked", "tcp.timeout")
    finally:
        for filler in fillers:
            filler.close()
        server.close()


NOROUTE_TARGET = "[2001:db8::1]:443"   # a global IPv6 address; no packet is sent to it


def test_tcp_ipv6_without_route_is_inconclusive():
    # No IPv6 route at all: the kernel refuses before sending, and that says nothing about the path
    # (inconclusive, tcp.no_route).  As root this runs `netprobe tcp` in a fresh network namespace with
    # only loopback up (tests/support/netns.py: named npt-*, never the lab's nplab-*), so it holds
    # whatever routes this machine has; otherwise it runs in-process when this machine happens to have
    # no IPv6 route.
    why = netns.unavailable_reason()
    if why is None:
        spaces = netns.Namespaces()
        try:
            ns = spaces.add("noroute")   # `ip netns add`, lo up, nothing else
            routes = netns.sh("ip", "-n", ns, "-6", "route", "show").stdout
            assert "default" not in routes, routes
            root = str(Path(__file__).resolve().parent.parent)
            env = {**os.environ, "PYTHONPATH": root + (os.pathsep + os.environ["PYTHONPATH"]
                                                       if os.environ.get("PYTHONPATH") else "")}
            proc = spaces.run(ns, sys.executable, "-m", "netprobe", "tcp", NOROUTE_TARGET, "--format", "jsonl",
                              "--timeout", str(TIMEOUT), env=env, cwd=root)
        finally:
            spaces.close()
        assert proc.returncode == 0, proc.stderr
        records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        (record,) = [r for r in records if r.get("probe") == "tcp"]
        assert (record["target"], record["verdict"], record["reason"]) == (
            NOROUTE_TARGET, "inconclusive", "tcp.no_route"), record
        assert record["evidence"]["before_sending"] is True, record
        return
    from netprobe.probes.route import local_route_error
    endpoint = parse_endpoint(NOROUTE_TARGET)
    if local_route_error(endpoint) is None:
        pytest.skip(f"a network namespace without an IPv6 route {why}, and this machine has an IPv6 route: "
                    "the no-route case cannot be shown here")
    result = asyncio.run(probe_tcp(endpoint, TIMEOUT))
    assert (result.verdict, result.reason) == ("inconclusive", "tcp.no_route")
    assert result.evidence["before_sending"] is True
