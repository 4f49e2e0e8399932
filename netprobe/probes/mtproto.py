"""MTProto probe: does an MTProto server answer req_pq_multi at this endpoint?

A TCP connect alone cannot tell a Telegram DC from a middlebox that accepts every
connection.  req_pq_multi is the first message of the auth-key exchange: any DC
answers it with a resPQ echoing our random nonce, without any key or account, so
an answer that echoes the nonce proves the MTProto server itself was reached.

Stages: TCP connect (open_socket, reasons exactly as probe_tcp gives them) ->
send the transport's initial bytes and the framed request -> read until the
transport decoder yields one complete packet.  One deadline covers all stages.
The raw non-blocking socket is driven with loop.sock_sendall/sock_recv: a probe
per address of a /16 must stay cheap, and streams add nothing for one exchange.
Nothing read from the wire is trusted: the decoder caps the declared packet
length and the probe caps the total it reads.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time

from netprobe import mtproto_wire as wire
from netprobe.addresses import Endpoint
from netprobe.classify import ConnectionClosed, failure_of, mtproto_response_reason, stream_reason
from netprobe.probes.kinds import by_transport, transports
from netprobe.probes.tcp import ConnectFailed, connect_evidence, open_socket
from netprobe.records import Result, printable_bytes

# obfuscated2 wraps another transport; intermediate is the one the plain probe uses.
OBFUSCATED2_INNER = "intermediate"
# A resPQ is ~100 bytes and a transport error 4: a larger declared packet is not
# an answer to req_pq_multi, and refusing it early means no large buffer is kept.
MAX_PACKET = 8 * 1024
# Bytes read in total before giving up on a complete packet (a belt to the cap above).
MAX_READ = 64 * 1024
READ_CHUNK = 4096
# How many of the first received bytes are kept as evidence.
FIRST_BYTES = 64
# Hints from classify_first_bytes that name another protocol: such an answer is
# a bad response however the stream ended afterwards (block page + FIN/RST).
_FOREIGN_PROTOCOLS = ("http", "tls")


def _codec(transport: str):
    """A fresh encoder/decoder; the obfuscated2 one draws a new random init."""
    if transport == "intermediate":
        return wire.Intermediate(MAX_PACKET)
    if transport == "abridged":
        return wire.Abridged(MAX_PACKET)
    if transport == "obfuscated2":
        return wire.Obfuscated2(OBFUSCATED2_INNER, max_packet=MAX_PACKET)
    raise ValueError(f"unknown MTProto transport {transport!r}; expected one of {sorted(transports())}")


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 3)


class _Exchange:
    """State of one probe, so that whichever stage fails the evidence is complete."""

    def __init__(self) -> None:
        self.stage = "connect"
        self.head = bytearray()  # the first FIRST_BYTES bytes received, as sent
        self.received = 0
        self.sent_at: float | None = None
        self.first_byte_ms: float | None = None

    def note_received(self, data: bytes) -> None:
        if self.received == 0 and self.sent_at is not None:
            self.first_byte_ms = _ms(self.sent_at)
        self.received += len(data)
        if len(self.head) < FIRST_BYTES:
            self.head += data[: FIRST_BYTES - len(self.head)]

    def hint(self) -> str:
        return wire.classify_first_bytes(bytes(self.head))


class _ReadCapExceeded(Exception):
    """MAX_READ bytes arrived without one complete packet."""


async def _exchange(sock, codec, request: bytes, state: _Exchange) -> bytes:
    """Send the request and return the first complete transport packet.

    Raises ConnectionClosed on EOF, OSError on socket errors, MTProtoFramingError
    when the stream cannot be MTProto, _ReadCapExceeded past MAX_READ.
    """
    loop = asyncio.get_running_loop()
    state.stage = "send"
    await loop.sock_sendall(sock, request)
    state.sent_at = time.monotonic()
    state.stage = "receive"
    while True:
        if state.received >= MAX_READ:
            raise _ReadCapExceeded
        data = await loop.sock_recv(sock, min(READ_CHUNK, MAX_READ - state.received))
        if not data:
            raise ConnectionClosed("peer closed before a complete packet")
        state.note_received(data)
        packets = codec.feed(data)
        if packets:
            return packets[0]


def _response_evidence(info: wire.ResponseInfo) -> dict:
    evidence: dict = {"response": info.kind}
    if info.server_nonce is not None:
        evidence["server_nonce"] = info.server_nonce
    if info.kind in ("res_pq", "nonce_mismatch"):
        evidence["fingerprints"] = [f"{fp:016x}" for fp in info.fingerprints]
    if info.error_code is not None:
        evidence["error_code"] = info.error_code
    if info.detail:
        evidence["detail"] = info.detail
    return evidence


async def probe_mtproto(endpoint: Endpoint, transport: str, timeout: float,
                        context: dict | None = None) -> Result:
    """One req_pq_multi exchange over `transport` with one deadline for all stages.

    Reachable means a genuine MTProto server answered: a resPQ echoing our nonce,
    or a transport error (-404/-429/-444), which only an MTProto server sends.
    """
    kind = by_transport(transport)  # the kind names the record; the transport is on the wire
    if kind is None:
        raise ValueError(f"unknown MTProto transport {transport!r}; expected one of {sorted(transports())}")
    codec = _codec(transport)
    nonce = os.urandom(wire.NONCE_SIZE)
    request = codec.initial() + codec.frame(wire.req_pq_multi(nonce, wire.new_message_id(time.time())))
    evidence: dict = {**(context or {}), "transport": transport}
    if transport == "obfuscated2":
        evidence["inner_transport"] = OBFUSCATED2_INNER
    evidence.update(timeout_s=timeout, request_bytes=len(request), nonce=nonce.hex())

    state = _Exchange()
    reason: str | None = None
    sock = None
    started = time.monotonic()
    try:
        try:
            async with asyncio.timeout(timeout):
                try:
                    sock = await open_socket(endpoint)
                except ConnectFailed as exc:
                    evidence.update(connect_evidence(exc, _ms(started)))
                    reason = stream_reason("tcp", exc.cause, immediate=exc.immediate)
                else:
                    evidence.update(connect_evidence(None, _ms(started)))
                    payload = await _exchange(sock, codec, request, state)
                    info = wire.parse_response(payload, nonce)
                    evidence.update(_response_evidence(info))
                    evidence["response_ms"] = _ms(state.sent_at)
                    reason = mtproto_response_reason(info.kind)
        except TimeoutError as exc:
            if state.stage == "connect":  # as probe_tcp records a connect timeout
                evidence.update(connect_evidence(ConnectFailed(exc, immediate=False), _ms(started)))
                reason = "tcp.timeout"
            else:
                reason = _stream_ended(state, exc, evidence)
        except (OSError, ConnectionClosed) as exc:  # after connect: send or receive failed
            reason = _stream_ended(state, exc, evidence)
        except wire.MTProtoFramingError as exc:
            evidence.update(response="framing_error", detail=str(exc))
            reason = "mtproto.bad_response"
        except _ReadCapExceeded:
            evidence.update(response="framing_error", detail=f"no complete packet in {MAX_READ} bytes")
            reason = "mtproto.bad_response"
    finally:
        if sock is not None:
            sock.close()

    elapsed = (time.monotonic() - started) * 1000
    evidence["stage"] = state.stage
    evidence["bytes_received"] = state.received
    if state.first_byte_ms is not None:
        evidence["first_byte_ms"] = state.first_byte_ms
    if reason is not None and state.received:
        evidence["first_bytes"] = {**printable_bytes(bytes(state.head), FIRST_BYTES),
                                   "length": state.received, "truncated": state.received > len(state.head)}
        evidence["hint"] = state.hint()
    return Result(kind, str(endpoint), str(endpoint), reason, elapsed, evidence)


def _stream_ended(state: _Exchange, exc: BaseException, evidence: dict) -> str:
    """Reason for a stream that ended (timeout, EOF, reset...) after connect.

    Bytes of another protocol (an HTTP block page, a TLS alert) already received
    are the stronger evidence: the stream's end is then only recorded.
    """
    reason = stream_reason("mtproto", exc)
    evidence["ended_by"] = failure_of(reason)
    if isinstance(exc, OSError) and exc.errno is not None:
        evidence.update(error=type(exc).__name__, errno=errno.errorcode.get(exc.errno))
    if state.received and state.hint() in _FOREIGN_PROTOCOLS:
        evidence.setdefault("response", "foreign_protocol")
        return "mtproto.bad_response"
    return reason
