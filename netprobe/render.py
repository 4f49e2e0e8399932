"""Terminal output: the results table and the run summary (rich).

Every cell is built as a rich Text (never parsed as markup) from text passed
through `printable`, so nothing a remote party sends can style, move or clear
the user's terminal.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from netprobe.classify import BLOCKED, INCONCLUSIVE, REACHABLE, RESET, VERDICTS

VERDICT_STYLES = {REACHABLE: "green", BLOCKED: "bold red", RESET: "bold magenta", INCONCLUSIVE: "yellow"}
MAX_CELL = 120


def printable(value: object, limit: int = MAX_CELL) -> str:
    """Control characters (ANSI escapes included) shown as \\xNN, text capped."""
    text = "" if value is None else str(value)
    out = []
    for ch in text[:limit]:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or ch in "\u2028\u2029\u200e\u200f\u202a\u202b\u202c\u202d\u202e":
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    if len(text) > limit:
        out.append("…")
    return "".join(out)


def detail_of(record: dict[str, Any]) -> str:
    evidence = record.get("evidence") or {}
    if record["probe"] == "dns":
        addresses = [a for q in evidence.get("queries", []) for a in q.get("addresses", [])]
        if addresses:
            return " ".join(addresses[:4]) + (" …" if len(addresses) > 4 else "")
        errors = [q.get("rcode") or q.get("error") for q in evidence.get("queries", [])]
        return " ".join(e for e in errors if e)
    if record["probe"] in ("https", "http"):
        return web_detail(evidence)
    if record["probe"].startswith("mtproto") and evidence.get("response"):
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


def summary_lines(counts: Counter, vantage: str) -> list[Text]:
    """One line per probe kind; an offline vantage point is stated by the findings."""
    lines = []
    if vantage == "unknown":
        lines.append(Text("No control endpoint told whether this machine is online (none planned, or the "
                          "run ended first): a failure may mean it is offline.", style="yellow"))
    kinds = sorted({probe for probe, _ in counts}, key=lambda k: (k != "control", k))
    for kind in kinds:
        line = Text(f"{kind}: ")
        parts = [(verdict, counts[(kind, verdict)]) for verdict in VERDICTS if counts[(kind, verdict)]]
        for i, (verdict, n) in enumerate(parts):
            if i:
                line.append(", ")
            line.append(f"{n} {verdict}", style=VERDICT_STYLES[verdict])
        lines.append(line)
    return lines


def print_report(console: Console, records: list[dict[str, Any]], counts: Counter, vantage: str,
                 notes: Iterable[str] = (), findings: Iterable[str] = ()) -> None:
    """Findings first (the headline: how the block is built), then the table and counts."""
    for finding in findings:
        console.print(Text(printable(finding, limit=1000), style="bold"))
    records = [r for r in records if r["probe"] != "summary"]
    if records:
        console.print(results_table(records))
    counts = Counter({key: n for key, n in counts.items() if key[0] != "summary"})
    for line in summary_lines(counts, vantage):
        console.print(line)
    for note in notes:
        console.print(Text(printable(note, limit=500)))
