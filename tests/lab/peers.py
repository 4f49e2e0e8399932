"""Peers: well-known tools measuring the same cases from the client namespace.

dig (DNS), curl (HTTPS, --resolve pins the genuine address so only the path is
tested) and nmap -sT (TCP connect).  Each observation is normalised to a small
class vocabulary so it can be compared with netprobe's reason:

    dns   ok | nxdomain | timeout | bogus | other:...    (dig status + answers)
          aaaa-timeout: A answered inside the networks, the AAAA query unanswered
    dns_injection  silence | injected                    (dig at the canary, which runs no DNS)
    tcp   open | closed | filtered                       (nmap port state)
    https ok | reset | timeout | bad-cert | refused | ...(curl exit code)
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import topology as T

PEERS = ("dig", "curl", "nmap")


@dataclass(frozen=True)
class Observation:
    peer: str              # dig | curl | nmap
    probe: str             # the netprobe probe it corresponds to: dns | tcp | control | https
    target: str            # as netprobe spells it: domain, or IP:PORT / [IPv6]:PORT
    family: int | None     # for https: the address family curl used
    klass: str             # normalised (see module doc)
    raw: str               # what the tool said, for the report
    command: str

    @property
    def key(self) -> tuple:
        return (self.probe, self.target, self.family)


# --- netprobe reasons -> peer classes ------------------------------------------------

def reason_class(probe: str, reason: str | None) -> str | None:
    """The class a peer would observe for a netprobe reason, or None if no peer can see it."""
    if probe == "dns":
        if reason is None:
            return "ok"
        return {"dns.nxdomain": "nxdomain", "dns.timeout": "timeout", "dns.bogon": "bogus",
                "dns.outside_networks": "bogus", "dns.teredo": "bogus"}.get(reason)
    if probe == "dns_injection":
        return {None: "silence", "dns.injected": "injected"}.get(reason)
    if probe in ("tcp", "control"):
        if reason is None:
            return "open"
        failure = reason.partition(".")[2]
        return {"refused": "closed", "reset": "closed", "timeout": "filtered",
                "unreachable": "filtered"}.get(failure)
    if probe == "https":
        if reason is None:
            return "ok"
        return {"tls.reset": "reset", "tls.timeout": "timeout", "tls.bad_certificate": "bad-cert",
                "tcp.refused": "refused", "tcp.timeout": "timeout", "tcp.unreachable": "unreachable",
                "tls.eof": "eof", "http.timeout": "timeout"}.get(reason)
    return None


def agrees(mine: str | None, seen: str) -> bool:
    """Does netprobe's class agree with what the peer saw?  An AAAA lost next to a genuine A answer is
    consistent with reachable (the loss is the network's, as the controls show) and with timeout."""
    if seen == "aaaa-timeout":
        return mine in ("ok", "timeout")
    return mine == seen


def _in_networks(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    return any(ip.version == n.version and ip in n for n in map(ipaddress.ip_network, T.SERVICE_NETWORKS))


# --- dig ------------------------------------------------------------------------------

_STATUS = re.compile(r"status: ([A-Z]+)")


def dig(lab, domain: str) -> Observation:
    """A and AAAA, as netprobe asks, in one dig run."""
    opts = ["+time=1", "+tries=1", "+nocookie"]
    cmd = ["dig", f"@{T.DNS_V4}", "-p", "53", *opts, domain, "A", domain, "AAAA"]
    try:
        res = lab.exec_in(T.NS_CLIENT, cmd, check=False, timeout=10)
        out = res.stdout
    except subprocess.TimeoutExpired:
        out = ""
    statuses = _STATUS.findall(out)
    answers = re.findall(r"^\S+\s+\d+\s+IN\s+(?:A|AAAA)\s+(\S+)$", out, re.MULTILINE)
    answered = re.findall(r"^;\S+\s+IN\s+(A|AAAA)$", out, re.MULTILINE)  # question sections of the answers
    if not statuses:
        status = "TIMEOUT"
    elif "NXDOMAIN" in statuses:
        status = "NXDOMAIN"
    elif any(s != "NOERROR" for s in statuses):
        status = next(s for s in statuses if s != "NOERROR")
    else:
        status = "NOERROR"
    if len(statuses) < 2 and status != "TIMEOUT" and "timed out" in out:
        status = "TIMEOUT"  # one of the two queries got no answer
    if status == "TIMEOUT" and answered == ["A"] and statuses == ["NOERROR"] and answers \
            and all(_in_networks(a) for a in answers):
        klass = "aaaa-timeout"
    elif status == "NOERROR" and answers:
        klass = "ok" if all(_in_networks(a) for a in answers) else "bogus"
    elif status == "NXDOMAIN":
        klass = "nxdomain"
    elif status == "TIMEOUT":
        klass = "timeout"
    else:
        klass = f"other:{status}"
    raw = status + (" " + ",".join(answers) if answers else "")
    return Observation("dig", "dns", domain, None, klass, raw, " ".join(cmd))


def dig_canary(lab, domain: str) -> Observation:
    """Ask an address that runs no DNS server: any answer was made on the path."""
    cmd = ["dig", f"@{T.DNS_CANARY}", "-p", "53", "+time=1", "+tries=1", "+nocookie", domain, "A"]
    try:
        out = lab.exec_in(T.NS_CLIENT, cmd, check=False, timeout=10).stdout
    except subprocess.TimeoutExpired:
        out = ""
    m = _STATUS.search(out)
    if m:
        klass, raw = "injected", f"answered {m.group(1)}"
    else:
        klass, raw = "silence", ("port unreachable" if "refused" in out else "no answer")
    return Observation("dig", "dns_injection", domain, None, klass, raw, " ".join(cmd))


# --- curl -----------------------------------------------------------------------------

CURL_CLASSES = {0: "ok", 7: "refused", 28: "timeout", 35: "reset", 56: "reset", 60: "bad-cert",
                51: "bad-cert", 52: "eof"}


def curl(lab, domain: str, address: str) -> Observation:
    family = 6 if ":" in address else 4
    pinned = f"[{address}]" if family == 6 else address
    cmd = ["curl", "-sS", "-o", "/dev/null", "--connect-timeout", "1", "--max-time", "2",
           "--cacert", str(lab.ca_file), "--resolve", f"{domain}:443:{pinned}", f"https://{domain}/"]
    try:
        res = lab.exec_in(T.NS_CLIENT, cmd, check=False, timeout=10)
        code, err = res.returncode, res.stderr.strip()
    except subprocess.TimeoutExpired:
        code, err = 28, "subprocess timeout"
    klass = CURL_CLASSES.get(code, f"exit{code}")
    if code == 35 and "reset" not in err.lower():
        klass = "tls-error"
    if code == 7 and ("No route" in err or "unreachable" in err.lower()):
        klass = "unreachable"
    raw = f"exit {code}" + (f": {err.splitlines()[-1][:80]}" if err else "")
    return Observation("curl", "https", domain, family, klass, raw, " ".join(cmd))


# --- nmap -----------------------------------------------------------------------------

def nmap(lab, endpoints: list[tuple[str, str]]) -> list[Observation]:
    """endpoints: (probe, "IP:PORT").  One nmap per (family, port) group."""
    groups: dict[tuple[int, int], list[tuple[str, str, str]]] = {}
    for probe, ep in endpoints:
        if ep.startswith("["):
            host, _, port = ep[1:].partition("]:")
        else:
            host, _, port = ep.rpartition(":")
        fam = ipaddress.ip_address(host).version
        groups.setdefault((fam, int(port)), []).append((probe, ep, host))
    out: list[Observation] = []
    for (fam, port), items in groups.items():
        # --min-rtt-timeout: the lab's hosts answer in microseconds, and nmap would shrink its timeout to
        # match them; a far data center (far_genuine, +150 ms) must not read as filtered.
        cmd = ["nmap", "-sT", "-Pn", "-n", "-p", str(port), "--max-retries", "0", "--min-rtt-timeout", "300ms",
               "--initial-rtt-timeout", "300ms", "--max-rtt-timeout", "1000ms", "--reason", "-oX", "-"]
        if fam == 6:
            cmd.append("-6")
        cmd += sorted({h for _, _, h in items})
        states: dict[str, tuple[str, str]] = {}
        try:
            res = lab.exec_in(T.NS_CLIENT, cmd, check=False, timeout=60)
            root = ET.fromstring(res.stdout)
            for host in root.iter("host"):
                addr = host.find("address").get("addr")
                for p in host.iter("port"):
                    st = p.find("state")
                    states[str(ipaddress.ip_address(addr))] = (st.get("state"), st.get("reason"))
        except (subprocess.TimeoutExpired, ET.ParseError):
            pass
        for probe, ep, host in items:
            state, why = states.get(str(ipaddress.ip_address(host)), ("missing", ""))
            klass = state if state in ("open", "closed", "filtered") else f"other:{state}"
            out.append(Observation("nmap", probe, ep, None, klass, f"{state} ({why})" if why else state,
                                   " ".join(cmd)))
    return out


# --- all peers for one scenario ---------------------------------------------------------

def observe(lab, scenario, targets: T.TargetSet, controls: list[str]) -> list[Observation]:
    """Run every peer (concurrently) against a target set's targets under the applied scenario."""
    jobs = []
    tcp_targets = targets.tcp_targets
    with ThreadPoolExecutor(max_workers=8) as pool:
        for d in targets.domains:
            jobs.append(pool.submit(lambda d=d: [dig(lab, d), dig_canary(lab, d)]))
        if scenario.curl:
            for d, addrs in targets.web_hosts.items():
                for a in addrs:  # every genuine address, both families
                    jobs.append(pool.submit(lambda d=d, a=a: [curl(lab, d, a)]))
        endpoints = [("control", c) for c in controls] + [("tcp", t) for t in tcp_targets]
        for fam in (4, 6):  # one nmap per family, in parallel
            group = [(p, e) for p, e in endpoints if e.startswith("[") == (fam == 6)]
            if group:
                jobs.append(pool.submit(nmap, lab, group))
        out: list[Observation] = []
        for job in jobs:
            out.extend(job.result())
    return out
