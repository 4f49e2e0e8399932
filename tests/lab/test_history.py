"""History in the lab: scenarios in sequence append to one output file, as a cron
job would, and `netprobe report` must show each change at the moment it happened."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import topology as T

pytestmark = pytest.mark.lab

# A block appears on the data centers, then is lifted; DNS is poisoned in between.
SEQUENCE = ("baseline", "ip_reset", "ip_reset", "dns_nxdomain", "baseline")


def report(*args: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "netprobe", "report", *args, "--format", "jsonl"],
                          capture_output=True, text=True, timeout=60, cwd=T.REPO_ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def history(lab, tmp_path_factory):
    archive = tmp_path_factory.mktemp("history") / "results.jsonl"
    runs = []
    for name in SEQUENCE:
        lab.apply(name)
        run = lab.run_netprobe(extra=["--probes", "dns,tcp", "--output", str(archive), "--label", "lab", "-q"])
        assert run.returncode == 0, run.stderr
        records = [json.loads(line) for line in archive.read_text().splitlines()]
        runs.append((name, records[-1]["run_id"], min(r["measured_at"] for r in records
                                                      if r["run_id"] == records[-1]["run_id"])))
    lab.apply("baseline")
    return archive, runs


V4_ENDPOINTS = {e for e in T.ENDPOINTS if not e.startswith("[")}  # what ip_reset blocks


def test_report_changes_show_the_block_appearing_and_lifted(history):
    archive, runs = history
    changes = report(str(archive), "--changes", "--probe", "tcp")
    by_target: dict[str, list[dict]] = {}
    for change in changes:
        by_target.setdefault(change["target"], []).append(change)
    assert set(by_target) == V4_ENDPOINTS, by_target  # exactly the blocked ones changed
    reset_run, lifted_run = runs[1], runs[3]  # dns_nxdomain leaves TCP alone: the block is lifted there
    for target, seen in by_target.items():
        assert [(c["from"], c["to"]) for c in seen] == [("reachable", "reset"), ("reset", "reachable")], seen
        appeared, lifted = seen
        assert appeared["reason"] == "tcp.refused" and lifted["reason"] is None
        assert appeared["at"] >= reset_run[2] and appeared["at"] < runs[2][2]  # the first run with the block
        assert lifted_run[2] <= lifted["at"] < runs[4][2]
        assert appeared["label"] == "lab"


def test_report_changes_show_dns_poisoning_and_its_end(history):
    archive, runs = history
    changes = report(str(archive), "--changes", "--probe", "dns")
    assert changes, "the DNS poisoning left no change"
    for change in changes:
        if change["to"] == "blocked":
            assert change["reason"] == "dns.nxdomain" and change["at"] >= runs[3][2]
        else:
            assert (change["from"], change["to"]) == ("blocked", "reachable") and change["at"] >= runs[4][2]


def test_report_state_counts_every_run(history):
    archive, runs = history
    state = {s["target"]: s for s in report(str(archive), "--probe", "tcp")}
    reset_targets = [s for s in state.values() if s["counts"]["reset"]]
    assert {s["target"] for s in reset_targets} == V4_ENDPOINTS, state
    for entry in reset_targets:
        assert entry["counts"]["reset"] == 2 and entry["counts"]["reachable"] == 3, entry
        assert entry["verdict"] == "reachable" and runs[3][2] <= entry["since"] < runs[4][2]
