"""The censor's configurations, as data: rules to apply and the verdicts netprobe should give.

Each scenario is applied fresh (the censor's filter and nat tables are replaced
whole).  Its expectations list, for every (probe, target) the lab can speak
about, the verdict and reason netprobe must report; anything not listed is
not asserted.

Techniques reproduced (all in the censor namespace, chain FORWARD unless said):
  DNS interception  nat PREROUTING DNAT of udp/tcp 53 to a lying dnsmasq
  DNS blackhole     DROP udp/tcp 53
  IP blocking       DROP / REJECT tcp-reset / REJECT icmp(6)-adm-prohibited by destination
  SNI filtering     -m string --string "web.telegram.lab" on tcp 443 -> tcp-reset or DROP
  fingerprinting    -m string --hex-string "|eeeeeeee|" (MTProto intermediate) and -m u32
                    "first payload byte 0xef" (abridged) on the DCs -> tcp-reset
  TLS MITM          nat PREROUTING DNAT of tcp 443 to the censor's nginx (rogue CA)
  HTTP blockpage    nat PREROUTING DNAT of tcp 80 to the censor's nginx (302 off the service)
  DNS injection     an injector in the censor (tests/lab/dns_injector.py, AF_PACKET) answers first
                    with a forged address; the genuine answer, delayed, arrives second
  offline           DROP everything: the vantage point itself is cut off
  combinations      several of the above at once
Misbehaving servers (no censor): a server that completes the handshake and then says
nothing, or drips one byte every 0.5 s; they have target files of their own.
Broken networks (not censorship of Telegram; netprobe must not call them blocking):
  walled garden     every TCP connection DNATed to one box (own HTTP, own TLS), all DNS DNATed to a
                    resolver answering NXDOMAIN for every name, IPv6 dropped
  captive portal    every name resolves to the portal; every TCP connection lands on it (a valid
                    certificate, but for the portal's own name; plain HTTP: 302 to the login page)
  dead resolver     the configured resolver is dropped (HTTPS to pinned addresses still works)
  TLS interception  every tcp 443 connection DNATed to the censor's MITM nginx (rogue CA)
  controls blocked  the control host is dropped while Telegram works
  AAAA dropped      the resolver's AAAA queries are dropped for every name (some home routers)
and one more censorship technique:
  known blockpage   tcp 80 of the web hosts DNATed to a national blockpage served with status 200
Interceptors (issue 18; not censorship of Telegram either): nat REDIRECT of the client's TCP connections
to a box in the censor (tests/lab/canned_proxy.py) that answers for every destination, sparing the
special-purpose ranges (refused with a RST, as a real one did):
  intercept_spares_special  the real network: its own TLS, its own 404 to a GET, its own 400 to
                            anything else; the resolver times out, DNS elsewhere NXDOMAIN, no IPv6 route
  intercept_canned_all      the same 400 for every connection, the moment it is accepted
  intercept_port80          the peeking box on port 80 only; 443 genuine
  far_genuine / fast_far_away / fast_far_relay  DC2 150 ms away (a delay line in the censor): genuine,
                            then a box in the censor answering for the data centres faster than light,
                            silently, or relaying their bytes (a split-TCP accelerator)

Every scenario also says which techniques the run's summary must name (the prefixes of
its findings, netprobe/diagnosis.py), and no other.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import topology as T



class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()  # a reason that is not asserted


@dataclass(frozen=True)
class Rule:
    family: int   # 4 -> iptables, 6 -> ip6tables
    table: str    # "filter" | "nat"
    rule: str     # as iptables-save prints it: "-A FORWARD -d 10.77.2.0/24 -j DROP"

    def __str__(self) -> str:
        tool = "iptables" if self.family == 4 else "ip6tables"
        return f"{tool} -t {self.table} {self.rule}"


@dataclass(frozen=True)
class Expect:
    probe: str
    target: str
    verdict: str
    reason: object = None        # str, None (reachable) or ANY
    family: int | None = None    # for per-address probes of a domain (https): which family's record
    raw: str | None = None       # what a peer sees, when `reason` is ANY/changed (e.g. offline); with
                                 # reason ANY and no raw, a peer sees what an open path shows
    required: bool = True        # False: checked only when netprobe emitted such a record
    stage: str | None = None     # control records: only those of this evidence.stage (None: every stage)
    peer: str | None = None      # the peer class (peers.py) a peer observes, when the verdict does not imply it

    @property
    def key(self) -> tuple:
        return (self.probe, self.target, self.family, self.stage)

    @property
    def id(self) -> str:
        fam = f"-v{self.family}" if self.family else ""
        stage = f"-{self.stage}" if self.stage else ""
        return f"{self.probe}-{self.target}{fam}{stage}"

    @property
    def observed(self) -> str | None:
        """The failure a peer should observe (the reason before any vantage adjustment)."""
        if self.raw is not None:
            return self.raw
        return None if self.reason is ANY else self.reason  # type: ignore[return-value]


@dataclass(frozen=True)
class Scenario:
    name: str
    technique: str
    description: str
    rules: tuple[Rule, ...]
    expect: tuple[Expect, ...]
    all_inconclusive: bool = False   # every record of every probe but the controls must be inconclusive
    curl: bool = False               # whether curl (HTTPS) is a meaningful peer here
    timeout: float = 1.0             # netprobe --timeout for this scenario
    findings: frozenset[str] = frozenset()  # the summary's finding prefixes: exactly these
    finding_phrases: tuple[str, ...] = ()   # ... and some finding contains each of these
    targets: str = "lab"             # the target set (topology.TARGET_SETS) netprobe and the peers use
    effects: tuple[str, ...] = ()    # topology.Lab.EFFECTS started with the rules, stopped after the run
    bounded: bool = False            # assert every probe ends within --timeout + 0.5 s (misbehaving servers)
    # Where something on the path answers for the destination, as (cidr, port): no tcp, https, http or
    # mtproto* record measured at such an address and port may be reachable.
    intercepted: tuple[tuple[str, int], ...] = ()
    # The path is intercepted and nothing else: no service record is blocked or reset, the summary's
    # reason is not summary.blocking_observed, and its first finding names the interception.
    interception_only: bool = False


def rule4(table: str, rule: str) -> Rule:
    return Rule(4, table, rule)


def rule6(table: str, rule: str) -> Rule:
    return Rule(6, table, rule)


# --- what exists in the lab ----------------------------------------------------

V4_ENDPOINTS = [e for e in T.ENDPOINTS if not e.startswith("[")]
V6_ENDPOINTS = [e for e in T.ENDPOINTS if e.startswith("[")]
RANGE_ENDPOINTS = [T.endpoint(a, T.RANGE_PORT) for c in T.RANGES for a in T.range_addresses(c)]
TCP_TARGETS = T.MAIN_TARGETS.tcp_targets


def _family(endpoint_or_ip: str) -> int:
    host = endpoint_or_ip
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return ipaddress.ip_address(host).version


CONTROL_STAGES = ("dns", "dns_injection", "tls", "http")   # the control names' stages
NEGATIVE_ENDPOINTS = [T.endpoint(a, port) for a in T.NEGATIVE_CONTROLS for port in T.NEGATIVE_CONTROL_PORTS]


# The TCP controls' records (evidence.stage "tcp"; the same endpoints also carry netprobe's MTProto path
# checks, stage "path": what a non-MTProto host answers to MTProto, not asserted here).
TCP_CONTROLS = tuple(("control", c, None, "tcp") for c in T.CONTROLS)


def control_name(stage: str) -> tuple:
    """The key of the control names' expectation at one stage (for `drop`)."""
    return ("control", T.CONTROL_NAME, None, stage)


def negative(endpoints, verdict: str, reason) -> list[Expect]:
    """Negative controls (evidence.stage "interception"): a connection that must fail.  Failing is
    reachable ("no interception"); connecting is inconclusive, interception.accepted."""
    return [Expect("control", e, verdict, reason, stage="interception") for e in endpoints]


def baseline(https: bool = True, mtproto: bool = True,
             targets: T.TargetSet = T.MAIN_TARGETS, http: bool = False) -> dict[tuple, Expect]:
    """Everything reachable: the expectations of an uncensored network.

    The control names' records (every stage) and the negative controls' are expected reachable too,
    but only where netprobe writes them (required=False): a netprobe without control names passes."""
    out: list[Expect] = []
    out += [Expect("control", c, "reachable", stage="tcp") for c in T.CONTROLS]
    out += [Expect("control", T.CONTROL_NAME, "reachable", stage=s, required=False) for s in CONTROL_STAGES]
    out += [Expect("control", e, "reachable", stage="interception", required=False) for e in NEGATIVE_ENDPOINTS]
    out += [Expect("dns", d, "reachable") for d in targets.domains]
    out += [Expect("dns_injection", d, "reachable") for d in targets.domains]
    out += [Expect("tcp", t, "reachable") for t in targets.tcp_targets]
    if https:  # whichever address(es) the probe picks: family None matches every record
        out += [Expect("https", d, "reachable") for d in targets.domains]
    if http:
        out += [Expect("http", d, "reachable") for d in targets.domains]
    if mtproto:
        for e in targets.endpoints:
            out.append(Expect("mtproto", e, "reachable"))
            out.append(Expect("mtproto_abridged", e, "reachable"))
            out.append(Expect("mtproto_obfuscated2", e, "reachable"))
    return {e.key: e for e in out}


def build(base: dict[tuple, Expect], *changes: Expect, drop: tuple = ()) -> tuple[Expect, ...]:
    drop = tuple(tuple(k) + (None,) * (4 - len(k)) for k in drop)  # (probe, target, family[, stage])
    table = {k: v for k, v in base.items() if k not in drop}
    for change in changes:
        table[change.key] = change
    return tuple(table.values())


def tcp(targets, verdict: str, reason) -> list[Expect]:
    return [Expect("tcp", t, verdict, reason) for t in targets]


def dns_all(verdict: str, reason) -> list[Expect]:
    return [Expect("dns", d, verdict, reason) for d in T.DOMAINS]


def injected() -> list[Expect]:
    """Interception answers the canary too (an address running no DNS server): dns.injected."""
    return [Expect("dns_injection", d, "blocked", "dns.injected") for d in T.DOMAINS]


# Where the liar answers the canary, it answers the control names there too (genuinely): their
# dns_injection-stage record is not "reachable", and not asserted.
LIAR_DROPS = (control_name("dns_injection"),)


def https(domains, family: int | None, verdict: str, reason, required: bool = True) -> list[Expect]:
    return [Expect("https", d, verdict, reason, family=family, required=required)
            for d in domains]


# --- rules building blocks ----------------------------------------------------------

def dns_intercept(mode: str) -> tuple[Rule, ...]:
    port = T.LIAR_PORTS[mode]
    return tuple(
        rule4("nat", f"-A PREROUTING -i {T.CENSOR_CLIENT_IF} -p {proto} --dport 53 "
                     f"-j DNAT --to-destination {T.CENSOR_SVC_V4}:{port}")
        for proto in ("udp", "tcp"))


# DNS queries for the service's names are dropped (matched on the QNAME's wire form, e.g.
# |08|telegram|03|lab|00| for *telegram.lab); other names resolve.  Dropping all of port 53 would be a
# dead resolver (dead_resolver): the control names would fail too.
QNAMES = ("|08|telegram|03|lab|00|", "|01|t|03|lab|00|")
DROP_DNS = tuple(rule("filter", f'-A FORWARD -p {proto} --dport 53 -m string --hex-string "{qname}" '
                                "--algo bm -j DROP")
                 for rule in (rule4, rule6) for proto in ("udp", "tcp") for qname in QNAMES)

WEB = "web.telegram.lab"
V6_ONLY = "ipv6.telegram.lab"
UNPINNED = [d for d in T.DOMAINS if d not in T.PINNED]
DUAL_TELEGRAM = [d for d, addrs in T.WEB_HOSTS.items() if len(addrs) == 2 and d.endswith("telegram.lab")]
# First TCP payload byte == 0xef (MTProto abridged).  IPv4: skip the IP header (IHL) and the TCP
# header (data offset); IPv6 (no extension headers): the TCP header starts at byte 40.
ABRIDGED_U32_V4 = "0>>22&0x3C@12>>26&0x3C@0>>24=0xef"
ABRIDGED_U32_V6 = "52>>26&0x3C@40>>24=0xef"
RANGE_DROPPED = "10.77.64.4/30"   # .4-.7 dropped
RANGE_RESET = "10.77.64.12/31"    # .12-.13 reset

SNI_RESET = tuple(r("filter", f'-A FORWARD -p tcp --dport 443 -m string --string "{WEB}" --algo bm '
                              "-j REJECT --reject-with tcp-reset") for r in (rule4, rule6))
FINGERPRINT = (
    tuple(r("filter", f'-A FORWARD -p tcp -d {net} --dport {T.DC_PORT} -m string --hex-string '
                      '"|eeeeeeee|" --algo bm -j REJECT --reject-with tcp-reset')
          for r, net in ((rule4, T.DC_NET_V4), (rule6, T.DC_NET_V6)))
    + tuple(r("filter", f'-A FORWARD -p tcp -d {net} --dport {T.DC_PORT} -m u32 --u32 "{expr}" '
                        "-j REJECT --reject-with tcp-reset")
            for r, net, expr in ((rule4, T.DC_NET_V4, ABRIDGED_U32_V4), (rule6, T.DC_NET_V6, ABRIDGED_U32_V6))))
BLOCKPAGE = tuple(r("nat", f"-A PREROUTING -i {T.CENSOR_CLIENT_IF} -p tcp -d {net} --dport 80 "
                           f"-j DNAT --to-destination {to}")
                  for r, net, to in ((rule4, T.WEB_NET_V4, f"{T.CENSOR_SVC_V4}:{T.BLOCKPAGE_PORT}"),
                                     (rule6, T.WEB_NET_V6, f"[{T.CENSOR_SVC_V6}]:{T.BLOCKPAGE_PORT}")))
DC1 = T.DC_ADDRS[1]
DC1_ENDPOINTS = [T.endpoint(a, T.DC_PORT) for a in DC1]
DROP_DC1 = (rule4("filter", f"-A FORWARD -d {DC1[0]} -j DROP"), rule6("filter", f"-A FORWARD -d {DC1[1]} -j DROP"))


def _in(endpoint: str, cidr: str) -> bool:
    host = endpoint[1:].partition("]")[0] if endpoint.startswith("[") else endpoint.partition(":")[0]
    ip, net = ipaddress.ip_address(host), ipaddress.ip_network(cidr)
    return ip.version == net.version and ip in net


RANGE_V4_ENDPOINTS = [e for e in RANGE_ENDPOINTS if _family(e) == 4]


def mtproto_all(endpoints, verdict: str, reason, kinds=("mtproto", "mtproto_abridged", "mtproto_obfuscated2")):
    return [Expect(k, e, verdict, reason) for k in kinds for e in endpoints]


def fingerprinted() -> list[Expect]:
    return [Expect(p, e, "reset", "mtproto.reset") for p in ("mtproto", "mtproto_abridged") for e in T.ENDPOINTS]


# --- broken networks: building blocks ------------------------------------------------------

SVC = {4: T.CENSOR_SVC_V4, 6: f"[{T.CENSOR_SVC_V6}]"}
RULE = {4: rule4, 6: rule6}


def dnat(family: int, match: str, port: int) -> Rule:
    """nat PREROUTING: what the client sends matching MATCH goes to the censor's own PORT instead."""
    return RULE[family]("nat", f"-A PREROUTING -i {T.CENSOR_CLIENT_IF} {match} "
                               f"-j DNAT --to-destination {SVC[family]}:{port}")


def dnat_all_dns(family: int, port: int) -> tuple[Rule, ...]:
    """Every DNS query, to any address (the resolver, the canary, anything): to the censor's PORT."""
    return tuple(dnat(family, f"-p {proto} --dport 53", port) for proto in ("udp", "tcp"))


def no_way_out(family: int) -> Rule:
    """Whatever the DNAT rules did not take to the censor's own hosts goes nowhere."""
    return RULE[family]("filter", f"-A FORWARD -i {T.CENSOR_CLIENT_IF} -j DROP")


def every_probe(verdict: str, reason, targets: T.TargetSet = T.MAIN_TARGETS, **raw) -> list[Expect]:
    """VERDICT for every probe of every target; RAW (probe -> netprobe reason) says what a peer sees."""
    out = []
    for probe, items in (("dns", targets.domains), ("dns_injection", targets.domains),
                         ("tcp", targets.tcp_targets), ("https", targets.domains), ("http", targets.domains),
                         *((k, targets.endpoints) for k in ("mtproto", "mtproto_abridged", "mtproto_obfuscated2"))):
        out += [Expect(probe, t, verdict, reason, raw=raw.get(probe)) for t in items]
    return out


# Control records of every kind: dropped from a scenario that does not assert them.
ALL_CONTROLS = (*TCP_CONTROLS, *[control_name(s) for s in CONTROL_STAGES],
                *[("control", e, None, "interception") for e in NEGATIVE_ENDPOINTS])
AAAA = "|001c0001|"   # QTYPE AAAA, QCLASS IN: right after the QNAME


# --- interceptors: building blocks (issue 18) -------------------------------------------------

def intercept(mode: str, match: str = "-p tcp", families=(4, 6)) -> tuple[Rule, ...]:
    """The client's TCP connections matching MATCH (any address) go to the censor's own box
    (canned_proxy.py in MODE), which refuses those originally meant for a special-purpose range with a
    RST, as real interceptors exempt them (filter INPUT, by the original destination: the censor has
    no route there, so FORWARD never sees them)."""
    port = T.PROXY_PORTS[mode]
    out: list[Rule] = []
    for fam in families:
        out.append(RULE[fam]("nat", f"-A PREROUTING -i {T.CENSOR_CLIENT_IF} {match} -j REDIRECT --to-ports {port}"))
        out += [RULE[fam]("filter", f"-A INPUT -i {T.CENSOR_CLIENT_IF} -p tcp -m conntrack --ctorigdst {cidr} "
                                    "-j REJECT --reject-with tcp-reset") for cidr in T.SPECIAL_RANGES[fam]]
    return tuple(out)


RESOLVERS = {4: T.DNS_V4, 6: T.DNS_V6}
# The real network's DNS: the configured resolver never answers (udp and tcp 53 dropped; RETURN keeps its
# tcp 53 from the interceptor's catch-all REDIRECT), and any other address answers NXDOMAIN for every name
# (the catch-all dnsmasq, as in the walled garden).  Before the interceptor's rules: the first nat rule wins.
RESOLVER_TIMES_OUT_ELSEWHERE_NXDOMAIN = tuple(
    r for fam in (4, 6) for r in (
        *[RULE[fam]("filter", f"-A FORWARD -d {RESOLVERS[fam]} -p {proto} --dport 53 -j DROP") for proto in ("udp", "tcp")],
        *[RULE[fam]("nat", f"-A PREROUTING -i {T.CENSOR_CLIENT_IF} -d {RESOLVERS[fam]} -p {proto} --dport 53 -j RETURN")
          for proto in ("udp", "tcp")],
        *dnat_all_dns(fam, T.CATCHALL_DNS["garden"][0])))
EVERYWHERE = {4: "0.0.0.0/0", 6: "::/0"}


def everywhere(*ports: int) -> tuple[tuple[str, int], ...]:
    return tuple((EVERYWHERE[fam], port) for fam in (4, 6) for port in ports)


I = T.INTERCEPT_TARGETS
I_V4_TCP = [t for t in I.tcp_targets if _family(t) == 4]
I_V6_TCP = [t for t in I.tcp_targets if _family(t) == 6]
I_V4_ENDPOINTS = [e for e in I.endpoints if _family(e) == 4]
I_V6_ENDPOINTS = [e for e in I.endpoints if _family(e) == 6]
I_ENDPOINTS_80 = [e for e in I.endpoints if e.endswith(f":{T.DC_HTTP_PORT}")]
I_PORTS = sorted({int(t.rpartition(":")[2]) for t in I.tcp_targets} | {80, 443})


def intercepted_tcp(targets) -> list[Expect]:
    """TCP to an address the box answers for: it connects (nmap: open), and proves nothing."""
    return [Expect("tcp", t, "inconclusive", "tcp.intercepted", peer="open") for t in targets]


def spared(endpoints, verdict: str = "reachable", reason=None) -> list[Expect]:
    """netprobe's documentation-address negative controls, refused by the box: they fail, as in an open
    network ("no interception" as far as they can tell: reachable), unless netprobe found no open access
    at all (then every record is inconclusive); asserted where netprobe writes them."""
    return [Expect("control", e, verdict, reason, stage="interception", required=False) for e in endpoints]


# The far data centers: the client's packets to DC2 (both families) go through the delay line.
FAR = T.FAR_TARGETS
FAR_ADDRS = T.DC_ADDRS[T.FAR_DC]
MARK_FAR = tuple(RULE[fam]("mangle", f"-A PREROUTING -i {T.CENSOR_CLIENT_IF} -d {FAR_ADDRS[fam == 6]} "
                                     f"-j MARK --set-mark {T.FAR_MARK:#x}") for fam in (4, 6))
DC_HOSTS = {4: [a[0] for a in T.DC_ADDRS.values()], 6: [a[1] for a in T.DC_ADDRS.values()]}


def box_for_dcs(mode: str) -> tuple[Rule, ...]:
    """Every TCP connection to the data centres' addresses (both, both families) goes to the box."""
    return tuple(RULE[fam]("nat", f"-A PREROUTING -i {T.CENSOR_CLIENT_IF} -p tcp -d {host} "
                                  f"-j REDIRECT --to-ports {T.PROXY_PORTS[mode]}")
                 for fam in (4, 6) for host in DC_HOSTS[fam])


# The relay's own connections to DC2 go through the delay line too: the far data centre stays far.
MARK_FAR_RELAYED = tuple(RULE[fam]("mangle", f"-A OUTPUT -d {FAR_ADDRS[fam == 6]} -j MARK --set-mark {T.FAR_MARK:#x}")
                         for fam in (4, 6))


# --- what the run's summary must say (finding prefixes, netprobe/diagnosis.py) -------------

NO_BLOCKING = frozenset({"No blocking observed"})
INTERCEPTED = "This vantage point is intercepted"    # the verdict block's first line (summary.intercepted)
NO_OPEN_ACCESS = frozenset({INTERCEPTED, "No open access:", "Interception:"})
OFFLINE = frozenset({"This vantage point looks offline"})
DNS_LIAR = frozenset({"DNS:", "DNS injection:"})   # the liar answers the canary too
DNS_ONLY = frozenset({"DNS:"})
IP = frozenset({"IP:"})
SNI = frozenset({"SNI:"})
MTPROTO = frozenset({"MTProto:"})
FINGERPRINTING = "protocol fingerprinting"
RACING = "got a second, different answer racing the first"


# --- the scenarios ------------------------------------------------------------------

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "baseline", "no censorship",
        "The censor only forwards: every control, domain, endpoint and range address answers.",
        rules=(),
        expect=build(baseline()), curl=True, findings=NO_BLOCKING),

    Scenario(
        "dns_nxdomain", "DNS interception: forged NXDOMAIN",
        "udp/tcp 53 from the client is DNATed to a dnsmasq in the censor that answers NXDOMAIN "
        "for every service domain.",
        rules=dns_intercept("nxdomain"),
        expect=build(baseline(https=False, mtproto=False), *dns_all("blocked", "dns.nxdomain"), *injected(),
                     drop=LIAR_DROPS),
        findings=DNS_LIAR),

    Scenario(
        "dns_bogon", "DNS interception: forged private address",
        "The liar answers 10.99.99.99 / fd99::99: private, outside the service networks -> dns.bogon.",
        rules=dns_intercept("bogon"),
        expect=build(baseline(https=False, mtproto=False), *dns_all("blocked", "dns.bogon"), *injected(),
                     drop=LIAR_DROPS),
        findings=DNS_LIAR),

    Scenario(
        "dns_docrange", "DNS interception: forged documentation-range address",
        "The liar answers 198.51.100.80 / 2001:db8::80.  Those are not globally routable "
        "(documentation ranges), so netprobe calls them bogons, not dns.outside_networks: "
        "the lab uses no public address, so dns.outside_networks is left to unit tests.",
        rules=dns_intercept("docrange"),
        expect=build(baseline(https=False, mtproto=False), *dns_all("blocked", "dns.bogon"), *injected(),
                     drop=LIAR_DROPS),
        findings=DNS_LIAR),

    Scenario(
        "dns_teredo", "DNS interception: forged Teredo AAAA (GFW signature)",
        "The liar answers A 10.99.99.99 and AAAA in Teredo 2001::/32 -> dns.teredo wins over dns.bogon.",
        rules=dns_intercept("teredo"),
        expect=build(baseline(https=False, mtproto=False), *dns_all("blocked", "dns.teredo"), *injected(),
                     drop=LIAR_DROPS),
        findings=DNS_LIAR),

    Scenario(
        "dns_timeout", "DNS blackhole",
        "udp and tcp port 53 queries for the service's names are dropped in FORWARD (-m string on the "
        "QNAME's wire form): no answer ever comes for them; other names, the control names included, "
        "resolve.",
        rules=DROP_DNS,
        expect=build(baseline(https=False, mtproto=False), *dns_all("blocked", "dns.timeout")),
        findings=DNS_ONLY),

    Scenario(
        "dns_injection_race", "DNS injection racing the real resolver",
        "An injector in the censor (tests/lab/dns_injector.py, an AF_PACKET socket on its client-side veth) "
        "answers every UDP A/AAAA query to the resolver for the lab's zones at once with 10.99.99.99 / "
        "fd99::99, from the resolver's address; the query still reaches the honest resolver, whose answer "
        "is held 150 ms (tests/lab/dns_delay.py, DNATed to in nplab-srv), so the forged answer always wins "
        "and the genuine one arrives second: dns.bogon with late_answers.  The canary is left alone (in "
        "the lab its ICMP port unreachable would beat a Python injector), so the racing answers are the "
        "only evidence of injection.",
        rules=(),
        effects=("resolver_delay", "dns_injector"),
        expect=build(baseline(mtproto=False), *dns_all("blocked", "dns.bogon"),
                     *https(UNPINNED, None, "blocked", "dns.bogon")),
        findings=DNS_LIAR, finding_phrases=(RACING,)),

    Scenario(
        "ip_drop", "IP blocking: DROP",
        "Every packet to the data centers' IPv4 network is dropped (IPv6 is forgotten, as censors do).",
        rules=(rule4("filter", f"-A FORWARD -d {T.DC_NET_V4} -j DROP"),),
        expect=build(baseline(https=False, mtproto=False), *tcp(V4_ENDPOINTS, "blocked", "tcp.timeout")),
        findings=IP),

    Scenario(
        "ip_reset", "IP blocking: TCP reset",
        "SYNs to the data centers' IPv4 network are answered with a forged RST (REJECT tcp-reset).",
        rules=(rule4("filter", f"-A FORWARD -p tcp -d {T.DC_NET_V4} -j REJECT --reject-with tcp-reset"),),
        expect=build(baseline(https=False, mtproto=False), *tcp(V4_ENDPOINTS, "reset", "tcp.refused")),
        findings=IP),

    Scenario(
        "ip_icmp_prohibited", "IP blocking: ICMP administratively prohibited",
        "Packets to the data centers' IPv4 network get ICMP type 3 code 13 (REJECT icmp-admin-prohibited).",
        rules=(rule4("filter", f"-A FORWARD -d {T.DC_NET_V4} -j REJECT --reject-with icmp-admin-prohibited"),),
        expect=build(baseline(https=False, mtproto=False), *tcp(V4_ENDPOINTS, "blocked", "tcp.unreachable")),
        findings=IP),

    Scenario(
        "range_partial", "IP blocking: part of a range",
        f"In {T.RANGE_V4}, {RANGE_DROPPED} is dropped and {RANGE_RESET} is reset; every other "
        "address answers (AnyIP): verdicts are per address.",
        rules=(rule4("filter", f"-A FORWARD -d {RANGE_DROPPED} -j DROP"),
               rule4("filter", f"-A FORWARD -p tcp -d {RANGE_RESET} -j REJECT --reject-with tcp-reset")),
        expect=build(baseline(https=False, mtproto=False),
                     *tcp([e for e in RANGE_V4_ENDPOINTS if _in(e, RANGE_DROPPED)], "blocked", "tcp.timeout"),
                     *tcp([e for e in RANGE_V4_ENDPOINTS if _in(e, RANGE_RESET)], "reset", "tcp.refused")),
        findings=IP),

    Scenario(
        "sni_reset", "SNI filtering: reset",
        f'-m string --string "{WEB}" --algo bm on tcp 443 -> REJECT tcp-reset: the ClientHello naming '
        "the domain is answered with a RST; plain TCP connects and other names work.",
        rules=SNI_RESET,
        expect=build(baseline(mtproto=False), *https([WEB], None, "reset", "tls.reset")), curl=True,
        findings=SNI),

    Scenario(
        "sni_drop", "SNI filtering: drop",
        f'-m string --string "{WEB}" --algo bm on tcp 443 -> DROP: the handshake stalls.',
        rules=tuple(r("filter", f'-A FORWARD -p tcp --dport 443 -m string --string "{WEB}" --algo bm -j DROP')
                    for r in (rule4, rule6)),
        expect=build(baseline(mtproto=False), *https([WEB], None, "blocked", "tls.timeout")), curl=True,
        findings=SNI),

    Scenario(
        "mtproto_fingerprint", "protocol fingerprinting: MTProto intermediate and abridged",
        '-m string --hex-string "|eeeeeeee|" (intermediate\'s tag) and a u32 match on a first payload byte '
        "0xef (abridged's tag) on the data centers' port 443 -> tcp-reset.  TCP connects, the plain "
        "transports' first packet is reset, obfuscated2 (random-looking) passes.",
        rules=FINGERPRINT,
        expect=build(baseline(https=False), *fingerprinted()),
        findings=MTPROTO, finding_phrases=(FINGERPRINTING,)),

    Scenario(
        "tls_mitm", "TLS man-in-the-middle",
        "tcp 443 to the web hosts is DNATed to the censor's nginx, whose certificate is signed by a CA "
        "the client does not trust.",
        rules=(rule4("nat", f"-A PREROUTING -i {T.CENSOR_CLIENT_IF} -p tcp -d {T.WEB_NET_V4} --dport 443 "
                            f"-j DNAT --to-destination {T.CENSOR_SVC_V4}:{T.MITM_PORT}"),
               rule6("nat", f"-A PREROUTING -i {T.CENSOR_CLIENT_IF} -p tcp -d {T.WEB_NET_V6} --dport 443 "
                            f"-j DNAT --to-destination [{T.CENSOR_SVC_V6}]:{T.MITM_PORT}")),
        expect=build(baseline(mtproto=False), *https(T.DOMAINS, None, "blocked", "tls.bad_certificate")),
        curl=True, findings=frozenset({"TLS interception:"})),

    Scenario(
        "http_blockpage", "HTTP blockpage",
        "tcp 80 to the web hosts is DNATed to the censor's nginx, which answers every request with "
        f"302 {T.BLOCKPAGE_LOCATION} (a redirect off the service); HTTPS is untouched.",
        rules=BLOCKPAGE,
        expect=build(baseline(mtproto=False),
                     *[Expect("http", d, "blocked", "http.blockpage") for d in T.DOMAINS]),
        findings=frozenset({"HTTP:"})),

    Scenario(
        "offline", "vantage point offline",
        "The censor drops everything, controls included: netprobe cannot tell censorship from a dead "
        "uplink, so every verdict is inconclusive.",
        rules=(rule4("filter", "-A FORWARD -j DROP"), rule6("filter", "-A FORWARD -j DROP")),
        expect=build(baseline(https=False, mtproto=False),
                     *[Expect("control", c, "inconclusive", ANY, raw="tcp.timeout", stage="tcp") for c in T.CONTROLS],
                     *[Expect("dns", d, "inconclusive", ANY, raw="dns.timeout") for d in T.DOMAINS],
                     *[Expect("tcp", t, "inconclusive", ANY, raw="tcp.timeout") for t in TCP_TARGETS],
                     *[Expect("dns_injection", d, "inconclusive", ANY)
                       for d in T.DOMAINS],
                     drop=(*[control_name(s) for s in CONTROL_STAGES],
                           *[("control", e, None, "interception") for e in NEGATIVE_ENDPOINTS])),
        all_inconclusive=True, findings=OFFLINE),

    Scenario(
        "ipv6_ip_drop", "IPv6 IP blocking: DROP",
        "ip6tables drops the data centers' IPv6 network; IPv4 still works.",
        rules=(rule6("filter", f"-A FORWARD -d {T.DC_NET_V6} -j DROP"),),
        expect=build(baseline(https=False, mtproto=False), *tcp(V6_ENDPOINTS, "blocked", "tcp.timeout")),
        findings=IP),

    Scenario(
        "ipv6_ip_reset", "IPv6 IP blocking: TCP reset",
        "ip6tables answers SYNs to the data centers' IPv6 network with a RST.",
        rules=(rule6("filter", f"-A FORWARD -p tcp -d {T.DC_NET_V6} -j REJECT --reject-with tcp-reset"),),
        expect=build(baseline(https=False, mtproto=False), *tcp(V6_ENDPOINTS, "reset", "tcp.refused")),
        findings=IP),

    Scenario(
        "ipv6_icmp_prohibited", "IPv6 IP blocking: ICMPv6 administratively prohibited",
        "ip6tables answers packets to the data centers' IPv6 network with ICMPv6 type 1 code 1 "
        "(REJECT icmp6-adm-prohibited); Linux reports that as EACCES.",
        rules=(rule6("filter", f"-A FORWARD -d {T.DC_NET_V6} -j REJECT --reject-with icmp6-adm-prohibited"),),
        expect=build(baseline(https=False, mtproto=False),
                     *[Expect("tcp", e, "blocked", "tcp.unreachable") for e in V6_ENDPOINTS]),
        # Over veth the first ICMPv6 error arrives while connect() still holds the socket lock, so
        # Linux only reports it with the SYN retransmission at ~1 s: give the probe 2 s.
        timeout=2.0, findings=IP,
        ),

    Scenario(
        "ipv6_range_drop", "IPv6 IP blocking: a range",
        f"ip6tables drops all of {T.RANGE_V6}; the IPv4 range is untouched.",
        rules=(rule6("filter", f"-A FORWARD -d {T.RANGE_V6} -j DROP"),),
        expect=build(baseline(https=False, mtproto=False),
                     *tcp([e for e in RANGE_ENDPOINTS if _family(e) == 6], "blocked", "tcp.timeout")),
        findings=IP),

    Scenario(
        "ipv6_sni_reset", "IPv6 SNI filtering: reset",
        'ip6tables only: "telegram.lab" in a tcp 443 packet -> RST.  ipv6.telegram.lab (AAAA only) is reset '
        "whatever address the probe picks; dual-stack names are reset over IPv6 and work over IPv4.",
        rules=(rule6("filter", '-A FORWARD -p tcp --dport 443 -m string --string "telegram.lab" --algo bm '
                               "-j REJECT --reject-with tcp-reset"),),
        expect=build(baseline(mtproto=False),
                     *https([V6_ONLY], None, "reset", "tls.reset"),
                     *https(DUAL_TELEGRAM, 6, "reset", "tls.reset", required=False),
                     *https(DUAL_TELEGRAM, 4, "reachable", None, required=False),
                     drop=tuple(("https", d, None, None) for d in DUAL_TELEGRAM)),
        curl=True, findings=SNI),

    # --- several techniques at once -----------------------------------------------------------

    Scenario(
        "combo_dns_sni_mtproto", "DNS NXDOMAIN + SNI reset + MTProto fingerprinting",
        f"The liar answers NXDOMAIN, {WEB}'s ClientHello is reset, and the plain MTProto transports are "
        f"reset.  HTTPS still measures SNI on the poisoned {WEB} through its pinned addresses; the "
        "unpinned domains have no address to try (blocked with the DNS reason).",
        rules=dns_intercept("nxdomain") + SNI_RESET + FINGERPRINT,
        expect=build(baseline(), *dns_all("blocked", "dns.nxdomain"), *injected(),
                     *https([WEB], None, "reset", "tls.reset"),
                     *https(UNPINNED, None, "blocked", "dns.nxdomain"),
                     *fingerprinted(), drop=LIAR_DROPS),
        curl=True, findings=DNS_LIAR | SNI | MTPROTO, finding_phrases=(FINGERPRINTING,)),

    Scenario(
        "combo_ip_dns", "IP drop of DC1 + DNS bogon",
        f"DC1 ({DC1[0]}, {DC1[1]}) is dropped over both families and the liar answers 10.99.99.99 / "
        "fd99::99; DC2 and the pinned web host still work.",
        rules=dns_intercept("bogon") + DROP_DC1,
        expect=build(baseline(), *dns_all("blocked", "dns.bogon"), *injected(),
                     *https(UNPINNED, None, "blocked", "dns.bogon"),
                     *tcp(DC1_ENDPOINTS, "blocked", "tcp.timeout"),
                     *mtproto_all(DC1_ENDPOINTS, "blocked", "tcp.timeout"), drop=LIAR_DROPS),
        findings=DNS_LIAR | IP),

    # --- misbehaving servers (no censor; target files of their own) ----------------------------

    Scenario(
        "silent_servers", "servers that accept and never speak",
        "No censorship: silent.telegram.lab (:443 and :80) and two MTProto endpoints "
        "(mtproto_server.py --mode silent --idle-timeout 60) complete the TCP handshake and then send "
        "nothing.  TCP is reachable; every later stage times out within the probe's deadline.  From "
        "the client this is what a censor dropping after the handshake looks like, so the summary "
        "names those techniques.",
        rules=(), targets="silent", bounded=True, curl=True,
        expect=build(baseline(https=False, mtproto=False, targets=T.SILENT_TARGETS),
                     *https(T.SILENT_TARGETS.domains, None, "blocked", "tls.timeout"),
                     *[Expect("http", d, "blocked", "http.timeout") for d in T.SILENT_TARGETS.domains],
                     *mtproto_all(T.SILENT_TARGETS.endpoints, "blocked", "mtproto.timeout")),
        findings=frozenset({"SNI:", "HTTP:", "MTProto:"})),

    Scenario(
        "drip_servers", "servers that drip one byte every 0.5 s",
        "No censorship: drip.telegram.lab completes the TLS handshake (lab CA) and then sends an endless "
        "HTTP response one byte every 0.5 s (also on :80); two MTProto endpoints drip their resPQ the same "
        "way.  The status line never completes before the deadline: https and http end with "
        "http.timeout, MTProto with mtproto.timeout, all within the probe's deadline.",
        rules=(), targets="drip", bounded=True, curl=True,
        expect=build(baseline(https=False, mtproto=False, targets=T.DRIP_TARGETS),
                     *https(T.DRIP_TARGETS.domains, None, "blocked", "http.timeout"),
                     *[Expect("http", d, "blocked", "http.timeout") for d in T.DRIP_TARGETS.domains],
                     *mtproto_all(T.DRIP_TARGETS.endpoints, "blocked", "mtproto.timeout")),
        findings=frozenset({"HTTP:", "MTProto:"})),

    # --- broken networks: nothing here is censorship of Telegram ---------------------------------

    Scenario(
        "walled_garden", "walled garden: no way out",
        "Every TCP connection from the client, to any address and port, is DNATed to one box in the censor: "
        f"its own TLS on 443 (a rogue-CA certificate for {T.GARDEN_NAME}), its own HTTP on every other port "
        "(404 for everything).  All DNS (udp/tcp 53, any destination) is DNATed to a dnsmasq answering "
        "NXDOMAIN for every name, so the resolver and the canary both answer NXDOMAIN for everything.  "
        "IPv6 is dropped entirely; nothing else gets out.  The TCP controls 'connect', but so do the "
        "negative controls: nothing can be judged.",
        rules=(*dnat_all_dns(4, T.CATCHALL_DNS["garden"][0]),
               dnat(4, "-p tcp --dport 443", T.GARDEN_TLS_PORT),
               dnat(4, "-p tcp", T.GARDEN_HTTP_PORT),
               no_way_out(4),
               rule6("filter", f"-A INPUT -i {T.CENSOR_CLIENT_IF} -j DROP"),
               rule6("filter", "-A FORWARD -j DROP"),
               # also the censor's own ICMPv6 errors ("no route" to 2001:db8::1): IPv6 is silent
               rule6("filter", f"-A OUTPUT -o {T.CENSOR_CLIENT_IF} -j DROP")),
        expect=build({}, *every_probe("inconclusive", ANY, dns="dns.nxdomain", dns_injection="dns.injected"),
                     # IPv6 is dropped: nmap sees those endpoints filtered (the IPv4 ones open)
                     *[Expect("tcp", t, "inconclusive", ANY, raw="tcp.timeout")
                       for t in TCP_TARGETS if _family(t) == 6],
                     *negative([e for e in NEGATIVE_ENDPOINTS if _family(e) == 4],
                               "inconclusive", "interception.accepted")),
        all_inconclusive=True, findings=NO_OPEN_ACCESS),

    Scenario(
        "captive_portal", "captive portal: log in first",
        "All DNS (udp/tcp 53, any destination, both families) is DNATed to a dnsmasq answering every name "
        f"with the portal ({T.CENSOR_SVC_V4} / {T.CENSOR_SVC_V6}); every TCP connection to 443 lands on the "
        f"portal's nginx, whose certificate is valid (lab CA) but for {T.PORTAL_NAME} only; every other TCP "
        f"connection gets 302 {T.PORTAL_LOCATION}.  Nothing else gets out.",
        rules=tuple(r for fam in (4, 6) for r in (
            *dnat_all_dns(fam, T.CATCHALL_DNS["portal"][0]),
            dnat(fam, "-p tcp --dport 443", T.PORTAL_TLS_PORT),
            dnat(fam, "-p tcp", T.PORTAL_HTTP_PORT),
            no_way_out(fam))),
        expect=build({}, *every_probe("inconclusive", ANY, dns="dns.bogon", dns_injection="dns.injected",
                                      https="tls.bad_certificate"),
                     *negative(NEGATIVE_ENDPOINTS, "inconclusive", "interception.accepted")),
        all_inconclusive=True, curl=True, findings=NO_OPEN_ACCESS),

    Scenario(
        "dead_resolver", "the configured resolver is dead",
        f"udp/tcp 53 to the configured resolver ({T.DNS_V4} / {T.DNS_V6}) is dropped; nothing else.  The "
        "control names fail there too, so the resolver's silence says nothing about Telegram; HTTPS and "
        f"HTTP to {WEB}'s pinned addresses still work, the unpinned names have no address to try.",
        rules=tuple(RULE[fam]("filter", f"-A FORWARD -d {dst} -p {proto} --dport 53 -j DROP")
                    for fam, dst in ((4, T.DNS_V4), (6, T.DNS_V6)) for proto in ("udp", "tcp")),
        expect=build(baseline(http=True),
                     *[Expect("dns", d, "inconclusive", ANY, raw="dns.timeout") for d in T.DOMAINS],
                     *https(UNPINNED, None, "inconclusive", ANY),
                     *[Expect("http", d, "inconclusive", ANY) for d in UNPINNED],
                     drop=(control_name("dns"),)),
        curl=True, findings=frozenset({"No blocking observed", "Not judged:"})),

    Scenario(
        "tls_intercept_all", "TLS interception of all traffic",
        "Every tcp 443 connection, to any destination and over both families, is DNATed to the censor's "
        "MITM nginx (a rogue CA forging a certificate for every name), as a corporate TLS-intercepting "
        "proxy does; compare tls_mitm, which intercepts Telegram's web hosts only.  The negative controls "
        "on 443 connect: a TCP success on 443 says nothing; TLS fails for the control name too.  DNS and "
        "plain HTTP are untouched.",
        rules=tuple(dnat(fam, "-p tcp --dport 443", T.MITM_PORT) for fam in (4, 6)),
        expect=build(baseline(http=True),
                     *[Expect("tcp", t, "inconclusive", ANY) for t in TCP_TARGETS],
                     *[Expect("https", d, "inconclusive", ANY, raw="tls.bad_certificate") for d in T.DOMAINS],
                     *mtproto_all(T.ENDPOINTS, "inconclusive", ANY),
                     *negative([e for e in NEGATIVE_ENDPOINTS if e.endswith(":443")],
                               "inconclusive", "interception.accepted"),
                     drop=(*TCP_CONTROLS, control_name("tls"))),
        curl=True, findings=frozenset({INTERCEPTED, "Interception:"})),

    Scenario(
        "controls_blocked", "the control host is blocked, Telegram works",
        f"Every packet to the control host ({T.CONTROL_V4}, {T.CONTROL_V6}) is dropped; Telegram is "
        "untouched.  The vantage point is not offline (Telegram answers): every Telegram probe is "
        "reachable, and the summary reports the failing controls.",
        rules=(rule4("filter", f"-A FORWARD -d {T.CONTROL_V4} -j DROP"),
               rule6("filter", f"-A FORWARD -d {T.CONTROL_V6} -j DROP")),
        expect=build(baseline(http=True),
                     drop=(*TCP_CONTROLS,
                           control_name("tls"), control_name("http"))),
        findings=frozenset({"No blocking observed", "Controls:"})),

    Scenario(
        "aaaa_dropped", "AAAA queries dropped (every name)",
        f"udp/tcp 53 to the resolver carrying QTYPE AAAA (-m string --hex-string \"{AAAA}\", QTYPE and "
        "QCLASS right after the QNAME) is dropped, for every name, as some home routers do; A queries are "
        "answered.  The dual-stack names' genuine A answers make them reachable (the control name's AAAA "
        "is lost too: the loss is the network's); ipv6.telegram.lab has only an AAAA record and cannot "
        "be judged.",
        rules=tuple(RULE[fam]("filter", f"-A FORWARD -d {dst} -p {proto} --dport 53 -m string "
                                        f'--hex-string "{AAAA}" --algo bm -j DROP')
                    for fam, dst in ((4, T.DNS_V4), (6, T.DNS_V6)) for proto in ("udp", "tcp")),
        expect=build(baseline(http=True),
                     *[Expect("dns", d, "reachable", peer="aaaa-timeout") for d in T.DOMAINS if d != V6_ONLY],
                     Expect("dns", V6_ONLY, "inconclusive", ANY, raw="dns.timeout"),
                     Expect("https", V6_ONLY, "inconclusive", ANY),
                     Expect("http", V6_ONLY, "inconclusive", ANY),
                     drop=(control_name("dns"),)),
        findings=frozenset({"No blocking observed", "Not judged:"})),

    Scenario(
        "http_blockpage_200", "HTTP blockpage: a known national blockpage with status 200",
        "tcp 80 to the web hosts is DNATed to the censor's nginx, which answers every request with status "
        f"200 and a known national blockpage ({T.KNOWN_BLOCKPAGE.relative_to(T.REPO_ROOT)}: Iran's, matching "
        "OONI's fingerprint; see its SOURCE note).  A 200 is no evidence of access; the page is.",
        rules=tuple(dnat(fam, f"-p tcp -d {net} --dport 80", T.BLOCKPAGE200_PORT)
                    for fam, net in ((4, T.WEB_NET_V4), (6, T.WEB_NET_V6))),
        expect=build(baseline(),
                     *[Expect("http", d, "blocked", "http.known_blockpage") for d in T.DOMAINS]),
        findings=frozenset({"HTTP:"})),

    # --- interceptors that spare a few addresses (issue 18): not censorship of Telegram -------------------
    # A careful reader signs no blocked, reset or reachable here: every completed connection was completed
    # by the box, every answer is the box's, the same for Telegram as for the controls.

    Scenario(
        "intercept_spares_special", "transparent interceptor sparing special-purpose ranges (a real network)",
        "The network that fooled netprobe (issue 18): every TCP connection from the client, to any address "
        "and port, is REDIRECTed to a box in the censor (canned_proxy.py --mode peek) that answers a TLS "
        f"ClientHello with its own certificate (rogue CA, for {T.PROXY_NAME}), a GET with its own "
        "`HTTP/1.1 404 Not Found` (server: keryx, content-length 0), and any other bytes, MTProto included, "
        "with `HTTP/1.1 400 Bad Request`; connections to the special-purpose ranges (192.0.2.0/24, "
        "198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are refused with a RST, so netprobe's "
        "documentation-address negative controls fail as on an open network.  The configured resolver never "
        "answers; DNS to any other address (the canary included) is answered NXDOMAIN.  The client has no "
        "IPv6 route.",
        # A careful reader concludes: this vantage point is intercepted for every address and port (a closed
        # port on the control host "connects", the control host's own HTTP page is the box's 404, the
        # control name's certificate is the box's) and its resolver is dead; the 400 that every data centre
        # "answers" on every port and transport is the box's answer to bytes it does not understand, the
        # same as a non-Telegram host gets.  Nothing about Telegram can be concluded here: go elsewhere.
        rules=RESOLVER_TIMES_OUT_ELSEWHERE_NXDOMAIN + intercept("peek"),
        effects=("no_ipv6_route",), targets="intercept",
        expect=build({},
                     *[Expect("dns", d, "inconclusive", "dns.resolver_failing", raw="dns.timeout") for d in I.domains],
                     *[Expect("dns_injection", d, "inconclusive", "dns.intercepted_all", raw="dns.injected")
                       for d in I.domains],
                     *intercepted_tcp(I_V4_TCP),
                     *[Expect("tcp", t, "inconclusive", ANY, peer="filtered") for t in I_V6_TCP],  # no IPv6 route
                     *https([WEB], 4, "inconclusive", "tls.untrusted_for_all"),
                     *[Expect(p, d, "inconclusive", ANY) for p in ("https", "http") for d in I.domains],
                     Expect("http", WEB, "inconclusive", "http.intercepted", family=4),
                     *mtproto_all(I_V4_ENDPOINTS, "inconclusive", "mtproto.intercepted"),
                     *mtproto_all(I_V6_ENDPOINTS, "inconclusive", ANY),
                     *spared(NEGATIVE_ENDPOINTS, "inconclusive", ANY)),
        all_inconclusive=True, intercepted=everywhere(*I_PORTS), interception_only=True,
        findings=NO_OPEN_ACCESS),

    Scenario(
        "intercept_canned_all", "interceptor answering everything with the same canned bytes",
        "Every TCP connection from the client, to any address and port, both families, is REDIRECTed to a box "
        "in the censor (canned_proxy.py --mode canned) that sends `HTTP/1.1 400 Bad Request` the moment the "
        "connection is accepted, whatever the client sends, a TLS ClientHello included; the special-purpose "
        "ranges are refused with a RST.  DNS is untouched.",
        # A careful reader concludes: every port of every address, Telegram's and the controls', answers the
        # same fixed bytes before hearing the request: the box speaks, not the data centres nor the web hosts.
        # TCP, TLS, HTTP and MTProto prove nothing either way; the genuine DNS answers stand.
        rules=intercept("canned"), targets="intercept",
        expect=build(baseline(https=False, mtproto=False, targets=I),
                     *intercepted_tcp(I.tcp_targets),
                     *[Expect("https", d, "inconclusive", ANY) for d in I.domains],
                     *[Expect("http", d, "inconclusive", "http.intercepted") for d in I.domains],
                     *mtproto_all(I.endpoints, "inconclusive", "mtproto.intercepted"),
                     *spared(NEGATIVE_ENDPOINTS),
                     drop=(*TCP_CONTROLS, control_name("dns"),
                           control_name("tls"), control_name("http"))),
        intercepted=everywhere(*I_PORTS), interception_only=True,
        # TLS meets the 400 for the control name too: netprobe says "Not judged" there (tls.path_failing)
        findings=frozenset({INTERCEPTED, "Interception:", "Not judged:"})),

    Scenario(
        "intercept_port80", "transparent HTTP proxy on port 80 only",
        "Every TCP connection from the client to port 80, any address, both families, is REDIRECTed to the "
        "peeking box (its own 404 to a GET, its own 400 to anything else; the special-purpose ranges refused "
        "with a RST); every other port is untouched.",
        # A careful reader concludes: port 80 is the box's (the control host's page is its 404, MTProto to a
        # data centre's port 80 gets its 400): nothing on port 80 says anything about Telegram.  Port 443 is
        # the genuine path, and everything measured there stands as in the baseline.
        rules=intercept("peek", match=f"-p tcp --dport {T.DC_HTTP_PORT}"), targets="intercept",
        expect=build(baseline(http=True, targets=I),
                     *intercepted_tcp(I_ENDPOINTS_80),
                     *[Expect("http", d, "inconclusive", "http.intercepted") for d in I.domains],
                     *mtproto_all(I_ENDPOINTS_80, "inconclusive", "mtproto.intercepted"),
                     drop=(control_name("http"),)),
        intercepted=everywhere(T.DC_HTTP_PORT),
        findings=frozenset({INTERCEPTED, "Interception:"})),

    Scenario(
        "far_genuine", "data centres far apart, genuine",
        f"No censor; the target file says where the data centres are (DC1 Miami, DC2 Singapore: the speed of "
        f"light puts the sum of their round trips at >= 113 ms), and the client's packets to DC2 go through a "
        f"delay line in the censor (+{T.FAR_DELAY * 1000:.0f} ms, tests/lab/link_delay.py): physically "
        "plausible, everything reachable.",
        # A careful reader concludes: nothing is blocked; DC2's round trip is long, as a data centre on the
        # other side of the planet's must be.
        rules=MARK_FAR, targets="far",
        expect=build(baseline(targets=FAR)), curl=True, findings=NO_BLOCKING),

    Scenario(
        "fast_far_away", "a box nearby answering for far-away data centres",
        "The same delay line to DC2 as far_genuine, but every TCP connection to the data centres' addresses "
        "(both, both families) is REDIRECTed to a box in the censor that accepts and never speaks "
        "(canned_proxy.py --mode silent): DC1 and DC2 now answer within a millisecond, together far below "
        "the 113 ms the speed of light allows between Miami and Singapore.  Nothing else is touched.",
        # A careful reader concludes: no path reaches Miami and Singapore in a millisecond each: one box near
        # the client answers for both data centres, so their completed handshakes prove nothing and their
        # silence is the box's, not a block (the lead's brief for issue 18; netprobe now reads the IPv4 side
        # as interception of the service alone, a block: see the report).  A bare handshake to a range
        # address, on the path that answers for the service's data centres, proves nothing either; the
        # web hosts (genuine certificates) and DNS stand as in the baseline.
        rules=MARK_FAR + box_for_dcs("silent"),
        targets="far",
        expect=build(baseline(targets=FAR),
                     *[Expect("tcp", e, "inconclusive", ANY, peer="open") for e in FAR.tcp_targets],
                     *mtproto_all(FAR.endpoints, "inconclusive", ANY),
                     drop=TCP_CONTROLS),
        intercepted=tuple((h, T.DC_PORT) for fam in (4, 6) for h in DC_HOSTS[fam]), interception_only=True,
        findings=frozenset({INTERCEPTED, "Interception:"})),

    Scenario(
        "fast_far_relay", "a split-TCP accelerator nearby, relaying to far-away data centres",
        "The same delay line to DC2 as far_genuine; every TCP connection to the data centres' addresses is "
        "REDIRECTed to a box in the censor that accepts at once and relays the bytes to the data centre "
        "it was meant for (canned_proxy.py --mode relay; its own connections to DC2 go through the delay "
        "line), as a satellite link's performance-enhancing proxy or a mobile TCP optimizer does.  The "
        "handshakes are faster than light allows; the MTProto answers are the data centres' own.",
        # A careful reader concludes: the handshakes to Miami and Singapore are a nearby box's (faster than
        # light), so they prove nothing; but the resPQ that comes back carries our nonce and the lab's
        # server nonce and fingerprint: only the data centre could give it, relayed.  Telegram is
        # reachable over MTProto here, and nothing is blocked.  (Range addresses are not asserted.)
        rules=MARK_FAR + MARK_FAR_RELAYED + box_for_dcs("relay"), targets="far",
        expect=build(baseline(targets=FAR),
                     *[Expect("tcp", e, "inconclusive", ANY, peer="open") for e in FAR.endpoints],
                     drop=(*TCP_CONTROLS, *[("tcp", t, None, None) for t in FAR.tcp_targets
                                            if t not in FAR.endpoints])),
        # (not `intercepted`: the box answers the handshakes, but MTProto's bytes are the data centres')
        findings=frozenset({"No blocking observed", "Interception:"})),
)

_BY_NAME = {s.name: s for s in SCENARIOS}
assert len(_BY_NAME) == len(SCENARIOS), "scenario names must be unique"


def by_name(name: str) -> Scenario:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(_BY_NAME)}") from None
