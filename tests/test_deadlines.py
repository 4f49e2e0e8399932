"""Deadlines hold against hostile servers: every probe ends within --timeout (plus a
small margin) and a whole run within --deadline, however many targets misbehave.

Probe-level cases that already exist are not repeated here:
tests/test_probe_https.py (silent TLS server, dripping HTTP answer, endless headers
and status line, stalled body), tests/test_probe_mtproto.py (silent server, drip
feed), tests/test_probes_loopback.py (silent resolver, full backlog).  This file
adds a resolver that answers after the deadline, and the real CLI end to end
against a target file in which every endpoint misbehaves.

Everything listens on a random /22 of 127.0.0.0/8; the web probes use the fixed
ports 80 and 443 and the DNS canary port 53, so the end-to-end tests need root
(CAP_NET_BIND_SERVICE) and skip without it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time

import pytest

from netprobe.addresses import parse_endpoint
from netprobe.engine import PROBE_MARGIN_S
from netprobe.probes.dns import probe_dns
from tests.support import observed_reason
from tests.support.fake_dns import FakeDNS
from tests.support.hostile import (
    HostileServers,
    can_bind_privileged,
    jsonl,
    loopback_net,
    make_pki,
    run_netprobe,
    write_targets,
)

# What "a small margin" means for a probe's own duration, beyond --timeout: the
# probes end on their own deadline; this is scheduling slack on a loaded machine.
PROBE_SLACK_S = 0.3
# Interpreter start-up, imports and teardown of one `netprobe run` subprocess.
PROCESS_SLACK_S = 2.5

needs_low_ports = pytest.mark.skipif(not can_bind_privileged(),
                                     reason="binds ports 53/80/443 on loopback: needs root or CAP_NET_BIND_SERVICE")


# --- a resolver that answers after the deadline ------------------------------------------------

def test_dns_answer_after_the_deadline_is_a_timeout():
    """The answer does come, 1 s later: the probe has already ended at its 0.3 s deadline."""
    timeout = 0.3
    with FakeDNS({"late.test": ("delay", 1.0, ["149.154.167.99"])}) as server:
        started = time.monotonic()
        result = asyncio.run(probe_dns("late.test", parse_endpoint(server.address),
                                       (ipaddress.ip_network("149.154.160.0/20"),), timeout))
        elapsed = time.monotonic() - started
        time.sleep(0.9)  # let the late answers go out to the (closed) probe sockets: nothing breaks
    assert (result.verdict, result.reason) == ("blocked", "dns.timeout")
    assert elapsed < timeout + PROBE_SLACK_S
    assert result.duration_ms < (timeout + PROBE_SLACK_S) * 1000
    assert {q["error"] for q in result.evidence["queries"]} == {"TimeoutError"}
    assert server.late_sent == 2  # A and AAAA were answered, late


# --- end to end: a target file in which everything misbehaves ----------------------------------

DRIP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture(scope="module")
def hostile_world(tmp_path_factory):
    """Servers that accept and never speak, drip a byte every 0.5 s after a completed TLS
    handshake, send endless headers or an endless body; a resolver that answers
    late; a DNS canary that never answers.  One responsive control, outside the
    service's networks, so the vantage point counts as online."""
    if not can_bind_privileged():
        pytest.skip("binds ports 53/80/443 on loopback: needs root or CAP_NET_BIND_SERVICE")
    net = loopback_net()
    tmp = tmp_path_factory.mktemp("hostile")
    web = {  # domain -> (address, https behaviour, http behaviour)
        "drip.hostile.test": (str(net[0x0301]), ("drip", {"payload": DRIP_RESPONSE}),
                              ("drip", {"payload": DRIP_RESPONSE})),
        "silent.hostile.test": (str(net[0x0302]), ("silent", {}), ("silent", {})),
        "headers.hostile.test": (str(net[0x0303]),
                                 ("endless", {"prefix": b"HTTP/1.1 200 OK\r\n", "chunk": b"X-Filler: a\r\n" * 512}),
                                 ("endless", {"prefix": b"HTTP/1.1 200 OK\r\nX-Big: ", "chunk": b"b" * 65536})),
        "body.hostile.test": (str(net[0x0304]),
                              ("endless", {"prefix": b"HTTP/1.1 200 OK\r\n\r\n"}),
                              ("endless", {"prefix": b"HTTP/1.1 200 OK\r\n\r\n"})),
    }
    late = ["late1.hostile.test", "late2.hostile.test"]
    pki = make_pki(tmp / "pki", list(web))
    servers = HostileServers()
    try:
        for address, (https_kind, https_params), (http_kind, http_params) in web.values():
            servers.listen(https_kind, address, 443, tls=pki.server_context(), **https_params)
            servers.listen(http_kind, address, 80, **http_params)
        silent = [servers.listen("silent", str(net[0x0101 + i])) for i in range(3)]
        endpoints = list(silent)
        endpoints.append(servers.listen("endless", str(net[0x0104])))
        endpoints.append(servers.listen("drip", str(net[0x0105]), payload=b"\x00" * 64))
        canary = str(net[0x0201])
        servers.silent_udp(canary, 53)
        control = servers.listen("silent", "127.0.0.2")  # connects: that is all a control needs
        behaviour = {name: [address] for name, (address, _, _) in web.items()}
        behaviour.update({name: ("delay", 30.0, [str(net[0x0301])]) for name in late})
        with FakeDNS(behaviour) as dns_server:
            targets = write_targets(
                tmp / "hostile.toml", networks=[str(net)], controls=[f"{control[0]}:{control[1]}"],
                domains=[*web, *late], endpoints=[f"{h}:{p}" for h, p in endpoints], dns_canary=[canary])
            yield {"targets": str(targets), "resolver": dns_server.address, "ca": str(pki.ca),
                   "web": web, "late": late, "silent": [f"{h}:{p}" for h, p in silent]}
    finally:
        servers.close()


def run_args(world, *extra: str) -> list[str]:
    return ["run", "--targets", world["targets"], "--resolver", world["resolver"], "--ca-bundle", world["ca"],
            "--format", "jsonl", *extra]


def plan_size(world) -> int:
    proc, _ = run_netprobe("targets", "--targets", world["targets"], "--resolver", world["resolver"],
                           "--format", "jsonl", timeout=30)
    assert proc.returncode == 0, proc.stderr
    return len(proc.stdout.splitlines())


@needs_low_ports
def test_every_probe_ends_within_its_timeout(hostile_world):
    """No --deadline cut: each probe must end on its own --timeout, whatever the server does."""
    timeout = 1.0
    proc, wall = run_netprobe(*run_args(hostile_world, "--timeout", str(timeout)), timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    records = jsonl(proc.stdout)
    probes = [r for r in records if r["probe"] != "summary"]
    assert len(probes) == plan_size(hostile_world)
    for record in probes:
        assert record["duration_ms"] <= (timeout + PROBE_SLACK_S) * 1000, record
        assert record["reason"] != "run.deadline"
        assert record["evidence"].get("ended_by") != "probe deadline", record  # no probe needed the engine's guard
    by = {(r["probe"], r["target"]): r for r in probes}
    # Web probes wait for their domain's DNS answer (one stage), then run (another).
    assert wall < 2 * (timeout + PROBE_MARGIN_S) + PROCESS_SLACK_S
    # What each hostile behaviour turns into (the one deadline names the stage it caught):
    assert observed_reason(by[("https", "drip.hostile.test")]) == "http.timeout"  # TLS done, then a byte per 0.5 s
    assert observed_reason(by[("https", "silent.hostile.test")]) == "http.timeout"  # TLS done, then silence
    assert observed_reason(by[("http", "silent.hostile.test")]) == "http.timeout"
    assert observed_reason(by[("http", "drip.hostile.test")]) == "http.timeout"
    for kind in ("https", "http"):
        headers = by[(kind, "headers.hostile.test")]["evidence"]["http"]
        assert headers["headers_truncated"] is True
        body = by[(kind, "body.hostile.test")]["evidence"]["http"]
        assert body["headers_complete"] and len(bytes.fromhex(body["body_prefix"]["hex"])) <= 2048
    for name in hostile_world["late"]:
        assert observed_reason(by[("dns", name)]) == "dns.timeout"
    assert {observed_reason(r) for r in probes if r["probe"].startswith("mtproto")} <= {
        "mtproto.timeout", "mtproto.bad_response"}


DEADLINE_NOTE = re.compile(r"run deadline reached: (\d+) probes cut short, (\d+) not started")


@needs_low_ports
def test_the_run_deadline_cuts_a_run_where_everything_misbehaves(hostile_world):
    """--timeout 30 would let the slow servers hold the run for 30 s; --deadline 1.5 ends it."""
    deadline = 1.5
    proc, wall = run_netprobe(*run_args(hostile_world, "--timeout", "30", "--deadline", str(deadline)),
                              timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert wall < deadline + PROCESS_SLACK_S
    records = jsonl(proc.stdout)
    assert records[-1]["probe"] == "summary"
    probes = records[:-1]
    cut = [r for r in probes if r["reason"] == "run.deadline"]
    assert cut, "nothing was cut by the run deadline"
    for record in cut:
        assert record["verdict"] == "inconclusive"
        assert record["evidence"]["ended_by"] == "run deadline"
        assert record["duration_ms"] <= (deadline + PROBE_SLACK_S) * 1000
    cut_targets = {(r["probe"], r["target"]) for r in cut}
    for name in hostile_world["late"]:  # the late resolver, and the web probes waiting on it
        assert {("dns", name), ("https", name), ("http", name)} <= cut_targets
    assert ("https", "drip.hostile.test") in cut_targets
    for endpoint in hostile_world["silent"]:  # accepted, never spoke
        for kind in ("mtproto", "mtproto_abridged", "mtproto_obfuscated2"):
            assert (kind, endpoint) in cut_targets
    # Every planned probe is accounted for: recorded, or counted as not started.
    note = DEADLINE_NOTE.search(proc.stderr)
    assert note, proc.stderr
    assert int(note.group(1)) == len(cut)
    assert len(probes) + int(note.group(2)) == plan_size(hostile_world)


def test_the_run_deadline_accounts_for_controls_too(tmp_path, blackhole):
    """A control still connecting when the deadline strikes is recorded as cut, like any probe."""
    path = write_targets(tmp_path / "t.toml", networks=["127.0.0.1/32"], controls=[blackhole],
                         endpoints=["127.0.0.1:1"])
    proc, wall = run_netprobe("run", "--targets", str(path), "--timeout", "10", "--deadline", "1",
                              "--format", "jsonl", "--probes", "tcp", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert wall < 1 + PROCESS_SLACK_S
    probes = jsonl(proc.stdout)[:-1]
    assert ("control", blackhole, "run.deadline") in [(r["probe"], r["target"], r["reason"]) for r in probes]
    note = DEADLINE_NOTE.search(proc.stderr)
    assert note, proc.stderr
    assert len(probes) + int(note.group(2)) == 2  # the control and the one endpoint: none went missing


def test_a_dripping_dns_over_https_resolver_cannot_hold_the_run(tmp_path):
    """requests' timeout bounds each read, not the exchange: a resolver dripping its answer
    kept the worker thread -- and, at exit, the whole process -- for as long as it dripped
    (some 15 s for this answer).  The probe ends at --timeout and the process with the run."""
    pki = make_pki(tmp_path / "pki", ["localhost"])  # localhost: resolved from /etc/hosts, not by DNS
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/dns-message\r\nContent-Length: 64\r\n\r\n"
              + b"\0" * 64)
    servers = HostileServers()
    try:
        _, port = servers.listen("drip", "127.0.0.1", tls=pki.server_context(), payload=answer, interval=0.1)
        targets = write_targets(tmp_path / "t.toml", domains=["drip.test"], endpoints=["127.0.0.1:9"])
        proc, wall = run_netprobe("run", "--targets", str(targets), "--resolver", f"https://localhost:{port}/q",
                                  "--ca-bundle", str(pki.ca), "--probes", "dns", "--timeout", "1",
                                  "--format", "jsonl", timeout=60)
    finally:
        servers.close()
    assert proc.returncode == 0, proc.stderr
    assert wall < 1 + PROBE_MARGIN_S + PROCESS_SLACK_S  # the drip would take ~15 s
    (record,) = [r for r in jsonl(proc.stdout) if r["probe"] == "dns"]
    assert observed_reason(record) == "dns.timeout"
    assert record["duration_ms"] <= (1 + PROBE_SLACK_S) * 1000
