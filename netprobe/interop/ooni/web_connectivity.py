"""OONI's `web_connectivity` test (ts-017) as netprobe records.  OONI's test helper measured
the site from elsewhere: it says whether the site is up, not what the probe's path does, so
any failure not confirmed by a fingerprint is `STAGE.unconfirmed` (`no_control` where the
helper failed); OONI's `blocking` flags stay anomalies in the evidence."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from netprobe.bounded_input import finite_number, integer, ip_text, text_of
from netprobe.classify import ooni_reason, verdict_for
from netprobe.interop import Skip
from netprobe.interop.ooni.judge import (
    OoniContext, _connect_records, _dns_records, _judged, _listed, _page_confirmation, _record, _request_fields,
    _request_stage,
)
from netprobe.interop.ooni.read import (
    Connect, Handshake, MAX_TEXT, Meta, OoniRequest, _connects, _failure, _handshakes, _host, _list, _queries,
    _requests,
)
from netprobe.interop.ooni.telegram import _address_of, _known_dns_answer

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
