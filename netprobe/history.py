"""History over result archives: reading, folding per run, changes and current state.

Pure: nothing here prints.  The archives are JSON-lines files that cron runs
append to and a log rotator may have compressed, truncated or concatenated,
so reading is tolerant (a bad line is counted, never fatal) and ordering is by
`measured_at`, never by position in a file.

Memory: records are not kept.  Each run's records of one (label, probe,
target) fold into one observation `(measured_at, verdict rank, reason,
run_id)`, kept in a dict keyed by run id so that runs may arrive in any
order; each target's observations are sorted by time once, at the end.
Memory is therefore proportional to (targets x runs) - about 200 bytes per
observation, ~200 MB for a year of ten-minute runs over ~20 targets
(benchmarks/report_bench.py) - and independent of file sizes and of how many
records each run wrote per target.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterable, Iterator

import orjson

from netprobe.classify import BLOCKED, INCONCLUSIVE, REACHABLE, RESET, VERDICTS

# Fold precedence within a run: the worst verdict wins.
RANK = {REACHABLE: 0, INCONCLUSIVE: 1, RESET: 2, BLOCKED: 3}
BY_RANK = {rank: verdict for verdict, rank in RANK.items()}

# The techniques a summary names (its evidence.techniques[].kind, netprobe/diagnosis.py), as shown.
TECHNIQUE_OF_KIND = {"dns": "DNS", "dns_injection": "DNS injection", "ip": "IP", "sni": "SNI",
                     "tls_interception": "TLS interception", "http": "HTTP", "mtproto": "MTProto"}
TECHNIQUES = tuple(TECHNIQUE_OF_KIND.values())
# Summary reasons of a run that had no open way out: counted in the "offline" column.
NOT_ONLINE_REASONS = ("summary.offline", "summary.no_open_access")

GZIP_MAGIC = b"\x1f\x8b"
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").fullmatch
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*").fullmatch
_SAFE_NEEDLE = re.compile(r"[A-Za-z0-9 .:,;_+=@#$%&()*<>?!'\[\]{}|~^-]+").fullmatch


class HistoryError(ValueError):
    """Bad input from the user (a filter, a bucket size); one line, meant to be shown."""


# --- time ----------------------------------------------------------------------------------

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


@lru_cache(maxsize=1 << 16)
def _epoch_of_minute(minute: str) -> int:
    return int(datetime.fromisoformat(minute + ":00+00:00").timestamp())


def bucket_start(epoch: int, size: int) -> int:
    """Buckets are aligned to UTC: days start at midnight, weeks on Monday."""
    origin = 4 * 86400 if size % (7 * 86400) == 0 else 0  # 1970-01-05 was a Monday
    return (epoch - origin) // size * size + origin


def time_of(epoch: int) -> str:
    return canonical_time(datetime.fromtimestamp(epoch, timezone.utc))


# --- query and result ----------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    """The filters of one report; None means 'no filter'."""

    since: str | None = None
    until: str | None = None
    labels: frozenset | None = None  # "" matches records without a label
    probes: frozenset | None = None  # None: every probe but summary and control
    targets: frozenset | None = None

    def needles(self) -> list[tuple[bytes, ...]]:
        """Byte strings a matching line must contain (one of each tuple), checked
        before json.loads.  Only values whose JSON form is unambiguous are used."""
        needles = []
        for values in (self.labels, self.probes, self.targets):
            if values and all(v and _SAFE_NEEDLE(v) for v in values):
                needles.append(tuple(json.dumps(v).encode("ascii") for v in values))
        return needles


Key = tuple  # (label, probe, target)
Observation = tuple  # (measured_at, verdict rank, reason, run_id)


@dataclass
class History:
    """Folded observations per (label, probe, target), sorted by time; summaries per run."""

    observations: dict[Key, list[Observation]] = field(default_factory=dict)
    summaries: dict[tuple, tuple] = field(default_factory=dict)  # (label, run_id) -> (at, techniques, offline)
    corrupt: int = 0
    damaged: list[str] = field(default_factory=list)  # files whose compressed data ends early


# --- reading -------------------------------------------------------------------------------

def open_archive(path: str):
    """A binary line iterator over a plain or gzip file (told apart by magic bytes, not name)."""
    raw = open(path, "rb")
    if raw.read(2) == GZIP_MAGIC:
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    raw.seek(0)
    return raw, raw


def archive_lines(path: str, history: History) -> Iterator[bytes]:
    """Lines of one archive.  A compressed file that ends early or is damaged (a rotation
    in progress, a disk filled up) yields what it holds; the lost tail counts as one
    corrupt line and the file is named in history.damaged."""
    stream, raw = open_archive(path)
    try:
        try:
            yield from stream
        except (EOFError, gzip.BadGzipFile, zlib.error):
            history.corrupt += 1
            history.damaged.append(path)
    finally:
        stream.close()
        raw.close()


def parse_record(raw: bytes | str) -> dict | None:
    """A line as a JSON object, or None.  orjson reads a line several times faster than json;
    what it refuses (NaN, which old json-written records may hold) is given to json."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            record = json.loads(raw)
        except ValueError:
            return None
    return record if type(record) is dict else None


def record_fields(record: dict | None) -> tuple | None:
    """(run_id, at, probe, target, verdict, reason, label) of a well-formed record, or None."""
    if record is None:
        return None
    try:
        run_id, at, probe, target = record["run_id"], record["measured_at"], record["probe"], record["target"]
        verdict = record["verdict"]
    except KeyError:
        return None
    reason, label = record.get("reason"), record.get("label")
    at = normalise_time(at)
    if (type(run_id) is str and at is not None and type(probe) is str and type(target) is str
            and verdict in RANK and (reason is None or type(reason) is str)
            and (label is None or type(label) is str)):
        return run_id, at, probe, target, verdict, reason, label
    return None


def parse_line(line: bytes | str) -> tuple | None:
    """(run_id, at, probe, target, verdict, reason, label) of any well-formed record line, or None."""
    return record_fields(parse_record(line))


def read_history(paths: Iterable[str], query: Query = Query(), *, observations: bool = True,
                 summaries: bool = False) -> History:
    """Stream every archive once and fold its records.  OSError (unreadable file) propagates."""
    history = History()
    folded: dict[Key, dict[str, tuple]] = {}
    if not observations:  # summaries only: --probe and --target do not apply to them
        query = replace(query, probes=None, targets=None)
    needles = query.needles()
    if not observations:
        needles.append((b'"summary"',))
    since, until = query.since, query.until
    labels, probes, targets = query.labels, query.probes, query.targets
    parse, fields_of, intern, rank_of = parse_record, record_fields, sys.intern, RANK
    for path in paths:
        for raw in archive_lines(path, history):
            if needles and not all(any(n in raw for n in group) for group in needles):
                continue
            record = parse(raw)
            fields = fields_of(record)
            if fields is None:
                if raw.strip():
                    history.corrupt += 1
                continue
            run_id, at, probe, target, verdict, reason, label = fields
            rank = rank_of.get(verdict)
            if rank is None:
                history.corrupt += 1
                continue
            if (since and at < since) or (until and at > until):
                continue
            if labels is not None and (label or "") not in labels:
                continue
            if probe == "summary":
                if summaries:
                    summary_of(record, label, run_id, at, history)
                if probes is None or "summary" not in probes:
                    continue
            elif probes is None:
                if probe == "control":
                    continue
            elif probe not in probes:
                continue
            if targets is not None and target not in targets:
                continue
            if not observations:
                continue
            key = (label, probe, target)
            runs = folded.get(key)
            if runs is None:
                runs = folded[key] = {}
            current = runs.get(run_id)
            if current is None or rank > current[1] or (rank == current[1] and at < current[0]):
                run_id = intern(run_id)
                runs[run_id] = (at, rank, None if reason is None else intern(reason), run_id)
    for key, runs in folded.items():
        history.observations[key] = sorted(runs.values(), key=_at)
    return history


def _at(observation: tuple) -> str:
    return observation[0]


def summary_of(record: dict, label: str | None, run_id: str, at: str, history: History) -> None:
    """Keep which techniques a run's summary names (one entry per run, however often it is read)."""
    evidence = record.get("evidence")
    if not isinstance(evidence, dict):
        evidence = {}
    techniques = evidence.get("techniques")
    if isinstance(techniques, list):
        found = frozenset(TECHNIQUE_OF_KIND[t["kind"]] for t in techniques
                          if isinstance(t, dict) and t.get("kind") in TECHNIQUE_OF_KIND)
    else:
        # Summaries written before techniques were data: the leading words of their findings.
        findings = evidence.get("findings")
        if not isinstance(findings, list):
            findings = []
        found = frozenset(f.partition(":")[0] for f in findings if isinstance(f, str)) & _TECHNIQUE_SET
    history.summaries[(label, run_id)] = (at, found, record.get("reason") in NOT_ONLINE_REASONS)


_TECHNIQUE_SET = frozenset(TECHNIQUES)


# --- views ---------------------------------------------------------------------------------

def _sort_key(key: Key) -> tuple:
    return tuple("" if part is None else str(part) for part in key)


def current_state(history: History) -> list[dict]:
    """Per (label, probe, target): the last verdict, since when it holds (the first
    observation of the current streak), and how many per-run observations had each verdict."""
    states = []
    for key in sorted(history.observations, key=_sort_key):
        seq = history.observations[key]
        last = seq[-1]
        start = len(seq) - 1
        while start > 0 and seq[start - 1][1] == last[1]:
            start -= 1
        counts = [0, 0, 0, 0]
        for observation in seq:
            counts[observation[1]] += 1
        label, probe, target = key
        states.append({
            "label": label, "probe": probe, "target": target,
            "verdict": BY_RANK[last[1]], "reason": last[2],
            "since": seq[start][0], "last_seen": last[0],
            "counts": {verdict: counts[RANK[verdict]] for verdict in VERDICTS},
        })
    return states


def changes(history: History) -> list[dict]:
    """Every moment a target's verdict changed, in time order.  `at` is the time of the
    first record with the new verdict, `reason` the new verdict's."""
    found = []
    for key, seq in history.observations.items():
        label, probe, target = key
        previous = seq[0]
        for observation in seq[1:]:
            if observation[1] != previous[1]:
                found.append({
                    "label": label, "probe": probe, "target": target, "at": observation[0],
                    "from": BY_RANK[previous[1]], "to": BY_RANK[observation[1]],
                    "reason": observation[2], "run_id": observation[3],
                })
            previous = observation
    found.sort(key=lambda c: (c["at"], _sort_key((c["label"], c["probe"], c["target"]))))
    return found


def techniques(history: History, bucket: int = 86400) -> list[dict]:
    """Per label and time bucket: how many runs there were and how many of their summaries
    name each technique (and how many ran offline)."""
    rows: dict[tuple, dict] = {}
    for (label, _run), (at, found, offline) in history.summaries.items():
        start = bucket_start(epoch_of(at), bucket)
        row = rows.get((label, start))
        if row is None:
            row = rows[(label, start)] = {"label": label, "bucket": time_of(start), "runs": 0, "offline": 0,
                                          "techniques": dict.fromkeys(TECHNIQUES, 0)}
        row["runs"] += 1
        row["offline"] += offline
        for technique in found:
            row["techniques"][technique] += 1
    return [rows[k] for k in sorted(rows, key=lambda k: ("" if k[0] is None else str(k[0]), k[1]))]


BUCKET_LADDER = tuple(parse_duration(d) for d in (
    "1m", "5m", "10m", "15m", "30m", "1h", "2h", "3h", "6h", "12h", "1d", "2d", "7d", "14d", "30d", "90d", "365d"))


def span(history: History) -> tuple[int, int] | None:
    """First and last observation time (epoch seconds), or None for an empty history."""
    if not history.observations:
        return None
    return (min(epoch_of(seq[0][0]) for seq in history.observations.values()),
            max(epoch_of(seq[-1][0]) for seq in history.observations.values()))


def auto_bucket(first: int, last: int, cells: int, interval: int = 0) -> int:
    """The smallest bucket of the ladder that fits the span into `cells` cells and is no
    shorter than the usual interval between runs (so that cells are not mostly empty)."""
    for size in BUCKET_LADDER:
        if size >= interval and (last - bucket_start(first, size)) // size + 1 <= cells:
            return size
    return BUCKET_LADDER[-1]


def run_interval(history: History) -> int:
    """The median time between consecutive observations of the most observed target."""
    if not history.observations:
        return 0
    seq = max(history.observations.values(), key=len)
    gaps = sorted(epoch_of(b[0]) - epoch_of(a[0]) for a, b in zip(seq, seq[1:]))
    return gaps[len(gaps) // 2] if gaps else 0


@dataclass
class Timeline:
    start: int  # epoch seconds of the first bucket
    bucket: int  # seconds
    cells: int
    rows: list[tuple[Key, dict[int, int]]]  # key, {cell index: worst verdict rank in that bucket}


MAX_CELLS = 20_000  # per timeline row: more says nothing a picture can show


def timeline(history: History, bucket: int | None = None, max_cells: int = 96) -> Timeline:
    """One row per target, one cell per bucket; a cell holds the worst verdict observed in
    it (the same precedence as the per-run fold), so a short block is never hidden."""
    bounds = span(history)
    if bounds is None:
        return Timeline(0, bucket or 3600, 0, [])
    size = bucket or auto_bucket(*bounds, max_cells, run_interval(history))
    start = bucket_start(bounds[0], size)
    if (bounds[1] - start) // size + 1 > MAX_CELLS:
        raise HistoryError(f"{(bounds[1] - start) // size + 1} buckets of {size} s over the history, more than "
                           f"{MAX_CELLS}; choose a larger bucket")
    rows = []
    for key in sorted(history.observations, key=_sort_key):
        cells: dict[int, int] = {}
        for at, rank, _reason, _run in history.observations[key]:
            index = (epoch_of(at) - start) // size
            if rank > cells.get(index, -1):
                cells[index] = rank
        rows.append((key, cells))
    return Timeline(start, size, (bounds[1] - start) // size + 1, rows)


def shares_by_probe(states: list[dict]) -> dict[str, dict[str, int]]:
    """Per probe kind, the number of per-run observations with each verdict."""
    shares: dict[str, dict[str, int]] = {}
    for state in states:
        counts = shares.setdefault(str(state["probe"]), dict.fromkeys(VERDICTS, 0))
        for verdict, n in state["counts"].items():
            counts[verdict] += n
    return dict(sorted(shares.items()))
