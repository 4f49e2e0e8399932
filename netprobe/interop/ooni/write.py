"""Writing OONI's format: one netprobe run as one measurement in OONI's base data format
(df-000), test_keys in the shape of OONI's telegram test and netprobe's own records under
test_keys.netprobe, so that `import ooni` reads them back unchanged (`export ooni`, `run
--format ooni`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable

from netprobe import __version__
from netprobe.addresses import parse_endpoint
from netprobe.bounded_input import finite_number, integer, ip_text, text_of
from netprobe.classify import BLOCKED, REACHABLE, REASONS, RESET, VERDICTS, failure_of, ooni_failure
from netprobe.interop.ooni.read import MAX_T, WEB_HOST, _list
from netprobe.probes.kinds import CONNECT, MTPROTO, WEB, of_family
from netprobe.records import RECORD_FIELDS, SCHEMA
from netprobe.timeutil import normalise_time

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
