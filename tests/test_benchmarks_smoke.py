"""The benchmark script still runs: `benchmarks/run.py --quick` (a /28, one repetition).

Its speed figures are not judged here (they depend on the machine); what is checked
is that every benchmark ran, that netprobe's verdicts agree with nmap's for every
address and port, and that the dropped sweeps end within a second of their floor
ceil(N / concurrency) x timeout: a wave that waits longer than its own probes'
timeouts is a scheduling regression on any machine.  Needs root and `ip netns`,
like the censorship lab; skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("netprobe_benchmarks_run", REPO / "benchmarks" / "run.py")
bench = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

REASON = bench.unavailable_reason()


@pytest.mark.skipif(REASON is not None, reason=f"benchmarks unavailable: {REASON}")
def test_quick_benchmark_run(tmp_path):
    results = tmp_path / "results.json"
    env = {**os.environ, "NPBENCH_PREFIX": "npbsmoke-"}  # its own namespaces and lock
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", str(results)],
                          capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(results.read_text())
    rows = {row["name"]: row for row in data["results"]}
    assert set(rows) == set(bench.ROWS)
    assert data["machine"]["nproc"] and data["machine"]["kernel"]
    for name in ("sweep", "sweep_reset", "sweep_dropped", "telegram_space", "telegram_space_dropped", "throughput"):
        assert rows[name]["data"].get("mismatches", 0) == 0, rows[name]["notes"]
    assert rows["sweep"]["data"]["verdicts"] == {"reachable": 16}
    assert rows["sweep_reset"]["data"]["verdicts"] == {"reset": 16}
    assert rows["sweep_dropped"]["data"]["verdicts"] == {"blocked": 16}
    assert rows["throughput"]["data"]["verdicts"] == {"reachable": 256}
    space = rows["telegram_space"]["data"]
    # all but the controls (4) and the negative ones (6 places x 3 ports)
    assert space["verdicts"] == {"reachable": space["planned"] - 22}
    assert set(rows["telegram_space_dropped"]["data"]["verdicts"]) == {"inconclusive"}  # the controls dropped too
    for name in ("sweep_dropped", "telegram_space_dropped"):
        row = rows[name]["data"]
        assert max(row["netprobe_s"]) <= row["floor_s"] + 1.0, rows[name]["notes"]
    telegram = rows["telegram"]["data"]
    assert telegram["recorded"] == telegram["planned"] and telegram["vantage"] == "offline"
    assert rows["memory"]["data"]["rss_mb"] and rows["cold_start"]["data"]["netprobe_s"]
    # Nothing is left behind.
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert "npbsmoke-" not in listed
    assert "| sweep " in proc.stdout
