#!/usr/bin/env python3
"""The censorship lab's network: namespaces, veths, servers and the censor's rules.

Everything lives in network namespaces named ``nplab-*`` that are connected
only to each other: none has a link to the host's network, so no packet the
lab makes can leave the machine.  Only private addresses are used
(10.x, fd00::/8); the address plan is the constants below.

    nplab-client ── nplab-censor ─┬─ nplab-srv  (dns, web nginx, control, AnyIP range)
                                  └─ nplab-dc   (MTProto data centers, misbehaving servers)

The censor forwards between client and "internet" and applies a scenario's
iptables / ip6tables rules (filter FORWARD, nat PREROUTING).  It also hosts
the censor's own servers: "liar" dnsmasq instances and a man-in-the-middle
nginx, reached by DNAT.

Used by the tests (tests/lab/conftest.py) and by hand:

    python tests/lab/topology.py up              # build and leave it up
    python tests/lab/topology.py apply dns_nxdomain
    python tests/lab/topology.py status
    python tests/lab/topology.py down
"""

from __future__ import annotations

import atexit
import datetime as _dt
import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent

# Everything the lab creates is named from PREFIX; another prefix gives an independent lab (its own
# namespaces, state dir and lock), e.g. NPLAB_PREFIX=nplab2- to run two at once.  No prefix may be
# the beginning of another: leftovers are found by prefix.
PREFIX = os.environ.get("NPLAB_PREFIX", "nplab-")
NS_CLIENT = PREFIX + "client"
NS_CENSOR = PREFIX + "censor"
NS_SRV = PREFIX + "srv"
NS_DC = PREFIX + "dc"
NAMESPACES = (NS_CLIENT, NS_CENSOR, NS_SRV, NS_DC)

# --- the address plan --------------------------------------------------------
# Links (veth pairs), 10.66.N.0/24 and fd66:N::/64:
#   client eth0 10.66.1.2   <->  censor c-client 10.66.1.1
#   srv    eth0 10.66.2.2   <->  censor c-srv    10.66.2.1
#   dc     eth0 10.66.3.2   <->  censor c-dc     10.66.3.1
CENSOR_CLIENT_IF = "c-client"
CENSOR_SRV_IF = "c-srv"
CENSOR_DC_IF = "c-dc"
LINKS = (
    # (ns, ifname, v4, v6, censor-side ifname, censor v4, censor v6)
    (NS_CLIENT, "eth0", "10.66.1.2", "fd66:1::2", CENSOR_CLIENT_IF, "10.66.1.1", "fd66:1::1"),
    (NS_SRV, "eth0", "10.66.2.2", "fd66:2::2", CENSOR_SRV_IF, "10.66.2.1", "fd66:2::1"),
    (NS_DC, "eth0", "10.66.3.2", "fd66:3::2", CENSOR_DC_IF, "10.66.3.1", "fd66:3::1"),
)

# The service as the target file describes it: where it genuinely lives.
SERVICE_NETWORKS = ("10.77.0.0/16", "fd77::/16")

# The lab's honest resolver (dnsmasq in nplab-srv).  Outside the service networks.
DNS_V4 = "10.53.0.53"
DNS_V6 = "fd53::53"
RESOLVER = f"{DNS_V4}:53"

# Service domains -> genuine addresses (nginx in nplab-srv, TLS from the lab CA).
# ipv6.telegram.lab has only an AAAA record: whatever address a probe picks, it goes over IPv6.
WEB_HOSTS: dict[str, tuple[str, ...]] = {
    "web.telegram.lab": ("10.77.1.10", "fd77:1::10"),
    "telegram.lab": ("10.77.1.11", "fd77:1::11"),
    "t.lab": ("10.77.1.12", "fd77:1::12"),
    "ipv6.telegram.lab": ("fd77:1::13",),
}
DOMAINS = tuple(WEB_HOSTS)
PINNED = {"web.telegram.lab": WEB_HOSTS["web.telegram.lab"]}  # `addresses = [...]` in the target file
WEB_NET_V4, WEB_NET_V6 = "10.77.1.0/24", "fd77:1::/64"

# Data centers (tests/lab/mtproto_server.py in nplab-dc).
DC_ADDRS = {1: ("10.77.2.1", "fd77:2::1"), 2: ("10.77.2.2", "fd77:2::2")}
DC_NET_V4, DC_NET_V6 = "10.77.2.0/24", "fd77:2::/64"
DC_PORT = 443
ENDPOINTS = ("10.77.2.1:443", "10.77.2.2:443", "[fd77:2::1]:443", "[fd77:2::2]:443")

# A whole range answering at once: AnyIP local routes in nplab-srv + nginx on the wildcard.
ANYIP_V4, ANYIP_V6 = "10.77.64.0/24", "fd77:64::/64"
RANGE_V4 = "10.77.64.0/28"       # 16 addresses, sample = 0
RANGE_V6 = "fd77:64::/126"       # 4 addresses, sample = 0
RANGE_PORT = 443
RANGES = (RANGE_V4, RANGE_V6)

# DNS canary: an address running no DNS server (a data center); only an on-path injector answers it.
DNS_CANARY = DC_ADDRS[1][0]

# Misbehaving servers (all in nplab-dc): they complete the TCP handshake and then say nothing, or drip
# one byte every DRIP_INTERVAL seconds.  Not censorship, but what some censors' equipment looks like.
#   MTProto: tests/lab/mtproto_server.py --mode silent / --mode drip
#   web:     tests/lab/slow_server.py (:443 and :80; the drip one completes TLS with the lab CA first)
SILENT_DC = ("10.77.2.3", "fd77:2::3")
DRIP_DC = ("10.77.2.4", "fd77:2::4")
ODD_WEB_NET_V4, ODD_WEB_NET_V6 = "10.77.3.0/24", "fd77:3::/64"
SILENT_WEB: dict[str, tuple[str, ...]] = {"silent.telegram.lab": ("10.77.3.1", "fd77:3::1")}
DRIP_WEB: dict[str, tuple[str, ...]] = {"drip.telegram.lab": ("10.77.3.2", "fd77:3::2")}
DRIP_INTERVAL = 0.5

# Control host: not the service, answers TCP 443 (nginx in nplab-srv).  Outside networks.
CONTROL_V4, CONTROL_V6 = "10.88.0.1", "fd88::1"
CONTROLS = (f"{CONTROL_V4}:443", f"[{CONTROL_V6}]:443")
# Control names (`control_domains` in every target file, pinned: the lab's addresses are private and
# would otherwise look like bogons).  Served by the control host: nginx :443 with a lab-CA certificate
# for the name (SNI), :80 a plain 200 page; A/AAAA in the honest dnsmasq and, genuinely, in every liar
# (a censor's resolver lies only for the names it blocks).
CONTROL_NAME = "control.lab"
# What control.lab's nginx answers on :80 (below): the target files state it as the control's genuine
# HTTP answer, so a censor that answers plain HTTP in its place fails the control (http.not_genuine).
CONTROL_HTTP_MARKER = "netprobe lab control"
CONTROL_DOMAINS: dict[str, tuple[str, ...]] = {CONTROL_NAME: (CONTROL_V4, CONTROL_V6)}
# netprobe's default negative controls (documentation addresses: nothing may accept a connection
# there), one per port the plan uses; the censor has no route to them, so they fail at once unless a
# scenario DNATs every destination.
NEGATIVE_CONTROLS = ("192.0.2.1", "2001:db8::1")
NEGATIVE_CONTROL_PORTS = (80, 443)

# The censor's own hosts (on the censor's lo).
CENSOR_SVC_V4, CENSOR_SVC_V6 = "10.66.0.1", "fd66::1"
LIAR_PORTS = {"nxdomain": 5301, "bogon": 5302, "docrange": 5303, "teredo": 5304}
LIAR_ANSWERS = {  # mode -> (A, AAAA) answered for every service domain; None = NXDOMAIN
    "nxdomain": None,
    "bogon": ("10.99.99.99", "fd99::99"),          # private, outside networks
    "docrange": ("198.51.100.80", "2001:db8::80"),  # documentation ranges (not global either)
    "teredo": ("10.99.99.99", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),  # GFW-style forged AAAA
}
MITM_PORT = 443
BLOCKPAGE_PORT = 80   # the censor's nginx on :80 answers every request with a redirect off the service
BLOCKPAGE_LOCATION = "http://blocked.lab/?from=telegram"
# ... and on BLOCKPAGE200_PORT a known national blockpage (an OONI fingerprint) with status 200.
BLOCKPAGE200_PORT = 8200
KNOWN_BLOCKPAGE = REPO_ROOT / "tests" / "data" / "blockpage_known.html"

# Networks with no open access (scenarios walled_garden, captive_portal): resolvers that answer every
# name alike, and one box that accepts every TCP connection (all DNATed to the censor's lo).
#   walled garden: dnsmasq NXDOMAIN for every name; nginx with its own TLS (a rogue-CA certificate for
#                  its own name) and its own HTTP (404 for everything).
#   captive portal: dnsmasq answering every name with the portal (the censor's lo); nginx with a valid
#                  lab-CA certificate for PORTAL_NAME only, and on plain HTTP a 302 to PORTAL_LOCATION.
CATCHALL_DNS = {  # mode -> (port, (A, AAAA) answered for every name; None = NXDOMAIN)
    "garden": (5310, None),
    "portal": (5311, (CENSOR_SVC_V4, CENSOR_SVC_V6)),
}
GARDEN_NAME = "gateway.garden.lab"
GARDEN_TLS_PORT, GARDEN_HTTP_PORT = 8443, 8404
PORTAL_NAME = "portal.lab"
PORTAL_TLS_PORT, PORTAL_HTTP_PORT = 9443, 8302
PORTAL_LOCATION = f"http://{PORTAL_NAME}/login"

# DNS injection racing the real resolver (scenario dns_injection_race): tests/lab/dns_injector.py sniffs
# the client's UDP queries on the censor's client-side veth and answers at once with these addresses;
# tests/lab/dns_delay.py relays queries to the honest dnsmasq and answers RESOLVER_DELAY later.
INJECTED_ANSWERS = ("10.99.99.99", "fd99::99")
RESOLVER_DELAY = 0.15
DELAY_PORT = 5353     # the relay's port in nplab-srv; udp 53 to the resolver is DNATed to it

# An interceptor's own box (scenarios intercept_*, fast_far_away), modelled on a real network (issue 18):
# tests/lab/canned_proxy.py in the censor, one per mode, on every address of the censor; a scenario's nat
# REDIRECT takes the client's TCP connections there (any address and port, or a subset).
#   peek:   a ClientHello gets TLS with its own certificate (rogue CA, for PROXY_NAME), a GET its own
#           404 (`server: keryx`), anything else (MTProto too) its own 400
#   canned: the 400 the moment a connection is accepted, whatever comes (TLS too)
#   silent: accepts and never speaks
#   relay:  a split-TCP accelerator: accepts at once, relays the bytes to the original destination
PROXY_PORTS = {"peek": 8800, "canned": 8801, "silent": 8802, "relay": 8803}
PROXY_NAME = "keryx.lab"
# Special-purpose ranges real interceptors exempt (documentation: RFC 5737, RFC 3849): the box refuses
# connections there with a RST (filter INPUT, by the connection's original destination), so netprobe's
# documentation-address negative controls fail and prove nothing about the interception.
SPECIAL_RANGES = {4: ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"), 6: ("2001:db8::/32",)}

# Far-away data centers (scenarios far_genuine, fast_far_away).  There is no sch_netem on this lab's
# kernel, so tests/lab/link_delay.py holds every packet routed into a TUN device (FAR_DEV, in the
# censor) for FAR_DELAY and hands it back: the client's packets that a scenario marks FAR_MARK (mangle
# PREROUTING, -i c-client) go through it (ip rule fwmark FAR_MARK -> table FAR_TABLE -> FAR_DEV), the
# answers come back directly, so the connect round trip grows by FAR_DELAY.  Packets a scenario
# REDIRECTs to the censor's own box are delivered locally first (the local table wins): no delay.
# The relay's own connections to DC2 are marked in mangle OUTPUT (fast_far_relay): they come back out
# of FAR_DEV with the censor's own source address, which accept_local lets in.
FAR_DEV = "c-far"
FAR_MARK = 0x82
FAR_TABLE = 130
FAR_DELAY = 0.15
FAR_DC = 2            # the data center made far (its addresses, both families)
# Where the far target file says the data centers are (its `datacenters` key): the speed of light in
# vacuum bounds the sum of two data centers' round trips below by 2 x great-circle distance / c, here
# 2 x 16,969 km / 299,792.458 km/s = 113 ms.  The lab's DC1 (no delay) and DC2 (+150 ms) together
# clearly exceed it; a box in the censor answering for both (fast_far_away) cannot.
DATACENTERS = (
    {"dc": 1, "city": "Miami, US", "lat": 25.77, "lon": -80.19,
     "source": "lab fiction: the lab's DC1 placed at Miami's city centre (coordinates as GeoNames gives them)"},
    {"dc": 2, "city": "Singapore", "lat": 1.35, "lon": 103.82,
     "source": "lab fiction: the lab's DC2 placed at Singapore's centre (coordinates as GeoNames gives them)"},
)

# Routes: censor -> the servers' networks.  The censor has no default route.
SRV_PREFIXES_V4 = (DNS_V4 + "/32", WEB_NET_V4, ANYIP_V4, CONTROL_V4 + "/32")
SRV_PREFIXES_V6 = (DNS_V6 + "/128", WEB_NET_V6, ANYIP_V6, CONTROL_V6 + "/128")
DC_PREFIXES_V4 = (DC_NET_V4, ODD_WEB_NET_V4)
DC_PREFIXES_V6 = (DC_NET_V6, ODD_WEB_NET_V6)

STATE_DIR = Path(os.environ.get("NPLAB_DIR", f"/tmp/{PREFIX.rstrip('-')}"))
LOCK_FILE = Path(os.environ.get("NPLAB_LOCK", f"/tmp/{PREFIX.rstrip('-')}.lock"))
REQUIRED_TOOLS = ("ip", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore",
                  "dnsmasq", "nginx", "dig", "curl", "nmap", "conntrack")


class LabError(RuntimeError):
    pass


def unavailable_reason() -> str | None:
    """Why the lab cannot be built on this machine, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"needs Linux network namespaces (platform is {sys.platform})"
    if os.geteuid() != 0:
        return "needs root (ip netns, iptables); run as root or set up a root CI job"
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        return "missing tools: " + ", ".join(missing)
    probe = f"{PREFIX}check-{os.getpid()}"
    try:
        res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10,
                             check=False)
        if res.returncode != 0:
            return f"`ip netns add` fails: {res.stderr.strip() or res.returncode}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10, check=False)
    return None


REQUIRE_ENV = "NETPROBE_REQUIRE_LAB"


def gate_decision(reason: str | None, require: str) -> tuple[str, str] | None:
    """What a lab test does when the lab is unavailable: None (run), ('skip'|'fail', message)."""
    if reason is None:
        return None
    if require.strip() not in ("", "0"):
        return "fail", f"censorship lab required ({REQUIRE_ENV}={require}) but unavailable: {reason}"
    return "skip", f"censorship lab unavailable: {reason}"


def run(cmd: list[str], *, timeout: float = 30, check: bool = True, input: str | None = None,
        env: dict | None = None, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input, env=env, cwd=cwd,
                         check=False)
    if check and res.returncode != 0:
        raise LabError(f"command failed ({res.returncode}): {shlex.join(cmd)}\n{res.stderr.strip()}")
    return res


def list_lab_namespaces(prefix: str | None = None) -> list[str]:
    prefix = PREFIX if prefix is None else prefix
    res = run(["ip", "netns", "list"], check=False, timeout=10)
    names = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def kill_namespace_processes(ns: str, grace: float = 2.0) -> None:
    """End the processes living in one of the lab's namespaces (by pid)."""
    def pids() -> list[int]:
        res = run(["ip", "netns", "pids", ns], check=False, timeout=10)
        return [int(p) for p in res.stdout.split() if p.isdigit() and int(p) != os.getpid()]

    found = pids()
    for pid in found:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while found and time.monotonic() < deadline:
        time.sleep(0.05)
        found = pids()
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def destroy_all(prefix: str | None = None) -> list[str]:
    """Remove every lab namespace and the processes in it (leftovers included)."""
    removed = []
    for ns in list_lab_namespaces(prefix):
        kill_namespace_processes(ns)
        run(["ip", "netns", "del", ns], check=False, timeout=10)
        removed.append(ns)
    return removed


# --- certificates ------------------------------------------------------------

@dataclass(frozen=True)
class _CA:
    key: object
    cert: object
    ski: object


def _write_ca(directory: Path, stem: str, ca_name: str) -> _CA:
    """A self-signed CA, written to STEM-ca.pem."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = _dt.datetime.now(_dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name),
                            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "netprobe lab")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_subject).issuer_name(ca_subject)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / f"{stem}-ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return _CA(ca_key, ca_cert, ca_ski)


def _write_leaf(directory: Path, stem: str, ca: _CA, names: list[str], ips: list[str]) -> None:
    """A server certificate for NAMES / IPS signed by CA: STEM.pem (leaf + CA) and STEM.key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = _dt.datetime.now(_dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca.ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / f"{stem}.pem").write_bytes(leaf.public_bytes(pem) + ca.cert.public_bytes(pem))
    key_path = directory / f"{stem}.key"
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)


# --- config files ------------------------------------------------------------

def nginx_conf(directory: Path, name: str, listens: list[str], cert: str, key: str, extra: str = "") -> Path:
    tmp = directory / f"nginx-{name}-tmp"
    tmp.mkdir(exist_ok=True)
    listen_lines = "\n        ".join(f"listen {spec};" for spec in listens)
    text = f"""# generated by tests/lab/topology.py
worker_processes 1;
daemon off;
pid {directory}/nginx-{name}.pid;
error_log {directory}/nginx-{name}.error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        {listen_lines}
        server_name _;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "netprobe lab {name}: $host\\n"; }}
    }}{extra}
}}
"""
    path = directory / f"nginx-{name}.conf"
    path.write_text(text)
    return path


def targets_toml(targets: TargetSet | None = None) -> str:
    targets = targets or MAIN_TARGETS

    def q(items) -> str:
        return ", ".join(json.dumps(i) for i in items)

    def domain_item(domain: str, addresses) -> str:
        return f'{{ name = "{domain}", addresses = [{q(addresses)}] }}' if addresses else json.dumps(domain)

    def endpoint_item(ep: str) -> str:
        dc = dc_of(ep) if targets.datacenters else None
        return json.dumps(ep) if dc is None else f'{{ address = "{ep}", dc = {dc} }}'

    def toml_table(item: dict) -> str:
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in item.items()) + " }"

    pinned = targets.pinned or {}
    domain_items = [domain_item(d, pinned.get(d)) for d in targets.domains]
    expected = (f'http = {{ status = 200, body_contains = "{CONTROL_HTTP_MARKER}" }}, '
                'source = "tests/lab/topology.py: the control host nginx, location / return 200"')
    control_items = [f'{{ name = "{d}", addresses = [{q(a)}], {expected} }}' for d, a in CONTROL_DOMAINS.items()]
    ranges = "".join(f'\n  {{ cidr = "{c}", ports = [{RANGE_PORT}], sample = 0 }},' for c in targets.ranges)
    datacenters = "".join(f"\n  {toml_table(d)}," for d in targets.datacenters)
    return f"""# The censorship lab's target set {targets.name!r} (generated by tests/lab/topology.py).
name = "{targets.name}"
networks  = [{q(SERVICE_NETWORKS)}]
controls  = [{q(CONTROLS)}]
control_domains = [{", ".join(control_items)}]
domains   = [{", ".join(domain_items)}]
endpoints = [{", ".join(endpoint_item(e) for e in targets.endpoints)}]
dns_canary = [{q([DNS_CANARY])}]
ranges    = [{ranges}
]
""" + (f"datacenters = [{datacenters}\n]\n" if targets.datacenters else "")


def dc_of(ep: str) -> int | None:
    """The lab data center an endpoint (IP:PORT) belongs to, or None."""
    host = ep[1:].partition("]")[0] if ep.startswith("[") else ep.rpartition(":")[0]
    return next((dc for dc, addrs in DC_ADDRS.items() if host in addrs), None)


def range_addresses(cidr: str) -> list[str]:
    return [str(a) for a in ipaddress.ip_network(cidr)]


def endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# --- target sets ------------------------------------------------------------------

@dataclass(frozen=True)
class TargetSet:
    """One target file the runs can use: what it lists, and where each domain genuinely lives."""
    name: str
    filename: str
    web_hosts: dict[str, tuple[str, ...]]   # domain -> genuine addresses (dnsmasq; curl pins each)
    endpoints: tuple[str, ...]
    ranges: tuple[str, ...] = ()
    pinned: dict[str, tuple[str, ...]] | None = None
    datacenters: tuple[dict, ...] = ()       # where the data centers are (`datacenters`; endpoints get `dc`)

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.web_hosts)

    @property
    def tcp_targets(self) -> list[str]:
        return list(self.endpoints) + [endpoint(a, RANGE_PORT) for c in self.ranges for a in range_addresses(c)]


def _endpoints(*addresses: str) -> tuple[str, ...]:
    return tuple(endpoint(a, DC_PORT) for a in addresses)


# The main set (every scenario but the misbehaving servers').  The misbehaving servers have sets of
# their own: in the main set they would fail in every scenario, baseline included, and every
# scenario's summary would name SNI / MTProto findings that no censor made.
MAIN_TARGETS = TargetSet("lab", "targets.toml", WEB_HOSTS, ENDPOINTS, RANGES, PINNED)
SILENT_TARGETS = TargetSet("silent", "targets-silent.toml", SILENT_WEB, _endpoints(*SILENT_DC))
DRIP_TARGETS = TargetSet("drip", "targets-drip.toml", DRIP_WEB, _endpoints(*DRIP_DC))
# The interceptor scenarios (intercept_*): the main set plus the data centers on port 80, as Telegram's
# clients list them (the built-in set has 443, 80 and 5222): an interceptor on every port, or on 80 only.
DC_HTTP_PORT = 80
INTERCEPT_TARGETS = TargetSet("intercept", "targets-intercept.toml", WEB_HOSTS,
                              ENDPOINTS + tuple(endpoint(a, DC_HTTP_PORT) for addrs in DC_ADDRS.values() for a in addrs),
                              RANGES, PINNED)
# The far-away data centers (far_genuine, fast_far_away): the main set, its endpoints tagged with their
# data center, and where those are (DATACENTERS).
FAR_TARGETS = TargetSet("far", "targets-far.toml", WEB_HOSTS, ENDPOINTS, RANGES, PINNED, DATACENTERS)
TARGET_SETS = {t.name: t for t in (MAIN_TARGETS, SILENT_TARGETS, DRIP_TARGETS, INTERCEPT_TARGETS, FAR_TARGETS)}
ALL_WEB_HOSTS = {d: a for t in TARGET_SETS.values() for d, a in t.web_hosts.items()}


# --- the lab ------------------------------------------------------------------

@dataclass
class Server:
    ns: str
    name: str
    proc: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.proc.pid


class Lab:
    """Build, drive and tear down the lab.  `up()` is idempotent: it first removes
    whatever a previous (possibly crashed) run left, then builds afresh."""

    def __init__(self, state_dir: Path | str | None = None, verbose: bool = False, hold_lock: bool = True):
        self.dir = Path(state_dir) if state_dir else STATE_DIR
        self.verbose = verbose
        self.hold_lock = hold_lock
        self.servers: list[Server] = []
        self.applied: str | None = None
        self.effects: list[str] = []   # scenario effects in force (see start_effect)
        self._lock_fd: int | None = None

    # paths
    @property
    def ca_file(self) -> Path:
        return self.dir / "lab-ca.pem"

    @property
    def rogue_ca_file(self) -> Path:
        return self.dir / "rogue-ca.pem"

    @property
    def targets_file(self) -> Path:
        return self.targets_path(MAIN_TARGETS)

    def targets_path(self, targets: TargetSet | str) -> Path:
        if isinstance(targets, str):
            targets = TARGET_SETS[targets]
        return self.dir / targets.filename

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"[lab] {msg}", file=sys.stderr, flush=True)

    # --- commands inside namespaces --------------------------------------------
    def exec_in(self, ns: str, cmd: list[str] | str, *, timeout: float = 30, check: bool = True,
                input: str | None = None, env: dict | None = None,
                cwd: str | Path | None = None) -> subprocess.CompletedProcess:
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        return run(["ip", "netns", "exec", ns, *cmd], timeout=timeout, check=check, input=input,
                   env=env, cwd=cwd)

    def _ip(self, ns: str, *args: str) -> None:
        run(["ip", "-n", ns, *args], timeout=10)

    # --- lock -------------------------------------------------------------------
    def _acquire_lock(self, wait: float = 600) -> None:
        """One lab per machine: a run (pytest, report) holds an flock on LOCK_FILE while the lab is
        up; another waits for it.  The by-hand CLI never waits: it refuses while a run is on."""
        if self._lock_fd is not None:
            return
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LabError(f"the lab is in use by another run (pid {holder}, lock {LOCK_FILE}); "
                                   f"waited {wait:.0f}s") from None
                if not told:
                    print(f"[lab] waiting for the lab: in use by pid {holder} ({LOCK_FILE})",
                          file=sys.stderr, flush=True)
                    told = True
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- up / down ----------------------------------------------------------------
    def up(self) -> Self:
        started = time.monotonic()
        self._acquire_lock(wait=600 if self.hold_lock else 0)
        atexit.register(self.down)
        leftovers = destroy_all()
        if leftovers:
            self.log(f"removed leftovers: {', '.join(leftovers)}")
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self._build_network()
        self._write_files()
        self._start_servers()
        self.apply_rules([], name="none")
        self.log(f"up in {time.monotonic() - started:.1f}s (state in {self.dir})")
        return self

    def down(self) -> None:
        removed = destroy_all()
        for server in self.servers:  # reap them (destroy_all ended them by pid)
            try:
                server.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.proc.kill()
        self.servers.clear()
        self.effects = []
        self.applied = None
        if removed:
            self.log(f"down: removed {', '.join(removed)}")
        self._release_lock()

    def locked(self) -> Self:
        """For the by-hand CLI: take the lock for one command, refusing if a run is using the lab."""
        self._acquire_lock(wait=0)
        return self

    def __enter__(self) -> Self:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    def _build_network(self) -> None:
        sysctls = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                   "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0",
                   "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0"]
        for ns in NAMESPACES:
            run(["ip", "netns", "add", ns], timeout=10)
            # No ICMP rate limits: every packet the censor's REJECT rules hit is answered, every probe of a
            # closed UDP port gets its port unreachable, whatever ran just before.
            sysctls_ns = [*sysctls, "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
                          "net.ipv4.icmp_msgs_per_sec=100000"]
            extra = (["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] if ns == NS_CENSOR else [])
            self.exec_in(ns, ["sysctl", "-qw", *sysctls_ns, *extra], timeout=10)
            self._ip(ns, "link", "set", "lo", "up")
        for ns, ifname, v4, v6, cif, cv4, cv6 in LINKS:
            # Both ends are created directly inside the namespaces: nothing touches the host's.
            run(["ip", "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", cif,
                 "netns", NS_CENSOR], timeout=10)
            for n, i, a4, a6 in ((ns, ifname, v4, v6), (NS_CENSOR, cif, cv4, cv6)):
                self._ip(n, "addr", "add", f"{a4}/24", "dev", i)
                self._ip(n, "-6", "addr", "add", f"{a6}/64", "dev", i, "nodad")
                self._ip(n, "link", "set", i, "up")
            if ns != NS_CLIENT:
                self._ip(ns, "route", "add", "default", "via", cv4)
                self._ip(ns, "-6", "route", "add", "default", "via", cv6)
        # Permanent neighbour entries on every link: no ARP/ND, so the first packet of a run is never
        # delayed by (or lost in) neighbour discovery right after setup.
        for ns, ifname, v4, v6, cif, cv4, cv6 in LINKS:
            mac, cmac = self._mac(ns, ifname), self._mac(NS_CENSOR, cif)
            for n, i, peer_mac, a4, a6 in ((ns, ifname, cmac, cv4, cv6), (NS_CENSOR, cif, mac, v4, v6)):
                self._ip(n, "neigh", "replace", a4, "lladdr", peer_mac, "dev", i, "nud", "permanent")
                self._ip(n, "-6", "neigh", "replace", a6, "lladdr", peer_mac, "dev", i, "nud", "permanent")
        # The client's only way anywhere is the censor.
        self._ip(NS_CLIENT, "route", "add", "default", "via", "10.66.1.1")
        self._ip(NS_CLIENT, "-6", "route", "add", "default", "via", "fd66:1::1")
        # Service addresses.
        web = [a for addrs in WEB_HOSTS.values() for a in addrs]
        srv_v4 = [DNS_V4, CONTROL_V4] + [a for a in web if ":" not in a]
        srv_v6 = [DNS_V6, CONTROL_V6] + [a for a in web if ":" in a]
        for a in srv_v4:
            self._ip(NS_SRV, "addr", "add", f"{a}/32", "dev", "lo")
        for a in srv_v6:
            self._ip(NS_SRV, "-6", "addr", "add", f"{a}/128", "dev", "lo", "nodad")
        # AnyIP: every address of the range is local to nplab-srv.
        self._ip(NS_SRV, "route", "add", "local", ANYIP_V4, "dev", "lo")
        self._ip(NS_SRV, "-6", "route", "add", "local", ANYIP_V6, "dev", "lo")
        dc_hosts = [*DC_ADDRS.values(), SILENT_DC, DRIP_DC, *SILENT_WEB.values(), *DRIP_WEB.values()]
        for v4, v6 in dc_hosts:
            self._ip(NS_DC, "addr", "add", f"{v4}/32", "dev", "lo")
            self._ip(NS_DC, "-6", "addr", "add", f"{v6}/128", "dev", "lo", "nodad")
        self._ip(NS_CENSOR, "addr", "add", f"{CENSOR_SVC_V4}/32", "dev", "lo")
        self._ip(NS_CENSOR, "-6", "addr", "add", f"{CENSOR_SVC_V6}/128", "dev", "lo", "nodad")
        # Censor routes: only the lab's prefixes, no default route.
        for p in SRV_PREFIXES_V4:
            self._ip(NS_CENSOR, "route", "add", p, "via", "10.66.2.2")
        for p in SRV_PREFIXES_V6:
            self._ip(NS_CENSOR, "-6", "route", "add", p, "via", "fd66:2::2")
        for p in DC_PREFIXES_V4:
            self._ip(NS_CENSOR, "route", "add", p, "via", "10.66.3.2")
        for p in DC_PREFIXES_V6:
            self._ip(NS_CENSOR, "-6", "route", "add", p, "via", "fd66:3::2")

    def _mac(self, ns: str, ifname: str) -> str:
        info = json.loads(run(["ip", "-n", ns, "-j", "link", "show", "dev", ifname], timeout=10).stdout)
        return info[0]["address"]

    def _write_files(self) -> None:
        names = list(DOMAINS) + ["*.telegram.lab"]
        ips = [a for addrs in ALL_WEB_HOSTS.values() for a in addrs]
        lab_ca = _write_ca(self.dir, "lab", "netprobe lab CA")
        _write_leaf(self.dir, "lab", lab_ca, names, ips)
        _write_leaf(self.dir, "control", lab_ca, list(CONTROL_DOMAINS), [])
        _write_leaf(self.dir, "portal", lab_ca, [PORTAL_NAME], [])       # valid, but for the portal only
        rogue_ca = _write_ca(self.dir, "rogue", "censor's rogue CA")
        _write_leaf(self.dir, "rogue", rogue_ca, names + list(CONTROL_DOMAINS), ips)  # forged for every name
        _write_leaf(self.dir, "garden", rogue_ca, [GARDEN_NAME], [])
        _write_leaf(self.dir, "keryx", rogue_ca, [PROXY_NAME], [])      # the interceptor's own certificate
        for targets in TARGET_SETS.values():
            self.targets_path(targets).write_text(targets_toml(targets))
        if not KNOWN_BLOCKPAGE.exists():
            raise LabError(f"{KNOWN_BLOCKPAGE} is missing (the known blockpage scenario http_blockpage_200 serves it)")
        blockpage_file = self.dir / "blockpage-known.html"
        shutil.copyfile(KNOWN_BLOCKPAGE, blockpage_file)
        blockpage_file.chmod(0o644)  # read by nginx's unprivileged worker
        cert, key = str(self.dir / "lab.pem"), str(self.dir / "lab.key")
        # The control host: control.lab on its own addresses (:443 with a lab-CA certificate for the
        # name, :80 a plain page).  nginx dispatches by local address under the wildcard listens.
        control_listens = "\n        ".join(
            f"listen {spec};" for a in (CONTROL_V4, f"[{CONTROL_V6}]") for spec in (f"{a}:443 ssl", f"{a}:80"))
        control = f"""
    server {{
        {control_listens}
        server_name {CONTROL_NAME};
        ssl_certificate {self.dir / "control.pem"};
        ssl_certificate_key {self.dir / "control.key"};
        default_type text/html;
        location / {{ return 200 "<!doctype html><title>{CONTROL_HTTP_MARKER}</title><p>$host: an ordinary page, not the service.\n"; }}
    }}"""
        nginx_conf(self.dir, "srv", ["80 default_server", "[::]:80 default_server",
                                     "443 ssl default_server", "[::]:443 ssl default_server"], cert, key,
                   extra=control)
        # The censor's nginx: the MITM host (rogue CA) and, on :80, the blockpage (a redirect off the
        # service); a known blockpage with status 200; the walled garden's and the captive portal's box.
        def listens(port: int, ssl: bool = False) -> str:
            flag = " ssl" if ssl else ""
            return f"listen {CENSOR_SVC_V4}:{port}{flag}; listen [{CENSOR_SVC_V6}]:{port}{flag};"

        censor = f"""
    server {{
        {listens(BLOCKPAGE_PORT)}
        server_name _;
        location / {{ return 302 "{BLOCKPAGE_LOCATION}"; }}
    }}
    server {{  # a known national blockpage, status 200 (tests/data/blockpage_known.html)
        {listens(BLOCKPAGE200_PORT)}
        server_name _;
        root {self.dir};
        default_type text/html;
        location / {{ try_files /{blockpage_file.name} =500; }}
    }}
    server {{  # walled garden: its own HTTP on every port but 443 (all DNATed here)
        {listens(GARDEN_HTTP_PORT)}
        server_name _;
        default_type text/html;
        location / {{ return 404 "<html><body><h1>404 Not Found</h1><p>{GARDEN_NAME}</p></body></html>\n"; }}
    }}
    server {{  # walled garden: its own TLS on 443 (rogue CA, its own name)
        {listens(GARDEN_TLS_PORT, ssl=True)}
        server_name _;
        ssl_certificate {self.dir / "garden.pem"};
        ssl_certificate_key {self.dir / "garden.key"};
        default_type text/html;
        location / {{ return 404 "<html><body><h1>404 Not Found</h1><p>{GARDEN_NAME}</p></body></html>\n"; }}
    }}
    server {{  # captive portal, plain HTTP (every port but 443): log in first
        {listens(PORTAL_HTTP_PORT)}
        server_name _;
        default_type text/html;
        location = /login {{ return 200 "<html><body><h1>Welcome</h1><form>Log in to use this network</form></body></html>\n"; }}
        location / {{ return 302 "{PORTAL_LOCATION}"; }}
    }}
    server {{  # captive portal on 443: a valid lab-CA certificate, for {PORTAL_NAME} only
        {listens(PORTAL_TLS_PORT, ssl=True)}
        server_name _;
        ssl_certificate {self.dir / "portal.pem"};
        ssl_certificate_key {self.dir / "portal.key"};
        default_type text/html;
        location = /login {{ return 200 "<html><body><h1>Welcome</h1><form>Log in to use this network</form></body></html>\n"; }}
        location / {{ return 302 "https://{PORTAL_NAME}/login"; }}
    }}"""
        nginx_conf(self.dir, "mitm", [f"{CENSOR_SVC_V4}:{MITM_PORT} ssl", f"[{CENSOR_SVC_V6}]:{MITM_PORT} ssl"],
                   str(self.dir / "rogue.pem"), str(self.dir / "rogue.key"), extra=censor)

    # --- servers ------------------------------------------------------------------
    def spawn(self, ns: str, name: str, cmd: list[str]) -> Server:
        """Start a long-running server in a namespace; its output goes to NAME.log."""
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child, closed below
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir)
        log.close()
        server = Server(ns, name, proc)
        self.servers.append(server)
        self.log(f"started {name} in {ns} (pid {proc.pid}): {shlex.join(cmd)}")
        return server

    def _dnsmasq(self, ns: str, name: str, listen: list[str], port: int, options: list[str]) -> None:
        self.spawn(ns, name, [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--no-poll", "--bind-interfaces", *[f"--listen-address={a}" for a in listen], f"--port={port}",
            "--pid-file=", "--user=root", "--group=root", "--log-queries", "--log-facility=-",
            "--cache-size=0", *options])

    def _start_servers(self) -> None:
        controls = [f"--host-record={name},{','.join(addrs)}" for name, addrs in CONTROL_DOMAINS.items()]
        records = [f"--host-record={name},{','.join(addrs)}" for name, addrs in ALL_WEB_HOSTS.items()]
        # Authoritative for the lab's zones: a name without an A record gets NODATA, not REFUSED.
        records += ["--local=/telegram.lab/", "--local=/t.lab/", *controls]
        self._dnsmasq(NS_SRV, "dns", [DNS_V4, DNS_V6], 53, records)
        for mode, port in LIAR_PORTS.items():
            answers = LIAR_ANSWERS[mode]
            opts = list(controls)  # a censor's resolver lies only for the names it blocks
            for zone in ("telegram.lab", "t.lab"):
                if answers is None:
                    opts.append(f"--address=/{zone}/")
                else:
                    opts += [f"--address=/{zone}/{answers[0]}", f"--address=/{zone}/{answers[1]}"]
            self._dnsmasq(NS_CENSOR, f"liar-{mode}", [CENSOR_SVC_V4, CENSOR_SVC_V6], port, opts)
        for mode, (port, answers) in CATCHALL_DNS.items():  # every name alike ("#" matches every domain)
            opts = ["--address=/#/"] if answers is None else [f"--address=/#/{a}" for a in answers]
            self._dnsmasq(NS_CENSOR, f"dns-{mode}", [CENSOR_SVC_V4, CENSOR_SVC_V6], port, opts)
        for name, ns in (("srv", NS_SRV), ("mitm", NS_CENSOR)):
            self.spawn(ns, f"nginx-{name}", ["nginx", "-e", str(self.dir / f"nginx-{name}.error.log"),
                                             "-c", str(self.dir / f"nginx-{name}.conf")])
        self._start_dc()
        self._start_misbehaving()
        self._start_interceptor()
        self._wait_ready()
        self._route_far()

    def dc_command(self) -> list[str]:
        listens = []
        for v4, v6 in DC_ADDRS.values():  # 443, and 80 (the intercept target set lists both)
            for port in (DC_PORT, DC_HTTP_PORT):
                listens += ["--listen", f"{v4}:{port}", "--listen", f"[{v6}]:{port}"]
        server = HERE / "mtproto_server.py"
        if not server.exists():  # stand-in until the MTProto server exists
            server = HERE / "tcp_listener.py"
        return [sys.executable, str(server), *listens]

    @property
    def dc_is_standin(self) -> bool:
        return not (HERE / "mtproto_server.py").exists()

    def _start_dc(self) -> None:
        self.spawn(NS_DC, "dc", self.dc_command())

    # Servers that print READY once they listen (their logs are polled by _wait_ready).
    READY_LOGS = ("dc", "dc-silent", "dc-drip", "web-silent", "web-drip", *(f"proxy-{m}" for m in PROXY_PORTS),
                  "far-delay")

    def _start_interceptor(self) -> None:
        """The interceptor's box (one canned_proxy.py per mode, every address of the censor) and the
        far data centers' delay line (link_delay.py on FAR_DEV).  Idle until a scenario's rules send
        connections to them."""
        proxy = [sys.executable, str(HERE / "canned_proxy.py")]
        for mode, port in PROXY_PORTS.items():
            tls = ["--cert", str(self.dir / "keryx.pem"), "--key", str(self.dir / "keryx.key")] if mode == "peek" else []
            self.spawn(NS_CENSOR, f"proxy-{mode}", [*proxy, "--mode", mode, "--listen", f"0.0.0.0:{port}",
                                                   "--listen", f"[::]:{port}", *tls])
        self.spawn(NS_CENSOR, "far-delay", [sys.executable, str(HERE / "link_delay.py"), "--dev", FAR_DEV,
                                            "--delay", f"{FAR_DELAY:g}"])

    def _route_far(self) -> None:
        """What the censor marks FAR_MARK goes through the delay line (FAR_DEV); what comes back out
        of it is routed as usual (it is not marked again: the scenarios mark only -i c-client)."""
        self._ip(NS_CENSOR, "link", "set", FAR_DEV, "up")
        self.exec_in(NS_CENSOR, ["sysctl", "-qw", f"net.ipv4.conf.{FAR_DEV}.rp_filter=0",
                                 f"net.ipv4.conf.{FAR_DEV}.accept_local=1",
                                 f"net.ipv6.conf.{FAR_DEV}.forwarding=1"], timeout=10)
        for family in ("-4", "-6"):
            self._ip(NS_CENSOR, family, "rule", "add", "pref", "100", "fwmark", hex(FAR_MARK), "lookup", str(FAR_TABLE))
            self._ip(NS_CENSOR, family, "route", "add", "default", "dev", FAR_DEV, "table", str(FAR_TABLE))

    def _start_misbehaving(self) -> None:
        """Servers that complete the TCP handshake and then never speak, or drip one byte at a time."""
        def listens(flag: str, addrs, port: int) -> list[str]:
            return [a for addr in addrs for a in (flag, endpoint(addr, port))]

        mtproto = [sys.executable, str(HERE / "mtproto_server.py")]
        self.spawn(NS_DC, "dc-silent", [*mtproto, "--mode", "silent", "--idle-timeout", "60",
                                        *listens("--listen", SILENT_DC, DC_PORT)])
        self.spawn(NS_DC, "dc-drip", [*mtproto, "--mode", "drip", "--drip-interval", f"{DRIP_INTERVAL:g}",
                                      *listens("--listen", DRIP_DC, DC_PORT)])
        slow = [sys.executable, str(HERE / "slow_server.py")]
        silent_addrs = next(iter(SILENT_WEB.values()))
        drip_addrs = next(iter(DRIP_WEB.values()))
        self.spawn(NS_DC, "web-silent", [*slow, "--mode", "silent", *listens("--listen", silent_addrs, 443),
                                         *listens("--listen", silent_addrs, 80)])
        self.spawn(NS_DC, "web-drip", [*slow, "--mode", "drip", "--interval", f"{DRIP_INTERVAL:g}",
                                       "--cert", str(self.dir / "lab.pem"), "--key", str(self.dir / "lab.key"),
                                       *listens("--tls-listen", drip_addrs, 443),
                                       *listens("--listen", drip_addrs, 80)])

    def _wait_ready(self, timeout: float = 15) -> None:
        checks = [
            (NS_SRV, "udp", DNS_V4, 53), (NS_SRV, "tcp", DNS_V4, 53),
            (NS_SRV, "tcp", "*", 443), (NS_SRV, "tcp", "*", 80),
            (NS_CENSOR, "tcp", CENSOR_SVC_V4, MITM_PORT), (NS_CENSOR, "tcp", CENSOR_SVC_V4, BLOCKPAGE_PORT),
            *[(NS_CENSOR, "udp", CENSOR_SVC_V4, p) for p in LIAR_PORTS.values()],
            *[(NS_CENSOR, proto, CENSOR_SVC_V4, p) for p, _ in CATCHALL_DNS.values() for proto in ("udp", "tcp")],
            *[(NS_CENSOR, "tcp", CENSOR_SVC_V4, p) for p in (BLOCKPAGE200_PORT, GARDEN_HTTP_PORT, GARDEN_TLS_PORT,
                                                             PORTAL_HTTP_PORT, PORTAL_TLS_PORT)],
            *[(NS_CENSOR, "tcp", "*", p) for p in PROXY_PORTS.values()],
        ]
        deadline = time.monotonic() + timeout
        pending = list(checks)
        while pending:
            pending = [c for c in pending if not self._listening(*c)]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise LabError(f"servers not listening after {timeout}s: {pending}\n" + self.server_logs())
            time.sleep(0.05)
        # The Python servers announce READY on stdout (their logs).
        for name in self.READY_LOGS:
            self._wait_for_ready_line(name, deadline, timeout)
        dead = [s for s in self.servers if s.proc.poll() is not None]
        if dead:
            raise LabError(f"servers died: {[s.name for s in dead]}\n" + self.server_logs())

    def _wait_for_ready_line(self, name: str, deadline: float, timeout: float) -> None:
        log = self.dir / f"{name}.log"
        while "READY" not in log.read_text(errors="replace"):
            server = next((s for s in self.servers if s.name == name), None)
            if server is not None and server.proc.poll() is not None:
                raise LabError(f"{name} exited ({server.proc.returncode}) before READY\n" + self.server_logs())
            if time.monotonic() > deadline:
                raise LabError(f"{name} did not print READY in {timeout}s\n" + self.server_logs())
            time.sleep(0.02)

    def _listening(self, ns: str, proto: str, addr: str, port: int) -> bool:
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        res = self.exec_in(ns, ["ss", flag, f"sport = :{port}"], check=False, timeout=10)
        for line in res.stdout.splitlines():
            local = line.split()[3] if len(line.split()) > 3 else ""
            host = local.rsplit(":", 1)[0].strip("[]")
            if addr == "*" or host in (addr, "*", "0.0.0.0") or host.startswith(addr + "%"):
                return True
        return False

    def server_logs(self, tail: int = 20) -> str:
        out = []
        for s in self.servers:
            path = self.dir / f"{s.name}.log"
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-tail:]
                out.append(f"--- {s.name} ({s.ns}) ---\n" + "\n".join(lines))
        for err in sorted(self.dir.glob("nginx-*.error.log")):
            out.append(f"--- {err.name} ---\n" + "\n".join(err.read_text(errors="replace").splitlines()[-tail:]))
        return "\n".join(out)

    # --- the censor -----------------------------------------------------------
    def apply(self, scenario) -> None:
        """Flush the censor's rules and apply a scenario's (a Scenario or its name)."""
        if isinstance(scenario, str):
            from scenarios import by_name  # noqa: WPS433 (tests/lab is on sys.path)
            scenario = by_name(scenario)
        self.clear_effects()
        self.apply_rules(scenario.rules, name=scenario.name)
        try:
            for effect in scenario.effects:
                self.start_effect(effect)
        except BaseException:
            self.clear_effects()
            raise

    # --- scenario effects: what iptables rules alone cannot do ------------------------
    # "dns_injector"   tests/lab/dns_injector.py in nplab-censor: sniffs the client's UDP DNS queries to
    #                  the resolver on the censor's client-side veth (AF_PACKET) and answers first with
    #                  INJECTED_ANSWERS.
    # "resolver_delay" the honest resolver answers RESOLVER_DELAY late: udp 53 to it is DNATed (nat
    #                  PREROUTING in nplab-srv) to tests/lab/dns_delay.py, which relays to dnsmasq and
    #                  holds the answer.  (tc netem would do, but this kernel has no sch_netem.)
    # "no_ipv6_route"  the client loses its IPv6 default route (connects fail at once, ENETUNREACH), as on
    #                  a network that gives no IPv6; clear_effects puts it back.
    EFFECTS = ("dns_injector", "resolver_delay", "no_ipv6_route")

    def start_effect(self, effect: str) -> None:
        if effect == "no_ipv6_route":
            self._ip(NS_CLIENT, "-6", "route", "del", "default")
            self.effects.append(effect)
            self.log(f"effect on: {effect}")
            return
        if effect == "dns_injector":
            zones = [a for z in ("telegram.lab", "t.lab") for a in ("--zone", z)]
            server = self.spawn(NS_CENSOR, "dns-injector", [
                sys.executable, str(HERE / "dns_injector.py"), "--iface", CENSOR_CLIENT_IF, *zones,
                "--dst", DNS_V4, "--dst", DNS_V6,
                "--a", INJECTED_ANSWERS[0], "--aaaa", INJECTED_ANSWERS[1]])
        elif effect == "resolver_delay":
            server = self.spawn(NS_SRV, "dns-delay", [
                sys.executable, str(HERE / "dns_delay.py"), "--delay", f"{RESOLVER_DELAY:g}",
                "--relay", f"{DNS_V4}:{DELAY_PORT}={DNS_V4}:53",
                "--relay", f"[{DNS_V6}]:{DELAY_PORT}=[{DNS_V6}]:53"])
        else:
            raise LabError(f"unknown scenario effect {effect!r}; known: {', '.join(self.EFFECTS)}")
        self.effects.append(effect)
        self._wait_for_ready_line(server.name, time.monotonic() + 10, 10)
        if effect == "resolver_delay":
            for tool, dst, to in (("iptables", DNS_V4, f"{DNS_V4}:{DELAY_PORT}"),
                                  ("ip6tables", DNS_V6, f"[{DNS_V6}]:{DELAY_PORT}")):
                self.exec_in(NS_SRV, [tool, "-t", "nat", "-A", "PREROUTING", "-i", "eth0", "-p", "udp",
                                      "-d", dst, "--dport", "53", "-j", "DNAT", "--to-destination", to])
            self.exec_in(NS_SRV, ["conntrack", "-F"], timeout=10, check=False)
        self.log(f"effect on: {effect}")

    EFFECT_SERVERS = (("dns_injector", "dns-injector"), ("resolver_delay", "dns-delay"))  # effect, server name
    EFFECT_SCRIPTS = ("dns_injector.py", "dns_delay.py")

    def clear_effects(self) -> None:
        """Undo every scenario effect: stop their servers (also those a by-hand `apply` left running,
        found by their command line among the namespace's pids) and flush nplab-srv's nat table."""
        names = {name for _, name in self.EFFECT_SERVERS}
        for server in [s for s in self.servers if s.name in names]:
            if server.proc.poll() is None:
                try:
                    os.killpg(server.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    server.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    server.proc.kill()
                    server.proc.wait(timeout=5)
            self.servers.remove(server)
        present = list_lab_namespaces()
        stray = [pid for ns in (NS_CENSOR, NS_SRV) if ns in present for pid in self._effect_pids(ns)]
        for pid in stray:  # left by a by-hand `apply` (another process): ended by pid
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        while stray and time.monotonic() < deadline:
            time.sleep(0.02)
            stray = [pid for pid in stray if Path(f"/proc/{pid}").exists()]
        if NS_SRV in present:
            for tool in ("iptables", "ip6tables"):
                self.exec_in(NS_SRV, [tool, "-t", "nat", "-F"], timeout=10, check=False)
            self.exec_in(NS_SRV, ["conntrack", "-F"], timeout=10, check=False)
        if NS_CLIENT in present and not self._client_v6_default():
            self._ip(NS_CLIENT, "-6", "route", "replace", "default", "via", "fd66:1::1")  # as _build_network
        if self.effects:
            self.log(f"effects off: {', '.join(self.effects)}")
        self.effects = []

    def _effect_pids(self, ns: str) -> list[int]:
        res = run(["ip", "netns", "pids", ns], check=False, timeout=10)
        found = []
        for pid in (int(p) for p in res.stdout.split() if p.isdigit()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(Path(arg.decode(errors="replace")).name in self.EFFECT_SCRIPTS for arg in cmdline[:3]):
                found.append(pid)
        return found

    def effect_state(self) -> dict[str, object]:
        """What is left of the effects (for the tests): processes and nplab-srv's nat rules."""
        nat = [line for tool in ("iptables-save", "ip6tables-save")
               for line in self.exec_in(NS_SRV, [tool, "-t", "nat"], check=False, timeout=10).stdout.splitlines()
               if line.startswith("-A")]
        return {"pids": {ns: self._effect_pids(ns) for ns in (NS_CENSOR, NS_SRV)}, "srv_nat": nat,
                "servers": [s.name for s in self.servers if s.name in {n for _, n in self.EFFECT_SERVERS}],
                "client_v6_default": self._client_v6_default()}

    def _client_v6_default(self) -> bool:
        return bool(self.exec_in(NS_CLIENT, ["ip", "-6", "route", "show", "default"], timeout=10).stdout.strip())

    def apply_rules(self, rules, name: str = "custom") -> None:
        """Replace the censor's filter, nat and mangle tables (both families) atomically."""
        for family, restore in ((4, "iptables-restore"), (6, "ip6tables-restore")):
            text = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
            text += [r.rule for r in rules if r.family == family and r.table == "filter"]
            text += ["COMMIT", "*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]",
                     ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
            text += [r.rule for r in rules if r.family == family and r.table == "nat"]
            text += ["COMMIT", "*mangle", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
                     ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
            text += [r.rule for r in rules if r.family == family and r.table == "mangle"]
            text += ["COMMIT", ""]
            self.exec_in(NS_CENSOR, [restore], input="\n".join(text), timeout=15)
        # Stale NAT bindings (a DNS flow DNATed to the previous scenario's liar, reused by
        # a query from the same source port) must not outlive the scenario: flush them.
        self.exec_in(NS_CENSOR, ["conntrack", "-F"], timeout=10)
        self.applied = name
        self.log(f"applied censor rules: {name} ({len(rules)} rules)")

    def censor_rules(self) -> str:
        out = []
        for tool in ("iptables-save", "ip6tables-save"):
            res = self.exec_in(NS_CENSOR, [tool], check=False, timeout=10)
            out.append(res.stdout)
        return "\n".join(out)

    # --- netprobe -------------------------------------------------------------
    def netprobe_command(self, extra: list[str] | tuple[str, ...] = (), probe_timeout: float = 1,
                         targets: TargetSet | str = MAIN_TARGETS) -> list[str]:
        return [sys.executable, "-m", "netprobe", "run", "--targets", str(self.targets_path(targets)),
                "--resolver", RESOLVER, "--format", "jsonl", "--timeout", f"{probe_timeout:g}",
                "--ca-bundle", str(self.ca_file), *extra]

    def run_netprobe(self, extra: list[str] | tuple[str, ...] = (), probe_timeout: float = 1,
                     timeout: float = 120, targets: TargetSet | str = MAIN_TARGETS) -> NetprobeRun:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = self.netprobe_command(extra, probe_timeout, targets)
        started = time.monotonic()
        res = self.exec_in(NS_CLIENT, cmd, timeout=timeout, check=False, env=env, cwd=REPO_ROOT)
        return NetprobeRun(cmd=cmd, returncode=res.returncode, stdout=res.stdout, stderr=res.stderr,
                           seconds=time.monotonic() - started)

    def status(self) -> str:
        lines = [f"namespaces: {', '.join(list_lab_namespaces()) or '(none)'}", f"state dir: {self.dir}"]
        for ns in list_lab_namespaces():
            pids = run(["ip", "netns", "pids", ns], check=False, timeout=10).stdout.split()
            lines.append(f"  {ns}: pids {' '.join(pids) or '-'}")
        return "\n".join(lines)


@dataclass
class NetprobeRun:
    cmd: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def records(self) -> list[dict]:
        out = []
        for line in self.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def invalid_lines(self) -> list[str]:
        bad = []
        for line in self.stdout.splitlines():
            if not line.strip():
                continue
            try:
                if not isinstance(json.loads(line), dict):
                    bad.append(line)
            except json.JSONDecodeError:
                bad.append(line)
        return bad


# --- command line ---------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    import argparse

    sys.path.insert(0, str(HERE))
    parser = argparse.ArgumentParser(description="Build and drive the netprobe censorship lab by hand.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="build the lab and leave it up (no censorship applied)")
    sub.add_parser("down", help="tear the lab down (also removes leftovers of crashed runs)")
    ap = sub.add_parser("apply", help="flush the censor's rules and apply a scenario's")
    ap.add_argument("scenario")
    sub.add_parser("status", help="namespaces, processes, censor rules")
    sub.add_parser("list", help="list scenarios")
    rp = sub.add_parser("netprobe", help="run netprobe in the client namespace (extra args passed on)")
    rp.add_argument("args", nargs=argparse.REMAINDER)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["netprobe"]:  # everything after it is netprobe's, options included (--targets ...)
        args = argparse.Namespace(cmd="netprobe", args=argv[1:])
    else:
        args = parser.parse_args(argv)

    reason = unavailable_reason() if args.cmd not in ("list",) else None
    if reason:
        print(f"lab unavailable: {reason}", file=sys.stderr)
        return 2
    lab = Lab(verbose=True, hold_lock=False)
    if args.cmd in ("up", "down", "apply", "netprobe"):
        try:
            lab.locked()
        except LabError as exc:
            print(exc, file=sys.stderr)
            return 1
    if args.cmd == "up":
        lab.up()
        atexit.unregister(lab.down)
        lab._release_lock()  # the lab stays up; the next test run removes it as a leftover
        print(f"lab is up; state in {lab.dir}\n"
              f"  client shell:  ip netns exec {NS_CLIENT} bash\n"
              f"  netprobe:      ip netns exec {NS_CLIENT} {shlex.join(lab.netprobe_command())}\n"
              f"  (cwd {REPO_ROOT}, PYTHONPATH={REPO_ROOT})\n"
              f"  apply:         python {Path(__file__).relative_to(REPO_ROOT)} apply SCENARIO\n"
              f"  down:          python {Path(__file__).relative_to(REPO_ROOT)} down")
    elif args.cmd == "down":
        lab.down()
    elif args.cmd == "apply":
        if NS_CENSOR not in list_lab_namespaces():
            print("the lab is not up (run `up` first)", file=sys.stderr)
            return 1
        from scenarios import by_name
        scenario = by_name(args.scenario)
        lab.apply(scenario)
        print(f"applied {scenario.name}: {scenario.technique}")
        if scenario.effects:
            print(f"effects: {', '.join(scenario.effects)} (undone by the next apply, or down)")
        if scenario.targets != MAIN_TARGETS.name:
            print(f"its target file: {lab.targets_path(scenario.targets)} "
                  f"(topology.py netprobe --targets {lab.targets_path(scenario.targets)})")
        print(lab.censor_rules())
    elif args.cmd == "status":
        print(lab.status())
        if NS_CENSOR in list_lab_namespaces():
            print(lab.censor_rules())
    elif args.cmd == "list":
        from scenarios import SCENARIOS
        for s in SCENARIOS:
            extra = "".join([f"  [targets: {s.targets}]" if s.targets != MAIN_TARGETS.name else "",
                             f"  [effects: {', '.join(s.effects)}]" if s.effects else ""])
            print(f"{s.name:24} {s.technique}{extra}")
    elif args.cmd == "netprobe":
        res = lab.run_netprobe(args.args)
        sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr)
        return res.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
