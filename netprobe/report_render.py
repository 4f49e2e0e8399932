"""How `netprobe report` shows a history: rich tables and a timeline on the terminal,
csv/json/jsonl for other tools, and one self-contained HTML file.

Every string that came from an archive passes through `printable` (and, for
HTML, html.escape) and becomes a rich Text, never markup: an archive is data
anyone may have written, and it must not style, move or clear a terminal nor
inject markup into a page.  The HTML holds no script and loads nothing: inline
SVG, inline style, and a Content-Security-Policy that forbids everything else.
"""

from __future__ import annotations

import csv
import html
import json
from typing import Iterable, TextIO

from netprobe.classify import VERDICTS
from netprobe.history import BY_RANK, TECHNIQUES, Timeline, time_of
from netprobe.render import VERDICT_STYLES, printable

VERDICT_COLOURS = {"reachable": "#2e7d32", "blocked": "#c62828", "reset": "#8e24aa", "inconclusive": "#f9a825"}
NO_DATA_COLOUR = "#e6e6e6"
GLYPHS = {"reachable": "-", "blocked": "B", "reset": "R", "inconclusive": "?"}  # without colour
MAX_HTML_CHANGES = 1000


def when(at: str | None) -> str:
    """A canonical time for people: '2025-05-26 03:10 UTC'."""
    return f"{at[:10]} {at[11:16]} UTC" if at else ""


def duration_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def change_sentence(change: dict) -> str:
    """'web.telegram.org (https): reachable → reset (tls.reset) on 2025-05-26 03:10 UTC'."""
    label = f"[{change['label']}] " if change["label"] is not None else ""
    reason = f" ({change['reason']})" if change["reason"] else ""
    return (f"{label}{change['target']} ({change['probe']}): {change['from']} → {change['to']}{reason} "
            f"on {when(change['at'])}")


def shares_text(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    return ", ".join(f"{100 * n / total:.0f}% {v}" for v, n in counts.items() if n)


# --- machine-readable ------------------------------------------------------------------------

STATE_COLUMNS = ("label", "probe", "target", "verdict", "reason", "since", "last_seen", *VERDICTS)
CHANGE_COLUMNS = ("at", "label", "probe", "target", "from", "to", "reason", "run_id")
TECHNIQUE_COLUMNS = ("bucket", "label", "runs", "offline", *TECHNIQUES)


def flat(row: dict) -> dict:
    """Nested counts (state: counts, techniques: techniques) as columns of their own, for csv."""
    out = {k: v for k, v in row.items() if not isinstance(v, dict)}
    for value in row.values():
        if isinstance(value, dict):
            out.update(value)
    return out


def write_machine(rows: list[dict], fmt: str, columns: Iterable[str], stream: TextIO) -> None:
    """jsonl (one object a line), json (one array) or csv (nested counts flattened)."""
    if fmt == "jsonl":
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=True, separators=(",", ":")) + "\n")
    elif fmt == "json":
        stream.write(json.dumps(rows, ensure_ascii=True, indent=2) + "\n")
    else:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            values = flat(row)
            writer.writerow(["" if values.get(c) is None else values.get(c) for c in columns])


# --- terminal ----------------------------------------------------------------------------------

NO_WRAP = {"verdict", "when (UTC)", "since (UTC)", "from (UTC)", "runs"}


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


def short(at: str | None) -> str:
    return f"{at[:10]} {at[11:16]}" if at else ""


def _cells(row: dict, with_label: bool, *names: str) -> list:
    from rich.text import Text
    cells = [Text(printable(row["label"]))] if with_label else []
    return cells + [Text(printable(row[name])) for name in names]


def state_table(states: list[dict]):
    from rich.text import Text
    labelled = _has_labels(states)
    table = _table(_title("Current state per target (observations are runs)", states),
                   [*(["label"] if labelled else []), "probe", "target", "verdict", "reason", "since (UTC)",
                    "share over the window", "runs"])
    for state in states:
        share = Text()
        for i, (verdict, n) in enumerate((v, n) for v, n in state["counts"].items() if n):
            share.append(", " if i else "")
            share.append(f"{100 * n / sum(state['counts'].values()):.0f}% {verdict}", style=VERDICT_STYLES[verdict])
        table.add_row(*_cells(state, labelled, "probe", "target"),
                      Text(state["verdict"], style=VERDICT_STYLES[state["verdict"]]),
                      Text(printable(state["reason"] or "")), Text(short(state["since"])), share,
                      Text(str(sum(state["counts"].values()))))
    return table


def changes_table(changes: list[dict]):
    from rich.text import Text
    labelled = _has_labels(changes)
    table = _table(_title("Verdict changes", changes),
                   ["when (UTC)", *(["label"] if labelled else []), "probe", "target", "change", "reason"])
    for change in changes:
        arrow = Text()
        arrow.append(change["from"], style=VERDICT_STYLES[change["from"]])
        arrow.append(" → ")
        arrow.append(change["to"], style=VERDICT_STYLES[change["to"]])
        table.add_row(Text(short(change["at"])), *_cells(change, labelled, "probe", "target"), arrow,
                      Text(printable(change["reason"] or "")))
    return table


def techniques_table(rows: list[dict], bucket: int):
    from rich.text import Text
    labelled = _has_labels(rows)
    table = _table(_title(f"Runs whose summary names each technique, per {duration_text(bucket)}", rows),
                   ["from (UTC)", *(["label"] if labelled else []), "runs", *TECHNIQUES, "offline"])
    for row in rows:
        start = short(row["bucket"])[:10 if bucket % 86400 == 0 else 16]
        counts = [Text(str(n) if n else "·", style="bold red" if n else "dim") for n in row["techniques"].values()]
        table.add_row(Text(start), *_cells(row, labelled), Text(str(row["runs"])), *counts,
                      Text(str(row["offline"] or "·")))
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


def row_name(key: tuple, labelled: bool = True) -> str:
    label, probe, target = key
    return printable(f"{label} · {probe} {target}" if labelled and label is not None else f"{probe} {target}",
                     limit=60)


def row_names(keys: Iterable[tuple]) -> list[str]:
    """Names of timeline rows; the label is part of them only when there are several labels."""
    keys = list(keys)
    labelled = len({key[0] for key in keys}) > 1
    return [row_name(key, labelled) for key in keys]


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
    """One row per target, one character per bucket, the worst verdict of the bucket."""
    from rich.text import Text
    if not line.rows:
        console.print("no records match", highlight=False)
        return
    names = row_names(key for key, _ in line.rows)
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


# --- HTML --------------------------------------------------------------------------------------

def esc(value: object, limit: int = 200) -> str:
    return html.escape(printable(value, limit=limit), quote=True)


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
ol.changes li{margin:2px 0}svg text{font:12px system-ui,sans-serif;fill:#222}
"""


def _legend() -> str:
    items = "".join(f'<span style="background:{VERDICT_COLOURS[v]}"></span>{v}' for v in VERDICTS)
    return f'<p class="legend">{items}<span style="background:{NO_DATA_COLOUR}"></span>no data</p>'


def timeline_svg(line: Timeline) -> str:
    names = row_names(key for key, _ in line.rows)
    name_width, row_height, plot_width = min(7 * max(map(len, names), default=0) + 16, 420), 18, 960
    cell = max(plot_width / max(line.cells, 1), 1.0)
    width = name_width + cell * line.cells + 10
    height = row_height * len(line.rows) + 30
    parts = [f'<svg role="img" width="{width:.0f}" height="{height}" '
             f'viewBox="0 0 {width:.0f} {height}">']
    for i, (name, (_key, cells)) in enumerate(zip(names, line.rows)):
        y = i * row_height
        parts.append(f'<text x="0" y="{y + 13}">{esc(name)}</text>')
        for start, length, rank in segments(cells, line.cells):
            verdict = BY_RANK.get(rank)
            fill = VERDICT_COLOURS[verdict] if verdict else NO_DATA_COLOUR
            begin, end = time_of(line.start + start * line.bucket), time_of(line.start + (start + length) * line.bucket)
            parts.append(f'<rect x="{name_width + start * cell:.1f}" y="{y + 2}" width="{length * cell:.1f}" '
                         f'height="{row_height - 4}" fill="{fill}" data-verdict="{verdict or "none"}">'
                         f'<title>{esc(name)}: {verdict or "no data"}, {when(begin)} – {when(end)}'
                         f'</title></rect>')
    axis = row_height * len(line.rows) + 20
    parts.append(f'<text x="{name_width}" y="{axis}">{when(time_of(line.start))}</text>')
    parts.append(f'<text x="{width - 10:.0f}" y="{axis}" text-anchor="end">'
                 f'{when(time_of(line.start + line.cells * line.bucket))}</text></svg>')
    return "".join(parts)


def shares_svg(shares: dict[str, dict[str, int]]) -> str:
    name_width, bar_width, row_height = 180, 600, 24
    height = row_height * len(shares) + 4
    parts = [f'<svg role="img" width="{name_width + bar_width + 330}" '
             f'height="{height}">']
    for i, (probe, counts) in enumerate(shares.items()):
        y, total, x = i * row_height, sum(counts.values()) or 1, float(name_width)
        parts.append(f'<text x="0" y="{y + 16}">{esc(probe)}</text>')
        for verdict, n in counts.items():
            if n:
                w = bar_width * n / total
                parts.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_height - 8}" '
                             f'fill="{VERDICT_COLOURS[verdict]}" data-verdict="{verdict}"><title>{esc(probe)}: '
                             f'{n} {verdict} ({100 * n / total:.1f}%)</title></rect>')
                x += w
        parts.append(f'<text x="{name_width + bar_width + 10}" y="{y + 16}">{esc(shares_text(counts))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_report(states: list[dict], changes: list[dict], line: Timeline, shares: dict, *, title: str,
                window: str, skipped: int) -> str:
    """The whole page as one string: nothing in it refers to anything outside it."""
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
           f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{esc(title)}</h1><p>{esc(window, 500)}. Observations are runs: a run's records for one "
           "target count once, with their worst verdict.</p>"]
    if skipped:
        out.append(f"<p>{skipped} corrupt lines were skipped.</p>")
    out.append(f'<h2>Timeline</h2><p>One cell = {duration_text(line.bucket)}, coloured by the worst verdict '
               f'observed in it.</p>{_legend()}')
    out.append(timeline_svg(line) if line.rows else "<p>No records match.</p>")
    out.append("<h2>Verdict shares per probe kind</h2>")
    out.append(shares_svg(shares) if shares else "<p>No records match.</p>")
    out.append(f'<h2>Changes</h2><p>{len(changes)} verdict changes.</p>')
    shown = changes[-MAX_HTML_CHANGES:]
    if len(shown) < len(changes):
        out.append(f"<p>Only the last {len(shown)} are listed; <code>netprobe report --changes</code> "
                   "lists all.</p>")
    out.append('<ol class="changes">')
    for change in shown:
        out.append(f'<li data-from="{change["from"]}" data-to="{change["to"]}">'
                   f'{esc(change_sentence(change), 600)}</li>')
    out.append("</ol><h2>Current state</h2><table><tr><th>label</th><th>probe</th><th>target</th><th>verdict</th>"
               "<th>reason</th><th>since</th><th>share over the window</th></tr>")
    for state in states:
        out.append(f'<tr><td>{esc(state["label"] or "")}</td><td>{esc(state["probe"])}</td>'
                   f'<td>{esc(state["target"])}</td><td style="color:{VERDICT_COLOURS[state["verdict"]]}">'
                   f'{state["verdict"]}</td><td>{esc(state["reason"] or "")}</td><td>{when(state["since"])}</td>'
                   f'<td>{esc(shares_text(state["counts"]))}</td></tr>')
    out.append("</table></body></html>\n")
    return "".join(out)
