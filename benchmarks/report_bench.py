"""Benchmark of `netprobe report` over a year-sized archive.

Generates an archive like a year of a ten-minute cron job over ~20 targets
(1,000,000 records of ~300 bytes, with blocks that come and go), then times
`netprobe report` on it in a child process - every view, the grouped one and
the HTML page - and reports its peak RSS.  Targets (issue 11): at most 10 s
per million records, at most 60 MB peak, and the same peak whatever the
number of records (compare --records 1000000 with 4000000).

    python benchmarks/report_bench.py [--records N] [--sampled N] [--keep DIR]

--sampled N adds N range addresses per run, sampled anew each run from a /22
as `netprobe run` does with the built-in set (they fold into one group).
No network: everything is generated locally.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

TARGET_SECONDS_PER_MILLION = 10.0
TARGET_MB = 60.0
RUN_EVERY = timedelta(minutes=10)

# (probe, target, address, reason when blocked, evidence)
TARGETS = [
    ("control", "1.1.1.1:443", "1.1.1.1:443", None, {"connect": "ok"}),
    ("control", "9.9.9.9:443", "9.9.9.9:443", None, {"connect": "ok"}),
    *[("dns", name, "192.168.1.1:53", "dns.nxdomain",
       {"queries": [{"type": "A", "rcode": "NOERROR", "addresses": ["149.154.167.99"]}]})
      for name in ("telegram.org", "web.telegram.org", "t.me", "core.telegram.org", "desktop.telegram.org",
                   "my.telegram.org")],
    *[("tcp", f"149.154.{a}:443", f"149.154.{a}:443", "tcp.timeout", {"connect": "ok", "dc": dc})
      for dc, a in ((1, "175.50"), (2, "167.51"), (3, "175.100"), (4, "167.91"), (5, "171.5"))],
    *[("https", name, "149.154.167.99:443", "tls.reset", {"connect": "ok", "status": 200})
      for name in ("telegram.org", "web.telegram.org", "t.me", "core.telegram.org")],
    ("mtproto", "149.154.167.51:443", "149.154.167.51:443", "mtproto.timeout", {"transport": "intermediate", "dc": 2}),
    ("mtproto_obfuscated2", "149.154.167.51:443", "149.154.167.51:443", "mtproto.reset",
     {"transport": "obfuscated2", "dc": 2}),
]
VERDICT_OF = {None: "reachable", "dns.nxdomain": "blocked", "tcp.timeout": "blocked", "tls.reset": "reset",
              "mtproto.timeout": "blocked", "mtproto.reset": "reset"}
FINDING_OF = {"dns": "DNS: 1/6 domains failed at 192.168.1.1:53 (1 answered NXDOMAIN)",
              "tcp": "IP: 1/5 data-center endpoints failed (1 timeout)",
              "https": "SNI: 1/4 domains failed during the TLS handshake while TCP to the same address connects",
              "mtproto": "MTProto: intermediate 1/1 failed (1 mtproto.timeout)",
              "mtproto_obfuscated2": "MTProto: obfuscated2 1/1 failed (1 mtproto.reset)"}


def generate(path: str, records: int, seed: int = 1, sampled: int = 0) -> int:
    """Write `records` records (runs of len(TARGETS)+sampled+1 records, summary included); the file size."""
    rng = random.Random(seed)
    per_run = len(TARGETS) + sampled + 1
    started = datetime(2025, 1, 1, tzinfo=timezone.utc)
    blocked_until = [0] * len(TARGETS)  # run index until which a target is blocked
    prefix = [json.dumps({"probe": p, "target": t, "address": a}, separators=(",", ":"))[1:-1]
              for p, t, a, _r, _e in TARGETS]
    evidence = [json.dumps(e, separators=(",", ":")) for *_x, e in TARGETS]
    written = 0
    with open(path, "w", encoding="ascii") as out:
        run = 0
        while written < records:
            run_id = uuid.UUID(int=rng.getrandbits(128)).hex
            base = started + run * RUN_EVERY
            failed = set()
            lines = []
            for i, (probe, _t, _a, block_reason, _e) in enumerate(TARGETS):
                if probe != "control" and rng.random() < 0.0004:  # a block begins, lasting up to ~3 days
                    blocked_until[i] = run + rng.randint(1, 400)
                reason = block_reason if run < blocked_until[i] else None
                if reason:
                    failed.add(probe)
                at = (base + timedelta(milliseconds=200 * i + rng.randint(0, 150))).isoformat(
                    timespec="milliseconds").replace("+00:00", "Z")
                lines.append('{"schema":"netprobe/1","run_id":"%s","measured_at":"%s",%s,"verdict":"%s",'
                             '"reason":%s,"duration_ms":%.3f,"evidence":%s,"label":"home-isp",'
                             '"netprobe_version":"0.1.0"}\n'
                             % (run_id, at, prefix[i], VERDICT_OF[reason], json.dumps(reason),
                                rng.uniform(5, 900), evidence[i]))
            for k in range(sampled):  # range addresses, a new sample every run (netprobe run's default)
                at = (base + timedelta(milliseconds=200 * len(TARGETS) + 10 * k)).isoformat(
                    timespec="milliseconds").replace("+00:00", "Z")
                address = f"91.108.{56 + rng.randrange(4)}.{rng.randrange(256)}:443"
                lines.append('{"schema":"netprobe/1","run_id":"%s","measured_at":"%s","probe":"tcp","target":"%s",'
                             '"address":"%s","verdict":"reachable","reason":null,"duration_ms":%.3f,"evidence":'
                             '{"range":"91.108.56.0/22","seed":%d,"connect":"ok"},"label":"home-isp",'
                             '"netprobe_version":"0.1.0"}\n' % (run_id, at, address, address, rng.uniform(5, 900), run))
            findings = [FINDING_OF[p] for p in FINDING_OF if p in failed] or [
                "No blocking observed: every probe that could conclude got through."]
            at = (base + timedelta(seconds=5)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            lines.append(json.dumps({
                "schema": "netprobe/1", "run_id": run_id, "measured_at": at, "probe": "summary",
                "target": "telegram", "address": None, "verdict": "blocked" if failed else "reachable",
                "reason": "summary.blocking_observed" if failed else None, "duration_ms": 0.0,
                "evidence": {"findings": findings, "vantage": "online", "inconclusive": {}},
                "label": "home-isp", "netprobe_version": "0.1.0"}, separators=(",", ":")) + "\n")
            out.writelines(lines[:records - written])
            written += min(per_run, records - written)
            run += 1
    return os.path.getsize(path)


REPORT = ("from netprobe.commands import cli, main; from netprobe.commands.report import report, cron; "
          "cli.add_command(report); cli.add_command(cron); import sys; main(sys.argv[1:])")


def measure(args: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and the output size of `netprobe report ARGS` in a child."""
    command = [sys.executable, "-c", REPORT, "report", *args]
    if os.access("/usr/bin/time", os.X_OK):
        command = ["/usr/bin/time", "-v", *command]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.run(command, stdout=out, stderr=err)
        wall = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode(errors="replace")
        if proc.returncode:
            sys.exit(f"netprobe report failed ({proc.returncode}):\n{stderr}")
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
        # Without GNU time: the peak of every child so far, an upper bound for this one.
        rss_kb = int(match.group(1)) if match else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return wall, rss_kb / 1024, out.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--sampled", type=int, default=0, metavar="N", help="range addresses sampled per run")
    parser.add_argument("--keep", metavar="DIR", help="write the archive into DIR and keep it")
    options = parser.parse_args()
    directory = options.keep or tempfile.mkdtemp(prefix="netprobe-bench-")
    try:
        path = os.path.join(directory, "results.jsonl")
        started = time.perf_counter()
        size = generate(path, options.records, sampled=options.sampled)
        print(f"generated {options.records:,} records, {size / 1e6:.0f} MB "
              f"({size / options.records:.0f} bytes/record) in {time.perf_counter() - started:.1f} s")
        limit = TARGET_SECONDS_PER_MILLION * max(options.records, 1_000_000) / 1e6
        page = os.path.join(directory, "report.html")
        for name, args in (("current state", [path, "--format", "jsonl"]),
                           ("--changes", [path, "--changes", "--format", "jsonl"]),
                           ("--techniques", [path, "--techniques", "--format", "jsonl"]),
                           ("--group", [path, "--group", "--format", "jsonl"]),
                           ("--html", [path, "--html", page])):
            wall, rss, output = measure(args)
            if name == "--html":
                output = os.path.getsize(page)
            met = "ok" if wall <= limit and rss <= TARGET_MB else "OVER TARGET"
            print(f"netprobe report {name}: {wall:.2f} s wall, {rss:.0f} MB peak RSS, {output:,} bytes out "
                  f"(target <= {limit:.0f} s, <= {TARGET_MB:.0f} MB: {met})")
    finally:
        if not options.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
