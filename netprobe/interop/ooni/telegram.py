"""OONI's `telegram` test (ts-020) as netprobe records.  The test contacts only Telegram,
so it measures no control: any failure not confirmed by a blockpage fingerprint becomes
`STAGE.no_control`, and a success stands only where the answer is one only Telegram gives."""

from __future__ import annotations

from functools import cache

from netprobe.bounded_input import text_of
from netprobe.classify import BLOCKED, REACHABLE, RESET, ooni_reason, verdict_for
from netprobe.interop.ooni.judge import (
    OoniContext, _connect_records, _dns_confirmation, _dns_records, _earliest, _judged, _listed, _page_confirmation,
    _record, _request_fields, _request_stage,
)
from netprobe.interop.ooni.read import (
    Connect, Handshake, MAX_LISTED, OONI_DC_IPS, OoniRequest, TELEGRAM_ASNS, WEB_HOST, _connects, _endpoint_text,
    _failure, _handshakes, _queries, _requests,
)
from netprobe.probes.kinds import bare_success

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
