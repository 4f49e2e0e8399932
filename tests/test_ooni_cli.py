"""`netprobe import ooni`, `netprobe export ooni` and `run --format ooni` as a user meets
them: real OONI files in, history out through `netprobe report`, netprobe runs on
loopback out as OONI measurements and back, and input a user can get wrong (exit 2,
one line) or a stranger can make hostile (skipped and counted, memory bounded).

Every probe a test causes goes to a loopback socket the test opened or closed itself.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_ooni import DATA, FILES, check_df000, load, run_records

ENV = {k: v for k, v in os.environ.items() if not k.startswith("NETPROBE")}


def netprobe(*args: str, stdin: bytes | None = None, timeout: float = 120,
             env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netprobe", *args], capture_output=True, input=stdin,
                          timeout=timeout, env={**ENV, **(env or {})}, check=False)


def text(proc: subprocess.CompletedProcess) -> tuple[str, str]:
    return proc.stdout.decode(), proc.stderr.decode()


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    out, err = text(proc)
    assert proc.returncode == 2, (out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("netprobe: error: ")
    assert out == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def jsonl(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def compact(name: str) -> bytes:
    return json.dumps(json.loads((DATA / name).read_text()), separators=(",", ":")).encode()


# --- import --------------------------------------------------------------------------------

def test_import_every_real_file_and_say_what_was_skipped():
    from netprobe.interop.ooni import Skip, records_from_measurement

    expected = 0
    for name in FILES:
        try:
            expected += len(records_from_measurement(*load(name)))
        except Skip:
            pass
    proc = netprobe("import", "ooni", *(str(DATA / name) for name in FILES), "--format", "jsonl")
    out, err = text(proc)
    assert proc.returncode == 0, err
    assert len(jsonl(out)) == expected
    assert err == (f"netprobe: imported {expected} records from {len(FILES) - 1} measurements; "
                   "skipped 1: 1 unsupported test (ndt)\n")


def test_bulk_json_lines_gzip_with_junk_is_imported_and_the_junk_counted(tmp_path):
    """OONI's bulk data: gzip JSON lines.  A broken line, an old format, another test and
    an API answer among them: the measurements are read, the rest counted, nothing fatal."""
    old = json.loads(compact("telegram-US-20221110.json"))
    old["data_format_version"] = "0.1.0"
    lines = [compact("telegram-RU-20221109.json"), b'{"test_name": "telegram", "test_keys": {', compact(
        "api-ndt-AE-20191109-unsupported.json"), json.dumps(old).encode(),
             compact("api-web_connectivity-AE-20191118-thepiratebay-reset.json"), b"",
             compact("web_connectivity-IR-20220815-facebook-nontelegram.json")]
    bulk = tmp_path / "2022-11-09.jsonl.gz"
    bulk.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    proc = netprobe("import", "ooni", str(bulk), "--format", "jsonl")
    out, err = text(proc)
    assert proc.returncode == 0, err
    labels = {r["label"] for r in jsonl(out)}
    assert labels == {"ooni:RU:AS8402", "ooni:AE:AS15802", "ooni:IR:AS197207"}
    assert err.endswith("from 3 measurements; skipped 3: 1 broken line, 1 old data format 0.1.0, "
                        "1 unsupported test (ndt)\n")


def test_stdin_is_read_with_a_dash():
    proc = netprobe("import", "ooni", "-", "--format", "jsonl",
                    stdin=gzip.compress((DATA / "telegram-DE-20170407.json").read_bytes()))
    out, err = text(proc)
    assert proc.returncode == 0, err
    assert {r["run_id"] for r in jsonl(out)} and "from 1 measurement\n" in err


def test_imported_history_and_ones_own_meet_in_report(tmp_path):
    """The point of import: OONI's history and the user's own runs in one archive, one
    report, one vocabulary, kept apart by label."""
    archive = tmp_path / "results.jsonl"
    archive.write_text("".join(json.dumps(r) + "\n" for r in run_records(label="home")))
    names = ["telegram-US-20221110.json", "api-telegram-RU-20221109.json", "telegram-RU-20221109.json"]
    proc = netprobe("import", "ooni", *(str(DATA / n) for n in names), "--output", str(archive), "-q")
    out, err = text(proc)
    assert proc.returncode == 0 and out == "", err
    proc = netprobe("report", str(archive), "--format", "jsonl", "--probe", "https")
    out, err = text(proc)
    assert proc.returncode == 0, err
    states = {(s["label"], s["target"]): s for s in jsonl(out)}
    assert set(states) == {("home", "web.telegram.org"), ("ooni:US:AS7018", "web.telegram.org"),
                           ("ooni:RU:AS8402", "web.telegram.org")}
    russia = states[("ooni:RU:AS8402", "web.telegram.org")]
    # One GET got a 200 from web.telegram.org, the other timed out, in the same measurement:
    # the page came, so it is no block (OONI's old web rule called it blocked).
    assert (russia["verdict"], russia["reason"], russia["since"]) == ("reachable", None,
                                                                      "2022-11-09T22:58:03.068Z")
    # the same measurement, bare and wrapped by OONI's API, is one run, counted once
    assert sum(russia["counts"].values()) == 1
    assert states[("ooni:US:AS7018", "web.telegram.org")]["verdict"] == "reachable"


def test_table_output_names_the_verdicts_and_is_inert():
    proc = netprobe("import", "ooni", str(DATA / "web_connectivity-IR-20220815-facebook-nontelegram.json"),
                    "--format", "table", env={"COLUMNS": "200"})
    out, err = text(proc)
    assert proc.returncode == 0, err
    assert "dns.bogon" in out and "www.facebook.com" in out and "\x1b" not in out


def test_json_and_csv_output():
    proc = netprobe("import", "ooni", str(DATA / "telegram-DE-20170407.json"), "--format", "json")
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 16  # 15 records and the summary
    assert json.loads(proc.stdout)[-1]["probe"] == "summary"
    proc = netprobe("import", "ooni", str(DATA / "telegram-DE-20170407.json"), "--format", "csv")
    assert proc.returncode == 0 and proc.stdout.decode().splitlines()[0].startswith("schema,run_id,measured_at")


def test_an_empty_file_imports_nothing(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    proc = netprobe("import", "ooni", str(empty))
    assert proc.returncode == 0 and proc.stderr.decode() == "netprobe: imported 0 records from 0 measurements\n"


def user_error_cases(tmp_path: Path) -> dict:
    good = str(DATA / "telegram-DE-20170407.json")
    toml = tmp_path / "targets.toml"
    toml.write_text('name = "x"\nendpoints = ["127.0.0.1:1"]\n')
    cut = tmp_path / "cut.json"
    cut.write_bytes((DATA / "telegram-DE-20170407.json").read_bytes()[:3000])
    damaged = tmp_path / "damaged.json.gz"
    damaged.write_bytes(gzip.compress((DATA / "telegram-DE-20170407.json").read_bytes())[:200])
    return {
        "missing file": ([str(tmp_path / "nope.json")], ["cannot read", "nope.json"]),
        "a directory": ([str(tmp_path)], ["cannot read"]),
        "not JSON": ([str(toml)], ["targets.toml", "not JSON"]),
        "a download cut short": ([str(cut)], ["cut.json", "not JSON or JSON lines", "line"]),
        "damaged gzip": ([str(damaged)], ["damaged.json.gz", "compressed data"]),
        "a good file, then a missing one": ([good, str(tmp_path / "later.json")], ["later.json"]),
        "unwritable output": ([good, "--output", str(tmp_path / "no-dir" / "x.jsonl")], ["x.jsonl"]),
    }


@pytest.mark.parametrize("case", ["missing file", "a directory", "not JSON", "a download cut short", "damaged gzip",
                                  "a good file, then a missing one", "unwritable output"])
def test_what_a_user_can_fix_is_one_line_and_exit_2(tmp_path, case):
    args, fragments = user_error_cases(tmp_path)[case]
    assert_user_error(netprobe("import", "ooni", *args, "--format", "jsonl"), *fragments)


def test_hostile_names_in_the_tally_are_shown_escaped(tmp_path):
    evil = tmp_path / "evil.jsonl"
    evil.write_text(json.dumps({"test_name": "\x1b]0;pwned\x07\x1b[2J", "test_keys": {}}) + "\n")
    proc = netprobe("import", "ooni", str(evil))
    err = proc.stderr.decode()
    assert proc.returncode == 0 and "\x1b" not in err and "\x07" not in err
    assert "unsupported test (\\x1b]0;pwned\\x07\\x1b[2J)" in err


def peak_rss_mb(*args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    """Run netprobe and read its own peak RSS (VmHWM) as it exits."""
    code = ("import atexit, sys\n"
            "def peak():\n"
            "    for line in open('/proc/self/status'):\n"
            "        if line.startswith('VmHWM:'): sys.stderr.write('PEAK ' + line.split()[1] + '\\n')\n"
            "atexit.register(peak)\n"
            "from netprobe.commands import main\n"
            "main(sys.argv[1:])\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=timeout, env=ENV,
                          check=False)
    peak = [int(line.split()[1]) for line in proc.stderr.decode().splitlines() if line.startswith("PEAK ")]
    return proc, peak[0] / 1024 if peak else 0.0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read the peak RSS")
def test_a_gzip_bomb_and_memory_hungry_lines_are_skipped_in_bounded_memory(tmp_path):
    """200 MB of one line, a line of a million tiny objects, nesting 100,000 deep, each
    gzip-compressed to almost nothing; then one real measurement.  The measurement is
    imported, the rest counted, and memory stays far below what any of them would cost."""
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out:
        out.write(b'{"test_name": "telegram", "x": "')
        chunk = b"A" * (1 << 20)
        for _ in range(200):
            out.write(chunk)
        out.write(b'"}\n')
        out.write(b"[" + b"{}," * 1_000_000 + b"{}]\n")
        out.write(b"[" * 100_000 + b"]" * 100_000 + b"\n")
        out.write(compact("telegram-RU-20221109.json") + b"\n")
    assert bomb.stat().st_size < 1_000_000
    proc, peak = peak_rss_mb("import", "ooni", str(bomb), "--format", "jsonl")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "from 1 measurement;" in err and "1 line too long" in err and "2 broken lines" in err
    assert peak < 120, f"peak RSS {peak:.0f} MB"


# --- run --format ooni, export, and back ---------------------------------------------------

@pytest.fixture
def loopback(tmp_path):
    """A target file on loopback: a control (listening, on 127.0.0.2), a listening data
    center and a closed one."""
    sockets = []

    def listen(host: str) -> int:
        sock = socket.socket()
        sock.bind((host, 0))
        sock.listen(64)
        sockets.append(sock)
        return sock.getsockname()[1]

    def closed() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def target_file(name: str, endpoints: list[str]) -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(f"""\
            name = "loopback"
            networks = ["127.0.0.1/32"]
            controls = ["127.0.0.2:{control}"]
            endpoints = [{", ".join(endpoints)}]
        """))
        return str(path)

    control = listen("127.0.0.2")
    mixed = target_file("mixed.toml", [f'{{ address = "127.0.0.1:{listen("127.0.0.1")}", dc = 2 }}',
                                       f'{{ address = "127.0.0.1:{closed()}", dc = 4 }}'])
    all_closed = target_file("closed.toml", [f'{{ address = "127.0.0.1:{closed()}", dc = 1 }}',
                                             f'{{ address = "127.0.0.1:{closed()}", dc = 2 }}'])
    yield {"mixed": mixed, "closed": all_closed}
    for sock in sockets:
        sock.close()


def test_run_format_ooni_round_trips_through_import(tmp_path, loopback):
    """netprobe run -> --format ooni -> import ooni: every record comes back as measured."""
    archive = tmp_path / "archive.jsonl"
    proc = netprobe("run", "--targets", loopback["mixed"], "--timeout", "0.5", "--format", "ooni",
                    "--output", str(archive), "--probe-cc", "it", "--probe-asn", "30722", "--label", "lab")
    out, err = text(proc)
    assert proc.returncode == 0, err
    [line] = out.splitlines()
    measurement = json.loads(line)
    check_df000(measurement)
    assert (measurement["probe_cc"], measurement["probe_asn"]) == ("IT", "AS30722")
    assert measurement["test_keys"]["telegram_tcp_blocking"] is False  # one DC listens
    assert [e["status"]["failure"] for e in measurement["test_keys"]["tcp_connect"]] == [None, "connection_refused"]
    measured = [json.loads(l) for l in archive.read_text().splitlines()]
    assert {r["probe"] for r in measured} >= {"control", "tcp", "mtproto", "summary"}

    source = tmp_path / "run.ooni.jsonl"
    source.write_text(out)
    proc = netprobe("import", "ooni", str(source), "--format", "jsonl")
    back, err = text(proc)
    assert proc.returncode == 0, err
    assert jsonl(back) == sorted(measured, key=lambda r: r["measured_at"])


def test_when_every_data_center_refuses_the_telegram_shape_alone_is_inconclusive(tmp_path, loopback):
    """netprobe's own measurement read the way any OONI telegram measurement is (netprobe's
    records and controls removed): every data center refused, OONI's flag says TCP blocking,
    but nothing in the telegram test went through the same path to anything but Telegram.
    A careful reader signs no block: each refusal is inconclusive, tcp.no_control, the
    refusal kept as what was observed."""
    proc = netprobe("run", "--targets", loopback["closed"], "--timeout", "0.5", "--format", "ooni", "--probes",
                    "tcp,mtproto")
    out, err = text(proc)
    assert proc.returncode == 0, err
    measurement = json.loads(out)
    assert measurement["test_keys"]["telegram_tcp_blocking"] is True
    assert measurement["test_keys"]["telegram_http_blocking"] is True  # no MTProto answer either
    del measurement["test_keys"]["netprobe"]
    measurement["software_name"] = "another-tool"
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(measurement, indent=2))
    proc = netprobe("import", "ooni", str(plain), "--format", "jsonl")
    out, err = text(proc)
    assert proc.returncode == 0, err
    tcp = [r for r in jsonl(out) if r["probe"] == "tcp"]
    assert len(tcp) == 2 and {(r["reason"], r["verdict"]) for r in tcp} == {("tcp.no_control", "inconclusive")}
    assert {(r["evidence"]["observed_reason"], r["evidence"]["observed_verdict"]) for r in tcp} == {
        ("tcp.refused", "reset")}
    assert sorted(r["evidence"]["dc"] for r in tcp) == [1, 2]
    [summary] = [r for r in jsonl(out) if r["probe"] == "summary"]
    assert summary["reason"] != "summary.blocking_observed"
    assert summary["evidence"]["findings"][1].startswith("No control: OONI's telegram test")


def test_export_groups_an_archive_by_run(tmp_path, loopback):
    rotated, current = tmp_path / "results.jsonl.1.gz", tmp_path / "results.jsonl"
    for path in (current, current):
        assert netprobe("run", "--targets", loopback["mixed"], "--timeout", "0.5", "--probes", "tcp", "-q",
                        "--output", str(path)).returncode == 0
    first_two = current.read_bytes()
    rotated.write_bytes(gzip.compress(first_two))
    current.write_bytes(b'{"schema": "netprobe/1", "run_id"\n')  # a writer killed mid-line
    assert netprobe("run", "--targets", loopback["mixed"], "--timeout", "0.5", "--probes", "tcp", "-q",
                    "--output", str(current)).returncode == 0
    proc = netprobe("export", "ooni", str(rotated), str(current), "--probe-cc", "VN")
    out, err = text(proc)
    assert proc.returncode == 0, err
    measurements = jsonl(out)
    assert len(measurements) == 3
    runs = [json.loads(l)["run_id"] for l in first_two.decode().splitlines()]
    for measurement in measurements:
        check_df000(measurement)
        assert measurement["probe_cc"] == "VN" and measurement["probe_asn"] == "AS0"
        assert len({r["run_id"] for r in measurement["test_keys"]["netprobe"]["records"]}) == 1
        assert [r["probe"] for r in measurement["test_keys"]["netprobe"]["records"]][-1] == "summary"
    assert [m["annotations"]["netprobe_run_id"] for m in measurements[:2]] == list(dict.fromkeys(runs))
    assert err == "netprobe: exported 3 runs (12 records); skipped 1: 1 broken line\n"


@pytest.mark.parametrize("args, fragment", [
    (["export", "ooni", "FILE", "--probe-cc", "Italy"], "--probe-cc"),
    (["export", "ooni", "FILE", "--probe-asn", "ASX"], "--probe-asn"),
    (["export", "ooni", "/nonexistent/results.jsonl"], "cannot read"),
    (["targets", "--format", "ooni"], "--format ooni"),
    (["run", "--probe-cc", "123"], "--probe-cc"),
])
def test_export_and_format_errors(tmp_path, args, fragment):
    archive = tmp_path / "a.jsonl"
    archive.write_text("".join(json.dumps(r) + "\n" for r in run_records()))
    targets = tmp_path / "t.toml"
    targets.write_text('name = "t"\nendpoints = ["127.0.0.1:1"]\n')
    args = [str(archive) if a == "FILE" else a for a in args]
    if args[0] in ("targets", "run"):
        args += ["--targets", str(targets)]
    assert_user_error(netprobe(*args), fragment)


def test_the_tally_stays_one_short_line_whatever_strangers_name_their_tests():
    from collections import Counter

    from netprobe.commands.ooni import count, tally

    skipped = Counter()
    for i in range(1000):
        count(skipped, f"unsupported test t{i:04d}")
    count(skipped, "broken line")
    line = tally(skipped)
    assert line.startswith("; skipped 1001: 1000 unsupported tests (t0000, t0001, t0002, t0003, t0004, …)")
    assert len(skipped) <= 42 and len(line) < 200


def test_a_pipe_is_read_once_and_a_device_is_refused(tmp_path):
    """`netprobe import ooni <(zcat ...)`: the pipe is not drained by the up-front check."""
    measurement = (DATA / "telegram-DE-20170407.json").read_bytes()
    code = ("import os, subprocess, sys\n"
            "r, w = os.pipe()\n"
            "child = subprocess.Popen([sys.executable, '-m', 'netprobe', 'import', 'ooni', f'/dev/fd/{r}',\n"
            "                          '--format', 'jsonl'], pass_fds=[r], stdout=subprocess.PIPE,\n"
            "                         stderr=subprocess.PIPE)\n"
            "os.close(r)\n"
            "os.write(w, sys.stdin.buffer.read())\n"
            "os.close(w)\n"
            "out, err = child.communicate(timeout=60)\n"
            "sys.stdout.buffer.write(out)\n"
            "sys.stderr.buffer.write(err)\n"
            "sys.exit(child.returncode)\n")
    proc = subprocess.run([sys.executable, "-c", code], input=gzip.compress(measurement), capture_output=True,
                          timeout=90, env=ENV, check=False)
    out, err = text(proc)
    assert proc.returncode == 0, err
    assert len(jsonl(out)) == 16 and "from 1 measurement\n" in err
    assert_user_error(netprobe("import", "ooni", "/dev/zero"), "/dev/zero", "device")
