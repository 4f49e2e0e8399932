"""What to ask RIPE Atlas probes: `definitions` turns a target set into Atlas measurement
definitions (DNS A and AAAA with each probe's own resolver, `sslcert` with SNI for every name,
TCP traceroutes to the data-center endpoints and TCP controls, whose last hop tells SYN-ACK,
RST or silence), `estimate_credits` prices them and `probe_sources` picks the probes.  Pure
functions, no I/O; netprobe.interop.atlas re-exports them."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from netprobe.addresses import parse_ip
from netprobe.interop.atlas_results import TargetIndex
from netprobe.targets import TargetSet
from netprobe.text import printable

MEASURES = ("dns", "tls", "tcp")
QTYPES = ("A", "AAAA")
# Traceroute settings: 3 SYNs per hop (one lost packet is no silence), no payload in the SYN
# (what a real client sends), and hops far enough for any path.
TRACEROUTE_PACKETS = 3
TRACEROUTE_SIZE = 0
TRACEROUTE_MAX_HOPS = 32

# --- credits ------------------------------------------------------------------------------
# RIPE Atlas, "Credits" (atlas.ripe.net/docs/getting-started/credits.html, section on spending):
# per result, DNS 10 (UDP) / 20 (TCP), sslcert 10, traceroute 10 x packets x (size // 1500 + 1),
# ping packets x (size // 1500 + 1); one-off measurements cost twice as much.
ONE_OFF_FACTOR = 2


# === what to ask ==============================================================================

def _description(targets: TargetSet, what: str) -> str:
    return printable(f"netprobe {targets.name}: {what}", 200)


def definitions(targets: TargetSet, measure: Iterable[str] = MEASURES) -> list[dict[str, Any]]:
    """Atlas measurement definitions for a target set, controls first.  Each definition is
    exactly what is POSTed; `netprobe_role` is kept aside in the state file, not sent."""
    measure = set(measure)
    names = [d.name for d in targets.control_domains] + [d.name for d in targets.domains]
    names = list(dict.fromkeys(names))
    out: list[dict[str, Any]] = []
    if "dns" in measure:
        for name in names:
            for qtype in QTYPES:
                out.append({"type": "dns", "af": 4, "description": _description(targets, f"DNS {qtype} {name}"),
                            "query_class": "IN", "query_type": qtype, "query_argument": name,
                            "use_probe_resolver": True, "set_rd_bit": True, "protocol": "UDP",
                            "include_abuf": True})
    if "tls" in measure:
        for name in names:
            # resolve_on_probe: the probe's own resolver picks the address, as a user's device would.
            out.append({"type": "sslcert", "af": 4, "description": _description(targets, f"TLS {name}"),
                        "target": name, "hostname": name, "port": 443, "resolve_on_probe": True})
    if "tcp" in measure:
        endpoints = list(dict.fromkeys([*targets.controls, *(t.endpoint for t in targets.endpoints)]))
        for endpoint in endpoints:
            out.append({"type": "traceroute", "af": endpoint.family,
                        "description": _description(targets, f"TCP {endpoint}"),
                        "target": str(endpoint.ip), "protocol": "TCP", "port": endpoint.port,
                        "packets": TRACEROUTE_PACKETS, "size": TRACEROUTE_SIZE,
                        "max_hops": TRACEROUTE_MAX_HOPS})
    return out


def result_cost(definition: dict[str, Any]) -> int:
    """Credits one result of a periodic measurement costs (see the table above)."""
    kind = definition.get("type")
    size_factor = int(definition.get("size", 48) or 0) // 1500 + 1
    if kind == "dns":
        return 20 if str(definition.get("protocol", "UDP")).upper() == "TCP" else 10
    if kind == "sslcert":
        return 10
    if kind == "traceroute":
        return 10 * int(definition.get("packets", 3)) * size_factor
    if kind == "ping":
        return int(definition.get("packets", 3)) * size_factor
    raise ValueError(f"no credit cost known for {kind!r} measurements")


def estimate_credits(defs: Sequence[dict[str, Any]], probes: int) -> dict[str, Any]:
    """The cost of one-off `defs` on `probes` probes, if every probe delivers every result."""
    by_type: dict[str, dict[str, int]] = {}
    for definition in defs:
        entry = by_type.setdefault(definition["type"], {"measurements": 0, "credits_per_probe": 0})
        entry["measurements"] += 1
        entry["credits_per_probe"] += result_cost(definition) * ONE_OFF_FACTOR
    per_probe = sum(e["credits_per_probe"] for e in by_type.values())
    return {"measurements": len(defs), "probes": probes, "per_probe": per_probe, "total": per_probe * probes,
            "by_type": by_type, "one_off_factor": ONE_OFF_FACTOR}


def probe_sources(countries: Sequence[str], asns: Sequence[int], probe_ids: Sequence[int],
                  count: int) -> list[dict[str, Any]]:
    """Atlas probe selection: `count` probes per country and per ASN, and the listed probes."""
    sources = [{"type": "country", "value": cc.upper(), "requested": count} for cc in countries]
    sources += [{"type": "asn", "value": int(asn), "requested": count} for asn in asns]
    if probe_ids:
        ids = list(dict.fromkeys(int(p) for p in probe_ids))
        sources.append({"type": "probes", "value": ",".join(map(str, ids)), "requested": len(ids)})
    return sources


def role_of(definition: dict[str, Any], targets: TargetSet) -> str | None:
    """"control" or "service" for one of our definitions; None when the target set does not name it."""
    index = TargetIndex(targets)
    if definition.get("type") == "traceroute":
        try:
            ip = str(parse_ip(str(definition.get("target"))))
        except ValueError:
            return None
        return index.endpoint_role(ip, definition.get("port"))
    name = definition.get("query_argument") or definition.get("target")
    return index.name_role(str(name or ""))
