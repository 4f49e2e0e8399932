"""The report as one self-contained HTML page that leads with the answer.

Order, for a reader who opens it: the diagnosis of each vantage point (the
latest run summary: headline, techniques with their evidence, and the dates
the diagnosis changed), then the timeline per group with one foldable
section (`<details>`) per probe kind, then the verdict shares per vantage
point side by side, then the change list and the current state.

Every string from an archive goes through `printable` and html.escape.  The
page holds no script and loads nothing: inline SVG, inline style, and a
Content-Security-Policy that forbids everything else.
"""

from __future__ import annotations

import html

from netprobe.classify import VERDICTS
from netprobe.report_lines import HEADLINES
from netprobe.report.fold import BY_RANK, TECHNIQUE_OF_KIND, TECHNIQUES
from netprobe.report.terminal import differ_note, name_of, probe_order, segments, shares_text
from netprobe.timeutil import duration_text, time_of, when
from netprobe.report.views import DiagnosisHistory, Timeline, sort_key
from netprobe.text import printable

VERDICT_COLOURS = {"reachable": "#2e7d32", "blocked": "#c62828", "reset": "#8e24aa", "inconclusive": "#f9a825"}
NO_DATA_COLOUR = "#e6e6e6"
# The diagnosis box, by what it says; colours used nowhere else on the page.
ANSWER_COLOURS = {"blocked": "#fde8e8", "reachable": "#e6f4ea", "unknown": "#fff5d6"}
MAX_DIAGNOSIS_CHANGES = 50  # dates of diagnosis changes listed per vantage point
SHOWN_CHANGES = 5  # of them in the first screen; the rest folded
SHORT = {None: "no blocking observed", "summary.blocking_observed": "blocking observed",
         "summary.offline": "offline", "summary.no_open_access": "no open access", "summary.intercepted": "intercepted",
         "summary.undecided": "undecided", "summary.nothing_concluded": "nothing concluded",
         "summary.unjudged": "failures without a control"}


def esc(value: object, limit: int = 200) -> str:
    return html.escape(printable(value, limit=limit), quote=True)


STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:1.2em 2em;color:#222;max-width:1400px}
h1{font-size:1.3em;margin:0 0 .4em}h2{font-size:1.2em;margin:1.6em 0 .5em}
.answer{padding:.6em 1em;margin:0 0 .8em;border-radius:6px}
.answer h2{margin:0 0 .3em;font-size:1.35em}.answer p{margin:.2em 0}
.answer ul,.answer ol{margin:.2em 0 .2em 1.2em;padding:0}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd;vertical-align:top}
.answer td,.answer th{border-bottom:1px solid rgba(0,0,0,.12)}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
details{margin:.4em 0}summary{font-weight:600;cursor:pointer}
ol.changes li{margin:2px 0}svg text{font:12px system-ui,sans-serif;fill:#222}.note{color:#555}
"""


def _legend() -> str:
    items = "".join(f'<span style="background:{VERDICT_COLOURS[v]}"></span>{v}' for v in VERDICTS)
    return f'<p class="legend">{items}<span style="background:{NO_DATA_COLOUR}"></span>no data</p>'


# --- the answer ------------------------------------------------------------------------------------

def diagnosis_name(signature: tuple) -> str:
    """'blocking observed (DNS, SNI)' for a (summary reason, techniques) pair."""
    reason, techniques = signature
    text = SHORT.get(reason) or printable(reason, 60)
    return f"{text} ({', '.join(techniques)})" if techniques else text


def _count(value: object) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else ""


def technique_rows(techniques: list) -> str:
    """A summary's evidence.techniques as a table: what was found, at which stage, on how many
    targets, from which reasons, with examples."""
    rows = []
    for item in techniques:
        if not isinstance(item, dict):
            continue
        kind = item.get("kind")
        name = TECHNIQUE_OF_KIND.get(kind) if isinstance(kind, str) else None
        failed, tested = _count(item.get("failed")), _count(item.get("tested"))
        reasons = item.get("reasons") if isinstance(item.get("reasons"), dict) else {}
        shown = sorted(((str(r), n) for r, n in reasons.items() if _count(n)), key=lambda rn: -rn[1])[:3]
        targets = item.get("targets") if isinstance(item.get("targets"), list) else []
        rows.append(f"<tr><td>{esc(name or kind, 40)}</td><td>{esc(item.get('stage') or '', 20)}</td>"
                    f"<td>{failed}{'/' + tested if tested else ''}</td>"
                    f"<td>{esc(', '.join(f'{r} ×{n}' for r, n in shown), 200)}</td>"
                    f"<td>{esc(', '.join(str(t) for t in targets[:5]), 300)}</td></tr>")
    if not rows:
        return ""
    return ("<table><tr><th>technique</th><th>stage</th><th>failed</th><th>reasons</th><th>e.g.</th></tr>"
            + "".join(rows) + "</table>")


def answer_block(diagnosis: DiagnosisHistory, labelled: bool) -> str:
    """One vantage point's diagnosis: the headline of its latest run, since when it holds,
    its techniques and other findings, and the dates it changed."""
    latest = diagnosis.latest
    reason = latest.get("reason")
    kind = "blocked" if reason == "summary.blocking_observed" else "reachable" if reason is None else "unknown"
    headline = HEADLINES[reason][0] if reason in HEADLINES else printable(reason, 100)
    who = f"{esc(diagnosis.label, 60)}: " if labelled and diagnosis.label is not None else ""
    techniques = latest.get("techniques")
    found = latest.get("found") or ()
    if found:
        headline += f": {', '.join(found)}"
    runs = sum(diagnosis.runs.values())
    tally = ", ".join(f"{n:,} {SHORT.get(r) or printable(r, 60)}" for r, n in
                      sorted(diagnosis.runs.items(), key=lambda rn: -rn[1]))
    out = [f'<section class="answer" data-diagnosis="{kind}" style="background:{ANSWER_COLOURS[kind]}">',
           f"<h2>{who}{html.escape(headline)}</h2>",
           f"<p>This diagnosis holds since {when(diagnosis.since)}; latest run {when(latest.get('at'))}. "
           f"{runs:,} run{'s' if runs != 1 else ''} in the window: {esc(tally, 400)}.</p>"]
    findings = [f for f in latest.get("findings") or () if isinstance(f, str)]
    if isinstance(techniques, list):
        out.append(technique_rows(techniques))
        findings = [f for f in findings if f.partition(":")[0] not in TECHNIQUES]
    findings = [f for f in findings if not f.startswith("No blocking observed")]
    if findings:
        out.append("<ul>" + "".join(f"<li>{esc(f, 600)}</li>" for f in findings[:12]) + "</ul>")
    if diagnosis.changes:
        newest = list(reversed(diagnosis.changes))
        total = len(newest) + diagnosis.earlier
        items = [f"<li>{when(at)}: {esc(diagnosis_name(before), 300)} → {esc(diagnosis_name(after), 300)}</li>"
                 for at, before, after in newest[:MAX_DIAGNOSIS_CHANGES]]
        out.append(f"<p>The diagnosis changed {total:,} time{'s' if total != 1 else ''} in the window"
                   f"{', last' if total > 1 else ''}:</p><ul>{''.join(items[:SHOWN_CHANGES])}</ul>")
        if len(items) > SHOWN_CHANGES:
            out.append(f"<details><summary>{len(items) - SHOWN_CHANGES} earlier changes</summary>"
                       f"<ul>{''.join(items[SHOWN_CHANGES:])}</ul></details>")
        if total > len(items):
            out.append(f'<p class="note">… and {total - len(items):,} before those '
                       "(<code>netprobe report --techniques</code> counts them per day).</p>")
    else:
        out.append("<p>It did not change in the window.</p>")
    out.append("</section>")
    return "".join(out)


def answer(diagnoses: list[DiagnosisHistory]) -> str:
    if not diagnoses:
        return ('<section class="answer" data-diagnosis="none" style="background:#eeeeee"><h2>No run summary in '
                "these records</h2><p>The files hold no summary record in the window (each run ends with one), "
                "so there is no diagnosis to show; the timeline below shows what each probe observed.</p></section>")
    labelled = len(diagnoses) > 1 or diagnoses[0].label is not None
    return "".join(answer_block(d, labelled) for d in diagnoses)


# --- pictures ------------------------------------------------------------------------------------

def timeline_svg(line: Timeline, rows: list, names: list[str]) -> str:
    name_width, row_height, plot_width = min(7 * max(map(len, names), default=0) + 16, 420), 18, 960
    cell = max(plot_width / max(line.cells, 1), 1.0)
    width = name_width + cell * line.cells + 10
    height = row_height * len(rows) + 30
    parts = [f'<svg role="img" width="{width:.0f}" height="{height}" viewBox="0 0 {width:.0f} {height}" style="max-width:100%;height:auto">']
    for i, (name, (_key, cells)) in enumerate(zip(names, rows)):
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
    axis = row_height * len(rows) + 20
    parts.append(f'<text x="{name_width}" y="{axis}">{when(time_of(line.start))}</text>')
    parts.append(f'<text x="{width - 10:.0f}" y="{axis}" text-anchor="end">'
                 f'{when(time_of(line.start + line.cells * line.bucket))}</text></svg>')
    return "".join(parts)


def section_name(key: tuple, labelled: bool, targets: int) -> str:
    """A timeline row's name within its probe kind's section: the target or group (how many
    targets it holds), after the label when there are several."""
    label, _probe, name = key
    name = f"{name} ({targets})" if targets > 1 else str(name)
    return printable(f"{label} · {name}" if labelled and label is not None else name, limit=60)


def timeline_sections(line: Timeline, states: list[dict]) -> str:
    """One foldable section per probe kind, each with its rows (targets or groups), its summary
    saying what the rows' last verdicts are."""
    if not line.rows:
        return "<p>No records match.</p>"
    labelled = len({key[0] for key, _ in line.rows}) > 1
    by_probe: dict[str, list] = {}
    for row in line.rows:
        by_probe.setdefault(str(row[0][1]), []).append(row)
    now: dict[str, dict[str, int]] = {}
    for state in states:
        tally = now.setdefault(str(state["probe"]), {})
        tally[state["verdict"]] = tally.get(state["verdict"], 0) + 1
    out = []
    for probe in sorted(by_probe, key=probe_order):
        rows = by_probe[probe]
        names = [section_name(key, labelled, (line.targets or {}).get(key, 1)) for key, _ in rows]
        last = ", ".join(f"{now[probe][v]} {v}" for v in VERDICTS if now.get(probe, {}).get(v))
        summary = f"{esc(probe)} — {len(rows)} row{'s' if len(rows) != 1 else ''}" + (f"; now {last}" if last else "")
        out.append(f'<details open data-probe="{esc(probe)}"><summary>{summary}</summary>'
                   f"{timeline_svg(line, rows, names)}</details>")
    return "".join(out)


def bar_svg(counts: dict[str, int], title: str, width: int = 240) -> str:
    total = sum(counts.values()) or 1
    parts, x = [f'<svg role="img" width="{width}" height="14">'], 0.0
    for verdict, n in counts.items():
        if n:
            w = width * n / total
            parts.append(f'<rect x="{x:.1f}" y="1" width="{w:.1f}" height="12" fill="{VERDICT_COLOURS[verdict]}" '
                         f'data-verdict="{verdict}"><title>{esc(title)}: {n} {verdict} '
                         f'({100 * n / total:.1f}%)</title></rect>')
            x += w
    parts.append("</svg>")
    return "".join(parts)


def shares_table(shares: dict[str, dict[object, dict[str, int]]]) -> str:
    """Per probe kind, one column per vantage point (label): a bar and the percentages."""
    labels = sorted({label for by_label in shares.values() for label in by_label}, key=lambda x: sort_key((x,)))
    head = "".join(f"<th>{esc(label if label is not None else '(no label)', 60)}</th>" for label in labels)
    rows = []
    for probe, by_label in sorted(shares.items(), key=lambda item: probe_order(item[0])):
        cells = []
        for label in labels:
            counts = by_label.get(label)
            if counts is None or not sum(counts.values()):
                cells.append("<td></td>")
                continue
            title = f"{probe} at {label}" if label is not None else probe
            cells.append(f"<td>{bar_svg(counts, title)}<br>{esc(shares_text(counts))} "
                         f'<span class="note">({sum(counts.values())})</span></td>')
        rows.append(f"<tr><td>{esc(probe)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>probe</th>{head}</tr>{''.join(rows)}</table>"


# --- text ----------------------------------------------------------------------------------------

def change_sentence(change: dict) -> str:
    """'web.telegram.org (https): reachable → reset (tls.reset) on 2025-05-26 03:10 UTC', and for
    a group with mixed verdicts which members differ."""
    label = f"[{change['label']}] " if change["label"] is not None else ""
    reason = f" ({change['reason']})" if change["reason"] else ""
    note = differ_note(change)
    return (f"{label}{name_of(change)} ({change['probe']}): {change['from']} → {change['to']}{reason} "
            f"on {when(change['at'])}" + (f" — {note}" if note else ""))


def html_report(states: list[dict], changes: list[dict], line: Timeline, shares: dict,
                diagnoses: list[DiagnosisHistory], *, title: str, window: str, skipped: int, total_changes: int) -> str:
    """The whole page as one string: nothing in it refers to anything outside it."""
    several = len({label for by_label in shares.values() for label in by_label}) > 1
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width,initial-scale=1">',
           '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
           f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{esc(title)}</h1>", answer(diagnoses),
           f'<p class="note">{esc(window, 500)}. Observations are runs: a run\'s records for one target (or '
           "group) count once, with their worst verdict.</p>"]
    if skipped:
        out.append(f'<p class="note">{skipped} corrupt lines were skipped.</p>')
    out.append(f'<h2>Timeline</h2><p>One cell = {duration_text(line.bucket)}, coloured by the worst verdict '
               f"observed in it.</p>{_legend()}")
    out.append(timeline_sections(line, states))
    out.append(f"<h2>Verdict shares per probe kind{' and vantage point' if several else ''}</h2>")
    out.append(shares_table(shares) if shares else "<p>No records match.</p>")
    out.append(f"<h2>Changes</h2><p>{total_changes} verdict changes.</p>")
    if len(changes) < total_changes:
        out.append(f"<p>Only the last {len(changes)} are listed; <code>netprobe report --changes</code> "
                   "lists all.</p>")
    out.append('<ol class="changes">')
    for change in changes:
        out.append(f'<li data-from="{change["from"]}" data-to="{change["to"]}">'
                   f'{esc(change_sentence(change), 800)}</li>')
    grouped = bool(states) and "group" in states[0]
    out.append(f"</ol><h2>Current state</h2><table><tr><th>label</th><th>probe</th>"
               f"<th>{'group' if grouped else 'target'}</th><th>verdict</th><th>reason</th><th>since</th>"
               "<th>share over the window</th></tr>")
    for state in states:
        note = differ_note(state)
        out.append(f'<tr><td>{esc(state["label"] or "")}</td><td>{esc(state["probe"])}</td>'
                   f'<td>{esc(name_of(state))}</td><td style="color:{VERDICT_COLOURS[state["verdict"]]}">'
                   f'{state["verdict"]}</td><td>{esc(state["reason"] or "")}'
                   f'{"<br>" + esc(note, 600) if note else ""}</td><td>{when(state["since"])}</td>'
                   f'<td>{esc(shares_text(state["counts"]))}</td></tr>')
    out.append("</table></body></html>\n")
    return "".join(out)
