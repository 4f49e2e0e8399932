"""One OONI measurement -> netprobe records, summary last: the entry point of `netprobe
import ooni`.  It checks the measurement's test and data format, sends it to the telegram or
web_connectivity judge, and ends with netprobe's diagnosis of the judged records; a netprobe
export read back returns the records it carried, unchanged, after `report`'s checks."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

from netprobe import __version__
from netprobe.bounded_input import finite_number, ip_text, text_of
from netprobe.classify import BLOCKED, INCONCLUSIVE, REASONS, RESET, VERDICTS, failure_of, verdict_for
from netprobe.interop import Skip
from netprobe.interop.ooni.judge import OoniContext
from netprobe.interop.ooni.read import FORMATS, Meta, SUPPORTED_TESTS, _list
from netprobe.interop.ooni.telegram import _telegram
from netprobe.interop.ooni.web_connectivity import _web_connectivity
from netprobe.records import RECORD_FIELDS, Result, RunInfo, SCHEMA, encode
from netprobe.timeutil import canonical_time, normalise_time

# --- one measurement -> records ------------------------------------------------------------

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
