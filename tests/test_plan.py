"""The plan: probe kinds, task order, range expansion and sampling, laziness."""

from __future__ import annotations

import inspect
import ipaddress
import itertools
import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from netprobe.addresses import Endpoint
from netprobe.plan import Plan, PlanError, parse_probe_kinds
from netprobe.probes.kinds import MTPROTO, of_family
from netprobe.probes.kinds import NAMES as PROBE_KINDS
from netprobe.targets import parse_target_text

RESOLVERS = (Endpoint(ipaddress.ip_address("127.0.0.1"), 53),
             Endpoint(ipaddress.ip_address("::1"), 5353))

TARGETS = """\
networks = ["149.154.160.0/20"]
controls = ["1.1.1.1:443", "8.8.8.8:443"]
domains = ["telegram.org", "t.me", "web.telegram.org"]
endpoints = ["149.154.167.51:443", { address = "149.154.175.50:443", dc = 1 }]
ranges = [{ cidr = "149.154.167.0/30", ports = [443, 80] }]
"""


def targets(text: str = TARGETS):
    return parse_target_text(textwrap.dedent(text).encode(), "plan.toml")


def plan(text: str = TARGETS, kinds=("dns", "tcp"), seed: int = 1, resolvers=RESOLVERS, probe_controls=True) -> Plan:
    return Plan(targets=targets(text), kinds=kinds, resolvers=resolvers, seed=seed, probe_controls=probe_controls)


# --- kinds -------------------------------------------------------------------------

def test_default_kinds_are_all_kinds_in_run_order():
    assert parse_probe_kinds(None) == PROBE_KINDS
    assert {"dns", "tcp"} <= set(PROBE_KINDS)
    assert PROBE_KINDS.index("dns") < PROBE_KINDS.index("tcp")
    assert parse_probe_kinds(",".join(reversed(PROBE_KINDS))) == PROBE_KINDS


@pytest.mark.parametrize("text, kinds", [
    ("dns", ("dns",)),
    ("tcp", ("tcp",)),
    ("tcp,dns", ("dns", "tcp")),  # run order, not the order given
    (" tcp , dns ,", ("dns", "tcp")),
    ("dns,dns", ("dns",)),
])
def test_parse_probe_kinds(text, kinds):
    assert parse_probe_kinds(text) == kinds


@pytest.mark.parametrize("text, fragment", [
    ("bogus", "'bogus'"), ("dns,http2", "'http2'"), ("DNS", "'DNS'"), ("", "no probe kind"), (" , ", "no probe kind"),
])
def test_parse_probe_kinds_errors(text, fragment):
    with pytest.raises(PlanError) as info:
        parse_probe_kinds(text)
    assert str(info.value).startswith("--probes: ")
    assert fragment in str(info.value)


# --- tasks -------------------------------------------------------------------------

def test_controls_are_separate_and_come_first():
    p = plan()
    controls = p.controls()
    assert {t.kind for t in controls} == {"control"}
    assert [t.target for t in controls if dict(t.context)["stage"] == "tcp"] == ["1.1.1.1:443", "8.8.8.8:443"]
    assert controls[:2] == [t for t in controls if dict(t.context)["stage"] == "tcp"]
    assert all(t.kind != "control" for t in p.tasks())


def test_controls_can_be_left_out():
    p = plan(probe_controls=False)
    assert p.controls() == []
    assert len(p) == sum(1 for _ in p.tasks())


def test_dns_tasks_are_domains_times_resolvers_before_tcp():
    tasks = list(plan().tasks())
    dns_tasks = [t for t in tasks if t.kind == "dns"]
    assert [(t.target, t.resolver) for t in dns_tasks] == [
        (d, r) for d in ("telegram.org", "t.me", "web.telegram.org") for r in RESOLVERS]
    assert all(t.domain.name == t.target for t in dns_tasks)
    kinds = [t.kind for t in tasks]
    assert kinds == sorted(kinds, key=["dns", "tcp"].index)


def test_endpoint_tasks_carry_the_dc():
    tcp = [t for t in plan(kinds=("tcp",)).tasks()][:2]
    assert [t.target for t in tcp] == ["149.154.167.51:443", "149.154.175.50:443"]
    assert tcp[0].context == ()
    assert dict(tcp[1].context) == {"dc": 1}


def test_tasks_carry_the_files_group_for_their_records():
    grouped = """\
networks = ["149.154.160.0/20"]
domains = ["t.me", { name = "kws1.web.telegram.org", group = "ws" }]
endpoints = [{ address = "149.154.175.50:443", dc = 1, group = "dc1" }, "149.154.167.51:443"]
"""
    tasks = list(plan(grouped, kinds=PROBE_KINDS, resolvers=RESOLVERS[:1]).tasks())
    for task in tasks:
        expected = {"kws1.web.telegram.org": {"group": "ws"}, "149.154.175.50:443": {"dc": 1, "group": "dc1"}}
        assert dict(task.context) == expected.get(task.target, {}), task


@pytest.mark.parametrize("kinds, expected", [(("dns",), {"dns"}), (("tcp",), {"tcp"}), (("dns", "tcp"), {"dns", "tcp"})])
def test_kinds_select_tasks(kinds, expected):
    assert {t.kind for t in plan(kinds=kinds).tasks()} == expected


def test_whole_range_expands_to_every_address_and_port():
    p = plan(kinds=("tcp",))
    range_tasks = [t for t in p.tasks() if dict(t.context).get("range")]
    expected = [Endpoint(ip, port) for ip in ipaddress.ip_network("149.154.167.0/30") for port in (443, 80)]
    assert [t.endpoint for t in range_tasks] == expected
    assert all(dict(t.context) == {"range": "149.154.167.0/30", "seed": 1} for t in range_tasks)


SAMPLED = 'ranges = [{ cidr = "91.108.4.0/22", ports = [443], sample = 16 }]'


def sampled_addresses(seed: int, text: str = SAMPLED) -> list:
    return [t.endpoint.ip for t in plan(text, seed=seed).tasks()]


def test_sample_gives_n_distinct_addresses_inside_the_cidr():
    addresses = sampled_addresses(7)
    assert len(addresses) == 16
    assert len(set(addresses)) == 16
    assert all(ip in ipaddress.ip_network("91.108.4.0/22") for ip in addresses)


def test_sample_times_ports():
    p = plan('ranges = [{ cidr = "91.108.4.0/22", ports = [443, 80, 5222], sample = 4 }]')
    tasks = list(p.tasks())
    assert len(tasks) == 12 == len(p) - len(p.controls())
    assert len({t.endpoint.ip for t in tasks}) == 4
    assert {t.endpoint.port for t in tasks} == {443, 80, 5222}


def test_same_seed_same_sample_other_seed_other_sample():
    assert sampled_addresses(42) == sampled_addresses(42)
    assert sampled_addresses(42) != sampled_addresses(43)


def test_sample_of_a_range_does_not_depend_on_other_ranges():
    two = ('ranges = [{ cidr = "91.108.4.0/22", ports = [443], sample = 16 },'
           ' { cidr = "10.0.0.0/24", ports = [443], sample = 3 }]')
    first = [t.endpoint.ip for t in plan(two, seed=5).tasks()][:16]
    assert first == sampled_addresses(5)


def test_same_seed_same_sample_across_processes():
    code = textwrap.dedent(f"""
        from netprobe.plan import Plan
        from netprobe.targets import parse_target_text
        ts = parse_target_text({SAMPLED!r}.encode(), "x")
        print(" ".join(t.target for t in Plan(ts, ("tcp",), (), 99).tasks()))
    """)
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout for h in (1, 2)}
    assert len(runs) == 1
    assert runs.pop().split() == [f"{ip}:443" for ip in sampled_addresses(99)]


@pytest.mark.parametrize("kinds", [("dns",), ("tcp",), ("dns", "tcp"), PROBE_KINDS] + [(k,) for k in PROBE_KINDS],
                         ids=str)
@pytest.mark.parametrize("probe_controls", [True, False])
def test_len_is_the_number_of_probes(kinds, probe_controls):
    p = plan(kinds=kinds, probe_controls=probe_controls)
    assert len(p) == len(p.controls()) + sum(1 for _ in p.tasks())


def test_len_of_the_example():
    # 2 controls + 3 domains x 2 resolvers + 2 endpoints + 4 addresses x 2 ports,
    # + a negative control per port and address family used
    p = plan()
    negatives = [t for t in p.controls() if dict(t.context)["stage"] == "interception"]
    assert len(p) == 2 + 6 + 2 + 8 + len(negatives)


def test_kinds_of_all_tasks_follow_run_order():
    kinds = [t.kind for t in plan(kinds=PROBE_KINDS).tasks()]
    assert set(kinds) == set(PROBE_KINDS)
    assert kinds == sorted(kinds, key=PROBE_KINDS.index)


@pytest.mark.parametrize("kind", of_family(MTPROTO))
def test_mtproto_kinds_probe_every_endpoint_with_its_dc(kind):
    tasks = list(plan(kinds=(kind,)).tasks())
    assert [t.target for t in tasks] == ["149.154.167.51:443", "149.154.175.50:443"]
    assert {t.kind for t in tasks} == {kind}
    assert [dict(t.context) for t in tasks] == [{}, {"dc": 1}]


def test_dns_injection_asks_each_domain_at_a_canary():
    tasks = list(plan(kinds=("dns_injection",)).tasks())
    # No dns_canary in the file: one data-center address, port 53.
    canary = Endpoint(ipaddress.ip_address("149.154.167.51"), 53)
    assert [(t.target, t.resolver) for t in tasks] == [(d, canary) for d in ("telegram.org", "t.me", "web.telegram.org")]
    with_canary = plan(TARGETS + 'dns_canary = ["149.154.167.1", "149.154.167.2"]\n', kinds=("dns_injection",))
    assert len(list(with_canary.tasks())) == 3 * 2 == len(with_canary) - len(with_canary.controls())


def test_no_resolvers_means_no_dns_tasks():
    p = plan(resolvers=())
    assert not [t for t in p.tasks() if t.kind == "dns"]
    assert len(p) == len(p.controls()) + sum(1 for _ in p.tasks())


# --- laziness ------------------------------------------------------------------------

WHOLE_16 = 'endpoints = ["1.2.3.4:443"]\nranges = [{ cidr = "10.0.0.0/16", ports = [443, 80] }]'


def test_a_whole_16_is_planned_lazily():
    p = plan(WHOLE_16, kinds=("tcp",))
    assert len(p) == 1 + 65536 * 2 + len(p.controls())
    tasks = p.tasks()
    assert inspect.isgenerator(tasks)
    tracemalloc.start()
    try:
        first = list(itertools.islice(tasks, 10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [t.target for t in first[:4]] == ["1.2.3.4:443", "10.0.0.0:443", "10.0.0.0:80", "10.0.0.1:443"]
    # Building 131,072 tasks (or a list of 65,536 offsets) would take megabytes.
    assert peak < 200_000, f"taking 10 tasks allocated {peak} bytes"


def test_sampling_a_large_ipv6_range():
    p = plan('ranges = [{ cidr = "2001:db8::/64", ports = [443], sample = 4 }]', kinds=("tcp",))
    tasks = list(p.tasks())
    assert len(tasks) == 4 == len(p) - len(p.controls())
    assert all(t.endpoint.ip in ipaddress.ip_network("2001:db8::/64") for t in tasks)


# --- path checks: who answers on the ports MTProto uses (netprobe/vantage.py) --------------------

PATH_CHECK_FILE = """
networks = ["149.154.160.0/20", "91.108.56.0/22"]
controls = ["1.1.1.1:443", "8.8.8.8:443", "127.0.0.9:443"]
endpoints = [
  { address = "149.154.175.50:443", dc = 1 }, { address = "149.154.175.53:443", dc = 1 },
  { address = "149.154.175.50:5222", dc = 1 }, { address = "91.108.56.130:443", dc = 5 },
  "149.154.167.51:443", { address = "127.0.0.1:443", dc = 9 },
]
datacenters = [{ dc = 1, city = "Miami", lat = 25.77, lon = -80.19 }]
"""


@pytest.mark.parametrize("kinds, expected", [
    # MTProto's request to every control host (not loopback) on every port the endpoints use, and to
    # one endpoint per data center, family and port, with its published place where the file has one.
    (("mtproto",), [("1.1.1.1:443", "path", None), ("8.8.8.8:443", "path", None),
                    ("1.1.1.1:5222", "path", None), ("8.8.8.8:5222", "path", None),
                    ("149.154.175.50:443", "identity", "Miami"), ("149.154.175.50:5222", "identity", "Miami"),
                    ("91.108.56.130:443", "identity", None)]),
    # No MTProto kind: no path check, so a TCP sweep stays on the connects-only loop.
    (("tcp",), []),
])
def test_path_checks_by_table(kinds, expected):
    from netprobe.plan import Plan
    from netprobe.targets import parse_target_text
    plan = Plan(parse_target_text(PATH_CHECK_FILE.encode(), "t.toml"), kinds, (), 1)
    got = [(t.target, dict(t.context)["stage"], dict(t.context).get("city")) for t in plan.path_checks()]
    assert sorted(got) == sorted(expected)
    assert all(t in plan.controls() for t in plan.path_checks())
