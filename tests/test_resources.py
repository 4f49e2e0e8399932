"""Resource limits: a small open-file limit lowers the concurrency instead of producing
"too many open files" verdicts, and a vantage point without IPv6 gets `inconclusive`
for IPv6 targets, never `blocked`.

The no-IPv6 case runs in network namespaces the test creates (IPv4-only veth pair,
IPv6 disabled by sysctl) and removes; it skips with the reason when not root.  The
no-route unit case on the host is tests/test_probes_loopback.py::
test_tcp_ipv6_without_route_is_inconclusive (it skips where the host has IPv6).
"""

from __future__ import annotations

import resource
import socket

import pytest

from tests.support import netns, observed_reason
from tests.support.hostile import (
    REPO_ROOT,
    HostileServers,
    jsonl,
    netprobe_cmd,
    netprobe_env,
    run_netprobe,
    write_targets,
)


def limit_open_files(n: int):
    def preexec():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return preexec


def test_a_low_open_file_limit_lowers_concurrency_instead_of_failing_probes(tmp_path):
    servers = HostileServers()
    try:
        # 100 servers that answer at once with something that is not MTProto, 100 closed ports:
        # every probe ends in milliseconds, so the run is about file descriptors, not time.
        opened = [servers.listen("answer", "127.0.0.1", payload=b"HTTP/1.1 400 Bad Request\r\n\r\n",
                                 wait_request=False) for _ in range(100)]
        holders = [socket.socket() for _ in range(100)]  # bound together: 100 distinct ports
        for sock in holders:
            sock.bind(("127.0.0.1", 0))
        closed = [sock.getsockname() for sock in holders]
        for sock in holders:
            sock.close()  # nothing listens there now: connections are refused
        endpoints = [f"{h}:{p}" for h, p in opened + closed]
        targets = write_targets(tmp_path / "many.toml", networks=["127.0.0.1/32"], endpoints=endpoints)
        proc, _ = run_netprobe("run", "--targets", str(targets), "--probes", "tcp,mtproto,mtproto_abridged",
                               "--concurrency", "1000", "--timeout", "2", "--format", "jsonl",
                               preexec_fn=limit_open_files(64), timeout=60)
    finally:
        servers.close()
    assert proc.returncode == 0, proc.stderr
    assert "concurrency lowered from 1000 to" in proc.stderr
    assert "ulimit -n" in proc.stderr
    records = jsonl(proc.stdout)[:-1]
    assert len(records) == 200 * 3
    # The file names no controls: failures are *.no_control, what each probe saw kept as observed.
    starved = [r for r in records if (observed_reason(r) or "").endswith(".local_resources")]
    assert starved == [], starved[:3]
    assert {observed_reason(r) for r in records if r["target"] in endpoints[:100]} <= {None, "mtproto.bad_response"}


# --- a vantage point without IPv6 -------------------------------------------------------------

@pytest.fixture
def v4_only_vantage():
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)
    spaces = netns.Namespaces()
    try:
        client = spaces.add("v4only", ipv6=False)
        peer = spaces.add("v4peer")
        spaces.link(client, ["10.213.0.1/24"], peer, ["10.213.0.2/24"])
        netns.sh("ip", "-n", client, "route", "add", "default", "via", "10.213.0.2")
        spaces.listen(peer, "10.213.0.2", 8443)  # the control: reachable, so the vantage point is online
        yield spaces, client
    finally:
        spaces.close()


def test_ipv6_targets_without_ipv6_are_inconclusive_not_blocked(tmp_path, v4_only_vantage):
    spaces, client = v4_only_vantage
    targets = write_targets(tmp_path / "v6.toml", networks=["fd00::/8"], controls=["10.213.0.2:8443"],
                            endpoints=["[fd00::1]:443"])
    proc = spaces.run(client, *netprobe_cmd("tcp", "--targets", str(targets), "[fd00::1]:443", "[fd00::2]:80",
                                            "--timeout", "2", "--format", "jsonl"),
                      env=netprobe_env(), cwd=str(REPO_ROOT))
    assert proc.returncode == 0, proc.stderr
    records = jsonl(proc.stdout)
    control = next(r for r in records if r["probe"] == "control" and r["evidence"]["stage"] == "tcp")
    probes = [r for r in records if r["probe"] == "tcp"]
    summary = records[-1]
    assert (control["probe"], control["verdict"]) == ("control", "reachable")  # online: no offline adjustment
    assert [(r["target"], r["verdict"], r["reason"]) for r in probes] == [
        ("[fd00::1]:443", "inconclusive", "tcp.no_route"), ("[fd00::2]:80", "inconclusive", "tcp.no_route")]
    for record in probes:
        assert record["evidence"]["before_sending"] is True
        assert "vantage" not in record["evidence"]
    assert summary["verdict"] != "blocked" and summary["evidence"]["inconclusive"] == {"tcp": 2}


def test_an_ipv6_resolver_without_ipv6_is_inconclusive(tmp_path, v4_only_vantage):
    spaces, client = v4_only_vantage
    targets = write_targets(tmp_path / "v6dns.toml", networks=["fd00::/8"], controls=["10.213.0.2:8443"],
                            domains=["v6.example"])
    proc = spaces.run(client, *netprobe_cmd("run", "--targets", str(targets), "--resolver", "[fd00::53]:53",
                                            "--probes", "dns", "--timeout", "2", "--format", "jsonl"),
                      env=netprobe_env(), cwd=str(REPO_ROOT))
    assert proc.returncode == 0, proc.stderr
    dns = [r for r in jsonl(proc.stdout) if r["probe"] == "dns"]
    assert [(r["verdict"], r["reason"]) for r in dns] == [("inconclusive", "dns.no_route")]
