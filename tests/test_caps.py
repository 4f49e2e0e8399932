"""Caps on everything read from the network: a server that sends as much as it can
costs bounded memory and time, and the evidence says what was cut.

Existing probe-level cases are not repeated: tests/test_probe_https.py (endless
headers: count and byte caps; endless status line; body prefix cap; header
values escaped and capped) and tests/test_probe_mtproto.py (a huge declared
packet length is refused without allocating).  Added here: the whole CLI
against 50 endless senders with its peak memory measured, DNS answers,
certificate fields, an oversized certificate chain, an endless TLS handshake.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import time
from pathlib import Path

import pytest

from netprobe.addresses import parse_endpoint
from netprobe import text
from netprobe.probes import https, mtproto
from netprobe.probes.dns import MAX_ANSWERS_KEPT, probe_dns
from netprobe.probes.https import probe_https
from tests.support import observed_reason
from tests.support.fake_dns import FakeDNS
from tests.support.hostile import (
    HostileServers,
    can_bind_privileged,
    jsonl,
    loopback_net,
    make_pki,
    netprobe_cmd,
    netprobe_env,
    REPO_ROOT,
    write_targets,
)

LOOPBACK = ipaddress.ip_address("127.0.0.1")
NETWORKS = (ipaddress.ip_network("127.0.0.0/8"),)

# Peak RSS of a `netprobe run` subprocess.  A normal run of this plan peaks near
# 45 MB; with the HTTP caps removed the same run passed 400 MB within seconds
# (and never finished: the uncapped buffers are rescanned on every read).
RSS_BOUND_MB = 160
RUN_BOUND_S = 30


def high_water_mb(pid: int) -> float:
    """The process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries the forking
    parent's peak across exec into it, so a big pytest process would be counted."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_with_rusage(proc, timeout: float):
    """(exit status, peak RSS in MB) of a child, killed if it outlives `timeout`.

    Sampled until the child exits; it is reaped only after a last sample, by
    waiting with WNOWAIT first (a zombie has no memory left to read)."""
    deadline = time.monotonic() + timeout
    peak = 0.0
    while True:
        peak = max(peak, high_water_mb(proc.pid))
        exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if exited is not None:
            _, status = os.waitpid(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
            return proc.returncode, peak
        if time.monotonic() > deadline:
            proc.kill()
            _, status = os.waitpid(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            pytest.fail(f"netprobe ran past {timeout} s against endless senders (peak RSS {peak:.0f} MB)")
        time.sleep(0.02)


@pytest.mark.skipif(not can_bind_privileged(), reason="binds ports 80/443 on loopback: needs root")
def test_memory_stays_bounded_when_every_server_sends_all_it_can(tmp_path):
    net = loopback_net()
    names = [f"w{i}.flood.test" for i in range(10)]
    pki = make_pki(tmp_path / "pki", names)
    servers = HostileServers()
    try:
        junk = os.urandom(65536)
        endpoints = [servers.listen("endless", str(net[0x0100 + i]), chunk=junk) for i in range(1, 51)]
        web = {}
        for i, name in enumerate(names):
            address = str(net[0x0201 + i])
            web[name] = [address]
            if i % 2:  # one endless header line over TLS, endless short header lines in the clear
                servers.listen("endless", address, 443, tls=pki.server_context(),
                               prefix=b"HTTP/1.1 200 OK\r\nX-Big: ", chunk=b"b" * 65536)
                servers.listen("endless", address, 80, prefix=b"HTTP/1.1 200 OK\r\n",
                               chunk=b"X-Filler: a\r\n" * 4096)
            else:  # an endless body, both ways
                servers.listen("endless", address, 443, tls=pki.server_context(), prefix=b"HTTP/1.1 200 OK\r\n\r\n")
                servers.listen("endless", address, 80, prefix=b"HTTP/1.1 200 OK\r\n\r\n")
        with FakeDNS(web) as dns_server:
            targets = write_targets(tmp_path / "flood.toml", networks=[str(net)], domains=names,
                                    endpoints=[f"{h}:{p}" for h, p in endpoints])
            out, err = tmp_path / "stdout", tmp_path / "stderr"
            with open(out, "wb") as stdout, open(err, "wb") as stderr:
                proc = subprocess.Popen(
                    netprobe_cmd("run", "--targets", str(targets), "--resolver", dns_server.address,
                                 "--ca-bundle", str(pki.ca), "--timeout", "2", "--format", "jsonl"),
                    stdout=stdout, stderr=stderr, env=netprobe_env(), cwd=REPO_ROOT)
                code, peak_mb = wait_with_rusage(proc, RUN_BOUND_S)
    finally:
        servers.close()
    assert code == 0, err.read_text()
    assert 10 < peak_mb < RSS_BOUND_MB, f"peak RSS {peak_mb:.0f} MB"  # > 10: it was really sampled
    records = jsonl(out.read_text())
    assert len(records) == 50 * 4 + 10 * 4 + 1  # tcp + 3 MTProto kinds; dns, dns_injection, https, http; summary
    # ... and each record says what was cut.
    for record in records:
        evidence = record["evidence"]
        if record["probe"].startswith("mtproto"):
            assert evidence["bytes_received"] <= mtproto.MAX_READ
            # The file names no controls: judged mtproto.no_control, what was seen kept as observed.
            assert observed_reason(record) == "mtproto.bad_response"
            assert evidence["first_bytes"]["truncated"] is True
            assert len(bytes.fromhex(evidence["first_bytes"]["hex"])) <= mtproto.FIRST_BYTES
        elif record["probe"] in ("https", "http"):
            http = evidence["http"]
            assert len(http.get("headers", {}).get("x-big", "")) <= text.MAX_VALUE_CHARS
            if http["headers_complete"]:
                assert len(bytes.fromhex(http["body_prefix"]["hex"])) == https.BODY_PREFIX
            else:
                assert http["headers_truncated"] and http["truncated_by"] in ("count", "bytes")


# --- DNS ----------------------------------------------------------------------------------------

def test_dns_answers_kept_in_evidence_are_capped_and_the_cut_counted():
    addresses = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(300)]
    with FakeDNS({"many.test": addresses}) as server:
        result = asyncio.run(probe_dns("many.test", parse_endpoint(server.address), NETWORKS, 1.0))
    query = next(q for q in result.evidence["queries"] if q["qtype"] == "A")
    assert query["rcode"] == "NOERROR"
    assert len(query["answers"]) == MAX_ANSWERS_KEPT
    assert len(query["addresses"]) == MAX_ANSWERS_KEPT
    assert query["answers_dropped"] == 300 - MAX_ANSWERS_KEPT
    assert result.verdict == "reachable"


# --- TLS ------------------------------------------------------------------------------------------

def probe_against_tls_server(tmp_path: Path, pki, *, handler: str = "answer", chain: Path | None = None,
                             tls: bool = True, **params):
    servers = HostileServers()
    try:
        context = None
        if tls:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(chain or pki.cert, pki.key)
        host, port = servers.listen(handler, "127.0.0.1", tls=context, **params)
        started = time.monotonic()
        result = asyncio.run(probe_https("flood.test", [LOOPBACK], "pinned", NETWORKS, 2.0, str(pki.ca),
                                         port=port))
        return result, time.monotonic() - started
    finally:
        servers.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_certificate_fields_kept_in_evidence_are_capped(tmp_path):
    pki = make_pki(tmp_path, ["flood.test"], organization="O" * 60 + "\u00e9" * 60, extra_sans=500)
    result, _ = probe_against_tls_server(tmp_path, pki, payload=OK)
    assert result.verdict == "reachable", result.evidence
    certificate = result.evidence["tls"]["certificate"]
    assert len(certificate["subject_alt_names"]) == https.RECORDED_SAN
    assert len(certificate["subject"]) <= text.MAX_VALUE_CHARS
    assert len(certificate["issuer"]) <= text.MAX_VALUE_CHARS
    assert certificate["subject"].isascii()  # the é arrive escaped


def test_an_oversized_certificate_chain_is_refused_not_buffered(tmp_path):
    """OpenSSL refuses a certificate message over its 100 KiB max_cert_list: the
    handshake fails fast instead of growing a buffer for whatever the server sends."""
    pki = make_pki(tmp_path, ["flood.test"])
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pki.cert.read_bytes() + pki.ca.read_bytes() * 400)  # ~250 KB of certificates
    result, elapsed = probe_against_tls_server(tmp_path, pki, payload=OK, chain=chain)
    assert result.reason == "tls.protocol_error", result.evidence
    assert result.evidence["tls"]["ssl_reason"] == "EXCESSIVE_MESSAGE_SIZE"
    assert result.evidence["tls"]["server_bytes"] < 256 * 1024  # read no further than the refusal
    assert elapsed < 1.0


def test_an_endless_tls_handshake_ends_fast(tmp_path):
    """A 'ServerHello' declaring 16 MB, then bytes without end: refused at once."""
    pki = make_pki(tmp_path, ["flood.test"])
    record = b"\x16\x03\x03\x40\x00" + b"\x02\xff\xff\xff" + b"\x00" * (0x4000 - 4)
    result, elapsed = probe_against_tls_server(tmp_path, pki, handler="endless", tls=False,
                                               prefix=b"", chunk=record * 4)
    assert result.reason.startswith("tls.") and result.reason != "tls.timeout", result.evidence
    assert elapsed < 1.0
    tls = result.evidence["tls"]
    assert tls["ssl_reason"] == "EXCESSIVE_MESSAGE_SIZE"
    assert tls["server_bytes"] < 256 * 1024
    assert len(bytes.fromhex(tls["first_bytes"]["hex"])) <= https.RAW_EVIDENCE_BYTES
    assert tls["first_bytes"]["truncated"] is True


def test_an_endless_body_is_recorded_as_truncated(tmp_path):
    pki = make_pki(tmp_path, ["flood.test"])
    result, elapsed = probe_against_tls_server(tmp_path, pki, handler="endless", prefix=b"HTTP/1.1 200 OK\r\n\r\n")
    assert result.verdict == "reachable" and elapsed < 2.0
    prefix = result.evidence["http"]["body_prefix"]
    assert len(bytes.fromhex(prefix["hex"])) == https.BODY_PREFIX
    assert prefix["truncated"] is True
