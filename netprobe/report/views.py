"""What a report shows, as plain rows: current state, changes, techniques, timeline, shares,
and the diagnosis of each vantage point.  Pure: built from a finished Fold (fold.py).

The ungrouped state and change rows are a contract (README, "History"): their
fields and order do not change.  Grouped rows name the group instead of the
target and say how many targets it holds and which members differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from netprobe.classify import VERDICT_RANK, VERDICTS
from netprobe.report.fold import BY_RANK, MAX_CELLS, TECHNIQUES, Fold, differing
from netprobe.timeutil import BUCKET_LADDER, HistoryError, bucket_origin, bucket_start, time_of


def sort_key(key: tuple) -> tuple:
    return tuple("" if part is None else str(part) for part in key)


def _differing(info: tuple) -> dict:
    in_run, count, named = info
    return {"differing": [{"target": t, "verdict": BY_RANK[rank], "reason": reason} for t, rank, reason in named],
            "differing_count": count}


def current_state(fold: Fold) -> list[dict]:
    """Per row: the last verdict, since when it holds (the first observation of the current
    streak), and how many per-run observations had each verdict.  Grouped rows also carry
    how many targets the group held over the window and which members differed in its last run."""
    states = []
    for key in sorted(fold.tracks, key=sort_key):
        track = fold.tracks[key]
        if track.n == 0:
            continue
        label, probe, name = key
        counts = {verdict: track.counts[VERDICT_RANK[verdict]] for verdict in VERDICTS}
        if fold.grouped:
            state = {"label": label, "probe": probe, "group": name, "targets": len(track.members)}
        else:
            state = {"label": label, "probe": probe, "target": name}
        state.update(verdict=BY_RANK[track.last_rank], reason=track.last_reason, since=track.since,
                     last_seen=track.last_at, counts=counts)
        if fold.grouped:
            state.update(_differing(differing(track.last_members or {})))
        states.append(state)
    return states


def change_row(change: tuple, grouped: bool) -> dict:
    """A change tuple of the fold as a row.  Grouped, `targets` is how many members the group had
    in the run of the change, and `differing` names those whose verdict was not the most common."""
    at, label, probe, name, before, after, reason, run_id, members = change
    if not grouped:
        return {"label": label, "probe": probe, "target": name, "at": at, "from": BY_RANK[before],
                "to": BY_RANK[after], "reason": reason, "run_id": run_id}
    row = {"label": label, "probe": probe, "group": name, "targets": members[0] if members else 1, "at": at,
           "from": BY_RANK[before], "to": BY_RANK[after], "reason": reason, "run_id": run_id}
    row.update(_differing(members or (1, 0, ())))
    return row


def change_sort_key(change: tuple) -> tuple:
    """Changes are listed in time order, then by row."""
    return (change[0], "" if change[1] is None else str(change[1]), change[2], change[3])


def technique_rows(fold: Fold) -> list[dict]:
    """Per label and time bucket: how many runs there were and how many of their summaries
    name each technique (and how many ran offline)."""
    rows = []
    for (label, start) in sorted(fold.technique_rows, key=lambda k: ("" if k[0] is None else str(k[0]), k[1])):
        runs, offline, found = fold.technique_rows[(label, start)]
        rows.append({"label": label, "bucket": time_of(start), "runs": runs, "offline": offline,
                     "techniques": {t: found[t] for t in TECHNIQUES}})
    return rows


# --- timeline -------------------------------------------------------------------------------

@dataclass
class Timeline:
    start: int  # epoch seconds of the first bucket
    bucket: int  # seconds
    cells: int
    rows: list[tuple[tuple, dict[int, int]]]  # key, {cell index: worst verdict rank in that bucket}
    targets: dict[tuple, int] | None = None  # grouped: key -> how many targets the group held


def run_interval_fits(fold: Fold, size: int) -> bool:
    """Whether `size` is no shorter than the median time between consecutive observations of the
    most observed row (exact: the gaps are counted per ladder size)."""
    tracks = [t for t in fold.tracks.values() if t.gaps is not None and t.n > 1]
    if not tracks:
        return True
    busiest = max(tracks, key=lambda t: t.n)
    gaps = busiest.n - 1
    index = BUCKET_LADDER.index(size) if size in BUCKET_LADDER else len(BUCKET_LADDER) - 1
    return sum(busiest.gaps[:index + 1]) >= gaps // 2 + 1


def auto_bucket(fold: Fold, cells: int) -> int:
    """The smallest bucket of the ladder that fits the span into `cells` cells and is no shorter
    than the usual interval between runs (so that cells are not mostly empty)."""
    for size in BUCKET_LADDER:
        if size in fold.levels and run_interval_fits(fold, size) and fold.cell_count(size) <= cells:
            return size
    return fold.levels[-1] if fold.levels else BUCKET_LADDER[-1]


def timeline(fold: Fold, bucket: int | None = None, max_cells: int = 96) -> Timeline:
    """One row per row key, one cell per bucket; a cell holds the worst verdict observed in it
    (the same precedence as the per-run fold), so a short block is never hidden."""
    if bucket is not None and bucket in fold.dropped:
        first, last = fold.first_epoch, fold.last_epoch
        cells = (last - bucket_start(first, bucket)) // bucket + 1
        raise HistoryError(f"{cells} buckets of {bucket} s over the history, more than {MAX_CELLS}; "
                           "choose a larger bucket")
    if fold.first_epoch is None:
        return Timeline(0, bucket or 3600, 0, [])
    size = bucket or auto_bucket(fold, max_cells)
    start = bucket_start(fold.first_epoch, size)
    first_index = (start - bucket_origin(size)) // size
    rows, targets = [], {}
    for key in sorted(fold.tracks, key=sort_key):
        track = fold.tracks[key]
        if track.n:
            rows.append((key, {index - first_index: rank for index, rank in fold.cells(track, size).items()}))
            if track.members is not None:
                targets[key] = len(track.members)
    return Timeline(start, size, fold.cell_count(size), rows, targets if fold.grouped else None)


def span(fold: Fold) -> tuple[str, str] | None:
    """First and last observation time, or None for an empty history."""
    tracks = [t for t in fold.tracks.values() if t.n]
    if not tracks:
        return None
    return min(t.first_at for t in tracks), max(t.last_at for t in tracks)


# --- shares -----------------------------------------------------------------------------------

def shares_by_label(states: Iterable[dict]) -> dict[str, dict[object, dict[str, int]]]:
    """Per probe kind and label (vantage point), the number of per-run observations with each verdict."""
    shares: dict[str, dict[object, dict[str, int]]] = {}
    for state in states:
        counts = shares.setdefault(str(state["probe"]), {}).setdefault(state["label"], dict.fromkeys(VERDICTS, 0))
        for verdict, n in state["counts"].items():
            counts[verdict] += n
    return {probe: dict(sorted(by_label.items(), key=lambda item: sort_key((item[0],))))
            for probe, by_label in sorted(shares.items())}


# --- the diagnosis -------------------------------------------------------------------------------

@dataclass
class DiagnosisHistory:
    """One vantage point's answer: its latest summary, since when that diagnosis holds, and the
    moments it changed (newest last; `earlier` more were left out)."""

    label: object
    latest: dict
    since: str
    changes: list[tuple[str, tuple, tuple]]  # (at, (reason, techniques) before, after)
    earlier: int
    runs: dict  # summary reason -> runs in the window


def diagnoses(fold: Fold) -> list[DiagnosisHistory]:
    found = []
    for label in sorted(fold.summaries, key=lambda label: sort_key((label,))):
        track = fold.summaries[label]
        if track.latest is None:
            continue
        changes = list(track.changes)
        found.append(DiagnosisHistory(label, track.latest, track.since, changes, track.changes_total - len(changes),
                               dict(track.runs)))
    return found
