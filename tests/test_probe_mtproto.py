"""The MTProto probe against real servers on 127.0.0.1 only: the lab MTProto server
(tests/lab/mtproto_server.py) as a subprocess, and small in-test asyncio servers that
misbehave the ways a censor's middlebox does."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time
import tracemalloc

import pytest

from netprobe import mtproto_wire as wire
from netprobe.addresses import Endpoint
from netprobe.classify import REASONS
from netprobe.probes import mtproto
from netprobe.probes.mtproto import probe_mtproto
from tests.support.mtproto_lab_server import LabServer

LOOPBACK = ipaddress.ip_address("127.0.0.1")
LAB_FINGERPRINT = "c3b42b026ce86b21"
TIMEOUT = 1.0
SLACK = 0.3  # a probe may overrun its timeout by at most this much
TEST_BOUND = 10.0  # no test's event loop may run longer than this
INTERMEDIATE_REQUEST = 4 + 4 + 40  # marker, length, req_pq_multi
TRANSPORTS = ("intermediate", "abridged", "obfuscated2")
KIND_OF = {"intermediate": "mtproto", "abridged": "mtproto_abridged", "obfuscated2": "mtproto_obfuscated2"}


def run(coro):
    """Run a coroutine with a hard bound so that no test can hang."""
    async def bounded():
        async with asyncio.timeout(TEST_BOUND):
            return await coro
    return asyncio.run(bounded())


def probe(port: int, transport: str = "intermediate", timeout: float = TIMEOUT, context: dict | None = None):
    return probe_mtproto(Endpoint(LOOPBACK, port), transport, timeout, context)


# --- the lab server subprocess -----------------------------------------------------------------


@pytest.fixture
def lab_server(request):
    """Factory: lab_server(*args) -> LabServer, terminated by a finalizer whatever happens."""
    def start(*args: str) -> LabServer:
        server = LabServer(*args)
        request.addfinalizer(server.stop)
        return server
    return start


@pytest.fixture(scope="module")
def normal_server():
    server = LabServer()
    yield server
    server.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reachable_lab_server_echoes_our_nonce(normal_server, transport):
    result = run(probe(normal_server.port, transport, context={"dc": 2}))
    assert (result.verdict, result.reason) == ("reachable", None), result.evidence
    assert result.probe == KIND_OF[transport]
    assert result.target == result.address == f"127.0.0.1:{normal_server.port}"
    evidence = result.evidence
    assert evidence["dc"] == 2
    assert evidence["transport"] == transport
    assert evidence["response"] == "res_pq"
    assert len(bytes.fromhex(evidence["nonce"])) == 16
    assert len(bytes.fromhex(evidence["server_nonce"])) == 16
    assert evidence["server_nonce"] != evidence["nonce"]
    assert evidence["fingerprints"] == [LAB_FINGERPRINT]
    assert evidence["stage"] == "receive"
    assert evidence["connect"] == "ok" and evidence["connect_ms"] >= 0
    assert evidence["request_bytes"] == {"intermediate": 48, "abridged": 42, "obfuscated2": 108}[transport]
    assert evidence["bytes_received"] > 0
    assert evidence["response_ms"] >= evidence["first_byte_ms"] >= 0
    assert "first_bytes" not in evidence


def test_nonce_is_fresh_for_every_probe(normal_server):
    async def twice():
        return await asyncio.gather(probe(normal_server.port), probe(normal_server.port))
    first, second = run(twice())
    assert first.verdict == second.verdict == "reachable"
    assert first.evidence["nonce"] != second.evidence["nonce"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_transport_error_429_is_a_genuine_server(lab_server, transport):
    server = lab_server("--mode", "error429")
    result = run(probe(server.port, transport))
    assert (result.verdict, result.reason) == ("reachable", None), result.evidence
    assert result.evidence["response"] == "transport_error"
    assert result.evidence["error_code"] == -429


def test_silent_server_times_out_within_the_deadline(lab_server):
    server = lab_server("--mode", "silent", "--idle-timeout", "30")
    started = time.monotonic()
    result = run(probe(server.port))
    elapsed = time.monotonic() - started
    assert (result.verdict, result.reason) == ("blocked", "mtproto.timeout"), result.evidence
    assert elapsed <= TIMEOUT + SLACK
    assert result.duration_ms <= (TIMEOUT + SLACK) * 1000
    assert result.evidence["stage"] == "receive"
    assert result.evidence["connect"] == "ok"
    assert result.evidence["bytes_received"] == 0


# --- in-test misbehaving servers ---------------------------------------------------------------


async def serve(handler):
    """A server on 127.0.0.1 with a free port; handler(reader, writer) is one connection."""
    async def guarded(reader, writer):
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
    return await asyncio.start_server(guarded, "127.0.0.1", 0)


async def probe_against(handler, transport: str = "intermediate", timeout: float = TIMEOUT):
    server = await serve(handler)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        result = await probe(port, transport, timeout)
        return result, time.monotonic() - started
    finally:
        server.close()


async def http_400(reader, writer):
    await reader.readexactly(INTERMEDIATE_REQUEST)
    writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(TEST_BOUND)  # keep the connection open: the answer alone must decide


def test_http_answer_is_bad_response_with_first_bytes():
    result, _ = run(probe_against(http_400))
    assert (result.verdict, result.reason) == ("blocked", "mtproto.bad_response"), result.evidence
    assert result.evidence["hint"] == "http"
    assert bytes.fromhex(result.evidence["first_bytes"]["hex"]).startswith(b"HTTP/1.1 400")
    assert result.evidence["first_bytes"]["length"] == result.evidence["bytes_received"] == 28
    assert result.evidence["response"] == "framing_error"


def test_http_answer_then_close_is_bad_response_for_abridged():
    """In abridged framing "H" declares a 288-byte packet: the stream's end decides,
    and the HTTP bytes already received outweigh the FIN."""
    async def http_then_close(reader, writer):
        await reader.readexactly(42)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
    result, _ = run(probe_against(http_then_close, "abridged"))
    assert (result.verdict, result.reason) == ("blocked", "mtproto.bad_response"), result.evidence
    assert result.evidence["hint"] == "http"
    assert result.evidence["ended_by"] == "eof"


async def reset_after_request(reader, writer):
    await reader.readexactly(INTERMEDIATE_REQUEST)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def test_reset_after_request_is_mtproto_reset():
    result, _ = run(probe_against(reset_after_request))
    assert (result.verdict, result.reason) == ("reset", "mtproto.reset"), result.evidence
    assert result.evidence["stage"] == "receive"
    assert result.evidence["errno"] == "ECONNRESET"
    assert result.evidence["bytes_received"] == 0


async def close_after_request(reader, writer):
    await reader.readexactly(INTERMEDIATE_REQUEST)


def test_clean_close_is_mtproto_eof():
    result, _ = run(probe_against(close_after_request))
    assert (result.verdict, result.reason) == ("blocked", "mtproto.eof"), result.evidence
    assert result.evidence["stage"] == "receive"


async def drip(reader, writer):
    """A valid 1000-byte length header, then one byte every 0.2 s forever."""
    await reader.readexactly(INTERMEDIATE_REQUEST)
    for byte in struct.pack("<I", 1000):
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.2)
    while True:
        writer.write(b"\x00")
        await writer.drain()
        await asyncio.sleep(0.2)


def test_drip_feed_is_cut_by_the_one_deadline():
    result, elapsed = run(probe_against(drip))
    assert (result.verdict, result.reason) == ("blocked", "mtproto.timeout"), result.evidence
    assert elapsed <= TIMEOUT + SLACK
    assert 1 <= result.evidence["bytes_received"] <= TIMEOUT / 0.2 + 2
    assert result.evidence["hint"] == "unknown"


def test_huge_declared_length_is_refused_without_allocating():
    async def huge(reader, writer):
        await reader.readexactly(INTERMEDIATE_REQUEST)
        writer.write(struct.pack("<I", 0x7FFF_FFFF) + b"\x00" * 64)
        await writer.drain()
        await asyncio.sleep(TEST_BOUND)

    tracemalloc.start()
    try:
        result, _ = run(probe_against(huge))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.verdict, result.reason) == ("blocked", "mtproto.bad_response"), result.evidence
    assert result.evidence["response"] == "framing_error"
    assert "exceeds cap" in result.evidence["detail"]
    assert peak < 4 * 1024 * 1024


def test_wrong_nonce_is_nonce_mismatch():
    async def wrong_nonce(reader, writer):
        codec = wire.Intermediate()
        assert await reader.readexactly(4) == wire.Intermediate.MARKER
        payload = codec.feed(await reader.readexactly(INTERMEDIATE_REQUEST - 4))[0]
        assert wire.parse_req_pq_multi(payload) is not None
        answer = wire.res_pq(b"\x42" * 16, b"\x17" * 16, b"\x17\xed", [0xC3B42B026CE86B21],
                             wire.new_message_id(time.time()) | 1)
        writer.write(codec.frame(answer))
        await writer.drain()
        await asyncio.sleep(TEST_BOUND)

    result, _ = run(probe_against(wrong_nonce))
    assert (result.verdict, result.reason) == ("blocked", "mtproto.nonce_mismatch"), result.evidence
    assert result.evidence["response"] == "nonce_mismatch"
    assert result.evidence["server_nonce"] == "17" * 16
    assert result.evidence["nonce"] != "42" * 16


def test_closed_port_is_tcp_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(probe(port))
    assert (result.verdict, result.reason) == ("reset", "tcp.refused"), result.evidence
    assert result.evidence["stage"] == "connect"
    assert result.evidence["connect"] == "failed"
    assert result.evidence["errno"] == "ECONNREFUSED"
    assert result.evidence["bytes_received"] == 0


def test_every_reason_it_can_give_is_known():
    for reason in ("mtproto.timeout", "mtproto.reset", "mtproto.eof", "mtproto.bad_response",
                   "mtproto.nonce_mismatch", "tcp.refused", "tcp.timeout"):
        assert reason in REASONS


def test_unknown_transport_is_refused():
    with pytest.raises(ValueError):
        run(probe(9, "http"))


REQUEST_SIZE = {"intermediate": 48, "abridged": 42, "obfuscated2": 108}
TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x28"  # fatal handshake_failure


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("answer, hint", [(b"HTTP/1.1 400 Bad Request\r\n\r\n", "http"), (TLS_ALERT, "tls")])
def test_foreign_protocol_answer_is_bad_response_on_every_transport(transport, answer, hint):
    async def foreign(reader, writer):
        await reader.readexactly(REQUEST_SIZE[transport])
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(0.2)  # then FIN: the answer, not the close, decides

    result, elapsed = run(probe_against(foreign, transport))
    assert (result.verdict, result.reason) == ("blocked", "mtproto.bad_response"), result.evidence
    assert result.evidence["hint"] == hint
    assert bytes.fromhex(result.evidence["first_bytes"]["hex"]) == answer
    assert elapsed <= TIMEOUT + SLACK


def test_deadline_during_connect_keeps_the_tcp_reason(monkeypatch):
    """A connect that never completes (SYN dropped) is tcp.timeout, as probe_tcp says."""
    async def never_connects(endpoint):
        await asyncio.sleep(TEST_BOUND)

    monkeypatch.setattr(mtproto, "open_socket", never_connects)
    started = time.monotonic()
    result = run(probe(9, timeout=0.3))
    assert time.monotonic() - started <= 0.3 + SLACK
    assert (result.verdict, result.reason) == ("blocked", "tcp.timeout"), result.evidence
    assert result.evidence["stage"] == "connect"
    assert result.evidence["connect"] == "failed"
