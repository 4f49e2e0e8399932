"""Where records go (the append-only archive, stdout) and how they are shown (render)."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import re
from collections import Counter

import pytest
from rich.console import Console

from netprobe.output import AppendFile, OutputError, RecordSink, StdoutWriter
from netprobe.records import RECORD_FIELDS, Result, RunInfo, encode, to_json_line
from netprobe.render import print_report, results_table
from netprobe.text import printable


def record(**overrides) -> dict:
    fields = dict(probe="tcp", target="149.154.167.51:443", address="149.154.167.51:443", reason="tcp.refused",
                  duration_ms=12.5, evidence={"connect": "failed", "dc": 2})
    fields.update(overrides)
    return encode(Result(**fields), RunInfo(label="lab"))


# --- AppendFile ---------------------------------------------------------------------

def test_append_file_appends_lines(tmp_path):
    path = tmp_path / "archive.jsonl"
    path.write_bytes(b'{"old":1}\n')
    archive = AppendFile(str(path))
    archive.append(b'{"a":1}\n')
    archive.append(b'{"b":2}\n')
    archive.close()
    assert path.read_bytes() == b'{"old":1}\n{"a":1}\n{"b":2}\n'


def test_append_file_creates_the_file(tmp_path):
    path = tmp_path / "new.jsonl"
    archive = AppendFile(str(path))
    archive.append(b'{"a":1}\n')
    archive.close()
    assert path.read_bytes() == b'{"a":1}\n'


def test_a_fragment_left_by_a_killed_writer_gets_its_own_line(tmp_path):
    path = tmp_path / "archive.jsonl"
    path.write_bytes(b'{"a":1}\n{"schema":"netprob')
    archive = AppendFile(str(path))
    archive.append(b'{"b":2}\n')
    archive.append(b'{"c":3}\n')
    archive.close()
    assert path.read_bytes() == b'{"a":1}\n{"schema":"netprob\n{"b":2}\n{"c":3}\n'


def _append_many(path: str, writer: int, lines: int, start) -> None:
    archive = AppendFile(path)
    start.wait()
    for seq in range(lines):
        line = to_json_line({"writer": writer, "seq": seq, "pad": chr(ord("a") + writer) * 4000})
        archive.append(line)
    archive.close()


def test_concurrent_appends_never_interleave(tmp_path):
    path = str(tmp_path / "shared.jsonl")
    writers, lines = 8, 200
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(writers)
    procs = [ctx.Process(target=_append_many, args=(path, w, lines, start)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    with open(path, "rb") as f:
        raw = f.read()
    assert raw.endswith(b"\n")
    seen = Counter()
    for line in raw.split(b"\n")[:-1]:
        obj = json.loads(line)  # a torn or interleaved line would not parse
        assert obj["pad"] == chr(ord("a") + obj["writer"]) * 4000
        seen[(obj["writer"], obj["seq"])] += 1
    assert len(seen) == writers * lines
    assert set(seen.values()) == {1}


def _open_and_append(path: str) -> None:
    archive = AppendFile(path)
    try:
        archive.append(b'{"a":1}\n')
    finally:
        archive.close()


@pytest.mark.parametrize("path", ["/nonexistent-dir/x.jsonl", "/proc/version", "/sys/kernel/notes"])
def test_unwritable_output_is_an_output_error(tmp_path, path):
    if not path.startswith("/nonexistent") and not os.path.exists(path):
        pytest.skip(f"{path} not on this system")
    with pytest.raises(OutputError) as info:
        _open_and_append(path)
    message = str(info.value)
    assert path in message
    assert "\n" not in message
    assert message.startswith("cannot ")


def test_a_directory_is_not_an_output_file(tmp_path):
    with pytest.raises(OutputError) as info:
        AppendFile(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_a_full_device_is_an_output_error():
    with pytest.raises(OutputError) as info:
        _open_and_append("/dev/full")
    assert "No space left" in str(info.value)


# --- RecordSink: the one writer of run, import ooni and atlas fetch ----------------------

def test_the_sink_shows_a_record_the_archive_refused_then_writes_the_archive_no_more(capsys):
    sink = RecordSink("jsonl", "/dev/full", quiet=False)
    first, second = record(), record(target="149.154.175.50:443")
    with pytest.raises(OutputError, match="No space left"):
        sink.write(first)
    sink.write(second)  # the archive failed once: only stdout now, no second error
    sink.close()
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == [first, second]
    assert "No space left" in str(sink.failure)


def test_the_sink_batches_and_close_writes_the_batch(tmp_path, capsys):
    path = tmp_path / "out.jsonl"
    sink = RecordSink("jsonl", str(path), quiet=True, flush_interval=60.0)
    records = [record(), record(target="149.154.175.50:443")]
    for r in records:
        sink.write(r)
    assert sink.pending and path.read_bytes() == b""
    sink.close()
    assert path.read_bytes() == b"".join(map(to_json_line, records))
    assert capsys.readouterr().out == "" and sink.kept == []


@pytest.mark.parametrize("fmt, quiet, kept", [("json", False, 1), ("table", False, 1), ("jsonl", False, 0),
                                               ("json", True, 0)])
def test_the_sink_keeps_for_the_end_what_is_printed_at_the_end(fmt, quiet, kept, capsys):
    sink = RecordSink(fmt, None, quiet)
    sink.write(record())
    sink.close()
    assert len(sink.kept) == kept and not sink.pending


# --- StdoutWriter --------------------------------------------------------------------

def test_stdout_jsonl_streams_one_line_per_record():
    stream = io.StringIO()
    writer = StdoutWriter("jsonl", stream)
    first, second = record(), record(target="\x1b[2J", reason=None)
    writer.write(first)
    assert stream.getvalue() == to_json_line(first).decode()
    writer.write(second)
    lines = stream.getvalue().splitlines()
    assert [json.loads(x) for x in lines] == [first, second]
    assert "\x1b" not in stream.getvalue()
    assert writer.kept == []


def test_stdout_csv_has_a_header_and_one_row_per_record():
    stream = io.StringIO()
    writer = StdoutWriter("csv", stream)
    assert stream.getvalue() == ",".join(RECORD_FIELDS) + "\n"
    writer.write(record(reason=None, address=None))
    rows = list(csv.reader(io.StringIO(stream.getvalue())))
    assert rows[0] == list(RECORD_FIELDS)
    row = dict(zip(rows[0], rows[1]))
    assert row["verdict"] == "reachable"
    assert row["reason"] == "" and row["address"] == ""
    assert json.loads(row["evidence"]) == {"connect": "failed", "dc": 2}
    assert row["schema"] == "netprobe/1"


def test_stdout_json_keeps_records_for_one_document():
    stream = io.StringIO()
    writer = StdoutWriter("json", stream)
    records = [record(), record(target="t.me", probe="dns", reason="dns.nxdomain")]
    for r in records:
        writer.write(r)
    assert stream.getvalue() == ""
    text = writer.json_text()
    assert text.endswith("\n") and text.isascii()
    assert json.loads(text) == records


def test_stdout_table_keeps_records():
    stream = io.StringIO()
    writer = StdoutWriter("table", stream)
    kept = record()
    writer.write(kept)
    assert writer.kept == [kept]
    assert stream.getvalue() == ""


# --- render ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, shown", [
    ("\x1b[2J", "\\x1b[2J"),
    ("a\rb", "a\\x0db"),
    ("a\nb", "a\\x0ab"),
    ("a\tb", "a\\x09b"),
    ("\x00", "\\x00"),
    ("\x7f", "\\x7f"),
    ("\x9b31m", "\\x9b31m"),
    ("abc\u202edef", "abc\\u202edef"),
    ("\u2028", "\\u2028"),
    ("a\u2067b\u2069", "a\\u2067b\\u2069"),  # bidi isolates, as the overrides
    ("\u061c", "\\u061c"),
    ("[bold red]x", "[bold red]x"),
    ("тест.рф", "тест.рф"),
    (None, ""),
    (443, "443"),
])
def test_printable(text, shown):
    assert printable(text) == shown


def test_printable_caps_long_text():
    assert printable("x" * 200, limit=10) == "x" * 10 + "…"
    assert printable("x" * 10, limit=10) == "x" * 10


SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's own styling (colors, bold)


def render(records, **report) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=250, color_system="truecolor")
    if report:
        print_report(console, records, **report)
    else:
        console.print(results_table(records))
    return out.getvalue()


HOSTILE_RECORDS = [
    record(target="[bold red]x\x1b[2J", address="[link=http://evil]y[/link]"),
    record(probe="dns", target="t.me", address="127.0.0.1:53", reason="dns.outside_networks",
           evidence={"queries": [{"qtype": "A", "addresses": ["\x1b]0;pwned\x07", "[bold red]z"]}]}),
]


def test_results_table_shows_markup_literally_and_no_remote_escapes():
    output = render(HOSTILE_RECORDS)
    assert "[bold red]x" in output
    assert "[bold red]z" in output
    assert "[link=http://evil]y[/link]" in output
    assert "\\x1b[2J" in output
    assert "\x1b[2J" not in output
    assert "\x1b]" not in output and "\x07" not in output
    assert "\x1b" not in SGR.sub("", output)


def test_print_report_notes_are_escaped_too():
    counts = Counter({("tcp", "reset"): 1, ("dns", "blocked"): 1})
    output = render(HOSTILE_RECORDS, counts=counts, vantage="online", notes=["note \x1b[2J[bold]n"], details=True)
    assert "note \\x1b[2J[bold]n" in output
    assert "\x1b" not in SGR.sub("", output)
    assert "tcp: 1 reset" in SGR.sub("", output)


def test_report_says_when_no_controls_were_probed():
    output = SGR.sub("", render([], counts=Counter({("tcp", "inconclusive"): 2}), vantage="unknown"))
    assert "No control endpoint told whether this machine is online" in output
    assert "tcp: 2 inconclusive" in output


def test_report_ends_with_the_escaped_verdict_block_and_leaves_summary_out_of_the_table():
    summary = record(probe="summary", target="loopback", address=None, reason="summary.blocking_observed",
                     evidence={"findings": ["IP: 1/2 failed \x1b[2J[red]", "No blocking observed: never shown"]})
    output = SGR.sub("", render([*HOSTILE_RECORDS, summary], counts=Counter({("tcp", "reset"): 1,
                                                                             ("summary", "blocked"): 1}),
                                vantage="online"))
    tail = output[output.index("Verdict: Blocking observed"):]
    assert tail.splitlines()[1].strip() == "• IP: 1/2 failed \\x1b[2J[red]"
    assert "never shown" not in output
    assert "summary" not in output[:output.index("Verdict:")]
    assert "\x1b" not in output


def test_the_grouped_table_has_one_row_per_kind_and_group_and_names_who_differs():
    records = [record(target=f"10.0.0.{i}:443", address=f"10.0.0.{i}:443", evidence={"range": "10.0.0.0/28"},
                      verdict="blocked" if i == 3 else "reachable", reason="tcp.timeout" if i == 3 else None)
               for i in range(8)]
    records += [record(target=f"10.1.0.{i}:443", address=f"10.1.0.{i}:443", evidence={"dc": 2}, verdict="reachable",
                      reason=None) for i in range(3)]
    output = SGR.sub("", render(records, counts=Counter(), vantage="online"))
    rows = [line for line in output.splitlines() if "tcp" in line]
    assert len(rows) == 2
    assert "10.0.0.0/28" in rows[0] and "1 blocked 7" in rows[0] and "differ: 10.0.0.3:443 blocked" in rows[0]
    assert "DC2" in rows[1] and "3 reachable" in rows[1]


def test_the_grouped_table_fits_80_columns_without_breaking_a_word():
    records = [record(probe="mtproto_obfuscated2", target=f"[2001:67c:4e8:f002::{i}]:443",
                      address=f"[2001:67c:4e8:f002::{i}]:443", evidence={"dc": i}, verdict="blocked",
                      reason="mtproto.bad_response") for i in range(1, 6)]
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None)
    print_report(console, records, Counter(), "online")
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("mtproto.bad_response" in line for line in lines)  # a reason is never cut inside


def test_the_built_in_set_fits_one_80_column_screen_with_names_whole():
    """One row per (kind, group) for the built-in Telegram set: about 40 rows, none wider than
    80 columns, and a long host name in the differing members shown whole."""
    import ipaddress

    from netprobe.addresses import Endpoint
    from netprobe.plan import Plan
    from netprobe.probes.kinds import NAMES as PROBE_KINDS
    from netprobe.targets import load_builtin
    plan = Plan(load_builtin(), PROBE_KINDS, (Endpoint(ipaddress.ip_address("10.0.0.1"), 53),), 1)
    records = [record(probe=t.kind, target=t.target, address=None, verdict="reachable", reason=None,
                      evidence=dict(t.context)) for t in [*plan.controls(), *plan.tasks()]]
    for r in records:
        if r["target"] in ("kws3-1.web.telegram.org", "kws4-1.web.telegram.org") and r["probe"] == "https":
            r.update(verdict="reset", reason="tls.reset")
    out = io.StringIO()
    print_report(Console(file=out, width=80, color_system=None), records, Counter(), "online")
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert len(lines) <= 50
    assert sum("kws3-1.web.telegram.org reset" in line or "kws3-1.web.telegram.org" in line for line in lines) == 1
