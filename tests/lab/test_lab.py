"""The censorship lab: real netprobe runs against a censor built from kernel packet filters.

For every scenario (tests/lab/scenarios.py) the censor's rules are applied
fresh, `python -m netprobe run` runs in the client namespace, and dig / curl /
nmap measure the same cases.  Results are cached per scenario, so each
scenario costs one netprobe run whatever the number of assertions.

    python -m pytest tests/lab -k dns_nxdomain      # one scenario
"""

from __future__ import annotations

import ipaddress
import re
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


# --- the summary ------------------------------------------------------------------------

def test_every_scenario_says_what_its_summary_names():
    assert all(s.findings for s in S.SCENARIOS), [s.name for s in S.SCENARIOS if not s.findings]
    known = set(R.FINDING_PREFIXES)
    for s in S.SCENARIOS:
        assert set(s.findings) <= known, (s.name, set(s.findings) - known)


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_summary_names_exactly_the_techniques(result_of, name):
    """The summary record's findings name the techniques the scenario applies, and no other."""
    res = result_of(name)
    _fail(R.summary_problems(res),
          f"{name} [{res.scenario.technique}]: the summary should name {sorted(res.scenario.findings)}")


# --- misbehaving servers: every probe ends within its deadline ---------------------------

BOUNDED = [s.name for s in S.SCENARIOS if s.bounded]


@pytest.mark.parametrize("name", BOUNDED)
def test_probes_end_within_the_deadline(result_of, name):
    """A server that never speaks, or drips a byte every 0.5 s, cannot hold a probe past its deadline."""
    res = result_of(name)
    _fail(R.duration_problems(res, slack=0.5), f"{name}: probes outlived --timeout + 0.5 s")
    # The whole run: interpreter start, controls, DNS, then the web probes (which wait on DNS), each
    # stage bounded by the probe deadline.  The servers would hold a connection for minutes.
    limit = 2 * (res.scenario.timeout + 0.5) + 1.5
    assert res.netprobe.seconds <= limit, f"netprobe ran {res.netprobe.seconds:.2f}s (> {limit:g}s)"


# --- DNS injection racing the real resolver ---------------------------------------------

def test_dns_injection_race_keeps_the_genuine_late_answer(result_of):
    """The forged answer came first (dns.bogon); the genuine addresses arrived later, in late_answers."""
    res = result_of("dns_injection_race")
    problems = []
    for domain, genuine in T.WEB_HOSTS.items():
        records = res.matching("dns", domain)
        if len(records) != 1:
            problems.append(f"{domain}: {len(records)} dns records")
            continue
        queries = records[0]["evidence"].get("queries", [])
        first = {a for q in queries for a in q.get("addresses", [])}
        late = {a for q in queries for la in q.get("late_answers", []) for a in la.get("addresses", [])}
        if not first or not first <= set(T.INJECTED_ANSWERS):
            problems.append(f"{domain}: first answers {sorted(first)}, expected the forged {T.INJECTED_ANSWERS}")
        if late != set(genuine):
            problems.append(f"{domain}: late answers {sorted(late)}, expected the genuine {sorted(genuine)}")
        for q in queries:
            for la in q.get("late_answers", []):
                if not la.get("after_ms", 0) >= T.RESOLVER_DELAY * 1000 * 0.8:
                    problems.append(f"{domain} {q.get('qtype')}: late answer after {la.get('after_ms')} ms")
    _fail(problems, "dns_injection_race: netprobe's DNS evidence")
    # dig saw the forged answer too (the first one to arrive).
    digs = [o for o in res.observations_of("dig") if o.probe == "dns"]
    assert digs and all(T.INJECTED_ANSWERS[0] in o.raw for o in digs), [o.raw for o in digs]


def test_scenario_effects_are_undone(result_of, lab):
    """After a scenario with effects: no injector or relay process, no nat rule left in nplab-srv."""
    result_of("dns_injection_race")
    state = lab.effect_state()
    assert state == {"pids": {T.NS_CENSOR: [], T.NS_SRV: []}, "srv_nat": [], "servers": []}, state
    # The resolver answers at once again, and honestly.
    dig = lab.exec_in(T.NS_CLIENT, ["dig", f"@{T.DNS_V4}", "+short", "+time=1", "+tries=1", "t.lab", "A"])
    assert dig.stdout.split() == [T.WEB_HOSTS["t.lab"][0]], dig.stdout


def test_dns_injection_race_over_both_families(lab):
    """The injector's forged datagrams are well-formed over IPv4 and IPv6 (checksums included):
    dig asks the resolver over each family and takes the forged answer, the first to arrive."""
    try:
        lab.apply(S.by_name("dns_injection_race"))
        for server, qtype, forged in ((T.DNS_V4, "A", T.INJECTED_ANSWERS[0]), (T.DNS_V6, "AAAA", T.INJECTED_ANSWERS[1])):
            dig = lab.exec_in(T.NS_CLIENT, ["dig", f"@{server}", "+short", "+time=1", "+tries=1", "t.lab", qtype])
            assert dig.stdout.split() == [forged], (server, qtype, dig.stdout)
    finally:
        lab.clear_effects()


def test_tls_interception_finding_quotes_the_verification_error(result_of):
    """'TLS interception: N domains ... (e.g. DOMAIN: MESSAGE)': the example carries the verification
    error the https record holds (evidence.tls.verify_message)."""
    res = result_of("tls_mitm")
    messages = {r["target"]: r["evidence"].get("tls", {}).get("verify_message") for r in res.matching_probe("https")}
    assert all(messages.values()), f"https records without a verify_message: {messages}"
    lines = [f for f in R.findings(res) if f.startswith("TLS interception:")]
    assert len(lines) == 1, R.findings(res)
    m = re.search(r"\(e\.g\. ([^:]+): (.*)\)$", lines[0])
    assert m and m.group(2).strip() == messages.get(m.group(1)), (
        f"the finding's example should quote {m.group(1) if m else '?'}'s verify_message "
        f"{messages.get(m.group(1)) if m else messages!r}: {lines[0]!r}")


def test_summary_does_not_say_no_blocking_when_it_saw_blocking(lab):
    """Only https probes, at the dripping web host: https is blocked (http.timeout after TLS).  The
    summary must not contradict itself: reason summary.blocking_observed with "No blocking observed"."""
    lab.apply(S.by_name("baseline"))
    run = lab.run_netprobe(["--probes", "dns,https"], targets=T.DRIP_TARGETS)
    https = [r for r in run.records if r.get("probe") == "https"]
    assert [(r["verdict"], r["reason"]) for r in https] == [("blocked", "http.timeout")], https
    (summary,) = [r for r in run.records if r.get("probe") == "summary"]
    findings = summary["evidence"]["findings"]
    assert summary["reason"] == "summary.blocking_observed", summary
    assert not any(f.startswith("No blocking observed") for f in findings), (
        f"summary reason {summary['reason']!r} but findings {findings}")
