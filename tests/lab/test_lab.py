"""The censorship lab: real netprobe runs against a censor built from kernel packet filters.

For every scenario (tests/lab/scenarios.py) the censor's rules are applied
fresh, `python -m netprobe run` runs in the client namespace, and dig / curl /
nmap measure the same cases.  Results are cached per scenario, so each
scenario costs one netprobe run whatever the number of assertions.

    python -m pytest tests/lab -k dns_nxdomain      # one scenario
"""

from __future__ import annotations

import ipaddress
import subprocess
import time

import pytest
import runner as R
import scenarios as S
import topology as T

pytestmark = pytest.mark.lab


# --- per-scenario results, computed once -------------------------------------------

@pytest.fixture(scope="session")
def results(lab) -> dict[str, R.ScenarioResult]:
    return {}


@pytest.fixture
def result_of(lab, results):
    def get(name: str) -> R.ScenarioResult:
        if name not in results:
            results[name] = R.run_scenario(lab, S.by_name(name))
        return results[name]
    return get


def _fail(problems: list[str], header: str) -> None:
    if problems:
        pytest.fail(header + "\n  " + "\n  ".join(problems), pytrace=False)


# --- parametrisation ------------------------------------------------------------------

def _verdict_params():
    for scenario in S.SCENARIOS:
        probes: dict[str, list[S.Expect]] = {}
        for e in scenario.expect:
            probes.setdefault(e.probe, []).append(e)
        for probe, expects in probes.items():
            yield pytest.param(scenario.name, probe, id=f"{scenario.name}-{probe}")


def _peer_params(agreement: bool):
    for scenario in S.SCENARIOS:
        for peer in ("dig", "nmap", "curl"):
            if peer == "curl" and not scenario.curl:
                continue
            yield pytest.param(scenario.name, peer, id=f"{scenario.name}-{peer}")


SCENARIO_NAMES = [s.name for s in S.SCENARIOS]


# --- the lab itself ---------------------------------------------------------------------

def test_lab_is_isolated(lab):
    """No lab namespace has a way out: only veths between lab namespaces, no default route on the censor."""
    for ns in T.NAMESPACES:
        links = lab.exec_in(ns, ["ip", "-o", "link", "show"]).stdout
        for line in links.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            assert name in ("lo", "eth0", T.CENSOR_CLIENT_IF, T.CENSOR_SRV_IF, T.CENSOR_DC_IF), (ns, line)
            if name != "lo":
                assert "veth" in lab.exec_in(ns, ["ip", "-d", "link", "show", name]).stdout
    for family in ("-4", "-6"):
        routes = lab.exec_in(T.NS_CENSOR, ["ip", family, "route", "show", "default"]).stdout
        assert routes.strip() == "", f"censor has a default route: {routes}"
        # A public address is unroutable from the censor: nothing can be forwarded out.
        probe = "192.0.2.1" if family == "-4" else "2001:db8::1"
        res = lab.exec_in(T.NS_CENSOR, ["ip", family, "route", "get", probe], check=False)
        assert res.returncode != 0, res.stdout


def test_topology_sane_without_censorship(lab):
    """Every service host answers from the client before any scenario is judged."""
    lab.apply_rules([], name="none")
    c = T.NS_CLIENT
    dig = lab.exec_in(c, ["dig", f"@{T.DNS_V4}", "+short", "+time=1", "+tries=1", "web.telegram.lab", "AAAA"])
    assert dig.stdout.split() == [T.WEB_HOSTS["web.telegram.lab"][1]]
    for domain, addrs in T.WEB_HOSTS.items():
        for addr in (f"[{a}]" if ":" in a else a for a in addrs):
            res = lab.exec_in(c, ["curl", "-sS", "--max-time", "3", "--cacert", str(lab.ca_file),
                                  "--resolve", f"{domain}:443:{addr}", f"https://{domain}/"], check=False)
            assert res.returncode == 0 and domain in res.stdout, (domain, addr, res.stderr)
    # AnyIP: the first and last address of the range both answer.
    for ep in (T.endpoint(T.range_addresses(T.RANGE_V4)[0], 443), T.endpoint(T.range_addresses(T.RANGE_V6)[-1], 443)):
        host = ep[1:].partition("]")[0] if ep.startswith("[") else ep.partition(":")[0]
        res = lab.exec_in(c, ["curl", "-sk", "--max-time", "3", "-o", "/dev/null", "-w", "%{http_code}",
                              f"https://{ep}/"], check=False)
        assert res.stdout == "200", (host, res.stderr)
    # The MITM host presents a certificate the lab CA does not vouch for.
    res = lab.exec_in(c, ["curl", "-sS", "--max-time", "3", "--cacert", str(lab.ca_file), "--resolve",
                          f"web.telegram.lab:443:{T.CENSOR_SVC_V4}", "https://web.telegram.lab/"], check=False)
    assert res.returncode == 60, res.stderr


def test_leftovers_of_a_crashed_run_are_removed(lab):
    """What up() does first: namespaces with the prefix go, and so do the processes left inside them."""
    prefix = T.PREFIX + "crash-"   # only these: the session's lab stays up
    stray = prefix + "x"
    subprocess.run(["ip", "netns", "add", stray], check=True, timeout=10)
    server = subprocess.Popen(["ip", "netns", "exec", stray, "sleep", "300"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while not subprocess.run(["ip", "netns", "pids", stray], capture_output=True, text=True,
                                 timeout=10, check=False).stdout.strip():
            assert time.monotonic() < deadline, "the stray server did not start"
            time.sleep(0.05)
        assert T.destroy_all(prefix) == [stray]
        assert server.wait(timeout=5) is not None       # ended (by pid)
        assert T.list_lab_namespaces(prefix) == []
        assert set(T.NAMESPACES) <= set(T.list_lab_namespaces())  # the session's lab is untouched
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=5)
        subprocess.run(["ip", "netns", "del", stray], capture_output=True, timeout=10, check=False)


# --- netprobe -------------------------------------------------------------------------

@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_netprobe_run_completes(result_of, name):
    """Exit code 0, one JSON object per line, the contract's fields and vocabulary."""
    res = result_of(name)
    _fail(R.record_problems(res), f"{name}: netprobe's output breaks the contract")


@pytest.mark.parametrize("name,probe", list(_verdict_params()))
def test_verdicts(result_of, name, probe):
    """netprobe's verdict (and reason) for every target the scenario speaks about."""
    res = result_of(name)
    problems, optional_missing = [], 0
    for e in res.scenario.expect:
        if e.probe != probe:
            continue
        status, found = R.check_expectation(res, e)
        if status == "missing" and not e.required:
            optional_missing += 1
            continue
        problems += found
    _fail(problems, f"{name} [{res.scenario.technique}]: {probe} verdicts differ from the expected")


@pytest.mark.parametrize("name", [s.name for s in S.SCENARIOS if s.all_inconclusive])
def test_offline_everything_inconclusive(result_of, name):
    res = result_of(name)
    _fail(R.inconclusive_problems(res),
          f"{name}: with every control down, all verdicts must be inconclusive")


def test_range_partial_is_per_address(result_of):
    """Within one range, dropped, reset and open addresses each get their own verdict."""
    res = result_of("range_partial")
    verdicts = {}
    for rec in res.records:
        if rec.get("probe") != "tcp":
            continue
        host = rec["target"].rpartition(":")[0].strip("[]")
        if ipaddress.ip_address(host) in ipaddress.ip_network(T.RANGE_V4):
            verdicts[host] = rec["verdict"]
    assert len(verdicts) == ipaddress.ip_network(T.RANGE_V4).num_addresses
    assert {v for v in verdicts.values()} == {"reachable", "blocked", "reset"}


# --- peers ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,peer", list(_peer_params(agreement=False)))
def test_peer_sees_the_technique(result_of, name, peer):
    """The lab really does what the scenario says, as an independent tool sees it."""
    res = result_of(name)
    compared, problems = R.peer_vs_expected(res, peer)
    assert compared > 0, f"{peer} observed nothing comparable in {name}"
    _fail(problems, f"{name}: {peer} does not see {res.scenario.technique!r} as expected")


@pytest.mark.parametrize("name,peer", list(_peer_params(agreement=True)))
def test_netprobe_agrees_with_peer(result_of, name, peer):
    """Wherever the peer can observe the case, netprobe's verdict matches what it saw."""
    res = result_of(name)
    compared, problems = R.netprobe_vs_peer(res, peer)
    assert compared > 0, f"{peer} observed nothing comparable in {name}"
    _fail(problems, f"{name}: netprobe disagrees with {peer}")
