"""RIPE Atlas probes as vantage points: what to ask them, and what their answers say.

Pure functions, no I/O (interop/atlas_api.py talks to the API, interop/atlas_state.py keeps
the submitted ids, commands/atlas.py reaches files and the terminal):

- `definitions` (interop/atlas_definitions.py, re-exported here) turns a target set
  into Atlas measurement definitions;  `estimate_credits` prices them.
- `convert` turns Atlas results (parsed by ripe.atlas.sagan) into the same
  records local probes write, with the same reasons (netprobe/classify.py), and
  judges each probe's records against the controls measured FROM THAT PROBE IN THE
  SAME RUN (netprobe/vantage.py): a failure counts only when a control of its
  stage got through there; with the controls failing too, or with no control at
  all, it is "inconclusive" (`*.no_control`), never "blocked".  Each run of each
  probe ends with its summary record, as a local run does.

Everything in a result came from the network and a volunteer's probe: it is
read into a `Piece` by interop/atlas_results.py, checked, capped and kept as
inert text.  This module's one job is the conversion: pieces -> records, judged
run by run.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from netprobe.addresses import format_endpoint, in_networks, parse_ip
from netprobe.bounded_input import integer
from netprobe.classify import (
    DnsQueryOutcome, INCONCLUSIVE, a_genuine, aaaa_timed_out_alone, atlas_resolve_reason, atlas_sslcert_error_reason,
    atlas_stream_failure, classify_control_dns, classify_dns, verdict_for,
)
from netprobe.diagnosis import RunContext, summarize
from netprobe.interop import Skip
from netprobe.interop.atlas_definitions import QTYPES
from netprobe.interop.atlas_results import MAX_HOP_REPLIES, Piece, TargetIndex, parse_result
from netprobe.records import Result
from netprobe.tallies import Tallies
from netprobe.targets import TargetSet
from netprobe.text import printable
from netprobe.vantage import ControlBoard, FAILED_VERDICTS, NONE, ONLINE, PASSED, UNKNOWN, decide_vantage, judged

# The one name commands and tests import: what to ask, from here too.
from netprobe.interop.atlas_definitions import (  # noqa: F401 (re-exported)
    MEASURES, definitions, estimate_credits, probe_sources, result_cost, role_of,
)

# The resolver of the probe's own name resolution (sslcert resolves on the probe): the
# control names' sslcert lookups are the DNS controls of the service names' sslcert lookups.
PROBE_RESOLVER = "probe-resolver"

# --- runs -------------------------------------------------------------------------------------
# One probe's results are judged run by run: a run is what the probe measured within RUN_WINDOW
# of its first result, each measurement at most once (a measurement's next result, as periodic
# ones give, starts the next run).  `atlas submit` schedules everything in one request, which a
# probe runs within minutes; half an hour keeps one submission together while results of other
# hours or days, which may come from another network state, are never each other's controls.
RUN_WINDOW = 30 * 60

# A failure with no control from the same probe and run (netprobe/classify.py): the stage's
# reason, and for DNS the resolver's own failures apart from answers that point elsewhere.
NO_CONTROL = {"dns": "dns.no_control", "tcp": "tcp.no_control", "tls": "tls.no_control"}
RESOLVER_FAILURES = frozenset({"refused", "servfail", "no_answer", "timeout", "bad_rcode", "eof", "reset",
                               "port_unreachable", "unreachable"})
NO_CONTROL_REASONS = frozenset({*NO_CONTROL.values(), "dns.resolver_no_control"})


# --- records ----------------------------------------------------------------------------------

def run_id_of(prb: int, parts: Iterable[tuple[int, int]]) -> str:
    """A record's run, from what it was measured by: the probe and each (msm id, timestamp).
    The same results always give the same run_id, so a second fetch recognises the first."""
    text = f"atlas:{prb}:" + ",".join(f"{m}@{t}" for m, t in sorted(set(parts)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Context:
    """What conversion needs beyond the results themselves."""

    targets: TargetSet
    definitions: dict[int, dict[str, Any]] = field(default_factory=dict)   # msm id -> definition
    running: frozenset[int] = frozenset()                                  # msm ids still measuring
    probes: dict[int, dict[str, Any]] = field(default_factory=dict)        # probe id -> API metadata
    store: Sequence = ()                                                    # trust store (chaincheck)
    ca_bundle: Any = "system"                                               # evidence of which store


@dataclass
class Conversion:
    records: list[tuple[Result, str, str]] = field(default_factory=list)  # (record, run_id, label)
    skipped: Counter = field(default_factory=Counter)                    # why -> results
    unparseable: int = 0
    held: set[int] = field(default_factory=set)          # probes waiting for running measurements
    without_controls: set[int] = field(default_factory=set)  # probes with a run that had no control
    probes: set[int] = field(default_factory=set)


def convert(raw_results: Iterable[object], context: Context) -> Conversion:
    """Atlas results -> judged netprobe records, probe by probe."""
    out = Conversion()
    index = TargetIndex(context.targets)
    by_probe: dict[int, list[Piece]] = defaultdict(list)
    questions: dict[int, tuple[str, str]] = {}
    unnamed: list[Piece] = []
    seen: set[tuple[int, int, int]] = set()
    for raw in raw_results:
        try:
            piece = parse_result(raw, context.definitions)
        except Skip as skip:
            if skip.unparseable:
                out.unparseable += 1
            else:
                out.skipped[skip.why] += 1
            continue
        if (piece.prb, piece.msm, piece.ts) in seen:
            out.skipped["results given twice (same probe, measurement and time)"] += 1
            continue
        seen.add((piece.prb, piece.msm, piece.ts))
        if piece.kind == "dns":
            if piece.target and piece.qtype:
                questions.setdefault(piece.msm, (piece.target, piece.qtype))
            else:
                unnamed.append(piece)
        by_probe[piece.prb].append(piece)
    for piece in unnamed:  # a timeout has no answer buffer: its question is its measurement's
        if piece.msm in questions:
            piece.target, piece.qtype = questions[piece.msm]
    for prb in sorted(by_probe):
        pieces = by_probe[prb]
        pending = context.running - {p.msm for p in pieces}
        if pending:
            out.held.add(prb)
            continue
        for run in runs_of(pieces):
            records = _probe_records(prb, run, index, context, out)
            if records:
                out.probes.add(prb)
                out.records.extend(_judge(prb, run, records, context, out))
    return out


def runs_of(pieces: Iterable[Piece]) -> list[list[Piece]]:
    """One probe's results split into runs (see RUN_WINDOW), in time order."""
    runs: list[list[Piece]] = []
    start, measured = 0, set()
    for piece in sorted(pieces, key=lambda p: (p.ts, p.msm)):
        if not runs or piece.ts - start > RUN_WINDOW or piece.msm in measured:
            runs.append([])
            start, measured = piece.ts, set()
        runs[-1].append(piece)
        measured.add(piece.msm)
    return runs


def _role(piece: Piece, index: TargetIndex, context: Context) -> str | None:
    if not piece.target:
        return None
    if piece.kind == "traceroute":
        port = piece.port if piece.port is not None else index.only_port(piece.target)
        return index.endpoint_role(piece.target, port)
    return index.name_role(piece.target)


def _atlas_evidence(prb: int, pieces: Sequence[Piece], context: Context) -> dict[str, Any]:
    """Where a record was measured: probe, measurement(s), and what the API says of the probe
    (ASN, country) when it was asked; nothing is guessed."""
    evidence: dict[str, Any] = {"probe_id": prb}
    msms = sorted({p.msm for p in pieces})
    if len(msms) == 1:
        evidence["msm_id"] = msms[0]
    else:
        evidence["msm_ids"] = msms
    evidence["timestamp"] = max(p.ts for p in pieces)
    firmware = {p.fw for p in pieces if p.fw is not None}
    if firmware:
        evidence["firmware"] = max(firmware)
    meta = context.probes.get(prb) or {}
    for key in ("asn_v4", "asn_v6"):
        if integer(meta.get(key), 1, 2**32 - 1) is not None:
            evidence[key] = meta[key]
    country = meta.get("country_code")
    if isinstance(country, str) and len(country) == 2 and country.isalpha():
        evidence["country"] = country.upper()
    return evidence


def _probe_records(prb: int, pieces: list[Piece], index: TargetIndex, context: Context,
                   out: Conversion) -> list[tuple[Result, str, bool]]:
    """(record, run_id, fold-only) for one probe; fold-only records only feed the controls."""
    records: list[tuple[Result, str, bool]] = []
    dns_groups: dict[tuple[str, str | None], dict[str, tuple[Piece, dict]]] = defaultdict(dict)
    for piece in sorted(pieces, key=lambda p: (p.ts, p.msm)):
        role = _role(piece, index, context)
        if piece.target is None:
            out.skipped["DNS results whose question is unknown (no answer buffer, measurement unknown)"
                        if piece.kind == "dns" else "results without a target"] += 1
            continue
        if role is None:
            if piece.kind == "traceroute" and piece.port is None and index.ports.get(piece.target):
                out.skipped["TCP traceroutes whose port is unknown (not in the state file or the API)"] += 1
            else:
                out.skipped[f"results for targets not in the target set {printable(context.targets.name, 40)}"] += 1
            continue
        if piece.kind == "dns":
            if piece.qtype not in QTYPES:
                out.skipped["DNS results for query types other than A and AAAA"] += 1
                continue
            for entry in piece.data["entries"]:
                dns_groups[(piece.target, entry.get("resolver"))].setdefault(piece.qtype, (piece, entry))
        elif piece.kind == "sslcert":
            records.extend(_sslcert_records(prb, piece, role, index, context))
        else:
            port = piece.port if piece.port is not None else index.only_port(piece.target)
            records.append((_tcp_record(prb, piece, port, role, index, context),
                            run_id_of(prb, [(piece.msm, piece.ts)]), False))
    for (name, resolver), by_qtype in dns_groups.items():
        parts = [by_qtype[q] for q in QTYPES if q in by_qtype]
        role = index.name_role(name)
        records.append((_dns_record(prb, name, resolver, parts, role, index, context),
                        run_id_of(prb, [(p.msm, p.ts) for p, _ in parts]), False))
    return records


def _dns_record(prb: int, name: str, resolver: str | None, parts: list[tuple[Piece, dict]], role: str,
                index: TargetIndex, context: Context) -> Result:
    queries = []
    for piece, entry in parts:
        query = {"qtype": piece.qtype, "msm_id": piece.msm, **{k: v for k, v in entry.items() if k != "resolver"}}
        queries.append(query)
    outcomes = [DnsQueryOutcome(q["qtype"], q.get("rcode"), tuple(q.get("addresses", ())), q.get("error_reason"))
                for q in queries]
    domain = index.domain(name)
    networks = context.targets.networks
    try:
        if role == "control":
            reason = classify_control_dns(outcomes, domain.addresses if domain else ())
        else:
            reason = classify_dns(outcomes, networks)
    except ValueError:
        reason = "dns.malformed"
    address = format_endpoint(parse_ip(resolver), 53) if resolver else None
    evidence: dict[str, Any] = {"resolver": address, "resolver_kind": "probe's own (use_probe_resolver)",
                                "queries": queries}
    if reason == "dns.timeout" and role != "control" and aaaa_timed_out_alone(outcomes):
        evidence.update(aaaa_only=True, a_genuine=a_genuine(outcomes, networks))
    pieces = [p for p, _ in parts]
    evidence["atlas"] = _atlas_evidence(prb, pieces, context)
    duration = sum(q.get("rt_ms") or 0 for q in queries)
    if role == "control":
        evidence = {"stage": "dns", **evidence}
    return Result("control" if role == "control" else "dns", name, address, reason, duration, evidence,
                  measured_at=rfc3339(max(p.ts for p in pieces)))


def _sslcert_records(prb: int, piece: Piece, role: str, index: TargetIndex,
                     context: Context) -> list[tuple[Result, str, bool]]:
    from netprobe.interop.chaincheck import check_chain

    data = piece.data
    name = piece.target
    domain = index.domain(name)
    dst = data.get("dst_addr")
    run_id = run_id_of(prb, [(piece.msm, piece.ts)])
    tls: dict[str, Any] = {"sni": name}
    for key in ("method", "version", "server_cipher", "ttc_ms", "rt_ms"):
        if key in data:
            tls[key] = data[key]
    evidence: dict[str, Any] = {"domain": name, "port": piece.port, "addresses": [dst] if dst else [],
                                "address_source": "dns" if dst else "none", "stage": "tls",
                                "ca_bundle": context.ca_bundle}
    family_qtype = "AAAA" if dst and ":" in dst else "A"
    if data.get("dnserr") or not dst:
        dns_reason = atlas_resolve_reason(data.get("dnserr", "")) if data.get("dnserr") else "dns.unknown"
        observed = dns_reason
        evidence["dns"] = {"resolver": PROBE_RESOLVER, "addresses": [], "reason": dns_reason,
                           "error": data.get("dnserr") or data.get("error") or "no address"}
    else:
        outcome = DnsQueryOutcome(family_qtype, "NOERROR", (dst,))
        try:
            dns_reason = (classify_control_dns([outcome], domain.addresses if domain else ()) if role == "control"
                          else classify_dns([outcome], context.targets.networks))
        except ValueError:
            dns_reason = "dns.malformed"
        evidence["dns"] = {"resolver": PROBE_RESOLVER, "addresses": [dst], "reason": dns_reason}
        evidence["address"] = dst
        evidence["address_in_networks"] = in_networks(parse_ip(dst), context.targets.networks)
        error = data.get("err") or data.get("error") or data.get("sockerr")
        if error:
            observed = atlas_sslcert_error_reason(error)
            target = evidence if observed.startswith("tcp.") else tls
            target["error"] = error
            evidence["connect"] = "failed" if observed.startswith("tcp.") else "ok"
        elif data.get("alert"):
            # protocol_version (70): the server wants a newer TLS than the probe's fixed 1.2 ClientHello.
            observed = "tls.old_version" if data["alert"].get("description") == 70 else "tls.alert"
            tls["alert"] = data["alert"]
            evidence["connect"] = "ok"
        elif data.get("certs"):
            evidence["connect"] = "ok"
            when = datetime.fromtimestamp(piece.ts, timezone.utc)
            check = check_chain(data["certs"], name, when, context.store)
            tls["certificates"] = check.certificates[:4]
            tls["verified"] = check.verified
            if check.verified:
                observed = None
                tls["verified_by"] = check.method
                if check.root_removed:
                    tls["root_removed"] = check.root_removed  # a root of the store then, dropped since
            else:
                # A chain that cannot be checked says nothing; one that demonstrably fails (another
                # name, expired then, a private CA) is a failure, to be weighed against the controls.
                observed = "tls.unknown_issuer" if check.error == "unknown_issuer" else "tls.bad_certificate"
                tls["verify_error"] = check.error
            if check.detail:
                tls["verify_message"] = check.detail
        else:
            observed = "tls.unknown"
            tls["error"] = "neither a certificate, an alert nor an error"
    evidence["tls"] = tls
    reason = observed
    if role != "control" and dns_reason and observed is not None and observed != dns_reason:
        # The probe's resolver sent it elsewhere: whatever happened there is not the service's doing.
        reason = dns_reason
        evidence["observed_after_dns"] = observed
    evidence["atlas"] = _atlas_evidence(prb, [piece], context)
    address = format_endpoint(parse_ip(dst), piece.port) if dst else None
    duration = data.get("rt_ms") or data.get("ttc_ms") or 0.0
    measured_at = rfc3339(piece.ts)
    records = []
    if role == "control":
        record = Result("control", name, address, reason, duration, evidence, measured_at=measured_at)
        # The control name's lookup on the probe is the DNS control of the service names' lookups.
        queries = [{"qtype": family_qtype, "rcode": "NOERROR", "addresses": [dst]}] if dst else []
        lookup = Result("control", name, PROBE_RESOLVER, dns_reason, 0.0, {"stage": "dns", "queries": queries},
                        measured_at=measured_at)
        records.append((lookup, run_id, True))
    else:
        record = Result("https", name, address, reason, duration, evidence, measured_at=measured_at)
    records.insert(0, (record, run_id, False))
    return records


def _tcp_record(prb: int, piece: Piece, port: int, role: str, index: TargetIndex, context: Context) -> Result:
    data = piece.data
    target = format_endpoint(parse_ip(piece.target), port)
    reason, decisive = traceroute_reason(piece.target, data)
    trace: dict[str, Any] = {"protocol": "TCP", "total_hops": data.get("total_hops"),
                             "replied_hops": sum(1 for h in data["hops"] if any("from" in r for r in h["replies"]))}
    if decisive is not None:
        trace["deciding_hop"] = {**decisive, "replies": decisive["replies"][:MAX_HOP_REPLIES]}
    if data.get("error"):
        trace["error"] = data["error"]
    evidence: dict[str, Any] = {"connect": "ok" if reason is None else "failed", "traceroute": trace}
    endpoint = index.endpoints.get((piece.target, port))
    if endpoint is not None and endpoint.dc is not None:
        evidence["dc"] = endpoint.dc
    evidence["atlas"] = _atlas_evidence(prb, [piece], context)
    if role == "control":
        evidence = {"stage": "tcp", **evidence}
    elif reason is None:
        # A SYN-ACK is what a box that accepts every connection sends too, and an Atlas probe tries
        # no connection that must fail: the handshake is not shown to be the service's.
        reason = "tcp.unproven"
        evidence.update(observed_reason=None, observed_verdict="reachable")
    return Result("control" if role == "control" else "tcp", target, target, reason, 0.0, evidence,
                  measured_at=rfc3339(piece.ts))


def traceroute_reason(destination: str, data: dict[str, Any]) -> tuple[str | None, dict | None]:
    """What a TCP traceroute says of the port: the TCP answer that ended it (SYN-ACK: open, RST:
    reset), an ICMP error (unreachable), an error on the probe itself, or silence (timeout);
    with the hop that decided it."""
    hops = data.get("hops") or []
    for hop in reversed(hops):
        answers = [r for r in hop["replies"] if "flags" in r]
        if not answers:
            continue
        from_destination = [r for r in answers if r.get("from") == destination]
        flags = [str(r.get("flags", "")) for r in from_destination]
        if any("S" in f and "A" in f for f in flags):
            return None, hop
        if any("R" in f for f in flags):
            return "tcp.refused", hop
        return "tcp.unknown", hop  # a TCP answer from another address: not the destination's
    for hop in reversed(hops):
        if any("err" in r for r in hop["replies"]):
            return "tcp.unreachable", hop
        if hop.get("error"):
            return f"tcp.{atlas_stream_failure(hop['error'])}", hop
        if any("from" in r for r in hop["replies"]):
            break  # routers answered, the destination never did
    if data.get("error") and not any(any("from" in r for r in h["replies"]) for h in hops):
        return f"tcp.{atlas_stream_failure(data['error'])}", None
    last = hops[-1] if hops else None
    return "tcp.timeout", last


# --- judging ----------------------------------------------------------------------------------

def _judge(prb: int, run: list[Piece], records: list[tuple[Result, str, bool]], context: Context,
           out: Conversion) -> list[tuple[Result, str, str]]:
    """One run of a probe weighed against the controls measured from that probe in that run, as
    a local run weighs its records against its own controls; then the run's summary."""
    label = f"atlas:{prb}"
    controls = [r for r, _, _ in records if r.probe == "control"]
    emitted = [(r, run_id) for r, run_id, fold_only in records if not fold_only]
    emitted.sort(key=lambda item: (item[0].probe != "control", item[0].measured_at, item[0].probe, item[0].target))
    board = ControlBoard(c for c in map(_board_control, controls) if c is not None)
    if board.count:
        vantage = decide_vantage(board, [r for r, _ in emitted if r.probe != "control"])
    else:
        vantage = UNKNOWN
        out.without_controls.add(prb)
    offline = board.offline_families() if vantage == ONLINE else set()
    tallies, no_control = Tallies(), defaultdict(Counter)  # no_control: reason -> probe kind -> n
    result: list[tuple[Result, str, str]] = []
    for record, run_id in emitted:
        record = without_control(judged(record, board, vantage, offline))
        if record.reason in NO_CONTROL_REASONS:
            no_control[record.reason][record.probe] += 1
        tallies.add(record)
        result.append((record, run_id, label))
    if emitted:
        run_context = RunContext(vantage, board if board.count else None, frozenset(offline), scoped_no_control=True)
        summary = _run_summary(context.targets.name, tallies, no_control, run_context)
        window = {"from": rfc3339(min(p.ts for p in run)), "to": rfc3339(max(p.ts for p in run))}
        summary = replace(summary, measured_at=max(r.measured_at for r, _ in emitted),
                          evidence={**summary.evidence, "atlas": {
                              "probe_id": prb, "msm_ids": sorted(_msm_ids(r for r, _ in emitted)),
                              "run": window, **_probe_meta(prb, context)}})
        result.append((summary, summary_run_id(prb, run), label))
    return result


def summary_run_id(prb: int, run: Sequence[Piece]) -> str:
    """The run_id of a run's summary: from every result of the run, apart from any record's."""
    return run_id_of(prb, [(0, 0), *((p.msm, p.ts) for p in run)])


def _board_control(record: Result) -> Result | None:
    """What a control record tells the board.  A TLS control whose certificate could not be
    judged (a chain that cannot be checked, an alert for the probe's old TLS) neither passed
    nor failed TLS: it shows only that TCP to its address connected."""
    evidence = record.evidence
    if evidence.get("stage") != "tls" or record.verdict != INCONCLUSIVE or not (record.reason or "").startswith("tls."):
        return record
    if (evidence.get("dns") or {}).get("reason") or not record.address:
        return None  # the address was not the name's: its connect says nothing of the path
    return Result("control", record.target, record.address, None, record.duration_ms,
                  {"stage": "tcp", "from_tls_control": record.reason}, measured_at=record.measured_at)


def without_control(record: Result) -> Result:
    """A failure that no control of its stage from the same probe and run got past is no
    evidence of blocking: inconclusive, the observed reason in the evidence.  DNS failures that
    are the resolver's own (REFUSED, SERVFAIL, no address, silence) say so."""
    if (record.evidence.get("controls") or {}).get("state") == NONE and "observed_reason" in record.evidence:
        # `judged` already found no control of the stage (vantage._with_controls): named here from
        # what was observed, with the probe-and-run scope and the resolver's own failures apart.
        record = replace(record, reason=record.evidence["observed_reason"], verdict=record.evidence["observed_verdict"])
    if record.probe in ("control", "summary") or record.verdict not in FAILED_VERDICTS:
        return record
    if (record.evidence.get("controls") or {}).get("state") == PASSED:
        return record
    stage, _, failure = (record.reason or "").partition(".")
    reason = "dns.resolver_no_control" if stage == "dns" and failure in RESOLVER_FAILURES else NO_CONTROL.get(stage)
    if reason is None:
        raise ValueError(f"no reason for a {stage!r} failure without a control")
    evidence = {**record.evidence, "observed_reason": record.reason, "observed_verdict": record.verdict,
                "controls": {"stage": stage, "state": "none", "scope": "same probe, same run"}}
    return replace(record, reason=reason, verdict=verdict_for(reason), evidence=evidence)


def _run_summary(service: str, tallies: Tallies, no_control: dict[str, Counter], run_context: RunContext) -> Result:
    """A run's summary, as for a local run, led by what had no control from the probe: said
    once, with the probe-and-run scope, instead of per stage (`RunContext.scoped_no_control`)."""
    summary = summarize(service, tallies, run_context)
    if not no_control:
        return summary
    counts = Counter()
    for kinds in no_control.values():
        counts.update(kinds)
    total = sum(counts.values())
    whole = ("no control was measured from this probe in this run" if run_context.board is None
             else "no control of that stage was measured from this probe in this run")
    failures = f"{total} failure{'s' if total != 1 else ''} ({', '.join(sorted(counts))})"
    line = (f"Not judged: {failures} without a control: {whole} — no evidence of blocking "
            f"({', '.join(sorted(no_control))}; the observed reasons are in each record's evidence).")
    return replace(summary, evidence={**summary.evidence, "findings": [line, *summary.evidence["findings"]],
                                      "no_control": {r: dict(k) for r, k in no_control.items()}})


def _msm_ids(records: Iterable[Result]) -> set[int]:
    ids: set[int] = set()
    for record in records:
        atlas = record.evidence.get("atlas") or {}
        ids.update(atlas.get("msm_ids", ()))
        if "msm_id" in atlas:
            ids.add(atlas["msm_id"])
    return ids


def _probe_meta(prb: int, context: Context) -> dict[str, Any]:
    evidence = _atlas_evidence(prb, [Piece("dns", prb, 0, 0, None)], context)
    return {k: v for k, v in evidence.items() if k in ("asn_v4", "asn_v6", "country")}
