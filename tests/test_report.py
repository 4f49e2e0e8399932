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
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from netprobe import history as h
from netprobe.records import RECORD_FIELDS, to_json_line
from netprobe.report_cli import cron, program, report
from netprobe.report_render import VERDICT_COLOURS

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "[bold]x\x1b[31m<script>"
# Runs the real entry point (netprobe.commands.main).
ENTRY = ("import sys; from netprobe.commands import cli, main; from netprobe.report_cli import report, cron; "
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
    assert cli.commands.get("report") is report and cli.commands.get("cron") is cron, \
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
    history = h.read_history([str(write_jsonl(tmp_path / "a.jsonl", records))])
    (state,) = h.current_state(history)
    assert state["verdict"] == folded
    assert state["counts"][folded] == 1 and sum(state["counts"].values()) == 1
    assert state["reason"] == (None if folded == "reachable" else f"dns.{folded}")


def test_folded_reason_and_time_are_those_of_the_first_record_with_the_verdict(tmp_path):
    records = [record(t(0, 500), "t.me", "blocked", "dns.timeout", probe="dns"),
               record(t(0, 100), "t.me", "reachable", probe="dns"),
               record(t(0, 300), "t.me", "blocked", "dns.nxdomain", probe="dns")]
    (state,) = h.current_state(h.read_history([str(write_jsonl(tmp_path / "a.jsonl", records))]))
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
    history = h.read_history([str(path)])
    assert history.damaged == [str(path)] and history.corrupt == 1
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
])
def test_bad_options_are_user_errors(archive, args, fragment):
    proc = netprobe("report", archive, *args)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("netprobe: error: ") and fragment in line


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
    zero = dict.fromkeys(h.TECHNIQUES, 0)
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
    line = h.timeline(h.read_history([str(archive)]), bucket=3600)
    assert line.cells == 1
    assert {key[2]: cells for key, cells in line.rows} == {"t.me": {0: h.RANK["blocked"]},
                                                           "web.telegram.org": {0: h.RANK["reset"]}}


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


def test_html_report_in_a_headless_browser(tmp_path, archive):
    browser = chromium()
    page = tmp_path / "report.html"
    run_report(archive, "--html", page)
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert proc.returncode == 0 and "</html>" in dom, proc.stderr[-2000:]
    for text in ("dns t.me", "https web.telegram.org", "Verdict shares per probe kind",
                 "web.telegram.org (https): reachable → reset (tls.reset) on 2025-05-26 03:10 UTC",
                 "web.telegram.org (https): reset → reachable on 2025-05-26 03:30 UTC",
                 "t.me (dns): reachable → blocked (dns.nxdomain) on 2025-05-26 03:10 UTC"):
        assert text in dom, text
    assert dom.count('<li data-from=') == len(EXPECTED_CHANGES)
    rects = [line for line in dom.replace("<rect", "\n<rect").splitlines() if line.startswith("<rect")]
    for verdict, colour in VERDICT_COLOURS.items():  # timeline and shares: every verdict occurs
        assert any(f'fill="{colour}"' in rect for rect in rects), verdict
    assert "<script" not in dom.lower()


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
    from netprobe.report_cli import schedule_for
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
