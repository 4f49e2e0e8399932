"""The command line: option checking, the exit-code/stderr contract, and real runs
against 127.0.0.x only.

Every probe these tests cause goes to a loopback socket opened (or deliberately
closed) by the test itself; no test runs `netprobe run` without --targets.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from netprobe import __version__
from netprobe.commands import cli, main
from netprobe.records import RECORD_FIELDS

# --- loopback fixtures ---------------------------------------------------------------


@pytest.fixture
def listener():
    """A listening TCP socket on 127.0.0.1; the kernel completes handshakes without accept()."""
    sockets = []

    def make(host: str = "127.0.0.1") -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((host, 0))
        sock.listen(64)
        sockets.append(sock)
        return sock.getsockname()[1]

    yield make
    for sock in sockets:
        sock.close()


def closed_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def local(tmp_path, listener):
    """A target file that only points at loopback: one control (open, on 127.0.0.2),
    one open and one closed endpoint on 127.0.0.1, no domains."""
    control, open_port, shut = listener("127.0.0.2"), listener(), closed_port()
    path = tmp_path / "local.toml"
    path.write_text(textwrap.dedent(f"""\
        name = "loopback"
        networks = ["127.0.0.1/32"]
        controls = ["127.0.0.2:{control}"]
        endpoints = ["127.0.0.1:{open_port}", {{ address = "127.0.0.1:{shut}", dc = 2 }}]
    """))
    return {"path": str(path), "control": f"127.0.0.2:{control}", "open": f"127.0.0.1:{open_port}",
            "closed": f"127.0.0.1:{shut}"}


@pytest.fixture
def local_dns(tmp_path, local):
    """The same, plus a domain; runs using it must pass --resolver 127.0.0.1:<nothing>."""
    path = tmp_path / "local-dns.toml"
    path.write_text(Path(local["path"]).read_text() + 'domains = ["example.test"]\n')
    return {**local, "path": str(path), "resolver": f"127.0.0.1:{closed_port(socket.SOCK_DGRAM)}"}


def netprobe(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NETPROBE")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "netprobe", *args], capture_output=True, text=True,
                          timeout=60, env=environment, cwd=cwd, check=False)


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("netprobe: error: ")
    assert proc.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def records_of(stdout: str) -> list[dict]:
    records = [json.loads(line) for line in stdout.splitlines()]
    for record in records:
        assert tuple(record) == RECORD_FIELDS
        assert record["schema"] == "netprobe/1"
    return records


# --- version and help -------------------------------------------------------------------

def test_version():
    proc = netprobe("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"netprobe, version {__version__}"
    assert proc.stderr == ""


@pytest.mark.parametrize("args", [["--help"], ["-h"]])
def test_help(args):
    proc = netprobe(*args)
    assert proc.returncode == 0
    for command in ("run", "dns", "tcp", "targets"):
        assert command in proc.stdout


def test_command_help_lists_the_options():
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert result.exit_code == 0
    for option in ("--targets", "--resolver", "--timeout", "--concurrency", "--probes", "--format", "--output",
                   "--label", "--seed", "--ca-bundle", "--quiet"):
        assert option in result.output


# --- user errors: exit 2, exactly one line on stderr, no traceback ----------------------

@pytest.mark.parametrize("args, fragment", [
    (["run", "--bogus"], "--bogus"),
    (["bogus-command"], "bogus-command"),
    (["run", "--timeout", "0"], "--timeout"),
    (["run", "--timeout", "-1"], "--timeout"),
    (["run", "--timeout", "abc"], "--timeout"),
    (["run", "--deadline", "0"], "--deadline"),
    (["run", "--concurrency", "0"], "--concurrency"),
    (["run", "--concurrency", "-5"], "--concurrency"),
    (["run", "--probes", "bogus"], "bogus"),
    (["run", "--probes", ""], "--probes"),
    (["run", "--format", "xml"], "xml"),
    (["run", "--ca-bundle", "/nonexistent/ca.pem"], "/nonexistent/ca.pem"),
    (["run", "--output", "/nonexistent-dir/x.jsonl"], "/nonexistent-dir/x.jsonl"),
    (["targets", "--probes", "tcp,http9"], "http9"),
    (["tcp", "1.2.3.4"], "1.2.3.4"),
    (["tcp", "2001:db8::1:443"], "2001:db8::1:443"),
    (["tcp", "127.0.0.1:0"], "'0'"),
    (["tcp"], "IP:PORT"),
    (["dns", "not a name"], "not a name"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_user_errors(local, args, fragment):
    # --targets is always the loopback file: even if validation were skipped, nothing
    # but 127.0.0.x would be probed.
    proc = netprobe(*args, "--targets", local["path"]) if args != ["bogus-command"] else netprobe(*args)
    assert_user_error(proc, fragment)


def test_bad_resolver_is_a_user_error(local_dns):
    assert_user_error(netprobe("run", "--targets", local_dns["path"], "--resolver", "notanip"), "notanip")


def test_bad_resolver_is_a_user_error_even_without_domains(local):
    assert_user_error(netprobe("targets", "--targets", local["path"], "--resolver", "notanip"), "notanip")


BAD_TARGET_FILES = {
    "malformed-toml": (b'name = "x"\nendpoints = ["127.0.0.1:1"]\nname = "y"\n', "line 3"),
    "unknown-key": (b'colour = "red"\nendpoints = ["127.0.0.1:1"]\n', "'colour'"),
    "wrong-type": (b'networks = "127.0.0.0/8"\nendpoints = ["127.0.0.1:1"]\n', "networks"),
    "bad-cidr": (b'networks = ["127.0.0.1/8"]\nendpoints = ["127.0.0.1:1"]\n', "127.0.0.1/8"),
    "bad-port": (b'endpoints = ["127.0.0.1:65536"]\n', "65536"),
    "ipv6-without-brackets": (b'endpoints = ["::1:443"]\n', "::1:443"),
    "range-too-large": (b'ranges = [{ cidr = "127.0.0.0/8", ports = [1] }]\n', "127.0.0.0/8"),
    "duplicate": (b'endpoints = ["127.0.0.1:1", "127.0.0.1:1"]\n', "duplicate"),
    "control-inside-networks": (
        b'networks = ["127.0.0.0/8"]\ncontrols = ["127.0.0.2:1"]\nendpoints = ["127.0.0.1:1"]\n', "controls[0]"),
    "bad-domain": (b'domains = ["a..b"]\n', "a..b"),
    "empty": (b'name = "nothing"\n', "nothing to probe"),
    "not-utf8": (b'name = "caf\xe9"\nendpoints = ["127.0.0.1:1"]\n', "UTF-8"),
}


@pytest.mark.parametrize("family", sorted(BAD_TARGET_FILES))
def test_bad_target_file(tmp_path, family):
    content, fragment = BAD_TARGET_FILES[family]
    path = tmp_path / f"{family}.toml"
    path.write_bytes(content)
    assert_user_error(netprobe("run", "--targets", str(path)), str(path), fragment)


@pytest.mark.parametrize("make", [lambda d: d / "missing.toml", lambda d: d / "no-dir" / "t.toml"],
                         ids=["missing-file", "missing-dir"])
def test_missing_target_file(tmp_path, make):
    path = make(tmp_path)
    assert_user_error(netprobe("run", "--targets", str(path)), str(path), "cannot read")


@pytest.mark.parametrize("command", ["run", "targets"])
def test_env_var_netprobe_timeout(local, command):
    proc = netprobe(command, "--targets", local["path"], "--probes", "tcp", "-q", env={"NETPROBE_TIMEOUT": "0"})
    assert_user_error(proc, "--timeout")


def test_output_device_full_is_a_user_error(local):
    assert_user_error(netprobe("run", "--targets", local["path"], "--output", "/dev/full", "-q"), "/dev/full")


def test_output_write_failure_mid_run_is_a_user_error(local):
    # /proc/version opens for writing as root and fails on write(); as a user, open fails.
    proc = netprobe("run", "--targets", local["path"], "--output", "/proc/version", "-q")
    assert_user_error(proc, "/proc/version")


def test_main_in_process_user_error(capsys, local):
    with pytest.raises(SystemExit) as info:
        main(["run", "--targets", local["path"], "--concurrency", "0"])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("netprobe: error: ") and captured.err.count("\n") == 1


# --- targets: the plan, without probing --------------------------------------------------

def test_targets_prints_the_plan_as_jsonl(local):
    result = CliRunner().invoke(cli, ["targets", "--targets", local["path"], "--format", "jsonl", "--probes", "tcp"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert rows == [
        {"probe": "control", "target": local["control"], "address": local["control"], "stage": "tcp"},
        {"probe": "tcp", "target": local["open"], "address": local["open"]},
        {"probe": "tcp", "target": local["closed"], "address": local["closed"], "dc": 2},
    ]


def test_targets_default_plan_has_every_kind_controls_first(local):
    from netprobe.probes.kinds import NAMES as PROBE_KINDS
    result = CliRunner().invoke(cli, ["targets", "--targets", local["path"], "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    kinds = [json.loads(line)["probe"] for line in result.output.splitlines()]
    assert kinds[0] == "control" and "control" not in kinds[1:]
    # No domains in this file: no DNS and no web probes.
    endpoint_kinds = [k for k in PROBE_KINDS if not k.startswith("dns") and k not in ("https", "http")]
    assert kinds[1:] == sorted(kinds[1:], key=PROBE_KINDS.index)
    assert set(kinds[1:]) == set(endpoint_kinds)
    assert len(kinds) == 1 + 2 * len(endpoint_kinds)


def test_targets_plan_includes_dns_and_sampled_ranges(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('domains = ["example.test"]\nranges = [{ cidr = "127.0.0.0/24", ports = [1], sample = 3 }]\n')
    args = ["targets", "--targets", str(path), "--format", "jsonl", "--resolver", "127.0.0.1:5353", "--seed", "7",
            "--probes", "dns,tcp"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    rows = [json.loads(line) for line in first.output.splitlines()]
    assert rows[0] == {"probe": "dns", "target": "example.test", "address": "127.0.0.1:5353"}
    assert [r["probe"] for r in rows[1:]] == ["tcp"] * 3
    assert all(r["range"] == "127.0.0.0/24" and r["seed"] == 7 for r in rows[1:])
    assert CliRunner().invoke(cli, args).output == first.output


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_targets_other_formats(local, fmt):
    result = CliRunner().invoke(cli, ["targets", "--targets", local["path"], "--format", fmt, "--probes", "tcp"])
    assert result.exit_code == 0, result.output
    if fmt == "json":
        assert [r["probe"] for r in json.loads(result.output)] == ["control", "tcp", "tcp"]
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(result.output)))
        assert rows[0] == ["probe", "target", "address"] and len(rows) == 4
    else:
        assert local["open"] in result.output and "3 probes" in result.output


def test_targets_quiet_prints_nothing(local):
    result = CliRunner().invoke(cli, ["targets", "--targets", local["path"], "-q"])
    assert result.exit_code == 0
    assert result.output == ""


def test_targets_cli_runner_user_error_exit_code(local):
    result = CliRunner().invoke(cli, ["targets", "--targets", local["path"], "--probes", "bogus"])
    assert result.exit_code == 2
    assert "bogus" in result.output + (result.stderr or "")


# --- real runs against loopback ------------------------------------------------------------

def check_summary(record: dict, name: str = "loopback") -> None:
    assert record["probe"] == "summary"
    assert record["target"] == name
    assert isinstance(record["evidence"]["findings"], list)


def test_run_jsonl_against_loopback(local):
    proc = netprobe("run", "--targets", local["path"], "--probes", "tcp", "--format", "jsonl", "--timeout", "0.5",
                    "--label", "ci")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    records = records_of(proc.stdout)
    assert [r["probe"] for r in records] == ["control", "tcp", "tcp", "summary"]
    check_summary(records[-1])
    by_target = {r["target"]: r for r in records}
    assert by_target[local["control"]]["verdict"] == "reachable"
    assert by_target[local["open"]]["verdict"] == "reachable"
    assert by_target[local["open"]]["reason"] is None
    assert by_target[local["closed"]]["reason"] == "tcp.refused"
    assert by_target[local["closed"]]["verdict"] == "reset"
    assert by_target[local["closed"]]["evidence"]["dc"] == 2
    assert {r["label"] for r in records} == {"ci"}
    assert len({r["run_id"] for r in records}) == 1


def test_run_every_kind_against_loopback(local):
    from netprobe.probes.kinds import NAMES as PROBE_KINDS
    proc = netprobe("run", "--targets", local["path"], "--timeout", "0.5")
    assert proc.returncode == 0, proc.stderr
    records = records_of(proc.stdout)
    assert records[0]["probe"] == "control" and records[-1]["probe"] == "summary"
    endpoint_kinds = {k for k in PROBE_KINDS if not k.startswith("dns") and k not in ("https", "http")}
    assert {r["probe"] for r in records[1:-1]} == endpoint_kinds
    assert len(records) == 1 + 2 * len(endpoint_kinds) + 1
    assert all(r["verdict"] in ("reachable", "blocked", "reset", "inconclusive") for r in records)


def test_run_output_file_appends_the_same_records(tmp_path, local):
    archive = tmp_path / "archive.jsonl"
    common = ("run", "--targets", local["path"], "--probes", "tcp", "--timeout", "0.5", "--output", str(archive))
    first = netprobe(*common)
    assert first.returncode == 0, first.stderr
    assert archive.read_text() == first.stdout
    second = netprobe(*common, "-q")
    assert second.returncode == 0, second.stderr
    assert second.stdout == ""
    lines = archive.read_text().splitlines()
    assert len(lines) == 8
    assert lines[:4] == first.stdout.splitlines()
    assert len({r["run_id"] for r in records_of(archive.read_text())}) == 2


def test_run_quiet_prints_nothing(local):
    proc = netprobe("run", "--targets", local["path"], "--probes", "tcp", "--timeout", "0.5", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def test_run_dns_against_a_closed_loopback_resolver(local_dns):
    proc = netprobe("run", "--targets", local_dns["path"], "--resolver", local_dns["resolver"],
                    "--timeout", "0.5", "--probes", "dns")
    assert proc.returncode == 0, proc.stderr
    records = records_of(proc.stdout)
    assert [r["probe"] for r in records] == ["control", "dns", "summary"]
    dns_record = records[1]
    assert dns_record["target"] == "example.test"
    assert dns_record["address"] == local_dns["resolver"]
    # The loopback file names no control_domains (and gets none: it is not on the Internet), so
    # nothing else was asked at that resolver: the failure is not shown to be the name's.
    assert dns_record["reason"] == "dns.no_control"
    assert dns_record["verdict"] == "inconclusive"
    assert dns_record["evidence"]["observed_reason"] in ("dns.port_unreachable", "dns.timeout")
    assert dns_record["evidence"]["observed_verdict"] == "blocked"
    assert "built-in" not in proc.stderr  # no Internet controls for a loopback file


def test_tcp_command_against_loopback(local):
    proc = netprobe("tcp", local["open"], local["closed"], "--targets", local["path"], "--timeout", "0.5")
    assert proc.returncode == 0, proc.stderr
    records = records_of(proc.stdout)
    assert [(r["probe"], r["target"], r["verdict"]) for r in records[:-1]] == [
        ("control", local["control"], "reachable"),
        ("tcp", local["open"], "reachable"),
        ("tcp", local["closed"], "reset"),
    ]
    assert records[-1]["probe"] == "summary"


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_run_other_formats(local, fmt):
    proc = netprobe("run", "--targets", local["path"], "--probes", "tcp", "--timeout", "0.5", "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(proc.stdout)))
        assert rows[0] == list(RECORD_FIELDS)
        assert [row[3] for row in rows[1:]] == ["control", "tcp", "tcp", "summary"]
    elif fmt == "json":
        assert [r["probe"] for r in json.loads(proc.stdout)] == ["control", "tcp", "tcp", "summary"]
    else:
        assert "reachable" in proc.stdout and "tcp.refused" in proc.stdout
        assert "\x1b" not in proc.stdout  # not a terminal: no styling


def test_reasons_lists_every_reason_with_its_verdict_and_meaning():
    from netprobe.classify import REASONS
    result = CliRunner().invoke(cli, ["reasons", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["reason"] for r in rows] == list(REASONS)
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["tls.untrusted_for_all"]["verdict"] == "inconclusive"
    assert by_reason["http.known_blockpage"] == {"reason": "http.known_blockpage", "verdict": "blocked",
                                                 "meaning": REASONS["http.known_blockpage"][1]}
    table = CliRunner().invoke(cli, ["reasons", "--format", "table"])
    assert table.exit_code == 0 and "dns.resolver_failing" in table.output


def test_reasons_writes_every_record_format_with_the_same_rows():
    """`reasons` takes the one list of record formats; each machine format holds the same rows."""
    from netprobe.commands.common import RECORD_FORMATS

    def rows(fmt: str) -> list[dict]:
        result = CliRunner().invoke(cli, ["reasons", "--format", fmt])
        assert result.exit_code == 0, result.output
        if fmt == "json":
            return json.loads(result.output)
        if fmt == "jsonl":
            return [json.loads(line) for line in result.output.splitlines()]
        return list(csv.DictReader(io.StringIO(result.output)))

    machine = [f for f in RECORD_FORMATS if f != "table"]
    assert machine == ["jsonl", "json", "csv"]
    assert rows("jsonl") == rows("json") == rows("csv")


# --- default controls: the plan shows them; nothing here probes beyond loopback -----------------

def plan_rows(*args: str) -> tuple[list[dict], str]:
    proc = netprobe("targets", "--format", "jsonl", *args)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def test_a_file_on_the_internet_without_controls_gets_the_builtin_ones_and_says_so(tmp_path):
    from netprobe.targets import load_builtin
    path = tmp_path / "signal.toml"
    path.write_text('networks = ["203.0.113.0/24", "76.223.0.0/16"]\nendpoints = ["76.223.92.165:443"]\n'
                    'domains = ["signal.org"]\n')
    rows, err = plan_rows("--targets", str(path), "--probes", "tcp,http", "--resolver", "127.0.0.1:53")
    builtin = load_builtin()
    tcp_controls = [r["target"] for r in rows if r.get("stage") == "tcp"]
    http_controls = [r["target"] for r in rows if r.get("stage") == "http"]
    assert tcp_controls == [str(c) for c in builtin.controls]
    assert http_controls == [d.name for d in builtin.control_domains]
    (line,) = err.splitlines()
    assert line.startswith(f"netprobe: {path} names no controls or control_domains: using the built-in set's")
    assert "1.1.1.1:443" in line and "example.com" in line and line.endswith("--no-default-controls to use none")
    # Opting out: no control of the TCP or HTTP stage, and nothing said.
    rows, err = plan_rows("--targets", str(path), "--probes", "tcp,http", "--resolver", "127.0.0.1:53",
                          "--no-default-controls")
    assert not [r for r in rows if r.get("stage") in ("tcp", "http")] and err == ""


def test_a_file_that_writes_its_controls_keeps_them(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('endpoints = ["76.223.92.165:443"]\ncontrols = ["9.9.9.9:443"]\ncontrol_domains = []\n')
    rows, err = plan_rows("--targets", str(path), "--probes", "tcp")
    assert [r["target"] for r in rows if r.get("stage") == "tcp"] == ["9.9.9.9:443"] and err == ""


def test_a_loopback_file_gets_no_internet_controls(local):
    rows, err = plan_rows("--targets", local["path"], "--probes", "tcp")
    assert [r["target"] for r in rows if r["probe"] == "control"] == [local["control"]] and err == ""


def test_tcp_on_loopback_without_targets_probes_no_control_and_judges_nothing(local):
    proc = netprobe("tcp", local["closed"], "--timeout", "0.5", "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    records = records_of(proc.stdout)
    assert [r["probe"] for r in records] == ["tcp", "summary"] and "built-in" not in proc.stderr
    # A refused loopback port with nothing to weigh it against: not a block anyone could sign.
    assert (records[0]["verdict"], records[0]["reason"]) == ("inconclusive", "tcp.no_control")
    assert records[0]["evidence"]["observed_reason"] == "tcp.refused"


def test_dns_without_targets_asks_the_builtin_control_names_at_the_same_resolver(capsys):
    from netprobe.commands import main
    from netprobe.targets import load_builtin
    from tests.test_bad_input import loopback_only
    resolver = f"127.0.0.1:{closed_port(socket.SOCK_DGRAM)}"
    violations: list = []
    with loopback_only(violations), pytest.raises(SystemExit) as info:
        main(["dns", "signal.org", "--resolver", resolver, "--timeout", "0.3", "--format", "jsonl"])
    assert info.value.code == 0 and violations == []  # only the loopback resolver was asked
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    controls = [(r["target"], r["evidence"]["stage"]) for r in records if r["probe"] == "control"]
    assert controls == [(d.name, "dns") for d in load_builtin().control_domains]
    assert all(r["address"] == resolver for r in records if r["probe"] in ("control", "dns"))
    assert "the command line names no control_domains: using the built-in set's" in err
    (record,) = [r for r in records if r["probe"] == "dns"]
    # The resolver failed the control names too and nothing else answered: this vantage point
    # looks offline, which says nothing about signal.org.
    assert (record["verdict"], record["reason"]) == ("inconclusive", "vantage.offline")


# --- the one translation of errors, at the command edge ---------------------------------

def _user_error_classes():
    from netprobe.addresses import AddressError
    from netprobe.bounded_input import InputError
    from netprobe.interop.atlas_api import AtlasError
    from netprobe.interop.atlas_state import StateError
    from netprobe.output import OutputError
    from netprobe.plan import PlanError
    from netprobe.report.command import ReportError
    from netprobe.resolvers import ResolverError
    from netprobe.targets import TargetFileError
    from netprobe.timeutil import HistoryError
    return (AddressError, AtlasError, HistoryError, InputError, OutputError, PlanError, ReportError, ResolverError,
            StateError, TargetFileError)


def test_every_error_told_to_the_user_has_the_one_base():
    from netprobe.errors import NetprobeError
    assert all(issubclass(error, NetprobeError) for error in _user_error_classes())


@pytest.mark.parametrize("make, code", [
    (lambda: __import__("netprobe.targets", fromlist=["x"]).TargetFileError("bad \x1b[31mfile\nline"), 2),
    (lambda: __import__("netprobe.output", fromlist=["x"]).OutputError("cannot write to output file x"), 2),
    (lambda: __import__("netprobe.interop.atlas_api", fromlist=["x"]).AtlasError("the API failed", fixable=False), 1),
])
def test_the_command_edge_turns_any_netprobe_error_into_one_line_and_its_exit_code(monkeypatch, capsys, make, code):
    import click

    error = make()

    def boom():
        raise error

    monkeypatch.setitem(cli.commands, "boom", click.Command("boom", callback=boom))
    with pytest.raises(SystemExit) as exit_info:
        main(["boom"])
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("netprobe: error: ") and "\x1b" not in err
    assert CliRunner().invoke(cli, ["boom"]).exit_code == code
