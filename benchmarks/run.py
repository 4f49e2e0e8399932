#!/usr/bin/env python3
"""netprobe's engine benchmarks, in network namespaces of their own.  One command, as root:

    python benchmarks/run.py            # the full set, about 1.5 minutes
    python benchmarks/run.py --quick    # tiny sizes, one repetition (the test suite's smoke run)
    python benchmarks/run.py --only sweep,cold_start --reps 5 --json results.json

Topology (nothing else is touched; no link to the host's network, private addresses only):

    npbench-client  eth0 10.98.0.1 / fd98::1  ──veth──  eth0 10.98.0.2 / fd98::2  npbench-srv
                                                        AnyIP: local 10.99.0.0/16, 10.97.0.0/16,
                                                               fd99::/64, fd97::/64 on lo
                                                        benchmarks/sink.py on 0.0.0.0 / [::] :443

The client's only routes lead to the server namespace.  "Dropped" variants add
`iptables -I INPUT -j DROP` (and ip6tables) in the server namespace.

Each benchmark runs its commands `--reps` times, interleaved with its peer, and
reports the median; wall time and peak RSS are those of the measured process
alone (a wrapper inside the namespace times it and reads RUSAGE_CHILDREN).

    sweep          /20 (4,096 addresses, all answering) TCP 443: netprobe vs nmap -sT, same verdicts
    sweep_dropped  the same /20, every packet dropped: vs ceil(N/concurrency) x timeout, and vs nmap
    telegram       a plan shaped like the built-in Telegram set, everything dropped: vs 2 x timeout + 1 s
    cold_start     netprobe --version vs python3 -c pass
    memory         /16 (65,536 addresses) sweep: peak RSS and probes per second, vs nmap

The child processes run with the caller's environment plus PYTHONPATH=<repo> and
without PYTHONUNBUFFERED; netprobe's bytecode is compiled first, as an installed
package's is.
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import ipaddress
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable

PREFIX = os.environ.get("NPBENCH_PREFIX", "npbench-")
NS_CLIENT, NS_SRV = PREFIX + "client", PREFIX + "srv"
LOCK_FILE = Path(f"/tmp/{PREFIX.rstrip('-')}.lock")
CLIENT_V4, SRV_V4, CLIENT_V6, SRV_V6 = "10.98.0.1", "10.98.0.2", "fd98::1", "fd98::2"
SERVICE_V4, OTHER_V4 = ipaddress.ip_network("10.99.0.0/16"), ipaddress.ip_network("10.97.0.0/16")
SERVICE_V6, OTHER_V6 = ipaddress.ip_network("fd99::/64"), ipaddress.ip_network("fd97::/64")
RESOLVER = "10.97.0.53:53"
PORT = 443
RESET_PORT = 444  # nothing listens there: the kernel answers every SYN with a reset
SINK_PORTS = (443, 80, 5222)
TELEGRAM_PORTS = (443, 80, 5222)

# Runs inside the client namespace: times one command and reads its peak RSS and CPU time (user +
# system: less disturbed than the wall time when other work shares the CPUs).
MEASURE = """\
import json, resource, subprocess, sys, time
started = time.perf_counter()
with open(sys.argv[1], "wb") as out:
    proc = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.PIPE)
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "rss_kb": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime,
                  "rc": proc.returncode, "stderr": proc.stderr.decode(errors="replace")[-3000:]}))
"""


class BenchError(RuntimeError):
    pass


def sh(cmd: list[str], *, timeout: float = 30, check: bool = True, input: str | None = None):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input, check=False)
    if check and res.returncode != 0:
        raise BenchError(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr.strip()}")
    return res


def unavailable_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root (ip netns, iptables)"
    missing = [t for t in ("ip", "iptables", "ip6tables") if shutil.which(t) is None]
    return f"missing tools: {', '.join(missing)}" if missing else None


# --- the topology -----------------------------------------------------------------------------

class Topology:
    def __init__(self) -> None:
        self.sink: subprocess.Popen | None = None
        self.dropping = False
        self.lock_fd: int | None = None

    def ns(self, ns: str, *cmd: str, **kw):
        return sh(["ip", "netns", "exec", ns, *cmd], **kw)

    def up(self) -> None:
        self.lock_fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BenchError(f"another benchmark run holds {LOCK_FILE}") from None
        atexit.register(self.down)
        self.remove_namespaces()
        for ns in (NS_CLIENT, NS_SRV):
            sh(["ip", "netns", "add", ns])
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            self.ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0")
        # Room for a /16 in flight and in the server's queues.
        self.ns(NS_SRV, "sysctl", "-qw", "net.core.somaxconn=65535", "net.ipv4.tcp_max_syn_backlog=65535")
        self.ns(NS_CLIENT, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535")
        sh(["ip", "link", "add", "eth0", "netns", NS_CLIENT, "type", "veth", "peer", "name", "eth0", "netns", NS_SRV])
        for ns, v4, v6 in ((NS_CLIENT, CLIENT_V4, CLIENT_V6), (NS_SRV, SRV_V4, SRV_V6)):
            sh(["ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", "eth0"])
            sh(["ip", "-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", "eth0", "nodad"])
            sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
        macs = {ns: json.loads(sh(["ip", "-n", ns, "-j", "link", "show", "dev", "eth0"]).stdout)[0]["address"]
                for ns in (NS_CLIENT, NS_SRV)}
        for ns, peer, v4, v6 in ((NS_CLIENT, NS_SRV, SRV_V4, SRV_V6), (NS_SRV, NS_CLIENT, CLIENT_V4, CLIENT_V6)):
            sh(["ip", "-n", ns, "neigh", "replace", v4, "lladdr", macs[peer], "dev", "eth0", "nud", "permanent"])
            sh(["ip", "-n", ns, "-6", "neigh", "replace", v6, "lladdr", macs[peer], "dev", "eth0", "nud", "permanent"])
        for net in (SERVICE_V4, OTHER_V4):
            sh(["ip", "-n", NS_CLIENT, "route", "add", str(net), "via", SRV_V4])
            sh(["ip", "-n", NS_SRV, "route", "add", "local", str(net), "dev", "lo"])
        for net in (SERVICE_V6, OTHER_V6):
            sh(["ip", "-n", NS_CLIENT, "-6", "route", "add", str(net), "via", SRV_V6])
            sh(["ip", "-n", NS_SRV, "-6", "route", "add", "local", str(net), "dev", "lo"])
        ports = [a for p in SINK_PORTS for a in ("--port", str(p))]
        self.sink = subprocess.Popen(["ip", "netns", "exec", NS_SRV, PY, str(HERE / "sink.py"), *ports,
                                      "--lifetime", "900"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True)
        line = self.sink.stdout.readline().strip()
        if line != "READY":
            raise BenchError(f"sink did not start: {line} {self.sink.stdout.read()[:2000]}")

    def drop(self, on: bool) -> None:
        if on == self.dropping:
            return
        verb = "-I" if on else "-D"
        for tool in ("iptables", "ip6tables"):
            self.ns(NS_SRV, tool, verb, "INPUT", "-j", "DROP")
        self.dropping = on

    def remove_namespaces(self) -> None:
        listed = sh(["ip", "netns", "list"], check=False).stdout
        for line in listed.splitlines():
            name = line.split()[0] if line.split() else ""
            if name in (NS_CLIENT, NS_SRV):
                for pid in sh(["ip", "netns", "pids", name], check=False).stdout.split():
                    if pid.isdigit() and int(pid) != os.getpid():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                sh(["ip", "netns", "del", name], check=False)

    def down(self) -> None:
        if self.sink is not None:
            self.sink.terminate()
            try:
                self.sink.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.sink.kill()
                self.sink.wait(timeout=5)
            self.sink = None
        self.remove_namespaces()
        if self.lock_fd is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
            os.close(self.lock_fd)
            self.lock_fd = None


# --- running and measuring --------------------------------------------------------------------

CHILD_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED",) and not k.startswith("NETPROBE_")}

# The netprobe measured: this checkout's, or --netprobe-path's (e.g. an older version exported with
# `git archive`, to compare before and after).
SOURCE = REPO


def use_source(path: Path) -> None:
    global SOURCE
    SOURCE = path.resolve()
    CHILD_ENV["PYTHONPATH"] = str(SOURCE) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH")
                                             else "")


use_source(REPO)


@dataclass
class Sample:
    wall: float
    rss_kb: int
    rc: int
    stderr: str
    cpu: float = 0.0


def measure(cmd: list[str], *, ns: str | None = NS_CLIENT, stdout: str = os.devnull, timeout: float = 300) -> Sample:
    wrapper = [PY, "-c", MEASURE, stdout, *cmd]
    full = ["ip", "netns", "exec", ns, *wrapper] if ns else wrapper
    res = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=CHILD_ENV, cwd=SOURCE,
                         check=False)
    if res.returncode != 0 or not res.stdout.strip():
        raise BenchError(f"measuring {' '.join(cmd)} failed: {res.stderr[-2000:]}")
    data = json.loads(res.stdout.strip().splitlines()[-1])
    return Sample(data["wall"], data["rss_kb"], data["rc"], data["stderr"], data["cpu"])


def checked(sample: Sample, what: str, ok_codes: tuple[int, ...] = (0,)) -> Sample:
    if sample.rc not in ok_codes:
        raise BenchError(f"{what} exited {sample.rc}: {sample.stderr}")
    return sample


def median(values) -> float:
    return statistics.median(values)


def spread(values) -> float:
    """(max - min) / median: how noisy the repetitions were."""
    values = list(values)
    return (max(values) - min(values)) / median(values) if values and median(values) else 0.0


@dataclass
class Row:
    name: str
    what: str
    value: str
    peer: str
    ratio: float | None
    target: str
    met: bool | None
    notes: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # machine-readable facts (--json)


def netprobe_cmd(*args: str) -> list[str]:
    return [PY, "-m", "netprobe", *args]


def nmap_cmd(nets: str | list[str], timeout: float, concurrency: int, out: str,
             ports: tuple[int, ...] = (PORT,)) -> list[str]:
    ms = f"{int(timeout * 1000)}ms"
    return ["nmap", "-sT", "-Pn", "-n", "-p", ",".join(map(str, ports)), "--max-retries", "0",
            "--min-parallelism", str(concurrency), "--max-parallelism", str(concurrency),
            "--initial-rtt-timeout", ms, "--max-rtt-timeout", ms,
            "--host-timeout", f"{int(max(2 * timeout, timeout + 1) * 1000)}ms", "-oG", out,
            *([nets] if isinstance(nets, str) else nets)]


def sweep_targets(path: Path, net: str, port: int = PORT) -> Path:
    path.write_text(f'name = "bench"\nnetworks = ["{SERVICE_V4}"]\n'
                    f'ranges = [{{ cidr = "{net}", ports = [{port}], sample = 0 }}]\n')
    return path


def nmap_states(path: Path) -> dict[tuple[str, int], str]:
    """(address, port) -> open | closed | filtered | timeout (grepable output)."""
    states: dict[tuple[str, int], str] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("Host: "):
            continue
        address = line.split()[1]
        if "Ports: " in line:
            for entry in line.split("Ports: ", 1)[1].split("\t")[0].split(", "):
                fields = entry.strip().split("/")
                states[(address, int(fields[0]))] = fields[1]
        elif "Status: Timeout" in line:
            states.setdefault((address, 0), "timeout")
    return states


def netprobe_verdicts(path: Path) -> dict[tuple[str, int], str]:
    out = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["probe"] == "tcp":
            address, _, port = record["target"].rpartition(":")
            # A sweep file names no controls: its failures are inconclusive (tcp.no_control), and
            # what was seen, which is what nmap reports, is kept as the observed verdict.
            observed = record["reason"] == "tcp.no_control"
            out[(address, int(port))] = record["evidence"]["observed_verdict"] if observed else record["verdict"]
    return out


# nmap's port state -> the netprobe verdict that says the same
SAME_VERDICT = {"open": "reachable", "closed": "reset", "filtered": "blocked"}


def compare_verdicts(nets: list[str], ports: tuple[int, ...], netprobe: dict, nmap: dict,
                     offline: bool = False) -> tuple[int, list[str]]:
    """Disagreements over every address and port: open <=> reachable, closed <=> reset, filtered
    <=> blocked (with `offline`, a run whose controls were dropped too: only open <=> reachable,
    since netprobe calls every failure inconclusive there)."""
    bad = []
    for net in nets:
        for address in (str(a) for a in ipaddress.ip_network(net)):
            for port in ports:
                theirs = nmap.get((address, port), nmap.get((address, 0)))
                ours = netprobe.get((address, port))
                if offline or theirs not in SAME_VERDICT:
                    agree = (theirs == "open") == (ours == "reachable")
                else:
                    agree = SAME_VERDICT[theirs] == ours
                if not agree:
                    bad.append(f"{address}:{port}: nmap {theirs}, netprobe {ours}")
    return len(bad), bad[:5]


class Bench:
    def __init__(self, args: argparse.Namespace, topo: Topology, workdir: Path):
        self.args = args
        self.topo = topo
        self.dir = workdir
        self.rows: list[Row] = []
        self.have_nmap = shutil.which("nmap") is not None
        # --quick keeps its small concurrency for the sweeps, but not for 700 dropped probes.
        self.space_concurrency = max(args.concurrency, 256) if args.quick else args.concurrency

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def row(self, row: Row) -> None:
        self.rows.append(row)
        verdict = {True: "met", False: "NOT met", None: "-"}[row.met]
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        self.log(f"  -> {row.what}: {row.value} | peer {row.peer} | ratio {ratio} | target {row.target}: {verdict}")
        for note in row.notes:
            self.log(f"     {note}")

    # --- sweeps: answering, reset, dropped -------------------------------------------------------

    def compare(self, name: str, nets: list[str], ports: tuple[int, ...], cmd: list[str], grepable: Path | None,
                data: dict, notes: list[str], offline: bool = False) -> int | None:
        """One more (untimed) netprobe run written to a file: its verdicts against nmap's."""
        records = self.dir / f"{name}.jsonl"
        checked(measure(cmd, stdout=str(records)), "netprobe")
        verdicts = netprobe_verdicts(records)
        records.unlink()
        tally = {v: list(verdicts.values()).count(v) for v in sorted(set(verdicts.values()))}
        notes.append(f"netprobe verdicts: {tally}")
        data["verdicts"] = tally
        if grepable is None or not grepable.exists():
            notes.append("nmap not run: verdicts not compared")
            return None
        bad, examples = compare_verdicts(nets, ports, verdicts, nmap_states(grepable), offline)
        data["mismatches"] = bad
        notes.append(f"verdicts differing from nmap's (open/closed/filtered <=> reachable/reset/blocked): {bad}"
                     + (f" e.g. {examples}" if examples else ""))
        return bad

    def timed_sweep(self, name: str, nets: list[str], ports: tuple[int, ...], targets: Path, *,
                    references: bool = False, with_nmap: bool = True, offline: bool = False,
                    concurrency: int | None = None) -> tuple[float, float | None, dict, list[str], int | None]:
        """netprobe --probes tcp over `targets`, interleaved with nmap -sT over the same addresses
        and ports; (netprobe median, nmap median, data, notes, verdict mismatches)."""
        a = self.args
        concurrency = concurrency or a.concurrency
        cmd = netprobe_cmd("run", "--targets", str(targets), "--probes", "tcp", "--format", "jsonl",
                           "--timeout", f"{a.timeout:g}", "--concurrency", str(concurrency), "--seed", "1")
        grepable = self.dir / f"{name}.nmap"
        np_walls, nm_walls, np_cpu = [], [], []
        bare: dict[str, list[float]] = {"epoll": [], "asyncio": []}
        for _ in range(a.reps):
            sample = checked(measure(cmd), "netprobe")
            np_walls.append(sample.wall)
            np_cpu.append(sample.cpu)
            if with_nmap and self.have_nmap:
                nm_walls.append(checked(measure(nmap_cmd(nets, a.timeout, concurrency, str(grepable), ports)),
                                        "nmap").wall)
            if references:  # what Python itself costs: a bare epoll loop, and plain asyncio, no records
                for mode, walls in bare.items():
                    walls.append(checked(measure([PY, str(HERE / "bare_sweep.py"), mode, nets[0], str(ports[0]),
                                                  str(concurrency), f"{a.timeout:g}"]), mode).wall)
        notes = [f"netprobe runs: {', '.join(f'{w:.3f}' for w in np_walls)} s",
                 f"netprobe CPU (user + system) per run: {', '.join(f'{c:.3f}' for c in np_cpu)} s, "
                 f"median {median(np_cpu):.3f} s"]
        if nm_walls:
            notes.append(f"nmap runs:     {', '.join(f'{w:.3f}' for w in nm_walls)} s")
        for mode, walls in bare.items():
            if walls:
                notes.append(f"reference, bare Python {mode} loop without records (benchmarks/bare_sweep.py): "
                             f"median {median(walls):.3f} s" + (f" = {median(walls) / median(nm_walls):.2f} x nmap"
                                                                 if nm_walls else ""))
        data = {"netprobe_s": np_walls, "netprobe_cpu_s": np_cpu, "nmap_s": nm_walls, "spread": spread(np_walls),
                **{f"bare_{mode}_s": walls for mode, walls in bare.items() if walls}}
        bad = self.compare(name, nets, ports, cmd, grepable if nm_walls else None, data, notes, offline)
        if not nm_walls and with_nmap:
            notes.append("nmap not installed: no peer")
        return median(np_walls), (median(nm_walls) if nm_walls else None), data, notes, bad

    def sweep(self) -> None:
        """/20 answering: wall time against nmap's."""
        a = self.args
        net = str(next(SERVICE_V4.subnets(new_prefix=a.sweep_prefix)))
        count = ipaddress.ip_network(net).num_addresses
        self.log(f"sweep: {net} ({count} addresses) answering, port {PORT}, timeout {a.timeout:g} s, "
                 f"concurrency {a.concurrency}, {a.reps} repetitions")
        self.topo.drop(False)
        ours, theirs, data, notes, bad = self.timed_sweep("sweep", [net], (PORT,),
                                                          sweep_targets(self.dir / "sweep.toml", net),
                                                          references=True)
        ratio = ours / theirs if theirs else None
        data["addresses"] = count
        self.row(Row("sweep", f"/{a.sweep_prefix} answering, wall", f"{ours:.3f} s",
                     f"nmap -sT {theirs:.3f} s" if theirs else "-", ratio, "ratio <= 1.3 (aim 1.0), same verdicts",
                     (ratio <= 1.3 and bad == 0) if ratio is not None else None, notes, data))

    def sweep_reset(self) -> None:
        """/22 where every SYN is answered by a reset (no listener on the port): wall against nmap's."""
        a = self.args
        net = str(next(SERVICE_V4.subnets(new_prefix=a.reset_prefix)))
        count = ipaddress.ip_network(net).num_addresses
        self.log(f"sweep_reset: {net} ({count} addresses) refusing (RST), port {RESET_PORT}, "
                 f"concurrency {a.concurrency}, {a.reps} repetitions")
        self.topo.drop(False)
        ours, theirs, data, notes, bad = self.timed_sweep(
            "sweep_reset", [net], (RESET_PORT,), sweep_targets(self.dir / "reset.toml", net, RESET_PORT))
        ratio = ours / theirs if theirs else None
        data["addresses"] = count
        self.row(Row("sweep_reset", f"/{a.reset_prefix} reset, wall", f"{ours:.3f} s",
                     f"nmap -sT {theirs:.3f} s" if theirs else "-", ratio, "ratio <= 1.5, same verdicts",
                     (ratio <= 1.5 and bad == 0) if ratio is not None else None, notes, data))

    def sweep_dropped(self) -> None:
        """/22 blackholed: wall against the floor ceil(N / concurrency) x timeout, and nmap's."""
        a = self.args
        net = str(next(SERVICE_V4.subnets(new_prefix=a.dropped_prefix)))
        count = ipaddress.ip_network(net).num_addresses
        self.log(f"sweep_dropped: {net} ({count} addresses), every packet dropped, timeout {a.timeout:g} s, "
                 f"concurrency {a.concurrency}, {a.reps} repetitions")
        self.topo.drop(True)
        ours, theirs, data, notes, bad = self.timed_sweep(
            "sweep_dropped", [net], (PORT,), sweep_targets(self.dir / "dropped.toml", net))
        floor = math.ceil(count / a.concurrency) * a.timeout
        ratio = ours / floor
        notes.append(f"floor ceil({count}/{a.concurrency}) x {a.timeout:g} s = {floor:g} s"
                     + (f"; nmap/floor = {theirs / floor:.2f}, netprobe/nmap = {ours / theirs:.2f}" if theirs else ""))
        data.update(addresses=count, floor_s=floor)
        self.row(Row("sweep_dropped", f"/{a.dropped_prefix} dropped, wall", f"{ours:.3f} s",
                     f"floor {floor:g} s" + (f"; nmap {theirs:.3f} s" if theirs else ""), ratio,
                     "<= 1.1 x floor", ratio <= 1.1 and not bad, notes, data))

    # --- Telegram's whole published IPv4 space ---------------------------------------------------

    def telegram_space_targets(self) -> tuple[Path, list[str], int]:
        """The built-in set's IPv4 networks, every address, ports 443, 80, 5222, mirrored into the
        benchmark's own service space (same prefix lengths, aligned), with its controls mirrored
        into the other space; (target file, mirrored prefixes, planned probes)."""
        from netprobe.targets import load_builtin

        builtin = load_builtin()
        shrink = 6 if self.args.quick else 0  # --quick: each prefix 64 times smaller
        nets, cursor = [], int(SERVICE_V4.network_address)
        for net in sorted((n for n in builtin.networks if n.version == 4), key=lambda n: n.prefixlen):
            size = net.num_addresses >> shrink
            cursor = (cursor + size - 1) // size * size
            nets.append(f"{ipaddress.IPv4Address(cursor)}/{32 - size.bit_length() + 1}")
            cursor += size
        if cursor > int(SERVICE_V4.broadcast_address) + 1:
            raise BenchError("Telegram's IPv4 space outgrew the benchmark's /16: widen SERVICE_V4")
        other4, other6 = iter(OTHER_V4.hosts()), iter(OTHER_V6.hosts())
        controls = [f"{next(other4)}:{c.port}" if c.ip.version == 4 else f"[{next(other6)}]:{c.port}"
                    for c in builtin.controls]
        ports = ", ".join(map(str, TELEGRAM_PORTS))
        path = self.dir / "telegram-space.toml"
        path.write_text(f'name = "telegram-space"\nnetworks = ["{SERVICE_V4}", "{SERVICE_V6}"]\n'
                        f"controls = [{', '.join(json.dumps(c) for c in controls)}]\n"
                        "ranges = [\n  " + ",\n  ".join(f'{{ cidr = "{n}", ports = [{ports}], sample = 0 }}'
                                                        for n in nets) + "\n]\n")
        plan = subprocess.run(netprobe_cmd("targets", "--targets", str(path), "--probes", "tcp", "--format", "jsonl"),
                              capture_output=True, text=True, env=CHILD_ENV, cwd=SOURCE, check=True, timeout=120)
        return path, nets, len(plan.stdout.splitlines())

    def telegram_space(self) -> None:
        """Every address of Telegram's IPv4 space on 443, 80 and 5222, answering: <= 5 s, against nmap."""
        a = self.args
        self.topo.drop(False)
        targets, nets, size = self.telegram_space_targets()
        self.log(f"telegram_space: {len(nets)} prefixes mirrored from the built-in networks, ports "
                 f"{TELEGRAM_PORTS}, {size} probes, answering, concurrency {self.space_concurrency}, "
                 f"{a.reps} repetitions")
        ours, theirs, data, notes, bad = self.timed_sweep("telegram_space", nets, TELEGRAM_PORTS, targets,
                                                          concurrency=self.space_concurrency)
        bound = 5.0
        data.update(planned=size, prefixes=nets, bound_s=bound)
        if theirs:
            notes.append(f"netprobe/nmap = {ours / theirs:.2f}; {size / ours:,.0f} vs {size / theirs:,.0f} probes/s")
        self.row(Row("telegram_space", f"Telegram IPv4 space x 3 ports ({size:,} probes) answering, wall",
                     f"{ours:.3f} s", f"nmap -sT {theirs:.3f} s" if theirs else "-", ours / bound,
                     f"<= {bound:g} s, same verdicts", ours <= bound and not bad, notes, data))

    def telegram_space_dropped(self) -> None:
        """The same space, every packet dropped (the controls too): <= floor + 1 s."""
        a = self.args
        self.topo.drop(True)
        targets, nets, size = self.telegram_space_targets()
        concurrency = self.space_concurrency
        floor = math.ceil(size / concurrency) * a.timeout
        self.log(f"telegram_space_dropped: {size} probes, every packet dropped, timeout {a.timeout:g} s, "
                 f"concurrency {concurrency}, floor {floor:g} s, {a.reps} repetitions (no nmap: it takes twice "
                 f"the floor; the /{a.dropped_prefix} compares with it)")
        ours, _, data, notes, bad = self.timed_sweep("telegram_space_dropped", nets, TELEGRAM_PORTS, targets,
                                                     with_nmap=False, offline=True, concurrency=concurrency)
        data.update(planned=size, floor_s=floor)
        notes.append(f"floor ceil({size}/{concurrency}) x {a.timeout:g} s = {floor:g} s; "
                     f"netprobe - floor = {ours - floor:+.3f} s")
        self.row(Row("telegram_space_dropped", f"Telegram IPv4 space x 3 ports ({size:,} probes) dropped, wall",
                     f"{ours:.3f} s", f"floor {floor:g} s", ours / floor, "<= floor + 1 s",
                     ours <= floor + 1, notes, data))

    # --- a plan shaped like the built-in set -----------------------------------------------------

    def telegram_targets(self) -> tuple[Path, int]:
        from netprobe.targets import load_builtin

        builtin = load_builtin()
        v4 = iter(ipaddress.ip_network("10.99.255.0/24").hosts())
        v6 = iter(ipaddress.ip_network("fd99::ffff:0/112").hosts())
        other4, other6 = iter(OTHER_V4.hosts()), iter(OTHER_V6.hosts())
        mapped: dict[object, str] = {}

        def inside(ip) -> str:
            if ip not in mapped:
                mapped[ip] = str(next(v4) if ip.version == 4 else next(v6))
            return mapped[ip]

        def endpoint(ip: str, port: int) -> str:
            return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

        controls = [endpoint(str(next(other4) if c.ip.version == 4 else next(other6)), c.port)
                    for c in builtin.controls]
        domains = []
        for i, domain in enumerate(builtin.domains):
            if domain.addresses:
                pinned = ", ".join(f'"{inside(ip)}"' for ip in domain.addresses)
                domains.append(f'{{ name = "d{i}.telegram.bench", addresses = [{pinned}] }}')
            else:
                domains.append(f'"d{i}.telegram.bench"')
        endpoints = []
        for target in builtin.endpoints:
            dc = f", dc = {target.dc}" if target.dc is not None else ""
            endpoints.append(f'{{ address = "{endpoint(inside(target.endpoint.ip), target.endpoint.port)}"{dc} }}')
        ranges, cursor = [], int(SERVICE_V4.network_address) + 16 * 256
        for rng in builtin.ranges:
            if rng.cidr.version != 4:
                raise BenchError("the built-in set gained an IPv6 range: teach benchmarks/run.py to mirror it")
            size = rng.cidr.num_addresses
            cursor = (cursor + size - 1) // size * size
            cidr = f"{ipaddress.IPv4Address(cursor)}/{rng.cidr.prefixlen}"
            cursor += size
            ranges.append(f'{{ cidr = "{cidr}", ports = [{", ".join(map(str, rng.ports))}], sample = {rng.sample} }}')
        text = (f'name = "telegram-shaped"\nnetworks = ["{SERVICE_V4}", "{SERVICE_V6}"]\n'
                f"controls = [{', '.join(json.dumps(c) for c in controls)}]\n"
                "domains = [\n  " + ",\n  ".join(domains) + "\n]\n"
                "endpoints = [\n  " + ",\n  ".join(endpoints) + "\n]\n"
                "ranges = [\n  " + ",\n  ".join(ranges) + "\n]\n")
        path = self.dir / "telegram-shaped.toml"
        path.write_text(text)
        counts = (len(builtin.controls), len(builtin.domains), len(builtin.endpoints),
                  sum(r.size * len(r.ports) for r in builtin.ranges))
        return path, counts

    def telegram(self) -> None:
        a = self.args
        self.topo.drop(True)
        targets, counts = self.telegram_targets()
        cmd = netprobe_cmd("run", "--targets", str(targets), "--resolver", RESOLVER, "--format", "jsonl",
                           "--timeout", f"{a.timeout:g}", "--seed", "1")
        plan = subprocess.run(netprobe_cmd("targets", "--targets", str(targets), "--resolver", RESOLVER,
                                           "--format", "jsonl", "--seed", "1"),
                              capture_output=True, text=True, env=CHILD_ENV, cwd=SOURCE, check=True, timeout=60)
        size = len(plan.stdout.splitlines())
        self.log(f"telegram: {counts[0]} controls, {counts[1]} domains, {counts[2]} endpoints, {counts[3]} range "
                 f"samples ({size} probes, every kind), everything dropped, timeout {a.timeout:g} s, "
                 f"{a.reps} repetitions")
        walls = [checked(measure(cmd), "netprobe").wall for _ in range(a.reps)]
        records = self.dir / "telegram.jsonl"
        checked(measure(cmd, stdout=str(records)), "netprobe")
        lines = [json.loads(line) for line in records.read_text().splitlines()]
        kinds = sorted({r["probe"] for r in lines})
        bound = 2 * a.timeout + 1
        med = median(walls)
        notes = [f"runs: {', '.join(f'{w:.3f}' for w in walls)} s",
                 f"{len(lines) - 1} of {size} probes recorded, kinds {', '.join(kinds)}; "
                 f"vantage {lines[-1]['evidence']['vantage']}; reasons "
                 f"{dict(sorted(_count(str(r['reason']) for r in lines[:-1]).items()))}"]
        data = {"netprobe_s": walls, "planned": size, "recorded": len(lines) - 1, "kinds": kinds,
                "vantage": lines[-1]["evidence"]["vantage"], "bound_s": bound}
        self.row(Row("telegram", "Telegram-shaped plan, dropped, wall", f"{med:.3f} s",
                     f"bound 2 x {a.timeout:g} + 1 = {bound:g} s", med / bound, "<= bound",
                     med <= bound and len(lines) - 1 == size, notes, data))

    # --- start-up ------------------------------------------------------------------------------

    def cold_start(self) -> None:
        a = self.args
        script = Path(PY).with_name("netprobe")
        installed = _is_python_script(script) and _installed_from(SOURCE)
        command = [str(script), "--version"] if installed else netprobe_cmd("--version")
        reps = max(a.reps, 3) * (1 if a.quick else 3)
        self.log(f"cold_start: {' '.join(command)} vs {PY} -c pass, {reps} repetitions")
        ours, base = [], []
        for _ in range(reps):
            ours.append(checked(measure(command, ns=None), "netprobe --version").wall)
            base.append(checked(measure([PY, "-c", "pass"], ns=None), "python -c pass").wall)
        extra = (median(ours) - median(base)) * 1000
        self.row(Row("cold_start", "netprobe --version", f"{median(ours) * 1000:.0f} ms",
                     f"python3 -c pass {median(base) * 1000:.0f} ms", median(ours) / median(base),
                     "<= 150 ms more", extra <= 150, [f"{extra:.0f} ms more than a bare interpreter"],
                     {"netprobe_s": ours, "python_s": base, "extra_ms": extra}))

    # --- a /16: memory and throughput ------------------------------------------------------------

    def memory(self) -> None:
        a = self.args
        self.topo.drop(False)
        net = str(next(SERVICE_V4.subnets(new_prefix=a.memory_prefix)))
        count = ipaddress.ip_network(net).num_addresses
        self.log(f"memory: {net} ({count} addresses) answering, concurrency {a.concurrency}, {a.reps} repetitions")
        targets = sweep_targets(self.dir / "memory.toml", net)
        cmd = netprobe_cmd("run", "--targets", str(targets), "--probes", "tcp", "--format", "jsonl",
                           "--timeout", f"{a.timeout:g}", "--concurrency", str(a.concurrency), "--seed", "1")
        ours, theirs = [], []
        grepable = self.dir / "memory.nmap"
        for _ in range(a.reps):
            ours.append(checked(measure(cmd), "netprobe"))
            if self.have_nmap:
                theirs.append(checked(measure(nmap_cmd(net, a.timeout, a.concurrency, str(grepable))), "nmap"))
        rss = median(s.rss_kb for s in ours) / 1024
        wall = median(s.wall for s in ours)
        notes = [f"netprobe: {count / wall:,.0f} probes/s (median wall {wall:.2f} s); "
                 f"peak RSS per run {', '.join(f'{s.rss_kb / 1024:.1f}' for s in ours)} MB"]
        peer = "-"
        if theirs:
            their_wall = median(s.wall for s in theirs)
            peer = f"nmap -sT {median(s.rss_kb for s in theirs) / 1024:.1f} MB"
            notes.append(f"nmap: {count / their_wall:,.0f} probes/s (median wall {their_wall:.2f} s); "
                         f"netprobe/nmap wall = {wall / their_wall:.2f}")
        ratio = rss / (median(s.rss_kb for s in theirs) / 1024) if theirs else None
        data = {"addresses": count, "rss_mb": [s.rss_kb / 1024 for s in ours], "netprobe_s": [s.wall for s in ours],
                "probes_per_s": count / wall, "nmap_rss_mb": [s.rss_kb / 1024 for s in theirs],
                "nmap_s": [s.wall for s in theirs]}
        self.row(Row("memory", f"/{a.memory_prefix} sweep, peak RSS", f"{rss:.1f} MB", peer, ratio,
                     "<= 150 MB", rss <= 150, notes, data))
        # The same runs as throughput: probes per second against nmap's, and the verdicts.
        notes = [f"netprobe runs: {', '.join(f'{s.wall:.3f}' for s in ours)} s"]
        data = {"addresses": count, "netprobe_s": [s.wall for s in ours], "nmap_s": [s.wall for s in theirs],
                "probes_per_s": count / wall, "spread": spread(s.wall for s in ours)}
        if theirs:
            notes.append(f"nmap runs:     {', '.join(f'{s.wall:.3f}' for s in theirs)} s")
        bad = self.compare("throughput", [net], (PORT,), cmd, grepable if theirs else None, data, notes)
        their_rate = count / median(s.wall for s in theirs) if theirs else None
        ratio = (count / wall) / their_rate if their_rate else None
        self.row(Row("throughput", f"/{a.memory_prefix} answering, probes/s", f"{count / wall:,.0f}",
                     f"nmap -sT {their_rate:,.0f}" if their_rate else "-", ratio, ">= nmap's (ratio >= 1), same verdicts",
                     (ratio >= 1.0 and bad == 0) if ratio is not None else None, notes, data))


def _count(items) -> dict:
    out: dict = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def _installed_from(source: Path) -> bool:
    """Whether the installed console script runs the netprobe in `source` (an editable install
    of another checkout does not: then `python -m netprobe` from `source` is measured instead)."""
    env = {k: v for k, v in CHILD_ENV.items() if k != "PYTHONPATH"}
    found = subprocess.run([PY, "-c", "import netprobe; print(netprobe.__file__)"], capture_output=True, text=True,
                           env=env, cwd="/", check=False).stdout.strip()
    return bool(found) and Path(found).resolve() == (source / "netprobe" / "__init__.py").resolve()


def _is_python_script(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"#!" and b"python" in f.readline()
    except OSError:
        return False


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nmap = "-"
    if shutil.which("nmap"):
        nmap = sh(["nmap", "--version"], check=False).stdout.splitlines()[0].strip()
    return {"nproc": str(os.cpu_count()), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(), "nmap": nmap,
            "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3])}


BENCHMARKS = ("sweep", "sweep_reset", "sweep_dropped", "telegram", "telegram_space", "telegram_space_dropped",
              "cold_start", "memory")
ROWS = (*BENCHMARKS, "throughput")  # memory's runs make two rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (median; default 3)")
    parser.add_argument("--timeout", type=float, default=1.0, help="probe timeout, seconds (default 1)")
    parser.add_argument("--concurrency", type=int, default=1024, help="sweeps' concurrency (default 1024)")
    parser.add_argument("--sweep-prefix", type=int, default=20, help="prefix length of the sweeps (default 20)")
    parser.add_argument("--memory-prefix", type=int, default=16, help="prefix length of the memory run (default 16)")
    parser.add_argument("--reset-prefix", type=int, default=22, help="prefix length of the reset sweep (default 22)")
    parser.add_argument("--dropped-prefix", type=int, default=22,
                        help="prefix length of the dropped sweep (default 22)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {BENCHMARKS}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: /28 sweeps, /24 memory run, one repetition, 0.5 s timeout")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--netprobe-path", metavar="DIR",
                        help="measure the netprobe package in DIR instead of this checkout's "
                             "(e.g. `git archive HEAD~3 netprobe | tar -x -C DIR`)")
    parser.add_argument("--loop", choices=("default", "asyncio"), default="default",
                        help="asyncio: run netprobe's TCP sweeps under asyncio instead of its sweep loop "
                             "(NETPROBE_LOOP=asyncio), to measure what the sweep loop buys")
    args = parser.parse_args(argv)
    if args.loop == "asyncio":
        CHILD_ENV["NETPROBE_LOOP"] = "asyncio"
    if args.quick:
        args.reps, args.timeout, args.sweep_prefix, args.memory_prefix = 1, 0.5, 28, 24
        args.reset_prefix = args.dropped_prefix = 28
        args.concurrency = min(args.concurrency, 8)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BENCHMARKS]
    prefixes = (args.sweep_prefix, args.memory_prefix, args.reset_prefix, args.dropped_prefix)
    if unknown or args.reps < 1 or not all(16 <= p <= 30 for p in prefixes):
        parser.error(f"bad --only {unknown}" if unknown else "bad --reps or prefix (16..30)")
    reason = unavailable_reason()
    if reason:
        print(f"benchmarks unavailable: {reason}", file=sys.stderr)
        return 77
    info = machine()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()), file=sys.stderr, flush=True)
    if args.netprobe_path:
        use_source(Path(args.netprobe_path))
    if not (SOURCE / "netprobe" / "__init__.py").is_file():
        parser.error(f"--netprobe-path: no netprobe package in {SOURCE}")
    print(f"measuring the netprobe in {SOURCE}" + (" under asyncio (--loop asyncio)" if args.loop == "asyncio"
                                                  else ""), file=sys.stderr)
    subprocess.run([PY, "-m", "compileall", "-q", str(SOURCE / "netprobe")], check=False, capture_output=True)
    topo = Topology()
    workdir = Path(tempfile.mkdtemp(prefix="npbench-"))
    started = time.monotonic()
    # SIGTERM ends the run like Ctrl-C: namespaces and the sink are removed on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        topo.up()
        bench = Bench(args, topo, workdir)
        for name in BENCHMARKS:
            if name in chosen:
                getattr(bench, name)()
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        topo.down()
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    print_table(bench.rows, info, elapsed)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "elapsed_s": round(elapsed, 1),
                                               "settings": vars(args),
                                               "results": [r.__dict__ for r in bench.rows]}, indent=2) + "\n")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def print_table(rows: list[Row], info: dict[str, str], elapsed: float) -> None:
    head = ("benchmark", "measured (median)", "peer", "ratio", "target", "met")
    table = [head] + [(r.name, f"{r.what}: {r.value}", r.peer, f"{r.ratio:.2f}" if r.ratio is not None else "-",
                       r.target, {True: "yes", False: "NO", None: "-"}[r.met]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    print(f"\nnetprobe benchmarks ({elapsed:.0f} s) on {info['nproc']} x {info['cpu']}, kernel {info['kernel']}, "
          f"Python {info['python']}, {info['nmap']}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
