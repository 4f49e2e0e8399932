"""Reading result archives: tolerant line parsing, filters, and the order records are folded in.

The archives are JSON-lines files that cron runs append to and a log rotator
may have compressed, truncated or concatenated, so reading is tolerant (a bad
line is counted, never fatal) and a record's place in time is its
`measured_at`, never its position in a file.  Everything in a file is data
anyone may have written: nothing read here is interpreted beyond the fields
below, and every string is escaped where it is shown.

Order: files are read oldest first (by their first record), each in its own
order, into a strict fold (fold.py), which is what an archive appended by
cron needs.  If the fold finds records out of order, everything is read again
through an external sort (spill.py): slower, still bounded in memory.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import zlib
from dataclasses import dataclass, field, replace
from sys import intern
from typing import Callable, Iterable, Iterator

import orjson

from netprobe.classify import VERDICT_RANK
from netprobe.report.fold import TECHNIQUE_OF_KIND, TECHNIQUES, Disorder, group_of
from netprobe.report.spill import ExternalSorter
from netprobe.timeutil import normalise_time

GZIP_MAGIC = b"\x1f\x8b"
_SAFE_NEEDLE = re.compile(r"[A-Za-z0-9 .:,;_+=@#$%&()*<>?!'\[\]{}|~^-]+").fullmatch
PEEK_LINES = 200  # lines read from each file's start to find its first record's time


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


@dataclass
class Stats:
    corrupt: int = 0
    damaged: list[str] = field(default_factory=list)  # files whose compressed data ends early
    sorted: bool = False  # the records were not in time order and went through the external sort


# --- archives and lines ------------------------------------------------------------------------

def open_archive(path: str):
    """A binary line iterator over a plain or gzip file (told apart by magic bytes, not name)."""
    raw = open(path, "rb")
    if raw.read(2) == GZIP_MAGIC:
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    raw.seek(0)
    return raw, raw


def archive_lines(path: str, stats: Stats) -> Iterator[bytes]:
    """Lines of one archive.  A compressed file that ends early or is damaged (a rotation
    in progress, a disk filled up) yields what it holds; the lost tail counts as one
    corrupt line and the file is named in stats.damaged."""
    stream, raw = open_archive(path)
    try:
        try:
            yield from stream
        except (EOFError, gzip.BadGzipFile, zlib.error):
            stats.corrupt += 1
            stats.damaged.append(path)
    finally:
        stream.close()
        raw.close()


def parse_record(raw: bytes | str) -> dict | None:
    """A line as a JSON object, or None.  orjson reads a record several times faster than json,
    nearly as fast as the regex over netprobe's own field order that it replaces, and reads
    anyone's layout alike; what it refuses is given to json, which also takes NaN (written by
    json-era netprobe, and by anyone else's tool)."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            record = json.loads(raw)
        except ValueError:
            return None
    return record if type(record) is dict else None


def record_fields(record: dict | None) -> tuple | None:
    """(run_id, at, probe, target, verdict, reason, evidence, label) of a well-formed record, or None."""
    if record is None:
        return None
    try:
        run_id, at, probe, target = record["run_id"], record["measured_at"], record["probe"], record["target"]
        verdict = record["verdict"]
    except KeyError:
        return None
    at = normalise_time(at)
    reason, label = record.get("reason"), record.get("label")
    if (type(run_id) is str and at is not None and type(probe) is str and type(target) is str
            and verdict in VERDICT_RANK and (reason is None or type(reason) is str)
            and (label is None or type(label) is str)):
        return run_id, at, probe, target, verdict, reason, record.get("evidence"), label
    return None


def parse_line(line: bytes | str) -> tuple | None:
    """(run_id, at, probe, target, verdict, reason, evidence, label) of any well-formed record
    line, or None."""
    return record_fields(parse_record(line))


# --- summaries -------------------------------------------------------------------------------

_TECHNIQUE_SET = frozenset(TECHNIQUES)


def summary_fields(reason: object, evidence: object) -> tuple[str | None, frozenset, dict]:
    """(reason, techniques found, evidence kept for the diagnosis) of a summary record."""
    return (reason if isinstance(reason, str) else None), *_summary_fields(evidence)


def _summary_fields(evidence: object) -> tuple[frozenset, dict]:
    """(techniques found, what the diagnosis keeps) of a decoded summary evidence (anyone's)."""
    if not isinstance(evidence, dict):
        evidence = {}
    techniques = evidence.get("techniques")
    findings = evidence.get("findings")
    if not isinstance(findings, list):
        findings = []
    findings = [f for f in findings if isinstance(f, str)]
    if isinstance(techniques, list):
        techniques = [t for t in techniques if isinstance(t, dict)]
        found = frozenset(TECHNIQUE_OF_KIND[t["kind"]] for t in techniques
                          if isinstance(t.get("kind"), str) and t["kind"] in TECHNIQUE_OF_KIND)
    else:
        # Summaries written before techniques were data: the leading words of their findings.
        techniques = None
        found = frozenset(f.partition(":")[0] for f in findings) & _TECHNIQUE_SET
    kept = {"findings": [f[:MAX_FINDING] for f in findings[:50]]}
    if techniques is not None:
        kept["techniques"] = [_technique(t) for t in techniques[:50]]
    return found, kept


MAX_FINDING = 2000  # characters of a finding kept for the diagnosis (a line may be anyone's)


def _technique(item: dict) -> dict:
    """The fields of a summary's technique the diagnosis shows, trimmed: kept for a label's
    latest run (and, when records are sorted, for every run until it is folded)."""
    reasons, targets = item.get("reasons"), item.get("targets")
    return {"kind": item.get("kind"), "stage": item.get("stage"), "failed": item.get("failed"),
            "tested": item.get("tested"),
            "reasons": dict(list(reasons.items())[:10]) if isinstance(reasons, dict) else {},
            "targets": targets[:5] if isinstance(targets, list) else []}


# --- the scan --------------------------------------------------------------------------------

Emit = Callable[..., None]  # (at, run_id, label, probe, target, rank, reason, name)
EmitSummary = Callable[..., None]  # (at, run_id, label, reason, found, evidence)


def scan(path: str, query: Query, stats: Stats, emit: Emit | None, emit_summary: EmitSummary | None,
         grouped: bool) -> None:
    """Stream one archive: every record that passes the filters goes to `emit` (with the name of
    its row: its group when `grouped`, else its target), every summary to `emit_summary`."""
    if emit is None:  # summaries only: --probe and --target do not apply to them
        query = replace(query, probes=None, targets=None)
    needles = query.needles()
    if emit is None:
        needles.append((b'"summary"',))
    since, until = query.since, query.until
    labels, probes, targets = query.labels, query.probes, query.targets
    parse, rank_of = parse_line, VERDICT_RANK
    for raw in archive_lines(path, stats):
        if needles and not all(any(n in raw for n in group) for group in needles):
            continue
        fields = parse(raw)
        if fields is None:
            if raw.strip():
                stats.corrupt += 1
            continue
        run_id, at, probe, target, verdict, reason, evidence, label = fields
        rank = rank_of.get(verdict)
        if rank is None:
            stats.corrupt += 1
            continue
        if (since and at < since) or (until and at > until):
            continue
        if labels is not None and (label or "") not in labels:
            continue
        if probe == "summary":
            if emit_summary is not None:
                emit_summary(at, run_id, label, *summary_fields(reason, evidence))
            if probes is None or "summary" not in probes:
                continue
        elif probes is None:
            if probe == "control":
                continue
        elif probe not in probes:
            continue
        if emit is None or (targets is not None and target not in targets):
            continue
        emit(at, run_id, label, probe, target, rank, reason,
             group_of(probe, target, evidence) if grouped else target)


def first_time(path: str) -> str:
    """The measured_at of a file's first record (within its first lines), "" when none is found:
    files are read oldest first, so that rotated archives given newest first fold in order."""
    stats = Stats()
    lines = archive_lines(path, stats)
    try:
        for count, raw in enumerate(lines):
            if count >= PEEK_LINES:
                break
            fields = parse_line(raw)
            if fields is not None:
                return fields[1]
    finally:
        lines.close()
    return ""


def regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True  # let the read report the error


def fold_archives(paths: Iterable[str], query: Query, start: Callable, *, observations: bool = True,
                  summaries: bool = False, grouped: bool = False) -> tuple[object, Stats]:
    """Read the archives into the folding that start(strict) makes (it has emit, emit_summary,
    finish() and discard()).  Strict first, in file order; on Disorder, once more, through the
    external sort."""
    paths = list(paths)
    if all(regular(p) for p in paths):
        ordered = sorted(paths, key=first_time) if len(paths) > 1 else paths
        stats = Stats()
        folding = start(True)
        try:
            for path in ordered:
                scan(path, query, stats, folding.emit if observations else None,
                     folding.emit_summary if summaries else None, grouped)
            folding.finish()
            return folding, stats
        except Disorder:
            folding.discard()
    # Out of order (or a pipe, which can be read only once): sort every record by time.
    stats = Stats(sorted=True)
    folding = start(False)
    sorter = ExternalSorter()
    seq = iter(range(1 << 62))

    def keep(at, run_id, label, probe, target, rank, reason, name):
        sorter.add((at, next(seq), intern(run_id), label if label is None else intern(label), intern(probe),
                    intern(target), rank, reason if reason is None else intern(reason), intern(name)))

    def keep_summary(at, run_id, label, reason, found, evidence):
        sorter.add((at, next(seq), run_id, label, None, None, -1, reason, tuple(found), evidence))

    try:
        for path in paths:
            scan(path, query, stats, keep if observations else None, keep_summary if summaries else None, grouped)
        emit, emit_summary = folding.emit, folding.emit_summary
        for item in sorter:
            if item[6] < 0:
                emit_summary(item[0], item[2], item[3], item[7], frozenset(item[8]), item[9])
            else:
                emit(item[0], *item[2:])
    finally:
        sorter.close()
    folding.finish()
    return folding, stats
