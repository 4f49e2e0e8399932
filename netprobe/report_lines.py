"""The words of a run's closing report — counts per probe kind, notes, the verdict block —
without rich.

render.py styles them for a terminal; a stderr that is no terminal (a script, cron, a
benchmark) gets them as plain lines (`closing_lines`), so that such a run never imports rich,
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
    "summary.intercepted": ("This network is intercepted: nothing about Telegram can be concluded", "bold yellow"),
    "summary.undecided": ("The run ended before the controls decided: nothing can be concluded", "bold yellow"),
    "summary.nothing_concluded": ("Nothing concluded: no probe got a genuine answer", "bold yellow"),
    "summary.unjudged": ("Failures without a control: no blocking can be signed", "bold yellow"),
}

Segments = list[tuple[str, str]]  # (text, style)


def verdict_headline(summary: dict[str, Any]) -> tuple[str, str]:
    """The verdict block's first line and its style: the answer, where the eye lands."""
    headline, style = HEADLINES.get(summary.get("reason"), (printable(summary.get("reason")), "bold"))
    return f"Verdict: {headline}", style


def verdict_findings(summary: dict[str, Any]) -> list[str]:
    """The block's bullets: one per technique found (what it hits, with its counts), then what
    could not be judged and why; escaped."""
    findings = (summary.get("evidence") or {}).get("findings") or []
    return [printable(finding, limit=1000) for finding in findings
            if isinstance(finding, str) and not finding.startswith("No blocking observed")]


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


def closing_lines(counts: Counter, vantage: str, notes: Iterable[str] = (), findings: Iterable[str] = (),
                  summary: dict[str, Any] | None = None) -> list[str]:
    """What a run without a table shows after its records, as render.print_report does: the
    counts, the notes, and last the verdict block (its bullets on lines of their own)."""
    counts = Counter({key: n for key, n in counts.items() if key[0] != "summary"})
    lines = ["".join(text for text, _ in segments) for segments in count_segments(counts, vantage)]
    lines += [printable(note, limit=500) for note in notes]
    if summary is not None:
        lines.append(verdict_headline(summary)[0])
        lines += [f"  • {finding}" for finding in verdict_findings(summary)]
    else:
        lines += [printable(finding, limit=1000) for finding in findings]
    return lines
