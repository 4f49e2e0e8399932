"""Result records: what a probe observed, and its JSON-lines encoding.

The field names of an encoded record are a contract (scripts and cron users
read them); changing one needs a new SCHEMA.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

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
    """A random version-4 UUID as 32 hex digits."""
    return uuid.uuid4().hex


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


# orjson writes a record in about a fifth of the time json's C encoder takes, which is most of
# what a sweep spends per probe after the kernel.  It leaves non-ASCII text and DEL as they are
# and refuses what JSON cannot say exactly (integers past 64 bits, non-string keys): such a rare
# record is written by json instead, which escapes everything outside printable ASCII.  Dataclasses
# and datetimes go to `default` (str), as json sends them, so both write a value the same way.
_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def to_json_line(record: dict[str, Any]) -> bytes:
    """One line of ASCII JSON: control characters, DEL and non-ASCII text are escaped,
    so a record can never carry a raw terminal escape or a newline."""
    try:
        line = orjson.dumps(record, default=str, option=_OPTIONS)
    except orjson.JSONEncodeError:
        line = b""
    if line.isascii() and b"\x7f" not in line and line:
        return line
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str) + "\n").encode("ascii")


def json_text(record: dict[str, Any]) -> str:
    """The JSON of to_json_line, without the newline."""
    return to_json_line(record)[:-1].decode("ascii")


def printable_bytes(data: bytes, limit: int = 64) -> dict[str, Any]:
    """Evidence form of bytes a remote party sent: hex, capped, with the cap recorded."""
    return {"hex": data[:limit].hex(), "length": len(data), "truncated": len(data) > limit}
