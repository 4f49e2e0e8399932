"""The words of a run's closing report — counts per probe kind, notes, the verdict block — as
(text, style) segments, without rich.

render.py styles these segments for a terminal; a stderr that is no terminal (a script, cron,
a benchmark) gets them as plain lines (`closing_lines`), so that such a run never imports rich,
a quarter of a small sweep's start-up.  Remote text is escaped here (printable), either way.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from netprobe.classify import BLOCKED, INCONCLUSIVE, REACHABLE, RESET, VERDICTS
from netprobe.text import printable

VERDICT_STYLES = {REACHABLE: "green", BLOCKED: "bold red", RESET: "bold magenta", INCONCLUSIVE: "yellow"}

HEADLINES = {
    None: ("Telegram's probes got through: no blocking observed", "bold green"),
    "summary.blocking_observed": ("Blocking observed", "bold red"),
    "summary.offline": ("This vantage point looks offline: nothing can be concluded", "bold yellow"),
    "summary.no_open_access": ("No open access to the Internet here: nothing can be concluded", "bold yellow"),
    "summary.undecided": ("The run ended before the controls decided: nothing can be concluded", "bold yellow"),
    "summary.nothing_concluded": ("Nothing concluded: no probe got a genuine answer", "bold yellow"),
}

Segments = list[tuple[str, str]]


def verdict_segments(summary: dict[str, Any]) -> Segments:
    """The diagnosis as a short block: a headline, then one line per technique found (what it
    hits, with its counts), then what could not be judged and why."""
    headline, style = HEADLINES.get(summary.get("reason"), (printable(summary.get("reason")), "bold"))
    segments = [(f"Verdict: {headline}", style)]
    findings = (summary.get("evidence") or {}).get("findings") or []
    for finding in findings:
        if not isinstance(finding, str) or finding.startswith("No blocking observed"):
            continue
        segments.append(("\n  • ", ""))
        segments.append((printable(finding, limit=1000), ""))
    return segments


def count_segments(counts: Counter, vantage: str) -> list[Segments]:
    """One line per probe kind; an offline vantage point is stated by the findings."""
    lines = []
    if vantage == "unknown":
        lines.append([("No control endpoint told whether this machine is online (none planned, or the "
                       "run ended first): a failure may mean it is offline.", "yellow")])
    kinds = sorted({probe for probe, _ in counts}, key=lambda k: (k != "control", k))
    for kind in kinds:
        line = [(f"{kind}: ", "")]
        parts = [(verdict, counts[(kind, verdict)]) for verdict in VERDICTS if counts[(kind, verdict)]]
        for i, (verdict, n) in enumerate(parts):
            if i:
                line.append((", ", ""))
            line.append((f"{n} {verdict}", VERDICT_STYLES[verdict]))
        lines.append(line)
    return lines


def closing_segments(counts: Counter | None, vantage: str, notes: Iterable[str] = (),
                     findings: Iterable[str] = (), summary: dict[str, Any] | None = None) -> list[Segments]:
    """What a run shows after its records: the counts (None: a table showed them), the notes,
    and last the verdict block."""
    lines = []
    if counts is not None:
        lines = count_segments(Counter({key: n for key, n in counts.items() if key[0] != "summary"}), vantage)
    lines += [[(printable(note, limit=500), "")] for note in notes]
    if summary is not None:
        lines.append(verdict_segments(summary))
    else:
        lines += [[(printable(finding, limit=1000), "bold")] for finding in findings]
    return lines


def closing_lines(counts: Counter, vantage: str, notes: Iterable[str] = (), findings: Iterable[str] = (),
                  summary: dict[str, Any] | None = None) -> list[str]:
    """closing_segments as plain lines (a verdict block spans several)."""
    return ["".join(text for text, _ in segments)
            for segments in closing_segments(counts, vantage, notes, findings, summary)]
