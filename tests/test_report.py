"""`netprobe report` and `netprobe cron`: reading archives, folding runs, the output
contracts other tools depend on, escaping, the HTML page in a real browser, the crontab line.

Nothing here touches the network: archives are written by the tests, the browser
only opens a file:// page that loads nothing.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from netprobe.classify import VERDICT_RANK
from netprobe.records import RECORD_FIELDS, to_json_line
from netprobe.report import command, views
from netprobe.report import fold as f
from netprobe import timeutil as h
from netprobe.report.html import VERDICT_COLOURS
from netprobe.commands.report import cron, program, report

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "[bold]x\x1b[31m<script>"
# Runs the real entry point (netprobe.commands.main).
ENTRY = ("import sys; from netprobe.commands import cli, main; from netprobe.commands.report import report, cron; "
         "cli.add_command(report); cli.add_command(cron); main(sys.argv[1:])")


def record(at: str, target: str, verdict: str, reason: str | None = None, *, probe: str = "https",
           run: str = "r1", label: str | None = None, address: str | None = "149.154.167.99:443",
           evidence: dict | None = None) -> dict:
    values = dict(schema="netprobe/1", run_id=run, measured_at=at, probe=probe, target=target, address=address,
                  verdict=verdict, reason=reason, duration_ms=12.5, evidence=evidence or {"connect": "ok"},
                  label=label, netprobe_version="0.1.0")
    return {name: values[name] for name in RECORD_FIELDS}


def t(run: int, ms: int = 0) -> str:
    """Run N of the hand-made history: every 10 minutes from 2025-05-26 03:00 UTC."""
    return f"2025-05-26T03:{run * 10:02d}:00.{ms:03d}Z"


def summary(at: str, run: str, findings: list[str], label: str | None = None, offline: bool = False) -> dict:
    return record(at, "telegram", "inconclusive" if offline else "blocked",
                  "summary.offline" if offline else "summary.blocking_observed", probe="summary", run=run,
                  label=label, address=None, evidence={"findings": findings, "vantage": "online"})


def history_records() -> list[dict]:
    """Four runs.  web.telegram.org (https): reachable, reset, reset, reachable - a block that
    appears and is lifted.  t.me (dns) at two resolvers, folded per run: reachable,
    blocked (one resolver), inconclusive, blocked (over reset and inconclusive)."""
    web = [("reachable", None), ("reset", "tls.reset"), ("reset", "tls.reset"), ("reachable", None)]
    tme = [[("reachable", None, 100), ("reachable", None, 300)],
           [("reachable", None, 100), ("blocked", "dns.nxdomain", 300)],
           [("inconclusive", "dns.no_route", 100), ("reachable", None, 300)],
           [("reset", "dns.reset", 100), ("blocked", "dns.timeout", 300), ("inconclusive", "dns.unknown", 500),
            ("blocked", "dns.nxdomain", 700)]]
    records = []
    for run in range(4):
        records.append(record(t(run, 10), "1.1.1.1:443", "reachable", probe="control", run=f"r{run}"))
        records.append(record(t(run, 200), "web.telegram.org", *web[run], run=f"r{run}"))
        for verdict, reason, ms in tme[run]:
            records.append(record(t(run, ms), "t.me", verdict, reason, probe="dns", run=f"r{run}",
                                  address=f"10.0.0.{ms // 100}:53"))
        records.append(summary(t(run, 900), f"r{run}", ["No blocking observed: every probe got through."]))
    return records


def write_jsonl(path: Path, records: list[dict], *, compress: bool = False, tail: bytes = b"") -> Path:
    data = b"".join(to_json_line(r) for r in records) + tail
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def foreign_line(record: dict) -> bytes:
    """The same record as another writer might put it: keys sorted, spaces, an offset time."""
    record = dict(record)
    at = datetime.fromisoformat(record["measured_at"]).astimezone(timezone(timedelta(hours=3)))
    record["measured_at"] = at.isoformat()
    return (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode()


def run_report(*args: str, env: dict | None = None):
    result = CliRunner().invoke(report, [str(a) for a in args], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def netprobe(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETPROBE")}
    return subprocess.run([sys.executable, "-c", ENTRY, *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)


def fold_of(records: list[dict], *, grouped: bool = False, **options) -> f.Fold:
    """The pure fold over records in memory (no file): what every view is built from."""
    fold = f.Fold(grouped=grouped, **options)
    for r in records:
        if r["probe"] not in ("control", "summary"):
            name = f.group_of(r["probe"], r["target"], r["evidence"]) if grouped else r["target"]
            fold.add(r["measured_at"], r["run_id"], r["label"], r["probe"], r["target"], VERDICT_RANK[r["verdict"]],
                     r["reason"], name)
    fold.finish()
    return fold


@pytest.fixture
def archive(tmp_path) -> Path:
    return write_jsonl(tmp_path / "results.jsonl", history_records())


# --- the contracts: current state and changes as jsonl -------------------------------------------

EXPECTED_STATE = [
    {"label": None, "probe": "dns", "target": "t.me", "verdict": "blocked", "reason": "dns.timeout",
     "since": t(3, 300), "last_seen": t(3, 300),
     "counts": {"reachable": 1, "blocked": 2, "reset": 0, "inconclusive": 1}},
    {"label": None, "probe": "https", "target": "web.telegram.org", "verdict": "reachable", "reason": None,
     "since": t(3, 200), "last_seen": t(3, 200),
     "counts": {"reachable": 2, "blocked": 0, "reset": 2, "inconclusive": 0}},
]

EXPECTED_CHANGES = [
    {"label": None, "probe": "https", "target": "web.telegram.org", "at": t(1, 200), "from": "reachable",
     "to": "reset", "reason": "tls.reset", "run_id": "r1"},
    {"label": None, "probe": "dns", "target": "t.me", "at": t(1, 300), "from": "reachable", "to": "blocked",
     "reason": "dns.nxdomain", "run_id": "r1"},
    {"label": None, "probe": "dns", "target": "t.me", "at": t(2, 100), "from": "blocked", "to": "inconclusive",
     "reason": "dns.no_route", "run_id": "r2"},
    {"label": None, "probe": "dns", "target": "t.me", "at": t(3, 300), "from": "inconclusive", "to": "blocked",
     "reason": "dns.timeout", "run_id": "r3"},
    {"label": None, "probe": "https", "target": "web.telegram.org", "at": t(3, 200), "from": "reset",
     "to": "reachable", "reason": None, "run_id": "r3"},
]
EXPECTED_CHANGES.sort(key=lambda c: c["at"])


def test_current_state_jsonl_contract(archive):
    result = run_report(archive, "--format", "jsonl")
    assert jsonl(result.stdout) == EXPECTED_STATE
    assert [list(o) for o in jsonl(result.stdout)] == [list(EXPECTED_STATE[0])] * 2


def test_changes_jsonl_contract(archive):
    result = run_report(archive, "--changes", "--format", "jsonl")
    assert jsonl(result.stdout) == EXPECTED_CHANGES
    for change in jsonl(result.stdout):
        assert list(change) == ["label", "probe", "target", "at", "from", "to", "reason", "run_id"]


def test_jsonl_is_the_default_off_a_terminal(archive):
    assert jsonl(run_report(archive).stdout) == EXPECTED_STATE


def test_through_the_real_entry_point(archive):
    proc = netprobe("report", archive, "--changes", "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    assert jsonl(proc.stdout) == EXPECTED_CHANGES
    assert proc.stderr == ""


def test_report_and_cron_are_registered_on_the_main_group():
    from netprobe.commands import cli
    assert cli.get_command(None, "report") is report and cli.get_command(None, "cron") is cron, \
        "netprobe/commands must register report and cron"


# --- folding within a run ------------------------------------------------------------------------

@pytest.mark.parametrize("verdicts, folded", [
    (["reachable", "reachable"], "reachable"),
    (["reachable", "inconclusive"], "inconclusive"),
    (["inconclusive", "reset", "reachable"], "reset"),
    (["reset", "blocked", "inconclusive"], "blocked"),
    (["blocked", "reachable"], "blocked"),
])
def test_per_run_folding_precedence(tmp_path, verdicts, folded):
    records = [record(t(0, 100 * i), "t.me", v, None if v == "reachable" else f"dns.{v}", probe="dns",
                      address=f"10.0.0.{i}:53") for i, v in enumerate(verdicts)]
    random.Random(1).shuffle(records)
    (state,) = views.current_state(fold_of(records))
    assert state["verdict"] == folded
    assert state["counts"][folded] == 1 and sum(state["counts"].values()) == 1
    assert state["reason"] == (None if folded == "reachable" else f"dns.{folded}")


def test_folded_reason_and_time_are_those_of_the_first_record_with_the_verdict(tmp_path):
    records = [record(t(0, 500), "t.me", "blocked", "dns.timeout", probe="dns"),
               record(t(0, 100), "t.me", "reachable", probe="dns"),
               record(t(0, 300), "t.me", "blocked", "dns.nxdomain", probe="dns")]
    (state,) = views.current_state(fold_of(records))
    assert (state["verdict"], state["reason"], state["since"]) == ("blocked", "dns.nxdomain", t(0, 300))


# --- order, labels, tolerance ---------------------------------------------------------------------

def test_order_is_by_measured_at_not_by_file_order(tmp_path, archive):
    records = history_records()
    late = write_jsonl(tmp_path / "late.jsonl", [r for r in records if r["run_id"] in ("r2", "r3")][::-1])
    early = write_jsonl(tmp_path / "early.jsonl.1", [r for r in records if r["run_id"] in ("r0", "r1")][::-1],
                        compress=True)
    assert jsonl(run_report(late, early, "--changes").stdout) == EXPECTED_CHANGES
    assert jsonl(run_report(late, early).stdout) == EXPECTED_STATE


def test_another_writers_layout_reads_the_same(tmp_path):
    path = tmp_path / "foreign.jsonl"
    path.write_bytes(b"".join(foreign_line(r) for r in history_records()))
    assert jsonl(run_report(path, "--changes").stdout) == EXPECTED_CHANGES
    assert jsonl(run_report(path).stdout) == EXPECTED_STATE


def test_the_same_records_read_twice_fold_into_the_same_runs(tmp_path, archive):
    copy = write_jsonl(tmp_path / "copy.jsonl", history_records())
    assert jsonl(run_report(archive, copy).stdout) == EXPECTED_STATE


def test_labels_are_kept_apart(tmp_path):
    records = []
    for run in range(4):  # two vantage points measured alternately: neither ever changes
        records.append(record(t(run, 0), "web.telegram.org", "reachable", run=f"a{run}", label="home"))
        records.append(record(t(run, 500), "web.telegram.org", "reset", "tls.reset", run=f"b{run}", label="office"))
    path = write_jsonl(tmp_path / "a.jsonl", records)
    assert run_report(path, "--changes").stdout == ""
    states = jsonl(run_report(path).stdout)
    assert [(s["label"], s["verdict"], s["since"], s["counts"]["reachable"] + s["counts"]["reset"])
            for s in states] == [("home", "reachable", t(0, 0), 4), ("office", "reset", t(0, 500), 4)]
    assert [s["label"] for s in jsonl(run_report(path, "--label", "office").stdout)] == ["office"]


def test_corrupt_and_partial_lines_are_skipped_and_counted(tmp_path):
    good = b"".join(to_json_line(r) for r in history_records())
    lines = good.splitlines(keepends=True)
    junk = [b"not json at all\n", b"{}\n", b'{"schema":"netprob\n', b"\xff\xfe\x00garbage\n", b"\n", b"   \n",
            b'["a", "list"]\n', lines[1][:-1].replace(b'"verdict":"reachable"', b'"verdict":"maybe"') + b"\n"]
    mixed = lines[:5] + junk + lines[5:]
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"".join(mixed) + lines[-2][:40])  # and a partial last line, no newline
    result = run_report(path)
    assert jsonl(result.stdout) == EXPECTED_STATE
    assert result.stderr.splitlines() == ["netprobe: skipped 7 corrupt lines"]


def test_gzip_is_told_by_its_magic_bytes(tmp_path):
    path = write_jsonl(tmp_path / "results.jsonl.2", history_records(), compress=True)
    plain = write_jsonl(tmp_path / "results.gz", history_records())  # a name that lies
    assert jsonl(run_report(path).stdout) == EXPECTED_STATE
    assert jsonl(run_report(plain).stdout) == EXPECTED_STATE


def test_a_truncated_gzip_file_yields_what_it_holds(tmp_path):
    records = history_records()
    data = gzip.compress(b"".join(to_json_line(r) for r in records))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    _folding, stats = command.read(command.Request(files=(str(path),)))
    assert stats.damaged == [str(path)] and stats.corrupt == 1
    result = CliRunner().invoke(report, [str(path)])
    assert result.exit_code == 0
    assert "skipped 1 corrupt lines" in result.stderr and "ends early or is damaged" in result.stderr


def test_missing_file_is_a_user_error(tmp_path, archive):
    proc = netprobe("report", archive, tmp_path / "missing.jsonl")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"netprobe: error: cannot read {tmp_path / 'missing.jsonl'}: "
                                        "No such file or directory"]


def test_corrupt_line_message_through_the_entry_point(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", history_records(), tail=b"{broken\n{\"schema\"")
    proc = netprobe("report", path)
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == ["netprobe: skipped 2 corrupt lines"]


# --- filters --------------------------------------------------------------------------------------

def test_probe_and_target_filters(archive):
    assert [s["target"] for s in jsonl(run_report(archive, "--probe", "dns").stdout)] == ["t.me"]
    assert [s["target"] for s in jsonl(run_report(archive, "--target", "web.telegram.org").stdout)] == [
        "web.telegram.org"]
    assert jsonl(run_report(archive, "--probe", "dns,https").stdout) == EXPECTED_STATE
    assert jsonl(run_report(archive, "--target", "nothing.example").stdout) == []


def test_controls_only_when_asked_for(archive):
    states = jsonl(run_report(archive, "--probe", "control").stdout)
    assert [(s["probe"], s["target"], s["counts"]["reachable"]) for s in states] == [("control", "1.1.1.1:443", 4)]
    assert all(s["probe"] not in ("control", "summary") for s in jsonl(run_report(archive).stdout))


def test_since_and_until_dates_and_datetimes(archive):
    within = jsonl(run_report(archive, "--since", "2025-05-26T03:10:00Z", "--until", "2025-05-26T05:25:00+02:00",
                              "--target", "web.telegram.org").stdout)
    assert within[0]["counts"] == {"reachable": 0, "blocked": 0, "reset": 2, "inconclusive": 0}
    assert within[0]["since"] == t(1, 200)
    assert jsonl(run_report(archive, "--until", "2025-05-26").stdout) == EXPECTED_STATE  # the whole day
    assert jsonl(run_report(archive, "--until", "2025-05-25").stdout) == []
    assert jsonl(run_report(archive, "--since", "2025-05-27").stdout) == []


def test_since_and_until_durations(tmp_path):
    now = datetime.now(timezone.utc)

    def ago(**delta) -> str:
        return h.canonical_time(now - timedelta(**delta))

    def counts(*args: str) -> dict:
        return jsonl(run_report(path, *args).stdout)[0]["counts"]

    records = [record(ago(days=3), "t.me", "blocked", "dns.nxdomain", probe="dns", run="old"),
               record(ago(hours=5), "t.me", "reachable", probe="dns", run="mid"),
               record(ago(minutes=10), "t.me", "reset", "dns.reset", probe="dns", run="new")]
    path = write_jsonl(tmp_path / "a.jsonl", records)
    assert counts("--since", "7d") == {"reachable": 1, "blocked": 1, "reset": 1, "inconclusive": 0}
    assert counts("--since", "1d") == {"reachable": 1, "blocked": 0, "reset": 1, "inconclusive": 0}
    assert counts("--since", "30m") == {"reachable": 0, "blocked": 0, "reset": 1, "inconclusive": 0}
    assert counts("--until", "12h") == {"reachable": 0, "blocked": 1, "reset": 0, "inconclusive": 0}


def test_parse_when():
    now = datetime(2025, 5, 26, 12, 0, tzinfo=timezone.utc)
    assert h.parse_when("7d", now=now) == "2025-05-19T12:00:00.000Z"
    assert h.parse_when("90m", now=now) == "2025-05-26T10:30:00.000Z"
    assert h.parse_when("2025-05-26") == "2025-05-26T00:00:00.000Z"
    assert h.parse_when("2025-05-26", end_of_day=True) == "2025-05-26T23:59:59.999Z"
    assert h.parse_when("2025-05-26T05:10:00+02:00") == "2025-05-26T03:10:00.000Z"
    assert h.parse_when("2025-05-26T03:10") == "2025-05-26T03:10:00.000Z"
    for bad in ("yesterday", "7x", "0d", "2025-13-01", ""):
        with pytest.raises(h.HistoryError):
            h.parse_when(bad)


@pytest.mark.parametrize("args, fragment", [
    (["--since", "last week"], "--since"),
    (["--until", "2025-02-30"], "--until"),
    (["--bucket", "fortnight"], "--bucket"),
    (["--bucket", "30s"], "--bucket"),
    (["--changes", "--timeline"], "choose one view"),
    (["--timeline", "--format", "csv"], "--timeline"),
    (["--html", "/nonexistent-dir/r.html"], "--html"),
    (["--group", "--ungrouped"], "--group"),
])
def test_bad_options_are_user_errors(archive, args, fragment):
    proc = netprobe("report", archive, *args)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("netprobe: error: ") and fragment in line


# --- grouped histories (issue 11) ----------------------------------------------------------------

def grouped_records() -> list[dict]:
    """Three runs of a data center's two endpoints, a range's addresses sampled anew each run,
    and two names of one group: DC2 and the range get one blocked member in run 1."""
    records = []
    for run in range(3):
        at, rid = t(run, 100), f"g{run}"
        for port, verdict in ((443, "blocked" if run == 1 else "reachable"), (80, "reachable")):
            reason = "tcp.timeout" if verdict == "blocked" else None
            records.append(record(at, f"149.154.167.51:{port}", verdict, reason, probe="tcp", run=rid,
                                  evidence={"connect": "ok", "dc": 2}))
        for i in range(4):
            blocked = run == 1 and i == 0
            records.append(record(at, f"91.108.56.{10 * run + i}:443", "blocked" if blocked else "reachable",
                                  "tcp.timeout" if blocked else None, probe="tcp", run=rid,
                                  evidence={"range": "91.108.56.0/22", "seed": run}))
        for name in ("kws1.web.telegram.org", "kws2.web.telegram.org"):
            records.append(record(at, name, "reachable", probe="https", run=rid,
                                  evidence={"group": "web WebSocket hosts"}))
    return records


@pytest.fixture
def grouped_archive(tmp_path) -> Path:
    return write_jsonl(tmp_path / "grouped.jsonl", grouped_records())


def test_machine_output_stays_one_object_per_target_unless_group_is_given(grouped_archive):
    states = jsonl(run_report(grouped_archive, "--format", "jsonl").stdout)
    assert len(states) == 2 + 12 + 2 and all(list(s) == list(EXPECTED_STATE[0]) for s in states)
    grouped = jsonl(run_report(grouped_archive, "--format", "jsonl", "--group").stdout)
    assert [(s["probe"], s["group"], s["targets"], s["verdict"], s["counts"]["blocked"]) for s in grouped] == [
        ("https", "web WebSocket hosts", 2, "reachable", 0), ("tcp", "91.108.56.0/22", 12, "reachable", 1),
        ("tcp", "DC2", 2, "reachable", 1)]
    assert list(grouped[0]) == ["label", "probe", "group", "targets", "verdict", "reason", "since", "last_seen",
                                "counts", "differing", "differing_count"]
    assert all(s["differing"] == [] and s["differing_count"] == 0 for s in grouped)  # the last run is not mixed


def test_grouped_changes_say_which_members_differ(grouped_archive):
    changes = jsonl(run_report(grouped_archive, "--changes", "--format", "jsonl", "--group").stdout)
    assert [(c["group"], c["from"], c["to"], c["at"], c["targets"], c["differing_count"]) for c in changes] == [
        ("91.108.56.0/22", "reachable", "blocked", t(1, 100), 4, 1), ("DC2", "reachable", "blocked", t(1, 100), 2, 1),
        ("91.108.56.0/22", "blocked", "reachable", t(2, 100), 4, 0), ("DC2", "blocked", "reachable", t(2, 100), 2, 0)]
    assert changes[0]["differing"] == [{"target": "91.108.56.10:443", "verdict": "blocked", "reason": "tcp.timeout"}]
    # DC2 in run 1: one blocked, one reachable - a tie, so the worse member is the one named
    assert changes[1]["differing"] == [{"target": "149.154.167.51:443", "verdict": "blocked", "reason": "tcp.timeout"}]
    rows = list(csv.DictReader(io.StringIO(run_report(grouped_archive, "--changes", "--format", "csv",
                                                      "--group").stdout)))
    assert rows[0]["differing"] == "91.108.56.10:443 blocked" and rows[0]["targets"] == "4"
    assert list(rows[0]) == ["at", "label", "probe", "group", "targets", "from", "to", "reason", "run_id",
                             "differing_count", "differing"]


def test_a_terminal_shows_groups_unless_ungrouped(grouped_archive):
    table = run_report(grouped_archive, "--format", "table", "--changes", env={"COLUMNS": "200"}).stdout
    # A change names the members of its run (4 sampled addresses); the state, all seen (12).
    assert "DC2 (2)" in table and "91.108.56.0/22 (4)" in table and "1 of 4 differ: 91.108.56.10:443 blocked" in table
    assert "91.108.56.1:443" not in table
    state = run_report(grouped_archive, "--format", "table", env={"COLUMNS": "200"}).stdout
    assert "91.108.56.0/22 (12)" in state and "web WebSocket hosts (2)" in state
    flat = run_report(grouped_archive, "--format", "table", "--ungrouped", env={"COLUMNS": "200"}).stdout
    assert "91.108.56.21:443" in flat and "DC2" not in flat
    timeline = run_report(grouped_archive, "--timeline", env={"COLUMNS": "120"}).stdout
    rows = {line.rsplit(None, 1)[0]: line.rsplit(None, 1)[1] for line in timeline.splitlines()
            if line.startswith(("tcp ", "https "))}
    assert rows == {"https web WebSocket hosts (2)": "---", "tcp 91.108.56.0/22 (12)": "-B-", "tcp DC2 (2)": "-B-"}


def test_html_is_grouped_and_says_which_members_differ(tmp_path, grouped_archive):
    page = tmp_path / "r.html"
    run_report(grouped_archive, "--html", page)
    text = page.read_text()
    assert ">91.108.56.0/22 (12)</text>" in text and ">DC2 (2)</text>" in text and "91.108.56.21" not in text
    assert "1 of 4 differ: 91.108.56.10:443 blocked" in text
    run_report(grouped_archive, "--html", page, "--ungrouped")
    assert ">91.108.56.21:443</text>" in page.read_text()


def test_a_hostile_group_name_is_inert(tmp_path):
    records = [record(t(0), "t.me", "reachable", run="r0", evidence={"group": HOSTILE}),
               record(t(1), "t.me", "blocked", "dns.x", run="r1", evidence={"group": HOSTILE})]
    path = write_jsonl(tmp_path / "a.jsonl", records)
    for args in (["--format", "table"], ["--changes", "--format", "table"], ["--timeline"]):
        out = run_report(path, *args, env={"COLUMNS": "250"}).stdout
        assert "\x1b" not in out and "[bold]x\\x1b[31m<script>" in out
    run_report(path, "--html", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "[bold]x\\x1b[31m&lt;script&gt;" in page and "<script" not in page.lower()


def two_vantage_points() -> list[dict]:
    """home: DNS blocked from run 1 on (structured techniques); office: an older summary (findings only)."""
    records = []
    for run in range(3):
        blocked = run >= 1
        records.append(record(t(run, 100), "t.me", "blocked" if blocked else "reachable",
                              "dns.nxdomain" if blocked else None, probe="dns", run=f"h{run}", label="home"))
        home = summary(t(run, 900), f"h{run}", ["DNS: 1/1 domains failed at 10.0.0.1:53 (1 NXDOMAIN)",
                                                "Interception: port 80 accepts everything"] if blocked else
                       ["No blocking observed: every probe got through."], label="home")
        home["evidence"]["techniques"] = [{"kind": "dns", "stage": "dns", "failed": 1, "tested": 1,
                                           "reasons": {"dns.nxdomain": 1}, "targets": ["t.me"]}] if blocked else []
        if not blocked:
            home.update(reason=None, verdict="reachable")
        records.append(home)
        records.append(record(t(run, 500), "t.me", "reachable", probe="dns", run=f"o{run}", label="office"))
        records.append(summary(t(run, 950), f"o{run}", ["No blocking observed: every probe got through."],
                               label="office"))
        records[-1].update(reason=None, verdict="reachable")
    return records


def test_html_leads_with_each_vantage_points_diagnosis_and_when_it_changed(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", two_vantage_points())
    page = tmp_path / "r.html"
    run_report(path, "--html", page)
    text = page.read_text()
    home, office = re.findall(r'<section class="answer".*?</section>', text)
    assert "home: Blocking observed: DNS</h2>" in home
    assert f"holds since {t(1, 900)[:10]} 03:10 UTC" in home
    assert "<td>DNS</td><td>dns</td><td>1/1</td><td>dns.nxdomain ×1</td><td>t.me</td>" in home
    assert "Interception: port 80 accepts everything" in home and "DNS: 1/1 domains failed" not in home
    assert "2025-05-26 03:10 UTC: no blocking observed → blocking observed (DNS)" in home
    assert "office: Telegram&#x27;s probes got through: no blocking observed" in office or \
        "office: Telegram's probes got through: no blocking observed" in office
    assert "It did not change in the window" in office
    # Verdict shares side by side: one column per vantage point.
    assert "Verdict shares per probe kind and vantage point" in text
    assert re.search(r"<tr><th>probe</th><th>home</th><th>office</th></tr><tr><td>dns</td><td><svg", text)


# --- formats --------------------------------------------------------------------------------------

def test_csv_state_and_changes(archive):
    rows = list(csv.DictReader(io.StringIO(run_report(archive, "--format", "csv").stdout)))
    assert [(r["probe"], r["target"], r["verdict"], r["reason"], r["since"], r["blocked"], r["reset"])
            for r in rows] == [("dns", "t.me", "blocked", "dns.timeout", t(3, 300), "2", "0"),
                               ("https", "web.telegram.org", "reachable", "", t(3, 200), "0", "2")]
    assert list(rows[0]) == ["label", "probe", "target", "verdict", "reason", "since", "last_seen",
                             "reachable", "blocked", "reset", "inconclusive"]
    changes = list(csv.DictReader(io.StringIO(run_report(archive, "--changes", "--format", "csv").stdout)))
    assert [(c["at"], c["from"], c["to"], c["reason"]) for c in changes] == [
        (c["at"], c["from"], c["to"], c["reason"] or "") for c in EXPECTED_CHANGES]


def test_json_is_one_array(archive):
    assert json.loads(run_report(archive, "--format", "json").stdout) == EXPECTED_STATE
    assert json.loads(run_report(archive, "--changes", "--format", "json").stdout) == EXPECTED_CHANGES


def test_techniques_per_day(tmp_path):
    day2 = "2025-05-27T01:00:00.000Z"
    records = [summary(t(0), "r0", ["No blocking observed: every probe got through."]),
               summary(t(1), "r1", ["DNS: 1/6 domains failed at 10.0.0.1:53 (1 answered NXDOMAIN)",
                                    "SNI: 2/4 domains failed during the TLS handshake"]),
               summary(t(2), "r2", ["DNS injection: 3 domains got a second answer", "DNS: 2/6 failed",
                                    "TLS interception: 1 domains presented a certificate that does not verify",
                                    "MTProto: intermediate 1/1 failed"]),
               summary(day2, "r3", ["This vantage point looks offline: no control was reachable."], offline=True),
               summary(day2, "r4", ["IP: 1/5 data-center endpoints failed (1 timeout)", "HTTP: 1 blockpage"]),
               record(t(1, 5), "t.me", "blocked", "dns.nxdomain", probe="dns", run="r1")]
    path = write_jsonl(tmp_path / "a.jsonl", records + records[1:2])  # a run read twice counts once
    rows = jsonl(run_report(path, "--techniques", "--format", "jsonl").stdout)
    zero = dict.fromkeys(f.TECHNIQUES, 0)
    assert rows == [
        {"label": None, "bucket": "2025-05-26T00:00:00.000Z", "runs": 3, "offline": 0,
         "techniques": {**zero, "DNS": 2, "SNI": 1, "DNS injection": 1, "TLS interception": 1, "MTProto": 1}},
        {"label": None, "bucket": "2025-05-27T00:00:00.000Z", "runs": 2, "offline": 1,
         "techniques": {**zero, "IP": 1, "HTTP": 1}},
    ]
    hourly = jsonl(run_report(path, "--techniques", "--bucket", "1h", "--format", "jsonl").stdout)
    assert [r["bucket"][:13] for r in hourly] == ["2025-05-26T03", "2025-05-27T01"]
    table = run_report(path, "--techniques", "--format", "table", env={"COLUMNS": "200"}).stdout
    assert "TLS interception" in table and "2025-05-27" in table


# --- pictures and escaping ------------------------------------------------------------------------

@pytest.mark.parametrize("bucket", [[], ["--bucket", "10m"]], ids=["auto", "10m"])
def test_terminal_timeline(archive, bucket):
    out = run_report(archive, "--timeline", *bucket, env={"COLUMNS": "120"}).stdout
    rows = {line.split()[1]: line.split()[2] for line in out.splitlines() if line.startswith(("dns ", "https "))}
    assert rows == {"t.me": "-B?B", "web.telegram.org": "-RR-"}
    assert "one cell = 10m" in out


def test_timeline_buckets_fold_to_the_worst_verdict(archive):
    line = views.timeline(fold_of(history_records(), buckets=(3600,)), bucket=3600)
    assert line.cells == 1
    assert {key[2]: cells for key, cells in line.rows} == {"t.me": {0: VERDICT_RANK["blocked"]},
                                                           "web.telegram.org": {0: VERDICT_RANK["reset"]}}


def hostile_archive(tmp_path) -> Path:
    records = [record(t(0), HOSTILE, "reachable", run="r0", label="[red]<b>lab</b>"),
               record(t(1), HOSTILE, "blocked", "tls.</title><script>alert(1)</script>", run="r1",
                      label="[red]<b>lab</b>")]
    return write_jsonl(tmp_path / "hostile.jsonl", records)


@pytest.mark.parametrize("args", [["--format", "table"], ["--changes", "--format", "table"], ["--timeline"]])
def test_hostile_strings_cannot_style_the_terminal(tmp_path, args):
    out = run_report(hostile_archive(tmp_path), *args, env={"COLUMNS": "250"}).stdout
    assert "\x1b" not in out
    assert "[bold]x\\x1b[31m<script>" in out
    assert "[red]<b>lab</b>" in out


def test_html_escapes_and_is_self_contained(tmp_path):
    page_path = tmp_path / "report.html"
    result = run_report(hostile_archive(tmp_path), "--html", page_path)
    assert result.stdout == ""  # --html alone prints no view
    page = page_path.read_text()
    assert "[bold]x\\x1b[31m&lt;script&gt;" in page
    assert "[red]&lt;b&gt;lab&lt;/b&gt;" in page
    lowered = page.lower()
    assert "<script" not in lowered and "\x1b" not in page
    for external in ("http://", "https://", "src=", "href=", "url(", "@import", "<link", "<img", "<iframe"):
        assert external not in lowered, external
    assert "content-security-policy" in lowered


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() == 0:
        pytest.fail("chromium is not installed: as root the HTML report must be checked in a real browser "
                    "(apt-get install -y chromium)")
    pytest.skip("chromium is not installed (Debian package: chromium); as root this test installs nothing "
                "and fails instead")


BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


def browse(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([chromium(), *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args,
                           page.as_uri()], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_html_report_in_a_headless_browser(tmp_path, archive):
    """Changed with issue 11: the page leads with the diagnosis, and the timeline has one
    foldable section per probe kind (its rows no longer repeat the kind)."""
    page = tmp_path / "report.html"
    run_report(archive, "--html", page)
    dom = browse(tmp_path, page, "--dump-dom").stdout
    assert "</html>" in dom
    for text in ("Blocking observed", "Verdict shares per probe kind",
                 "web.telegram.org (https): reachable → reset (tls.reset) on 2025-05-26 03:10 UTC",
                 "web.telegram.org (https): reset → reachable on 2025-05-26 03:30 UTC",
                 "t.me (dns): reachable → blocked (dns.nxdomain) on 2025-05-26 03:10 UTC"):
        assert text in dom, text
    assert dom.count('<li data-from=') == len(EXPECTED_CHANGES)
    body = dom[dom.index("<body>"):]
    assert body.index('class="answer"') < body.index("<h2>Timeline") < body.index("Verdict shares") < body.index(
        "<h2>Changes")
    sections = re.findall(r'<details open="" data-probe="(\w+)"><summary>([^<]*)</summary>', dom)
    assert [probe for probe, _ in sections] == ["dns", "https"]  # in the order a run measures them
    assert "now 1 blocked" in sections[0][1]
    assert ">t.me</text>" in dom and ">web.telegram.org</text>" in dom
    rects = [line for line in dom.replace("<rect", "\n<rect").splitlines() if line.startswith("<rect")]
    for verdict, colour in VERDICT_COLOURS.items():  # timeline and shares: every verdict occurs
        assert any(f'fill="{colour}"' in rect for rect in rects), verdict
    assert "<script" not in dom.lower()


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows (RGB bytes) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        chunks[kind] = chunks.get(kind, b"") + data[pos + 8:pos + 8 + length]
        pos += 12 + length
    width, height = int.from_bytes(chunks[b"IHDR"][:4], "big"), int.from_bytes(chunks[b"IHDR"][4:8], "big")
    depth, colour, interlace = chunks[b"IHDR"][8], chunks[b"IHDR"][9], chunks[b"IHDR"][12]
    assert depth == 8 and colour in (2, 6) and interlace == 0
    step = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(chunks[b"IDAT"]), width * step, [], bytearray(width * step)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up, corner = previous[i], previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line) if step == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3))
        previous = line
    return width, height, rows


@pytest.mark.parametrize("width, height", [(1280, 720), (800, 600), (412, 800)], ids=["laptop", "small", "phone"])
def test_html_the_first_screen_shows_the_diagnosis(tmp_path, archive, width, height):
    """What a reader sees first: the diagnosis box (drawn in a colour used nowhere else on the
    page) fills the top of the first screen, at any common window size - not a wall of bars."""
    from netprobe.report.html import ANSWER_COLOURS
    page = tmp_path / "report.html"
    run_report(archive, "--html", page)
    assert 'data-diagnosis="blocked"' in page.read_text()
    browse(tmp_path, page, f"--window-size={width},{height}", "--screenshot=shot.png")
    shot_width, shot_height, rows = png_pixels((tmp_path / "shot.png").read_bytes())
    assert (shot_width, shot_height) == (width, height)
    colour = bytes.fromhex(ANSWER_COLOURS["blocked"][1:])
    lines = [y for y, row in enumerate(rows) if sum(1 for x in range(0, len(row), 3) if row[x:x + 3] == colour)
             > width // 2]
    assert lines, "the diagnosis is not on the first screen"
    assert lines[0] < height // 5, f"the diagnosis starts {lines[0]} px down a {height} px screen"
    assert len(lines) > height // 8, "the diagnosis box is barely visible"


def test_html_with_a_view_also_prints_it(tmp_path, archive):
    result = run_report(archive, "--html", tmp_path / "r.html", "--changes", "--format", "jsonl")
    assert jsonl(result.stdout) == EXPECTED_CHANGES and (tmp_path / "r.html").exists()


# --- cron -----------------------------------------------------------------------------------------

def cron_line(monkeypatch, tmp_path, *args, argv0: str | None = None, env: dict | None = None) -> list[str]:
    script = tmp_path / "bin" / "netprobe"
    script.parent.mkdir(exist_ok=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [argv0 or str(script)])
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cron, list(args), env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    (line,) = result.stdout.splitlines()
    return line.split(" ", 5)[:5] + shlex.split(line.split(" ", 5)[5].replace("\\%", "%"))


def test_cron_line(monkeypatch, tmp_path):
    words = cron_line(monkeypatch, tmp_path, "--label", "home 50%", "--timeout", "5", "--resolver", "10.0.0.1",
                      "--resolver", "10.0.0.2")
    schedule, (flock, dash_n, lock, executable, *arguments) = words[:5], words[5:]
    assert schedule == ["*/10", "*", "*", "*", "*"]
    assert os.path.isabs(flock) and os.path.basename(flock) == "flock" and dash_n == "-n"
    assert lock.startswith("/tmp/netprobe-") and lock.endswith(".lock")
    assert executable == str((tmp_path / "bin" / "netprobe").resolve())
    assert arguments[0] == "run" and arguments[-1] == "--quiet"
    output = arguments[arguments.index("--output") + 1]
    assert output == os.path.join(os.path.expanduser("~"), "netprobe", "results.jsonl")
    assert arguments[arguments.index("--label") + 1] == "home 50%"
    assert arguments.count("--resolver") == 2 and "--timeout" in arguments


def test_cron_escapes_percent_for_crontab(monkeypatch, tmp_path):
    script = tmp_path / "netprobe"
    script.write_text("")
    monkeypatch.setattr(sys, "argv", [str(script)])
    result = CliRunner().invoke(cron, ["--label", "50%"])
    assert "50\\%" in result.stdout and "50%'" not in result.stdout.replace("\\%", "")


def test_cron_output_and_paths_absolute_lock_per_output(monkeypatch, tmp_path):
    targets = tmp_path / "lab.toml"
    targets.write_text('endpoints = ["127.0.0.1:1"]\n')
    first = cron_line(monkeypatch, tmp_path, "--output", "out/a.jsonl", "--targets", "lab.toml", "--every", "5")
    assert first[:5] == ["*/5", "*", "*", "*", "*"]
    assert first[first.index("--output") + 1] == str(tmp_path / "out" / "a.jsonl")
    assert first[first.index("--targets") + 1] == str(targets)
    again = cron_line(monkeypatch, tmp_path, "--output", str(tmp_path / "out" / "a.jsonl"))
    other = cron_line(monkeypatch, tmp_path, "--output", "out/b.jsonl")
    assert first[7] == again[7] != other[7]


def test_cron_writes_options_from_the_environment_and_falls_back_to_python_m(monkeypatch, tmp_path):
    words = cron_line(monkeypatch, tmp_path, "--every", "60", argv0="/usr/lib/python3/dist-packages/pytest",
                      env={"NETPROBE_TIMEOUT": "7", "NETPROBE_SEED": "3"})
    assert words[:5] == ["0", "*", "*", "*", "*"]
    assert words[8:11] == [os.path.abspath(sys.executable), "-m", "netprobe"]
    assert words[words.index("--seed") + 1] == "3" and words[words.index("--timeout") + 1] == "7.0"


def test_program_resolves_the_script(monkeypatch, tmp_path):
    script = tmp_path / "real" / "netprobe"
    script.parent.mkdir()
    script.write_text("")
    link = tmp_path / "netprobe"
    link.symlink_to(script)
    monkeypatch.setattr(sys, "argv", [str(link)])
    assert program() == [str(script.resolve())]
    monkeypatch.setattr(sys, "argv", [str(ROOT / "netprobe" / "__main__.py")])
    assert program() == [os.path.abspath(sys.executable), "-m", "netprobe"]


@pytest.mark.parametrize("minutes, schedule", [(1, "* * * * *"), (15, "*/15 * * * *"), (120, "0 */2 * * *"),
                                                (1440, "0 0 * * *")])
def test_cron_schedules(minutes, schedule):
    from netprobe.commands.report import schedule_for
    assert schedule_for(minutes) == schedule


def test_cron_bad_every_and_missing_targets_are_user_errors(tmp_path):
    for args, fragment in ((["--every", "90"], "--every"), (["--targets", str(tmp_path / "no.toml")], "no.toml")):
        proc = netprobe("cron", *args)
        assert proc.returncode == 2 and fragment in proc.stderr.splitlines()[-1]


# --- the benchmark does not rot ---------------------------------------------------------------------

def test_benchmark_smoke():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report_bench.py"), "--records", "2000"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "generated 2,000 records" in proc.stdout
    for view in ("current state", "--changes", "--techniques"):
        assert f"netprobe report {view}:" in proc.stdout
    assert "MB peak RSS" in proc.stdout and "target <= 10 s" in proc.stdout


def test_techniques_are_read_from_the_summary_data_not_its_sentences(tmp_path):
    """A summary carries its techniques as data (kind, stage, counts); a finding's wording may
    change, and a network-wide line ("Interception: ...") is no technique of blocking."""
    structured = summary(t(0), "r0", ["Interception: port 443 accepts everything", "SNI: worded anew"])
    structured["evidence"]["techniques"] = [{"kind": "dns", "stage": "dns", "failed": 2, "tested": 6},
                                            {"kind": "mtproto", "stage": "mtproto", "failed": 1, "tested": 4}]
    walled = summary(t(1), "r1", ["No open access: no control got through"])
    walled.update(reason="summary.no_open_access", verdict="inconclusive")
    walled["evidence"]["techniques"] = []
    path = write_jsonl(tmp_path / "a.jsonl", [structured, walled])
    [row] = jsonl(run_report(path, "--techniques", "--format", "jsonl").stdout)
    assert row["runs"] == 2 and row["offline"] == 1
    assert {k for k, n in row["techniques"].items() if n} == {"DNS", "MTProto"}
