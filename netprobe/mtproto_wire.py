"""MTProto wire format for an unauthenticated reachability probe (no sockets here).

The probe sends ``req_pq_multi`` -- the first message of the auth-key exchange, which
any Telegram DC answers with ``resPQ`` before any key exists -- and classifies what
comes back. A resPQ that echoes our random nonce, or a transport error code, proves an
MTProto server answered; anything else points to something in between.

Everything here follows core.telegram.org:
  * /mtproto/description      unencrypted message layout, msg_id rules
  * /mtproto/samples-auth_key sample req_pq_multi / resPQ bytes
  * /mtproto/mtproto-transports  abridged, intermediate, padded intermediate,
                              transport errors, transport obfuscation (obfuscated2)
  * /mtproto/serialize, /schema/mtproto  TL ``bytes`` and ``Vector<long>`` encoding

Nothing read from the wire is trusted: every declared length is checked against a cap
and against the bytes actually present.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# --- constants -------------------------------------------------------------------

REQ_PQ_MULTI = 0xBE7E8EF1  # req_pq_multi#be7e8ef1 nonce:int128 = ResPQ
RES_PQ = 0x05162463  # resPQ#05162463 nonce server_nonce pq:bytes fingerprints:Vector<long>
VECTOR = 0x1CB5C415  # vector#1cb5c415 {t:Type} # [ t ] = Vector t

# A lone negative int32 the server sends instead of a packet (mtproto-transports,
# "Transport errors"): 404 auth key not found, 429 transport flood, 444 invalid DC.
# The same page also mentions 403; such codes are reported with kind "unexpected"
# but keep their error_code so callers can see them.
TRANSPORT_ERRORS = frozenset({-404, -429, -444})

DEFAULT_MAX_PACKET = 64 * 1024
NONCE_SIZE = 16
UNENCRYPTED_HEADER_SIZE = 20  # auth_key_id (8) | message_id (8) | message_data_length (4)
OBFUSCATED_INIT_SIZE = 64

# A resPQ carries a handful of RSA key fingerprints; anything above this is not a resPQ.
_MAX_FINGERPRINTS = 64

RandomBytes = Callable[[int], bytes]


class MTProtoFramingError(ValueError):
    """The byte stream cannot be a valid MTProto transport stream (bad or oversized length)."""


# --- message ids and the request -------------------------------------------------

_message_id_lock = threading.Lock()
_last_message_id = 0


def new_message_id(now: float) -> int:
    """Client msg_id: about unixtime * 2^32, divisible by 4, increasing within this process.

    The server rejects ids far from its clock or not divisible by 4 (description,
    "Message Identifier"); monotonic ids keep two probes in the same tick distinct.
    """
    global _last_message_id
    candidate = int(now * 2**32) & ~0b11
    with _message_id_lock:
        if candidate <= _last_message_id:
            candidate = _last_message_id + 4
        _last_message_id = candidate
    return candidate


def unencrypted_message(message_id: int, body: bytes) -> bytes:
    """Wrap a TL body as a plain-text message: auth_key_id = 0 means "no key yet"."""
    return struct.pack("<qqi", 0, message_id, len(body)) + body


def req_pq_multi(nonce: bytes, message_id: int) -> bytes:
    """The probe's only request: 40 bytes, answerable by a DC without any state."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    body = struct.pack("<I", REQ_PQ_MULTI) + nonce
    return unencrypted_message(message_id, body)


def parse_req_pq_multi(payload: bytes) -> bytes | None:
    """Server side: the client's nonce if ``payload`` is an unencrypted req_pq_multi, else None."""
    if len(payload) < UNENCRYPTED_HEADER_SIZE + 4 + NONCE_SIZE:
        return None
    auth_key_id, _message_id, length = struct.unpack_from("<qqi", payload, 0)
    if auth_key_id != 0 or length != 4 + NONCE_SIZE:
        return None
    (constructor,) = struct.unpack_from("<I", payload, UNENCRYPTED_HEADER_SIZE)
    if constructor != REQ_PQ_MULTI:
        return None
    start = UNENCRYPTED_HEADER_SIZE + 4
    return payload[start : start + NONCE_SIZE]


# --- TL serialization (server side of the lab) -------------------------------------


def tl_bytes(data: bytes) -> bytes:
    """TL ``bytes``/``string``: short or long length prefix, zero padding to 4 bytes."""
    if len(data) <= 253:
        encoded = bytes([len(data)]) + data
    elif len(data) < 1 << 24:
        encoded = b"\xfe" + len(data).to_bytes(3, "little") + data
    else:
        raise ValueError("TL bytes longer than 2^24 - 1")
    return encoded + b"\x00" * (-len(encoded) % 4)


def transport_error(code: int) -> bytes:
    """The 4-byte payload a server sends for a transport error (e.g. -404)."""
    return struct.pack("<i", code)


def res_pq(
    nonce: bytes,
    server_nonce: bytes,
    pq: bytes,
    fingerprints: list[int],
    message_id: int,
) -> bytes:
    """A complete unencrypted resPQ message, as a lab server would send it.

    Fingerprints may be given signed or unsigned; they are written as 64-bit LE.
    Server replies use message ids that are 1 modulo 4; passing one is the caller's job.
    """
    if len(nonce) != NONCE_SIZE or len(server_nonce) != NONCE_SIZE:
        raise ValueError("nonce and server_nonce must be 16 bytes each")
    body = bytearray(struct.pack("<I", RES_PQ))
    body += nonce + server_nonce + tl_bytes(pq)
    body += struct.pack("<Ii", VECTOR, len(fingerprints))
    for fingerprint in fingerprints:
        if not -(2**63) <= fingerprint < 2**64:
            raise ValueError(f"fingerprint out of 64-bit range: {fingerprint}")
        body += (fingerprint & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little")
    return unencrypted_message(message_id, bytes(body))


# --- response classification -----------------------------------------------------


@dataclass(frozen=True)
class ResponseInfo:
    """What one decoded transport payload says about the server behind it.

    kind: "res_pq" | "nonce_mismatch" | "transport_error" | "unexpected".
    Fingerprints are unsigned 64-bit ints (how the docs print them).
    """

    kind: str
    error_code: int | None = None
    server_nonce: str | None = None
    pq: int | None = None
    fingerprints: tuple[int, ...] = ()
    detail: str = ""


class _Truncated(Exception):
    """Internal: a field extends past the bytes we have."""


class _Reader:
    """Bounds-checked cursor over a bytes object; never reads past the end."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, size: int) -> bytes:
        if size < 0 or self._pos + size > len(self._data):
            raise _Truncated
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def uint32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def tl_bytes(self) -> bytes:
        first = self.take(1)[0]
        if first == 255:
            raise _Truncated
        if first == 254:
            size = int.from_bytes(self.take(3), "little")
            prefix = 4
        else:
            size = first
            prefix = 1
        data = self.take(size)
        self.take(-(prefix + size) % 4)  # padding must be present, content not checked
        return data


def parse_response(payload: bytes, nonce: bytes) -> ResponseInfo:
    """Classify one decoded transport payload received after our req_pq_multi.

    Never raises: truncated, oversized or garbage input yields kind "unexpected".
    """
    if len(payload) == 4:
        (code,) = struct.unpack("<i", payload)
        if code in TRANSPORT_ERRORS:
            return ResponseInfo(kind="transport_error", error_code=code)
        if code < 0:
            return ResponseInfo(kind="unexpected", error_code=code, detail="unknown transport error code")
        return ResponseInfo(kind="unexpected", detail="4-byte payload is not an error code")
    if len(payload) < UNENCRYPTED_HEADER_SIZE:
        return ResponseInfo(kind="unexpected", detail=f"too short ({len(payload)} bytes)")

    auth_key_id, _message_id, declared = struct.unpack_from("<qqI", payload, 0)
    if auth_key_id != 0:
        return ResponseInfo(kind="unexpected", detail="not an unencrypted message")
    # The declared body length bounds what we parse; the bytes present bound it again.
    body = payload[UNENCRYPTED_HEADER_SIZE : UNENCRYPTED_HEADER_SIZE + declared]
    try:
        return _parse_res_pq_body(_Reader(body), nonce)
    except _Truncated:
        return ResponseInfo(kind="unexpected", detail="truncated or malformed resPQ")


def _parse_res_pq_body(reader: _Reader, nonce: bytes) -> ResponseInfo:
    constructor = reader.uint32()
    if constructor != RES_PQ:
        return ResponseInfo(kind="unexpected", detail=f"constructor {constructor:#010x}")
    echoed_nonce = reader.take(NONCE_SIZE)
    server_nonce = reader.take(NONCE_SIZE).hex()
    pq = int.from_bytes(reader.tl_bytes(), "big")
    if reader.uint32() != VECTOR:
        return ResponseInfo(kind="unexpected", detail="resPQ without Vector<long>")
    count = reader.uint32()
    if count > _MAX_FINGERPRINTS:
        return ResponseInfo(kind="unexpected", detail=f"implausible fingerprint count {count}")
    fingerprints = tuple(int.from_bytes(reader.take(8), "little") for _ in range(count))
    kind = "res_pq" if echoed_nonce == nonce else "nonce_mismatch"
    return ResponseInfo(kind=kind, server_nonce=server_nonce, pq=pq, fingerprints=fingerprints)


def classify_first_bytes(data: bytes) -> str:
    """Short hint for an answer that is not MTProto: "http", "tls", "empty" or "unknown".

    An HTTP status line or a TLS record (handshake 0x16 / alert 0x15, version 3.x) on
    an MTProto port suggests a middlebox or a block page rather than a Telegram DC.
    """
    if not data:
        return "empty"
    if data.startswith(b"HTTP/"):
        return "http"
    if len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03:
        return "tls"
    return "unknown"


# --- transports --------------------------------------------------------------------


class Intermediate:
    """Intermediate transport: marker ee ee ee ee once, then 4-byte LE length + payload."""

    MARKER = b"\xee\xee\xee\xee"
    OBFUSCATION_TAG = MARKER

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self.max_packet = max_packet
        self._buffer = bytearray()

    def initial(self) -> bytes:
        return self.MARKER

    def frame(self, payload: bytes) -> bytes:
        return struct.pack("<I", len(payload)) + payload

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        packets = []
        while len(self._buffer) >= 4:
            (length,) = struct.unpack_from("<I", self._buffer, 0)
            _check_length(length, self.max_packet)
            if len(self._buffer) < 4 + length:
                break
            packets.append(bytes(self._buffer[4 : 4 + length]))
            del self._buffer[: 4 + length]
        return packets


class PaddedIntermediate(Intermediate):
    """Padded intermediate: marker dd dd dd dd; the length covers payload + 0-15 random bytes.

    Decoded payloads keep their padding: an unencrypted message states its own length,
    which parse_response and parse_req_pq_multi honour.
    """

    MARKER = b"\xdd\xdd\xdd\xdd"
    OBFUSCATION_TAG = MARKER

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET, random_bytes: RandomBytes = os.urandom) -> None:
        super().__init__(max_packet)
        self._random_bytes = random_bytes

    def frame(self, payload: bytes) -> bytes:
        padding = self._random_bytes(self._random_bytes(1)[0] % 16)
        return super().frame(payload + padding)


class Abridged:
    """Abridged transport: marker 0xef once; length/4 in one byte, or 0x7f + 3 LE bytes.

    The top bit of the one-byte length is the quick-ack request flag; it is ignored.
    """

    MARKER = b"\xef"
    OBFUSCATION_TAG = b"\xef\xef\xef\xef"
    _LONG_FORM = 0x7F

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self.max_packet = max_packet
        self._buffer = bytearray()

    def initial(self) -> bytes:
        return self.MARKER

    def frame(self, payload: bytes) -> bytes:
        if len(payload) % 4:
            raise MTProtoFramingError("abridged payloads must be a multiple of 4 bytes")
        words = len(payload) // 4
        if words < self._LONG_FORM:
            return bytes([words]) + payload
        if words >= 1 << 24:
            raise MTProtoFramingError("payload too large for the abridged transport")
        return bytes([self._LONG_FORM]) + words.to_bytes(3, "little") + payload

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        packets = []
        while self._buffer:
            words = self._buffer[0] & 0x7F
            header = 1
            if words == self._LONG_FORM:
                if len(self._buffer) < 4:
                    break
                words = int.from_bytes(self._buffer[1:4], "little")
                header = 4
            length = words * 4
            _check_length(length, self.max_packet)
            if len(self._buffer) < header + length:
                break
            packets.append(bytes(self._buffer[header : header + length]))
            del self._buffer[: header + length]
        return packets


def _check_length(length: int, max_packet: int) -> None:
    if length > max_packet:
        raise MTProtoFramingError(f"declared packet length {length} exceeds cap {max_packet}")


_INNER_TRANSPORTS: dict[str, type[Intermediate] | type[Abridged]] = {
    "intermediate": Intermediate,
    "padded_intermediate": PaddedIntermediate,
    "abridged": Abridged,
}


# --- obfuscated2 -------------------------------------------------------------------

# First ints that would make the server read the init as another protocol
# (mtproto-transports, "Transport obfuscation" pseudocode): HTTP methods, a TLS
# handshake record, and the padded-intermediate / intermediate markers.
_FORBIDDEN_FIRST_INTS = frozenset(
    {b"HEAD", b"POST", b"GET ", b"OPTI", b"\x16\x03\x01\x02", b"\xdd\xdd\xdd\xdd", b"\xee\xee\xee\xee"}
)
_MAX_INIT_ATTEMPTS = 1000


def is_valid_obfuscated_init(init: bytes) -> bool:
    """True if a 64-byte init cannot be mistaken for abridged, intermediate, full or HTTP."""
    return (
        len(init) == OBFUSCATED_INIT_SIZE
        and init[0] != 0xEF
        and bytes(init[:4]) not in _FORBIDDEN_FIRST_INTS
        and init[4:8] != b"\x00\x00\x00\x00"  # would look like the full transport, seqno 0
    )


def generate_obfuscated_init(tag: bytes, random_bytes: RandomBytes = os.urandom) -> bytes:
    """Plain-text 64-byte init: 56 random bytes, the 4-byte protocol tag, 4 random bytes."""
    if len(tag) != 4:
        raise ValueError("protocol tag must be 4 bytes")
    for _ in range(_MAX_INIT_ATTEMPTS):
        init = random_bytes(56) + tag + random_bytes(4)
        if is_valid_obfuscated_init(init):
            return init
    raise RuntimeError("random_bytes keeps producing forbidden obfuscated2 inits")


def _aes_ctr(key: bytes, iv: bytes):
    """One AES-256-CTR stream; it is kept for the whole connection (counter carries over)."""
    return Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()


def _key_iv(init: bytes) -> tuple[bytes, bytes]:
    return init[8:40], init[40:56]


class Obfuscated2:
    """Obfuscated2 transport: an inner transport inside AES-256-CTR keyed from a random init.

    Client: key/iv from init[8:40]/init[40:56] encrypt, the same slices of the reversed
    init decrypt. The init is sent in clear except its last 8 bytes (tag + 4 random),
    which are replaced by their encryption. The inner marker is not sent separately.
    """

    def __init__(
        self,
        inner: str = "intermediate",
        *,
        max_packet: int = DEFAULT_MAX_PACKET,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        inner_class = _inner_transport_class(inner)
        init = generate_obfuscated_init(inner_class.OBFUSCATION_TAG, random_bytes)
        encryptor = _aes_ctr(*_key_iv(init))
        decryptor = _aes_ctr(*_key_iv(init[::-1]))
        header = init[:56] + encryptor.update(init)[56:]
        self._attach(inner, _make_inner(inner, max_packet, random_bytes), encryptor, decryptor, header)

    @classmethod
    def server_from_init(
        cls, init: bytes, *, max_packet: int = DEFAULT_MAX_PACKET, random_bytes: RandomBytes = os.urandom
    ) -> tuple[Obfuscated2, str]:
        """Server mirror: build the transport from the client's 64-byte init.

        Returns (transport, inner name). The server decrypts with the client's
        encryption key/iv and encrypts with the reversed ones. Raises
        MTProtoFramingError if the decrypted tag names no known transport.
        """
        if len(init) != OBFUSCATED_INIT_SIZE:
            raise MTProtoFramingError("obfuscated2 init must be 64 bytes")
        decryptor = _aes_ctr(*_key_iv(init))
        encryptor = _aes_ctr(*_key_iv(init[::-1]))
        tag = decryptor.update(init)[56:60]
        inner = next((name for name, c in _INNER_TRANSPORTS.items() if tag == c.OBFUSCATION_TAG), None)
        if inner is None:
            raise MTProtoFramingError(f"unknown obfuscated2 protocol tag {tag.hex()}")
        transport = cls.__new__(cls)
        transport._attach(inner, _make_inner(inner, max_packet, random_bytes), encryptor, decryptor, b"")
        return transport, inner

    def _attach(self, inner_name, inner, encryptor, decryptor, header: bytes) -> None:
        self.inner_name = inner_name
        self._inner = inner
        self._encryptor = encryptor
        self._decryptor = decryptor
        self._header = header

    @property
    def max_packet(self) -> int:
        return self._inner.max_packet

    def initial(self) -> bytes:
        """The 64-byte init header for a client; empty on the server side."""
        return self._header

    def frame(self, payload: bytes) -> bytes:
        return self._encryptor.update(self._inner.frame(payload))

    def feed(self, data: bytes) -> list[bytes]:
        return self._inner.feed(self._decryptor.update(data))


def _inner_transport_class(inner: str) -> type[Intermediate] | type[Abridged]:
    try:
        return _INNER_TRANSPORTS[inner]
    except KeyError:
        raise ValueError(f"unknown inner transport {inner!r}; expected one of {sorted(_INNER_TRANSPORTS)}") from None


def _make_inner(inner: str, max_packet: int, random_bytes: RandomBytes) -> Intermediate | Abridged:
    inner_class = _inner_transport_class(inner)
    if inner_class is PaddedIntermediate:
        return PaddedIntermediate(max_packet, random_bytes)
    return inner_class(max_packet)
