"""OONI measurements <-> netprobe records: pure conversions, no I/O.

Import reads OONI's `telegram` (ts-020) and `web_connectivity` (ts-017)
measurements as netprobe records, one per (probe, target) per measurement and a
summary last, so that `netprobe report` draws OONI's history on the same rows, in
the same vocabulary and with the same diagnosis as netprobe's own runs.

Each record first gets the reason of what the probe observed (its failure
string, mapped by classify.ooni_reason at the stage OONI recorded it).  Then it
is judged by netprobe's one rule, which has no exception for other people's
data: `blocked` and `reset` need a control through the same path, or an answer
that shows the block by itself.  OONI's flags are anomalies, not confirmations.

- Confirmed (kept `blocked`, `evidence.confirmed_by`): a DNS answer OONI's DNS
  fingerprints name, a known blockpage anywhere in the redirect chain, or OONI's
  pipeline's own `confirmed: true` (API answers only).
- telegram: the test has no control at all - everything it contacts is
  Telegram's - so any other failure is `STAGE.no_control`.
- web_connectivity: OONI's test helper measured from elsewhere; it says whether
  the site is up, not what the probe's path does, so any other failure is
  `STAGE.unconfirmed` (`no_control` where the helper failed).
The observed reason and verdict stay in the evidence.

Export writes one netprobe run as one measurement in OONI's base data format
(df-000) with test_keys in the shape of OONI's telegram test, and netprobe's
own records under test_keys.netprobe; import reads those back unchanged.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit

from netprobe import __version__
from netprobe.addresses import format_endpoint, is_bogon, parse_endpoint
from netprobe.blockpages import match_blockpage, match_dns_answer
from netprobe.bounded_input import finite_number, integer, ip_text, parse_json, text_of
from netprobe.classify import (
    BLOCKED, INCONCLUSIVE, REACHABLE, REASONS, RESET, VAGUE_BLOCKPAGE_SCOPE, VERDICTS, DnsQueryOutcome,
    classify_dns, failure_of, ooni_failure, ooni_reason, verdict_for,
)
from netprobe.interop import Skip
from netprobe.probes.kinds import CONNECT, MTPROTO, WEB, bare_success, of_family
from netprobe.records import RECORD_FIELDS, SCHEMA, Result, RunInfo, encode
from netprobe.timeutil import canonical_time, normalise_time

SUPPORTED_TESTS = ("telegram", "web_connectivity")
# OONI's telegram test's data centers (probe-cli internal/experiment/telegram, ts-020).
OONI_DC_IPS = ("149.154.175.50", "149.154.167.51", "149.154.175.100", "149.154.167.91", "149.154.171.5",
               "95.161.76.100")
WEB_HOST = "web.telegram.org"
# Telegram's autonomous systems (RIPE RIS): OONI annotates each DNS answer with its AS.
TELEGRAM_ASNS = frozenset({62041, 62014, 59930, 44907, 211157})
# data_format_version: 0.2.0 since 2016; 0.2.1-0.4.0 were experimental (2019-2020) with the
# same keys; 0.1.0 was YAML.  0.5.0 is reserved for the next, unknown, format.
FORMATS = ((0, 2, 0), (0, 5, 0))

MAX_ENTRIES = 2000  # entries read from each list of one measurement
MAX_LISTED = 20  # operations listed in one record's evidence
MAX_TEXT = 300  # characters kept of any string OONI wrote
MAX_T = 86400.0  # an operation's offset from measurement_start_time, at most
BODY_KEPT = 65536  # bytes of a response body looked at for blockpage fingerprints


# --- finding measurements ----------------------------------------------------------------

@dataclass(frozen=True)
class Meta:
    """What an OONI API answer says beside the measurement: its uid and the pipeline's
    own verdict (`confirmed`: a blockpage fingerprint matched; `anomaly`: a flag only)."""
    uid: str | None = None
    confirmed: bool | None = None
    anomaly: bool | None = None


def measurements_in(value: object) -> Iterator[tuple[dict | None, Meta, str | None]]:
    """(measurement, meta, None) for each measurement in one JSON value, or
    (None, Meta(), kind) for what is not one.  Understands bare measurements, OONI API
    answers (`raw_measurement`, as an object or as JSON text), lists of either, and
    the API's measurement lists (`results`)."""
    if isinstance(value, list):
        for item in value[:MAX_ENTRIES]:
            yield _unwrapped(item)
        return
    if isinstance(value, dict) and isinstance(value.get("results"), list) and "test_keys" not in value:
        for item in value["results"][:MAX_ENTRIES]:
            yield _unwrapped(item)
        return
    yield _unwrapped(value)


def _unwrapped(value: object) -> tuple[dict | None, Meta, str | None]:
    if not isinstance(value, dict):
        return None, Meta(), "not a measurement"
    uid = text_of(value.get("measurement_uid"), 100)
    if "raw_measurement" in value:
        raw = value["raw_measurement"]
        if isinstance(raw, str):
            try:
                raw = parse_json(raw)
            except ValueError:
                return None, Meta(), "broken raw_measurement"
        if not isinstance(raw, dict):
            return None, Meta(), "broken raw_measurement"
        flags = {k: value[k] if isinstance(value.get(k), bool) else None for k in ("confirmed", "anomaly")}
        return raw, Meta(uid or text_of(raw.get("measurement_uid"), 100), **flags), None
    if "test_keys" in value or "test_name" in value:
        return value, Meta(uid), None
    if uid or "measurement_url" in value:
        return None, Meta(), "API metadata without raw_measurement"
    return None, Meta(), "not a measurement"


# --- small readers of hostile values (the generic ones are netprobe.bounded_input's) -------------------------------------------------------

def _offset(value: object) -> float | None:
    """An operation's `t` or `t0`, when it is a plausible one."""
    number = finite_number(value)
    return number if number is not None and 0 <= number <= MAX_T else None


def _list(value: object) -> list:
    return value[:MAX_ENTRIES] if isinstance(value, list) else []


def _tags(entry: dict) -> tuple[str, ...]:
    return tuple(t[:60] for t in _list(entry.get("tags"))[:8] if isinstance(t, str))


def _failure(value: object) -> str | None:
    """A failure string; older probes wrote `false` for success."""
    return value[:MAX_TEXT] if isinstance(value, str) and value else None


def _endpoint_text(ip: str, port: int) -> str:
    return format_endpoint(ipaddress.ip_address(ip), port)


# --- the operations OONI recorded ----------------------------------------------------------

@dataclass(frozen=True)
class Connect:
    ip: str
    port: int
    failure: str | None
    t: float | None
    t0: float | None
    tid: int | None
    blocked: bool | None  # web_connectivity <= 0.4: OONI's own per-endpoint judgment
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Handshake:
    ip: str | None
    server_name: str | None
    failure: str | None
    t: float | None
    tid: int | None
    verified: bool


@dataclass(frozen=True)
class OoniRequest:
    """One HTTP request and its response as OONI's probe recorded them."""

    url: str | None
    scheme: str | None
    host: str | None
    host_is_ip: bool
    port: int | None
    method: str | None
    failure: str | None
    code: int | None
    t: float | None
    t0: float | None
    tid: int | None
    address: str | None
    body: bytes = b""  # the first BODY_KEPT bytes of the response body, as the probe saved it
    headers: tuple[tuple[str, str], ...] = ()  # the response's headers, names in lower case


@dataclass(frozen=True)
class OoniQuery:
    """One DNS query and its answer as OONI's probe recorded them."""

    hostname: str
    qtype: str
    engine: str | None
    resolver: str | None
    failure: str | None
    addresses: tuple[str, ...]
    malformed: bool
    t: float | None
    tags: tuple[str, ...]
    asns: tuple[tuple[str, int], ...] = ()  # (address, AS number) as OONI annotated them


def _connects(tk: dict) -> list[Connect]:
    found = []
    for entry in _list(tk.get("tcp_connect")):
        if not isinstance(entry, dict):
            continue
        ip, port = ip_text(entry.get("ip"), "[]"), integer(entry.get("port"))
        status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
        if ip is None or port is None or not 0 < port < 65536:
            continue
        failure = _failure(status.get("failure"))
        if failure is None and status.get("success") is False:
            failure = "unknown_failure"
        blocked = status.get("blocked")
        found.append(Connect(ip, port, failure, _offset(entry.get("t")), _offset(entry.get("t0")),
                             integer(entry.get("transaction_id")), blocked if isinstance(blocked, bool) else None,
                             _tags(entry)))
    return found


def _handshakes(tk: dict) -> list[Handshake]:
    found = []
    for entry in _list(tk.get("tls_handshakes")):
        if not isinstance(entry, dict):
            continue
        ip = None
        if isinstance(entry.get("address"), str):
            try:
                ip = str(parse_endpoint(entry["address"][:80]).ip)
            except ValueError:
                ip = None
        found.append(Handshake(ip, _host(entry.get("server_name")), _failure(entry.get("failure")),
                               _offset(entry.get("t")), integer(entry.get("transaction_id")),
                               entry.get("no_tls_verify") is not True))
    return found


def _host(value: object) -> str | None:
    """A host name as netprobe spells targets: lower case, no trailing dot, plausible."""
    if not isinstance(value, str) or not 0 < len(value) <= 253:
        return None
    host = value.strip().rstrip(".").lower()
    if not host or not all(c.isascii() and (c.isalnum() or c in "-._") for c in host):
        return None
    return host


def _requests(tk: dict) -> list[OoniRequest]:
    found = []
    for entry in _list(tk.get("requests")):
        if not isinstance(entry, dict):
            continue
        request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
        response = entry.get("response") if isinstance(entry.get("response"), dict) else {}
        url = text_of(request.get("url"), 2000)
        scheme = host = port = None
        host_is_ip = False
        if url:
            try:
                parts = urlsplit(url)
                scheme = parts.scheme.lower() if parts.scheme.lower() in ("http", "https") else None
                raw_host = parts.hostname or ""
                port = parts.port or {"http": 80, "https": 443}.get(scheme or "")
            except ValueError:
                scheme = None
            if scheme:
                host = ip_text(raw_host, "[]")
                host_is_ip = host is not None
                host = host or _host(raw_host)
        code = integer(response.get("code"))
        address = None
        if isinstance(entry.get("address"), str):
            try:
                address = str(parse_endpoint(entry["address"][:80]))
            except ValueError:
                address = None
        found.append(OoniRequest(url[:MAX_TEXT] if url else None, scheme, host, host_is_ip, port,
                             text_of(request.get("method"), 16), _failure(entry.get("failure")),
                             code if code else None, _offset(entry.get("t")), _offset(entry.get("t0")),
                             integer(entry.get("transaction_id")), address, _response_body(response.get("body")),
                             _response_headers(response)))
    return found


def _response_body(value: object) -> bytes:
    """A response body as the probe saved it: text, or {"format": "base64", "data": ...}."""
    import base64
    import binascii

    if isinstance(value, str):
        return value[:BODY_KEPT].encode("utf-8", errors="replace")
    if isinstance(value, dict) and value.get("format") == "base64" and isinstance(value.get("data"), str):
        data = value["data"][:(BODY_KEPT // 3 + 1) * 4]  # whole 4-character groups, so a cut one decodes
        try:
            return base64.b64decode(data + "=" * (-len(data) % 4))[:BODY_KEPT]
        except (binascii.Error, ValueError):
            return b""
    return b""


def _response_headers(response: dict) -> tuple[tuple[str, str], ...]:
    """The headers a fingerprint may name: from `headers_list` when there, else `headers`
    (a value may be a string or, from some probes, base64 bytes)."""
    pairs = []
    listed = [p for p in _list(response.get("headers_list")) if isinstance(p, list) and len(p) == 2]
    source = listed or list(response.get("headers").items() if isinstance(response.get("headers"), dict) else [])
    for name, value in source[:100]:
        if isinstance(value, dict):
            value = _response_body(value).decode("latin-1")
        if isinstance(name, str) and isinstance(value, str):
            pairs.append((name[:100].lower(), value[:MAX_TEXT * 4]))
    return tuple(pairs)


def _queries(tk: dict) -> list[OoniQuery]:
    found = []
    for entry in _list(tk.get("queries")):
        if not isinstance(entry, dict):
            continue
        hostname = _host(entry.get("hostname"))
        if hostname is None:
            continue
        addresses, malformed, asns = [], False, []
        for answer in _list(entry.get("answers")):
            if not isinstance(answer, dict) or answer.get("answer_type") not in ("A", "AAAA"):
                continue
            text = answer.get("ipv4") if answer.get("answer_type") == "A" else answer.get("ipv6")
            ip = ip_text(text, "[]")
            if ip is None:
                malformed = True
            elif len(addresses) < 64:
                addresses.append(ip)
                if integer(answer.get("asn")) is not None:
                    asns.append((ip, answer["asn"]))
        found.append(OoniQuery(hostname, text_of(entry.get("query_type"), 8) or "ANY", text_of(entry.get("engine"), 32),
                           text_of(entry.get("resolver_address"), 200) or None, _failure(entry.get("failure")),
                           tuple(addresses), malformed, _offset(entry.get("t")), _tags(entry), tuple(asns)))
    return found


# --- one measurement -> records ------------------------------------------------------------

@dataclass(frozen=True)
class OoniContext:
    """What every record of one measurement shares: its start, run and base fields."""

    start: datetime
    run: RunInfo
    base: dict[str, Any]

    def at(self, t: float | None) -> str:
        return canonical_time(self.start + timedelta(seconds=t or 0.0))


def records_from_measurement(measurement: dict, meta: Meta | str | None = None) -> list[dict]:
    """The netprobe records of one OONI measurement, its summary last; Skip(kind) when it
    has none.  `meta` is what the API said beside it (a bare uid is accepted too)."""
    meta = Meta(meta) if meta is None or isinstance(meta, str) else meta
    test_name = measurement.get("test_name")
    if not isinstance(test_name, str):
        raise Skip("not a measurement")
    if test_name not in SUPPORTED_TESTS:
        raise Skip(f"unsupported test {test_name[:40]}")
    version = _format_version(measurement.get("data_format_version"))
    if version is None:
        raise Skip("unknown data format version")
    if version < FORMATS[0]:
        raise Skip(f"old data format {'.'.join(map(str, version))}")
    if version >= FORMATS[1]:
        raise Skip(f"newer data format {'.'.join(map(str, version))}")
    try:
        start = datetime.strptime(str(measurement.get("measurement_start_time"))[:40], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise Skip("no measurement_start_time") from None
    test_keys = measurement.get("test_keys")
    if not isinstance(test_keys, dict):
        raise Skip("no test_keys")
    if measurement.get("software_name") == "netprobe" and isinstance(test_keys.get("netprobe"), dict):
        return _restored(test_keys["netprobe"])
    context = _context(measurement, start.replace(tzinfo=timezone.utc), meta)
    if test_name == "telegram":
        records = _telegram(test_keys, context)
        service = "telegram"
    else:
        records, service = _web_connectivity(measurement, test_keys, context, meta)
    return records + [_summary(records, context, service)]


def _format_version(value: object) -> tuple[int, ...] | None:
    if not isinstance(value, str) or len(value) > 20:
        return None
    try:
        parts = tuple(int(p) for p in value.split("."))
    except ValueError:
        return None
    return parts if len(parts) == 3 else None


def _label(measurement: dict) -> str:
    """`ooni:CC:ASN`, with OONI's own 'not shared' values for anything odd."""
    cc = measurement.get("probe_cc")
    asn = measurement.get("probe_asn")
    cc = cc if isinstance(cc, str) and len(cc) == 2 and cc.isascii() and cc.isalpha() else "ZZ"
    if isinstance(asn, int) and not isinstance(asn, bool):
        asn = f"AS{asn}"
    plausible = isinstance(asn, str) and asn.isascii() and asn[:2] == "AS" and asn[2:].isdigit() and len(asn) <= 12
    asn = asn if plausible else "AS0"
    return f"ooni:{cc.upper()}:{asn}"


def run_id_of(measurement: dict) -> str:
    """The same for one measurement however it was downloaded (bulk data carries no
    measurement_uid; the API adds it), so that importing it twice folds into one run
    in `report`: a digest of the measurement's own keys, in a canonical form."""
    own = {k: v for k, v in measurement.items() if k not in ("measurement_uid", "id")}
    text = json.dumps(own, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:32]


def _context(measurement: dict, start: datetime, meta: Meta) -> OoniContext:
    software = " ".join(t for t in (text_of(measurement.get("software_name"), 60),
                                     text_of(measurement.get("software_version"), 40)) if t)
    base = {
        "report_id": text_of(measurement.get("report_id"), 200),
        "measurement_uid": meta.uid,
        "confirmed": meta.confirmed,
        "anomaly": meta.anomaly,
        "input": text_of(measurement.get("input"), 2000),
        "test_name": measurement["test_name"],
        "test_version": text_of(measurement.get("test_version"), 20),
        "software": software or None,
        "measurement_start_time": canonical_time(start),
        "resolver_ip": ip_text(measurement.get("resolver_ip"), "[]"),
    }
    return OoniContext(start, RunInfo(label=_label(measurement), run_id=run_id_of(measurement)),
                   {k: v for k, v in base.items() if v is not None})


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


# --- telegram (ts-020) ---------------------------------------------------------------------

# Why every failure of a telegram measurement is inconclusive.  The test contacts only Telegram:
# the data centers' addresses (TCP connects, HTTP POSTs) and web.telegram.org (its DNS lookup,
# GETs over HTTP and HTTPS).  Nothing in it went through the same path to a name or an address
# that is not Telegram's, so no failure in it can be told from the path's, the probe's or
# Telegram's own.  Another data center that connected is no control either: it is Telegram too,
# and a censor may block one address and spare the next.  Only a known blockpage (a fingerprinted
# DNS answer or page) stands on its own.
TELEGRAM_NO_CONTROL = ("OONI's telegram test measures no control: every address and name it contacts is "
                       "Telegram's, so nothing in the measurement tells this failure from the path's or "
                       "Telegram's own")


@cache
def _telegram_targets() -> tuple[tuple, dict[str, int]]:
    """Telegram's networks and the DC of each data-center address, from netprobe's own
    target set (the networks judge DNS answers; DC numbers are evidence)."""
    from netprobe.targets import load_builtin

    targets = load_builtin()
    return targets.networks, {str(e.endpoint.ip): e.dc for e in targets.endpoints if e.dc is not None}


def _telegram(tk: dict, context: OoniContext) -> list[dict]:
    networks, dc_numbers = _telegram_targets()
    connects, handshakes = _connects(tk), _handshakes(tk)
    requests, queries = _requests(tk), _queries(tk)
    web_hosts = {r.host for r in requests if r.host and not r.host_is_ip} | {WEB_HOST}
    host_ips: dict[str, set[str]] = {}
    for query in queries:
        host_ips.setdefault(query.hostname, set()).update(query.addresses)
    web_ips = set().union(*(host_ips.get(h, set()) for h in web_hosts))
    dc_ips = (set(OONI_DC_IPS) | set(dc_numbers) | {r.host for r in requests if r.host_is_ip}
              | {c.ip for c in connects if any(t.startswith("dc=") for t in c.tags)}) - web_ips
    dc_connects = [c for c in connects if c.ip in dc_ips]
    verified = {h.ip for h in handshakes if h.ip and h.failure is None and h.verified}
    verified |= {ip for q in queries for ip, asn in q.asns if asn in TELEGRAM_ASNS}  # moved, still Telegram's
    dns = _dns_records(queries, context, networks, verified)
    confirmations: dict[int, dict | None] = {}
    for record in dns:
        confirmations[id(record)] = _known_dns_answer(record)
    forged = {r["target"]: (r["reason"], confirmations[id(r)]) for r in dns if r["verdict"] in (BLOCKED, RESET)}
    records = list(dns)

    # Data centers, TCP: any connect that succeeded makes the endpoint reachable.
    flag = tk.get("telegram_tcp_blocking")
    records += _connect_records(dc_connects, context,
                                {"ooni_conclusion": {"telegram_tcp_blocking": flag if isinstance(flag, bool) else None}},
                                dc_numbers)
    sampled = [c for c in connects if c.ip not in dc_ips and any(t.startswith("range=") for t in c.tags)]
    records += _connect_records(sampled, context, {"note": "an address sampled from a Telegram range"})

    # Data centers, HTTP POST: any HTTP answer means the endpoint is reachable.
    posts = [r for r in requests if r.host_is_ip and r.host in dc_ips and r.port]
    flag = tk.get("telegram_http_blocking")
    groups: dict[str, list[OoniRequest]] = {}
    for request in posts:
        groups.setdefault(_endpoint_text(request.host, request.port), []).append(request)
    for endpoint, group in groups.items():
        ok = [r for r in group if r.failure is None]
        decisive = _earliest(ok) if ok else _earliest(group)
        reason = None
        if not ok:
            reason = ooni_reason(decisive.failure, _request_stage(decisive, dc_connects, [], {decisive.host}))
        evidence = {"requests": _listed(group, _request_fields),
                    "ooni_failures": sorted({r.failure for r in group if r.failure})[:MAX_LISTED],
                    "ooni_conclusion": {"telegram_http_blocking": flag if isinstance(flag, bool) else None},
                    "note": "an HTTP POST to a Telegram data center; any HTTP answer means it is reachable"}
        if decisive.host in dc_numbers:
            evidence["dc"] = dc_numbers[decisive.host]
        records.append(_record(context, "http", endpoint, endpoint, reason, evidence, decisive.t, decisive.t0))

    for record, confirmation in _telegram_web(tk, context, requests, connects, handshakes, host_ips, forged):
        confirmations[id(record)] = confirmation
        records.append(record)
    for record in records:
        _judged(record, confirmations.get(id(record)), "no_control")
        _unproven(record, dc_ips)
        if record["reason"] and record["reason"].endswith("no_control"):
            record["evidence"]["why"] = TELEGRAM_NO_CONTROL
    return records


def _unproven(record: dict, dc_ips: set[str]) -> dict:
    """A completed handshake, or any HTTP answer to a POST, from a data-center address is
    not Telegram's own until something shows it: a box that accepts every connection (and
    answers any request) gives the same, and OONI tries no connection that must fail.  So
    it is `*.unproven`, inconclusive, the observation kept; a verified TLS handshake or a
    page from web.telegram.org is judged as before."""
    if record["verdict"] != REACHABLE or not bare_success(record["probe"]):
        return record
    host = (record.get("address") or "").rpartition(":")[0].strip("[]")
    if record["probe"] == "http" and host not in dc_ips:
        return record
    reason = f"{record['probe']}.unproven"
    record["evidence"].update(observed_reason=None, observed_verdict=REACHABLE)
    record.update(reason=reason, verdict=verdict_for(reason))
    return record


def _telegram_web(tk: dict, context: OoniContext, requests: list[OoniRequest], connects: list[Connect],
                  handshakes: list[Handshake], host_ips: dict[str, set[str]],
                  forged: dict[str, tuple[str, dict | None]]) -> list[tuple[dict, dict | None]]:
    """web.telegram.org over HTTP and HTTPS, each with what confirms its failure, if anything.
    Of repeated GETs, an answer outweighs a failure, as a connect does for an endpoint: the
    page came.  A GET sent where a forged DNS answer pointed is decided by that answer."""
    status, flag_failure = text_of(tk.get("telegram_web_status"), 20), _failure(tk.get("telegram_web_failure"))
    said = {"ooni_conclusion": {"telegram_web_status": status, "telegram_web_failure": flag_failure}}
    groups: dict[tuple[str, str], list[OoniRequest]] = {}
    for request in requests:
        if request.host and not request.host_is_ip and request.scheme:
            groups.setdefault((request.scheme, request.host), []).append(request)
    unreadable = sum(1 for r in requests if not r.scheme)
    found = []
    for (scheme, host), group in groups.items():
        failed = [r for r in group if r.failure]
        answered = [r for r in group if not r.failure]
        decisive = _earliest(answered) if answered else _earliest(failed)
        reason = stage = confirmation = None
        evidence = {"url": decisive.url, "requests": _listed(group, _request_fields),
                    "ooni_failures": sorted({r.failure for r in group if r.failure})[:MAX_LISTED], **said}
        if not answered:
            stage = _request_stage(decisive, connects, handshakes, host_ips.get(host, set()))
            reason = ooni_reason(decisive.failure, stage)
            if host in forged and not reason.startswith("dns."):
                (reason, confirmation), stage = forged[host], "dns"
            evidence["stage"] = stage
        elif failed:
            evidence["partial"] = {"answered": len(answered), "failed": len(failed)}
            evidence["note"] = "the same GET got an answer in this measurement and failed in it too: not a block"
        page, portal = _page_confirmation(group)
        if portal:
            evidence["local_portal"] = portal
        if page:
            reason, confirmation = "http.known_blockpage", page
        elif reason is None and decisive.code == 451:
            reason = "http.blockpage"
        if reason is None and scheme == "http" and not _redirect_to_service(decisive):
            # Plain HTTP has no certificate: any page could be a portal's. Only Telegram's own
            # redirect to its HTTPS site shows the answer was Telegram's.
            reason = "http.unproven"
            evidence.update(observed_reason=None, observed_verdict=REACHABLE)
        record = _record(context, scheme, host, decisive.address or _address_of(decisive, connects, host_ips),
                         reason, evidence, decisive.t, decisive.t0)
        found.append((record, confirmation))
    if ("https", WEB_HOST) not in groups and status in ("ok", "blocked"):
        # Nothing readable about the request itself (early engines wrote no URL): OONI's
        # word is all there is, and a word confirms nothing.
        # "ok" without a readable request proves nothing either: nothing shows whose answer it was.
        reason = "http.unproven" if status == "ok" else (ooni_reason(flag_failure, "http") if flag_failure
                                                         else "http.blockpage")
        evidence = {**said, "note": "from OONI's telegram_web_status: no readable request to "
                                    f"https://{WEB_HOST}/ in the measurement", "unreadable_requests": unreadable}
        found.append((_record(context, "https", WEB_HOST, None, reason, evidence), None))
    return found


def _redirect_to_service(request: OoniRequest) -> bool:
    """A redirect to an https:// URL on a Telegram web host: what web.telegram.org answers plain
    HTTP with (OONI's 2022 US and RU measurements: 301 to https://web.telegram.org/)."""
    location = dict(request.headers).get("location") or ""
    if request.code not in (301, 302, 307, 308) or not location.startswith("https://"):
        return False
    host = location[len("https://"):].split("/", 1)[0].split(":", 1)[0].lower()
    return host == "telegram.org" or host.endswith(".telegram.org")


def _known_dns_answer(record: dict) -> dict | None:
    """What confirms a DNS record: an answer OONI's DNS fingerprints name.  Such an answer
    is a block even where it looked genuine (a public blockpage address), and it says more
    than "outside the networks"; a private one keeps its own reason (dns.bogon)."""
    confirmation = _dns_confirmation(record)
    if confirmation and (record["verdict"] not in (BLOCKED, RESET) or record["reason"] == "dns.outside_networks"):
        if record["reason"]:
            record["evidence"].update(observed_reason=record["reason"], observed_verdict=record["verdict"])
        record.update(reason="dns.known_blockpage", verdict=verdict_for("dns.known_blockpage"))
    return confirmation


def _address_of(request: OoniRequest, connects: list[Connect], host_ips: dict[str, set[str]]) -> str | None:
    """The endpoint a request went to, when OONI's connects tell it: the one that failed
    as the request did, else the only one that connected."""
    ips = {request.host} if request.host_is_ip else host_ips.get(request.host or "", set())
    near = [c for c in connects if c.ip in ips and c.port == request.port]
    same = [c for c in near if c.failure == request.failure and c.failure is not None]
    connected = {(c.ip, c.port) for c in near if c.failure is None}
    if same:
        return _endpoint_text(same[0].ip, same[0].port)
    if len(connected) == 1:
        return _endpoint_text(*connected.pop())
    return None


# --- web_connectivity (ts-017) -------------------------------------------------------------

CLASSIC_ENGINES = (None, "system", "getaddrinfo", "golang_net_resolver", "go", "unknown")
BLOCKING = ("dns", "tcp_ip", "http-failure", "http-diff")
# OONI's own comparison of the probe's answers with its test helper's: anomalies, kept as evidence.
FLAGS = ("blocking", "accessible", "dns_consistency", "dns_experiment_failure", "http_experiment_failure",
         "control_failure", "status_code_match", "body_length_match", "headers_match", "title_match",
         "body_proportion")


def _flags(tk: dict) -> dict:
    flags = {}
    for key in FLAGS:
        value = tk.get(key)
        if isinstance(value, bool) or value is None:
            flags[key] = value
        elif isinstance(value, str):
            flags[key] = value[:MAX_TEXT]
        elif finite_number(value) is not None:
            flags[key] = round(float(value), 4)
    return flags


def _helper(tk: dict) -> dict | None:
    """What OONI's test helper saw, fetching the page from elsewhere: whether the site is up,
    never what the probe's path does to it.  None when it measured nothing."""
    control = tk.get("control") if isinstance(tk.get("control"), dict) else None
    if not control or _failure(tk.get("control_failure")):
        return None
    dns = control.get("dns") if isinstance(control.get("dns"), dict) else {}
    http = control.get("http_request") if isinstance(control.get("http_request"), dict) else {}
    status = integer(http.get("status_code"))
    failure = _failure(http.get("failure"))
    seen = {"dns_failure": _failure(dns.get("failure")),
            "dns_addresses": [a[:64] for a in _list(dns.get("addrs"))[:8] if isinstance(a, str)],
            "http_status": status if status and status > 0 else None, "http_failure": failure,
            "title": text_of(http.get("title"), 120)}
    if not http and not dns:
        return None
    seen["site_up"] = bool(seen["http_status"]) and failure is None
    return seen


def _web_connectivity(measurement: dict, tk: dict, context: OoniContext, meta: Meta) -> tuple[list[dict], str]:
    """The records of one web_connectivity measurement, and the name it measured.  A failure
    is blocked only when OONI's pipeline confirmed it or a known blockpage shows (a DNS answer,
    a page or any redirect of the chain): OONI's flags compare the probe with a test helper
    measuring from elsewhere, which says whether the site is up, not what this path does."""
    url = text_of(measurement.get("input"), 2000)
    try:
        parts = urlsplit(url or "")
        scheme, host = parts.scheme.lower(), _host(parts.hostname or "") or ip_text(parts.hostname or "", "[]")
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        raise Skip("no input URL") from None
    if scheme not in ("http", "https") or not host:
        raise Skip("no input URL")
    blocking = tk.get("blocking")
    blocking = blocking if blocking in BLOCKING or blocking is False else None
    accessible = tk.get("accessible") if isinstance(tk.get("accessible"), bool) else None
    helper = _helper(tk)
    said: dict[str, Any] = {"ooni_conclusion": {"blocking": blocking, "accessible": accessible},
                            "ooni_flags": _flags(tk), "ooni_helper": helper}
    why = "unconfirmed" if helper else "no_control"
    pipeline = {"ooni_confirmed": True} if meta.confirmed is True else None

    connects, handshakes = _connects(tk), _handshakes(tk)
    requests, queries = _requests(tk), _queries(tk)
    classic = [q for q in queries if q.hostname == host and (q.engine in CLASSIC_ENGINES or "classic" in q.tags)]
    verified = {h.ip for h in handshakes if h.ip and h.failure is None and h.verified}
    records = _dns_records(classic, context, (), verified, inconsistent=blocking == "dns")
    dns_failure = _failure(tk.get("dns_experiment_failure"))
    if not classic and dns_failure:
        evidence = {"ooni_failures": [dns_failure]}
        records.append(_record(context, "dns", host, context.base.get("resolver_ip"), ooni_reason(dns_failure, "dns"),
                               evidence))
    for record in records:
        record["evidence"].update(said, dns_consistency=said["ooni_flags"].get("dns_consistency"))
    confirmations: dict[int, dict | None] = {}
    dns_confirmed = None
    for record in records:
        confirmations[id(record)] = _known_dns_answer(record) or (pipeline if blocking == "dns" else None)
        dns_confirmed = dns_confirmed or confirmations[id(record)]
    dns_reason = records[0]["reason"] if records else None

    tcp = _connect_records(connects, context, said)
    for record in tcp:
        confirmations[id(record)] = pipeline if blocking == "tcp_ip" else None
    records += tcp

    failure = _failure(tk.get("http_experiment_failure")) or (requests[0].failure if requests else None)
    if requests or failure:
        records.append(_page_record(url, scheme, host, port, blocking, failure, requests, connects, handshakes,
                                    {a for q in classic for a in q.addresses}, dns_reason, said, context))
        page, portal = _page_confirmation(requests, redirects=True)
        web = records[-1]
        if portal:
            web["evidence"]["local_portal"] = portal
            web["evidence"]["note"] = ("a known product's page, served from a private address: an appliance on the "
                                       "probe's own network, not shown to block this site rather than every one")
        if page:
            if web["reason"] != "http.known_blockpage":
                web["evidence"].update(observed_reason=web["reason"], observed_verdict=web["verdict"])
            web.update(reason="http.known_blockpage", verdict=verdict_for("http.known_blockpage"))
        confirmations[id(web)] = page or (dns_confirmed if (web["reason"] or "").startswith("dns.") else None) or (
            pipeline if blocking in BLOCKING else None)
    for record in records:
        _judged(record, confirmations.get(id(record)), why)
    return records, host


def _page_record(url: str, scheme: str, host: str, port: int | None, blocking: object, failure: str | None,
                 requests: list[OoniRequest], connects: list[Connect], handshakes: list[Handshake], ips: set[str],
                 dns_reason: str | None, said: dict, context: OoniContext) -> dict:
    """The fetch of the input URL, as observed (OONI lists the redirect chain last hop first)."""
    final = requests[0] if requests else None
    evidence: dict[str, Any] = {"url": url[:MAX_TEXT], "requests": _listed(requests, _request_fields),
                                "ooni_failures": [failure] if failure else [], **said}
    reason = None
    probe_request = final or OoniRequest(url, scheme, host, False, port, "GET", failure, None, None, None, None, None)
    if failure:
        stage = "tcp" if blocking == "tcp_ip" else _request_stage(probe_request, connects, handshakes, ips)
        reason = ooni_reason(failure, stage)
        if blocking == "dns" and dns_reason:
            reason = dns_reason  # the page was fetched from where the DNS answer pointed
            evidence["note"] = "the request went where the DNS answer pointed; DNS decided it"
        evidence["stage"] = stage
    elif blocking == "http-diff":
        reason = "http.blockpage"  # what OONI's flag says: the page differs from its test helper's
        evidence["note"] = "OONI found the page different from its test helper's"
    elif final is not None and final.code == 451:
        reason = "http.blockpage"
    address = probe_request.address or _address_of(probe_request, connects, {host: ips})
    return _record(context, scheme, host, address, reason, evidence, final.t if final else None,
                   final.t0 if final else None)


# --- the summary of one imported measurement --------------------------------------------------

def _summary(records: list[dict], context: OoniContext, service: str) -> dict:
    """The measurement's summary record, as a local run ends with one: netprobe's diagnosis
    of the judged records, led by what the import could and could not judge."""
    from dataclasses import replace

    from netprobe.diagnosis import RunContext, summarize
    from netprobe.tallies import Tallies

    tallies = Tallies()
    for record in records:
        tallies.add(Result(record["probe"], record["target"], record["address"], record["reason"],
                           record["duration_ms"], record["evidence"], verdict=record["verdict"],
                           measured_at=record["measured_at"]))
    summary = summarize(service, tallies, RunContext())  # judged per record already: no board, vantage unknown
    findings = _import_findings(records, context) + summary.evidence["findings"]
    unjudged = [r for r in records if r["verdict"] == INCONCLUSIVE
                and r["evidence"].get("observed_verdict", BLOCKED) in (BLOCKED, RESET)]  # failures, not unproven successes
    if summary.reason is None and unjudged:
        # "No blocking observed" would say the failures were looked at and cleared; they could not be.
        summary = replace(summary, reason="summary.unjudged", verdict=verdict_for("summary.unjudged"))
        findings = [f for f in findings if not f.startswith("No blocking observed")]
        findings.append(f"No blocking signed: {_failures(len(unjudged))} inconclusive (above); every other probe "
                        "got through.")
    evidence = {**summary.evidence, "findings": findings, "ooni": dict(context.base)}
    at = max((r["measured_at"] for r in records), default=context.at(None))
    return encode(replace(summary, evidence=evidence, measured_at=at), context.run)


def _import_findings(records: list[dict], context: OoniContext) -> list[str]:
    """What a reader of an imported summary must know first: whose measurement, what judged it."""
    test = context.base.get("test_name")
    what = f"OONI {test} measurement {context.base.get('report_id') or '(no report id)'}"
    if context.base.get("input"):
        what += f" of {context.base['input'][:120]}"
    lines = [f"{what}, {context.run.label}, {context.base.get('measurement_start_time')}."]
    confirmed = [r for r in records if "confirmed_by" in r["evidence"]]
    for record in confirmed[:MAX_SHOWN]:
        by = record["evidence"]["confirmed_by"]
        if "blockpage" in by:
            how = f"a known blockpage ({by['blockpage']['name']}) at {by['blockpage'].get('url')}"
        elif "dns_fingerprint" in by:
            how = f"a known blockpage address ({by['dns_fingerprint']['name']}: {by['dns_fingerprint']['address']})"
        else:
            how = "OONI's pipeline (confirmed)"
        lines.append(f"Confirmed: {record['probe']} {record['target']} {record['reason']}, by {how}.")
    uncontrolled = [r for r in records if (r["reason"] or "").endswith("no_control")]
    unconfirmed = [r for r in records if (r["reason"] or "").endswith(".unconfirmed")]
    if test == "telegram":
        lines.append("No control: OONI's telegram test contacts only Telegram (its data centers and "
                     "web.telegram.org), so no failure in it can be told from the path's or Telegram's own"
                     + (f"; {_failures(len(uncontrolled))} inconclusive ({_counted(uncontrolled)})."
                        if uncontrolled else "."))
    elif unconfirmed or uncontrolled:
        flags = next((r["evidence"].get("ooni_flags") for r in records if "ooni_flags" in r["evidence"]), {})
        helper = next((r["evidence"].get("ooni_helper") for r in records if "ooni_helper" in r["evidence"]), None)
        said = ", ".join(f"{k}={json.dumps(flags.get(k))}" for k in ("blocking", "accessible", "dns_consistency")
                         if k in flags)
        site = ("its test helper, measuring from elsewhere, reached the site (the site is up; that says nothing of "
                "this path)" if helper and helper.get("site_up")
                else "its test helper, measuring from elsewhere, did not reach the site either" if helper
                else "its test helper measured nothing")
        failed = unconfirmed + uncontrolled
        lines.append(f"Not confirmed: {_failures(len(failed))} inconclusive ({_counted(failed)}): OONI's flags "
                     f"({said}) mark anomalies, not blocks; {site}; no known blockpage and no confirmation by "
                     "OONI's pipeline backs them.")
    unread = [r for r in records if r["verdict"] == INCONCLUSIVE and r["reason"]
              and failure_of(r["reason"]) in ("unknown", "no_route") and r["evidence"].get("ooni_failures")
              and "local_portal" not in r["evidence"]]
    for record in unread[:MAX_SHOWN]:
        lines.append(f"Not read: {record['probe']} {record['target']} failed with "
                     f"{json.dumps(record['evidence']['ooni_failures'][0][:120])} ({record['reason']}: the probe's "
                     "own failure or one netprobe cannot read, no evidence of blocking).")
    for record in records:
        portal = record["evidence"].get("local_portal")
        if portal:
            lines.append(f"Local portal: {record['probe']} {record['target']} led to {portal['served_from'][:120]}, "
                         f"{portal['name']}'s on a private address: an appliance on the probe's own network, "
                         "which may stand between every user and every site; not a confirmed block.")
    return lines


MAX_SHOWN = 3


def _failures(n: int) -> str:
    return "1 failure is" if n == 1 else f"{n} failures are"


def _counted(records: list[dict]) -> str:
    from collections import Counter

    observed = Counter(r["evidence"].get("observed_reason") or r["reason"] for r in records)
    return ", ".join(f"{n} {reason}" for reason, n in observed.most_common())


# --- netprobe's own measurements, read back --------------------------------------------------

def _restored(section: dict) -> list[dict]:
    """The records a netprobe export carried, as they were (label and run id included),
    after the checks `report` applies to any archive line."""
    records = []
    for record in _list(section.get("records")):
        if not isinstance(record, dict) or not set(RECORD_FIELDS) <= set(record):
            continue
        at = normalise_time(record.get("measured_at"))
        verdict, reason = record.get("verdict"), record.get("reason")
        duration = finite_number(record.get("duration_ms"))
        if (at is None or verdict not in VERDICTS or not (reason is None or reason in REASONS)
                or duration is None or not isinstance(record.get("evidence"), dict)
                or not _shallow(record["evidence"])
                or not all(isinstance(record.get(k), str) for k in ("run_id", "probe", "target"))
                or not all(record.get(k) is None or isinstance(record.get(k), str) for k in ("address", "label"))):
            continue
        kept = {name: record[name] for name in RECORD_FIELDS}
        kept.update(schema=SCHEMA, measured_at=at, duration_ms=duration)
        kept["netprobe_version"] = text_of(record.get("netprobe_version"), 40) or __version__
        records.append(kept)
    if not records:
        raise Skip("netprobe measurement without readable records")
    return records


def _shallow(value: object, depth: int = 0) -> bool:
    """At most 16 levels deep: evidence is written back out, and nothing netprobe
    records nests more than a few."""
    if depth > 16:
        return False
    if isinstance(value, dict):
        return all(_shallow(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(_shallow(v, depth + 1) for v in value)
    return True


# --- a netprobe run -> one OONI measurement ----------------------------------------------------

TCP_KINDS = of_family(CONNECT)
WEB_KINDS = of_family(WEB)
MTPROTO_KINDS = of_family(MTPROTO)
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}
ENGINES = {"udp": "udp", "tcp": "tcp", "https": "doh"}
USER_AGENT = f"netprobe/{__version__}"


def _when(record: dict) -> datetime:
    """measured_at as an aware UTC time (an edited archive may spell it otherwise)."""
    return datetime.fromisoformat(normalise_time(record["measured_at"]) or record["measured_at"])


def measurement_from_run(records: list[dict], probe_cc: str | None = None,
                         probe_asn: str | None = None) -> dict:
    """One netprobe run (its records, any order) as one OONI measurement.

    probe_cc and probe_asn are what the user says, never looked up; without them
    OONI's own 'not shared' values ZZ and AS0 are written.
    """
    records = sorted(records, key=lambda r: r["measured_at"])
    ends = [_when(r) for r in records]
    starts = [e - timedelta(milliseconds=max(0.0, finite_number(r.get("duration_ms")) or 0.0))
              for e, r in zip(ends, records)]
    start = min(starts).replace(microsecond=0)
    tk = _Builder(start)
    for record in records:
        tk.add(record)
    run_id = records[0]["run_id"]
    label = records[0].get("label")
    summary = next((r for r in records if r["probe"] == "summary"), None)
    resolver = next((r["address"] for r in records if r["probe"] == "dns" and r.get("address")), None)
    resolver_ip = None
    if resolver:
        try:
            resolver_ip = str(parse_endpoint(resolver).ip)
        except ValueError:
            resolver_ip = None
    test_keys = {
        "agent": "agent",  # netprobe follows no redirects
        "failed_operation": None,
        "failure": None,
        "network_events": [],
        "queries": tk.queries,
        "requests": tk.requests,
        "socksproxy": None,
        "tcp_connect": tk.tcp_connect,
        "tls_handshakes": tk.tls_handshakes,
        **_telegram_flags(records),
        "netprobe": {
            "schema": SCHEMA, "run_id": run_id, "label": label,
            "vantage": (summary or {}).get("evidence", {}).get("vantage"),
            "findings": (summary or {}).get("evidence", {}).get("findings", []),
            "records": records,
        },
    }
    measurement = {
        "annotations": {"engine_name": "netprobe", "engine_version": records[0].get("netprobe_version") or __version__,
                        "netprobe_run_id": run_id},
        "data_format_version": "0.2.0",
        "extensions": {"dnst": 0, "httpt": 0, "tcpconnect": 0, "tlshandshake": 0},
        "input": None,
        "measurement_start_time": start.strftime("%Y-%m-%d %H:%M:%S"),
        "probe_asn": probe_asn or "AS0",
        "probe_cc": probe_cc or "ZZ",
        "probe_ip": "127.0.0.1",
        "probe_network_name": "",
        "report_id": "",
        "resolver_asn": "AS0",
        "resolver_ip": resolver_ip or "",
        "resolver_network_name": "",
        "software_name": "netprobe",
        "software_version": records[0].get("netprobe_version") or __version__,
        "test_helpers": {},
        "test_keys": test_keys,
        "test_name": "telegram",
        "test_runtime": round(max((max(ends) - start).total_seconds(), 0.0), 6),
        "test_start_time": start.strftime("%Y-%m-%d %H:%M:%S"),
        "test_version": __version__,
    }
    return measurement


def _flag(verdicts: list[str]) -> bool | None:
    """OONI's blocking flag from netprobe verdicts: False when any got through, True when
    every one failed in a way censorship produces, None when nothing can be said."""
    if not verdicts:
        return None
    if REACHABLE in verdicts:
        return False
    if all(v in (BLOCKED, RESET) for v in verdicts):
        return True
    return None


def _telegram_flags(records: list[dict]) -> dict:
    dc_tcp = [r for r in records if r["probe"] in TCP_KINDS and "dc" in (r.get("evidence") or {})]
    if not dc_tcp:
        dc_tcp = [r for r in records if r["probe"] in TCP_KINDS and "range" not in (r.get("evidence") or {})]
    mtproto = [r for r in records if r["probe"] in MTPROTO_KINDS]
    web = next((r for r in records if r["probe"] == "https" and r["target"] == WEB_HOST), None)
    status = failure = None
    if web is not None:
        if web["verdict"] == REACHABLE:
            status = "ok"
        elif web["verdict"] in (BLOCKED, RESET):
            status, failure = "blocked", _failure_of_record(web)
    return {
        "telegram_http_blocking": _flag([r["verdict"] for r in mtproto]),
        "telegram_tcp_blocking": _flag([r["verdict"] for r in dc_tcp]),
        "telegram_web_failure": failure,
        "telegram_web_status": status,
    }


def _failure_of_record(record: dict) -> str | None:
    """The OONI failure string for a record's reason, sharpened by its evidence."""
    reason = record.get("reason")
    if reason is None:
        return None
    evidence = _dict(record.get("evidence"))
    if reason == "tls.bad_certificate":
        message = str(_dict(evidence.get("tls")).get("verify_message") or "").lower()
        if "hostname" in message or "ip address mismatch" in message:
            return "ssl_invalid_hostname"
        if "issuer" in message or "self-signed" in message or "self signed" in message:
            return "ssl_unknown_authority"
        return "ssl_invalid_certificate"
    if reason == "http.blockpage" and "redirect" in str(evidence.get("blockpage") or ""):
        return "http_unexpected_redirect_url"
    return ooni_failure(reason)


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


class _Builder:
    """The df-001/002/005/006 lists of one run, with times relative to its start.  The
    records come from an archive anyone could have edited: every value is checked."""

    def __init__(self, start: datetime):
        self.start = start
        self.tcp_connect: list[dict] = []
        self.requests: list[dict] = []
        self.queries: list[dict] = []
        self.tls_handshakes: list[dict] = []
        self.transaction = 0

    def times(self, record: dict) -> tuple[float, float]:
        t = max(0.0, (_when(record) - self.start).total_seconds())
        t0 = max(0.0, t - (finite_number(record.get("duration_ms")) or 0.0) / 1000)
        return round(t0, 6), round(t, 6)

    @staticmethod
    def after(t0: float, ms: object) -> float:
        return round(t0 + max(0.0, min(finite_number(ms) or 0.0, MAX_T * 1000)) / 1000, 6)

    def add(self, record: dict) -> None:
        if record["probe"] in TCP_KINDS:
            self.transaction += 1
            self.connect(record, record["target"])
        elif record["probe"] == "dns":
            self.transaction += 1
            self.dns(record)
        elif record["probe"] in WEB_KINDS:
            self.transaction += 1
            self.web(record)

    def connect(self, record: dict, endpoint: str | None) -> None:
        evidence = _dict(record.get("evidence"))
        try:
            parsed = parse_endpoint(endpoint or "")
        except ValueError:
            return
        reason = record.get("reason")
        connected = evidence.get("connect") == "ok" or (reason is None and "connect" not in evidence)
        t0, t = self.times(record)
        if "connect_ms" in evidence:
            t = self.after(t0, evidence.get("connect_ms"))
        failure = None
        if not connected:
            if reason is None:
                failure = "unknown_failure: no connection"
            elif reason.split(".")[0] in ("tcp", "control"):
                failure = _failure_of_record(record)
            elif evidence.get("deadline_stage") == "connect":
                failure = "generic_timeout_error"
            else:
                failure = ooni_failure(f"tcp.{failure_of(reason)}")
        entry: dict[str, Any] = {"ip": str(parsed.ip), "port": parsed.port,
                                 "status": {"failure": failure, "success": failure is None},
                                 "t0": t0, "t": max(t, t0), "transaction_id": self.transaction}
        tags = [f"dc={evidence['dc']}"] if integer(evidence.get("dc")) is not None else []
        tags += [f"range={evidence['range']}"] if isinstance(evidence.get("range"), str) else []
        if tags:
            entry["tags"] = [tag[:60] for tag in tags]
        self.tcp_connect.append(entry)

    def dns(self, record: dict) -> None:
        evidence = _dict(record.get("evidence"))
        t0, t = self.times(record)
        queries = [q for q in _list(evidence.get("queries")) if isinstance(q, dict)]
        if not queries:
            self.queries.append(self.query(record, "A", None, [], _failure_of_record(record), t0, t, None))
            return
        for query in queries:
            qtype = query.get("qtype") if query.get("qtype") in ("A", "AAAA") else "ANY"
            addresses = [ip for ip in (ip_text(a, "[]") for a in _list(query.get("addresses"))) if ip]
            rcode = query.get("rcode") if isinstance(query.get("rcode"), str) else None
            failure = None
            if query.get("error_reason"):
                error = query["error_reason"]
                failure = ooni_failure(error) if isinstance(error, str) and error in REASONS else "unknown_failure"
            elif rcode and rcode != "NOERROR":
                failure = ooni_failure({"NXDOMAIN": "dns.nxdomain", "SERVFAIL": "dns.servfail",
                                        "REFUSED": "dns.refused"}.get(rcode, "dns.bad_rcode"))
            elif not addresses:
                failure = "dns_no_answer"
            ttls = {str(a.get("data")): a.get("ttl") for a in _list(query.get("answers")) if isinstance(a, dict)}
            engine = ENGINES.get(query.get("transport") if isinstance(query.get("transport"), str) else "udp", "udp")
            self.queries.append(self.query(record, qtype, engine, [(a, ttls.get(a)) for a in addresses], failure,
                                           t0, self.after(t0, query.get("duration_ms")), rcode))

    def query(self, record: dict, qtype: str, engine: str | None, answers: list[tuple[str, Any]],
              failure: str | None, t0: float, t: float, rcode: str | None) -> dict:
        entry: dict[str, Any] = {
            "answers": [{"answer_type": "AAAA" if ":" in a else "A", ("ipv6" if ":" in a else "ipv4"): a,
                         "ttl": integer(ttl)} for a, ttl in answers],
            "engine": engine or "udp",
            "failure": failure,
            "hostname": record["target"],
            "query_type": qtype,
            "resolver_address": record.get("address") or "",
            "t0": t0, "t": max(t, t0), "transaction_id": self.transaction,
        }
        if rcode in RCODES:
            entry["rcode"] = RCODES[rcode]
        return entry

    def web(self, record: dict) -> None:
        evidence = _dict(record.get("evidence"))
        kind, domain = record["probe"], record["target"]
        t0, t = self.times(record)
        reason = record.get("reason")
        stage = reason.split(".")[0] if reason else None
        if record.get("address") and "connect" in evidence:
            self.connect(record, record["address"])
        tls = evidence.get("tls") if isinstance(evidence.get("tls"), dict) else None
        if kind == "https" and tls is not None and record.get("address"):
            self.tls_handshakes.append({
                "network": "tcp", "address": record["address"], "cipher_suite": text_of(tls.get("cipher"), 100) or "",
                "failure": _failure_of_record(record) if stage == "tls" else None,
                "negotiated_protocol": text_of(tls.get("alpn"), 40) or "", "no_tls_verify": False,
                "peer_certificates": [], "server_name": text_of(tls.get("sni"), 253) or domain,
                "tls_version": text_of(tls.get("version"), 40) or "",
                "t0": t0, "t": self.after(t0, tls.get("handshake_ms")), "transaction_id": self.transaction,
            })
        http = _dict(evidence.get("http"))
        port = integer(evidence.get("port"))
        default = 443 if kind == "https" else 80
        url = f"{kind}://{domain}/" if port in (None, default) else f"{kind}://{domain}:{port}/"
        failure = None if reason is None or reason == "http.blockpage" else _failure_of_record(record)
        if reason and reason.startswith("dns.") and not str(failure).startswith("dns_"):
            failure = f"unknown_failure: {reason}"  # a request failure OONI would not read as DNS's
        headers = {"Host": domain, "User-Agent": text_of(http.get("user_agent"), 200) or USER_AGENT, "Accept": "*/*",
                   "Connection": "close"}
        response: dict[str, Any] = {"body": "", "body_is_truncated": False, "code": 0, "headers": {},
                                    "headers_list": []}
        if integer(http.get("status")) is not None:
            got = {str(k).title(): str(v) for k, v in _dict(http.get("headers")).items()}
            body, truncated = _body(http.get("body_prefix"))
            response = {"body": body, "body_is_truncated": truncated or http.get("headers_complete") is False,
                        "code": http["status"], "headers": got, "headers_list": [[k, v] for k, v in got.items()]}
        self.requests.append({
            "network": "tcp", "address": record.get("address") or "", "alpn": text_of((tls or {}).get("alpn"), 40) or "",
            "failure": failure,
            "request": {"body": "", "body_is_truncated": False, "headers": headers,
                        "headers_list": [[k, v] for k, v in headers.items()], "method": "GET",
                        "tor": {"exit_ip": None, "exit_name": None, "is_tor": False}, "url": url,
                        "x_transport": "tcp"},
            "response": response, "t0": t0, "t": t, "transaction_id": self.transaction,
        })


def _body(prefix: object) -> tuple[object, bool]:
    """netprobe keeps a capped hex prefix of a body; OONI wants text, or base64 for bytes."""
    if not isinstance(prefix, dict) or not isinstance(prefix.get("hex"), str):
        return "", False
    try:
        data = bytes.fromhex(prefix["hex"])
    except ValueError:
        return "", False
    truncated = bool(prefix.get("truncated"))
    try:
        return data.decode("utf-8"), truncated
    except UnicodeDecodeError:
        import base64
        return {"format": "base64", "data": base64.b64encode(data).decode("ascii")}, truncated


def runs_of(records: Iterable[dict]) -> dict[str, list[dict]]:
    """Records grouped by run id, in the order runs first appear."""
    runs: dict[str, list[dict]] = {}
    for record in records:
        runs.setdefault(record["run_id"], []).append(record)
    return runs


def is_record(value: object) -> bool:
    """A netprobe record with what export needs, of the right types."""
    return (isinstance(value, dict) and set(RECORD_FIELDS) <= set(value)
            and all(isinstance(value.get(k), str) for k in ("run_id", "probe", "target"))
            and normalise_time(value.get("measured_at")) is not None
            and value.get("verdict") in VERDICTS and (value.get("reason") is None or value.get("reason") in REASONS)
            and isinstance(value.get("evidence"), dict))


def runs_as_ooni(records: list[dict], probe_cc: str | None, probe_asn: str | None) -> str:
    """`netprobe run --format ooni`: each run's records as one OONI measurement, one line each."""
    from netprobe.records import json_text

    return "".join(json_text(measurement_from_run(run, probe_cc, probe_asn)) + "\n"
                   for run in runs_of(records).values())
