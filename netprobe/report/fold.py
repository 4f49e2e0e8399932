"""Folding a history in one pass, in memory that does not grow with the number of runs.

Pure: records come in as plain values, counters and change points come out;
nothing here reads a file or prints (views.py turns the result into rows).

What a history means (as before this package): within one run, the records of
one row - (label, probe, target), or grouped (label, probe, group) - fold into
one *observation* with the worst verdict (blocked > reset > inconclusive >
reachable) and the reason and time of the earliest record with that verdict.
A row's observations are taken in time order.

What is kept per row: a counter per verdict, the last observation, since when
its verdict holds, the runs still open, and - when asked for - per candidate
bucket size a small array of timeline cells, a histogram of the gaps between
runs, and for a group the members seen and the verdict of each in its last run.
Changes go to a sink as they are found (the caller decides whether to keep,
bound or spill them).  So memory grows with rows (bounded by the target files'
address space) and with what the sink keeps, never with the number of runs.

Order: a row's runs must arrive in time order - what a file appended by cron
holds, and rotated files read oldest first; the records of one run may come in
any order among themselves.  When they do not (the same file given twice, a
file written backwards, two writers interleaving runs of one label), a strict
fold raises Disorder; the caller then sorts the records by time and folds
them again non-strictly, where a run stays open for `lag` seconds after its
last record so that concurrent runs of one label still fold run by run.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, deque
from functools import lru_cache
from math import gcd
from typing import Callable

from netprobe.classify import VERDICT_RANK
from netprobe.timeutil import (
    BUCKET_LADDER,
    bucket_origin,
    bucket_start,
    epoch_of,
    time_of,
)

# Fold precedence within a run: the worst verdict (the highest VERDICT_RANK) wins.
BY_RANK = {rank: verdict for verdict, rank in VERDICT_RANK.items()}

# The techniques a summary names (its evidence.techniques[].kind, netprobe/diagnosis.py), as shown.
TECHNIQUE_OF_KIND = {"dns": "DNS", "dns_injection": "DNS injection", "ip": "IP", "sni": "SNI",
                     "tls_interception": "TLS interception", "http": "HTTP", "mtproto": "MTProto",
                     "service_interception": "Interception of the service"}
TECHNIQUES = tuple(TECHNIQUE_OF_KIND.values())
# Summary reasons of a run that had no open way out: counted in the "offline" column.
NOT_ONLINE_REASONS = ("summary.offline", "summary.no_open_access", "summary.intercepted")

MAX_DIFFERING = 20  # members named per group and change; the rest are counted
MAX_DIAGNOSIS_CHANGES = 50  # per label, the newest; older ones are counted
RECENT_RUNS = 4  # runs remembered per row to notice one that comes back (strict)
MAX_OPEN = 8  # runs open at once per row (strict): more means the records come backwards
SORTED_LAG = 3600  # seconds a run stays open in a sorted fold
_DENSE = 256  # timeline cells kept in a dict up to this many, then in a byte array


def group_of(probe: str, target: str, evidence: object) -> str:
    """The row a record is counted in when grouped - in the run's table (netprobe/render.py)
    and in a history: the file's `group`, a range, a data center, the stage of a control,
    else the target itself.  Evidence read back from a file may be anything."""
    if probe == "control":
        return "controls"  # one row: what the verdicts were weighed against; -v shows each
    if not isinstance(evidence, dict):
        return str(target)
    if evidence.get("group"):
        return str(evidence["group"])
    if evidence.get("range"):
        return str(evidence["range"])
    if evidence.get("dc") is not None:
        return f"DC{evidence['dc']}"
    return str(target)


class Disorder(Exception):
    """The records are not in time order for one row: sort them and fold again."""


class Track:
    """One row's counters.  `pending`: open runs, run_id -> [at, rank, reason, last_at, members]."""

    __slots__ = ("counts", "n", "first_at", "last_at", "last_epoch", "last_rank", "last_reason", "since",
                 "recent", "pending", "gaps", "cells", "members", "last_members")

    def __init__(self, grouped: bool, gaps: bool):
        self.counts = [0, 0, 0, 0]
        self.n = 0
        self.first_at = self.last_at = self.since = ""
        self.last_epoch = 0
        self.last_rank = -1
        self.last_reason = None
        self.recent = [None] * RECENT_RUNS  # the last runs observed, by observation count modulo RECENT_RUNS
        self.pending: dict[str, list] = {}
        self.gaps = [0] * (len(BUCKET_LADDER) + 1) if gaps else None
        self.cells = None  # timeline cells at the fold's base resolution: {index: rank + 1} or [low, bytearray]
        self.members: set | None = set() if grouped else None
        self.last_members: dict | None = None


class SummaryTrack:
    """One label's run summaries: the latest, how the diagnosis changed, runs per reason."""

    __slots__ = ("last_at", "recent", "latest", "signature", "since", "changes", "changes_total", "runs")

    def __init__(self):
        self.last_at = ""
        self.recent: deque = deque(maxlen=16)
        self.latest: dict | None = None
        self.signature: tuple | None = None
        self.since = ""
        self.changes: deque = deque(maxlen=MAX_DIAGNOSIS_CHANGES)
        self.changes_total = 0
        self.runs: Counter = Counter()


def differing(members: dict) -> tuple[int, int, tuple]:
    """(members in the run, how many differ, the first MAX_DIFFERING of them as (target, rank, reason)):
    a member differs when its verdict is not the run's most common one (ties: the better verdict
    is the common one, so that the worse members are named)."""
    tally = Counter(member[0] for member in members.values())
    if len(tally) < 2:
        return len(members), 0, ()
    common = min(tally, key=lambda rank: (-tally[rank], rank))
    odd = sorted((target, rank, reason) for target, (rank, reason, _at) in members.items() if rank != common)
    return len(members), len(odd), tuple(odd[:MAX_DIFFERING])


class Fold:
    """Observations of rows, folded as they stream in; see the module docstring.

    grouped: rows are groups and keep their members.  buckets: the timeline bucket sizes to
    keep cells for (None: no timeline); cap: an automatic timeline's most cells - a size whose
    span outgrows it is dropped.  gaps: keep the gap histograms an automatic bucket needs.
    technique_bucket: bucket of the techniques view.  on_change: gets each change as a tuple
    (at, label, probe, name, from rank, to rank, reason, run_id, differing or None).
    """

    def __init__(self, *, grouped: bool = False, buckets: tuple[int, ...] | None = None, cap: int | None = None,
                 gaps: bool = False, technique_bucket: int = 86400, on_change: Callable | None = None,
                 strict: bool = True, lag: int = 0):
        self.grouped = grouped
        self.levels = list(buckets or ())
        self.base = _base(self.levels)
        self.cap = cap
        self.dropped: list[int] = []  # bucket sizes given up (an explicit one: its span was too long)
        self.gaps = gaps
        self.technique_bucket = technique_bucket
        self.on_change = on_change or _ignore
        self.strict = strict
        self.lag = lag
        self.tracks: dict[tuple, Track] = {}
        self.summaries: dict[object, SummaryTrack] = {}
        self.technique_rows: dict[tuple, list] = {}  # (label, bucket start) -> [runs, offline, Counter]
        self.first_epoch: int | None = None
        self.last_epoch: int | None = None
        self.outgrown_at = 0

    # --- records -----------------------------------------------------------------------------

    def add(self, at: str, run_id: str, label, probe: str, target: str, rank: int, reason, name: str) -> None:
        """One record.  `name` is the row's: the target, or its group."""
        key = (label, probe, name)
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = Track(self.grouped, self.gaps)
        pending = track.pending
        run = pending.get(run_id)
        if run is None:
            if self.strict and (at < track.last_at or run_id in track.recent):
                raise Disorder(f"{probe} {target}: a record of {at} after one of {track.last_at}")
            if pending:
                if len(pending) == 1 and not self.lag:  # the common case: the previous run ended
                    ((previous, open_run),) = pending.items()
                    if open_run[3] <= at:
                        del pending[previous]
                        self._observe(key, track, previous, open_run)
                    else:
                        self._close(key, track, at)
                else:
                    self._close(key, track, at)
            if self.strict and len(pending) >= MAX_OPEN:
                raise Disorder(f"{probe} {target}: {len(pending) + 1} runs open at once")
            run = pending[run_id] = [at, rank, reason, at, {} if self.grouped else None]
        else:
            if at > run[3]:
                run[3] = at
            elif self.strict and at < track.last_at:
                raise Disorder(f"{probe} {target}: a record of {at} after one of {track.last_at}")
            if rank > run[1] or (rank == run[1] and at < run[0]):
                run[0], run[1], run[2] = at, rank, reason
        if self.grouped:
            members = run[4]
            member = members.get(target)  # (rank, reason, at): like a run, the earliest of the worst
            if member is None or rank > member[0] or (rank == member[0] and at < member[2]):
                members[target] = (rank, reason, at)

    @property
    def observations(self) -> int:
        return sum(track.n for track in self.tracks.values())

    def finish(self) -> None:
        """Close every open run: the input has ended."""
        for key, track in self.tracks.items():
            if track.pending:
                self._close(key, track, None)

    def _close(self, key: tuple, track: Track, now: str | None) -> None:
        """Observe the open runs that ended before `now` (all when None), in time order; a run
        that ended later, and every run after it, stays open."""
        pending = track.pending
        if now is None:
            cutoff = None
        elif self.lag:
            cutoff = _before(now[:19], self.lag)
        else:
            cutoff = now
        if len(pending) == 1:
            (run_id, run), = pending.items()
            if cutoff is None or run[3] <= cutoff:
                del pending[run_id]
                self._observe(key, track, run_id, run)
            return
        for run_id, run in sorted(pending.items(), key=_first_field):
            if cutoff is not None and run[3] > cutoff:
                break
            del pending[run_id]
            self._observe(key, track, run_id, run)

    def _observe(self, key: tuple, track: Track, run_id: str, run: list) -> None:
        """One run's observation of a row: counters, change, timeline."""
        at, rank, reason, _last, members = run
        n = track.n
        if n == 0:
            track.first_at = track.since = at
        elif at < track.last_at and self.strict:
            raise Disorder(f"{key[1]} {key[2]}: an observation of {at} after one of {track.last_at}")
        elif rank != track.last_rank:
            track.since = at
            self.on_change((at, key[0], key[1], key[2], track.last_rank, rank, reason, run_id,
                            None if members is None else differing(members)))
        track.counts[rank] += 1
        track.n = n + 1
        if self.gaps or self.levels:
            epoch = epoch_of(at)
            if n and track.gaps is not None:
                track.gaps[bisect_left(BUCKET_LADDER, epoch - track.last_epoch)] += 1
            track.last_epoch = epoch
            if self.levels:
                self._cell(track, epoch, rank)
        track.last_at, track.last_rank, track.last_reason = at, rank, reason
        track.recent[n % RECENT_RUNS] = run_id
        if members is not None:
            track.members.update(members)
            track.last_members = members

    def _cell(self, track: Track, epoch: int, rank: int) -> None:
        """The timeline: the worst verdict per cell of the base resolution, a common divisor of
        every bucket size still wanted, so that each of them is a union of whole cells."""
        if self.first_epoch is None or epoch < self.first_epoch:
            self.first_epoch = epoch
            if self.last_epoch is None:
                self.last_epoch = epoch
            self._drop_outgrown()
        elif epoch > self.last_epoch:
            self.last_epoch = epoch
            if epoch >= self.outgrown_at:
                self._drop_outgrown()
        index = epoch // self.base
        value = rank + 1  # 0 is "no data"
        store = track.cells
        if store is None:
            track.cells = {index: value}
        elif type(store) is dict:
            if value > store.get(index, 0):
                store[index] = value
                if len(store) > _DENSE:
                    track.cells = _dense(store)
        else:
            low, array = store
            offset = index - low
            if offset < 0:
                array[0:0] = bytes(-offset)
                store[0] = low = index
                offset = 0
            elif offset >= len(array):
                array.extend(bytes(offset - len(array) + 1))
            if value > array[offset]:
                array[offset] = value

    def _drop_outgrown(self) -> None:
        """Bucket sizes whose cells over the whole span outgrew the cap are no longer kept; the
        base resolution grows with the smallest size kept (the cells are merged)."""
        cap = self.cap if self.cap is not None else MAX_CELLS
        while self.levels and self.cell_count(self.levels[0]) > cap:
            self.dropped.append(self.levels.pop(0))
        # The last epoch from which the smallest size kept no longer fits.
        self.outgrown_at = (bucket_start(self.first_epoch, self.levels[0]) + cap * self.levels[0]
                            if self.levels else 1 << 62)
        base = _base(self.levels)
        if base != self.base:
            factor, self.base = base // self.base, base
            for track in self.tracks.values():
                track.cells = _coarser(track.cells, factor)

    def cells(self, track: Track, size: int) -> dict[int, int]:
        """A row's timeline cells of a bucket size still kept, as {absolute bucket index: rank}."""
        origin, base = bucket_origin(size), self.base
        out: dict[int, int] = {}
        for index, value in _items(track.cells):
            bucket = (index * base - origin) // size
            if value - 1 > out.get(bucket, -1):
                out[bucket] = value - 1
        return out

    def cell_count(self, size: int) -> int:
        if self.first_epoch is None:
            return 0
        return (self.last_epoch - bucket_start(self.first_epoch, size)) // size + 1

    # --- summaries ---------------------------------------------------------------------------

    def add_summary(self, at: str, run_id: str, label, reason, found: frozenset, evidence: dict | None) -> None:
        """One run's summary record: the techniques it found, for the techniques view and the
        diagnosis; a run read twice counts once."""
        track = self.summaries.get(label)
        if track is None:
            track = self.summaries[label] = SummaryTrack()
        if run_id in track.recent:
            return
        if at < track.last_at and self.strict:
            raise Disorder(f"summary of {at} after one of {track.last_at}")
        track.recent.append(run_id)
        offline = reason in NOT_ONLINE_REASONS
        start = bucket_start(epoch_of(at), self.technique_bucket)
        row = self.technique_rows.get((label, start))
        if row is None:
            row = self.technique_rows[(label, start)] = [0, 0, Counter()]
        row[0] += 1
        row[1] += offline
        row[2].update(found)
        track.runs[reason] += 1
        signature = (reason, tuple(t for t in TECHNIQUES if t in found))
        if at >= track.last_at:
            if signature != track.signature:
                if track.signature is not None:
                    track.changes.append((at, track.signature, signature))
                    track.changes_total += 1
                track.signature, track.since = signature, at
            track.last_at = at
            track.latest = {"at": at, "run_id": run_id, "reason": reason, "found": signature[1], **(evidence or {})}


@lru_cache(maxsize=1024)
def _before(second: str, lag: int) -> str:
    """The canonical time `lag` seconds before a time given to the second."""
    return time_of(epoch_of(second) - lag)


def _ignore(change: tuple) -> None:
    pass


def _first_field(item: tuple) -> str:
    return item[1][0]


def _dense(store: dict) -> list:
    """Timeline cells from a dict to [lowest index, byte array] once there are many."""
    low, high = min(store), max(store)
    array = bytearray(high - low + 1)
    for index, value in store.items():
        array[index - low] = value
    return [low, array]


def _items(store) -> list[tuple[int, int]]:
    if store is None:
        return []
    if type(store) is dict:
        return list(store.items())
    low, array = store
    return [(low + offset, value) for offset, value in enumerate(array) if value]


def _coarser(store, factor: int):
    """Cells merged `factor` to one (the worst verdict of each)."""
    if store is None or factor == 1:
        return store
    merged: dict[int, int] = {}
    for index, value in _items(store):
        index //= factor
        if value > merged.get(index, 0):
            merged[index] = value
    return merged if len(merged) <= _DENSE else _dense(merged)


def _base(sizes: list[int]) -> int:
    """The largest cell that every bucket of these sizes is made of whole (weeks start on a Monday,
    four days after the epoch's Thursday)."""
    base = 0
    for size in sizes:
        base = gcd(base, size, bucket_origin(size))
    return base or 60


MAX_CELLS = 20_000  # per timeline row: more says nothing a picture can show
