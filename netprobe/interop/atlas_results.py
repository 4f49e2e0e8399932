"""Reading one RIPE Atlas result into a `Piece`: everything in a result came from the network
and a volunteer's probe, so it is read through ripe.atlas.sagan, checked (ids, addresses,
times), capped (the MAX_* below) and kept as inert text; the probe's own addresses (`from`,
`src_addr`) are not kept.  `TargetIndex` tells which target a result is about, in which role."""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from netprobe.addresses import in_networks, parse_ip
from netprobe.bounded_input import integer, ip_text, nonnegative
from netprobe.classify import ATLAS_ICMP_ERRORS, atlas_dns_error_reason
from netprobe.interop import Skip
from netprobe.targets import Domain, TargetSet
from netprobe.text import printable

# --- caps on what one result may bring in ---------------------------------------------------
MAX_TEXT = 200          # an error text, a name
MAX_RESPONSES = 8       # resolvers per DNS result
MAX_ANSWERS = 32        # answer records kept per query
MAX_HOP_REPLIES = 4     # replies of the deciding hop kept as evidence
MAX_HOPS = 256
TIME_RANGE = (1262304000, 4102444800)  # 2010-01-01 .. 2100-01-01: Atlas timestamps outside are malformed


# === what the answers say ========================================================================

def normalize_name(name: object) -> str:
    return printable(name, 253).strip().lower().rstrip(".")


class TargetIndex:
    """Which names and endpoints of a target set a result is about, and in which role."""

    def __init__(self, targets: TargetSet):
        self.targets = targets
        self.domains = {d.name: d for d in targets.domains}
        self.control_domains = {d.name: d for d in targets.control_domains}
        self.endpoints = {(str(t.endpoint.ip), t.endpoint.port): t for t in targets.endpoints}
        self.controls = {(str(e.ip), e.port) for e in targets.controls}
        self.ports: dict[str, set[int]] = defaultdict(set)
        for ip, port in [*self.endpoints, *self.controls]:
            self.ports[ip].add(port)

    def name_role(self, name: str) -> str | None:
        name = normalize_name(name)
        if name in self.control_domains:
            return "control"
        return "service" if name in self.domains else None

    def domain(self, name: str) -> Domain | None:
        return self.control_domains.get(name) or self.domains.get(name)

    def endpoint_role(self, ip: str, port: object) -> str | None:
        if (ip, port) in self.controls:
            return "control"
        if (ip, port) in self.endpoints:
            return "service"
        try:
            inside = in_networks(parse_ip(ip), self.targets.networks)
        except ValueError:
            return None
        return "service" if inside and isinstance(port, int) else None

    def only_port(self, ip: str) -> int | None:
        ports = self.ports.get(ip, set())
        return next(iter(ports)) if len(ports) == 1 else None


@dataclass
class Piece:
    """One Atlas result, parsed by sagan and reduced to what netprobe judges (capped)."""

    kind: str                 # dns | sslcert | traceroute
    prb: int
    msm: int
    ts: int
    fw: int | None
    target: str | None = None  # dns, sslcert: the name; traceroute: the address
    qtype: str | None = None
    port: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


def parse_result(raw: object, definitions_by_msm: dict[int, dict[str, Any]] | None = None) -> Piece:
    """One raw Atlas result (a dict from the API or a file) as a Piece, or Skip."""
    from ripe.atlas.sagan import Result as SaganResult

    if not isinstance(raw, dict):
        raise Skip("not a result object", unparseable=True)
    kind = raw.get("type")
    if kind not in ("dns", "sslcert", "traceroute"):
        label = printable(kind, 20) if isinstance(kind, str) else "untyped"
        raise Skip(f"{label} results (netprobe judges dns, sslcert and TCP traceroute)",
                   unparseable=not isinstance(kind, str))
    prb = integer(raw.get("prb_id"), 1, 10**9)
    msm = integer(raw.get("msm_id"), 1, 10**10)
    ts = integer(raw.get("timestamp"), *TIME_RANGE)
    if prb is None or msm is None or ts is None:
        raise Skip("results without a valid prb_id, msm_id or timestamp", unparseable=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = SaganResult.get(raw, on_error=SaganResult.ACTION_IGNORE,
                                     on_malformation=SaganResult.ACTION_IGNORE)
            definition = (definitions_by_msm or {}).get(msm, {})
            fw = raw.get("fw")  # an integer, or a string of digits in some old results
            fw = integer(int(fw) if isinstance(fw, str) and fw.isdigit() and len(fw) < 8 else fw, 0, 10**6)
            piece = Piece(kind, prb, msm, ts, fw)
            if kind == "dns":
                _dns_piece(piece, parsed, raw, definition)
            elif kind == "sslcert":
                _sslcert_piece(piece, parsed, raw, definition)
            else:
                _traceroute_piece(piece, parsed, raw, definition)
    except Skip:
        raise
    except Exception as exc:  # sagan (or the result) failed in a way it does not classify itself
        raise Skip("results sagan could not parse", unparseable=True) from exc
    return piece


def _dns_piece(piece: Piece, parsed, raw: dict, definition: dict) -> None:
    entries: list[dict[str, Any]] = []
    question: tuple[str, str] | None = None
    for response in parsed.responses[:MAX_RESPONSES]:
        data = response.raw_data if isinstance(response.raw_data, dict) else {}
        entry: dict[str, Any] = {"resolver": ip_text(response.destination_address),
                                 "transport": "tcp" if response.protocol == "TCP" else "udp"}
        rt = nonnegative(response.response_time, 1e9)
        if rt is not None:
            entry["rt_ms"] = rt
        error = data.get("error")
        if error:
            entry.update(error=printable(error, MAX_TEXT), error_reason=atlas_dns_error_reason(error))
        else:
            abuf = response.abuf
            if abuf is None:
                raise Skip("DNS results without an answer buffer (abuf)")
            if abuf.is_malformed or abuf.header is None:
                entry.update(error="unreadable answer buffer", error_reason="dns.malformed")
            else:
                if abuf.questions and question is None:
                    question = (normalize_name(abuf.questions[0].name), printable(abuf.questions[0].type, 10))
                entry.update(_answers(abuf, definition.get("query_type") or (question or ("", ""))[1]))
        entries.append(entry)
    if not parsed.responses and raw.get("error"):
        entries.append({"resolver": ip_text(raw.get("dst_addr")), "error": printable(raw["error"], MAX_TEXT),
                        "error_reason": atlas_dns_error_reason(raw["error"])})
    if not entries:
        raise Skip("DNS results with neither an answer nor an error", unparseable=True)
    name = definition.get("query_argument") or (question[0] if question else None)
    piece.target = normalize_name(name) if name else None
    qtype = definition.get("query_type") or (question[1] if question else None)
    piece.qtype = str(qtype).upper() if qtype else None
    piece.data["entries"] = entries


def _answers(abuf, qtype: str) -> dict[str, Any]:
    answers, addresses, total, malformed = [], [], 0, False
    for answer in abuf.answers:
        total += 1
        kind = printable(answer.type, 12) if answer.type else "?"
        if kind == qtype and (answer.klass in (None, "IN")) and len(addresses) < MAX_ANSWERS:
            address = ip_text(getattr(answer, "address", None))
            if address is None:
                malformed = True
            else:
                addresses.append(address)
        if len(answers) < MAX_ANSWERS:
            data = getattr(answer, "address", None) or getattr(answer, "target", None) or getattr(answer, "rdata", "")
            answers.append({"name": printable(answer.name or "", 253), "type": kind, "ttl": answer.ttl,
                            "data": printable(data or "", 256)})
    entry: dict[str, Any] = {"rcode": printable(abuf.header.return_code or "?", 16), "answers": answers,
                             "answers_dropped": total - len(answers), "addresses": addresses}
    if malformed:
        entry["error_reason"] = "dns.malformed"
    return entry


def _sslcert_piece(piece: Piece, parsed, raw: dict, definition: dict) -> None:
    name = raw.get("dst_name") or definition.get("hostname") or definition.get("target")
    if not name:
        raise Skip("sslcert results without a name (dst_name)")
    piece.target = normalize_name(name)
    piece.port = integer(parsed.port, 1, 65535) or integer(definition.get("port"), 1, 65535) or 443
    data: dict[str, Any] = {"dst_addr": ip_text(parsed.destination_address), "af": integer(parsed.af, 4, 6)}
    for key in ("dnserr", "err", "error", "sockerr"):
        if raw.get(key):
            data[key] = printable(raw[key], MAX_TEXT)
    if parsed.alert is not None:
        data["alert"] = {"level": parsed.alert.level, "description": parsed.alert.description,
                         "name": printable(parsed.alert.description_string, 40)}
    certs = raw.get("cert")
    if isinstance(certs, list):
        data["certs"] = [c for c in certs[:10] if isinstance(c, str)]
    for key, value in (("method", parsed.method), ("version", parsed.version)):
        if value:
            data[key] = printable(value, 20)
    for key, value in (("rt_ms", parsed.response_time), ("ttc_ms", parsed.time_to_connect)):
        number = nonnegative(value, 1e9)
        if number is not None:
            data[key] = number
    if raw.get("server_cipher"):
        data["server_cipher"] = printable(raw["server_cipher"], 12)
    piece.data = data


def _traceroute_piece(piece: Piece, parsed, raw: dict, definition: dict) -> None:
    if parsed.protocol != "TCP":
        raise Skip(f"traceroutes over {printable(parsed.protocol or 'an unknown protocol', 10)} "
                   "(netprobe judges TCP traceroutes: a port's reachability)")
    dst = ip_text(parsed.destination_address) or ip_text(definition.get("target"))
    piece.target = dst
    piece.port = integer(definition.get("port"), 1, 65535)
    data: dict[str, Any] = {"af": integer(parsed.af, 4, 6), "total_hops": parsed.total_hops}
    if raw.get("error"):
        data["error"] = printable(raw["error"], MAX_TEXT)
    hops = []
    for hop in parsed.hops[:MAX_HOPS]:
        replies = []
        for packet in hop.packets[:16]:
            packet_raw = packet.raw_data if isinstance(packet.raw_data, dict) else {}
            if packet_raw.get("x") == "*" or not packet.origin:
                replies.append({"x": "*"})
                continue
            reply: dict[str, Any] = {"from": ip_text(packet.origin) or "?", "ttl": integer(packet.ttl, 0, 255),
                                     "rtt": nonnegative(packet.rtt, 1e9)}
            if packet_raw.get("flags") is not None:
                reply["flags"] = printable(packet_raw["flags"], 8)
            if packet_raw.get("err") is not None:
                reply["err"] = printable(packet_raw["err"], 8)
                reply["icmp"] = ATLAS_ICMP_ERRORS.get(reply["err"], "unreachable (ICMP code)")
            replies.append(reply)
        entry: dict[str, Any] = {"hop": integer(hop.index, 0, 255), "replies": replies}
        if hop.is_error:
            entry["error"] = printable(hop.error_message, MAX_TEXT)
        hops.append(entry)
    data["hops"] = hops
    piece.data = data
