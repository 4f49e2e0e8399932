"""The report on a terminal: rich tables and a timeline drawn in characters.

Every string that came from an archive passes through `printable` and becomes
a rich Text, never markup: an archive is data anyone may have written, and it
must not style, move or clear a terminal.
"""

from __future__ import annotations

from typing import Iterable

from netprobe.classify import VERDICTS
from netprobe.render import VERDICT_STYLES, printable
from netprobe.report.fold import BY_RANK, TECHNIQUES
from netprobe.report.timeutil import duration_text, short, time_of, when
from netprobe.report.views import Timeline

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


def _table(title: str, columns: Iterable[str]):
    from rich.table import Table
    from rich.text import Text
    table = Table(title=Text(title, style="italic"), header_style="bold", title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in NO_WRAP)
    return table


def _has_labels(rows: list[dict]) -> bool:
    """A label column only when labels tell rows apart; a single label goes in the title."""
    return len({row["label"] for row in rows}) > 1


def _title(title: str, rows: list[dict]) -> str:
    labels = {row["label"] for row in rows}
    if len(labels) == 1 and None not in labels:
        return f"{title} — {printable(next(iter(labels)))}"
    return title


def _lead(row: dict, with_label: bool) -> list:
    from rich.text import Text
    cells = [Text(printable(row["label"]))] if with_label else []
    return cells + [Text(printable(row["probe"])), Text(printable(name_of(row)))]


def _reason_cell(row: dict, reason: object):
    from rich.text import Text
    note = differ_note(row)
    return Text(printable(reason or "") + (f"; {note}" if note and reason else note))


def state_table(states: list[dict]):
    from rich.text import Text
    labelled = _has_labels(states)
    grouped = bool(states) and "group" in states[0]
    what = "group" if grouped else "target"
    table = _table(_title(f"Current state per {what} (observations are runs)", states),
                   [*(["label"] if labelled else []), "probe", what, "verdict", "reason", "since (UTC)",
                    "share over the window", "runs"])
    for state in states:
        share = Text()
        for i, (verdict, n) in enumerate((v, n) for v, n in state["counts"].items() if n):
            share.append(", " if i else "")
            share.append(f"{100 * n / sum(state['counts'].values()):.0f}% {verdict}", style=VERDICT_STYLES[verdict])
        table.add_row(*_lead(state, labelled), Text(state["verdict"], style=VERDICT_STYLES[state["verdict"]]),
                      _reason_cell(state, state["reason"]), Text(short(state["since"])), share,
                      Text(str(sum(state["counts"].values()))))
    return table


def changes_table(changes: list[dict]):
    from rich.text import Text
    labelled = _has_labels(changes)
    grouped = bool(changes) and "group" in changes[0]
    table = _table(_title("Verdict changes", changes),
                   ["when (UTC)", *(["label"] if labelled else []), "probe", "group" if grouped else "target",
                    "change", "reason"])
    for change in changes:
        arrow = Text()
        arrow.append(change["from"], style=VERDICT_STYLES[change["from"]])
        arrow.append(" → ")
        arrow.append(change["to"], style=VERDICT_STYLES[change["to"]])
        table.add_row(Text(short(change["at"])), *_lead(change, labelled), arrow,
                      _reason_cell(change, change["reason"]))
    return table


def techniques_table(rows: list[dict], bucket: int):
    from rich.text import Text
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
    from rich.text import Text
    if not line.rows:
        console.print("no records match", highlight=False)
        return
    names = row_names((key for key, _ in line.rows), line.targets)
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
    for name, (_key, cells) in zip(names, line.rows):
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
