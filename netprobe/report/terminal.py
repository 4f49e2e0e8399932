"""The report on a terminal: rich tables and a timeline drawn in characters.

Every string that came from an archive passes through `printable` and becomes
a rich Text, never markup: an archive is data anyone may have written, and it
must not style, move or clear a terminal.
"""

from __future__ import annotations

from typing import Iterable

from rich import box
from rich.table import Table
from rich.text import Text

from netprobe.classify import VERDICT_RANK, VERDICTS
from netprobe.probes.kinds import record_order
from netprobe.render import VERDICT_STYLES
from netprobe.report.fold import BY_RANK, TECHNIQUES
from netprobe.timeutil import duration_text, short, time_of, when
from netprobe.report.views import Timeline
from netprobe.text import printable

GLYPHS = {"reachable": "-", "blocked": "B", "reset": "R", "inconclusive": "?"}  # without colour
NO_WRAP = {"verdict", "when (UTC)", "since (UTC)", "from (UTC)", "runs"}
MAX_NAMED = 3  # members named in a table cell; the rest are counted


def name_of(row: dict) -> str:
    """A row's target, or its group with how many targets it holds."""
    if "group" not in row:
        return str(row["target"])
    return f"{row['group']} ({row['targets']})" if row.get("targets", 1) > 1 else str(row["group"])


def differ_note(row: dict) -> str:
    """'3 of 17 differ: a blocked, b blocked, c reset +1' for a group with mixed verdicts."""
    if not row.get("differing_count"):
        return ""
    named = ", ".join(printable(f"{d['target']} {d['verdict']}", 60) for d in row["differing"][:MAX_NAMED])
    more = row["differing_count"] - min(len(row["differing"]), MAX_NAMED)
    return f"{row['differing_count']} of {row['targets']} differ: {named}" + (f" +{more}" if more > 0 else "")


def shares_text(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    return ", ".join(f"{100 * n / total:.0f}% {v}" for v, n in counts.items() if n)


def _table(title: str, columns: Iterable[str], *, compact: bool = False):
    """A table whose names never break: long ones end in an ellipsis; the last column of a
    compact table takes what is left and wraps between words."""
    table = Table(title=Text(title, style="italic"), header_style="bold", title_justify="left",
                  box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD, pad_edge=not compact)
    columns = list(columns)
    for i, column in enumerate(columns):
        if compact and i == len(columns) - 1:
            table.add_column(column, overflow="fold", ratio=1)
        elif compact:
            table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=MAX_NAME)
        else:
            table.add_column(column, overflow="fold", no_wrap=column in NO_WRAP)
    return table


MAX_NAME = 40  # columns of a target or group name in a table


def _has_labels(rows: list[dict]) -> bool:
    """A label column only when labels tell rows apart; a single label goes in the title."""
    return len({row["label"] for row in rows}) > 1


def _title(title: str, rows: list[dict]) -> str:
    labels = {row["label"] for row in rows}
    if len(labels) == 1 and None not in labels:
        return f"{title} — {printable(next(iter(labels)))}"
    return title


def _details(row: dict, reason: object, counts: dict | None = None):
    """The reason, the shares of the window (worst first) and which members differ, in one cell."""
    cell = Text(printable(reason or ""))
    if counts:
        total = sum(counts.values()) or 1
        seen = sorted((v for v, n in counts.items() if n), key=lambda v: -VERDICT_RANK[v])
        if len(seen) == 1:
            cell.append(("; " if cell else "") + "always")  # one verdict over the whole window
        for verdict in seen if len(seen) > 1 else ():
            cell.append("; " if cell else "")
            cell.append(f"{100 * counts[verdict] / total:.0f}% {verdict}", style=VERDICT_STYLES[verdict])
    note = differ_note(row)
    if note:
        cell.append(("; " if cell else "") + note)
    return cell


def state_table(states: list[dict]):
    """One row per target or group, under its probe kind: the last verdict, since when, how many
    runs, and then the reason, the shares over the window and the members that differ."""
    labelled = _has_labels(states)
    what = "group" if "group" in states[0] else "target"
    table = _table(_title(f"Current state per {what} (observations are runs)", states),
                   [*(["label"] if labelled else []), what, "verdict", "since (UTC)", "runs",
                    "reason; share over the window"], compact=True)
    for probe in sorted({str(s["probe"]) for s in states}, key=probe_order):
        if table.row_count:
            table.add_section()
        table.add_row(Text(printable(probe), style="bold"))
        for state in (s for s in states if str(s["probe"]) == probe):
            table.add_row(*([Text(printable(state["label"]))] if labelled else []), Text(printable(name_of(state))),
                          Text(state["verdict"], style=VERDICT_STYLES[state["verdict"]]), Text(short(state["since"])),
                          Text(str(sum(state["counts"].values())), justify="right"),
                          _details(state, state["reason"], state["counts"]))
    return table


def changes_table(changes: list[dict]):
    """Every change in time order: when, where (probe kind and target or group), and what: from,
    to, the new verdict's reason, the members that differ."""
    labelled = _has_labels(changes)
    what = "group" if "group" in changes[0] else "target"
    table = _table(_title("Verdict changes", changes),
                   ["when (UTC)", *(["label"] if labelled else []), f"probe {what}", "change (reason)"], compact=True)
    for change in changes:
        cell = Text()
        cell.append(change["from"], style=VERDICT_STYLES[change["from"]])
        cell.append(" → ")
        cell.append(change["to"], style=VERDICT_STYLES[change["to"]])
        if change["reason"]:
            cell.append(f" ({printable(change['reason'])})")
        note = differ_note(change)
        if note:
            cell.append(f"; {note}")
        table.add_row(Text(short(change["at"])), *([Text(printable(change["label"]))] if labelled else []),
                      Text(printable(f"{change['probe']} {name_of(change)}")), cell)
    return table


def probe_order(probe: str) -> tuple:
    """Probe kinds in the order a run measures them; unknown ones last."""
    return (record_order(probe), probe)


def techniques_table(rows: list[dict], bucket: int):
    labelled = _has_labels(rows)
    table = _table(_title(f"Runs whose summary names each technique, per {duration_text(bucket)}", rows),
                   ["from (UTC)", *(["label"] if labelled else []), "runs", *TECHNIQUES, "offline"])
    for row in rows:
        start = short(row["bucket"])[:10 if bucket % 86400 == 0 else 16]
        counts = [Text(str(n) if n else "·", style="bold red" if n else "dim") for n in row["techniques"].values()]
        table.add_row(Text(start), *([Text(printable(row["label"]))] if labelled else []), Text(str(row["runs"])),
                      *counts, Text(str(row["offline"] or "·")))
    return table


def print_view(console, view: str, rows: list[dict], bucket: int = 86400) -> None:
    if not rows:
        console.print("no records match", highlight=False)
    elif view == "changes":
        console.print(changes_table(rows))
    elif view == "techniques":
        console.print(techniques_table(rows, bucket))
    else:
        console.print(state_table(rows))


# --- timeline ------------------------------------------------------------------------------------

def row_name(key: tuple, labelled: bool = True, targets: int = 1) -> str:
    label, probe, name = key
    name = f"{name} ({targets})" if targets > 1 else name
    return printable(f"{label} · {probe} {name}" if labelled and label is not None else f"{probe} {name}", limit=60)


def row_names(keys: Iterable[tuple], targets: dict | None = None) -> list[str]:
    """Names of timeline rows; the label is part of them only when there are several labels."""
    keys = list(keys)
    labelled = len({key[0] for key in keys}) > 1
    return [row_name(key, labelled, (targets or {}).get(key, 1)) for key in keys]


def name_width(names: list[str]) -> int:
    return min(max(map(len, names), default=0), 50)


def segments(cells: dict[int, int], count: int) -> list[tuple[int, int, int | None]]:
    """Run-length form of a timeline row: (first cell, length, verdict rank or None)."""
    out: list[list] = []
    for index in range(count):
        rank = cells.get(index)
        if out and out[-1][2] == rank:
            out[-1][1] += 1
        else:
            out.append([index, 1, rank])
    return [tuple(s) for s in out]


def print_timeline(console, line: Timeline) -> None:
    """One row per target or group, one character per bucket, the worst verdict of the bucket."""
    if not line.rows:
        console.print("no records match", highlight=False)
        return
    rows = sorted(line.rows, key=lambda row: probe_order(str(row[0][1])))  # stable: by row within a kind
    names = row_names((key for key, _ in rows), line.targets)
    width = name_width(names)
    fit = max(console.width - width - 2, 10)
    first = max(line.cells - fit, 0)
    colour = console.color_system is not None
    labels = {key[0] for key, _ in line.rows}
    of = f" — {printable(next(iter(labels)))}" if len(labels) == 1 and None not in labels else ""
    console.print(Text(f"Timeline{of}: {when(time_of(line.start + first * line.bucket))} → "
                       f"{when(time_of(line.start + line.cells * line.bucket))}, one cell = "
                       f"{duration_text(line.bucket)} (its worst verdict)", style="bold"))
    if first:
        console.print(Text(f"showing the last {fit} of {line.cells} cells; a larger --bucket shows all"))
    for name, (_key, cells) in zip(names, rows):
        text = Text(name[:width].ljust(width) + "  ")
        for start, length, rank in segments(cells, line.cells):
            start, length = max(start, first), length - max(first - start, 0)
            if length <= 0:
                continue
            verdict = BY_RANK.get(rank)
            if verdict is None:
                text.append(("·" if colour else " ") * length, style="dim")
            else:
                text.append(("█" if colour else GLYPHS[verdict]) * length, style=VERDICT_STYLES[verdict])
        console.print(text, no_wrap=True, overflow="crop")
    legend = Text("".ljust(width + 2))
    for verdict in VERDICTS:
        legend.append("█" if colour else GLYPHS[verdict], style=VERDICT_STYLES[verdict])
        legend.append(f" {verdict}  ")
    legend.append("·" if colour else "' '", style="dim")
    legend.append(" no data")
    console.print(legend)
