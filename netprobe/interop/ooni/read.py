"""Reading OONI's format: where the measurements are in a file or an API answer, and the
operations one measurement recorded (connects, handshakes, requests, DNS queries) as small
frozen Ooni* values.  Everything OONI wrote is hostile until read here: each list is cut at
MAX_ENTRIES, each string at MAX_TEXT, each offset checked, so nothing later trusts a shape."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit

from netprobe.addresses import format_endpoint, parse_endpoint
from netprobe.bounded_input import finite_number, integer, ip_text, parse_json, text_of

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
