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

from netprobe.report.fold import RANK, TECHNIQUE_OF_KIND, TECHNIQUES, Disorder
from netprobe.report.spill import ExternalSorter
from netprobe.report.timeutil import normalise_time

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


# netprobe's own record layout (records.encode, records.to_json_line) is matched by one
# regex instead of json.loads, twice as fast.  Every field the views use is checked: its
# strings (STR: no escapes, no control characters), the time in canonical form, the line
# whole up to its closing brace; the evidence object is captured, not parsed.  Any other
# line (another writer's layout, escapes, a truncated or glued line) takes json.loads.
_FAST = re.compile((
    r'\{"schema":"STR*","run_id":"(STR+)","measured_at":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)",'
    r'"probe":"(STR+)","target":"(STR*)","address":(?:null|"STR*"),"verdict":"([a-z]+)",'
    r'"reason":(?:null|"(STR*)"),"duration_ms":[-+0-9.eE]+,"evidence":(\{[^\x00]*\}),'
    r'"label":(?:null|"(STR*)"),"netprobe_version":"STR*"\}\s*'
).replace("STR", r'[^"\\\x00-\x1f]')).fullmatch


def parse_line(line: str) -> tuple | None:
    """(run_id, at, probe, target, verdict, reason, evidence, label) of any well-formed record
    line, or None.  `evidence` is a dict here (the fast path gives its JSON text)."""
    try:
        record = json.loads(line)
        fields = (record["run_id"], normalise_time(record["measured_at"]), record["probe"], record["target"],
                  record["verdict"], record.get("reason"), record.get("evidence"), record.get("label"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    run_id, at, probe, target, verdict, reason, _evidence, label = fields
    if (type(run_id) is str and at is not None and type(probe) is str and type(target) is str
            and verdict in RANK and (reason is None or type(reason) is str)
            and (label is None or type(label) is str)):
        return fields
    return None


# --- groups ----------------------------------------------------------------------------------

def group_of(probe: str, target: str, evidence: object) -> str:
    """The row a record is folded into when grouped: the file's `group`, a range, a data
    center, the stage of a control, else the target itself - the rule of the run's grouped
    table (netprobe.render.group_of), applied to a record read back."""
    global _record_group
    if _record_group is None:
        from netprobe.render import group_of as _record_group
    return _record_group({"probe": probe, "target": target,
                          "evidence": evidence if isinstance(evidence, dict) else {}})


_record_group = None


# A key that decides a record's group, with its JSON value (a string, or a scalar up to the next
# delimiter).  Only netprobe's own fast-path lines are read this way; in the evidence netprobe
# writes these keys occur at the top level only (a string value cannot hold an unescaped quote,
# so text inside a value never matches).
_GROUP_KEY = re.compile(r'"(group|range|dc)":("(?:[^"\\]|\\.)*"|[^,}\]]*)')


def group_of_text(probe: str, target: str, evidence: str | dict | None) -> str:
    """group_of for the fast path, where evidence is JSON text: only the keys that decide the
    group are decoded, and only when they occur."""
    if not isinstance(evidence, str) or probe == "control":
        if isinstance(evidence, str):
            try:
                evidence = json.loads(evidence)
            except ValueError:
                evidence = None
        return group_of(probe, target, evidence)
    if '"group":' not in evidence and '"range":' not in evidence and '"dc":' not in evidence:
        return target
    pairs = tuple(_GROUP_KEY.findall(evidence))
    group = _groups.get((probe, pairs))
    if group is None:
        found: dict[str, object] = {}
        try:
            for key, value in pairs:
                if key not in found:
                    found[key] = json.loads(value)
        except ValueError:  # not a scalar: not netprobe's own evidence, decode all of it
            try:
                found = json.loads(evidence)
            except ValueError:
                found = {}
            return group_of(probe, target, found)
        group = group_of(probe, "", found)  # "" stands for "the target itself"
        if len(_groups) > 4096:
            _groups.clear()
        _groups[(probe, pairs)] = group
    return group or target


_groups: dict[tuple, str] = {}  # (probe, the keys that decide) -> group ("": the target)


# --- summaries -------------------------------------------------------------------------------

_TECHNIQUE_SET = frozenset(TECHNIQUES)


def summary_fields(reason: object, evidence: object) -> tuple[str | None, frozenset, dict]:
    """(reason, techniques found, evidence kept for the diagnosis) of a summary record; its
    evidence may still be JSON text (the fast path), and runs that found the same say it in the
    same words: those are decoded once."""
    if isinstance(evidence, str):
        fields = _summaries.get(evidence)
        if fields is None:
            fields = _summary_fields(_decoded(evidence))
            if len(_summaries) >= 256:
                _summaries.clear()
            _summaries[evidence] = fields
        return (reason if isinstance(reason, str) else None), fields[0], fields[1]
    return (reason if isinstance(reason, str) else None), *_summary_fields(evidence)


_summaries: dict[str, tuple] = {}  # evidence text -> (found, kept)


def _decoded(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


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
    since_b = since.encode() if since else None
    until_b = until.encode() if until else None
    labels, probes, targets = query.labels, query.probes, query.targets
    fast, rank_of = _FAST, RANK
    for raw in archive_lines(path, stats):
        if needles and not all(any(n in raw for n in group) for group in needles):
            continue
        if since_b or until_b:
            # Cheap window test on the raw bytes of netprobe's own layout (measured_at is
            # the third field); anything unusual goes to the full parse.
            i = raw.find(b'"measured_at":"', 0, 120)
            if i >= 0 and raw[i + 38:i + 40] == b'Z"':
                raw_at = raw[i + 15:i + 39]
                if (since_b and raw_at < since_b) or (until_b and raw_at > until_b):
                    continue
        try:
            line = raw.decode()
        except UnicodeDecodeError:
            stats.corrupt += 1
            continue
        match = fast(line)
        fields = match.groups() if match else parse_line(line)
        if fields is None:
            if line.strip():
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
             group_of_text(probe, target, evidence) if grouped else target)


def first_time(path: str) -> str:
    """The measured_at of a file's first record (within its first lines), "" when none is found:
    files are read oldest first, so that rotated archives given newest first fold in order."""
    stats = Stats()
    lines = archive_lines(path, stats)
    try:
        for count, raw in enumerate(lines):
            if count >= PEEK_LINES:
                break
            try:
                fields = parse_line(raw.decode())
            except UnicodeDecodeError:
                continue
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
