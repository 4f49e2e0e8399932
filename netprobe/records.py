"""Result records: what a probe observed, and its JSON-lines encoding.

The field names of an encoded record are a contract (scripts and cron users
read them); changing one needs a new SCHEMA.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from netprobe import __version__
from netprobe.classify import verdict_for

SCHEMA = "netprobe/1"
RECORD_FIELDS = ("schema", "run_id", "measured_at", "probe", "target", "address", "verdict", "reason",
                 "duration_ms", "evidence", "label", "netprobe_version")


@dataclass(slots=True)
class Result:
    """One probe's outcome; `verdict` always follows from `reason` (see classify)."""

    probe: str
    target: str
    address: str | None
    reason: str | None
    duration_ms: float
    evidence: dict[str, Any] = field(default_factory=dict)
    verdict: str = ""
    measured_at: str = ""

    def __post_init__(self) -> None:
        if not self.verdict:
            self.verdict = verdict_for(self.reason)
        if not self.measured_at:
            self.measured_at = now_rfc3339()


_clock = [-1, ""]  # the last millisecond formatted, and its text


def now_rfc3339() -> str:
    """The current UTC time to the millisecond; formatted once per millisecond, since
    a fast run measures many probes within one."""
    now_ms = time.time_ns() // 1_000_000
    if now_ms != _clock[0]:
        moment = datetime.fromtimestamp(now_ms // 1000, timezone.utc).replace(microsecond=now_ms % 1000 * 1000)
        _clock[1] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        _clock[0] = now_ms
    return _clock[1]


def new_run_id() -> str:
    """A random version-4 UUID as 32 hex digits (uuid.uuid4().hex, without importing uuid,
    which costs every run a few milliseconds of start-up)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


@dataclass(frozen=True)
class RunInfo:
    label: str | None = None
    run_id: str = field(default_factory=new_run_id)


def encode(result: Result, run: RunInfo) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "run_id": run.run_id,
        "measured_at": result.measured_at,
        "probe": result.probe,
        "target": result.target,
        "address": result.address,
        "verdict": result.verdict,
        "reason": result.reason,
        "duration_ms": round(result.duration_ms, 3),
        "evidence": result.evidence,
        "label": run.label,
        "netprobe_version": __version__,
    }


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)
try:  # the C encoder, built once instead of per record (records hold no cycles to check for)
    from json.encoder import c_make_encoder as _c_make_encoder
    from json.encoder import encode_basestring_ascii as _escape

    _iterencode = _c_make_encoder(None, str, _escape, None, ":", ",", False, False, True)
    _sample = {"a": [1, 2.5, None, True], "b": {"c": "\u00e9\x1b"}, "d": float("nan")}
    if "".join(_iterencode(_sample, 0)) != _ENCODER.encode(_sample):  # pragma: no cover
        _iterencode = None
except (ImportError, TypeError):  # pragma: no cover - another Python implementation
    _iterencode = None


def to_json_line(record: dict[str, Any]) -> bytes:
    """One line of ASCII JSON: control characters and non-ASCII text are escaped,
    so a record can never carry a raw terminal escape or a newline."""
    return (json_text(record) + "\n").encode("ascii")


def json_text(record: dict[str, Any]) -> str:
    """The JSON of to_json_line, without the newline."""
    if _iterencode is not None:
        return "".join(_iterencode(record, 0))
    return _ENCODER.encode(record)


def printable_bytes(data: bytes, limit: int = 64) -> dict[str, Any]:
    """Evidence form of bytes a remote party sent: hex, capped, with the cap recorded."""
    return {"hex": data[:limit].hex(), "length": len(data), "truncated": len(data) > limit}
