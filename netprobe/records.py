"""Result records: what a probe observed, and its JSON-lines encoding.

The field names of an encoded record are a contract (scripts and cron users
read them); changing one needs a new SCHEMA.
"""

from __future__ import annotations

import json
import uuid
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


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RunInfo:
    label: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


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


def to_json_line(record: dict[str, Any]) -> bytes:
    """One line of ASCII JSON: control characters and non-ASCII text are escaped,
    so a record can never carry a raw terminal escape or a newline."""
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str) + "\n").encode("ascii")


def printable_bytes(data: bytes, limit: int = 64) -> dict[str, Any]:
    """Evidence form of bytes a remote party sent: hex, capped, with the cap recorded."""
    return {"hex": data[:limit].hex(), "length": len(data), "truncated": len(data) > limit}
