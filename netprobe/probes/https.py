"""HTTPS and HTTP probes: TCP connect -> TLS handshake -> one HTTP/1.1 GET, under one deadline.

The caller chooses the addresses (genuine DNS answers, else the domain's pinned
addresses); with none, the DNS failure is the result.  Only the first address
is probed.  Every stage is recorded in the evidence; classify turns what went
wrong into a reason.

The TLS handshake is driven by hand (ssl.SSLObject over memory BIOs, bytes
moved with loop.sock_recv/sock_sendall on the already connected socket) rather
than through asyncio's SSL transport: that transport reports an orderly EOF
during the handshake as a bare ConnectionResetError, which would make
`tls.eof` indistinguishable from `tls.reset`, and it hides the bytes the
server sent when they were not TLS.

The HTTP exchange is a fixed `GET /` with `Connection: close`; the answer is
read only up to the end of its headers plus a small body prefix, under caps,
so a hostile or endless answer costs bounded memory and time.  Redirects are
recorded, never followed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from typing import Any

from netprobe import __version__
from netprobe.addresses import Endpoint, IPAddress, IPNetwork, in_networks
from netprobe.blockpages import match_blockpage
from netprobe.classify import ConnectionClosed, http_answer_reason, location_target, stream_reason, tls_reason
from netprobe.probes.tcp import ConnectFailed, connect_evidence, open_socket
from netprobe.records import Result, printable_bytes
from netprobe.text import escape_text

USER_AGENT = f"netprobe/{__version__}"
ALPN = ("http/1.1",)
MAX_STATUS_LINE = 8 * 1024  # bytes, including the line end
MAX_HEADER_BYTES = 64 * 1024  # the header section after the status line
MAX_HEADERS = 100
BODY_PREFIX = 2048  # body bytes kept as evidence
BODY_GRACE_S = 0.5  # longest wait for the body prefix once the headers are in
RECORDED_HEADERS = ("server", "location", "content-type", "content-length")
RECORDED_SAN = 16
RAW_EVIDENCE_BYTES = 64  # bytes of a non-TLS / non-HTTP answer kept as evidence
RECV_SIZE = 16384

_STATUS_LINE = re.compile(rb"HTTP/(\d(?:\.\d)?) (\d{3})(?:[ \t](.*))?")
_HTTP_PREFIX = b"HTTP/"
NO_ADDRESS_NOTE = ("no genuine address was available: DNS gave none inside the service's networks "
                   "and the domain has no pinned addresses")


@functools.lru_cache(maxsize=8)
def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# --- TLS context -------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def make_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The client context: system trust store, or only `ca_bundle`; ALPN http/1.1.

    Raises OSError / ssl.SSLError for an unreadable bundle; call it once up
    front to validate a --ca-bundle option.  Cached: contexts are shareable.
    """
    context = ssl.create_default_context(cafile=ca_bundle)
    context.set_alpn_protocols(list(ALPN))
    return context


# --- byte streams ------------------------------------------------------------------------

class _PlainStream:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.loop = asyncio.get_running_loop()

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    async def recv(self) -> bytes:
        """Some bytes, or b"" at EOF."""
        return await self.loop.sock_recv(self.sock, RECV_SIZE)


class _TlsStream:
    """TLS client over a connected non-blocking socket, driven through memory BIOs."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str):
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=False,
                                    server_hostname=server_hostname)
        self.handshake_bytes = bytearray()  # the first bytes the server sent (evidence)
        self.received = 0  # bytes the server sent during the handshake
        self.close_kind: str | None = None  # "close_notify" | "unclean" once the peer closed

    async def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await self.loop.sock_sendall(self.sock, data)

    async def _fill(self) -> bytes:
        data = await self.loop.sock_recv(self.sock, RECV_SIZE)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        return data

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                if self.incoming.eof:  # OpenSSL wants more after EOF: the peer closed
                    raise ConnectionClosed("the server closed the connection during the handshake") from None
                data = await self._fill()
                self.received += len(data)
                if len(self.handshake_bytes) < RAW_EVIDENCE_BYTES:
                    self.handshake_bytes += data[:RAW_EVIDENCE_BYTES - len(self.handshake_bytes)]
            except ssl.SSLError:
                self._send_alert_nowait()
                raise
        await self._flush()  # our Finished (TLS 1.3) goes out with or before the request

    def _send_alert_nowait(self) -> None:
        """Best effort: tell the server why we stopped (the alert OpenSSL queued)."""
        data = self.outgoing.read()
        if data:
            try:
                self.sock.send(data)
            except OSError:
                pass

    async def send(self, data: bytes) -> None:
        self.obj.write(data)
        await self._flush()

    async def recv(self) -> bytes:
        """Some application bytes, or b"" when the peer closed (cleanly or not)."""
        while True:
            try:
                data = self.obj.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                await self._flush()  # e.g. a KeyUpdate answer
                if self.incoming.eof:
                    self.close_kind = self.close_kind or "unclean"
                    return b""
                await self._fill()
                continue
            except ssl.SSLZeroReturnError:
                self.close_kind = "close_notify"
                return b""
            except ssl.SSLEOFError:
                self.close_kind = "unclean"  # TCP FIN without close_notify: common, not an error
                return b""
            if not data:  # read() answers a close_notify with b"" rather than raising
                self.close_kind = "close_notify"
            return data


# --- evidence helpers --------------------------------------------------------------------

def _name_string(name: Sequence[Sequence[tuple[str, str]]]) -> str:
    parts = [f"{key}={value}" for rdn in name for key, value in rdn]
    return escape_text(", ".join(parts).encode("utf-8", "backslashreplace"))


def tls_success_evidence(obj: ssl.SSLObject) -> dict[str, Any]:
    cipher = obj.cipher()
    evidence: dict[str, Any] = {
        "version": obj.version(),
        "cipher": cipher[0] if cipher else None,
        "cipher_bits": cipher[2] if cipher else None,
        "alpn": obj.selected_alpn_protocol(),
    }
    der = obj.getpeercert(binary_form=True)
    info = obj.getpeercert() or {}
    evidence["certificate"] = {
        "subject": _name_string(info.get("subject", ())),
        "issuer": _name_string(info.get("issuer", ())),
        "not_before": info.get("notBefore"),
        "not_after": info.get("notAfter"),
        "subject_alt_names": [escape_text(f"{kind}:{value}".encode("utf-8", "backslashreplace"))
                              for kind, value in info.get("subjectAltName", ())[:RECORDED_SAN]],
        "sha256": hashlib.sha256(der).hexdigest() if der else None,
    }
    return evidence


def tls_error_evidence(exc: BaseException) -> dict[str, Any]:
    evidence: dict[str, Any] = {"error": type(exc).__name__, "detail": escape_text(str(exc).encode())}
    if isinstance(exc, ssl.SSLError):
        evidence["ssl_library"] = exc.library
        evidence["ssl_reason"] = exc.reason
    if isinstance(exc, ssl.SSLCertVerificationError):
        evidence["verify_code"] = exc.verify_code
        evidence["verify_message"] = exc.verify_message
    return evidence


# --- the HTTP answer ---------------------------------------------------------------------

class BadResponse(Exception):
    """The bytes that came back are not an HTTP response."""


class _Response:
    """Incremental, bounded reader of a status line and a header section."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.status: int | None = None
        self.version: str | None = None
        self.status_line: str | None = None
        self.headers: dict[str, str] = {}
        self.header_count = 0
        self.header_bytes = 0
        self.malformed_header_lines = 0
        self.headers_complete = False
        self.truncated_by: str | None = None  # "count" | "bytes" when the caps ended reading
        self.pos = 0  # how much of buffer has been parsed

    @property
    def done(self) -> bool:
        return self.headers_complete or self.truncated_by is not None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.status is None:
            self._status()
        if self.status is not None:
            self._headers()

    def _status(self) -> None:
        head = bytes(self.buffer[:len(_HTTP_PREFIX)])
        if not _HTTP_PREFIX.startswith(head):
            raise BadResponse("the answer does not start with HTTP/")
        end = self.buffer.find(b"\n", 0, MAX_STATUS_LINE)
        if end < 0:
            if len(self.buffer) >= MAX_STATUS_LINE:
                raise BadResponse(f"no status line within {MAX_STATUS_LINE} bytes")
            return
        line = bytes(self.buffer[:end]).rstrip(b"\r")
        match = _STATUS_LINE.fullmatch(line)
        if not match:
            raise BadResponse("malformed status line")
        self.version = "HTTP/" + match.group(1).decode("ascii")
        self.status = int(match.group(2))
        self.status_line = escape_text(line)
        self.pos = end + 1

    def _headers(self) -> None:
        while not self.done:
            end = self.buffer.find(b"\n", self.pos)
            limit_left = MAX_HEADER_BYTES - self.header_bytes
            if end < 0 or end + 1 - self.pos > limit_left:
                if len(self.buffer) - self.pos >= limit_left:
                    self.truncated_by = "bytes"
                return
            raw = bytes(self.buffer[self.pos:end])
            self.header_bytes += end + 1 - self.pos
            self.pos = end + 1
            line = raw.rstrip(b"\r")
            if not line:
                self.headers_complete = True
                return
            if self.header_count >= MAX_HEADERS:
                self.truncated_by = "count"
                return
            self.header_count += 1
            name, sep, value = line.partition(b":")
            if not sep or not name or name[:1] in (b" ", b"\t") or name != name.strip():
                self.malformed_header_lines += 1
                continue
            key = name.decode("latin-1").lower()
            if key in RECORDED_HEADERS and key not in self.headers:
                self.headers[key] = escape_text(value.strip(b" \t"))

    @property
    def body(self) -> bytes:
        return bytes(self.buffer[self.pos:]) if self.headers_complete else b""

    def content_length(self) -> int | None:
        value = self.headers.get("content-length", "")
        return int(value) if value.isdigit() else None

    def evidence(self) -> dict[str, Any]:
        evidence: dict[str, Any] = {
            "status": self.status,
            "status_line": self.status_line,
            "http_version": self.version,
            "headers": dict(self.headers),
            "header_count": self.header_count,
            "headers_complete": self.headers_complete,
            "headers_truncated": self.truncated_by is not None,
            "truncated_by": self.truncated_by,
        }
        if self.malformed_header_lines:
            evidence["malformed_header_lines"] = self.malformed_header_lines
        if self.headers_complete:
            evidence["body_prefix"] = printable_bytes(self.body, BODY_PREFIX)
        return evidence


def http_request(domain: str) -> bytes:
    return (f"GET / HTTP/1.1\r\nHost: {domain}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n").encode("ascii")


def http_reason(response: _Response, domain: str, service_domains: Iterable[str],
                networks: Iterable[IPNetwork], evidence: dict[str, Any]) -> str | None:
    """What the answer shows (where a redirect points, which known blockpage it matches),
    recorded as evidence; classify names the reason."""
    status = response.status
    location = response.headers.get("location")
    on_service = None
    if status is not None and 300 <= status < 400 and location is not None:
        host, on_service, error = location_target(location, (domain, *service_domains), networks)
        evidence["location_host"] = escape_text(host.encode("utf-8", "backslashreplace")) if host else None
        evidence["location_on_service"] = on_service
        if error:
            evidence["location_error"] = error
    known = match_blockpage(status, response.headers, response.body[:BODY_PREFIX])
    reason = http_answer_reason(status, on_service, known)
    if known is not None:
        evidence["blockpage"] = f"known blockpage: {known['name']}"
        evidence["blockpage_fingerprint"] = known
    elif reason is not None:
        evidence["blockpage"] = "status 451" if status == 451 else "redirect off the service"
    return reason


# --- the probe ---------------------------------------------------------------------------

class _Run:
    def __init__(self, domain: str, endpoint: Endpoint, context: ssl.SSLContext | None,
                 service_domains: tuple[str, ...], networks: tuple[IPNetwork, ...], evidence: dict[str, Any]):
        self.domain = domain
        self.endpoint = endpoint
        self.context = context
        self.service_domains = service_domains
        self.networks = networks
        self.evidence = evidence
        self.stage = "tcp"
        self.stage_started = time.monotonic()
        self.reason: str | None = None
        self.sock: socket.socket | None = None
        self.tls: _TlsStream | None = None
        self.response: _Response | None = None
        self.answered = False  # the HTTP status line and headers are in: the result is settled

    def _enter(self, stage: str) -> None:
        self.stage = stage
        self.stage_started = time.monotonic()

    def _stage_ms(self) -> float:
        return round((time.monotonic() - self.stage_started) * 1000, 3)

    async def execute(self) -> None:
        try:
            self.sock = await open_socket(self.endpoint)
        except ConnectFailed as exc:
            self.evidence.update(connect_evidence(exc, self._stage_ms()))
            self.reason = stream_reason("tcp", exc.cause, immediate=exc.immediate)
            return
        self.evidence.update(connect_evidence(None, self._stage_ms()))
        stream: _PlainStream | _TlsStream
        if self.context is not None:
            self._enter("tls")
            stream = self.tls = _TlsStream(self.sock, self.context, self.domain)
            self.evidence["tls"] = {"sni": self.domain}
            try:
                await stream.handshake()
            except Exception as exc:  # every failure is evidence; classify names it
                self.evidence["tls"].update(self._tls_failure_evidence(exc))
                self.reason = tls_reason(exc)
                return
            self.evidence["tls"].update(handshake_ms=self._stage_ms(), **tls_success_evidence(stream.obj))
        else:
            stream = _PlainStream(self.sock)
        self._enter("http")
        await self.exchange(stream)

    def _tls_failure_evidence(self, exc: BaseException) -> dict[str, Any]:
        evidence = {"handshake_ms": self._stage_ms(), **tls_error_evidence(exc)}
        if self.tls is not None:
            evidence["server_bytes"] = self.tls.received
            if self.tls.handshake_bytes:
                first = printable_bytes(bytes(self.tls.handshake_bytes), RAW_EVIDENCE_BYTES)
                first.update(length=self.tls.received, truncated=self.tls.received > RAW_EVIDENCE_BYTES)
                evidence["first_bytes"] = first
        return evidence

    async def exchange(self, stream: _PlainStream | _TlsStream) -> None:
        request = http_request(self.domain)
        http: dict[str, Any] = {"request": f"GET / HTTP/1.1 Host: {self.domain}", "user_agent": USER_AGENT}
        self.evidence["http"] = http
        response = self.response = _Response()
        try:
            await stream.send(request)
            while not response.done:
                data = await stream.recv()
                if not data:
                    if response.status is None:
                        raise ConnectionClosed("the server closed the connection before a status line")
                    http["ended_by"] = "http.eof"  # status line in, header section cut short
                    break
                response.feed(data)
        except BadResponse as exc:
            http.update(error="BadResponse", detail=str(exc),
                        first_bytes=printable_bytes(bytes(response.buffer), RAW_EVIDENCE_BYTES))
            self.reason = "http.bad_response"
            return
        except Exception as exc:  # every failure is evidence; classify names it
            reason = self._exchange_failure(exc)
            if response.status is None:
                http.update(response_ms=self._stage_ms(), received=len(response.buffer))
                if isinstance(exc, ssl.SSLError) and not reason.endswith(".eof"):
                    http.update(tls_error_evidence(exc))
                else:
                    http.update(error=type(exc).__name__, detail=escape_text(str(exc).encode()))
                if response.buffer:
                    http["first_bytes"] = printable_bytes(bytes(response.buffer), RAW_EVIDENCE_BYTES)
                self.reason = reason
                return
            http["ended_by"] = reason  # the status line is in: an HTTP answer arrived; its tail was cut
        self.answered = True
        http["response_ms"] = self._stage_ms()
        if response.headers_complete:
            await self._body_prefix(stream, response, http)
        self.reason = http_reason(response, self.domain, self.service_domains, self.networks, http)
        self._record(response, http)

    @staticmethod
    def _exchange_failure(exc: BaseException) -> str:
        """Reason for a failure after the handshake: TCP events name the http stage; a
        TLS-layer failure (an alert, a corrupt record) names the tls layer."""
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return "http.eof"
        if isinstance(exc, ssl.SSLError):
            return tls_reason(exc)
        return stream_reason("http", exc)

    async def _body_prefix(self, stream: _PlainStream | _TlsStream, response: _Response,
                           http: dict[str, Any]) -> None:
        """Up to BODY_PREFIX body bytes, waiting at most BODY_GRACE_S; never a reason to fail."""
        wanted = BODY_PREFIX + 1  # one byte more tells that the body was cut
        length = response.content_length()
        if length is not None:
            wanted = min(wanted, length)
        try:
            async with asyncio.timeout(BODY_GRACE_S):
                while len(response.body) < wanted:
                    data = await stream.recv()
                    if not data:
                        break
                    response.buffer += data[:BODY_PREFIX + 1]
        except TimeoutError:
            http["body_wait"] = "grace ended"
        except Exception as exc:
            http["body_error"] = f"{type(exc).__name__}: {escape_text(str(exc).encode(), 120)}"

    def _record(self, response: _Response, http: dict[str, Any]) -> None:
        http.update(response.evidence())
        if self.tls is not None and self.tls.close_kind:
            http["tls_close"] = self.tls.close_kind

    def timed_out(self) -> None:
        """The probe's one deadline fired: name the stage it caught."""
        if self.answered and self.response is not None:  # only the body prefix wait was cut
            http = self.evidence["http"]
            http["body_wait"] = "probe deadline"
            self.reason = http_reason(self.response, self.domain, self.service_domains, self.networks, http)
            self._record(self.response, http)
            return
        if self.response is not None and self.response.status is not None:
            # The status line is in but the header section was still arriving: an HTTP
            # answer, as when the connection ends mid-headers.
            http = self.evidence["http"]
            http.update(ended_by="http.timeout", response_ms=self._stage_ms())
            self.reason = http_reason(self.response, self.domain, self.service_domains, self.networks, http)
            self._record(self.response, http)
            return
        self.evidence["deadline_stage"] = self.stage
        self.reason = f"{self.stage}.timeout"
        if self.stage == "tcp":
            self.evidence.update(connect_evidence(ConnectFailed(TimeoutError(), immediate=False), self._stage_ms()))
        elif self.stage == "tls":
            self.evidence["tls"].update(self._tls_failure_evidence(TimeoutError("no handshake before the deadline")))
        else:
            response = self.response or _Response()
            http = self.evidence.setdefault("http", {})
            http.update(response_ms=self._stage_ms(), received=len(response.buffer), error="TimeoutError")
            if response.buffer:
                http["first_bytes"] = printable_bytes(bytes(response.buffer), RAW_EVIDENCE_BYTES)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


async def _probe(kind: str, domain: str, addresses: Sequence[IPAddress], address_source: str,
                 networks: Iterable[IPNetwork], timeout: float, context: ssl.SSLContext | None,
                 port: int, dns_reason: str | None, service_domains: Iterable[str],
                 ca_bundle: str | None = None) -> Result:
    started = time.monotonic()
    networks = tuple(networks)
    evidence: dict[str, Any] = {
        "domain": domain,
        "port": port,
        "addresses": [str(a) for a in addresses],
        "address_source": address_source if addresses else "none",
    }
    if kind == "https":
        # The bundle's digest, not its path: a path in a home directory names the user.
        evidence["ca_bundle"] = {"file_sha256": file_digest(ca_bundle)} if ca_bundle else "system"
    if not addresses:
        reason = dns_reason or "dns.no_answer"
        evidence.update(dns_reason=dns_reason, note=NO_ADDRESS_NOTE)
        return Result(kind, domain, None, reason, (time.monotonic() - started) * 1000, evidence)
    endpoint = Endpoint(addresses[0], port)
    evidence["address"] = str(addresses[0])
    evidence["address_in_networks"] = in_networks(addresses[0], networks)
    evidence["timeout_s"] = timeout
    run = _Run(domain, endpoint, context, tuple(service_domains), networks, evidence)
    try:
        async with asyncio.timeout(timeout):
            await run.execute()
    except TimeoutError:
        run.timed_out()
    finally:
        run.close()
    evidence["stage"] = run.stage
    elapsed = (time.monotonic() - started) * 1000
    return Result(kind, domain, str(endpoint), run.reason, elapsed, evidence)


async def probe_https(domain: str, addresses: Sequence[IPAddress], address_source: str,
                      networks: Iterable[IPNetwork], timeout: float, ca_bundle: str | None,
                      port: int = 443, dns_reason: str | None = None, *,
                      service_domains: Iterable[str] = ()) -> Result:
    """TCP connect, TLS handshake (SNI = domain, verified) and `GET /` to the first address."""
    context = make_context(ca_bundle) if addresses else None
    return await _probe("https", domain, addresses, address_source, networks, timeout, context,
                        port, dns_reason, service_domains, ca_bundle=ca_bundle)


async def probe_http(domain: str, addresses: Sequence[IPAddress], address_source: str,
                     networks: Iterable[IPNetwork], timeout: float, port: int = 80,
                     dns_reason: str | None = None, *, service_domains: Iterable[str] = ()) -> Result:
    """TCP connect and a plain-text `GET /` to the first address."""
    return await _probe("http", domain, addresses, address_source, networks, timeout, None,
                        port, dns_reason, service_domains)
