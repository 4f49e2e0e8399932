"""The censorship lab: real netprobe runs against a censor built from kernel packet filters.

For every scenario (tests/lab/scenarios.py) the censor's rules are applied
fresh, `python -m netprobe run` runs in the client namespace, and dig / curl /
nmap measure the same cases.  Results are cached per scenario, so each
scenario costs one netprobe run whatever the number of assertions.

    python -m pytest tests/lab -k dns_nxdomain      # one scenario
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import canned_proxy as CP
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
    """No lab namespace has a way out: only veths between lab namespaces (and the censor's delay line, a
    TUN device whose packets link_delay.py hands back to the censor), no default route on the censor."""
    for ns in T.NAMESPACES:
        links = lab.exec_in(ns, ["ip", "-o", "link", "show"]).stdout
        for line in links.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if ns == T.NS_CENSOR and name == T.FAR_DEV:
                assert "tun" in lab.exec_in(ns, ["ip", "-d", "link", "show", name]).stdout, line
                continue
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


# --- tools for checking the lab by hand-like means (dig, curl, a bare connect) from the client -----

def _dig(lab, server: str, name: str, qtype: str, port: int = 53, tcp: bool = False) -> tuple[str, list[str]]:
    """(status or 'TIMEOUT', answers) of one dig from the client namespace."""
    cmd = ["dig", f"@{server}", "-p", str(port), "+time=1", "+tries=1", "+nocookie", name, qtype]
    out = lab.exec_in(T.NS_CLIENT, cmd + (["+tcp"] if tcp else []), check=False, timeout=10).stdout
    status = re.search(r"status: ([A-Z]+)", out)
    answers = re.findall(r"^\S+\s+\d+\s+IN\s+(?:A|AAAA)\s+(\S+)$", out, re.MULTILINE)
    return (status.group(1) if status else "TIMEOUT"), answers


def _curl(lab, url: str, *opts: str) -> tuple[int, str]:
    """(curl exit code, 'HTTP_CODE REDIRECT_URL\nBODY') from the client namespace."""
    res = lab.exec_in(T.NS_CLIENT, ["curl", "-sS", "--max-time", "2", "--connect-timeout", "1",
                                    "-w", "\n%{http_code} %{redirect_url}", *opts, url], check=False, timeout=10)
    return res.returncode, res.stdout


def _connect(lab, host: str, port: int, timeout: float = 1) -> str:
    """'connected', 'timeout' or the errno name of a TCP connect from the client."""
    code = ("import errno, socket, sys\n"
            "try:\n"
            "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n"
            "    print('connected')\n"
            "except TimeoutError: print('timeout')\n"
            "except OSError as e: print(errno.errorcode.get(e.errno, e.errno))\n")
    return lab.exec_in(T.NS_CLIENT, [sys.executable, "-c", code, host, str(port), str(timeout)],
                       timeout=10).stdout.strip()


def _exchange(lab, host: str, port: int, send: bytes = b"", timeout: float = 1) -> dict:
    """A TCP connection from the client: connect, send SEND (if any), read until EOF or TIMEOUT.
    {'state': 'connected' | 'timeout' | errno name, 'connect_ms': float, 'got': bytes, 'eof': bool}"""
    code = ("import errno, json, socket, sys, time\n"
            "host, port, send, timeout = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), float(sys.argv[4])\n"
            "out = {'state': 'connected', 'got': '', 'eof': False}\n"
            "t = time.monotonic()\n"
            "try:\n"
            "    s = socket.create_connection((host, port), timeout=timeout)\n"
            "    out['connect_ms'] = (time.monotonic() - t) * 1000\n"
            "    s.sendall(send)\n"
            "    got = b''\n"
            "    try:\n"
            "        while len(got) < 65536:\n"
            "            chunk = s.recv(4096)\n"
            "            if not chunk:\n"
            "                out['eof'] = True\n"
            "                break\n"
            "            got += chunk\n"
            "    except (TimeoutError, OSError):\n"
            "        pass\n"
            "    out['got'] = got.hex()\n"
            "    s.close()\n"
            "except TimeoutError: out['state'] = 'timeout'\n"
            "except OSError as e: out['state'] = errno.errorcode.get(e.errno, str(e.errno))\n"
            "print(json.dumps(out))\n")
    res = lab.exec_in(T.NS_CLIENT, [sys.executable, "-c", code, host, str(port), send.hex(), str(timeout)], timeout=15)
    out = json.loads(res.stdout)
    out["got"] = bytes.fromhex(out["got"])
    return out


def _at_once(*calls):
    """Run the checks' slow calls (each waits for a timeout) concurrently; their results in order."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda c: c(), calls))


def test_control_name_is_served(lab):
    """control.lab: A/AAAA at the honest resolver and, genuinely, at every liar; TLS with a lab-CA
    certificate for the name and a plain page on :80, on both addresses; its certificate is not the
    service's, and the service's is not its."""
    lab.apply_rules([], name="none")
    v4, v6 = T.CONTROL_DOMAINS[T.CONTROL_NAME]
    for port in (53, *T.LIAR_PORTS.values()):
        server = T.DNS_V4 if port == 53 else T.CENSOR_SVC_V4
        assert _dig(lab, server, T.CONTROL_NAME, "A", port) == ("NOERROR", [v4]), port
        assert _dig(lab, server, T.CONTROL_NAME, "AAAA", port) == ("NOERROR", [v6]), port
    ca = ["--cacert", str(lab.ca_file)]
    for addr in (v4, f"[{v6}]"):
        code, out = _curl(lab, f"https://{T.CONTROL_NAME}/", *ca, "--resolve", f"{T.CONTROL_NAME}:443:{addr}")
        assert code == 0 and out.endswith("200 ") and T.CONTROL_NAME in out, (addr, code, out)
        code, out = _curl(lab, f"http://{T.CONTROL_NAME}/", "--resolve", f"{T.CONTROL_NAME}:80:{addr}")
        assert code == 0 and out.endswith("200 "), (addr, code, out)
    web = T.WEB_HOSTS["web.telegram.lab"][0]
    assert _curl(lab, f"https://{T.CONTROL_NAME}/", *ca, "--resolve", f"{T.CONTROL_NAME}:443:{web}")[0] == 60
    assert _curl(lab, "https://web.telegram.lab/", *ca, "--resolve", f"web.telegram.lab:443:{v4}")[0] == 60
    # The negative controls fail: the censor has no route to documentation addresses.  (Over IPv6 the
    # ICMPv6 error surfaces only with the SYN retransmission, ~1 s: see "Lab artefact" in README.md.)
    negatives = [(h, p) for h in T.NEGATIVE_CONTROLS for p in T.NEGATIVE_CONTROL_PORTS]
    states = _at_once(*[lambda h=h, p=p: _connect(lab, h, p, timeout=2) for h, p in negatives])
    assert all(s in ("EHOSTUNREACH", "ENETUNREACH") for s in states), list(zip(negatives, states))


def _check_walled_garden(lab) -> None:
    for server, name in ((T.DNS_V4, T.CONTROL_NAME), (T.DNS_CANARY, "web.telegram.lab"), ("192.0.2.53", "x.example")):
        assert _dig(lab, server, name, "A") == ("NXDOMAIN", []), server
    assert _dig(lab, T.DNS_V4, T.CONTROL_NAME, "AAAA", tcp=True) == ("NXDOMAIN", [])
    for host, port in (("192.0.2.1", 443), ("192.0.2.1", 80), (T.CONTROL_V4, 12345), (T.DC_ADDRS[1][0], 443)):
        assert _connect(lab, host, port) == "connected", (host, port)
    code, out = _curl(lab, "http://192.0.2.1:8080/")
    assert code == 0 and out.endswith("404 ") and T.GARDEN_NAME in out, out
    ca = ["--cacert", str(lab.ca_file), "--resolve", f"{T.CONTROL_NAME}:443:{T.CONTROL_V4}"]
    assert _curl(lab, f"https://{T.CONTROL_NAME}/", *ca)[0] == 60
    code, out = _curl(lab, f"https://{T.GARDEN_NAME}/", "--cacert", str(lab.rogue_ca_file),
                      "--resolve", f"{T.GARDEN_NAME}:443:192.0.2.1")
    assert code == 0 and out.endswith("404 "), out
    # IPv6 is silent: no answer, no ICMPv6 error
    assert _at_once(*[lambda h=h: _connect(lab, h, 443, timeout=2) for h in (T.CONTROL_V6, "2001:db8::1")]) \
        == ["timeout", "timeout"]


def _check_captive_portal(lab) -> None:
    for server in (T.DNS_V4, T.DNS_V6, T.DNS_CANARY):
        assert _dig(lab, server, T.CONTROL_NAME, "A") == ("NOERROR", [T.CENSOR_SVC_V4]), server
        assert _dig(lab, server, "web.telegram.lab", "AAAA") == ("NOERROR", [T.CENSOR_SVC_V6]), server
    ca = ["--cacert", str(lab.ca_file)]
    for addr in (T.WEB_HOSTS["web.telegram.lab"][0], f"[{T.WEB_HOSTS['web.telegram.lab'][1]}]"):
        code, out = _curl(lab, f"https://{T.PORTAL_NAME}/login", *ca, "--resolve", f"{T.PORTAL_NAME}:443:{addr}")
        assert code == 0 and out.endswith("200 "), (addr, out)  # the portal's certificate is valid ...
        code, _ = _curl(lab, "https://web.telegram.lab/", *ca, "--resolve", f"web.telegram.lab:443:{addr}")
        assert code == 60, addr                                    # ... for the portal only
        code, out = _curl(lab, "http://web.telegram.lab/", "--resolve", f"web.telegram.lab:80:{addr}")
        assert code == 0 and out.endswith(f"302 {T.PORTAL_LOCATION}"), (addr, out)
    for host in T.NEGATIVE_CONTROLS:
        for port in (*T.NEGATIVE_CONTROL_PORTS, 5222):
            assert _connect(lab, host, port) == "connected", (host, port)


def _check_dead_resolver(lab) -> None:
    digs = _at_once(*[lambda s=s: _dig(lab, s, T.CONTROL_NAME, "A")[0] for s in (T.DNS_V4, T.DNS_V6, T.DNS_CANARY)])
    assert digs == ["TIMEOUT"] * 3, digs  # the resolver over both families; the canary is silent as always
    code, _ = _curl(lab, "https://web.telegram.lab/", "--cacert", str(lab.ca_file),
                    "--resolve", f"web.telegram.lab:443:{T.WEB_HOSTS['web.telegram.lab'][0]}")
    assert code == 0


def _check_tls_intercept_all(lab) -> None:
    for host in T.NEGATIVE_CONTROLS:
        assert _connect(lab, host, 443) == "connected", host
    states = _at_once(*[lambda h=h: _connect(lab, h, 80, timeout=2) for h in T.NEGATIVE_CONTROLS])
    assert all(s in ("EHOSTUNREACH", "ENETUNREACH") for s in states), states
    for addr in (T.CONTROL_V4, f"[{T.CONTROL_V6}]"):
        code, out = _curl(lab, f"https://{T.CONTROL_NAME}/", "--cacert", str(lab.ca_file),
                          "--resolve", f"{T.CONTROL_NAME}:443:{addr}")
        assert code == 60, (addr, out)
        code, out = _curl(lab, f"https://{T.CONTROL_NAME}/", "--cacert", str(lab.rogue_ca_file),
                          "--resolve", f"{T.CONTROL_NAME}:443:{addr}")
        assert code == 0 and "mitm" in out, (addr, out)   # the rogue CA forged it
        assert _curl(lab, f"http://{T.CONTROL_NAME}/", "--resolve", f"{T.CONTROL_NAME}:80:{addr}")[1].endswith("200 ")
    assert _dig(lab, T.DNS_V4, T.CONTROL_NAME, "A") == ("NOERROR", [T.CONTROL_V4])


def _check_controls_blocked(lab) -> None:
    ca = ["--cacert", str(lab.ca_file)]
    curl, connect = _at_once(
        lambda: _curl(lab, f"https://{T.CONTROL_NAME}/", *ca, "--resolve", f"{T.CONTROL_NAME}:443:{T.CONTROL_V4}")[0],
        lambda: _connect(lab, T.CONTROL_V6, 443))
    assert (curl, connect) == (28, "timeout")
    web = T.WEB_HOSTS["web.telegram.lab"][0]
    assert _curl(lab, "https://web.telegram.lab/", *ca, "--resolve", f"web.telegram.lab:443:{web}")[0] == 0
    assert _dig(lab, T.DNS_V4, T.CONTROL_NAME, "A") == ("NOERROR", [T.CONTROL_V4])  # the resolver still works


def _check_aaaa_dropped(lab) -> None:
    asks = [(server, name, qtype, tcp) for server in (T.DNS_V4, T.DNS_V6) for tcp in (False, True)
            for name in (T.CONTROL_NAME, "web.telegram.lab") for qtype in ("A", "AAAA")]
    got = _at_once(*[lambda a=a: _dig(lab, a[0], a[1], a[2], tcp=a[3]) for a in asks])
    for (server, name, qtype, tcp), answer in zip(asks, got):
        genuine = (T.CONTROL_DOMAINS | T.WEB_HOSTS)[name][0]
        want = ("NOERROR", [genuine]) if qtype == "A" else ("TIMEOUT", [])
        assert answer == want, (server, name, qtype, "tcp" if tcp else "udp", answer)
    assert _dig(lab, T.DNS_V4, "ipv6.telegram.lab", "A") == ("NOERROR", [])  # NODATA: it has only an AAAA
    assert _dig(lab, T.DNS_V4, "web.telegram.lab", "MX")[0] == "NOERROR"       # only AAAA is dropped


def _check_http_blockpage_200(lab) -> None:
    page = T.KNOWN_BLOCKPAGE.read_text(encoding="latin-1")
    for domain, addrs in T.WEB_HOSTS.items():
        for addr in addrs:
            pinned = f"[{addr}]" if ":" in addr else addr
            code, out = _curl(lab, f"http://{domain}/", "--resolve", f"{domain}:80:{pinned}")
            assert code == 0 and out.endswith("200 ") and out.startswith(page), (domain, addr, out[-200:])
            code, _ = _curl(lab, f"https://{domain}/", "--cacert", str(lab.ca_file), "--resolve", f"{domain}:443:{pinned}")
            assert code == 0, (domain, addr)   # HTTPS untouched
    code, out = _curl(lab, f"http://{T.CONTROL_NAME}/", "--resolve", f"{T.CONTROL_NAME}:80:{T.CONTROL_V4}")
    assert code == 0 and "not the service" in out, out


GET = b"GET / HTTP/1.1\r\nHost: control.lab\r\n\r\n"
MTPROTO_LIKE = b"\xef" + bytes(range(40))   # an abridged-transport opening: not HTTP, not TLS
REFUSED = "ECONNREFUSED"
NO_ROUTE = ("EHOSTUNREACH", "ENETUNREACH")


def _exchanges(lab, *calls: tuple) -> list[dict]:
    """Several _exchange calls (host, port[, send[, timeout]]) at once; results in order."""
    return _at_once(*[lambda c=c: _exchange(lab, *c) for c in calls])


def _check_intercept_spares_special(lab) -> None:
    assert _dig(lab, T.DNS_V4, T.CONTROL_NAME, "A") == ("TIMEOUT", [])          # the resolver is dead
    for server in (T.DNS_CANARY, "192.0.2.53", T.CONTROL_V4):                     # anywhere else: NXDOMAIN
        assert _dig(lab, server, "web.telegram.lab", "A") == ("NXDOMAIN", []), server
    spared, closed, dc443, dc80, control80, v6 = _exchanges(
        lab, ("192.0.2.1", 443), (T.CONTROL_V4, 12345), (T.DC_ADDRS[1][0], 443, MTPROTO_LIKE),
        (T.DC_ADDRS[2][0], T.DC_HTTP_PORT, GET), (T.CONTROL_V4, 80, GET), (T.CONTROL_V6, 443))
    assert spared["state"] == REFUSED, spared
    others = _exchanges(lab, ("198.51.100.7", 80), ("203.0.113.9", 5222))
    assert [o["state"] for o in others] == [REFUSED, REFUSED], others
    assert closed["state"] == "connected", closed                       # a closed port of the control host
    assert (dc443["got"], dc443["eof"]) == (CP.BAD_REQUEST, True), dc443  # MTProto: the box's 400
    assert dc80["got"] == CP.NOT_FOUND, dc80                            # a GET: the box's 404 ...
    assert control80["got"] == CP.NOT_FOUND, control80                  # ... the control host's page too
    assert v6["state"] == "ENETUNREACH", v6                             # no IPv6 route
    ca = ["--cacert", str(lab.ca_file), "--resolve", f"{T.CONTROL_NAME}:443:{T.CONTROL_V4}"]
    assert _curl(lab, f"https://{T.CONTROL_NAME}/", *ca)[0] == 60
    code, out = _curl(lab, f"https://{T.PROXY_NAME}/", "--cacert", str(lab.rogue_ca_file),
                      "--resolve", f"{T.PROXY_NAME}:443:{T.WEB_HOSTS['web.telegram.lab'][0]}")
    assert code == 0 and out.endswith("404 "), out                      # its own TLS, then its own 404


def _check_intercept_canned_all(lab) -> None:
    unasked = _exchanges(lab, (T.DC_ADDRS[1][0], 443), (T.DC_ADDRS[2][1], T.DC_HTTP_PORT), (T.CONTROL_V4, 12345),
                         (T.CONTROL_V6, 443, MTPROTO_LIKE))
    assert all((u["got"], u["eof"]) == (CP.BAD_REQUEST, True) for u in unasked), unasked
    spared = _exchanges(lab, ("192.0.2.1", 443), ("203.0.113.1", 80), ("2001:db8::1", 443))
    assert [x["state"] for x in spared] == [REFUSED] * 3, spared
    ca = ["--cacert", str(lab.ca_file), "--resolve", f"{T.CONTROL_NAME}:443:{T.CONTROL_V4}"]
    assert _curl(lab, f"https://{T.CONTROL_NAME}/", *ca)[0] == 35            # TLS meets an HTTP answer
    assert _dig(lab, T.DNS_V4, T.CONTROL_NAME, "A") == ("NOERROR", [T.CONTROL_V4])  # DNS untouched


def _check_intercept_port80(lab) -> None:
    control80, dc80, spared4, spared6, closed = _exchanges(
        lab, (T.CONTROL_V4, 80, GET), (T.DC_ADDRS[1][1], T.DC_HTTP_PORT, MTPROTO_LIKE), ("192.0.2.1", 80),
        ("2001:db8::1", 80), (T.CONTROL_V4, 12345))
    assert control80["got"] == CP.NOT_FOUND and dc80["got"] == CP.BAD_REQUEST, (control80, dc80)
    assert (spared4["state"], spared6["state"]) == (REFUSED, REFUSED), (spared4, spared6)
    assert closed["state"] == REFUSED, closed                            # other ports: genuine
    assert _exchange(lab, "192.0.2.1", 443, timeout=2)["state"] in NO_ROUTE
    ca = ["--cacert", str(lab.ca_file), "--resolve", f"{T.CONTROL_NAME}:443:{T.CONTROL_V4}"]
    assert _curl(lab, f"https://{T.CONTROL_NAME}/", *ca)[0] == 0             # 443 genuine


def _connect_ms(lab, hosts: list[str], port: int = T.DC_PORT, tries: int = 3) -> dict[str, float]:
    """host -> the least of TRIES connects' times (ms), from the client, in one process."""
    code = ("import json, socket, sys, time\n"
            "port, tries, out = int(sys.argv[1]), int(sys.argv[2]), {}\n"
            "for host in sys.argv[3:]:\n"
            "    times = []\n"
            "    for _ in range(tries):\n"
            "        t = time.monotonic()\n"
            "        socket.create_connection((host, port), timeout=2).close()\n"
            "        times.append((time.monotonic() - t) * 1000)\n"
            "    out[host] = min(times)\n"
            "print(json.dumps(out))\n")
    res = lab.exec_in(T.NS_CLIENT, [sys.executable, "-c", code, str(port), str(tries), *hosts], timeout=30)
    return json.loads(res.stdout)


def _check_far_genuine(lab) -> None:
    far = _connect_ms(lab, list(T.DC_ADDRS[T.FAR_DC]))
    near = _connect_ms(lab, [*T.DC_ADDRS[1], T.range_addresses(T.RANGE_V4)[1]])
    assert all(ms >= T.FAR_DELAY * 1000 for ms in far.values()), far
    assert all(ms < 20 for ms in near.values()), near


def _check_fast_far_away(lab) -> None:
    dcs = [a for addrs in T.DC_ADDRS.values() for a in addrs]
    assert all(ms < 20 for ms in _connect_ms(lab, dcs).values())                 # a box nearby ...
    said = _exchanges(lab, *[(a, T.DC_PORT, MTPROTO_LIKE, 0.5) for a in dcs])
    assert all(x["got"] == b"" and not x["eof"] for x in said), said             # ... that never speaks
    assert _exchange(lab, "192.0.2.1", 443, timeout=2)["state"] in NO_ROUTE     # nothing else intercepted


def _check_fast_far_relay(lab) -> None:
    dcs = [a for addrs in T.DC_ADDRS.values() for a in addrs]
    assert all(ms < 20 for ms in _connect_ms(lab, dcs).values())                 # a box nearby ...
    said = _exchanges(lab, *[(a, T.DC_PORT, MTPROTO_LIKE, 1) for a in dcs])    # ... relaying to the DCs:
    assert all(x["got"] and x["got"] != CP.BAD_REQUEST for x in said), said     # their own answer (-404)


BROKEN_NETWORK_CHECKS = {
    "walled_garden": _check_walled_garden, "captive_portal": _check_captive_portal,
    "dead_resolver": _check_dead_resolver, "tls_intercept_all": _check_tls_intercept_all,
    "controls_blocked": _check_controls_blocked, "aaaa_dropped": _check_aaaa_dropped,
    "http_blockpage_200": _check_http_blockpage_200,
    "intercept_spares_special": _check_intercept_spares_special,
    "intercept_canned_all": _check_intercept_canned_all, "intercept_port80": _check_intercept_port80,
    "far_genuine": _check_far_genuine, "fast_far_away": _check_fast_far_away,
    "fast_far_relay": _check_fast_far_relay,
}


@pytest.mark.parametrize("name", list(BROKEN_NETWORK_CHECKS))
def test_scenario_network_does_what_it_says(lab, name):
    """The scenarios of broken networks (and the known blockpage), checked with dig, curl and bare
    connects from the client: the lab does what the scenario says, whatever netprobe makes of it."""
    try:
        lab.apply(S.by_name(name))
        BROKEN_NETWORK_CHECKS[name](lab)
    finally:
        lab.clear_effects()
        lab.apply_rules([], name="none")


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


# --- interceptors (issue 18) -------------------------------------------------------------

INTERCEPTED = [s.name for s in S.SCENARIOS if s.intercepted or s.interception_only]


@pytest.mark.parametrize("name", INTERCEPTED)
def test_interception_is_neither_access_nor_blocking(result_of, name):
    """Where a box on the path answers for every destination, a completed handshake or an answer is
    the box's (never reachable), and a failure is not a block that a control backed (never blocked or
    reset); the summary says so first."""
    res = result_of(name)
    _fail(R.interception_problems(res), f"{name} [{res.scenario.technique}]: read as access or blocking")


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


@pytest.mark.parametrize("name", [s.name for s in S.SCENARIOS if s.effects])
def test_scenario_effects_are_undone(result_of, lab, name):
    """After a scenario with effects: no injector or relay process, no nat rule left in nplab-srv, the
    client's IPv6 default route back."""
    result_of(name)
    state = lab.effect_state()
    assert state == {"pids": {T.NS_CENSOR: [], T.NS_SRV: []}, "srv_nat": [], "servers": [],
                     "client_v6_default": True}, state
    # The resolver answers at once again, and honestly (under no rules: only the effects are undone here).
    lab.apply_rules([], name="none")
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
