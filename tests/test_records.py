"""Result records: the contract fields and their one-line JSON encoding."""

from __future__ import annotations

import getpass
import json
import re
import socket
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from netprobe import __version__
from netprobe.classify import BLOCKED, INCONCLUSIVE, REACHABLE, RESET
from netprobe.records import RECORD_FIELDS, SCHEMA, Result, RunInfo, encode, printable_bytes, to_json_line

CONTRACT_FIELDS = {"schema", "run_id", "measured_at", "probe", "target", "address", "verdict", "reason",
                   "duration_ms", "evidence", "label", "netprobe_version"}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def sample_result(**overrides) -> Result:
    fields = dict(probe="tcp", target="149.154.167.51:443", address="149.154.167.51:443", reason="tcp.timeout",
                  duration_ms=3000.123456, evidence={"connect": "failed", "dc": 2})
    fields.update(overrides)
    return Result(**fields)


def test_a_verdict_is_written_as_its_plain_string():
    # orjson writes a StrEnum member as its value; a dict keyed by one (a report's counts) would
    # make it refuse the record, and json (the fallback, and the reports' writer) writes the value.
    record = encode(sample_result(), RunInfo())
    assert type(record["verdict"]) is not str and record["verdict"] == "blocked"
    assert orjson.dumps(record["verdict"]) == b'"blocked"'
    assert b'"verdict":"blocked"' in orjson.dumps(record, option=orjson.OPT_PASSTHROUGH_DATACLASS)
    assert b'"verdict":"blocked","reason":"tcp.timeout"' in to_json_line(record)
    assert json.dumps({BLOCKED: 1, "verdict": RESET}) == '{"blocked": 1, "verdict": "reset"}'
    assert json.loads(to_json_line(record))["verdict"] == "blocked"


def test_encode_has_exactly_the_contract_fields():
    record = encode(sample_result(), RunInfo(label="home-isp"))
    assert set(record) == CONTRACT_FIELDS
    assert tuple(record) == RECORD_FIELDS
    assert record["schema"] == SCHEMA == "netprobe/1"
    assert record["netprobe_version"] == __version__
    assert record["probe"] == "tcp"
    assert record["target"] == record["address"] == "149.154.167.51:443"
    assert record["reason"] == "tcp.timeout"
    assert record["verdict"] == BLOCKED
    assert record["duration_ms"] == 3000.123
    assert record["evidence"] == {"connect": "failed", "dc": 2}
    assert record["label"] == "home-isp"


def test_run_id_is_shared_by_a_run_and_differs_between_runs():
    run = RunInfo()
    first, second = encode(sample_result(), run), encode(sample_result(), run)
    assert first["run_id"] == second["run_id"] == run.run_id
    assert re.fullmatch(r"[0-9a-f]{32}", run.run_id)
    assert RunInfo().run_id != run.run_id
    assert first["label"] is None


def test_measured_at_is_rfc3339_utc():
    before = datetime.now(timezone.utc)
    stamp = encode(sample_result(), RunInfo())["measured_at"]
    after = datetime.now(timezone.utc)
    assert RFC3339_UTC.match(stamp), stamp
    parsed = datetime.fromisoformat(stamp)  # Python >= 3.11 reads the Z
    assert parsed.utcoffset() == timedelta(0)
    assert before - timedelta(milliseconds=1) <= parsed <= after + timedelta(milliseconds=1)


@pytest.mark.parametrize("reason, verdict", [
    (None, REACHABLE), ("tcp.timeout", BLOCKED), ("tcp.refused", RESET), ("tls.reset", RESET),
    ("tcp.no_route", INCONCLUSIVE), ("dns.nxdomain", BLOCKED), ("dns.teredo", BLOCKED),
    ("run.deadline", INCONCLUSIVE),
])
def test_verdict_follows_reason(reason, verdict):
    assert sample_result(reason=reason).verdict == verdict
    assert encode(sample_result(reason=reason), RunInfo())["verdict"] == verdict


def test_an_undeclared_reason_cannot_make_a_record():
    with pytest.raises(KeyError):
        sample_result(reason="tcp.made_up")


HOSTILE = "\x1b[2J\x1b]0;pwned\x07line1\nline2\rtab\tnul\x00 \u0442\u0435\u0441\u0442 \u202e \u2028 \x9b"


def test_json_line_is_one_ascii_line_that_round_trips():
    record = encode(sample_result(target=HOSTILE, evidence={"banner": HOSTILE, HOSTILE: [1, None]}),
                    RunInfo(label=HOSTILE))
    line = to_json_line(record)
    assert isinstance(line, bytes)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert line.isascii()
    assert json.loads(line) == record


@pytest.mark.parametrize("char", [chr(c) for c in range(0x20)] + ["\x7f", "\x80", "\x9b", "\u2028", "\u202e", "é"],
                         ids=lambda c: f"U+{ord(c):04X}")
def test_json_line_escapes_control_and_non_ascii_characters(char):
    line = to_json_line(encode(sample_result(target=f"a{char}b"), RunInfo()))
    assert char.encode("utf-8") not in line[:-1]  # the final byte is the record's own newline
    assert json.loads(line)["target"] == f"a{char}b"


def test_json_line_escapes_esc_as_unicode_escape():
    line = to_json_line(encode(sample_result(target="\x1b[31mred"), RunInfo()))
    assert b"\x1b" not in line
    assert b"\\u001b[31mred" in line


def _strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif value is not None:
        yield str(value)


def test_no_host_or_user_name_in_a_record():
    record = encode(sample_result(), RunInfo())
    text = to_json_line(record).decode("ascii")
    secrets = {socket.gethostname(), socket.getfqdn(), getpass.getuser()} - {"", "localhost", "localhost.localdomain"}
    for secret in secrets:
        assert secret not in set(_strings(record))
        if len(secret) >= 4:  # a 2-letter host name may occur by chance in the hex run_id
            assert secret not in text


def test_printable_bytes_caps_and_records_the_cap():
    assert printable_bytes(b"\x16\x03\x01") == {"hex": "160301", "length": 3, "truncated": False}
    capped = printable_bytes(bytes(range(100)), limit=8)
    assert capped == {"hex": bytes(range(8)).hex(), "length": 100, "truncated": True}
