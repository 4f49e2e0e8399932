"""Unit tests for netprobe.mtproto_wire, checked against core.telegram.org published bytes."""

from __future__ import annotations

import random
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from netprobe import mtproto_wire as wire

# Sample from core.telegram.org/mtproto/samples-auth_key, steps 1 and 2 ("Sent payload"
# and "Received payload", transport headers omitted). The page regenerates its sample
# values from time to time; these are one published set, internally consistent
# (message_length 0x50 = 80 = 100 - 20 and pq = p * q as printed on the page).
SAMPLE_REQ_PQ_MULTI = bytes.fromhex(
    "00 00 00 00 00 00 00 00 AC A8 07 00 5E DD DF 68"
    "14 00 00 00 F1 8E 7E BE 37 D3 74 6B 7F 00 6B 2C"
    "54 25 7A F5 76 31 39 A5"
)
SAMPLE_RES_PQ = bytes.fromhex(
    "00 00 00 00 00 00 00 00 01 D4 F0 A8 5E DD DF 68"
    "50 00 00 00 63 24 16 05 37 D3 74 6B 7F 00 6B 2C"
    "54 25 7A F5 76 31 39 A5 1A 32 0B 7B 03 E2 8A 32"
    "87 1E 3E 5E E3 86 10 63 08 15 03 49 1A 55 32 EF"
    "E1 00 00 00 15 C4 B5 1C 03 00 00 00 85 FD 64 DE"
    "85 1D 9D D0 A5 B7 F7 09 35 5F C3 0B 21 6B E8 6C"
    "02 2B B4 C3"
)
SAMPLE_NONCE = bytes.fromhex("37D3746B7F006B2C54257AF5763139A5")
SAMPLE_SERVER_NONCE = bytes.fromhex("1A320B7B03E28A32871E3E5EE3861063")
SAMPLE_CLIENT_MESSAGE_ID = int.from_bytes(bytes.fromhex("ACA807005EDDDF68"), "little")
SAMPLE_SERVER_MESSAGE_ID = int.from_bytes(bytes.fromhex("01D4F0A85EDDDF68"), "little")
SAMPLE_PQ = 1514134277173997537  # decimal as printed on the page
SAMPLE_P, SAMPLE_Q = 1054028803, 1436520779
# Printed on the page as little-endian byte strings; read here as unsigned integers.
SAMPLE_FINGERPRINTS = (0xD09D1D85DE64FD85, 0x0BC35F3509F7B7A5, 0xC3B42B026CE86B21)


def seeded_random_bytes(seed: int):
    rng = random.Random(seed)
    return rng.randbytes


# --- request ---------------------------------------------------------------------------


def test_req_pq_multi_reproduces_published_sample_byte_for_byte():
    assert wire.req_pq_multi(SAMPLE_NONCE, SAMPLE_CLIENT_MESSAGE_ID) == SAMPLE_REQ_PQ_MULTI


def test_req_pq_multi_layout_matches_documented_offsets():
    nonce = bytes(range(16))
    message = wire.req_pq_multi(nonce, 0x1122334455667788)
    assert len(message) == 40
    assert message[0:8] == bytes(8)  # auth_key_id 0: plain text
    assert message[8:16] == bytes.fromhex("8877665544332211")  # message_id int64 LE
    assert message[16:20] == bytes.fromhex("14000000")  # body length 20
    assert message[20:24] == bytes.fromhex("f18e7ebe")  # req_pq_multi constructor
    assert message[24:40] == nonce


def test_req_pq_multi_rejects_wrong_nonce_size():
    with pytest.raises(ValueError):
        wire.req_pq_multi(b"short", 4)


def test_parse_req_pq_multi_recovers_nonce_and_rejects_other_messages():
    assert wire.parse_req_pq_multi(SAMPLE_REQ_PQ_MULTI) == SAMPLE_NONCE
    assert wire.parse_req_pq_multi(SAMPLE_RES_PQ) is None
    assert wire.parse_req_pq_multi(SAMPLE_REQ_PQ_MULTI[:-1]) is None
    assert wire.parse_req_pq_multi(b"\x01" + SAMPLE_REQ_PQ_MULTI[1:]) is None  # auth_key_id != 0
    old_req_pq = SAMPLE_REQ_PQ_MULTI[:20] + struct.pack("<I", 0x60469778) + SAMPLE_NONCE
    assert wire.parse_req_pq_multi(old_req_pq) is None


def test_new_message_id_is_time_based_divisible_by_4_and_increasing(monkeypatch):
    # Ids issued earlier in this process would lift a fixed past timestamp.
    monkeypatch.setattr(wire, "_last_message_id", 0)
    now = 1_759_501_662.25
    first = wire.new_message_id(now)
    assert first % 4 == 0
    assert first >> 32 == int(now)
    assert abs(first - int(now * 2**32)) < 2**32 // 1000  # within a millisecond or so
    same_tick = wire.new_message_id(now)
    earlier = wire.new_message_id(now - 10)
    assert first < same_tick < earlier
    assert same_tick % 4 == 0 and earlier % 4 == 0


# --- TL serialization and resPQ ------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", b"\x00\x00\x00\x00"),
        (b"abc", b"\x03abc"),
        (b"abcd", b"\x04abcd\x00\x00\x00"),
        (bytes(253), b"\xfd" + bytes(253) + b"\x00\x00"),
        (bytes(254), b"\xfe\xfe\x00\x00" + bytes(254) + b"\x00\x00"),
    ],
)
def test_tl_bytes_length_prefix_and_padding(data, expected):
    assert wire.tl_bytes(data) == expected
    assert len(wire.tl_bytes(data)) % 4 == 0


def test_res_pq_builder_reproduces_published_sample_byte_for_byte():
    pq = SAMPLE_PQ.to_bytes(8, "big")
    built = wire.res_pq(SAMPLE_NONCE, SAMPLE_SERVER_NONCE, pq, list(SAMPLE_FINGERPRINTS), SAMPLE_SERVER_MESSAGE_ID)
    assert built == SAMPLE_RES_PQ


def test_res_pq_accepts_signed_fingerprints():
    unsigned = 0xC3B42B026CE86B21
    signed = unsigned - 2**64
    a = wire.res_pq(SAMPLE_NONCE, SAMPLE_SERVER_NONCE, b"\x17", [unsigned], 1)
    b = wire.res_pq(SAMPLE_NONCE, SAMPLE_SERVER_NONCE, b"\x17", [signed], 1)
    assert a == b
    assert a.endswith(bytes.fromhex("216BE86C022BB4C3"))


def test_parse_published_res_pq():
    info = wire.parse_response(SAMPLE_RES_PQ, SAMPLE_NONCE)
    assert info.kind == "res_pq"
    assert info.server_nonce == SAMPLE_SERVER_NONCE.hex()
    assert info.pq == SAMPLE_PQ == SAMPLE_P * SAMPLE_Q
    assert info.fingerprints == SAMPLE_FINGERPRINTS
    assert info.error_code is None


def test_parse_res_pq_with_other_nonce_is_nonce_mismatch():
    info = wire.parse_response(SAMPLE_RES_PQ, bytes(16))
    assert info.kind == "nonce_mismatch"
    assert info.server_nonce == SAMPLE_SERVER_NONCE.hex()
    assert info.fingerprints == SAMPLE_FINGERPRINTS


def test_parse_res_pq_ignores_bytes_beyond_declared_length():
    # Padded intermediate appends 0-15 random bytes after the message.
    info = wire.parse_response(SAMPLE_RES_PQ + b"\xaa" * 15, SAMPLE_NONCE)
    assert info.kind == "res_pq"


def test_res_pq_round_trip_through_parser():
    nonce, server_nonce = bytes(range(16)), bytes(range(16, 32))
    message = wire.res_pq(nonce, server_nonce, bytes.fromhex("17ED48941A08F981"), [0xC3B42B026CE86B21], 5)
    info = wire.parse_response(message, nonce)
    assert info.kind == "res_pq"
    assert info.pq == 0x17ED48941A08F981
    assert info.fingerprints == (0xC3B42B026CE86B21,)
    assert info.server_nonce == server_nonce.hex()


# --- transport errors and garbage ----------------------------------------------------------


@pytest.mark.parametrize("code", [-404, -429, -444])
def test_transport_errors_are_recognised(code):
    info = wire.parse_response(wire.transport_error(code), SAMPLE_NONCE)
    assert info.kind == "transport_error"
    assert info.error_code == code


def test_transport_error_bytes_are_signed_little_endian():
    assert wire.transport_error(-404) == bytes.fromhex("6cfeffff")


def test_unknown_negative_code_is_unexpected_but_keeps_code():
    info = wire.parse_response(struct.pack("<i", -403), SAMPLE_NONCE)
    assert info.kind == "unexpected"
    assert info.error_code == -403


def test_positive_four_byte_payload_is_unexpected():
    info = wire.parse_response(struct.pack("<i", 404), SAMPLE_NONCE)
    assert info.kind == "unexpected"
    assert info.error_code is None


@pytest.mark.parametrize("cut", range(0, len(SAMPLE_RES_PQ)))
def test_every_truncation_of_res_pq_is_unexpected(cut):
    info = wire.parse_response(SAMPLE_RES_PQ[:cut], SAMPLE_NONCE)
    assert info.kind == "unexpected"


def test_declared_length_shorter_than_body_truncates_parse():
    shortened = SAMPLE_RES_PQ[:16] + struct.pack("<I", 40) + SAMPLE_RES_PQ[20:]
    assert wire.parse_response(shortened, SAMPLE_NONCE).kind == "unexpected"


def _res_pq_body_variant(offset: int, replacement: bytes) -> bytes:
    data = bytearray(SAMPLE_RES_PQ)
    data[offset : offset + len(replacement)] = replacement
    return bytes(data)


@pytest.mark.parametrize(
    ("offset", "replacement", "why"),
    [
        (0, b"\x01", "encrypted (non-zero auth_key_id)"),
        (20, bytes.fromhex("01020304"), "other constructor"),
        (56, b"\xff", "invalid TL bytes prefix"),
        (56, b"\xfe\xff\xff\xff", "TL bytes length beyond the message"),
        (68, b"\x00\x00\x00\x00", "missing vector constructor"),
        (72, b"\xff\xff\xff\x7f", "absurd fingerprint count"),
        (72, b"\x04\x00\x00\x00", "fingerprint count beyond the message"),
    ],
)
def test_malformed_res_pq_is_unexpected(offset, replacement, why):
    info = wire.parse_response(_res_pq_body_variant(offset, replacement), SAMPLE_NONCE)
    assert info.kind == "unexpected", why


def test_random_garbage_never_raises():
    rng = random.Random(1234)
    for i in range(3000):
        body = rng.randbytes(rng.randrange(0, 200))
        if i % 2:  # also reach the resPQ field parser: valid header and constructor, random rest
            declared_length = struct.pack("<I", rng.randrange(2**32))
            body = bytes(16) + declared_length + struct.pack("<I", wire.RES_PQ) + body
        info = wire.parse_response(body, SAMPLE_NONCE)
        assert info.kind in {"unexpected", "nonce_mismatch", "transport_error"}


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (b"", "empty"),
        (b"HTTP/1.1 403 Forbidden\r\n", "http"),
        (bytes.fromhex("160303007a02"), "tls"),
        (bytes.fromhex("15030300020228"), "tls"),
        (b"\x16", "unknown"),
        (bytes.fromhex("6cfeffff"), "unknown"),
        (b"<html>", "unknown"),
    ],
)
def test_classify_first_bytes(data, hint):
    assert wire.classify_first_bytes(data) == hint


# --- plain transports ---------------------------------------------------------------------


PLAIN_TRANSPORTS = [wire.Intermediate, wire.PaddedIntermediate, wire.Abridged]


def _feed_bytewise(transport, data: bytes) -> list[bytes]:
    packets = []
    for i in range(len(data)):
        packets += transport.feed(data[i : i + 1])
    return packets


@pytest.mark.parametrize("transport_class", PLAIN_TRANSPORTS)
def test_plain_transport_round_trip(transport_class):
    client, server = transport_class(), transport_class()
    request = wire.req_pq_multi(SAMPLE_NONCE, SAMPLE_CLIENT_MESSAGE_ID)
    wire_bytes = client.initial() + client.frame(request)
    assert wire_bytes.startswith(transport_class.MARKER)
    received = _feed_bytewise(server, wire_bytes[len(transport_class.MARKER) :])
    assert len(received) == 1
    assert wire.parse_req_pq_multi(received[0]) == SAMPLE_NONCE

    answers = client.feed(server.frame(SAMPLE_RES_PQ) + server.frame(wire.transport_error(-429)))
    assert len(answers) == 2
    assert wire.parse_response(answers[0], SAMPLE_NONCE).kind == "res_pq"
    assert wire.parse_response(answers[1][:4], SAMPLE_NONCE).error_code == -429


def test_intermediate_envelope_bytes():
    assert wire.Intermediate().frame(b"abcd") == b"\x04\x00\x00\x00abcd"
    assert wire.Intermediate().initial() == b"\xee\xee\xee\xee"


def test_padded_intermediate_pads_0_to_15_bytes_inside_length():
    transport = wire.PaddedIntermediate(random_bytes=seeded_random_bytes(7))
    assert transport.initial() == b"\xdd\xdd\xdd\xdd"
    seen_padding = set()
    for _ in range(200):
        framed = transport.frame(b"x" * 40)
        (length,) = struct.unpack_from("<I", framed)
        assert length == len(framed) - 4
        assert framed[4:44] == b"x" * 40
        seen_padding.add(length - 40)
    assert seen_padding <= set(range(16))
    assert len(seen_padding) > 8  # actually random


def test_abridged_short_envelope():
    assert wire.Abridged().initial() == b"\xef"
    payload = bytes(40)
    assert wire.Abridged().frame(payload) == b"\x0a" + payload
    assert wire.Abridged().frame(bytes(126 * 4))[:1] == b"\x7e"


@pytest.mark.parametrize("words", [127, 128, 300, 0x1234])
def test_abridged_long_envelope_round_trip(words):
    payload = random.Random(words).randbytes(words * 4)
    framed = wire.Abridged().frame(payload)
    assert framed[:4] == b"\x7f" + words.to_bytes(3, "little")
    assert framed[4:] == payload
    assert wire.Abridged().feed(framed) == [payload]


def test_abridged_rejects_unaligned_payload():
    with pytest.raises(wire.MTProtoFramingError):
        wire.Abridged().frame(b"abc")


def test_abridged_ignores_quick_ack_bit_in_short_length():
    assert wire.Abridged().feed(b"\x81abcd") == [b"abcd"]


def test_decoder_splits_several_packets_and_keeps_partial_tail():
    decoder = wire.Intermediate()
    data = wire.Intermediate().frame(b"one!") + wire.Intermediate().frame(b"two!")
    assert decoder.feed(data + b"\x04\x00") == [b"one!", b"two!"]
    assert decoder.feed(b"\x00\x00thr") == []
    assert decoder.feed(b"3") == [b"thr3"]


# --- framing caps ----------------------------------------------------------------------------


def test_intermediate_rejects_declared_length_above_default_cap_before_payload_arrives():
    with pytest.raises(wire.MTProtoFramingError):
        wire.Intermediate().feed(struct.pack("<I", 64 * 1024 + 1))


def test_intermediate_accepts_length_at_cap():
    payload = bytes(64 * 1024)
    assert wire.Intermediate().feed(wire.Intermediate().frame(payload)) == [payload]


def test_intermediate_rejects_huge_length_with_high_bit():
    with pytest.raises(wire.MTProtoFramingError):
        wire.Intermediate().feed(b"\xff\xff\xff\xff")


def test_abridged_rejects_long_length_above_cap():
    with pytest.raises(wire.MTProtoFramingError):
        wire.Abridged().feed(b"\x7f" + (0x4001).to_bytes(3, "little"))  # 0x4001 words = 64 KiB + 4


def test_custom_cap_applies():
    with pytest.raises(wire.MTProtoFramingError):
        wire.Abridged(max_packet=400).feed(b"\x7f\x7f\x00\x00")  # 508 bytes
    with pytest.raises(wire.MTProtoFramingError):
        wire.Intermediate(max_packet=100).feed(struct.pack("<I", 101))
    assert wire.Intermediate(max_packet=100).feed(struct.pack("<I", 100) + bytes(100)) == [bytes(100)]


def test_obfuscated_decoder_applies_cap():
    client = wire.Obfuscated2("intermediate", max_packet=100)
    server, _ = wire.Obfuscated2.server_from_init(client.initial(), max_packet=100)
    with pytest.raises(wire.MTProtoFramingError):
        server.feed(client.frame(bytes(104)))


# --- obfuscated2 -----------------------------------------------------------------------------

FORBIDDEN_FIRST_INTS = {
    b"HEAD",
    b"POST",
    b"GET ",
    b"OPTI",
    b"\x16\x03\x01\x02",
    b"\xdd\xdd\xdd\xdd",
    b"\xee\xee\xee\xee",
}
TAGS = {"intermediate": b"\xee" * 4, "abridged": b"\xef" * 4, "padded_intermediate": b"\xdd" * 4}


def _decrypt_header_tail(header: bytes) -> bytes:
    """Independent of the codec: decrypt the header with key init[8:40], iv init[40:56]."""
    decryptor = Cipher(algorithms.AES(header[8:40]), modes.CTR(header[40:56])).decryptor()
    return decryptor.update(header)[56:64]


@pytest.mark.parametrize("inner", ["intermediate", "abridged"])
def test_obfuscated2_init_constraints_over_many_inits(inner):
    for _ in range(3000):
        header = wire.Obfuscated2(inner).initial()
        assert len(header) == 64
        assert header[0] != 0xEF
        assert header[:4] not in FORBIDDEN_FIRST_INTS
        assert header[4:8] != b"\x00\x00\x00\x00"
        assert wire.is_valid_obfuscated_init(header)


@pytest.mark.parametrize("inner", sorted(TAGS))
def test_obfuscated2_header_carries_encrypted_tag_at_offset_56(inner):
    header = wire.Obfuscated2(inner).initial()
    assert _decrypt_header_tail(header)[:4] == TAGS[inner]
    assert header[56:60] != TAGS[inner]  # sent encrypted, not in clear


def test_obfuscated2_generator_skips_forbidden_inits():
    valid_first_bytes = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    candidates = [
        b"\xef" + bytes(range(1, 8)),  # abridged marker
        b"GET " + b"\x01\x02\x03\x04",
        b"\xee\xee\xee\xee" + b"\x01\x02\x03\x04",
        b"\x16\x03\x01\x02" + b"\x01\x02\x03\x04",
        b"\x01\x02\x03\x04" + b"\x00\x00\x00\x00",  # looks like full transport, seqno 0
        valid_first_bytes,
    ]
    stream = iter(candidates)

    def rigged_random_bytes(n: int) -> bytes:
        if n == 56:
            return next(stream) + bytes(48)
        return bytes(n)

    init = wire.generate_obfuscated_init(b"\xee" * 4, rigged_random_bytes)
    assert init[:8] == valid_first_bytes
    assert init[56:60] == b"\xee" * 4


def test_obfuscated2_generator_gives_up_on_broken_randomness():
    with pytest.raises(RuntimeError):
        wire.generate_obfuscated_init(b"\xee" * 4, lambda n: b"\xef" * n)


def test_obfuscated2_is_deterministic_with_seeded_randomness():
    a = wire.Obfuscated2("abridged", random_bytes=seeded_random_bytes(42))
    b = wire.Obfuscated2("abridged", random_bytes=seeded_random_bytes(42))
    c = wire.Obfuscated2("abridged", random_bytes=seeded_random_bytes(43))
    assert a.initial() == b.initial() != c.initial()
    assert a.frame(SAMPLE_REQ_PQ_MULTI) == b.frame(SAMPLE_REQ_PQ_MULTI)


@pytest.mark.parametrize("inner", ["intermediate", "abridged"])
def test_obfuscated2_stream_continues_after_init(inner):
    """The first packet is encrypted with the keystream right after the 64 init bytes."""
    random_bytes = seeded_random_bytes(5)
    client = wire.Obfuscated2(inner, random_bytes=random_bytes)
    header = client.initial()
    plain_init = header[:56] + _decrypt_header_tail(header)
    encryptor = Cipher(algorithms.AES(plain_init[8:40]), modes.CTR(plain_init[40:56])).encryptor()
    encryptor.update(plain_init)
    inner_class = {"abridged": wire.Abridged, "intermediate": wire.Intermediate}[inner]
    inner_frame = inner_class().frame(SAMPLE_REQ_PQ_MULTI)
    assert client.frame(SAMPLE_REQ_PQ_MULTI) == encryptor.update(inner_frame)


def test_obfuscated2_server_encrypts_with_reversed_init_key():
    client = wire.Obfuscated2("intermediate", random_bytes=seeded_random_bytes(9))
    header = client.initial()
    server, _ = wire.Obfuscated2.server_from_init(header)
    reversed_init = (header[:56] + _decrypt_header_tail(header))[::-1]
    decryptor = Cipher(algorithms.AES(reversed_init[8:40]), modes.CTR(reversed_init[40:56])).decryptor()
    assert decryptor.update(server.frame(b"abcd")) == b"\x04\x00\x00\x00abcd"


@pytest.mark.parametrize("inner", sorted(TAGS))
def test_obfuscated2_client_server_round_trip(inner):
    client = wire.Obfuscated2(inner)
    server, detected = wire.Obfuscated2.server_from_init(client.initial())
    assert detected == inner
    assert server.initial() == b""
    for round_number in range(3):  # counters must stay in step across packets
        nonce = bytes([round_number]) * 16
        request = wire.req_pq_multi(nonce, wire.new_message_id(1_700_000_000.0))
        received = _feed_bytewise(server, client.frame(request))
        assert len(received) == 1
        assert wire.parse_req_pq_multi(received[0]) == nonce
        answer = wire.res_pq(nonce, bytes(16), b"\x17\xed\x48\x94\x1a\x08\xf9\x81", [0xC3B42B026CE86B21], 1)
        decoded = client.feed(server.frame(answer))
        assert len(decoded) == 1
        assert wire.parse_response(decoded[0], nonce).kind == "res_pq"


def test_obfuscated2_ciphertext_hides_plain_message():
    client = wire.Obfuscated2("intermediate")
    assert SAMPLE_REQ_PQ_MULTI not in client.frame(SAMPLE_REQ_PQ_MULTI)


def test_server_from_init_rejects_unknown_tag_and_bad_size():
    garbage_init = bytes(range(64))
    with pytest.raises(wire.MTProtoFramingError):
        wire.Obfuscated2.server_from_init(garbage_init)
    with pytest.raises(wire.MTProtoFramingError):
        wire.Obfuscated2.server_from_init(bytes(63))


def test_obfuscated2_rejects_unknown_inner():
    with pytest.raises(ValueError):
        wire.Obfuscated2("full")
