"""Terminal output: the results table and the run summary (rich).

Every cell is built as a rich Text (never parsed as markup) from text passed
through `printable`, so nothing a remote party sends can style, move or clear
the user's terminal.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from netprobe.classify import VERDICT_RANK
from netprobe.probes.kinds import DNS, MTPROTO, WEB, family_of, record_order
from netprobe.report.fold import group_of
from netprobe.report_lines import VERDICT_STYLES, count_segments, verdict_findings, verdict_headline
from netprobe.text import printable


def detail_of(record: dict[str, Any]) -> str:
    evidence = record.get("evidence") or {}
    family = family_of(record["probe"])
    if family == DNS:
        addresses = [a for q in evidence.get("queries", []) for a in q.get("addresses", [])]
        if addresses:
            return " ".join(addresses[:4]) + (" …" if len(addresses) > 4 else "")
        errors = [q.get("rcode") or q.get("error") for q in evidence.get("queries", [])]
        return " ".join(e for e in errors if e)
    if family == WEB:
        return web_detail(evidence)
    if family == MTPROTO and evidence.get("response"):
        return f"{evidence['response']}" + (f" (looks like {evidence['hint']})" if evidence.get("hint") else "")
    if "range" in evidence:
        return f"range {evidence['range']}"
    if "dc" in evidence:
        return f"DC{evidence['dc']}"
    return ""


def web_detail(evidence: dict[str, Any]) -> str:
    """What the server said: status, Server header, where a redirect points.
    These are the remote party's words: the caller escapes them (printable)."""
    http = evidence.get("http") or {}
    if not isinstance(http, dict) or http.get("status") is None:
        return ""
    headers = http.get("headers") or {}
    parts = [f"HTTP {http['status']}"]
    if headers.get("server"):
        parts.append(f"server: {headers['server']}")
    if headers.get("location"):
        parts.append(f"-> {headers['location']}")
    return " ".join(str(p) for p in parts)


def results_table(records: Iterable[dict[str, Any]]) -> Table:
    table = Table(show_lines=False, header_style="bold")
    for column in ("probe", "target", "address", "verdict", "reason", "ms", "detail"):
        table.add_column(column, overflow="fold", justify="right" if column == "ms" else "left")
    for record in sorted(records, key=lambda r: (r["probe"] != "control", r["probe"])):
        verdict = record["verdict"]
        table.add_row(
            Text(printable(record["probe"])),
            Text(printable(record["target"])),
            Text(printable(record.get("address"))),
            Text(verdict, style=VERDICT_STYLES.get(verdict, "")),
            Text(printable(record.get("reason") or "")),
            Text(f"{record.get('duration_ms', 0):.0f}"),
            Text(printable(detail_of(record))),
        )
    return table


# --- the grouped table: one row per (probe kind, group) ---------------------------------------

MAX_DIFFERING = 2


def grouped_rows(records: Iterable[dict[str, Any]]) -> list[tuple[str, str, Counter, Counter, list[str]]]:
    """(probe, group, verdict counts, reason counts, members whose verdict differs from the group's most common)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["probe"], group_of(record["probe"], record["target"], record.get("evidence"))), []).append(record)
    rows = []
    for (probe, group), members in groups.items():
        verdicts = Counter(r["verdict"] for r in members)
        reasons = Counter(r.get("reason") for r in members if r.get("reason"))
        common = verdicts.most_common(1)[0][0]
        differing = [f"{r['target']} {r['verdict']}" for r in members if r["verdict"] != common]
        rows.append((probe, group, verdicts, reasons, differing))
    rows.sort(key=lambda row: (record_order(row[0]), -max(VERDICT_RANK[v] for v in row[2]), row[1]))
    return rows


def verdict_cell(verdicts: Counter) -> Text:
    cell = Text()
    for verdict in sorted(verdicts, key=lambda v: -VERDICT_RANK[v]):
        if cell:
            cell.append(" ")
        cell.append(f"{verdicts[verdict]} {verdict}", style=VERDICT_STYLES.get(verdict, ""))
    return cell


def grouped_table(records: Iterable[dict[str, Any]]) -> Table:
    """One row per (probe kind, group): what each data center, range and family of names did.
    No vertical rules, so that at 80 columns the reasons keep room enough never to be cut
    inside a word: cells wrap between words only."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, header_style="bold")
    table.add_column("probe", no_wrap=True)
    table.add_column("group", no_wrap=True, max_width=24)
    table.add_column("verdicts", min_width=12, max_width=12)
    table.add_column("reasons; members that differ", ratio=1, min_width=24)
    for probe, group, verdicts, reasons, differing in grouped_rows(records):
        notes = [f"{printable(reason)}" + (f" ×{n}" if n > 1 else "") for reason, n in reasons.most_common(2)]
        if differing:
            shown = ", ".join(printable(d, 60) for d in differing[:MAX_DIFFERING])
            more = f" +{len(differing) - MAX_DIFFERING}" if len(differing) > MAX_DIFFERING else ""
            notes.append(f"differ: {shown}{more}")
        table.add_row(Text(printable(probe)), Text(printable(group, 32)), verdict_cell(verdicts),
                      Text("; ".join(notes)))
    return table


# --- the verdict block: the answer, last, where the eye lands ---------------------------------

def verdict_block(summary: dict[str, Any]) -> Group:
    """The diagnosis as a short block (report_lines: the headline, one bullet per technique found,
    then what could not be judged and why); wrapped lines hang under their bullet."""
    headline, style = verdict_headline(summary)
    lines = Table.grid(padding=(0, 1))
    lines.add_column(no_wrap=True)
    lines.add_column(ratio=1)
    for finding in verdict_findings(summary):
        lines.add_row(Text("  •"), Text(finding))
    return Group(Text(headline, style=style), lines)


def summary_lines(counts: Counter, vantage: str) -> list[Text]:
    """One line per probe kind (report_lines.count_segments), styled."""
    return [Text.assemble(*segments) for segments in count_segments(counts, vantage)]


def print_report(console: Console, records: list[dict[str, Any]], counts: Counter, vantage: str,
                 notes: Iterable[str] = (), findings: Iterable[str] = (), *, details: bool = False,
                 summary: dict[str, Any] | None = None) -> None:
    """The table (grouped, or every record with `details`), the counts, notes, and last the
    verdict block: the answer where the eye lands when the run ends."""
    rows = [r for r in records if r["probe"] != "summary"]
    if summary is None:
        summary = next((r for r in records if r["probe"] == "summary"), None)
    if rows:
        console.print(results_table(rows) if details else grouped_table(rows))
    if details or not rows:
        counts = Counter({key: n for key, n in counts.items() if key[0] != "summary"})
        for line in summary_lines(counts, vantage):
            console.print(line)
    for note in notes:
        console.print(Text(printable(note, limit=500)))
    if summary is not None:
        console.print(verdict_block(summary))
    else:
        for finding in findings:
            console.print(Text(printable(finding, limit=1000), style="bold"))
