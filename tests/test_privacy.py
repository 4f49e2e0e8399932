"""Privacy and safety: records identify nothing about the user, no packet goes to a host
outside the plan, and TLS verification cannot be turned off.

* The records of a real run against loopback servers (every probe kind) hold no host
  name, user name, home directory, address of a local interface or source port.  The
  run gets a distinctive host name (a UTS namespace, as root) and user name (USER,
  LOGNAME: what getpass.getuser() reads), so that a leak cannot hide behind a
  coincidence.
* In network namespaces the test creates, the client's default route leads to a peer
  namespace: any packet netprobe sent beyond its plan (an update check, telemetry, a
  stray DNS lookup) would leave through it.  nftables records every TCP/UDP
  destination in the client's OUTPUT hook; each must be in the plan.
* There is no --insecure: a certificate that does not verify is always
  tls.bad_certificate, whatever the options or the environment say.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from netprobe.plan import DEFAULT_NEGATIVE_CONTROLS
from tests.support import netns
from tests.support.fake_dns import FakeDNS
from tests.support.hostile import (
    REPO_ROOT,
    HostileServers,
    can_bind_privileged,
    jsonl,
    loopback_net,
    make_pki,
    netprobe_cmd,
    netprobe_env,
    run_netprobe,
    write_targets,
)

needs_low_ports = pytest.mark.skipif(not can_bind_privileged(), reason="binds ports 80/443 on loopback: needs root")

OK = b"HTTP/1.1 200 OK\r\nServer: lab\r\nContent-Length: 2\r\n\r\nok"
NOT_MTPROTO = b"HTTP/1.1 400 Bad Request\r\n\r\n"
DOMAIN = "web.privacy.test"


def strings_and_ints(value, strings: list, ints: list) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            strings.append(k)
            strings_and_ints(v, strings, ints)
    elif isinstance(value, list):
        for v in value:
            strings_and_ints(v, strings, ints)
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        ints.append(value)
    elif isinstance(value, str):
        strings.append(value)


def local_addresses() -> set[str]:
    proc = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        return set()
    return {a["local"] for link in json.loads(proc.stdout) for a in link.get("addr_info", [])}


# --- nothing identifying the user ----------------------------------------------------------

@pytest.fixture(scope="module")
def loopback_world(tmp_path_factory):
    if not can_bind_privileged():
        pytest.skip("binds ports 80/443 on loopback: needs root")
    net = loopback_net()
    web = str(net[1])
    ca_dir = Path(tempfile.mkdtemp(prefix="netprobe-ca-"))  # a path that names nobody
    pki = make_pki(ca_dir, [DOMAIN])
    servers = HostileServers()
    try:
        servers.listen("answer", web, 443, tls=pki.server_context(), payload=OK)
        servers.listen("answer", web, 80, payload=OK)
        endpoints = [servers.listen("answer", str(net[2 + i]), payload=NOT_MTPROTO, wait_request=False)
                     for i in range(2)]
        control = servers.listen("silent", "127.0.0.2")
        with FakeDNS({DOMAIN: [web]}) as dns_server:
            targets = write_targets(tmp_path_factory.mktemp("privacy") / "t.toml", networks=[str(net)],
                                    controls=["%s:%d" % control], domains=[DOMAIN],
                                    endpoints=[f"{h}:{p}" for h, p in endpoints], dns_canary=[str(net[9])])
            yield {"targets": targets, "resolver": dns_server.address, "ca": pki.ca, "servers": servers,
                   "planned": {web, str(net[2]), str(net[3]), str(net[9]), "127.0.0.2", "127.0.0.1"}}
    finally:
        servers.close()
        shutil.rmtree(ca_dir, ignore_errors=True)


@needs_low_ports
def test_records_hold_nothing_identifying_the_user(loopback_world, tmp_path):
    secret_user = f"npuser{uuid.uuid4().hex[:8]}"
    secret_home = f"/tmp/nphome{uuid.uuid4().hex[:8]}"
    archive = tmp_path / "results.jsonl"
    argv = netprobe_cmd("run", "--targets", str(loopback_world["targets"]), "--resolver", loopback_world["resolver"],
                        "--ca-bundle", str(loopback_world["ca"]), "--timeout", "2", "--format", "jsonl",
                        "--output", str(archive))
    secret_host = None
    if os.geteuid() == 0 and shutil.which("unshare"):
        secret_host = f"nphost{uuid.uuid4().hex[:8]}"
        argv = ["unshare", "--uts", "sh", "-c", f'hostname {secret_host} && exec "$@"', "sh", *argv]
    env = netprobe_env(USER=secret_user, LOGNAME=secret_user, HOME=secret_home, HOSTNAME=secret_host or "")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    records = jsonl(proc.stdout)
    assert {r["probe"] for r in records} >= {"control", "dns", "dns_injection", "tcp", "https", "http", "mtproto"}
    assert {r["verdict"] for r in records if r["probe"] in ("https", "tcp", "control")} == {"reachable"}
    text = proc.stdout + archive.read_text()

    for secret in filter(None, (secret_user, secret_home, secret_host, os.path.basename(secret_home))):
        assert secret not in text
    real_host, real_user = socket.gethostname(), getpass.getuser()
    strings: list[str] = []
    ints: list[int] = []
    for record in records:
        strings_and_ints(record, strings, ints)
    words = {w for s in strings for w in re.split(r"[^A-Za-z0-9_.-]+", s)}
    assert real_host not in words and secret_host not in words
    assert real_user not in words  # as a word: "root" may not appear even as a path part

    # No address of a local interface, other than the loopback addresses the plan itself names.
    planned = loopback_world["planned"]
    for address in local_addresses() - planned:
        pattern = re.compile(rf"(?<![0-9A-Fa-f.:]){re.escape(address)}(?![0-9A-Fa-f.:])")
        assert not pattern.search(text), f"local address {address} is in the records"
    # No source port of ours, as seen by the servers (the targets' own ports aside).
    target_ports = {int(r["address"].rsplit(":", 1)[1]) for r in records if r["address"]}
    source_ports = {port for _, port in loopback_world["servers"].peers} - target_ports
    assert source_ports
    assert not source_ports & set(ints), "a source port is in the evidence"
    assert not any(f":{port}" in s for s in strings for port in source_ports)


@needs_low_ports
def test_the_ca_bundle_path_does_not_name_the_user(loopback_world, tmp_path):
    home = tmp_path / "home" / "alice"
    home.mkdir(parents=True)
    shutil.copy(loopback_world["ca"], home / "ca.pem")
    proc, _ = run_netprobe("run", "--targets", str(loopback_world["targets"]), "--resolver",
                           loopback_world["resolver"], "--ca-bundle", str(home / "ca.pem"), "--probes", "https",
                           "--timeout", "2", "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    assert "alice" not in proc.stdout


# --- nothing leaves for a host outside the plan ---------------------------------------------

NFT_ACCOUNTING = """
table inet npt_acct {
    set dst4 { type ipv4_addr; flags dynamic; }
    set dst6 { type ipv6_addr; flags dynamic; }
    chain out {
        type filter hook output priority 0; policy accept;
        meta l4proto { tcp, udp } meta nfproto ipv4 add @dst4 { ip daddr }
        meta l4proto { tcp, udp } meta nfproto ipv6 add @dst6 { ip6 daddr }
    }
}
"""


def nft_set(spaces: netns.Namespaces, ns: str, name: str) -> set[str]:
    proc = spaces.run(ns, "nft", "-j", "list", "set", "inet", "npt_acct", name)
    assert proc.returncode == 0, proc.stderr
    found = set()
    for item in json.loads(proc.stdout)["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            found.add(element if isinstance(element, str) else element.get("elem", {}).get("val"))
    return found


@pytest.fixture
def measured_network(tmp_path):
    reason = netns.unavailable_reason() or (None if shutil.which("nft") else "needs nft (nftables)")
    if reason:
        pytest.skip(reason)
    spaces = netns.Namespaces()
    server_proc = None
    try:
        client = spaces.add("client")
        internet = spaces.add("net")
        spaces.link(client, ["10.214.0.1/24", "fd14::1/64"], internet, ["10.214.0.2/24", "fd14::2/64"])
        netns.sh("ip", "-n", client, "route", "add", "default", "via", "10.214.0.2")
        netns.sh("ip", "-n", client, "-6", "route", "add", "default", "via", "fd14::2")
        for address in ("10.214.1.1", "10.214.1.2", "10.214.1.9", "10.214.2.7", "10.214.3.53"):
            netns.sh("ip", "-n", internet, "addr", "add", f"{address}/32", "dev", "lo")
        rules = tmp_path / "acct.nft"
        rules.write_text(NFT_ACCOUNTING)
        made = spaces.run(client, "nft", "-f", str(rules))
        assert made.returncode == 0, made.stderr
        spec = {"pki": str(tmp_path / "pki"), "names": [DOMAIN],
                "tcp": [["answer", "10.214.1.1", 443, {"tls": True, "payload": {"bytes": OK.hex()}}],
                        ["answer", "10.214.1.1", 80, {"payload": {"bytes": OK.hex()}}],
                        ["answer", "10.214.1.2", 443, {"payload": {"bytes": NOT_MTPROTO.hex()},
                                                       "wait_request": False}],
                        ["silent", "10.214.2.7", 8443, {}]],
                "dns": {"host": "10.214.3.53", "behaviour": {DOMAIN: ["10.214.1.1"]}}}
        server_proc = subprocess.Popen(["ip", "netns", "exec", internet, *netprobe_cmd()[:1], "-m",
                                        "tests.support.ns_servers", json.dumps(spec)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=netprobe_env(), cwd=REPO_ROOT)
        bound = json.loads(server_proc.stdout.readline() or "null")
        assert bound, server_proc.stderr.read()
        targets = write_targets(tmp_path / "plan.toml", networks=["10.214.1.0/24"], controls=["10.214.2.7:8443"],
                                domains=[DOMAIN], endpoints=["10.214.1.2:443"], dns_canary=["10.214.1.9"])
        yield {"spaces": spaces, "client": client, "targets": targets, "resolver": bound["dns"],
               "ca": tmp_path / "pki" / "ca.pem",
               # The default negative controls (documentation addresses and a DNS-only root server,
               # netprobe/plan.py): part of the plan `netprobe targets` prints.
               "plan": {"10.214.1.1", "10.214.1.2", "10.214.1.9", "10.214.2.7", "10.214.3.53",
                        *(str(ip) for ip in DEFAULT_NEGATIVE_CONTROLS if ip.version == 4)}}
    finally:
        if server_proc is not None:
            server_proc.kill()
            server_proc.communicate(timeout=10)
        spaces.close()


def test_no_packet_goes_to_a_host_outside_the_plan(measured_network):
    world = measured_network
    spaces, client = world["spaces"], world["client"]
    proc = spaces.run(client, *netprobe_cmd("run", "--targets", str(world["targets"]), "--resolver",
                                            world["resolver"], "--ca-bundle", str(world["ca"]), "--timeout", "1",
                                            "--format", "jsonl"),
                      env=netprobe_env(), cwd=str(REPO_ROOT), timeout=60)
    assert proc.returncode == 0, proc.stderr
    records = jsonl(proc.stdout)
    assert {r["probe"] for r in records} >= {"control", "dns", "dns_injection", "tcp", "https", "http", "mtproto"}
    assert next(r for r in records if r["probe"] == "https")["verdict"] == "reachable"
    destinations = nft_set(spaces, client, "dst4") | nft_set(spaces, client, "dst6")
    assert {"10.214.1.1", "10.214.3.53"} <= destinations  # the accounting saw the run
    assert destinations <= world["plan"], f"packets to hosts outside the plan: {destinations - world['plan']}"


# --- TLS verification is never turned off ----------------------------------------------------

@pytest.mark.parametrize("option", ["--insecure", "-k", "--no-verify", "--no-check-certificate"])
def test_there_is_no_option_to_skip_verification(option):
    proc, _ = run_netprobe("run", option, "--targets", os.devnull)
    assert proc.returncode == 2
    assert "No such option" in proc.stderr


@pytest.fixture(scope="module")
def untrusted_site(tmp_path_factory):
    if not can_bind_privileged():
        pytest.skip("binds port 443 on loopback: needs root")
    tmp = tmp_path_factory.mktemp("untrusted")
    net = loopback_net()
    trusted = make_pki(tmp / "trusted", ["elsewhere.test"])  # the CA the run is told to trust
    rogue = make_pki(tmp / "rogue", [DOMAIN])  # a valid-looking certificate for DOMAIN, from another CA
    servers = HostileServers()
    try:
        servers.listen("answer", str(net[1]), 443, tls=rogue.server_context(), payload=OK)
        # A certificate from the trusted CA, but for another name.
        servers.listen("answer", str(net[2]), 443, tls=trusted.server_context(), payload=OK)
        targets = write_targets(tmp / "t.toml", networks=[str(net)],
                                domains=[{"name": DOMAIN, "addresses": [str(net[1])]},
                                         {"name": "other.privacy.test", "addresses": [str(net[2])]}])
        yield {"targets": str(targets), "trusted": str(trusted.ca)}
    finally:
        servers.close()


@pytest.mark.parametrize("env", [{}, {"PYTHONHTTPSVERIFY": "0"}, {"NETPROBE_INSECURE": "1", "NETPROBE_VERIFY": "0"},
                                 {"CURL_CA_BUNDLE": "", "REQUESTS_CA_BUNDLE": ""}],
                         ids=["plain", "PYTHONHTTPSVERIFY=0", "NETPROBE_INSECURE", "empty-bundle-vars"])
@pytest.mark.parametrize("with_bundle", [True, False], ids=["ca-bundle", "system-store"])
def test_a_certificate_that_does_not_verify_is_always_bad_certificate(untrusted_site, env, with_bundle):
    args = ["run", "--targets", untrusted_site["targets"], "--probes", "https", "--timeout", "2",
            "--format", "jsonl"]
    if with_bundle:
        args += ["--ca-bundle", untrusted_site["trusted"]]
    proc, _ = run_netprobe(*args, env=netprobe_env(**env))
    assert proc.returncode == 0, proc.stderr
    https = [r for r in jsonl(proc.stdout) if r["probe"] == "https"]
    assert sorted((r["target"], r["verdict"], r["reason"]) for r in https) == [
        ("other.privacy.test", "blocked", "tls.bad_certificate"), (DOMAIN, "blocked", "tls.bad_certificate")]
    assert all("http" not in r["evidence"] for r in https)  # not a byte of HTTP went over them
