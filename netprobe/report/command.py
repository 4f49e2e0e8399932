"""`netprobe report` without click: which folds a request needs, reading into them, writing the
views (stdout) and the HTML page.

Grouping: on a terminal (`--format table`, `--timeline`) and in HTML, rows are groups (a
range, a data center, the target file's `group`); csv/json/jsonl keep one row per target, as
their contract says.  `--group` groups everywhere, `--ungrouped` nowhere.  When the page and
stdout want different rows, two folds read the same records.
"""

from __future__ import annotations

import heapq
import itertools
import os
import sys
from dataclasses import dataclass
from typing import Callable

from netprobe.errors import NetprobeError
from netprobe.output import default_format
from netprobe.report import views
from netprobe.report.fold import Fold
from netprobe.report.machine import columns_of, write_machine
from netprobe.report.reading import Query, Stats, fold_archives
from netprobe.report.spill import ExternalSorter
from netprobe.timeutil import BUCKET_LADDER, HistoryError, when
from netprobe.report.views import change_row, change_sort_key

VIEWS = ("state", "changes", "techniques", "timeline")
HTML_CELLS = 120


class ReportError(NetprobeError):
    """A problem the user can fix (an unreadable or unwritable file); one line."""


@dataclass(frozen=True)
class Request:
    files: tuple[str, ...]
    query: Query = Query()
    view: str = "state"
    fmt: str | None = None  # stdout format; None: table on a terminal, else jsonl
    show: bool = True  # print the view on stdout
    html_file: str | None = None
    bucket: int | None = None
    grouping: str | None = None  # "group", "ungrouped", or None: by output

    def stdout_format(self) -> str:
        return default_format(self.fmt)

    def grouped_stdout(self) -> bool:
        if self.grouping is not None:
            return self.grouping == "group"
        return self.view == "timeline" or self.stdout_format() == "table"

    def grouped_html(self) -> bool:
        return self.grouping != "ungrouped"


class LastChanges:
    """The newest `limit` changes, and how many there were: what a page lists."""

    def __init__(self, limit: int):
        self.limit, self.total, self.heap = limit, 0, []
        self.seq = itertools.count()

    def add(self, change: tuple) -> None:
        self.total += 1
        item = (change_sort_key(change), next(self.seq), change)
        if len(self.heap) < self.limit:
            heapq.heappush(self.heap, item)
        elif item > self.heap[0]:
            heapq.heapreplace(self.heap, item)

    def changes(self) -> list[tuple]:
        return [change for _key, _seq, change in sorted(self.heap)]


class AllChanges:
    """Every change, sorted by time; spilled to disk past a few tens of thousands."""

    def __init__(self):
        self.sorter = ExternalSorter()
        self.seq = itertools.count()

    def add(self, change: tuple) -> None:
        self.sorter.add((change_sort_key(change), next(self.seq), change))

    def __iter__(self):
        for _key, _seq, change in self.sorter:
            yield change

    def close(self) -> None:
        self.sorter.close()


@dataclass
class FoldPlan:
    """The folds one request needs: for stdout and for the page (the same one when they agree)."""

    stdout: Fold | None = None
    page: Fold | None = None
    summaries: Fold | None = None
    all_changes: AllChanges | None = None
    last_changes: LastChanges | None = None


class Folding:
    """What fold_archives fills: the folds, and the functions records and summaries go to."""

    def __init__(self, request: Request, strict: bool, terminal_cells: int):
        self.plan = plan = FoldPlan()
        lag = 0 if strict else 3600
        stdout_rows = request.show and request.view != "techniques"
        wanted: dict[bool, dict] = {}  # grouped -> what its fold must keep
        if stdout_rows:
            spec = wanted.setdefault(request.grouped_stdout(), {"cells": 0, "all": False, "last": False})
            spec["all"] = request.view == "changes"
            if request.view == "timeline":
                spec["cells"] = max(spec["cells"], terminal_cells)
        if request.html_file:
            spec = wanted.setdefault(request.grouped_html(), {"cells": 0, "all": False, "last": False})
            spec["last"] = True
            spec["cells"] = max(spec["cells"], HTML_CELLS)
        folds = {}
        for grouped, spec in wanted.items():
            sinks = []
            if spec["all"]:
                plan.all_changes = AllChanges()
                sinks.append(plan.all_changes.add)
            if spec["last"]:
                plan.last_changes = LastChanges(1000)
                sinks.append(plan.last_changes.add)
            buckets = None
            if spec["cells"]:
                buckets = (request.bucket,) if request.bucket else BUCKET_LADDER
            folds[grouped] = Fold(grouped=grouped, buckets=buckets, cap=None if request.bucket else spec["cells"],
                                  gaps=bool(spec["cells"]) and not request.bucket,
                                  technique_bucket=request.bucket or 86400, on_change=_fan(sinks),
                                  strict=strict, lag=lag)
        if stdout_rows:
            plan.stdout = folds[request.grouped_stdout()]
        if request.html_file:
            plan.page = folds[request.grouped_html()]
        plan.summaries = next(iter(folds.values()), None) or Fold(technique_bucket=request.bucket or 86400,
                                                                  strict=strict, lag=lag)
        self.folds = list(folds.values())
        if len(self.folds) == 2:
            grouped_fold, flat_fold = folds[True], folds[False]

            def emit(at, run_id, label, probe, target, rank, reason, name):
                grouped_fold.add(at, run_id, label, probe, target, rank, reason, name)
                flat_fold.add(at, run_id, label, probe, target, rank, reason, target)
            self.emit = emit
        elif self.folds:
            self.emit = self.folds[0].add
        else:
            self.emit = None
        self.grouped = any(fold.grouped for fold in self.folds)
        self.emit_summary = plan.summaries.add_summary

    def finish(self) -> None:
        for fold in self.folds:
            fold.finish()

    def discard(self) -> None:
        if self.plan.all_changes is not None:
            self.plan.all_changes.close()


def _fan(sinks: list[Callable]) -> Callable | None:
    if not sinks:
        return None
    if len(sinks) == 1:
        return sinks[0]
    return lambda change: [sink(change) for sink in sinks]


def read(request: Request, terminal_cells: int = 0) -> tuple[Folding, Stats]:
    """Fold the request's files; OSError (an unreadable file) becomes a ReportError."""
    observations = (request.show and request.view != "techniques") or bool(request.html_file)
    summaries = (request.show and request.view == "techniques") or bool(request.html_file)
    grouped = request.grouping != "ungrouped" and (
        (request.show and request.view != "techniques" and request.grouped_stdout())
        or (bool(request.html_file) and request.grouped_html()))
    try:
        folding, stats = fold_archives(request.files, request.query, lambda strict: Folding(request, strict,
                                                                                          terminal_cells),
                                       observations=observations, summaries=summaries, grouped=grouped)
    except OSError as exc:
        raise ReportError(f"cannot read {exc.filename or 'an input file'}: {exc.strerror}") from None
    return folding, stats


def report(request: Request, warn: Callable[[str], None]) -> None:
    """Read, then write the page and show the view.  Raises ReportError or HistoryError."""
    console = None
    if request.show and (request.view == "timeline" or request.stdout_format() == "table"):
        # lazy: rich 23 ms; only a table on stdout needs it, not jsonl/csv
        from rich.console import Console
        console = Console(highlight=False, soft_wrap=False)
    folding, stats = read(request, terminal_cells=console.width if console is not None else 0)
    try:
        if stats.corrupt:
            warn(f"skipped {stats.corrupt} corrupt lines")
        for path in stats.damaged:
            warn(f"{path}: the compressed data ends early or is damaged; read what it held")
        if request.html_file:
            write_html(request, folding.plan, stats)
        if request.show:
            show_view(request, folding.plan, console)
    finally:
        folding.discard()


def show_view(request: Request, plan: FoldPlan, console) -> None:
    # lazy: report.terminal 51 ms; only the terminal view needs it
    from netprobe.report import terminal

    fmt = request.stdout_format()
    if request.view == "timeline":
        fold = plan.stdout
        width = terminal.name_width(terminal.row_names(fold.tracks, {k: len(t.members) for k, t in fold.tracks.items()
                                                                    if t.members is not None}))
        terminal.print_timeline(console, views.timeline(fold, request.bucket,
                                                        max_cells=max(console.width - width - 2, 10)))
        return
    if request.view == "techniques":
        rows = views.technique_rows(plan.summaries)
    elif request.view == "changes":
        grouped = plan.stdout.grouped
        rows = (change_row(change, grouped) for change in plan.all_changes)
    else:
        rows = views.current_state(plan.stdout)
    if fmt == "table":
        terminal.print_view(console, request.view, list(rows), request.bucket or 86400)
    else:
        write_machine(rows, fmt, columns_of(request.view, plan.stdout is not None and plan.stdout.grouped
                                            and request.view != "techniques"), sys.stdout)
        sys.stdout.flush()


def write_html(request: Request, plan: FoldPlan, stats: Stats) -> None:
    """Written next to its final name and renamed, so a web server never serves half a page."""
    # lazy: report.html 59 ms; only --html needs it
    from netprobe.report import html

    fold = plan.page
    states = views.current_state(fold)
    line = views.timeline(fold, request.bucket, max_cells=HTML_CELLS)
    bounds = views.span(fold)
    first, last = bounds if bounds else (None, None)
    targets = sum(len(t.members) if t.members is not None else 1 for t in fold.tracks.values() if t.n)
    rows = sum(1 for t in fold.tracks.values() if t.n)
    what = f"{rows:,} groups ({targets:,} probe targets)" if fold.grouped else f"{rows:,} probe targets"
    window = (f"{what}, {fold.observations:,} observations from {len(request.files)} file(s), "
              f"{when(request.query.since or first) or '…'} – {when(request.query.until or last) or '…'}")
    changes = [change_row(change, fold.grouped) for change in plan.last_changes.changes()]
    page = html.html_report(states, changes, line, views.shares_by_label(states), views.diagnoses(plan.summaries),
                            title="netprobe report", window=window, skipped=stats.corrupt,
                            total_changes=plan.last_changes.total)
    path = request.html_file
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(page)
        os.replace(temporary, path)
    except OSError as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise ReportError(f"cannot write {path}: {exc.strerror}") from None


__all__ = ["HistoryError", "ReportError", "Request", "report", "read", "VIEWS"]
