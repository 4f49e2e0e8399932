"""DNS probe: A and AAAA for one domain at one resolver, under one deadline.

dnspython does the wire format and the UDP→TCP fallback on truncation; this
module only records what came back and hands it to classify.classify_dns.
"""

from __future__ import annotations

import asyncio
import errno
import time

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype

from netprobe.addresses import Endpoint, IPNetwork
from netprobe.classify import DnsQueryOutcome, classify_dns, dns_reason, errno_failure
from netprobe.probes.route import local_route_error
from netprobe.records import Result

QTYPES = ("A", "AAAA")
# Evidence keeps at most this many answer records per query (a hostile resolver
# may send hundreds); the count of what was dropped is recorded.
MAX_ANSWERS_KEPT = 32


async def _query(name: str, qtype: str, resolver: Endpoint, timeout: float) -> dict:
    started = time.monotonic()
    entry: dict = {"qtype": qtype}
    query = dns.message.make_query(name, qtype, use_edns=0, payload=1232)
    try:
        response, used_tcp = await dns.asyncquery.udp_with_fallback(
            query, str(resolver.ip), timeout=timeout, port=resolver.port)
    except Exception as exc:  # every failure is evidence; classify names it
        entry.update(error=type(exc).__name__, error_reason=dns_reason(exc), detail=str(exc)[:200])
    else:
        entry.update(transport="tcp" if used_tcp else "udp", rcode=dns.rcode.to_text(response.rcode()))
        entry.update(_answers(response, qtype))
    entry["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
    return entry


def _answers(response: dns.message.Message, qtype: str) -> dict:
    wanted = dns.rdatatype.from_text(qtype)
    answers, addresses, total = [], [], 0
    for rrset in response.answer:
        for rdata in rrset:
            total += 1
            if rrset.rdtype == wanted:
                addresses.append(rdata.address)
            if len(answers) < MAX_ANSWERS_KEPT:
                answers.append({"name": rrset.name.to_text(), "type": dns.rdatatype.to_text(rrset.rdtype),
                                "ttl": rrset.ttl, "data": rdata.to_text()[:256]})
    return {"answers": answers, "answers_dropped": total - len(answers),
            "addresses": addresses[:MAX_ANSWERS_KEPT]}


def outcome_of(entry: dict) -> DnsQueryOutcome:
    return DnsQueryOutcome(qtype=entry["qtype"], rcode=entry.get("rcode"),
                           addresses=tuple(entry.get("addresses", ())),
                           error_reason=entry.get("error_reason"))


async def probe_dns(name: str, resolver: Endpoint, networks: tuple[IPNetwork, ...], timeout: float) -> Result:
    started = time.monotonic()
    no_route = local_route_error(resolver)
    if no_route is not None:
        reason = f"dns.{errno_failure(no_route.errno, immediate=True)}"
        evidence = {"resolver": str(resolver), "route": "none", "errno": errno.errorcode.get(no_route.errno)}
        return Result("dns", name, str(resolver), reason, (time.monotonic() - started) * 1000, evidence)
    tasks = {qtype: asyncio.ensure_future(_query(name, qtype, resolver, timeout)) for qtype in QTYPES}
    done, pending = await asyncio.wait(tasks.values(), timeout=timeout)
    for task in pending:
        task.cancel()
    entries = []
    for qtype, task in tasks.items():
        if task in done:
            entries.append(task.result())
        else:
            entries.append({"qtype": qtype, "error": "TimeoutError", "error_reason": "dns.timeout",
                            "duration_ms": round(timeout * 1000, 3)})
    if pending:
        await asyncio.wait(pending)
    reason = classify_dns([outcome_of(e) for e in entries], networks)
    evidence = {"resolver": str(resolver), "queries": entries, "timeout_s": timeout}
    elapsed = (time.monotonic() - started) * 1000
    return Result("dns", name, str(resolver), reason, elapsed, evidence)
