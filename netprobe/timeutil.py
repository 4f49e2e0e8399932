"""Times of records and histories: canonical RFC 3339 text, user-given windows and durations, buckets.

In the base layer because both the report (history windows, buckets) and interop (OONI's
measurement times) read times, and neither may reach into the other.

netprobe writes `measured_at` as RFC 3339 UTC with milliseconds and 'Z', a form
that sorts as text: comparisons and ordering use the text, and only buckets
need seconds since the epoch.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from netprobe.errors import NetprobeError

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").fullmatch
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*").fullmatch


class HistoryError(NetprobeError, ValueError):
    """Bad input from the user (a filter, a bucket size); one line, meant to be shown."""


def canonical_time(dt: datetime) -> str:
    """RFC 3339 UTC with milliseconds and 'Z': the form netprobe writes, which sorts as text."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalise_time(text: object) -> str | None:
    """A record's measured_at in canonical form, or None when it is not a time at all.

    The common case (netprobe's own format) is a regex match; only odd forms
    (offsets, no fraction, microseconds) pay for a datetime round trip.
    """
    if not isinstance(text, str):
        return None
    if _CANONICAL(text):
        return text
    try:
        return canonical_time(datetime.fromisoformat(text))
    except ValueError:
        return None


def parse_duration(text: str) -> int:
    """'30m', '12h', '7d', '2w', '90s' -> seconds."""
    match = _DURATION(text or "")
    if not match or int(match.group(1)) == 0:
        raise HistoryError(f"{text!r} is not a duration like 30m, 12h, 7d")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def parse_when(text: str, *, end_of_day: bool = False, now: datetime | None = None) -> str:
    """--since/--until: a duration meaning 'that long ago', or an RFC 3339 date or date-time.

    A date-time without offset is UTC.  A bare date is its first millisecond, or
    with end_of_day (for --until, which is inclusive) its last.
    """
    text = (text or "").strip()
    if _DURATION(text):
        now = now or datetime.now(timezone.utc)
        return canonical_time(now - timedelta(seconds=parse_duration(text)))
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return canonical_time(day + timedelta(days=1, milliseconds=-1) if end_of_day else day)
        return canonical_time(datetime.fromisoformat(text))
    except ValueError:
        raise HistoryError(f"{text!r} is neither a date (2025-05-26), a date-time "
                           "(2025-05-26T03:10:00Z) nor a duration (7d, 12h, 30m)") from None


def epoch_of(at: str) -> int:
    """Seconds since the epoch of a canonical time (runs share minutes: those are cached)."""
    return _epoch_of_minute(at[:16]) + int(at[17:19])


@lru_cache(maxsize=1024)
def _epoch_of_minute(minute: str) -> int:
    return int(datetime.fromisoformat(minute + ":00+00:00").timestamp())


def bucket_origin(size: int) -> int:
    """Buckets are aligned to UTC: days start at midnight, weeks on Monday (1970-01-05)."""
    return 4 * 86400 if size % (7 * 86400) == 0 else 0


def bucket_start(epoch: int, size: int) -> int:
    origin = bucket_origin(size)
    return (epoch - origin) // size * size + origin


def time_of(epoch: int) -> str:
    return canonical_time(datetime.fromtimestamp(epoch, timezone.utc))


# Bucket sizes an automatic timeline chooses from (the smallest that fits).
BUCKET_LADDER = tuple(parse_duration(d) for d in (
    "1m", "5m", "10m", "15m", "30m", "1h", "2h", "3h", "6h", "12h", "1d", "2d", "7d", "14d", "30d", "90d", "365d"))


def when(at: str | None) -> str:
    """A canonical time for people: '2025-05-26 03:10 UTC'."""
    return f"{at[:10]} {at[11:16]} UTC" if at else ""


def short(at: str | None) -> str:
    return f"{at[:10]} {at[11:16]}" if at else ""


def duration_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
