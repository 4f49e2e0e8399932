"""Judging OONI's operations by netprobe's one rule, shared by both of OONI's tests: the
record of what a probe observed, then `_judged`, which keeps `blocked`/`reset` only with a
confirmation (a fingerprinted DNS answer, a known blockpage in the redirect chain, OONI's
pipeline's `confirmed: true`) and otherwise makes it `STAGE.<why>` inconclusive with the
observed reason and verdict kept in the evidence.  OONI's flags are anomalies, not confirmations."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable
from urllib.parse import urlsplit

from netprobe.addresses import is_bogon, parse_endpoint
from netprobe.blockpages import match_blockpage, match_dns_answer
from netprobe.classify import (
    BLOCKED, DnsQueryOutcome, REASONS, RESET, VAGUE_BLOCKPAGE_SCOPE, classify_dns, ooni_reason, verdict_for,
)
from netprobe.interop.ooni.read import (
    BODY_KEPT, Connect, Handshake, MAX_LISTED, MAX_TEXT, OoniQuery, OoniRequest, _endpoint_text,
)
from netprobe.records import Result, RunInfo, encode
from netprobe.timeutil import canonical_time

# --- the record of one operation, and the rule that judges it ---------------------------------

@dataclass(frozen=True)
class OoniContext:
    """What every record of one measurement shares: its start, run and base fields."""

    start: datetime
    run: RunInfo
    base: dict[str, Any]

    def at(self, t: float | None) -> str:
        return canonical_time(self.start + timedelta(seconds=t or 0.0))


def _record(context: OoniContext, probe: str, target: str, address: str | None, reason: str | None,
            evidence: dict, t: float | None = None, t0: float | None = None) -> dict:
    """One record of what the probe observed: the verdict is the reason's, until judged."""
    if reason is not None and reason not in REASONS:
        reason = f"{reason.partition('.')[0]}.unknown"
    duration = max(0.0, (t - t0) * 1000) if t is not None and t0 is not None else 0.0
    result = Result(probe, target, address, reason, duration, {"ooni": dict(context.base), **evidence},
                    measured_at=context.at(t))
    return encode(result, context.run)


JUDGED_STAGES = ("dns", "tcp", "tls", "http")


def _judged(record: dict, confirmation: dict | None, why: str) -> dict:
    """A failure stands only with a confirmation (OONI's pipeline confirmed it, or a known
    blockpage fingerprint matched); any other becomes `STAGE.<why>` (`no_control`,
    `unconfirmed`), inconclusive, with what was observed kept in the evidence."""
    if record["verdict"] not in (BLOCKED, RESET):
        return record
    evidence = record["evidence"]
    if confirmation:
        evidence["confirmed_by"] = confirmation
        return record
    from netprobe.interop.atlas import RESOLVER_FAILURES

    stage, _, failure = record["reason"].partition(".")
    reason = f"{stage if stage in JUDGED_STAGES else 'http'}.{why}"
    if reason == "dns.no_control" and failure in RESOLVER_FAILURES:
        reason = "dns.resolver_no_control"  # the resolver's own failure until it answers a control name
    evidence.update(observed_reason=record["reason"], observed_verdict=record["verdict"])
    record.update(reason=reason, verdict=verdict_for(reason))
    return record


LOCAL_SCOPES = ("prod", "inst")  # a product's or an institution's page: an appliance, maybe the probe's own


def _dns_confirmation(record: dict) -> dict | None:
    """A DNS record whose answers hold an address OONI's DNS fingerprints name.  A product's
    or an institution's address in a private range is an appliance on the probe's own network
    (an office's DNS filter or portal), which may answer every name alike: named, unconfirmed."""
    for query in record["evidence"].get("queries", []):
        for address in query.get("addresses", []):
            found = match_dns_answer(address)
            if found and found["scope"] in LOCAL_SCOPES and is_bogon(ipaddress.ip_address(address)):
                record["evidence"]["local_portal"] = {**found, "served_from": address}
            elif found:
                return {"dns_fingerprint": {**found, "address": address}}
    return None


def _page_confirmation(chain: list[OoniRequest], redirects: bool = False) -> tuple[dict | None, dict | None]:
    """(confirmation, portal): a known blockpage anywhere in `chain` (a response's body or
    headers, Location among them, or, for a redirect chain - OONI lists it last hop first -
    the URL a hop was redirected to), or the local portal that looked like one.

    A vague blocking word confirms nothing.  Nor does a product's or an institution's page
    served from a private address: that is an appliance on the probe's own network (an
    office firewall's portal), which may ask every user to log in or accept a policy for
    every site; with no control through it, its page cannot be told from a block."""
    targets = {id(r) for r in chain[:-1]} if redirects else set()
    for request in chain:
        headers = dict(request.headers)
        candidates = [(match_blockpage(request.code, headers, request.body, limit=BODY_KEPT), request.url)]
        if request.url and id(request) in targets:  # where the hop before sent the probe: its Location
            candidates.append((match_blockpage(None, {"location": request.url}, b""), request.url))
        for found, url in candidates:
            if not found or found["scope"] == VAGUE_BLOCKPAGE_SCOPE:
                continue
            where = headers.get("location", url) if found["location"] == "header.location" else url
            evidence = {**found, "url": request.url, "status": request.code}
            if found["scope"] in LOCAL_SCOPES and _private_host(where):
                return None, {**evidence, "served_from": (where or "")[:MAX_TEXT]}
            return {"blockpage": evidence}, None
    return None, None


def _private_host(url: str | None) -> bool:
    """A URL whose host is a private or special-purpose address (the probe's own network)."""
    try:
        host = urlsplit(url or "").hostname or ""
        return is_bogon(ipaddress.ip_address(host))
    except ValueError:
        return False


def _listed(operations: Iterable, fields) -> list[dict]:
    return [fields(op) for op in list(operations)[:MAX_LISTED]]


def _earliest(operations: Iterable) -> Any:
    ordered = sorted(operations, key=lambda op: (op.t is None, op.t or 0.0))
    return ordered[0] if ordered else None


def _request_stage(request: OoniRequest, connects: list[Connect], handshakes: list[Handshake],
                   ips: set[str]) -> str:
    """Where a failed request failed, from the operations OONI recorded beside it: the
    same transaction, else a connect or handshake to the same host failing the same way."""
    if request.tid:
        if any(h.tid == request.tid and h.failure == request.failure for h in handshakes):
            return "tls"
        if any(c.tid == request.tid and c.failure == request.failure for c in connects):
            return "tcp"
    if request.address:
        ips = {str(parse_endpoint(request.address).ip)}
    if any(c.ip in ips and c.port == request.port and c.failure == request.failure for c in connects):
        return "tcp"
    if request.scheme == "https" and any(h.failure == request.failure and (h.ip in ips or h.server_name == request.host)
                                         for h in handshakes):
        return "tls"
    return "http"


def _dns_records(queries: list[OoniQuery], context: OoniContext, networks: tuple, verified: set[str],
                 inconsistent: bool = False) -> list[dict]:
    """One record per (name, resolver): A/AAAA judged as netprobe's dns probe judges them.
    Of repeated lookups of one type, an answer outweighs a failure (OONI retries)."""
    groups: dict[tuple, list[OoniQuery]] = {}
    for query in queries:
        groups.setdefault((query.hostname, query.engine, query.resolver), []).append(query)
    records = []
    for (hostname, engine, resolver), group in groups.items():
        by_type: dict[str, list[OoniQuery]] = {}
        for query in group:
            by_type.setdefault(query.qtype, []).append(query)
        outcomes, decisive = [], None
        for qtype, tries in by_type.items():
            answered = [q for q in tries if q.failure is None or q.failure == "dns_no_answer"]
            for query in answered or tries:
                outcomes.append(_outcome(query))
            chosen = _earliest([q for q in tries if q.failure and q.failure != "dns_no_answer"] if not answered
                               else answered)
            if decisive is None or (chosen is not None and chosen.failure and not decisive.failure):
                decisive = chosen
        if any(q.malformed for q in group):
            reason = "dns.malformed"
        else:
            reason = classify_dns(outcomes, networks)
            answers = {a for o in outcomes for a in o.addresses}
            if reason == "dns.outside_networks" and all(
                    a in verified for a in answers if not any(ipaddress.ip_address(a) in n for n in networks)):
                reason = None  # a verified TLS handshake (or Telegram's own AS) proves it genuine
        evidence: dict[str, Any] = {
            "resolver": resolver, "engine": engine,
            "queries": _listed(group, lambda q: {"qtype": q.qtype, "failure": q.failure,
                                                 "addresses": list(q.addresses[:16]), "t": q.t}),
            "ooni_failures": sorted({q.failure for q in group if q.failure})[:MAX_LISTED],
        }
        if inconsistent and reason is None:
            reason = "dns.outside_networks"  # what OONI's flag says: its test helper resolved it elsewhere
            evidence["note"] = "OONI found the answers inconsistent with its test helper's"
        # A system lookup names no resolver: OONI's resolver_ip (what its whoami saw) stands in.
        records.append(_record(context, "dns", hostname, resolver or context.base.get("resolver_ip"), reason, evidence,
                               decisive.t if decisive else None))
    return records


def _outcome(query: OoniQuery) -> DnsQueryOutcome:
    if query.failure is None or query.failure == "dns_no_answer":
        return DnsQueryOutcome(qtype=query.qtype, rcode="NOERROR", addresses=query.addresses)
    return DnsQueryOutcome(qtype=query.qtype, error_reason=ooni_reason(query.failure, "dns"))


def _connect_records(connects: list[Connect], context: OoniContext, note: dict,
                     dc_numbers: dict[str, int] | None = None) -> list[dict]:
    """One tcp record per endpoint: any connect that succeeded makes it reachable."""
    groups: dict[tuple, list[Connect]] = {}
    for connect in connects:
        groups.setdefault((connect.ip, connect.port), []).append(connect)
    records = []
    for (ip, port), group in groups.items():
        ok = [c for c in group if c.failure is None]
        decisive = _earliest(ok) if ok else _earliest(group)
        reason = None if ok else ooni_reason(decisive.failure, "tcp")
        blocked = [c.blocked for c in group if c.blocked is not None]
        evidence: dict[str, Any] = {"connect": "ok" if ok else "failed", "attempts": len(group),
                                    "ooni_failures": sorted({c.failure for c in group if c.failure})[:MAX_LISTED],
                                    **note}
        if blocked:
            # Kept, not followed: OONI deprecated this per-endpoint flag; it marks an IPv6
            # timeout on a probe without IPv6 while the measurement says "accessible".
            evidence["ooni_endpoint_blocked"] = any(blocked)
        tagged = [int(t[3:]) for c in group for t in c.tags if t.startswith("dc=") and t[3:].isdigit()]
        if tagged:  # netprobe's own exports say which DC each endpoint is
            evidence["dc"] = tagged[0]
        elif dc_numbers and ip in dc_numbers:
            evidence["dc"] = dc_numbers[ip]
        target = _endpoint_text(ip, port)
        records.append(_record(context, "tcp", target, target, reason, evidence, decisive.t, decisive.t0))
    return records


def _request_fields(request: OoniRequest) -> dict:
    return {"url": request.url, "method": request.method, "failure": request.failure, "status": request.code,
            "t": request.t}
