"""DNS probe: A and AAAA for one domain at one resolver, under one deadline.

dnspython builds and parses the messages and does the TCP query on
truncation; the UDP exchange is our own so that it can (1) see an ICMP error
that arrives before we start reading, and (2) keep listening briefly after the
first answer: an on-path injector races the real resolver, and a second,
different answer to the same question is the evidence of it.
"""

from __future__ import annotations

import asyncio
import errno
import time
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from netprobe.addresses import Endpoint, IPNetwork
from netprobe.classify import (
    DnsQueryOutcome,
    a_genuine,
    aaaa_timed_out_alone,
    classify_control_dns,
    classify_dns,
    dns_reason,
    doh_reason,
    errno_failure,
    injection_reason,
)
from netprobe.probes.route import local_route_error
from netprobe.records import Result, printable_bytes
from netprobe.resolvers import DohResolver

QTYPES = ("A", "AAAA")
# Evidence keeps at most this many answer records per query (a hostile resolver
# may send hundreds); the count of what was dropped is recorded.
MAX_ANSWERS_KEPT = 32
# How long to keep listening after the first UDP answer, for racing answers.
LINGER_S = 0.25
# Datagrams kept per query: the first answer plus a few racing ones.
MAX_DATAGRAMS = 8


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[tuple[float, bytes]] = []
        self.error: OSError | None = None
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr) -> None:
        if len(self.datagrams) < MAX_DATAGRAMS:
            self.datagrams.append((time.monotonic(), data[:65535]))
        self.arrived.set()

    def error_received(self, exc: OSError) -> None:
        self.error = self.error or exc
        self.arrived.set()


@dataclass
class Exchange:
    """What came back for one UDP query: answers (with arrival times), datagrams that
    were no readable DNS message, and the socket error that ended it, if any."""

    answers: list[tuple[float, dns.message.Message]]
    unreadable: list[bytes]
    error: OSError | None = None


async def udp_exchange(query: dns.message.Message, resolver: Endpoint, until: float, linger: float) -> Exchange:
    """Wait up to `until` for the first answer to `query`, and `linger` seconds more
    for racing ones."""
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        _Collector, remote_addr=(str(resolver.ip), resolver.port))
    answers: list[tuple[float, dns.message.Message]] = []
    unreadable: list[bytes] = []
    seen = 0
    try:
        transport.sendto(query.to_wire())
        deadline = until
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await collector.arrived.wait()
            except TimeoutError:
                break
            collector.arrived.clear()
            for arrived_at, wire in collector.datagrams[seen:]:
                try:
                    message = dns.message.from_wire(wire, ignore_trailing=True)
                except Exception:  # not a readable DNS message: kept as evidence, not as an answer
                    unreadable.append(wire)
                    continue
                if query.is_response(message):
                    answers.append((arrived_at, message))
            seen = len(collector.datagrams)
            if collector.error is not None and not answers:
                return Exchange(answers, unreadable, collector.error)
            if answers and deadline == until:
                deadline = min(until, answers[0][0] + linger)
    finally:
        transport.close()
    return Exchange(answers, unreadable)


def _answers(response: dns.message.Message, qtype: str) -> dict:
    wanted = dns.rdatatype.from_text(qtype)
    answers, addresses, total = [], [], 0
    for rrset in response.answer:
        # Only IN-class records of the asked type carry an address: an injector
        # may send class CH/ANY records, whose rdata is no IP address at all.
        is_address = rrset.rdtype == wanted and rrset.rdclass == dns.rdataclass.IN
        for rdata in rrset:
            total += 1
            if is_address and len(addresses) < MAX_ANSWERS_KEPT and isinstance(getattr(rdata, "address", None), str):
                addresses.append(rdata.address)
            if len(answers) < MAX_ANSWERS_KEPT:
                answers.append({"name": rrset.name.to_text(), "type": dns.rdatatype.to_text(rrset.rdtype),
                                "ttl": rrset.ttl, "data": rdata.to_text()[:256]})
    return {"rcode": dns.rcode.to_text(response.rcode()), "answers": answers,
            "answers_dropped": total - len(answers), "addresses": addresses}


# What is read of a DNS-over-HTTPS answer at most (a DNS message is ≤ 64 KiB).
MAX_DOH_BYTES = 65535


def _doh_exchange(query: dns.message.Message, url: str, timeout: float, ca_bundle: str | None) -> bytes:
    """POST one RFC 8484 query with requests; runs in a worker thread."""
    # lazy: requests 89 ms; only DNS-over-HTTPS needs it, not a plain-DNS sweep
    import requests

    with requests.post(url, data=query.to_wire(), timeout=timeout, stream=True, allow_redirects=False,
                       verify=ca_bundle or True,
                       headers={"content-type": "application/dns-message",
                                "accept": "application/dns-message"}) as response:
        response.raise_for_status()
        body = response.raw.read(MAX_DOH_BYTES + 1, decode_content=True)
    if len(body) > MAX_DOH_BYTES:
        raise dns.exception.TooBig("DNS-over-HTTPS answer larger than a DNS message")
    return body


async def _doh_query(name: str, qtype: str, resolver: DohResolver, timeout: float,
                     ca_bundle: str | None) -> dict:
    started = time.monotonic()
    entry: dict = {"qtype": qtype, "transport": "https"}
    query = dns.message.make_query(name, qtype, use_edns=0)
    query.id = 0  # RFC 8484 §4.1: cache-friendly
    try:
        async with asyncio.timeout(timeout):
            wire = await asyncio.to_thread(_doh_exchange, query, resolver.url, timeout, ca_bundle)
        response = dns.message.from_wire(wire)
        if not query.is_response(response):
            raise dns.message.NotQueryResponse("the DNS-over-HTTPS answer is not for our question")
        entry.update(_answers(response, qtype))
    except Exception as exc:  # every failure is evidence; classify names it
        entry.update(error=type(exc).__name__, error_reason=doh_reason(exc), detail=str(exc)[:200])
    entry["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
    return entry


async def _query(name: str, qtype: str, resolver: Endpoint, timeout: float, linger: float) -> dict:
    started = time.monotonic()
    until = started + timeout
    entry: dict = {"qtype": qtype}
    query = dns.message.make_query(name, qtype, use_edns=0, payload=1232)
    try:
        exchange = await udp_exchange(query, resolver, until, linger)
        answers = exchange.answers
        if exchange.unreadable and not answers:
            entry["unreadable"] = printable_bytes(exchange.unreadable[0])
            raise dns.exception.FormError("the only answers were not readable DNS messages")
        if exchange.error is not None:
            raise exchange.error
        if not answers:
            raise TimeoutError("no answer over UDP")
        first_at, first = answers[0]
        if first.flags & dns.flags.TC:
            response = await dns.asyncquery.tcp(query, str(resolver.ip), timeout=until - time.monotonic(),
                                                port=resolver.port)
            entry.update(transport="tcp", **_answers(response, qtype))
        else:
            entry.update(transport="udp", **_answers(first, qtype))
        late = [(at, _answers(message, qtype)) for at, message in answers[1:]]
        differing = [dict(after_ms=round((at - first_at) * 1000, 3), **answer) for at, answer in late
                     if (answer["rcode"], sorted(answer["addresses"])) !=
                     (entry["rcode"], sorted(entry["addresses"]))]
        if differing:
            entry["late_answers"] = differing
    except Exception as exc:  # every failure is evidence; classify names it
        entry.update(error=type(exc).__name__, error_reason=dns_reason(exc), detail=str(exc)[:200])
    entry["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
    return entry


def outcome_of(entry: dict) -> DnsQueryOutcome:
    return DnsQueryOutcome(qtype=entry["qtype"], rcode=entry.get("rcode"),
                           addresses=tuple(entry.get("addresses", ())),
                           error_reason=entry.get("error_reason"))


async def probe_dns(name: str, resolver: Endpoint | DohResolver, networks: tuple[IPNetwork, ...],
                    timeout: float, linger: float = LINGER_S, ca_bundle: str | None = None,
                    control_addresses: tuple | None = None) -> Result:
    """A and AAAA of `name`; a control name (control_addresses given, possibly empty) is
    judged by control rules, since it has no networks of its own."""
    started = time.monotonic()
    if isinstance(resolver, DohResolver):
        entries = await asyncio.gather(*(_doh_query(name, qtype, resolver, timeout, ca_bundle)
                                         for qtype in QTYPES))
        return _result(name, resolver, entries, networks, timeout, started, control_addresses)
    no_route = local_route_error(resolver)
    if no_route is not None:
        reason = f"dns.{errno_failure(no_route.errno, immediate=True)}"
        evidence = {"resolver": str(resolver), "route": "none", "errno": errno.errorcode.get(no_route.errno)}
        return Result("dns", name, str(resolver), reason, (time.monotonic() - started) * 1000, evidence)
    linger = min(linger, timeout / 4)
    entries = await asyncio.gather(*(_query(name, qtype, resolver, timeout, linger) for qtype in QTYPES))
    return _result(name, resolver, entries, networks, timeout, started, control_addresses)


def _result(name: str, resolver, entries, networks, timeout: float, started: float,
            control_addresses: tuple | None = None) -> Result:
    outcomes = [outcome_of(e) for e in entries]
    try:
        if control_addresses is not None:
            reason = classify_control_dns(outcomes, control_addresses)
        else:
            reason = classify_dns(outcomes, networks)
    except ValueError:  # an "address" that does not parse: the answer is malformed
        reason = "dns.malformed"
    evidence = {"resolver": str(resolver), "queries": list(entries), "timeout_s": timeout}
    if reason == "dns.timeout" and control_addresses is None and aaaa_timed_out_alone(outcomes):
        # Only AAAA went unanswered: the controls' AAAA at this resolver decide (netprobe/vantage.py).
        evidence.update(aaaa_only=True, a_genuine=a_genuine(outcomes, networks))
    elapsed = (time.monotonic() - started) * 1000
    return Result("dns", name, str(resolver), reason, elapsed, evidence)


def answer_outcome(answer: dns.message.Message) -> DnsQueryOutcome | None:
    """The A outcome of an answer from the canary; None when it cannot be read."""
    try:
        return outcome_of({"qtype": "A", **_answers(answer, "A")})
    except Exception:  # unreadable: certainly not a genuine answer
        return None


async def probe_dns_injection(name: str, canary: Endpoint, timeout: float,
                              networks: tuple[IPNetwork, ...] = (), control_addresses: tuple | None = None) -> Result:
    """Ask `canary`, an address that runs no DNS server: any answer was made on the path.

    Silence and an ICMP port unreachable are both what an honest path gives,
    so both count as "no injection observed" (reachable).
    """
    started = time.monotonic()
    evidence: dict = {"canary": str(canary), "timeout_s": timeout}
    reason = None
    no_route = local_route_error(canary)
    if no_route is not None:
        reason = f"dns.{errno_failure(no_route.errno, immediate=True)}"
        evidence.update(route="none", errno=errno.errorcode.get(no_route.errno))
    else:
        query = dns.message.make_query(name, "A", use_edns=0, payload=1232)
        try:
            exchange = await udp_exchange(query, canary, started + timeout, linger=0.0)
        except OSError as exc:  # no socket to be had (EMFILE, ENOBUFS, …): nothing observed
            exchange = Exchange([], [])
            reason = dns_reason(exc)
            evidence.update(error=type(exc).__name__, errno=errno.errorcode.get(exc.errno or 0))
        answers, error = exchange.answers, exchange.error
        if exchange.unreadable and not answers:
            reason = "dns.injected"  # any datagram from the canary was made on the path
            evidence.update(transport="udp", unreadable=printable_bytes(exchange.unreadable[0]))
        elif answers:
            reason = injection_reason(answer_outcome(answers[0][1]), networks, control_addresses)
            try:
                evidence.update(transport="udp", **_answers(answers[0][1], "A"))
            except Exception as exc:  # an answer we cannot read is still an answer
                evidence.update(transport="udp", unreadable=type(exc).__name__)
        elif reason is None:
            evidence["observed"] = "icmp_error" if error is not None else "silence"
            if error is not None:
                evidence["errno"] = errno.errorcode.get(error.errno)
    elapsed = (time.monotonic() - started) * 1000
    return Result("dns_injection", name, str(canary), reason, elapsed, evidence)
