"""Loopback tests for the lab MTProto server (tests/lab/mtproto_server.py), 127.0.0.1 only."""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from netprobe import mtproto_wire as wire
from tests.support.mtproto_lab_server import SERVER_SCRIPT, LabServer

LAB_PQ = 0x17ED48941A08F981
LAB_FINGERPRINT = 0xC3B42B026CE86B21
SOCKET_TIMEOUT = 5.0


# --- server process management ----------------------------------------------------------------


@pytest.fixture
def start_server(tmp_path, request):
    """Factory: start_server(mode, *extra_args) -> LabServer, always terminated afterwards."""

    def start(mode: str = "normal", *extra_args: str) -> LabServer:
        server = LabServer("--mode", mode, "--verbose", *extra_args, log_path=tmp_path / f"server-{mode}.log")
        request.addfinalizer(server.stop)
        return server

    return start


@pytest.fixture(scope="module")
def normal_server(tmp_path_factory):
    server = LabServer("--mode", "normal", "--verbose", log_path=tmp_path_factory.mktemp("lab") / "server.log")
    yield server
    server.stop()


# --- client helpers ----------------------------------------------------------------------------

TRANSPORTS = {
    "intermediate": lambda: wire.Intermediate(),
    "padded_intermediate": lambda: wire.PaddedIntermediate(),
    "abridged": lambda: wire.Abridged(),
    "obfuscated2/intermediate": lambda: wire.Obfuscated2("intermediate"),
    "obfuscated2/abridged": lambda: wire.Obfuscated2("abridged"),
    "obfuscated2/padded_intermediate": lambda: wire.Obfuscated2("padded_intermediate"),
}


def connect(port: int, timeout: float = SOCKET_TIMEOUT) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def receive_packets(sock: socket.socket, transport, timeout: float = SOCKET_TIMEOUT) -> list[bytes]:
    """Read until the transport yields at least one packet; [] if the server closed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            return []
        packets = transport.feed(data)
        if packets:
            return packets
    raise TimeoutError("no complete packet before the deadline")


def server_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def probe(port: int, transport_name: str) -> tuple[wire.ResponseInfo, bytes]:
    transport = TRANSPORTS[transport_name]()
    nonce = os.urandom(16)
    with connect(port) as sock:
        sock.sendall(transport.initial() + transport.frame(wire.req_pq_multi(nonce, wire.new_message_id(time.time()))))
        packets = receive_packets(sock, transport)
    assert len(packets) == 1
    return wire.parse_response(packets[0], nonce), nonce


# --- tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport_name", sorted(TRANSPORTS))
def test_req_pq_multi_gets_res_pq_echoing_nonce(normal_server, transport_name):
    info, _nonce = probe(normal_server.port, transport_name)
    assert info.kind == "res_pq"  # res_pq means our nonce was echoed
    assert info.pq == LAB_PQ
    assert info.fingerprints == (LAB_FINGERPRINT,)
    assert info.server_nonce is not None and len(bytes.fromhex(info.server_nonce)) == 16


def test_nonce_is_echoed_and_server_nonce_is_fresh(normal_server):
    first, _ = probe(normal_server.port, "intermediate")
    second, _ = probe(normal_server.port, "intermediate")
    assert first.kind == second.kind == "res_pq"
    assert first.server_nonce != second.server_nonce


def test_two_requests_on_one_connection(normal_server):
    transport = wire.Obfuscated2("abridged")
    with connect(normal_server.port) as sock:
        sock.sendall(transport.initial())
        for _ in range(2):
            nonce = os.urandom(16)
            sock.sendall(transport.frame(wire.req_pq_multi(nonce, wire.new_message_id(time.time()))))
            (packet,) = receive_packets(sock, transport)
            assert wire.parse_response(packet, nonce).kind == "res_pq"


@pytest.mark.parametrize("transport_name", ["intermediate", "abridged", "obfuscated2/intermediate"])
def test_garbage_payload_gets_404_then_close(normal_server, transport_name):
    transport = TRANSPORTS[transport_name]()
    with connect(normal_server.port) as sock:
        sock.sendall(transport.initial() + transport.frame(b"\x13\x37" * 20))
        (packet,) = receive_packets(sock, transport)
        info = wire.parse_response(packet, os.urandom(16))
        assert info.kind == "transport_error"
        assert info.error_code == -404
        assert server_closed(sock)


def test_oversized_declared_length_gets_404(normal_server):
    transport = wire.Intermediate()
    with connect(normal_server.port) as sock:
        sock.sendall(transport.initial() + (10 * 1024 * 1024).to_bytes(4, "little"))
        (packet,) = receive_packets(sock, transport)
        assert wire.parse_response(packet, bytes(16)).error_code == -404


def test_unrecognisable_stream_is_closed_without_answer(normal_server):
    with connect(normal_server.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: example\r\n" + b"X" * 64 + b"\r\n\r\n")
        assert server_closed(sock)


def test_many_concurrent_connections(normal_server):
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda i: probe(normal_server.port, sorted(TRANSPORTS)[i % 6])[0].kind, range(96)))
    assert results == ["res_pq"] * 96


def test_error429_mode_answers_429(start_server):
    server = start_server("error429")
    info, _ = probe(server.port, "obfuscated2/intermediate")
    assert info.kind == "transport_error"
    assert info.error_code == -429


def test_silent_mode_accepts_but_never_answers(start_server):
    server = start_server("silent")
    transport = wire.Intermediate()
    with connect(server.port, timeout=1.0) as sock:
        sock.sendall(transport.initial() + transport.frame(wire.req_pq_multi(bytes(16), 4)))
        with pytest.raises(socket.timeout):
            sock.recv(65536)


def test_drip_mode_sends_the_answer_one_byte_at_a_time(start_server):
    server = start_server("drip", "--drip-interval", "0.01")
    transport = wire.Intermediate()
    nonce = os.urandom(16)
    with connect(server.port, timeout=5.0) as sock:
        sock.sendall(transport.initial() + transport.frame(wire.req_pq_multi(nonce, wire.new_message_id(time.time()))))
        chunks = []
        packets: list[bytes] = []
        started = time.monotonic()
        while not packets:
            data = sock.recv(65536)
            assert data, "the server closed before its answer was complete"
            chunks.append(data)
            packets = transport.feed(data)
        elapsed = time.monotonic() - started
    received = len(b"".join(chunks))
    assert len(chunks) >= received // 2  # byte by byte (a slow reader may see two at once)
    assert wire.parse_response(packets[0], nonce).kind == "res_pq"  # the genuine answer, slowly
    assert elapsed >= 0.01 * (received - 1) * 0.8


def test_idle_connection_is_closed(start_server):
    server = start_server("normal", "--idle-timeout", "0.5")
    with connect(server.port, timeout=5.0) as sock:
        started = time.monotonic()
        assert server_closed(sock)
        assert time.monotonic() - started < 4.0


def test_server_terminates_on_sigterm(start_server):
    server = start_server("silent")
    with connect(server.port):
        server.process.terminate()
        assert server.process.wait(timeout=5) is not None


# --- --listen parsing (imports the script as a module; it is not a package) ---------------------


def _load_server_module():
    spec = importlib.util.spec_from_file_location("lab_mtproto_server", SERVER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1:443", ("10.0.0.1", 443)),
        ("0.0.0.0:443", ("0.0.0.0", 443)),
        ("[fd00::1]:443", ("fd00::1", 443)),
        ("[::]:80", ("::", 80)),
    ],
)
def test_parse_listen_accepts(value, expected):
    assert _load_server_module().parse_listen(value) == expected


@pytest.mark.parametrize("value", ["10.0.0.1", "fd00::1:443", ":443", "10.0.0.1:http", "10.0.0.1:70000"])
def test_parse_listen_rejects(value):
    module = _load_server_module()
    with pytest.raises(module.argparse.ArgumentTypeError):
        module.parse_listen(value)
