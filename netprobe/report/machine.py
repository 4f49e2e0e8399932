"""csv, json and jsonl: the report's rows for other tools.

The ungrouped columns are a contract (README, "History"); grouped rows
(`--group`) add `group`, `targets` and the members that differ.
"""

from __future__ import annotations

import csv
import json
from typing import Iterable, TextIO

from netprobe.classify import VERDICTS
from netprobe.report.fold import TECHNIQUES

STATE_COLUMNS = ("label", "probe", "target", "verdict", "reason", "since", "last_seen", *VERDICTS)
CHANGE_COLUMNS = ("at", "label", "probe", "target", "from", "to", "reason", "run_id")
TECHNIQUE_COLUMNS = ("bucket", "label", "runs", "offline", *TECHNIQUES)
GROUPED_STATE_COLUMNS = ("label", "probe", "group", "targets", "verdict", "reason", "since", "last_seen", *VERDICTS,
                         "differing_count", "differing")
GROUPED_CHANGE_COLUMNS = ("at", "label", "probe", "group", "targets", "from", "to", "reason", "run_id",
                          "differing_count", "differing")


def columns_of(view: str, grouped: bool) -> tuple[str, ...]:
    if view == "techniques":
        return TECHNIQUE_COLUMNS
    if view == "changes":
        return GROUPED_CHANGE_COLUMNS if grouped else CHANGE_COLUMNS
    return GROUPED_STATE_COLUMNS if grouped else STATE_COLUMNS


def flat(row: dict) -> dict:
    """Nested counts (state: counts, techniques: techniques) as columns of their own, and the
    members that differ as one 'target verdict; ...' cell, for csv."""
    out = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(value)
        elif isinstance(value, list):
            out[key] = "; ".join(f"{d['target']} {d['verdict']}" for d in value)
        else:
            out[key] = value
    return out


def write_machine(rows: Iterable[dict], fmt: str, columns: Iterable[str], stream: TextIO) -> None:
    """jsonl (one object a line), json (one array) or csv (nested counts flattened); rows may be
    a generator (the change list of a long history is not held in memory)."""
    if fmt == "jsonl":
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=True, separators=(",", ":")) + "\n")
    elif fmt == "json":
        count = 0  # written as json.dumps(rows, indent=2) would, one row at a time
        for count, row in enumerate(rows, 1):
            text = json.dumps(row, ensure_ascii=True, indent=2)
            stream.write(("[" if count == 1 else ",") + "\n  " + text.replace("\n", "\n  "))
        stream.write("\n]\n" if count else "[]\n")
    else:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            values = flat(row)
            writer.writerow(["" if values.get(c) is None else values.get(c) for c in columns])
