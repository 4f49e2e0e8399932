"""Results are never lost or corrupted: concurrent writers, a killed run, SIGINT and
SIGTERM, a full disk, a read-only file, a rotated file.

Every case runs the real CLI (`python -m netprobe`) against loopback targets the
test starts.  The AppendFile unit tests (lock, fragment handling, write errors)
are in tests/test_output.py; these are the same guarantees end to end.  The full
disk and the read-only file are tmpfs mounts (root; skipped otherwise), unmounted
in a finalizer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from netprobe.output import FLUSH_INTERVAL_S
from tests.support.hostile import (
    REPO_ROOT,
    HostileServers,
    jsonl,
    netprobe_cmd,
    netprobe_env,
    run_netprobe,
    write_targets,
)

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="mounts a tmpfs: needs root")


def closed_ports(n: int) -> list[int]:
    """Loopback ports nothing listens on (bound, then released)."""
    import socket
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def servers():
    hostile = HostileServers()
    yield hostile
    hostile.close()


@pytest.fixture
def quick_targets(tmp_path, servers):
    """60 endpoints, half open and half closed: 60 records in well under a second."""
    opened = [servers.listen("silent", "127.0.0.1") for _ in range(30)]
    endpoints = [f"{h}:{p}" for h, p in opened] + [f"127.0.0.1:{p}" for p in closed_ports(30)]
    return write_targets(tmp_path / "quick.toml", networks=["127.0.0.1/32"], endpoints=endpoints)


@pytest.fixture
def slow_targets(tmp_path, servers):
    """A responsive control and 5 open endpoints (quick records), then 20 servers that accept
    and never speak: their MTProto probes trickle in, one --timeout at a time."""
    control = servers.listen("silent", "127.0.0.2")
    quick = [servers.listen("silent", "127.0.0.1") for _ in range(5)]
    slow = [servers.listen("silent", "127.0.0.1") for _ in range(20)]
    return write_targets(tmp_path / "slow.toml", networks=["127.0.0.1/32"], controls=["%s:%d" % control],
                         endpoints=[f"{h}:{p}" for h, p in quick + slow])


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def start(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(netprobe_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=netprobe_env(), cwd=REPO_ROOT, **kwargs)


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        if proc.poll() is not None:
            pytest.fail(f"netprobe ended (exit {proc.returncode}) before writing {count} lines")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {count} lines in {path} after {timeout} s")


# --- concurrent writers -------------------------------------------------------------------------

def test_eight_concurrent_runs_append_to_one_file_without_loss_or_interleaving(tmp_path, quick_targets):
    archive = tmp_path / "same.jsonl"
    procs = [start("run", "--targets", str(quick_targets), "--probes", "tcp", "--timeout", "1",
                   "--output", str(archive), "--format", "jsonl") for _ in range(8)]
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=60)
            assert proc.returncode == 0, stderr
            outputs.append(stdout)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    raw = archive.read_bytes()
    assert raw.endswith(b"\n")
    records = [json.loads(line) for line in raw.split(b"\n")[:-1]]  # a torn line would not parse
    per_run = Counter(r["run_id"] for r in records)
    assert len(per_run) == 8 and set(per_run.values()) == {61}  # 60 endpoints + the summary
    for stdout in outputs:  # each run's own lines, all present and byte for byte the same
        assert set(stdout.splitlines()) <= set(raw.decode().splitlines())


# --- a run killed mid-way ----------------------------------------------------------------------

def test_sigkill_mid_run_leaves_every_written_line_intact(tmp_path, slow_targets):
    archive = tmp_path / "killed.jsonl"
    proc = start("run", "--targets", str(slow_targets), "--probes", "tcp,mtproto", "--timeout", "0.2",
                 "--concurrency", "2", "--output", str(archive), "-q")
    try:
        wait_for_lines(archive, 10, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    raw = archive.read_bytes()
    assert raw.endswith(b"\n"), "a partial line was left"
    records = [json.loads(line) for line in raw.split(b"\n")[:-1]]
    assert len(records) >= 10
    assert "summary" not in {r["probe"] for r in records}  # it really was killed mid-way


def test_sigkill_loses_at_most_the_flush_interval(tmp_path, quick_targets):
    """Records are written in batches: at a SIGKILL, the newest record in the file was measured at
    most FLUSH_INTERVAL_S before it (plus the gap between two probes, and slack for a busy machine)."""
    archive = tmp_path / "batched.jsonl"
    proc = start("run", "--targets", str(quick_targets), "--probes", "tcp", "--timeout", "1", "--rate", "20",
                 "--output", str(archive), "-q")
    try:
        wait_for_lines(archive, 5, proc)
        time.sleep(0.6)
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    raw = archive.read_bytes()
    assert raw.endswith(b"\n"), "a partial line was left"
    records = [json.loads(line) for line in raw.split(b"\n")[:-1]]
    assert "summary" not in {r["probe"] for r in records}  # killed mid-way: 60 probes at 20/s take 3 s
    newest = max(datetime.fromisoformat(r["measured_at"]).timestamp() for r in records)
    assert killed_at - newest <= FLUSH_INTERVAL_S + 1 / 20 + 0.25, (killed_at - newest, len(records))


def test_a_fragment_left_by_a_killed_writer_is_skipped_by_report_and_not_glued_to(tmp_path, quick_targets):
    """If the kernel ever leaves half a line, the next run starts on a fresh line and
    `netprobe report` skips the fragment with a warning."""
    archive = tmp_path / "archive.jsonl"
    first, _ = run_netprobe("run", "--targets", str(quick_targets), "--probes", "tcp", "--timeout", "1",
                            "--output", str(archive), "-q")
    assert first.returncode == 0, first.stderr
    whole = archive.read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    archive.write_bytes(whole + last[: len(last) // 2])  # a record cut mid-way, no newline
    second, _ = run_netprobe("run", "--targets", str(quick_targets), "--probes", "tcp", "--timeout", "1",
                             "--output", str(archive), "-q")
    assert second.returncode == 0, second.stderr
    lines = lines_of(archive)
    assert lines[-1] == b""
    assert lines[61] == last[: len(last) // 2]  # the fragment kept, alone on its line
    second_run = [json.loads(line) for line in lines[62:-1]]
    assert len(second_run) == 61 and len({r["run_id"] for r in second_run}) == 1
    report, _ = run_netprobe("report", str(archive), "--format", "jsonl")
    assert report.returncode == 0, report.stderr
    assert "skipped 1 corrupt lines" in report.stderr
    assert "Traceback" not in report.stderr
    states = jsonl(report.stdout)
    assert len(states) == 60 and all(sum(s["counts"].values()) == 2 for s in states)


# --- SIGINT and SIGTERM ------------------------------------------------------------------------

@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_keeps_finished_results_and_exits_with_its_code(tmp_path, slow_targets, sig, code):
    archive = tmp_path / "signalled.jsonl"
    proc = start("run", "--targets", str(slow_targets), "--probes", "tcp,mtproto", "--timeout", "10",
                 "--output", str(archive), "--format", "jsonl")
    try:
        wait_for_lines(archive, 6, proc)  # the control and the 5 quick endpoints
        sent = time.monotonic()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=10)
        stopped = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert stopped < 3  # not after the 10 s probes
    assert f"interrupted by {signal.Signals(sig).name}" in stderr
    assert str(archive) in stderr and "Traceback" not in stderr
    raw = archive.read_bytes()
    assert raw.endswith(b"\n")
    records = [json.loads(line) for line in raw.split(b"\n")[:-1]]
    assert Counter(r["probe"] for r in records)["tcp"] == 25  # every finished probe was kept
    assert [json.loads(line) for line in stdout.splitlines()] == records


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_a_tcp_only_run_the_same_way(tmp_path, servers, blackhole, sig, code):
    """A plan of TCP connects only runs without asyncio (netprobe/sweep_loop.py): a signal ends
    it as it ends any run, with every finished result written."""
    quick = [servers.listen("silent", "127.0.0.1") for _ in range(5)]
    targets = write_targets(tmp_path / "tcp.toml", networks=["127.0.0.1/32"],
                            endpoints=[*(f"{h}:{p}" for h, p in quick), blackhole])
    archive = tmp_path / "signalled.jsonl"
    proc = start("run", "--targets", str(targets), "--probes", "tcp", "--timeout", "10",
                 "--output", str(archive), "--format", "jsonl")
    try:
        wait_for_lines(archive, 5, proc)
        sent = time.monotonic()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=10)
        stopped = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert stopped < 3
    assert f"interrupted by {signal.Signals(sig).name}" in stderr and "Traceback" not in stderr
    records = [json.loads(line) for line in archive.read_bytes().split(b"\n")[:-1]]
    assert [r["verdict"] for r in records] == ["reachable"] * 5
    assert [json.loads(line) for line in stdout.splitlines()] == records


def test_sigterm_before_the_run_starts_is_a_clean_exit(monkeypatch, capsys):
    """SIGTERM while the plan is still being built ends with the same message and code."""
    from netprobe import commands as cli
    from netprobe.commands import probe

    def load_targets_slowly(path):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered before the run's event loop exists
        pytest.fail("SIGTERM did not stop netprobe")

    monkeypatch.setattr(probe, "load_targets", load_targets_slowly)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as info:
            cli.main(["run", "--probes", "tcp"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert info.value.code == 143
    assert capsys.readouterr().err == "netprobe: interrupted by SIGTERM\n"


# --- full disk, read-only file ------------------------------------------------------------------

@pytest.fixture
def tmpfs(tmp_path):
    """A 64 KiB tmpfs, unmounted afterwards whatever happens."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mountpoint)], check=True,
                   timeout=10)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, timeout=10)


def existing_archive(directory: Path, quick_targets: Path) -> tuple[Path, bytes]:
    archive = directory / "results.jsonl"
    proc, _ = run_netprobe("run", "--targets", str(quick_targets), "--probes", "tcp", "--timeout", "1",
                           "--output", str(archive), "-q")
    assert proc.returncode == 0, proc.stderr
    return archive, archive.read_bytes()


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("netprobe: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@needs_root
def test_a_full_disk_is_one_error_and_leaves_no_partial_record(tmpfs, quick_targets):
    archive, before = existing_archive(tmpfs, quick_targets)  # ~25 KB
    free = os.statvfs(tmpfs)
    (tmpfs / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize))  # every free block
    proc, _ = run_netprobe("run", "--targets", str(quick_targets), "--probes", "tcp", "--timeout", "1",
                           "--output", str(archive), "-q")
    assert_one_error_line(proc, str(archive), "No space left on device")
    after = archive.read_bytes()
    assert after.startswith(before)  # nothing already in the file damaged
    assert after.endswith(b"\n")  # no partial record
    for line in after.split(b"\n")[:-1]:
        json.loads(line)
    assert len(after) - len(before) < 61 * 300  # it stopped: not every record fit


@needs_root
def test_a_read_only_file_is_one_error_and_is_left_untouched(tmpfs, quick_targets):
    archive, before = existing_archive(tmpfs, quick_targets)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True, timeout=10)
    proc, _ = run_netprobe("run", "--targets", str(quick_targets), "--probes", "tcp", "--timeout", "1",
                           "--output", str(archive), "-q")
    assert_one_error_line(proc, str(archive), "Read-only file system")
    assert archive.read_bytes() == before


# --- log rotation -------------------------------------------------------------------------------

def test_a_rotated_output_file_is_created_afresh(tmp_path, quick_targets):
    archive = tmp_path / "results.jsonl"
    rotated = tmp_path / "results.jsonl.1"
    args = ("run", "--targets", str(quick_targets), "--probes", "tcp", "--timeout", "1", "--output", str(archive), "-q")
    first, _ = run_netprobe(*args)
    assert first.returncode == 0, first.stderr
    archive.rename(rotated)  # what logrotate does (no copytruncate)
    kept = rotated.read_bytes()
    second, _ = run_netprobe(*args)
    assert second.returncode == 0, second.stderr
    assert rotated.read_bytes() == kept
    fresh = jsonl(archive.read_text())
    assert len(fresh) == 61 and len({r["run_id"] for r in fresh}) == 1
    assert fresh[0]["run_id"] != json.loads(kept.split(b"\n")[0])["run_id"]
