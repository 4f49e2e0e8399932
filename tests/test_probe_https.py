"""Loopback tests for the HTTPS / HTTP probes (netprobe/probes/https.py), 127.0.0.1 only.

Each test starts small asyncio servers on 127.0.0.1 with kernel-chosen ports,
in the same event loop as the probe, and bounds its own run time.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import socket
import ssl
import struct
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from netprobe.classify import tls_reason
from netprobe import text
from netprobe.probes import https
from netprobe.probes.https import probe_http, probe_https

LOOPBACK = ipaddress.ip_address("127.0.0.1")
NETWORKS = (ipaddress.ip_network("127.0.0.0/8"),)
DOMAIN = "web.telegram.lab"
SERVICE = ("web.telegram.lab", "t.lab")
TEST_BOUND_S = 10.0
SLACK_S = 0.3


# --- certificates ------------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    server_der: bytes
    other_cert: Path
    other_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "netprobe lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _leaf(ca_key, ca_name: x509.Name, dns_name: str, now: datetime.datetime):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(_name(dns_name)).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    """A throwaway CA, a server certificate for DOMAIN and one for another name."""
    tmp = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("netprobe lab CA")
    ca_cert = (x509.CertificateBuilder()
               .subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True, crl_sign=True,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    (tmp / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths = {}
    for label, dns_name in (("server", DOMAIN), ("other", "other.example")):
        key, cert = _leaf(ca_key, ca_name, dns_name, now)
        (tmp / f"{label}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(tmp / f"{label}.key", key)
        paths[label] = cert
    return Pki(ca=tmp / "ca.pem", server_cert=tmp / "server.pem", server_key=tmp / "server.key",
               server_der=paths["server"].public_bytes(serialization.Encoding.DER),
               other_cert=tmp / "other.pem", other_key=tmp / "other.key")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


# --- servers -----------------------------------------------------------------------------

@asynccontextmanager
async def serve(handler, context: ssl.SSLContext | None = None):
    """A server on 127.0.0.1 with a kernel-chosen port; yields the port.

    Handlers end on their own once the probe hangs up; teardown waits for them
    (cancelling only stragglers) so that asyncio logs no cancelled handshakes.
    """
    connections: set[asyncio.Task] = set()

    async def tracked(reader, writer):
        connections.add(asyncio.current_task())
        try:
            await handler(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.sleep(0.05)  # let handshakes the probe abandoned fail on the server side
        if connections:
            _, stragglers = await asyncio.wait(connections, timeout=2.0)
            for task in stragglers:
                task.cancel()
            await asyncio.gather(*stragglers, return_exceptions=True)


def run(coro):
    async def bounded():
        async with asyncio.timeout(TEST_BOUND_S):
            return await coro
    return asyncio.run(bounded())


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def read_client_hello(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(5)
    assert header[0] == 0x16, header  # a TLS handshake record
    return header + await reader.readexactly(int.from_bytes(header[3:5], "big"))


def answer(response: bytes):
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(response)
        await writer.drain()
    return handler


def reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


OK_BODY = b"<html>telegram lab</html>"
OK_RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: lab-nginx\r\nContent-Type: text/html\r\n"
               b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(OK_BODY), OK_BODY))


def redirect(location: str) -> bytes:
    return (f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n").encode()


async def https_to(port: int, *, ca: Path | None, timeout: float = 2.0, domain: str = DOMAIN):
    return await probe_https(domain, [LOOPBACK], "pinned", NETWORKS, timeout, str(ca) if ca else None,
                             port=port, service_domains=SERVICE)


async def https_against(handler, pki: Pki, *, tls: bool = True, timeout: float = 2.0,
                        cert: tuple[Path, Path] | None = None, ca: Path | None | bool = True):
    context = server_context(*(cert or (pki.server_cert, pki.server_key))) if tls else None
    async with serve(handler, context) as port:
        return await https_to(port, ca=pki.ca if ca is True else ca, timeout=timeout)


# --- TLS + HTTP answers ------------------------------------------------------------------

def test_normal_server_is_reachable_with_tls_evidence(pki):
    result = run(https_against(answer(OK_RESPONSE), pki))
    assert (result.verdict, result.reason, result.probe, result.target) == ("reachable", None, "https", DOMAIN)
    assert result.address.startswith("127.0.0.1:")
    ev = result.evidence
    assert ev["address_source"] == "pinned" and ev["addresses"] == ["127.0.0.1"] and ev["address_in_networks"]
    assert ev["connect"] == "ok"
    tls = ev["tls"]
    assert tls["sni"] == DOMAIN
    assert tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert tls["alpn"] == "http/1.1" and tls["cipher"]
    cert = tls["certificate"]
    assert "netprobe lab CA" in cert["issuer"] and DOMAIN in cert["subject"]
    assert cert["sha256"] == hashlib.sha256(pki.server_der).hexdigest()
    assert cert["not_before"] and cert["not_after"] and cert["subject_alt_names"] == [f"DNS:{DOMAIN}"]
    http = ev["http"]
    assert http["status"] == 200 and http["http_version"] == "HTTP/1.1"
    assert http["headers"] == {"server": "lab-nginx", "content-type": "text/html",
                               "content-length": str(len(OK_BODY))}
    assert http["headers_complete"] and not http["headers_truncated"]
    assert bytes.fromhex(http["body_prefix"]["hex"]) == OK_BODY
    assert ev["stage"] == "http"


def test_tls12_only_server(pki):
    context = server_context(pki.server_cert, pki.server_key)
    context.maximum_version = ssl.TLSVersion.TLSv1_2

    async def go():
        async with serve(answer(OK_RESPONSE), context) as port:
            return await https_to(port, ca=pki.ca)

    result = run(go())
    assert (result.verdict, result.evidence["tls"]["version"]) == ("reachable", "TLSv1.2")


def stalled_body():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await reader.read(1)  # the rest of the body never comes
    return handler


def test_stalled_body_waits_only_the_grace(pki):
    started = time.monotonic()
    result = run(https_against(stalled_body(), pki, timeout=3.0))
    assert time.monotonic() - started < https.BODY_GRACE_S + SLACK_S
    assert (result.verdict, result.reason) == ("reachable", None)
    http = result.evidence["http"]
    assert http["body_wait"] == "grace ended" and bytes.fromhex(http["body_prefix"]["hex"]) == b"partial"


def test_deadline_during_body_keeps_the_answer(pki):
    timeout = 0.3  # shorter than BODY_GRACE_S: the probe's own deadline cuts the body wait
    started = time.monotonic()
    result = run(https_against(stalled_body(), pki, timeout=timeout))
    assert time.monotonic() - started < timeout + SLACK_S
    assert (result.verdict, result.reason) == ("reachable", None)
    http = result.evidence["http"]
    assert http["body_wait"] == "probe deadline" and http["status"] == 200
    assert "deadline_stage" not in result.evidence


def test_request_is_a_plain_get_with_host_and_user_agent(pki):
    seen: list[bytes] = []

    async def handler(reader, writer):
        seen.append(await read_request(reader))
        writer.write(OK_RESPONSE)
        await writer.drain()

    run(https_against(handler, pki))
    request = seen[0].decode()
    assert request.startswith("GET / HTTP/1.1\r\n")
    assert f"\r\nHost: {DOMAIN}\r\n" in request and "\r\nConnection: close\r\n" in request
    assert "\r\nUser-Agent: netprobe/" in request


def test_451_is_a_blockpage(pki):
    result = run(https_against(answer(b"HTTP/1.1 451 Unavailable For Legal Reasons\r\n"
                                      b"Content-Length: 7\r\n\r\nblocked"), pki))
    assert (result.verdict, result.reason) == ("blocked", "http.blockpage")
    assert result.evidence["http"]["status"] == 451


def test_redirect_off_the_service_is_a_blockpage(pki):
    result = run(https_against(answer(redirect("http://blocked.example/")), pki))
    assert (result.verdict, result.reason) == ("blocked", "http.blockpage")
    http = result.evidence["http"]
    assert http["headers"]["location"] == "http://blocked.example/"
    assert http["location_host"] == "blocked.example" and http["location_on_service"] is False


@pytest.mark.parametrize("location", [
    f"https://www.{DOMAIN}/",  # a subdomain of the domain itself
    "https://t.lab/resolve",  # another domain of the service
    "/login",  # relative: same host
    "https://127.0.0.5/",  # an address inside the service's networks
])
def test_redirect_within_the_service_is_reachable(pki, location):
    result = run(https_against(answer(redirect(location)), pki))
    assert (result.verdict, result.reason) == ("reachable", None)
    assert result.evidence["http"]["status"] == 302
    assert result.evidence["http"]["location_on_service"] is True


def test_redirect_to_a_lookalike_suffix_is_a_blockpage(pki):
    result = run(https_against(answer(redirect(f"https://evil{DOMAIN}/")), pki))
    assert result.reason == "http.blockpage"


# --- certificates ------------------------------------------------------------------------

def test_certificate_for_another_name(pki):
    result = run(https_against(answer(OK_RESPONSE), pki, cert=(pki.other_cert, pki.other_key)))
    assert (result.verdict, result.reason) == ("blocked", "tls.bad_certificate")
    tls = result.evidence["tls"]
    assert tls["error"] == "SSLCertVerificationError"
    assert tls["verify_code"] == 62 and "Hostname mismatch" in tls["verify_message"]
    assert "http" not in result.evidence and result.evidence["stage"] == "tls"


def test_untrusted_ca_with_the_system_store(pki):
    result = run(https_against(answer(OK_RESPONSE), pki, ca=None))
    assert (result.verdict, result.reason) == ("blocked", "tls.bad_certificate")
    assert result.evidence["ca_bundle"] == "system"
    assert result.evidence["tls"]["verify_code"] in (19, 20, 21)  # self-signed in chain / unknown issuer


# --- handshake failures ------------------------------------------------------------------

def test_reset_on_client_hello(pki):
    async def handler(reader, writer):
        await read_client_hello(reader)
        reset(writer)

    result = run(https_against(handler, pki, tls=False))
    assert (result.verdict, result.reason) == ("reset", "tls.reset")
    assert result.evidence["connect"] == "ok" and result.evidence["tls"]["error"] == "ConnectionResetError"


def test_close_after_client_hello(pki):
    async def handler(reader, writer):
        await read_client_hello(reader)

    result = run(https_against(handler, pki, tls=False))
    assert (result.verdict, result.reason) == ("blocked", "tls.eof")
    assert result.evidence["tls"]["server_bytes"] == 0


def test_silent_server_times_out_in_tls(pki):
    async def handler(reader, writer):
        await read_client_hello(reader)
        await reader.read(1)  # never answer; returns when the probe hangs up

    timeout = 0.8
    started = time.monotonic()
    result = run(https_against(handler, pki, tls=False, timeout=timeout))
    elapsed = time.monotonic() - started
    assert (result.verdict, result.reason) == ("blocked", "tls.timeout")
    assert result.evidence["deadline_stage"] == "tls"
    assert elapsed < timeout + SLACK_S and result.duration_ms < (timeout + SLACK_S) * 1000


def test_http_answer_to_client_hello_is_a_protocol_error(pki):
    async def handler(reader, writer):
        await read_client_hello(reader)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    result = run(https_against(handler, pki, tls=False))
    assert (result.verdict, result.reason) == ("blocked", "tls.protocol_error")
    tls = result.evidence["tls"]
    assert bytes.fromhex(tls["first_bytes"]["hex"]).startswith(b"HTTP/1.1 400")
    assert tls["ssl_reason"]


def test_alert_answer_to_client_hello(pki):
    async def handler(reader, writer):
        await read_client_hello(reader)
        writer.write(bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]))  # fatal handshake_failure
        await writer.drain()
        await reader.read(1)

    result = run(https_against(handler, pki, tls=False))
    assert (result.verdict, result.reason) == ("blocked", "tls.alert")
    assert "ALERT" in result.evidence["tls"]["ssl_reason"]


# --- HTTP failures -----------------------------------------------------------------------

def test_dripping_server_times_out_in_http(pki):
    async def handler(reader, writer):
        await read_request(reader)
        for byte in OK_RESPONSE:
            if writer.transport.is_closing():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)

    timeout = 1.0
    started = time.monotonic()
    result = run(https_against(handler, pki, timeout=timeout))
    elapsed = time.monotonic() - started
    assert (result.verdict, result.reason) == ("blocked", "http.timeout")
    assert result.evidence["deadline_stage"] == "http"
    assert 0 < result.evidence["http"]["received"] < 10
    assert elapsed < timeout + SLACK_S


def endless(status: bytes, chunk_of):
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(status)
        for i in range(200_000):  # ends when the probe hangs up (or after ~100 MB)
            if writer.transport.is_closing():
                return
            writer.write(chunk_of(i))
            await writer.drain()
            await asyncio.sleep(0)
    return handler


def test_endless_headers_stop_at_the_header_count_cap(pki):
    """Decision: a valid status line is an HTTP answer, so the verdict is reachable;
    the truncation is recorded (headers_truncated, truncated_by)."""
    handler = endless(b"HTTP/1.1 200 OK\r\nServer: lab\r\n", lambda i: b"X-Filler-%d: %s\r\n" % (i, b"a" * 40))
    started = time.monotonic()
    result = run(https_against(handler, pki, timeout=3.0))
    assert time.monotonic() - started < 2.0
    assert (result.verdict, result.reason) == ("reachable", None)
    http = result.evidence["http"]
    assert http["headers_truncated"] and http["truncated_by"] == "count"
    assert http["header_count"] == https.MAX_HEADERS and not http["headers_complete"]
    assert http["headers"]["server"] == "lab" and "body_prefix" not in http


def test_endless_header_line_stops_at_the_header_byte_cap(pki):
    handler = endless(b"HTTP/1.1 200 OK\r\nX-Big: ", lambda i: b"a" * 4096)
    started = time.monotonic()
    result = run(https_against(handler, pki, timeout=3.0))
    assert time.monotonic() - started < 2.0
    assert (result.verdict, result.reason) == ("reachable", None)
    assert result.evidence["http"]["truncated_by"] == "bytes"


def test_endless_status_line_is_a_bad_response(pki):
    handler = endless(b"HTTP/1.1 200 ", lambda i: b"O" * 1024)
    result = run(https_against(handler, pki, timeout=3.0))
    assert (result.verdict, result.reason) == ("blocked", "http.bad_response")


@pytest.mark.parametrize("ending, ended_by", [("stall", "http.timeout"), ("close", "http.eof"),
                                               ("reset", "http.reset")])
def test_status_line_then_cut_headers_is_an_answer(pki, ending, ended_by):
    """A valid status line is an HTTP answer, however the header section ends."""
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nServer: lab\r\nX-Half")
        await writer.drain()
        await asyncio.sleep(0.05)
        if ending == "stall":
            await reader.read(1)
        elif ending == "reset":
            reset(writer)

    timeout = 0.8
    started = time.monotonic()
    result = run(https_against(handler, pki, timeout=timeout))
    assert time.monotonic() - started < timeout + SLACK_S
    assert (result.verdict, result.reason) == ("reachable", None)
    http = result.evidence["http"]
    assert http["ended_by"] == ended_by and http["status"] == 200 and not http["headers_complete"]
    assert http["headers"] == {"server": "lab"} and "deadline_stage" not in result.evidence


def test_non_http_answer_is_a_bad_response(pki):
    result = run(https_against(answer(b"SSH-2.0-OpenSSH_9.6\r\n"), pki))
    assert (result.verdict, result.reason) == ("blocked", "http.bad_response")
    assert bytes.fromhex(result.evidence["http"]["first_bytes"]["hex"]).startswith(b"SSH-2.0")


def test_reset_after_handshake_is_http_reset(pki):
    async def handler(reader, writer):
        await read_request(reader)
        reset(writer)

    result = run(https_against(handler, pki))
    assert (result.verdict, result.reason) == ("reset", "http.reset")
    assert result.evidence["tls"]["version"]


def test_close_before_status_line_is_http_eof(pki):
    async def handler(reader, writer):
        await read_request(reader)

    result = run(https_against(handler, pki))
    assert (result.verdict, result.reason) == ("blocked", "http.eof")


def test_header_values_are_escaped_and_capped(pki):
    response = (b"HTTP/1.1 200 OK\r\nServer: \x1b[31mred\xff\r\nContent-Type: " + b"x" * 1000
                + b"\r\nContent-Length: 0\r\n\r\n")
    result = run(https_against(answer(response), pki))
    headers = result.evidence["http"]["headers"]
    assert headers["server"] == "\\x1b[31mred\\xff"
    assert len(headers["content-type"]) == text.MAX_VALUE_CHARS


def test_body_prefix_is_capped(pki):
    body = b"z" * 10_000
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    result = run(https_against(answer(response), pki))
    prefix = result.evidence["http"]["body_prefix"]
    assert len(bytes.fromhex(prefix["hex"])) == https.BODY_PREFIX
    assert prefix["truncated"] is True and prefix["length"] > https.BODY_PREFIX  # bytes read, not kept


# --- addresses and TCP -------------------------------------------------------------------

def test_no_address_reports_the_dns_reason():
    result = run(probe_https(DOMAIN, [], "dns", NETWORKS, 1.0, None, dns_reason="dns.nxdomain"))
    assert (result.verdict, result.reason, result.address) == ("blocked", "dns.nxdomain", None)
    assert "no genuine address" in result.evidence["note"]
    assert result.evidence["address_source"] == "none"


def test_closed_port_is_tcp_refused(pki):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(https_to(port, ca=pki.ca))
    assert (result.verdict, result.reason) == ("reset", "tcp.refused")
    assert result.evidence["connect"] == "failed" and "tls" not in result.evidence


# --- plain HTTP --------------------------------------------------------------------------

async def http_against(handler):
    async with serve(handler) as port:
        return await probe_http(DOMAIN, [LOOPBACK], "dns", NETWORKS, 2.0, port=port, service_domains=SERVICE)


def test_plain_http_200_is_reachable():
    result = run(http_against(answer(OK_RESPONSE)))
    assert (result.probe, result.verdict, result.reason) == ("http", "reachable", None)
    assert "tls" not in result.evidence and result.evidence["http"]["status"] == 200
    assert result.evidence["address_source"] == "dns"


def test_plain_http_451_is_a_blockpage():
    result = run(http_against(answer(b"HTTP/1.1 451 Unavailable\r\nContent-Length: 0\r\n\r\n")))
    assert (result.verdict, result.reason) == ("blocked", "http.blockpage")


def test_plain_http_redirect_to_https_same_host_is_reachable():
    result = run(http_against(answer(redirect(f"https://{DOMAIN}/"))))
    assert (result.verdict, result.reason) == ("reachable", None)


# --- classify.tls_reason -----------------------------------------------------------------

@pytest.mark.parametrize("exc, reason", [
    (ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
     "tls.bad_certificate"),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "tls.eof"),
    (ssl.SSLError(1, "[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure"), "tls.alert"),
    (ssl.SSLError(1, "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version"), "tls.alert"),
    (ssl.SSLError(1, "[SSL: TLSV1_UNRECOGNIZED_NAME] tlsv1 unrecognized name"), "tls.alert"),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "tls.protocol_error"),
    (ssl.SSLError(1, "[SSL: RECORD_LAYER_FAILURE] record layer failure"), "tls.protocol_error"),
    (ssl.SSLError(1, "[SSL: PACKET_LENGTH_TOO_LONG] packet length too long"), "tls.protocol_error"),
    (ssl.SSLError(1, "[SSL: SOMETHING_NEW] something new"), "tls.unknown"),  # not errno 1 = EPERM
    (ConnectionResetError(104, "Connection reset by peer"), "tls.reset"),
    (TimeoutError(), "tls.timeout"),
])
def test_tls_reason(exc, reason):
    assert tls_reason(exc) == reason
