"""The report's fold (netprobe/report/fold.py): what it computes, checked against a plain
reference that keeps every observation; that it needs no more memory for more runs; and
that records out of order - the same file twice, files newest first, a shuffled file -
give the same answer as records in order.

The fold is pure: most of these tests feed it records from memory, no file.
"""

from __future__ import annotations

import gzip
import random
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from netprobe.classify import VERDICT_RANK
from netprobe.records import to_json_line
from netprobe.report import command, spill, views
from netprobe.report import fold as f
from netprobe.report.fold import group_of
from netprobe.report.reading import Query
from netprobe.report.spill import ExternalSorter
from netprobe.timeutil import BUCKET_LADDER, bucket_start, epoch_of, time_of

START = 1748228400  # 2025-05-26 03:00 UTC

# (probe, target, evidence): domains with and without a group, DC endpoints, range addresses.
TARGETS = [("dns", "t.me", {}), ("dns", "kws1.web.telegram.org", {"group": "ws"}),
           ("dns", "kws2.web.telegram.org", {"group": "ws"}), ("https", "t.me", {}),
           ("tcp", "149.154.175.50:443", {"dc": 1}), ("tcp", "149.154.175.50:80", {"dc": 1}),
           ("mtproto", "149.154.167.51:443", {"dc": 2, "transport": "intermediate"})]
VERDICTS = ("reachable", "blocked", "reset", "inconclusive")


def history(runs: int, *, seed: int = 1, labels=(None, "home"), every: int = 600, ranges: int = 2):
    """Records of `runs` runs per label, in time order per label (each run's own records shuffled):
    verdicts that hold for a while and flip, several records per target and run (resolvers),
    and range addresses sampled anew every run."""
    rng = random.Random(seed)
    state = {}
    for run in range(runs):
        for li, label in enumerate(labels):
            run_id = f"{label}-{run}"
            base = START + run * every + li * 7
            records = []
            targets = list(TARGETS) + [("tcp", f"91.108.{56 + r}.{rng.randrange(256)}:443",
                                        {"range": f"91.108.{56 + r}.0/24"}) for r in range(ranges) for _ in range(2)]
            for i, (probe, target, evidence) in enumerate(targets):
                key = (label, probe, target)
                if key not in state or rng.random() < 0.15:
                    state[key] = rng.choice(VERDICTS)
                for k in range(rng.choice((1, 1, 2, 3))):
                    verdict = state[key] if k == 0 or rng.random() < 0.7 else rng.choice(VERDICTS)
                    at = time_of(base + i)[:-5] + f".{rng.randrange(1000):03d}Z"
                    records.append(record(at, run_id, label, probe, target, verdict, evidence))
            rng.shuffle(records)
            yield from records


def record(at, run_id, label, probe, target, verdict, evidence=None):
    return {"schema": "netprobe/1", "run_id": run_id, "measured_at": at, "probe": probe, "target": target,
            "address": None, "verdict": verdict, "reason": None if verdict == "reachable" else f"x.{verdict}",
            "duration_ms": 1.0, "evidence": dict(evidence or {}), "label": label, "netprobe_version": "0"}


def fold_records(records, **options) -> f.Fold:
    fold = f.Fold(**options)
    for r in records:
        name = group_of(r["probe"], r["target"], r["evidence"]) if fold.grouped else r["target"]
        fold.add(r["measured_at"], r["run_id"], r["label"], r["probe"], r["target"], VERDICT_RANK[r["verdict"]],
                 r["reason"], name)
    fold.finish()
    return fold


# --- the reference: every observation kept, as the report did before it streamed ----------------------

def reference_observations(records, grouped=False):
    runs: dict = {}
    members: dict = {}
    for r in records:
        name = group_of(r["probe"], r["target"], r["evidence"]) if grouped else r["target"]
        key = (r["label"], r["probe"], name)
        rank, at = VERDICT_RANK[r["verdict"]], r["measured_at"]
        current = runs.setdefault(key, {}).get(r["run_id"])
        if current is None or rank > current[1] or (rank == current[1] and at < current[0]):
            runs[key][r["run_id"]] = (at, rank, r["reason"], r["run_id"])
        member = members.setdefault(key, {}).setdefault(r["run_id"], {}).get(r["target"])
        if member is None or rank > member[0] or (rank == member[0] and at < member[2]):
            members[key][r["run_id"]][r["target"]] = (rank, r["reason"], at)
    return {k: sorted(v.values()) for k, v in runs.items()}, members


def reference_state(records, grouped=False):
    observations, members = reference_observations(records, grouped)
    out = []
    for key in sorted(observations, key=views.sort_key):
        seq = observations[key]
        start = len(seq) - 1
        while start and seq[start - 1][1] == seq[-1][1]:
            start -= 1
        counts = Counter(o[1] for o in seq)
        row = {"label": key[0], "probe": key[1], ("group" if grouped else "target"): key[2]}
        if grouped:
            row["targets"] = len({t for run in members[key].values() for t in run})
        row.update(verdict=f.BY_RANK[seq[-1][1]], reason=seq[-1][2], since=seq[start][0], last_seen=seq[-1][0],
                   counts={v: counts[VERDICT_RANK[v]] for v in VERDICTS})
        if grouped:
            count, named = f.differing(members[key][seq[-1][3]])[1:]
            row.update(differing=[{"target": t, "verdict": f.BY_RANK[r], "reason": why} for t, r, why in named],
                       differing_count=count)
        out.append(row)
    return out


def reference_changes(records, grouped=False):
    observations, _members = reference_observations(records, grouped)
    found = []
    for key, seq in observations.items():
        for before, after in zip(seq, seq[1:]):
            if before[1] != after[1]:
                found.append((after[0], key, f.BY_RANK[before[1]], f.BY_RANK[after[1]], after[2], after[3]))
    return sorted(found, key=lambda c: (c[0], views.sort_key(c[1])))


def reference_timeline(records, bucket=None, max_cells=96, grouped=False):
    """The timeline as the report drew it before: span, run interval and auto bucket from every observation."""
    observations, _members = reference_observations(records, grouped)
    first = min(epoch_of(s[0][0]) for s in observations.values())
    last = max(epoch_of(s[-1][0]) for s in observations.values())
    seq = max(observations.values(), key=len)
    gaps = sorted(epoch_of(b[0]) - epoch_of(a[0]) for a, b in zip(seq, seq[1:]))
    interval = gaps[len(gaps) // 2] if gaps else 0
    size = bucket
    if size is None:
        size = next((s for s in BUCKET_LADDER
                     if s >= interval and (last - bucket_start(first, s)) // s + 1 <= max_cells), BUCKET_LADDER[-1])
    start = bucket_start(first, size)
    rows = {}
    for key, seq in observations.items():
        cells: dict = {}
        for at, rank, _reason, _run in seq:
            index = (epoch_of(at) - start) // size
            cells[index] = max(cells.get(index, -1), rank)
        rows[key] = cells
    return size, (last - start) // size + 1, rows


def fold_changes(records, grouped=False, **options):
    found = []
    fold = fold_records(records, grouped=grouped, on_change=found.append, **options)
    return fold, [(c[0], (c[1], c[2], c[3]), f.BY_RANK[c[4]], f.BY_RANK[c[5]], c[6], c[7])
                  for c in sorted(found, key=views.change_sort_key)]


# --- what the fold computes -------------------------------------------------------------------

# The one grouping rule of the run's table and of a history: (probe, target, evidence) -> row.
@pytest.mark.parametrize("probe, target, evidence, row", [
    ("control", "example.com", {"group": "g"}, "controls"),
    ("tcp", "1.2.3.4:443", {"group": "web", "range": "1.2.3.0/24", "dc": 2}, "web"),
    ("tcp", "1.2.3.4:443", {"range": "1.2.3.0/24", "dc": 2}, "1.2.3.0/24"),
    ("mtproto", "1.2.3.4:443", {"dc": 0}, "DC0"),
    ("dns", "t.me", {}, "t.me"),
    ("dns", "t.me", None, "t.me"),
    ("dns", "t.me", ["read back", "not a dict"], "t.me"),
])
def test_group_of(probe, target, evidence, row):
    assert group_of(probe, target, evidence) == row


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("grouped", [False, True], ids=["per-target", "grouped"])
def test_state_and_changes_equal_the_reference(seed, grouped):
    records = list(history(60, seed=seed))
    fold, changes = fold_changes(records, grouped=grouped)
    assert views.current_state(fold) == reference_state(records, grouped)
    assert changes == reference_changes(records, grouped)


@pytest.mark.parametrize("max_cells, bucket", [(96, None), (20, None), (7, None), (500, None), (96, 1800)])
@pytest.mark.parametrize("grouped", [False, True], ids=["per-target", "grouped"])
def test_timeline_equals_the_reference(max_cells, bucket, grouped):
    records = list(history(150, seed=4))
    fold = fold_records(records, grouped=grouped, buckets=(bucket,) if bucket else BUCKET_LADDER,
                        cap=None if bucket else max_cells, gaps=bucket is None)
    line = views.timeline(fold, bucket, max_cells=max_cells)
    size, cells, rows = reference_timeline(records, bucket, max_cells, grouped)
    assert (line.bucket, line.cells) == (size, cells)
    assert dict(line.rows) == rows


def test_groups_fold_their_members_into_the_worst_verdict_and_name_those_that_differ():
    def run(n, verdicts):
        at = time_of(START + 600 * n)
        return [record(at, f"r{n}", None, "tcp", f"10.0.0.{i}:443", v, {"range": "10.0.0.0/24"})
                for i, v in enumerate(verdicts)]
    records = run(0, ["reachable"] * 4) + run(1, ["reachable", "blocked", "reachable", "reachable"])
    found = []
    fold = fold_records(records, grouped=True, on_change=found.append)
    (state,) = views.current_state(fold)
    assert (state["group"], state["targets"], state["verdict"], state["differing_count"]) == (
        "10.0.0.0/24", 4, "blocked", 1)
    assert state["differing"] == [{"target": "10.0.0.1:443", "verdict": "blocked", "reason": "x.blocked"}]
    (change,) = [views.change_row(c, True) for c in found]
    assert (change["group"], change["from"], change["to"], change["targets"], change["differing_count"]) == (
        "10.0.0.0/24", "reachable", "blocked", 4, 1)


def test_a_run_read_twice_and_records_within_a_run_in_any_order_count_once():
    records = list(history(20, seed=5))
    doubled = [r for r in records for _ in (0, 1)]  # every line written twice, next to each other
    assert views.current_state(fold_records(doubled)) == views.current_state(fold_records(records))


def test_a_strict_fold_refuses_records_out_of_order():
    records = list(history(40, seed=6, labels=(None,)))
    with pytest.raises(f.Disorder):
        fold_records(records[::-1])  # a few runs backwards are taken in order; a file backwards is not
    with pytest.raises(f.Disorder):
        fold_records(records + records[:30])  # a run that comes back after later runs


def test_a_sorted_fold_keeps_concurrent_runs_of_one_label_apart():
    """Two runs of one label measuring at the same time (cron and a manual run) are two observations."""
    records = [record(time_of(START + s), run, None, "dns", "t.me", v)
               for s, run, v in ((0, "a", "reachable"), (1, "b", "blocked"), (2, "a", "reachable"),
                                 (3, "b", "blocked"), (700, "c", "reachable"))]
    fold = fold_records(sorted(records, key=lambda r: r["measured_at"]), strict=False, lag=f.SORTED_LAG)
    (state,) = views.current_state(fold)
    assert state["counts"] == {"reachable": 2, "blocked": 1, "reset": 0, "inconclusive": 0}
    with pytest.raises(f.Disorder):
        fold_records(records)


# --- memory ------------------------------------------------------------------------------------

def peak_of_fold(runs: int) -> tuple[int, f.Fold]:
    last = command.LastChanges(100)
    tracemalloc.start()
    fold = fold_records(history(runs, seed=7, labels=("home",), ranges=0), grouped=True, buckets=BUCKET_LADDER,
                        cap=120, gaps=True, on_change=last.add)
    for i in range(runs):
        at = time_of(START + 600 * i + 30)
        fold.add_summary(at, f"home-{i}", "home", "summary.blocking_observed", frozenset({"DNS"} if i % 3 else {"IP"}),
                         {"findings": ["DNS: 1/6 domains failed"]})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, fold


def test_memory_does_not_grow_with_the_number_of_runs():
    small, fold_small = peak_of_fold(1000)
    large, fold_large = peak_of_fold(4000)
    assert len(fold_small.tracks) == len(fold_large.tracks)
    assert all(not t.pending for t in fold_large.tracks.values())
    assert large < small * 1.2, (small, large)


@pytest.mark.parametrize("fanin", [64, 4])
def test_the_external_sort_spills_and_merges_in_order(monkeypatch, fanin):
    monkeypatch.setattr(spill, "MAX_FANIN", fanin)
    rng = random.Random(8)
    items = [(rng.randrange(50), i, "x" * rng.randrange(5)) for i in range(2000)]
    sorter = ExternalSorter(chunk=100)
    for item in items:
        sorter.add(item)
    assert len(sorter.files) == 20
    assert list(sorter) == sorted(items) and sorter.files == []


# --- order of the files ------------------------------------------------------------------------

def write(path: Path, records, compress=False) -> str:
    data = b"".join(to_json_line(r) for r in records)
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


def fold_files(paths, grouped=False):
    request = command.Request(files=tuple(paths), fmt="jsonl", grouping="group" if grouped else None)
    folding, stats = command.read(request)
    return views.current_state(folding.plan.stdout), stats


@pytest.mark.parametrize("grouped", [False, True], ids=["per-target", "grouped"])
def test_rotated_files_given_newest_first_are_read_in_order_without_sorting(tmp_path, grouped):
    records = list(history(30, seed=9))
    thirds = [records[:len(records) // 3], records[len(records) // 3:2 * len(records) // 3],
              records[2 * len(records) // 3:]]
    # Cut between runs, as a rotation does (a run is written whole to one file).
    paths = [write(tmp_path / "results.jsonl.2.gz", thirds[0], compress=True),
             write(tmp_path / "results.jsonl.1", thirds[1]), write(tmp_path / "results.jsonl", thirds[2])]
    states, stats = fold_files(paths[::-1], grouped)
    assert not stats.sorted
    assert states == reference_state(records, grouped)


@pytest.mark.parametrize("grouped", [False, True], ids=["per-target", "grouped"])
def test_records_out_of_order_are_sorted_and_give_the_same_answer(tmp_path, grouped):
    records = list(history(30, seed=10))
    shuffled = list(records)
    random.Random(11).shuffle(shuffled)
    states, stats = fold_files([write(tmp_path / "shuffled.jsonl", shuffled)], grouped)
    assert stats.sorted and states == reference_state(records, grouped)
    path = write(tmp_path / "a.jsonl", records)
    states, stats = fold_files([path, path], grouped)
    assert stats.sorted and states == reference_state(records, grouped)


def test_labels_in_files_of_their_own_need_no_sort(tmp_path):
    records = list(history(20, seed=12))
    home = write(tmp_path / "home.jsonl", [r for r in records if r["label"] == "home"])
    other = write(tmp_path / "other.jsonl", [r for r in records if r["label"] is None])
    states, stats = fold_files([home, other])
    assert not stats.sorted and states == reference_state(records)


def test_summaries_fold_per_label_and_count_a_run_once():
    fold = f.Fold()
    blocking = "summary.blocking_observed"
    for i, (found, reason) in enumerate([((), None), (("DNS",), blocking), (("DNS",), blocking),
                                         (("DNS", "SNI"), blocking)]):
        for _ in (0, 1):
            fold.add_summary(time_of(START + 600 * i), f"r{i}", "home", reason, frozenset(found), {"findings": []})
    (diagnosis,) = views.diagnoses(fold)
    assert diagnosis.since == time_of(START + 1800)
    assert [(at, after) for at, _before, after in diagnosis.changes] == [
        (time_of(START + 600), ("summary.blocking_observed", ("DNS",))),
        (time_of(START + 1800), ("summary.blocking_observed", ("DNS", "SNI")))]
    assert diagnosis.runs == {None: 1, "summary.blocking_observed": 3}
    assert sum(row["runs"] for row in views.technique_rows(fold)) == 4


def test_query_type_is_shared():
    assert command.Request(files=("x",)).query == Query()
