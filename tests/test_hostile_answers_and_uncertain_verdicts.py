"""Hostile answers that must not crash a run, and verdicts that must not be more
certain than their evidence (an undecided vantage point, a summary from nothing)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import threading
import time

import dns.message
import dns.rdataclass
import dns.rrset
import pytest
import urllib3

from netprobe.addresses import Endpoint
from netprobe.classify import REASONS, doh_reason
from netprobe.diagnosis import RunContext, summarize
from netprobe.probes.dns import probe_dns, probe_dns_injection
from netprobe.records import Result
from netprobe.tallies import Tallies

LOOPBACK = ipaddress.ip_address("127.0.0.1")
NETWORKS = (ipaddress.ip_network("127.0.0.0/8"),)


class OddAnswers:
    """A UDP DNS server on 127.0.0.1 that answers every query with `make(query)`."""

    def __init__(self, make):
        self.make = make
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.endpoint = Endpoint(LOOPBACK, self.sock.getsockname()[1])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self):
        while not self.stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except OSError:
                continue
            self.sock.sendto(self.make(dns.message.from_wire(wire)), peer)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.sock.close()


def answer_in_class(rdclass: int):
    """An A answer whose class is patched on the wire (as an injector would send it;
    building it from text would teach dnspython a generic type for good)."""
    def make(query):
        response = dns.message.make_response(query)
        response.use_edns(False)  # so that the answer is the message's last record
        response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "10.0.0.1"))
        wire = bytearray(response.to_wire())
        at = len(wire) - 4 - 2 - 4 - 2  # the last record: ... class(2) ttl(4) rdlength(2) rdata(4)
        wire[at:at + 2] = rdclass.to_bytes(2, "big")
        return bytes(wire)
    return make


def genuine_a(query):
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "127.0.0.9"))
    return response.to_wire()


@pytest.mark.parametrize("rdclass", [dns.rdataclass.CH, dns.rdataclass.ANY, dns.rdataclass.NONE])
def test_an_answer_in_another_class_is_no_crash(rdclass):
    with OddAnswers(answer_in_class(rdclass)) as server:
        result = asyncio.run(probe_dns("odd.test", server.endpoint, NETWORKS, 0.5))
        injected = asyncio.run(probe_dns_injection("odd.test", server.endpoint, 0.5, NETWORKS))
    assert result.verdict == "blocked" and result.reason in REASONS
    assert (injected.verdict, injected.reason) == ("blocked", "dns.injected")


def test_a_genuine_answer_from_the_canary_is_a_transparent_proxy_not_a_block():
    with OddAnswers(genuine_a) as server:
        result = asyncio.run(probe_dns_injection("proxied.test", server.endpoint, 0.5, NETWORKS))
    assert (result.verdict, result.reason) == ("inconclusive", "dns.intercepted")
    assert result.evidence["addresses"] == ["127.0.0.9"]


def test_the_canary_probe_survives_having_no_socket(monkeypatch):
    async def no_sockets(*args, **kwargs):
        raise OSError(24, "Too many open files")
    monkeypatch.setattr("netprobe.probes.dns.udp_exchange", no_sockets)
    result = asyncio.run(probe_dns_injection("x.test", Endpoint(LOOPBACK, 53), 0.5, NETWORKS))
    assert (result.verdict, result.reason) == ("inconclusive", "dns.local_resources")


def test_a_tls_error_under_urllib3_is_a_doh_tls_error():
    inner = ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed or bad record mac")
    wrapped = urllib3.exceptions.SSLError(inner)
    wrapped.__context__ = inner
    assert doh_reason(wrapped) == "dns.doh_tls_error"
    assert doh_reason(wrapped) in REASONS


# --- the summary -------------------------------------------------------------------

def summary_of(*results, vantage="online"):
    tallies = Tallies()
    for result in results:
        tallies.add(result)
    return summarize("t", tallies, RunContext(vantage))


def test_nothing_reachable_and_nothing_blocked_concludes_nothing():
    cut = Result("tcp", "1.2.3.4:443", "1.2.3.4:443", "run.deadline", 1.0, {})
    summary = summary_of(cut)
    assert (summary.verdict, summary.reason) == ("inconclusive", "summary.nothing_concluded")


def test_an_unreachable_resolver_is_no_disagreement():
    genuine = Result("dns", "a.org", "192.168.1.1:53", None, 1.0, {"queries": []})
    no_route = Result("dns", "a.org", "[fd00::53]:53", "dns.no_route", 1.0, {"queries": []})
    summary = summary_of(genuine, no_route)
    assert summary.reason is None and summary.evidence["resolver_disagreements"] == {}


def test_an_undecided_vantage_point_is_inconclusive():
    summary = summary_of(vantage="undecided")
    assert (summary.verdict, summary.reason) == ("inconclusive", "summary.undecided")


# --- the run, end to end -----------------------------------------------------------

def netprobe(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "netprobe", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_a_run_cut_before_its_controls_decide_claims_no_block(tmp_path, blackhole):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    targets = tmp_path / "t.toml"
    targets.write_text(f'networks = ["127.0.0.1/32"]\ncontrols = ["{blackhole}"]\n'
                       f'endpoints = ["127.0.0.1:{port}"]\n')
    proc = netprobe("run", "--targets", str(targets), "--probes", "tcp", "--timeout", "3", "--deadline", "0.5",
                    "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    tcp = next(r for r in records if r["probe"] == "tcp")
    assert (tcp["verdict"], tcp["reason"]) == ("inconclusive", "vantage.undecided")
    assert tcp["evidence"]["observed_reason"] == "tcp.refused"
    assert tcp["evidence"]["vantage"] == "undecided" and tcp["evidence"]["verdict_if_online"] == "reset"
    assert records[-1]["reason"] == "summary.undecided"


def test_a_closed_stdout_does_not_end_the_run(tmp_path):
    listeners = [socket.socket() for _ in range(30)]
    for listener in listeners:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
    try:
        targets = tmp_path / "t.toml"
        endpoints = ", ".join(f'"127.0.0.1:{s.getsockname()[1]}"' for s in listeners)
        targets.write_text(f'networks = ["127.0.0.1/32"]\nendpoints = [{endpoints}]\n')
        archive = tmp_path / "out.jsonl"
        started = time.monotonic()
        proc = subprocess.run(f"{sys.executable} -m netprobe run --targets {targets} --probes tcp --timeout 1 "
                              f"--concurrency 1 --format jsonl --output {archive} | head -n 1",
                              shell=True, capture_output=True, text=True, timeout=30, check=False)
        assert time.monotonic() - started < 20
    finally:
        for listener in listeners:
            listener.close()
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = archive.read_text().splitlines()
    assert len(lines) == 31 and json.loads(lines[-1])["probe"] == "summary"


def test_web_records_carry_the_dns_observation_they_were_decided_from(tmp_path):
    from tests.support.fake_dns import FakeDNS
    with FakeDNS({"web.test": ["10.66.6.6"]}) as resolver:
        targets = tmp_path / "t.toml"
        targets.write_text('networks = ["127.0.0.0/8"]\n'
                           'domains = [{ name = "web.test", addresses = ["127.0.0.1"] }]\n')
        proc = netprobe("run", "--targets", str(targets), "--probes", "http", "--resolver", resolver.address,
                        "--timeout", "1", "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    http = next(json.loads(line) for line in proc.stdout.splitlines() if '"probe":"http"' in line)
    assert http["evidence"]["dns"] == {"resolver": resolver.address, "addresses": ["10.66.6.6"],
                                       "reason": "dns.bogon"}
    assert http["evidence"]["address_source"] == "pinned"
