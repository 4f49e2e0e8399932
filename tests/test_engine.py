"""The engine: concurrency and deadlines that hold, --rate pacing, controls that cost no
time of their own, records identical to the coroutine probe's, and memory that does
not grow with the plan.  A plan of TCP connects only runs on sweep_loop.SweepLoop
(Runner.run_connects), every other under asyncio (Runner.run), both through
engine.drive as the session runs them: tests marked with `how` run on both.

Every connect goes to 127.0.0.0/8: listeners the tests open (the whole of
127.0.0.0/8 is local, so one listener on 0.0.0.0 answers a range of addresses),
closed ports, and a "blackhole" (a listener whose backlog is full, so that the
kernel drops further SYNs: the same observation as a censor that drops packets).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import socket
import threading
import time
import tracemalloc

import pytest

from netprobe.addresses import parse_endpoint
from netprobe.engine import LOOP_VARIABLE, Runner, Settings, connects_only, default_deadline, drive, on_sweep_loop
from netprobe.plan import Plan
from netprobe.probes.tcp import ConnectPool, probe_tcp
from netprobe.sweep_loop import EventLoop, SweepLoop, Waitable
from netprobe.targets import parse_target_text
from tests.support import observed_reason
from tests.support.hostile import can_bind_privileged

needs_pool = pytest.mark.skipif(not ConnectPool.available, reason="ConnectPool needs epoll (Linux)")
both_loops = pytest.mark.parametrize("how", ["asyncio", pytest.param("sweep_loop", marks=needs_pool)])


def run_on(runner: Runner, how: str = "asyncio"):
    """Run the runner on the loop `how` names, through the session's own engine.drive."""
    return drive(runner, sweep=how == "sweep_loop")


class Listener:
    """A TCP listener on `host` that accepts and closes everything, from a thread."""

    def __init__(self, host: str = "127.0.0.1", backlog: int = 1024):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + 120  # never outlives a stuck test
        while self.running and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener("0.0.0.0")
    yield server
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_plan(*, endpoints=(), controls=(), ranges=(), networks=("127.0.0.0/8",)) -> Plan:
    def q(items):
        return ", ".join(f'"{i}"' for i in items)
    range_items = ", ".join(f'{{ cidr = "{cidr}", ports = [{port}], sample = 0 }}' for cidr, port in ranges)
    text = (f'name = "t"\nnetworks = [{q(networks)}]\ncontrols = [{q(controls)}]\n'
            f"endpoints = [{q(endpoints)}]\nranges = [{range_items}]\n")
    return Plan(targets=parse_target_text(text.encode(), "t.toml"), kinds=("tcp",), resolvers=(), seed=1)


def run_plan(plan: Plan, how: str = "asyncio", **settings) -> tuple[list, object, float, Runner]:
    settings.setdefault("timeout", 1.0)
    settings.setdefault("concurrency", 64)
    records = []
    runner = Runner(plan, Settings(**settings), records.append)
    started = time.monotonic()
    outcome = run_on(runner, how)
    return records, outcome, time.monotonic() - started, runner


def loopback_range(prefix: int) -> str:
    """A random 127.x.y.0/prefix (never 127.0.x.x): every address in it is local."""
    net = ipaddress.ip_network(f"127.{random.randint(100, 250)}.0.0/16")
    return str(next(net.subnets(new_prefix=prefix)))


# --- --rate --------------------------------------------------------------------------

@both_loops
def test_rate_paces_probe_starts(listener, how):
    """20 probes at --rate 40: starts 1/40 s apart, so the last starts 19/40 s after the first."""
    plan = make_plan(ranges=[(loopback_range(28), listener.port)],
                     endpoints=[f"127.0.0.1:{listener.port}", f"127.0.0.2:{listener.port}",
                                f"127.0.0.4:{listener.port}", f"127.0.0.5:{listener.port}"])
    assert len(plan) == 20
    records, _, paced, _ = run_plan(plan, how, rate=40.0)
    assert len(records) == 21 and {r.verdict for r in records[:-1]} == {"reachable"}
    assert paced >= 0.45
    assert paced < 0.45 + 1.0  # and not much more: pacing, not waiting for anything else
    _, _, unpaced, _ = run_plan(plan, how)
    assert unpaced < paced / 2


@both_loops
def test_rate_does_not_hold_slots_idle(blackhole, listener, how):
    """With a slot free and a start due, a probe starts: a slow probe does not delay the others
    beyond their turn (concurrency 2, one probe hanging until its timeout)."""
    plan = make_plan(endpoints=[blackhole, *[f"127.0.0.{i}:{listener.port}" for i in (1, 2, 4, 5, 6)]])
    records, _, elapsed, _ = run_plan(plan, how, rate=50.0, concurrency=2, timeout=1.0)
    by_reason = sorted(observed_reason(r) or "ok" for r in records[:-1])
    assert by_reason == ["ok"] * 5 + ["tcp.timeout"]
    assert elapsed < 1.0 + 0.5  # the five quick ones went through the second slot meanwhile


def test_default_deadline_allows_for_the_rate():
    plain = default_deadline(100, Settings(timeout=1.0, concurrency=256))
    paced = default_deadline(100, Settings(timeout=1.0, concurrency=256, rate=2.0))
    assert paced >= plain + 50


# --- concurrency and deadlines ---------------------------------------------------------

@needs_pool
def test_concurrency_bounds_probes_in_flight_and_each_times_out_on_time():
    """Twelve dropped connects at concurrency 5 and timeout 0.3 s: three waves."""
    drop = socket.socket()  # a full backlog on 0.0.0.0:PORT drops SYNs to every 127.x address
    drop.bind(("0.0.0.0", 0))
    drop.listen(0)
    port = drop.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    try:
        plan = make_plan(ranges=[(loopback_range(29), port)], endpoints=[f"127.0.0.9:{port}",
                                                                         f"127.0.0.10:{port}",
                                                                         f"127.0.0.11:{port}",
                                                                         f"127.0.0.12:{port}"])
        peak = []
        records = []

        class Counting(Runner):
            def start(self, task):
                super().start(task)
                peak.append(len(self.in_flight))

        runner = Counting(plan, Settings(timeout=0.3, concurrency=5), records.append)
        started = time.monotonic()
        asyncio.run(runner.run())
        elapsed = time.monotonic() - started
    finally:
        for filler in fillers:
            filler.close()
        drop.close()
    assert max(peak) == 5
    probes = records[:-1]
    assert len(probes) == 12 and {observed_reason(r) for r in probes} == {"tcp.timeout"}
    assert all(0.3 * 1000 <= r.duration_ms < (0.3 + 0.2) * 1000 for r in probes)
    assert 3 * 0.3 <= elapsed < 3 * 0.3 + 0.5


@needs_pool
@both_loops
def test_the_run_deadline_cuts_connects_and_counts_the_rest(blackhole, how):
    port = blackhole.rsplit(":", 1)[1]
    plan = make_plan(endpoints=[blackhole], ranges=[(loopback_range(28), int(port))])
    # A full backlog on 127.0.0.3 only: the range's addresses are refused (no listener there).
    records, outcome, elapsed, runner = run_plan(plan, how, timeout=10.0, concurrency=4, deadline=0.5)
    assert elapsed < 0.5 + 0.3
    cut = [r for r in records[:-1] if r.reason == "run.deadline"]
    assert [(r.probe, r.target) for r in cut] == [("tcp", blackhole)]
    assert cut[0].evidence["ended_by"] == "run deadline"
    assert outcome.cut_by_deadline == 1
    assert len(records) - 1 + outcome.not_started == len(plan)
    assert not runner.in_flight and runner.pool is None


# --- controls ----------------------------------------------------------------------------

@both_loops
def test_a_dropped_control_costs_no_time_of_its_own(blackhole, listener, how):
    """Controls start with the other probes: a run whose only control is dropped takes one
    timeout, not two, and still reports the controls first, then the adjusted verdicts."""
    closed = f"127.0.0.1:{closed_port()}"
    plan = make_plan(controls=[blackhole], endpoints=[f"127.0.0.1:{listener.port}", closed],
                     networks=("127.0.0.1/32",))
    records, outcome, elapsed, _ = run_plan(plan, how, timeout=0.5)
    assert outcome.vantage == "offline"
    assert elapsed < 0.5 + 0.4
    assert [r.probe for r in records] == ["control", "tcp", "tcp", "summary"]
    by_target = {r.target: r for r in records}
    assert by_target[closed].verdict == "inconclusive"
    assert by_target[closed].evidence["verdict_if_online"] == "reset"
    assert (by_target[closed].reason, by_target[closed].evidence["observed_reason"]) == \
        ("vantage.offline", "tcp.refused")
    assert by_target[f"127.0.0.1:{listener.port}"].verdict == "reachable"


def test_results_wait_for_every_control_then_come_at_once(blackhole, listener):
    """A dropped control and a reachable one, both IPv4: online, but only once every control
    is in (the per-family decision needs them all); the probes ran meanwhile."""
    plan = make_plan(controls=[blackhole, f"127.0.0.2:{listener.port}"],
                     endpoints=[f"127.0.0.1:{listener.port}"], networks=("127.0.0.1/32",))
    seen = []
    runner = Runner(plan, Settings(timeout=0.5, concurrency=8), lambda r: seen.append((r, time.monotonic())))
    started = time.monotonic()
    outcome = asyncio.run(runner.run())
    assert outcome.vantage == "online" and outcome.offline_families == []
    assert [r.probe for r, _ in seen] == ["control", "control", "tcp", "summary"]
    tcp = next(r for r, _ in seen if r.probe == "tcp")
    assert tcp.verdict == "reachable" and tcp.duration_ms < 300  # measured at once, only reported later
    assert time.monotonic() - started < 0.5 + 0.5


def test_a_family_whose_controls_all_fail_is_offline_on_its_own(listener):
    """IPv4 works, IPv6 does not (its only control is refused): IPv6 failures are
    inconclusive, IPv4 failures keep their verdict."""
    with socket.socket(socket.AF_INET6) as v6, socket.socket() as v4:
        v6.bind(("::1", 0))
        v4.bind(("127.0.0.1", 0))
        closed6, closed4 = v6.getsockname()[1], v4.getsockname()[1]
    plan = make_plan(controls=[f"127.0.0.2:{listener.port}", f"[::1]:{closed6}"],
                     endpoints=[f"127.0.0.1:{closed4}", f"[::1]:{closed6}"], networks=("127.0.0.1/32",))
    records = []
    outcome = asyncio.run(Runner(plan, Settings(timeout=0.5, concurrency=8), records.append).run())
    assert outcome.vantage == "online" and outcome.offline_families == [6]
    by_target = {r.target: r for r in records if r.probe == "tcp"}
    assert (by_target[f"127.0.0.1:{closed4}"].verdict, by_target[f"127.0.0.1:{closed4}"].reason) == \
        ("reset", "tcp.refused")
    v6_result = by_target[f"[::1]:{closed6}"]
    assert (v6_result.verdict, v6_result.reason) == ("inconclusive", "vantage.ipv6_offline")
    assert v6_result.evidence["observed_reason"] == "tcp.refused"
    assert v6_result.evidence["vantage"] == "ipv6_offline" and v6_result.evidence["verdict_if_online"] == "reset"
    assert records[-1].evidence["findings"][0].startswith("IPv6 looks offline from this vantage point")


def test_held_results_are_bounded_while_the_controls_decide(blackhole, listener):
    """While the only control hangs, at most `concurrency` other probes start."""
    cidr = loopback_range(26)
    plan = make_plan(controls=[blackhole], ranges=[(cidr, listener.port)], networks=(cidr,))
    records = []
    runner = Runner(plan, Settings(timeout=0.5, concurrency=8), records.append)
    held = []

    async def main():
        run = asyncio.ensure_future(runner.run())
        await asyncio.sleep(0.3)
        held.append(len(runner.held))
        return await run

    asyncio.run(main())
    assert held == [8]
    assert len(records) == 1 + 64 + 1


# --- the records -------------------------------------------------------------------------

# TCP to a multicast address is refused by connect() itself (ENETUNREACH): nothing is sent.
NOT_SENT = "224.0.0.1:9"


@needs_pool
@pytest.mark.parametrize("case", ["open", "closed", "dropped", "not_sent"])
def test_pool_records_equal_the_coroutine_probes(case, listener, blackhole):
    endpoint = {"open": f"127.0.0.1:{listener.port}", "closed": f"127.0.0.1:{closed_port()}",
                "dropped": blackhole, "not_sent": NOT_SENT}[case]
    context = (("range", "127.0.0.0/8"), ("seed", 7))
    timeout = 0.3

    async def both():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        pool = ConnectPool(loop, timeout, lambda tag, result: got.set_result((tag, result)))
        try:
            pool.start(parse_endpoint(endpoint), endpoint, "tcp", context, "tag")
            tag, pooled = await asyncio.wait_for(got, 5)
        finally:
            pool.close()
        direct = await probe_tcp(parse_endpoint(endpoint), timeout, context=dict(context))
        return tag, pooled, direct

    tag, pooled, direct = asyncio.run(both())
    assert tag == "tag"
    for name in ("probe", "target", "address", "reason", "verdict"):
        assert getattr(pooled, name) == getattr(direct, name)
    assert list(pooled.evidence) == list(direct.evidence)
    for key in pooled.evidence:
        if key != "connect_ms":
            assert pooled.evidence[key] == direct.evidence[key], key
    if case == "dropped":
        assert timeout * 1000 <= pooled.duration_ms < (timeout + 0.2) * 1000


@needs_pool
def test_pool_immediate_failure_is_before_sending():
    """An address this machine refuses to send to at all: the error comes from connect()."""
    async def one():
        loop = asyncio.get_running_loop()
        got = []
        pool = ConnectPool(loop, 0.5, lambda tag, result: got.append(result))
        try:
            pool.start(parse_endpoint(NOT_SENT), NOT_SENT, "tcp", (), 1)
        finally:
            pool.close()
        return got

    results = asyncio.run(one())
    assert len(results) == 1  # synchronous: the connect never got under way
    assert results[0].evidence["before_sending"] is True
    assert (results[0].reason, results[0].evidence["errno"]) == ("tcp.no_route", "ENETUNREACH")


# --- memory ------------------------------------------------------------------------------

@needs_pool
def test_memory_does_not_grow_with_the_plan(listener):
    """Peak traced memory of a 2,048-address sweep is not much above a 256-address one:
    nothing is kept per result (the range tally counts, the plan is lazy)."""
    def peak(prefix: int) -> int:
        plan = make_plan(ranges=[(loopback_range(prefix), listener.port)])
        count = [0]

        def sink(result):
            count[0] += 1

        runner = Runner(plan, Settings(timeout=2.0, concurrency=64), sink)
        tracemalloc.start()
        try:
            asyncio.run(runner.run())
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert count[0] == 2 ** (32 - prefix) + 1
            assert isinstance(runner.diagnosis.ranges[plan.targets.ranges[0].cidr.compressed].tested, int)

    small, large = peak(24), peak(21)
    assert large < small + 100_000, (small, large)


# --- the command line ----------------------------------------------------------------------

def netprobe(*args: str, env: dict | None = None):
    import os
    import subprocess
    import sys
    from pathlib import Path

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NETPROBE_")}
    full_env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    full_env.update(env or {})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "netprobe", *args], capture_output=True, text=True, timeout=60,
                          env=full_env, check=False)
    return proc, time.monotonic() - started


def test_cli_rate_paces_a_run(listener):
    endpoints = [f"127.0.0.{i}:{listener.port}" for i in range(1, 21)]
    common = ("tcp", *endpoints, "--format", "jsonl", "--timeout", "1")
    paced, paced_wall = netprobe(*common, "--rate", "40")
    assert paced.returncode == 0, paced.stderr
    times = sorted(json.loads(line)["measured_at"] for line in paced.stdout.splitlines()[:-1])
    assert len(times) == 20
    from datetime import datetime
    first, last = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (times[0], times[-1]))
    assert (last - first).total_seconds() >= 0.45
    from_env, env_wall = netprobe(*common, env={"NETPROBE_RATE": "40"})
    assert from_env.returncode == 0 and env_wall >= 0.45
    unpaced, unpaced_wall = netprobe(*common)
    assert unpaced.returncode == 0
    assert unpaced_wall < paced_wall - 0.3


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "fast"])
def test_cli_rate_must_be_a_positive_number(value):
    proc, _ = netprobe("tcp", "127.0.0.1:9", "--rate", value)
    assert proc.returncode == 2
    assert "--rate" in proc.stderr and "Traceback" not in proc.stderr


@needs_pool
def test_pool_connects_over_ipv6():
    try:
        server = socket.socket(socket.AF_INET6)
        server.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server.listen(8)
    endpoint = f"[::1]:{server.getsockname()[1]}"
    try:
        records, _, _, _ = run_plan(make_plan(endpoints=[endpoint], networks=("::1/128",)), timeout=1.0)
    finally:
        server.close()
    assert [(r.target, r.verdict) for r in records[:-1]] == [(endpoint, "reachable")]


# --- a long run measures its controls again -------------------------------------------------

@both_loops
def test_a_long_run_measures_its_controls_again_and_names_a_stage_that_changed(how):
    """Past `remeasure_after` the controls run once more; a control that got through at the
    start and is refused at the end shows the network changed under the run."""
    control = Listener("127.0.0.2")
    endpoint = f"127.0.0.1:{closed_port()}"
    plan = make_plan(controls=[f"127.0.0.2:{control.port}"], endpoints=[endpoint], networks=("127.0.0.1/32",))
    records = []

    def sink(record):
        records.append(record)
        if record.probe == "tcp":
            control.close()  # the network changes once the run's own probes are done

    try:
        outcome = run_on(Runner(plan, Settings(timeout=0.5, concurrency=8, remeasure_after=0.0), sink), how)
    finally:
        control.close()
    controls = [r for r in records if r.probe == "control"]
    assert [r.evidence.get("round") for r in controls] == [None, 2]
    assert (controls[0].verdict, controls[1].verdict) == ("reachable", "reset")
    assert outcome.vantage == "online"
    summary = records[-1]
    changed = [f for f in summary.evidence["findings"] if f.startswith("Controls: the network changed")]
    assert changed and "passed -> failed" in changed[0]


def test_a_short_run_measures_its_controls_once(listener):
    plan = make_plan(controls=[f"127.0.0.2:{listener.port}"], endpoints=[f"127.0.0.1:{listener.port}"],
                     networks=("127.0.0.1/32",))
    records, outcome, _, _ = run_plan(plan)
    assert [r.probe for r in records].count("control") == 1


def test_a_domains_records_carry_its_group():
    """The file's `group` reaches the records of a domain (evidence.group), for reports to fold."""
    text = ('name = "t"\nnetworks = ["127.0.0.0/8"]\n'
            'domains = [{ name = "a.example", addresses = ["127.0.0.1"], group = "family" }, '
            '{ name = "b.example", addresses = ["127.0.0.1"] }]\n')
    plan = Plan(targets=parse_target_text(text.encode(), "t.toml"), kinds=("https", "http"), resolvers=(), seed=1,
                probe_controls=False)
    records, _outcome, _elapsed, _runner = run_plan(plan, timeout=2.0)
    groups = {(r.probe, r.target): r.evidence.get("group") for r in records if r.probe != "summary"}
    assert groups == {("https", "a.example"): "family", ("http", "a.example"): "family",
                      ("https", "b.example"): None, ("http", "b.example"): None}


# --- the sweep loop ------------------------------------------------------------------------

def test_only_a_plan_of_connects_runs_without_asyncio():
    tcp = make_plan(endpoints=["127.0.0.1:1"], controls=["127.0.0.2:1"], networks=("127.0.0.1/32",))
    assert connects_only(tcp) == ConnectPool.available
    text = b'name = "t"\nnetworks = ["127.0.0.0/8"]\ndomains = ["example.test"]\ncontrol_domains = ["c.test"]\n'
    targets = parse_target_text(text, "t.toml")
    assert not connects_only(Plan(targets=targets, kinds=("dns",), resolvers=(), seed=1))
    # --probes tcp with control names: their controls are DNS, TLS, HTTP only with those kinds
    assert connects_only(Plan(targets=targets, kinds=("tcp",), resolvers=(), seed=1)) == ConnectPool.available


def test_NETPROBE_LOOP_asyncio_runs_a_sweep_under_asyncio(monkeypatch):
    """What the benchmark's --loop asyncio sets, to measure what the sweep loop buys."""
    tcp = make_plan(endpoints=["127.0.0.1:1"], networks=("127.0.0.1/32",))
    monkeypatch.delenv(LOOP_VARIABLE, raising=False)
    assert on_sweep_loop(tcp) == ConnectPool.available
    monkeypatch.setenv(LOOP_VARIABLE, "asyncio")
    assert not on_sweep_loop(tcp)


@pytest.mark.parametrize("protocol", [EventLoop, Waitable])
def test_both_loops_implement_the_loop_protocol(protocol):
    """The Runner and the ConnectPool call nothing on a loop (or its futures) that is not
    declared in sweep_loop.EventLoop: asyncio's and the SweepLoop both have all of it."""
    declared = {name for name in vars(protocol) if not name.startswith("_")}
    loop = asyncio.new_event_loop()
    sweep = SweepLoop()
    try:
        if protocol is EventLoop:
            implementations = [loop, sweep]
        else:
            implementations = [loop.create_future(), sweep.create_future()]
        for implementation in implementations:
            assert {name for name in declared if callable(getattr(implementation, name, None))} == declared
    finally:
        loop.close()
        sweep.close()


@both_loops
def test_a_signal_ends_a_sweep_between_two_records(blackhole, listener, how):
    """A signal the run catches interrupts it at the loop's next turn (on the sweep loop, between
    two callbacks): the records so far are whole, the dropped connect is not reported, the handler
    in place before is back afterwards."""
    import os
    import signal
    plan = make_plan(endpoints=[f"127.0.0.1:{listener.port}", blackhole], networks=("127.0.0.1/32",))
    records, received = [], []
    runner = Runner(plan, Settings(timeout=5.0, concurrency=8), records.append)
    before = signal.getsignal(signal.SIGUSR1)
    started = time.monotonic()
    outcome = drive(runner, sweep=how == "sweep_loop", signals=(signal.SIGUSR1,), on_signal=received.append,
                    on_start=lambda loop, stop: loop.call_later(0.3, lambda: os.kill(os.getpid(), signal.SIGUSR1)))
    assert time.monotonic() - started < 2
    assert received == [signal.SIGUSR1] and outcome.interrupted
    assert [(r.probe, r.verdict) for r in records] == [("tcp", "reachable")]  # no summary: interrupted
    assert signal.getsignal(signal.SIGUSR1) == before


# --- plain-HTTP controls checked against their genuine answer ------------------------------------

class CannedHttp:
    """A loopback box on port 80 that answers every GET with the same bytes (the issue-18 proxy's 404)."""

    def __init__(self, address: str, answer: bytes):
        self.sock = socket.create_server((address, 80))
        self.answer = answer
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(self.answer)

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(), which then ends the thread
        self.sock.close()
        self.thread.join(2)


@pytest.mark.skipif(not can_bind_privileged(), reason="binds port 80 on loopback: needs root or CAP_NET_BIND_SERVICE")
def test_an_http_control_answered_by_a_proxy_fails_and_the_service_answer_is_not_judged():
    proxy_404 = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"
    genuine = (b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nConnection: close\r\n\r\n"
               b"<title>Example Domain</title> the page.")
    control, service = "127.77.18.3", "127.77.18.4"
    text = (f'name = "t"\nnetworks = ["{service}/32"]\n'
            f'domains = [{{ name = "svc.test", addresses = ["{service}"] }}]\n'
            f'control_domains = [{{ name = "c.test", addresses = ["{control}"], '
            'http = { status = 200, body_contains = "Example Domain" }, source = "this test" }]\n')
    plan = Plan(targets=parse_target_text(text.encode(), "t.toml"), kinds=("http",), resolvers=(), seed=1)
    for answer, expected_control, expected_service in (
            # The proxy answers both: the control fails, and the service's 404 is no answer of its own.
            (proxy_404, ("blocked", "http.not_genuine", "differs"), ("inconclusive", "http.intercepted")),
            # The control's genuine page: the path is open, the service's answer stands.
            (genuine, ("reachable", None, "genuine"), ("reachable", None))):
        servers = [CannedHttp(control, answer), CannedHttp(service, proxy_404)]
        try:
            records, _, _, _ = run_plan(plan, timeout=2.0)
        finally:
            for server in servers:
                server.close()
        by = {r.probe: r for r in records}
        got = by["control"]
        assert (got.verdict, got.reason, got.evidence["answer_check"]) == expected_control
        assert got.evidence["expected_answer"]["source"] == "this test"
        assert (by["http"].verdict, by["http"].reason) == expected_service
